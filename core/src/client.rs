//! The client session: batching, splitting, pipelining, reply matching and
//! redirects, without I/O.
//!
//! A [`ClientSession`] is one client's protocol state over a succession of
//! connections. Its runtime (the blocking `leasetso-std` client, the async
//! `leasetso-smol` one) moves bytes, opens sockets, reads clocks and wakes
//! callers; everything the protocol decides happens here:
//!
//! * **Callers** are queued with what they ask and when they asked
//!   ([`ClientSession::push`], [`ClientSession::push_call`]), each under a
//!   [`Ticket`]. Concurrent GetTS callers are merged into one request with
//!   the summed count (as PD's client does), at most
//!   [`ClientConfig::max_batch`] timestamps (a single caller asking for more
//!   goes alone), and the reply's range is split among them exactly, in
//!   queue order: each caller gets the last timestamp of its own sub-range,
//!   the first caller the lowest (C1).
//! * **Pipelining**: up to [`ClientConfig::max_in_flight`] requests are
//!   outstanding on one connection, the first ones right behind the Hello
//!   (PROTOCOL.md, "Conversation"). The server answers in order, but replies
//!   are matched by request id anyway; a reply that answers nothing
//!   outstanding closes the connection (C2).
//! * **Handshake**: a connection's first frame is Hello; its answer must be a
//!   Welcome of this version and, unless the configured cluster id is 0, of
//!   this cluster (C3). An Error with id 0 and a fatal code closes the
//!   connection (C4).
//! * **Failures**: on a retryable one (NotLeader, LogicalExhausted, Internal;
//!   a connection refused, lost or timed out) the callers of the failed
//!   requests go back into the queue in arrival order, never lost and never
//!   answered twice (C5), and the [`redirect`](crate::redirect) rules decide
//!   where the next attempt goes and after which pause; the runtime learns it
//!   from [`ClientSession::poll_action`] and [`ClientSession::poll_timeout`].
//!   A request whose oldest caller arrived more than
//!   [`ClientConfig::deadline`] ago is not retried: its callers get the error
//!   (C6), as do the callers queued when a connection that failed was asked
//!   for (a refused connect is their attempt too, though nothing was sent
//!   for them). No new attempt starts after the deadline, but the attempt under
//!   way finishes, and the last pause is cut short so that the last attempt
//!   starts at the deadline rather than not at all.
//! * **Completions** are drained with [`ClientSession::poll_completion`].
//!
//! Status, ReadPrimary and ClearPrimary go through the same session (one
//! request each, never merged): Status retries like GetTS (every node
//! answers it, so only connection failures retry it), the primary requests
//! are never retried (they are about the replica of the node talked to,
//! and an operator decides what to do after a failure).
//!
//! # Driving it
//!
//! After every input (`push`, [`connected`](ClientSession::connected),
//! [`handle_input`](ClientSession::handle_input),
//! [`connection_failed`](ClientSession::connection_failed),
//! [`handle_timeout`](ClientSession::handle_timeout)) the runtime drains
//! completions, performs the actions ([`Action::Connect`]: open a connection
//! and report `connected` or `connection_failed`; [`Action::Close`]: drop the
//! socket, nothing more is read from it), writes what
//! [`poll_transmit`](ClientSession::poll_transmit) encodes, reads while
//! [`awaiting_reply`](ClientSession::awaiting_reply), and calls
//! `handle_timeout` when [`poll_timeout`](ClientSession::poll_timeout)
//! passes. The runtime enforces its connect timeout itself (a connect that
//! takes too long is `connection_failed` with [`Broken::Unreachable`]); the
//! session enforces the request timeout through `poll_timeout`. Time is
//! always an argument. Nothing allocates per call once the queues have grown
//! to the load: they keep their capacity.
//!
//! The runtime's own transport errors (an `io::Error`, say) are carried as
//! `E` in [`CallError::Transport`], so a caller gets the runtime's error
//! with its cause, and the core stays free of I/O types.

use core::net::SocketAddr;
use core::time::Duration;
use std::collections::VecDeque;

use crate::ballot::{Ballot, NodeId};
use crate::redirect::{Failure, Redirect};
use crate::rng::Rng;
use crate::time::Instant;
use crate::timestamp::{MAX_LOGICAL, Timestamp};
use crate::wire::{
    ErrorCode, Frame, LEN_PREFIX, LeaderHint, LeaseView, MAX_FRAME_LEN, Role, VERSION, WireError,
};

/// The largest count one request can carry: a range must fit one millisecond.
pub const MAX_COUNT: u32 = MAX_LOGICAL - 1;

/// The least room [`ClientSession::poll_transmit`] needs to make progress:
/// one frame of the largest size.
pub const TRANSMIT_MIN: usize = LEN_PREFIX + MAX_FRAME_LEN as usize;

/// Room for one whole frame of the largest size: a partial frame left over
/// from one input waits here for the next.
const RX: usize = LEN_PREFIX + MAX_FRAME_LEN as usize;

/// How a [`ClientSession`] behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientConfig {
    /// The cluster the client expects; 0 accepts any (C3).
    pub cluster_id: u64,
    /// How long the oldest outstanding request (or the Hello) may wait for
    /// its answer before the connection counts as timed out. Zero waits
    /// forever.
    pub request_timeout: Duration,
    /// How long a request keeps being retried after its oldest caller's
    /// arrival (C6). Zero makes exactly one attempt.
    pub deadline: Duration,
    /// The first pause before a retry; it doubles per pause up to
    /// `max_backoff`, and each pause is drawn uniformly from `[pause/2,
    /// pause]`.
    pub retry_backoff: Duration,
    /// The longest pause between retries.
    pub max_backoff: Duration,
    /// The most timestamps merged into one request (PD: 10,000), clamped to
    /// `1..=MAX_COUNT`. A server that refuses a merged batch as
    /// `CountTooLarge` (it hands out fewer per millisecond) halves the cap
    /// for this session and the same callers are sent again, so only a
    /// caller whose own count is too large gets that error.
    pub max_batch: u32,
    /// The most requests outstanding on one connection, at least 1.
    pub max_in_flight: usize,
}

impl Default for ClientConfig {
    /// Any cluster, 3 s per reply, retries for 7 s (over 2 × D_A = 6.1 s
    /// with the default 3 s lease, so a call caught in a failover gets the
    /// new leader's timestamp) with pauses from 10 ms doubling to 250 ms,
    /// batches of up to 10,000, two requests in flight.
    fn default() -> Self {
        ClientConfig {
            cluster_id: 0,
            request_timeout: Duration::from_secs(3),
            deadline: Duration::from_secs(7),
            retry_backoff: Duration::from_millis(10),
            // Short enough that a client waiting out a failover reaches the
            // new leader soon after it serves.
            max_backoff: Duration::from_millis(250),
            max_batch: 10_000,
            max_in_flight: 2,
        }
    }
}

/// Why a [`ClientSession`] cannot be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClientConfigError {
    /// No server address was given.
    #[error("no server address given")]
    NoSeeds,
    /// `max_in_flight` is 0: no request could ever be sent.
    #[error("max_in_flight must be at least 1")]
    NoneInFlight,
}

/// One caller's place in a session: completions name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ticket(u64);

impl Ticket {
    /// The ticket's number: tickets are numbered from 0 in the order the
    /// callers arrived.
    pub fn get(self) -> u64 {
        self.0
    }
}

/// What a caller asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    /// `count` timestamps; merged with other callers'.
    Ts {
        /// How many, `1..=MAX_COUNT`.
        count: u32,
    },
    /// The status of the node talked to.
    Status,
    /// The primary registration on the replica of the node talked to.
    ReadPrimary,
    /// Clear the registration on the replica of the node talked to if it is
    /// exactly `(node, tag)`.
    ClearPrimary {
        /// The registered node.
        node: NodeId,
        /// Its tag.
        tag: Ballot,
    },
}

