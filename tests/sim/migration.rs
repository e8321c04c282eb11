//! Migration plans: a deferring cluster restarted, node by node, as primary
//! (ARCHITECTURE.md, "Bird's-eye view": modes), and the rollback.
//!
//! A plan is the operator's part of a run; the faults go on around it
//! (crashes, restarts, partitions, lost and late packets during the
//! migration). What the world does at each step:
//!
//! * **Restart as primary** (`order[k]` at `start + k·gap`): the node is
//!   stopped, gracefully (P6 release, then exit) or killed, and restarted
//!   after a random downtime with `Mode::Primary`. A node that is down at that
//!   moment just comes back as primary. From then on every restart of it
//!   (the faults') is as primary: it registers with a fresh tag, then
//!   campaigns.
//! * **Rollback** (at `rollback.at`, after the last restart as primary):
//!   every primary-mode node is configured deferring again and restarted,
//!   in one of three orders ([`Order`]): stopped, the registration cleared,
//!   then started; stopped and started at once (it yields to its own
//!   registration until the clear); or the clear begun while the primaries
//!   still run (the CLI refuses only while the registered node serves, so
//!   another primary may be serving) and the primaries restarted a while
//!   later. The operator clears the registration the way `leasetso primary
//!   clear` does: it reads the `(id, tag)` each reachable replica holds and
//!   sends that exact `ClearPrimary` to it, each arriving after its own
//!   delay (so a registration still in flight can land in between and
//!   survive the exact match), refusing while the registered node serves as
//!   primary. It repeats the pass every lease period until the end of the
//!   run, so a registration that lands late (a request of a primary sent
//!   before it was stopped, or a running primary's re-registration after a
//!   crash) is cleared too.
//!
//! Every time is drawn so that the plan is carried out while faults are
//! still being injected; should a step still be due at the heal, the heal
//! carries it out at once.

use super::check::fmt_time;
use super::rng::{PPM, Rng};
use super::world::SEC;

/// In which order a rollback stops the primaries, clears the registration
/// and starts the nodes again deferring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// Stopped, cleared, then started deferring.
    StopClearStart,
    /// Stopped and started deferring at once (they yield to their own
    /// registration), then cleared.
    RestartThenClear,
    /// Cleared while the primaries run, which are restarted deferring up to
    /// five lease periods later.
    ClearWhileRunning,
}

/// The operator's undoing of a migration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rollback {
    /// True time the rollback begins.
    pub at: u64,
    /// In which order.
    pub order: Order,
}

/// A migration: which nodes are restarted as primary, when, and whether it
/// is rolled back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Migration {
    /// The nodes restarted as primary, in order.
    pub order: Vec<u16>,
    /// True time of the first restart as primary.
    pub start: u64,
    /// True time between two restarts as primary.
    pub gap: u64,
    /// Longest downtime of a node the operator stops (a quarter restart at once).
    pub down_max: u64,
    /// The rollback, if any.
    pub rollback: Option<Rollback>,
}

impl Migration {
    /// A plan for a cluster of `nodes` with lease duration `d_p` (ns) whose
    /// faults last `chaos_for` (ns): one node (half the plans), a rolling
    /// restart of every node (a quarter), or of some; rolled back in about
    /// two plans of five.
    pub fn draw(rng: &mut Rng, nodes: u16, d_p: u64, chaos_for: u64) -> Migration {
        let n = u64::from(nodes);
        let count = match rng.below(4) {
            0 | 1 => 1,
            2 => n,
            _ => rng.range(2, n),
        } as usize;
        let mut order: Vec<u16> = (0..nodes).collect();
        for j in (1..order.len()).rev() {
            order.swap(j, rng.below(j as u64 + 1) as usize);
        }
        order.truncate(count);
        let start = rng.range(5 * SEC, chaos_for / 2);
        let gap = rng.range(d_p, 10 * d_p);
        let last = start + gap * (count as u64 - 1);
        let earliest = last + 5 * d_p;
        let latest = chaos_for.saturating_sub(5 * d_p);
        let orders = [Order::StopClearStart, Order::RestartThenClear, Order::ClearWhileRunning];
        let rollback = (rng.chance(PPM / 5 * 2) && earliest < latest)
            .then(|| Rollback { at: rng.range(earliest, latest), order: rng.pick(&orders) });
        Migration { order, start, gap, down_max: 2 * d_p, rollback }
    }

    /// The plan in words, for run labels.
    pub fn describe(&self) -> String {
        let nodes: Vec<String> = self.order.iter().map(|i| format!("n{i}")).collect();
        let mut out = format!(
            "migrates {} to primary from {} every {}",
            nodes.join(", "),
            fmt_time(self.start),
            fmt_time(self.gap)
        );
        if let Some(r) = self.rollback {
            let how = match r.order {
                Order::StopClearStart => "stopped, cleared, started",
                Order::RestartThenClear => "restarted, then cleared",
                Order::ClearWhileRunning => "cleared while running, then restarted",
            };
            out.push_str(&format!(", rolled back at {} ({how})", fmt_time(r.at)));
        }
        out
    }
}
