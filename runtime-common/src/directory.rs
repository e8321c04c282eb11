//! What a server knows about its peers, apart from the sockets: the
//! addresses each advertised in its handshake, which outgoing links are up,
//! and the highest ballot of its own each was seen to use.
//!
//! Each runtime's links (threads in `leasetso-std`, tasks in
//! `leasetso-smol`) update it; the connections read it for leader hints and
//! `links_up`, the store thread for a restart query. It is one type so both
//! runtimes answer those the same way, and the link tunables both runtimes'
//! links follow.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use leasetso_core::recovery::Seen;
use leasetso_core::{Ballot, Handshake, LeaseMsg, NodeId};

/// Frames queued for one peer at most; more are dropped (the lease protocol
/// tolerates loss, a store round times out), so a dead peer costs a
/// constant amount of memory.
pub const LINK_QUEUE: usize = 1024;
/// The first pause before redialling a peer; it doubles up to [`MAX_BACKOFF`].
pub const MIN_BACKOFF: Duration = Duration::from_millis(20);
/// The longest pause between two dials of a peer that does not answer.
pub const MAX_BACKOFF: Duration = Duration::from_millis(500);
/// The pause after a peer refused the handshake (a configuration error an
/// operator must fix: no point in hammering it).
pub const REFUSED_BACKOFF: Duration = Duration::from_secs(2);
/// How long a dial, a handshake, or one write to a peer may take.
pub const IO_TIMEOUT: Duration = Duration::from_millis(1000);
/// Bytes gathered before one write to a peer, when frames queue up.
pub const WRITE_BATCH: usize = 16 * 1024;
/// Read buffer of an incoming peer connection.
pub const READ_BUF: usize = 16 * 1024;

