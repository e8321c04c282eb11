//! Restart-counter recovery: every start of a cluster node learns from its
//! peers where to start, sans-IO.
//!
//! Ballots are unique across a node's starts only because each start's
//! restart counter is new (see [`Ballot`]). A node whose data dir lost the
//! counter (a new node, a replaced disk), or holds an old one (a data dir
//! restored from a copy, its restart marker with it), must not campaign or
//! accept until it knows a restart above every ballot its earlier
//! incarnations used; only its peers know those, from the lease messages
//! they saw. A node cannot tell a restored data dir from a current one, so
//! every start in a cluster asks ([`Recovery::with_local`] adds what the
//! data dir itself says). So before the
//! node is built it sends [`PeerFrame::RestartQuery`] to its peers, every
//! [`RESTART_QUERY_EVERY`] to those that have not answered (a link may come
//! up late, a frame may be lost), and each answers with the highest ballot
//! of the asker's it has seen ([`PeerFrame::RestartInfo`], from [`Seen`]).
//! Once a majority of the cluster answered (distinct peers: a duplicate
//! counts once), every ballot a lost incarnation got accepted by a quorum is
//! known to one of them, and the node starts with a restart above the
//! highest *restart* any of them reported, and its ballot counter caught up
//! to the highest *counter* ([`bound`]: the two maxima come from different
//! ballots when an older start ran its counter further).
//!
//! [`Recovery`] holds that loop's decisions (time in; whom to ask now, and
//! the outcome, out); the runtime sends the frames, raises the stored
//! counter and builds the node. [`Seen`] is the answering side's record.
//!
//! An answer no correct peer gives (B4, [`crate::bounds`]: a restart far
//! above the local one or at the ceiling, a counter beyond B1) is refused:
//! it does not count toward the quorum and nothing of it is adopted.
//!
//! ```
//! use leasetso_core::recovery::{Recovered, Recovery};
//! use leasetso_core::{Ballot, Instant, NodeId};
//!
//! let mut recovery = Recovery::new(NodeId(0), 3, Instant::ZERO);
//! let mut asked = Vec::new();
//! while let Some(peer) = recovery.poll_query(Instant::ZERO) {
//!     asked.push(peer); // the runtime sends RestartQuery to `peer`
//! }
//! assert_eq!(asked, [NodeId(1), NodeId(2)]);
//! // The answers come back as RestartInfo frames.
//! recovery.handle_info(NodeId(2), Ballot::new(12, 3, NodeId(0))).unwrap();
//! recovery.handle_info(NodeId(1), Ballot::new(30, 1, NodeId(0))).unwrap();
//! assert_eq!(
//!     recovery.outcome(),
//!     Some(Recovered { restart: 4, catch_up: Ballot::new(30, 3, NodeId(0)) })
//! );
//! ```

use core::time::Duration;

use crate::ballot::{Ballot, NodeId};
use crate::bounds::{Implausible, check_restart_info};
use crate::lease::LeaseMsg;
use crate::quorum::{MAX_NODES, NodeSet, majority};
use crate::time::Instant;

#[cfg(doc)]
use crate::peer::PeerFrame;

/// How often a recovering node asks the peers that have not answered yet.
pub const RESTART_QUERY_EVERY: Duration = Duration::from_millis(100);

/// The component-wise maximum of two ballots of one node: its counter and its
/// restart each at least as high as either's (the node is `b`'s). A node that
/// lost its restart counter must start above the highest restart its peers
/// saw, and a ballot of an older start may carry the higher counter, so the
/// maximum ballot alone would not do.
pub fn bound(a: Ballot, b: Ballot) -> Ballot {
    Ballot { counter: a.counter.max(b.counter), restart: a.restart.max(b.restart), node: b.node }
}

