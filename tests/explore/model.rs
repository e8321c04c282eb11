//! The model: a cluster of three real nodes, their store replicas, a network
//! and a clock, and every step the environment may take next.
//!
//! # What is modelled
//!
//! * **Nodes.** Three [`Node`]s, each an acceptor and a store replica. Nodes 0
//!   and 1 campaign; node 2 never does (it is released with
//!   `campaign_again = false` at every start, and holding an attempt budget
//!   of zero keeps it so even if a leader hint reschedules it). That is the
//!   "two proposers, three acceptors" shape of PaxosLease Revisited's
//!   counterexamples; here a proposer shares its node with an acceptor,
//!   whose replies it hears at once, as in the real node.
//! * **Time.** Integer ticks of [`TICK`] (1 s; `D_P` = 2 ticks). Real time
//!   advances only by [`Action::Tick`], up to `max_time`. Every node reads its
//!   own monotonic clock. With no drift (the default) each clock advances by
//!   exactly one tick per tick, so clocks agree up to a constant offset, which
//!   changes nothing since the core only ever compares a clock with itself.
//!   With a drift bound `ρ` ([`Bounds::drift_ms`] = `ρ`·tick), each clock
//!   advances by one tick `- drift` or `+ drift` at every tick, independently:
//!   the extremes of the rate bound `r_min·real ≤ local ≤ r_max·real` at tick
//!   granularity, the rate free to change every tick. Wall clocks (for the
//!   oracle) follow each node's monotonic clock, skewed by a fixed offset per
//!   node (node 1's wall clock runs behind the others), so a new leader may
//!   start with a wall clock below the previous leader's window.
//! * **Timers.** Timers fire on ticks: at each tick, before anything else
//!   happens at that instant, every node's due timer fires, except that a
//!   proposer's may wait up to [`Bounds::timer_lag`] more ticks (a slow
//!   process). Proposers therefore start attempts on ticks, at the same
//!   tick or at different ones. A firing that would start an attempt beyond
//!   the node's budget is held back, also a late timer: safety never
//!   depends on timers being prompt, since the lease's deadlines are data
//!   checked in the handlers (T1).
//! * **Network.** A multiset of packets in flight: lease messages between
//!   nodes and store requests to replicas. Any packet may be delivered at
//!   any step (reordering and unbounded delay). A packet may be lost; losses
//!   are tried only where a step would overflow `max_in_flight`, since a
//!   packet never delivered is as good as lost except for the room it takes.
//!   A reply to a proposer (`Promise`, `Accepted`, `Rejected`) may be
//!   delivered while a copy stays in flight (duplication, bounded by
//!   `max_dups`): what the quorum count must not be fooled by. Identical
//!   packets are one entry with a count. Messages a node sends itself, and
//!   operations on its own replica (the local disk), are handled within the
//!   input that caused them, as in the real node and runtime: they are never
//!   in flight. `LearnChosen` (the followers' leader hint) is lost at send
//!   unless `learn` is set: it only steers when a follower campaigns next.
//! * **Stores.** One [`MemStore`] per node. A store request is performed at
//!   its replica when it is delivered, atomically, so a slow request of an
//!   old leader can arrive after a newer leader's load. The replica's answer
//!   then reaches the leader at once ([`Action::Deliver`]) or never
//!   ([`Action::Orphan`]: performed, answer lost, as for a save a leader
//!   never hears back about). Answers are not reordered among themselves:
//!   a late answer to a round that is over is ignored like a lost one, and
//!   the delay that matters, the request's, is modelled.
//! * **Dead replies are discarded.** A reply whose delivery now would change
//!   nothing at its addressee (a `Promise` or `Accepted` for an attempt that
//!   is over, a `Rejected` that neither ends the attempt nor raises the
//!   counter) can never change anything later either: ballots are never
//!   reused, across restarts included, and attempts only move forward. It is
//!   removed from the network as if lost. A `Rejected` is kept while its
//!   addressee may still crash, since a restarted proposer would catch its
//!   counter up from it.
//! * **Crashes.** [`Action::Crash`] stops a node and restarts it at once at
//!   the current time: its volatile state (proposer, acceptors, oracle) is
//!   lost, its replica and restart counter survive (`bump_restart`), and
//!   packets to or from it stay in flight (a request sent before the crash
//!   may arrive after it). A node that stays down for a while is the same,
//!   up to loss, as one that restarts later, which the search also tries.
//! * **Clients and operators.** [`Action::GetTs`] on a serving node (the
//!   history of all timestamps handed out is checked), and
//!   [`Action::Release`] (P6) by a lease holder, which campaigns again
//!   after `D_P`.
//!
//! * **Modes.** Every node is deferring (a cluster before its migration),
//!   or, in a mixed cluster ([`Variant::mixed`]), node 0 runs in primary
//!   mode: at its first timer it registers itself on every replica (its own
//!   at once, the others by store requests in flight), campaigns once a
//!   quorum has it, and loads and saves unchecked; node 1 campaigns as a
//!   deferring node, yields when a checked load or save meets the
//!   registration, and reads it again every other tick. There are no clears
//!   in the model: a registration, once made, stays.
//! * **Margin.** A variant may give the lease a margin `m` (one tick): the
//!   owner serves only while `now + m < d`. Clocks then start at the
//!   longer quarantine (`D_A = Q = D_P + m`), so that acceptors are open at
//!   `t = 0` as in the other variants.
//!
//! # What is checked
//!
//! On every state: at most one node holds the lease (`lease(now)`) and at
//! most one serves (`is_serving(now)`) at the same real time, a server's
//! saved window is held by a quorum of replicas (so the next leader loads
//! it), a server has more than the margin `m` of its lease left, and a node
//! yielded to a primary holds no lease. On every step: each timestamp handed
//! out is above every earlier one (one global history, across the hand-over
//! from a deferring leader to the primary) and below the window its server
//! saved (W2); no replica's window or fence ever goes down; no replica
//! performs a checked (deferring) load or save while a registration stands
//! on it (true of the reference store by construction: the simulator checks
//! a store whose check and write are apart); a deferring node that hears
//! `PrimaryExists` in answer to a request of its own process (late or not)
//! has yielded once it handled it; a node begins a leadership
//! (`Event::Leading`) only while it holds the lease whose ballot fences it;
//! and no node refuses another's value as implausible (B1).
//!
//! A restart counter ignored (`Bugs::IGNORE_RESTART`) is not searched for
//! here: the model discards replies to attempts that are over on the
//! ground that ballots are never reused, which that bug breaks; the
//! simulator's scripted trace catches it.

use core::fmt::{self, Write as _};
use core::time::Duration;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::Arc;

use leasetso_core_variants::node::Event;
use leasetso_core_variants::{
    Ballot, Bugs, Instant, LeaseConfig, LeaseMsg, MemStore, Mode, Node, NodeConfig, NodeId, OracleConfig,
    Output, StoreOk, StoreOp, StoreReject, StoreReply, StoreRequest, Timestamp,
};

