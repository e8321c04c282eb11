//! The blocking client.
//!
//! One [`Client`] holds one connection and is meant to be shared by many
//! threads. Timestamps are latency-bound: instead of one round trip per call,
//! concurrent callers are merged into one request with the summed count (as
//! PD's client does), and the reply's range is split among them in order.
//!
//! The merging is a leader/follower scheme. A caller enqueues a [`Slot`]
//! holding its count; if no caller holds the sender role it takes it. The
//! sender takes the queue's head (up to [`ClientOptions::max_batch`]
//! timestamps), sends it, writes each caller's own sub-range into that
//! caller's slot and wakes exactly that caller; it repeats until its own range
//! is in, then hands the role to the oldest queued caller. Callers arriving
//! meanwhile queue up and go out together in the next request. There is
//! exactly one request in flight per connection.
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
//! client address, see [`parse_seeds`]) and finds the leader from them:
//!
//! * a hint naming another address is followed at once: landing on a
//!   follower costs one extra round trip, not a pause;
//! * a hinted address that refuses the connection or does not answer is
//!   stale (the leader it names is dead, and the followers keep naming it
//!   until its lease runs out), so the client goes back to the seeds, from
//!   the one after the seed it tried last;
//! * `NotLeader` with no hint (nobody serves yet, or the node does not know
//!   who does) moves to the next seed after a pause. A hint naming the node
//!   itself means it holds the lease and is loading the window: it is asked
//!   again after a pause. Hints with an unspecified address (`0.0.0.0`) are
//!   ignored: they name no reachable node;
//! * at most two moves in a row are made without a pause. Two nodes naming
//!   each other, or seeds repeating the hint of a dead leader, would
//!   otherwise keep the client in a tight loop; after two, the next attempt
//!   waits, and every pause breaks the row.
//!
//! Pauses grow exponentially from [`ClientOptions::retry_backoff`] to
//! [`ClientOptions::max_backoff`] and are jittered (uniform in `[pause/2,
//! pause]`, from a small per-client generator) so that the clients of a dead
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
//! The whole search runs inside the sender's request, with the connection's
//! lock held: there is one request in flight per connection, so the callers
//! arriving meanwhile queue up and are merged into the first request that
//! reaches the leader. A batch's deadline counts from its oldest caller's
//! arrival, so a caller queued behind a request that failed for the whole
//! deadline is not made to wait a second deadline.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, Thread};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use leasetso_core::rng::Rng;
use leasetso_core::wire::{LEN_PREFIX, MAX_FRAME_LEN, VERSION};
use leasetso_core::{ErrorCode, Frame, LeaderHint, LeaseView, MAX_LOGICAL, NodeId, Role, Timestamp};

use crate::error::ClientError;

/// The largest count one request can carry: a range must fit one millisecond.
pub const MAX_COUNT: u32 = MAX_LOGICAL - 1;

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
}

