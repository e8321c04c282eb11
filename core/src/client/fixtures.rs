//! What the client session's unit tests share: a session over test
//! addresses, and the server's side of the conversation as frames.

pub(super) use core::net::SocketAddr;
pub(super) use core::time::Duration;

pub(super) use crate::ballot::NodeId;
pub(super) use crate::time::Instant;
pub(super) use crate::timestamp::Timestamp;
pub(super) use crate::wire::FRAME_ROOM;
pub(super) use crate::wire::{ErrorCode, Frame, LeaderHint, VERSION};

pub(super) use super::*;

pub(super) type Session = ClientSession<&'static str>;

pub(super) const A: &str = "127.0.0.1:1";
pub(super) const B: &str = "127.0.0.1:2";

pub(super) fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

pub(super) fn ms(t: u64) -> Instant {
    Instant::from_millis(t)
}

pub(super) fn session(config: ClientConfig, seeds: &[&str]) -> Session {
    let seeds: Vec<SocketAddr> = seeds.iter().map(|s| addr(s)).collect();
    ClientSession::new(config, &seeds, 1).unwrap()
}

pub(super) fn config(max_in_flight: usize) -> ClientConfig {
    ClientConfig { max_in_flight, ..ClientConfig::default() }
}

/// Everything the session transmits now, decoded.
pub(super) fn sent(s: &mut Session, now: Instant) -> Vec<Frame> {
    let mut buf = [0u8; 4 * FRAME_ROOM];
    let n = s.poll_transmit(&mut buf, now);
    let mut frames = Vec::new();
    let mut at = 0;
    while let Some((f, used)) = Frame::decode(&buf[at..n]).unwrap() {
        frames.push(f);
        at += used;
    }
    assert_eq!(at, n, "a partial frame was transmitted");
    frames
}

pub(super) fn input(s: &mut Session, frames: &[Frame], now: Instant) {
    let mut bytes = Vec::new();
    for f in frames {
        f.encode(&mut bytes).unwrap();
    }
    s.handle_input(&bytes, now);
}

pub(super) fn done(s: &mut Session) -> Vec<(u64, Result<Answer, CallError<&'static str>>)> {
    std::iter::from_fn(|| s.poll_completion()).map(|c| (c.ticket.get(), c.result)).collect()
}

pub(super) fn welcome() -> Frame {
    Frame::Welcome { version: VERSION, cluster_id: 9, node: NodeId(0) }
}

/// Connects to the expected address and returns what went out first.
pub(super) fn connect(s: &mut Session, to: &str, now: Instant) -> Vec<Frame> {
    assert_eq!(s.poll_action(), Some(Action::Connect(addr(to))));
    s.connected(now);
    sent(s, now)
}

pub(super) fn ts(t: u64) -> Result<Answer, CallError<&'static str>> {
    Ok(Answer::Ts(Timestamp::from_u64(t)))
}

pub(super) fn ts_frame(id: u64, count: u32, physical: u64, logical: u32) -> Frame {
    Frame::Ts { id, count, last: Timestamp::new(physical, logical).unwrap() }
}

pub(super) fn not_leader(id: u64, to: Option<&str>) -> Frame {
    Frame::Error {
        id,
        code: ErrorCode::NotLeader,
        leader: LeaderHint { node: Some(NodeId(1)), addr: to.map(addr) },
    }
}
