//! Hostile and broken clients against the real server, over raw sockets,
//! while a healthy client on another connection keeps getting timestamps.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use leasetso_core::wire::{Frame, MAGIC, VERSION};
use leasetso_core::{ErrorCode, Role, Timestamp};
use leasetso_tests::{MAX_LOGICAL, RawConn, RecvError, ServerProcess, data_dir, encode};

const CLUSTER: u64 = 42;

/// A client that asks for one timestamp at a time until stopped, checking
/// that each is above the one before.
struct Healthy {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
    handle: JoinHandle<Vec<Timestamp>>,
}

impl Healthy {
    fn start(server: &ServerProcess) -> Healthy {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let addr = server.addr();
        let handle = {
            let (stop, done) = (stop.clone(), done.clone());
            thread::spawn(move || {
                let mut conn = RawConn::open(addr);
                let mut seen: Vec<Timestamp> = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let deadline = Instant::now() + Duration::from_secs(5);
                    let ts = conn.get_ts_retry(1, deadline).expect("the healthy client's GetTS");
                    if let Some(&prev) = seen.last() {
                        assert!(prev < ts, "healthy client went backwards: {prev:?} then {ts:?}");
                    }
                    assert!(ts.logical >= 1, "logical 0 handed out: {ts:?}");
                    seen.push(ts);
                    done.fetch_add(1, Ordering::Relaxed);
                    thread::sleep(Duration::from_millis(1));
                }
                seen
            })
        };
        Healthy { stop, done, handle }
    }

    /// Waits until it has `more` further timestamps: it is not stuck.
    fn wait_progress(&self, more: u64, phase: &str) {
        let target = self.done.load(Ordering::Relaxed) + more;
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.done.load(Ordering::Relaxed) < target {
            assert!(!self.handle.is_finished(), "the healthy client died {phase}");
            assert!(Instant::now() < deadline, "the healthy client made no progress {phase}");
            thread::sleep(Duration::from_millis(2));
        }
    }

    fn finish(self) -> Vec<Timestamp> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap_or_else(|e| std::panic::resume_unwind(e))
    }
}

/// Reads what a server says after something it cannot accept: an Error frame
/// (which must be fatal) then the close, or just the close.
fn expect_fatal_or_close(conn: &mut RawConn, what: &str) -> Option<ErrorCode> {
    match conn.recv() {
        Ok(Frame::Error { code, .. }) => {
            assert!(code.is_fatal(), "{what}: answered with the non-fatal {code:?}");
            conn.expect_closed(what);
            Some(code)
        }
        Ok(frame) => panic!("{what}: answered with {frame:?}"),
        Err(RecvError::Closed) => None,
        Err(RecvError::Io(e))
            if matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted
            ) =>
        {
            None
        }
        Err(e) => panic!("{what}: expected a fatal error or the close, got {e}"),
    }
}

fn raw(server: &ServerProcess) -> RawConn {
    RawConn::connect(server.addr()).expect("connect")
}

fn hello(server: &ServerProcess) -> RawConn {
    let mut conn = raw(server);
    conn.send(&Frame::Hello { version: VERSION, cluster_id: CLUSTER }).unwrap();
    match conn.recv() {
        Ok(Frame::Welcome { version: VERSION, cluster_id: CLUSTER, .. }) => conn,
        other => panic!("handshake: {other:?}"),
    }
}

