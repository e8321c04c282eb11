//! Targeted scenarios: the minimal two-owner traces of *PaxosLease
//! Revisited*, adapted to a cluster of three where every node is proposer,
//! acceptor and replica, and played against the real `Node`s; and three
//! more, for rules the random mix rarely or never tests:
//!
//! * `IgnoreRestart`: the `Accepted`s of a proposer's first attempt are
//!   held back while it crashes and stays down until its acceptors' leases
//!   run out; its new process campaigns (its Accepts lost) and the old
//!   `Accepted`s arrive. With ballots that carry the restart counter they
//!   are stale; with the counter ignored they complete the new attempt, and
//!   a third node wins the lease no acceptor holds for it: two owners.
//! * `AcceptLate`: an attempt's `Accepted`s are held until after its
//!   deadline `d`, its timers stalled so it has not abandoned it. Counting
//!   them begins a leadership without the lease (check 10).
//! * `NotGreaterAhead` (liveness): a leader's save, its wall clock 50 s
//!   fast (within the replicas' skew allowance, B2), reaches one replica only; from then on the other leaders
//!   never hear that replica's answers to loads and always hear its
//!   `NotGreater` to saves first. NotGreater counts as success, so a leader
//!   serves, and goes on serving; one that abdicates on it never serves.
//!
//! The model's traces have separate proposers and acceptors; here a node's
//! own acceptor answers its proposer at once and crashes with it. A script
//! steers only what the environment may legitimately do: lose, hold back,
//! duplicate or delay particular messages, crash and restart nodes, step a
//! wall clock, and keep a node's timers from firing (an overloaded runtime:
//! safety must never depend on timers firing on time, since deadlines are
//! data checked in the handlers). The same script runs against the correct
//! protocol, which must come through it unharmed and then, once the network
//! heals, elect a leader again. Each script reports whether it got as far as
//! its critical step, so a pass of the correct protocol is known to have
//! faced it.
//!
//! Roles: `A` and `B` compete, `C` is the acceptor their quorums share. The
//! seed draws the lease timing, the delays and which node plays which role.

use std::time::Duration;

use leasetso_core_variants::{Ballot, LeaseConfig, NodeConfig, NodeId};

use super::check::{Violation, ViolationKind};
use super::config::{Variant, tight_lease};
use super::net::{Action, Kind, NetFaults, OpKind, Packet, Rule};
use super::rng::Rng;
use super::world::{Chaos, MS, SimConfig, World};

/// The scripted scenarios, one per known-broken rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// (a) A promise quorum completed long after Prepare, after the acceptor
    /// that promised crashed and promised a lower ballot.
    LateTimer,
    /// (b) One acceptor's Promise delivered twice makes a quorum.
    ScalarQuorum,
    /// (c) An abandoned attempt's Accept lands after another owner won; the
    /// proposer's retry reads its own stale lease as open.
    StaleOwnerOpen,
    /// (d) A Release of an old lease clears the owner's new lease.
    OwnerOnlyRelease,
    /// (e) An Accept held until the acceptor's quarantine (`D_P − 1 ms`) ends.
    ShortQuarantine,
    /// (f) A proposer restarts while the `Accepted` replies to its first
    /// attempt are in flight; they arrive while the first attempt of its
    /// new process, under the same ballot if the restart counter is
    /// ignored, waits for its own.
    IgnoreRestart,
    /// (g) The `Accepted` replies of an attempt held back until after its
    /// deadline `d`, while its runtime's timers stall.
    AcceptLate,
    /// (h) A liveness script: one replica is ahead of the others (a leader's
    /// partial save, with its wall clock ten minutes fast), and every later
    /// leader hears that replica's `NotGreater` before its quorum is done.
    NotGreaterAhead,
}

impl Scenario {
    /// Every scenario.
    pub const ALL: [Scenario; 8] = [
        Scenario::LateTimer,
        Scenario::ScalarQuorum,
        Scenario::StaleOwnerOpen,
        Scenario::OwnerOnlyRelease,
        Scenario::ShortQuarantine,
        Scenario::IgnoreRestart,
        Scenario::AcceptLate,
        Scenario::NotGreaterAhead,
    ];

