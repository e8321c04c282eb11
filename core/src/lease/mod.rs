//! PaxosLease, corrected: diskless leases by Paxos, after *PaxosLease
//! Revisited* (Trencséni, 2026). The 2012 pseudocode has two-owner bugs that
//! the revision's TLA+ model found; each rule below cites the revision's name
//! where it is enforced.
//!
//! * [`proposer`]: P1–P6, run by every node that campaigns.
//! * [`acceptor`]: A1–A4, memory only, one per node and lease name.
//! * [`learner`]: L1, the leader hint followers redirect clients with.
//! * [`timing`]: `D_P`, `D_A`, `Q` and the margin, checked by T2/T3.
//! * [`message`]: the messages and their wire encoding.
//!
//! # Safety argument
//!
//! *At most one node serves at any instant of real time*, under three
//! assumptions:
//! 1. **Bounded clock rates**: every node's monotonic clock runs at a rate in
//!    `[1 − ρ, 1 + ρ]` of real time, with `ρ` the configured drift bound.
//!    Clocks need not agree on the time, only on its passage.
//! 2. **A clock that counts across suspend** (`CLOCK_BOOTTIME`): a paused VM or
//!    a suspended laptop otherwise wakes up believing less time has passed.
//! 3. **A fixed acceptor set**: every two majorities intersect.
//!
//! An owner acts only while `now + m < d`, with `d = t_prepare + D_P` on
//! its own clock (P1, T1), so everything it does ends within
//! `(D_P + m)/r_min` of real time after its Prepare went out. Each acceptor of
//! its accept quorum received the Accept after that Prepare and keeps the
//! lease for `D_A` on its own clock, at least `D_A/r_max` of real time. T2,
//! `(D_P + m)·r_max ≤ D_A·r_min`, is exactly `(D_P + m)/r_min ≤ D_A/r_max`:
//! the acceptors' view outlasts the owner's. While a majority keeps the
//! lease live, every Prepare of another ballot is answered with that lease,
//! which blocks (P2), so no other proposer gathers an open quorum. An acceptor
//! that restarted forgot its lease and promises; it is silent for `Q` (A4,
//! T3: `Q/r_max ≥ (D_P + m)/r_min`), by which time every attempt that could
//! have counted on it has passed its deadline. Quorums are sets of distinct
//! ids, so redelivery cannot fake one; a Release clears only the exact lease
//! it names (A3); a proposer counts its own reported lease as open only for
//! the exact renewal it started (P2), so a stale Accept of an abandoned
//! attempt can never make it an owner beside the real one.
//!
//! **Beyond the assumptions** (a clock faster than the bound, a suspend the
//! clock did not count, an acceptor set changed without care) two nodes can
//! believe they hold the lease at once. The timestamps still never repeat or
//! go back: every leadership fences the quorum-replicated window store with
//! its acquisition ballot before serving (load raises the fence on a quorum)
//! and serves only below a window it saved on a quorum with that fence. Once
//! a newer leadership has loaded on a quorum, no older one can save on a
//! quorum again (two majorities intersect), and the newer one starts above
//! every window an older one ever saved. The old leader may keep serving from
//! the window it already saved until it learns of the fence or its lease
//! runs out; those timestamps are below the saved window, which the newer
//! leader starts above, so none is ever repeated, but a client could see the
//! old leader's smaller timestamps after the new leader's larger ones: real
//! time order, not uniqueness, is what the lease assumptions protect.

pub mod acceptor;
pub mod learner;
pub mod message;
pub mod proposer;
pub mod timing;

pub use acceptor::Acceptor;
pub use learner::Learner;
pub use message::LeaseMsg;
pub use proposer::{LeaseChange, Proposer};
pub use timing::{LeaseConfig, LeaseConfigError, LeaseTiming};

/// Known-broken protocol variants (ARCHITECTURE.md), which the simulator and the
/// model checker must catch. A default `Bugs` is the correct protocol; the
/// others are constructible only in `leasetso-core-variants`
/// (tests/core-variants), the build of these sources that sets
/// `feature = "broken-variants"`. leasetso-core itself has no such feature
/// and refuses to compile with the cfg (below), so a binary that serves can
/// hold a non-default `Bugs` only by linking that unpublished package, which
/// [`Bugs::AVAILABLE`] and the test `broken_variants` of leasetso-tests
/// catch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Bugs {
    pub(crate) late_timer: bool,
    pub(crate) scalar_quorum: bool,
    pub(crate) stale_owner_open: bool,
    pub(crate) owner_only_release: bool,
    pub(crate) unchecked_timing: bool,
    pub(crate) accept_late: bool,
    pub(crate) ignore_restart: bool,
    pub(crate) serve_in_margin: bool,
    pub(crate) abdicate_on_not_greater: bool,
    pub(crate) yield_rearmed: bool,
    pub(crate) ignore_late_primary: bool,
}

