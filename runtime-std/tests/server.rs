//! The server in-process: lifecycle, handshake and error rules, pipelining,
//! batching through the client, restarts on the same data dir.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use leasetso_core::wire::VERSION;
use leasetso_core::{ErrorCode, Frame, MAX_LOGICAL, NodeConfig, NodeId, Role, Timestamp};
use leasetso_std::{Client, ClientError, ClientOptions, Server, ServerConfig, ServerError};

const IO_TIMEOUT: Duration = Duration::from_secs(5);

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn start(dir: &Path) -> Server {
    start_cfg(ServerConfig::new(loopback(), dir))
}

fn start_cfg(cfg: ServerConfig) -> Server {
    let server = Server::start(cfg).expect("server starts");
    assert!(server.wait_serving(Duration::from_secs(10)), "the node serves within 10 s");
    server
}

/// A raw protocol connection, for what the client never sends.
struct Raw {
    tcp: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    fn connect(addr: SocketAddr) -> Raw {
        let tcp = TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        Raw { tcp, buf: Vec::new() }
    }

    fn greeted(addr: SocketAddr) -> Raw {
        let mut raw = Raw::connect(addr);
        raw.send(&[Frame::Hello { version: VERSION, cluster_id: 0 }]);
        assert!(matches!(raw.recv(), Some(Frame::Welcome { .. })));
        raw
    }

    fn send(&mut self, frames: &[Frame]) {
        let mut out = Vec::new();
        for f in frames {
            f.encode(&mut out).unwrap();
        }
        self.tcp.write_all(&out).unwrap();
    }

    fn send_bytes(&mut self, bytes: &[u8]) {
        self.tcp.write_all(bytes).unwrap();
    }

    /// The next frame, or `None` at end of stream.
    fn recv(&mut self) -> Option<Frame> {
        loop {
            if let Some((frame, used)) = Frame::decode(&self.buf).expect("server sends valid frames") {
                self.buf.drain(..used);
                return Some(frame);
            }
            let mut chunk = [0u8; 512];
            let n = self.tcp.read(&mut chunk).expect("server answers within the timeout");
            if n == 0 {
                assert!(self.buf.is_empty(), "stream ended mid-frame");
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    fn expect_fatal(&mut self, code: ErrorCode) {
        match self.recv() {
            Some(Frame::Error { id: 0, code: got, .. }) => assert_eq!(got, code),
            other => panic!("expected fatal {code:?}, got {other:?}"),
        }
        assert_eq!(self.recv(), None, "the server closes after a fatal error");
    }
}

#[test]
fn start_serve_status_and_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let addr = server.local_addr();
    assert_ne!(addr.port(), 0, "the real port is reported");

    // A short deadline: after the shutdown below, this client must give up quickly.
    let quick = ClientOptions {
        deadline: Duration::from_millis(100),
        retry_backoff: Duration::from_millis(1),
        ..Default::default()
    };
    let client = Client::connect_with(addr, quick.clone()).unwrap();
    let a = client.get_ts().unwrap();
    let b = client.get_ts().unwrap();
    assert!(b > a, "{b:?} after {a:?}");
    let c = client.get_ts_n(100).unwrap();
    assert!(c.logical >= 100, "a range of 100 fits one millisecond: {c:?}");
    assert!(c.to_u64() - 99 > b.to_u64(), "the whole range is above earlier timestamps");

    let status = client.status().unwrap();
    assert_eq!(status.role, Role::Leader);
    assert_eq!(status.node, NodeId(0));
    assert_eq!(status.leader.node, Some(NodeId(0)));
    assert_eq!(status.leader.addr, Some(addr), "a leader hints its own client address");
    assert!(status.current >= c);
    assert!(status.window_end_ms > status.current.physical_ms, "served below the saved window");

    let stats = server.stats();
    assert_eq!(stats.get_ts_requests, 3);
    assert_eq!(stats.timestamps, 102);
    assert_eq!(stats.status_requests, 1);
    assert_eq!(stats.errors, 0);

    // An idle connection must not hold the shutdown up.
    let mut idle = Raw::greeted(addr);
    let begun = Instant::now();
    server.shutdown();
    assert!(begun.elapsed() < Duration::from_secs(3), "shutdown took {:?}", begun.elapsed());
    assert_eq!(idle.recv(), None, "connections are closed at shutdown");

    match Client::connect_with(addr, quick) {
        Err(e @ ClientError::Connect { .. }) => assert!(e.is_retryable()),
        other => panic!("expected a connect error, got {other:?}"),
    }
    // The client that was connected sees the server gone.
    assert!(client.get_ts().is_err());
}

#[test]
fn batching_merges_concurrent_callers_into_fewer_requests() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let client = Arc::new(Client::connect(server.local_addr()).unwrap());
    const THREADS: u32 = 16;
    const CALLS: u32 = 300;
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let client = Arc::clone(&client);
            std::thread::spawn(move || {
                let count = t % 3 + 1;
                let mut ranges = Vec::with_capacity(CALLS as usize);
                let mut prev = Timestamp::ZERO;
                for _ in 0..CALLS {
                    let last = client.get_ts_n(count).unwrap();
                    assert!(last > prev, "timestamps increase per thread: {last:?} after {prev:?}");
                    assert!(last.logical >= count, "a range stays in one millisecond: {last:?}");
                    prev = last;
                    ranges.push((last.to_u64() - u64::from(count) + 1, last.to_u64()));
                }
                ranges
            })
        })
        .collect();
    let mut ranges: Vec<(u64, u64)> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
    ranges.sort_unstable();
    for w in ranges.windows(2) {
        assert!(w[0].1 < w[1].0, "ranges overlap: {:?} and {:?}", w[0], w[1]);
    }
    let calls = u64::from(THREADS * CALLS);
    let expected: u64 = (0..THREADS).map(|t| u64::from((t % 3 + 1) * CALLS)).sum();
    let stats = server.stats();
    assert_eq!(stats.timestamps, expected, "every timestamp asked for was handed out once");
    assert!(
        stats.get_ts_requests < calls,
        "{} requests for {calls} calls: concurrent calls were not merged",
        stats.get_ts_requests
    );
}

