//! Peer-frame routing: where each frame an incoming link reports goes.
//!
//! The link session (`leasetso_core::link`) has checked the handshake and
//! tags every frame with the id the handshake named, never with anything a
//! frame says; this decides what the runtime does with it. Both runtimes
//! follow [`route`] and only move the result along their own channels:
//! * lease messages and replies to this node's own requests go to the
//!   driver (a lease message is first recorded in the directory, for a peer
//!   that later asks which ballots of its own were seen);
//! * store requests and restart queries go to the store thread, whose queue
//!   may drop them when full (the asker's round times out, as if the frame
//!   had been lost);
//! * a handshake frame after the handshake is a protocol violation the
//!   session never reports; should one arrive anyway, the link is closed,
//!   not ignored, so a peer out of step redials and says Hello again.

use leasetso_core::{NodeId, PeerFrame};

use crate::directory::PeerDirectory;
use crate::driver::Input;
use crate::store::Job;

/// What to do with one frame of a peer.
#[derive(Debug)]
pub enum Route<R> {
    /// Hand it to the driver; wait for room (the driver's queue is the
    /// back-pressure that slows a flooding peer through TCP).
    Driver(Input),
    /// Queue it for the store thread without waiting; drop it if full.
    Store(Job<R>),
    /// Close the link.
    Close,
}

/// Routes `frame`, which the link's session reported from peer `from`.
pub fn route<R>(dir: &PeerDirectory, from: NodeId, frame: PeerFrame) -> Route<R> {
    match frame {
        PeerFrame::Lease(msg) => {
            dir.observe(from, &msg);
            Route::Driver(Input::Peer { from, msg })
        }
        PeerFrame::StoreReply { id, reply } => Route::Driver(Input::StoreReply { replica: from, id, reply }),
        PeerFrame::RestartInfo { highest } => Route::Driver(Input::RestartInfo { from, highest }),
        PeerFrame::Store(request) => Route::Store(Job::Remote { from, request }),
        PeerFrame::RestartQuery => Route::Store(Job::RestartQuery { from }),
        PeerFrame::Hello(_) | PeerFrame::Welcome(_) | PeerFrame::Refused { .. } => Route::Close,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leasetso_core::{Ballot, Handshake, LeaseMsg, Message};

    #[test]
    fn each_frame_goes_where_the_rules_say() {
        let dir = PeerDirectory::new(NodeId(0), 3);
        let b = Ballot::new(7, 2, NodeId(1));
        let lease = PeerFrame::Lease(Message { msg: LeaseMsg::Prepare { ballot: b } });
        assert!(matches!(
            route::<()>(&dir, NodeId(1), lease),
            Route::Driver(Input::Peer { from: NodeId(1), .. })
        ));
        assert_eq!(dir.seen(NodeId(1)), b, "the directory saw node 2's ballot");
        assert!(matches!(
            route::<()>(&dir, NodeId(2), PeerFrame::RestartQuery),
            Route::Store(Job::RestartQuery { from: NodeId(2) })
        ));
        let hello = PeerFrame::Hello(Handshake {
            version: 1,
            cluster_id: 1,
            node: NodeId(2),
            client_addr: None,
            resp_addr: None,
            digest: 0,
        });
        assert!(
            matches!(route::<()>(&dir, NodeId(2), hello), Route::Close),
            "a Hello mid-stream closes the link"
        );
    }
}
