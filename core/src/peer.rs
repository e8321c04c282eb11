//! The peer protocol: frames between the nodes of one cluster (PROTOCOL.md,
//! "Peer protocol").
//!
//! A node opens one connection to every other node and sends on it
//! everything it has for that node: its lease messages, its store requests
//! for that node's replica, and its replies to that node's store requests.
//! The connection opens with a handshake: the connecting node sends
//! [`PeerFrame::Hello`], the accepting node answers [`PeerFrame::Welcome`] or
//! [`PeerFrame::Refused`] and closes. Both carry a [`Handshake`], and each
//! side checks the other's with [`Handshake::check`]:
//! * the cluster id and the protocol version must match;
//! * the sender's id must be a member other than the checker itself, and on
//!   the connecting side the one it dialled;
//! * the **timing digest** must match: it covers everything the lease's
//!   safety (T2, T3) and the quorums depend on (cluster size, `D_P`, `D_A`,
//!   `Q`, ρ, the margin). Two nodes that disagree on any of them are unsafe
//!   together (one could believe a lease it holds outlives another's
//!   acceptor), so they refuse to talk and both say why.
//!
//! After the handshake a frame's sender is the node the handshake named: no
//! frame carries a `from` a peer could forge (the link session tags what it
//! decodes with the link's id). This module says what the frames and the
//! checks are; [`crate::link`] sequences them (Hello, the answer, then
//! frames) for both sides of a connection.
//!
//! Frames have the client protocol's framing: `len: u32` (bytes that
//! follow), `kind: u8`, then a body whose size the kind fixes, so a malformed
//! frame is found from its prefix and kind alone and is an error value: the
//! session ends, the runtime drops that link and the peer reconnects.

use core::net::SocketAddr;

use bytes::{Buf, BufMut};

use crate::ballot::{BALLOT_LEN, Ballot, NodeId, get_ballot, put_ballot};
use crate::lease::message::lease_body_len;
use crate::lease::{LeaseMsg, LeaseTiming};
use crate::store::{StoreOk, StoreOp, StoreReject, StoreReply, StoreRequest};
use crate::time::nanos;
use crate::wire::{ADDR_LEN, EncodeError, LEN_PREFIX, Layout, RawFrame, WireError, get_addr, put_addr};

/// The magic every peer handshake starts with (the client protocol's is `LTSO`).
pub const PEER_MAGIC: [u8; 4] = *b"LTSP";
/// The peer protocol version this build speaks.
pub const PEER_VERSION: u8 = 2;
/// The largest `len` a peer frame may declare; larger is refused from the prefix.
pub const MAX_PEER_FRAME_LEN: u32 = 96;

const HELLO: u8 = 0x01;
const WELCOME: u8 = 0x02;
const REFUSED: u8 = 0x03;
const STORE_REQUEST: u8 = 0x50;
const STORE_REPLY: u8 = 0x51;
const RESTART_QUERY: u8 = 0x52;
const RESTART_INFO: u8 = 0x53;

const HANDSHAKE_LEN: usize = 4 + 1 + 8 + 2 + ADDR_LEN + ADDR_LEN + ADDR_LEN + 8;

fn body_len(kind: u8) -> Option<usize> {
    Some(match kind {
        HELLO | WELCOME => HANDSHAKE_LEN,
        REFUSED => 1 + HANDSHAKE_LEN,
        STORE_REQUEST => 8 + 1 + BALLOT_LEN + 8 + 1 + 2,
        STORE_REPLY => 8 + 1 + BALLOT_LEN + 8 + 2,
        RESTART_QUERY => 0,
        RESTART_INFO => BALLOT_LEN,
        other => return lease_body_len(other),
    })
}

/// Every peer frame, lease messages included, has this layout.
pub(crate) const PEER: Layout = Layout { max_len: MAX_PEER_FRAME_LEN, header: 0, body_len };

/// What each side of a peer connection says about itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Handshake {
    /// The sender's peer protocol version.
    pub version: u8,
    /// The sender's cluster id.
    pub cluster_id: u64,
    /// The sender's node id.
    pub node: NodeId,
    /// The client address the sender advertises, for leader hints; never an
    /// unspecified address (`None` if it has none to give).
    pub client_addr: Option<SocketAddr>,
    /// The RESP address the sender advertises, for `-NOTLEADER` replies of
    /// the RESP door; `None` if it has no RESP door (or only a wildcard).
    pub resp_addr: Option<SocketAddr>,
    /// The PD door's address the sender advertises, for the members PD's
    /// clients are told of; `None` if it has no PD door (or only a wildcard).
    pub pd_addr: Option<SocketAddr>,
    /// The sender's timing digest ([`timing_digest`]).
    pub digest: u64,
}

