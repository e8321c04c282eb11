//! Network namespaces for partition tests, made with `ip netns` (iproute2)
//! and `nft` (nftables), as root.
//!
//! The layout, for `n` nodes and a slot `k` unique on the machine:
//!
//! ```text
//!            hub namespace: bridges br0 (peers) and br1 (clients)
//!   br0: veth0 ... veth{n-1}                  br1: cveth0 ... cveth{n-1}, croot
//!          |                                          |                  |
//!   node i: eth0 = 10.77.k.(i+1)/24 (peer link)   cli0 = 10.78.k.(i+1)/24 |
//!                                                       test process: ltc{k} = 10.78.k.254/24
//! ```
//!
//! Each node namespace has **two** links: `eth0` on the peer bridge, which
//! the node's `--peers` addresses use, and `cli0` on the client bridge, where
//! its client address lives and which the test process (in the root
//! namespace) joins with one veth of its own. [`Netns::cut`] takes down only
//! the hub side of a node's peer link: the node is partitioned from its
//! peers, yet the test still talks to it over the client link, so it can
//! watch an isolated leader stop serving instead of just losing sight of it.
//! The nodes never reach each other over the client bridge: they have no
//! route that would send peer traffic there (no default route at all), and
//! their peer addresses are on the peer subnet only.
//!
//! [`Netns::loss`] drops a fraction of the packets arriving on a node's peer
//! link with an nftables rule in its namespace (the test machines' kernel
//! has no `netem`). The rule matches `eth0` only, so the test's own client
//! traffic is not slowed by TCP retransmissions.
//!
//! Threads of the test process can work inside a namespace too
//! ([`Netns::run_in`], `setns(2)` on a thread of their own): a socket
//! belongs to the namespace it was created in, so listeners, connections and
//! UDP sockets made there can then be used from any thread. The self-tests
//! use that instead of tools like `ping` that the machine may lack.
//!
//! Names are unique per test: namespaces are `leasetso-<pid>-<seq>-...`,
//! and the slot `k` is taken by creating the root-side veth `ltc{k}`, which
//! fails if another test (of this process or another) holds it. Everything is
//! deleted on drop; namespaces left by a test process that no longer exists
//! (killed before its drop ran) are swept when the next one starts.

use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

/// The name of the nftables table the loss rules live in.
const NFT_TABLE: &str = "leasetso";
/// The prefix of every namespace this module makes.
const NS_PREFIX: &str = "leasetso-";
/// The slots (third octet of both subnets) to choose from.
const SLOTS: u32 = 250;

/// Namespaces made by this process so far, for unique names.
static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A set of network namespaces: one per node, a hub with the two bridges,
/// and a link from the test process to the client bridge. Deleted on drop.
#[derive(Debug)]
pub struct Netns {
    /// `leasetso-<pid>-<seq>`.
    tag: String,
    /// The third octet of both subnets.
    slot: u8,
    /// The hub namespace.
    hub: String,
    /// One namespace per node (as many as were made, if setup failed).
    nodes: Vec<String>,
    /// The root-side veth, once made.
    root_link: Option<String>,
    /// The hub namespace exists.
    hub_made: bool,
}

impl Netns {
    /// Whether this process can make namespaces: root, `ip` and `nft`
    /// installed, `ip netns add` working. The answer is computed once per
    /// process. Tests that need namespaces print `skipped: <reason>` and
    /// pass when it is an error.
    pub fn available() -> Result<(), String> {
        static ANSWER: OnceLock<Result<(), String>> = OnceLock::new();
        ANSWER.get_or_init(probe).clone()
    }

    /// [`available`](Self::available), printing `skipped: <reason>` on
    /// stderr when not: `if !Netns::usable("test name") { return; }`.
    pub fn usable(test: &str) -> bool {
        match Self::available() {
            Ok(()) => true,
            Err(reason) => {
                eprintln!("skipped: {test}: {reason}");
                false
            }
        }
    }

