//! Conformance: the sled store answers every sequence of operations exactly
//! as the reference `MemStore` does, op by op, holds the same state (window,
//! fence, registration) after each, and keeps that state across a reopen.

use leasetso_core::{Ballot, MemStore, NodeId, StoreOp};
use leasetso_sled::SledStore;
use proptest::prelude::*;
use tempfile::TempDir;

/// Few distinct values, so equal and crossing ballots are common.
fn ballot() -> impl Strategy<Value = Ballot> {
    (0..3u64, 0..2u64, 0..2u16).prop_map(|(c, r, n)| Ballot::new(c, r, NodeId(n)))
}

/// Registrant ids and tags with few distinct values (2 ids x 4 tags), so a
/// clear often matches the registration exactly, and as often misses it by
/// the tag only or by the id only.
fn registration() -> impl Strategy<Value = (NodeId, Ballot)> {
    (0..2u16, 0..2u64, 0..2u16)
        .prop_map(|(id, restart, node)| (NodeId(id), Ballot::new(0, restart, NodeId(node))))
}

fn op() -> impl Strategy<Value = StoreOp> {
    prop_oneof![
        3 => (ballot(), any::<bool>()).prop_map(|(fence, check_primary)| StoreOp::Load { fence, check_primary }),
        4 => (0..6u64, ballot(), any::<bool>()).prop_map(|(window_end_ms, fence, check_primary)| {
            StoreOp::Save { window_end_ms, fence, check_primary }
        }),
        2 => registration().prop_map(|(id, tag)| StoreOp::RegisterPrimary { id, tag }),
        3 => registration().prop_map(|(id, tag)| StoreOp::ClearPrimary { id, tag }),
        1 => Just(StoreOp::ReadPrimary),
    ]
}

fn assert_same_state(sled: &SledStore, mem: &MemStore) -> Result<(), TestCaseError> {
    prop_assert_eq!(sled.window_end_ms().unwrap(), mem.window_end_ms(), "window");
    prop_assert_eq!(sled.fence().unwrap(), mem.fence(), "fence");
    prop_assert_eq!(sled.primary().unwrap(), mem.primary(), "registration");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn sled_store_matches_mem_store(ops in prop::collection::vec(op(), 0..40)) {
        let dir = TempDir::new().unwrap();
        let sled = SledStore::open(dir.path(), 1).unwrap();
        let mut mem = MemStore::new();
        for (i, op) in ops.iter().enumerate() {
            prop_assert_eq!(sled.execute(*op), mem.execute(*op), "op {} {:?}", i, op);
            assert_same_state(&sled, &mem).map_err(|e| TestCaseError::fail(format!("after op {i} {op:?}: {e}")))?;
        }
        assert_same_state(&sled, &mem)?;
        drop(sled);
        let sled = SledStore::open(dir.path(), 1).unwrap();
        assert_same_state(&sled, &mem).map_err(|e| TestCaseError::fail(format!("after reopen: {e}")))?;
        // The reopened store goes on answering as the reference does.
        for op in [StoreOp::ReadPrimary, StoreOp::Load { fence: Ballot::ZERO, check_primary: true }] {
            prop_assert_eq!(sled.execute(op), mem.execute(op), "after reopen: {:?}", op);
        }
    }
}
