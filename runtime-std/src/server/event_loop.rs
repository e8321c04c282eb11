//! The Redis door served from one event loop, as Redis serves every
//! connection: one thread waits on every socket at once (epoll on Linux,
//! [`Readiness`]) and steps the connection whose bytes arrived.
//!
//! Why not a thread per connection, as the client door: a pipelining Redis
//! client sends a burst, waits for the answers, sends the next; with a
//! thread per connection every burst wakes a thread (a context switch, and
//! on two cores a fight with the client for them), while one loop answers
//! the bursts of many connections in one wake-up. The client door keeps its
//! threads: its operator requests (`ClearPrimary`) wait on the store, which
//! a loop must never do.
//!
//! The protocol is the core's (`RespConn`, through the kit's [`Door`]), the
//! same bytes as the thread-per-connection door and the smol runtime's, as
//! the conformance suite checks. The loop only moves bytes, under the
//! kit's rules: the cap (H1, the kit's `resp_door`), the handshake deadline
//! (H2), the write deadline (H3), and a linger after a fatal answer so the
//! client reads it. Sockets are non-blocking and level-triggered: a
//! connection is read once per wake-up (what a client pipelined arrives in
//! one read and is answered in one write), and one whose answers the client
//! does not take is not read until it does (backpressure).

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use leasetso_core::conn::{LINGER, LINGER_BYTES};
use leasetso_runtime_common::limits::{HANDSHAKE_DEADLINE, WRITE_DEADLINE};
use leasetso_runtime_common::stats::Counters;
use leasetso_runtime_common::{Door, Next};

use crate::server::Shared;
use crate::server::readiness::{Events, Readiness};

/// The listener's key; connection `i` has key `i + 1`.
const LISTENER: usize = 0;
/// How often deadlines (H2, H3, linger) are looked at, at the latest.
const SWEEP: Duration = Duration::from_millis(100);

/// The Redis door's listener and its loop.
#[derive(Debug)]
pub(crate) struct EventDoor {
    listener: Option<TcpListener>,
    local_addr: SocketAddr,
    poller: Arc<Readiness>,
    stopping: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EventDoor {
    /// Binds `addr`; nothing is accepted until [`EventDoor::start`].
    pub(crate) fn bind(addr: SocketAddr) -> io::Result<EventDoor> {
        let listener = TcpListener::bind(addr)?;
        let local_addr = listener.local_addr()?;
        Ok(EventDoor {
            listener: Some(listener),
            local_addr,
            poller: Arc::new(Readiness::new()?),
            stopping: Arc::default(),
            thread: None,
        })
    }

    /// The bound address (the real port when asked for port 0).
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Starts the loop on a thread of its own, serving `shared`'s kit.
    pub(crate) fn start(&mut self, shared: Arc<Shared>) -> io::Result<()> {
        let Some(listener) = self.listener.take() else { return Ok(()) };
        listener.set_nonblocking(true)?;
        let (poller, stopping) = (Arc::clone(&self.poller), Arc::clone(&self.stopping));
        self.thread = Some(thread::Builder::new().name("leasetso-resp".into()).spawn(move || {
            let mut looped =
                Loop { shared: &shared, poller: &poller, listener: &listener, conns: Vec::new(), last_id: 0 };
            if let Err(e) = looped.run(&stopping) {
                tracing::error!(error = %e, "the RESP door's loop failed; the door is closed");
            }
            looped.close_all();
        })?);
        Ok(())
    }

    /// Stops the loop and closes every connection.
    pub(crate) fn stop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        let _ = self.poller.notify();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for EventDoor {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One connection: its socket and its door, and where its output stands.
struct Conn<'a> {
    stream: TcpStream,
    door: Box<dyn Door + Send + 'a>,
    remote: Option<SocketAddr>,
    /// Bytes of the door's out buffer already written.
    written: usize,
    /// The door asked to be stepped again once its output is out (`Flush`).
    step_after_write: bool,
    /// When the connection came (H2).
    born: Instant,
    /// Since when output has waited for the client to read (H3).
    waiting_since: Option<Instant>,
    /// The door's last answer is queued: close once it is out.
    closing: bool,
    /// Lingering after the last answer, until then (or EOF).
    linger: Option<Instant>,
    /// Bytes read and dropped while lingering.
    discarded: usize,
    /// Whether the poller watches for writability too.
    want_write: bool,
}

/// What became of a connection after an event.
enum Fate {
    Open,
    Gone,
}

struct Loop<'a> {
    shared: &'a Shared,
    poller: &'a Readiness,
    listener: &'a TcpListener,
    conns: Vec<Option<Conn<'a>>>,
    /// The last connection id handed out (`CLIENT ID`), never reused.
    last_id: u64,
}

impl<'a> Loop<'a> {
    fn run(&mut self, stopping: &AtomicBool) -> io::Result<()> {
        // The listener outlives its registration: `close_all` deletes it
        // before the loop's owner drops it.
        self.poller.add(self.listener, LISTENER)?;
        let mut events = Events::new();
        let mut swept = Instant::now();
        loop {
            self.poller.wait(&mut events, SWEEP)?;
            if stopping.load(Ordering::SeqCst) || self.shared.is_stopping() {
                return Ok(());
            }
            for event in events.iter() {
                if event.key == LISTENER {
                    self.accept();
                } else {
                    self.on_event(event.key - 1, event.readable, false);
                }
            }
            let now = Instant::now();
            if now.duration_since(swept) >= SWEEP {
                self.sweep(now);
                swept = now;
            }
        }
    }

