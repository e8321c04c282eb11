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
use leasetso_core::{
    Ballot, Event, LeaseMsg, Message, Node, NodeConfig, NodeId, Output, PeerFrame, StoreReply, StoreRequest,
};
use leasetso_sled::SledStore;

use crate::clock::wall_ms;
use crate::server::Shared;
use crate::store::Job;

/// The longest the driver sleeps without looking at the clock again: its
/// timer runs on a clock that may stop during a suspend while the node's
/// clock does not.
const MAX_DRIVER_SLEEP: Duration = Duration::from_secs(1);
/// Inputs taken per lock of the node, at most.
const BATCH: usize = 256;
/// How long a shutdown waits for the Release to reach the peers.
const RELEASE_FLUSH: Duration = Duration::from_millis(500);

/// What reaches the driver.
pub(crate) enum Input {
    /// A lease message from a peer (its id is the link's, from the handshake).
    Peer {
        /// The sender.
        from: NodeId,
        /// The message.
        msg: Message,
    },
    /// A replica's answer to one of this node's store requests.
    StoreReply {
        /// The replica.
        replica: NodeId,
        /// The request's id.
        id: u64,
        /// The answer.
        reply: StoreReply,
    },
    /// A peer's answer to this node's restart query.
    RestartInfo {
        /// The peer.
        from: NodeId,
        /// The highest ballot of this node's it has seen.
        highest: Ballot,
    },
    /// The server stops: release the lease and exit.
    Stop,
}

/// A node still to be built: its data dir lost its restart counter.
pub(crate) struct Pending {
    pub(crate) cfg: NodeConfig,
    pub(crate) store: SledStore,
}

/// Outputs drained from the node, handed on once its lock is released.
struct Outs {
    sends: Vec<(NodeId, Message)>,
    stores: Vec<(NodeId, StoreRequest)>,
    events: Vec<Event>,
}

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
            Some(node) => *shared.node_slot() = Some(node),
            None => return, // Stopped while waiting for the peers.
        }
    }
    let cap = 8 * usize::from(shared.nodes) + 16;
    let mut outs = Outs {
        sends: Vec::with_capacity(cap),
        stores: Vec::with_capacity(cap),
        events: Vec::with_capacity(16),
    };
    let mut inputs: Vec<Input> = Vec::with_capacity(BATCH);
    let mut next = shared.with_node(|n| n.poll_timeout()).flatten();
    let mut stop = false;
    while !stop {
        let now = shared.clock.now();
        let wait = next.map_or(MAX_DRIVER_SLEEP, |d| d.saturating_since(now).min(MAX_DRIVER_SLEEP));
        match next_input(&rx, wait).await {
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
        let stepped = shared.with_node(|node| {
            let now = shared.clock.now();
            let wall = wall_ms();
            for input in inputs.drain(..) {
                match input {
                    Input::Peer { from, msg } => {
                        if let LeaseMsg::Release { ballot } = msg.msg {
                            tracing::debug!(peer = from.0 + 1, %ballot, "the owner released its lease");
                        }
                        node.handle_message(from, msg, now)
                    }
                    Input::StoreReply { replica, id, reply } => {
                        node.handle_store_reply(replica, id, reply, now, wall)
                    }
                    Input::RestartInfo { .. } => {} // Late answers: the node is built.
                    Input::Stop => stop = true,
                }
                drain(node, &mut outs);
            }
            if node.poll_timeout().is_some_and(|t| t <= now) {
                node.handle_timeout(now, wall);
                drain(node, &mut outs);
            }
            node.poll_timeout()
        });
        let Some(poll) = stepped else {
            tracing::error!("node state poisoned by a panic; the driver stops");
            return;
        };
        next = poll;
        dispatch(&shared, &mut outs);
    }
    // Graceful handoff: give the lease up and make sure the Release reaches
    // the peers, so one of them takes over at once instead of waiting for
    // the lease to expire.
    let released = shared.with_node(|node| {
        let leading = node.status().fence.is_some();
        node.release(shared.clock.now(), false);
        drain(node, &mut outs);
        leading
    });
    // The step-down reported here is the release asked for, not a failure.
    outs.events.clear();
    dispatch(&shared, &mut outs);
    if let Some(net) = &shared.net {
        net.flush(RELEASE_FLUSH).await;
    }
    if released == Some(true) {
        tracing::info!("lease released");
    } else {
        tracing::debug!("lease released (was not leading)");
    }
}

