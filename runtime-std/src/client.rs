//! The blocking client.
//!
//! One [`Client`] holds one connection and is meant to be shared by many
//! threads. Timestamps are latency-bound: instead of one round trip per call,
//! concurrent callers are merged into one request with the summed count (as
//! PD's client does), and the reply's range is split among them in order.
//!
//! The protocol (merging, splitting, reply matching, the handshake, the
//! redirect rules and the deadlines) is the core's sans-IO
//! [`ClientSession`]; this file only moves its bytes over a `TcpStream`,
//! reads the clock, sleeps its pauses and wakes the callers.
//!
//! The session is driven by one caller at a time, the *sender*. A caller
//! queues its call in the session; if no caller holds the sender role it
//! takes it. The sender runs the session's loop (connect, write, read, sleep
//! out a pause), writes each answered caller's result into that caller's
//! [`Slot`] and wakes exactly that caller; it repeats until its own call is
//! answered, then hands the role to the oldest caller still waiting. Callers
//! arriving meanwhile queue up in the session (its lock is never held across
//! I/O) and go out together in the next request. There is one request in
//! flight per connection unless [`ClientOptions::max_in_flight`] allows more.
//!
//! Each caller sleeps on its own slot (`thread::park`) rather than on a
//! shared condition variable: a finished request wakes the callers it
//! answered and, at most, the one next sender, not every waiting thread. With
//! many callers, a shared `notify_all` woke hundreds of threads per request
//! to find their own results, and the wasted wake-ups kept the callers from
//! re-queuing in time to be merged (BENCHMARKS.md, "Why the misses").
//!
//! # Clusters
//!
//! Only a cluster's leader serves; the other nodes answer `NotLeader` with a
//! hint naming the leader (with its client address when they know it). The
//! client is given one or more *seed* addresses (typically every node's
//! client address, see [`parse_seeds`]) and finds the leader from them by the
//! rules of [`leasetso_core::redirect`]: a hint naming another address is
//! followed at once; a hinted address that refuses the connection or does
//! not answer is stale, so the client goes back to the seeds, from the one
//! after the seed it tried last; `NotLeader` with no hint moves to the next
//! seed after a pause, and a hint naming the node itself is asked again after
//! a pause; hints with an unspecified address are ignored; a lost connection
//! is reopened once at once; at most two moves in a row are made without a
//! pause.
//!
//! Pauses grow exponentially from [`ClientOptions::retry_backoff`] to
//! [`ClientOptions::max_backoff`] and are jittered (uniform in `[pause/2,
//! pause]`, from a per-client seeded generator) so that the clients of a dead
//! leader do not reach the new one in lockstep.
//!
//! Retries are bounded by time, [`ClientOptions::deadline`], not by a count:
//! a refused connection fails in microseconds and a silent node only after a
//! request timeout, so a count says nothing about how long a call waits.
//! After a leader is killed nobody may serve until its lease has run out at
//! the acceptors (D_A, 3.06 s with the default 3 s lease) and the new leader
//! has loaded the window: up to about 1.5 lease durations. The default
//! deadline of 7 s (over 2 × D_A) lets a call caught in a failover return the
//! new leader's timestamp rather than an error.
//!
//! The callers arriving during the search queue up and are merged into the
//! first request that reaches the leader. A request's deadline counts from
//! its oldest caller's arrival, so a caller queued behind a request that
//! failed for the whole deadline is not made to wait a second deadline.

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, Thread};
use std::time::Instant;

use leasetso_core::client::{Action, Answer, Broken, Call, ConnState};
use leasetso_core::wire::FRAME_ROOM;
use leasetso_core::{CallError, ClientSession, NodeId, Ticket, Timestamp};
use leasetso_runtime_common::client::{TicketMap, resolve_seeds};
use leasetso_runtime_common::lock;
use leasetso_runtime_common::tls::{TlsError, TlsSession, into_tls_error};

use crate::io::Conn;

use crate::error::ClientError;

pub use leasetso_runtime_common::client::{ClientOptions, MAX_COUNT, NodeStatus, parse_seeds};

/// A blocking leasetso client; `Send + Sync`, share it across threads.
pub struct Client {
    opts: ClientOptions,
    /// The session and who waits for what. Never held across I/O: callers
    /// queue while the sender reads and writes.
    shared: Mutex<State>,
    /// The socket and its buffers: only the sender touches them.
    io: Mutex<Io>,
    /// The origin of the session's clock.
    origin: Instant,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client").field("server", &self.server_addr()).field("opts", &self.opts).finish()
    }
}

