//! The store thread: every operation on this node's sled replica, the
//! node's own and those its peers send, runs here, off the executor.
//!
//! Sled is blocking and a save fsyncs. Lease messages (Promise, Accept,
//! Release) must never wait behind an fsync, or a slow disk would let leases
//! lapse; so the driver only queues store work here and goes on, and the
//! reply comes back to it as an input like any other. The thread blocks on
//! the async channel's blocking side; nothing on the executor ever waits for
//! it except through a channel. The jobs and what each answers are
//! `leasetso-runtime-common`'s ([`leasetso_runtime_common::store`]).

use std::sync::Arc;

use leasetso_core::{NodeId, StoreReply};
use leasetso_runtime_common::store::{Done, apply};
use leasetso_sled::SledStore;

use crate::driver::Input;
use crate::peer::PeerNet;

pub(crate) use leasetso_runtime_common::store::STORE_QUEUE;

/// Work for the store thread; an operator's answer goes back on an async
/// channel to the connection task that asked.
pub(crate) type Job = leasetso_runtime_common::store::Job<async_channel::Sender<StoreReply>>;

/// Runs jobs until the queue is closed and drained.
pub(crate) fn run(
    me: NodeId,
    store: SledStore,
    jobs: async_channel::Receiver<Job>,
    driver: async_channel::Sender<Input>,
    net: Option<Arc<PeerNet>>,
) {
    while let Ok(job) = jobs.recv_blocking() {
        match apply(&store, me, job, |from| net.as_ref().map(|net| net.seen(from))) {
            // Gone only once the driver stopped; the rest is drained anyway.
            Done::Driver(input) => {
                let _ = driver.send_blocking(input);
            }
            Done::Peer(to, frame) => {
                if let Some(net) = &net {
                    net.send(to, frame);
                }
            }
            Done::Admin(reply, answer) => {
                let _ = reply.try_send(answer);
            }
            Done::Nothing => {}
        }
    }
}
