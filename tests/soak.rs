//! Abuse under load, with real processes: a 3-node cluster (both runtimes)
//! serves well-behaved clients while others flood it with requests of the
//! largest count and hold hundreds of idle and half-open connections. Every
//! well-behaved call succeeds and the history they saw is valid.
//!
//! 15 s by default; `LEASETSO_SOAK_SECS=1800` for the 30-minute run, which
//! also holds 1,000 idle connections instead of 300.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use leasetso_core::wire::VERSION;
use leasetso_core::{ErrorCode, Frame, MAX_LOGICAL};
use leasetso_tests::harness::cluster::{Cluster, ClusterOptions, SLACK, exclusive};
use leasetso_tests::harness::load::{Load, LoadOptions};
use leasetso_tests::{RawConn, Runtime, encode, wall_ms};

/// How long the run lasts.
fn seconds() -> u64 {
    std::env::var("LEASETSO_SOAK_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(15)
}

/// Raises this process's open-file limit to its hard limit: the idle
/// connections need descriptors on this side too.
fn raise_nofile() -> u64 {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let _ = setrlimit(Resource::Nofile, Rlimit { current: limit.maximum, maximum: limit.maximum });
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

/// Requests of the largest count, as fast as the leader answers, following
/// its hints; every error is ignored (this client is not well-behaved).
fn max_count_flood(seeds: Vec<SocketAddr>, stop: Arc<AtomicBool>, sent: Arc<AtomicU64>) {
    let mut at = 0;
    let mut conn: Option<RawConn> = None;
    while !stop.load(Ordering::Relaxed) {
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match RawConn::connect(seeds[at % seeds.len()]).and_then(|mut c| c.hello().map(|_| c)) {
                Ok(c) => conn.insert(c),
                Err(_) => {
                    at += 1;
                    thread::sleep(Duration::from_millis(50));
                    continue;
                }
            },
        };
        let id = c.next_id();
        if c.send(&Frame::GetTs { id, count: MAX_LOGICAL - 1 }).is_err() {
            conn = None;
            continue;
        }
        sent.fetch_add(1, Ordering::Relaxed);
        match c.recv() {
            Ok(Frame::Ts { .. }) => {}
            Ok(Frame::Error { code: ErrorCode::NotLeader, leader, .. }) => {
                if let Some(addr) = leader.addr {
                    at = seeds.iter().position(|&s| s == addr).unwrap_or(at + 1);
                } else {
                    at += 1;
                }
                conn = None;
            }
            Ok(_) => {}
            Err(_) => conn = None,
        }
    }
}

/// Holds `n` connections spread over `seeds` that never finish a
/// handshake (every other one sends half a Hello), reopening those the
/// servers close; returns how many it opened in all.
fn idle_flood(seeds: Vec<SocketAddr>, n: usize, stop: Arc<AtomicBool>, opened: Arc<AtomicU64>) {
    let half_hello = encode(&Frame::Hello { version: VERSION, cluster_id: 0 })[..6].to_vec();
    let open = |i: usize| {
        let s = TcpStream::connect_timeout(&seeds[i % seeds.len()], Duration::from_secs(2)).ok()?;
        if i.is_multiple_of(2) {
            let _ = (&s).write_all(&half_hello);
        }
        s.set_nonblocking(true).ok()?;
        opened.fetch_add(1, Ordering::Relaxed);
        Some(s)
    };
    let mut conns: Vec<Option<TcpStream>> = (0..n).map(open).collect();
    let mut buf = [0u8; 256];
    while !stop.load(Ordering::Relaxed) {
        for (i, slot) in conns.iter_mut().enumerate() {
            let closed = match slot {
                None => true,
                Some(s) => match s.read(&mut buf) {
                    Ok(0) => true,
                    Ok(_) => false,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => false,
                    Err(_) => true,
                },
            };
            if closed {
                *slot = open(i);
            }
        }
        thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_cluster_serves_well_behaved_clients_through_a_flood() {
    let _serial = exclusive();
    let secs = seconds();
    let idle = if secs >= 600 { 1000 } else { 300 };
    let nofile = raise_nofile();
    assert!(
        nofile > idle as u64 + 200,
        "the open-file limit {nofile} is too low for {idle} idle connections"
    );
    let opts = ClusterOptions {
        lease_ms: 1000,
        runtimes: vec![Runtime::Std, Runtime::Smol, Runtime::Std],
        ..ClusterOptions::default()
    };
    let cluster = Cluster::start(3, opts);
    cluster.wait_leader(Duration::from_secs(15));
    cluster.wait_serving(Duration::from_secs(15));
    let seeds = cluster.client_addrs();

    let stop = Arc::new(AtomicBool::new(false));
    let (sent, opened) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut flood = Vec::new();
    for _ in 0..2 {
        let (seeds, stop, sent) = (seeds.clone(), Arc::clone(&stop), Arc::clone(&sent));
        flood.push(thread::spawn(move || max_count_flood(seeds, stop, sent)));
    }
    {
        let (seeds, stop, opened) = (seeds.clone(), Arc::clone(&stop), Arc::clone(&opened));
        flood.push(thread::spawn(move || idle_flood(seeds, idle, stop, opened)));
    }
    let load = Load::start(
        &seeds,
        LoadOptions { clients: 4, raw_clients: 1, pause: Duration::from_millis(2), ..LoadOptions::default() },
    );
    let began = Instant::now();
    while began.elapsed() < Duration::from_secs(secs) {
        thread::sleep(Duration::from_secs(1));
        if load.failed() > 0 {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in flood {
        let _ = t.join();
    }
    let history = load.stop();
    history.assert_no_failures("well-behaved clients through the flood");
    let summary = history.check(SLACK);
    eprintln!(
        "{secs} s: {} well-behaved calls ({} timestamps), {} max-count requests, {} idle connections opened",
        summary.ok,
        summary.timestamps,
        sent.load(Ordering::Relaxed),
        opened.load(Ordering::Relaxed)
    );
    assert!(summary.ok > 100, "only {} well-behaved calls in {secs} s", summary.ok);
    // The flood of maximal counts never pushes physical further ahead of
    // the wall clock than the bound (--max-ahead-ms, 5 s by default; 1 s
    // of slack for the clocks of the processes and this one).
    let ahead = history
        .calls()
        .iter()
        .map(|c| c.last.physical_ms as i64 - (wall_ms() as i64 - c.received.elapsed().as_millis() as i64))
        .max()
        .unwrap_or(0);
    eprintln!("physical ran at most {ahead} ms ahead of the wall clock");
    assert!(ahead <= 6_000, "physical ran {ahead} ms ahead of the wall clock under the flood");
    assert!(sent.load(Ordering::Relaxed) > 100, "the flood did not flood");
    // Idle connections were closed by the handshake deadline and reopened.
    if secs >= 10 {
        assert!(
            opened.load(Ordering::Relaxed) > idle as u64,
            "no idle connection was ever closed by a server"
        );
    }
}
