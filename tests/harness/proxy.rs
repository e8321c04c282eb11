//! A delaying TCP proxy, for slow links between cluster nodes.
//!
//! The kernel of the test machines has no `netem` qdisc, so a delay cannot
//! come from `tc`; this proxy adds it instead. Each accepted connection is
//! forwarded to a target, and every chunk read from either side is written
//! to the other side `delay` after it was read: a reader thread stamps each
//! chunk with its due time into an unbounded queue and a writer thread sends
//! each one at its time. Order is kept (one queue per direction, due times
//! never decrease) and throughput is not limited (the reader never waits for
//! the writer), so the link behaves like a long pipe, not like a slow one.
//!
//! A node's `--peers` entry for another node can point at a proxy (every
//! node has its own list), so only the traffic between two chosen nodes is
//! delayed. The proxy stops on drop: it closes the listener and every
//! connection it carries, and joins its threads.
//!
//! The socket plumbing every proxy of the harness needs (the acceptor
//! thread, the registry of sockets and threads, the stop on drop) is
//! [`Plumbing`] and [`Listening`], which the wire tap (`super::tap`) uses
//! too.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Opens the proxy's upstream connection for one accepted connection.
///
/// A closure rather than an address so that the connection can be made from
/// another network namespace (see `Netns::connect_tcp`).
pub type Connector = Arc<dyn Fn() -> io::Result<TcpStream> + Send + Sync>;

/// How long the upstream connect may take before the accepted connection is
/// dropped (the node on the other side retries on its own).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How often an acceptor looks at the stop flag while nobody connects.
const ACCEPT_POLL: Duration = Duration::from_millis(5);
/// The largest chunk read at once.
const CHUNK: usize = 64 * 1024;

/// What a reader hands its writer.
enum Item {
    /// Bytes to write at the given time.
    Data(Instant, Vec<u8>),
    /// The source closed (or failed) at the given time: close the writing
    /// half of the destination then.
    Eof(Instant),
}

/// What a proxy's threads share to stop together: a stop flag, a clone of
/// every socket the proxy holds (shut down on stop, which ends every
/// blocked read and write) and every thread it started (joined on stop).
#[derive(Default)]
pub struct Plumbing {
    stop: AtomicBool,
    sockets: Mutex<Vec<TcpStream>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Plumbing {
    /// Starts a thread of the proxy, joined when the proxy stops.
    pub fn spawn(&self, name: &str, f: impl FnOnce() + Send + 'static) {
        let handle = thread::Builder::new().name(name.into()).spawn(f).expect("spawn a proxy thread");
        self.threads.lock().unwrap_or_else(PoisonError::into_inner).push(handle);
    }

    /// Registers `client` and `upstream` to be shut down on stop, then hands
    /// them to `start` (which spawns their forwarding threads), unless the
    /// proxy is stopping (they are closed then). Both under the socket
    /// list's lock, which the stop takes after raising its flag: either the
    /// pair is registered (and its threads too) before the stop shuts the
    /// sockets down, or it is never forwarded.
    pub fn forward(&self, client: TcpStream, upstream: TcpStream, start: impl FnOnce(TcpStream, TcpStream)) {
        let mut sockets = self.sockets.lock().unwrap_or_else(PoisonError::into_inner);
        if self.stop.load(Ordering::SeqCst) {
            return;
        }
        for socket in [&client, &upstream] {
            if let Ok(clone) = socket.try_clone() {
                sockets.push(clone);
            }
        }
        start(client, upstream);
    }

    /// The next connection to `listener` (non-blocking), waiting for one
    /// while the proxy runs; `None` once it stops. Failures to accept (e.g.
    /// out of file descriptors) are retried shortly rather than spun on or
    /// given up for good.
    fn accept(&self, listener: &TcpListener) -> Option<TcpStream> {
        while !self.stop.load(Ordering::SeqCst) {
            match listener.accept() {
                Ok((client, _)) => return Some(client),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => thread::sleep(ACCEPT_POLL),
            }
        }
        None
    }
}

/// A proxy's listener, served by an acceptor thread until drop, and its
/// [`Plumbing`]: dropping it stops the acceptor (closing the listener),
/// shuts every registered socket down and joins every thread.
pub struct Listening {
    addr: SocketAddr,
    plumbing: Arc<Plumbing>,
    acceptor: Option<JoinHandle<()>>,
}

impl Listening {
    /// Serves `listener` on a thread named `<name>-accept-<port>`, which
    /// hands each accepted connection (blocking again) to `on_accept`.
    pub fn start(
        listener: TcpListener,
        name: &'static str,
        plumbing: Arc<Plumbing>,
        mut on_accept: impl FnMut(TcpStream) + Send + 'static,
    ) -> io::Result<Listening> {
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let acceptor = {
            let plumbing = Arc::clone(&plumbing);
            thread::Builder::new().name(format!("{name}-accept-{}", addr.port())).spawn(move || {
                while let Some(client) = plumbing.accept(&listener) {
                    match client.set_nonblocking(false) {
                        Ok(()) => on_accept(client),
                        Err(e) => eprintln!("{name}: {e}"),
                    }
                }
            })?
        };
        Ok(Listening { addr, plumbing, acceptor: Some(acceptor) })
    }

