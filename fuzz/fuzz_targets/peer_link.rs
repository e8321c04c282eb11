//! The peer link sessions (`leasetso_core::link::{LinkDialler, LinkAcceptor}`) on
//! any bytes from the peer, cut into any reads. The input's choices pick the
//! side, whether a valid handshake from the peer comes first (so the fuzzer
//! reaches the link once it is up), and the read sizes.
//!
//! Properties: no panic; `handle_input` consumes no more than it is given,
//! nothing while an event is undrained, and something otherwise; the
//! acceptor buffers at most one frame; and however the bytes are cut, the
//! events are exactly those the whole byte string means when decoded frame
//! by frame (`PeerFrame::decode`, `Handshake::check`): on the acceptor `Up`
//! for an accepted Hello (answered Welcome) or `Closed` with the refusal
//! written, then every frame tagged with the handshake's node, then
//! `Closed` for a handshake frame or malformed bytes; on the dialler `Up`
//! for a Welcome of the node dialled, then `Closed` at the first byte after
//! it. Nothing is written but the one handshake frame, and the dialler
//! encodes frames only once up.
#![no_main]

use leasetso_core::lease::LeaseMsg;
use leasetso_core::link::MAX_FRAME_BYTES;
use leasetso_core::peer::PEER_VERSION;
use leasetso_core::{
    Ballot, Handshake, HandshakeError, Instant, LinkAcceptor, LinkDialler, LinkError, LinkEvent, NodeId,
    PeerFrame, WireError,
};
use leasetso_fuzz::Choices;
use libfuzzer_sys::fuzz_target;

const NODES: u16 = 3;
/// One time for every input: the handshake deadline is not what this target is about.
const NOW: Instant = Instant::from_millis(1);

fn handshake(node: u16) -> Handshake {
    Handshake {
        version: PEER_VERSION,
        cluster_id: 7,
        node: NodeId(node),
        client_addr: Some(([127, 0, 0, 1], 7400 + node).into()),
        resp_addr: None,
        pd_addr: Some(([127, 0, 0, 1], 2379 + node).into()),
        digest: 0xdead_beef,
    }
}

/// The frames of `bytes`, each with the offset where it ends, and the error
/// that stops them, if any.
fn decode_all(mut bytes: &[u8]) -> (Vec<(PeerFrame, usize)>, Option<WireError>) {
    let mut frames = Vec::new();
    let mut end = 0;
    loop {
        match PeerFrame::decode(bytes) {
            Ok(Some((frame, n))) => {
                end += n;
                frames.push((frame, end));
                bytes = &bytes[n..];
            }
            Ok(None) => return (frames, None),
            Err(e) => return (frames, Some(e)),
        }
    }
}

fn is_handshake(frame: &PeerFrame) -> bool {
    matches!(frame, PeerFrame::Hello(_) | PeerFrame::Welcome(_) | PeerFrame::Refused { .. })
}

fn up(theirs: Handshake) -> LinkEvent {
    LinkEvent::Up { peer: theirs.node, client_addr: theirs.client_addr, resp_addr: theirs.resp_addr, theirs }
}

/// What the acceptor must report for `stream`, and whether it refuses.
fn acceptor_expects(ours: &Handshake, stream: &[u8]) -> (Vec<LinkEvent>, bool) {
    let (frames, err) = decode_all(stream);
    let mut events = Vec::new();
    let mut frames = frames.into_iter();
    let Some((first, _)) = frames.next() else {
        events.extend(err.map(|e| LinkEvent::Closed(LinkError::Malformed(e))));
        return (events, false);
    };
    let theirs = match first {
        PeerFrame::Hello(theirs) => ours.check(&theirs, NODES, None).map(|()| theirs),
        _ => Err(HandshakeError::NotHandshake),
    };
    let theirs = match theirs {
        Ok(theirs) => theirs,
        Err(e) => return (vec![LinkEvent::Closed(LinkError::Handshake(e))], true),
    };
    events.push(up(theirs));
    for (frame, _) in frames {
        if is_handshake(&frame) {
            events.push(LinkEvent::Closed(LinkError::HandshakeAfterUp));
            return (events, false);
        }
        events.push(LinkEvent::Frame { from: theirs.node, frame });
    }
    events.extend(err.map(|e| LinkEvent::Closed(LinkError::Malformed(e))));
    (events, false)
}

/// What the dialler of `dialled` must report for `stream`.
fn dialler_expects(ours: &Handshake, dialled: NodeId, stream: &[u8]) -> Vec<LinkEvent> {
    let (frames, err) = decode_all(stream);
    let Some(&(first, end)) = frames.first() else {
        return err.map(|e| LinkEvent::Closed(LinkError::Malformed(e))).into_iter().collect();
    };
    match ours.check_answer(&first, NODES, dialled) {
        Err(e) => vec![LinkEvent::Closed(LinkError::Handshake(e))],
        Ok(theirs) if stream.len() > end => vec![up(theirs), LinkEvent::Closed(LinkError::WroteAfterWelcome)],
        Ok(theirs) => vec![up(theirs)],
    }
}

