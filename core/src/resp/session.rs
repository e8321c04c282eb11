//! The RESP door's session: one connection, bytes in, bytes out.
//!
//! [`RespConn`] is shaped like the client protocol's
//! [`ServerConn`](crate::conn::ServerConn): the runtime reads bytes onto
//! the end of its read buffer (keeping [`MAX_COMMAND_LEN`](super::MAX_COMMAND_LEN)
//! bytes free, so a whole command always fits),
//! calls [`RespConn::handle`] with the unread bytes, drops what it
//! consumed, and acts on the [`RespServed`] it returns: write `out` and read
//! more, write `out` and call again, or write `out`, linger and close. Every
//! rule of the door is here, not in the runtimes: commands are answered in
//! order; a run of consecutive `TSO`s is served through one
//! [`RespBackend::get_ts_run`] call (one lock of the node for the run); a
//! refusal names the leader's RESP address (`-NOTLEADER`) or says to try
//! again (`-TRYAGAIN`); a protocol violation is answered
//! `-ERR Protocol error: ...` and closes the connection, as `QUIT` does
//! after its `+OK`; and `out` never grows past [`OUT_LIMIT`].
//!
//! The older pieces ([`Session`], [`Action`], [`ts_reply`]), which leave the
//! loop to the runtime, stay until the runtimes move to [`RespConn`].

use core::net::SocketAddr;
use std::sync::Arc;

use crate::ballot::NodeId;
use crate::conn::{Tally, TsRefusal};
use crate::oracle::GetTsError;
use crate::time::Instant;
use crate::timestamp::Timestamp;

use super::command::{Command, CommandQuery};
use super::parse::{MAX_BULK, RespError};
use super::reply::{Busy, ErrorReply, Reply, ServerInfo};

/// What the runtime does with a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action<'a> {
    /// Send this reply and read on.
    Reply(Reply<'a>),
    /// Ask the node for `count` timestamps and send [`ts_reply`]'s answer.
    GetTs {
        /// How many.
        count: u32,
    },
    /// Send this reply, then close the connection.
    Close(Reply<'a>),
    /// Send nothing.
    Nothing,
}

/// What one RESP connection remembers: its id, its `CLIENT SETNAME` name
/// (kept in a fixed array), and whether it gave the door's password.
#[derive(Clone, Debug)]
pub struct Session {
    id: u64,
    name: [u8; MAX_BULK],
    name_len: usize,
    /// The door's password (`serve --resp-password-file`), if it has one.
    password: Option<Arc<[u8]>>,
    /// Whether commands may run: at once without a password, after `AUTH`
    /// (or `HELLO ... AUTH`) with one.
    authenticated: bool,
}

impl Session {
    /// A connection numbered `id` (what `CLIENT ID` and `HELLO` report).
    pub fn new(id: u64) -> Session {
        Session { id, name: [0; MAX_BULK], name_len: 0, password: None, authenticated: true }
    }

    /// A connection of a door that asks for `password` before anything but
    /// `AUTH`, `HELLO` and `QUIT` (`-NOAUTH` until then).
    pub fn with_password(id: u64, password: Arc<[u8]>) -> Session {
        Session { password: Some(password), authenticated: false, ..Session::new(id) }
    }

    /// Whether the connection may run commands (it gave the password, or
    /// the door has none).
    pub fn is_authenticated(&self) -> bool {
        self.authenticated
    }

    /// `AUTH`: the password compared in constant time (how long it takes
    /// says nothing of how much of it matched).
    /// Returns the error reply for a refusal, `None` once authenticated.
    fn authenticate(&mut self, given: &[u8]) -> Option<ErrorReply<'static>> {
        let Some(password) = &self.password else { return Some(ErrorReply::NoPasswordSet) };
        let differ = password.len() != given.len()
            || password.iter().zip(given).fold(0u8, |acc, (a, b)| acc | (a ^ b)) != 0;
        if differ {
            return Some(ErrorReply::WrongPass);
        }
        self.authenticated = true;
        None
    }

    /// The connection's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The name `CLIENT SETNAME` gave the connection, if any.
    pub fn name(&self) -> Option<&[u8]> {
        Some(&self.name[..self.name_len]).filter(|n| !n.is_empty())
    }

    fn set_name(&mut self, name: &[u8]) {
        // The parser keeps every word within MAX_BULK bytes.
        let len = name.len().min(MAX_BULK);
        self.name[..len].copy_from_slice(&name[..len]);
        self.name_len = len;
    }

    /// Decides what to do with `command`: a reply, a timestamp request, or
    /// closing.
    pub fn handle<'a>(&'a mut self, command: Command<'a>, info: &ServerInfo) -> Action<'a> {
        let reply = match command {
            Command::Empty => return Action::Nothing,
            Command::Quit => return Action::Close(Reply::Ok),
            Command::Hello { name, password } => {
                if let Some(e) = password.and_then(|p| self.authenticate(p)) {
                    return Action::Reply(Reply::Error(e));
                }
                if !self.authenticated {
                    return Action::Reply(Reply::Error(ErrorReply::NoAuth));
                }
                if let Some(name) = name {
                    self.set_name(name);
                }
                Reply::Hello { id: self.id }
            }
            Command::Auth { password } => match self.authenticate(password) {
                None => Reply::Ok,
                Some(e) => Reply::Error(e),
            },
            // With a password, nothing but AUTH, HELLO and QUIT before it.
            _ if !self.authenticated => Reply::Error(ErrorReply::NoAuth),
            Command::Tso { count } => return Action::GetTs { count },
            Command::Ping { message: None } => Reply::Pong,
            Command::Ping { message: Some(m) } | Command::Echo { message: m } => Reply::Bulk(m),
            Command::Command(CommandQuery::List) => Reply::EmptyArray,
            Command::Command(CommandQuery::Count) => Reply::Integer(0),
            Command::Command(CommandQuery::Info { names }) => Reply::Nulls(names),
            Command::ClientSetName { name } => {
                self.set_name(name);
                Reply::Ok
            }
            Command::ClientSetInfo | Command::Select => Reply::Ok,
            Command::ClientGetName => match self.name() {
                Some(name) => Reply::Bulk(name),
                None => Reply::Null,
            },
            Command::ClientId => Reply::Integer(i64::try_from(self.id).unwrap_or(i64::MAX)),
            Command::Info { server } => Reply::Info { info: *info, server },
            Command::ConfigGet { params } => Reply::Config(params),
            Command::Invalid(e) => Reply::Error(e),
        };
        Action::Reply(reply)
    }
}

