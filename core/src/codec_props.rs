//! Test-only: the properties every length-prefixed codec of the core must
//! have, and the generators its codecs share.
//!
//! The client frames (`wire`), the peer frames (`peer`) and the lease
//! messages (`lease::message`, which are peer frames too) are read the same
//! way (PROTOCOL.md, "Framing"): a four-byte length, a kind, a body. So the
//! claims on them are one set, written once here and checked by each
//! codec's own `props` module with that codec's generators:
//! * [`check_any_bytes`]: any bytes are a frame, a request for more under a
//!   header valid so far, or an error; never a panic; a frame re-encodes to
//!   its input except for bytes of unset fields, which come out zero.
//! * [`check_round_trip`]: a frame round-trips whatever follows it, takes
//!   exactly `encoded_len` bytes, and each strict prefix asks for more.

use core::fmt::Debug;
use core::net::{Ipv6Addr, SocketAddr, SocketAddrV6};
use core::ops::Range;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use crate::ballot::{Ballot, NodeId};
use crate::lease::LeaseMsg;
use crate::peer::{MAX_PEER_FRAME_LEN, PeerFrame};
use crate::wire::{EncodeError, Frame, LEN_PREFIX, MAX_FRAME_LEN, WireError};

/// A length-prefixed codec of the core, as the shared properties see it.
pub(crate) trait Codec: Copy + Debug + PartialEq + 'static {
    /// The longest length prefix a reader accepts before it errs.
    const MAX_LEN: u32;
    /// The codec's decoder.
    fn decode(bytes: &[u8]) -> Result<Option<(Self, usize)>, WireError>;
    /// The codec's encoder, into a growing buffer.
    fn encode(&self, buf: &mut Vec<u8>) -> Result<usize, EncodeError>;
    /// How many bytes [`Codec::encode`] writes.
    fn encoded_len(&self) -> usize;
}

/// Implements [`Codec`] with the type's own decoder, encoder and length.
macro_rules! codec {
    ($type:ty, $max:expr) => {
        impl Codec for $type {
            const MAX_LEN: u32 = $max;
            fn decode(bytes: &[u8]) -> Result<Option<(Self, usize)>, WireError> {
                <$type>::decode(bytes)
            }
            fn encode(&self, buf: &mut Vec<u8>) -> Result<usize, EncodeError> {
                <$type>::encode(self, buf)
            }
            fn encoded_len(&self) -> usize {
                <$type>::encoded_len(self)
            }
        }
    };
}

codec!(Frame, MAX_FRAME_LEN);
codec!(PeerFrame, MAX_PEER_FRAME_LEN);
// Lease messages travel as peer frames, so the peer limit is theirs.
codec!(LeaseMsg, MAX_PEER_FRAME_LEN);

/// `c`'s bytes; the encoder reports as many as it wrote.
pub(crate) fn encode<C: Codec>(c: &C) -> Vec<u8> {
    let mut buf = Vec::new();
    let n = c.encode(&mut buf).expect("a Vec grows");
    assert_eq!(n, buf.len(), "{c:?}: the encoder's count is not what it wrote");
    buf
}

/// Any ballot.
pub(crate) fn ballot() -> impl Strategy<Value = Ballot> {
    (any::<u64>(), any::<u64>(), any::<u16>()).prop_map(|(c, r, n)| Ballot::new(c, r, NodeId(n)))
}

/// Any node id.
pub(crate) fn node() -> impl Strategy<Value = NodeId> {
    any::<u16>().prop_map(NodeId)
}

/// An optional address as both protocols carry it: none, IPv4 or IPv6.
pub(crate) fn addr() -> impl Strategy<Value = Option<SocketAddr>> {
    prop_oneof![
        Just(None),
        (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, port)| Some(SocketAddr::from((ip, port)))),
        // Flow info and scope id are not on the wire.
        (any::<[u8; 16]>(), any::<u16>())
            .prop_map(|(ip, port)| Some(SocketAddrV6::new(Ipv6Addr::from(ip), port, 0, 0).into())),
    ]
}

