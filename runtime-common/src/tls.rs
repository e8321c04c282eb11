//! TLS, once for every door and both runtimes: a byte-in/byte-out session
//! around rustls's connection, the certificates of a `--certs-dir`, and the
//! identities they name.
//!
//! Trust (PROTOCOL.md, "Trust"): a cluster has one CA (`leasetso cert
//! create-ca`). Every certificate it signs names its holder as a URI SAN:
//! `leasetso://cluster/C/node/N` for node N, `leasetso://cluster/C/client/NAME`
//! for a user, `leasetso://cluster/C/admin/NAME` for a user with the admin
//! role. A server asks every client for a certificate, checks that it chains
//! to the CA and has not expired (rustls and webpki), then reads who it names
//! ([`Identity`]); a certificate of another cluster is refused.
//!
//! [`TlsSession`] holds no socket: ciphertext read from the connection goes
//! in, plaintext comes out into the session behind it, and what that session
//! answers goes back out encrypted, as the core's sessions do with their
//! bytes. [`TlsDoor`] puts it in front of any [`Door`], so each runtime's one
//! connection loop serves TLS on every door unchanged.
//!
//! Certificates are re-read when their files change ([`ServerTls::config`]),
//! so replacing them under `--certs-dir` takes effect for new connections
//! without a restart; connections already open keep theirs.

use std::io::{self, Read, Write};
use std::net::IpAddr;
#[cfg(feature = "server")]
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use leasetso_core::NodeId;
#[cfg(feature = "server")]
use leasetso_core::{Instant, StoreReply};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, ClientConnection, Connection, RootCertStore, ServerConfig, ServerConnection};
#[cfg(feature = "server")]
use std::sync::Mutex;
#[cfg(feature = "server")]
use std::time::SystemTime;

#[cfg(feature = "server")]
use crate::door::{Door, Next};
use crate::io::InBuf;
#[cfg(feature = "server")]
use crate::lock;

/// The scheme and authority of every identity in a leasetso certificate.
pub const URI_PREFIX: &str = "leasetso://cluster/";

/// Room for one whole TLS record (16 KiB of plaintext and its overhead):
/// the read room of a TLS connection.
pub const RECORD_ROOM: usize = 16 * 1024 + 2048;

/// Why TLS could not be set up or went wrong.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate or key file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A file is not the PEM it should be.
    #[error("{path}: not a PEM {what} ({why})")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What it should hold.
        what: &'static str,
        /// What the parser said.
        why: String,
    },
    /// Plaintext could not be handed to TLS.
    #[error("TLS: {0}")]
    Io(#[from] io::Error),
    /// rustls refused the configuration or the connection.
    #[error("TLS: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client verifier could not be built from the CA.
    #[error("TLS: the CA cannot verify clients: {0}")]
    Verifier(String),
    /// A plaintext connection read a TLS alert: the server requires TLS.
    #[error("the server answered in TLS")]
    Required,
    /// The peer's certificate names no leasetso identity, or another cluster's.
    #[error("the peer's certificate {0}")]
    Identity(String),
}

/// Who a verified certificate says its holder is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Identity {
    /// Node `id` (0-based) of cluster `cluster`.
    Node {
        /// The cluster.
        cluster: u64,
        /// The node.
        id: NodeId,
    },
    /// User `name` of cluster `cluster`, with the admin role or not.
    User {
        /// The cluster.
        cluster: u64,
        /// The user.
        name: String,
        /// Whether the certificate carries the admin role.
        admin: bool,
    },
}