/// Why a handshake was refused (the code of [`PeerFrame::Refused`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Refusal {
    /// Another protocol version.
    Version = 1,
    /// Another cluster.
    Cluster = 2,
    /// A node id that is not a member, is the refuser's own, or is not the
    /// one dialled.
    Node = 3,
    /// Another timing configuration (cluster size, lease timing, drift, margin).
    Digest = 4,
    /// The first frame was not a `Hello`.
    NotHello = 5,
}

impl Refusal {
    fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Refusal::Version,
            2 => Refusal::Cluster,
            3 => Refusal::Node,
            4 => Refusal::Digest,
            5 => Refusal::NotHello,
            _ => return None,
        })
    }
}

/// Why a peer connection cannot go on; each names our value and the peer's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// The peer speaks another protocol version.
    #[error("peer speaks peer protocol version {theirs}, this node {ours}")]
    Version {
        /// Ours.
        ours: u8,
        /// The peer's.
        theirs: u8,
    },
    /// The peer belongs to another cluster.
    #[error("peer belongs to cluster {theirs}, this node to cluster {ours}")]
    Cluster {
        /// Ours.
        ours: u64,
        /// The peer's.
        theirs: u64,
    },
    /// The peer's id is not acceptable here.
    #[error("peer says it is node {}, expected {expected}", theirs.0 + 1)]
    Node {
        /// The id the peer gave (0-based; shown 1-based).
        theirs: NodeId,
        /// What was acceptable, in words.
        expected: &'static str,
    },
    /// The peer runs another timing configuration.
    #[error(
        "peer's timing digest {theirs:#018x} differs from this node's {ours:#018x}: cluster size, \
         --lease-ms, drift and margin must be the same on every node"
    )]
    Digest {
        /// Ours.
        ours: u64,
        /// The peer's.
        theirs: u64,
    },
    /// The peer refused our handshake and said why; `theirs` is what it runs.
    #[error("refused by node {} ({reason:?}): it runs cluster {}, version {}, digest {:#018x}",
        theirs.node.0 + 1, theirs.cluster_id, theirs.version, theirs.digest)]
    Refused {
        /// The peer's reason.
        reason: Refusal,
        /// The peer's own handshake.
        theirs: Handshake,
    },
    /// The peer's first frame was not the handshake.
    #[error("the peer's first frame is not a handshake")]
    NotHandshake,
}

impl HandshakeError {
    /// The refusal code to send the peer for this error.
    pub fn refusal(&self) -> Refusal {
        match self {
            HandshakeError::Version { .. } => Refusal::Version,
            HandshakeError::Cluster { .. } => Refusal::Cluster,
            HandshakeError::Node { .. } => Refusal::Node,
            HandshakeError::Digest { .. } => Refusal::Digest,
            HandshakeError::Refused { reason, .. } => *reason,
            HandshakeError::NotHandshake => Refusal::NotHello,
        }
    }
}

impl Handshake {
    /// Checks the peer's handshake `theirs` against ours, in a cluster of
    /// `nodes`. `dialled` is the node the connecting side meant to reach
    /// (`None` on the accepting side, which takes any other member).
    pub fn check(
        &self,
        theirs: &Handshake,
        nodes: u16,
        dialled: Option<NodeId>,
    ) -> Result<(), HandshakeError> {
        if theirs.version != self.version {
            return Err(HandshakeError::Version { ours: self.version, theirs: theirs.version });
        }
        if theirs.cluster_id != self.cluster_id {
            return Err(HandshakeError::Cluster { ours: self.cluster_id, theirs: theirs.cluster_id });
        }
        if theirs.node.0 >= nodes {
            return Err(HandshakeError::Node { theirs: theirs.node, expected: "a member of this cluster" });
        }
        if theirs.node == self.node {
            return Err(HandshakeError::Node { theirs: theirs.node, expected: "another node than this one" });
        }
        if dialled.is_some_and(|d| d != theirs.node) {
            return Err(HandshakeError::Node {
                theirs: theirs.node,
                expected: "the node at the address dialled",
            });
        }
        if theirs.digest != self.digest {
            return Err(HandshakeError::Digest { ours: self.digest, theirs: theirs.digest });
        }
        Ok(())
    }

