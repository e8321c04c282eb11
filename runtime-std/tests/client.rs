//! The client against scripted servers: redirects, retries, timeouts,
//! replies that do not answer the request, and one request in flight.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use leasetso_core::wire::VERSION;
use leasetso_core::{ErrorCode, Frame, LeaderHint, NodeId, Timestamp};
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

struct Fake {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Frame>>>,
    /// Set when a request arrived while another was still unanswered.
    pipelined: Arc<AtomicBool>,
}

fn fake(script: impl Fn(usize, Frame) -> Reply + Send + Sync + 'static) -> Fake {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let pipelined = Arc::new(AtomicBool::new(false));
    let script = Arc::new(script);
    let (reqs, pipe) = (Arc::clone(&requests), Arc::clone(&pipelined));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let (script, reqs, pipe) = (Arc::clone(&script), Arc::clone(&reqs), Arc::clone(&pipe));
            std::thread::spawn(move || serve_fake(stream, &*script, &reqs, &pipe));
        }
    });
    Fake { addr, requests, pipelined }
}

fn serve_fake(
    mut stream: TcpStream,
    script: &(dyn Fn(usize, Frame) -> Reply + Send + Sync),
    requests: &Mutex<Vec<Frame>>,
    pipelined: &AtomicBool,
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
                std::thread::sleep(Duration::from_secs(10));
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

fn quick(max_retries: u32) -> ClientOptions {
    ClientOptions {
        max_retries,
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
    let client = Client::connect_with(follower.addr, quick(3)).unwrap();
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
    let client = Client::connect_with(flaky.addr, quick(3)).unwrap();
    assert_eq!(client.get_ts_n(5).unwrap(), Timestamp::new(1_000, 5).unwrap());
    assert_eq!(flaky.requests.lock().unwrap().len(), 2);

    // Never a leader, and no hint: the retries run out.
    let lost = fake(|_, frame| match frame {
        Frame::GetTs { id, .. } => {
            Reply::Send(Frame::Error { id, code: ErrorCode::NotLeader, leader: LeaderHint::default() })
        }
        _ => Reply::Close,
    });
    let client = Client::connect_with(lost.addr, quick(4)).unwrap();
    match client.get_ts() {
        Err(e @ ClientError::Server { code: ErrorCode::NotLeader, .. }) => assert!(e.is_retryable()),
        other => panic!("expected NotLeader, got {other:?}"),
    }
    assert_eq!(lost.requests.lock().unwrap().len(), 5, "one attempt and four retries");

    // A refusal that cannot succeed later is not retried.
    let refuse = fake(|_, frame| match frame {
        Frame::GetTs { id, .. } => {
            Reply::Send(Frame::Error { id, code: ErrorCode::CountTooLarge, leader: LeaderHint::default() })
        }
        _ => Reply::Close,
    });
    let client = Client::connect_with(refuse.addr, quick(4)).unwrap();
    assert!(matches!(client.get_ts(), Err(ClientError::Server { code: ErrorCode::CountTooLarge, .. })));
    assert_eq!(refuse.requests.lock().unwrap().len(), 1);
}

#[test]
fn a_lost_connection_is_reopened() {
    let closing = fake(|n, frame| if n == 0 { Reply::Close } else { ts_reply(frame, 7) });
    let client = Client::connect_with(closing.addr, quick(0)).unwrap();
    assert!(matches!(client.get_ts(), Err(ClientError::Closed { .. })), "no retries allowed");
    // The next call reconnects (and handshakes) by itself.
    assert_eq!(client.get_ts().unwrap(), Timestamp::new(7, 1).unwrap());
}

#[test]
fn a_silent_server_times_out() {
    let silent = fake(|_, _| Reply::Silence);
    let client = Client::connect_with(silent.addr, quick(0)).unwrap();
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
    let client = Client::connect_with(short.addr, quick(3)).unwrap();
    assert!(matches!(client.get_ts(), Err(ClientError::Unexpected { .. })));

    // A range crossing into the previous millisecond.
    let crossing = fake(|_, frame| match frame {
        Frame::GetTs { id, count } => {
            Reply::Send(Frame::Ts { id, count, last: Timestamp::new(5, 1).unwrap() })
        }
        _ => Reply::Close,
    });
    let client = Client::connect_with(crossing.addr, quick(3)).unwrap();
    assert!(matches!(client.get_ts_n(2), Err(ClientError::Unexpected { .. })));

    // Another request's id.
    let confused = fake(|_, frame| match frame {
        Frame::GetTs { id, count } => {
            Reply::Send(Frame::Ts { id: id + 1, count, last: Timestamp::new(5, count).unwrap() })
        }
        _ => Reply::Close,
    });
    let client = Client::connect_with(confused.addr, quick(3)).unwrap();
    assert!(matches!(client.get_ts(), Err(ClientError::Unexpected { .. })));

    // Counts no request can carry never leave the client.
    assert!(matches!(client.get_ts_n(0), Err(ClientError::InvalidCount { count: 0, .. })));
    assert!(matches!(client.get_ts_n(1 << 18), Err(ClientError::InvalidCount { .. })));
    assert_eq!(confused.requests.lock().unwrap().len(), 1);
}

#[test]
fn concurrent_calls_share_one_request_in_flight() {
    // Each request is answered after 50 ms: callers arriving meanwhile are
    // merged into the next one, and nothing is sent before the answer.
    let slow = fake(|n, frame| match frame {
        Frame::GetTs { id, count } => Reply::Delayed(
            Duration::from_millis(50),
            Frame::Ts { id, count, last: Timestamp::new(100 + n as u64, count).unwrap() },
        ),
        _ => Reply::Close,
    });
    let client = Arc::new(Client::connect_with(slow.addr, quick(0)).unwrap());
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
    let opts = ClientOptions { max_batch: 5, ..quick(0) };
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
    let client = Arc::new(Client::connect_with(closing.addr, quick(0)).unwrap());
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
    let client = Arc::new(Client::connect_with(small.addr, quick(0)).unwrap());
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
