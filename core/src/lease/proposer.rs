//! The proposer (P1–P6): acquires, renews and releases a lease.

use core::time::Duration;

use crate::ballot::{Ballot, NodeId};
use crate::lease::Bugs;
use crate::lease::message::LeaseMsg;
use crate::lease::timing::LeaseTiming;
use crate::quorum::{NodeSet, majority};
use crate::rng::Rng;
use crate::time::{Instant, nanos};

/// What changed about the lease this proposer holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LeaseChange {
    /// The lease is held until `deadline` under `ballot`. `fresh` is false for
    /// a renewal of a lease still held, true for every other acquisition:
    /// the oracle re-syncs on fresh ones only.
    Acquired {
        /// The ballot that won.
        ballot: Ballot,
        /// The owner's deadline `d`, on its own clock.
        deadline: Instant,
        /// Whether this begins a new leadership.
        fresh: bool,
    },
    /// The lease ran out or was released.
    Lost,
}

/// What a proposer handler asks of its node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Step {
    /// Send to every acceptor (this node's included).
    pub broadcast: Option<LeaseMsg>,
    /// The held lease changed.
    pub change: Option<LeaseChange>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Phase {
    Idle,
    Preparing,
    Accepting,
}

/// Distinct responders, and (only for the broken variant) a plain counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
struct Tally {
    ids: NodeSet,
    scalar: u16,
}

impl Tally {
    fn add(&mut self, from: NodeId) {
        self.ids.insert(from);
        self.scalar = self.scalar.saturating_add(1);
    }

    fn count(&self, scalar: bool) -> u16 {
        if scalar { self.scalar } else { self.ids.len() }
    }
}

/// A lease held: its ballot and the owner's deadline `d`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Held {
    /// The winning ballot.
    pub ballot: Ballot,
    /// `d`: the lease is this node's while `now < d` (serving: `now + m < d`).
    pub deadline: Instant,
}

/// A PaxosLease proposer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Proposer {
    id: NodeId,
    restart: u64,
    nodes: u16,
    timing: LeaseTiming,
    bugs: Bugs,
    counter: u64,
    phase: Phase,
    ballot: Ballot,
    /// The attempt's deadline `d`, stored when Prepare is sent (P1, T1).
    deadline: Instant,
    renewal_base: Option<Ballot>,
    promises: Tally,
    /// Acceptors that refused the current phase (a blocking lease or a
    /// rejection); the attempt is abandoned once no quorum is left without them.
    refused: NodeSet,
    accepts: Tally,
    held: Option<Held>,
    next_attempt: Option<Instant>,
    rng: Rng,
}

impl Proposer {
    /// A proposer for node `id` of a cluster of `nodes`, in its start number
    /// `restart`. It makes its first attempt at `first_attempt` (if any).
    pub fn new(
        id: NodeId,
        nodes: u16,
        restart: u64,
        timing: LeaseTiming,
        seed: u64,
        first_attempt: Option<Instant>,
    ) -> Self {
        Proposer {
            id,
            restart,
            nodes,
            timing,
            bugs: Bugs::default(),
            counter: 0,
            phase: Phase::Idle,
            ballot: Ballot::ZERO,
            deadline: Instant::ZERO,
            renewal_base: None,
            promises: Tally::default(),
            refused: NodeSet::EMPTY,
            accepts: Tally::default(),
            held: None,
            next_attempt: first_attempt,
            rng: Rng::new(seed ^ u64::from(id.0).rotate_left(32) ^ restart),
        }
    }

    #[cfg(feature = "broken-variants")]
    pub(crate) fn with_bugs(mut self, bugs: Bugs) -> Self {
        self.bugs = bugs;
        self
    }

    /// The lease held at `now`, if any.
    pub fn held(&self, now: Instant) -> Option<Held> {
        self.held.filter(|h| now < h.deadline)
    }

    /// The ballot of the attempt in flight, if any.
    pub fn attempt(&self) -> Option<Ballot> {
        (self.phase != Phase::Idle).then_some(self.ballot)
    }

    /// The highest ballot counter this proposer has used or seen.
    pub fn counter(&self) -> u64 {
        self.counter
    }