impl Identity {
    /// The identity a leasetso URI names (`leasetso://cluster/C/node/N`,
    /// `.../client/NAME`, `.../admin/NAME`), if it names one.
    pub fn from_uri(uri: &str) -> Option<Identity> {
        let rest = uri.strip_prefix(URI_PREFIX)?;
        let mut parts = rest.splitn(3, '/');
        let cluster = parts.next()?.parse().ok()?;
        let (kind, name) = (parts.next()?, parts.next()?);
        match kind {
            "node" => {
                let id: u16 = name.parse().ok().filter(|&n| n >= 1)?;
                Some(Identity::Node { cluster, id: NodeId(id - 1) })
            }
            "client" | "admin" if !name.is_empty() && !name.contains('/') => {
                Some(Identity::User { cluster, name: name.to_owned(), admin: kind == "admin" })
            }
            _ => None,
        }
    }

    /// The identity a DER certificate names (its first leasetso URI SAN).
    pub fn of_certificate(der: &[u8]) -> Result<Identity, TlsError> {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| TlsError::Identity(format!("does not parse: {e}")))?;
        let sans = cert
            .subject_alternative_name()
            .map_err(|e| TlsError::Identity(format!("has a bad SAN extension: {e}")))?;
        sans.into_iter()
            .flat_map(|ext| ext.value.general_names.iter())
            .find_map(|name| match name {
                x509_parser::extensions::GeneralName::URI(uri) => Identity::from_uri(uri),
                _ => None,
            })
            .ok_or_else(|| TlsError::Identity(format!("names no {URI_PREFIX}... identity")))
    }

    /// The cluster it belongs to.
    pub fn cluster(&self) -> u64 {
        match self {
            Identity::Node { cluster, .. } | Identity::User { cluster, .. } => *cluster,
        }
    }

    /// Whether it may change the primary registration.
    pub fn is_admin(&self) -> bool {
        matches!(self, Identity::User { admin: true, .. })
    }
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Identity::Node { cluster, id } => write!(f, "node {} of cluster {cluster}", id.0 + 1),
            Identity::User { cluster, name, admin } => {
                write!(f, "{} {name} of cluster {cluster}", if *admin { "admin" } else { "user" })
            }
        }
    }
}

/// A `--certs-dir`: the cluster's CA and this process's certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertsDir {
    /// The directory.
    pub path: PathBuf,
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = std::fs::read(path).map_err(|source| TlsError::Read { path: path.to_owned(), source })?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem { path: path.to_owned(), what: "certificate", why: e.to_string() })?;
    if certs.is_empty() {
        let why = "no certificate in it".into();
        return Err(TlsError::Pem { path: path.to_owned(), what: "certificate", why });
    }
    Ok(certs)
}

fn key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = std::fs::read(path).map_err(|source| TlsError::Read { path: path.to_owned(), source })?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| TlsError::Pem {
        path: path.to_owned(),
        what: "private key",
        why: e.to_string(),
    })
}

/// rustls's `ring` provider: the build needs only a C compiler (the
/// default aws-lc-rs needs more). rustls marks it deprecated for lacking
/// post-quantum key exchange, which a cluster-internal CA does not need yet.
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl CertsDir {
    /// The directory at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        CertsDir { path: path.into() }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    fn roots(&self) -> Result<RootCertStore, TlsError> {
        let mut roots = RootCertStore::empty();
        for ca in certs(&self.file("ca.crt"))? {
            roots.add(ca)?;
        }
        Ok(roots)
    }

    /// The files node `id`'s server reads, for [`ServerTls`] to watch.
    fn node_files(&self, id: NodeId) -> [PathBuf; 3] {
        let n = id.0 + 1;
        [self.file("ca.crt"), self.file(&format!("node.{n}.crt")), self.file(&format!("node.{n}.key"))]
    }

    /// Node `id`'s server side: its certificate, and every client asked for
    /// one that chains to the cluster's CA.
    pub fn server_config(&self, id: NodeId) -> Result<Arc<ServerConfig>, TlsError> {
        self.node_server_config(id, true)
    }

    /// Node `id`'s server side, a client certificate required or (for the
    /// metrics listener, which browsers and scrapers read) only checked if
    /// one is given.
    fn node_server_config(&self, id: NodeId, required: bool) -> Result<Arc<ServerConfig>, TlsError> {
        let [_, crt, key_file] = self.node_files(id);
        let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(self.roots()?), provider());
        let builder = if required { builder } else { builder.allow_unauthenticated() };
        let verifier = builder.build().map_err(|e| TlsError::Verifier(e.to_string()))?;
        let config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs(&crt)?, key(&key_file)?)?;
        Ok(Arc::new(config))
    }

    /// A client's side, as the holder of `client.NAME.crt` (a user) or
    /// `node.N.crt` (a node dialling a peer): `name` is the file's middle part.
    pub fn client_config(&self, kind: &str, name: &str) -> Result<Arc<ClientConfig>, TlsError> {
        let crt = self.file(&format!("{kind}.{name}.crt"));
        let key_file = self.file(&format!("{kind}.{name}.key"));
        let config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(self.roots()?)
            .with_client_auth_cert(certs(&crt)?, key(&key_file)?)?;
        Ok(Arc::new(config))
    }
}

