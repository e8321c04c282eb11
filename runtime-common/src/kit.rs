//! The server kit: what every door, link and driver of one server shares,
//! and the rules about it that would otherwise be written once per runtime.
//!
//! A runtime builds one [`Kit`] at start-up and hands it (inside its own
//! shared state) to every connection and link. The kit answers, the same way
//! for both runtimes:
//! * GetTS, status and the counters, as the core's sessions ask them of a
//!   [`Backend`] (one implementation, `impl Backend for &Kit`);
//! * the **leader-hint rule**: a hint names the leader's advertised client
//!   address, this node's own or what the peer said in its handshake, and
//!   never a wildcard ([`Kit::hint`]);
//! * the **advertise rule**: which client and RESP addresses this node hands
//!   to its peers ([`Advertised::new`]);
//! * what an operator's request leaves in the log ([`Kit::admin_note`]).
//!
//! The peer-frame routing and the redial policy of the links are in
//! [`crate::route`] and [`crate::redial`].

use std::net::SocketAddr;
use std::sync::Arc;

use leasetso_core::resp::{RespBackend, advertised_addr};
use leasetso_core::{Backend, LeaderHint, NodeId, Status, StoreHealth, StoreOp, Tally, Timestamp, TsRefusal};

use crate::clock::Clock;
use crate::config::{Opened, ServerConfig};
use crate::directory::PeerDirectory;
use crate::door::{ClientDoor, Door, Held, Refused, RespConnDoor};
use crate::driver::Pending;
use crate::error::ServerError;
use crate::limits::{Admission, ConnLimit};
use crate::node_cell::NodeCell;
use crate::quiet;
use crate::stats::{Counters, DoorKind, DoorTally, ServerStats};
use crate::store::HealthCell;
use crate::tls::{ServerTls, TlsDoor};

/// The addresses this node hands out for itself: in leader hints (its
/// client address) and in `-NOTLEADER` answers (its RESP address).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Advertised {
    /// The client address hints name; `None` when the only one known is a
    /// wildcard, which is never handed out.
    pub client: Option<SocketAddr>,
    /// The RESP door's address; `None` without a door, or when it listens
    /// on a wildcard and no client address gives the host.
    pub resp: Option<SocketAddr>,
    /// The PD door's address, by the RESP door's rule.
    pub pd: Option<SocketAddr>,
}

impl Advertised {
    /// The advertise rule. The client address is `--advertise` if given,
    /// else the bound one; a wildcard is never advertised. The RESP and PD
    /// doors' addresses are their bound ones, or, when that is a wildcard,
    /// the advertised client host with the door's port.
    pub fn new(
        configured: Option<SocketAddr>,
        client_bound: SocketAddr,
        resp_bound: Option<SocketAddr>,
        pd_bound: Option<SocketAddr>,
    ) -> Self {
        let client = configured.or(Some(client_bound)).filter(|a| !a.ip().is_unspecified());
        let door = |bound: Option<SocketAddr>| bound.and_then(|bound| advertised_addr(bound, client));
        Advertised { client, resp: door(resp_bound), pd: door(pd_bound) }
    }
}

/// For a runtime's shared server state, a struct with a field `kit: Kit`
/// beside the runtime's own fields: `Deref<Target = Kit>` through that
/// field (the node, the clock, the ids and the counters read as the state's
/// own) and the kit's `Debug`.
#[macro_export]
macro_rules! kit_shared {
    ($shared:ty) => {
        impl ::std::ops::Deref for $shared {
            type Target = $crate::Kit;

            fn deref(&self) -> &$crate::Kit {
                &self.kit
            }
        }

        impl ::std::fmt::Debug for $shared {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                self.kit.debug_as("Server", f)
            }
        }
    };
}

/// A server's kit as something outside the runtime holds it (the PD door,
/// which runs on a runtime of its own): either runtime's shared state,
/// which derefs to the [`Kit`].
pub type SharedKit = Arc<dyn std::ops::Deref<Target = Kit> + Send + Sync>;

