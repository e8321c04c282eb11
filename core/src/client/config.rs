//! What a client session is told, and why one cannot be made.

use core::time::Duration;

use crate::timestamp::MAX_LOGICAL;

/// The largest count one request can carry: a range must fit one millisecond.
pub const MAX_COUNT: u32 = MAX_LOGICAL - 1;

/// How a [`ClientSession`](super::ClientSession) behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientConfig {
    /// The cluster the client expects; 0 accepts any (C3).
    pub cluster_id: u64,
    /// How long the oldest outstanding request (or the Hello) may wait for
    /// its answer before the connection counts as timed out. Zero waits
    /// forever.
    pub request_timeout: Duration,
    /// How long a request keeps being retried after its oldest caller's
    /// arrival (C6). Zero makes exactly one attempt.
    pub deadline: Duration,
    /// The first pause before a retry; it doubles per pause up to
    /// `max_backoff`, and each pause is drawn uniformly from `[pause/2,
    /// pause]`.
    pub retry_backoff: Duration,
    /// The longest pause between retries.
    pub max_backoff: Duration,
    /// The most timestamps merged into one request (PD: 10,000), clamped to
    /// `1..=MAX_COUNT`. A server that refuses a merged batch as
    /// `CountTooLarge` (it hands out fewer per millisecond) halves the cap
    /// for this session and the same callers are sent again, so only a
    /// caller whose own count is too large gets that error.
    pub max_batch: u32,
    /// The most requests outstanding on one connection, at least 1.
    pub max_in_flight: usize,
}

impl Default for ClientConfig {
    /// Any cluster, 3 s per reply, retries for 7 s (over 2 × D_A = 6.1 s
    /// with the default 3 s lease, so a call caught in a failover gets the
    /// new leader's timestamp) with pauses from 10 ms doubling to 250 ms,
    /// batches of up to 10,000, two requests in flight.
    fn default() -> Self {
        ClientConfig {
            cluster_id: 0,
            request_timeout: Duration::from_secs(3),
            deadline: Duration::from_secs(7),
            retry_backoff: Duration::from_millis(10),
            // Short enough that a client waiting out a failover reaches the
            // new leader soon after it serves.
            max_backoff: Duration::from_millis(250),
            max_batch: 10_000,
            max_in_flight: 2,
        }
    }
}

/// Why a [`ClientSession`](super::ClientSession) cannot be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClientConfigError {
    /// No server address was given.
    #[error("no server address given")]
    NoSeeds,
    /// `max_in_flight` is 0: no request could ever be sent.
    #[error("max_in_flight must be at least 1")]
    NoneInFlight,
}
