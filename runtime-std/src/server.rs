//! The server: an acceptor thread and one thread per client connection, a
//! driver thread that feeds the node its inputs, a store thread for the sled
//! replica, and (in a cluster) the peer links.
//!
//! The [`Node`] sits behind one mutex. Connection threads take it for the
//! length of one `get_ts` call (no I/O, no allocation). The driver takes it to
//! feed timeouts, peer messages and store replies and to drain outputs, and
//! hands the outputs on after releasing it. Store operations run on their own
//! thread ([`crate::store`]), so an fsync never delays GetTS, a Promise or an
//! Accept.

use std::collections::HashMap;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use leasetso_core::{
    Backend, GetTsError, LeaderHint, Node, NodeId, Status, StoreOp, StoreReply, Tally, Timestamp, TsRefusal,
};

use crate::clock::Clock;
use crate::conn;
use crate::driver::{Driver, Input};
use crate::error::ServerError;
use crate::peer::{PeerNet, Routes};
use crate::resp::Door;
use crate::store::{self, Job, STORE_QUEUE};
use leasetso_runtime::NodeCell;
use leasetso_runtime::driver::DRIVER_QUEUE;
pub(crate) use leasetso_runtime::stats::Counters;
pub use leasetso_runtime::{ServerConfig, ServerStats};

/// Open client connections, so that shutdown can close them and wait for their threads.
#[derive(Default)]
struct Conns {
    next_id: u64,
    open: HashMap<u64, (TcpStream, Option<JoinHandle<()>>)>,
}

/// What every thread of one server shares.
pub(crate) struct Shared {
    /// The node's slot, shared with `leasetso-smol`'s server (one type, one
    /// answer for a node not built yet or poisoned).
    pub(crate) node: NodeCell,
    pub(crate) clock: Clock,
    pub(crate) cluster_id: u64,
    pub(crate) node_id: NodeId,
    pub(crate) nodes: u16,
    pub(crate) local_addr: SocketAddr,
    /// This node's client address as hints name it.
    pub(crate) advertise: Option<SocketAddr>,
    pub(crate) net: Option<Arc<PeerNet>>,
    /// Set once to stop; the condvar wakes [`Server::wait`].
    stopping: Mutex<bool>,
    wake: Condvar,
    driver: SyncSender<Input>,
    /// Operators' store requests go to the store thread; taken at shutdown
    /// so that thread sees its queue close.
    store: Mutex<Option<SyncSender<Job>>>,
    conns: Mutex<Conns>,
    pub(crate) counters: Counters,
}

impl Shared {
    /// Runs `f` on the node under its lock ([`NodeCell::with_node`]).
    pub(crate) fn with_node<R>(&self, f: impl FnOnce(&mut Node) -> R) -> Option<R> {
        self.node.with_node(f)
    }

    /// GetTS on the node ([`NodeCell::get_ts`]).
    pub(crate) fn get_ts(&self, count: u32) -> Result<Timestamp, Option<GetTsError>> {
        self.node.get_ts(count)
    }

    pub(crate) fn is_stopping(&self) -> bool {
        *lock_ignoring_poison(&self.stopping)
    }

    fn request_stop(&self) {
        *lock_ignoring_poison(&self.stopping) = true;
        self.wake.notify_all();
    }

    /// A leader hint as clients see it: the node id and its advertised
    /// client address (this node's own, or what the peer said in its handshake).
    pub(crate) fn hint(&self, leader: Option<NodeId>) -> LeaderHint {
        let addr = match leader {
            Some(id) if id == self.node_id => self.advertise,
            Some(id) => self.net.as_ref().and_then(|net| net.dir.client_addr(id)),
            None => None,
        };
        LeaderHint { node: leader, addr: addr.filter(|a| !a.ip().is_unspecified()) }
    }