    /// Liveness only: raise the counter above a ballot seen elsewhere (a
    /// `Rejected`, a reported lease, a store's `Fenced { by }`), so the next
    /// attempt is not refused for being low. Never a matter of safety.
    pub fn catch_up(&mut self, seen: Ballot) {
        self.counter = self.counter.max(seen.counter);
    }

    /// Schedules the next attempt no earlier than `at` (e.g. while a live
    /// owner is known, or after yielding). `None` stops campaigning.
    pub fn schedule(&mut self, at: Option<Instant>) {
        self.next_attempt = at;
    }

    /// When [`Proposer::handle_timeout`] must run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let attempt = (self.phase != Phase::Idle).then_some(self.deadline);
        [attempt, self.held.map(|h| h.deadline), self.next_attempt].into_iter().flatten().min()
    }

    /// Timers: the held lease running out, an attempt passing its deadline
    /// (P5), and the next attempt or renewal (P1).
    pub fn handle_timeout(&mut self, now: Instant) -> Step {
        let mut step = Step::default();
        if self.held.is_some_and(|h| now >= h.deadline) {
            self.held = None;
            step.change = Some(LeaseChange::Lost);
        }
        if self.phase != Phase::Idle && now >= self.deadline {
            self.abandon(now);
        }
        if self.phase == Phase::Idle && self.next_attempt.is_some_and(|t| now >= t) {
            step.broadcast = Some(self.start(now));
        }
        step
    }

    /// **P1**: a fresh ballot; remember the lease held now as the renewal
    /// base; store `d = now + D_P` *now*, as data (T1) — a deadline started
    /// later, at the promise quorum, lets a slow attempt outlive the
    /// acceptors' view of its lease (LateTimer).
    fn start(&mut self, now: Instant) -> LeaseMsg {
        self.counter += 1;
        self.ballot = Ballot::new(self.counter, self.restart, self.id);
        self.renewal_base = self.held(now).map(|h| h.ballot);
        self.deadline = if self.bugs.late_timer { Instant::NEVER } else { now + self.timing.proposer };
        self.phase = Phase::Preparing;
        self.promises = Tally::default();
        self.refused = NodeSet::EMPTY;
        self.accepts = Tally::default();
        self.next_attempt = None;
        LeaseMsg::Prepare { ballot: self.ballot }
    }

    /// **P5**: give up the attempt (stale replies then fail the ballot check),
    /// keep any lease still held, and retry after a seeded random backoff of
    /// 0.3–1.0 × `D_P` (of half the remaining lease, when renewing).
    fn abandon(&mut self, now: Instant) {
        self.phase = Phase::Idle;
        self.renewal_base = None;
        let span = match self.held(now) {
            Some(h) => h.deadline.saturating_since(now) / 2,
            None => self.timing.proposer,
        };
        self.next_attempt = Some(now + self.backoff(span));
    }

    fn backoff(&mut self, span: Duration) -> Duration {
        let ns = nanos(span);
        // 0.3 + 0.7·u of the span, u uniform in [0, 1).
        let frac = self.rng.next_u64() % 701 + 300;
        Duration::from_nanos(ns / 1000 * frac)
    }

    /// P5 early: once so many acceptors refused the current phase that no
    /// quorum is left, waiting for the deadline gains nothing.
    fn abandon_if_hopeless(&mut self, now: Instant) {
        if self.nodes - self.refused.len() < self.quorum() {
            self.abandon(now);
        }
    }

    fn quorum(&self) -> u16 {
        majority(self.nodes)
    }

    /// Handles a reply addressed to this proposer.
    pub fn handle(&mut self, from: NodeId, msg: LeaseMsg, now: Instant) -> Step {
        match msg {
            LeaseMsg::Promise { ballot, lease } => self.on_promise(from, ballot, lease, now),
            LeaseMsg::Accepted { ballot } => self.on_accepted(from, ballot, now),
            LeaseMsg::Rejected { refused, promised } => {
                self.catch_up(promised);
                // One rejection does not end the attempt: a majority may still
                // accept, and abandoning then would orphan the lease it holds
                // (blocking every proposer, this one included, for `D_A`).
                if self.phase != Phase::Idle && refused == self.ballot {
                    self.refused.insert(from);
                    self.abandon_if_hopeless(now);
                }
                Step::default()
            }
            _ => Step::default(),
        }
    }

    /// **P2**: count a promise for the current ballot as *open* only if it
    /// reports no live lease, or this proposer's own lease with exactly the
    /// renewal base, still live here. Any other live lease, this node's own
    /// under another ballot included (a stale Accept of an abandoned attempt
    /// can leave one: StaleOwnerOpen), blocks. Responders are counted as a
    /// set of distinct ids.
    fn on_promise(&mut self, from: NodeId, ballot: Ballot, lease: Option<Ballot>, now: Instant) -> Step {
        if self.phase != Phase::Preparing || ballot != self.ballot {
            return Step::default();
        }
        if let Some(l) = lease {
            self.catch_up(l);
        }
        let open = match lease {
            None => true,
            Some(l) if l.node == self.id && self.bugs.stale_owner_open => true,
            Some(l) => {
                l.node == self.id
                    && Some(l) == self.renewal_base
                    && self.held.is_some_and(|h| h.ballot == l && now < h.deadline)
            }
        };
        if open {
            self.promises.add(from);
        } else {
            self.refused.insert(from);
        }
        if self.promises.count(self.bugs.scalar_quorum) >= self.quorum() {
            if self.bugs.late_timer {
                self.deadline = now + self.timing.proposer;
            }
            // P3: an open quorum, and still before d.
            if now < self.deadline {
                self.phase = Phase::Accepting;
                self.refused = NodeSet::EMPTY;
                return Step { broadcast: Some(LeaseMsg::Accept { ballot: self.ballot }), change: None };
            }
            self.abandon(now);
        } else {
            self.abandon_if_hopeless(now);
        }
        Step::default()
    }

    /// **P4**: an accept quorum of distinct ids, with `now < d` checked here,
    /// in the handler, against the stored `d`: the lease is held until `d`.
    fn on_accepted(&mut self, from: NodeId, ballot: Ballot, now: Instant) -> Step {
        if self.phase != Phase::Accepting || ballot != self.ballot {
            return Step::default();
        }
        self.accepts.add(from);
        if self.accepts.count(self.bugs.scalar_quorum) < self.quorum() {
            return Step::default();
        }
        self.phase = Phase::Idle;
        // P4: the lease is held until `d` only if `d` is still ahead.
        if now >= self.deadline && !self.bugs.accept_late {
            self.abandon(now);
            return Step::default();
        }
        // A renewal only if the lease it renews is still held; otherwise the
        // leadership lapsed in between and this is a fresh acquisition.
        let fresh = self.renewal_base.is_none() || self.held(now).map(|h| h.ballot) != self.renewal_base;
        let deadline = self.deadline;
        self.held = Some(Held { ballot, deadline });
        self.renewal_base = None;
        // Renew at half the remaining lease.
        self.next_attempt = Some(now + deadline.saturating_since(now) / 2);
        let remaining_ms = u32::try_from(deadline.saturating_since(now).as_millis()).unwrap_or(u32::MAX);
        Step {
            broadcast: Some(LeaseMsg::LearnChosen { ballot, remaining_ms }),
            change: Some(LeaseChange::Acquired { ballot, deadline, fresh }),
        }
    }

    /// **P6**: stop acting as owner first, abandon any attempt in flight with
    /// no renewal base (so a renewal already under way can never make this
    /// node owner again), then tell the acceptors which exact lease to clear.
    /// The next attempt is at `next_attempt` (`None`: stop campaigning).
    pub fn release(&mut self, now: Instant, next_attempt: Option<Instant>) -> Step {
        let held = self.held.take();
        self.phase = Phase::Idle;
        self.renewal_base = None;
        self.next_attempt = next_attempt;
        Step {
            broadcast: held.filter(|h| now < h.deadline).map(|h| LeaseMsg::Release { ballot: h.ballot }),
            change: held.map(|_| LeaseChange::Lost),
        }
    }
}
