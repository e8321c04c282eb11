//! The server side of a client connection (`leasetso_core::conn::ServerConn`)
//! on any bytes, cut into any reads, over a node whose every answer (a
//! timestamp or each refusal, a status or none, each operator reply or a
//! timeout) the input chooses, driven the way both runtimes drive it.
//!
//! Properties: no panic; `handle` consumes no more than it is given and only
//! whole frames; `out` stays within `OUT_CAPACITY` and is never reallocated;
//! `out` is a sequence of whole server frames: one Welcome first if the
//! session was greeted, then one answer per request in request order
//! (matched by id), and a fatal Error (id 0) last exactly when the session
//! closed, after which it consumes nothing more.
#![no_main]

use core::time::Duration;

use leasetso_core::conn::{Backend, Fatal, OUT_CAPACITY, Served, ServerConn, TsRefusal};
use leasetso_core::wire::{LeaderHint, MAX_FRAME_LEN, Role, VERSION};
use leasetso_core::{
    Ballot, ErrorCode, Frame, GetTsError, Instant, Mode, NodeId, Status, StoreOk, StoreReject, Timestamp,
};
use leasetso_fuzz::{Choices, client_frames};
use libfuzzer_sys::fuzz_target;

const CLUSTER: u64 = 7;
const ME: NodeId = NodeId(1);
/// The time of every input: the session only records it.
const NOW: Instant = Instant::from_millis(1);

struct Node<'a, 'c> {
    choices: &'c mut Choices<'a>,
    last: u64,
}

impl Backend for Node<'_, '_> {
    fn get_ts(&mut self, count: u32) -> Result<Timestamp, TsRefusal> {
        match self.choices.byte() % 6 {
            0 => Err(TsRefusal::Node(GetTsError::NotLeader { leader: Some(NodeId(2)) })),
            1 => Err(TsRefusal::Node(GetTsError::NotLeader { leader: None })),
            2 => Err(TsRefusal::Node(GetTsError::LogicalExhausted)),
            3 => Err(TsRefusal::Unavailable),
            _ if count == 0 => Err(TsRefusal::Node(GetTsError::ZeroCount)),
            _ => {
                self.last += u64::from(count);
                Ok(Timestamp::from_u64(self.last))
            }
        }
    }

    fn status(&mut self) -> Option<Status> {
        (self.choices.byte() & 3 != 0).then(|| Status {
            role: Role::Leader,
            leader: Some(ME),
            window_end_ms: 5_000,
            current: Timestamp::from_u64(self.last),
            lease: Some(Ballot::new(4, 2, ME)),
            lease_left: Duration::from_millis(2_500),
            quarantine_left: Duration::ZERO,
            fence: Some(Ballot::new(3, 2, ME)),
            mode: Mode::Deferring,
            primary: None,
        })
    }

    fn hint(&self, leader: Option<NodeId>) -> LeaderHint {
        LeaderHint { node: leader, addr: leader.map(|n| ([127, 0, 0, 1], 7400 + n.0).into()) }
    }

    fn links_up(&self) -> u32 {
        0b111
    }
}

/// The id a request frame carries, if the frame is a request.
fn request_id(frame: &Frame) -> Option<u64> {
    match *frame {
        Frame::GetTs { id, .. }
        | Frame::GetStatus { id }
        | Frame::ReadPrimary { id }
        | Frame::ClearPrimary { id, .. } => Some(id),
        _ => None,
    }
}

/// The id an answer frame carries.
fn answer_id(frame: &Frame) -> u64 {
    match *frame {
        Frame::Ts { id, .. }
        | Frame::Status { id, .. }
        | Frame::Primary { id, .. }
        | Frame::Error { id, .. } => id,
        ref other => panic!("the server sent {other:?} as an answer"),
    }
}

