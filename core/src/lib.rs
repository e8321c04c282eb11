//! leasetso-core: the sans-IO heart of leasetso.
//!
//! A deterministic state machine per node: inputs (timeouts, peer messages,
//! store replies, GetTS calls) go in with the time they were observed at;
//! outputs (messages, store operations, events) are drained with
//! `poll_output()`. No I/O, no threads, no clock reads, no allocation after
//! construction.
//!
//! Map of the crate:
//! * [`timestamp`]: the hybrid timestamp, PD's layout.
//! * [`node`]: the state machine a runtime drives: leadership, oracle, store rounds.
//! * [`lease`]: PaxosLease (corrected): proposer, acceptor, learner, timing, messages.
//! * [`oracle`]: the timestamp window (sync, update, GetTS), after PD.
//! * [`store`]: the window store's contract and its reference implementation.
//! * [`wire`]: the client protocol's frames (PROTOCOL.md).
//! * [`conn`]: the server side of a client connection, as a sans-IO session.
//! * [`client`]: the client session: batching, splitting, pipelining, reply matching.
//! * [`redirect`]: where a client goes after a failure, and how long it waits.
//! * [`peer`]: the peer protocol's frames and handshake (PROTOCOL.md).
//! * [`link`]: the peer link sessions: dialler and acceptor, handshake then frames.
//! * [`recovery`]: a node that lost its restart counter learns it from its peers.
//! * [`resp`]: the RESP door: Redis protocol requests and replies, for Redis clients.
//! * [`ballot`]: ballots and node ids, and their encoding.
//! * [`role`]: a node's role and mode (a leaf: both the node and the codecs use it).
//! * [`quorum`]: sets of distinct node ids, for counting quorums.
//! * [`time`]: the monotonic instant the runtimes pass in.
//! * [`rng`]: the seeded generator behind every backoff jitter.
#![warn(missing_docs, unreachable_pub)]

pub mod ballot;
pub mod client;
#[cfg(test)]
mod codec_props;
pub mod conn;
pub mod lease;
pub mod link;
pub mod node;
pub mod oracle;
pub mod peer;
pub mod quorum;
pub mod recovery;
pub mod redirect;
pub mod resp;
pub mod rng;
pub mod role;
pub mod store;
pub mod time;
pub mod timestamp;
pub mod wire;

pub use ballot::{Ballot, NodeId};
pub use client::{CallError, ClientConfig, ClientSession, Completion, Ticket};
pub use conn::{Backend, Served, ServerConn, Tally, TsRefusal};
pub use lease::{Bugs, LeaseConfig, LeaseConfigError, LeaseMsg, LeaseTiming, Message};
/// Old name, kept until the runtimes move: [`LinkAcceptor`].
pub use link::Acceptor;
/// Old name, kept until the runtimes move: [`LinkDialler`].
pub use link::Dialler;
pub use link::{LinkAcceptor, LinkDialler, LinkError, LinkEvent};
pub use node::{ConfigError, Event, Node, NodeConfig, Output, Status, StepDown};
pub use oracle::{GetTsError, Oracle, OracleConfig, OracleConfigError};
pub use peer::{Handshake, HandshakeError, PeerFrame, Refusal};
pub use recovery::{Recovered, Recovery};
pub use role::{Mode, Role};
pub use store::{MemStore, StoreOk, StoreOp, StoreReject, StoreReply, StoreRequest};
pub use time::Instant;
pub use timestamp::{LOGICAL_BITS, MAX_LOGICAL, Timestamp};
pub use wire::{ErrorCode, Frame, LeaderHint, LeaseView, WireError};
