//! One conformance suite for every runtime and across them: the same checks
//! against `leasetso serve` on each server runtime (`--runtime std|smol`),
//! through each client library (`leasetso_std::Client`, blocking, callers
//! as threads; `leasetso_smol::Client`, async, callers as tasks), in every
//! pairing: std client ↔ smol server and smol client ↔ std server as much as
//! the like pairs.
//!
//! * **Client cases** are functions of a `(server runtime, client kind,
//!   wire)` triple; [`matrix!`] makes one test per triple of each, so a
//!   failure names its cell (`batching_and_split::smol_server_std_client`,
//!   `single_node::tls_std_server_smol_client`). They are:
//!   single node (with the status call), batching and split, pipelining,
//!   the handshake (a refused cluster id, nobody listening), and
//!   a restart above the window (SIGTERM, then kill -9 under load).
//! * **Raw cases** ([`raw_cases`]) are byte strings sent over a plain socket
//!   and inside TLS:
//!   garbage, truncated, oversized and malformed frames, handshake errors, a
//!   foreign cluster id, pipelined requests answered in order by id. Every
//!   case runs against each server runtime, plaintext and with TLS on, and
//!   the transcripts (the bytes that came back, with the timestamps
//!   masked, and how the connection ended) must be **the same bytes** from
//!   every runtime on either wire, and the ones PROTOCOL.md prescribes: TLS
//!   changes how the bytes travel, never which bytes.
//! * **Cluster cases** run one 3-node cluster per server runtime and a
//!   mixed one, and kill the leader with SIGKILL while both clients load it
//!   (the mixed cluster's killed nodes come back on the other runtime; a
//!   second mixed cluster runs with TLS on every door and link).
//!   Before the kills and after each, every follower's raw answers must be
//!   PROTOCOL.md's bytes (the same from std and smol followers), and a
//!   client of each library seeded with a follower must reach the leader.
//! * `restart_across_runtimes` serves one data dir by each runtime in turn.
//!
//! **TLS** (`serve --certs-dir`, certificates from `leasetso cert`): every
//! case runs on both wires. The wire tap cannot read TLS, so under TLS the
//! cases that count requests on the wire check the callers' history alone.
//!
//! Servers are shared where the checks leave no state that matters: one
//! single-node server per runtime and wire serves every stateless case that
//! runs while it is alive ([`shared_server`]). Every process is killed and every
//! data dir removed when its last user is done, passing or failing.
//! `LEASETSO_CONFORMANCE_FULL=1` runs longer loops and more failover rounds.
//! Run alone with `cargo test -p leasetso-tests --test conformance` (build
//! the binary first: `cargo build -p leasetso`).

use std::fmt;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use leasetso_core::wire::{LEN_PREFIX, MAGIC, MAX_FRAME_LEN, VERSION};
use leasetso_core::{ErrorCode, Frame, LeaderHint, LeaseView, MAX_LOGICAL, NodeId, Role, Timestamp};
use leasetso_tests::harness::cluster::{Cluster, ClusterOptions, exclusive};
use leasetso_tests::harness::tap::Tap;
use leasetso_tests::{
    Call, RawConn, Runtime, ServerProcess, TempDir, TestCerts, Transport, check_calls, data_dir, dead_addr,
    encode, wall_ms,
};

/// The cluster id of every server here: a Hello for another one is refused.
const CLUSTER: u64 = 42;
/// The largest count one request may carry.
const MAX_COUNT: u32 = MAX_LOGICAL - 1;
/// How long a raw connection waits for the next byte before the case fails.
const RAW_READ_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a cluster may take to elect a leader.
const ELECTION: Duration = Duration::from_secs(15);
/// How long a load may take to make progress again after an event.
const RESUME: Duration = Duration::from_secs(10);

/// Whether `LEASETSO_CONFORMANCE_FULL` asks for the longer runs.
fn full() -> bool {
    std::env::var_os("LEASETSO_CONFORMANCE_FULL").is_some_and(|v| !v.is_empty() && v != "0")
}

// ---------------------------------------------------------------------------
// Runtimes and clients
// ---------------------------------------------------------------------------

/// The client libraries under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ClientKind {
    /// `leasetso_std::Client`: blocking, callers are threads.
    Std,
    /// `leasetso_smol::Client`: async, callers are tasks.
    Smol,
}

impl ClientKind {
    /// Every client library.
    const ALL: [ClientKind; 2] = [ClientKind::Std, ClientKind::Smol];

    fn name(self) -> &'static str {
        match self {
            ClientKind::Std => "std",
            ClientKind::Smol => "smol",
        }
    }
}

impl fmt::Display for ClientKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether a server's doors speak TLS (`serve --certs-dir`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wire {
    Plain,
    Tls,
}

impl Wire {
    /// Both wires.
    const ALL: [Wire; 2] = [Wire::Plain, Wire::Tls];
}

impl fmt::Display for Wire {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Wire::Plain => "plaintext",
            Wire::Tls => "TLS",
        })
    }
}

/// The certificates of cluster 42 for every TLS server of the suite,
/// shared as the servers are, and removed with their last user.
fn shared_certs() -> Arc<TestCerts> {
    static SHARED: Mutex<Weak<TestCerts>> = Mutex::new(Weak::new());
    let mut shared = SHARED.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(certs) = shared.upgrade() {
        return certs;
    }
    let certs = Arc::new(TestCerts::create(CLUSTER));
    *shared = Arc::downgrade(&certs);
    certs
}

/// The options every client library takes, in the suite's terms.
#[derive(Clone, Debug)]
struct ClientConf {
    /// The cluster the client expects (0: any).
    cluster_id: u64,
    /// How long one call retries.
    deadline: Duration,
    /// The most timestamps merged into one request.
    max_batch: u32,
    /// Requests in flight on one connection, for clients that pipeline.
    in_flight: usize,
    /// TLS, for a server with `--certs-dir`.
    tls: Option<leasetso_std::ClientTls>,
}

impl Default for ClientConf {
    fn default() -> Self {
        ClientConf {
            cluster_id: 0,
            deadline: Duration::from_secs(7),
            max_batch: 10_000,
            in_flight: 4,
            tls: None,
        }
    }
}

/// Why a client call failed: the server's code if it refused, and the
/// client's message.
#[derive(Clone, Debug)]
struct Failure {
    code: Option<ErrorCode>,
    message: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// One impl for both libraries: their errors are one type
/// (`leasetso_runtime_common::ClientError`). Which client failed is not in the
/// message; every check that reports a failure names the client kind, and
/// each matrix cell prints its server and client first.
impl From<leasetso_std::ClientError> for Failure {
    fn from(e: leasetso_std::ClientError) -> Self {
        Failure { code: e.code(), message: e.to_string() }
    }
}

/// A connected client of either library, shareable by its callers.
///
/// The async client is driven by `smol::block_on` where the test waits
/// for one call, and its callers are tasks on one `smol::LocalExecutor`
/// (one thread) where many call at once: the way an async application uses
/// it.
#[derive(Clone)]
enum TestClient {
    Std(Arc<leasetso_std::Client>),
    Smol(leasetso_smol::Client),
}

impl TestClient {
    /// Connects `kind` to the first of `seeds` that completes the handshake.
    fn connect(kind: ClientKind, seeds: &[SocketAddr], conf: ClientConf) -> Result<TestClient, Failure> {
        match kind {
            ClientKind::Std => {
                let opts = leasetso_std::ClientOptions {
                    cluster_id: conf.cluster_id,
                    deadline: conf.deadline,
                    request_timeout: Duration::from_secs(1),
                    connect_timeout: Duration::from_secs(1),
                    max_batch: conf.max_batch,
                    max_in_flight: conf.in_flight,
                    tls: conf.tls,
                    ..leasetso_std::ClientOptions::default()
                };
                Ok(TestClient::Std(Arc::new(leasetso_std::Client::connect_with(seeds, opts)?)))
            }
            ClientKind::Smol => {
                let opts = leasetso_smol::ClientOptions {
                    cluster_id: conf.cluster_id,
                    deadline: conf.deadline,
                    request_timeout: Duration::from_secs(1),
                    connect_timeout: Duration::from_secs(1),
                    max_batch: conf.max_batch,
                    max_in_flight: conf.in_flight,
                    tls: conf.tls,
                    ..leasetso_smol::ClientOptions::default()
                };
                Ok(TestClient::Smol(smol::block_on(leasetso_smol::Client::connect(seeds, opts))?))
            }
        }
    }

