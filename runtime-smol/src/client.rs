//! The async client: many callers, one connection, several requests in flight.
//!
//! Every protocol decision is the core's [`ClientSession`]: merging
//! concurrent callers into one request (up to [`ClientOptions::max_batch`]),
//! splitting the reply's range among them, keeping up to
//! [`ClientOptions::max_in_flight`] requests outstanding, matching replies,
//! following leader hints and backing off. This module moves bytes and wakes
//! callers.
//!
//! # Who drives the connection
//!
//! No task is spawned (the API names no executor): the callers drive the
//! connection themselves, one at a time. Three locks, each held briefly and
//! never across an `.await` but the socket's:
//! - `entry`, a short `std::sync::Mutex` that a caller takes once per call:
//!   it appends its call to a list of new calls and learns whether it holds
//!   the driver role (nobody held it) or must wake a driver waiting to send;
//! - `state`, the session and the calls in it, taken by the driver only;
//! - each call's [`Cell`], where the driver leaves the answer and the caller
//!   finds it.
//!
//! So a caller never waits on the lock the driver holds while it hands out a
//! batch of answers: with many callers on two cores, that wait (a futex
//! sleep, then a wake across cores) was what the callers' time went to.
//!
//! The driver moves the new calls into the session, writes what the session
//! has to send, reads replies, feeds them in, leaves every answer in its
//! cell and wakes exactly that caller's task (after releasing the lock), and
//! returns once its own call is done, handing the role to one caller still
//! waiting (one wake per hand-off, not one per caller). So one caller alone
//! pays no cross-task wake at all, and many callers wake only the tasks
//! whose answers arrived.
//!
//! The executor is the caller's. A call costs the client a few µs, so
//! callers on one executor thread are served faster than callers spread
//! over one thread per core, up to a few hundred of them: spread, each
//! thread idles between replies and every reply pays for waking it
//! (BENCHMARKS.md section 20).
//!
//! A driver may be cancelled (its future dropped) at any `.await`; every
//! I/O step is cancel-safe: a connect in progress is redone by the next
//! driver, a write goes out through single `write` calls whose progress is
//! recorded, and a read either delivered bytes or did nothing.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use async_net::TcpStream;
use futures_lite::{AsyncReadExt, AsyncWriteExt, future};
use leasetso_core::client::{Action, Answer, Broken, Call, CallError, ClientSession, ConnState};
use leasetso_core::wire::FRAME_ROOM;
use leasetso_core::{Ballot, NodeId, Ticket, Timestamp};
use leasetso_runtime_common::client::TicketMap;
use leasetso_runtime_common::lock;
use leasetso_runtime_common::tls::{TlsError, TlsPipe, TlsSession, into_tls_error, is_tls_alert};

pub use leasetso_runtime_common::client::{ClientOptions, MAX_COUNT, NodeStatus, parse_seeds};

use crate::clock::Clock;
use crate::error::ClientError;

/// Bytes read per read call: many pipelined replies at once.
const READ_BUF: usize = 4 * 1024;
/// Bytes the session encodes into per write.
const WRITE_BUF: usize = 4 * 1024;

/// How a connection failed, as this runtime carries it through the session.
#[derive(Clone, Debug)]
enum Transport {
    Io(Arc<io::Error>),
    Closed,
    ConnectTimeout(Duration),
    /// A plaintext client read a TLS alert: the server requires TLS.
    TlsRequired,
    Tls(Arc<TlsError>),
}

type Session = ClientSession<Transport>;

/// Whether a caller's answer is in: a timestamp inline, anything else (a
/// status, a registration, an error) boxed, so the common cell stays small.
#[derive(Debug, Default)]
enum Held {
    #[default]
    Waiting,
    Ts(Timestamp),
    Rare(Box<Result<Answer, ClientError>>),
}

/// What one call's caller and the driver share. The driver leaves the
/// answer (or names the caller the next driver) and wakes its task; the
/// caller takes the answer. Lock order: `state`, then `entry`, then a cell;
/// a cell's lock is never held while taking another lock.
#[derive(Debug, Default)]
struct Cell(Mutex<Slot>);