/// What every task or thread of one server shares, whatever the runtime.
#[derive(Debug)]
pub struct Kit {
    /// The node slot (one mutex, never held across I/O).
    pub node: NodeCell,
    /// The clock the node is fed with.
    pub clock: Clock,
    /// The cluster this node belongs to.
    pub cluster_id: u64,
    /// This node's id.
    pub node_id: NodeId,
    /// The cluster's size.
    pub nodes: u16,
    /// The bound client address (the real port when asked for port 0).
    pub local_addr: SocketAddr,
    /// What this node hands out for itself.
    pub advertised: Advertised,
    /// What the links learned of the peers; `None` for a single node.
    pub dir: Option<Arc<PeerDirectory>>,
    /// What the server has done so far.
    pub counters: Counters,
    /// TLS on every door and peer link (`--certs-dir`), or plaintext.
    pub tls: Option<Arc<ServerTls>>,
    /// The RESP door's password, if it has one.
    pub resp_password: Option<Arc<[u8]>>,
    /// The client and RESP doors' connections against the cap (H1).
    pub limit: ConnLimit,
    /// The health of this node's replica, kept by the store thread (H4).
    pub store_health: Arc<HealthCell>,
    /// When the kit was made, the origin of [`Kit::beat`]'s times.
    born: std::time::Instant,
    /// When the driver last stepped, in ms since `born` (`/health`).
    heartbeat: std::sync::atomic::AtomicU64,
}

impl Kit {
    /// Builds the node of this start (or what its driver needs to build it
    /// once the peers told it its restart counter: `Pending`) and the kit
    /// around it, and says so in the log. `local_addr` is the bound client
    /// address; `dir` the links' directory in a cluster; `tls` the
    /// certificates ([`ServerConfig::tls`]).
    pub fn start(
        cfg: &ServerConfig,
        opened: &Opened,
        local_addr: SocketAddr,
        advertised: Advertised,
        dir: Option<Arc<PeerDirectory>>,
        tls: Option<Arc<ServerTls>>,
    ) -> Result<(Kit, Option<Pending>), ServerError> {
        let clock = Clock::new();
        // A cluster node whose counter is gone learns it from its peers
        // first (the driver).
        let (node, pending) = cfg.first_node(opened, clock.now())?;
        tracing::info!(
            addr = %local_addr,
            node = cfg.node.id.0 + 1,
            nodes = cfg.node.nodes,
            cluster_id = cfg.cluster_id,
            data = %cfg.data_dir.display(),
            "node started"
        );
        let kit = Kit {
            node: NodeCell::new(node, clock, cfg.node.mode),
            clock,
            cluster_id: cfg.cluster_id,
            node_id: cfg.node.id,
            nodes: cfg.node.nodes,
            local_addr,
            advertised,
            dir,
            counters: Counters::default(),
            tls,
            resp_password: cfg.resp_password.as_ref().map(|s| Arc::clone(&s.0)),
            limit: ConnLimit::new(cfg.max_connections()),
            store_health: Arc::default(),
            born: std::time::Instant::now(),
            heartbeat: Default::default(),
        };
        tracing::info!(max_connections = kit.limit.max(), "client connections capped");
        Ok((kit, pending))
    }

    /// A leader hint as clients see it: the node id and its advertised
    /// client address (this node's own, or what the peer said in its
    /// handshake); never a wildcard.
    pub fn hint(&self, leader: Option<NodeId>) -> LeaderHint {
        let addr = match leader {
            Some(id) if id == self.node_id => self.advertised.client,
            Some(id) => self.dir.as_ref().and_then(|dir| dir.client_addr(id)),
            None => None,
        };
        LeaderHint { node: leader, addr: addr.filter(|a| !a.ip().is_unspecified()) }
    }

    /// The RESP address of node `id`, for `-NOTLEADER` (this node's own, or
    /// what the peer advertised).
    pub fn resp_addr(&self, id: NodeId) -> Option<SocketAddr> {
        if id == self.node_id {
            return self.advertised.resp;
        }
        self.dir.as_ref().and_then(|dir| dir.resp_addr(id))
    }

    /// The PD door address of node `id` (this node's own, or what the peer
    /// advertised), for the members the PD door lists.
    pub fn pd_addr(&self, id: NodeId) -> Option<SocketAddr> {
        if id == self.node_id {
            return self.advertised.pd;
        }
        self.dir.as_ref().and_then(|dir| dir.pd_addr(id))
    }

    /// Bit `i` set: the link to node `i` is up (a single node: its own bit).
    pub fn links_up(&self) -> u32 {
        self.dir.as_ref().map_or(1 << self.node_id.0, |dir| dir.links_up())
    }

