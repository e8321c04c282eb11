//! Conformance: the sled store answers every sequence of operations exactly
//! as the reference `MemStore` does, and keeps the same state across a reopen.

use leasetso_core::{Ballot, LeaseName, MemStore, NodeId, StoreOp};
use leasetso_sled::SledStore;
use proptest::prelude::*;
use tempfile::TempDir;

/// Few distinct values, so equal and crossing ballots and windows are common.
fn ballot() -> impl Strategy<Value = Ballot> {
    (0..3u64, 0..2u64, 0..2u16).prop_map(|(c, r, n)| Ballot::new(c, r, NodeId(n)))
}

fn lease() -> impl Strategy<Value = LeaseName> {
    prop_oneof![Just(LeaseName::Leader), Just(LeaseName::Primary)]
}

fn op() -> impl Strategy<Value = StoreOp> {
    prop_oneof![
        (lease(), ballot()).prop_map(|(lease, fence)| StoreOp::Load { lease, fence }),
        (lease(), 0..6u64, ballot(), any::<bool>()).prop_map(
            |(lease, window_end_ms, fence, check_primary)| {
                StoreOp::Save { lease, window_end_ms, fence, check_primary }
            }
        ),
        (0..3u16, ballot()).prop_map(|(id, fence)| StoreOp::RegisterPrimary { id: NodeId(id), fence }),
        (0..3u16, ballot()).prop_map(|(id, fence)| StoreOp::ClearPrimary { id: NodeId(id), fence }),
    ]
}

fn assert_same_state(sled: &SledStore, mem: &MemStore) -> Result<(), TestCaseError> {
    prop_assert_eq!(sled.window_end_ms().unwrap(), mem.window_end_ms());
    for lease in LeaseName::ALL {
        prop_assert_eq!(sled.fence(lease).unwrap(), mem.fence(lease), "fence of {:?}", lease);
    }
    prop_assert_eq!(sled.primary().unwrap(), mem.primary());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn sled_store_matches_mem_store(ops in prop::collection::vec(op(), 0..40)) {
        let dir = TempDir::new().unwrap();
        let sled = SledStore::open(dir.path(), 1).unwrap();
        let mut mem = MemStore::new();
        for (i, op) in ops.iter().enumerate() {
            prop_assert_eq!(sled.execute(*op), mem.execute(*op), "op {} {:?}", i, op);
        }
        assert_same_state(&sled, &mem)?;
        drop(sled);
        let sled = SledStore::open(dir.path(), 1).unwrap();
        assert_same_state(&sled, &mem)?;
    }
}