impl Call {
    /// Whether a failure that may pass is retried for this call (the
    /// primary requests are not: module documentation).
    fn retried(self) -> bool {
        matches!(self, Call::Ts { .. } | Call::Status)
    }
}

/// A node's status, as [`Frame::Status`] reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatusReply {
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

/// A successful call's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The last timestamp of the caller's own range (`count` timestamps
    /// ending here, in one physical millisecond).
    Ts(Timestamp),
    /// The node's status.
    Status(StatusReply),
    /// The registration on the node's replica (after the clear, for
    /// [`Call::ClearPrimary`]).
    Primary(Option<(NodeId, Ballot)>),
}

/// How a connection failed, as the runtime reports it: the redirect rules
/// treat the two differently (R2, R4 in [`redirect`](crate::redirect)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Broken {
    /// No connection could be made (refused, no route, connect timeout), or
    /// the server did not answer within a timeout the runtime enforces.
    Unreachable,
    /// An open connection failed: closed by the server, or an I/O error.
    Lost,
}

/// Why a call failed. `E` is the runtime's transport error.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CallError<E> {
    /// The server refused the request (or the handshake: a fatal code).
    #[error("server {addr} answered {code:?}")]
    Server {
        /// The server.
        addr: SocketAddr,
        /// Its error code.
        code: ErrorCode,
        /// Who serves, as far as the server knows (for `NotLeader`).
        leader: LeaderHint,
    },
    /// The server sent bytes that are not a frame.
    #[error("protocol error from {addr}: {source}")]
    Protocol {
        /// The server.
        addr: SocketAddr,
        /// What is wrong with the bytes.
        #[source]
        source: WireError,
    },
    /// The server sent a well-formed frame that does not answer the request.
    #[error("unexpected reply from {addr}: {what}")]
    Unexpected {
        /// The server.
        addr: SocketAddr,
        /// What was wrong with it.
        what: &'static str,
    },
    /// No answer within [`ClientConfig::request_timeout`].
    #[error("no answer from {addr} within {after:?}")]
    Timeout {
        /// The server.
        addr: SocketAddr,
        /// The timeout that ran out.
        after: Duration,
    },
    /// A count no request can carry.
    #[error("count {count} is invalid: must be between 1 and {max}")]
    InvalidCount {
        /// The count asked for.
        count: u32,
        /// The largest count a request may carry.
        max: u32,
    },
    /// The connection failed, as the runtime reported it.
    #[error("{error}")]
    Transport {
        /// The server.
        addr: SocketAddr,
        /// How it failed.
        broken: Broken,
        /// The runtime's error.
        error: E,
    },
}

impl<E> CallError<E> {
    /// How the redirect rules see this error, if it may pass.
    fn failure(&self) -> Option<Failure> {
        match *self {
            CallError::Server { code, leader, .. } if code.is_retryable() => {
                Some(Failure::Server { code, leader })
            }
            CallError::Timeout { .. } => Some(Failure::Unreachable),
            CallError::Transport { broken: Broken::Unreachable, .. } => Some(Failure::Unreachable),
            CallError::Transport { broken: Broken::Lost, .. } => Some(Failure::Lost),
            _ => None,
        }
    }
}

/// A finished call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Completion<E> {
    /// Whose call.
    pub ticket: Ticket,
    /// Its answer or why it failed.
    pub result: Result<Answer, CallError<E>>,
}

/// What the runtime must do with its socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Open a connection to this address (dropping any other), then report
    /// [`ClientSession::connected`] or [`ClientSession::connection_failed`].
    Connect(SocketAddr),
    /// Drop the connection: nothing more is to be read from it or reported
    /// about it.
    Close,
}

/// Where the session's connection stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnState {
    /// No connection (one may be wanted: see [`ClientSession::poll_action`]).
    Closed,
    /// [`Action::Connect`] was given; the runtime has not reported back.
    Connecting(SocketAddr),
    /// Connected; the Welcome has not arrived.
    Handshaking(SocketAddr),
    /// Welcomed by `node`.
    Ready {
        /// The server.
        addr: SocketAddr,
        /// Its node id, from the Welcome.
        node: NodeId,
    },
}

/// The connection as the session tracks it.
#[derive(Clone, Copy, Debug)]
enum Conn {
    Closed,
    Connecting,
    Open {
        /// Whether the Hello went out.
        hello_sent: bool,
        /// The welcoming node, once the Welcome is in.
        welcomed: Option<NodeId>,
        /// When the Hello went out: the handshake's timeout counts from it.
        hello_at: Instant,
    },
}

/// A queued or in-flight caller.
#[derive(Clone, Copy, Debug)]
struct Caller {
    ticket: Ticket,
    call: Call,
    /// When the caller arrived.
    since: Instant,
}

/// An outstanding request; its callers are the next `callers` entries of
/// `ClientSession::sent` after those of the requests before it.
#[derive(Clone, Copy, Debug)]
struct Request {
    id: u64,
    call: Call,
    callers: usize,
    /// The oldest caller's arrival: the request's deadline counts from it (C6).
    since: Instant,
    sent_at: Instant,
    /// The failures handled before it was sent: a failure of a request sent
    /// before the last one was handled is old news and moves nothing.
    epoch: u64,
}

/// One client's protocol state (module documentation).
#[derive(Debug)]
pub struct ClientSession<E> {
    config: ClientConfig,
    /// `config.max_batch` clamped, lowered on a refused merged batch.
    max_batch: u32,
    redirect: Redirect,
    conn: Conn,
    /// Connect even with nobody queued: set by [`ClientSession::open`],
    /// cleared by the handshake's outcome.
    eager: bool,
    /// An [`Action::Close`] is owed to the runtime.
    close_pending: bool,
    /// No new attempt before this.
    paused_until: Option<Instant>,
    /// Callers not sent, in arrival (ticket) order (C5 keeps it so).
    queue: VecDeque<Caller>,
    /// Callers of the in-flight requests, in send order.
    sent: VecDeque<Caller>,
    /// Outstanding requests, in send order.
    in_flight: VecDeque<Request>,
    done: VecDeque<Completion<E>>,
    next_ticket: u64,
    /// `next_ticket` when the current connection was asked for: the callers
    /// before it were waiting on that connection.
    attempt_ticket: u64,
    next_id: u64,
    /// Failures handled so far (see [`Request::epoch`]).
    epoch: u64,
    last_error: Option<CallError<E>>,
    rx: [u8; RX],
    rx_len: usize,
}

