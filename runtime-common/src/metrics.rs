//! The Prometheus text of a server's metrics (`/metrics` of the metrics
//! listener), rendered at scrape time.
//!
//! Nothing here runs on the GetTS path: the connections, the driver and the
//! store thread only add to atomics ([`crate::stats`]); a scrape reads them,
//! takes the node's status once (one lock) and encodes everything with
//! `prometheus-client`'s encoder. Names follow PD's where the meaning is the
//! same (`pd_server_handle_tso_duration_seconds` is
//! `leasetso_server_handle_tso_duration_seconds`), with the `leasetso_`
//! prefix. Every metric has HELP text; counters end in `_total`.

use std::sync::atomic::Ordering;

use leasetso_core::{NodeId, Role};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::clock::wall_ms;
use crate::kit::Kit;
use crate::quiet;
use crate::stats::{
    BATCH_BUCKETS, DoorKind, HANDLE_BOUNDS_US, Histogram, STORE_OPS, STORE_RESULTS, TsResult, batch_bound,
};

/// The content type of OpenMetrics text, for scrapers that ask for it.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The content type of Prometheus's classic text format, for the rest.
pub const CLASSIC: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Every metric of `kit`'s server now, as OpenMetrics text (`openmetrics`)
/// or in Prometheus's classic text format, which `promtool` and older
/// scrapers read. Returns the text and its content type.
pub fn render(kit: &Kit, openmetrics: bool) -> (String, &'static str) {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Snapshot::take(kit)));
    let mut out = String::with_capacity(16 * 1024);
    // Writing to a `String` cannot fail; an encoder error would be a bug in
    // a metric's name, caught by the tests.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    if openmetrics { (out, OPENMETRICS) } else { (classic(&out), CLASSIC) }
}

/// OpenMetrics text in Prometheus's classic format: a counter family is
/// named with its `_total` in HELP and TYPE, as its samples are; an empty
/// label set is left out; there is no `# EOF`.
fn classic(om: &str) -> String {
    let mut out = String::with_capacity(om.len());
    let mut lines = om.lines().peekable();
    while let Some(line) = lines.next() {
        if line == "# EOF" {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            let counter = lines.peek().is_some_and(|t| t.starts_with("# TYPE ") && t.ends_with(" counter"));
            let name = if counter { format!("{name}_total") } else { name.to_string() };
            out.push_str(&format!("# HELP {name} {help}\n"));
            if let Some(t) = lines.next() {
                let kind = t.rsplit(' ').next().unwrap_or("untyped");
                out.push_str(&format!("# TYPE {name} {kind}\n"));
            }
            continue;
        }
        out.push_str(&line.replacen("{} ", " ", 1));
        out.push('\n');
    }
    out
}

