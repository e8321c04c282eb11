//! A single node driven by hand against the reference store.

use core::time::Duration;

use leasetso_core::{
    Ballot, Event, GetTsError, Instant, MemStore, Node, NodeConfig, NodeId, Output, StepDown, StoreReject,
    StoreReply,
};

const WALL: u64 = 1_700_000_000_000;

/// Runs every store output against `store`, collecting events, until quiet.
fn pump(node: &mut Node, store: &mut MemStore, now: Instant, wall: u64) -> Vec<Event> {
    let mut events = Vec::new();
    while let Some(out) = node.poll_output() {
        match out {
            Output::Store { replica, request } => {
                assert_eq!(replica, NodeId(0));
                let reply = store.execute(request.op);
                node.handle_store_reply(replica, request.id, reply, now, wall);
            }
            Output::Event(e) => events.push(e),
            Output::Send { .. } => panic!("a cluster of one sends no messages: {out:?}"),
        }
    }
    events
}

fn start(store: &mut MemStore, now: Instant, wall: u64) -> (Node, Vec<Event>) {
    let restart = store.bump_restart();
    let mut node = Node::new(NodeConfig::single(), restart, now).unwrap();
    assert_eq!(node.poll_timeout(), Some(now));
    node.handle_timeout(now, wall);
    let events = pump(&mut node, store, now, wall);
    (node, events)
}

#[test]
fn a_node_syncs_then_serves_and_extends_its_window() {
    let mut store = MemStore::new();
    let t0 = Instant::from_millis(1);
    let (mut node, events) = start(&mut store, t0, WALL);
    let fence = Ballot::new(1, 1, NodeId(0));
    assert_eq!(
        events,
        vec![Event::Leading { fence }, Event::Serving { window_end_ms: WALL + 3_000 }],
        "load, then save, then serve"
    );
    assert_eq!(store.window_end_ms(), WALL + 3_000);
    assert_eq!(store.fence(), fence);
    let first = node.get_ts(1, t0).unwrap();
    assert_eq!(first.physical_ms, WALL);
    assert_eq!(first.logical, 1);

    // The update timer moves physical with the wall clock and saves ahead.
    let mut now;
    let mut wall = WALL;
    let mut prev = first;
    let mut extended = 0;
    for _ in 0..200 {
        now = node.poll_timeout().expect("a serving node has an update timer");
        wall += 50;
        node.handle_timeout(now, wall);
        extended += pump(&mut node, &mut store, now, wall)
            .iter()
            .filter(|e| matches!(e, Event::WindowExtended { .. }))
            .count();
        let ts = node.get_ts(3, now).unwrap();
        assert!(ts > prev);
        assert!(ts.physical_ms < store.window_end_ms());
        prev = ts;
    }
    assert!(extended >= 2, "10 s of wall time needs several 3 s windows");
    assert_eq!(prev.physical_ms, wall);
}

#[test]
fn a_restarted_node_serves_above_everything_before() {
    let mut store = MemStore::new();
    let (mut node, _) = start(&mut store, Instant::from_millis(1), WALL);
    let before = node.get_ts(100, Instant::from_millis(1)).unwrap();
    drop(node);
    // The wall clock went back a minute across the restart: the window
    // saved before would start the new leadership more than the ahead
    // bound (5 s) ahead of it, so it waits for the wall clock (B3).
    let (mut node, events) = start(&mut store, Instant::from_millis(1), WALL - 60_000);
    assert!(matches!(events[0], Event::Leading { fence } if fence.restart == 2));
    assert_eq!(events.len(), 1, "loaded, not serving: {events:?}");
    assert!(matches!(node.get_ts(1, Instant::from_millis(1)), Err(GetTsError::NotLeader { .. })));
    assert_eq!(store.window_end_ms(), WALL + 3_000, "nothing saved while it waits");
    // A window above the start (WALL + 3,001) and the guard would still be
    // more than 5 s ahead: it keeps waiting.
    let now = node.poll_timeout().expect("the waiting leadership polls the wall clock");
    node.handle_timeout(now, WALL - 1_998);
    assert!(pump(&mut node, &mut store, now, WALL - 1_998).is_empty());
    // Room below the bound: it saves (cut to the bound) and serves above everything.
    let now = node.poll_timeout().unwrap();
    node.handle_timeout(now, WALL - 1_997);
    let events = pump(&mut node, &mut store, now, WALL - 1_997);
    assert_eq!(events, vec![Event::Serving { window_end_ms: WALL + 3_003 }]);
    let after = node.get_ts(1, now).unwrap();
    assert!(after > before);
    assert_eq!(after.physical_ms, WALL + 3_001, "starts above the saved window");
}

