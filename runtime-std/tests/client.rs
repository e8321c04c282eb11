//! The client against scripted servers: redirects, seeds and failover,
//! retries within a deadline, timeouts, replies that do not answer the
//! request, and one request in flight.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use leasetso_core::wire::VERSION;
use leasetso_core::{ErrorCode, Frame, LeaderHint, NodeId, Timestamp};
use leasetso_std::client::parse_seeds;
use leasetso_std::{Client, ClientError, ClientOptions, Server, ServerConfig};

/// What the scripted server does with the n-th request (0-based, over all connections).
enum Reply {
    Send(Frame),
    /// Answer after a pause.
    Delayed(Duration, Frame),
    /// Never answer.
    Silence,
    /// Close the connection.
    Close,
}

type Script = dyn Fn(usize, Frame) -> Reply + Send + Sync;

/// A fake's open connections: each socket (a clone, to shut it down) and its thread.
type Conns = Arc<Mutex<Vec<(TcpStream, JoinHandle<()>)>>>;

/// A scripted server on 127.0.0.1. Dropping it stops its threads and closes
/// its connections.
struct Fake {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Frame>>>,
    /// Set when a request arrived while another was still unanswered.
    pipelined: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
    conns: Conns,
}

impl Fake {
    /// How many requests (handshakes aside) it has seen.
    fn seen(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the acceptor, which sees `stop` and returns.
        let _ = TcpStream::connect(self.addr);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        let conns = std::mem::take(&mut *self.conns.lock().unwrap_or_else(|e| e.into_inner()));
        for (stream, thread) in conns {
            let _ = stream.shutdown(Shutdown::Both);
            let _ = thread.join();
        }
    }
}

fn fake(script: impl Fn(usize, Frame) -> Reply + Send + Sync + 'static) -> Fake {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let pipelined = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let conns: Conns = Arc::new(Mutex::new(Vec::new()));
    let script: Arc<Script> = Arc::new(script);
    let (reqs, pipe, halt, open) =
        (Arc::clone(&requests), Arc::clone(&pipelined), Arc::clone(&stop), Arc::clone(&conns));
    let acceptor = std::thread::spawn(move || {
        for stream in listener.incoming() {
            if halt.load(Ordering::SeqCst) {
                return;
            }
            let Ok(stream) = stream else { return };
            let Ok(clone) = stream.try_clone() else { continue };
            let (script, reqs, pipe, halt) =
                (Arc::clone(&script), Arc::clone(&reqs), Arc::clone(&pipe), Arc::clone(&halt));
            let thread = std::thread::spawn(move || serve_fake(stream, &*script, &reqs, &pipe, &halt));
            open.lock().unwrap().push((clone, thread));
        }
    });
    Fake { addr, requests, pipelined, stop, acceptor: Some(acceptor), conns }
}

/// Serves one connection, then closes it: shutting it down, since the
/// [`Fake`] holds a clone of the socket.
fn serve_fake(
    mut stream: TcpStream,
    script: &Script,
    requests: &Mutex<Vec<Frame>>,
    pipelined: &AtomicBool,
    stop: &AtomicBool,
) {
    serve_frames(&mut stream, script, requests, pipelined, stop);
    let _ = stream.shutdown(Shutdown::Both);
}

