//! The `leasetso` command line: `get-ts`, `status`, `--help`, and how it
//! fails when there is nothing to talk to or the arguments are wrong.

use std::time::{Duration, Instant};

use leasetso_core::Timestamp;
use leasetso_tests::{CliOutput, RawConn, ServerProcess, data_dir, dead_addr, run_cli, wall_ms};

/// No CLI call should take long: the client gives up after a few seconds.
const CLI_TIMEOUT: Duration = Duration::from_secs(30);

fn cli(args: &[&str]) -> CliOutput {
    run_cli(args, CLI_TIMEOUT)
}

fn assert_ok(out: &CliOutput, what: &str) {
    assert!(
        out.status.success(),
        "{what}: exit {}\n  stdout:\n{}  stderr:\n{}",
        out.status,
        out.stdout,
        out.stderr
    );
}

fn assert_fails(out: &CliOutput, what: &str) {
    assert!(
        !out.status.success() && out.status.code().is_some(),
        "{what}: expected a non-zero exit, got {}\n  stdout:\n{}  stderr:\n{}",
        out.status,
        out.stdout,
        out.stderr
    );
    assert!(!out.stderr.trim().is_empty(), "{what}: failed without a message on stderr");
    assert!(out.stdout.trim().is_empty(), "{what}: failed but printed on stdout:\n{}", out.stdout);
}

/// The single line `get-ts` prints, as a timestamp.
fn printed_ts(out: &CliOutput, what: &str) -> Timestamp {
    assert_ok(out, what);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{what}: expected exactly one line on stdout, got {:?}", out.stdout);
    let packed: u64 =
        lines[0].trim().parse().unwrap_or_else(|e| panic!("{what}: {:?} is not a u64: {e}", lines[0]));
    Timestamp::from_u64(packed)
}

#[test]
fn get_ts_and_status_against_a_running_server() {
    let dir = data_dir();
    let server = ServerProcess::start_serving(dir.path());
    let addr = server.addr().to_string();

    let one = printed_ts(&cli(&["get-ts", "--addr", &addr]), "get-ts");
    assert!(one.logical >= 1, "logical 0 handed out: {one:?}");
    let wall = wall_ms();
    assert!(one.physical_ms.abs_diff(wall) < 5_000, "physical {one:?} is far from the wall clock {wall}");

    let ten = printed_ts(&cli(&["get-ts", "--addr", &addr, "--count", "10"]), "get-ts --count 10");
    assert!(ten.logical >= 10, "a range of 10 ending at {ten:?} crosses a millisecond");
    assert!(ten.to_u64() - 9 > one.to_u64(), "get-ts --count 10 gave {ten:?} after {one:?}");

    // The largest count there is fills a whole millisecond.
    let full = printed_ts(&cli(&["get-ts", "--addr", &addr, "--count", "262143"]), "get-ts --count 262143");
    assert_eq!(full.logical, 262_143, "a full millisecond ends at the last logical: {full:?}");
    assert!(full > ten);
    // A host name resolves (localhost may be ::1 first, where nothing listens).
    let port = server.addr().port().to_string();
    let named =
        printed_ts(&cli(&["get-ts", "--addr", &format!("localhost:{port}")]), "get-ts --addr localhost");
    assert!(named > full);
    let ten = named;

    // What the server hands out next is above what the CLI printed.
    let mut conn = RawConn::open(server.addr());
    let next = conn.get_ts(1).unwrap().unwrap();
    assert!(next > ten, "{next:?} after the CLI printed {ten:?}");

    // status: one line of key=value pairs.
    let out = cli(&["status", "--addr", &addr]);
    assert_ok(&out, "status");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "status: expected one line, got {:?}", out.stdout);
    let line = lines[0];
    let field = |key: &str| -> &str {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
            .unwrap_or_else(|| panic!("status line {line:?} has no {key}="))
    };
    assert_eq!(field("role"), "leader", "status line {line:?}");
    assert_eq!(field("leader"), field("node"), "a single node leads itself: {line:?}");
    let window_end_ms: u64 = field("window_end_ms").parse().expect("window_end_ms is a number");
    let current = Timestamp::from_u64(field("current").parse().expect("current is a packed u64"));
    assert!(current >= next, "status current {current:?} is below {next:?}, handed out before");
    assert!(
        window_end_ms > current.physical_ms,
        "window end {window_end_ms} not above {current:?}: {line:?}"
    );

    // Arguments the client refuses, or the server would.
    for count in ["0", "262144", "-1", "many"] {
        assert_fails(
            &cli(&["get-ts", "--addr", &addr, "--count", count]),
            &format!("get-ts --count {count}"),
        );
    }
    // The server's cluster is 1 by default; a client that insists on another is refused.
    let out = cli(&["get-ts", "--addr", &addr, "--cluster-id", "99"]);
    assert_fails(&out, "get-ts --cluster-id 99");
    assert!(
        out.stderr.contains("ClusterMismatch"),
        "get-ts --cluster-id 99: unclear message {:?}",
        out.stderr
    );
    printed_ts(&cli(&["get-ts", "--addr", &addr, "--cluster-id", "1"]), "get-ts --cluster-id 1");
    server.stop();
}