/// Hands the drained outputs on; never waits.
fn dispatch(shared: &Shared, outs: &mut Outs) {
    for (to, msg) in outs.sends.drain(..) {
        if let Some(net) = &shared.net {
            net.send(to, PeerFrame::Lease(msg));
        }
    }
    for (replica, request) in outs.stores.drain(..) {
        if replica == shared.node_id {
            if let Err(async_channel::TrySendError::Full(_)) = shared.store.try_send(Job::Local(request)) {
                // The round times out and the node steps down: the store is
                // far behind, which is what that is for.
                tracing::warn!("store queue full; request dropped");
            }
        } else if let Some(net) = &shared.net {
            net.send(replica, PeerFrame::Store(request));
        }
    }
    for event in outs.events.drain(..) {
        report(event);
    }
}

/// Learns from a quorum of peers where this node's ballots must start (the
/// core's [`Recovery`] decides whom to ask when, and the outcome), raises
/// the restart counter and builds the node. `None` if the server stops first.
async fn recover(shared: &Shared, rx: &async_channel::Receiver<Input>, pending: Pending) -> Option<Node> {
    let Pending { cfg, store } = pending;
    let net = shared.net.as_ref()?;
    let mut recovery = Recovery::new(cfg.id, cfg.nodes, shared.clock.now());
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
        let wait = recovery.poll_timeout().map_or(MAX_DRIVER_SLEEP, |t| t.saturating_since(now));
        match next_input(rx, wait.min(MAX_DRIVER_SLEEP)).await {
            Wake::Input(Input::RestartInfo { from, highest }) => recovery.handle_info(from, highest),
            Wake::Input(Input::Stop) | Wake::Closed => return None,
            // Lease traffic and replies before the node exists are lost, as
            // the protocol allows.
            Wake::Input(_) | Wake::Timer => {}
        }
    };
    // A blocking store call, but a rare one, made before the node serves.
    let restart = match store.raise_restart(recovered.restart) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot store the restart counter; the node does not start");
            return None;
        }
    };
    tracing::info!(restart, catch_up = %recovered.catch_up, "restart counter recovered from the peers");
    let mut node = match Node::new(cfg, restart, shared.clock.now()) {
        Ok(node) => node,
        Err(e) => {
            tracing::error!(error = %e, "invalid node configuration");
            return None;
        }
    };
    node.catch_up(recovered.catch_up);
    if let Ok(fence) = store.fence() {
        node.catch_up(fence);
    }
    Some(node)
}

/// Drains the node's outputs.
fn drain(node: &mut Node, outs: &mut Outs) {
    while let Some(output) = node.poll_output() {
        match output {
            Output::Send { to, msg } => outs.sends.push((to, msg)),
            Output::Store { replica, request } => outs.stores.push((replica, request)),
            Output::Event(event) => outs.events.push(event),
        }
    }
}

fn report(event: Event) {
    match event {
        Event::Leading { fence } => tracing::info!(%fence, "lease acquired; syncing the window"),
        Event::Serving { window_end_ms } => tracing::info!(window_end_ms, "serving timestamps"),
        Event::WindowExtended { window_end_ms } => tracing::trace!(window_end_ms, "window extended"),
        Event::SteppedDown { reason } => tracing::warn!(?reason, "stopped serving"),
        Event::JetLag { lag_ms } => tracing::warn!(lag_ms, "wall clock far ahead of the timestamps"),
        Event::Yielded { primary } => tracing::warn!(
            primary = primary.0 + 1,
            "a primary is registered: yielded (stopped serving, released the lease, not campaigning while it stands)"
        ),
        Event::Resumed => tracing::info!("no primary registered on a quorum: campaigning again"),
        Event::Registered { tag } => tracing::info!(%tag, "registered as primary on a quorum; campaigning"),
    }
}
