//! The metrics listener (`serve --metrics ADDR`): a small HTTP/1.1 server on
//! threads of its own, the same for both runtimes.
//!
//! It answers `GET` only, one request per connection (`Connection: close`):
//! `/metrics` (Prometheus text, [`crate::metrics`]), `/health` (200 while
//! the driver runs its loop), `/ready` (200 when this node serves or follows
//! a leader it can name, 503 with the reason otherwise), `/status.json`
//! (what `leasetso status` prints, as JSON) and `/` (the live status page).
//! No web framework: the job is a handful of fixed routes, and a scrape
//! must never wait behind anything the node does. Bounded like the client
//! doors: at most [`MAX_CONNS`] at once, a request head of at most
//! [`MAX_HEAD`] bytes read within [`IO_TIMEOUT`]. Under TLS (`--certs-dir`)
//! it speaks HTTPS with the node's certificate; a client certificate is
//! checked if given, not required (browsers and scrapers read it).

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use leasetso_core::{NodeId, Role};

use crate::kit::Kit;

/// Connections served at once at most; more are closed at once.
pub const MAX_CONNS: usize = 16;
/// The longest request head read.
pub const MAX_HEAD: usize = 8 * 1024;
/// How long a request may take to arrive, and a response to be taken.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the driver may go without a step before `/health` fails.
pub const STALL: Duration = Duration::from_secs(5);

/// The status page, one self-contained file.
const PAGE: &str = include_str!("status.html");

/// A running metrics listener; stopped on drop.
#[derive(Debug)]
pub struct MetricsListener {
    local_addr: SocketAddr,
    stopping: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl MetricsListener {
    /// Binds `addr` and serves `shared`'s kit there.
    pub fn start<S>(addr: SocketAddr, shared: Arc<S>) -> io::Result<MetricsListener>
    where
        S: Deref<Target = Kit> + Send + Sync + 'static,
    {
        let listener = TcpListener::bind(addr)?;
        let local_addr = listener.local_addr()?;
        let stopping = Arc::new(AtomicBool::new(false));
        let stop = Arc::clone(&stopping);
        let acceptor = thread::Builder::new()
            .name("leasetso-metrics".into())
            .spawn(move || accept(&listener, &shared, &stop))?;
        tracing::info!(addr = %local_addr, "metrics listener open");
        Ok(MetricsListener { local_addr, stopping, acceptor: Some(acceptor) })
    }

    /// The listener `cfg` asks for (`--metrics`), serving `shared`'s kit,
    /// or none.
    pub fn for_config<S>(
        cfg: &crate::ServerConfig,
        shared: &Arc<S>,
    ) -> Result<Option<MetricsListener>, crate::ServerError>
    where
        S: Deref<Target = Kit> + Send + Sync + 'static,
    {
        cfg.metrics
            .map(|addr| {
                MetricsListener::start(addr, Arc::clone(shared))
                    .map_err(|source| crate::ServerError::Bind { addr, source })
            })
            .transpose()
    }

    /// The bound address (the real port when asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting (connections under way finish on their own).
    pub fn stop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        if let Some(acceptor) = self.acceptor.take() {
            // A connection of our own wakes the blocked accept.
            let mut wake = self.local_addr;
            if wake.ip().is_unspecified() {
                wake.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            if TcpStream::connect_timeout(&wake, Duration::from_secs(1)).is_ok() {
                let _ = acceptor.join();
            }
        }
    }
}

impl Drop for MetricsListener {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accept<S>(listener: &TcpListener, shared: &Arc<S>, stopping: &AtomicBool)
where
    S: Deref<Target = Kit> + Send + Sync + 'static,
{
    let open = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        if stopping.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else {
            thread::sleep(Duration::from_millis(50));
            continue;
        };
        if open.fetch_add(1, Ordering::AcqRel) >= MAX_CONNS {
            open.fetch_sub(1, Ordering::AcqRel);
            continue;
        }
        let (shared, open) = (Arc::clone(shared), Arc::clone(&open));
        let spawned = thread::Builder::new().name("leasetso-metrics-conn".into()).spawn(move || {
            let _ = serve(&stream, &shared);
            let _ = stream.shutdown(Shutdown::Both);
            open.fetch_sub(1, Ordering::AcqRel);
        });
        if spawned.is_err() {
            // The closure (and its count) is gone with the failed spawn.
        }
    }
}

/// One connection: TLS if the server has it, one request, one answer.
fn serve(stream: &TcpStream, kit: &Kit) -> io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    match &kit.tls {
        None => exchange(&mut &*stream, kit),
        Some(tls) => {
            let conn = rustls::ServerConnection::new(tls.metrics_config()).map_err(io::Error::other)?;
            let mut tls = rustls::StreamOwned::new(conn, stream);
            let result = exchange(&mut tls, kit);
            tls.conn.send_close_notify();
            let _ = tls.flush();
            result
        }
    }
}