    /// Runs an operator's store operation on this node's replica, on the
    /// store thread. `None` if it did not answer within `timeout`.
    pub(crate) fn admin(&self, op: StoreOp, timeout: Duration) -> Option<StoreReply> {
        let (tx, rx) = mpsc::channel();
        let sent = lock_ignoring_poison(&self.store).as_ref()?.try_send(Job::Admin { op, reply: tx });
        sent.ok()?;
        rx.recv_timeout(timeout).ok()
    }

    /// Bit `i` set: the link to node `i` is up (a single node: its own bit).
    pub(crate) fn links_up(&self) -> u32 {
        self.net.as_ref().map_or(1 << self.node_id.0, |net| net.dir.links_up())
    }
}

/// What a client connection's session ([`leasetso_core::ServerConn`]) asks of
/// the node: the shared node under its lock, the peer links' view, and the
/// server's counters.
impl Backend for &Shared {
    fn get_ts(&mut self, count: u32) -> Result<Timestamp, TsRefusal> {
        self.node.serve_ts(count)
    }

    fn status(&mut self) -> Option<Status> {
        self.node.status()
    }

    fn hint(&self, leader: Option<NodeId>) -> LeaderHint {
        Shared::hint(self, leader)
    }

    fn links_up(&self) -> u32 {
        Shared::links_up(self)
    }

    fn tally(&mut self, tally: Tally) {
        self.counters.tally(tally);
    }
}

/// For locks that guard plain flags and bookkeeping, which a panic cannot
/// leave inconsistent.
fn lock_ignoring_poison<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running leasetso server. Dropping it shuts it down.
pub struct Server {
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
    driver: Option<JoinHandle<()>>,
    store: Option<JoinHandle<()>>,
    resp: Option<Door>,
}

/// Asks a server to stop from anywhere (a signal handler, another thread).
#[derive(Clone)]
pub struct StopHandle {
    shared: Arc<Shared>,
}

impl StopHandle {
    /// Requests the stop; [`Server::wait`] then shuts the server down.
    pub fn stop(&self) {
        self.shared.request_stop();
    }
}

impl std::fmt::Debug for StopHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StopHandle").field("addr", &self.shared.local_addr).finish()
    }
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.shared.local_addr)
            .field("node", &self.shared.node_id)
            .field("cluster_id", &self.shared.cluster_id)
            .finish()
    }
}

