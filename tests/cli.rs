//! The `leasetso` command line: `get-ts`, `status` (and `status --json`),
//! `--help`, `serve --config` and `--log-format json`, and how it fails when
//! there is nothing to talk to or the arguments are wrong.

use std::path::Path;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use leasetso_core::Timestamp;
use leasetso_tests::{
    ChildGuard, CliOutput, Drained, RawConn, START_TIMEOUT, STOP_TIMEOUT, ServerProcess, data_dir, dead_addr,
    free_addrs, leasetso_bin, parse_loopback_addr, run_cli, send_signal, spawn_drained, wait_timeout,
    wall_ms,
};
use serde_json::Value;

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
    for flag in ["--listen", "--data", "--cluster-id", "--config", "--check-config", "--log-format"] {
        assert!(out.stdout.contains(flag), "serve --help does not mention {flag}:\n{}", out.stdout);
    }
    for args in [&["get-ts", "--help"][..], &["status", "--help"]] {
        let out = cli(args);
        assert_ok(&out, &format!("{args:?}"));
        assert!(out.stdout.contains("--addr"), "{args:?} does not mention --addr:\n{}", out.stdout);
    }
    assert!(cli(&["get-ts", "--help"]).stdout.contains("--count"));
    assert!(cli(&["status", "--help"]).stdout.contains("--json"));
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

/// The `key=value` pairs of one `status` line (`store=` last: its value may
/// have spaces).
fn text_fields(line: &str) -> Vec<(String, String)> {
    let (head, store) = line.split_once(" store=").unwrap_or_else(|| panic!("no store= in {line:?}"));
    let mut fields: Vec<(String, String)> = head
        .split_whitespace()
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or_else(|| panic!("{kv:?} in {line:?} is not key=value"));
            (k.to_string(), v.to_string())
        })
        .collect();
    fields.push(("store".into(), store.into()));
    fields
}

/// The one `status` line for `addr`.
fn status_line(addr: &str) -> Vec<(String, String)> {
    let out = cli(&["status", "--addr", addr]);
    assert_ok(&out, "status");
    text_fields(out.stdout.trim())
}

fn get<'a>(fields: &'a [(String, String)], key: &str) -> &'a str {
    fields
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {key}= in {fields:?}"))
}

/// The JSON form of a ballot as the text line prints it: `(c,r,n)`, node
/// 0-based there and 1-based in the object.
fn ballot_text(json: &Value) -> String {
    if json.is_null() {
        return "none".into();
    }
    let text = json["text"].as_str().unwrap_or_else(|| panic!("ballot {json} has no text"));
    let n = json["node"].as_u64().expect("a ballot's node");
    assert_eq!(text, format!("({},{},{})", json["counter"], json["restart"], n - 1), "ballot {json}");
    text.to_string()
}

/// A 1-based id as the text line prints it (`none` for null).
fn id_text(json: &Value) -> String {
    if json.is_null() { "none".into() } else { json.as_u64().expect("an id").to_string() }
}