/// Reads one request head and writes its answer.
fn exchange(io: &mut impl ReadWrite, kit: &Kit) -> io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() >= MAX_HEAD {
            return respond(io, 431, "text/plain", b"request head too large\n");
        }
        let n = io.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&chunk[..n]);
    }
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut words = line.split(' ');
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    if method != "GET" && method != "HEAD" {
        return respond(io, 405, "text/plain", b"only GET\n");
    }
    let path = target.split('?').next().unwrap_or("");
    let (code, kind, body): (u16, &str, Vec<u8>) = match path {
        "/metrics" => {
            // OpenMetrics for a scraper that asks for it, the classic text otherwise.
            let head = String::from_utf8_lossy(&head);
            let openmetrics = head.lines().any(|l| {
                l.to_ascii_lowercase().starts_with("accept:") && l.contains("application/openmetrics-text")
            });
            let (text, kind) = crate::metrics::render(kit, openmetrics);
            (200, kind, text.into_bytes())
        }
        "/health" => match health(kit) {
            Ok(()) => (200, "text/plain", b"ok\n".to_vec()),
            Err(why) => (503, "text/plain", format!("{why}\n").into_bytes()),
        },
        "/ready" => match ready(kit) {
            Ok(what) => (200, "text/plain", format!("{what}\n").into_bytes()),
            Err(why) => (503, "text/plain", format!("{why}\n").into_bytes()),
        },
        "/status.json" => (200, "application/json", status_json(kit).into_bytes()),
        "/" | "/index.html" => (200, "text/html; charset=utf-8", PAGE.as_bytes().to_vec()),
        _ => (404, "text/plain", b"not found: /metrics, /health, /ready, /status.json, /\n".to_vec()),
    };
    if method == "HEAD" {
        return respond(io, code, kind, b"");
    }
    respond(io, code, kind, &body)
}

/// A byte stream both ways (a socket, or TLS over one).
trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

fn respond(io: &mut impl ReadWrite, code: u16, kind: &str, body: &[u8]) -> io::Result<()> {
    let reason = match code {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        _ => "Service Unavailable",
    };
    let head = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    );
    io.write_all(head.as_bytes())?;
    io.write_all(body)?;
    io.flush()
}

/// `/health`: the process runs its loops (the driver stepped lately).
fn health(kit: &Kit) -> Result<(), String> {
    let age = kit.heartbeat_age();
    if age <= STALL { Ok(()) } else { Err(format!("the driver has not stepped for {age:?}")) }
}

/// `/ready`: this node serves, or follows a leader it can name.
fn ready(kit: &Kit) -> Result<String, String> {
    let Some(status) = kit.node.status() else {
        return Err("not ready: the node is still learning its restart counter from its peers".into());
    };
    match (status.role, status.leader) {
        (Role::Leader, _) => Ok("ready: leader".into()),
        (_, Some(leader)) if leader != kit.node_id => Ok(format!("ready: follows node {}", leader.0 + 1)),
        (Role::Syncing, _) => Err("not ready: syncing the window after winning the lease".into()),
        (Role::Yielded, _) => {
            Err("not ready: yielded to a registered primary, which is not known to serve".into())
        }
        _ => Err("not ready: no leader known (an election, or this node is cut off from its peers)".into()),
    }
}

