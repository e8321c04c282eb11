//! The driver's work on the node, minus its waiting: what reaches it
//! ([`Input`]), one step over the inputs that arrived ([`step`]), handing the
//! outputs on ([`Outs::dispatch`]), the graceful release ([`release`]) and
//! building a node whose restart counter the peers told ([`recovered_node`]).
//!
//! [`DriverLoop`] is the whole driver but its waiting: a runtime's driver (a
//! thread on a channel with a timeout, a task on an async channel raced
//! against a timer) asks it how long to wait, pushes what arrived, and calls
//! [`DriverLoop::step`] with its own ways to reach the peers and the store
//! thread. The order of the core's loop rule is kept here, once: every
//! input is followed by draining the node's outputs, a due timeout is fed
//! after the inputs, and the outputs are handed on only once the lock is
//! released.
//!
//! A node whose data dir lost its restart counter (a new node, or a
//! replaced disk) starts here too, before it may campaign or accept: it
//! learns from a quorum of peers the highest ballot they saw from its id and
//! starts above it, so no ballot of its lost incarnation is ever reused. The
//! decisions (whom to ask when, what counts as a quorum, where to start) are
//! the core's [`Recovery`]; the loop sends its queries and builds the node.

use std::time::Duration;

use crate::quiet;

use leasetso_core::{
    Ballot, Event, Instant, LeaseMsg, Node, NodeConfig, NodeId, Output, PeerFrame, Recovered, Recovery,
    StoreReply, StoreRequest,
};
use leasetso_sled::SledStore;

use crate::clock::wall_ms;
use crate::kit::Kit;

/// The longest the driver sleeps without looking at the clock again. Its
/// sleep is measured on a clock that may stop during a suspend while the
/// node's clock does not, so it wakes at least this often to catch up.
pub const MAX_DRIVER_SLEEP: Duration = Duration::from_secs(1);
/// Inputs taken per lock of the node, at most.
pub const BATCH: usize = 256;
/// How long a shutdown waits for the Release to reach the peers.
pub const RELEASE_FLUSH: Duration = Duration::from_millis(500);
/// Inputs queued for the driver at most; peer readers wait when it is full,
/// which slows their peers through TCP rather than growing memory.
pub const DRIVER_QUEUE: usize = 4096;

/// What reaches the driver.
#[derive(Debug)]
pub enum Input {
    /// A lease message from a peer (its id is the link's, from the handshake).
    Peer {
        /// The sender.
        from: NodeId,
        /// The message.
        msg: LeaseMsg,
    },
    /// A replica's answer to one of this node's store requests.
    StoreReply {
        /// The replica.
        replica: NodeId,
        /// The request's id.
        id: u64,
        /// The answer.
        reply: StoreReply,
    },
    /// A peer's answer to this node's restart query.
    RestartInfo {
        /// The peer.
        from: NodeId,
        /// The highest ballot of this node's it has seen.
        highest: Ballot,
    },
    /// The server stops: release the lease and exit.
    Stop,
}

/// A cluster node still to be built: it learns its restart counter from
/// its peers first (every start: its data dir may be an older copy).
#[derive(Debug)]
pub struct Pending {
    /// The node's configuration.
    pub cfg: NodeConfig,
    /// Its replica, whose restart counter is raised once the peers answered.
    pub store: SledStore,
    /// The restart counter the data dir held (0: none, a new or replaced disk).
    pub stored_restart: u64,
}

/// How long the driver may wait for an input when the node's next deadline
/// is `next`: until it, but never longer than [`MAX_DRIVER_SLEEP`].
pub fn wait(next: Option<Instant>, now: Instant) -> Duration {
    next.map_or(MAX_DRIVER_SLEEP, |d| d.saturating_since(now).min(MAX_DRIVER_SLEEP))
}

