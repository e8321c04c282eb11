//! Errors of the server and of the client, the same types in both runtimes.
//!
//! [`ClientError`] is the union of what both clients report: a variant one
//! of them never produces says so in its doc. Its converter from the core's
//! [`CallError`] is here too ([`ClientError::from_call`]), so both clients
//! map the session's verdicts alike and differ only in their transport
//! errors. [`ServerError`] (feature `server`) is why a server of either
//! runtime could not start.

use std::io;
use std::net::SocketAddr;
#[cfg(feature = "server")]
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[cfg(feature = "server")]
use leasetso_core::ConfigError;
use leasetso_core::client::Broken;
use leasetso_core::{CallError, ErrorCode, LeaderHint, WireError};
#[cfg(feature = "server")]
use leasetso_sled::StoreError;

/// Why a server could not start.
#[cfg(feature = "server")]
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The certificates of `--certs-dir` could not be loaded.
    #[error("--certs-dir {}: {source}", dir.display())]
    Tls {
        /// The directory.
        dir: PathBuf,
        /// What failed.
        source: crate::tls::TlsError,
    },
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

#[cfg(feature = "server")]
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

/// Why a client call failed, in either runtime's client.
///
/// `Clone` because one failed batch fails every caller merged into it; I/O
/// errors are shared behind an `Arc` for that reason.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ClientError {
    /// The server address did not resolve to any socket address (the
    /// blocking client's `connect`; the async client takes resolved
    /// addresses and never reports this).
    #[error("cannot resolve the server address: {source}")]
    Resolve {
        /// Why.
        #[source]
        source: Arc<io::Error>,
    },
    /// No server address was given: an empty list of seeds.
    #[error("no server address given")]
    NoSeeds,
    /// One entry of a list of seed addresses is not an address or does not
    /// resolve (the runtimes' `parse_seeds`).
    #[error("server address `{entry}`: {source}")]
    Seed {
        /// The entry, as given (trimmed).
        entry: String,
        /// Why it does not resolve.
        #[source]
        source: Arc<io::Error>,
    },
    /// No TCP connection could be made.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The server tried last.
        addr: SocketAddr,
        /// The operating system's reason.
        #[source]
        source: Arc<io::Error>,
    },
    /// The connection failed while a request was in flight.
    #[error("i/o error with {addr}: {source}")]
    Io {
        /// The server.
        addr: SocketAddr,
        /// The operating system's reason.
        #[source]
        source: Arc<io::Error>,
    },
    /// The server sent bytes that are not a frame.
    #[error("protocol error from {addr}: {source}")]
    Protocol {
        /// The server.
        addr: SocketAddr,
        /// What is wrong with the bytes.
        #[source]
        source: WireError,
    },
    /// The server sent a well-formed frame that does not answer the request.
    #[error("unexpected reply from {addr}: {what}")]
    Unexpected {
        /// The server.
        addr: SocketAddr,
        /// What was wrong with it.
        what: &'static str,
    },
    /// The server refused the request.
    #[error("server {addr} answered {code:?}{}", hint_suffix(leader))]
    Server {
        /// The server.
        addr: SocketAddr,
        /// Its error code.
        code: ErrorCode,
        /// Who serves, as far as the server knows (for `NotLeader`).
        leader: LeaderHint,
    },
    /// The server answered in TLS to a plaintext client.
    #[error("the server at {addr} requires TLS: pass --certs-dir")]
    TlsRequired {
        /// The server.
        addr: SocketAddr,
    },
    /// TLS could not be set up, or the server's certificate was refused.
    #[error("TLS with {addr}: {source}")]
    Tls {
        /// The server.
        addr: SocketAddr,
        /// Why.
        source: Arc<crate::tls::TlsError>,
    },
    /// The server closed the connection.
    #[error("{addr} closed the connection")]
    Closed {
        /// The server.
        addr: SocketAddr,
    },
    /// No reply within the request timeout (or no connection within the connect timeout).
    #[error("no answer from {addr} within {after:?}")]
    Timeout {
        /// The server.
        addr: SocketAddr,
        /// The timeout that ran out.
        after: Duration,
    },
    /// A count no request can carry.
    #[error("count {count} is invalid: must be between 1 and {max}")]
    InvalidCount {
        /// The count asked for.
        count: u32,
        /// The largest count a request may carry.
        max: u32,
    },
    /// The client's options cannot work (`max_in_flight` 0), from either client.
    #[error("invalid client options: {what}")]
    InvalidOptions {
        /// What is wrong.
        what: &'static str,
    },
    /// The call's place in the client was lost (its bookkeeping was removed
    /// before its answer came): it was not answered. Only the async client,
    /// whose callers are futures, can lose a place.
    #[error("the call was not answered: the client dropped it")]
    Shutdown,
}

