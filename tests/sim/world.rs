//! The simulated cluster: nodes with their own clocks, their store replicas,
//! the network between them, clients, and the faults, all driven by one
//! event queue in true time.
//!
//! The loop follows the core's rule: after every input to a node, drain
//! `poll_output()` until `None`, then arm the node's one timer at
//! `poll_timeout()` (a local instant, converted to true time through the
//! node's clock). Events at the same true time run in the order they were
//! scheduled, so a run is a pure function of its seed.
//!
//! A store operation is performed at its replica when its request arrives,
//! atomically, and the answer travels back; a replica whose node is down
//! performs nothing. Behind the two-transaction wrapper (the broken store of
//! `Variant::SplitPrimaryCheck`) a checked load or save is checked on
//! arrival and written after a random delay, so other operations (a
//! registration) can land in between. The operator of a migration plan
//! (see `migration`) stops, reconfigures and restarts nodes and clears
//! registrations through the same replicas, its operations logged and
//! checked like the nodes'.

use std::collections::VecDeque;
use std::hash::{Hash, Hasher};

use leasetso_core_variants::quorum::majority;
use leasetso_core_variants::{
    Ballot, Event, GetTsError, Instant, MemStore, Mode, Node, NodeConfig, NodeId, Output, StepDown, StoreOp,
    StoreReject, StoreReply, StoreRequest, Timestamp,
};

use super::check::{Issued, ReplicaLog, StoreMark, Violation, ViolationKind, fmt_time};
use super::clock::Clock;
use super::migration::{Migration, Order};
use super::net::{Action, Kind, KindFaults, NetFaults, OpKind, Packet, Payload, Rule};
use super::rng::{PPM, Rng};

/// Nanoseconds per millisecond.
pub const MS: u64 = 1_000_000;
/// Nanoseconds per second.
pub const SEC: u64 = 1_000 * MS;
/// The wall clock at true time zero (November 2023), in Unix milliseconds.
pub const WALL_BASE_MS: u64 = 1_700_000_000_000;
/// Every wall clock stays within this of true time (ms), so two nodes'
/// differ by at most twice this: well inside the skew allowance of the
/// replicas' window bound (B2, 60 s), and within the 2 s the default ahead
/// bound leaves above the save interval (B3), so a new leadership never
/// waits for its wall clock in a run that does not push physical ahead.
pub const WALL_SKEW_MS: u64 = 1_000;
/// A run that handles this many events is stuck in a loop.
const MAX_EVENTS: u64 = 50_000_000;
/// A node woken this many times at one instant is stuck in a loop.
const MAX_SPIN: u32 = 1_000;

/// Faults that act on nodes rather than on packets. Every `*_every` is the
/// mean time between two such faults in true ns (0: never).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Chaos {
    /// One node crashes.
    pub crash_every: u64,
    /// A majority, or every node, crashes at once (the "abandon, then crash
    /// every acceptor" pattern of the two-owner traces).
    pub crash_many_every: u64,
    /// Longest downtime after a crash (a quarter of restarts are immediate).
    pub down_max: u64,
    /// The network splits in two, or one node is cut off.
    pub partition_every: u64,
    /// Longest partition.
    pub partition_max: u64,
    /// A node's process stops handling anything (GC, VM pause), while its
    /// clock keeps counting; inputs wait until it resumes.
    pub pause_every: u64,
    /// Longest pause.
    pub pause_max: u64,
    /// A node's timers fire late (an overloaded runtime); messages still flow.
    pub stall_every: u64,
    /// Longest stall.
    pub stall_max: u64,
    /// The owner (or some node) releases the lease (P6), sometimes to shut down.
    pub release_every: u64,
    /// A node's clock changes rate, within the drift bound.
    pub rate_every: u64,
    /// A node's wall clock steps, back or forward, by up to an hour.
    pub wall_every: u64,
    /// Packets of one kind on one link are held back, then all delivered at
    /// once (a congested or flapping link): stale messages in bulk.
    pub hold_every: u64,
    /// Longest hold.
    pub hold_max: u64,
    /// One direction of one link loses everything for a while.
    pub one_way_every: u64,
    /// Longest one-way loss.
    pub one_way_max: u64,
    /// A node is set to crash (and restart at once) right after it next
    /// handles an Accept or a Prepare: a crash at the worst point.
    pub crash_after_every: u64,
    /// Of restarts, how many (ppm) start a fresh monotonic clock origin (a
    /// reboot rather than a process restart).
    pub new_origin: u32,
    /// Of lease messages reaching a quarantined acceptor, how many (ppm) the
    /// network instead delivers right when the quarantine ends: the
    /// adversary's best moment for a stale message.
    pub quarantine_edge: u32,
    /// Of store operations, how many (ppm) answer `Failed` (half of them
    /// after performing the operation: a failed reply says nothing).
    pub store_fail: u32,
}

/// The node-level faults, for scheduling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChaosKind {
    Crash,
    CrashMany,
    Partition,
    Pause,
    Stall,
    Release,
    Rate,
    Wall,
    Hold,
    OneWay,
    CrashAfter,
}

impl ChaosKind {
    const ALL: [ChaosKind; 11] = [
        ChaosKind::Crash,
        ChaosKind::CrashMany,
        ChaosKind::Partition,
        ChaosKind::Pause,
        ChaosKind::Stall,
        ChaosKind::Release,
        ChaosKind::Rate,
        ChaosKind::Wall,
        ChaosKind::Hold,
        ChaosKind::OneWay,
        ChaosKind::CrashAfter,
    ];

    fn mean(self, c: &Chaos) -> u64 {
        match self {
            ChaosKind::Crash => c.crash_every,
            ChaosKind::CrashMany => c.crash_many_every,
            ChaosKind::Partition => c.partition_every,
            ChaosKind::Pause => c.pause_every,
            ChaosKind::Stall => c.stall_every,
            ChaosKind::Release => c.release_every,
            ChaosKind::Rate => c.rate_every,
            ChaosKind::Wall => c.wall_every,
            ChaosKind::Hold => c.hold_every,
            ChaosKind::OneWay => c.one_way_every,
            ChaosKind::CrashAfter => c.crash_after_every,
        }
    }
}

/// Everything a run is made of.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// The run's seed.
    pub seed: u64,
    /// Cluster size.
    pub nodes: u16,
    /// The configuration of every node (id and seed are set per node).
    pub node: NodeConfig,
    /// The network.
    pub net: NetFaults,
    /// Node-level faults.
    pub chaos: Chaos,
    /// Mean time between two client requests (0: no clients).
    pub client_every: u64,
    /// True time after which faults stop and the network heals.
    pub chaos_for: u64,
    /// Whether the run ends with the liveness check.
    pub liveness: bool,
    /// The replicas run behind the two-transaction wrapper (a broken store:
    /// see [`crate::sim::config::Variant::SplitPrimaryCheck`]).
    pub split_primary_check: bool,
    /// The operator's migration to primaries, if the run has one.
    pub migration: Option<Migration>,
    /// What kind of run this is, for reports.
    pub label: String,
}

/// Counters of what a run went through, to show the faults were exercised.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Events handled.
    pub events: u64,
    /// Packets sent.
    pub sent: u64,
    /// Packets lost, dropped by a partition or by a rule.
    pub lost: u64,
    /// Extra copies delivered.
    pub duplicated: u64,
    /// Packets delayed far beyond the usual delay.
    pub long_delayed: u64,
    /// Packets that arrived at a node that was down.
    pub to_down_node: u64,
    /// Packets for a later incarnation than the one that was addressed.
    pub to_new_incarnation: u64,
    /// Crashes.
    pub crashes: u64,
    /// Partitions.
    pub partitions: u64,
    /// Pauses and timer stalls.
    pub pauses: u64,
    /// Releases (P6) asked for.
    pub releases: u64,
    /// Wall clock steps.
    pub wall_steps: u64,
    /// Fresh acquisitions (`Event::Leading`).
    pub leaderships: u64,
    /// Syncs completed (`Event::Serving`).
    pub serving: u64,
    /// Step downs because a store was fenced by a newer leadership.
    pub fenced: u64,
    /// Other step downs.
    pub stepped_down: u64,
    /// Leases a majority of acceptors held live while no node held them
    /// (the proposer gave up on an attempt that had in fact succeeded):
    /// harmless for safety, but every proposer is blocked until they expire.
    pub orphans: u64,
    /// Successful GetTS calls.
    pub timestamps: u64,
    /// Refused GetTS calls.
    pub refused: u64,
    /// Nodes the operator restarted as primary.
    pub migrations: u64,
    /// Rollbacks the operator began.
    pub rollbacks: u64,
    /// Primaries registered on a quorum (`Event::Registered`).
    pub registrations: u64,
    /// Deferring nodes that yielded (`Event::Yielded`).
    pub yields: u64,
    /// Yielded nodes that campaign again (`Event::Resumed`).
    pub resumes: u64,
    /// Registrations the operator's `ClearPrimary` removed from a replica.
    pub clears: u64,
    /// Checked loads and saves a replica refused with `PrimaryExists`.
    pub primary_refusals: u64,
    /// Values refused as implausible (B1–B4): by a node (`Event::Refused`)
    /// or by a replica (`StoreReject::Implausible`). Only a faulty member's
    /// forgeries may be refused (check 11).
    pub implausible: u64,
    /// The largest ballot counter any node held (a maximum, not a sum).
    pub max_counter: u64,
    /// The largest rise of a node's ballot counter in one input (B1's step).
    pub max_counter_step: u64,
    /// The largest fence counter any replica stored.
    pub max_fence_counter: u64,
    /// The largest restart counter any node started with.
    pub max_restart: u64,
    /// The furthest a timestamp's physical part was ahead of its leader's
    /// wall clock when handed out, in ms (B3).
    pub max_ahead_ms: u64,
    /// The furthest a window a replica stored was ahead of its wall clock, in ms (B2).
    pub max_window_ahead_ms: u64,
}

