//! What a caller asks of a client session and what it gets back, named by
//! its ticket.

use core::fmt;

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

impl StatusReply {
    /// The status a Status frame carries; `None` for any other frame.
    pub fn from_frame(frame: crate::wire::Frame) -> Option<StatusReply> {
        match frame {
            crate::wire::Frame::Status { role, node, leader, window_end_ms, current, view, .. } => {
                Some(StatusReply { role, node, leader, window_end_ms, current, view })
            }
            _ => None,
        }
    }
}

impl fmt::Display for StatusReply {
    /// One line of `key=value` pairs, node ids 1-based as on the command
    /// line: `node=1 role=leader leader=1 leader_addr=... mode=deferring
    /// primary=none (or primary=2 primary_tag=(0,3,1)) lease=(c,r,n)
    /// lease_owner=1 lease_left_ms=... quarantine_left_ms=... fence=(c,r,n)
    /// window_end_ms=... current=... links=1:self,2:up,3:down store=ok`
    /// (`store=failed: No space left on device` while its replica fails; `none` for
    /// what is unknown; `current` is the packed timestamp; a ballot is
    /// `(counter,restart,node)` with the node 0-based, as on the wire).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let id = |n: Option<NodeId>| n.map_or_else(|| "none".to_string(), |n| (n.0 + 1).to_string());
        let ballot = |b: Option<Ballot>| b.map_or_else(|| "none".to_string(), |b| b.to_string());
        write!(f, "node={} role={} leader={}", self.node.0 + 1, self.role.as_str(), id(self.leader.node))?;
        if let Some(addr) = self.leader.addr {
            write!(f, " leader_addr={addr}")?;
        }
        let v = &self.view;
        write!(f, " mode={}", v.mode.as_str())?;
        match v.primary {
            Some((p, tag)) => write!(f, " primary={} primary_tag={tag}", p.0 + 1)?,
            None => f.write_str(" primary=none")?,
        }
        write!(
            f,
            " lease={} lease_owner={} lease_left_ms={} quarantine_left_ms={} fence={} window_end_ms={} current={} links=",
            ballot(v.lease),
            id(v.lease.map(|b| b.node)),
            v.lease_left_ms,
            v.quarantine_left_ms,
            ballot(v.fence),
            self.window_end_ms,
            self.current.to_u64()
        )?;
        for i in 0..v.nodes.max(1) {
            let state = if i == self.node.0 {
                "self"
            } else if v.links_up & (1 << i) != 0 {
                "up"
            } else {
                "down"
            };
            write!(f, "{}{}:{state}", if i == 0 { "" } else { "," }, i + 1)?;
        }
        // Last: a failure's words contain spaces.
        write!(f, " store={}", v.store)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_line() {
        let status = StatusReply {
            role: Role::Leader,
            node: NodeId(0),
            leader: LeaderHint { node: Some(NodeId(0)), addr: None },
            window_end_ms: 5,
            current: Timestamp::new(3, 2).unwrap(),
            view: LeaseView {
                lease: Some(Ballot::new(4, 1, NodeId(0))),
                lease_left_ms: 900,
                quarantine_left_ms: 0,
                fence: Some(Ballot::new(2, 1, NodeId(0))),
                links_up: 0b011,
                nodes: 3,
                mode: crate::role::Mode::Deferring,
                primary: None,
                store: crate::health::StoreHealth::Ok,
                served: 0,
            },
        };
        assert_eq!(
            status.to_string(),
            "node=1 role=leader leader=1 mode=deferring primary=none lease=(4,1,0) lease_owner=1 lease_left_ms=900 quarantine_left_ms=0 \
             fence=(2,1,0) window_end_ms=5 current=786434 links=1:self,2:up,3:down store=ok"
        );
        let none = StatusReply {
            leader: LeaderHint::default(),
            role: Role::Follower,
            view: LeaseView { nodes: 1, ..LeaseView::default() },
            ..status
        };
        assert_eq!(
            none.to_string(),
            "node=1 role=follower leader=none mode=deferring primary=none lease=none lease_owner=none lease_left_ms=0 \
             quarantine_left_ms=0 fence=none window_end_ms=5 current=786434 links=1:self store=ok"
        );
    }
}
