//! The RESP door (`serve --resp ADDR`): the Redis protocol on a listener of
//! its own, so that any language's Redis client is a leasetso client.
//!
//! Like a client connection ([`crate::conn`]), each RESP connection is served
//! on its own thread: it reads whatever bytes have arrived into a fixed
//! buffer, answers every complete command in it in order (so pipelined
//! commands are answered in one write), and reads again. The parser and the
//! replies are the core's ([`leasetso_core::resp`]); the buffers are
//! allocated once per connection, so a command costs no allocation.
//!
//! `TSO [count]` asks the node exactly as a GetTS frame does; a run of
//! pipelined `TSO`s is served under one lock of the node (the clock still
//! read for each), and the server's counters are bumped once per batch, so
//! that 50 connection threads on two cores do not spend their time passing
//! cache lines around. A node that
//! does not serve answers `-NOTLEADER <addr>` with the RESP address the
//! leader advertised in its peer handshake, or `-TRYAGAIN` while nobody
//! serves (or the leader's RESP address is not known here). A protocol
//! violation gets `-ERR Protocol error: ...` and closes this connection only.

use std::collections::HashMap;
use std::io::{self, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use leasetso_core::resp::{
    Action, Command, ErrorReply, MAX_COMMAND_LEN, Reply, ServerInfo, Session, ts_reply,
};
use leasetso_core::{GetTsError, Timestamp};

use crate::io::{linger_close, refill};
use crate::server::{Counters, Shared};

/// Read buffer size: many pipelined commands per read.
const READ_BUF: usize = 16 * 1024;
/// Answers are written out once this many bytes are buffered, even mid-burst.
const WRITE_FLUSH: usize = 16 * 1024;
/// Room for the largest reply after `WRITE_FLUSH` (`INFO`, `HELLO`: a few
/// hundred bytes), so the write buffer never grows.
const REPLY_ROOM: usize = 1024;

/// Open RESP connections, so that shutdown can close them and wait for their threads.
#[derive(Default)]
struct Conns {
    next_id: u64,
    open: HashMap<u64, (TcpStream, Option<JoinHandle<()>>)>,
}

/// The RESP listener of one server: bound before the peers start (its
/// address goes into the peer handshake), started once the node is shared.
pub(crate) struct Door {
    listener: Option<TcpListener>,
    local_addr: SocketAddr,
    advertise: Option<SocketAddr>,
    conns: Arc<Mutex<Conns>>,
    stopping: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain bookkeeping no panic can leave inconsistent.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Door {
    /// Binds `addr`. The address peers hand out is the bound one, or, if
    /// that is a wildcard, the client `advertise` address's IP with the bound
    /// port (`None` without one: a wildcard is never handed out).
    pub(crate) fn bind(addr: SocketAddr, advertise: Option<SocketAddr>) -> io::Result<Door> {
        let listener = TcpListener::bind(addr)?;
        let local_addr = listener.local_addr()?;
        let advertise = if local_addr.ip().is_unspecified() {
            advertise.map(|a| SocketAddr::new(a.ip(), local_addr.port()))
        } else {
            Some(local_addr)
        };
        Ok(Door {
            listener: Some(listener),
            local_addr,
            advertise,
            conns: Arc::default(),
            stopping: Arc::default(),
            acceptor: None,
        })
    }

    /// The address the listener is bound to (the real port when asked for port 0).
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The RESP address peers hand out for this node.
    pub(crate) fn advertise(&self) -> Option<SocketAddr> {
        self.advertise
    }

    /// Starts accepting connections.
    pub(crate) fn start(&mut self, shared: Arc<Shared>) -> io::Result<()> {
        let Some(listener) = self.listener.take() else {
            return Ok(());
        };
        let conns = Arc::clone(&self.conns);
        let stopping = Arc::clone(&self.stopping);
        self.acceptor = Some(
            thread::Builder::new()
                .name("leasetso-resp-accept".into())
                .spawn(move || accept(&shared, &conns, &stopping, listener))?,
        );
        tracing::info!(addr = %self.local_addr, "RESP door open");
        Ok(())
    }

    /// Stops accepting, closes every RESP connection and waits for their threads.
    pub(crate) fn stop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        if let Some(acceptor) = self.acceptor.take() {
            // The acceptor blocks in `accept`; a connection of our own wakes
            // it. If none can be made it is left blocked (it exits with the
            // process) rather than hanging the shutdown.
            if wake(self.local_addr) {
                let _ = acceptor.join();
            }
        }
        let conns = std::mem::take(&mut lock(&self.conns).open);
        for (_, (stream, handle)) in conns {
            // Wakes the connection's blocked read; its thread then exits.
            let _ = stream.shutdown(Shutdown::Both);
            if let Some(handle) = handle {
                let _ = handle.join();
            }
        }
    }
}

impl Drop for Door {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Connects to the listener so that a blocked `accept` returns.
fn wake(addr: SocketAddr) -> bool {
    let mut target = addr;
    if target.ip().is_unspecified() {
        target.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    TcpStream::connect_timeout(&target, Duration::from_secs(1)).is_ok()
}

fn accept(shared: &Arc<Shared>, conns: &Arc<Mutex<Conns>>, stopping: &AtomicBool, listener: TcpListener) {
    for stream in listener.incoming() {
        if stopping.load(Ordering::SeqCst) || shared.is_stopping() {
            break;
        }
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                // Out of descriptors and similar: back off instead of spinning.
                tracing::warn!(error = %e, "RESP accept failed");
                thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        Counters::bump(&shared.counters.connections, 1);
        let peer = stream.peer_addr().ok();
        let Ok(registered) = stream.try_clone() else {
            tracing::warn!(?peer, "cannot register RESP connection; closing it");
            continue;
        };
        let id = {
            let mut conns = lock(conns);
            conns.next_id += 1;
            let id = conns.next_id;
            conns.open.insert(id, (registered, None));
            id
        };
        tracing::debug!(?peer, id, "RESP client connected");
        let conn_shared = Arc::clone(shared);
        let conn_registry = Arc::clone(conns);
        let spawned = thread::Builder::new().name("leasetso-resp".into()).spawn(move || {
            serve(&conn_shared, stream, id);
            lock(&conn_registry).open.remove(&id);
            tracing::debug!(?peer, id, "RESP client disconnected");
        });
        let mut conns = lock(conns);
        match spawned {
            // If the thread already ended it removed its entry; the handle then just drops.
            Ok(handle) => {
                if let Some(entry) = conns.open.get_mut(&id) {
                    entry.1 = Some(handle);
                }
            }
            Err(e) => {
                tracing::warn!(?peer, error = %e, "cannot start a RESP connection thread; closing it");
                if let Some((stream, _)) = conns.open.remove(&id) {
                    let _ = stream.shutdown(Shutdown::Both);
                }
            }
        }
    }
}

/// What one batch did, for the server's counters: bumped once per batch.
#[derive(Default)]
struct Tally {
    get_ts_requests: u64,
    timestamps: u64,
    errors: u64,
}

impl Tally {
    fn flush(&mut self, shared: &Shared) {
        let counters = &shared.counters;
        for (counter, n) in [
            (&counters.get_ts_requests, self.get_ts_requests),
            (&counters.timestamps, self.timestamps),
            (&counters.errors, self.errors),
        ] {
            if n > 0 {
                Counters::bump(counter, n);
            }
        }
        *self = Tally::default();
    }
}

/// Serves `stream` until the client leaves or quits, breaks the protocol,
/// or the server stops.
fn serve(shared: &Shared, stream: TcpStream, id: u64) {
    // Timestamps are small and latency-bound: never wait to coalesce writes.
    let _ = stream.set_nodelay(true);
    let info = ServerInfo { node: shared.node_id, nodes: shared.nodes };
    let mut session = Session::new(id);
    let mut out: Vec<u8> = Vec::with_capacity(WRITE_FLUSH + REPLY_ROOM);
    let mut tally = Tally::default();
    let mut buf = vec![0u8; READ_BUF];
    let (mut start, mut end) = (0usize, 0usize);
    loop {
        // Answer every complete command already buffered.
        let close = loop {
            match Command::parse(&buf[start..end]) {
                Ok(Some((command, used))) => {
                    start += used;
                    match session.handle(command, &info) {
                        Action::Nothing => {}
                        Action::Reply(reply) => send(&mut tally, &mut out, &reply),
                        Action::Close(reply) => {
                            send(&mut tally, &mut out, &reply);
                            break true;
                        }
                        Action::GetTs { count } => {
                            start += tso_run(shared, count, &buf[start..end], &mut out, &mut tally);
                        }
                    }
                    if out.len() >= WRITE_FLUSH && flush(&stream, &mut out).is_err() {
                        return;
                    }
                }
                Ok(None) => break false,
                Err(e) => {
                    tracing::debug!(id, error = %e, "RESP protocol error; closing the connection");
                    send(&mut tally, &mut out, &Reply::Error(ErrorReply::Protocol(e)));
                    break true;
                }
            }
        };
        tally.flush(shared);
        if flush(&stream, &mut out).is_err() {
            return;
        }
        if close || shared.is_stopping() {
            linger_close(&stream);
            return;
        }
        match refill(&stream, &mut buf, &mut start, &mut end, MAX_COMMAND_LEN) {
            // The client left, possibly mid-command: nothing to answer.
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// Answers `TSO count`, and the `TSO`s that follow it in `rest`, under one
/// lock of the node; stops at the first other command, the first error, or
/// a full write buffer. Returns the bytes of `rest` it consumed.
fn tso_run(shared: &Shared, count: u32, rest: &[u8], out: &mut Vec<u8>, tally: &mut Tally) -> usize {
    let mut used = 0;
    let run = shared.with_node(|node| {
        let mut count = count;
        loop {
            tally.get_ts_requests += 1;
            // The clock is read under the lock, for every TSO: the lease
            // check uses a time no earlier than the moment of handing out.
            match node.get_ts(count, shared.clock.now()) {
                Ok(last) => {
                    tally.timestamps += u64::from(count);
                    send(tally, out, &ts_reply(Ok(last), shared.node_id, |_| None));
                }
                Err(e) => return Err(e),
            }
            if out.len() >= WRITE_FLUSH {
                return Ok(());
            }
            // `Session::handle` turns a TSO into nothing but this request.
            match Command::parse(&rest[used..]) {
                Ok(Some((Command::Tso { count: next }, n))) => {
                    used += n;
                    count = next;
                }
                _ => return Ok(()),
            }
        }
    });
    let result: Result<Timestamp, Option<GetTsError>> = match run {
        Some(Ok(())) => return used,
        Some(Err(e)) => Err(Some(e)),
        // The node is not built yet (it learns its restart counter from
        // its peers) or poisoned: `get_ts` tells which.
        None => {
            tally.get_ts_requests += 1;
            shared.get_ts(count)
        }
    };
    // Outside the node's lock: the leader's RESP address is behind another.
    let reply = match result {
        Ok(last) => {
            tally.timestamps += u64::from(count);
            ts_reply(Ok(last), shared.node_id, |_| None)
        }
        Err(Some(e)) => ts_reply(Err(e), shared.node_id, |leader| {
            shared.net.as_ref().and_then(|net| net.resp_addr(leader))
        }),
        Err(None) => Reply::Error(ErrorReply::Internal),
    };
    send(tally, out, &reply);
    used
}

fn send(tally: &mut Tally, out: &mut Vec<u8>, reply: &Reply<'_>) {
    if let Reply::Error(_) = reply {
        tally.errors += 1;
    }
    // `out` is a `Vec`, which grows as needed: encoding into it cannot fail.
    let _ = reply.encode(out);
}

fn flush(mut stream: &TcpStream, out: &mut Vec<u8>) -> io::Result<()> {
    if out.is_empty() {
        return Ok(());
    }
    let result = stream.write_all(out);
    out.clear();
    result
}
