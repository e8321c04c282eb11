//! The server side of one client connection, as a sans-IO session
//! (PROTOCOL.md, part 1).
//!
//! A runtime owns the socket and two buffers; [`ServerConn`] owns every rule
//! of the conversation: the Hello/Welcome handshake, which frames may come
//! when, how each request is answered, how a node's refusal becomes an error
//! code and a leader hint, and which bad input closes the connection. The
//! runtime's loop is only:
//!
//! 1. read bytes onto the end of its read buffer (keeping [`FRAME_ROOM`]
//!    bytes free, so one whole frame always fits);
//! 2. call [`ServerConn::handle`] with the unread bytes; drop the bytes it
//!    says it consumed;
//! 3. act on the [`Served`] it returns: write `out` and read again
//!    ([`Served::Read`]), write `out` and call again ([`Served::Flush`]), run
//!    a store operation and report it with [`ServerConn::admin_done`]
//!    ([`Served::Admin`]), or write `out`, linger and close ([`Served::Close`]).
//!
//! Nothing here blocks, spawns or reads a clock: the node behind the
//! connection is reached through the [`Backend`] the runtime passes in (it
//! reads its clock under its own lock, so the lease check uses a time no
//! earlier than the moment of handing out), and the one slow operation, an
//! operator's store request, is handed back to the runtime as
//! [`Served::Admin`]. So a blocking thread and an async task drive the same
//! session.
//!
//! Invariants this module keeps:
//! * **Order**: frames are handled strictly in arrival order and answered in
//!   that order; while an operator request is out, nothing after it runs.
//! * **Whole frames**: no frame runs before all its bytes arrived; a frame
//!   whose header shows it invalid is refused at once ([`Frame::decode`]).
//! * **Fatal means final**: after a fatal error (always id 0, empty hint)
//!   the session consumes and answers nothing more.
//! * **Bounded output**: `handle` answers no frame while `out` holds
//!   [`FLUSH`] bytes or more, so `out` never exceeds [`OUT_CAPACITY`]; a `Vec`
//!   made with that capacity is never reallocated, and the per-request path
//!   allocates nothing.

use core::time::Duration;

use crate::ballot::NodeId;
use crate::node::Status;
use crate::oracle::GetTsError;
use crate::store::{StoreOk, StoreOp, StoreReply};
use crate::time::Instant;
use crate::timestamp::Timestamp;
use crate::wire::{ErrorCode, Frame, LeaderHint, LeaseView, VERSION, WireError};

/// A read buffer of this size takes many pipelined requests per read.
pub const READ_BUF: usize = 8 * 1024;
/// Room a runtime keeps free after the unread bytes of its read buffer: one
/// whole frame of the largest size always fits, so a frame never waits for
/// room that cannot come. The same item as [`crate::wire::FRAME_ROOM`].
pub use crate::wire::FRAME_ROOM;
/// `handle` stops with [`Served::Flush`] once `out` holds this many bytes, so
/// that a long burst of pipelined requests is answered while it is read.
pub const FLUSH: usize = 8 * 1024;
/// The most bytes `out` holds: [`FLUSH`] plus one answer. A runtime that
/// makes `out` with this capacity never sees it reallocated.
pub const OUT_CAPACITY: usize = FLUSH + FRAME_ROOM;
/// How long an operator's store request may take before the runtime reports
/// it unanswered (`admin_done(id, None, ..)`, answered `Internal`; PROTOCOL.md:
/// "within 5 s").
pub const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);
/// After a fatal error the runtime stops writing and reads and discards what
/// the client still sends until the client closes, nothing arrives for this
/// long, or [`LINGER_BYTES`] were discarded: closing with unread input would
/// reset the connection before the client read the error (PROTOCOL.md,
/// "Conversation").
pub const LINGER: Duration = Duration::from_millis(250);
/// The most bytes a closing connection discards (see [`LINGER`]).
pub const LINGER_BYTES: usize = 64 * 1024;

/// Why a backend handed out no timestamps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TsRefusal {
    /// The node refused; the client is told why (and, for `NotLeader`, where
    /// the leader is).
    #[error(transparent)]
    Node(#[from] GetTsError),
    /// The node cannot answer at all (its state is unusable, e.g. a thread
    /// panicked while updating it): the client is told `Internal`.
    #[error("the node is unavailable")]
    Unavailable,
}

/// Something worth counting that a connection did, for a runtime's statistics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tally {
    /// A GetTs request was answered, with timestamps or with an error.
    GetTs,
    /// This many timestamps were handed out (the count of a successful GetTs).
    Timestamps(u32),
    /// A GetStatus request was answered.
    GetStatus,
    /// An Error frame was queued, for one request or fatal.
    Error,
}

/// What a connection needs from the node it serves. Each runtime implements
/// it over its shared node (a lock-guarded [`crate::Node`] and its clock).
pub trait Backend {
    /// Hands out `count` timestamps; the last of the range on success. The
    /// time of the lease check is the backend's to read (under its lock).
    fn get_ts(&mut self, count: u32) -> Result<Timestamp, TsRefusal>;
    /// The node's status now; `None` if the node cannot answer (`Internal`).
    fn status(&mut self) -> Option<Status>;
    /// The hint clients get for `leader`: its id and its advertised client
    /// address, if this node knows it.
    fn hint(&self, leader: Option<NodeId>) -> LeaderHint;
    /// Bit `i` set: this node's link to node `i` is up (its own bit set).
    fn links_up(&self) -> u32;
    /// The health of this node's store replica; the default says fine.
    fn store_health(&self) -> crate::health::StoreHealth {
        crate::health::StoreHealth::Ok
    }
    /// Timestamps this node handed out since it started (every door); the
    /// default counts none.
    fn served(&self) -> u64 {
        0
    }
    /// Counts what the connection did; the default counts nothing.
    fn tally(&mut self, tally: Tally) {
        let _ = tally;
    }
}

