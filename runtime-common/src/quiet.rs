//! Rate-limited warnings: a warning that can repeat at the rate of a
//! misbehaving client, peer or disk is logged once per period, and what was
//! held back is summed up in one line with its count.
//!
//! Why: one client sending operator requests in a loop, a flapping link or
//! a full disk must not turn the log into the outage (tens of thousands of
//! lines a second fill disks and bury the one line that says why). Every
//! warning an outsider or a fault can repeat goes through a [`Quiet`]: the
//! first in each period is logged as it happens, with the count of those held
//! back since the last one logged; [`flush`] (called by the driver on its
//! tick) logs a summary of a period that ended with some held back, so a
//! burst that stops is still counted in the log.
//!
//! Each kind is a `static` here, listed in [`ALL`], so one call flushes them
//! all and a test can read their counts.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::lock;

/// How often one kind of warning is logged at most.
pub const PERIOD: Duration = Duration::from_secs(10);

/// Distinct causes of one kind kept apart at most (the oldest is forgotten).
const CAUSES: usize = 32;

/// One kind of repeatable warning. Occurrences are limited per cause (a
/// short key such as the error's text, without the remote address): each
/// distinct cause is logged once per period, so that refusals for different
/// reasons are each told, and a flood of one reason is one line.
#[derive(Debug)]
pub struct Quiet {
    /// What is counted, in the plural ("refused TLS handshakes").
    pub what: &'static str,
    /// Every occurrence since the process started, logged or not.
    total: AtomicU64,
    state: Mutex<Vec<(u64, State)>>,
}

#[derive(Debug, Default)]
struct State {
    /// When the last line of this kind was logged (`None`: never).
    logged_at: Option<Instant>,
    /// Occurrences held back since then.
    held: u64,
}

impl Quiet {
    /// A kind of warning, never seen yet.
    pub const fn new(what: &'static str) -> Self {
        Quiet { what, total: AtomicU64::new(0), state: Mutex::new(Vec::new()) }
    }

    /// Counts one occurrence at `now`. `Some(held)` if it is to be logged
    /// (with `held` occurrences held back before it), `None` if it is held
    /// back (one was logged less than [`PERIOD`] ago).
    pub fn admit(&self, now: Instant) -> Option<u64> {
        self.admit_cause("", now)
    }

    /// [`admit`](Self::admit) for one cause of this kind: each cause has
    /// its own period.
    pub fn admit_cause(&self, cause: &str, now: Instant) -> Option<u64> {
        use std::hash::{Hash, Hasher};
        self.total.fetch_add(1, Ordering::Relaxed);
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        cause.hash(&mut hasher);
        let key = hasher.finish();
        let mut causes = lock(&self.state);
        let i = match causes.iter().position(|(k, _)| *k == key) {
            Some(i) => i,
            None => {
                if causes.len() >= CAUSES {
                    causes.remove(0);
                }
                causes.push((key, State::default()));
                causes.len() - 1
            }
        };
        let s = &mut causes[i].1;
        match s.logged_at {
            Some(at) if now.saturating_duration_since(at) < PERIOD => {
                s.held += 1;
                None
            }
            _ => {
                s.logged_at = Some(now);
                Some(std::mem::take(&mut s.held))
            }
        }
    }

    /// The occurrences held back in a period that ended by `now`, taken
    /// (so each is summed up once); 0 if none or the period runs on.
    fn take_ended(&self, now: Instant) -> u64 {
        let mut causes = lock(&self.state);
        let mut held = 0;
        for (_, s) in causes.iter_mut() {
            if let Some(at) = s.logged_at {
                if s.held > 0 && now.saturating_duration_since(at) >= PERIOD {
                    // The summary counts as the period's line: the next
                    // occurrence waits for a period after it.
                    s.logged_at = Some(now);
                    held += std::mem::take(&mut s.held);
                }
            }
        }
        held
    }

    /// Every occurrence since the process started, logged or held back.
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }
}

/// Logs a warning through a [`Quiet`]: `warn_quiet!(quiet::ADMIN_REFUSED,
/// field = value, ..., "message")`, with `held_back = N` added when
/// earlier ones were held back.
#[macro_export]
macro_rules! warn_quiet {
    ($quiet:expr, $($rest:tt)+) => {
        $crate::log_quiet!(::tracing::Level::WARN, $quiet, $($rest)+)
    };
}

/// [`warn_quiet!`] at info level (a link going up or down: news, unless it
/// flaps).
#[macro_export]
macro_rules! info_quiet {
    ($quiet:expr, $($rest:tt)+) => {
        $crate::log_quiet!(::tracing::Level::INFO, $quiet, $($rest)+)
    };
}

/// [`warn_quiet!`] per cause: `warn_quiet_cause!(quiet::PEER_REFUSED,
/// cause_text, fields..., "message")`; each distinct cause is limited on
/// its own.
#[macro_export]
macro_rules! warn_quiet_cause {
    ($quiet:expr, $cause:expr, $($rest:tt)+) => {
        $crate::log_quiet_cause!(::tracing::Level::WARN, $quiet, $cause, $($rest)+)
    };
}