/// Outputs drained from the node, handed on once its lock is released.
///
/// Allocated once per driver with room for a busy step of the cluster's
/// size, and drained, not replaced, so a step allocates nothing.
#[derive(Debug)]
pub struct Outs {
    sends: Vec<(NodeId, LeaseMsg)>,
    stores: Vec<(NodeId, StoreRequest)>,
    events: Vec<Event>,
}

impl Outs {
    /// Empty, with room for a step of a cluster of `nodes`.
    pub fn new(nodes: u16) -> Self {
        let cap = 8 * usize::from(nodes) + 16;
        Outs {
            sends: Vec::with_capacity(cap),
            stores: Vec::with_capacity(cap),
            events: Vec::with_capacity(16),
        }
    }

    /// Drains the node's outputs (the core's loop rule: after every input).
    pub fn drain(&mut self, node: &mut Node) {
        while let Some(output) = node.poll_output() {
            match output {
                Output::Send { to, msg } => self.sends.push((to, msg)),
                Output::Store { replica, request } => self.stores.push((replica, request)),
                Output::Event(event) => self.events.push(event),
            }
        }
    }

    /// Hands the drained outputs on, never waiting: lease messages and
    /// remote store requests to `peer` (a bounded link queue that drops what
    /// does not fit), this node's own store requests to `local` (the store
    /// thread's bounded queue; `false` when it is full), and events to the
    /// log.
    pub fn dispatch(
        &mut self,
        me: NodeId,
        mut peer: impl FnMut(NodeId, PeerFrame),
        mut local: impl FnMut(StoreRequest) -> bool,
    ) {
        for (to, msg) in self.sends.drain(..) {
            peer(to, PeerFrame::Lease(msg));
        }
        for (replica, request) in self.stores.drain(..) {
            if replica == me {
                if !local(request) {
                    // The round times out and the node steps down: the
                    // store is far behind, which is what that is for.
                    tracing::warn!("store queue full; request dropped");
                }
            } else {
                peer(replica, PeerFrame::Store(request));
            }
        }
        for event in self.events.drain(..) {
            report(event);
        }
    }
}

/// What one [`step`] left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    /// An [`Input::Stop`] was among the inputs: release and exit.
    pub stop: bool,
    /// The node's next deadline.
    pub next: Option<Instant>,
}

/// Feeds the node every input of `inputs` (emptying it, keeping its room),
/// draining its outputs after each, then its timeout if it is due.
pub fn step(node: &mut Node, inputs: &mut Vec<Input>, outs: &mut Outs, now: Instant, wall_ms: u64) -> Step {
    let mut stop = false;
    for input in inputs.drain(..) {
        match input {
            Input::Peer { from, msg } => {
                if let LeaseMsg::Release { ballot } = msg {
                    tracing::debug!(peer = from.0 + 1, %ballot, "the owner released its lease");
                }
                node.handle_message(from, msg, now)
            }
            Input::StoreReply { replica, id, reply } => {
                node.handle_store_reply(replica, id, reply, now, wall_ms)
            }
            Input::RestartInfo { .. } => {} // Late answers: the node is built.
            Input::Stop => stop = true,
        }
        outs.drain(node);
    }
    if node.poll_timeout().is_some_and(|t| t <= now) {
        node.handle_timeout(now, wall_ms);
        outs.drain(node);
    }
    Step { stop, next: node.poll_timeout() }
}

/// Gives the lease up (a graceful handoff: the peers take over at once
/// instead of waiting for the lease to expire) and drains the Release into
/// `outs`. Returns whether the node was leading. The step-down this reports
/// is the release asked for, not a failure, so its event is dropped.
pub fn release(node: &mut Node, outs: &mut Outs, now: Instant) -> bool {
    let leading = node.status().fence.is_some();
    node.release(now, false);
    outs.drain(node);
    outs.events.clear();
    leading
}

/// Logs the end of [`release`].
pub fn report_released(leading: Option<bool>) {
    if leading == Some(true) {
        tracing::info!("lease released");
    } else {
        tracing::debug!("lease released (was not leading)");
    }
}

