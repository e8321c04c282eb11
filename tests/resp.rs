//! The RESP door (`serve --resp ADDR`) against the real `redis-cli`
//! (Debian's `redis-tools`, which `.ci/run` installs):
//!
//! * `TSO` increases across calls, and `TSO 100` moves by the range;
//! * `PING`, `ECHO` and the commands clients send on connecting answer;
//! * unknown commands, wrong arity and bad counts get error replies, and
//!   protocol violations (a bad type byte, an oversized bulk) close only that
//!   connection: the server keeps serving;
//! * pipelined input, from `redis-cli` reading stdin, from `redis-cli --pipe`
//!   and from one raw write, is answered in order;
//! * in a 3-node cluster a follower answers `-NOTLEADER <leader's RESP address>`.
//!
//! Without `redis-cli` the tests say "skipped: redis-cli not installed" and
//! pass. Run alone with `cargo test -p leasetso-tests --test resp`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use leasetso_tests::harness::cluster::{Cluster, ClusterOptions, exclusive};
use leasetso_tests::{MAX_LOGICAL, READ_TIMEOUT, ServerProcess, data_dir, parse_loopback_addr, wait_timeout};

/// How long one `redis-cli` run may take.
const CLI_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a cluster may take to elect its first leader and to let every
/// follower learn who it is.
const ELECTION: Duration = Duration::from_secs(15);
/// What `main` prints before its ready line when `--resp` is given.
const RESP_LINE: &str = "leasetso: RESP on ";

/// Whether `redis-cli` runs here; says "skipped" once per test if not.
fn have_redis_cli() -> bool {
    let ok = Command::new("redis-cli")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("skipped: redis-cli not installed (Debian: apt-get install redis-tools)");
    }
    ok
}

/// The RESP address in a server's log.
fn resp_addr_in(log: &str) -> Option<SocketAddr> {
    log.lines().find(|l| l.contains(RESP_LINE)).and_then(parse_loopback_addr)
}

/// A single node with its RESP door on a free port.
fn start_server() -> (ServerProcess, SocketAddr, leasetso_tests::TempDir) {
    let dir = data_dir();
    let server = ServerProcess::start_with(dir.path(), &["--resp", "127.0.0.1:0"]);
    let log = server.log().text();
    let addr =
        resp_addr_in(&log).unwrap_or_else(|| panic!("no {RESP_LINE:?} line before the ready line:\n{log}"));
    (server, addr, dir)
}

/// `redis-cli -h 127.0.0.1 -p PORT <args>` with `stdin`; its stdout lines,
/// the blank ones (which follow an error reply) left out.
fn redis_cli(addr: SocketAddr, args: &[&str], stdin: &[u8]) -> Vec<String> {
    let port = addr.port().to_string();
    let mut child = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn redis-cli");
    let mut input = child.stdin.take().expect("piped stdin");
    let stdin = stdin.to_vec();
    let writer = thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let mut stdout = child.stdout.take().expect("piped stdout");
    let reader = thread::spawn(move || {
        let mut out = Vec::new();
        let _ = stdout.read_to_end(&mut out);
        out
    });
    let mut stderr = child.stderr.take().expect("piped stderr");
    let err_reader = thread::spawn(move || {
        let mut err = Vec::new();
        let _ = stderr.read_to_end(&mut err);
        err
    });
    let status = wait_timeout(&mut child, CLI_TIMEOUT);
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let _ = writer.join();
    let out = String::from_utf8_lossy(&reader.join().unwrap_or_default()).into_owned();
    let err = String::from_utf8_lossy(&err_reader.join().unwrap_or_default()).into_owned();
    let status =
        status.unwrap_or_else(|| panic!("redis-cli {args:?} hung\n  stdout: {out}\n  stderr: {err}"));
    assert!(status.success(), "redis-cli {args:?}: {status}\n  stdout: {out}\n  stderr: {err}");
    out.lines().map(str::trim_end).filter(|l| !l.is_empty()).map(String::from).collect()
}

/// One command through `redis-cli`: its one line of output.
fn one(addr: SocketAddr, args: &[&str]) -> String {
    let lines = redis_cli(addr, args, b"");
    assert_eq!(lines.len(), 1, "redis-cli {args:?} printed {lines:?}");
    lines.into_iter().next().unwrap_or_default()
}

/// `TSO [count]` through `redis-cli`, as a packed timestamp.
fn tso(addr: SocketAddr, count: Option<u32>) -> u64 {
    let count = count.map(|c| c.to_string());
    let mut args = vec!["TSO"];
    args.extend(count.as_deref());
    let line = one(addr, &args);
    line.parse().unwrap_or_else(|_| panic!("TSO {count:?} answered {line:?}"))
}

/// A raw RESP connection, for what `redis-cli` will not send.
fn raw(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect to the RESP door");
    stream.set_read_timeout(Some(READ_TIMEOUT)).expect("set a read timeout");
    stream
}

