//! The replies, as values, and their RESP2 encoding into a caller's buffer
//! (a buffer too small is left untouched, as with the wire codecs).

use core::fmt;
use core::net::SocketAddr;

use bytes::BufMut;

use crate::ballot::NodeId;
use crate::timestamp::MAX_LOGICAL;
use crate::wire::EncodeError;

use super::parse::{Args, RespError};

/// A command that cannot run, or a timestamp request that failed: an error
/// reply. The text is Redis's where Redis has one, so client libraries map
/// it to their usual exceptions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorReply<'a> {
    /// `ERR unknown command 'NAME', with args beginning with: 'a' 'b' `.
    UnknownCommand {
        /// The command's name as sent.
        name: &'a [u8],
        /// Its arguments.
        args: Args<'a>,
    },
    /// `ERR wrong number of arguments for 'tso' command`.
    WrongArity {
        /// The command (`client|setname` for subcommands), in lower case.
        command: &'static str,
    },
    /// `ERR unknown subcommand 'X'. Try CLIENT HELP.`
    UnknownSubcommand {
        /// The command, in upper case.
        command: &'static str,
        /// The subcommand as sent.
        sub: &'a [u8],
    },
    /// `ERR value is not an integer or out of range`.
    NotInteger,
    /// `ERR count must be at least 1`.
    ZeroCount,
    /// `ERR count must be below 262144` (2^18: it can never fit one millisecond).
    CountTooLarge,
    /// `NOPROTO`: a `HELLO` asking for RESP3 (or any version but 2).
    NoProto,
    /// `ERR Protocol version is not an integer or out of range`.
    BadProtocolVersion,
    /// `ERR Syntax error in HELLO option 'X'`.
    HelloSyntax {
        /// The option as sent.
        option: &'a [u8],
    },
    /// `ERR Client names cannot contain spaces, newlines or special characters.`
    BadClientName,
    /// `ERR DB index is out of range`: there is only database 0.
    DbOutOfRange,
    /// `NOAUTH Authentication required.`: the door has a password and this
    /// connection has not given it.
    NoAuth,
    /// `WRONGPASS invalid username-password pair or user is disabled.`
    WrongPass,
    /// `ERR AUTH <password> called without any password configured ...`
    NoPasswordSet,
    /// `NOTLEADER <addr>`: this node does not serve; the leader's RESP door is at `addr`.
    NotLeader {
        /// The leader's RESP address.
        addr: SocketAddr,
    },
    /// `TRYAGAIN ...`: nobody serves now (or the leader's RESP address is not
    /// known here); retry, here or at another node.
    TryAgain(Busy),
    /// `ERR internal error ...`: this node cannot answer; try another.
    Internal,
    /// `ERR Protocol error: ...`: the server closes the connection after it.
    Protocol(RespError),
}

/// Why a `TSO` gets `-TRYAGAIN`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Busy {
    /// No node is known to serve (an election or a failover is under way).
    NoLeader,
    /// This node holds the lease and is syncing its window.
    Syncing,
    /// The leader is known but not its RESP address (it has no RESP door, or
    /// its handshake has not reached this node).
    LeaderUnknownAddr {
        /// The leader.
        node: NodeId,
    },
    /// The logical clock is exhausted until the next window save.
    LogicalExhausted,
}

/// The leasetso version `INFO` and `HELLO` report.
const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The Redis version `INFO` reports: the command level of the replies this
/// door gives (some clients read it to decide what they may send).
const REDIS_VERSION: &str = "7.0.0";

/// What `HELLO` and `INFO` say about the node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerInfo {
    /// The node's id.
    pub node: NodeId,
    /// The cluster size.
    pub nodes: u16,
}

