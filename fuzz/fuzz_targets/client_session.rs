//! The client session (`leasetso_core::client::ClientSession`) against a
//! server the input plays: every caller, connect outcome, read size, clock
//! step and answer (a right one, each error code, a wrong id or count, a
//! range that is no range, a fatal error, a dropped connection, or raw
//! bytes from the input) is the fuzzer's choice.
//!
//! Properties: no panic; every frame the session writes is a whole client
//! frame, a connection's first is its Hello, request ids never repeat, and
//! no more than `max_in_flight` are outstanding; no caller completes twice;
//! a caller's timestamps lie in one millisecond above logical 0, and, while
//! only the played server answers (no raw bytes), no timestamp goes to two
//! callers; and once callers stop arriving and every connection fails,
//! every caller completes within its deadline (none is lost).
#![no_main]

use core::net::SocketAddr;
use core::time::Duration;

use leasetso_core::client::{Action, Answer, Broken, Call, ClientConfig, ClientSession, MAX_COUNT};
use leasetso_core::wire::{FRAME_ROOM, LeaderHint, VERSION};
use leasetso_core::{Ballot, ErrorCode, Frame, Instant, NodeId, Timestamp};
use leasetso_fuzz::{Choices, client_frames};
use libfuzzer_sys::fuzz_target;

const CLUSTER: u64 = 7;

fn seed(i: u16) -> SocketAddr {
    ([127, 0, 0, 1], 7400 + i).into()
}

/// The played server's side of one connection.
#[derive(Default)]
struct Server {
    /// What the client wrote on this connection and the server has not read.
    rx: Vec<u8>,
    /// Whether the Hello arrived.
    greeted: bool,
    /// What the server wrote and the client has not read.
    tx: Vec<u8>,
    /// Requests read and not answered: (id, count for GetTs).
    owed: Vec<(u64, Option<u32>)>,
}

struct Run<'a> {
    choices: Choices<'a>,
    raw: &'a [u8],
    session: ClientSession<u32>,
    config: ClientConfig,
    now: Instant,
    server: Option<Server>,
    /// Per ticket: the count asked (None for other calls), and whether done.
    tickets: Vec<(Option<u32>, bool)>,
    /// Ranges handed to callers: (first, last) packed.
    ranges: Vec<(u64, u64)>,
    /// Whether raw bytes reached the session (then ranges may repeat).
    raw_fed: bool,
    /// The next physical millisecond the played server hands out.
    next_ms: u64,
    last_id: Option<u64>,
    failures: u32,
}

