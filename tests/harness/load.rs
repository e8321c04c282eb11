//! A load generator for cluster tests and the checker of what it saw.
//!
//! [`Load::start`] runs client threads against a set of seed addresses until
//! [`Load::stop`]: each thread calls GetTS in a loop and records every call
//! (when it began, when it ended, what it got). Two kinds of clients run
//! side by side:
//! * **library clients**, each with its own [`leasetso_std::Client`] over all
//!   seeds (rotated so they start on different nodes): what applications
//!   use, with its redirects, seed fallback and retries until a deadline;
//! * **raw clients** on [`RawConn`], which follow `NotLeader` hints
//!   themselves, so the test can count the `NotLeader` replies a failover
//!   costs (the library client hides them) and see where hints point.
//!
//! A call that a client retries internally is one call, from its first send
//! to its final answer: that interval contains the successful attempt, so
//! checking real-time order on it never reports a false violation.
//!
//! [`History::check`] asserts what the oracle promises across failovers: every
//! timestamp unique, each client's increasing, real-time order across
//! clients (via [`check_calls`]), and no call longer than its deadline plus
//! a slack (nothing hangs).

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use leasetso_core::wire::Frame;
use leasetso_core::{ErrorCode, Timestamp};
use leasetso_std::{Client, ClientError};

use super::cluster::connect_client;
use crate::{Call, RawConn, check_calls};

/// Counts the calls cycle through: mostly singles, some small ranges.
const COUNTS: [u32; 8] = [1, 1, 3, 1, 1, 16, 1, 2];

/// How a [`Load`] runs.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Threads with a [`Client`] each (at least 8 in cluster tests).
    pub clients: usize,
    /// Threads on a [`RawConn`] following hints themselves.
    pub raw_clients: usize,
    /// How long one call may take, retries included, before it is a
    /// failure. Also the library clients' deadline.
    pub deadline: Duration,
    /// A pause between two calls of one thread, to keep the load from
    /// starving the nodes of CPU on a small machine (zero: none).
    pub pause: Duration,
    /// The read timeout of a raw client's connection (a node that neither
    /// answers nor closes, e.g. one partitioned mid-request).
    pub raw_read_timeout: Duration,
    /// Raw clients stay on their first seed, whatever it answers: a probe
    /// of one node (e.g. a partitioned leader) rather than a client of the
    /// cluster.
    pub pinned: bool,
    /// The client id of the first thread, so that the records of two loads
    /// can be checked together.
    pub first_id: usize,
}

impl Default for LoadOptions {
    /// 8 library clients, 2 raw ones, a 7 s deadline, 1 ms between calls.
    fn default() -> Self {
        LoadOptions {
            clients: 8,
            raw_clients: 2,
            deadline: Duration::from_secs(7),
            pause: Duration::from_millis(1),
            raw_read_timeout: Duration::from_secs(1),
            pinned: false,
            first_id: 0,
        }
    }
}

/// How one call ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The last timestamp of the range.
    Ok(Timestamp),
    /// Why it failed: the error's kind (e.g. `NotLeader`, `Timeout`), then
    /// its message.
    Failed {
        /// A short name to count by.
        kind: String,
        /// The whole message.
        message: String,
    },
}

/// One call as a client saw it.
#[derive(Clone, Debug)]
pub struct Record {
    /// The thread that made it (library clients first, then raw ones).
    pub client: usize,
    /// When it began.
    pub sent: Instant,
    /// When it ended.
    pub received: Instant,
    /// How many timestamps it asked for.
    pub count: u32,
    /// What it got.
    pub outcome: Outcome,
    /// For raw clients, the address that answered (or failed) last.
    pub addr: Option<SocketAddr>,
}

impl Record {
    /// The call as a [`Call`], if it succeeded.
    pub fn call(&self) -> Option<Call> {
        match self.outcome {
            Outcome::Ok(last) => Some(Call {
                client: self.client,
                sent: self.sent,
                received: self.received,
                count: self.count,
                last,
            }),
            Outcome::Failed { .. } => None,
        }
    }

