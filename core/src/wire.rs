//! The client wire protocol (PROTOCOL.md is its specification).
//!
//! Frames are length-prefixed and big-endian: `len: u32` (bytes that follow,
//! `1..=MAX_FRAME_LEN`), `kind: u8`, then a body whose size is fixed by the
//! kind. Fixed sizes make validation a length comparison, and make a decoder
//! that never allocates and never panics easy to get right: any byte string is
//! either a frame, "need more bytes", or a [`WireError`].
//!
//! Encoding writes into a caller's buffer; a buffer too small for the frame
//! gets [`EncodeError::BufferTooSmall`] and is left untouched.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bytes::{Buf, BufMut};

use crate::ballot::{BALLOT_LEN, Ballot, NodeId, get_ballot, put_ballot};
use crate::timestamp::Timestamp;

/// The magic every handshake frame starts with.
pub const MAGIC: [u8; 4] = *b"LTSO";
/// The protocol version this build speaks.
pub const VERSION: u8 = 1;
/// The largest `len` a frame may declare. Larger is [`WireError::FrameTooLarge`].
pub const MAX_FRAME_LEN: u32 = 256;
/// Bytes of the length prefix.
pub const LEN_PREFIX: usize = 4;
/// The bytes of the largest client frame, length prefix included: the one
/// bound every buffer of the client protocol is sized by. A reader that
/// keeps this much room free always fits one whole frame (so a frame never
/// waits for room that cannot come), a writer with this much room can
/// always write one, and a partial frame never needs more. Both sessions
/// size their buffers by it (`conn` re-exports it).
pub const FRAME_ROOM: usize = LEN_PREFIX + MAX_FRAME_LEN as usize;
/// The node id that means "none" on the wire.
pub const NO_NODE: u16 = u16::MAX;
/// Bytes of an encoded address hint: family, 16 address bytes, port.
pub(crate) const ADDR_LEN: usize = 19;

/// Error codes of [`Frame::Error`]. Codes below 16 answer one request and the
/// connection stays open; codes from 16 up are fatal and the server closes the
/// connection after sending them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum ErrorCode {
    /// This node does not serve; the frame carries the leader hint, if known. Retryable.
    NotLeader = 1,
    /// The logical clock is exhausted until the window is extended. Retryable.
    LogicalExhausted = 2,
    /// GetTS with count 0.
    ZeroCount = 3,
    /// GetTS with a count that can never fit one millisecond.
    CountTooLarge = 4,
    /// The server failed internally; retry, possibly elsewhere.
    Internal = 5,
    /// An operator request this connection may not make: `ClearPrimary`
    /// while the registered primary serves, or (with TLS) without the admin
    /// role. Not retryable; the connection goes on.
    Forbidden = 6,
    /// A frame whose body does not match its kind. Fatal.
    Malformed = 16,
    /// A frame kind the server does not know. Fatal.
    UnknownKind = 17,
    /// A frame declaring a length over `MAX_FRAME_LEN`. Fatal.
    FrameTooLarge = 18,
    /// The client's version is not spoken here. Fatal.
    UnsupportedVersion = 19,
    /// The client expects another cluster. Fatal.
    ClusterMismatch = 20,
    /// A request before the handshake, or a second handshake. Fatal.
    HandshakeRequired = 21,
    /// The server is at its connection cap (`serve --max-connections`):
    /// sent at once to a connection it will not serve, which it then
    /// closes. Fatal for the connection, retryable for the request: a
    /// client retries later, or at another node.
    TooManyConnections = 22,
}

impl ErrorCode {
    /// The code for a wire value; unknown values are `None`.
    pub fn from_u16(v: u16) -> Option<Self> {
        use ErrorCode::*;
        Some(match v {
            1 => NotLeader,
            2 => LogicalExhausted,
            3 => ZeroCount,
            4 => CountTooLarge,
            5 => Internal,
            6 => Forbidden,
            16 => Malformed,
            17 => UnknownKind,
            18 => FrameTooLarge,
            19 => UnsupportedVersion,
            20 => ClusterMismatch,
            21 => HandshakeRequired,
            22 => TooManyConnections,
            _ => return None,
        })
    }

    /// Whether the server closes the connection after this error.
    pub fn is_fatal(self) -> bool {
        self as u16 >= 16
    }

