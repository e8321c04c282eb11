//! Runs seeds, in parallel but each on its own, and reports a failing seed
//! with the exact command that replays it.
//!
//! Environment:
//! * `LEASETSO_SIM_SEEDS=N`: run seeds `0..N` instead of the test's default.
//! * `LEASETSO_SIM_SEED=S`: run seed `S` only (a replay).
//! * `LEASETSO_SIM_TRACE=1`: with a single seed, print every event.
//! * `LEASETSO_SIM_THREADS=T`: worker threads (default: up to 2).
//!
//! Seeds are claimed in increasing order, and once a seed has failed (or
//! found what a search looks for) only lower seeds are still run, so the seed
//! reported is always the lowest one: the same on every machine.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use super::check::{Violation, ViolationKind};
use super::config::{self, Variant};
use super::scenarios::{self, Reached, Scenario};
use super::world::{Stats, Trace, World};

use leasetso_core_variants::bounds::{MAX_COUNTER, MAX_COUNTER_STEP};
use leasetso_core_variants::{Ballot, LeaseMsg, NodeId, StoreOp, StoreRequest};

use super::net::Payload;

/// How one seed went.
#[derive(Debug)]
pub struct Outcome {
    /// The seed.
    pub seed: u64,
    /// The first broken check, if any.
    pub result: Result<(), Violation>,
    /// What the run went through.
    pub stats: Stats,
    /// A digest of the whole run, for determinism checks.
    pub fingerprint: u64,
    /// The run's configuration in words.
    pub label: String,
    /// How far a scripted scenario got (`None` for random runs).
    pub reached: Option<Reached>,
    /// On a violation: the nodes' state.
    pub nodes: String,
    /// The trace lines kept.
    pub trace: Vec<String>,
}

fn finish(w: World, result: Result<(), Violation>, reached: Option<Reached>) -> Outcome {
    Outcome {
        seed: w.cfg.seed,
        nodes: if result.is_err() { w.describe_nodes() } else { String::new() },
        result,
        stats: w.stats.clone(),
        fingerprint: w.fingerprint(),
        label: w.cfg.label.clone(),
        reached,
        trace: w.trace_tail(),
    }
}

/// Heals the network and runs the quiet tail; then the liveness check, if
/// the run asks for it.
fn tail(w: &mut World) -> Result<(), Violation> {
    w.heal();
    let until = w.quiet_since + config::tail_length(&w.cfg);
    w.run_to(until)?;
    if w.cfg.liveness {
        w.check_live()?;
    }
    Ok(())
}

/// Random run `seed` of `variant`.
pub fn random_run(seed: u64, variant: Variant, trace: Trace) -> Outcome {
    let mut w = World::new(config::random(seed, variant), trace);
    w.boot();
    let until = w.cfg.chaos_for;
    let result = w.run_to(until).and_then(|()| tail(&mut w));
    finish(w, result, None)
}

/// Random run `seed` of the correct protocol with one faulty member (node
/// `seed % nodes`): besides its correct messages it forges, 40 times over the
/// run, one absurd value for every other node (a ballot counter at the top
/// of the space, one just under the ceiling, one twice the step beyond
/// what the addressee holds, a restart at `u64::MAX`, another node's ballot,
/// a fence at `u64::MAX`, a window a century ahead, a registration of node
/// `0xFFFF`). Each must be refused and nothing of it adopted (check 11), and
/// the cluster must serve after the heal as ever.
pub fn faulty_run(seed: u64, trace: Trace) -> Outcome {
    let mut cfg = config::random(seed, Variant::Correct);
    cfg.label = format!("faulty member, {}", cfg.label);
    let mut w = World::new(cfg, trace);
    let faulty = (seed % u64::from(w.cfg.nodes)) as u16;
    w.faulty = Some(faulty);
    w.boot();
    let rounds = 40;
    let step = w.cfg.chaos_for / rounds;
    let mut result = Ok(());
    for k in 1..=rounds {
        result = w.run_to(k * step);
        if result.is_err() {
            break;
        }
        forge(&mut w, faulty, k);
    }
    let result = result.and_then(|()| tail(&mut w));
    finish(w, result, None)
}

