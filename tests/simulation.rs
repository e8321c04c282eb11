//! The deterministic simulator's tests: the correct protocol keeps every
//! check under 10,000 seeded fault schedules, half of them migrating the
//! cluster to primaries (and some rolling back), and under the targeted
//! scenarios; and the simulator catches each known-broken variant:
//!
//! | variant | caught by | how |
//! |---|---|---|
//! | LateTimer, StaleOwnerOpen, ShortQuarantine | two owners (check 1) | scripted |
//! | ScalarQuorum, OwnerOnlyRelease | two owners (check 1) | random and scripted |
//! | IGNORE_RESTART | two owners (check 1) | scripted |
//! | ACCEPT_LATE | leadership without the lease (check 10) | random and scripted |
//! | SERVE_IN_MARGIN | serving within the margin (check 9) | random |
//! | ABDICATE_ON_NOT_GREATER | liveness | scripted |
//! | primary check and write as two transactions | checked write after a registration (check 5) | random migrations |
//! | YIELD_REARMED | yielded owner (check 6) | random migrations |
//! | IGNORE_LATE_PRIMARY | PrimaryExists not yielded to (check 8) | random migrations |
//!
//! The checks are numbered as in `sim::check`.
//!
//! A failure prints the command that replays its seed, e.g.
//! `LEASETSO_SIM_SEED=1234 cargo test -p leasetso-tests --test simulation -- correct_protocol --exact --nocapture`
//! (add `LEASETSO_SIM_TRACE=1` to print every event). `LEASETSO_SIM_SEEDS=N`
//! runs `N` seeds instead of the defaults below.

#[path = "sim/mod.rs"]
mod sim;

use leasetso_core_variants::bounds::{
    MAX_COUNTER, MAX_COUNTER_STEP, MAX_RESTART, MAX_RESTART_STEP, MAX_WINDOW_AHEAD_MS,
};
use sim::check::ViolationKind;
use sim::config::Variant;
use sim::runner::{self, Known, Outcome};
use sim::scenarios::Scenario;
use sim::world::Trace;

/// Seeds of the random fault mix in the normal run; also the budget within
/// which the random mix must find the broken variants it is tested against.
const SEEDS: u64 = 10_000;

/// Seeds of the targeted scenarios (each of the eight scenarios gets an
/// eighth) for the correct protocol, and the budget for finding each broken
/// variant with its scenario.
const TARGETED_SEEDS: u64 = 1_600;

fn random(variant: Variant) -> impl Fn(u64, Trace) -> Outcome + Sync {
    move |seed, trace| runner::random_run(seed, variant, trace)
}

/// Scripted runs of `scenario` against the broken variant it is built for.
fn targeted(scenario: Scenario) -> impl Fn(u64, Trace) -> Outcome + Sync {
    move |seed, trace| runner::scenario_run(seed, scenario, scenario.catches(), trace)
}

/// Seeds of `correct_protocol` that fail only because of a known core bug,
/// each with the check it breaks and the bug in words. Each must keep
/// failing exactly so, and the test says when one passes (the bug is fixed:
/// drop the seed). Empty: the one core bug the simulator found so far (an
/// attempt abandoned on a single `Rejected` orphaned a lease a majority had
/// accepted, leaving nobody serving after the heal in seeds 3041 and 9576 of
/// 20000) is fixed, and `a_majority_accepted_attempt_is_not_abandoned_on_one_rejection`
/// keeps it fixed.
const KNOWN: &[Known] = &[];