impl Stats {
    /// Adds `o` to `self`.
    pub fn add(&mut self, o: &Stats) {
        self.events += o.events;
        self.sent += o.sent;
        self.lost += o.lost;
        self.duplicated += o.duplicated;
        self.long_delayed += o.long_delayed;
        self.to_down_node += o.to_down_node;
        self.to_new_incarnation += o.to_new_incarnation;
        self.crashes += o.crashes;
        self.partitions += o.partitions;
        self.pauses += o.pauses;
        self.releases += o.releases;
        self.wall_steps += o.wall_steps;
        self.leaderships += o.leaderships;
        self.serving += o.serving;
        self.fenced += o.fenced;
        self.stepped_down += o.stepped_down;
        self.timestamps += o.timestamps;
        self.orphans += o.orphans;
        self.refused += o.refused;
        self.migrations += o.migrations;
        self.rollbacks += o.rollbacks;
        self.registrations += o.registrations;
        self.yields += o.yields;
        self.resumes += o.resumes;
        self.clears += o.clears;
        self.primary_refusals += o.primary_refusals;
        self.implausible += o.implausible;
        self.max_counter = self.max_counter.max(o.max_counter);
        self.max_counter_step = self.max_counter_step.max(o.max_counter_step);
        self.max_fence_counter = self.max_fence_counter.max(o.max_fence_counter);
        self.max_restart = self.max_restart.max(o.max_restart);
        self.max_ahead_ms = self.max_ahead_ms.max(o.max_ahead_ms);
        self.max_window_ahead_ms = self.max_window_ahead_ms.max(o.max_window_ahead_ms);
    }
}

/// Where trace lines go.
#[derive(Debug)]
pub enum Trace {
    /// Nowhere (the fast path: no line is even formatted).
    Off,
    /// Printed to stderr as they happen.
    Print,
    /// The last `n` kept, for a failure report.
    Keep(VecDeque<String>, usize),
}

/// One node: its process (if up), its replica (which survives crashes), and
/// its clocks.
#[derive(Debug)]
pub struct Slot {
    /// The node's configuration.
    pub cfg: NodeConfig,
    /// The running process, `None` while down.
    pub node: Option<Node>,
    /// The replica: window, fences and restart counter survive crashes.
    pub store: MemStore,
    /// The monotonic clock.
    pub clock: Clock,
    /// Wall clock = base + true time + this, in ms.
    pub wall_offset_ms: i64,
    /// Bumped at every crash: identifies the process.
    pub incarnation: u32,
    /// The highest wall clock reading given to this process, in ms (the
    /// oracle's ahead bound follows it, never back: check 11).
    pub wall_high_ms: u64,
    /// The local instant this incarnation started at (its quarantine began).
    pub started_local: u64,
    /// Scripted: the runtime never fires this node's timers.
    pub timers_blocked: bool,
    /// Crash (and restart at once) right after handling a packet of this kind.
    pub crash_after: Option<Kind>,
    /// What the replica performed, for check 5 (it survives crashes, as the
    /// replica does).
    pub log: ReplicaLog,
    /// When the node's current registration read round began (true time),
    /// and its request id.
    read_started: (u64, u64),
    token: u64,
    armed: Option<u64>,
    paused_until: u64,
    stalled_until: u64,
    spin: (u64, u32),
}

#[derive(Clone, Copy, Debug)]
enum Ev {
    Deliver {
        packet: Packet,
        incarnation: u32,
    },
    Timer {
        node: u16,
        token: u64,
    },
    Client,
    Chaos(ChaosKind),
    Restart {
        node: u16,
        incarnation: u32,
    },
    PartitionEnd {
        generation: u64,
    },
    RuleEnd {
        rule: Rule,
    },
    /// The write half of a checked load or save behind the two-transaction
    /// wrapper, its check passed; it dies with the replica's process.
    StoreWrite {
        packet: Packet,
        replica_incarnation: u32,
    },
    /// The operator restarts `order[k]` of the migration as primary.
    Migrate {
        k: usize,
    },
    /// The operator begins the rollback.
    Rollback,
    /// The operator restarts the primaries deferring, the clear under way.
    RollbackStop,
    /// The operator's clear pass over the replicas.
    ClearPass,
    /// An operator's `ClearPrimary(id, tag)` reaches replica `replica`.
    ClearReplica {
        replica: u16,
        id: NodeId,
        tag: Ballot,
    },
}

/// Where the operator's migration plan stands.
#[derive(Debug, Default)]
struct Operator {
    /// The next restart as primary (`order.len()`: all done).
    next: usize,
    /// Whether the rollback has begun.
    rolled_back: bool,
    /// Stopped nodes that come back deferring once the clear is done.
    awaiting: Vec<usize>,
    /// The primaries still run while the clear goes on; they are to be
    /// restarted deferring (at `Ev::RollbackStop`).
    stop_pending: bool,
}

/// A scheduled event in the queue: its time, its scheduling order, and
/// where the event itself waits (events are large; the queue moves only
/// these).
#[derive(Debug)]
struct Entry {
    at: u64,
    seq: u64,
    slot: u32,
}

/// FNV-1a, for fingerprints that must not depend on the process (std's
/// hasher is randomly keyed).
#[derive(Clone, Copy, Debug)]
pub struct Fnv(pub u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xCBF2_9CE4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3);
        }
    }
}

/// The simulated cluster.
#[derive(Debug)]
pub struct World {
    /// The run's configuration.
    pub cfg: SimConfig,
    /// True time, ns.
    pub now: u64,
    /// The nodes.
    pub slots: Vec<Slot>,
    /// Scripted rules, tried before the random network; first match wins.
    pub rules: Vec<Rule>,
    /// Packets a [`Action::Hold`] rule kept aside.
    pub held: Vec<Packet>,
    /// What the run went through.
    pub stats: Stats,
    /// Every successful GetTS, in true-time order.
    pub issued: Vec<Issued>,
    /// Whether faults have stopped for good.
    pub healed: bool,
    /// Check 1 runs after every event. Only a test of the other checks turns
    /// it off, to let a broken variant's two owners go on and hand out
    /// timestamps.
    pub check_owners: bool,
    /// A faulty member: the values it forges ([`World::forge`]) are refused
    /// (B1–B4), and so are only those; `None`: no refusal at all (check 11).
    pub faulty: Option<u16>,
    /// When the quiet tail began: the heal, the arrival of the last packet
    /// the faulty network had delayed, or the end of the quarantine of the
    /// last node restarted, whichever is latest.
    pub quiet_since: u64,
    /// Pending events, latest first: the next one is the last (a few dozen
    /// at a time, so a sorted vector beats a heap).
    queue: Vec<Entry>,
    /// The events the queue's entries point at, and the free places.
    events: Vec<Option<Ev>>,
    free: Vec<u32>,
    seq: u64,
    net_rng: Rng,
    chaos_rng: Rng,
    client_rng: Rng,
    store_rng: Rng,
    partition: Option<[u8; 8]>,
    partition_generation: u64,
    last_arrival: u64,
    last_server: u16,
    /// The orphaned lease last seen, and since when (true time).
    orphan: Option<(Ballot, u64)>,
    /// Orphans seen during the quiet tail, for the liveness report.
    tail_orphans: Vec<(Ballot, u64, u64)>,
    mig_rng: Rng,
    operator: Operator,
    /// Since when (true time) a quorum of replicas has held a registration
    /// with no `ClearPrimary` taking effect anywhere since (per the write
    /// logs): a registration read begun after that cannot find none on a
    /// quorum.
    reg_quorum_since: Option<u64>,
    /// A violation an output handler found, reported after the event.
    fault: Option<Violation>,
    outputs: Vec<Output>,
    trace: Trace,
    fingerprint: Fnv,
}

impl World {
    /// A cluster for `cfg`, not started yet (see [`World::boot`]).
    pub fn new(cfg: SimConfig, trace: Trace) -> Self {
        let mut rng = Rng::new(cfg.seed ^ 0x5EED_1EA5_E750_0000);
        let drift = cfg.node.lease.drift_ppm;
        let slots = (0..cfg.nodes)
            .map(|i| {
                let mut node_cfg = cfg.node;
                node_cfg.id = NodeId(i);
                node_cfg.nodes = cfg.nodes;
                node_cfg.seed = rng.next_u64();
                let origin = rng.below(1_000_000 * SEC);
                let ppm = draw_ppm(&mut rng, drift);
                Slot {
                    cfg: node_cfg,
                    node: None,
                    store: MemStore::new(),
                    clock: Clock::new(0, origin, ppm),
                    wall_offset_ms: rng.range(0, 1_000) as i64 - 500,
                    incarnation: 0,
                    wall_high_ms: 0,
                    started_local: 0,
                    timers_blocked: false,
                    crash_after: None,
                    log: ReplicaLog::default(),
                    read_started: (0, 0),
                    token: 0,
                    armed: None,
                    paused_until: 0,
                    stalled_until: 0,
                    spin: (0, 0),
                }
            })
            .collect();
        World {
            now: 0,
            slots,
            rules: Vec::new(),
            held: Vec::new(),
            stats: Stats::default(),
            issued: Vec::new(),
            healed: false,
            check_owners: true,
            faulty: None,
            quiet_since: 0,
            queue: Vec::new(),
            events: Vec::new(),
            free: Vec::new(),
            seq: 0,
            net_rng: rng.fork(1),
            chaos_rng: rng.fork(2),
            client_rng: rng.fork(3),
            store_rng: rng.fork(4),
            mig_rng: rng.fork(5),
            operator: Operator::default(),
            reg_quorum_since: None,
            fault: None,
            partition: None,
            partition_generation: 0,
            last_arrival: 0,
            last_server: 0,
            orphan: None,
            tail_orphans: Vec::new(),
            outputs: Vec::with_capacity(64),
            trace,
            fingerprint: Fnv::default(),
            cfg,
        }
    }