/// The faulty member's forgery number `k`, for every other node.
fn forge(w: &mut World, faulty: u16, k: u64) {
    const CENTURY_MS: u64 = 100 * 365 * 86_400_000;
    let me = NodeId(faulty);
    let incarnation = w.slots[usize::from(faulty)].incarnation;
    for to in (0..w.cfg.nodes).filter(|&t| t != faulty) {
        let slot = &w.slots[usize::from(to)];
        let held = slot.node.as_ref().map_or(0, |n| n.held_counter());
        let fence = slot.store.fence();
        let wall = w.wall_ms(usize::from(to));
        let store = |op| Payload::StoreReq { request: StoreRequest { id: 1, op }, incarnation };
        let payload = match k % 8 {
            0 => Payload::Lease(LeaseMsg::Prepare { ballot: Ballot::new(u64::MAX, 1, me) }),
            1 => Payload::Lease(LeaseMsg::Prepare { ballot: Ballot::new(MAX_COUNTER - 1, 1, me) }),
            // Twice the step: still beyond it when it arrives, however the
            // addressee's counter grew meanwhile.
            2 => Payload::Lease(LeaseMsg::Accept { ballot: Ballot::new(held + 2 * MAX_COUNTER_STEP, 1, me) }),
            3 => Payload::Lease(LeaseMsg::Rejected {
                refused: Ballot::new(held, 1, NodeId(to)),
                promised: Ballot::new(u64::MAX / 2, 1, me),
            }),
            4 => Payload::Lease(LeaseMsg::LearnChosen {
                ballot: Ballot::new(held + 1, u64::MAX, me),
                remaining_ms: 1_000,
            }),
            5 => store(StoreOp::Load { fence: Ballot::new(u64::MAX, 1, me), check_primary: false }),
            6 => store(StoreOp::Save {
                window_end_ms: wall + CENTURY_MS,
                fence: Ballot::new(fence.counter + 1, 1, me),
                check_primary: false,
            }),
            _ => {
                store(StoreOp::RegisterPrimary { id: NodeId(0xFFFF), tag: Ballot::new(0, 1, NodeId(0xFFFF)) })
            }
        };
        w.forge(faulty, to, payload);
    }
}

/// Scripted run `seed` of `scenario` against `variant`.
pub fn scenario_run(seed: u64, scenario: Scenario, variant: Variant, trace: Trace) -> Outcome {
    scenario_run_with(seed, scenario, variant, trace, true)
}

/// [`scenario_run`], with check 1 (exclusive lease) on or off.
pub fn scenario_run_with(
    seed: u64,
    scenario: Scenario,
    variant: Variant,
    trace: Trace,
    check_owners: bool,
) -> Outcome {
    let (cfg, roles) = scenarios::config(seed, scenario, variant);
    let mut w = World::new(cfg, trace);
    w.check_owners = check_owners;
    let mut reached = None;
    let result = scenarios::play(&mut w, scenario, roles).and_then(|r| {
        reached = Some(r);
        tail(&mut w)
    });
    finish(w, result, reached)
}

/// Which seeds to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Replay one seed.
    One(u64),
    /// Seeds `0..n`.
    Many(u64),
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(v.trim().parse().unwrap_or_else(|_| panic!("{name}={v:?} is not a number")))
}

/// The seeds the environment asks for, or `0..default`.
pub fn plan(default: u64) -> Plan {
    if let Some(seed) = env_u64("LEASETSO_SIM_SEED") {
        return Plan::One(seed);
    }
    Plan::Many(env_u64("LEASETSO_SIM_SEEDS").unwrap_or(default))
}

