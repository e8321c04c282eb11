//! A cluster of real `leasetso serve` processes.
//!
//! [`Cluster::start`] runs `n` nodes, each `leasetso serve --id N --peers
//! 1=A1,2=A2,... --listen C --data DIR --lease-ms MS`, on loopback or each in
//! a network namespace of a [`Netns`]. Every node's output is drained into a
//! [`Log`] per incarnation (its pipes never fill up); nodes can be stopped
//! with SIGTERM, killed with SIGKILL, alone or all at once, and restarted on
//! the same data dir and the same addresses. Every process is killed and
//! every data dir removed on drop, passing or failing, and a test that
//! panics while it holds a cluster gets every node's log printed with its
//! failure.
//!
//! Indices are 0-based everywhere in this module: node `i` is `--id i+1` on
//! the command line and node id `i` on the wire (as `Status` and leader hints
//! carry it).
//!
//! Peer ports of a loopback cluster are chosen up front (bind port 0, note
//! the port, release it), since every node must know them all when it starts;
//! another process may take one in between, so a start that fails to bind is
//! retried with fresh ports. Client ports are the nodes' own choice (port 0,
//! read back from the ready line) on the first start, and reused on restarts
//! so that clients' seeds stay valid. In namespaces every node has its own
//! port space, so fixed ports do.
//!
//! A cluster of one runs the single-node mode (`serve` without `--peers`),
//! the way an operator runs one node.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, mpsc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use leasetso_core::wire::Frame;
use leasetso_core::{Ballot, LeaderHint, NodeId, Role, StoreHealth, Timestamp};
use leasetso_std::{Client, ClientError, ClientOptions};

use super::netns::Netns;
use super::proxy::DelayProxy;
use crate::{
    Drained, Log, RawConn, Runtime, START_TIMEOUT, STOP_TIMEOUT, TempDir, TestCerts, Transport, data_dir,
    leasetso_bin, send_signal, spawn_drained, wait_timeout,
};

/// The peer port of every node in a namespace.
pub const NETNS_PEER_PORT: u16 = 7100;
/// The client port of every node in a namespace.
pub const NETNS_CLIENT_PORT: u16 = 7400;
/// How often a loopback cluster's start is tried with fresh peer ports
/// when a node cannot bind the one it was given.
const START_ATTEMPTS: usize = 5;
/// How long one status query may wait for its answer.
const STATUS_TIMEOUT: Duration = Duration::from_millis(500);

/// Makes the library client cluster tests use: every seed, retrying until
/// `deadline`. The one place to change when the client's options change.
pub fn connect_client(seeds: &[SocketAddr], deadline: Duration) -> Result<Client, ClientError> {
    Client::connect_with(seeds, client_options(deadline))
}

/// The client options for calls that must end within `deadline`: retries
/// until then, and each connect and each reply bounded by 1 s, so that a
/// partitioned or killed node costs a second, not the default 3 s, and a
/// call ends within `deadline` + 2 s (the attempt under way at the deadline
/// finishes: [`SLACK`] covers it).
pub fn client_options(deadline: Duration) -> ClientOptions {
    ClientOptions {
        deadline,
        request_timeout: Duration::from_secs(1),
        connect_timeout: Duration::from_secs(1),
        ..ClientOptions::default()
    }
}

/// How much longer than its deadline a call may take before it counts as
/// hung: the connect and the request timeout of the attempt under way
/// ([`client_options`]), and scheduling noise.
pub const SLACK: Duration = Duration::from_millis(2500);

/// Serializes the cluster tests of one test binary: they measure failover
/// times on a small shared machine, and two clusters at once would measure
/// each other. Hold the guard for the whole test.
pub fn exclusive() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Whether `LEASETSO_CLUSTER_LONG` asks for the longer runs.
pub fn long_runs() -> bool {
    std::env::var_os("LEASETSO_CLUSTER_LONG").is_some_and(|v| !v.is_empty() && v != "0")
}