/// The session and the callers waiting on it.
///
/// Invariant (no caller sleeps forever): whenever `slots` is not empty,
/// `sending` is true, and exactly one caller holds the sender role, either
/// driving the session or about to (its slot was posted [`Wake::Send`]). A
/// sender drives until its own call is answered and then hands the role to
/// the oldest waiting caller or, with nobody waiting, clears `sending`: both
/// under this lock, so a caller that queues sees either a sender that will
/// serve it or no sender and becomes one.
struct State {
    session: ClientSession<ClientError>,
    /// The waiting callers by ticket number.
    slots: TicketMap<Arc<Slot>>,
    /// Whether a caller holds the sender role.
    sending: bool,
}

/// The socket and its buffers, allocated once per client.
struct Io {
    tcp: Option<Conn>,
    out: Box<[u8]>,
    inp: Box<[u8]>,
}

/// Requests in flight unless the options say otherwise: one. The sender
/// writes a request and waits for its answer, and the callers arriving
/// meanwhile are merged into the next request (module documentation).
const IN_FLIGHT: usize = 1;

/// Room for the Hello and a few requests per write.
const OUT: usize = 4 * FRAME_ROOM;
/// One read's worth of replies.
const INP: usize = 16 * 1024;

/// One call's place: where its answer goes and the thread to wake when it
/// is there.
struct Slot {
    /// The calling thread, parked until `wake` is set.
    thread: Thread,
    /// Set once per call by the sender: the call's result or the sender role.
    /// A lock of its own, so that a woken caller does not contend for the
    /// session's lock only to read its result.
    wake: Mutex<Option<Wake>>,
}

/// Why a caller was woken.
enum Wake {
    /// Its answer, or the error of the request that carried it.
    Done(Result<Answer, ClientError>),
    /// It is now the sender (its call is still unanswered).
    Send,
}

impl Slot {
    fn new() -> Arc<Slot> {
        Arc::new(Slot { thread: thread::current(), wake: Mutex::new(None) })
    }

    /// Sets the wake-up and unparks the caller. The value is written before
    /// the unpark, and [`Slot::wait`] checks it before every park, so the
    /// wake-up cannot be lost: an unpark that comes before the park makes
    /// the park return at once. `unpark` only makes a system call when the
    /// thread is actually parked.
    fn post(&self, wake: Wake) {
        *lock(&self.wake) = Some(wake);
        self.thread.unpark();
    }

    /// Sleeps until the slot is posted. Parks in a loop: `park` may return
    /// spuriously, or for an unpark left over from an earlier call whose
    /// result was read before its unpark arrived.
    fn wait(&self) -> Wake {
        loop {
            if let Some(wake) = lock(&self.wake).take() {
                return wake;
            }
            thread::park();
        }
    }
}

/// The sender role while a caller holds it. Dropping it hands the role on,
/// on return and on unwinding alike, so the waiting callers always have a
/// sender (the [`State`] invariant).
struct Sender<'a> {
    client: &'a Client,
    /// The sender's own ticket.
    me: Ticket,
}

impl Drop for Sender<'_> {
    /// Hands the sender role to the oldest waiting caller, or gives it up
    /// when nobody waits (then no one is woken: no system call at one caller).
    fn drop(&mut self) {
        let mut st = lock(&self.client.shared);
        // Still there only when unwinding: no one waits for that answer.
        st.slots.remove(&self.me);
        let next = st
            .session
            .pending()
            .and_then(|t| st.slots.get(&t))
            // A pending call whose caller is gone (it unwound): any waiter.
            .or_else(|| st.slots.values().next())
            .cloned();
        if next.is_none() {
            st.sending = false;
        }
        drop(st);
        if let Some(next) = next {
            next.post(Wake::Send);
        }
    }
}

/// What the drive loop's `until` sees: the state, and whether the last round
/// found nothing to do (no action, nothing to send or read, no timer); it
/// must give a verdict then, or the loop would spin.
type Until<'a, R> = &'a mut dyn FnMut(&mut State, bool) -> Option<R>;

impl Client {
    /// Connects to a server with the default options and does the handshake.
    ///
    /// `addr` is one server or several seeds: `"127.0.0.1:7400"`, a
    /// `SocketAddr`, or a slice of them (`&seeds[..]`, e.g. from
    /// [`parse_seeds`] for a comma-separated list). See [`Client::connect_with`].
    pub fn connect(addr: impl ToSocketAddrs) -> Result<Client, ClientError> {
        Self::connect_with(addr, ClientOptions::default())
    }