fn tracing() -> bool {
    std::env::var("LEASETSO_SIM_TRACE").is_ok_and(|v| v == "1")
}

fn threads() -> u64 {
    env_u64("LEASETSO_SIM_THREADS")
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get() as u64).min(2))
        .max(1)
}

/// The command that replays `seed` of `test`.
pub fn replay_command(test: &str, seed: u64) -> String {
    format!(
        "LEASETSO_SIM_SEED={seed} cargo test -p leasetso-tests --test simulation -- {test} --exact --nocapture"
    )
}

/// What a batch of seeds went through.
#[derive(Debug, Default)]
pub struct Summary {
    /// Seeds run.
    pub runs: u64,
    /// Their stats, added up.
    pub stats: Stats,
    /// Scripted runs that reached their critical step.
    pub critical: u64,
    /// Scripted runs that stopped before it.
    pub setup_only: u64,
    /// Seconds the batch took (for the report only; no run reads a clock).
    pub seconds: f64,
}

impl Summary {
    fn add(&mut self, o: &Outcome) {
        self.runs += 1;
        self.stats.add(&o.stats);
        match o.reached {
            Some(Reached::Critical) => self.critical += 1,
            Some(Reached::Setup(_)) => self.setup_only += 1,
            None => {}
        }
    }

    fn line(&self, test: &str) -> String {
        let s = &self.stats;
        format!(
            "{test}: {} seeds in {:.1} s ({:.0} seeds/s); {} events, {} leaderships, {} timestamps served, \
             {} crashes, {} partitions, {} pauses, {} releases, {} lost / {} duplicated / {} long-delayed \
             packets, {} to a later incarnation; migrations: {} restarts as primary, {} registrations, {} \
             checked loads and saves refused, {} yields, {} resumes, {} rollbacks, {} registrations cleared; \
             scripted runs at their critical step: {} (stopped earlier: {})",
            self.runs,
            self.seconds,
            self.runs as f64 / self.seconds.max(1e-9),
            s.events,
            s.leaderships,
            s.timestamps,
            s.crashes,
            s.partitions,
            s.pauses,
            s.releases,
            s.lost,
            s.duplicated,
            s.long_delayed,
            s.to_new_incarnation,
            s.migrations,
            s.registrations,
            s.primary_refusals,
            s.yields,
            s.resumes,
            s.rollbacks,
            s.clears,
            self.critical,
            self.setup_only,
        )
    }
}

/// Runs seeds `0..n` on worker threads until `stop` says an outcome ends the
/// search; returns the lowest such outcome and the summary of all runs.
fn search(
    n: u64,
    run: &(dyn Fn(u64) -> Outcome + Sync),
    stop: &(dyn Fn(&Outcome) -> bool + Sync),
) -> (Option<Outcome>, Summary) {
    let started = std::time::Instant::now();
    let next = AtomicU64::new(0);
    let limit = AtomicU64::new(n);
    let found: Mutex<Option<Outcome>> = Mutex::new(None);
    let summary = Mutex::new(Summary::default());
    std::thread::scope(|scope| {
        for _ in 0..threads() {
            scope.spawn(|| {
                loop {
                    let seed = next.fetch_add(1, Ordering::SeqCst);
                    if seed >= limit.load(Ordering::SeqCst) {
                        break;
                    }
                    let mut outcome = run(seed);
                    outcome.seed = seed;
                    summary.lock().unwrap_or_else(|e| e.into_inner()).add(&outcome);
                    if stop(&outcome) {
                        limit.fetch_min(seed, Ordering::SeqCst);
                        let mut found = found.lock().unwrap_or_else(|e| e.into_inner());
                        if found.as_ref().is_none_or(|f| f.seed > seed) {
                            *found = Some(outcome);
                        }
                    }
                }
            });
        }
    });
    let mut summary = summary.into_inner().unwrap_or_else(|e| e.into_inner());
    summary.seconds = started.elapsed().as_secs_f64();
    (found.into_inner().unwrap_or_else(|e| e.into_inner()), summary)
}