/// The answer to `TSO`: the packed last timestamp of the range as an
/// integer, or why not. `me` is the answering node; `resp_addr` gives the
/// RESP address a node advertised, for `-NOTLEADER`.
pub fn ts_reply(
    result: Result<Timestamp, GetTsError>,
    me: NodeId,
    resp_addr: impl FnOnce(NodeId) -> Option<SocketAddr>,
) -> Reply<'static> {
    let e = match result {
        // A packed timestamp fits an i64 until the year 3084.
        Ok(ts) => {
            return i64::try_from(ts.to_u64()).map_or(Reply::Error(ErrorReply::Internal), Reply::Integer);
        }
        Err(GetTsError::NotLeader { leader: None }) => ErrorReply::TryAgain(Busy::NoLeader),
        Err(GetTsError::NotLeader { leader: Some(node) }) if node == me => {
            ErrorReply::TryAgain(Busy::Syncing)
        }
        Err(GetTsError::NotLeader { leader: Some(node) }) => match resp_addr(node) {
            Some(addr) if !addr.ip().is_unspecified() => ErrorReply::NotLeader { addr },
            _ => ErrorReply::TryAgain(Busy::LeaderUnknownAddr { node }),
        },
        Err(GetTsError::LogicalExhausted) => ErrorReply::TryAgain(Busy::LogicalExhausted),
        // The parser lets neither through; the node checks again.
        Err(GetTsError::ZeroCount) => ErrorReply::ZeroCount,
        Err(GetTsError::CountTooLarge { .. }) => ErrorReply::CountTooLarge,
    };
    Reply::Error(e)
}

/// [`RespConn::handle`] stops with [`RespServed::Flush`] once `out` holds
/// this many bytes, so that a long pipelined burst is answered while it is
/// read.
pub const WRITE_FLUSH: usize = 16 * 1024;
/// The most bytes one reply of this door encodes to (the longest is an
/// unknown command's error, quoting up to [`super::MAX_ARGS`] words of
/// [`super::MAX_BULK`] bytes).
pub const MAX_REPLY_LEN: usize = 1024;
/// The most bytes `out` holds: [`WRITE_FLUSH`] plus one reply. A runtime
/// that makes `out` with this capacity never sees it reallocated.
pub const OUT_LIMIT: usize = WRITE_FLUSH + MAX_REPLY_LEN;
/// The most `TSO`s served through one [`RespBackend::get_ts_run`] call: the
/// run's counts and results live in fixed arrays of the session.
pub const MAX_RUN: usize = 64;
/// The most bytes a successful `TSO` reply takes (`:`, 19 digits, CRLF).
const TS_REPLY_LEN: usize = 22;

