//! The learner (L1): who owns the lease, as far as this node knows.
//!
//! Only the owner acts on a lease, with the deadline its own proposer stored
//! (P4). Every other node keeps a *hint*, for redirecting clients and for not
//! campaigning against a live owner. The hint's expiry is measured from the
//! arrival of `LearnChosen`, which assumes a bound on delivery delay; a late
//! message only makes the hint wrong for a while (a redirected client retries,
//! a campaign is deferred or started early), never two owners: safety rests
//! on the proposer and acceptor rules alone.

use core::time::Duration;

use crate::ballot::NodeId;
use crate::time::Instant;

/// The leader hint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Learner {
    hint: Option<(NodeId, Instant)>,
}

impl Learner {
    /// No hint yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// L1: `owner` announced a lease with `remaining` left; believe it for at
    /// most `remaining`, capped at `cap` (the lease duration).
    pub fn learn(&mut self, owner: NodeId, remaining: Duration, cap: Duration, now: Instant) {
        self.hint = Some((owner, now + remaining.min(cap)));
    }

    /// Forgets the hint if it names `owner` (it released, or is known gone).
    pub fn forget(&mut self, owner: NodeId) {
        if self.hint.is_some_and(|(o, _)| o == owner) {
            self.hint = None;
        }
    }

    /// The owner believed to hold the lease at `now`.
    pub fn owner(&self, now: Instant) -> Option<NodeId> {
        self.hint.filter(|&(_, until)| now < until).map(|(o, _)| o)
    }

    /// When the hint runs out.
    pub fn expires(&self) -> Option<Instant> {
        self.hint.map(|(_, until)| until)
    }
}