/// One reply. [`Reply::encode`] writes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply<'a> {
    /// `+OK`.
    Ok,
    /// `+PONG`.
    Pong,
    /// `:N`: `TSO`'s answer, `CLIENT ID`, `COMMAND COUNT`.
    Integer(i64),
    /// `$len` and the bytes.
    Bulk(&'a [u8]),
    /// `$-1`: the null bulk string.
    Null,
    /// `*0`.
    EmptyArray,
    /// An array of `n` nulls (`COMMAND INFO`).
    Nulls(usize),
    /// `CONFIG GET`'s answer: name and value of each parameter known here.
    Config(Args<'a>),
    /// `HELLO`'s answer: RESP2's flattened map of server, version, proto,
    /// id, mode, role and modules.
    Hello {
        /// The connection's id.
        id: u64,
    },
    /// `INFO`'s answer: a bulk string of `# Server` lines (`server`), or empty.
    Info {
        /// The node.
        info: ServerInfo,
        /// Whether the server section was asked for.
        server: bool,
    },
    /// `-...`.
    Error(ErrorReply<'a>),
}

/// Where reply bytes go: counted first (for the size check), then written.
trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

struct Count(usize);

impl Sink for Count {
    fn put(&mut self, bytes: &[u8]) {
        self.0 += bytes.len();
    }
}

struct Put<'b, B>(&'b mut B);

impl<B: BufMut> Sink for Put<'_, B> {
    fn put(&mut self, bytes: &[u8]) {
        self.0.put_slice(bytes);
    }
}

/// `fmt::Write` into a sink, for `Display` texts (no allocation).
struct Text<'s, S>(&'s mut S);

impl<S: Sink> fmt::Write for Text<'_, S> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.put(s.as_bytes());
        Ok(())
    }
}

fn put_display(s: &mut impl Sink, value: impl fmt::Display) {
    // Writing into a sink cannot fail.
    let _ = fmt::write(&mut Text(s), format_args!("{value}"));
}

/// `prefix`, the number in decimal, CRLF.
fn put_number(s: &mut impl Sink, prefix: u8, value: i64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut v = value.unsigned_abs();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    s.put(&[prefix]);
    if value < 0 {
        s.put(b"-");
    }
    s.put(&digits[i..]);
    s.put(b"\r\n");
}

fn put_bulk(s: &mut impl Sink, bytes: &[u8]) {
    put_number(s, b'$', bytes.len() as i64);
    s.put(bytes);
    s.put(b"\r\n");
}

/// Bytes a client sent, inside an error line: printable ASCII as is, anything
/// else (CR and LF above all, which would end the line) as `?`.
fn put_sanitized(s: &mut impl Sink, bytes: &[u8]) {
    for &b in bytes {
        s.put(if (0x20..0x7f).contains(&b) { core::slice::from_ref(&b) } else { b"?" });
    }
}

/// The `INFO` text.
fn put_info_text(s: &mut impl Sink, info: &ServerInfo) {
    s.put(b"# Server\r\n");
    put_display(s, format_args!("redis_version:{REDIS_VERSION}\r\n"));
    put_display(s, format_args!("leasetso_version:{VERSION}\r\n"));
    s.put(b"redis_mode:standalone\r\n");
    put_display(s, format_args!("leasetso_node:{}\r\n", u32::from(info.node.0) + 1));
    put_display(s, format_args!("leasetso_nodes:{}\r\n", info.nodes));
}

/// `CONFIG GET`'s parameters this door knows, with their values.
const CONFIG: [(&str, &str); 2] = [("save", ""), ("appendonly", "no")];

