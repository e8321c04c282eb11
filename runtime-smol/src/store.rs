//! The store thread: every operation on this node's sled replica, the
//! node's own and those its peers send, runs here, off the executor.
//!
//! Sled is blocking and a save fsyncs. Lease messages (Promise, Accept,
//! Release) must never wait behind an fsync, or a slow disk would let leases
//! lapse; so the driver only queues store work here and goes on, and the
//! reply comes back to it as an input like any other. The thread blocks on
//! the async channel's blocking side; nothing on the executor ever waits for
//! it except through a channel.

use std::sync::Arc;

use leasetso_core::{NodeId, PeerFrame, StoreOp, StoreReply, StoreRequest};
use leasetso_sled::SledStore;

use crate::driver::Input;
use crate::peer::PeerNet;

/// Jobs queued at most; a peer's request beyond it is dropped (its round
/// times out, as if the frame had been lost).
pub(crate) const STORE_QUEUE: usize = 1024;

/// Work for the store thread.
pub(crate) enum Job {
    /// This node's own request for its own replica.
    Local(StoreRequest),
    /// A peer's request for this node's replica; the reply goes back to it.
    Remote {
        /// The peer, as its link's handshake named it.
        from: NodeId,
        /// The operation.
        request: StoreRequest,
    },
    /// A peer that lost its restart counter asks for the highest ballot of
    /// its own seen here.
    RestartQuery {
        /// The asking peer.
        from: NodeId,
    },
    /// An operator's request on this replica, answered to the connection that asked.
    Admin {
        /// The operation (a registration read or an exact clear).
        op: StoreOp,
        /// Where the answer goes.
        reply: async_channel::Sender<StoreReply>,
    },
}

/// Runs jobs until the queue is closed and drained.
pub(crate) fn run(
    me: NodeId,
    store: SledStore,
    jobs: async_channel::Receiver<Job>,
    driver: async_channel::Sender<Input>,
    net: Option<Arc<PeerNet>>,
) {
    while let Ok(job) = jobs.recv_blocking() {
        match job {
            Job::Local(request) => {
                let reply = store.execute(request.op);
                // Gone only once the driver stopped; the rest is drained anyway.
                let _ = driver.send_blocking(Input::StoreReply { replica: me, id: request.id, reply });
            }
            Job::Remote { from, request } => {
                let reply = store.execute(request.op);
                if let Some(net) = &net {
                    net.send(from, PeerFrame::StoreReply { id: request.id, reply });
                }
            }
            Job::Admin { op, reply } => {
                let _ = reply.try_send(store.execute(op));
            }
            Job::RestartQuery { from } => {
                let Some(net) = &net else { continue };
                // A replica that cannot read its fence does not answer.
                let Ok(highest) = store.restart_info(from, net.seen(from)) else { continue };
                net.send(from, PeerFrame::RestartInfo { highest });
            }
        }
    }
}
