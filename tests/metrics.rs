//! The metrics listener with real processes: `/metrics` that `promtool`
//! accepts, counters that move by exactly the calls a test made, `/health`,
//! `/ready`, `/status.json` and the status page; in a cluster, role gauges
//! that agree with `status` across a kill -9 failover, and `/ready` that
//! turns 503 on a node cut off from its peers.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use leasetso_core::Role;
use leasetso_tests::harness::cluster::{Cluster, ClusterOptions, exclusive};
use leasetso_tests::{RawConn, ServerProcess, data_dir, http_get, metric};
use leasetso_tests::{eventually, metrics_addr};

fn scrape(addr: SocketAddr) -> String {
    let (code, body) = http_get(addr, "/metrics").expect("GET /metrics");
    assert_eq!(code, 200, "/metrics answered {code}: {body}");
    body
}

/// `promtool check metrics` on `text`, where promtool is installed.
fn promtool_accepts(text: &str) {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        eprintln!("skipped: promtool check metrics: promtool is not installed (Debian's prometheus package)");
        return;
    };
    use std::io::Write;
    child.stdin.take().expect("piped").write_all(text.as_bytes()).expect("write to promtool");
    let out = child.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_single_nodes_metrics_count_exactly_the_calls_made() {
    let dir = data_dir();
    let server = ServerProcess::try_start_runtime(
        leasetso_tests::Runtime::Smol,
        "127.0.0.1:0",
        dir.path(),
        &["--metrics", "127.0.0.1:0"],
    )
    .unwrap_or_else(|f| panic!("{f}"));
    server.wait_serving();
    let m = metrics_addr(&server.log().text());
    let before = scrape(m);
    promtool_accepts(&before);
    let ok = r#"door="native",result="ok""#;
    let invalid = r#"door="native",result="invalid""#;
    let count = |text: &str, labels| metric(text, "leasetso_tso_requests_total", labels).unwrap_or(0.0);
    let stamps =
        |text: &str| metric(text, "leasetso_tso_timestamps_total", r#"door="native""#).unwrap_or(0.0);

    let mut conn = RawConn::open(server.addr());
    let mut asked = 0u64;
    for i in 1..=37u32 {
        conn.get_ts(i).expect("GetTs").expect("served");
        asked += u64::from(i);
    }
    assert!(conn.get_ts(0).expect("GetTs(0)").is_err());
    let after = scrape(m);
    assert_eq!(count(&after, ok) - count(&before, ok), 37.0, "ok requests");
    assert_eq!(count(&after, invalid) - count(&before, invalid), 1.0, "invalid requests");
    assert_eq!(stamps(&after) - stamps(&before), asked as f64, "timestamps");
    let batches =
        |t: &str| metric(t, "leasetso_server_handle_tso_batch_size_count", r#"door="native""#).unwrap();
    assert_eq!(batches(&after) - batches(&before), 37.0, "one batch-size observation per served request");
    assert_eq!(metric(&after, "leasetso_role", r#"role="leader""#), Some(1.0));
    assert_eq!(metric(&after, "leasetso_store_healthy", ""), Some(1.0));
    assert_eq!(
        metric(&after, "leasetso_open_connections", r#"door="native""#),
        Some(1.0),
        "this test's connection"
    );
    promtool_accepts(&after);

    assert_eq!(http_get(m, "/health").unwrap(), (200, "ok\n".into()));
    let (code, ready) = http_get(m, "/ready").unwrap();
    assert_eq!((code, ready.as_str()), (200, "ready: leader\n"));
    let (code, json) = http_get(m, "/status.json").unwrap();
    assert_eq!(code, 200);
    for want in [r#""role":"leader""#, r#""cluster":["#, r#""store":{"health":"ok","ok":true}"#] {
        assert!(json.contains(want), "/status.json lacks {want}: {json}");
    }
    let (code, page) = http_get(m, "/").unwrap();
    assert!(code == 200 && page.contains("<title>leasetso</title>") && !page.contains("src=\"http"));
    assert_eq!(http_get(m, "/nothing").unwrap().0, 404);
    server.stop();
}

/// Every metric the Grafana dashboard and the alerting rules query exists
/// in a cluster node's `/metrics` (`contrib/check-metrics.py`), and
/// `promtool` accepts the rules and passes their unit tests.
fn contrib_queries_exist(metrics: SocketAddr) {
    let contrib = concat!(env!("CARGO_MANIFEST_DIR"), "/../contrib");
    let run = |program: &str, args: &[String]| match Command::new(program).args(args).output() {
        Ok(out) => assert!(
            out.status.success(),
            "{program} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => eprintln!("skipped: {program}: {e}"),
    };
    run(
        "python3",
        &[
            format!("{contrib}/check-metrics.py"),
            format!("http://{metrics}/metrics"),
            format!("{contrib}/grafana/leasetso.json"),
            format!("{contrib}/prometheus/alerts.yml"),
        ],
    );
    run("promtool", &["check".into(), "rules".into(), format!("{contrib}/prometheus/alerts.yml")]);
    run("promtool", &["test".into(), "rules".into(), format!("{contrib}/prometheus/alerts_test.yml")]);
}

#[test]
fn role_gauges_follow_a_failover_and_ready_fails_when_cut_off() {
    let _serial = exclusive();
    let opts = ClusterOptions {
        cluster_id: Some(5),
        extra_args: vec!["--metrics".into(), "127.0.0.1:0".into()],
        ..ClusterOptions::default()
    };
    let mut cluster = Cluster::start(3, opts);
    let addrs: Vec<SocketAddr> = (0..3).map(|i| metrics_addr(&cluster.log(i))).collect();
    let leader = cluster.wait_leader(Duration::from_secs(15));
    cluster.wait_serving(Duration::from_secs(15));
    let agree = |cluster: &Cluster, alive: &[usize]| {
        alive.iter().all(|&i| {
            let Ok(status) = cluster.status(i) else { return false };
            let Ok((200, text)) = http_get(addrs[i], "/metrics") else { return false };
            let gauge = metric(&text, "leasetso_role", r#"role="leader""#);
            gauge == Some(f64::from(u8::from(status.role == Role::Leader)))
        })
    };
    if !eventually(Duration::from_secs(5), || agree(&cluster, &[0, 1, 2])) {
        cluster.fail("the role gauges do not agree with status before the failover");
    }
    for &a in &addrs {
        promtool_accepts(&scrape(a));
    }
    contrib_queries_exist(addrs[0]);
    let changes = |i: usize| metric(&scrape(addrs[i]), "leasetso_leader_changes_total", "").unwrap_or(0.0);
    let survivors: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let before: Vec<f64> = survivors.iter().map(|&i| changes(i)).collect();
    cluster.kill(leader);
    let next = cluster
        .wait_leader_other_than(leader, Duration::from_secs(15))
        .unwrap_or_else(|| cluster.fail("no leader after the kill"));
    if !eventually(Duration::from_secs(5), || agree(&cluster, &survivors)) {
        cluster.fail("the role gauges do not agree with status after the failover");
    }
    assert_eq!(metric(&scrape(addrs[next]), "leasetso_is_leader", ""), Some(1.0));
    for (k, &i) in survivors.iter().enumerate() {
        assert!(changes(i) > before[k], "node {i} counted no leader change");
    }
    // Cut off: the last node alone, after its peers are gone.
    let alone = survivors.iter().copied().find(|&i| i != next).unwrap_or(next);
    assert_eq!(http_get(addrs[alone], "/ready").unwrap().0, 200, "a follower of a live leader is ready");
    for &i in &survivors {
        if i != alone {
            cluster.kill(i);
        }
    }
    let cut_off = eventually(Duration::from_secs(10), || {
        http_get(addrs[alone], "/ready").is_ok_and(|(code, _)| code == 503)
    });
    let (code, why) = http_get(addrs[alone], "/ready").unwrap();
    if !cut_off {
        cluster.fail(&format!("/ready of a node cut off from its peers: {code} {why}"));
    }
    assert!(why.contains("no leader known"), "{why}");
    assert_eq!(http_get(addrs[alone], "/health").unwrap().0, 200, "it still runs its loops");
}
