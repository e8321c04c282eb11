//! Peer links: the transport between the nodes of a cluster.
//!
//! Every node dials every other node once and sends on that connection
//! everything it has for it (lease messages, store requests for its replica,
//! replies to its store requests); what it receives comes in on the
//! connections the others dialled. So each direction of a pair is one TCP
//! stream with one writer, and no frame waits behind a reply.
//!
//! The sequencing of a connection (Hello, Welcome or Refused, then frames
//! tagged with the handshake's id) is the core's: [`LinkDialler`] and
//! [`LinkAcceptor`] sessions (`leasetso_core::link`). This module moves their
//! bytes, keeps sockets, threads, queues and redial timers, and routes the
//! frames the sessions report to the driver and the store thread.
//!
//! * **Outgoing** ([`Link`]): one thread per peer owns the connection. It
//!   connects, writes the dialler session's Hello and feeds it the answer
//!   until the link is up, then writes what the driver queued, encoded by the
//!   session. The queue is bounded: when a peer is slow or dead, what does
//!   not fit is dropped (the lease protocol tolerates loss, a store round
//!   times out), so a dead peer costs a constant amount of memory and the
//!   driver never blocks on it. While the link is down, queued frames are
//!   discarded (they would be stale by the time it is up) and it reconnects
//!   with jittered exponential backoff.
//! * **Incoming**: an acceptor thread and one reader thread per connection,
//!   which feeds an acceptor session what it reads and writes the Welcome or
//!   the Refused it answers (lingering before the close after a refusal).
//!   The frames the session reports carry the id the handshake named, never
//!   anything a frame says. A malformed frame ends the session and drops the
//!   connection (the peer redials).

use std::io::{self, Read};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant as StdInstant};

use leasetso_core::link::MAX_FRAME_BYTES;
use leasetso_core::{Ballot, Handshake, LinkAcceptor, LinkDialler, LinkEvent, NodeId, PeerFrame};

use crate::io::{Conn, linger_close};
use crate::server::door::loopback;
use crate::server::driver::Input;
use crate::server::store::Job;
use leasetso_runtime_common::directory::{IO_TIMEOUT, LINK_QUEUE, READ_BUF, WRITE_BATCH};
use leasetso_runtime_common::io::InBuf;
use leasetso_runtime_common::store::Links;
use leasetso_runtime_common::tls::{ServerTls, check_link, dial_link};
use leasetso_runtime_common::{
    Clock, DialError, Incoming, PeerDirectory, Redial, Route, lock, report_closed, route,
};

/// Room for one whole peer frame.
const FRAME_ROOM: usize = MAX_FRAME_BYTES;

/// What the driver asks a link's thread.
pub(crate) enum Cmd {
    /// Send this frame.
    Frame(PeerFrame),
    /// Answer once everything queued before has been written (or dropped).
    Flush(mpsc::Sender<()>),
    /// The watcher of connection number `.0` saw the peer close it: redial
    /// (if it is still the current one).
    Dead(u64),
}

/// The state every peer thread shares.
pub(crate) struct PeerNet {
    nodes: u16,
    ours: Handshake,
    peers: Vec<SocketAddr>,
    links: Vec<Option<LinkHandle>>,
    /// Advertised addresses, up flags and seen ballots (the part of the
    /// links' state both runtimes share).
    pub(crate) dir: Arc<PeerDirectory>,
    /// The live incoming connection of each peer, to close it at shutdown or
    /// when the peer dials again.
    incoming: Incoming<TcpStream>,
    clock: Clock,
    /// mTLS on every link (`--certs-dir`), or plaintext.
    tls: Option<Arc<ServerTls>>,
    stopping: AtomicBool,
    listen_addr: SocketAddr,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// The driver's end of one outgoing link.
struct LinkHandle {
    tx: SyncSender<Cmd>,
}

/// Where decoded frames go.
#[derive(Clone)]
pub(crate) struct Routes {
    pub(crate) driver: SyncSender<Input>,
    pub(crate) store: SyncSender<Job>,
}

impl PeerNet {
    /// Binds the peer listener and starts the acceptor and one link thread
    /// per peer. `peers[i]` is node `i`'s peer address (this node's own too).
    pub(crate) fn start(
        me: NodeId,
        peers: Vec<SocketAddr>,
        ours: Handshake,
        routes: Routes,
        seed: u64,
        tls: Option<Arc<ServerTls>>,
    ) -> io::Result<Arc<PeerNet>> {
        let listener = TcpListener::bind(peers[usize::from(me.0)])?;
        let listen_addr = listener.local_addr()?;
        let nodes = peers.len() as u16;
        let mut links = Vec::with_capacity(peers.len());
        let mut receivers = Vec::with_capacity(peers.len());
        for i in 0..nodes {
            if i == me.0 {
                links.push(None);
                receivers.push(None);
                continue;
            }
            let (tx, rx) = mpsc::sync_channel(LINK_QUEUE);
            links.push(Some(LinkHandle { tx }));
            receivers.push(Some(rx));
        }
        let net = Arc::new(PeerNet {
            nodes,
            ours,
            peers,
            links,
            dir: Arc::new(PeerDirectory::new(me, nodes)),
            incoming: Incoming::new(nodes),
            tls,
            clock: Clock::new(),
            stopping: AtomicBool::new(false),
            listen_addr,
            threads: Mutex::new(Vec::new()),
        });
        let mut threads = Vec::new();
        for (i, receiver) in receivers.into_iter().enumerate() {
            let Some(rx) = receiver else { continue };
            let to = NodeId(i as u16);
            let redial = Redial::new(to, net.peers[i], seed);
            let link = Link { net: Arc::clone(&net), to, rx, redial, conn: 0 };
            threads.push(
                thread::Builder::new().name(format!("leasetso-link-{}", i + 1)).spawn(move || link.run())?,
            );
        }
        let acceptor = Arc::clone(&net);
        threads.push(
            thread::Builder::new()
                .name("leasetso-peer-accept".into())
                .spawn(move || acceptor.accept(listener, routes))?,
        );
        *lock(&net.threads) = threads;
        Ok(net)
    }