#[derive(Debug, Default)]
struct Slot {
    held: Held,
    /// The caller's task, woken when the answer or the role comes.
    waker: Option<Waker>,
    /// The previous driver left and named this caller the next one.
    drive: bool,
    /// The caller left: nothing is delivered to it nor is it named driver.
    gone: bool,
}

impl Slot {
    /// The answer, if in, taken.
    fn take(&mut self) -> Option<Result<Answer, ClientError>> {
        match std::mem::take(&mut self.held) {
            Held::Waiting => None,
            Held::Ts(ts) => Some(Ok(Answer::Ts(ts))),
            Held::Rare(r) => Some(*r),
        }
    }

    /// Whether it can take the driver role: its caller waits for an answer.
    fn waiting(&self) -> bool {
        !self.gone && !self.drive && matches!(self.held, Held::Waiting)
    }
}

/// The calls queued since the driver last took them, and the role.
struct Entry {
    /// New calls, moved into the session by the driver at its next step.
    /// Swapped with [`State::spare`]: both keep their capacity.
    calls: Vec<(Call, Arc<Cell>)>,
    /// Some task holds the driver role or has been named for it. Invariant:
    /// while a caller waits for an answer, this is true (see
    /// [`CallGuard`]'s drop and [`hand_off`]).
    driving: bool,
    /// The driver's task while it waits on the socket or a timer and a
    /// request could be sent now: the first caller to queue a call wakes it.
    driver: Option<Waker>,
}

/// The session and the calls in it: the driver's alone.
struct State {
    session: Session,
    /// The cells of the calls in the session, by ticket.
    cells: TicketMap<Arc<Cell>>,
    spare: Vec<(Call, Arc<Cell>)>,
    /// The last ticket queued: the role goes to it first, as its answer
    /// comes last and its driver so lasts longest.
    last: Option<Ticket>,
}

impl State {
    /// Moves the calls queued in `entry` into the session (the entry lock
    /// is held only for the swap).
    fn take_calls(&mut self, entry: &Mutex<Entry>, now: leasetso_core::Instant) {
        std::mem::swap(&mut lock(entry).calls, &mut self.spare);
        self.admit(now);
    }

    /// Queues the calls in `spare` in the session.
    fn admit(&mut self, now: leasetso_core::Instant) {
        let State { session, cells, spare, last } = self;
        for (call, cell) in spare.drain(..) {
            let ticket = session.push_call(call, now);
            cells.insert(ticket, cell);
            *last = Some(ticket);
        }
    }
}

/// The socket and what is half done on it (see "Who drives the connection").
struct Io {
    stream: Option<TcpStream>,
    /// TLS over `stream`, when the options ask for it.
    tls: Option<Box<TlsPipe>>,
    /// Nothing was read on this connection yet (a plaintext client checks
    /// the first bytes for a TLS alert).
    fresh: bool,
    /// A connect the session asked for and no driver finished yet.
    connect: Option<SocketAddr>,
    out: Box<[u8; WRITE_BUF]>,
    out_start: usize,
    out_end: usize,
    buf: Box<[u8; READ_BUF]>,
    /// Wakes the driver for the session's next timeout. Kept armed across
    /// steps and moved only when the deadline comes earlier: arming an
    /// async-io timer wakes its reactor thread, which per request would
    /// cost more than the request.
    timer: async_io::Timer,
    /// When `timer` fires, if it is armed.
    armed: Option<std::time::Instant>,
    /// The tasks whose answers a step delivered, woken once the state lock
    /// is released (so the woken callers do not queue on it behind the
    /// driver). Reused: its capacity stays.
    wake: Vec<Waker>,
}

struct Inner {
    state: Mutex<State>,
    entry: Mutex<Entry>,
    io: async_lock::Mutex<Io>,
    clock: Clock,
    opts: ClientOptions,
}

/// An async leasetso client; `Clone`, `Send` and `Sync`: share it across
/// tasks. Clones share one connection and one session.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("addr", &self.server_addr()).finish()
    }
}