#[test]
fn client_commands_fail_clearly_without_a_server() {
    let addr = dead_addr().to_string();
    for args in [
        &["get-ts", "--addr", &addr][..],
        &["get-ts", "--addr", &addr, "--count", "5"],
        &["status", "--addr", &addr],
    ] {
        let began = Instant::now();
        let out = cli(args);
        assert_fails(&out, &format!("{args:?} with no server"));
        assert!(out.stderr.contains(&addr), "{args:?}: the message does not name {addr}: {:?}", out.stderr);
        assert!(began.elapsed() < Duration::from_secs(10), "{args:?} took {:?} to give up", began.elapsed());
    }
    // An address that is not one.
    assert_fails(&cli(&["get-ts", "--addr", "not an address"]), "get-ts --addr 'not an address'");
}

#[test]
fn help_and_usage() {
    let out = cli(&["--help"]);
    assert_ok(&out, "--help");
    for word in ["serve", "get-ts", "status"] {
        assert!(out.stdout.contains(word), "--help does not mention {word}:\n{}", out.stdout);
    }
    let out = cli(&["serve", "--help"]);
    assert_ok(&out, "serve --help");
    for flag in ["--listen", "--data", "--cluster-id"] {
        assert!(out.stdout.contains(flag), "serve --help does not mention {flag}:\n{}", out.stdout);
    }
    for args in [&["get-ts", "--help"][..], &["status", "--help"]] {
        let out = cli(args);
        assert_ok(&out, &format!("{args:?}"));
        assert!(out.stdout.contains("--addr"), "{args:?} does not mention --addr:\n{}", out.stdout);
    }
    assert!(cli(&["get-ts", "--help"]).stdout.contains("--count"));
    let out = cli(&["--version"]);
    assert_ok(&out, "--version");
    assert!(out.stdout.contains(env!("CARGO_PKG_VERSION")), "--version: {:?}", out.stdout);

    // Usage errors: non-zero, explained on stderr.
    assert_fails(&cli(&[]), "no subcommand");
    assert_fails(&cli(&["frobnicate"]), "an unknown subcommand");
    assert_fails(&cli(&["get-ts", "--bogus"]), "an unknown flag");
    assert_fails(&cli(&["serve", "--listen", "nowhere"]), "serve --listen nowhere");
}

#[test]
fn serve_fails_clearly_when_the_port_is_taken() {
    let dir = data_dir();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let data = dir.path().to_str().unwrap();
    let out = cli(&["serve", "--listen", &addr, "--data", data]);
    assert_fails(&out, "serve on a port in use");
    assert!(out.stderr.contains(&addr), "the message does not name {addr}: {:?}", out.stderr);
    assert!(!out.stderr.contains("serving on"), "claimed to serve: {:?}", out.stderr);
    drop(taken);
    // A data dir that cannot be one.
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a store").unwrap();
    let out = cli(&["serve", "--listen", "127.0.0.1:0", "--data", file.to_str().unwrap()]);
    assert_fails(&out, "serve --data <a file>");
    assert!(out.stderr.contains("a-file"), "the message does not name the data dir: {:?}", out.stderr);
    // The failed starts left the data dir usable.
    let server = ServerProcess::start_serving(dir.path());
    server.stop();
}