    /// How long it took.
    pub fn took(&self) -> Duration {
        self.received - self.sent
    }
}

/// Counters the threads update while running.
#[derive(Default)]
struct Counters {
    ok: AtomicU64,
    failed: AtomicU64,
    not_leader: AtomicU64,
}

/// Client threads calling GetTS until stopped.
pub struct Load {
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
    handles: Vec<JoinHandle<Vec<Record>>>,
    opts: LoadOptions,
    started: Instant,
}

impl Load {
    /// Starts `opts.clients + opts.raw_clients` threads against `seeds` and
    /// returns once each has made its connection (or given up on one: a
    /// thread retries connecting until stopped).
    pub fn start(seeds: &[SocketAddr], opts: LoadOptions) -> Load {
        assert!(!seeds.is_empty(), "no seeds");
        let threads = opts.clients + opts.raw_clients;
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(Counters::default());
        let ready = Arc::new(Barrier::new(threads + 1));
        let handles = (0..threads)
            .map(|id| {
                let mut seeds = seeds.to_vec();
                let n = seeds.len();
                seeds.rotate_left(id % n);
                let (stop, counters, ready, opts) =
                    (stop.clone(), counters.clone(), ready.clone(), opts.clone());
                let raw = id >= opts.clients;
                let id = id + opts.first_id;
                thread::Builder::new()
                    .name(format!("load-{id}"))
                    .spawn(move || {
                        let ctx = Ctx { id, seeds, stop, counters, opts };
                        if raw { ctx.raw_loop(&ready) } else { ctx.client_loop(&ready) }
                    })
                    .expect("spawn a load thread")
            })
            .collect();
        ready.wait();
        Load { stop, counters, handles, opts, started: Instant::now() }
    }

    /// Successful calls so far.
    pub fn ok(&self) -> u64 {
        self.counters.ok.load(Ordering::Relaxed)
    }

    /// Failed calls so far.
    pub fn failed(&self) -> u64 {
        self.counters.failed.load(Ordering::Relaxed)
    }

    /// `NotLeader` replies the raw clients got so far, plus `NotLeader`
    /// errors the library clients returned.
    pub fn not_leader(&self) -> u64 {
        self.counters.not_leader.load(Ordering::Relaxed)
    }

    /// Waits until `more` calls have succeeded after this one was made, or
    /// `timeout` passes. Returns whether they did: the way to say "the
    /// cluster serves again".
    pub fn wait_progress(&self, more: u64, timeout: Duration) -> bool {
        let target = self.ok() + more;
        let deadline = Instant::now() + timeout;
        while self.ok() < target {
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(2));
        }
        true
    }

    /// Stops every thread, waits for their calls in flight (each ends
    /// within its deadline), and returns everything they saw.
    pub fn stop(mut self) -> History {
        self.stop.store(true, Ordering::SeqCst);
        let mut records = Vec::new();
        for handle in self.handles.drain(..) {
            records.extend(handle.join().unwrap_or_else(|e| std::panic::resume_unwind(e)));
        }
        History {
            records,
            not_leader_replies: self.counters.not_leader.load(Ordering::Relaxed),
            deadline: self.opts.deadline,
            started: self.started,
            stopped: Instant::now(),
        }
    }
}

impl Drop for Load {
    /// A load dropped without [`stop`](Self::stop) (a test panicking) still
    /// ends its threads, so none outlives the test.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for handle in self.handles.drain(..) {
            let _ = handle.join();
        }
    }
}

/// What one load thread knows.
struct Ctx {
    id: usize,
    seeds: Vec<SocketAddr>,
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
    opts: LoadOptions,
}

impl Ctx {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    fn count(&self, i: usize) -> u32 {
        COUNTS[(i + self.id) % COUNTS.len()]
    }

