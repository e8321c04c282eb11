//! Behaviour of the sled store on disk: rejections change nothing, state
//! survives a reopen, and a damaged data dir is an error, never a panic.

use leasetso_core::{Ballot, LeaseName, NodeId};
use leasetso_sled::{SledStore, StoreError};
use tempfile::TempDir;

const CLUSTER: u64 = 0xC1;

fn b(counter: u64) -> Ballot {
    Ballot::new(counter, 1, NodeId(0))
}

/// Everything the store holds that an operation may change.
fn snapshot(s: &SledStore) -> (u64, Ballot, Ballot, Option<NodeId>) {
    (
        s.window_end_ms().unwrap(),
        s.fence(LeaseName::Leader).unwrap(),
        s.fence(LeaseName::Primary).unwrap(),
        s.primary().unwrap(),
    )
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
    assert_eq!(snapshot(&s), (0, Ballot::ZERO, Ballot::ZERO, None));
    assert_eq!(s.load(LeaseName::Leader, b(1)).unwrap(), 0);
    assert_eq!(s.fence(LeaseName::Leader).unwrap(), b(1));
    assert_eq!(s.fence(LeaseName::Primary).unwrap(), Ballot::ZERO, "fences are per lease");
}

#[test]
fn fenced_rejections_change_nothing() {
    let dir = TempDir::new().unwrap();
    let s = SledStore::open(dir.path(), CLUSTER).unwrap();
    s.save(LeaseName::Leader, 10, b(1), true).unwrap();
    s.register_primary(NodeId(2), b(3)).unwrap();
    assert_eq!(s.load(LeaseName::Leader, b(2)).unwrap(), 10);
    let before = snapshot(&s);
    assert_eq!(before, (10, b(2), b(3), Some(NodeId(2))));

    assert!(
        matches!(s.save(LeaseName::Leader, 20, b(1), false), Err(StoreError::Fenced { by }) if by == b(2))
    );
    assert!(matches!(s.load(LeaseName::Leader, b(1)), Err(StoreError::Fenced { by }) if by == b(2)));
    assert!(matches!(s.register_primary(NodeId(4), b(2)), Err(StoreError::Fenced { by }) if by == b(3)));
    assert!(matches!(s.clear_primary(NodeId(2), b(2)), Err(StoreError::Fenced { by }) if by == b(3)));
    assert_eq!(snapshot(&s), before);
}

#[test]
fn primary_exists_rejection_changes_nothing() {
    let dir = TempDir::new().unwrap();
    let s = SledStore::open(dir.path(), CLUSTER).unwrap();
    s.save(LeaseName::Leader, 10, b(1), true).unwrap();
    s.register_primary(NodeId(2), b(1)).unwrap();
    let before = snapshot(&s);

    // A higher fence that would be raised on success is not raised.
    let r = s.save(LeaseName::Leader, 20, b(5), true);
    assert!(matches!(r, Err(StoreError::PrimaryExists { id: NodeId(2) })), "{r:?}");
    assert_eq!(snapshot(&s), before);

    // S2 binds only checked saves.
    s.save(LeaseName::Leader, 20, b(5), false).unwrap();
    assert_eq!(snapshot(&s), (20, b(5), b(1), Some(NodeId(2))));

    // Clearing someone else's registration raises the fence but keeps it.
    s.clear_primary(NodeId(3), b(2)).unwrap();
    assert_eq!(s.primary().unwrap(), Some(NodeId(2)));
    assert_eq!(s.fence(LeaseName::Primary).unwrap(), b(2));
    s.clear_primary(NodeId(2), b(2)).unwrap();
    assert_eq!(s.primary().unwrap(), None);
    s.save(LeaseName::Leader, 30, b(5), true).unwrap();
}

#[test]
fn not_greater_rejection_changes_nothing() {
    let dir = TempDir::new().unwrap();
    let s = SledStore::open(dir.path(), CLUSTER).unwrap();
    s.save(LeaseName::Leader, 10, b(1), true).unwrap();
    let before = snapshot(&s);

    for (window, fence) in [(10, b(1)), (5, b(3)), (0, b(4))] {
        let r = s.save(LeaseName::Leader, window, fence, true);
        assert!(matches!(r, Err(StoreError::NotGreater { stored: 10 })), "{r:?}");
    }
    assert_eq!(snapshot(&s), before, "a rejected save does not raise the fence");
}

#[test]
fn rejection_order_matches_the_contract() {
    let dir = TempDir::new().unwrap();
    let s = SledStore::open(dir.path(), CLUSTER).unwrap();
    s.save(LeaseName::Leader, 10, b(2), true).unwrap();
    s.register_primary(NodeId(1), b(1)).unwrap();
    // Fenced, registered primary and not greater at once: S1 first.
    assert!(matches!(s.save(LeaseName::Leader, 5, b(1), true), Err(StoreError::Fenced { .. })));
    // Registered primary and not greater: S2 before S3.
    assert!(matches!(s.save(LeaseName::Leader, 5, b(2), true), Err(StoreError::PrimaryExists { .. })));
}

