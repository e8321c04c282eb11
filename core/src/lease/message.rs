//! PaxosLease messages between nodes, and their wire encoding.
//!
//! Messages are small `Copy` values. On the wire a lease message is a peer
//! frame (`crate::peer`): `len: u32` (bytes that follow), `kind: u8`, then a
//! body whose size the kind fixes; big-endian throughout. This module owns
//! the kinds and the bodies; the frame around them (and so
//! [`LeaseMsg::encode`] and [`LeaseMsg::decode`]) is `crate::peer`'s, which
//! keeps this module free of the peer protocol that carries it. A ballot is
//! encoded as [`crate::ballot`] says. The owner of a lease is the node
//! of its ballot: a proposer only ever proposes itself.

use bytes::{Buf, BufMut};

use crate::ballot::{BALLOT_LEN, Ballot, get_ballot, put_ballot};
use crate::wire::WireError;

/// One PaxosLease message between nodes (PaxosLease Revisited's names).
/// There is one lease per cluster, whatever the nodes' modes
/// (ARCHITECTURE.md, "Bird's-eye view"): a deferring and a primary node
/// compete for the same lease, so at most one of them serves at any instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LeaseMsg {
    /// P1 → A1: phase one of an attempt.
    Prepare {
        /// The attempt's ballot.
        ballot: Ballot,
    },
    /// A1 → P2: the acceptor promised `ballot` and reports its live lease.
    Promise {
        /// The promised ballot.
        ballot: Ballot,
        /// The ballot of the live lease the acceptor holds (owner = its node),
        /// `None` if it holds none or it expired.
        lease: Option<Ballot>,
    },
    /// A1/A2 → proposer: `refused` is below the acceptor's promise.
    Rejected {
        /// The refused ballot.
        refused: Ballot,
        /// The acceptor's promise, for catching up the counter.
        promised: Ballot,
    },
    /// P3 → A2: phase two; the owner is `ballot.node`.
    Accept {
        /// The attempt's ballot.
        ballot: Ballot,
    },
    /// A2 → P4: the acceptor holds the lease `ballot` for `D_A`.
    Accepted {
        /// The accepted ballot.
        ballot: Ballot,
    },
    /// P4 → learners: `ballot.node` owns the lease for about `remaining_ms`.
    LearnChosen {
        /// The chosen ballot.
        ballot: Ballot,
        /// What remained of the owner's lease when it sent this.
        remaining_ms: u32,
    },
    /// P6 → A3: the owner gave up the lease `ballot`.
    Release {
        /// The released lease.
        ballot: Ballot,
    },
}

const PREPARE: u8 = 0x41;
const PROMISE: u8 = 0x42;
const REJECTED: u8 = 0x43;
const ACCEPT: u8 = 0x44;
const ACCEPTED: u8 = 0x45;
const LEARN_CHOSEN: u8 = 0x46;
const RELEASE: u8 = 0x47;

/// The body size of a lease frame of `kind`; `None` for a kind that is not
/// a lease message.
pub(crate) fn lease_body_len(kind: u8) -> Option<usize> {
    Some(match kind {
        PREPARE | ACCEPT | ACCEPTED | RELEASE => BALLOT_LEN,
        PROMISE => BALLOT_LEN + 1 + BALLOT_LEN,
        REJECTED => 2 * BALLOT_LEN,
        LEARN_CHOSEN => BALLOT_LEN + 4,
        _ => return None,
    })
}

impl LeaseMsg {
    pub(crate) fn kind(&self) -> u8 {
        match *self {
            LeaseMsg::Prepare { .. } => PREPARE,
            LeaseMsg::Promise { .. } => PROMISE,
            LeaseMsg::Rejected { .. } => REJECTED,
            LeaseMsg::Accept { .. } => ACCEPT,
            LeaseMsg::Accepted { .. } => ACCEPTED,
            LeaseMsg::LearnChosen { .. } => LEARN_CHOSEN,
            LeaseMsg::Release { .. } => RELEASE,
        }
    }

    /// The ballot a message carries *of its sender's own*, when the sender
    /// speaks as a proposer (Prepare, Accept, Release, LearnChosen): what a
    /// peer remembers of another node's ballots, so that node can start above
    /// them after losing its restart counter with its disk. Replies carry the
    /// addressee's ballot and give `None`.
    pub fn proposer_ballot(&self) -> Option<Ballot> {
        match *self {
            LeaseMsg::Prepare { ballot }
            | LeaseMsg::Accept { ballot }
            | LeaseMsg::Release { ballot }
            | LeaseMsg::LearnChosen { ballot, .. } => Some(ballot),
            LeaseMsg::Promise { .. } | LeaseMsg::Accepted { .. } | LeaseMsg::Rejected { .. } => None,
        }
    }

    /// Writes the body of a frame whose prefix and kind are written.
    pub(crate) fn encode_body(&self, buf: &mut impl BufMut) {
        match *self {
            LeaseMsg::Prepare { ballot }
            | LeaseMsg::Accept { ballot }
            | LeaseMsg::Accepted { ballot }
            | LeaseMsg::Release { ballot } => put_ballot(buf, ballot),
            LeaseMsg::Promise { ballot, lease } => {
                put_ballot(buf, ballot);
                buf.put_u8(u8::from(lease.is_some()));
                put_ballot(buf, lease.unwrap_or(Ballot::ZERO));
            }
            LeaseMsg::Rejected { refused, promised } => {
                put_ballot(buf, refused);
                put_ballot(buf, promised);
            }
            LeaseMsg::LearnChosen { ballot, remaining_ms } => {
                put_ballot(buf, ballot);
                buf.put_u32(remaining_ms);
            }
        }
    }

