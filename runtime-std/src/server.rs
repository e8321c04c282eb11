//! The server: an acceptor thread, one thread per client connection, and one
//! driver thread that owns the node's timers and its store I/O.
//!
//! The [`Node`] sits behind one mutex. Connection threads take it for the
//! length of one `get_ts` call (no I/O, no allocation). The driver takes it to
//! feed timeouts and store replies and to drain outputs, and **releases it
//! while the store works**: a save flushes to disk, and GetTS must keep being
//! served from the current window while the next one is being saved.

use std::collections::HashMap;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use leasetso_core::{
    Event, Instant, LeaderHint, LeaseName, Node, NodeConfig, NodeId, Output, StoreReject, StoreReply,
    StoreRequest,
};
use leasetso_sled::SledStore;

use crate::clock::{Clock, wall_ms};
use crate::conn;
use crate::error::ServerError;

/// The longest the driver sleeps without looking at the clock again. Its
/// sleep is measured on a clock that may stop during a suspend while the
/// node's clock does not, so it wakes at least this often to catch up.
const MAX_DRIVER_SLEEP: Duration = Duration::from_secs(1);

/// How a server is set up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    /// The client address to listen on; port 0 picks a free port
    /// ([`Server::local_addr`] tells which).
    pub listen: SocketAddr,
    /// The store's directory, created if missing.
    pub data_dir: PathBuf,
    /// The cluster this node belongs to. The store remembers it and refuses
    /// another; clients that name a different one are turned away.
    pub cluster_id: u64,
    /// The node's protocol configuration.
    pub node: NodeConfig,
}

impl ServerConfig {
    /// A single-node server of cluster 1 with the default tunables.
    pub fn new(listen: SocketAddr, data_dir: impl Into<PathBuf>) -> Self {
        ServerConfig { listen, data_dir: data_dir.into(), cluster_id: 1, node: NodeConfig::single() }
    }
}

/// Counters of what the server has done since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// Client connections accepted.
    pub connections: u64,
    /// GetTS requests answered, with timestamps or with an error.
    pub get_ts_requests: u64,
    /// Timestamps handed out (the sum of the counts of successful GetTS).
    pub timestamps: u64,
    /// Status requests answered.
    pub status_requests: u64,
    /// Error frames sent, per request or fatal.
    pub errors: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) connections: AtomicU64,
    pub(crate) get_ts_requests: AtomicU64,
    pub(crate) timestamps: AtomicU64,
    pub(crate) status_requests: AtomicU64,
    pub(crate) errors: AtomicU64,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64, by: u64) {
        counter.fetch_add(by, Ordering::Relaxed);
    }

    fn snapshot(&self) -> ServerStats {
        ServerStats {
            connections: self.connections.load(Ordering::Relaxed),
            get_ts_requests: self.get_ts_requests.load(Ordering::Relaxed),
            timestamps: self.timestamps.load(Ordering::Relaxed),
            status_requests: self.status_requests.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
        }
    }
}

/// Open client connections, so that shutdown can close them and wait for their threads.
#[derive(Default)]
struct Conns {
    next_id: u64,
    open: HashMap<u64, (TcpStream, Option<JoinHandle<()>>)>,
}

/// What every thread of one server shares.
pub(crate) struct Shared {
    node: Mutex<Node>,
    pub(crate) clock: Clock,
    pub(crate) cluster_id: u64,
    pub(crate) node_id: NodeId,
    pub(crate) local_addr: SocketAddr,
    /// Set once to stop; the condvar wakes the driver and [`Server::wait`].
    stopping: Mutex<bool>,
    /// Set once every connection is closed: only then does the driver stop
    /// and release the lease, so no client is told `NotLeader` by a node that
    /// is merely shutting down.
    connections_closed: AtomicBool,
    wake: Condvar,
    conns: Mutex<Conns>,
    pub(crate) counters: Counters,
}