impl Default for ClientOptions {
    /// Any cluster, 3 s to connect and per reply, retries for 7 s (over
    /// 2 × D_A = 6.1 s with the default 3 s lease) with pauses from 10 ms
    /// doubling to 250 ms, batches of up to 10,000.
    fn default() -> Self {
        ClientOptions {
            cluster_id: 0,
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(3),
            deadline: Duration::from_secs(7),
            retry_backoff: Duration::from_millis(10),
            // Short enough that a client waiting out a failover reaches the
            // new leader soon after it serves.
            max_backoff: Duration::from_millis(250),
            max_batch: 10_000,
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
    link: Mutex<Link>,
    batcher: Mutex<Batcher>,
    /// The server talked to now, a copy of the link's. The link's lock is
    /// held for a whole request, retries included (seconds in a failover):
    /// [`Client::server_addr`] reads this instead of waiting for it.
    current: Arc<Mutex<SocketAddr>>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client").field("server", &self.server_addr()).field("opts", &self.opts).finish()
    }
}

/// Callers waiting for timestamps, and who sends for them.
///
/// Invariant (no caller sleeps forever): whenever `queue` is not empty,
/// `sending` is true, and exactly one caller holds the sender role, either
/// running a [`Sender`] or about to (its slot was posted [`Wake::Send`]).
/// A sender serves the queue, oldest first, until its own range is in, and
/// then hands the role to the oldest queued caller or, with an empty queue,
/// clears `sending`: both under this lock, so a caller that enqueues sees
/// either a sender that will serve it or no sender and becomes one.
struct Batcher {
    /// Callers whose counts have not been sent, oldest first.
    queue: VecDeque<Arc<Slot>>,
    /// Whether a caller holds the sender role.
    sending: bool,
    /// The batch buffer, reused by successive senders.
    spare: Vec<Arc<Slot>>,
    /// The most timestamps merged into one request: the option, lowered when
    /// the server refuses a merged batch as too large (a server configured
    /// with fewer timestamps per millisecond).
    max_batch: u32,
}

/// One call's place in the batcher: what it asks for, where its answer goes,
/// and the thread to wake when it is there.
struct Slot {
    count: u32,
    /// When the call was made: the deadline of the request carrying it
    /// counts from its oldest caller's.
    since: Instant,
    /// The calling thread, parked until `wake` is set.
    thread: Thread,
    /// Set once per call by the sender: the call's result or the sender role.
    /// A lock of its own, so that a woken caller does not contend for the
    /// batcher's lock only to read its result.
    wake: Mutex<Option<Wake>>,
}

/// Why a caller was woken.
enum Wake {
    /// Its range, or the error of the request that carried its count.
    Done(Result<Timestamp, ClientError>),
    /// It is now the sender (its count is still queued, at the front).
    Send,
}

impl Slot {
    fn new(count: u32) -> Arc<Slot> {
        Arc::new(Slot { count, since: Instant::now(), thread: thread::current(), wake: Mutex::new(None) })
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
/// on return and on unwinding alike, so the queued callers always have a
/// sender (the [`Batcher`] invariant).
struct Sender<'a> {
    client: &'a Client,
    /// The sending caller's own slot: it sends until this one is answered.
    me: &'a Arc<Slot>,
    /// The callers of the request being sent, in queue order: taken off the
    /// queue and not answered yet. Empty between requests.
    batch: Vec<Arc<Slot>>,
}

impl Sender<'_> {
    /// Sends batches, oldest callers first, until the sender's own count has
    /// been answered; returns its result.
    fn run(&mut self) -> Result<Timestamp, ClientError> {
        loop {
            // Only a sender posts to this slot, and it never posts `Send` to
            // itself: the slot holds nothing or the caller's result.
            if let Some(Wake::Done(result)) = lock(&self.me.wake).take() {
                return result;
            }
            // This caller's count is still queued (it was not answered), so
            // the batch is not empty.
            let (total, since) = {
                let mut b = lock(&self.client.batcher);
                let mut total = 0u32;
                // Queue order is arrival order: the callers taken (ahead of
                // this one, or with it) arrived no later than it did.
                let mut since = self.me.since;
                while let Some(slot) = b.queue.front() {
                    // Both at most MAX_COUNT < 2^18: no overflow.
                    if !self.batch.is_empty() && total + slot.count > b.max_batch {
                        break;
                    }
                    total += slot.count;
                    since = since.min(slot.since);
                    self.batch.extend(b.queue.pop_front());
                }
                (total, since)
            };
            let result = self.client.request_ts(total, since);
            if self.batch.len() > 1
                && result.as_ref().is_err_and(|e| e.code() == Some(ErrorCode::CountTooLarge))
            {
                // Merging made the count too large, not any one caller:
                // send smaller batches from now on, these callers first.
                let mut b = lock(&self.client.batcher);
                b.max_batch = (total / 2).max(1);
                tracing::debug!(total, max_batch = b.max_batch, "batch too large for the server; shrinking");
                for slot in self.batch.drain(..).rev() {
                    b.queue.push_front(slot);
                }
            } else {
                // Each caller of the batch gets its own sub-range (or the
                // error) and is woken; the sender's own slot is only written.
                for (slot, result) in split(&result, &self.batch, |slot| slot.count) {
                    if Arc::ptr_eq(slot, self.me) {
                        *lock(&slot.wake) = Some(Wake::Done(result));
                    } else {
                        slot.post(Wake::Done(result));
                    }
                }
                self.batch.clear();
            }
        }
    }
}

impl Drop for Sender<'_> {
    /// Hands the sender role to the oldest queued caller, or gives it up
    /// when nobody waits (then no one is woken: no system call at one caller).
    fn drop(&mut self) {
        let mut b = lock(&self.client.batcher);
        if thread::panicking() {
            // Unwinding mid-request: the callers taken off the queue have no
            // answer; they go back to its front and the next sender sends
            // them. This caller's own count goes nowhere: no one waits for it.
            b.queue.retain(|slot| !Arc::ptr_eq(slot, self.me));
            for slot in self.batch.drain(..).rev() {
                if !Arc::ptr_eq(&slot, self.me) {
                    b.queue.push_front(slot);
                }
            }
        }
        self.batch.clear();
        b.spare = std::mem::take(&mut self.batch);
        let next = b.queue.front().cloned();
        if next.is_none() {
            b.sending = false;
        }
        drop(b);
        // The next sender stays at the queue's front, where no one else takes
        // it: there is no other sender until it runs.
        if let Some(next) = next {
            next.post(Wake::Send);
        }
    }
}

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
        let Some(&first) = seeds.first() else {
            return Err(ClientError::NoSeeds);
        };
        let current = Arc::new(Mutex::new(first));
        let mut link = Link {
            seeds,
            seed: 0,
            addr: first,
            hinted: false,
            current: Arc::clone(&current),
            conn: None,
            next_id: 1,
            rng: Rng::new(rng_seed()),
        };
        // `seeds` is not empty: `last` is set by the first failure or the
        // loop returns early.
        let mut last = ClientError::NoSeeds;
        for i in 0..link.seeds.len() {
            link.go_seed(i);
            match link.ensure(&opts) {
                Ok(()) => {
                    return Ok(Client {
                        opts,
                        link: Mutex::new(link),
                        batcher: Mutex::new(Batcher {
                            queue: VecDeque::new(),
                            sending: false,
                            spare: Vec::new(),
                            max_batch: opts.max_batch.clamp(1, MAX_COUNT),
                        }),
                        current,
                    });
                }
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
        *lock(&self.current)
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
        let me = Slot::new(count);
        let mut b = lock(&self.batcher);
        b.queue.push_back(Arc::clone(&me));
        if b.sending {
            drop(b);
            match me.wait() {
                Wake::Done(result) => return result,
                Wake::Send => {}
            }
            b = lock(&self.batcher);
        } else {
            b.sending = true;
        }
        let batch = std::mem::take(&mut b.spare);
        drop(b);
        Sender { client: self, me: &me, batch }.run()
    }

    /// The status of the server the client talks to.
    pub fn status(&self) -> Result<NodeStatus, ClientError> {
        let mut link = lock(&self.link);
        let mut retry = Retry::new(&self.opts, Instant::now());
        loop {
            let err = match link.round_trip(&self.opts, |id| Frame::GetStatus { id }) {
                Ok((sent, Frame::Status { id, role, node, leader, window_end_ms, current, view }))
                    if id == sent =>
                {
                    return Ok(NodeStatus { role, node, leader, window_end_ms, current, view });
                }
                Ok(_) => link.unexpected_reply(),
                Err(e) => e,
            };
            if !err.is_retryable() || !retry.next(&mut link, &err) {
                return Err(err);
            }
        }
    }

    /// The primary registration on the replica of the node this client talks
    /// to (no redirect: every node has a replica of its own).
    pub fn read_primary(&self) -> Result<Option<(NodeId, leasetso_core::Ballot)>, ClientError> {
        self.primary_request(|id| Frame::ReadPrimary { id })
    }

    /// Clears the registration on the replica of the node this client talks
    /// to if it is exactly `(node, tag)`; returns what is registered after.
    pub fn clear_primary(
        &self,
        node: NodeId,
        tag: leasetso_core::Ballot,
    ) -> Result<Option<(NodeId, leasetso_core::Ballot)>, ClientError> {
        self.primary_request(|id| Frame::ClearPrimary { id, node, tag })
    }

    fn primary_request(
        &self,
        request: impl Fn(u64) -> Frame,
    ) -> Result<Option<(NodeId, leasetso_core::Ballot)>, ClientError> {
        let mut link = lock(&self.link);
        match link.round_trip(&self.opts, request) {
            Ok((sent, Frame::Primary { id, registered })) if id == sent => Ok(registered),
            Ok(_) => Err(link.unexpected_reply()),
            Err(e) => Err(e),
        }
    }

    /// Sends one GetTS for `total` timestamps, retrying (and finding the
    /// leader) until the deadline counted from `since`, the oldest caller's
    /// arrival.
    fn request_ts(&self, total: u32, since: Instant) -> Result<Timestamp, ClientError> {
        let mut link = lock(&self.link);
        let mut retry = Retry::new(&self.opts, since);
        loop {
            let err = match link.round_trip(&self.opts, |id| Frame::GetTs { id, count: total }) {
                Ok((sent, Frame::Ts { id, count, last })) if id == sent => {
                    // The range must be `total` timestamps inside one millisecond,
                    // never reaching logical 0.
                    if count == total && last.logical >= total {
                        return Ok(last);
                    }
                    link.drop_conn();
                    ClientError::Unexpected {
                        addr: link.addr,
                        what: "a range that does not match the request",
                    }
                }
                Ok(_) => link.unexpected_reply(),
                Err(e) => e,
            };
            if !err.is_retryable() || !retry.next(&mut link, &err) {
                return Err(err);
            }
        }
    }
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

/// Hands each caller of a batch (whose count `count` reads) its own
/// sub-range of the reply, in order: the first caller gets the lowest
/// timestamps. Every caller of a failed batch gets the error.
fn split<'a, T>(
    result: &'a Result<Timestamp, ClientError>,
    batch: &'a [T],
    count: impl Fn(&T) -> u32 + 'a,
) -> impl Iterator<Item = (&'a T, Result<Timestamp, ClientError>)> + 'a {
    let total: u64 = batch.iter().map(|c| u64::from(count(c))).sum();
    // `request_ts` checked `last.logical >= total`: the range stays in one
    // millisecond, so packed arithmetic is logical arithmetic.
    let mut end = result.as_ref().map_or(0, |last| last.to_u64() - total);
    batch.iter().map(move |caller| {
        end += u64::from(count(caller));
        (caller, result.clone().map(|_| Timestamp::from_u64(end)))
    })
}

/// For locks whose data a panic cannot leave inconsistent: the client's code
/// under them does not panic, and a half-read connection is dropped on error.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// How many moves may follow one another without a pause: enough to follow
/// a hint and to fall back from a stale one to a seed, not enough to spin
/// between two nodes naming each other.
const AT_ONCE: u32 = 2;

/// The least that pauses grow by, so that a zero `retry_backoff` still backs off.
const MIN_STEP: Duration = Duration::from_millis(1);

/// Where the next attempt goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Move {
    /// The same address again.
    Stay,
    /// The hinted leader's address.
    Hint(SocketAddr),
    /// The seed after the one tried last.
    NextSeed,
}