impl ErrorReply<'_> {
    fn write(&self, s: &mut impl Sink) {
        s.put(b"-");
        match *self {
            ErrorReply::UnknownCommand { name, args } => {
                s.put(b"ERR unknown command '");
                put_sanitized(s, name);
                s.put(b"', with args beginning with: ");
                for arg in args.as_slice() {
                    s.put(b"'");
                    put_sanitized(s, arg);
                    s.put(b"' ");
                }
            }
            ErrorReply::WrongArity { command } => {
                put_display(s, format_args!("ERR wrong number of arguments for '{command}' command"))
            }
            ErrorReply::UnknownSubcommand { command, sub } => {
                s.put(b"ERR unknown subcommand '");
                put_sanitized(s, sub);
                put_display(s, format_args!("'. Try {command} HELP."));
            }
            ErrorReply::NotInteger => s.put(b"ERR value is not an integer or out of range"),
            ErrorReply::ZeroCount => s.put(b"ERR count must be at least 1"),
            ErrorReply::CountTooLarge => {
                put_display(s, format_args!("ERR count must be below {MAX_LOGICAL}"));
            }
            ErrorReply::NoProto => s.put(b"NOPROTO sorry, this protocol version is not supported"),
            ErrorReply::BadProtocolVersion => {
                s.put(b"ERR Protocol version is not an integer or out of range")
            }
            ErrorReply::HelloSyntax { option } => {
                s.put(b"ERR Syntax error in HELLO option '");
                put_sanitized(s, option);
                s.put(b"'");
            }
            ErrorReply::BadClientName => {
                s.put(b"ERR Client names cannot contain spaces, newlines or special characters.")
            }
            ErrorReply::DbOutOfRange => s.put(b"ERR DB index is out of range"),
            ErrorReply::NoAuth => s.put(b"NOAUTH Authentication required."),
            ErrorReply::WrongPass => s.put(b"WRONGPASS invalid username-password pair or user is disabled."),
            ErrorReply::NoPasswordSet => s.put(
                b"ERR AUTH <password> called without any password configured for the default user. \
                  Are you sure your configuration is correct?",
            ),
            ErrorReply::NotLeader { addr } => put_display(s, format_args!("NOTLEADER {addr}")),
            ErrorReply::TryAgain(busy) => match busy {
                Busy::NoLeader => s.put(b"TRYAGAIN no node serves timestamps now"),
                Busy::Syncing => s.put(b"TRYAGAIN this node is syncing its window"),
                Busy::LeaderUnknownAddr { node } => put_display(
                    s,
                    format_args!(
                        "TRYAGAIN node {} leads; its RESP address is not known here",
                        u32::from(node.0) + 1
                    ),
                ),
                Busy::LogicalExhausted => {
                    s.put(b"TRYAGAIN logical clock exhausted until the next window save")
                }
            },
            ErrorReply::Internal => s.put(b"ERR internal error: this node cannot serve; try another"),
            ErrorReply::Protocol(e) => put_display(s, format_args!("ERR Protocol error: {e}")),
        }
        s.put(b"\r\n");
    }
}

