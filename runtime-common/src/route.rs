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

use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use leasetso_core::{HandshakeError, LinkError, NodeId, PeerFrame};

use crate::directory::PeerDirectory;
use crate::driver::Input;
use crate::lock;
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

/// The live incoming connection of each peer, so that a peer that dials
/// again (it restarted, or lost the old connection) replaces its old one,
/// which is closed, and so that a stop can close them all. `S` is the
/// runtime's stream (or its clone).
///
/// Rule H5 (ARCHITECTURE.md): **one process per node id.** A process is
/// told apart by the client address its handshake advertises. A second
/// process that claims an id another holds is refused (and the operator
/// told, rate-limited, which two), and the link this node trusts is kept:
/// the one of the process at the peer address configured for that id (the
/// client address its answer to this node's own dial advertised), or else
/// the one already live. Without this the two would take the link from
/// each other in turn, for ever.
#[derive(Debug)]
pub struct Incoming<S> {
    next: AtomicU64,
    live: Mutex<Vec<Option<Live<S>>>>,
}

#[derive(Debug)]
struct Live<S> {
    conn: u64,
    stream: S,
    /// The client address its handshake advertised.
    claim: Option<SocketAddr>,
}

/// Two processes claim one node id (H5): the newcomer is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "two processes claim node {}: {} and {} (client addresses); keeping the first, refusing the link from {}",
    peer.0 + 1, show(*kept), show(*refused), show(*remote)
)]
pub struct Duplicate {
    /// The id both claim.
    pub peer: NodeId,
    /// The client address of the process kept.
    pub kept: Option<SocketAddr>,
    /// The client address of the process refused.
    pub refused: Option<SocketAddr>,
    /// Where the refused link came from.
    pub remote: Option<SocketAddr>,
}

fn show(addr: Option<SocketAddr>) -> String {
    addr.map_or_else(|| "none".into(), |a| a.to_string())
}

impl<S> Incoming<S> {
    /// No live connection yet, in a cluster of `nodes`.
    pub fn new(nodes: u16) -> Self {
        Incoming { next: AtomicU64::new(0), live: Mutex::new((0..nodes).map(|_| None).collect()) }
    }

    /// Registers `stream` from `remote` as `peer`'s live connection, its
    /// handshake advertising `claim`; `trusted` is what the process at the
    /// configured peer address advertised, if this node's dial reached it.
    /// Returns its number (for [`Incoming::unregister`]) and the connection
    /// it replaces, which the caller closes (dead, or about to be); or the
    /// [`Duplicate`] that refuses it (H5), and the caller drops it.
    pub fn register(
        &self,
        peer: NodeId,
        stream: S,
        claim: Option<SocketAddr>,
        trusted: Option<Option<SocketAddr>>,
        remote: Option<SocketAddr>,
    ) -> Result<(u64, Option<S>), Duplicate> {
        let mut live = lock(&self.live);
        let Some(slot) = live.get_mut(usize::from(peer.0)) else {
            // Not a member: the handshake refuses it before this; nothing to keep.
            return Ok((self.next.fetch_add(1, Ordering::Relaxed), None));
        };
        let refuse = |kept| Err(Duplicate { peer, kept, refused: claim, remote });
        match (trusted, slot.as_ref()) {
            // The process at the configured address says it is someone else.
            (Some(t), _) if t != claim => return refuse(t),
            // Another process holds the live link, and nothing says the
            // newcomer is the one at the configured address.
            (None, Some(old)) if old.claim != claim => return refuse(old.claim),
            _ => {}
        }
        let conn = self.next.fetch_add(1, Ordering::Relaxed);
        let old = slot.replace(Live { conn, stream, claim });
        Ok((conn, old.map(|l| l.stream)))
    }

