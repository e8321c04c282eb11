//! `leasetso`: run a timestamp oracle node, or ask one for timestamps or its status.

use std::io::IsTerminal;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::{Args, CommandFactory, Parser, Subcommand};
use leasetso_core::{Ballot, Mode, Role};
use leasetso_runtime_common::status_json::{status_json, unreachable_json};
use leasetso_std::client::parse_seeds;
use leasetso_std::{
    Client, ClientError, ClientOptions, ClientTls, NodeConfig, NodeId, Secret, Server, ServerConfig,
};
use tracing_subscriber::EnvFilter;

mod cert;
mod config;
mod data;

/// How long `serve` waits for the node to serve before announcing it is ready anyway.
const READY_WAIT: Duration = Duration::from_secs(10);

/// A highly available timestamp oracle.
#[derive(Debug, Parser)]
#[command(name = "leasetso", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a node: serve timestamps to clients until Ctrl-C or SIGTERM.
    ///
    /// Every flag can also be set in a TOML file (`--config`); flags given
    /// here override the file's.
    // A flag given twice takes the last value: how the command line
    // overrides the settings of --config, which come first.
    #[command(args_override_self = true)]
    Serve(Box<ServeArgs>),
    /// Ask a server for timestamps and print the last one (packed u64).
    GetTs(GetTsArgs),
    /// Print each node's role, leader, lease, quarantine, fence, window, links.
    Status(StatusArgs),
    /// Show or clear the primary registration (dual-writer prevention).
    #[command(subcommand)]
    Primary(PrimaryCommand),
    /// Create a cluster's certificates: a CA, then one per node and client.
    #[command(subcommand)]
    Cert(CertCommand),
    /// Inspect or repair a stopped node's store.
    #[command(subcommand)]
    Data(data::DataCommand),
}

// The variants are the command-line words (`create-ca`, `create-node`,
// `create-client`), as CockroachDB's `cert` commands name them.
#[allow(clippy::enum_variant_names)]
#[derive(Debug, Subcommand)]
enum CertCommand {
    /// Create the cluster's CA: DIR/ca.crt and DIR/ca.key.
    CreateCa {
        #[command(flatten)]
        dir: CertsDir,
        /// The cluster the CA signs for (the `--cluster-id` of `serve`).
        #[arg(long, value_name = "N")]
        cluster_id: u64,
        /// Days the certificate is valid.
        #[arg(long, value_name = "DAYS", default_value_t = 3650)]
        days: u32,
    },
    /// Create node N's certificate: DIR/node.N.crt and DIR/node.N.key.
    CreateNode {
        #[command(flatten)]
        dir: CertsDir,
        /// The node's id, 1-based (the `--id` of `serve`; a single node is 1).
        #[arg(long, value_name = "N")]
        id: u16,
        /// The names and addresses the node is reached at, comma-separated.
        #[arg(long, value_name = "H[,H...]")]
        host: String,
        /// Days the certificate is valid.
        #[arg(long, value_name = "DAYS", default_value_t = 365)]
        days: u32,
    },
    /// Create a client's certificate: DIR/client.NAME.crt and DIR/client.NAME.key.
    CreateClient {
        #[command(flatten)]
        dir: CertsDir,
        /// The user's name (`--user` of the client commands).
        #[arg(long, value_name = "NAME")]
        name: String,
        /// The admin role: may clear the primary registration.
        #[arg(long)]
        admin: bool,
        /// Days the certificate is valid.
        #[arg(long, value_name = "DAYS", default_value_t = 365)]
        days: u32,
    },
}

#[derive(Debug, Args)]
struct CertsDir {
    /// The directory of the cluster's certificates (created if missing).
    #[arg(long, value_name = "DIR")]
    certs_dir: PathBuf,
}

#[derive(Debug, Subcommand)]
enum PrimaryCommand {
    /// Print the registration each node's replica holds.
    Show(NodesArgs),
    /// Clear the registration `--id N --tag T` (as `show` prints them) on a
    /// quorum of replicas: how a migration to primary mode is rolled back.
    /// Refused while the registered node answers as the serving leader.
    Clear(ClearArgs),
}