/// How a [`Cluster`] is made.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// The lease D_P in ms (`--lease-ms`). Short leases make fast tests.
    pub lease_ms: u64,
    /// `--cluster-id`, if any.
    pub cluster_id: Option<u64>,
    /// More arguments for every node's `serve`.
    pub extra_args: Vec<String>,
    /// Run node `i` in `netns.ns(i)`, peers on the peer bridge and clients
    /// on the client bridge (see [`Netns`]).
    pub netns: Option<Arc<Netns>>,
    /// `(a, b, delay)`: the traffic between nodes `a` and `b` goes through
    /// a [`DelayProxy`] in each direction (a's `--peers` entry for b points
    /// at one, b's entry for a at the other). In namespaces the proxy of a's
    /// entry lives in a's namespace, so cutting a cuts it too.
    pub delays: Vec<(usize, usize, Duration)>,
    /// Node `i` runs on `runtimes[i]` (`serve --runtime`), std past the
    /// end: empty runs every node on std, `[Smol, Std, Std]` a mixed cluster.
    pub runtimes: Vec<Runtime>,
    /// TLS on every door and link (`--certs-dir`), with these certificates;
    /// the harness's own connections and clients use them too.
    pub certs: Option<Arc<TestCerts>>,
    /// Node `i` serves `data_dirs[i]` (kept after the cluster); a fresh
    /// temporary dir past the end.
    pub data_dirs: Vec<std::path::PathBuf>,
}

impl Default for ClusterOptions {
    /// A 500 ms lease on loopback, no cluster id, nothing delayed, every
    /// node on std.
    fn default() -> Self {
        ClusterOptions {
            lease_ms: 500,
            cluster_id: None,
            extra_args: Vec::new(),
            netns: None,
            delays: Vec::new(),
            runtimes: Vec::new(),
            certs: None,
            data_dirs: Vec::new(),
        }
    }
}

/// What a node says about itself (the fields of `Status` that tests rely
/// on; it has more, and will gain more).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeState {
    /// Its role.
    pub role: Role,
    /// Its node id (0-based).
    pub node: NodeId,
    /// Who serves, as far as it knows.
    pub leader: LeaderHint,
    /// The health of its store replica.
    pub store: StoreHealth,
    /// The live lease it holds or its acceptor holds (the owner is the
    /// ballot's node).
    pub lease: Option<Ballot>,
    /// The fence of its leadership, if it leads.
    pub fence: Option<Ballot>,
}

/// One node: its fixed configuration and its current process.
struct Node {
    /// 0-based.
    index: usize,
    /// Its data dir, removed on drop unless the test gave it ([`ClusterOptions::data_dirs`]).
    _data: Option<TempDir>,
    data_path: std::path::PathBuf,
    peer_addr: SocketAddr,
    /// Its `--peers` value (its own entry, proxies for delayed links).
    peers: String,
    /// Its client address, once known (after the first start).
    client_addr: Option<SocketAddr>,
    child: Option<Child>,
    drains: Vec<JoinHandle<()>>,
    /// One log per incarnation, with a header.
    logs: Vec<(String, Log)>,
    /// More `serve` arguments for this node alone (after the cluster's).
    extra: Vec<String>,
}

impl Node {
    fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Reaps the exited process (if any) and joins its pipe readers.
    fn reap(&mut self) -> Option<ExitStatus> {
        let status = self.child.take().and_then(|mut c| c.wait().ok());
        // The pipes close when the child exits; leasetso spawns no children
        // that could hold them open.
        for handle in self.drains.drain(..) {
            let _ = handle.join();
        }
        status
    }

    fn kill(&mut self) -> Option<ExitStatus> {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
        }
        self.reap()
    }
}

/// A ready line: the address after `listening on` / `serving on`.
fn parse_ready(line: &str) -> Option<SocketAddr> {
    let (_, rest) = line.split_once(" on ")?;
    let token: String = rest.trim_start().chars().take_while(|c| !c.is_whitespace() && *c != ')').collect();
    token.trim_end_matches(',').parse().ok().filter(|a: &SocketAddr| a.port() != 0)
}

