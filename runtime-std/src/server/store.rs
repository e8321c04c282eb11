//! The store thread: every operation on this node's sled replica, the
//! node's own and those its peers send, runs here.
//!
//! A save flushes to disk. Lease messages (Promise, Accept, Release) must
//! never wait behind an fsync, or a slow disk would let leases lapse; so the
//! driver only queues store work here and goes on, and the reply comes back
//! as an input like any other. The jobs and what each answers are
//! `leasetso-runtime-common`'s ([`leasetso_runtime_common::store`]); this is the loop on
//! std's channels.

use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, SyncSender};

use leasetso_core::{NodeId, StoreReply};
use leasetso_runtime_common::store;

use crate::server::driver::Input;
use crate::server::peer::PeerNet;

pub(crate) use leasetso_runtime_common::store::STORE_QUEUE;

/// Where an operator's answer goes: the connection that asked.
type Reply = mpsc::Sender<StoreReply>;

/// Work for the store thread.
pub(crate) type Job = leasetso_runtime_common::store::Job<Reply>;

/// Runs jobs until every sender is gone ([`leasetso_runtime_common::store::run`]).
pub(crate) fn run(
    me: NodeId,
    store: store::Replica,
    jobs: Receiver<Job>,
    driver: SyncSender<Input>,
    net: Option<Arc<PeerNet>>,
) {
    let admin = |reply: Reply, answer| _ = reply.send(answer);
    store::run(me, store, jobs.into_iter(), net.as_deref(), |input| _ = driver.send(input), admin);
}
