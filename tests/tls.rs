//! TLS on the client and Redis doors, with real processes of both runtimes
//! and certificates from `leasetso cert`: clients present a certificate of
//! the cluster's CA; plaintext, another CA and another cluster are refused;
//! clearing the primary registration needs the admin role and is refused
//! while the registered node serves; `redis-cli --tls` takes timestamps.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use leasetso_core::{Ballot, ErrorCode, NodeId};
use leasetso_std::{Client, ClientError, ClientOptions, ClientTls};
use leasetso_tests::{Drained, leasetso_bin, parse_loopback_addr, spawn_drained, wait_timeout};

/// `leasetso cert ...`, which must succeed.
fn cert(dir: &Path, args: &[&str]) {
    let out = Command::new(leasetso_bin())
        .arg("cert")
        .args(args)
        .arg("--certs-dir")
        .arg(dir)
        .output()
        .expect("run leasetso cert");
    assert!(out.status.success(), "cert {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA of `cluster` with node 1's certificate for 127.0.0.1, an admin
/// `root` and a user `app`.
fn certs(dir: &Path, cluster: &str) {
    cert(dir, &["create-ca", "--cluster-id", cluster]);
    cert(dir, &["create-node", "--id", "1", "--host", "127.0.0.1,localhost"]);
    cert(dir, &["create-client", "--name", "root", "--admin"]);
    cert(dir, &["create-client", "--name", "app"]);
}

/// A single TLS node on `runtime`, killed on drop.
struct Node {
    child: Drained,
    addr: std::net::SocketAddr,
    resp: std::net::SocketAddr,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.child.kill();
        let _ = wait_timeout(&mut self.child.child, Duration::from_secs(10));
    }
}

fn serve(runtime: &str, certs: &Path, data: &Path) -> Node {
    let mut cmd = Command::new(leasetso_bin());
    cmd.args(["serve", "--runtime", runtime, "--listen", "127.0.0.1:0", "--resp", "127.0.0.1:0"])
        .arg("--certs-dir")
        .arg(certs)
        .arg("--data")
        .arg(data);
    let child = spawn_drained(&mut cmd, "leasetso:");
    let mut resp = None;
    loop {
        let line = child
            .ready
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("{runtime} server did not start:\n{}", child.log.text()));
        if line.contains("RESP on") {
            resp = parse_loopback_addr(&line);
        } else if line.contains("serving on") {
            let addr = parse_loopback_addr(&line).expect("an address");
            return Node { child, addr, resp: resp.expect("the RESP line comes first") };
        }
    }
}

fn opts(dir: &Path, user: &str) -> ClientOptions {
    ClientOptions {
        deadline: Duration::ZERO,
        tls: Some(ClientTls::from_dir(dir, user).expect("client certificates")),
        ..ClientOptions::default()
    }
}

