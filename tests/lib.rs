//! Test harness for the cross-process tests: runs the real `leasetso` binary
//! and speaks the client wire protocol to it over plain TCP.
//!
//! * [`leasetso_bin`] finds the binary next to the test executable.
//! * [`ServerProcess`] runs `leasetso serve` on a free port, keeps its output
//!   (a thread drains each pipe, so the child never blocks on a full pipe),
//!   stops it with SIGTERM or SIGKILL, and kills it on drop, so no process
//!   outlives a test, passing or failing.
//! * [`RawConn`] is a minimal client written from the wire codec alone, for
//!   tests that must send what a well-behaved client never would, over
//!   plain TCP or TLS ([`Transport`]).
//! * [`TestCerts`] is a cluster's certificates from `leasetso cert`, for
//!   the same tests with TLS on.
//! * [`Call`] and [`check_calls`] check the oracle's guarantees on the
//!   timestamps that clients saw.
//!
//! Nothing here hides a failure: every panic carries the server's output.

pub mod harness;

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use leasetso_core::wire::{Frame, VERSION, WireError};
use leasetso_core::{ErrorCode, Role, Timestamp};

pub use leasetso_core::MAX_LOGICAL;
pub use tempfile::TempDir;

/// How long a server may take from spawn to its ready line.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a server may take to exit after SIGTERM.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a server may take to start handing out timestamps once ready.
pub const SERVE_TIMEOUT: Duration = Duration::from_secs(20);
/// The read timeout of a [`RawConn`]: no answer within it is a failure.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Lines of a child's output kept for failure messages.
const LOG_LINES: usize = 400;

/// The `leasetso` binary of the build this test belongs to.
///
/// Test executables live in `target/<profile>/deps/`, binaries in
/// `target/<profile>/`. `LEASETSO_BIN` overrides the search.
pub fn leasetso_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("LEASETSO_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("the test executable's path");
    let name = format!("leasetso{}", std::env::consts::EXE_SUFFIX);
    // deps/ first, then the profile directory above it.
    let found = exe.ancestors().skip(1).take(2).map(|dir| dir.join(&name)).find(|p| p.is_file());
    match found {
        Some(path) => {
            warn_if_stale(&path);
            path
        }
        None => panic!(
            "the `leasetso` binary was not found next to {} or in its parent directory; \
             build it first with `cargo build -p leasetso` (or run `cargo test --workspace`, \
             which builds it), or point LEASETSO_BIN at it",
            exe.display()
        ),
    }
}

/// Says so on stderr when the binary is older than the sources it is built
/// from: `cargo test -p leasetso-tests` does not rebuild it.
fn warn_if_stale(bin: &Path) {
    let Ok(built) = bin.metadata().and_then(|m| m.modified()) else { return };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let newest = ["runtime-std/src", "core/src", "storage-sled/src"]
        .iter()
        .filter_map(|dir| std::fs::read_dir(root.join(dir)).ok())
        .flatten()
        .filter_map(|e| e.ok()?.metadata().ok()?.modified().ok())
        .max();
    if newest.is_some_and(|n| n > built) {
        eprintln!(
            "warning: {} is older than its sources; run `cargo build -p leasetso` to test the current code",
            bin.display()
        );
    }
}

/// The last lines a child wrote, shared with the threads draining its pipes.
#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<VecDeque<String>>>);

impl Log {
    fn push(&self, line: String) {
        let mut lines = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if lines.len() == LOG_LINES {
            lines.pop_front();
        }
        lines.push_back(line);
    }

