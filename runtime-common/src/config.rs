//! What `leasetso serve` offers, for either runtime's server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use leasetso_core::peer::PEER_VERSION;
use leasetso_core::{Handshake, Instant, Node, NodeConfig};
use leasetso_sled::SledStore;

use crate::clock::Clock;
use crate::driver::Pending;
use crate::error::ServerError;
use crate::tls::{CertsDir, ServerTls};

/// How a server is set up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    /// The client address to listen on; port 0 picks a free port (the
    /// server's `local_addr` tells which).
    pub listen: SocketAddr,
    /// The store's directory, created if missing.
    pub data_dir: PathBuf,
    /// The cluster this node belongs to. The store remembers it and refuses
    /// another; clients and peers that name a different one are turned away.
    pub cluster_id: u64,
    /// The node's protocol configuration (`node.nodes` is the cluster size).
    pub node: NodeConfig,
    /// Every node's peer address, indexed by node id, this node's own
    /// included (it listens there). Empty for a single node.
    pub peers: Vec<SocketAddr>,
    /// The client address peers hand out for this node in leader hints;
    /// defaults to the bound client address, unless that is unspecified
    /// (0.0.0.0), which is never advertised.
    pub advertise: Option<SocketAddr>,
    /// The RESP door's address (`serve --resp`), off if `None`: Redis
    /// clients get timestamps there with `TSO [count]`.
    pub resp: Option<SocketAddr>,
    /// The password Redis clients must give (`AUTH`) before anything else
    /// on the RESP door (`serve --resp-password-file`); none if `None`.
    pub resp_password: Option<Secret>,
    /// TLS on the client and RESP doors (`serve --certs-dir`): the
    /// directory of `leasetso cert`, with `ca.crt` and this node's
    /// `node.<id>.crt` / `.key`. Plaintext if `None`.
    pub certs_dir: Option<PathBuf>,
    /// The most client connections (client and RESP doors together) served
    /// at once (`serve --max-connections`); `None`: the default under the
    /// open-file limit ([`crate::limits::default_max_connections`]).
    pub max_connections: Option<usize>,
    /// The metrics listener's address (`serve --metrics`): `/metrics`,
    /// `/health`, `/ready`, `/status.json` and the status page; off if `None`.
    pub metrics: Option<SocketAddr>,
    /// The PD door's bound address (`serve --pd`), advertised to the peers
    /// so every node lists it among the members; `None` without the door.
    /// The door itself (`leasetso-grpc`) runs beside the server, not in it.
    pub pd: Option<SocketAddr>,
}

impl ServerConfig {
    /// A single-node server of cluster 1 with the default tunables.
    pub fn new(listen: SocketAddr, data_dir: impl Into<PathBuf>) -> Self {
        ServerConfig {
            listen,
            data_dir: data_dir.into(),
            cluster_id: 1,
            node: NodeConfig::single(),
            peers: Vec::new(),
            advertise: None,
            resp: None,
            certs_dir: None,
            resp_password: None,
            max_connections: None,
            metrics: None,
            pd: None,
        }
    }

    /// The connection cap (H1): the one given, or the default under the
    /// open-file limit, which is raised to its hard limit first.
    pub fn max_connections(&self) -> usize {
        self.max_connections.unwrap_or_else(|| {
            crate::limits::default_max_connections(self.node.nodes, crate::limits::raise_nofile())
        })
    }
}

/// A secret (the RESP door's password): its bytes are never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub Arc<[u8]>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// The store a server opened for its configuration, and the restart counter
/// it held before this start (0: none, a new or replaced data dir).
#[derive(Debug)]
pub struct Opened {
    /// The node's replica, bound to the cluster id and the node id.
    pub store: SledStore,
    /// The restart counter found in the store.
    pub stored_restart: u64,
}

impl ServerConfig {
    /// The start-up checks both runtimes make before binding anything: the
    /// node's configuration is valid, a cluster node has a suspend-proof
    /// clock and one peer address per node, and the data dir opens as this
    /// cluster's and this node's (it refuses another's, writing nothing).
    pub fn open_store(&self) -> Result<Opened, ServerError> {
        self.node.validate()?;
        let nodes = self.node.nodes;
        if nodes > 1 {
            if !Clock::is_boottime() {
                return Err(ServerError::NoBoottime);
            }
            if self.peers.len() != usize::from(nodes) {
                return Err(ServerError::Peers { nodes, peers: self.peers.len() });
            }
        }
        let store_err = |e| ServerError::from_store(self.data_dir.clone(), e);
        let store = SledStore::open(&self.data_dir, self.cluster_id).map_err(store_err)?;
        store.claim_node(self.node.id).map_err(store_err)?;
        let stored_restart = store.restart().map_err(store_err)?;
        Ok(Opened { store, stored_restart })
    }

