//! Many concurrent clients against one real server: every timestamp of every
//! range is unique, each client's timestamps strictly increase, and the order
//! of timestamps agrees with real time across clients (linearizability of
//! GetTS): a call answered before another was sent got a lower range.

use std::net::SocketAddr;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use leasetso_core::Timestamp;
use leasetso_std::{Client, ClientOptions, Server, ServerConfig};
use leasetso_tests::{Call, RawConn, ServerProcess, check_calls, data_dir, wall_ms};

/// Counts the calls cycle through: singles, small batches, one large range.
const COUNTS: [u32; 8] = [1, 1, 2, 1, 7, 1, 64, 1000];

fn raw_client(addr: SocketAddr, client: usize, calls: usize, start: Arc<Barrier>) -> Vec<Call> {
    let mut conn = RawConn::open(addr);
    let mut out = Vec::with_capacity(calls);
    start.wait();
    for i in 0..calls {
        let count = COUNTS[(i + client) % COUNTS.len()];
        let sent = Instant::now();
        let last = match conn.get_ts(count).expect("GetTS") {
            Ok(last) => last,
            Err(code) if code.is_retryable() => {
                // Not expected of a steady single node; a retry is a new call.
                conn.get_ts_retry(count, Instant::now() + Duration::from_secs(5)).expect("GetTS retried")
            }
            Err(code) => panic!("client {client}: GetTS({count}) failed with {code:?}"),
        };
        out.push(Call { client, sent, received: Instant::now(), count, last });
    }
    out
}

#[test]
fn concurrent_raw_connections_get_unique_linearizable_timestamps() {
    const CLIENTS: usize = 12;
    const CALLS: usize = 1500;
    let dir = data_dir();
    let server = ServerProcess::start_serving(dir.path());
    let start = Arc::new(Barrier::new(CLIENTS));
    let began = Instant::now();
    let handles: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let (addr, start) = (server.addr(), start.clone());
            thread::spawn(move || raw_client(addr, client, CALLS, start))
        })
        .collect();
    let calls: Vec<Call> =
        handles.into_iter().flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect();
    let elapsed = began.elapsed();
    assert_eq!(calls.len(), CLIENTS * CALLS);
    let total = check_calls(&calls);
    let wall = wall_ms();
    let max = calls.iter().map(|c| c.last).max().unwrap();
    assert!(max.physical_ms.abs_diff(wall) < 5_000, "physical {max:?} is far from the wall clock {wall}");
    eprintln!("{} calls, {total} timestamps, from {CLIENTS} connections in {elapsed:?}", calls.len());
    server.stop();
}

/// One thread's calls through `client`: singles and small ranges, alternating.
fn client_calls(client: &Client, id: usize, calls: usize, start: &Barrier) -> Vec<Call> {
    let mut out = Vec::with_capacity(calls);
    start.wait();
    for i in 0..calls {
        let count = COUNTS[(i + id) % (COUNTS.len() - 1)]; // no 1000s: keep batches varied but small
        let sent = Instant::now();
        let last = if count == 1 { client.get_ts() } else { client.get_ts_n(count) }
            .unwrap_or_else(|e| panic!("thread {id}: get_ts_n({count}): {e}"));
        out.push(Call { client: id, sent, received: Instant::now(), count, last });
    }
    out
}

#[test]
fn many_clients_and_shared_clients_get_unique_linearizable_timestamps() {
    const OWN: usize = 16; // threads with a Client each
    const SHARING: usize = 8; // threads sharing one Client (batched)
    const CALLS: usize = 2000;
    let dir = data_dir();
    let server = ServerProcess::start_serving(dir.path());
    let addr = server.addr();
    let start = Arc::new(Barrier::new(OWN + SHARING));
    let shared = Arc::new(Client::connect(addr).expect("connect the shared client"));
    let began = Instant::now();
    let mut handles = Vec::new();
    for id in 0..OWN {
        let start = start.clone();
        handles.push(thread::spawn(move || {
            let client = Client::connect(addr).unwrap_or_else(|e| panic!("thread {id}: connect: {e}"));
            client_calls(&client, id, CALLS, &start)
        }));
    }
    for id in OWN..OWN + SHARING {
        let (start, shared) = (start.clone(), shared.clone());
        handles.push(thread::spawn(move || client_calls(&shared, id, CALLS, &start)));
    }
    let calls: Vec<Call> =
        handles.into_iter().flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect();
    let elapsed = began.elapsed();
    assert_eq!(calls.len(), (OWN + SHARING) * CALLS);
    let total = check_calls(&calls);
    let wall = wall_ms();
    let max = calls.iter().map(|c| c.last).max().unwrap();
    assert!(max.physical_ms.abs_diff(wall) < 5_000, "physical {max:?} is far from the wall clock {wall}");
    // After all of it, the server continues above everything handed out.
    let after = shared.get_ts().unwrap();
    assert!(after > max, "{after:?} after {max:?}");
    eprintln!(
        "{} calls, {total} timestamps, {OWN} own + {SHARING} sharing threads in {elapsed:?}",
        calls.len()
    );
    server.stop();
}