impl Client {
    /// Connects to the first of `seeds` that completes the handshake (one
    /// pass over them). Later calls follow leader hints from there.
    pub async fn connect(seeds: &[SocketAddr], opts: ClientOptions) -> Result<Client, ClientError> {
        // Unless the options say otherwise, the core's default (two), so
        // callers arriving while a request is out go at once.
        let in_flight = leasetso_core::ClientConfig::default().max_in_flight;
        let mut session: Session = opts.session(seeds, in_flight)?;
        session.open(0);
        let inner = Arc::new(Inner {
            state: Mutex::new(State {
                session,
                cells: TicketMap::default(),
                spare: Vec::with_capacity(64),
                last: None,
            }),
            // The connecting task below is the driver until it returns.
            entry: Mutex::new(Entry { calls: Vec::with_capacity(64), driving: true, driver: None }),
            io: async_lock::Mutex::new(Io {
                stream: None,
                tls: None,
                fresh: true,
                connect: None,
                out: Box::new([0; WRITE_BUF]),
                out_start: 0,
                out_end: 0,
                buf: Box::new([0; READ_BUF]),
                timer: async_io::Timer::never(),
                armed: None,
                wake: Vec::with_capacity(64),
            }),
            clock: Clock::new(),
            opts,
        });
        let client = Client { inner };
        let mut io = client.inner.io.lock().await;
        let opened = client
            .drive(&mut io, |st| {
                if st.session.opening() {
                    return None;
                }
                Some(match st.session.state() {
                    ConnState::Ready { .. } => Ok(()),
                    _ => Err(st.session.last_error().cloned().map_or(ClientError::NoSeeds, convert)),
                })
            })
            .await;
        drop(io);
        // No clone exists yet, so no caller waits: the role goes back unheld.
        lock(&client.inner.entry).driving = false;
        opened?;
        Ok(client)
    }

    /// The options the client was made with.
    pub fn options(&self) -> &ClientOptions {
        &self.inner.opts
    }

    /// The server the client talks to now (it moves with leader hints).
    pub fn server_addr(&self) -> SocketAddr {
        lock(&self.inner.state).session.addr()
    }

    /// Requests outstanding on the connection now (at most
    /// [`ClientOptions::max_in_flight`]).
    pub fn in_flight(&self) -> usize {
        lock(&self.inner.state).session.in_flight()
    }

    /// One timestamp.
    pub async fn get_ts(&self) -> Result<Timestamp, ClientError> {
        self.get_ts_n(1).await
    }

    /// `count` consecutive timestamps in one physical millisecond; returns
    /// the last (the range is `last - count + 1 ..= last` in the logical
    /// part). Concurrent calls are merged into one request.
    pub async fn get_ts_n(&self, count: u32) -> Result<Timestamp, ClientError> {
        match self.call(Call::Ts { count }).await? {
            Answer::Ts(ts) => Ok(ts),
            _ => Err(ClientError::Unexpected { addr: self.server_addr(), what: "not a timestamp" }),
        }
    }

    /// The status of the node talked to now.
    pub async fn status(&self) -> Result<NodeStatus, ClientError> {
        match self.call(Call::Status).await? {
            Answer::Status(status) => Ok(status),
            _ => Err(ClientError::Unexpected { addr: self.server_addr(), what: "not a status" }),
        }
    }

    /// The primary registration on the replica of the node talked to.
    pub async fn read_primary(&self) -> Result<Option<(NodeId, Ballot)>, ClientError> {
        self.primary(Call::ReadPrimary).await
    }

    /// Clears the registration `(node, tag)` on the replica of the node
    /// talked to, if it is exactly that; returns what the replica holds after.
    pub async fn clear_primary(
        &self,
        node: NodeId,
        tag: Ballot,
    ) -> Result<Option<(NodeId, Ballot)>, ClientError> {
        self.primary(Call::ClearPrimary { node, tag }).await
    }

    async fn primary(&self, call: Call) -> Result<Option<(NodeId, Ballot)>, ClientError> {
        match self.call(call).await? {
            Answer::Primary(p) => Ok(p),
            _ => Err(ClientError::Unexpected { addr: self.server_addr(), what: "not a registration" }),
        }
    }

