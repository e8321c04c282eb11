//! A listener and the connections it accepted, each served on a thread of
//! its own: the client door and the RESP door are both one of these.
//!
//! The door keeps every open connection in a registry, so that a stop can
//! close them (which wakes their blocked reads) and wait for their threads;
//! a connection's thread removes itself when its client leaves.

use std::collections::HashMap;
use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use leasetso_runtime_common::lock;

/// Open connections, so that a stop can close them and wait for their threads.
#[derive(Debug, Default)]
struct Registry {
    next_id: u64,
    open: HashMap<u64, (TcpStream, Option<JoinHandle<()>>)>,
}

/// One listener and its connections.
#[derive(Debug)]
pub(crate) struct Door {
    /// What the door serves, for thread names and logs.
    what: &'static str,
    listener: Option<TcpListener>,
    local_addr: SocketAddr,
    conns: Arc<Mutex<Registry>>,
    stopping: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl Door {
    /// Binds `addr`; nothing is accepted until [`Door::start`].
    pub(crate) fn bind(what: &'static str, addr: SocketAddr) -> io::Result<Door> {
        let listener = TcpListener::bind(addr)?;
        let local_addr = listener.local_addr()?;
        Ok(Door {
            what,
            listener: Some(listener),
            local_addr,
            conns: Arc::default(),
            stopping: Arc::default(),
            acceptor: None,
        })
    }

    /// The address the listener is bound to (the real port when asked for port 0).
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Starts accepting: every connection is served by `serve` (with its id,
    /// unique on this door) on a thread of its own, after `accepted` (which
    /// counts it) is called.
    pub(crate) fn start(
        &mut self,
        accepted: impl Fn() + Send + 'static,
        serve: impl Fn(TcpStream, u64) + Clone + Send + 'static,
    ) -> io::Result<()> {
        let Some(listener) = self.listener.take() else { return Ok(()) };
        let (what, conns, stopping) = (self.what, Arc::clone(&self.conns), Arc::clone(&self.stopping));
        self.acceptor = Some(
            thread::Builder::new()
                .name(format!("leasetso-{what}-accept"))
                .spawn(move || accept(what, listener, &conns, &stopping, accepted, serve))?,
        );
        Ok(())
    }

    /// Stops accepting, closes every connection and waits for their threads.
    pub(crate) fn stop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        if let Some(acceptor) = self.acceptor.take() {
            // The acceptor blocks in `accept`; a connection of our own wakes
            // it to see the flag. If none can be made it is left blocked (it
            // exits with the process) rather than hanging the stop.
            if TcpStream::connect_timeout(&loopback(self.local_addr), Duration::from_secs(1)).is_ok() {
                let _ = acceptor.join();
            }
        }
        let conns = std::mem::take(&mut lock(&self.conns).open);
        for (_, (stream, handle)) in conns {
            // Wakes the connection's blocked read; its thread then exits.
            let _ = stream.shutdown(Shutdown::Both);
            if let Some(handle) = handle {
                let _ = handle.join();
            }
        }
    }
}

impl Drop for Door {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The address to reach a listener on `addr` from this host: a wildcard
/// listener is reachable on loopback.
pub(crate) fn loopback(mut addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    addr
}

fn accept(
    what: &'static str,
    listener: TcpListener,
    conns: &Arc<Mutex<Registry>>,
    stopping: &AtomicBool,
    accepted: impl Fn(),
    serve: impl Fn(TcpStream, u64) + Clone + Send + 'static,
) {
    for stream in listener.incoming() {
        if stopping.load(Ordering::SeqCst) {
            break;
        }
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                // Out of descriptors and similar: back off instead of spinning.
                leasetso_runtime_common::warn_quiet!(leasetso_runtime_common::quiet::ACCEPT_FAILED, door = what, error = %e, "accept failed");
                thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        accepted();
        let peer = stream.peer_addr().ok();
        let Ok(registered) = stream.try_clone() else {
            tracing::warn!(door = what, ?peer, "cannot register a connection; closing it");
            continue;
        };
        let id = {
            let mut conns = lock(conns);
            conns.next_id += 1;
            let id = conns.next_id;
            conns.open.insert(id, (registered, None));
            id
        };
        tracing::debug!(door = what, ?peer, id, "client connected");
        let (registry, serve) = (Arc::clone(conns), serve.clone());
        let spawned = thread::Builder::new().name(format!("leasetso-{what}")).spawn(move || {
            serve(stream, id);
            lock(&registry).open.remove(&id);
            tracing::debug!(door = what, ?peer, id, "client disconnected");
        });
        let mut conns = lock(conns);
        match spawned {
            // If the thread already ended it removed its entry; the handle then just drops.
            Ok(handle) => {
                if let Some(entry) = conns.open.get_mut(&id) {
                    entry.1 = Some(handle);
                }
            }
            Err(e) => {
                tracing::warn!(door = what, ?peer, error = %e, "cannot start a connection thread; closing it");
                if let Some((stream, _)) = conns.open.remove(&id) {
                    let _ = stream.shutdown(Shutdown::Both);
                }
            }
        }
    }
}