#[derive(Debug, Args)]
struct ClearArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// The registered node's id, 1-based.
    #[arg(long, value_name = "N")]
    id: u16,
    /// The registration's tag, exactly as `primary show` prints it: `(C,R,N)`.
    #[arg(long, value_name = "TAG")]
    tag: String,
}

/// How a node writes the window store (ARCHITECTURE.md, "Yielding to a primary").
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum ModeArg {
    /// Check that no primary is registered, in the same transaction as every
    /// write; yield to one and stay out while it stands.
    Deferring,
    /// Register as primary on a quorum before campaigning; write without the check.
    Primary,
}

/// How `serve` writes its log lines (on stderr).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per line (tracing-subscriber's JSON formatter, the
    /// event's fields at the top level), for log collectors.
    Json,
}

/// Which runtime serves the node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum RuntimeArg {
    /// Blocking std threads (leasetso-std): a thread per connection.
    Std,
    /// smol / async-io (leasetso-smol): every connection a task on one executor.
    Smol,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Read the flags from a TOML file: the keys are the long flag names
    /// (`listen = "127.0.0.1:7400"`, `cluster-id = 3`, `insecure = true`
    /// for switches); flags on the command line override the file's. An
    /// unknown key or a value of the wrong type stops `serve` at start.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Check the flags (and the --config file) and print what the node would
    /// run as, then exit without starting: the files they name are not read,
    /// no port is bound, the store is not opened.
    #[arg(long)]
    check_config: bool,
    /// The format of the log lines on stderr: text, or json (one object
    /// per line). The "listening on" / "serving on" lines that scripts wait
    /// for are the same in both.
    #[arg(long, value_enum, value_name = "FORMAT", default_value = "text")]
    log_format: LogFormat,
    /// The runtime that serves the node: std (threads) or smol (async).
    /// Both speak the same protocols and may share a cluster.
    #[arg(long, value_enum, default_value = "std")]
    runtime: RuntimeArg,
    /// The address clients connect to (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:7400")]
    listen: SocketAddr,
    /// The directory of the durable store; created if missing.
    #[arg(long = "data", value_name = "DIR", default_value = "./leasetso-data")]
    data: PathBuf,
    /// The cluster id; the data dir, peers and clients must agree with it.
    #[arg(long, default_value_t = 1)]
    cluster_id: u64,
    /// This node's id in the cluster, 1-based (needs --peers).
    #[arg(long, value_name = "N", requires = "peers")]
    id: Option<u16>,
    /// Every node's peer address, this node's own included:
    /// `1=HOST:PORT,2=HOST:PORT,3=HOST:PORT` (1, 3 or 5 nodes).
    #[arg(long, value_name = "LIST", requires = "id")]
    peers: Option<String>,
    /// The client address peers hand out for this node in leader hints
    /// (default: the --listen address; required when that is a wildcard).
    #[arg(long, value_name = "ADDR")]
    advertise: Option<SocketAddr>,
    /// deferring (default) or primary: see `leasetso primary --help`.
    #[arg(long, value_enum, default_value = "deferring")]
    mode: ModeArg,
    /// The lease duration D_P in ms; the same on every node.
    #[arg(long, value_name = "MS", default_value_t = 3000)]
    lease_ms: u64,
    /// How far ahead of the current timestamp the window is saved, in ms.
    #[arg(long, value_name = "MS")]
    save_interval_ms: Option<u64>,
    /// How often the timestamp's physical part follows the wall clock, in ms.
    #[arg(long, value_name = "MS")]
    update_interval_ms: Option<u64>,
    /// How far the timestamps' physical part may run ahead of the leader's
    /// wall clock, in ms (default: the save interval + 2000, so 5000). Past
    /// it, requests are refused with the retryable LogicalExhausted (Redis:
    /// -TRYAGAIN). More than the save interval + 1, at most 60000.
    #[arg(long, value_name = "MS")]
    max_ahead_ms: Option<u64>,
    /// Also answer the Redis protocol (RESP2) on ADDR: `TSO [count]` returns
    /// the packed last timestamp, so any Redis client is a leasetso client
    /// (port 0 picks a free port). Off by default.
    #[arg(long, value_name = "ADDR")]
    resp: Option<SocketAddr>,
    /// TLS on every door, with the certificates of DIR (`leasetso cert`):
    /// `ca.crt` and this node's `node.<id>.crt` / `.key` (a single node is
    /// id 1). Peers are mutually authenticated (mTLS): a peer's certificate
    /// must name the node its handshake claims. Every client must present a
    /// certificate of the cluster's CA; clearing the primary registration
    /// needs the admin role. Replaced files take effect for new connections.
    #[arg(long, value_name = "DIR")]
    certs_dir: Option<PathBuf>,
    /// The password Redis clients must give (`AUTH`) on the --resp door,
    /// read from FILE (one line): for clients without certificates.
    #[arg(long, value_name = "FILE", requires = "resp")]
    resp_password_file: Option<PathBuf>,
    /// Serve plaintext on addresses other than loopback, on purpose.
    /// Without it, `serve` refuses them: anyone who can reach a plaintext
    /// port can take timestamps, and on the peer port speak for a node.
    #[arg(long)]
    insecure: bool,
    /// The most client connections (client and Redis doors together)
    /// served at once; one more gets a refusal (`TooManyConnections`, or
    /// `-ERR max clients reached`) and is closed. Default: 10000, or less
    /// to fit the open-file limit (raised to its hard limit at start) with
    /// room kept for the peer links, the store and the listeners.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    max_connections: Option<u64>,
    /// Serve metrics and the status page over HTTP on ADDR (HTTPS with
    /// --certs-dir): /metrics (Prometheus), /health, /ready, /status.json
    /// and a live status page at /. Off by default.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<SocketAddr>,
    /// Serve PD's gRPC API for timestamps on ADDR (GetMembers, Tso,
    /// GetClusterInfo, grpc.health.v1): TiKV's and PD's own clients take
    /// timestamps from this node unchanged. HTTPS with --certs-dir (client
    /// certificates of the cluster's CA required). Needs a --cluster-id
    /// other than 0. Off by default.
    #[arg(long, value_name = "ADDR")]
    pd: Option<SocketAddr>,
}