    fn note(&self, outcome: &Outcome) {
        match outcome {
            Outcome::Ok(_) => self.counters.ok.fetch_add(1, Ordering::Relaxed),
            Outcome::Failed { kind, .. } => {
                if kind == "NotLeader" {
                    self.counters.not_leader.fetch_add(1, Ordering::Relaxed);
                }
                self.counters.failed.fetch_add(1, Ordering::Relaxed)
            }
        };
    }

    /// A library client's thread: one [`Client`] over all seeds.
    fn client_loop(&self, ready: &Barrier) -> Vec<Record> {
        let mut client: Option<Client> = connect_client(&self.seeds, self.opts.deadline).ok();
        ready.wait();
        let mut records = Vec::new();
        let mut i = 0;
        while !self.stopped() {
            let Some(c) = &client else {
                // No seed answered (every node down at once): try again.
                thread::sleep(Duration::from_millis(20));
                client = connect_client(&self.seeds, self.opts.deadline).ok();
                continue;
            };
            let count = self.count(i);
            i += 1;
            let sent = Instant::now();
            let result = if count == 1 { c.get_ts() } else { c.get_ts_n(count) };
            let received = Instant::now();
            let outcome = match result {
                Ok(last) => Outcome::Ok(last),
                Err(e) => Outcome::Failed { kind: error_kind(&e), message: e.to_string() },
            };
            self.note(&outcome);
            let failed = matches!(outcome, Outcome::Failed { .. });
            records.push(Record { client: self.id, sent, received, count, outcome, addr: None });
            if failed {
                thread::sleep(Duration::from_millis(10));
            } else if !self.opts.pause.is_zero() {
                thread::sleep(self.opts.pause);
            }
        }
        records
    }

    /// A raw client's thread: follows hints, falls back to the seeds in
    /// turn, retries until the deadline, and counts `NotLeader` replies.
    fn raw_loop(&self, ready: &Barrier) -> Vec<Record> {
        let mut conn =
            Raw { seeds: &self.seeds, seed: 0, target: self.seeds[0], conn: None, pinned: self.opts.pinned };
        let _ = conn.ensure(self.opts.raw_read_timeout);
        ready.wait();
        let mut records = Vec::new();
        let mut i = 0;
        while !self.stopped() {
            let count = self.count(i);
            i += 1;
            let sent = Instant::now();
            let deadline = sent + self.opts.deadline;
            let mut pause = Duration::from_millis(2);
            let outcome = loop {
                let err = match conn.get_ts(count, self.opts.raw_read_timeout) {
                    Ok(Ok(last)) => break Outcome::Ok(last),
                    Ok(Err((ErrorCode::NotLeader, hint))) => {
                        self.counters.not_leader.fetch_add(1, Ordering::Relaxed);
                        conn.redirect(hint);
                        "NotLeader".to_string()
                    }
                    Ok(Err((code, _))) if code.is_retryable() => format!("{code:?}"),
                    Ok(Err((code, _))) => {
                        break Outcome::Failed {
                            kind: format!("{code:?}"),
                            message: format!("refused: {code:?}"),
                        };
                    }
                    Err(e) => {
                        conn.next_seed();
                        format!("i/o: {e}")
                    }
                };
                if Instant::now() + pause >= deadline {
                    break Outcome::Failed { kind: "Deadline".into(), message: format!("last error: {err}") };
                }
                thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            };
            let received = Instant::now();
            self.note(&outcome);
            records.push(Record { client: self.id, sent, received, count, outcome, addr: Some(conn.target) });
            if !self.opts.pause.is_zero() {
                thread::sleep(self.opts.pause);
            }
        }
        records
    }
}

/// A raw client's connection and where it points.
struct Raw<'a> {
    seeds: &'a [SocketAddr],
    seed: usize,
    target: SocketAddr,
    conn: Option<RawConn>,
    /// Never leave the first seed.
    pinned: bool,
}