#[test]
fn a_failed_save_steps_down_then_leads_again_with_a_new_ballot() {
    let mut store = MemStore::new();
    let t0 = Instant::from_millis(1);
    let (mut node, _) = start(&mut store, t0, WALL);
    let before = node.get_ts(1, t0).unwrap();
    // Force a save: the wall clock jumps past the window.
    let now = t0 + Duration::from_millis(50);
    node.handle_timeout(now, WALL + 10_000);
    let request = std::iter::from_fn(|| node.poll_output())
        .find_map(|out| match out {
            Output::Store { request, .. } => Some(request),
            _ => None,
        })
        .expect("the update asks for a save");
    node.handle_store_reply(NodeId(0), request.id, Err(StoreReject::Failed), now, WALL + 10_000);
    assert_eq!(node.poll_output(), Some(Output::Event(Event::SteppedDown { reason: StepDown::StoreFailed })));
    assert_eq!(node.get_ts(1, now), Err(GetTsError::NotLeader { leader: None }));
    // A late answer to the failed round changes nothing.
    node.handle_store_reply(NodeId(0), request.id, StoreReply::Ok(leasetso_core::StoreOk::Saved), now, WALL);
    assert_eq!(node.get_ts(1, now), Err(GetTsError::NotLeader { leader: None }));

    let retry = node.poll_timeout().unwrap();
    assert!(retry >= now + node.timing().proposer / 2, "others get the first chance");
    node.handle_timeout(retry, WALL + 10_000);
    let events = pump(&mut node, &mut store, retry, WALL + 10_000);
    assert!(matches!(events[0], Event::Leading { fence } if fence == Ballot::new(2, 1, NodeId(0))));
    assert!(node.get_ts(1, retry).unwrap() > before);
}

#[test]
fn a_fenced_reply_stops_serving_at_once_and_catches_up_the_counter() {
    let mut store = MemStore::new();
    let t0 = Instant::from_millis(1);
    let (mut node, _) = start(&mut store, t0, WALL);
    // Another leadership with a higher ballot loads on the store.
    let newer = Ballot::new(7, 9, NodeId(0));
    store.execute(leasetso_core::StoreOp::Load { fence: newer, check_primary: false }).unwrap();
    let now = t0 + Duration::from_millis(50);
    node.handle_timeout(now, WALL + 2_999);
    let events = pump(&mut node, &mut store, now, WALL + 2_999);
    assert_eq!(events.last(), Some(&Event::SteppedDown { reason: StepDown::Fenced { by: newer } }));
    assert!(node.get_ts(1, now).is_err());
    assert_eq!(store.window_end_ms(), WALL + 3_000, "the fenced save changed nothing");
    let retry = node.poll_timeout().unwrap();
    node.handle_timeout(retry, WALL + 3_000);
    let events = pump(&mut node, &mut store, retry, WALL + 3_000);
    assert!(
        matches!(events[0], Event::Leading { fence } if fence.counter == 8),
        "counter catches up above the fence: {events:?}"
    );
}

#[test]
fn a_store_that_never_answers_times_out() {
    let mut store = MemStore::new();
    let t0 = Instant::from_millis(1);
    let restart = store.bump_restart();
    let mut node = Node::new(NodeConfig::single(), restart, t0).unwrap();
    node.handle_timeout(t0, WALL);
    while node.poll_output().is_some() {}
    // The lease renews itself meanwhile; the round times out on its own deadline.
    let mut stepped_down_at = None;
    while stepped_down_at.is_none() {
        let t = node.poll_timeout().unwrap();
        assert!(t <= t0 + NodeConfig::single().store_timeout);
        node.handle_timeout(t, WALL);
        while let Some(out) = node.poll_output() {
            if out == Output::Event(Event::SteppedDown { reason: StepDown::StoreFailed }) {
                stepped_down_at = Some(t);
            }
        }
    }
    assert_eq!(stepped_down_at, Some(t0 + NodeConfig::single().store_timeout));
    assert!(node.get_ts(1, t0 + NodeConfig::single().store_timeout).is_err());
}

#[test]
fn invalid_configurations_are_rejected() {
    let cfg = NodeConfig { nodes: 0, ..NodeConfig::single() };
    assert!(Node::new(cfg, 1, Instant::ZERO).is_err());
    let cfg = NodeConfig::new(NodeId(3), 3);
    assert!(Node::new(cfg, 1, Instant::ZERO).is_err(), "id outside the cluster");
    let mut cfg = NodeConfig::single();
    cfg.lease.quarantine = Some(Duration::from_secs(1));
    assert!(Node::new(cfg, 1, Instant::ZERO).is_err(), "T3 broken");
    let mut cfg = NodeConfig::single();
    cfg.oracle.max_logical = 1 << 20;
    assert!(Node::new(cfg, 1, Instant::ZERO).is_err());
    let cfg = NodeConfig { store_timeout: Duration::ZERO, ..NodeConfig::single() };
    assert!(Node::new(cfg, 1, Instant::ZERO).is_err());
}

#[test]
fn catching_up_with_the_stored_fence_avoids_a_fenced_first_load() {
    let mut store = MemStore::new();
    store.bump_restart();
    // An earlier start led with a high counter (after several failovers).
    let old = Ballot::new(5, 1, NodeId(0));
    store.execute(leasetso_core::StoreOp::Load { fence: old, check_primary: false }).unwrap();
    let restart = store.bump_restart();
    let t0 = Instant::from_millis(1);
    let mut node = Node::new(NodeConfig::single(), restart, t0).unwrap();
    node.catch_up(store.fence());
    node.handle_timeout(t0, WALL);
    let events = pump(&mut node, &mut store, t0, WALL);
    assert_eq!(events[0], Event::Leading { fence: Ballot::new(6, 2, NodeId(0)) });
    assert!(matches!(events[1], Event::Serving { .. }), "{events:?}");
}