/// Running `leasetso serve` nodes; all killed on drop.
pub struct Cluster {
    nodes: Vec<Node>,
    opts: ClusterOptions,
    proxies: Vec<((usize, usize), DelayProxy)>,
    /// Set once a failure message has carried the logs, so drop does not
    /// print them again.
    logs_shown: AtomicBool,
}

impl Cluster {
    /// Starts `n` nodes and waits for each one's ready line (not for a
    /// leader: see [`wait_leader`](Self::wait_leader)). Panics with every
    /// node's log if one does not get there.
    pub fn start(n: usize, opts: ClusterOptions) -> Cluster {
        assert!(n >= 1, "a cluster has at least one node");
        if let Some(net) = &opts.netns {
            assert!(net.len() >= n, "{n} nodes in {} namespaces", net.len());
        }
        for &(a, b, _) in &opts.delays {
            assert!(a < n && b < n && a != b, "delay between nodes {a} and {b} of {n}");
        }
        let attempts = if opts.netns.is_some() { 1 } else { START_ATTEMPTS };
        let mut last = String::new();
        for attempt in 1..=attempts {
            let mut cluster = Cluster::plan(n, opts.clone());
            match cluster.spawn_all() {
                Ok(()) => return cluster,
                Err(Failure { retry: true, message }) if attempt < attempts => {
                    eprintln!("cluster start attempt {attempt}: {message}; retrying with fresh ports");
                    last = message;
                    cluster.logs_shown.store(true, Ordering::Relaxed);
                }
                Err(Failure { message, .. }) => {
                    cluster.fail(&format!("starting a cluster of {n}: {message}"))
                }
            }
        }
        panic!("starting a cluster of {n}: {last}");
    }

    /// Chooses addresses and makes the proxies; starts nothing.
    fn plan(n: usize, opts: ClusterOptions) -> Cluster {
        let peer_addrs: Vec<SocketAddr> = match &opts.netns {
            Some(net) => (0..n).map(|i| net.peer_addr(i, NETNS_PEER_PORT)).collect(),
            None => {
                // Hold all listeners until every port is known, so the ports differ.
                let listeners: Vec<TcpListener> =
                    (0..n).map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a free port")).collect();
                listeners.iter().map(|l| l.local_addr().expect("its address")).collect()
            }
        };
        let mut proxies = Vec::new();
        for &(a, b, delay) in &opts.delays {
            for (from, to) in [(a, b), (b, a)] {
                let proxy = match &opts.netns {
                    None => DelayProxy::start(peer_addrs[to], delay),
                    Some(net) => net
                        .bind_tcp(from, net.peer_addr(from, 0))
                        .and_then(|l| DelayProxy::start_on(l, net.connector(from, peer_addrs[to]), delay)),
                }
                .unwrap_or_else(|e| panic!("a delay proxy from node {from} to node {to}: {e}"));
                proxies.push(((from, to), proxy));
            }
        }
        let nodes = (0..n)
            .map(|i| {
                let peers = (0..n)
                    .map(|j| {
                        let addr = proxies
                            .iter()
                            .find(|((from, to), _)| (*from, *to) == (i, j))
                            .map_or(peer_addrs[j], |(_, p)| p.addr());
                        format!("{}={addr}", j + 1)
                    })
                    .collect::<Vec<_>>()
                    .join(",");
                let client_addr = opts.netns.as_ref().map(|net| net.client_addr(i, NETNS_CLIENT_PORT));
                let (data, data_path) = match opts.data_dirs.get(i) {
                    Some(path) => (None, path.clone()),
                    None => {
                        let dir = data_dir();
                        let path = dir.path().to_path_buf();
                        (Some(dir), path)
                    }
                };
                Node {
                    index: i,
                    _data: data,
                    data_path,
                    peer_addr: peer_addrs[i],
                    peers,
                    client_addr,
                    child: None,
                    drains: Vec::new(),
                    logs: Vec::new(),
                    extra: Vec::new(),
                }
            })
            .collect();
        Cluster { nodes, opts, proxies, logs_shown: AtomicBool::new(false) }
    }