/// Every lease message, with any field values (a message of its own and
/// the body of a peer `Lease` frame).
pub(crate) fn lease_message() -> impl Strategy<Value = LeaseMsg> {
    prop_oneof![
        ballot().prop_map(|ballot| LeaseMsg::Prepare { ballot }),
        (ballot(), proptest::option::of(ballot()))
            .prop_map(|(ballot, lease)| LeaseMsg::Promise { ballot, lease }),
        (ballot(), ballot()).prop_map(|(refused, promised)| LeaseMsg::Rejected { refused, promised }),
        ballot().prop_map(|ballot| LeaseMsg::Accept { ballot }),
        ballot().prop_map(|ballot| LeaseMsg::Accepted { ballot }),
        (ballot(), any::<u32>())
            .prop_map(|(ballot, remaining_ms)| LeaseMsg::LearnChosen { ballot, remaining_ms }),
        ballot().prop_map(|ballot| LeaseMsg::Release { ballot }),
    ]
    .prop_map(|msg| msg)
}

/// Bytes that mostly start like a header (a length in `lens`, any kind),
/// so bodies get decoded too, or are a real frame of `frames` with a few
/// bytes changed; sometimes anything. Bodies and the anything are shorter
/// than `body`.
pub(crate) fn frame_like<C: Codec>(
    frames: impl Strategy<Value = C> + 'static,
    lens: Range<u8>,
    body: usize,
) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        1 => vec(any::<u8>(), 0..body),
        3 => (lens, any::<u8>(), vec(any::<u8>(), 0..body)).prop_map(|(len, kind, body)| {
            let mut bytes = vec![0, 0, 0, len, kind];
            bytes.extend(body);
            bytes
        }),
        3 => (frames, vec((any::<prop::sample::Index>(), any::<u8>()), 1..4)).prop_map(|(f, edits)| {
            let mut bytes = encode(&f);
            for (at, b) in edits {
                let i = at.index(bytes.len());
                bytes[i] = b;
            }
            bytes
        }),
    ]
}

/// Any bytes are a frame, a request for more bytes, or an error, never a
/// panic. A frame takes no more bytes than it was given and re-encodes to
/// them, except that bytes of fields it leaves unset come out zero (each
/// codec's test names which); a request for more comes only with a header
/// that is valid so far.
pub(crate) fn check_any_bytes<C: Codec>(bytes: &[u8]) -> Result<(), TestCaseError> {
    match C::decode(bytes) {
        Ok(Some((frame, n))) => {
            prop_assert!(n <= bytes.len());
            prop_assert_eq!(frame.encoded_len(), n);
            let again = encode(&frame);
            for (i, (&got, &sent)) in again.iter().zip(bytes).enumerate() {
                prop_assert!(
                    got == sent || got == 0,
                    "{:?}: byte {} {:#04x} re-encoded as {:#04x}",
                    frame,
                    i,
                    sent,
                    got
                );
            }
            prop_assert_eq!(C::decode(&again), Ok(Some((frame, n))));
        }
        Ok(None) => {
            if let Some(len) = bytes.get(..LEN_PREFIX) {
                let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]);
                prop_assert!((1..=C::MAX_LEN).contains(&len), "waits for a frame of length {}", len);
                prop_assert!(bytes.len() < LEN_PREFIX + len as usize);
            }
        }
        Err(_) => {}
    }
    Ok(())
}

/// `frame` round-trips whatever follows it (`tail`), takes exactly
/// `encoded_len` bytes, and each strict prefix asks for more. Returns the
/// frame's own bytes, for a codec's further claims on them.
pub(crate) fn check_round_trip<C: Codec>(frame: C, tail: &[u8]) -> Result<Vec<u8>, TestCaseError> {
    let mut bytes = encode(&frame);
    let n = bytes.len();
    prop_assert_eq!(n, frame.encoded_len(), "{:?}", frame);
    for cut in 0..n {
        prop_assert_eq!(C::decode(&bytes[..cut]), Ok(None), "{:?} cut at {}", frame, cut);
    }
    bytes.extend_from_slice(tail);
    prop_assert_eq!(C::decode(&bytes), Ok(Some((frame, n))), "{:?}", frame);
    bytes.truncate(n);
    Ok(bytes)
}
