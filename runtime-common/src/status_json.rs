//! A node's status as JSON: what `leasetso status --json` prints, in one
//! place, so that anything else that reports a node's status as JSON (the
//! server's own endpoints, scripts built on the CLI) says the same facts
//! under the same names.
//!
//! The text form is [`NodeStatus`]'s `Display` (one line of `key=value`
//! pairs); the JSON form has the same keys with typed values. Machines read
//! this form, so it spells out what the line leaves to the reader:
//!
//! ```json
//! {
//!   "addr": "127.0.0.1:7400",
//!   "node": 1,
//!   "role": "leader",
//!   "leader": 1,
//!   "leader_addr": "127.0.0.1:7400",
//!   "mode": "deferring",
//!   "primary": null,
//!   "primary_tag": null,
//!   "lease": {"counter": 4, "restart": 1, "node": 1, "text": "(4,1,0)"},
//!   "lease_owner": 1,
//!   "lease_left_ms": 2189,
//!   "quarantine_left_ms": 0,
//!   "fence": {"counter": 2, "restart": 1, "node": 1, "text": "(2,1,0)"},
//!   "window_end_ms": 1796159094927,
//!   "current": {"packed": 470852329206448229, "physical_ms": 1796159091927, "logical": 101},
//!   "links": [{"node": 1, "state": "self"}],
//!   "store": {"ok": true, "health": "ok"},
//!   "served": 10421
//! }
//! ```
//!
//! * Every node id is 1-based, as on the command line, the ballot's `node`
//!   included. A ballot's `text` is the ballot exactly as the text line
//!   prints it, `(counter,restart,node)` with the node 0-based as on the
//!   wire: the form `primary clear --tag` takes.
//! * What the line prints as `none` is `null` (`leader`, `lease`,
//!   `lease_owner`, `fence`, `primary`, `primary_tag`); `leader_addr`, which
//!   the line leaves out when unknown, is `null` too.
//! * `current.packed` is the packed `u64`, which exceeds 2^53: readers that
//!   hold JSON numbers as doubles (JavaScript, older `jq`) round it, so
//!   `physical_ms` and `logical` are given beside it, both exact there.
//! * `links` has one entry per node of the cluster, in id order; `state` is
//!   `self`, `up` or `down`.
//! * `store.health` is the text line's `store=` value (`ok`, or
//!   `failed: <why>`); `store.ok` says which without parsing it.
//!
//! Not behind the `server` feature: the CLI's client side builds it.

use std::net::SocketAddr;

use leasetso_core::{Ballot, NodeId, Timestamp};
use serde_json::{Map, Value, json};

use crate::client::NodeStatus;

/// The JSON object of node `status` as answered at `addr` (the address it
/// was asked at, the first key, as the text line's `addr=`).
pub fn status_json(addr: SocketAddr, status: &NodeStatus) -> Value {
    let mut object = Map::new();
    object.insert("addr".into(), Value::String(addr.to_string()));
    object.extend(node_fields(status));
    Value::Object(object)
}

/// The JSON object for an address that gave no status: `{addr, error}`,
/// the text line's `addr=... error="..."`.
pub fn unreachable_json(addr: SocketAddr, error: &str) -> Value {
    json!({ "addr": addr.to_string(), "error": error })
}

/// The status's own fields, without the address (for a server that
/// reports itself and has no "address asked").
pub fn node_fields(status: &NodeStatus) -> Map<String, Value> {
    let v = &status.view;
    let links = (0..v.nodes.max(1))
        .map(|i| {
            let state = if i == status.node.0 {
                "self"
            } else if v.links_up & (1 << i) != 0 {
                "up"
            } else {
                "down"
            };
            json!({ "node": i + 1, "state": state })
        })
        .collect::<Vec<_>>();
    let fields = json!({
        "node": node_id(status.node),
        "role": status.role.as_str(),
        "leader": status.leader.node.map(node_id),
        "leader_addr": status.leader.addr.map(|a| a.to_string()),
        "mode": v.mode.as_str(),
        "primary": v.primary.map(|(p, _)| node_id(p)),
        "primary_tag": v.primary.map(|(_, tag)| ballot(tag)),
        "lease": v.lease.map(ballot),
        "lease_owner": v.lease.map(|b| node_id(b.node)),
        "lease_left_ms": v.lease_left_ms,
        "quarantine_left_ms": v.quarantine_left_ms,
        "fence": v.fence.map(ballot),
        "window_end_ms": status.window_end_ms,
        "current": timestamp(status.current),
        "links": links,
        "store": { "ok": v.store.is_ok(), "health": v.store.to_string() },
        "served": v.served,
    });
    let Value::Object(map) = fields else { unreachable!("json! of an object literal is an object") };
    map
}

