//! GetTS and the periodic update allocate nothing after construction, and
//! neither does a client connection's session, nor a RESP connection's,
//! once it is set up.
//!
//! A counting global allocator counts the allocations of each thread, so
//! the tests of this binary can run side by side.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use core::net::SocketAddr;

use leasetso_core::conn::{FLUSH, OUT_CAPACITY, READ_BUF};
use leasetso_core::resp::{OUT_LIMIT, RespBackend, RespConn, RespServed, ServerInfo};
use leasetso_core::wire::VERSION;
use leasetso_core::{
    Backend, Frame, Instant, LeaderHint, MemStore, Node, NodeConfig, NodeId, Output, Served, ServerConn,
    Status, Timestamp, TsRefusal,
};

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
    msgs: Vec<(usize, leasetso_core::NodeId, leasetso_core::LeaseMsg)>,
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

/// A runtime's view of a node, as a connection sees it: here the node
/// itself at the time the test has reached.
struct AtNow<'a> {
    node: &'a mut Node,
    now: Instant,
}

impl Backend for AtNow<'_> {
    fn get_ts(&mut self, count: u32) -> Result<Timestamp, TsRefusal> {
        Ok(self.node.get_ts(count, self.now)?)
    }
    fn status(&mut self) -> Option<Status> {
        Some(self.node.status_at(self.now))
    }
    fn hint(&self, leader: Option<NodeId>) -> LeaderHint {
        LeaderHint { node: leader, addr: None }
    }
    fn links_up(&self) -> u32 {
        1
    }
}

#[test]
fn a_client_sessions_get_ts_path_does_not_allocate() {
    const PER_READ: usize = READ_BUF / 17;
    let wall0 = 1_700_000_000_000u64;
    let mut store = MemStore::new();
    let mut node = Node::new(NodeConfig::single(), store.bump_restart(), Instant::ZERO).unwrap();
    node.handle_timeout(Instant::ZERO, wall0);
    drain(&mut node, &mut store, Instant::ZERO, wall0);
    assert!(node.is_serving(Instant::ZERO), "a single node serves at once");

    // Set up as a runtime does: the session, its buffers, and what the
    // client sends (one read buffer of pipelined GetTS per read; a status
    // request among them).
    let mut conn = ServerConn::new(1, NodeId(0), 1);
    let mut out = Vec::with_capacity(OUT_CAPACITY);
    let mut hello = Vec::new();
    Frame::Hello { version: VERSION, cluster_id: 0 }.encode(&mut hello).unwrap();
    let mut backend = AtNow { node: &mut node, now: Instant::ZERO };
    assert_eq!(conn.handle(&hello, Instant::ZERO, &mut backend, &mut out), (hello.len(), Served::Read));
    assert!(matches!(Frame::decode(&out), Ok(Some((Frame::Welcome { .. }, _)))));
    out.clear();
    let mut input = Vec::with_capacity(READ_BUF);
    for id in 1..PER_READ as u64 {
        Frame::GetTs { id, count: 3 }.encode(&mut input).unwrap();
    }
    Frame::GetStatus { id: 0 }.encode(&mut input).unwrap();
    let capacity = out.capacity();

    let before = allocations();
    let (mut answers, mut flushes, mut last_seen) = (0usize, 0usize, Timestamp::ZERO);
    let mut now = Instant::ZERO;
    for tick in 1..=200u64 {
        now = node.poll_timeout().unwrap();
        let wall = wall0 + tick * 50;
        node.handle_timeout(now, wall);
        drain(&mut node, &mut store, now, wall);
        let mut backend = AtNow { node: &mut node, now };
        let mut at = 0;
        loop {
            let (used, served) = conn.handle(&input[at..], now, &mut backend, &mut out);
            at += used;
            // What a runtime writes out: count and check the answers.
            let mut i = 0;
            while let Ok(Some((frame, n))) = Frame::decode(&out[i..]) {
                i += n;
                answers += 1;
                match frame {
                    Frame::Ts { last, .. } => {
                        assert!(last > last_seen, "timestamps increase");
                        last_seen = last;
                    }
                    Frame::Status { .. } => {}
                    other => panic!("unexpected answer {other:?}"),
                }
            }
            assert_eq!(i, out.len(), "out holds whole frames");
            out.clear();
            match served {
                Served::Flush => flushes += 1,
                Served::Read => break,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(at, input.len());
    }
    let after = allocations();

    let _ = now;
    assert_eq!(answers, 200 * PER_READ, "every request answered");
    assert!(flushes >= 200, "out filled up to the flush mark ({flushes} flushes, FLUSH {FLUSH})");
    assert_eq!(out.capacity(), capacity, "out was never reallocated");
    assert_eq!(after - before, 0, "allocations on a session's GetTS path");
}

impl RespBackend for AtNow<'_> {
    fn get_ts(&mut self, count: u32) -> Result<Timestamp, TsRefusal> {
        Ok(self.node.get_ts(count, self.now)?)
    }
    fn resp_addr(&self, _node: NodeId) -> Option<SocketAddr> {
        None
    }
}

#[test]
fn a_resp_sessions_pipelined_tso_path_does_not_allocate() {
    let wall0 = 1_700_000_000_000u64;
    let mut store = MemStore::new();
    let mut node = Node::new(NodeConfig::single(), store.bump_restart(), Instant::ZERO).unwrap();
    node.handle_timeout(Instant::ZERO, wall0);
    drain(&mut node, &mut store, Instant::ZERO, wall0);
    assert!(node.is_serving(Instant::ZERO), "a single node serves at once");

    // Set up as a runtime does: the session, its output buffer, and what a
    // Redis client pipelines (TSOs, a PING and a CLIENT ID among them).
    let mut conn = RespConn::new(1, ServerInfo { node: NodeId(0), nodes: 1 }, None);
    let mut out = Vec::with_capacity(OUT_LIMIT);
    let mut input = Vec::new();
    for i in 0..2_000 {
        match i % 100 {
            0 => input.extend_from_slice(b"PING\r\n"),
            50 => input.extend_from_slice(b"*2\r\n$6\r\nCLIENT\r\n$2\r\nID\r\n"),
            _ => input.extend_from_slice(b"*2\r\n$3\r\nTSO\r\n$1\r\n3\r\n"),
        }
    }
    let capacity = out.capacity();

    let before = allocations();
    let (mut replies, mut flushes) = (0usize, 0usize);
    for tick in 1..=50u64 {
        let now = node.poll_timeout().unwrap();
        let wall = wall0 + tick * 50;
        node.handle_timeout(now, wall);
        drain(&mut node, &mut store, now, wall);
        let mut backend = AtNow { node: &mut node, now };
        let mut at = 0;
        loop {
            let (used, served) = conn.handle(&input[at..], now, &mut backend, &mut out);
            at += used;
            // What a runtime writes out: every reply is one line here.
            replies += out.iter().filter(|&&b| b == b'\n').count();
            assert!(!out.contains(&b'-'), "an error reply");
            out.clear();
            match served {
                RespServed::Flush => flushes += 1,
                RespServed::Read => break,
                RespServed::Close(why) => panic!("closed: {why}"),
            }
        }
        assert_eq!(at, input.len());
    }
    let after = allocations();

    assert_eq!(replies, 50 * 2_000, "every command answered");
    assert!(flushes >= 50, "out filled up to the flush mark ({flushes} flushes)");
    assert_eq!(out.capacity(), capacity, "out was never reallocated");
    assert_eq!(after - before, 0, "allocations on a RESP session's TSO path");
}
