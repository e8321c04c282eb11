//! The window store's contract, as operations out and replies in.
//!
//! The core never touches a disk: it emits a [`StoreOp`] for a replica and is
//! told the [`StoreReply`]. Every operation is atomic at the replica (one sled
//! transaction in `leasetso-sled`), and a reply of success means durable.
//! [`MemStore`] is the reference implementation, used by the simulator and by
//! the conformance tests every real store passes.
//!
//! Rules every store enforces, per lease name:
//! * **S1 (fence)**: an operation whose fence is lower than the stored fence is
//!   rejected with [`StoreReject::Fenced`]; otherwise the stored fence rises to it.
//!   So once a newer leader has loaded on a quorum, an older one can never
//!   save on a quorum again.
//! * **S2 (primary)**: a save with `check_primary` is rejected with
//!   [`StoreReject::PrimaryExists`] while a primary is registered.
//! * **S3 (growth)**: a save whose window is not greater than the stored one is
//!   rejected with [`StoreReject::NotGreater`]; the window never goes down.

use crate::ballot::{Ballot, LeaseName, NodeId};

/// One atomic store operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StoreOp {
    /// Raise the fence of `lease` to `fence` (S1) and return the saved window end.
    Load {
        /// The lease whose fence is raised.
        lease: LeaseName,
        /// The ballot of the acquisition that began this leadership.
        fence: Ballot,
    },
    /// Save a new window end (S1, S2, S3), durably.
    Save {
        /// The lease whose fence guards the save.
        lease: LeaseName,
        /// The new window end, in milliseconds.
        window_end_ms: u64,
        /// The ballot of the acquisition that began this leadership.
        fence: Ballot,
        /// Reject while a dedicated primary is registered (deferring mode).
        check_primary: bool,
    },
    /// Register `id` as the dedicated primary, fenced by its `primary` lease ballot.
    RegisterPrimary {
        /// The primary node.
        id: NodeId,
        /// Its ballot of the `primary` lease.
        fence: Ballot,
    },
    /// Clear the registration of `id`, fenced by its `primary` lease ballot.
    ClearPrimary {
        /// The primary node.
        id: NodeId,
        /// Its ballot of the `primary` lease.
        fence: Ballot,
    },
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
    /// The primary registration changed as asked.
    PrimaryUpdated,
}

/// Why a replica refused or failed an operation. Nothing was changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum StoreReject {
    /// S1: a newer leadership has fenced this lease.
    #[error("fenced by newer ballot {by}")]
    Fenced {
        /// The stored fence.
        by: Ballot,
    },
    /// S2: a dedicated primary is registered.
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