/// A sample's labels.
type Labels = Vec<(&'static str, String)>;
/// One sample of a family: its labels and its value.
type Sample = (Labels, f64);
/// One histogram of a family: its labels, its non-cumulative buckets (upper
/// bound, count), its sum and its count.
type HistogramSample = (Labels, Vec<(f64, u64)>, f64, u64);

/// What a scrape read, owned, so that the encoder (which wants a `'static`
/// collector) needs nothing of the server.
#[derive(Debug)]
struct Snapshot {
    families: Vec<Family>,
}

#[derive(Debug)]
struct Family {
    name: &'static str,
    help: &'static str,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Counter(Vec<Sample>),
    Gauge(Vec<Sample>),
    /// Per label set: the non-cumulative buckets (upper bound, count), the
    /// sum and the count.
    Histogram(Vec<HistogramSample>),
}

fn counter(name: &'static str, help: &'static str, samples: Vec<Sample>) -> Family {
    Family { name, help, kind: Kind::Counter(samples) }
}

fn gauge(name: &'static str, help: &'static str, samples: Vec<Sample>) -> Family {
    Family { name, help, kind: Kind::Gauge(samples) }
}

fn one(v: f64) -> Vec<Sample> {
    vec![(Vec::new(), v)]
}

/// A histogram's samples from atomic buckets whose upper bounds are
/// `bound(i)`, scaled into the metric's unit by `scale`.
fn buckets<const N: usize>(
    h: &Histogram<N>,
    bound: impl Fn(usize) -> f64,
    per: f64,
) -> (Vec<(f64, u64)>, f64, u64) {
    let (counts, sum) = h.read();
    // Divided, not multiplied by the inverse: 5 / 1e6 prints as 0.000005.
    let buckets: Vec<(f64, u64)> = counts.iter().enumerate().map(|(i, &n)| (bound(i) / per, n)).collect();
    let count = counts.iter().sum();
    (buckets, sum as f64 / per, count)
}

fn time_bound(i: usize) -> f64 {
    HANDLE_BOUNDS_US.get(i).map_or(f64::MAX, |&us| us as f64)
}

impl Snapshot {
    fn take(kit: &Kit) -> Snapshot {
        let c = &kit.counters;
        let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed) as f64;
        let mut f = Vec::new();
        let doors = || DoorKind::ALL.iter().map(|&d| (d, &c.doors[d as usize]));

        // GetTS by door and result, and what it cost.
        let mut requests = Vec::new();
        for (d, s) in doors() {
            for r in TsResult::ALL {
                let labels = vec![("door", d.name().to_string()), ("result", r.name().to_string())];
                requests.push((labels, load(&s.requests[r as usize])));
            }
        }
        f.push(counter("leasetso_tso_requests", "GetTS requests answered, by door and result.", requests));
        f.push(counter(
            "leasetso_tso_timestamps",
            "Timestamps handed out, by door (the sum of the counts of successful GetTS).",
            doors().map(|(d, s)| (vec![("door", d.name().to_string())], load(&s.timestamps))).collect(),
        ));
        let batch_bound_inf = |i| if i + 1 >= BATCH_BUCKETS { f64::MAX } else { batch_bound(i) };
        f.push(Family {
            name: "leasetso_server_handle_tso_batch_size",
            help: "Timestamps per successful GetTS request, by door (PD: pd_server_handle_tso_batch_size).",
            kind: Kind::Histogram(
                doors()
                    .map(|(d, s)| {
                        let (b, sum, n) = buckets(&s.batch, batch_bound_inf, 1.0);
                        (vec![("door", d.name().to_string())], b, sum, n)
                    })
                    .collect(),
            ),
        });
        f.push(Family {
            name: "leasetso_server_handle_tso_duration_seconds",
            help: "Time a connection took to answer the GetTS requests of one read, by door \
                   (PD: pd_server_handle_tso_duration_seconds).",
            kind: Kind::Histogram(
                doors()
                    .map(|(d, s)| {
                        let (b, sum, n) = buckets(&s.handle, time_bound, 1e6);
                        (vec![("door", d.name().to_string())], fix_inf(b), sum, n)
                    })
                    .collect(),
            ),
        });

        // The node: role, lease, quarantine, physical time, window.
        let status = kit.node.status();
        let role = status.map(|s| s.role);
        f.push(gauge(
            "leasetso_role",
            "1 for the role this node has now (follower, syncing, leader, yielded), 0 for the others; \
             all 0 while the node is not built yet (restart-counter recovery).",
            [Role::Follower, Role::Syncing, Role::Leader, Role::Yielded]
                .iter()
                .map(|&r| (vec![("role", r.as_str().to_string())], f64::from(u8::from(role == Some(r)))))
                .collect(),
        ));
        f.push(gauge(
            "leasetso_is_leader",
            "1 while this node serves timestamps (role leader), else 0.",
            one(f64::from(u8::from(role == Some(Role::Leader)))),
        ));
        f.push(gauge(
            "leasetso_leader_node",
            "The node (1-based) this node believes serves; 0 if it knows of none.",
            one(status.and_then(|s| s.leader).map_or(0.0, |n| f64::from(n.0) + 1.0)),
        ));
        f.push(gauge(
            "leasetso_lease_left_seconds",
            "What is left of the live lease this node holds or knows of, on its own clock.",
            one(status.map_or(0.0, |s| s.lease_left.as_secs_f64())),
        ));
        f.push(gauge(
            "leasetso_quarantine_left_seconds",
            "What is left of this node's acceptor quarantine after its start.",
            one(status.map_or(0.0, |s| s.quarantine_left.as_secs_f64())),
        ));
        let serving = role == Some(Role::Leader);
        let physical = status.map_or(0, |s| s.current.physical_ms);
        f.push(gauge(
            "leasetso_tso_physical_seconds",
            "The physical part of the last timestamp this node handed out, in Unix seconds with ms \
             precision (0 unless it serves).",
            one(physical as f64 / 1000.0),
        ));
        let gap = if serving { (physical as f64 - wall_ms() as f64) / 1000.0 } else { 0.0 };
        f.push(gauge(
            "leasetso_cluster_tso_gap_seconds",
            "Physical time minus this node's wall clock while it serves: how far timestamps run ahead of \
             (positive) or behind (negative) real time (PD: pd_cluster_tso_gap_millionseconds, in ms).",
            one(gap),
        ));
        f.push(gauge(
            "leasetso_window_end_seconds",
            "The saved window's end in Unix seconds: no timestamp reaches it before a new save (0 unless serving).",
            one(status.map_or(0, |s| s.window_end_ms) as f64 / 1000.0),
        ));
        f.push(counter(
            "leasetso_elections_started",
            "Elections this node started (a Prepare of a new ballot while holding no lease).",
            one(load(&c.elections_started)),
        ));
        f.push(counter(
            "leasetso_elections_won",
            "Elections this node won (a fresh lease).",
            one(load(&c.elections_won)),
        ));
        f.push(counter(
            "leasetso_elections_lost",
            "Elections this node started that ended without the lease (counted when the next one starts).",
            one(load(&c.elections_lost)),
        ));
        f.push(counter(
            "leasetso_leader_changes",
            "Changes of the leader this node knows of.",
            one(load(&c.leader_changes)),
        ));
        f.push(counter("leasetso_step_downs", "Times this node stopped serving.", one(load(&c.step_downs))));

        // The store.
        let store = &kit.store_health;
        let health = store.get();
        f.push(gauge(
            "leasetso_store_healthy",
            "1 while this node's store replica works, 0 while it fails (a full disk, I/O errors).",
            one(f64::from(u8::from(health.is_ok()))),
        ));
        f.push(gauge(
            "leasetso_store_health_code",
            "Why the replica fails: 0 ok, 1 no space, 2 writes refused, 3 I/O error, 4 corrupt data (as in status).",
            one(f64::from(health as u8)),
        ));
        let mut ops = Vec::new();
        for (o, op) in STORE_OPS.iter().enumerate() {
            for (r, result) in STORE_RESULTS.iter().enumerate() {
                let labels = vec![("op", (*op).to_string()), ("result", (*result).to_string())];
                ops.push((labels, load(&store.stats.ops[o][r])));
            }
        }
        f.push(counter(
            "leasetso_store_operations",
            "Operations on this node's store replica (its own and its peers'), by kind and result \
             (refused: a contract refusal such as a fence; failed: the disk).",
            ops,
        ));
        f.push(Family {
            name: "leasetso_store_operation_duration_seconds",
            help: "Time an operation on this node's store replica took (a save includes its fsync), by kind.",
            kind: Kind::Histogram(
                STORE_OPS
                    .iter()
                    .enumerate()
                    .map(|(o, op)| {
                        let (b, sum, n) = buckets(&store.stats.time[o], time_bound, 1e6);
                        (vec![("op", (*op).to_string())], fix_inf(b), sum, n)
                    })
                    .collect(),
            ),
        });

        // Peer links.
        if let Some(dir) = &kit.dir {
            let peers: Vec<NodeId> = (0..kit.nodes).map(NodeId).filter(|&p| p != kit.node_id).collect();
            let label = |p: NodeId| vec![("peer", (p.0 + 1).to_string())];
            f.push(gauge(
                "leasetso_peer_link_up",
                "1 while this node's outgoing link to the peer is up.",
                peers.iter().map(|&p| (label(p), f64::from(u8::from(dir.is_up(p))))).collect(),
            ));
            f.push(counter(
                "leasetso_peer_link_ups",
                "Times this node's outgoing link to the peer came up (reconnects are all but the first).",
                peers.iter().map(|&p| (label(p), dir.ups(p) as f64)).collect(),
            ));
        }

        // Connections.
        f.push(gauge(
            "leasetso_open_connections",
            "Client connections open now, by door.",
            doors().map(|(d, s)| (vec![("door", d.name().to_string())], load(&s.open))).collect(),
        ));
        f.push(gauge(
            "leasetso_max_connections",
            "The connection cap (--max-connections).",
            one(kit.limit.max() as f64),
        ));
        f.push(counter("leasetso_connections", "Client connections accepted.", one(load(&c.connections))));
        f.push(counter(
            "leasetso_refused_connections",
            "Client and peer connections refused, by cause (cap: at --max-connections; handshake_timeout: \
             no handshake within 5 s; client_tls, peer: refused at the TLS or peer handshake).",
            vec![
                (vec![("cause", "cap".into())], load(&c.refused_connections)),
                (vec![("cause", "handshake_timeout".into())], load(&c.handshake_timeouts)),
                (vec![("cause", "client_tls".into())], quiet::CLIENT_TLS_REFUSED.total() as f64),
                (vec![("cause", "peer".into())], quiet::PEER_REFUSED.total() as f64),
                (vec![("cause", "duplicate_node".into())], quiet::DUPLICATE_ID.total() as f64),
            ],
        ));
        f.push(counter(
            "leasetso_warnings",
            "Repeatable warnings, logged or held back by the rate limit, by kind.",
            quiet::ALL.iter().map(|q| (vec![("kind", q.what.to_string())], q.total() as f64)).collect(),
        ));
        f.push(counter(
            "leasetso_status_requests",
            "Status requests answered.",
            one(load(&c.status_requests)),
        ));
        f.push(gauge(
            "leasetso_node_info",
            "Always 1; its labels name this node, its cluster and the version.",
            vec![(
                vec![
                    ("node", (kit.node_id.0 + 1).to_string()),
                    ("cluster", kit.cluster_id.to_string()),
                    ("nodes", kit.nodes.to_string()),
                    ("version", env!("CARGO_PKG_VERSION").to_string()),
                ],
                1.0,
            )],
        ));
        f.extend(process());
        Snapshot { families: f }
    }
}

