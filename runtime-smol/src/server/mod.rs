//! The server: a node served over async sockets on one internal executor.
//!
//! [`Server::bind`] opens the store, builds the node and binds the
//! listeners, synchronously (nothing of it is worth awaiting, and an error
//! is best reported before any task exists). [`Server::run`] is a future that
//! serves until a [`Handle`] asks it to stop, then shuts down gracefully:
//! connections close, the lease is released and the Release flushed to the
//! peers, the store closes.
//!
//! # Why an internal executor
//!
//! The server needs many tasks (the acceptor, one per client connection, the
//! driver, the peer links). Rather than take a spawner, whose type would tie
//! the public API to one executor (or force a boxed `'static + Send` callback
//! on the embedder), `run()` owns an `async_executor::Executor` and drives it
//! inside its own future. Whoever polls `run()` (`smol::block_on`, a task on
//! the application's own executor, any executor with async-io's reactor)
//! polls every server task; dropping the future cancels them all, so no task
//! outlives the server. The embedder decides which thread runs it.
//!
//! # Threads and locks
//!
//! The [`Node`] sits behind one `std::sync::Mutex`, taken for the length of
//! one `get_ts` call or one batch of driver inputs and never across an
//! `.await`. Sled is blocking: every store operation runs on a dedicated
//! store thread (`store.rs`), so an fsync never delays GetTS, a
//! Promise or an Accept.

mod conn;
mod driver;
mod peer;
mod store;

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_executor::Executor;
use event_listener::Event;
use futures_lite::future;
use leasetso_core::conn::ADMIN_TIMEOUT;
use leasetso_core::{NodeId, Status, StoreOp, StoreReply};

use self::driver::{Input, Pending};
use self::peer::PeerNet;
use self::store::{Job, STORE_QUEUE};
use crate::error::ServerError;
use leasetso_runtime_common::driver::DRIVER_QUEUE;
use leasetso_runtime_common::http::MetricsListener;
pub(crate) use leasetso_runtime_common::stats::Counters;
use leasetso_runtime_common::{Advertised, Kit};
pub use leasetso_runtime_common::{ServerConfig, ServerStats};

/// What every task of one server shares: the kit (the node, the
/// addresses, the counters, the rules both runtimes follow) and the tasks'
/// own bookkeeping.
pub(crate) struct Shared {
    pub(crate) kit: Kit,
    pub(crate) net: Option<Arc<PeerNet>>,
    stopping: AtomicBool,
    /// Notified when `stopping` is set and when a connection task ends.
    wake: Event,
    open_conns: AtomicUsize,
    pub(crate) store: async_channel::Sender<Job>,
}

leasetso_runtime_common::kit_shared!(Shared);

impl Shared {
    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    fn request_stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.wake.notify(usize::MAX);
    }

    /// Resolves once a stop is requested.
    pub(crate) async fn stopped(&self) {
        loop {
            if self.is_stopping() {
                return;
            }
            let listener = self.wake.listen();
            if self.is_stopping() {
                return;
            }
            listener.await;
        }
    }

    /// Runs an operator's store operation on this node's replica, on the
    /// store thread. `None` if it did not answer within [`ADMIN_TIMEOUT`].
    pub(crate) async fn admin(&self, op: StoreOp) -> Option<StoreReply> {
        let (tx, rx) = async_channel::bounded(1);
        self.store.try_send(Job::Admin { op, reply: tx }).ok()?;
        let timeout = async {
            async_io::Timer::after(ADMIN_TIMEOUT).await;
            None
        };
        future::or(async { rx.recv().await.ok() }, timeout).await
    }

    /// Serves one client connection (of either door) as a task on `ex`,
    /// counted open until it ends: the stop waits for every one to close
    /// before the lease is released, so no client is told `NotLeader` by a
    /// node that is merely shutting down.
    pub(crate) fn spawn_conn(
        self: &Arc<Self>,
        ex: &Executor<'static>,
        serve: impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        self.open_conns.fetch_add(1, Ordering::SeqCst);
        let shared = Arc::clone(self);
        ex.spawn(async move {
            future::or(serve, shared.stopped()).await;
            shared.open_conns.fetch_sub(1, Ordering::SeqCst);
            shared.wake.notify(usize::MAX);
        })
        .detach();
    }
}

