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
    let model = Model::new(Variant::CORRECT, bounds());
    let outcome = explore(&model);
    println!("{}", header(&model, &outcome));
    if let Some(cx) = &outcome.violation {
        panic!("the corrected protocol violates a property:\n{}", cx.render());
    }
}

/// A broken variant has a reachable violation; prints the shortest trace.
fn finds_two_owners(variant: Variant) {
    let model = Model::new(variant, bounds());
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
    println!("node {} store {} state {}", size_of::<leasetso_core::Node>(), size_of::<leasetso_core::MemStore>(), size_of::<explore::model::State>());
}