/// Nodes in the cluster.
pub const NODES: usize = 3;
/// Nodes `0..PROPOSERS` campaign; the others are acceptors and replicas only.
pub const PROPOSERS: usize = 2;
/// Real time advances in ticks of this length.
pub const TICK: Duration = Duration::from_secs(1);
const TICK_MS: u64 = 1_000;
/// Nodes start at clock 0; the search starts this many ticks later (or
/// more, for a longer quarantine: `Model::origin`), when their acceptors
/// are out of the quarantine every start begins with (A4).
const ORIGIN_TICKS: u64 = 2;
/// The wall clocks' epoch, so that windows print as small offsets.
const WALL_EPOCH_MS: u64 = 1_700_000_000_000;
/// A majority of the nodes.
const QUORUM: usize = NODES / 2 + 1;
/// Fixed wall-clock skews: node 1's wall clock runs 2.5 s behind node 0's.
const WALL_SKEW_MS: [u64; NODES] = [2_500, 0, 3_200];

/// How far the search goes. Every field bounds a resource of the whole run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    /// The last tick (real time runs `0..=max_time` ticks).
    pub max_time: u32,
    /// The longest behaviour searched, in steps (`u32::MAX`: no limit, the
    /// other bounds make the space finite).
    pub max_steps: u32,
    /// The most packets in flight at once. A step that would exceed it is
    /// not taken, but packets may be lost to make room for it.
    pub max_in_flight: u32,
    /// Crash-and-restarts per node.
    pub max_crashes: [u8; NODES],
    /// Attempts (ballots) per proposer; an attempt beyond it is not started.
    pub max_attempts: [u8; PROPOSERS],
    /// Duplicated deliveries, over all packets.
    pub max_dups: u8,
    /// GetTS calls, over all nodes.
    pub max_get_ts: u8,
    /// Releases (P6) by lease holders.
    pub max_releases: u8,
    /// Whether `LearnChosen` is delivered (otherwise lost at send).
    pub learn: bool,
    /// Whether store operations reach the other replicas (otherwise lost at
    /// send: a leader never syncs and never serves, which leaves the lease
    /// protocol alone to explore).
    pub stores: bool,
    /// Clock drift per tick in milliseconds (`ρ`·tick); 0 for exact clocks.
    pub drift_ms: u64,
    /// Ticks a proposer's due timer may wait (a slow process). Due timers
    /// fire as part of a tick, before anything else happens at that instant;
    /// a proposer's timers decide when its attempts start, so the lag lets
    /// two proposers start attempts at the same tick or at different ones.
    pub timer_lag: u8,
}

impl Bounds {
    /// The smallest search: the lease protocol alone (no store traffic, no
    /// hints, no clients), one attempt per proposer, timers on time, nothing
    /// failing. Searches widen it field by field.
    pub const LEASE_ONLY: Bounds = Bounds {
        max_time: 2,
        max_steps: u32::MAX,
        max_in_flight: 5,
        max_crashes: [0; NODES],
        max_attempts: [1; PROPOSERS],
        max_dups: 0,
        max_get_ts: 0,
        max_releases: 0,
        learn: false,
        stores: false,
        drift_ms: 0,
        timer_lag: 0,
    };

    /// One tick more and one more packet in flight (and four steps more if
    /// steps are bounded).
    pub fn larger(self) -> Bounds {
        Bounds {
            max_time: self.max_time + 1,
            max_steps: self.max_steps.saturating_add(4),
            max_in_flight: self.max_in_flight + 1,
            ..self
        }
    }
}

impl fmt::Display for Bounds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.max_steps != u32::MAX {
            write!(f, "<= {} steps, ", self.max_steps)?;
        }
        write!(
            f,
            "t = 0..={}, <= {} packets in flight, crashes per node {:?}, attempts per proposer {:?}, \
             duplicates {}, GetTS {}, releases {}, hints {}, store traffic {}, timers up to {} ticks late, drift {} \
             ms/tick",
            self.max_time,
            self.max_in_flight,
            self.max_crashes,
            self.max_attempts,
            self.max_dups,
            self.max_get_ts,
            self.max_releases,
            if self.learn { "on" } else { "off" },
            if self.stores { "on" } else { "off" },
            self.timer_lag,
            self.drift_ms,
        )
    }
}

/// A protocol variant: the correct one, or one of the known-broken ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Variant {
    /// For the report.
    pub name: &'static str,
    /// The broken rule, if any.
    pub bugs: Bugs,
    /// The lease's timing.
    pub lease: LeaseConfig,
    /// A mixed cluster: node 0 runs in primary mode (it registers, then
    /// campaigns, and writes unchecked), nodes 1 and 2 deferring. Otherwise
    /// every node is deferring, as a cluster before its migration.
    pub mixed: bool,
}

impl Variant {
    /// `D_P` = 2 ticks, no drift, no margin: `D_A = Q = D_P`, the tightest
    /// timing T2 and T3 allow.
    const TIGHT: LeaseConfig = LeaseConfig {
        duration: Duration::from_secs(2),
        drift_ppm: 0,
        margin: Duration::ZERO,
        acceptor_duration: None,
        quarantine: None,
    };

