//! The store thread's work: the jobs it is queued and what each one answers.
//!
//! Every operation on a node's sled replica, its own and those its peers
//! send, runs on one store thread per server. A save flushes to disk, and
//! lease messages (Promise, Accept, Release) must never wait behind an
//! fsync, or a slow disk would let leases lapse; so the driver only queues
//! work here and goes on, and the answer comes back as an input like any
//! other. The runtimes differ only in their channels (std's `mpsc`, the
//! async channel's blocking side), so the job and its execution are here
//! and each runtime's loop only receives a job, calls [`apply`] and sends
//! the [`Done`] where it says.

use leasetso_core::{Ballot, NodeId, PeerFrame, StoreOp, StoreReject, StoreReply, StoreRequest};
use leasetso_sled::SledStore;

use crate::clock::wall_ms;
use crate::driver::Input;

/// Jobs queued at most; a peer's request beyond it is dropped (its round
/// times out, as if the frame had been lost).
pub const STORE_QUEUE: usize = 1024;

/// Work for the store thread. `R` is where an operator's answer goes (the
/// runtime's channel to the admin connection that asked).
#[derive(Debug)]
pub enum Job<R> {
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
    /// An operator's request on this replica (`primary show`, `primary
    /// clear`), answered to the client connection that asked.
    Admin {
        /// The operation (a registration read or an exact clear).
        op: StoreOp,
        /// Where the answer goes.
        reply: R,
    },
}

/// Where the answer of one job goes.
#[derive(Debug)]
pub enum Done<R> {
    /// To this node's driver (the answer to its own request).
    Driver(Input),
    /// To a peer, over the link to it.
    Peer(NodeId, PeerFrame),
    /// To the admin connection that asked.
    Admin(R, StoreReply),
    /// Nowhere: a restart query this replica cannot answer.
    Nothing,
}

/// Runs one job on `store`, the replica of node `me`. `seen(asker)` is
/// what this node's peer links saw of the asker's ballots (`None` without
/// links: a single node has no peer to ask it).
pub fn apply<R>(
    store: &SledStore,
    me: NodeId,
    job: Job<R>,
    seen: impl FnOnce(NodeId) -> Option<Ballot>,
) -> Done<R> {
    match job {
        Job::Local(request) => {
            let reply = execute(store, me, request.op, wall_ms());
            Done::Driver(Input::StoreReply { replica: me, id: request.id, reply })
        }
        Job::Remote { from, request } => {
            let reply = execute(store, from, request.op, wall_ms());
            Done::Peer(from, PeerFrame::StoreReply { id: request.id, reply })
        }
        Job::Admin { op, reply } => Done::Admin(reply, store.execute(op)),
        Job::RestartQuery { from } => {
            let Some(seen) = seen(from) else { return Done::Nothing };
            // The asker's own fence in this replica bounded with what the
            // links saw. A replica that cannot read its fence does not
            // answer: the asker waits for a quorum of answers.
            match store.restart_info(from, seen) {
                Ok(highest) => Done::Peer(from, PeerFrame::RestartInfo { highest }),
                Err(_) => Done::Nothing,
            }
        }
    }
}

/// Runs a node's operation on the replica, `from` being the node that asked
/// (this one, or a peer as its link named it), after the core's
/// plausibility checks at this replica's wall clock `wall_ms` (B2,
/// `leasetso_core::bounds::check_store_op`): a refused operation changes
/// nothing, is answered `Implausible` and logged here, once per refusal.
/// The stored fence it is checked against is current: this thread runs
/// every operation on the replica, one at a time.
fn execute(store: &SledStore, from: NodeId, op: StoreOp, wall_ms: u64) -> StoreReply {
    let fence = store.fence().map_err(|e| e.to_reject())?;
    if let Err(what) = leasetso_core::bounds::check_store_op(&op, from, fence, wall_ms) {
        tracing::warn!(peer = from.0 + 1, %what, ?op, "store operation refused: implausible value");
        return Err(StoreReject::Implausible);
    }
    store.execute(op)
}

/// A runtime's peer links, as the store thread reaches them.
pub trait Links {
    /// Queues `frame` for peer `to` (dropped if its link's queue is full).
    fn send(&self, to: NodeId, frame: PeerFrame);
    /// The highest ballot of peer `id`'s own these links have seen.
    fn seen(&self, id: NodeId) -> Ballot;
}