    /// [`register`](Self::register) with what `dir` trusts for `peer`, a
    /// refusal logged (rate-limited) and turned into `None`: the caller
    /// drops the connection.
    pub fn admit(
        &self,
        dir: &PeerDirectory,
        peer: NodeId,
        stream: S,
        claim: Option<SocketAddr>,
        remote: Option<SocketAddr>,
    ) -> Option<(u64, Option<S>)> {
        match self.register(peer, stream, claim, dir.trusted(peer), remote) {
            Ok(registered) => Some(registered),
            Err(duplicate) => {
                crate::warn_quiet!(crate::quiet::DUPLICATE_ID, "{duplicate}");
                None
            }
        }
    }

    /// Forgets connection `conn` of `peer`, unless a newer one replaced it.
    pub fn unregister(&self, peer: NodeId, conn: u64) {
        if let Some(slot) = lock(&self.live).get_mut(usize::from(peer.0)) {
            if slot.as_ref().is_some_and(|l| l.conn == conn) {
                *slot = None;
            }
        }
    }

    /// Takes every live connection, for a stop to close them.
    pub fn drain(&self) -> Vec<S> {
        lock(&self.live).iter_mut().filter_map(|slot| slot.take().map(|l| l.stream)).collect()
    }
}

/// Logs why an incoming peer connection ended, once, with who it was.
pub fn report_closed(remote: Option<SocketAddr>, peer: Option<NodeId>, e: &LinkError) {
    match (e, peer) {
        (LinkError::Handshake(HandshakeError::NotHandshake), _) => {
            crate::warn_quiet_cause!(
                crate::quiet::PEER_REFUSED,
                "not hello",
                ?remote,
                "refusing a peer: its first frame is not Hello"
            );
        }
        (LinkError::Handshake(h), _) => crate::log_quiet_cause!(
            tracing::Level::ERROR,
            crate::quiet::PEER_REFUSED,
            &h.to_string(),
            ?remote,
            "refusing a peer: {h}"
        ),
        (e, Some(peer)) => {
            crate::warn_quiet!(crate::quiet::LINK_FLAPS, peer = peer.0 + 1, error = %e, "dropping the peer connection")
        }
        (e, None) => {
            crate::warn_quiet_cause!(crate::quiet::PEER_REFUSED, &e.to_string(), ?remote, error = %e, "dropping a peer connection before its handshake")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leasetso_core::{Ballot, Handshake, LeaseMsg};

    #[test]
    fn one_process_per_node_id() {
        let a: SocketAddr = "127.0.0.1:7402".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:7502".parse().unwrap();
        let (n2, remote) = (NodeId(1), Some("127.0.0.1:40000".parse().unwrap()));
        let inc = Incoming::new(3);
        // The first process; the same one again replaces its old link.
        let (first, old) = inc.register(n2, "a1", Some(a), None, remote).unwrap();
        assert_eq!(old, None);
        let (_, old) = inc.register(n2, "a2", Some(a), None, remote).unwrap();
        assert_eq!(old, Some("a1"));
        inc.unregister(n2, first); // stale: a2 replaced it
        // Another process claiming node 2 is refused, the live one kept.
        let dup = inc.register(n2, "b1", Some(b), None, remote).unwrap_err();
        assert_eq!((dup.kept, dup.refused), (Some(a), Some(b)));
        assert!(dup.to_string().starts_with("two processes claim node 2: 127.0.0.1:7402 and 127.0.0.1:7502"));
        // Unless the process at the configured address is the newcomer:
        // then it takes the link from the impostor.
        let (_, old) = inc.register(n2, "b2", Some(b), Some(Some(b)), remote).unwrap();
        assert_eq!(old, Some("a2"));
        // And with it known, the other is refused even with no link live.
        assert_eq!(inc.drain(), ["b2"]);
        assert!(inc.register(n2, "a3", Some(a), Some(Some(b)), remote).is_err());
    }

    #[test]
    fn each_frame_goes_where_the_rules_say() {
        let dir = PeerDirectory::new(NodeId(0), 3);
        let b = Ballot::new(7, 2, NodeId(1));
        let lease = PeerFrame::Lease(LeaseMsg::Prepare { ballot: b });
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
            pd_addr: None,
            digest: 0,
        });
        assert!(
            matches!(route::<()>(&dir, NodeId(2), hello), Route::Close),
            "a Hello mid-stream closes the link"
        );
    }
}
