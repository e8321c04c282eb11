//! The driver task: the one place inputs reach the node.
//!
//! Peer readers and the store thread send their inputs over one bounded
//! channel; the task waits for them (or for the node's next deadline, on an
//! `async_io::Timer`) and hands what arrived to the kit's [`DriverLoop`],
//! which feeds the node, drains its outputs and hands them on: lease
//! messages and remote store requests to the peer links, its own store
//! requests to the store thread. Nothing it does waits on a peer or on the
//! disk: the link queues and the store queue drop what does not fit.

use std::sync::Arc;

use futures_lite::future;
use leasetso_runtime_common::driver::{DriverLoop, RELEASE_FLUSH, report_released};
use leasetso_runtime_common::store::Links;

use crate::server::Shared;
use crate::server::store::Job;

pub(crate) use leasetso_runtime_common::driver::{Input, Pending};

/// Runs the node until [`Input::Stop`], then releases the lease.
pub(crate) async fn run(shared: Arc<Shared>, rx: async_channel::Receiver<Input>, pending: Option<Pending>) {
    let mut driver = DriverLoop::new(&shared, pending);
    let peer = |to, frame| {
        if let Some(net) = &shared.net {
            net.send(to, frame);
        }
    };
    let local = |request| {
        !matches!(shared.store.try_send(Job::Local(request)), Err(async_channel::TrySendError::Full(_)))
    };
    loop {
        let wait = driver.wait(shared.clock.now());
        // `None`: the timer fired; `Some(None)`: every sender is gone.
        let next = future::or(async { Some(rx.recv().await.ok()) }, async {
            async_io::Timer::after(wait).await;
            None
        });
        match next.await {
            Some(Some(input)) => driver.push(input),
            Some(None) => driver.closed(),
            None => {}
        }
        while driver.wants_more() {
            match rx.try_recv() {
                Ok(input) => driver.push(input),
                Err(_) => break,
            }
        }
        if !driver.step(&shared, peer, local) {
            break;
        }
    }
    if driver.is_done() {
        return; // Never ran: stopped while recovering, or poisoned.
    }
    let released = driver.release(&shared, peer, local);
    if let Some(net) = &shared.net {
        net.flush(RELEASE_FLUSH).await;
    }
    report_released(released);
}