#[cfg(feature = "server")]
/// The configurations one node's TLS needs, built together from its files.
#[derive(Debug)]
struct Configs {
    /// When the files were last changed, as these were built from them.
    stamps: Vec<Option<SystemTime>>,
    /// The client and Redis doors.
    doors: Arc<ServerConfig>,
    /// The peer port's accepting side: no session tickets, so the side
    /// that accepted a link never writes after its Welcome.
    peers: Arc<ServerConfig>,
    /// This node dialling a peer, as the holder of its node certificate.
    dial: Arc<ClientConfig>,
    /// The metrics listener: the node certificate, client certificates
    /// optional.
    metrics: Arc<ServerConfig>,
    /// The PD door: the doors' configuration speaking HTTP/2 (ALPN `h2`,
    /// which gRPC clients require).
    grpc: Arc<ServerConfig>,
}

#[cfg(feature = "server")]
impl Configs {
    fn build(dir: &CertsDir, node: NodeId) -> Result<Configs, TlsError> {
        let stamps = stamps(&dir.node_files(node));
        let doors = dir.server_config(node)?;
        let mut peers = (*doors).clone();
        peers.send_tls13_tickets = 0;
        let dial = dir.client_config("node", &(node.0 + 1).to_string())?;
        let metrics = dir.node_server_config(node, false)?;
        let mut grpc = (*doors).clone();
        grpc.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Configs { stamps, doors, peers: Arc::new(peers), dial, metrics, grpc: Arc::new(grpc) })
    }
}

#[cfg(feature = "server")]
/// A server's TLS: node `id`'s configurations from its `--certs-dir`, built
/// again when one of its files changes, so new connections (doors and peer
/// links) take rotated certificates without a restart.
#[derive(Debug)]
pub struct ServerTls {
    dir: CertsDir,
    node: NodeId,
    cluster: u64,
    current: Mutex<Arc<Configs>>,
}

#[cfg(feature = "server")]
fn stamps(files: &[PathBuf]) -> Vec<Option<SystemTime>> {
    files.iter().map(|f| std::fs::metadata(f).and_then(|m| m.modified()).ok()).collect()
}

#[cfg(feature = "server")]
impl ServerTls {
    /// Loads node `id`'s configurations from `dir`, for cluster `cluster`.
    pub fn load(dir: CertsDir, node: NodeId, cluster: u64) -> Result<Self, TlsError> {
        let configs = Configs::build(&dir, node)?;
        Ok(ServerTls { dir, node, cluster, current: Mutex::new(Arc::new(configs)) })
    }