    /// The arguments of node `i`'s `serve`.
    fn args(&self, i: usize) -> Vec<OsString> {
        let node = &self.nodes[i];
        let listen = node.client_addr.map_or_else(|| "127.0.0.1:0".to_string(), |a| a.to_string());
        let mut args: Vec<OsString> = vec!["serve".into()];
        args.extend(self.runtime(i).serve_args().iter().map(OsString::from));
        args.extend(["--listen".into(), listen.into(), "--data".into()]);
        args.push(node.data_path.clone().into());
        if node.client_addr.is_some() {
            // Namespaced hosts listen on their own (non-loopback) addresses.
            args.push("--insecure".into());
        }
        if self.nodes.len() > 1 {
            args.extend([
                "--id".into(),
                (i + 1).to_string().into(),
                "--peers".into(),
                node.peers.clone().into(),
            ]);
            args.extend(["--lease-ms".into(), self.opts.lease_ms.to_string().into()]);
        }
        if let Some(id) = self.opts.cluster_id {
            args.extend(["--cluster-id".into(), id.to_string().into()]);
        }
        if let Some(certs) = &self.opts.certs {
            args.extend(certs.serve_args().into_iter().map(OsString::from));
        }
        args.extend(self.opts.extra_args.iter().map(OsString::from));
        args.extend(node.extra.iter().map(OsString::from));
        args
    }

    /// The runtime node `i` runs on.
    pub fn runtime(&self, i: usize) -> Runtime {
        self.opts.runtimes.get(i).copied().unwrap_or_default()
    }

    /// Runs node `i` on `runtime` from its next (re)start on, on the same
    /// data dir and addresses: a node moving between runtimes.
    pub fn set_runtime(&mut self, i: usize, runtime: Runtime) {
        let runtimes = &mut self.opts.runtimes;
        if runtimes.len() <= i {
            runtimes.resize(i + 1, Runtime::default());
        }
        runtimes[i] = runtime;
    }

    /// Sets more `serve` arguments for node `i` alone, used from its next
    /// (re)start on (e.g. `--mode primary` for a rolling migration).
    pub fn set_node_args(&mut self, i: usize, args: &[&str]) {
        self.nodes[i].extra = args.iter().map(|a| a.to_string()).collect();
    }