fn report(test: &str, o: &Outcome, what: &str) -> String {
    let v = o.result.as_ref().err().map_or_else(|| "no violation".to_string(), ToString::to_string);
    let mut out = format!("{test}: seed {} {what}\n  run: {}\n  {v}\n", o.seed, o.label);
    if !o.nodes.is_empty() {
        out.push_str("nodes at that moment:\n");
        out.push_str(&o.nodes);
    }
    if !o.trace.is_empty() {
        out.push_str("last events:\n");
        for line in &o.trace {
            out.push_str("  ");
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push_str(&format!(
        "replay: {}\n  (add LEASETSO_SIM_TRACE=1 to print every event)",
        replay_command(test, o.seed)
    ));
    out
}

/// Runs `seed` of `run`, reporting it under that seed: a test may map its
/// seed to a scenario and a scenario seed (`correct_protocol_targeted` plays
/// scenario `s % 5` with seed `s / 5`), and the seed to replay is the test's
/// own, not the scenario's.
pub fn run_seed(run: &dyn Fn(u64, Trace) -> Outcome, seed: u64, trace: Trace) -> Outcome {
    let mut o = run(seed, trace);
    o.seed = seed;
    o
}

fn run_one(run: &dyn Fn(u64, Trace) -> Outcome, seed: u64) -> Outcome {
    let trace = if tracing() { Trace::Print } else { Trace::Keep(Default::default(), 40) };
    run_seed(run, seed, trace)
}

/// A seed that breaks a check because of a known core bug (described in
/// `why`). It must keep failing exactly so: once the bug is fixed, the test
/// says so, and the seed comes off the list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Known {
    /// The seed.
    pub seed: u64,
    /// The check it breaks.
    pub kind: ViolationKind,
    /// The core bug, in words.
    pub why: &'static str,
}

fn known_failure<'a>(known: &'a [Known], o: &Outcome) -> Option<&'a Known> {
    known.iter().find(|k| k.seed == o.seed && o.result.as_ref().err().is_some_and(|v| v.kind == k.kind))
}

/// Every seed must pass every check, except the `known` ones, which must
/// fail exactly as listed. Panics with [`check_all`]'s report otherwise.
pub fn all_pass(
    test: &str,
    default_seeds: u64,
    run: &(dyn Fn(u64, Trace) -> Outcome + Sync),
    known: &[Known],
) -> Summary {
    check_all(test, default_seeds, run, known).unwrap_or_else(|report| panic!("{report}"))
}

/// [`all_pass`], returning the failure report instead of panicking: the
/// lowest unexpected failure, its violation, the nodes and the last events of
/// its replay, and the command that replays it (see [`replay_seed`]).
pub fn check_all(
    test: &str,
    default_seeds: u64,
    run: &(dyn Fn(u64, Trace) -> Outcome + Sync),
    known: &[Known],
) -> Result<Summary, String> {
    let listed = |seed: u64| known.iter().any(|k| k.seed == seed);
    match plan(default_seeds) {
        Plan::One(seed) => {
            let o = run_one(run, seed);
            if let Some(k) = known_failure(known, &o) {
                println!("{}\n(known failure, core bug: {})", report(test, &o, "broke a check"), k.why);
            } else if o.result.is_err() {
                return Err(report(test, &o, "broke a check"));
            } else if listed(seed) {
                return Err(format!(
                    "{test}: seed {seed} is listed as a known failure but passes: drop it from the list"
                ));
            }
            println!("{test}: seed {seed} passed ({}); reached {:?}; {:?}", o.label, o.reached, o.stats);
            let mut s = Summary::default();
            s.add(&o);
            Ok(s)
        }
        Plan::Many(n) => {
            let unexpected = |o: &Outcome| match known_failure(known, o) {
                Some(_) => false,
                None => o.result.is_err() || listed(o.seed),
            };
            let (failed, summary) = search(n, &|seed| run(seed, Trace::Off), &unexpected);
            if let Some(f) = failed {
                if f.result.is_ok() {
                    return Err(format!(
                        "{test}: seed {} is listed as a known failure but passes: drop it from the list",
                        f.seed
                    ));
                }
                return Err(replayed_report(test, run, &f, "broke a check", 60));
            }
            println!("{}", summary.line(test));
            for k in known.iter().filter(|k| k.seed < n) {
                println!(
                    "{test}: seed {} fails {:?} as expected (core bug: {}); replay: {}",
                    k.seed,
                    k.kind,
                    k.why,
                    replay_command(test, k.seed)
                );
            }
            Ok(summary)
        }
    }
}