    /// Makes the namespaces for `nodes` nodes, their links and the test
    /// process's link to the client bridge. On any failure, what was made is
    /// deleted again and the error says which command failed and how.
    pub fn new(nodes: usize) -> Result<Netns, String> {
        Self::available()?;
        assert!((1..=100).contains(&nodes), "{nodes} nodes: between 1 and 100");
        sweep_stale();
        let tag = format!("{NS_PREFIX}{}-{}", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed));
        let mut net = Netns {
            hub: format!("{tag}-hub"),
            tag,
            slot: 0,
            nodes: Vec::new(),
            root_link: None,
            hub_made: false,
        };
        net.build(nodes)?; // on error, drop deletes what was made
        Ok(net)
    }

    fn build(&mut self, nodes: usize) -> Result<(), String> {
        let hub = self.hub.clone();
        ip(&["netns", "add", &hub])?;
        self.hub_made = true;
        ip(&["-n", &hub, "link", "set", "lo", "up"])?;
        for bridge in ["br0", "br1"] {
            ip(&["-n", &hub, "link", "add", bridge, "type", "bridge"])?;
            ip(&["-n", &hub, "link", "set", bridge, "up"])?;
        }
        self.take_slot()?;
        let slot = self.slot;
        let root_link = self.root_link.clone().expect("the slot's link");
        ip(&["-n", &hub, "link", "set", "croot", "master", "br1", "up"])?;
        ip(&["addr", "add", &format!("{}/24", self.root_ip()), "dev", &root_link])?;
        ip(&["link", "set", &root_link, "up"])?;
        for i in 0..nodes {
            let ns = format!("{}-n{i}", self.tag);
            ip(&["netns", "add", &ns])?;
            self.nodes.push(ns.clone());
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            for (hub_side, node_side, bridge, addr) in [
                (format!("veth{i}"), "eth0", "br0", Ipv4Addr::new(10, 77, slot, i as u8 + 1)),
                (format!("cveth{i}"), "cli0", "br1", Ipv4Addr::new(10, 78, slot, i as u8 + 1)),
            ] {
                ip(&[
                    "-n", &hub, "link", "add", &hub_side, "type", "veth", "peer", "name", node_side, "netns",
                    &ns,
                ])?;
                ip(&["-n", &hub, "link", "set", &hub_side, "master", bridge, "up"])?;
                ip(&["-n", &ns, "addr", "add", &format!("{addr}/24"), "dev", node_side])?;
                ip(&["-n", &ns, "link", "set", node_side, "up"])?;
            }
        }
        Ok(())
    }

    /// Takes a free slot `k` by creating the root-side veth `ltc{k}` (its
    /// peer `croot` goes into the hub): creating a link whose name exists
    /// fails, so two tests never get the same slot.
    fn take_slot(&mut self) -> Result<(), String> {
        let start = (std::process::id() + SEQ.load(Ordering::Relaxed) as u32 * 7) % SLOTS;
        for offset in 0..SLOTS {
            let slot = ((start + offset) % SLOTS + 1) as u8;
            let name = format!("ltc{slot}");
            // A subnet someone else uses in the root namespace is not ours to shadow.
            let used = ip(&["-4", "-o", "addr", "show", "to", &format!("10.78.{slot}.0/24")])?;
            if !used.trim().is_empty() {
                continue;
            }
            match ip(&["link", "add", &name, "type", "veth", "peer", "name", "croot", "netns", &self.hub]) {
                Ok(_) => {
                    self.slot = slot;
                    self.root_link = Some(name);
                    return Ok(());
                }
                Err(e) if e.contains("File exists") => continue,
                Err(e) => return Err(e),
            }
        }
        Err(format!("no free slot: links ltc1..ltc{SLOTS} all exist"))
    }

    /// How many node namespaces there are.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether there are no node namespaces.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The namespace of node `i` (0-based).
    pub fn ns(&self, i: usize) -> &str {
        &self.nodes[i]
    }

    /// The hub namespace (bridges only, no addresses).
    pub fn hub(&self) -> &str {
        &self.hub
    }

    /// Every namespace of the set: the nodes', then the hub.
    pub fn namespaces(&self) -> Vec<String> {
        self.nodes.iter().chain(std::iter::once(&self.hub)).cloned().collect()
    }

    /// The test process's veth to the client bridge (`ltc{k}`).
    pub fn root_link(&self) -> &str {
        self.root_link.as_deref().unwrap_or("")
    }

    /// Node `i`'s address on the peer bridge (`eth0`).
    pub fn peer_ip(&self, i: usize) -> Ipv4Addr {
        assert!(i < self.nodes.len(), "node {i} of {}", self.nodes.len());
        Ipv4Addr::new(10, 77, self.slot, i as u8 + 1)
    }

    /// Node `i`'s address on the client bridge (`cli0`), reachable from the
    /// test process.
    pub fn client_ip(&self, i: usize) -> Ipv4Addr {
        assert!(i < self.nodes.len(), "node {i} of {}", self.nodes.len());
        Ipv4Addr::new(10, 78, self.slot, i as u8 + 1)
    }

    /// The test process's address on the client bridge.
    pub fn root_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 78, self.slot, 254)
    }

    /// Partitions node `i` from every peer: the hub side of its peer link
    /// goes down (its client link stays up).
    pub fn cut(&self, i: usize) {
        self.set_peer_link(i, "down");
    }

    /// Undoes [`cut`](Self::cut).
    pub fn heal(&self, i: usize) {
        self.set_peer_link(i, "up");
    }

    fn set_peer_link(&self, i: usize, state: &str) {
        assert!(i < self.nodes.len(), "node {i} of {}", self.nodes.len());
        ip(&["-n", &self.hub, "link", "set", &format!("veth{i}"), state])
            .unwrap_or_else(|e| panic!("setting node {i}'s peer link {state}: {e}"));
    }

    /// Drops `percent` % of the packets arriving on node `i`'s peer link, at
    /// random (an nftables rule in its namespace). Replaces an earlier rule.
    pub fn loss(&self, i: usize, percent: u32) {
        assert!(percent <= 100, "{percent} %");
        self.clear_loss(i);
        let ns = self.ns(i);
        let chain = [
            "add", "chain", "inet", NFT_TABLE, "in", "{", "type", "filter", "hook", "input", "priority", "0",
            ";", "}",
        ];
        let rule = [
            "add",
            "rule",
            "inet",
            NFT_TABLE,
            "in",
            "iifname",
            "eth0",
            "numgen",
            "random",
            "mod",
            "100",
            "<",
            &percent.to_string(),
            "drop",
        ];
        for args in [&["add", "table", "inet", NFT_TABLE][..], &chain[..], &rule[..]] {
            nft(ns, args).unwrap_or_else(|e| panic!("adding a {percent} % loss rule for node {i}: {e}"));
        }
    }

    /// Removes node `i`'s loss rule, if any.
    pub fn clear_loss(&self, i: usize) {
        // Deleting a table that does not exist fails; that is the "none" case.
        let _ = nft(self.ns(i), &["delete", "table", "inet", NFT_TABLE]);
    }

    /// `ip netns exec <node i's namespace> <program>`: add the arguments and spawn.
    ///
    /// `ip netns exec` replaces itself with the program (it does not fork),
    /// so the child's pid is the program's and signals reach it directly.
    pub fn command(&self, i: usize, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", self.ns(i)]).arg(program);
        cmd
    }

    /// Runs `f` on a fresh thread inside node `i`'s network namespace and
    /// returns its result. Sockets `f` creates stay in that namespace.
    pub fn run_in<T: Send + 'static>(
        &self,
        i: usize,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> io::Result<T> {
        enter_and_run(self.ns(i), f)
    }

    /// A TCP listener on `addr` inside node `i`'s namespace.
    pub fn bind_tcp(&self, i: usize, addr: SocketAddr) -> io::Result<TcpListener> {
        self.run_in(i, move || TcpListener::bind(addr))?
    }

    /// A TCP connection from inside node `i`'s namespace to `addr`.
    pub fn connect_tcp(&self, i: usize, addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
        self.run_in(i, move || TcpStream::connect_timeout(&addr, timeout))?
    }

    /// A UDP socket bound to `addr` inside node `i`'s namespace.
    pub fn bind_udp(&self, i: usize, addr: SocketAddr) -> io::Result<UdpSocket> {
        self.run_in(i, move || UdpSocket::bind(addr))?
    }

    /// A connector for a [`DelayProxy`](super::proxy::DelayProxy) that opens
    /// its upstream connections from node `i`'s namespace.
    pub fn connector(self: &std::sync::Arc<Self>, i: usize, target: SocketAddr) -> super::proxy::Connector {
        let net = std::sync::Arc::clone(self);
        std::sync::Arc::new(move || net.connect_tcp(i, target, Duration::from_secs(2)))
    }

    /// Node `i`'s peer address with `port`.
    pub fn peer_addr(&self, i: usize, port: u16) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(self.peer_ip(i), port))
    }

    /// Node `i`'s client address with `port`.
    pub fn client_addr(&self, i: usize, port: u16) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(self.client_ip(i), port))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting a namespace destroys the interfaces in it, and destroying
        // one end of a veth pair destroys the other: the hub takes every
        // node veth and `croot` (so `ltc{k}`) with it. The root link is
        // deleted by name first anyway, so the slot is free even if
        // something still holds the hub open.
        if let Some(link) = &self.root_link {
            let _ = ip(&["link", "del", link]);
        }
        for ns in self.nodes.iter().rev() {
            if let Err(e) = ip(&["netns", "del", ns]) {
                eprintln!("warning: {e}");
            }
        }
        if self.hub_made
            && let Err(e) = ip(&["netns", "del", &self.hub])
        {
            eprintln!("warning: {e}");
        }
    }
}

