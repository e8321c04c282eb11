//! The bounded model checker: every interleaving of message delivery, loss,
//! duplication, ticks, timers, crashes and restarts, client calls and
//! releases, within small bounds, over the real core node.
//!
//! The correct protocol must have no reachable violation; each known-broken
//! variant must have one, and its shortest trace is printed (run with
//! `--nocapture` to read it). `LEASETSO_MC_BOUNDS=large` searches larger
//! bounds (see [`explore::Bounds::LARGE`]).

#[path = "explore/mod.rs"]
mod explore;

use explore::{Bounds, Model, Outcome, Variant, explore};

fn bounds() -> Bounds {
    match std::env::var("LEASETSO_MC_BOUNDS").as_deref() {
        Ok("large") => Bounds::LARGE,
        Ok("default") | Err(_) => Bounds::DEFAULT,
        Ok(other) => panic!("LEASETSO_MC_BOUNDS={other}: expected `default` or `large`"),
    }
}

fn header(model: &Model, outcome: &Outcome) -> String {
    format!(
        "{}: {} distinct states, {} steps, depth {}, widest level {}, {:.1?}\n  bounds: {:?}",
        model.variant.name,
        outcome.states,
        outcome.transitions,
        outcome.depth,
        outcome.widest,
        outcome.elapsed,
        model.bounds
    )
}

/// The whole bounded space of the corrected protocol has no violation.
#[test]
fn correct_protocol_is_safe_within_bounds() {
    let mut b = bounds();
    if let Ok(v) = std::env::var("NOSTORE") { let v: Vec<u8> = v.split(',').map(|x| x.parse().unwrap()).collect(); b.stores = false; b.max_time = v[0] as u32; b.max_attempts = [v[1], v[2]]; b.max_dups = v[3]; b.max_releases = v[4]; b.max_crashes = [v[5] / 100, v[5] / 10 % 10, v[5] % 10]; if let Ok(l) = std::env::var("LAG") { b.timers = if l.starts_with('f') { explore::model::Timers::Free { lag: l[1..].parse().unwrap() } } else { explore::model::Timers::AtTick { lag: l.parse().unwrap() } }; } b.max_in_flight = v[6] as u32; b.max_get_ts = 0; }
    let model = Model::new(Variant::CORRECT, b);
    let outcome = explore(&model);
    println!("{}", header(&model, &outcome));
    if let Some(cx) = &outcome.violation {
        panic!("the corrected protocol violates a property:\n{}", cx.render());
    }
}

/// A broken variant has a reachable violation; prints the shortest trace.
fn finds_two_owners(variant: Variant) {
    let mut b = bounds();
    if let Ok(v) = std::env::var("NOSTORE") { let v: Vec<u8> = v.split(',').map(|x| x.parse().unwrap()).collect(); b.stores = false; b.max_time = v[0] as u32; b.max_attempts = [v[1], v[2]]; b.max_dups = v[3]; b.max_releases = v[4]; b.max_crashes = [v[5] / 100, v[5] / 10 % 10, v[5] % 10]; if let Ok(l) = std::env::var("LAG") { b.timers = if l.starts_with('f') { explore::model::Timers::Free { lag: l[1..].parse().unwrap() } } else { explore::model::Timers::AtTick { lag: l.parse().unwrap() } }; } b.max_in_flight = v[6] as u32; b.max_get_ts = 0; }
    let model = Model::new(variant, b);
    let outcome = explore(&model);
    println!("{}", header(&model, &outcome));
    let Some(cx) = &outcome.violation else {
        panic!("{}: no violation within the bounds", variant.name);
    };
    println!("shortest trace ({} steps):\n{}", cx.steps.len(), cx.render());
    assert!(cx.property.starts_with("two"), "{}: unexpected violation {}", variant.name, cx.property);
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
fn sizes() {
    println!(
        "node {} store {} state {}",
        size_of::<leasetso_core::Node>(),
        size_of::<leasetso_core::MemStore>(),
        size_of::<explore::model::State>()
    );
}

#[test]
fn manual() {
    let mut b = bounds();
    if std::env::var_os("NOSTORE").is_some() { b.stores = false; b.max_attempts = [1, 1]; b.max_time = 2; b.max_dups = 0; b.max_get_ts = 0; b.max_releases = 0; }
    let model = Model::new(match std::env::var("VARIANT").as_deref() { Ok("late") => Variant::LATE_TIMER, Ok("stale") => Variant::STALE_OWNER_OPEN, Ok("release") => Variant::OWNER_ONLY_RELEASE, _ => Variant::SHORT_QUARANTINE }, b);
    let mut s = model.initial();
    let script = std::env::var("SCRIPT").unwrap_or_default();
    for what in script.split(';').filter(|w| !w.is_empty()) {
        let a = model.find(&s, what.trim()).unwrap_or_else(|| panic!("no action {what}"));
        let mut log = explore::model::Log::on();
        let step = model.step(&mut s, a, &mut log);
        println!("{what}: {step:?}");
        for l in log.take() { println!("   {l}"); }
        println!("   => {}", model.summary(&s));
    }
}
