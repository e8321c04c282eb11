//! The window store's contract, as operations out and replies in.
//!
//! The core never touches a disk: it emits a [`StoreOp`] for a replica and is
//! told the [`StoreReply`]. Every operation is atomic at the replica (one sled
//! transaction in `leasetso-sled`), and a reply of success means durable.
//! [`MemStore`] is the reference implementation, used by the simulator and by
//! the conformance tests every real store passes.
//!
//! There is **one lease**, whatever the nodes' modes, and so **one fence**
//! per store (ARCHITECTURE.md, "Yielding"). Rules every store enforces:
//! * **S1 (fence)**: a load or save whose fence is lower than the stored fence
//!   is rejected with [`StoreReject::Fenced`]; otherwise the stored fence
//!   rises to it. So once a newer leader has loaded on a quorum, an older one
//!   can never save on a quorum again.
//! * **S2 (primary)**: a load or save with `check_primary` is rejected with
//!   [`StoreReject::PrimaryExists`] while a primary is registered, checked in
//!   the same atomic step as the write: no checked save succeeds on a
//!   replica after a registration there has returned. (When both S1 and S2
//!   refuse, S2 is reported: it is the one a deferring node must act on.)
//! * **S3 (growth)**: a save whose window is not greater than the stored one is
//!   rejected with [`StoreReject::NotGreater`]; the window never goes down.
//! * **S4 (registration)**: `RegisterPrimary(id, tag)` records `(id, tag)`,
//!   replacing any earlier one; `ClearPrimary(id, tag)` clears it only on an
//!   exact match, so a stale primary (or operator) can never clear a newer
//!   registration. `tag` is a ballot of the registrant's, unique across its
//!   restarts.
//! * **B2 (plausibility)**: before any of these, a replica refuses with
//!   [`StoreReject::Implausible`] an operation no correct node sends
//!   ([`screen`], [`crate::bounds`]).

use crate::ballot::{Ballot, NodeId};

/// One atomic store operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StoreOp {
    /// Raise the fence to `fence` (S1, S2) and return the saved window end.
    Load {
        /// The ballot of the acquisition that began this leadership.
        fence: Ballot,
        /// Reject while a primary is registered (deferring mode).
        check_primary: bool,
    },
    /// Save a new window end (S1, S2, S3), durably.
    Save {
        /// The new window end, in milliseconds.
        window_end_ms: u64,
        /// The ballot of the acquisition that began this leadership.
        fence: Ballot,
        /// Reject while a primary is registered (deferring mode).
        check_primary: bool,
    },
    /// Register `id` as the primary (S4).
    RegisterPrimary {
        /// The primary node.
        id: NodeId,
        /// Its fresh tag, unique across its restarts.
        tag: Ballot,
    },
    /// Clear the registration if it is exactly `(id, tag)` (S4).
    ClearPrimary {
        /// The registered node.
        id: NodeId,
        /// Its tag.
        tag: Ballot,
    },
    /// Read the registration.
    ReadPrimary,
}

/// What a successful operation returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StoreOk {
    /// The load's window end (0 for a store never saved to).
    Loaded {
        /// The saved window end, in milliseconds.
        window_end_ms: u64,
    },
    /// The save is durable.
    Saved,
    /// The registration now recorded (after a register, read or clear).
    Primary {
        /// `(id, tag)` of the registered primary, if any.
        registered: Option<(NodeId, Ballot)>,
    },
}

/// Why a replica refused or failed an operation. Nothing was changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum StoreReject {
    /// S1: a newer leadership has fenced the store.
    #[error("fenced by newer ballot {by}")]
    Fenced {
        /// The stored fence.
        by: Ballot,
    },
    /// S2: a primary is registered.
    #[error("primary {id} is registered")]
    PrimaryExists {
        /// The registered primary.
        id: NodeId,
    },
    /// S3: the stored window is already at least the one offered.
    #[error("stored window {stored} ms is not below the one offered")]
    NotGreater {
        /// The stored window end.
        stored: u64,
    },
    /// The replica could not perform the operation (I/O error, corrupt data,
    /// timeout). Its state is unknown to the caller, never assumed changed.
    #[error("store replica failed")]
    Failed,
    /// B2: the operation carries a value no correct node sends (a fence
    /// that is not the sender's or far above the stored one, a window far
    /// ahead of the replica's wall clock, a registration of another node).
    /// Nothing was changed; the replica logs what it refused.
    #[error("store replica refused an implausible value")]
    Implausible,
}