/// How long the status of a peer may take, for `/status.json`.
const PEER_TIMEOUT: Duration = Duration::from_millis(500);

/// `/status.json`: what `leasetso status --json` prints for this node, with
/// the cluster's id and `cluster`: every
/// node's status as `leasetso status --json` prints it, this node's and
/// each peer's (asked at the client address the peer advertised, over TLS
/// as this node when the cluster has it), for the status page.
fn status_json(kit: &Kit) -> String {
    use serde_json::{Value, json};
    let own = match kit.status_reply() {
        Some(reply) => crate::status_json::status_json(kit.local_addr, &reply),
        None => json!({
            "addr": kit.local_addr.to_string(),
            "node": kit.node_id.0 + 1,
            "error": "the node is still learning its restart counter from its peers",
        }),
    };
    let mut cluster = vec![own.clone()];
    if let Some(dir) = &kit.dir {
        for peer in (0..kit.nodes).map(NodeId).filter(|&p| p != kit.node_id) {
            cluster.push(match dir.client_addr(peer) {
                Some(addr) => match ask_status(kit, addr) {
                    Ok(reply) => crate::status_json::status_json(addr, &reply),
                    Err(e) => json!({ "addr": addr.to_string(), "node": peer.0 + 1, "error": e }),
                },
                None => json!({ "node": peer.0 + 1, "error": "its address is not known yet (no link)" }),
            });
        }
    }
    let mut out = match own {
        Value::Object(map) => map,
        _ => serde_json::Map::new(),
    };
    out.insert("cluster_id".into(), json!(kit.cluster_id));
    out.insert("cluster".into(), Value::Array(cluster));
    Value::Object(out).to_string()
}

/// A peer's status, asked at its client door as a client would: Hello,
/// GetStatus, and the two answers.
fn ask_status(kit: &Kit, addr: SocketAddr) -> Result<crate::client::NodeStatus, String> {
    let stream = TcpStream::connect_timeout(&addr, PEER_TIMEOUT).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(PEER_TIMEOUT)).map_err(|e| e.to_string())?;
    stream.set_write_timeout(Some(PEER_TIMEOUT)).map_err(|e| e.to_string())?;
    match &kit.tls {
        None => exchange_status(&mut &stream, kit.cluster_id),
        Some(tls) => {
            let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
            let conn = rustls::ClientConnection::new(tls.dial_config(), name).map_err(|e| e.to_string())?;
            exchange_status(&mut rustls::StreamOwned::new(conn, &stream), kit.cluster_id)
        }
    }
}

fn exchange_status(io: &mut impl ReadWrite, cluster_id: u64) -> Result<crate::client::NodeStatus, String> {
    use leasetso_core::Frame;
    use leasetso_core::wire::VERSION;
    let mut out = Vec::with_capacity(64);
    for frame in [Frame::Hello { version: VERSION, cluster_id }, Frame::GetStatus { id: 1 }] {
        frame.encode(&mut out).map_err(|e| e.to_string())?;
    }
    io.write_all(&out).and_then(|()| io.flush()).map_err(|e| e.to_string())?;
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    loop {
        // The Welcome, then the Status.
        let mut rest = &buf[..];
        let mut frames = Vec::new();
        while let Ok(Some((frame, used))) = Frame::decode(rest) {
            frames.push(frame);
            rest = &rest[used..];
        }
        match frames.as_slice() {
            [Frame::Welcome { .. }, status, ..] if matches!(status, Frame::Status { .. }) => {
                return crate::client::NodeStatus::from_frame(*status).ok_or_else(|| "no status".into());
            }
            [Frame::Error { code, .. }, ..] => return Err(format!("refused: {code:?}")),
            _ => {}
        }
        if buf.len() > 4096 {
            return Err("no status in its answer".into());
        }
        let n = io.read(&mut chunk).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed without a status".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}
