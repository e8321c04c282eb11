//! The node's state, its construction, and the input loop a runtime drives
//! it with: timers and peer messages in, outputs drained.

use std::collections::VecDeque;

use crate::ballot::{Ballot, NodeId};
use crate::lease::{Acceptor, Learner, LeaseMsg, LeaseTiming, Proposer};
use crate::oracle::Oracle;
use crate::rng::Rng;
use crate::time::Instant;

use super::rounds::{Round, RoundKind};
use super::*;

/// The state machine of one leasetso node: a proposer, an acceptor and a
/// learner of the one lease, the oracle, the store rounds of its leadership,
/// and the primary registration rounds of its mode.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Node {
    pub(super) cfg: NodeConfig,
    pub(super) timing: LeaseTiming,
    pub(super) proposer: Proposer,
    pub(super) acceptor: Acceptor,
    pub(super) learner: Learner,
    pub(super) oracle: Oracle,
    /// The owner's deadline `d` of the lease held, copied for the hot path.
    pub(super) lease_deadline: Option<Instant>,
    /// The margin `m` in nanoseconds, fixed at construction: the hot path's
    /// lease check `now + m < d` then costs an add and a compare, not a
    /// `Duration` conversion per call.
    pub(super) serve_margin_ns: u64,
    /// The acquisition ballot of the current leadership, if leading. It fences
    /// every load and save of that leadership; renewals keep it.
    pub(super) fence: Option<Ballot>,
    pub(super) round: Option<Round>,
    /// A registration or registration-read round (never the leadership's).
    pub(super) admin: Option<Round>,
    /// When the next registration or read round starts (`NEVER`: none due).
    pub(super) next_admin: Instant,
    /// Deferring: the primary this node yielded to, while yielded.
    pub(super) yielded: Option<NodeId>,
    /// Primary: registered on a quorum (so it may campaign).
    pub(super) registered: bool,
    /// The registration last read or made, for status.
    pub(super) primary_seen: Option<(NodeId, Ballot)>,
    /// This start's restart counter: request ids and the primary tag carry it.
    pub(super) restart: u64,
    pub(super) next_request_id: u64,
    pub(super) next_update: Instant,
    /// The latest time any input carried, for status snapshots.
    pub(super) now: Instant,
    /// Messages this node sends itself, handled before the input returns.
    pub(super) local: VecDeque<LeaseMsg>,
    pub(super) outputs: VecDeque<Output>,
}

