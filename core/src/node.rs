//! The node: leadership, the oracle and the replicated window store, composed
//! into the one state machine a runtime drives.
//!
//! The loop every runtime follows (str0m states it well): after every input
//! (`handle_timeout`, `handle_store_reply`, ...), drain [`Node::poll_output`]
//! until `None`, then arm one timer at [`Node::poll_timeout`]. GetTS is a plain
//! call, [`Node::get_ts`]: the hot path, which allocates nothing.

use std::collections::VecDeque;

use core::time::Duration;

use crate::ballot::{Ballot, LeaseName, NodeId};
use crate::oracle::{GetTsError, Oracle, OracleConfig, OracleConfigError};
use crate::quorum::{MAX_NODES, NodeSet, majority};
use crate::store::{StoreOk, StoreOp, StoreReject, StoreReply, StoreRequest};
use crate::time::Instant;
use crate::timestamp::Timestamp;
use crate::wire::Role;

/// How a node is configured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NodeConfig {
    /// This node's id, `0..nodes`.
    pub id: NodeId,
    /// The cluster's size. This release runs single-node clusters.
    pub nodes: u16,
    /// The timestamp window's tunables.
    pub oracle: OracleConfig,
    /// A store round (load or save on a quorum) not done within this time has
    /// failed: the node stops serving and steps down.
    pub store_timeout: Duration,
    /// How long a node waits before leading again after stepping down.
    pub retry_backoff: Duration,
}

impl NodeConfig {
    /// A single-node cluster with the defaults.
    pub fn single() -> Self {
        NodeConfig {
            id: NodeId(0),
            nodes: 1,
            oracle: OracleConfig::default(),
            store_timeout: Duration::from_secs(2),
            retry_backoff: Duration::from_millis(300),
        }
    }
}

/// Why a configuration cannot run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The oracle's tunables are inconsistent.
    #[error(transparent)]
    Oracle(#[from] OracleConfigError),
    /// The cluster size is not supported.
    #[error("cluster of {0} nodes: this release runs single-node clusters")]
    ClusterSize(u16),
    /// The node id is not below the cluster size.
    #[error("node id {id} is outside a cluster of {nodes}")]
    NodeId {
        /// The configured id.
        id: NodeId,
        /// The cluster size.
        nodes: u16,
    },
    /// A store timeout of zero could never complete a round.
    #[error("store timeout must be positive")]
    StoreTimeout,
}

impl NodeConfig {
    /// Checks the configuration.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.oracle.validate()?;
        if self.nodes != 1 || self.nodes > MAX_NODES {
            return Err(ConfigError::ClusterSize(self.nodes));
        }
        if self.id.0 >= self.nodes {
            return Err(ConfigError::NodeId { id: self.id, nodes: self.nodes });
        }
        if self.store_timeout.is_zero() {
            return Err(ConfigError::StoreTimeout);
        }
        Ok(())
    }
}

/// Why a node stopped leading.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StepDown {
    /// A store replica reports a newer leadership's fence.
    Fenced {
        /// The newer fence.
        by: Ballot,
    },
    /// A load or save failed or timed out on too many replicas.
    StoreFailed,
    /// A store replica has a dedicated primary registered.
    PrimaryExists {
        /// The primary.
        id: NodeId,
    },
}

/// Something the embedding program may want to log or act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Event {
    /// This node began a leadership fenced by `fence`; it syncs before serving.
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
    /// The node stopped serving.
    SteppedDown {
        /// Why.
        reason: StepDown,
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
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum RoundKind {
    Load,
    Save { window_end_ms: u64 },
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
    max_window_ms: u64,
}

/// The state machine of one leasetso node.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Node {
    cfg: NodeConfig,
    restart: u64,
    ballot_counter: u64,
    oracle: Oracle,
    /// The acquisition ballot of the current leadership, if leading. It fences
    /// every load and save of that leadership.
    fence: Option<Ballot>,
    round: Option<Round>,
    next_request_id: u64,
    next_update: Instant,
    retry_at: Option<Instant>,
    outputs: VecDeque<Output>,
}