    /// Spawns node `i` (not running) and returns the receiver of its ready line.
    fn spawn(&mut self, i: usize) -> mpsc::Receiver<String> {
        let bin = leasetso_bin();
        let args = self.args(i);
        let mut cmd = match &self.opts.netns {
            Some(net) => net.command(i, &bin),
            None => Command::new(&bin),
        };
        cmd.args(&args);
        let needle = if self.nodes.len() > 1 { "listening on" } else { "serving on" };
        let Drained { child, log, ready: rx, drains } = spawn_drained(&mut cmd, needle);
        let node = &mut self.nodes[i];
        node.drains = drains;
        let header = format!(
            "node {i} (--id {}, start {}, pid {}): {} {}",
            i + 1,
            node.logs.len() + 1,
            child.id(),
            bin.display(),
            args.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" ")
        );
        node.logs.push((header, log));
        node.child = Some(child);
        rx
    }

    /// Waits for node `i`'s ready line on `rx`.
    fn wait_ready(
        &mut self,
        i: usize,
        rx: &mpsc::Receiver<String>,
        deadline: Instant,
    ) -> Result<(), Failure> {
        let timeout = deadline.saturating_duration_since(Instant::now());
        let line = match rx.recv_timeout(timeout) {
            Ok(line) => line,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                self.nodes[i].kill();
                return Err(Failure::final_(format!(
                    "node {i} printed no ready line within {START_TIMEOUT:?}"
                )));
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                // Stderr closed without the line: it is exiting.
                let status = {
                    let node = &mut self.nodes[i];
                    node.child.as_mut().and_then(|c| wait_timeout(c, STOP_TIMEOUT))
                };
                self.nodes[i].kill();
                let log = self.nodes[i].logs.last().map(|(_, l)| l.text()).unwrap_or_default();
                let bind = ["in use", "cannot listen", "bind"].iter().any(|s| log.contains(s));
                let message = format!("node {i} exited before its ready line ({status:?})");
                return Err(Failure { retry: bind && self.opts.netns.is_none(), message });
            }
        };
        let Some(addr) = parse_ready(&line) else {
            self.nodes[i].kill();
            return Err(Failure::final_(format!("node {i}: no address in its ready line {line:?}")));
        };
        if let Some(known) = self.nodes[i].client_addr
            && known != addr
        {
            self.nodes[i].kill();
            return Err(Failure::final_(format!("node {i} listens on {addr}, not on {known} as told")));
        }
        self.nodes[i].client_addr = Some(addr);
        Ok(())
    }

    /// Spawns every node that is not running, then waits for all of them.
    fn spawn_all(&mut self) -> Result<(), Failure> {
        let pending: Vec<usize> = (0..self.nodes.len()).filter(|&i| !self.nodes[i].is_running()).collect();
        let receivers: Vec<_> = pending.iter().map(|&i| (i, self.spawn(i))).collect();
        let deadline = Instant::now() + START_TIMEOUT;
        let mut first_error = None;
        for (i, rx) in receivers {
            if let Err(e) = self.wait_ready(i, &rx, deadline) {
                first_error.get_or_insert(e);
            }
        }
        match first_error {
            None => Ok(()),
            Some(e) => Err(e),
        }
    }

    /// Panics with `message` and every node's log.
    pub fn fail(&self, message: &str) -> ! {
        self.logs_shown.store(true, Ordering::Relaxed);
        panic!("{message}\n{}", self.logs());
    }

    /// Every node's log, every incarnation, with a header each.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for node in &self.nodes {
            if node.logs.is_empty() {
                let _ = writeln!(out, "  node {} never started", node.index);
            }
            for (header, log) in &node.logs {
                let _ = write!(out, "  --- {header}\n{log}");
            }
        }
        for ((from, to), proxy) in &self.proxies {
            let _ = writeln!(
                out,
                "  proxy {from}->{to} at {}: {} connections, {} bytes",
                proxy.addr(),
                proxy.connections(),
                proxy.bytes()
            );
        }
        out
    }

    /// How many nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether it has no nodes (never: a cluster has at least one).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The lease D_P.
    pub fn lease(&self) -> Duration {
        Duration::from_millis(self.opts.lease_ms)
    }

    /// How long after its restart a node takes part in the lease again: the
    /// quarantine Q (≈ D_A ≈ 1.02 × D_P), with a margin.
    pub fn quarantine(&self) -> Duration {
        self.lease().mul_f64(1.05) + Duration::from_millis(200)
    }

    /// Node `i`'s client address.
    pub fn node_addr(&self, i: usize) -> SocketAddr {
        self.nodes[i].client_addr.unwrap_or_else(|| self.fail(&format!("node {i} has no client address yet")))
    }

    /// Every node's client address, in node order: the seeds.
    pub fn client_addrs(&self) -> Vec<SocketAddr> {
        (0..self.nodes.len()).map(|i| self.node_addr(i)).collect()
    }

    /// `a,b,c`: the client addresses as the CLI's `--addr` takes them.
    pub fn addr_list(&self) -> String {
        self.client_addrs().iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
    }

    /// Node `i`'s own peer address (what it listens on for peers).
    pub fn peer_addr(&self, i: usize) -> SocketAddr {
        self.nodes[i].peer_addr
    }

    /// The proxy on node `from`'s link to node `to`, if that link is delayed.
    pub fn proxy(&self, from: usize, to: usize) -> Option<&DelayProxy> {
        self.proxies.iter().find(|(link, _)| *link == (from, to)).map(|(_, p)| p)
    }

    /// Node `i`'s data dir.
    pub fn data_dir(&self, i: usize) -> &std::path::Path {
        &self.nodes[i].data_path
    }

    /// Node `i`'s current process id, if it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.nodes[i].child.as_ref().map(Child::id)
    }

    /// Whether node `i` is running.
    pub fn is_running(&mut self, i: usize) -> bool {
        self.nodes[i].is_running()
    }

    /// Panics with the logs unless every node that should run does.
    pub fn assert_running(&mut self) {
        for i in 0..self.nodes.len() {
            if self.nodes[i].child.is_some() && !self.nodes[i].is_running() {
                let status = self.nodes[i].reap();
                self.fail(&format!("node {i} exited unexpectedly: {status:?}"));
            }
        }
    }

    /// Node `i`'s log (its current or last incarnation).
    pub fn log(&self, i: usize) -> String {
        self.nodes[i].logs.last().map(|(_, l)| l.text()).unwrap_or_default()
    }

    /// SIGKILL to node `i`, and waits until it is gone.
    pub fn kill(&mut self, i: usize) {
        if !self.nodes[i].is_running() {
            self.fail(&format!("kill: node {i} is not running"));
        }
        self.nodes[i].kill();
    }

    /// SIGKILL to every running node at once (all signals first, then the
    /// waits), and waits until all are gone.
    pub fn kill_all(&mut self) {
        for node in &mut self.nodes {
            if let Some(child) = &mut node.child {
                let _ = child.kill();
            }
        }
        for node in &mut self.nodes {
            node.reap();
        }
    }

    /// SIGTERM to node `i`; waits for it to exit and returns how it did.
    /// Panics with the logs if it does not exit within [`STOP_TIMEOUT`].
    pub fn term(&mut self, i: usize) -> ExitStatus {
        let Some(pid) = self.pid(i) else { self.fail(&format!("term: node {i} is not running")) };
        send_signal(pid, "TERM");
        let exited = self.nodes[i].child.as_mut().and_then(|c| wait_timeout(c, STOP_TIMEOUT));
        match exited {
            Some(status) => {
                self.nodes[i].reap();
                status
            }
            None => {
                self.nodes[i].kill();
                self.fail(&format!("node {i} did not exit within {STOP_TIMEOUT:?} of SIGTERM"))
            }
        }
    }

    /// Starts node `i` again (it must not be running) on its data dir and
    /// addresses, and waits for its ready line.
    pub fn restart(&mut self, i: usize) {
        if self.nodes[i].is_running() {
            self.fail(&format!("restart: node {i} is still running"));
        }
        self.nodes[i].reap();
        let rx = self.spawn(i);
        if let Err(e) = self.wait_ready(i, &rx, Instant::now() + START_TIMEOUT) {
            self.fail(&format!("restarting node {i}: {}", e.message));
        }
    }

    /// Starts every node that is not running, all at once, and waits for
    /// their ready lines.
    pub fn restart_all(&mut self) {
        for node in &mut self.nodes {
            if !node.is_running() {
                node.reap();
            }
        }
        if let Err(e) = self.spawn_all() {
            self.fail(&format!("restarting the cluster: {}", e.message));
        }
    }

    /// What node `i` says about itself (one connection, one GetStatus).
    pub fn status(&self, i: usize) -> io::Result<NodeState> {
        query_status_over(&self.transport(), self.node_addr(i), STATUS_TIMEOUT)
    }

    /// How the harness's raw connections reach the nodes: TLS with the
    /// cluster's certificates, if it has them.
    pub fn transport(&self) -> Transport {
        self.opts.certs.as_ref().map_or(Transport::Plain, |c| c.transport())
    }

    /// [`client_options`] with the cluster's TLS, if it has any.
    pub fn client_options(&self, deadline: Duration) -> ClientOptions {
        ClientOptions { tls: self.opts.certs.as_ref().map(|c| c.client_tls()), ..client_options(deadline) }
    }

    /// Every node's status, `Err` for those that do not answer.
    pub fn statuses(&self) -> Vec<io::Result<NodeState>> {
        (0..self.nodes.len()).map(|i| self.status(i)).collect()
    }

    /// Polls the nodes' statuses until one reports role `Leader`, for up to
    /// `timeout`; returns its index.
    pub fn leader(&self, timeout: Duration) -> Option<usize> {
        self.leader_where(timeout, |_| true)
    }

    /// [`leader`](Self::leader) among the nodes other than `i`: the one
    /// that took over from `i`.
    pub fn wait_leader_other_than(&self, i: usize, timeout: Duration) -> Option<usize> {
        self.leader_where(timeout, |j| j != i)
    }

    /// [`leader`](Self::leader), panicking with the logs if there is none.
    pub fn wait_leader(&self, timeout: Duration) -> usize {
        self.leader(timeout).unwrap_or_else(|| {
            self.fail(&format!("no node reported role Leader within {timeout:?}: {}", self.describe()))
        })
    }

    fn leader_where(&self, timeout: Duration, eligible: impl Fn(usize) -> bool) -> Option<usize> {
        let deadline = Instant::now() + timeout;
        loop {
            for i in (0..self.nodes.len()).filter(|&i| eligible(i)) {
                if self.nodes[i].child.is_some()
                    && let Ok(state) = self.status(i)
                    && state.role == Role::Leader
                {
                    return Some(i);
                }
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// One line per node: its status or why it gave none.
    pub fn describe(&self) -> String {
        self.statuses()
            .iter()
            .enumerate()
            .map(|(i, s)| match s {
                Ok(s) => format!("node {i}: {:?} (says node {:?}, leader {:?})", s.role, s.node, s.leader),
                Err(e) => format!("node {i}: {e}"),
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// A library client over every node's client address.
    pub fn client(&self, deadline: Duration) -> Client {
        Client::connect_with(&self.client_addrs()[..], self.client_options(deadline))
            .unwrap_or_else(|e| self.fail(&format!("connecting a client to {:?}: {e}", self.client_addrs())))
    }

    /// Gets one timestamp through a fresh client, within `timeout`: the
    /// cluster serves. Panics with the logs if it does not.
    pub fn wait_serving(&self, timeout: Duration) -> Timestamp {
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        while Instant::now() < deadline {
            let opts = self.client_options(Duration::from_secs(1));
            match Client::connect_with(&self.client_addrs()[..], opts).and_then(|c| c.get_ts()) {
                Ok(ts) => return ts,
                Err(e) => last = e.to_string(),
            }
            thread::sleep(Duration::from_millis(20));
        }
        self.fail(&format!(
            "the cluster handed out no timestamp within {timeout:?}: {last}; {}",
            self.describe()
        ))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.kill_all();
        if thread::panicking() && !self.logs_shown.load(Ordering::Relaxed) {
            eprintln!("the cluster's logs:\n{}", self.logs());
        }
        // Proxies, then data dirs (and a namespace set last, if this held
        // the last reference) go with the fields.
    }
}

/// Why a start failed, and whether fresh ports may help.
struct Failure {
    retry: bool,
    message: String,
}

impl Failure {
    fn final_(message: String) -> Failure {
        Failure { retry: false, message }
    }
}

/// One GetStatus on a fresh plaintext connection to `addr`.
pub fn query_status(addr: SocketAddr, timeout: Duration) -> io::Result<NodeState> {
    query_status_over(&Transport::Plain, addr, timeout)
}

/// One GetStatus on a fresh connection to `addr` over `transport`.
pub fn query_status_over(
    transport: &Transport,
    addr: SocketAddr,
    timeout: Duration,
) -> io::Result<NodeState> {
    let mut conn = RawConn::connect_over(transport, addr)?;
    conn.stream().set_read_timeout(Some(timeout))?;
    conn.hello()?;
    let id = conn.next_id();
    conn.send(&Frame::GetStatus { id })?;
    match conn.recv()? {
        Frame::Status { id: got, role, node, leader, view, .. } if got == id => {
            Ok(NodeState { role, node, leader, lease: view.lease, fence: view.fence, store: view.store })
        }
        other => Err(io::Error::other(format!("GetStatus answered with {other:?}"))),
    }
}
