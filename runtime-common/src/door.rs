//! A door's connection apart from its socket: the core's session for that
//! door, the kit's backend for it, and the connection's buffers.
//!
//! The client door speaks the native protocol ([`ServerConn`]), the RESP
//! door Redis's ([`RespConn`]); both are a [`Door`] here, so each runtime
//! has one connection loop for every door: step the door, write its out
//! buffer, then do what [`Next`] says (read more, write again, run an
//! operator's request on the store, or linger and close). The buffers are
//! allocated once per connection with the sizes the sessions ask for, so the
//! per-request path allocates nothing.

use leasetso_core::conn::{FRAME_ROOM, OUT_CAPACITY, READ_BUF};
use leasetso_core::resp::{MAX_COMMAND_LEN, OUT_LIMIT, RespConn, RespServed, ServerInfo};
use leasetso_core::{ErrorCode, Frame, Instant, LeaderHint, Served, ServerConn, StoreOp, StoreReply};

use crate::io::InBuf;
use crate::kit::{Kit, NativeBackend, RespDoor};
use crate::limits::Slot;
use crate::quiet;
use crate::stats::OpenGuard;
use crate::tls::Identity;

/// Read buffer of a RESP connection: many pipelined commands per read.
const RESP_READ_BUF: usize = 16 * 1024;

/// What a connection loop does after [`Door::step`], once it has written
/// [`Door::out`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Read more into [`Door::input`] (at least [`Door::room`] bytes free).
    Read,
    /// Step again: the out buffer was full.
    Flush,
    /// Run this operator's request on the store thread, then report the
    /// answer (`None`: none in time) with [`Door::admin_done`].
    Admin {
        /// The request's id.
        id: u64,
        /// The operation.
        op: StoreOp,
    },
    /// Linger, then close: the last reply is in the out buffer.
    Close,
}

/// One connection of a door, apart from its socket.
pub trait Door {
    /// Answers what has been read, at `now`, into the out buffer.
    fn step(&mut self, now: Instant) -> Next;
    /// Reports the answer to the operator's request [`Next::Admin`] asked for.
    fn admin_done(&mut self, id: u64, reply: Option<StoreReply>);
    /// The answers to write, emptied by the runtime once written.
    fn out(&mut self) -> &mut Vec<u8>;
    /// The read buffer.
    fn input(&mut self) -> &mut InBuf;
    /// The room a read needs: any input this long is a whole request or an error.
    fn room(&self) -> usize;
    /// The peer's certificate was verified and names `identity` (TLS only):
    /// what it may do on this connection follows from it.
    fn authenticated(&mut self, identity: &Identity) {
        let _ = identity;
    }
    /// The client closed its side (possibly mid-request: nothing more is
    /// answered). What must still reach it before the socket closes goes to
    /// the out buffer: under TLS a close_notify, so that the client reads a
    /// clean end, as it reads EOF from a plaintext door.
    fn finish(&mut self) {}
    /// Whether the connection is still in its handshake (TLS, `Hello`, the
    /// Redis door's `AUTH`): the runtime closes it if it stays there past
    /// the deadline (H2, [`crate::limits`]).
    fn handshaking(&self) -> bool {
        false
    }
}

/// A door chosen at run time (plaintext or behind TLS) is a door.
impl<D: Door + ?Sized> Door for Box<D> {
    fn step(&mut self, now: Instant) -> Next {
        (**self).step(now)
    }

    fn admin_done(&mut self, id: u64, reply: Option<StoreReply>) {
        (**self).admin_done(id, reply);
    }

    fn out(&mut self) -> &mut Vec<u8> {
        (**self).out()
    }

    fn input(&mut self) -> &mut InBuf {
        (**self).input()
    }

    fn room(&self) -> usize {
        (**self).room()
    }

    fn authenticated(&mut self, identity: &Identity) {
        (**self).authenticated(identity);
    }

    fn finish(&mut self) {
        (**self).finish();
    }

