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
use leasetso_runtime_common::store::{Done, apply};
use leasetso_sled::SledStore;

use crate::driver::Input;
use crate::peer::PeerNet;

pub(crate) use leasetso_runtime_common::store::STORE_QUEUE;

/// Work for the store thread; an operator's answer goes back on an `mpsc`
/// channel to the connection thread that asked.
pub(crate) type Job = leasetso_runtime_common::store::Job<mpsc::Sender<StoreReply>>;

/// Runs jobs until every sender is gone.
pub(crate) fn run(
    me: NodeId,
    store: SledStore,
    jobs: Receiver<Job>,
    driver: SyncSender<Input>,
    net: Option<Arc<PeerNet>>,
) {
    for job in jobs {
        match apply(&store, me, job, |from| net.as_ref().map(|net| net.seen(from))) {
            Done::Driver(input) => {
                if driver.send(input).is_err() {
                    break;
                }
            }
            Done::Peer(to, frame) => {
                if let Some(net) = &net {
                    net.send(to, frame);
                }
            }
            Done::Admin(reply, answer) => {
                let _ = reply.send(answer);
            }
            Done::Nothing => {}
        }
    }
}
