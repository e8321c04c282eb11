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
use leasetso_tests::{Drained, free_addrs, leasetso_bin, parse_loopback_addr, spawn_drained, wait_timeout};

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
    metrics: std::net::SocketAddr,
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
        .args(["--metrics", "127.0.0.1:0"])
        .arg("--certs-dir")
        .arg(certs)
        .arg("--data")
        .arg(data);
    let child = spawn_drained(&mut cmd, "leasetso:");
    let (mut resp, mut metrics) = (None, None);
    loop {
        let line = child
            .ready
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("{runtime} server did not start:\n{}", child.log.text()));
        if line.contains("RESP on") {
            resp = parse_loopback_addr(&line);
        } else if line.contains("metrics on") {
            metrics = parse_loopback_addr(&line);
        } else if line.contains("serving on") {
            let addr = parse_loopback_addr(&line).expect("an address");
            let metrics = metrics.expect("the metrics line comes first");
            return Node { child, addr, resp: resp.expect("the RESP line comes first"), metrics };
        }
    }
}

/// `GET path` over HTTPS, trusting the CA of `dir`, presenting no
/// certificate: the status code and the body.
fn https_get(dir: &Path, addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(dir.join("ca.crt")).unwrap();
    use rustls::pki_types::pem::PemObject;
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    write!(tls, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    // The server ends with a close_notify; a truncation would be an error.
    tls.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0), body.to_string())
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
        // The metrics listener speaks HTTPS with the node's certificate, to
        // a client of the cluster's CA with no certificate of its own; a
        // plaintext request gets no answer.
        let (code, body) = https_get(&dir, node.metrics, "/ready");
        assert_eq!((code, body.as_str()), (200, "ready: leader\n"), "{runtime}: /ready over HTTPS");
        let (code, metrics) = https_get(&dir, node.metrics, "/metrics");
        assert!(code == 200 && metrics.contains("leasetso_is_leader 1"), "{runtime}: /metrics over HTTPS");
        let plain = leasetso_tests::http_get(node.metrics, "/ready").map(|(code, _)| code).unwrap_or(0);
        assert_ne!(plain, 200, "{runtime}: the metrics listener answered plaintext");
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

/// What a node's peer port answered a would-be peer.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    Welcome,
    /// A Refused frame, a TLS alert, or the connection closed: no link.
    Nothing,
}

/// Dials `addr` as node `claim` (0-based) with `tls` (a client configuration
/// presenting some certificate) or in plaintext, sends a Hello with the
/// cluster's timing digest and the client address `client` (the one the
/// real node advertises: another would be a second process claiming its
/// id), and reports what comes back.
fn dial_peer(
    addr: std::net::SocketAddr,
    tls: Option<Arc<rustls::ClientConfig>>,
    claim: u16,
    client: std::net::SocketAddr,
) -> Answer {
    use leasetso_core::peer::PEER_VERSION;
    use leasetso_core::{Handshake, NodeConfig, PeerFrame};
    use leasetso_runtime_common::io::InBuf;
    use leasetso_runtime_common::tls::TlsSession;
    use std::io::{Read, Write};

    let mut node = NodeConfig::new(NodeId(0), 3);
    node.lease.duration = Duration::from_millis(1000);
    let hello = Handshake {
        version: PEER_VERSION,
        cluster_id: 5,
        node: NodeId(claim),
        client_addr: Some(client),
        resp_addr: None,
        pd_addr: None,
        digest: node.digest().expect("a valid configuration"),
    };
    let mut plain = Vec::new();
    PeerFrame::Hello(hello).encode(&mut plain).unwrap();
    let mut tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut session = tls.map(|cfg| TlsSession::client(cfg, addr.ip()).unwrap());
    let (mut cipher, mut got, mut out) = (InBuf::new(1 << 16), InBuf::new(1 << 16), Vec::new());
    match &mut session {
        Some(s) => s.write(&mut plain, &mut out).unwrap(),
        None => out.append(&mut plain),
    }
    let _ = tcp.write_all(&out);
    out.clear();
    loop {
        if let Ok(Some((frame, _))) = PeerFrame::decode(got.pending()) {
            return if matches!(frame, PeerFrame::Welcome(_)) { Answer::Welcome } else { Answer::Nothing };
        }
        let mut buf = [0u8; 4096];
        let n = match tcp.read(&mut buf) {
            Ok(0) | Err(_) => return Answer::Nothing,
            Ok(n) => n,
        };
        match &mut session {
            None => {
                got.spare(n)[..n].copy_from_slice(&buf[..n]);
                got.filled(n);
            }
            Some(s) => {
                cipher.spare(n)[..n].copy_from_slice(&buf[..n]);
                cipher.filled(n);
                if s.read(&mut cipher, &mut got, 1).is_err() {
                    return Answer::Nothing;
                }
                s.write(&mut Vec::new(), &mut out).unwrap();
                let _ = tcp.write_all(&out);
                out.clear();
            }
        }
    }
}