    /// The corrected protocol at the tightest timing.
    pub const CORRECT: Variant =
        Variant { name: "correct", bugs: Bugs::NONE, lease: Self::TIGHT, mixed: false };
    /// The attempt deadline starts at the promise quorum.
    pub const LATE_TIMER: Variant =
        Variant { name: "LateTimer", bugs: Bugs::LATE_TIMER, lease: Self::TIGHT, mixed: false };
    /// Quorums counted by a plain counter.
    pub const SCALAR_QUORUM: Variant =
        Variant { name: "ScalarQuorum", bugs: Bugs::SCALAR_QUORUM, lease: Self::TIGHT, mixed: false };
    /// "My own lease counts as open", whatever its ballot.
    pub const STALE_OWNER_OPEN: Variant =
        Variant { name: "StaleOwnerOpen", bugs: Bugs::STALE_OWNER_OPEN, lease: Self::TIGHT, mixed: false };
    /// Release matched on the owner only.
    pub const OWNER_ONLY_RELEASE: Variant = Variant {
        name: "OwnerOnlyRelease",
        bugs: Bugs::OWNER_ONLY_RELEASE,
        lease: Self::TIGHT,
        mixed: false,
    };
    /// The corrected protocol with a drift bound of 1 %: `D_A = Q =
    /// ⌈D_P·r_max/r_min⌉` = 2041 ms.
    pub const CORRECT_WITH_DRIFT: Variant = Variant {
        name: "correct, 1 % drift",
        bugs: Bugs::NONE,
        lease: LeaseConfig { drift_ppm: 10_000, ..Self::TIGHT },
        mixed: false,
    };
    /// The corrected protocol configured for exact clocks (`D_A = Q = D_P`),
    /// run on clocks that drift: outside its assumptions.
    pub const DRIFT_BEYOND_BOUND: Variant =
        Variant { name: "DriftBeyondBound", bugs: Bugs::NONE, lease: Self::TIGHT, mixed: false };
    /// `Q = D_P - 1 tick` with no drift and no margin, T3 not enforced.
    pub const SHORT_QUARANTINE: Variant = Variant {
        name: "ShortQuarantine",
        bugs: Bugs::UNCHECKED_TIMING,
        lease: LeaseConfig {
            acceptor_duration: Some(Duration::from_secs(2)),
            quarantine: Some(Duration::from_secs(1)),
            ..Self::TIGHT
        },
        mixed: false,
    };
    /// A margin `m` of one tick: the owner serves only while `now + m < d`;
    /// `D_A = Q = D_P + m` = 3 ticks.
    const WITH_MARGIN: LeaseConfig = LeaseConfig { margin: Duration::from_secs(1), ..Self::TIGHT };
    /// The corrected protocol with a margin of one tick.
    pub const CORRECT_WITH_MARGIN: Variant =
        Variant { name: "correct, margin", bugs: Bugs::NONE, lease: Self::WITH_MARGIN, mixed: false };
    /// The owner serves until `d`, not `d - m`.
    pub const SERVE_IN_MARGIN: Variant = Variant {
        name: "ServeInMargin",
        bugs: Bugs::SERVE_IN_MARGIN,
        lease: Self::WITH_MARGIN,
        mixed: false,
    };
    /// An acquisition completed by Accepteds that arrive at or after `d`.
    pub const ACCEPT_LATE: Variant =
        Variant { name: "AcceptLate", bugs: Bugs::ACCEPT_LATE, lease: Self::TIGHT, mixed: false };
    /// The corrected protocol in a mixed cluster (one primary, two deferring).
    pub const CORRECT_MIXED: Variant =
        Variant { name: "correct, mixed", bugs: Bugs::NONE, lease: Self::TIGHT, mixed: true };
    /// A yielded node re-armed by `LearnChosen` (and a heard Release), mixed cluster.
    pub const YIELD_REARMED: Variant =
        Variant { name: "YieldRearmed", bugs: Bugs::YIELD_REARMED, lease: Self::TIGHT, mixed: true };
    /// `PrimaryExists` after the quorum ignored, mixed cluster.
    pub const IGNORE_LATE_PRIMARY: Variant = Variant {
        name: "IgnoreLatePrimary",
        bugs: Bugs::IGNORE_LATE_PRIMARY,
        lease: Self::TIGHT,
        mixed: true,
    };
}

/// A packet in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Packet {
    /// A lease message between two nodes.
    Peer { from: NodeId, to: NodeId, msg: LeaseMsg },
    /// A store operation on `replica`, for node `from`.
    StoreReq { from: NodeId, replica: NodeId, request: StoreRequest, inc: u8 },
}

impl Packet {
    /// The order of the network multiset: by a hash of the packet, so equal
    /// multisets are equal vectors (the core's types have no `Ord`).
    fn key(&self) -> u64 {
        let mut h = Fingerprinter::new();
        self.hash(&mut h);
        h.finish()
    }

    /// The node a reply to a proposer is for, and whether it is a
    /// `Rejected`.
    fn reply_to(&self) -> Option<(usize, bool)> {
        match *self {
            Packet::Peer { to, msg, .. } => match msg {
                LeaseMsg::Promise { .. } | LeaseMsg::Accepted { .. } => Some((usize::from(to.0), false)),
                LeaseMsg::Rejected { .. } => Some((usize::from(to.0), true)),
                _ => None,
            },
            Packet::StoreReq { .. } => None,
        }
    }

    /// Whether the network may duplicate this packet.
    fn may_duplicate(&self) -> bool {
        matches!(
            self,
            Packet::Peer {
                msg: LeaseMsg::Promise { .. } | LeaseMsg::Accepted { .. } | LeaseMsg::Rejected { .. },
                ..
            }
        )
    }
}

/// One step of the environment. Packet arguments index the state's network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Real time advances one tick (the first one starts time without
    /// advancing it) and due timers fire. The argument's low bits are the
    /// proposers whose due timers wait instead, the rest picks each clock's
    /// rate (a bit per node: slow or fast) when clocks drift.
    Tick(u8),
    /// A packet is delivered.
    Deliver(u8),
    /// A packet is delivered and a copy stays in flight.
    Duplicate(u8),
    /// A packet is lost (tried only where the network is full).
    Drop(u8),
    /// A store request is performed at its replica, but the answer is lost.
    Orphan(u8),
    /// A node crashes and restarts.
    Crash(u8),
    /// A client asks a serving node for one timestamp.
    GetTs(u8),
    /// A lease holder releases its lease (P6).
    Release(u8),
}

/// The whole system: what the search deduplicates on.
///
/// Nodes are shared between a state and its successors until a step changes
/// them, and each node's fingerprint is kept, so that a step copies and
/// hashes only the node it touched.
#[derive(Clone, Debug)]
pub struct State {
    /// Whether time has started (the first tick starts it at `t = 0`).
    started: bool,
    tick: u32,
    clocks: [Instant; NODES],
    nodes: [Arc<Node>; NODES],
    /// The fingerprint of each node, valid unless its bit is in `dirty`.
    node_fps: [u128; NODES],
    /// Nodes changed since their fingerprints were taken (a bit per node).
    dirty: u8,
    stores: Arc<[MemStore; NODES]>,
    /// The network: distinct packets sorted by [`Packet::key`], with counts.
    net: Arc<Network>,
    crashes: [u8; NODES],
    attempts: [u8; PROPOSERS],
    dups: u8,
    get_ts: u8,
    releases: u8,
    /// The largest timestamp handed out so far.
    last_ts: Option<Timestamp>,
    /// The nodes that handed out timestamps (a bit per node), for coverage.
    served_by: u8,
}

impl Hash for State {
    fn hash<H: Hasher>(&self, h: &mut H) {
        debug_assert_eq!(self.dirty, 0, "fingerprints are taken after sealing");
        self.started.hash(h);
        self.tick.hash(h);
        self.clocks.hash(h);
        self.node_fps.hash(h);
        self.stores.hash(h);
        self.net.hash(h);
        self.crashes.hash(h);
        self.attempts.hash(h);
        self.dups.hash(h);
        self.get_ts.hash(h);
        self.releases.hash(h);
        self.last_ts.hash(h);
        self.served_by.hash(h);
    }
}

/// A fast 128-bit hasher for fingerprints: two lanes, each a different
/// invertible multiply-rotate step per word, mixed at the end. States are
/// hashed far too often for SipHash; these are not adversarial inputs.
struct Fingerprinter {
    a: u64,
    b: u64,
}

impl Fingerprinter {
    const K1: u64 = 0x9e37_79b9_7f4a_7c15;
    const K2: u64 = 0xd6e8_feb8_6659_fd93;

    fn new() -> Self {
        Fingerprinter { a: 0x243f_6a88_85a3_08d3, b: 0x1319_8a2e_0370_7344 }
    }

