//! What a seed turns into: the protocol variant under test, the cluster's
//! timing, and the fault mix.
//!
//! The correct protocol and every broken variant draw from the same
//! generator, so the correct protocol is put through exactly the fault mix
//! that finds the broken ones. Each seed picks a *profile*: an even mix of
//! faults, or one biased toward the pattern a known two-owner trace needs
//! (replies that arrive lease periods late, stale Accepts and Releases,
//! duplicates, whole-cluster crashes, stale messages delivered right when a
//! quarantine ends). Independently of the profile, half the seeds (every
//! seed of the variants whose bug only a migration shows) carry a migration
//! plan, drawn last so that a seed's profile, timing and fault rates are
//! the same with or without it.
//!
//! Runs last 60 to 120 s of faults then the quiet tail, with a client call
//! every 10 to 80 ms on average: many short runs find more than a few long
//! ones in the same time, and 10,000 of them fit the test's budget.

use std::time::Duration;

use leasetso_core_variants::{Bugs, LeaseConfig, MAX_LOGICAL, NodeConfig, NodeId, OracleConfig};

use super::migration::Migration;
use super::net::{Kind, KindFaults, NetFaults};
use super::rng::{PPM, Rng};
use super::world::{Chaos, MS, SEC, SimConfig, WALL_SKEW_MS};

/// The protocol under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// PaxosLease, corrected.
    Correct,
    /// The attempt deadline starts at the promise quorum, not at Prepare.
    LateTimer,
    /// Quorums counted by a plain counter, so a duplicate counts twice.
    ScalarQuorum,
    /// "My own reported lease is open", whatever its ballot.
    StaleOwnerOpen,
    /// A Release clears any lease of its owner, whatever the ballot.
    OwnerOnlyRelease,
    /// `Q = D_P − 1 ms` with no drift and no margin (and `D_A = D_P`).
    ShortQuarantine,
    /// The store's primary check and its write as two transactions (a
    /// simulator-only wrapper around the replicas): a registration can land
    /// between them, and the checked write still succeeds after it.
    SplitPrimaryCheck,
    /// A yielded node re-armed by `LearnChosen` (and a heard Release).
    YieldRearmed,
    /// `PrimaryExists` replies that arrive after the quorum ignored.
    IgnoreLatePrimary,
    /// An acquisition completed by `Accepted` replies that arrive at or after
    /// the attempt's deadline `d`.
    AcceptLate,
    /// The restart counter ignored: ballots and store request ids of every
    /// start are those of the first.
    IgnoreRestart,
    /// The owner serves until `d`, not `d − m`.
    ServeInMargin,
    /// A leader abdicates whenever a replica answers `NotGreater`.
    AbdicateOnNotGreater,
}

impl Variant {
    /// The core's switch for the variant.
    pub fn bugs(self) -> Bugs {
        match self {
            Variant::Correct => Bugs::NONE,
            Variant::LateTimer => Bugs::LATE_TIMER,
            Variant::ScalarQuorum => Bugs::SCALAR_QUORUM,
            Variant::StaleOwnerOpen => Bugs::STALE_OWNER_OPEN,
            Variant::OwnerOnlyRelease => Bugs::OWNER_ONLY_RELEASE,
            Variant::ShortQuarantine => Bugs::UNCHECKED_TIMING,
            Variant::SplitPrimaryCheck => Bugs::NONE,
            Variant::YieldRearmed => Bugs::YIELD_REARMED,
            Variant::IgnoreLatePrimary => Bugs::IGNORE_LATE_PRIMARY,
            Variant::AcceptLate => Bugs::ACCEPT_LATE,
            Variant::IgnoreRestart => Bugs::IGNORE_RESTART,
            Variant::ServeInMargin => Bugs::SERVE_IN_MARGIN,
            Variant::AbdicateOnNotGreater => Bugs::ABDICATE_ON_NOT_GREATER,
        }
    }

    /// Whether the variant's bug shows only during a migration: its random
    /// runs always migrate (the correct protocol's, one in two).
    pub fn migrates(self) -> bool {
        matches!(self, Variant::SplitPrimaryCheck | Variant::YieldRearmed | Variant::IgnoreLatePrimary)
    }

    /// Whether the replicas run behind the two-transaction wrapper.
    pub fn split_primary_check(self) -> bool {
        self == Variant::SplitPrimaryCheck
    }
}

/// The tightest timing the rules allow with no drift and no margin:
/// `D_A = Q = D_P` (T2 and T3 hold with equality), or the broken one with
/// the quarantine one millisecond short.
pub fn tight_lease(duration: Duration, short_quarantine: bool) -> LeaseConfig {
    let q = if short_quarantine { duration - Duration::from_millis(1) } else { duration };
    LeaseConfig {
        duration,
        drift_ppm: 0,
        margin: Duration::ZERO,
        acceptor_duration: Some(duration),
        quarantine: Some(q),
    }
}

