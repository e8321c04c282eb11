//! Behaviour of the sled store on disk: the contract's rules (S1 fence, S2
//! primary, S3 growth, S4 registration) with one lease and one fence,
//! rejections change nothing, state survives a reopen, and a damaged data
//! dir or one of another cluster or node is an error, never a panic.

use leasetso_core::{Ballot, MemStore, NodeId, StoreOk, StoreOp, StoreReject};
use leasetso_sled::{SledStore, StoreError};
use tempfile::TempDir;

const CLUSTER: u64 = 0xC1;

/// A leadership ballot of node 0.
fn b(counter: u64) -> Ballot {
    Ballot::new(counter, 1, NodeId(0))
}

/// A registration tag: a ballot of the registrant `id` in its restart `restart`.
fn tag(id: u16, restart: u64) -> Ballot {
    Ballot::new(0, restart, NodeId(id))
}

/// Everything the store holds that a contract operation may change.
fn snapshot(s: &SledStore) -> (u64, Ballot, Option<(NodeId, Ballot)>) {
    (s.window_end_ms().unwrap(), s.fence().unwrap(), s.primary().unwrap())
}

#[test]
fn store_is_send_sync_and_clone() {
    fn check<T: Send + Sync + Clone + 'static>() {}
    check::<SledStore>();
}

#[test]
fn fresh_store_is_empty() {
    let dir = TempDir::new().unwrap();
    let s = SledStore::open(dir.path(), CLUSTER).unwrap();
    assert_eq!(snapshot(&s), (0, Ballot::ZERO, None));
    assert_eq!(s.restart().unwrap(), 0);
    assert_eq!(s.execute(StoreOp::ReadPrimary), Ok(StoreOk::Primary { registered: None }));
    assert_eq!(s.load(b(1), true).unwrap(), 0);
    assert_eq!(snapshot(&s), (0, b(1), None));
}

#[test]
fn load_and_save_raise_the_one_fence_and_equal_fences_pass() {
    let dir = TempDir::new().unwrap();
    let s = SledStore::open(dir.path(), CLUSTER).unwrap();
    s.save(10, b(1), true).unwrap();
    assert_eq!(snapshot(&s), (10, b(1), None));
    // The same leadership saves and loads again under its own fence.
    s.save(11, b(1), false).unwrap();
    assert_eq!(s.load(b(1), true).unwrap(), 11);
    // A save with a higher fence raises it, as a load does.
    s.save(12, b(3), true).unwrap();
    assert_eq!(snapshot(&s), (12, b(3), None));
    assert_eq!(s.load(b(4), false).unwrap(), 12);
    assert_eq!(snapshot(&s), (12, b(4), None));
}

#[test]
fn fenced_rejections_change_nothing() {
    let dir = TempDir::new().unwrap();
    let s = SledStore::open(dir.path(), CLUSTER).unwrap();
    s.save(10, b(1), true).unwrap();
    assert_eq!(s.load(b(2), true).unwrap(), 10);
    let before = snapshot(&s);
    assert_eq!(before, (10, b(2), None));

    for check_primary in [false, true] {
        let r = s.save(20, b(1), check_primary);
        assert!(matches!(r, Err(StoreError::Fenced { by }) if by == b(2)), "{r:?}");
        let r = s.load(b(1), check_primary);
        assert!(matches!(r, Err(StoreError::Fenced { by }) if by == b(2)), "{r:?}");
        // A lower ballot of a later restart or of a higher node is still lower.
        let r = s.load(Ballot::new(1, 9, NodeId(9)), check_primary);
        assert!(matches!(r, Err(StoreError::Fenced { by }) if by == b(2)), "{r:?}");
    }
    assert_eq!(snapshot(&s), before);
    assert_eq!(
        s.execute(StoreOp::Save { window_end_ms: 20, fence: b(1), check_primary: false }),
        Err(StoreReject::Fenced { by: b(2) })
    );
}

