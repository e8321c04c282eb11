//! A full disk, with real processes (rule H4): the failing replica shows in
//! `status` and in one log line per change of state, the cluster serves on
//! the others' quorum, and everything heals by itself once space is freed,
//! with no restart.
//!
//! Each node's data dir lives on a small tmpfs of its own that the test
//! fills and empties. Mounting needs root: without it the tests print
//! `skipped: <reason>` and pass.

use std::thread;
use std::time::Duration;

use leasetso_core::{Role, StoreHealth, Timestamp};
use leasetso_tests::eventually;
use leasetso_tests::harness::cluster::{Cluster, ClusterOptions, connect_client, exclusive, query_status};
use leasetso_tests::harness::tmpfs::Tmpfs;
use leasetso_tests::{Runtime, ServerProcess};

/// The size of each node's disk.
const MIB: u32 = 4;
/// Saves this often, so a full disk shows within a second or two.
const SAVE_MS: &str = "100";
/// How long a change of state may take to show.
const SHOW: Duration = Duration::from_secs(20);

fn store_of(addr: std::net::SocketAddr) -> Option<StoreHealth> {
    query_status(addr, Duration::from_millis(500)).ok().map(|s| s.store)
}

fn count(log: &str, what: &str) -> usize {
    log.lines().filter(|l| l.contains(what)).count()
}

/// One node whose disk fills: `status` says why, the node stops serving
/// (it cannot save its window: it is the only replica), and once the disk
/// is emptied it heals and serves again, above everything before.
#[test]
fn a_single_nodes_full_disk_shows_and_heals_without_a_restart() {
    let Some(disk) = Tmpfs::usable("a single node's full disk", MIB) else { return };
    let data = disk.data_dir();
    let server = ServerProcess::try_start_runtime(
        Runtime::Std,
        "127.0.0.1:0",
        &data,
        &["--save-interval-ms", SAVE_MS],
    )
    .unwrap_or_else(|f| panic!("{f}"));
    let before = server.wait_serving();
    assert_eq!(store_of(server.addr()), Some(StoreHealth::Ok));
    disk.fill().expect("fill the disk");
    assert!(
        eventually(SHOW, || store_of(server.addr()) == Some(StoreHealth::NoSpace)),
        "status never said the disk is full: {:?}\n{}",
        store_of(server.addr()),
        server.log()
    );
    disk.empty().expect("empty the disk");
    assert!(
        eventually(SHOW, || store_of(server.addr()) == Some(StoreHealth::Ok)),
        "the store did not heal: {:?}\n{}",
        store_of(server.addr()),
        server.log()
    );
    let after = server.wait_serving();
    assert!(after > before, "{after:?} after the heal is not above {before:?}");
    let log = server.log().text();
    assert_eq!(count(&log, "store replica failed"), 1, "one line for the failure:\n{log}");
    assert_eq!(count(&log, "store replica healed"), 1, "one line for the heal:\n{log}");
    assert!(count(&log, "stopped serving") <= 3, "step-downs are rate-limited:\n{log}");
    server.stop();
}

/// Three nodes on disks of their own (smol). One follower's disk fills:
/// its status says so and the cluster serves on. The other follower's
/// fills too: an outage (no quorum of replicas saves the window). Both are
/// emptied: the cluster serves again without a restart, above everything
/// handed out before.
#[test]
fn a_clusters_full_disks_one_then_two_heal_without_restarts() {
    let _serial = exclusive();
    let disks: Vec<Tmpfs> = match (0..3).map(|_| Tmpfs::mount(MIB)).collect::<Result<_, _>>() {
        Ok(d) => d,
        Err(reason) => return eprintln!("skipped: a cluster's full disks: {reason}"),
    };
    let opts = ClusterOptions {
        runtimes: vec![Runtime::Smol; 3],
        data_dirs: disks.iter().map(Tmpfs::data_dir).collect(),
        extra_args: vec!["--save-interval-ms".into(), SAVE_MS.into()],
        ..ClusterOptions::default()
    };
    let cluster = Cluster::start(3, opts);
    let leader = cluster.wait_leader(Duration::from_secs(15));
    let first = cluster.wait_serving(Duration::from_secs(15));
    let followers: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let store = |i: usize| cluster.status(i).ok().map(|s| s.store);

    // One full disk: status shows it, the others' quorum serves.
    disks[followers[0]].fill().expect("fill");
    if !eventually(SHOW, || store(followers[0]) == Some(StoreHealth::NoSpace)) {
        cluster.fail(&format!(
            "node {} never reported its full disk: {:?}",
            followers[0],
            store(followers[0])
        ));
    }
    let client = connect_client(&cluster.client_addrs(), Duration::from_secs(5)).expect("a client");
    let mut last: Timestamp = first;
    for _ in 0..50 {
        let ts = client.get_ts().unwrap_or_else(|e| cluster.fail(&format!("with one full disk: {e}")));
        assert!(ts > last);
        last = ts;
        thread::sleep(Duration::from_millis(20));
    }

    // Two full disks: no quorum saves the window, so serving ends.
    disks[followers[1]].fill().expect("fill");
    if !eventually(SHOW, || store(followers[1]) == Some(StoreHealth::NoSpace)) {
        cluster.fail(&format!(
            "node {} never reported its full disk: {:?}",
            followers[1],
            store(followers[1])
        ));
    }
    let down = eventually(SHOW, || {
        let quick = connect_client(&cluster.client_addrs(), Duration::ZERO);
        quick.and_then(|c| c.get_ts()).is_err()
    });
    if !down {
        cluster.fail("the cluster served on with two of three disks full");
    }

    // Both emptied: it heals, and serves above everything before.
    for &f in &followers {
        disks[f].empty().expect("empty");
    }
    let healed = cluster.wait_serving(SHOW);
    assert!(healed > last, "{healed:?} after the outage is not above {last:?}");
    for i in 0..3 {
        if !eventually(SHOW, || store(i) == Some(StoreHealth::Ok)) {
            cluster.fail(&format!("node {i}'s store did not heal: {:?}", store(i)));
        }
    }
    let after =
        client.get_ts().unwrap_or_else(|e| cluster.fail(&format!("the old client after the heal: {e}")));
    assert!(after > last);
    for &f in &followers {
        let log = cluster.log(f);
        assert_eq!(count(&log, "store replica failed"), 1, "node {f}: one line for the failure:\n{log}");
        assert_eq!(count(&log, "store replica healed"), 1, "node {f}: one line for the heal:\n{log}");
    }
    let leader_log = cluster.log(leader);
    assert!(cluster.status(leader).is_ok_and(|s| s.role != Role::Follower || s.store.is_ok()));
    assert!(count(&leader_log, "stopped serving") <= 4, "step-downs are rate-limited:\n{leader_log}");
}