    /// The connecting side's check of the accepting side's answer: `Welcome`
    /// must pass [`Handshake::check`]; `Refused` is the peer's reason; any
    /// other frame breaks the protocol.
    pub fn check_answer(
        &self,
        answer: &PeerFrame,
        nodes: u16,
        dialled: NodeId,
    ) -> Result<Handshake, HandshakeError> {
        match *answer {
            PeerFrame::Welcome(theirs) => self.check(&theirs, nodes, Some(dialled)).map(|()| theirs),
            PeerFrame::Refused { reason, theirs } => Err(HandshakeError::Refused { reason, theirs }),
            _ => Err(HandshakeError::NotHandshake),
        }
    }
}

/// A digest of everything two nodes must agree on for the lease to be safe
/// between them: the cluster size (quorums), `D_P`, `D_A`, `Q`, the margin
/// and the drift bound (T2, T3). FNV-1a over their big-endian encoding: a
/// mismatch detector between honest nodes, not a security measure.
pub fn timing_digest(nodes: u16, drift_ppm: u32, timing: &LeaseTiming) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    eat(&nodes.to_be_bytes());
    eat(&drift_ppm.to_be_bytes());
    for d in [timing.proposer, timing.acceptor, timing.quarantine, timing.margin] {
        eat(&nanos(d).to_be_bytes());
    }
    h
}

/// One frame of the peer protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PeerFrame {
    /// Connecting side → accepting side: the first frame of a connection.
    Hello(Handshake),
    /// Accepting side → connecting side: the handshake is accepted.
    Welcome(Handshake),
    /// Accepting side → connecting side, then close: the handshake is refused.
    Refused {
        /// Why.
        reason: Refusal,
        /// The refuser's own handshake, so the other side can name both values.
        theirs: Handshake,
    },
    /// A PaxosLease message.
    Lease(LeaseMsg),
    /// A store operation for the receiver's replica; its reply comes back as
    /// [`PeerFrame::StoreReply`] with the same id.
    Store(StoreRequest),
    /// The receiver's replica's answer to its store request `id`.
    StoreReply {
        /// The request's id.
        id: u64,
        /// The answer.
        reply: StoreReply,
    },
    /// "What is the highest ballot of mine you have seen?": asked by a node
    /// that lost its restart counter with its disk, before it campaigns.
    RestartQuery,
    /// The answer to [`PeerFrame::RestartQuery`]: the highest ballot of the
    /// asking node the answering node has seen (`Ballot::ZERO` for none).
    RestartInfo {
        /// That ballot.
        highest: Ballot,
    },
}

const OP_LOAD: u8 = 1;
const OP_SAVE: u8 = 2;
const OP_REGISTER: u8 = 3;
const OP_CLEAR: u8 = 4;
const OP_READ_PRIMARY: u8 = 5;

const R_LOADED: u8 = 1;
const R_SAVED: u8 = 2;
const R_PRIMARY: u8 = 3;
const R_FENCED: u8 = 16;
const R_PRIMARY_EXISTS: u8 = 17;
const R_NOT_GREATER: u8 = 18;
const R_FAILED: u8 = 19;
const R_IMPLAUSIBLE: u8 = 20;

fn put_handshake(buf: &mut impl BufMut, h: &Handshake) {
    buf.put_slice(&PEER_MAGIC);
    buf.put_u8(h.version);
    buf.put_u64(h.cluster_id);
    buf.put_u16(h.node.0);
    put_addr(buf, h.client_addr);
    put_addr(buf, h.resp_addr);
    put_addr(buf, h.pd_addr);
    buf.put_u64(h.digest);
}

fn get_handshake(buf: &mut &[u8]) -> Result<Handshake, WireError> {
    let mut magic = [0u8; 4];
    buf.copy_to_slice(&mut magic);
    if magic != PEER_MAGIC {
        return Err(WireError::BadMagic);
    }
    let version = buf.get_u8();
    let cluster_id = buf.get_u64();
    let node = NodeId(buf.get_u16());
    let client_addr = get_addr(buf)?;
    let resp_addr = get_addr(buf)?;
    let pd_addr = get_addr(buf)?;
    Ok(Handshake { version, cluster_id, node, client_addr, resp_addr, pd_addr, digest: buf.get_u64() })
}