    /// [`connect`](Self::connect), panicking with the reason.
    fn open(kind: ClientKind, seeds: &[SocketAddr], conf: ClientConf) -> TestClient {
        Self::connect(kind, seeds, conf).unwrap_or_else(|e| panic!("{kind} client to {seeds:?}: {e}"))
    }

    fn kind(&self) -> ClientKind {
        match self {
            TestClient::Std(_) => ClientKind::Std,
            TestClient::Smol(_) => ClientKind::Smol,
        }
    }

    /// The most requests it may have in flight on its connection.
    fn in_flight_limit(&self) -> i64 {
        match self {
            TestClient::Std(c) => c.options().max_in_flight as i64,
            TestClient::Smol(c) => c.options().max_in_flight as i64,
        }
    }

    /// The server it talks to now.
    fn server_addr(&self) -> SocketAddr {
        match self {
            TestClient::Std(c) => c.server_addr(),
            TestClient::Smol(c) => c.server_addr(),
        }
    }

    /// The status of the server it talks to.
    fn status(&self) -> Result<StatusView, Failure> {
        Ok(match self {
            TestClient::Std(c) => {
                let s = c.status()?;
                StatusView {
                    role: s.role,
                    node: s.node,
                    leader: s.leader,
                    window_end_ms: s.window_end_ms,
                    current: s.current,
                }
            }
            TestClient::Smol(c) => {
                let s = smol::block_on(c.status())?;
                StatusView {
                    role: s.role,
                    node: s.node,
                    leader: s.leader,
                    window_end_ms: s.window_end_ms,
                    current: s.current,
                }
            }
        })
    }

    /// `count` timestamps (one caller, waiting).
    fn get_ts_n(&self, count: u32) -> Result<Timestamp, Failure> {
        match self {
            TestClient::Std(c) => Ok(c.get_ts_n(count)?),
            TestClient::Smol(c) => Ok(smol::block_on(c.get_ts_n(count))?),
        }
    }

