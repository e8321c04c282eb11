//! The async client (`leasetso_smol::Client`) with N concurrent callers as
//! tasks, against the std and the smol server, beside the blocking client
//! (`leasetso_std::Client`, N threads) and the bare TCP ping-pong floor.
//!
//! Servers: `target/release/leasetso serve --runtime std` and `--runtime
//! smol` (whichever `serve --help` offers), both started at the beginning on
//! loopback and killed at the end ([`ServeProcess`]). Callers: ONE client per
//! server shared by N tasks on an `async_executor::Executor` run by
//! `SMOL_WORKERS` threads (default: one per core, like the tokio runtime of
//! the peers harness), each task calling `get_ts()` in a loop; the std
//! client is shared by N OS threads the same way. Every configuration is run
//! `SMOL_ROUNDS` times, interleaved (every column in turn, then the next
//! round), and the median round is printed with every round's rate.
//!
//! Under each row of rates, the CPU time (user + system, from `/proc`) the
//! bench process and the column's server spent per timestamp over all
//! rounds: which side a plateau comes from. (The bench process holds every
//! client; only the measured one is busy during a run.)
//!
//! Then the latency at one caller: every call timed (`Instant` around it),
//! in blocks of 250 per series, interleaved with the ping-pong floor so all
//! series see the same moments of the machine; p50, p99 and their ratios to
//! the floor.
//!
//! ```sh
//! cargo build --release -p leasetso && cargo bench -p leasetso-benches --bench smol_client
//! ```
//!
//! Environment: `SMOL_CALLERS` (1,8,64,256,1024), `SMOL_SECONDS` (3),
//! `SMOL_WARMUP` (0.5), `SMOL_ROUNDS` (3), `SMOL_WORKERS` (cores),
//! `SMOL_SERVERS` (std,smol), `SMOL_STD_CLIENT_MAX` (the most threads the
//! std client is run with, 256), `SMOL_LATENCY_SAMPLES` (50000 per series),
//! `SMOL_IN_FLIGHT` (the smol client's `max_in_flight`, its default unless
//! set), `LEASETSO_BIN`. Run in test mode (`cargo test --benches`) it makes one
//! short round at 1 and 8 callers and 300 latency samples as a smoke test.
//! Not a test: it asserts nothing about the speed.

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use leasetso_benches::{
    PingPong, ServeProcess, SmolPool, Summary, find_leasetso_bin, offered_runtimes, warn_if_stale,
};

/// Calls per block of one latency series before switching to the next.
const BLOCK: usize = 250;

struct Settings {
    callers: Vec<usize>,
    seconds: f64,
    warmup: f64,
    rounds: usize,
    workers: usize,
    servers: Vec<String>,
    std_client_max: usize,
    latency_samples: usize,
    /// The smol client's `max_in_flight`; `None` keeps its default.
    in_flight: Option<usize>,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v.trim().parse().unwrap_or_else(|_| panic!("{name}: cannot parse {v:?}")),
        Err(_) => default,
    }
}