    /// Whether the same request may succeed if sent again.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::NotLeader
                | ErrorCode::LogicalExhausted
                | ErrorCode::Internal
                | ErrorCode::TooManyConnections
        )
    }
}

/// A node's role, as [`Frame::Status`] reports it: defined in [`crate::role`]
/// (a leaf the node and the codecs both use), re-exported here.
pub use crate::role::Role;

/// Who serves, as far as a node knows: for redirecting clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct LeaderHint {
    /// The leader's node id.
    pub node: Option<NodeId>,
    /// The leader's client address.
    pub addr: Option<SocketAddr>,
}

/// What a node's status says of the lease and its peers (part of
/// [`Frame::Status`]), for operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct LeaseView {
    /// The live lease the node's acceptor holds, or the one the node holds;
    /// its owner is the ballot's node.
    pub lease: Option<Ballot>,
    /// What is left of that lease on the node's clock, in ms.
    pub lease_left_ms: u32,
    /// What is left of the node's acceptor quarantine after its start, in ms.
    pub quarantine_left_ms: u32,
    /// The fence of the node's leadership, if it leads.
    pub fence: Option<Ballot>,
    /// Bit `i` set: the node's link to node `i` is up (its own bit is set).
    pub links_up: u32,
    /// The cluster size.
    pub nodes: u16,
    /// The node's mode.
    pub mode: crate::role::Mode,
    /// The primary registration the node last read or made: `(id, tag)`.
    pub primary: Option<(NodeId, Ballot)>,
    /// The health of the node's own store replica.
    pub store: crate::health::StoreHealth,
    /// Timestamps the node handed out since it started, every door together.
    pub served: u64,
}

/// One frame of the client protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Frame {
    /// Client → server, first frame of a connection.
    Hello {
        /// The client's protocol version.
        version: u8,
        /// The cluster the client expects; 0 accepts any.
        cluster_id: u64,
    },
    /// Server → client, the answer to an accepted `Hello`.
    Welcome {
        /// The server's protocol version.
        version: u8,
        /// The server's cluster id.
        cluster_id: u64,
        /// The server's node id.
        node: NodeId,
    },
    /// Client → server: `count` timestamps.
    GetTs {
        /// Echoed in the answer.
        id: u64,
        /// How many timestamps, `1..2^18`.
        count: u32,
    },
    /// Server → client: the last timestamp of a range of `count`.
    Ts {
        /// The request's id.
        id: u64,
        /// The range's size.
        count: u32,
        /// The last timestamp; the range is `last - count + 1 ..= last`.
        last: Timestamp,
    },
    /// Client → server: the node's status.
    GetStatus {
        /// Echoed in the answer.
        id: u64,
    },
    /// Server → client: the node's status.
    Status {
        /// The request's id.
        id: u64,
        /// The node's role.
        role: Role,
        /// The answering node.
        node: NodeId,
        /// Who serves, as far as the node knows.
        leader: LeaderHint,
        /// The saved window end in ms (0 unless serving).
        window_end_ms: u64,
        /// The last timestamp handed out (0 unless serving).
        current: Timestamp,
        /// The lease, the quarantine, the fence and the peer links.
        view: LeaseView,
    },
    /// Client → server: the primary registration on the node's own replica.
    ReadPrimary {
        /// Echoed in the answer.
        id: u64,
    },
    /// Client → server (operator): clear the registration on the node's own
    /// replica if it is exactly `(node, tag)` (S4).
    ClearPrimary {
        /// Echoed in the answer.
        id: u64,
        /// The registered node.
        node: NodeId,
        /// Its tag.
        tag: Ballot,
    },
    /// Server → client: the registration on the node's replica afterwards.
    Primary {
        /// The request's id.
        id: u64,
        /// `(id, tag)` of the registered primary, if any.
        registered: Option<(NodeId, Ballot)>,
    },
    /// Server → client: a request failed, or the connection is about to close.
    Error {
        /// The failed request's id (0 for connection-level errors).
        id: u64,
        /// What went wrong.
        code: ErrorCode,
        /// Who serves, for `NotLeader`.
        leader: LeaderHint,
    },
}

