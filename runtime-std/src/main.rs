//! `leasetso`: run a timestamp oracle node, or ask one for timestamps or its status.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use leasetso_std::{Client, ClientOptions, NodeConfig, Server, ServerConfig};
use tracing_subscriber::EnvFilter;

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
    Serve(ServeArgs),
    /// Ask a server for timestamps and print the last one (packed u64).
    GetTs(GetTsArgs),
    /// Print a server's role, leader, saved window end and current timestamp.
    Status(StatusArgs),
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// The address clients connect to (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:7400")]
    listen: SocketAddr,
    /// The directory of the durable store; created if missing.
    #[arg(long = "data", value_name = "DIR", default_value = "./leasetso-data")]
    data: PathBuf,
    /// The cluster id; the data dir and clients must agree with it.
    #[arg(long, default_value_t = 1)]
    cluster_id: u64,
    /// How far ahead of the current timestamp the window is saved, in ms.
    #[arg(long, value_name = "MS")]
    save_interval_ms: Option<u64>,
    /// How often the timestamp's physical part follows the wall clock, in ms.
    #[arg(long, value_name = "MS")]
    update_interval_ms: Option<u64>,
}

#[derive(Debug, Args)]
struct ClientArgs {
    /// The server's client address.
    #[arg(long, default_value = "127.0.0.1:7400")]
    addr: String,
    /// The cluster the server must belong to (0 accepts any).
    #[arg(long, default_value_t = 0)]
    cluster_id: u64,
    /// How long to wait for a connection and for each reply, in ms.
    #[arg(long, value_name = "MS", default_value_t = 3000)]
    timeout_ms: u64,
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let result = match cli.command {
        Command::Serve(args) => serve(args),
        Command::GetTs(args) => get_ts(args),
        Command::Status(args) => status(args),
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
fn init_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

fn serve(args: ServeArgs) -> Result<(), String> {
    let mut node = NodeConfig::single();
    if let Some(ms) = args.save_interval_ms {
        node.oracle.save_interval_ms = ms;
    }
    if let Some(ms) = args.update_interval_ms {
        node.oracle.update_interval = Duration::from_millis(ms);
    }
    let cfg = ServerConfig { listen: args.listen, data_dir: args.data, cluster_id: args.cluster_id, node };
    // The handler is installed before the server starts, so a signal that
    // arrives during start-up still stops it cleanly once it runs.
    let (signal_tx, signal_rx) = std::sync::mpsc::channel::<()>();
    if let Err(e) = ctrlc::set_handler(move || {
        let _ = signal_tx.send(());
    }) {
        tracing::warn!(error = %e, "cannot handle Ctrl-C / SIGTERM; stop the process another way");
    }
    let server = Server::start(cfg).map_err(|e| e.to_string())?;
    let stop = server.stop_handle();
    let stopped_early = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stopped_early);
    std::thread::spawn(move || {
        if signal_rx.recv().is_ok() {
            flag.store(true, Ordering::SeqCst);
            stop.stop();
        }
    });
    if !server.wait_serving(READY_WAIT) && !stopped_early.load(Ordering::SeqCst) {
        tracing::warn!(after = ?READY_WAIT, "the node does not serve timestamps yet; listening anyway");
    }
    if !stopped_early.load(Ordering::SeqCst) {
        // Printed directly, not logged, so its format does not depend on
        // RUST_LOG: scripts read the address from it.
        eprintln!("leasetso: serving on {}", server.local_addr());
    }
    server.wait();
    Ok(())
}

fn connect(args: &ClientArgs) -> Result<Client, String> {
    let timeout = Duration::from_millis(args.timeout_ms);
    let opts = ClientOptions {
        cluster_id: args.cluster_id,
        connect_timeout: timeout,
        request_timeout: timeout,
        ..ClientOptions::default()
    };
    Client::connect_with(args.addr.as_str(), opts).map_err(|e| e.to_string())
}

fn get_ts(args: GetTsArgs) -> Result<(), String> {
    let client = connect(&args.client)?;
    let last = client.get_ts_n(args.count).map_err(|e| e.to_string())?;
    println!("{}", last.to_u64());
    Ok(())
}

fn status(args: StatusArgs) -> Result<(), String> {
    let client = connect(&args.client)?;
    let status = client.status().map_err(|e| e.to_string())?;
    println!("{status}");
    Ok(())
}
