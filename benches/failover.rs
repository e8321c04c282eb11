//! Failover of a 3-node cluster of real `leasetso serve` processes on
//! loopback, timed from the outside (the server is not instrumented):
//!
//! 1. **kill -9 the leader**: from just before the SIGKILL to the first
//!    timestamp answered by another node, seen by a `leasetso_std::Client`
//!    over all seeds (retry pauses of 1 to 5 ms, so its backoff adds little)
//!    and by 4 raw wire clients that follow leader hints themselves; every
//!    probe pauses 1 ms after each timestamp. The killed node is restarted,
//!    and the next round waits until every node is out of quarantine, has
//!    its links up and names the one leader, and every probe gets
//!    timestamps again; then a random pause of up to half a lease (the
//!    renewal period), so kills fall at every phase of the renewals.
//! 2. **SIGTERM the leader**: the same, plus the `NotLeader` replies and
//!    connection errors the raw clients got between the signal and their
//!    first timestamp from the new leader.
//! 3. **Cold start**: 3 nodes spawned at once on fresh data dirs, to the
//!    first timestamp.
//! 4. **Diskless lease**: an idle serving cluster (no clients): write system
//!    calls and disk bytes per node (`/proc/<pid>/io`, nothing attached),
//!    then `sync_file_range` / `fsync` family and write calls (`strace -f
//!    -c` attached, if installed), and the lease renewals (the leader's
//!    ballot counter, from its status), at two save intervals and two
//!    leases: the writes follow the window saves, not the renewals.
//!
//! When the new leader logged `lease acquired` and `serving timestamps` is
//! read from the tracing timestamps of its log lines.
//!
//! Run (the bench uses `target/release/leasetso`, which `cargo bench` does
//! not build):
//!
//! ```sh
//! cargo build --release -p leasetso && cargo bench -p leasetso-benches --bench failover
//! ```
//!
//! Environment: `LEASETSO_FAILOVER_ROUNDS` (kill and term rounds per lease,
//! default 10), `LEASETSO_FAILOVER_COLD_RUNS` (default 5),
//! `LEASETSO_FAILOVER_LEASES` (default `3000,500`), `LEASETSO_FAILOVER_IDLE_SECS`
//! (each idle window, default 10), `LEASETSO_FAILOVER_ONLY` (a subset of
//! `kill,term,cold,idle`), `LEASETSO_FAILOVER_LOGS=DIR` (keep every node's
//! log there), `LEASETSO_FAILOVER_WATCH=1` (poll every node's status every
//! few ms during each round and print the changes), `LEASETSO_BIN` (another
//! binary). Without `--bench` (`cargo test --benches`) it runs one short
//! round of each at a 500 ms lease as a smoke test, or says it skipped if no
//! `leasetso` binary is built next to it.
//!
//! Every node runs in its own process group with a parent-death signal; all
//! are killed and their data dirs removed on every exit path (return, panic,
//! Ctrl-C or SIGTERM of the bench). Only 127.0.0.1 is bound.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::fmt::Write as _;
use std::hash::{BuildHasher, Hasher};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, mpsc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use leasetso_benches::{die_with_parent, find_leasetso_bin, warn_if_stale};
use leasetso_core::wire::VERSION;
use leasetso_core::{ErrorCode, Frame, LeaderHint, LeaseView, NodeId, Role};
use leasetso_std::{Client, ClientOptions};

/// Nodes per cluster.
const NODES: usize = 3;
/// Connect and reply timeout of every probe and status query.
const IO_TIMEOUT: Duration = Duration::from_millis(500);
/// A probe's pause after a success (keeps the load light on 2 cores) and
/// after a failure that needs no new connection.
const PACE: Duration = Duration::from_millis(1);
/// How long a node may take from spawn to its ready line.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a node may take to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Unwinds (so that every guard runs) once Ctrl-C or SIGTERM reached the bench.
fn check_interrupt() {
    if INTERRUPTED.load(Ordering::Relaxed) {
        panic!("interrupted: the nodes are killed and their data dirs removed");
    }
}

