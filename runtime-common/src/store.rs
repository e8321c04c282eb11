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

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use leasetso_core::{Ballot, NodeId, PeerFrame, StoreHealth, StoreOp, StoreReject, StoreReply, StoreRequest};
use leasetso_sled::{SledStore, StoreError};

use crate::clock::wall_ms;
use crate::driver::Input;
use crate::quiet;
use crate::stats::StoreStats;

/// How long a failing replica waits between reopens (H4).
pub const REOPEN_EVERY: Duration = Duration::from_secs(1);

/// The health of this node's replica and what it did, shared by the store
/// thread (which keeps them) and the connections and metrics (which report
/// them).
#[derive(Debug, Default)]
pub struct HealthCell {
    health: AtomicU8,
    /// Operations by kind and result, and their durations.
    pub stats: StoreStats,
}

impl HealthCell {
    /// The health now.
    pub fn get(&self) -> StoreHealth {
        StoreHealth::from_u8(self.health.load(Ordering::Relaxed)).unwrap_or(StoreHealth::Io)
    }

    fn set(&self, health: StoreHealth) {
        self.health.store(health as u8, Ordering::Relaxed);
    }
}

/// This node's replica, with its health (rule H4, ARCHITECTURE.md): an
/// operation that fails for the disk's sake (not a contract refusal) marks
/// the replica failing, which `status` shows, and is logged once per change
/// of state; every later operation reopens the replica's database (at most
/// once per [`REOPEN_EVERY`]), because sled stays failed after an I/O
/// error until it is opened again. The first operation that succeeds marks
/// it fine again: a full disk heals by itself once space is freed, with no
/// restart. Meanwhile its operations fail (`StoreReject::Failed`: state
/// unknown), so the cluster serves on the other replicas' quorum.
#[derive(Debug)]
pub struct Replica {
    /// The open database; `None` after a reopen failed.
    store: Option<SledStore>,
    dir: PathBuf,
    cluster_id: u64,
    health: Arc<HealthCell>,
    /// When a failing replica may be reopened next.
    reopen_at: Option<Instant>,
}

impl Replica {
    /// `store`, of cluster `cluster_id`, reporting its health in `health`.
    pub fn new(store: SledStore, cluster_id: u64, health: Arc<HealthCell>) -> Self {
        health.set(StoreHealth::Ok);
        let dir = store.dir().to_path_buf();
        Replica { store: Some(store), dir, cluster_id, health, reopen_at: None }
    }

    /// Runs `op`, keeping the health and the statistics.
    pub fn execute(&mut self, op: StoreOp) -> StoreReply {
        let began = Instant::now();
        let reply = self.run(op);
        let kind = match op {
            StoreOp::Load { .. } => 0,
            StoreOp::Save { .. } => 1,
            StoreOp::RegisterPrimary { .. } => 2,
            StoreOp::ClearPrimary { .. } => 3,
            StoreOp::ReadPrimary => 4,
        };
        let result = match reply {
            Ok(_) => 0,
            Err(StoreReject::Failed) => 2,
            Err(_) => 1,
        };
        self.health.stats.record(kind, result, began.elapsed());
        reply
    }

    fn run(&mut self, op: StoreOp) -> StoreReply {
        let result = match self.store() {
            Some(store) => store.execute_raw(op),
            None => return Err(StoreReject::Failed),
        };
        match result {
            Ok(ok) => {
                self.healthy();
                Ok(ok)
            }
            Err(e) => {
                match e.health() {
                    // A contract refusal: the replica works, it said no.
                    None => self.healthy(),
                    Some(health) => self.failed(health, &e),
                }
                Err(e.to_reject())
            }
        }
    }

    /// The answer to a peer's restart query (see [`SledStore::restart_info`]);
    /// `None` if the replica cannot say.
    pub fn restart_info(&mut self, asker: NodeId, seen: Ballot) -> Option<Ballot> {
        self.store()?.restart_info(asker, seen).ok()
    }

    /// The health now.
    pub fn health(&self) -> StoreHealth {
        self.health.get()
    }

    /// The stored fence, for the plausibility check of an operation (B2).
    fn fence(&mut self) -> Result<Ballot, StoreReject> {
        self.store().ok_or(StoreReject::Failed)?.fence().map_err(|e| e.to_reject())
    }

    /// The open database, for tests that look inside.
    #[cfg(test)]
    fn sled(&self) -> &SledStore {
        self.store.as_ref().expect("open")
    }

