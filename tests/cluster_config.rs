//! Cluster configuration and peer input a node must refuse, as a user would
//! meet them:
//!
//! * `serve` flags that cannot make a cluster exit non-zero with a message
//!   and write nothing (own id missing, duplicate ids or addresses, an even
//!   size or more than five nodes, a wildcard client address without
//!   `--advertise`), and a data dir of another node or cluster is refused;
//! * a peer whose handshake differs (timing digest, cluster id, node id) is
//!   refused with both values named, garbage on the peer port drops only
//!   that connection, and the cluster keeps serving throughout;
//! * a node restarted on an empty data dir (a replaced disk) learns its
//!   restart counter from its peers and starts above every ballot they saw.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use leasetso_core::peer::{Handshake, PEER_VERSION, PeerFrame, Refusal};
use leasetso_core::{LeaseConfig, NodeConfig, NodeId};
use leasetso_tests::harness::cluster::{Cluster, ClusterOptions, exclusive};
use leasetso_tests::{CliOutput, dead_addr, run_cli};

const CLI_TIMEOUT: Duration = Duration::from_secs(30);
const ELECTION: Duration = Duration::from_secs(15);

fn assert_refused(out: &CliOutput, what: &str, needle: &str) {
    assert!(
        !out.status.success() && out.status.code().is_some(),
        "{what}: expected a non-zero exit, got {}\n{}",
        out.status,
        out.stderr
    );
    assert!(out.stderr.contains(needle), "{what}: stderr does not say {needle:?}:\n{}", out.stderr);
    assert!(!out.stderr.contains("listening on"), "{what}: started anyway:\n{}", out.stderr);
}

#[test]
fn serve_refuses_flags_that_make_no_cluster_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_s = data.to_str().unwrap();
    let [a, b, c, d, e] =
        [dead_addr(), dead_addr(), dead_addr(), dead_addr(), dead_addr()].map(|a| a.to_string());
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--id".into(), "4".into(), "--peers".into(), format!("1={a},2={b},3={c}")],
            "--id 4 is not in --peers",
        ),
        (
            vec!["--id".into(), "1".into(), "--peers".into(), format!("1={a},1={b},3={c}")],
            "names node 1 twice",
        ),
        (vec!["--id".into(), "1".into(), "--peers".into(), format!("1={a},2={a},3={c}")], "the same address"),
        (vec!["--id".into(), "1".into(), "--peers".into(), format!("1={a},2={b}")], "lists 2 nodes"),
        (
            vec![
                "--id".into(),
                "1".into(),
                "--peers".into(),
                format!("1={a},2={b},3={c},4={d},5={e},6=127.0.0.1:1,7=127.0.0.1:2"),
            ],
            "lists 7 nodes",
        ),
        (
            vec!["--id".into(), "1".into(), "--peers".into(), format!("1={a},2={b},4={c}")],
            "node 3 is missing",
        ),
        (
            vec!["--id".into(), "1".into(), "--peers".into(), format!("1={a},2={b},3=nowhere")],
            "cannot resolve",
        ),
        (
            vec![
                "--id".into(),
                "1".into(),
                "--peers".into(),
                format!("1={a},2={b},3={c}"),
                "--listen".into(),
                "0.0.0.0:0".into(),
            ],
            "set --advertise",
        ),
        (vec!["--id".into(), "1".into()], "--peers"),
        (vec!["--peers".into(), format!("1={a},2={b},3={c}")], "--id"),
        (
            vec![
                "--id".into(),
                "1".into(),
                "--peers".into(),
                format!("1={a},2={b},3={c}"),
                "--lease-ms".into(),
                "0".into(),
            ],
            "invalid configuration",
        ),
    ];
    for (mut args, needle) in cases {
        let mut full: Vec<String> = vec!["serve".into(), "--data".into(), data_s.into()];
        full.append(&mut args);
        let refs: Vec<&str> = full.iter().map(String::as_str).collect();
        let out = run_cli(&refs, CLI_TIMEOUT);
        assert_refused(&out, &full.join(" "), needle);
        assert!(!data.exists(), "{}: created the data dir", full.join(" "));
    }
}