    /// The address the peer listener is bound to.
    pub(crate) fn listen_addr(&self) -> SocketAddr {
        self.listen_addr
    }

    /// Waits until every link has written what was queued before this call,
    /// at most `timeout`: the Release of a shutdown reaches the peers.
    pub(crate) fn flush(&self, timeout: Duration) {
        let deadline = StdInstant::now() + timeout;
        let mut acks = Vec::new();
        for (i, link) in self.links.iter().enumerate() {
            let Some(link) = link else { continue };
            if !self.dir.is_up(NodeId(i as u16)) {
                continue;
            }
            let (tx, rx) = mpsc::channel();
            if link.tx.try_send(Cmd::Flush(tx)).is_ok() {
                acks.push(rx);
            }
        }
        for rx in acks {
            let left = deadline.saturating_duration_since(StdInstant::now());
            let _ = rx.recv_timeout(left);
        }
    }

    /// Stops every peer thread and closes every peer connection.
    pub(crate) fn shutdown(&self) {
        if self.stopping.swap(true, Ordering::SeqCst) {
            return;
        }
        // Wakes every link thread at once to see the flag (a word no
        // connection of theirs answers to).
        for link in self.links.iter().flatten() {
            let _ = link.tx.try_send(Cmd::Dead(u64::MAX));
        }
        // Wakes the acceptor's blocked `accept`.
        let _ = TcpStream::connect_timeout(&loopback(self.listen_addr), IO_TIMEOUT);
        for stream in self.incoming.drain() {
            let _ = stream.shutdown(Shutdown::Both);
        }
        let threads = std::mem::take(&mut *lock(&self.threads));
        for t in threads {
            let _ = t.join();
        }
    }

    fn accept(self: Arc<Self>, listener: TcpListener, routes: Routes) {
        let mut readers: Vec<JoinHandle<()>> = Vec::new();
        for stream in listener.incoming() {
            if self.stopping.load(Ordering::SeqCst) {
                break;
            }
            let stream = match stream {
                Ok(s) => s,
                Err(e) => {
                    leasetso_runtime_common::warn_quiet!(leasetso_runtime_common::quiet::ACCEPT_FAILED, error = %e, "peer accept failed");
                    thread::sleep(Duration::from_millis(50));
                    continue;
                }
            };
            readers.retain(|r| !r.is_finished());
            let net = Arc::clone(&self);
            let routes = routes.clone();
            match thread::Builder::new()
                .name("leasetso-peer-read".into())
                .spawn(move || net.read(stream, &routes))
            {
                Ok(handle) => readers.push(handle),
                Err(e) => tracing::warn!(error = %e, "cannot start a peer reader thread"),
            }
        }
        for stream in self.incoming.drain() {
            let _ = stream.shutdown(Shutdown::Both);
        }
        for r in readers {
            let _ = r.join();
        }
    }

