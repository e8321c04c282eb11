//! Side by side: leasetso and tsoracle under the same load, each through its
//! own Rust client, in one run on one machine.
//!
//! `benches/peers/run.sh` starts both servers on loopback and runs this with
//! their addresses. The load: N concurrent callers sharing ONE client, each
//! asking for one timestamp at a time, for a fixed time; N in 1, 8, 64, 256, 1024.
//! Then a batch mode (leasetso `get_ts_n(64)` against tsoracle
//! `get_ts_batch(64)`), the latency at N = 1 (per-call p50/p99) next to a
//! bare TCP ping-pong floor, and the core count.
//!
//! Each client is driven the way it is meant to be used: leasetso's blocking
//! `Client` from N OS threads; leasetso's async `leasetso_smol::Client` from
//! N tasks on an `async_executor::Executor` run by one thread per core
//! (against the std server at `--leasetso` and, with `--leasetso-smol`, the
//! smol server too); tsoracle's async `Client` from N tokio tasks on a
//! multi-threaded runtime with one worker per core. tsoracle runs at its
//! default coalescing wait (`batch_flush_interval` 1 ms, "default") and with
//! the wait set to 0 ("wait 0", its best). Each async client also runs on
//! an executor of ONE thread (`smol-1t`, `tso-wait0-1t`, compared with
//! each other): with a few callers, work spread over two threads costs
//! thread wake-ups per round trip, and one thread does more. A diagnostic
//! column drives
//! tsoracle (wait 0) from N OS threads like leasetso, to separate the client's
//! design from the cost of one blocked thread per caller.
//!
//! Every configuration is measured `--rounds` times, interleaved (each system
//! in turn, then the next round), and the median round is reported, so slow
//! drift of the shared machine hits all alike.

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use leasetso_benches::{PingPong, SmolPool, Summary};

/// What to measure, from the command line.
struct Args {
    leasetso: SocketAddr,
    leasetso_smol: Option<SocketAddr>,
    leasetso_base: Option<SocketAddr>,
    leasetso_tls: Option<SocketAddr>,
    leasetso_metrics: Option<SocketAddr>,
    leasetso_pd: Option<String>,
    leasetso_resp: Option<SocketAddr>,
    certs: Option<std::path::PathBuf>,
    tsoracle: String,
    only: Option<Vec<String>>,
    seconds: f64,
    warmup: f64,
    rounds: usize,
    callers: Vec<usize>,
    batch: u32,
    batch_callers: Vec<usize>,
    /// Server processes by the address they serve (`--pids ADDR=PID,...`):
    /// their CPU time is read around every timed run.
    pids: Vec<(String, u32)>,
}

const USAGE: &str = "usage: leasetso-peers --leasetso HOST:PORT [--leasetso-smol HOST:PORT] [--leasetso-base HOST:PORT] \
[--leasetso-tls HOST:PORT --certs DIR] [--leasetso-metrics HOST:PORT] [--leasetso-pd http://HOST:PORT] [--leasetso-resp HOST:PORT] \
--tsoracle http://HOST:PORT [--seconds S (5)] [--warmup S (0.5)] [--rounds R (3)] [--callers 1,8,64,256,1024] \
[--batch 64] [--batch-callers 1,8] [--only smol,smol-metrics,... (columns by short name)] \
[--pids ADDR=PID,... (servers whose CPU time per timestamp is reported)]";

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        leasetso: "127.0.0.1:7400".parse().map_err(|e| format!("{e}"))?,
        leasetso_smol: None,
        leasetso_base: None,
        leasetso_tls: None,
        leasetso_metrics: None,
        leasetso_pd: None,
        leasetso_resp: None,
        certs: None,
        tsoracle: "http://127.0.0.1:50551".into(),
        only: None,
        seconds: 5.0,
        warmup: 0.5,
        rounds: 3,
        callers: vec![1, 8, 64, 256, 1024],
        batch: 64,
        batch_callers: vec![1, 8],
        pids: Vec::new(),
    };
    let list = |v: &str| -> Result<Vec<usize>, String> {
        // An empty list skips that part of the run (`--batch-callers ''`).
        v.split(',')
            .filter(|n| !n.trim().is_empty())
            .map(|n| n.trim().parse().map_err(|e| format!("{n}: {e}")))
            .collect()
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--leasetso" => args.leasetso = value()?.parse().map_err(|e| format!("--leasetso: {e}"))?,
            "--leasetso-smol" => {
                args.leasetso_smol = Some(value()?.parse().map_err(|e| format!("--leasetso-smol: {e}"))?)
            }
            "--leasetso-base" => {
                args.leasetso_base = Some(value()?.parse().map_err(|e| format!("--leasetso-base: {e}"))?)
            }
            "--leasetso-tls" => {
                args.leasetso_tls = Some(value()?.parse().map_err(|e| format!("--leasetso-tls: {e}"))?)
            }
            "--leasetso-metrics" => {
                args.leasetso_metrics =
                    Some(value()?.parse().map_err(|e| format!("--leasetso-metrics: {e}"))?)
            }
            "--leasetso-pd" => {
                let v = value()?;
                args.leasetso_pd = Some(if v.contains("://") { v } else { format!("http://{v}") });
            }
            "--leasetso-resp" => {
                args.leasetso_resp = Some(value()?.parse().map_err(|e| format!("--leasetso-resp: {e}"))?)
            }
            "--only" => args.only = Some(value()?.split(',').map(|c| c.trim().to_string()).collect()),
            "--certs" => args.certs = Some(value()?.into()),
            "--tsoracle" => {
                let v = value()?;
                args.tsoracle = if v.contains("://") { v } else { format!("http://{v}") };
            }
            "--seconds" => args.seconds = value()?.parse().map_err(|e| format!("--seconds: {e}"))?,
            "--warmup" => args.warmup = value()?.parse().map_err(|e| format!("--warmup: {e}"))?,
            "--rounds" => args.rounds = value()?.parse().map_err(|e| format!("--rounds: {e}"))?,
            "--callers" => args.callers = list(&value()?)?,
            "--batch" => args.batch = value()?.parse().map_err(|e| format!("--batch: {e}"))?,
            "--batch-callers" => args.batch_callers = list(&value()?)?,
            "--pids" => {
                for pair in value()?.split(',').filter(|p| !p.is_empty()) {
                    let (addr, pid) =
                        pair.split_once('=').ok_or_else(|| format!("--pids: {pair}: not ADDR=PID"))?;
                    let pid = pid.parse().map_err(|e| format!("--pids: {pair}: {e}"))?;
                    args.pids.push((addr.trim_start_matches("http://").to_string(), pid));
                }
            }
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    if args.leasetso_tls.is_some() != args.certs.is_some() {
        return Err(format!("--leasetso-tls and --certs go together\n{USAGE}"));
    }
    if args.rounds == 0 || args.seconds <= 0.0 || args.callers.contains(&0) || args.batch == 0 {
        return Err(format!("rounds, seconds, callers and batch must be positive\n{USAGE}"));
    }
    Ok(args)
}