impl Run<'_> {
    fn drain(&mut self) {
        let mut actions = 0;
        while let Some(action) = self.session.poll_action() {
            // Failing connects back off (redirect rules): the session never
            // asks for connects endlessly at one instant.
            actions += 1;
            assert!(actions < 100, "{actions} actions at one instant, the last {action:?}");
            match action {
                Action::Connect(_) => {
                    self.server = None;
                    if self.choices.byte() & 3 == 0 {
                        self.failures += 1;
                        self.session.connection_failed(Broken::Unreachable, self.failures, self.now);
                    } else {
                        self.server = Some(Server::default());
                        self.session.connected(self.now);
                    }
                }
                Action::Close => self.server = None,
            }
        }
        while let Some(done) = self.session.poll_completion() {
            let t = done.ticket.get() as usize;
            let (count, finished) = self.tickets[t];
            assert!(!finished, "ticket {t} completed twice");
            self.tickets[t].1 = true;
            if let Ok(Answer::Ts(last)) = done.result {
                let count = count.expect("a Ts answer to a GetTs caller");
                assert!(last.logical >= count, "{last:?} holds no range of {count} in one ms above 0");
                let packed = last.to_u64();
                self.ranges.push((packed - u64::from(count) + 1, packed));
            }
        }
    }

    fn transmit(&mut self) {
        let mut buf = [0u8; FRAME_ROOM];
        let n = self.session.poll_transmit(&mut buf, self.now);
        let Some(server) = self.server.as_mut() else {
            assert_eq!(n, 0, "wrote {n} bytes with no connection");
            return;
        };
        server.rx.extend_from_slice(&buf[..n]);
        let (frames, used) = client_frames(&server.rx);
        for frame in frames {
            match frame {
                Frame::Hello { version, cluster_id } => {
                    assert!(!server.greeted, "a second Hello");
                    assert_eq!((version, cluster_id), (VERSION, CLUSTER));
                    server.greeted = true;
                    let answer = match self.choices.byte() % 8 {
                        0 => Frame::Welcome { version: VERSION, cluster_id: CLUSTER + 1, node: NodeId(0) },
                        1 => Frame::Error {
                            id: 0,
                            code: ErrorCode::HandshakeRequired,
                            leader: LeaderHint::default(),
                        },
                        _ => Frame::Welcome { version: VERSION, cluster_id: CLUSTER, node: NodeId(0) },
                    };
                    answer.encode(&mut server.tx).expect("a Vec grows");
                }
                request => {
                    assert!(server.greeted, "{request:?} before the Hello");
                    let (id, count) = match request {
                        Frame::GetTs { id, count } => {
                            assert!((1..=MAX_COUNT).contains(&count), "sent a count of {count}");
                            (id, Some(count))
                        }
                        Frame::GetStatus { id }
                        | Frame::ReadPrimary { id }
                        | Frame::ClearPrimary { id, .. } => (id, None),
                        other => panic!("the client sent {other:?}"),
                    };
                    assert!(
                        self.last_id.is_none_or(|last| id > last),
                        "request id {id} after {:?}",
                        self.last_id
                    );
                    self.last_id = Some(id);
                    server.owed.push((id, count));
                }
            }
        }
        server.rx.drain(..used);
        assert!(server.owed.len() <= self.config.max_in_flight, "{} requests outstanding", server.owed.len());
        assert!(self.session.in_flight() <= self.config.max_in_flight);
    }

    /// The played server answers its oldest owed request.
    fn answer(&mut self) {
        let Some(server) = self.server.as_mut() else { return };
        if server.owed.is_empty() {
            return;
        }
        let (id, count) = server.owed.remove(0);
        let hint = LeaderHint { node: Some(NodeId(1)), addr: Some(seed(1)) };
        let error = |code, leader| Frame::Error { id, code, leader };
        let frame = match (self.choices.byte() % 16, count) {
            (0, _) => error(ErrorCode::NotLeader, hint),
            (1, _) => error(ErrorCode::NotLeader, LeaderHint { node: Some(NodeId(2)), addr: None }),
            (2, _) => error(ErrorCode::LogicalExhausted, LeaderHint::default()),
            (3, _) => error(ErrorCode::Internal, LeaderHint::default()),
            (4, _) => error(ErrorCode::CountTooLarge, LeaderHint::default()),
            (5, _) => Frame::Error { id: 0, code: ErrorCode::Malformed, leader: LeaderHint::default() },
            // Answers to the wrong request (a later one, possibly in flight)
            // or of the wrong size, with fresh timestamps.
            (6, _) => {
                self.next_ms += 1;
                Frame::Ts { id: id + 1, count: 1, last: Timestamp { physical_ms: self.next_ms, logical: 1 } }
            }
            (7, Some(count)) => {
                self.next_ms += 1;
                let wrong = count % MAX_COUNT + 1;
                Frame::Ts { id, count: wrong, last: Timestamp { physical_ms: self.next_ms, logical: wrong } }
            }
            // A range that is none: fewer logical values than the count.
            (8, Some(count)) if count > 1 => {
                Frame::Ts { id, count, last: Timestamp { physical_ms: 9, logical: count - 1 } }
            }
            (9, _) => Frame::Primary { id, registered: Some((NodeId(0), Ballot::new(0, 1, NodeId(0)))) },
            (_, Some(count)) => {
                self.next_ms += 1;
                Frame::Ts { id, count, last: Timestamp { physical_ms: self.next_ms, logical: count } }
            }
            (_, None) => Frame::Primary { id, registered: None },
        };
        frame.encode(&mut server.tx).expect("a Vec grows");
    }

    fn deliver(&mut self) {
        let Some(server) = self.server.as_mut() else { return };
        let n = self.choices.chunk(64).min(server.tx.len());
        let bytes: Vec<u8> = server.tx.drain(..n).collect();
        self.session.handle_input(&bytes, self.now);
    }

    fn inject(&mut self) {
        if self.server.is_none() || self.raw.is_empty() {
            return;
        }
        let n = self.choices.chunk(64).min(self.raw.len());
        let (bytes, rest) = self.raw.split_at(n);
        self.raw = rest;
        self.raw_fed = true;
        self.session.handle_input(bytes, self.now);
    }

    fn push(&mut self) {
        let b = self.choices.byte();
        let (call, count) = match b % 8 {
            0 => (Call::Status, None),
            1 => (Call::ReadPrimary, None),
            2 => (Call::ClearPrimary { node: NodeId(0), tag: Ballot::new(0, 1, NodeId(0)) }, None),
            3 => (Call::Ts { count: 0 }, Some(0)),
            4 => (Call::Ts { count: MAX_COUNT + u32::from(b >> 7) }, Some(MAX_COUNT + u32::from(b >> 7))),
            _ => {
                let count = 1 + u32::from(self.choices.byte()) * 40;
                (Call::Ts { count }, Some(count))
            }
        };
        let ticket = self.session.push_call(call, self.now);
        assert_eq!(ticket.get() as usize, self.tickets.len(), "tickets are numbered in arrival order");
        self.tickets.push((count, false));
    }

    fn tick(&mut self, ms: u64) {
        self.now = Instant::from_nanos(self.now.as_nanos() + ms * 1_000_000);
        if self.session.poll_timeout().is_some_and(|at| at <= self.now) {
            self.session.handle_timeout(self.now);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let (mut choices, raw) = Choices::split(data);
    let config = ClientConfig {
        cluster_id: CLUSTER,
        request_timeout: Duration::from_millis(100),
        deadline: Duration::from_millis(400),
        retry_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(20),
        max_batch: [1, 100, 10_000, MAX_COUNT][usize::from(choices.byte() % 4)],
        max_in_flight: 1 + usize::from(choices.byte() % 4),
    };
    let session = ClientSession::new(config, &[seed(0), seed(1), seed(2)], 1).expect("a valid config");
    let mut run = Run {
        choices,
        raw,
        session,
        config,
        now: Instant::from_millis(1_000),
        server: None,
        tickets: Vec::new(),
        ranges: Vec::new(),
        raw_fed: false,
        next_ms: 1_000_000,
        last_id: None,
        failures: 0,
    };
    for _ in 0..400 {
        match run.choices.byte() % 10 {
            0 | 1 => run.push(),
            2 => {
                let ms = u64::from(run.choices.byte() % 64);
                run.tick(ms);
            }
            3 | 4 => run.transmit(),
            5 => run.answer(),
            6 | 7 => run.deliver(),
            8 => run.inject(),
            _ => {
                if run.server.take().is_some() {
                    run.failures += 1;
                    run.session.connection_failed(Broken::Lost, run.failures, run.now);
                }
            }
        }
        run.drain();
    }

    // Callers stop coming and no server answers any more: every caller
    // completes (an answer or its error) by its deadline.
    for _ in 0..2_000 {
        if run.tickets.iter().all(|&(_, done)| done) {
            break;
        }
        run.transmit();
        if run.server.take().is_some() {
            run.failures += 1;
            run.session.connection_failed(Broken::Lost, run.failures, run.now);
        }
        run.tick(5);
        run.drain();
    }
    let lost: Vec<usize> = run.tickets.iter().enumerate().filter(|(_, t)| !t.1).map(|(i, _)| i).collect();
    assert!(lost.is_empty(), "callers never completed: {lost:?}");

    if !run.raw_fed {
        run.ranges.sort_unstable();
        for pair in run.ranges.windows(2) {
            assert!(pair[0].1 < pair[1].0, "one timestamp went to two callers: {pair:?}");
        }
    }
});
