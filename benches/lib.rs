//! Shared pieces of the benchmarks.

use leasetso_core::{GetTsError, Instant, MemStore, Node, NodeConfig, Output, Timestamp};

/// A single node serving from an in-memory store, with a wall clock the
/// benchmark advances itself: the core alone, no I/O.
pub struct InProcess {
    node: Node,
    store: MemStore,
    now: Instant,
    wall_ms: u64,
}

impl InProcess {
    /// A synced, serving node.
    pub fn new() -> Self {
        let mut store = MemStore::new();
        let node = Node::new(NodeConfig::single(), store.bump_restart(), Instant::ZERO)
            .expect("the default configuration is valid");
        let mut this = InProcess { node, store, now: Instant::ZERO, wall_ms: 1_700_000_000_000 };
        this.tick();
        this
    }

    /// Runs the node's timers at the current time and performs its store
    /// operations.
    fn tick(&mut self) {
        self.node.handle_timeout(self.now, self.wall_ms);
        while let Some(out) = self.node.poll_output() {
            if let Output::Store { replica, request } = out {
                let reply = self.store.execute(request.op);
                self.node.handle_store_reply(replica, request.id, reply, self.now, self.wall_ms);
            }
        }
    }

    /// GetTS through the node. When the window is exhausted, moves both
    /// clocks a second ahead and lets the node extend it (rare: the window
    /// holds hundreds of millions of timestamps).
    #[inline]
    pub fn get_ts(&mut self, count: u32) -> Timestamp {
        loop {
            match self.node.get_ts(count, self.now) {
                Ok(ts) => return ts,
                Err(GetTsError::LogicalExhausted | GetTsError::NotLeader { .. }) => {
                    self.now += core::time::Duration::from_secs(1);
                    self.wall_ms += 1_000;
                    self.tick();
                }
                Err(e) => panic!("benchmark request failed: {e}"),
            }
        }
    }
}

impl Default for InProcess {
    fn default() -> Self {
        Self::new()
    }
}
