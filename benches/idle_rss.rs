//! What idle client connections cost a server in memory: `leasetso serve`
//! (the release binary) on loopback, then 1,000 client connections that each
//! do the handshake and one GetTS and then stay open and idle; the server's
//! `VmRSS` and `VmHWM` (from `/proc/<pid>/status`) before, with the
//! connections open, and after they closed. Per connection = (RSS with them
//! − RSS before) / connections.
//!
//! Each runtime the binary offers (`--runtime std`, `--runtime smol` once
//! `leasetso serve --help` shows the flag) is measured in turn, in
//! `IDLE_RSS_ROUNDS` interleaved rounds (default 3) on a fresh data dir each,
//! and the median round is printed beside every round.
//!
//! ```sh
//! cargo build --release -p leasetso && cargo bench -p leasetso-benches --bench idle_rss
//! ```
//!
//! Environment: `LEASETSO_BIN` (default `target/release/leasetso` beside this
//! bench), `IDLE_RSS_CONNS` (1000), `IDLE_RSS_ROUNDS` (3),
//! `IDLE_RSS_RUNTIMES` (`std,smol`, or whichever the binary has),
//! `IDLE_RSS_SETTLE_MS` (how long the connections idle before the reading,
//! 2000). Run in test mode (`cargo test --benches`) it opens 20 connections
//! once per runtime as a smoke test.
//!
//! The bench process holds one descriptor per connection and the server one
//! more each: the soft `RLIMIT_NOFILE` is raised to the hard limit (the
//! server inherits it); with a hard limit below connections + 64 it stops
//! and says so. Not a test: it asserts nothing about the sizes.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use leasetso_benches::{ServeProcess, find_leasetso_bin, offered_runtimes, warn_if_stale};

fn env_num(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v.parse().unwrap_or_else(|_| panic!("{name} is a number, not {v:?}")),
        Err(_) => default,
    }
}

/// Raises the soft descriptor limit to the hard one; returns the soft limit
/// in force afterwards.
fn raise_nofile() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        limit.current = limit.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, limit) {
            eprintln!("could not raise RLIMIT_NOFILE: {e}");
        }
    }
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

/// What `/proc/<pid>/status` says of the server's memory, in KiB, and its
/// thread count.
#[derive(Clone, Copy, Debug, Default)]
struct Mem {
    rss_kib: u64,
    hwm_kib: u64,
    anon_kib: u64,
    threads: u64,
}

fn read_mem(pid: u32) -> io::Result<Mem> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Ok(Mem {
        rss_kib: field("VmRSS:"),
        hwm_kib: field("VmHWM:"),
        anon_kib: field("RssAnon:"),
        threads: field("Threads:"),
    })
}

/// One client connection: `TCP_NODELAY`, the handshake, one GetTS; then it
/// is only held open.
fn open_conn(addr: SocketAddr) -> io::Result<TcpStream> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    // Hello: len 14, kind 0x01, "LTSO", version 1, cluster id 0 (any).
    let mut hello = [0u8; 18];
    hello[..4].copy_from_slice(&14u32.to_be_bytes());
    hello[4] = 0x01;
    hello[5..9].copy_from_slice(b"LTSO");
    hello[9] = 1;
    stream.write_all(&hello)?;
    // Welcome: len 16, kind 0x02.
    let mut welcome = [0u8; 20];
    stream.read_exact(&mut welcome)?;
    if welcome[4] != 0x02 {
        return Err(io::Error::other(format!("the handshake was answered with kind {:#04x}", welcome[4])));
    }
    // GetTs: len 13, kind 0x10, id 1, count 1; a Ts frame (kind 0x11) back.
    let mut get = [0u8; 17];
    get[..4].copy_from_slice(&13u32.to_be_bytes());
    get[4] = 0x10;
    get[5..13].copy_from_slice(&1u64.to_be_bytes());
    get[13..17].copy_from_slice(&1u32.to_be_bytes());
    stream.write_all(&get)?;
    let mut ts = [0u8; 25];
    stream.read_exact(&mut ts)?;
    if ts[4] != 0x11 {
        return Err(io::Error::other(format!("GetTs was answered with kind {:#04x}", ts[4])));
    }
    Ok(stream)
}

/// One round against one runtime.
#[derive(Clone, Copy, Debug)]
struct Round {
    /// Serving, no client yet.
    before: Mem,
    /// One connection open (handshake and GetTS done).
    one: Mem,
    /// All connections open and idle for the settle time.
    all: Mem,
    /// All closed again, after the settle time.
    closed: Mem,
    /// How long opening all connections took.
    open_time: Duration,
}

impl Round {
    /// (RSS with all − RSS before) / conns, in KiB.
    fn per_conn_kib(&self, conns: u64) -> f64 {
        (self.all.rss_kib as f64 - self.before.rss_kib as f64) / conns as f64
    }
}