#[derive(Debug, Args)]
struct ClientArgs {
    /// The nodes' client addresses, comma-separated (`a:7400,b:7400,c:7400`);
    /// `get-ts` follows the leader from any of them.
    #[arg(long, value_name = "LIST", default_value = "127.0.0.1:7400")]
    addr: String,
    /// The cluster the server must belong to (0 accepts any).
    #[arg(long, default_value_t = 0)]
    cluster_id: u64,
    /// How long to wait for a connection and for each reply, in ms.
    #[arg(long, value_name = "MS", default_value_t = 3000)]
    timeout_ms: u64,
    /// How long `get-ts` keeps retrying (no leader during a failover, a
    /// node restarting) before it gives up, in ms.
    #[arg(long, value_name = "MS", default_value_t = 7000)]
    deadline_ms: u64,
    /// Speak TLS, with the cluster's CA and the user's certificate from DIR
    /// (`leasetso cert`): `ca.crt`, `client.USER.crt`, `client.USER.key`.
    #[arg(long, value_name = "DIR")]
    certs_dir: Option<PathBuf>,
    /// Whose certificate to present (with --certs-dir).
    #[arg(long, value_name = "NAME", default_value = "root", requires = "certs_dir")]
    user: String,
}

#[derive(Debug, Args)]
struct GetTsArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// How many timestamps; the last of the range is printed.
    #[arg(long, default_value_t = 1)]
    count: u32,
}

#[derive(Debug, Args)]
struct StatusArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Print one JSON document instead of lines: an array with an object
    /// per address, the text line's keys with typed values (`{addr, error}`
    /// for a node that does not answer). README, "Status as JSON".
    #[arg(long)]
    json: bool,
}

/// The nodes to ask, for a command that asks each once.
#[derive(Debug, Args)]
struct NodesArgs {
    #[command(flatten)]
    client: ClientArgs,
}