    /// Queues `call` and waits for its completion, driving the connection
    /// if this caller holds the driver role (it was free when the call was
    /// queued, or the previous driver handed it over).
    async fn call(&self, call: Call) -> Result<Answer, ClientError> {
        let inner = &*self.inner;
        // Hands the role on and marks the cell left, however this future ends.
        let mut guard = CallGuard { inner, cell: None, role: false, answered: false };
        let mut call = Some(call);
        let got = future::poll_fn(|cx| guard.poll_wait(&mut call, cx)).await;
        if let Some(result) = got {
            return result;
        }
        let Some(cell) = guard.cell.clone() else {
            // poll_wait returns None only once it queued the call.
            return Err(ClientError::Shutdown);
        };
        // The driver finds its own answer by looking: delivering it must
        // not wake this task again (a wasted poll per call at one caller).
        lock(&cell.0).waker = None;
        // Declared after `guard`, so dropped before it: the socket is free
        // by the time the role is handed on.
        let mut io = inner.io.lock().await;
        let result = self.drive(&mut io, |_| lock(&cell.0).take()).await;
        drop(io);
        result
    }

    /// Runs the connection until `done` returns something (checked after
    /// every step, under the state lock).
    async fn drive<R>(&self, io: &mut Io, mut done: impl FnMut(&mut State) -> Option<R>) -> R {
        let inner = &*self.inner;
        loop {
            // 1. Under the state lock: completions out, actions, bytes to send.
            let (wait, can_send, finished) = {
                let mut st = lock(&inner.state);
                let now = inner.clock.now();
                st.take_calls(&inner.entry, now);
                if st.session.poll_timeout().is_some_and(|t| t <= now) {
                    st.session.handle_timeout(now);
                }
                deliver(&mut st, &mut io.wake);
                while let Some(action) = st.session.poll_action() {
                    match action {
                        Action::Connect(addr) => {
                            io.stream = None;
                            io.connect = Some(addr);
                        }
                        Action::Close => {
                            io.stream = None;
                            io.connect = None;
                        }
                    }
                    io.out_start = 0;
                    io.out_end = 0;
                }
                if io.stream.is_some() && io.out_end + FRAME_ROOM <= WRITE_BUF {
                    let end = io.out_end;
                    io.out_end += st.session.poll_transmit(&mut io.out[end..], now);
                }
                // A call queued from here on waits in `entry`; the driver
                // looks there before it sleeps (see `sleep_or`).
                let can_send = st.session.in_flight() < st.session.config().max_in_flight;
                (st.session.poll_timeout().map(|t| t.saturating_since(now)), can_send, done(&mut st))
            };
            if let Some(r) = finished {
                wake_all(&mut io.wake);
                // Keep the pipeline full across the hand-off: send what the
                // session encoded if the socket takes it at once (the next
                // driver sends the rest).
                flush_once(inner, io).await;
                return r;
            }
            wake_all(&mut io.wake);
            // The armed timer, if earlier, wakes the driver first; it then
            // finds nothing due and re-arms. A later one must move.
            if let Some(wait) = wait {
                let at = std::time::Instant::now() + wait;
                if io.armed.is_none_or(|armed| armed > at) {
                    io.timer.set_at(at);
                    io.armed = Some(at);
                }
            }
            // 2. I/O, with no lock held but the socket's.
            if let Some(addr) = io.connect {
                let result = connect(addr, &inner.opts).await;
                io.connect = None;
                let mut st = lock(&inner.state);
                let now = inner.clock.now();
                match result {
                    Ok((stream, tls)) => {
                        io.stream = Some(stream);
                        io.tls = tls;
                        io.fresh = true;
                        st.session.connected(now);
                    }
                    Err(e) => st.session.connection_failed(Broken::Unreachable, e, now),
                }
                continue;
            }
            if let Err(e) = seal(io) {
                fail(inner, io, Broken::Lost, e);
                continue;
            }
            let Io { stream, buf, timer, armed, out, out_start, out_end, tls, .. } = io;
            let Some(stream) = stream.as_mut() else {
                // Nothing to do but wait out a pause or a new caller.
                sleep_or(inner, can_send, timer, armed).await;
                continue;
            };
            if let Some(t) = tls.as_mut().filter(|t| !t.to_send().is_empty()) {
                match stream.write(t.to_send()).await {
                    Ok(n) if n > 0 => t.sent(n),
                    Ok(_) => fail(inner, io, Broken::Lost, Transport::Closed),
                    Err(e) => fail(inner, io, Broken::Lost, Transport::Io(Arc::new(e))),
                }
                continue;
            }
            if *out_start < *out_end {
                let written = stream.write(&out[*out_start..*out_end]).await;
                match written {
                    Ok(n) if n > 0 => {
                        *out_start += n;
                        if *out_start == *out_end {
                            (*out_start, *out_end) = (0, 0);
                        }
                    }
                    Ok(_) => fail(inner, io, Broken::Lost, Transport::Closed),
                    Err(e) => fail(inner, io, Broken::Lost, Transport::Io(Arc::new(e))),
                }
                continue;
            }
            // Read while an answer is owed (or to see the server close),
            // and wake for a pause's or timeout's end or a new caller.
            let read = async { Some(stream.read(&mut buf[..]).await) };
            let other = async {
                sleep_or(inner, can_send, timer, armed).await;
                None
            };
            match future::or(read, other).await {
                None => {}
                Some(Ok(0)) => fail(inner, io, Broken::Lost, Transport::Closed),
                Some(Ok(n)) => match received(io, n) {
                    Ok(plain) => {
                        let mut st = lock(&inner.state);
                        st.session.handle_input(plain, inner.clock.now());
                        if let Some(t) = io.tls.as_mut() {
                            let used = t.plain().len();
                            t.consume_plain(used);
                        }
                    }
                    Err(e) => fail(inner, io, Broken::Lost, e),
                },
                Some(Err(e)) => fail(inner, io, Broken::Lost, Transport::Io(Arc::new(e))),
            }
        }
    }
}

