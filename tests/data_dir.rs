//! One data dir, one server: a second server on the same dir is refused with
//! a clear message while the first keeps serving; a dir of another cluster
//! is refused too.

use std::time::{Duration, Instant};

use leasetso_tests::{RawConn, ServerProcess, data_dir};

#[test]
fn a_second_server_on_the_same_data_dir_is_refused() {
    let dir = data_dir();
    let mut first = ServerProcess::start_serving(dir.path());
    let mut conn = RawConn::open(first.addr());
    let before = conn.get_ts(1).unwrap().unwrap();

    let began = Instant::now();
    match ServerProcess::try_start_with(dir.path(), &[]) {
        Ok(second) => panic!(
            "a second server started on {} while {} serves it:\n{}",
            dir.path().display(),
            first.addr(),
            second.log()
        ),
        Err(failure) => {
            let status =
                failure.status.unwrap_or_else(|| panic!("the second server did not exit: {failure}"));
            assert!(!status.success() && status.code().is_some(), "the second server exited with {status}");
            assert!(
                failure.output.to_lowercase().contains("lock"),
                "the second server's message does not say the dir is locked:\n{}",
                failure.output
            );
            assert!(
                failure.output.contains(&dir.path().display().to_string()),
                "the second server's message does not name the dir:\n{}",
                failure.output
            );
        }
    }
    assert!(began.elapsed() < Duration::from_secs(10), "the refusal took {:?}", began.elapsed());

    // The first never noticed: same connection, still serving, still increasing.
    first.assert_running();
    let after = conn.get_ts(1).unwrap().unwrap();
    assert!(after > before, "{after:?} after {before:?}");
    let mut fresh = RawConn::open(first.addr());
    let highest = fresh.get_ts(100).unwrap().unwrap();
    assert!(highest > after);
    drop((conn, fresh));
    first.stop();

    // Once the first is gone, the dir is free again and continues above it.
    let second = ServerProcess::start(dir.path());
    let next = second.wait_serving();
    assert!(next > highest, "{next:?} after {highest:?}");
    second.stop();
}

#[test]
fn a_data_dir_of_another_cluster_is_refused() {
    let dir = data_dir();
    let server = ServerProcess::start_with(dir.path(), &["--cluster-id", "5"]);
    let highest = server.wait_serving();
    server.stop();
    match ServerProcess::try_start_with(dir.path(), &["--cluster-id", "6"]) {
        Ok(server) => panic!("cluster 6 started on cluster 5's data dir:\n{}", server.log()),
        Err(failure) => {
            let status = failure.status.unwrap_or_else(|| panic!("the server did not exit: {failure}"));
            assert!(!status.success() && status.code().is_some(), "exited with {status}");
            let explains = |l: &&str| {
                let l = l.to_lowercase();
                l.contains("error") && l.contains("cluster") && l.contains('5') && l.contains('6')
            };
            assert!(
                failure.output.lines().any(|l| explains(&l)),
                "no error line names both clusters:\n{}",
                failure.output
            );
        }
    }
    // The refusal changed nothing: cluster 5 resumes above what it handed out.
    let server = ServerProcess::start_with(dir.path(), &["--cluster-id", "5"]);
    let next = server.wait_serving();
    assert!(next > highest, "{next:?} after {highest:?}");
    server.stop();
}

/// A value of `key=value` lines.
fn field<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
        .unwrap_or_else(|| panic!("no {key}= in:\n{out}"))
}

/// `leasetso data inspect` prints a stopped node's store; a store wedged by
/// a fence no leadership can pass keeps its node from serving, and the
/// documented repair (`data reset-fence` with the cluster stopped) brings it
/// back, above everything it handed out before.
#[test]
fn data_inspect_shows_a_store_and_reset_fence_repairs_a_wedged_one() {
    use leasetso_core::{Ballot, NodeId, StoreOp};
    use leasetso_tests::run_cli;

    let dir = data_dir();
    let data = dir.path().display().to_string();
    let server = ServerProcess::start_serving(dir.path());
    let mut conn = RawConn::open(server.addr());
    let before = conn.get_ts(1).unwrap().unwrap();
    // A running node's store is in use: inspect says so.
    let busy = run_cli(&["data", "inspect", "--data", &data], Duration::from_secs(10));
    assert!(!busy.status.success() && busy.stderr.contains("in use"), "{}", busy.stderr);
    server.stop();

    let shown = run_cli(&["data", "inspect", "--data", &data], Duration::from_secs(10));
    assert!(shown.status.success(), "{}", shown.stderr);
    let out = shown.stdout;
    assert_eq!(field(&out, "cluster_id"), "1");
    assert_eq!(field(&out, "node"), "1");
    assert_eq!(field(&out, "restart"), "1");
    assert_eq!(field(&out, "restart_marker"), "1");
    assert_eq!(field(&out, "fence"), "(1,1,0)");
    assert_eq!(field(&out, "primary"), "none");
    let window: u64 = field(&out, "window_end_ms").parse().expect("a number");
    assert!(window > before.physical_ms, "window {window} not above {before:?}");

    // Wedge it: a fence no ballot of this node can pass.
    {
        let store = leasetso_sled::SledStore::open(dir.path(), 1).expect("open the stopped store");
        let wedge = Ballot::new(u64::MAX, u64::MAX, NodeId(0));
        assert!(store.execute(StoreOp::Load { fence: wedge, check_primary: false }).is_ok());
    }
    let wedged = run_cli(&["data", "inspect", "--data", &data], Duration::from_secs(10)).stdout;
    assert_eq!(field(&wedged, "fence"), format!("({},{},0)", u64::MAX, u64::MAX));
    let server = ServerProcess::start_with(dir.path(), &[]);
    std::thread::sleep(Duration::from_secs(2));
    let served = RawConn::open(server.addr()).get_ts(1).expect("an answer");
    assert!(served.is_err(), "a node whose store is fenced for good served {served:?}:\n{}", server.log());
    server.stop();

    // The repair: refused without the confirmation, done with it.
    let refused = run_cli(&["data", "reset-fence", "--data", &data], Duration::from_secs(10));
    assert!(!refused.status.success() && refused.stderr.contains("--cluster-stopped"), "{}", refused.stderr);
    let reset =
        run_cli(&["data", "reset-fence", "--data", &data, "--cluster-stopped"], Duration::from_secs(10));
    assert!(reset.status.success(), "{}", reset.stderr);
    let repaired = run_cli(&["data", "inspect", "--data", &data], Duration::from_secs(10)).stdout;
    assert_eq!(field(&repaired, "fence"), "none");
    assert_eq!(field(&repaired, "window_end_ms"), window.to_string(), "the window stays");

    let server = ServerProcess::start_serving(dir.path());
    let after = RawConn::open(server.addr()).get_ts(1).unwrap().unwrap();
    assert!(after > before && after.physical_ms > window, "{after:?} after the repair, window {window}");
    server.stop();
}
