//! The cluster as PD's clients see it: every member with the URL of its
//! PD door, and the leader.
//!
//! PD's clients find the leader with `GetMembers` and then open their `Tso`
//! stream to the leader's first client URL whose scheme matches their TLS
//! setting, so:
//! * every node answers `GetMembers` with every member of the cluster (a
//!   member whose door address is not known yet has no URL);
//! * the leader is the node this node knows to serve: itself when it
//!   serves, else the holder of the lease it learned of; none while no
//!   lease is known (the clients then ask again);
//! * URLs are `http://` in plaintext and `https://` under TLS, with the
//!   address each node advertised (never a wildcard).

use std::net::SocketAddr;

use leasetso_core::NodeId;
use leasetso_runtime_common::Kit;

use crate::pdpb::{GetMembersResponse, Member, ResponseHeader};

/// A member's URL: `http://ADDR`, or `https://ADDR` under TLS.
pub fn url(addr: SocketAddr, tls: bool) -> String {
    format!("{}://{addr}", if tls { "https" } else { "http" })
}

/// Node `id` as a PD member: named `leasetso-N`, member id `N` (stable
/// across restarts, never 0), its PD door's URL if known.
pub fn member(kit: &Kit, id: NodeId) -> Member {
    let urls: Vec<String> = kit.pd_addr(id).map(|a| url(a, kit.tls.is_some())).into_iter().collect();
    Member {
        name: format!("leasetso-{}", id.0 + 1),
        member_id: u64::from(id.0) + 1,
        client_urls: urls,
        binary_version: env!("CARGO_PKG_VERSION").to_string(),
        ..Member::default()
    }
}

/// The leader this node knows of: itself while it serves, else the lease
/// holder it learned of; `None` while it knows none.
pub fn leader(kit: &Kit) -> Option<NodeId> {
    if kit.is_serving() {
        return Some(kit.node_id);
    }
    kit.node.status().and_then(|s| s.leader)
}

/// `GetMembers`' answer: every member, and the leader if one is known.
pub fn members(kit: &Kit) -> GetMembersResponse {
    let members: Vec<Member> = (0..kit.nodes).map(|i| member(kit, NodeId(i))).collect();
    let leader = leader(kit).map(|id| member(kit, id));
    GetMembersResponse {
        header: Some(header(kit)),
        members,
        etcd_leader: leader.clone(),
        leader,
        ..GetMembersResponse::default()
    }
}

/// A response header naming this cluster.
pub fn header(kit: &Kit) -> ResponseHeader {
    ResponseHeader { cluster_id: kit.cluster_id, error: None }
}
