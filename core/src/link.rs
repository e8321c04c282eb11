//! Peer link sessions: the sequencing of one peer connection, sans-IO.
//!
//! [`crate::peer`] says what the frames and the handshake checks are; this
//! module says in which order they may come (PROTOCOL.md, "Peer protocol"),
//! so that every runtime links its nodes the same way without holding any of
//! it. A session is one connection's state machine in quinn-proto's style:
//! the runtime feeds it the bytes it read ([`LinkDialler::handle_input`],
//! [`LinkAcceptor::handle_input`]), drains its events (`poll_event`) and writes
//! what it has to send (`poll_transmit`); it owns the socket, the timers and
//! the threads or tasks, the session owns none of them.
//!
//! * The **dialler** ([`LinkDialler`]) is the connecting side: its first bytes
//!   are our `Hello`; the answer is a `Welcome` that must pass
//!   [`Handshake::check_answer`] (the node dialled, our cluster, version and
//!   timing digest), reported as [`LinkEvent::Up`], or a `Refused`, or
//!   anything else, each reported as [`LinkEvent::Closed`] with its
//!   [`HandshakeError`]. Once up it encodes the node's frames into the
//!   caller's buffer ([`LinkDialler::encode`]), never before: a frame sent before
//!   the peer checked our handshake would reach a node that may not be in our
//!   cluster at all.
//! * The **acceptor** ([`LinkAcceptor`]) is the accepting side: its first frame
//!   must be a `Hello` that passes [`Handshake::check`]; it answers `Welcome`
//!   (and reports [`LinkEvent::Up`]) or `Refused` with the reason (and reports
//!   [`LinkEvent::Closed`]; the runtime writes the refusal, then lingers and
//!   closes). After `Welcome` it never writes again: the dialler's read
//!   returning 0 is how the dialler learns at once that the peer is gone. It
//!   reports every frame as [`LinkEvent::Frame`] tagged with the id the
//!   handshake named, never with an id a frame carries: no peer can speak for
//!   another.
//!
//! Both sessions are bounded and allocate nothing: a session holds at most
//! one partial frame ([`MAX_FRAME_BYTES`]), at most one pending event and at
//! most one pending handshake frame to write. [`LinkDialler::handle_input`] and
//! [`LinkAcceptor::handle_input`] consume bytes only up to the end of the first
//! frame they complete, so the caller feeds, drains, and feeds the rest
//! (the loop rule: after every input, drain `poll_event` until `None`). A
//! malformed frame, a protocol violation or a failed handshake ends the
//! session ([`LinkEvent::Closed`]); the dialler redials, as the protocol
//! expects of it.
//!
//! Time, as everywhere in the crate, is an argument. A session made at
//! `now` has a handshake deadline, `now` plus [`HANDSHAKE_TIMEOUT`]: the
//! runtime feeds input with the time it was read
//! ([`handle_input`](LinkDialler::handle_input)), arms one timer at
//! [`poll_timeout`](LinkDialler::poll_timeout) after draining the events, and
//! calls [`handle_timeout`](LinkDialler::handle_timeout) when it passes; a
//! handshake still pending then ends the session with
//! [`LinkError::HandshakeTimeout`]. Once the link is up there is no timer:
//! liveness of an up link is the runtime's I/O timeout.
//!
//! A runtime's loop, here with the two sides joined in memory:
//!
//! ```
//! use leasetso_core::link::{LinkAcceptor, LinkDialler, LinkEvent};
//! use leasetso_core::peer::PEER_VERSION;
//! use leasetso_core::{Handshake, Instant, NodeId, PeerFrame};
//!
//! let hs = |node| Handshake {
//!     version: PEER_VERSION,
//!     cluster_id: 1,
//!     node: NodeId(node),
//!     client_addr: None,
//!     resp_addr: None,
//!     pd_addr: None,
//!     digest: 42,
//! };
//! let now = Instant::from_millis(1);
//! let mut dialler = LinkDialler::new(hs(0), 3, NodeId(1), now);
//! let mut acceptor = LinkAcceptor::new(hs(1), 3, now);
//!
//! // Dialler → acceptor: the Hello.
//! let mut wire = Vec::new();
//! let _ = dialler.poll_transmit(&mut wire).unwrap();
//! let mut input = &wire[..];
//! while !input.is_empty() {
//!     input = &input[acceptor.handle_input(input, now)..];
//!     while let Some(event) = acceptor.poll_event() {
//!         assert!(matches!(event, LinkEvent::Up { peer: NodeId(0), .. }));
//!     }
//! }
//! // Acceptor → dialler: the Welcome.
//! let mut answer = Vec::new();
//! let _ = acceptor.poll_transmit(&mut answer).unwrap();
//! let _ = dialler.handle_input(&answer, now);
//! assert!(matches!(dialler.poll_event(), Some(LinkEvent::Up { peer: NodeId(1), .. })));
//!
//! // From now on the dialler encodes and the acceptor reports frames,
//! // tagged with the id its handshake named.
//! let mut wire = Vec::new();
//! dialler.encode(&PeerFrame::RestartQuery, &mut wire).unwrap();
//! let _ = acceptor.handle_input(&wire, now);
//! assert_eq!(
//!     acceptor.poll_event(),
//!     Some(LinkEvent::Frame { from: NodeId(0), frame: PeerFrame::RestartQuery })
//! );
//! ```