/// A node id, 1-based.
fn node_id(id: NodeId) -> u32 {
    u32::from(id.0) + 1
}

/// A ballot: its parts (the node 1-based) and its text form (the node
/// 0-based, as the text line and `primary clear --tag` spell it).
fn ballot(b: Ballot) -> Value {
    json!({ "counter": b.counter, "restart": b.restart, "node": node_id(b.node), "text": b.to_string() })
}

/// A timestamp packed and in parts.
fn timestamp(ts: Timestamp) -> Value {
    json!({ "packed": ts.to_u64(), "physical_ms": ts.physical_ms, "logical": ts.logical })
}

#[cfg(test)]
mod tests {
    use leasetso_core::{LeaderHint, LeaseView, Mode, Role, StoreHealth, Timestamp};

    use super::*;

    fn leader() -> NodeStatus {
        NodeStatus {
            role: Role::Leader,
            node: NodeId(1),
            leader: LeaderHint { node: Some(NodeId(1)), addr: Some("10.0.0.2:7400".parse().unwrap()) },
            window_end_ms: 1_796_159_094_927,
            current: Timestamp::new(1_796_159_091_927, 101).unwrap(),
            view: LeaseView {
                lease: Some(Ballot::new(4, 1, NodeId(1))),
                lease_left_ms: 2189,
                quarantine_left_ms: 0,
                fence: Some(Ballot::new(2, 1, NodeId(1))),
                links_up: 0b011,
                nodes: 3,
                mode: Mode::Primary,
                primary: Some((NodeId(1), Ballot::new(0, 3, NodeId(1)))),
                store: StoreHealth::NoSpace,
                served: 0,
            },
        }
    }

    #[test]
    fn every_fact_of_the_text_line_under_its_name() {
        let status = leader();
        let addr: SocketAddr = "10.0.0.2:7400".parse().unwrap();
        let json = status_json(addr, &status);
        let expected = json!({
            "addr": "10.0.0.2:7400",
            "node": 2,
            "role": "leader",
            "leader": 2,
            "leader_addr": "10.0.0.2:7400",
            "mode": "primary",
            "primary": 2,
            "primary_tag": {"counter": 0, "restart": 3, "node": 2, "text": "(0,3,1)"},
            "lease": {"counter": 4, "restart": 1, "node": 2, "text": "(4,1,1)"},
            "lease_owner": 2,
            "lease_left_ms": 2189,
            "quarantine_left_ms": 0,
            "fence": {"counter": 2, "restart": 1, "node": 2, "text": "(2,1,1)"},
            "window_end_ms": 1_796_159_094_927u64,
            "current": {"packed": status.current.to_u64(), "physical_ms": 1_796_159_091_927u64, "logical": 101},
            "links": [{"node": 1, "state": "up"}, {"node": 2, "state": "self"}, {"node": 3, "state": "down"}],
            "store": {"ok": false, "health": "failed: No space left on device"},
            "served": 0,
        });
        assert_eq!(json, expected);
        // The same keys as the text line, and the same values where both are plain.
        let line = status.to_string();
        for (key, value) in line.split(' ').filter_map(|kv| kv.split_once('=')) {
            assert!(json.get(key).is_some(), "the text line's {key}= is not in the JSON: {json}");
            if let Some(plain) = json[key].as_u64() {
                assert_eq!(plain.to_string(), value, "{key}");
            }
        }
        // The packed u64 survives serialization exactly.
        let text = serde_json::to_string(&json).unwrap();
        assert!(text.contains(&format!("\"packed\":{}", status.current.to_u64())), "{text}");
    }

    #[test]
    fn what_the_line_calls_none_is_null() {
        let status = NodeStatus {
            role: Role::Follower,
            node: NodeId(0),
            leader: LeaderHint::default(),
            view: LeaseView { nodes: 1, ..LeaseView::default() },
            ..leader()
        };
        let json = status_json("127.0.0.1:1".parse().unwrap(), &status);
        for key in ["leader", "leader_addr", "primary", "primary_tag", "lease", "lease_owner", "fence"] {
            assert_eq!(json[key], Value::Null, "{key} in {json}");
        }
        assert_eq!(json["role"], "follower");
        assert_eq!(json["links"], json!([{"node": 1, "state": "self"}]), "{json}");
        assert_eq!(json["store"], json!({"ok": true, "health": "ok"}));
    }

    #[test]
    fn an_unreachable_node_is_its_address_and_error() {
        let json = unreachable_json("127.0.0.1:9".parse().unwrap(), "connection refused");
        assert_eq!(json, json!({"addr": "127.0.0.1:9", "error": "connection refused"}));
    }
}