/// One timed run: how many timestamps in how long, and (when asked) every
/// call's latency.
struct Run {
    timestamps: u64,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

/// CPU time (user + system, all threads) a process has used, from
/// `/proc/PID/stat`; `None` where it cannot be read.
fn cpu_time(pid: Option<u32>) -> Option<Duration> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_string(),
    };
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the command name (which may hold spaces), from field 3.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    // Clock ticks: 100 per second on Linux (USER_HZ).
    Some(Duration::from_millis((utime + stime) * 10))
}

/// Client and server CPU time per timestamp over one run, in µs.
#[derive(Clone, Copy)]
struct Cpu {
    client: f64,
    server: Option<f64>,
}

impl Run {
    fn rate(&self) -> f64 {
        self.timestamps as f64 / self.elapsed.as_secs_f64()
    }
}

/// The systems compared, each a client and a way of driving it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum System {
    /// leasetso's blocking client from N OS threads (std server).
    Leasetso,
    /// leasetso's async client from N tasks, against the std server.
    Smol,
    /// leasetso's async client from N tasks on an executor run by ONE
    /// thread (smol's own default for `smol::spawn`), against the std
    /// server: a few callers' work on one thread, with no thread woken to
    /// share it (BENCHMARKS.md section 20).
    SmolOne,
    /// leasetso's async client from N tasks, against the smol server.
    SmolOnSmol,
    /// leasetso's async client from N tasks, against a std server of a
    /// baseline build (`--leasetso-base`): an earlier commit's binary, so a
    /// change's effect on the server is measured in the same run.
    SmolOnBase,
    /// leasetso's async client from N tasks over TLS (user `root` of
    /// `--certs`), against a std server with `--certs-dir`.
    SmolTls,
    /// leasetso's async client from N tasks, against a std server with
    /// `--metrics` whose `/metrics` is scraped every second during the run.
    SmolMetrics,
    /// leasetso's PD door (`serve --pd`, std server) through the project's
    /// PD-style client (`leasetso_grpc::PdTsoClient`: callers batched into
    /// one `Tso` stream, one request in flight, as PD's clients do), N
    /// tokio tasks: gRPC against tsoracle's gRPC.
    Pd,
    /// leasetso's Redis door (`serve --resp`, std server): N tokio tasks,
    /// each with a connection of its own sending `TSO` and reading the
    /// answer, as N callers with a Redis client each.
    Resp,
    /// tsoracle's client at its default 1 ms coalescing wait, N tokio tasks.
    TsoDefault,
    /// tsoracle's client with the wait set to 0, N tokio tasks.
    TsoWait0,
    /// tsoracle's client with the wait set to 0, N tokio tasks on a runtime
    /// with ONE worker: tsoracle's counterpart of `SmolOne`.
    TsoWait0One,
    /// Diagnostic: tsoracle's client with the wait set to 0 driven like
    /// leasetso's, from N OS threads (each `Handle::block_on` one call), to
    /// tell the client's design from the cost of a thread per caller.
    TsoWait0Threads,
}