#[test]
fn restart_on_the_same_data_dir_continues_above_the_saved_window() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let client = Client::connect(server.local_addr()).unwrap();
    let mut last = Timestamp::ZERO;
    for _ in 0..100 {
        last = last.max(client.get_ts_n(7).unwrap());
    }
    let window = server.status().unwrap().window_end_ms;
    assert!(window > last.physical_ms);
    drop(client);
    server.shutdown();

    let server = start(dir.path());
    let client = Client::connect(server.local_addr()).unwrap();
    let first = client.get_ts().unwrap();
    assert!(first > last, "{first:?} after {last:?}");
    assert!(first.physical_ms > window, "a restart starts above the saved window {window}: {first:?}");
    // A plain drop (no explicit shutdown) releases the data dir too.
    drop(server);
    let server = start(dir.path());
    assert!(Client::connect(server.local_addr()).unwrap().get_ts().unwrap() > first);
}

#[test]
fn a_malformed_frame_closes_only_its_connection() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let addr = server.local_addr();
    let client = Client::connect(addr).unwrap();
    let before = client.get_ts().unwrap();

    let mut huge = Raw::greeted(addr);
    huge.send_bytes(&[0xff, 0xff, 0xff, 0xff]);
    huge.expect_fatal(ErrorCode::FrameTooLarge);

    let mut unknown = Raw::greeted(addr);
    unknown.send_bytes(&[0, 0, 0, 1, 0x55]);
    unknown.expect_fatal(ErrorCode::UnknownKind);

    let mut short = Raw::greeted(addr);
    short.send_bytes(&[0, 0, 0, 2, 0x10, 0]);
    short.expect_fatal(ErrorCode::Malformed);

    // A frame only a server sends is refused too.
    let mut wrong_side = Raw::greeted(addr);
    wrong_side.send(&[Frame::Ts { id: 1, count: 1, last: Timestamp::ZERO }]);
    wrong_side.expect_fatal(ErrorCode::UnknownKind);

    // The bytes after a bad frame are never read as frames.
    let mut trailing = Raw::greeted(addr);
    let mut bytes = vec![0, 0, 0, 0];
    Frame::GetTs { id: 5, count: 1 }.encode(&mut bytes).unwrap();
    trailing.send_bytes(&bytes);
    trailing.expect_fatal(ErrorCode::Malformed);

    assert!(client.get_ts().unwrap() > before, "other connections keep working");
    assert_eq!(server.stats().errors, 5);
}