    fn word(&mut self, w: u64) {
        self.a = (self.a ^ w).wrapping_mul(Self::K1).rotate_left(29);
        self.b = (self.b.rotate_left(23) ^ w.rotate_left(32)).wrapping_mul(Self::K2).wrapping_add(Self::K1);
    }

    fn finish128(&self) -> u128 {
        fn fmix(mut h: u64) -> u64 {
            h ^= h >> 33;
            h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
            h ^= h >> 33;
            h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
            h ^ (h >> 33)
        }
        let a = fmix(self.a ^ self.b.rotate_left(17));
        let b = fmix(self.b.wrapping_add(self.a));
        (u128::from(a) << 64) | u128::from(b)
    }
}

impl Hasher for Fingerprinter {
    fn finish(&self) -> u64 {
        self.finish128() as u64
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.word(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.word(u64::from_le_bytes(w) ^ ((rest.len() as u64) << 60));
        }
    }

    fn write_u8(&mut self, v: u8) {
        self.word(u64::from(v));
    }

    fn write_u16(&mut self, v: u16) {
        self.word(u64::from(v));
    }

    fn write_u32(&mut self, v: u32) {
        self.word(u64::from(v));
    }

    fn write_u64(&mut self, v: u64) {
        self.word(v);
    }

    fn write_u128(&mut self, v: u128) {
        self.word(v as u64);
        self.word((v >> 64) as u64);
    }

    fn write_usize(&mut self, v: usize) {
        self.word(v as u64);
    }
}

/// The 128-bit fingerprint of a value.
fn fingerprint_of(v: &impl Hash) -> u128 {
    let mut h = Fingerprinter::new();
    v.hash(&mut h);
    h.finish128()
}

/// A map keyed by fingerprints.
type ByFingerprint<V> = HashMap<u128, V, BuildHasherDefault<LowBits>>;

/// Distinct packets in flight, with their counts.
type Network = Vec<(Packet, u8)>;

/// One copy of every distinct node state, network and set of replicas the
/// search keeps: states share them, which is most of what a state weighs.
#[derive(Default)]
pub struct Interner {
    nodes: ByFingerprint<Arc<Node>>,
    nets: ByFingerprint<Arc<Network>>,
    stores: ByFingerprint<Arc<[MemStore; NODES]>>,
}

impl Interner {
    /// How much is kept.
    pub fn describe(&self) -> String {
        format!(
            "{} nodes, {} networks, {} replica sets",
            self.nodes.len(),
            self.nets.len(),
            self.stores.len()
        )
    }
}

/// For keys that are fingerprints already: their low bits are the hash.
#[derive(Default)]
pub struct LowBits(u64);

impl Hasher for LowBits {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u128(&mut self, v: u128) {
        self.0 = v as u64;
    }
}

impl State {
    /// Node `i`, to change: marks its fingerprint stale.
    fn node_mut(&mut self, i: usize) -> &mut Node {
        self.dirty |= 1 << i;
        Arc::make_mut(&mut self.nodes[i])
    }

    /// Before the state is kept: shares the nodes this step changed with
    /// equal ones kept before, or keeps a copy (which sheds the spare
    /// capacity the node's output queues grew while it handled the step).
    pub fn compact(&mut self, interner: &mut Interner) {
        for (node, fp) in self.nodes.iter_mut().zip(self.node_fps) {
            if Arc::get_mut(node).is_some() {
                let kept = interner.nodes.entry(fp).or_insert_with(|| Arc::new(Node::clone(node)));
                *node = Arc::clone(kept);
            }
        }
        if let Some(net) = Arc::get_mut(&mut self.net) {
            net.shrink_to_fit();
            let kept = interner.nets.entry(fingerprint_of(net)).or_insert_with(|| Arc::clone(&self.net));
            self.net = Arc::clone(kept);
        }
        if Arc::get_mut(&mut self.stores).is_some() {
            let kept = interner
                .stores
                .entry(fingerprint_of(&*self.stores))
                .or_insert_with(|| Arc::clone(&self.stores));
            self.stores = Arc::clone(kept);
        }
    }

    /// Retakes the fingerprints of the nodes changed.
    fn seal(&mut self) {
        for i in 0..NODES {
            if self.dirty & (1 << i) != 0 {
                self.node_fps[i] = fingerprint_of(&*self.nodes[i]);
            }
        }
        self.dirty = 0;
    }

    /// The packets in flight, counting copies.
    fn in_flight(&self) -> u32 {
        self.net.iter().map(|&(_, n)| u32::from(n)).sum()
    }

    fn push(&mut self, p: Packet) {
        let key = p.key();
        let net = Arc::make_mut(&mut self.net);
        match net.binary_search_by(|(q, _)| q.key().cmp(&key)) {
            Ok(i) if net[i].0 == p => net[i].1 = net[i].1.saturating_add(1),
            Ok(i) | Err(i) => net.insert(i, (p, 1)),
        }
    }

    /// Takes one copy of entry `i` out of the network.
    fn take(&mut self, i: usize) -> Packet {
        let net = Arc::make_mut(&mut self.net);
        let p = net[i].0;
        net[i].1 -= 1;
        if net[i].1 == 0 {
            net.remove(i);
        }
        p
    }

    /// The real tick.
    pub fn tick(&self) -> u32 {
        self.tick
    }

    /// The 128-bit fingerprint the search deduplicates states by.
    pub fn fingerprint(&self) -> u128 {
        fingerprint_of(self)
    }
}

/// What a state shows the search reached: a search whose states never show
/// a lease holder, a server or a leader change checked nothing of interest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Coverage {
    /// Some node holds the lease.
    pub holder: bool,
    /// Some node serves timestamps.
    pub serving: bool,
    /// Timestamps were handed out by two different nodes so far.
    pub handover: bool,
}

/// What a step did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// The step is outside the bounds: not taken.
    Pruned,
    /// The step would put more packets in flight than the bound: not taken
    /// (unless a packet is lost first).
    Overflow,
    /// The step was taken.
    Taken,
    /// The step broke a property (the message says which and how).
    Violation(String),
}

/// Notes on what a step did when a trace is printed, and what it sent.
pub struct Log {
    notes: Option<Vec<String>>,
    /// Replies the step sent.
    sent: Vec<Packet>,
}

impl Log {
    /// No notes: the search's hot path.
    pub fn off() -> Self {
        Log { notes: None, sent: Vec::new() }
    }

    /// Keeps notes.
    pub fn on() -> Self {
        Log { notes: Some(Vec::new()), sent: Vec::new() }
    }

    fn note(&mut self, f: impl FnOnce() -> String) {
        if let Some(v) = &mut self.notes {
            v.push(f());
        }
    }

    /// Where the notes and the packets sent stand, to roll back to.
    fn mark(&self) -> (usize, usize) {
        (self.notes.as_ref().map_or(0, Vec::len), self.sent.len())
    }

    /// Forgets what was noted and sent since `mark`: a step undone.
    fn rollback(&mut self, (notes, sent): (usize, usize)) {
        if let Some(v) = &mut self.notes {
            v.truncate(notes);
        }
        self.sent.truncate(sent);
    }

