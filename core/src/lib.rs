//! leasetso-core: the sans-IO heart of leasetso.
//!
//! Deterministic state machines: no I/O, no threads, no clock reads, no
//! allocation on the hot paths once warmed up. Its only dependencies are
//! `bytes` and `thiserror`.
//!
//! # The session contract
//!
//! Every session here (the [`Node`], the [`Recovery`] of a lost restart
//! counter, the client's [`ClientSession`], the server side of a client
//! connection [`ServerConn`], the RESP door's [`resp::RespConn`], the peer
//! links [`LinkDialler`] and [`LinkAcceptor`]) keeps one contract, so that a blocking runtime and an
//! async one drive them alike and a simulator can drive them all on one
//! virtual clock:
//!
//! 1. **Inputs carry their time.** Every input (bytes read, a peer message,
//!    a store reply, a caller) takes `now: Instant`, the moment the runtime
//!    observed it. Nothing here reads a clock; the one exception is a
//!    [`Backend`] handing out timestamps, which reads its node's clock under
//!    its own lock so that the lease check uses a time no earlier than the
//!    moment of handing out.
//! 2. **Outputs are polled and drained.** What a session wants done comes
//!    out of `poll_*` calls (`poll_output`, `poll_event`, `poll_transmit`,
//!    `poll_action`, `poll_completion`), or, for the byte-in/byte-out
//!    sessions, as bytes appended to the runtime's buffer plus one
//!    instruction ([`Served`]).
//! 3. **After each input, drain, then arm one timer.** The runtime drains
//!    the outputs until `None`, then arms a single timer at
//!    `poll_timeout()` and calls `handle_timeout(now)` when it passes.
//!
//! A few old entry points predate the contract and take no time
//! ([`ServerConn::handle`], the links' `new` and `handle_input`, the RESP
//! door's [`resp::Session`] loop left to the runtimes); each has a
//! time-taking replacement, and they go once the runtimes have moved.
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
//! * [`health`]: the health of a node's store replica, as status reports it.
//! * [`bounds`]: plausibility bounds on peers' values (B1–B4).
//! * [`role`]: a node's role and mode (a leaf: both the node and the codecs use it).
//! * [`quorum`]: sets of distinct node ids, for counting quorums.
//! * [`time`]: the monotonic instant the runtimes pass in.
//! * [`rng`]: the seeded generator behind every backoff jitter.
#![warn(missing_docs, unreachable_pub)]

pub mod ballot;
pub mod bounds;
pub mod client;
#[cfg(test)]
mod codec_props;
pub mod conn;
pub mod health;
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
pub use bounds::Implausible;
pub use client::{CallError, ClientConfig, ClientSession, Completion, Ticket};
pub use conn::{Backend, Served, ServerConn, Tally, TsRefusal};
pub use health::StoreHealth;
pub use lease::{Bugs, LeaseConfig, LeaseConfigError, LeaseMsg, LeaseTiming};
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