/// Builds the node of `pending` once a quorum of peers answered the restart
/// query (the core's [`leasetso_core::Recovery`]): stores the restart
/// counter above every ballot they saw from this node, builds the node and
/// catches it up to them and to its own replica's fence. `None` (logged) if
/// the counter cannot be stored or the configuration cannot run. A
/// blocking store call, but a rare one, made before the node serves.
pub fn recovered_node(pending: Pending, recovered: Recovered, now: Instant) -> Option<Node> {
    let Pending { cfg, store, .. } = pending;
    let restart = match store.raise_restart(recovered.restart) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot store the restart counter; the node does not start");
            return None;
        }
    };
    tracing::info!(
        restart,
        highest = %recovered.catch_up,
        "restart counter recovered from the peers: starting above every ballot they saw from this node"
    );
    let mut node = match Node::new(cfg, restart, now) {
        Ok(node) => node,
        Err(e) => {
            tracing::error!(error = %e, "invalid node configuration");
            return None;
        }
    };
    node.catch_up(recovered.catch_up);
    if let Ok(fence) = store.fence() {
        node.catch_up(fence);
    }
    Some(node)
}

/// How often a node still waiting for its peers' restart answers says so.
const RECOVERY_LOG_EVERY: Duration = Duration::from_secs(5);

/// Where the driver is.
#[derive(Debug)]
enum Phase {
    /// Learning the restart counter from the peers; the node is not built.
    /// (Boxed: it is the rare phase, and the large one.)
    Recovering(Box<Recovering>),
    /// The node runs.
    Running,
    /// Stopped (asked to, or the node could not be built or is poisoned).
    Done,
}

/// A node learning its restart counter.
#[derive(Debug)]
struct Recovering {
    recovery: Recovery,
    pending: Pending,
    /// When it next says it is still waiting.
    next_log: Instant,
}

/// One driver's state across its loop, apart from its waiting.
#[derive(Debug)]
pub struct DriverLoop {
    phase: Phase,
    outs: Outs,
    inputs: Vec<Input>,
    /// The node's next deadline, as the last step left it.
    next: Option<Instant>,
    /// When the held-back warnings were last summed up ([`crate::quiet::flush`]).
    flushed: std::time::Instant,
    /// What the metrics count of elections and leaders.
    elections: Elections,
}

/// Elections and leader changes, as the driver sees them go by, for the
/// metrics: an election starts when this node sends a Prepare of a new
/// ballot while it holds no lease (a renewal's Prepare is no election); it
/// is won with the fresh acquisition (`Event::Leading`), and lost when the
/// next one starts without that.
#[derive(Debug, Default)]
struct Elections {
    last_prepare: Option<leasetso_core::Ballot>,
    open: bool,
    leader: Option<NodeId>,
}

impl Elections {
    fn observe(&mut self, me: NodeId, node: &Node, outs: &Outs, counters: &crate::stats::Counters) {
        use crate::stats::Counters as C;
        for (_, msg) in &outs.sends {
            if let LeaseMsg::Prepare { ballot } = msg {
                if ballot.node == me && Some(*ballot) != self.last_prepare {
                    self.last_prepare = Some(*ballot);
                    let status = node.status();
                    let renewal = status.fence.is_some() && status.lease.is_some_and(|b| b.node == me);
                    if !renewal {
                        if self.open {
                            C::bump(&counters.elections_lost, 1);
                        }
                        C::bump(&counters.elections_started, 1);
                        self.open = true;
                    }
                }
            }
        }
        for event in &outs.events {
            match event {
                Event::Leading { .. } => {
                    // A single node sends no Prepare: its election starts and
                    // ends here.
                    if !self.open {
                        C::bump(&counters.elections_started, 1);
                    }
                    C::bump(&counters.elections_won, 1);
                    self.open = false;
                }
                Event::SteppedDown { .. } => C::bump(&counters.step_downs, 1),
                _ => {}
            }
        }
        let leader = node.leader_hint();
        if leader.is_some() && leader != self.leader {
            if self.leader.is_some() {
                C::bump(&counters.leader_changes, 1);
            }
            self.leader = leader;
        }
    }
}