/// A lease configuration the correct protocol accepts, drawn for `variant`.
fn lease_config(rng: &mut Rng, variant: Variant) -> LeaseConfig {
    let d_p = rng.range(300, 3_000);
    let duration = Duration::from_millis(d_p);
    if variant == Variant::ShortQuarantine {
        return tight_lease(duration, true);
    }
    if rng.chance(PPM / 8) {
        return tight_lease(duration, false);
    }
    let drift_ppm = [0, 100, 10_000, 10_000, 50_000][rng.below(5) as usize];
    // The margin's variant needs one to break.
    let margin =
        if rng.chance(PPM / 2) && variant != Variant::ServeInMargin { 0 } else { rng.range(1, d_p / 10) };
    let mut lease = LeaseConfig {
        duration,
        drift_ppm,
        margin: Duration::from_millis(margin),
        acceptor_duration: None,
        quarantine: None,
    };
    let required = lease.required_acceptor_duration();
    if rng.chance(PPM / 4) {
        lease.acceptor_duration = Some(required + Duration::from_millis(rng.range(0, d_p / 2)));
    }
    if rng.chance(PPM / 4) {
        lease.quarantine = Some(required + Duration::from_millis(rng.range(0, d_p / 2)));
    }
    lease
}

fn oracle_config(rng: &mut Rng) -> OracleConfig {
    let update = rng.range(10, 100);
    OracleConfig {
        update_interval: Duration::from_millis(update),
        save_interval_ms: rng.range(update + 5, 3_000),
        max_logical: if rng.chance(PPM / 8) { rng.range(64, 4_096) as u32 } else { MAX_LOGICAL },
        ..OracleConfig::default()
    }
}

/// The fault mixes a seed can draw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// A bit of everything.
    Mixed,
    /// Promises and Accepteds often arrive lease periods late (LateTimer).
    LateReplies,
    /// Accepts often arrive lease periods late (StaleOwnerOpen, short quarantine).
    StaleAccepts,
    /// Frequent releases whose messages arrive late (OwnerOnlyRelease).
    StaleReleases,
    /// Many duplicated messages (scalar quorum counting).
    Duplicates,
    /// Whole-cluster crashes, stale messages held to the end of quarantines.
    CrashStorm,
    /// Sub-millisecond delays and crashes: timing races at their tightest.
    FastLan,
    /// Hardly any faults: the common path.
    Calm,
}

impl Profile {
    const ALL: [Profile; 8] = [
        Profile::Mixed,
        Profile::LateReplies,
        Profile::StaleAccepts,
        Profile::StaleReleases,
        Profile::Duplicates,
        Profile::CrashStorm,
        Profile::FastLan,
        Profile::Calm,
    ];
    const WEIGHTS: [u32; 8] = [28, 12, 12, 10, 12, 12, 10, 4];
}