    /// The notes kept.
    pub fn take(&mut self) -> Vec<String> {
        self.notes.as_mut().map(core::mem::take).unwrap_or_default()
    }
}

/// A variant at some bounds: the initial state and the step relation.
pub struct Model {
    /// The variant checked.
    pub variant: Variant,
    /// The bounds of the search.
    pub bounds: Bounds,
    cfgs: [NodeConfig; NODES],
    /// Every clock's reading at `t = 0`: [`ORIGIN_TICKS`], or the quarantine
    /// in whole ticks (rounded down) if longer. A quarantine a fraction of a
    /// tick longer (2041 ms, for 1 % drift) still silences the acceptors at
    /// `t = 0`, as it always did.
    origin: Instant,
}

impl Model {
    /// The model of `variant` within `bounds`.
    pub fn new(variant: Variant, bounds: Bounds) -> Self {
        let cfgs = core::array::from_fn(|i| {
            let mut cfg = NodeConfig::new(NodeId(i as u16), NODES as u16);
            cfg.lease = variant.lease;
            cfg.bugs = variant.bugs;
            // Updates every tick and a window two ticks ahead, so that
            // windows are extended within the bounded time.
            cfg.oracle = OracleConfig {
                update_interval: TICK,
                save_interval_ms: 2 * TICK_MS,
                ..OracleConfig::default()
            };
            cfg.store_timeout = 2 * TICK;
            // A yielded node reads the registration every other tick.
            cfg.primary_poll = 2 * TICK;
            if variant.mixed && i == 0 {
                cfg.mode = Mode::Primary;
            }
            cfg
        });
        let q = cfgs[0].validate().expect("the model's configuration is valid").quarantine;
        let ticks = (q.as_millis() as u64 / TICK_MS).max(ORIGIN_TICKS);
        Model { variant, bounds, cfgs, origin: Instant::from_millis(ticks * TICK_MS) }
    }

    /// Node `i` started at `now` on its replica.
    fn start(&self, i: usize, store: &mut MemStore, now: Instant) -> Node {
        let restart = store.bump_restart();
        let mut node = Node::new(self.cfgs[i], restart, now).expect("the model's configuration is valid");
        if i >= PROPOSERS {
            node.release(now, false);
            while node.poll_output().is_some() {}
        }
        node
    }

    /// Every node started at time 0 on empty replicas.
    pub fn initial(&self) -> State {
        let mut stores = [MemStore::new(); NODES];
        // The nodes have been up long enough to be out of quarantine.
        let nodes = core::array::from_fn(|i| Arc::new(self.start(i, &mut stores[i], Instant::ZERO)));
        let stores = Arc::new(stores);
        let mut s = State {
            started: false,
            tick: 0,
            clocks: [self.origin; NODES],
            nodes,
            node_fps: [0; NODES],
            dirty: (1 << NODES) - 1,
            stores,
            net: Arc::new(Vec::new()),
            crashes: [0; NODES],
            attempts: [0; PROPOSERS],
            dups: 0,
            get_ts: 0,
            releases: 0,
            last_ts: None,
            served_by: 0,
        };
        s.seal();
        s
    }

    /// Fires every due timer that may fire, except those of the proposers
    /// in `hold`. A hold that is not due, or overdue, is not a choice.
    fn fire_due(&self, s: &mut State, hold: u8, log: &mut Log) -> Step {
        for i in 0..NODES {
            let held = i < PROPOSERS && hold & (1 << i) != 0;
            if !self.timer_due(s, i) {
                if held {
                    return Step::Pruned;
                }
                continue;
            }
            if held {
                if self.timer_overdue(s, i) {
                    return Step::Pruned;
                }
                log.note(|| format!("n{i} timer is late"));
                continue;
            }
            let before = (s.nodes[i].clone(), s.stores.clone(), s.net.clone());
            let mark = log.mark();
            match self.fire(s, i, log) {
                Step::Taken => {}
                // Beyond the attempt budget: the timer is held back.
                Step::Pruned => {
                    (s.nodes[i], s.stores, s.net) = before;
                    log.rollback(mark);
                    log.note(|| format!("n{i} timer is held back: no attempts left"));
                }
                other => return other,
            }
        }
        Step::Taken
    }

    /// Whether a timer of node `i` is overdue: it must fire before time
    /// moves on.
    fn timer_overdue(&self, s: &State, i: usize) -> bool {
        // Time starts at the origin: a timer due before it is due then.
        let late = TICK * u32::from(self.bounds.timer_lag);
        s.nodes[i].poll_timeout().is_some_and(|t| t.max(self.origin) + late <= s.clocks[i])
            && self.may_fire(s, i)
    }

    fn timer_due(&self, s: &State, i: usize) -> bool {
        s.nodes[i].poll_timeout().is_some_and(|t| t <= s.clocks[i])
    }

    /// Every step the environment may take from `s` (some may turn out to
    /// be outside the bounds when taken).
    pub fn actions(&self, s: &State, out: &mut Vec<Action>) {
        out.clear();
        let b = &self.bounds;
        for i in 0..NODES {
            if !s.started {
                break;
            }
            let now = s.clocks[i];
            if s.get_ts < b.max_get_ts && s.nodes[i].is_serving(now) {
                out.push(Action::GetTs(i as u8));
            }
            if s.releases < b.max_releases && s.nodes[i].lease(now).is_some() {
                out.push(Action::Release(i as u8));
            }
            if s.crashes[i] < b.max_crashes[i] {
                out.push(Action::Crash(i as u8));
            }
        }
        for k in 0..s.net.len() {
            out.push(Action::Deliver(k as u8));
            if let Packet::StoreReq { .. } = s.net[k].0 {
                out.push(Action::Orphan(k as u8));
            }
            if s.dups < b.max_dups && s.net[k].0.may_duplicate() {
                out.push(Action::Duplicate(k as u8));
            }
        }
        if !s.started || s.tick < b.max_time {
            let rates = if b.drift_ms == 0 || !s.started { 1 } else { 1 << NODES };
            let holds = if b.timer_lag > 0 { 1 << PROPOSERS } else { 1 };
            out.extend((0..rates).flat_map(|r| (0..holds).map(move |h| Action::Tick(r << PROPOSERS | h))));
        }
    }

    /// The losses possible in `s`, which the search tries only when some
    /// other step overflowed the network. A packet never delivered is as good
    /// as lost, except for the room it takes, so losing it later, when the
    /// room is needed, reaches everything that losing it earlier would.
    pub fn losses(&self, s: &State, out: &mut Vec<Action>) {
        out.clear();
        out.extend((0..s.net.len() as u8).map(Action::Drop));
    }

    fn wall_ms(&self, s: &State, i: usize) -> u64 {
        WALL_EPOCH_MS + WALL_SKEW_MS[i] + s.clocks[i].as_nanos() / 1_000_000
    }