/// Everything the server sends until it closes the connection.
fn read_to_close(mut stream: TcpStream) -> String {
    let mut out = Vec::new();
    stream.read_to_end(&mut out).expect("the server closes the connection after a protocol error");
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads until `lines` CRLF-ended lines have arrived.
fn read_lines(stream: &mut TcpStream, lines: usize) -> Vec<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while buf.windows(2).filter(|w| w == b"\r\n").count() < lines {
        let n = stream.read(&mut chunk).expect("read replies");
        assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8_lossy(&buf).split("\r\n").filter(|l| !l.is_empty()).map(String::from).collect()
}

#[test]
fn tso_increases_and_moves_by_the_range() {
    if !have_redis_cli() {
        return;
    }
    let (server, addr, _dir) = start_server();
    let mut last = 0;
    for _ in 0..5 {
        let ts = tso(addr, None);
        assert!(ts > last, "TSO went from {last} to {ts}\n{}", server.log());
        last = ts;
    }
    let ranged = tso(addr, Some(100));
    assert!(ranged >= last + 100, "TSO 100 answered {ranged} after {last}: it must move by the range");
    // The range lies within one millisecond: its first timestamp has logical >= 1.
    assert!(
        ranged % u64::from(MAX_LOGICAL) >= 100,
        "TSO 100 answered {ranged}: the range crosses a millisecond"
    );
    let after = tso(addr, None);
    assert!(after > ranged, "TSO after the range answered {after}, not above {ranged}");
    // The binary protocol's clients and the RESP door share one oracle.
    let frame = server.wait_serving().to_u64();
    assert!(frame > after, "GetTS answered {frame} after TSO answered {after}");
    assert!(tso(addr, None) > frame);
    server.stop();
}

#[test]
fn ping_and_the_commands_clients_send() {
    if !have_redis_cli() {
        return;
    }
    let (server, addr, _dir) = start_server();
    assert_eq!(one(addr, &["PING"]), "PONG");
    assert_eq!(one(addr, &["ping", "hello"]), "hello");
    assert_eq!(one(addr, &["ECHO", "x y"]), "x y");
    assert_eq!(one(addr, &["COMMAND", "COUNT"]), "0");
    assert_eq!(one(addr, &["SELECT", "0"]), "OK");
    assert!(one(addr, &["HELLO", "3"]).starts_with("NOPROTO"));
    let hello = redis_cli(addr, &["HELLO", "2"], b"");
    assert_eq!(&hello[..4], ["server", "leasetso", "version", env!("CARGO_PKG_VERSION")], "{hello:?}");
    assert!(hello.windows(2).any(|w| w == ["proto", "2"]), "{hello:?}");
    let info = redis_cli(addr, &["INFO"], b"");
    assert_eq!(info[0], "# Server", "{info:?}");
    assert!(info.iter().any(|l| l == "leasetso_node:1"), "{info:?}");
    // One connection: the name it set is its own (an unset name is nil,
    // which redis-cli prints as an empty line).
    let lines = redis_cli(addr, &[], b"CLIENT GETNAME\nCLIENT SETNAME worker-1\nCLIENT GETNAME\nCLIENT ID\n");
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(lines[..2], ["OK", "worker-1"], "{lines:?}");
    assert!(lines[2].parse::<u64>().is_ok(), "CLIENT ID answered {:?}", lines[2]);
    server.stop();
}

#[test]
fn bad_commands_get_errors_and_the_server_keeps_serving() {
    if !have_redis_cli() {
        return;
    }
    let (server, addr, _dir) = start_server();
    let before = tso(addr, None);
    let cases: [(&[&str], &str); 7] = [
        (&["GET", "key"], "ERR unknown command 'GET', with args beginning with: 'key'"),
        (&["TSO", "1", "2"], "ERR wrong number of arguments for 'tso' command"),
        (&["TSO", "0"], "ERR count must be at least 1"),
        (&["TSO", "ten"], "ERR value is not an integer or out of range"),
        (&["TSO", "-5"], "ERR value is not an integer or out of range"),
        (&["TSO", "262144"], "ERR count must be below 262144"),
        (&["CLIENT", "KILL"], "ERR unknown subcommand 'KILL'. Try CLIENT HELP."),
    ];
    for (args, expected) in cases {
        assert_eq!(one(addr, args), expected, "redis-cli {args:?}");
    }
    // Protocol violations: an error reply, then that connection closes.
    let violations: [(&[u8], &str); 5] = [
        (b"+garbage\r\n", "-ERR Protocol error: expected '*' or a command name, got byte 0x2b\r\n"),
        (b"\x00\x01\x02", "-ERR Protocol error: expected '*' or a command name, got byte 0x00\r\n"),
        (b"*1\r\n$99\r\n", "-ERR Protocol error: bulk string over the limit of 64 bytes\r\n"),
        (b"*100\r\n", "-ERR Protocol error: more than 8 arguments\r\n"),
        (b"*1\r\n$3\r\nTSOxx", "-ERR Protocol error: missing CRLF\r\n"),
    ];
    for (bytes, expected) in violations {
        let mut conn = raw(addr);
        conn.write_all(bytes).expect("send");
        assert_eq!(read_to_close(conn), expected, "after {:?}", String::from_utf8_lossy(bytes));
    }
    // Commands before the violation are answered first.
    let mut conn = raw(addr);
    conn.write_all(b"PING\r\n*1\r\n$4\r\nPING\r\n:1\r\n").expect("send");
    let answer = read_to_close(conn);
    assert!(answer.starts_with("+PONG\r\n+PONG\r\n-ERR Protocol error: "), "{answer:?}");
    // An inline line without a newline cannot grow forever either.
    let mut conn = raw(addr);
    let _ = conn.write_all(&[b'a'; 5000]);
    assert!(read_to_close(conn).starts_with("-ERR Protocol error: too big inline request"));
    // QUIT: +OK, then closed.
    let mut conn = raw(addr);
    conn.write_all(b"QUIT\r\n").expect("send");
    assert_eq!(read_to_close(conn), "+OK\r\n");
    let after = tso(addr, None);
    assert!(after > before, "TSO after the errors answered {after}, not above {before}");
    server.stop();
}

#[test]
fn pipelined_commands_are_answered_in_order() {
    if !have_redis_cli() {
        return;
    }
    let (server, addr, _dir) = start_server();
    // redis-cli reading commands from stdin.
    let lines = redis_cli(addr, &[], b"TSO\nPING\nTSO 10\nGET k\nTSO\n");
    assert_eq!(lines.len(), 5, "{lines:?}");
    assert_eq!(lines[1], "PONG");
    assert!(lines[3].starts_with("ERR unknown command 'GET'"), "{lines:?}");
    let ts: Vec<u64> = [0, 2, 4].iter().map(|&i| lines[i].parse().expect("a timestamp")).collect();
    assert!(ts[0] + 10 <= ts[1] && ts[1] < ts[2], "{lines:?}");

    // redis-cli --pipe: raw protocol in, a count of replies out.
    let mut input = Vec::new();
    for i in 0..2000 {
        if i % 2 == 0 {
            input.extend_from_slice(b"*1\r\n$3\r\nTSO\r\n");
        } else {
            input.extend_from_slice(b"*2\r\n$3\r\nTSO\r\n$1\r\n5\r\n");
        }
    }
    let summary = redis_cli(addr, &["--pipe"], &input);
    assert!(summary.iter().any(|l| l == "errors: 0, replies: 2000"), "{summary:?}");

    // One write of many commands, some inline: every reply, in order.
    let mut conn = raw(addr);
    let mut burst = Vec::new();
    for i in 0..300 {
        burst.extend_from_slice(if i % 3 == 0 { b"TSO\r\n" as &[u8] } else { b"*1\r\n$3\r\ntso\r\n" });
    }
    burst.extend_from_slice(b"*2\r\n$4\r\nECHO\r\n$4\r\nlast\r\n");
    conn.write_all(&burst).expect("send the burst");
    let replies = read_lines(&mut conn, 302);
    assert_eq!(replies.len(), 302, "{replies:?}");
    let mut last = 0;
    for reply in &replies[..300] {
        let ts: u64 = reply.strip_prefix(':').and_then(|v| v.parse().ok()).expect("an integer reply");
        assert!(ts > last, "{ts} after {last}");
        last = ts;
    }
    assert_eq!(replies[300..], ["$4", "last"]);
    // SIGTERM with this connection still open: the server closes it and exits cleanly.
    server.stop();
    assert_eq!(conn.read(&mut [0u8; 16]).ok(), Some(0), "the RESP connection outlived the server");
}

#[test]
fn a_follower_names_the_leaders_resp_address() {
    if !have_redis_cli() {
        return;
    }
    let _guard = exclusive();
    let opts = ClusterOptions {
        extra_args: vec!["--resp".into(), "127.0.0.1:0".into()],
        ..ClusterOptions::default()
    };
    let cluster = Cluster::start(3, opts);
    let resp: Vec<SocketAddr> = (0..cluster.len())
        .map(|i| {
            resp_addr_in(&cluster.log(i))
                .unwrap_or_else(|| cluster.fail(&format!("node {i} printed no {RESP_LINE:?} line")))
        })
        .collect();
    let leader = cluster.wait_leader(ELECTION);
    cluster.wait_serving(ELECTION);
    let expected = format!("NOTLEADER {}", resp[leader]);
    for follower in (0..cluster.len()).filter(|&i| i != leader) {
        // A follower learns the leader from its next lease message; until
        // then it says TRYAGAIN.
        let deadline = Instant::now() + ELECTION;
        loop {
            let answer = one(resp[follower], &["TSO"]);
            if answer == expected {
                break;
            }
            assert!(
                answer.starts_with("TRYAGAIN") && Instant::now() < deadline,
                "node {follower}'s RESP door answered {answer:?}, expected {expected:?}\n{}",
                cluster.logs()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }
    let first = tso(resp[leader], None);
    assert!(tso(resp[leader], Some(50)) >= first + 50);
}