/// Where a recovered node starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recovered {
    /// The lowest restart counter this start may use: one above the highest
    /// restart a quorum of peers saw from this node. The runtime raises its
    /// stored counter to at least this and builds the node with what it
    /// stored.
    pub restart: u64,
    /// The bound of every ballot of this node the quorum saw: the node's
    /// ballot counter catches up to it ([`crate::Node::catch_up`]), so its
    /// first campaign is not refused for a counter left behind.
    pub catch_up: Ballot,
}

/// The recovering node's side (see the module docs).
#[derive(Clone, Debug)]
pub struct Recovery {
    me: NodeId,
    nodes: u16,
    answered: NodeSet,
    highest: Ballot,
    /// What the data dir itself says: its restart counter (the start is
    /// above it) and its fence's counter (B4 bounds the answers by both).
    local: Ballot,
    /// When the next round of queries is due.
    next_round: Instant,
    /// The next peer id the current round may ask; `nodes` once it is done.
    cursor: u16,
}

impl Recovery {
    /// Recovery of node `me` of a cluster of `nodes`, started at `now`: the
    /// first round of queries is due at once. A cluster of one has nobody
    /// to ask (and nothing to recover: no other node could have seen a
    /// ballot its own store did not); its runtime starts it directly.
    pub fn new(me: NodeId, nodes: u16, now: Instant) -> Self {
        Recovery {
            me,
            nodes: nodes.min(MAX_NODES),
            answered: NodeSet::EMPTY,
            highest: Ballot { node: me, ..Ballot::ZERO },
            local: Ballot { node: me, ..Ballot::ZERO },
            next_round: now,
            cursor: nodes,
        }
    }

    /// What the data dir holds: the restart counter it stored (0: none) and
    /// its replica's fence. The start is above both the stored counter and
    /// every restart the peers report, and B4 bounds their answers by it.
    pub fn with_local(mut self, restart: u64, fence: Ballot) -> Self {
        self.local = Ballot { counter: fence.counter, restart, node: self.me };
        self.highest = bound(self.highest, self.local);
        self
    }

    /// Answers needed. Without a restart counter of its own (a new node, a
    /// replaced disk) a majority of the cluster, this node not among them:
    /// every ballot a lost incarnation got accepted by a quorum is then
    /// known to one of them. With one (every other start), a majority
    /// counting this node: its data dir answers for itself. That keeps a
    /// cluster with a minority down able to restart a node (a rolling
    /// restart, a crash) rather than waiting for the down nodes; the price
    /// is that a data dir restored from an older copy is caught only when
    /// one of the peers that answered saw the later incarnations (always,
    /// with every node up).
    pub fn needed(&self) -> u16 {
        if self.local.restart > 0 {
            majority(self.nodes).saturating_sub(1).max(1)
        } else {
            majority(self.nodes)
        }
    }

    /// Distinct peers that answered so far.
    pub fn answered(&self) -> u16 {
        self.answered.len()
    }

    /// A peer's [`PeerFrame::RestartInfo`]: the highest ballot of this node's
    /// it has seen. A second answer of the same peer is ignored (it counts
    /// once, and its first word stands); so is one from this node's own id
    /// or a non-member, and every answer once recovery is done.
    ///
    /// B4: an answer no correct peer gives is refused (the error says
    /// why, for the log): it does not count, and the peer is asked again.
    pub fn handle_info(&mut self, from: NodeId, highest: Ballot) -> Result<(), Implausible> {
        if self.is_done() || from == self.me || from.0 >= self.nodes || self.answered.contains(from) {
            return Ok(());
        }
        check_restart_info(highest, self.local.restart, self.local.counter)?;
        self.answered.insert(from);
        self.highest = bound(self.highest, Ballot { node: self.me, ..highest });
        Ok(())
    }

