//! leasetso on smol / async-io: an async server and a pipelining async client.
//!
//! Nothing in the public API names an executor: the futures run under
//! `smol::block_on`, on an `async-executor`, or on any executor as long as
//! async-io's reactor drives the sockets and timers (it starts its own
//! thread on first use when no `async_io::block_on` drives it).
//!
//! Map of the crate:
//! * [`server`] (feature `server`, on by default): [`Server`] binds a node
//!   and [`Server::run`] serves it, its connection, driver and peer-link
//!   tasks on an executor internal to that future, the sled store on a
//!   thread of its own.
//! * [`client`]: [`Client`], an async client that merges concurrent callers,
//!   keeps several requests in flight on one connection and follows leaders.
//! * [`clock`]: the clocks the core is fed with (`CLOCK_BOOTTIME` on Linux).
//! * [`error`]: [`ServerError`] and [`ClientError`].
//!
//! The clocks, [`ServerError`], [`ServerConfig`] and [`ServerStats`] are
//! `leasetso-runtime-common`'s, re-exported: the same types as `leasetso-std`'s,
//! so nodes of both runtimes share their clock kind.
//!
//! The protocol lives in `leasetso-core` (the node state machine and the
//! sans-IO connection, link and client sessions); this crate moves bytes,
//! owns sockets, tasks and timers, and reads the clocks. Built with
//! `default-features = false` it is the client alone: the core and the
//! smol-rs I/O crates, no sled.
#![warn(missing_docs, unreachable_pub)]

pub use leasetso_runtime_common::{clock, error};

pub mod client;
#[cfg(feature = "server")]
pub(crate) mod io;

#[cfg(feature = "server")]
pub mod server;

pub use client::Client;
pub use leasetso_runtime_common::exports::*;
#[cfg(feature = "server")]
pub use server::{Handle, Server};