impl System {
    /// The systems of this run: a server's column only when its address was
    /// given, and only the columns `--only` names.
    fn all(args: &Args) -> Vec<System> {
        let mut v = vec![System::Leasetso, System::Smol, System::SmolOne];
        if args.leasetso_smol.is_some() {
            v.push(System::SmolOnSmol);
        }
        if args.leasetso_base.is_some() {
            v.push(System::SmolOnBase);
        }
        if args.leasetso_tls.is_some() {
            v.push(System::SmolTls);
        }
        if args.leasetso_metrics.is_some() {
            v.push(System::SmolMetrics);
        }
        if args.leasetso_pd.is_some() {
            v.push(System::Pd);
        }
        if args.leasetso_resp.is_some() {
            v.push(System::Resp);
        }
        v.extend([System::TsoDefault, System::TsoWait0, System::TsoWait0One, System::TsoWait0Threads]);
        if let Some(only) = &args.only {
            v.retain(|s| only.iter().any(|o| o == s.short()));
        }
        v
    }

    /// Ratios printed after the X/tso columns: each of these columns against
    /// another column of the same run (numerator, denominator, heading).
    const PAIRS: [(System, System, &'static str); 3] = [
        (System::SmolMetrics, System::Smol, "metrics/off"),
        (System::Smol, System::SmolOnBase, "smol/base"),
        (System::SmolTls, System::Smol, "tls/plain"),
    ];

    /// The address of the server this column drives (as `--pids` names it).
    fn server(self, args: &Args) -> Option<String> {
        let addr = match self {
            System::Leasetso | System::Smol | System::SmolOne | System::Pd | System::Resp => {
                Some(args.leasetso)
            }
            System::SmolOnSmol => args.leasetso_smol,
            System::SmolOnBase => args.leasetso_base,
            System::SmolTls => args.leasetso_tls,
            System::SmolMetrics => args.leasetso_metrics,
            System::TsoDefault | System::TsoWait0 | System::TsoWait0One | System::TsoWait0Threads => {
                return Some(args.tsoracle.trim_start_matches("http://").to_string());
            }
        };
        addr.map(|a| a.to_string())
    }

    /// Whether the column's callers run on an executor of one thread.
    fn one_thread(self) -> bool {
        matches!(self, System::SmolOne | System::TsoWait0One)
    }

    fn is_leasetso(self) -> bool {
        matches!(
            self,
            System::Leasetso
                | System::Smol
                | System::SmolOne
                | System::SmolOnSmol
                | System::SmolOnBase
                | System::SmolTls
                | System::SmolMetrics
                | System::Pd
                | System::Resp
        )
    }

    fn label(self) -> &'static str {
        match self {
            System::Leasetso => "leasetso std client (N threads), std server",
            System::Smol => "leasetso smol client (N tasks), std server",
            System::SmolOne => "leasetso smol client (N tasks on a one-thread executor), std server",
            System::SmolOnSmol => "leasetso smol client (N tasks), smol server",
            System::SmolOnBase => "leasetso smol client (N tasks), baseline build's std server",
            System::SmolTls => "leasetso smol client (N tasks) over TLS, std server with --certs-dir",
            System::SmolMetrics => {
                "leasetso smol client (N tasks), std server with --metrics scraped every 1 s"
            }
            System::Resp => "leasetso Redis door (TSO), a connection per caller (N tokio tasks), std server",
            System::Pd => {
                "leasetso PD door (gRPC), PD-style batching client (N tokio tasks; PD_IN_FLIGHT requests in flight, default 2), std server"
            }
            System::TsoDefault => "tsoracle default 1ms wait (N tasks)",
            System::TsoWait0 => "tsoracle wait 0 (N tasks)",
            System::TsoWait0One => "tsoracle wait 0 (N tasks on a one-worker runtime)",
            System::TsoWait0Threads => "tsoracle wait 0 (N threads)",
        }
    }

    fn short(self) -> &'static str {
        match self {
            System::Leasetso => "leasetso",
            System::Smol => "smol",
            System::SmolOne => "smol-1t",
            System::SmolOnSmol => "smol-srv",
            System::SmolOnBase => "smol-base",
            System::SmolTls => "smol-tls",
            System::SmolMetrics => "smol-metrics",
            System::Pd => "pd-grpc",
            System::Resp => "resp",
            System::TsoDefault => "tso-default",
            System::TsoWait0 => "tso-wait0",
            System::TsoWait0One => "tso-wait0-1t",
            System::TsoWait0Threads => "tso-wait0-thr",
        }
    }
}

/// The clients under test, connected once and reused by every run.
struct Clients {
    rt: tokio::runtime::Runtime,
    /// One worker: tsoracle's one-thread column.
    rt_one: tokio::runtime::Runtime,
    pool: SmolPool,
    /// One thread: the async client's one-thread column.
    pool_one: SmolPool,
    leasetso: leasetso_std::Client,
    smol: leasetso_smol::Client,
    smol_on_smol: Option<leasetso_smol::Client>,
    smol_on_base: Option<leasetso_smol::Client>,
    smol_tls: Option<leasetso_smol::Client>,
    smol_metrics: Option<leasetso_smol::Client>,
    tso_default: Arc<tsoracle_client::Client>,
    tso_wait0: Arc<tsoracle_client::Client>,
    /// Built on `rt_one`, where its connection's tasks run too.
    tso_wait0_one: Arc<tsoracle_client::Client>,
    pd: Option<leasetso_grpc::PdTsoClient>,
    resp: Option<SocketAddr>,
}