    /// The node of this start (a single node), or, for a cluster node, what
    /// its driver needs to build it once a quorum of peers has told it the
    /// highest restart they saw from it (`Pending`). Every start gets a
    /// restart number of its own, durably, so no ballot of this start equals
    /// one of an earlier start; the ballot counter starts above the fence
    /// this replica holds, so the first load of this start is not refused
    /// as older.
    ///
    /// A cluster node asks its peers at every start, not only when the data
    /// dir has no counter: a data dir restored from an older copy holds an
    /// older counter (and the restart marker restored with it agrees), and
    /// nothing local can tell. A single node has no peers; its data dir is
    /// the only record, as before.
    pub fn first_node(
        &self,
        opened: &Opened,
        now: Instant,
    ) -> Result<(Option<Node>, Option<Pending>), ServerError> {
        let Opened { store, stored_restart } = opened;
        let cfg = self.node_config();
        if cfg.nodes > 1 {
            let pending = Pending { cfg, store: store.clone(), stored_restart: *stored_restart };
            return Ok((None, Some(pending)));
        }
        let store_err = |e| ServerError::from_store(self.data_dir.clone(), e);
        let restart = store.bump_restart().map_err(store_err)?;
        let mut node = Node::new(cfg, restart, now)?;
        node.catch_up(store.fence().map_err(store_err)?);
        tracing::info!(restart, "restart counter bumped");
        Ok((Some(node), None))
    }

    /// The node's TLS (`certs_dir`), loaded now so that a bad directory is
    /// reported before anything listens; `None` for plaintext.
    pub fn tls(&self) -> Result<Option<Arc<ServerTls>>, ServerError> {
        let Some(dir) = &self.certs_dir else { return Ok(None) };
        let tls = ServerTls::load(CertsDir::new(dir), self.node.id, self.cluster_id)
            .map_err(|source| ServerError::Tls { dir: dir.clone(), source })?;
        Ok(Some(Arc::new(tls)))
    }

    /// The node's configuration as a server runs it: a store round must
    /// finish well within the lease, or a slow disk would outlast the
    /// leadership it serves, so the store timeout is at most the lease.
    pub fn node_config(&self) -> NodeConfig {
        let mut node = self.node;
        node.store_timeout = node.store_timeout.min(node.lease.duration);
        node
    }

    /// This node's side of the peer handshake: who it is, the client, RESP
    /// and PD door addresses peers hand out for it, and the digest of the
    /// timing every node of the cluster must share.
    pub fn handshake(&self, advertised: &crate::Advertised) -> Handshake {
        Handshake {
            version: PEER_VERSION,
            cluster_id: self.cluster_id,
            node: self.node.id,
            client_addr: advertised.client,
            resp_addr: advertised.resp,
            pd_addr: advertised.pd,
            // `open_store` validated the configuration, so the digest exists.
            digest: self.node.digest().unwrap_or(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_single_node_starts_at_restart_one_and_again_above_it() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = ServerConfig::new("127.0.0.1:0".parse().unwrap(), dir.path());
        let opened = cfg.open_store().unwrap();
        assert_eq!(opened.stored_restart, 0);
        let (node, pending) = cfg.first_node(&opened, Instant::from_millis(1)).unwrap();
        assert!(node.is_some() && pending.is_none(), "a single node never waits for peers");
        drop(opened);
        let opened = cfg.open_store().unwrap();
        assert_eq!(opened.stored_restart, 1, "the first start's counter is durable");
        let _ = cfg.first_node(&opened, Instant::from_millis(2)).unwrap();
        assert_eq!(opened.store.restart().unwrap(), 2);
    }

    #[test]
    fn another_clusters_data_dir_and_a_short_peer_list_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = ServerConfig::new("127.0.0.1:0".parse().unwrap(), dir.path());
        drop(cfg.open_store().unwrap());
        let other = ServerConfig { cluster_id: 2, ..cfg.clone() };
        assert!(other.open_store().is_err(), "a data dir of cluster 1 opened as cluster 2");
        let mut three = cfg.clone();
        three.node.nodes = 3;
        three.peers = vec!["127.0.0.1:1".parse().unwrap()];
        assert!(matches!(
            three.open_store(),
            Err(ServerError::Peers { nodes: 3, peers: 1 }) | Err(ServerError::NoBoottime)
        ));
    }

    #[test]
    fn new_is_a_single_node_of_cluster_one_without_extras() {
        let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let cfg = ServerConfig::new(addr, "/data");
        assert_eq!(cfg.listen, addr);
        assert_eq!(cfg.data_dir, PathBuf::from("/data"));
        assert_eq!(cfg.cluster_id, 1);
        assert_eq!(cfg.node, NodeConfig::single());
        assert!(cfg.peers.is_empty() && cfg.advertise.is_none() && cfg.resp.is_none());
    }

    #[test]
    fn the_store_timeout_never_outlasts_the_lease() {
        let mut cfg = ServerConfig::new("127.0.0.1:0".parse().unwrap(), "/data");
        cfg.node.lease.duration = std::time::Duration::from_millis(500);
        cfg.node.store_timeout = std::time::Duration::from_secs(10);
        assert_eq!(cfg.node_config().store_timeout, cfg.node.lease.duration);
        cfg.node.store_timeout = std::time::Duration::from_millis(100);
        assert_eq!(cfg.node_config().store_timeout, std::time::Duration::from_millis(100));
    }
}