    /// Waits up to `timeout` for a line containing `needle`; whether one
    /// came. A server may log an event just after the effect a test saw
    /// (a connection closed, then the warning about it).
    pub fn wait_for(&self, needle: &str, timeout: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if self.text().contains(needle) {
                return true;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// The kept lines, one per line.
    pub fn text(&self) -> String {
        let lines = self.0.lock().unwrap_or_else(|e| e.into_inner());
        lines.iter().fold(String::new(), |mut s, l| {
            s.push_str(l);
            s.push('\n');
            s
        })
    }
}

impl fmt::Display for Log {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.text();
        if text.is_empty() { f.write_str("    (no output)\n") } else { f.write_str(&text) }
    }
}

/// Reads `pipe` line by line into `log` (prefixed with `[tag]` if given)
/// until EOF, sending lines that contain `ready` to `tx`.
fn drain(
    pipe: impl Read + Send + 'static,
    log: Log,
    tag: Option<&'static str>,
    ready: Option<(&'static str, mpsc::Sender<String>)>,
) -> JoinHandle<()> {
    thread::Builder::new()
        .name(format!("drain-{}", tag.unwrap_or("cli")))
        .spawn(move || {
            let mut reader = BufReader::new(pipe);
            let mut raw = Vec::new();
            loop {
                raw.clear();
                match reader.read_until(b'\n', &mut raw) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                let line = String::from_utf8_lossy(&raw).trim_end().to_string();
                if let Some((needle, tx)) = &ready
                    && line.contains(needle)
                {
                    let _ = tx.send(line.clone());
                }
                log.push(match tag {
                    Some(tag) => format!("    [{tag}] {line}"),
                    None => line,
                });
            }
        })
        .expect("spawn a drain thread")
}

/// A child whose output is being drained.
pub struct Drained {
    /// The process.
    pub child: Child,
    /// Its stdout and stderr, tagged, as they arrive.
    pub log: Log,
    /// The stderr lines that contain the ready needle.
    pub ready: mpsc::Receiver<String>,
    /// The threads draining its pipes (they end at its exit).
    pub drains: Vec<JoinHandle<()>>,
}

/// Spawns `cmd` with no stdin and both pipes drained into a fresh [`Log`]
/// (so the child never blocks on a full pipe); stderr lines containing
/// `ready` also go to [`Drained::ready`].
pub fn spawn_drained(cmd: &mut Command, ready: &'static str) -> Drained {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {:?}: {e}", cmd.get_program()));
    let log = Log::default();
    let (tx, rx) = mpsc::channel();
    let drains = vec![
        drain(child.stderr.take().expect("piped stderr"), log.clone(), Some("stderr"), Some((ready, tx))),
        drain(child.stdout.take().expect("piped stdout"), log.clone(), Some("stdout"), None),
    ];
    Drained { child, log, ready: rx, drains }
}

/// Waits up to `timeout` for `child` to exit.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() >= deadline => return None,
            Ok(None) => thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("waiting for pid {}: {e}", child.id()),
        }
    }
}

/// `n` distinct free loopback addresses: bound together (so no two are the
/// same), released just before the nodes bind them.
pub fn free_addrs(n: usize) -> Vec<SocketAddr> {
    let held: Vec<TcpListener> =
        (0..n).map(|_| TcpListener::bind("127.0.0.1:0").expect("a free port")).collect();
    held.iter().map(|l| l.local_addr().expect("a bound address")).collect()
}

/// Sends `signal` (e.g. "TERM") to `pid` with the `kill` command.
pub fn send_signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .unwrap_or_else(|e| panic!("running `kill -{signal} {pid}`: {e}"));
    assert!(status.success(), "`kill -{signal} {pid}` failed: {status}");
}

/// The first `127.0.0.1:<port>` of a line.
pub fn parse_loopback_addr(line: &str) -> Option<SocketAddr> {
    let (_, rest) = line.split_once("127.0.0.1:")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let port: u16 = digits.parse().ok()?;
    Some(SocketAddr::from(([127, 0, 0, 1], port)))
}

/// Which runtime runs a `leasetso serve` process: `--runtime` of `serve`.
///
/// The conformance suite (`tests/conformance.rs`) runs the same checks on
/// every runtime; the other process tests run the default (std).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Runtime {
    /// Blocking threads (`leasetso-std`), the default.
    #[default]
    Std,
    /// Async on smol (`leasetso-smol`).
    Smol,
}

impl Runtime {
    /// Every runtime, the default first.
    pub const ALL: [Runtime; 2] = [Runtime::Std, Runtime::Smol];

    /// Its name, as `--runtime` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Runtime::Std => "std",
            Runtime::Smol => "smol",
        }
    }

    /// The `serve` arguments that select it. None for std, the default, so
    /// that a binary from before `--runtime` existed runs the std tests.
    pub fn serve_args(self) -> &'static [&'static str] {
        match self {
            Runtime::Std => &[],
            Runtime::Smol => &["--runtime", "smol"],
        }
    }
}