    /// Takes step `a` in `s`, checking the step's properties; then checks
    /// the state's. `log` collects a description when a trace is printed.
    pub fn step(&self, s: &mut State, a: Action, log: &mut Log) -> Step {
        log.sent.clear();
        let step = self.apply(s, a, log);
        if step != Step::Taken {
            return step;
        }
        self.discard_dead(s, log);
        s.seal();
        if s.in_flight() > self.bounds.max_in_flight {
            return Step::Overflow;
        }
        match self.check(s) {
            Some(v) => Step::Violation(v),
            None => Step::Taken,
        }
    }

    fn apply(&self, s: &mut State, a: Action, log: &mut Log) -> Step {
        match a {
            Action::Tick(code) => {
                let (hold, mut r) = (code & ((1 << PROPOSERS) - 1), code >> PROPOSERS);
                if !s.started {
                    s.started = true;
                    log.note(|| "time starts: t=0".to_string());
                    return self.fire_due(s, hold, log);
                }
                s.tick += 1;
                for i in 0..NODES {
                    let ms = match r & 1 {
                        _ if self.bounds.drift_ms == 0 => TICK_MS,
                        0 => TICK_MS - self.bounds.drift_ms,
                        _ => TICK_MS + self.bounds.drift_ms,
                    };
                    r >>= 1;
                    s.clocks[i] += Duration::from_millis(ms);
                    // The node ignores a message from itself but records the
                    // time it carried: states that differ only in when a node
                    // last saw an input (which only its status reports) fold.
                    let noop = LeaseMsg::Prepare { ballot: Ballot::ZERO };
                    let now = s.clocks[i];
                    s.node_mut(i).handle_message(NodeId(i as u16), noop, now);
                }
                log.note(|| {
                    let mut line = format!("tick: t={}", s.tick);
                    if self.bounds.drift_ms > 0 {
                        let clocks: Vec<String> = s.clocks.iter().map(|&c| self.show_instant(c)).collect();
                        let _ = write!(line, " (clocks {})", clocks.join(", "));
                    }
                    line
                });
                self.fire_due(s, hold, log)
            }
            Action::Deliver(k) | Action::Duplicate(k) => {
                let k = usize::from(k);
                let p = if let Action::Duplicate(_) = a {
                    if s.dups >= self.bounds.max_dups {
                        return Step::Pruned;
                    }
                    s.dups += 1;
                    log.note(|| {
                        format!("deliver a copy of {} (the original stays in flight)", describe(&s.net[k].0))
                    });
                    s.net[k].0
                } else {
                    log.note(|| format!("deliver {}", describe(&s.net[k].0)));
                    s.take(k)
                };
                self.deliver(s, p, log)
            }
            Action::Orphan(k) => self.orphan(s, usize::from(k), log),
            Action::Drop(k) => {
                let p = s.take(usize::from(k));
                log.note(|| format!("lose {}", describe(&p)));
                Step::Taken
            }
            Action::Crash(i) => {
                let i = usize::from(i);
                if s.crashes[i] >= self.bounds.max_crashes[i] {
                    return Step::Pruned;
                }
                s.crashes[i] += 1;
                let node = self.start(i, &mut Arc::make_mut(&mut s.stores)[i], s.clocks[i]);
                *s.node_mut(i) = node;
                log.note(|| {
                    let q = s.nodes[i].acceptor().is_quarantined(s.clocks[i]);
                    format!(
                        "n{i} crashes and restarts: its proposer, acceptor and oracle forget everything{}",
                        if q { "; the acceptor is quarantined" } else { "" }
                    )
                });
                Step::Taken
            }
            Action::GetTs(i) => {
                let i = usize::from(i);
                s.get_ts += 1;
                let now = s.clocks[i];
                match s.node_mut(i).get_ts(1, now) {
                    Ok(ts) => {
                        log.note(|| format!("client: GetTS(1) at n{i} returns {}", show_ts(ts)));
                        if let Some(last) = s.last_ts.filter(|&last| ts <= last) {
                            return Step::Violation(format!(
                                "timestamps go backwards: n{i} handed out {} after {}",
                                show_ts(ts),
                                show_ts(last)
                            ));
                        }
                        s.last_ts = Some(ts);
                        s.served_by |= 1 << i;
                        // W2: never at or beyond the window it saved.
                        let window = s.nodes[i].status().window_end_ms;
                        if ts.physical_ms >= window {
                            return Step::Violation(format!(
                                "n{i} handed out {} at or beyond its saved window {}",
                                show_ts(ts),
                                show_window(window)
                            ));
                        }
                        Step::Taken
                    }
                    Err(e) => {
                        log.note(|| format!("client: GetTS(1) at n{i} fails: {e}"));
                        Step::Taken
                    }
                }
            }
            Action::Release(i) => {
                let i = usize::from(i);
                if s.releases >= self.bounds.max_releases {
                    return Step::Pruned;
                }
                s.releases += 1;
                log.note(|| format!("operator: n{i} releases its lease (and campaigns again after D_P)"));
                let now = s.clocks[i];
                s.node_mut(i).release(now, true);
                self.drain(s, i, log)
            }
        }
    }

    /// Whether node `i`'s due timer may fire: not if it would start an
    /// attempt beyond the node's budget.
    fn may_fire(&self, s: &State, i: usize) -> bool {
        let mut t = s.clone();
        self.fire(&mut t, i, &mut Log::off()) != Step::Pruned
    }

    /// Node `i`'s timer fires.
    fn fire(&self, s: &mut State, i: usize, log: &mut Log) -> Step {
        log.note(|| format!("n{i} timer fires"));
        let (now, wall) = (s.clocks[i], self.wall_ms(s, i));
        s.node_mut(i).handle_timeout(now, wall);
        self.drain(s, i, log)
    }

    fn deliver(&self, s: &mut State, p: Packet, log: &mut Log) -> Step {
        match p {
            Packet::Peer { from, to, msg } => {
                let i = usize::from(to.0);
                let now = s.clocks[i];
                s.node_mut(i).handle_message(from, msg, now);
                self.drain(s, i, log)
            }
            Packet::StoreReq { from, replica, request, inc } => {
                let r = usize::from(replica.0);
                let reply = match execute(&mut Arc::make_mut(&mut s.stores)[r], request.op) {
                    Ok(reply) => reply,
                    Err(v) => return Step::Violation(v),
                };
                log.note(|| format!("  replica n{r} performs it and answers {}", show_reply(&reply)));
                let i = usize::from(from.0);
                let (now, wall) = (s.clocks[i], self.wall_ms(s, i));
                s.node_mut(i).handle_store_reply(replica, request.id, reply, now, wall);
                if let Some(v) = yielded_check(s, i, replica, reply, inc == s.crashes[i]) {
                    return Step::Violation(v);
                }
                self.drain(s, i, log)
            }
        }
    }