impl Reply<'_> {
    fn write(&self, s: &mut impl Sink) {
        match *self {
            Reply::Ok => s.put(b"+OK\r\n"),
            Reply::Pong => s.put(b"+PONG\r\n"),
            Reply::Integer(v) => put_number(s, b':', v),
            Reply::Bulk(bytes) => put_bulk(s, bytes),
            Reply::Null => s.put(b"$-1\r\n"),
            Reply::EmptyArray => s.put(b"*0\r\n"),
            Reply::Nulls(n) => {
                put_number(s, b'*', n as i64);
                for _ in 0..n {
                    s.put(b"$-1\r\n");
                }
            }
            Reply::Config(params) => {
                let asked =
                    |name: &str| params.as_slice().iter().any(|p| p.eq_ignore_ascii_case(name.as_bytes()));
                let known = CONFIG.iter().filter(|(name, _)| asked(name)).count();
                put_number(s, b'*', 2 * known as i64);
                for (name, value) in CONFIG.iter().filter(|(name, _)| asked(name)) {
                    put_bulk(s, name.as_bytes());
                    put_bulk(s, value.as_bytes());
                }
            }
            Reply::Hello { id } => {
                s.put(b"*14\r\n");
                put_bulk(s, b"server");
                put_bulk(s, b"leasetso");
                put_bulk(s, b"version");
                put_bulk(s, VERSION.as_bytes());
                put_bulk(s, b"proto");
                put_number(s, b':', 2);
                put_bulk(s, b"id");
                put_number(s, b':', i64::try_from(id).unwrap_or(i64::MAX));
                put_bulk(s, b"mode");
                // Never "cluster": that is Redis Cluster, whose clients would ask for slots.
                put_bulk(s, b"standalone");
                put_bulk(s, b"role");
                put_bulk(s, b"master");
                put_bulk(s, b"modules");
                s.put(b"*0\r\n");
            }
            Reply::Info { info, server } => {
                if !server {
                    s.put(b"$0\r\n\r\n");
                    return;
                }
                let mut len = Count(0);
                put_info_text(&mut len, &info);
                put_number(s, b'$', len.0 as i64);
                put_info_text(s, &info);
                s.put(b"\r\n");
            }
            Reply::Error(e) => e.write(s),
        }
    }

    /// Bytes of the encoded reply.
    pub fn encoded_len(&self) -> usize {
        let mut count = Count(0);
        self.write(&mut count);
        count.0
    }

    /// Appends the reply to `buf`, or leaves it untouched if it has no room.
    pub fn encode(&self, buf: &mut impl BufMut) -> Result<usize, EncodeError> {
        let required = self.encoded_len();
        if buf.remaining_mut() < required {
            return Err(EncodeError::BufferTooSmall { required });
        }
        self.write(&mut Put(buf));
        Ok(required)
    }
}

#[cfg(test)]
mod tests {
    use crate::resp::fixtures::*;

    #[test]
    fn error_reply_texts() {
        assert_eq!(reply_of(&[b"TSO", b"1", b"2"]), b"-ERR wrong number of arguments for 'tso' command\r\n");
        assert_eq!(reply_of(&[b"TSO", b"0"]), b"-ERR count must be at least 1\r\n");
        assert_eq!(reply_of(&[b"TSO", b"262144"]), b"-ERR count must be below 262144\r\n");
        assert_eq!(reply_of(&[b"TSO", b"x"]), b"-ERR value is not an integer or out of range\r\n");
        assert_eq!(
            reply_of(&[b"SET", b"k\r\n", b"v"]),
            b"-ERR unknown command 'SET', with args beginning with: 'k??' 'v' \r\n"
        );
        assert_eq!(
            reply_of(&[b"HELLO", b"3"]),
            b"-NOPROTO sorry, this protocol version is not supported\r\n"
        );
        assert_eq!(reply_of(&[b"CLIENT", b"KILL"]), b"-ERR unknown subcommand 'KILL'. Try CLIENT HELP.\r\n");
        let protocol = encode(Reply::Error(ErrorReply::Protocol(RespError::BadType(b'+'))));
        assert_eq!(protocol, b"-ERR Protocol error: expected '*' or a command name, got byte 0x2b\r\n");
        let not_leader = ErrorReply::NotLeader { addr: "127.0.0.1:6380".parse().unwrap() };
        assert_eq!(encode(Reply::Error(not_leader)), b"-NOTLEADER 127.0.0.1:6380\r\n");
        for busy in [
            Busy::NoLeader,
            Busy::Syncing,
            Busy::LeaderUnknownAddr { node: NodeId(1) },
            Busy::LogicalExhausted,
        ] {
            let text = encode(Reply::Error(ErrorReply::TryAgain(busy)));
            assert!(text.starts_with(b"-TRYAGAIN "), "{:?}", Escaped(&text));
        }
        // Every error is one line.
        let errors = [
            ErrorReply::Internal,
            ErrorReply::BadClientName,
            ErrorReply::DbOutOfRange,
            ErrorReply::NoAuth,
            ErrorReply::WrongPass,
            ErrorReply::NoPasswordSet,
            ErrorReply::BadProtocolVersion,
            ErrorReply::HelloSyntax { option: b"\n" },
            ErrorReply::UnknownSubcommand { command: "CONFIG", sub: b"\r" },
        ];
        for e in errors {
            let text = encode(Reply::Error(e));
            assert_eq!(text.iter().filter(|&&b| b == b'\n' || b == b'\r').count(), 2, "{e:?}");
            assert_eq!(reply_len(&text), text.len());
        }
    }