impl Shared {
    /// The node, or `None` if a thread panicked while holding it: its state
    /// may then be half-updated, and serving from it could repeat a timestamp.
    pub(crate) fn lock_node(&self) -> Option<MutexGuard<'_, Node>> {
        self.node.lock().ok()
    }

    pub(crate) fn is_stopping(&self) -> bool {
        *lock_ignoring_poison(&self.stopping)
    }

    fn request_stop(&self) {
        *lock_ignoring_poison(&self.stopping) = true;
        self.wake.notify_all();
    }

    /// A leader hint as clients see it: the node id, and this server's own
    /// client address when the leader is this node. (Peers' client addresses
    /// are not known to a single-node server.)
    pub(crate) fn hint(&self, leader: Option<NodeId>) -> LeaderHint {
        LeaderHint { node: leader, addr: (leader == Some(self.node_id)).then_some(self.local_addr) }
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
    /// listener and starts the threads. Returns once the server accepts
    /// connections; the node serves timestamps a moment later, once it has
    /// taken the lease and synced its window ([`Server::wait_serving`]).
    pub fn start(cfg: ServerConfig) -> Result<Server, ServerError> {
        cfg.node.validate()?;
        if cfg.node.nodes != 1 {
            return Err(ServerError::ClusterSize { nodes: cfg.node.nodes });
        }
        let store = SledStore::open(&cfg.data_dir, cfg.cluster_id)
            .map_err(|e| ServerError::from_store(cfg.data_dir.clone(), e))?;
        // Every start gets a restart number of its own, durably, so no
        // ballot of this start equals one of an earlier start.
        let restart = store.bump_restart().map_err(|e| ServerError::from_store(cfg.data_dir.clone(), e))?;
        let listener =
            TcpListener::bind(cfg.listen).map_err(|source| ServerError::Bind { addr: cfg.listen, source })?;
        let local_addr =
            listener.local_addr().map_err(|source| ServerError::Bind { addr: cfg.listen, source })?;
        let clock = Clock::new();
        let mut node = Node::new(cfg.node, restart, clock.now())?;
        // Start the ballot counter above the fence this replica holds, so the
        // first load of this start is not refused as older.
        let fence =
            store.fence(LeaseName::Leader).map_err(|e| ServerError::from_store(cfg.data_dir.clone(), e))?;
        node.catch_up(fence);
        tracing::info!(
            addr = %local_addr,
            node = %cfg.node.id,
            cluster_id = cfg.cluster_id,
            restart,
            data = %cfg.data_dir.display(),
            "node started"
        );
        let shared = Arc::new(Shared {
            node: Mutex::new(node),
            clock,
            cluster_id: cfg.cluster_id,
            node_id: cfg.node.id,
            local_addr,
            stopping: Mutex::new(false),
            connections_closed: AtomicBool::new(false),
            wake: Condvar::new(),
            conns: Mutex::new(Conns::default()),
            counters: Counters::default(),
        });
        let mut server = Server { shared: Arc::clone(&shared), acceptor: None, driver: None };
        let driver_shared = Arc::clone(&shared);
        server.driver = Some(
            thread::Builder::new()
                .name("leasetso-driver".into())
                .spawn(move || drive(&driver_shared, store))
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
        Ok(server)
    }

    /// The address clients connect to (the real port when asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
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
        self.shared.lock_node().map(|node| node.status())
    }

    /// Whether the node hands out timestamps now.
    pub fn is_serving(&self) -> bool {
        self.shared.lock_node().is_some_and(|node| node.is_serving(self.shared.clock.now()))
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
        if self.acceptor.is_none() && self.driver.is_none() {
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
        let conns = std::mem::take(&mut lock_ignoring_poison(&self.shared.conns).open);
        for (_, (stream, handle)) in conns {
            // Wakes the connection's blocked read; its thread then exits.
            let _ = stream.shutdown(Shutdown::Both);
            if let Some(handle) = handle {
                let _ = handle.join();
            }
        }
        {
            let _stopping = lock_ignoring_poison(&self.shared.stopping);
            self.shared.connections_closed.store(true, Ordering::SeqCst);
            self.shared.wake.notify_all();
        }
        if let Some(driver) = self.driver.take() {
            let _ = driver.join();
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
    let mut target = addr;
    // A listener on the unspecified address is reachable on loopback.
    if target.ip().is_unspecified() {
        target.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    TcpStream::connect_timeout(&target, Duration::from_secs(1)).is_ok()
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

/// Buffers reused by the driver across rounds, so its loop does not allocate.
struct DriverBufs {
    work: Vec<(NodeId, StoreRequest)>,
    replies: Vec<(NodeId, u64, StoreReply)>,
    events: Vec<Event>,
}

/// The driver: timers and store I/O. The node lock is never held while the
/// store works.
fn drive(shared: &Shared, store: SledStore) {
    let capacity = 8 * 16;
    let mut bufs = DriverBufs {
        work: Vec::with_capacity(capacity),
        replies: Vec::with_capacity(capacity),
        events: Vec::with_capacity(capacity),
    };
    loop {
        let next = {
            let Some(mut node) = shared.lock_node() else {
                tracing::error!("node state poisoned by a panic; the driver stops");
                break;
            };
            let now = shared.clock.now();
            if node.poll_timeout().is_some_and(|t| t <= now) {
                node.handle_timeout(now, wall_ms());
            }
            drain(&mut node, &mut bufs);
            node.poll_timeout()
        };
        report(&mut bufs.events);
        let mut next = next;
        while !bufs.work.is_empty() {
            for (replica, request) in bufs.work.drain(..) {
                let reply = if replica == shared.node_id {
                    store.execute(request.op)
                } else {
                    // Only reached with a peer replica, which `start` refuses.
                    Err(StoreReject::Failed)
                };
                bufs.replies.push((replica, request.id, reply));
            }
            let Some(mut node) = shared.lock_node() else {
                tracing::error!("node state poisoned by a panic; the driver stops");
                return;
            };
            for (replica, id, reply) in bufs.replies.drain(..) {
                node.handle_store_reply(replica, id, reply, shared.clock.now(), wall_ms());
            }
            drain(&mut node, &mut bufs);
            next = node.poll_timeout();
            drop(node);
            report(&mut bufs.events);
        }
        if !sleep_until(shared, next) {
            break;
        }
    }
    // Give the lease up, so that (in a cluster) another node need not wait
    // for it to expire. The store closes when it drops here; every write
    // was flushed when it was made.
    if let Some(mut node) = shared.lock_node() {
        node.release(shared.clock.now(), false);
        drain(&mut node, &mut bufs);
        drop(node);
        // The step-down reported here is the release asked for, not a failure.
        bufs.events.clear();
        tracing::info!("lease released");
    }
    drop(store);
}

/// Drains the node's outputs: store requests to perform, events to report.
fn drain(node: &mut Node, bufs: &mut DriverBufs) {
    while let Some(output) = node.poll_output() {
        match output {
            Output::Store { replica, request } => bufs.work.push((replica, request)),
            Output::Event(event) => bufs.events.push(event),
            // A single node sends itself nothing over the network.
            Output::Send { to, .. } => tracing::warn!(%to, "no peer transport; message dropped"),
        }
    }
}

fn report(events: &mut Vec<Event>) {
    for event in events.drain(..) {
        match event {
            Event::Leading { fence } => tracing::info!(%fence, "lease acquired; syncing the window"),
            Event::Serving { window_end_ms } => tracing::info!(window_end_ms, "serving timestamps"),
            Event::WindowExtended { window_end_ms } => tracing::trace!(window_end_ms, "window extended"),
            Event::SteppedDown { reason } => tracing::warn!(?reason, "stopped serving"),
            Event::JetLag { lag_ms } => tracing::warn!(lag_ms, "wall clock far ahead of the timestamps"),
        }
    }
}

/// Sleeps until the node's next deadline, or until the server stops and its
/// connections are closed. Returns false on stop.
fn sleep_until(shared: &Shared, deadline: Option<Instant>) -> bool {
    let mut stopping = lock_ignoring_poison(&shared.stopping);
    let stopped = |stopping: bool| stopping && shared.connections_closed.load(Ordering::SeqCst);
    loop {
        if stopped(*stopping) {
            return false;
        }
        let now = shared.clock.now();
        let wait = match deadline {
            Some(d) if d <= now => return true,
            Some(d) => d.saturating_since(now).min(MAX_DRIVER_SLEEP),
            None => MAX_DRIVER_SLEEP,
        };
        let (guard, timeout) = shared.wake.wait_timeout(stopping, wait).unwrap_or_else(|e| e.into_inner());
        stopping = guard;
        if timeout.timed_out() {
            // Past the deadline, or at the periodic look at the clock.
            return !stopped(*stopping);
        }
        // Woken early (a stop request, or spuriously): look again.
    }
}
