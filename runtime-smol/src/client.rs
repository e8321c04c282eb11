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
//! connection themselves. A [`Client`] holds the session under a short
//! `std::sync::Mutex` (never held across an `.await`) and the socket under an
//! `async_lock::Mutex`. A caller queues its call, then waits for whichever
//! comes first: its completion, or the socket's lock. Whoever holds the
//! socket is the driver: it writes what the session has to send, reads
//! replies, feeds them in, hands every completion to its caller (waking
//! exactly that caller's task), and returns once its own call is done;
//! dropping its guard hands the socket to the next waiting caller. So one
//! caller alone pays no cross-task wake at all, and many callers wake only
//! the tasks whose answers arrived.
//!
//! A driver may be cancelled (its future dropped) at any `.await`; every
//! I/O step is cancel-safe: a connect in progress is redone by the next
//! driver, a write goes out through single `write` calls whose progress is
//! recorded, and a read either delivered bytes or did nothing.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use async_net::TcpStream;
use event_listener::Event;
use futures_lite::{AsyncReadExt, AsyncWriteExt, future};
use leasetso_core::client::{
    Action, Answer, Broken, Call, CallError, ClientConfig, ClientSession, ConnState, TRANSMIT_MIN,
};
use leasetso_core::{Ballot, NodeId, Ticket, Timestamp};

pub use leasetso_core::client::{MAX_COUNT, StatusReply as NodeStatus};

use crate::clock::Clock;
use crate::error::ClientError;

/// Bytes read per read call: many pipelined replies at once.
const READ_BUF: usize = 4 * 1024;
/// Bytes the session encodes into per write.
const WRITE_BUF: usize = 4 * 1024;

/// How a [`Client`] behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientOptions {
    /// The cluster the client expects; 0 accepts any.
    pub cluster_id: u64,
    /// How long one TCP connect may take. Zero waits as long as the system does.
    pub connect_timeout: Duration,
    /// How long the oldest outstanding request may wait for its reply
    /// before the connection counts as failed. Zero waits forever.
    pub request_timeout: Duration,
    /// How long one call keeps being retried (from its arrival; for merged
    /// calls from the oldest caller's) before it returns the last error.
    /// Zero makes exactly one attempt. It should outlast a failover, about 2 × D_A.
    pub deadline: Duration,
    /// The first pause before a retry; it doubles up to `max_backoff`, jittered.
    pub retry_backoff: Duration,
    /// The longest pause between retries.
    pub max_backoff: Duration,
    /// The most timestamps merged into one request, at most [`MAX_COUNT`].
    pub max_batch: u32,
    /// The most requests outstanding on the connection at once, at least 1.
    /// More than one lets callers that arrive while a request is out go at
    /// once instead of waiting a round trip.
    pub max_in_flight: usize,
}

impl Default for ClientOptions {
    /// Any cluster, 3 s to connect and per reply, retries for 7 s, pauses
    /// from 10 ms to 250 ms, batches of up to 10,000, two requests in flight:
    /// the core's defaults ([`ClientConfig`]).
    fn default() -> Self {
        let core = ClientConfig::default();
        ClientOptions {
            cluster_id: core.cluster_id,
            connect_timeout: Duration::from_secs(3),
            request_timeout: core.request_timeout,
            deadline: core.deadline,
            retry_backoff: core.retry_backoff,
            max_backoff: core.max_backoff,
            max_batch: core.max_batch,
            max_in_flight: core.max_in_flight,
        }
    }
}

impl ClientOptions {
    fn core(&self) -> ClientConfig {
        ClientConfig {
            cluster_id: self.cluster_id,
            request_timeout: self.request_timeout,
            deadline: self.deadline,
            retry_backoff: self.retry_backoff,
            max_backoff: self.max_backoff,
            max_batch: self.max_batch,
            max_in_flight: self.max_in_flight,
        }
    }
}

/// How a connection failed, as this runtime carries it through the session.
#[derive(Clone, Debug)]
enum Transport {
    Io(Arc<io::Error>),
    Closed,
    ConnectTimeout(Duration),
}

type Session = ClientSession<Transport>;

/// One caller's place: its answer once in, and the task to wake.
#[derive(Default)]
struct Slot {
    result: Option<Result<Answer, ClientError>>,
    waker: Option<Waker>,
}

