//! Three nodes on an instant, lossless network with a store each: the
//! graceful handoff (a released lease is taken over at once by the owner's
//! successor) and what status reports.

use core::time::Duration;

use leasetso_core::{Instant, MemStore, Node, NodeConfig, NodeId, Output, Role};

const WALL: u64 = 1_700_000_000_000;

struct Net {
    nodes: Vec<Node>,
    stores: Vec<MemStore>,
    down: Vec<bool>,
    now: Instant,
}

impl Net {
    fn new(n: u16) -> Net {
        let now = Instant::from_millis(10);
        let mut stores: Vec<MemStore> = (0..n).map(|_| MemStore::new()).collect();
        let nodes = (0..n)
            .map(|i| {
                let restart = stores[usize::from(i)].bump_restart();
                Node::new(NodeConfig::new(NodeId(i), n), restart, now).unwrap()
            })
            .collect();
        Net { nodes, stores, down: vec![false; usize::from(n)], now }
    }

    fn wall(&self) -> u64 {
        WALL + self.now.saturating_since(Instant::from_millis(10)).as_millis() as u64
    }

    /// Delivers every output, at once, until quiet.
    fn pump(&mut self) {
        loop {
            let mut moved = false;
            for i in 0..self.nodes.len() {
                while let Some(out) = self.nodes[i].poll_output() {
                    moved = true;
                    let from = NodeId(i as u16);
                    match out {
                        Output::Send { to, msg } if !self.down[usize::from(to.0)] => {
                            self.nodes[usize::from(to.0)].handle_message(from, msg, self.now)
                        }
                        Output::Store { replica, request } if !self.down[usize::from(replica.0)] => {
                            let reply = self.stores[usize::from(replica.0)].execute(request.op);
                            let (now, wall) = (self.now, self.wall());
                            self.nodes[i].handle_store_reply(replica, request.id, reply, now, wall);
                        }
                        _ => {}
                    }
                }
            }
            if !moved {
                return;
            }
        }
    }

    /// Advances time to each timer in turn, for `span`.
    fn run(&mut self, span: Duration) {
        let end = self.now + span;
        loop {
            self.pump();
            let next = (0..self.nodes.len())
                .filter(|&i| !self.down[i])
                .filter_map(|i| self.nodes[i].poll_timeout())
                .min()
                .unwrap_or(end);
            if next > end {
                self.now = end;
                return;
            }
            self.now = self.now.max(next);
            let wall = self.wall();
            for i in 0..self.nodes.len() {
                if !self.down[i] && self.nodes[i].poll_timeout().is_some_and(|t| t <= self.now) {
                    self.nodes[i].handle_timeout(self.now, wall);
                }
            }
        }
    }

    fn serving(&self) -> Vec<usize> {
        (0..self.nodes.len()).filter(|&i| !self.down[i] && self.nodes[i].is_serving(self.now)).collect()
    }
}

#[test]
fn a_released_lease_is_taken_over_by_the_successor_at_once() {
    let mut net = Net::new(3);
    // Quarantine (D_A) first, then a campaign, then many renewals (each a
    // higher ballot the followers' counters have not followed).
    net.run(Duration::from_secs(30));
    let leader = match net.serving()[..] {
        [l] => l,
        ref s => panic!("one server expected, got {s:?}"),
    };
    let status = net.nodes[leader].status();
    assert_eq!(status.role, Role::Leader);
    assert!(status.fence.is_some() && status.lease.is_some());
    assert!(status.lease_left > Duration::ZERO && status.quarantine_left == Duration::ZERO);
    let before = net.nodes[leader].get_ts(1, net.now).unwrap();
    let follower = (leader + 1) % 3;
    let fs = net.nodes[follower].status();
    assert_eq!(fs.role, Role::Follower);
    assert_eq!(fs.leader, Some(NodeId(leader as u16)));
    assert_eq!(fs.lease.map(|b| b.node), Some(NodeId(leader as u16)), "the acceptor holds the owner's lease");

    // A planned shutdown: release, the Release reaches the others, the node goes.
    let now = net.now;
    net.nodes[leader].release(now, false);
    net.pump();
    net.down[leader] = true;
    // Within a few milliseconds (the store rounds are instant here, so at
    // once), the successor serves.
    net.run(Duration::from_millis(5));
    assert_eq!(net.serving(), vec![follower], "the owner's successor takes over at once");
    let after = net.nodes[follower].get_ts(1, net.now).unwrap();
    assert!(after > before, "{after:?} after {before:?}");
}

#[test]
fn a_fresh_node_is_quarantined_and_says_so() {
    let net = Net::new(3);
    let status = net.nodes[0].status();
    assert_eq!(status.role, Role::Follower);
    assert!(status.quarantine_left >= Duration::from_secs(3), "{status:?}");
    assert_eq!(status.lease, None);
}
