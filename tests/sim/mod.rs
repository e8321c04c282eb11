//! A deterministic simulator for leasetso clusters.
//!
//! It runs the real `leasetso_core::Node` state machines of a 3- or 5-node
//! cluster in virtual time, with drifting monotonic clocks, stepping wall
//! clocks, a network that delays, loses, duplicates and reorders, partitions,
//! crashes and restarts (a node's memory is lost, its store replica kept),
//! pauses, clients calling GetTS, and in half the runs an operator who
//! migrates the deferring cluster to primaries (nodes restarted in primary
//! mode at random moments, the faults going on) and sometimes rolls the
//! migration back (registrations cleared, primaries restarted deferring).
//! After every event it checks that at most one node holds the lease and
//! serves, that timestamps only go up, that store replicas only go up, that
//! no checked write succeeds after a registration, and that yielded nodes
//! stay out (see [`check`]). One seed is one run, replayed bit for bit.
//!
//! * [`world`]: the cluster and its event loop.
//! * [`net`]: packets, network faults and scripted rules.
//! * [`clock`]: clocks with bounded drift.
//! * [`check`]: what is checked, and the violations.
//! * [`config`]: what a seed turns into, for the correct protocol and the
//!   known-broken variants alike.
//! * [`migration`]: the operator's migration plans and rollbacks.
//! * [`scenarios`]: scripted traces (two owners, a lease counted late, a
//!   replica ahead), played on the real nodes.
//! * [`runner`]: many seeds in parallel, failure reports, replays.

pub mod check;
pub mod clock;
pub mod config;
pub mod migration;
pub mod net;
pub mod rng;
pub mod runner;
pub mod scenarios;
pub mod world;