struct State {
    session: Session,
    slots: HashMap<Ticket, Slot>,
}

/// The socket and what is half done on it (see "Who drives the connection").
struct Io {
    stream: Option<TcpStream>,
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
}

struct Inner {
    state: Mutex<State>,
    io: async_lock::Mutex<Io>,
    /// Notified when a caller queues a call, so a driver waiting on a reply
    /// sends it at once (up to the in-flight limit).
    pushed: Event,
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

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    // The state is only changed by session calls that cannot panic halfway
    // through a caller's bookkeeping; a poisoned lock still holds it whole.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Client {
    /// Connects to the first of `seeds` that completes the handshake (one
    /// pass over them). Later calls follow leader hints from there.
    pub async fn connect(seeds: &[SocketAddr], opts: ClientOptions) -> Result<Client, ClientError> {
        let seed = seeds.iter().fold(0u64, |h, a| h.rotate_left(7) ^ u64::from(a.port()));
        let rng_seed = seed ^ Clock::new().now().as_nanos();
        let mut session = Session::new(opts.core(), seeds, rng_seed).map_err(|e| match e {
            leasetso_core::client::ClientConfigError::NoSeeds => ClientError::NoSeeds,
            leasetso_core::client::ClientConfigError::NoneInFlight => {
                ClientError::InvalidOptions { what: "max_in_flight must be at least 1" }
            }
        })?;
        session.open(0);
        let inner = Arc::new(Inner {
            state: Mutex::new(State { session, slots: HashMap::new() }),
            io: async_lock::Mutex::new(Io {
                stream: None,
                connect: None,
                out: Box::new([0; WRITE_BUF]),
                out_start: 0,
                out_end: 0,
                buf: Box::new([0; READ_BUF]),
                timer: async_io::Timer::never(),
                armed: None,
            }),
            pushed: Event::new(),
            clock: Clock::new(),
            opts,
        });
        let client = Client { inner };
        let mut io = client.inner.io.lock().await;
        client
            .drive(&mut io, |st| {
                if st.session.opening() {
                    return None;
                }
                Some(match st.session.state() {
                    ConnState::Ready { .. } => Ok(()),
                    _ => Err(st.session.last_error().cloned().map_or(ClientError::NoSeeds, convert)),
                })
            })
            .await?;
        drop(io);
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
    /// whenever this caller gets the socket first.
    async fn call(&self, call: Call) -> Result<Answer, ClientError> {
        let ticket = {
            let mut st = lock(&self.inner.state);
            let ticket = st.session.push_call(call, self.inner.clock.now());
            st.slots.insert(ticket, Slot::default());
            ticket
        };
        // Removes the slot if this future is dropped before its answer.
        let _slot = SlotGuard { inner: &self.inner, ticket };
        self.inner.pushed.notify(1);
        let wait = Completed { inner: &self.inner, ticket };
        // Whichever comes first: the answer (another caller drove), or the
        // socket (this caller drives until its own answer is in).
        let got = future::or(async { Err(wait.await) }, async { Ok(self.inner.io.lock().await) }).await;
        match got {
            Err(result) => result,
            Ok(mut io) => {
                self.drive(&mut io, |st| st.slots.get_mut(&ticket).and_then(|s| s.result.take())).await
            }
        }
    }

    /// Runs the connection until `done` returns something (checked after
    /// every step, under the state lock).
    async fn drive<R>(&self, io: &mut Io, mut done: impl FnMut(&mut State) -> Option<R>) -> R {
        let inner = &*self.inner;
        loop {
            // 1. Under the state lock: completions out, actions, bytes to send.
            let (wait, listener) = {
                let mut st = lock(&inner.state);
                let now = inner.clock.now();
                if st.session.poll_timeout().is_some_and(|t| t <= now) {
                    st.session.handle_timeout(now);
                }
                deliver(&mut st);
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
                if let Some(r) = done(&mut st) {
                    return r;
                }
                if io.stream.is_some() && io.out_end + TRANSMIT_MIN <= WRITE_BUF {
                    let end = io.out_end;
                    io.out_end += st.session.poll_transmit(&mut io.out[end..], now);
                }
                let wait = st.session.poll_timeout().map(|t| t.saturating_since(now));
                // Listening before the lock is released: no push is missed.
                (wait, inner.pushed.listen())
            };
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
                let result = connect(addr, inner.opts.connect_timeout).await;
                io.connect = None;
                let mut st = lock(&inner.state);
                let now = inner.clock.now();
                match result {
                    Ok(stream) => {
                        io.stream = Some(stream);
                        st.session.connected(now);
                    }
                    Err(e) => st.session.connection_failed(Broken::Unreachable, e, now),
                }
                continue;
            }
            let Io { stream, buf, timer, armed, out, out_start, out_end, .. } = io;
            let Some(stream) = stream.as_mut() else {
                // Nothing to do but wait out a pause or a new caller.
                sleep_or(listener, timer, armed).await;
                continue;
            };
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
                sleep_or(listener, timer, armed).await;
                None
            };
            match future::or(read, other).await {
                None => {}
                Some(Ok(0)) => fail(inner, io, Broken::Lost, Transport::Closed),
                Some(Ok(n)) => {
                    let mut st = lock(&inner.state);
                    st.session.handle_input(&io.buf[..n], inner.clock.now());
                }
                Some(Err(e)) => fail(inner, io, Broken::Lost, Transport::Io(Arc::new(e))),
            }
        }
    }
}

