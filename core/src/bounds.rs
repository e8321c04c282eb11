//! Plausibility bounds: values no correct node could have produced are
//! refused where they are received, reported, and never adopted or stored.
//!
//! The protocol trusts its peers' numbers for liveness: a proposer catches
//! its ballot counter up to any higher ballot it sees (P5), a replica raises
//! its fence to any higher fence (S1) and keeps any higher window (S3), a
//! recovering node starts above any restart its peers report. One absurd
//! value (a counter of `u64::MAX`, a window a century ahead) is therefore
//! adopted for good and wedges the cluster. These rules (PROTOCOL.md,
//! "Plausibility bounds") put a ceiling on each such value, and a bound on
//! how far one message may move what the receiver holds:
//!
//! * **B1 (ballots)**: every ballot a lease message or a store reply carries
//!   has `counter ≤ min(MAX_COUNTER, held + MAX_COUNTER_STEP)`, where `held`
//!   is the highest counter the receiver has used, seen or promised,
//!   `restart ≤ MAX_RESTART` and `node` below the cluster size. Otherwise the
//!   whole message is dropped.
//! * **B2 (replica)**: a replica refuses (`StoreReject::Implausible`) a load
//!   or save whose fence is not the sender's own ballot or breaks B1 against
//!   the stored fence, a save whose window is more than
//!   [`MAX_WINDOW_AHEAD_MS`] ahead of the replica's wall clock, and a
//!   registration that does not register its sender with a tag
//!   `(0, restart, sender)`. Nothing is changed.
//! * **B3 (physical ahead)**: no window is saved more than
//!   `OracleConfig::max_ahead_ms` ahead of the leader's wall clock, so the
//!   oracle's physical part (below the window) never runs further ahead
//!   (`crate::oracle`); this is what makes the window bound of B2 hold for
//!   every save a correct leader makes.
//! * **B4 (restart)**: a restart answer (`RestartInfo`) has
//!   `restart ≤ min(MAX_RESTART - 1, local + MAX_RESTART_STEP)` and its
//!   counter obeys B1 against the local fence; otherwise it does not count
//!   toward the quorum of answers (`crate::recovery`).
//!
//! Why a correct cluster never comes near a bound is argued at each
//! constant; the simulator reports the largest values its correct runs
//! reach against these bounds.

use crate::ballot::{Ballot, NodeId};
use crate::lease::LeaseMsg;
use crate::store::{StoreOk, StoreOp, StoreReply};

/// B1: no ballot counter (or fence counter) is ever above this. A correct
/// cluster raises its highest counter by one per attempt, and an attempt
/// takes at least a network round trip: even at a million attempts per
/// second (thousands of times what the campaign timing allows) it would take
/// 146,000 years to get here. It is far enough below `u64::MAX` that `+ 1`
/// never overflows.
pub const MAX_COUNTER: u64 = 1 << 62;

/// B1: how far one message may raise a ballot counter above what the
/// receiver holds. A node that was down or partitioned while the rest of the
/// cluster kept electing catches up by the number of attempts it missed: at
/// 1,000 attempts per second (renewals run at most a few times per lease
/// period) that is 35 years of absence before a correct value is refused.
pub const MAX_COUNTER_STEP: u64 = 1 << 40;

/// B1, B4: no restart counter is ever above this. Store request ids are
/// `restart << 32 | n`, so a restart counter must fit 32 bits; one start per
/// second for 136 years stays below it.
pub const MAX_RESTART: u64 = u32::MAX as u64;

/// B4: how far a restart answer may raise the local restart counter. It is
/// the number of starts a data dir may have missed (a disk replaced, a copy
/// restored): 16.7 million, a start every minute for 31 years.
pub const MAX_RESTART_STEP: u64 = 1 << 24;

/// B3: the largest `max_ahead_ms` a node may be configured with (1 min).
/// The save interval must be below a node's `max_ahead_ms`, so it is below
/// this too (PD uses 3 s).
pub const MAX_AHEAD_LIMIT_MS: u64 = 60_000;

/// B2: how far a leader's wall clock may be ahead of a replica's in a
/// correct cluster (1 min): NTP keeps servers within milliseconds, and
/// a step larger than this is a clock fault.
pub const SKEW_ALLOWANCE_MS: u64 = 60_000;