/// The Status frame answering request `id` of node `node` (of `nodes`)
/// whose state is `status`: what every door reports of a node, in one place
/// (the metrics listener's `/status.json` uses it too).
pub fn status_frame(id: u64, node: NodeId, nodes: u16, status: &Status, backend: &impl Backend) -> Frame {
    Frame::Status {
        id,
        role: status.role,
        node,
        leader: backend.hint(status.leader),
        window_end_ms: status.window_end_ms,
        current: status.current,
        view: LeaseView {
            lease: status.lease,
            lease_left_ms: millis(status.lease_left),
            quarantine_left_ms: millis(status.quarantine_left),
            fence: status.fence,
            links_up: backend.links_up(),
            nodes,
            mode: status.mode,
            primary: status.primary,
            store: backend.store_health(),
            served: backend.served(),
        },
    }
}

/// Why a connection is being closed: the reason behind the fatal error in `out`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Fatal {
    /// Bytes that are not a frame: the stream is out of step and cannot be
    /// trusted further.
    #[error("malformed frame: {0}")]
    Wire(#[from] WireError),
    /// A well-formed frame the conversation does not allow here (a bad or
    /// second Hello, a request before Hello, a server's kind): the code sent.
    #[error("refused frame: {0:?}")]
    Refused(ErrorCode),
}

impl Fatal {
    /// The code of the Error frame sent for it.
    pub fn code(self) -> ErrorCode {
        match self {
            Fatal::Wire(e) => e.code(),
            Fatal::Refused(code) => code,
        }
    }
}

/// What the runtime does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "the runtime must act on what the session asks"]
pub enum Served {
    /// No complete frame is left in the input: write `out` (if anything is in
    /// it) and read more.
    Read,
    /// `out` holds at least [`FLUSH`] bytes: write it out, clear it, then call
    /// `handle` again with the input not yet consumed.
    Flush,
    /// An operator request needs this node's store replica (asynchronous in
    /// the runtime): run `op` there and report with
    /// [`ServerConn::admin_done`], within [`ADMIN_TIMEOUT`]. Until then the
    /// session runs nothing more (`handle` returns this again, consuming
    /// nothing), so answers stay in request order. `out` may be written
    /// meanwhile.
    Admin {
        /// The request's id, for `admin_done`.
        id: u64,
        /// The operation to run on this node's replica.
        op: StoreOp,
    },
    /// A fatal error was queued in `out`: write it, linger ([`LINGER`]), close.
    /// The session answers nothing more.
    Close(Fatal),
}

/// `admin_done` for a request the session is not waiting for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AdminError {
    /// No operator request is out, or another one (`pending`) is.
    #[error("no operator request {id} is waiting (waiting: {pending:?})")]
    NotPending {
        /// The id reported.
        id: u64,
        /// The id the session waits for, if any.
        pending: Option<u64>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// No Hello accepted yet: only a Hello is allowed (checks 7-10).
    Greeting,
    /// Hello accepted: requests are answered.
    Serving,
    /// An operator request is out: nothing runs until `admin_done`.
    Admin { id: u64, op: StoreOp },
    /// A fatal error was queued: nothing more is consumed or answered.
    Closed(Fatal),
}

/// The server side of one client connection (see the module docs).
#[derive(Clone, Debug)]
pub struct ServerConn {
    cluster_id: u64,
    node: NodeId,
    nodes: u16,
    state: State,
    /// The latest time an input carried ([`ServerConn::handle`]), for
    /// the runtime's idle rules; nothing here enforces a time yet.
    last_input: Option<Instant>,
}

impl ServerConn {
    /// A session for a fresh connection to node `node` of a cluster of
    /// `nodes` nodes with id `cluster_id`, waiting for the client's Hello.
    pub fn new(cluster_id: u64, node: NodeId, nodes: u16) -> Self {
        ServerConn { cluster_id, node, nodes, state: State::Greeting, last_input: None }
    }

    /// Whether a Hello was accepted.
    pub fn is_greeted(&self) -> bool {
        matches!(self.state, State::Serving | State::Admin { .. })
    }