#[test]
fn bad_input_does_not_disturb_the_server() {
    let dir = data_dir();
    let mut server = ServerProcess::start_with(dir.path(), &["--cluster-id", "42"]);
    server.wait_serving();
    let healthy = Healthy::start(&server);
    healthy.wait_progress(20, "before any bad input");

    // Idle connections, some mid-handshake, stay open throughout.
    let mut idle: Vec<RawConn> = (0..16).map(|_| raw(&server)).collect();
    for conn in idle.iter_mut().step_by(2) {
        conn.send_bytes(&encode(&Frame::Hello { version: VERSION, cluster_id: 0 })[..6]).unwrap();
    }

    // (1) Garbage: an HTTP request.
    let mut conn = raw(&server);
    conn.send_bytes(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    expect_fatal_or_close(&mut conn, "an HTTP request");
    healthy.wait_progress(5, "after garbage");

    // (2) A length prefix of 4 GB: refused from the prefix alone, at once.
    let mut conn = raw(&server);
    let sent = Instant::now();
    conn.send_bytes(&[0xff; 4]).unwrap();
    conn.expect_fatal(ErrorCode::FrameTooLarge, "length 0xFFFFFFFF");
    let took = sent.elapsed();
    assert!(took < Duration::from_secs(2), "FrameTooLarge took {took:?}: the server waited for the body");
    // One byte over the limit, after a handshake.
    let mut conn = hello(&server);
    conn.send_bytes(&[0, 0, 1, 1]).unwrap();
    conn.expect_fatal(ErrorCode::FrameTooLarge, "length 257");
    healthy.wait_progress(5, "after oversized frames");

    // (3) Truncated frames, then the client goes away.
    let get_ts = encode(&Frame::GetTs { id: 1, count: 1 });
    let mut conn = hello(&server);
    conn.send_bytes(&get_ts[..7]).unwrap();
    drop(conn);
    let mut conn = raw(&server);
    conn.send_bytes(&encode(&Frame::Hello { version: VERSION, cluster_id: 0 })[..3]).unwrap();
    drop(conn);
    // Half-closed mid-frame: the server must close its side, not hang on to it.
    let mut conn = hello(&server);
    conn.send_bytes(&get_ts[..9]).unwrap();
    conn.shutdown_write().unwrap();
    expect_fatal_or_close(&mut conn, "EOF in the middle of a frame");
    // Half-closed between frames, after a request: the answer still comes.
    let mut conn = hello(&server);
    conn.send_bytes(&get_ts).unwrap();
    conn.shutdown_write().unwrap();
    match conn.recv() {
        Ok(Frame::Ts { id: 1, count: 1, last }) => assert!(last.logical >= 1),
        other => panic!("GetTs then half-close: expected Ts, got {other:?}"),
    }
    expect_fatal_or_close(&mut conn, "EOF after a whole frame");
    healthy.wait_progress(5, "after truncated frames");

    // (4) An unknown kind byte.
    let mut conn = hello(&server);
    conn.send_bytes(&[0, 0, 0, 1, 0x55]).unwrap();
    conn.expect_fatal(ErrorCode::UnknownKind, "kind 0x55");
    // A known kind with the wrong body size, and an empty frame.
    let mut conn = hello(&server);
    conn.send_bytes(&[0, 0, 0, 2, get_ts[4], 0]).unwrap();
    conn.expect_fatal(ErrorCode::Malformed, "GetTs with a 1-byte body");
    let mut conn = hello(&server);
    conn.send_bytes(&[0, 0, 0, 0]).unwrap();
    conn.expect_fatal(ErrorCode::Malformed, "an empty frame");
    // A frame only servers send.
    let mut conn = hello(&server);
    conn.send(&Frame::Ts { id: 1, count: 1, last: Timestamp::from_u64(1 << 18 | 1) }).unwrap();
    expect_fatal_or_close(&mut conn, "a client sending Ts");
    healthy.wait_progress(5, "after bad kinds");

    // (5) Requests before the handshake, and a second handshake.
    let mut conn = raw(&server);
    conn.send(&Frame::GetTs { id: 1, count: 1 }).unwrap();
    conn.expect_fatal(ErrorCode::HandshakeRequired, "GetTs before Hello");
    let mut conn = hello(&server);
    conn.send(&Frame::Hello { version: VERSION, cluster_id: CLUSTER }).unwrap();
    conn.expect_fatal(ErrorCode::HandshakeRequired, "a second Hello");

    // (6) The wrong cluster; the right one and "any" (0) are welcome.
    let mut conn = raw(&server);
    conn.send(&Frame::Hello { version: VERSION, cluster_id: 7 }).unwrap();
    conn.expect_fatal(ErrorCode::ClusterMismatch, "Hello for cluster 7");
    for cluster_id in [CLUSTER, 0] {
        let mut conn = raw(&server);
        conn.send(&Frame::Hello { version: VERSION, cluster_id }).unwrap();
        match conn.recv() {
            Ok(Frame::Welcome { version: VERSION, cluster_id: CLUSTER, .. }) => {}
            other => panic!("Hello for cluster {cluster_id}: {other:?}"),
        }
    }

    // (7) The wrong version, and the wrong magic.
    let mut conn = raw(&server);
    conn.send(&Frame::Hello { version: VERSION.wrapping_add(98), cluster_id: CLUSTER }).unwrap();
    conn.expect_fatal(ErrorCode::UnsupportedVersion, "Hello with version 99");
    let mut bad_magic = encode(&Frame::Hello { version: VERSION, cluster_id: CLUSTER });
    assert_eq!(bad_magic[5..9], MAGIC);
    bad_magic[5..9].copy_from_slice(b"HTTP");
    let mut conn = raw(&server);
    conn.send_bytes(&bad_magic).unwrap();
    conn.expect_fatal(ErrorCode::UnsupportedVersion, "Hello with the wrong magic");
    healthy.wait_progress(5, "after bad handshakes");

    // (8) Counts that can never be served answer that request only.
    let mut conn = hello(&server);
    let before = conn.get_ts(1).unwrap().expect("GetTs(1)");
    assert_eq!(conn.get_ts(0).unwrap(), Err(ErrorCode::ZeroCount), "count 0");
    let after_zero =
        conn.get_ts(1).unwrap().expect("GetTs(1) after ZeroCount: the connection must stay usable");
    assert!(before < after_zero);
    for count in [MAX_LOGICAL, MAX_LOGICAL + 1, u32::MAX] {
        assert_eq!(conn.get_ts(count).unwrap(), Err(ErrorCode::CountTooLarge), "count {count}");
    }
    // The largest count that fits one millisecond is served, as logical 1..=2^18-1.
    let big = conn.get_ts_retry(MAX_LOGICAL - 1, Instant::now() + Duration::from_secs(5)).unwrap();
    assert_eq!(big.logical, MAX_LOGICAL - 1, "a full millisecond must end at the last logical");
    assert!(big.to_u64() - u64::from(MAX_LOGICAL - 1) >= after_zero.to_u64(), "{after_zero:?} then {big:?}");
    let after_big = conn.get_ts(1).unwrap().expect("GetTs(1) after the largest range");
    assert!(big < after_big);
    healthy.wait_progress(5, "after bad counts");

    // The idle connections did not stall anything; they can still complete.
    let mut first = idle.remove(0);
    first.send_bytes(&encode(&Frame::Hello { version: VERSION, cluster_id: 0 })[6..]).unwrap();
    assert!(matches!(first.recv(), Ok(Frame::Welcome { .. })), "an idle half-handshake completes");
    assert!(first.get_ts(1).unwrap().unwrap() > after_big);
    drop(idle);

    server.assert_running();
    healthy.wait_progress(20, "after all bad input");
    let seen = healthy.finish();
    assert!(seen.len() >= 70, "the healthy client got only {} timestamps", seen.len());
    // A new connection still works and continues above everything seen.
    let mut conn = RawConn::open(server.addr());
    let last = conn.get_ts(1).unwrap().unwrap();
    assert!(last > *seen.last().unwrap() && last > after_big);
    server.stop();
}

#[test]
fn framing_follows_bytes_not_writes() {
    let dir = data_dir();
    let server = ServerProcess::start_serving(dir.path());
    let mut conn = RawConn::connect(server.addr()).unwrap();
    // A handshake dribbled one byte per write.
    for b in encode(&Frame::Hello { version: VERSION, cluster_id: 0 }) {
        conn.send_bytes(&[b]).unwrap();
        thread::sleep(Duration::from_millis(2));
    }
    assert!(matches!(conn.recv(), Ok(Frame::Welcome { version: VERSION, .. })));
    // Requests pipelined in one write are all answered, in order.
    let mut batch = Vec::new();
    for (id, count) in [(10u64, 1u32), (11, 5), (12, 0), (13, 100), (14, MAX_LOGICAL)] {
        batch.extend(encode(&Frame::GetTs { id, count }));
    }
    batch.extend(encode(&Frame::GetStatus { id: 15 }));
    conn.send_bytes(&batch).unwrap();
    // Answers carry the request ids; collect all six, whatever their order.
    let mut answers: Vec<Frame> =
        (0..6).map(|i| conn.recv().unwrap_or_else(|e| panic!("answer {i}: {e}"))).collect();
    answers.sort_by_key(|f| match *f {
        Frame::Ts { id, .. } | Frame::Error { id, .. } | Frame::Status { id, .. } => id,
        _ => 0,
    });
    let mut ranges = Vec::new();
    for (answer, (id, count)) in
        answers[..5].iter().zip([(10u64, 1u32), (11, 5), (12, 0), (13, 100), (14, MAX_LOGICAL)])
    {
        match (*answer, count) {
            (Frame::Error { id: got, code: ErrorCode::ZeroCount, .. }, 0) if got == id => {}
            (Frame::Error { id: got, code: ErrorCode::CountTooLarge, .. }, MAX_LOGICAL) if got == id => {}
            (Frame::Ts { id: got, count: n, last }, _) if got == id && n == count => {
                assert!(last.logical >= count, "range of {count} ending at {last:?}");
                ranges.push((last.to_u64() - u64::from(count) + 1, last.to_u64()));
            }
            _ => panic!("request {id} (count {count}) answered with {answer:?}"),
        }
    }
    ranges.sort();
    assert!(ranges.windows(2).all(|w| w[0].1 < w[1].0), "overlapping ranges {ranges:?}");
    let highest = Timestamp::from_u64(ranges.last().unwrap().1);
    match answers[5] {
        Frame::Status { id: 15, role: Role::Leader, window_end_ms, current, .. } => {
            assert!(current.physical_ms > 0, "a leader reports no current timestamp");
            assert!(window_end_ms > current.physical_ms, "window end {window_end_ms} not above {current:?}");
        }
        other => panic!("request 15 (status): {other:?}"),
    }
    let mut status = RawConn::open(server.addr());
    let (role, window_end_ms, current) = status.status().unwrap();
    assert_eq!(role, Role::Leader);
    assert!(current >= highest, "status reports {current:?} after {highest:?} was handed out");
    assert!(window_end_ms > current.physical_ms, "window end {window_end_ms} not above {current:?}");
    server.stop();
}