    /// The configurations for a new connection: the files' as they are
    /// now. Files that changed but do not load (a rotation half done) leave
    /// the last good ones in use, and say why.
    fn configs(&self) -> Arc<Configs> {
        let now = stamps(&self.dir.node_files(self.node));
        let mut current = lock(&self.current);
        if now != current.stamps {
            match Configs::build(&self.dir, self.node) {
                Ok(configs) => {
                    tracing::info!(dir = %self.dir.path.display(), "certificates changed: new connections use them");
                    *current = Arc::new(configs);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "certificates changed but do not load; keeping the last good ones")
                }
            }
        }
        Arc::clone(&current)
    }

    /// The client and Redis doors' configuration for a new connection.
    pub fn config(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.configs().doors)
    }

    /// This node's client side, as the holder of its node certificate (the
    /// metrics listener asks its peers' client doors for their status).
    pub fn dial_config(&self) -> Arc<ClientConfig> {
        Arc::clone(&self.configs().dial)
    }

    /// The PD door's configuration for a new connection.
    pub fn grpc_config(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.configs().grpc)
    }

    /// The metrics listener's configuration for a new connection.
    pub fn metrics_config(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.configs().metrics)
    }

    /// A TLS session for a peer link just accepted on the peer port.
    pub fn accept_peer(&self) -> Result<TlsSession, TlsError> {
        TlsSession::server(Arc::clone(&self.configs().peers))
    }

    /// A TLS session for this node dialling the peer at `ip`.
    pub fn dial_peer(&self, ip: IpAddr) -> Result<TlsSession, TlsError> {
        TlsSession::client(Arc::clone(&self.configs().dial), ip)
    }

    /// Checks the identity a peer link's certificate named against the
    /// node its handshake claims: a node of this cluster, and that node.
    /// The link's id is the certificate's, never a frame's.
    pub fn check_peer(&self, identity: Option<&Identity>, claimed: NodeId) -> Result<(), String> {
        match identity {
            Some(Identity::Node { cluster, id }) if *cluster == self.cluster && *id == claimed => Ok(()),
            Some(Identity::Node { cluster, id }) if *cluster == self.cluster => Err(format!(
                "node {}'s certificate claims to be node {} in its handshake",
                id.0 + 1,
                claimed.0 + 1
            )),
            Some(other) => Err(format!("a certificate of {other} on the peer port")),
            None => Err("no certificate on the peer port".into()),
        }
    }

    /// The cluster whose certificates are accepted.
    pub fn cluster(&self) -> u64 {
        self.cluster
    }
}

#[cfg(feature = "server")]
/// The TLS session of a link this node dials to `ip`: `None` for plaintext
/// (`tls` none).
pub fn dial_link(tls: Option<&ServerTls>, ip: IpAddr) -> io::Result<Option<TlsSession>> {
    tls.map(|tls| tls.dial_peer(ip)).transpose().map_err(io_error)
}

#[cfg(feature = "server")]
/// [`ServerTls::check_peer`] for a link that may be plaintext (`tls` none):
/// a plaintext link has no certificate to check.
pub fn check_link(
    tls: Option<&ServerTls>,
    identity: Option<&Identity>,
    claimed: NodeId,
) -> Result<(), String> {
    tls.map_or(Ok(()), |tls| tls.check_peer(identity, claimed))
}

/// One TLS connection without I/O: ciphertext in, plaintext through, ciphertext out.
#[derive(Debug)]
pub struct TlsSession {
    conn: Connection,
    /// The peer's identity, once its certificate was verified and read.
    identity: Option<Identity>,
}

impl TlsSession {
    /// The server side of a connection just accepted.
    pub fn server(config: Arc<ServerConfig>) -> Result<Self, TlsError> {
        Ok(TlsSession { conn: ServerConnection::new(config)?.into(), identity: None })
    }

    /// The client side of a connection to `ip`, whose certificate must name it.
    pub fn client(config: Arc<ClientConfig>, ip: IpAddr) -> Result<Self, TlsError> {
        let name = ServerName::IpAddress(ip.into());
        Ok(TlsSession { conn: ClientConnection::new(config, name)?.into(), identity: None })
    }

    /// Whether the handshake is still under way.
    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// The peer's identity, once the handshake is done.
    pub fn identity(&self) -> Option<&Identity> {
        self.identity.as_ref()
    }