    fn handshaking(&self) -> bool {
        (**self).handshaking()
    }
}

/// A door holding its connection's place under the cap (H1): the place is
/// given back when the connection's door is dropped, however it ends.
#[derive(Debug)]
pub struct Held<'a, D> {
    door: D,
    _slot: Slot<'a>,
    _open: Option<OpenGuard<'a>>,
}

impl<'a, D: Door> Held<'a, D> {
    /// `door`, holding `slot`, counted open in `open` (a served one).
    pub fn new(door: D, slot: Slot<'a>, open: Option<&'a std::sync::atomic::AtomicU64>) -> Self {
        Held { door, _slot: slot, _open: open.map(OpenGuard::new) }
    }
}

impl<D: Door> Door for Held<'_, D> {
    fn step(&mut self, now: Instant) -> Next {
        self.door.step(now)
    }

    fn admin_done(&mut self, id: u64, reply: Option<StoreReply>) {
        self.door.admin_done(id, reply);
    }

    fn out(&mut self) -> &mut Vec<u8> {
        self.door.out()
    }

    fn input(&mut self) -> &mut InBuf {
        self.door.input()
    }

    fn room(&self) -> usize {
        self.door.room()
    }

    fn authenticated(&mut self, identity: &Identity) {
        self.door.authenticated(identity);
    }

    fn finish(&mut self) {
        self.door.finish();
    }

    fn handshaking(&self) -> bool {
        self.door.handshaking()
    }
}

/// A connection refused at the cap (H1): its door's refusal goes out at
/// once (after TLS's handshake, behind TLS), then it closes. It reads
/// nothing: what the client sent is dropped by the runtime's linger.
#[derive(Debug)]
pub struct Refused {
    out: Vec<u8>,
    input: InBuf,
}

impl Refused {
    /// The native door's refusal: a fatal `TooManyConnections`.
    pub fn native() -> Self {
        let frame =
            Frame::Error { id: 0, code: ErrorCode::TooManyConnections, leader: LeaderHint::default() };
        let mut out = Vec::with_capacity(frame.encoded_len());
        // A `Vec` grows: encoding into it cannot fail.
        let _ = frame.encode(&mut out);
        Refused { out, input: InBuf::new(64) }
    }

    /// The Redis door's refusal, as Redis words it at its `maxclients`.
    pub fn resp() -> Self {
        Refused { out: b"-ERR max clients reached\r\n".to_vec(), input: InBuf::new(64) }
    }
}

impl Door for Refused {
    fn step(&mut self, _: Instant) -> Next {
        Next::Close
    }

    fn admin_done(&mut self, _: u64, _: Option<StoreReply>) {}

    fn out(&mut self) -> &mut Vec<u8> {
        &mut self.out
    }

    fn input(&mut self) -> &mut InBuf {
        &mut self.input
    }

    fn room(&self) -> usize {
        64
    }
}

/// A client-door connection: the core's [`ServerConn`] served by the kit.
#[derive(Debug)]
pub struct ClientDoor<'a> {
    backend: NativeBackend<'a>,
    session: ServerConn,
    out: Vec<u8>,
    input: InBuf,
    /// Whether this connection may change the primary registration: yes in
    /// plaintext (loopback, or `--insecure` on purpose), with TLS only for a
    /// certificate of the admin role.
    admin: bool,
}

impl<'a> ClientDoor<'a> {
    /// A fresh connection to `kit`'s node.
    pub fn new(kit: &'a Kit) -> Self {
        ClientDoor {
            backend: NativeBackend::new(kit),
            session: ServerConn::new(kit.cluster_id, kit.node_id, kit.nodes),
            out: Vec::with_capacity(OUT_CAPACITY),
            input: InBuf::new(READ_BUF),
            admin: true,
        }
    }

