//! Clusters of real `leasetso serve` processes on loopback, under load from
//! concurrent clients, through crashes and planned restarts:
//!
//! * the leader killed with SIGKILL again and again (each killed node
//!   restarted), in 3- and 5-node clusters;
//! * the leader stopped with SIGTERM: the graceful handoff costs well under a
//!   lease;
//! * every node killed at once and restarted: the first timestamps after are
//!   above everything before.
//!
//! Through all of it the history of every client call must be valid
//! (unique, per-client increasing, real-time ordered timestamps) and no
//! call may fail or hang past its deadline. One started cluster runs
//! several phases to keep the suite short; `LEASETSO_CLUSTER_LONG=1` runs
//! more rounds. Run alone with `cargo test -p leasetso-tests --test cluster`.

use std::thread;
use std::time::{Duration, Instant};

use leasetso_tests::harness::cluster::{Cluster, ClusterOptions, SLACK, exclusive, long_runs};
use leasetso_tests::harness::load::{Load, LoadOptions};
use leasetso_tests::{CliOutput, run_cli};

/// How long a cluster may take to elect its first leader (start-up
/// quarantine included), and any later one.
const ELECTION: Duration = Duration::from_secs(15);
/// How long the load must take to make progress again after an event.
const RESUME: Duration = Duration::from_secs(10);

/// Kills the leader with SIGKILL `rounds` times, restarting it each time once
/// another node has taken over. With `with_follower`, every second round
/// also kills a follower at the same moment (a 5-node cluster keeps its
/// majority with two nodes down). Returns the takeover times (kill to a new
/// leader reporting role Leader).
fn kill_rounds(cluster: &mut Cluster, load: &Load, rounds: usize, with_follower: bool) -> Vec<Duration> {
    let mut takeovers = Vec::new();
    for round in 0..rounds {
        let leader = cluster.wait_leader(ELECTION);
        let follower = (with_follower && round % 2 == 1).then(|| (leader + 2) % cluster.len());
        let killed_at = Instant::now();
        cluster.kill(leader);
        if let Some(f) = follower {
            cluster.kill(f);
        }
        let Some(next) = cluster.wait_leader_other_than(leader, ELECTION) else {
            cluster.fail(&format!(
                "round {round}: no node took over from killed node {leader} within {ELECTION:?}"
            ));
        };
        let took = killed_at.elapsed();
        takeovers.push(took);
        if !load.wait_progress(50, RESUME) {
            cluster.fail(&format!(
                "round {round}: node {next} leads but the clients get nothing: {}",
                cluster.describe()
            ));
        }
        eprintln!(
            "round {round}: killed node {leader}{}, node {next} took over in {took:?}",
            match follower {
                Some(f) => format!(" and node {f}"),
                None => String::new(),
            }
        );
        cluster.restart(leader);
        if let Some(f) = follower {
            cluster.restart(f);
        }
        // Let the restarted nodes out of their quarantine, so the next
        // round kills a leader of a whole cluster.
        thread::sleep(cluster.quarantine());
        cluster.assert_running();
    }
    // D_A is about 1.02 leases; an election a few more. Loose: the point
    // is that a crash costs a bounded, lease-sized outage, not minutes.
    let bound = cluster.lease() * 8 + Duration::from_secs(2);
    if let Some(slowest) = takeovers.iter().max().filter(|t| **t > bound) {
        cluster.fail(&format!("a takeover took {slowest:?}, over {bound:?}: {takeovers:?}"));
    }
    takeovers
}

/// Kills every node at once and restarts them all. Returns when it was done.
fn crash_everything(cluster: &mut Cluster, load: &Load) -> Instant {
    let crashed_at = Instant::now();
    cluster.kill_all();
    cluster.restart_all();
    let leader = cluster.wait_leader(ELECTION);
    if !load.wait_progress(200, RESUME) {
        cluster.fail(&format!("after a full crash node {leader} leads but the clients get nothing"));
    }
    eprintln!("full crash: node {leader} serves {:?} after the kill", crashed_at.elapsed());
    crashed_at
}

