//! The client session itself: its state, and the inputs and outputs a
//! runtime drives it with (the module documentation of [`crate::client`]).

use core::net::SocketAddr;
use std::collections::VecDeque;

use crate::ballot::NodeId;
use crate::redirect::Redirect;
use crate::rng::Rng;
use crate::time::Instant;
use crate::wire::FRAME_ROOM;

use super::call::{Call, Completion, Ticket};
use super::config::{ClientConfig, ClientConfigError, MAX_COUNT};
use super::error::{Broken, CallError};

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
pub(super) enum Conn {
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
pub(super) struct Caller {
    pub(super) ticket: Ticket,
    pub(super) call: Call,
    /// When the caller arrived.
    pub(super) since: Instant,
}

/// An outstanding request; its callers are the next `callers` entries of
/// `ClientSession::sent` after those of the requests before it.
#[derive(Clone, Copy, Debug)]
pub(super) struct Request {
    pub(super) id: u64,
    pub(super) call: Call,
    pub(super) callers: usize,
    /// The oldest caller's arrival: the request's deadline counts from it (C6).
    pub(super) since: Instant,
    pub(super) sent_at: Instant,
    /// The failures handled before it was sent: a failure of a request sent
    /// before the last one was handled is old news and moves nothing.
    pub(super) epoch: u64,
}

/// One client's protocol state (module documentation).
#[derive(Debug)]
pub struct ClientSession<E> {
    pub(super) config: ClientConfig,
    /// `config.max_batch` clamped, lowered on a refused merged batch.
    pub(super) max_batch: u32,
    pub(super) redirect: Redirect,
    pub(super) conn: Conn,
    /// Connect even with nobody queued: set by [`ClientSession::open`],
    /// cleared by the handshake's outcome.
    pub(super) eager: bool,
    /// An [`Action::Close`] is owed to the runtime.
    pub(super) close_pending: bool,
    /// No new attempt before this.
    pub(super) paused_until: Option<Instant>,
    /// Callers not sent, in arrival (ticket) order (C5 keeps it so).
    pub(super) queue: VecDeque<Caller>,
    /// Callers of the in-flight requests, in send order.
    pub(super) sent: VecDeque<Caller>,
    /// Outstanding requests, in send order.
    pub(super) in_flight: VecDeque<Request>,
    pub(super) done: VecDeque<Completion<E>>,
    pub(super) next_ticket: u64,
    /// `next_ticket` when the current connection was asked for: the callers
    /// before it were waiting on that connection.
    pub(super) attempt_ticket: u64,
    pub(super) next_id: u64,
    /// Failures handled so far (see [`Request::epoch`]).
    pub(super) epoch: u64,
    pub(super) last_error: Option<CallError<E>>,
    /// A partial frame left over from one input, waiting for the next: room
    /// for one whole frame of the largest size.
    pub(super) rx: [u8; FRAME_ROOM],
    pub(super) rx_len: usize,
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
            rx: [0; FRAME_ROOM],
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

    /// Queues a caller for `count` timestamps; its [`Answer::Ts`](super::Answer::Ts) comes as a
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
    /// when there is nothing to send. `buf` needs at least [`FRAME_ROOM`](crate::wire::FRAME_ROOM)
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
            match self.put_hello(buf, welcomed, now) {
                Some(n) => written += n,
                None => return 0,
            }
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

    pub(super) fn is_open(&self) -> bool {
        matches!(self.conn, Conn::Open { .. })
    }

    pub(super) fn expire(&mut self, now: Instant) {
        if self.paused_until.is_some_and(|at| at <= now) {
            self.paused_until = None;
        }
    }

    /// When the oldest outstanding answer times out, if one is owed.
    pub(super) fn request_deadline(&self) -> Option<Instant> {
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
}

#[cfg(test)]
mod tests {
    use crate::client::fixtures::*;
    use std::collections::VecDeque;

    use proptest::prelude::*;

    #[test]
    fn a_warmed_up_session_keeps_its_capacity() {
        let mut s = session(ClientConfig { max_batch: 8, ..config(2) }, &[A]);
        let mut buf = [0u8; 4 * FRAME_ROOM];
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
            let mut buf = [0u8; 8 * FRAME_ROOM];
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