    /// Starts every node, the clients and the faults.
    pub fn boot(&mut self) {
        for i in 0..self.slots.len() {
            self.restart(i);
        }
        if self.cfg.client_every > 0 {
            let at = self.client_rng.gap(self.cfg.client_every);
            self.schedule(at, Ev::Client);
        }
        for kind in ChaosKind::ALL {
            let mean = kind.mean(&self.cfg.chaos);
            if mean > 0 {
                let at = self.chaos_rng.gap(mean);
                self.schedule(at, Ev::Chaos(kind));
            }
        }
        if let Some(m) = &self.cfg.migration {
            self.schedule(m.start, Ev::Migrate { k: 0 });
        }
    }

    /// The kept trace lines (empty unless the trace keeps them).
    pub fn trace_tail(&self) -> Vec<String> {
        match &self.trace {
            Trace::Keep(lines, _) => lines.iter().cloned().collect(),
            _ => Vec::new(),
        }
    }

    fn tr(&mut self, line: impl FnOnce() -> String) {
        if matches!(self.trace, Trace::Off) {
            return;
        }
        let line = format!("{:>15}  {}", fmt_time(self.now), line());
        match &mut self.trace {
            Trace::Off => {}
            Trace::Print => eprintln!("{line}"),
            Trace::Keep(lines, cap) => {
                if lines.len() == *cap {
                    lines.pop_front();
                }
                lines.push_back(line);
            }
        }
    }

    /// A fingerprint of everything that happened and of the final state: two
    /// runs of one seed must agree on it.
    pub fn fingerprint(&self) -> u64 {
        let mut h = self.fingerprint;
        for s in &self.slots {
            s.node.hash(&mut h);
            s.store.hash(&mut h);
            s.incarnation.hash(&mut h);
        }
        self.issued.len().hash(&mut h);
        self.issued.last().map(|i| (i.at, i.node, i.last)).hash(&mut h);
        h.finish()
    }

    fn schedule(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        let slot = match self.free.pop() {
            Some(k) => {
                self.events[k as usize] = Some(ev);
                k
            }
            None => {
                self.events.push(Some(ev));
                u32::try_from(self.events.len() - 1).expect("fewer than 2^32 pending events")
            }
        };
        let seq = self.seq;
        let k = self.queue.partition_point(|e| (e.at, e.seq) > (at, seq));
        self.queue.insert(k, Entry { at, seq, slot });
    }

    fn violation(&self, kind: ViolationKind, detail: String) -> Violation {
        Violation { kind, at: self.now, detail }
    }

    // ----- clocks -------------------------------------------------------

    /// Node `i`'s monotonic clock now.
    pub fn local(&self, i: usize) -> Instant {
        Instant::from_nanos(self.slots[i].clock.local(self.now))
    }

    /// Node `i`'s wall clock now, in ms.
    pub fn wall_ms(&self, i: usize) -> u64 {
        let ms = (WALL_BASE_MS + self.now / MS) as i64 + self.slots[i].wall_offset_ms;
        ms.max(0) as u64
    }

    /// The true time at which node `i`'s clock reads `local` (now if it has).
    pub fn true_at(&self, i: usize, local: Instant) -> Option<u64> {
        self.slots[i].clock.true_at(local.as_nanos(), self.now)
    }

    /// The true time node `i`'s acceptors leave quarantine (A4).
    pub fn quarantine_end(&self, i: usize) -> Option<u64> {
        let node = self.slots[i].node.as_ref()?;
        let end = Instant::from_nanos(self.slots[i].started_local) + node.timing().quarantine;
        self.true_at(i, end)
    }

    // ----- inspection ---------------------------------------------------

    /// The lease node `i` holds now, if it is up and holds one.
    pub fn lease(&self, i: usize) -> Option<(Ballot, Instant)> {
        self.slots[i].node.as_ref()?.lease(self.local(i))
    }

    /// The live lease node `i`'s acceptor holds now.
    pub fn acceptor_lease(&self, i: usize) -> Option<Ballot> {
        self.slots[i].node.as_ref()?.acceptor().lease(self.local(i))
    }

    /// Whether node `i` serves now.
    pub fn serving(&self, i: usize) -> bool {
        self.slots[i].node.as_ref().is_some_and(|n| n.is_serving(self.local(i)))
    }

    /// Whether node `i` is up and its acceptors are out of quarantine.
    pub fn participates(&self, i: usize) -> bool {
        self.slots[i].node.as_ref().is_some_and(|n| !n.acceptor().is_quarantined(self.local(i)))
    }

    /// The window end saved on a quorum: the majority-th largest over replicas.
    pub fn quorum_window_ms(&self) -> u64 {
        let mut w: Vec<u64> = self.slots.iter().map(|s| s.store.window_end_ms()).collect();
        w.sort_unstable_by(|a, b| b.cmp(a));
        w[usize::from(majority(self.cfg.nodes)) - 1]
    }

    /// A line per node: what it believes, for failure reports.
    pub fn describe_nodes(&self) -> String {
        let mut out = String::new();
        for (i, s) in self.slots.iter().enumerate() {
            let line = match &s.node {
                None => format!(
                    "n{i}: down (incarnation {}, {}), store window {} fence {} registration {:?}",
                    s.incarnation,
                    s.cfg.mode.as_str(),
                    s.store.window_end_ms(),
                    s.store.fence(),
                    s.store.primary()
                ),
                Some(n) => {
                    let local = self.local(i);
                    let acc = n.acceptor();
                    format!(
                        "n{i}: lease {:?}, serving {}, {:?}, acceptor promised {} lease {:?}{}, \
                         store window {} fence {} registration {:?}, clock {:?} ({:+} ppm)",
                        n.lease(local),
                        n.is_serving(local),
                        n.status(),
                        acc.promised(),
                        acc.lease(local),
                        if acc.is_quarantined(local) { " (quarantined)" } else { "" },
                        s.store.window_end_ms(),
                        s.store.fence(),
                        s.store.primary(),
                        local,
                        s.clock.ppm(),
                    )
                }
            };
            out.push_str(&line);
            out.push('\n');
        }
        out
    }

    // ----- running ------------------------------------------------------

    /// Handles the next event, then runs check 1. `Ok(false)` when nothing
    /// is left to happen.
    pub fn step(&mut self) -> Result<bool, Violation> {
        let Some(Entry { at, seq, slot }) = self.queue.pop() else {
            return Ok(false);
        };
        let ev = self.events[slot as usize].take().expect("a queued event");
        self.free.push(slot);
        self.now = at;
        self.stats.events += 1;
        (at, seq).hash(&mut self.fingerprint);
        if self.stats.events > MAX_EVENTS {
            return Err(self.violation(ViolationKind::Stuck, "the run never ends".into()));
        }
        self.handle(ev)?;
        if let Some(v) = self.fault.take() {
            return Err(v);
        }
        let orphan = self.check_nodes()?;
        self.watch_orphans(orphan);
        Ok(true)
    }

    /// `now`: the lease a majority of live acceptors hold, if no node holds it.
    fn watch_orphans(&mut self, now: Option<Ballot>) {
        match (self.orphan, now) {
            (Some((b, _)), Some(c)) if b == c => {}
            (old, new) => {
                if let Some((b, since)) = old
                    && self.healed
                {
                    self.tail_orphans.push((b, since, self.now));
                }
                if let Some(b) = new {
                    self.stats.orphans += 1;
                    self.tr(|| format!("a majority holds lease {b}, but no node does"));
                }
                self.orphan = new.map(|b| (b, self.now));
            }
        }
    }

    /// Runs until `pred` holds (checked before every event) or true time
    /// `until`; returns whether `pred` held.
    pub fn run_until(&mut self, until: u64, mut pred: impl FnMut(&World) -> bool) -> Result<bool, Violation> {
        loop {
            if pred(self) {
                return Ok(true);
            }
            match self.queue.last() {
                Some(e) if e.at <= until => {
                    self.step()?;
                }
                _ => {
                    self.now = self.now.max(until);
                    return Ok(pred(self));
                }
            }
        }
    }

    /// Runs every event up to true time `until`.
    pub fn run_to(&mut self, until: u64) -> Result<(), Violation> {
        self.run_until(until, |_| false).map(|_| ())
    }