    /// Decodes the body of a frame of `kind` whose length was checked against
    /// [`lease_body_len`]; `None` if `kind` is not a lease message.
    pub(crate) fn decode_body(kind: u8, buf: &mut &[u8]) -> Result<Option<LeaseMsg>, WireError> {
        if lease_body_len(kind).is_none() {
            return Ok(None);
        }
        let msg = match kind {
            PREPARE => LeaseMsg::Prepare { ballot: get_ballot(buf) },
            ACCEPT => LeaseMsg::Accept { ballot: get_ballot(buf) },
            ACCEPTED => LeaseMsg::Accepted { ballot: get_ballot(buf) },
            RELEASE => LeaseMsg::Release { ballot: get_ballot(buf) },
            PROMISE => {
                let ballot = get_ballot(buf);
                let present = buf.get_u8();
                let lease = get_ballot(buf);
                let lease = match present {
                    0 => None,
                    1 => Some(lease),
                    _ => return Err(WireError::BadValue("promise lease flag")),
                };
                LeaseMsg::Promise { ballot, lease }
            }
            REJECTED => LeaseMsg::Rejected { refused: get_ballot(buf), promised: get_ballot(buf) },
            LEARN_CHOSEN => LeaseMsg::LearnChosen { ballot: get_ballot(buf), remaining_ms: buf.get_u32() },
            // `lease_body_len` knows no other kind.
            other => return Err(WireError::UnknownKind(other)),
        };
        Ok(Some(msg))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ballot::NodeId;
    use crate::wire::{EncodeError, LEN_PREFIX};

    fn samples() -> Vec<LeaseMsg> {
        let b = Ballot::new(7, 3, NodeId(2));
        let c = Ballot::new(u64::MAX, 1, NodeId(u16::MAX));
        [
            LeaseMsg::Prepare { ballot: b },
            LeaseMsg::Promise { ballot: b, lease: None },
            LeaseMsg::Promise { ballot: b, lease: Some(c) },
            LeaseMsg::Rejected { refused: b, promised: c },
            LeaseMsg::Accept { ballot: b },
            LeaseMsg::Accepted { ballot: c },
            LeaseMsg::LearnChosen { ballot: b, remaining_ms: 2_999 },
            LeaseMsg::Release { ballot: b },
        ]
        .into_iter()
        .collect()
    }

    #[test]
    fn messages_round_trip_and_prefixes_ask_for_more() {
        for m in samples() {
            crate::codec_props::check_round_trip(m, &[]).unwrap();
        }
    }

    #[test]
    fn bad_messages_are_errors() {
        assert!(matches!(LeaseMsg::decode(&[0xff; 8]), Err(WireError::FrameTooLarge { .. })));
        assert!(matches!(LeaseMsg::decode(&[0, 0, 0, 1, PREPARE]), Err(WireError::BadLength { .. })));
        assert_eq!(LeaseMsg::decode(&[0, 0, 0, 0]), Err(WireError::Empty));
        assert_eq!(LeaseMsg::decode(&[0, 0, 0, 2, 0x99, 0]), Err(WireError::UnknownKind(0x99)));
        let mut buf = Vec::new();
        LeaseMsg::Promise { ballot: Ballot::ZERO, lease: None }.encode(&mut buf).unwrap();
        buf[LEN_PREFIX + 1 + BALLOT_LEN] = 9;
        assert_eq!(LeaseMsg::decode(&buf), Err(WireError::BadValue("promise lease flag")));
    }

    #[test]
    fn small_buffers_are_untouched() {
        let mut storage = [1u8; 10];
        let mut buf = &mut storage[..];
        let m = LeaseMsg::Accept { ballot: Ballot::ZERO };
        assert_eq!(m.encode(&mut buf), Err(EncodeError::BufferTooSmall { required: 23 }));
        assert_eq!(storage, [1u8; 10]);
    }

    /// Properties over generated messages and bytes (they replace a
    /// hand-written garbage loop): the claims every codec shares
    /// (`codec_props`), on lease messages.
    mod props {
        use proptest::collection::vec;
        use proptest::prelude::*;

        use super::*;
        use crate::codec_props::{check_any_bytes, check_round_trip, frame_like, lease_message};

        proptest! {
            /// Any bytes are a message, a request for more, or an error,
            /// never a panic; a message takes no more bytes than it was
            /// given and re-encodes to them, except that the lease of a
            /// Promise without one comes out zero.
            #[test]
            fn any_bytes_are_a_message_more_or_an_error(bytes in frame_like(lease_message(), 0..48, 48)) {
                check_any_bytes::<LeaseMsg>(&bytes)?;
            }

            /// Every message round-trips whatever follows it, takes exactly
            /// `encoded_len` bytes, and each strict prefix asks for more.
            #[test]
            fn every_message_round_trips_and_its_prefixes_ask_for_more(m in lease_message(), tail in vec(any::<u8>(), 0..8)) {
                check_round_trip(m, &tail)?;
            }
        }
    }
}