/// Starts `serve` on `data` as node `id` of a 3-node cluster whose peers are
/// all dead, and returns its output once it exits or after `wait`.
fn serve_once(data: &str, id: &str, cluster_id: &str, wait: Duration) -> CliOutput {
    let peers = format!("1={},2={},3={}", dead_addr(), dead_addr(), dead_addr());
    let mut child = std::process::Command::new(leasetso_tests::leasetso_bin())
        .args(["serve", "--data", data, "--id", id, "--peers", &peers, "--listen", "127.0.0.1:0"])
        .args(["--cluster-id", cluster_id])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn leasetso serve");
    let exited = leasetso_tests::wait_timeout(&mut child, wait);
    if exited.is_none() {
        let _ = child.kill();
    }
    let status = child.wait().expect("reap");
    let mut stderr = String::new();
    let _ = child.stderr.take().expect("piped").read_to_string(&mut stderr);
    CliOutput { status, stdout: String::new(), stderr }
}

#[test]
fn a_data_dir_of_another_node_or_cluster_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("n1");
    let data_s = data.to_str().unwrap();
    // Node 1 creates the dir, then waits for peers that never come.
    let first = serve_once(data_s, "1", "9", Duration::from_secs(2));
    assert!(first.stderr.contains("node 1 listening on"), "node 1 did not start:\n{}", first.stderr);
    let out = serve_once(data_s, "2", "9", CLI_TIMEOUT);
    assert_refused(&out, "node 2 on node 1's data dir", "belongs to node 1, not node 2");
    let out = serve_once(data_s, "1", "10", CLI_TIMEOUT);
    assert_refused(&out, "cluster 10 on cluster 9's data dir", "cluster 9");
}

/// The handshake node `node` of the test cluster would send.
fn handshake(cluster: &Cluster, node: u16, lease_ms: u64) -> Handshake {
    let mut cfg = NodeConfig::new(NodeId(node), cluster.len() as u16);
    cfg.lease = LeaseConfig { duration: Duration::from_millis(lease_ms), ..LeaseConfig::default() };
    Handshake {
        version: PEER_VERSION,
        cluster_id: 1,
        node: NodeId(node),
        // The address the real node advertises: a handshake advertising
        // another one is a second process claiming the id (H5), refused.
        client_addr: Some(cluster.node_addr(usize::from(node))),
        resp_addr: None,
        pd_addr: None,
        digest: cfg.digest().expect("a valid configuration"),
    }
}

fn send(stream: &mut TcpStream, frame: &PeerFrame) {
    let mut buf = Vec::new();
    frame.encode(&mut buf).expect("a Vec grows");
    stream.write_all(&buf).expect("write to the peer port");
}

/// Reads one peer frame, or `None` if the node closes the connection.
fn read_frame(stream: &mut TcpStream) -> Option<PeerFrame> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 256];
    loop {
        if let Ok(Some((frame, _))) = PeerFrame::decode(&buf) {
            return Some(frame);
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn dial(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("dial the peer port");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

/// Reads until the node closes the connection, within the read timeout.
fn closed(stream: &mut TcpStream) -> bool {
    let mut sink = [0u8; 256];
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        match stream.read(&mut sink) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return false;
            }
            Err(_) => return true,
        }
    }
    false
}