    /// The next peer to send [`PeerFrame::RestartQuery`] to now, if any:
    /// call until `None` after every input and at every timeout. A round
    /// asks every peer that has not answered, once per
    /// [`RESTART_QUERY_EVERY`]; none once recovery is done.
    #[must_use = "the queries must be sent"]
    pub fn poll_query(&mut self, now: Instant) -> Option<NodeId> {
        if self.is_done() {
            return None;
        }
        if self.cursor >= self.nodes && now >= self.next_round {
            self.cursor = 0;
            self.next_round = now + RESTART_QUERY_EVERY;
        }
        while self.cursor < self.nodes {
            let peer = NodeId(self.cursor);
            self.cursor += 1;
            if peer != self.me && !self.answered.contains(peer) {
                return Some(peer);
            }
        }
        None
    }

    /// When [`Recovery::poll_query`] has the next round (`None` once done).
    #[must_use = "the runtime must wake at this time"]
    pub fn poll_timeout(&self) -> Option<Instant> {
        (!self.is_done()).then_some(self.next_round)
    }

    /// Whether a quorum answered.
    pub fn is_done(&self) -> bool {
        self.answered.len() >= self.needed()
    }

    /// Where the node starts, once a quorum answered.
    #[must_use]
    pub fn outcome(&self) -> Option<Recovered> {
        self.is_done()
            .then(|| Recovered { restart: self.highest.restart.saturating_add(1), catch_up: self.highest })
    }
}

/// The answering side's record: the highest ballot of its own each peer was
/// seen to use, from the lease messages it proposed (never from messages that
/// merely quote its ballots: a peer's word about another node is not the
/// record). Fixed size, no allocation.
#[derive(Clone, Debug)]
pub struct Seen {
    ballots: [Ballot; MAX_NODES as usize],
}

impl Default for Seen {
    fn default() -> Self {
        Self::new()
    }
}

impl Seen {
    /// Nothing seen yet.
    pub fn new() -> Self {
        Seen { ballots: [Ballot::ZERO; MAX_NODES as usize] }
    }

    /// Notes a lease message `from` sent (`from` being the link's id).
    pub fn observe(&mut self, from: NodeId, msg: &LeaseMsg) {
        let Some(b) = msg.proposer_ballot().filter(|b| b.node == from) else { return };
        if let Some(slot) = self.ballots.get_mut(usize::from(from.0)) {
            *slot = bound(*slot, b);
        }
    }