/// Sleeps `d` in short slices, unwinding if interrupted.
fn pause(d: Duration) {
    let end = Instant::now() + d;
    loop {
        check_interrupt();
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        thread::sleep(left.min(Duration::from_millis(20)));
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Uniform in `0..n` (n > 0), from std's randomly keyed hasher.
fn random_below(n: u64) -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u128(SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    h.finish() % n.max(1)
}

// ---------------------------------------------------------------------------
// Settings

struct Settings {
    bench: bool,
    rounds: usize,
    cold_runs: usize,
    leases: Vec<u64>,
    idle_secs: u64,
    only: Vec<String>,
    raw_clients: usize,
    logs_dir: Option<PathBuf>,
}

fn env_num(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v.trim().parse().unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

impl Settings {
    fn from_env() -> Settings {
        // `cargo bench` passes `--bench`; `cargo test --benches` does not.
        let bench = std::env::args().any(|a| a == "--bench");
        let leases = match std::env::var("LEASETSO_FAILOVER_LEASES") {
            Ok(v) => v
                .split(',')
                .map(|s| s.trim().parse().unwrap_or_else(|_| panic!("LEASETSO_FAILOVER_LEASES: {s:?}")))
                .collect(),
            Err(_) if bench => vec![3000, 500],
            Err(_) => vec![500],
        };
        let only = match std::env::var("LEASETSO_FAILOVER_ONLY") {
            Ok(v) => v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect(),
            Err(_) => vec!["kill".into(), "term".into(), "cold".into(), "idle".into()],
        };
        Settings {
            bench,
            rounds: env_num("LEASETSO_FAILOVER_ROUNDS", if bench { 10 } else { 1 }) as usize,
            cold_runs: env_num("LEASETSO_FAILOVER_COLD_RUNS", if bench { 5 } else { 1 }) as usize,
            leases,
            idle_secs: env_num("LEASETSO_FAILOVER_IDLE_SECS", if bench { 10 } else { 2 }),
            only,
            raw_clients: 4,
            logs_dir: std::env::var_os("LEASETSO_FAILOVER_LOGS").map(PathBuf::from),
        }
    }

    fn runs(&self, part: &str) -> bool {
        self.only.iter().any(|o| o == part)
    }
}

// ---------------------------------------------------------------------------
// Nodes' logs

/// One line of a node's stderr, with the moment it was logged: the
/// tracing timestamp at its start (wall clock, mapped onto `Instant` through
/// [`clock_pair`]), else the moment the bench read it.
#[derive(Clone)]
struct Line {
    at: Instant,
    /// Which start of the node (1 = first).
    start: usize,
    text: String,
}

/// An `Instant` and the wall clock at the same moment, taken once.
fn clock_pair() -> (Instant, SystemTime) {
    static PAIR: std::sync::OnceLock<(Instant, SystemTime)> = std::sync::OnceLock::new();
    *PAIR.get_or_init(|| (Instant::now(), SystemTime::now()))
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The `Instant` of a line's leading tracing timestamp,
/// `2026-12-01T21:06:20.405580Z`, if it has one.
fn logged_at(text: &str) -> Option<Instant> {
    let stamp = text.get(..27).filter(|s| s.ends_with('Z') && s.as_bytes().get(10) == Some(&b'T'))?;
    let num = |r: std::ops::Range<usize>| stamp.get(r)?.parse::<i64>().ok();
    let days = days_from_civil(num(0..4)?, num(5..7)?, num(8..10)?);
    let secs = days * 86_400 + num(11..13)? * 3600 + num(14..16)? * 60 + num(17..19)?;
    let micros = u64::try_from(secs).ok()? * 1_000_000 + u64::try_from(num(20..26)?).ok()?;
    let wall = UNIX_EPOCH + Duration::from_micros(micros);
    let (instant, reference) = clock_pair();
    match wall.duration_since(reference) {
        Ok(after) => Some(instant + after),
        Err(e) => instant.checked_sub(e.duration()),
    }
}

#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<Line>>>);

impl Log {
    fn push(&self, line: Line) {
        let mut lines = lock(&self.0);
        if lines.len() < 200_000 {
            lines.push(line);
        }
    }

    /// When the first line of start `start` containing `needle` arrived at
    /// or after `after`.
    fn find(&self, start: Option<usize>, after: Instant, needle: &str) -> Option<Instant> {
        lock(&self.0)
            .iter()
            .find(|l| start.is_none_or(|s| l.start == s) && l.at >= after && l.text.contains(needle))
            .map(|l| l.at)
    }

    fn lines(&self) -> Vec<Line> {
        lock(&self.0).clone()
    }
}

// ---------------------------------------------------------------------------
// A raw protocol connection (the wire codec over a TcpStream)

struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    next_id: u64,
}

/// What a node says about itself.
#[derive(Clone, Copy, Debug)]
struct NodeState {
    role: Role,
    leader: LeaderHint,
    view: LeaseView,
}

impl Conn {
    /// Connects and completes the handshake, `timeout` per step.
    fn open(addr: SocketAddr, timeout: Duration) -> io::Result<Conn> {
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        let mut conn = Conn { stream, buf: Vec::with_capacity(256), next_id: 1 };
        conn.send(&Frame::Hello { version: VERSION, cluster_id: 0 })?;
        match conn.recv()? {
            Frame::Welcome { .. } => Ok(conn),
            other => Err(io::Error::other(format!("Hello answered with {other:?}"))),
        }
    }

    fn send(&mut self, frame: &Frame) -> io::Result<()> {
        let mut bytes = Vec::with_capacity(frame.encoded_len());
        frame.encode(&mut bytes).map_err(io::Error::other)?;
        self.stream.write_all(&bytes)
    }

    fn recv(&mut self) -> io::Result<Frame> {
        let mut chunk = [0u8; 512];
        loop {
            if let Some((frame, used)) = Frame::decode(&self.buf).map_err(io::Error::other)? {
                self.buf.drain(..used);
                return Ok(frame);
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// One GetTs(1): `Ok(Ok(()))`, `Ok(Err((code, hint)))` for an Error
    /// answering it, or an I/O error (a connection-level Error included).
    fn get_ts(&mut self) -> io::Result<Result<(), (ErrorCode, LeaderHint)>> {
        let id = self.next_id();
        self.send(&Frame::GetTs { id, count: 1 })?;
        match self.recv()? {
            Frame::Ts { id: got, .. } if got == id => Ok(Ok(())),
            Frame::Error { id: got, code, leader } if got == id => Ok(Err((code, leader))),
            other => Err(io::Error::other(format!("GetTs answered with {other:?}"))),
        }
    }

    fn status(&mut self) -> io::Result<NodeState> {
        let id = self.next_id();
        self.send(&Frame::GetStatus { id })?;
        match self.recv()? {
            Frame::Status { id: got, role, leader, view, .. } if got == id => {
                Ok(NodeState { role, leader, view })
            }
            other => Err(io::Error::other(format!("GetStatus answered with {other:?}"))),
        }
    }
}

fn query_status(addr: SocketAddr) -> io::Result<NodeState> {
    Conn::open(addr, IO_TIMEOUT)?.status()
}

// ---------------------------------------------------------------------------
// A cluster of `leasetso serve` processes

struct Node {
    /// 1-based, as on the command line.
    id: usize,
    client: SocketAddr,
    data: PathBuf,
    child: Option<Child>,
    drain: Option<JoinHandle<()>>,
    starts: usize,
    log: Log,
}

impl Node {
    fn running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Waits up to `timeout` for the process to exit (SIGKILL after it),
    /// reaps it and joins its log reader.
    fn reap(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let mut status = None;
        if let Some(child) = &mut self.child {
            let end = Instant::now() + timeout;
            loop {
                match child.try_wait() {
                    Ok(Some(s)) => {
                        status = Some(s);
                        break;
                    }
                    Ok(None) if Instant::now() < end => thread::sleep(Duration::from_millis(2)),
                    _ => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
        }
        self.child = None;
        if let Some(drain) = self.drain.take() {
            let _ = drain.join();
        }
        status
    }
}

#[derive(Clone)]
struct ClusterCfg {
    bin: PathBuf,
    lease_ms: u64,
    extra: Vec<String>,
    label: String,
    logs_dir: Option<PathBuf>,
}

struct Cluster {
    cfg: ClusterCfg,
    peers: String,
    nodes: Vec<Node>,
    /// Just before the first node was spawned.
    spawned_at: Instant,
    /// Data dirs and strace outputs; removed after the nodes are killed.
    dir: tempfile::TempDir,
}

/// Free loopback ports: all bound at once (so they differ), then released.
fn free_addrs(n: usize) -> Vec<SocketAddr> {
    let listeners: Vec<TcpListener> =
        (0..n).map(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0")).collect();
    listeners.iter().map(|l| l.local_addr().expect("a bound address")).collect()
}

impl Cluster {
    /// Spawns 3 nodes at once on fresh data dirs and waits for their ready
    /// lines (not for a leader). Retries with fresh ports if one was taken.
    fn start(cfg: &ClusterCfg) -> Cluster {
        let mut last = String::new();
        for attempt in 1..=5 {
            let addrs = free_addrs(2 * NODES);
            let dir = tempfile::Builder::new().prefix("leasetso-failover-").tempdir().expect("a temp dir");
            let peers = (0..NODES).map(|i| format!("{}={}", i + 1, addrs[i])).collect::<Vec<_>>().join(",");
            let nodes = (0..NODES)
                .map(|i| Node {
                    id: i + 1,
                    client: addrs[NODES + i],
                    data: dir.path().join(format!("node{}", i + 1)),
                    child: None,
                    drain: None,
                    starts: 0,
                    log: Log::default(),
                })
                .collect();
            let mut cluster = Cluster { cfg: cfg.clone(), peers, nodes, spawned_at: Instant::now(), dir };
            cluster.spawned_at = Instant::now();
            for i in 0..NODES {
                cluster.spawn(i);
            }
            let deadline = Instant::now() + READY_TIMEOUT;
            let mut failed = None;
            for i in 0..NODES {
                if let Err(e) = cluster.wait_ready(i, deadline) {
                    failed.get_or_insert(e);
                }
            }
            match failed {
                None => return cluster,
                Some((true, msg)) if attempt < 5 => {
                    eprintln!("cluster start attempt {attempt}: {msg}; retrying with fresh ports");
                    last = msg;
                }
                Some((_, msg)) => cluster.fail(&format!("starting the cluster: {msg}")),
            }
        }
        panic!("starting the cluster: {last}");
    }

    fn spawn(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        node.starts += 1;
        let start = node.starts;
        let mut cmd = Command::new(&self.cfg.bin);
        cmd.arg("serve")
            .arg("--id")
            .arg(node.id.to_string())
            .arg("--peers")
            .arg(&self.peers)
            .arg("--listen")
            .arg(node.client.to_string())
            .arg("--data")
            .arg(&node.data)
            .arg("--lease-ms")
            .arg(self.cfg.lease_ms.to_string())
            .args(&self.cfg.extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            // Not in the bench's process group: a Ctrl-C reaches only the
            // bench, which then kills the nodes itself.
            .process_group(0);
        die_with_parent(&mut cmd);
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawning {}: {e}", self.cfg.bin.display()));
        node.log.push(Line {
            at: Instant::now(),
            start,
            text: format!("=== start {start}, pid {}: {cmd:?}", child.id()),
        });
        let stderr = child.stderr.take().expect("piped stderr");
        let log = node.log.clone();
        node.drain = Some(thread::spawn(move || {
            let mut reader = BufReader::new(stderr);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match reader.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        let text = String::from_utf8_lossy(&buf).trim_end().to_string();
                        let at = logged_at(&text).unwrap_or_else(Instant::now);
                        log.push(Line { at, start, text });
                    }
                }
            }
        }));
        node.child = Some(child);
    }

    /// Waits for node `i`'s ready line of its current start. `Err((retry,
    /// why))`; `retry` when it could not bind its ports.
    fn wait_ready(&mut self, i: usize, deadline: Instant) -> Result<Instant, (bool, String)> {
        let node = &mut self.nodes[i];
        loop {
            if let Some(at) = node.log.find(Some(node.starts), node_epoch(), "listening on") {
                return Ok(at);
            }
            if !node.running() {
                let status = node.reap(Duration::ZERO);
                let text: String = node.log.lines().iter().map(|l| l.text.clone() + "\n").collect();
                let bind = text.contains("in use") || text.contains("cannot listen");
                return Err((bind, format!("node {} exited before its ready line ({status:?})", node.id)));
            }
            if Instant::now() >= deadline {
                return Err((false, format!("node {} printed no ready line in {READY_TIMEOUT:?}", node.id)));
            }
            check_interrupt();
            thread::sleep(Duration::from_millis(2));
        }
    }

    /// Panics with `message` and the end of every node's log.
    fn fail(&self, message: &str) -> ! {
        check_interrupt();
        let mut out = String::new();
        for node in &self.nodes {
            let lines = node.log.lines();
            let _ =
                writeln!(out, "--- node {} (last {} of {} lines)", node.id, lines.len().min(60), lines.len());
            for l in &lines[lines.len().saturating_sub(60)..] {
                let _ = writeln!(out, "{}", l.text);
            }
        }
        panic!("{} (lease {} ms): {message}\n{out}", self.cfg.label, self.cfg.lease_ms);
    }

    fn seeds(&self) -> Vec<SocketAddr> {
        self.nodes.iter().map(|n| n.client).collect()
    }

    fn index_of(&self, addr: SocketAddr) -> Option<usize> {
        self.nodes.iter().position(|n| n.client == addr)
    }

    fn lease(&self) -> Duration {
        Duration::from_millis(self.cfg.lease_ms)
    }

    fn status(&self, i: usize) -> io::Result<NodeState> {
        query_status(self.nodes[i].client)
    }

    fn describe(&self) -> String {
        (0..NODES)
            .map(|i| match self.status(i) {
                Ok(s) => format!(
                    "node {}: {:?} leader {:?} quarantine_left {} ms lease_left {} ms links {:#b}",
                    i + 1,
                    s.role,
                    s.leader.node.map(|n| n.0 + 1),
                    s.view.quarantine_left_ms,
                    s.view.lease_left_ms,
                    s.view.links_up
                ),
                Err(e) => format!("node {}: {e}", i + 1),
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Waits until every node runs, is out of quarantine, has all its
    /// links up, and exactly one leads with the others naming it. Returns
    /// the leader's index.
    fn wait_steady(&mut self, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            check_interrupt();
            for i in 0..NODES {
                if !self.nodes[i].running() {
                    let status = self.nodes[i].reap(Duration::ZERO);
                    self.fail(&format!("node {} exited unexpectedly: {status:?}", i + 1));
                }
            }
            let states: Vec<_> = (0..NODES).map(|i| self.status(i)).collect();
            if states.iter().all(Result::is_ok) {
                let states: Vec<NodeState> = states.into_iter().map(Result::unwrap).collect();
                let all = (1u32 << NODES) - 1;
                let leaders: Vec<usize> = (0..NODES).filter(|&i| states[i].role == Role::Leader).collect();
                let calm =
                    states.iter().all(|s| s.view.quarantine_left_ms == 0 && s.view.links_up & all == all);
                if let [leader] = leaders[..]
                    && calm
                    && states.iter().all(|s| s.leader.node == Some(NodeId(leader as u16)))
                {
                    return leader;
                }
            }
            if Instant::now() >= deadline {
                self.fail(&format!("no steady cluster within {timeout:?}: {}", self.describe()));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL to node `i`; returns the moment just before the signal.
    fn kill(&mut self, i: usize) -> Instant {
        let child = self.nodes[i].child.as_mut().expect("kill: the node runs");
        let at = Instant::now();
        child.kill().expect("SIGKILL");
        at
    }

    /// SIGTERM to node `i`; returns the moment just before the signal.
    fn term(&mut self, i: usize) -> Instant {
        let pid = self.nodes[i].pid().expect("term: the node runs");
        let pid = rustix::process::Pid::from_raw(pid as i32).expect("a pid");
        let at = Instant::now();
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM");
        at
    }

    /// Starts node `i` again on its data dir and addresses.
    fn restart(&mut self, i: usize) {
        self.nodes[i].reap(Duration::ZERO);
        self.spawn(i);
        if let Err((_, msg)) = self.wait_ready(i, Instant::now() + READY_TIMEOUT) {
            self.fail(&format!("restarting node {}: {msg}", i + 1));
        }
    }
}

/// A moment before any node started (for searching whole logs).
fn node_epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(child) = &mut node.child {
                let _ = child.kill();
            }
        }
        for node in &mut self.nodes {
            node.reap(Duration::from_secs(5));
        }
        if let Some(dir) = &self.cfg.logs_dir {
            let _ = std::fs::create_dir_all(dir);
            for node in &self.nodes {
                let mut text = String::new();
                for l in node.log.lines() {
                    let t = l.at.checked_duration_since(self.spawned_at).map_or(0.0, ms);
                    let _ = writeln!(text, "[{t:10.1} ms] {}", l.text);
                }
                let name = format!("{}-lease{}-node{}.log", self.cfg.label, self.cfg.lease_ms, node.id);
                let _ = std::fs::write(dir.join(name), text);
            }
        }
        // `dir` (data dirs, strace outputs) is removed with the fields.
    }
}

// ---------------------------------------------------------------------------
// Probes: clients that keep asking for timestamps and report when the first
// one from a new leader arrives after a signal

#[derive(Clone, Copy)]
struct Arm {
    round: u64,
    at: Instant,
    old: SocketAddr,
}

#[derive(Clone, Copy, Debug)]
struct Hit {
    probe: usize,
    round: u64,
    by: SocketAddr,
    /// From the signal to the first timestamp from another node.
    gap: Duration,
    /// From the previous timestamp (of the old leader) to that one.
    outage: Duration,
    not_leader: u64,
    conn_errors: u64,
    other_errors: u64,
}

enum Outcome {
    Ok(SocketAddr),
    NotLeader,
    Conn,
    Other,
}

trait Probe: Send {
    fn call(&mut self) -> Outcome;
}

/// `leasetso_std::Client` over all seeds; it follows hints and retries
/// itself (1 ms to 5 ms pauses, so the client's backoff adds little to the
/// measured gap).
struct LibProbe(Client);

impl Probe for LibProbe {
    fn call(&mut self) -> Outcome {
        match self.0.get_ts() {
            Ok(_) => Outcome::Ok(self.0.server_addr()),
            Err(_) => Outcome::Other,
        }
    }
}

/// A client written from the wire codec: follows a leader hint at once (at
/// most twice in a row), else the next seed.
struct RawProbe {
    seeds: Vec<SocketAddr>,
    seed: usize,
    target: SocketAddr,
    hops: u32,
    conn: Option<Conn>,
}

impl RawProbe {
    fn new(seeds: &[SocketAddr], first: usize) -> RawProbe {
        let seed = first % seeds.len();
        RawProbe { seeds: seeds.to_vec(), seed, target: seeds[seed], hops: 0, conn: None }
    }

    fn next_seed(&mut self) {
        self.seed = (self.seed + 1) % self.seeds.len();
        self.target = self.seeds[self.seed];
        self.hops = 0;
        self.conn = None;
    }
}

impl Probe for RawProbe {
    fn call(&mut self) -> Outcome {
        if self.conn.is_none() {
            match Conn::open(self.target, IO_TIMEOUT) {
                Ok(c) => self.conn = Some(c),
                Err(_) => {
                    self.next_seed();
                    thread::sleep(PACE);
                    return Outcome::Conn;
                }
            }
        }
        let conn = self.conn.as_mut().expect("connected");
        match conn.get_ts() {
            Ok(Ok(())) => {
                self.hops = 0;
                Outcome::Ok(self.target)
            }
            Ok(Err((ErrorCode::NotLeader, hint))) => {
                let hinted = hint.addr.filter(|a| *a != self.target && !a.ip().is_unspecified());
                match hinted {
                    Some(addr) if self.hops < 2 => {
                        self.hops += 1;
                        self.target = addr;
                        self.conn = None;
                    }
                    _ => {
                        self.next_seed();
                        thread::sleep(PACE);
                    }
                }
                Outcome::NotLeader
            }
            Ok(Err(_)) => {
                thread::sleep(PACE);
                Outcome::Other
            }
            Err(_) => {
                self.next_seed();
                Outcome::Conn
            }
        }
    }
}

struct ProbeShared {
    base: Instant,
    stop: AtomicBool,
    arm: Mutex<Option<Arm>>,
    /// Per probe: µs after `base` of its last success, plus one (0: never).
    last_ok: Vec<AtomicU64>,
}

struct Probes {
    shared: Arc<ProbeShared>,
    rx: mpsc::Receiver<Hit>,
    threads: Vec<JoinHandle<()>>,
    round: u64,
}

impl Probes {
    /// Probe 0 is the library client, 1..=raw the raw clients.
    fn start(cluster: &Cluster, raw: usize) -> Probes {
        let seeds = cluster.seeds();
        let opts = ClientOptions {
            deadline: Duration::from_secs(120),
            connect_timeout: IO_TIMEOUT,
            request_timeout: IO_TIMEOUT,
            retry_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(5),
            ..ClientOptions::default()
        };
        let client = Client::connect_with(&seeds[..], opts)
            .unwrap_or_else(|e| cluster.fail(&format!("connecting the probe client: {e}")));
        let mut probes: Vec<Box<dyn Probe>> = vec![Box::new(LibProbe(client))];
        for k in 0..raw {
            probes.push(Box::new(RawProbe::new(&seeds, k)));
        }
        let shared = Arc::new(ProbeShared {
            base: Instant::now(),
            stop: AtomicBool::new(false),
            arm: Mutex::new(None),
            last_ok: (0..probes.len()).map(|_| AtomicU64::new(0)).collect(),
        });
        let (tx, rx) = mpsc::channel();
        let threads = probes
            .into_iter()
            .enumerate()
            .map(|(idx, probe)| {
                let shared = Arc::clone(&shared);
                let tx = tx.clone();
                thread::Builder::new()
                    .name(format!("probe-{idx}"))
                    .spawn(move || run_probe(idx, probe, &shared, &tx))
                    .expect("a probe thread")
            })
            .collect();
        Probes { shared, rx, threads, round: 0 }
    }

    fn len(&self) -> usize {
        self.shared.last_ok.len()
    }

    /// Waits until every probe got a timestamp within the last `within`.
    fn wait_fresh(&self, within: Duration, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let now = self.shared.base.elapsed().as_micros() as u64 + 1;
            let fresh = self.shared.last_ok.iter().all(|t| {
                let t = t.load(Ordering::Relaxed);
                t != 0 && now.saturating_sub(t) <= within.as_micros() as u64
            });
            if fresh {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            pause(Duration::from_millis(5));
        }
    }

    /// Publishes a new round whose old leader is `old`; returns its number
    /// and its start. Call just before the signal.
    fn arm(&mut self, old: SocketAddr) -> (u64, Instant) {
        self.round += 1;
        let at = Instant::now();
        *lock(&self.shared.arm) = Some(Arm { round: self.round, at, old });
        (self.round, at)
    }

    /// Every probe's hit of `round`, in probe order, or how many are missing.
    fn hits(&self, round: u64, timeout: Duration) -> Result<Vec<Hit>, usize> {
        let deadline = Instant::now() + timeout;
        let mut got: Vec<Option<Hit>> = vec![None; self.len()];
        while got.iter().any(Option::is_none) {
            check_interrupt();
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(got.iter().filter(|h| h.is_none()).count());
            }
            if let Ok(hit) = self.rx.recv_timeout(left.min(Duration::from_millis(20)))
                && hit.round == round
            {
                got[hit.probe] = Some(hit);
            }
        }
        Ok(got.into_iter().map(|h| h.expect("all present")).collect())
    }

    /// Stops the probes and waits for them.
    fn finish(mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Probes {
    fn drop(&mut self) {
        // Not joined here: on a failure path a probe may be waiting on a
        // dead cluster; it ends with the process.
        self.shared.stop.store(true, Ordering::Relaxed);
    }
}

#[derive(Default)]
struct Counts {
    not_leader: u64,
    conn: u64,
    other: u64,
}

fn run_probe(idx: usize, mut probe: Box<dyn Probe>, shared: &ProbeShared, tx: &mpsc::Sender<Hit>) {
    let mut current: Option<(Arm, Counts)> = None;
    let mut done = 0u64;
    let mut last_ok: Option<Instant> = None;
    while !shared.stop.load(Ordering::Relaxed) {
        let out = probe.call();
        let now = Instant::now();
        // Read after the call: a reply caused by the signal always sees its arm.
        if let Some(arm) = *lock(&shared.arm)
            && arm.round > done
            && current.as_ref().is_none_or(|(a, _)| a.round != arm.round)
        {
            current = Some((arm, Counts::default()));
        }
        if let Some((arm, counts)) = &mut current
            && now > arm.at
        {
            match out {
                Outcome::Ok(by) if by != arm.old => {
                    let hit = Hit {
                        probe: idx,
                        round: arm.round,
                        by,
                        gap: now - arm.at,
                        outage: now - last_ok.unwrap_or(arm.at),
                        not_leader: counts.not_leader,
                        conn_errors: counts.conn,
                        other_errors: counts.other,
                    };
                    let _ = tx.send(hit);
                    done = arm.round;
                    current = None;
                }
                Outcome::Ok(_) => {}
                Outcome::NotLeader => counts.not_leader += 1,
                Outcome::Conn => counts.conn += 1,
                Outcome::Other => counts.other += 1,
            }
        }
        if let Outcome::Ok(_) = out {
            last_ok = Some(now);
            shared.last_ok[idx]
                .store(now.duration_since(shared.base).as_micros() as u64 + 1, Ordering::Relaxed);
            thread::sleep(PACE);
        }
    }
}

// ---------------------------------------------------------------------------
// Statistics

#[derive(Clone, Copy)]
struct Stats {
    n: usize,
    median: f64,
    p90: f64,
    max: f64,
}

/// Nearest-rank median, p90 and max (as `Summary` in `benches/lib.rs`).
fn stats(values: &[f64]) -> Option<Stats> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let at = |q: f64| v[((q * n as f64).ceil() as usize).clamp(1, n) - 1];
    Some(Stats { n, median: at(0.5), p90: at(0.9), max: v[n - 1] })
}

/// Rows of the final table.
struct Table {
    rows: Vec<String>,
}

impl Table {
    fn new() -> Table {
        Table { rows: Vec::new() }
    }

    fn add(&mut self, lease: &str, scenario: &str, measure: &str, unit: &str, values: &[f64]) {
        let cell = |x: f64| match unit {
            "ms" => format!("{x:.1} ms"),
            _ => format!("{x:.0}"),
        };
        let row = match stats(values) {
            Some(s) => format!(
                "| {lease} | {scenario} | {measure} | {} | {} | {} | {} |",
                s.n,
                cell(s.median),
                cell(s.p90),
                cell(s.max)
            ),
            None => format!("| {lease} | {scenario} | {measure} | 0 | – | – | – |"),
        };
        self.rows.push(row);
    }

    fn print(&self) {
        println!("| lease | scenario | measure | n | median | p90 | max |");
        println!("|---:|---|---|---:|---:|---:|---:|");
        for r in &self.rows {
            println!("{r}");
        }
    }
}

// ---------------------------------------------------------------------------
// 1 and 2: kill -9 and SIGTERM rounds

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Kill,
    Term,
}

struct RoundResult {
    lib_gap: f64,
    lib_outage: f64,
    raw_gaps: Vec<f64>,
    not_leader: u64,
    conn_errors: u64,
    /// Signal to the new leader's "lease acquired" / "serving timestamps" lines.
    acquired: Option<f64>,
    serving: Option<f64>,
    /// Signal to the old leader's "lease released" and "server stopped" lines (SIGTERM).
    released: Option<f64>,
    stopped: Option<f64>,
    exit_ok: bool,
}

fn failover_rounds(
    cluster: &mut Cluster,
    probes: &mut Probes,
    kind: Kind,
    rounds: usize,
) -> Vec<RoundResult> {
    let name = if kind == Kind::Kill { "kill -9" } else { "SIGTERM" };
    let lease = cluster.lease();
    let steady_timeout = lease * 12 + Duration::from_secs(20);
    let mut results = Vec::new();
    for r in 1..=rounds {
        let leader = cluster.wait_steady(steady_timeout);
        if !probes.wait_fresh(Duration::from_millis(100), Duration::from_secs(10)) {
            cluster.fail(&format!("{name} round {r}: the probes get no timestamps: {}", cluster.describe()));
        }
        // A random phase against the lease renewals (every half lease).
        pause(Duration::from_millis(random_below(cluster.cfg.lease_ms / 2 + 1)));
        let old = cluster.nodes[leader].client;
        let watch = std::env::var_os("LEASETSO_FAILOVER_WATCH").map(|_| Watch::start(cluster.seeds()));
        let (round, at) = probes.arm(old);
        match kind {
            Kind::Kill => cluster.kill(leader),
            Kind::Term => cluster.term(leader),
        };
        let hits = probes.hits(round, lease * 12 + Duration::from_secs(10)).unwrap_or_else(|missing| {
            cluster.fail(&format!(
                "{name} round {r}: {missing} of {} probes got no timestamp from a new leader: {}",
                probes.len(),
                cluster.describe()
            ))
        });
        if let Some(w) = watch {
            for line in w.finish(at) {
                println!("    {line}");
            }
        }
        let status = cluster.nodes[leader].reap(STOP_TIMEOUT);
        let exit_ok = match kind {
            Kind::Kill => true,
            Kind::Term => status.is_some_and(|s| s.success()),
        };
        let new = cluster.index_of(hits[0].by).expect("a node's address");
        let log_new = &cluster.nodes[new].log;
        let acquired = log_new.find(None, at, "lease acquired");
        let serving = acquired.and_then(|a| log_new.find(None, a, "serving timestamps"));
        let released = cluster.nodes[leader].log.find(None, at, "lease released");
        let stopped = cluster.nodes[leader].log.find(None, at, "server stopped");
        let since = |t: Option<Instant>| t.map(|t| ms(t.saturating_duration_since(at)));
        let raw = &hits[1..];
        let res = RoundResult {
            lib_gap: ms(hits[0].gap),
            lib_outage: ms(hits[0].outage),
            raw_gaps: raw.iter().map(|h| ms(h.gap)).collect(),
            not_leader: raw.iter().map(|h| h.not_leader).sum(),
            conn_errors: raw.iter().map(|h| h.conn_errors).sum(),
            acquired: since(acquired),
            serving: since(serving),
            released: since(released),
            stopped: since(stopped),
            exit_ok,
        };
        let opt = |x: Option<f64>| x.map_or_else(|| "?".into(), |v| format!("{v:.1}"));
        println!(
            "  lease {} ms, {name} round {r}: node {} -> node {}: first ts {:.1} ms (outage {:.1} ms), raw {} ms; \
             new leader acquired {} ms, serving {} ms{}; \
             raw clients: {} NotLeader, {} connection errors, {} other{}",
            cluster.cfg.lease_ms,
            leader + 1,
            new + 1,
            res.lib_gap,
            res.lib_outage,
            res.raw_gaps.iter().map(|g| format!("{g:.1}")).collect::<Vec<_>>().join("/"),
            opt(res.acquired),
            opt(res.serving),
            if kind == Kind::Term {
                format!(", old released {} ms, stopped {} ms", opt(res.released), opt(res.stopped))
            } else {
                String::new()
            },
            res.not_leader,
            res.conn_errors,
            raw.iter().map(|h| h.other_errors).sum::<u64>(),
            if exit_ok { String::new() } else { format!(" (old leader exit: {status:?})") },
        );
        results.push(res);
        cluster.restart(leader);
    }
    results
}

/// Diagnostic (`LEASETSO_FAILOVER_WATCH=1`): every node's status polled
/// every few ms during a round; the changes are printed after it.
struct Watch {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<(Instant, usize, String)>>,
}

impl Watch {
    fn start(seeds: Vec<SocketAddr>) -> Watch {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            let mut seen: Vec<String> = vec![String::new(); seeds.len()];
            let mut out = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                for (i, addr) in seeds.iter().enumerate() {
                    let now = match query_status(*addr) {
                        Ok(s) => format!(
                            "{:?} leader {:?} lease {:?} fence {:?} quarantine_left {} links {:#b}",
                            s.role,
                            s.leader.node.map(|n| n.0 + 1),
                            s.view.lease,
                            s.view.fence,
                            s.view.quarantine_left_ms,
                            s.view.links_up
                        ),
                        Err(e) => format!("down ({})", e.kind()),
                    };
                    if now != seen[i] {
                        out.push((Instant::now(), i, now.clone()));
                        seen[i] = now;
                    }
                }
                thread::sleep(Duration::from_millis(3));
            }
            out
        });
        Watch { stop, thread }
    }

    fn finish(self, at: Instant) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        let changes = self.thread.join().unwrap_or_default();
        changes
            .into_iter()
            .map(|(t, i, s)| {
                let dt = if t >= at { ms(t - at) } else { -ms(at - t) };
                format!("{dt:8.1} ms node {}: {s}", i + 1)
            })
            .collect()
    }
}

fn report_rounds(table: &mut Table, lease: u64, kind: Kind, res: &[RoundResult]) {
    let l = format!("{lease} ms");
    let sc = if kind == Kind::Kill { "kill -9 leader" } else { "SIGTERM leader" };
    let col = |f: &dyn Fn(&RoundResult) -> Option<f64>| res.iter().filter_map(f).collect::<Vec<f64>>();
    table.add(&l, sc, "**signal → first ts from new leader** (Client)", "ms", &col(&|r| Some(r.lib_gap)));
    let raw: Vec<f64> = res.iter().flat_map(|r| r.raw_gaps.iter().copied()).collect();
    table.add(&l, sc, "signal → first ts from new leader (raw clients, pooled)", "ms", &raw);
    table.add(&l, sc, "last ts from old → first from new (Client)", "ms", &col(&|r| Some(r.lib_outage)));
    table.add(&l, sc, "signal → new leader logs `lease acquired`", "ms", &col(&|r| r.acquired));
    table.add(
        &l,
        sc,
        "`lease acquired` → `serving timestamps`",
        "ms",
        &col(&|r| Some(r.serving? - r.acquired?)),
    );
    if kind == Kind::Term {
        table.add(&l, sc, "signal → old leader logs `lease released`", "ms", &col(&|r| r.released));
        table.add(&l, sc, "signal → old leader logs `server stopped`", "ms", &col(&|r| r.stopped));
    }
    table.add(
        &l,
        sc,
        "NotLeader replies per round (4 raw clients)",
        "n",
        &col(&|r| Some(r.not_leader as f64)),
    );
    table.add(
        &l,
        sc,
        "connection errors per round (4 raw clients)",
        "n",
        &col(&|r| Some(r.conn_errors as f64)),
    );
}

// ---------------------------------------------------------------------------
// 3: cold start

struct ColdResult {
    listening: f64,
    recovered: Option<f64>,
    acquired: Option<f64>,
    serving: Option<f64>,
    first_ts: f64,
}

fn cold_start(cfg: &ClusterCfg) -> ColdResult {
    let mut cluster = Cluster::start(cfg);
    let t0 = cluster.spawned_at;
    let seeds = cluster.seeds();
    let mut probe = RawProbe::new(&seeds, 0);
    let deadline = Instant::now() + cluster.lease() * 12 + Duration::from_secs(20);
    let first = loop {
        check_interrupt();
        if let Outcome::Ok(_) = probe.call() {
            break Instant::now();
        }
        if Instant::now() >= deadline {
            cluster.fail("cold start: no timestamp");
        }
    };
    let since = |t: Instant| ms(t.saturating_duration_since(t0));
    let over_nodes = |needle: &str, latest: bool| {
        let times = cluster.nodes.iter().filter_map(|n| n.log.find(None, t0, needle));
        if latest { times.max() } else { times.min() }
    };
    let res = ColdResult {
        listening: over_nodes("listening on", true).map_or(f64::NAN, since),
        recovered: over_nodes("restart counter recovered", true).map(since),
        acquired: over_nodes("lease acquired", false).map(since),
        serving: over_nodes("serving timestamps", false).map(since),
        first_ts: since(first),
    };
    let opt = |x: Option<f64>| x.map_or_else(|| "?".into(), |v| format!("{v:.1}"));
    println!(
        "  lease {} ms, cold start: all listening {:.1} ms, restart counters recovered {} ms, \
         lease acquired {} ms, serving {} ms, first ts {:.1} ms",
        cfg.lease_ms,
        res.listening,
        opt(res.recovered),
        opt(res.acquired),
        opt(res.serving),
        res.first_ts
    );
    // Check the cluster settles (and leave nothing half-started behind).
    cluster.wait_steady(cluster.lease() * 12 + Duration::from_secs(20));
    res
}

// ---------------------------------------------------------------------------
// 4: diskless lease

/// `/proc/<pid>/io` of a running process.
fn proc_io(pid: u32) -> Option<HashMap<String, u64>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    Some(
        text.lines()
            .filter_map(|l| {
                let (k, v) = l.split_once(':')?;
                Some((k.trim().to_string(), v.trim().parse().ok()?))
            })
            .collect(),
    )
}

/// An `strace -c` attached to a process, detached (SIGINT) by `finish`,
/// killed on drop otherwise.
struct Strace {
    child: Child,
    out: PathBuf,
}

const TRACED: &str =
    "fsync,fdatasync,sync_file_range,msync,pwrite64,pwritev,pwritev2,write,writev,sendto,sendmsg";

impl Strace {
    fn attach(pid: u32, out: PathBuf) -> Option<Strace> {
        let mut cmd = Command::new("strace");
        cmd.args(["-f", "-c", "-q", "-e"])
            .arg(format!("trace={TRACED}"))
            .arg("-o")
            .arg(&out)
            .arg("-p")
            .arg(pid.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        die_with_parent(&mut cmd);
        cmd.spawn().ok().map(|child| Strace { child, out })
    }

    /// Detaches and returns the calls per system call.
    fn finish(mut self) -> Option<HashMap<String, u64>> {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32)?;
        rustix::process::kill_process(pid, rustix::process::Signal::INT).ok()?;
        let end = Instant::now() + Duration::from_secs(10);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < end {
            thread::sleep(Duration::from_millis(10));
        }
        let text = std::fs::read_to_string(&self.out).ok()?;
        let mut calls = HashMap::new();
        for line in text.lines() {
            let t: Vec<&str> = line.split_whitespace().collect();
            if t.len() >= 5
                && t[0].parse::<f64>().is_ok()
                && let Ok(n) = t[3].parse::<u64>()
            {
                calls.insert(t[t.len() - 1].to_string(), n);
            }
        }
        Some(calls)
    }
}

impl Drop for Strace {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

struct IdleResult {
    lease_ms: u64,
    save_ms: u64,
    secs: f64,
    renewals_per_s: f64,
    /// Per node, per second.
    syscw: Vec<f64>,
    disk_kib: Vec<f64>,
    /// Per node, per second, from strace (None without it).
    sync_file_range: Option<Vec<f64>>,
    fsyncs: Option<Vec<f64>>,
    pwrite: Option<Vec<f64>>,
    sendto: Option<Vec<f64>>,
    strace_renewals_per_s: Option<f64>,
}

fn lease_counter(cluster: &Cluster, leader: usize) -> u64 {
    let s = cluster.status(leader).unwrap_or_else(|e| cluster.fail(&format!("leader status: {e}")));
    if s.role != Role::Leader {
        cluster.fail(&format!("node {} stopped leading during the idle window", leader + 1));
    }
    s.view.lease.map_or(0, |b| b.counter)
}

fn idle(cfg: &ClusterCfg, save_ms: Option<u64>, secs: u64) -> IdleResult {
    let mut cfg = cfg.clone();
    if let Some(s) = save_ms {
        cfg.extra = vec!["--save-interval-ms".into(), s.to_string()];
    }
    let mut cluster = Cluster::start(&cfg);
    let leader = cluster.wait_steady(cluster.lease() * 12 + Duration::from_secs(20));
    pause(Duration::from_secs(1));
    let pids: Vec<u32> = cluster.nodes.iter().map(|n| n.pid().expect("running")).collect();
    let window = Duration::from_secs(secs);

    // Window A: nothing attached, /proc/<pid>/io and the leader's ballot counter.
    let c0 = lease_counter(&cluster, leader);
    let io0: Vec<_> = pids.iter().map(|&p| proc_io(p)).collect();
    let t0 = Instant::now();
    pause(window);
    let io1: Vec<_> = pids.iter().map(|&p| proc_io(p)).collect();
    let c1 = lease_counter(&cluster, leader);
    let dt = t0.elapsed().as_secs_f64();
    let delta = |key: &str| -> Vec<f64> {
        io0.iter()
            .zip(&io1)
            .map(|(a, b)| match (a, b) {
                (Some(a), Some(b)) => (b[key].saturating_sub(a[key])) as f64 / dt,
                _ => f64::NAN,
            })
            .collect()
    };
    let syscw = delta("syscw");
    let disk_kib = delta("write_bytes").iter().map(|b| b / 1024.0).collect();

    // Window B: strace -c on every node.
    let straces: Vec<Option<Strace>> = pids
        .iter()
        .enumerate()
        .map(|(i, &p)| Strace::attach(p, cluster.dir.path().join(format!("strace-{}.txt", i + 1))))
        .collect();
    let mut traced = None;
    let mut strace_renewals = None;
    if straces.iter().all(Option::is_some) {
        pause(Duration::from_millis(300)); // attached
        let s0 = lease_counter(&cluster, leader);
        let st0 = Instant::now();
        pause(window);
        let s1 = lease_counter(&cluster, leader);
        let sdt = st0.elapsed().as_secs_f64();
        let calls: Vec<_> = straces.into_iter().map(|s| s.and_then(Strace::finish)).collect();
        if calls.iter().all(Option::is_some) {
            let calls: Vec<HashMap<String, u64>> = calls.into_iter().map(Option::unwrap).collect();
            traced = Some((calls, sdt));
            strace_renewals = Some((s1 - s0) as f64 / sdt);
        }
    } else {
        eprintln!("strace is not available: the idle run reports /proc/<pid>/io only");
    }
    let per_s = |names: &[&str]| -> Option<Vec<f64>> {
        traced.as_ref().map(|(calls, sdt)| {
            calls
                .iter()
                .map(|c| names.iter().map(|n| c.get(*n).copied().unwrap_or(0)).sum::<u64>() as f64 / sdt)
                .collect()
        })
    };
    let res = IdleResult {
        lease_ms: cfg.lease_ms,
        save_ms: save_ms.unwrap_or(3000),
        secs: dt,
        renewals_per_s: (c1 - c0) as f64 / dt,
        syscw,
        disk_kib,
        sync_file_range: per_s(&["sync_file_range"]),
        fsyncs: per_s(&["fsync", "fdatasync", "msync"]),
        pwrite: per_s(&["pwrite64", "pwritev", "pwritev2", "write", "writev"]),
        sendto: per_s(&["sendto", "sendmsg"]),
        strace_renewals_per_s: strace_renewals,
    };
    cluster.wait_steady(Duration::from_secs(5));
    res
}

fn fmt_nodes(v: &[f64]) -> String {
    v.iter().map(|x| format!("{x:.2}")).collect::<Vec<_>>().join(" / ")
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

fn report_idle(runs: &[IdleResult]) {
    println!();
    println!("Idle serving cluster, no clients; per node (node 1 / 2 / 3), per second:");
    println!();
    println!(
        "| lease | save interval | window | renewals/s | expected saves/s/node | `sync_file_range`/s | \
         `fsync`+`fdatasync`+`msync`/s | `pwrite64`+`write`/s | `syscw`/s (/proc) | disk KiB/s (/proc) | `sendto`/s |"
    );
    println!("|---:|---:|---:|---:|---:|---|---|---|---|---|---|");
    let opt = |v: &Option<Vec<f64>>| v.as_deref().map_or_else(|| "–".into(), fmt_nodes);
    for r in runs {
        println!(
            "| {} ms | {} ms | 2 × {:.1} s | {:.2}{} | {:.2} | {} | {} | {} | {} | {} | {} |",
            r.lease_ms,
            r.save_ms,
            r.secs,
            r.renewals_per_s,
            r.strace_renewals_per_s.map_or_else(String::new, |s| format!(" ({s:.2} traced)")),
            1000.0 / r.save_ms as f64,
            opt(&r.sync_file_range),
            opt(&r.fsyncs),
            opt(&r.pwrite),
            fmt_nodes(&r.syscw),
            fmt_nodes(&r.disk_kib),
            opt(&r.sendto),
        );
    }
    println!();
    for r in runs {
        let saves = 1000.0 / r.save_ms as f64;
        let flushes = r.sync_file_range.as_deref().map_or(f64::NAN, mean);
        println!(
            "  lease {} ms, save {} ms: {:.2} sync_file_range/s per node = {:.2} per expected save, \
             {:.3} per renewal; {:.2} write syscalls/s per node = {:.2} per expected save",
            r.lease_ms,
            r.save_ms,
            flushes,
            flushes / saves,
            flushes / r.renewals_per_s,
            mean(&r.syscw),
            mean(&r.syscw) / saves,
        );
    }
}

// ---------------------------------------------------------------------------

fn load_avg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// `YYYY-MM-DD HH:MM:SS UTC` (civil-from-days).
fn utc_now() -> String {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC", rem / 3600, rem % 3600 / 60, rem % 60)
}

fn median_of(v: &[f64]) -> Option<f64> {
    stats(v).map(|s| s.median)
}

fn main() {
    let settings = Settings::from_env();
    let Some(bin) = find_leasetso_bin() else {
        if settings.bench {
            eprintln!(
                "failover: target/release/leasetso not found; build it first:\n  \
                 cargo build --release -p leasetso && cargo bench -p leasetso-benches --bench failover"
            );
            std::process::exit(1);
        }
        println!("failover: skipped (no leasetso binary next to this bench; `cargo build -p leasetso`)");
        return;
    };
    warn_if_stale(&bin);
    let _ = ctrlc::set_handler(|| INTERRUPTED.store(true, Ordering::Relaxed));
    node_epoch();
    clock_pair();

    println!(
        "failover: 3 `leasetso serve` processes on 127.0.0.1, binary {}; {} CPUs; load {}; {}",
        bin.display(),
        thread::available_parallelism().map_or(0, |n| n.get()),
        load_avg(),
        utc_now()
    );
    println!(
        "  {} kill -9 and {} SIGTERM rounds per lease {:?} ms, {} cold starts, idle windows of {} s; \
         probes: 1 leasetso_std::Client + {} raw clients, each pausing {PACE:?} after a timestamp",
        settings.rounds,
        settings.rounds,
        settings.leases,
        settings.cold_runs,
        settings.idle_secs,
        settings.raw_clients
    );

    let mut table = Table::new();
    let mut targets: Vec<String> = Vec::new();
    let mut idle_runs = Vec::new();
    let cfg_for = |lease_ms: u64, label: &str| ClusterCfg {
        bin: bin.clone(),
        lease_ms,
        extra: Vec::new(),
        label: label.into(),
        logs_dir: settings.logs_dir.clone(),
    };

    for &lease in &settings.leases {
        if settings.runs("kill") || settings.runs("term") {
            let mut cluster = Cluster::start(&cfg_for(lease, "rounds"));
            cluster.wait_steady(cluster.lease() * 12 + Duration::from_secs(20));
            let mut probes = Probes::start(&cluster, settings.raw_clients);
            if settings.runs("kill") {
                let res = failover_rounds(&mut cluster, &mut probes, Kind::Kill, settings.rounds);
                report_rounds(&mut table, lease, Kind::Kill, &res);
                let gaps: Vec<f64> = res.iter().map(|r| r.lib_gap).collect();
                if let Some(m) = median_of(&gaps) {
                    let bound = 1.5 * lease as f64;
                    let mut goal = format!("median ≤ 1.5 × lease = {bound:.0} ms");
                    let mut met = m <= bound;
                    if lease <= 500 {
                        goal.push_str(" and < 1000 ms");
                        met &= m < 1000.0;
                    }
                    targets.push(format!(
                        "| kill -9 at lease {lease} ms | {goal} | median {m:.1} ms | {} |",
                        if met { "**met**" } else { "**missed**" }
                    ));
                }
            }
            if settings.runs("term") {
                let res = failover_rounds(&mut cluster, &mut probes, Kind::Term, settings.rounds);
                report_rounds(&mut table, lease, Kind::Term, &res);
                let gaps: Vec<f64> = res.iter().map(|r| r.lib_gap).collect();
                let bad_exits = res.iter().filter(|r| !r.exit_ok).count();
                if let Some(s) = stats(&gaps) {
                    targets.push(format!(
                        "| SIGTERM at lease {lease} ms | gap < 50 ms | median {:.1} ms, max {:.1} ms{} | {} |",
                        s.median,
                        s.max,
                        if bad_exits > 0 { format!(", {bad_exits} unclean exits") } else { String::new() },
                        if s.max < 50.0 {
                            "**met** (every round)"
                        } else if s.median < 50.0 {
                            "median met, **missed** in some rounds"
                        } else {
                            "**missed**"
                        }
                    ));
                }
            }
            probes.finish();
            drop(cluster);
        }
        if settings.runs("cold") {
            let runs: Vec<ColdResult> =
                (0..settings.cold_runs).map(|_| cold_start(&cfg_for(lease, "cold"))).collect();
            let l = format!("{lease} ms");
            let col =
                |f: &dyn Fn(&ColdResult) -> Option<f64>| runs.iter().filter_map(f).collect::<Vec<f64>>();
            table.add(&l, "cold start", "**spawn → first ts**", "ms", &col(&|r| Some(r.first_ts)));
            table.add(&l, "cold start", "spawn → all 3 listening", "ms", &col(&|r| Some(r.listening)));
            table.add(
                &l,
                "cold start",
                "spawn → restart counters recovered (all 3)",
                "ms",
                &col(&|r| r.recovered),
            );
            table.add(&l, "cold start", "spawn → `lease acquired`", "ms", &col(&|r| r.acquired));
            table.add(&l, "cold start", "spawn → `serving timestamps`", "ms", &col(&|r| r.serving));
        }
    }
    if settings.runs("idle") {
        let idle_lease = if settings.bench {
            vec![(500, None), (500, Some(1000)), (3000, None)]
        } else {
            vec![(500, None)]
        };
        for (lease, save) in idle_lease {
            let r = idle(&cfg_for(lease, "idle"), save, settings.idle_secs);
            println!(
                "  idle lease {} ms save {} ms: {:.2} renewals/s, syscw/s {}, sync_file_range/s {}",
                r.lease_ms,
                r.save_ms,
                r.renewals_per_s,
                fmt_nodes(&r.syscw),
                r.sync_file_range.as_deref().map_or_else(|| "–".into(), fmt_nodes)
            );
            idle_runs.push(r);
        }
    }

    println!();
    println!("Failover, 3 nodes on loopback ({}; load {}):", utc_now(), load_avg());
    println!();
    table.print();
    if !idle_runs.is_empty() {
        report_idle(&idle_runs);
    }
    if !targets.is_empty() {
        println!();
        println!("| target | goal | result | |");
        println!("|---|---|---|---|");
        for t in &targets {
            println!("{t}");
        }
    }
}