    /// Serves one incoming connection through the core's [`LinkAcceptor`]
    /// session: the handshake (by its deadline), then frames until the peer
    /// leaves, breaks the protocol, or this node stops.
    fn read(&self, stream: TcpStream, routes: &Routes) {
        let remote = stream.peer_addr().ok();
        let _ = stream.set_nodelay(true);
        let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
        let mut session = LinkAcceptor::new(self.ours, self.nodes, self.clock.now());
        let tls = match self.tls.as_ref().map(|tls| tls.accept_peer()).transpose() {
            Ok(tls) => tls,
            Err(e) => return tracing::warn!(?remote, error = %e, "cannot start TLS on a peer connection"),
        };
        let Ok(clone) = stream.try_clone() else { return };
        let mut conn = Conn::new(clone, tls);
        let mut buf = InBuf::new(READ_BUF);
        // This connection's number once the peer is up, to unregister it.
        let mut up: Option<(NodeId, u64)> = None;
        'conn: loop {
            while !buf.pending().is_empty() {
                let used = session.handle_input(buf.pending(), self.clock.now());
                buf.consume(used);
                if !self.on_events(&stream, &mut conn, &mut session, remote, &mut up, routes) {
                    break 'conn;
                }
            }
            // Until the handshake is done, a read waits no longer than its deadline.
            if let Some(deadline) = session.poll_timeout() {
                let left = deadline.saturating_since(self.clock.now()).max(Duration::from_millis(1));
                let _ = stream.set_read_timeout(Some(left));
            }
            let read = conn.read(buf.spare(FRAME_ROOM));
            if let Ok(n) = read {
                buf.filled(n);
            }
            match read {
                Ok(0) => {
                    if up.is_none() {
                        tracing::debug!(?remote, "peer connection closed before its handshake");
                    }
                    break;
                }
                Ok(_) => {}
                Err(e)
                    if up.is_none()
                        && matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) =>
                {
                    session.handle_timeout(self.clock.now());
                    if !self.on_events(&stream, &mut conn, &mut session, remote, &mut up, routes) {
                        break;
                    }
                }
                Err(e) if up.is_none() && self.tls.is_some() => {
                    leasetso_runtime_common::warn_quiet_cause!(leasetso_runtime_common::quiet::PEER_REFUSED, &e.to_string(), ?remote, error = %e, "refusing a peer: its TLS failed");
                    break;
                }
                Err(e) => {
                    tracing::debug!(peer = ?up.map(|(p, _)| p.0 + 1), ?remote, error = %e, "peer connection lost");
                    break;
                }
            }
        }
        if let Some((peer, conn)) = up {
            self.incoming.unregister(peer, conn);
        }
    }

    /// Acts on what the session reports; false once the connection is to end.
    fn on_events(
        &self,
        stream: &TcpStream,
        conn: &mut Conn,
        session: &mut LinkAcceptor,
        remote: Option<SocketAddr>,
        up: &mut Option<(NodeId, u64)>,
        routes: &Routes,
    ) -> bool {
        while let Some(event) = session.poll_event() {
            let go_on = match event {
                LinkEvent::Up { peer, .. } if self.refused(conn, peer, remote) => false,
                LinkEvent::Up { peer, theirs, .. } => {
                    match self.welcome(stream, conn, session, (peer, remote), &theirs) {
                        Some(conn) => {
                            *up = Some((peer, conn));
                            tracing::debug!(peer = peer.0 + 1, ?remote, "peer connected");
                            true
                        }
                        None => false,
                    }
                }
                LinkEvent::Frame { from, frame } => self.route(from, frame, routes),
                LinkEvent::Closed(e) => {
                    report_closed(remote, up.map(|(p, _)| p), &e);
                    // A refusal, if one is queued, is written and lingers.
                    if write_answer(conn, session).is_ok_and(|n| n > 0) {
                        linger_close(stream);
                    }
                    false
                }
            };
            if !go_on {
                return false;
            }
        }
        true
    }

    /// The peer passed the handshake: registers the connection, unless
    /// another process holds the id (H5: refused, the operator told),
    /// records the addresses it advertises now (they replace what an
    /// earlier start of it said, an absent one included) and writes the
    /// Welcome. `None`: the connection is to be dropped.
    fn welcome(
        &self,
        stream: &TcpStream,
        conn: &mut Conn,
        session: &mut LinkAcceptor,
        (peer, remote): (NodeId, Option<SocketAddr>),
        theirs: &Handshake,
    ) -> Option<u64> {
        let (id, old) =
            self.incoming.admit(&self.dir, peer, stream.try_clone().ok()?, theirs.client_addr, remote)?;
        if let Some(old) = old {
            let _ = old.shutdown(Shutdown::Both);
        }
        self.dir.advertised(peer, theirs);
        if write_answer(conn, session).is_err() {
            self.incoming.unregister(peer, id);
            return None;
        }
        let _ = stream.set_read_timeout(None);
        (!self.stopping.load(Ordering::SeqCst)).then_some(id)
    }

    /// With TLS, whether the peer's certificate does not name the node its
    /// handshake claims (logged once, with the remote address): the link's
    /// id is the certificate's, never a frame's.
    fn refused(&self, conn: &Conn, claimed: NodeId, remote: Option<SocketAddr>) -> bool {
        let Some(tls) = &self.tls else { return false };
        match tls.check_peer(conn.identity(), claimed) {
            Ok(()) => false,
            Err(why) => {
                leasetso_runtime_common::warn_quiet_cause!(
                    leasetso_runtime_common::quiet::PEER_REFUSED,
                    &why,
                    ?remote,
                    "refusing a peer: {why}"
                );
                true
            }
        }
    }

    /// Hands one frame of `from` on ([`route`]); false when the link is
    /// to close or the node is shutting down.
    fn route(&self, from: NodeId, frame: PeerFrame, routes: &Routes) -> bool {
        match route(&self.dir, from, frame) {
            Route::Driver(input) => routes.driver.send(input).is_ok(),
            Route::Store(job) => !matches!(routes.store.try_send(job), Err(TrySendError::Disconnected(_))),
            Route::Close => false,
        }
    }
}