#[test]
fn tls_doors_take_the_clusters_certificates_and_refuse_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, other_ca, other_cluster) =
        (tmp.path().join("certs"), tmp.path().join("other-ca"), tmp.path().join("other-cluster"));
    certs(&dir, "1");
    certs(&other_ca, "1");
    certs(&other_cluster, "2");
    for runtime in ["std", "smol"] {
        let node = serve(runtime, &dir, &tmp.path().join(format!("data-{runtime}")));

        // A client of the cluster's CA takes timestamps, as any user.
        for user in ["root", "app"] {
            let client = Client::connect_with(node.addr, opts(&dir, user)).expect("connect over TLS");
            let a = client.get_ts().expect("get_ts over TLS");
            let b = client.get_ts_n(10).expect("get_ts_n over TLS");
            assert!(b > a, "{runtime}: {b:?} after {a:?}");
        }

        // The async client too, as any user.
        smol::block_on(async {
            let client =
                leasetso_smol::Client::connect(&[node.addr], opts(&dir, "app")).await.expect("smol over TLS");
            let a = client.get_ts().await.expect("smol get_ts over TLS");
            let b = client.get_ts_n(5).await.expect("smol get_ts_n over TLS");
            assert!(b > a, "{runtime}: {b:?} after {a:?}");
            let plain = ClientOptions { deadline: Duration::ZERO, ..ClientOptions::default() };
            match leasetso_smol::Client::connect(&[node.addr], plain).await {
                Err(ClientError::TlsRequired { .. }) => {}
                other => panic!("{runtime}: a plaintext async client got {other:?}"),
            }
        });

        // Plaintext gets a clean close, and the client says why.
        let plain = ClientOptions { deadline: Duration::ZERO, ..ClientOptions::default() };
        match Client::connect_with(node.addr, plain) {
            Err(ClientError::TlsRequired { .. }) => {}
            other => panic!("{runtime}: a plaintext client got {other:?}"),
        }
        // Another CA (the same cluster id) and another cluster are refused.
        for (dir, what) in [(&other_ca, "another CA"), (&other_cluster, "another cluster")] {
            let refused = Client::connect_with(node.addr, opts(dir, "root")).and_then(|c| c.get_ts());
            assert!(refused.is_err(), "{runtime}: a client of {what} was served");
        }

        // Clearing the registration: the admin role, and never while the
        // registered node serves (checked by the server, not only the CLI).
        let tag = Ballot::new(0, 1, NodeId(1));
        let app = Client::connect_with(node.addr, opts(&dir, "app")).unwrap();
        match app.clear_primary(NodeId(1), tag) {
            Err(ClientError::Server { code: ErrorCode::Forbidden, .. }) => {}
            other => panic!("{runtime}: a user without the admin role cleared: {other:?}"),
        }
        let root = Client::connect_with(node.addr, opts(&dir, "root")).unwrap();
        assert_eq!(root.clear_primary(NodeId(1), tag).expect("an admin clears"), None);
        match root.clear_primary(NodeId(0), Ballot::new(0, 1, NodeId(0))) {
            Err(ClientError::Server { code: ErrorCode::Forbidden, .. }) => {}
            other => panic!("{runtime}: cleared the serving node's registration: {other:?}"),
        }
        assert!(app.get_ts().is_ok(), "{runtime}: the connection goes on after a refusal");

        // The Redis door speaks TLS to redis-cli.
        if let Some(ts) = redis_cli_tls(&dir, node.resp) {
            assert!(ts.parse::<u64>().is_ok(), "{runtime}: redis-cli --tls TSO answered {ts:?}");
        }
        drop(node);
    }
}

/// `redis-cli --tls ... TSO` against `addr`; `None` (said on stderr) when
/// this redis-cli has no TLS.
fn redis_cli_tls(dir: &Path, addr: std::net::SocketAddr) -> Option<String> {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &addr.port().to_string(), "--tls"])
        .arg("--cacert")
        .arg(dir.join("ca.crt"))
        .arg("--cert")
        .arg(dir.join("client.root.crt"))
        .arg("--key")
        .arg(dir.join("client.root.key"))
        .arg("TSO")
        .output()
        .expect("redis-cli (redis-tools) is installed");
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let err = String::from_utf8_lossy(&out.stderr);
    if err.contains("not supported") || err.contains("Unrecognized option") {
        eprintln!("skipped: this redis-cli has no TLS ({err})");
        return None;
    }
    assert!(out.status.success(), "redis-cli --tls: {err}");
    Some(text)
}

/// Free loopback addresses (held, then released for the nodes to bind).
fn free_addrs(n: usize) -> Vec<std::net::SocketAddr> {
    let held: Vec<_> = (0..n).map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    held.iter().map(|l| l.local_addr().unwrap()).collect()
}

/// A 3-node TLS cluster (std, std, smol), certificates from `leasetso cert`.
struct Cluster {
    tmp: tempfile::TempDir,
    certs: std::path::PathBuf,
    peers: String,
    clients: Vec<std::net::SocketAddr>,
    nodes: Vec<Option<Drained>>,
}

impl Cluster {
    fn start() -> Cluster {
        let tmp = tempfile::tempdir().unwrap();
        let certs = tmp.path().join("certs");
        cert(&certs, &["create-ca", "--cluster-id", "5"]);
        for i in 1..=3 {
            cert(&certs, &["create-node", "--id", &i.to_string(), "--host", "127.0.0.1"]);
        }
        cert(&certs, &["create-client", "--name", "root", "--admin"]);
        let addrs = free_addrs(6);
        let peers = (0..3).map(|i| format!("{}={}", i + 1, addrs[i])).collect::<Vec<_>>().join(",");
        let mut c =
            Cluster { tmp, certs, peers, clients: addrs[3..].to_vec(), nodes: vec![None, None, None] };
        for i in 0..3 {
            c.spawn(i);
        }
        c
    }