impl Server {
    /// Opens the store, bumps its restart counter, builds the node, binds the
    /// listeners and starts the threads. Returns once the server accepts
    /// connections; the node serves timestamps a moment later, once it has
    /// taken the lease and synced its window ([`Server::wait_serving`]).
    ///
    /// In a cluster, a node whose data dir has no restart counter (new, or a
    /// replaced disk) first learns from a quorum of peers the highest ballot
    /// they saw from it, in the background; it answers clients `NotLeader`
    /// until then.
    pub fn start(cfg: ServerConfig) -> Result<Server, ServerError> {
        let opened = cfg.open_store()?;
        let nodes = cfg.node.nodes;
        let listener =
            TcpListener::bind(cfg.listen).map_err(|source| ServerError::Bind { addr: cfg.listen, source })?;
        let local_addr =
            listener.local_addr().map_err(|source| ServerError::Bind { addr: cfg.listen, source })?;
        let advertise = cfg.advertise.or(Some(local_addr)).filter(|a| !a.ip().is_unspecified());
        // Bound before the peers start: its address goes into the handshake.
        let resp = match cfg.resp {
            Some(addr) => {
                Some(Door::bind(addr, advertise).map_err(|source| ServerError::Bind { addr, source })?)
            }
            None => None,
        };
        let (driver_tx, driver_rx) = mpsc::sync_channel(DRIVER_QUEUE);
        let (store_tx, store_rx) = mpsc::sync_channel(STORE_QUEUE);
        let net = if nodes > 1 {
            let ours = cfg.handshake(advertise, resp.as_ref().and_then(Door::advertise));
            let routes = Routes { driver: driver_tx.clone(), store: store_tx.clone() };
            let peer_addr = cfg.peers[usize::from(cfg.node.id.0)];
            let net = PeerNet::start(cfg.node.id, cfg.peers.clone(), ours, routes, cfg.node.seed)
                .map_err(|source| ServerError::Bind { addr: peer_addr, source })?;
            Some(net)
        } else {
            None
        };
        let clock = Clock::new();
        // A cluster node whose counter is gone learns it from its peers
        // first (the driver).
        let (node, pending) = cfg.first_node(&opened, clock.now())?;
        let store = opened.store;
        tracing::info!(
            addr = %local_addr,
            node = cfg.node.id.0 + 1,
            nodes,
            cluster_id = cfg.cluster_id,
            data = %cfg.data_dir.display(),
            "node started"
        );
        let shared = Arc::new(Shared {
            node: NodeCell::new(node, clock, cfg.node.mode),
            clock,
            cluster_id: cfg.cluster_id,
            node_id: cfg.node.id,
            nodes,
            local_addr,
            advertise,
            net: net.clone(),
            stopping: Mutex::new(false),
            wake: Condvar::new(),
            driver: driver_tx.clone(),
            store: Mutex::new(Some(store_tx.clone())),
            conns: Mutex::new(Conns::default()),
            counters: Counters::default(),
        });
        let mut server =
            Server { shared: Arc::clone(&shared), acceptor: None, driver: None, store: None, resp: None };
        let me = cfg.node.id;
        let store_net = net.clone();
        server.store = Some(
            thread::Builder::new()
                .name("leasetso-store".into())
                .spawn(move || store::run(me, store, store_rx, driver_tx, store_net))
                .map_err(|source| ServerError::Spawn { what: "store", source })?,
        );
        let driver = Driver { shared: Arc::clone(&shared), rx: driver_rx, store: store_tx, net, pending };
        server.driver = Some(
            thread::Builder::new()
                .name("leasetso-driver".into())
                .spawn(move || driver.run())
                .map_err(|source| ServerError::Spawn { what: "driver", source })?,
        );
        let acceptor_shared = Arc::clone(&shared);
        // On failure `server` drops here, which stops the driver again.
        server.acceptor = Some(
            thread::Builder::new()
                .name("leasetso-accept".into())
                .spawn(move || accept(&acceptor_shared, listener))
                .map_err(|source| ServerError::Spawn { what: "acceptor", source })?,
        );
        if let Some(mut door) = resp {
            door.start(Arc::clone(&shared))
                .map_err(|source| ServerError::Spawn { what: "RESP acceptor", source })?;
            server.resp = Some(door);
        }
        Ok(server)
    }