impl<E: Clone> ClientSession<E> {
    /// A session over `seeds` (the first is tried first), its pauses
    /// jittered from `rng_seed`. Nothing is connected until a caller is
    /// queued or [`ClientSession::open`] is called.
    pub fn new(config: ClientConfig, seeds: &[SocketAddr], rng_seed: u64) -> Result<Self, ClientConfigError> {
        if config.max_in_flight == 0 {
            return Err(ClientConfigError::NoneInFlight);
        }
        let redirect = Redirect::new(seeds, config.retry_backoff, config.max_backoff, Rng::new(rng_seed))
            .ok_or(ClientConfigError::NoSeeds)?;
        Ok(ClientSession {
            config,
            max_batch: config.max_batch.clamp(1, MAX_COUNT),
            redirect,
            conn: Conn::Closed,
            eager: false,
            close_pending: false,
            paused_until: None,
            queue: VecDeque::with_capacity(64),
            sent: VecDeque::with_capacity(64),
            in_flight: VecDeque::with_capacity(config.max_in_flight),
            done: VecDeque::with_capacity(64),
            next_ticket: 0,
            attempt_ticket: 0,
            next_id: 1,
            epoch: 0,
            last_error: None,
            rx: [0; RX],
            rx_len: 0,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The server talked to now: it moves when a server redirects the
    /// session and when it falls back on the seeds.
    pub fn addr(&self) -> SocketAddr {
        self.redirect.addr()
    }

    /// The seeds, in the order given.
    pub fn seeds(&self) -> &[SocketAddr] {
        self.redirect.seeds()
    }

    /// Where the connection stands.
    pub fn state(&self) -> ConnState {
        let addr = self.addr();
        match self.conn {
            Conn::Closed => ConnState::Closed,
            Conn::Connecting => ConnState::Connecting(addr),
            Conn::Open { welcomed: None, .. } => ConnState::Handshaking(addr),
            Conn::Open { welcomed: Some(node), .. } => ConnState::Ready { addr, node },
        }
    }

    /// Whether an [`open`](ClientSession::open) is still under way: false
    /// once its handshake succeeded or failed.
    pub fn opening(&self) -> bool {
        self.eager
    }

    /// The error of the last failed attempt or call, if any.
    pub fn last_error(&self) -> Option<&CallError<E>> {
        self.last_error.as_ref()
    }

    /// The most timestamps merged into one request now.
    pub fn max_batch(&self) -> u32 {
        self.max_batch
    }

    /// Requests outstanding on the connection.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Callers waiting to be sent.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// The oldest caller not answered yet (queued or in flight), if any: a
    /// runtime that drives the session from one caller's thread hands that
    /// role to it.
    pub fn pending(&self) -> Option<Ticket> {
        match (self.sent.front(), self.queue.front()) {
            (Some(a), Some(b)) => Some(a.ticket.min(b.ticket)),
            (a, b) => a.or(b).map(|c| c.ticket),
        }
    }

    /// Whether the server owes an answer on the open connection (the
    /// Welcome or a reply): the runtime should be reading.
    pub fn awaiting_reply(&self) -> bool {
        match self.conn {
            Conn::Open { hello_sent, welcomed, .. } => {
                (hello_sent && welcomed.is_none()) || !self.in_flight.is_empty()
            }
            Conn::Closed | Conn::Connecting => false,
        }
    }

    /// Queues a caller for `count` timestamps; its [`Answer::Ts`] comes as a
    /// completion under the returned ticket. A count no request can carry
    /// completes at once with [`CallError::InvalidCount`].
    pub fn push(&mut self, count: u32, now: Instant) -> Ticket {
        self.push_call(Call::Ts { count }, now)
    }

    /// Queues a caller for `call`.
    pub fn push_call(&mut self, call: Call, now: Instant) -> Ticket {
        self.expire(now);
        let ticket = Ticket(self.next_ticket);
        self.next_ticket += 1;
        if let Call::Ts { count } = call {
            if count == 0 || count > MAX_COUNT {
                let result = Err(CallError::InvalidCount { count, max: MAX_COUNT });
                self.done.push_back(Completion { ticket, result });
                return ticket;
            }
        }
        self.queue.push_back(Caller { ticket, call, since: now });
        ticket
    }

    /// Opens a connection to the `seed`-th seed (counting round) even with
    /// nobody queued, dropping any current one and forgetting any pause: a
    /// client's first connection, which makes one pass over the seeds. The
    /// outcome shows in [`state`](ClientSession::state) (`Ready`) or, once
    /// [`opening`](ClientSession::opening) is false without it, in
    /// [`last_error`](ClientSession::last_error).
    pub fn open(&mut self, seed: usize) {
        self.drop_connection();
        self.redirect.go_seed(seed);
        self.paused_until = None;
        self.eager = true;
    }

    /// The next thing to do with the socket.
    #[must_use]
    pub fn poll_action(&mut self) -> Option<Action> {
        if self.close_pending {
            self.close_pending = false;
            return Some(Action::Close);
        }
        let wanted = self.eager || !self.queue.is_empty();
        if matches!(self.conn, Conn::Closed) && wanted && self.paused_until.is_none() {
            self.conn = Conn::Connecting;
            self.attempt_ticket = self.next_ticket;
            return Some(Action::Connect(self.addr()));
        }
        None
    }

    /// The connection asked for by [`Action::Connect`] is open.
    pub fn connected(&mut self, now: Instant) {
        if matches!(self.conn, Conn::Connecting) {
            self.conn = Conn::Open { hello_sent: false, welcomed: None, hello_at: now };
            self.rx_len = 0;
        }
    }

    /// Encodes what is to be sent into `buf` (the Hello, then requests up to
    /// `max_in_flight` and the batch cap) and returns the bytes written; 0
    /// when there is nothing to send. `buf` needs at least [`TRANSMIT_MIN`]
    /// bytes to be sure of progress; frames that do not fit wait for the
    /// next call.
    #[must_use]
    pub fn poll_transmit(&mut self, buf: &mut [u8], now: Instant) -> usize {
        self.expire(now);
        let Conn::Open { hello_sent, welcomed, .. } = self.conn else {
            return 0;
        };
        let mut written = 0;
        if !hello_sent {
            let hello = Frame::Hello { version: VERSION, cluster_id: self.config.cluster_id };
            match hello.encode(&mut &mut buf[written..]) {
                Ok(n) => written += n,
                Err(_) => return 0,
            }
            self.conn = Conn::Open { hello_sent: true, welcomed, hello_at: now };
        }
        while self.paused_until.is_none() && self.in_flight.len() < self.config.max_in_flight {
            let Some((frame, callers)) = self.next_request() else {
                break;
            };
            let Ok(n) = frame.encode(&mut &mut buf[written..]) else {
                // No room: the callers stay queued for the next call.
                break;
            };
            written += n;
            self.commit_request(frame, callers, now);
        }
        written
    }

    /// Feeds bytes read from the connection, received at `now`. Bytes after
    /// a frame that closes the connection are ignored, as is input while no
    /// connection is open.
    pub fn handle_input(&mut self, mut bytes: &[u8], now: Instant) {
        self.expire(now);
        // A partial frame left over: complete it first.
        while self.rx_len > 0 && !bytes.is_empty() && self.is_open() {
            let take = (RX - self.rx_len).min(bytes.len());
            self.rx[self.rx_len..self.rx_len + take].copy_from_slice(&bytes[..take]);
            self.rx_len += take;
            bytes = &bytes[take..];
            let mut used = 0;
            while self.is_open() {
                match Frame::decode(&self.rx[used..self.rx_len]) {
                    Ok(Some((frame, n))) => {
                        used += n;
                        self.on_frame(frame, now);
                    }
                    Ok(None) => break,
                    Err(source) => {
                        self.fail_connection(CallError::Protocol { addr: self.addr(), source }, now);
                    }
                }
            }
            if !self.is_open() {
                return;
            }
            // A full buffer always holds a whole frame or an error, so this
            // leaves room for the next round.
            self.rx.copy_within(used..self.rx_len, 0);
            self.rx_len -= used;
        }
        if self.rx_len > 0 {
            return;
        }
        while self.is_open() {
            match Frame::decode(bytes) {
                Ok(Some((frame, n))) => {
                    bytes = &bytes[n..];
                    self.on_frame(frame, now);
                }
                Ok(None) => {
                    // `decode` refuses a declared length over the limit, so
                    // a partial frame fits `rx`.
                    let keep = bytes.len().min(RX);
                    self.rx[..keep].copy_from_slice(&bytes[..keep]);
                    self.rx_len = keep;
                    return;
                }
                Err(source) => {
                    self.fail_connection(CallError::Protocol { addr: self.addr(), source }, now);
                }
            }
        }
    }

    /// The connection failed (or [`Action::Connect`] could not make one):
    /// the runtime has dropped it. `error` is handed to the callers that
    /// fail because of it.
    pub fn connection_failed(&mut self, broken: Broken, error: E, now: Instant) {
        self.expire(now);
        if matches!(self.conn, Conn::Closed) {
            return;
        }
        self.conn = Conn::Closed;
        let err = CallError::Transport { addr: self.addr(), broken, error };
        self.retry(None, err, now);
    }

    /// When [`handle_timeout`](ClientSession::handle_timeout) is due next: a
    /// pause's end or the oldest outstanding request's timeout.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let request = self.request_deadline();
        match (self.paused_until, request) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Time has come to `now`: ends a pause that is over, and times out the
    /// connection if its oldest request waited too long.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.expire(now);
        if self.request_deadline().is_some_and(|at| at <= now) {
            self.conn = Conn::Closed;
            self.close_pending = true;
            let err = CallError::Timeout { addr: self.addr(), after: self.config.request_timeout };
            self.retry(None, err, now);
        }
    }

    /// The next finished call.
    #[must_use]
    pub fn poll_completion(&mut self) -> Option<Completion<E>> {
        self.done.pop_front()
    }

    fn is_open(&self) -> bool {
        matches!(self.conn, Conn::Open { .. })
    }

    fn expire(&mut self, now: Instant) {
        if self.paused_until.is_some_and(|at| at <= now) {
            self.paused_until = None;
        }
    }

    /// When the oldest outstanding answer times out, if one is owed.
    fn request_deadline(&self) -> Option<Instant> {
        if self.config.request_timeout.is_zero() {
            return None;
        }
        let Conn::Open { hello_sent, welcomed, hello_at } = self.conn else {
            return None;
        };
        let since = if hello_sent && welcomed.is_none() {
            Some(hello_at)
        } else {
            self.in_flight.front().map(|r| r.sent_at)
        };
        since.map(|at| at + self.config.request_timeout)
    }

    /// The request the queue's head makes, and how many callers it takes:
    /// consecutive GetTS callers up to the batch cap (the first always, C1),
    /// any other call alone. Takes nothing off the queue.
    fn next_request(&self) -> Option<(Frame, usize)> {
        let first = self.queue.front()?;
        let id = self.next_id;
        Some(match first.call {
            Call::Ts { .. } => {
                let mut total = 0u32;
                let mut callers = 0;
                for caller in &self.queue {
                    let Call::Ts { count } = caller.call else { break };
                    // Both at most MAX_COUNT < 2^18: no overflow.
                    if callers > 0 && total + count > self.max_batch {
                        break;
                    }
                    total += count;
                    callers += 1;
                }
                (Frame::GetTs { id, count: total }, callers)
            }
            Call::Status => (Frame::GetStatus { id }, 1),
            Call::ReadPrimary => (Frame::ReadPrimary { id }, 1),
            Call::ClearPrimary { node, tag } => (Frame::ClearPrimary { id, node, tag }, 1),
        })
    }

    /// Moves the callers of the encoded `frame` from the queue to `sent`.
    fn commit_request(&mut self, frame: Frame, callers: usize, now: Instant) {
        let mut since = Instant::NEVER;
        for caller in self.queue.drain(..callers) {
            since = since.min(caller.since);
            self.sent.push_back(caller);
        }
        let call = match frame {
            Frame::GetTs { count, .. } => Call::Ts { count },
            Frame::GetStatus { .. } => Call::Status,
            Frame::ReadPrimary { .. } => Call::ReadPrimary,
            Frame::ClearPrimary { node, tag, .. } => Call::ClearPrimary { node, tag },
            // `next_request` makes only the four kinds above.
            _ => return,
        };
        self.in_flight.push_back(Request {
            id: self.next_id,
            call,
            callers,
            since,
            sent_at: now,
            epoch: self.epoch,
        });
        // Id 0 stays unused: it means "the connection" in errors.
        self.next_id = self.next_id.wrapping_add(1).max(1);
    }

    fn on_frame(&mut self, frame: Frame, now: Instant) {
        let Conn::Open { hello_sent, welcomed, hello_at } = self.conn else {
            return;
        };
        let addr = self.addr();
        if welcomed.is_none() {
            match frame {
                // C3.
                Frame::Welcome { version, cluster_id, node }
                    if version == VERSION
                        && (self.config.cluster_id == 0 || cluster_id == self.config.cluster_id) =>
                {
                    self.conn = Conn::Open { hello_sent, welcomed: Some(node), hello_at };
                    self.eager = false;
                }
                Frame::Welcome { .. } => self.fail_connection(
                    CallError::Unexpected { addr, what: "a Welcome of another version or cluster" },
                    now,
                ),
                // A refused Hello: the requests behind it had no effect.
                Frame::Error { code, leader, .. } => {
                    self.fail_connection(CallError::Server { addr, code, leader }, now)
                }
                _ => self.fail_connection(
                    CallError::Unexpected { addr, what: "the handshake was not answered with Welcome" },
                    now,
                ),
            }
            return;
        }
        let id = match frame {
            // C4: the server closes after a fatal error.
            Frame::Error { id: 0, code, leader } if code.is_fatal() => {
                return self.fail_connection(CallError::Server { addr, code, leader }, now);
            }
            Frame::Error { id, .. }
            | Frame::Ts { id, .. }
            | Frame::Status { id, .. }
            | Frame::Primary { id, .. } => id,
            _ => u64::MAX,
        };
        // C2: matched by id, not by position.
        let Some(r) = self.in_flight.iter().position(|r| r.id == id && id != u64::MAX) else {
            let what = "a reply that does not answer the request";
            return self.fail_connection(CallError::Unexpected { addr, what }, now);
        };
        let request = self.in_flight[r];
        let answer = match (frame, request.call) {
            (Frame::Error { code, leader, .. }, _) => {
                let err = CallError::Server { addr, code, leader };
                if code.is_retryable() {
                    self.retry(Some(r), err, now);
                } else if code == ErrorCode::CountTooLarge && request.callers > 1 {
                    // Merging made the count too large, not any one caller:
                    // smaller batches from now on, these callers first.
                    if let Call::Ts { count } = request.call {
                        self.max_batch = (count / 2).max(1);
                    }
                    self.requeue(r);
                } else {
                    self.fail_request(r, &err);
                    self.last_error = Some(err);
                }
                return;
            }
            // The range must be the whole count inside one millisecond,
            // never reaching logical 0.
            (Frame::Ts { count, last, .. }, Call::Ts { count: total })
                if count == total && last.logical >= total =>
            {
                Answer::Ts(last)
            }
            (Frame::Status { role, node, leader, window_end_ms, current, view, .. }, Call::Status) => {
                Answer::Status(StatusReply { role, node, leader, window_end_ms, current, view })
            }
            (Frame::Primary { registered, .. }, Call::ReadPrimary | Call::ClearPrimary { .. }) => {
                Answer::Primary(registered)
            }
            (Frame::Ts { .. }, Call::Ts { .. }) => {
                let what = "a range that does not match the request";
                return self.fail_connection(CallError::Unexpected { addr, what }, now);
            }
            _ => {
                let what = "a reply that does not answer the request";
                return self.fail_connection(CallError::Unexpected { addr, what }, now);
            }
        };
        self.redirect.reset();
        self.complete(r, answer);
    }

    /// The offset in `sent` of the callers of in-flight request `r`.
    fn offset(&self, r: usize) -> usize {
        self.in_flight.iter().take(r).map(|q| q.callers).sum()
    }

    /// Answers request `r`'s callers: each its own sub-range of a GetTS
    /// reply, in order, the first the lowest (C1).
    fn complete(&mut self, r: usize, answer: Answer) {
        let Some(request) = self.in_flight.remove(r) else { return };
        let at = self.offset(r);
        // `on_frame` checked `last.logical >= total`: the range stays in one
        // millisecond, so packed arithmetic is logical arithmetic.
        let mut end = match (answer, request.call) {
            (Answer::Ts(last), Call::Ts { count }) => last.to_u64() - u64::from(count),
            _ => 0,
        };
        for caller in self.sent.drain(at..at + request.callers) {
            let result = match (answer, caller.call) {
                (Answer::Ts(_), Call::Ts { count }) => {
                    end += u64::from(count);
                    Ok(Answer::Ts(Timestamp::from_u64(end)))
                }
                _ => Ok(answer),
            };
            self.done.push_back(Completion { ticket: caller.ticket, result });
        }
    }

    /// Fails request `r`'s callers with `err`.
    fn fail_request(&mut self, r: usize, err: &CallError<E>) {
        let Some(request) = self.in_flight.remove(r) else { return };
        let at = self.offset(r);
        for caller in self.sent.drain(at..at + request.callers) {
            self.done.push_back(Completion { ticket: caller.ticket, result: Err(err.clone()) });
        }
    }

    /// Puts request `r`'s callers back into the queue, in arrival order (C5).
    fn requeue(&mut self, r: usize) {
        let Some(request) = self.in_flight.remove(r) else { return };
        let at = self.offset(r);
        // Inserted from the youngest back, each before the first queued
        // caller younger than it: the queue stays in ticket order. Requeued
        // callers are usually older than all queued ones, so each lands at
        // the front.
        for i in (at..at + request.callers).rev() {
            let caller = self.sent[i];
            if self.queue.front().is_none_or(|q| q.ticket > caller.ticket) {
                self.queue.push_front(caller);
            } else {
                let pos = self.queue.partition_point(|q| q.ticket < caller.ticket);
                self.queue.insert(pos, caller);
            }
        }
        self.sent.drain(at..at + request.callers);
    }

    /// Requeues request `r` after the retryable `err`, or fails it if its
    /// deadline has passed or its call is not retried (C6).
    fn requeue_or_fail(&mut self, r: usize, err: &CallError<E>, now: Instant) {
        let request = self.in_flight[r];
        if request.call.retried() && now < request.since + self.config.deadline {
            self.requeue(r);
        } else {
            self.fail_request(r, err);
        }
    }

    /// Fails the queued callers that were waiting when the failed connection
    /// was asked for: its failure was their attempt too (C6), even though
    /// none of their requests went out (a refused connect, a refused
    /// handshake). With `retryable`, only those past their deadline and
    /// those whose call is not retried; otherwise all of them.
    fn fail_waiting(&mut self, err: &CallError<E>, retryable: bool, now: Instant) {
        let (attempt, deadline, done) = (self.attempt_ticket, self.config.deadline, &mut self.done);
        self.queue.retain(|c| {
            let over = c.ticket.0 < attempt && (!retryable || !c.call.retried() || now >= c.since + deadline);
            if over {
                done.push_back(Completion { ticket: c.ticket, result: Err(err.clone()) });
            }
            !over
        });
    }

    /// Closes the connection after a failure of the connection itself (a
    /// refused handshake, bytes out of step). Such a failure is not worth a
    /// retry (C3, C4): every in-flight caller gets `err`; queued callers stay
    /// queued for a new connection.
    fn fail_connection(&mut self, err: CallError<E>, now: Instant) {
        self.conn = Conn::Closed;
        self.close_pending = true;
        self.retry(None, err, now);
    }

    /// Drops the connection by the session's own decision; its in-flight
    /// callers go back into the queue (they failed nothing themselves).
    fn drop_connection(&mut self) {
        if matches!(self.conn, Conn::Closed) {
            return;
        }
        self.conn = Conn::Closed;
        self.close_pending = true;
        while let Some(last) = self.in_flight.len().checked_sub(1) {
            self.requeue(last);
        }
    }

    /// Handles `err` of in-flight request `only`, or of the whole connection
    /// (then already marked closed). A retryable one requeues or fails the
    /// callers (C5, C6), applies the redirect rules and arms the pause; the
    /// pause is cut to the earliest deadline of the callers still waiting,
    /// and with none waiting the retry state starts afresh, as for a new call.
    fn retry(&mut self, only: Option<usize>, err: CallError<E>, now: Instant) {
        self.eager = false;
        let Some(failure) = err.failure() else {
            // Not retryable: fail what it concerns.
            match only {
                Some(r) => self.fail_request(r, &err),
                None => {
                    while !self.in_flight.is_empty() {
                        self.fail_request(0, &err);
                    }
                    self.fail_waiting(&err, false, now);
                }
            }
            self.last_error = Some(err);
            return;
        };
        let stale = match only {
            Some(r) => {
                let stale = self.in_flight[r].epoch < self.epoch;
                self.requeue_or_fail(r, &err, now);
                stale
            }
            None => {
                self.rx_len = 0;
                while let Some(last) = self.in_flight.len().checked_sub(1) {
                    self.requeue_or_fail(last, &err, now);
                }
                self.fail_waiting(&err, true, now);
                false
            }
        };
        self.last_error = Some(err);
        if stale {
            // Sent before the last failure was handled: that one decided.
            return;
        }
        self.epoch += 1;
        let deadline = self.config.deadline;
        let left = self
            .queue
            .iter()
            .chain(self.sent.iter())
            .filter(|c| c.call.retried())
            .map(|c| (c.since + deadline).saturating_since(now))
            .min();
        let decision = self.redirect.after_failure(failure, left.unwrap_or(Duration::ZERO));
        if decision.moved_to.is_some() {
            // Whatever else is in flight on the old connection goes again.
            self.drop_connection();
        }
        match left {
            Some(_) if !decision.pause.is_zero() => {
                let until = now + decision.pause;
                self.paused_until = Some(self.paused_until.map_or(until, |p| p.max(until)));
            }
            Some(_) => {}
            // Nobody waits for a retry: the next caller starts afresh.
            None => self.redirect.reset(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    type Session = ClientSession<&'static str>;

    const A: &str = "127.0.0.1:1";
    const B: &str = "127.0.0.1:2";

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn ms(t: u64) -> Instant {
        Instant::from_millis(t)
    }

    fn session(config: ClientConfig, seeds: &[&str]) -> Session {
        let seeds: Vec<SocketAddr> = seeds.iter().map(|s| addr(s)).collect();
        ClientSession::new(config, &seeds, 1).unwrap()
    }

    fn config(max_in_flight: usize) -> ClientConfig {
        ClientConfig { max_in_flight, ..ClientConfig::default() }
    }

    /// Everything the session transmits now, decoded.
    fn sent(s: &mut Session, now: Instant) -> Vec<Frame> {
        let mut buf = [0u8; 4 * TRANSMIT_MIN];
        let n = s.poll_transmit(&mut buf, now);
        let mut frames = Vec::new();
        let mut at = 0;
        while let Some((f, used)) = Frame::decode(&buf[at..n]).unwrap() {
            frames.push(f);
            at += used;
        }
        assert_eq!(at, n, "a partial frame was transmitted");
        frames
    }

    fn input(s: &mut Session, frames: &[Frame], now: Instant) {
        let mut bytes = Vec::new();
        for f in frames {
            f.encode(&mut bytes).unwrap();
        }
        s.handle_input(&bytes, now);
    }

    fn done(s: &mut Session) -> Vec<(u64, Result<Answer, CallError<&'static str>>)> {
        std::iter::from_fn(|| s.poll_completion()).map(|c| (c.ticket.get(), c.result)).collect()
    }

    fn welcome() -> Frame {
        Frame::Welcome { version: VERSION, cluster_id: 9, node: NodeId(0) }
    }

    /// Connects to the expected address and returns what went out first.
    fn connect(s: &mut Session, to: &str, now: Instant) -> Vec<Frame> {
        assert_eq!(s.poll_action(), Some(Action::Connect(addr(to))));
        s.connected(now);
        sent(s, now)
    }

    fn ts(t: u64) -> Result<Answer, CallError<&'static str>> {
        Ok(Answer::Ts(Timestamp::from_u64(t)))
    }

    fn ts_frame(id: u64, count: u32, physical: u64, logical: u32) -> Frame {
        Frame::Ts { id, count, last: Timestamp::new(physical, logical).unwrap() }
    }

    fn not_leader(id: u64, to: Option<&str>) -> Frame {
        Frame::Error {
            id,
            code: ErrorCode::NotLeader,
            leader: LeaderHint { node: Some(NodeId(1)), addr: to.map(addr) },
        }
    }

    #[test]
    fn merges_pipelines_behind_the_hello_and_splits_in_order() {
        let mut s = session(ClientConfig { max_batch: 10, ..config(2) }, &[A]);
        for count in [3, 4, 5, 2, 1] {
            s.push(count, ms(0));
        }
        // 3 + 4 fit 10, 5 does not: requests of 7, 8 (5 + 2 + 1), both
        // behind the Hello.
        let out = connect(&mut s, A, ms(1));
        assert_eq!(
            out,
            [
                Frame::Hello { version: VERSION, cluster_id: 0 },
                Frame::GetTs { id: 1, count: 7 },
                Frame::GetTs { id: 2, count: 8 },
            ]
        );
        assert!(s.awaiting_reply());
        assert_eq!(s.in_flight(), 2);
        // The second is answered first: matched by id, not by position.
        input(&mut s, &[welcome(), ts_frame(2, 8, 5, 30)], ms(2));
        assert_eq!(done(&mut s), [(2, ts((5 << 18) + 27)), (3, ts((5 << 18) + 29)), (4, ts((5 << 18) + 30))]);
        input(&mut s, &[ts_frame(1, 7, 5, 7)], ms(3));
        assert_eq!(done(&mut s), [(0, ts((5 << 18) + 3)), (1, ts((5 << 18) + 7))]);
        assert!(!s.awaiting_reply());
        assert_eq!(s.pending(), None);
    }

    #[test]
    fn one_in_flight_waits_for_the_reply_and_a_big_caller_goes_alone() {
        let mut s = session(ClientConfig { max_batch: 10, ..config(1) }, &[A]);
        s.push(20, ms(0));
        s.push(1, ms(0));
        assert_eq!(connect(&mut s, A, ms(0))[1..], [Frame::GetTs { id: 1, count: 20 }]);
        assert_eq!(sent(&mut s, ms(0)), []);
        input(&mut s, &[welcome(), ts_frame(1, 20, 1, 20)], ms(1));
        assert_eq!(sent(&mut s, ms(1)), [Frame::GetTs { id: 2, count: 1 }]);
        assert_eq!(done(&mut s).len(), 1);
    }

    #[test]
    fn partial_frames_across_inputs_are_reassembled() {
        let mut s = session(config(2), &[A]);
        s.push(2, ms(0));
        s.push(1, ms(0));
        let _ = connect(&mut s, A, ms(0));
        let mut bytes = Vec::new();
        welcome().encode(&mut bytes).unwrap();
        ts_frame(1, 3, 7, 3).encode(&mut bytes).unwrap();
        for chunk in bytes.chunks(3) {
            s.handle_input(chunk, ms(1));
        }
        assert_eq!(done(&mut s), [(0, ts((7 << 18) + 2)), (1, ts((7 << 18) + 3))]);
    }

    #[test]
    fn a_hint_is_followed_at_once_and_the_callers_go_again_in_order() {
        let mut s = session(config(2), &[A, B]);
        let leader = "10.0.0.1:7";
        for _ in 0..3 {
            s.push(1, ms(0));
        }
        s.push_call(Call::Status, ms(0));
        let out = connect(&mut s, A, ms(0));
        assert_eq!(out[1..], [Frame::GetTs { id: 1, count: 3 }, Frame::GetStatus { id: 2 }]);
        input(&mut s, &[welcome(), not_leader(1, Some(leader))], ms(1));
        // The connection goes; both requests are requeued, in order.
        assert_eq!(s.poll_action(), Some(Action::Close));
        assert_eq!(s.queued(), 4);
        assert!(done(&mut s).is_empty());
        let out = connect(&mut s, leader, ms(1));
        assert_eq!(out[1..], [Frame::GetTs { id: 3, count: 3 }, Frame::GetStatus { id: 4 }]);
        input(&mut s, &[welcome(), ts_frame(3, 3, 9, 3)], ms(2));
        assert_eq!(done(&mut s), [(0, ts((9 << 18) + 1)), (1, ts((9 << 18) + 2)), (2, ts((9 << 18) + 3))]);
    }

    #[test]
    fn a_stale_hint_falls_back_to_the_seeds_and_a_third_move_pauses() {
        let mut s = session(config(1), &[A, B]);
        let leader = "10.0.0.1:7";
        s.push(1, ms(0));
        let _ = connect(&mut s, A, ms(0));
        input(&mut s, &[welcome(), not_leader(1, Some(leader))], ms(1));
        assert_eq!(s.poll_action(), Some(Action::Close));
        assert_eq!(s.poll_action(), Some(Action::Connect(addr(leader))));
        s.connection_failed(Broken::Unreachable, "refused", ms(2));
        // Two moves at once; B names the dead leader again: the third waits.
        let _ = connect(&mut s, B, ms(2));
        input(&mut s, &[welcome(), not_leader(2, Some(leader))], ms(3));
        assert_eq!(s.poll_action(), Some(Action::Close));
        assert_eq!(s.poll_action(), None, "a third move in a row went at once");
        let until = s.poll_timeout().unwrap();
        assert!(until > ms(3) && until <= ms(13), "{until:?}");
        s.handle_timeout(until);
        assert_eq!(s.poll_action(), Some(Action::Connect(addr(leader))));
        assert!(done(&mut s).is_empty());
    }

    #[test]
    fn a_lost_connection_is_reopened_at_once_then_moves_on() {
        let mut s = session(config(1), &[A, B]);
        s.push(1, ms(0));
        let _ = connect(&mut s, A, ms(0));
        s.connection_failed(Broken::Lost, "closed", ms(1));
        let _ = connect(&mut s, A, ms(1));
        s.connection_failed(Broken::Lost, "closed", ms(2));
        assert_eq!(s.poll_action(), None, "the second loss waits");
        s.handle_timeout(s.poll_timeout().unwrap());
        assert_eq!(s.poll_action(), Some(Action::Connect(addr(B))));
    }

    #[test]
    fn logical_exhaustion_pauses_on_the_same_connection() {
        let mut s = session(config(2), &[A]);
        s.push(1, ms(0));
        let _ = connect(&mut s, A, ms(0));
        let busy = Frame::Error { id: 1, code: ErrorCode::LogicalExhausted, leader: LeaderHint::default() };
        input(&mut s, &[welcome(), busy], ms(1));
        assert_eq!(s.poll_action(), None, "the connection stays");
        assert_eq!(sent(&mut s, ms(1)), [], "sent during the pause");
        let until = s.poll_timeout().unwrap();
        s.handle_timeout(until);
        assert_eq!(sent(&mut s, until), [Frame::GetTs { id: 2, count: 1 }]);
    }

    #[test]
    fn a_failure_requeues_callers_in_arrival_order() {
        let mut s = session(ClientConfig { max_batch: 2, ..config(3) }, &[A]);
        for _ in 0..6 {
            s.push(1, ms(0));
        }
        let _ = connect(&mut s, A, ms(0));
        assert_eq!(s.in_flight(), 3);
        input(&mut s, &[welcome()], ms(1));
        s.connection_failed(Broken::Lost, "reset", ms(1));
        assert_eq!(s.pending(), Some(Ticket(0)));
        let out = connect(&mut s, A, ms(1));
        assert_eq!(
            out[1..],
            [
                Frame::GetTs { id: 4, count: 2 },
                Frame::GetTs { id: 5, count: 2 },
                Frame::GetTs { id: 6, count: 2 }
            ]
        );
        input(&mut s, &[welcome(), ts_frame(4, 2, 1, 2), ts_frame(5, 2, 1, 4), ts_frame(6, 2, 1, 6)], ms(2));
        let got: Vec<u64> = done(&mut s).into_iter().map(|(t, _)| t).collect();
        assert_eq!(got, [0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn deadlines_fail_the_callers_with_the_last_error() {
        let cfg = ClientConfig { deadline: Duration::from_millis(100), ..config(1) };
        let mut s = session(cfg, &[A]);
        s.push(1, ms(0));
        let _ = connect(&mut s, A, ms(0));
        // Within the deadline: retried.
        s.connection_failed(Broken::Unreachable, "refused", ms(50));
        assert!(done(&mut s).is_empty());
        let until = s.poll_timeout().unwrap();
        assert!(until <= ms(100), "the pause outlives the deadline: {until:?}");
        s.handle_timeout(until);
        let _ = connect(&mut s, A, until);
        s.push(1, ms(90));
        s.connection_failed(Broken::Unreachable, "refused again", ms(120));
        // The old caller's request is past its deadline; the young caller
        // (queued, never sent) waits for its own attempt.
        let got = done(&mut s);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, 0);
        assert!(matches!(got[0].1, Err(CallError::Transport { error: "refused again", .. })));
        assert_eq!(s.last_error().map(|e| e.to_string()), Some("refused again".to_string()));
        assert_eq!(s.queued(), 1);
    }

    #[test]
    fn refused_connects_count_as_attempts_until_the_deadline() {
        let cfg = ClientConfig { deadline: Duration::from_millis(100), ..config(1) };
        let mut s = session(cfg, &[A, B]);
        s.push(1, ms(0));
        let mut now = ms(0);
        let mut connects = 0;
        while done(&mut s).is_empty() {
            assert!(connects < 1_000, "retried past the deadline");
            match s.poll_action() {
                Some(Action::Connect(_)) => {
                    connects += 1;
                    s.connection_failed(Broken::Unreachable, "refused", now);
                }
                Some(Action::Close) => {}
                None => {
                    now = s.poll_timeout().expect("a caller waits without a timer");
                    s.handle_timeout(now);
                }
            }
        }
        assert!(now >= ms(100) && now < ms(101), "gave up at {now:?}");
        assert!(connects >= 3, "{connects} attempts");
        // A caller that arrives after the connect was asked for waits for an
        // attempt of its own.
        s.push(1, ms(200));
        assert_eq!(s.poll_action(), Some(Action::Connect(s.addr())));
        s.push(1, ms(200));
        s.connection_failed(Broken::Unreachable, "refused", ms(300));
        assert!(matches!(done(&mut s)[..], [(1, Err(_))]));
        assert_eq!(s.pending(), Some(Ticket(2)));
    }

    #[test]
    fn a_zero_deadline_makes_exactly_one_attempt() {
        let mut s = session(ClientConfig { deadline: Duration::ZERO, ..config(1) }, &[A]);
        s.push(1, ms(0));
        let _ = connect(&mut s, A, ms(0));
        s.connection_failed(Broken::Lost, "closed", ms(0));
        assert_eq!(done(&mut s).len(), 1);
        assert_eq!(s.poll_action(), None, "nobody is waiting");
    }

    #[test]
    fn a_request_timeout_closes_and_retries() {
        let cfg = ClientConfig { request_timeout: Duration::from_millis(30), ..config(1) };
        let mut s = session(cfg, &[A, B]);
        s.push(1, ms(0));
        let _ = connect(&mut s, A, ms(0));
        assert_eq!(s.poll_timeout(), Some(ms(30)), "the Welcome is waited for too");
        input(&mut s, &[welcome()], ms(5));
        assert_eq!(s.poll_timeout(), Some(ms(30)));
        s.handle_timeout(ms(29));
        assert_eq!(s.poll_action(), None);
        s.handle_timeout(ms(30));
        assert_eq!(s.poll_action(), Some(Action::Close));
        assert!(matches!(s.last_error(), Some(CallError::Timeout { .. })));
        // Timed out at a seed: the next seed, after a pause.
        s.handle_timeout(s.poll_timeout().unwrap());
        assert_eq!(s.poll_action(), Some(Action::Connect(addr(B))));
    }

    #[test]
    fn handshake_checks() {
        // Another cluster's Welcome: the callers behind the Hello fail.
        let mut s = session(ClientConfig { cluster_id: 3, ..config(1) }, &[A]);
        s.push(1, ms(0));
        let out = connect(&mut s, A, ms(0));
        assert_eq!(out[0], Frame::Hello { version: VERSION, cluster_id: 3 });
        input(&mut s, &[welcome()], ms(1));
        assert_eq!(s.poll_action(), Some(Action::Close));
        let got = done(&mut s);
        assert!(matches!(got[..], [(0, Err(CallError::Unexpected { .. }))]), "{got:?}");
        // A refused Hello.
        let mut s = session(config(1), &[A]);
        s.push(1, ms(0));
        let _ = connect(&mut s, A, ms(0));
        let refusal = Frame::Error { id: 0, code: ErrorCode::ClusterMismatch, leader: LeaderHint::default() };
        input(&mut s, &[refusal], ms(1));
        let got = done(&mut s);
        assert!(matches!(got[..], [(0, Err(CallError::Server { code: ErrorCode::ClusterMismatch, .. }))]));
        // An eager open reports its outcome without callers.
        let mut s = session(config(1), &[A, B]);
        s.open(1);
        assert!(s.opening());
        assert_eq!(connect(&mut s, B, ms(0)), [Frame::Hello { version: VERSION, cluster_id: 0 }]);
        input(&mut s, &[welcome()], ms(1));
        assert!(!s.opening());
        assert_eq!(s.state(), ConnState::Ready { addr: addr(B), node: NodeId(0) });
        assert_eq!(s.poll_action(), None);
    }

    #[test]
    fn replies_out_of_step_close_the_connection() {
        let mut s = session(config(2), &[A]);
        s.push(1, ms(0));
        s.push_call(Call::ReadPrimary, ms(0));
        let _ = connect(&mut s, A, ms(0));
        // A range that does not match the request.
        input(&mut s, &[welcome(), ts_frame(1, 2, 1, 2)], ms(1));
        assert_eq!(s.poll_action(), Some(Action::Close));
        let got = done(&mut s);
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got.iter().all(|(_, r)| matches!(r, Err(CallError::Unexpected { .. }))));
        // An id nobody sent; then garbage.
        s.push(1, ms(2));
        let _ = connect(&mut s, A, ms(2));
        input(&mut s, &[welcome(), ts_frame(77, 1, 1, 1)], ms(3));
        assert!(matches!(done(&mut s)[..], [(2, Err(CallError::Unexpected { .. }))]));
        let _ = s.poll_action();
        s.push(1, ms(4));
        let _ = connect(&mut s, A, ms(4));
        s.handle_input(&[0, 0, 0, 0], ms(5));
        assert!(matches!(done(&mut s)[..], [(3, Err(CallError::Protocol { .. }))]));
    }

    #[test]
    fn a_merged_batch_too_large_is_split_and_sent_again() {
        let mut s = session(ClientConfig { max_batch: 100, ..config(1) }, &[A]);
        for _ in 0..4 {
            s.push(25, ms(0));
        }
        let _ = connect(&mut s, A, ms(0));
        let refused = Frame::Error { id: 1, code: ErrorCode::CountTooLarge, leader: LeaderHint::default() };
        input(&mut s, &[welcome(), refused], ms(1));
        assert_eq!(s.max_batch(), 50);
        assert_eq!(sent(&mut s, ms(1)), [Frame::GetTs { id: 2, count: 50 }]);
        assert!(done(&mut s).is_empty());
        // Alone, a caller gets the refusal.
        let mut s = session(config(1), &[A]);
        s.push(5000, ms(0));
        let _ = connect(&mut s, A, ms(0));
        let refused = Frame::Error { id: 1, code: ErrorCode::CountTooLarge, leader: LeaderHint::default() };
        input(&mut s, &[welcome(), refused], ms(1));
        assert!(matches!(
            done(&mut s)[..],
            [(0, Err(CallError::Server { code: ErrorCode::CountTooLarge, .. }))]
        ));
    }

    #[test]
    fn invalid_counts_and_primary_calls_are_not_retried() {
        let mut s = session(config(1), &[A]);
        s.push(0, ms(0));
        s.push(MAX_COUNT + 1, ms(0));
        assert_eq!(done(&mut s).len(), 2);
        assert_eq!(s.poll_action(), None);
        s.push_call(Call::ReadPrimary, ms(0));
        let _ = connect(&mut s, A, ms(0));
        s.connection_failed(Broken::Lost, "closed", ms(1));
        assert!(matches!(done(&mut s)[..], [(2, Err(CallError::Transport { .. }))]));
        s.push_call(Call::ReadPrimary, ms(2));
        let _ = connect(&mut s, A, ms(2));
        input(&mut s, &[welcome(), Frame::Primary { id: 2, registered: None }], ms(3));
        assert_eq!(done(&mut s), [(3, Ok(Answer::Primary(None)))]);
    }

    #[test]
    fn a_warmed_up_session_keeps_its_capacity() {
        let mut s = session(ClientConfig { max_batch: 8, ..config(2) }, &[A]);
        let mut buf = [0u8; 4 * TRANSMIT_MIN];
        let mut reply = Vec::with_capacity(256);
        let mut now = ms(0);
        s.push(1, now);
        let _ = connect(&mut s, A, now);
        input(&mut s, &[welcome(), ts_frame(1, 1, 1, 1)], now);
        let _ = done(&mut s);
        let mut round = |s: &mut Session, now: Instant, physical: u64| {
            for _ in 0..20 {
                s.push(1, now);
            }
            while s.pending().is_some() {
                let n = s.poll_transmit(&mut buf, now);
                let mut at = 0;
                reply.clear();
                while let Ok(Some((Frame::GetTs { id, count }, used))) = Frame::decode(&buf[at..n]) {
                    at += used;
                    ts_frame(id, count, physical, count).encode(&mut reply).unwrap();
                }
                s.handle_input(&reply, now);
                while s.poll_completion().is_some() {}
            }
        };
        for i in 0..100 {
            now += Duration::from_millis(1);
            round(&mut s, now, 10 + i);
        }
        let capacity =
            |s: &Session| (s.queue.capacity(), s.sent.capacity(), s.in_flight.capacity(), s.done.capacity());
        let warm = capacity(&s);
        for i in 0..1_000 {
            now += Duration::from_millis(1);
            round(&mut s, now, 200 + i);
        }
        assert_eq!(capacity(&s), warm, "a queue grew after the warm-up");
    }

    #[test]
    fn no_seeds_or_no_room_in_flight_is_refused() {
        let none: Result<Session, _> = ClientSession::new(ClientConfig::default(), &[], 0);
        assert_eq!(none.err(), Some(ClientConfigError::NoSeeds));
        let zero: Result<Session, _> = ClientSession::new(config(0), &[addr(A)], 0);
        assert_eq!(zero.err(), Some(ClientConfigError::NoneInFlight));
    }

    /// One step of a random interleaving.
    #[derive(Clone, Copy, Debug)]
    enum Op {
        Push(u32),
        /// The server answers the oldest request it has, `NotLeader` if odd.
        Reply(u8),
        /// The server answers its newest request first.
        ReplyNewest,
        Lose,
        Timeout,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (1u32..40).prop_map(Op::Push),
            4 => any::<u8>().prop_map(Op::Reply),
            1 => Just(Op::ReplyNewest),
            1 => Just(Op::Lose),
            1 => Just(Op::Timeout),
        ]
    }

    proptest! {
        /// Whatever the interleaving of callers, replies (in and out of
        /// order, refusals included) and losses: every ticket completes
        /// exactly once, with a range of its own count, and the ranges
        /// handed out are disjoint and increase with each reply.
        #[test]
        fn every_ticket_completes_once_with_disjoint_ranges(
            ops in proptest::collection::vec(op(), 1..120),
            in_flight in 1usize..4,
            max_batch in 1u32..100,
        ) {
            let cfg = ClientConfig {
                max_in_flight: in_flight,
                max_batch,
                deadline: Duration::from_secs(3600),
                ..ClientConfig::default()
            };
            let mut s = session(cfg, &[A, B]);
            let mut now = ms(0);
            let mut counts = Vec::new();
            let mut results: Vec<Option<Timestamp>> = Vec::new();
            // What the server has received and not answered: (id, count).
            let mut server: VecDeque<(u64, u32)> = VecDeque::new();
            let mut connected = false;
            let mut next_ms = 1u64;
            let mut last_handed = 0u64;
            let mut buf = [0u8; 8 * TRANSMIT_MIN];
            let finish = [Op::Reply(0); 400];
            for op in ops.iter().chain(finish.iter()) {
                now += Duration::from_millis(1);
                match *op {
                    Op::Push(count) => {
                        let t = s.push(count, now);
                        prop_assert_eq!(t.get() as usize, counts.len());
                        counts.push(count);
                        results.push(None);
                    }
                    Op::Lose if connected => {
                        connected = false;
                        server.clear();
                        s.connection_failed(Broken::Lost, "lost", now);
                    }
                    Op::Timeout => {
                        if let Some(at) = s.poll_timeout() {
                            now = now.max(at);
                            s.handle_timeout(now);
                        }
                    }
                    Op::Reply(kind) if connected && !server.is_empty() => {
                        let (id, count) = server.pop_front().unwrap();
                        let frame = if kind % 5 == 1 {
                            not_leader(id, None)
                        } else {
                            next_ms += 1;
                            ts_frame(id, count, next_ms, count)
                        };
                        input(&mut s, &[frame], now);
                    }
                    Op::ReplyNewest if connected && !server.is_empty() => {
                        let (id, count) = server.pop_back().unwrap();
                        next_ms += 1;
                        input(&mut s, &[ts_frame(id, count, next_ms, count)], now);
                    }
                    _ => {}
                }
                // The runtime's part: actions, transmits, completions.
                loop {
                    let mut progress = false;
                    while let Some(action) = s.poll_action() {
                        progress = true;
                        match action {
                            Action::Close => {
                                connected = false;
                                server.clear();
                            }
                            Action::Connect(_) => {
                                server.clear();
                                connected = true;
                                s.connected(now);
                            }
                        }
                    }
                    let n = s.poll_transmit(&mut buf, now);
                    let mut at = 0;
                    while let Some((f, used)) = Frame::decode(&buf[at..n]).unwrap() {
                        at += used;
                        progress = true;
                        match f {
                            Frame::Hello { .. } => input(&mut s, &[welcome()], now),
                            Frame::GetTs { id, count } => server.push_back((id, count)),
                            other => prop_assert!(false, "sent {:?}", other),
                        }
                    }
                    if s.poll_timeout().is_some_and(|at| at <= now) {
                        s.handle_timeout(now);
                        progress = true;
                    }
                    if !progress {
                        break;
                    }
                }
                if s.poll_action().is_none() && s.poll_timeout().is_some() && s.pending().is_some() && !connected {
                    // A pause: let it pass.
                    now = s.poll_timeout().unwrap();
                    s.handle_timeout(now);
                }
                while let Some(c) = s.poll_completion() {
                    let i = c.ticket.get() as usize;
                    prop_assert!(results[i].is_none(), "ticket {} completed twice", i);
                    let Ok(Answer::Ts(last)) = c.result else {
                        return Err(TestCaseError::fail(format!("ticket {i} failed: {:?}", c.result)));
                    };
                    results[i] = Some(last);
                    // The server's ranges increase from reply to reply, and
                    // a reply's sub-ranges increase in queue order: in
                    // completion order, every range lies above the last.
                    let first = last.to_u64() - u64::from(counts[i]) + 1;
                    prop_assert!(first > last_handed, "ticket {} got {}..={}, not above {}", i, first, last.to_u64(), last_handed);
                    last_handed = last.to_u64();
                }
            }
            for (i, r) in results.iter().enumerate() {
                prop_assert!(r.is_some(), "ticket {} never completed", i);
            }
        }
    }
}
