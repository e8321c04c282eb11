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
//! drop: it closes the listener and every connection, and joins its threads
//! (the plumbing of the delaying proxy, [`super::proxy::Listening`]).

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use leasetso_core::wire::Frame;

use super::proxy::{Listening, Plumbing};

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
    plumbing: Arc<Plumbing>,
    connections: AtomicU64,
    answers: AtomicU64,
    served: AtomicU64,
    max_in_flight: AtomicI64,
    counts: Mutex<Vec<u32>>,
}

/// A running wire tap in front of one server; stopped on drop.
pub struct Tap {
    listening: Listening,
    shared: Arc<Shared>,
}

impl Tap {
    /// A tap on `127.0.0.1:<free port>` forwarding to `target`.
    pub fn start(target: SocketAddr) -> io::Result<Tap> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let shared = Arc::new(Shared::default());
        let on_accept = {
            let shared = Arc::clone(&shared);
            move |client| accepted(client, target, &shared)
        };
        let listening = Listening::start(listener, "tap", Arc::clone(&shared.plumbing), on_accept)?;
        Ok(Tap { listening, shared })
    }

    /// The address clients connect to instead of the server's.
    pub fn addr(&self) -> SocketAddr {
        self.listening.addr()
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

/// Connects `client`'s upstream (on the acceptor thread: the target is a
/// local server) and starts decoding and forwarding both directions.
fn accepted(client: TcpStream, target: SocketAddr, shared: &Arc<Shared>) {
    // A target that refuses: close the accepted connection, which is
    // what the client would have seen without the tap.
    let Ok(upstream) = TcpStream::connect_timeout(&target, CONNECT_TIMEOUT) else { return };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    shared.connections.fetch_add(1, Ordering::SeqCst);
    let (Ok(to_client), Ok(to_upstream)) = (client.try_clone(), upstream.try_clone()) else { return };
    shared.plumbing.forward(client, upstream, |client, upstream| {
        let in_flight = Arc::new(AtomicI64::new(0));
        let (s, f) = (Arc::clone(shared), Arc::clone(&in_flight));
        shared.plumbing.spawn("tap-up", move || pump(client, to_upstream, Direction::Up, &s, &f));
        let s = Arc::clone(shared);
        shared.plumbing.spawn("tap-down", move || pump(upstream, to_client, Direction::Down, &s, &in_flight));
    });
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