/// What a RESP connection needs from the node it serves. Each runtime
/// implements it over its shared node.
pub trait RespBackend {
    /// Hands out `count` timestamps; the last of the range on success. The
    /// time of the lease check is the backend's to read, under its lock.
    fn get_ts(&mut self, count: u32) -> Result<Timestamp, TsRefusal>;

    /// Serves the pipelined `TSO`s of `counts`, in order, writing each
    /// result to the same index of `results` (as long as `counts`), and
    /// stops after the first refusal; returns how many it answered (at least
    /// 1 for a non-empty run). A backend takes its node's lock once for the
    /// whole run (reading the clock for each count under it), so that many
    /// connection threads do not pass the lock around per command; the
    /// default asks [`get_ts`](RespBackend::get_ts) once per count.
    fn get_ts_run(&mut self, counts: &[u32], results: &mut [Result<Timestamp, TsRefusal>]) -> usize {
        let mut answered = 0;
        for (count, result) in counts.iter().zip(results.iter_mut()) {
            *result = self.get_ts(*count);
            answered += 1;
            if result.is_err() {
                break;
            }
        }
        answered
    }

    /// The RESP address node `node` advertised in its peer handshake, if
    /// this node knows it: where `-NOTLEADER` sends a client.
    fn resp_addr(&self, node: NodeId) -> Option<SocketAddr>;

    /// Counts what the connection did ([`Tally::GetTs`] per `TSO`,
    /// [`Tally::Timestamps`] per success, [`Tally::Error`] per error reply);
    /// the default counts nothing. A runtime that bumps shared counters
    /// sums here and bumps once per [`RespConn::handle`].
    fn tally(&mut self, tally: Tally) {
        let _ = tally;
    }
}

/// The RESP address peers hand out for a node whose RESP door is bound to
/// `bound`: the bound address itself, or, if that is a wildcard, the IP of
/// the node's advertised client address `advertise` with the bound port.
/// `None` for a wildcard without one: a wildcard address is never handed
/// out, since no client could connect to it.
pub fn advertised_addr(bound: SocketAddr, advertise: Option<SocketAddr>) -> Option<SocketAddr> {
    if bound.ip().is_unspecified() {
        advertise.filter(|a| !a.ip().is_unspecified()).map(|a| SocketAddr::new(a.ip(), bound.port()))
    } else {
        Some(bound)
    }
}

/// Why a RESP connection closes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RespClose {
    /// The client sent `QUIT` (answered `+OK`).
    #[error("the client quit")]
    Quit,
    /// The client broke the protocol (answered `-ERR Protocol error: ...`):
    /// the byte stream is out of step and cannot be trusted further.
    #[error("RESP protocol error: {0}")]
    Protocol(#[from] RespError),
}

/// What the runtime does after [`RespConn::handle`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "the runtime must act on what the session asks"]
pub enum RespServed {
    /// No complete command is left in the input: write `out` (if anything
    /// is in it) and read more.
    Read,
    /// `out` holds at least [`WRITE_FLUSH`] bytes: write it out, clear it,
    /// then call `handle` again with the input not yet consumed.
    Flush,
    /// The last reply in `out` ends the conversation: write `out`, linger
    /// (as [`crate::conn::LINGER`] says), close. The session answers nothing
    /// more.
    Close(RespClose),
}

/// One RESP connection as a sans-IO session (module documentation).
#[derive(Clone, Debug)]
pub struct RespConn {
    session: Session,
    info: ServerInfo,
    closed: Option<RespClose>,
    /// The latest time an input carried; nothing here enforces a time yet.
    last_input: Option<Instant>,
    /// A run's counts and results: fixed, so a run allocates nothing.
    counts: [u32; MAX_RUN],
    results: [Result<Timestamp, TsRefusal>; MAX_RUN],
}

impl RespConn {
    /// A session for connection number `id` (what `CLIENT ID` and `HELLO`
    /// report) to the node `info` describes; with `password`, the client
    /// must give it (`AUTH`) before anything else.
    pub fn new(id: u64, info: ServerInfo, password: Option<Arc<[u8]>>) -> RespConn {
        RespConn {
            session: match password {
                Some(p) => Session::with_password(id, p),
                None => Session::new(id),
            },
            info,
            closed: None,
            last_input: None,
            counts: [0; MAX_RUN],
            results: [Err(TsRefusal::Unavailable); MAX_RUN],
        }
    }

    /// What the connection remembers (its id and name).
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// Why the session closed, once it did.
    pub fn closed(&self) -> Option<RespClose> {
        self.closed
    }

