//! The server's counters: bumped by its connections, its driver and its
//! store thread, read by `stats()` and by the metrics listener.
//!
//! Recording a GetTS is a few relaxed atomic adds and nothing else: no lock,
//! no allocation, no label lookup. Each connection sums what one step of it
//! served in a [`DoorTally`] on its own stack and adds it to the door's
//! [`DoorStats`] once per step ([`DoorTally::flush`]), so pipelined
//! requests cost one add per counter per read, and many connections do not
//! pass the counters' cache lines around per request. The labels a metric
//! carries (door, result, bucket) are array indices fixed at compile time;
//! the metrics listener turns them into names at scrape time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use leasetso_core::{GetTsError, Tally, Timestamp, TsRefusal};

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

/// The doors timestamps are asked at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DoorKind {
    /// The native protocol (PROTOCOL.md).
    Native = 0,
    /// The Redis door (`TSO`).
    Redis = 1,
    /// The PD-compatible gRPC door (`pdpb.PD/Tso`).
    Grpc = 2,
}

impl DoorKind {
    /// Every door, in index order.
    pub const ALL: [DoorKind; 3] = [DoorKind::Native, DoorKind::Redis, DoorKind::Grpc];

    /// Its label value.
    pub fn name(self) -> &'static str {
        match self {
            DoorKind::Native => "native",
            DoorKind::Redis => "redis",
            DoorKind::Grpc => "grpc",
        }
    }
}

/// How a GetTS ended, as a metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TsResult {
    /// Timestamps handed out.
    Ok = 0,
    /// Not the leader (or not serving yet).
    NotLeader = 1,
    /// Logical exhausted or physical at its bound: retry shortly.
    Exhausted = 2,
    /// A count of 0 or too large.
    Invalid = 3,
    /// The node could not answer.
    Unavailable = 4,
}

impl TsResult {
    /// Every result, in index order.
    pub const ALL: [TsResult; 5] =
        [TsResult::Ok, TsResult::NotLeader, TsResult::Exhausted, TsResult::Invalid, TsResult::Unavailable];

    /// Its label value.
    pub fn name(self) -> &'static str {
        match self {
            TsResult::Ok => "ok",
            TsResult::NotLeader => "not_leader",
            TsResult::Exhausted => "exhausted",
            TsResult::Invalid => "invalid",
            TsResult::Unavailable => "unavailable",
        }
    }

    /// How `result` ended.
    pub fn of(result: &Result<Timestamp, TsRefusal>) -> TsResult {
        match result {
            Ok(_) => TsResult::Ok,
            Err(TsRefusal::Unavailable) => TsResult::Unavailable,
            Err(TsRefusal::Node(e)) => match e {
                GetTsError::NotLeader { .. } => TsResult::NotLeader,
                GetTsError::LogicalExhausted => TsResult::Exhausted,
                GetTsError::ZeroCount | GetTsError::CountTooLarge { .. } => TsResult::Invalid,
                #[allow(unreachable_patterns)]
                _ => TsResult::Unavailable,
            },
        }
    }
}

/// Batch-size buckets: a count lands in the first bucket whose bound is at
/// least it; bounds are powers of two, 1 to 2^17, and one past them.
pub const BATCH_BUCKETS: usize = 19;

/// The batch bucket of `count` (its bit length, so no search).
pub fn batch_bucket(count: u32) -> usize {
    let bits = (u32::BITS - count.saturating_sub(1).leading_zeros()) as usize;
    bits.min(BATCH_BUCKETS - 1)
}

/// The upper bound of batch bucket `i` (`+Inf` for the last).
pub fn batch_bound(i: usize) -> f64 {
    if i + 1 >= BATCH_BUCKETS { f64::INFINITY } else { (1u64 << i) as f64 }
}

/// Handling-time buckets, upper bounds in microseconds, and one past them.
pub const HANDLE_BOUNDS_US: [u64; 14] =
    [5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000];
/// Handling-time buckets, the last one past every bound.
pub const HANDLE_BUCKETS: usize = HANDLE_BOUNDS_US.len() + 1;

/// A histogram of atomic buckets (non-cumulative), its count and sum.
#[derive(Debug)]
pub struct Histogram<const N: usize> {
    buckets: [AtomicU64; N],
    /// The sum of the observations, in the histogram's unit.
    sum: AtomicU64,
}

impl<const N: usize> Default for Histogram<N> {
    fn default() -> Self {
        Histogram { buckets: std::array::from_fn(|_| AtomicU64::new(0)), sum: AtomicU64::new(0) }
    }
}

impl<const N: usize> Histogram<N> {
    /// Adds `n` observations to bucket `i` and `sum` to the sum.
    pub fn add(&self, i: usize, n: u64, sum: u64) {
        if let Some(b) = self.buckets.get(i) {
            b.fetch_add(n, Ordering::Relaxed);
        }
        self.sum.fetch_add(sum, Ordering::Relaxed);
    }