    /// Runs `plan.callers` concurrent callers on this client (threads for a
    /// blocking client, tasks for an async one) until each made its calls or
    /// the plan is stopped; returns every call they made.
    fn run(&self, plan: &Callers) -> Vec<Rec> {
        match self {
            TestClient::Std(c) => thread::scope(|s| {
                let handles: Vec<_> = (0..plan.callers)
                    .map(|caller| {
                        let c = Arc::clone(c);
                        s.spawn(move || {
                            let mut out = Vec::new();
                            let mut i = 0;
                            while plan.more(i) {
                                let count = (plan.count)(caller, i);
                                let sent = Instant::now();
                                let result = c.get_ts_n(count).map_err(Failure::from);
                                out.push(plan.record(caller, sent, count, result));
                                if let Some(pause) = plan.pause_after(&out) {
                                    thread::sleep(pause);
                                }
                                i += 1;
                            }
                            out
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                    .collect()
            }),
            TestClient::Smol(c) => {
                let ex = smol::LocalExecutor::new();
                let tasks: Vec<_> = (0..plan.callers)
                    .map(|caller| {
                        let c = c.clone();
                        ex.spawn(async move {
                            let mut out = Vec::new();
                            let mut i = 0;
                            while plan.more(i) {
                                let count = (plan.count)(caller, i);
                                let sent = Instant::now();
                                let result = c.get_ts_n(count).await.map_err(Failure::from);
                                out.push(plan.record(caller, sent, count, result));
                                if let Some(pause) = plan.pause_after(&out) {
                                    smol::Timer::after(pause).await;
                                }
                                i += 1;
                            }
                            out
                        })
                    })
                    .collect();
                smol::block_on(ex.run(async {
                    let mut all = Vec::new();
                    for task in tasks {
                        all.extend(task.await);
                    }
                    all
                }))
            }
        }
    }

    /// [`run`](Self::run) on a thread of its own, for loads that run while
    /// the test does something else; stop them with [`Callers::stop`].
    fn start(&self, plan: Callers) -> JoinHandle<Vec<Rec>> {
        let client = self.clone();
        thread::Builder::new()
            .name(format!("load-{}", client.kind()))
            .spawn(move || client.run(&plan))
            .expect("spawn a load thread")
    }
}

/// What both clients' status calls return, in the suite's terms.
#[derive(Clone, Copy, Debug)]
struct StatusView {
    role: Role,
    node: NodeId,
    leader: LeaderHint,
    window_end_ms: u64,
    current: Timestamp,
}

impl StatusView {
    /// Asserts that it describes node `node` serving at `addr`, having
    /// handed out at least up to `seen`.
    fn assert_serving(&self, node: usize, addr: SocketAddr, seen: Timestamp, what: &str) {
        let id = Some(NodeId(node as u16));
        assert_eq!(self.role, Role::Leader, "{what}: {self:?}");
        assert_eq!(self.node, NodeId(node as u16), "{what}: {self:?}");
        assert_eq!(self.leader, LeaderHint { node: id, addr: Some(addr) }, "{what}: its hint, {self:?}");
        assert!(self.current >= seen, "{what}: current {:?} below {seen:?} handed out", self.current);
        assert!(self.window_end_ms > self.current.physical_ms, "{what}: window not above current: {self:?}");
    }
}

/// One call as a caller saw it.
#[derive(Clone, Debug)]
struct Rec {
    client: usize,
    sent: Instant,
    received: Instant,
    count: u32,
    result: Result<Timestamp, Failure>,
}

impl Rec {
    fn call(&self) -> Option<Call> {
        let last = *self.result.as_ref().ok()?;
        Some(Call { client: self.client, sent: self.sent, received: self.received, count: self.count, last })
    }
}

/// The successful calls; panics with the first few failures if any call failed.
fn all_ok(recs: &[Rec], what: &str) -> Vec<Call> {
    let failed: Vec<&Rec> = recs.iter().filter(|r| r.result.is_err()).collect();
    if !failed.is_empty() {
        let shown: Vec<String> = failed.iter().take(5).map(|r| format!("  {r:?}")).collect();
        panic!("{what}: {} of {} calls failed, e.g.:\n{}", failed.len(), recs.len(), shown.join("\n"));
    }
    recs.iter().filter_map(Rec::call).collect()
}

/// What a set of concurrent callers does.
#[derive(Clone)]
struct Callers {
    /// How many callers.
    callers: usize,
    /// The [`Call::client`] id of caller 0 (the others follow), so that the
    /// calls of several clients can be checked together.
    first_id: usize,
    /// Calls per caller (`usize::MAX`: until stopped).
    calls: usize,
    /// The count of caller `c`'s call `i`.
    count: fn(usize, usize) -> u32,
    /// Raised to stop every caller after its call under way.
    stop: Arc<AtomicBool>,
    /// Successful calls so far, all callers together.
    ok: Arc<AtomicU64>,
    /// A pause after each successful call (failed ones pause 10 ms).
    pause: Duration,
}

impl Callers {
    fn new(callers: usize, calls: usize, count: fn(usize, usize) -> u32) -> Callers {
        Callers {
            callers,
            first_id: 0,
            calls,
            count,
            stop: Arc::new(AtomicBool::new(false)),
            ok: Arc::new(AtomicU64::new(0)),
            pause: Duration::ZERO,
        }
    }

    fn more(&self, i: usize) -> bool {
        i < self.calls && !self.stop.load(Ordering::SeqCst)
    }

    fn record(&self, caller: usize, sent: Instant, count: u32, result: Result<Timestamp, Failure>) -> Rec {
        if result.is_ok() {
            self.ok.fetch_add(1, Ordering::SeqCst);
        }
        Rec { client: self.first_id + caller, sent, received: Instant::now(), count, result }
    }

    fn pause_after(&self, recs: &[Rec]) -> Option<Duration> {
        match recs.last() {
            Some(r) if r.result.is_err() => Some(Duration::from_millis(10)),
            _ if !self.pause.is_zero() => Some(self.pause),
            _ => None,
        }
    }

    fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Waits until `more` calls succeeded after this one was made.
    fn wait_progress(&self, more: u64, timeout: Duration) -> bool {
        let target = self.ok.load(Ordering::SeqCst) + more;
        let deadline = Instant::now() + timeout;
        while self.ok.load(Ordering::SeqCst) < target {
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(2));
        }
        true
    }
}

// ---------------------------------------------------------------------------
// Shared servers
// ---------------------------------------------------------------------------

/// A server of the suite: its process, and the certificates its doors take
/// if it speaks TLS.
struct TestServer {
    // Dropped first: the process dies before its data dir and certificates go.
    server: ServerProcess,
    certs: Option<Arc<TestCerts>>,
}

impl TestServer {
    /// `serve --cluster-id 42` on `runtime` with `wire`'s doors, on
    /// `listen`, serving `data`; panics with its output if it fails.
    fn start(runtime: Runtime, wire: Wire, listen: &str, data: &TempDir) -> TestServer {
        let certs = (wire == Wire::Tls).then(shared_certs);
        let mut args = vec!["--cluster-id".to_string(), CLUSTER.to_string()];
        args.extend(certs.iter().flat_map(|c| c.serve_args()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let server = ServerProcess::try_start_runtime(runtime, listen, data.path(), &args)
            .unwrap_or_else(|f| panic!("the {wire} {runtime} server on {listen}: {f}"));
        let transport = certs.as_ref().map_or(Transport::Plain, |c| c.transport());
        TestServer { server: server.over(transport), certs }
    }

    fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// How raw connections reach it.
    fn transport(&self) -> &Transport {
        self.server.transport()
    }

    /// The client options it takes (TLS if it speaks TLS).
    fn conf(&self) -> ClientConf {
        ClientConf { tls: self.certs.as_ref().map(|c| c.client_tls()), ..ClientConf::default() }
    }
}

/// A single-node server (`--cluster-id 42`) shared by the cases that run
/// while it lives: killed and its data dir removed with its last user.
struct SharedServer {
    // Dropped first: the process dies before its data dir goes.
    server: TestServer,
    _dir: TempDir,
}

impl std::ops::Deref for SharedServer {
    type Target = TestServer;

    fn deref(&self) -> &TestServer {
        &self.server
    }
}

/// The running shared server of `runtime` with `wire`'s doors, started if
/// none is.
fn shared_server(runtime: Runtime, wire: Wire) -> Arc<SharedServer> {
    static SHARED: Mutex<[Weak<SharedServer>; 4]> =
        Mutex::new([Weak::new(), Weak::new(), Weak::new(), Weak::new()]);
    let r = Runtime::ALL.iter().position(|&r| r == runtime).expect("a known runtime");
    let w = Wire::ALL.iter().position(|&w| w == wire).expect("a known wire");
    let slot = r * Wire::ALL.len() + w;
    let mut shared = SHARED.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(server) = shared[slot].upgrade() {
        return server;
    }
    let dir = data_dir();
    let server = TestServer::start(runtime, wire, "127.0.0.1:0", &dir);
    server.server.wait_serving();
    let server = Arc::new(SharedServer { server, _dir: dir });
    shared[slot] = Arc::downgrade(&server);
    server
}

/// Runs one cell of the matrix.
fn cell(case: fn(Runtime, ClientKind, Wire), server: Runtime, client: ClientKind, wire: Wire) {
    eprintln!("{server} server, {client} client, {wire}");
    case(server, client, wire);
}

/// One test per (server runtime, client, wire) triple for each case
/// function: a module per case, a test per cell, named
/// `<server>_server_<client>_client`, with `tls_` in front under TLS.
macro_rules! matrix {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            use super::{ClientKind, Runtime, Wire, cell};

            matrix!(@cells $case:
                std_server_std_client = Std, Std, Plain;
                smol_server_std_client = Smol, Std, Plain;
                std_server_smol_client = Std, Smol, Plain;
                smol_server_smol_client = Smol, Smol, Plain;
                tls_std_server_std_client = Std, Std, Tls;
                tls_smol_server_std_client = Smol, Std, Tls;
                tls_std_server_smol_client = Std, Smol, Tls;
                tls_smol_server_smol_client = Smol, Smol, Tls);
        }
    )*};
    (@cells $case:ident: $($test:ident = $server:ident, $client:ident, $wire:ident);*) => {$(
        #[test]
        fn $test() {
            cell(super::$case, Runtime::$server, ClientKind::$client, Wire::$wire);
        }
    )*};
}

matrix!(single_node, batching_and_split, pipelining, client_handshake, restart_above_the_window);

// ---------------------------------------------------------------------------
// Client cases
// ---------------------------------------------------------------------------

/// One caller, varied counts up to a whole millisecond: each range lies in
/// one millisecond and above the one before, near the wall clock; invalid
/// counts are refused without spoiling the client.
fn single_node(server: Runtime, kind: ClientKind, wire: Wire) {
    let s = shared_server(server, wire);
    let client = TestClient::open(kind, &[s.addr()], s.conf());
    const COUNTS: [u32; 8] = [1, 2, 7, 1, 64, 1000, 1, MAX_COUNT];
    let calls = if full() { 5_000 } else { 400 };
    let mut prev = Timestamp::ZERO;
    for i in 0..calls {
        let count = COUNTS[i % COUNTS.len()];
        let last =
            client.get_ts_n(count).unwrap_or_else(|e| panic!("{kind} client, call {i}: GetTs({count}): {e}"));
        assert!(last.logical >= count && last.logical < MAX_LOGICAL, "GetTs({count}) ended at {last:?}");
        assert!(last.to_u64() - u64::from(count) >= prev.to_u64(), "{prev:?} then {last:?} for {count}");
        if count == MAX_COUNT {
            assert_eq!(last.logical, MAX_COUNT, "a whole millisecond must end at its last logical");
        }
        prev = last;
    }
    let wall = wall_ms();
    assert!(prev.physical_ms.abs_diff(wall) < 5_000, "physical {prev:?} is far from the wall clock {wall}");
    for count in [0, MAX_LOGICAL, u32::MAX] {
        assert!(client.get_ts_n(count).is_err(), "{kind} client: GetTs({count}) was not refused");
    }
    let after = client.get_ts_n(1).unwrap_or_else(|e| panic!("after invalid counts: {e}"));
    assert!(after > prev, "{after:?} after {prev:?}");
    let status = client.status().unwrap_or_else(|e| panic!("{kind} client: status: {e}"));
    status.assert_serving(0, s.addr(), after, &format!("{kind} client's status of the {server} server"));
}

/// Many callers on one client with a small batch cap, seen through a tap:
/// their calls go out merged into fewer requests, no request carries more
/// than the cap, the ranges are split among the callers so that every
/// timestamp the server handed out on the connection reaches exactly one
/// caller (none dropped, none given twice), and a call above the cap goes
/// out alone. (Served, not asked for: a request the shared server refused
/// for a moment, `LogicalExhausted`, is sent again.)
fn batching_and_split(server: Runtime, kind: ClientKind, wire: Wire) {
    const CAP: u32 = 8;
    let s = shared_server(server, wire);
    let conf = ClientConf { max_batch: CAP, ..s.conf() };
    let calls = if full() { 3_000 } else { 300 };
    let plan = Callers::new(8, calls, |caller, i| 1 + ((caller + i) % 5) as u32);
    if wire == Wire::Tls {
        // The tap cannot read TLS: the callers' history alone.
        let recs = TestClient::open(kind, &[s.addr()], conf).run(&plan);
        check_calls(&all_ok(&recs, &format!("{kind} client, 8 callers, TLS")));
        return;
    }
    let tap = Tap::start(s.addr()).expect("start a tap");
    let client = TestClient::open(kind, &[tap.addr()], conf);
    let recs = client.run(&plan);
    let calls = all_ok(&recs, &format!("{kind} client, 8 callers"));
    check_calls(&calls);
    let wire = tap.counts();
    let asked: u64 = calls.iter().map(|c| u64::from(c.count)).sum();
    eprintln!("{server} server, {kind} client: {} calls went out as {} requests", calls.len(), wire.get_ts);
    assert!(
        wire.get_ts < calls.len() as u64,
        "{} calls from 8 callers went out as {} requests: nothing was merged",
        calls.len(),
        wire.get_ts
    );
    assert!(wire.counts.iter().all(|&c| c <= CAP), "a request above the cap {CAP}: {:?}", wire.counts);
    assert!(wire.counts.iter().any(|&c| c > 5), "no request carried more than one caller's count");
    assert_eq!(
        wire.served, asked,
        "the server handed out {} timestamps on the connection, the callers received {asked}",
        wire.served
    );
    assert_eq!(wire.answers, wire.get_ts, "requests and answers on the wire");
    // One call above the cap: one request of its own size.
    tap.reset();
    let last = client.get_ts_n(100).unwrap_or_else(|e| panic!("GetTs(100) above the cap: {e}"));
    assert!(last.logical >= 100);
    let lone = tap.counts().counts;
    assert!(
        !lone.is_empty() && lone.iter().all(|&c| c == 100),
        "a call above the cap must go out alone, as GetTs(100): {lone:?}"
    );
}

/// Many callers of single timestamps, seen through a tap: one connection,
/// never more requests in flight than the client allows, and more than one
/// whenever it allows more.
fn pipelining(server: Runtime, kind: ClientKind, wire: Wire) {
    let s = shared_server(server, wire);
    let conf = ClientConf { in_flight: 4, ..s.conf() };
    let calls = if full() { 2_000 } else { 200 };
    let plan = Callers::new(16, calls, |_, _| 1);
    if wire == Wire::Tls {
        // The tap cannot read TLS: the callers' history alone.
        let recs = TestClient::open(kind, &[s.addr()], conf).run(&plan);
        check_calls(&all_ok(&recs, &format!("{kind} client, 16 callers, TLS")));
        return;
    }
    let tap = Tap::start(s.addr()).expect("start a tap");
    let asked = conf.in_flight;
    let client = TestClient::open(kind, &[tap.addr()], conf);
    let recs = client.run(&plan);
    let calls = all_ok(&recs, &format!("{kind} client, 16 callers"));
    check_calls(&calls);
    let wire = tap.counts();
    let limit = client.in_flight_limit();
    eprintln!(
        "{server} server, {kind} client: {} calls, {} requests, at most {} in flight (limit {limit}, asked for {})",
        calls.len(),
        wire.get_ts,
        wire.max_in_flight,
        asked
    );
    assert_eq!(wire.connections, 1, "the client used {} connections", wire.connections);
    assert!(wire.max_in_flight <= limit, "{} requests in flight, over the limit {limit}", wire.max_in_flight);
    if limit > 1 {
        assert!(wire.max_in_flight > 1, "a client allowed {limit} in flight never had two");
    }
    assert_eq!(wire.answers, wire.get_ts, "requests and answers on the wire");
}

/// A client for another cluster is refused with ClusterMismatch; one for
/// this cluster or any (0) is served; with nobody listening, connecting
/// fails at once (no deadline to wait out), with no server's code.
fn client_handshake(server: Runtime, kind: ClientKind, wire: Wire) {
    let s = shared_server(server, wire);
    let conf = |cluster_id| ClientConf { cluster_id, deadline: Duration::ZERO, ..s.conf() };
    match TestClient::connect(kind, &[s.addr()], conf(7)) {
        Ok(_) => panic!("{kind} client for cluster 7 was welcomed by cluster {CLUSTER}"),
        Err(e) => assert_eq!(e.code, Some(ErrorCode::ClusterMismatch), "{kind} client for cluster 7: {e}"),
    }
    for cluster_id in [CLUSTER, 0] {
        let client = TestClient::open(kind, &[s.addr()], conf(cluster_id));
        client.get_ts_n(1).unwrap_or_else(|e| panic!("{kind} client for cluster {cluster_id}: {e}"));
    }
    let dead = dead_addr();
    let began = Instant::now();
    match TestClient::connect(kind, &[dead], conf(0)) {
        Ok(_) => panic!("{kind} client connected to {dead}, where nobody listens"),
        Err(e) => assert_eq!(e.code, None, "{kind} client to {dead}: {e}"),
    }
    let took = began.elapsed();
    assert!(took < Duration::from_secs(2), "{kind} client took {took:?} to find nobody listening");
}

/// Takes timestamps on a fresh client; returns the highest.
fn take(client: &TestClient, n: usize) -> Timestamp {
    const COUNTS: [u32; 5] = [1, 3, 100, 1, 4096];
    let mut prev = Timestamp::ZERO;
    for i in 0..n {
        let count = COUNTS[i % COUNTS.len()];
        let last = client.get_ts_n(count).unwrap_or_else(|e| panic!("GetTs({count}): {e}"));
        assert!(last.to_u64() - u64::from(count) >= prev.to_u64(), "{prev:?} then {last:?}");
        prev = last;
    }
    prev
}

/// The saved window end a serving node reports.
fn window_end(transport: &Transport, addr: SocketAddr) -> u64 {
    let (role, window_end_ms, current) = RawConn::open_over(transport, addr).status().expect("GetStatus");
    assert_eq!(role, Role::Leader, "status of a serving node");
    assert!(window_end_ms > current.physical_ms, "window end {window_end_ms} not above {current:?}");
    window_end_ms
}

fn restart_at(runtime: Runtime, wire: Wire, addr: SocketAddr, dir: &TempDir) -> TestServer {
    TestServer::start(runtime, wire, &addr.to_string(), dir)
}

/// A server stopped with SIGTERM, then killed with SIGKILL under load, and
/// restarted each time on its data dir and port: one client rides through
/// both, and everything after each restart is above everything before it
/// and beyond the window saved before it.
fn restart_above_the_window(runtime: Runtime, kind: ClientKind, wire: Wire) {
    let dir = data_dir();
    let server = TestServer::start(runtime, wire, "127.0.0.1:0", &dir);
    server.server.wait_serving();
    let addr = server.addr();
    let transport = server.transport().clone();
    let client =
        TestClient::open(kind, &[addr], ClientConf { deadline: Duration::from_secs(10), ..server.conf() });
    let highest = take(&client, 200);
    let window = window_end(&transport, addr);
    server.server.stop();

    let server = restart_at(runtime, wire, addr, &dir);
    let first = client.get_ts_n(1).unwrap_or_else(|e| panic!("after SIGTERM: {e}\n{}", server.server.log()));
    assert!(first > highest, "after SIGTERM, {first:?} is not above {highest:?} handed out before");
    assert!(
        first.physical_ms > window,
        "after SIGTERM, {first:?} is not beyond the saved window end {window}"
    );

    // Under load: two callers, the crash in the middle of their calls.
    let mut plan = Callers::new(2, usize::MAX, |c, i| 1 + ((c * 7 + i) % 50) as u32);
    plan.pause = Duration::from_millis(1);
    let load = client.start(plan.clone());
    assert!(plan.wait_progress(50, RESUME), "the load made no progress before the crash");
    let window = window_end(&transport, addr);
    server.server.crash();
    let crashed = Instant::now();
    let server = restart_at(runtime, wire, addr, &dir);
    let restarted = Instant::now();
    let resumed = plan.wait_progress(50, RESUME);
    plan.stop();
    let recs = load.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
    assert!(resumed, "the load made no progress after the restart\n{}", server.server.log());
    let calls = all_ok(&recs, &format!("{kind} client through a kill -9 of the {runtime} server"));
    check_calls(&calls);
    let before = calls.iter().filter(|c| c.received < crashed).map(|c| c.last).max().expect("calls before");
    let after: Vec<&Call> = calls.iter().filter(|c| c.sent > restarted).collect();
    assert!(!after.is_empty(), "no call was made after the restart");
    for c in after {
        assert!(c.first() > before.to_u64(), "after kill -9, {c:?} is not above {before:?}");
        assert!(
            c.last.physical_ms > window,
            "after kill -9, {c:?} is not beyond the saved window end {window}"
        );
    }
    server.server.stop();
}

// ---------------------------------------------------------------------------
// Across runtimes on one data dir
// ---------------------------------------------------------------------------

/// One data dir served in turn by each runtime (stopped, then killed): the
/// store is the same, so each resumes above the one before.
#[test]
fn restart_across_runtimes() {
    let dir = data_dir();
    let order = [Runtime::Std, Runtime::Smol, Runtime::Std, Runtime::Smol, Runtime::Std];
    let mut addr: Option<SocketAddr> = None;
    let mut highest = Timestamp::ZERO;
    let mut window = 0;
    for (i, &runtime) in order.iter().enumerate() {
        let listen = addr.map_or_else(|| "127.0.0.1:0".to_string(), |a| a.to_string());
        let server = ServerProcess::try_start_runtime(runtime, &listen, dir.path(), &[])
            .unwrap_or_else(|f| panic!("start {i} ({runtime}): {f}"));
        addr = Some(server.addr());
        let first = server.wait_serving();
        assert!(first > highest, "start {i} ({runtime}): {first:?} is not above {highest:?}");
        assert!(
            first.physical_ms > window,
            "start {i} ({runtime}): {first:?} not beyond the window {window}"
        );
        let mut conn = RawConn::open(server.addr());
        for count in [1, 100, 4096, 1] {
            highest = conn.get_ts_retry(count, Instant::now() + Duration::from_secs(5)).expect("GetTs");
        }
        window = window_end(&Transport::Plain, server.addr());
        if i % 2 == 0 {
            server.stop();
        } else {
            server.crash();
        }
    }
}

// ---------------------------------------------------------------------------
// Cluster failover by kill -9
// ---------------------------------------------------------------------------

/// A 3-node cluster on `runtimes`, loaded by every client library at once;
/// its leader is killed with SIGKILL again and again and restarted (with
/// `switch`, on the other runtime), then stopped with SIGTERM. Every call
/// of every client succeeds, and their histories together are valid.
fn failover_by_kill_9(runtimes: [Runtime; 3], switch: bool, wire: Wire) {
    let _serial = exclusive();
    let rounds = if full() { 8 } else { 2 };
    let opts = ClusterOptions {
        lease_ms: 500,
        cluster_id: Some(CLUSTER),
        runtimes: runtimes.to_vec(),
        certs: (wire == Wire::Tls).then(shared_certs),
        ..ClusterOptions::default()
    };
    let conf = ClientConf { tls: opts.certs.as_ref().map(|c| c.client_tls()), ..ClientConf::default() };
    let mut cluster = Cluster::start(3, opts);
    let leader = cluster.wait_leader(ELECTION);
    cluster.wait_serving(ELECTION);
    followers_answer_alike(&cluster, leader);
    follower_seeds_lead_to_the_leader(&cluster, leader, &conf);
    let seeds = cluster.client_addrs();
    let loads: Vec<(ClientKind, Callers, JoinHandle<Vec<Rec>>)> = ClientKind::ALL
        .iter()
        .enumerate()
        .map(|(k, &kind)| {
            let client = TestClient::connect(kind, &seeds, conf.clone())
                .unwrap_or_else(|e| cluster.fail(&format!("{kind} client to {seeds:?}: {e}")));
            let mut plan = Callers::new(4, usize::MAX, |c, i| [1, 1, 3, 16][(c + i) % 4]);
            plan.first_id = k * 100;
            plan.pause = Duration::from_millis(1);
            let handle = client.start(plan.clone());
            (kind, plan, handle)
        })
        .collect();
    let progress = |cluster: &Cluster, what: &str| {
        for (kind, plan, _) in &loads {
            if !plan.wait_progress(20, RESUME) {
                cluster.fail(&format!("{what}: the {kind} client makes no progress: {}", cluster.describe()));
            }
        }
    };
    progress(&cluster, "before the kills");
    let mut kills = Vec::new();
    for round in 0..rounds {
        let leader = cluster.wait_leader(ELECTION);
        let killed = Instant::now();
        cluster.kill(leader);
        let Some(next) = cluster.wait_leader_other_than(leader, ELECTION) else {
            cluster.fail(&format!("round {round}: nobody took over from node {leader} within {ELECTION:?}"));
        };
        eprintln!(
            "round {round}: killed node {leader} ({}), node {next} ({}) took over in {:?}",
            cluster.runtime(leader),
            cluster.runtime(next),
            killed.elapsed()
        );
        progress(&cluster, &format!("round {round}, after node {leader} was killed"));
        kills.push(killed);
        if switch {
            let other = if cluster.runtime(leader) == Runtime::Std { Runtime::Smol } else { Runtime::Std };
            eprintln!("round {round}: node {leader} restarts on {other}");
            cluster.set_runtime(leader, other);
        }
        cluster.restart(leader);
        thread::sleep(cluster.quarantine());
        cluster.assert_running();
        // The restarted node among the followers, under another leader.
        followers_answer_alike(&cluster, cluster.wait_leader(ELECTION));
    }
    // Last, a planned stop: SIGTERM releases the lease (flushed to the
    // peers) and another node takes over without waiting for it to expire.
    let leader = cluster.wait_leader(ELECTION);
    let termed = Instant::now();
    let status = cluster.term(leader);
    if !status.success() {
        cluster.fail(&format!("node {leader} ({}) exited with {status} on SIGTERM", cluster.runtime(leader)));
    }
    let Some(next) = cluster.wait_leader_other_than(leader, Duration::from_secs(5)) else {
        cluster.fail(&format!("nobody took over from node {leader} within 5 s of its SIGTERM"));
    };
    eprintln!(
        "SIGTERM of node {leader} ({}): node {next} ({}) took over in {:?}",
        cluster.runtime(leader),
        cluster.runtime(next),
        termed.elapsed()
    );
    progress(&cluster, &format!("after node {leader}'s SIGTERM"));
    kills.push(termed);
    let mut calls = Vec::new();
    for (kind, plan, handle) in loads {
        plan.stop();
        let recs = handle.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
        let ok = all_ok(&recs, &format!("{kind} client through {rounds} kills"));
        assert!(ok.len() > 100, "the {kind} client made only {} calls", ok.len());
        calls.extend(ok);
    }
    let total = check_calls(&calls);
    for killed in kills {
        let before = calls.iter().filter(|c| c.received < killed).map(|c| c.last).max();
        let after = calls.iter().filter(|c| c.sent > killed).map(Call::first).min();
        if let (Some(before), Some(after)) = (before, after) {
            assert!(before.to_u64() < after, "a call after a kill got {after}, below {before:?} before it");
        }
    }
    eprintln!("{runtimes:?}, {wire}: {} calls, {total} timestamps through {rounds} kills", calls.len());
    cluster.restart(leader);
    cluster.assert_running();
}

/// What a follower answers a client, as raw bytes: the Welcome with its own
/// node id, `NotLeader` naming the leader (node and client address) for
/// every GetTs with a valid count, id 0 included, and the count errors
/// (checked before leadership) with the empty hint, its own replica's
/// registration; EOF after the answers. Every follower must answer exactly
/// so, and in a mixed cluster the followers of both runtimes must answer
/// with the same bytes (but for the Welcome's node id). A follower may
/// take a moment after the election to know the leader's address, so each
/// is asked until it answers as expected, for up to 5 s.
fn followers_answer_alike(cluster: &Cluster, leader: usize) {
    let hint = LeaderHint { node: Some(NodeId(leader as u16)), addr: Some(cluster.node_addr(leader)) };
    let not_leader = |id| Frame::Error { id, code: ErrorCode::NotLeader, leader: hint };
    let steps = vec![
        Step::Send(cat(&[
            &hello(),
            &get_ts(1, 1),
            &get_ts(2, 0),
            &get_ts(3, MAX_LOGICAL),
            &get_ts(0, 7),
            &encode(&Frame::ReadPrimary { id: 4 }),
        ])),
        Step::HalfClose,
    ];
    let mut answers: Vec<(Runtime, Vec<Event>)> = Vec::new();
    for i in (0..cluster.len()).filter(|&i| i != leader) {
        let case = RawCase {
            name: "a follower's answers",
            steps: steps.clone(),
            expect: vec![
                Frame::Welcome { version: VERSION, cluster_id: CLUSTER, node: NodeId(i as u16) },
                not_leader(1),
                refused(2, ErrorCode::ZeroCount),
                refused(3, ErrorCode::CountTooLarge),
                not_leader(0),
                Frame::Primary { id: 4, registered: None },
            ],
            end: End::Eof,
        };
        let want = expected(&case);
        let deadline = Instant::now() + Duration::from_secs(5);
        let got = loop {
            let got = transcript(cluster.node_addr(i), &cluster.transport(), &case);
            if got == want || Instant::now() >= deadline {
                break got;
            }
            thread::sleep(Duration::from_millis(100));
        };
        if got != want {
            cluster.fail(&format!(
                "node {i} ({}), a follower of node {leader}, does not answer as PROTOCOL.md says:\n    expected:{}\n    got:{}",
                cluster.runtime(i),
                show(&want),
                show(&got)
            ));
        }
        answers.push((cluster.runtime(i), got));
    }
    // The point of a mixed cluster: both runtimes' bytes, side by side.
    for pair in answers.windows(2) {
        let ((ra, a), (rb, b)) = (&pair[0], &pair[1]);
        if a[1..] != b[1..] {
            cluster.fail(&format!("a {ra} and a {rb} follower differ:{}\n  and{}", show(a), show(b)));
        }
    }
    let runtimes: Vec<Runtime> = answers.iter().map(|(r, _)| *r).collect();
    eprintln!("the followers of node {leader} ({runtimes:?}) answer alike");
}

/// A client of each library given only a follower's address reaches the
/// leader by its hint, and says it talks to the leader afterwards.
fn follower_seeds_lead_to_the_leader(cluster: &Cluster, leader: usize, conf: &ClientConf) {
    let follower = (leader + 1) % cluster.len();
    for kind in ClientKind::ALL {
        let seeds = [cluster.node_addr(follower)];
        let client = TestClient::connect(kind, &seeds, conf.clone())
            .unwrap_or_else(|e| cluster.fail(&format!("{kind} client to follower {follower}: {e}")));
        if let Err(e) = client.get_ts_n(1) {
            cluster.fail(&format!("{kind} client seeded with follower {follower}: {e}"));
        }
        let at = client.server_addr();
        if at != cluster.node_addr(leader) {
            cluster.fail(&format!(
                "{kind} client seeded with follower {follower} talks to {at}, not to the leader {leader} at {}",
                cluster.node_addr(leader)
            ));
        }
        match client.status() {
            Ok(s) if s.role == Role::Leader && s.node == NodeId(leader as u16) => {}
            other => cluster.fail(&format!("{kind} client's status after the redirect: {other:?}")),
        }
    }
}

mod failover_by_kill_9 {
    use super::{Runtime, Wire};

    #[test]
    fn std_cluster() {
        super::failover_by_kill_9([Runtime::Std; 3], false, Wire::Plain);
    }

    #[test]
    fn smol_cluster() {
        super::failover_by_kill_9([Runtime::Smol; 3], false, Wire::Plain);
    }

    /// Each killed node also comes back on the other runtime, on its
    /// data dir: the runtimes share the store and the peer protocol.
    #[test]
    fn mixed_cluster() {
        super::failover_by_kill_9([Runtime::Smol, Runtime::Std, Runtime::Smol], true, Wire::Plain);
    }

    /// The mixed cluster with TLS on every door and link: mTLS between
    /// nodes of both runtimes, TLS to clients of both libraries.
    #[test]
    fn tls_mixed_cluster() {
        super::failover_by_kill_9([Runtime::Std, Runtime::Smol, Runtime::Std], true, Wire::Tls);
    }
}

// ---------------------------------------------------------------------------
// Raw cases: the same bytes back from every server runtime
// ---------------------------------------------------------------------------

/// One thing to do on a raw connection.
#[derive(Clone, Debug)]
enum Step {
    /// Write these bytes at once.
    Send(Vec<u8>),
    /// Write these bytes one per write, 1 ms apart.
    Dribble(Vec<u8>),
    /// Wait (e.g. between the halves of a frame).
    Pause(Duration),
    /// Close the writing half: the server reads EOF.
    HalfClose,
}

/// How a transcript ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    /// The sentinel GetStatus (sent after the case's bytes) was answered:
    /// the connection is open and in order.
    Open,
    /// The server closed cleanly (after lingering, for fatal errors).
    Eof,
    /// The connection was reset.
    Reset,
    /// Nothing arrived for [`RAW_READ_TIMEOUT`].
    Silent,
}

/// What a raw connection got back.
#[derive(Clone, PartialEq, Eq)]
enum Event {
    /// A frame's bytes; a Ts or Status frame with its time-dependent fields
    /// masked ([`mask`]).
    Frame(Vec<u8>),
    /// Bytes that are not a frame, or half a frame before the close.
    Undecodable(Vec<u8>),
    /// How it ended.
    End(End),
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Frame(bytes) => match Frame::decode(bytes) {
                Ok(Some((frame, _))) => write!(f, "{frame:?} {bytes:02x?}"),
                _ => write!(f, "frame? {bytes:02x?}"),
            },
            Event::Undecodable(bytes) => write!(f, "undecodable {bytes:02x?}"),
            Event::End(end) => write!(f, "{end:?}"),
        }
    }
}