    /// The address it accepts on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        self.plumbing.stop.store(true, Ordering::SeqCst);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        // The acceptor is gone and `forward` registers nothing once the flag
        // is up: shutting the sockets down ends every blocked read and
        // write, and so every thread.
        for socket in self.plumbing.sockets.lock().unwrap_or_else(PoisonError::into_inner).drain(..) {
            let _ = socket.shutdown(Shutdown::Both);
        }
        let threads: Vec<_> =
            self.plumbing.threads.lock().unwrap_or_else(PoisonError::into_inner).drain(..).collect();
        for handle in threads {
            let _ = handle.join();
        }
    }
}

/// State shared by the acceptor, the connection threads and the owner.
struct Shared {
    plumbing: Arc<Plumbing>,
    /// The delay, in microseconds (changeable while running).
    delay_us: AtomicU64,
    /// Connections accepted so far.
    accepted: AtomicU64,
    /// Bytes forwarded so far, both directions.
    bytes: AtomicU64,
}

impl Shared {
    fn delay(&self) -> Duration {
        Duration::from_micros(self.delay_us.load(Ordering::Relaxed))
    }

    fn spawn(&self, name: &str, f: impl FnOnce() + Send + 'static) {
        self.plumbing.spawn(name, f);
    }

    /// Starts forwarding between `client` and `upstream` unless the proxy is
    /// stopping ([`Plumbing::forward`]).
    fn forward(self: &Arc<Self>, client: TcpStream, upstream: TcpStream) {
        self.plumbing.forward(client, upstream, |client, upstream| {
            pipe(self, &client, &upstream);
            pipe(self, &upstream, &client);
        });
    }
}

/// A running delaying proxy; stopped on drop.
pub struct DelayProxy {
    listening: Listening,
    shared: Arc<Shared>,
}