/// The directory of one server's peers.
#[derive(Debug)]
pub struct PeerDirectory {
    me: NodeId,
    /// Each peer's last handshake (either direction's): the client, RESP
    /// and PD door addresses it advertises, for leader hints, `-NOTLEADER`
    /// and the PD door's members.
    handshakes: Mutex<Vec<Option<Handshake>>>,
    /// Whether the outgoing link to each peer is up (this node's own entry
    /// stays false: [`PeerDirectory::links_up`] sets its bit regardless).
    up: Vec<AtomicBool>,
    /// How often each outgoing link came up (reconnects: all but the first).
    ups: Vec<AtomicU64>,
    /// The highest ballot of its own each peer was seen to use (a store that
    /// lost its restart counter asks for it).
    seen: Mutex<Seen>,
    /// The client address the process at each peer's configured address
    /// advertised in its answer to this node's dial (`None`: not reached
    /// yet): the process this node trusts with that id (rule H5).
    dialled: Mutex<Vec<Option<Option<SocketAddr>>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain bookkeeping no panic can leave inconsistent.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl PeerDirectory {
    /// Nothing known yet about the `nodes` nodes of a cluster `me` is one of.
    pub fn new(me: NodeId, nodes: u16) -> Self {
        let n = usize::from(nodes);
        PeerDirectory {
            me,
            handshakes: Mutex::new(vec![None; n]),
            up: (0..n).map(|_| AtomicBool::new(false)).collect(),
            ups: (0..n).map(|_| AtomicU64::new(0)).collect(),
            seen: Mutex::new(Seen::new()),
            dialled: Mutex::new(vec![None; n]),
        }
    }

    /// This node's dial of `peer`'s configured address was answered by a
    /// process advertising `client` (H5).
    pub fn dialled(&self, peer: NodeId, client: Option<SocketAddr>) {
        if let Some(slot) = lock(&self.dialled).get_mut(usize::from(peer.0)) {
            *slot = Some(client);
        }
    }

    /// What the process at `peer`'s configured address advertised, if
    /// this node's dial reached it.
    pub fn trusted(&self, peer: NodeId) -> Option<Option<SocketAddr>> {
        lock(&self.dialled).get(usize::from(peer.0)).copied().flatten()
    }

    /// Records the addresses `peer` advertised in its handshake `theirs`
    /// (either direction's); an id outside the cluster is ignored.
    pub fn advertised(&self, peer: NodeId, theirs: &Handshake) {
        if let Some(slot) = lock(&self.handshakes).get_mut(usize::from(peer.0)) {
            *slot = Some(*theirs);
        }
    }

    /// What `pick` takes of node `id`'s last handshake, if one came.
    fn advertised_addr(&self, id: NodeId, pick: fn(&Handshake) -> Option<SocketAddr>) -> Option<SocketAddr> {
        lock(&self.handshakes).get(usize::from(id.0)).copied().flatten().as_ref().and_then(pick)
    }

    /// The client address node `id` advertised, if it did.
    pub fn client_addr(&self, id: NodeId) -> Option<SocketAddr> {
        self.advertised_addr(id, |h| h.client_addr)
    }

    /// The PD door address node `id` advertised, if it did.
    pub fn pd_addr(&self, id: NodeId) -> Option<SocketAddr> {
        self.advertised_addr(id, |h| h.pd_addr)
    }

    /// The RESP address node `id` advertised, if it did.
    pub fn resp_addr(&self, id: NodeId) -> Option<SocketAddr> {
        self.advertised_addr(id, |h| h.resp_addr)
    }

    /// Marks the outgoing link to `peer` up or down.
    pub fn set_up(&self, peer: NodeId, up: bool) {
        if let Some(flag) = self.up.get(usize::from(peer.0)) {
            if !flag.swap(up, Ordering::SeqCst) && up {
                if let Some(ups) = self.ups.get(usize::from(peer.0)) {
                    ups.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// How often the outgoing link to `peer` came up.
    pub fn ups(&self, peer: NodeId) -> u64 {
        self.ups.get(usize::from(peer.0)).map_or(0, |u| u.load(Ordering::Relaxed))
    }

    /// Whether the outgoing link to `peer` is up.
    pub fn is_up(&self, peer: NodeId) -> bool {
        self.up.get(usize::from(peer.0)).is_some_and(|flag| flag.load(Ordering::Relaxed))
    }

    /// Bit `i` set: the link to node `i` is up (this node's own bit is set).
    pub fn links_up(&self) -> u32 {
        let mut mask = 1u32 << self.me.0;
        for (i, flag) in self.up.iter().enumerate() {
            if flag.load(Ordering::Relaxed) {
                mask |= 1 << i;
            }
        }
        mask
    }

    /// Notes the ballot `msg` from `from` carries, if it is one of `from`'s own.
    pub fn observe(&self, from: NodeId, msg: &LeaseMsg) {
        lock(&self.seen).observe(from, msg);
    }

    /// The highest ballot of node `id`'s own this node has seen on the wire.
    pub fn seen(&self, id: NodeId) -> Ballot {
        lock(&self.seen).highest(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_up_sets_our_bit_and_the_up_peers() {
        let dir = PeerDirectory::new(NodeId(1), 3);
        assert_eq!(dir.links_up(), 0b010);
        dir.set_up(NodeId(2), true);
        assert!(dir.is_up(NodeId(2)));
        assert_eq!(dir.links_up(), 0b110);
        dir.set_up(NodeId(2), false);
        dir.set_up(NodeId(9), true);
        assert_eq!(dir.links_up(), 0b010);
    }

    #[test]
    fn advertised_addresses_are_kept_per_peer() {
        let dir = PeerDirectory::new(NodeId(0), 2);
        let client: SocketAddr = "127.0.0.1:7000".parse().unwrap();
        let resp: SocketAddr = "127.0.0.1:7001".parse().unwrap();
        let pd: SocketAddr = "127.0.0.1:7002".parse().unwrap();
        let hs = |client, resp, pd| Handshake {
            version: leasetso_core::peer::PEER_VERSION,
            cluster_id: 1,
            node: NodeId(1),
            client_addr: client,
            resp_addr: resp,
            pd_addr: pd,
            digest: 0,
        };
        dir.advertised(NodeId(1), &hs(Some(client), Some(resp), Some(pd)));
        dir.advertised(NodeId(5), &hs(Some(client), None, None));
        assert_eq!(dir.client_addr(NodeId(1)), Some(client));
        assert_eq!(dir.resp_addr(NodeId(1)), Some(resp));
        assert_eq!(dir.pd_addr(NodeId(1)), Some(pd));
        // A restart without the door takes its address back.
        dir.advertised(NodeId(1), &hs(Some(client), Some(resp), None));
        assert_eq!(dir.pd_addr(NodeId(1)), None);
        assert_eq!(dir.client_addr(NodeId(0)), None);
        assert_eq!(dir.seen(NodeId(1)), Ballot::ZERO);
    }
}