/// The correct protocol under the random fault mix, 3 and 5 nodes: no two
/// owners, no timestamp going back, no replica going down, and a leader
/// serving three lease periods after the network heals.
#[test]
fn correct_protocol() {
    let summary = runner::all_pass("correct_protocol", SEEDS, &random(Variant::Correct), KNOWN);
    let s = &summary.stats;
    if summary.runs >= 100 {
        // The faults really happened (a generator that silently stopped
        // injecting them would pass every seed).
        assert!(s.crashes > summary.runs && s.partitions > 0 && s.pauses > 0 && s.releases > 0, "{s:?}");
        assert!(s.lost > 0 && s.duplicated > 0 && s.long_delayed > 0 && s.to_new_incarnation > 0, "{s:?}");
        assert!(s.leaderships > summary.runs && s.fenced > 0 && s.timestamps > summary.runs * 100, "{s:?}");
        // Half the runs migrate: primaries registered, deferring leaders
        // yielded, rollbacks cleared registrations and yielded nodes resumed.
        assert!(s.migrations > summary.runs / 2 && s.registrations > s.migrations, "{s:?}");
        assert!(s.primary_refusals > 0 && s.yields > summary.runs / 4, "{s:?}");
        assert!(s.rollbacks > summary.runs / 10 && s.clears > 0 && s.resumes > 0, "{s:?}");
    }
    report_bounds("correct_protocol", &summary.stats);
    assert_far_below_the_bounds(&summary.stats);
    assert_eq!(s.implausible, 0, "check 11 refuses any refusal of a correct value");
}

/// Prints the largest values the runs reached, against the bounds (B1–B4).
fn report_bounds(test: &str, s: &sim::world::Stats) {
    println!(
        "{test}: largest ballot counter {} (ceiling {MAX_COUNTER}), counter step in one input {} (bound \
         {MAX_COUNTER_STEP}), fence counter {}, restart counter {} (ceiling {MAX_RESTART}, step {MAX_RESTART_STEP}), \
         physical ahead of the leader's wall clock {} ms (max_ahead_ms 5000 by default), window ahead of a \
         replica's wall clock {} ms (bound {MAX_WINDOW_AHEAD_MS} ms); {} values refused",
        s.max_counter,
        s.max_counter_step,
        s.max_fence_counter,
        s.max_restart,
        s.max_ahead_ms,
        s.max_window_ahead_ms,
        s.implausible,
    );
}

/// A correct cluster stays many orders of magnitude below every bound, so
/// no bound can refuse a correct value: the largest counter and counter step
/// below a millionth of the step, restarts below a millionth of theirs, and
/// the windows within the default ahead bound plus the simulated skew.
fn assert_far_below_the_bounds(s: &sim::world::Stats) {
    assert!(s.max_counter < MAX_COUNTER_STEP >> 20 && s.max_counter_step < MAX_COUNTER_STEP >> 20, "{s:?}");
    assert!(s.max_fence_counter <= s.max_counter, "{s:?}");
    assert!(s.max_restart < MAX_RESTART_STEP >> 10, "{s:?}");
    let skew = 2 * sim::world::WALL_SKEW_MS;
    assert!(s.max_ahead_ms <= 5_000 + skew && s.max_window_ahead_ms <= 5_000 + skew, "{s:?}");
    assert!(s.max_window_ahead_ms < MAX_WINDOW_AHEAD_MS / 10, "{s:?}");
}

/// Seeds of the faulty-member runs.
const FAULTY_SEEDS: u64 = 400;

/// Items 1 and 2 of the bounds (B1, B2): the correct protocol under the
/// random fault mix, with one member that also forges absurd values (a
/// ballot counter of `u64::MAX` and one just under the ceiling, a step far
/// beyond what the addressee holds, a restart of `u64::MAX`, a fence of
/// `u64::MAX`, a window a century ahead, a registration of node `0xFFFF`).
/// Every forgery is refused (check 11: and only forgeries), nothing of them
/// is adopted or stored (the counters, fences and windows stay where a
/// correct cluster keeps them), and a leader serves after the heal.
#[test]
fn a_faulty_member_is_refused_and_the_cluster_keeps_serving() {
    let run = |seed, trace| runner::faulty_run(seed, trace);
    let summary =
        runner::all_pass("a_faulty_member_is_refused_and_the_cluster_keeps_serving", FAULTY_SEEDS, &run, &[]);
    let s = &summary.stats;
    report_bounds("a_faulty_member_is_refused_and_the_cluster_keeps_serving", s);
    assert!(s.implausible > summary.runs * 40, "the forgeries reached the nodes and were refused: {s:?}");
    assert!(s.timestamps > summary.runs * 100, "the cluster served throughout: {s:?}");
    assert_far_below_the_bounds(s);
}

