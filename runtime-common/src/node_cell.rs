//! The server's node slot: the one [`Node`] every connection and the driver
//! share, behind one mutex.
//!
//! Connections take the lock for the length of one `get_ts` or status call
//! (no I/O, no allocation, never across an `.await`); the driver takes it to
//! feed a batch of inputs and drain the outputs. The slot is `None` until the
//! node is built: at once, unless its data dir lost its restart counter and
//! the driver first learns it from the peers. Both runtimes hold this type,
//! so they answer a node not built yet, and a poisoned one, the same way.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use leasetso_core::{GetTsError, Mode, Node, Role, Status, Timestamp, TsRefusal};

use crate::clock::Clock;

/// The shared node slot of one server.
#[derive(Debug)]
pub struct NodeCell {
    node: Mutex<Option<Node>>,
    /// Read under the lock, so a lease check uses a time no earlier than the
    /// moment of handing out.
    clock: Clock,
    /// What a status names before the node exists.
    mode: Mode,
}

impl NodeCell {
    /// A slot holding `node` (`None`: built later by the driver) read with
    /// `clock`; `mode` is the configured mode a status reports until then.
    pub fn new(node: Option<Node>, clock: Clock, mode: Mode) -> Self {
        NodeCell { node: Mutex::new(node), clock, mode }
    }

    /// Runs `f` on the node under its lock; `None` if the node is not built
    /// yet, or a thread panicked while holding it (its state may then be
    /// half-updated, and serving from it could repeat a timestamp).
    pub fn with_node<R>(&self, f: impl FnOnce(&mut Node) -> R) -> Option<R> {
        self.node.lock().ok()?.as_mut().map(f)
    }

    /// The slot itself, for the driver to fill once the node is built. A
    /// poisoned lock is taken anyway: filling an empty slot cannot observe a
    /// half-updated node, and [`NodeCell::with_node`] still refuses to serve
    /// from a poisoned one.
    pub fn slot(&self) -> MutexGuard<'_, Option<Node>> {
        self.node.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// GetTS on the node. `Err(None)`: the node cannot answer (poisoned); a
    /// node not built yet refuses as a follower that knows no leader.
    pub fn get_ts(&self, count: u32) -> Result<Timestamp, Option<GetTsError>> {
        let mut guard = self.node.lock().map_err(|_| None)?;
        match guard.as_mut() {
            // The clock is read under the lock, so the lease check uses a
            // time no earlier than the moment of handing out.
            Some(node) => node.get_ts(count, self.clock.now()).map_err(Some),
            None => Err(Some(GetTsError::NotLeader { leader: None })),
        }
    }

    /// [`NodeCell::get_ts`] as a connection session's backend answers it.
    pub fn serve_ts(&self, count: u32) -> Result<Timestamp, TsRefusal> {
        self.get_ts(count).map_err(|e| e.map_or(TsRefusal::Unavailable, TsRefusal::Node))
    }

    /// Serves a run of pipelined requests of `counts` under one lock of the
    /// node, in order, writing each result to the same index of `results`
    /// and stopping after the first refusal; returns how many it answered.
    /// The clock is read for each count, under the lock, as
    /// [`NodeCell::get_ts`] reads it. One lock per run, not per request, so
    /// that many connections do not pass the lock's cache line around per
    /// command.
    pub fn serve_run(&self, counts: &[u32], results: &mut [Result<Timestamp, TsRefusal>]) -> usize {
        let Ok(mut guard) = self.node.lock() else {
            results[..counts.len().min(1)].fill(Err(TsRefusal::Unavailable));
            return counts.len().min(1);
        };
        let Some(node) = guard.as_mut() else {
            results[..counts.len().min(1)].fill(Err(TsRefusal::Node(GetTsError::NotLeader { leader: None })));
            return counts.len().min(1);
        };
        let mut answered = 0;
        for (&count, result) in counts.iter().zip(results.iter_mut()) {
            *result = node.get_ts(count, self.clock.now()).map_err(TsRefusal::Node);
            answered += 1;
            if result.is_err() {
                break;
            }
        }
        answered
    }

    /// The node's status; a node still learning its restart counter from its
    /// peers reports itself a follower that knows nothing yet. `None` if the
    /// node's state is poisoned.
    pub fn status(&self) -> Option<Status> {
        let guard = self.node.lock().ok()?;
        Some(match guard.as_ref() {
            Some(node) => node.status_at(self.clock.now()),
            None => Status {
                role: Role::Follower,
                leader: None,
                window_end_ms: 0,
                current: Timestamp::ZERO,
                lease: None,
                lease_left: Duration::ZERO,
                quarantine_left: Duration::ZERO,
                fence: None,
                mode: self.mode,
                primary: None,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_slot_refuses_as_a_follower_without_a_leader() {
        let cell = NodeCell::new(None, Clock::new(), Mode::default());
        assert_eq!(cell.get_ts(1), Err(Some(GetTsError::NotLeader { leader: None })));
        assert!(matches!(cell.serve_ts(1), Err(TsRefusal::Node(GetTsError::NotLeader { leader: None }))));
        assert_eq!(cell.with_node(|_| ()), None);
        let status = cell.status().expect("an empty slot is not poisoned");
        assert_eq!(status.role, Role::Follower);
        assert_eq!(status.leader, None);
        assert_eq!(status.mode, Mode::default());
    }
}
