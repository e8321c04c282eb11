//! Evidence for a client change, not a client: leasetso-std's `Client` next to
//! a PROTOTYPE batching client whose callers park on a slot of their own, so a
//! finished batch wakes exactly its callers and hands the sender role to one
//! waiter, instead of `Condvar::notify_all` waking every waiting thread.
//!
//! Same server, same merging rule (up to 10,000 timestamps per request), one
//! request in flight; only the wake-up differs. N threads share one client and
//! ask for one timestamp (then 64) at a time for `PARK_SECONDS` (default 3)
//! per run, two interleaved rounds. Prints timestamps/s of both, the ratio,
//! and the prototype's timestamps per request (from the server's counters).
//! The prototype has no retries, timeouts or error handling.
//!
//! `cargo bench -p leasetso-benches --bench park_client`; in test mode
//! (`cargo test --benches`) it runs for a moment as a smoke test.

use std::collections::VecDeque;
use std::hint::black_box;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread::Thread;
use std::time::{Duration, Instant};

use leasetso_benches::start_server;

const WAITING: u8 = 0;
const DONE: u8 = 1;
const SEND: u8 = 2;

/// One caller's place in the queue.
struct Slot {
    count: u32,
    state: AtomicU8,
    last: AtomicU64,
    thread: Thread,
}

struct Queue {
    waiting: VecDeque<Arc<Slot>>,
    sending: bool,
}

struct ParkClient {
    queue: Mutex<Queue>,
    conn: Mutex<(TcpStream, u64)>,
}

impl ParkClient {
    fn connect(addr: SocketAddr) -> ParkClient {
        let mut tcp = TcpStream::connect(addr).expect("connect");
        tcp.set_nodelay(true).expect("nodelay");
        let mut hello = [0u8; 18];
        hello[..4].copy_from_slice(&14u32.to_be_bytes());
        hello[4] = 0x01;
        hello[5..9].copy_from_slice(b"LTSO");
        hello[9] = 1;
        tcp.write_all(&hello).expect("hello");
        let mut welcome = [0u8; 20];
        tcp.read_exact(&mut welcome).expect("welcome");
        assert_eq!(welcome[4], 0x02, "Welcome");
        ParkClient {
            queue: Mutex::new(Queue { waiting: VecDeque::new(), sending: false }),
            conn: Mutex::new((tcp, 1)),
        }
    }

    fn round_trip(&self, count: u32) -> u64 {
        let mut conn = self.conn.lock().expect("conn");
        let id = conn.1;
        conn.1 += 1;
        let mut request = [0u8; 17];
        request[..4].copy_from_slice(&13u32.to_be_bytes());
        request[4] = 0x10;
        request[5..13].copy_from_slice(&id.to_be_bytes());
        request[13..17].copy_from_slice(&count.to_be_bytes());
        conn.0.write_all(&request).expect("write");
        let mut reply = [0u8; 25];
        conn.0.read_exact(&mut reply).expect("read");
        assert_eq!(reply[4], 0x11, "Ts");
        u64::from_be_bytes(reply[17..25].try_into().expect("8 bytes"))
    }

    fn get_ts_n(&self, count: u32) -> u64 {
        let me = Arc::new(Slot {
            count,
            state: AtomicU8::new(WAITING),
            last: AtomicU64::new(0),
            thread: std::thread::current(),
        });
        {
            let mut q = self.queue.lock().expect("queue");
            q.waiting.push_back(Arc::clone(&me));
            if q.sending {
                drop(q);
                loop {
                    match me.state.load(Ordering::Acquire) {
                        DONE => return me.last.load(Ordering::Relaxed),
                        SEND => break,
                        _ => std::thread::park(),
                    }
                }
            } else {
                q.sending = true;
            }
        }
        // The sender: send what is queued (oldest first, this caller among
        // them), hand out the ranges, until this caller's own range is in;
        // then pass the role to the oldest waiter, which is still queued.
        let mut batch: Vec<Arc<Slot>> = Vec::new();
        loop {
            let mut total = 0u32;
            {
                let mut q = self.queue.lock().expect("queue");
                if me.state.load(Ordering::Relaxed) == DONE {
                    match q.waiting.front() {
                        Some(next) => {
                            next.state.store(SEND, Ordering::Release);
                            next.thread.unpark();
                        }
                        None => q.sending = false,
                    }
                    return me.last.load(Ordering::Relaxed);
                }
                batch.clear();
                while let Some(slot) = q.waiting.front() {
                    if !batch.is_empty() && total + slot.count > 10_000 {
                        break;
                    }
                    total += slot.count;
                    batch.extend(q.waiting.pop_front());
                }
            }
            let last = self.round_trip(total);
            let mut end = last - u64::from(total);
            for slot in &batch {
                end += u64::from(slot.count);
                slot.last.store(end, Ordering::Relaxed);
                slot.state.store(DONE, Ordering::Release);
                if !Arc::ptr_eq(slot, &me) {
                    slot.thread.unpark();
                }
            }
        }
    }
}

/// Timestamps per second of `callers` threads calling `call` (which gets
/// `count` timestamps) for `time`.
fn rate(callers: usize, count: u32, time: Duration, call: impl Fn() + Sync) -> f64 {
    let stop = AtomicBool::new(false);
    let start = Barrier::new(callers + 1);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..callers)
            .map(|_| {
                let (stop, start, call) = (&stop, &start, &call);
                s.spawn(move || {
                    start.wait();
                    let mut calls = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        call();
                        calls += 1;
                    }
                    calls
                })
            })
            .collect();
        start.wait();
        let t0 = Instant::now();
        std::thread::sleep(time);
        stop.store(true, Ordering::Relaxed);
        let calls: u64 = workers.into_iter().map(|w| w.join().expect("caller")).sum();
        (calls * u64::from(count)) as f64 / t0.elapsed().as_secs_f64()
    })
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let seconds: f64 = match std::env::var("PARK_SECONDS") {
        Ok(v) => v.parse().expect("PARK_SECONDS is a number"),
        Err(_) if bench => 3.0,
        Err(_) => 0.05,
    };
    let time = Duration::from_secs_f64(seconds);
    let dir = tempfile::tempdir().expect("temp dir");
    let server = start_server(dir.path());
    let client = leasetso_std::Client::connect(server.local_addr()).expect("connect");
    let park = ParkClient::connect(server.local_addr());

    println!("std Client vs parking prototype, {seconds} s per run, N threads sharing one client");
    for round in 0..2 {
        for (count, callers) in [(1u32, 1usize), (1, 8), (1, 64), (1, 256), (64, 1), (64, 8)] {
            let std_rate = rate(callers, count, time, || {
                black_box(client.get_ts_n(count).expect("get_ts"));
            });
            let before = server.stats();
            let park_rate = rate(callers, count, time, || {
                black_box(park.get_ts_n(count));
            });
            let after = server.stats();
            let per_request = (after.timestamps - before.timestamps) as f64
                / (after.get_ts_requests - before.get_ts_requests).max(1) as f64;
            println!(
                "round {round}: {callers:>3} x get_ts_n({count:>2})  std {:>12.0}/s  prototype {:>12.0}/s  ({:.2}x)  prototype: {per_request:.1} timestamps/request",
                std_rate,
                park_rate,
                park_rate / std_rate
            );
        }
    }
    drop(client);
    server.shutdown();
}
