//! Embeds a leasetso node in an application's own executor.
//!
//! The application owns one `async_executor::Executor` and runs it on its
//! own threads; the node is one more task on it (`Server::run`), next to the
//! application's tasks that take timestamps through a [`Client`]. Stopping
//! is the application's call: [`Handle::stop`] makes `run` release the lease
//! and return.
//!
//! Run: `cargo run -p leasetso-smol --example embedded` (it serves on a free
//! loopback port in a temporary directory, takes timestamps from 8 tasks,
//! prints what it got and stops).

use std::sync::Arc;
use std::time::Duration;

use async_executor::Executor;
use leasetso_smol::{Client, ClientOptions, Server, ServerConfig};

pub(crate) fn main() -> Result<(), Box<dyn std::error::Error>> {
    let data = tempfile::tempdir()?;
    let server = Server::bind(ServerConfig::new("127.0.0.1:0".parse()?, data.path()))?;
    let node = server.handle();
    let addr = server.local_addr();

    // The application's executor, run by two threads of its own until the
    // application is done.
    let ex = Arc::new(Executor::new());
    let (done_tx, done_rx) = async_channel::bounded::<()>(1);
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let ex = Arc::clone(&ex);
            let done = done_rx.clone();
            std::thread::spawn(move || async_io::block_on(ex.run(done.recv())))
        })
        .collect();

    // The node: one task among the application's.
    let serving = ex.spawn(server.run());

    let app = ex.spawn({
        let ex = Arc::clone(&ex);
        let node = node.clone();
        async move {
            if !node.wait_serving(Duration::from_secs(5)).await {
                return Err("the node did not serve".to_string());
            }
            let client =
                Client::connect(&[addr], ClientOptions::default()).await.map_err(|e| e.to_string())?;
            let workers: Vec<_> = (0..8)
                .map(|i| {
                    let client = client.clone();
                    ex.spawn(async move {
                        let mut last = None;
                        for _ in 0..100 {
                            last = Some(client.get_ts().await?);
                        }
                        Ok::<_, leasetso_smol::ClientError>((i, last))
                    })
                })
                .collect();
            let mut lines = Vec::new();
            for w in workers {
                let (i, last) = w.await.map_err(|e| e.to_string())?;
                lines.push(format!("task {i}: last timestamp {}", last.map_or(0, |t| t.to_u64())));
            }
            Ok(lines)
        }
    });

    let lines = async_io::block_on(app)?;
    for line in &lines {
        println!("{line}");
    }
    let stats = node.stats();
    println!(
        "{} timestamps in {} requests over {} connection(s)",
        stats.timestamps, stats.get_ts_requests, stats.connections
    );
    // Graceful stop: the node releases its lease, `run` returns.
    node.stop();
    async_io::block_on(serving)?;
    drop(done_tx);
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}