    /// Store request `k` is performed at its replica, but the answer is lost.
    fn orphan(&self, s: &mut State, k: usize, log: &mut Log) -> Step {
        let Packet::StoreReq { replica, request, .. } = s.net[k].0 else { return Step::Pruned };
        log.note(|| format!("deliver {}", describe(&s.net[k].0)));
        s.take(k);
        let r = usize::from(replica.0);
        match execute(&mut Arc::make_mut(&mut s.stores)[r], request.op) {
            Ok(reply) => {
                log.note(|| format!("  replica n{r} performs it; its answer {} is lost", show_reply(&reply)));
                Step::Taken
            }
            Err(v) => Step::Violation(v),
        }
    }

    /// Takes node `i`'s outputs: packets into the network, its own replica's
    /// operations at once (and their replies back into it), events into the log.
    fn drain(&self, s: &mut State, i: usize, log: &mut Log) -> Step {
        let me = NodeId(i as u16);
        loop {
            let mut local: Option<(u64, StoreReply)> = None;
            let mut prepared = false;
            while let Some(out) = s.node_mut(i).poll_output() {
                match out {
                    Output::Send { to, msg } => {
                        if let LeaseMsg::Prepare { .. } = msg {
                            prepared = true;
                        }
                        let p = Packet::Peer { from: me, to, msg };
                        if matches!(msg, LeaseMsg::LearnChosen { .. }) && !self.bounds.learn {
                            log.note(|| format!("  sends {} (lost: hints are not modelled)", describe(&p)));
                            continue;
                        }
                        log.note(|| format!("  sends {}", describe(&p)));
                        s.push(p);
                        log.sent.push(p);
                    }
                    Output::Store { replica, request } if replica == me => {
                        let reply = match execute(&mut Arc::make_mut(&mut s.stores)[i], request.op) {
                            Ok(reply) => reply,
                            Err(v) => return Step::Violation(v),
                        };
                        log.note(|| {
                            format!("  own replica n{i}: {} -> {}", show_op(&request.op), show_reply(&reply))
                        });
                        // A round has one operation per replica.
                        debug_assert!(local.is_none());
                        local = Some((request.id, reply));
                    }
                    Output::Store { replica, request } => {
                        let p = Packet::StoreReq { from: me, replica, request, inc: s.crashes[i] };
                        if !self.bounds.stores {
                            log.note(|| format!("  sends {} (lost: stores are not modelled)", describe(&p)));
                            continue;
                        }
                        log.note(|| format!("  sends {}", describe(&p)));
                        s.push(p);
                    }
                    Output::Event(e) => {
                        log.note(|| format!("  n{i} event: {}", show_event(&e)));
                        // Every node is correct here: none refuses another's
                        // value as implausible (B1).
                        if let Event::Refused { from, what } = e {
                            return Step::Violation(format!(
                                "n{i} refused a value of correct n{}: {what}",
                                from.0
                            ));
                        }
                        // A leadership begins only under the lease it won.
                        if let Event::Leading { fence } = e {
                            let held = s.nodes[i].lease(s.clocks[i]).map(|(b, _)| b);
                            if held != Some(fence) {
                                return Step::Violation(format!(
                                    "n{i} begins a leadership fenced by {fence:?} but holds {held:?}"
                                ));
                            }
                        }
                    }
                }
            }
            if prepared {
                match s.attempts.get_mut(i) {
                    Some(n) if *n < self.bounds.max_attempts[i] => *n += 1,
                    _ => return Step::Pruned,
                }
            }
            match local {
                Some((id, reply)) => {
                    let (now, wall) = (s.clocks[i], self.wall_ms(s, i));
                    s.node_mut(i).handle_store_reply(me, id, reply, now, wall);
                    if let Some(v) = yielded_check(s, i, me, reply, true) {
                        return Step::Violation(v);
                    }
                }
                None => return Step::Taken,
            }
        }
    }

    /// Removes replies that can no longer change anything (see the module
    /// docs): those the step just sent, and those to nodes it changed.
    fn discard_dead(&self, s: &mut State, log: &mut Log) {
        let mut k = 0;
        while k < s.net.len() {
            let p = s.net[k].0;
            let dead = p.reply_to().is_some_and(|(i, rejected)| {
                (!rejected || s.crashes[i] == self.bounds.max_crashes[i])
                    && (s.dirty & (1 << i) != 0 || log.sent.contains(&p))
                    && self.is_noop(s, i, &p)
            });
            if dead {
                log.note(|| format!("  (discards {}: it can no longer change anything)", describe(&p)));
                Arc::make_mut(&mut s.net).remove(k);
            } else {
                k += 1;
            }
        }
    }

    /// Whether delivering reply `p` to node `i` now changes nothing.
    fn is_noop(&self, s: &State, i: usize, p: &Packet) -> bool {
        let mut node = Node::clone(&s.nodes[i]);
        let now = s.clocks[i];
        match *p {
            Packet::Peer { from, msg, .. } => node.handle_message(from, msg, now),
            Packet::StoreReq { .. } => return false,
        }
        node == *s.nodes[i]
    }

    /// The state's properties: one lease holder and one server at a time.
    fn check(&self, s: &State) -> Option<String> {
        let holders: Vec<(usize, Ballot, Instant)> =
            (0..NODES).filter_map(|i| s.nodes[i].lease(s.clocks[i]).map(|(b, d)| (i, b, d))).collect();
        if holders.len() > 1 {
            let who: Vec<String> = holders
                .iter()
                .map(|&(i, b, d)| format!("n{i} holds {b:?} until {}", self.show_deadline(s, i, d)))
                .collect();
            return Some(format!("two lease holders at t={}: {}", s.tick, who.join(", ")));
        }
        let serving: Vec<usize> = (0..NODES).filter(|&i| s.nodes[i].is_serving(s.clocks[i])).collect();
        if serving.len() > 1 {
            return Some(format!("two nodes serve at t={}: {serving:?}", s.tick));
        }
        for i in 0..NODES {
            let (node, now) = (&s.nodes[i], s.clocks[i]);
            let lease = node.lease(now);
            // A yielded node never holds the lease.
            if let (Some(p), Some((b, _))) = (node.yielded_to(), lease) {
                return Some(format!(
                    "n{i} yielded to primary {p:?} and holds the lease {b:?} at t={}",
                    s.tick
                ));
            }
            // A server has more than the margin m of its lease left.
            let m = node.timing().margin;
            if node.is_serving(now) && lease.is_none_or(|(_, d)| now + m >= d) {
                let until = lease.map_or("none".to_string(), |(b, d)| {
                    format!("{b:?} until {}", self.show_deadline(s, i, d))
                });
                return Some(format!(
                    "n{i} serves at t={} within the margin {m:?} of its lease ({until})",
                    s.tick
                ));
            }
        }
        // A server's window is saved on a quorum: the next leader loads it.
        for &i in &serving {
            let window = s.nodes[i].status().window_end_ms;
            let holding = s.stores.iter().filter(|st| st.window_end_ms() >= window).count();
            if holding < QUORUM {
                return Some(format!(
                    "n{i} serves up to window {} but only {holding} replicas hold it",
                    show_window(window)
                ));
            }
        }
        None
    }