impl DelayProxy {
    /// A proxy on `127.0.0.1:<free port>` to `target`, delaying each direction by `delay`.
    pub fn start(target: SocketAddr, delay: Duration) -> io::Result<DelayProxy> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        Self::start_on(
            listener,
            Arc::new(move || TcpStream::connect_timeout(&target, CONNECT_TIMEOUT)),
            delay,
        )
    }

    /// A proxy accepting on `listener` (bound wherever the caller chose, e.g.
    /// inside a network namespace), opening its upstream connections with
    /// `connect`.
    pub fn start_on(listener: TcpListener, connect: Connector, delay: Duration) -> io::Result<DelayProxy> {
        let plumbing = Arc::new(Plumbing::default());
        let shared = Arc::new(Shared {
            plumbing: Arc::clone(&plumbing),
            delay_us: AtomicU64::new(delay.as_micros() as u64),
            accepted: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        });
        let on_accept = {
            let shared = Arc::clone(&shared);
            move |client| accepted(client, &connect, &shared)
        };
        let listening = Listening::start(listener, "proxy", plumbing, on_accept)?;
        Ok(DelayProxy { listening, shared })
    }

    /// The address it accepts on.
    pub fn addr(&self) -> SocketAddr {
        self.listening.addr()
    }

    /// Connections accepted so far (to show that traffic went through it).
    pub fn connections(&self) -> u64 {
        self.shared.accepted.load(Ordering::Relaxed)
    }

    /// Bytes forwarded so far, both directions together.
    pub fn bytes(&self) -> u64 {
        self.shared.bytes.load(Ordering::Relaxed)
    }

    /// The delay now applied to each direction.
    pub fn delay(&self) -> Duration {
        self.shared.delay()
    }

    /// Changes the delay for chunks read from now on (chunks already queued
    /// keep their time; order is kept either way).
    pub fn set_delay(&self, delay: Duration) {
        self.shared.delay_us.store(delay.as_micros() as u64, Ordering::Relaxed);
    }
}

/// Counts `client` and connects its upstream on a thread of its own: the
/// connect may take a while (a partitioned target) and the acceptor keeps
/// accepting meanwhile.
fn accepted(client: TcpStream, connect: &Connector, shared: &Arc<Shared>) {
    shared.accepted.fetch_add(1, Ordering::Relaxed);
    let (connect, inner) = (Arc::clone(connect), Arc::clone(shared));
    shared.spawn("proxy-connect", move || {
        let upstream = match connect() {
            Ok(upstream) => upstream,
            // Closing the accepted connection is what a dead target
            // would look like to the connecting node.
            Err(_) => return,
        };
        let _ = client.set_nodelay(true);
        let _ = upstream.set_nodelay(true);
        inner.forward(client, upstream);
    });
}

/// Forwards `from` to `to` with the delay, on a reader and a writer thread.
fn pipe(shared: &Arc<Shared>, from: &TcpStream, to: &TcpStream) {
    let (Ok(from_r), Ok(from_w), Ok(to)) = (from.try_clone(), from.try_clone(), to.try_clone()) else {
        let _ = from.shutdown(Shutdown::Both);
        let _ = to.shutdown(Shutdown::Both);
        return;
    };
    let (tx, rx) = mpsc::channel();
    let reader_shared = Arc::clone(shared);
    shared.spawn("proxy-read", move || read_loop(from_r, tx, &reader_shared));
    let writer_shared = Arc::clone(shared);
    shared.spawn("proxy-write", move || write_loop(rx, to, from_w, &writer_shared));
}

fn read_loop(mut from: TcpStream, tx: Sender<Item>, shared: &Shared) {
    let mut buf = vec![0u8; CHUNK];
    // Due times never go back, even if the delay is lowered meanwhile.
    let mut last_due = Instant::now();
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => 0,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => 0,
        };
        let due = (Instant::now() + shared.delay()).max(last_due);
        last_due = due;
        let item = if n == 0 { Item::Eof(due) } else { Item::Data(due, buf[..n].to_vec()) };
        let eof = n == 0;
        if tx.send(item).is_err() || eof {
            return;
        }
    }
}

fn write_loop(rx: Receiver<Item>, mut to: TcpStream, from: TcpStream, shared: &Shared) {
    let wait_until = |due: Instant| {
        let now = Instant::now();
        if due > now {
            thread::sleep(due - now);
        }
    };
    for item in rx {
        match item {
            Item::Data(due, bytes) => {
                wait_until(due);
                if to.write_all(&bytes).is_err() {
                    // The destination is gone: stop reading the source too,
                    // which ends the reader (and so this loop).
                    let _ = from.shutdown(Shutdown::Read);
                    let _ = to.shutdown(Shutdown::Both);
                    continue;
                }
                shared.bytes.fetch_add(bytes.len() as u64, Ordering::Relaxed);
            }
            Item::Eof(due) => {
                wait_until(due);
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
        }
    }
}