/// A bound leasetso server, ready to [`run`](Server::run).
#[derive(Debug)]
pub struct Server {
    shared: Arc<Shared>,
    listener: TcpListener,
    peer_listener: Option<TcpListener>,
    resp_listener: Option<(TcpListener, SocketAddr)>,
    /// The metrics listener (threads of its own), stopped with the server.
    metrics: Option<MetricsListener>,
    driver_rx: async_channel::Receiver<Input>,
    driver_tx: async_channel::Sender<Input>,
    pending: Option<Pending>,
    /// Ends (its sender drops) when the store thread exits.
    store_done: async_channel::Receiver<()>,
    /// Threads that run the server's tasks, the one polling `run` included.
    workers: usize,
}

/// Talks to a server from anywhere: asks it to stop, reads its state.
#[derive(Clone, Debug)]
pub struct Handle {
    shared: Arc<Shared>,
}

impl Handle {
    /// Requests the stop; [`Server::run`] then shuts down and returns.
    /// Safe to call from a signal-handling thread.
    pub fn stop(&self) {
        self.shared.request_stop();
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
    pub fn status(&self) -> Option<Status> {
        self.shared.node.status()
    }

    /// Whether the node hands out timestamps now.
    pub fn is_serving(&self) -> bool {
        self.shared.kit.is_serving()
    }

    /// Waits until the node serves timestamps, at most `timeout`; returns
    /// whether it does.
    pub async fn wait_serving(&self, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if self.is_serving() {
                return true;
            }
            if std::time::Instant::now() >= deadline || self.shared.is_stopping() {
                return false;
            }
            async_io::Timer::after(Duration::from_millis(2)).await;
        }
    }
}

impl Server {
    /// Opens the store, bumps its restart counter, builds the node, binds the
    /// listeners and starts the store thread. Nothing is served until
    /// [`Server::run`] is polled; connections made before then wait in the
    /// listen backlog.
    ///
    /// In a cluster, a node whose data dir has no restart counter (new, or a
    /// replaced disk) first learns from a quorum of peers the highest ballot
    /// they saw from it; it answers clients `NotLeader` until then.
    pub fn bind(cfg: ServerConfig) -> Result<Server, ServerError> {
        // A bad certificates dir is reported before the data dir is touched.
        let tls = cfg.tls()?;
        let opened = cfg.open_store()?;
        let nodes = cfg.node.nodes;
        let bind = |addr: SocketAddr| {
            let l = TcpListener::bind(addr).map_err(|source| ServerError::Bind { addr, source })?;
            let local = l.local_addr().map_err(|source| ServerError::Bind { addr, source })?;
            Ok::<_, ServerError>((l, local))
        };
        let (listener, local_addr) = bind(cfg.listen)?;
        // Bound before the peers' handshake is made: its address goes into it.
        let resp = cfg.resp.map(bind).transpose()?;
        let advertised = Advertised::new(cfg.advertise, local_addr, resp.as_ref().map(|&(_, a)| a), cfg.pd);
        let (driver_tx, driver_rx) = async_channel::bounded(DRIVER_QUEUE);
        let (store_tx, store_rx) = async_channel::bounded(STORE_QUEUE);
        let (net, peer_listener) = if nodes > 1 {
            let ours = cfg.handshake(&advertised);
            let (peer_listener, peer_addr) = bind(cfg.peers[usize::from(cfg.node.id.0)])?;
            let net =
                PeerNet::new(cfg.node.id, cfg.peers.clone(), peer_addr, ours, cfg.node.seed, tls.clone());
            (Some(net), Some(peer_listener))
        } else {
            (None, None)
        };
        let dir = net.as_ref().map(|net| Arc::clone(&net.dir));
        let (kit, pending) = Kit::start(&cfg, &opened, local_addr, advertised, dir, tls)?;
        let store = leasetso_runtime_common::store::Replica::new(
            opened.store,
            cfg.cluster_id,
            Arc::clone(&kit.store_health),
        );
        let (done_tx, store_done) = async_channel::bounded::<()>(1);
        let me = cfg.node.id;
        let store_net = net.clone();
        let store_driver = driver_tx.clone();
        std::thread::Builder::new()
            .name("leasetso-store".into())
            .spawn(move || {
                store::run(me, store, store_rx, store_driver, store_net);
                drop(done_tx);
            })
            .map_err(|source| ServerError::Spawn { what: "store", source })?;
        let shared = Arc::new(Shared {
            kit,
            net,
            stopping: AtomicBool::new(false),
            wake: Event::new(),
            open_conns: AtomicUsize::new(0),
            store: store_tx,
        });
        let metrics = MetricsListener::for_config(&cfg, &shared)?;
        Ok(Server {
            shared,
            listener,
            peer_listener,
            resp_listener: resp,
            metrics,
            driver_rx,
            driver_tx,
            pending,
            store_done,
            workers: 1,
        })
    }

