//! [`PdDoor`]: the PD-compatible gRPC listener, on a tokio runtime of its
//! own, serving one node's kit.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use leasetso_runtime_common::SharedKit;
use tokio::runtime::Runtime;
use tokio::sync::oneshot;

use crate::pdpb::pd_server::PdServer;
use crate::service::PdService;

/// The largest request the door reads. Its requests are a few dozen
/// bytes; anything near this is not a PD client.
pub const MAX_REQUEST: usize = 64 * 1024;
/// Streams one connection may hold open at once (PD's clients open one
/// `Tso` stream per connection, plus unary calls).
pub const MAX_STREAMS: u32 = 64;
/// How often the health service's `pdpb.PD` status follows the node.
const HEALTH_EVERY: Duration = Duration::from_millis(100);

/// Why the door cannot start.
#[derive(Debug, thiserror::Error)]
pub enum GrpcError {
    /// PD's clients refuse a cluster id of 0.
    #[error("the PD door needs a cluster id other than 0, which PD's clients refuse: set --cluster-id")]
    ZeroClusterId,
    /// The runtime's threads could not start.
    #[error("cannot start the PD door's runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// The listener given cannot be used.
    #[error("the PD door's listener: {0}")]
    Listener(#[source] std::io::Error),
}

/// A running PD door; stopped on drop.
pub struct PdDoor {
    local_addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    runtime: Option<Runtime>,
}

impl std::fmt::Debug for PdDoor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PdDoor").field("addr", &self.local_addr).finish()
    }
}

impl PdDoor {
    /// Serves `kit`'s node on `listener` (bound by the caller, so that the
    /// address was known to the peer handshake before the server started),
    /// with `threads` runtime threads.
    pub fn start(
        listener: std::net::TcpListener,
        kit: SharedKit,
        threads: usize,
    ) -> Result<PdDoor, GrpcError> {
        if kit.cluster_id == 0 {
            return Err(GrpcError::ZeroClusterId);
        }
        let local_addr = listener.local_addr().map_err(GrpcError::Listener)?;
        listener.set_nonblocking(true).map_err(GrpcError::Listener)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("leasetso-pd")
            .enable_all()
            .build()
            .map_err(GrpcError::Runtime)?;
        let listener = {
            let _entered = runtime.enter();
            tokio::net::TcpListener::from_std(listener).map_err(GrpcError::Listener)?
        };
        let (stop, stopped) = oneshot::channel::<()>();
        runtime.spawn(serve(listener, kit, stopped));
        tracing::info!(addr = %local_addr, "PD door open");
        Ok(PdDoor { local_addr, stop: Some(stop), runtime: Some(runtime) })
    }

    /// The bound address (the real port when asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops serving: streams under way end, the runtime's threads exit.
    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

impl Drop for PdDoor {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn serve(listener: tokio::net::TcpListener, kit: SharedKit, stopped: oneshot::Receiver<()>) {
    let (health, health_service) = tonic_health::server::health_reporter();
    tokio::spawn(follow_health(health, Arc::clone(&kit)));
    let pd = PdServer::new(PdService::new(Arc::clone(&kit))).max_decoding_message_size(MAX_REQUEST);
    let incoming = crate::accept::incoming(listener, kit);
    let served = tonic::transport::Server::builder()
        .max_concurrent_streams(MAX_STREAMS)
        .add_service(pd)
        .add_service(health_service)
        .serve_with_incoming_shutdown(incoming, async {
            let _ = stopped.await;
        })
        .await;
    if let Err(e) = served {
        tracing::error!(error = %e, "the PD door stopped");
    }
}

/// `grpc.health.v1.Health`: the whole server (`""`) is serving while the
/// process runs; `pdpb.PD` while this node hands out timestamps, so a load
/// balancer's health check finds the leader.
async fn follow_health(health: tonic_health::server::HealthReporter, kit: SharedKit) {
    let mut serving = None;
    loop {
        let now = kit.is_serving();
        if serving != Some(now) {
            if now {
                health.set_serving::<PdServer<PdService>>().await;
            } else {
                health.set_not_serving::<PdServer<PdService>>().await;
            }
            serving = Some(now);
        }
        tokio::time::sleep(HEALTH_EVERY).await;
    }
}
