//! The bounded model checker: every interleaving of message delivery, loss,
//! duplication, ticks, timers, crashes and restarts, client calls and
//! releases, within small bounds, over the real core node.
//!
//! Each known-broken PaxosLease variant must have a reachable violation
//! within bounds just large enough for its shortest counterexample, and its
//! shortest trace is printed (run with `--nocapture` to read it). The
//! corrected protocol must have none at each of those bounds, and none with
//! the window store, the oracle and clients in play. Clocks that drift 1 %
//! give two owners to a configuration for exact clocks, and none to one
//! derived for the drift (T2, T3).
//!
//! Beyond two owners: an acquisition completed by `Accepted`s at or after
//! its deadline (`ACCEPT_LATE`) begins a leadership without the lease; an
//! owner serving up to `d` instead of `d - m` (`SERVE_IN_MARGIN`, with a
//! margin of one tick) serves within the margin; and in a mixed cluster (a
//! primary and two deferring nodes, the registration racing the deferring
//! leader's loads and saves) a yielded node re-armed by `LearnChosen`
//! (`YIELD_REARMED`) wins the lease again, and one that ignores a late
//! `PrimaryExists` (`IGNORE_LATE_PRIMARY`) goes on. The corrected protocol
//! is safe with the margin and in the mixed cluster, where it hands the
//! lease and the timestamp history over from the deferring leader to the
//! primary.
//!
//! Which environment the model plays, and how each bound is meant, is in
//! the `explore::model` module's documentation.
//!
//! `LEASETSO_MC_BOUNDS=large` searches every space one tick longer and with
//! one more packet in flight ([`Bounds::larger`]); that takes far longer,
//! and some of those spaces exceed the state budget a search keeps in
//! memory (`LEASETSO_MC_MAX_STATES`, 60 million by default, about 8 GB).
//! `LEASETSO_MC_PROGRESS=1` reports each level.

#[path = "explore/mod.rs"]
mod explore;

use explore::model::{NODES, PROPOSERS};
use explore::{Bounds, Model, Outcome, Variant, explore};

/// Whether the larger bounds were asked for.
fn large() -> bool {
    match std::env::var("LEASETSO_MC_BOUNDS").as_deref() {
        Ok("large") => true,
        Ok("default") | Err(_) => false,
        Ok(other) => panic!("LEASETSO_MC_BOUNDS={other}: expected `default` or `large`"),
    }
}

fn scaled(b: Bounds) -> Bounds {
    if large() { b.larger() } else { b }
}

/// The bounds each broken variant's shortest counterexample needs: the lease
/// protocol alone, widened only where the bug needs it.
fn counterexample_bounds(variant: Variant) -> Bounds {
    let lease = Bounds::LEASE_ONLY;
    let acceptor_crash = [0, 0, 1];
    let b = match variant.name {
        // A promise outlives the acceptor's restart.
        "LateTimer" => Bounds { max_time: 3, max_crashes: acceptor_crash, ..lease },
        // One reply counted twice.
        "ScalarQuorum" => Bounds { max_attempts: [2, 1], max_dups: 1, ..lease },
        // The Accept of a proposer's earlier incarnation, and a proposer
        // whose first attempt starts a tick late.
        "StaleOwnerOpen" => Bounds { max_attempts: [1, 2], max_crashes: [0, 1, 0], timer_lag: 1, ..lease },
        // A release, and both proposers retrying.
        "OwnerOnlyRelease" => Bounds { max_attempts: [2, 2], max_releases: 1, ..lease },
        // An acceptor restart.
        "ShortQuarantine" => Bounds { max_crashes: acceptor_crash, ..lease },
        // Clocks 1 % off: an acceptor's fast clock runs its lease out while
        // the owner's slow clock has not.
        "DriftBeyondBound" => Bounds { drift_ms: DRIFT_MS, ..lease },
        // The attempt's timer a tick late, at its deadline, as its last
        // Accepted arrives.
        "AcceptLate" => Bounds { timer_lag: 1, ..lease },
        // A leader that serves, a tick into its lease.
        "ServeInMargin" => margin_bounds(),
        // The yielded node's second attempt.
        "YieldRearmed" => Bounds { max_attempts: [1, 2], ..mixed_bounds() },
        "IgnoreLatePrimary" => mixed_bounds(),
        other => unreachable!("no bounds for {other}"),
    };
    scaled(b)
}