/// Seed `s` of the targeted runs plays scenario `s % 8` with its seed `s / 8`.
fn composite(seed: u64) -> (Scenario, u64) {
    let n = Scenario::ALL.len() as u64;
    (Scenario::ALL[(seed % n) as usize], seed / n)
}

/// Composite seed `seed` against `variant` (`None`: the scenario's own).
fn composite_run(seed: u64, variant: Option<Variant>, trace: Trace) -> Outcome {
    let (scenario, scenario_seed) = composite(seed);
    let mut o = runner::scenario_run(scenario_seed, scenario, variant.unwrap_or(scenario.catches()), trace);
    o.label = format!("{} (scenario seed {scenario_seed})", o.label);
    o
}

/// The correct protocol played through every targeted scenario (seed `s`
/// plays scenario `s % 8` with seed `s / 8`; a failure's replay command
/// names `s`): it must come through unharmed, and elect a leader again once
/// the network heals.
#[test]
fn correct_protocol_targeted() {
    let run = |seed: u64, trace| composite_run(seed, Some(Variant::Correct), trace);
    let summary = runner::all_pass("correct_protocol_targeted", TARGETED_SEEDS, &run, &[]);
    // A pass only counts if the scripts got to their critical step.
    assert!(
        summary.runs < 20 || summary.critical * 20 >= summary.runs * 19,
        "only {} of {} scripted runs reached their critical step",
        summary.critical,
        summary.runs
    );
}

/// (a) LateTimer: the attempt deadline started at the promise quorum. The
/// random mix finds it only rarely (none in seeds 0..10,000), so the
/// scripted trace is what this test relies on.
#[test]
fn late_timer_two_owners_targeted() {
    runner::finds_two_owners(
        "late_timer_two_owners_targeted",
        TARGETED_SEEDS,
        &targeted(Scenario::LateTimer),
    );
}

/// (b) Quorums counted with a plain counter, under duplicated delivery:
/// the random fault mix finds it (in about one seed in 70).
#[test]
fn scalar_quorum_two_owners_random() {
    runner::finds_two_owners("scalar_quorum_two_owners_random", SEEDS, &random(Variant::ScalarQuorum));
}

/// (b) The same, with the scripted trace.
#[test]
fn scalar_quorum_two_owners_targeted() {
    runner::finds_two_owners(
        "scalar_quorum_two_owners_targeted",
        TARGETED_SEEDS,
        &targeted(Scenario::ScalarQuorum),
    );
}

/// (c) StaleOwnerOpen: a proposer's own lease of any ballot counted as open
/// (the random mix: rarely, none in seeds 0..10,000).
#[test]
fn stale_owner_open_two_owners_targeted() {
    runner::finds_two_owners(
        "stale_owner_open_two_owners_targeted",
        TARGETED_SEEDS,
        &targeted(Scenario::StaleOwnerOpen),
    );
}

/// (d) OwnerOnlyRelease: a Release matched on the owner only: the random
/// fault mix finds it (in about one seed in 200).
#[test]
fn owner_only_release_two_owners_random() {
    runner::finds_two_owners(
        "owner_only_release_two_owners_random",
        SEEDS,
        &random(Variant::OwnerOnlyRelease),
    );
}

/// (d) The same, with the scripted trace.
#[test]
fn owner_only_release_two_owners_targeted() {
    runner::finds_two_owners(
        "owner_only_release_two_owners_targeted",
        TARGETED_SEEDS,
        &targeted(Scenario::OwnerOnlyRelease),
    );
}

/// (e) A quarantine one millisecond below `D_P`, no drift, no margin (the
/// random mix: about once in 3,000 seeds, always with sub-millisecond delays).
#[test]
fn short_quarantine_two_owners_targeted() {
    runner::finds_two_owners(
        "short_quarantine_two_owners_targeted",
        TARGETED_SEEDS,
        &targeted(Scenario::ShortQuarantine),
    );
}