fuzz_target!(|data: &[u8]| {
    let (mut choices, stream) = Choices::split(data);
    let mut node = Node { choices: &mut choices, last: 1 << 22 };
    let mut conn = ServerConn::new(CLUSTER, ME, 3);
    let mut out = Vec::with_capacity(OUT_CAPACITY);
    let capacity = out.capacity();
    // Everything written to the socket, and every byte the session consumed.
    let mut sent = Vec::new();
    let mut consumed = 0;
    // The runtime's read buffer: what arrived and was not consumed yet.
    let mut arrived = 0;
    let mut closed = None;
    let mut steps = 0;
    while closed.is_none() && steps < 10_000 {
        steps += 1;
        let (used, served) = conn.handle(&stream[consumed..arrived], NOW, &mut node, &mut out);
        assert!(used <= arrived - consumed, "consumed {used} of {}", arrived - consumed);
        consumed += used;
        assert!(out.len() <= OUT_CAPACITY && out.capacity() == capacity, "out grew to {}", out.len());
        match served {
            Served::Read => {
                // Whatever is left cannot hold a whole frame.
                let left = &stream[consumed..arrived];
                assert!(matches!(Frame::decode(left), Ok(None)), "left a frame unread: {left:?}");
                assert!(left.len() < 4 + MAX_FRAME_LEN as usize);
                sent.extend_from_slice(&out);
                out.clear();
                if arrived == stream.len() {
                    break;
                }
                arrived = (arrived + node.choices.chunk(300)).min(stream.len());
            }
            Served::Flush => {
                sent.extend_from_slice(&out);
                out.clear();
            }
            Served::Admin { id, .. } => {
                // Asked again before it is done: the same request, nothing consumed.
                assert_eq!(conn.handle(&stream[consumed..arrived], NOW, &mut node, &mut out), (0, served));
                let reply = match node.choices.byte() % 4 {
                    0 => None,
                    1 => Some(Ok(StoreOk::Primary { registered: None })),
                    2 => Some(Ok(StoreOk::Primary { registered: Some((ME, Ballot::new(0, 1, ME))) })),
                    _ => Some(Err(StoreReject::Failed)),
                };
                assert!(conn.admin_done(id.wrapping_add(1), reply, &mut node, &mut out).is_err());
                conn.admin_done(id, reply, &mut node, &mut out).expect("the pending request");
                assert!(conn.admin_done(id, reply, &mut node, &mut out).is_err(), "done twice");
            }
            Served::Close(fatal) => {
                assert!(conn.is_closed());
                sent.extend_from_slice(&out);
                out.clear();
                closed = Some(fatal);
                // Nothing more is consumed or answered.
                let rest = &stream[consumed..];
                assert_eq!(conn.handle(rest, NOW, &mut node, &mut out), (0, Served::Close(fatal)));
                assert!(out.is_empty());
            }
        }
    }

    // What the server wrote is whole frames only.
    let (mut answers, used) = client_frames(&sent);
    assert_eq!(used, sent.len(), "the server wrote a partial or malformed frame");
    let (requests, _) = client_frames(&stream[..consumed]);
    if let Some(fatal) = closed {
        match answers.pop() {
            Some(Frame::Error { id: 0, code, leader }) => {
                assert_eq!(code, fatal.code());
                assert_eq!(leader, LeaderHint::default());
            }
            other => panic!("closed for {fatal:?}, last frame {other:?}"),
        }
    }
    let mut requests = requests;
    if let Some(Fatal::Refused(code)) = closed {
        // A well-formed frame the conversation does not allow was consumed
        // and got the fatal error instead of an answer: a Hello after the
        // handshake, any frame before it, or a server's kind.
        let refused = requests.pop().expect("a refused frame was consumed");
        match code {
            ErrorCode::HandshakeRequired
            | ErrorCode::UnsupportedVersion
            | ErrorCode::ClusterMismatch
            | ErrorCode::UnknownKind => {}
            other => panic!("{refused:?} refused with {other:?}"),
        }
    }
    let mut answers = answers.into_iter().peekable();
    let mut requests = requests.into_iter();
    if matches!(answers.peek(), Some(Frame::Welcome { .. })) {
        // The first frame consumed was a Hello the server accepted.
        assert_eq!(answers.next(), Some(Frame::Welcome { version: VERSION, cluster_id: CLUSTER, node: ME }));
        match requests.next() {
            Some(Frame::Hello { version: VERSION, cluster_id }) => {
                assert!(cluster_id == 0 || cluster_id == CLUSTER)
            }
            other => panic!("welcomed {other:?}"),
        }
    } else {
        // Nothing runs before an accepted Hello.
        assert!(answers.peek().is_none(), "answered before the handshake: {:?}", answers.peek());
        assert!(!conn.is_greeted());
    }
    // One answer per request consumed, in order; the frame that closed the
    // session (consumed, a Hello or a server's kind) got the fatal error.
    let ids: Vec<u64> = requests.filter_map(|f| request_id(&f)).collect();
    let answered: Vec<u64> = answers.map(|f| answer_id(&f)).collect();
    if steps < 10_000 {
        assert_eq!(answered, ids, "answers do not match the requests in order");
    }
});