    /// The broken variant this scenario is built to catch.
    pub fn catches(self) -> Variant {
        match self {
            Scenario::LateTimer => Variant::LateTimer,
            Scenario::ScalarQuorum => Variant::ScalarQuorum,
            Scenario::StaleOwnerOpen => Variant::StaleOwnerOpen,
            Scenario::OwnerOnlyRelease => Variant::OwnerOnlyRelease,
            Scenario::ShortQuarantine => Variant::ShortQuarantine,
            Scenario::IgnoreRestart => Variant::IgnoreRestart,
            Scenario::AcceptLate => Variant::AcceptLate,
            Scenario::NotGreaterAhead => Variant::AbdicateOnNotGreater,
        }
    }
}

/// Which node plays which part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Roles {
    /// A competing proposer.
    pub a: usize,
    /// The other competing proposer.
    pub b: usize,
    /// The acceptor both quorums share.
    pub c: usize,
}

impl Roles {
    /// Roles drawn from `rng`. With `a_below_b`, `A`'s id is below `B`'s, so
    /// that of two first attempts (same counter and restart) `B`'s ballot is
    /// the higher: the traces need the later winner to hold the lower ballot.
    fn draw(rng: &mut Rng, a_below_b: bool) -> Roles {
        let perms = [[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]];
        let [a, b, c] = rng.pick(&perms);
        if a_below_b && a > b { Roles { a: b, b: a, c } } else { Roles { a, b, c } }
    }
}

/// The configuration of scenario run `seed` of `scenario` against `variant`.
pub fn config(seed: u64, scenario: Scenario, variant: Variant) -> (SimConfig, Roles) {
    let mut rng = Rng::new(seed.wrapping_mul(0xA24B_AED4_963E_E407) ^ scenario as u64);
    let d_p = Duration::from_millis(rng.range(300, 3_000));
    let (lease, delay_max) = if scenario == Scenario::ShortQuarantine {
        // The model's tight boundary: no drift, no margin, D_A = D_P, and a
        // quarantine of D_P (correct) or one millisecond less (broken). The
        // race it opens is one millisecond wide, so messages take 10–100 µs.
        (tight_lease(d_p, variant == Variant::ShortQuarantine), 100_000)
    } else {
        let drift_ppm = [0, 100, 10_000, 50_000][rng.below(4) as usize];
        (LeaseConfig { duration: d_p, drift_ppm, ..LeaseConfig::default() }, rng.range(MS / 10, 5 * MS))
    };
    let mut node = NodeConfig::new(NodeId(0), 3);
    node.lease = lease;
    node.bugs = variant.bugs();
    let a_below_b = matches!(
        scenario,
        Scenario::LateTimer | Scenario::ScalarQuorum | Scenario::StaleOwnerOpen | Scenario::ShortQuarantine
    );
    let mut roles = Roles::draw(&mut rng, a_below_b);
    if scenario == Scenario::IgnoreRestart {
        // A's ballots must be the lowest of equal counters: n0.
        let (b, c) = if rng.chance(500_000) { (1, 2) } else { (2, 1) };
        roles = Roles { a: 0, b, c };
    }
    let cfg = SimConfig {
        seed,
        nodes: 3,
        node,
        net: NetFaults::clean(delay_max / 10, delay_max),
        chaos: Chaos::default(),
        client_every: rng.range(2 * MS, 20 * MS),
        chaos_for: 0,
        liveness: variant == Variant::Correct,
        split_primary_check: false,
        migration: None,
        label: format!("scenario {scenario:?}, {roles:?}, {lease:?}"),
    };
    (cfg, roles)
}

/// How far a script got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reached {
    /// A step before the critical one did not happen in time (the seed's
    /// timing did not allow it); nothing was tested.
    Setup(&'static str),
    /// The critical step was played.
    Critical,
}

fn d_p(w: &World) -> u64 {
    u64::try_from(w.cfg.node.lease.duration.as_nanos()).unwrap_or(u64::MAX)
}

fn is(kind: Kind, from: usize, to: usize) -> impl Fn(&Packet) -> bool {
    move |p| p.kind() == kind && usize::from(p.from) == from && usize::from(p.to) == to
}

