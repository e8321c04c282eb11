//! Breadth-first search over the model's states.
//!
//! Level by level, so the first violation found is at the least depth: the
//! shortest trace, in steps, to any violating state within the bounds.
//! States are deduplicated by a 128-bit fingerprint of the whole state (a
//! fast, non-cryptographic hash; nothing here is adversarial): at 10^8
//! states, a hash that behaves like a random function collides with
//! probability about 10^-23, and a collision could only hide states, never
//! report a false violation. The same holds for the node states, networks
//! and replica sets the states share ([`Interner`]). Each discovered state
//! keeps only its parent's index and the step that led to it; a trace is
//! rebuilt by replaying the steps from the initial state, which is exact
//! because the core is deterministic.

use std::collections::HashSet;
use std::hash::BuildHasherDefault;
use std::time::{Duration, Instant};

use super::model::{Action, Interner, Log, LowBits, Model, State, Step};

/// Adds what `s` shows to the coverage counts of [`Outcome::reached`].
fn count(reached: &mut [u64; 3], model: &Model, s: &State) {
    let c = model.coverage(s);
    reached[0] += u64::from(c.holder);
    reached[1] += u64::from(c.serving);
    reached[2] += u64::from(c.handover);
}

/// The outcome of a search.
#[derive(Debug)]
pub struct Outcome {
    /// Distinct states reached (the initial one included).
    pub states: u64,
    /// Steps taken (successors computed, duplicates and pruned ones included).
    pub transitions: u64,
    /// Levels searched: the depth of the deepest state reached.
    pub depth: u32,
    /// The largest level.
    pub widest: usize,
    /// Wall time of the search.
    pub elapsed: Duration,
    /// States with a lease holder, with a server, and after timestamps were
    /// handed out by two different nodes.
    pub reached: [u64; 3],
    /// The shortest counterexample, if any state violates a property.
    pub violation: Option<Counterexample>,
    /// Whether the whole bounded space was searched (or a violation found):
    /// false if the search stopped at the state budget.
    pub complete: bool,
}

/// A shortest path to a violation.
#[derive(Debug)]
pub struct Counterexample {
    /// What went wrong.
    pub property: String,
    /// One entry per step, numbered from 1: what it did (several lines).
    pub steps: Vec<String>,
}

impl Counterexample {
    /// The trace as numbered lines.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for line in &self.steps {
            out.push_str(line);
            out.push('\n');
        }
        out.push_str(&format!("VIOLATION: {}\n", self.property));
        out
    }
}

/// The most states a search keeps (about 130 bytes each) before it gives up
/// rather than exhaust the machine's memory: `LEASETSO_MC_MAX_STATES`, 60
/// million by default.
fn state_budget() -> usize {
    std::env::var("LEASETSO_MC_MAX_STATES").ok().and_then(|v| v.parse().ok()).unwrap_or(60_000_000)
}

/// Searches `model`'s whole bounded space, or up to the first level with a
/// violation, or until the state budget is spent.
pub fn explore(model: &Model) -> Outcome {
    let budget = state_budget();
    let started = Instant::now();
    let init = model.initial();
    let mut seen: HashSet<u128, BuildHasherDefault<LowBits>> = HashSet::default();
    seen.insert(init.fingerprint());
    // Per discovered state: its parent's index and the step from it.
    let mut parents: Vec<(u32, Action)> = vec![(u32::MAX, Action::Tick(0))];
    let mut level: Vec<(State, u32)> = vec![(init, 0)];
    let mut transitions = 0u64;
    let mut reached = [0u64; 3];
    let mut depth = 0u32;
    let mut widest = 1usize;
    let mut interner = Interner::default();
    let mut actions = Vec::new();
    let mut losses = Vec::new();
    let mut log = Log::off();
    let progress = std::env::var_os("LEASETSO_MC_PROGRESS").is_some();
    while !level.is_empty() && depth < model.bounds.max_steps {
        let mut next = Vec::new();
        for (s, idx) in &level {
            model.actions(s, &mut actions);
            let mut overflowed = false;
            let mut k = 0;
            while k < actions.len() {
                let a = actions[k];
                k += 1;
                let mut t = s.clone();
                transitions += 1;
                match model.step(&mut t, a, &mut log) {
                    Step::Pruned => {}
                    Step::Overflow => {
                        if !overflowed {
                            overflowed = true;
                            model.losses(s, &mut losses);
                            actions.extend_from_slice(&losses);
                        }
                    }
                    Step::Violation(property) => {
                        let path = path_to(&parents, *idx, a);
                        return Outcome {
                            states: parents.len() as u64,
                            transitions,
                            depth: depth + 1,
                            widest,
                            elapsed: started.elapsed(),
                            reached,
                            violation: Some(Counterexample { property, steps: replay(model, &path) }),
                            complete: true,
                        };
                    }
                    Step::Taken => {
                        if seen.len() >= budget {
                            return Outcome {
                                states: parents.len() as u64,
                                transitions,
                                depth,
                                widest,
                                elapsed: started.elapsed(),
                                reached,
                                violation: None,
                                complete: false,
                            };
                        }
                        if seen.insert(t.fingerprint()) {
                            count(&mut reached, model, &t);
                            let id = u32::try_from(parents.len()).expect("fewer than 2^32 states");
                            parents.push((*idx, a));
                            t.compact(&mut interner);
                            next.push((t, id));
                        }
                    }
                }
            }
        }
        if progress {
            eprintln!(
                "{}: level {} done: {} states ({}), next level {}, {:.1?}",
                model.variant.name,
                depth,
                parents.len(),
                interner.describe(),
                next.len(),
                started.elapsed()
            );
        }
        if !next.is_empty() {
            depth += 1;
            widest = widest.max(next.len());
        }
        level = next;
    }
    Outcome {
        states: parents.len() as u64,
        transitions,
        depth,
        widest,
        elapsed: started.elapsed(),
        reached,
        violation: None,
        complete: true,
    }
}

/// The steps from the initial state to state `idx`, then `last`.
fn path_to(parents: &[(u32, Action)], mut idx: u32, last: Action) -> Vec<Action> {
    let mut path = vec![last];
    while idx != 0 {
        let (parent, a) = parents[idx as usize];
        path.push(a);
        idx = parent;
    }
    path.reverse();
    path
}

/// Replays `path` from the initial state, describing every step.
fn replay(model: &Model, path: &[Action]) -> Vec<String> {
    let mut s = model.initial();
    let mut lines = Vec::new();
    let mut summary = model.summary(&s);
    for (n, &a) in path.iter().enumerate() {
        let mut log = Log::on();
        let tick = s.tick();
        let step = model.step(&mut s, a, &mut log);
        let notes = log.take();
        let (head, rest) = notes.split_first().map_or(("?", &[][..]), |(h, r)| (h.as_str(), r));
        let mut text = format!("{:>3}. [t={tick}] {head}", n + 1);
        for r in rest {
            text.push_str(&format!("\n            {r}"));
        }
        let now = model.summary(&s);
        if now != summary || matches!(step, Step::Violation(_)) {
            text.push_str(&format!("\n            => {now}"));
            summary = now;
        }
        lines.push(text);
        debug_assert!(
            matches!(step, Step::Taken | Step::Violation(_)),
            "a recorded step is within the bounds"
        );
    }
    lines
}
