//! The node: leadership, the oracle and the replicated window store, composed
//! into the one state machine a runtime drives.
//!
//! The loop every runtime follows (str0m states it well): after every input
//! (`handle_timeout`, `handle_store_reply`, ...), drain [`Node::poll_output`]
//! until `None`, then arm one timer at [`Node::poll_timeout`]. GetTS is a plain
//! call, [`Node::get_ts`]: the hot path, which allocates nothing.

use std::collections::VecDeque;

use core::time::Duration;

use crate::ballot::{Ballot, NodeId};
use crate::lease::proposer::Step;
use crate::lease::{
    Acceptor, Bugs, Learner, LeaseChange, LeaseConfig, LeaseConfigError, LeaseMsg, LeaseTiming, Message,
    Proposer,
};
use crate::oracle::{GetTsError, Oracle, OracleConfig, OracleConfigError};
use crate::quorum::{MAX_NODES, NodeSet, majority};
use crate::rng::Rng;
use crate::store::{StoreOk, StoreOp, StoreReject, StoreReply, StoreRequest};
use crate::time::Instant;
use crate::timestamp::Timestamp;
use crate::wire::Role;

/// How a node writes the window store and whether it may campaign
/// (DESIGN.md, "Yielding to a primary"). Both modes compete for the same
/// lease, so at most one node serves at any instant whatever the modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Mode {
    /// Loads and saves check that no primary is registered (PD's service
    /// mode); on seeing one the node yields and stays out while it stands.
    #[default]
    Deferring,
    /// Registers itself on a quorum before it campaigns, then loads and saves
    /// without the check (PD's TSO microservice).
    Primary,
}

impl Mode {
    /// The mode as operators spell it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Mode::Deferring => "deferring",
            Mode::Primary => "primary",
        }
    }
}

/// How a node is configured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NodeConfig {
    /// This node's id, `0..nodes`.
    pub id: NodeId,
    /// The cluster's size: every node is an acceptor and a store replica.
    pub nodes: u16,
    /// The timestamp window's tunables.
    pub oracle: OracleConfig,
    /// The lease's tunables.
    pub lease: LeaseConfig,
    /// A store round (load or save on a quorum) not done within this time has
    /// failed: the node stops serving and releases its lease.
    pub store_timeout: Duration,
    /// Seeds the backoff jitter. Nodes of one cluster should differ.
    pub seed: u64,
    /// Deferring or primary.
    pub mode: Mode,
    /// How often a yielded node reads the primary registration from a
    /// quorum, and a primary retries its registration.
    pub primary_poll: Duration,
    /// Known-broken protocol variants; the default is the correct protocol.
    pub bugs: Bugs,
}

impl NodeConfig {
    /// Node `id` of a cluster of `nodes`, with the defaults.
    pub fn new(id: NodeId, nodes: u16) -> Self {
        NodeConfig {
            id,
            nodes,
            oracle: OracleConfig::default(),
            lease: LeaseConfig::default(),
            store_timeout: Duration::from_secs(2),
            seed: u64::from(id.0),
            mode: Mode::Deferring,
            primary_poll: Duration::from_secs(2),
            bugs: Bugs::default(),
        }
    }

    /// A single-node cluster with the defaults.
    pub fn single() -> Self {
        Self::new(NodeId(0), 1)
    }

    /// The timing digest peers compare in their handshake
    /// ([`crate::peer::timing_digest`]); `None` if the configuration is invalid.
    pub fn digest(&self) -> Option<u64> {
        let timing = self.validate().ok()?;
        Some(crate::peer::timing_digest(self.nodes, self.lease.drift_ppm, &timing))
    }
}