#[test]
fn not_greater_rejection_changes_nothing() {
    let dir = TempDir::new().unwrap();
    let s = SledStore::open(dir.path(), CLUSTER).unwrap();
    s.save(10, b(1), true).unwrap();
    let before = snapshot(&s);

    for (window, fence) in [(10, b(1)), (5, b(3)), (0, b(4))] {
        for check_primary in [false, true] {
            let r = s.save(window, fence, check_primary);
            assert!(matches!(r, Err(StoreError::NotGreater { stored: 10 })), "{r:?}");
        }
    }
    assert_eq!(snapshot(&s), before, "a rejected save does not raise the fence");
}

#[test]
fn a_registration_refuses_checked_loads_and_saves_and_they_change_nothing() {
    let dir = TempDir::new().unwrap();
    let s = SledStore::open(dir.path(), CLUSTER).unwrap();
    s.save(10, b(1), true).unwrap();
    assert_eq!(s.register_primary(NodeId(2), tag(2, 1)).unwrap(), Some((NodeId(2), tag(2, 1))));
    let before = snapshot(&s);
    assert_eq!(before, (10, b(1), Some((NodeId(2), tag(2, 1)))), "registering touches no window or fence");

    // A higher fence that would be raised on success is not raised, by a
    // checked save or by a checked load.
    let r = s.save(20, b(5), true);
    assert!(matches!(r, Err(StoreError::PrimaryExists { id: NodeId(2) })), "{r:?}");
    let r = s.load(b(5), true);
    assert!(matches!(r, Err(StoreError::PrimaryExists { id: NodeId(2) })), "{r:?}");
    assert_eq!(snapshot(&s), before);
    assert_eq!(s.fence().unwrap(), b(1), "a refused load raises nothing");
    assert_eq!(
        s.execute(StoreOp::Load { fence: b(6), check_primary: true }),
        Err(StoreReject::PrimaryExists { id: NodeId(2) })
    );
    assert_eq!(s.fence().unwrap(), b(1));

    // S2 binds only checked loads and saves.
    assert_eq!(s.load(b(5), false).unwrap(), 10);
    s.save(20, b(6), false).unwrap();
    assert_eq!(snapshot(&s), (20, b(6), Some((NodeId(2), tag(2, 1)))));
}

/// When S2 and S1 (or S2 and S3) both refuse, the registration is what is
/// reported: it is what a deferring node must act on. S1 still comes before
/// S3 for an unchecked save.
#[test]
fn primary_exists_is_reported_when_s1_or_s3_also_refuse() {
    let dir = TempDir::new().unwrap();
    let s = SledStore::open(dir.path(), CLUSTER).unwrap();
    let mut mem = MemStore::new();
    let reg = (NodeId(1), tag(1, 3));
    let setup = [
        StoreOp::Save { window_end_ms: 10, fence: b(2), check_primary: true },
        StoreOp::RegisterPrimary { id: reg.0, tag: reg.1 },
    ];
    for op in setup {
        assert_eq!(s.execute(op), mem.execute(op));
    }
    let before = snapshot(&s);
    let primary_exists = Err(StoreReject::PrimaryExists { id: NodeId(1) });
    let cases = [
        // Fenced and registered.
        (StoreOp::Save { window_end_ms: 20, fence: b(1), check_primary: true }, primary_exists),
        (StoreOp::Load { fence: b(1), check_primary: true }, primary_exists),
        // Fenced, registered and not greater.
        (StoreOp::Save { window_end_ms: 5, fence: b(1), check_primary: true }, primary_exists),
        // Registered and not greater.
        (StoreOp::Save { window_end_ms: 5, fence: b(2), check_primary: true }, primary_exists),
        // Unchecked: fenced and not greater, S1 first.
        (
            StoreOp::Save { window_end_ms: 5, fence: b(1), check_primary: false },
            Err(StoreReject::Fenced { by: b(2) }),
        ),
        (StoreOp::Load { fence: b(1), check_primary: false }, Err(StoreReject::Fenced { by: b(2) })),
        (
            StoreOp::Save { window_end_ms: 5, fence: b(3), check_primary: false },
            Err(StoreReject::NotGreater { stored: 10 }),
        ),
    ];
    for (op, expected) in cases {
        assert_eq!(s.execute(op), expected, "{op:?}");
        assert_eq!(mem.execute(op), expected, "the reference store: {op:?}");
        assert_eq!(snapshot(&s), before, "{op:?} changed the store");
    }
    // The typed errors say the same.
    let r = s.save(5, b(1), true);
    assert!(matches!(r, Err(StoreError::PrimaryExists { id: NodeId(1) })), "{r:?}");
    let r = s.load(b(1), true);
    assert!(matches!(r, Err(StoreError::PrimaryExists { id: NodeId(1) })), "{r:?}");
}

