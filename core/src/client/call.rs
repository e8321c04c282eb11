//! What a caller asks of a client session and what it gets back, named by
//! its ticket.

use crate::ballot::{Ballot, NodeId};
use crate::timestamp::Timestamp;
use crate::wire::{LeaderHint, LeaseView, Role};

use super::error::CallError;

/// One caller's place in a session: completions name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ticket(pub(super) u64);

impl Ticket {
    /// The ticket's number: tickets are numbered from 0 in the order the
    /// callers arrived.
    pub fn get(self) -> u64 {
        self.0
    }
}

/// What a caller asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    /// `count` timestamps; merged with other callers'.
    Ts {
        /// How many, `1..=MAX_COUNT`.
        count: u32,
    },
    /// The status of the node talked to.
    Status,
    /// The primary registration on the replica of the node talked to.
    ReadPrimary,
    /// Clear the registration on the replica of the node talked to if it is
    /// exactly `(node, tag)`.
    ClearPrimary {
        /// The registered node.
        node: NodeId,
        /// Its tag.
        tag: Ballot,
    },
}

impl Call {
    /// Whether a failure that may pass is retried for this call (the
    /// primary requests are not: module documentation).
    pub(super) fn retried(self) -> bool {
        matches!(self, Call::Ts { .. } | Call::Status)
    }
}

/// A node's status, as [`Frame::Status`](crate::wire::Frame::Status) reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatusReply {
    /// The node's role.
    pub role: Role,
    /// The answering node.
    pub node: NodeId,
    /// Who serves, as far as the node knows.
    pub leader: LeaderHint,
    /// The saved window end in ms (0 unless serving).
    pub window_end_ms: u64,
    /// The last timestamp handed out (zero unless serving).
    pub current: Timestamp,
    /// The lease, the quarantine, the fence and the peer links.
    pub view: LeaseView,
}

/// A successful call's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The last timestamp of the caller's own range (`count` timestamps
    /// ending here, in one physical millisecond).
    Ts(Timestamp),
    /// The node's status.
    Status(StatusReply),
    /// The registration on the node's replica (after the clear, for
    /// [`Call::ClearPrimary`]).
    Primary(Option<(NodeId, Ballot)>),
}

/// A finished call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Completion<E> {
    /// Whose call.
    pub ticket: Ticket,
    /// Its answer or why it failed.
    pub result: Result<Answer, CallError<E>>,
}