/// The links as the store thread and the driver reach them.
impl Links for PeerNet {
    /// Queues a frame for `to`; drops it if the link's queue is full.
    fn send(&self, to: NodeId, frame: PeerFrame) {
        let Some(Some(link)) = self.links.get(usize::from(to.0)) else { return };
        match link.tx.try_send(Cmd::Frame(frame)) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => {}
            Err(TrySendError::Full(_)) => tracing::trace!(to = to.0 + 1, "peer queue full; frame dropped"),
        }
    }

    fn seen(&self, id: NodeId) -> Ballot {
        self.dir.seen(id)
    }
}

/// Writes what the acceptor has to send (its Welcome or Refused); returns
/// the bytes written.
fn write_answer(conn: &mut Conn, session: &mut LinkAcceptor) -> io::Result<usize> {
    let mut buf = [0u8; MAX_FRAME_BYTES];
    let mut slice = &mut buf[..];
    // A handshake frame fits MAX_FRAME_BYTES (MAX_PEER_FRAME_LEN bounds it).
    let n = session.poll_transmit(&mut slice).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    conn.write_all(&buf[..n])?;
    Ok(n)
}

/// One outgoing link's thread.
struct Link {
    net: Arc<PeerNet>,
    to: NodeId,
    rx: Receiver<Cmd>,
    redial: Redial,
    /// Connections made so far; the current one's number.
    conn: u64,
}

impl Link {
    fn run(mut self) {
        while !self.net.stopping.load(Ordering::SeqCst) {
            match self.connect(self.redial.addr()) {
                Ok((mut conn, session)) => {
                    self.redial.up();
                    self.net.dir.set_up(self.to, true);
                    self.conn += 1;
                    let watcher = self.watch(conn.tcp());
                    let result = self.write_loop(&mut conn, &session);
                    self.net.dir.set_up(self.to, false);
                    let _ = conn.tcp().shutdown(Shutdown::Both);
                    if let Some(watcher) = watcher {
                        let _ = watcher.join();
                    }
                    match result {
                        Ok(()) => return, // Stopping.
                        Err(e) => self.redial.down(&e),
                    }
                }
                Err(e) => {
                    let pause = self.redial.failed(&e);
                    if !self.idle(pause) {
                        return;
                    }
                }
            }
        }
    }

    /// Starts the link's watcher: the accepting side never writes after its
    /// Welcome, so the first thing a read returns is the connection's end (a
    /// peer that restarted or died). Without it an idle link would look up
    /// until a write failed, and the frames of that write would be lost; the
    /// watcher shuts the socket and wakes the writer to redial at once.
    fn watch(&self, stream: &TcpStream) -> Option<JoinHandle<()>> {
        let mut watched = stream.try_clone().ok()?;
        let _ = watched.set_read_timeout(None);
        let net = Arc::clone(&self.net);
        let to = self.to;
        let conn = self.conn;
        thread::Builder::new()
            .name(format!("leasetso-watch-{}", to.0 + 1))
            .spawn(move || {
                let mut byte = [0u8; 1];
                // Whatever a read returns (end, error, or bytes the peer
                // should never send), the connection is over.
                let _ = watched.read(&mut byte);
                let _ = watched.shutdown(Shutdown::Both);
                if let Some(Some(link)) = net.links.get(usize::from(to.0)) {
                    let _ = link.tx.try_send(Cmd::Dead(conn));
                }
            })
            .ok()
    }