/// Why a configuration cannot run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The oracle's tunables are inconsistent.
    #[error(transparent)]
    Oracle(#[from] OracleConfigError),
    /// The lease timing is unsafe or unusable.
    #[error(transparent)]
    Lease(#[from] LeaseConfigError),
    /// The cluster size is not supported.
    #[error("cluster of {0} nodes: must be between 1 and {MAX_NODES}")]
    ClusterSize(u16),
    /// The node id is not below the cluster size.
    #[error("node id {id} is outside a cluster of {nodes}")]
    NodeId {
        /// The configured id.
        id: NodeId,
        /// The cluster size.
        nodes: u16,
    },
    /// A store timeout (or primary poll interval) of zero could never complete a round.
    #[error("store timeout and primary poll interval must be positive")]
    StoreTimeout,
}

impl NodeConfig {
    /// Checks the configuration and derives the lease timing (T2, T3).
    pub fn validate(&self) -> Result<LeaseTiming, ConfigError> {
        self.oracle.validate()?;
        if self.nodes == 0 || self.nodes > MAX_NODES {
            return Err(ConfigError::ClusterSize(self.nodes));
        }
        if self.id.0 >= self.nodes {
            return Err(ConfigError::NodeId { id: self.id, nodes: self.nodes });
        }
        if self.store_timeout.is_zero() || self.primary_poll.is_zero() {
            return Err(ConfigError::StoreTimeout);
        }
        #[cfg(feature = "broken-variants")]
        if self.bugs.unchecked_timing {
            return Ok(self.lease.timing_unchecked());
        }
        Ok(self.lease.timing()?)
    }
}

/// Why a node stopped leading.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StepDown {
    /// The lease ran out before it was renewed.
    LeaseLost,
    /// A store replica reports a newer leadership's fence.
    Fenced {
        /// The newer fence.
        by: Ballot,
    },
    /// A load or save failed or timed out on too many replicas.
    StoreFailed,
    /// A store replica has a primary registered: this deferring node yields.
    PrimaryExists {
        /// The primary.
        id: NodeId,
    },
}

/// Something the embedding program may want to log or act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Event {
    /// This node acquired the lease afresh, fenced by `fence`; it syncs
    /// the window before serving.
    Leading {
        /// The acquisition ballot that fences the store.
        fence: Ballot,
    },
    /// The sync is done: timestamps are served up to the window.
    Serving {
        /// The saved window end.
        window_end_ms: u64,
    },
    /// A periodic save extended the window.
    WindowExtended {
        /// The new window end.
        window_end_ms: u64,
    },
    /// The node stopped leading and serving.
    SteppedDown {
        /// Why.
        reason: StepDown,
    },
    /// A deferring node saw a registered primary: it stopped serving,
    /// released its lease and stays out while the registration stands.
    Yielded {
        /// The registered primary.
        primary: NodeId,
    },
    /// A yielded node read from a quorum that no primary is registered: it
    /// campaigns again.
    Resumed,
    /// This primary-mode node is registered on a quorum and campaigns.
    Registered {
        /// Its tag.
        tag: Ballot,
    },
    /// The wall clock runs far ahead of physical (PD's jet-lag warning).
    JetLag {
        /// How far, in milliseconds.
        lag_ms: u64,
    },
}

/// What the node asks its runtime to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Output {
    /// Deliver `msg` to node `to` and hand it over with [`Node::handle_message`].
    Send {
        /// The addressee (never this node: messages to itself are handled inside).
        to: NodeId,
        /// The message.
        msg: Message,
    },
    /// Perform `request` on `replica`'s store and report the reply with
    /// [`Node::handle_store_reply`].
    Store {
        /// The node whose store replica performs it.
        replica: NodeId,
        /// The operation and its id.
        request: StoreRequest,
    },
    /// Tell the embedding program.
    Event(Event),
}

/// A snapshot of the node for `status` requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Status {
    /// The node's role.
    pub role: Role,
    /// Who serves, as far as the node knows.
    pub leader: Option<NodeId>,
    /// The saved window end (0 unless serving).
    pub window_end_ms: u64,
    /// The last timestamp handed out (`ZERO` unless serving).
    pub current: Timestamp,
    /// The live lease this node's acceptor holds (its owner is the ballot's
    /// node), or the lease this node holds itself.
    pub lease: Option<Ballot>,
    /// How long that lease has left on this node's clock.
    pub lease_left: Duration,
    /// How long this node's acceptor stays silent after its start (A4).
    pub quarantine_left: Duration,
    /// The fence of this node's leadership, if it leads.
    pub fence: Option<Ballot>,
    /// The node's mode.
    pub mode: Mode,
    /// The primary registration this node last read or made (`(id, tag)`).
    pub primary: Option<(NodeId, Ballot)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum RoundKind {
    Load,
    Save {
        window_end_ms: u64,
    },
    /// A primary registers itself before it campaigns.
    Register,
    /// A yielded node reads the registration.
    ReadPrimary,
}