    /// The buckets, non-cumulative, and the sum.
    pub fn read(&self) -> ([u64; N], u64) {
        (std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed)), self.sum.load(Ordering::Relaxed))
    }
}

/// What one door served.
#[derive(Debug, Default)]
pub struct DoorStats {
    /// GetTS requests by result ([`TsResult`] index).
    pub requests: [AtomicU64; 5],
    /// Timestamps handed out.
    pub timestamps: AtomicU64,
    /// Counts of the successful requests (the sum is `timestamps`).
    pub batch: Histogram<BATCH_BUCKETS>,
    /// Time a step of a connection took to answer what it read, in µs
    /// (steps that answered at least one GetTS).
    pub handle: Histogram<HANDLE_BUCKETS>,
    /// Connections open now.
    pub open: AtomicU64,
}

/// What one connection's step served, summed on its own stack and added to
/// its door's [`DoorStats`] once ([`DoorTally::flush`]).
#[derive(Clone, Debug)]
pub struct DoorTally {
    requests: [u64; 5],
    timestamps: u64,
    batch: [u64; BATCH_BUCKETS],
    status: u64,
    errors: u64,
}

impl Default for DoorTally {
    fn default() -> Self {
        DoorTally { requests: [0; 5], timestamps: 0, batch: [0; BATCH_BUCKETS], status: 0, errors: 0 }
    }
}

impl DoorTally {
    /// One GetTS of `count` and how it ended.
    pub fn record(&mut self, count: u32, result: &Result<Timestamp, TsRefusal>) {
        let r = TsResult::of(result);
        self.requests[r as usize] += 1;
        if r == TsResult::Ok {
            self.timestamps += u64::from(count);
            self.batch[batch_bucket(count)] += 1;
        }
    }

    /// What a session reports besides GetTS (`Backend::tally`).
    pub fn tally(&mut self, tally: Tally) {
        match tally {
            Tally::GetStatus => self.status += 1,
            Tally::Error => self.errors += 1,
            // Counted with their results, by `record`.
            Tally::GetTs | Tally::Timestamps(_) => {}
        }
    }

    /// Whether the step answered any GetTS.
    pub fn served(&self) -> bool {
        self.requests.iter().any(|&n| n > 0)
    }

    /// Adds the step to `door` and the server's `counters`, with the time
    /// the step took if it answered a GetTS; starts over.
    pub fn flush(&mut self, counters: &Counters, door: DoorKind, took: Duration) {
        let stats = &counters.doors[door as usize];
        if self.served() {
            let (bucket, us) = time_bucket(took);
            stats.handle.add(bucket, 1, us);
        }
        for (counter, n) in stats.requests.iter().zip(&mut self.requests) {
            if *n > 0 {
                counter.fetch_add(std::mem::take(n), Ordering::Relaxed);
            }
        }
        if self.timestamps > 0 {
            let sum = std::mem::take(&mut self.timestamps);
            stats.timestamps.fetch_add(sum, Ordering::Relaxed);
            for (i, n) in self.batch.iter_mut().enumerate() {
                if *n > 0 {
                    stats.batch.add(i, std::mem::take(n), 0);
                }
            }
            stats.batch.sum.fetch_add(sum, Ordering::Relaxed);
        }
        for (counter, n) in
            [(&counters.status_requests, &mut self.status), (&counters.errors, &mut self.errors)]
        {
            if *n > 0 {
                counter.fetch_add(std::mem::take(n), Ordering::Relaxed);
            }
        }
    }
}

/// A connection counted open at its door until dropped.
#[derive(Debug)]
pub struct OpenGuard<'a>(&'a AtomicU64);

impl<'a> OpenGuard<'a> {
    /// Counts one more open connection in `open`.
    pub fn new(open: &'a AtomicU64) -> Self {
        open.fetch_add(1, Ordering::Relaxed);
        OpenGuard(open)
    }
}

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Store operations, as metric labels.
pub const STORE_OPS: [&str; 5] = ["load", "save", "register_primary", "clear_primary", "read_primary"];
/// How a store operation ended, as metric labels.
pub const STORE_RESULTS: [&str; 3] = ["ok", "refused", "failed"];

/// The bucket of a duration in the handling-time histograms.
pub fn time_bucket(took: Duration) -> (usize, u64) {
    let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
    (HANDLE_BOUNDS_US.iter().position(|&b| us <= b).unwrap_or(HANDLE_BOUNDS_US.len()), us)
}

/// What this node's replica did, kept by the store thread.
#[derive(Debug, Default)]
pub struct StoreStats {
    /// Operations by kind and result (`[STORE_OPS][STORE_RESULTS]`).
    pub ops: [[AtomicU64; 3]; 5],
    /// Their durations in µs, by kind.
    pub time: [Histogram<HANDLE_BUCKETS>; 5],
}