#[test]
fn a_registration_replaces_any_earlier_one() {
    let dir = TempDir::new().unwrap();
    let s = SledStore::open(dir.path(), CLUSTER).unwrap();
    assert_eq!(s.register_primary(NodeId(2), tag(2, 5)).unwrap(), Some((NodeId(2), tag(2, 5))));
    // Another node replaces it, and so does any tag: registrations are not fenced.
    assert_eq!(s.register_primary(NodeId(3), tag(3, 1)).unwrap(), Some((NodeId(3), tag(3, 1))));
    assert_eq!(s.primary().unwrap(), Some((NodeId(3), tag(3, 1))));
    assert_eq!(s.register_primary(NodeId(3), tag(3, 0)).unwrap(), Some((NodeId(3), tag(3, 0))));
    assert_eq!(s.primary().unwrap(), Some((NodeId(3), tag(3, 0))));
    // Registering the same again is harmless.
    assert_eq!(
        s.execute(StoreOp::RegisterPrimary { id: NodeId(3), tag: tag(3, 0) }),
        Ok(StoreOk::Primary { registered: Some((NodeId(3), tag(3, 0))) })
    );
    // The replaced registration is gone: clearing it clears nothing.
    assert_eq!(s.clear_primary(NodeId(2), tag(2, 5)).unwrap(), Some((NodeId(3), tag(3, 0))));
    let r = s.save(10, b(1), true);
    assert!(matches!(r, Err(StoreError::PrimaryExists { id: NodeId(3) })), "{r:?}");
    assert_eq!(snapshot(&s), (0, Ballot::ZERO, Some((NodeId(3), tag(3, 0)))));
}

#[test]
fn only_the_exact_registration_is_cleared() {
    let dir = TempDir::new().unwrap();
    let s = SledStore::open(dir.path(), CLUSTER).unwrap();
    s.save(10, b(1), false).unwrap();
    s.register_primary(NodeId(2), tag(2, 4)).unwrap();
    s.register_primary(NodeId(2), tag(2, 5)).unwrap();
    let current = Some((NodeId(2), tag(2, 5)));
    let before = snapshot(&s);

    // A stale tag of the same node, another node with the current tag, or
    // with a tag of its own, clears nothing.
    for (id, t) in [(NodeId(2), tag(2, 4)), (NodeId(1), tag(2, 5)), (NodeId(1), tag(1, 5)), (NodeId(2), b(5))]
    {
        assert_eq!(s.clear_primary(id, t).unwrap(), current, "clear {id:?} {t:?}");
        assert_eq!(
            s.execute(StoreOp::ClearPrimary { id, tag: t }),
            Ok(StoreOk::Primary { registered: current })
        );
        assert_eq!(snapshot(&s), before);
    }
    let r = s.load(b(2), true);
    assert!(matches!(r, Err(StoreError::PrimaryExists { id: NodeId(2) })), "{r:?}");

    // The exact match clears it, touching no window or fence; clearing again is a no-op.
    assert_eq!(s.clear_primary(NodeId(2), tag(2, 5)).unwrap(), None);
    assert_eq!(snapshot(&s), (10, b(1), None));
    assert_eq!(
        s.execute(StoreOp::ClearPrimary { id: NodeId(2), tag: tag(2, 5) }),
        Ok(StoreOk::Primary { registered: None })
    );
    assert_eq!(s.execute(StoreOp::ReadPrimary), Ok(StoreOk::Primary { registered: None }));
    assert_eq!(s.load(b(2), true).unwrap(), 10);
    s.save(20, b(2), true).unwrap();
    assert_eq!(snapshot(&s), (20, b(2), None));
}