    /// The latest time an input carried.
    pub fn last_input(&self) -> Option<Instant> {
        self.last_input
    }

    /// Answers the complete commands at the start of `input`, read at
    /// `now`, in order, appending the replies to `out`. Returns how many
    /// bytes of `input` it consumed (whole commands only: the rest must be
    /// passed again with more bytes behind it) and what the runtime does
    /// next. A run of consecutive `TSO`s is served through one
    /// [`RespBackend::get_ts_run`] call. Never panics, and never lets `out`
    /// grow past [`OUT_LIMIT`] if the runtime empties it on
    /// [`RespServed::Flush`].
    pub fn handle(
        &mut self,
        input: &[u8],
        now: Instant,
        backend: &mut impl RespBackend,
        out: &mut Vec<u8>,
    ) -> (usize, RespServed) {
        self.last_input = Some(self.last_input.map_or(now, |at| at.max(now)));
        let mut used = 0;
        loop {
            if let Some(why) = self.closed {
                return (used, RespServed::Close(why));
            }
            // Bounded output: no reply is started while `out` is full.
            if out.len() >= WRITE_FLUSH {
                return (used, RespServed::Flush);
            }
            let command = match Command::parse(&input[used..]) {
                Ok(Some((command, n))) => {
                    used += n;
                    command
                }
                Ok(None) => return (used, RespServed::Read),
                // The bad bytes are not consumed: their extent cannot be trusted.
                Err(e) => {
                    send(backend, out, &Reply::Error(ErrorReply::Protocol(e)));
                    self.closed = Some(RespClose::Protocol(e));
                    continue;
                }
            };
            if let Command::Tso { count } = command
                && self.session.is_authenticated()
            {
                used += self.tso_run(count, &input[used..], backend, out);
                continue;
            }
            match self.session.handle(command, &self.info) {
                Action::Nothing => {}
                Action::Reply(reply) => send(backend, out, &reply),
                Action::Close(reply) => {
                    send(backend, out, &reply);
                    self.closed = Some(RespClose::Quit);
                }
                // Only `Command::Tso` asks for timestamps, and it went above.
                Action::GetTs { count } => {
                    used += self.tso_run(count, &input[used..], backend, out);
                }
            }
        }
    }

    /// Serves `TSO count` and the `TSO`s that directly follow it in `rest`
    /// (as many as fit [`MAX_RUN`] and the room left before
    /// [`WRITE_FLUSH`]) through one backend call, and answers them in order;
    /// returns the bytes of `rest` the followers took. A run stops at the
    /// first refusal: the `TSO`s after it are served again, each in turn.
    fn tso_run(
        &mut self,
        count: u32,
        rest: &[u8],
        backend: &mut impl RespBackend,
        out: &mut Vec<u8>,
    ) -> usize {
        self.counts[0] = count;
        let mut run = 1;
        let mut ends = [0usize; MAX_RUN];
        let mut used = 0;
        // Every success of the run counted as if written, the last reply
        // (an error, at most) within MAX_REPLY_LEN: `out` stays below OUT_LIMIT.
        while run < MAX_RUN && out.len() + run * TS_REPLY_LEN < WRITE_FLUSH {
            match Command::parse(&rest[used..]) {
                Ok(Some((Command::Tso { count }, n))) => {
                    self.counts[run] = count;
                    used += n;
                    ends[run] = used;
                    run += 1;
                }
                _ => break,
            }
        }
        let answered = backend.get_ts_run(&self.counts[..run], &mut self.results[..run]).clamp(1, run);
        for i in 0..answered {
            backend.tally(Tally::GetTs);
            let result = self.results[i];
            if result.is_ok() {
                backend.tally(Tally::Timestamps(self.counts[i]));
            }
            let reply = tso_reply(result, self.info.node, backend);
            send(backend, out, &reply);
        }
        // The TSOs the backend did not reach are not consumed.
        ends[answered - 1]
    }
}

/// The answer to one `TSO` a backend served: [`ts_reply`]'s, with the
/// leader's RESP address from the backend, and `Internal` from a node that
/// cannot answer at all.
fn tso_reply(result: Result<Timestamp, TsRefusal>, me: NodeId, backend: &impl RespBackend) -> Reply<'static> {
    match result {
        Ok(last) => ts_reply(Ok(last), me, |_| None),
        Err(TsRefusal::Node(e)) => ts_reply(Err(e), me, |leader| backend.resp_addr(leader)),
        Err(TsRefusal::Unavailable) => Reply::Error(ErrorReply::Internal),
    }
}