fn get_bool(buf: &mut &[u8], field: &'static str) -> Result<bool, WireError> {
    match buf.get_u8() {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(WireError::BadValue(field)),
    }
}

/// A lease message alone on the wire is a peer frame of one of its kinds
/// (`0x41..=0x47`): its framing lives here with the peer protocol's, so
/// that `crate::lease::message` (the kinds and bodies) never imports the
/// protocol that carries it.
impl LeaseMsg {
    /// Bytes of the encoded frame, length prefix included.
    pub fn encoded_len(&self) -> usize {
        // Every kind `kind()` returns has a body length.
        LEN_PREFIX + 1 + lease_body_len(self.kind()).unwrap_or(0)
    }

    /// Appends the frame to `buf`, or leaves it untouched if it has no room.
    /// The frame is a peer frame (`crate::peer`): lease messages are the
    /// kinds `0x41..=0x47` of the peer protocol.
    pub fn encode(&self, buf: &mut impl BufMut) -> Result<usize, EncodeError> {
        let required = PEER.begin(buf, self.kind())?;
        self.encode_body(buf);
        Ok(required)
    }

    /// Decodes the first frame of `bytes`: a message and the bytes it used,
    /// `None` if more bytes are needed, or an error if they can never be one
    /// (including a peer frame of a kind that is not a lease message).
    pub fn decode(bytes: &[u8]) -> Result<Option<(LeaseMsg, usize)>, WireError> {
        let Some(RawFrame { kind, rest: mut buf, consumed }) = PEER.split(bytes)? else {
            return Ok(None);
        };
        match Self::decode_body(kind, &mut buf)? {
            Some(msg) => Ok(Some((msg, consumed))),
            None => Err(WireError::UnknownKind(kind)),
        }
    }
}

impl PeerFrame {
    fn kind(&self) -> u8 {
        match self {
            PeerFrame::Hello(_) => HELLO,
            PeerFrame::Welcome(_) => WELCOME,
            PeerFrame::Refused { .. } => REFUSED,
            PeerFrame::Lease(m) => m.kind(),
            PeerFrame::Store(_) => STORE_REQUEST,
            PeerFrame::StoreReply { .. } => STORE_REPLY,
            PeerFrame::RestartQuery => RESTART_QUERY,
            PeerFrame::RestartInfo { .. } => RESTART_INFO,
        }
    }

    /// Bytes of the whole encoded frame, length prefix included.
    pub fn encoded_len(&self) -> usize {
        // Every kind `kind()` returns has a body length.
        LEN_PREFIX + 1 + body_len(self.kind()).unwrap_or(0)
    }