fn main() -> ExitCode {
    let args = match config::with_config_file(&Cli::command(), std::env::args_os().collect()) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("leasetso: error: {e}");
            // As clap exits on a usage error.
            return ExitCode::from(2);
        }
    };
    let cli = Cli::parse_from(args);
    init_logging(match &cli.command {
        Command::Serve(args) => args.log_format,
        _ => LogFormat::Text,
    });
    let result = match cli.command {
        Command::Serve(args) => serve(*args),
        Command::GetTs(args) => get_ts(args),
        Command::Status(args) => status(args),
        Command::Primary(PrimaryCommand::Show(args)) => primary_show(args),
        Command::Primary(PrimaryCommand::Clear(args)) => primary_clear(args),
        Command::Cert(command) => cert(command),
        Command::Data(command) => data::run(command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("leasetso: error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr (stdout carries command output), filtered by `RUST_LOG`, default `info`.
fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).try_init(),
        // Fields beside `message` rather than under `fields`: what log
        // collectors index without a pipeline of their own.
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Parses `--peers`: `ID=HOST:PORT` entries, ids 1-based and exactly
/// `1..=n`, no address twice, `n` one of 1, 3, 5. Returns the addresses in
/// id order.
fn parse_peers(list: &str) -> Result<Vec<SocketAddr>, String> {
    let mut by_id: Vec<(u16, SocketAddr)> = Vec::new();
    for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (id, addr) =
            entry.split_once('=').ok_or_else(|| format!("--peers entry {entry:?} is not ID=HOST:PORT"))?;
        let id: u16 = id
            .trim()
            .parse()
            .ok()
            .filter(|&i| i >= 1)
            .ok_or_else(|| format!("--peers entry {entry:?}: the id must be a number from 1"))?;
        let resolved = addr
            .trim()
            .to_socket_addrs()
            .map_err(|e| format!("--peers entry {entry:?}: cannot resolve {addr:?}: {e}"))?
            .next()
            .ok_or_else(|| format!("--peers entry {entry:?}: {addr:?} resolves to no address"))?;
        if by_id.iter().any(|&(i, _)| i == id) {
            return Err(format!("--peers names node {id} twice"));
        }
        if let Some(&(other, _)) = by_id.iter().find(|&&(_, a)| a == resolved) {
            return Err(format!("--peers gives nodes {other} and {id} the same address {resolved}"));
        }
        by_id.push((id, resolved));
    }
    let n = by_id.len();
    if !matches!(n, 1 | 3 | 5) {
        return Err(format!(
            "--peers lists {n} nodes: a cluster has 1, 3 or 5 (an even size tolerates no more failures \
             than one node fewer; more than 5 only slows every round)"
        ));
    }
    by_id.sort_unstable();
    if let Some((missing, _)) = by_id.iter().enumerate().find(|&(i, &(id, _))| usize::from(id) != i + 1) {
        return Err(format!("--peers must name nodes 1 to {n}; node {} is missing", missing + 1));
    }
    Ok(by_id.into_iter().map(|(_, a)| a).collect())
}

fn serve(args: ServeArgs) -> Result<(), String> {
    let (id, peers) = match (args.id, args.peers.as_deref()) {
        (Some(id), Some(list)) => {
            let peers = parse_peers(list)?;
            if id == 0 || usize::from(id) > peers.len() {
                return Err(format!("--id {id} is not in --peers (nodes 1 to {})", peers.len()));
            }
            (NodeId(id - 1), peers)
        }
        _ => (NodeId(0), Vec::new()),
    };
    let nodes = peers.len().max(1) as u16;
    if nodes > 1 && args.advertise.is_none() && args.listen.ip().is_unspecified() {
        return Err(format!(
            "--listen {} is a wildcard address, which peers cannot hand out to clients: \
             set --advertise to this node's client address",
            args.listen
        ));
    }
    if args.advertise.is_some_and(|a| a.ip().is_unspecified()) {
        return Err("--advertise must be an address clients can reach, not a wildcard".into());
    }
    plaintext_only_on_loopback(&args, peers.get(usize::from(id.0)).copied())?;
    let mut node = NodeConfig::new(id, nodes);
    node.mode = match args.mode {
        ModeArg::Deferring => Mode::Deferring,
        ModeArg::Primary => Mode::Primary,
    };
    // Nodes of one cluster jitter their backoffs differently.
    node.seed = u64::from(id.0).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ args.cluster_id;
    node.lease.duration = Duration::from_millis(args.lease_ms);
    if let Some(ms) = args.save_interval_ms {
        node.oracle.save_interval_ms = ms;
    }
    if let Some(ms) = args.update_interval_ms {
        node.oracle.update_interval = Duration::from_millis(ms);
    }
    node.oracle.max_ahead_ms = args
        .max_ahead_ms
        .unwrap_or_else(|| leasetso_core::oracle::default_max_ahead_ms(node.oracle.save_interval_ms));
    node.validate().map_err(|e| format!("invalid configuration: {e}"))?;
    if args.check_config {
        println!("{}", checked(&args, id, nodes));
        return Ok(());
    }
    let resp_password = args.resp_password_file.as_deref().map(read_password).transpose()?;
    let cluster = nodes > 1;
    // One configuration type serves both runtimes (leasetso-runtime-common's).
    let cfg = ServerConfig {
        listen: args.listen,
        data_dir: args.data,
        cluster_id: args.cluster_id,
        node,
        peers,
        advertise: args.advertise,
        resp: args.resp,
        certs_dir: args.certs_dir,
        resp_password,
        max_connections: args.max_connections.map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
        metrics: args.metrics,
        pd: None,
    };
    // The PD door's listener is bound first: its address goes into the
    // peer handshake, so every node lists it among the members.
    let pd = args.pd.map(|addr| PdListener::bind(addr, args.cluster_id)).transpose()?;
    let mut cfg = cfg;
    cfg.pd = pd.as_ref().map(|pd| pd.addr);
    // Installed before the server starts, so a signal that arrives during
    // start-up still stops it cleanly once it runs.
    let signals = install_signals();
    let pd_addr = cfg.pd;
    let ready = |addr, peer, resp, metrics| Ready { cluster, id, addr, peer, resp, metrics, pd: pd_addr };
    match args.runtime {
        RuntimeArg::Std => {
            let server = Server::start(cfg).map_err(|e| e.to_string())?;
            let _pd = pd.map(|pd| pd.start(server.kit())).transpose()?;
            let stop = server.stop_handle();
            let stopped = stop_on_signal(signals, move || stop.stop());
            let ready =
                ready(server.local_addr(), server.peer_addr(), server.resp_addr(), server.metrics_addr());
            ready.announce(&stopped, |timeout| server.wait_serving(timeout));
            server.wait();
            Ok(())
        }
        RuntimeArg::Smol => {
            // Every core serves client connections, as the std server's threads do.
            let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
            let server = leasetso_smol::Server::bind(cfg).map_err(|e| e.to_string())?.with_workers(workers);
            let _pd = pd.map(|pd| pd.start(server.kit())).transpose()?;
            let handle = server.handle();
            let stop = handle.clone();
            let stopped = stop_on_signal(signals, move || stop.stop());
            let ready =
                ready(server.local_addr(), server.peer_addr(), server.resp_addr(), server.metrics_addr());
            // The server's tasks run inside `Server::run`, driven here by
            // `smol::block_on`; the ready lines come from beside it.
            let announcing = std::thread::spawn(move || {
                ready.announce(&stopped, |timeout| smol::block_on(handle.wait_serving(timeout)))
            });
            let result = smol::block_on(server.run());
            let _ = announcing.join();
            result.map_err(|e| e.to_string())
        }
    }
}

/// What `serve --check-config` prints once the flags pass: what the node
/// would run as, one line of `key=value` pairs, so an operator sees what the
/// file and the command line came to.
fn checked(args: &ServeArgs, id: NodeId, nodes: u16) -> String {
    let path =
        |p: Option<&std::path::Path>| p.map_or_else(|| "none".to_string(), |p| p.display().to_string());
    format!(
        "config ok: node={} nodes={nodes} cluster_id={} listen={} data={} certs_dir={} runtime={} mode={} \
         log_format={}",
        id.0 + 1,
        args.cluster_id,
        args.listen,
        args.data.display(),
        path(args.certs_dir.as_deref()),
        value_name(args.runtime),
        value_name(args.mode),
        value_name(args.log_format),
    )
}

/// A value of a flag's enum as the command line spells it.
fn value_name(value: impl clap::ValueEnum) -> String {
    value.to_possible_value().map_or_else(String::new, |v| v.get_name().to_string())
}

/// The RESP door's password from `file`: its first line, which must not be
/// empty (a trailing newline is not part of it).
fn read_password(file: &std::path::Path) -> Result<Secret, String> {
    let text =
        std::fs::read_to_string(file).map_err(|e| format!("--resp-password-file {}: {e}", file.display()))?;
    let line = text.lines().next().unwrap_or("");
    if line.is_empty() {
        return Err(format!(
            "--resp-password-file {}: the first line (the password) is empty",
            file.display()
        ));
    }
    Ok(Secret(Arc::from(line.as_bytes())))
}

/// Plaintext is for loopback: every address this node listens on (clients,
/// the Redis door, its peer port) must be a loopback address unless the
/// operator says `--insecure`. A wildcard listens on every interface, so it
/// is not loopback.
fn plaintext_only_on_loopback(args: &ServeArgs, peer: Option<SocketAddr>) -> Result<(), String> {
    if args.insecure {
        return Ok(());
    }
    // With --certs-dir every door and the peer port speak TLS.
    if args.certs_dir.is_some() {
        return Ok(());
    }
    let listening = [
        ("--listen", Some(args.listen)),
        ("--resp", args.resp),
        ("--metrics", args.metrics),
        ("--pd", args.pd),
        ("--peers (this node)", peer),
    ];
    match listening.into_iter().find_map(|(flag, a)| a.filter(|a| !a.ip().is_loopback()).map(|a| (flag, a))) {
        None => Ok(()),
        Some((flag, addr)) => Err(format!(
            "{flag} {addr} is not a loopback address, and this node would serve it in plaintext: \
             any process that can reach it could take timestamps, and on the peer port speak for a \
             node. Pass --certs-dir for TLS on every door (`leasetso cert` makes the \
             certificates), --insecure to serve plaintext there on purpose, or listen on 127.0.0.1"
        )),
    }
}

/// The PD door's listener, bound before the server starts (its address is
/// advertised in the peer handshake), and the door once the server runs.
struct PdListener {
    listener: std::net::TcpListener,
    addr: SocketAddr,
}

impl PdListener {
    fn bind(addr: SocketAddr, cluster_id: u64) -> Result<PdListener, String> {
        if cluster_id == 0 {
            return Err(leasetso_grpc::GrpcError::ZeroClusterId.to_string());
        }
        let listener = std::net::TcpListener::bind(addr).map_err(|e| format!("--pd {addr}: {e}"))?;
        let addr = listener.local_addr().map_err(|e| format!("--pd {addr}: {e}"))?;
        Ok(PdListener { listener, addr })
    }

    /// The door over the running server's kit, on a runtime of one thread:
    /// its work per batch is a lock and a few writes, and a second worker
    /// costs more in cross-thread wake-ups than it adds (BENCHMARKS.md
    /// section 16: at 256 callers 1.99x tsoracle with one thread and two
    /// requests in flight 3.03x, against 1.81x with two threads).
    fn start(self, kit: leasetso_runtime_common::SharedKit) -> Result<leasetso_grpc::PdDoor, String> {
        let threads = 1;
        leasetso_grpc::PdDoor::start(self.listener, kit, threads).map_err(|e| e.to_string())
    }
}

/// Ctrl-C and SIGTERM, as a channel that says once that one arrived.
fn install_signals() -> std::sync::mpsc::Receiver<()> {
    let (signal_tx, signal_rx) = std::sync::mpsc::channel::<()>();
    if let Err(e) = ctrlc::set_handler(move || {
        let _ = signal_tx.send(());
    }) {
        tracing::warn!(error = %e, "cannot handle Ctrl-C / SIGTERM; stop the process another way");
    }
    signal_rx
}

/// Calls `stop` when the first signal arrives; the flag says whether it did.
fn stop_on_signal(
    signals: std::sync::mpsc::Receiver<()>,
    stop: impl FnOnce() + Send + 'static,
) -> Arc<AtomicBool> {
    let stopped = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stopped);
    std::thread::spawn(move || {
        if signals.recv().is_ok() {
            flag.store(true, Ordering::SeqCst);
            stop();
        }
    });
    stopped
}