/// The corrected protocol with the window store, the oracle and clients:
/// leaders sync, serve and extend the window while lease attempts, crashes
/// and stale store operations interleave.
fn oracle_bounds() -> Bounds {
    // Node 1 may start its first attempt two ticks late, when node 0's
    // lease has run out, so that it takes over: timestamps from two leaders.
    scaled(Bounds { max_in_flight: 4, max_get_ts: 2, stores: true, timer_lag: 2, ..Bounds::LEASE_ONLY })
}

/// The mixed cluster (node 0 primary, nodes 1 and 2 deferring): the
/// primary's registration races the deferring node's campaign, load and
/// saves, with the store traffic of both, and a client.
/// (Unscaled: the callers scale.)
fn mixed_bounds() -> Bounds {
    Bounds { max_time: 1, max_in_flight: 4, stores: true, max_get_ts: 2, ..Bounds::LEASE_ONLY }
}

/// A margin of one tick: leaders sync and serve, and the margin cuts their
/// serving a tick short of `d` unless they renew.
/// (Unscaled: the callers scale.)
fn margin_bounds() -> Bounds {
    Bounds { max_in_flight: 4, stores: true, max_get_ts: 1, ..Bounds::LEASE_ONLY }
}

/// Clocks drift by 1 % of a tick, per tick, at the extremes.
const DRIFT_MS: u64 = 10;

/// The corrected protocol, configured for the clocks' 1 % drift, where the
/// same drift breaks the configuration for exact clocks, with an acceptor
/// restart for the quarantine and a retry each.
fn drift_bounds() -> Bounds {
    Bounds {
        max_crashes: [0, 0, 1],
        max_attempts: [2, 2],
        ..counterexample_bounds(Variant::DRIFT_BEYOND_BOUND)
    }
}

fn report(model: &Model, outcome: &Outcome) {
    let [holder, serving, handover] = outcome.reached;
    println!(
        "{}: {} distinct states, {} steps, depth {}, widest level {}, {:.1?}\n  reached: {holder} states \
         with a lease holder, {serving} with a server, {handover} after a leader change\n  bounds ({NODES} \
         nodes, {PROPOSERS} proposers): {}",
        model.variant.name,
        outcome.states,
        outcome.transitions,
        outcome.depth,
        outcome.widest,
        outcome.elapsed,
        model.bounds
    );
}

/// The whole bounded space of the corrected protocol has no violation.
fn safe(bounds: Bounds) {
    safe_as(Variant::CORRECT, bounds);
}

/// The whole bounded space of `variant` (the corrected protocol in some
/// configuration) has no violation.
fn safe_as(variant: Variant, bounds: Bounds) -> Outcome {
    let model = Model::new(variant, bounds);
    let outcome = explore(&model);
    report(&model, &outcome);
    if let Some(cx) = &outcome.violation {
        panic!("{} violates a property:\n{}", variant.name, cx.render());
    }
    assert!(outcome.complete, "the state budget ran out before the bounded space was searched");
    outcome
}

/// A broken variant has a reachable violation; prints the shortest trace.
fn finds_two_owners(variant: Variant) {
    finds(variant, "two");
}

/// A broken variant has a reachable violation whose description starts with
/// `expected`; prints the shortest trace.
fn finds(variant: Variant, expected: &str) {
    let model = Model::new(variant, counterexample_bounds(variant));
    let outcome = explore(&model);
    report(&model, &outcome);
    let Some(cx) = &outcome.violation else {
        assert!(outcome.complete, "{}: the state budget ran out before a violation was found", variant.name);
        panic!("{}: no violation within the bounds", variant.name);
    };
    println!("shortest trace ({} steps):\n{}", cx.steps.len(), cx.render());
    assert!(cx.property.starts_with(expected), "{}: unexpected violation {}", variant.name, cx.property);
}