impl Clients {
    fn connect(args: &Args, workers: usize) -> Result<Clients, String> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()
            .map_err(|e| format!("tokio runtime: {e}"))?;
        let rt_one = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| format!("tokio runtime: {e}"))?;
        let pool = SmolPool::new(workers);
        let pool_one = SmolPool::new(1);
        let leasetso = leasetso_std::Client::connect(args.leasetso)
            .map_err(|e| format!("leasetso at {}: {e}", args.leasetso))?;
        let smol_connect = |addr: SocketAddr| {
            pool.block_on(async move { leasetso_smol::Client::connect(&[addr], smol_options()).await })
                .map_err(|e| format!("leasetso (smol client) at {addr}: {e}"))
        };
        let smol = smol_connect(args.leasetso)?;
        let smol_on_smol = args.leasetso_smol.map(smol_connect).transpose()?;
        let smol_on_base = args.leasetso_base.map(smol_connect).transpose()?;
        let smol_metrics = args.leasetso_metrics.map(smol_connect).transpose()?;
        let smol_tls = match (args.leasetso_tls, &args.certs) {
            (Some(addr), Some(dir)) => {
                let tls =
                    leasetso_smol::ClientTls::from_dir(dir, "root").map_err(|e| format!("--certs: {e}"))?;
                let opts = leasetso_smol::ClientOptions { tls: Some(tls), ..smol_options() };
                let client = pool
                    .block_on(async move { leasetso_smol::Client::connect(&[addr], opts).await })
                    .map_err(|e| format!("leasetso over TLS at {addr}: {e}"))?;
                Some(client)
            }
            _ => None,
        };
        let (tso_default, tso_wait0) = rt
            .block_on(async {
                let default =
                    tsoracle_client::ClientBuilder::endpoints(vec![args.tsoracle.clone()]).build().await?;
                let wait0 = tsoracle_client::ClientBuilder::endpoints(vec![args.tsoracle.clone()])
                    .batch_flush_interval(Duration::ZERO)
                    .build()
                    .await?;
                Ok::<_, tsoracle_client::ClientError>((default, wait0))
            })
            .map_err(|e| format!("tsoracle at {}: {e}", args.tsoracle))?;
        let tso_wait0_one = rt_one
            .block_on(
                tsoracle_client::ClientBuilder::endpoints(vec![args.tsoracle.clone()])
                    .batch_flush_interval(Duration::ZERO)
                    .build(),
            )
            .map_err(|e| format!("tsoracle at {}: {e}", args.tsoracle))?;
        let pd = match &args.leasetso_pd {
            Some(url) => Some(
                rt.block_on(leasetso_grpc::PdTsoClient::connect_with(url, 1, pd_in_flight()))
                    .map_err(|e| format!("leasetso PD door at {url}: {e}"))?,
            ),
            None => None,
        };
        let clients = Clients {
            rt,
            rt_one,
            pool,
            pool_one,
            leasetso,
            smol,
            smol_on_smol,
            smol_on_base,
            smol_tls,
            smol_metrics,
            tso_default: Arc::new(tso_default),
            tso_wait0: Arc::new(tso_wait0),
            tso_wait0_one: Arc::new(tso_wait0_one),
            pd,
            resp: args.leasetso_resp,
        };
        // Every server answers before anything is timed.
        for system in System::all(args) {
            clients.wait_ready(system)?;
        }
        Ok(clients)
    }

    fn wait_ready(&self, system: System) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let result = match system {
                System::Leasetso => self.leasetso.get_ts().map(drop).map_err(|e| e.to_string()),
                System::Smol
                | System::SmolOne
                | System::SmolOnSmol
                | System::SmolOnBase
                | System::SmolTls
                | System::SmolMetrics => {
                    let c = self.smol(system);
                    self.pool.block_on(async move { c.get_ts().await.map(drop).map_err(|e| e.to_string()) })
                }
                System::Pd => {
                    let c = self.pd.clone().expect("the PD door's client");
                    self.rt.block_on(async move { c.get_ts().await.map(drop).map_err(|e| e.to_string()) })
                }
                System::Resp => {
                    let addr = self.resp.expect("the Redis door's address");
                    self.rt.block_on(async move {
                        let mut conn = RespConn::connect(addr).await.map_err(|e| e.to_string())?;
                        conn.tso(1).await.map(drop).map_err(|e| e.to_string())
                    })
                }
                _ => {
                    let c = self.tso(system);
                    self.rt.block_on(async move { c.get_ts().await.map(drop).map_err(|e| e.to_string()) })
                }
            };
            match result {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() >= deadline => return Err(format!("{}: {e}", system.label())),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    fn tso(&self, system: System) -> Arc<tsoracle_client::Client> {
        match system {
            System::TsoDefault => Arc::clone(&self.tso_default),
            System::TsoWait0One => Arc::clone(&self.tso_wait0_one),
            _ => Arc::clone(&self.tso_wait0),
        }
    }

    fn smol(&self, system: System) -> leasetso_smol::Client {
        let chosen = match system {
            System::SmolOnSmol => self.smol_on_smol.as_ref(),
            System::SmolOnBase => self.smol_on_base.as_ref(),
            System::SmolTls => self.smol_tls.as_ref(),
            System::SmolMetrics => self.smol_metrics.as_ref(),
            _ => None,
        };
        chosen.unwrap_or(&self.smol).clone()
    }

    /// `callers` concurrent callers asking for `count` timestamps per call for
    /// `time`; every call's latency is kept when `record` is set.
    fn run(&self, system: System, callers: usize, count: u32, time: Duration, record: bool) -> Run {
        match system {
            System::Leasetso => {
                let client = &self.leasetso;
                run_threads(callers, count, time, record, || {
                    black_box(client.get_ts_n(count).expect("leasetso get_ts"));
                })
            }
            System::Smol
            | System::SmolOnSmol
            | System::SmolOnBase
            | System::SmolTls
            | System::SmolMetrics => {
                self.run_smol(&self.pool, self.smol(system), callers, count, time, record)
            }
            System::SmolOne => self.run_smol(&self.pool_one, self.smol(system), callers, count, time, record),
            System::TsoWait0Threads => {
                let (client, rt) = (&self.tso_wait0, self.rt.handle());
                run_threads(callers, count, time, record, || {
                    rt.block_on(async {
                        if count == 1 {
                            black_box(client.get_ts().await.expect("tsoracle get_ts"));
                        } else {
                            black_box(client.get_ts_batch(count).await.expect("tsoracle get_ts_batch"));
                        }
                    })
                })
            }
            System::TsoDefault | System::TsoWait0 | System::TsoWait0One => {
                let client = self.tso(system);
                let rt = if system == System::TsoWait0One { &self.rt_one } else { &self.rt };
                let call = move |count| {
                    let client = Arc::clone(&client);
                    async move {
                        if count == 1 {
                            black_box(client.get_ts().await.expect("tsoracle get_ts"));
                        } else {
                            black_box(client.get_ts_batch(count).await.expect("tsoracle get_ts_batch"));
                        }
                    }
                };
                self.run_tasks(rt, callers, count, time, record, || call.clone())
            }
            System::Resp => {
                let addr = self.resp.expect("the Redis door's address");
                self.run_resp(addr, callers, count, time, record)
            }
            System::Pd => {
                let client = self.pd.clone().expect("the PD door's client");
                let call = move |count| {
                    let client = client.clone();
                    async move {
                        black_box(client.get_ts_n(count).await.expect("leasetso PD door get_ts"));
                    }
                };
                self.run_tasks(&self.rt, callers, count, time, record, || call.clone())
            }
        }
    }

    /// The smol client from `callers` tasks on `pool`; the timer runs on
    /// this thread.
    fn run_smol(
        &self,
        pool: &SmolPool,
        client: leasetso_smol::Client,
        callers: usize,
        count: u32,
        time: Duration,
        record: bool,
    ) -> Run {
        let stop = Arc::new(AtomicBool::new(false));
        let start = Arc::new(smol::lock::Barrier::new(callers + 1));
        let tasks: Vec<smol::Task<(u64, Vec<Duration>)>> = (0..callers)
            .map(|_| {
                let (stop, start, client) = (Arc::clone(&stop), Arc::clone(&start), client.clone());
                pool.spawn(async move {
                    let mut lat = Vec::with_capacity(if record { 1 << 20 } else { 0 });
                    let mut calls = 0u64;
                    start.wait().await;
                    while !stop.load(Ordering::Relaxed) {
                        // The clock is read only when latencies are kept.
                        let t0 = record.then(Instant::now);
                        if count == 1 {
                            black_box(client.get_ts().await.expect("leasetso smol get_ts"));
                        } else {
                            black_box(client.get_ts_n(count).await.expect("leasetso smol get_ts_n"));
                        }
                        if let Some(t0) = t0 {
                            lat.push(t0.elapsed());
                        }
                        calls += 1;
                    }
                    (calls, lat)
                })
            })
            .collect();
        smol::block_on(async move {
            start.wait().await;
            let t0 = Instant::now();
            smol::Timer::after(time).await;
            stop.store(true, Ordering::Relaxed);
            let mut run = Run { timestamps: 0, elapsed: Duration::ZERO, latencies: Vec::new() };
            for t in tasks {
                let (calls, lat) = t.await;
                run.timestamps += calls * u64::from(count);
                run.latencies.extend(lat);
            }
            run.elapsed = t0.elapsed();
            run
        })
    }

    /// `callers` tokio tasks, each with its own connection to the Redis door
    /// at `addr`, each sending `TSO count` and reading the answer in a loop.
    fn run_resp(&self, addr: SocketAddr, callers: usize, count: u32, time: Duration, record: bool) -> Run {
        let conns: Vec<RespConn> = self.rt.block_on(async {
            let mut v = Vec::with_capacity(callers);
            for _ in 0..callers {
                v.push(RespConn::connect(addr).await.expect("connect to the Redis door"));
            }
            v
        });
        let pool = std::sync::Mutex::new(conns);
        self.run_tasks(&self.rt, callers, count, time, record, || {
            // The task's own connection (its lock is never contended).
            let conn = pool.lock().expect("the pool").pop().expect("a connection per caller");
            let conn = Arc::new(tokio::sync::Mutex::new(conn));
            move |count| {
                let conn = Arc::clone(&conn);
                async move {
                    black_box(conn.lock().await.tso(count).await.expect("leasetso Redis door TSO"));
                }
            }
        })
    }

    /// `callers` tasks on `rt`, each calling its own `make()` in a loop.
    fn run_tasks<F, Fut>(
        &self,
        rt: &tokio::runtime::Runtime,
        callers: usize,
        count: u32,
        time: Duration,
        record: bool,
        make: impl Fn() -> F,
    ) -> Run
    where
        F: Fn(u32) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let calls: Vec<F> = (0..callers).map(|_| make()).collect();
        rt.block_on(async move {
            let stop = Arc::new(AtomicBool::new(false));
            let start = Arc::new(tokio::sync::Barrier::new(callers + 1));
            let tasks: Vec<_> = calls
                .into_iter()
                .map(|call| {
                    let (stop, start) = (Arc::clone(&stop), Arc::clone(&start));
                    tokio::spawn(async move {
                        let mut lat = Vec::with_capacity(if record { 1 << 20 } else { 0 });
                        let mut calls = 0u64;
                        start.wait().await;
                        while !stop.load(Ordering::Relaxed) {
                            let t0 = record.then(Instant::now);
                            call(count).await;
                            if let Some(t0) = t0 {
                                lat.push(t0.elapsed());
                            }
                            calls += 1;
                        }
                        (calls, lat)
                    })
                })
                .collect();
            start.wait().await;
            let t0 = Instant::now();
            tokio::time::sleep(time).await;
            stop.store(true, Ordering::Relaxed);
            let mut run = Run { timestamps: 0, elapsed: Duration::ZERO, latencies: Vec::new() };
            for t in tasks {
                let (calls, lat) = t.await.expect("caller task");
                run.timestamps += calls * u64::from(count);
                run.latencies.extend(lat);
            }
            run.elapsed = t0.elapsed();
            run
        })
    }
}