/// A raw case: what to send and what PROTOCOL.md says comes back.
struct RawCase {
    name: &'static str,
    steps: Vec<Step>,
    /// The frames expected, masked as [`mask`] masks them.
    expect: Vec<Frame>,
    /// How the connection ends. [`End::Open`] appends a sentinel GetStatus
    /// to the steps and its (masked) answer to `expect`.
    end: End,
}

/// The id of the sentinel GetStatus of [`End::Open`] cases.
const SENTINEL: u64 = 0x5e47;

fn hello() -> Vec<u8> {
    encode(&Frame::Hello { version: VERSION, cluster_id: CLUSTER })
}

fn welcome() -> Frame {
    Frame::Welcome { version: VERSION, cluster_id: CLUSTER, node: NodeId(0) }
}

fn get_ts(id: u64, count: u32) -> Vec<u8> {
    encode(&Frame::GetTs { id, count })
}

/// A fatal error: id 0, the empty hint.
fn fatal(code: ErrorCode) -> Frame {
    Frame::Error { id: 0, code, leader: LeaderHint::default() }
}

/// A request's error: its id, the empty hint.
fn refused(id: u64, code: ErrorCode) -> Frame {
    Frame::Error { id, code, leader: LeaderHint::default() }
}

/// A Ts as [`mask`] leaves it.
fn ts(id: u64, count: u32) -> Frame {
    Frame::Ts { id, count, last: Timestamp::ZERO }
}

