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

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, Thread};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use leasetso_core::client::{Action, Answer, Broken, Call, ConnState, StatusReply, TRANSMIT_MIN};
use leasetso_core::{
    CallError, ClientConfig, ClientSession, LeaderHint, LeaseView, NodeId, Role, Ticket, Timestamp,
};

use crate::error::ClientError;

/// The largest count one request can carry: a range must fit one millisecond.
pub const MAX_COUNT: u32 = leasetso_core::client::MAX_COUNT;

/// How a [`Client`] behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientOptions {
    /// The cluster the client expects; 0 accepts any. A server of another
    /// cluster refuses the handshake.
    pub cluster_id: u64,
    /// How long one TCP connect may take. Zero waits as long as the system does.
    pub connect_timeout: Duration,
    /// How long one request may wait for its reply. Zero waits forever. A
    /// request that times out is retried (elsewhere) within the deadline.
    pub request_timeout: Duration,
    /// How long one call ([`Client::get_ts_n`], [`Client::status`]) keeps
    /// retrying failures that may pass (not the leader, logical clock
    /// exhausted, internal error, connection refused, lost or closed,
    /// timeout) before it returns the last one. Counted from the call (for
    /// merged calls: from the oldest caller of the request). No new attempt
    /// starts after it, but the attempt under way finishes, so a call may
    /// return up to one connect and one request timeout later. Zero makes
    /// exactly one attempt. It should outlast a failover, about 2 × D_A (the
    /// module documentation says why).
    pub deadline: Duration,
    /// The first pause before a retry; it doubles per pause up to
    /// `max_backoff`, and each pause is drawn uniformly from `[pause/2,
    /// pause]`.
    pub retry_backoff: Duration,
    /// The longest pause between retries.
    pub max_backoff: Duration,
    /// The most timestamps merged into one request (PD: 10,000). A single
    /// call for more than this is sent alone. At most [`MAX_COUNT`]. A server
    /// configured with fewer timestamps per millisecond refuses a large merged
    /// batch as `CountTooLarge`; the client then halves its cap and resends
    /// the same callers, so only a caller whose own count is too large gets
    /// that error.
    pub max_batch: u32,
    /// The most requests outstanding on the connection (at least 1; 0 counts
    /// as 1). One by default: the sender thread writes a request and waits
    /// for its reply, and the callers arriving meanwhile are merged into the
    /// next one. More pipelines requests once more than `max_batch`
    /// timestamps are waiting.
    pub max_in_flight: usize,
}

impl Default for ClientOptions {
    /// Any cluster, 3 s to connect and per reply, retries for 7 s (over
    /// 2 × D_A = 6.1 s with the default 3 s lease) with pauses from 10 ms
    /// doubling to 250 ms, batches of up to 10,000, one request in flight.
    /// The session's values are the core's defaults ([`ClientConfig`]),
    /// but for the one request in flight.
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
            max_in_flight: 1,
        }
    }
}

impl ClientOptions {
    /// The session's share of the options (the connect timeout stays here:
    /// the connect is this runtime's).
    fn session(&self) -> ClientConfig {
        ClientConfig {
            cluster_id: self.cluster_id,
            request_timeout: self.request_timeout,
            deadline: self.deadline,
            retry_backoff: self.retry_backoff,
            max_backoff: self.max_backoff,
            max_batch: self.max_batch,
            max_in_flight: self.max_in_flight.max(1),
        }
    }
}

/// A node's status, as it reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeStatus {
    /// The node's role.
    pub role: Role,
    /// The answering node.
    pub node: NodeId,
    /// Who serves, as far as the node knows.
    pub leader: LeaderHint,
    /// The saved window end in ms (0 unless serving).
    pub window_end_ms: u64,
    /// The last timestamp handed out (zero unless serving).
    pub current: Timestamp,
    /// The lease, the quarantine, the fence and the peer links.
    pub view: LeaseView,
}