    /// Whether a fatal error closed the session.
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed(_))
    }

    /// The latest time an input carried, if any came through
    /// [`handle`](ServerConn::handle).
    pub fn last_input(&self) -> Option<Instant> {
        self.last_input
    }

    /// Answers the complete frames at the start of `input` in order,
    /// appending the answers to `out`. Returns how many bytes of `input` it
    /// consumed (whole frames only; the rest must be passed again, with more
    /// bytes behind it) and what the runtime does next. Never panics, and
    /// never lets `out` grow past [`OUT_CAPACITY`] if the runtime empties it
    /// on [`Served::Flush`].
    ///
    /// `now` is when `input` was read (the session contract: inputs carry
    /// their time). It is recorded ([`last_input`](ServerConn::last_input));
    /// the lease check's time is the backend's to read, under its lock.
    #[must_use = "the consumed bytes must be dropped from the input and the runtime must act on `Served`"]
    pub fn handle(
        &mut self,
        input: &[u8],
        now: Instant,
        backend: &mut impl Backend,
        out: &mut Vec<u8>,
    ) -> (usize, Served) {
        self.last_input = Some(self.last_input.map_or(now, |at| at.max(now)));
        let mut used = 0;
        loop {
            match self.state {
                State::Closed(fatal) => return (used, Served::Close(fatal)),
                State::Admin { id, op } => return (used, Served::Admin { id, op }),
                State::Greeting | State::Serving => {}
            }
            // Bounded output: no answer is queued while `out` is full.
            if out.len() >= FLUSH {
                return (used, Served::Flush);
            }
            match Frame::decode(&input[used..]) {
                Ok(None) => return (used, Served::Read),
                Ok(Some((frame, n))) => {
                    used += n;
                    self.answer(frame, backend, out);
                }
                // Checks 1-6 of PROTOCOL.md: the bytes are no frame; the bad
                // frame is not consumed (its extent cannot be trusted).
                Err(e) => self.close(Fatal::Wire(e), backend, out),
            }
        }
    }

    /// Reports the outcome of the operator request [`Served::Admin`] asked
    /// for: `Some(reply)` from the replica, or `None` if it did not answer
    /// within [`ADMIN_TIMEOUT`]. Appends the answer (Primary, or `Internal`)
    /// to `out` and lets the session run on; then call `handle` again.
    pub fn admin_done(
        &mut self,
        id: u64,
        reply: Option<StoreReply>,
        backend: &mut impl Backend,
        out: &mut Vec<u8>,
    ) -> Result<(), AdminError> {
        self.end_admin(id)?;
        match reply {
            Some(Ok(StoreOk::Primary { registered })) => send(out, Frame::Primary { id, registered }),
            // A replica that failed, timed out or answered out of contract.
            _ => error(out, backend, id, ErrorCode::Internal, LeaderHint::default()),
        }
        Ok(())
    }

    /// Refuses the operator request [`Served::Admin`] asked for, without
    /// running it: answers [`ErrorCode::Forbidden`] and lets the session run
    /// on. The kit refuses `ClearPrimary` while the registered primary serves
    /// (and, with TLS, from a client without the admin role).
    pub fn admin_forbidden(
        &mut self,
        id: u64,
        backend: &mut impl Backend,
        out: &mut Vec<u8>,
    ) -> Result<(), AdminError> {
        self.end_admin(id)?;
        error(out, backend, id, ErrorCode::Forbidden, LeaderHint::default());
        Ok(())
    }

    /// Ends the operator request `id` if it is the one pending (the session
    /// then serves again); any other id is refused and changes nothing.
    fn end_admin(&mut self, id: u64) -> Result<(), AdminError> {
        match self.state {
            State::Admin { id: pending, .. } if pending == id => {
                self.state = State::Serving;
                Ok(())
            }
            State::Admin { id: pending, .. } => Err(AdminError::NotPending { id, pending: Some(pending) }),
            _ => Err(AdminError::NotPending { id, pending: None }),
        }
    }

    /// Answers one whole, well-formed frame (checks 7-11 of PROTOCOL.md).
    fn answer(&mut self, frame: Frame, backend: &mut impl Backend, out: &mut Vec<u8>) {
        match frame {
            // Check 8 comes before 9 and 10: a second Hello of any version
            // or cluster is HandshakeRequired.
            Frame::Hello { .. } if self.state != State::Greeting => {
                self.close(Fatal::Refused(ErrorCode::HandshakeRequired), backend, out)
            }
            Frame::Hello { version, .. } if version != VERSION => {
                self.close(Fatal::Refused(ErrorCode::UnsupportedVersion), backend, out)
            }
            Frame::Hello { cluster_id, .. } if cluster_id != 0 && cluster_id != self.cluster_id => {
                self.close(Fatal::Refused(ErrorCode::ClusterMismatch), backend, out)
            }
            Frame::Hello { .. } => {
                self.state = State::Serving;
                send(out, Frame::Welcome { version: VERSION, cluster_id: self.cluster_id, node: self.node });
            }
            // Check 7: before the handshake, anything else (a server's kind
            // included) is HandshakeRequired.
            _ if self.state == State::Greeting => {
                self.close(Fatal::Refused(ErrorCode::HandshakeRequired), backend, out)
            }
            Frame::GetTs { id, count } => {
                backend.tally(Tally::GetTs);
                match backend.get_ts(count) {
                    Ok(last) => {
                        backend.tally(Tally::Timestamps(count));
                        send(out, Frame::Ts { id, count, last });
                    }
                    Err(refusal) => {
                        let (code, leader) = refusal_code(refusal, backend);
                        error(out, backend, id, code, leader);
                    }
                }
            }
            Frame::GetStatus { id } => {
                backend.tally(Tally::GetStatus);
                match backend.status() {
                    Some(status) => send(out, status_frame(id, self.node, self.nodes, &status, backend)),
                    None => error(out, backend, id, ErrorCode::Internal, LeaderHint::default()),
                }
            }
            Frame::ReadPrimary { id } => self.state = State::Admin { id, op: StoreOp::ReadPrimary },
            Frame::ClearPrimary { id, node, tag } => {
                self.state = State::Admin { id, op: StoreOp::ClearPrimary { id: node, tag } }
            }
            // Check 11: frames only a server sends; this peer is not
            // speaking the client side of the protocol.
            Frame::Welcome { .. }
            | Frame::Ts { .. }
            | Frame::Status { .. }
            | Frame::Error { .. }
            | Frame::Primary { .. } => self.close(Fatal::Refused(ErrorCode::UnknownKind), backend, out),
        }
    }

    /// Queues the fatal error (id 0, empty hint) and closes the session.
    fn close(&mut self, fatal: Fatal, backend: &mut impl Backend, out: &mut Vec<u8>) {
        error(out, backend, 0, fatal.code(), LeaderHint::default());
        self.state = State::Closed(fatal);
    }
}

