//! GetTS and the periodic update allocate nothing after construction.
//!
//! A counting global allocator counts the allocations of each thread, so
//! the tests of this binary can run side by side.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use leasetso_core::{Instant, MemStore, Node, NodeConfig, Output};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

fn count_one() {
    // `try_with`: a thread being torn down has no counter left, and needs none.
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
}

// SAFETY: delegates to the system allocator; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_one();
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn drain(node: &mut Node, store: &mut MemStore, now: Instant, wall: u64) -> usize {
    let mut n = 0;
    while let Some(out) = node.poll_output() {
        n += 1;
        if let Output::Store { replica, request } = out {
            let reply = store.execute(request.op);
            node.handle_store_reply(replica, request.id, reply, now, wall);
        }
    }
    n
}

#[test]
fn get_ts_update_and_saves_do_not_allocate() {
    let wall0 = 1_700_000_000_000u64;
    let mut store = MemStore::new();
    let mut node = Node::new(NodeConfig::single(), store.bump_restart(), Instant::ZERO).unwrap();

    let before = allocations();
    // Campaign, sync, then ten seconds of updates with saves and GetTS
    // (including logical exhaustion that advances physical at once).
    node.handle_timeout(Instant::ZERO, wall0);
    let mut outputs = drain(&mut node, &mut store, Instant::ZERO, wall0);
    let mut served = 0u64;
    let mut now = Instant::ZERO;
    for tick in 1..=200u64 {
        now = node.poll_timeout().unwrap();
        let wall = wall0 + tick * 50;
        node.handle_timeout(now, wall);
        outputs += drain(&mut node, &mut store, now, wall);
        for count in [1, 10, 100, 1000, 100_000] {
            served += u64::from(node.get_ts(count, now).map(|_| count).unwrap_or(0));
        }
        let _ = node.status();
    }
    let after = allocations();

    assert!(outputs > 6, "the run exercised store rounds ({outputs} outputs)");
    assert!(served > 200 * 100_000, "the run served timestamps ({served})");
    assert!(store.window_end_ms() > wall0 + 10_000, "windows were saved");
    let _ = now;
    assert_eq!(after - before, 0, "allocations on the hot path and the update path");
}

/// An in-process network for the cluster test: preallocated, so the test's
/// own bookkeeping allocates nothing while counting.
struct Net {
    /// (to, from, message)
    msgs: Vec<(usize, leasetso_core::NodeId, leasetso_core::Message)>,
    /// (requester, replica, request)
    ops: Vec<(usize, leasetso_core::NodeId, leasetso_core::StoreRequest)>,
    events: usize,
}

fn collect(i: usize, node: &mut Node, net: &mut Net) {
    while let Some(out) = node.poll_output() {
        match out {
            Output::Send { to, msg } => net.msgs.push((usize::from(to.0), node.config().id, msg)),
            Output::Store { replica, request } => net.ops.push((i, replica, request)),
            Output::Event(_) => net.events += 1,
        }
    }
}

/// Delivers everything in flight, in order, until the network is quiet.
fn settle(nodes: &mut [Node], stores: &mut [MemStore], net: &mut Net, now: Instant, wall: u64) {
    loop {
        if let Some((to, from, msg)) = net.msgs.pop() {
            nodes[to].handle_message(from, msg, now);
            collect(to, &mut nodes[to], net);
        } else if let Some((i, replica, request)) = net.ops.pop() {
            let reply = stores[usize::from(replica.0)].execute(request.op);
            nodes[i].handle_store_reply(replica, request.id, reply, now, wall);
            collect(i, &mut nodes[i], net);
        } else {
            return;
        }
    }
}

#[test]
fn a_cluster_campaign_renewals_release_and_store_rounds_do_not_allocate() {
    use leasetso_core::NodeId;
    let wall0 = 1_700_000_000_000u64;
    let mut stores = [MemStore::new(); 3];
    let mut nodes: Vec<Node> = (0..3u16)
        .map(|i| {
            let restart = stores[usize::from(i)].bump_restart();
            Node::new(NodeConfig::new(NodeId(i), 3), restart, Instant::ZERO).unwrap()
        })
        .collect();
    let mut net = Net { msgs: Vec::with_capacity(4096), ops: Vec::with_capacity(4096), events: 0 };

    let before = allocations();
    // Twenty seconds in 10 ms steps: quarantine, campaign, sync, renewals
    // every 1.5 s, window saves, GetTS on every node, then a release.
    let mut served = 0u64;
    for step in 0..2_000u64 {
        let now = Instant::from_millis(step * 10);
        let wall = wall0 + step * 10;
        for (i, node) in nodes.iter_mut().enumerate() {
            if node.poll_timeout().is_some_and(|t| t <= now) {
                node.handle_timeout(now, wall);
                collect(i, node, &mut net);
            }
        }
        settle(&mut nodes, &mut stores, &mut net, now, wall);
        for node in nodes.iter_mut() {
            served += u64::from(node.get_ts(7, now).is_ok());
        }
        if step == 1_500 {
            for (i, node) in nodes.iter_mut().enumerate() {
                node.release(now, true);
                collect(i, node, &mut net);
            }
            settle(&mut nodes, &mut stores, &mut net, now, wall);
        }
    }
    let after = allocations();

    assert!(served > 1_000, "a leader served ({served} calls)");
    assert!(net.events >= 4, "leading, serving, extensions, release ({} events)", net.events);
    assert!(
        stores.iter().filter(|s| s.window_end_ms() > wall0 + 15_000).count() >= 2,
        "windows saved on a quorum"
    );
    assert_eq!(after - before, 0, "allocations in a cluster's lease and store paths");
}