impl fmt::Display for NodeStatus {
    /// One line of `key=value` pairs, node ids 1-based as on the command
    /// line: `node=1 role=leader leader=1 leader_addr=... mode=deferring
    /// primary=none (or primary=2 primary_tag=(0,3,1)) lease=(c,r,n)
    /// lease_owner=1 lease_left_ms=... quarantine_left_ms=... fence=(c,r,n)
    /// window_end_ms=... current=... links=1:self,2:up,3:down` (`none` for
    /// what is unknown; `current` is the packed timestamp; a ballot is
    /// `(counter,restart,node)` with the node 0-based, as on the wire).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let id = |n: Option<NodeId>| n.map_or_else(|| "none".to_string(), |n| (n.0 + 1).to_string());
        let ballot =
            |b: Option<leasetso_core::Ballot>| b.map_or_else(|| "none".to_string(), |b| b.to_string());
        write!(f, "node={} role={} leader={}", self.node.0 + 1, self.role.as_str(), id(self.leader.node))?;
        if let Some(addr) = self.leader.addr {
            write!(f, " leader_addr={addr}")?;
        }
        let v = &self.view;
        write!(f, " mode={}", v.mode.as_str())?;
        match v.primary {
            Some((p, tag)) => write!(f, " primary={} primary_tag={tag}", p.0 + 1)?,
            None => f.write_str(" primary=none")?,
        }
        write!(
            f,
            " lease={} lease_owner={} lease_left_ms={} quarantine_left_ms={} fence={} window_end_ms={} current={} links=",
            ballot(v.lease),
            id(v.lease.map(|b| b.node)),
            v.lease_left_ms,
            v.quarantine_left_ms,
            ballot(v.fence),
            self.window_end_ms,
            self.current.to_u64()
        )?;
        for i in 0..v.nodes.max(1) {
            let state = if i == self.node.0 {
                "self"
            } else if v.links_up & (1 << i) != 0 {
                "up"
            } else {
                "down"
            };
            write!(f, "{}{}:{state}", if i == 0 { "" } else { "," }, i + 1)?;
        }
        Ok(())
    }
}

/// A blocking leasetso client; `Send + Sync`, share it across threads.
pub struct Client {
    opts: ClientOptions,
    /// The session and who waits for what. Never held across I/O: callers
    /// queue while the sender reads and writes.
    shared: Mutex<Shared>,
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
struct Shared {
    session: ClientSession<ClientError>,
    /// The waiting callers by ticket number.
    slots: HashMap<u64, Arc<Slot>, BuildHasherDefault<TicketHasher>>,
    /// Whether a caller holds the sender role.
    sending: bool,
}

/// The socket and its buffers, allocated once per client.
struct Io {
    tcp: Option<TcpStream>,
    out: Box<[u8]>,
    inp: Box<[u8]>,
}

/// Room for the Hello and a few requests per write.
const OUT: usize = 4 * TRANSMIT_MIN;
/// One read's worth of replies.
const INP: usize = 16 * 1024;

/// Tickets are consecutive numbers: a multiplicative hash spreads them over
/// the table without SipHash's cost.
#[derive(Default)]
struct TicketHasher(u64);

impl Hasher for TicketHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

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
/// sender (the [`Shared`] invariant).
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
        st.slots.remove(&self.me.get());
        let next = st
            .session
            .pending()
            .and_then(|t| st.slots.get(&t.get()))
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
type Until<'a, R> = &'a mut dyn FnMut(&mut Shared, bool) -> Option<R>;

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
        let mut seeds = Vec::new();
        for a in addr.to_socket_addrs().map_err(|e| ClientError::Resolve { source: Arc::new(e) })? {
            push_new(&mut seeds, a);
        }
        // The only refusals: no seeds, and zero in flight (`session()`
        // raises it to 1).
        let session =
            ClientSession::new(opts.session(), &seeds, rng_seed()).map_err(|_| ClientError::NoSeeds)?;
        let client = Client {
            opts,
            shared: Mutex::new(Shared { session, slots: HashMap::default(), sending: false }),
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
            Answer::Status(StatusReply { role, node, leader, window_end_ms, current, view }) => {
                Ok(NodeStatus { role, node, leader, window_end_ms, current, view })
            }
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
        st.slots.insert(ticket.get(), Arc::clone(&me));
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
                let slot = st.slots.remove(&done.ticket.get());
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
    fn drive<'c, R>(&'c self, mut st: MutexGuard<'c, Shared>, until: Until<'_, R>) -> R {
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
                    Some(tcp) => tcp.write_all(&io.out[..n]),
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
                    Some(tcp) => read(tcp, &mut io.inp),
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
        if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) {
            (Broken::Unreachable, ClientError::Timeout { addr, after: self.opts.request_timeout })
        } else {
            (Broken::Lost, ClientError::Io { addr, source: Arc::new(e) })
        }
    }
}

/// Opens a connection with the options' timeouts (the request timeout as
/// the socket's read and write timeouts).
fn connect(addr: SocketAddr, opts: &ClientOptions) -> Result<TcpStream, (Broken, ClientError)> {
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
    Ok(tcp)
}