#[test]
fn state_survives_reopen() {
    let dir = TempDir::new().unwrap();
    {
        let s = SledStore::open(dir.path(), CLUSTER).unwrap();
        assert_eq!(s.bump_restart().unwrap(), 1);
        s.save(1234, b(3), true).unwrap();
        s.load(b(4), true).unwrap();
        s.register_primary(NodeId(6), tag(6, 5)).unwrap();
        // A clone shares the database; all handles must go for the reopen.
        let clone = s.clone();
        drop(s);
        assert_eq!(clone.window_end_ms().unwrap(), 1234);
    }
    let s = SledStore::open(dir.path(), CLUSTER).unwrap();
    assert_eq!(snapshot(&s), (1234, b(4), Some((NodeId(6), tag(6, 5)))));
    assert_eq!(s.restart().unwrap(), 1);
    assert_eq!(s.bump_restart().unwrap(), 2);
    // The kept fence still rejects an older leader, the kept registration a checked one.
    let r = s.save(2000, b(3), false);
    assert!(matches!(r, Err(StoreError::Fenced { by }) if by == b(4)), "{r:?}");
    let r = s.load(b(5), true);
    assert!(matches!(r, Err(StoreError::PrimaryExists { id: NodeId(6) })), "{r:?}");
    assert_eq!(s.load(b(4), false).unwrap(), 1234);
    // A stale tag still clears nothing after the reopen; the exact one does, durably.
    assert_eq!(s.clear_primary(NodeId(6), tag(6, 4)).unwrap(), Some((NodeId(6), tag(6, 5))));
    assert_eq!(s.clear_primary(NodeId(6), tag(6, 5)).unwrap(), None);
    drop(s);

    let s = SledStore::open(dir.path(), CLUSTER).unwrap();
    assert_eq!(snapshot(&s), (1234, b(4), None));
    assert_eq!(s.bump_restart().unwrap(), 3);
    s.save(2000, b(4), true).unwrap();
}

#[test]
fn restart_counter_is_raised_never_lowered_and_kept() {
    let dir = TempDir::new().unwrap();
    {
        let s = SledStore::open(dir.path(), CLUSTER).unwrap();
        assert_eq!(s.restart().unwrap(), 0);
        assert_eq!(s.raise_restart(5).unwrap(), 5);
        assert_eq!(s.raise_restart(3).unwrap(), 5, "raising to less keeps the counter");
        assert_eq!(s.bump_restart().unwrap(), 6);
        assert_eq!(snapshot(&s), (0, Ballot::ZERO, None), "the counter is apart from the contract's state");
    }
    let s = SledStore::open(dir.path(), CLUSTER).unwrap();
    assert_eq!(s.restart().unwrap(), 6);
    assert_eq!(s.bump_restart().unwrap(), 7);
}

#[test]
fn other_cluster_id_is_refused_and_leaves_the_dir_intact() {
    let dir = TempDir::new().unwrap();
    {
        let s = SledStore::open(dir.path(), CLUSTER).unwrap();
        s.save(10, b(1), true).unwrap();
        s.register_primary(NodeId(1), tag(1, 1)).unwrap();
    }
    let r = SledStore::open(dir.path(), CLUSTER + 1);
    assert!(
        matches!(r, Err(StoreError::ClusterMismatch { stored: CLUSTER, expected }) if expected == CLUSTER + 1),
        "{r:?}"
    );
    let s = SledStore::open(dir.path(), CLUSTER).unwrap();
    assert_eq!(snapshot(&s), (10, b(1), Some((NodeId(1), tag(1, 1)))));
}

