//! One cluster of both runtimes: two std nodes and a smol node link up
//! (handshakes both ways across runtimes), serve, and fail over; the smol
//! and the std clients follow the leader whichever runtime it runs on.

// The smol runtime's in-process server helper, shared with its own tests.
#[path = "../runtime-smol/tests/common.rs"]
mod common;

use std::time::{Duration, Instant};

use common::Running;
use leasetso_smol::{Client, ClientOptions, NodeConfig, NodeId, ServerConfig};
use leasetso_tests::free_addrs;

enum Node {
    Std(Box<leasetso_std::Server>),
    Smol(Running),
}

impl Node {
    fn is_serving(&self) -> bool {
        match self {
            Node::Std(s) => s.is_serving(),
            Node::Smol(s) => s.handle.is_serving(),
        }
    }
}

#[test]
fn std_and_smol_nodes_share_a_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let peers = free_addrs(3);
    let clients = free_addrs(3);
    let node_cfg = |i: u16| {
        let mut node = NodeConfig::new(NodeId(i), 3);
        node.lease.duration = Duration::from_millis(1000);
        node.seed = u64::from(i) + 1;
        node.store_timeout = node.store_timeout.min(node.lease.duration);
        node
    };
    let mut nodes: Vec<Option<Node>> = (0..3u16)
        .map(|i| {
            let data_dir = dir.path().join(format!("n{i}"));
            let listen = clients[usize::from(i)];
            // One configuration type for both runtimes.
            let cfg = ServerConfig {
                cluster_id: 9,
                node: node_cfg(i),
                peers: peers.clone(),
                ..ServerConfig::new(listen, data_dir)
            };
            Some(if i == 2 {
                Node::Smol(Running::start(cfg))
            } else {
                Node::Std(Box::new(leasetso_std::Server::start(cfg).unwrap()))
            })
        })
        .collect();
    let leader = |nodes: &[Option<Node>]| {
        let start = Instant::now();
        loop {
            if let Some(i) = nodes.iter().position(|n| n.as_ref().is_some_and(Node::is_serving)) {
                return i;
            }
            assert!(start.elapsed() < Duration::from_secs(10), "nobody serves");
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    let first = leader(&nodes);
    let opts = ClientOptions { cluster_id: 9, deadline: Duration::from_secs(8), ..ClientOptions::default() };
    let std_client = leasetso_std::Client::connect_with(
        &clients[..],
        leasetso_std::ClientOptions { cluster_id: 9, ..leasetso_std::ClientOptions::default() },
    )
    .unwrap();
    smol::block_on(async {
        let client = Client::connect(&clients, opts.clone()).await.unwrap();
        let a = client.get_ts().await.unwrap();
        let b = std_client.get_ts().unwrap();
        assert!(b > a);
        // The smol node sees both std peers' links up, and they see it.
        let smol_status = Client::connect(&[clients[2]], ClientOptions { deadline: Duration::ZERO, ..opts })
            .await
            .unwrap()
            .status()
            .await
            .unwrap();
        assert_eq!(smol_status.view.links_up, 0b111, "smol node's links: {:b}", smol_status.view.links_up);
        assert_eq!(smol_status.leader.addr, Some(clients[first]));
        // The leader stops gracefully; a node of either runtime takes over.
        match nodes[first].take().unwrap() {
            Node::Std(s) => s.shutdown(),
            Node::Smol(s) => s.stop(),
        }
        let c = client.get_ts().await.unwrap();
        let d = std_client.get_ts().unwrap();
        assert!(c > b && d > c, "{b:?} {c:?} {d:?}");
    });
    let second = leader(&nodes);
    assert_ne!(second, first);
}
