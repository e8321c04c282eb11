//! The smol client's own behaviour: callers cancelled at any point leave the
//! others unharmed, a server that goes away fails calls with a retryable
//! error after the deadline, and clones share one connection.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::Running;
use leasetso_smol::{Client, ClientError, ClientOptions};

/// Tasks whose calls are cut short by a timer (their futures dropped while
/// queued, in flight, or driving the connection) mixed with tasks whose
/// calls run to the end: every finished call gets a fresh timestamp, and
/// the client keeps working afterwards.
#[test]
fn cancelled_callers_do_not_harm_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running::single(dir.path());
    let ex = Arc::new(smol::Executor::new());
    smol::block_on(ex.run(async {
        let client = Client::connect(&[server.addr], ClientOptions::default()).await.unwrap();
        let mut tasks = Vec::new();
        for t in 0..16u64 {
            let client = client.clone();
            tasks.push(ex.spawn(async move {
                let mut got = Vec::new();
                for i in 0..200u64 {
                    if (t + i) % 3 == 0 {
                        // Cut short after 0-49 µs: anywhere in its life.
                        let cut = Duration::from_micros((t * 7 + i * 13) % 50);
                        let call = async { Some(client.get_ts().await) };
                        let timer = async {
                            async_io::Timer::after(cut).await;
                            None
                        };
                        if let Some(result) = smol::future::or(call, timer).await {
                            got.push(result.unwrap().to_u64());
                        }
                    } else {
                        got.push(client.get_ts().await.unwrap().to_u64());
                    }
                }
                got
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await);
        }
        let n = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), n, "a timestamp was handed out twice");
        assert!(n >= 16 * 200 * 2 / 3, "only {n} calls finished");
        client.get_ts().await.unwrap();
    }));
    assert_eq!(server.handle.stats().connections, 1, "clones share one connection");
}

/// A server that stops: calls fail after the deadline with a retryable
/// error, rather than hang.
#[test]
fn a_gone_server_fails_calls_after_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running::single(dir.path());
    let addr = server.addr;
    smol::block_on(async {
        let opts = ClientOptions { deadline: Duration::from_millis(300), ..ClientOptions::default() };
        let client = Client::connect(&[addr], opts).await.unwrap();
        client.get_ts().await.unwrap();
        server.stop();
        let start = std::time::Instant::now();
        let err = client.get_ts().await.expect_err("no server");
        assert!(err.is_retryable(), "{err}");
        assert!(
            matches!(err, ClientError::Connect { .. } | ClientError::Closed { .. } | ClientError::Io { .. }),
            "{err}"
        );
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(250) && took < Duration::from_secs(3), "{took:?}");
    });
}