/// Why bytes are not a frame. The connection that sent them cannot be trusted
/// to be in sync any more: a server answers with a fatal error and closes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The length prefix exceeds `MAX_FRAME_LEN`.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    FrameTooLarge {
        /// The declared length.
        len: u32,
        /// The limit.
        max: u32,
    },
    /// A frame with no kind byte.
    #[error("empty frame")]
    Empty,
    /// A kind byte this version does not define.
    #[error("unknown frame kind {0:#04x}")]
    UnknownKind(u8),
    /// The body's size does not match its kind.
    #[error("frame kind {kind:#04x} needs a body of {expected} bytes, got {got}")]
    BadLength {
        /// The frame kind.
        kind: u8,
        /// The size the kind defines.
        expected: usize,
        /// The size received.
        got: usize,
    },
    /// A handshake frame without the magic.
    #[error("bad magic: not a leasetso peer")]
    BadMagic,
    /// A field with a value outside its domain.
    #[error("invalid value in field {0}")]
    BadValue(&'static str),
}

impl WireError {
    /// The error code a server sends before closing.
    pub fn code(&self) -> ErrorCode {
        match self {
            WireError::FrameTooLarge { .. } => ErrorCode::FrameTooLarge,
            WireError::UnknownKind(_) => ErrorCode::UnknownKind,
            WireError::BadMagic => ErrorCode::UnsupportedVersion,
            _ => ErrorCode::Malformed,
        }
    }
}

/// Encoding needs more room than the buffer has; the buffer is untouched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The frame needs `required` bytes.
    #[error("buffer too small: {required} bytes required")]
    BufferTooSmall {
        /// Bytes the whole frame needs.
        required: usize,
    },
}

const HELLO: u8 = 0x01;
const WELCOME: u8 = 0x02;
const GET_TS: u8 = 0x10;
const TS: u8 = 0x11;
const GET_STATUS: u8 = 0x12;
const STATUS: u8 = 0x13;
const READ_PRIMARY: u8 = 0x14;
const CLEAR_PRIMARY: u8 = 0x15;
const PRIMARY: u8 = 0x16;
const ERROR: u8 = 0x7f;

/// The body size of each kind, or `None` for an unknown kind.
fn body_len(kind: u8) -> Option<usize> {
    Some(match kind {
        HELLO => 4 + 1 + 8,
        WELCOME => 4 + 1 + 8 + 2,
        GET_TS => 8 + 4,
        TS => 8 + 4 + 8,
        GET_STATUS => 8,
        STATUS => 8 + 1 + 2 + 2 + ADDR_LEN + 8 + 8 + VIEW_LEN,
        ERROR => 8 + 2 + 2 + ADDR_LEN,
        READ_PRIMARY => 8,
        CLEAR_PRIMARY => 8 + 2 + BALLOT_LEN,
        PRIMARY => 8 + PRIMARY_LEN,
        _ => return None,
    })
}

const VIEW_LEN: usize = BALLOT_LEN + 4 + 4 + BALLOT_LEN + 4 + 2 + 1 + PRIMARY_LEN + 1 + 8;
/// A registration: present flag, node id, tag.
const PRIMARY_LEN: usize = 1 + 2 + BALLOT_LEN;

fn put_primary(buf: &mut impl BufMut, p: Option<(NodeId, Ballot)>) {
    let (id, tag) = p.unwrap_or((NodeId(0), Ballot::ZERO));
    buf.put_u8(u8::from(p.is_some()));
    buf.put_u16(id.0);
    put_ballot(buf, tag);
}

fn get_primary(buf: &mut impl Buf) -> Result<Option<(NodeId, Ballot)>, WireError> {
    let present = buf.get_u8();
    let id = NodeId(buf.get_u16());
    let tag = get_ballot(buf);
    match present {
        0 => Ok(None),
        1 => Ok(Some((id, tag))),
        _ => Err(WireError::BadValue("primary present flag")),
    }
}

/// An optional ballot: `Ballot::ZERO` (below every ballot used) is none.
fn put_opt_ballot(buf: &mut impl BufMut, b: Option<Ballot>) {
    put_ballot(buf, b.unwrap_or(Ballot::ZERO));
}

fn get_opt_ballot(buf: &mut impl Buf) -> Option<Ballot> {
    Some(get_ballot(buf)).filter(|&b| b != Ballot::ZERO)
}

