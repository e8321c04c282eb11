//! B3, the ahead bound: GetTS in ranges of 64 at the throughput target (10 M
//! timestamps per second) costs the same with the default bound (5 s) as
//! with the bound as far as it goes (60 s). The node runs in-process against
//! the reference store; its clocks advance as they would at the target rate
//! (one millisecond per 156 requests of 64), so the periodic update and the
//! window saves are in the measurement, amortised as in a server.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use leasetso_core::bounds::MAX_AHEAD_LIMIT_MS;
use leasetso_core::{GetTsError, Instant, MemStore, Node, NodeConfig, Output, Timestamp};

/// Timestamps per request.
const RANGE: u32 = 64;
/// The throughput target, in timestamps per second.
const TARGET_PER_SEC: u64 = 10_000_000;
/// Requests per millisecond at the target: 10,000 timestamps / 64.
const PER_MS: u64 = TARGET_PER_SEC / 1_000 / RANGE as u64;

/// A single serving node whose clocks move at the target rate.
struct Paced {
    node: Node,
    store: MemStore,
    now: Instant,
    wall_ms: u64,
    calls: u64,
    refused: u64,
}

impl Paced {
    fn new(max_ahead_ms: u64) -> Self {
        let mut cfg = NodeConfig::single();
        cfg.oracle.max_ahead_ms = max_ahead_ms;
        let mut store = MemStore::new();
        let node = Node::new(cfg, store.bump_restart(), Instant::ZERO).expect("a valid configuration");
        let mut this =
            Paced { node, store, now: Instant::ZERO, wall_ms: 1_700_000_000_000, calls: 0, refused: 0 };
        this.tick();
        this
    }

    /// The node's timers and its store operations, when due.
    fn tick(&mut self) {
        if self.node.poll_timeout().is_some_and(|t| t <= self.now) {
            self.node.handle_timeout(self.now, self.wall_ms);
            while let Some(out) = self.node.poll_output() {
                if let Output::Store { replica, request } = out {
                    let reply = self.store.execute(request.op);
                    self.node.handle_store_reply(replica, request.id, reply, self.now, self.wall_ms);
                }
            }
        }
    }

    #[inline]
    fn get_ts(&mut self) -> Option<Timestamp> {
        self.calls += 1;
        if self.calls.is_multiple_of(PER_MS) {
            self.now += core::time::Duration::from_millis(1);
            self.wall_ms += 1;
            self.tick();
        }
        match self.node.get_ts(RANGE, self.now) {
            Ok(ts) => Some(ts),
            Err(GetTsError::LogicalExhausted) => {
                self.refused += 1;
                None
            }
            Err(e) => panic!("benchmark request failed: {e}"),
        }
    }
}

fn ahead_bound(c: &mut Criterion) {
    let mut group = c.benchmark_group("ahead_bound");
    group.throughput(Throughput::Elements(u64::from(RANGE)));
    for (name, max_ahead_ms) in [("default_5s", 5_000), ("far_60s", MAX_AHEAD_LIMIT_MS)] {
        let mut node = Paced::new(max_ahead_ms);
        group.bench_with_input(BenchmarkId::new("get_ts_64_at_10M_per_s", name), &(), |b, ()| {
            b.iter(|| black_box(node.get_ts()))
        });
        assert_eq!(node.refused, 0, "{name}: the bound refused requests at the throughput target");
    }
    group.finish();
}

criterion_group!(benches, ahead_bound);
criterion_main!(benches);