impl Node {
    /// A node started at `now`.
    ///
    /// `restart` is the store's `bump_restart()` for this start, so this
    /// start's ballots differ from every earlier start's. Its acceptors are
    /// quarantined for `Q` (A4), except in a cluster of one, where the only
    /// proposer that could have counted on a forgotten promise is this node's
    /// own earlier incarnation, which is gone (the store's lock keeps a second
    /// process off the same data).
    pub fn new(cfg: NodeConfig, restart: u64, now: Instant) -> Result<Self, ConfigError> {
        let timing = cfg.validate()?;
        #[cfg(feature = "broken-variants")]
        let restart = if cfg.bugs.ignore_restart { 0 } else { restart };
        let solo = cfg.nodes == 1;
        let mut rng = Rng::new(cfg.seed ^ restart.rotate_left(17));
        // Nodes of a cluster start their first campaign at spread-out times.
        let first =
            if solo { now } else { now + timing.proposer / 4 * (rng.next_u64() % 1000) as u32 / 1000 };
        // A primary campaigns only once it is registered on a quorum.
        let first = (cfg.mode == Mode::Deferring).then_some(first);
        let proposer = Proposer::new(cfg.id, cfg.nodes, restart, timing, rng.next_u64(), first);
        let acceptor = Acceptor::new(&timing, now, !solo);
        #[cfg(feature = "broken-variants")]
        let (proposer, acceptor) = (proposer.with_bugs(cfg.bugs), acceptor.with_bugs(cfg.bugs));
        let n = usize::from(cfg.nodes);
        Ok(Node {
            cfg,
            timing,
            proposer,
            acceptor,
            learner: Learner::new(),
            oracle: Oracle::new(cfg.oracle),
            lease_deadline: None,
            serve_margin_ns: crate::time::nanos(Self::serve_margin(&cfg, &timing)),
            fence: None,
            round: None,
            admin: None,
            next_admin: if cfg.mode == Mode::Primary { now } else { Instant::NEVER },
            yielded: None,
            registered: false,
            primary_seen: None,
            restart,
            // Ids carry the restart counter, so a reply to a request of an
            // earlier incarnation can never match a round of this one.
            next_request_id: (restart << 32) | 1,
            next_update: Instant::NEVER,
            now,
            // Per input: a few broadcasts and one store round fan out to every
            // node, plus a handful of events. Drained after every input.
            local: VecDeque::with_capacity(8),
            outputs: VecDeque::with_capacity(8 * n + 16),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &NodeConfig {
        &self.cfg
    }

    /// The lease timing derived from the configuration.
    pub fn timing(&self) -> &LeaseTiming {
        &self.timing
    }

    /// The next output, until `None`.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When the runtime must call [`Node::handle_timeout`] next.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let round = self.round.map(|r| r.deadline);
        let admin = self.admin.map(|r| r.deadline);
        let next_admin = (self.next_admin != Instant::NEVER).then_some(self.next_admin);
        let update = (self.next_update != Instant::NEVER).then_some(self.next_update);
        [self.proposer.poll_timeout(), round, admin, next_admin, update].into_iter().flatten().min()
    }

    /// Timers: the lease (expiry, attempts, renewals), store rounds that time
    /// out, and the oracle's periodic update.
    pub fn handle_timeout(&mut self, now: Instant, wall_ms: u64) {
        self.now = self.now.max(now);
        if self.round.is_some_and(|r| now >= r.deadline) {
            self.abdicate(StepDown::StoreFailed, now);
        }
        if let Some(round) = self.admin.filter(|r| now >= r.deadline) {
            // Too few answers. A primary retries its registration at once (it
            // waited a store timeout already; it cannot campaign without it);
            // a yielded node reads again at the next poll.
            self.admin = None;
            self.next_admin = match round.kind {
                RoundKind::Register => now,
                _ => now + self.cfg.primary_poll,
            };
        }
        if self.admin.is_none() && now >= self.next_admin {
            self.next_admin = Instant::NEVER;
            if self.cfg.mode == Mode::Primary && !self.registered {
                self.start_admin(RoundKind::Register, now);
            } else if self.yielded.is_some() {
                self.start_admin(RoundKind::ReadPrimary, now);
            }
        }
        let step = self.proposer.handle_timeout(now);
        self.apply(step, now);
        if now >= self.next_update {
            self.next_update = now + self.cfg.oracle.update_interval;
            let update = self.oracle.update(wall_ms);
            if let Some(lag_ms) = update.jet_lag_ms {
                self.outputs.push_back(Output::Event(Event::JetLag { lag_ms }));
            }
            if let Some(window_end_ms) = update.save_window_ms {
                self.start_round(RoundKind::Save { window_end_ms }, now);
            }
        }
        self.deliver_local(now);
    }

    /// A lease message from node `from`.
    pub fn handle_message(&mut self, from: NodeId, msg: LeaseMsg, now: Instant) {
        self.now = self.now.max(now);
        if from.0 >= self.cfg.nodes || from == self.cfg.id {
            return; // Not a member, or a forged self-address: ignore.
        }
        // B1: a ballot no correct member sends is never promised, accepted,
        // learned or caught up to.
        if let Err(what) = crate::bounds::check_lease_msg(&msg, from, self.held_counter(), self.cfg.nodes) {
            self.outputs.push_back(Output::Event(Event::Refused { from, what }));
            return;
        }
        self.dispatch(from, msg, now);
        self.deliver_local(now);
    }

    /// The highest ballot counter this node has used, seen or promised: what
    /// B1 bounds a peer's ballots against.
    pub fn held_counter(&self) -> u64 {
        self.proposer.counter().max(self.acceptor.promised().counter)
    }

    /// Handles the messages this node sent itself, in order.
    pub(super) fn deliver_local(&mut self, now: Instant) {
        while let Some(msg) = self.local.pop_front() {
            self.dispatch(self.cfg.id, msg, now);
        }
    }

    pub(super) fn send(&mut self, to: NodeId, msg: LeaseMsg) {
        if to == self.cfg.id {
            self.local.push_back(msg);
        } else {
            self.outputs.push_back(Output::Send { to, msg });
        }
    }

    pub(super) fn broadcast(&mut self, msg: LeaseMsg) {
        for to in 0..self.cfg.nodes {
            self.send(NodeId(to), msg);
        }
    }
}