/// The store thread's loop: runs every job `jobs` yields, until it ends (its
/// queue closed and drained), and sends each answer where [`apply`] says:
/// to the driver (`driver`; an answer for a driver that has stopped is
/// dropped, and the rest of the queue is still answered), to a peer over
/// `links` (none for a single node), or to the admin connection that asked
/// (`admin`).
pub fn run<R>(
    me: NodeId,
    store: &SledStore,
    jobs: impl Iterator<Item = Job<R>>,
    links: Option<&impl Links>,
    mut driver: impl FnMut(Input),
    mut admin: impl FnMut(R, StoreReply),
) {
    for job in jobs {
        match apply(store, me, job, |from| links.map(|l| l.seen(from))) {
            Done::Driver(input) => driver(input),
            Done::Peer(to, frame) => links.iter().for_each(|l| l.send(to, frame)),
            Done::Admin(reply, answer) => admin(reply, answer),
            Done::Nothing => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_job_answers_where_it_came_from() {
        let dir = tempfile::TempDir::new().unwrap();
        let store = SledStore::open(dir.path(), 7).unwrap();
        let me = NodeId(0);
        let load = StoreOp::Load { fence: Ballot::new(1, 1, me), check_primary: false };
        let read = StoreRequest { id: 9, op: load };
        match apply::<()>(&store, me, Job::Local(read), |_| None) {
            Done::Driver(Input::StoreReply { replica, id: 9, .. }) => assert_eq!(replica, me),
            other => panic!("{other:?}"),
        }
        let read = StoreRequest { id: 4, op: load };
        match apply::<()>(&store, me, Job::Remote { from: NodeId(2), request: read }, |_| None) {
            Done::Peer(NodeId(2), PeerFrame::StoreReply { id: 4, .. }) => {}
            other => panic!("{other:?}"),
        }
        // Without links there is no one to answer a restart query; the
        // fence stored above is node 0's, which says nothing about node 1.
        assert!(matches!(
            apply::<()>(&store, me, Job::RestartQuery { from: NodeId(1) }, |_| None),
            Done::Nothing
        ));
        let seen = Ballot::new(5, 2, NodeId(1));
        match apply::<()>(&store, me, Job::RestartQuery { from: NodeId(1) }, |_| Some(seen)) {
            Done::Peer(NodeId(1), PeerFrame::RestartInfo { highest }) => assert_eq!(highest, seen),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn implausible_operations_are_refused_and_change_nothing() {
        let dir = tempfile::TempDir::new().unwrap();
        let store = SledStore::open(dir.path(), 7).unwrap();
        let me = NodeId(0);
        let peer = NodeId(2);
        let wall = wall_ms();
        let century = 100 * 365 * 86_400_000;
        let forged = [
            // A window a century ahead of this replica's wall clock.
            StoreOp::Save {
                window_end_ms: wall + century,
                fence: Ballot::new(1, 1, peer),
                check_primary: false,
            },
            // A fence at the top of the counter space, and another node's.
            StoreOp::Load { fence: Ballot::new(u64::MAX, 1, peer), check_primary: false },
            StoreOp::Load { fence: Ballot::new(1, 1, NodeId(1)), check_primary: false },
            // A registration of a node outside the set, or of another node.
            StoreOp::RegisterPrimary { id: NodeId(0xFFFF), tag: Ballot::new(0, 1, NodeId(0xFFFF)) },
            StoreOp::RegisterPrimary { id: NodeId(1), tag: Ballot::new(0, 1, NodeId(1)) },
        ];
        for op in forged {
            let request = StoreRequest { id: 3, op };
            match apply::<()>(&store, me, Job::Remote { from: peer, request }, |_| None) {
                Done::Peer(_, PeerFrame::StoreReply { reply, .. }) => {
                    assert_eq!(reply, Err(StoreReject::Implausible), "{op:?}")
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!((store.window_end_ms().unwrap(), store.fence().unwrap()), (0, Ballot::ZERO));
        assert_eq!(store.primary().unwrap(), None);
        // The same peer's plausible operations go through.
        let ok = [
            StoreOp::Save {
                window_end_ms: wall + 8_000,
                fence: Ballot::new(4, 1, peer),
                check_primary: false,
            },
            StoreOp::RegisterPrimary { id: peer, tag: Ballot::new(0, 1, peer) },
        ];
        for op in ok {
            let request = StoreRequest { id: 4, op };
            match apply::<()>(&store, me, Job::Remote { from: peer, request }, |_| None) {
                Done::Peer(_, PeerFrame::StoreReply { reply, .. }) => {
                    assert!(reply.is_ok(), "{op:?}: {reply:?}")
                }
                other => panic!("{other:?}"),
            }
        }
    }
}