    /// Takes ciphertext from `input` and decrypts what it can into `plain`,
    /// leaving at least `room` free there for the session behind (ciphertext
    /// that does not fit stays in `input` for the next call). Returns whether
    /// plaintext is still waiting inside (call again once `plain` has room).
    pub fn read(&mut self, input: &mut InBuf, plain: &mut InBuf, room: usize) -> Result<bool, TlsError> {
        loop {
            let mut pending = input.pending();
            let before = pending.len();
            if before > 0 {
                // Only an I/O error of the slice itself could fail: none.
                let _ = self.conn.read_tls(&mut pending);
            }
            let taken = before - pending.len();
            input.consume(taken);
            let state = self.conn.process_new_packets()?;
            if self.identity.is_none() && !self.conn.is_handshaking() {
                self.identity = self.peer_identity()?;
            }
            let mut waiting = state.plaintext_bytes_to_read();
            while waiting > 0 {
                let spare = plain.spare(room);
                if spare.is_empty() {
                    return Ok(true);
                }
                match self.conn.reader().read(spare) {
                    Ok(n) if n > 0 => {
                        plain.filled(n);
                        waiting = waiting.saturating_sub(n);
                    }
                    _ => break,
                }
            }
            if taken == 0 || input.pending().is_empty() {
                return Ok(false);
            }
        }
    }

    /// Encrypts `plain` (emptying it) and appends every byte to send
    /// (handshake, records, alerts) to `out`.
    pub fn write(&mut self, plain: &mut Vec<u8>, out: &mut Vec<u8>) -> Result<(), TlsError> {
        if !plain.is_empty() {
            self.conn.writer().write_all(plain)?;
            plain.clear();
        }
        while self.conn.wants_write() {
            // A `Vec` takes everything: writing to it cannot fail.
            let _ = self.conn.write_tls(out);
        }
        Ok(())
    }

    /// Ends the connection cleanly: a close_notify goes out with the next
    /// [`TlsSession::write`].
    pub fn close(&mut self) {
        self.conn.send_close_notify();
    }

    fn peer_identity(&self) -> Result<Option<Identity>, TlsError> {
        match self.conn.peer_certificates().and_then(|c| c.first()) {
            Some(leaf) => Identity::of_certificate(leaf).map(Some),
            None => Ok(None),
        }
    }
}

/// A [`TlsSession`] with the buffers a connection's reads and writes go
/// through, for the code that drives a socket directly (the clients, the
/// peer links): the runtime reads ciphertext into [`TlsPipe::read_room`],
/// reports it with [`TlsPipe::received`], takes plaintext with
/// [`TlsPipe::take_plain`], and writes what [`TlsPipe::to_send`] holds
/// (handshake flights included), reporting it with [`TlsPipe::sent`]. No
/// I/O here: the same pipe serves a blocking socket and an async one, and
/// ciphertext is handed out in pieces, so a write cut short loses nothing.
#[derive(Debug)]
pub struct TlsPipe {
    session: TlsSession,
    cipher_in: InBuf,
    plain_in: InBuf,
    plain_out: Vec<u8>,
    cipher_out: Vec<u8>,
    /// How much of `cipher_out` was written.
    cipher_sent: usize,
}