/// `callers` OS threads calling `call` (one call = `count` timestamps) until
/// `time` has passed since they all started.
fn run_threads(callers: usize, count: u32, time: Duration, record: bool, call: impl Fn() + Sync) -> Run {
    let stop = AtomicBool::new(false);
    let start = Barrier::new(callers + 1);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..callers)
            .map(|_| {
                let (stop, start, call) = (&stop, &start, &call);
                s.spawn(move || {
                    let mut lat = Vec::with_capacity(if record { 1 << 20 } else { 0 });
                    let mut calls = 0u64;
                    start.wait();
                    while !stop.load(Ordering::Relaxed) {
                        let t0 = record.then(Instant::now);
                        call();
                        if let Some(t0) = t0 {
                            lat.push(t0.elapsed());
                        }
                        calls += 1;
                    }
                    (calls, lat)
                })
            })
            .collect();
        start.wait();
        let t0 = Instant::now();
        std::thread::sleep(time);
        stop.store(true, Ordering::Relaxed);
        let mut run = Run { timestamps: 0, elapsed: Duration::ZERO, latencies: Vec::new() };
        for w in workers {
            let (calls, lat) = w.join().expect("caller thread");
            run.timestamps += calls * u64::from(count);
            run.latencies.extend(lat);
        }
        run.elapsed = t0.elapsed();
        run
    })
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 { xs[n / 2] } else { (xs[n / 2 - 1] + xs[n / 2]) / 2.0 }
}