impl fmt::Display for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a server did not get to its ready line.
#[derive(Debug)]
pub struct StartFailure {
    /// What went wrong.
    pub reason: String,
    /// How it exited, if it did (it is killed otherwise).
    pub status: Option<ExitStatus>,
    /// Everything it wrote (the last lines of it).
    pub output: String,
}

impl fmt::Display for StartFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "leasetso serve failed to start: {}", self.reason)?;
        if let Some(status) = self.status {
            write!(f, " (exit: {status})")?;
        }
        write!(f, "\n  its output:\n{}", self.output)
    }
}

/// A running `leasetso serve`, killed on drop.
pub struct ServerProcess {
    child: Child,
    addr: SocketAddr,
    data_dir: PathBuf,
    log: Log,
    drains: Vec<JoinHandle<()>>,
    exited: bool,
    /// How the harness's own connections reach it ([`wait_serving`](Self::wait_serving)).
    transport: Transport,
}

impl ServerProcess {
    /// `leasetso serve --listen 127.0.0.1:0 --data <data_dir>`, once it says
    /// it is serving. Panics with the server's output if it does not.
    pub fn start(data_dir: &Path) -> ServerProcess {
        Self::start_with(data_dir, &[])
    }

    /// [`start`](Self::start) with extra arguments for `serve`.
    pub fn start_with(data_dir: &Path, extra: &[&str]) -> ServerProcess {
        Self::try_start_with(data_dir, extra).unwrap_or_else(|failure| panic!("{failure}"))
    }

    /// [`start`](Self::start), then waits until it hands out a timestamp.
    pub fn start_serving(data_dir: &Path) -> ServerProcess {
        let server = Self::start(data_dir);
        server.wait_serving();
        server
    }

    /// Spawns the server and waits for its ready line; a server that exits
    /// first, or says nothing within [`START_TIMEOUT`], is a failure (and is
    /// killed).
    pub fn try_start_with(data_dir: &Path, extra: &[&str]) -> Result<ServerProcess, StartFailure> {
        Self::try_start_at("127.0.0.1:0", data_dir, extra)
    }

    /// [`try_start_with`](Self::try_start_with) listening on `listen`
    /// (e.g. the port an earlier server of the same test was given).
    pub fn try_start_at(
        listen: &str,
        data_dir: &Path,
        extra: &[&str],
    ) -> Result<ServerProcess, StartFailure> {
        Self::try_start_runtime(Runtime::Std, listen, data_dir, extra)
    }