    /// The database to run an operation on: the open one, or, for a failing
    /// replica whose pause is over, a fresh open of its directory.
    fn store(&mut self) -> Option<&SledStore> {
        let now = Instant::now();
        if self.reopen_at.is_some_and(|at| now >= at) {
            self.reopen_at = Some(now + REOPEN_EVERY);
            // The old handle goes first: it holds the directory's lock.
            self.store = None;
            match SledStore::open(&self.dir, self.cluster_id) {
                Ok(store) => self.store = Some(store),
                Err(e) => {
                    crate::warn_quiet!(quiet::STORE_FAILED, error = %e, "store replica does not reopen yet")
                }
            }
        }
        self.store.as_ref()
    }

    /// An operation went through: a failing replica has healed.
    fn healthy(&mut self) {
        if self.reopen_at.take().is_some() {
            self.health.set(StoreHealth::Ok);
            tracing::info!(dir = %self.dir.display(), "store replica healed: operations succeed again");
        }
    }

    /// An operation failed for the disk's sake.
    fn failed(&mut self, health: StoreHealth, error: &StoreError) {
        if self.reopen_at.is_none() {
            self.reopen_at = Some(Instant::now() + REOPEN_EVERY);
            self.health.set(health);
            tracing::error!(
                dir = %self.dir.display(),
                %error,
                "store replica failed ({health}); reopening it every {REOPEN_EVERY:?} until an operation succeeds"
            );
        } else {
            crate::warn_quiet!(quiet::STORE_FAILED, %error, "store replica still failing");
        }
    }
}

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
    store: &mut Replica,
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
                Some(highest) => Done::Peer(from, PeerFrame::RestartInfo { highest }),
                None => Done::Nothing,
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
fn execute(store: &mut Replica, from: NodeId, op: StoreOp, wall_ms: u64) -> StoreReply {
    let fence = store.fence()?;
    if let Err(what) = leasetso_core::bounds::check_store_op(&op, from, fence, wall_ms) {
        crate::warn_quiet!(
            quiet::IMPLAUSIBLE,
            peer = from.0 + 1,
            %what,
            ?op,
            "store operation refused: implausible value"
        );
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
    mut store: Replica,
    jobs: impl Iterator<Item = Job<R>>,
    links: Option<&impl Links>,
    mut driver: impl FnMut(Input),
    mut admin: impl FnMut(R, StoreReply),
) {
    for job in jobs {
        match apply(&mut store, me, job, |from| links.map(|l| l.seen(from))) {
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
        let mut store = Replica::new(SledStore::open(dir.path(), 7).unwrap(), 7, Arc::default());
        let me = NodeId(0);
        let load = StoreOp::Load { fence: Ballot::new(1, 1, me), check_primary: false };
        let read = StoreRequest { id: 9, op: load };
        match apply::<()>(&mut store, me, Job::Local(read), |_| None) {
            Done::Driver(Input::StoreReply { replica, id: 9, .. }) => assert_eq!(replica, me),
            other => panic!("{other:?}"),
        }
        let read = StoreRequest { id: 4, op: load };
        match apply::<()>(&mut store, me, Job::Remote { from: NodeId(2), request: read }, |_| None) {
            Done::Peer(NodeId(2), PeerFrame::StoreReply { id: 4, .. }) => {}
            other => panic!("{other:?}"),
        }
        // Without links there is no one to answer a restart query; the
        // fence stored above is node 0's, which says nothing about node 1.
        assert!(matches!(
            apply::<()>(&mut store, me, Job::RestartQuery { from: NodeId(1) }, |_| None),
            Done::Nothing
        ));
        let seen = Ballot::new(5, 2, NodeId(1));
        match apply::<()>(&mut store, me, Job::RestartQuery { from: NodeId(1) }, |_| Some(seen)) {
            Done::Peer(NodeId(1), PeerFrame::RestartInfo { highest }) => assert_eq!(highest, seen),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn implausible_operations_are_refused_and_change_nothing() {
        let dir = tempfile::TempDir::new().unwrap();
        let mut store = Replica::new(SledStore::open(dir.path(), 7).unwrap(), 7, Arc::default());
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
            match apply::<()>(&mut store, me, Job::Remote { from: peer, request }, |_| None) {
                Done::Peer(_, PeerFrame::StoreReply { reply, .. }) => {
                    assert_eq!(reply, Err(StoreReject::Implausible), "{op:?}")
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!((store.sled().window_end_ms().unwrap(), store.sled().fence().unwrap()), (0, Ballot::ZERO));
        assert_eq!(store.sled().primary().unwrap(), None);
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
            match apply::<()>(&mut store, me, Job::Remote { from: peer, request }, |_| None) {
                Done::Peer(_, PeerFrame::StoreReply { reply, .. }) => {
                    assert!(reply.is_ok(), "{op:?}: {reply:?}")
                }
                other => panic!("{other:?}"),
            }
        }
    }
}
