//! What the simulator checks, and how a broken check is reported.
//!
//! 1. **Exclusive lease**: at most one node holds the lease
//!    (`Node::lease(local_now)`) and at most one serves
//!    (`Node::is_serving(local_now)`) at any instant of true time, whatever
//!    the nodes' modes (one lease for deferring and primary nodes alike).
//! 2. **Timestamps only go up**: every range handed out lies above every
//!    range handed out earlier in true time, by any node; and every
//!    timestamp lies below a window saved on a quorum of replicas. One
//!    history across a migration: the primary's timestamps continue the
//!    deferring leader's.
//! 3. **Stores only go up**: no replica's window or fence ever decreases.
//! 4. **Liveness**: once the network has healed and nothing has crashed for
//!    three lease periods, some node holds the lease and serves. The quiet
//!    tail starts when the faults stop, every packet the faulty network
//!    delayed has arrived, and every node restarted at the heal is out of
//!    quarantine (until then it is still recovering from its crash); three
//!    lease periods are measured on the slowest clock the drift bound allows.
//!    A run that migrates waits longer (`config::tail_length`): for the
//!    deferring leader's next save, the primary's registration, the yielded
//!    nodes' reads and the operator's clear. A liveness script
//!    (`Scenario::NotGreaterAhead`) checks instead that a node serves, and
//!    goes on serving, while the network stays as the script left it.
//! 5. **No second writer** (the store's primary check, per replica): no
//!    checked (deferring, `check_primary = true`) load or save succeeds on a
//!    replica after a registration returned there, unless a `ClearPrimary`
//!    removed it since. Each replica keeps a write log ([`ReplicaLog`]) of
//!    what it performed; the registration standing is read from the log's
//!    `RegisterPrimary` and `ClearPrimary` entries, not from the store, so a
//!    store whose check and write are two transactions is caught even though
//!    each of them is right on its own.
//! 6. **A yielded node stays out**: a node yielded to a primary
//!    (`Node::yielded_to()`) never holds the lease. Yielded ends only with
//!    `Resumed`, after a quorum read found no registration, so this says
//!    what the design promises (no `LearnChosen`, heard Release or timer
//!    re-arms it) and more: a yielded node never owns the lease at all.
//! 7. **Not while a quorum holds one**: a yielded node does not resume from a
//!    registration read begun while a registration stood on a quorum of
//!    replicas with no clear taking effect since (registrations only go away
//!    by a clear, so every replica of that quorum still holds one when read,
//!    and every quorum read meets one). With 6: while a registration stands on
//!    a quorum, a yielded node never becomes the owner. The design supports no
//!    more: with a registration on a minority only (a primary that crashed
//!    while registering), a yielded node rightly resumes, may win the lease,
//!    and yields again when its load or save meets that replica.
//! 8. **One `PrimaryExists` is enough**: a deferring node that hears
//!    `PrimaryExists` in answer to a request of its own process (in its
//!    round or after it: a late reply) has yielded once it has handled it.
//! 9. **The margin**: a node serves only with more than the margin `m` of
//!    its lease left (`now + m < d` on its clock), so that an operation that
//!    takes up to `m` completes while the lease is held.
//! 10. **Leaderships under the lease**: a node begins a leadership
//!     (`Event::Leading`: it fences the store and syncs) only while holding
//!     the lease whose ballot is the fence. A leadership begun for a lease
//!     that is already over fences the store for a ballot nobody holds, and
//!     ends the real owner's leadership at its next save.
//! 11. **Bounds (B1–B4)**: no node refuses a correct member's value as
//!     implausible (`Event::Refused`), no replica refuses a correct node's
//!     operation (`StoreReject::Implausible`; replicas check with their own
//!     simulated wall clock), and no timestamp's physical part is more than
//!     `max_ahead_ms` ahead of the highest wall clock reading its leader was
//!     given. Only a faulty member's forgeries (`World::forge`) are refused.
//!     The runs report the largest counter, counter step, fence, restart,
//!     physical-ahead and window-ahead they reach, against the bounds.
//!
//! Checking (1) after every event is exact, not a sample. A node starts
//! holding the lease only inside a handler (P4, on an `Accepted`) and starts
//! serving only inside a handler (the store reply that completes its sync);
//! between two events its clock only advances, and `lease`/`is_serving` are
//! `now < d`-style comparisons against deadlines fixed in the node, so they can
//! only turn from true to false while no event happens. If two nodes held the
//! lease at some instant `t`, each began its holding interval at an event no
//! later than `t` and still held at `t`, so both hold right after the later
//! of those two events, where the check runs. The same holds for 6 (a node
//! acquires and yields only in handlers), and 5, 7, 8 and 10 are checked in
//! the handlers where what they forbid would happen. Check 9 is a sample:
//! time passing alone takes a serving node into its margin, so it is seen at
//! the next event (of any node: events are milliseconds apart under load).

use std::collections::VecDeque;
use std::fmt;

use leasetso_core_variants::{Ballot, MemStore, NodeId, StoreOp, StoreReply};