    /// The address clients connect to (the real port when asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    /// The address peers connect to, in a cluster.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.shared.net.as_ref().map(|net| net.listen_addr())
    }

    /// The server's kit, for a door that runs beside it (the PD door).
    pub fn kit(&self) -> leasetso_runtime_common::SharedKit {
        Arc::clone(&self.shared) as leasetso_runtime_common::SharedKit
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.shared.node_id
    }

    /// The metrics listener's address (`--metrics`), if it has one.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(MetricsListener::local_addr)
    }

    /// The RESP door's address (the real port when asked for port 0), if it has one.
    pub fn resp_addr(&self) -> Option<SocketAddr> {
        self.resp_listener.as_ref().map(|&(_, a)| a)
    }

    /// Runs the server's tasks on `workers` threads instead of one: the one
    /// polling [`Server::run`] and `workers - 1` of the server's own, which
    /// end when `run` does. For a server that has the machine to itself
    /// (`leasetso serve --runtime smol` uses one per core), so that client
    /// connections are served on every core; an application that embeds a
    /// node on its own executor leaves it at 1, the default.
    pub fn with_workers(mut self, workers: usize) -> Server {
        self.workers = workers.max(1);
        self
    }

    /// A handle that stops the server and reads its state while it runs.
    pub fn handle(&self) -> Handle {
        Handle { shared: Arc::clone(&self.shared) }
    }

    /// Serves until a [`Handle`] asks to stop, then shuts down: stops
    /// accepting, closes every client connection, releases the lease and
    /// flushes the Release to the peers, closes the store. Dropping the
    /// future instead cancels every task at once (no Release is sent; the
    /// peers wait out the lease).
    pub async fn run(self) -> Result<(), ServerError> {
        let Server {
            shared,
            listener,
            peer_listener,
            resp_listener,
            metrics: _metrics,
            driver_rx,
            driver_tx,
            pending,
            store_done,
            workers,
        } = self;
        let listen_err = |source| ServerError::Bind { addr: shared.local_addr, source };
        let listener = async_net::TcpListener::try_from(listener).map_err(listen_err)?;
        let peer_listener = match peer_listener {
            Some(l) => Some(async_net::TcpListener::try_from(l).map_err(listen_err)?),
            None => None,
        };
        let resp_listener = match resp_listener {
            Some((l, addr)) => Some(
                async_net::TcpListener::try_from(l).map_err(|source| ServerError::Bind { addr, source })?,
            ),
            None => None,
        };
        let ex = Arc::new(Executor::new());
        let serving = async {
            if let (Some(net), Some(l)) = (&shared.net, peer_listener) {
                net.start(&ex, l, driver_tx.clone(), shared.store.clone());
            }
            let driver = ex.spawn(driver::run(Arc::clone(&shared), driver_rx, pending));
            let acceptor =
                ex.spawn(accept(Arc::clone(&shared), Arc::downgrade(&ex), listener, "conn", client_conn));
            let door = resp_listener
                .map(|l| ex.spawn(accept(Arc::clone(&shared), Arc::downgrade(&ex), l, "resp", resp_conn)));
            shared.stopped().await;
            // Connections close before the lease is released, so no client
            // is told `NotLeader` by a node that is merely shutting down.
            acceptor.await;
            if let Some(door) = door {
                door.await;
            }
            wait_conns_closed(&shared).await;
            // The driver releases the lease and flushes the Release.
            let _ = driver_tx.send(Input::Stop).await;
            driver.await;
            // The store thread drains its queue and ends; every write was
            // flushed when it was made.
            shared.store.close();
            let _ = store_done.recv().await;
        };
        // The helpers run the same executor until `run` is done, then let go
        // of it before it is dropped here.
        let (release_helpers, released) = async_channel::bounded::<()>(1);
        let mut helpers_gone = Vec::with_capacity(workers.saturating_sub(1));
        for _ in 1..workers {
            let (gone_tx, gone_rx) = async_channel::bounded::<()>(1);
            let helper_ex = Arc::clone(&ex);
            let released = released.clone();
            let spawned = std::thread::Builder::new().name("leasetso-worker".into()).spawn(move || {
                async_io::block_on(helper_ex.run(async {
                    let _ = released.recv().await;
                }));
                drop(helper_ex);
                drop(gone_tx);
            });
            match spawned {
                Ok(_) => helpers_gone.push(gone_rx),
                // Fewer helpers only means fewer cores serve.
                Err(e) => tracing::warn!(error = %e, "cannot start a worker thread"),
            }
        }
        ex.run(serving).await;
        release_helpers.close();
        for gone in helpers_gone {
            let _ = gone.recv().await;
        }
        // Dropping the executor cancels the peer links and readers and
        // closes their sockets; the listeners close with their tasks.
        drop(ex);
        if let Some(net) = &shared.net {
            net.close();
        }
        tracing::info!(addr = %shared.local_addr, "server stopped");
        Ok(())
    }
}