fn env_list(name: &str, default: &str) -> Vec<String> {
    std::env::var(name)
        .unwrap_or_else(|_| default.to_string())
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

impl Settings {
    fn from_env(bench: bool, offered: &[String]) -> Settings {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let callers: Vec<usize> = env_list("SMOL_CALLERS", if bench { "1,8,64,256,1024" } else { "1,8" })
            .iter()
            .map(|s| s.parse().expect("SMOL_CALLERS: a list of numbers"))
            .collect();
        assert!(!callers.contains(&0), "SMOL_CALLERS: at least one caller each");
        Settings {
            callers,
            seconds: env_or("SMOL_SECONDS", if bench { 3.0 } else { 0.2 }),
            warmup: env_or("SMOL_WARMUP", if bench { 0.5 } else { 0.05 }),
            rounds: env_or("SMOL_ROUNDS", if bench { 3 } else { 1 }).max(1),
            workers: env_or("SMOL_WORKERS", cores).max(1),
            servers: env_list("SMOL_SERVERS", &offered.join(",")),
            std_client_max: env_or("SMOL_STD_CLIENT_MAX", 256),
            latency_samples: env_or("SMOL_LATENCY_SAMPLES", if bench { 50_000 } else { 300 }),
            in_flight: std::env::var("SMOL_IN_FLIGHT")
                .ok()
                .map(|v| v.trim().parse().expect("SMOL_IN_FLIGHT: a number"))
                .filter(|&n: &usize| n > 0),
        }
    }
}

/// A timed run: timestamps in how long.
struct Run {
    timestamps: u64,
    elapsed: Duration,
}

impl Run {
    fn rate(&self) -> f64 {
        self.timestamps as f64 / self.elapsed.as_secs_f64()
    }
}

/// The smol client: `callers` tasks sharing `client` for `time`.
fn run_smol(pool: &SmolPool, client: &leasetso_smol::Client, callers: usize, time: Duration) -> Run {
    let stop = Arc::new(AtomicBool::new(false));
    let barrier = Arc::new(smol::lock::Barrier::new(callers + 1));
    let tasks: Vec<smol::Task<u64>> = (0..callers)
        .map(|_| {
            let (stop, barrier, client) = (Arc::clone(&stop), Arc::clone(&barrier), client.clone());
            pool.spawn(async move {
                barrier.wait().await;
                let mut calls = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    black_box(client.get_ts().await.expect("smol client get_ts"));
                    calls += 1;
                }
                calls
            })
        })
        .collect();
    smol::block_on(async move {
        barrier.wait().await;
        let t0 = Instant::now();
        smol::Timer::after(time).await;
        stop.store(true, Ordering::Relaxed);
        let mut timestamps = 0;
        for t in tasks {
            timestamps += t.await;
        }
        Run { timestamps, elapsed: t0.elapsed() }
    })
}

/// The std client: `callers` OS threads sharing `client` for `time`.
fn run_std(client: &leasetso_std::Client, callers: usize, time: Duration) -> Run {
    let stop = AtomicBool::new(false);
    let barrier = std::sync::Barrier::new(callers + 1);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..callers)
            .map(|_| {
                let (stop, barrier) = (&stop, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    let mut calls = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        black_box(client.get_ts().expect("std client get_ts"));
                        calls += 1;
                    }
                    calls
                })
            })
            .collect();
        barrier.wait();
        let t0 = Instant::now();
        std::thread::sleep(time);
        stop.store(true, Ordering::Relaxed);
        let timestamps = workers.into_iter().map(|w| w.join().expect("caller thread")).sum();
        Run { timestamps, elapsed: t0.elapsed() }
    })
}

/// CPU time (user + system) of process `pid` so far, from
/// `/proc/<pid>/stat` (fields 14 and 15, in clock ticks of 10 ms).
fn cpu_time(pid: u32) -> Duration {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return Duration::ZERO };
    // The command name (field 2) is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    // `rest` starts at field 3 (the state): field k is token k - 3.
    let tokens: Vec<&str> = rest.split_whitespace().collect();
    let field = |k: usize| tokens.get(k - 3).and_then(|t| t.parse::<u64>().ok()).unwrap_or(0);
    let ticks = field(14) + field(15);
    Duration::from_millis(ticks * 10)
}

/// CPU spent during runs, per side, summed over rounds.
#[derive(Clone, Copy, Default)]
struct Cpu {
    client: Duration,
    server: Duration,
    timestamps: u64,
}

impl Cpu {
    /// (client, server) µs of CPU per timestamp.
    fn per_ts_us(&self) -> (f64, f64) {
        let n = self.timestamps.max(1) as f64;
        (self.client.as_secs_f64() * 1e6 / n, self.server.as_secs_f64() * 1e6 / n)
    }
}

