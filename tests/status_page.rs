//! The live status page (`/` of the metrics listener), loaded in headless
//! Chromium against a 3-node cluster under load: it names the leader, shows
//! every node and a non-empty rate chart, and after a kill -9 of the leader
//! a survivor's page names the new one. A screenshot is kept in the build's
//! temporary directory (`status-page.png`). Without Chromium (Debian's
//! `chromium`) the test prints `skipped: <reason>` and passes.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use leasetso_tests::harness::cluster::{Cluster, ClusterOptions, exclusive};
use leasetso_tests::metrics_addr;

/// Chromium, headless, with the flags this machine's closed network needs.
fn chromium(profile: &Path, extra: &[String], url: &str) -> Option<String> {
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            // Long enough for a few of the page's one-second polls.
            "--virtual-time-budget=6000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .output();
    match out {
        Ok(out) if out.status.success() => Some(String::from_utf8_lossy(&out.stdout).to_string()),
        Ok(out) => panic!("chromium {extra:?} {url}: {}", String::from_utf8_lossy(&out.stderr)),
        Err(e) => {
            eprintln!("skipped: the status page in Chromium: {e} (Debian's chromium package)");
            None
        }
    }
}

/// The text of the element with `id`, in a dumped DOM.
fn by_id<'a>(dom: &'a str, id: &str) -> Option<&'a str> {
    let start = dom.find(&format!("id=\"{id}\">"))? + id.len() + 6;
    dom[start..].split('<').next()
}

#[test]
fn the_status_page_shows_the_cluster_and_follows_a_failover() {
    if Command::new("chromium").arg("--version").output().is_err() {
        eprintln!("skipped: the status page in Chromium: chromium is not installed");
        return;
    }
    let _serial = exclusive();
    let profile = tempfile::tempdir().expect("a profile dir");
    let opts = ClusterOptions {
        extra_args: vec!["--metrics".into(), "127.0.0.1:0".into()],
        ..ClusterOptions::default()
    };
    let mut cluster = Cluster::start(3, opts);
    let leader = cluster.wait_leader(Duration::from_secs(15));
    cluster.wait_serving(Duration::from_secs(15));
    let pages: Vec<SocketAddr> = (0..3).map(|i| metrics_addr(&cluster.log(i))).collect();
    // A steady load, so that the chart has something to show.
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (client, stop) = (cluster.client(Duration::from_secs(10)), Arc::clone(&stop));
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let _ = client.get_ts_n(16);
                thread::sleep(Duration::from_millis(2));
            }
        })
    };
    thread::sleep(Duration::from_secs(1));

    let url = format!("http://{}/", pages[leader]);
    let Some(dom) = chromium(&profile.path().join("a"), &["--dump-dom".into()], &url) else { return };
    let named = format!("node {}", leader + 1);
    assert_eq!(by_id(&dom, "leader"), Some(named.as_str()), "the page names the leader:\n{dom}");
    let rows = dom.matches("<tr><td>node ").count();
    assert_eq!(rows, 3, "a row per node:\n{dom}");
    let rate = by_id(&dom, "rate").unwrap_or_default();
    assert!(rate.starts_with("now ") && !rate.contains("peak 0/s"), "an empty chart: {rate:?}");
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    chromium(
        &profile.path().join("b"),
        &["--window-size=1100,700".into(), format!("--screenshot={}", shot.display())],
        &url,
    );
    let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    assert!(size > 10_000, "a screenshot of {size} bytes at {}", shot.display());
    eprintln!("screenshot: {}", shot.display());

    // kill -9 of the leader: a survivor's page names the new one.
    cluster.kill(leader);
    let next = cluster
        .wait_leader_other_than(leader, Duration::from_secs(15))
        .unwrap_or_else(|| cluster.fail("no leader after the kill"));
    let survivor = (0..3).find(|&i| i != leader).expect("a survivor");
    let url = format!("http://{}/", pages[survivor]);
    let want = format!("node {}", next + 1);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = String::new();
    while Instant::now() < deadline {
        let Some(dom) = chromium(&profile.path().join("c"), &["--dump-dom".into()], &url) else { return };
        seen = by_id(&dom, "leader").unwrap_or_default().to_string();
        if seen == want {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = load.join();
    assert_eq!(seen, want, "after the failover the page names the new leader");
}