/// B2: the furthest a saved window may be ahead of the replica's wall clock.
/// A correct leader saves `min(next + save_interval, wall + max_ahead)`
/// (B3: the save interval is cut at the ahead bound), as read when it decides
/// the save, and its wall clock is at most [`SKEW_ALLOWANCE_MS`] ahead of
/// the replica's (the replica reads its own clock later still). The replica
/// cannot know the leader's settings (they are per node), so it allows the
/// largest `max_ahead_ms` any node may have: 2 min in all.
pub const MAX_WINDOW_AHEAD_MS: u64 = MAX_AHEAD_LIMIT_MS + SKEW_ALLOWANCE_MS;

/// A value no correct node produces, refused under B1–B4.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Implausible {
    /// B1: a ballot counter above the ceiling or too far above the one held.
    #[error("ballot {ballot}: counter above the limit {limit} (B1)")]
    Counter {
        /// The ballot.
        ballot: Ballot,
        /// The largest counter the receiver accepts now.
        limit: u64,
    },
    /// B1, B4: a restart counter above the ceiling or too far above the local one.
    #[error("restart counter {restart} above the limit {limit} (B1, B4)")]
    Restart {
        /// The restart counter.
        restart: u64,
        /// The largest restart the receiver accepts now.
        limit: u64,
    },
    /// B1, B2: a node id outside the cluster, or a ballot, fence or
    /// registration that is not its sender's own.
    #[error("node {node} where node {expected} was expected, in a cluster of {nodes} (B1, B2)")]
    Node {
        /// The node the value names.
        node: NodeId,
        /// The node it must name (the sender), or the cluster size when any member would do.
        expected: u16,
        /// The cluster size.
        nodes: u16,
    },
    /// B2: a window too far ahead of the replica's wall clock.
    #[error(
        "window end {window_end_ms} ms is more than {MAX_WINDOW_AHEAD_MS} ms ahead of the wall clock {wall_ms} ms (B2)"
    )]
    Window {
        /// The window end offered.
        window_end_ms: u64,
        /// The replica's wall clock.
        wall_ms: u64,
    },
    /// B2: a registration tag that is not `(0, restart, node)`.
    #[error("registration tag {tag} is not (0, restart, {node}) (B2)")]
    Tag {
        /// The tag.
        tag: Ballot,
        /// The registered node.
        node: NodeId,
    },
}

/// The largest counter a node holding `held` accepts (B1).
pub fn counter_limit(held: u64) -> u64 {
    held.saturating_add(MAX_COUNTER_STEP).min(MAX_COUNTER)
}

/// **B1**: `ballot` is one a correct member of a cluster of `nodes` could
/// send to a node holding counter `held`.
pub fn check_ballot(ballot: Ballot, held: u64, nodes: u16) -> Result<(), Implausible> {
    let limit = counter_limit(held);
    if ballot.counter > limit {
        return Err(Implausible::Counter { ballot, limit });
    }
    if ballot.restart > MAX_RESTART {
        return Err(Implausible::Restart { restart: ballot.restart, limit: MAX_RESTART });
    }
    if ballot.node.0 >= nodes {
        return Err(Implausible::Node { node: ballot.node, expected: nodes, nodes });
    }
    Ok(())
}

/// **B1** for a ballot that must be `from`'s own (a fence, a proposal).
pub fn check_own_ballot(ballot: Ballot, from: NodeId, held: u64, nodes: u16) -> Result<(), Implausible> {
    check_ballot(ballot, held, nodes)?;
    if ballot.node != from {
        return Err(Implausible::Node { node: ballot.node, expected: from.0, nodes });
    }
    Ok(())
}

/// **B1** for a fence `from` sends a replica that holds `stored`: the
/// sender's own ballot (so a member's: the sender's id is its link's, which
/// the handshake checked), within the step of the stored fence.
fn check_fence(fence: Ballot, from: NodeId, stored: Ballot) -> Result<(), Implausible> {
    check_own_ballot(fence, from, stored.counter, from.0.saturating_add(1))
}

