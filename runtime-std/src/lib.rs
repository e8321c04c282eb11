//! leasetso on blocking std threads: the server, the client and the
//! `leasetso` binary.
//!
//! Map of the crate:
//! * [`server`]: [`Server`] runs a node: an acceptor thread, a thread per
//!   client connection, and a driver thread owning the node's timers and its
//!   store I/O. The node is shared behind a mutex that is never held while the
//!   store writes, so GetTS is served while the next window is being saved.
//! * [`client`]: [`Client`], a blocking client that merges concurrent calls
//!   into one request and follows leader hints.
//! * [`clock`]: the clocks the core is fed with (`CLOCK_BOOTTIME` on Linux, so
//!   leases keep counting across a suspend).
//! * [`error`]: [`ServerError`] and [`ClientError`].
//!
//! The protocol itself (the node state machine and the wire format) lives in
//! `leasetso-core`; the durable store in `leasetso-sled`.
#![warn(missing_docs, unreachable_pub)]

pub mod client;
pub mod clock;
mod conn;
pub mod error;
pub mod server;

pub use client::{Client, ClientOptions, MAX_COUNT, NodeStatus};
pub use clock::Clock;
pub use error::{ClientError, ServerError};
pub use server::{Server, ServerConfig, ServerStats, StopHandle};

pub use leasetso_core::{ErrorCode, LeaderHint, NodeConfig, NodeId, Role, Timestamp};