    fn spawn(&mut self, i: usize) {
        let runtime = if i == 2 { "smol" } else { "std" };
        let mut cmd = Command::new(leasetso_bin());
        cmd.args(["serve", "--runtime", runtime, "--cluster-id", "5", "--lease-ms", "1000"])
            .args([
                "--id",
                &(i + 1).to_string(),
                "--peers",
                &self.peers,
                "--listen",
                &self.clients[i].to_string(),
            ])
            .arg("--certs-dir")
            .arg(&self.certs)
            .arg("--data")
            .arg(self.tmp.path().join(format!("d{i}")));
        let child = spawn_drained(&mut cmd, "listening on");
        child.ready.recv_timeout(Duration::from_secs(20)).expect("a node listens");
        self.nodes[i] = Some(child);
    }

    fn opts(&self, deadline: Duration) -> ClientOptions {
        ClientOptions {
            deadline,
            request_timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
            ..opts(&self.certs, "root")
        }
    }

    /// The node that reports itself leader, within `timeout`.
    fn leader(&self, timeout: Duration) -> usize {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            for i in 0..3 {
                let Some(_) = &self.nodes[i] else { continue };
                let status =
                    Client::connect_with(self.clients[i], self.opts(Duration::ZERO)).and_then(|c| c.status());
                if status.is_ok_and(|s| s.role == leasetso_core::Role::Leader) {
                    return i;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("no leader within {timeout:?}:\n{}", self.logs());
    }

    fn logs(&self) -> String {
        self.nodes.iter().flatten().map(|n| n.log.text()).collect::<Vec<_>>().join("\n")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in self.nodes.iter_mut().flatten() {
            let _ = node.child.kill();
            let _ = wait_timeout(&mut node.child, Duration::from_secs(10));
        }
    }
}

/// A TLS cluster under load from both clients survives kill -9 and SIGTERM
/// of its leader: every caller's timestamps strictly increase, none repeats.
#[test]
fn a_tls_cluster_fails_over_under_load_with_a_valid_history() {
    let mut cluster = Cluster::start();
    let first = cluster.leader(Duration::from_secs(20));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut callers = Vec::new();
    for k in 0..4 {
        let (opts, seeds, stop) =
            (cluster.opts(Duration::from_secs(8)), cluster.clients.clone(), Arc::clone(&stop));
        callers.push(std::thread::spawn(move || {
            let mut got = Vec::new();
            let std_client = Client::connect_with(&seeds[..], opts.clone()).expect("a TLS client");
            let smol_client =
                smol::block_on(leasetso_smol::Client::connect(&seeds, opts)).expect("a TLS async client");
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let ts = if k % 2 == 0 { std_client.get_ts() } else { smol::block_on(smol_client.get_ts()) };
                got.push(ts.expect("a call within its deadline").to_u64());
                std::thread::sleep(Duration::from_millis(2));
            }
            got
        }));
    }
    std::thread::sleep(Duration::from_millis(500));
    // kill -9 of the leader.
    let _ = cluster.nodes[first].as_mut().unwrap().child.kill();
    let second = loop {
        let l = cluster.leader(Duration::from_secs(20));
        if l != first {
            break l;
        }
    };
    std::thread::sleep(Duration::from_millis(500));
    cluster.spawn(first);
    // SIGTERM of the next: a graceful handoff.
    let pid = cluster.nodes[second].as_ref().unwrap().child.id();
    leasetso_tests::send_signal(pid, "TERM");
    let _ = wait_timeout(&mut cluster.nodes[second].as_mut().unwrap().child, Duration::from_secs(10));
    let third = cluster.leader(Duration::from_secs(20));
    assert_ne!(third, second);
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut all = Vec::new();
    for caller in callers {
        let got = caller.join().expect("a caller panicked");
        assert!(got.windows(2).all(|w| w[0] < w[1]), "a caller's timestamps went back");
        all.extend(got);
    }
    let n = all.len();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), n, "a timestamp was handed out twice");
    assert!(n > 100, "only {n} calls");
}
