//! Leadership: the lease messages dispatched to the proposer, acceptor and
//! learner, what a lease change does to the oracle, who campaigns when, and
//! the hot path that serves timestamps only under a live lease.

use core::time::Duration;

use crate::ballot::{Ballot, NodeId};
use crate::lease::proposer::Step;
use crate::lease::{Acceptor, LeaseChange, LeaseMsg, LeaseTiming};
use crate::oracle::GetTsError;
use crate::time::Instant;
use crate::timestamp::Timestamp;

use super::rounds::RoundKind;
use super::*;

impl Node {
    pub(super) fn dispatch(&mut self, from: NodeId, msg: LeaseMsg, now: Instant) {
        match msg {
            LeaseMsg::Prepare { .. } | LeaseMsg::Accept { .. } | LeaseMsg::Release { .. } => {
                if let Some(reply) = self.acceptor.handle(msg, now) {
                    self.send(from, reply);
                }
                if let LeaseMsg::Release { ballot } = msg
                    && ballot.node == from
                    && from != self.cfg.id
                {
                    self.on_owner_release(from, ballot, now);
                }
            }
            LeaseMsg::Promise { .. } | LeaseMsg::Accepted { .. } | LeaseMsg::Rejected { .. } => {
                let step = self.proposer.handle(from, msg, now);
                self.apply(step, now);
            }
            LeaseMsg::LearnChosen { ballot, remaining_ms } => {
                if ballot.node == from {
                    let remaining = Duration::from_millis(u64::from(remaining_ms));
                    self.learner.learn(from, remaining, self.timing.proposer, now);
                    // Liveness: the owner's renewals raise the acceptors'
                    // promises; should it die, this node's first attempt
                    // must not be refused for a counter left far behind.
                    self.proposer.catch_up(ballot);
                    // Do not campaign against a live owner: wait out its hint.
                    // A yielded node does not campaign at all: no hint re-arms it.
                    if self.may_campaign()
                        && self.proposer.held(now).is_none()
                        && self.proposer.attempt().is_none()
                    {
                        if let Some(until) = self.learner.expires() {
                            self.proposer.schedule(Some(until + self.takeover_delay(from)));
                        }
                    }
                }
            }
        }
    }

    /// How long after an owner's hint runs out this node campaigns, should
    /// the owner have died. The acceptors hold its lease `D_A - D_P` longer
    /// than the hint (their timers are at least as long, and started no
    /// later), so nobody campaigns before that; then the owner's successor in
    /// id order goes first and every further node a quarter lease later, so
    /// the survivors do not duel (a duel costs a backoff of up to `D_P`).
    pub(super) fn takeover_delay(&self, owner: NodeId) -> Duration {
        let n = self.cfg.nodes;
        let rank = (self.cfg.id.0 + n - owner.0 - 1) % n;
        let extra = self.timing.acceptor.saturating_sub(self.timing.proposer);
        extra + self.timing.proposer / 20 + self.timing.proposer / 4 * u32::from(rank)
    }

    /// Graceful handoff: the owner `from` gave its lease up (a planned
    /// restart, or an abdication), so nobody need wait for it to expire. Its
    /// successor in id order campaigns at once; the others wait half a lease
    /// period, by which time the successor's `LearnChosen` has told them of
    /// the new owner (and reschedules them), so two campaigns do not duel.
    /// If the successor is down, the next one takes over after that pause.
    /// Only timing changes here: safety is the proposer's and acceptors'.
    ///
    /// The owner's renewals raised the acceptors' promises far above this
    /// node's ballot counter; an attempt below them would only be rejected
    /// and back off, so the counter catches up to the released ballot first.
    pub(super) fn on_owner_release(&mut self, from: NodeId, released: Ballot, now: Instant) {
        self.learner.forget(from);
        self.proposer.catch_up(released.max(self.acceptor.promised()));
        if !self.may_campaign() || self.proposer.held(now).is_some() || self.proposer.attempt().is_some() {
            return;
        }
        // A registered primary goes at once too: during a migration the
        // released lease is most often a yielding deferring leader's, and
        // only a primary can serve while the registration stands.
        let successor = NodeId((from.0 + 1) % self.cfg.nodes);
        let first = successor == self.cfg.id || self.cfg.mode == Mode::Primary;
        let at = if first { now } else { now + self.timing.proposer / 2 };
        self.proposer.schedule(Some(at));
    }

    /// Whether this node may start a campaign: not while yielded to a primary
    /// (deferring), not before its registration stands on a quorum (primary).
    pub(super) fn may_campaign(&self) -> bool {
        #[cfg(feature = "broken-variants")]
        if self.cfg.bugs.yield_rearmed {
            return self.cfg.mode == Mode::Deferring || self.registered;
        }
        match self.cfg.mode {
            Mode::Deferring => self.yielded.is_none(),
            Mode::Primary => self.registered,
        }
    }

