//! What the smol runtime's tests share: in-process servers on loopback.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::thread::JoinHandle;
use std::time::Duration;

use leasetso_smol::{Handle, Server, ServerConfig};

/// A server running on a thread of its own under `smol::block_on`; stopped
/// (gracefully) and joined on drop.
pub struct Running {
    pub handle: Handle,
    pub addr: SocketAddr,
    pub peer_addr: Option<SocketAddr>,
    thread: Option<JoinHandle<()>>,
    /// Dropping it drops the `run` future: every task ends at once, no
    /// Release is sent, like a process killed.
    crash: Option<async_channel::Sender<()>>,
}

impl Running {
    pub fn start(cfg: ServerConfig) -> Running {
        Running::from_bound(Server::bind(cfg).expect("bind"))
    }

    /// Runs a bound server.
    pub fn from_bound(server: Server) -> Running {
        let handle = server.handle();
        let addr = server.local_addr();
        let peer_addr = server.peer_addr();
        let (crash, crashed) = async_channel::bounded::<()>(1);
        let thread = std::thread::spawn(move || {
            smol::block_on(smol::future::or(async { server.run().await.expect("run") }, async {
                let _ = crashed.recv().await;
            }))
        });
        Running { handle, addr, peer_addr, thread: Some(thread), crash: Some(crash) }
    }

    /// A single node on 127.0.0.1, port 0, in `dir`, serving.
    pub fn single(dir: &std::path::Path) -> Running {
        let running = Running::start(ServerConfig::new("127.0.0.1:0".parse().unwrap(), dir));
        assert!(smol::block_on(running.handle.wait_serving(Duration::from_secs(5))), "node never served");
        running
    }

    /// Drops the server's `run` future without a graceful stop (no Release:
    /// the peers wait out the lease) and waits for its thread.
    pub fn crash(mut self) {
        self.crash.take();
        if let Some(t) = self.thread.take() {
            t.join().expect("server thread");
        }
    }

    /// Stops the server gracefully and waits for `run` to return.
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        self.handle.stop();
        if let Some(t) = self.thread.take() {
            t.join().expect("server thread");
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop_inner();
    }
}
