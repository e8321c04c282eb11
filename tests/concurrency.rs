//! Many concurrent clients against one real server: every timestamp of every
//! range is unique, each client's timestamps strictly increase, and the order
//! of timestamps agrees with real time across clients (linearizability of
//! GetTS): a call answered before another was sent got a lower range.

use std::net::SocketAddr;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

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
