//! The door's connections: each under the server's connection cap (H1),
//! TLS handshakes run beside the accept loop under the handshake deadline
//! (H2), so a slow or silent client never holds up the next one.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use leasetso_runtime_common::limits::HANDSHAKE_DEADLINE;
use leasetso_runtime_common::quiet;
use leasetso_runtime_common::stats::{Counters, DoorKind};
use leasetso_runtime_common::{Identity, ServerTls, warn_quiet, warn_quiet_cause};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;

use leasetso_runtime_common::SharedKit;

/// Connections accepted and not yet taken by the gRPC server at most.
const BACKLOG: usize = 64;

/// A place under the cap held by one connection, and its count among the
/// door's open connections; both given back on drop, however it ends.
struct Place {
    kit: SharedKit,
}

impl Place {
    /// H1: a place, or `None` at the cap.
    fn take(kit: &SharedKit) -> Option<Place> {
        if !kit.limit.take_open() {
            return None;
        }
        kit.counters.doors[DoorKind::Grpc as usize].open.fetch_add(1, Ordering::Relaxed);
        Some(Place { kit: Arc::clone(kit) })
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        self.kit.counters.doors[DoorKind::Grpc as usize].open.fetch_sub(1, Ordering::Relaxed);
        self.kit.limit.release_open();
    }
}

/// One connection of the door: plaintext or TLS, holding its place.
pub(crate) struct Conn {
    io: Io,
    remote: Option<SocketAddr>,
    _place: Place,
}

enum Io {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Connected for Conn {
    type ConnectInfo = Option<SocketAddr>;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.remote
    }
}

impl AsyncRead for Conn {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The connections `listener` accepts, ready for the gRPC server: under
/// the cap, through TLS when `kit` has it. Runs on the current runtime.
pub(crate) fn incoming(listener: TcpListener, kit: SharedKit) -> ReceiverStream<io::Result<Conn>> {
    let (tx, rx) = mpsc::channel(BACKLOG);
    tokio::spawn(accept_loop(listener, kit, tx));
    ReceiverStream::new(rx)
}

async fn accept_loop(listener: TcpListener, kit: SharedKit, tx: mpsc::Sender<io::Result<Conn>>) {
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                warn_quiet!(quiet::ACCEPT_FAILED, error = %e, "the PD door cannot accept; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(place) = Place::take(&kit) else {
            Counters::bump(&kit.counters.refused_connections, 1);
            warn_quiet!(
                quiet::AT_CAP,
                ?remote,
                max = kit.limit.max(),
                "closing a PD door connection: at the cap"
            );
            continue;
        };
        Counters::bump(&kit.counters.connections, 1);
        // Timestamps are small and latency counts: no Nagle.
        let _ = stream.set_nodelay(true);
        match &kit.tls {
            None => {
                let conn = Conn { io: Io::Plain(stream), remote: Some(remote), _place: place };
                if tx.send(Ok(conn)).await.is_err() {
                    return; // The server stopped.
                }
            }
            Some(tls) => {
                let (tls, tx, cluster) = (Arc::clone(tls), tx.clone(), kit.cluster_id);
                let kit = Arc::clone(&kit);
                tokio::spawn(async move {
                    match handshake(&tls, cluster, stream, remote).await {
                        Ok(io) => {
                            let conn = Conn { io, remote: Some(remote), _place: place };
                            let _ = tx.send(Ok(conn)).await;
                        }
                        Err(Refusal::Timeout) => kit.handshake_timed_out(Some(remote)),
                        Err(Refusal::Tls(why)) => {
                            warn_quiet_cause!(
                                quiet::CLIENT_TLS_REFUSED,
                                &why,
                                remote = %remote,
                                why = %why,
                                "refusing a TLS connection on the PD door"
                            );
                        }
                    }
                });
            }
        }
    }
}

enum Refusal {
    Timeout,
    Tls(String),
}

/// H2: the TLS handshake within the deadline, and a client certificate of
/// this cluster (the verifier checked that it chains to the cluster's CA).
async fn handshake(
    tls: &ServerTls,
    cluster: u64,
    stream: TcpStream,
    remote: SocketAddr,
) -> Result<Io, Refusal> {
    let acceptor = TlsAcceptor::from(tls.grpc_config());
    let stream = match tokio::time::timeout(HANDSHAKE_DEADLINE, acceptor.accept(stream)).await {
        Err(_) => return Err(Refusal::Timeout),
        Ok(Err(e)) => return Err(Refusal::Tls(e.to_string())),
        Ok(Ok(stream)) => stream,
    };
    let cert = stream.get_ref().1.peer_certificates().and_then(|c| c.first());
    let Some(cert) = cert else {
        return Err(Refusal::Tls("no client certificate".into()));
    };
    match Identity::of_certificate(cert.as_ref()) {
        Ok(identity) if identity.cluster() == cluster => {
            tracing::debug!(%remote, %identity, "PD door connection authenticated");
            Ok(Io::Tls(Box::new(stream)))
        }
        Ok(identity) => Err(Refusal::Tls(format!("a certificate of {identity}, not of cluster {cluster}"))),
        Err(e) => Err(Refusal::Tls(e.to_string())),
    }
}