    /// Appends the frame to `buf`, or leaves it untouched if it has no room.
    pub fn encode(&self, buf: &mut impl BufMut) -> Result<usize, EncodeError> {
        let required = PEER.begin(buf, self.kind())?;
        match self {
            PeerFrame::Hello(h) | PeerFrame::Welcome(h) => put_handshake(buf, h),
            PeerFrame::Refused { reason, theirs } => {
                buf.put_u8(*reason as u8);
                put_handshake(buf, theirs);
            }
            PeerFrame::Lease(m) => m.encode_body(buf),
            PeerFrame::Store(StoreRequest { id, op }) => {
                buf.put_u64(*id);
                let (code, ballot, window, check, node) = match *op {
                    StoreOp::Load { fence, check_primary } => (OP_LOAD, fence, 0, check_primary, NodeId(0)),
                    StoreOp::Save { window_end_ms, fence, check_primary } => {
                        (OP_SAVE, fence, window_end_ms, check_primary, NodeId(0))
                    }
                    StoreOp::RegisterPrimary { id, tag } => (OP_REGISTER, tag, 0, false, id),
                    StoreOp::ClearPrimary { id, tag } => (OP_CLEAR, tag, 0, false, id),
                    StoreOp::ReadPrimary => (OP_READ_PRIMARY, Ballot::ZERO, 0, false, NodeId(0)),
                };
                buf.put_u8(code);
                put_ballot(buf, ballot);
                buf.put_u64(window);
                buf.put_u8(u8::from(check));
                buf.put_u16(node.0);
            }
            PeerFrame::StoreReply { id, reply } => {
                buf.put_u64(*id);
                let (code, ballot, value, node) = match *reply {
                    Ok(StoreOk::Loaded { window_end_ms }) => {
                        (R_LOADED, Ballot::ZERO, window_end_ms, NodeId(0))
                    }
                    Ok(StoreOk::Saved) => (R_SAVED, Ballot::ZERO, 0, NodeId(0)),
                    Ok(StoreOk::Primary { registered: None }) => (R_PRIMARY, Ballot::ZERO, 0, NodeId(0)),
                    Ok(StoreOk::Primary { registered: Some((id, tag)) }) => (R_PRIMARY, tag, 1, id),
                    Err(StoreReject::Fenced { by }) => (R_FENCED, by, 0, NodeId(0)),
                    Err(StoreReject::PrimaryExists { id }) => (R_PRIMARY_EXISTS, Ballot::ZERO, 0, id),
                    Err(StoreReject::NotGreater { stored }) => {
                        (R_NOT_GREATER, Ballot::ZERO, stored, NodeId(0))
                    }
                    Err(StoreReject::Failed) => (R_FAILED, Ballot::ZERO, 0, NodeId(0)),
                    Err(StoreReject::Implausible) => (R_IMPLAUSIBLE, Ballot::ZERO, 0, NodeId(0)),
                };
                buf.put_u8(code);
                put_ballot(buf, ballot);
                buf.put_u64(value);
                buf.put_u16(node.0);
            }
            PeerFrame::RestartQuery => {}
            PeerFrame::RestartInfo { highest } => put_ballot(buf, *highest),
        }
        Ok(required)
    }