    /// [`try_start_at`](Self::try_start_at) on `runtime`.
    pub fn try_start_runtime(
        runtime: Runtime,
        listen: &str,
        data_dir: &Path,
        extra: &[&str],
    ) -> Result<ServerProcess, StartFailure> {
        let mut cmd = Command::new(leasetso_bin());
        cmd.arg("serve").args(runtime.serve_args());
        cmd.args(["--listen", listen, "--data"]).arg(data_dir).args(extra);
        let Drained { child, log, ready: rx, drains } = spawn_drained(&mut cmd, "serving on");
        let mut server = ServerProcess {
            child,
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            data_dir: data_dir.into(),
            log,
            drains,
            exited: false,
            transport: Transport::Plain,
        };
        let line = match rx.recv_timeout(START_TIMEOUT) {
            Ok(line) => line,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                return Err(server.fail(format!("no \"serving on\" line within {START_TIMEOUT:?}")));
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                // Stderr closed without the line: the server is exiting.
                let status = wait_timeout(&mut server.child, STOP_TIMEOUT);
                let mut failure = server.fail("stderr closed before a \"serving on\" line".into());
                failure.status = failure.status.or(status);
                return Err(failure);
            }
        };
        match parse_loopback_addr(&line) {
            Some(addr) if addr.port() != 0 => {
                server.addr = addr;
                Ok(server)
            }
            _ => Err(server.fail(format!("no 127.0.0.1:<port> in the ready line {line:?}"))),
        }
    }

    /// Makes the harness's own connections to it use `transport` (a server
    /// started with `--certs-dir` takes TLS alone).
    pub fn over(mut self, transport: Transport) -> ServerProcess {
        self.transport = transport;
        self
    }

    /// How the harness reaches it.
    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// Kills the child (if still running) and describes the failure.
    fn fail(&mut self, reason: String) -> StartFailure {
        let status = match self.child.try_wait() {
            Ok(Some(status)) => Some(status),
            _ => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                None
            }
        };
        self.exited = true;
        self.join_drains();
        StartFailure { reason, status, output: self.log.text() }
    }

    fn join_drains(&mut self) {
        // The pipes close when the child exits; a grandchild holding them
        // open would hang this, and leasetso spawns none.
        for handle in self.drains.drain(..) {
            let _ = handle.join();
        }
    }

    /// The client address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// What it wrote so far (the last lines).
    pub fn log(&self) -> &Log {
        &self.log
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Panics with its output unless it is still running.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            self.exited = true;
            panic!(
                "leasetso serve ({}) exited unexpectedly: {status}\n  its output:\n{}",
                self.addr, self.log
            );
        }
    }

    /// Retries GetTS(1) on fresh connections until one succeeds (the server
    /// may announce its port before it holds the lease). Returns that timestamp.
    pub fn wait_serving(&self) -> Timestamp {
        let deadline = Instant::now() + SERVE_TIMEOUT;
        let mut last_error = String::new();
        while Instant::now() < deadline {
            match RawConn::connect_over(&self.transport, self.addr).and_then(|mut c| {
                c.hello()?;
                c.get_ts_retry(1, deadline)
            }) {
                Ok(ts) => return ts,
                Err(e) => last_error = e.to_string(),
            }
            thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "leasetso serve ({}) did not hand out a timestamp within {SERVE_TIMEOUT:?}: {last_error}\n  its output:\n{}",
            self.addr, self.log
        );
    }

    /// SIGTERM, then asserts a clean exit (code 0) within [`STOP_TIMEOUT`].
    /// Returns its output.
    pub fn stop(self) -> String {
        self.stop_with("TERM")
    }

    /// Sends `signal` ("TERM", "INT"), then asserts a clean exit (code 0)
    /// within [`STOP_TIMEOUT`]. Returns its output.
    pub fn stop_with(mut self, signal: &str) -> String {
        send_signal(self.pid(), signal);
        let status = wait_timeout(&mut self.child, STOP_TIMEOUT);
        let Some(status) = status else {
            let _ = self.child.kill();
            let _ = self.child.wait();
            self.exited = true;
            panic!(
                "leasetso serve did not exit within {STOP_TIMEOUT:?} of SIG{signal}\n  its output:\n{}",
                self.log
            );
        };
        self.exited = true;
        self.join_drains();
        assert_eq!(
            status.code(),
            Some(0),
            "leasetso serve must exit with code 0 on SIG{signal}, got {status}\n  its output:\n{}",
            self.log
        );
        self.log.text()
    }

    /// SIGKILL: a crash, with no chance to save or clean up.
    pub fn crash(mut self) -> String {
        self.child.kill().expect("SIGKILL the server");
        let status = self.child.wait().expect("reap the server");
        self.exited = true;
        self.join_drains();
        assert_eq!(status.signal(), Some(9), "expected death by SIGKILL, got {status}\n{}", self.log);
        self.log.text()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if !self.exited {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A child process that is killed (and reaped) on drop.
pub struct ChildGuard(pub Child);

impl ChildGuard {
    /// `leasetso <args>` with its output discarded.
    pub fn spawn_quiet(args: &[&str]) -> ChildGuard {
        let child = Command::new(leasetso_bin())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning leasetso {args:?}: {e}"));
        ChildGuard(child)
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// A fresh temporary data directory, removed on drop.
pub fn data_dir() -> TempDir {
    tempfile::Builder::new().prefix("leasetso-test-").tempdir().expect("create a temp dir")
}

/// A loopback address nobody listens on (bound, then released).
pub fn dead_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("its address")
}

/// Why [`RawConn::recv`] got no frame.
#[derive(Debug)]
pub enum RecvError {
    /// The socket failed (including a read timeout, and a reset).
    Io(io::Error),
    /// The bytes are not a frame.
    Wire(WireError),
    /// The peer closed in the middle of a frame.
    Truncated(Vec<u8>),
    /// The peer closed cleanly between frames.
    Closed,
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvError::Io(e) => write!(f, "socket error: {e}"),
            RecvError::Wire(e) => write!(f, "undecodable bytes from the server: {e}"),
            RecvError::Truncated(b) => write!(f, "connection closed mid-frame after {b:02x?}"),
            RecvError::Closed => write!(f, "connection closed by the server"),
        }
    }
}

impl std::error::Error for RecvError {}

impl From<RecvError> for io::Error {
    fn from(e: RecvError) -> io::Error {
        match e {
            RecvError::Io(e) => e,
            other => io::Error::other(other.to_string()),
        }
    }
}

/// How a test reaches a server's client door: plain TCP, or TLS with a
/// client certificate of the cluster's CA.
#[derive(Clone, Debug, Default)]
pub enum Transport {
    /// Plain TCP (a server without `--certs-dir`).
    #[default]
    Plain,
    /// TLS as this client (a server with `--certs-dir`).
    Tls(Arc<rustls::ClientConfig>),
}

impl Transport {
    /// Whether it is TLS.
    pub fn is_tls(&self) -> bool {
        matches!(self, Transport::Tls(_))
    }

    /// "plaintext" or "TLS", for messages.
    pub fn name(&self) -> &'static str {
        if self.is_tls() { "TLS" } else { "plaintext" }
    }

    /// A connection to `addr` (for TLS, the handshake runs with the first
    /// read or write), with the harness's timeouts and no Nagle delay.
    pub fn dial(&self, addr: SocketAddr) -> io::Result<Duplex> {
        let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        tcp.set_read_timeout(Some(READ_TIMEOUT))?;
        tcp.set_write_timeout(Some(READ_TIMEOUT))?;
        tcp.set_nodelay(true)?;
        Ok(match self {
            Transport::Plain => Duplex::Plain(tcp),
            Transport::Tls(config) => {
                let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
                let conn =
                    rustls::ClientConnection::new(Arc::clone(config), name).map_err(io::Error::other)?;
                Duplex::Tls(Box::new(rustls::StreamOwned::new(conn, tcp)))
            }
        })
    }
}