    /// While the link is down: discards what the driver queues (stale by the
    /// time the link is up), answers flushes at once, for `pause`. Returns
    /// false when the node stops.
    fn idle(&mut self, pause: Duration) -> bool {
        let until = StdInstant::now() + pause;
        loop {
            if self.net.stopping.load(Ordering::SeqCst) {
                return false;
            }
            let left = until.saturating_duration_since(StdInstant::now());
            if left.is_zero() {
                return true;
            }
            match self.rx.recv_timeout(left.min(Duration::from_millis(100))) {
                Ok(Cmd::Flush(ack)) => {
                    let _ = ack.send(());
                }
                Ok(Cmd::Frame(_) | Cmd::Dead(_)) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return false,
            }
        }
    }

    /// Dials the peer and runs the core's [`LinkDialler`] session through the
    /// handshake; returns the connection and the session, up.
    fn connect(&mut self, addr: SocketAddr) -> Result<(Conn, LinkDialler), DialError> {
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        let mut conn = Conn::new(stream, dial_link(self.net.tls.as_deref(), addr.ip())?);
        let mut session = LinkDialler::new(self.net.ours, self.net.nodes, self.to, self.net.clock.now());
        let mut buf = [0u8; MAX_FRAME_BYTES];
        let mut slice = &mut buf[..];
        // The Hello fits MAX_FRAME_BYTES (MAX_PEER_FRAME_LEN bounds it).
        let n = session.poll_transmit(&mut slice).map_err(io::Error::other)?;
        conn.write_all(&buf[..n])?;
        while !session.is_up() {
            let read = conn.read(&mut buf)?;
            if read == 0 {
                let eof = io::Error::new(io::ErrorKind::UnexpectedEof, "closed during the handshake");
                return Err(eof.into());
            }
            let mut rest = &buf[..read];
            while !rest.is_empty() {
                rest = &rest[session.handle_input(rest, self.net.clock.now())..];
                while let Some(event) = session.poll_event() {
                    match event {
                        LinkEvent::Up { theirs, .. } => {
                            check_link(self.net.tls.as_deref(), conn.identity(), self.to)
                                .map_err(io::Error::other)?;
                            self.net.dir.advertised(self.to, &theirs);
                            self.net.dir.dialled(self.to, theirs.client_addr);
                        }
                        LinkEvent::Closed(e) => return Err(e.into()),
                        // A dialler reports no frames.
                        LinkEvent::Frame { .. } => {}
                    }
                }
            }
        }
        Ok((conn, session))
    }

    /// Writes queued frames until the connection fails (`Err`) or the node
    /// stops (`Ok`). Frames that queued up meanwhile go out in one write.
    fn write_loop(&mut self, conn: &mut Conn, session: &LinkDialler) -> io::Result<()> {
        let mut out: Vec<u8> = Vec::with_capacity(WRITE_BATCH + FRAME_ROOM);
        let mut acks: Vec<mpsc::Sender<()>> = Vec::new();
        loop {
            if self.net.stopping.load(Ordering::SeqCst) {
                return Ok(());
            }
            let first = match self.rx.recv_timeout(Duration::from_millis(200)) {
                Ok(cmd) => cmd,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return Ok(()),
            };
            let mut next = Some(first);
            while let Some(cmd) = next {
                match cmd {
                    // `out` is a Vec and grows, and the session is up:
                    // only a handshake frame, which the driver never
                    // queues, could be refused.
                    Cmd::Frame(frame) => {
                        if let Err(e) = session.encode(&frame, &mut out) {
                            tracing::warn!(peer = self.to.0 + 1, error = %e, "peer frame not sent");
                        }
                    }
                    Cmd::Flush(ack) => acks.push(ack),
                    // A late word from an earlier connection's watcher.
                    Cmd::Dead(conn) if conn != self.conn => {}
                    Cmd::Dead(_) => {
                        for ack in acks.drain(..) {
                            let _ = ack.send(());
                        }
                        return Err(io::Error::new(
                            io::ErrorKind::ConnectionReset,
                            "the peer closed the link",
                        ));
                    }
                }
                next = if out.len() < WRITE_BATCH { self.rx.try_recv().ok() } else { None };
            }
            if !out.is_empty() {
                conn.write_all(&out)?;
                out.clear();
            }
            for ack in acks.drain(..) {
                let _ = ack.send(());
            }
        }
    }
}
