//! Shared pieces of the benchmarks: the core driven in-process, the bare TCP
//! ping-pong floor, an in-process loopback server and latency percentiles.

use leasetso_core::{GetTsError, Instant, MemStore, Node, NodeConfig, Output, Timestamp};

/// A single node serving from an in-memory store, with a wall clock the
/// benchmark advances itself: the core alone, no I/O.
pub struct InProcess {
    node: Node,
    store: MemStore,
    now: Instant,
    wall_ms: u64,
}

impl InProcess {
    /// A synced, serving node.
    pub fn new() -> Self {
        let mut store = MemStore::new();
        let node = Node::new(NodeConfig::single(), store.bump_restart(), Instant::ZERO)
            .expect("the default configuration is valid");
        let mut this = InProcess { node, store, now: Instant::ZERO, wall_ms: 1_700_000_000_000 };
        this.tick();
        this
    }

    /// Runs the node's timers at the current time and performs its store
    /// operations.
    fn tick(&mut self) {
        self.node.handle_timeout(self.now, self.wall_ms);
        while let Some(out) = self.node.poll_output() {
            if let Output::Store { replica, request } = out {
                let reply = self.store.execute(request.op);
                self.node.handle_store_reply(replica, request.id, reply, self.now, self.wall_ms);
            }
        }
    }

    /// GetTS through the node. When the window is exhausted, moves both
    /// clocks a second ahead and lets the node extend it (rare: the window
    /// holds hundreds of millions of timestamps).
    #[inline]
    pub fn get_ts(&mut self, count: u32) -> Timestamp {
        loop {
            match self.node.get_ts(count, self.now) {
                Ok(ts) => return ts,
                Err(GetTsError::LogicalExhausted | GetTsError::NotLeader { .. }) => {
                    self.now += core::time::Duration::from_secs(1);
                    self.wall_ms += 1_000;
                    self.tick();
                }
                Err(e) => panic!("benchmark request failed: {e}"),
            }
        }
    }
}

impl Default for InProcess {
    fn default() -> Self {
        Self::new()
    }
}

/// The bare TCP floor: one connection over loopback with `TCP_NODELAY` on both
/// ends, to an echo thread that answers every 17-byte request (a GetTs
/// frame's size) with 25 bytes (a Ts frame's size). No framing, no lock, no
/// node: what one round trip of the kernel's loopback costs.
pub struct PingPong {
    stream: std::net::TcpStream,
    echo: Option<std::thread::JoinHandle<()>>,
}

/// The size of a GetTs frame on the wire.
pub const REQUEST_BYTES: usize = 17;
/// The size of a Ts frame on the wire.
pub const REPLY_BYTES: usize = 25;

impl PingPong {
    /// Binds an echo thread on 127.0.0.1 and connects to it.
    pub fn start() -> std::io::Result<PingPong> {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let echo = std::thread::Builder::new().name("ping-pong-echo".into()).spawn(move || {
            let Ok((mut peer, _)) = listener.accept() else { return };
            let _ = peer.set_nodelay(true);
            let mut request = [0u8; REQUEST_BYTES];
            let reply = [0x11u8; REPLY_BYTES];
            while peer.read_exact(&mut request).is_ok() {
                if peer.write_all(&reply).is_err() {
                    return;
                }
            }
        })?;
        let stream = std::net::TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        Ok(PingPong { stream, echo: Some(echo) })
    }

    /// One round trip: 17 bytes out, 25 bytes back.
    #[inline]
    pub fn round_trip(&mut self) -> u8 {
        use std::io::{Read, Write};
        let request = [0x10u8; REQUEST_BYTES];
        let mut reply = [0u8; REPLY_BYTES];
        self.stream.write_all(&request).expect("ping-pong write");
        self.stream.read_exact(&mut reply).expect("ping-pong read");
        reply[0]
    }
}

impl Drop for PingPong {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
        if let Some(echo) = self.echo.take() {
            let _ = echo.join();
        }
    }
}

/// A hand-rolled protocol client: one connection, one GetTs frame written and
/// one Ts frame read per call, no batching, no lock. What the server alone
/// costs on top of the bare ping-pong.
pub struct RawClient {
    stream: std::net::TcpStream,
    next_id: u64,
}