/// A frame a node sends over a link that is up.
fn lease_frame() -> PeerFrame {
    PeerFrame::Lease(LeaseMsg::Prepare { ballot: Ballot::new(1, 1, NodeId(0)) })
}

fuzz_target!(|data: &[u8]| {
    let (mut choices, raw) = Choices::split(data);
    let mode = choices.byte();
    let dialler_side = mode & 1 == 1;
    let ours = handshake(0);
    let peer = NodeId(1 + u16::from(mode >> 2) % 2);

    // A valid handshake first, if chosen.
    let mut stream = Vec::with_capacity(raw.len() + MAX_FRAME_BYTES);
    if mode & 2 == 2 {
        let first = if dialler_side {
            PeerFrame::Welcome(handshake(peer.0))
        } else {
            PeerFrame::Hello(handshake(peer.0))
        };
        first.encode(&mut stream).expect("a Vec grows");
    }
    stream.extend_from_slice(raw);

    let mut events = Vec::new();
    let mut written = Vec::new();
    let mut tx = [0u8; MAX_FRAME_BYTES];
    let mut at = 0;
    if dialler_side {
        let mut link = LinkDialler::new(ours, NODES, peer, NOW);
        assert_eq!(link.encode(&lease_frame(), &mut &mut tx[..]), Err(leasetso_core::link::SendError::NotUp));
        let n = link.poll_transmit(&mut &mut tx[..]).expect("room for a frame");
        written.extend_from_slice(&tx[..n]);
        assert_eq!(PeerFrame::decode(&written), Ok(Some((PeerFrame::Hello(ours), n))));
        while at < stream.len() {
            let chunk = &stream[at..(at + choices.chunk(80)).min(stream.len())];
            let used = link.handle_input(chunk, NOW);
            assert!(used > 0 && used <= chunk.len(), "used {used} of {}", chunk.len());
            at += used;
            while let Some(event) = link.poll_event() {
                if matches!(event, LinkEvent::Up { .. }) {
                    assert!(link.is_up());
                    assert_eq!(
                        link.encode(&PeerFrame::Hello(ours), &mut &mut tx[..]),
                        Err(leasetso_core::link::SendError::HandshakeFrame)
                    );
                    let n = link.encode(&lease_frame(), &mut &mut tx[..]).expect("up, with room");
                    assert_eq!(PeerFrame::decode(&tx[..n]), Ok(Some((lease_frame(), n))));
                }
                events.push(event);
            }
            assert_eq!(link.poll_transmit(&mut &mut tx[..]), Ok(0), "the dialler writes only its Hello");
        }
        assert_eq!(events, dialler_expects(&ours, peer, &stream));
        assert_eq!(link.is_closed(), matches!(events.last(), Some(LinkEvent::Closed(_))));
    } else {
        let mut link = LinkAcceptor::new(ours, NODES, NOW);
        let (expected, refuses) = acceptor_expects(&ours, &stream);
        while at < stream.len() {
            let chunk = &stream[at..(at + choices.chunk(80)).min(stream.len())];
            let used = link.handle_input(chunk, NOW);
            assert!(used > 0 && used <= chunk.len(), "used {used} of {}", chunk.len());
            assert!(link.buffered() < MAX_FRAME_BYTES);
            at += used;
            if at < stream.len() && link.buffered() == 0 {
                // An event pending (a frame just completed) holds all input
                // until it is drained; otherwise the next input is taken.
                let mut probe = link.clone();
                let took = probe.handle_input(&stream[at..], NOW);
                let pending = link.clone().poll_event().is_some();
                assert!(!pending || took == 0, "consumed {took} with an event pending");
            }
            events.extend(link.poll_event());
            assert_eq!(link.poll_event(), None, "one event per input at most");
            let n = link.poll_transmit(&mut &mut tx[..]).expect("room for a frame");
            written.extend_from_slice(&tx[..n]);
            if let Some(LinkEvent::Up { peer: got, .. }) = events.last() {
                assert_eq!(link.peer(), Some(*got));
            }
        }
        assert_eq!(events, expected);
        assert_eq!(link.is_closed(), matches!(events.last(), Some(LinkEvent::Closed(_))));
        // What it wrote: nothing, its Welcome once up, or its refusal.
        let answer = match events.first() {
            Some(LinkEvent::Up { .. }) => Some(PeerFrame::Welcome(ours)),
            Some(LinkEvent::Closed(LinkError::Handshake(e))) if refuses => {
                Some(PeerFrame::Refused { reason: e.refusal(), theirs: ours })
            }
            _ => None,
        };
        match answer {
            Some(frame) => assert_eq!(PeerFrame::decode(&written), Ok(Some((frame, written.len())))),
            None => assert!(written.is_empty(), "wrote {written:?}"),
        }
    }
});
