//! The driver thread: the one place inputs reach the node.
//!
//! Peer readers and the store thread send their inputs over one bounded
//! channel; the thread waits for them (or for the node's next deadline) and
//! hands what arrived to the kit's [`DriverLoop`], which feeds the node,
//! drains its outputs and hands them on: lease messages and remote store
//! requests to the peer links, its own store requests to the store thread.
//! Nothing it does waits on a peer or on the disk: links and the store
//! queue drop what does not fit.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};

use leasetso_runtime_common::driver::{DriverLoop, RELEASE_FLUSH, report_released};
use leasetso_runtime_common::store::Links;

use crate::server::Shared;
use crate::server::peer::PeerNet;
use crate::server::store::Job;

pub(crate) use leasetso_runtime_common::driver::{Input, Pending};

pub(crate) struct Driver {
    pub(crate) shared: Arc<Shared>,
    pub(crate) rx: Receiver<Input>,
    pub(crate) store: SyncSender<Job>,
    pub(crate) net: Option<Arc<PeerNet>>,
    pub(crate) pending: Option<Pending>,
}

impl Driver {
    /// Runs the node until [`Input::Stop`], then releases the lease.
    pub(crate) fn run(mut self) {
        let mut driver = DriverLoop::new(&self.shared, self.pending.take());
        let peer = |to, frame| {
            if let Some(net) = &self.net {
                net.send(to, frame);
            }
        };
        let local = |request| !matches!(self.store.try_send(Job::Local(request)), Err(TrySendError::Full(_)));
        loop {
            match self.rx.recv_timeout(driver.wait(self.shared.clock.now())) {
                Ok(input) => driver.push(input),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => driver.closed(),
            }
            while driver.wants_more() {
                match self.rx.try_recv() {
                    Ok(input) => driver.push(input),
                    Err(_) => break,
                }
            }
            if !driver.step(&self.shared, peer, local) {
                break;
            }
        }
        if driver.is_done() {
            return; // Never ran: stopped while recovering, or poisoned.
        }
        let released = driver.release(&self.shared, peer, local);
        if let Some(net) = &self.net {
            net.flush(RELEASE_FLUSH);
        }
        report_released(released);
    }
}