/// The reference store: the contract in memory, used by simulations and as
/// the oracle every durable store is tested against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct MemStore {
    window_end_ms: u64,
    fences: [Ballot; 2],
    primary: Option<NodeId>,
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

    /// The stored fence of `lease`.
    pub fn fence(&self, lease: LeaseName) -> Ballot {
        self.fences[lease as usize]
    }

    /// The registered primary.
    pub fn primary(&self) -> Option<NodeId> {
        self.primary
    }

    /// Increments and returns the restart counter (durable in a real store).
    pub fn bump_restart(&mut self) -> u64 {
        self.restart += 1;
        self.restart
    }

    /// S1 for `lease`: rejects a lower fence, otherwise returns the fence to store.
    fn check_fence(&self, lease: LeaseName, fence: Ballot) -> Result<(), StoreReject> {
        let by = self.fences[lease as usize];
        if by > fence { Err(StoreReject::Fenced { by }) } else { Ok(()) }
    }

    /// Performs one operation atomically.
    pub fn execute(&mut self, op: StoreOp) -> StoreReply {
        match op {
            StoreOp::Load { lease, fence } => {
                self.check_fence(lease, fence)?;
                self.fences[lease as usize] = fence;
                Ok(StoreOk::Loaded { window_end_ms: self.window_end_ms })
            }
            StoreOp::Save { lease, window_end_ms, fence, check_primary } => {
                self.check_fence(lease, fence)?;
                if let (true, Some(id)) = (check_primary, self.primary) {
                    return Err(StoreReject::PrimaryExists { id });
                }
                if window_end_ms <= self.window_end_ms {
                    return Err(StoreReject::NotGreater { stored: self.window_end_ms });
                }
                self.fences[lease as usize] = fence;
                self.window_end_ms = window_end_ms;
                Ok(StoreOk::Saved)
            }
            StoreOp::RegisterPrimary { id, fence } => {
                self.check_fence(LeaseName::Primary, fence)?;
                self.fences[LeaseName::Primary as usize] = fence;
                self.primary = Some(id);
                Ok(StoreOk::PrimaryUpdated)
            }
            StoreOp::ClearPrimary { id, fence } => {
                self.check_fence(LeaseName::Primary, fence)?;
                self.fences[LeaseName::Primary as usize] = fence;
                if self.primary == Some(id) {
                    self.primary = None;
                }
                Ok(StoreOk::PrimaryUpdated)
            }
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
        StoreOp::Save { lease: LeaseName::Leader, window_end_ms, fence, check_primary }
    }

    #[test]
    fn load_raises_fence_and_older_saves_are_rejected() {
        let mut s = MemStore::new();
        assert_eq!(s.execute(save(10, b(1), true)), Ok(StoreOk::Saved));
        assert_eq!(
            s.execute(StoreOp::Load { lease: LeaseName::Leader, fence: b(2) }),
            Ok(StoreOk::Loaded { window_end_ms: 10 })
        );
        assert_eq!(s.execute(save(20, b(1), true)), Err(StoreReject::Fenced { by: b(2) }));
        assert_eq!(s.window_end_ms(), 10);
        assert_eq!(
            s.execute(StoreOp::Load { lease: LeaseName::Leader, fence: b(1) }),
            Err(StoreReject::Fenced { by: b(2) })
        );
        // Fences are per lease name.
        assert_eq!(
            s.execute(StoreOp::Save {
                lease: LeaseName::Primary,
                window_end_ms: 30,
                fence: b(1),
                check_primary: false
            }),
            Ok(StoreOk::Saved)
        );
    }

    #[test]
    fn window_never_goes_down() {
        let mut s = MemStore::new();
        assert_eq!(s.execute(save(10, b(1), true)), Ok(StoreOk::Saved));
        assert_eq!(s.execute(save(10, b(1), true)), Err(StoreReject::NotGreater { stored: 10 }));
        assert_eq!(s.execute(save(5, b(3), true)), Err(StoreReject::NotGreater { stored: 10 }));
        assert_eq!(s.window_end_ms(), 10);
        assert_eq!(s.fence(LeaseName::Leader), b(1), "a rejected save changes nothing");
    }

    #[test]
    fn primary_blocks_checked_saves_only() {
        let mut s = MemStore::new();
        assert_eq!(
            s.execute(StoreOp::RegisterPrimary { id: NodeId(2), fence: b(1) }),
            Ok(StoreOk::PrimaryUpdated)
        );
        assert_eq!(s.execute(save(10, b(1), true)), Err(StoreReject::PrimaryExists { id: NodeId(2) }));
        assert_eq!(s.execute(save(10, b(1), false)), Ok(StoreOk::Saved));
        // A stale primary cannot clear a newer one's registration.
        assert_eq!(
            s.execute(StoreOp::RegisterPrimary { id: NodeId(3), fence: b(2) }),
            Ok(StoreOk::PrimaryUpdated)
        );
        assert_eq!(
            s.execute(StoreOp::ClearPrimary { id: NodeId(2), fence: b(1) }),
            Err(StoreReject::Fenced { by: b(2) })
        );
        assert_eq!(s.primary(), Some(NodeId(3)));
        assert_eq!(
            s.execute(StoreOp::ClearPrimary { id: NodeId(3), fence: b(2) }),
            Ok(StoreOk::PrimaryUpdated)
        );
        assert_eq!(s.primary(), None);
    }
}