#[test]
fn other_node_id_is_refused_and_leaves_the_dir_intact() {
    let dir = TempDir::new().unwrap();
    {
        let s = SledStore::open(dir.path(), CLUSTER).unwrap();
        s.claim_node(NodeId(1)).unwrap();
        s.claim_node(NodeId(1)).unwrap();
        s.save(10, b(1), true).unwrap();
    }
    let s = SledStore::open(dir.path(), CLUSTER).unwrap();
    let r = s.claim_node(NodeId(2));
    assert!(matches!(r, Err(StoreError::NodeMismatch { stored: NodeId(1), expected: NodeId(2) })), "{r:?}");
    drop(s);
    let s = SledStore::open(dir.path(), CLUSTER).unwrap();
    s.claim_node(NodeId(1)).unwrap();
    assert_eq!(snapshot(&s), (10, b(1), None));
}

/// The file lock keeps a second store (another node misconfigured onto the
/// same dir) out while the first is open.
#[test]
fn a_dir_in_use_is_refused() {
    let dir = TempDir::new().unwrap();
    let s = SledStore::open(dir.path(), CLUSTER).unwrap();
    let r = SledStore::open(dir.path(), CLUSTER);
    assert!(matches!(r, Err(StoreError::Io(_))), "{r:?}");
    s.save(10, b(1), true).unwrap();
}

/// Opens the dir with plain sled, waiting (as `SledStore::open` does) for
/// the lock of the store just dropped, which sled releases asynchronously.
fn raw_open(dir: &TempDir) -> sled::Db {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        match sled::open(dir.path()) {
            Ok(db) => return db,
            Err(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(e) => panic!("raw open: {e}"),
        }
    }
}

/// Writes `value` under `key` through a raw sled database on `dir`, while
/// the store is closed.
fn write_raw(dir: &TempDir, key: &str, value: &[u8]) {
    let db = raw_open(dir);
    db.insert(key, value).unwrap();
    db.flush().unwrap();
}

/// A populated store, closed.
fn populated() -> TempDir {
    let dir = TempDir::new().unwrap();
    let s = SledStore::open(dir.path(), CLUSTER).unwrap();
    s.claim_node(NodeId(1)).unwrap();
    s.save(10, b(1), true).unwrap();
    s.register_primary(NodeId(1), tag(1, 1)).unwrap();
    s.bump_restart().unwrap();
    dir
}

#[test]
fn corrupt_values_fail_open_without_panic() {
    let keys = ["cluster_id", "window_end_ms", "fence/leader", "primary", "restart"];
    // Wrong lengths for every key, among them a registration in the
    // previous format (a bare u16 node id, no tag).
    let garbage = [&[][..], &[0, 2][..], &[0xFF; 3][..], &[0xAB; 19][..], &[0xCD; 21][..]];
    for key in keys {
        for value in garbage {
            let dir = populated();
            write_raw(&dir, key, value);
            let r = SledStore::open(dir.path(), CLUSTER);
            assert!(
                matches!(&r, Err(StoreError::Corrupt { key: k, .. }) if *k == key),
                "{key} {value:?}: {r:?}"
            );
        }
    }
}

/// The node id is checked when the node claims the dir, not at open.
#[test]
fn corrupt_node_id_fails_the_claim_without_panic() {
    for value in [&[][..], &[1][..], &[0, 0, 1][..]] {
        let dir = populated();
        write_raw(&dir, "node_id", value);
        let s = SledStore::open(dir.path(), CLUSTER).unwrap();
        let r = s.claim_node(NodeId(1));
        assert!(matches!(r, Err(StoreError::Corrupt { key: "node_id", .. })), "{value:?}: {r:?}");
    }
}

#[test]
fn data_without_cluster_id_is_refused() {
    let dir = populated();
    {
        let db = raw_open(&dir);
        db.remove("cluster_id").unwrap();
        db.flush().unwrap();
    }
    let r = SledStore::open(dir.path(), CLUSTER + 1);
    assert!(matches!(r, Err(StoreError::Corrupt { key: "cluster_id", .. })), "{r:?}");
}