/// Appends `reply` to `out`, counting an error.
fn send(backend: &mut impl RespBackend, out: &mut Vec<u8>, reply: &Reply<'_>) {
    if let Reply::Error(_) = reply {
        backend.tally(Tally::Error);
    }
    // A `Vec` grows as needed, so encoding into it cannot fail; with
    // OUT_LIMIT reserved it does not grow either.
    let _ = reply.encode(out);
}
#[cfg(test)]
mod tests {
    use crate::resp::fixtures::*;
    use std::sync::Arc;

    #[test]
    fn session_remembers_its_name() {
        let info = ServerInfo { node: NodeId(2), nodes: 3 };
        let mut session = Session::new(1);
        assert_eq!(
            session.handle(cmd(&[b"CLIENT", b"SETNAME", b"worker-1"]), &info),
            Action::Reply(Reply::Ok)
        );
        assert_eq!(session.name(), Some(&b"worker-1"[..]));
        assert_eq!(
            session.handle(cmd(&[b"CLIENT", b"GETNAME"]), &info),
            Action::Reply(Reply::Bulk(b"worker-1"))
        );
        session.handle(cmd(&[b"HELLO", b"2", b"SETNAME", b"w2"]), &info);
        assert_eq!(session.name(), Some(&b"w2"[..]));
        session.handle(cmd(&[b"CLIENT", b"SETNAME", b""]), &info);
        assert_eq!(session.name(), None);
        assert_eq!(session.handle(cmd(&[b"TSO", b"3"]), &info), Action::GetTs { count: 3 });
        assert_eq!(session.handle(cmd(&[b"QUIT"]), &info), Action::Close(Reply::Ok));
        assert_eq!(session.handle(Command::Empty, &info), Action::Nothing);
        assert_eq!(session.id(), 1);
    }

    #[test]
    fn ts_replies() {
        let me = NodeId(0);
        let addr: SocketAddr = "10.0.0.2:6380".parse().unwrap();
        let ts = Timestamp::new(1_700_000_000_000, 10).unwrap();
        assert_eq!(ts_reply(Ok(ts), me, |_| None), Reply::Integer(ts.to_u64() as i64));
        let not_leader = |leader| Err(GetTsError::NotLeader { leader });
        assert_eq!(
            ts_reply(not_leader(Some(NodeId(1))), me, |_| Some(addr)),
            Reply::Error(ErrorReply::NotLeader { addr })
        );
        assert_eq!(
            ts_reply(not_leader(Some(NodeId(1))), me, |_| None),
            Reply::Error(ErrorReply::TryAgain(Busy::LeaderUnknownAddr { node: NodeId(1) }))
        );
        assert_eq!(
            ts_reply(not_leader(Some(NodeId(1))), me, |_| Some("0.0.0.0:6380".parse().unwrap())),
            Reply::Error(ErrorReply::TryAgain(Busy::LeaderUnknownAddr { node: NodeId(1) }))
        );
        assert_eq!(
            ts_reply(not_leader(Some(me)), me, |_| Some(addr)),
            Reply::Error(ErrorReply::TryAgain(Busy::Syncing))
        );
        assert_eq!(
            ts_reply(not_leader(None), me, |_| Some(addr)),
            Reply::Error(ErrorReply::TryAgain(Busy::NoLeader))
        );
        assert_eq!(
            ts_reply(Err(GetTsError::LogicalExhausted), me, |_| None),
            Reply::Error(ErrorReply::TryAgain(Busy::LogicalExhausted))
        );
        assert_eq!(ts_reply(Err(GetTsError::ZeroCount), me, |_| None), Reply::Error(ErrorReply::ZeroCount));
        assert_eq!(
            ts_reply(Err(GetTsError::CountTooLarge { count: 1 << 20, max: MAX_LOGICAL - 1 }), me, |_| None),
            Reply::Error(ErrorReply::CountTooLarge)
        );
        let far = Timestamp::from_u64(u64::MAX);
        assert_eq!(ts_reply(Ok(far), me, |_| None), Reply::Error(ErrorReply::Internal));
    }

    /// A node whose answers the test sets, recording every run it served.
    struct Node {
        /// The refusal from the `n`-th `TSO` on (0-based), if any.
        refuse_from: Option<(usize, TsRefusal)>,
        served: usize,
        runs: Vec<Vec<u32>>,
        resp_addrs: Vec<Option<SocketAddr>>,
        tallies: Vec<Tally>,
    }

    impl Node {
        fn serving() -> Node {
            Node {
                refuse_from: None,
                served: 0,
                runs: Vec::new(),
                resp_addrs: vec![None; 3],
                tallies: Vec::new(),
            }
        }
    }