impl Raw<'_> {
    fn ensure(&mut self, read_timeout: Duration) -> std::io::Result<&mut RawConn> {
        if self.conn.is_none() {
            let mut conn = RawConn::connect(self.target)?;
            conn.stream().set_read_timeout(Some(read_timeout))?;
            conn.hello()?;
            self.conn = Some(conn);
        }
        Ok(self.conn.as_mut().expect("just made"))
    }

    /// One GetTS on the current target: the answer, `Err((code, hint))` for
    /// an error frame, or an I/O error (the connection is dropped).
    #[allow(clippy::type_complexity)]
    fn get_ts(
        &mut self,
        count: u32,
        read_timeout: Duration,
    ) -> std::io::Result<Result<Timestamp, (ErrorCode, leasetso_core::LeaderHint)>> {
        let result = (|| {
            let conn = self.ensure(read_timeout)?;
            let id = conn.next_id();
            conn.send(&Frame::GetTs { id, count })?;
            match conn.recv()? {
                Frame::Ts { id: got, count: n, last } if got == id && n == count => Ok(Ok(last)),
                Frame::Error { id: got, code, leader } if got == id => Ok(Err((code, leader))),
                other => Err(std::io::Error::other(format!("GetTs {{ id: {id} }} answered with {other:?}"))),
            }
        })();
        if result.is_err() {
            self.conn = None;
        }
        result
    }

    /// Follows a `NotLeader` hint: its address if it has one and it is not
    /// where we are, the next seed otherwise.
    fn redirect(&mut self, hint: leasetso_core::LeaderHint) {
        match hint.addr {
            _ if self.pinned => {}
            Some(addr) if addr != self.target => {
                self.target = addr;
                self.conn = None;
            }
            _ => self.next_seed(),
        }
    }

    fn next_seed(&mut self) {
        self.conn = None;
        if self.pinned {
            return;
        }
        self.seed = (self.seed + 1) % self.seeds.len();
        self.target = self.seeds[self.seed];
        self.conn = None;
    }
}

/// A short name for an error, to count by: the server's code if it
/// refused, else the error's variant (the first word of its `Debug`).
pub fn error_kind(e: &ClientError) -> String {
    match e.code() {
        Some(code) => format!("{code:?}"),
        None => format!("{e:?}").chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect(),
    }
}

/// Everything a [`Load`] saw.
#[derive(Clone, Debug)]
pub struct History {
    /// Every call of every thread.
    pub records: Vec<Record>,
    /// `NotLeader` replies seen by raw clients plus `NotLeader` errors
    /// returned to library clients.
    pub not_leader_replies: u64,
    /// The per-call deadline the load ran with.
    pub deadline: Duration,
    /// When the load started and stopped.
    pub started: Instant,
    /// When the load stopped.
    pub stopped: Instant,
}

/// What [`History::check`] found (it panics on a violation).
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// Calls that got timestamps.
    pub ok: usize,
    /// Timestamps handed out, all ranges together.
    pub timestamps: u64,
    /// Failed calls by kind.
    pub failed: BTreeMap<String, u64>,
    /// `NotLeader` replies (see [`History::not_leader_replies`]).
    pub not_leader_replies: u64,
    /// The longest call.
    pub longest: Duration,
    /// The longest time no call succeeded, between the load's start and stop.
    pub longest_gap: Duration,
}

impl Summary {
    /// Failed calls, all kinds together.
    pub fn failures(&self) -> u64 {
        self.failed.values().sum()
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} calls ok ({} timestamps), {} failed {:?}, {} NotLeader replies, longest call {:?}, longest gap {:?}",
            self.ok,
            self.timestamps,
            self.failures(),
            self.failed,
            self.not_leader_replies,
            self.longest,
            self.longest_gap
        )
    }
}