    /// The address peers connect to, in a cluster.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.shared.net.as_ref().map(|net| net.listen_addr())
    }

    /// The address clients connect to (the real port when asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    /// The RESP door's address (the real port when asked for port 0), if it has one.
    pub fn resp_addr(&self) -> Option<SocketAddr> {
        self.resp.as_ref().map(Door::local_addr)
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.shared.node_id
    }

    /// What the server has done so far.
    pub fn stats(&self) -> ServerStats {
        self.shared.counters.snapshot()
    }

    /// The node's status, as a `GetStatus` request would report it.
    pub fn status(&self) -> Option<leasetso_core::Status> {
        self.shared.node.status()
    }

    /// Whether the node hands out timestamps now.
    pub fn is_serving(&self) -> bool {
        let now = self.shared.clock.now();
        self.shared.node.with_node(|node| node.is_serving(now)).unwrap_or(false)
    }

    /// Waits until the node serves timestamps, at most `timeout`. Returns
    /// whether it does. (A single node takes the lease and syncs its window
    /// within milliseconds of starting.)
    pub fn wait_serving(&self, timeout: Duration) -> bool {
        let start = std::time::Instant::now();
        loop {
            if self.is_serving() {
                return true;
            }
            if start.elapsed() >= timeout || self.shared.is_stopping() {
                return false;
            }
            thread::sleep(Duration::from_millis(2));
        }
    }

    /// A handle that asks this server to stop, for signal handlers.
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle { shared: Arc::clone(&self.shared) }
    }

    /// Blocks until a [`StopHandle`] asks the server to stop, then shuts it down.
    pub fn wait(mut self) {
        {
            let mut stopping = lock_ignoring_poison(&self.shared.stopping);
            while !*stopping {
                stopping = self.shared.wake.wait(stopping).unwrap_or_else(|e| e.into_inner());
            }
        }
        self.stop();
    }

    /// Stops accepting, closes every connection, releases the lease and
    /// closes the store, waiting for every thread to finish.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if self.acceptor.is_none() && self.driver.is_none() && self.store.is_none() {
            return;
        }
        self.shared.request_stop();
        if let Some(acceptor) = self.acceptor.take() {
            // The acceptor blocks in `accept`; a connection of our own wakes it
            // to see the stop flag. If it cannot be made, the acceptor is left
            // blocked (it exits with the process), rather than hanging here.
            if wake_acceptor(self.shared.local_addr) {
                let _ = acceptor.join();
            }
        }
        if let Some(mut door) = self.resp.take() {
            door.stop();
        }
        // Connections close before the lease is released, so no client is
        // told `NotLeader` by a node that is merely shutting down.
        let conns = std::mem::take(&mut lock_ignoring_poison(&self.shared.conns).open);
        for (_, (stream, handle)) in conns {
            // Wakes the connection's blocked read; its thread then exits.
            let _ = stream.shutdown(Shutdown::Both);
            if let Some(handle) = handle {
                let _ = handle.join();
            }
        }
        // The driver releases the lease and flushes the Release to the peers.
        let _ = self.shared.driver.send(Input::Stop);
        if let Some(driver) = self.driver.take() {
            let _ = driver.join();
        }
        if let Some(net) = &self.shared.net {
            net.shutdown();
        }
        // The store thread ends once every sender of work is gone (the
        // driver, the peer readers and this one); the store closes with it,
        // every write having been flushed when it was made.
        lock_ignoring_poison(&self.shared.store).take();
        if let Some(store) = self.store.take() {
            let _ = store.join();
        }
        tracing::info!(addr = %self.shared.local_addr, "server stopped");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Connects to the listener so that a blocked `accept` returns. Returns
/// whether the connection was made.
fn wake_acceptor(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&crate::peer::loopback(addr), Duration::from_secs(1)).is_ok()
}

fn accept(shared: &Arc<Shared>, listener: TcpListener) {
    for stream in listener.incoming() {
        if shared.is_stopping() {
            break;
        }
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                // Out of descriptors and similar: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        Counters::bump(&shared.counters.connections, 1);
        let peer = stream.peer_addr().ok();
        tracing::debug!(?peer, "client connected");
        let Ok(registered) = stream.try_clone() else {
            tracing::warn!(?peer, "cannot register connection; closing it");
            continue;
        };
        let id = {
            let mut conns = lock_ignoring_poison(&shared.conns);
            let id = conns.next_id;
            conns.next_id += 1;
            conns.open.insert(id, (registered, None));
            id
        };
        let conn_shared = Arc::clone(shared);
        let spawned = thread::Builder::new().name("leasetso-conn".into()).spawn(move || {
            conn::serve(&conn_shared, stream);
            lock_ignoring_poison(&conn_shared.conns).open.remove(&id);
            tracing::debug!(?peer, "client disconnected");
        });
        let mut conns = lock_ignoring_poison(&shared.conns);
        match spawned {
            // If the thread already ended it removed its entry; the handle then just drops.
            Ok(handle) => {
                if let Some(entry) = conns.open.get_mut(&id) {
                    entry.1 = Some(handle);
                }
            }
            Err(e) => {
                tracing::warn!(?peer, error = %e, "cannot start a connection thread; closing it");
                if let Some((stream, _)) = conns.open.remove(&id) {
                    let _ = stream.shutdown(Shutdown::Both);
                }
            }
        }
    }
}