/// One column of the throughput table.
enum Column<'a> {
    Smol { server: &'a str, pid: u32, client: leasetso_smol::Client },
    Std { server: &'a str, pid: u32, client: Box<leasetso_std::Client> },
}

impl Column<'_> {
    fn label(&self) -> String {
        match self {
            Column::Smol { server, .. } => format!("smol-cl→{server}"),
            Column::Std { server, .. } => format!("std-cl→{server}"),
        }
    }

    fn server_pid(&self) -> u32 {
        match self {
            Column::Smol { pid, .. } | Column::Std { pid, .. } => *pid,
        }
    }

    fn run(&self, pool: &SmolPool, callers: usize, time: Duration, std_max: usize) -> Option<Run> {
        match self {
            Column::Smol { client, .. } => Some(run_smol(pool, client, callers, time)),
            Column::Std { client, .. } if callers <= std_max => Some(run_std(client, callers, time)),
            Column::Std { .. } => None,
        }
    }
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 { xs[n / 2] } else { (xs[n / 2 - 1] + xs[n / 2]) / 2.0 }
}

fn fmt_rate(r: f64) -> String {
    if r >= 1e6 { format!("{:.2}M/s", r / 1e6) } else { format!("{:.1}k/s", r / 1e3) }
}

/// Connects the smol client to `addr`, retrying while the server starts.
fn connect_smol(pool: &SmolPool, addr: SocketAddr, in_flight: Option<usize>) -> leasetso_smol::Client {
    let mut opts = leasetso_smol::ClientOptions::default();
    if let Some(n) = in_flight {
        opts.max_in_flight = n;
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let opts = opts.clone();
        let attempt = pool.block_on(async move {
            let client = leasetso_smol::Client::connect(&[addr], opts).await?;
            client.get_ts().await?;
            Ok::<_, leasetso_smol::ClientError>(client)
        });
        match attempt {
            Ok(client) => return client,
            Err(e) if Instant::now() >= deadline => panic!("the smol client at {addr}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

fn connect_std(addr: SocketAddr) -> leasetso_std::Client {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match leasetso_std::Client::connect(addr).and_then(|c| c.get_ts().map(|_| c)) {
            Ok(client) => return client,
            Err(e) if Instant::now() >= deadline => panic!("the std client at {addr}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not.
    let bench = std::env::args().any(|a| a == "--bench");
    let Some(bin) = find_leasetso_bin() else {
        if bench {
            panic!("no leasetso binary: run `cargo build --release -p leasetso` or set LEASETSO_BIN");
        }
        println!("smol_client: no leasetso binary beside the bench, smoke run skipped");
        return;
    };
    warn_if_stale(&bin);
    let offered = offered_runtimes(&bin);
    let cfg = Settings::from_env(bench, &offered);
    let dir = tempfile::Builder::new().prefix("leasetso-smol-client-").tempdir().expect("a temp dir");
    let servers: Vec<(String, ServeProcess)> = cfg
        .servers
        .iter()
        .map(|rt| {
            let server = ServeProcess::start(&bin, rt, &dir.path().join(rt))
                .unwrap_or_else(|e| panic!("starting the {rt} server: {e}"));
            (rt.clone(), server)
        })
        .collect();
    let pool = SmolPool::new(cfg.workers);
    let mut columns = Vec::new();
    for (rt, server) in &servers {
        columns.push(Column::Smol {
            server: rt,
            pid: server.pid(),
            client: connect_smol(&pool, server.addr(), cfg.in_flight),
        });
    }
    for (rt, server) in &servers {
        columns.push(Column::Std {
            server: rt,
            pid: server.pid(),
            client: Box::new(connect_std(server.addr())),
        });
    }
    let load = || std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "smol_client: {} ({}), servers {}, executor with {} worker threads, smol client max_in_flight {}, \
         {} s per run after {} s warm-up, median of {} interleaved rounds; load average {}",
        bin.display(),
        offered.join("/"),
        servers.iter().map(|(rt, s)| format!("{rt} on {}", s.addr())).collect::<Vec<_>>().join(", "),
        cfg.workers,
        cfg.in_flight.unwrap_or(leasetso_smol::ClientOptions::default().max_in_flight),
        cfg.seconds,
        cfg.warmup,
        cfg.rounds,
        load().split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );

    println!("\n== throughput, one timestamp per call, timestamps/s, N callers sharing one client");
    let mut head = format!("{:>5}", "N");
    for c in &columns {
        head += &format!(" {:>15}", c.label());
    }
    println!("{head}");
    let time = Duration::from_secs_f64(cfg.seconds);
    let warm = Duration::from_secs_f64(cfg.warmup);
    for &n in &cfg.callers {
        let mut rates: Vec<Vec<f64>> = vec![Vec::new(); columns.len()];
        let mut cpu = vec![Cpu::default(); columns.len()];
        for _ in 0..cfg.rounds {
            for (i, c) in columns.iter().enumerate() {
                if !warm.is_zero() {
                    c.run(&pool, n, warm, cfg.std_client_max);
                }
                let (me0, srv0) = (cpu_time(std::process::id()), cpu_time(c.server_pid()));
                if let Some(run) = c.run(&pool, n, time, cfg.std_client_max) {
                    cpu[i].client += cpu_time(std::process::id()).saturating_sub(me0);
                    cpu[i].server += cpu_time(c.server_pid()).saturating_sub(srv0);
                    cpu[i].timestamps += run.timestamps;
                    rates[i].push(run.rate());
                }
            }
        }
        let mut row = format!("{n:>5}");
        let mut detail = Vec::new();
        for rs in &rates {
            if rs.is_empty() {
                row += &format!(" {:>15}", "-");
                detail.push("-".to_string());
            } else {
                row += &format!(" {:>15}", fmt_rate(median(rs.clone())));
                detail.push(rs.iter().map(|&r| fmt_rate(r)).collect::<Vec<_>>().join(","));
            }
        }
        println!("{row}   rounds [{}]", detail.join("] ["));
        let mut row = format!("{:>5}", "cpu");
        for (rs, c) in rates.iter().zip(&cpu) {
            if rs.is_empty() {
                row += &format!(" {:>15}", "-");
            } else {
                let (cl, sv) = c.per_ts_us();
                row += &format!(" {:>15}", format!("{cl:.2}+{sv:.2}us"));
            }
        }
        println!("{row}   (CPU per timestamp, client process + server process, over all rounds)");
    }

    println!(
        "\n== latency at one caller, {} calls per series, interleaved in blocks of {BLOCK}",
        cfg.latency_samples
    );
    let mut ping = PingPong::start().expect("ping-pong");
    let mut floor = Vec::with_capacity(cfg.latency_samples);
    let mut lat: Vec<Vec<Duration>> = vec![Vec::with_capacity(cfg.latency_samples); columns.len()];
    // Warm-up, untimed.
    for _ in 0..cfg.latency_samples.min(5_000) {
        black_box(ping.round_trip());
    }
    while floor.len() < cfg.latency_samples {
        let block = BLOCK.min(cfg.latency_samples - floor.len());
        for _ in 0..block {
            let t0 = Instant::now();
            black_box(ping.round_trip());
            floor.push(t0.elapsed());
        }
        for (i, c) in columns.iter().enumerate() {
            match c {
                Column::Smol { client, .. } => {
                    let client = client.clone();
                    let mut out = std::mem::take(&mut lat[i]);
                    lat[i] = pool.block_on(async move {
                        for _ in 0..block {
                            let t0 = Instant::now();
                            black_box(client.get_ts().await.expect("smol client get_ts"));
                            out.push(t0.elapsed());
                        }
                        out
                    });
                }
                Column::Std { client, .. } => {
                    for _ in 0..block {
                        let t0 = Instant::now();
                        black_box(client.get_ts().expect("std client get_ts"));
                        lat[i].push(t0.elapsed());
                    }
                }
            }
        }
    }
    let floor = Summary::of(&mut floor);
    println!("  {:<15} {floor}", "tcp-ping-pong");
    for (i, c) in columns.iter().enumerate() {
        let s = Summary::of(&mut lat[i]);
        println!(
            "  {:<15} {s}  (p50 {:.2}x, p99 {:.2}x the floor)",
            c.label(),
            s.p50.as_secs_f64() / floor.p50.as_secs_f64(),
            s.p99.as_secs_f64() / floor.p99.as_secs_f64()
        );
    }
    println!("load average at the end: {}", load().split_whitespace().take(3).collect::<Vec<_>>().join(" "));
}
