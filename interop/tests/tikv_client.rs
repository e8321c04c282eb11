//! The `tikv-client` crate (0.4, from crates.io), unchanged, takes its
//! timestamps from leasetso's PD door: `TransactionClient::new(pd_endpoints)`
//! (GetMembers on every endpoint and member, then the leader's `Tso`
//! stream) and `current_timestamp()`.
//!
//! * A single node: timestamps strictly increase, from many tasks at once.
//! * A 3-node cluster whose leader is killed with `kill -9` mid-run: the
//!   client finds the new leader by itself (its own retry and GetMembers),
//!   and every timestamp it got is above every one before.
//!
//! Run with the project's `leasetso` built: `cargo build -p leasetso` at the
//! root, then `cargo test --manifest-path interop/Cargo.toml`
//! (`LEASETSO_BIN` names another binary).

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tikv_client::TransactionClient;

fn leasetso_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("LEASETSO_BIN") {
        return bin.into();
    }
    let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug/leasetso");
    assert!(bin.exists(), "{} is missing: run `cargo build -p leasetso` at the root first", bin.display());
    bin
}

/// A `leasetso serve` process, killed (and its data dir removed) on drop.
struct Node {
    child: Option<Child>,
    pd: SocketAddr,
    _data: tempfile::TempDir,
}

impl Node {
    /// Starts `serve` with `args`, and waits for its "PD on ADDR" line.
    fn start(args: &[String]) -> Node {
        let data = tempfile::tempdir().expect("a temp dir");
        let mut child = Command::new(leasetso_bin())
            .arg("serve")
            .args(["--data".as_ref(), data.path().as_os_str()])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start leasetso");
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().expect("piped");
        // Every line goes to the test's output; the "PD on" line's address
        // comes back here.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("    [leasetso] {line}");
                if let Some(addr) = line.strip_prefix("leasetso: PD on ") {
                    let _ = tx.send(addr.trim().parse::<SocketAddr>().expect("an address"));
                }
            }
        });
        let pd = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("no 'PD on' line from leasetso serve {args:?} ({e}); its log is above"));
        Node { child: Some(child), pd, _data: data }
    }

    fn url(&self) -> String {
        format!("http://{}", self.pd)
    }

    /// kill -9.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_addrs(n: usize) -> Vec<SocketAddr> {
    let held: Vec<TcpListener> = (0..n).map(|_| TcpListener::bind("127.0.0.1:0").expect("a port")).collect();
    held.iter().map(|l| l.local_addr().expect("bound")).collect()
}

fn packed(ts: &tikv_client::Timestamp) -> u64 {
    ((ts.physical as u64) << 18) | ts.logical as u64
}

/// `current_timestamp()` with a timeout (the client has none of its own).
async fn timestamp(client: &TransactionClient) -> Result<u64, String> {
    match tokio::time::timeout(Duration::from_secs(5), client.current_timestamp()).await {
        Ok(Ok(ts)) => Ok(packed(&ts)),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer in 5 s".into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tikv_client_takes_strictly_increasing_timestamps_from_a_single_node() {
    let node = Node::start(&["--listen".into(), "127.0.0.1:0".into(), "--pd".into(), "127.0.0.1:0".into()]);
    // The node serves shortly after it listens; the client's own retries
    // cover the gap.
    let client = TransactionClient::new(vec![node.url()]).await.expect("TransactionClient::new");
    let mut last = 0;
    for _ in 0..200 {
        let ts = timestamp(&client).await.expect("a timestamp");
        assert!(ts > last, "{ts} after {last}");
        last = ts;
    }
    // Many callers at once: the client batches them into its stream; every
    // timestamp is distinct, and each caller's increase.
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                for _ in 0..100 {
                    mine.push(timestamp(&client).await.expect("a timestamp"));
                }
                mine
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        let mine = t.await.expect("a caller");
        assert!(mine.windows(2).all(|w| w[0] < w[1]), "a caller's timestamps went backwards");
        assert!(mine.iter().all(|&ts| ts > last), "a timestamp below one handed out before");
        all.extend(mine);
    }
    let n = all.len();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), n, "a timestamp was handed out twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tikv_client_follows_a_kill_9_of_the_leader_by_itself() {
    let addrs = free_addrs(6);
    let (peers, clients) = addrs.split_at(3);
    let peer_list =
        peers.iter().enumerate().map(|(i, a)| format!("{}={a}", i + 1)).collect::<Vec<_>>().join(",");
    let mut nodes: Vec<Node> = (1..=3)
        .map(|id| {
            Node::start(&[
                "--listen".into(),
                clients[id - 1].to_string(),
                "--id".into(),
                id.to_string(),
                "--peers".into(),
                peer_list.clone(),
                "--lease-ms".into(),
                "1000".into(),
                "--cluster-id".into(),
                "77".into(),
                "--pd".into(),
                "127.0.0.1:0".into(),
            ])
        })
        .collect();
    let urls: Vec<String> = nodes.iter().map(Node::url).collect();
    // Any node as the seed: the client asks the members for the leader.
    let client = {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match TransactionClient::new(urls.clone()).await {
                Ok(c) => break c,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("no leader yet ({e}); retrying");
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                Err(e) => panic!("TransactionClient::new: {e}"),
            }
        }
    };
    let mut seen = Vec::new();
    // More than a second on the first leader: the client skips a reconnect
    // within a second of the last one.
    let until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < until {
        seen.push(timestamp(&client).await.expect("a timestamp from the first leader"));
    }
    let before = seen.len();
    let leader = leader_index(clients);
    nodes[leader].kill();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut after = 0;
    let mut errors = Vec::new();
    while after < 200 {
        assert!(Instant::now() < deadline, "no timestamps after the kill; errors: {errors:?}");
        match timestamp(&client).await {
            Ok(ts) => {
                seen.push(ts);
                after += 1;
            }
            Err(e) => {
                errors.push(e);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "timestamps went backwards or repeated across the failover"
    );
    eprintln!(
        "{before} timestamps before the kill, {after} after, {} errors while the client found the new leader",
        errors.len()
    );
}

/// Which node leads, as `leasetso status` tells (tikv-client does not say
/// which member it talks to).
fn leader_index(clients: &[SocketAddr]) -> usize {
    for (i, addr) in clients.iter().enumerate() {
        let out = Command::new(leasetso_bin())
            .args(["status", "--json", "--addr", &addr.to_string()])
            .output()
            .expect("leasetso status");
        let status: String = String::from_utf8_lossy(&out.stdout).split_whitespace().collect();
        if status.contains("\"role\":\"leader\"") {
            return i;
        }
    }
    panic!("no node of {clients:?} says it leads");
}