/// The placeholder [`mask`] puts where a node names its own address.
fn own_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// A single node's Status as [`mask`] leaves it.
fn status(id: u64) -> Frame {
    Frame::Status {
        id,
        role: Role::Leader,
        node: NodeId(0),
        leader: LeaderHint { node: Some(NodeId(0)), addr: Some(own_addr()) },
        window_end_ms: 0,
        current: Timestamp::ZERO,
        view: LeaseView { links_up: 1, nodes: 1, ..LeaseView::default() },
    }
}

/// Concatenated byte strings.
fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// A case whose one write the server refuses with `code`, its first and
/// only answer, then closes (after its linger).
fn refused_at_once(name: &'static str, bytes: Vec<u8>, code: ErrorCode) -> RawCase {
    RawCase { name, steps: vec![Step::Send(bytes)], expect: vec![fatal(code)], end: End::Eof }
}

/// A case whose hello is welcomed and whose next write the server refuses
/// with `code`, then closes (after its linger).
fn refused_after_hello(name: &'static str, bytes: Vec<u8>, code: ErrorCode) -> RawCase {
    RawCase {
        name,
        steps: vec![Step::Send(hello()), Step::Send(bytes)],
        expect: vec![welcome(), fatal(code)],
        end: End::Eof,
    }
}

