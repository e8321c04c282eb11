//! A 3-node smol cluster on loopback: one leader, the client follows it, and
//! after the leader stops another node takes over with higher timestamps.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use common::Running;
use leasetso_smol::{Client, ClientOptions, NodeConfig, NodeId, Role, ServerConfig};

fn free_addrs(n: usize) -> Vec<SocketAddr> {
    // Bound together so no two are the same; released just before the nodes bind them.
    let held: Vec<TcpListener> = (0..n).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    held.iter().map(|l| l.local_addr().unwrap()).collect()
}

fn config(i: u16, peers: &[SocketAddr], clients: &[SocketAddr], dir: &std::path::Path) -> ServerConfig {
    let mut node = NodeConfig::new(NodeId(i), 3);
    node.lease.duration = Duration::from_millis(1000);
    node.seed = u64::from(i) + 1;
    node.store_timeout = node.store_timeout.min(node.lease.duration);
    ServerConfig {
        cluster_id: 7,
        node,
        peers: peers.to_vec(),
        ..ServerConfig::new(clients[usize::from(i)], dir.join(format!("n{i}")))
    }
}

fn wait_for_leader(nodes: &[Option<Running>], timeout: Duration) -> usize {
    let start = Instant::now();
    loop {
        if let Some(i) = nodes.iter().position(|n| n.as_ref().is_some_and(|n| n.handle.is_serving())) {
            return i;
        }
        assert!(start.elapsed() < timeout, "no node served within {timeout:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn three_nodes_fail_over_when_the_leader_stops() {
    let dir = tempfile::tempdir().unwrap();
    let peers = free_addrs(3);
    let clients = free_addrs(3);
    let mut nodes: Vec<Option<Running>> =
        (0..3).map(|i| Some(Running::start(config(i, &peers, &clients, dir.path())))).collect();
    let leader = wait_for_leader(&nodes, Duration::from_secs(10));
    let opts = ClientOptions { cluster_id: 7, deadline: Duration::from_secs(8), ..ClientOptions::default() };
    smol::block_on(async {
        // Seeded with a follower first: the client must follow its hint.
        let follower = (leader + 1) % 3;
        let seeds = [clients[follower], clients[(leader + 2) % 3], clients[leader]];
        let client = Client::connect(&seeds, opts).await.unwrap();
        let before = client.get_ts_n(10).await.unwrap();
        assert_eq!(client.server_addr(), clients[leader], "the client did not follow the hint");
        let status = client.status().await.unwrap();
        assert_eq!(status.role, Role::Leader);
        assert_eq!(status.view.links_up.count_ones(), 3, "links: {:b}", status.view.links_up);
        // The leader stops gracefully: it releases its lease.
        nodes[leader].take().unwrap().stop();
        let stopped = Instant::now();
        let after = client.get_ts().await.unwrap();
        let gap = stopped.elapsed();
        assert!(after > before, "{after:?} after {before:?}");
        assert_ne!(client.server_addr(), clients[leader]);
        // A released lease is taken over at once, not after it runs out.
        assert!(gap < Duration::from_millis(2500), "failover took {gap:?}");
    });
    let new_leader = wait_for_leader(&nodes, Duration::from_secs(5));
    assert_ne!(new_leader, leader);

    // The stopped node comes back with its data dir gone: it first learns
    // from a quorum of peers where its ballots must start (until then it
    // knows no lease), then takes part again with every link up.
    std::fs::remove_dir_all(dir.path().join(format!("n{leader}"))).unwrap();
    let back = Running::start(config(leader as u16, &peers, &clients, dir.path()));
    let start = Instant::now();
    loop {
        let status = back.handle.status().unwrap();
        if status.lease.is_some_and(|b| b.node == NodeId(new_leader as u16)) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "the restarted node never joined: {status:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
    nodes[leader] = Some(back);
    smol::block_on(async {
        let opts =
            ClientOptions { cluster_id: 7, deadline: Duration::from_secs(5), ..ClientOptions::default() };
        let client = Client::connect(&[clients[leader]], opts).await.unwrap();
        let status = client.status().await.unwrap();
        assert_eq!(status.role, Role::Follower);
        assert_eq!(status.leader.addr, Some(clients[new_leader]));
        client.get_ts().await.unwrap();
        assert_eq!(client.server_addr(), clients[new_leader]);
    });
}

/// The leader's `run` future is dropped (a crash: no Release): the others
/// wait out its lease and take over, and the client's call issued meanwhile
/// returns the new leader's timestamp within its deadline.
#[test]
fn three_nodes_fail_over_when_the_leader_crashes() {
    let dir = tempfile::tempdir().unwrap();
    let peers = free_addrs(3);
    let clients = free_addrs(3);
    let mut nodes: Vec<Option<Running>> =
        (0..3).map(|i| Some(Running::start(config(i, &peers, &clients, dir.path())))).collect();
    let leader = wait_for_leader(&nodes, Duration::from_secs(10));
    let opts = ClientOptions { cluster_id: 7, deadline: Duration::from_secs(8), ..ClientOptions::default() };
    smol::block_on(async {
        let client = Client::connect(&clients, opts).await.unwrap();
        let before = client.get_ts().await.unwrap();
        nodes[leader].take().unwrap().crash();
        let crashed = Instant::now();
        let after = client.get_ts().await.unwrap();
        assert!(after > before);
        assert_ne!(client.server_addr(), clients[leader]);
        // Nobody may serve before the crashed leader's lease ran out at the
        // acceptors (1 s here), and the new one then needs a moment.
        let gap = crashed.elapsed();
        assert!(gap < Duration::from_secs(5), "failover took {gap:?}");
    });
}