/// With TLS, encrypts what the session encoded: it then waits as ciphertext.
fn seal(io: &mut Io) -> Result<(), Transport> {
    let Some(t) = io.tls.as_mut() else { return Ok(()) };
    t.seal(&io.out[io.out_start..io.out_end]).map_err(tls_failed)?;
    (io.out_start, io.out_end) = (0, 0);
    Ok(())
}

/// A TLS failure of the pipe, as the session carries it.
fn tls_failed(e: io::Error) -> Transport {
    match into_tls_error(e) {
        Ok(tls) => Transport::Tls(Arc::new(tls)),
        Err(e) => Transport::Io(Arc::new(e)),
    }
}

/// What the session is to read of the `n` bytes just read into `io.buf`:
/// those bytes, or, with TLS, what they decrypt to (consumed by the caller);
/// the handshake's next flight is queued to write. A plaintext connection
/// whose first bytes are a TLS alert met a server that requires TLS.
fn received(io: &mut Io, n: usize) -> Result<&[u8], Transport> {
    let fresh = std::mem::take(&mut io.fresh);
    let Some(t) = io.tls.as_mut() else {
        let bytes = &io.buf[..n];
        if fresh && is_tls_alert(bytes) {
            return Err(Transport::TlsRequired);
        }
        return Ok(bytes);
    };
    t.read_room()[..n].copy_from_slice(&io.buf[..n]);
    t.received(n).map_err(tls_failed)?;
    Ok(t.plain())
}

/// One write of the encoded bytes, if the socket takes them without waiting.
async fn flush_once(inner: &Inner, io: &mut Io) {
    if let Err(e) = seal(io) {
        return fail(inner, io, Broken::Lost, e);
    }
    let Some(stream) = io.stream.as_mut() else { return };
    if let Some(t) = io.tls.as_mut() {
        if !t.to_send().is_empty() {
            if let Some(Ok(n)) = future::poll_once(stream.write(t.to_send())).await {
                t.sent(n);
            }
        }
        return;
    }
    if io.out_start == io.out_end {
        return;
    }
    // Polled once, never suspended: a write that is not ready has written
    // nothing, and the driver cannot be cancelled in between.
    let written = future::poll_once(stream.write(&io.out[io.out_start..io.out_end])).await;
    match written {
        None => {}
        Some(Ok(n)) if n > 0 => {
            io.out_start += n;
            if io.out_start == io.out_end {
                (io.out_start, io.out_end) = (0, 0);
            }
        }
        Some(Ok(_)) => fail(inner, io, Broken::Lost, Transport::Closed),
        Some(Err(e)) => fail(inner, io, Broken::Lost, Transport::Io(Arc::new(e))),
    }
}