    /// Connects to the first of `addr`'s socket addresses (the seeds) that
    /// completes the handshake. All of them are kept: the client falls back
    /// on them when a leader hint goes stale or no node names the leader.
    ///
    /// A node that is not the leader completes the handshake too (its
    /// `NotLeader` answers come with the first request, and are followed
    /// then). Connecting makes one pass over the seeds and does not retry
    /// within [`ClientOptions::deadline`]: with no server up, it fails as soon
    /// as every seed has refused, with the last seed's error.
    pub fn connect_with(addr: impl ToSocketAddrs, opts: ClientOptions) -> Result<Client, ClientError> {
        let seeds = resolve_seeds(addr)?;
        let session = opts.session(&seeds, IN_FLIGHT)?;
        let client = Client {
            opts,
            shared: Mutex::new(State { session, slots: TicketMap::default(), sending: false }),
            io: Mutex::new(Io {
                tcp: None,
                out: vec![0; OUT].into_boxed_slice(),
                inp: vec![0; INP].into_boxed_slice(),
            }),
            origin: Instant::now(),
        };
        // `seeds` is not empty: `last` is set by the first failure or the
        // loop returns early.
        let mut last = ClientError::NoSeeds;
        for i in 0..seeds.len() {
            let mut st = lock(&client.shared);
            st.session.open(i);
            let outcome = client.drive(st, &mut |st, stuck| match st.session.state() {
                ConnState::Ready { .. } => Some(Ok(())),
                _ if stuck || !st.session.opening() => Some(Err(last_error(&st.session))),
                _ => None,
            });
            match outcome {
                Ok(()) => return Ok(client),
                Err(e) => {
                    tracing::debug!(error = %e, "seed did not complete the handshake");
                    last = e;
                }
            }
        }
        Err(last)
    }

    /// The options in use.
    pub fn options(&self) -> &ClientOptions {
        &self.opts
    }

    /// The server the client talks to now: it moves when a server redirects
    /// it and when it falls back on the seeds. During a failover this is the
    /// address being tried, which may not answer.
    pub fn server_addr(&self) -> SocketAddr {
        lock(&self.shared).session.addr()
    }

    /// One timestamp.
    pub fn get_ts(&self) -> Result<Timestamp, ClientError> {
        self.get_ts_n(1)
    }

    /// `count` timestamps, as the last of the range: the range is
    /// `last - count + 1 ..= last` (packed), all in one physical millisecond.
    ///
    /// Concurrent calls on the same client are merged into one request; each
    /// still gets a range of its own. Failures that may pass are retried,
    /// following leader hints, for [`ClientOptions::deadline`].
    pub fn get_ts_n(&self, count: u32) -> Result<Timestamp, ClientError> {
        if count == 0 || count > MAX_COUNT {
            return Err(ClientError::InvalidCount { count, max: MAX_COUNT });
        }
        match self.call(Call::Ts { count })? {
            Answer::Ts(ts) => Ok(ts),
            _ => Err(self.mismatch()),
        }
    }

    /// The status of the server the client talks to.
    pub fn status(&self) -> Result<NodeStatus, ClientError> {
        match self.call(Call::Status)? {
            Answer::Status(status) => Ok(status),
            _ => Err(self.mismatch()),
        }
    }

    /// The primary registration on the replica of the node this client talks
    /// to (no redirect: every node has a replica of its own).
    pub fn read_primary(&self) -> Result<Option<(NodeId, leasetso_core::Ballot)>, ClientError> {
        self.primary(Call::ReadPrimary)
    }

    /// Clears the registration on the replica of the node this client talks
    /// to if it is exactly `(node, tag)`; returns what is registered after.
    pub fn clear_primary(
        &self,
        node: NodeId,
        tag: leasetso_core::Ballot,
    ) -> Result<Option<(NodeId, leasetso_core::Ballot)>, ClientError> {
        self.primary(Call::ClearPrimary { node, tag })
    }

    fn primary(&self, call: Call) -> Result<Option<(NodeId, leasetso_core::Ballot)>, ClientError> {
        match self.call(call)? {
            Answer::Primary(registered) => Ok(registered),
            _ => Err(self.mismatch()),
        }
    }

    /// An answer of another kind than the call: the session matches them,
    /// so this is never returned in practice.
    fn mismatch(&self) -> ClientError {
        ClientError::Unexpected { addr: self.server_addr(), what: "an answer of another kind than the call" }
    }

