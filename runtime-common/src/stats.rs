//! The server's counters: bumped by its connections, read by `stats()`.

use std::sync::atomic::{AtomicU64, Ordering};

use leasetso_core::Tally;

/// Counters of what the server has done since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// Client connections accepted (binary and RESP).
    pub connections: u64,
    /// GetTS requests answered, with timestamps or with an error.
    pub get_ts_requests: u64,
    /// Timestamps handed out (the sum of the counts of successful GetTS).
    pub timestamps: u64,
    /// Status requests answered.
    pub status_requests: u64,
    /// Error frames sent, per request or fatal.
    pub errors: u64,
    /// Connections refused or closed at the connection cap (H1).
    pub refused_connections: u64,
    /// Connections closed for not finishing their handshake in time (H2).
    pub handshake_timeouts: u64,
}

/// The live counters behind [`ServerStats`], shared by every connection of
/// one server.
///
/// Relaxed atomics: each counter is a statistic on its own, no reader infers
/// one from another, so a snapshot needs no ordering between them, and a
/// bump on the GetTS path costs one uncontended-in-the-common-case add.
#[derive(Debug, Default)]
pub struct Counters {
    /// Client connections accepted.
    pub connections: AtomicU64,
    /// GetTS requests answered.
    pub get_ts_requests: AtomicU64,
    /// Timestamps handed out.
    pub timestamps: AtomicU64,
    /// Status requests answered.
    pub status_requests: AtomicU64,
    /// Error frames sent.
    pub errors: AtomicU64,
    /// Connections refused at the cap.
    pub refused_connections: AtomicU64,
    /// Handshakes not finished in time.
    pub handshake_timeouts: AtomicU64,
}

impl Counters {
    /// Adds `by` to one of the counters.
    pub fn bump(counter: &AtomicU64, by: u64) {
        counter.fetch_add(by, Ordering::Relaxed);
    }

    /// Counts what a connection session reports (`Backend::tally`).
    pub fn tally(&self, tally: Tally) {
        match tally {
            Tally::GetTs => Self::bump(&self.get_ts_requests, 1),
            Tally::Timestamps(count) => Self::bump(&self.timestamps, u64::from(count)),
            Tally::GetStatus => Self::bump(&self.status_requests, 1),
            Tally::Error => Self::bump(&self.errors, 1),
        }
    }

    /// The counters now.
    pub fn snapshot(&self) -> ServerStats {
        ServerStats {
            connections: self.connections.load(Ordering::Relaxed),
            get_ts_requests: self.get_ts_requests.load(Ordering::Relaxed),
            timestamps: self.timestamps.load(Ordering::Relaxed),
            status_requests: self.status_requests.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            refused_connections: self.refused_connections.load(Ordering::Relaxed),
            handshake_timeouts: self.handshake_timeouts.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tallies_land_in_their_own_counter() {
        let c = Counters::default();
        c.tally(Tally::GetTs);
        c.tally(Tally::GetTs);
        c.tally(Tally::Timestamps(7));
        c.tally(Tally::Timestamps(5));
        c.tally(Tally::GetStatus);
        c.tally(Tally::Error);
        Counters::bump(&c.connections, 3);
        let want = ServerStats {
            connections: 3,
            get_ts_requests: 2,
            timestamps: 12,
            status_requests: 1,
            errors: 1,
            ..ServerStats::default()
        };
        assert_eq!(c.snapshot(), want);
    }
}