fn serve_frames(
    stream: &mut TcpStream,
    script: &Script,
    requests: &Mutex<Vec<Frame>>,
    pipelined: &AtomicBool,
    stop: &AtomicBool,
) {
    let mut buf = Vec::new();
    loop {
        let frame = loop {
            if let Ok(Some((frame, used))) = Frame::decode(&buf) {
                buf.drain(..used);
                break frame;
            }
            let mut chunk = [0u8; 512];
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let reply = if let Frame::Hello { .. } = frame {
            Reply::Send(Frame::Welcome { version: VERSION, cluster_id: 1, node: NodeId(3) })
        } else {
            let n = {
                let mut reqs = requests.lock().unwrap();
                reqs.push(frame);
                reqs.len() - 1
            };
            script(n, frame)
        };
        let frame = match reply {
            Reply::Send(f) => f,
            Reply::Delayed(pause, f) => {
                std::thread::sleep(pause);
                // A well-behaved client has sent nothing more meanwhile.
                stream.set_nonblocking(true).unwrap();
                let mut probe = [0u8; 1];
                if !buf.is_empty() || stream.peek(&mut probe).is_ok_and(|n| n > 0) {
                    pipelined.store(true, Ordering::SeqCst);
                }
                stream.set_nonblocking(false).unwrap();
                f
            }
            Reply::Silence => {
                let begun = Instant::now();
                while !stop.load(Ordering::SeqCst) && begun.elapsed() < Duration::from_secs(10) {
                    std::thread::sleep(Duration::from_millis(10));
                }
                return;
            }
            Reply::Close => return,
        };
        let mut out = Vec::new();
        frame.encode(&mut out).unwrap();
        if stream.write_all(&out).is_err() {
            return;
        }
    }
}

fn ts_reply(frame: Frame, physical_ms: u64) -> Reply {
    match frame {
        Frame::GetTs { id, count } => {
            Reply::Send(Frame::Ts { id, count, last: Timestamp::new(physical_ms, count).unwrap() })
        }
        _ => Reply::Close,
    }
}

/// `NotLeader` for a request, with a hint naming `leader` (if any).
fn not_leader(frame: Frame, leader: Option<SocketAddr>) -> Reply {
    match frame {
        Frame::GetTs { id, .. } | Frame::GetStatus { id } => Reply::Send(Frame::Error {
            id,
            code: ErrorCode::NotLeader,
            leader: LeaderHint { node: leader.map(|_| NodeId(1)), addr: leader },
        }),
        _ => Reply::Close,
    }
}

/// An address on which nothing listens: connecting is refused.
fn dead_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

const SECS_2: Duration = Duration::from_secs(2);

/// Short pauses; retries for `deadline` (zero: a single attempt).
fn quick(deadline: Duration) -> ClientOptions {
    ClientOptions {
        deadline,
        retry_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(2),
        request_timeout: Duration::from_millis(300),
        ..ClientOptions::default()
    }
}

fn real_server(dir: &Path) -> Server {
    let server = Server::start(ServerConfig::new("127.0.0.1:0".parse().unwrap(), dir)).unwrap();
    assert!(server.wait_serving(Duration::from_secs(10)));
    server
}

#[test]
fn follows_a_not_leader_hint_to_the_leader() {
    let dir = tempfile::tempdir().unwrap();
    let server = real_server(dir.path());
    let leader = server.local_addr();
    let follower = fake(move |_, frame| match frame {
        Frame::GetTs { id, .. } | Frame::GetStatus { id } => Reply::Send(Frame::Error {
            id,
            code: ErrorCode::NotLeader,
            leader: LeaderHint { node: Some(NodeId(0)), addr: Some(leader) },
        }),
        _ => Reply::Close,
    });
    let client = Client::connect_with(follower.addr, quick(SECS_2)).unwrap();
    assert_eq!(client.server_addr(), follower.addr);
    assert!(client.get_ts().is_ok());
    assert_eq!(client.server_addr(), leader, "the client moved to the hinted leader");
    assert_eq!(follower.requests.lock().unwrap().len(), 1);
    assert_eq!(server.stats().get_ts_requests, 1);
}

#[test]
fn retryable_errors_are_retried_then_returned() {
    // Exhausted once, then served.
    let flaky = fake(|n, frame| match (n, frame) {
        (0, Frame::GetTs { id, .. }) => {
            Reply::Send(Frame::Error { id, code: ErrorCode::LogicalExhausted, leader: LeaderHint::default() })
        }
        (_, f) => ts_reply(f, 1_000),
    });
    let client = Client::connect_with(flaky.addr, quick(SECS_2)).unwrap();
    assert_eq!(client.get_ts_n(5).unwrap(), Timestamp::new(1_000, 5).unwrap());
    assert_eq!(flaky.requests.lock().unwrap().len(), 2);

    // Never a leader, and no hint: the retries run out.
    let lost = fake(|_, frame| match frame {
        Frame::GetTs { id, .. } => {
            Reply::Send(Frame::Error { id, code: ErrorCode::NotLeader, leader: LeaderHint::default() })
        }
        _ => Reply::Close,
    });
    let deadline = Duration::from_millis(200);
    let client = Client::connect_with(lost.addr, quick(deadline)).unwrap();
    let begun = Instant::now();
    match client.get_ts() {
        Err(e @ ClientError::Server { code: ErrorCode::NotLeader, .. }) => assert!(e.is_retryable()),
        other => panic!("expected NotLeader, got {other:?}"),
    }
    assert!(begun.elapsed() >= deadline, "gave up after {:?}, before the deadline", begun.elapsed());
    assert!(lost.seen() >= 2, "retried until the deadline: {} requests", lost.seen());

    // A refusal that cannot succeed later is not retried.
    let refuse = fake(|_, frame| match frame {
        Frame::GetTs { id, .. } => {
            Reply::Send(Frame::Error { id, code: ErrorCode::CountTooLarge, leader: LeaderHint::default() })
        }
        _ => Reply::Close,
    });
    let client = Client::connect_with(refuse.addr, quick(SECS_2)).unwrap();
    assert!(matches!(client.get_ts(), Err(ClientError::Server { code: ErrorCode::CountTooLarge, .. })));
    assert_eq!(refuse.requests.lock().unwrap().len(), 1);
}

#[test]
fn a_lost_connection_is_reopened() {
    let closing = fake(|n, frame| if n == 0 { Reply::Close } else { ts_reply(frame, 7) });
    let client = Client::connect_with(closing.addr, quick(Duration::ZERO)).unwrap();
    assert!(matches!(client.get_ts(), Err(ClientError::Closed { .. })), "no retries within a zero deadline");
    // The next call reconnects (and handshakes) by itself.
    assert_eq!(client.get_ts().unwrap(), Timestamp::new(7, 1).unwrap());
}

#[test]
fn a_silent_server_times_out() {
    let silent = fake(|_, _| Reply::Silence);
    let client = Client::connect_with(silent.addr, quick(Duration::ZERO)).unwrap();
    let begun = std::time::Instant::now();
    match client.get_ts() {
        Err(ClientError::Timeout { after, .. }) => assert_eq!(after, Duration::from_millis(300)),
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(begun.elapsed() < Duration::from_secs(3));
}

#[test]
fn replies_that_do_not_answer_the_request_are_errors() {
    // A range of the wrong size.
    let short = fake(|_, frame| match frame {
        Frame::GetTs { id, count } => {
            Reply::Send(Frame::Ts { id, count: count + 1, last: Timestamp::new(5, 100).unwrap() })
        }
        _ => Reply::Close,
    });
    let client = Client::connect_with(short.addr, quick(SECS_2)).unwrap();
    assert!(matches!(client.get_ts(), Err(ClientError::Unexpected { .. })));

    // A range crossing into the previous millisecond.
    let crossing = fake(|_, frame| match frame {
        Frame::GetTs { id, count } => {
            Reply::Send(Frame::Ts { id, count, last: Timestamp::new(5, 1).unwrap() })
        }
        _ => Reply::Close,
    });
    let client = Client::connect_with(crossing.addr, quick(SECS_2)).unwrap();
    assert!(matches!(client.get_ts_n(2), Err(ClientError::Unexpected { .. })));

    // Another request's id.
    let confused = fake(|_, frame| match frame {
        Frame::GetTs { id, count } => {
            Reply::Send(Frame::Ts { id: id + 1, count, last: Timestamp::new(5, count).unwrap() })
        }
        _ => Reply::Close,
    });
    let client = Client::connect_with(confused.addr, quick(SECS_2)).unwrap();
    assert!(matches!(client.get_ts(), Err(ClientError::Unexpected { .. })));

    // Counts no request can carry never leave the client.
    assert!(matches!(client.get_ts_n(0), Err(ClientError::InvalidCount { count: 0, .. })));
    assert!(matches!(client.get_ts_n(1 << 18), Err(ClientError::InvalidCount { .. })));
    assert_eq!(confused.requests.lock().unwrap().len(), 1);
}

#[test]
fn concurrent_calls_share_one_request_in_flight_when_asked() {
    // Each request is answered after 50 ms: callers arriving meanwhile are
    // merged into the next one, and nothing is sent before the answer.
    let slow = fake(|n, frame| match frame {
        Frame::GetTs { id, count } => Reply::Delayed(
            Duration::from_millis(50),
            Frame::Ts { id, count, last: Timestamp::new(100 + n as u64, count).unwrap() },
        ),
        _ => Reply::Close,
    });
    // One request in flight: the sender waits for each answer.
    let one = ClientOptions { max_in_flight: 1, ..quick(Duration::ZERO) };
    let client = Arc::new(Client::connect_with(slow.addr, one).unwrap());
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let client = Arc::clone(&client);
            std::thread::spawn(move || client.get_ts_n(2).unwrap())
        })
        .collect();
    let mut got: Vec<Timestamp> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    got.sort_unstable();
    got.dedup();
    assert_eq!(got.len(), 8, "every caller got a range of its own");
    let requests = slow.requests.lock().unwrap().clone();
    let total: u32 = requests
        .iter()
        .map(|f| match f {
            Frame::GetTs { count, .. } => *count,
            _ => 0,
        })
        .sum();
    assert_eq!(total, 16, "the requests carried exactly the callers' counts");
    assert!(requests.len() < 8, "8 concurrent calls were sent as {} requests", requests.len());
    assert!(
        !slow.pipelined.load(Ordering::SeqCst),
        "a second request was sent before the first was answered"
    );
}

