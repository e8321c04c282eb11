//! Ballots and node ids, and a ballot's encoding: every codec that carries
//! a ballot (lease messages, peer frames, client frames) writes it this one
//! way.

use core::fmt;

use bytes::{Buf, BufMut};

/// A node's id within its cluster (0-based index into the configured node list).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct NodeId(pub u16);

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}", self.0)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A PaxosLease ballot `(counter, restart, node)`, ordered lexicographically.
///
/// `restart` is the node's durable restart counter, bumped at every start, so
/// a ballot is never reused after a crash even though the in-memory `counter`
/// starts again at 0. Ballots are unique but not ordered across restarts
/// (counter-major); proposers catch their counter up from higher ballots they
/// see, which is a liveness matter only. The same ballot fences the window
/// store, so an old leader can never save after a newer one has loaded.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Ballot {
    /// In-memory attempt counter, most significant.
    pub counter: u64,
    /// The proposer's durable restart counter.
    pub restart: u64,
    /// The proposer, least significant: breaks ties between nodes.
    pub node: NodeId,
}

impl Ballot {
    /// Below every ballot a proposer uses (counters start at 1).
    pub const ZERO: Ballot = Ballot { counter: 0, restart: 0, node: NodeId(0) };

    /// A ballot from its parts.
    pub const fn new(counter: u64, restart: u64, node: NodeId) -> Self {
        Ballot { counter, restart, node }
    }
}

impl fmt::Debug for Ballot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "({},{},{})", self.counter, self.restart, self.node.0)
    }
}

impl fmt::Display for Ballot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Bytes of an encoded ballot: `counter: u64, restart: u64, node: u16`,
/// big-endian.
pub(crate) const BALLOT_LEN: usize = 18;

/// Appends `b` ([`BALLOT_LEN`] bytes).
pub(crate) fn put_ballot(buf: &mut impl BufMut, b: Ballot) {
    buf.put_u64(b.counter);
    buf.put_u64(b.restart);
    buf.put_u16(b.node.0);
}

/// Reads a ballot; the caller checked that [`BALLOT_LEN`] bytes are there
/// (the frame layouts check a body's size before any field is read).
pub(crate) fn get_ballot(buf: &mut impl Buf) -> Ballot {
    Ballot { counter: buf.get_u64(), restart: buf.get_u64(), node: NodeId(buf.get_u16()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ballots_order_counter_then_restart_then_node() {
        let a = Ballot::new(1, 9, NodeId(9));
        let b = Ballot::new(2, 0, NodeId(0));
        assert!(a < b);
        assert!(Ballot::new(2, 1, NodeId(0)) > Ballot::new(2, 0, NodeId(5)));
        assert!(Ballot::new(2, 1, NodeId(3)) > Ballot::new(2, 1, NodeId(2)));
        assert!(Ballot::ZERO < Ballot::new(1, 0, NodeId(0)));
    }
}