fn put_view(buf: &mut impl BufMut, v: &LeaseView) {
    put_opt_ballot(buf, v.lease);
    buf.put_u32(v.lease_left_ms);
    buf.put_u32(v.quarantine_left_ms);
    put_opt_ballot(buf, v.fence);
    buf.put_u32(v.links_up);
    buf.put_u16(v.nodes);
    buf.put_u8(match v.mode {
        crate::role::Mode::Deferring => 0,
        crate::role::Mode::Primary => 1,
    });
    put_primary(buf, v.primary);
    buf.put_u8(v.store as u8);
    buf.put_u64(v.served);
}

fn get_view(buf: &mut impl Buf) -> Result<LeaseView, WireError> {
    Ok(LeaseView {
        lease: get_opt_ballot(buf),
        lease_left_ms: buf.get_u32(),
        quarantine_left_ms: buf.get_u32(),
        fence: get_opt_ballot(buf),
        links_up: buf.get_u32(),
        nodes: buf.get_u16(),
        mode: match buf.get_u8() {
            0 => crate::role::Mode::Deferring,
            1 => crate::role::Mode::Primary,
            _ => return Err(WireError::BadValue("mode")),
        },
        primary: get_primary(buf)?,
        store: crate::health::StoreHealth::from_u8(buf.get_u8())
            .ok_or(WireError::BadValue("store health"))?,
        served: buf.get_u64(),
    })
}

fn put_node(buf: &mut impl BufMut, node: Option<NodeId>) {
    buf.put_u16(node.map_or(NO_NODE, |n| n.0));
}

fn get_node(buf: &mut impl Buf) -> Option<NodeId> {
    match buf.get_u16() {
        NO_NODE => None,
        n => Some(NodeId(n)),
    }
}

pub(crate) fn put_addr(buf: &mut impl BufMut, addr: Option<SocketAddr>) {
    let mut ip = [0u8; 16];
    let (family, port) = match addr {
        None => (0, 0),
        Some(SocketAddr::V4(a)) => {
            ip[..4].copy_from_slice(&a.ip().octets());
            (4, a.port())
        }
        Some(SocketAddr::V6(a)) => {
            ip = a.ip().octets();
            (6, a.port())
        }
    };
    buf.put_u8(family);
    buf.put_slice(&ip);
    buf.put_u16(port);
}

pub(crate) fn get_addr(buf: &mut impl Buf) -> Result<Option<SocketAddr>, WireError> {
    let family = buf.get_u8();
    let mut ip = [0u8; 16];
    buf.copy_to_slice(&mut ip);
    let port = buf.get_u16();
    Ok(match family {
        0 => None,
        4 => Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3])), port)),
        6 => Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port)),
        _ => return Err(WireError::BadValue("address family")),
    })
}

fn put_hint(buf: &mut impl BufMut, hint: LeaderHint) {
    put_node(buf, hint.node);
    put_addr(buf, hint.addr);
}

fn get_hint(buf: &mut impl Buf) -> Result<LeaderHint, WireError> {
    let node = get_node(buf);
    Ok(LeaderHint { node, addr: get_addr(buf)? })
}

/// The frame layout both protocols share: `len: u32`, `kind: u8`, then
/// `header` more fixed bytes and a body whose size the kind fixes.
pub(crate) struct Layout {
    /// The largest `len` accepted.
    pub(crate) max_len: u32,
    /// Fixed bytes between the kind and the body.
    pub(crate) header: usize,
    /// The body size of each known kind.
    pub(crate) body_len: fn(u8) -> Option<usize>,
}

impl Layout {
    /// Checks there is room for a whole frame of `kind` and writes its length
    /// prefix and kind; leaves `buf` untouched (and errs) if there is not.
    pub(crate) fn begin(&self, buf: &mut impl BufMut, kind: u8) -> Result<usize, EncodeError> {
        // Every kind an encoder writes has a body length.
        let required = LEN_PREFIX + 1 + self.header + (self.body_len)(kind).unwrap_or(0);
        if buf.remaining_mut() < required {
            return Err(EncodeError::BufferTooSmall { required });
        }
        // At most a few dozen bytes.
        buf.put_u32((required - LEN_PREFIX) as u32);
        buf.put_u8(kind);
        Ok(required)
    }