/// One read, retrying an interrupted one.
fn read(tcp: &mut TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match tcp.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
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

/// A seed that differs between clients: the wall clock's nanoseconds (apart
/// for processes started at different times), a process-wide count of
/// clients (apart within a process) and the process id.
fn rng_seed() -> u64 {
    static CLIENTS: AtomicU64 = AtomicU64::new(0);
    let n = CLIENTS.fetch_add(1, Ordering::Relaxed);
    // Truncating keeps the fast-changing low bits.
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    nanos ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (u64::from(std::process::id()) << 40)
}

/// Parses a comma-separated list of seed addresses, `"host:port,host:port"`,
/// as a command line gives them (`get-ts --addr a:7400,b:7400,c:7400`), for
/// [`Client::connect_with`] (pass `&seeds[..]`).
///
/// Whitespace around entries and empty entries (a trailing comma) are
/// ignored; host names are resolved, each to all its addresses, and an
/// address listed twice is kept once, in its first place. An empty list is
/// [`ClientError::NoSeeds`]; an entry that is not `host:port` or does not
/// resolve is [`ClientError::Seed`], naming the entry: a mistyped seed is
/// reported rather than silently skipped, since it may be the leader.
pub fn parse_seeds(list: &str) -> Result<Vec<SocketAddr>, ClientError> {
    let mut seeds = Vec::new();
    for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let seed_err =
            |source: io::Error| ClientError::Seed { entry: entry.to_owned(), source: Arc::new(source) };
        let mut resolved = entry.to_socket_addrs().map_err(seed_err)?.peekable();
        if resolved.peek().is_none() {
            return Err(seed_err(io::Error::new(io::ErrorKind::NotFound, "resolves to no address")));
        }
        for addr in resolved {
            push_new(&mut seeds, addr);
        }
    }
    if seeds.is_empty() {
        return Err(ClientError::NoSeeds);
    }
    Ok(seeds)
}

/// Appends `addr` unless it is already there.
fn push_new(seeds: &mut Vec<SocketAddr>, addr: SocketAddr) {
    if !seeds.contains(&addr) {
        seeds.push(addr);
    }
}

/// For locks whose data a panic cannot leave inconsistent: the client's code
/// under them does not panic, and a half-read connection is dropped on error.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_line() {
        let status = NodeStatus {
            role: Role::Leader,
            node: NodeId(0),
            leader: LeaderHint { node: Some(NodeId(0)), addr: None },
            window_end_ms: 5,
            current: Timestamp::new(3, 2).unwrap(),
            view: LeaseView {
                lease: Some(leasetso_core::Ballot::new(4, 1, NodeId(0))),
                lease_left_ms: 900,
                quarantine_left_ms: 0,
                fence: Some(leasetso_core::Ballot::new(2, 1, NodeId(0))),
                links_up: 0b011,
                nodes: 3,
                mode: leasetso_core::Mode::Deferring,
                primary: None,
            },
        };
        assert_eq!(
            status.to_string(),
            "node=1 role=leader leader=1 mode=deferring primary=none lease=(4,1,0) lease_owner=1 lease_left_ms=900 quarantine_left_ms=0 \
             fence=(2,1,0) window_end_ms=5 current=786434 links=1:self,2:up,3:down"
        );
        let none = NodeStatus {
            leader: LeaderHint::default(),
            role: Role::Follower,
            view: LeaseView { nodes: 1, ..LeaseView::default() },
            ..status
        };
        assert_eq!(
            none.to_string(),
            "node=1 role=follower leader=none mode=deferring primary=none lease=none lease_owner=none lease_left_ms=0 \
             quarantine_left_ms=0 fence=none window_end_ms=5 current=786434 links=1:self"
        );
    }

    #[test]
    fn two_clients_made_at_once_draw_differently() {
        assert_ne!(rng_seed(), rng_seed());
    }

    #[test]
    fn tickets_hash_apart() {
        let hash = |n: u64| {
            let mut h = TicketHasher::default();
            h.write_u64(n);
            h.finish()
        };
        // hashbrown picks buckets from the low bits and tags from the top 7.
        assert_ne!(hash(1) & 0xff, hash(2) & 0xff);
        assert_ne!(hash(1) >> 57, hash(2) >> 57);
    }

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
    fn default_options_are_the_cores_with_one_request_in_flight() {
        let opts = ClientOptions::default();
        assert_eq!(opts.session(), ClientConfig { max_in_flight: 1, ..ClientConfig::default() });
        assert_eq!(opts.connect_timeout, Duration::from_secs(3));
    }

    #[test]
    fn client_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Client>();
    }
}