#[test]
fn handshake_rules() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_cfg(ServerConfig { cluster_id: 42, ..ServerConfig::new(loopback(), dir.path()) });
    let addr = server.local_addr();

    let mut early = Raw::connect(addr);
    early.send(&[Frame::GetTs { id: 1, count: 1 }]);
    early.expect_fatal(ErrorCode::HandshakeRequired);

    let mut version = Raw::connect(addr);
    version.send(&[Frame::Hello { version: VERSION + 1, cluster_id: 0 }]);
    version.expect_fatal(ErrorCode::UnsupportedVersion);

    let mut magic = Raw::connect(addr);
    let mut hello = Vec::new();
    Frame::Hello { version: VERSION, cluster_id: 0 }.encode(&mut hello).unwrap();
    hello[5] = b'X';
    magic.send_bytes(&hello);
    magic.expect_fatal(ErrorCode::UnsupportedVersion);

    let mut cluster = Raw::connect(addr);
    cluster.send(&[Frame::Hello { version: VERSION, cluster_id: 7 }]);
    cluster.expect_fatal(ErrorCode::ClusterMismatch);

    let mut twice = Raw::connect(addr);
    twice.send(&[Frame::Hello { version: VERSION, cluster_id: 42 }]);
    assert_eq!(
        twice.recv(),
        Some(Frame::Welcome { version: VERSION, cluster_id: 42, node: NodeId(0) }),
        "the server names its cluster and node"
    );
    twice.send(&[Frame::Hello { version: VERSION, cluster_id: 42 }]);
    twice.expect_fatal(ErrorCode::HandshakeRequired);

    let wrong = ClientOptions { cluster_id: 7, ..ClientOptions::default() };
    match Client::connect_with(addr, wrong) {
        Err(e @ ClientError::Server { code: ErrorCode::ClusterMismatch, .. }) => assert!(!e.is_retryable()),
        other => panic!("expected a cluster mismatch, got {other:?}"),
    }
    let right = ClientOptions { cluster_id: 42, ..ClientOptions::default() };
    assert!(Client::connect_with(addr, right).unwrap().get_ts().is_ok());
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let mut raw = Raw::connect(server.local_addr());
    let mut frames = vec![Frame::Hello { version: VERSION, cluster_id: 0 }];
    frames.extend((1..=50).map(|id| Frame::GetTs { id, count: id as u32 }));
    frames.push(Frame::GetStatus { id: 51 });
    frames.push(Frame::GetTs { id: 52, count: 0 });
    frames.push(Frame::GetTs { id: 53, count: MAX_LOGICAL });
    frames.push(Frame::GetTs { id: 54, count: 1 });
    raw.send(&frames);

    assert!(matches!(raw.recv(), Some(Frame::Welcome { .. })));
    let mut prev = Timestamp::ZERO;
    for want in 1..=50u64 {
        match raw.recv() {
            Some(Frame::Ts { id, count, last }) => {
                assert_eq!((id, u64::from(count)), (want, want));
                assert!(last.to_u64() - u64::from(count) >= prev.to_u64(), "ranges are disjoint and rising");
                prev = last;
            }
            other => panic!("expected Ts {want}, got {other:?}"),
        }
    }
    match raw.recv() {
        Some(Frame::Status { id: 51, role: Role::Leader, current, .. }) => assert_eq!(current, prev),
        other => panic!("expected Status, got {other:?}"),
    }
    // Per-request errors answer that request and keep the connection.
    assert!(matches!(raw.recv(), Some(Frame::Error { id: 52, code: ErrorCode::ZeroCount, .. })));
    assert!(matches!(raw.recv(), Some(Frame::Error { id: 53, code: ErrorCode::CountTooLarge, .. })));
    match raw.recv() {
        Some(Frame::Ts { id: 54, last, .. }) => assert!(last > prev),
        other => panic!("expected Ts 54, got {other:?}"),
    }
}