    /// Decodes the first frame of `bytes`: `Ok(Some((frame, consumed)))`,
    /// `Ok(None)` while more bytes are needed, or an error as soon as the
    /// bytes cannot become a frame (an oversized length, an unknown kind or a
    /// body of the wrong size is refused from the first five bytes).
    pub fn decode(bytes: &[u8]) -> Result<Option<(PeerFrame, usize)>, WireError> {
        let Some(RawFrame { kind, mut rest, consumed }) = PEER.split(bytes)? else {
            return Ok(None);
        };
        let buf = &mut rest;
        let frame = match kind {
            HELLO => PeerFrame::Hello(get_handshake(buf)?),
            WELCOME => PeerFrame::Welcome(get_handshake(buf)?),
            REFUSED => {
                let reason = Refusal::from_u8(buf.get_u8()).ok_or(WireError::BadValue("refusal reason"))?;
                PeerFrame::Refused { reason, theirs: get_handshake(buf)? }
            }
            STORE_REQUEST => {
                let id = buf.get_u64();
                let code = buf.get_u8();
                let ballot = get_ballot(buf);
                let window_end_ms = buf.get_u64();
                let check_primary = get_bool(buf, "check_primary")?;
                let node = NodeId(buf.get_u16());
                let op = match code {
                    OP_LOAD => StoreOp::Load { fence: ballot, check_primary },
                    OP_SAVE => StoreOp::Save { window_end_ms, fence: ballot, check_primary },
                    OP_REGISTER => StoreOp::RegisterPrimary { id: node, tag: ballot },
                    OP_CLEAR => StoreOp::ClearPrimary { id: node, tag: ballot },
                    OP_READ_PRIMARY => StoreOp::ReadPrimary,
                    _ => return Err(WireError::BadValue("store operation")),
                };
                PeerFrame::Store(StoreRequest { id, op })
            }
            STORE_REPLY => {
                let id = buf.get_u64();
                let code = buf.get_u8();
                let ballot = get_ballot(buf);
                let value = buf.get_u64();
                let node = NodeId(buf.get_u16());
                let reply = match code {
                    R_LOADED => Ok(StoreOk::Loaded { window_end_ms: value }),
                    R_SAVED => Ok(StoreOk::Saved),
                    R_PRIMARY => match value {
                        0 => Ok(StoreOk::Primary { registered: None }),
                        1 => Ok(StoreOk::Primary { registered: Some((node, ballot)) }),
                        _ => return Err(WireError::BadValue("primary present flag")),
                    },
                    R_FENCED => Err(StoreReject::Fenced { by: ballot }),
                    R_PRIMARY_EXISTS => Err(StoreReject::PrimaryExists { id: node }),
                    R_NOT_GREATER => Err(StoreReject::NotGreater { stored: value }),
                    R_FAILED => Err(StoreReject::Failed),
                    R_IMPLAUSIBLE => Err(StoreReject::Implausible),
                    _ => return Err(WireError::BadValue("store reply")),
                };
                PeerFrame::StoreReply { id, reply }
            }
            RESTART_QUERY => PeerFrame::RestartQuery,
            RESTART_INFO => PeerFrame::RestartInfo { highest: get_ballot(buf) },
            // `body_len` knows no other kinds than these and the lease kinds.
            other => match LeaseMsg::decode_body(other, buf)? {
                Some(m) => PeerFrame::Lease(m),
                None => return Err(WireError::UnknownKind(other)),
            },
        };
        Ok(Some((frame, consumed)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::LeaseMsg;

    fn hs(node: u16) -> Handshake {
        Handshake {
            version: PEER_VERSION,
            cluster_id: 7,
            node: NodeId(node),
            client_addr: Some("127.0.0.1:7400".parse().unwrap()),
            resp_addr: Some("[::1]:6380".parse().unwrap()),
            pd_addr: Some("10.1.2.3:2379".parse().unwrap()),
            digest: 0xdead_beef,
        }
    }

    fn samples() -> Vec<PeerFrame> {
        let b = Ballot::new(3, 9, NodeId(2));
        let mut frames = vec![
            PeerFrame::Hello(hs(0)),
            PeerFrame::Welcome(Handshake { client_addr: None, ..hs(1) }),
            PeerFrame::Welcome(Handshake { resp_addr: None, ..hs(1) }),
            PeerFrame::Refused { reason: Refusal::Digest, theirs: hs(2) },
            PeerFrame::Lease(LeaseMsg::Prepare { ballot: b }),
            PeerFrame::Lease(LeaseMsg::Promise { ballot: b, lease: Some(b) }),
            PeerFrame::RestartQuery,
            PeerFrame::RestartInfo { highest: b },
        ];
        let ops = [
            StoreOp::Load { fence: b, check_primary: true },
            StoreOp::Save { window_end_ms: 1 << 40, fence: b, check_primary: false },
            StoreOp::RegisterPrimary { id: NodeId(4), tag: b },
            StoreOp::ClearPrimary { id: NodeId(1), tag: b },
            StoreOp::ReadPrimary,
        ];
        frames.extend(ops.map(|op| PeerFrame::Store(StoreRequest { id: u64::MAX - 1, op })));
        let replies = [
            Ok(StoreOk::Loaded { window_end_ms: 99 }),
            Ok(StoreOk::Saved),
            Ok(StoreOk::Primary { registered: None }),
            Ok(StoreOk::Primary { registered: Some((NodeId(2), b)) }),
            Err(StoreReject::Fenced { by: b }),
            Err(StoreReject::PrimaryExists { id: NodeId(3) }),
            Err(StoreReject::NotGreater { stored: 5 }),
            Err(StoreReject::Failed),
            Err(StoreReject::Implausible),
        ];
        frames.extend(replies.map(|reply| PeerFrame::StoreReply { id: 12, reply }));
        frames
    }

    #[test]
    fn every_peer_frame_round_trips_and_prefixes_ask_for_more() {
        for f in samples() {
            crate::codec_props::check_round_trip(f, &[]).unwrap();
        }
    }

    #[test]
    fn lease_messages_are_peer_frames() {
        let m = LeaseMsg::Release { ballot: Ballot::new(1, 2, NodeId(0)) };
        let mut a = Vec::new();
        m.encode(&mut a).unwrap();
        let mut b = Vec::new();
        PeerFrame::Lease(m).encode(&mut b).unwrap();
        assert_eq!(a, b);
        assert_eq!(LeaseMsg::decode(&a), Ok(Some((m, a.len()))));
        // A peer frame that is not a lease message is not a `LeaseMsg`.
        let mut q = Vec::new();
        PeerFrame::RestartQuery.encode(&mut q).unwrap();
        assert_eq!(LeaseMsg::decode(&q), Err(WireError::UnknownKind(RESTART_QUERY)));
    }

    #[test]
    fn bad_peer_frames_are_errors() {
        assert!(matches!(PeerFrame::decode(&[0, 0, 1, 0]), Err(WireError::FrameTooLarge { len: 256, .. })));
        assert_eq!(PeerFrame::decode(&[0, 0, 0, 0]), Err(WireError::Empty));
        assert_eq!(PeerFrame::decode(&[0, 0, 0, 1, 0x30]), Err(WireError::UnknownKind(0x30)));
        assert!(matches!(PeerFrame::decode(&[0, 0, 0, 2, HELLO]), Err(WireError::BadLength { .. })));
        let mut hello = Vec::new();
        PeerFrame::Hello(hs(0)).encode(&mut hello).unwrap();
        hello[5] = b'X';
        assert_eq!(PeerFrame::decode(&hello), Err(WireError::BadMagic));
        let mut req = Vec::new();
        PeerFrame::Store(StoreRequest {
            id: 1,
            op: StoreOp::Load { fence: Ballot::ZERO, check_primary: false },
        })
        .encode(&mut req)
        .unwrap();
        req[LEN_PREFIX + 1 + 8] = 77;
        assert_eq!(PeerFrame::decode(&req), Err(WireError::BadValue("store operation")));
    }

    #[test]
    fn small_buffers_are_untouched() {
        let mut storage = [9u8; 20];
        let mut buf = &mut storage[..];
        let f = PeerFrame::Hello(hs(1));
        assert_eq!(f.encode(&mut buf), Err(EncodeError::BufferTooSmall { required: f.encoded_len() }));
        assert_eq!(storage, [9u8; 20]);
    }

    #[test]
    fn handshake_checks_name_both_values() {
        let ours = hs(0);
        assert_eq!(ours.check(&hs(1), 3, None), Ok(()));
        assert_eq!(ours.check(&hs(1), 3, Some(NodeId(1))), Ok(()));
        let e = ours.check(&Handshake { cluster_id: 8, ..hs(1) }, 3, None).unwrap_err();
        assert_eq!(e, HandshakeError::Cluster { ours: 7, theirs: 8 });
        assert!(e.to_string().contains("cluster 8") && e.to_string().contains("cluster 7"), "{e}");
        let e = ours.check(&Handshake { digest: 1, ..hs(1) }, 3, None).unwrap_err();
        assert_eq!(e.refusal(), Refusal::Digest);
        assert!(e.to_string().contains("0x0000000000000001") && e.to_string().contains("0x00000000deadbeef"));
        assert_eq!(ours.check(&hs(0), 3, None).unwrap_err().refusal(), Refusal::Node);
        assert_eq!(ours.check(&hs(3), 3, None).unwrap_err().refusal(), Refusal::Node);
        assert_eq!(ours.check(&hs(2), 3, Some(NodeId(1))).unwrap_err().refusal(), Refusal::Node);
        assert_eq!(
            ours.check(&Handshake { version: 9, ..hs(1) }, 3, None),
            Err(HandshakeError::Version { ours: PEER_VERSION, theirs: 9 })
        );
        let refused = PeerFrame::Refused { reason: Refusal::Cluster, theirs: hs(1) };
        let e = ours.check_answer(&refused, 3, NodeId(1)).unwrap_err();
        assert!(e.to_string().contains("refused by node 2"), "{e}");
        assert_eq!(
            ours.check_answer(&PeerFrame::RestartQuery, 3, NodeId(1)),
            Err(HandshakeError::NotHandshake)
        );
        assert_eq!(ours.check_answer(&PeerFrame::Welcome(hs(1)), 3, NodeId(1)), Ok(hs(1)));
    }

    #[test]
    fn digest_covers_size_and_timing() {
        let t = crate::LeaseConfig::default().timing().unwrap();
        let base = timing_digest(3, 10_000, &t);
        assert_eq!(base, timing_digest(3, 10_000, &t));
        assert_ne!(base, timing_digest(5, 10_000, &t));
        assert_ne!(base, timing_digest(3, 20_000, &t));
        let short =
            crate::LeaseConfig { duration: core::time::Duration::from_millis(500), ..Default::default() };
        assert_ne!(base, timing_digest(3, 10_000, &short.timing().unwrap()));
    }

    /// Properties over generated peer frames and bytes: what the fixed
    /// samples above show, for every frame and every byte string proptest
    /// can shrink a failure to (the claims every codec shares, in
    /// `codec_props`, and the peer frames' own).
    mod props {
        use proptest::collection::vec;
        use proptest::prelude::*;

        use super::*;
        use crate::codec_props::{
            addr, ballot, check_any_bytes, check_round_trip, frame_like, lease_message, node,
        };

        fn handshake() -> impl Strategy<Value = Handshake> {
            (any::<u8>(), any::<u64>(), node(), addr(), addr(), addr(), any::<u64>()).prop_map(
                |(version, cluster_id, node, client_addr, resp_addr, pd_addr, digest)| Handshake {
                    version,
                    cluster_id,
                    node,
                    client_addr,
                    resp_addr,
                    pd_addr,
                    digest,
                },
            )
        }

        fn op() -> impl Strategy<Value = StoreOp> {
            prop_oneof![
                (ballot(), any::<bool>())
                    .prop_map(|(fence, check_primary)| StoreOp::Load { fence, check_primary }),
                (any::<u64>(), ballot(), any::<bool>()).prop_map(|(window_end_ms, fence, check_primary)| {
                    StoreOp::Save { window_end_ms, fence, check_primary }
                }),
                (node(), ballot()).prop_map(|(id, tag)| StoreOp::RegisterPrimary { id, tag }),
                (node(), ballot()).prop_map(|(id, tag)| StoreOp::ClearPrimary { id, tag }),
                Just(StoreOp::ReadPrimary),
            ]
        }

        fn reply() -> impl Strategy<Value = StoreReply> {
            prop_oneof![
                any::<u64>().prop_map(|window_end_ms| Ok(StoreOk::Loaded { window_end_ms })),
                Just(Ok(StoreOk::Saved)),
                proptest::option::of((node(), ballot()))
                    .prop_map(|registered| Ok(StoreOk::Primary { registered })),
                ballot().prop_map(|by| Err(StoreReject::Fenced { by })),
                node().prop_map(|id| Err(StoreReject::PrimaryExists { id })),
                any::<u64>().prop_map(|stored| Err(StoreReject::NotGreater { stored })),
                Just(Err(StoreReject::Failed)),
                Just(Err(StoreReject::Implausible)),
            ]
        }

        /// Every peer frame, with any field values it can carry.
        fn frame() -> impl Strategy<Value = PeerFrame> {
            let reason = prop_oneof![
                Just(Refusal::Version),
                Just(Refusal::Cluster),
                Just(Refusal::Node),
                Just(Refusal::Digest),
                Just(Refusal::NotHello),
            ];
            prop_oneof![
                handshake().prop_map(PeerFrame::Hello),
                handshake().prop_map(PeerFrame::Welcome),
                (reason, handshake()).prop_map(|(reason, theirs)| PeerFrame::Refused { reason, theirs }),
                lease_message().prop_map(PeerFrame::Lease),
                (any::<u64>(), op()).prop_map(|(id, op)| PeerFrame::Store(StoreRequest { id, op })),
                (any::<u64>(), reply()).prop_map(|(id, reply)| PeerFrame::StoreReply { id, reply }),
                Just(PeerFrame::RestartQuery),
                ballot().prop_map(|highest| PeerFrame::RestartInfo { highest }),
            ]
        }

        proptest! {
            /// Any bytes are a frame, a request for more bytes, or an error,
            /// never a panic. A frame takes no more bytes than it was given,
            /// and re-encodes to them, except that bytes of fields it leaves
            /// unset (the unused fields of a store operation or reply, an
            /// absent address, the lease of a Promise without one) come out
            /// zero; a request for more comes only with a header valid so far.
            #[test]
            fn any_bytes_are_a_frame_more_or_an_error(bytes in frame_like(frame(), 0..72, 80)) {
                check_any_bytes::<PeerFrame>(&bytes)?;
            }

            /// Every peer frame round-trips whatever follows it, takes
            /// exactly `encoded_len` bytes, each strict prefix asks for more,
            /// and a lease frame is the lease message's own encoding.
            #[test]
            fn every_frame_round_trips_and_its_prefixes_ask_for_more(
                frame in frame(),
                tail in vec(any::<u8>(), 0..8),
            ) {
                let bytes = check_round_trip(frame, &tail)?;
                if let PeerFrame::Lease(m) = frame {
                    prop_assert_eq!(LeaseMsg::decode(&bytes), Ok(Some((m, bytes.len()))));
                }
            }
        }
    }
}
