//! One smol node on loopback with the smol client: GetTS, merging of
//! concurrent callers, pipelining, status, and the std client against it.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::Running;
use leasetso_smol::{Client, ClientError, ClientOptions, ErrorCode, Role};

fn opts() -> ClientOptions {
    ClientOptions { deadline: Duration::from_secs(2), ..ClientOptions::default() }
}

#[test]
fn get_ts_increases_and_status_reports_the_leader() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running::single(dir.path());
    smol::block_on(async {
        let client = Client::connect(&[server.addr], opts()).await.unwrap();
        let mut last = client.get_ts().await.unwrap();
        for n in [1, 5, 100, 1] {
            let next = client.get_ts_n(n).await.unwrap();
            assert!(next > last, "{next:?} after {last:?}");
            last = next;
        }
        let status = client.status().await.unwrap();
        assert_eq!(status.role, Role::Leader);
        assert_eq!(status.leader.addr, Some(server.addr));
        assert!(status.current >= last);
        match client.get_ts_n(0).await {
            Err(ClientError::InvalidCount { count: 0, .. }) => {}
            other => panic!("count 0: {other:?}"),
        }
    });
    let stats = server.handle.stats();
    assert_eq!(stats.connections, 1);
    assert_eq!(stats.timestamps, 1 + 1 + 5 + 100 + 1);
    server.stop();
}

/// Many tasks on one client: every caller gets its own range, the ranges are
/// disjoint, and fewer requests reach the server than calls were made.
#[test]
fn concurrent_callers_are_merged_and_ranges_are_disjoint() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running::single(dir.path());
    let ex = Arc::new(smol::Executor::new());
    let (tasks, per_task, count) = (64usize, 50usize, 3u32);
    let ranges = smol::block_on(ex.run(async {
        let client = Client::connect(&[server.addr], opts()).await.unwrap();
        let handles: Vec<_> = (0..tasks)
            .map(|_| {
                let client = client.clone();
                ex.spawn(async move {
                    let mut mine = Vec::new();
                    for _ in 0..per_task {
                        let last = client.get_ts_n(count).await.unwrap().to_u64();
                        mine.push(last);
                    }
                    mine
                })
            })
            .collect();
        let mut all = Vec::new();
        for h in handles {
            all.extend(h.await);
        }
        all
    }));
    let mut seen = HashSet::new();
    for last in &ranges {
        for ts in last - u64::from(count) + 1..=*last {
            assert!(seen.insert(ts), "timestamp {ts} handed out twice");
        }
    }
    let stats = server.handle.stats();
    let calls = (tasks * per_task) as u64;
    assert_eq!(stats.timestamps, calls * u64::from(count));
    assert!(
        stats.get_ts_requests < calls,
        "{} requests for {calls} calls: nothing merged",
        stats.get_ts_requests
    );
}

/// With callers arriving while a request is out, the client keeps more than
/// one request in flight on its one connection.
#[test]
fn requests_are_pipelined() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running::single(dir.path());
    let ex = Arc::new(smol::Executor::new());
    let max_seen = Arc::new(AtomicUsize::new(0));
    smol::block_on(ex.run(async {
        let o = ClientOptions { max_in_flight: 4, max_batch: 1, ..opts() };
        let client = Client::connect(&[server.addr], o).await.unwrap();
        let handles: Vec<_> = (0..16)
            .map(|_| {
                let client = client.clone();
                let max_seen = Arc::clone(&max_seen);
                ex.spawn(async move {
                    for _ in 0..200 {
                        client.get_ts().await.unwrap();
                        max_seen.fetch_max(client.in_flight(), Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for h in handles {
            h.await;
        }
    }));
    let seen = max_seen.load(Ordering::Relaxed);
    assert!(seen > 1 && seen <= 4, "at most {seen} requests were in flight at once");
    assert_eq!(server.handle.stats().connections, 1);
}

/// No seeds fail at once; `max_in_flight` 0 is the client's own choice,
/// not an error (the connect then fails only for want of a server).
#[test]
fn no_seeds_fail_at_connect_and_zero_in_flight_is_the_default() {
    let o = ClientOptions { max_in_flight: 0, ..opts() };
    let addr = "127.0.0.1:1".parse().unwrap();
    let err = smol::block_on(Client::connect(&[addr], o)).expect_err("nothing listens there");
    assert!(!matches!(err, ClientError::InvalidOptions { .. }), "{err}");
    let err = smol::block_on(Client::connect(&[], opts())).expect_err("no seeds");
    assert!(matches!(err, ClientError::NoSeeds), "{err}");
}

/// A client naming another cluster is refused at the handshake.
#[test]
fn cluster_mismatch_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running::single(dir.path());
    let err = smol::block_on(Client::connect(&[server.addr], ClientOptions { cluster_id: 99, ..opts() }))
        .expect_err("another cluster's client");
    assert_eq!(err.code(), Some(ErrorCode::ClusterMismatch), "{err}");
}

/// A server whose tasks run on three threads serves many connections at
/// once, hands out no timestamp twice, and stops cleanly.
#[test]
fn several_workers_serve_many_connections() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = leasetso_smol::ServerConfig::new("127.0.0.1:0".parse().unwrap(), dir.path());
    let server = Running::from_bound(leasetso_smol::Server::bind(cfg).unwrap().with_workers(3));
    assert!(smol::block_on(server.handle.wait_serving(Duration::from_secs(5))));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let addr = server.addr;
            std::thread::spawn(move || {
                smol::block_on(async {
                    let client = leasetso_smol::Client::connect(&[addr], Default::default()).await.unwrap();
                    let mut got = Vec::with_capacity(300);
                    for _ in 0..300 {
                        got.push(client.get_ts().await.unwrap().to_u64());
                    }
                    got
                })
            })
        })
        .collect();
    let mut all: Vec<u64> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    let n = all.len();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), n, "a timestamp was handed out twice");
    assert_eq!(server.handle.stats().connections, 8);
    server.stop();
}