impl Bugs {
    /// Whether this build of the core has the broken variants: true only in
    /// `leasetso-core-variants`. A build that serves must see `false`.
    pub const AVAILABLE: bool = cfg!(feature = "broken-variants");
}

/// The variants compile only under the variant package's name: a build of
/// `leasetso-core` with the cfg forced on (a re-added feature, `--cfg` in
/// RUSTFLAGS) fails here instead of reaching a binary that serves.
#[cfg(feature = "broken-variants")]
const _: () = {
    const fn same(a: &[u8], b: &[u8]) -> bool {
        if a.len() != b.len() {
            return false;
        }
        let mut i = 0;
        while i < a.len() {
            if a[i] != b[i] {
                return false;
            }
            i += 1;
        }
        true
    }
    assert!(
        same(env!("CARGO_PKG_NAME").as_bytes(), b"leasetso-core-variants"),
        "the broken PaxosLease variants compile only into leasetso-core-variants (tests/core-variants), \
         never into leasetso-core"
    );
};

#[cfg(feature = "broken-variants")]
impl Bugs {
    /// The correct protocol.
    pub const NONE: Bugs = Bugs {
        late_timer: false,
        scalar_quorum: false,
        stale_owner_open: false,
        owner_only_release: false,
        unchecked_timing: false,
        accept_late: false,
        ignore_restart: false,
        serve_in_margin: false,
        abdicate_on_not_greater: false,
        yield_rearmed: false,
        ignore_late_primary: false,
    };
    /// The proposer's deadline starts when the promise quorum arrives, not
    /// when Prepare is sent ("LateTimer").
    pub const LATE_TIMER: Bugs = Bugs { late_timer: true, ..Bugs::NONE };
    /// Quorums counted with plain counters, so a redelivered reply counts twice.
    pub const SCALAR_QUORUM: Bugs = Bugs { scalar_quorum: true, ..Bugs::NONE };
    /// "My own lease counts as open", whatever its ballot ("StaleOwnerOpen").
    pub const STALE_OWNER_OPEN: Bugs = Bugs { stale_owner_open: true, ..Bugs::NONE };
    /// A Release clears any lease of its owner, ignoring the ballot ("OwnerOnlyRelease").
    pub const OWNER_ONLY_RELEASE: Bugs = Bugs { owner_only_release: true, ..Bugs::NONE };
    /// T2/T3 not enforced: explicit `D_A` and `Q` run as given (for the
    /// quarantine one tick below `D_P`).
    pub const UNCHECKED_TIMING: Bugs = Bugs { unchecked_timing: true, ..Bugs::NONE };
    /// An acquisition completed by Accepted replies that arrive at or after
    /// the attempt's deadline `d` (the P4 check `now < d` skipped).
    pub const ACCEPT_LATE: Bugs = Bugs { accept_late: true, ..Bugs::NONE };
    /// The restart counter ignored: ballots and store request ids of every
    /// start are those of the first.
    pub const IGNORE_RESTART: Bugs = Bugs { ignore_restart: true, ..Bugs::NONE };
    /// The owner serves until `d` itself, not `d - m`.
    pub const SERVE_IN_MARGIN: Bugs = Bugs { serve_in_margin: true, ..Bugs::NONE };
    /// A save answered `NotGreater` by a replica ends the leadership (a
    /// liveness bug: a partial save of an earlier leader stops every leader).
    pub const ABDICATE_ON_NOT_GREATER: Bugs = Bugs { abdicate_on_not_greater: true, ..Bugs::NONE };
    /// A yielded node re-armed by `LearnChosen` (and a heard Release).
    pub const YIELD_REARMED: Bugs = Bugs { yield_rearmed: true, ..Bugs::NONE };
    /// `PrimaryExists` replies after the quorum ignored.
    pub const IGNORE_LATE_PRIMARY: Bugs = Bugs { ignore_late_primary: true, ..Bugs::NONE };
}