impl DriverLoop {
    /// The driver of `kit`'s node; with `pending`, it first recovers the
    /// restart counter from the peers and builds the node.
    pub fn new(kit: &Kit, pending: Option<Pending>) -> Self {
        let now = kit.clock.now();
        let phase = match pending {
            Some(pending) => {
                let fence = pending.store.fence().unwrap_or(Ballot::ZERO);
                let recovery = Recovery::new(pending.cfg.id, pending.cfg.nodes, now)
                    .with_local(pending.stored_restart, fence);
                tracing::info!(
                    need = recovery.needed(),
                    stored_restart = pending.stored_restart,
                    "asking a quorum of peers for the ballots they saw from this node before taking part \
                     (the data dir may be new, replaced or an older copy)"
                );
                Phase::Recovering(Box::new(Recovering {
                    recovery,
                    pending,
                    next_log: now + RECOVERY_LOG_EVERY,
                }))
            }
            None => Phase::Running,
        };
        DriverLoop {
            phase,
            outs: Outs::new(kit.nodes),
            inputs: Vec::with_capacity(BATCH),
            next: kit.node.with_node(|n| n.poll_timeout()).flatten(),
            flushed: std::time::Instant::now(),
            elections: Elections::default(),
        }
    }

    /// How long to wait for the next input: until the node's (or the
    /// recovery's) next deadline, at most [`MAX_DRIVER_SLEEP`].
    pub fn wait(&self, now: Instant) -> Duration {
        match &self.phase {
            Phase::Recovering(r) => wait(r.recovery.poll_timeout(), now),
            _ => wait(self.next, now),
        }
    }

    /// Whether the loop has ended: the node released, or it never ran.
    pub fn is_done(&self) -> bool {
        matches!(self.phase, Phase::Done)
    }

    /// Whether the next step takes more inputs (at most [`BATCH`] per lock
    /// of the node).
    pub fn wants_more(&self) -> bool {
        self.inputs.len() < BATCH
    }

    /// An input arrived.
    pub fn push(&mut self, input: Input) {
        self.inputs.push(input);
    }

    /// Every sender of inputs is gone: the same as [`Input::Stop`].
    pub fn closed(&mut self) {
        self.inputs.push(Input::Stop);
    }

    /// Feeds what arrived to the node (or to the recovery), drains its
    /// outputs and, with the node's lock released, hands them on: frames to
    /// `peer` (a bounded link queue that drops what does not fit), this
    /// node's own store requests to `local` (`false` when its queue is
    /// full). Returns `false` once the loop is to stop: then
    /// [`DriverLoop::release`] gives the lease up.
    pub fn step(
        &mut self,
        kit: &Kit,
        mut peer: impl FnMut(NodeId, PeerFrame),
        local: impl FnMut(StoreRequest) -> bool,
    ) -> bool {
        kit.beat();
        // The held-back warnings' summaries, about once a second.
        let wall = std::time::Instant::now();
        if wall.saturating_duration_since(self.flushed) >= Duration::from_secs(1) {
            crate::quiet::flush(wall);
            self.flushed = wall;
        }
        if let Phase::Recovering(_) = self.phase {
            self.recover(kit, &mut peer);
            return !self.is_done();
        }
        let (inputs, outs, elections) = (&mut self.inputs, &mut self.outs, &mut self.elections);
        let stepped = kit.node.with_node(|node| {
            let stepped = step(node, inputs, outs, kit.clock.now(), wall_ms());
            elections.observe(kit.node_id, node, outs, &kit.counters);
            stepped
        });
        let Some(stepped) = stepped else {
            tracing::error!("node state poisoned by a panic; the driver stops");
            self.phase = Phase::Done;
            return false;
        };
        self.next = stepped.next;
        self.outs.dispatch(kit.node_id, &mut peer, local);
        !stepped.stop
    }

