//! What `leasetso serve` offers, for either runtime's server.

use std::net::SocketAddr;
use std::path::PathBuf;

use leasetso_core::NodeConfig;

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
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
