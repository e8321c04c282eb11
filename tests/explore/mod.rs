//! An exhaustive, bounded model checker over the real `leasetso-core` node.
//!
//! Random simulation finds the bugs that are likely; the broken PaxosLease
//! variants need a precise, unlikely schedule (a Promise delayed across a
//! restart, a stale Accept overtaking a newer attempt, a Release that arrives
//! after the next acquisition). A breadth-first search over every
//! interleaving within small bounds finds such a schedule whenever one
//! exists within the bounds, and the first one it finds is a shortest one,
//! which makes the printed trace readable.
//!
//! The search drives the real [`leasetso_core::Node`] (proposer, acceptors,
//! learner, oracle and store rounds) and the reference
//! [`leasetso_core::MemStore`]; the model only decides what happens next.
//! See [`model`] for what is modelled and [`search`] for the search itself.

pub mod model;
pub mod search;

pub use model::{Bounds, Model, Variant};
pub use search::{Outcome, explore};
