//! How a call fails: the errors its caller gets, and which of them the
//! redirect rules let pass (C5, C6).

use core::net::SocketAddr;
use core::time::Duration;

use crate::redirect::Failure;
use crate::wire::{ErrorCode, LeaderHint, WireError};

/// How a connection failed, as the runtime reports it: the redirect rules
/// treat the two differently (R2, R4 in [`redirect`](crate::redirect)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Broken {
    /// No connection could be made (refused, no route, connect timeout), or
    /// the server did not answer within a timeout the runtime enforces.
    Unreachable,
    /// An open connection failed: closed by the server, or an I/O error.
    Lost,
}

/// Why a call failed. `E` is the runtime's transport error.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CallError<E> {
    /// The server refused the request (or the handshake: a fatal code).
    #[error("server {addr} answered {code:?}")]
    Server {
        /// The server.
        addr: SocketAddr,
        /// Its error code.
        code: ErrorCode,
        /// Who serves, as far as the server knows (for `NotLeader`).
        leader: LeaderHint,
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
    /// No answer within [`ClientConfig::request_timeout`](super::ClientConfig::request_timeout).
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
    /// The connection failed, as the runtime reported it.
    #[error("{error}")]
    Transport {
        /// The server.
        addr: SocketAddr,
        /// How it failed.
        broken: Broken,
        /// The runtime's error.
        error: E,
    },
}

impl<E> CallError<E> {
    /// How the redirect rules see this error, if it may pass.
    pub(super) fn failure(&self) -> Option<Failure> {
        match *self {
            CallError::Server { code, leader, .. } if code.is_retryable() => {
                Some(Failure::Server { code, leader })
            }
            CallError::Timeout { .. } => Some(Failure::Unreachable),
            CallError::Transport { broken: Broken::Unreachable, .. } => Some(Failure::Unreachable),
            CallError::Transport { broken: Broken::Lost, .. } => Some(Failure::Lost),
            _ => None,
        }
    }
}
