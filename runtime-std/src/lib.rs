//! leasetso on blocking std threads: a server and a client.
//!
//! Map of the crate:
//! * [`server`]: [`Server`] runs a node: an acceptor thread, a thread per
//!   client connection, a driver thread feeding the node its inputs
//!   (`driver`), a store thread for the sled replica (`store`), and in a
//!   cluster the peer links (`peer`). The node is shared behind a mutex that
//!   is never held during I/O, so GetTS is served while the next window is
//!   being saved.
//! * [`client`]: [`Client`], a blocking client that merges concurrent calls
//!   into one request and follows leader hints.
//! * [`clock`]: the clocks the core is fed with (`CLOCK_BOOTTIME` on Linux, so
//!   leases keep counting across a suspend).
//! * [`error`]: [`ServerError`] and [`ClientError`].
//!
//! The clocks, [`ServerError`], [`ServerConfig`] and [`ServerStats`] are
//! the server kit's (`leasetso-runtime-common`), re-exported: the same types as `leasetso-smol`'s,
//! so nodes of both runtimes share their clock kind.
//!
//! The protocol itself (the node state machine and the wire format) lives in
//! `leasetso-core`; the durable store in `leasetso-sled`.
#![warn(missing_docs, unreachable_pub)]

pub use leasetso_runtime_common::{clock, error};

pub mod client;
#[cfg_attr(not(feature = "server"), allow(dead_code))]
pub(crate) mod io;
#[cfg(feature = "server")]
pub mod server;

pub use client::Client;
pub use leasetso_runtime_common::exports::*;
#[cfg(feature = "server")]
pub use server::{Server, StopHandle};