    fn handle(&mut self, ev: Ev) -> Result<(), Violation> {
        match ev {
            Ev::Deliver { packet, incarnation } => self.deliver(packet, incarnation),
            Ev::Timer { node, token } => self.timer(usize::from(node), token),
            Ev::Client => {
                let at = self.now + self.client_rng.gap(self.cfg.client_every).max(1);
                self.schedule(at, Ev::Client);
                self.client()
            }
            Ev::Chaos(kind) => {
                self.chaos(kind);
                Ok(())
            }
            Ev::Restart { node, incarnation } => {
                if self.slots[usize::from(node)].incarnation == incarnation {
                    self.restart(usize::from(node));
                }
                Ok(())
            }
            Ev::RuleEnd { rule } => {
                if let Some(k) = self.rules.iter().position(|r| *r == rule) {
                    self.rules.remove(k);
                }
                // What the link held back arrives in a burst.
                let held = std::mem::take(&mut self.held);
                let (go, stay): (Vec<Packet>, Vec<Packet>) = held.into_iter().partition(|p| rule.matches(p));
                self.held = stay;
                self.tr(|| format!("link recovers: {} held packets flushed ({rule:?})", go.len()));
                for p in go {
                    let at = self.now + self.net_rng.range(self.cfg.net.delay_min, self.cfg.net.delay_max);
                    let incarnation = self.slots[usize::from(p.to)].incarnation;
                    self.last_arrival = self.last_arrival.max(at);
                    self.schedule(at, Ev::Deliver { packet: p, incarnation });
                }
                Ok(())
            }
            Ev::PartitionEnd { generation } => {
                if generation == self.partition_generation && self.partition.is_some() {
                    self.partition = None;
                    self.tr(|| "partition heals".into());
                }
                Ok(())
            }
            Ev::StoreWrite { packet, replica_incarnation } => self.store_write(packet, replica_incarnation),
            Ev::Migrate { k } => {
                self.migrate(k);
                Ok(())
            }
            Ev::Rollback => {
                self.rollback();
                Ok(())
            }
            Ev::RollbackStop => {
                self.rollback_stop();
                Ok(())
            }
            Ev::ClearPass => {
                self.clear_pass();
                Ok(())
            }
            Ev::ClearReplica { replica, id, tag } => self.clear_replica(usize::from(replica), id, tag),
        }
    }

    /// Checks 1, 6 and 9, after every event (see the module docs of
    /// `check` for why that is exact). Check 1 only while `check_owners`.
    /// Returns the lease a majority of live acceptors hold, if no node holds
    /// it (an orphan: the same pass over the nodes finds it).
    fn check_nodes(&self) -> Result<Option<Ballot>, Violation> {
        let mut owner: Option<(usize, Ballot, Instant, Instant)> = None;
        let mut server: Option<usize> = None;
        let (mut accepted, mut held) = ([Ballot::ZERO; 8], [Ballot::ZERO; 8]);
        let (mut n_accepted, mut n_held) = (0, 0);
        for (i, s) in self.slots.iter().enumerate() {
            let Some(node) = &s.node else { continue };
            let local = Instant::from_nanos(s.clock.local(self.now));
            let lease = node.lease(local);
            if let Some(b) = node.acceptor().lease(local) {
                accepted[n_accepted] = b;
                n_accepted += 1;
            }
            if let Some((b, _)) = lease {
                held[n_held] = b;
                n_held += 1;
            }
            if let (Some(p), Some((ballot, _))) = (node.yielded_to(), lease) {
                return Err(self.violation(
                    ViolationKind::YieldedOwner,
                    format!("n{i} yielded to primary {p} and still holds the lease {ballot}"),
                ));
            }
            let serving = node.is_serving(local);
            if serving {
                let m = node.timing().margin;
                let left = lease.map(|(_, d)| d.saturating_since(local));
                if left.is_none_or(|left| left <= m) {
                    return Err(self.violation(
                        ViolationKind::ServedInMargin,
                        format!("n{i} serves with {left:?} of its lease left, within the margin of {m:?}"),
                    ));
                }
            }
            if !self.check_owners {
                continue;
            }
            if let Some((ballot, d)) = lease {
                if let Some((j, bj, dj, lj)) = owner {
                    return Err(self.violation(
                        ViolationKind::TwoOwners,
                        format!(
                            "n{j} holds {bj} for {:?} more and n{i} holds {ballot} for {:?} more \
                             (local time to each deadline)",
                            dj.saturating_since(lj),
                            d.saturating_since(local)
                        ),
                    ));
                }
                owner = Some((i, ballot, d, local));
            }
            if serving {
                if let Some(j) = server {
                    return Err(
                        self.violation(ViolationKind::TwoServing, format!("n{j} and n{i} both serve"))
                    );
                }
                server = Some(i);
            }
        }
        let quorum = usize::from(majority(self.cfg.nodes));
        let accepted = &accepted[..n_accepted];
        let majority_lease =
            accepted.iter().find(|&&b| accepted.iter().filter(|&&x| x == b).count() >= quorum);
        Ok(majority_lease.copied().filter(|b| !held[..n_held].contains(b)))
    }

    /// Check 4: some node holds the lease and serves.
    pub fn check_live(&self) -> Result<(), Violation> {
        if (0..self.slots.len()).any(|i| self.lease(i).is_some() && self.serving(i)) {
            return Ok(());
        }
        let mut orphans: Vec<String> = self
            .tail_orphans
            .iter()
            .map(|(b, from, to)| format!("{b} from {} to {}", fmt_time(*from), fmt_time(*to)))
            .collect();
        if let Some((b, from)) = self.orphan {
            orphans.push(format!("{b} from {} on", fmt_time(from)));
        }
        Err(self.violation(
            ViolationKind::NoLiveness,
            format!(
                "quiet since {} (three lease periods and more), yet nobody serves; leases a majority \
                 held but no node did after the heal: [{}]\n{}",
                fmt_time(self.quiet_since),
                orphans.join(", "),
                self.describe_nodes()
            ),
        ))
    }

    // ----- nodes --------------------------------------------------------

    /// Hands the node's outputs to the network, then arms its timer.
    fn drain(&mut self, i: usize) {
        let mut outs = std::mem::take(&mut self.outputs);
        if let Some(node) = self.slots[i].node.as_mut() {
            while let Some(out) = node.poll_output() {
                outs.push(out);
            }
        }
        let from = i as u16;
        for out in outs.drain(..) {
            match out {
                Output::Send { to, msg } => {
                    let packet = Packet { from, to: to.0, payload: Payload::Lease(msg), sent_at: self.now };
                    self.send(packet);
                }
                Output::Store { replica, request } => {
                    let slot = &mut self.slots[i];
                    if request.op == StoreOp::ReadPrimary && slot.read_started.1 != request.id {
                        slot.read_started = (self.now, request.id);
                    }
                    let incarnation = slot.incarnation;
                    let payload = Payload::StoreReq { request, incarnation };
                    self.send(Packet { from, to: replica.0, payload, sent_at: self.now });
                }
                Output::Event(e) => self.on_event(i, e),
            }
        }
        self.outputs = outs;
        self.arm(i);
    }

    fn on_event(&mut self, i: usize, e: Event) {
        match e {
            Event::Leading { fence } => {
                self.stats.leaderships += 1;
                // Check 10: a leadership begins only under the lease it won.
                let local = self.local(i);
                let held = self.slots[i].node.as_ref().and_then(|n| n.lease(local));
                if held.map(|(b, _)| b) != Some(fence) {
                    let v = self.violation(
                        ViolationKind::LeadWithoutLease,
                        format!("n{i} begins a leadership fenced by {fence}, but holds {held:?}"),
                    );
                    self.fault.get_or_insert(v);
                }
            }
            Event::Serving { .. } => {
                self.stats.serving += 1;
                self.last_server = i as u16;
            }
            Event::SteppedDown { reason: StepDown::Fenced { .. } } => self.stats.fenced += 1,
            Event::SteppedDown { .. } => self.stats.stepped_down += 1,
            Event::Yielded { .. } => self.stats.yields += 1,
            Event::Registered { .. } => self.stats.registrations += 1,
            Event::Resumed => {
                self.stats.resumes += 1;
                // Check 7: no quorum read begun while a registration stood on
                // a quorum (and none was cleared since) finds none.
                let (began, _) = self.slots[i].read_started;
                if let Some(since) = self.reg_quorum_since.filter(|&since| since <= began) {
                    let v = self.violation(
                        ViolationKind::ResumedUnderPrimary,
                        format!(
                            "n{i} resumed after a registration read begun at {}, but a registration has \
                             stood on a quorum since {} with no clear since",
                            fmt_time(began),
                            fmt_time(since)
                        ),
                    );
                    self.fault.get_or_insert(v);
                }
            }
            Event::Refused { from, what } => {
                self.stats.implausible += 1;
                // Check 11: only a faulty member's values are implausible.
                if self.faulty != Some(from.0) {
                    let v = self.violation(
                        ViolationKind::RefusedCorrect,
                        format!("n{i} refused a value of correct n{}: {what}", from.0),
                    );
                    self.fault.get_or_insert(v);
                }
            }
            Event::WindowExtended { .. } | Event::JetLag { .. } => {}
        }
        self.tr(|| format!("n{i} event {e:?}"));
    }

    /// Arms node `i`'s one timer at `poll_timeout()`.
    fn arm(&mut self, i: usize) {
        let slot = &self.slots[i];
        let wanted = slot.node.as_ref().and_then(|n| n.poll_timeout()).filter(|&t| t != Instant::NEVER);
        let wanted = wanted.map(Instant::as_nanos);
        if wanted == slot.armed {
            return;
        }
        let at = wanted.and_then(|t| slot.clock.true_at(t, self.now));
        let slot = &mut self.slots[i];
        slot.token += 1;
        slot.armed = at.and(wanted);
        if let Some(at) = at {
            let token = slot.token;
            self.schedule(at, Ev::Timer { node: i as u16, token });
        }
    }

    /// Forgets the armed timer and arms it again (after a clock change, or
    /// when a script unblocks the timers).
    fn rearm(&mut self, i: usize) {
        let slot = &mut self.slots[i];
        slot.token += 1;
        slot.armed = None;
        self.arm(i);
    }