    /// The bound of the ballots of `id`'s own seen so far (`Ballot::ZERO`
    /// for none).
    pub fn highest(&self, id: NodeId) -> Ballot {
        self.ballots.get(usize::from(id.0)).copied().unwrap_or(Ballot::ZERO)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::LeaseMsg;

    fn ms(n: u64) -> Instant {
        Instant::from_millis(n)
    }

    fn queries(r: &mut Recovery, now: Instant) -> Vec<u16> {
        let mut v = Vec::new();
        while let Some(p) = r.poll_query(now) {
            v.push(p.0);
        }
        v
    }

    #[test]
    fn a_start_with_its_own_counter_counts_itself_in_the_majority() {
        let r = Recovery::new(NodeId(0), 3, Instant::ZERO);
        assert_eq!(r.needed(), 2, "no counter: both others");
        assert_eq!(r.with_local(4, Ballot::ZERO).needed(), 1, "a counter: one other, with itself a majority");
        assert_eq!(Recovery::new(NodeId(0), 5, Instant::ZERO).with_local(4, Ballot::ZERO).needed(), 2);
        assert_eq!(Recovery::new(NodeId(0), 5, Instant::ZERO).needed(), 3);
    }

    #[test]
    fn asks_the_unanswered_peers_every_interval() {
        let mut r = Recovery::new(NodeId(2), 5, ms(1000));
        assert_eq!(r.needed(), 3);
        assert_eq!(r.poll_timeout(), Some(ms(1000)));
        assert_eq!(queries(&mut r, ms(1000)), [0, 1, 3, 4]);
        assert_eq!(r.poll_timeout(), Some(ms(1100)));
        assert_eq!(queries(&mut r, ms(1099)), [] as [u16; 0], "not due yet");
        r.handle_info(NodeId(3), Ballot::new(4, 2, NodeId(2))).unwrap();
        assert_eq!(queries(&mut r, ms(1100)), [0, 1, 4]);
        // A round interrupted by an answer skips the peer that answered.
        let first = r.poll_query(ms(1200));
        assert_eq!(first, Some(NodeId(0)));
        r.handle_info(NodeId(1), Ballot::ZERO).unwrap();
        assert_eq!(queries(&mut r, ms(1200)), [4]);
    }

    #[test]
    fn fewer_than_a_quorum_waits_and_duplicates_count_once() {
        let mut r = Recovery::new(NodeId(0), 3, ms(0));
        r.handle_info(NodeId(1), Ballot::new(3, 5, NodeId(0))).unwrap();
        r.handle_info(NodeId(1), Ballot::new(9, 9, NodeId(0))).unwrap();
        // Own id and non-members do not count either.
        r.handle_info(NodeId(0), Ballot::new(9, 9, NodeId(0))).unwrap();
        r.handle_info(NodeId(3), Ballot::new(9, 9, NodeId(0))).unwrap();
        assert_eq!(r.answered(), 1);
        assert!(!r.is_done());
        assert_eq!(r.outcome(), None);
        assert_eq!(queries(&mut r, ms(0)), [2]);
        r.handle_info(NodeId(2), Ballot::ZERO).unwrap();
        assert_eq!(r.outcome(), Some(Recovered { restart: 6, catch_up: Ballot::new(3, 5, NodeId(0)) }));
        assert_eq!(r.poll_timeout(), None);
        assert_eq!(r.poll_query(ms(500)), None, "done: nobody is asked");
    }

    #[test]
    fn the_highest_restart_wins_not_the_restart_of_the_highest_ballot() {
        let mut r = Recovery::new(NodeId(1), 5, ms(0));
        // Node 0 saw a long run of an old start; node 2 a short run of a later one.
        r.handle_info(NodeId(0), Ballot::new(40, 2, NodeId(1))).unwrap();
        r.handle_info(NodeId(2), Ballot::new(3, 7, NodeId(1))).unwrap();
        r.handle_info(NodeId(4), Ballot::new(10, 4, NodeId(1))).unwrap();
        let out = r.outcome().unwrap();
        assert_eq!(out.restart, 8, "above restart 7, though (40, 2) is the highest ballot");
        assert_eq!(out.catch_up, Ballot::new(40, 7, NodeId(1)));
        // Answers after the quorum change nothing.
        r.handle_info(NodeId(3), Ballot::new(99, 99, NodeId(1))).unwrap();
        assert_eq!(r.outcome(), Some(out));
    }

    #[test]
    fn every_start_is_above_the_local_counter_and_the_peers() {
        // A data dir restored from a copy two starts old says restart 3; the
        // peers saw restart 5 of this node: the start is above both.
        let mut r = Recovery::new(NodeId(0), 3, ms(0)).with_local(3, Ballot::new(8, 2, NodeId(0)));
        r.handle_info(NodeId(1), Ballot::new(20, 5, NodeId(0))).unwrap();
        r.handle_info(NodeId(2), Ballot::new(2, 4, NodeId(0))).unwrap();
        assert_eq!(r.outcome(), Some(Recovered { restart: 6, catch_up: Ballot::new(20, 5, NodeId(0)) }));
        // Peers that saw nothing (the node never campaigned since): above
        // the local counter, never below it.
        let mut r = Recovery::new(NodeId(0), 3, ms(0)).with_local(7, Ballot::ZERO);
        r.handle_info(NodeId(1), Ballot::ZERO).unwrap();
        r.handle_info(NodeId(2), Ballot::ZERO).unwrap();
        assert_eq!(r.outcome().map(|o| o.restart), Some(8));
    }

    #[test]
    fn implausible_answers_are_refused_and_do_not_count() {
        let mut r = Recovery::new(NodeId(0), 3, ms(0)).with_local(4, Ballot::new(10, 4, NodeId(0)));
        let absurd = Ballot::new(1, u64::MAX, NodeId(0));
        assert!(matches!(r.handle_info(NodeId(1), absurd), Err(Implausible::Restart { .. })));
        let counter = Ballot::new(u64::MAX, 4, NodeId(0));
        assert!(matches!(r.handle_info(NodeId(2), counter), Err(Implausible::Counter { .. })));
        assert_eq!(r.answered(), 0, "refused answers do not count");
        assert_eq!(queries(&mut r, ms(0)), [1, 2], "the peers are asked again");
        r.handle_info(NodeId(1), Ballot::new(12, 5, NodeId(0))).unwrap();
        r.handle_info(NodeId(2), Ballot::ZERO).unwrap();
        assert_eq!(r.outcome().map(|o| o.restart), Some(6), "nothing of the refused answers adopted");
    }

    #[test]
    fn nobody_saw_anything_starts_at_restart_one() {
        let mut r = Recovery::new(NodeId(0), 3, ms(0));
        r.handle_info(NodeId(1), Ballot::ZERO).unwrap();
        r.handle_info(NodeId(2), Ballot::ZERO).unwrap();
        assert_eq!(r.outcome(), Some(Recovered { restart: 1, catch_up: Ballot::ZERO }));
    }

    #[test]
    fn seen_records_only_a_nodes_own_proposals() {
        let mut s = Seen::new();
        let own = |c, r| LeaseMsg::Prepare { ballot: Ballot::new(c, r, NodeId(1)) };
        s.observe(NodeId(1), &own(5, 1));
        s.observe(NodeId(1), &own(2, 3));
        // Node 2 quoting node 1's ballot is not node 1's record.
        s.observe(NodeId(2), &own(50, 50));
        // Nor is an acceptor's answer, which carries no proposer ballot.
        s.observe(NodeId(1), &LeaseMsg::Promise { ballot: Ballot::new(60, 60, NodeId(1)), lease: None });
        assert_eq!(s.highest(NodeId(1)), Ballot::new(5, 3, NodeId(1)));
        assert_eq!(s.highest(NodeId(2)), Ballot::ZERO);
        assert_eq!(s.highest(NodeId(MAX_NODES)), Ballot::ZERO);
    }

    proptest::proptest! {
        /// Any answers, duplicates and strangers included: done exactly when
        /// a majority of distinct peers answered, and then above the highest
        /// restart and at the highest counter of each peer's first answer
        /// before that point.
        #[test]
        fn any_answers(nodes in 1u16..8, me in 0u16..8, answers in proptest::collection::vec((0u16..9, 0u64..50, 0u64..50), 0..30)) {
            let me = NodeId(me % nodes);
            let mut r = Recovery::new(me, nodes, ms(0));
            let mut counted: Vec<u16> = Vec::new();
            let (mut restart, mut counter) = (0, 0);
            for (from, c, rs) in answers {
                r.handle_info(NodeId(from), Ballot::new(c, rs, me)).unwrap();
                let quorum = counted.len() >= usize::from(majority(nodes));
                if !quorum && from < nodes && NodeId(from) != me && !counted.contains(&from) {
                    counted.push(from);
                    restart = restart.max(rs);
                    counter = counter.max(c);
                }
                let done = counted.len() >= usize::from(majority(nodes));
                proptest::prop_assert_eq!(r.is_done(), done);
                proptest::prop_assert_eq!(usize::from(r.answered()), counted.len());
                let expected = done.then_some(Recovered { restart: restart + 1, catch_up: Ballot::new(counter, restart, me) });
                proptest::prop_assert_eq!(r.outcome(), expected);
                proptest::prop_assert_eq!(r.poll_timeout().is_none(), done);
            }
        }
    }
}