use core::net::SocketAddr;
use core::time::Duration;

use bytes::BufMut;

use crate::ballot::NodeId;
use crate::peer::{Handshake, HandshakeError, MAX_PEER_FRAME_LEN, PeerFrame};
use crate::time::Instant;
use crate::wire::{EncodeError, LEN_PREFIX, WireError};

/// The largest peer frame, length prefix included: the most bytes a session
/// buffers, and room enough for any frame [`LinkDialler::encode`] writes.
pub const MAX_FRAME_BYTES: usize = LEN_PREFIX + MAX_PEER_FRAME_LEN as usize;

/// How long a handshake may take, from the session's start
/// ([`LinkDialler::new`], [`LinkAcceptor::new`]) to the link being up:
/// a peer that connects and then says nothing (or too little) must not hold
/// a session, and on the dialler's side a redial, forever. A handshake is
/// two frames of at most [`MAX_FRAME_BYTES`] each; seconds are plenty on
/// any network a cluster runs on.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// What a session reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkEvent {
    /// The handshake passed: the link is up. The addresses are the ones the
    /// peer advertises now; they replace whatever an earlier start of it
    /// advertised (an absent one included: no hint may name an address a
    /// restarted node no longer serves).
    Up {
        /// The peer, as its handshake named it (and, on the dialler, the
        /// node dialled).
        peer: NodeId,
        /// The client address the peer advertises, for leader hints.
        client_addr: Option<SocketAddr>,
        /// The RESP address the peer advertises, for `-NOTLEADER` replies.
        resp_addr: Option<SocketAddr>,
        /// The peer's whole handshake.
        theirs: Handshake,
    },
    /// A frame from the peer (acceptor only), tagged with the link's id.
    Frame {
        /// The sender: the node the handshake named, never a frame's word.
        from: NodeId,
        /// The frame; never a handshake frame.
        frame: PeerFrame,
    },
    /// The session is over: write what `poll_transmit` still yields (a
    /// refusal), then close the connection (after a linger, if something
    /// was written). Whatever is fed afterwards is discarded.
    Closed(LinkError),
}

