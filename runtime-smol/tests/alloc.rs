//! Item 4 of issue 16: zero allocations per GetTS on the smol server path
//! once a connection is set up.
//!
//! A counting global allocator wraps the system's. A raw blocking client on
//! the test thread (a fixed buffer, a std socket) runs a loopback request
//! loop against an in-process smol server; after a warm-up, the
//! allocations made during many request/reply round trips are counted on
//! the thread that polls `Server::run`, where every server task runs (the
//! connection task with its `ServerConn` session, the driver, the node under
//! its lock): none may happen there per request.
//!
//! The server is driven by `futures_lite::future::block_on`, so async-io's
//! reactor runs on its own thread. Its allocations are counted apart and
//! printed, not bounded: async-io 2 collects the wakers of each reactor
//! tick into a fresh `Vec` (`ReactorLock::react`), and async-executor's
//! unbounded run queue allocates a block every 31 wake-ups; both are per
//! wake-up of the dependency's reactor, not of leasetso's path, and a
//! pipelining client amortises them over many requests per wake-up.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};

use std::time::Duration;

use leasetso_core::Frame;
use leasetso_core::wire::VERSION;
use leasetso_smol::{Server, ServerConfig};

struct Counting;

/// Allocations on the thread that runs the server's tasks.
static SERVER: AtomicU64 = AtomicU64::new(0);
/// Allocations anywhere else (the reactor thread, the store thread).
static OTHER: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Set on the thread that polls `Server::run`.
    static ON_SERVER: Cell<bool> = const { Cell::new(false) };
}

fn count() {
    // `try_with`: a thread being torn down has no thread-locals left.
    if ON_SERVER.try_with(Cell::get).unwrap_or(false) {
        SERVER.fetch_add(1, Ordering::Relaxed);
    } else {
        OTHER.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded unchanged to the system allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller's contract is passed on as it is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Sends one frame and reads one whole reply frame into `buf`; returns it.
fn round_trip(stream: &mut TcpStream, request: &[u8], buf: &mut [u8; 512]) -> Frame {
    stream.write_all(request).unwrap();
    let mut have = 0;
    loop {
        if let Some((frame, _)) = Frame::decode(&buf[..have]).unwrap() {
            return frame;
        }
        let n = stream.read(&mut buf[have..]).unwrap();
        assert!(n > 0, "server closed");
        have += n;
    }
}

#[test]
fn get_ts_allocates_nothing_on_the_smol_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::bind(ServerConfig::new("127.0.0.1:0".parse().unwrap(), dir.path())).unwrap();
    let handle = server.handle();
    let addr = server.local_addr();
    let thread = std::thread::spawn(move || {
        ON_SERVER.with(|on| on.set(true));
        futures_lite::future::block_on(server.run()).unwrap();
    });
    assert!(futures_lite::future::block_on(handle.wait_serving(Duration::from_secs(5))), "never served");
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_nodelay(true).unwrap();
    let mut buf = [0u8; 512];
    let mut hello = Vec::new();
    Frame::Hello { version: VERSION, cluster_id: 0 }.encode(&mut hello).unwrap();
    assert!(matches!(round_trip(&mut stream, &hello, &mut buf), Frame::Welcome { .. }));
    // The request is encoded before counting; the loop reuses it.
    let mut request = Vec::new();
    Frame::GetTs { id: 1, count: 1 }.encode(&mut request).unwrap();
    for _ in 0..2_000 {
        assert!(matches!(round_trip(&mut stream, &request, &mut buf), Frame::Ts { .. }));
    }
    let rounds = 20_000u64;
    let (server0, other0) = (SERVER.load(Ordering::SeqCst), OTHER.load(Ordering::SeqCst));
    for _ in 0..rounds {
        let reply = round_trip(&mut stream, &request, &mut buf);
        assert!(matches!(reply, Frame::Ts { count: 1, .. }), "{reply:?}");
    }
    let on_server = SERVER.load(Ordering::SeqCst) - server0;
    let other = OTHER.load(Ordering::SeqCst) - other0;
    println!(
        "{rounds} GetTS round trips: {on_server} allocations on the server's thread, {other} elsewhere (reactor)"
    );
    drop(stream);
    handle.stop();
    thread.join().unwrap();
    // The driver's own wake-ups (the node's timers: lease renewals, window
    // updates, a few dozen a second) allocate a channel listener now and
    // then, whatever the load; a per-request allocation would be `rounds`.
    assert!(on_server < rounds / 200, "{on_server} allocations on the server's thread in {rounds} GetTS");
}
