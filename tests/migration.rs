//! Dual-writer prevention with real processes: a 3-node deferring cluster
//! under load is migrated to primary mode by a rolling restart, then rolled
//! back with `leasetso primary clear` and a rolling restart in deferring mode.
//!
//! Checked over the whole run: the history of every client call is valid
//! (unique, per-client increasing, real-time ordered timestamps) and no call
//! fails past its deadline; the deferring leader yields within about one save
//! interval of the first registration and no deferring node leads while the
//! registration stands; `primary clear` is refused while the registered node
//! serves, and after the clear the deferring nodes serve again. The serving
//! gaps of each step are printed (BENCHMARKS.md quotes them).

use std::thread;
use std::time::{Duration, Instant};

use leasetso_core::Role;
use leasetso_tests::harness::cluster::{Cluster, ClusterOptions, SLACK, exclusive};
use leasetso_tests::harness::load::{Load, LoadOptions};
use leasetso_tests::run_cli;

const ELECTION: Duration = Duration::from_secs(15);
const RESUME: Duration = Duration::from_secs(10);
const SAVE_INTERVAL_MS: u64 = 1000;

fn role(cluster: &Cluster, i: usize) -> Option<Role> {
    cluster.status(i).ok().map(|s| s.role)
}

/// Waits until node `i` reports `want`, for up to `timeout`; returns how long it took.
fn wait_role(cluster: &Cluster, i: usize, want: Role, timeout: Duration) -> Duration {
    let start = Instant::now();
    while role(cluster, i) != Some(want) {
        if start.elapsed() > timeout {
            cluster.fail(&format!(
                "node {i} did not become {want:?} within {timeout:?}: {}",
                cluster.describe()
            ));
        }
        thread::sleep(Duration::from_millis(10));
    }
    start.elapsed()
}

/// Stops node `i` with SIGTERM and starts it again with `args`.
fn restart_with(cluster: &mut Cluster, i: usize, args: &[&str]) -> Instant {
    let status = cluster.term(i);
    assert!(status.success(), "node {i} exited with {status} on SIGTERM");
    cluster.set_node_args(i, args);
    let at = Instant::now();
    cluster.restart(i);
    at
}

/// Every distinct registration the replicas hold, `(1-based id, tag)`: a
/// registration that reached only a quorum leaves an older one elsewhere.
fn registrations(cluster: &Cluster) -> Vec<(usize, String)> {
    let out = run_cli(&["primary", "show", "--addr", &cluster.addr_list()], Duration::from_secs(15));
    assert!(out.status.success(), "primary show: {out:?}");
    let mut found: Vec<(usize, String)> = Vec::new();
    for line in out.stdout.lines().filter(|l| !l.contains("primary=none")) {
        let field = |k: &str| line.split_whitespace().find_map(|kv| kv.strip_prefix(k)).map(str::to_string);
        if let (Some(id), Some(tag)) = (field("primary=").and_then(|v| v.parse().ok()), field("tag="))
            && !found.contains(&(id, tag.clone()))
        {
            found.push((id, tag));
        }
    }
    found
}

fn clear(cluster: &Cluster, id: usize, tag: &str) -> leasetso_tests::CliOutput {
    let id = id.to_string();
    run_cli(
        &["primary", "clear", "--addr", &cluster.addr_list(), "--id", &id, "--tag", tag],
        Duration::from_secs(15),
    )
}

