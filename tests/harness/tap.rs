//! A wire tap: a TCP proxy that decodes the client protocol passing through
//! it and counts what a client puts on the wire.
//!
//! The conformance suite runs the same client checks against servers in
//! other processes, whose counters it cannot read; what it wants to know
//! about a client (did it merge its callers into fewer requests, did no
//! request carry more than its batch cap, did it keep several requests in
//! flight on one connection) is visible on the wire. Every accepted
//! connection is forwarded to the target unchanged, and each direction is
//! decoded frame by frame on the side:
//!
//! * client → server: each `GetTs` counts as a request, its `count` is
//!   recorded, and the connection's requests in flight go up by one
//!   *before* the frame is forwarded;
//! * server → client: each answer to a request (`Ts`, `Status`, `Primary`,
//!   or an `Error` of a code below 16) takes one off *before* it is
//!   forwarded.
//!
//! So the tap sees a request from after the client sent it until before
//! the client read its answer: the number in flight it observes is never
//! more than the client really had, and a maximum above 1 proves the client
//! pipelines. Bytes that do not decode stop the decoding of that direction
//! (they are still forwarded: the server judges them). The tap stops on
//! drop: it closes the listener and every connection, and joins its threads.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use leasetso_core::wire::Frame;

/// How often the acceptor looks at the stop flag while nobody connects.
const ACCEPT_POLL: Duration = Duration::from_millis(5);
/// How long the upstream connect may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// What the tap counted since it started (or since [`Tap::reset`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TapCounts {
    /// Connections accepted.
    pub connections: u64,
    /// `GetTs` frames sent by clients.
    pub get_ts: u64,
    /// Their counts, in the order they passed (all connections together).
    pub counts: Vec<u32>,
    /// Answers to requests sent by the server.
    pub answers: u64,
    /// The timestamps its `Ts` answers carried, all together.
    pub served: u64,
    /// The most requests one connection had in flight at once.
    pub max_in_flight: i64,
}

impl TapCounts {
    /// The timestamps asked for, all requests together.
    pub fn requested(&self) -> u64 {
        self.counts.iter().map(|&c| u64::from(c)).sum()
    }
}

#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    connections: AtomicU64,
    answers: AtomicU64,
    served: AtomicU64,
    max_in_flight: AtomicI64,
    counts: Mutex<Vec<u32>>,
    /// A clone of every socket the tap holds, to shut them down on drop.
    sockets: Mutex<Vec<TcpStream>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Shared {
    fn spawn(&self, name: &str, f: impl FnOnce() + Send + 'static) {
        let handle = thread::Builder::new().name(name.into()).spawn(f).expect("spawn a tap thread");
        self.threads.lock().unwrap_or_else(PoisonError::into_inner).push(handle);
    }
}

/// A running wire tap in front of one server; stopped on drop.
pub struct Tap {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl Tap {
    /// A tap on `127.0.0.1:<free port>` forwarding to `target`.
    pub fn start(target: SocketAddr) -> io::Result<Tap> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let shared = Arc::new(Shared::default());
        let acceptor = {
            let shared = Arc::clone(&shared);
            thread::Builder::new()
                .name(format!("tap-accept-{}", addr.port()))
                .spawn(move || accept_loop(listener, target, shared))?
        };
        Ok(Tap { addr, shared, acceptor: Some(acceptor) })
    }

    /// The address clients connect to instead of the server's.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What it counted so far.
    pub fn counts(&self) -> TapCounts {
        let counts = self.shared.counts.lock().unwrap_or_else(PoisonError::into_inner).clone();
        TapCounts {
            connections: self.shared.connections.load(Ordering::SeqCst),
            get_ts: counts.len() as u64,
            counts,
            answers: self.shared.answers.load(Ordering::SeqCst),
            served: self.shared.served.load(Ordering::SeqCst),
            max_in_flight: self.shared.max_in_flight.load(Ordering::SeqCst),
        }
    }