/// Node 2's certificate, signed by the CA of `dir` but expired yesterday,
/// written with the CA into a directory of its own.
fn expired_node_certs(dir: &Path, into: &Path) {
    std::fs::create_dir_all(into).unwrap();
    std::fs::copy(dir.join("ca.crt"), into.join("ca.crt")).unwrap();
    let ca_key = rcgen::KeyPair::from_pem(&std::fs::read_to_string(dir.join("ca.key")).unwrap()).unwrap();
    let ca_params =
        rcgen::CertificateParams::from_ca_cert_pem(&std::fs::read_to_string(dir.join("ca.crt")).unwrap())
            .unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params.subject_alt_names.push(rcgen::SanType::URI("leasetso://cluster/5/node/2".try_into().unwrap()));
    params.subject_alt_names.push(rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap()));
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(30);
    params.not_after = now - time::Duration::days(1);
    params.extended_key_usages =
        vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth, rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    std::fs::write(into.join("node.2.crt"), cert.pem()).unwrap();
    std::fs::write(into.join("node.2.key"), key.serialize_pem()).unwrap();
}

/// Every refusal of the peer port, each with a real TLS (or plaintext)
/// peer, and each logged once with its cause and the remote address; the
/// right certificate claiming its own id is welcomed.
#[test]
fn the_peer_port_refuses_whoever_cannot_prove_the_node_it_claims() {
    use leasetso_runtime_common::tls::CertsDir;
    let cluster = Cluster::start();
    let certs = CertsDir::new(&cluster.certs);
    // Node 2's certificate from another CA, presented by a peer that
    // trusts this cluster's CA (so that the node, not the peer, refuses).
    let other = cluster.tmp.path().join("other");
    cert(&other, &["create-ca", "--cluster-id", "5"]);
    cert(&other, &["create-node", "--id", "2", "--host", "127.0.0.1"]);
    std::fs::copy(cluster.certs.join("ca.crt"), other.join("ca.crt")).unwrap();
    let expired = cluster.tmp.path().join("expired");
    expired_node_certs(&cluster.certs, &expired);

    // Node 1 runs on std, node 3 on smol: both peer ports, each refusing
    // node 2's certificate when it claims the other's id.
    let ports: Vec<std::net::SocketAddr> =
        cluster.peers.split(',').map(|entry| entry[2..].parse().unwrap()).collect();
    for (at, lie) in [(0usize, 2u16), (2, 0)] {
        let peer_port = ports[at];
        let node2 = certs.client_config("node", "2").unwrap();
        assert_eq!(
            dial_peer(peer_port, Some(Arc::clone(&node2)), 1, cluster.clients[1]),
            Answer::Welcome,
            "node 2 as itself"
        );
        let cases = [
            ("plaintext", None, 1),
            ("another CA", Some(CertsDir::new(&other).client_config("node", "2").unwrap()), 1),
            ("node 2's certificate claiming another id", Some(node2), lie),
            ("a client certificate", Some(certs.client_config("client", "root").unwrap()), 1),
            ("an expired certificate", Some(CertsDir::new(&expired).client_config("node", "2").unwrap()), 1),
        ];
        let node = cluster.nodes[at].as_ref().unwrap();
        for (what, tls, claim) in cases {
            let what = format!("node {}: {what}", at + 1);
            let before = node.log.text().matches("refusing a peer").count();
            assert_eq!(
                dial_peer(peer_port, tls, claim, cluster.clients[usize::from(claim)]),
                Answer::Nothing,
                "{what} was welcomed"
            );
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while node.log.text().matches("refusing a peer").count() == before
                && std::time::Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            let log = node.log.text();
            let line = log.lines().filter(|l| l.contains("refusing a peer")).nth(before);
            let line = line.unwrap_or_else(|| panic!("{what}: no refusal logged:\n{log}"));
            assert!(line.contains("127.0.0.1:"), "{what}: the refusal names no remote address: {line}");
            assert_eq!(
                log.matches("refusing a peer").count(),
                before + 1,
                "{what}: logged more than once:\n{log}"
            );
            if what.contains("claiming") {
                let says = format!("node 2's certificate claims to be node {}", lie + 1);
                assert!(line.contains(&says), "{what}: {line}");
            }
        }
    }
}