    /// Accepts every connection waiting, each under the cap (H1).
    fn accept(&mut self) {
        loop {
            let (stream, remote) = match self.listener.accept() {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    leasetso_runtime_common::warn_quiet!(
                        leasetso_runtime_common::quiet::ACCEPT_FAILED,
                        door = "resp",
                        error = %e,
                        "accept failed"
                    );
                    return;
                }
            };
            Counters::bump(&self.shared.counters.connections, 1);
            let slot = self.conns.iter().position(Option::is_none).unwrap_or(self.conns.len());
            self.last_id += 1;
            let Some(door) = self.shared.kit.resp_door(self.last_id, Some(remote)) else { continue };
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            // Answers are small and latency-bound: never wait to coalesce writes.
            let _ = stream.set_nodelay(true);
            // The stream is deleted from the poller before it is dropped
            // (`remove`, `close_all`).
            if self.poller.add(&stream, slot + 1).is_err() {
                continue;
            }
            let conn = Conn {
                stream,
                door,
                remote: Some(remote),
                written: 0,
                step_after_write: false,
                born: Instant::now(),
                waiting_since: None,
                closing: false,
                linger: None,
                discarded: 0,
                want_write: false,
            };
            if slot == self.conns.len() {
                self.conns.push(Some(conn));
            } else {
                self.conns[slot] = Some(conn);
            }
            self.on_event(slot, false, true);
        }
    }

    /// An event on connection `i` (`fresh`: it was just accepted).
    fn on_event(&mut self, i: usize, readable: bool, fresh: bool) {
        let now = self.shared.clock.now();
        let Some(conn) = self.conns.get_mut(i).and_then(Option::as_mut) else { return };
        let fate = serve(conn, now, readable, fresh);
        match fate {
            Fate::Gone => self.remove(i),
            Fate::Open => {
                // Waiting for the client to take answers: watch for room to
                // write only (reading is held back); else for input.
                let want = !conn.door.out().is_empty();
                if want != conn.want_write {
                    conn.want_write = want;
                    if self.poller.modify(&conn.stream, i + 1, want).is_err() {
                        self.remove(i);
                    }
                }
            }
        }
    }

    /// H2, H3 and the linger: connections past their deadline are closed.
    fn sweep(&mut self, now: Instant) {
        for i in 0..self.conns.len() {
            let Some(conn) = self.conns[i].as_ref() else { continue };
            let expired = match conn.linger {
                Some(until) => now >= until,
                None if conn.door.handshaking() && now.duration_since(conn.born) >= HANDSHAKE_DEADLINE => {
                    self.shared.kit.handshake_timed_out(conn.remote);
                    true
                }
                None => conn.waiting_since.is_some_and(|since| now.duration_since(since) >= WRITE_DEADLINE),
            };
            if expired {
                self.remove(i);
            }
        }
    }