/// The connection failed: drop it and tell the session.
fn fail(inner: &Inner, io: &mut Io, broken: Broken, e: Transport) {
    io.stream = None;
    io.tls = None;
    (io.out_start, io.out_end) = (0, 0);
    let mut st = lock(&inner.state);
    st.session.connection_failed(broken, e, inner.clock.now());
}

/// Waits for the armed timer or, when a request could be sent now
/// (`can_send`), for a new call. A call queued before the driver's waker is
/// in place is seen here under the same lock: none is missed.
async fn sleep_or(
    inner: &Inner,
    can_send: bool,
    timer: &mut async_io::Timer,
    armed: &mut Option<std::time::Instant>,
) {
    let pushed = future::poll_fn(|cx| {
        let mut e = lock(&inner.entry);
        if !can_send {
            e.driver = None;
            return Poll::Pending;
        }
        if !e.calls.is_empty() {
            e.driver = None;
            return Poll::Ready(());
        }
        match &mut e.driver {
            Some(w) if w.will_wake(cx.waker()) => {}
            w => *w = Some(cx.waker().clone()),
        }
        Poll::Pending
    });
    future::or(pushed, async {
        timer.await;
        *armed = None;
    })
    .await
}

async fn connect(
    addr: SocketAddr,
    opts: &ClientOptions,
) -> Result<(TcpStream, Option<Box<TlsPipe>>), Transport> {
    let timeout = opts.connect_timeout;
    let dial = async {
        let stream = TcpStream::connect(addr).await.map_err(|e| Transport::Io(Arc::new(e)))?;
        // Timestamps are small and latency-bound: never wait to coalesce writes.
        let _ = stream.set_nodelay(true);
        Ok(stream)
    };
    let stream = if timeout.is_zero() {
        dial.await?
    } else {
        future::or(dial, async {
            async_io::Timer::after(timeout).await;
            Err(Transport::ConnectTimeout(timeout))
        })
        .await?
    };
    let tls = match &opts.tls {
        None => None,
        Some(tls) => {
            let session =
                TlsSession::client(Arc::clone(&tls.0), addr.ip()).map_err(|e| Transport::Tls(Arc::new(e)))?;
            Some(Box::new(TlsPipe::new(session)))
        }
    };
    Ok((stream, tls))
}

/// Hands every finished call to its caller; the tasks to wake go to `wake`
/// (woken by [`wake_all`] once the state lock is released).
fn deliver(st: &mut State, wake: &mut Vec<Waker>) {
    while let Some(c) = st.session.poll_completion() {
        let Some(cell) = st.cells.remove(&c.ticket) else { continue };
        let mut slot = lock(&cell.0);
        // A caller that left drops its answer.
        if slot.gone {
            continue;
        }
        slot.held = match c.result {
            Ok(Answer::Ts(ts)) => Held::Ts(ts),
            other => Held::Rare(Box::new(other.map_err(convert))),
        };
        wake.extend(slot.waker.take());
    }
}

/// Names `cell`'s caller the next driver if it still waits for its answer;
/// its task's waker, to wake once the locks are released.
fn name_driver(cell: &Arc<Cell>) -> Option<Option<Waker>> {
    let mut slot = lock(&cell.0);
    slot.waiting().then(|| {
        slot.drive = true;
        slot.waker.take()
    })
}