impl History {
    /// Adds the successful calls of `other` (e.g. a probe's, whose
    /// failures do not count against this load), to check them together.
    /// The two loads must have had different `first_id`s.
    pub fn add_successes(&mut self, other: &History) {
        self.records.extend(other.records.iter().filter(|r| r.call().is_some()).cloned());
    }

    /// The successful calls.
    pub fn calls(&self) -> Vec<Call> {
        self.records.iter().filter_map(Record::call).collect()
    }

    /// The failed calls.
    pub fn failures(&self) -> Vec<&Record> {
        self.records.iter().filter(|r| r.call().is_none()).collect()
    }

    /// Asserts the oracle's guarantees on every successful call (unique,
    /// per-client increasing, real-time ordered: [`check_calls`]) and that
    /// no call, failed or not, took longer than the deadline plus `slack`.
    /// Panics on a violation; returns the counts otherwise.
    pub fn check(&self, slack: Duration) -> Summary {
        let calls = self.calls();
        let timestamps = check_calls(&calls);
        let bound = self.deadline + slack;
        if let Some(slow) = self.records.iter().filter(|r| r.took() > bound).max_by_key(|r| r.took()) {
            panic!(
                "a call took {:?}, longer than its deadline {:?} plus {slack:?} (it hung): {slow:?}",
                slow.took(),
                self.deadline
            );
        }
        let mut failed = BTreeMap::new();
        for r in &self.records {
            if let Outcome::Failed { kind, .. } = &r.outcome {
                *failed.entry(kind.clone()).or_insert(0) += 1;
            }
        }
        Summary {
            ok: calls.len(),
            timestamps,
            failed,
            not_leader_replies: self.not_leader_replies,
            longest: self.records.iter().map(Record::took).max().unwrap_or_default(),
            longest_gap: self.longest_gap(self.started, self.stopped),
        }
    }

    /// Asserts that no call failed, showing the first few that did.
    pub fn assert_no_failures(&self, what: &str) {
        let failures = self.failures();
        if !failures.is_empty() {
            let shown: Vec<String> = failures.iter().take(5).map(|r| format!("  {r:?}")).collect();
            panic!(
                "{what}: {} of {} calls failed, e.g.:\n{}",
                failures.len(),
                self.records.len(),
                shown.join("\n")
            );
        }
    }

    /// The longest stretch within `from..to` in which no call succeeded:
    /// the gaps between consecutive successful answers, and the edges.
    /// Service gaps of a failover are measured with it.
    pub fn longest_gap(&self, from: Instant, to: Instant) -> Duration {
        let mut times: Vec<Instant> = self
            .records
            .iter()
            .filter(|r| r.call().is_some() && r.received >= from && r.received <= to)
            .map(|r| r.received)
            .collect();
        times.sort();
        let mut prev = from;
        let mut longest = Duration::ZERO;
        for t in times.into_iter().chain(std::iter::once(to)) {
            longest = longest.max(t.saturating_duration_since(prev));
            prev = t;
        }
        longest
    }

    /// The highest timestamp of a call answered before `t`.
    pub fn max_before(&self, t: Instant) -> Option<Timestamp> {
        self.calls().iter().filter(|c| c.received < t).map(|c| c.last).max()
    }

    /// The lowest first timestamp of a call sent after `t` (packed).
    pub fn min_first_after(&self, t: Instant) -> Option<u64> {
        self.calls().iter().filter(|c| c.sent > t).map(Call::first).min()
    }

    /// Asserts that every call sent after `t` got timestamps above every
    /// call answered before `t`: nothing went back across an event at `t`
    /// (a restart, a partition's healing). Returns whether both sides had
    /// calls to compare.
    pub fn assert_above_across(&self, t: Instant, what: &str) -> bool {
        match (self.max_before(t), self.min_first_after(t)) {
            (Some(before), Some(after)) => {
                assert!(
                    before.to_u64() < after,
                    "{what}: a timestamp after ({after}) is not above one before ({}, {before:?})",
                    before.to_u64()
                );
                true
            }
            _ => false,
        }
    }
}
