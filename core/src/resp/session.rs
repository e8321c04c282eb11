//! What one RESP connection remembers, and what it does with a command.

use core::net::SocketAddr;

use crate::ballot::NodeId;
use crate::oracle::GetTsError;
use crate::timestamp::Timestamp;

use super::command::{Command, CommandQuery};
use super::parse::MAX_BULK;
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

/// What one RESP connection remembers: its id and its `CLIENT SETNAME`
/// name, kept in a fixed array.
#[derive(Clone, Debug)]
pub struct Session {
    id: u64,
    name: [u8; MAX_BULK],
    name_len: usize,
}

impl Session {
    /// A connection numbered `id` (what `CLIENT ID` and `HELLO` report).
    pub fn new(id: u64) -> Session {
        Session { id, name: [0; MAX_BULK], name_len: 0 }
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
            Command::Tso { count } => return Action::GetTs { count },
            Command::Quit => return Action::Close(Reply::Ok),
            Command::Ping { message: None } => Reply::Pong,
            Command::Ping { message: Some(m) } | Command::Echo { message: m } => Reply::Bulk(m),
            Command::Hello { name } => {
                if let Some(name) = name {
                    self.set_name(name);
                }
                Reply::Hello { id: self.id }
            }
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

#[cfg(test)]
mod tests {
    use crate::resp::fixtures::*;

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
}
