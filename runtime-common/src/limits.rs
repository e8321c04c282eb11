//! What one client can hold of a server: a place under the connection cap,
//! and its handshake only for so long.
//!
//! Rules (ARCHITECTURE.md, "Hostile input and faults"):
//! * **H1 (cap)**: the client and Redis doors together hold at most
//!   `--max-connections` connections. One beyond gets a typed refusal
//!   (`TooManyConnections`, `-ERR max clients reached`) and is closed; at
//!   most [`MAX_REFUSING`] refusals are under way at once, and a connection
//!   beyond those is closed without a word. The default leaves room under
//!   `RLIMIT_NOFILE` for the peer links, the store, the listeners and the
//!   metrics listener, so a flood of clients never takes the descriptors
//!   the lease needs: peer links and the clients already served go on.
//! * **H2 (handshake deadline)**: a client connection that has not finished
//!   its handshake (TLS, `Hello`, the Redis door's `AUTH`) within
//!   [`HANDSHAKE_DEADLINE`] is closed, so idle or half-open connections
//!   cannot pile up toward the cap.
//! * **H3 (slow readers)**: a client that takes no answer for
//!   [`WRITE_DEADLINE`] while one waits is closed: a reader that never
//!   reads holds no thread or task for ever.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// The cap when `--max-connections` is not given and the descriptor limit
/// allows it (Redis's default `maxclients`).
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Descriptors kept out of the cap besides two per peer: the store's files,
/// the listeners, the metrics listener, logs, and the refusals under way.
pub const FD_RESERVE: u64 = 64 + MAX_REFUSING as u64;
/// Refusals under way at once at most (H1).
pub const MAX_REFUSING: usize = 64;
/// How long a client connection may take to finish its handshake (H2).
pub const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(5);
/// How long a client may leave an answer unread (H3).
pub const WRITE_DEADLINE: Duration = Duration::from_secs(10);

/// The open-file limit after raising the soft limit to the hard one (as
/// servers that hold many connections do); `None` where it cannot be read.
pub fn raise_nofile() -> Option<u64> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
        let limit = getrlimit(Resource::Nofile);
        if limit.current != limit.maximum {
            let raised = Rlimit { current: limit.maximum, maximum: limit.maximum };
            if setrlimit(Resource::Nofile, raised).is_ok() {
                return limit.maximum;
            }
        }
        limit.current
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        None
    }
}

/// The open-file limit now; `None` where it cannot be read.
pub fn nofile() -> Option<u64> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        rustix::process::getrlimit(rustix::process::Resource::Nofile).current
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        None
    }
}

/// The default cap for a node of a cluster of `nodes` under the
/// descriptor limit `nofile` (`None`: unknown): [`DEFAULT_MAX_CONNECTIONS`],
/// or less to leave [`FD_RESERVE`] and two descriptors per peer free.
pub fn default_max_connections(nodes: u16, nofile: Option<u64>) -> usize {
    let Some(nofile) = nofile else { return DEFAULT_MAX_CONNECTIONS };
    let reserve = FD_RESERVE + 2 * u64::from(nodes);
    let room = nofile.saturating_sub(reserve);
    // At least one: a server that can serve nobody is no server.
    usize::try_from(room).unwrap_or(usize::MAX).clamp(1, DEFAULT_MAX_CONNECTIONS)
}

/// The connections of a server's client doors, against the cap (H1).
#[derive(Debug)]
pub struct ConnLimit {
    max: usize,
    open: AtomicUsize,
    refusing: AtomicUsize,
}

/// What a new connection gets.
#[derive(Debug)]
pub enum Admission<'a> {
    /// Served: its place under the cap, freed on drop.
    Served(Slot<'a>),
    /// At the cap: a refusal is sent (its place among the refusals, freed
    /// on drop).
    Refused(Slot<'a>),
    /// At the cap with every refusal place taken: closed at once.
    Dropped,
}

/// A place under a count, given back on drop.
#[derive(Debug)]
pub struct Slot<'a>(&'a AtomicUsize);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Takes a place under `max` in `count`, if one is free.
fn take(count: &AtomicUsize, max: usize) -> Option<Slot<'_>> {
    count.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1)).ok()?;
    Some(Slot(count))
}

impl ConnLimit {
    /// At most `max` connections (at least one).
    pub fn new(max: usize) -> Self {
        ConnLimit { max: max.max(1), open: AtomicUsize::new(0), refusing: AtomicUsize::new(0) }
    }

    /// Admits a new connection, or not (H1).
    pub fn admit(&self) -> Admission<'_> {
        if let Some(slot) = take(&self.open, self.max) {
            return Admission::Served(slot);
        }
        match take(&self.refusing, MAX_REFUSING) {
            Some(slot) => Admission::Refused(slot),
            None => Admission::Dropped,
        }
    }

    /// H1 for a door whose connections cannot borrow the limit (the PD
    /// door's live in tasks of their own runtime): takes a place under the
    /// cap, `false` at the cap. The caller gives it back with
    /// [`ConnLimit::release_open`] exactly once, when the connection ends.
    pub fn take_open(&self) -> bool {
        take(&self.open, self.max).map(std::mem::forget).is_some()
    }

    /// Gives back a place taken by [`ConnLimit::take_open`].
    pub fn release_open(&self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
    }

    /// The connections served now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// The cap.
    pub fn max(&self) -> usize {
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_serves_refuses_then_drops_and_frees_on_drop() {
        let limit = ConnLimit::new(2);
        let a = limit.admit();
        let b = limit.admit();
        assert!(matches!((&a, &b), (Admission::Served(_), Admission::Served(_))));
        assert_eq!(limit.open(), 2);
        let refused: Vec<_> = (0..MAX_REFUSING).map(|_| limit.admit()).collect();
        assert!(refused.iter().all(|r| matches!(r, Admission::Refused(_))));
        assert!(matches!(limit.admit(), Admission::Dropped));
        drop(refused);
        assert!(matches!(limit.admit(), Admission::Refused(_)), "refusal places come back");
        drop(a);
        assert_eq!(limit.open(), 1);
        assert!(matches!(limit.admit(), Admission::Served(_)), "a freed place serves again");
    }

    #[test]
    fn the_default_leaves_room_for_peers_and_the_store() {
        assert_eq!(default_max_connections(3, None), DEFAULT_MAX_CONNECTIONS);
        assert_eq!(default_max_connections(3, Some(1_048_576)), DEFAULT_MAX_CONNECTIONS);
        assert_eq!(default_max_connections(3, Some(1024)), 1024 - FD_RESERVE as usize - 6);
        assert_eq!(default_max_connections(5, Some(10)), 1);
    }
}