    /// Splits the first frame off `bytes`: its kind, the bytes after the kind
    /// (header and body, of the size the kind fixes) and the bytes used;
    /// `None` until the whole frame has arrived. An oversized or inconsistent
    /// length is refused from the prefix and kind alone, before the body.
    pub(crate) fn split<'a>(&self, bytes: &'a [u8]) -> Result<Option<RawFrame<'a>>, WireError> {
        let mut buf = bytes;
        if buf.remaining() < LEN_PREFIX {
            return Ok(None);
        }
        let len = buf.get_u32();
        if len > self.max_len {
            return Err(WireError::FrameTooLarge { len, max: self.max_len });
        }
        if (len as usize) < 1 + self.header {
            return Err(WireError::Empty);
        }
        let Some(&kind) = buf.first() else {
            return Ok(None);
        };
        let expected = (self.body_len)(kind).ok_or(WireError::UnknownKind(kind))?;
        let got = len as usize - 1 - self.header;
        if got != expected {
            return Err(WireError::BadLength { kind, expected, got });
        }
        if buf.remaining() < len as usize {
            return Ok(None);
        }
        Ok(Some(RawFrame { kind, rest: &buf[1..len as usize], consumed: LEN_PREFIX + len as usize }))
    }
}

/// A whole frame, split but not yet decoded.
pub(crate) struct RawFrame<'a> {
    pub(crate) kind: u8,
    /// The bytes after the kind: the fixed header, then the body.
    pub(crate) rest: &'a [u8],
    /// The frame's size, length prefix included.
    pub(crate) consumed: usize,
}

const CLIENT: Layout = Layout { max_len: MAX_FRAME_LEN, header: 0, body_len };

impl Frame {
    fn kind(&self) -> u8 {
        match self {
            Frame::Hello { .. } => HELLO,
            Frame::Welcome { .. } => WELCOME,
            Frame::GetTs { .. } => GET_TS,
            Frame::Ts { .. } => TS,
            Frame::GetStatus { .. } => GET_STATUS,
            Frame::Status { .. } => STATUS,
            Frame::Error { .. } => ERROR,
            Frame::ReadPrimary { .. } => READ_PRIMARY,
            Frame::ClearPrimary { .. } => CLEAR_PRIMARY,
            Frame::Primary { .. } => PRIMARY,
        }
    }

    /// Bytes of the whole encoded frame, length prefix included.
    pub fn encoded_len(&self) -> usize {
        // Every kind `kind()` returns has a body length.
        LEN_PREFIX + 1 + body_len(self.kind()).unwrap_or(0)
    }

    /// Appends the frame to `buf`, or leaves it untouched if it has no room.
    pub fn encode(&self, buf: &mut impl BufMut) -> Result<usize, EncodeError> {
        let required = CLIENT.begin(buf, self.kind())?;
        match *self {
            Frame::Hello { version, cluster_id } => {
                buf.put_slice(&MAGIC);
                buf.put_u8(version);
                buf.put_u64(cluster_id);
            }
            Frame::Welcome { version, cluster_id, node } => {
                buf.put_slice(&MAGIC);
                buf.put_u8(version);
                buf.put_u64(cluster_id);
                buf.put_u16(node.0);
            }
            Frame::GetTs { id, count } => {
                buf.put_u64(id);
                buf.put_u32(count);
            }
            Frame::Ts { id, count, last } => {
                buf.put_u64(id);
                buf.put_u32(count);
                buf.put_u64(last.to_u64());
            }
            Frame::GetStatus { id } => buf.put_u64(id),
            Frame::Status { id, role, node, leader, window_end_ms, current, view } => {
                buf.put_u64(id);
                buf.put_u8(role as u8);
                buf.put_u16(node.0);
                put_hint(buf, leader);
                buf.put_u64(window_end_ms);
                buf.put_u64(current.to_u64());
                put_view(buf, &view);
            }
            Frame::Error { id, code, leader } => {
                buf.put_u64(id);
                buf.put_u16(code as u16);
                put_hint(buf, leader);
            }
            Frame::ReadPrimary { id } => buf.put_u64(id),
            Frame::ClearPrimary { id, node, tag } => {
                buf.put_u64(id);
                buf.put_u16(node.0);
                put_ballot(buf, tag);
            }
            Frame::Primary { id, registered } => {
                buf.put_u64(id);
                put_primary(buf, registered);
            }
        }
        Ok(required)
    }