#[test]
fn status_json_says_what_the_text_line_says() {
    let dir = data_dir();
    let server = ServerProcess::start_serving(dir.path());
    let addr = server.addr().to_string();
    let dead = dead_addr().to_string();

    // Text, JSON, text: what does not move must be equal, what moves
    // (the current timestamp, the window, the lease's renewals) between.
    let before = status_line(&addr);
    let out = cli(&["status", "--json", "--addr", &format!("{addr},{dead}")]);
    assert_ok(&out, "status --json");
    let after = status_line(&addr);
    let doc: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("status --json printed no JSON document ({e}):\n{}", out.stdout));
    let nodes = doc.as_array().unwrap_or_else(|| panic!("not an array: {doc}"));
    assert_eq!(nodes.len(), 2, "one object per address: {doc}");
    let (json, unreachable) = (&nodes[0], &nodes[1]);

    assert_eq!(json["addr"], addr.as_str());
    for key in ["node", "leader", "lease_owner"] {
        assert_eq!(id_text(&json[key]), get(&before, key), "{key}: {json}");
    }
    assert_eq!(json["node"], 1);
    for key in ["role", "mode", "leader_addr"] {
        assert_eq!(json[key].as_str(), Some(get(&before, key)), "{key}: {json}");
    }
    assert_eq!(json["role"], "leader");
    assert_eq!(id_text(&json["primary"]), get(&before, "primary"));
    assert!(json["primary_tag"].is_null(), "{json}");
    assert_eq!(ballot_text(&json["fence"]), get(&before, "fence"), "a leadership's fence stays: {json}");
    assert_eq!(json["quarantine_left_ms"], 0);
    let lease_counter = json["lease"]["counter"].as_u64().expect("a lease counter");
    let counter = |fields: &[(String, String)]| -> u64 {
        get(fields, "lease")
            .trim_matches(|c| c == '(' || c == ')')
            .split(',')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(
        (counter(&before)..=counter(&after)).contains(&lease_counter),
        "lease {json} vs {before:?}, {after:?}"
    );
    let left = json["lease_left_ms"].as_u64().expect("lease_left_ms");
    assert!(left > 0 && left <= 3000, "lease_left_ms {left}");
    let number = |fields: &[(String, String)], key: &str| -> u64 { get(fields, key).parse().unwrap() };
    let window = json["window_end_ms"].as_u64().expect("window_end_ms");
    assert!(
        (number(&before, "window_end_ms")..=number(&after, "window_end_ms")).contains(&window),
        "window_end_ms {window} vs {before:?}, {after:?}"
    );
    let current = &json["current"];
    let packed = current["packed"].as_u64().expect("current.packed, exactly");
    assert!((number(&before, "current")..=number(&after, "current")).contains(&packed), "current {current}");
    let parts = Timestamp::from_u64(packed);
    assert_eq!(current["physical_ms"].as_u64(), Some(parts.physical_ms), "{current}");
    assert_eq!(current["logical"].as_u64(), Some(u64::from(parts.logical)), "{current}");
    assert!(window > parts.physical_ms, "window {window} not above {current}");
    let links: Vec<String> = json["links"]
        .as_array()
        .expect("links")
        .iter()
        .map(|l| format!("{}:{}", l["node"], l["state"].as_str().expect("a link state")))
        .collect();
    assert_eq!(links.join(","), get(&before, "links"));
    assert_eq!(json["store"]["health"].as_str(), Some(get(&before, "store")));
    assert_eq!(json["store"]["ok"], true);
    // Every key of the text line is in the JSON object.
    for (key, _) in &before {
        assert!(json.get(key).is_some(), "{key} is missing from {json}");
    }

    // The node that does not answer: its address and why.
    assert_eq!(unreachable["addr"], dead.as_str(), "{unreachable}");
    let error = unreachable["error"].as_str().unwrap_or_else(|| panic!("no error in {unreachable}"));
    assert!(!error.is_empty() && unreachable.as_object().unwrap().len() == 2, "{unreachable}");

    // As the text form: it fails, printing nothing, when no node answers.
    let out = cli(&["status", "--json", "--addr", &dead]);
    assert_fails(&out, "status --json with no server");
    assert!(out.stderr.contains(&dead), "{:?}", out.stderr);
    server.stop();
}

/// The stderr lines of a child's log, without the harness's tags.
fn stderr_lines(log: &str) -> Vec<&str> {
    log.lines().filter_map(|l| l.trim_start().strip_prefix("[stderr] ")).collect()
}

#[test]
fn log_format_json_writes_one_object_per_line() {
    let dir = data_dir();
    let server = ServerProcess::start_with(dir.path(), &["--log-format", "json"]);
    server.wait_serving();
    let log = server.stop();
    let lines = stderr_lines(&log);
    let mut messages = Vec::new();
    for line in &lines {
        // The lines scripts wait for are printed, not logged: the same in both formats.
        if line.starts_with("leasetso: ") {
            continue;
        }
        let object: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("log line {line:?} is not JSON ({e}):\n{log}"));
        for key in ["timestamp", "level", "message", "target"] {
            assert!(object.get(key).is_some(), "log line {line:?} has no {key}");
        }
        messages.push(object);
    }
    assert!(lines.iter().any(|l| l.starts_with("leasetso: serving on 127.0.0.1:")), "{log}");
    let started = messages
        .iter()
        .find(|m| m["message"] == "node started")
        .unwrap_or_else(|| panic!("no \"node started\" event in:\n{log}"));
    // The event's fields are typed values beside the message.
    assert_eq!(started["node"], 1, "{started}");
    assert_eq!(started["level"], "INFO", "{started}");
    assert!(messages.iter().any(|m| m["message"] == "serving timestamps"), "{log}");

    // The default stays text.
    let dir = data_dir();
    let log = ServerProcess::start_serving(dir.path()).stop();
    let lines = stderr_lines(&log);
    assert!(lines.iter().any(|l| l.contains("node started") && !l.starts_with('{')), "{log}");
    assert!(
        lines.iter().all(|l| serde_json::from_str::<Value>(l).is_err()),
        "a JSON line by default:\n{log}"
    );
}