    impl RespBackend for Node {
        fn get_ts(&mut self, count: u32) -> Result<Timestamp, TsRefusal> {
            let i = self.served;
            self.served += 1;
            match self.refuse_from {
                Some((from, refusal)) if i >= from => Err(refusal),
                _ => Ok(Timestamp::new(1_000 + i as u64, count).unwrap()),
            }
        }
        fn get_ts_run(&mut self, counts: &[u32], results: &mut [Result<Timestamp, TsRefusal>]) -> usize {
            self.runs.push(counts.to_vec());
            let mut n = 0;
            for (count, result) in counts.iter().zip(results.iter_mut()) {
                *result = self.get_ts(*count);
                n += 1;
                if result.is_err() {
                    break;
                }
            }
            n
        }
        fn resp_addr(&self, node: NodeId) -> Option<SocketAddr> {
            self.resp_addrs.get(usize::from(node.0)).copied().flatten()
        }
        fn tally(&mut self, tally: Tally) {
            self.tallies.push(tally);
        }
    }

    const INFO: ServerInfo = ServerInfo { node: NodeId(0), nodes: 3 };
    const T: Instant = Instant::from_millis(7);

    fn tso(count: u32) -> Vec<u8> {
        array(&[b"TSO", count.to_string().as_bytes()])
    }

    /// Every reply in `out`, one `Vec` each.
    fn replies(out: &[u8]) -> Vec<Vec<u8>> {
        let mut v = Vec::new();
        let mut at = 0;
        while at < out.len() {
            let n = reply_len(&out[at..]);
            v.push(out[at..at + n].to_vec());
            at += n;
        }
        v
    }

    fn ts_text(physical: u64, logical: u32) -> Vec<u8> {
        format!(":{}\r\n", Timestamp::new(physical, logical).unwrap().to_u64()).into_bytes()
    }

    #[test]
    fn pipelined_commands_are_answered_in_order_and_tso_runs_take_one_call() {
        let input = [
            b"PING\r\n".to_vec(),
            tso(1),
            array(&[b"ECHO", b"x"]),
            tso(5),
            tso(2),
            tso(3),
            array(&[b"CLIENT", b"ID"]),
        ]
        .concat();
        let mut conn = RespConn::new(9, INFO, None);
        let mut node = Node::serving();
        let mut out = Vec::new();
        assert_eq!(conn.handle(&input, T, &mut node, &mut out), (input.len(), RespServed::Read));
        assert_eq!(node.runs, [vec![1], vec![5, 2, 3]], "one backend call per run");
        assert_eq!(
            replies(&out),
            [
                b"+PONG\r\n".to_vec(),
                ts_text(1_000, 1),
                b"$1\r\nx\r\n".to_vec(),
                ts_text(1_001, 5),
                ts_text(1_002, 2),
                ts_text(1_003, 3),
                b":9\r\n".to_vec(),
            ]
        );
        let gets = node.tallies.iter().filter(|t| **t == Tally::GetTs).count();
        assert_eq!(gets, 4);
        assert!(node.tallies.contains(&Tally::Timestamps(5)));
        assert_eq!(conn.last_input(), Some(T));
    }

    #[test]
    fn a_run_of_many_tsos_is_one_backend_call() {
        let input: Vec<u8> = (0..MAX_RUN as u32).flat_map(|_| tso(1)).collect();
        let mut node = Node::serving();
        let mut out = Vec::new();
        let (used, served) = RespConn::new(1, INFO, None).handle(&input, T, &mut node, &mut out);
        assert_eq!((used, served), (input.len(), RespServed::Read));
        assert_eq!(node.runs.len(), 1);
        assert_eq!(node.runs[0].len(), MAX_RUN);
        assert_eq!(replies(&out).len(), MAX_RUN);
    }

    #[test]
    fn partial_input_waits_for_the_rest() {
        let input = [tso(1), tso(2)].concat();
        let cut = input.len() - 3;
        let mut conn = RespConn::new(1, INFO, None);
        let mut node = Node::serving();
        let mut out = Vec::new();
        let (used, served) = conn.handle(&input[..cut], T, &mut node, &mut out);
        assert_eq!((used, served), (tso(1).len(), RespServed::Read));
        assert_eq!(replies(&out), [ts_text(1_000, 1)]);
        let (more, served) = conn.handle(&input[used..], T, &mut node, &mut out);
        assert_eq!((used + more, served), (input.len(), RespServed::Read));
        assert_eq!(replies(&out), [ts_text(1_000, 1), ts_text(1_001, 2)]);
        // Byte by byte, the same answers.
        let mut conn = RespConn::new(1, INFO, None);
        let mut node = Node::serving();
        let mut out = Vec::new();
        let mut buffered = Vec::new();
        for &b in &input {
            buffered.push(b);
            let (used, _) = conn.handle(&buffered, T, &mut node, &mut out);
            buffered.drain(..used);
        }
        assert!(buffered.is_empty());
        assert_eq!(replies(&out), [ts_text(1_000, 1), ts_text(1_001, 2)]);
    }