/// A client connection as [`Transport::dial`] makes it: bytes in and out,
/// whatever carries them.
pub enum Duplex {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Duplex {
    /// The TCP socket underneath, e.g. to change its timeouts.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Duplex::Plain(s) => s,
            Duplex::Tls(s) => &s.sock,
        }
    }

    /// Ends the writing half: the server reads EOF (under TLS, a
    /// close_notify first, as a TLS client closes).
    pub fn shutdown_write(&mut self) -> io::Result<()> {
        if let Duplex::Tls(s) = self {
            s.conn.send_close_notify();
            s.flush()?;
        }
        self.tcp().shutdown(Shutdown::Write)
    }
}

impl Read for Duplex {
    /// Under TLS, a server that closes without a close_notify reads as an
    /// `UnexpectedEof` error, not as the end (rustls's rule: a truncation
    /// attack looks the same).
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Duplex::Plain(s) => s.read(buf),
            Duplex::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Duplex {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Duplex::Plain(s) => s.write(buf),
            Duplex::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Duplex::Plain(s) => s.flush(),
            Duplex::Tls(s) => s.flush(),
        }
    }
}

/// A cluster's certificates, made with `leasetso cert` in a temporary
/// directory (removed on drop): a CA for cluster `cluster`, nodes 1 to 5
/// for 127.0.0.1, and the admin client `root`.
#[derive(Debug)]
pub struct TestCerts {
    dir: TempDir,
    client: Arc<rustls::ClientConfig>,
}

