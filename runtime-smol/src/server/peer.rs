//! Peer links on async sockets: the transport between the nodes of a cluster.
//!
//! Every node dials every other node once and sends on that connection
//! everything it has for it (lease messages, store requests for its replica,
//! replies to its store requests); what it receives comes in on the
//! connections the others dialled. So each direction of a pair is one TCP
//! stream with one writer, and no frame waits behind a reply.
//!
//! Which frame may come when is the core's: the link sessions
//! ([`LinkDialler`], [`LinkAcceptor`]) check the handshakes, tag frames with the id
//! the handshake named and end a connection that breaks the protocol; the
//! record of the ballots each peer used is the core's [`Seen`]. This module
//! owns sockets, tasks, queues and timers.
//!
//! * **Outgoing**: one task per peer owns the connection: it dials, runs the
//!   [`LinkDialler`] session to the Welcome, then writes what the driver queued. The queue is bounded: what does not fit is dropped (the
//!   lease protocol tolerates loss, a store round times out), so a dead peer
//!   costs constant memory and the driver never waits for it. The accepting
//!   side never writes after its Welcome, so the same task also reads the
//!   socket: a read that returns is the peer closing, and the link redials at
//!   once instead of losing its next batch to a dead socket.
//! * **Incoming**: an acceptor task and one reader task per connection,
//!   feeding a [`LinkAcceptor`] session: it answers `Welcome` or `Refused`, and
//!   from then on reports every frame tagged with the id the handshake
//!   named, never with anything a frame says; the reader routes them.
//!
//! Every task runs on the server's internal executor and ends when it drops.

use std::io;
use std::net::{Shutdown, SocketAddr};
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_executor::Executor;
use async_net::{TcpListener, TcpStream};
use futures_lite::{AsyncReadExt, future};
use leasetso_core::conn::{LINGER, LINGER_BYTES};
use leasetso_core::link::{LinkAcceptor, LinkDialler, LinkEvent, MAX_FRAME_BYTES};
use leasetso_core::{Ballot, Handshake, NodeId, PeerFrame};

use crate::io::{Conn, linger_close};
use crate::server::driver::Input;
use crate::server::store::Job;
use leasetso_runtime_common::directory::{IO_TIMEOUT, LINK_QUEUE, READ_BUF, WRITE_BATCH};
use leasetso_runtime_common::store::Links;
use leasetso_runtime_common::tls::{ServerTls, check_link, dial_link};
use leasetso_runtime_common::{
    Clock, DialError, Incoming, PeerDirectory, Redial, Route, report_closed, route,
};

/// What the driver asks a link's task.
enum Cmd {
    /// Send this frame.
    Frame(PeerFrame),
    /// Answer once everything queued before has been written (or dropped).
    Flush(async_channel::Sender<()>),
}

/// The driver's end of one outgoing link.
struct LinkHandle {
    tx: async_channel::Sender<Cmd>,
    rx: async_channel::Receiver<Cmd>,
}

/// What the peer tasks share.
pub(crate) struct PeerNet {
    me: NodeId,
    nodes: u16,
    ours: Handshake,
    peers: Vec<SocketAddr>,
    listen_addr: SocketAddr,
    seed: u64,
    links: Vec<Option<LinkHandle>>,
    /// Advertised addresses, up flags and seen ballots (the part of the
    /// links' state both runtimes share).
    pub(crate) dir: Arc<PeerDirectory>,
    /// The live incoming connection of each peer (a connection number and
    /// the stream), to close it when the peer dials again.
    incoming: Incoming<TcpStream>,
    clock: Clock,
    /// mTLS on every link (`--certs-dir`), or plaintext.
    tls: Option<Arc<ServerTls>>,
}

/// Where an incoming connection's frames go.
#[derive(Clone)]
struct Routes {
    driver: async_channel::Sender<Input>,
    store: async_channel::Sender<Job>,
}

impl PeerNet {
    /// The links' state; nothing runs until [`PeerNet::start`].
    pub(crate) fn new(
        me: NodeId,
        peers: Vec<SocketAddr>,
        listen_addr: SocketAddr,
        ours: Handshake,
        seed: u64,
        tls: Option<Arc<ServerTls>>,
    ) -> Arc<PeerNet> {
        let nodes = peers.len() as u16;
        let links = (0..nodes)
            .map(|i| {
                (i != me.0).then(|| {
                    let (tx, rx) = async_channel::bounded(LINK_QUEUE);
                    LinkHandle { tx, rx }
                })
            })
            .collect();
        Arc::new(PeerNet {
            me,
            nodes,
            ours,
            peers,
            listen_addr,
            seed,
            links,
            dir: Arc::new(PeerDirectory::new(me, nodes)),
            incoming: Incoming::new(nodes),
            tls,
            clock: Clock::new(),
        })
    }

