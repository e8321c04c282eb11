//! The harness of the cluster tests (`tests/cluster.rs`, `tests/partition.rs`)
//! and its own self-tests (`tests/harness_selftest.rs`):
//!
//! * [`cluster`]: [`Cluster`](cluster::Cluster), `n` real `leasetso serve`
//!   processes on loopback or in network namespaces, with SIGTERM, SIGKILL,
//!   restarts, leader polling, and every node's log on failure;
//! * [`load`]: client threads recording every GetTS call, and the checker
//!   of the history they record;
//! * [`netns`]: network namespaces with a peer bridge to cut and a client
//!   bridge the test reaches the nodes on, and nftables packet loss;
//! * [`proxy`]: a delaying TCP proxy for slow links between two nodes;
//! * [`tap`]: a proxy that decodes the client protocol and counts requests,
//!   their counts and the requests in flight (batching and pipelining seen
//!   on the wire, for servers in other processes).

pub mod cluster;
pub mod load;
pub mod netns;
pub mod proxy;
pub mod tap;
pub mod tmpfs;