/// Every raw case. Each says which rule of PROTOCOL.md it holds the server
/// to ("Frames", the check table of "What a server does with bad input",
/// "Conversation", "Request ids").
fn raw_cases() -> Vec<RawCase> {
    use ErrorCode::*;
    use Step::*;
    let ts_frame = encode(&Frame::Ts { id: 1, count: 1, last: Timestamp::from_u64(1 << 18 | 1) });
    let status_req = encode(&Frame::GetStatus { id: 3 });
    let mut bad_magic = hello();
    bad_magic[5..9].copy_from_slice(b"HTTP");
    let mut bad_magic_v99 = bad_magic.clone();
    bad_magic_v99[9] = 99;
    // A Hello of 14 body bytes (one too many) whose magic is wrong too.
    let mut long_bad_hello = vec![0, 0, 0, 15, 0x01];
    long_bad_hello.extend_from_slice(b"HTTP");
    long_bad_hello.extend_from_slice(&[VERSION; 10]);
    // An Error frame from the client with code 999: a field out of its domain.
    let mut bad_code_error = vec![0, 0, 0, 32, 0x7f];
    bad_code_error.extend_from_slice(&7u64.to_be_bytes());
    bad_code_error.extend_from_slice(&999u16.to_be_bytes());
    bad_code_error.extend_from_slice(&[0xff, 0xff]);
    bad_code_error.extend_from_slice(&[0; 19]);
    let welcome_frame = encode(&Frame::Welcome { version: VERSION, cluster_id: CLUSTER, node: NodeId(0) });
    let hello_v = |version: u8, cluster_id: u64| encode(&Frame::Hello { version, cluster_id });
    let over = (MAX_FRAME_LEN + 1).to_be_bytes();
    assert_eq!(LEN_PREFIX, 4);
    assert_eq!(bad_magic[5..9], *b"HTTP");
    assert_eq!(hello()[5..9], MAGIC);
    let get_ts_1 = get_ts(1, 1);
    let burst: Vec<u8> = (0..500u64).flat_map(|i| get_ts(1000 + i, 1 + (i % 3) as u32)).collect();

    let case = |name, steps, expect, end| RawCase { name, steps, expect, end };
    vec![
        // The handshake ("Conversation" 1-2; checks 9 and 10).
        case("hello for any cluster", vec![Send(hello_v(VERSION, 0))], vec![welcome()], End::Open),
        case("hello for this cluster", vec![Send(hello())], vec![welcome()], End::Open),
        case("hello dribbled a byte per write", vec![Dribble(hello())], vec![welcome()], End::Open),
        refused_at_once("hello for cluster 7", hello_v(VERSION, 7), ClusterMismatch),
        refused_at_once("hello of version 99", hello_v(99, CLUSTER), UnsupportedVersion),
        refused_at_once(
            "hello of version 99 for cluster 7: the version is checked first",
            hello_v(99, 7),
            UnsupportedVersion,
        ),
        refused_at_once("hello with the wrong magic", bad_magic.clone(), UnsupportedVersion),
        refused_at_once("hello with the wrong magic and version 99", bad_magic_v99, UnsupportedVersion),
        refused_at_once(
            "hello of the wrong size with the wrong magic: the size is checked first",
            long_bad_hello,
            Malformed,
        ),
        refused_at_once("GetTs before hello", get_ts_1.clone(), HandshakeRequired),
        refused_at_once("GetStatus before hello", status_req.clone(), HandshakeRequired),
        refused_at_once("a server's Ts before hello", ts_frame.clone(), HandshakeRequired),
        refused_at_once("a server's Welcome before hello", welcome_frame.clone(), HandshakeRequired),
        refused_at_once(
            "an unknown kind before hello: the kind is checked first",
            vec![0, 0, 0, 1, 0x55],
            UnknownKind,
        ),
        refused_at_once(
            "an Error with code 999 before hello: the fields are checked first",
            bad_code_error.clone(),
            Malformed,
        ),
        refused_after_hello("a second hello", hello(), HandshakeRequired),
        refused_after_hello("a second hello of version 99", hello_v(99, CLUSTER), HandshakeRequired),
        refused_after_hello("a second hello with the wrong magic", bad_magic.clone(), UnsupportedVersion),
        // Framing (checks 1-4, 6, 11).
        refused_at_once(
            "an HTTP request",
            b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(),
            FrameTooLarge,
        ),
        refused_at_once("a length of 4 GiB, refused from the prefix alone", vec![0xff; 4], FrameTooLarge),
        refused_after_hello("a length of 257 after the handshake", over.to_vec(), FrameTooLarge),
        refused_after_hello("a length of 0", vec![0, 0, 0, 0], Malformed),
        refused_after_hello("an unknown kind after the handshake", vec![0, 0, 0, 1, 0x55], UnknownKind),
        refused_after_hello("GetTs with a 1-byte body", vec![0, 0, 0, 2, get_ts_1[4], 0], Malformed),
        refused_after_hello("a server's Ts after the handshake", ts_frame, UnknownKind),
        refused_after_hello("a server's Welcome after the handshake", welcome_frame, UnknownKind),
        refused_after_hello("an Error with code 999 after the handshake", bad_code_error, Malformed),
        // Truncated frames and half-closes ("Conversation" 4).
        case(
            "EOF in the middle of a GetTs",
            vec![Send(hello()), Send(get_ts_1[..9].to_vec()), HalfClose],
            vec![welcome()],
            End::Eof,
        ),
        case("EOF in the middle of a hello", vec![Send(hello()[..3].to_vec()), HalfClose], vec![], End::Eof),
        case(
            "EOF after a whole GetTs: the answer still comes",
            vec![Send(hello()), Send(get_ts_1.clone()), HalfClose],
            vec![welcome(), ts(1, 1)],
            End::Eof,
        ),
        case(
            "a GetTs split in two writes",
            vec![
                Send(hello()),
                Send(get_ts_1[..7].to_vec()),
                Pause(Duration::from_millis(50)),
                Send(get_ts_1[7..].to_vec()),
            ],
            vec![welcome(), ts(1, 1)],
            End::Open,
        ),
        // Pipelining and order ("Conversation" 3, "Request ids").
        case(
            "requests pipelined behind the hello, answered in order by id",
            vec![Send(cat(&[
                &hello(),
                &get_ts(10, 1),
                &get_ts(11, 5),
                &get_ts(12, 0),
                &get_ts(13, 100),
                &get_ts(14, MAX_LOGICAL),
                &encode(&Frame::GetStatus { id: 15 }),
                &get_ts(0, 1),
                &get_ts(16, MAX_COUNT),
                &get_ts(17, u32::MAX),
                &encode(&Frame::ReadPrimary { id: 18 }),
                &get_ts(19, 1),
            ]))],
            vec![
                welcome(),
                ts(10, 1),
                ts(11, 5),
                refused(12, ZeroCount),
                ts(13, 100),
                refused(14, CountTooLarge),
                status(15),
                ts(0, 1),
                ts(16, MAX_COUNT),
                refused(17, CountTooLarge),
                Frame::Primary { id: 18, registered: None },
                ts(19, 1),
            ],
            End::Open,
        ),
        case(
            "a refused hello with requests behind it: none of them runs",
            vec![Send(cat(&[&hello_v(VERSION, 7), &get_ts_1, &status_req]))],
            vec![fatal(ClusterMismatch)],
            End::Eof,
        ),
        case(
            "answers before a bad frame come before its fatal error",
            vec![Send(cat(&[&hello(), &get_ts(5, 2), &status_req, &[0, 0, 0, 1, 0x55], &get_ts(6, 1)]))],
            vec![welcome(), ts(5, 2), status(3), fatal(UnknownKind)],
            End::Eof,
        ),
        case(
            "500 requests in one write, more than a read buffer, answered in order",
            vec![Send(cat(&[&hello(), &burst]))],
            std::iter::once(welcome()).chain((0..500u64).map(|i| ts(1000 + i, 1 + (i % 3) as u32))).collect(),
            End::Open,
        ),
        case(
            "three requests dribbled a byte per write",
            vec![
                Send(hello()),
                Dribble(cat(&[&get_ts(7, 1), &encode(&Frame::GetStatus { id: 8 }), &get_ts(9, 4)])),
            ],
            vec![welcome(), ts(7, 1), status(8), ts(9, 4)],
            End::Open,
        ),
        // The linger after a fatal error ("Conversation"): what the client
        // still sends is read and dropped, then the close is clean.
        case(
            "10 KiB sent after a fatal error are discarded, then a clean close",
            vec![Send(vec![0, 0, 0, 0]), Pause(Duration::from_millis(50)), Send(vec![0x55; 10 * 1024])],
            vec![fatal(Malformed)],
            End::Eof,
        ),
    ]
}