    fn timer(&mut self, i: usize, token: u64) -> Result<(), Violation> {
        let now = self.now;
        let slot = &mut self.slots[i];
        if slot.node.is_none() || slot.token != token {
            return Ok(());
        }
        let wait = slot.paused_until.max(slot.stalled_until);
        if now < wait {
            self.schedule(wait, Ev::Timer { node: i as u16, token });
            return Ok(());
        }
        if slot.timers_blocked {
            // Unblocking re-arms it.
            slot.armed = None;
            return Ok(());
        }
        slot.spin = if slot.spin.0 == now { (now, slot.spin.1 + 1) } else { (now, 1) };
        if slot.spin.1 > MAX_SPIN {
            let armed = slot.armed;
            return Err(self.violation(
                ViolationKind::Stuck,
                format!("n{i} keeps asking to be woken at a time that has passed: {armed:?}"),
            ));
        }
        slot.armed = None;
        let (local, wall) = (self.local(i), self.wall_ms(i));
        self.tr(|| format!("n{i} timer (clock {local:?})"));
        let slot = &mut self.slots[i];
        slot.wall_high_ms = slot.wall_high_ms.max(wall);
        let before = slot.node.as_ref().map_or(0, |n| n.held_counter());
        if let Some(node) = slot.node.as_mut() {
            node.handle_timeout(local, wall);
        }
        self.observe_counter(i, before);
        self.drain(i);
        Ok(())
    }

    /// Crashes node `i`: its process and everything in its memory are gone;
    /// its replica stays.
    pub fn crash(&mut self, i: usize) {
        let slot = &mut self.slots[i];
        if slot.node.take().is_none() {
            return;
        }
        slot.incarnation += 1;
        slot.token += 1;
        slot.armed = None;
        slot.paused_until = 0;
        slot.stalled_until = 0;
        self.stats.crashes += 1;
        self.tr(|| format!("n{i} CRASHES"));
    }

    /// Starts node `i` (if down) with the next restart counter of its replica.
    pub fn restart(&mut self, i: usize) {
        if self.slots[i].node.is_some() {
            return;
        }
        if self.slots[i].incarnation > 0 && self.chaos_rng.chance(self.cfg.chaos.new_origin) {
            let origin = self.chaos_rng.below(1_000_000 * SEC);
            let ppm = self.slots[i].clock.ppm();
            self.slots[i].clock = Clock::new(self.now, origin, ppm);
        }
        let local = self.local(i);
        let slot = &mut self.slots[i];
        let restart = slot.store.bump_restart();
        let node = Node::new(slot.cfg, restart, local)
            .unwrap_or_else(|e| panic!("simulated node configuration refused: {e}: {:?}", slot.cfg));
        slot.node = Some(node);
        slot.wall_high_ms = 0;
        self.stats.max_restart = self.stats.max_restart.max(restart);
        slot.started_local = local.as_nanos();
        slot.spin = (0, 0);
        self.tr(|| format!("n{i} starts, restart {restart}, clock {local:?}"));
        self.drain(i);
    }

    /// Notes node `i`'s ballot counter after an input, `before` it.
    fn observe_counter(&mut self, i: usize, before: u64) {
        let after = self.slots[i].node.as_ref().map_or(0, |n| n.held_counter());
        self.note_counter(before, after);
    }

    fn note_counter(&mut self, before: u64, after: u64) {
        self.stats.max_counter = self.stats.max_counter.max(after);
        self.stats.max_counter_step = self.stats.max_counter_step.max(after.saturating_sub(before));
    }

    /// A faulty member `from` sends `payload` to `to` through the network,
    /// as if its own process had (the link's id is `from`).
    pub fn forge(&mut self, from: u16, to: u16, payload: Payload) {
        self.tr(|| format!("n{from} (faulty) forges for n{to}: {payload:?}"));
        self.send(Packet { from, to, payload, sent_at: self.now });
    }

    /// Writes a line of a script's narration into the trace.
    pub fn note(&mut self, line: &str) {
        self.tr(|| format!("script: {line}"));
    }

    /// Scripted: stops or resumes firing node `i`'s timers.
    pub fn block_timers(&mut self, i: usize, blocked: bool) {
        self.tr(|| format!("n{i}'s timers {}", if blocked { "blocked" } else { "run again" }));
        self.slots[i].timers_blocked = blocked;
        if !blocked {
            self.rearm(i);
        }
    }

    /// P6 on node `i`.
    pub fn release(&mut self, i: usize, campaign_again: bool) {
        let local = self.local(i);
        let Some(node) = self.slots[i].node.as_mut() else { return };
        node.release(local, campaign_again);
        self.stats.releases += 1;
        self.tr(|| format!("n{i} releases (campaign again: {campaign_again})"));
        self.drain(i);
    }

    // ----- network ------------------------------------------------------

    fn partitioned(&self, a: u16, b: u16) -> bool {
        self.partition.is_some_and(|g| g[usize::from(a)] != g[usize::from(b)])
    }

    /// Sends a packet through the scripted rules, then the random network.
    fn send(&mut self, p: Packet) {
        self.stats.sent += 1;
        let mut copies = 1u32;
        if let Some(rule) = self.rules.iter().find(|r| r.matches(&p)) {
            match rule.action {
                Action::Drop => {
                    self.stats.lost += 1;
                    self.tr(|| format!("dropped by script: {}", p.describe()));
                    return;
                }
                Action::Hold => {
                    self.tr(|| format!("held by script: {}", p.describe()));
                    self.held.push(p);
                    return;
                }
                Action::Copies(n) => copies = u32::from(n),
            }
        }
        let local = p.from == p.to;
        if !local && self.partitioned(p.from, p.to) {
            self.stats.lost += 1;
            return;
        }
        let faults =
            if self.healed || local { KindFaults::default() } else { self.cfg.net.kinds[p.kind().index()] };
        if self.net_rng.chance(faults.loss) {
            self.stats.lost += 1;
            return;
        }
        if self.net_rng.chance(faults.dup) {
            let extra = 1 + self.net_rng.below(2) as u32;
            copies += extra;
            self.stats.duplicated += u64::from(extra);
        }
        let incarnation = self.slots[usize::from(p.to)].incarnation;
        for _ in 0..copies {
            let net = &self.cfg.net;
            let delay = if local {
                self.net_rng.range(0, net.local_max)
            } else if self.net_rng.chance(faults.long) {
                self.stats.long_delayed += 1;
                self.net_rng.range(net.delay_max, net.long_max)
            } else {
                self.net_rng.range(net.delay_min, net.delay_max)
            };
            let at = self.now + delay;
            self.last_arrival = self.last_arrival.max(at);
            self.schedule(at, Ev::Deliver { packet: p, incarnation });
        }
    }

    /// Delivers the held packets that `pred` selects at true time `at`.
    pub fn release_held(&mut self, at: u64, mut pred: impl FnMut(&Packet) -> bool) -> usize {
        let held = std::mem::take(&mut self.held);
        let (go, stay): (Vec<Packet>, Vec<Packet>) = held.into_iter().partition(|p| pred(p));
        self.held = stay;
        let when = fmt_time(at.max(self.now));
        for p in &go {
            self.tr(|| format!("released by script, arrives at {when}: {}", p.describe()));
            let incarnation = self.slots[usize::from(p.to)].incarnation;
            self.schedule(at.max(self.now), Ev::Deliver { packet: *p, incarnation });
        }
        go.len()
    }