/// The connection failed: drop it and tell the session.
fn fail(inner: &Inner, io: &mut Io, broken: Broken, e: Transport) {
    io.stream = None;
    (io.out_start, io.out_end) = (0, 0);
    let mut st = lock(&inner.state);
    st.session.connection_failed(broken, e, inner.clock.now());
}

/// Waits for a new caller or the armed timer.
async fn sleep_or(
    listener: event_listener::EventListener,
    timer: &mut async_io::Timer,
    armed: &mut Option<std::time::Instant>,
) {
    future::or(listener, async {
        timer.await;
        *armed = None;
    })
    .await
}

async fn connect(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, Transport> {
    let dial = async {
        let stream = TcpStream::connect(addr).await.map_err(|e| Transport::Io(Arc::new(e)))?;
        // Timestamps are small and latency-bound: never wait to coalesce writes.
        let _ = stream.set_nodelay(true);
        Ok(stream)
    };
    if timeout.is_zero() {
        return dial.await;
    }
    future::or(dial, async {
        async_io::Timer::after(timeout).await;
        Err(Transport::ConnectTimeout(timeout))
    })
    .await
}

/// Hands every finished call to its caller and wakes its task.
fn deliver(st: &mut State) {
    while let Some(c) = st.session.poll_completion() {
        if let Some(slot) = st.slots.get_mut(&c.ticket) {
            slot.result = Some(c.result.map_err(convert));
            if let Some(w) = slot.waker.take() {
                w.wake();
            }
        }
    }
}

/// The session's error as the client reports it: its own verdicts map one to
/// one ([`ClientError::from_call`]); an I/O failure is a failed connect or a
/// failed connection by whether the connection was ever made.
fn convert(e: CallError<Transport>) -> ClientError {
    ClientError::from_call(e, |addr, broken, error| match (broken, error) {
        (_, Transport::ConnectTimeout(after)) => ClientError::Timeout { addr, after },
        (_, Transport::Closed) => ClientError::Closed { addr },
        (Broken::Unreachable, Transport::Io(source)) => ClientError::Connect { addr, source },
        (Broken::Lost, Transport::Io(source)) => ClientError::Io { addr, source },
    })
}

/// Resolves with a caller's result once a driver delivered it.
struct Completed<'a> {
    inner: &'a Inner,
    ticket: Ticket,
}

impl Future for Completed<'_> {
    type Output = Result<Answer, ClientError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut st = lock(&self.inner.state);
        let Some(slot) = st.slots.get_mut(&self.ticket) else {
            return Poll::Ready(Err(ClientError::Shutdown));
        };
        if let Some(result) = slot.result.take() {
            return Poll::Ready(result);
        }
        match &mut slot.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            w => *w = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

/// Forgets a caller's slot when its call ends or is dropped.
struct SlotGuard<'a> {
    inner: &'a Inner,
    ticket: Ticket,
}

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        lock(&self.inner.state).slots.remove(&self.ticket);
    }
}