/// [`warn_quiet_cause!`] at any level.
#[macro_export]
macro_rules! log_quiet_cause {
    ($level:expr, $quiet:expr, $cause:expr, $($rest:tt)+) => {
        if let Some(held) = $quiet.admit_cause($cause, ::std::time::Instant::now()) {
            if held == 0 {
                ::tracing::event!($level, $($rest)+);
            } else {
                ::tracing::event!($level, held_back = held, $($rest)+);
            }
        }
    };
}

/// [`warn_quiet!`] at any level.
#[macro_export]
macro_rules! log_quiet {
    ($level:expr, $quiet:expr, $($rest:tt)+) => {
        $crate::log_quiet_cause!($level, $quiet, "", $($rest)+)
    };
}

/// Peer connections refused at the handshake (TLS, identity, cluster).
pub static PEER_REFUSED: Quiet = Quiet::new("refused peer connections");
/// Client connections refused at TLS (another CA, plaintext, expired).
pub static CLIENT_TLS_REFUSED: Quiet = Quiet::new("refused client TLS handshakes");
/// Client connections closed for not finishing their handshake in time.
pub static HANDSHAKE_TIMEOUTS: Quiet = Quiet::new("client handshakes timed out");
/// Client connections refused at the connection cap.
pub static AT_CAP: Quiet = Quiet::new("connections refused at the cap");
/// Operator requests refused (no admin role, or the primary serves).
pub static ADMIN_REFUSED: Quiet = Quiet::new("refused operator requests");
/// Operator requests that clear the primary registration.
pub static ADMIN_CLEARS: Quiet = Quiet::new("operator clears of the registration");
/// Peer links that went up or down.
pub static LINK_FLAPS: Quiet = Quiet::new("peer link ups and downs");
/// Store operations that failed on this node's replica.
pub static STORE_FAILED: Quiet = Quiet::new("failed store operations");
/// Peer frames refused for values no correct node sends.
pub static IMPLAUSIBLE: Quiet = Quiet::new("refused implausible peer values");
/// Two processes claiming one node id.
pub static DUPLICATE_ID: Quiet = Quiet::new("connections of a second process claiming a node id");
/// Accepts that failed (out of descriptors and the like).
pub static ACCEPT_FAILED: Quiet = Quiet::new("failed accepts");
/// Leases this node acquired (a node that cannot keep one campaigns again).
pub static LEASE_ACQUIRED: Quiet = Quiet::new("lease acquisitions");
/// Times this node began serving.
pub static SERVING: Quiet = Quiet::new("starts of serving");
/// Times this node stopped serving (a failing store ends every leadership).
pub static STEPPED_DOWN: Quiet = Quiet::new("step-downs");

/// Every kind, for [`flush`].
pub static ALL: [&Quiet; 14] = [
    &PEER_REFUSED,
    &CLIENT_TLS_REFUSED,
    &HANDSHAKE_TIMEOUTS,
    &AT_CAP,
    &ADMIN_REFUSED,
    &ADMIN_CLEARS,
    &LINK_FLAPS,
    &STORE_FAILED,
    &IMPLAUSIBLE,
    &DUPLICATE_ID,
    &ACCEPT_FAILED,
    &LEASE_ACQUIRED,
    &SERVING,
    &STEPPED_DOWN,
];

/// Logs one summary line for each kind whose period ended at `now` with
/// occurrences held back.
pub fn flush(now: Instant) {
    for quiet in ALL {
        let held = quiet.take_ended(now);
        if held > 0 {
            tracing::warn!(
                count = held,
                total = quiet.total(),
                "{} held back in the last period",
                quiet.what
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_period_and_a_summary_of_the_rest() {
        let q = Quiet::new("tests");
        let t0 = Instant::now();
        assert_eq!(q.admit(t0), Some(0), "the first is logged");
        for i in 1..=500 {
            assert_eq!(q.admit(t0 + Duration::from_millis(i)), None, "held back within the period");
        }
        // Nothing to sum up while the period runs.
        assert_eq!(q.take_ended(t0 + Duration::from_secs(5)), 0);
        // A period later the next is logged with the count held back.
        assert_eq!(q.admit(t0 + PERIOD), Some(500));
        assert_eq!(q.admit(t0 + PERIOD + Duration::from_millis(1)), None);
        assert_eq!(q.admit(t0 + PERIOD + Duration::from_millis(2)), None);
        // A burst that stops is summed up once its period ends, once.
        assert_eq!(q.take_ended(t0 + 2 * PERIOD), 2);
        assert_eq!(q.take_ended(t0 + 3 * PERIOD), 0);
        assert_eq!(q.total(), 504);
        // After the summary, the next waits a period after it.
        assert_eq!(q.admit(t0 + 2 * PERIOD + Duration::from_secs(1)), None);
        assert_eq!(q.admit(t0 + 3 * PERIOD), Some(1));
        // Each cause has its own period.
        assert_eq!(q.admit_cause("expired", t0), Some(0));
        assert_eq!(q.admit_cause("another CA", t0), Some(0));
        assert_eq!(q.admit_cause("expired", t0 + Duration::from_millis(1)), None);
    }
}
