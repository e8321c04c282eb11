//! GetTS and the periodic update allocate nothing after construction.
//!
//! A counting global allocator sees every allocation of this test binary;
//! the test is the only one in the binary so no other thread allocates.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use leasetso_core::{Instant, MemStore, Node, NodeConfig, Output};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: delegates to the system allocator; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
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

    let before = ALLOCATIONS.load(Ordering::Relaxed);
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
    let after = ALLOCATIONS.load(Ordering::Relaxed);

    assert!(outputs > 6, "the run exercised store rounds ({outputs} outputs)");
    assert!(served > 200 * 100_000, "the run served timestamps ({served})");
    assert!(store.window_end_ms() > wall0 + 10_000, "windows were saved");
    let _ = now;
    assert_eq!(after - before, 0, "allocations on the hot path and the update path");
}
