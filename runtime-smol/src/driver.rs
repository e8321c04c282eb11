//! The driver task: the one place inputs reach the node.
//!
//! Peer readers and the store thread send their inputs over one bounded
//! channel; the driver takes what has arrived (waking at once for it, or at
//! the node's next deadline on an `async_io::Timer`), feeds it to the node
//! under its lock, drains the outputs after every input (the core's loop
//! rule) and, with the lock released, hands them on: lease messages and
//! remote store requests to the peer links, its own store requests to the
//! store thread. Nothing it does waits on a peer or on the disk: the link
//! queues and the store queue drop what does not fit.

use std::sync::Arc;
use std::time::Duration;

use futures_lite::future;
use leasetso_core::recovery::Recovery;
use leasetso_core::{Node, PeerFrame};
use leasetso_runtime_common::driver::{self, BATCH, Outs, RELEASE_FLUSH};

use crate::clock::wall_ms;
use crate::server::Shared;
use crate::store::Job;

pub(crate) use leasetso_runtime_common::driver::{Input, Pending};

/// What woke the driver.
enum Wake {
    Input(Input),
    Timer,
    Closed,
}

async fn next_input(rx: &async_channel::Receiver<Input>, wait: Duration) -> Wake {
    future::or(async { rx.recv().await.map_or(Wake::Closed, Wake::Input) }, async {
        async_io::Timer::after(wait).await;
        Wake::Timer
    })
    .await
}

/// Runs the node until [`Input::Stop`], then releases the lease.
pub(crate) async fn run(shared: Arc<Shared>, rx: async_channel::Receiver<Input>, pending: Option<Pending>) {
    if let Some(pending) = pending {
        match recover(&shared, &rx, pending).await {
            Some(node) => *shared.node.slot() = Some(node),
            None => return, // Stopped while waiting for the peers.
        }
    }
    let mut outs = Outs::new(shared.nodes);
    let mut inputs: Vec<Input> = Vec::with_capacity(BATCH);
    let mut next = shared.node.with_node(|n| n.poll_timeout()).flatten();
    let mut stop = false;
    while !stop {
        match next_input(&rx, driver::wait(next, shared.clock.now())).await {
            Wake::Input(input) => inputs.push(input),
            Wake::Timer => {}
            Wake::Closed => stop = true,
        }
        while inputs.len() < BATCH {
            match rx.try_recv() {
                Ok(input) => inputs.push(input),
                Err(_) => break,
            }
        }
        let stepped = shared
            .node
            .with_node(|node| driver::step(node, &mut inputs, &mut outs, shared.clock.now(), wall_ms()));
        let Some(step) = stepped else {
            tracing::error!("node state poisoned by a panic; the driver stops");
            return;
        };
        stop |= step.stop;
        next = step.next;
        dispatch(&shared, &mut outs);
    }
    // Graceful handoff: the Release must reach the peers, so one of them
    // takes over at once instead of waiting for the lease to expire.
    let released = shared.node.with_node(|node| driver::release(node, &mut outs, shared.clock.now()));
    dispatch(&shared, &mut outs);
    if let Some(net) = &shared.net {
        net.flush(RELEASE_FLUSH).await;
    }
    driver::report_released(released);
}

/// Hands the drained outputs on; never waits.
fn dispatch(shared: &Shared, outs: &mut Outs) {
    outs.dispatch(
        shared.node_id,
        |to, frame| {
            if let Some(net) = &shared.net {
                net.send(to, frame);
            }
        },
        |request| {
            !matches!(shared.store.try_send(Job::Local(request)), Err(async_channel::TrySendError::Full(_)))
        },
    );
}

/// Learns from a quorum of peers where this node's ballots must start (the
/// core's [`Recovery`] decides whom to ask when, and the outcome), raises
/// the restart counter and builds the node. `None` if the server stops first.
async fn recover(shared: &Shared, rx: &async_channel::Receiver<Input>, pending: Pending) -> Option<Node> {
    let net = shared.net.as_ref()?;
    let mut recovery = Recovery::new(pending.cfg.id, pending.cfg.nodes, shared.clock.now());
    tracing::info!(
        need = recovery.needed(),
        "data dir has no restart counter (a new node, or a replaced disk): asking a quorum of peers \
         for the ballots they saw from this node before taking part"
    );
    let recovered = loop {
        let now = shared.clock.now();
        while let Some(peer) = recovery.poll_query(now) {
            net.send(peer, PeerFrame::RestartQuery);
        }
        if let Some(recovered) = recovery.outcome() {
            break recovered;
        }
        match next_input(rx, driver::wait(recovery.poll_timeout(), now)).await {
            Wake::Input(Input::RestartInfo { from, highest }) => recovery.handle_info(from, highest),
            Wake::Input(Input::Stop) | Wake::Closed => return None,
            // Lease traffic and replies before the node exists are lost, as
            // the protocol allows.
            Wake::Input(_) | Wake::Timer => {}
        }
    };
    driver::recovered_node(pending, recovered, shared.clock.now())
}