#[test]
fn batches_respect_the_cap() {
    let slow = fake(|n, frame| match frame {
        Frame::GetTs { id, count } => Reply::Delayed(
            Duration::from_millis(30),
            Frame::Ts { id, count, last: Timestamp::new(100 + n as u64, count).unwrap() },
        ),
        _ => Reply::Close,
    });
    let opts = ClientOptions { max_batch: 5, ..quick(Duration::ZERO) };
    let client = Arc::new(Client::connect_with(slow.addr, opts).unwrap());
    let handles: Vec<_> = (0..10)
        .map(|i| {
            let client = Arc::clone(&client);
            // One caller asks for more than the cap: it goes alone.
            std::thread::spawn(move || client.get_ts_n(if i == 0 { 7 } else { 2 }).unwrap())
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    for f in slow.requests.lock().unwrap().iter() {
        if let Frame::GetTs { count, .. } = f {
            assert!(*count <= 5 || *count == 7, "batch of {count} over the cap of 5");
        }
    }
}

/// Runs `callers` threads calling `call` on one shared client and collects
/// their results, failing (instead of hanging) if a caller is never woken.
fn each_caller<T: Send + 'static>(
    client: &Arc<Client>,
    callers: usize,
    call: impl Fn(&Client) -> T + Send + Sync + 'static,
) -> Vec<T> {
    let call = Arc::new(call);
    let (tx, rx) = std::sync::mpsc::channel();
    for _ in 0..callers {
        let (client, call, tx) = (Arc::clone(client), Arc::clone(&call), tx.clone());
        std::thread::spawn(move || tx.send(call(&client)).unwrap());
    }
    (0..callers)
        .map(|i| {
            rx.recv_timeout(Duration::from_secs(20))
                .unwrap_or_else(|_| panic!("{} of {callers} callers never returned", callers - i))
        })
        .collect()
}

#[test]
fn every_caller_of_a_failed_request_gets_the_error() {
    // Every request is held for 30 ms, so callers pile up behind it, then the
    // connection is closed: each batch fails, and each of its callers must be
    // woken with the error (none may sleep forever).
    let closing = fake(|_, frame| match frame {
        Frame::GetTs { .. } => {
            std::thread::sleep(Duration::from_millis(30));
            Reply::Close
        }
        _ => Reply::Close,
    });
    let client = Arc::new(Client::connect_with(closing.addr, quick(Duration::ZERO)).unwrap());
    let got = each_caller(&client, 16, |client| client.get_ts_n(2));
    assert_eq!(got.len(), 16);
    for result in got {
        assert!(matches!(result, Err(ClientError::Closed { .. })), "expected Closed, got {result:?}");
    }
}

#[test]
fn merged_batches_shrink_until_the_server_takes_them() {
    // The server takes at most 4 timestamps per request. Merged batches over
    // that are refused as CountTooLarge; the client halves its cap and
    // resends the same callers, so every caller (asking for 2) is served.
    let small = fake(|n, frame| match frame {
        Frame::GetTs { id, count } if count > 4 => {
            Reply::Send(Frame::Error { id, code: ErrorCode::CountTooLarge, leader: LeaderHint::default() })
        }
        Frame::GetTs { id, count } => Reply::Delayed(
            Duration::from_millis(50),
            Frame::Ts { id, count, last: Timestamp::new(100 + n as u64, count).unwrap() },
        ),
        _ => Reply::Close,
    });
    let one = ClientOptions { max_in_flight: 1, ..quick(Duration::ZERO) };
    let client = Arc::new(Client::connect_with(small.addr, one).unwrap());
    let mut got: Vec<Timestamp> = each_caller(&client, 12, |client| client.get_ts_n(2).unwrap());
    got.sort_unstable();
    got.dedup();
    assert_eq!(got.len(), 12, "every caller got a range of its own");
    let requests = small.requests.lock().unwrap().clone();
    let served: u32 = requests
        .iter()
        .map(|f| match f {
            Frame::GetTs { count, .. } if *count <= 4 => *count,
            _ => 0,
        })
        .sum();
    assert_eq!(served, 24, "the served requests carried exactly the callers' counts");
    assert!(
        requests.iter().any(|f| matches!(f, Frame::GetTs { count, .. } if *count > 4)),
        "callers piled up behind the first request were merged, and refused, at least once"
    );
    assert!(
        !small.pipelined.load(Ordering::SeqCst),
        "a second request was sent before the first was answered"
    );
}

// Cluster mode: seeds, hints, fallback and the deadline.

#[test]
fn a_dead_first_seed_is_skipped() {
    let dead = dead_addr();
    let live = fake(|_, frame| ts_reply(frame, 9));
    let client = Client::connect_with(&[dead, live.addr][..], quick(SECS_2)).unwrap();
    assert_eq!(client.server_addr(), live.addr);
    assert_eq!(client.get_ts().unwrap(), Timestamp::new(9, 1).unwrap());
    // The default options, and a list parsed from a command line, alike.
    let seeds = parse_seeds(&format!("{dead}, {}", live.addr)).unwrap();
    let client = Client::connect(&seeds[..]).unwrap();
    assert_eq!(client.get_ts_n(3).unwrap(), Timestamp::new(9, 3).unwrap());
}

#[test]
fn connect_fails_fast_when_no_seed_answers() {
    let (a, b) = (dead_addr(), dead_addr());
    let begun = Instant::now();
    // The default deadline is 7 s: connecting must not wait it out.
    match Client::connect(&[a, b][..]) {
        Err(ClientError::Connect { addr, .. }) => assert_eq!(addr, b, "the last seed's error"),
        other => panic!("expected a connect error, got {other:?}"),
    }
    assert!(begun.elapsed() < Duration::from_secs(1), "took {:?}", begun.elapsed());
    assert!(matches!(Client::connect(&[][..] as &[SocketAddr]), Err(ClientError::NoSeeds)));
}

#[test]
fn a_follower_hint_leads_to_the_leader() {
    let leader = fake(|_, frame| ts_reply(frame, 11));
    let to = leader.addr;
    let follower = fake(move |_, frame| not_leader(frame, Some(to)));
    let client = Client::connect_with(follower.addr, quick(SECS_2)).unwrap();
    assert_eq!(client.get_ts().unwrap(), Timestamp::new(11, 1).unwrap());
    assert_eq!(client.server_addr(), leader.addr, "the client moved to the hinted leader");
    assert_eq!((follower.seen(), leader.seen()), (1, 1));
    // It stays there.
    client.get_ts().unwrap();
    assert_eq!((follower.seen(), leader.seen()), (1, 2));
}

#[test]
fn a_stale_hint_falls_back_to_the_seeds() {
    // The follower keeps naming a dead leader; the other seed knows no
    // leader for its first three requests, then serves (it was elected).
    let dead = dead_addr();
    let follower = fake(move |_, frame| not_leader(frame, Some(dead)));
    let elected = fake(|n, frame| if n < 3 { not_leader(frame, None) } else { ts_reply(frame, 13) });
    let client = Client::connect_with(&[follower.addr, elected.addr][..], quick(SECS_2)).unwrap();
    assert_eq!(client.server_addr(), follower.addr);
    let begun = Instant::now();
    assert_eq!(client.get_ts().unwrap(), Timestamp::new(13, 1).unwrap());
    assert!(begun.elapsed() < Duration::from_secs(1), "took {:?}", begun.elapsed());
    assert_eq!(client.server_addr(), elected.addr);
    assert_eq!(elected.seen(), 4);
    assert!(follower.seen() >= 1);
}

#[test]
fn two_nodes_naming_each_other_give_up_at_the_deadline() {
    // Each names the other forever: the client must not spin between them,
    // and must return NotLeader once the deadline has passed.
    let b_addr = Arc::new(OnceLock::new());
    let to_b = Arc::clone(&b_addr);
    let a = fake(move |_, frame| not_leader(frame, to_b.get().copied()));
    let to_a = a.addr;
    let b = fake(move |_, frame| not_leader(frame, Some(to_a)));
    b_addr.set(b.addr).unwrap();
    let deadline = Duration::from_millis(300);
    // The default pauses: those are what keep the loop slow.
    let opts = ClientOptions { deadline, ..ClientOptions::default() };
    let client = Client::connect_with(a.addr, opts).unwrap();
    let begun = Instant::now();
    let result = client.get_ts();
    let took = begun.elapsed();
    assert!(
        matches!(result, Err(ClientError::Server { code: ErrorCode::NotLeader, .. })),
        "expected NotLeader, got {result:?}"
    );
    assert!(took >= deadline, "gave up after {took:?}, before the deadline");
    assert!(took < Duration::from_secs(5), "gave up only after {took:?}");
    let seen = a.seen() + b.seen();
    assert!(seen >= 3, "the hints were followed: {seen} requests");
    assert!(seen < 200, "{seen} requests in {took:?}: a tight loop");
}

#[test]
fn an_unspecified_hint_is_ignored() {
    // A hint of 0.0.0.0:port (which Linux would connect to as loopback)
    // names no node: the client moves to the next seed instead.
    let bystander = fake(|_, frame| ts_reply(frame, 1));
    let wildcard: SocketAddr = format!("0.0.0.0:{}", bystander.addr.port()).parse().unwrap();
    let follower = fake(move |_, frame| not_leader(frame, Some(wildcard)));
    let leader = fake(|_, frame| ts_reply(frame, 17));
    let client = Client::connect_with(&[follower.addr, leader.addr][..], quick(SECS_2)).unwrap();
    assert_eq!(client.get_ts().unwrap(), Timestamp::new(17, 1).unwrap());
    assert_eq!(client.server_addr(), leader.addr);
    assert_eq!(bystander.seen(), 0, "the wildcard hint was followed");
}

#[test]
fn a_node_naming_itself_is_asked_again() {
    // A leader loading its window answers NotLeader naming itself: the
    // client waits for it instead of moving to another seed.
    let me = Arc::new(OnceLock::new());
    let own = Arc::clone(&me);
    let syncing =
        fake(move |n, frame| if n < 2 { not_leader(frame, own.get().copied()) } else { ts_reply(frame, 19) });
    me.set(syncing.addr).unwrap();
    let other = fake(|_, frame| ts_reply(frame, 1));
    let client = Client::connect_with(&[syncing.addr, other.addr][..], quick(SECS_2)).unwrap();
    assert_eq!(client.get_ts().unwrap(), Timestamp::new(19, 1).unwrap());
    assert_eq!(client.server_addr(), syncing.addr);
    assert_eq!((syncing.seen(), other.seen()), (3, 0));
}

#[test]
fn a_leader_closing_connections_is_retried_until_it_serves() {
    // The first three requests each lose their connection, then it serves.
    let flaky = fake(|n, frame| if n < 3 { Reply::Close } else { ts_reply(frame, 23) });
    let client = Client::connect_with(flaky.addr, quick(SECS_2)).unwrap();
    assert_eq!(client.get_ts().unwrap(), Timestamp::new(23, 1).unwrap());
    assert_eq!(flaky.seen(), 4);

    // The same behind a hint, with another seed to fall back on.
    let leader = fake(|n, frame| if n < 3 { Reply::Close } else { ts_reply(frame, 29) });
    let to = leader.addr;
    let follower = fake(move |_, frame| not_leader(frame, Some(to)));
    let client = Client::connect_with(&[follower.addr, dead_addr()][..], quick(SECS_2)).unwrap();
    assert_eq!(client.get_ts().unwrap(), Timestamp::new(29, 1).unwrap());
    assert_eq!(client.server_addr(), leader.addr);
}

#[test]
fn merged_callers_follow_the_redirect_together() {
    // Callers pile up behind a slow follower's NotLeader; the merged
    // requests go to the hinted leader, and every caller gets its own range.
    let leader = fake(|n, frame| match frame {
        Frame::GetTs { id, count } => Reply::Delayed(
            Duration::from_millis(20),
            Frame::Ts { id, count, last: Timestamp::new(100 + n as u64, count).unwrap() },
        ),
        _ => Reply::Close,
    });
    let to = leader.addr;
    let follower = fake(move |_, frame| {
        std::thread::sleep(Duration::from_millis(30));
        not_leader(frame, Some(to))
    });
    let one = ClientOptions { max_in_flight: 1, ..quick(SECS_2) };
    let client = Arc::new(Client::connect_with(follower.addr, one).unwrap());
    let mut got: Vec<Timestamp> = each_caller(&client, 12, |client| client.get_ts_n(2).unwrap());
    got.sort_unstable();
    got.dedup();
    assert_eq!(got.len(), 12, "every caller got a range of its own");
    assert_eq!(follower.seen(), 1, "only the first request went to the follower");
    assert!(!leader.pipelined.load(Ordering::SeqCst), "max_in_flight 1 keeps one request in flight");
}

#[test]
fn seed_lists_parse() {
    let one: SocketAddr = "127.0.0.1:7400".parse().unwrap();
    assert_eq!(parse_seeds("127.0.0.1:7400").unwrap(), [one]);
    let want: Vec<SocketAddr> =
        ["127.0.0.1:1", "127.0.0.1:2", "[::1]:3"].iter().map(|a| a.parse().unwrap()).collect();
    // Whitespace, empty entries and repeats are tolerated.
    assert_eq!(parse_seeds(" 127.0.0.1:1 ,127.0.0.1:2,, [::1]:3 , 127.0.0.1:1,").unwrap(), want);
    // Host names resolve (to every address they have).
    let local = parse_seeds("localhost:7400").unwrap();
    assert!(!local.is_empty() && local.iter().all(|a| a.ip().is_loopback() && a.port() == 7400), "{local:?}");

    assert!(matches!(parse_seeds(""), Err(ClientError::NoSeeds)));
    assert!(matches!(parse_seeds(" , ,"), Err(ClientError::NoSeeds)));
    for (list, bad) in [("127.0.0.1:1,nope", "nope"), ("127.0.0.1:port , 127.0.0.1:2", "127.0.0.1:port")] {
        match parse_seeds(list) {
            Err(e @ ClientError::Seed { .. }) => {
                assert!(matches!(&e, ClientError::Seed { entry, .. } if entry == bad), "{e:?}");
                assert!(e.to_string().contains(bad), "the message names the entry: {e}");
                assert!(!e.is_retryable());
            }
            other => panic!("{list:?}: expected a seed error, got {other:?}"),
        }
    }
}