/// Masks what differs between two servers and two runs but is no part of
/// the protocol's promises: a Ts's timestamp (checked by the caller before
/// masking), a Status's clock, window, lease, fence and served count, and the node's own
/// address in its hint (replaced by [`own_addr`]).
fn mask(frame: Frame, server: SocketAddr) -> Frame {
    match frame {
        Frame::Ts { id, count, .. } => Frame::Ts { id, count, last: Timestamp::ZERO },
        Frame::Status { id, role, node, leader, view, .. } => Frame::Status {
            id,
            role,
            node,
            leader: LeaderHint {
                node: leader.node,
                addr: leader.addr.map(|a| if a == server { own_addr() } else { a }),
            },
            window_end_ms: 0,
            current: Timestamp::ZERO,
            view: LeaseView {
                lease: None,
                lease_left_ms: 0,
                quarantine_left_ms: 0,
                fence: None,
                served: 0,
                ..view
            },
        },
        other => other,
    }
}

/// Runs `case` on a fresh connection to `server` over `transport`; returns
/// what came back.
fn transcript(server: SocketAddr, transport: &Transport, case: &RawCase) -> Vec<Event> {
    let mut stream = transport
        .dial(server)
        .unwrap_or_else(|e| panic!("{}: connect to {server} ({}): {e}", case.name, transport.name()));
    stream.tcp().set_read_timeout(Some(RAW_READ_TIMEOUT)).expect("read timeout");
    let mut steps = case.steps.clone();
    if case.end == End::Open {
        steps.push(Step::Send(encode(&Frame::GetStatus { id: SENTINEL })));
    }
    for step in &steps {
        let sent = match step {
            Step::Send(bytes) => stream.write_all(bytes),
            Step::Dribble(bytes) => bytes.iter().try_for_each(|b| {
                thread::sleep(Duration::from_millis(1));
                stream.write_all(std::slice::from_ref(b))
            }),
            Step::Pause(d) => {
                thread::sleep(*d);
                Ok(())
            }
            Step::HalfClose => stream.shutdown_write(),
        };
        // A server that closed early shows in the transcript; a write
        // refused by it is no failure of its own.
        if sent.is_err() {
            break;
        }
    }
    let mut events = Vec::new();
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut last_ts: Option<Timestamp> = None;
    loop {
        // Every whole frame buffered so far.
        while buf.len() >= LEN_PREFIX {
            let len = u32::from_be_bytes(buf[..4].try_into().expect("four bytes"));
            if len == 0 || len > MAX_FRAME_LEN {
                events.push(Event::Undecodable(std::mem::take(&mut buf)));
                break;
            }
            let total = LEN_PREFIX + len as usize;
            if buf.len() < total {
                break;
            }
            let bytes: Vec<u8> = buf.drain(..total).collect();
            match Frame::decode(&bytes) {
                Ok(Some((frame, used))) if used == total => {
                    if let Frame::Ts { count, last, .. } = frame {
                        assert!(
                            count >= 1 && last.logical >= count && last.logical < MAX_LOGICAL,
                            "{}: {frame:?} is not a range within one millisecond",
                            case.name
                        );
                        if let Some(prev) = last_ts {
                            assert!(
                                last.to_u64() - u64::from(count) >= prev.to_u64(),
                                "{}: {frame:?} is not above the range before it, ending at {prev:?}",
                                case.name
                            );
                        }
                        last_ts = Some(last);
                    }
                    let sentinel = matches!(frame, Frame::Status { id: SENTINEL, .. });
                    events.push(Event::Frame(encode(&mask(frame, server))));
                    if sentinel && case.end == End::Open {
                        events.push(Event::End(End::Open));
                        return events;
                    }
                }
                _ => events.push(Event::Undecodable(bytes)),
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) => {
                if !buf.is_empty() {
                    events.push(Event::Undecodable(std::mem::take(&mut buf)));
                }
                events.push(Event::End(End::Eof));
                return events;
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                events.push(Event::End(End::Silent));
                return events;
            }
            Err(_) => {
                events.push(Event::End(End::Reset));
                return events;
            }
        }
    }
}

