//! Sets of distinct node ids, for counting quorums.
//!
//! A quorum is a set of *distinct* responders, never a plain counter: a
//! duplicated or redelivered reply must not count twice (the scalar-counting
//! bug PaxosLease Revisited's model found).

use crate::ballot::NodeId;

/// The largest cluster a [`NodeSet`] can describe.
pub const MAX_NODES: u16 = 64;

/// A set of node ids below [`MAX_NODES`], as a bitmask (no allocation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct NodeSet(u64);

impl NodeSet {
    /// The empty set.
    pub const EMPTY: NodeSet = NodeSet(0);

    /// Adds `id`; returns whether it was new. Ids out of range are ignored.
    pub fn insert(&mut self, id: NodeId) -> bool {
        if id.0 >= MAX_NODES {
            return false;
        }
        let bit = 1u64 << id.0;
        let new = self.0 & bit == 0;
        self.0 |= bit;
        new
    }

    /// Whether `id` is in the set.
    pub fn contains(&self, id: NodeId) -> bool {
        id.0 < MAX_NODES && self.0 & (1u64 << id.0) != 0
    }

    /// The number of distinct ids.
    pub fn len(&self) -> u16 {
        // At most 64.
        self.0.count_ones() as u16
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0 == 0
    }
}

/// The majority of a cluster of `nodes`.
pub const fn majority(nodes: u16) -> u16 {
    nodes / 2 + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_count_once() {
        let mut s = NodeSet::EMPTY;
        assert!(s.insert(NodeId(2)));
        assert!(!s.insert(NodeId(2)));
        assert!(s.insert(NodeId(0)));
        assert_eq!(s.len(), 2);
        assert!(!s.insert(NodeId(MAX_NODES)));
        assert_eq!(majority(1), 1);
        assert_eq!(majority(3), 2);
        assert_eq!(majority(5), 3);
    }
}
