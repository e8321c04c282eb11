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
use crate::timestamp::Timestamp;
use crate::wire::{ErrorCode, Frame, LEN_PREFIX, LeaderHint, LeaseView, MAX_FRAME_LEN, VERSION, WireError};

/// A read buffer of this size takes many pipelined requests per read.
pub const READ_BUF: usize = 8 * 1024;
/// Room a runtime keeps free after the unread bytes of its read buffer: one
/// whole frame of the largest size always fits, so a frame never waits for
/// room that cannot come.
pub const FRAME_ROOM: usize = LEN_PREFIX + MAX_FRAME_LEN as usize;
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
    /// Counts what the connection did; the default counts nothing.
    fn tally(&mut self, tally: Tally) {
        let _ = tally;
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
}

impl ServerConn {
    /// A session for a fresh connection to node `node` of a cluster of
    /// `nodes` nodes with id `cluster_id`, waiting for the client's Hello.
    pub fn new(cluster_id: u64, node: NodeId, nodes: u16) -> Self {
        ServerConn { cluster_id, node, nodes, state: State::Greeting }
    }

    /// Whether a Hello was accepted.
    pub fn is_greeted(&self) -> bool {
        matches!(self.state, State::Serving | State::Admin { .. })
    }

    /// Whether a fatal error closed the session.
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed(_))
    }

    /// Answers the complete frames at the start of `input` in order,
    /// appending the answers to `out`. Returns how many bytes of `input` it
    /// consumed (whole frames only; the rest must be passed again, with more
    /// bytes behind it) and what the runtime does next. Never panics, and
    /// never lets `out` grow past [`OUT_CAPACITY`] if the runtime empties it
    /// on [`Served::Flush`].
    pub fn handle(&mut self, input: &[u8], backend: &mut impl Backend, out: &mut Vec<u8>) -> (usize, Served) {
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
        match self.state {
            State::Admin { id: pending, .. } if pending == id => {}
            State::Admin { id: pending, .. } => {
                return Err(AdminError::NotPending { id, pending: Some(pending) });
            }
            _ => return Err(AdminError::NotPending { id, pending: None }),
        }
        self.state = State::Serving;
        match reply {
            Some(Ok(StoreOk::Primary { registered })) => send(out, Frame::Primary { id, registered }),
            // A replica that failed, timed out or answered out of contract.
            _ => error(out, backend, id, ErrorCode::Internal, LeaderHint::default()),
        }
        Ok(())
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
                    Some(status) => send(out, self.status_frame(id, &status, backend)),
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

    fn status_frame(&self, id: u64, status: &Status, backend: &impl Backend) -> Frame {
        Frame::Status {
            id,
            role: status.role,
            node: self.node,
            leader: backend.hint(status.leader),
            window_end_ms: status.window_end_ms,
            current: status.current,
            view: LeaseView {
                lease: status.lease,
                lease_left_ms: millis(status.lease_left),
                quarantine_left_ms: millis(status.quarantine_left),
                fence: status.fence,
                links_up: backend.links_up(),
                nodes: self.nodes,
                mode: status.mode,
                primary: status.primary,
            },
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