    /// Whether the node hands out timestamps now.
    pub fn is_serving(&self) -> bool {
        let now = self.clock.now();
        self.node.with_node(|node| node.is_serving(now)).unwrap_or(false)
    }

    /// Adds what a step of one of `door`'s connections served (`tally`),
    /// and the time since `began` it took, to the counters; every door's
    /// step ends with this.
    pub fn flush_tally(&self, tally: &mut DoorTally, door: DoorKind, began: leasetso_core::Instant) {
        tally.flush(&self.counters, door, self.clock.now().saturating_since(began));
    }

    /// The counters now.
    pub fn stats(&self) -> ServerStats {
        self.counters.snapshot()
    }

    /// A fresh connection of the client door: plaintext, or behind TLS;
    /// at the cap, the refusal (H1). `None` (logged) if TLS cannot start it
    /// or refusals are saturated; the runtime closes it. `remote` is the
    /// client's address, for the log of a refusal.
    pub fn client_door(&self, remote: Option<SocketAddr>) -> Option<Box<dyn Door + Send + '_>> {
        self.admit(DoorKind::Native, || ClientDoor::new(self), Refused::native, remote)
    }

    /// Connection number `id` of the RESP door: plaintext, or behind TLS;
    /// at the cap, the refusal (H1).
    pub fn resp_door(&self, id: u64, remote: Option<SocketAddr>) -> Option<Box<dyn Door + Send + '_>> {
        self.admit(DoorKind::Redis, || RespConnDoor::new(self, id), Refused::resp, remote)
    }

    /// The driver stepped: it runs its loop (`/health`).
    pub fn beat(&self) {
        let ms = u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.heartbeat.store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// How long ago the driver last stepped.
    pub fn heartbeat_age(&self) -> std::time::Duration {
        let at = std::time::Duration::from_millis(self.heartbeat.load(std::sync::atomic::Ordering::Relaxed));
        self.born.elapsed().saturating_sub(at)
    }

    /// This node's status as a client's `status` call gets it; `None` while
    /// the node is not built yet.
    pub fn status_reply(&self) -> Option<crate::client::NodeStatus> {
        let status = self.node.status()?;
        let backend = NativeBackend::new(self);
        let frame = leasetso_core::conn::status_frame(0, self.node_id, self.nodes, &status, &backend);
        crate::client::NodeStatus::from_frame(frame)
    }

    /// H2: a connection did not finish its handshake in time; the runtime
    /// closes it.
    pub fn handshake_timed_out(&self, remote: Option<SocketAddr>) {
        Counters::bump(&self.counters.handshake_timeouts, 1);
        crate::warn_quiet!(
            quiet::HANDSHAKE_TIMEOUTS,
            ?remote,
            deadline = ?crate::limits::HANDSHAKE_DEADLINE,
            "closing a connection that did not finish its handshake in time"
        );
    }

    /// H1: a place under the cap for a new connection, or a refusal.
    fn admit<'a, D: Door + Send + 'a>(
        &'a self,
        kind: DoorKind,
        door: impl FnOnce() -> D,
        refusal: fn() -> Refused,
        remote: Option<SocketAddr>,
    ) -> Option<Box<dyn Door + Send + 'a>> {
        match self.limit.admit() {
            Admission::Served(slot) => {
                let open = &self.counters.doors[kind as usize].open;
                self.door(Held::new(door(), slot, Some(open)), remote)
            }
            Admission::Refused(slot) => {
                Counters::bump(&self.counters.refused_connections, 1);
                crate::warn_quiet!(
                    quiet::AT_CAP,
                    ?remote,
                    max = self.limit.max(),
                    "refusing a connection: at the cap"
                );
                self.door(Held::new(refusal(), slot, None), remote)
            }
            Admission::Dropped => {
                Counters::bump(&self.counters.refused_connections, 1);
                crate::warn_quiet!(
                    quiet::AT_CAP,
                    ?remote,
                    max = self.limit.max(),
                    "closing a connection: at the cap"
                );
                None
            }
        }
    }

    fn door<'a>(
        &'a self,
        door: impl Door + Send + 'a,
        remote: Option<SocketAddr>,
    ) -> Option<Box<dyn Door + Send + 'a>> {
        match &self.tls {
            None => Some(Box::new(door)),
            Some(tls) => match TlsDoor::server(tls, door, remote) {
                Ok(door) => Some(Box::new(door)),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot start TLS on a connection; closing it");
                    None
                }
            },
        }
    }

    /// A server's (or a handle's) `Debug`: which node it is, where.
    pub fn debug_as(&self, name: &str, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct(name)
            .field("addr", &self.local_addr)
            .field("node", &(self.node_id.0 + 1))
            .field("cluster_id", &self.cluster_id)
            .finish()
    }

    /// Logs what an operator's store request changes, before it runs: a
    /// cleared registration lets deferring nodes campaign again, which an
    /// operator reading the logs afterwards must be able to find.
    pub fn admin_note(&self, op: &StoreOp) {
        if let StoreOp::ClearPrimary { id, tag } = op {
            crate::warn_quiet!(
                quiet::ADMIN_CLEARS,
                primary = id.0 + 1,
                %tag,
                "an operator clears the primary registration here"
            );
        }
    }
}