/// What to do after a retryable failure: where to go, and whether it may be
/// done at once (still subject to [`AT_ONCE`]) or only after a pause.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Step {
    to: Move,
    at_once: bool,
}

/// The redirect decision (the rules of the module documentation) for a
/// retryable `err` from `addr`, which came from a hint if `hinted`;
/// `lost_here` says whether a connection to `addr` was already lost during
/// this call.
fn plan(err: &ClientError, addr: SocketAddr, hinted: bool, lost_here: bool) -> Step {
    let step = |to, at_once| Step { to, at_once };
    match err {
        ClientError::Server { code: ErrorCode::NotLeader, leader, .. } => {
            match leader.addr.filter(|a| !a.ip().is_unspecified() && a.port() != 0) {
                // Redirected: go there at once.
                Some(to) if to != addr => step(Move::Hint(to), true),
                // It names itself: it holds the lease and is loading the
                // window; it serves shortly.
                Some(_) => step(Move::Stay, false),
                // Nobody serves yet, or this node does not know who does.
                None => step(Move::NextSeed, false),
            }
        }
        // The window is being extended, here.
        ClientError::Server { code: ErrorCode::LogicalExhausted, .. } => step(Move::Stay, false),
        // `Internal`: this node is failing; another may take over from it.
        ClientError::Server { .. } => step(Move::NextSeed, false),
        // The server was there a moment ago (it closed an idle connection, or
        // restarted): reopen at once. A second loss moves on, below, so that
        // a node accepting and closing every connection cannot hold the
        // client.
        ClientError::Io { .. } | ClientError::Closed { .. } if !lost_here => step(Move::Stay, true),
        // Refused, timed out, or lost again. A hinted leader that does not
        // answer is stale: back to the seeds at once. A seed that does not
        // answer: the next one, after a pause.
        ClientError::Connect { .. }
        | ClientError::Timeout { .. }
        | ClientError::Io { .. }
        | ClientError::Closed { .. } => step(Move::NextSeed, hinted),
        // Not retryable: never asked.
        _ => step(Move::Stay, false),
    }
}