fn io_error(e: TlsError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl TlsPipe {
    /// The buffers around `session`.
    pub fn new(session: TlsSession) -> Self {
        TlsPipe {
            session,
            cipher_in: InBuf::new(2 * RECORD_ROOM),
            plain_in: InBuf::new(2 * RECORD_ROOM),
            plain_out: Vec::new(),
            cipher_out: Vec::new(),
            cipher_sent: 0,
        }
    }

    /// The peer's identity, once its certificate was verified.
    pub fn identity(&self) -> Option<&Identity> {
        self.session.identity()
    }

    /// Encrypts `data` behind what waits to be sent. A TLS failure is an
    /// `InvalidData` error carrying the [`TlsError`].
    pub fn seal(&mut self, data: &[u8]) -> io::Result<()> {
        if self.cipher_sent == self.cipher_out.len() {
            self.cipher_out.clear();
            self.cipher_sent = 0;
        }
        self.plain_out.extend_from_slice(data);
        self.session.write(&mut self.plain_out, &mut self.cipher_out).map_err(io_error)
    }

    /// The ciphertext waiting to be written.
    pub fn to_send(&self) -> &[u8] {
        &self.cipher_out[self.cipher_sent..]
    }

    /// `n` bytes of [`TlsPipe::to_send`] were written.
    pub fn sent(&mut self, n: usize) {
        self.cipher_sent = (self.cipher_sent + n).min(self.cipher_out.len());
    }

    /// Room to read ciphertext into.
    pub fn read_room(&mut self) -> &mut [u8] {
        self.cipher_in.spare(RECORD_ROOM)
    }

    /// `n` bytes were read into [`TlsPipe::read_room`]: decrypts them, and
    /// queues what TLS answers (the handshake's next flight) to send.
    pub fn received(&mut self, n: usize) -> io::Result<()> {
        self.cipher_in.filled(n);
        self.session.read(&mut self.cipher_in, &mut self.plain_in, 1).map_err(io_error)?;
        self.seal(&[])
    }

    /// Moves decrypted bytes into `buf`; 0 when none is waiting.
    pub fn take_plain(&mut self, buf: &mut [u8]) -> usize {
        let pending = self.plain_in.pending();
        let n = pending.len().min(buf.len());
        buf[..n].copy_from_slice(&pending[..n]);
        self.plain_in.consume(n);
        n
    }

    /// The decrypted bytes waiting, for a reader that consumes them in place
    /// ([`TlsPipe::consume_plain`]).
    pub fn plain(&self) -> &[u8] {
        self.plain_in.pending()
    }

    /// `n` bytes of [`TlsPipe::plain`] were used.
    pub fn consume_plain(&mut self, n: usize) {
        self.plain_in.consume(n);
    }
}

/// Whether `bytes` start like a TLS alert record (content type 21, major
/// version 3): what a plaintext client reads from a server that requires TLS.
pub fn is_tls_alert(bytes: &[u8]) -> bool {
    bytes.len() >= 2 && bytes[0] == 21 && bytes[1] == 3
}

/// The TLS error an `io::Error` of a [`TlsPipe`] (or of a plaintext read
/// that met a TLS server) carries; any other error back as it was.
pub fn into_tls_error(e: io::Error) -> Result<TlsError, io::Error> {
    if !e.get_ref().is_some_and(|inner| inner.is::<TlsError>()) {
        return Err(e);
    }
    match e.into_inner().map(|inner| inner.downcast::<TlsError>()) {
        Some(Ok(tls)) => Ok(*tls),
        // `is` said it is one.
        Some(Err(inner)) => Err(io::Error::other(inner)),
        None => Err(io::Error::other("TLS failed")),
    }
}

#[cfg(feature = "server")]
/// A [`Door`] behind TLS: what the runtime reads goes through the TLS
/// session into the door, what the door answers goes back encrypted. The
/// client's certificate is checked against the CA during the handshake and,
/// once done, its identity must be of `cluster`; the door then learns it
/// ([`Door::authenticated`]).
#[derive(Debug)]
pub struct TlsDoor<D> {
    tls: TlsSession,
    inner: D,
    /// The client's address, for the log.
    remote: Option<SocketAddr>,
    cluster: u64,
    /// Ciphertext read from the socket.
    input: InBuf,
    /// Ciphertext to write.
    out: Vec<u8>,
    told: bool,
}

#[cfg(feature = "server")]
impl<D: Door> TlsDoor<D> {
    /// `inner` behind the server side of TLS, for a connection just accepted.
    /// `remote` is the client's address, named when a refusal is logged.
    pub fn server(tls: &ServerTls, inner: D, remote: Option<SocketAddr>) -> Result<Self, TlsError> {
        Ok(TlsDoor {
            tls: TlsSession::server(tls.config())?,
            inner,
            remote,
            cluster: tls.cluster(),
            input: InBuf::new(2 * RECORD_ROOM),
            out: Vec::with_capacity(RECORD_ROOM),
            told: false,
        })
    }

    /// Encrypts what the inner door answered; on failure, closes.
    fn seal(&mut self) -> Option<Next> {
        match self.tls.write(self.inner.out(), &mut self.out) {
            Ok(()) => None,
            Err(e) => {
                tracing::debug!(error = %e, "TLS write failed; closing the connection");
                Some(Next::Close)
            }
        }
    }

    /// A refusal: says why once, sends what TLS has to say (an alert), closes.
    fn refuse(&mut self, why: &dyn std::fmt::Display) -> Next {
        crate::warn_quiet_cause!(
            crate::quiet::CLIENT_TLS_REFUSED,
            &why.to_string(),
            remote = ?self.remote,
            %why,
            "refusing a TLS connection"
        );
        let _ = self.tls.write(&mut Vec::new(), &mut self.out);
        Next::Close
    }
}

#[cfg(feature = "server")]
impl<D: Door> Door for TlsDoor<D> {
    fn step(&mut self, now: Instant) -> Next {
        loop {
            let room = self.inner.room();
            let backlog = match self.tls.read(&mut self.input, self.inner.input(), room) {
                Ok(backlog) => backlog,
                Err(e) => return self.refuse(&e),
            };
            if !self.told {
                if let Some(identity) = self.tls.identity().cloned() {
                    if identity.cluster() != self.cluster {
                        let why = format!("a certificate of {identity}, not of cluster {}", self.cluster);
                        return self.refuse(&why);
                    }
                    self.inner.authenticated(&identity);
                    self.told = true;
                }
            }
            let next = if self.tls.is_handshaking() { Next::Read } else { self.inner.step(now) };
            if let Some(closed) = self.seal() {
                return closed;
            }
            match next {
                // Plaintext still waits inside TLS, or whole records in the
                // input: the door takes them before anything more is read.
                Next::Read if backlog => continue,
                Next::Close => {
                    self.tls.close();
                    let _ = self.seal();
                    return Next::Close;
                }
                other => return other,
            }
        }
    }

    fn admin_done(&mut self, id: u64, reply: Option<StoreReply>) {
        self.inner.admin_done(id, reply);
        let _ = self.seal();
    }

    fn out(&mut self) -> &mut Vec<u8> {
        &mut self.out
    }

    fn input(&mut self) -> &mut InBuf {
        &mut self.input
    }

    fn room(&self) -> usize {
        RECORD_ROOM
    }

    fn finish(&mut self) {
        self.tls.close();
        let _ = self.seal();
    }

    fn handshaking(&self) -> bool {
        self.tls.is_handshaking() || self.inner.handshaking()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_are_read_from_leasetso_uris_only() {
        assert_eq!(
            Identity::from_uri("leasetso://cluster/7/node/2"),
            Some(Identity::Node { cluster: 7, id: NodeId(1) })
        );
        assert_eq!(
            Identity::from_uri("leasetso://cluster/7/admin/root"),
            Some(Identity::User { cluster: 7, name: "root".into(), admin: true })
        );
        let app = Identity::from_uri("leasetso://cluster/9/client/app").unwrap();
        assert!(!app.is_admin());
        assert_eq!(app.cluster(), 9);
        for bad in [
            "leasetso://cluster/7/node/0",
            "leasetso://cluster/x/node/1",
            "leasetso://cluster/7/root/x",
            "leasetso://cluster/7/client/",
            "https://cluster/7/node/1",
            "leasetso://cluster/7",
        ] {
            assert_eq!(Identity::from_uri(bad), None, "{bad}");
        }
    }
}