/// One store operation sent to every replica, done on a quorum of distinct
/// successes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Round {
    id: u64,
    kind: RoundKind,
    deadline: Instant,
    acks: NodeSet,
    failures: NodeSet,
    /// Read rounds: replicas that report a registration.
    registered: NodeSet,
    max_window_ms: u64,
}

/// The state machine of one leasetso node: a proposer, an acceptor and a
/// learner of the one lease, the oracle, the store rounds of its leadership,
/// and the primary registration rounds of its mode.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Node {
    cfg: NodeConfig,
    timing: LeaseTiming,
    proposer: Proposer,
    acceptor: Acceptor,
    learner: Learner,
    oracle: Oracle,
    /// The owner's deadline `d` of the lease held, copied for the hot path.
    lease_deadline: Option<Instant>,
    /// The margin `m` in nanoseconds, fixed at construction: the hot path's
    /// lease check `now + m < d` then costs an add and a compare, not a
    /// `Duration` conversion per call.
    serve_margin_ns: u64,
    /// The acquisition ballot of the current leadership, if leading. It fences
    /// every load and save of that leadership; renewals keep it.
    fence: Option<Ballot>,
    round: Option<Round>,
    /// A registration or registration-read round (never the leadership's).
    admin: Option<Round>,
    /// When the next registration or read round starts (`NEVER`: none due).
    next_admin: Instant,
    /// Deferring: the primary this node yielded to, while yielded.
    yielded: Option<NodeId>,
    /// Primary: registered on a quorum (so it may campaign).
    registered: bool,
    /// The registration last read or made, for status.
    primary_seen: Option<(NodeId, Ballot)>,
    /// This start's restart counter: request ids and the primary tag carry it.
    restart: u64,
    next_request_id: u64,
    next_update: Instant,
    /// The latest time any input carried, for status snapshots.
    now: Instant,
    /// Messages this node sends itself, handled before the input returns.
    local: VecDeque<Message>,
    outputs: VecDeque<Output>,
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
    pub fn handle_message(&mut self, from: NodeId, msg: Message, now: Instant) {
        self.now = self.now.max(now);
        if from.0 >= self.cfg.nodes || from == self.cfg.id {
            return; // Not a member, or a forged self-address: ignore.
        }
        self.dispatch(from, msg, now);
        self.deliver_local(now);
    }

    fn dispatch(&mut self, from: NodeId, msg: Message, now: Instant) {
        match msg.msg {
            LeaseMsg::Prepare { .. } | LeaseMsg::Accept { .. } | LeaseMsg::Release { .. } => {
                if let Some(reply) = self.acceptor.handle(msg.msg, now) {
                    self.send(from, Message { msg: reply });
                }
                if let LeaseMsg::Release { ballot } = msg.msg
                    && ballot.node == from
                    && from != self.cfg.id
                {
                    self.on_owner_release(from, ballot, now);
                }
            }
            LeaseMsg::Promise { .. } | LeaseMsg::Accepted { .. } | LeaseMsg::Rejected { .. } => {
                let step = self.proposer.handle(from, msg.msg, now);
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
    fn takeover_delay(&self, owner: NodeId) -> Duration {
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
    fn on_owner_release(&mut self, from: NodeId, released: Ballot, now: Instant) {
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
    fn may_campaign(&self) -> bool {
        #[cfg(feature = "broken-variants")]
        if self.cfg.bugs.yield_rearmed {
            return self.cfg.mode == Mode::Deferring || self.registered;
        }
        match self.cfg.mode {
            Mode::Deferring => self.yielded.is_none(),
            Mode::Primary => self.registered,
        }
    }

    /// Handles the messages this node sent itself, in order.
    fn deliver_local(&mut self, now: Instant) {
        while let Some(msg) = self.local.pop_front() {
            self.dispatch(self.cfg.id, msg, now);
        }
    }

    fn send(&mut self, to: NodeId, msg: Message) {
        if to == self.cfg.id {
            self.local.push_back(msg);
        } else {
            self.outputs.push_back(Output::Send { to, msg });
        }
    }

    fn broadcast(&mut self, msg: LeaseMsg) {
        let msg = Message { msg };
        for to in 0..self.cfg.nodes {
            self.send(NodeId(to), msg);
        }
    }

    /// Carries out what the proposer asked for.
    fn apply(&mut self, step: Step, now: Instant) {
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

    /// A replica's reply to a store request this node sent.
    ///
    /// A reply to a round that is over is still read for what must not be
    /// missed (DESIGN.md, "Store contract"): `PrimaryExists` makes a
    /// deferring node yield even after its save reached a quorum without
    /// it, and `Fenced` by a ballot above this leadership's fence ends it.
    pub fn handle_store_reply(
        &mut self,
        replica: NodeId,
        request_id: u64,
        reply: StoreReply,
        now: Instant,
        wall_ms: u64,
    ) {
        self.now = self.now.max(now);
        if replica.0 >= self.cfg.nodes {
            return;
        }
        if self.admin.is_some_and(|r| r.id == request_id) {
            self.admin_reply(replica, reply, now);
            self.deliver_local(now);
            return;
        }
        let Some(round) = self.round.as_mut().filter(|r| r.id == request_id) else {
            self.late_reply(request_id, reply, now);
            self.deliver_local(now);
            return;
        };
        match (round.kind, reply) {
            (RoundKind::Load, Ok(StoreOk::Loaded { window_end_ms })) => {
                if round.acks.insert(replica) {
                    round.max_window_ms = round.max_window_ms.max(window_end_ms);
                }
            }
            // A replica already at or above the window holds it: success.
            (RoundKind::Save { .. }, Ok(StoreOk::Saved) | Err(StoreReject::NotGreater { .. })) => {
                #[cfg(feature = "broken-variants")]
                if self.cfg.bugs.abdicate_on_not_greater
                    && matches!(reply, Err(StoreReject::NotGreater { .. }))
                {
                    self.abdicate(StepDown::StoreFailed, now);
                    self.deliver_local(now);
                    return;
                }
                round.acks.insert(replica);
            }
            (_, Err(StoreReject::Fenced { by })) => {
                // A newer leadership loaded: stop at once, and catch up.
                self.proposer.catch_up(by);
                self.abdicate(StepDown::Fenced { by }, now);
                self.deliver_local(now);
                return;
            }
            (_, Err(StoreReject::PrimaryExists { id })) => {
                self.yield_to(id, now);
                self.deliver_local(now);
                return;
            }
            _ => {
                round.failures.insert(replica);
            }
        }
        let quorum = majority(self.cfg.nodes);
        let round = *round;
        if round.acks.len() >= quorum {
            self.round = None;
            self.round_done(round, now, wall_ms);
        } else if self.cfg.nodes - round.failures.len() < quorum {
            self.abdicate(StepDown::StoreFailed, now);
        }
        self.deliver_local(now);
    }

    /// A reply to a round of this start that is over.
    fn late_reply(&mut self, request_id: u64, reply: StoreReply, now: Instant) {
        if request_id >> 32 != self.restart {
            return; // An earlier incarnation's: nothing it says concerns this one.
        }
        match reply {
            Err(StoreReject::PrimaryExists { id }) => {
                #[cfg(feature = "broken-variants")]
                if self.cfg.bugs.ignore_late_primary {
                    return;
                }
                self.yield_to(id, now);
            }
            Err(StoreReject::Fenced { by }) if self.fence.is_some_and(|f| f < by) => {
                self.proposer.catch_up(by);
                self.abdicate(StepDown::Fenced { by }, now);
            }
            _ => {}
        }
    }

    /// A reply to a registration or registration-read round.
    fn admin_reply(&mut self, replica: NodeId, reply: StoreReply, now: Instant) {
        let Some(round) = self.admin.as_mut() else { return };
        match reply {
            Ok(StoreOk::Primary { registered }) => {
                if registered.is_some() {
                    self.primary_seen = registered;
                }
                match (round.kind, registered) {
                    (RoundKind::Register, _) | (RoundKind::ReadPrimary, None) => {
                        round.acks.insert(replica);
                    }
                    _ => {
                        round.registered.insert(replica);
                    }
                }
            }
            _ => {
                round.failures.insert(replica);
            }
        }
        let round = *round;
        let quorum = majority(self.cfg.nodes);
        let answered = round.acks.len() + round.registered.len() + round.failures.len();
        if round.acks.len() >= quorum {
            self.admin = None;
            match round.kind {
                RoundKind::Register => {
                    self.registered = true;
                    let tag = self.tag();
                    self.primary_seen = Some((self.cfg.id, tag));
                    self.outputs.push_back(Output::Event(Event::Registered { tag }));
                    self.proposer.schedule(Some(now));
                }
                _ => {
                    // A quorum has no registration: every later checked load
                    // or save meets one of these replicas, so campaigning is
                    // safe again (and a registration made later still stops us).
                    self.yielded = None;
                    self.primary_seen = None;
                    self.outputs.push_back(Output::Event(Event::Resumed));
                    self.proposer.schedule(Some(now));
                }
            }
        } else if answered >= self.cfg.nodes
            || self.cfg.nodes - round.failures.len() - round.registered.len() < quorum
        {
            self.admin = None;
            self.next_admin = now + self.cfg.primary_poll;
        }
    }

    /// This start's registration tag: a ballot of this node's, unique across
    /// its restarts.
    fn tag(&self) -> Ballot {
        Ballot::new(0, self.restart, self.cfg.id)
    }

    /// A deferring node saw `PrimaryExists`: reset, release (P6) and stay out
    /// (Yielded) until a quorum reports no registration. A primary never
    /// checks, so never gets here.
    fn yield_to(&mut self, primary: NodeId, now: Instant) {
        if self.cfg.mode != Mode::Deferring {
            return;
        }
        let first = self.yielded.is_none();
        self.yielded = Some(primary);
        self.abdicate(StepDown::PrimaryExists { id: primary }, now);
        if first {
            self.outputs.push_back(Output::Event(Event::Yielded { primary }));
            if self.admin.is_none() {
                self.next_admin = now + self.cfg.primary_poll;
            }
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
    fn serve_margin(cfg: &NodeConfig, timing: &LeaseTiming) -> Duration {
        #[cfg(feature = "broken-variants")]
        if cfg.bugs.serve_in_margin {
            return Duration::ZERO;
        }
        #[cfg(not(feature = "broken-variants"))]
        let _ = cfg;
        timing.margin
    }

    /// Whether the lease is held at `now` with the margin to spare: `now + m < d`.
    fn lease_live(&self, now: Instant) -> bool {
        self.lease_deadline
            .is_some_and(|d| now.as_nanos().saturating_add(self.serve_margin_ns) < d.as_nanos())
    }

    /// The node's role and what it knows of the window, as of the latest
    /// input's time.
    pub fn status(&self) -> Status {
        self.status_at(self.now)
    }

    /// The same at `now` (a status query between inputs: lease and
    /// quarantine time left, and the hint, measured at the query).
    pub fn status_at(&self, now: Instant) -> Status {
        let role = match (self.fence, self.oracle.is_serving(), self.yielded) {
            (_, _, Some(_)) => Role::Yielded,
            (Some(_), true, _) => Role::Leader,
            (Some(_), false, _) => Role::Syncing,
            (None, _, _) => Role::Follower,
        };
        let now = now.max(self.now);
        let acceptor = &self.acceptor;
        let (lease, lease_left) = match (self.proposer.held(now), acceptor.lease_expiry(now)) {
            (Some(h), _) => (Some(h.ballot), h.deadline.saturating_since(now)),
            (None, Some((b, until))) => (Some(b), until.saturating_since(now)),
            (None, None) => (None, Duration::ZERO),
        };
        Status {
            role,
            leader: self.hint_at(now),
            window_end_ms: self.oracle.window_end_ms(),
            current: self.oracle.current().unwrap_or(Timestamp::ZERO),
            lease,
            lease_left,
            quarantine_left: acceptor.quarantine_left(now),
            fence: self.fence,
            mode: self.cfg.mode,
            primary: self.primary_seen,
        }
    }

    /// Who holds the lease, as far as this node knows.
    pub fn leader_hint(&self) -> Option<NodeId> {
        self.hint_at(self.now)
    }

    fn hint_at(&self, now: Instant) -> Option<NodeId> {
        if self.lease_deadline.is_some_and(|d| now < d) {
            return Some(self.cfg.id);
        }
        self.learner.owner(now).filter(|&o| o != self.cfg.id)
    }

    /// Whether this node serves at `now`: the lease held with margin, and the
    /// window synced. The simulator's safety check reads this.
    pub fn is_serving(&self, now: Instant) -> bool {
        self.lease_live(now) && self.oracle.is_serving()
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

    /// The primary this deferring node yielded to, while it stays out.
    pub fn yielded_to(&self) -> Option<NodeId> {
        self.yielded
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

    fn start_round(&mut self, kind: RoundKind, now: Instant) {
        let Some(fence) = self.fence else { return };
        let round = self.new_round(kind, now);
        let id = round.id;
        self.round = Some(round);
        // Deferring nodes check for a primary in the same transaction as the
        // write (S2); a primary writes regardless.
        let check_primary = self.cfg.mode == Mode::Deferring;
        let op = match kind {
            RoundKind::Load => StoreOp::Load { fence, check_primary },
            RoundKind::Save { window_end_ms } => StoreOp::Save { window_end_ms, fence, check_primary },
            RoundKind::Register | RoundKind::ReadPrimary => return,
        };
        self.fan_out(id, op);
    }

    /// A round with a fresh request id, done or failed by `now + store_timeout`.
    fn new_round(&mut self, kind: RoundKind, now: Instant) -> Round {
        let id = self.next_request_id;
        self.next_request_id += 1;
        Round {
            id,
            kind,
            deadline: now + self.cfg.store_timeout,
            acks: NodeSet::EMPTY,
            failures: NodeSet::EMPTY,
            registered: NodeSet::EMPTY,
            max_window_ms: 0,
        }
    }

    /// A registration (primary) or registration read (yielded) on every replica.
    fn start_admin(&mut self, kind: RoundKind, now: Instant) {
        let round = self.new_round(kind, now);
        let id = round.id;
        self.admin = Some(round);
        let op = match kind {
            RoundKind::Register => StoreOp::RegisterPrimary { id: self.cfg.id, tag: self.tag() },
            _ => StoreOp::ReadPrimary,
        };
        self.fan_out(id, op);
    }

    fn fan_out(&mut self, id: u64, op: StoreOp) {
        for replica in 0..self.cfg.nodes {
            self.outputs
                .push_back(Output::Store { replica: NodeId(replica), request: StoreRequest { id, op } });
        }
    }

    fn round_done(&mut self, round: Round, now: Instant, wall_ms: u64) {
        match round.kind {
            RoundKind::Load => match self.oracle.loaded(round.max_window_ms, wall_ms) {
                Some(window_end_ms) => self.start_round(RoundKind::Save { window_end_ms }, now),
                None => self.abdicate(StepDown::StoreFailed, now),
            },
            RoundKind::Register | RoundKind::ReadPrimary => {}
            RoundKind::Save { window_end_ms } => {
                let was_serving = self.oracle.is_serving();
                if !self.oracle.saved(window_end_ms) {
                    return;
                }
                let event = if was_serving {
                    Event::WindowExtended { window_end_ms }
                } else {
                    self.next_update = now + self.cfg.oracle.update_interval;
                    Event::Serving { window_end_ms }
                };
                self.outputs.push_back(Output::Event(event));
            }
        }
    }

    /// Ends the leadership without a lease event: the oracle resets (only a
    /// new sync serves again) and the store round is forgotten.
    fn stop_serving(&mut self) {
        self.oracle.reset();
        self.round = None;
        self.fence = None;
        self.next_update = Instant::NEVER;
    }

    /// A failed or fenced round ends the leadership and releases the lease
    /// (P6); the node campaigns again after a lease period, giving another
    /// node the first chance.
    fn abdicate(&mut self, reason: StepDown, now: Instant) {
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