/// What a client connection's session ([`leasetso_core::ServerConn`]) asks of
/// the node: the shared node under its lock, the peer links' view, and the
/// server's counters. One implementation, for every runtime's connections.
/// What a step served is summed here and added to the counters once per
/// step ([`NativeBackend::flush`]).
#[derive(Debug)]
pub struct NativeBackend<'a> {
    kit: &'a Kit,
    tally: DoorTally,
}

impl<'a> NativeBackend<'a> {
    /// The backend of one client-door connection to `kit`'s node.
    pub fn new(kit: &'a Kit) -> Self {
        NativeBackend { kit, tally: DoorTally::default() }
    }

    /// The kit.
    pub fn kit(&self) -> &'a Kit {
        self.kit
    }

    /// Adds what the step that began at `began` served to the counters.
    pub fn flush(&mut self, began: leasetso_core::Instant) {
        self.kit.flush_tally(&mut self.tally, DoorKind::Native, began);
    }
}

impl Backend for NativeBackend<'_> {
    fn get_ts(&mut self, count: u32) -> Result<Timestamp, TsRefusal> {
        let result = self.kit.node.serve_ts(count);
        self.tally.record(count, &result);
        result
    }

    fn status(&mut self) -> Option<Status> {
        self.kit.node.status()
    }

    fn hint(&self, leader: Option<NodeId>) -> LeaderHint {
        self.kit.hint(leader)
    }

    fn links_up(&self) -> u32 {
        self.kit.links_up()
    }

    fn store_health(&self) -> StoreHealth {
        self.kit.store_health.get()
    }

    fn served(&self) -> u64 {
        self.kit.counters.snapshot().timestamps
    }

    fn tally(&mut self, tally: Tally) {
        self.tally.tally(tally);
    }
}

/// The node as a RESP connection ([`leasetso_core::resp::RespConn`]) sees
/// it: runs of `TSO`s under one lock, `-NOTLEADER` addresses from the
/// directory, and counts summed over one `handle` and added to the
/// server's counters once ([`RespDoor::flush`]), so that many connections
/// do not pass the counters' cache lines around per command.
#[derive(Debug)]
pub struct RespDoor<'a> {
    kit: &'a Kit,
    tally: DoorTally,
}

impl<'a> RespDoor<'a> {
    /// The backend of one RESP connection to `kit`'s node.
    pub fn new(kit: &'a Kit) -> Self {
        RespDoor { kit, tally: DoorTally::default() }
    }

    /// Adds what the step that began at `began` served to the counters.
    pub fn flush(&mut self, began: leasetso_core::Instant) {
        self.kit.flush_tally(&mut self.tally, DoorKind::Redis, began);
    }
}

