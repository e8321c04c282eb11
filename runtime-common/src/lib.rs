//! What both leasetso runtimes share that is neither protocol nor I/O
//! scheduling: clocks, configuration, the client's and the server's error
//! types, counters, the driver's step over the node and the store thread's
//! jobs.
//!
//! The protocol is `leasetso-core`'s (the node and the sans-IO sessions);
//! the waiting (threads and blocking sockets in `leasetso-std`, tasks and
//! async sockets in `leasetso-smol`) is each runtime's own. What is left,
//! identical in both, lives here once. It is its own crate because
//! `leasetso-smol` cannot depend on `leasetso-std`: the `leasetso` binary in
//! `leasetso-std` runs the smol server (`serve --runtime smol`), so the
//! dependency already points the other way. Both runtimes re-export the
//! public items, so `leasetso_std::ServerConfig` and
//! `leasetso_smol::ServerConfig` are the same type.
//!
//! * [`clock`]: the clocks the core is fed with (`CLOCK_BOOTTIME` on Linux).
//! * [`error`]: [`ClientError`] (both clients' errors, one type) and, with
//!   feature `server`, [`ServerError`].
//! * [`io`]: making room in a connection's read buffer.
//! * Feature `server` (off by default; each runtime's `server` feature turns
//!   it on, so their client-only builds pull no sled): [`config`]
//!   ([`ServerConfig`]), [`stats`] ([`ServerStats`] and the live counters),
//!   [`driver`] (the driver's inputs and its step over the node),
//!   [`node_cell`] ([`NodeCell`], the node slot both servers share),
//!   [`directory`] ([`PeerDirectory`], what the links learn of the peers) and
//!   [`store`] (the store thread's jobs).
#![warn(missing_docs, unreachable_pub)]

pub mod clock;
#[cfg(feature = "server")]
pub mod config;
#[cfg(feature = "server")]
pub mod directory;
#[cfg(feature = "server")]
pub mod driver;
pub mod error;
pub mod io;
#[cfg(feature = "server")]
pub mod node_cell;
#[cfg(feature = "server")]
pub mod stats;
#[cfg(feature = "server")]
pub mod store;

pub use clock::Clock;
#[cfg(feature = "server")]
pub use config::{Opened, ServerConfig};
#[cfg(feature = "server")]
pub use directory::PeerDirectory;
pub use error::ClientError;
#[cfg(feature = "server")]
pub use error::ServerError;
#[cfg(feature = "server")]
pub use node_cell::NodeCell;
#[cfg(feature = "server")]
pub use stats::ServerStats;