#[test]
fn a_rolling_migration_to_primary_mode_and_its_rollback() {
    let _guard = exclusive();
    let save = SAVE_INTERVAL_MS.to_string();
    let opts = ClusterOptions {
        lease_ms: 500,
        extra_args: vec!["--save-interval-ms".into(), save.clone()],
        ..ClusterOptions::default()
    };
    let mut cluster = Cluster::start(3, opts);
    let deferring_leader = cluster.wait_leader(ELECTION);
    let load = Load::start(&cluster.client_addrs(), LoadOptions::default());
    if !load.wait_progress(300, RESUME) {
        cluster.fail("the load makes no progress");
    }
    let mut gaps = Vec::new();

    // Migration: the followers first, then the old leader, one at a time.
    let order = [(deferring_leader + 1) % 3, (deferring_leader + 2) % 3, deferring_leader];
    let at = restart_with(&mut cluster, order[0], &["--mode", "primary"]);
    // The deferring leader's next save (at most a save interval away) meets
    // the registration and it yields; the primary takes the lease.
    let yielded =
        wait_role(&cluster, deferring_leader, Role::Yielded, Duration::from_millis(SAVE_INTERVAL_MS) * 4);
    wait_role(&cluster, order[0], Role::Leader, ELECTION);
    eprintln!("the deferring leader yielded {yielded:?} after the primary's restart");
    if !load.wait_progress(200, RESUME) {
        cluster.fail("no progress after the first primary");
    }
    gaps.push(("first primary", at));
    // While the registration stands no deferring node comes back.
    let deferring = order[1];
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        for i in [deferring_leader, deferring] {
            if matches!(role(&cluster, i), Some(Role::Leader | Role::Syncing)) {
                cluster.fail(&format!(
                    "deferring node {i} leads while a primary is registered: {}",
                    cluster.describe()
                ));
            }
        }
        thread::sleep(Duration::from_millis(20));
    }
    for &i in &order[1..] {
        let at = restart_with(&mut cluster, i, &["--mode", "primary"]);
        cluster.wait_leader(ELECTION);
        if !load.wait_progress(200, RESUME) {
            cluster.fail(&format!("no progress after restarting node {i} as primary"));
        }
        gaps.push(("next primary", at));
    }
    let shown = registrations(&cluster);
    assert!(!shown.is_empty(), "no registration after the migration");

    // Rollback. A clear is refused while the registered node serves.
    let leader = cluster.wait_leader(ELECTION);
    if let Some((id, tag)) = shown.iter().find(|(id, _)| id - 1 == leader) {
        let out = clear(&cluster, *id, tag);
        assert!(
            !out.status.success() && out.stderr.contains("serves"),
            "clear under a serving primary: {out:?}"
        );
    }
    // Each node restarts deferring, the leader last; once a registrant is
    // deferring (it cannot serve while any registration stands), its
    // registrations are cleared.
    let order = [(leader + 1) % 3, (leader + 2) % 3, leader];
    for (step, &i) in order.iter().enumerate() {
        let at = restart_with(&mut cluster, i, &["--mode", "deferring"]);
        for (id, tag) in registrations(&cluster) {
            if order[..=step].contains(&(id - 1)) {
                let out = clear(&cluster, id, &tag);
                assert!(out.status.success(), "primary clear --id {id} --tag {tag}: {out:?}");
            }
        }
        cluster.wait_leader(ELECTION);
        if !load.wait_progress(200, RESUME) {
            cluster.fail(&format!("no progress after restarting node {i} deferring"));
        }
        gaps.push(("back to deferring", at));
    }
    assert!(registrations(&cluster).is_empty(), "registrations remain after the rollback");
    // All deferring again: one of them leads, nobody stays yielded.
    let leader = cluster.wait_leader(ELECTION);
    let deadline = Instant::now() + ELECTION;
    while (0..3).any(|i| role(&cluster, i) == Some(Role::Yielded)) {
        if Instant::now() > deadline {
            cluster.fail(&format!("a node stays yielded after the rollback: {}", cluster.describe()));
        }
        thread::sleep(Duration::from_millis(50));
    }

    let history = load.stop();
    let summary = history.check(SLACK);
    history.assert_no_failures("migration and rollback");
    for (what, at) in &gaps {
        let gap = history.longest_gap(*at, *at + Duration::from_secs(3));
        eprintln!("{what}: longest gap without a timestamp in the 3 s after the restart: {gap:?}");
    }
    eprintln!("migration: {summary}; node {leader} leads at the end");
}