fn round(bin: &Path, runtime: &str, conns: u64, settle: Duration) -> Round {
    let dir = tempfile::Builder::new().prefix("leasetso-idle-rss-").tempdir().expect("a temp dir");
    let server = ServeProcess::start(bin, runtime, &dir.path().join("data"))
        .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
    let pid = server.pid();
    // Let the node finish its start (sync, first window save).
    thread::sleep(settle);
    let before = read_mem(pid).expect("reading the server's /proc status");
    let t0 = Instant::now();
    let mut open = Vec::with_capacity(conns as usize);
    open.push(open_conn(server.addr()).expect("the first connection"));
    thread::sleep(Duration::from_millis(200));
    let one = read_mem(pid).expect("/proc status");
    for i in 1..conns {
        match open_conn(server.addr()) {
            Ok(s) => open.push(s),
            Err(e) => panic!("{runtime}: connection {} of {conns}: {e}", i + 1),
        }
    }
    let open_time = t0.elapsed();
    thread::sleep(settle);
    let all = read_mem(pid).expect("/proc status");
    drop(open);
    thread::sleep(settle);
    let closed = read_mem(pid).expect("/proc status");
    Round { before, one, all, closed, open_time }
}

fn median_by<T: Copy>(rounds: &[T], key: impl Fn(&T) -> f64) -> T {
    let mut sorted: Vec<T> = rounds.to_vec();
    sorted.sort_by(|a, b| key(a).total_cmp(&key(b)));
    sorted[(sorted.len() - 1) / 2]
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not.
    let bench = std::env::args().any(|a| a == "--bench");
    let Some(bin) = find_leasetso_bin() else {
        if bench {
            panic!("no leasetso binary: run `cargo build --release -p leasetso` or set LEASETSO_BIN");
        }
        println!("idle_rss: no leasetso binary beside the bench, smoke run skipped");
        return;
    };
    warn_if_stale(&bin);
    let conns = env_num("IDLE_RSS_CONNS", if bench { 1000 } else { 20 });
    let rounds = env_num("IDLE_RSS_ROUNDS", if bench { 3 } else { 1 }).max(1);
    let settle = Duration::from_millis(env_num("IDLE_RSS_SETTLE_MS", if bench { 2000 } else { 200 }));
    let offered = offered_runtimes(&bin);
    let runtimes: Vec<String> = match std::env::var("IDLE_RSS_RUNTIMES") {
        Ok(list) => list.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect(),
        Err(_) => offered.clone(),
    };
    let nofile = raise_nofile();
    if nofile < conns + 64 {
        eprintln!(
            "RLIMIT_NOFILE is {nofile}: too low for {conns} connections; raise the hard limit \
             (`ulimit -Hn`) to at least {}",
            conns + 64
        );
        std::process::exit(2);
    }
    println!(
        "idle_rss: {} ({}), {conns} connections, {rounds} rounds, settle {settle:?}, RLIMIT_NOFILE {nofile}, \
         load average {}",
        bin.display(),
        offered.join("/"),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );

    let mut results: Vec<(String, Vec<Round>)> = runtimes.iter().map(|r| (r.clone(), Vec::new())).collect();
    for i in 0..rounds {
        for (runtime, done) in &mut results {
            let r = round(&bin, runtime, conns, settle);
            println!(
                "round {} {runtime:>5}: RSS before {} KiB, 1 conn {} KiB, {conns} conns {} KiB (HWM {} KiB, anon {} KiB, \
                 {} threads, opened in {:.0} ms), closed {} KiB (HWM {} KiB): {:.1} KiB per connection",
                i + 1,
                r.before.rss_kib,
                r.one.rss_kib,
                r.all.rss_kib,
                r.all.hwm_kib,
                r.all.anon_kib,
                r.all.threads,
                r.open_time.as_secs_f64() * 1e3,
                r.closed.rss_kib,
                r.closed.hwm_kib,
                r.per_conn_kib(conns),
            );
            done.push(r);
        }
    }
    println!();
    println!("median round per runtime (by per-connection RSS):");
    println!(
        "{:>7} {:>12} {:>12} {:>14} {:>12} {:>9} {:>12} {:>14}",
        "runtime",
        "before KiB",
        "1 conn KiB",
        "all conns KiB",
        "HWM KiB",
        "threads",
        "closed KiB",
        "KiB per conn"
    );
    let mut per_conn = Vec::new();
    for (runtime, done) in &results {
        let m = median_by(done, |r| r.per_conn_kib(conns));
        println!(
            "{runtime:>7} {:>12} {:>12} {:>14} {:>12} {:>9} {:>12} {:>14.2}",
            m.before.rss_kib,
            m.one.rss_kib,
            m.all.rss_kib,
            m.all.hwm_kib,
            m.all.threads,
            m.closed.rss_kib,
            m.per_conn_kib(conns)
        );
        per_conn.push((runtime.clone(), m.per_conn_kib(conns), m.all.rss_kib));
    }
    if let (Some(std), Some(smol)) =
        (per_conn.iter().find(|(r, ..)| r == "std"), per_conn.iter().find(|(r, ..)| r == "smol"))
    {
        println!(
            "smol / std: {:.3}x per connection, {:.3}x RSS with {conns} connections",
            smol.1 / std.1,
            smol.2 as f64 / std.2 as f64
        );
    }
}
