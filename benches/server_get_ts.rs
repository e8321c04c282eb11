//! The std server over loopback: GetTS through ONE shared, batching `Client`
//! at 1, 8, 64 and 256 concurrent callers (threads), each asking for one
//! timestamp at a time. The same-run baseline is a bare TCP ping-pong (17
//! bytes out, 25 back, `TCP_NODELAY`) at one caller: the floor of one round
//! trip, which a lone caller cannot beat.
//!
//! Then the same with callers that batch themselves: `get_ts_n(64)` at 1 and
//! 8 callers (`shared_client_n64`), 64 timestamps per call.
//!
//! Throughput counts timestamps: one iteration is one call (one timestamp,
//! or 64 for `shared_client_n64`) handed to one caller, and one round trip
//! for the ping-pong.

use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use leasetso_benches::{PingPong, start_server};
use leasetso_std::Client;

/// Runs `iters` calls for `count` timestamps each, split over `callers`
/// threads sharing `client`; returns the time from the start barrier until
/// the last caller is done (spawning the threads is not timed).
fn shared_client(client: &Client, callers: u64, count: u32, iters: u64) -> Duration {
    let start = Barrier::new(callers as usize + 1);
    let done = Barrier::new(callers as usize + 1);
    std::thread::scope(|s| {
        for i in 0..callers {
            // The first `iters % callers` callers take one call more.
            let calls = iters / callers + u64::from(i < iters % callers);
            let (start, done) = (&start, &done);
            s.spawn(move || {
                start.wait();
                for _ in 0..calls {
                    black_box(client.get_ts_n(count).expect("get_ts"));
                }
                done.wait();
            });
        }
        start.wait();
        let t0 = Instant::now();
        done.wait();
        t0.elapsed()
    })
}

/// `iters` ping-pong round trips on one spawned thread, timed like
/// [`shared_client`] at one caller so the floor has the same structure.
fn ping_pong(ping: &mut PingPong, iters: u64) -> Duration {
    std::thread::scope(|s| {
        s.spawn(move || {
            let t0 = Instant::now();
            for _ in 0..iters {
                black_box(ping.round_trip());
            }
            t0.elapsed()
        })
        .join()
        .expect("ping-pong thread")
    })
}

fn server_get_ts(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = start_server(dir.path());
    let client = Client::connect(server.local_addr()).expect("connect");
    let mut ping = PingPong::start().expect("ping-pong");

    let mut group = c.benchmark_group("server_get_ts");
    group.throughput(Throughput::Elements(1));
    // Every sample runs the same number of calls: a sample is one round of
    // thread spawning and barriers, so fewer, longer samples.
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(20);

    group.bench_function(BenchmarkId::new("tcp_ping_pong", 1), |b| {
        b.iter_custom(|iters| ping_pong(&mut ping, iters))
    });
    for (name, count, callers) in
        [("shared_client", 1u32, [1u64, 8, 64, 256].as_slice()), ("shared_client_n64", 64, [1, 8].as_slice())]
    {
        group.throughput(Throughput::Elements(u64::from(count)));
        for &callers in callers {
            let before = server.stats();
            group.bench_with_input(BenchmarkId::new(name, callers), &callers, |b, &callers| {
                b.iter_custom(|iters| shared_client(&client, callers, count, iters))
            });
            // How well the client merged callers: timestamps per request the
            // server saw (warm-up included).
            let after = server.stats();
            let requests = after.get_ts_requests - before.get_ts_requests;
            let timestamps = after.timestamps - before.timestamps;
            println!(
                "{name}/{callers}: {requests} requests, {:.1} timestamps per request",
                timestamps as f64 / requests.max(1) as f64
            );
        }
    }
    group.finish();

    drop(client);
    server.shutdown();
}

criterion_group!(benches, server_get_ts);
criterion_main!(benches);