/// A replica's answer to one operation.
pub type StoreReply = Result<StoreOk, StoreReject>;

/// An operation addressed to one replica, with the id its reply must carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StoreRequest {
    /// Matches the reply to the round that sent it; stale ids are ignored.
    pub id: u64,
    /// The operation.
    pub op: StoreOp,
}

/// **B2** at a replica whose stored fence is `stored_fence` and whose wall
/// clock reads `wall_ms`: `Err(Implausible)` for an operation no correct
/// node asks for ([`crate::bounds::check_store_op`]). Every replica runs it
/// before the operation, in the same sequence of operations (a replica runs
/// them one at a time), so the stored fence it compares with is current.
pub fn screen(op: &StoreOp, from: NodeId, stored_fence: Ballot, wall_ms: u64) -> Result<(), StoreReject> {
    crate::bounds::check_store_op(op, from, stored_fence, wall_ms).map_err(|_| StoreReject::Implausible)
}

/// The reference store: the contract in memory, used by simulations and as
/// the oracle every durable store is tested against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct MemStore {
    window_end_ms: u64,
    fence: Ballot,
    primary: Option<(NodeId, Ballot)>,
    restart: u64,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The saved window end.
    pub fn window_end_ms(&self) -> u64 {
        self.window_end_ms
    }

    /// The stored fence.
    pub fn fence(&self) -> Ballot {
        self.fence
    }

    /// The registered primary and its tag.
    pub fn primary(&self) -> Option<(NodeId, Ballot)> {
        self.primary
    }

    /// Increments and returns the restart counter (durable in a real store).
    pub fn bump_restart(&mut self) -> u64 {
        self.restart += 1;
        self.restart
    }

    /// S2 then S1 for a load or save.
    fn check(&self, fence: Ballot, check_primary: bool) -> Result<(), StoreReject> {
        if let (true, Some((id, _))) = (check_primary, self.primary) {
            return Err(StoreReject::PrimaryExists { id });
        }
        if self.fence > fence { Err(StoreReject::Fenced { by: self.fence }) } else { Ok(()) }
    }

    /// Performs one operation `from` asked for (this replica's node or a
    /// peer, as its link named it) at the replica's wall clock `wall_ms`,
    /// after the plausibility checks every replica makes first (B2, see
    /// [`screen`]); a refusal changes nothing.
    pub fn execute_from(&mut self, op: StoreOp, from: NodeId, wall_ms: u64) -> StoreReply {
        screen(&op, from, self.fence, wall_ms)?;
        self.execute(op)
    }

    /// Performs one operation atomically, without the plausibility checks
    /// (an operator's request, a test's setup).
    pub fn execute(&mut self, op: StoreOp) -> StoreReply {
        match op {
            StoreOp::Load { fence, check_primary } => {
                self.check(fence, check_primary)?;
                self.fence = fence;
                Ok(StoreOk::Loaded { window_end_ms: self.window_end_ms })
            }
            StoreOp::Save { window_end_ms, fence, check_primary } => {
                self.check(fence, check_primary)?;
                if window_end_ms <= self.window_end_ms {
                    return Err(StoreReject::NotGreater { stored: self.window_end_ms });
                }
                self.fence = fence;
                self.window_end_ms = window_end_ms;
                Ok(StoreOk::Saved)
            }
            StoreOp::RegisterPrimary { id, tag } => {
                self.primary = Some((id, tag));
                Ok(StoreOk::Primary { registered: self.primary })
            }
            StoreOp::ClearPrimary { id, tag } => {
                if self.primary == Some((id, tag)) {
                    self.primary = None;
                }
                Ok(StoreOk::Primary { registered: self.primary })
            }
            StoreOp::ReadPrimary => Ok(StoreOk::Primary { registered: self.primary }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(counter: u64) -> Ballot {
        Ballot::new(counter, 1, NodeId(0))
    }

    fn save(window_end_ms: u64, fence: Ballot, check_primary: bool) -> StoreOp {
        StoreOp::Save { window_end_ms, fence, check_primary }
    }

    fn load(fence: Ballot, check_primary: bool) -> StoreOp {
        StoreOp::Load { fence, check_primary }
    }

    #[test]
    fn load_raises_fence_and_older_saves_are_rejected() {
        let mut s = MemStore::new();
        assert_eq!(s.execute(save(10, b(1), true)), Ok(StoreOk::Saved));
        assert_eq!(s.execute(load(b(2), true)), Ok(StoreOk::Loaded { window_end_ms: 10 }));
        assert_eq!(s.execute(save(20, b(1), true)), Err(StoreReject::Fenced { by: b(2) }));
        assert_eq!(s.window_end_ms(), 10);
        assert_eq!(s.execute(load(b(1), false)), Err(StoreReject::Fenced { by: b(2) }));
        assert_eq!(s.fence(), b(2));
    }

    #[test]
    fn window_never_goes_down() {
        let mut s = MemStore::new();
        assert_eq!(s.execute(save(10, b(1), true)), Ok(StoreOk::Saved));
        assert_eq!(s.execute(save(10, b(1), true)), Err(StoreReject::NotGreater { stored: 10 }));
        assert_eq!(s.execute(save(5, b(3), true)), Err(StoreReject::NotGreater { stored: 10 }));
        assert_eq!(s.window_end_ms(), 10);
        assert_eq!(s.fence(), b(1), "a rejected save changes nothing");
    }

    #[test]
    fn a_registration_blocks_checked_loads_and_saves_only() {
        let mut s = MemStore::new();
        let tag = Ballot::new(0, 4, NodeId(2));
        let reg = Some((NodeId(2), tag));
        assert_eq!(
            s.execute(StoreOp::RegisterPrimary { id: NodeId(2), tag }),
            Ok(StoreOk::Primary { registered: reg })
        );
        assert_eq!(s.execute(save(10, b(1), true)), Err(StoreReject::PrimaryExists { id: NodeId(2) }));
        assert_eq!(s.execute(load(b(1), true)), Err(StoreReject::PrimaryExists { id: NodeId(2) }));
        assert_eq!(s.fence(), Ballot::ZERO, "a refused load raises nothing");
        assert_eq!(s.execute(save(10, b(1), false)), Ok(StoreOk::Saved));
        assert_eq!(s.execute(load(b(2), false)), Ok(StoreOk::Loaded { window_end_ms: 10 }));
        // Both refuse: the registration is what a deferring node must hear.
        assert_eq!(s.execute(save(20, b(1), true)), Err(StoreReject::PrimaryExists { id: NodeId(2) }));
    }

    #[test]
    fn only_the_exact_registration_is_cleared() {
        let mut s = MemStore::new();
        let old = Ballot::new(0, 4, NodeId(2));
        let new = Ballot::new(0, 5, NodeId(2));
        s.execute(StoreOp::RegisterPrimary { id: NodeId(2), tag: old }).unwrap();
        s.execute(StoreOp::RegisterPrimary { id: NodeId(2), tag: new }).unwrap();
        // A stale tag of the same node, or another node with the tag, clears nothing.
        assert_eq!(
            s.execute(StoreOp::ClearPrimary { id: NodeId(2), tag: old }),
            Ok(StoreOk::Primary { registered: Some((NodeId(2), new)) })
        );
        assert_eq!(
            s.execute(StoreOp::ClearPrimary { id: NodeId(1), tag: new }),
            Ok(StoreOk::Primary { registered: Some((NodeId(2), new)) })
        );
        assert_eq!(
            s.execute(StoreOp::ClearPrimary { id: NodeId(2), tag: new }),
            Ok(StoreOk::Primary { registered: None })
        );
        assert_eq!(s.execute(StoreOp::ReadPrimary), Ok(StoreOk::Primary { registered: None }));
        assert_eq!(s.execute(save(10, b(1), true)), Ok(StoreOk::Saved));
    }
}