    /// Decodes the first frame of `bytes`: `Ok(Some((frame, consumed)))`,
    /// `Ok(None)` when more bytes are needed, or an error as soon as the bytes
    /// cannot become a frame (an oversized length is refused from its prefix
    /// alone, before its body arrives).
    pub fn decode(bytes: &[u8]) -> Result<Option<(Frame, usize)>, WireError> {
        let Some(RawFrame { kind, mut rest, consumed }) = CLIENT.split(bytes)? else {
            return Ok(None);
        };
        Ok(Some((Self::decode_body(kind, &mut rest)?, consumed)))
    }

    /// Decodes a body whose length was checked against `body_len(kind)`.
    fn decode_body(kind: u8, buf: &mut &[u8]) -> Result<Frame, WireError> {
        Ok(match kind {
            HELLO | WELCOME => {
                let mut magic = [0u8; 4];
                buf.copy_to_slice(&mut magic);
                if magic != MAGIC {
                    return Err(WireError::BadMagic);
                }
                let version = buf.get_u8();
                let cluster_id = buf.get_u64();
                if kind == HELLO {
                    Frame::Hello { version, cluster_id }
                } else {
                    Frame::Welcome { version, cluster_id, node: NodeId(buf.get_u16()) }
                }
            }
            GET_TS => Frame::GetTs { id: buf.get_u64(), count: buf.get_u32() },
            TS => Frame::Ts {
                id: buf.get_u64(),
                count: buf.get_u32(),
                last: Timestamp::from_u64(buf.get_u64()),
            },
            GET_STATUS => Frame::GetStatus { id: buf.get_u64() },
            STATUS => {
                let id = buf.get_u64();
                let role = Role::from_u8(buf.get_u8()).ok_or(WireError::BadValue("role"))?;
                let node = NodeId(buf.get_u16());
                let leader = get_hint(buf)?;
                let window_end_ms = buf.get_u64();
                let current = Timestamp::from_u64(buf.get_u64());
                Frame::Status { id, role, node, leader, window_end_ms, current, view: get_view(buf)? }
            }
            ERROR => {
                let id = buf.get_u64();
                let code = ErrorCode::from_u16(buf.get_u16()).ok_or(WireError::BadValue("error code"))?;
                Frame::Error { id, code, leader: get_hint(buf)? }
            }
            READ_PRIMARY => Frame::ReadPrimary { id: buf.get_u64() },
            CLEAR_PRIMARY => {
                Frame::ClearPrimary { id: buf.get_u64(), node: NodeId(buf.get_u16()), tag: get_ballot(buf) }
            }
            PRIMARY => Frame::Primary { id: buf.get_u64(), registered: get_primary(buf)? },
            // `decode` only calls this for kinds `body_len` knows.
            other => return Err(WireError::UnknownKind(other)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> [Frame; 11] {
        let hint = LeaderHint { node: Some(NodeId(2)), addr: Some("127.0.0.1:7400".parse().unwrap()) };
        let hint6 = LeaderHint { node: None, addr: Some("[::1]:9".parse().unwrap()) };
        [
            Frame::Hello { version: VERSION, cluster_id: 7 },
            Frame::Welcome { version: VERSION, cluster_id: 7, node: NodeId(1) },
            Frame::GetTs { id: 9, count: 64 },
            Frame::Ts { id: 9, count: 64, last: Timestamp::new(1_700_000_000_000, 64).unwrap() },
            Frame::GetStatus { id: u64::MAX },
            Frame::Status {
                id: 3,
                role: Role::Leader,
                node: NodeId(0),
                leader: hint,
                window_end_ms: 5,
                current: Timestamp::from_u64(77),
                view: LeaseView {
                    lease: Some(crate::Ballot::new(4, 2, NodeId(0))),
                    lease_left_ms: 2_500,
                    quarantine_left_ms: 0,
                    fence: Some(crate::Ballot::new(3, 2, NodeId(0))),
                    links_up: 0b101,
                    nodes: 3,
                    mode: crate::role::Mode::Primary,
                    primary: Some((NodeId(0), crate::Ballot::new(0, 2, NodeId(0)))),
                    store: crate::health::StoreHealth::NoSpace,
                    served: 1 << 40,
                },
            },
            Frame::ReadPrimary { id: 4 },
            Frame::ClearPrimary { id: 5, node: NodeId(2), tag: crate::Ballot::new(0, 9, NodeId(2)) },
            Frame::Primary { id: 5, registered: None },
            Frame::Error { id: 1, code: ErrorCode::NotLeader, leader: hint6 },
            Frame::Error { id: 0, code: ErrorCode::FrameTooLarge, leader: LeaderHint::default() },
        ]
    }

    #[test]
    fn every_frame_round_trips() {
        // Every strict prefix asks for more bytes, never errs or panics.
        for frame in samples() {
            crate::codec_props::check_round_trip(frame, &[]).unwrap();
        }
    }

    #[test]
    fn protocol_md_example_bytes() {
        let request = [0, 0, 0, 0x0d, 0x10, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0x0a];
        assert_eq!(Frame::decode(&request), Ok(Some((Frame::GetTs { id: 7, count: 10 }, 17))));
        let answer = [
            0, 0, 0, 0x15, 0x11, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0x0a, 0x06, 0x2f, 0x3f, 0x95, 0xa0, 0, 0,
            0x0a,
        ];
        let last = Timestamp::new(1_700_000_000_000, 10).unwrap();
        assert_eq!(Frame::decode(&answer), Ok(Some((Frame::Ts { id: 7, count: 10, last }, 25))));
    }

    #[test]
    fn small_buffer_is_left_untouched() {
        let mut storage = [0xAAu8; 8];
        let mut buf = &mut storage[..];
        let err = Frame::GetTs { id: 1, count: 1 }.encode(&mut buf).unwrap_err();
        assert_eq!(err, EncodeError::BufferTooSmall { required: 17 });
        assert_eq!(storage, [0xAA; 8]);
    }

    #[test]
    fn bad_frames_are_errors() {
        assert_eq!(
            Frame::decode(&[0xff, 0xff, 0xff, 0xff]),
            Err(WireError::FrameTooLarge { len: u32::MAX, max: MAX_FRAME_LEN })
        );
        assert_eq!(Frame::decode(&[0, 0, 0, 0]), Err(WireError::Empty));
        assert_eq!(Frame::decode(&[0, 0, 0, 1, 0x55]), Err(WireError::UnknownKind(0x55)));
        assert_eq!(
            Frame::decode(&[0, 0, 0, 2, GET_TS, 0]),
            Err(WireError::BadLength { kind: GET_TS, expected: 12, got: 1 })
        );
        let mut hello = Vec::new();
        Frame::Hello { version: 1, cluster_id: 0 }.encode(&mut hello).unwrap();
        hello[5] = b'X';
        assert_eq!(Frame::decode(&hello), Err(WireError::BadMagic));
        let mut err = Vec::new();
        Frame::Error { id: 0, code: ErrorCode::Internal, leader: LeaderHint::default() }
            .encode(&mut err)
            .unwrap();
        err[LEN_PREFIX + 1 + 8 + 1] = 99;
        assert_eq!(Frame::decode(&err), Err(WireError::BadValue("error code")));
    }

    /// Properties over generated frames and bytes (they replace a
    /// hand-written garbage loop): the same claims, for every input proptest
    /// can shrink a failure to.
    mod props {
        use proptest::collection::vec;
        use proptest::prelude::*;

        use super::*;
        use crate::ballot::Ballot;
        use crate::codec_props::{addr, ballot, check_any_bytes, check_round_trip, frame_like, node};
        use crate::role::Mode;

        /// An optional ballot as a Status carries it: the zero ballot is "none".
        fn opt_ballot() -> impl Strategy<Value = Option<Ballot>> {
            proptest::option::of(ballot().prop_filter("the zero ballot means none", |b| *b != Ballot::ZERO))
        }

        fn hint() -> impl Strategy<Value = LeaderHint> {
            // 0xFFFF is "no node".
            (proptest::option::of(0..u16::MAX), addr())
                .prop_map(|(node, addr)| LeaderHint { node: node.map(NodeId), addr })
        }

        fn primary() -> impl Strategy<Value = Option<(NodeId, Ballot)>> {
            proptest::option::of((node(), ballot()))
        }

        fn code() -> impl Strategy<Value = ErrorCode> {
            (0u16..32).prop_filter_map("a known code", ErrorCode::from_u16)
        }

        fn view() -> impl Strategy<Value = LeaseView> {
            (
                opt_ballot(),
                any::<u32>(),
                any::<u32>(),
                opt_ballot(),
                any::<u32>(),
                any::<u16>(),
                prop_oneof![Just(Mode::Deferring), Just(Mode::Primary)],
                (
                    primary(),
                    (0u8..5).prop_filter_map("a known health", crate::health::StoreHealth::from_u8),
                    any::<u64>(),
                ),
            )
                .prop_map(
                    |(
                        lease,
                        lease_left_ms,
                        quarantine_left_ms,
                        fence,
                        links_up,
                        nodes,
                        mode,
                        (primary, store, served),
                    )| {
                        LeaseView {
                            lease,
                            lease_left_ms,
                            quarantine_left_ms,
                            fence,
                            links_up,
                            nodes,
                            mode,
                            primary,
                            store,
                            served,
                        }
                    },
                )
        }

        /// Every frame the protocol has, with any field values it can carry.
        fn frame() -> impl Strategy<Value = Frame> {
            let ts = any::<u64>().prop_map(Timestamp::from_u64);
            let role = prop_oneof![
                Just(Role::Follower),
                Just(Role::Syncing),
                Just(Role::Leader),
                Just(Role::Yielded)
            ];
            prop_oneof![
                (any::<u8>(), any::<u64>())
                    .prop_map(|(version, cluster_id)| Frame::Hello { version, cluster_id }),
                (any::<u8>(), any::<u64>(), any::<u16>()).prop_map(|(version, cluster_id, n)| {
                    Frame::Welcome { version, cluster_id, node: NodeId(n) }
                }),
                (any::<u64>(), any::<u32>()).prop_map(|(id, count)| Frame::GetTs { id, count }),
                (any::<u64>(), any::<u32>(), ts.clone()).prop_map(|(id, count, last)| Frame::Ts {
                    id,
                    count,
                    last
                }),
                any::<u64>().prop_map(|id| Frame::GetStatus { id }),
                (any::<u64>(), role, any::<u16>(), hint(), any::<u64>(), ts, view()).prop_map(
                    |(id, role, n, leader, window_end_ms, current, view)| Frame::Status {
                        id,
                        role,
                        node: NodeId(n),
                        leader,
                        window_end_ms,
                        current,
                        view
                    }
                ),
                (any::<u64>(), code(), hint()).prop_map(|(id, code, leader)| Frame::Error {
                    id,
                    code,
                    leader
                }),
                any::<u64>().prop_map(|id| Frame::ReadPrimary { id }),
                (any::<u64>(), any::<u16>(), ballot()).prop_map(|(id, n, tag)| Frame::ClearPrimary {
                    id,
                    node: NodeId(n),
                    tag
                }),
                (any::<u64>(), primary()).prop_map(|(id, registered)| Frame::Primary { id, registered }),
            ]
        }

        proptest! {
            /// Any bytes are a frame, a request for more bytes, or an error,
            /// never a panic. A frame takes no more bytes than it was given,
            /// and re-encodes to them, except that bytes of fields it leaves
            /// unset (the ip of an absent address, the rest of an IPv4
            /// address, the registration of an absent primary) come out zero;
            /// a request for more bytes comes only with a header that is
            /// valid so far.
            #[test]
            fn any_bytes_are_a_frame_more_or_an_error(bytes in frame_like(frame(), 0..48, 64)) {
                check_any_bytes::<Frame>(&bytes)?;
            }

            /// Every frame round-trips whatever follows it, takes exactly
            /// `encoded_len` bytes, and each strict prefix asks for more.
            #[test]
            fn every_frame_round_trips_and_its_prefixes_ask_for_more(
                frame in frame(),
                tail in vec(any::<u8>(), 0..8),
            ) {
                check_round_trip(frame, &tail)?;
            }
        }
    }
}