/// The report of outcome `f` of a search, from a replay of its seed that
/// keeps the last `keep` events. Runs are deterministic, so the replay
/// breaks the same check; should it not, the report says so and still
/// gives the first run's violation (never hiding it behind the mismatch).
fn replayed_report(
    test: &str,
    run: &(dyn Fn(u64, Trace) -> Outcome + Sync),
    f: &Outcome,
    what: &str,
    keep: usize,
) -> String {
    let again = run_seed(run, f.seed, Trace::Keep(Default::default(), keep));
    if again.result == f.result {
        return report(test, &again, what);
    }
    let replayed =
        again.result.as_ref().err().map_or_else(|| "no violation".to_string(), ToString::to_string);
    format!(
        "{}\nWARNING: the replay of seed {} did not break the check identically (replay: {replayed}); the \
         simulator is not deterministic",
        report(test, f, what),
        f.seed
    )
}

/// The seed a report's replay command names (`LEASETSO_SIM_SEED=N`).
pub fn replay_seed(report: &str) -> Option<u64> {
    let at = report.find("LEASETSO_SIM_SEED=")? + "LEASETSO_SIM_SEED=".len();
    let digits: String = report[at..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Some seed must find two owners at once; returns the lowest such seed.
pub fn finds_two_owners(test: &str, default_seeds: u64, run: &(dyn Fn(u64, Trace) -> Outcome + Sync)) -> u64 {
    finds(test, default_seeds, run, "two owners", &Violation::two_owners)
}

/// Some seed must break check `kind`; returns the lowest such seed.
pub fn finds_violation(
    test: &str,
    default_seeds: u64,
    run: &(dyn Fn(u64, Trace) -> Outcome + Sync),
    kind: ViolationKind,
) -> u64 {
    finds(test, default_seeds, run, &format!("{kind:?}"), &|v| v.kind == kind)
}

/// Some seed must break a check `expected` accepts (`what` names it);
/// returns the lowest seed that breaks any check, which must be such a one.
pub fn finds(
    test: &str,
    default_seeds: u64,
    run: &(dyn Fn(u64, Trace) -> Outcome + Sync),
    what: &str,
    expected: &dyn Fn(&Violation) -> bool,
) -> u64 {
    let o = match plan(default_seeds) {
        Plan::One(seed) => run_one(run, seed),
        Plan::Many(n) => {
            let (found, summary) = search(n, &|seed| run(seed, Trace::Off), &|o| o.result.is_err());
            let Some(f) = found else {
                panic!("{test}: no seed in 0..{n} found {what}\n{}", summary.line(test));
            };
            println!("{}", summary.line(test));
            let again = run_seed(run, f.seed, Trace::Keep(Default::default(), 30));
            if again.result != f.result {
                panic!("{}", replayed_report(test, run, &f, &format!("found {what}"), 30));
            }
            again
        }
    };
    match &o.result {
        Err(v) if expected(v) => {
            println!("{}", report(test, &o, &format!("found {what}")));
            o.seed
        }
        Err(_) => panic!("{}", report(test, &o, &format!("broke a check other than {what}"))),
        Ok(()) => panic!("{}", report(test, &o, &format!("found no {what}"))),
    }
}