/// The code and hint a refused GetTs is answered with: only `NotLeader`
/// carries the node's view of who serves; every other error the empty hint.
fn refusal_code(refusal: TsRefusal, backend: &impl Backend) -> (ErrorCode, LeaderHint) {
    match refusal {
        TsRefusal::Node(GetTsError::NotLeader { leader }) => (ErrorCode::NotLeader, backend.hint(leader)),
        TsRefusal::Node(GetTsError::LogicalExhausted) => (ErrorCode::LogicalExhausted, LeaderHint::default()),
        TsRefusal::Node(GetTsError::ZeroCount) => (ErrorCode::ZeroCount, LeaderHint::default()),
        TsRefusal::Node(GetTsError::CountTooLarge { .. }) => {
            (ErrorCode::CountTooLarge, LeaderHint::default())
        }
        TsRefusal::Unavailable => (ErrorCode::Internal, LeaderHint::default()),
    }
}

fn send(out: &mut Vec<u8>, frame: Frame) {
    // A `Vec` grows as needed, so encoding into it cannot fail; with
    // `OUT_CAPACITY` reserved it does not grow either (module docs).
    let _ = frame.encode(out);
}

fn error(out: &mut Vec<u8>, backend: &mut impl Backend, id: u64, code: ErrorCode, leader: LeaderHint) {
    backend.tally(Tally::Error);
    send(out, Frame::Error { id, code, leader });
}

