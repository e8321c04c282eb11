//! The server: an acceptor thread and one thread per client connection, a
//! driver thread that feeds the node its inputs, a store thread for the sled
//! replica, and (in a cluster) the peer links.
//!
//! The [`Node`] sits behind one mutex. Connection threads take it for the
//! length of one `get_ts` call (no I/O, no allocation). The driver takes it to
//! feed timeouts, peer messages and store replies and to drain outputs, and
//! hands the outputs on after releasing it. Store operations run on their own
//! thread ([`crate::server::store`]), so an fsync never delays GetTS, a Promise or an
//! Accept.

mod conn;
mod door;
mod driver;
mod event_loop;
mod peer;
mod readiness;
mod store;

use std::net::SocketAddr;
use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use leasetso_core::{NodeId, StoreOp, StoreReply};

use self::door::Door;
use self::driver::{Driver, Input};
use self::event_loop::EventDoor;
use self::peer::{PeerNet, Routes};
use self::store::{Job, STORE_QUEUE};
use crate::error::ServerError;
use leasetso_runtime_common::driver::DRIVER_QUEUE;
use leasetso_runtime_common::http::MetricsListener;
pub(crate) use leasetso_runtime_common::stats::Counters;
use leasetso_runtime_common::{Advertised, Kit, lock};
pub use leasetso_runtime_common::{ServerConfig, ServerStats};

/// What every thread of one server shares: the kit (the node, the
/// addresses, the counters, the rules both runtimes follow) and the
/// threads' own bookkeeping.
pub(crate) struct Shared {
    pub(crate) kit: Kit,
    pub(crate) net: Option<Arc<PeerNet>>,
    /// Set once to stop; the condvar wakes [`Server::wait`].
    stopping: Mutex<bool>,
    wake: Condvar,
    driver: SyncSender<Input>,
    /// Operators' store requests go to the store thread; taken at shutdown
    /// so that thread sees its queue close.
    store: Mutex<Option<SyncSender<Job>>>,
}

leasetso_runtime_common::kit_shared!(Shared);

impl Shared {
    pub(crate) fn is_stopping(&self) -> bool {
        *lock(&self.stopping)
    }

    fn request_stop(&self) {
        *lock(&self.stopping) = true;
        self.wake.notify_all();
    }

    /// Runs an operator's store operation on this node's replica, on the
    /// store thread. `None` if it did not answer within `timeout`.
    pub(crate) fn admin(&self, op: StoreOp, timeout: Duration) -> Option<StoreReply> {
        let (tx, rx) = mpsc::channel();
        let sent = lock(&self.store).as_ref()?.try_send(Job::Admin { op, reply: tx });
        sent.ok()?;
        rx.recv_timeout(timeout).ok()
    }
}

/// A running leasetso server. Dropping it shuts it down.
#[derive(Debug)]
pub struct Server {
    shared: Arc<Shared>,
    /// The client door.
    door: Door,
    driver: Option<JoinHandle<()>>,
    store: Option<JoinHandle<()>>,
    resp: Option<EventDoor>,
    metrics: Option<MetricsListener>,
}

/// Asks a server to stop from anywhere (a signal handler, another thread).
#[derive(Clone, Debug)]
pub struct StopHandle {
    shared: Arc<Shared>,
}