    fn deliver(&mut self, p: Packet, incarnation: u32) -> Result<(), Violation> {
        let to = usize::from(p.to);
        let (up, paused_until, current) = {
            let slot = &self.slots[to];
            (slot.node.is_some(), slot.paused_until, slot.incarnation)
        };
        if !up {
            self.stats.to_down_node += 1;
            self.tr(|| format!("lost, n{to} is down: {}", p.describe()));
            return Ok(());
        }
        if self.now < paused_until {
            self.schedule(paused_until, Ev::Deliver { packet: p, incarnation });
            return Ok(());
        }
        if current != incarnation {
            self.stats.to_new_incarnation += 1;
        }
        match p.payload {
            Payload::Lease(msg) => {
                if p.kind().to_acceptor() && !self.healed && self.cfg.chaos.quarantine_edge > 0 {
                    let quarantined = self.slots[to]
                        .node
                        .as_ref()
                        .is_some_and(|n| n.acceptor().is_quarantined(self.local(to)));
                    if quarantined
                        && self.net_rng.chance(self.cfg.chaos.quarantine_edge)
                        && let Some(end) = self.quarantine_end(to)
                    {
                        // Mostly right at the end, sometimes a little after.
                        let at = end + self.net_rng.below(MS).min(self.net_rng.below(MS));
                        self.tr(|| format!("held until the quarantine ends: {}", p.describe()));
                        self.schedule(at, Ev::Deliver { packet: p, incarnation });
                        return Ok(());
                    }
                }
                let local = self.local(to);
                self.tr(|| format!("deliver {}", p.describe()));
                let before = self.slots[to].node.as_ref().map_or(0, |n| n.held_counter());
                if let Some(node) = self.slots[to].node.as_mut() {
                    node.handle_message(NodeId(p.from), msg, local);
                }
                self.observe_counter(to, before);
                self.drain(to);
                if !self.healed && self.slots[to].crash_after == Some(p.kind()) {
                    self.slots[to].crash_after = None;
                    self.crash(to);
                    self.restart(to);
                }
            }
            Payload::StoreReq { request, incarnation: sender } => {
                if p.from == p.to && sender != self.slots[to].incarnation {
                    return Ok(()); // A local write dies with its process.
                }
                if self.cfg.split_primary_check && checks_primary(&request.op) {
                    // The broken store: the check is one transaction...
                    if let Some((id, _)) = self.slots[to].store.primary() {
                        let reply = Err(StoreReject::PrimaryExists { id });
                        self.tr(|| format!("replica n{to} checks {}: {reply:?}", p.describe()));
                        self.answer(p, request, sender, reply);
                    } else {
                        // ... and the write another, after other events.
                        let gap = self.store_rng.range(0, 2 * self.cfg.net.delay_max);
                        let replica_incarnation = self.slots[to].incarnation;
                        self.tr(|| {
                            format!("replica n{to} checks {}: no primary; writes later", p.describe())
                        });
                        self.schedule(self.now + gap, Ev::StoreWrite { packet: p, replica_incarnation });
                    }
                    return Ok(());
                }
                let reply = self.execute_from(to, p.from, request.op)?;
                self.tr(|| format!("replica n{to} executes {}: {reply:?}", p.describe()));
                self.answer(p, request, sender, reply);
            }
            Payload::StoreReply { id, reply, incarnation: asked, .. } => {
                let (local, wall) = (self.local(to), self.wall_ms(to));
                self.tr(|| format!("deliver {}", p.describe()));
                let current = self.slots[to].incarnation;
                self.slots[to].wall_high_ms = self.slots[to].wall_high_ms.max(wall);
                let before = self.slots[to].node.as_ref().map_or(0, |n| n.held_counter());
                let Some(node) = self.slots[to].node.as_mut() else { return Ok(()) };
                node.handle_store_reply(NodeId(p.from), id, reply, local, wall);
                let after = node.held_counter();
                self.note_counter(before, after);
                let node = self.slots[to].node.as_ref().expect("handled above");
                let refused = matches!(reply, Err(StoreReject::PrimaryExists { .. }));
                // Check 8: one PrimaryExists answer to a request of this very
                // process, late or not, is enough for a deferring node to yield.
                let ignored = refused
                    && asked == current
                    && node.config().mode == Mode::Deferring
                    && node.yielded_to().is_none();
                self.drain(to);
                if ignored {
                    return Err(self.violation(
                        ViolationKind::IgnoredPrimary,
                        format!(
                            "deferring n{to} heard {reply:?} from replica n{} (request #{id:x} of this \
                             process) and has not yielded",
                            p.from
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Replica `p.to`'s answer to request `p`, on its way back.
    fn answer(&mut self, p: Packet, request: StoreRequest, incarnation: u32, reply: StoreReply) {
        if matches!(reply, Err(StoreReject::PrimaryExists { .. })) {
            self.stats.primary_refusals += 1;
        }
        let op = OpKind::of(&request.op);
        let payload = Payload::StoreReply { id: request.id, reply, incarnation, op };
        self.send(Packet { from: p.to, to: p.from, payload, sent_at: self.now });
    }

    /// The write half of a checked operation behind the two-transaction
    /// wrapper: performed without the check, logged as the checked operation
    /// it stands for.
    fn store_write(&mut self, p: Packet, replica_incarnation: u32) -> Result<(), Violation> {
        let to = usize::from(p.to);
        let Payload::StoreReq { request, incarnation: sender } = p.payload else { return Ok(()) };
        if self.slots[to].node.is_none() || self.slots[to].incarnation != replica_incarnation {
            self.tr(|| format!("replica n{to} died before writing {}", p.describe()));
            return Ok(());
        }
        let unchecked = match request.op {
            StoreOp::Load { fence, .. } => StoreOp::Load { fence, check_primary: false },
            StoreOp::Save { window_end_ms, fence, .. } => {
                StoreOp::Save { window_end_ms, fence, check_primary: false }
            }
            other => other,
        };
        let reply = self.execute_as(to, Some(p.from), unchecked, request.op)?;
        self.tr(|| format!("replica n{to} writes {}: {reply:?}", p.describe()));
        self.answer(p, request, sender, reply);
        Ok(())
    }

    /// Performs an operator's `op` on replica `r` (no plausibility checks:
    /// an operator's request), and runs checks 3 and 5.
    fn execute(&mut self, r: usize, op: StoreOp) -> Result<StoreReply, Violation> {
        self.execute_as(r, None, op, op)
    }

    /// Performs node `from`'s `op` on replica `r` at the replica's wall
    /// clock, B2's checks first, and runs checks 3, 5 and 11.
    fn execute_from(&mut self, r: usize, from: u16, op: StoreOp) -> Result<StoreReply, Violation> {
        self.execute_as(r, Some(from), op, op)
    }

    /// Performs `perform` on replica `r` (for node `from`, whose operations
    /// pass B2's checks first at the replica's wall clock), logs it as `op`
    /// (what the caller asked for), and runs checks 3, 5 and 11.
    fn execute_as(
        &mut self,
        r: usize,
        from: Option<u16>,
        perform: StoreOp,
        op: StoreOp,
    ) -> Result<StoreReply, Violation> {
        let fail = if self.healed { 0 } else { self.cfg.chaos.store_fail };
        let draw = self.store_rng.below(u64::from(PPM));
        let before = StoreMark::of(&self.slots[r].store);
        let wall = self.wall_ms(r);
        let reply = if draw < u64::from(fail / 2) {
            Err(StoreReject::Failed)
        } else {
            let reply = match from {
                Some(from) => self.slots[r].store.execute_from(perform, NodeId(from), wall),
                None => self.slots[r].store.execute(perform),
            };
            if reply == Err(StoreReject::Implausible) {
                self.stats.implausible += 1;
                // Check 11: a replica refuses only a faulty member's values.
                if from != self.faulty {
                    return Err(self.violation(
                        ViolationKind::RefusedCorrect,
                        format!("replica n{r} (wall clock {wall} ms) refused {op:?} of correct n{from:?}"),
                    ));
                }
            } else {
                self.log_op(r, op, reply)?;
            }
            if draw < u64::from(fail) { Err(StoreReject::Failed) } else { reply }
        };
        let store = &self.slots[r].store;
        self.stats.max_fence_counter = self.stats.max_fence_counter.max(store.fence().counter);
        let ahead = store.window_end_ms().saturating_sub(wall);
        if ahead > self.stats.max_window_ahead_ms && matches!(perform, StoreOp::Save { .. }) && reply.is_ok()
        {
            self.stats.max_window_ahead_ms = ahead;
        }
        let after = StoreMark::of(&self.slots[r].store);
        before.check_growth(&after).map_err(|e| {
            self.violation(ViolationKind::StoreWentDown, format!("replica n{r}: {e} after {op:?}"))
        })?;
        Ok(reply)
    }

    /// Writes what replica `r` performed into its log, and runs check 5: a
    /// checked load or save that succeeds while the log has a registration
    /// standing (returned, and not cleared since) is a second writer.
    fn log_op(&mut self, r: usize, op: StoreOp, reply: StoreReply) -> Result<(), Violation> {
        let now = self.now;
        let log = &mut self.slots[r].log;
        let before = log.registered();
        log.record(now, op, reply);
        if checks_primary(&op)
            && reply.is_ok()
            && let Some((id, tag, since)) = before
        {
            let recent = log.describe();
            return Err(self.violation(
                ViolationKind::CheckedWriteAfterRegistration,
                format!(
                    "replica n{r} performed {op:?} ({reply:?}) after the registration ({id}, {tag}) \
                     returned there at {}; the replica's log:\n{recent}",
                    fmt_time(since)
                ),
            ));
        }
        if OpKind::of(&op) == OpKind::Admin && log.registered() != before {
            if matches!(op, StoreOp::ClearPrimary { .. }) {
                self.stats.clears += 1;
                self.reg_quorum_since = None;
            }
            let holding = self.slots.iter().filter(|s| s.log.registered().is_some()).count();
            if holding < usize::from(majority(self.cfg.nodes)) {
                self.reg_quorum_since = None;
            } else if self.reg_quorum_since.is_none() {
                self.reg_quorum_since = Some(now);
            }
        }
        Ok(())
    }

    // ----- clients ------------------------------------------------------

    fn client(&mut self) -> Result<(), Violation> {
        let n = self.slots.len() as u64;
        let i = if self.client_rng.chance(PPM / 2) {
            usize::from(self.last_server)
        } else {
            self.client_rng.below(n) as usize
        };
        let max = self.cfg.node.oracle.max_logical;
        let count = match self.client_rng.below(1000) {
            0..900 => self.client_rng.range(1, 100) as u32,
            900..980 => self.client_rng.range(101, u64::from(max / 16).max(101)) as u32,
            980..996 => self.client_rng.range(1, u64::from(max - 1)) as u32,
            996..998 => 0,
            _ => max + self.client_rng.below(3) as u32,
        };
        self.get_ts(i, count, true)
    }

    /// A client asks node `i` for `count` timestamps, following one
    /// `NotLeader` hint; runs check 2 on what it gets.
    pub fn get_ts(&mut self, i: usize, count: u32, follow: bool) -> Result<(), Violation> {
        if self.now < self.slots[i].paused_until {
            return Ok(());
        }
        let local = self.local(i);
        let Some(node) = self.slots[i].node.as_mut() else { return Ok(()) };
        let result = node.get_ts(count, local);
        self.drain(i);
        match result {
            Ok(ts) => self.check_ts(i, ts, count),
            Err(GetTsError::NotLeader { leader: Some(l) }) if follow && usize::from(l.0) != i => {
                self.stats.refused += 1;
                self.get_ts(usize::from(l.0), count, false)
            }
            Err(_) => {
                self.stats.refused += 1;
                Ok(())
            }
        }
    }

    /// Check 2 for a range handed out by node `i`.
    fn check_ts(&mut self, i: usize, ts: Timestamp, count: u32) -> Result<(), Violation> {
        let max = self.cfg.node.oracle.max_logical;
        if count == 0 || count >= max || ts.logical < count || ts.logical >= max {
            return Err(self.violation(
                ViolationKind::BadRange,
                format!("n{i} answered a request for {count} with {ts:?} (max logical {max})"),
            ));
        }
        let issued = Issued { at: self.now, node: i as u16, last: ts.to_u64(), count };
        if let Some(prev) = self.issued.last()
            && issued.first() <= prev.last
        {
            return Err(
                self.violation(ViolationKind::TimestampBack, format!("{issued}, but before that {prev}"))
            );
        }
        // Check 11: B3, physical within the ahead bound of the highest wall
        // clock reading this leader's oracle was given.
        let ahead = ts.physical_ms.saturating_sub(self.wall_ms(i));
        self.stats.max_ahead_ms = self.stats.max_ahead_ms.max(ahead);
        let bound = self.slots[i].wall_high_ms + self.cfg.node.oracle.max_ahead_ms;
        if ts.physical_ms > bound {
            return Err(self.violation(
                ViolationKind::TooFarAhead,
                format!("{issued}: physical {} ms is beyond the ahead bound {bound} ms", ts.physical_ms),
            ));
        }
        let window = self.quorum_window_ms();
        if ts.physical_ms >= window {
            return Err(self.violation(
                ViolationKind::BeyondWindow,
                format!("{issued}, but the window saved on a quorum ends at {window} ms"),
            ));
        }
        self.tr(|| format!("client gets {issued}"));
        self.stats.timestamps += 1;
        self.issued.push(issued);
        Ok(())
    }

    // ----- faults -------------------------------------------------------

    fn chaos(&mut self, kind: ChaosKind) {
        if self.healed {
            return;
        }
        let n = self.slots.len();
        let c = &self.cfg.chaos;
        let (down_max, partition_max, pause_max, stall_max) =
            (c.down_max, c.partition_max, c.pause_max, c.stall_max);
        let i = self.chaos_rng.below(n as u64) as usize;
        match kind {
            ChaosKind::Crash => {
                if self.slots[i].node.is_some() {
                    self.crash(i);
                    self.schedule_restart(i, down_max);
                }
            }
            ChaosKind::CrashMany => {
                let k = self.chaos_rng.range(u64::from(majority(self.cfg.nodes)), n as u64) as usize;
                let mut order: Vec<usize> = (0..n).collect();
                for j in (1..n).rev() {
                    order.swap(j, self.chaos_rng.below(j as u64 + 1) as usize);
                }
                let together = self.chaos_rng.chance(PPM / 2).then(|| self.chaos_rng.range(0, down_max));
                self.tr(|| format!("{k} nodes crash at once"));
                for &j in &order[..k] {
                    if self.slots[j].node.is_some() {
                        self.crash(j);
                        match together {
                            Some(d) => {
                                let incarnation = self.slots[j].incarnation;
                                self.schedule(self.now + d, Ev::Restart { node: j as u16, incarnation });
                            }
                            None => self.schedule_restart(j, down_max),
                        }
                    }
                }
            }
            ChaosKind::Partition => {
                let mut groups = [0u8; 8];
                if self.chaos_rng.chance(PPM / 2) {
                    groups[i] = 1;
                } else {
                    for g in groups.iter_mut().take(n) {
                        *g = self.chaos_rng.below(2) as u8;
                    }
                }
                self.partition = Some(groups);
                self.partition_generation += 1;
                self.stats.partitions += 1;
                let generation = self.partition_generation;
                let at = self.now + self.chaos_rng.range(MS, partition_max);
                self.schedule(at, Ev::PartitionEnd { generation });
                self.tr(|| format!("partition {:?}", &groups[..n]));
            }
            ChaosKind::Pause => {
                let until = self.now + self.chaos_rng.range(0, pause_max);
                self.slots[i].paused_until = until;
                self.stats.pauses += 1;
                self.tr(|| format!("n{i} pauses until {}", fmt_time(until)));
            }
            ChaosKind::Stall => {
                let until = self.now + self.chaos_rng.range(0, stall_max);
                self.slots[i].stalled_until = until;
                self.stats.pauses += 1;
                self.tr(|| format!("n{i}'s timers stall until {}", fmt_time(until)));
            }
            ChaosKind::Release => {
                let j = (0..n).find(|&j| self.lease(j).is_some()).unwrap_or(i);
                if self.slots[j].node.is_some() && self.now >= self.slots[j].paused_until {
                    let again = self.chaos_rng.chance(PPM / 100 * 85);
                    self.release(j, again);
                    if !again {
                        // Released to shut down.
                        self.crash(j);
                        self.schedule_restart(j, down_max);
                    }
                }
            }
            ChaosKind::Rate => {
                let ppm = draw_ppm(&mut self.chaos_rng, self.cfg.node.lease.drift_ppm);
                let now = self.now;
                self.slots[i].clock.set_rate(now, ppm);
                self.rearm(i);
                self.tr(|| format!("n{i}'s clock now runs at {ppm:+} ppm"));
            }
            ChaosKind::Hold | ChaosKind::OneWay => {
                let to = (i + 1 + self.chaos_rng.below(n as u64 - 1) as usize) % n;
                let (action, max) = match kind {
                    ChaosKind::Hold => (Action::Hold, self.cfg.chaos.hold_max),
                    _ => (Action::Drop, self.cfg.chaos.one_way_max),
                };
                let lease_kinds = [
                    Kind::Prepare,
                    Kind::Promise,
                    Kind::Rejected,
                    Kind::Accept,
                    Kind::Accepted,
                    Kind::LearnChosen,
                    Kind::Release,
                ];
                let kind = self.chaos_rng.chance(PPM / 4 * 3).then(|| self.chaos_rng.pick(&lease_kinds));
                let rule = Rule { from: Some(i as u16), to: Some(to as u16), kind, op: None, action };
                let at = self.now + self.chaos_rng.range(MS, max);
                self.rules.push(rule);
                self.schedule(at, Ev::RuleEnd { rule });
                self.tr(|| format!("link trouble until {}: {rule:?}", fmt_time(at)));
            }
            ChaosKind::CrashAfter => {
                let kind = if self.chaos_rng.chance(PPM / 2) { Kind::Accept } else { Kind::Prepare };
                self.slots[i].crash_after = Some(kind);
                self.tr(|| format!("n{i} will crash right after its next {kind:?}"));
            }
            ChaosKind::Wall => {
                // Steps back and forth, but every wall clock stays within
                // WALL_SKEW_MS of true time: a correct cluster's clocks
                // agree within the skew allowance (B2), and a new leader
                // starts within the ahead bound of its own (B3).
                let step = match self.chaos_rng.below(10) {
                    0..5 => {
                        self.chaos_rng.range(1, 1_000) as i64
                            * if self.chaos_rng.chance(PPM / 2) { 1 } else { -1 }
                    }
                    5..8 => -(self.chaos_rng.range(1, 2 * WALL_SKEW_MS) as i64),
                    _ => self.chaos_rng.range(1, 2 * WALL_SKEW_MS) as i64,
                };
                let skew = WALL_SKEW_MS as i64;
                let before = self.slots[i].wall_offset_ms;
                self.slots[i].wall_offset_ms = (before + step).clamp(-skew, skew);
                let step = self.slots[i].wall_offset_ms - before;
                self.stats.wall_steps += 1;
                self.tr(|| format!("n{i}'s wall clock steps {step:+} ms"));
            }
        }
        let at = self.now + self.chaos_rng.gap(kind.mean(&self.cfg.chaos)).max(1);
        self.schedule(at, Ev::Chaos(kind));
    }

    // ----- the operator's migration (see the `migration` module) ---------

    fn d_p(&self) -> u64 {
        u64::try_from(self.cfg.node.lease.duration.as_nanos()).unwrap_or(u64::MAX)
    }

    /// The operator stops node `i` (gracefully, or kills it), configures it
    /// `mode`, and starts it again after a downtime, or once the clear is
    /// done if `hold`.
    fn operator_restart(&mut self, i: usize, mode: Mode, down_max: u64, hold: bool) {
        if self.slots[i].node.is_some() {
            if self.mig_rng.chance(PPM / 2) && self.now >= self.slots[i].paused_until {
                self.release(i, false);
            }
            self.crash(i);
        } else if hold {
            // Down already: the restart the faults scheduled is called off.
            self.slots[i].incarnation += 1;
        }
        self.slots[i].cfg.mode = mode;
        self.tr(|| format!("operator: n{i} stopped, to come back {}", mode.as_str()));
        if hold {
            self.operator.awaiting.push(i);
        } else {
            self.operator_start(i, down_max);
        }
    }

    fn operator_start(&mut self, i: usize, down_max: u64) {
        let down = if self.mig_rng.chance(PPM / 4) { 0 } else { self.mig_rng.range(0, down_max) };
        let incarnation = self.slots[i].incarnation;
        self.schedule(self.now + down, Ev::Restart { node: i as u16, incarnation });
    }

    /// Step `k` of the migration: `order[k]` is restarted as primary.
    fn migrate(&mut self, k: usize) {
        let Some(m) = self.cfg.migration.clone() else { return };
        if self.operator.next != k || k >= m.order.len() {
            return; // Carried out at the heal already.
        }
        self.operator.next = k + 1;
        self.stats.migrations += 1;
        let i = usize::from(m.order[k]);
        self.tr(|| format!("operator: migration step {k}: n{i} is restarted as primary"));
        self.operator_restart(i, Mode::Primary, m.down_max, false);
        if k + 1 < m.order.len() {
            self.schedule(self.now + m.gap, Ev::Migrate { k: k + 1 });
        } else if let Some(r) = m.rollback {
            self.schedule(r.at.max(self.now), Ev::Rollback);
        }
    }

    /// The rollback: every primary-mode node is stopped and configured
    /// deferring; the clear passes begin.
    fn rollback(&mut self) {
        let Some(m) = self.cfg.migration.clone() else { return };
        let Some(r) = m.rollback else { return };
        if self.operator.rolled_back {
            return;
        }
        self.operator.rolled_back = true;
        self.stats.rollbacks += 1;
        self.tr(|| "operator: rollback begins".into());
        if r.order == Order::ClearWhileRunning {
            self.operator.stop_pending = true;
            let at = self.now + self.mig_rng.range(0, 5 * self.d_p());
            self.schedule(at, Ev::RollbackStop);
        } else {
            for i in 0..self.slots.len() {
                if self.slots[i].cfg.mode == Mode::Primary {
                    let hold = r.order == Order::StopClearStart;
                    self.operator_restart(i, Mode::Deferring, m.down_max, hold);
                }
            }
        }
        let first = self.now + self.mig_rng.range(0, self.d_p());
        self.schedule(first, Ev::ClearPass);
    }

    /// The primaries that ran through the clear are restarted deferring.
    fn rollback_stop(&mut self) {
        if !std::mem::take(&mut self.operator.stop_pending) {
            return; // Done at the heal already.
        }
        let down_max = self.cfg.migration.as_ref().map_or(0, |m| m.down_max);
        self.tr(|| "operator: the primaries are restarted deferring".into());
        for i in 0..self.slots.len() {
            if self.slots[i].cfg.mode == Mode::Primary {
                self.operator_restart(i, Mode::Deferring, down_max, false);
            }
        }
    }

    /// One pass of `leasetso primary clear`: the exact `(id, tag)` each
    /// reachable replica holds is cleared there (refused while that node
    /// serves as primary). Once no replica holds one, the nodes stopped for
    /// the rollback come back. Repeated every lease period to the end.
    fn clear_pass(&mut self) {
        let mut standing = false;
        for r in 0..self.slots.len() {
            let Some((id, tag)) = self.slots[r].store.primary() else { continue };
            standing = true;
            if self.slots[r].node.is_none() {
                continue; // Unreachable until it is back.
            }
            let p = usize::from(id.0);
            let local = self.local(p);
            let serving = self.slots[p]
                .node
                .as_ref()
                .is_some_and(|n| n.config().mode == Mode::Primary && n.is_serving(local));
            if serving {
                self.tr(|| format!("operator: clear on n{r} refused: n{p} serves as primary"));
                continue;
            }
            let at = self.now + self.mig_rng.range(0, 2 * self.cfg.net.delay_max);
            self.schedule(at, Ev::ClearReplica { replica: r as u16, id, tag });
        }
        if !standing && !self.operator.awaiting.is_empty() {
            let down_max = self.cfg.migration.as_ref().map_or(0, |m| m.down_max);
            for i in std::mem::take(&mut self.operator.awaiting) {
                self.operator_start(i, down_max);
            }
        }
        self.schedule(self.now + self.d_p(), Ev::ClearPass);
    }

    /// The operator's `ClearPrimary(id, tag)` reaches replica `r`.
    fn clear_replica(&mut self, r: usize, id: NodeId, tag: Ballot) -> Result<(), Violation> {
        if self.slots[r].node.is_none() {
            return Ok(());
        }
        let reply = self.execute(r, StoreOp::ClearPrimary { id, tag })?;
        self.tr(|| format!("operator: ClearPrimary({id}, {tag}) on replica n{r}: {reply:?}"));
        Ok(())
    }

    /// At the heal, what is left of the plan happens at once (the heal then
    /// starts every node that is down, in its configured mode).
    fn finish_plan(&mut self) {
        let Some(m) = self.cfg.migration.clone() else { return };
        while self.operator.next < m.order.len() {
            let i = usize::from(m.order[self.operator.next]);
            self.operator.next += 1;
            self.stats.migrations += 1;
            self.crash(i);
            self.slots[i].cfg.mode = Mode::Primary;
        }
        let started = self.operator.rolled_back;
        let pending = !started || std::mem::take(&mut self.operator.stop_pending);
        if m.rollback.is_some() && pending {
            for i in 0..self.slots.len() {
                if self.slots[i].cfg.mode == Mode::Primary {
                    self.crash(i);
                    self.slots[i].cfg.mode = Mode::Deferring;
                }
            }
            if !started {
                self.operator.rolled_back = true;
                self.stats.rollbacks += 1;
                self.schedule(self.now, Ev::ClearPass);
            }
        }
        self.operator.awaiting.clear();
    }

    fn schedule_restart(&mut self, i: usize, down_max: u64) {
        let down = if self.chaos_rng.chance(PPM / 4) { 0 } else { self.chaos_rng.range(0, down_max) };
        let incarnation = self.slots[i].incarnation;
        self.schedule(self.now + down, Ev::Restart { node: i as u16, incarnation });
    }

    /// The network heals for good: no more faults, every node up, nothing
    /// paused. The quiet tail starts once the last packet the faulty network
    /// delayed has arrived.
    pub fn heal(&mut self) {
        self.finish_plan();
        self.healed = true;
        self.partition = None;
        self.rules.clear();
        // What links held back is lost: the healed network starts clean.
        self.stats.lost += self.held.len() as u64;
        self.held.clear();
        for i in 0..self.slots.len() {
            let slot = &mut self.slots[i];
            slot.crash_after = None;
            slot.paused_until = 0;
            slot.stalled_until = 0;
            if slot.timers_blocked {
                self.block_timers(i, false);
            }
            self.restart(i);
        }
        // A node restarted here is still recovering until its quarantine
        // ends (A4): "nothing crashes" starts counting from then.
        let recovered = (0..self.slots.len()).filter_map(|i| self.quarantine_end(i)).max().unwrap_or(0);
        self.quiet_since = self.now.max(self.last_arrival).max(recovered);
        let quiet = fmt_time(self.quiet_since);
        self.tr(|| format!("the network heals; quiet from {quiet}"));
    }
}

/// Whether `op` is a load or save that checks for a primary (deferring mode).
fn checks_primary(op: &StoreOp) -> bool {
    matches!(op, StoreOp::Load { check_primary: true, .. } | StoreOp::Save { check_primary: true, .. })
}

/// A clock rate error within the drift bound `drift_ppm`, kept 1 ppm inside it
/// (see the `clock` module), favouring the extremes where the timing rules
/// are tight.
pub fn draw_ppm(rng: &mut Rng, drift_ppm: u32) -> i64 {
    let bound = i64::from(drift_ppm.saturating_sub(1));
    match rng.below(5) {
        0 | 1 => bound,
        2 | 3 => -bound,
        _ => rng.range(0, 2 * bound as u64) as i64 - bound,
    }
}

#[cfg(test)]
mod tests {
    use leasetso_core_variants::{StoreOp, Timestamp};

    use super::*;
    use crate::sim::config::{self, Variant};

    fn world_with_window(window_end_ms: u64) -> World {
        let mut w = World::new(config::random(0, Variant::Correct), Trace::Off);
        for s in &mut w.slots {
            let save =
                StoreOp::Save { window_end_ms, fence: Ballot::new(1, 1, NodeId(0)), check_primary: false };
            assert!(s.store.execute(save).is_ok());
        }
        w
    }

    fn ts(physical_ms: u64, logical: u32) -> Timestamp {
        Timestamp { physical_ms, logical }
    }

    #[test]
    fn check_two_rejects_every_kind_of_bad_range() {
        let mut w = world_with_window(1_000);
        assert_eq!(w.check_ts(0, ts(500, 10), 10), Ok(()));
        let kind = |r: Result<(), Violation>| r.err().map(|v| v.kind);
        // The range 11..=20 starts right after 10: fine. Then one that overlaps.
        assert_eq!(kind(w.check_ts(1, ts(500, 20), 10)), None);
        assert_eq!(kind(w.check_ts(1, ts(500, 25), 6)), Some(ViolationKind::TimestampBack));
        assert_eq!(kind(w.check_ts(1, ts(500, 20), 1)), Some(ViolationKind::TimestampBack), "a repeat");
        assert_eq!(kind(w.check_ts(1, ts(499, 100), 1)), Some(ViolationKind::TimestampBack));
        // Logical 0 or a range reaching into the previous millisecond.
        assert_eq!(kind(w.check_ts(0, ts(600, 3), 4)), Some(ViolationKind::BadRange));
        assert_eq!(kind(w.check_ts(0, ts(600, 3), 0)), Some(ViolationKind::BadRange));
        // At or beyond the window saved on a quorum.
        assert_eq!(kind(w.check_ts(0, ts(1_000, 1), 1)), Some(ViolationKind::BeyondWindow));
        assert_eq!(kind(w.check_ts(0, ts(999, 1), 1)), None);
    }

    #[test]
    fn the_quorum_window_is_the_majority_th_largest() {
        let mut w = world_with_window(100);
        let n = w.slots.len();
        // Only a minority saved further: the quorum window stays.
        for s in w.slots.iter_mut().take(usize::from(majority(n as u16)) - 1) {
            let save = StoreOp::Save {
                window_end_ms: 900,
                fence: Ballot::new(1, 1, NodeId(0)),
                check_primary: false,
            };
            assert!(s.store.execute(save).is_ok());
        }
        assert_eq!(w.quorum_window_ms(), 100);
    }

    #[test]
    fn check_three_sees_a_window_or_fence_go_down() {
        let before = StoreMark { window_end_ms: 10, fence: Ballot::new(2, 1, NodeId(0)) };
        assert!(before.check_growth(&before).is_ok());
        let lower_window = StoreMark { window_end_ms: 9, ..before };
        assert!(before.check_growth(&lower_window).is_err());
        let lower_fence = StoreMark { fence: Ballot::new(1, 9, NodeId(4)), ..before };
        assert!(before.check_growth(&lower_fence).is_err());
        let higher = StoreMark { fence: Ballot::new(3, 1, NodeId(1)), ..before };
        assert!(before.check_growth(&higher).is_ok());
    }
}