/// The retry state of one call: its deadline, the next pause, and the moves
/// made in a row without one.
struct Retry {
    /// No attempt starts after it; `None` when the deadline lies beyond
    /// what an `Instant` can hold (never).
    until: Option<Instant>,
    /// The longest next pause (the pause is drawn from its upper half).
    pause: Duration,
    max: Duration,
    /// Moves made at once since the last pause.
    at_once: u32,
    /// Whether a connection to the current address was lost in this call.
    lost_here: bool,
}

impl Retry {
    fn new(opts: &ClientOptions, since: Instant) -> Self {
        Retry {
            until: since.checked_add(opts.deadline),
            pause: opts.retry_backoff.min(opts.max_backoff),
            max: opts.max_backoff,
            at_once: 0,
            lost_here: false,
        }
    }

    /// Prepares the retry after the retryable `err`: follows a hint, falls
    /// back on the seeds or stays, and pauses unless the move may be made
    /// at once. Returns false, without pausing, once the deadline has passed.
    fn next(&mut self, link: &mut Link, err: &ClientError) -> bool {
        let left = match self.until {
            Some(until) => until.saturating_duration_since(Instant::now()),
            None => Duration::MAX,
        };
        if left.is_zero() {
            tracing::debug!(error = %err, "retry deadline reached");
            return false;
        }
        let step = plan(err, link.addr, link.hinted, self.lost_here);
        match step.to {
            Move::Stay => {
                self.lost_here |= matches!(err, ClientError::Io { .. } | ClientError::Closed { .. });
            }
            Move::Hint(to) => {
                tracing::debug!(from = %link.addr, %to, "following the leader hint");
                link.go(to, true);
                self.lost_here = false;
            }
            Move::NextSeed => {
                link.go_seed(link.seed + 1);
                self.lost_here = false;
            }
        }
        if step.at_once && self.at_once < AT_ONCE {
            self.at_once += 1;
            tracing::debug!(error = %err, to = %link.addr, "retrying at once");
        } else {
            self.at_once = 0;
            // The last pause is cut short so that the last attempt starts at
            // the deadline rather than not at all.
            let pause = link.rng.jitter(self.pause).min(left);
            self.pause = self.pause.saturating_mul(2).max(MIN_STEP).min(self.max);
            tracing::debug!(error = %err, to = %link.addr, ?pause, "retrying after a pause");
            thread::sleep(pause);
        }
        true
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

/// The connection and where it goes.
struct Link {
    /// The addresses the client was given; never empty (`connect_with`
    /// refuses an empty list).
    seeds: Vec<SocketAddr>,
    /// The seed tried last: falling back starts after it.
    seed: usize,
    /// The server talked to now.
    addr: SocketAddr,
    /// Whether `addr` came from a leader hint rather than from the seeds.
    hinted: bool,
    /// The client's copy of `addr`, for [`Client::server_addr`].
    current: Arc<Mutex<SocketAddr>>,
    conn: Option<Conn>,
    next_id: u64,
    /// Jitter for the pauses; under the link's lock, like the retries.
    rng: Rng,
}

/// An open, handshaken connection.
struct Conn {
    tcp: TcpStream,
    buf: Box<[u8; BUF]>,
    start: usize,
    end: usize,
}

/// Room for one whole frame of the largest size.
const BUF: usize = LEN_PREFIX + MAX_FRAME_LEN as usize;

impl Link {
    fn drop_conn(&mut self) {
        self.conn = None;
    }

    /// Moves to `addr` (dropping the connection if it goes elsewhere).
    fn go(&mut self, addr: SocketAddr, hinted: bool) {
        if addr != self.addr {
            self.drop_conn();
            self.addr = addr;
            *lock(&self.current) = addr;
        }
        self.hinted = hinted;
    }

    /// Moves to the `i`-th seed, counting round (`seeds` is never empty).
    fn go_seed(&mut self, i: usize) {
        self.seed = i % self.seeds.len();
        self.go(self.seeds[self.seed], false);
    }

    /// Connects and does the handshake, unless already connected.
    fn ensure(&mut self, opts: &ClientOptions) -> Result<(), ClientError> {
        if self.conn.is_some() {
            return Ok(());
        }
        let addr = self.addr;
        let connected = if opts.connect_timeout.is_zero() {
            TcpStream::connect(addr)
        } else {
            TcpStream::connect_timeout(&addr, opts.connect_timeout)
        };
        let tcp = connected.map_err(|e| {
            if matches!(e.kind(), io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock) {
                ClientError::Timeout { addr, after: opts.connect_timeout }
            } else {
                ClientError::Connect { addr, source: Arc::new(e) }
            }
        })?;
        let io_err = |e: io::Error| ClientError::Io { addr, source: Arc::new(e) };
        tcp.set_nodelay(true).map_err(io_err)?;
        let timeout = (!opts.request_timeout.is_zero()).then_some(opts.request_timeout);
        tcp.set_read_timeout(timeout).map_err(io_err)?;
        tcp.set_write_timeout(timeout).map_err(io_err)?;
        self.conn = Some(Conn { tcp, buf: Box::new([0; BUF]), start: 0, end: 0 });
        match self.exchange(opts, Frame::Hello { version: VERSION, cluster_id: opts.cluster_id }) {
            Ok(Frame::Welcome { version, cluster_id, .. })
                if version == VERSION && (opts.cluster_id == 0 || cluster_id == opts.cluster_id) =>
            {
                Ok(())
            }
            Ok(Frame::Error { code, leader, .. }) => {
                self.drop_conn();
                Err(ClientError::Server { addr, code, leader })
            }
            Ok(_) => {
                self.drop_conn();
                Err(ClientError::Unexpected { addr, what: "the handshake was not answered with Welcome" })
            }
            Err(e) => Err(e),
        }
    }

    /// Sends a request built from a fresh id and reads its reply, connecting
    /// first if needed. Returns the id and the reply; an `Error` frame for
    /// this request becomes [`ClientError::Server`].
    fn round_trip(
        &mut self,
        opts: &ClientOptions,
        request: impl Fn(u64) -> Frame,
    ) -> Result<(u64, Frame), ClientError> {
        self.ensure(opts)?;
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        match self.exchange(opts, request(id))? {
            Frame::Error { id: 0, code, leader } if code.is_fatal() => {
                // The server closes after a fatal error.
                self.drop_conn();
                Err(ClientError::Server { addr: self.addr, code, leader })
            }
            Frame::Error { id: got, code, leader } if got == id => {
                Err(ClientError::Server { addr: self.addr, code, leader })
            }
            reply => Ok((id, reply)),
        }
    }

    /// A reply that answers something else: the connection is out of step.
    fn unexpected_reply(&mut self) -> ClientError {
        self.drop_conn();
        ClientError::Unexpected { addr: self.addr, what: "a reply that does not answer the request" }
    }

    /// Writes `frame` and reads one frame back. Any failure drops the
    /// connection: after it, the stream's position is unknown.
    fn exchange(&mut self, opts: &ClientOptions, frame: Frame) -> Result<Frame, ClientError> {
        let addr = self.addr;
        let Some(conn) = self.conn.as_mut() else {
            return Err(ClientError::Closed { addr });
        };
        let result = conn.exchange(frame).map_err(|e| match e {
            ConnError::Io(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                ClientError::Timeout { addr, after: opts.request_timeout }
            }
            ConnError::Io(e) => ClientError::Io { addr, source: Arc::new(e) },
            ConnError::Closed => ClientError::Closed { addr },
            ConnError::Wire(source) => ClientError::Protocol { addr, source },
        });
        if result.is_err() {
            self.drop_conn();
        }
        result
    }
}

enum ConnError {
    Io(io::Error),
    Closed,
    Wire(leasetso_core::WireError),
}

impl Conn {
    fn exchange(&mut self, frame: Frame) -> Result<Frame, ConnError> {
        let mut out = [0u8; BUF];
        let mut slice = &mut out[..];
        // Every frame fits `BUF` bytes (`MAX_FRAME_LEN` bounds them all).
        let n = frame
            .encode(&mut slice)
            .map_err(|e| ConnError::Io(io::Error::new(io::ErrorKind::InvalidInput, e)))?;
        self.tcp.write_all(&out[..n]).map_err(ConnError::Io)?;
        loop {
            match Frame::decode(&self.buf[self.start..self.end]) {
                Ok(Some((frame, used))) => {
                    self.start += used;
                    return Ok(frame);
                }
                Ok(None) => {}
                Err(e) => return Err(ConnError::Wire(e)),
            }
            if self.start == self.end {
                (self.start, self.end) = (0, 0);
            } else if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                (self.start, self.end) = (0, self.end - self.start);
            }
            match self.tcp.read(&mut self.buf[self.end..]) {
                Ok(0) => return Err(ConnError::Closed),
                Ok(n) => self.end += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ConnError::Io(e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_hands_out_disjoint_ranges_in_order() {
        let last = Timestamp::new(1_000, 100).unwrap();
        let batch = [(7, 10), (3, 1), (9, 89)];
        let result = Ok(last);
        let got: Vec<_> = split(&result, &batch, |&(_, c)| c).map(|(&(t, _), r)| (t, r.unwrap())).collect();
        assert_eq!(
            got,
            [
                // The reply's range is logical 1..=100: 1..=10, 11..=11, 12..=100.
                (7, Timestamp::new(1_000, 10).unwrap()),
                (3, Timestamp::new(1_000, 11).unwrap()),
                (9, Timestamp::new(1_000, 100).unwrap()),
            ]
        );
    }

    #[test]
    fn split_fails_every_caller_of_a_failed_batch() {
        let err = ClientError::Closed { addr: "127.0.0.1:1".parse().unwrap() };
        let result = Err(err);
        let done: Vec<_> = split(&result, &[(1, 1), (2, 5)], |&(_, c): &(u64, u32)| c).collect();
        assert_eq!(done.len(), 2);
        assert!(done.iter().all(|(_, r)| matches!(r, Err(ClientError::Closed { .. }))));
    }

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
    fn plan_follows_the_redirect_rules() {
        let here: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let there: SocketAddr = "127.0.0.1:2".parse().unwrap();
        let not_leader = |addr| ClientError::Server {
            addr: here,
            code: ErrorCode::NotLeader,
            leader: LeaderHint { node: Some(NodeId(1)), addr },
        };
        let code = |code| ClientError::Server { addr: here, code, leader: LeaderHint::default() };
        let refused =
            ClientError::Connect { addr: here, source: Arc::new(io::ErrorKind::ConnectionRefused.into()) };
        let closed = ClientError::Closed { addr: here };
        let step = |to, at_once| Step { to, at_once };

        assert_eq!(plan(&not_leader(Some(there)), here, false, false), step(Move::Hint(there), true));
        assert_eq!(plan(&not_leader(Some(here)), here, false, false), step(Move::Stay, false));
        assert_eq!(plan(&not_leader(None), here, true, false), step(Move::NextSeed, false));
        let wildcard = "0.0.0.0:2".parse().unwrap();
        assert_eq!(plan(&not_leader(Some(wildcard)), here, false, false), step(Move::NextSeed, false));
        assert_eq!(plan(&code(ErrorCode::LogicalExhausted), here, false, false), step(Move::Stay, false));
        assert_eq!(plan(&code(ErrorCode::Internal), here, false, false), step(Move::NextSeed, false));
        // A hint that does not answer is stale: back to the seeds at once.
        assert_eq!(plan(&refused, here, true, false), step(Move::NextSeed, true));
        assert_eq!(plan(&refused, here, false, false), step(Move::NextSeed, false));
        // A lost connection is reopened once at once, then treated as refused.
        assert_eq!(plan(&closed, here, false, false), step(Move::Stay, true));
        assert_eq!(plan(&closed, here, false, true), step(Move::NextSeed, false));
        assert_eq!(plan(&closed, here, true, true), step(Move::NextSeed, true));
    }

    #[test]
    fn jitter_stays_in_the_upper_half_and_varies() {
        let mut rng = Rng::new(rng_seed());
        let pause = Duration::from_millis(100);
        let draws: Vec<Duration> = (0..1_000).map(|_| rng.jitter(pause)).collect();
        assert!(draws.iter().all(|d| *d >= pause / 2 && *d <= pause));
        assert!(draws.iter().any(|d| *d < pause * 3 / 4) && draws.iter().any(|d| *d > pause * 3 / 4));
        assert_eq!(rng.jitter(Duration::ZERO), Duration::ZERO);
        assert!(rng.jitter(Duration::MAX) >= Duration::from_nanos(u64::MAX / 2));
        // Two clients made at once draw differently.
        assert_ne!(Rng::new(rng_seed()).next_u64(), Rng::new(rng_seed()).next_u64());
    }

    #[test]
    fn client_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Client>();
    }
}
