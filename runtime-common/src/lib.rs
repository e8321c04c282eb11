//! The server kit: everything both leasetso runtimes share that is neither
//! protocol nor waiting.
//!
//! The protocol is `leasetso-core`'s (the node and the sans-IO sessions);
//! the waiting (threads and blocking sockets in `leasetso-std`, tasks and
//! async sockets in `leasetso-smol`) is each runtime's own. Every rule in
//! between (which address a hint names, where a peer's frame goes, when a
//! link redials, how the node answers a connection, what start-up checks)
//! lives here once, as a function or a value that says what to do; a
//! runtime only waits, spawns and moves bytes. Both runtimes re-export the
//! public types, so `leasetso_std::ServerConfig` and
//! `leasetso_smol::ServerConfig` are one type.
//!
//! * [`client`]: what both clients share: [`ClientOptions`], [`NodeStatus`],
//!   seeds, the ticket map their callers wait in.
//! * [`clock`]: the clocks the core is fed with (`CLOCK_BOOTTIME` on Linux).
//! * [`error`]: [`ClientError`] (both clients' errors, one type) and, with
//!   feature `server`, [`ServerError`].
//! * [`io`]: a connection's read buffer ([`io::InBuf`]).
//! * [`status_json`]: a node's status as JSON, the one form `status --json`
//!   prints and anything else that reports it as JSON reuses.
//! * Feature `server` (off by default; each runtime's `server` feature turns
//!   it on, so their client-only builds pull no sled):
//!   * [`config`]: [`ServerConfig`] and the start-up both servers make;
//!   * [`kit`]: [`Kit`], what every door, link and driver of a server
//!     shares: the node slot, the hint and advertise rules, the one
//!     `Backend` the core's sessions are served by;
//!   * [`door`]: a door's connection apart from its socket ([`ClientDoor`],
//!     [`RespConnDoor`]), so each runtime has one connection loop;
//!   * [`limits`]: the connection cap, the handshake and write deadlines
//!     (rules H1-H3);
//!   * [`quiet`]: rate-limited warnings, one line per period per kind;
//!   * [`node_cell`]: [`NodeCell`], the node behind its one lock;
//!   * [`directory`]: [`PeerDirectory`], what the links learn of the peers,
//!     and the link tunables;
//!   * [`route`]: where each frame of a peer goes;
//!   * [`redial`]: when an outgoing link dials again, and what it logs;
//!   * [`driver`]: the driver's inputs and its step over the node;
//!   * [`store`]: the store thread's jobs;
//!   * [`stats`]: [`ServerStats`] and the live counters.
//! * [`tls`]: TLS for every door and both clients, as a byte-in/byte-out
//!   session ([`TlsSession`]), the certificates of a `--certs-dir`
//!   ([`CertsDir`]) and the identities they name ([`Identity`]).
#![warn(missing_docs, unreachable_pub)]

pub mod client;
pub mod clock;
#[cfg(feature = "server")]
pub mod config;
#[cfg(feature = "server")]
pub mod directory;
#[cfg(feature = "server")]
pub mod door;
#[cfg(feature = "server")]
pub mod driver;
pub mod error;
#[cfg(feature = "server")]
pub mod http;
pub mod io;
#[cfg(feature = "server")]
pub mod kit;
#[cfg(feature = "server")]
pub mod limits;
#[cfg(feature = "server")]
pub mod metrics;
#[cfg(feature = "server")]
pub mod node_cell;
#[cfg(feature = "server")]
pub mod quiet;
#[cfg(feature = "server")]
pub mod redial;
#[cfg(feature = "server")]
pub mod route;
#[cfg(feature = "server")]
pub mod stats;
pub mod status_json;
#[cfg(feature = "server")]
pub mod store;
pub mod tls;

pub use client::{ClientOptions, NodeStatus};
pub use clock::Clock;
#[cfg(feature = "server")]
pub use config::{Opened, Secret, ServerConfig};
#[cfg(feature = "server")]
pub use directory::PeerDirectory;
#[cfg(feature = "server")]
pub use door::{ClientDoor, Door, Held, Next, Refused, RespConnDoor};
pub use error::ClientError;
#[cfg(feature = "server")]
pub use error::ServerError;
#[cfg(feature = "server")]
pub use kit::{Advertised, Kit, RespDoor, SharedKit};
#[cfg(feature = "server")]
pub use node_cell::NodeCell;
#[cfg(feature = "server")]
pub use redial::{DialError, Redial};
#[cfg(feature = "server")]
pub use route::{Duplicate, Incoming, Route, report_closed, route};
#[cfg(feature = "server")]
pub use stats::ServerStats;
pub use tls::{CertsDir, Identity, TlsError, TlsPipe, TlsSession};
#[cfg(feature = "server")]
pub use tls::{ServerTls, TlsDoor};

/// The types both runtimes re-export at their roots, one type each,
/// whichever runtime a program uses (`leasetso_std::ClientOptions` is
/// `leasetso_smol::ClientOptions`).
pub mod exports {
    pub use crate::client::{ClientOptions, ClientTls, MAX_COUNT, NodeStatus};
    pub use crate::{ClientError, Clock};
    #[cfg(feature = "server")]
    pub use crate::{Secret, ServerConfig, ServerError, ServerStats};
    pub use leasetso_core::{ErrorCode, LeaderHint, NodeConfig, NodeId, Role, Timestamp};
}

/// Takes a lock that guards plain flags and bookkeeping, which a panic
/// cannot leave inconsistent, so a poisoned one is taken anyway. (The node's
/// own lock is never taken this way: [`NodeCell`] refuses a poisoned node.)
pub fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
