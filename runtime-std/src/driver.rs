//! The driver thread: the one place inputs reach the node.
//!
//! Peer readers and the store thread send their inputs over one bounded
//! channel; the driver takes what has arrived (waking at once for it, or at
//! the node's next deadline), feeds it to the node under its lock, drains the
//! outputs after every input (the core's loop rule) and, with the lock
//! released, hands them on: lease messages and remote store requests to the
//! peer links, its own store requests to the store thread. Nothing it does
//! waits on a peer or on the disk: links and the store queue drop what does
//! not fit.
//!
//! A node whose data dir lost its restart counter (a new node, or a replaced
//! disk) starts here too, before it may campaign or accept: it learns from a
//! quorum of peers the highest ballot they saw from its id and starts above
//! it, so no ballot of its lost incarnation is ever reused. The decisions
//! (whom to ask when, what counts as a quorum, where to start) are the
//! core's [`Recovery`]; the driver sends its queries and builds the node.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant as StdInstant};

use leasetso_core::{Node, PeerFrame, Recovery};
use leasetso_runtime_common::driver::{self, BATCH, Outs, RELEASE_FLUSH};

use crate::clock::wall_ms;
use crate::peer::PeerNet;
use crate::server::Shared;
use crate::store::Job;

/// How often a node still waiting for its peers' restart answers says so.
const RECOVERY_LOG_EVERY: Duration = Duration::from_secs(5);

pub(crate) use leasetso_runtime_common::driver::{Input, Pending};

pub(crate) struct Driver {
    pub(crate) shared: Arc<Shared>,
    pub(crate) rx: Receiver<Input>,
    pub(crate) store: SyncSender<Job>,
    pub(crate) net: Option<Arc<PeerNet>>,
    pub(crate) pending: Option<Pending>,
}

impl Driver {
    pub(crate) fn run(mut self) {
        if let Some(pending) = self.pending.take() {
            match self.recover(pending) {
                Some(node) => *self.shared.node.slot() = Some(node),
                None => return, // Stopped while waiting for the peers.
            }
        }
        let mut outs = Outs::new(self.shared.nodes);
        let mut inputs: Vec<Input> = Vec::with_capacity(BATCH);
        let mut next = self.shared.node.with_node(|n| n.poll_timeout()).flatten();
        let mut stop = false;
        while !stop {
            match self.rx.recv_timeout(driver::wait(next, self.shared.clock.now())) {
                Ok(input) => inputs.push(input),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => stop = true,
            }
            while inputs.len() < BATCH {
                match self.rx.try_recv() {
                    Ok(input) => inputs.push(input),
                    Err(_) => break,
                }
            }
            let stepped = self.shared.node.with_node(|node| {
                driver::step(node, &mut inputs, &mut outs, self.shared.clock.now(), wall_ms())
            });
            let Some(step) = stepped else {
                tracing::error!("node state poisoned by a panic; the driver stops");
                return;
            };
            stop |= step.stop;
            next = step.next;
            self.dispatch(&mut outs);
        }
        // Graceful handoff: the Release must reach the peers, so one of them
        // takes over at once instead of waiting for the lease to expire.
        let released =
            self.shared.node.with_node(|node| driver::release(node, &mut outs, self.shared.clock.now()));
        self.dispatch(&mut outs);
        if let Some(net) = &self.net {
            net.flush(RELEASE_FLUSH);
        }
        driver::report_released(released);
    }

    /// Hands the drained outputs on; never blocks.
    fn dispatch(&self, outs: &mut Outs) {
        outs.dispatch(
            self.shared.node_id,
            |to, frame| {
                if let Some(net) = &self.net {
                    net.send(to, frame);
                }
            },
            |request| !matches!(self.store.try_send(Job::Local(request)), Err(TrySendError::Full(_))),
        );
    }

    /// Runs the core's [`Recovery`]: learns from a quorum of peers the
    /// highest ballot of this node's id they have seen, raises the restart
    /// counter above it and builds the node. `None` if the server stops
    /// first.
    fn recover(&self, pending: Pending) -> Option<Node> {
        let net = self.net.as_ref()?;
        let mut recovery = Recovery::new(pending.cfg.id, pending.cfg.nodes, self.shared.clock.now());
        let need = recovery.needed();
        tracing::info!(
            need,
            "data dir has no restart counter (a new node, or a replaced disk): asking a quorum of peers \
             for the ballots they saw from this node before taking part"
        );
        let mut next_log = StdInstant::now() + RECOVERY_LOG_EVERY;
        let recovered = loop {
            if let Some(recovered) = recovery.outcome() {
                break recovered;
            }
            let now = self.shared.clock.now();
            while let Some(peer) = recovery.poll_query(now) {
                net.send(peer, PeerFrame::RestartQuery);
            }
            if StdInstant::now() >= next_log {
                tracing::warn!(
                    answered = recovery.answered(),
                    need,
                    "still waiting for peers to answer the restart query"
                );
                next_log = StdInstant::now() + RECOVERY_LOG_EVERY;
            }
            match self.rx.recv_timeout(driver::wait(recovery.poll_timeout(), now)) {
                Ok(Input::RestartInfo { from, highest }) => recovery.handle_info(from, highest),
                Ok(Input::Stop) | Err(RecvTimeoutError::Disconnected) => return None,
                // Lease traffic and replies before the node exists are lost,
                // as the protocol allows.
                Ok(_) | Err(RecvTimeoutError::Timeout) => {}
            }
        };
        driver::recovered_node(pending, recovered, self.shared.clock.now())
    }
}