    #[test]
    fn a_protocol_error_is_answered_then_closes() {
        let input = [b"PING\r\n".to_vec(), b"+OK\r\n".to_vec(), tso(1)].concat();
        let mut conn = RespConn::new(1, INFO, None);
        let mut node = Node::serving();
        let mut out = Vec::new();
        let why = RespClose::Protocol(RespError::BadType(b'+'));
        assert_eq!(conn.handle(&input, T, &mut node, &mut out), (6, RespServed::Close(why)));
        assert_eq!(
            replies(&out),
            [
                b"+PONG\r\n".to_vec(),
                b"-ERR Protocol error: expected '*' or a command name, got byte 0x2b\r\n".to_vec()
            ]
        );
        assert!(node.runs.is_empty(), "a command after the error ran");
        assert_eq!(node.tallies, [Tally::Error]);
        // Closed means closed.
        out.clear();
        assert_eq!(conn.handle(&input[6..], T, &mut node, &mut out), (0, RespServed::Close(why)));
        assert!(out.is_empty());
        assert_eq!(conn.closed(), Some(why));
    }

    #[test]
    fn a_door_with_a_password_serves_nothing_before_auth() {
        let mut conn = RespConn::new(1, INFO, Some(Arc::from(&b"s3cret"[..])));
        let mut node = Node::serving();
        let mut out = Vec::new();
        let mut ask = |conn: &mut RespConn, cmd: &[&[u8]]| {
            out.clear();
            let _ = conn.handle(&array(cmd), T, &mut node, &mut out);
            String::from_utf8_lossy(&out).into_owned()
        };
        assert!(ask(&mut conn, &[b"TSO"]).starts_with("-NOAUTH"), "a TSO before AUTH");
        assert!(ask(&mut conn, &[b"PING"]).starts_with("-NOAUTH"));
        assert!(ask(&mut conn, &[b"AUTH", b"wrong"]).starts_with("-WRONGPASS"));
        assert!(
            ask(&mut conn, &[b"AUTH", b"s3cre"]).starts_with("-WRONGPASS"),
            "a prefix is not the password"
        );
        assert!(ask(&mut conn, &[b"TSO"]).starts_with("-NOAUTH"));
        assert_eq!(ask(&mut conn, &[b"AUTH", b"default", b"s3cret"]), "+OK\r\n");
        assert!(ask(&mut conn, &[b"TSO"]).starts_with(':'), "a TSO after AUTH");
        let mut other = RespConn::new(2, INFO, Some(Arc::from(&b"s3cret"[..])));
        assert!(ask(&mut other, &[b"HELLO", b"2", b"AUTH", b"default", b"s3cret"]).starts_with('*'));
        assert!(ask(&mut other, &[b"TSO", b"5"]).starts_with(':'), "HELLO AUTH authenticates too");
        let mut open = RespConn::new(3, INFO, None);
        assert!(ask(&mut open, &[b"AUTH", b"x"]).starts_with("-ERR AUTH"), "no password set");
        assert!(ask(&mut open, &[b"TSO"]).starts_with(':'));
    }

    #[test]
    fn quit_answers_ok_then_closes() {
        let input = [array(&[b"QUIT"]), tso(1)].concat();
        let mut conn = RespConn::new(1, INFO, None);
        let mut node = Node::serving();
        let mut out = Vec::new();
        let used = array(&[b"QUIT"]).len();
        assert_eq!(conn.handle(&input, T, &mut node, &mut out), (used, RespServed::Close(RespClose::Quit)));
        assert_eq!(out, b"+OK\r\n");
        assert!(node.runs.is_empty());
    }