/// Writes `text` to `dir/name` and returns its path.
fn write_config(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn serve_takes_its_flags_from_a_config_file() {
    let dir = data_dir();
    let data = dir.path().join("data");
    let port = free_addrs(1)[0];
    let text = format!("listen = \"{port}\"\ncluster-id = 7\ndata = {:?}\n", data.to_str().unwrap());
    let file = write_config(dir.path(), "node.toml", &text);

    // The file alone: the server listens where it says, for its cluster.
    let Drained { child, log, ready, drains: _ } =
        spawn_drained(Command::new(leasetso_bin()).args(["serve", "--config", &file]), "serving on");
    let mut child = ChildGuard(child);
    let line = match ready.recv_timeout(START_TIMEOUT) {
        Ok(line) => line,
        Err(mpsc::RecvTimeoutError::Timeout | mpsc::RecvTimeoutError::Disconnected) => {
            panic!("serve --config: no ready line:\n{log}")
        }
    };
    assert_eq!(parse_loopback_addr(&line), Some(port), "ready line {line:?}");
    let addr = port.to_string();
    let out = cli(&["status", "--json", "--addr", &addr, "--cluster-id", "7"]);
    assert_ok(&out, "status of the configured server");
    let doc: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(doc[0]["node"], 1, "{doc}");
    let out = cli(&["get-ts", "--addr", &addr, "--cluster-id", "1", "--deadline-ms", "500"]);
    assert_fails(&out, "get-ts for cluster 1 from the file's cluster 7");
    assert!(
        data.read_dir().is_ok_and(|mut d| d.next().is_some()),
        "no store in the file's data dir {data:?}"
    );
    send_signal(child.0.id(), "TERM");
    let status =
        wait_timeout(&mut child.0, STOP_TIMEOUT).unwrap_or_else(|| panic!("no exit after SIGTERM:\n{log}"));
    assert!(status.success(), "exit {status}:\n{log}");

    // The command line overrides the file: the file's address is taken
    // (held here), and --listen 127.0.0.1:0 is used instead; so is --data.
    let held = std::net::TcpListener::bind(port).expect("the file's port again");
    let other = data_dir();
    let server = ServerProcess::start_with(other.path(), &["--config", &file]);
    assert_ne!(server.addr(), port);
    let out = cli(&["status", "--addr", &server.addr().to_string(), "--cluster-id", "7"]);
    assert_ok(&out, "the cluster id still comes from the file");
    drop(held);
    server.stop();

    // Checked at start, the key and the file named.
    for (text, key, words) in [
        ("listen = \"127.0.0.1:0\"\nclustr-id = 7\n", "clustr-id", &["unknown key", "cluster-id"][..]),
        ("cluster-id = \"seven\"\n", "cluster-id", &["must be an integer", "\"seven\""]),
        ("insecure = 1\n", "insecure", &["true or false"]),
        ("listen = \"127.0.0.1\"\n", "listen", &["invalid"]),
    ] {
        let bad = write_config(dir.path(), "bad.toml", text);
        let out = cli(&["serve", "--config", &bad, "--data", data.to_str().unwrap()]);
        assert_fails(&out, &format!("serve --config with {text:?}"));
        // A usage error's code: the unit does not restart it (RestartPreventExitStatus=2).
        assert_eq!(out.status.code(), Some(2), "{text:?}: {:?}", out.stderr);
        for word in [&format!("`{key}`"), bad.as_str()].into_iter().chain(words.iter().copied()) {
            assert!(out.stderr.contains(word), "{text:?}: {word:?} is not in {:?}", out.stderr);
        }
        assert!(!out.stderr.contains("serving on"), "{:?}", out.stderr);
    }
    let out = cli(&["serve", "--config", &dir.path().join("missing.toml").to_string_lossy()]);
    assert_fails(&out, "serve --config <missing file>");
    assert!(out.stderr.contains("missing.toml"), "{:?}", out.stderr);
}

#[test]
fn the_example_config_checks() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../contrib/config/node1.toml");
    let out = cli(&["serve", "--config", example, "--check-config"]);
    assert_ok(&out, "serve --config contrib/config/node1.toml --check-config");
    let line = out.stdout.trim();
    for word in [
        "node=1",
        "nodes=3",
        "cluster_id=3",
        "listen=10.0.0.1:7400",
        "certs_dir=/etc/leasetso/certs",
        "log_format=json",
    ] {
        assert!(line.contains(word), "{word} not in {line:?}");
    }
    // --check-config starts nothing: a flag that overrides it shows.
    let out = cli(&["serve", "--config", example, "--check-config", "--id", "2"]);
    assert_ok(&out, "--check-config --id 2");
    assert!(out.stdout.contains("node=2 "), "{:?}", out.stdout);
}
