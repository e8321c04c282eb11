//! Why a server of either runtime could not start.
//!
//! The client's error stays one per runtime for now: code outside the
//! runtimes implements traits for both clients' errors, which one shared
//! type would make conflict.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

use leasetso_core::ConfigError;
use leasetso_sled::StoreError;

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The node configuration cannot run.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// The peer list does not name every node of the cluster.
    #[error("a cluster of {nodes} nodes needs {nodes} peer addresses, got {peers}")]
    Peers {
        /// The configured cluster size.
        nodes: u16,
        /// The peer addresses given.
        peers: usize,
    },
    /// This platform has no clock that keeps counting across a suspend
    /// (`CLOCK_BOOTTIME`): a lease measured on a clock that stops could
    /// outlive the other nodes' view of it, so it runs single-node only.
    #[error("cluster mode needs CLOCK_BOOTTIME, which this platform lacks; run a single node")]
    NoBoottime,
    /// Another process (or another server in this one) has the data dir open.
    #[error("data dir {} is locked: another leasetso process is using it", dir.display())]
    DataDirLocked {
        /// The data dir.
        dir: PathBuf,
    },
    /// The store could not be opened or its restart counter not bumped.
    #[error("store in {}: {source}", dir.display())]
    Store {
        /// The data dir.
        dir: PathBuf,
        /// What the store reported.
        #[source]
        source: StoreError,
    },
    /// A listening socket (clients', peers' or RESP) could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The operating system's reason.
        #[source]
        source: io::Error,
    },
    /// A thread (std: any of the server's; smol: the store's) could not be started.
    #[error("cannot start the {what} thread: {source}")]
    Spawn {
        /// Which thread.
        what: &'static str,
        /// The operating system's reason.
        #[source]
        source: io::Error,
    },
}

impl ServerError {
    /// Classifies a store error from opening `dir`: a lock held elsewhere is
    /// the common operator mistake and deserves its own message.
    pub fn from_store(dir: PathBuf, source: StoreError) -> Self {
        // sled reports a held lock only as a formatted I/O error, so its text
        // is the one thing to recognise it by.
        if let StoreError::Io(e) = &source {
            if e.to_string().contains("could not acquire lock") {
                return ServerError::DataDirLocked { dir };
            }
        }
        ServerError::Store { dir, source }
    }
}