/// What `serve` prints on stderr once the node is up: scripts read the
/// addresses from these lines, so they are printed, not logged, and their
/// format does not depend on `RUST_LOG`.
struct Ready {
    cluster: bool,
    id: NodeId,
    addr: SocketAddr,
    peer: Option<SocketAddr>,
    resp: Option<SocketAddr>,
    metrics: Option<SocketAddr>,
    pd: Option<SocketAddr>,
}

impl Ready {
    /// A cluster node is ready once it listens (which node serves is the
    /// election's business); a single node once it serves, or after
    /// [`READY_WAIT`] with a warning. Nothing after a signal stopped it.
    fn announce(&self, stopped: &AtomicBool, wait_serving: impl FnOnce(Duration) -> bool) {
        if let Some(addr) = self.resp {
            // Before the ready line, so that whoever waits for it can read this too.
            eprintln!("leasetso: RESP on {addr}");
        }
        if let Some(addr) = self.metrics {
            eprintln!("leasetso: metrics on {addr}");
        }
        if let Some(addr) = self.pd {
            eprintln!("leasetso: PD on {addr}");
        }
        if self.cluster {
            let peer = self.peer.map_or_else(String::new, |a| a.to_string());
            eprintln!("leasetso: node {} listening on {} (peers on {peer})", self.id.0 + 1, self.addr);
            return;
        }
        if !wait_serving(READY_WAIT) && !stopped.load(Ordering::SeqCst) {
            tracing::warn!(after = ?READY_WAIT, "the node does not serve timestamps yet; listening anyway");
        }
        if !stopped.load(Ordering::SeqCst) {
            eprintln!("leasetso: serving on {}", self.addr);
        }
    }
}

