//! The acceptor: memory only, one per node and lease name (A1–A4).

use core::time::Duration;

use crate::ballot::Ballot;
use crate::lease::message::LeaseMsg;
use crate::lease::timing::LeaseTiming;
use crate::time::Instant;

/// A PaxosLease acceptor. Its whole state is lost at a crash; A4's
/// quarantine is what makes that safe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Acceptor {
    promised: Ballot,
    /// The accepted lease and when it expires on this node's clock.
    lease: Option<(Ballot, Instant)>,
    quarantine_until: Instant,
    acceptor_duration: Duration,
    owner_only_release: bool,
}

impl Acceptor {
    /// An acceptor (re)started at `now`.
    ///
    /// **A4**: it ignores every lease message until `now + Q`, because it may
    /// have promised or accepted before the crash and forgotten it.
    /// `quarantine: false` is for a cluster of one, where the only proposer
    /// that could have counted on a forgotten promise died with it.
    pub fn new(timing: &LeaseTiming, now: Instant, quarantine: bool) -> Self {
        Acceptor {
            promised: Ballot::ZERO,
            lease: None,
            quarantine_until: if quarantine { now + timing.quarantine } else { now },
            acceptor_duration: timing.acceptor,
            owner_only_release: false,
        }
    }

    #[cfg(feature = "broken-variants")]
    pub(crate) fn with_bugs(mut self, bugs: crate::lease::Bugs) -> Self {
        self.owner_only_release = bugs.owner_only_release;
        self
    }

    /// The live lease this acceptor holds; an expired one counts as none.
    pub fn lease(&self, now: Instant) -> Option<Ballot> {
        self.lease.filter(|&(_, expires)| now < expires).map(|(b, _)| b)
    }

    /// The highest ballot promised.
    pub fn promised(&self) -> Ballot {
        self.promised
    }

    /// The live lease and when it expires on this node's clock.
    pub fn lease_expiry(&self, now: Instant) -> Option<(Ballot, Instant)> {
        self.lease.filter(|&(_, expires)| now < expires)
    }

    /// How long A4 still silences this acceptor.
    pub fn quarantine_left(&self, now: Instant) -> Duration {
        self.quarantine_until.saturating_since(now)
    }

    /// Whether A4 still silences this acceptor.
    pub fn is_quarantined(&self, now: Instant) -> bool {
        now < self.quarantine_until
    }

    /// Handles a message addressed to acceptors; returns the reply to its sender.
    pub fn handle(&mut self, msg: LeaseMsg, now: Instant) -> Option<LeaseMsg> {
        // A4: silent while quarantined, Release included.
        if self.is_quarantined(now) {
            return None;
        }
        match msg {
            // A1: promise `b` if no higher promise, reporting the live lease.
            LeaseMsg::Prepare { ballot } => Some(if ballot >= self.promised {
                self.promised = ballot;
                LeaseMsg::Promise { ballot, lease: self.lease(now) }
            } else {
                LeaseMsg::Rejected { refused: ballot, promised: self.promised }
            }),
            // A2: accept `b` if no higher promise, even one whose Prepare never
            // arrived here; the acceptor's timer starts now, at receipt.
            LeaseMsg::Accept { ballot } => Some(if ballot >= self.promised {
                self.promised = ballot;
                self.lease = Some((ballot, now + self.acceptor_duration));
                LeaseMsg::Accepted { ballot }
            } else {
                LeaseMsg::Rejected { refused: ballot, promised: self.promised }
            }),
            // A3: clear only the exact lease (owner and ballot) released; a
            // delayed Release of an older lease must not clear a newer one.
            LeaseMsg::Release { ballot } => {
                let matches = match self.lease {
                    Some((held, _)) if self.owner_only_release => held.node == ballot.node,
                    Some((held, _)) => held == ballot,
                    None => false,
                };
                if matches {
                    self.lease = None;
                }
                None
            }
            LeaseMsg::Promise { .. }
            | LeaseMsg::Rejected { .. }
            | LeaseMsg::Accepted { .. }
            | LeaseMsg::LearnChosen { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NodeId;
    use crate::lease::LeaseConfig;

    fn timing() -> LeaseTiming {
        LeaseConfig { drift_ppm: 0, ..Default::default() }.timing().unwrap()
    }

    fn b(c: u64, n: u16) -> Ballot {
        Ballot::new(c, 1, NodeId(n))
    }

    #[test]
    fn promises_and_accepts_follow_a1_a2() {
        let t0 = Instant::from_millis(10);
        let mut a = Acceptor::new(&timing(), t0, false);
        assert_eq!(
            a.handle(LeaseMsg::Prepare { ballot: b(2, 0) }, t0),
            Some(LeaseMsg::Promise { ballot: b(2, 0), lease: None })
        );
        assert_eq!(
            a.handle(LeaseMsg::Prepare { ballot: b(1, 1) }, t0),
            Some(LeaseMsg::Rejected { refused: b(1, 1), promised: b(2, 0) })
        );
        assert_eq!(
            a.handle(LeaseMsg::Accept { ballot: b(2, 0) }, t0),
            Some(LeaseMsg::Accepted { ballot: b(2, 0) })
        );
        // The live lease is reported to the next Prepare...
        assert_eq!(
            a.handle(LeaseMsg::Prepare { ballot: b(3, 1) }, t0),
            Some(LeaseMsg::Promise { ballot: b(3, 1), lease: Some(b(2, 0)) })
        );
        // ... and no longer once expired (D_A = 3 s).
        let later = t0 + Duration::from_secs(3);
        assert_eq!(
            a.handle(LeaseMsg::Prepare { ballot: b(4, 1) }, later),
            Some(LeaseMsg::Promise { ballot: b(4, 1), lease: None })
        );
        // An Accept whose Prepare never arrived is accepted if not below the promise.
        assert_eq!(
            a.handle(LeaseMsg::Accept { ballot: b(5, 2) }, later),
            Some(LeaseMsg::Accepted { ballot: b(5, 2) })
        );
    }

    #[test]
    fn release_clears_only_the_exact_lease() {
        let t0 = Instant::ZERO;
        let mut a = Acceptor::new(&timing(), t0, false);
        a.handle(LeaseMsg::Accept { ballot: b(2, 0) }, t0);
        a.handle(LeaseMsg::Release { ballot: b(1, 0) }, t0);
        assert_eq!(a.lease(t0), Some(b(2, 0)), "A3: a stale release of the same owner is a no-op");
        a.handle(LeaseMsg::Release { ballot: b(2, 0) }, t0);
        assert_eq!(a.lease(t0), None);
    }

    #[test]
    fn quarantine_silences_everything() {
        let t0 = Instant::from_millis(5);
        let mut a = Acceptor::new(&timing(), t0, true);
        for msg in [LeaseMsg::Prepare { ballot: b(1, 0) }, LeaseMsg::Accept { ballot: b(1, 0) }] {
            assert_eq!(a.handle(msg, t0 + Duration::from_millis(2_999)), None);
        }
        assert_eq!(a.promised(), Ballot::ZERO);
        assert!(a.handle(LeaseMsg::Prepare { ballot: b(1, 0) }, t0 + Duration::from_secs(3)).is_some());
    }
}