/// The driver role leaves its holder: it goes to a caller still waiting
/// (the youngest, else the oldest unanswered, else any), whose task is woken;
/// with nobody waiting it is free again. The calls queued meanwhile join the
/// session first, so their callers can be named; `entry` stays locked from
/// the last look at its calls until the role is placed, so a caller queuing
/// meanwhile either is seen here or finds the role free.
fn hand_off(inner: &Inner) {
    let mut st = lock(&inner.state);
    loop {
        let mut e = lock(&inner.entry);
        std::mem::swap(&mut e.calls, &mut st.spare);
        if !st.spare.is_empty() {
            drop(e);
            st.admit(inner.clock.now());
            continue;
        }
        e.driver = None;
        let State { session, cells, last, .. } = &mut *st;
        let named = [*last, session.pending()]
            .into_iter()
            .flatten()
            .find_map(|t| cells.get(&t).and_then(name_driver))
            .or_else(|| cells.values().find_map(name_driver));
        match named {
            Some(waker) => {
                drop(e);
                drop(st);
                if let Some(w) = waker {
                    w.wake();
                }
            }
            None => e.driving = false,
        }
        return;
    }
}

/// Wakes the tasks [`deliver`] collected.
fn wake_all(wake: &mut Vec<Waker>) {
    for w in wake.drain(..) {
        w.wake();
    }
}

/// The session's error as the client reports it: its own verdicts map one to
/// one ([`ClientError::from_call`]); an I/O failure is a failed connect or a
/// failed connection by whether the connection was ever made.
fn convert(e: CallError<Transport>) -> ClientError {
    ClientError::from_call(e, |addr, broken, error| match (broken, error) {
        (_, Transport::ConnectTimeout(after)) => ClientError::Timeout { addr, after },
        (_, Transport::Closed) => ClientError::Closed { addr },
        (_, Transport::TlsRequired) => ClientError::TlsRequired { addr },
        (_, Transport::Tls(source)) => ClientError::Tls { addr, source },
        (Broken::Unreachable, Transport::Io(source)) => ClientError::Connect { addr, source },
        (Broken::Lost, Transport::Io(source)) => ClientError::Io { addr, source },
    })
}

/// One call's bookkeeping: its cell, and the driver role while it holds it.
/// Dropping it (the call returned, or its future was dropped at any
/// `.await`) marks the cell left and hands the role to a caller still
/// waiting, so a waiting caller always has a driver.
struct CallGuard<'a> {
    inner: &'a Inner,
    /// The call's cell once queued.
    cell: Option<Arc<Cell>>,
    /// This call drives the connection (or was named to and owes the role).
    role: bool,
    /// The answer was taken: nothing is left to mark.
    answered: bool,
}

