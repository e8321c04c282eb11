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
use leasetso_runtime_common::store;

use crate::server::driver::Input;
use crate::server::peer::PeerNet;

pub(crate) use leasetso_runtime_common::store::STORE_QUEUE;

/// Where an operator's answer goes: the connection that asked.
type Reply = async_channel::Sender<StoreReply>;

/// Work for the store thread.
pub(crate) type Job = leasetso_runtime_common::store::Job<Reply>;

/// Runs jobs until the queue is closed and drained
/// ([`leasetso_runtime_common::store::run`]).
pub(crate) fn run(
    me: NodeId,
    store: store::Replica,
    jobs: async_channel::Receiver<Job>,
    driver: async_channel::Sender<Input>,
    net: Option<Arc<PeerNet>>,
) {
    let admin = |reply: Reply, answer| _ = reply.try_send(answer);
    store::run(
        me,
        store,
        std::iter::from_fn(|| jobs.recv_blocking().ok()),
        net.as_deref(),
        |input| _ = driver.send_blocking(input),
        admin,
    );
}