/// The last bucket of a time histogram is `+Inf` (the encoder's `f64::MAX`).
fn fix_inf(mut b: Vec<(f64, u64)>) -> Vec<(f64, u64)> {
    if let Some(last) = b.last_mut() {
        last.0 = f64::MAX;
    }
    b
}

/// The process metrics Prometheus's clients export, from `/proc/self`
/// (none where there is no `/proc`).
fn process() -> Vec<Family> {
    let mut f = Vec::new();
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return f };
    // Fields after the command's closing parenthesis: 3 state, ..., 14
    // utime, 15 stime, 22 starttime, 24 rss (1-based over the whole line).
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { return f };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<f64>().ok());
    // USER_HZ is 100 on every Linux the project runs on; pages are 4 KiB.
    let ticks = 100.0;
    if let (Some(u), Some(s)) = (field(14), field(15)) {
        f.push(counter(
            "process_cpu_seconds",
            "User and system CPU time spent, in seconds.",
            one((u + s) / ticks),
        ));
    }
    if let Some(rss) = field(24) {
        f.push(gauge("process_resident_memory_bytes", "Resident memory size in bytes.", one(rss * 4096.0)));
    }
    if let (Some(start), Ok(uptime)) = (field(22), std::fs::read_to_string("/proc/uptime")) {
        if let Some(up) = uptime.split_whitespace().next().and_then(|v| v.parse::<f64>().ok()) {
            let now = wall_ms() as f64 / 1000.0;
            let started = now - up + start / ticks;
            f.push(gauge(
                "process_start_time_seconds",
                "Start time of the process since the Unix epoch.",
                one(started),
            ));
        }
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        f.push(gauge("process_open_fds", "Open file descriptors.", one(fds.count() as f64)));
    }
    if let Some(max) = crate::limits::nofile() {
        f.push(gauge("process_max_fds", "The most file descriptors the process may open.", one(max as f64)));
    }
    f
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        for family in &self.families {
            let kind = match &family.kind {
                Kind::Counter(_) => MetricType::Counter,
                Kind::Gauge(_) => MetricType::Gauge,
                Kind::Histogram(_) => MetricType::Histogram,
            };
            let mut metric = encoder.encode_descriptor(family.name, family.help, None, kind)?;
            match &family.kind {
                Kind::Counter(samples) => {
                    for (labels, v) in samples {
                        metric.encode_family(labels)?.encode_counter::<NoLabelSet, _, u64>(v, None)?;
                    }
                }
                Kind::Gauge(samples) => {
                    for (labels, v) in samples {
                        metric.encode_family(labels)?.encode_gauge(v)?;
                    }
                }
                Kind::Histogram(sets) => {
                    for (labels, b, sum, count) in sets {
                        metric
                            .encode_family(labels)?
                            .encode_histogram::<NoLabelSet>(*sum, *count, b, None)?;
                    }
                }
            }
        }
        Ok(())
    }
}