/// What `case` must give back: its frames (masked) and its end.
fn expected(case: &RawCase) -> Vec<Event> {
    let mut events: Vec<Event> = case.expect.iter().map(|f| Event::Frame(encode(f))).collect();
    if case.end == End::Open {
        events.push(Event::Frame(encode(&status(SENTINEL))));
    }
    events.push(Event::End(case.end));
    events
}

fn show(events: &[Event]) -> String {
    events.iter().map(|e| format!("\n      {e:?}")).collect()
}

/// Every raw case against the shared server of each runtime, plaintext and
/// with TLS, all at once: each gives back the same bytes as the others, and
/// the bytes PROTOCOL.md prescribes; and the servers serve on afterwards.
#[test]
fn raw_frames_get_the_same_bytes_from_every_server_runtime() {
    let targets: Vec<(String, Arc<SharedServer>)> = Runtime::ALL
        .iter()
        .flat_map(|&r| Wire::ALL.map(|w| (format!("{w} {r}"), shared_server(r, w))))
        .collect();
    let cases = raw_cases();
    let transcripts: Vec<Vec<Vec<Event>>> = thread::scope(|s| {
        let handles: Vec<Vec<_>> = targets
            .iter()
            .map(|(_, server)| {
                let (addr, transport) = (server.addr(), server.transport());
                cases.iter().map(|case| s.spawn(move || transcript(addr, transport, case))).collect()
            })
            .collect();
        handles
            .into_iter()
            .map(|hs| {
                hs.into_iter().map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
            })
            .collect()
    });
    let mut problems = Vec::new();
    let first = &targets[0].0;
    for (c, case) in cases.iter().enumerate() {
        // The point: every runtime, on either wire, answers with the same bytes.
        for (t, (name, _)) in targets.iter().enumerate().skip(1) {
            if transcripts[t][c] != transcripts[0][c] {
                problems.push(format!(
                    "{:?}: the {first} and {name} servers differ:\n    {first}:{}\n    {name}:{}",
                    case.name,
                    show(&transcripts[0][c]),
                    show(&transcripts[t][c])
                ));
            }
        }
        // And the bytes are the protocol's.
        let want = expected(case);
        for (t, (name, _)) in targets.iter().enumerate() {
            if transcripts[t][c] != want {
                problems.push(format!(
                    "{:?}: the {name} server does not answer as PROTOCOL.md says:\n    expected:{}\n    got:{}",
                    case.name,
                    show(&want),
                    show(&transcripts[t][c])
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} problems in {} raw cases:\n  {}",
        problems.len(),
        cases.len(),
        problems.join("\n  ")
    );
    // Nothing above disturbed the servers.
    for (name, server) in &targets {
        let mut conn = RawConn::open_over(server.transport(), server.addr());
        let ts = conn.get_ts(1).expect("GetTs").unwrap_or_else(|code| panic!("the {name} server: {code:?}"));
        assert!(ts.logical >= 1);
    }
    let names: Vec<&str> = targets.iter().map(|(n, _)| n.as_str()).collect();
    eprintln!("{} raw cases, identical on {names:?}", cases.len());
}