#[test]
fn bad_peers_are_refused_and_a_replaced_disk_starts_above_its_old_ballots() {
    let _guard = exclusive();
    let lease_ms = 500;
    let mut cluster = Cluster::start(3, ClusterOptions { lease_ms, ..ClusterOptions::default() });
    let leader = cluster.wait_leader(ELECTION);
    let before = cluster.wait_serving(ELECTION);
    let target = (leader + 1) % 3;
    let peer = cluster.peer_addr(target);

    // A timing digest of another --lease-ms: refused, both values named.
    let mut s = dial(peer);
    let ours = handshake(&cluster, leader as u16, 3000);
    send(&mut s, &PeerFrame::Hello(ours));
    match read_frame(&mut s) {
        Some(PeerFrame::Refused { reason: Refusal::Digest, theirs }) => {
            assert_eq!(theirs.node, NodeId(target as u16));
            assert_ne!(theirs.digest, ours.digest);
        }
        other => cluster.fail(&format!("a wrong digest was answered {other:?}")),
    }
    let right = handshake(&cluster, leader as u16, lease_ms);
    let log_deadline = Instant::now() + Duration::from_secs(5);
    let wanted = format!("{:#018x}", ours.digest);
    while !cluster.log(target).contains(&wanted) {
        if Instant::now() > log_deadline {
            cluster.fail(&format!("node {target} did not log the refused digest {wanted}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(cluster.log(target).contains(&format!("{:#018x}", right.digest)), "both digests named");

    // Another cluster, and a node id outside the cluster: refused.
    for (hello, reason) in [
        (Handshake { cluster_id: 2, ..right }, Refusal::Cluster),
        (Handshake { node: NodeId(7), ..right }, Refusal::Node),
        (Handshake { node: NodeId(target as u16), ..right }, Refusal::Node),
    ] {
        let mut s = dial(peer);
        send(&mut s, &PeerFrame::Hello(hello));
        match read_frame(&mut s) {
            Some(PeerFrame::Refused { reason: got, .. }) if got == reason => {}
            other => cluster.fail(&format!("{hello:?} was answered {other:?}, expected {reason:?}")),
        }
    }

    // Garbage before and after a good handshake, a huge length, a frame cut
    // off mid-way: each drops only its own connection.
    let mut s = dial(peer);
    s.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    assert!(closed(&mut s), "garbage instead of a handshake was not dropped");
    let mut s = dial(peer);
    send(&mut s, &PeerFrame::Hello(right));
    assert!(matches!(read_frame(&mut s), Some(PeerFrame::Welcome(_))), "a good handshake is welcomed");
    s.write_all(&[0xff, 0xff, 0xff, 0xff, 0x41]).unwrap();
    assert!(closed(&mut s), "a huge length after the handshake was not dropped");
    let mut s = dial(peer);
    send(&mut s, &PeerFrame::Hello(right));
    assert!(matches!(read_frame(&mut s), Some(PeerFrame::Welcome(_))));
    s.write_all(&[0, 0, 0, 2, 0x99, 0]).unwrap();
    assert!(closed(&mut s), "an unknown peer frame kind was not dropped");
    let mut s = dial(peer);
    send(&mut s, &PeerFrame::Hello(right));
    s.write_all(&[0, 0, 0, 19, 0x41]).unwrap();
    drop(s); // Closed mid-frame.

    // The cluster served all along, and still does.
    let after = cluster.wait_serving(ELECTION);
    assert!(after > before, "{after:?} after {before:?}");

    // A replaced disk: the leader's data dir is wiped while it is down. Its
    // peers saw its ballots (its campaigns, its fence in their stores); it
    // must learn them and start above them, not at restart 1 again.
    let victim = cluster.wait_leader(ELECTION);
    let recovered = |log: &str| -> Option<u64> {
        let line = log.lines().find(|l| l.contains("restart counter recovered"))?;
        line.split_whitespace().find_map(|kv| kv.strip_prefix("restart=")).and_then(|v| v.parse().ok())
    };
    let Some(old) = recovered(&cluster.log(victim)) else {
        cluster.fail("a new cluster's node did not learn its restart counter from its peers")
    };
    cluster.kill(victim);
    std::fs::remove_dir_all(cluster.data_dir(victim)).expect("wipe the data dir");
    cluster.restart(victim);
    let deadline = Instant::now() + ELECTION;
    let restart = loop {
        if let Some(r) = recovered(&cluster.log(victim)) {
            break r;
        }
        if Instant::now() > deadline {
            cluster.fail("the node on an empty data dir did not recover its restart counter");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        restart > old,
        "the replaced disk restarted at {restart}, not above its lost incarnation's {old}:\n{}",
        cluster.log(victim)
    );
    // And the cluster keeps serving, above everything before.
    let last = cluster.wait_serving(ELECTION);
    assert!(last > after);
}

/// Copies the directory `from` (a stopped node's data dir) to `to`, files
/// and subdirectories.
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("create the copy's directory");
    for entry in std::fs::read_dir(from).expect("read the data dir") {
        let entry = entry.expect("a data dir entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("its type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy a data dir file");
        }
    }
}

/// Item 6 (B4): a data dir restored from a copy taken two starts earlier,
/// its restart marker with it, holds an old restart counter that nothing
/// local can tell from a current one. Every start of a cluster node asks a
/// quorum of peers, so the restored node starts above every ballot they saw
/// from it, and no ballot repeats. A thread records the node's ballots the
/// peers see (their acceptors' leases, the node's fences) in each phase.
#[test]
fn a_data_dir_restored_from_an_older_copy_never_repeats_a_ballot() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use leasetso_core::Ballot;
    use leasetso_tests::harness::cluster::query_status;

    let _guard = exclusive();
    let mut cluster = Cluster::start(3, ClusterOptions::default());
    cluster.wait_serving(ELECTION);
    let victim = 0;
    let addrs = cluster.client_addrs();
    // Phase k: the victim's k-th start; phase 3 runs on the restored copy.
    let phase = Arc::new(AtomicUsize::new(0));
    let seen: Arc<Mutex<Vec<(usize, Ballot)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let recorder = {
        let (phase, seen, stop) = (Arc::clone(&phase), Arc::clone(&seen), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                for addr in &addrs {
                    let Ok(s) = query_status(*addr, Duration::from_millis(200)) else { continue };
                    let p = phase.load(Ordering::Relaxed);
                    for b in [s.lease, s.fence].into_iter().flatten().filter(|b| b.node.0 == victim as u16) {
                        let mut seen = seen.lock().unwrap();
                        if !seen.contains(&(p, b)) {
                            seen.push((p, b));
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    // The victim leads (its ballots reach the peers): SIGTERM hands the
    // lease to the leader's successor at once; restart whoever was stopped.
    let lead = |cluster: &mut Cluster| {
        for _ in 0..6 {
            let leader = cluster.wait_leader(ELECTION);
            if leader == victim {
                // Renewals: a few ballots of this start.
                std::thread::sleep(Duration::from_millis(1_500));
                return;
            }
            cluster.term(leader);
            cluster.restart(leader);
            std::thread::sleep(cluster.quarantine());
        }
        cluster.fail("the victim never became the leader");
    };
    lead(&mut cluster);
    cluster.term(victim);
    let copy = tempfile::TempDir::new().expect("a directory for the copy");
    copy_dir(cluster.data_dir(victim), copy.path());
    // Two more starts on the live data dir.
    for p in 1..=2 {
        phase.store(p, Ordering::Relaxed);
        cluster.restart(victim);
        std::thread::sleep(cluster.quarantine());
        lead(&mut cluster);
        cluster.term(victim);
    }
    // The operator restores the copy taken two starts ago.
    std::fs::remove_dir_all(cluster.data_dir(victim)).expect("remove the data dir");
    copy_dir(copy.path(), cluster.data_dir(victim));
    phase.store(3, Ordering::Relaxed);
    cluster.restart(victim);
    std::thread::sleep(cluster.quarantine());
    lead(&mut cluster);
    stop.store(true, Ordering::Relaxed);
    recorder.join().expect("the recorder");

    let seen = seen.lock().unwrap().clone();
    println!("ballots of node {victim} the peers saw, by start: {seen:?}");
    let restarts =
        |p: usize| -> Vec<u64> { seen.iter().filter(|(q, _)| *q == p).map(|(_, b)| b.restart).collect() };
    for p in 0..=3 {
        assert!(!restarts(p).is_empty(), "no ballot of start {p} was seen: {seen:?}\n{}", cluster.logs());
    }
    let before = (0..3).flat_map(restarts).max().unwrap_or(0);
    let restored = restarts(3);
    assert!(
        restored.iter().all(|&r| r > before),
        "the restored data dir started at restart {restored:?}, not above the {before} the peers saw: {seen:?}"
    );
    let earlier: Vec<Ballot> = seen.iter().filter(|(p, _)| *p < 3).map(|(_, b)| *b).collect();
    assert!(
        seen.iter().filter(|(p, _)| *p == 3).all(|(_, b)| !earlier.contains(b)),
        "a ballot repeated: {seen:?}"
    );
    // Its log says where it started, and the cluster serves on.
    assert!(
        cluster.log(victim).contains("restart counter recovered"),
        "the restored node did not recover its restart counter from its peers:\n{}",
        cluster.log(victim)
    );
    cluster.wait_serving(ELECTION);
}