/// Boots the cluster with every timer blocked and waits until every
/// acceptor is out of its boot quarantine.
fn open(w: &mut World) -> Result<bool, Violation> {
    for s in &mut w.slots {
        s.timers_blocked = true;
    }
    w.boot();
    let until = w.now + 3 * d_p(w);
    w.run_until(until, |w| (0..w.slots.len()).all(|i| w.participates(i)))
}

/// Runs until `pred`, for at most `periods` lease periods.
fn wait(w: &mut World, periods: u64, pred: impl FnMut(&World) -> bool) -> Result<bool, Violation> {
    let until = w.now + periods * d_p(w);
    w.run_until(until, pred)
}

/// Plays `scenario` on `w`, up to and through its critical step.
pub fn play(w: &mut World, scenario: Scenario, r: Roles) -> Result<Reached, Violation> {
    let (a, b, c) = (r.a, r.b, r.c);
    let (a16, b16, c16) = (a as u16, b as u16, c as u16);
    match scenario {
        Scenario::LateTimer => {
            // B's Prepare reaches C, whose Promise is held back; A and B
            // cannot hear each other (their own acceptors stay out of it).
            w.rules = vec![
                Rule::link(a16, b16, Action::Drop),
                Rule::link(b16, a16, Action::Drop),
                Rule::of(Kind::Promise, c16, b16, Action::Hold),
            ];
            if !open(w)? {
                return Ok(Reached::Setup("boot quarantine"));
            }
            w.note("B campaigns; C's Promise to B is held back");
            w.block_timers(b, false);
            if !wait(w, 2, |w| w.held.iter().any(is(Kind::Promise, c, b)))? {
                return Ok(Reached::Setup("C promises B"));
            }
            // B's runtime stalls: its attempt stays open, past its deadline
            // (which only the correct protocol has already fixed).
            w.block_timers(b, true);
            // C crashes, forgetting its promise to B, and sits out its quarantine.
            w.note("C crashes, forgetting its promise to B");
            w.crash(c);
            w.restart(c);
            if !wait(w, 3, |w| w.participates(c))? {
                return Ok(Reached::Setup("C's quarantine"));
            }
            // A, with the lower ballot, wins on {A, C}.
            w.note("A campaigns with the lower ballot");
            w.block_timers(a, false);
            if !wait(w, 3, |w| w.lease(a).is_some())? {
                return Ok(Reached::Setup("A acquires"));
            }
            // C's Promise to B, from before the crash, finally arrives.
            w.note("critical step: C's Promise from before its crash reaches B");
            w.rules.retain(|r| r.action != Action::Hold);
            w.release_held(w.now, is(Kind::Promise, c, b));
            wait(w, 2, |_| false)?;
        }
        Scenario::ScalarQuorum => {
            // A wins on {A, B}: its Accept to C is lost, and nobody learns of it.
            w.rules = vec![
                Rule::of(Kind::Accept, a16, c16, Action::Drop),
                Rule::of(Kind::LearnChosen, a16, b16, Action::Drop),
                Rule::of(Kind::LearnChosen, a16, c16, Action::Drop),
                Rule::of(Kind::Promise, a16, b16, Action::Drop),
                Rule::of(Kind::Promise, c16, b16, Action::Copies(2)),
            ];
            if !open(w)? {
                return Ok(Reached::Setup("boot quarantine"));
            }
            w.block_timers(a, false);
            if !wait(w, 3, |w| w.lease(a).is_some())? {
                return Ok(Reached::Setup("A acquires"));
            }
            // B campaigns: its own acceptor reports A's lease (blocks), C
            // has none and its one Promise is delivered twice.
            w.note("critical step: B campaigns; C's Promise to B is delivered twice");
            w.block_timers(b, false);
            wait(w, 2, |_| false)?;
        }
        Scenario::StaleOwnerOpen => {
            w.rules = vec![
                Rule::link(a16, b16, Action::Drop),
                Rule::link(b16, a16, Action::Drop),
                Rule::of(Kind::Accept, b16, c16, Action::Hold),
            ];
            if !open(w)? {
                return Ok(Reached::Setup("boot quarantine"));
            }
            // B gets promises from {B, C}; its Accept to C is held back, so
            // the attempt never completes.
            w.note("B campaigns; its Accept to C is held back");
            w.block_timers(b, false);
            if !wait(w, 2, |w| w.held.iter().any(is(Kind::Accept, b, c)))? {
                return Ok(Reached::Setup("B sends Accept"));
            }
            w.block_timers(b, true);
            // C forgets its promise to B; after its quarantine A, with the
            // lower ballot, wins on {A, C}.
            w.note("C crashes, forgetting its promise to B; A will campaign after C's quarantine");
            w.crash(c);
            w.restart(c);
            if !wait(w, 3, |w| w.participates(c))? {
                return Ok(Reached::Setup("C's quarantine"));
            }
            w.block_timers(a, false);
            if !wait(w, 3, |w| w.lease(a).is_some())? {
                return Ok(Reached::Setup("A acquires"));
            }
            // B's stale Accept lands on C (its ballot is above A's), and B's
            // runtime resumes: it abandons the old attempt and retries.
            w.note("critical step: B's stale Accept reaches C; B's timers run again, so it retries");
            w.rules.retain(|r| r.action != Action::Hold);
            w.release_held(w.now, is(Kind::Accept, b, c));
            w.block_timers(b, false);
            wait(w, 2, |_| false)?;
        }
        Scenario::OwnerOnlyRelease => {
            w.rules = vec![
                Rule::of(Kind::LearnChosen, a16, b16, Action::Drop),
                Rule::of(Kind::LearnChosen, a16, c16, Action::Drop),
            ];
            if !open(w)? {
                return Ok(Reached::Setup("boot quarantine"));
            }
            w.block_timers(a, false);
            let first = |w: &World| w.lease(a).map(|(ballot, _)| ballot);
            if !wait(w, 3, |w| {
                first(w).is_some_and(|l| w.acceptor_lease(b) == Some(l) && w.acceptor_lease(c) == Some(l))
            })? {
                return Ok(Reached::Setup("A acquires on all three"));
            }
            let b1 = first(w).unwrap_or(Ballot::ZERO);
            // A releases; its Releases to B and C are held back. A then
            // acquires again under a new ballot.
            w.note("A releases; its Releases to B and C are held back");
            w.rules.insert(0, Rule::of(Kind::Release, a16, b16, Action::Hold));
            w.rules.insert(0, Rule::of(Kind::Release, a16, c16, Action::Hold));
            w.release(a, true);
            if !wait(w, 8, |w| first(w).is_some_and(|l| l != b1))? {
                return Ok(Reached::Setup("A acquires again"));
            }
            // A's runtime stalls (no renewals), the old Releases arrive, and C
            // campaigns.
            w.note("critical step: A holds a new lease; its old Releases arrive; C campaigns");
            w.block_timers(a, true);
            w.rules.retain(|r| r.action != Action::Hold);
            w.release_held(w.now, |p| p.kind() == Kind::Release);
            w.block_timers(c, false);
            wait(w, 2, |_| false)?;
        }
        Scenario::ShortQuarantine => {
            w.rules = vec![
                Rule::link(a16, b16, Action::Drop),
                Rule::link(b16, a16, Action::Drop),
                Rule::of(Kind::Accept, a16, c16, Action::Hold),
            ];
            if !open(w)? {
                return Ok(Reached::Setup("boot quarantine"));
            }
            // A gets promises from {A, C}; its Accept to C is held back.
            w.note("A campaigns; its Accept to C is held back");
            w.block_timers(a, false);
            if !wait(w, 2, |w| w.held.iter().any(is(Kind::Accept, a, c)))? {
                return Ok(Reached::Setup("A sends Accept"));
            }
            // B, with the higher ballot, wins on {B, C} within microseconds;
            // C crashes the moment it has accepted B's lease.
            w.note("B campaigns with the higher ballot; C will crash once it accepts B");
            w.block_timers(b, false);
            let b_at_c = |w: &World| w.acceptor_lease(c).is_some_and(|l| l.node == NodeId(b16));
            if !wait(w, 2, b_at_c)? {
                return Ok(Reached::Setup("C accepts B"));
            }
            w.crash(c);
            w.restart(c);
            // A's Accept reaches C the instant its quarantine ends.
            w.note("critical step: A's Accept is released to reach C the instant its quarantine ends");
            let Some(end) = w.quarantine_end(c) else { return Ok(Reached::Setup("C restarts")) };
            w.rules.retain(|r| r.action != Action::Hold);
            w.release_held(end, is(Kind::Accept, a, c));
            wait(w, 2, |_| false)?;
        }
        Scenario::IgnoreRestart => {
            // A's first attempt is accepted by B and C; their Accepteds are
            // held back, so it never completes.
            w.rules = vec![
                Rule::of(Kind::Accepted, b16, a16, Action::Hold),
                Rule::of(Kind::Accepted, c16, a16, Action::Hold),
                Rule::of(Kind::LearnChosen, a16, b16, Action::Drop),
                Rule::of(Kind::LearnChosen, a16, c16, Action::Drop),
            ];
            if !open(w)? {
                return Ok(Reached::Setup("boot quarantine"));
            }
            w.note("A campaigns; B's and C's Accepteds are held back");
            w.block_timers(a, false);
            let both = |w: &World| {
                w.held.iter().any(is(Kind::Accepted, b, a)) && w.held.iter().any(is(Kind::Accepted, c, a))
            };
            if !wait(w, 2, both)? {
                return Ok(Reached::Setup("B and C accept A"));
            }
            // A crashes; B's and C's leases of it run out.
            w.note("A crashes; it stays down until B's and C's leases of its attempt run out");
            w.crash(a);
            if !wait(w, 3, |w| w.acceptor_lease(b).is_none() && w.acceptor_lease(c).is_none())? {
                return Ok(Reached::Setup("B's and C's leases expire"));
            }
            // A's new process campaigns; its own Accepts are lost.
            w.rules.insert(0, Rule::of(Kind::Accept, a16, b16, Action::Drop));
            w.rules.insert(0, Rule::of(Kind::Accept, a16, c16, Action::Drop));
            w.note("A restarts and campaigns; its new Accepts are lost");
            w.restart(a);
            // Its first attempt starts within a quarter lease; its Prepare
            // and the Promises take a delay each.
            let settle = d_p(w) / 4 + 4 * w.cfg.net.delay_max;
            w.run_to(w.now + settle)?;
            w.note("critical step: the Accepteds of A's first process arrive; then C campaigns");
            w.rules.retain(|r| r.action != Action::Hold);
            w.release_held(w.now, |p| p.kind() == Kind::Accepted);
            w.run_to(w.now + 2 * w.cfg.net.delay_max)?;
            w.block_timers(c, false);
            wait(w, 2, |_| false)?;
        }
        Scenario::AcceptLate => {
            w.rules = vec![
                Rule::of(Kind::Accepted, b16, a16, Action::Hold),
                Rule::of(Kind::Accepted, c16, a16, Action::Hold),
            ];
            if !open(w)? {
                return Ok(Reached::Setup("boot quarantine"));
            }
            w.note("A campaigns; B's and C's Accepteds are held back");
            w.block_timers(a, false);
            let both = |w: &World| {
                w.held.iter().any(is(Kind::Accepted, b, a)) && w.held.iter().any(is(Kind::Accepted, c, a))
            };
            if !wait(w, 2, both)? {
                return Ok(Reached::Setup("B and C accept A"));
            }
            // A's runtime stalls past the attempt's deadline d.
            w.note("A's timers stall past its attempt's deadline");
            w.block_timers(a, true);
            w.run_to(w.now + d_p(w) + d_p(w) / 5)?;
            w.note("critical step: the Accepteds arrive after A's deadline");
            w.rules.clear();
            w.release_held(w.now, |p| p.kind() == Kind::Accepted);
            w.run_to(w.now + 2 * w.cfg.net.delay_max)?;
            w.block_timers(a, false);
            wait(w, 2, |_| false)?;
        }
        Scenario::NotGreaterAhead => {
            if !open(w)? {
                return Ok(Reached::Setup("boot quarantine"));
            }
            w.block_timers(a, false);
            if !wait(w, 3, |w| w.serving(a))? {
                return Ok(Reached::Setup("A serves"));
            }
            // A's wall clock jumps 50 s ahead (as far as the replicas'
            // skew allowance lets a correct leader be, B2), so its next save
            // reaches far; only C performs it.
            w.note("A's wall clock jumps 50 s; its saves reach only C");
            w.rules = vec![
                Rule {
                    from: Some(a16),
                    to: Some(a16),
                    kind: Some(Kind::StoreReq),
                    op: None,
                    action: Action::Drop,
                },
                Rule::of(Kind::StoreReq, a16, b16, Action::Drop),
            ];
            let offset = w.slots[a].wall_offset_ms;
            w.slots[a].wall_offset_ms += 50_000;
            let ahead =
                |w: &World| w.slots[c].store.window_end_ms() > w.slots[b].store.window_end_ms() + 40_000;
            if !wait(w, 3, ahead)? {
                return Ok(Reached::Setup("C ahead"));
            }
            // A crashes (its clock set right again), and from now on a
            // leader other than C hears C's answers to saves before the
            // other replica's, and never its answers to loads.
            w.note(
                "critical step: A crashes; C's Loaded answers are lost, and only C's answers to saves arrive",
            );
            w.crash(a);
            w.slots[a].wall_offset_ms = offset;
            w.rules = vec![
                Rule::replies(OpKind::Load, c16, a16, Action::Drop),
                Rule::replies(OpKind::Load, c16, b16, Action::Drop),
                Rule::replies(OpKind::Save, a16, b16, Action::Drop),
                Rule::replies(OpKind::Save, b16, a16, Action::Drop),
            ];
            w.restart(a);
            w.block_timers(a, false);
            w.block_timers(b, false);
            serves_on(w, 4, "while one replica is ahead of the quorum's window")?;
            w.rules.clear();
        }
    }
    Ok(Reached::Critical)
}

