//! Hostile clients against real servers of both runtimes: the connection
//! cap (H1) and the handshake deadline (H2), with the warnings they cause
//! rate-limited.
//!
//! * A server capped at a few connections refuses one more with the typed
//!   refusal (`TooManyConnections` on the client door, `-ERR max clients
//!   reached` on the Redis door) and closes it; the client served before
//!   the flood is served throughout.
//! * Connections that never finish their handshake are closed after the
//!   deadline, which frees their places: new clients are served again.
//! * Twenty refusals write one warning line, not twenty.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use leasetso_core::wire::VERSION;
use leasetso_core::{ErrorCode, Frame};
use leasetso_tests::{RawConn, RecvError, Runtime, ServerProcess, data_dir, encode, parse_loopback_addr};

/// The cap of the servers here.
const CAP: usize = 4;
/// The handshake deadline (H2), and how late its close may come on a busy machine.
const DEADLINE: Duration = Duration::from_secs(5);
const SLACK: Duration = Duration::from_secs(4);

/// A connection that sends nothing (it never starts its handshake).
fn idle(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(DEADLINE + SLACK)).expect("read timeout");
    s
}

/// Reads until EOF (or an error): what the server sent before it closed.
fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    got
}

/// A connection refused at the cap gets `TooManyConnections` with id 0, then
/// the close, whatever it sent first.
fn expect_refused(addr: SocketAddr, what: &str) {
    let mut conn = RawConn::connect(addr).expect("connect");
    conn.send(&Frame::Hello { version: VERSION, cluster_id: 0 }).expect("send Hello");
    match conn.recv() {
        Ok(Frame::Error { id: 0, code: ErrorCode::TooManyConnections, .. }) => {}
        other => panic!("{what}: a connection over the cap got {other:?}"),
    }
    match conn.recv() {
        Err(RecvError::Closed) => {}
        Err(RecvError::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("{what}: after the refusal, expected the close, got {other:?}"),
    }
}

/// Starts a capped server with a Redis door on `runtime`: its client and
/// Redis addresses.
fn capped(runtime: Runtime, dir: &std::path::Path) -> (ServerProcess, SocketAddr) {
    let cap = CAP.to_string();
    let server = ServerProcess::try_start_runtime(
        runtime,
        "127.0.0.1:0",
        dir,
        &["--max-connections", &cap, "--resp", "127.0.0.1:0"],
    )
    .unwrap_or_else(|f| panic!("{f}"));
    let resp = server
        .log()
        .text()
        .lines()
        .find(|l| l.contains("RESP on"))
        .and_then(parse_loopback_addr)
        .unwrap_or_else(|| panic!("no RESP address in the log:\n{}", server.log()));
    (server, resp)
}

fn cap_and_deadline(runtime: Runtime) {
    let dir = data_dir();
    let (server, resp) = capped(runtime, dir.path());
    let addr = server.addr();
    // The well-behaved client, served before the flood and throughout.
    let mut served = RawConn::open(addr);
    assert!(served.get_ts(1).expect("GetTs").is_ok());

    // The rest of the cap in connections that never say a word.
    let began = Instant::now();
    let mut silent: Vec<TcpStream> = (1..CAP).map(|_| idle(addr)).collect();
    thread::sleep(Duration::from_millis(200));

    // At the cap: twenty refusals, each typed, each closed.
    for i in 0..20 {
        expect_refused(addr, &format!("{runtime} refusal {i}"));
        assert!(
            served.get_ts(1).expect("GetTs").is_ok(),
            "{runtime}: the served client, during the refusals"
        );
    }
    // The Redis door shares the cap and refuses as Redis does.
    let mut redis = TcpStream::connect(resp).expect("connect to the Redis door");
    redis.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    redis.write_all(b"TSO\r\n").unwrap();
    let said = String::from_utf8_lossy(&read_to_close(&mut redis)).to_string();
    assert_eq!(said, "-ERR max clients reached\r\n", "{runtime}: the Redis door at the cap");

    // H2: the silent ones are closed by the deadline, and no later than a
    // little after it.
    for s in &mut silent {
        let got = read_to_close(s);
        assert!(got.is_empty(), "{runtime}: a silent connection was sent {got:?}");
    }
    let closed = began.elapsed();
    assert!(
        closed >= DEADLINE - Duration::from_millis(500) && closed < DEADLINE + SLACK,
        "{runtime}: the silent connections were closed after {closed:?}, the deadline is {DEADLINE:?}"
    );
    // Their places are free again: a new client is served.
    let mut again = RawConn::open(addr);
    assert!(again.get_ts(1).expect("GetTs").is_ok(), "{runtime}: a client after the silent ones left");
    assert!(served.get_ts(1).expect("GetTs").is_ok(), "{runtime}: the served client, at the end");

    // Item 8: twenty refusals, one warning line (the rest held back). The
    // warning about a silent connection may follow its close.
    server.log().wait_for("did not finish its handshake", Duration::from_secs(5));
    let log = server.log().text();
    let lines = log.lines().filter(|l| l.contains("at the cap")).count();
    assert_eq!(lines, 1, "{runtime}: {lines} lines about refusals at the cap:\n{log}");
    let timeouts = log.lines().filter(|l| l.contains("did not finish its handshake")).count();
    assert_eq!(timeouts, 1, "{runtime}: {timeouts} lines about handshake timeouts:\n{log}");
    server.stop();
}

#[test]
fn std_server_caps_connections_and_closes_silent_ones() {
    cap_and_deadline(Runtime::Std);
}

#[test]
fn smol_server_caps_connections_and_closes_silent_ones() {
    cap_and_deadline(Runtime::Smol);
}

/// A Hello dribbled slower than the deadline allows is closed too: the
/// deadline is for the whole handshake, not per byte.
#[test]
fn a_slow_handshake_is_closed_at_the_deadline() {
    let dir = data_dir();
    let server = ServerProcess::start(dir.path());
    let hello = encode(&Frame::Hello { version: VERSION, cluster_id: 0 });
    let mut s = TcpStream::connect(server.addr()).expect("connect");
    let began = Instant::now();
    let mut closed = None;
    for b in hello.iter().cycle().take(hello.len() - 1) {
        if s.write_all(std::slice::from_ref(b)).is_err() {
            closed = Some(began.elapsed());
            break;
        }
        thread::sleep(Duration::from_millis(700));
    }
    s.set_read_timeout(Some(SLACK)).unwrap();
    let got = read_to_close(&mut s);
    let at = closed.unwrap_or_else(|| began.elapsed());
    assert!(got.is_empty(), "a dribbled Hello was answered: {got:?}");
    assert!(at < DEADLINE + SLACK, "closed after {at:?}");
}

/// H5: a second process started as node 2 on another peer port. The
/// others refuse its links, say which two processes claim the id (a few
/// lines, not one per attempt), and keep the real node 2's link: the
/// cluster serves on, with no flapping.
#[test]
fn a_second_process_claiming_a_node_id_is_refused_and_named() {
    use leasetso_tests::harness::cluster::{Cluster, ClusterOptions, exclusive};
    use leasetso_tests::{ChildGuard, free_addrs};

    let _serial = exclusive();
    let cluster = Cluster::start(3, ClusterOptions { cluster_id: Some(9), ..ClusterOptions::default() });
    cluster.wait_leader(Duration::from_secs(15));
    let before = cluster.wait_serving(Duration::from_secs(15));
    let fake_peer = free_addrs(1)[0];
    let peers = format!("1={},2={fake_peer},3={}", cluster.peer_addr(0), cluster.peer_addr(2));
    let data = data_dir();
    let data_arg = data.path().display().to_string();
    let _impostor = ChildGuard::spawn_quiet(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data",
        &data_arg,
        "--id",
        "2",
        "--peers",
        &peers,
        "--lease-ms",
        "500",
        "--cluster-id",
        "9",
    ]);
    // Let it try for a while, taking timestamps all along.
    let client = cluster.client(Duration::from_secs(5));
    let mut last = before;
    let until = Instant::now() + Duration::from_secs(6);
    while Instant::now() < until {
        let ts = client.get_ts().unwrap_or_else(|e| cluster.fail(&format!("with an impostor: {e}")));
        assert!(ts > last);
        last = ts;
        thread::sleep(Duration::from_millis(20));
    }
    for i in [0, 2] {
        let log = cluster.log(i);
        let named = log.lines().filter(|l| l.contains("two processes claim node 2")).count();
        if named == 0 || named > 3 {
            cluster.fail(&format!("node {i} named the two processes {named} times"));
        }
        let downs =
            log.lines().filter(|l| l.contains("link down") || l.contains("dropping the peer")).count();
        if downs > 3 {
            cluster.fail(&format!("node {i}: {downs} link-down lines: the links flap"));
        }
        let up = cluster.status(i).map(|s| s.role);
        assert!(up.is_ok(), "node {i} answers");
    }
}