    /// What `s` shows the search reached, for coverage: see [`Coverage`].
    pub fn coverage(&self, s: &State) -> Coverage {
        let mut c = Coverage::default();
        for i in 0..NODES {
            let now = s.clocks[i];
            c.holder |= s.nodes[i].lease(now).is_some();
            c.serving |= s.nodes[i].is_serving(now);
        }
        c.handover = s.served_by.count_ones() > 1;
        c
    }

    /// Node `i`'s deadline `d`, on its own clock, which says what it reads
    /// now when clocks drift.
    fn show_deadline(&self, s: &State, i: usize, d: Instant) -> String {
        if self.bounds.drift_ms == 0 {
            self.show_instant(d)
        } else {
            format!("{} on its clock, which reads {}", self.show_instant(d), self.show_instant(s.clocks[i]))
        }
    }

    /// An instant of a node's clock as the model's time `t` (in ticks).
    fn show_instant(&self, i: Instant) -> String {
        let ms = (i.as_nanos() / 1_000_000) as i64 - (self.origin.as_nanos() / 1_000_000) as i64;
        let (whole, frac) = (ms.div_euclid(TICK_MS as i64), ms.rem_euclid(TICK_MS as i64));
        if frac == 0 {
            format!("t={whole}")
        } else {
            let frac = format!("{frac:03}");
            format!("t={whole}.{}", frac.trim_end_matches('0'))
        }
    }

    /// A one-line summary of who holds and who serves, for traces.
    pub fn summary(&self, s: &State) -> String {
        let mut parts = Vec::new();
        for i in 0..NODES {
            let now = s.clocks[i];
            if let Some((b, d)) = s.nodes[i].lease(now) {
                let serving = if s.nodes[i].is_serving(now) { ", serving" } else { "" };
                parts.push(format!("n{i} holds {b:?} until {}{serving}", self.show_deadline(s, i, d)));
            }
        }
        if parts.is_empty() { "no lease holder".to_string() } else { parts.join("; ") }
    }
}

/// After node `i` handled `reply` from `replica`: a deferring node that hears
/// `PrimaryExists` in answer to a request of its own process (`current`),
/// in its round or after it, has yielded.
fn yielded_check(s: &State, i: usize, replica: NodeId, reply: StoreReply, current: bool) -> Option<String> {
    let node = &s.nodes[i];
    let heard = matches!(reply, Err(StoreReject::PrimaryExists { .. }));
    (heard && current && node.config().mode == Mode::Deferring && node.yielded_to().is_none()).then(|| {
        format!("deferring n{i} heard {} from replica {replica:?} and has not yielded", show_reply(&reply))
    })
}

/// Performs `op` on a replica, checking that its window and fence never go
/// down, and that no checked (deferring) load or save succeeds while a
/// registration stands there.
fn execute(store: &mut MemStore, op: StoreOp) -> Result<StoreReply, String> {
    let before = *store;
    let reply = store.execute(op);
    let checked =
        matches!(op, StoreOp::Load { check_primary: true, .. } | StoreOp::Save { check_primary: true, .. });
    if let (true, Ok(_), Some(p)) = (checked, reply, before.primary()) {
        return Err(format!("a replica performed the checked {} while {p:?} was registered", show_op(&op)));
    }
    if store.fence() < before.fence() {
        return Err(format!("a replica's fence went down: {:?} -> {:?}", before.fence(), store.fence()));
    }
    if store.window_end_ms() < before.window_end_ms() {
        return Err(format!(
            "a replica's window went down: {} -> {}",
            before.window_end_ms(),
            store.window_end_ms()
        ));
    }
    Ok(reply)
}

fn show_msg(m: &LeaseMsg) -> String {
    match *m {
        LeaseMsg::Prepare { ballot } => format!("Prepare {ballot:?}"),
        LeaseMsg::Promise { ballot, lease: None } => format!("Promise {ballot:?} (no live lease)"),
        LeaseMsg::Promise { ballot, lease: Some(l) } => format!("Promise {ballot:?} (live lease {l:?})"),
        LeaseMsg::Rejected { refused, promised } => format!("Rejected {refused:?} (promised {promised:?})"),
        LeaseMsg::Accept { ballot } => format!("Accept {ballot:?}"),
        LeaseMsg::Accepted { ballot } => format!("Accepted {ballot:?}"),
        LeaseMsg::LearnChosen { ballot, remaining_ms } => {
            format!("LearnChosen {ballot:?} ({remaining_ms} ms left)")
        }
        LeaseMsg::Release { ballot } => format!("Release {ballot:?}"),
    }
}

/// A window end, in milliseconds after the wall clocks' epoch.
fn show_window(ms: u64) -> String {
    if ms == 0 {
        return "none".to_string();
    }
    format!("{:+}ms", ms as i64 - WALL_EPOCH_MS as i64)
}

fn show_ts(ts: Timestamp) -> String {
    format!("({}, {})", show_window(ts.physical_ms), ts.logical)
}

fn show_op(op: &StoreOp) -> String {
    match *op {
        StoreOp::Load { fence, .. } => format!("Load (fence {fence:?})"),
        StoreOp::Save { window_end_ms, fence, .. } => {
            format!("Save window {} (fence {fence:?})", show_window(window_end_ms))
        }
        other => format!("{other:?}"),
    }
}

fn show_reply(r: &StoreReply) -> String {
    match *r {
        Ok(StoreOk::Loaded { window_end_ms }) => format!("Loaded window {}", show_window(window_end_ms)),
        Ok(StoreOk::Saved) => "Saved".to_string(),
        Ok(StoreOk::Primary { registered }) => format!("Primary {registered:?}"),
        Err(StoreReject::Fenced { by }) => format!("Fenced by {by:?}"),
        Err(StoreReject::NotGreater { stored }) => format!("NotGreater (stored {})", show_window(stored)),
        Err(e) => format!("{e:?}"),
    }
}

fn show_event(e: &Event) -> String {
    match *e {
        Event::Leading { fence } => format!("Leading (fence {fence:?}): syncs the window"),
        Event::Serving { window_end_ms } => format!("Serving up to window {}", show_window(window_end_ms)),
        Event::WindowExtended { window_end_ms } => {
            format!("WindowExtended to {}", show_window(window_end_ms))
        }
        Event::SteppedDown { reason } => format!("SteppedDown ({reason:?})"),
        Event::JetLag { lag_ms } => format!("JetLag ({lag_ms} ms)"),
        Event::Yielded { primary } => format!("Yielded to primary {primary:?}"),
        Event::Resumed => "Resumed (no primary on a quorum)".to_string(),
        Event::Registered { tag } => format!("Registered as primary (tag {tag:?})"),
        Event::Refused { from, what } => format!("Refused a value of n{} ({what})", from.0),
    }
}

/// A packet, for traces.
pub fn describe(p: &Packet) -> String {
    match p {
        Packet::Peer { from, to, msg } => format!("{from:?}->{to:?} {}", show_msg(msg)),
        Packet::StoreReq { from, replica, request, .. } => {
            format!("{from:?}->replica {replica:?} {}", show_op(&request.op))
        }
    }
}