/// One seed is one run, bit for bit, whether or not it is traced.
#[test]
fn same_seed_same_run() {
    for seed in [0, 7, 1_234] {
        let runs: [&dyn Fn(Trace) -> Outcome; 3] = [
            &|t| runner::random_run(seed, Variant::Correct, t),
            &|t| runner::random_run(seed, Variant::OwnerOnlyRelease, t),
            &|t| runner::scenario_run(seed, composite(seed).0, Variant::Correct, t),
        ];
        for run in runs {
            let a = run(Trace::Off);
            let b = run(Trace::Keep(Default::default(), 10));
            assert_eq!(
                (a.fingerprint, &a.stats, &a.result),
                (b.fingerprint, &b.stats, &b.result),
                "seed {seed}"
            );
            assert!(a.stats.events > 100, "seed {seed} did next to nothing: {:?}", a.stats);
        }
    }
    // Different seeds are different runs.
    let fp = |seed| runner::random_run(seed, Variant::Correct, Trace::Off).fingerprint;
    assert_ne!(fp(1), fp(2));
}

/// An attempt a majority accepted, all of whose replies arrive before its
/// deadline, must make its proposer the owner; otherwise the lease the
/// majority holds is nobody's, and it blocks every proposer (its own
/// included: P2 counts an own lease as open only for the exact renewal)
/// until it expires.
#[test]
fn a_majority_accepted_attempt_is_not_abandoned_on_one_rejection() {
    for seed in 0..20 {
        let (cfg, roles) = sim::scenarios::config(seed, Scenario::StaleOwnerOpen, Variant::Correct);
        let mut w = sim::world::World::new(cfg, Trace::Off);
        let (held, majority) = sim::scenarios::accepted_then_rejected(&mut w, roles).unwrap();
        assert!(majority.is_some(), "seed {seed}: the script did not get a majority to accept");
        assert_eq!(
            held, majority,
            "seed {seed}: a majority accepted {majority:?}, yet its proposer holds {held:?}"
        );
    }
}

/// Check 2 is live: with check 1 switched off, the two owners a broken
/// variant makes both serve, and a client sees the old owner's timestamps
/// after the new owner's larger ones (the fenced store keeps them unique, but
/// not in real-time order).
#[test]
fn two_owners_let_through_send_timestamps_back() {
    for scenario in
        [Scenario::LateTimer, Scenario::ScalarQuorum, Scenario::StaleOwnerOpen, Scenario::OwnerOnlyRelease]
    {
        let back = (0..20).find_map(|seed| {
            let o = runner::scenario_run_with(seed, scenario, scenario.catches(), Trace::Off, false);
            o.result.err().filter(|v| v.kind == ViolationKind::TimestampBack).map(|v| (seed, v))
        });
        let Some((seed, v)) = back else { panic!("{scenario:?}: no seed in 0..20 sent timestamps back") };
        println!("{scenario:?}, seed {seed}: {v}");
    }
}

/// A failure of the targeted runs reports the seed it ran (the composite
/// one, not the scenario's seed `s / 8`), with the violation itself, and the
/// printed replay command reproduces that violation. The runs here break the
/// scenarios' broken variants except for the first scenario, which plays
/// the correct protocol, so the lowest failing seed is not a multiple of 8:
/// replaying its scenario seed as a composite seed would play another
/// scenario (the harness bug this test keeps fixed).
#[test]
fn a_targeted_failure_prints_a_replay_that_reproduces_it() {
    let run = |seed: u64, trace| {
        let first = composite(seed).0 == Scenario::ALL[0];
        composite_run(seed, first.then_some(Variant::Correct), trace)
    };
    let test = "a_targeted_failure_prints_a_replay_that_reproduces_it";
    let report = runner::check_all(test, 64, &run, &[])
        .expect_err("the broken variants break a check within 64 seeds");
    println!("{report}");
    assert!(!report.contains("did not"), "the failure did not replay identically:\n{report}");
    let seed = runner::replay_seed(&report).expect("the report has a replay command");
    assert_ne!(seed % Scenario::ALL.len() as u64, 0, "seed {seed} plays the correct protocol");
    let again = runner::run_seed(&run, seed, Trace::Off);
    let v = again.result.expect_err("the replayed seed breaks a check");
    assert!(
        report.contains(&v.to_string()),
        "the replay of seed {seed} breaks {v}, which the report does not show"
    );
}