    /// One step of the recovery: its answers in, its queries out, the node
    /// built once a quorum answered.
    fn recover(&mut self, kit: &Kit, peer: &mut impl FnMut(NodeId, PeerFrame)) {
        let now = kit.clock.now();
        let Phase::Recovering(r) = &mut self.phase else { return };
        let Recovering { recovery, next_log, .. } = &mut **r;
        for input in self.inputs.drain(..) {
            match input {
                Input::RestartInfo { from, highest } => {
                    if let Err(what) = recovery.handle_info(from, highest) {
                        crate::warn_quiet!(
                            quiet::IMPLAUSIBLE,
                            peer = from.0 + 1,
                            %what,
                            "restart answer refused: implausible value"
                        );
                    }
                }
                Input::Stop => {
                    self.phase = Phase::Done;
                    return;
                }
                // Lease traffic and replies before the node exists are lost,
                // as the protocol allows.
                _ => {}
            }
        }
        while let Some(to) = recovery.poll_query(now) {
            peer(to, PeerFrame::RestartQuery);
        }
        let Some(recovered) = recovery.outcome() else {
            if now >= *next_log {
                tracing::warn!(
                    answered = recovery.answered(),
                    need = recovery.needed(),
                    "still waiting for peers to answer the restart query"
                );
                *next_log = now + RECOVERY_LOG_EVERY;
            }
            return;
        };
        // Matched as Recovering above: take its pending node.
        let Phase::Recovering(r) = std::mem::replace(&mut self.phase, Phase::Done) else { return };
        if let Some(node) = recovered_node(r.pending, recovered, now) {
            self.next = node.poll_timeout();
            *kit.node.slot() = Some(node);
            self.phase = Phase::Running;
        }
    }

    /// The graceful handoff: gives the lease up and hands the Release on,
    /// so a peer takes over at once instead of waiting for the lease to
    /// expire. The runtime then waits (at most [`RELEASE_FLUSH`]) for its
    /// links to write it.
    pub fn release(
        &mut self,
        kit: &Kit,
        peer: impl FnMut(NodeId, PeerFrame),
        local: impl FnMut(StoreRequest) -> bool,
    ) -> Option<bool> {
        let outs = &mut self.outs;
        let leading = kit.node.with_node(|node| release(node, outs, kit.clock.now()));
        self.outs.dispatch(kit.node_id, peer, local);
        self.phase = Phase::Done;
        leading
    }
}

fn report(event: Event) {
    match event {
        Event::Leading { fence } => {
            crate::info_quiet!(quiet::LEASE_ACQUIRED, %fence, "lease acquired; syncing the window")
        }
        Event::Serving { window_end_ms } => {
            crate::info_quiet!(quiet::SERVING, window_end_ms, "serving timestamps")
        }
        Event::WindowExtended { window_end_ms } => tracing::trace!(window_end_ms, "window extended"),
        Event::SteppedDown { reason } => crate::warn_quiet!(quiet::STEPPED_DOWN, ?reason, "stopped serving"),
        Event::JetLag { lag_ms } => tracing::warn!(lag_ms, "wall clock far ahead of the timestamps"),
        Event::Yielded { primary } => tracing::warn!(
            primary = primary.0 + 1,
            "a primary is registered: yielded (stopped serving, released the lease, not campaigning while it stands)"
        ),
        Event::Resumed => tracing::info!("no primary registered on a quorum: campaigning again"),
        Event::Registered { tag } => tracing::info!(%tag, "registered as primary on a quorum; campaigning"),
        Event::Refused { from, what } => {
            crate::warn_quiet!(quiet::IMPLAUSIBLE, peer = from.0 + 1, %what, "peer message refused: implausible value")
        }
    }
}
