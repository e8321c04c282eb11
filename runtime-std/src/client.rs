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

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, Thread};
use std::time::Duration;

use leasetso_core::wire::{LEN_PREFIX, MAX_FRAME_LEN, VERSION};
use leasetso_core::{ErrorCode, Frame, LeaderHint, MAX_LOGICAL, NodeId, Role, Timestamp};

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
    /// How long one request may wait for its reply. Zero waits forever.
    pub request_timeout: Duration,
    /// How often a request that failed in a retryable way (not the leader,
    /// logical clock exhausted, connection lost, timeout) is sent again
    /// before the error is returned.
    pub max_retries: u32,
    /// The first pause before a retry; it doubles per retry up to `max_backoff`.
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
    /// Any cluster, 3 s to connect and per reply, 10 retries with a backoff
    /// from 10 ms doubling to 500 ms, batches of up to 10,000.
    fn default() -> Self {
        ClientOptions {
            cluster_id: 0,
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(3),
            max_retries: 10,
            retry_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(500),
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
}

impl fmt::Display for NodeStatus {
    /// One line of `key=value` pairs: `role=leader node=0 leader=0
    /// window_end_ms=... current=...` (`leader=none` when unknown; `current`
    /// is the packed timestamp).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "role={} node={} leader=", self.role.as_str(), self.node)?;
        match self.leader.node {
            Some(leader) => write!(f, "{leader}")?,
            None => f.write_str("none")?,
        }
        if let Some(addr) = self.leader.addr {
            write!(f, " leader_addr={addr}")?;
        }
        write!(f, " window_end_ms={} current={}", self.window_end_ms, self.current.to_u64())
    }
}

/// A blocking leasetso client; `Send + Sync`, share it across threads.
pub struct Client {
    opts: ClientOptions,
    link: Mutex<Link>,
    batcher: Mutex<Batcher>,
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
        Arc::new(Slot { count, thread: thread::current(), wake: Mutex::new(None) })
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
            let total = {
                let mut b = lock(&self.client.batcher);
                let mut total = 0u32;
                while let Some(slot) = b.queue.front() {
                    // Both at most MAX_COUNT < 2^18: no overflow.
                    if !self.batch.is_empty() && total + slot.count > b.max_batch {
                        break;
                    }
                    total += slot.count;
                    self.batch.extend(b.queue.pop_front());
                }
                total
            };
            let result = self.client.request_ts(total);
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
    pub fn connect(addr: impl ToSocketAddrs) -> Result<Client, ClientError> {
        Self::connect_with(addr, ClientOptions::default())
    }

    /// Connects to the first of `addr`'s socket addresses that answers and
    /// does the handshake. The others are kept to fall back on when the
    /// connection is lost and the server gave no leader hint.
    pub fn connect_with(addr: impl ToSocketAddrs, opts: ClientOptions) -> Result<Client, ClientError> {
        let seeds: Vec<SocketAddr> =
            addr.to_socket_addrs().map_err(|e| ClientError::Resolve { source: Arc::new(e) })?.collect();
        let Some(&first) = seeds.first() else {
            let e = io::Error::new(io::ErrorKind::InvalidInput, "no socket address");
            return Err(ClientError::Resolve { source: Arc::new(e) });
        };
        let mut link = Link { seeds, seed: 0, addr: first, conn: None, next_id: 1 };
        let mut last = None;
        for i in 0..link.seeds.len() {
            link.seed = i;
            link.addr = link.seeds[i];
            match link.ensure(&opts) {
                Ok(()) => {
                    last = None;
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        if let Some(e) = last {
            return Err(e);
        }
        Ok(Client {
            opts,
            link: Mutex::new(link),
            batcher: Mutex::new(Batcher {
                queue: VecDeque::new(),
                sending: false,
                spare: Vec::new(),
                max_batch: opts.max_batch.clamp(1, MAX_COUNT),
            }),
        })
    }

    /// The options in use.
    pub fn options(&self) -> &ClientOptions {
        &self.opts
    }

    /// The server the client talks to now (it moves when a server redirects it).
    pub fn server_addr(&self) -> SocketAddr {
        lock(&self.link).addr
    }

    /// One timestamp.
    pub fn get_ts(&self) -> Result<Timestamp, ClientError> {
        self.get_ts_n(1)
    }

    /// `count` timestamps, as the last of the range: the range is
    /// `last - count + 1 ..= last` (packed), all in one physical millisecond.
    ///
    /// Concurrent calls on the same client are merged into one request; each
    /// still gets a range of its own.
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
        let mut backoff = Backoff::new(&self.opts);
        loop {
            let err = match link.round_trip(&self.opts, |id| Frame::GetStatus { id }) {
                Ok((sent, Frame::Status { id, role, node, leader, window_end_ms, current }))
                    if id == sent =>
                {
                    return Ok(NodeStatus { role, node, leader, window_end_ms, current });
                }
                Ok(_) => link.unexpected_reply(),
                Err(e) => e,
            };
            if !err.is_retryable() || !backoff.next(&mut link, &err) {
                return Err(err);
            }
        }
    }

    /// Sends one GetTS for `total` timestamps, retrying as the options allow.
    fn request_ts(&self, total: u32) -> Result<Timestamp, ClientError> {
        let mut link = lock(&self.link);
        let mut backoff = Backoff::new(&self.opts);
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
            if !err.is_retryable() || !backoff.next(&mut link, &err) {
                return Err(err);
            }
        }
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

/// The retry budget and pause of one call.
struct Backoff {
    left: u32,
    pause: Duration,
    max: Duration,
}

impl Backoff {
    fn new(opts: &ClientOptions) -> Self {
        Backoff { left: opts.max_retries, pause: opts.retry_backoff, max: opts.max_backoff }
    }

    /// Prepares the retry after `err`: follows a leader hint, moves to the
    /// next seed address after a failed connect, or pauses. Returns false
    /// when the retries are used up.
    fn next(&mut self, link: &mut Link, err: &ClientError) -> bool {
        if self.left == 0 {
            return false;
        }
        self.left -= 1;
        match err {
            ClientError::Server {
                code: ErrorCode::NotLeader,
                leader: LeaderHint { addr: Some(to), .. },
                ..
            } if *to != link.addr => {
                // Redirected: go there at once.
                tracing::debug!(from = %link.addr, %to, "following the leader hint");
                link.drop_conn();
                link.addr = *to;
                return true;
            }
            ClientError::Connect { .. } | ClientError::Timeout { .. } if link.seeds.len() > 1 => {
                link.seed = (link.seed + 1) % link.seeds.len();
                link.addr = link.seeds[link.seed];
            }
            _ => {}
        }
        tracing::debug!(error = %err, pause = ?self.pause, "retrying");
        std::thread::sleep(self.pause);
        self.pause = (self.pause * 2).min(self.max);
        true
    }
}

/// The connection and where it goes.
struct Link {
    /// The addresses the client was given.
    seeds: Vec<SocketAddr>,
    seed: usize,
    /// The server talked to now.
    addr: SocketAddr,
    conn: Option<Conn>,
    next_id: u64,
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
        };
        assert_eq!(status.to_string(), "role=leader node=0 leader=0 window_end_ms=5 current=786434");
        let none = NodeStatus { leader: LeaderHint::default(), role: Role::Follower, ..status };
        assert!(none.to_string().starts_with("role=follower node=0 leader=none "));
    }

    #[test]
    fn client_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Client>();
    }
}