/// What went wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ViolationKind {
    /// Two nodes hold the lease at the same instant.
    TwoOwners,
    /// Two nodes serve at the same instant.
    TwoServing,
    /// A timestamp range is not above everything handed out before.
    TimestampBack,
    /// A timestamp at or beyond the window saved on a quorum.
    BeyondWindow,
    /// A range that crosses a millisecond or includes logical 0, or a
    /// request that should have been refused was served.
    BadRange,
    /// A replica's window or fence went down.
    StoreWentDown,
    /// After a quiet tail of three lease periods, nobody serves (or, in a
    /// liveness script, nobody serves for long).
    NoLiveness,
    /// A replica performed a checked (deferring) load or save successfully
    /// after a registration had returned there, and was not cleared since.
    CheckedWriteAfterRegistration,
    /// A node that yielded to a primary holds the lease.
    YieldedOwner,
    /// A yielded node resumed after a registration read begun while a
    /// registration stood on a quorum, with no clear since.
    ResumedUnderPrimary,
    /// A deferring node heard `PrimaryExists` (to a request of its own
    /// process) and did not yield.
    IgnoredPrimary,
    /// A node began a leadership (fenced the store) without holding the
    /// lease it won.
    LeadWithoutLease,
    /// A node serves with no more than the margin `m` of its lease left.
    ServedInMargin,
    /// The node asked to be woken at a time that has passed, again and
    /// again, or the run never ends.
    Stuck,
    /// A node or replica refused a correct member's value as implausible.
    RefusedCorrect,
    /// A timestamp's physical part beyond the ahead bound (B3).
    TooFarAhead,
}

/// A broken check, with the true time it was seen at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// What.
    pub kind: ViolationKind,
    /// True time, ns.
    pub at: u64,
    /// Who and how, in words.
    pub detail: String,
}

impl Violation {
    /// Whether this is a safety violation of the lease (two owners at once).
    pub fn two_owners(&self) -> bool {
        matches!(self.kind, ViolationKind::TwoOwners | ViolationKind::TwoServing)
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} at {}: {}", self.kind, fmt_time(self.at), self.detail)
    }
}

/// True time for humans: seconds with microseconds.
pub fn fmt_time(ns: u64) -> String {
    format!("{}.{:06}s", ns / 1_000_000_000, ns % 1_000_000_000 / 1_000)
}

/// What a replica holds that must never go down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreMark {
    /// The saved window end.
    pub window_end_ms: u64,
    /// The fence.
    pub fence: Ballot,
}

impl StoreMark {
    /// The replica's current mark.
    pub fn of(store: &MemStore) -> Self {
        StoreMark { window_end_ms: store.window_end_ms(), fence: store.fence() }
    }

    /// Check 3: `after` is nowhere below `self`.
    pub fn check_growth(&self, after: &StoreMark) -> Result<(), String> {
        if after.window_end_ms < self.window_end_ms {
            return Err(format!("window went from {} to {}", self.window_end_ms, after.window_end_ms));
        }
        let (b, a) = (self.fence, after.fence);
        if a < b {
            return Err(format!("the fence went from {b} to {a}"));
        }
        Ok(())
    }
}

/// What one replica performed: the registration its `RegisterPrimary` and
/// `ClearPrimary` entries leave standing (check 5 reads it, independently of
/// the store's own state), and its last operations, for reports.
#[derive(Clone, Debug, Default)]
pub struct ReplicaLog {
    registered: Option<(NodeId, Ballot, u64)>,
    recent: VecDeque<(u64, StoreOp, StoreReply)>,
}

impl ReplicaLog {
    /// Entries kept for reports.
    const KEEP: usize = 12;

    /// The registration standing per the log, and since when (true time) one
    /// has stood without a clear.
    pub fn registered(&self) -> Option<(NodeId, Ballot, u64)> {
        self.registered
    }

    /// The replica performed `op` at true time `at`, with the store's answer
    /// `reply` (whatever its caller was told).
    pub fn record(&mut self, at: u64, op: StoreOp, reply: StoreReply) {
        if self.recent.len() == Self::KEEP {
            self.recent.pop_front();
        }
        self.recent.push_back((at, op, reply));
        match op {
            StoreOp::RegisterPrimary { id, tag } if reply.is_ok() => {
                let since = self.registered.map_or(at, |(_, _, since)| since);
                self.registered = Some((id, tag, since));
            }
            StoreOp::ClearPrimary { id, tag }
                if reply.is_ok() && self.registered.is_some_and(|(i, t, _)| (i, t) == (id, tag)) =>
            {
                self.registered = None;
            }
            _ => {}
        }
    }

    /// The entries kept, a line each.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for (at, op, reply) in &self.recent {
            out.push_str(&format!("    {}  {op:?} -> {reply:?}\n", fmt_time(*at)));
        }
        out
    }
}

/// One successful GetTS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Issued {
    /// True time, ns.
    pub at: u64,
    /// The node that served it.
    pub node: u16,
    /// The packed last timestamp of the range.
    pub last: u64,
    /// How many timestamps.
    pub count: u32,
}

impl Issued {
    /// The packed first timestamp of the range.
    pub fn first(&self) -> u64 {
        self.last - u64::from(self.count - 1)
    }
}

impl fmt::Display for Issued {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "n{} handed out {}..={} (physical {} ms, {} timestamps) at {}",
            self.node,
            self.first(),
            self.last,
            self.last >> leasetso_core_variants::LOGICAL_BITS,
            self.count,
            fmt_time(self.at)
        )
    }
}
