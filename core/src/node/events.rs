//! What a node tells its runtime: outputs to carry out and events to log.

use crate::ballot::{Ballot, NodeId};
use crate::bounds::Implausible;
use crate::lease::LeaseMsg;
use crate::store::StoreRequest;

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
    /// A peer sent a value no correct node produces (B1, ARCHITECTURE.md):
    /// its message was dropped (a store reply counts as failed) and nothing
    /// of it was adopted. The one place a runtime logs (and may rate-limit)
    /// hostile or corrupt peer input the node sees.
    Refused {
        /// The peer (its link's id), or the replica of a store reply.
        from: NodeId,
        /// What was refused.
        what: Implausible,
    },
}

/// What the node asks its runtime to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Output {
    /// Deliver `msg` to node `to` and hand it over with [`Node::handle_message`](super::Node::handle_message).
    Send {
        /// The addressee (never this node: messages to itself are handled inside).
        to: NodeId,
        /// The message.
        msg: LeaseMsg,
    },
    /// Perform `request` on `replica`'s store and report the reply with
    /// [`Node::handle_store_reply`](super::Node::handle_store_reply).
    Store {
        /// The node whose store replica performs it.
        replica: NodeId,
        /// The operation and its id.
        request: StoreRequest,
    },
    /// Tell the embedding program.
    Event(Event),
}