    /// Spawns the acceptor and one link task per peer on `ex`.
    pub(crate) fn start(
        self: &Arc<Self>,
        ex: &Arc<Executor<'static>>,
        listener: TcpListener,
        driver: async_channel::Sender<Input>,
        store: async_channel::Sender<Job>,
    ) {
        for i in 0..self.nodes {
            if i == self.me.0 {
                continue;
            }
            let redial = Redial::new(NodeId(i), self.peers[usize::from(i)], self.seed);
            ex.spawn(Arc::clone(self).link(NodeId(i), redial)).detach();
        }
        let routes = Routes { driver, store };
        // Weak: a task holding its own executor would keep it (and every
        // task and socket on it) alive after `run` returns.
        ex.spawn(Arc::clone(self).accept(Arc::downgrade(ex), listener, routes)).detach();
    }

    /// The address the peer listener is bound to.
    pub(crate) fn listen_addr(&self) -> SocketAddr {
        self.listen_addr
    }

    /// Closes the incoming connections still registered, once the tasks are
    /// gone (the handle outlives them).
    pub(crate) fn close(&self) {
        for stream in self.incoming.drain() {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    /// Waits until every link that is up has written what was queued before
    /// this call, at most `timeout`: the Release of a shutdown reaches the peers.
    pub(crate) async fn flush(&self, timeout: Duration) {
        let mut acks = Vec::new();
        for (i, link) in self.links.iter().enumerate() {
            let Some(link) = link else { continue };
            if !self.dir.is_up(NodeId(i as u16)) {
                continue;
            }
            let (tx, rx) = async_channel::bounded(1);
            if link.tx.try_send(Cmd::Flush(tx)).is_ok() {
                acks.push(rx);
            }
        }
        let all = async {
            for rx in &acks {
                let _ = rx.recv().await;
            }
        };
        future::or(all, async {
            async_io::Timer::after(timeout).await;
        })
        .await;
    }

    async fn accept(self: Arc<Self>, ex: Weak<Executor<'static>>, listener: TcpListener, routes: Routes) {
        loop {
            let stream = match listener.accept().await {
                Ok((s, _)) => s,
                Err(e) => {
                    leasetso_runtime_common::warn_quiet!(leasetso_runtime_common::quiet::ACCEPT_FAILED, error = %e, "peer accept failed");
                    async_io::Timer::after(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Some(ex) = ex.upgrade() else { return };
            let net = Arc::clone(&self);
            let routes = routes.clone();
            ex.spawn(async move { net.read(stream, &routes).await }).detach();
        }
    }

    /// Serves one incoming connection through a [`LinkAcceptor`] session:
    /// the handshake (by its deadline), then frames until the peer leaves or
    /// breaks the protocol.
    async fn read(&self, stream: TcpStream, routes: &Routes) {
        let remote = stream.peer_addr().ok();
        let _ = stream.set_nodelay(true);
        let tls = match self.tls.as_ref().map(|tls| tls.accept_peer()).transpose() {
            Ok(tls) => tls,
            Err(e) => return tracing::warn!(?remote, error = %e, "cannot start TLS on a peer connection"),
        };
        let mut link = Conn::new(stream, tls);
        let mut session = LinkAcceptor::new(self.ours, self.nodes, self.clock.now());
        let mut buf = vec![0u8; READ_BUF];
        let mut conn = None;
        'conn: loop {
            // Until the handshake is done, a read waits no longer than its deadline.
            let read = async { Some(link.read(&mut buf).await) };
            let n = match session.poll_timeout() {
                Some(deadline) => {
                    let left = deadline.saturating_since(self.clock.now());
                    future::or(read, async {
                        async_io::Timer::after(left).await;
                        None
                    })
                    .await
                }
                None => read.await,
            };
            let input = match n {
                Some(Ok(0)) => break,
                Some(Ok(n)) => &buf[..n],
                Some(Err(e)) if conn.is_none() && self.tls.is_some() => {
                    leasetso_runtime_common::warn_quiet_cause!(leasetso_runtime_common::quiet::PEER_REFUSED, &e.to_string(), ?remote, error = %e, "refusing a peer: its TLS failed");
                    break;
                }
                Some(Err(e)) => {
                    tracing::debug!(?remote, error = %e, "peer connection lost");
                    break;
                }
                None => {
                    session.handle_timeout(self.clock.now());
                    &[][..]
                }
            };
            let mut input = input;
            loop {
                let used = session.handle_input(input, self.clock.now());
                input = &input[used..];
                let mut evented = false;
                while let Some(event) = session.poll_event() {
                    evented = true;
                    match event {
                        LinkEvent::Up { peer, theirs, .. } => {
                            // With TLS the link's id is the certificate's: a
                            // handshake naming another node is refused.
                            if let Some(Err(why)) =
                                self.tls.as_ref().map(|t| t.check_peer(link.identity(), peer))
                            {
                                leasetso_runtime_common::warn_quiet_cause!(
                                    leasetso_runtime_common::quiet::PEER_REFUSED,
                                    &why,
                                    ?remote,
                                    "refusing a peer: {why}"
                                );
                                break 'conn;
                            }
                            // H5: one process per id.
                            let Some((id, old)) = self.incoming.admit(
                                &self.dir,
                                peer,
                                link.stream.clone(),
                                theirs.client_addr,
                                remote,
                            ) else {
                                break 'conn;
                            };
                            if let Some(old) = old {
                                let _ = old.shutdown(Shutdown::Both);
                            }
                            conn = Some((peer, id));
                            // What the peer says now replaces what an
                            // earlier start of it said, an absent address included.
                            self.dir.advertised(peer, &theirs);
                            if write_answer(&mut link, &mut session).await.is_err() {
                                break 'conn;
                            }
                            tracing::debug!(peer = peer.0 + 1, ?remote, "peer connected");
                        }
                        LinkEvent::Frame { from, frame } => {
                            if !self.route(from, frame, routes).await {
                                break 'conn; // The node is shutting down.
                            }
                        }
                        LinkEvent::Closed(e) => {
                            report_closed(remote, conn.map(|(p, _)| p), &e);
                            // A refusal, if one is queued, is written and lingers.
                            if matches!(write_answer(&mut link, &mut session).await, Ok(true)) {
                                linger_close(&mut link.stream, LINGER, LINGER_BYTES).await;
                            }
                            break 'conn;
                        }
                    }
                }
                if input.is_empty() || (used == 0 && !evented) {
                    break;
                }
            }
        }
        if let Some((peer, id)) = conn {
            self.incoming.unregister(peer, id);
        }
    }

    /// Hands one frame of `from`'s on ([`route`]); false when the link is
    /// to close or the node is shutting down.
    async fn route(&self, from: NodeId, frame: PeerFrame, routes: &Routes) -> bool {
        match route(&self.dir, from, frame) {
            Route::Driver(input) => routes.driver.send(input).await.is_ok(),
            Route::Store(job) => {
                !matches!(routes.store.try_send(job), Err(async_channel::TrySendError::Closed(_)))
            }
            Route::Close => false,
        }
    }

    /// One outgoing link: dial, handshake, write, redial, for as long as the
    /// server runs.
    async fn link(self: Arc<Self>, to: NodeId, mut redial: Redial) {
        let Some(Some(handle)) = self.links.get(usize::from(to.0)) else { return };
        loop {
            match self.connect(to, redial.addr()).await {
                Ok((mut conn, session)) => {
                    redial.up();
                    self.dir.set_up(to, true);
                    let e = write_loop(&mut conn, &session, &handle.rx).await;
                    self.dir.set_up(to, false);
                    let _ = conn.stream.shutdown(Shutdown::Both);
                    redial.down(&e);
                }
                Err(e) => idle(&handle.rx, redial.failed(&e)).await,
            }
        }
    }

    /// Dials `to` and runs a [`LinkDialler`] session to its Welcome.
    async fn connect(&self, to: NodeId, addr: SocketAddr) -> Result<(Conn, LinkDialler), DialError> {
        let dial = async {
            let stream = TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            let mut conn = Conn::new(stream, dial_link(self.tls.as_deref(), addr.ip())?);
            let mut session = LinkDialler::new(self.ours, self.nodes, to, self.clock.now());
            let mut hello = [0u8; MAX_FRAME_BYTES];
            let mut room = &mut hello[..];
            let n = session.poll_transmit(&mut room).map_err(io::Error::other)?;
            conn.write_all(&hello[..n]).await?;
            let mut buf = [0u8; MAX_FRAME_BYTES];
            loop {
                let n = conn.read(&mut buf).await?;
                if n == 0 {
                    let eof = io::Error::new(io::ErrorKind::UnexpectedEof, "closed during the handshake");
                    return Err(eof.into());
                }
                let mut input = &buf[..n];
                while !input.is_empty() || !session.is_up() {
                    let used = session.handle_input(input, self.clock.now());
                    input = &input[used..];
                    match session.poll_event() {
                        Some(LinkEvent::Up { theirs, .. }) => {
                            check_link(self.tls.as_deref(), conn.identity(), to).map_err(io::Error::other)?;
                            self.dir.advertised(to, &theirs);
                            self.dir.dialled(to, theirs.client_addr);
                            return Ok((conn, session));
                        }
                        Some(LinkEvent::Closed(e)) => return Err(e.into()),
                        Some(LinkEvent::Frame { .. }) | None => {}
                    }
                    if used == 0 {
                        break;
                    }
                }
            }
        };
        future::or(dial, async {
            async_io::Timer::after(IO_TIMEOUT).await;
            Err(DialError::Io(io::Error::new(io::ErrorKind::TimedOut, "dial or handshake timed out")))
        })
        .await
    }
}

/// Writes queued frames until the connection fails or the peer closes it;
/// returns why. Frames that queued up meanwhile go out in one write.
async fn write_loop(conn: &mut Conn, session: &LinkDialler, rx: &async_channel::Receiver<Cmd>) -> io::Error {
    let mut out: Vec<u8> = Vec::with_capacity(WRITE_BATCH + MAX_FRAME_BYTES);
    let mut acks: Vec<async_channel::Sender<()>> = Vec::new();
    let mut watched = conn.stream.clone();
    let mut byte = [0u8; 1];
    loop {
        // The peer never writes after Welcome: whatever a read returns
        // (end, error, or stray bytes), the connection is over.
        let next = future::or(async { rx.recv().await.ok() }, async {
            let _ = watched.read(&mut byte).await;
            None
        });
        let Some(first) = next.await else {
            return io::Error::new(io::ErrorKind::ConnectionReset, "the peer closed the link");
        };
        let mut cmd = Some(first);
        while let Some(c) = cmd {
            match c {
                // The link is up and `out` a growing Vec: the session
                // refuses only handshake frames, which the driver never queues.
                Cmd::Frame(frame) => drop(session.encode(&frame, &mut out)),
                Cmd::Flush(ack) => acks.push(ack),
            }
            cmd = if out.len() < WRITE_BATCH { rx.try_recv().ok() } else { None };
        }
        if !out.is_empty() {
            let written = future::or(async { conn.write_all(&out).await }, async {
                async_io::Timer::after(IO_TIMEOUT).await;
                Err(io::Error::new(io::ErrorKind::TimedOut, "peer write timed out"))
            });
            if let Err(e) = written.await {
                return e;
            }
            out.clear();
        }
        for ack in acks.drain(..) {
            let _ = ack.try_send(());
        }
    }
}

/// While the link is down: discards what the driver queues (stale by the
/// time the link is up) and answers flushes at once, for `pause`.
async fn idle(rx: &async_channel::Receiver<Cmd>, pause: Duration) {
    let drain = async {
        while let Ok(cmd) = rx.recv().await {
            if let Cmd::Flush(ack) = cmd {
                let _ = ack.try_send(());
            }
        }
    };
    future::or(drain, async {
        async_io::Timer::after(pause).await;
    })
    .await;
}

/// The links as the store thread and the driver reach them.
impl Links for PeerNet {
    /// Queues a frame for `to`; drops it if the link's queue is full.
    fn send(&self, to: NodeId, frame: PeerFrame) {
        let Some(Some(link)) = self.links.get(usize::from(to.0)) else { return };
        if link.tx.try_send(Cmd::Frame(frame)).is_err() {
            tracing::trace!(to = to.0 + 1, "peer queue full; frame dropped");
        }
    }

    fn seen(&self, id: NodeId) -> Ballot {
        self.dir.seen(id)
    }
}

/// Writes what the session still has to send (its Welcome or Refused);
/// whether anything was written.
async fn write_answer(conn: &mut Conn, session: &mut LinkAcceptor) -> io::Result<bool> {
    let mut buf = [0u8; MAX_FRAME_BYTES];
    let mut room = &mut buf[..];
    let n = session.poll_transmit(&mut room).map_err(io::Error::other)?;
    if n > 0 {
        conn.write_all(&buf[..n]).await?;
    }
    Ok(n > 0)
}