#[test]
fn a_client_leaving_mid_frame_disturbs_nobody() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let addr = server.local_addr();
    let mut half = Raw::greeted(addr);
    let mut bytes = Vec::new();
    Frame::GetTs { id: 1, count: 1 }.encode(&mut bytes).unwrap();
    half.send_bytes(&bytes[..7]);
    drop(half);
    // A connection that never says anything, closed at once.
    drop(TcpStream::connect(addr).unwrap());
    let client = Client::connect(addr).unwrap();
    assert!(client.get_ts().is_ok());
    let stats = server.stats();
    assert_eq!(stats.errors, 0, "nothing to answer a client that left");
    assert_eq!(stats.connections, 3);
}

#[test]
fn startup_errors_are_typed() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());

    // The data dir is locked while a server uses it.
    match Server::start(ServerConfig::new(loopback(), dir.path())) {
        Err(e @ ServerError::DataDirLocked { .. }) => assert!(e.to_string().contains("locked")),
        other => panic!("expected a locked data dir, got {other:?}"),
    }

    // The address is in use.
    let other_dir = tempfile::tempdir().unwrap();
    match Server::start(ServerConfig::new(server.local_addr(), other_dir.path())) {
        Err(ServerError::Bind { addr, .. }) => assert_eq!(addr, server.local_addr()),
        other => panic!("expected an address in use, got {other:?}"),
    }
    server.shutdown();

    // The data dir remembers its cluster.
    let cfg = ServerConfig { cluster_id: 2, ..ServerConfig::new(loopback(), dir.path()) };
    match Server::start(cfg) {
        Err(e @ ServerError::Store { .. }) => assert!(e.to_string().contains("cluster"), "{e}"),
        other => panic!("expected a cluster mismatch, got {other:?}"),
    }

    // A cluster of three needs three peer addresses.
    let cfg =
        ServerConfig { node: NodeConfig::new(NodeId(0), 3), ..ServerConfig::new(loopback(), dir.path()) };
    assert!(matches!(Server::start(cfg), Err(ServerError::Peers { nodes: 3, peers: 0 })));

    let mut node = NodeConfig::single();
    node.oracle.save_interval_ms = 0;
    let cfg = ServerConfig { node, ..ServerConfig::new(loopback(), dir.path()) };
    assert!(matches!(Server::start(cfg), Err(ServerError::Config(_))));
}

#[test]
fn exhausted_logical_clock_is_retried_until_the_window_moves() {
    // Four timestamps per millisecond and a window 20 ms ahead: the clients
    // run into `LogicalExhausted` constantly, and are served as saves extend
    // the window, while the driver saves without blocking GetTS.
    let dir = tempfile::tempdir().unwrap();
    let mut node = NodeConfig::single();
    node.oracle.max_logical = 4;
    node.oracle.save_interval_ms = 20;
    node.oracle.update_interval = Duration::from_millis(2);
    let server = start_cfg(ServerConfig { node, ..ServerConfig::new(loopback(), dir.path()) });
    let opts = ClientOptions {
        deadline: Duration::from_secs(10),
        retry_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(2),
        ..ClientOptions::default()
    };
    let client = Arc::new(Client::connect_with(server.local_addr(), opts).unwrap());
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let client = Arc::clone(&client);
            std::thread::spawn(move || (0..100).map(|_| client.get_ts().unwrap()).collect::<Vec<_>>())
        })
        .collect();
    let mut all = HashSet::new();
    for h in handles {
        let got = h.join().unwrap();
        assert!(got.windows(2).all(|w| w[0] < w[1]), "each thread's timestamps rise");
        all.extend(got);
    }
    assert_eq!(all.len(), 400, "no timestamp handed out twice");
    assert!(server.stats().errors > 0, "the logical clock did run out");
    // A batch larger than the server's per-millisecond capacity is refused, not retried.
    match client.get_ts_n(4) {
        Err(ClientError::Server { code: ErrorCode::CountTooLarge, .. }) => {}
        other => panic!("expected CountTooLarge, got {other:?}"),
    }
}

#[test]
fn nothing_listening_is_a_connect_error() {
    let port = TcpListener::bind(loopback()).unwrap().local_addr().unwrap();
    match Client::connect(port) {
        Err(e @ ClientError::Connect { .. }) => assert!(e.to_string().contains(&port.to_string()), "{e}"),
        other => panic!("expected a connect error, got {other:?}"),
    }
}