#[test]
fn three_nodes_through_kills_a_term_and_a_full_crash_under_load() {
    let _serial = exclusive();
    let rounds = if long_runs() { 20 } else { 5 };
    // A 1 s lease: a handoff that fell back on lease expiry would take
    // over a second, so the SIGTERM gap below tells the two apart.
    let mut cluster = Cluster::start(3, ClusterOptions { lease_ms: 1000, ..ClusterOptions::default() });
    let first = cluster.wait_leader(ELECTION);
    cluster.wait_serving(ELECTION);

    // The CLI with every address (checked at the end, so that a CLI problem
    // does not hide what the phases below find).
    let addrs = cluster.addr_list();
    let cli_first = run_cli(&["get-ts", "--addr", &addrs], Duration::from_secs(15));
    let cli_status = run_cli(&["status", "--addr", &addrs], Duration::from_secs(15));

    let load = Load::start(&cluster.client_addrs(), LoadOptions::default());
    if !load.wait_progress(500, RESUME) {
        cluster.fail(&format!("the load makes no progress: {}", cluster.describe()));
    }
    let load_began = Instant::now();

    // Phase 1: SIGKILL the leader, again and again.
    let takeovers = kill_rounds(&mut cluster, &load, rounds, false);

    // Phase 2: SIGTERM the leader. It releases its lease and another node
    // takes over at once; the clients see NotLeader meanwhile, not errors.
    let leader = cluster.wait_leader(ELECTION);
    let not_leader_before = load.not_leader();
    let termed_at = Instant::now();
    let status = cluster.term(leader);
    assert!(status.success(), "node {leader} exited with {status} on SIGTERM");
    let Some(next) = cluster.wait_leader_other_than(leader, Duration::from_secs(5)) else {
        cluster.fail(&format!("no node took over from node {leader} within 5 s of its SIGTERM"));
    };
    let handoff = termed_at.elapsed();
    if !load.wait_progress(200, RESUME) {
        cluster.fail(&format!("after the SIGTERM node {next} leads but the clients get nothing"));
    }
    // The CLI falls back past the stopped node's address.
    let cli_after_term = run_cli(&["get-ts", "--addr", &addrs], Duration::from_secs(15));
    // Keep the load on for the rest of the measured window.
    let window = Duration::from_secs(3);
    thread::sleep(window.saturating_sub(termed_at.elapsed()));
    let term_not_leader = load.not_leader() - not_leader_before;
    cluster.restart(leader);
    thread::sleep(cluster.quarantine());

    // Phase 3: every node killed at once, then restarted.
    let crashed_at = crash_everything(&mut cluster, &load);

    let history = load.stop();
    let summary = history.check(SLACK);
    eprintln!("3 nodes: {summary}");
    eprintln!("takeovers after SIGKILL: {takeovers:?}");
    let term_gap = history.longest_gap(termed_at, termed_at + window);
    eprintln!(
        "SIGTERM of node {leader}: node {next} reported Leader after {handoff:?}; longest gap without a timestamp {term_gap:?}; {term_not_leader} NotLeader replies"
    );
    history.assert_no_failures("3 nodes through kills, a term and a full crash");
    if term_gap >= Duration::from_secs(1) {
        cluster.fail(&format!(
            "after the leader's SIGTERM no client got a timestamp for {term_gap:?}: the handoff waited for the lease"
        ));
    }
    assert!(history.assert_above_across(crashed_at, "the full crash"), "no calls on both sides of the crash");
    assert!(history.assert_above_across(termed_at, "the SIGTERM"), "no calls on both sides of the SIGTERM");
    assert!(summary.ok > 1000, "only {} calls succeeded since {load_began:?}", summary.ok);
    cluster.assert_running();

    let printed = |out: &CliOutput, what: &str| -> u64 {
        assert!(out.status.success(), "{what}: {out:?}");
        out.stdout.trim().parse().unwrap_or_else(|e| panic!("{what} printed {:?}: {e}", out.stdout))
    };
    let before = printed(&cli_first, &format!("get-ts --addr {addrs}"));
    let after = printed(&cli_after_term, &format!("get-ts --addr {addrs} with node {leader} stopped"));
    assert!(after > before, "get-ts gave {after} after {before}");
    assert!(
        cli_status.status.success() && cli_status.stdout.contains("role="),
        "status --addr {addrs}: {cli_status:?}"
    );
    eprintln!("node {first} led first; status --addr {addrs}:\n{}", cli_status.stdout.trim_end());
}

#[test]
fn five_nodes_through_kills_of_the_leader_and_a_follower_and_a_full_crash() {
    let _serial = exclusive();
    let rounds = if long_runs() { 20 } else { 5 };
    let mut cluster = Cluster::start(5, ClusterOptions { lease_ms: 500, ..ClusterOptions::default() });
    cluster.wait_leader(ELECTION);
    cluster.wait_serving(ELECTION);
    let load = Load::start(&cluster.client_addrs(), LoadOptions { clients: 10, ..LoadOptions::default() });
    if !load.wait_progress(500, RESUME) {
        cluster.fail(&format!("the load makes no progress: {}", cluster.describe()));
    }
    let takeovers = kill_rounds(&mut cluster, &load, rounds, true);
    let crashed_at = crash_everything(&mut cluster, &load);
    let history = load.stop();
    let summary = history.check(SLACK);
    eprintln!("5 nodes: {summary}");
    eprintln!("takeovers after SIGKILL: {takeovers:?}");
    history.assert_no_failures("5 nodes through kills and a full crash");
    assert!(history.assert_above_across(crashed_at, "the full crash"), "no calls on both sides of the crash");
    cluster.assert_running();
}