/// Why a session ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// The handshake failed: on the dialler the peer refused ours or its
    /// answer did not pass our check; on the acceptor we refused the peer's
    /// (the refusal is queued to write).
    #[error("peer handshake failed: {0}")]
    Handshake(#[from] HandshakeError),
    /// The peer sent bytes that are not a peer frame.
    #[error("malformed peer frame: {0}")]
    Malformed(#[from] WireError),
    /// The peer sent a handshake frame after the handshake.
    #[error("the peer sent a handshake frame after the handshake")]
    HandshakeAfterUp,
    /// The accepting side wrote after its `Welcome` (it never may: the
    /// dialler reads only to learn that the connection ended).
    #[error("the accepting side wrote after its Welcome")]
    WroteAfterWelcome,
    /// The handshake did not complete by its deadline (the session's start
    /// plus [`HANDSHAKE_TIMEOUT`]). No refusal is sent: nothing says the
    /// peer is still there to read it.
    #[error("the peer handshake did not complete within {0:?}")]
    HandshakeTimeout(Duration),
}

/// Why [`LinkDialler::encode`] did not encode a frame; the session goes on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The link is not up (the handshake is pending, or the session ended).
    #[error("the peer link is not up: frames follow the peer's Welcome")]
    NotUp,
    /// Handshake frames are the session's own to send.
    #[error("handshake frames are sent by the link session, not through it")]
    HandshakeFrame,
    /// The caller's buffer has no room; it is untouched.
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

fn is_handshake(frame: &PeerFrame) -> bool {
    matches!(frame, PeerFrame::Hello(_) | PeerFrame::Welcome(_) | PeerFrame::Refused { .. })
}

fn up(theirs: Handshake) -> LinkEvent {
    LinkEvent::Up { peer: theirs.node, client_addr: theirs.client_addr, resp_addr: theirs.resp_addr, theirs }
}

/// Hands out a session's one handshake frame (the dialler's Hello, the
/// acceptor's Welcome or Refused) to `buf`: 0 once it is gone. It is
/// cleared only after it fit, so a caller whose buffer is full (left
/// untouched, the encoders' rule) gets the same frame on its next call and
/// the peer never sees a handshake twice or not at all.
fn transmit_once(pending: &mut Option<PeerFrame>, buf: &mut impl BufMut) -> Result<usize, EncodeError> {
    let Some(frame) = *pending else { return Ok(0) };
    let n = frame.encode(buf)?;
    *pending = None;
    Ok(n)
}

/// Reassembles one frame at a time from bytes cut anywhere.
///
/// Bounded by construction: it holds the bytes of at most one frame, and a
/// frame's header is checked ([`PeerFrame::decode`] refuses an oversized
/// length, an unknown kind or a wrong body size from the first five bytes)
/// before any byte of its body is kept.
#[derive(Clone, Debug)]
struct Reassembly {
    buf: [u8; MAX_FRAME_BYTES],
    have: usize,
}

impl Reassembly {
    fn new() -> Self {
        Reassembly { buf: [0; MAX_FRAME_BYTES], have: 0 }
    }

    /// Takes bytes off the front of `bytes`, up to the end of the first
    /// frame that completes: the bytes used, and that frame (`None` if all of
    /// `bytes` went into a frame still partial). After an error the bytes
    /// are worthless; the caller ends the session.
    fn take(&mut self, bytes: &[u8]) -> (usize, Result<Option<PeerFrame>, WireError>) {
        if self.have == 0 {
            // Fast path: whole frames decode straight from the caller's bytes.
            return match PeerFrame::decode(bytes) {
                Ok(Some((frame, used))) => (used, Ok(Some(frame))),
                Ok(None) => {
                    // A valid prefix of one frame is shorter than
                    // MAX_FRAME_BYTES; `min` only keeps this panic-free.
                    let n = bytes.len().min(MAX_FRAME_BYTES);
                    self.buf[..n].copy_from_slice(&bytes[..n]);
                    self.have = n;
                    (n, Ok(None))
                }
                Err(e) => (bytes.len(), Err(e)),
            };
        }
        let mut used = 0;
        loop {
            // First up to the kind byte, so the header is checked; then up
            // to the end the (checked, so at most MAX_PEER_FRAME_LEN) length
            // declares.
            let target = if self.have < LEN_PREFIX + 1 {
                LEN_PREFIX + 1
            } else {
                let b = &self.buf;
                let len = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
                (LEN_PREFIX + len).min(MAX_FRAME_BYTES)
            };
            let n = target.saturating_sub(self.have).min(bytes.len() - used);
            self.buf[self.have..self.have + n].copy_from_slice(&bytes[used..used + n]);
            self.have += n;
            used += n;
            match PeerFrame::decode(&self.buf[..self.have]) {
                Ok(Some((frame, _))) => {
                    // `have` never passes the frame's end: the frame used it all.
                    self.have = 0;
                    return (used, Ok(Some(frame)));
                }
                // `decode` asks for more only below the target, so `n` is 0
                // only once `bytes` is used up: no spin.
                Ok(None) if used == bytes.len() || n == 0 => return (used, Ok(None)),
                Ok(None) => {}
                Err(e) => {
                    self.have = 0;
                    return (bytes.len(), Err(e));
                }
            }
        }
    }

    /// Bytes of a partial frame held.
    fn buffered(&self) -> usize {
        self.have
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DialState {
    /// Hello queued or sent; waiting for the answer.
    Answer,
    /// Welcomed by this node.
    Up(NodeId),
    /// Over.
    Closed,
}

/// The connecting side of a peer link (see the module docs).
#[derive(Clone, Debug)]
pub struct LinkDialler {
    ours: Handshake,
    nodes: u16,
    dialled: NodeId,
    state: DialState,
    /// The Hello, until `poll_transmit` hands it out.
    hello: Option<PeerFrame>,
    event: Option<LinkEvent>,
    rx: Reassembly,
    /// When the handshake fails if still pending.
    deadline: Instant,
}

impl LinkDialler {
    /// A session dialling node `dialled` of a cluster of `nodes`, as `ours`
    /// says, started at `now`: its first transmit is the Hello, and the
    /// handshake must complete by `now +` [`HANDSHAKE_TIMEOUT`]
    /// ([`LinkDialler::poll_timeout`]).
    pub fn new(ours: Handshake, nodes: u16, dialled: NodeId, now: Instant) -> Self {
        LinkDialler {
            ours,
            nodes,
            dialled,
            state: DialState::Answer,
            hello: Some(PeerFrame::Hello(ours)),
            event: None,
            rx: Reassembly::new(),
            deadline: now + HANDSHAKE_TIMEOUT,
        }
    }

    /// The node this session dials.
    pub fn dialled(&self) -> NodeId {
        self.dialled
    }

    /// Whether the handshake passed and the session has not ended.
    pub fn is_up(&self) -> bool {
        matches!(self.state, DialState::Up(_))
    }

    /// Whether the session ended.
    pub fn is_closed(&self) -> bool {
        self.state == DialState::Closed
    }

    /// Appends the Hello to `buf` once (0: nothing to send). With too little
    /// room `buf` is untouched and the Hello stays pending.
    #[must_use = "the Hello must be written to the connection"]
    pub fn poll_transmit(&mut self, buf: &mut impl BufMut) -> Result<usize, EncodeError> {
        transmit_once(&mut self.hello, buf)
    }

    /// Feeds bytes read from the connection at `now`. Returns how many were
    /// used: up to the end of the first frame that completes (the caller
    /// drains [`LinkDialler::poll_event`], then feeds the rest). Nothing is
    /// used while an event waits to be drained. The deadline is checked
    /// first ([`handle_timeout`](LinkDialler::handle_timeout)): bytes that
    /// arrive after it do not complete the handshake.
    pub fn handle_input(&mut self, bytes: &[u8], now: Instant) -> usize {
        self.handle_timeout(now);
        if self.event.is_some() {
            return 0;
        }
        match self.state {
            DialState::Closed => bytes.len(),
            DialState::Up(_) => {
                if !bytes.is_empty() {
                    self.close(LinkError::WroteAfterWelcome);
                }
                bytes.len()
            }
            DialState::Answer => {
                let (used, frame) = self.rx.take(bytes);
                match frame {
                    Ok(None) => {}
                    Ok(Some(answer)) => match self.ours.check_answer(&answer, self.nodes, self.dialled) {
                        Ok(theirs) => {
                            self.state = DialState::Up(theirs.node);
                            self.event = Some(up(theirs));
                        }
                        Err(e) => self.close(e.into()),
                    },
                    Err(e) => self.close(e.into()),
                }
                used
            }
        }
    }

    /// When [`handle_timeout`](LinkDialler::handle_timeout) is due: the
    /// handshake's deadline while it is pending; `None` once up or over.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        (self.state == DialState::Answer).then_some(self.deadline)
    }

    /// Time has come to `now`: a handshake still pending at its deadline
    /// ends the session with [`LinkError::HandshakeTimeout`].
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.event.is_none() && self.poll_timeout().is_some_and(|at| at <= now) {
            self.close(LinkError::HandshakeTimeout(HANDSHAKE_TIMEOUT));
        }
    }

    /// The next event, if any.
    #[must_use = "events must be drained after every input"]
    pub fn poll_event(&mut self) -> Option<LinkEvent> {
        self.event.take()
    }

    /// Encodes `frame` for the peer into `buf`; returns its size. Refused
    /// before the link is up and for handshake frames; with too little room
    /// `buf` is untouched ([`MAX_FRAME_BYTES`] always suffices).
    pub fn encode(&self, frame: &PeerFrame, buf: &mut impl BufMut) -> Result<usize, SendError> {
        if !self.is_up() {
            return Err(SendError::NotUp);
        }
        if is_handshake(frame) {
            return Err(SendError::HandshakeFrame);
        }
        Ok(frame.encode(buf)?)
    }

    fn close(&mut self, e: LinkError) {
        self.state = DialState::Closed;
        self.hello = None;
        self.event = Some(LinkEvent::Closed(e));
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AcceptState {
    /// Waiting for the peer's Hello.
    Hello,
    /// Welcomed the peer with this id.
    Up(NodeId),
    /// Over.
    Closed,
}

/// The accepting side of a peer link (see the module docs).
#[derive(Clone, Debug)]
pub struct LinkAcceptor {
    ours: Handshake,
    nodes: u16,
    state: AcceptState,
    /// The Welcome or Refused, until `poll_transmit` hands it out.
    answer: Option<PeerFrame>,
    event: Option<LinkEvent>,
    rx: Reassembly,
    /// When the handshake fails if still pending.
    deadline: Instant,
}

impl LinkAcceptor {
    /// A session for a connection a peer of a cluster of `nodes` opened to
    /// this node, which says `ours`, accepted at `now`: the peer's Hello must
    /// arrive by `now +` [`HANDSHAKE_TIMEOUT`] ([`LinkAcceptor::poll_timeout`]).
    pub fn new(ours: Handshake, nodes: u16, now: Instant) -> Self {
        LinkAcceptor {
            ours,
            nodes,
            state: AcceptState::Hello,
            answer: None,
            event: None,
            rx: Reassembly::new(),
            deadline: now + HANDSHAKE_TIMEOUT,
        }
    }

    /// When [`handle_timeout`](LinkAcceptor::handle_timeout) is due: the
    /// handshake's deadline while the Hello is awaited; `None` once up or
    /// over.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        (self.state == AcceptState::Hello).then_some(self.deadline)
    }

    /// Time has come to `now`: a Hello still awaited at the deadline ends
    /// the session with [`LinkError::HandshakeTimeout`], without a refusal.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.event.is_none() && self.poll_timeout().is_some_and(|at| at <= now) {
            self.close(LinkError::HandshakeTimeout(HANDSHAKE_TIMEOUT));
        }
    }

    /// The peer, once its Hello passed (and while the session lasts).
    pub fn peer(&self) -> Option<NodeId> {
        match self.state {
            AcceptState::Up(id) => Some(id),
            _ => None,
        }
    }

    /// Whether the session ended.
    pub fn is_closed(&self) -> bool {
        self.state == AcceptState::Closed
    }

    /// Bytes of a partial frame the session holds (at most [`MAX_FRAME_BYTES`]).
    pub fn buffered(&self) -> usize {
        self.rx.buffered()
    }

    /// Appends the answer to the Hello (Welcome or Refused) to `buf` once
    /// (0: nothing to send). With too little room `buf` is untouched and the
    /// answer stays pending. Nothing follows a Welcome.
    #[must_use = "the answer must be written to the connection"]
    pub fn poll_transmit(&mut self, buf: &mut impl BufMut) -> Result<usize, EncodeError> {
        transmit_once(&mut self.answer, buf)
    }

    /// Feeds bytes read from the connection at `now`. Returns how many were
    /// used: up to the end of the first frame that completes (the caller
    /// drains [`LinkAcceptor::poll_event`], then feeds the rest). Nothing is
    /// used while an event waits to be drained. The deadline is checked
    /// first ([`handle_timeout`](LinkAcceptor::handle_timeout)): a Hello that
    /// arrives after it is not answered.
    pub fn handle_input(&mut self, bytes: &[u8], now: Instant) -> usize {
        self.handle_timeout(now);
        if self.event.is_some() {
            return 0;
        }
        if self.state == AcceptState::Closed {
            return bytes.len();
        }
        let (used, frame) = self.rx.take(bytes);
        let frame = match frame {
            Ok(Some(frame)) => frame,
            Ok(None) => return used,
            // Before the handshake nothing says the sender speaks our
            // protocol at all: no refusal is sent, the connection is closed.
            Err(e) => {
                self.close(e.into());
                return used;
            }
        };
        match self.state {
            AcceptState::Hello => {
                let checked = match frame {
                    PeerFrame::Hello(theirs) => self.ours.check(&theirs, self.nodes, None).map(|()| theirs),
                    _ => Err(HandshakeError::NotHandshake),
                };
                match checked {
                    Ok(theirs) => {
                        self.state = AcceptState::Up(theirs.node);
                        self.answer = Some(PeerFrame::Welcome(self.ours));
                        self.event = Some(up(theirs));
                    }
                    Err(e) => {
                        self.close(e.into());
                        self.answer = Some(PeerFrame::Refused { reason: e.refusal(), theirs: self.ours });
                    }
                }
            }
            AcceptState::Up(from) => {
                if is_handshake(&frame) {
                    self.close(LinkError::HandshakeAfterUp);
                } else {
                    self.event = Some(LinkEvent::Frame { from, frame });
                }
            }
            AcceptState::Closed => {}
        }
        used
    }

    /// The next event, if any.
    #[must_use = "events must be drained after every input"]
    pub fn poll_event(&mut self) -> Option<LinkEvent> {
        self.event.take()
    }

    fn close(&mut self, e: LinkError) {
        self.state = AcceptState::Closed;
        self.answer = None;
        self.event = Some(LinkEvent::Closed(e));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ballot::Ballot;
    use crate::lease::LeaseMsg;
    use crate::peer::{PEER_VERSION, Refusal};
    use crate::store::{StoreOp, StoreRequest};
    use proptest::prelude::*;

    const NODES: u16 = 3;
    /// The time of the tests that are not about the handshake deadline.
    const T0: Instant = Instant::from_millis(1);

    fn hs(node: u16) -> Handshake {
        Handshake {
            version: PEER_VERSION,
            cluster_id: 7,
            node: NodeId(node),
            client_addr: Some("127.0.0.1:7400".parse().unwrap()),
            resp_addr: None,
            pd_addr: None,
            digest: 0xdead_beef,
        }
    }

    fn bytes_of(frames: &[PeerFrame]) -> Vec<u8> {
        let mut v = Vec::new();
        for f in frames {
            f.encode(&mut v).unwrap();
        }
        v
    }

    fn lease(counter: u64, node: u16) -> PeerFrame {
        PeerFrame::Lease(LeaseMsg::Prepare { ballot: Ballot::new(counter, 1, NodeId(node)) })
    }

    /// The two sessions' input side, for one feeding loop.
    trait Session {
        fn handle_input(&mut self, bytes: &[u8]) -> usize;
        fn poll_event(&mut self) -> Option<LinkEvent>;
    }

    impl Session for LinkAcceptor {
        fn handle_input(&mut self, bytes: &[u8]) -> usize {
            LinkAcceptor::handle_input(self, bytes, T0)
        }
        fn poll_event(&mut self) -> Option<LinkEvent> {
            LinkAcceptor::poll_event(self)
        }
    }

    impl Session for LinkDialler {
        fn handle_input(&mut self, bytes: &[u8]) -> usize {
            LinkDialler::handle_input(self, bytes, T0)
        }
        fn poll_event(&mut self) -> Option<LinkEvent> {
            LinkDialler::poll_event(self)
        }
    }

    /// Feeds `bytes` in pieces of `step` bytes, draining after every input,
    /// as a runtime does; returns every event in order. Each input either
    /// uses bytes or yields an event.
    fn feed(s: &mut impl Session, bytes: &[u8], step: usize) -> Vec<LinkEvent> {
        let mut events = Vec::new();
        for chunk in bytes.chunks(step.max(1)) {
            let mut rest = chunk;
            while !rest.is_empty() {
                let used = s.handle_input(rest);
                rest = &rest[used..];
                let before = events.len();
                while let Some(e) = s.poll_event() {
                    events.push(e);
                }
                assert!(used > 0 || events.len() > before, "no progress");
            }
        }
        events
    }

    #[test]
    fn a_handshake_not_done_by_its_deadline_fails_the_link() {
        let t0 = Instant::from_millis(1_000);
        let deadline = t0 + HANDSHAKE_TIMEOUT;
        let timed_out = Some(LinkEvent::Closed(LinkError::HandshakeTimeout(HANDSHAKE_TIMEOUT)));
        // A dialler whose Hello is never answered.
        let mut d = LinkDialler::new(hs(0), NODES, NodeId(1), t0);
        assert_eq!(d.poll_timeout(), Some(deadline));
        let _ = d.poll_transmit(&mut Vec::new()).unwrap();
        d.handle_timeout(Instant::from_nanos(deadline.as_nanos() - 1));
        assert_eq!(d.poll_event(), None);
        d.handle_timeout(deadline);
        assert_eq!(d.poll_event(), timed_out);
        assert!(d.is_closed());
        assert_eq!(d.poll_timeout(), None);
        // An acceptor fed half a Hello: a Welcome that comes late answers nothing.
        let hello = bytes_of(&[PeerFrame::Hello(hs(0))]);
        let mut a = LinkAcceptor::new(hs(1), NODES, t0);
        assert_eq!(a.handle_input(&hello[..3], t0), 3);
        assert_eq!(a.poll_event(), None);
        assert_eq!(a.handle_input(&hello[3..], deadline), 0);
        assert_eq!(a.poll_event(), timed_out);
        assert!(a.is_closed());
        assert!(transmit_acceptor(&mut a).is_empty(), "a refusal after a timeout");
        // In time, the link comes up and the timer is gone on both sides.
        let mut d = LinkDialler::new(hs(0), NODES, NodeId(1), t0);
        let mut a = LinkAcceptor::new(hs(1), NODES, t0);
        let mut wire = Vec::new();
        let _ = d.poll_transmit(&mut wire).unwrap();
        assert_eq!(a.handle_input(&wire, t0), wire.len());
        assert!(matches!(a.poll_event(), Some(LinkEvent::Up { .. })));
        assert_eq!(a.poll_timeout(), None);
        let answer = transmit_acceptor(&mut a);
        assert_eq!(d.handle_input(&answer, Instant::from_nanos(deadline.as_nanos() - 1)), answer.len());
        assert!(matches!(d.poll_event(), Some(LinkEvent::Up { .. })));
        assert_eq!(d.poll_timeout(), None);
        d.handle_timeout(Instant::NEVER);
        assert_eq!(d.poll_event(), None);
    }

    fn transmit_acceptor(s: &mut LinkAcceptor) -> Vec<u8> {
        let mut out = Vec::new();
        let _ = s.poll_transmit(&mut out).unwrap();
        out
    }

    #[test]
    fn a_dialler_and_an_acceptor_link_up_and_frames_flow() {
        let mut d = LinkDialler::new(hs(0), NODES, NodeId(1), T0);
        let mut a = LinkAcceptor::new(hs(1), NODES, T0);
        let mut wire = Vec::new();
        assert_eq!(d.encode(&lease(1, 0), &mut wire), Err(SendError::NotUp));
        assert!(wire.is_empty());
        let n = d.poll_transmit(&mut wire).unwrap();
        assert_eq!(n, wire.len());
        assert_eq!(PeerFrame::decode(&wire), Ok(Some((PeerFrame::Hello(hs(0)), n))));
        // The Hello goes out once.
        assert_eq!(d.poll_transmit(&mut Vec::new()), Ok(0));

        let events = feed(&mut a, &wire, wire.len());
        assert_eq!(
            events,
            [LinkEvent::Up {
                peer: NodeId(0),
                client_addr: hs(0).client_addr,
                resp_addr: None,
                theirs: hs(0)
            }]
        );
        assert_eq!(a.peer(), Some(NodeId(0)));
        let welcome = transmit_acceptor(&mut a);
        assert_eq!(PeerFrame::decode(&welcome), Ok(Some((PeerFrame::Welcome(hs(1)), welcome.len()))));
        assert!(transmit_acceptor(&mut a).is_empty(), "nothing follows the Welcome");

        assert!(!d.is_up());
        let events = feed(&mut d, &welcome, 1);
        assert!(matches!(events[..], [LinkEvent::Up { peer: NodeId(1), theirs, .. }] if theirs == hs(1)));
        assert!(d.is_up());

        let frames = [
            lease(4, 0),
            PeerFrame::Store(StoreRequest { id: 9, op: StoreOp::ReadPrimary }),
            PeerFrame::RestartQuery,
            // A message naming another node's ballot is still the link's.
            lease(5, 2),
        ];
        let mut wire = Vec::new();
        for f in &frames {
            let n = d.encode(f, &mut wire).unwrap();
            assert_eq!(n, f.encoded_len());
        }
        let events = feed(&mut a, &wire, wire.len());
        let expected: Vec<_> =
            frames.iter().map(|&frame| LinkEvent::Frame { from: NodeId(0), frame }).collect();
        assert_eq!(events, expected);
        assert!(transmit_acceptor(&mut a).is_empty());
    }

    #[test]
    fn the_dialler_refuses_handshake_frames_and_leaves_small_buffers_untouched() {
        let mut d = LinkDialler::new(hs(0), NODES, NodeId(1), T0);
        let _ = feed(&mut d, &bytes_of(&[PeerFrame::Welcome(hs(1))]), 100);
        let mut wire = Vec::new();
        for f in [PeerFrame::Hello(hs(0)), PeerFrame::Welcome(hs(0))] {
            assert_eq!(d.encode(&f, &mut wire), Err(SendError::HandshakeFrame));
        }
        let mut small = [7u8; 8];
        let mut buf = &mut small[..];
        let f = PeerFrame::RestartInfo { highest: Ballot::new(1, 1, NodeId(0)) };
        assert_eq!(
            d.encode(&f, &mut buf),
            Err(SendError::Encode(EncodeError::BufferTooSmall { required: f.encoded_len() }))
        );
        assert_eq!(small, [7u8; 8]);
        // The Hello stays pending while the buffer is too small.
        let mut d = LinkDialler::new(hs(0), NODES, NodeId(1), T0);
        let mut small = [0u8; 8];
        assert!(d.poll_transmit(&mut &mut small[..]).is_err());
        assert!(d.poll_transmit(&mut Vec::new()).unwrap() > 0);
    }

    /// The acceptor's answer, like the dialler's Hello, waits out a full
    /// buffer (left untouched) and then goes out exactly once.
    #[test]
    fn the_acceptors_answer_stays_pending_while_the_buffer_is_too_small() {
        let mut a = LinkAcceptor::new(hs(1), NODES, T0);
        assert_eq!(a.poll_transmit(&mut Vec::new()), Ok(0), "nothing to answer before a Hello");
        let _ = feed(&mut a, &bytes_of(&[PeerFrame::Hello(hs(0))]), 64);
        let mut small = [5u8; 8];
        let welcome = PeerFrame::Welcome(hs(1));
        assert_eq!(
            a.poll_transmit(&mut &mut small[..]),
            Err(EncodeError::BufferTooSmall { required: welcome.encoded_len() })
        );
        assert_eq!(small, [5u8; 8]);
        assert_eq!(transmit_acceptor(&mut a), bytes_of(&[welcome]));
        assert_eq!(a.poll_transmit(&mut Vec::new()), Ok(0), "the Welcome goes out once");
    }

    #[test]
    fn the_acceptor_refuses_each_mismatch_with_its_reason() {
        let cases = [
            (Handshake { version: 9, ..hs(0) }, Refusal::Version),
            (Handshake { cluster_id: 8, ..hs(0) }, Refusal::Cluster),
            (hs(1), Refusal::Node),     // our own id
            (hs(NODES), Refusal::Node), // not a member
            (Handshake { digest: 1, ..hs(0) }, Refusal::Digest),
        ];
        for (theirs, reason) in cases {
            let mut a = LinkAcceptor::new(hs(1), NODES, T0);
            let events = feed(&mut a, &bytes_of(&[PeerFrame::Hello(theirs)]), 3);
            let [LinkEvent::Closed(LinkError::Handshake(e))] = events[..] else { panic!("{events:?}") };
            assert_eq!(e.refusal(), reason, "{theirs:?}");
            assert!(a.is_closed() && a.peer().is_none());
            let out = transmit_acceptor(&mut a);
            assert_eq!(
                PeerFrame::decode(&out),
                Ok(Some((PeerFrame::Refused { reason, theirs: hs(1) }, out.len()))),
                "{theirs:?}"
            );
            // Whatever follows is discarded: no event, nothing to write.
            let more = bytes_of(&[lease(1, 0)]);
            assert_eq!(a.handle_input(&more, T0), more.len());
            assert_eq!(a.poll_event(), None);
            assert!(transmit_acceptor(&mut a).is_empty());
        }
        // A first frame that is no Hello is refused as NotHello.
        let mut a = LinkAcceptor::new(hs(1), NODES, T0);
        let events = feed(&mut a, &bytes_of(&[lease(1, 0)]), 1);
        assert_eq!(events, [LinkEvent::Closed(LinkError::Handshake(HandshakeError::NotHandshake))]);
        let out = transmit_acceptor(&mut a);
        assert!(matches!(
            PeerFrame::decode(&out),
            Ok(Some((PeerFrame::Refused { reason: Refusal::NotHello, .. }, _)))
        ));
    }

    #[test]
    fn garbage_before_the_hello_closes_without_an_answer() {
        let mut hello = bytes_of(&[PeerFrame::Hello(hs(0))]);
        hello[5] = b'X';
        let mut a = LinkAcceptor::new(hs(1), NODES, T0);
        assert_eq!(feed(&mut a, &hello, 7), [LinkEvent::Closed(LinkError::Malformed(WireError::BadMagic))]);
        assert!(transmit_acceptor(&mut a).is_empty());
        // An oversized length is refused from its prefix, before any body.
        let mut a = LinkAcceptor::new(hs(1), NODES, T0);
        let used = a.handle_input(&[0, 0, 1, 0], T0);
        assert_eq!(used, 4);
        assert!(matches!(
            a.poll_event(),
            Some(LinkEvent::Closed(LinkError::Malformed(WireError::FrameTooLarge { .. })))
        ));
    }

    #[test]
    fn the_dialler_reports_refusals_and_bad_answers() {
        let cases = [
            (PeerFrame::Refused { reason: Refusal::Digest, theirs: hs(1) }, None),
            (PeerFrame::Welcome(hs(2)), Some(Refusal::Node)), // not the node dialled
            (PeerFrame::Welcome(Handshake { cluster_id: 8, ..hs(1) }), Some(Refusal::Cluster)),
            (PeerFrame::Welcome(Handshake { digest: 2, ..hs(1) }), Some(Refusal::Digest)),
            (PeerFrame::Hello(hs(1)), Some(Refusal::NotHello)),
            (lease(1, 1), Some(Refusal::NotHello)),
        ];
        for (answer, ours) in cases {
            let mut d = LinkDialler::new(hs(0), NODES, NodeId(1), T0);
            let _ = d.poll_transmit(&mut Vec::new()).unwrap();
            let events = feed(&mut d, &bytes_of(&[answer]), 2);
            let [LinkEvent::Closed(LinkError::Handshake(e))] = events[..] else {
                panic!("{answer:?}: {events:?}")
            };
            match ours {
                None => assert_eq!(e, HandshakeError::Refused { reason: Refusal::Digest, theirs: hs(1) }),
                Some(r) => assert_eq!(e.refusal(), r, "{answer:?}"),
            }
            assert!(d.is_closed() && !d.is_up());
            assert_eq!(d.encode(&lease(1, 0), &mut Vec::new()), Err(SendError::NotUp));
        }
        let mut d = LinkDialler::new(hs(0), NODES, NodeId(1), T0);
        assert_eq!(
            feed(&mut d, b"HTTP/1.1 400 Bad Request\r\n", 100),
            [LinkEvent::Closed(LinkError::Malformed(WireError::FrameTooLarge {
                len: 0x4854_5450,
                max: MAX_PEER_FRAME_LEN
            }))]
        );
    }

    #[test]
    fn bytes_after_the_welcome_end_the_dialler() {
        let mut d = LinkDialler::new(hs(0), NODES, NodeId(1), T0);
        let wire = bytes_of(&[PeerFrame::Welcome(hs(1)), PeerFrame::RestartQuery]);
        let events = feed(&mut d, &wire, wire.len());
        assert!(matches!(events[0], LinkEvent::Up { peer: NodeId(1), .. }));
        assert_eq!(events[1..], [LinkEvent::Closed(LinkError::WroteAfterWelcome)]);
        assert!(d.is_closed());
    }

    #[test]
    fn a_handshake_frame_after_up_ends_the_acceptor() {
        let mut a = LinkAcceptor::new(hs(1), NODES, T0);
        let wire = bytes_of(&[PeerFrame::Hello(hs(2)), lease(1, 2), PeerFrame::Hello(hs(0)), lease(2, 0)]);
        let events = feed(&mut a, &wire, 5);
        assert!(matches!(events[0], LinkEvent::Up { peer: NodeId(2), .. }));
        assert_eq!(events[1], LinkEvent::Frame { from: NodeId(2), frame: lease(1, 2) });
        assert_eq!(events[2..], [LinkEvent::Closed(LinkError::HandshakeAfterUp)]);
    }

    #[test]
    fn input_waits_while_an_event_is_undrained() {
        let mut a = LinkAcceptor::new(hs(1), NODES, T0);
        let wire = bytes_of(&[PeerFrame::Hello(hs(0)), lease(1, 0)]);
        let used = a.handle_input(&wire, T0);
        assert!(used < wire.len());
        assert_eq!(a.handle_input(&wire[used..], T0), 0, "an event is pending");
        assert!(matches!(a.poll_event(), Some(LinkEvent::Up { .. })));
        assert_eq!(a.handle_input(&wire[used..], T0), wire.len() - used);
        assert_eq!(a.poll_event(), Some(LinkEvent::Frame { from: NodeId(0), frame: lease(1, 0) }));
    }

    fn any_frame() -> impl Strategy<Value = PeerFrame> {
        (any::<u64>(), any::<u64>(), 0u16..NODES, 0u8..4).prop_map(|(c, id, n, k)| match k {
            0 => lease(c, n),
            1 => PeerFrame::Store(StoreRequest {
                id,
                op: StoreOp::Load { fence: Ballot::new(c, 2, NodeId(n)), check_primary: c % 2 == 0 },
            }),
            2 => PeerFrame::RestartInfo { highest: Ballot::new(c, id, NodeId(n)) },
            _ => PeerFrame::RestartQuery,
        })
    }

    proptest! {
        /// However the bytes are cut, the acceptor reports the same frames,
        /// each tagged with the handshake's id.
        #[test]
        fn any_cut_gives_the_same_frames(frames in proptest::collection::vec(any_frame(), 0..20), step in 1usize..80) {
            let mut wire = bytes_of(&[PeerFrame::Hello(hs(2))]);
            wire.extend(bytes_of(&frames));
            let mut whole = LinkAcceptor::new(hs(0), NODES, T0);
            let mut cut = LinkAcceptor::new(hs(0), NODES, T0);
            let a = feed(&mut whole, &wire, wire.len());
            let b = feed(&mut cut, &wire, step);
            prop_assert_eq!(&a, &b);
            prop_assert_eq!(a.len(), frames.len() + 1);
            for (e, f) in a[1..].iter().zip(&frames) {
                prop_assert_eq!(*e, LinkEvent::Frame { from: NodeId(2), frame: *f });
            }
        }

        /// Any bytes: no panic, progress on every call, one closing at most
        /// and nothing after it, a bounded buffer, and byte-at-a-time feeding
        /// sees what whole feeding sees.
        #[test]
        fn any_bytes_into_an_acceptor(prefix_hello in any::<bool>(), bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let mut wire = if prefix_hello { bytes_of(&[PeerFrame::Hello(hs(1))]) } else { Vec::new() };
            wire.extend(&bytes);
            let mut whole = LinkAcceptor::new(hs(0), NODES, T0);
            let mut bytewise = LinkAcceptor::new(hs(0), NODES, T0);
            let a = feed(&mut whole, &wire, wire.len());
            let b = feed(&mut bytewise, &wire, 1);
            prop_assert_eq!(&a, &b);
            prop_assert!(whole.buffered() <= MAX_FRAME_BYTES);
            let closed = a.iter().position(|e| matches!(e, LinkEvent::Closed(_)));
            if let Some(i) = closed {
                prop_assert_eq!(i, a.len() - 1);
            }
            for e in &a {
                if let LinkEvent::Frame { from, frame } = e {
                    prop_assert_eq!(*from, NodeId(1));
                    prop_assert!(!is_handshake(frame));
                }
            }
        }

        #[test]
        fn any_bytes_into_a_dialler(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut whole = LinkDialler::new(hs(0), NODES, NodeId(1), T0);
            let mut bytewise = LinkDialler::new(hs(0), NODES, NodeId(1), T0);
            let a = feed(&mut whole, &bytes, bytes.len());
            let b = feed(&mut bytewise, &bytes, 1);
            prop_assert_eq!(&a, &b);
            prop_assert!(a.len() <= 2);
            prop_assert_eq!(whole.is_up(), matches!(a.last(), Some(LinkEvent::Up { .. })));
        }
    }
}