    #[test]
    fn refusals_name_the_leaders_resp_address_or_say_try_again() {
        let leader: SocketAddr = "10.0.0.2:6380".parse().unwrap();
        let not_leader = |node| TsRefusal::Node(GetTsError::NotLeader { leader: Some(NodeId(node)) });
        let cases = [
            (not_leader(1), Some(leader), b"-NOTLEADER 10.0.0.2:6380\r\n".to_vec()),
            (not_leader(1), None, b"-TRYAGAIN node 2 leads; its RESP address is not known here\r\n".to_vec()),
            (
                not_leader(1),
                Some("0.0.0.0:6380".parse().unwrap()),
                b"-TRYAGAIN node 2 leads; its RESP address is not known here\r\n".to_vec(),
            ),
            (not_leader(0), Some(leader), b"-TRYAGAIN this node is syncing its window\r\n".to_vec()),
            (
                TsRefusal::Node(GetTsError::NotLeader { leader: None }),
                None,
                b"-TRYAGAIN no node serves timestamps now\r\n".to_vec(),
            ),
            (
                TsRefusal::Node(GetTsError::LogicalExhausted),
                None,
                b"-TRYAGAIN logical clock exhausted until the next window save\r\n".to_vec(),
            ),
            (
                TsRefusal::Unavailable,
                None,
                b"-ERR internal error: this node cannot serve; try another\r\n".to_vec(),
            ),
        ];
        for (refusal, addr, text) in cases {
            // The second of three pipelined TSOs is refused: the run stops
            // there, and the third is served after it, in order.
            let input = [tso(1), tso(1), tso(1)].concat();
            let mut node = Node::serving();
            node.resp_addrs[1] = addr;
            node.refuse_from = Some((1, refusal));
            let mut out = Vec::new();
            let (used, served) = RespConn::new(1, INFO, None).handle(&input, T, &mut node, &mut out);
            assert_eq!((used, served), (input.len(), RespServed::Read));
            assert_eq!(replies(&out), [ts_text(1_000, 1), text.clone(), text], "{refusal:?}");
            assert_eq!(node.runs, [vec![1, 1, 1], vec![1]]);
        }
    }

    #[test]
    fn out_never_grows_past_its_limit() {
        let input: Vec<u8> =
            (0..5_000).flat_map(|i| if i % 50 == 0 { array(&[b"INFO"]) } else { tso(1) }).collect();
        let mut conn = RespConn::new(1, INFO, None);
        let mut node = Node::serving();
        let mut out = Vec::with_capacity(OUT_LIMIT);
        let (mut at, mut answered, mut flushes) = (0, 0, 0);
        loop {
            let (used, served) = conn.handle(&input[at..], T, &mut node, &mut out);
            at += used;
            assert!(out.len() <= OUT_LIMIT, "{} bytes", out.len());
            assert_eq!(out.capacity(), OUT_LIMIT, "out was reallocated");
            answered += replies(&out).len();
            out.clear();
            match served {
                RespServed::Flush => flushes += 1,
                RespServed::Read => break,
                RespServed::Close(why) => panic!("closed: {why}"),
            }
        }
        assert_eq!((at, answered), (input.len(), 5_000));
        assert!(flushes > 0);
    }

    #[test]
    fn every_reply_fits_max_reply_len() {
        let long = [b'x'; MAX_BULK];
        let words: Vec<&[u8]> = vec![&long[..]; super::super::MAX_ARGS];
        let mut conn = RespConn::new(u64::MAX, INFO, None);
        let mut node = Node::serving();
        for request in [
            array(&words),
            array(&[b"INFO"]),
            array(&[b"HELLO", b"2", b"SETNAME", &long[..]]),
            array(&[b"COMMAND", b"INFO", &long, &long, &long, &long, &long, &long]),
            array(&[
                b"CONFIG",
                b"GET",
                b"save",
                b"appendonly",
                b"save",
                b"appendonly",
                b"save",
                b"appendonly",
            ]),
        ] {
            let mut out = Vec::new();
            let _ = conn.handle(&request, T, &mut node, &mut out);
            assert!(out.len() <= MAX_REPLY_LEN, "{} bytes", out.len());
        }
        let v6: SocketAddr = "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535".parse().unwrap();
        let e = Reply::Error(ErrorReply::NotLeader { addr: v6 }).encoded_len();
        assert!(e <= MAX_REPLY_LEN);
    }

    #[test]
    fn advertised_addresses_are_never_wildcards() {
        let a = |s: &str| -> SocketAddr { s.parse().unwrap() };
        assert_eq!(advertised_addr(a("10.0.0.1:6380"), None), Some(a("10.0.0.1:6380")));
        assert_eq!(advertised_addr(a("0.0.0.0:6380"), Some(a("10.0.0.1:7400"))), Some(a("10.0.0.1:6380")));
        assert_eq!(advertised_addr(a("0.0.0.0:6380"), None), None);
        assert_eq!(advertised_addr(a("[::]:6380"), Some(a("[::]:7400"))), None);
    }
}