    /// The session's clock: nanoseconds since the client was made.
    fn now(&self) -> leasetso_core::Instant {
        // Truncating: u64 nanoseconds last 584 years.
        leasetso_core::Instant::from_nanos(self.origin.elapsed().as_nanos() as u64)
    }

    /// Queues `call` and waits for its answer, as the sender or woken by it.
    fn call(&self, call: Call) -> Result<Answer, ClientError> {
        let me = Slot::new();
        let mut st = lock(&self.shared);
        let ticket = st.session.push_call(call, self.now());
        st.slots.insert(ticket, Arc::clone(&me));
        if st.sending {
            drop(st);
            match me.wait() {
                Wake::Done(result) => return result,
                Wake::Send => {}
            }
            st = lock(&self.shared);
        } else {
            st.sending = true;
        }
        let _sender = Sender { client: self, me: ticket };
        self.drive(st, &mut |st, stuck| {
            let mut mine = None;
            while let Some(done) = st.session.poll_completion() {
                let result = done.result.map_err(client_error);
                let slot = st.slots.remove(&done.ticket);
                if done.ticket == ticket {
                    mine = Some(result);
                } else if let Some(slot) = slot {
                    slot.post(Wake::Done(result));
                }
            }
            // Stuck cannot happen while this call is unanswered (the session
            // always has an action, a frame, a read or a timer for a queued
            // caller); should it, the call fails rather than hangs.
            mine.or_else(|| stuck.then(|| Err(last_error(&st.session))))
        })
    }

    /// Runs the session's loop (module documentation of
    /// [`leasetso_core::client`]) until `until` returns a verdict: actions,
    /// then writes, then a read while a reply is owed, else a sleep until
    /// the next timer. The session's lock is released around every I/O.
    fn drive<'c, R>(&'c self, mut st: MutexGuard<'c, State>, until: Until<'_, R>) -> R {
        let mut guard = lock(&self.io);
        let io = &mut *guard;
        // Whether the last round found nothing to do: no action, nothing to
        // send or read, no timer.
        let mut stuck = false;
        loop {
            let now = self.now();
            if let Some(verdict) = until(&mut st, stuck) {
                return verdict;
            }
            match st.session.poll_action() {
                Some(Action::Close) => {
                    io.tcp = None;
                    continue;
                }
                Some(Action::Connect(addr)) => {
                    io.tcp = None;
                    tracing::debug!(%addr, "connecting");
                    drop(st);
                    let result = connect(addr, &self.opts);
                    st = lock(&self.shared);
                    match result {
                        Ok(tcp) => {
                            io.tcp = Some(tcp);
                            st.session.connected(self.now());
                        }
                        Err((broken, e)) => {
                            tracing::debug!(error = %e, "connect failed");
                            st.session.connection_failed(broken, e, self.now());
                        }
                    }
                    continue;
                }
                None => {}
            }
            let addr = st.session.addr();
            let n = st.session.poll_transmit(&mut io.out, now);
            if n > 0 {
                drop(st);
                let result = match io.tcp.as_mut() {
                    Some(conn) => conn.write_all(&io.out[..n]),
                    None => Err(io::ErrorKind::NotConnected.into()),
                };
                st = lock(&self.shared);
                if let Err(e) = result {
                    io.tcp = None;
                    let (broken, e) = self.io_error(addr, e);
                    tracing::debug!(error = %e, "write failed");
                    st.session.connection_failed(broken, e, self.now());
                }
                continue;
            }
            if st.session.awaiting_reply() {
                drop(st);
                let result = match io.tcp.as_mut() {
                    Some(conn) => conn.read(&mut io.inp),
                    None => Err(io::ErrorKind::NotConnected.into()),
                };
                st = lock(&self.shared);
                let now = self.now();
                match result {
                    Ok(0) => {
                        io.tcp = None;
                        st.session.connection_failed(Broken::Lost, ClientError::Closed { addr }, now);
                    }
                    Ok(n) => st.session.handle_input(&io.inp[..n], now),
                    Err(e) => {
                        io.tcp = None;
                        let (broken, e) = self.io_error(addr, e);
                        tracing::debug!(error = %e, "read failed");
                        st.session.connection_failed(broken, e, now);
                    }
                }
                continue;
            }
            let timer = st.session.poll_timeout();
            stuck = timer.is_none();
            if let Some(at) = timer {
                if at > now {
                    tracing::debug!(pause = ?at.saturating_since(now), to = %addr, "retrying after a pause");
                    drop(st);
                    thread::sleep(at.saturating_since(now));
                    st = lock(&self.shared);
                }
                st.session.handle_timeout(self.now());
            }
        }
    }

    /// Classifies a failed read or write: a socket timeout is the request
    /// timeout running out (the server does not answer: as a refusal), any
    /// other error loses the connection.
    fn io_error(&self, addr: SocketAddr, e: io::Error) -> (Broken, ClientError) {
        let e = match into_tls_error(e) {
            Ok(TlsError::Required) => return (Broken::Lost, ClientError::TlsRequired { addr }),
            Ok(tls) => return (Broken::Lost, ClientError::Tls { addr, source: Arc::new(tls) }),
            Err(e) => e,
        };
        if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) {
            (Broken::Unreachable, ClientError::Timeout { addr, after: self.opts.request_timeout })
        } else {
            (Broken::Lost, ClientError::Io { addr, source: Arc::new(e) })
        }
    }
}