/// Replacing the node's certificate files mid-run: new connections get the
/// new certificate at once, with no restart; a connection already open
/// keeps going.
#[test]
fn certificates_rotate_without_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("certs");
    certs(&dir, "1");
    let node = serve("std", &dir, &tmp.path().join("data"));
    let open = Client::connect_with(node.addr, opts(&dir, "root")).expect("connect over TLS");
    let before = open.get_ts().unwrap();

    // A new certificate for node 1 that no longer names 127.0.0.1: a client
    // dialling that address must now refuse the server.
    let rotate = |hosts: &str| {
        let old = tmp.path().join(format!("old-{}", rand_suffix()));
        std::fs::create_dir_all(&old).unwrap();
        for f in ["node.1.crt", "node.1.key"] {
            std::fs::rename(dir.join(f), old.join(f)).unwrap();
        }
        cert(&dir, &["create-node", "--id", "1", "--host", hosts]);
    };
    rotate("localhost");
    let refused = Client::connect_with(node.addr, opts(&dir, "root")).and_then(|c| c.get_ts());
    assert!(refused.is_err(), "a new connection got the old certificate: {refused:?}");
    let during = open.get_ts().expect("the open connection keeps going");
    assert!(during > before);

    rotate("127.0.0.1");
    let again = Client::connect_with(node.addr, opts(&dir, "root")).expect("the rotated certificate serves");
    assert!(again.get_ts().unwrap() > during);
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
}

/// The Redis door's password (`--resp-password-file`), for Redis clients
/// without certificates, with the real redis-cli: nothing before AUTH, a
/// wrong password refused, the right one served.
#[test]
fn the_redis_door_takes_a_password() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("resp-password");
    std::fs::write(&file, "s3cret\n").unwrap();
    let mut cmd = Command::new(leasetso_bin());
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--resp", "127.0.0.1:0", "--resp-password-file"])
        .arg(&file)
        .arg("--data")
        .arg(tmp.path().join("data"));
    let child = spawn_drained(&mut cmd, "leasetso:");
    let mut resp = None;
    while let Ok(line) = child.ready.recv_timeout(Duration::from_secs(20)) {
        if line.contains("RESP on") {
            resp = parse_loopback_addr(&line);
        }
        if line.contains("serving on") {
            break;
        }
    }
    // Killed on drop; its client address is not used here.
    let node = Node {
        child,
        addr: "127.0.0.1:1".parse().unwrap(),
        resp: resp.expect("a RESP door"),
        metrics: "127.0.0.1:1".parse().unwrap(),
    };
    let port = node.resp.port().to_string();
    let cli = |args: &[&str]| {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &port, "--no-auth-warning"])
            .args(args)
            .output()
            .expect("redis-cli (redis-tools) is installed");
        String::from_utf8_lossy(&out.stdout).trim().to_string() + &String::from_utf8_lossy(&out.stderr)
    };
    assert!(cli(&["TSO"]).contains("NOAUTH"), "a TSO without the password: {}", cli(&["TSO"]));
    assert!(cli(&["-a", "wrong", "TSO"]).contains("WRONGPASS"), "{}", cli(&["-a", "wrong", "TSO"]));
    let ts = cli(&["-a", "s3cret", "TSO"]);
    assert!(ts.parse::<u64>().is_ok(), "with the password: {ts}");
    drop(node);
}