fn cert(command: CertCommand) -> Result<(), String> {
    let written = match command {
        CertCommand::CreateCa { dir, cluster_id, days } => cert::create_ca(&dir.certs_dir, cluster_id, days),
        CertCommand::CreateNode { dir, id, host, days } => cert::create_node(&dir.certs_dir, id, &host, days),
        CertCommand::CreateClient { dir, name, admin, days } => {
            cert::create_client(&dir.certs_dir, &name, admin, days)
        }
    }
    .map_err(|e| e.to_string())?;
    for path in written {
        println!("{}", path.display());
    }
    Ok(())
}

fn options(args: &ClientArgs) -> Result<ClientOptions, String> {
    let timeout = Duration::from_millis(args.timeout_ms);
    let tls = match &args.certs_dir {
        Some(dir) => Some(
            ClientTls::from_dir(dir, &args.user)
                .map_err(|e| format!("--certs-dir {}: {e}", dir.display()))?,
        ),
        None => None,
    };
    Ok(ClientOptions {
        cluster_id: args.cluster_id,
        connect_timeout: timeout,
        request_timeout: timeout,
        deadline: Duration::from_millis(args.deadline_ms),
        tls,
        ..ClientOptions::default()
    })
}

fn get_ts(args: GetTsArgs) -> Result<(), String> {
    let seeds = parse_seeds(&args.client.addr).map_err(|e| e.to_string())?;
    let client = Client::connect_with(&seeds[..], options(&args.client)?).map_err(|e| e.to_string())?;
    let last = client.get_ts_n(args.count).map_err(|e| e.to_string())?;
    println!("{}", last.to_u64());
    Ok(())
}

