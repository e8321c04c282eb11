//! One client connection, served on its own thread.
//!
//! The thread reads whatever bytes have arrived into a fixed buffer, answers
//! every complete frame in it in order (so pipelined requests are answered in
//! one write), and reads again. The read and write buffers are allocated once
//! per connection: the per-request path allocates nothing.
//!
//! A byte string that is not a frame means the connection is out of sync and
//! cannot be trusted further: the thread answers with a fatal error and closes
//! this connection only.

use std::io::{self, Write};
use std::net::TcpStream;
use std::time::Duration;

use leasetso_core::wire::{LEN_PREFIX, MAX_FRAME_LEN, VERSION};
use leasetso_core::{ErrorCode, Frame, GetTsError, LeaderHint, LeaseView, StoreOk, StoreOp};

use crate::io::{linger_close, refill};
use crate::server::{Counters, Shared};

/// Read buffer size: many pipelined requests per read.
const READ_BUF: usize = 8 * 1024;
/// Room kept free in the read buffer: one whole frame always fits.
const FRAME_ROOM: usize = LEN_PREFIX + MAX_FRAME_LEN as usize;
/// Answers are written out once this many bytes are buffered, even mid-burst.
const WRITE_FLUSH: usize = 8 * 1024;
/// How long an operator's store request may wait for the store thread.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);
/// What to do after a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Next {
    Continue,
    /// A fatal error was queued: send it and close.
    Close,
}

struct Conn<'a> {
    shared: &'a Shared,
    greeted: bool,
    out: Vec<u8>,
}

/// Serves `stream` until the client leaves, breaks the protocol, or the server stops.
pub(crate) fn serve(shared: &Shared, stream: TcpStream) {
    // Timestamps are small and latency-bound: never wait to coalesce writes.
    let _ = stream.set_nodelay(true);
    let mut conn = Conn { shared, greeted: false, out: Vec::with_capacity(WRITE_FLUSH + FRAME_ROOM) };
    let mut buf = vec![0u8; READ_BUF];
    let (mut start, mut end) = (0usize, 0usize);
    loop {
        // Answer every complete frame already buffered.
        let next = loop {
            match Frame::decode(&buf[start..end]) {
                Ok(Some((frame, used))) => {
                    start += used;
                    if conn.handle(frame) == Next::Close {
                        break Next::Close;
                    }
                    if conn.out.len() >= WRITE_FLUSH && conn.flush(&stream).is_err() {
                        return;
                    }
                }
                Ok(None) => break Next::Continue,
                Err(e) => {
                    tracing::debug!(error = %e, "malformed frame; closing the connection");
                    conn.error(0, e.code(), LeaderHint::default());
                    break Next::Close;
                }
            }
        };
        if conn.flush(&stream).is_err() {
            return;
        }
        if next == Next::Close || conn.shared.is_stopping() {
            linger_close(&stream);
            return;
        }
        match refill(&stream, &mut buf, &mut start, &mut end, FRAME_ROOM) {
            // The client left, possibly mid-frame: nothing to answer.
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

impl Conn<'_> {
    fn flush(&mut self, mut stream: &TcpStream) -> io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let result = stream.write_all(&self.out);
        self.out.clear();
        result
    }

    fn send(&mut self, frame: Frame) {
        // `out` is a `Vec`, which grows as needed: encoding into it cannot fail.
        let _ = frame.encode(&mut self.out);
    }

    fn error(&mut self, id: u64, code: ErrorCode, leader: LeaderHint) {
        Counters::bump(&self.shared.counters.errors, 1);
        self.send(Frame::Error { id, code, leader });
    }

    /// Runs an operator's registration read or clear on this node's replica.
    fn admin(&mut self, id: u64, op: StoreOp) {
        match self.shared.admin(op, ADMIN_TIMEOUT) {
            Some(Ok(StoreOk::Primary { registered })) => self.send(Frame::Primary { id, registered }),
            _ => self.error(id, ErrorCode::Internal, LeaderHint::default()),
        }
    }

    /// Answers one frame.
    fn handle(&mut self, frame: Frame) -> Next {
        let shared = self.shared;
        match frame {
            Frame::Hello { version, cluster_id } => {
                if self.greeted {
                    self.error(0, ErrorCode::HandshakeRequired, LeaderHint::default());
                    return Next::Close;
                }
                if version != VERSION {
                    self.error(0, ErrorCode::UnsupportedVersion, LeaderHint::default());
                    return Next::Close;
                }
                if cluster_id != 0 && cluster_id != shared.cluster_id {
                    self.error(0, ErrorCode::ClusterMismatch, LeaderHint::default());
                    return Next::Close;
                }
                self.greeted = true;
                self.send(Frame::Welcome {
                    version: VERSION,
                    cluster_id: shared.cluster_id,
                    node: shared.node_id,
                });
                Next::Continue
            }
            _ if !self.greeted => {
                self.error(0, ErrorCode::HandshakeRequired, LeaderHint::default());
                Next::Close
            }
            Frame::GetTs { id, count } => {
                Counters::bump(&shared.counters.get_ts_requests, 1);
                let result = shared.get_ts(count);
                match result {
                    Ok(last) => {
                        Counters::bump(&shared.counters.timestamps, u64::from(count));
                        self.send(Frame::Ts { id, count, last });
                    }
                    Err(Some(e)) => {
                        let (code, leader) = match e {
                            GetTsError::NotLeader { leader } => (ErrorCode::NotLeader, shared.hint(leader)),
                            GetTsError::LogicalExhausted => {
                                (ErrorCode::LogicalExhausted, LeaderHint::default())
                            }
                            GetTsError::ZeroCount => (ErrorCode::ZeroCount, LeaderHint::default()),
                            GetTsError::CountTooLarge { .. } => {
                                (ErrorCode::CountTooLarge, LeaderHint::default())
                            }
                        };
                        self.error(id, code, leader);
                    }
                    Err(None) => self.error(id, ErrorCode::Internal, LeaderHint::default()),
                }
                Next::Continue
            }
            Frame::GetStatus { id } => {
                Counters::bump(&shared.counters.status_requests, 1);
                match shared.status() {
                    Some(status) => self.send(Frame::Status {
                        id,
                        role: status.role,
                        node: shared.node_id,
                        leader: shared.hint(status.leader),
                        window_end_ms: status.window_end_ms,
                        current: status.current,
                        view: LeaseView {
                            lease: status.lease,
                            lease_left_ms: millis(status.lease_left),
                            quarantine_left_ms: millis(status.quarantine_left),
                            fence: status.fence,
                            links_up: shared.links_up(),
                            nodes: shared.nodes,
                            mode: status.mode,
                            primary: status.primary,
                        },
                    }),
                    None => self.error(id, ErrorCode::Internal, LeaderHint::default()),
                }
                Next::Continue
            }
            Frame::ReadPrimary { id } => {
                self.admin(id, StoreOp::ReadPrimary);
                Next::Continue
            }
            Frame::ClearPrimary { id, node, tag } => {
                tracing::warn!(primary = node.0 + 1, %tag, "an operator clears the primary registration here");
                self.admin(id, StoreOp::ClearPrimary { id: node, tag });
                Next::Continue
            }
            // Frames only a server sends: this peer is not speaking the
            // client side of the protocol.
            Frame::Welcome { .. }
            | Frame::Ts { .. }
            | Frame::Status { .. }
            | Frame::Error { .. }
            | Frame::Primary { .. } => {
                self.error(0, ErrorCode::UnknownKind, LeaderHint::default());
                Next::Close
            }
        }
    }
}

/// Milliseconds of a duration for the status frame (saturating: leases are seconds).
fn millis(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}