impl RawClient {
    /// Connects to `addr` (`TCP_NODELAY`) and does the handshake.
    pub fn connect(addr: std::net::SocketAddr) -> std::io::Result<RawClient> {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        // Hello: len 14, kind 0x01, "LTSO", version 1, cluster id 0 (any).
        let mut hello = [0u8; 18];
        hello[..4].copy_from_slice(&14u32.to_be_bytes());
        hello[4] = 0x01;
        hello[5..9].copy_from_slice(b"LTSO");
        hello[9] = 1;
        stream.write_all(&hello)?;
        // Welcome: len 16, kind 0x02, 15 bytes of body.
        let mut welcome = [0u8; 20];
        stream.read_exact(&mut welcome)?;
        if welcome[4] != 0x02 {
            return Err(std::io::Error::other("the handshake was not answered with Welcome"));
        }
        Ok(RawClient { stream, next_id: 1 })
    }

    /// One GetTs for `count` timestamps; returns the last one (packed).
    #[inline]
    pub fn get_ts_n(&mut self, count: u32) -> u64 {
        use std::io::{Read, Write};
        let id = self.next_id;
        self.next_id += 1;
        let mut request = [0u8; REQUEST_BYTES];
        request[..4].copy_from_slice(&13u32.to_be_bytes());
        request[4] = 0x10;
        request[5..13].copy_from_slice(&id.to_be_bytes());
        request[13..17].copy_from_slice(&count.to_be_bytes());
        self.stream.write_all(&request).expect("raw write");
        let mut reply = [0u8; REPLY_BYTES];
        self.stream.read_exact(&mut reply).expect("raw read");
        assert_eq!(reply[4], 0x11, "a Ts frame answers GetTs");
        u64::from_be_bytes(reply[17..25].try_into().expect("8 bytes"))
    }
}

/// A leasetso server in this process on 127.0.0.1 (a free port), storing in
/// `data_dir`, already serving.
pub fn start_server(data_dir: &std::path::Path) -> leasetso_std::Server {
    let listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let server = leasetso_std::Server::start(leasetso_std::ServerConfig::new(listen, data_dir))
        .expect("the benchmark server starts");
    assert!(server.wait_serving(std::time::Duration::from_secs(10)), "the benchmark server serves");
    server
}

/// Per-call latencies, summarised.
#[derive(Clone, Copy, Debug)]
pub struct Summary {
    /// How many samples.
    pub samples: usize,
    /// The mean.
    pub mean: std::time::Duration,
    /// The median.
    pub p50: std::time::Duration,
    /// The 90th percentile.
    pub p90: std::time::Duration,
    /// The 99th percentile.
    pub p99: std::time::Duration,
    /// The 99.9th percentile.
    pub p999: std::time::Duration,
    /// The largest sample.
    pub max: std::time::Duration,
}

impl Summary {
    /// Sorts `samples` and reads the percentiles off them (nearest rank).
    ///
    /// # Panics
    /// If `samples` is empty.
    pub fn of(samples: &mut [std::time::Duration]) -> Summary {
        assert!(!samples.is_empty(), "no samples");
        samples.sort_unstable();
        let n = samples.len();
        let at = |q: f64| samples[((q * n as f64).ceil() as usize).clamp(1, n) - 1];
        let total: std::time::Duration = samples.iter().sum();
        Summary {
            samples: n,
            mean: total / n as u32,
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            p999: at(0.999),
            max: samples[n - 1],
        }
    }
}

impl std::fmt::Display for Summary {
    /// `n=… mean=… p50=… p90=… p99=… p99.9=… max=…`, in microseconds.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let us = |d: std::time::Duration| d.as_secs_f64() * 1e6;
        write!(
            f,
            "n={} mean={:.2}us p50={:.2}us p90={:.2}us p99={:.2}us p99.9={:.2}us max={:.1}us",
            self.samples,
            us(self.mean),
            us(self.p50),
            us(self.p90),
            us(self.p99),
            us(self.p999),
            us(self.max)
        )
    }
}

/// `LEASETSO_BIN`, or `leasetso` in the profile directory of the running
/// bench (`target/release/` for `cargo bench`).
pub fn find_leasetso_bin() -> Option<std::path::PathBuf> {
    if let Some(path) = std::env::var_os("LEASETSO_BIN") {
        return Some(std::path::PathBuf::from(path));
    }
    let exe = std::env::current_exe().ok()?;
    exe.ancestors().skip(1).take(2).map(|dir| dir.join("leasetso")).find(|p| p.is_file())
}

/// Warns on stderr when `bin` is older than the sources it is built from
/// (a bench would measure stale code).
pub fn warn_if_stale(bin: &std::path::Path) {
    let Ok(built) = bin.metadata().and_then(|m| m.modified()) else { return };
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let newest = ["runtime-std/src", "runtime-smol/src", "core/src", "core/src/lease", "storage-sled/src"]
        .iter()
        .filter_map(|dir| std::fs::read_dir(root.join(dir)).ok())
        .flatten()
        .filter_map(|e| e.ok()?.metadata().ok()?.modified().ok())
        .max();
    if newest.is_some_and(|n| n > built) {
        eprintln!(
            "warning: {} is older than its sources; run `cargo build --release -p leasetso` first",
            bin.display()
        );
    }
}