impl TestCerts {
    /// Makes them; panics with `leasetso cert`'s output if it fails.
    pub fn create(cluster: u64) -> TestCerts {
        let dir = tempfile::Builder::new().prefix("leasetso-certs-").tempdir().expect("a temp dir");
        let cluster = cluster.to_string();
        let mut steps: Vec<Vec<&str>> = vec![vec!["create-ca", "--cluster-id", &cluster]];
        let ids: Vec<String> = (1..=5).map(|i: u16| i.to_string()).collect();
        for id in &ids {
            steps.push(vec!["create-node", "--id", id, "--host", "127.0.0.1"]);
        }
        steps.push(vec!["create-client", "--name", "root", "--admin"]);
        for args in steps {
            let out = Command::new(leasetso_bin())
                .arg("cert")
                .args(&args)
                .arg("--certs-dir")
                .arg(dir.path())
                .output()
                .expect("run leasetso cert");
            assert!(out.status.success(), "leasetso cert {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        let client = leasetso_std::ClientTls::from_dir(dir.path(), "root")
            .unwrap_or_else(|e| panic!("the client certificate of {}: {e}", dir.path().display()));
        TestCerts { dir, client: client.0 }
    }

    /// The directory, for `serve --certs-dir`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `serve`'s arguments for TLS with these certificates.
    pub fn serve_args(&self) -> Vec<String> {
        vec!["--certs-dir".into(), self.dir().display().to_string()]
    }

    /// The TLS configuration of the client libraries, as `root`.
    pub fn client_tls(&self) -> leasetso_std::ClientTls {
        leasetso_std::ClientTls(Arc::clone(&self.client))
    }

    /// Raw connections as `root`.
    pub fn transport(&self) -> Transport {
        Transport::Tls(Arc::clone(&self.client))
    }
}

/// A client connection that speaks the wire protocol frame by frame.
pub struct RawConn {
    stream: Duplex,
    buf: Vec<u8>,
    next_id: u64,
}

impl RawConn {
    /// Connects over plain TCP (no handshake yet).
    pub fn connect(addr: SocketAddr) -> io::Result<RawConn> {
        Self::connect_over(&Transport::Plain, addr)
    }

    /// Connects over `transport` (no handshake of the protocol yet).
    pub fn connect_over(transport: &Transport, addr: SocketAddr) -> io::Result<RawConn> {
        Ok(RawConn { stream: transport.dial(addr)?, buf: Vec::with_capacity(256), next_id: 1 })
    }

    /// Connects over plain TCP and completes the handshake.
    pub fn open(addr: SocketAddr) -> RawConn {
        Self::open_over(&Transport::Plain, addr)
    }

    /// Connects over `transport` and completes the handshake.
    pub fn open_over(transport: &Transport, addr: SocketAddr) -> RawConn {
        let mut conn = RawConn::connect_over(transport, addr)
            .unwrap_or_else(|e| panic!("connect to {addr} ({}): {e}", transport.name()));
        conn.hello().unwrap_or_else(|e| panic!("handshake with {addr} ({}): {e}", transport.name()));
        conn
    }

    /// The TCP socket, e.g. to change its timeouts.
    pub fn stream(&self) -> &TcpStream {
        self.stream.tcp()
    }

    /// Sends one frame.
    pub fn send(&mut self, frame: &Frame) -> io::Result<()> {
        let mut bytes = Vec::with_capacity(frame.encoded_len());
        frame.encode(&mut bytes).expect("a Vec grows");
        self.send_bytes(&bytes)
    }

    /// Sends raw bytes.
    pub fn send_bytes(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Closes the writing half (the server reads EOF).
    pub fn shutdown_write(&mut self) -> io::Result<()> {
        self.stream.shutdown_write()
    }

    /// The next frame from the server.
    pub fn recv(&mut self) -> Result<Frame, RecvError> {
        let mut chunk = [0u8; 512];
        loop {
            match Frame::decode(&self.buf) {
                Ok(Some((frame, used))) => {
                    self.buf.drain(..used);
                    return Ok(frame);
                }
                Ok(None) => {}
                Err(e) => return Err(RecvError::Wire(e)),
            }
            match self.stream.read(&mut chunk) {
                Ok(0) if self.buf.is_empty() => return Err(RecvError::Closed),
                Ok(0) => return Err(RecvError::Truncated(std::mem::take(&mut self.buf))),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(RecvError::Io(e)),
            }
        }
    }

    /// Sends `Hello(VERSION, 0)` and expects `Welcome`.
    pub fn hello(&mut self) -> io::Result<Frame> {
        self.send(&Frame::Hello { version: VERSION, cluster_id: 0 })?;
        match self.recv()? {
            frame @ Frame::Welcome { version, .. } if version == VERSION => Ok(frame),
            other => Err(io::Error::other(format!("expected Welcome, got {other:?}"))),
        }
    }

    /// A fresh request id.
    pub fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// One GetTS(count): `Ok(Ok(last))`, `Ok(Err(code))` for an Error frame
    /// answering it, or an I/O error. Checks that the answer echoes the
    /// request's id and count.
    pub fn get_ts(&mut self, count: u32) -> io::Result<Result<Timestamp, ErrorCode>> {
        let id = self.next_id();
        self.send(&Frame::GetTs { id, count })?;
        match self.recv()? {
            Frame::Ts { id: got, count: n, last } if got == id && n == count => Ok(Ok(last)),
            Frame::Error { id: got, code, .. } if got == id => Ok(Err(code)),
            other => {
                Err(io::Error::other(format!("GetTs {{ id: {id}, count: {count} }} answered with {other:?}")))
            }
        }
    }

    /// GetTS(count), retrying retryable errors until `deadline`.
    pub fn get_ts_retry(&mut self, count: u32, deadline: Instant) -> io::Result<Timestamp> {
        loop {
            match self.get_ts(count)? {
                Ok(ts) => return Ok(ts),
                Err(code) if code.is_retryable() && Instant::now() < deadline => {
                    thread::sleep(Duration::from_millis(5));
                }
                Err(code) => return Err(io::Error::other(format!("GetTs({count}) failed with {code:?}"))),
            }
        }
    }

    /// One GetStatus: (role, window_end_ms, current).
    pub fn status(&mut self) -> io::Result<(Role, u64, Timestamp)> {
        let id = self.next_id();
        self.send(&Frame::GetStatus { id })?;
        match self.recv()? {
            Frame::Status { id: got, role, window_end_ms, current, .. } if got == id => {
                Ok((role, window_end_ms, current))
            }
            other => Err(io::Error::other(format!("GetStatus answered with {other:?}"))),
        }
    }

    /// Expects the server to close the connection (EOF or a reset) without
    /// sending anything more.
    pub fn expect_closed(&mut self, what: &str) {
        match self.recv() {
            Err(RecvError::Closed) => {}
            Err(RecvError::Io(e))
                if matches!(e.kind(), io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted) => {}
            Err(e) => panic!("{what}: expected the server to close the connection, got {e}"),
            Ok(frame) => panic!("{what}: expected the server to close the connection, got {frame:?}"),
        }
    }

    /// Expects a fatal `Error(code)` with id 0, then the connection closed.
    pub fn expect_fatal(&mut self, code: ErrorCode, what: &str) {
        match self.recv() {
            Ok(Frame::Error { id: 0, code: got, .. }) if got == code => {}
            Ok(frame) => panic!("{what}: expected Error {{ id: 0, code: {code:?} }}, got {frame:?}"),
            Err(e) => panic!("{what}: expected Error {{ id: 0, code: {code:?} }}, got {e}"),
        }
        self.expect_closed(what);
    }
}

/// The bytes of one encoded frame.
pub fn encode(frame: &Frame) -> Vec<u8> {
    let mut bytes = Vec::new();
    frame.encode(&mut bytes).expect("a Vec grows");
    bytes
}

/// The wall clock in Unix milliseconds.
pub fn wall_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_millis() as u64
}

/// One GetTS call as a client saw it: sent at `sent`, answered at `received`
/// with the range `first..=last` of `count` timestamps.
#[derive(Clone, Copy, Debug)]
pub struct Call {
    /// Who made it (for messages).
    pub client: usize,
    /// When the request was made.
    pub sent: Instant,
    /// When the answer arrived.
    pub received: Instant,
    /// The size of the range.
    pub count: u32,
    /// The last timestamp of the range, as answered.
    pub last: Timestamp,
}

impl Call {
    /// The first timestamp of the range, `last - count + 1`.
    pub fn first(&self) -> u64 {
        self.last.to_u64() - u64::from(self.count) + 1
    }
}

/// Checks, over every call any client made against one oracle:
/// * every range lies within one millisecond and never includes logical 0;
/// * every timestamp of every range is unique;
/// * each client's timestamps strictly increase;
/// * real-time order: a call answered before another was sent got a range
///   entirely below it.
///
/// Returns the number of timestamps checked.
pub fn check_calls(calls: &[Call]) -> u64 {
    for c in calls {
        assert!(c.count >= 1, "{c:?}: empty range");
        assert!(
            c.last.logical >= c.count,
            "{c:?}: a range of {} ending at logical {} crosses a millisecond or includes logical 0",
            c.count,
            c.last.logical
        );
        assert!(c.last.logical < MAX_LOGICAL, "{c:?}: logical out of range");
    }
    // Uniqueness: sorted by first, each range starts after the previous ends.
    let mut by_first: Vec<&Call> = calls.iter().collect();
    by_first.sort_by_key(|c| c.first());
    for w in by_first.windows(2) {
        assert!(
            w[0].last.to_u64() < w[1].first(),
            "overlapping ranges (a timestamp handed out twice):\n  {:?}\n  {:?}",
            w[0],
            w[1]
        );
    }
    // Per client, in the order each client made its calls.
    let clients = calls.iter().map(|c| c.client).max().map_or(0, |m| m + 1);
    let mut last_of: Vec<Option<&Call>> = vec![None; clients];
    let mut by_sent: Vec<&Call> = calls.iter().collect();
    by_sent.sort_by_key(|c| c.sent);
    for c in &by_sent {
        if let Some(prev) = last_of[c.client]
            && prev.received <= c.sent
        {
            assert!(
                prev.last.to_u64() < c.first(),
                "client {} went backwards:\n  {prev:?}\n  {c:?}",
                c.client
            );
        }
        last_of[c.client] = Some(c);
    }
    // Real time: for B in send order, every A received before B.sent is below B.
    let mut by_received: Vec<&Call> = calls.iter().collect();
    by_received.sort_by_key(|c| c.received);
    let mut done = 0;
    let mut max_done: Option<&Call> = None;
    for b in &by_sent {
        while done < by_received.len() && by_received[done].received < b.sent {
            let a = by_received[done];
            if max_done.is_none_or(|m| m.last < a.last) {
                max_done = Some(a);
            }
            done += 1;
        }
        if let Some(a) = max_done {
            assert!(
                a.last.to_u64() < b.first(),
                "real-time order violated: a call answered before another was sent got a later range:\n  {a:?}\n  {b:?}"
            );
        }
    }
    calls.iter().map(|c| u64::from(c.count)).sum()
}

/// The output of a finished CLI run.
#[derive(Debug)]
pub struct CliOutput {
    /// How it exited.
    pub status: ExitStatus,
    /// What it printed on stdout.
    pub stdout: String,
    /// What it printed on stderr.
    pub stderr: String,
}

/// Runs `leasetso <args>`, killing it (and failing) if it takes longer than `timeout`.
pub fn run_cli(args: &[&str], timeout: Duration) -> CliOutput {
    let mut child = Command::new(leasetso_bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawning leasetso {args:?}: {e}"));
    let (out, err) = (Log::default(), Log::default());
    let drains = [
        drain(child.stdout.take().expect("piped"), out.clone(), None, None),
        drain(child.stderr.take().expect("piped"), err.clone(), None, None),
    ];
    let status = wait_timeout(&mut child, timeout);
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("leasetso {args:?} did not finish within {timeout:?}\n  stdout:\n{out}  stderr:\n{err}");
    };
    for handle in drains {
        let _ = handle.join();
    }
    CliOutput { status, stdout: out.text(), stderr: err.text() }
}

/// `GET path` on `addr` over plain HTTP/1.1: the status code and the body.
pub fn http_get(addr: SocketAddr, path: &str) -> io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(READ_TIMEOUT))?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    Ok((code, body.to_string()))
}

/// The value of the sample `name{labels}` in Prometheus text (`labels` as
/// written there, e.g. `door="native",result="ok"`; empty for none).
pub fn metric(text: &str, name: &str, labels: &str) -> Option<f64> {
    let want = if labels.is_empty() { name.to_string() } else { format!("{name}{{{labels}}}") };
    text.lines().find_map(|l| l.strip_prefix(&want)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Polls `f` every 50 ms until it holds, for up to `timeout`; whether it did.
pub fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// The metrics listener's address a server announced in `log`
/// (`leasetso: metrics on ADDR`).
pub fn metrics_addr(log: &str) -> SocketAddr {
    log.lines()
        .find(|l| l.contains("metrics on"))
        .and_then(parse_loopback_addr)
        .unwrap_or_else(|| panic!("no metrics address in:\n{log}"))
}