    /// Forgets what it counted (connections stay open; their requests in
    /// flight now are still tracked).
    pub fn reset(&self) {
        self.shared.connections.store(0, Ordering::SeqCst);
        self.shared.answers.store(0, Ordering::SeqCst);
        self.shared.served.store(0, Ordering::SeqCst);
        self.shared.max_in_flight.store(0, Ordering::SeqCst);
        self.shared.counts.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        // No socket is added any more: shutting them all down ends every
        // blocked read, and so every thread.
        for socket in self.shared.sockets.lock().unwrap_or_else(PoisonError::into_inner).drain(..) {
            let _ = socket.shutdown(Shutdown::Both);
        }
        let threads: Vec<_> =
            self.shared.threads.lock().unwrap_or_else(PoisonError::into_inner).drain(..).collect();
        for handle in threads {
            let _ = handle.join();
        }
    }
}

fn accept_loop(listener: TcpListener, target: SocketAddr, shared: Arc<Shared>) {
    while !shared.stop.load(Ordering::SeqCst) {
        let client = match listener.accept() {
            Ok((client, _)) => client,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                thread::sleep(ACCEPT_POLL);
                continue;
            }
            Err(_) => {
                thread::sleep(ACCEPT_POLL);
                continue;
            }
        };
        // A target that refuses: close the accepted connection, which is
        // what the client would have seen without the tap.
        let Ok(upstream) = TcpStream::connect_timeout(&target, CONNECT_TIMEOUT) else { continue };
        if client.set_nonblocking(false).is_err() {
            continue;
        }
        let _ = client.set_nodelay(true);
        let _ = upstream.set_nodelay(true);
        shared.connections.fetch_add(1, Ordering::SeqCst);
        let mut sockets = shared.sockets.lock().unwrap_or_else(PoisonError::into_inner);
        let clones = (client.try_clone(), client.try_clone(), upstream.try_clone(), upstream.try_clone());
        let (Ok(c1), Ok(c2), Ok(u1), Ok(u2)) = clones else { continue };
        sockets.extend([c1, u1]);
        drop(sockets);
        let in_flight = Arc::new(AtomicI64::new(0));
        let (s, f) = (Arc::clone(&shared), Arc::clone(&in_flight));
        shared.spawn("tap-up", move || pump(client, u2, Direction::Up, &s, &f));
        let s = Arc::clone(&shared);
        shared.spawn("tap-down", move || pump(upstream, c2, Direction::Down, &s, &in_flight));
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// Client to server.
    Up,
    /// Server to client.
    Down,
}

/// Forwards `from` to `to`, counting the frames of `direction` before each
/// chunk is written on.
fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    direction: Direction,
    shared: &Shared,
    in_flight: &AtomicI64,
) {
    let mut chunk = vec![0u8; 16 * 1024];
    let mut pending: Vec<u8> = Vec::new();
    let mut decoding = true;
    loop {
        let n = match from.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if decoding {
            pending.extend_from_slice(&chunk[..n]);
            let mut used = 0;
            loop {
                match Frame::decode(&pending[used..]) {
                    Ok(Some((frame, len))) => {
                        used += len;
                        note(frame, direction, shared, in_flight);
                    }
                    Ok(None) => break,
                    Err(_) => {
                        decoding = false;
                        break;
                    }
                }
            }
            pending.drain(..used);
        }
        if to.write_all(&chunk[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}

fn note(frame: Frame, direction: Direction, shared: &Shared, in_flight: &AtomicI64) {
    match (direction, frame) {
        (Direction::Up, Frame::GetTs { count, .. }) => {
            shared.counts.lock().unwrap_or_else(PoisonError::into_inner).push(count);
            let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            shared.max_in_flight.fetch_max(now, Ordering::SeqCst);
        }
        (Direction::Up, Frame::GetStatus { .. } | Frame::ReadPrimary { .. } | Frame::ClearPrimary { .. }) => {
            let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            shared.max_in_flight.fetch_max(now, Ordering::SeqCst);
        }
        (Direction::Down, Frame::Ts { count, .. }) => {
            in_flight.fetch_sub(1, Ordering::SeqCst);
            shared.served.fetch_add(u64::from(count), Ordering::SeqCst);
            shared.answers.fetch_add(1, Ordering::SeqCst);
        }
        (Direction::Down, Frame::Status { .. } | Frame::Primary { .. }) => {
            in_flight.fetch_sub(1, Ordering::SeqCst);
            shared.answers.fetch_add(1, Ordering::SeqCst);
        }
        (Direction::Down, Frame::Error { code, .. }) if !code.is_fatal() => {
            in_flight.fetch_sub(1, Ordering::SeqCst);
            shared.answers.fetch_add(1, Ordering::SeqCst);
        }
        _ => {}
    }
}