/// Opens a connection with the options' timeouts (the request timeout as
/// the socket's read and write timeouts).
fn connect(addr: SocketAddr, opts: &ClientOptions) -> Result<Conn, (Broken, ClientError)> {
    let connected = if opts.connect_timeout.is_zero() {
        TcpStream::connect(addr)
    } else {
        TcpStream::connect_timeout(&addr, opts.connect_timeout)
    };
    let tcp = connected.map_err(|e| {
        let err = if matches!(e.kind(), io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock) {
            ClientError::Timeout { addr, after: opts.connect_timeout }
        } else {
            ClientError::Connect { addr, source: Arc::new(e) }
        };
        (Broken::Unreachable, err)
    })?;
    let io_err = |e: io::Error| (Broken::Lost, ClientError::Io { addr, source: Arc::new(e) });
    tcp.set_nodelay(true).map_err(io_err)?;
    let timeout = (!opts.request_timeout.is_zero()).then_some(opts.request_timeout);
    tcp.set_read_timeout(timeout).map_err(io_err)?;
    tcp.set_write_timeout(timeout).map_err(io_err)?;
    let session = match &opts.tls {
        None => None,
        Some(tls) => Some(
            TlsSession::client(Arc::clone(&tls.0), addr.ip())
                .map_err(|e| (Broken::Unreachable, ClientError::Tls { addr, source: Arc::new(e) }))?,
        ),
    };
    Ok(Conn::new(tcp, session))
}

/// The session's error as the client reports it: the transport errors this
/// client hands the session are [`ClientError`]s already (classified where
/// the socket failed, by [`connect`] and `io_error`).
fn client_error(e: CallError<ClientError>) -> ClientError {
    ClientError::from_call(e, |_, _, error| error)
}

/// The session's last error, for an attempt that ended without a caller's
/// completion (a handshake of [`ClientSession::open`]).
fn last_error(session: &ClientSession<ClientError>) -> ClientError {
    match session.last_error() {
        Some(e) => client_error(e.clone()),
        None => ClientError::Closed { addr: session.addr() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leasetso_core::Role;
    use std::time::Duration;

    #[cfg(feature = "server")]
    #[test]
    fn pipelined_requests_against_a_real_server_hand_out_unique_ranges() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = crate::ServerConfig::new("127.0.0.1:0".parse().unwrap(), dir.path());
        let server = crate::Server::start(cfg).unwrap();
        assert!(server.wait_serving(Duration::from_secs(10)));
        let opts = ClientOptions { max_in_flight: 3, max_batch: 4, ..ClientOptions::default() };
        let client = Arc::new(Client::connect_with(server.local_addr(), opts).unwrap());
        let handles: Vec<_> = (0..12u32)
            .map(|t| {
                let client = Arc::clone(&client);
                thread::spawn(move || {
                    let count = t % 3 + 1;
                    (0..50).map(|_| (count, client.get_ts_n(count).unwrap().to_u64())).collect::<Vec<_>>()
                })
            })
            .collect();
        let mut ranges: Vec<(u64, u64)> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .map(|(count, last)| (last + 1 - u64::from(count), last))
            .collect();
        ranges.sort_unstable();
        assert_eq!(ranges.len(), 600);
        for w in ranges.windows(2) {
            assert!(w[0].1 < w[1].0, "ranges overlap: {w:?}");
        }
        assert_eq!(client.status().unwrap().role, Role::Leader);
        server.shutdown();
    }

    #[test]
    fn client_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Client>();
    }
}