#[test]
fn late_timer_has_two_owners() {
    finds_two_owners(Variant::LATE_TIMER);
}

#[test]
fn scalar_quorum_has_two_owners() {
    finds_two_owners(Variant::SCALAR_QUORUM);
}

#[test]
fn stale_owner_open_has_two_owners() {
    finds_two_owners(Variant::STALE_OWNER_OPEN);
}

#[test]
fn owner_only_release_has_two_owners() {
    finds_two_owners(Variant::OWNER_ONLY_RELEASE);
}

#[test]
fn short_quarantine_has_two_owners() {
    finds_two_owners(Variant::SHORT_QUARANTINE);
}

#[test]
fn correct_protocol_is_safe_where_late_timer_fails() {
    safe(counterexample_bounds(Variant::LATE_TIMER));
}

#[test]
fn correct_protocol_is_safe_where_scalar_quorum_fails() {
    safe(counterexample_bounds(Variant::SCALAR_QUORUM));
}

#[test]
fn correct_protocol_is_safe_where_stale_owner_open_fails() {
    safe(counterexample_bounds(Variant::STALE_OWNER_OPEN));
}

#[test]
fn correct_protocol_is_safe_where_owner_only_release_fails() {
    safe(counterexample_bounds(Variant::OWNER_ONLY_RELEASE));
}

#[test]
fn correct_protocol_is_safe_where_short_quarantine_fails() {
    safe(counterexample_bounds(Variant::SHORT_QUARANTINE));
}

#[test]
fn drift_beyond_the_bound_has_two_owners() {
    finds_two_owners(Variant::DRIFT_BEYOND_BOUND);
}

#[test]
fn correct_protocol_is_safe_with_drift() {
    let model = Model::new(Variant::CORRECT_WITH_DRIFT, drift_bounds());
    let outcome = explore(&model);
    report(&model, &outcome);
    if let Some(cx) = &outcome.violation {
        panic!("the corrected protocol violates a property under drift:\n{}", cx.render());
    }
    assert!(outcome.complete, "the state budget ran out before the bounded space was searched");
}

#[test]
fn correct_protocol_with_oracle_is_safe() {
    safe(oracle_bounds());
}

#[test]
fn accept_late_leads_without_a_lease() {
    finds(Variant::ACCEPT_LATE, "n");
}

#[test]
fn correct_protocol_is_safe_where_accept_late_fails() {
    safe(counterexample_bounds(Variant::ACCEPT_LATE));
}

#[test]
fn serve_in_margin_serves_within_the_margin() {
    finds(Variant::SERVE_IN_MARGIN, "n");
}

#[test]
fn correct_protocol_is_safe_with_a_margin() {
    let outcome = safe_as(Variant::CORRECT_WITH_MARGIN, scaled(margin_bounds()));
    assert!(outcome.reached[1] > 0, "no leader served within the bounds");
}

#[test]
fn correct_protocol_is_safe_in_a_mixed_cluster() {
    // At the bounds where a re-armed yielded node wins the lease again.
    let outcome = safe_as(Variant::CORRECT_MIXED, counterexample_bounds(Variant::YIELD_REARMED));
    // Timestamps from two nodes: node 2 never leads, so the deferring node 1
    // served, then the primary.
    assert!(outcome.reached[2] > 0, "the lease never passed from the deferring leader to the primary");
}

#[test]
fn yield_rearmed_owns_the_lease() {
    finds(Variant::YIELD_REARMED, "n1 yielded");
}

#[test]
fn ignore_late_primary_goes_on() {
    finds(Variant::IGNORE_LATE_PRIMARY, "deferring");
}