    /// Carries out what the proposer asked for.
    pub(super) fn apply(&mut self, step: Step, now: Instant) {
        if let Some(msg) = step.broadcast {
            self.broadcast(msg);
        }
        match step.change {
            Some(LeaseChange::Acquired { ballot, deadline, fresh }) => {
                self.lease_deadline = Some(deadline);
                if fresh || self.fence.is_none() {
                    // A fresh acquisition begins a leadership: fence the store
                    // with its ballot and sync the window before serving (W1).
                    self.stop_serving();
                    self.fence = Some(ballot);
                    self.outputs.push_back(Output::Event(Event::Leading { fence: ballot }));
                    self.oracle.begin_sync();
                    self.start_round(RoundKind::Load, now);
                }
            }
            Some(LeaseChange::Lost) => {
                let was_leading = self.fence.is_some() || self.lease_deadline.is_some();
                self.lease_deadline = None;
                self.stop_serving();
                if was_leading {
                    self.outputs.push_back(Output::Event(Event::SteppedDown { reason: StepDown::LeaseLost }));
                }
            }
            None => {}
        }
    }

    /// GetTS: `count` timestamps, the last of which is returned. Served only
    /// while this node holds the lease with the margin to spare
    /// (`now + m < d`) and the oracle is synced. Allocates nothing.
    pub fn get_ts(&mut self, count: u32, now: Instant) -> Result<Timestamp, GetTsError> {
        let live = self.lease_live(now);
        if !live {
            self.oracle.check_count(count)?;
            return Err(GetTsError::NotLeader { leader: self.leader_hint() });
        }
        self.oracle.get_ts(count).map_err(|e| match e {
            GetTsError::NotLeader { .. } => GetTsError::NotLeader { leader: self.leader_hint() },
            other => other,
        })
    }

    /// The margin `m` the owner keeps before its deadline: it serves only
    /// while `now + m < d`.
    pub(super) fn serve_margin(cfg: &NodeConfig, timing: &LeaseTiming) -> Duration {
        #[cfg(feature = "broken-variants")]
        if cfg.bugs.serve_in_margin {
            return Duration::ZERO;
        }
        #[cfg(not(feature = "broken-variants"))]
        let _ = cfg;
        timing.margin
    }

    /// Whether the lease is held at `now` with the margin to spare: `now + m < d`.
    pub(super) fn lease_live(&self, now: Instant) -> bool {
        self.lease_deadline
            .is_some_and(|d| now.as_nanos().saturating_add(self.serve_margin_ns) < d.as_nanos())
    }

    /// The lease this node holds, its ballot and deadline `d`.
    pub fn lease(&self, now: Instant) -> Option<(Ballot, Instant)> {
        self.proposer.held(now).map(|h| (h.ballot, h.deadline))
    }

    /// Liveness: raises the ballot counter above `seen`, e.g. the fence the
    /// local store replica holds at start-up, so the first campaign after a
    /// restart is not refused by the store for a ballot below an older one.
    pub fn catch_up(&mut self, seen: Ballot) {
        self.proposer.catch_up(seen);
    }

    /// The acceptor (for inspection by tests and simulations).
    pub fn acceptor(&self) -> &Acceptor {
        &self.acceptor
    }

    /// P6: gives up the lease (e.g. at shutdown), so another node can take
    /// over without waiting for it to expire. Campaigns again after `D_P`
    /// unless `campaign_again` is false.
    pub fn release(&mut self, now: Instant, campaign_again: bool) {
        self.now = self.now.max(now);
        let next = (campaign_again && self.may_campaign()).then(|| now + self.timing.proposer);
        let step = self.proposer.release(now, next);
        self.apply(step, now);
        self.deliver_local(now);
    }

    /// Ends the leadership without a lease event: the oracle resets (only a
    /// new sync serves again) and the store round is forgotten.
    pub(super) fn stop_serving(&mut self) {
        self.oracle.reset();
        self.round = None;
        self.fence = None;
        self.next_update = Instant::NEVER;
    }

    /// A failed or fenced round ends the leadership and releases the lease
    /// (P6); the node campaigns again after a lease period, giving another
    /// node the first chance.
    pub(super) fn abdicate(&mut self, reason: StepDown, now: Instant) {
        let was_leading = self.fence.is_some() || self.lease_deadline.is_some();
        self.stop_serving();
        self.lease_deadline = None;
        let next = self.may_campaign().then(|| now + self.timing.proposer / 2);
        let step = self.proposer.release(now, next);
        if let Some(msg) = step.broadcast {
            self.broadcast(msg);
        }
        if was_leading {
            self.outputs.push_back(Output::Event(Event::SteppedDown { reason }));
        }
    }
}