/// Every lease period during `periods` that nobody serves is a liveness
/// violation: the network stays as it is, so a cluster that serves at all
/// must go on serving.
fn serves_on(w: &mut World, periods: u64, what: &str) -> Result<(), Violation> {
    let until = w.now + periods * d_p(w);
    let serving = |w: &World| (0..w.slots.len()).any(|i| w.serving(i));
    if !wait(w, 6, serving)? {
        return Err(Violation {
            kind: ViolationKind::NoLiveness,
            at: w.now,
            detail: format!("nobody serves within six lease periods {what}\n{}", w.describe_nodes()),
        });
    }
    if w.run_until(until, |w| !serving(w))? && w.now < until {
        return Err(Violation {
            kind: ViolationKind::NoLiveness,
            at: w.now,
            detail: format!("serving stopped {what}\n{}", w.describe_nodes()),
        });
    }
    Ok(())
}

/// A liveness script, not a two-owner one: `A`'s attempt is accepted by the
/// majority `{A, C}`, but `B` (which promised a higher ballot its own
/// acceptor alone saw) rejects `A`'s Accept, and that `Rejected` arrives
/// before `C`'s `Accepted`. Every reply arrives long before `A`'s deadline.
/// Returns the lease `A` holds afterwards and the lease a majority of
/// acceptors holds: a proposer that waited for its quorum would own the
/// lease the majority accepted.
pub fn accepted_then_rejected(
    w: &mut World,
    r: Roles,
) -> Result<(Option<Ballot>, Option<Ballot>), Violation> {
    let (a, b, c) = (r.a, r.b, r.c);
    let (a16, b16, c16) = (a as u16, b as u16, c as u16);
    w.rules = vec![
        Rule::of(Kind::Prepare, b16, a16, Action::Drop),
        Rule::of(Kind::Prepare, b16, c16, Action::Drop),
        Rule::of(Kind::Prepare, a16, b16, Action::Drop),
        Rule::of(Kind::Accepted, c16, a16, Action::Hold),
    ];
    if !open(w)? {
        return Ok((None, None));
    }
    // B's attempt reaches its own acceptor only.
    w.block_timers(b, false);
    let step = w.cfg.net.delay_max * 4;
    w.run_to(w.now + step)?;
    w.block_timers(b, true);
    // A's attempt: promises from {A, C}; Accepts to all three.
    w.block_timers(a, false);
    wait(w, 2, |w| w.held.iter().any(is(Kind::Accepted, c, a)))?;
    w.run_to(w.now + step)?;
    w.rules.clear();
    w.release_held(w.now, |_| true);
    w.run_to(w.now + step)?;
    let majority = w.acceptor_lease(a).filter(|&l| w.acceptor_lease(c) == Some(l));
    Ok((w.lease(a).map(|(l, _)| l), majority))
}
