//! The latency of one GetTS round trip at one caller, as a distribution:
//! criterion's per-iteration time is a mean, this prints the median, p90, p99
//! and p99.9 of individually timed calls (`std::time::Instant` around each).
//!
//! Four series are timed in the same run, interleaved in blocks so drift of
//! the machine (other work on its cores) hits them alike:
//! * `tcp_ping_pong`: the bare TCP floor (17 bytes out, 25 back, `TCP_NODELAY`);
//! * `raw_get_ts`: one GetTs frame written and one Ts read on a bare socket
//!   (no client library): what the server adds to the floor;
//! * `get_ts`: `Client::get_ts` on the same loopback server in this process;
//! * `get_ts_n(64)`: `Client::get_ts_n(64)`, one round trip for 64 timestamps.
//!
//! Not a criterion bench: it prints one line per series and the ratios to the
//! floor. `cargo bench -p leasetso-benches --bench latency` takes 50,000
//! samples per series; `LATENCY_SAMPLES=N` changes that. Run in test mode
//! (`cargo test --benches`), it takes a few hundred as a smoke test.

use std::hint::black_box;
use std::time::{Duration, Instant};

use leasetso_benches::{PingPong, RawClient, Summary, start_server};
use leasetso_std::Client;

/// Samples per block of one series before switching to the next.
const BLOCK: usize = 250;

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not.
    let bench = std::env::args().any(|a| a == "--bench");
    let samples: usize = match std::env::var("LATENCY_SAMPLES") {
        Ok(v) => v.parse().expect("LATENCY_SAMPLES is a number"),
        Err(_) if bench => 50_000,
        Err(_) => 300,
    };

    let dir = tempfile::tempdir().expect("temp dir");
    let server = start_server(dir.path());
    let client = Client::connect(server.local_addr()).expect("connect");
    let mut ping = PingPong::start().expect("ping-pong");
    let mut raw = RawClient::connect(server.local_addr()).expect("raw connect");

    // Warm up the connections, the caches and the branch predictors.
    let warm = samples.min(5_000);
    for _ in 0..warm {
        black_box(ping.round_trip());
        black_box(raw.get_ts_n(1));
        black_box(client.get_ts().expect("get_ts"));
        black_box(client.get_ts_n(64).expect("get_ts_n"));
    }

    let mut floor = Vec::with_capacity(samples);
    let mut bare = Vec::with_capacity(samples);
    let mut one = Vec::with_capacity(samples);
    let mut batch = Vec::with_capacity(samples);
    let time = |out: &mut Vec<Duration>, n: usize, f: &mut dyn FnMut()| {
        for _ in 0..n {
            let t0 = Instant::now();
            f();
            out.push(t0.elapsed());
        }
    };
    while floor.len() < samples {
        let n = BLOCK.min(samples - floor.len());
        time(&mut floor, n, &mut || {
            black_box(ping.round_trip());
        });
        time(&mut bare, n, &mut || {
            black_box(raw.get_ts_n(1));
        });
        time(&mut one, n, &mut || {
            black_box(client.get_ts().expect("get_ts"));
        });
        time(&mut batch, n, &mut || {
            black_box(client.get_ts_n(64).expect("get_ts_n"));
        });
    }
    drop(raw);
    drop(client);
    server.shutdown();

    let floor = Summary::of(&mut floor);
    let bare = Summary::of(&mut bare);
    let one = Summary::of(&mut one);
    let batch = Summary::of(&mut batch);
    println!("latency at 1 caller, {samples} samples per series, interleaved in blocks of {BLOCK}");
    println!("  {:<14} {floor}", "tcp_ping_pong");
    println!("  {:<14} {bare}", "raw_get_ts");
    println!("  {:<14} {one}", "get_ts");
    println!("  {:<14} {batch}", "get_ts_n(64)");
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    println!(
        "  raw_get_ts / ping-pong: p50 {:.2}x  p99 {:.2}x  mean {:.2}x",
        ratio(bare.p50, floor.p50),
        ratio(bare.p99, floor.p99),
        ratio(bare.mean, floor.mean)
    );
    println!(
        "  get_ts / ping-pong: p50 {:.2}x  p99 {:.2}x  mean {:.2}x",
        ratio(one.p50, floor.p50),
        ratio(one.p99, floor.p99),
        ratio(one.mean, floor.mean)
    );
    println!(
        "  get_ts_n(64) / ping-pong: p50 {:.2}x  p99 {:.2}x; {:.0} timestamps/s at the median",
        ratio(batch.p50, floor.p50),
        ratio(batch.p99, floor.p99),
        64.0 / batch.p50.as_secs_f64()
    );
}