/// **B2**: a window end a replica whose wall clock reads `wall_ms` may store.
pub fn check_window(window_end_ms: u64, wall_ms: u64) -> Result<(), Implausible> {
    if window_end_ms > wall_ms.saturating_add(MAX_WINDOW_AHEAD_MS) {
        return Err(Implausible::Window { window_end_ms, wall_ms });
    }
    Ok(())
}

/// **B2**: a registration of `id` with `tag`, sent by `from`: a primary
/// only ever registers itself, tagged `(0, restart, itself)`.
pub fn check_registration(id: NodeId, tag: Ballot, from: NodeId, nodes: u16) -> Result<(), Implausible> {
    if id != from || id.0 >= nodes {
        return Err(Implausible::Node { node: id, expected: from.0, nodes });
    }
    if tag.counter != 0 || tag.node != id {
        return Err(Implausible::Tag { tag, node: id });
    }
    if tag.restart > MAX_RESTART {
        return Err(Implausible::Restart { restart: tag.restart, limit: MAX_RESTART });
    }
    Ok(())
}

/// The largest restart a node whose own record says `local` accepts from a
/// peer (B4): one below the ceiling, so the start above it still fits.
pub fn restart_limit(local: u64) -> u64 {
    local.saturating_add(MAX_RESTART_STEP).min(MAX_RESTART - 1)
}

/// **B4**: a peer's answer to this node's restart query, given the local
/// restart counter and the local replica's fence counter.
pub fn check_restart_info(
    highest: Ballot,
    local_restart: u64,
    local_counter: u64,
) -> Result<(), Implausible> {
    let limit = restart_limit(local_restart);
    if highest.restart > limit {
        return Err(Implausible::Restart { restart: highest.restart, limit });
    }
    let limit = counter_limit(local_counter);
    if highest.counter > limit {
        return Err(Implausible::Counter { ballot: highest, limit });
    }
    Ok(())
}

/// **B1** for a lease message `from` sent to a node holding counter `held`:
/// every ballot it carries. A proposal (Prepare, Accept, Release,
/// LearnChosen) carries its proposer's own ballot, so its node must be the
/// sender; an answer echoes the receiver's ballot and reports any member's.
pub fn check_lease_msg(msg: &LeaseMsg, from: NodeId, held: u64, nodes: u16) -> Result<(), Implausible> {
    match *msg {
        LeaseMsg::Prepare { ballot }
        | LeaseMsg::Accept { ballot }
        | LeaseMsg::Release { ballot }
        | LeaseMsg::LearnChosen { ballot, .. } => check_own_ballot(ballot, from, held, nodes),
        LeaseMsg::Accepted { ballot } => check_ballot(ballot, held, nodes),
        LeaseMsg::Promise { ballot, lease } => {
            check_ballot(ballot, held, nodes)?;
            lease.map_or(Ok(()), |l| check_ballot(l, held, nodes))
        }
        LeaseMsg::Rejected { refused, promised } => {
            check_ballot(refused, held, nodes)?;
            check_ballot(promised, held, nodes)
        }
    }
}

/// **B2**: an operation `from` (this replica's own node, or a peer as its
/// link's handshake named it: a member either way) asks of the replica
/// whose stored fence is `stored` and whose wall clock reads `wall_ms`.
/// Loads and saves carry their sender's own fence, within B1 of the stored
/// one; a save's window is within [`MAX_WINDOW_AHEAD_MS`] of the wall clock;
/// a registration registers its sender. Reads and exact clears (an
/// operator's, on the node's own replica) change nothing a forger could
/// abuse, so they pass.
pub fn check_store_op(op: &StoreOp, from: NodeId, stored: Ballot, wall_ms: u64) -> Result<(), Implausible> {
    match *op {
        StoreOp::Load { fence, .. } => check_fence(fence, from, stored),
        StoreOp::Save { window_end_ms, fence, .. } => {
            check_fence(fence, from, stored)?;
            check_window(window_end_ms, wall_ms)
        }
        StoreOp::RegisterPrimary { id, tag } => check_registration(id, tag, from, from.0.saturating_add(1)),
        StoreOp::ClearPrimary { .. } | StoreOp::ReadPrimary => Ok(()),
    }
}