impl Node {
    /// A node that starts leading at its first [`Node::handle_timeout`].
    ///
    /// `restart` is the store's `bump_restart()` for this start, so this
    /// start's ballots differ from every earlier start's.
    pub fn new(cfg: NodeConfig, restart: u64, now: Instant) -> Result<Self, ConfigError> {
        cfg.validate()?;
        // Per input the node emits at most one operation per replica and two
        // events; the runtime drains after every input.
        let capacity = 2 * usize::from(cfg.nodes) + 8;
        Ok(Node {
            cfg,
            restart,
            ballot_counter: 0,
            oracle: Oracle::new(cfg.oracle),
            fence: None,
            round: None,
            next_request_id: 1,
            next_update: Instant::NEVER,
            retry_at: Some(now),
            outputs: VecDeque::with_capacity(capacity),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &NodeConfig {
        &self.cfg
    }

    /// The next output, until `None`.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When the runtime must call [`Node::handle_timeout`] next.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t = self.next_update;
        if let Some(r) = &self.round {
            t = t.min(r.deadline);
        }
        if let Some(retry) = self.retry_at {
            t = t.min(retry);
        }
        (t != Instant::NEVER).then_some(t)
    }

    /// Timers: leading again after a backoff, store rounds that time out, and
    /// the oracle's periodic update.
    pub fn handle_timeout(&mut self, now: Instant, wall_ms: u64) {
        if self.round.is_some_and(|r| now >= r.deadline) {
            self.step_down(StepDown::StoreFailed, now);
        }
        if self.retry_at.is_some_and(|t| now >= t) {
            self.retry_at = None;
            self.lead(now);
        }
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
    }

    /// A replica's reply to a store request this node sent.
    pub fn handle_store_reply(
        &mut self,
        replica: NodeId,
        request_id: u64,
        reply: StoreReply,
        now: Instant,
        wall_ms: u64,
    ) {
        let Some(round) = self.round.as_mut().filter(|r| r.id == request_id) else {
            return; // A reply to a round that is over.
        };
        match (round.kind, reply) {
            (RoundKind::Load, Ok(StoreOk::Loaded { window_end_ms })) => {
                if round.acks.insert(replica) {
                    round.max_window_ms = round.max_window_ms.max(window_end_ms);
                }
            }
            // A replica already at or above the window holds it: success.
            (RoundKind::Save { .. }, Ok(StoreOk::Saved) | Err(StoreReject::NotGreater { .. })) => {
                round.acks.insert(replica);
            }
            (_, Err(StoreReject::Fenced { by })) => {
                self.ballot_counter = self.ballot_counter.max(by.counter);
                self.step_down(StepDown::Fenced { by }, now);
                return;
            }
            (_, Err(StoreReject::PrimaryExists { id })) => {
                self.step_down(StepDown::PrimaryExists { id }, now);
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
            self.step_down(StepDown::StoreFailed, now);
        }
    }

    /// GetTS: `count` timestamps, the last of which is returned. Allocates nothing.
    pub fn get_ts(&mut self, count: u32, _now: Instant) -> Result<Timestamp, GetTsError> {
        self.oracle.get_ts(count).map_err(|e| match e {
            GetTsError::NotLeader { .. } => GetTsError::NotLeader { leader: self.leader_hint() },
            other => other,
        })
    }

    /// The node's role and what it knows of the window.
    pub fn status(&self) -> Status {
        let role = match (self.fence, self.oracle.is_serving()) {
            (Some(_), true) => Role::Leader,
            (Some(_), false) => Role::Syncing,
            (None, _) => Role::Follower,
        };
        Status {
            role,
            leader: self.leader_hint(),
            window_end_ms: self.oracle.window_end_ms(),
            current: self.oracle.current().unwrap_or(Timestamp::ZERO),
        }
    }

    /// Who serves, as far as this node knows.
    pub fn leader_hint(&self) -> Option<NodeId> {
        self.fence.map(|_| self.cfg.id)
    }

    /// A single-node cluster has nothing to elect: the node leads with a fresh
    /// ballot, which differs from every earlier start's by its restart counter
    /// and from every earlier leadership of this start by its counter.
    fn lead(&mut self, now: Instant) {
        self.ballot_counter += 1;
        let fence = Ballot::new(self.ballot_counter, self.restart, self.cfg.id);
        self.fence = Some(fence);
        self.outputs.push_back(Output::Event(Event::Leading { fence }));
        // W1: every fresh acquisition syncs before serving.
        self.oracle.begin_sync();
        self.start_round(RoundKind::Load, now);
    }

    fn start_round(&mut self, kind: RoundKind, now: Instant) {
        let Some(fence) = self.fence else { return };
        let id = self.next_request_id;
        self.next_request_id += 1;
        self.round = Some(Round {
            id,
            kind,
            deadline: now + self.cfg.store_timeout,
            acks: NodeSet::EMPTY,
            failures: NodeSet::EMPTY,
            max_window_ms: 0,
        });
        let lease = LeaseName::Leader;
        let op = match kind {
            RoundKind::Load => StoreOp::Load { lease, fence },
            RoundKind::Save { window_end_ms } => {
                StoreOp::Save { lease, window_end_ms, fence, check_primary: false }
            }
        };
        for replica in 0..self.cfg.nodes {
            self.outputs
                .push_back(Output::Store { replica: NodeId(replica), request: StoreRequest { id, op } });
        }
    }

    fn round_done(&mut self, round: Round, now: Instant, wall_ms: u64) {
        match round.kind {
            RoundKind::Load => match self.oracle.loaded(round.max_window_ms, wall_ms) {
                Some(window_end_ms) => self.start_round(RoundKind::Save { window_end_ms }, now),
                None => self.step_down(StepDown::StoreFailed, now),
            },
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

    /// A failed or fenced round ends this leadership: the oracle resets (so
    /// only a new sync serves again) and the node leads again after a backoff.
    fn step_down(&mut self, reason: StepDown, now: Instant) {
        self.oracle.reset();
        self.round = None;
        self.fence = None;
        self.next_update = Instant::NEVER;
        self.retry_at = Some(now + self.cfg.retry_backoff);
        self.outputs.push_back(Output::Event(Event::SteppedDown { reason }));
    }
}