/// (f) The restart counter ignored: the first attempt of a restarted
/// proposer reuses its earlier process's ballot, and that process's late
/// `Accepted`s complete it, though no acceptor holds its lease any more (the
/// random mix finds none in seeds 0..1,000: it needs the replies to
/// outlive a crash and the new attempt to land on the same counter).
#[test]
fn ignore_restart_two_owners_targeted() {
    runner::finds_two_owners(
        "ignore_restart_two_owners_targeted",
        TARGETED_SEEDS,
        &targeted(Scenario::IgnoreRestart),
    );
}

/// (g) Accepted replies counted at or after the attempt's deadline `d`: the
/// node begins a leadership (fences the store, syncs) for a lease that is
/// already over, and the fence ends the real owner's leadership. Caught by
/// check 10 (a leadership begins only under the lease won).
#[test]
fn accept_late_leads_without_a_lease_targeted() {
    runner::finds_violation(
        "accept_late_leads_without_a_lease_targeted",
        TARGETED_SEEDS,
        &targeted(Scenario::AcceptLate),
        ViolationKind::LeadWithoutLease,
    );
}

/// (g) The same, in the random mix (about one seed in 80: late `Accepted`s
/// while the proposer's timers stall).
#[test]
fn accept_late_leads_without_a_lease_random() {
    runner::finds_violation(
        "accept_late_leads_without_a_lease_random",
        SEEDS,
        &random(Variant::AcceptLate),
        ViolationKind::LeadWithoutLease,
    );
}

/// (h) Serving until `d` instead of `d − m` (every seed of this variant has
/// a margin): check 9 sees a node serve with less than the margin left
/// (three seeds in four: whenever a renewal fails and the lease runs into
/// its margin).
#[test]
fn serve_in_margin_random() {
    runner::finds_violation(
        "serve_in_margin_random",
        SEEDS,
        &random(Variant::ServeInMargin),
        ViolationKind::ServedInMargin,
    );
}

/// (i) Liveness: a leader that abdicates on a replica's `NotGreater` never
/// serves while a replica is ahead of the quorum from a partial save. The
/// random mix finds none in seeds 0..1,000 (the replica ahead is soon overtaken, or
/// answers too late to matter), so the script keeps one ahead.
#[test]
fn abdicate_on_not_greater_stalls_targeted() {
    runner::finds_violation(
        "abdicate_on_not_greater_stalls_targeted",
        TARGETED_SEEDS,
        &targeted(Scenario::NotGreaterAhead),
        ViolationKind::NoLiveness,
    );
}

/// (j) The store's primary check and its write as two transactions: a
/// registration lands between them, and check 5 sees the checked write
/// succeed after it (random migrations: about one seed in 25).
#[test]
fn split_primary_check_writes_after_registration_random() {
    runner::finds_violation(
        "split_primary_check_writes_after_registration_random",
        SEEDS,
        &random(Variant::SplitPrimaryCheck),
        ViolationKind::CheckedWriteAfterRegistration,
    );
}

/// (k) A yielded node re-armed by `LearnChosen` or a heard Release: it
/// campaigns and wins the lease while the registration stands (check 6;
/// seven seeds in ten).
#[test]
fn yield_rearmed_owns_the_lease_random() {
    runner::finds_violation(
        "yield_rearmed_owns_the_lease_random",
        SEEDS,
        &random(Variant::YieldRearmed),
        ViolationKind::YieldedOwner,
    );
}

/// (l) `PrimaryExists` after the quorum ignored: check 8 sees a deferring
/// node hear it and go on (about one seed in 12).
#[test]
fn ignore_late_primary_goes_on_random() {
    runner::finds_violation(
        "ignore_late_primary_goes_on_random",
        SEEDS,
        &random(Variant::IgnoreLatePrimary),
        ViolationKind::IgnoredPrimary,
    );
}