impl StoreStats {
    /// One operation of kind `op` (a [`STORE_OPS`] index) ended with
    /// `result` (a [`STORE_RESULTS`] index) after `took`.
    pub fn record(&self, op: usize, result: usize, took: Duration) {
        if let Some(c) = self.ops.get(op).and_then(|r| r.get(result)) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        let (bucket, us) = time_bucket(took);
        if let Some(h) = self.time.get(op) {
            h.add(bucket, 1, us);
        }
    }
}

/// The live counters behind [`ServerStats`] and the metrics, shared by
/// every connection, the driver and the store thread of one server.
///
/// Relaxed atomics: each counter is a statistic on its own, no reader
/// infers one from another, so a snapshot needs no ordering between them.
#[derive(Debug, Default)]
pub struct Counters {
    /// Client connections accepted.
    pub connections: AtomicU64,
    /// Per door: what it served ([`DoorKind`] index).
    pub doors: [DoorStats; 3],
    /// Status requests answered.
    pub status_requests: AtomicU64,
    /// Error frames sent.
    pub errors: AtomicU64,
    /// Connections refused at the cap.
    pub refused_connections: AtomicU64,
    /// Handshakes not finished in time.
    pub handshake_timeouts: AtomicU64,
    /// Elections this node started (a Prepare while holding no lease).
    pub elections_started: AtomicU64,
    /// Elections this node won (a fresh acquisition).
    pub elections_won: AtomicU64,
    /// Elections this node started that ended without the lease (counted
    /// when the next one starts).
    pub elections_lost: AtomicU64,
    /// Changes of the leader this node knows of.
    pub leader_changes: AtomicU64,
    /// Times this node stopped serving.
    pub step_downs: AtomicU64,
}

impl Counters {
    /// Adds `by` to one of the counters.
    pub fn bump(counter: &AtomicU64, by: u64) {
        counter.fetch_add(by, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn snapshot(&self) -> ServerStats {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let doors = self.doors.iter();
        ServerStats {
            connections: load(&self.connections),
            get_ts_requests: doors.clone().flat_map(|d| d.requests.iter()).map(load).sum(),
            timestamps: doors.map(|d| load(&d.timestamps)).sum(),
            status_requests: load(&self.status_requests),
            errors: load(&self.errors),
            refused_connections: load(&self.refused_connections),
            handshake_timeouts: load(&self.handshake_timeouts),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_buckets_are_bit_lengths() {
        assert_eq!(batch_bucket(1), 0);
        assert_eq!(batch_bucket(2), 1);
        assert_eq!(batch_bucket(3), 2);
        assert_eq!(batch_bucket(4), 2);
        assert_eq!(batch_bucket(64), 6);
        assert_eq!(batch_bucket(65), 7);
        assert_eq!(batch_bucket(262_143), 18);
        assert_eq!(batch_bound(6), 64.0);
        assert!(batch_bound(BATCH_BUCKETS - 1).is_infinite());
        // Every count fits the bucket it lands in.
        for count in [1u32, 2, 5, 64, 1000, 131_072, 131_073, 262_143] {
            assert!(f64::from(count) <= batch_bound(batch_bucket(count)), "{count}");
            let i = batch_bucket(count);
            assert!(i == 0 || f64::from(count) > batch_bound(i - 1), "{count}");
        }
    }

    #[test]
    fn a_tally_lands_in_its_door_once_per_flush() {
        let c = Counters::default();
        let mut t = DoorTally::default();
        let ts = Ok(Timestamp::new(1, 9).unwrap());
        t.record(7, &ts);
        t.record(2, &ts);
        t.record(0, &Err(TsRefusal::Node(GetTsError::ZeroCount)));
        t.tally(Tally::GetStatus);
        t.tally(Tally::Error);
        t.flush(&c, DoorKind::Redis, Duration::from_micros(30));
        Counters::bump(&c.connections, 3);
        let want = ServerStats {
            connections: 3,
            get_ts_requests: 3,
            timestamps: 9,
            status_requests: 1,
            errors: 1,
            ..ServerStats::default()
        };
        assert_eq!(c.snapshot(), want);
        let redis = &c.doors[DoorKind::Redis as usize];
        assert_eq!(redis.requests[TsResult::Ok as usize].load(Ordering::Relaxed), 2);
        assert_eq!(redis.requests[TsResult::Invalid as usize].load(Ordering::Relaxed), 1);
        let (batch, sum) = redis.batch.read();
        assert_eq!((batch[batch_bucket(7)], batch[batch_bucket(2)], sum), (1, 1, 9));
        let (handle, us) = redis.handle.read();
        assert_eq!((handle[3], us), (1, 30), "30 µs lands in the 50 µs bucket");
        // A second flush adds nothing more.
        t.flush(&c, DoorKind::Redis, Duration::from_micros(30));
        assert_eq!(c.snapshot(), want);
        assert_eq!(c.doors[DoorKind::Native as usize].timestamps.load(Ordering::Relaxed), 0);
    }
}