impl StopHandle {
    /// Requests the stop; [`Server::wait`] then shuts the server down.
    pub fn stop(&self) {
        self.shared.request_stop();
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
        // A bad certificates dir is reported before the data dir is touched.
        let tls = cfg.tls()?;
        let opened = cfg.open_store()?;
        let nodes = cfg.node.nodes;
        let bind = |what, addr| Door::bind(what, addr).map_err(|source| ServerError::Bind { addr, source });
        let door = bind("conn", cfg.listen)?;
        // Bound before the peers start: its address goes into the handshake.
        let resp = cfg
            .resp
            .map(|addr| EventDoor::bind(addr).map_err(|source| ServerError::Bind { addr, source }))
            .transpose()?;
        let advertised = Advertised::new(
            cfg.advertise,
            door.local_addr(),
            resp.as_ref().map(EventDoor::local_addr),
            cfg.pd,
        );
        let (driver_tx, driver_rx) = mpsc::sync_channel(DRIVER_QUEUE);
        let (store_tx, store_rx) = mpsc::sync_channel(STORE_QUEUE);
        let net = if nodes > 1 {
            let ours = cfg.handshake(&advertised);
            let routes = Routes { driver: driver_tx.clone(), store: store_tx.clone() };
            let peer_addr = cfg.peers[usize::from(cfg.node.id.0)];
            let net =
                PeerNet::start(cfg.node.id, cfg.peers.clone(), ours, routes, cfg.node.seed, tls.clone())
                    .map_err(|source| ServerError::Bind { addr: peer_addr, source })?;
            Some(net)
        } else {
            None
        };
        let dir = net.as_ref().map(|net| Arc::clone(&net.dir));
        let (kit, pending) = Kit::start(&cfg, &opened, door.local_addr(), advertised, dir, tls)?;
        let store = leasetso_runtime_common::store::Replica::new(
            opened.store,
            cfg.cluster_id,
            Arc::clone(&kit.store_health),
        );
        let shared = Arc::new(Shared {
            kit,
            net: net.clone(),
            stopping: Mutex::new(false),
            wake: Condvar::new(),
            driver: driver_tx.clone(),
            store: Mutex::new(Some(store_tx.clone())),
        });
        let me = cfg.node.id;
        let store_net = net.clone();
        let store = thread::Builder::new()
            .name("leasetso-store".into())
            .spawn(move || store::run(me, store, store_rx, driver_tx, store_net))
            .map_err(|source| ServerError::Spawn { what: "store", source })?;
        let driver = Driver { shared: Arc::clone(&shared), rx: driver_rx, store: store_tx, net, pending };
        let driver = thread::Builder::new()
            .name("leasetso-driver".into())
            .spawn(move || driver.run())
            .map_err(|source| ServerError::Spawn { what: "driver", source })?;
        // On failure from here `server` drops, which stops the threads again.
        let metrics = MetricsListener::for_config(&cfg, &shared)?;
        let mut server =
            Server { shared, door, driver: Some(driver), store: Some(store), resp: None, metrics };
        let (counted, served) = (Arc::clone(&server.shared), Arc::clone(&server.shared));
        server
            .door
            .start(
                move || Counters::bump(&counted.counters.connections, 1),
                move |stream, _| {
                    if let Some(door) = served.kit.client_door(stream.peer_addr().ok()) {
                        conn::serve(&served, stream, door);
                    }
                },
            )
            .map_err(|source| ServerError::Spawn { what: "acceptor", source })?;
        if let Some(mut door) = resp {
            door.start(Arc::clone(&server.shared))
                .map_err(|source| ServerError::Spawn { what: "RESP door", source })?;
            tracing::info!(addr = %door.local_addr(), "RESP door open");
            server.resp = Some(door);
        }
        Ok(server)
    }

    /// The server's kit, for a door that runs beside it (the PD door).
    pub fn kit(&self) -> leasetso_runtime_common::SharedKit {
        Arc::clone(&self.shared) as leasetso_runtime_common::SharedKit
    }

    /// The address peers connect to, in a cluster.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.shared.net.as_ref().map(|net| net.listen_addr())
    }

    /// The address clients connect to (the real port when asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    /// The metrics listener's address (`--metrics`), if it has one.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(MetricsListener::local_addr)
    }

    /// The RESP door's address (the real port when asked for port 0), if it has one.
    pub fn resp_addr(&self) -> Option<SocketAddr> {
        self.resp.as_ref().map(EventDoor::local_addr)
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
        self.shared.kit.is_serving()
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
            let mut stopping = lock(&self.shared.stopping);
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
        if self.driver.is_none() && self.store.is_none() {
            return;
        }
        self.shared.request_stop();
        // Connections close before the lease is released, so no client is
        // told `NotLeader` by a node that is merely shutting down.
        self.door.stop();
        if let Some(mut door) = self.resp.take() {
            door.stop();
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
        lock(&self.shared.store).take();
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