    #[test]
    fn replies_encode() {
        assert_eq!(encode(Reply::Integer(446_061_117_102_227_457)), b":446061117102227457\r\n");
        assert_eq!(encode(Reply::Integer(0)), b":0\r\n");
        assert_eq!(encode(Reply::Integer(-12)), b":-12\r\n");
        assert_eq!(encode(Reply::Integer(i64::MIN)), b":-9223372036854775808\r\n");
        assert_eq!(encode(Reply::Ok), b"+OK\r\n");
        assert_eq!(encode(Reply::Pong), b"+PONG\r\n");
        assert_eq!(encode(Reply::Bulk(b"hi")), b"$2\r\nhi\r\n");
        assert_eq!(encode(Reply::Bulk(b"")), b"$0\r\n\r\n");
        assert_eq!(encode(Reply::Null), b"$-1\r\n");
        assert_eq!(encode(Reply::EmptyArray), b"*0\r\n");
        assert_eq!(encode(Reply::Nulls(2)), b"*2\r\n$-1\r\n$-1\r\n");
        assert_eq!(reply_of(&[b"PING"]), b"+PONG\r\n");
        assert_eq!(reply_of(&[b"PING", b"x"]), b"$1\r\nx\r\n");
        assert_eq!(reply_of(&[b"COMMAND", b"COUNT"]), b":0\r\n");
        assert_eq!(reply_of(&[b"COMMAND", b"DOCS"]), b"*0\r\n");
        assert_eq!(reply_of(&[b"CLIENT", b"ID"]), b":7\r\n");
        assert_eq!(reply_of(&[b"CLIENT", b"GETNAME"]), b"$-1\r\n");
        assert_eq!(reply_of(&[b"SELECT", b"0"]), b"+OK\r\n");
        assert_eq!(reply_of(&[b"QUIT"]), b"+OK\r\n");
        assert_eq!(
            reply_of(&[b"CONFIG", b"GET", b"SAVE", b"appendonly", b"maxmemory"]),
            b"*4\r\n$4\r\nsave\r\n$0\r\n\r\n$10\r\nappendonly\r\n$2\r\nno\r\n"
        );
        assert_eq!(reply_of(&[b"CONFIG", b"GET", b"maxmemory"]), b"*0\r\n");
        let hello = reply_of(&[b"HELLO", b"2"]);
        assert!(hello.starts_with(b"*14\r\n$6\r\nserver\r\n$8\r\nleasetso\r\n"));
        assert_eq!(reply_len(&hello), hello.len());
        assert!(hello.windows(15).any(|w| w == b"$5\r\nproto\r\n:2\r\n"));
        let info = reply_of(&[b"INFO"]);
        assert_eq!(reply_len(&info), info.len());
        let text = std::str::from_utf8(&info).unwrap();
        assert!(text.contains("# Server\r\nredis_version:"), "{text}");
        assert!(text.contains("leasetso_node:1\r\n"), "{text}");
        assert_eq!(reply_of(&[b"INFO", b"keyspace"]), b"$0\r\n\r\n");
    }

    #[test]
    fn small_buffer_is_left_untouched() {
        let mut storage = [0xAAu8; 4];
        let mut buf = &mut storage[..];
        assert_eq!(Reply::Integer(12345).encode(&mut buf), Err(EncodeError::BufferTooSmall { required: 8 }));
        assert_eq!(storage, [0xAA; 4]);
        let mut storage = [0u8; 8];
        let mut buf = &mut storage[..];
        assert_eq!(Reply::Integer(12345).encode(&mut buf), Ok(8));
        assert_eq!(&storage, b":12345\r\n");
    }
}