/// The configuration of random run `seed` for `variant`.
pub fn random(seed: u64, variant: Variant) -> SimConfig {
    let mut rng = Rng::new(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xC0FF_EE00_D15E_A5E5);
    let nodes = if rng.chance(PPM / 3 * 2) { 3 } else { 5 };
    let lease = lease_config(&mut rng, variant);
    let d_p = u64::try_from(lease.duration.as_nanos()).unwrap_or(u64::MAX);
    let mut node = NodeConfig::new(NodeId(0), nodes);
    node.lease = lease;
    node.oracle = oracle_config(&mut rng);
    node.store_timeout = Duration::from_nanos(rng.range((d_p / 2).max(100 * MS), 2 * d_p));
    node.bugs = variant.bugs();

    let profile = Profile::ALL[rng.weighted(&Profile::WEIGHTS)];
    let base = KindFaults { loss: 10_000, dup: 10_000, long: 5_000 };
    let mut net = NetFaults {
        delay_min: 0,
        // Ordinary delays stay well inside a lease (a renewal needs four
        // one-way delays within the half lease left when it starts); the
        // long delays are the fault.
        delay_max: rng.range(2 * MS, 50 * MS).min(d_p / 15),
        long_max: d_p * rng.range(2, 5),
        local_max: MS,
        kinds: [base; Kind::COUNT],
    };
    let mut chaos = Chaos {
        crash_every: d_p * rng.range(10, 40),
        crash_many_every: d_p * rng.range(40, 120),
        down_max: d_p * 3,
        partition_every: d_p * rng.range(10, 40),
        partition_max: d_p * 5,
        pause_every: d_p * rng.range(20, 60),
        pause_max: d_p * 2,
        stall_every: d_p * rng.range(20, 60),
        stall_max: d_p * 2,
        release_every: d_p * rng.range(10, 40),
        rate_every: d_p * rng.range(5, 20),
        wall_every: SEC * rng.range(5, 30),
        hold_every: d_p * rng.range(10, 40),
        hold_max: d_p * 3,
        one_way_every: d_p * rng.range(10, 40),
        one_way_max: d_p * 3,
        crash_after_every: d_p * rng.range(20, 60),
        new_origin: PPM / 3,
        quarantine_edge: 0,
        store_fail: 5_000,
    };
    let set = |net: &mut NetFaults, kinds: &[Kind], f: &dyn Fn(&mut KindFaults)| {
        for k in kinds {
            f(&mut net.kinds[k.index()]);
        }
    };
    match profile {
        Profile::Mixed => {}
        Profile::LateReplies => {
            set(&mut net, &[Kind::Promise, Kind::Accepted], &|k| k.long = 200_000);
            chaos.crash_many_every = d_p * rng.range(8, 20);
            chaos.hold_every = d_p * rng.range(3, 8);
            chaos.quarantine_edge = PPM / 3;
        }
        Profile::StaleAccepts => {
            set(&mut net, &[Kind::Accept], &|k| k.long = 250_000);
            chaos.crash_many_every = d_p * rng.range(8, 20);
            chaos.crash_after_every = d_p * rng.range(3, 10);
            chaos.hold_every = d_p * rng.range(3, 8);
            chaos.quarantine_edge = PPM / 3;
        }
        Profile::StaleReleases => {
            set(&mut net, &[Kind::Release], &|k| k.long = 500_000);
            set(&mut net, &[Kind::LearnChosen], &|k| k.loss = 300_000);
            chaos.release_every = d_p * rng.range(3, 8);
        }
        Profile::Duplicates => {
            let lease_kinds = &Kind::ALL[..7];
            set(&mut net, lease_kinds, &|k| k.dup = 250_000);
            set(&mut net, &[Kind::LearnChosen], &|k| k.loss = 300_000);
        }
        Profile::CrashStorm => {
            chaos.crash_every = d_p * rng.range(3, 8);
            chaos.crash_many_every = d_p * rng.range(5, 15);
            chaos.down_max = d_p * 3 / 2;
            chaos.quarantine_edge = PPM / 2;
            chaos.crash_after_every = d_p * rng.range(3, 10);
            set(&mut net, &Kind::ALL, &|k| k.long = 50_000);
        }
        Profile::FastLan => {
            net.delay_min = 10_000;
            net.delay_max = 200_000;
            net.local_max = 50_000;
            chaos.crash_every = d_p * rng.range(4, 10);
            chaos.crash_many_every = d_p * rng.range(8, 20);
            chaos.crash_after_every = d_p * rng.range(2, 6);
            chaos.quarantine_edge = PPM / 2;
        }
        Profile::Calm => {
            net.kinds = [KindFaults::default(); Kind::COUNT];
            chaos = Chaos { wall_every: chaos.wall_every, rate_every: chaos.rate_every, ..Chaos::default() };
        }
    }
    let chaos_for = rng.range(60, 120) * SEC;
    let client_every = rng.range(10 * MS, 80 * MS);
    // Drawn last, so that the draws above are those of the runs before
    // migrations were simulated.
    node.primary_poll = Duration::from_nanos(rng.range(d_p / 2, 2 * d_p));
    let migrate = rng.chance(PPM / 2) || variant.migrates();
    let migration = migrate.then(|| Migration::draw(&mut rng, nodes, d_p, chaos_for));
    let plan = migration.as_ref().map_or_else(String::new, |m| format!(", {}", m.describe()));
    SimConfig {
        seed,
        nodes,
        node,
        net,
        chaos,
        client_every,
        chaos_for,
        // The liveness bug is caught by the liveness check; the others may
        // stall the cluster on the way to what they break.
        liveness: matches!(variant, Variant::Correct | Variant::AbdicateOnNotGreater),
        split_primary_check: variant.split_primary_check(),
        migration,
        label: format!("{profile:?}, {nodes} nodes, {:?}{plan}", node.lease),
    }
}

/// `local` ns of a node's clock in true time, on the slowest clock the drift
/// bound allows.
fn on_slowest_clock(cfg: &SimConfig, local: u64) -> u64 {
    let rho = u128::from(cfg.node.lease.drift_ppm.min(PPM - 1));
    let slow = u128::from(local) * u128::from(PPM) / (u128::from(PPM) - rho);
    u64::try_from(slow).unwrap_or(u64::MAX) + MS
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// How long the quiet tail lasts before the liveness check: three lease
/// periods, and in a run that migrates also what the hand-over to a primary
/// (or back) may take on top of a plain election: a deferring leader serves
/// until its next save (a save interval) before it yields, a primary
/// registers before it campaigns (a store round, retried once), a yielded
/// node reads the registration every `primary_poll` (a read round each),
/// and the operator repeats its clear pass every lease period.
///
/// A new leadership whose predecessor saved a window up to the ahead bound
/// of a wall clock ahead of its own waits for its wall clock to come within
/// the bound (B3): at most the skew between two nodes' wall clocks, which
/// the tail adds.
pub fn tail_length(cfg: &SimConfig) -> u64 {
    let mut local = 3 * nanos(cfg.node.lease.duration) + 2 * WALL_SKEW_MS * MS;
    if cfg.migration.is_some() {
        local += cfg.node.oracle.save_interval_ms * MS
            + 3 * nanos(cfg.node.store_timeout)
            + 2 * nanos(cfg.node.primary_poll)
            + nanos(cfg.node.lease.duration);
    }
    on_slowest_clock(cfg, local)
}