/// Runs a command, returning its stdout, or an error with its stderr.
fn run(cmd: &mut Command) -> Result<String, String> {
    let what = format!("{cmd:?}");
    let out: Output = cmd.stdin(Stdio::null()).output().map_err(|e| format!("cannot run {what}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!("{what} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// `ip <args>`.
fn ip(args: &[&str]) -> Result<String, String> {
    run(Command::new("ip").args(args))
}

/// `ip netns exec <ns> nft <args>`: every argument its own argv entry, no
/// shell (nft joins them and parses the result).
fn nft(ns: &str, args: &[&str]) -> Result<String, String> {
    run(Command::new("ip").args(["netns", "exec", ns, "nft"]).args(args))
}

/// The effective uid, from `/proc/self/status` (no libc needed).
fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    // Uid: real effective saved filesystem
    line.split_whitespace().nth(2)?.parse().ok()
}

fn probe() -> Result<(), String> {
    if !cfg!(target_os = "linux") {
        return Err("network namespaces need Linux".into());
    }
    match effective_uid() {
        Some(0) => {}
        Some(uid) => return Err(format!("network namespaces need root (uid {uid})")),
        None => return Err("cannot read the uid from /proc/self/status".into()),
    }
    run(Command::new("ip").arg("-V")).map_err(|e| format!("iproute2's `ip` is missing: {e}"))?;
    run(Command::new("nft").arg("--version")).map_err(|e| format!("nftables' `nft` is missing: {e}"))?;
    let name = format!("{NS_PREFIX}{}-probe", std::process::id());
    ip(&["netns", "add", &name]).map_err(|e| format!("`ip netns add` does not work here: {e}"))?;
    let entered = enter_and_run(&name, || ());
    let deleted = ip(&["netns", "del", &name]);
    entered.map_err(|e| format!("cannot enter a network namespace (setns): {e}"))?;
    deleted.map_err(|e| format!("`ip netns del` does not work here: {e}"))?;
    Ok(())
}

/// Deletes namespaces of this module whose test process is gone.
fn sweep_stale() {
    let Ok(list) = ip(&["netns", "list"]) else { return };
    for line in list.lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(rest) = name.strip_prefix(NS_PREFIX) else { continue };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else { continue };
        if pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = ip(&["netns", "del", name]);
        }
    }
}

/// Runs `f` on a new thread after moving that thread into the network
/// namespace `/run/netns/<ns>`.
fn enter_and_run<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> io::Result<T> {
    let path = format!("/run/netns/{ns}");
    let file = File::open(&path).map_err(|e| io::Error::new(e.kind(), format!("{path}: {e}")))?;
    let handle = thread::Builder::new().name(format!("in-{ns}")).spawn(move || {
        setns_net(&file)?;
        drop(file);
        Ok(f())
    })?;
    handle.join().unwrap_or_else(|e| std::panic::resume_unwind(e))
}

#[cfg(target_os = "linux")]
fn setns_net(file: &File) -> io::Result<()> {
    use std::os::fd::AsFd;
    rustix::thread::move_into_link_name_space(file.as_fd(), Some(rustix::thread::LinkNameSpaceType::Network))
        .map_err(io::Error::from)
}

#[cfg(not(target_os = "linux"))]
fn setns_net(_: &File) -> io::Result<()> {
    Err(io::Error::new(io::ErrorKind::Unsupported, "network namespaces need Linux"))
}