    /// Why this connection may not run `op` now, if it may not: clearing
    /// the registration needs the admin role, and is refused while the
    /// registered node serves (this node knows the lease holder), so a
    /// deferring node never campaigns against a primary for nothing.
    fn forbidden(&self, op: &StoreOp) -> Option<&'static str> {
        let StoreOp::ClearPrimary { id, .. } = op else { return None };
        if !self.admin {
            return Some("a client certificate without the admin role");
        }
        let serving = self.backend.kit().node.status().is_some_and(|s| s.leader == Some(*id));
        serving.then_some("the registered primary holds the lease")
    }

    /// Answers what was read, operator requests that may not run included.
    fn answer(&mut self, now: Instant) -> Next {
        loop {
            let (used, served) =
                self.session.handle(self.input.pending(), now, &mut self.backend, &mut self.out);
            self.input.consume(used);
            return match served {
                Served::Read => Next::Read,
                Served::Flush => Next::Flush,
                Served::Admin { id, op } => {
                    if let Some(why) = self.forbidden(&op) {
                        crate::warn_quiet!(quiet::ADMIN_REFUSED, ?op, why, "refusing an operator request");
                        // It is the pending request: it cannot be refused.
                        let _ = self.session.admin_forbidden(id, &mut self.backend, &mut self.out);
                        continue;
                    }
                    self.backend.kit().admin_note(&op);
                    Next::Admin { id, op }
                }
                Served::Close(fatal) => {
                    tracing::debug!(%fatal, "closing the connection");
                    Next::Close
                }
            };
        }
    }
}

impl Door for ClientDoor<'_> {
    fn step(&mut self, now: Instant) -> Next {
        let next = self.answer(now);
        self.backend.flush(now);
        next
    }

    fn admin_done(&mut self, id: u64, reply: Option<StoreReply>) {
        // The session asked for exactly this id: it cannot refuse it.
        let _ = self.session.admin_done(id, reply, &mut self.backend, &mut self.out);
    }

    fn out(&mut self) -> &mut Vec<u8> {
        &mut self.out
    }

    fn input(&mut self) -> &mut InBuf {
        &mut self.input
    }

    fn room(&self) -> usize {
        FRAME_ROOM
    }

    fn authenticated(&mut self, identity: &Identity) {
        self.admin = identity.is_admin();
    }

    fn handshaking(&self) -> bool {
        !self.session.is_greeted() && !self.session.is_closed()
    }
}

/// A RESP-door connection: the core's [`RespConn`] served by the kit.
#[derive(Debug)]
pub struct RespConnDoor<'a> {
    backend: RespDoor<'a>,
    session: RespConn,
    out: Vec<u8>,
    input: InBuf,
}

impl<'a> RespConnDoor<'a> {
    /// Connection number `id` (what `CLIENT ID` reports) to `kit`'s node.
    pub fn new(kit: &'a Kit, id: u64) -> Self {
        RespConnDoor {
            backend: RespDoor::new(kit),
            session: RespConn::new(
                id,
                ServerInfo { node: kit.node_id, nodes: kit.nodes },
                kit.resp_password.clone(),
            ),
            out: Vec::with_capacity(OUT_LIMIT),
            input: InBuf::new(RESP_READ_BUF),
        }
    }
}

impl Door for RespConnDoor<'_> {
    fn step(&mut self, now: Instant) -> Next {
        let (used, served) = self.session.handle(self.input.pending(), now, &mut self.backend, &mut self.out);
        self.input.consume(used);
        self.backend.flush(now);
        match served {
            RespServed::Read => Next::Read,
            RespServed::Flush => Next::Flush,
            RespServed::Close(why) => {
                tracing::debug!(id = self.session.session().id(), %why, "closing the RESP connection");
                Next::Close
            }
        }
    }

    fn admin_done(&mut self, _: u64, _: Option<StoreReply>) {}

    fn out(&mut self) -> &mut Vec<u8> {
        &mut self.out
    }

    fn input(&mut self) -> &mut InBuf {
        &mut self.input
    }

    fn room(&self) -> usize {
        MAX_COMMAND_LEN
    }

    fn handshaking(&self) -> bool {
        !self.session.session().is_authenticated()
    }
}
