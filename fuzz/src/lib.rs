//! What the targets share: a choice stream that the fuzzer's bytes drive,
//! so a session target can make every decision a runtime or a node makes
//! (chunk sizes, refusals, timings) from the input; and the one property of
//! the two frame decoders, checked on either protocol's frames.

use core::fmt::Debug;

use leasetso_core::wire::{EncodeError, WireError};

/// Choices taken from a byte string, cycling; all zeros once it is empty.
pub struct Choices<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Choices<'a> {
    /// Splits `data` into choices and the rest: the first byte says how
    /// many bytes after it are choices (up to 63).
    pub fn split(data: &'a [u8]) -> (Choices<'a>, &'a [u8]) {
        let Some((&n, rest)) = data.split_first() else {
            return (Choices { bytes: &[], at: 0 }, &[]);
        };
        let n = usize::from(n % 64).min(rest.len());
        (Choices { bytes: &rest[..n], at: 0 }, &rest[n..])
    }

    /// The next choice byte.
    pub fn byte(&mut self) -> u8 {
        if self.bytes.is_empty() {
            return 0;
        }
        let b = self.bytes[self.at % self.bytes.len()];
        self.at += 1;
        b
    }

    /// A number in `1..=max`.
    pub fn chunk(&mut self, max: usize) -> usize {
        1 + usize::from(self.byte()) % max.max(1)
    }
}

/// The frames at the start of `bytes`, and where they end: what a peer
/// reading them would see.
pub fn client_frames(mut bytes: &[u8]) -> (Vec<leasetso_core::Frame>, usize) {
    let mut frames = Vec::new();
    let mut used = 0;
    while let Ok(Some((frame, n))) = leasetso_core::Frame::decode(bytes) {
        frames.push(frame);
        used += n;
        bytes = &bytes[n..];
    }
    (frames, used)
}

/// A frame decoder of the core: the client protocol's `Frame` or the peer
/// protocol's `PeerFrame`, which share their framing (PROTOCOL.md).
pub trait Codec: Copy + Debug + PartialEq {
    /// The type's decoder.
    fn decode(bytes: &[u8]) -> Result<Option<(Self, usize)>, WireError>;
    /// The type's encoder, into a growing buffer.
    fn encode(&self, buf: &mut Vec<u8>) -> Result<usize, EncodeError>;
    /// How many bytes `encode` writes.
    fn encoded_len(&self) -> usize;
}

/// Implements [`Codec`] with the type's own decoder, encoder and length.
macro_rules! codec {
    ($type:ty) => {
        impl Codec for $type {
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

codec!(leasetso_core::Frame);
codec!(leasetso_core::PeerFrame);

/// The decoder property, on `data` read the way a server reads a pipelined
/// stream: frame after frame until bytes run out or an error closes the
/// connection. Every frame takes at least one byte and no more than it was
/// given, exactly its `encoded_len`; it re-encodes to the bytes it was
/// decoded from, up to the bytes of unset fields, and decodes again to
/// itself; every strict prefix of it asks for more bytes. Panics on a
/// violation (the fuzzer's crash).
pub fn check_decoder<C: Codec>(data: &[u8]) {
    let mut rest = data;
    while let Ok(Some((frame, consumed))) = C::decode(rest) {
        assert!(consumed > 0 && consumed <= rest.len(), "consumed {consumed} of {}", rest.len());
        assert_eq!(frame.encoded_len(), consumed, "{frame:?}");
        let mut again = Vec::with_capacity(consumed);
        assert_eq!(frame.encode(&mut again), Ok(consumed), "{frame:?}");
        // The same bytes, except where the input held a value in a field the
        // frame leaves unset (the lease of a Promise without one, the ip of
        // an absent address, the rest of an IPv4 address, the unused fields
        // of a store operation): the protocol has senders zero those bytes
        // and receivers do not look at them, so the re-encoding has zeros
        // there and only there.
        for (i, (&got, &sent)) in again.iter().zip(&rest[..consumed]).enumerate() {
            assert!(got == sent || got == 0, "{frame:?} re-encodes byte {i} {sent:#04x} as {got:#04x}");
        }
        assert_eq!(
            C::decode(&again),
            Ok(Some((frame, consumed))),
            "the re-encoding decodes to another frame"
        );
        for cut in [0, consumed / 2, consumed - 1] {
            assert_eq!(C::decode(&rest[..cut]), Ok(None), "{frame:?} cut at {cut}");
        }
        rest = &rest[consumed..];
    }
}