fn fmt_rate(r: f64) -> String {
    if r >= 1e6 { format!("{:.2}M/s", r / 1e6) } else { format!("{:.1}k/s", r / 1e3) }
}

/// The async client's options: its defaults, or `LEASETSO_IN_FLIGHT`
/// requests in flight (a diagnostic; unset, the client's default).
fn smol_options() -> leasetso_smol::ClientOptions {
    let in_flight = std::env::var("LEASETSO_IN_FLIGHT").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    leasetso_smol::ClientOptions { max_in_flight: in_flight, ..leasetso_smol::ClientOptions::default() }
}

/// Requests in flight on the PD-style client's stream: `PD_IN_FLIGHT`, or
/// the client's default.
fn pd_in_flight() -> usize {
    std::env::var("PD_IN_FLIGHT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(leasetso_grpc::client::MAX_IN_FLIGHT)
}

/// tsoracle's better task-driven setting at one point for leasetso column
/// `of`: the higher of its default and wait-0 rates on as many executor
/// threads as `of` has (one per core, or one: `tso-wait0-1t`). Both sides
/// run on the same threads, so the ratio compares clients, not executors;
/// without a tsoracle column on one thread, one-thread columns are compared
/// with tsoracle on one per core.
fn tso_best(systems: &[System], m: &[f64], of: System) -> f64 {
    let rate = |want: &[System]| {
        systems.iter().zip(m).filter(|(s, _)| want.contains(s)).map(|(_, &r)| r).fold(0.0, f64::max)
    };
    let one = rate(&[System::TsoWait0One]);
    if of.one_thread() && one > 0.0 { one } else { rate(&[System::TsoDefault, System::TsoWait0]) }
}

/// Measures every system at `callers` × `count`, `rounds` times interleaved;
/// prints one row (the median rates, then each leasetso column's ratio to
/// tsoracle's better task-driven setting) and returns the median rates, in
/// `systems` order.
fn compare(clients: &Clients, args: &Args, systems: &[System], callers: usize, count: u32) -> Vec<f64> {
    let time = Duration::from_secs_f64(args.seconds);
    let warm = Duration::from_secs_f64(args.warmup);
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); systems.len()];
    let mut cpus: Vec<Vec<Cpu>> = vec![Vec::new(); systems.len()];
    for _ in 0..args.rounds {
        for (i, &system) in systems.iter().enumerate() {
            if !warm.is_zero() {
                clients.run(system, callers, count, warm, false);
            }
            let server =
                system.server(args).and_then(|a| args.pids.iter().find(|(s, _)| *s == a).map(|p| p.1));
            let before = (cpu_time(None), server.and_then(|p| cpu_time(Some(p))));
            let run = clients.run(system, callers, count, time, false);
            let after = (cpu_time(None), server.and_then(|p| cpu_time(Some(p))));
            let per_ts = |b: Option<Duration>, a: Option<Duration>| {
                Some((a? - b?).as_secs_f64() * 1e6 / run.timestamps.max(1) as f64)
            };
            cpus[i].push(Cpu {
                client: per_ts(before.0, after.0).unwrap_or(f64::NAN),
                server: per_ts(before.1, after.1),
            });
            rates[i].push(run.rate());
        }
    }
    let m: Vec<f64> = rates.iter().cloned().map(median).collect();
    let mut row = format!("{callers:>5}");
    for &r in &m {
        row += &format!(" {:>13}", fmt_rate(r));
    }
    if tso_best(systems, &m, System::Smol) > 0.0 {
        for (&s, &r) in systems.iter().zip(&m) {
            if s.is_leasetso() {
                row += &format!(" {:>9}", format!("{:.2}x", r / tso_best(systems, &m, s)));
            }
        }
    }
    let rate_of = |want: System| systems.iter().position(|&s| s == want).map(|i| m[i]);
    for (num, den, _) in System::PAIRS {
        if let (Some(a), Some(b)) = (rate_of(num), rate_of(den)) {
            row += &format!(" {:>11}", format!("{:.3}x", a / b));
        }
    }
    let rounds: Vec<String> =
        rates.iter().map(|rs| rs.iter().map(|&r| fmt_rate(r)).collect::<Vec<_>>().join(",")).collect();
    println!("{row}   rounds [{}]", rounds.join("] ["));
    // CPU per timestamp, medians over the rounds: client (this process) and
    // server (`--pids`), in µs.
    let mut row = format!("{:>5}", "cpu");
    for cs in &cpus {
        let client = median(cs.iter().map(|c| c.client).collect());
        let server: Vec<f64> = cs.iter().filter_map(|c| c.server).collect();
        let cell = if server.is_empty() {
            format!("{client:.2}")
        } else {
            format!("{client:.2}+{:.2}", median(server))
        };
        row += &format!(" {cell:>13}");
    }
    println!("{row}   CPU µs per timestamp, client+server");
    m
}

