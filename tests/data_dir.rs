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