fn hint_suffix(hint: &LeaderHint) -> String {
    match (hint.node, hint.addr) {
        (None, None) => String::new(),
        (Some(node), None) => format!(" (leader: node {node})"),
        (None, Some(addr)) => format!(" (leader at {addr})"),
        (Some(node), Some(addr)) => format!(" (leader: node {node} at {addr})"),
    }
}

impl ClientError {
    /// The server's error code, if the server refused the request.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Server { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Whether sending the request again (possibly elsewhere) may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::Server { code, .. } => code.is_retryable(),
            ClientError::Connect { .. }
            | ClientError::Io { .. }
            | ClientError::Closed { .. }
            | ClientError::Timeout { .. } => true,
            ClientError::Resolve { .. }
            | ClientError::NoSeeds
            | ClientError::Seed { .. }
            | ClientError::Protocol { .. }
            | ClientError::Unexpected { .. }
            | ClientError::InvalidCount { .. }
            | ClientError::InvalidOptions { .. }
            | ClientError::TlsRequired { .. }
            | ClientError::Tls { .. }
            | ClientError::Shutdown => false,
        }
    }

    /// The error a failed call of the core's [`ClientSession`] reports to its
    /// caller. The session's own verdicts map one to one; its `Transport`
    /// failures carry the runtime's error `E`, which `transport` turns into
    /// one of this type (it is told whether the connection was never made,
    /// [`Broken::Unreachable`], or failed under a request, [`Broken::Lost`]).
    ///
    /// [`ClientSession`]: leasetso_core::ClientSession
    pub fn from_call<E>(
        error: CallError<E>,
        transport: impl FnOnce(SocketAddr, Broken, E) -> ClientError,
    ) -> ClientError {
        match error {
            CallError::Server { addr, code, leader } => ClientError::Server { addr, code, leader },
            CallError::Protocol { addr, source } => ClientError::Protocol { addr, source },
            CallError::Unexpected { addr, what } => ClientError::Unexpected { addr, what },
            CallError::Timeout { addr, after } => ClientError::Timeout { addr, after },
            CallError::InvalidCount { count, max } => ClientError::InvalidCount { count, max },
            CallError::Transport { addr, broken, error } => transport(addr, broken, error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leasetso_core::NodeId;

    fn addr() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 4000))
    }

    #[test]
    fn from_call_keeps_the_sessions_verdicts() {
        let leader =
            LeaderHint { node: Some(NodeId(2)), addr: Some(SocketAddr::from(([127, 0, 0, 1], 4002))) };
        let e = ClientError::from_call::<()>(
            CallError::Server { addr: addr(), code: ErrorCode::NotLeader, leader },
            |_, _, ()| unreachable!("not a transport failure"),
        );
        assert_eq!(e.code(), Some(ErrorCode::NotLeader));
        assert_eq!(
            e.to_string(),
            "server 127.0.0.1:4000 answered NotLeader (leader: node 2 at 127.0.0.1:4002)"
        );
        let e = ClientError::from_call::<()>(CallError::InvalidCount { count: 0, max: 7 }, |_, _, ()| {
            unreachable!("not a transport failure")
        });
        assert!(matches!(e, ClientError::InvalidCount { count: 0, max: 7 }));
        assert!(!e.is_retryable());
        let after = Duration::from_millis(30);
        let e = ClientError::from_call::<()>(CallError::Timeout { addr: addr(), after }, |_, _, ()| {
            unreachable!("not a transport failure")
        });
        assert!(matches!(e, ClientError::Timeout { after: a, .. } if a == after));
        assert!(e.is_retryable());
    }

    #[test]
    fn from_call_hands_transport_failures_to_the_runtime() {
        let e = ClientError::from_call(
            CallError::Transport { addr: addr(), broken: Broken::Unreachable, error: "refused" },
            |addr, broken, what| {
                assert_eq!(broken, Broken::Unreachable);
                assert_eq!(what, "refused");
                ClientError::Connect {
                    addr,
                    source: Arc::new(io::Error::from(io::ErrorKind::ConnectionRefused)),
                }
            },
        );
        assert!(matches!(e, ClientError::Connect { addr: a, .. } if a == addr()));
        assert!(e.is_retryable());
        assert_eq!(e.code(), None);
    }
}