async fn wait_conns_closed(shared: &Shared) {
    loop {
        if shared.open_conns.load(Ordering::SeqCst) == 0 {
            return;
        }
        let listener = shared.wake.listen();
        if shared.open_conns.load(Ordering::SeqCst) == 0 {
            return;
        }
        listener.await;
    }
}

/// Serves a connection of the client door.
async fn client_conn(shared: Arc<Shared>, stream: async_net::TcpStream, _: u64) {
    if let Some(door) = shared.kit.client_door(stream.peer_addr().ok()) {
        conn::serve(&shared, stream, door).await
    }
}

/// Serves connection number `id` of the RESP door.
async fn resp_conn(shared: Arc<Shared>, stream: async_net::TcpStream, id: u64) {
    if let Some(door) = shared.kit.resp_door(id, stream.peer_addr().ok()) {
        conn::serve(&shared, stream, door).await
    }
}

/// Accepts connections on `listener` until the stop, each served by
/// `serve(shared, stream, id)` (`id` unique on this door) as a task of its
/// own; `door` names the door in logs.
async fn accept<F, Fut>(
    shared: Arc<Shared>,
    ex: Weak<Executor<'static>>,
    listener: async_net::TcpListener,
    door: &'static str,
    serve: F,
) where
    F: Fn(Arc<Shared>, async_net::TcpStream, u64) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let accepting = async {
        for id in 1.. {
            let (stream, peer) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    // Out of descriptors and similar: back off instead of spinning.
                    leasetso_runtime_common::warn_quiet!(leasetso_runtime_common::quiet::ACCEPT_FAILED, door, error = %e, "accept failed");
                    async_io::Timer::after(Duration::from_millis(50)).await;
                    continue;
                }
            };
            // Weak: a task holding its own executor would keep it alive.
            let Some(ex) = ex.upgrade() else { return };
            Counters::bump(&shared.counters.connections, 1);
            tracing::debug!(door, %peer, id, "client connected");
            let served = serve(Arc::clone(&shared), stream, id);
            shared.spawn_conn(&ex, async move {
                served.await;
                tracing::debug!(door, %peer, id, "client disconnected");
            });
        }
    };
    future::or(accepting, shared.stopped()).await;
}