#[test]
fn garbage_store_files_fail_open_without_panic() {
    let dir = populated();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::write(&path, b"this is not a sled file, not at all").unwrap();
        }
    }
    let r = SledStore::open(dir.path(), CLUSTER);
    assert!(r.is_err(), "{r:?}");
}

/// sled recovers a garbled log as an empty database; the store must refuse
/// it rather than serve window 0 with no fence and no registration.
#[test]
fn damaged_log_file_is_refused_not_served_empty() {
    type Damage = fn(Vec<u8>) -> Vec<u8>;
    let damages: [(&str, Damage); 3] = [
        ("replaced", |_| b"garbage garbage garbage".to_vec()),
        ("flipped", |d| d.into_iter().map(|x| x ^ 0x5a).collect()),
        ("zeroed", |d| vec![0; d.len()]),
    ];
    for (name, damage) in damages {
        let dir = populated();
        let db = dir.path().join("db");
        std::fs::write(&db, damage(std::fs::read(&db).unwrap())).unwrap();
        let r = SledStore::open(dir.path(), CLUSTER);
        assert!(r.is_err(), "{name}: {r:?}");
    }
    // A log cut in half that loses the cluster id with the rest (a store
    // holding one save) is refused too; a longer log cut to a prefix that
    // keeps the id is not yet (see the ignored test below).
    let dir = TempDir::new().unwrap();
    {
        let s = SledStore::open(dir.path(), CLUSTER).unwrap();
        s.save(10, b(1), true).unwrap();
    }
    let db = dir.path().join("db");
    let log = std::fs::read(&db).unwrap();
    std::fs::write(&db, &log[..log.len() / 2]).unwrap();
    let r = SledStore::open(dir.path(), CLUSTER);
    assert!(r.is_err(), "truncated: {r:?}");
}

/// A log cut to any shorter prefix (a torn tail, or a file truncated by a
/// damaged filesystem) must be refused, never served as the older state it
/// recovers to.
///
/// sled recovers the readable prefix silently. This test found that a
/// store with its cluster id, node id, one save, one registration and one
/// restart bump (a 402-byte log when this was written) opened, when cut, as
/// window 0 and fence zero (cuts from about 149 bytes), without its
/// registration (from about 288 bytes; a deferring leader's checked save
/// would then succeed on this replica), or without its restart counter
/// (from about 352 bytes). The store now keeps a restart marker beside the
/// log, written after every bump, and refuses a log whose counter is below
/// it: every cut that loses anything written before the last start is
/// refused. Writes after the last start (this start's saves) are not
/// covered by the marker; the quorum is what protects them.
#[test]
fn a_log_cut_to_a_prefix_is_refused_not_served_rolled_back() {
    // The log as the writes left it: not reopened since (a reopen rewrites
    // it into a preallocated segment, whose cuts sled itself refuses).
    let dir = populated();
    let full = ((10, b(1), Some((NodeId(1), tag(1, 1)))), 1);
    let log = std::fs::read(dir.path().join("db")).unwrap();
    let mut served = Vec::new();
    for cut in 1..log.len() {
        let copy = TempDir::new().unwrap();
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let entry = entry.unwrap();
            if entry.path().is_file() {
                std::fs::copy(entry.path(), copy.path().join(entry.file_name())).unwrap();
            }
        }
        std::fs::write(copy.path().join("db"), &log[..cut]).unwrap();
        if let Ok(s) = SledStore::open(copy.path(), CLUSTER) {
            let state = (snapshot(&s), s.restart().unwrap());
            if state != full {
                served.push((cut, state));
            }
        }
    }
    // The first cut serving each distinct older state.
    let mut firsts: Vec<(usize, _)> = Vec::new();
    for (cut, state) in &served {
        if firsts.iter().all(|(_, seen)| seen != state) {
            firsts.push((*cut, *state));
        }
    }
    assert!(
        served.is_empty(),
        "{} of {} cuts served an older state than {full:?}: from cut {firsts:?}",
        served.len(),
        log.len() - 1,
    );
}