#[test]
fn state_survives_reopen() {
    let dir = TempDir::new().unwrap();
    {
        let s = SledStore::open(dir.path(), CLUSTER).unwrap();
        assert_eq!(s.bump_restart().unwrap(), 1);
        s.save(LeaseName::Leader, 1234, b(3), true).unwrap();
        s.load(LeaseName::Primary, b(4)).unwrap();
        s.register_primary(NodeId(6), b(5)).unwrap();
        // A clone shares the database; all handles must go for the reopen.
        let clone = s.clone();
        drop(s);
        assert_eq!(clone.window_end_ms().unwrap(), 1234);
    }
    let s = SledStore::open(dir.path(), CLUSTER).unwrap();
    assert_eq!(snapshot(&s), (1234, b(3), b(5), Some(NodeId(6))));
    assert_eq!(s.bump_restart().unwrap(), 2);
    // The kept fence still rejects an older leader.
    assert!(
        matches!(s.save(LeaseName::Leader, 2000, b(2), false), Err(StoreError::Fenced { by }) if by == b(3))
    );
    assert_eq!(s.load(LeaseName::Leader, b(3)).unwrap(), 1234);
    drop(s);

    let s = SledStore::open(dir.path(), CLUSTER).unwrap();
    assert_eq!(s.bump_restart().unwrap(), 3);
}

#[test]
fn other_cluster_id_is_refused_and_leaves_the_dir_intact() {
    let dir = TempDir::new().unwrap();
    {
        let s = SledStore::open(dir.path(), CLUSTER).unwrap();
        s.save(LeaseName::Leader, 10, b(1), true).unwrap();
    }
    let r = SledStore::open(dir.path(), CLUSTER + 1);
    assert!(
        matches!(r, Err(StoreError::ClusterMismatch { stored: CLUSTER, expected }) if expected == CLUSTER + 1),
        "{r:?}"
    );
    let s = SledStore::open(dir.path(), CLUSTER).unwrap();
    assert_eq!(s.window_end_ms().unwrap(), 10);
}

/// The file lock keeps a second store (another node misconfigured onto the
/// same dir) out while the first is open.
#[test]
fn a_dir_in_use_is_refused() {
    let dir = TempDir::new().unwrap();
    let s = SledStore::open(dir.path(), CLUSTER).unwrap();
    let r = SledStore::open(dir.path(), CLUSTER);
    assert!(matches!(r, Err(StoreError::Io(_))), "{r:?}");
    s.save(LeaseName::Leader, 10, b(1), true).unwrap();
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

#[test]
fn corrupt_values_fail_open_without_panic() {
    let keys = ["cluster_id", "window_end_ms", "fence/leader", "fence/primary", "primary", "restart"];
    for key in keys {
        for garbage in [&[][..], &[0xFF; 3][..], &[0xAB; 19][..]] {
            let dir = TempDir::new().unwrap();
            {
                let s = SledStore::open(dir.path(), CLUSTER).unwrap();
                s.save(LeaseName::Leader, 10, b(1), true).unwrap();
                s.register_primary(NodeId(1), b(1)).unwrap();
                s.bump_restart().unwrap();
            }
            write_raw(&dir, key, garbage);
            let r = SledStore::open(dir.path(), CLUSTER);
            assert!(matches!(&r, Err(StoreError::Corrupt { key: k, .. }) if *k == key), "{key}: {r:?}");
        }
    }
}

#[test]
fn data_without_cluster_id_is_refused() {
    let dir = TempDir::new().unwrap();
    {
        let s = SledStore::open(dir.path(), CLUSTER).unwrap();
        s.save(LeaseName::Leader, 10, b(1), true).unwrap();
    }
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
    let dir = TempDir::new().unwrap();
    {
        let s = SledStore::open(dir.path(), CLUSTER).unwrap();
        s.save(LeaseName::Leader, 10, b(1), true).unwrap();
    }
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
/// it rather than serve window 0 with no fence.
#[test]
fn damaged_log_file_is_refused_not_served_empty() {
    type Damage = fn(Vec<u8>) -> Vec<u8>;
    let damages: [(&str, Damage); 4] = [
        ("replaced", |_| b"garbage garbage garbage".to_vec()),
        ("flipped", |d| d.into_iter().map(|x| x ^ 0x5a).collect()),
        ("truncated", |d| d[..d.len() / 2].to_vec()),
        ("zeroed", |d| vec![0; d.len()]),
    ];
    for (name, damage) in damages {
        let dir = TempDir::new().unwrap();
        {
            let s = SledStore::open(dir.path(), CLUSTER).unwrap();
            s.save(LeaseName::Leader, 10, b(1), true).unwrap();
        }
        let db = dir.path().join("db");
        std::fs::write(&db, damage(std::fs::read(&db).unwrap())).unwrap();
        let r = SledStore::open(dir.path(), CLUSTER);
        assert!(r.is_err(), "{name}: {r:?}");
    }
}
