//! What a node reports of itself: its role, the lease, the window, and who
//! it believes serves.

use core::time::Duration;

use crate::ballot::{Ballot, NodeId};
use crate::time::Instant;
use crate::timestamp::Timestamp;
use crate::wire::Role;

use super::*;

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

impl Node {
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

    pub(super) fn hint_at(&self, now: Instant) -> Option<NodeId> {
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
}