impl CallGuard<'_> {
    /// First poll: queues the call, taking the role if it is free. Later
    /// polls: the result (`Some`), or `None` once this call holds the role.
    fn poll_wait(
        &mut self,
        call: &mut Option<Call>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Answer, ClientError>>> {
        let inner = self.inner;
        if let Some(call) = call.take() {
            // The waker is in place before the driver can see the call.
            let cell =
                Arc::new(Cell(Mutex::new(Slot { waker: Some(cx.waker().clone()), ..Slot::default() })));
            let (role, wake) = {
                let mut e = lock(&inner.entry);
                e.calls.push((call, Arc::clone(&cell)));
                if e.driving {
                    // Wakes a driver that waits to send (see `sleep_or`).
                    (false, e.driver.take())
                } else {
                    e.driving = true;
                    (true, None)
                }
            };
            self.cell = Some(cell);
            if let Some(w) = wake {
                w.wake();
            }
            if role {
                self.role = true;
                return Poll::Ready(None);
            }
            return Poll::Pending;
        }
        let Some(cell) = &self.cell else {
            return Poll::Ready(Some(Err(ClientError::Shutdown)));
        };
        let mut slot = lock(&cell.0);
        if std::mem::take(&mut slot.drive) {
            self.role = true;
        }
        if let Some(result) = slot.take() {
            // Named driver as well: the guard's drop hands the role on.
            self.answered = true;
            return Poll::Ready(Some(result));
        }
        if self.role {
            return Poll::Ready(None);
        }
        match &mut slot.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            w => *w = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl Drop for CallGuard<'_> {
    fn drop(&mut self) {
        let mut owes = self.role;
        if !self.answered {
            if let Some(cell) = &self.cell {
                let mut slot = lock(&cell.0);
                slot.gone = true;
                slot.waker = None;
                // Named driver but dropped before it took over: it still
                // owes the role to the others.
                owes |= std::mem::take(&mut slot.drive);
            }
        }
        if owes {
            hand_off(self.inner);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::sync::mpsc;
    use std::task::Context;

    use leasetso_core::wire::{Frame, VERSION};

    use super::*;

    /// A one-connection server that welcomes at once and holds every GetTs
    /// until told to (`()` on `go`); from then on it answers at once.
    fn held_server() -> (SocketAddr, mpsc::Sender<()>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (go, wait) = mpsc::channel::<()>();
        std::thread::spawn(move || {
            let (mut sock, _) = listener.accept().unwrap();
            sock.set_read_timeout(Some(Duration::from_millis(5))).unwrap();
            let (mut rx, mut held, mut logical, mut open) = (Vec::new(), Vec::new(), 0u32, false);
            let mut buf = [0u8; 4096];
            loop {
                match sock.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => rx.extend_from_slice(&buf[..n]),
                    Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
                    Err(_) => return,
                }
                while let Ok(Some((frame, used))) = Frame::decode(&rx) {
                    rx.drain(..used);
                    match frame {
                        Frame::Hello { .. } => {
                            let welcome = Frame::Welcome { version: VERSION, cluster_id: 0, node: NodeId(1) };
                            let mut out = Vec::new();
                            welcome.encode(&mut out).unwrap();
                            sock.write_all(&out).unwrap();
                        }
                        Frame::GetTs { id, count } => held.push((id, count)),
                        _ => return,
                    }
                }
                open = open || wait.try_recv().is_ok();
                if open {
                    let mut out = Vec::new();
                    for (id, count) in held.drain(..) {
                        logical += count;
                        let last = Timestamp::new(1, logical).unwrap();
                        Frame::Ts { id, count, last }.encode(&mut out).unwrap();
                    }
                    if sock.write_all(&out).is_err() {
                        return;
                    }
                }
            }
        });
        (addr, go)
    }

    fn named(cell: &Arc<Cell>) -> bool {
        lock(&cell.0).drive
    }

    /// A driver dropped mid-read hands the role to the youngest waiting
    /// caller; that caller, dropped before it ever took over, hands it on
    /// again; the last one drives to its answer, and nothing is left behind.
    #[test]
    fn the_driver_role_survives_cancelled_drivers() {
        let (addr, go) = held_server();
        let client = future::block_on(Client::connect(&[addr], ClientOptions::default())).unwrap();
        let mut cx = Context::from_waker(Waker::noop());
        let (mut a, mut b, mut c) =
            (Box::pin(client.get_ts()), Box::pin(client.get_ts()), Box::pin(client.get_ts()));
        // A finds nobody driving: it sends its request and waits on the read.
        assert!(a.as_mut().poll(&mut cx).is_pending());
        assert!(b.as_mut().poll(&mut cx).is_pending());
        assert!(c.as_mut().poll(&mut cx).is_pending());
        // B and C queued their calls while A waited on the socket.
        let (cb, cc) = {
            let e = lock(&client.inner.entry);
            assert!(e.driving);
            assert_eq!(e.calls.len(), 2);
            (Arc::clone(&e.calls[0].1), Arc::clone(&e.calls[1].1))
        };
        drop(a);
        assert!(named(&cc), "the youngest waiting caller is named next");
        assert!(!named(&cb));
        drop(c);
        assert!(named(&cb), "a named caller that leaves names another");
        go.send(()).unwrap();
        let got = future::block_on(future::or(async { Some(b.await) }, async {
            async_io::Timer::after(Duration::from_secs(5)).await;
            None
        }));
        assert!(got.expect("the last caller was never answered").is_ok());
        assert!(!lock(&client.inner.entry).driving, "the role is free once nobody waits");
        let st = lock(&client.inner.state);
        assert!(st.cells.is_empty(), "every answered or abandoned call is forgotten");
    }
}
