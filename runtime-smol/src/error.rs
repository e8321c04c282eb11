//! Errors of the server and of the client.
//!
//! [`ServerError`] is `leasetso-runtime`'s, the same type in both runtimes.
//! [`ClientError`] is still one per runtime: code outside the runtimes
//! (the conformance tests) implements traits for both clients' errors, so
//! making them one type waits for it.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use leasetso_core::{ErrorCode, LeaderHint, WireError};
#[cfg(feature = "server")]
pub use leasetso_runtime::ServerError;

/// Why a client call failed.
///
/// `Clone` because one failed request fails every caller merged into it;
/// I/O errors are shared behind an `Arc` for that reason.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ClientError {
    /// No server address was given.
    #[error("no server address given")]
    NoSeeds,
    /// One entry of a list of seed addresses is not an address or does not resolve.
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
    /// The client's options cannot work (`max_in_flight` 0).
    #[error("invalid client options: {what}")]
    InvalidOptions {
        /// What is wrong.
        what: &'static str,
    },
    /// The call's place in the client was lost (its bookkeeping was
    /// removed before its answer came): it was not answered.
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
            ClientError::NoSeeds
            | ClientError::Seed { .. }
            | ClientError::Protocol { .. }
            | ClientError::Unexpected { .. }
            | ClientError::InvalidCount { .. }
            | ClientError::InvalidOptions { .. }
            | ClientError::Shutdown => false,
        }
    }
}