/// The runtimes `leasetso serve` offers: `std` always, and `smol` when its
/// `--help` shows a `--runtime` flag naming it.
pub fn offered_runtimes(bin: &std::path::Path) -> Vec<String> {
    let help = std::process::Command::new(bin)
        .args(["serve", "--help"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let mut runtimes = vec!["std".to_string()];
    if help.contains("--runtime") && help.contains("smol") {
        runtimes.push("smol".to_string());
    }
    runtimes
}

/// A `leasetso serve` process on 127.0.0.1 (a free port), killed when
/// dropped and also when the bench dies (parent-death signal).
pub struct ServeProcess {
    child: std::process::Child,
    addr: std::net::SocketAddr,
}

impl ServeProcess {
    /// How long a server may take to print its address.
    pub const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

    /// Starts `bin serve --listen 127.0.0.1:0 --data DATA` (plus `--runtime
    /// RUNTIME` unless it is `std`, so binaries without the flag still run)
    /// and waits for its `serving on ADDR` line. Its stderr is drained for
    /// its whole life; lines before the address are echoed.
    pub fn start(
        bin: &std::path::Path,
        runtime: &str,
        data: &std::path::Path,
    ) -> std::io::Result<ServeProcess> {
        use std::io::BufRead;
        let mut cmd = std::process::Command::new(bin);
        cmd.arg("serve").arg("--listen").arg("127.0.0.1:0").arg("--data").arg(data);
        if runtime != "std" {
            cmd.arg("--runtime").arg(runtime);
        }
        cmd.env("RUST_LOG", "warn")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        die_with_parent(&mut cmd);
        let mut child = cmd.spawn()?;
        let Some(stderr) = child.stderr.take() else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(std::io::Error::other("no stderr pipe"));
        };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                if let Some(addr) = line.split("serving on ").nth(1) {
                    if let (Some(tx), Ok(addr)) = (tx.take(), addr.trim().parse()) {
                        let _ = tx.send(addr);
                    }
                } else if tx.is_some() {
                    eprintln!("server: {line}");
                }
            }
        });
        match rx.recv_timeout(Self::READY_TIMEOUT) {
            Ok(addr) => Ok(ServeProcess { child, addr }),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(std::io::Error::other(format!(
                    "the {runtime} server did not print its address within {:?}",
                    Self::READY_TIMEOUT
                )))
            }
        }
    }

    /// The client address it serves on.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An executor run by `workers` threads of its own until dropped: where the
/// async benches run their caller tasks (the async client's, and in the
/// peers harness beside tsoracle's tokio runtime).
pub struct SmolPool {
    ex: std::sync::Arc<smol::Executor<'static>>,
    stop: Option<smol::channel::Sender<()>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl SmolPool {
    /// Starts `workers` threads running the executor.
    pub fn new(workers: usize) -> SmolPool {
        let ex = std::sync::Arc::new(smol::Executor::new());
        let (stop, stopped) = smol::channel::unbounded::<()>();
        let threads = (0..workers)
            .map(|i| {
                let (ex, stopped) = (std::sync::Arc::clone(&ex), stopped.clone());
                std::thread::Builder::new()
                    .name(format!("smol-worker-{i}"))
                    .spawn(move || {
                        let _ = smol::block_on(ex.run(stopped.recv()));
                    })
                    .expect("a smol worker thread")
            })
            .collect();
        SmolPool { ex, stop: Some(stop), threads }
    }

    /// Starts `fut` as a task on the pool.
    pub fn spawn<T: Send + 'static>(
        &self,
        fut: impl std::future::Future<Output = T> + Send + 'static,
    ) -> smol::Task<T> {
        self.ex.spawn(fut)
    }

    /// Runs `fut` on the pool and waits for it from this thread.
    pub fn block_on<T: Send + 'static>(
        &self,
        fut: impl std::future::Future<Output = T> + Send + 'static,
    ) -> T {
        smol::block_on(self.ex.spawn(fut))
    }
}

impl Drop for SmolPool {
    fn drop(&mut self) {
        drop(self.stop.take());
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Has the child spawned from `cmd` killed when the bench dies, however it
/// dies (Linux: the parent-death signal), so no `leasetso serve` outlives it.
pub fn die_with_parent(cmd: &mut std::process::Command) {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    // SAFETY: the closure makes one system call (prctl), which is
    // async-signal-safe, and allocates nothing.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
                .map_err(std::io::Error::from)
        });
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = cmd;
}