fn header(systems: &[System]) {
    let mut row = format!("{:>5}", "N");
    for s in systems {
        row += &format!(" {:>13}", s.short());
    }
    if systems.iter().any(|s| matches!(s, System::TsoDefault | System::TsoWait0 | System::TsoWait0One)) {
        for s in systems.iter().filter(|s| s.is_leasetso()) {
            row += &format!(" {:>9}", format!("{}/tso", s.short()));
        }
    }
    for (num, den, heading) in System::PAIRS {
        if systems.contains(&num) && systems.contains(&den) {
            row += &format!(" {heading:>11}");
        }
    }
    println!("{row}");
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let clients = match Clients::connect(&args, cores) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("leasetso-peers: {e}");
            std::process::exit(1);
        }
    };
    let systems = System::all(&args);
    println!(
        "machine: {cores} cores (available_parallelism); tokio runtime for tsoracle: {cores} workers; \
         smol executor for leasetso's async client: {cores} threads"
    );
    match args.leasetso_smol {
        Some(smol) => println!(
            "leasetso at {} (std server) and {smol} (smol server), tsoracle at {}",
            args.leasetso, args.tsoracle
        ),
        None => println!("leasetso at {} (std server), tsoracle at {}", args.leasetso, args.tsoracle),
    }
    if let Some(base) = args.leasetso_base {
        println!("baseline build's std server at {base}");
    }
    for &system in &systems {
        println!("  {:<14} {}", system.short(), system.label());
    }
    println!(
        "{} s per run after {} s warm-up; median of {} interleaved rounds (each round's rate listed after it);",
        args.seconds, args.warmup, args.rounds
    );
    println!(
        "X/tso = leasetso column X's median rate / tsoracle's better task-driven median rate (default or \
         wait 0) on as many executor threads as X (one per core; one for smol-1t against tso-wait0-1t); \
         above 1: leasetso is faster"
    );

    println!("\n== throughput, one timestamp per call, timestamps/s, N callers sharing one client");
    header(&systems);
    let mut worst: Vec<f64> = vec![f64::INFINITY; systems.len()];
    for &n in &args.callers {
        let m = compare(&clients, &args, &systems, n, 1);
        for ((w, &r), &s) in worst.iter_mut().zip(&m).zip(&systems) {
            *w = w.min(r / tso_best(&systems, &m, s));
        }
    }
    for (s, w) in systems.iter().zip(&worst) {
        if s.is_leasetso() && w.is_finite() {
            println!("lowest ratio of {} to tsoracle's better task-driven setting: {w:.2}x", s.short());
        }
    }

    println!(
        "\n== batch mode: leasetso get_ts_n({0}) vs tsoracle get_ts_batch({0}), timestamps/s",
        args.batch
    );
    header(&systems);
    for &n in &args.batch_callers {
        compare(&clients, &args, &systems, n, args.batch);
    }

    println!("\n== latency at N = 1, one timestamp per call (every call timed; samples of all rounds)");
    let time = Duration::from_secs_f64(args.seconds);
    let mut ping = PingPong::start().expect("ping-pong");
    let mut floor = Vec::with_capacity(1 << 20);
    let mut lat: Vec<Vec<Duration>> = vec![Vec::new(); systems.len()];
    for _ in 0..args.rounds {
        let deadline = Instant::now() + time;
        while Instant::now() < deadline {
            let t0 = Instant::now();
            black_box(ping.round_trip());
            floor.push(t0.elapsed());
        }
        for (i, &system) in systems.iter().enumerate() {
            lat[i].extend(clients.run(system, 1, 1, time, true).latencies);
        }
    }
    let floor = Summary::of(&mut floor);
    println!("  {:<14} {floor}", "tcp-ping-pong");
    for (i, system) in systems.iter().enumerate() {
        let s = Summary::of(&mut lat[i]);
        println!(
            "  {:<14} {s}  (p50 {:.2}x, p99 {:.2}x the floor)",
            system.short(),
            s.p50.as_secs_f64() / floor.p50.as_secs_f64(),
            s.p99.as_secs_f64() / floor.p99.as_secs_f64()
        );
    }
    if let (Some(tls_addr), Some(dir)) = (args.leasetso_tls, &args.certs) {
        connection_setup(args.leasetso, tls_addr, dir, args.rounds);
    }
}