/// **B1** for a replica's answer to a node holding counter `held` whose
/// wall clock reads `wall_ms`: a `Fenced` ballot within B1, a loaded window
/// no further ahead than a replica could have stored it (B2, plus the skew
/// between the replica's clock and this one), a registration of a member.
pub fn check_store_reply(reply: &StoreReply, held: u64, nodes: u16, wall_ms: u64) -> Result<(), Implausible> {
    match *reply {
        Err(crate::store::StoreReject::Fenced { by }) => check_ballot(by, held, nodes),
        Ok(StoreOk::Loaded { window_end_ms }) => {
            check_window(window_end_ms, wall_ms.saturating_add(SKEW_ALLOWANCE_MS))
        }
        Ok(StoreOk::Primary { registered: Some((id, tag)) }) => {
            if id.0 >= nodes || tag.node != id {
                return Err(Implausible::Node { node: id, expected: nodes, nodes });
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(counter: u64, restart: u64, node: u16) -> Ballot {
        Ballot::new(counter, restart, NodeId(node))
    }

    #[test]
    fn ballots_within_the_step_and_the_ceiling_pass() {
        assert_eq!(check_ballot(b(5, 1, 2), 0, 3), Ok(()));
        assert_eq!(check_ballot(b(MAX_COUNTER_STEP, 1, 0), 0, 3), Ok(()));
        assert_eq!(
            check_ballot(b(MAX_COUNTER_STEP + 1, 1, 0), 0, 3),
            Err(Implausible::Counter { ballot: b(MAX_COUNTER_STEP + 1, 1, 0), limit: MAX_COUNTER_STEP })
        );
        // Near the ceiling the ceiling wins, whatever is held.
        assert_eq!(counter_limit(MAX_COUNTER - 1), MAX_COUNTER);
        assert_eq!(counter_limit(u64::MAX), MAX_COUNTER);
        assert!(check_ballot(b(u64::MAX, 1, 0), u64::MAX, 3).is_err());
        assert!(check_ballot(b(1, MAX_RESTART + 1, 0), 0, 3).is_err());
        assert!(check_ballot(b(1, 1, 3), 0, 3).is_err(), "node 3 of a cluster of 3");
        assert!(check_own_ballot(b(1, 1, 1), NodeId(2), 0, 3).is_err(), "another node's ballot");
        assert_eq!(check_own_ballot(b(1, 1, 2), NodeId(2), 0, 3), Ok(()));
    }

    #[test]
    fn windows_more_than_the_bound_ahead_are_refused() {
        let wall = 1_700_000_000_000;
        assert_eq!(check_window(wall + MAX_WINDOW_AHEAD_MS, wall), Ok(()));
        assert!(check_window(wall + MAX_WINDOW_AHEAD_MS + 1, wall).is_err());
        let century = 100 * 365 * 86_400_000;
        assert!(check_window(wall + century, wall).is_err());
        assert_eq!(check_window(u64::MAX, u64::MAX), Ok(()), "saturates, never overflows");
    }

    #[test]
    fn a_registration_names_its_sender_with_its_tag() {
        let me = NodeId(1);
        assert_eq!(check_registration(me, b(0, 7, 1), me, 3), Ok(()));
        assert!(check_registration(NodeId(0xFFFF), b(0, 7, 0xFFFF), NodeId(0xFFFF), 3).is_err());
        assert!(check_registration(NodeId(2), b(0, 7, 2), me, 3).is_err(), "registers another node");
        assert!(check_registration(me, b(3, 7, 1), me, 3).is_err(), "a tag with a counter");
        assert!(check_registration(me, b(0, 7, 2), me, 3).is_err(), "a tag of another node");
        assert!(check_registration(me, b(0, u64::MAX, 1), me, 3).is_err());
    }

    #[test]
    fn restart_answers_are_bounded_by_the_local_record() {
        assert_eq!(check_restart_info(b(9, MAX_RESTART_STEP, 0), 0, 0), Ok(()));
        assert!(check_restart_info(b(9, MAX_RESTART_STEP + 1, 0), 0, 0).is_err());
        assert!(check_restart_info(b(9, u64::MAX, 0), 5, 0).is_err());
        assert!(check_restart_info(b(u64::MAX, 3, 0), 5, 0).is_err());
        // The answer may never take the node to the ceiling itself.
        assert_eq!(restart_limit(MAX_RESTART), MAX_RESTART - 1);
    }
}