    fn remove(&mut self, i: usize) {
        if let Some(conn) = self.conns.get_mut(i).and_then(Option::take) {
            let _ = self.poller.delete(&conn.stream);
            let _ = conn.stream.shutdown(Shutdown::Both);
        }
    }

    fn close_all(&mut self) {
        for i in 0..self.conns.len() {
            self.remove(i);
        }
        let _ = self.poller.delete(self.listener);
    }
}

/// One event on one connection: write what waits, then read once and
/// answer; a fresh connection is stepped first (a refusal, or a TLS door,
/// has something to say before the client does).
fn serve(conn: &mut Conn<'_>, now: leasetso_core::Instant, mut readable: bool, fresh: bool) -> Fate {
    if fresh {
        step(conn, now);
    }
    loop {
        // Output first: nothing more is read or stepped while answers wait
        // for the client to take them.
        if !conn.door.out().is_empty() {
            match write_out(conn) {
                Err(_) => return Fate::Gone,
                Ok(false) => return Fate::Open,
                Ok(true) => {}
            }
        }
        if conn.closing {
            if conn.linger.is_none() {
                // The last answer is out: stop sending, and linger.
                let _ = conn.stream.shutdown(Shutdown::Write);
                conn.linger = Some(Instant::now() + LINGER);
            }
            return discard(conn);
        }
        if conn.step_after_write {
            conn.step_after_write = false;
            step(conn, now);
            continue;
        }
        if !readable {
            return Fate::Open;
        }
        readable = false;
        let room = conn.door.room();
        let read = loop {
            match conn.stream.read(conn.door.input().spare(room)) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Fate::Open,
                Err(_) => return Fate::Gone,
            }
        };
        if read == 0 {
            // The client left, possibly mid-request: nothing to answer, but
            // a clean end (TLS's close_notify), written as far as it goes.
            conn.door.finish();
            let _ = write_out(conn);
            return Fate::Gone;
        }
        conn.door.input().filled(read);
        step(conn, now);
    }
}

/// Steps the door over what was read; what it asks next is noted on the
/// connection (its answers are in the out buffer).
fn step(conn: &mut Conn<'_>, now: leasetso_core::Instant) {
    loop {
        match conn.door.step(now) {
            Next::Admin { id, .. } => {
                // The Redis door asks nothing of the store; a door that did
                // would be told no answer came rather than block the loop.
                conn.door.admin_done(id, None);
            }
            Next::Read => return,
            Next::Flush => {
                conn.step_after_write = true;
                return;
            }
            Next::Close => {
                conn.closing = true;
                return;
            }
        }
    }
}

/// After the last answer: reads and drops what the client still sends
/// (closing with unread input would reset the connection before the answer
/// is read), until EOF or [`LINGER_BYTES`]; the sweep ends it at [`LINGER`].
fn discard(conn: &mut Conn<'_>) -> Fate {
    let mut sink = [0u8; 1024];
    loop {
        match conn.stream.read(&mut sink) {
            Ok(0) => return Fate::Gone,
            Ok(n) => {
                conn.discarded += n;
                if conn.discarded >= LINGER_BYTES {
                    return Fate::Gone;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Fate::Open,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Fate::Gone,
        }
    }
}

/// Writes what the door queued, as far as the socket takes it: `true` once
/// all of it is out (the buffer is emptied), `false` if the rest waits.
fn write_out(conn: &mut Conn<'_>) -> io::Result<bool> {
    let Conn { stream, door, written, waiting_since, .. } = conn;
    let out = door.out();
    while *written < out.len() {
        match stream.write(&out[*written..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => *written += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                waiting_since.get_or_insert_with(Instant::now);
                return Ok(false);
            }
            Err(e) => return Err(e),
        }
    }
    out.clear();
    *written = 0;
    *waiting_since = None;
    Ok(true)
}