/// What a new connection costs, plaintext against TLS: a blocking client's
/// connect (TCP, and with TLS the handshake with both certificates) and its
/// first timestamp, `200 × rounds` of each, interleaved.
fn connection_setup(plain: SocketAddr, tls: SocketAddr, dir: &std::path::Path, rounds: usize) {
    let tls_opts = leasetso_std::ClientOptions {
        tls: Some(leasetso_std::ClientTls::from_dir(dir, "root").expect("client certificates")),
        ..leasetso_std::ClientOptions::default()
    };
    let (mut p, mut t) = (Vec::new(), Vec::new());
    for _ in 0..200 * rounds {
        for (addr, opts, into) in
            [(plain, leasetso_std::ClientOptions::default(), &mut p), (tls, tls_opts.clone(), &mut t)]
        {
            let t0 = Instant::now();
            let client = leasetso_std::Client::connect_with(addr, opts).expect("connect");
            black_box(client.get_ts().expect("get_ts"));
            into.push(t0.elapsed());
        }
    }
    let (p, t) = (Summary::of(&mut p), Summary::of(&mut t));
    println!("\n== connection set-up: connect (and the TLS handshake) plus the first GetTS, blocking client");
    println!("  {:<14} {p}", "plaintext");
    println!("  {:<14} {t}", "tls");
    println!(
        "  TLS costs {:.0} us more per connection at the median ({:.2}x)",
        (t.p50.as_secs_f64() - p.p50.as_secs_f64()) * 1e6,
        t.p50.as_secs_f64() / p.p50.as_secs_f64()
    );
}

/// A Redis door connection of one caller: `TSO` out, the integer answer in.
struct RespConn {
    stream: tokio::net::TcpStream,
    buf: Vec<u8>,
}

impl RespConn {
    async fn connect(addr: SocketAddr) -> std::io::Result<RespConn> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(RespConn { stream, buf: Vec::with_capacity(64) })
    }

    /// `TSO count` (or `TSO` for one): the last timestamp of the range.
    async fn tso(&mut self, count: u32) -> std::io::Result<u64> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let command = if count == 1 {
            "*1\r\n$3\r\nTSO\r\n".to_string()
        } else {
            let n = count.to_string();
            format!("*2\r\n$3\r\nTSO\r\n${}\r\n{n}\r\n", n.len())
        };
        self.stream.write_all(command.as_bytes()).await?;
        self.buf.clear();
        loop {
            let mut chunk = [0u8; 64];
            let n = self.stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
            if self.buf.ends_with(b"\r\n") {
                break;
            }
        }
        let text = std::str::from_utf8(&self.buf).map_err(std::io::Error::other)?;
        text.strip_prefix(':')
            .and_then(|t| t.trim_end().parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("the Redis door answered {text:?}")))
    }
}