/// One line per address given: that node's own status (no redirects), or
/// why it gave none; with `--json`, one JSON array of the same. Fails only
/// if no node answered.
fn status(args: StatusArgs) -> Result<(), String> {
    if !args.json {
        return each_node(&args.client, |client| client.status().map(|status| status.to_string()));
    }
    let answers = ask_each(&args.client, Client::status)?;
    let array = answers
        .into_iter()
        .map(|(addr, answer)| match answer {
            Ok(status) => status_json(addr, &status),
            Err(e) => unreachable_json(addr, &e.to_string()),
        })
        .collect();
    let text = serde_json::to_string_pretty(&serde_json::Value::Array(array)).map_err(|e| e.to_string())?;
    println!("{text}");
    Ok(())
}

/// Asks every address of `args` once (no retries: it reports what is) and
/// prints a line per address, `addr=... ` and what `ask` made of that node's
/// answer, or its error. Fails, printing nothing, if no node answered.
fn each_node(args: &ClientArgs, ask: impl Fn(&Client) -> Result<String, ClientError>) -> Result<(), String> {
    for (addr, answer) in ask_each(args, ask)? {
        match answer {
            Ok(line) => println!("addr={addr} {line}"),
            Err(e) => println!("addr={addr} error={:?}", e.to_string()),
        }
    }
    Ok(())
}

/// An address asked and what came of it.
type Answered<T> = (SocketAddr, Result<T, ClientError>);

