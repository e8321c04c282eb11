//! Self-tests of the cluster harness (`tests/harness/`), runnable without a
//! cluster server: the delaying proxy delays and keeps data intact, the
//! history checker accepts good histories and catches each kind of
//! violation, the load generator and the `Cluster` mechanics work against a
//! single node, and (as root, else skipped) network namespaces connect,
//! cut, heal, lose packets at the asked rate and clean up after themselves.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use leasetso_core::{Role, Timestamp};
use leasetso_tests::harness::cluster::{Cluster, ClusterOptions, SLACK, exclusive};
use leasetso_tests::harness::load::{History, Load, LoadOptions, Outcome, Record};
use leasetso_tests::harness::netns::Netns;
use leasetso_tests::harness::proxy::DelayProxy;

/// An echo server on loopback: every connection gets back what it sends,
/// and is closed once the client has closed its side.
fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || serve_echo(listener));
    addr
}

fn serve_echo(listener: TcpListener) {
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { return };
        thread::spawn(move || {
            let _ = stream.set_nodelay(true);
            let mut buf = [0u8; 16 * 1024];
            loop {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if stream.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = stream.shutdown(Shutdown::Write);
        });
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream
}

/// One round trip of `msg`; returns how long it took.
fn ping(stream: &mut TcpStream, msg: &[u8]) -> Duration {
    let begun = Instant::now();
    stream.write_all(msg).unwrap();
    let mut back = vec![0u8; msg.len()];
    stream.read_exact(&mut back).unwrap();
    assert_eq!(back, msg, "the echo came back altered");
    begun.elapsed()
}

#[test]
fn the_proxy_delays_each_direction_without_limiting_throughput() {
    const DELAY: Duration = Duration::from_millis(100);
    let proxy = DelayProxy::start(echo_server(), DELAY).unwrap();
    let mut stream = connect(proxy.addr());

    // One round trip crosses the proxy twice.
    let rtt = ping(&mut stream, b"ping");
    assert!(rtt >= 2 * DELAY, "a round trip took {rtt:?}, under twice the delay {DELAY:?}");
    assert!(rtt < 2 * DELAY + Duration::from_secs(1), "a round trip took {rtt:?}");
    assert_eq!(proxy.connections(), 1);

    // Messages sent 20 ms apart come back 20 ms apart, one delay later each,
    // in order: the delay is a pipe's length, not a per-message toll.
    let begun = Instant::now();
    let sender = {
        let mut w = stream.try_clone().unwrap();
        thread::spawn(move || {
            for i in 0u8..10 {
                w.write_all(&[i; 100]).unwrap();
                thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let mut back = vec![0u8; 1000];
    stream.read_exact(&mut back).unwrap();
    sender.join().unwrap();
    let took = begun.elapsed();
    let expected: Vec<u8> = (0u8..10).flat_map(|i| [i; 100]).collect();
    assert_eq!(back, expected, "the pipelined messages came back out of order or altered");
    assert!(took >= 2 * DELAY + Duration::from_millis(180), "ten messages took only {took:?}");
    assert!(took < Duration::from_secs(1), "ten pipelined messages took {took:?}: the delays added up");

    // 4 MiB of varied bytes, written while they are read back: intact, and
    // in about one round trip plus the transfer, not a delay per chunk.
    let data: Vec<u8> = (0..4u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let begun = Instant::now();
    let writer = {
        let (mut w, data) = (stream.try_clone().unwrap(), data.clone());
        thread::spawn(move || w.write_all(&data).unwrap())
    };
    let mut back = vec![0u8; data.len()];
    stream.read_exact(&mut back).unwrap();
    writer.join().unwrap();
    let took = begun.elapsed();
    assert!(back == data, "4 MiB through the proxy came back altered");
    assert!(took < 2 * DELAY + Duration::from_secs(3), "4 MiB took {took:?}: the proxy limits throughput");
    assert!(proxy.bytes() >= 2 * data.len() as u64, "the proxy counted {} bytes", proxy.bytes());

    // Without delay it is just a relay.
    proxy.set_delay(Duration::ZERO);
    let rtt = ping(&mut stream, b"quick");
    assert!(rtt < DELAY, "a round trip with no delay took {rtt:?}");
}

#[test]
fn the_proxy_passes_a_close_on_and_closes_everything_on_drop() {
    const DELAY: Duration = Duration::from_millis(50);
    let proxy = DelayProxy::start(echo_server(), DELAY).unwrap();

    // A half-close travels through (after its delay, behind the data): the
    // echo server sees it, answers the rest and closes, and so does the proxy.
    let mut stream = connect(proxy.addr());
    stream.write_all(b"last words").unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let mut back = Vec::new();
    stream.read_to_end(&mut back).unwrap();
    assert_eq!(back, b"last words");

    // A connection still open when the proxy goes is closed with it.
    let mut open = connect(proxy.addr());
    assert!(ping(&mut open, b"x") >= 2 * DELAY);
    let addr = proxy.addr();
    let begun = Instant::now();
    drop(proxy);
    assert!(begun.elapsed() < Duration::from_secs(3), "dropping the proxy took {:?}", begun.elapsed());
    let mut buf = [0u8; 8];
    match open.read(&mut buf) {
        Ok(0) | Err(_) => {}
        Ok(n) => panic!("read {n} bytes from a connection of a dropped proxy"),
    }
    // And nothing listens there any more.
    assert!(TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err(), "{addr} still accepts");
}

/// A record of a successful call.
fn ok(client: usize, base: Instant, sent_ms: u64, took_ms: u64, physical: u64, logical: u32) -> Record {
    Record {
        client,
        sent: base + Duration::from_millis(sent_ms),
        received: base + Duration::from_millis(sent_ms + took_ms),
        count: 1,
        outcome: Outcome::Ok(Timestamp::new(physical, logical).unwrap()),
        addr: None,
    }
}

fn history(records: Vec<Record>, base: Instant) -> History {
    let stopped = records.iter().map(|r| r.received).max().unwrap_or(base);
    History { records, not_leader_replies: 0, deadline: Duration::from_secs(1), started: base, stopped }
}

/// The panic message of `f`, which must panic.
fn panic_message(f: impl FnOnce()) -> String {
    let err = catch_unwind(AssertUnwindSafe(f)).expect_err("expected a panic");
    err.downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap()
}

#[test]
fn the_history_checker_catches_each_kind_of_violation() {
    let base = Instant::now();
    // Two clients, overlapping calls in any order, one failed call.
    let good = vec![
        ok(0, base, 0, 5, 100, 1),
        ok(1, base, 1, 10, 100, 3),
        ok(0, base, 6, 2, 100, 2), // overlaps client 1's call: any order is fine
        ok(1, base, 20, 3, 101, 1),
        Record {
            client: 0,
            sent: base + Duration::from_millis(30),
            received: base + Duration::from_millis(900),
            count: 1,
            outcome: Outcome::Failed { kind: "NotLeader".into(), message: "not the leader".into() },
            addr: None,
        },
    ];
    let summary = history(good.clone(), base).check(Duration::from_millis(100));
    assert_eq!((summary.ok, summary.timestamps, summary.failures()), (4, 4, 1));
    assert_eq!(summary.failed.get("NotLeader"), Some(&1));
    assert_eq!(summary.longest, Duration::from_millis(870));
    // From the last success (23 ms) to the stop (the last answer, 900 ms).
    assert_eq!(summary.longest_gap, Duration::from_millis(877));
    assert!(history(good.clone(), base).assert_above_across(base + Duration::from_millis(15), "good"));

    // A timestamp handed out twice.
    let mut dup = good.clone();
    dup.push(ok(1, base, 40, 1, 100, 3));
    let msg = panic_message(|| drop(history(dup, base).check(Duration::from_millis(100))));
    assert!(msg.contains("handed out twice"), "{msg}");

    // A call answered before another was sent, with a higher timestamp.
    let mut back = good.clone();
    back.push(ok(1, base, 50, 1, 100, 5));
    back.push(ok(0, base, 60, 1, 100, 4));
    let msg = panic_message(|| drop(history(back.clone(), base).check(Duration::from_millis(100))));
    assert!(msg.contains("went backwards") || msg.contains("real-time order"), "{msg}");
    let msg = panic_message(|| {
        history(back, base).assert_above_across(base + Duration::from_millis(55), "event");
    });
    assert!(msg.contains("not above"), "{msg}");

    // A call that took longer than its deadline plus the slack hung.
    let mut hung = good;
    hung.push(ok(1, base, 100, 1500, 102, 1));
    let msg = panic_message(|| drop(history(hung, base).check(Duration::from_millis(100))));
    assert!(msg.contains("hung"), "{msg}");
}

/// Load over a cluster of one (the single-node mode, which the server has
/// today) through a SIGKILL, a restart and a SIGTERM: the harness's process
/// handling, status polling and load generator, end to end.
#[test]
fn a_cluster_of_one_through_kill_restart_and_term() {
    let _serial = exclusive();
    let mut cluster = Cluster::start(1, ClusterOptions::default());
    assert_eq!(cluster.leader(Duration::from_secs(10)), Some(0), "{}", cluster.describe());
    let status = cluster.status(0).unwrap();
    assert_eq!((status.role, status.node.0), (Role::Leader, 0));
    let addr = cluster.node_addr(0);

    let load = Load::start(
        &cluster.client_addrs(),
        LoadOptions { deadline: Duration::from_secs(5), ..LoadOptions::default() },
    );
    assert!(load.wait_progress(200, Duration::from_secs(5)), "no progress: {}", cluster.describe());

    let killed_at = Instant::now();
    cluster.kill(0);
    assert!(!cluster.is_running(0));
    cluster.restart(0);
    assert_eq!(cluster.node_addr(0), addr, "a restarted node keeps its client address");
    assert!(
        load.wait_progress(200, Duration::from_secs(5)),
        "no progress after the restart: {}",
        cluster.describe()
    );

    let termed_at = Instant::now();
    let status = cluster.term(0);
    assert!(status.success(), "SIGTERM: {status}");
    cluster.restart(0);
    assert!(load.wait_progress(200, Duration::from_secs(5)), "no progress after the second restart");

    let history = load.stop();
    let summary = history.check(SLACK);
    eprintln!("one node, kill and term: {summary}");
    history.assert_no_failures("a cluster of one through a restart");
    assert!(history.assert_above_across(killed_at, "the kill"));
    assert!(history.assert_above_across(termed_at, "the term"));
    let raw_addrs: Vec<_> = history.records.iter().filter_map(|r| r.addr).collect();
    assert!(!raw_addrs.is_empty() && raw_addrs.iter().all(|a| *a == addr), "raw clients went elsewhere");
    assert!(cluster.logs().contains("start 3"), "three incarnations logged");
}

#[test]
fn namespaces_connect_over_the_bridge_until_cut_and_clean_up() {
    if !Netns::usable("namespaces_connect_over_the_bridge_until_cut_and_clean_up") {
        return;
    }
    let net = Arc::new(Netns::new(2).unwrap());
    let target = net.peer_addr(1, 9000);
    let listener = net.bind_tcp(1, target).unwrap();
    thread::spawn(move || serve_echo(listener));
    let reach = |timeout: Duration| -> bool {
        match net.connect_tcp(0, target, timeout) {
            Ok(mut s) => {
                s.set_read_timeout(Some(timeout)).unwrap();
                s.write_all(b"hi").is_ok() && {
                    let mut b = [0u8; 2];
                    s.read_exact(&mut b).is_ok() && &b == b"hi"
                }
            }
            Err(_) => false,
        }
    };
    assert!(reach(Duration::from_secs(2)), "node 0 cannot reach node 1 over the peer bridge");
    // The test process is not on the peer bridge (its route to the peer
    // subnet, if any, is the machine's default one, not a link of ours): a
    // partition there cannot leak through it.
    let route = std::process::Command::new("ip")
        .args(["-o", "route", "get", &target.ip().to_string()])
        .output()
        .unwrap();
    let route = String::from_utf8_lossy(&route.stdout);
    assert!(
        !route.contains(net.root_link()),
        "the test process routes to {target} over its client link: {route}"
    );

    // The client bridge: the test reaches node 1 there, cut or not.
    let client_side = net.client_addr(1, 9001);
    let client_listener = net.bind_tcp(1, client_side).unwrap();
    thread::spawn(move || serve_echo(client_listener));
    ping(&mut connect(client_side), b"client link");

    // A delaying proxy inside node 0's namespace, to node 1.
    let proxy = DelayProxy::start_on(
        net.bind_tcp(0, net.peer_addr(0, 0)).unwrap(),
        net.connector(0, target),
        Duration::from_millis(50),
    )
    .unwrap();
    let mut via_proxy = net.connect_tcp(0, proxy.addr(), Duration::from_secs(2)).unwrap();
    via_proxy.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert!(ping(&mut via_proxy, b"slow") >= Duration::from_millis(100));

    net.cut(1);
    assert!(!reach(Duration::from_millis(300)), "node 0 still reaches node 1 after the cut");
    ping(&mut connect(client_side), b"still here");
    net.heal(1);
    let healed = Instant::now();
    while !reach(Duration::from_millis(300)) {
        assert!(healed.elapsed() < Duration::from_secs(5), "node 0 does not reach node 1 after healing");
    }
    assert!(
        ping(&mut via_proxy, b"again") >= Duration::from_millis(100),
        "the proxied connection survived the cut"
    );
    drop(via_proxy);
    drop(proxy);

    // Everything goes on drop.
    let (namespaces, link) = (net.namespaces(), net.root_link().to_string());
    drop(Arc::into_inner(net).expect("the only reference"));
    let list =
        String::from_utf8(std::process::Command::new("ip").args(["netns", "list"]).output().unwrap().stdout)
            .unwrap();
    for ns in namespaces {
        assert!(!list.lines().any(|l| l.split_whitespace().next() == Some(ns.as_str())), "{ns} left behind");
    }
    let shown = std::process::Command::new("ip").args(["link", "show", &link]).output().unwrap();
    assert!(!shown.status.success(), "{link} left behind");
}

#[test]
fn nft_loss_drops_about_the_asked_fraction_of_the_peer_link_only() {
    if !Netns::usable("nft_loss_drops_about_the_asked_fraction_of_the_peer_link_only") {
        return;
    }
    const SENT: usize = 2000;
    let net = Netns::new(2).unwrap();
    let sender = net.bind_udp(0, net.peer_addr(0, 0)).unwrap();
    let root_sender = std::net::UdpSocket::bind((net.root_ip(), 0)).unwrap();
    // Counts what arrives at `socket` within a moment after `send` returns.
    let delivered = |socket: std::net::UdpSocket, send: &dyn Fn()| -> usize {
        socket.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        let counter = thread::spawn(move || {
            let mut buf = [0u8; 64];
            let mut n = 0;
            while socket.recv(&mut buf).is_ok() {
                n += 1;
            }
            n
        });
        send();
        counter.join().unwrap()
    };
    let burst = |from: &std::net::UdpSocket, to: SocketAddr| {
        for i in 0..SENT {
            from.send_to(&(i as u32).to_be_bytes(), to).unwrap();
            if i % 50 == 49 {
                // Paced, so the receiver's buffer never overflows.
                thread::sleep(Duration::from_millis(1));
            }
        }
    };

    let peer_target = net.peer_addr(1, 9100);
    assert_eq!(delivered(net.bind_udp(1, peer_target).unwrap(), &|| burst(&sender, peer_target)), SENT);

    net.loss(1, 20);
    let got = delivered(net.bind_udp(1, peer_target).unwrap(), &|| burst(&sender, peer_target));
    let lost = 100.0 * (SENT - got) as f64 / SENT as f64;
    // The binomial's standard deviation is 0.9 %: this is over six of them.
    assert!((14.0..=26.0).contains(&lost), "{lost:.1} % lost with a 20 % rule ({got} of {SENT} arrived)");
    // The client link is not affected.
    let client_target = net.client_addr(1, 9101);
    let got_client =
        delivered(net.bind_udp(1, client_target).unwrap(), &|| burst(&root_sender, client_target));
    assert_eq!(got_client, SENT, "the loss rule touched the client link");

    net.clear_loss(1);
    assert_eq!(delivered(net.bind_udp(1, peer_target).unwrap(), &|| burst(&sender, peer_target)), SENT);
    eprintln!("nft loss: {lost:.1} % of {SENT} datagrams with a 20 % rule");
}

/// A node in a namespace is the `leasetso` process itself (`ip netns exec`
/// does not fork, so signals reach it), runs in that namespace, and is
/// reached at its client address from the test process.
#[test]
fn a_node_runs_inside_its_namespace() {
    if !Netns::usable("a_node_runs_inside_its_namespace") {
        return;
    }
    let _serial = exclusive();
    let net = Arc::new(Netns::new(1).unwrap());
    let mut cluster =
        Cluster::start(1, ClusterOptions { netns: Some(net.clone()), ..ClusterOptions::default() });
    assert_eq!(cluster.node_addr(0), net.client_addr(0, leasetso_tests::harness::cluster::NETNS_CLIENT_PORT));
    assert_eq!(cluster.leader(Duration::from_secs(10)), Some(0), "{}", cluster.describe());
    let pid = cluster.pid(0).unwrap();
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert_eq!(exe, leasetso_tests::leasetso_bin().canonicalize().unwrap(), "pid {pid} is not leasetso");
    let theirs = std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap();
    let ours = std::fs::read_link("/proc/self/ns/net").unwrap();
    assert_ne!(theirs, ours, "the node runs in the test's own namespace");
    let before = cluster.wait_serving(Duration::from_secs(10));
    cluster.kill(0);
    cluster.restart(0);
    let after = cluster.wait_serving(Duration::from_secs(10));
    assert!(after > before, "{after:?} after a restart is not above {before:?}");
    assert!(cluster.term(0).success());
}