/// In process, where the server's counters can be read: a Client shared by
/// many threads merges their calls into fewer requests, and each caller still
/// gets a range of its own.
#[test]
fn a_shared_client_merges_concurrent_calls() {
    const THREADS: usize = 8;
    const CALLS: usize = 1000;
    let dir = data_dir();
    let server = Server::start(ServerConfig::new("127.0.0.1:0".parse().unwrap(), dir.path())).expect("start");
    assert!(server.wait_serving(Duration::from_secs(10)), "the in-process server does not serve");
    let client = Arc::new(Client::connect(server.local_addr()).unwrap());
    let before = server.stats();
    let start = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|id| {
            let (client, start) = (client.clone(), start.clone());
            thread::spawn(move || client_calls(&client, id, CALLS, &start))
        })
        .collect();
    let calls: Vec<Call> =
        handles.into_iter().flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect();
    let total = check_calls(&calls);
    let after = server.stats();
    let requests = after.get_ts_requests - before.get_ts_requests;
    let served = after.timestamps - before.timestamps;
    assert!(
        requests < calls.len() as u64,
        "{} calls from {THREADS} threads sharing a client went out as {requests} requests: nothing was merged",
        calls.len()
    );
    assert_eq!(served, total, "the server handed out {served} timestamps, the callers received {total}");
    eprintln!("{} calls merged into {requests} requests", calls.len());
    server.shutdown();
}

/// A Client whose server restarts (same data dir, same port) reconnects by
/// itself, and what it gets afterwards is above everything before.
#[test]
fn a_client_rides_through_a_server_restart() {
    let dir = data_dir();
    let server = ServerProcess::start_serving(dir.path());
    let addr = server.addr();
    let client = Client::connect(addr).unwrap();
    let mut highest = Timestamp::ZERO;
    for _ in 0..100 {
        let ts = client.get_ts_n(3).unwrap();
        assert!(ts > highest);
        highest = ts;
    }
    server.stop();
    // Nothing answers meanwhile (a fresh client gives up at once, where the
    // old one would spend its whole retry budget).
    let fresh =
        Client::connect_with(addr, ClientOptions { deadline: Duration::ZERO, ..ClientOptions::default() });
    assert!(fresh.is_err(), "connected to a stopped server: {fresh:?}");
    let server =
        ServerProcess::try_start_at(&addr.to_string(), dir.path(), &[]).unwrap_or_else(|f| panic!("{f}"));
    let ts = client.get_ts().unwrap_or_else(|e| panic!("after the restart: {e}\n{}", server.log()));
    assert!(ts > highest, "after the restart {ts:?} is not above {highest:?}");
    server.stop();
}

/// Longer than a lease (3 s, renewed at half) and than a save interval
/// (3 s): under steady load the server renews its lease and extends its
/// window without a single refusal, and everything stays unique and ordered.
#[test]
fn steady_load_through_lease_renewals_and_window_saves() {
    const CLIENTS: usize = 6;
    const RUN: Duration = Duration::from_secs(5);
    let dir = data_dir();
    let server = ServerProcess::start_serving(dir.path());
    let addr = server.addr();
    let mut status = RawConn::open(addr);
    let (_, window_before, _) = status.status().unwrap();
    let start = Arc::new(Barrier::new(CLIENTS));
    let handles: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let start = start.clone();
            thread::spawn(move || {
                let mut conn = RawConn::open(addr);
                let mut out = Vec::new();
                start.wait();
                let end = Instant::now() + RUN;
                let mut i = 0;
                while Instant::now() < end {
                    let count = COUNTS[(i + client) % COUNTS.len()];
                    let sent = Instant::now();
                    let last = match conn.get_ts(count).expect("GetTS") {
                        Ok(last) => last,
                        Err(code) => {
                            panic!("client {client}: GetTS({count}) refused with {code:?} after {i} calls")
                        }
                    };
                    out.push(Call { client, sent, received: Instant::now(), count, last });
                    i += 1;
                    if i % 64 == 0 {
                        // Leave the driver some CPU on a small machine.
                        thread::sleep(Duration::from_millis(1));
                    }
                }
                out
            })
        })
        .collect();
    let calls: Vec<Call> =
        handles.into_iter().flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect();
    let total = check_calls(&calls);
    let (role, window_after, current) = status.status().unwrap();
    assert_eq!(role, leasetso_core::Role::Leader);
    assert!(
        window_after > window_before,
        "the window was not extended in {RUN:?} of load: {window_before} then {window_after}"
    );
    assert!(window_after > current.physical_ms);
    eprintln!("{} calls, {total} timestamps in {RUN:?}", calls.len());
    server.stop();
}