/// Every address of `args` with what `ask` made of that node (connected
/// once, no retries), in the order given; an error, naming the last
/// failure, if no node answered.
fn ask_each<T>(
    args: &ClientArgs,
    ask: impl Fn(&Client) -> Result<T, ClientError>,
) -> Result<Vec<Answered<T>>, String> {
    let seeds = parse_seeds(&args.addr).map_err(|e| e.to_string())?;
    let opts = ClientOptions { deadline: Duration::ZERO, ..options(args)? };
    let answers: Vec<_> = seeds
        .iter()
        .map(|addr| (*addr, Client::connect_with(*addr, opts.clone()).and_then(|c| ask(&c))))
        .collect();
    if answers.iter().all(|(_, answer)| answer.is_err()) {
        let last = answers.iter().rev().find_map(|(_, a)| a.as_ref().err()).map(ToString::to_string);
        return Err(format!("no node answered: {}", last.unwrap_or_default()));
    }
    Ok(answers)
}

fn show_registration(r: Option<(NodeId, Ballot)>) -> String {
    match r {
        Some((id, tag)) => format!("primary={} tag={tag}", id.0 + 1),
        None => "primary=none".to_string(),
    }
}

/// One line per address: the registration that node's replica holds.
fn primary_show(args: NodesArgs) -> Result<(), String> {
    each_node(&args.client, |client| {
        let node = client.status()?.node;
        Ok(format!("node={} {}", node.0 + 1, show_registration(client.read_primary()?)))
    })
}

/// Parses a tag as `status` and `primary show` print it: `(C,R,N)`.
fn parse_tag(s: &str) -> Result<Ballot, String> {
    let inner = s.trim().trim_start_matches('(').trim_end_matches(')');
    let parts: Vec<&str> = inner.split(',').map(str::trim).collect();
    let bad = || format!("--tag {s:?} is not (COUNTER,RESTART,NODE) as `primary show` prints it");
    let [c, r, n] = parts[..] else { return Err(bad()) };
    Ok(Ballot::new(
        c.parse().map_err(|_| bad())?,
        r.parse().map_err(|_| bad())?,
        NodeId(n.parse().map_err(|_| bad())?),
    ))
}

/// Clears `(id, tag)` on every replica that answers, and succeeds once a
/// quorum of the cluster holds no such registration. Refused while the
/// registered node serves: clearing under a serving primary would let a
/// deferring node campaign against it for nothing (they share one lease, so
/// never two servers, but the primary would lose its lease to no purpose).
fn primary_clear(args: ClearArgs) -> Result<(), String> {
    if args.id == 0 {
        return Err("--id is 1-based".into());
    }
    let node = NodeId(args.id - 1);
    let tag = parse_tag(&args.tag)?;
    let seeds = parse_seeds(&args.client.addr).map_err(|e| e.to_string())?;
    let opts = ClientOptions { deadline: Duration::ZERO, ..options(&args.client)? };
    let mut clients = Vec::new();
    let mut nodes = 0u16;
    for addr in &seeds {
        match Client::connect_with(*addr, opts.clone()).and_then(|c| c.status().map(|s| (c, s))) {
            Ok((client, status)) => {
                if status.node == node && status.role == Role::Leader {
                    return Err(format!(
                        "node {} at {addr} is the registered primary and serves timestamps: stop it (or restart \
                         it with --mode deferring) before clearing its registration",
                        args.id
                    ));
                }
                nodes = nodes.max(status.view.nodes);
                clients.push((*addr, status.node, client));
            }
            Err(e) => eprintln!("leasetso: {addr}: {e}"),
        }
    }
    let mut cleared = 0u16;
    for (addr, id, client) in &clients {
        match client.clear_primary(node, tag) {
            Ok(after) => {
                println!("addr={addr} node={} {}", id.0 + 1, show_registration(after));
                if after != Some((node, tag)) {
                    cleared += 1;
                }
            }
            Err(e) => eprintln!("leasetso: {addr}: {e}"),
        }
    }
    let quorum = nodes / 2 + 1;
    if nodes == 0 || cleared < quorum {
        return Err(format!(
            "the registration is gone from {cleared} replicas, fewer than a quorum of {quorum}: run again with \
             every node's address once they are reachable"
        ));
    }
    Ok(())
}