/// Milliseconds of a duration for the status frame (saturating: leases are seconds).
fn millis(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ballot::Ballot;
    use crate::node::Mode;
    use crate::wire::{LEN_PREFIX, MAGIC, Role};

    const CLUSTER: u64 = 7;
    /// The time of the tests' inputs (the session records it, nothing more).
    const NOW: Instant = Instant::from_millis(1);
    const ME: NodeId = NodeId(1);

    /// A node whose answers the test sets, counting what it was asked.
    struct Fake {
        ts: Result<Timestamp, TsRefusal>,
        status: Option<Status>,
        get_ts_calls: u32,
        tallies: Vec<Tally>,
    }

    impl Fake {
        fn serving() -> Fake {
            Fake {
                ts: Ok(Timestamp::from_u64(1 << 20)),
                status: Some(status()),
                get_ts_calls: 0,
                tallies: Vec::new(),
            }
        }
    }

    impl Backend for Fake {
        fn get_ts(&mut self, _count: u32) -> Result<Timestamp, TsRefusal> {
            self.get_ts_calls += 1;
            self.ts
        }
        fn status(&mut self) -> Option<Status> {
            self.status
        }
        fn hint(&self, leader: Option<NodeId>) -> LeaderHint {
            LeaderHint { node: leader, addr: leader.map(|n| ([10, 0, 0, 1], 7400 + n.0).into()) }
        }
        fn links_up(&self) -> u32 {
            0b011
        }
        fn tally(&mut self, tally: Tally) {
            self.tallies.push(tally);
        }
    }

    fn status() -> Status {
        Status {
            role: Role::Leader,
            leader: Some(ME),
            window_end_ms: 9_000,
            current: Timestamp::from_u64(5 << 18),
            lease: Some(Ballot::new(4, 2, ME)),
            lease_left: Duration::from_millis(2_500),
            quarantine_left: Duration::from_secs(1 << 40),
            fence: Some(Ballot::new(3, 2, ME)),
            mode: Mode::Primary,
            primary: Some((ME, Ballot::new(0, 2, ME))),
        }
    }

    fn bytes(frames: &[Frame]) -> Vec<u8> {
        let mut v = Vec::new();
        for f in frames {
            f.encode(&mut v).unwrap();
        }
        v
    }

    fn hello(cluster_id: u64) -> Frame {
        Frame::Hello { version: VERSION, cluster_id }
    }

    /// Every frame in `out`, which must hold only whole frames.
    fn frames(out: &[u8]) -> Vec<Frame> {
        let mut at = 0;
        let mut v = Vec::new();
        while at < out.len() {
            let (f, n) = Frame::decode(&out[at..]).unwrap().unwrap();
            v.push(f);
            at += n;
        }
        v
    }

    fn fatal(code: ErrorCode) -> Frame {
        Frame::Error { id: 0, code, leader: LeaderHint::default() }
    }

    fn welcome() -> Frame {
        Frame::Welcome { version: VERSION, cluster_id: CLUSTER, node: ME }
    }

    /// Runs `input` through a fresh session; returns what it consumed, what
    /// it asked, and the answers.
    fn run(input: &[u8], backend: &mut Fake) -> (usize, Served, Vec<Frame>, ServerConn) {
        let mut conn = ServerConn::new(CLUSTER, ME, 3);
        let mut out = Vec::new();
        let (used, served) = conn.handle(input, NOW, backend, &mut out);
        (used, served, frames(&out), conn)
    }

    #[test]
    fn the_time_of_the_latest_input_is_recorded_and_never_runs_back() {
        let input = bytes(&[hello(CLUSTER), Frame::GetTs { id: 1, count: 2 }]);
        let mut conn = ServerConn::new(CLUSTER, ME, 3);
        assert_eq!(conn.last_input(), None);
        let _ = conn.handle(&input, Instant::from_millis(5), &mut Fake::serving(), &mut Vec::new());
        assert_eq!(conn.last_input(), Some(Instant::from_millis(5)));
        let _ = conn.handle(&[], Instant::from_millis(3), &mut Fake::serving(), &mut Vec::new());
        assert_eq!(conn.last_input(), Some(Instant::from_millis(5)));
    }

    #[test]
    fn a_forbidden_operator_request_is_answered_and_the_session_goes_on() {
        let tag = Ballot::new(0, 3, NodeId(2));
        let input = bytes(&[hello(CLUSTER), Frame::ClearPrimary { id: 4, node: NodeId(2), tag }]);
        let mut conn = ServerConn::new(CLUSTER, ME, 3);
        let mut out = Vec::new();
        let mut backend = Fake::serving();
        let (used, served) = conn.handle(&input, NOW, &mut backend, &mut out);
        assert_eq!(
            (used, served),
            (input.len(), Served::Admin { id: 4, op: StoreOp::ClearPrimary { id: NodeId(2), tag } })
        );
        assert!(conn.admin_forbidden(5, &mut backend, &mut out).is_err(), "only the pending request");
        conn.admin_forbidden(4, &mut backend, &mut out).unwrap();
        let answers = frames(&out);
        assert!(
            matches!(answers.last(), Some(Frame::Error { id: 4, code: ErrorCode::Forbidden, .. })),
            "{answers:?}"
        );
        let more = bytes(&[Frame::GetTs { id: 6, count: 1 }]);
        let (_, served) = conn.handle(&more, NOW, &mut backend, &mut out);
        assert_eq!(served, Served::Read, "the connection goes on");
        assert!(matches!(frames(&out).last(), Some(Frame::Ts { id: 6, .. })));
    }

    #[test]
    fn hello_is_welcomed_with_the_servers_identity() {
        for cluster in [CLUSTER, 0] {
            let input = bytes(&[hello(cluster)]);
            let (used, served, answers, conn) = run(&input, &mut Fake::serving());
            assert_eq!((used, served), (input.len(), Served::Read), "cluster {cluster}");
            assert_eq!(answers, [welcome()]);
            assert!(conn.is_greeted());
        }
    }

    #[test]
    fn refused_hellos_close_with_their_code_and_run_nothing_behind_them() {
        let cases = [
            (Frame::Hello { version: 2, cluster_id: CLUSTER }, ErrorCode::UnsupportedVersion),
            (Frame::Hello { version: 2, cluster_id: 99 }, ErrorCode::UnsupportedVersion),
            (hello(CLUSTER + 1), ErrorCode::ClusterMismatch),
        ];
        for (frame, code) in cases {
            let mut backend = Fake::serving();
            let input = bytes(&[frame, Frame::GetTs { id: 1, count: 1 }]);
            let mut conn = ServerConn::new(CLUSTER, ME, 3);
            let mut out = Vec::new();
            let (used, served) = conn.handle(&input, NOW, &mut backend, &mut out);
            assert_eq!(served, Served::Close(Fatal::Refused(code)), "{frame:?}");
            assert!(used <= input.len());
            assert_eq!(frames(&out), [fatal(code)]);
            assert_eq!(backend.get_ts_calls, 0, "nothing after a refused Hello runs");
            assert!(conn.is_closed() && !conn.is_greeted());
            // Closed stays closed: nothing is consumed or answered again.
            let before = out.len();
            assert_eq!(conn.handle(&input[used..], NOW, &mut backend, &mut out), (0, served));
            assert_eq!(out.len(), before);
            assert_eq!(backend.tallies, [Tally::Error]);
        }
    }

    #[test]
    fn a_second_hello_of_any_version_is_handshake_required() {
        for second in [hello(CLUSTER), Frame::Hello { version: 9, cluster_id: 12345 }] {
            let input = bytes(&[hello(0), second]);
            let (used, served, answers, _) = run(&input, &mut Fake::serving());
            assert_eq!(used, input.len());
            assert_eq!(served, Served::Close(Fatal::Refused(ErrorCode::HandshakeRequired)));
            assert_eq!(answers, [welcome(), fatal(ErrorCode::HandshakeRequired)]);
        }
    }

    #[test]
    fn anything_known_before_hello_is_handshake_required() {
        let early = [
            Frame::GetTs { id: 5, count: 1 },
            Frame::GetStatus { id: 5 },
            Frame::ReadPrimary { id: 5 },
            Frame::ClearPrimary { id: 5, node: ME, tag: Ballot::ZERO },
            Frame::Ts { id: 5, count: 1, last: Timestamp::from_u64(1) },
            Frame::Welcome { version: VERSION, cluster_id: CLUSTER, node: ME },
            Frame::Error { id: 5, code: ErrorCode::Internal, leader: LeaderHint::default() },
        ];
        for frame in early {
            let mut backend = Fake::serving();
            let input = bytes(&[frame, hello(CLUSTER)]);
            let (_, served, answers, _) = run(&input, &mut backend);
            assert_eq!(served, Served::Close(Fatal::Refused(ErrorCode::HandshakeRequired)), "{frame:?}");
            assert_eq!(answers, [fatal(ErrorCode::HandshakeRequired)], "{frame:?}");
            assert_eq!(backend.get_ts_calls, 0);
        }
    }

    #[test]
    fn header_checks_win_over_the_handshake_state() {
        // Check 3 before 7: an unknown kind first is UnknownKind.
        let (used, served, answers, _) = run(&[0, 0, 0, 1, 0x55], &mut Fake::serving());
        assert_eq!(served, Served::Close(Fatal::Wire(WireError::UnknownKind(0x55))));
        assert_eq!((used, answers), (0, vec![fatal(ErrorCode::UnknownKind)]));
        // Check 4 before 5: a Hello one byte short, with a bad magic, is Malformed.
        let short = [0, 0, 0, 13, 0x01, b'X', b'T', b'S', b'O', 1, 0, 0, 0, 0, 0, 0, 0];
        let (_, _, answers, _) = run(&short, &mut Fake::serving());
        assert_eq!(answers, [fatal(ErrorCode::Malformed)]);
        // Check 5: the right size with a bad magic and another version is UnsupportedVersion.
        let mut bad = bytes(&[Frame::Hello { version: 3, cluster_id: 0 }]);
        bad[LEN_PREFIX + 1] = b'X';
        let (_, served, answers, _) = run(&bad, &mut Fake::serving());
        assert_eq!(served, Served::Close(Fatal::Wire(WireError::BadMagic)));
        assert_eq!(answers, [fatal(ErrorCode::UnsupportedVersion)]);
        // Also for a second Hello with a bad magic (19, not 21).
        let mut input = bytes(&[hello(0)]);
        input.extend_from_slice(&bad);
        let (_, _, answers, _) = run(&input, &mut Fake::serving());
        assert_eq!(answers, [welcome(), fatal(ErrorCode::UnsupportedVersion)]);
    }

    #[test]
    fn bad_headers_are_refused_before_their_body_arrives() {
        let cases: [(&[u8], ErrorCode); 4] = [
            (&[0, 0, 1, 1], ErrorCode::FrameTooLarge), // len 257
            (&[0xff, 0xff, 0xff, 0xff], ErrorCode::FrameTooLarge),
            (&[0, 0, 0, 0], ErrorCode::Malformed),        // len 0
            (&[0, 0, 0, 40, 0x10], ErrorCode::Malformed), // GetTs of the wrong size
        ];
        for (header, code) in cases {
            let mut input = bytes(&[hello(0)]);
            let greeted = input.len();
            input.extend_from_slice(header);
            let (used, served, answers, _) = run(&input, &mut Fake::serving());
            assert_eq!(used, greeted, "{header:?}: the bad frame is not consumed");
            assert!(matches!(served, Served::Close(Fatal::Wire(_))), "{header:?}");
            assert_eq!(answers, [welcome(), fatal(code)], "{header:?}");
        }
    }

    #[test]
    fn a_frame_runs_only_once_all_its_bytes_arrived() {
        let input = bytes(&[hello(0), Frame::GetTs { id: 3, count: 2 }]);
        let greeted = bytes(&[hello(0)]).len();
        let mut backend = Fake::serving();
        let mut conn = ServerConn::new(CLUSTER, ME, 3);
        let mut out = Vec::new();
        let mut start = 0;
        // Byte by byte: each call consumes a frame only when it is whole.
        for end in 0..=input.len() {
            let (used, served) = conn.handle(&input[start..end], NOW, &mut backend, &mut out);
            assert_eq!(served, Served::Read);
            start += used;
            let expected = if end == input.len() {
                input.len()
            } else if end >= greeted {
                greeted
            } else {
                0
            };
            assert_eq!(start, expected, "at {end} bytes");
        }
        assert_eq!(backend.get_ts_calls, 1);
        let last = Timestamp::from_u64(1 << 20);
        assert_eq!(frames(&out), [welcome(), Frame::Ts { id: 3, count: 2, last }]);
    }

    #[test]
    fn get_ts_is_answered_and_counted() {
        let mut backend = Fake::serving();
        let input = bytes(&[hello(0), Frame::GetTs { id: 0, count: 9 }]);
        let (_, _, answers, _) = run(&input, &mut backend);
        assert_eq!(answers[1], Frame::Ts { id: 0, count: 9, last: Timestamp::from_u64(1 << 20) });
        assert_eq!(backend.tallies, [Tally::GetTs, Tally::Timestamps(9)]);
    }

    #[test]
    fn refusals_map_to_codes_and_only_not_leader_carries_a_hint() {
        let hinted = LeaderHint { node: Some(NodeId(2)), addr: Some(([10, 0, 0, 1], 7402).into()) };
        let cases = [
            (
                TsRefusal::Node(GetTsError::NotLeader { leader: Some(NodeId(2)) }),
                ErrorCode::NotLeader,
                hinted,
            ),
            (
                TsRefusal::Node(GetTsError::NotLeader { leader: None }),
                ErrorCode::NotLeader,
                LeaderHint::default(),
            ),
            (
                TsRefusal::Node(GetTsError::LogicalExhausted),
                ErrorCode::LogicalExhausted,
                LeaderHint::default(),
            ),
            (TsRefusal::Node(GetTsError::ZeroCount), ErrorCode::ZeroCount, LeaderHint::default()),
            (
                TsRefusal::Node(GetTsError::CountTooLarge { count: 1 << 20, max: 1 << 18 }),
                ErrorCode::CountTooLarge,
                LeaderHint::default(),
            ),
            (TsRefusal::Unavailable, ErrorCode::Internal, LeaderHint::default()),
        ];
        for (refusal, code, leader) in cases {
            let mut backend = Fake { ts: Err(refusal), ..Fake::serving() };
            let input =
                bytes(&[hello(0), Frame::GetTs { id: 4, count: 1 }, Frame::GetTs { id: 5, count: 1 }]);
            let (used, served, answers, _) = run(&input, &mut backend);
            assert_eq!((used, served), (input.len(), Served::Read), "{refusal:?}: the connection stays open");
            assert_eq!(
                answers,
                [welcome(), Frame::Error { id: 4, code, leader }, Frame::Error { id: 5, code, leader }],
                "{refusal:?}"
            );
            assert_eq!(backend.tallies, [Tally::GetTs, Tally::Error, Tally::GetTs, Tally::Error]);
        }
    }

    #[test]
    fn status_carries_the_node_view() {
        let mut backend = Fake::serving();
        let input = bytes(&[hello(0), Frame::GetStatus { id: 8 }]);
        let (_, _, answers, _) = run(&input, &mut backend);
        let s = status();
        assert_eq!(
            answers[1],
            Frame::Status {
                id: 8,
                role: Role::Leader,
                node: ME,
                leader: backend.hint(Some(ME)),
                window_end_ms: 9_000,
                current: s.current,
                view: LeaseView {
                    lease: s.lease,
                    lease_left_ms: 2_500,
                    quarantine_left_ms: u32::MAX, // saturated
                    fence: s.fence,
                    links_up: 0b011,
                    nodes: 3,
                    mode: Mode::Primary,
                    primary: s.primary,
                    store: crate::health::StoreHealth::Ok,
                    served: 0,
                },
            }
        );
        assert_eq!(backend.tallies, [Tally::GetStatus]);
        // A node that cannot answer: Internal for that request, and on.
        let mut backend = Fake { status: None, ..Fake::serving() };
        let (_, served, answers, _) = run(&input, &mut backend);
        assert_eq!(served, Served::Read);
        let internal = Frame::Error { id: 8, code: ErrorCode::Internal, leader: LeaderHint::default() };
        assert_eq!(answers, [welcome(), internal]);
    }

    #[test]
    fn server_kinds_after_hello_are_unknown_kind() {
        let server_kinds = [
            welcome(),
            Frame::Ts { id: 1, count: 1, last: Timestamp::from_u64(1) },
            Frame::Status {
                id: 1,
                role: Role::Follower,
                node: ME,
                leader: LeaderHint::default(),
                window_end_ms: 0,
                current: Timestamp::ZERO,
                view: LeaseView::default(),
            },
            Frame::Error { id: 1, code: ErrorCode::NotLeader, leader: LeaderHint::default() },
            Frame::Primary { id: 1, registered: None },
        ];
        for frame in server_kinds {
            let input = bytes(&[hello(0), frame, Frame::GetTs { id: 2, count: 1 }]);
            let mut backend = Fake::serving();
            let (_, served, answers, _) = run(&input, &mut backend);
            assert_eq!(served, Served::Close(Fatal::Refused(ErrorCode::UnknownKind)), "{frame:?}");
            assert_eq!(answers, [welcome(), fatal(ErrorCode::UnknownKind)]);
            assert_eq!(backend.get_ts_calls, 0);
        }
    }

    #[test]
    fn pipelined_frames_are_answered_in_order_before_a_fatal_error() {
        let mut input = bytes(&[
            hello(CLUSTER),
            Frame::GetTs { id: 1, count: 1 },
            Frame::GetStatus { id: 2 },
            Frame::GetTs { id: 3, count: 0 },
        ]);
        input.extend_from_slice(&[0, 0, 0, 1, 0x66]);
        let mut backend = Fake::serving();
        let (_, served, answers, _) = run(&input, &mut backend);
        assert_eq!(served, Served::Close(Fatal::Wire(WireError::UnknownKind(0x66))));
        let ids: Vec<_> = answers
            .iter()
            .map(|f| match *f {
                Frame::Welcome { .. } => (0, 0x02),
                Frame::Ts { id, .. } => (id, 0x11),
                Frame::Status { id, .. } => (id, 0x13),
                Frame::Error { id, code, .. } => (id, code as u16),
                _ => (u64::MAX, 0),
            })
            .collect();
        // The fake hands out for count 0 too: the node decides, not the session.
        assert_eq!(ids, [(0, 0x02), (1, 0x11), (2, 0x13), (3, 0x11), (0, ErrorCode::UnknownKind as u16)]);
    }

    #[test]
    fn a_long_burst_stops_for_flush_and_out_stays_bounded() {
        let n = 2_000u64;
        let mut input = bytes(&[hello(0)]);
        for id in 1..=n {
            Frame::GetTs { id, count: 1 }.encode(&mut input).unwrap();
        }
        let mut backend = Fake::serving();
        let mut conn = ServerConn::new(CLUSTER, ME, 3);
        let mut out = Vec::with_capacity(OUT_CAPACITY);
        let capacity = out.capacity();
        let (mut at, mut flushes, mut answered) = (0, 0, Vec::new());
        loop {
            let (used, served) = conn.handle(&input[at..], NOW, &mut backend, &mut out);
            at += used;
            assert!(out.len() <= OUT_CAPACITY);
            answered.extend(frames(&out));
            match served {
                Served::Flush => {
                    assert!(out.len() >= FLUSH);
                    flushes += 1;
                    // Not emptied: asked again, it waits rather than grows.
                    let len = out.len();
                    assert_eq!(conn.handle(&input[at..], NOW, &mut backend, &mut out), (0, Served::Flush));
                    assert_eq!(out.len(), len);
                    out.clear();
                }
                Served::Read => break,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(at, input.len());
        assert_eq!(out.capacity(), capacity, "out was never reallocated");
        assert_eq!(flushes, (n as usize * 25 + 20) / FLUSH);
        assert_eq!(answered.len(), n as usize + 1);
        for (i, f) in answered[1..].iter().enumerate() {
            assert!(
                matches!(*f, Frame::Ts { id, .. } if id == i as u64 + 1),
                "answer {i} out of order: {f:?}"
            );
        }
    }

    #[test]
    fn an_operator_request_pauses_the_session_until_it_is_done() {
        let tag = Ballot::new(0, 3, NodeId(2));
        let input = bytes(&[
            hello(0),
            Frame::GetTs { id: 1, count: 1 },
            Frame::ReadPrimary { id: 2 },
            Frame::GetTs { id: 3, count: 1 },
            Frame::ClearPrimary { id: 4, node: NodeId(2), tag },
            Frame::GetTs { id: 5, count: 1 },
        ]);
        let mut backend = Fake::serving();
        let mut conn = ServerConn::new(CLUSTER, ME, 3);
        let mut out = Vec::new();
        let (used, served) = conn.handle(&input, NOW, &mut backend, &mut out);
        assert_eq!(served, Served::Admin { id: 2, op: StoreOp::ReadPrimary });
        assert_eq!(backend.get_ts_calls, 1, "nothing after the operator request ran");
        // Asked again before the store answered: the same request, nothing consumed.
        assert_eq!(conn.handle(&input[used..], NOW, &mut backend, &mut out), (0, served));
        assert_eq!(
            conn.admin_done(9, None, &mut backend, &mut out),
            Err(AdminError::NotPending { id: 9, pending: Some(2) })
        );
        let registered = Some((NodeId(2), tag));
        conn.admin_done(2, Some(Ok(StoreOk::Primary { registered })), &mut backend, &mut out).unwrap();
        assert_eq!(
            conn.admin_done(2, None, &mut backend, &mut out),
            Err(AdminError::NotPending { id: 2, pending: None })
        );
        let mut at = used;
        let (used, served) = conn.handle(&input[at..], NOW, &mut backend, &mut out);
        at += used;
        assert_eq!(served, Served::Admin { id: 4, op: StoreOp::ClearPrimary { id: NodeId(2), tag } });
        // The store did not answer in time: Internal, and the session goes on.
        conn.admin_done(4, None, &mut backend, &mut out).unwrap();
        let (used, served) = conn.handle(&input[at..], NOW, &mut backend, &mut out);
        assert_eq!((at + used, served), (input.len(), Served::Read));
        let last = Timestamp::from_u64(1 << 20);
        assert_eq!(
            frames(&out),
            [
                welcome(),
                Frame::Ts { id: 1, count: 1, last },
                Frame::Primary { id: 2, registered },
                Frame::Ts { id: 3, count: 1, last },
                Frame::Error { id: 4, code: ErrorCode::Internal, leader: LeaderHint::default() },
                Frame::Ts { id: 5, count: 1, last },
            ]
        );
        // A store reply out of contract is Internal too.
        let mut conn = ServerConn::new(CLUSTER, ME, 3);
        let mut out = Vec::new();
        let _ = conn.handle(&bytes(&[hello(0), Frame::ReadPrimary { id: 6 }]), NOW, &mut backend, &mut out);
        conn.admin_done(6, Some(Ok(StoreOk::Saved)), &mut backend, &mut out).unwrap();
        assert_eq!(
            frames(&out)[1],
            Frame::Error { id: 6, code: ErrorCode::Internal, leader: LeaderHint::default() }
        );
    }

    #[test]
    fn the_magic_is_the_client_protocols() {
        // The Hello tests above rely on the frame layout starting with it.
        assert_eq!(&bytes(&[hello(0)])[LEN_PREFIX + 1..LEN_PREFIX + 5], &MAGIC);
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        /// Drives a session like a runtime: flushes when asked, answers every
        /// operator request, until it needs more bytes or closes.
        fn drive(input: &[u8]) -> (usize, Served, usize) {
            let mut backend = Fake::serving();
            let mut conn = ServerConn::new(CLUSTER, ME, 3);
            let mut out = Vec::with_capacity(OUT_CAPACITY);
            let (mut at, mut written) = (0, 0);
            loop {
                let (used, served) = conn.handle(&input[at..], NOW, &mut backend, &mut out);
                assert!(used <= input.len() - at);
                assert!(out.len() <= OUT_CAPACITY, "out grew to {}", out.len());
                at += used;
                match served {
                    Served::Flush => {
                        written += out.len();
                        out.clear();
                    }
                    Served::Admin { id, .. } => {
                        conn.admin_done(id, None, &mut backend, &mut out).unwrap();
                    }
                    Served::Read | Served::Close(_) => {
                        frames(&out); // whole frames only
                        return (at, served, written + out.len());
                    }
                }
            }
        }

        /// Bytes that often look like frames: valid frames, their pieces,
        /// and junk, glued together.
        fn plausible() -> impl Strategy<Value = Vec<u8>> {
            let piece = prop_oneof![
                Just(bytes(&[hello(0)])),
                (any::<u64>(), any::<u32>()).prop_map(|(id, count)| bytes(&[Frame::GetTs { id, count }])),
                any::<u64>().prop_map(|id| bytes(&[Frame::GetStatus { id }])),
                any::<u64>().prop_map(|id| bytes(&[Frame::ReadPrimary { id }])),
                (0u8..=0x7f, 0u8..40).prop_map(|(kind, len)| vec![0, 0, 0, len, kind]),
                proptest::collection::vec(any::<u8>(), 0..24),
            ];
            proptest::collection::vec(piece, 0..40).prop_map(|v| v.concat())
        }

        proptest! {
            #[test]
            fn any_bytes_no_panic_consumed_within_input_out_bounded(
                input in proptest::collection::vec(any::<u8>(), 0..600),
            ) {
                let (at, served, _) = drive(&input);
                prop_assert!(at <= input.len());
                if served == Served::Read {
                    // What is left is an incomplete frame, which fits the room kept.
                    prop_assert!(input.len() - at < FRAME_ROOM);
                }
            }

            #[test]
            fn plausible_streams_are_consumed_whole_frames_at_a_time(input in plausible()) {
                let (at, served, _) = drive(&input);
                prop_assert!(at <= input.len());
                // Consumed bytes are whole frames: decoding them again ends exactly at `at`.
                let mut i = 0;
                while i < at {
                    let (_, n) = Frame::decode(&input[i..]).unwrap().unwrap();
                    i += n;
                }
                prop_assert_eq!(i, at);
                if served == Served::Read {
                    prop_assert_eq!(Frame::decode(&input[at..]), Ok(None));
                }
            }
        }
    }
}