impl RespBackend for RespDoor<'_> {
    fn get_ts(&mut self, count: u32) -> Result<Timestamp, TsRefusal> {
        let result = self.kit.node.serve_ts(count);
        self.tally.record(count, &result);
        result
    }

    fn get_ts_run(&mut self, counts: &[u32], results: &mut [Result<Timestamp, TsRefusal>]) -> usize {
        let n = self.kit.node.serve_run(counts, results);
        for (count, result) in counts.iter().zip(results.iter()).take(n) {
            self.tally.record(*count, result);
        }
        n
    }

    fn resp_addr(&self, node: NodeId) -> Option<SocketAddr> {
        self.kit.resp_addr(node)
    }

    fn tally(&mut self, tally: Tally) {
        self.tally.tally(tally);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leasetso_core::Mode;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_wildcard_is_never_advertised() {
        let a = Advertised::new(None, addr("0.0.0.0:7400"), Some(addr("0.0.0.0:6380")), None);
        assert_eq!(a, Advertised { client: None, resp: None, pd: None });
        let a = Advertised::new(
            Some(addr("10.0.0.1:7400")),
            addr("0.0.0.0:7400"),
            Some(addr("0.0.0.0:6380")),
            Some(addr("0.0.0.0:2379")),
        );
        assert_eq!(a.client, Some(addr("10.0.0.1:7400")));
        assert_eq!(a.resp, Some(addr("10.0.0.1:6380")), "the wildcard door takes the client host");
        assert_eq!(a.pd, Some(addr("10.0.0.1:2379")), "the PD door by the same rule");
        let a = Advertised::new(None, addr("127.0.0.1:7400"), Some(addr("127.0.0.2:6380")), None);
        assert_eq!(
            a,
            Advertised { client: Some(addr("127.0.0.1:7400")), resp: Some(addr("127.0.0.2:6380")), pd: None }
        );
        assert_eq!(Advertised::new(None, addr("127.0.0.1:1"), None, None).resp, None);
    }

    fn kit(dir: Option<Arc<PeerDirectory>>, nodes: u16) -> Kit {
        let clock = Clock::new();
        Kit {
            node: NodeCell::new(None, clock, Mode::Deferring),
            clock,
            cluster_id: 1,
            node_id: NodeId(0),
            nodes,
            local_addr: addr("127.0.0.1:7400"),
            advertised: Advertised {
                client: Some(addr("127.0.0.1:7400")),
                resp: Some(addr("127.0.0.1:6380")),
                pd: None,
            },
            dir,
            counters: Counters::default(),
            tls: None,
            resp_password: None,
            limit: ConnLimit::new(8),
            store_health: Arc::default(),
            born: std::time::Instant::now(),
            heartbeat: Default::default(),
        }
    }

    #[test]
    fn hints_name_what_each_node_advertised() {
        let dir = Arc::new(PeerDirectory::new(NodeId(0), 3));
        let hs = |node, client, resp| leasetso_core::Handshake {
            version: leasetso_core::peer::PEER_VERSION,
            cluster_id: 1,
            node: NodeId(node),
            client_addr: client,
            resp_addr: resp,
            pd_addr: None,
            digest: 0,
        };
        dir.advertised(NodeId(1), &hs(1, Some(addr("127.0.0.1:7401")), Some(addr("127.0.0.1:6381"))));
        dir.advertised(NodeId(2), &hs(2, Some(addr("0.0.0.0:7402")), None));
        let kit = kit(Some(dir), 3);
        assert_eq!(kit.hint(Some(NodeId(0))).addr, Some(addr("127.0.0.1:7400")));
        assert_eq!(kit.hint(Some(NodeId(1))).addr, Some(addr("127.0.0.1:7401")));
        assert_eq!(kit.hint(Some(NodeId(2))).addr, None, "a peer's wildcard is not handed on");
        assert_eq!(kit.hint(None), LeaderHint { node: None, addr: None });
        assert_eq!(kit.resp_addr(NodeId(0)), Some(addr("127.0.0.1:6380")));
        assert_eq!(kit.resp_addr(NodeId(1)), Some(addr("127.0.0.1:6381")));
        assert_eq!(kit.resp_addr(NodeId(2)), None);
    }

    #[test]
    fn a_single_node_has_its_own_link_up_and_no_node_serves_nothing() {
        let kit = kit(None, 1);
        assert_eq!(kit.links_up(), 1);
        let mut backend = NativeBackend::new(&kit);
        assert!(matches!(Backend::get_ts(&mut backend, 1), Err(TsRefusal::Node(_))));
        assert!(!kit.is_serving());
        // The refusal is counted once the step's tally is flushed.
        backend.flush(kit.clock.now());
        let native = &kit.counters.doors[DoorKind::Native as usize];
        let not_leader = native.requests[crate::stats::TsResult::NotLeader as usize]
            .load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(not_leader, 1);
        // A node still recovering answers as a follower that knows no leader.
        let status = kit.status_reply().expect("a status");
        assert_eq!((status.role, status.leader.node), (leasetso_core::Role::Follower, None));
    }
}
