//! The RESP door: the Redis protocol (RESP2), so that any language's Redis
//! client is a leasetso client (DESIGN.md, "RESP door").
//!
//! `TSO [count]` answers the packed last timestamp of a range of `count` as
//! an integer reply; `PING`, `ECHO` and enough of `HELLO`, `COMMAND`,
//! `CLIENT`, `INFO`, `SELECT`, `CONFIG GET` and `QUIT` are answered for
//! `redis-cli`, `redis-benchmark` and the usual client libraries to connect
//! and run. Nothing else of Redis is here: there are no keys.
//!
//! Requests are what Redis clients send: an array of bulk strings
//! (`*2\r\n$3\r\nTSO\r\n$3\r\n100\r\n`), or an inline command, one line of
//! words (`PING\r\n`, as typed into `nc`). [`Command::parse`] takes the first
//! request off a byte slice: a command, "need more bytes", or a [`RespError`].
//! The limits are small on purpose, because no command of this door needs
//! more: a bulk string is at most [`MAX_BULK`] bytes, a command has at most
//! [`MAX_ARGS`] words, an inline line at most [`MAX_INLINE`] bytes. So the
//! parser keeps its arguments in a fixed array of slices borrowed from the
//! input ([`Args`]) and allocates nothing, and a runtime that keeps
//! [`MAX_COMMAND_LEN`] bytes free in its read buffer always has room for a
//! whole command: any longer input is a command or an error, never "more".
//!
//! Two kinds of bad input, as in Redis:
//! * a **protocol violation** (a bad type byte, a length that is not a
//!   number, negative or over the limit, too many arguments, a bulk string
//!   not followed by CRLF) means the byte stream can no longer be trusted to
//!   be in step: [`RespError`]; the server answers
//!   `-ERR Protocol error: ...` and closes that connection;
//! * a well-framed command that cannot run (unknown, wrong arity, a bad
//!   count) is [`Command::Invalid`]: an error reply, and the connection goes on.
//!
//! Replies are values ([`Reply`]) encoded into a caller's buffer, like the
//! wire codecs: a buffer too small gets [`EncodeError::BufferTooSmall`] and is
//! left untouched. [`Session`] holds what one connection remembers (its id
//! and `CLIENT SETNAME`) and turns a command into an [`Action`]; the runtime
//! only asks the node for timestamps when the action says so, and turns the
//! answer into a reply with [`ts_reply`].

use core::fmt;
use core::net::SocketAddr;

use bytes::BufMut;

use crate::ballot::NodeId;
use crate::oracle::GetTsError;
use crate::timestamp::{MAX_LOGICAL, Timestamp};
use crate::wire::EncodeError;

/// The longest bulk string a request may carry. Longer is [`RespError::BulkTooLong`].
pub const MAX_BULK: usize = 64;
/// The most words (command name included) a request may have. More is
/// [`RespError::TooManyArgs`].
pub const MAX_ARGS: usize = 8;
/// The longest inline command line, newline included. Longer is
/// [`RespError::InlineTooLong`].
pub const MAX_INLINE: usize = 1024;
/// Any input at least this long parses to a command or an error, never to
/// "need more bytes": the read buffer room a runtime keeps free. (The longest
/// array request within the limits is 572 bytes; an inline line is cut off at
/// [`MAX_INLINE`].)
pub const MAX_COMMAND_LEN: usize = MAX_INLINE;
/// Digits a length line may have: enough for any limit, short of overflow.
const MAX_DIGITS: usize = 18;

/// Why bytes are not a request. The connection that sent them is out of step
/// with the protocol: a server answers `-ERR Protocol error: <this>` and closes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RespError {
    /// A request that starts with neither `*` nor a command name.
    #[error("expected '*' or a command name, got byte {0:#04x}")]
    BadType(u8),
    /// An array element that is not a bulk string.
    #[error("expected '$', got byte {0:#04x}")]
    ExpectedBulk(u8),
    /// An array length that is not a number.
    #[error("invalid multibulk length")]
    BadArrayLen,
    /// A bulk length that is not a number, or is negative.
    #[error("invalid bulk length")]
    BadBulkLen,
    /// A bulk length over [`MAX_BULK`], or an inline word as long.
    #[error("bulk string over the limit of {max} bytes")]
    BulkTooLong {
        /// The limit.
        max: usize,
    },
    /// More than [`MAX_ARGS`] words.
    #[error("more than {max} arguments")]
    TooManyArgs {
        /// The limit.
        max: usize,
    },
    /// A length line or bulk string not ended by CRLF.
    #[error("missing CRLF")]
    MissingCrlf,
    /// An inline line of [`MAX_INLINE`] bytes without a newline.
    #[error("too big inline request (over {max} bytes)")]
    InlineTooLong {
        /// The limit.
        max: usize,
    },
}

/// The words of one request, borrowed from the input: a fixed array, so
/// parsing allocates nothing.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Args<'a> {
    items: [&'a [u8]; MAX_ARGS],
    len: usize,
}

impl<'a> Args<'a> {
    const EMPTY: Args<'static> = Args { items: [&[]; MAX_ARGS], len: 0 };

    /// The words, in order.
    pub fn as_slice(&self) -> &[&'a [u8]] {
        &self.items[..self.len]
    }

    /// How many words.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none (an empty request).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The words from `from` on (none if `from` is past the end).
    fn tail(&self, from: usize) -> Args<'a> {
        let mut out = Args::EMPTY;
        for (i, item) in self.as_slice().iter().skip(from).enumerate() {
            out.items[i] = item;
        }
        out.len = self.len.saturating_sub(from);
        out
    }

    fn push(&mut self, item: &'a [u8]) -> Result<(), RespError> {
        let slot = self.items.get_mut(self.len).ok_or(RespError::TooManyArgs { max: MAX_ARGS })?;
        *slot = item;
        self.len += 1;
        Ok(())
    }

    fn get(&self, i: usize) -> Option<&'a [u8]> {
        self.as_slice().get(i).copied()
    }
}

impl fmt::Debug for Args<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.as_slice().iter().map(|a| Escaped(a))).finish()
    }
}

/// Bytes shown as text where printable (for `Debug`).
struct Escaped<'a>(&'a [u8]);

impl fmt::Debug for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"")?;
        for &b in self.0 {
            if (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\' {
                f.write_fmt(format_args!("{}", b as char))?;
            } else {
                f.write_fmt(format_args!("\\x{b:02x}"))?;
            }
        }
        f.write_str("\"")
    }
}

/// What `COMMAND` asks (redis-cli asks `COMMAND DOCS` for its hints).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandQuery {
    /// `COMMAND`, `COMMAND LIST`, `COMMAND DOCS ...`: an empty list.
    List,
    /// `COMMAND COUNT`: 0.
    Count,
    /// `COMMAND INFO name...`: a null per name.
    Info {
        /// How many names were asked about.
        names: usize,
    },
}

/// One request, recognised. Names and subcommands are case-insensitive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command<'a> {
    /// An empty line or an empty array: Redis answers nothing, nor do we.
    Empty,
    /// `TSO [count]`: `count` timestamps (1 if absent), `1..2^18`.
    Tso {
        /// How many.
        count: u32,
    },
    /// `PING [message]`.
    Ping {
        /// Echoed as a bulk string; without one the answer is `+PONG`.
        message: Option<&'a [u8]>,
    },
    /// `ECHO message` (`redis-cli --pipe` ends its input with one).
    Echo {
        /// Echoed as a bulk string.
        message: &'a [u8],
    },
    /// `HELLO [2 [AUTH user pass] [SETNAME name]]`: RESP2 only.
    Hello {
        /// A `SETNAME` option.
        name: Option<&'a [u8]>,
    },
    /// `COMMAND [...]`: this door describes no commands.
    Command(CommandQuery),
    /// `CLIENT SETNAME name`.
    ClientSetName {
        /// The new name (empty clears it).
        name: &'a [u8],
    },
    /// `CLIENT SETINFO attribute value`: accepted and forgotten.
    ClientSetInfo,
    /// `CLIENT GETNAME`.
    ClientGetName,
    /// `CLIENT ID`.
    ClientId,
    /// `INFO [section...]`.
    Info {
        /// Whether the `server` section is asked for (by default it is);
        /// other sections are empty.
        server: bool,
    },
    /// `SELECT 0`: the only database.
    Select,
    /// `CONFIG GET parameter...` (redis-benchmark asks `save` and
    /// `appendonly`; this door persists no keys, so `""` and `no`).
    ConfigGet {
        /// The parameters asked for.
        params: Args<'a>,
    },
    /// `QUIT`: `+OK`, then the server closes.
    Quit,
    /// A well-framed command that cannot run: answered with this error, and
    /// the connection goes on.
    Invalid(ErrorReply<'a>),
}

impl<'a> Command<'a> {
    /// Takes the first request off `bytes`: `Ok(Some((command, consumed)))`,
    /// `Ok(None)` until the whole request has arrived, or an error as soon as
    /// the bytes cannot become a request (a length over its limit is refused
    /// from its digits, before the CRLF or the data).
    pub fn parse(bytes: &'a [u8]) -> Result<Option<(Command<'a>, usize)>, RespError> {
        Ok(split(bytes)?.map(|(args, used)| (Command::from_args(&args), used)))
    }

    /// Recognises the words of a request.
    pub fn from_args(args: &Args<'a>) -> Command<'a> {
        let Some(name) = args.get(0) else {
            return Command::Empty;
        };
        let n = args.len();
        let is = |word: &str| name.eq_ignore_ascii_case(word.as_bytes());
        let arity = |command| Command::Invalid(ErrorReply::WrongArity { command });
        if is("TSO") {
            return match (n, args.get(1)) {
                (1, _) => Command::Tso { count: 1 },
                (2, Some(count)) => match parse_uint(count) {
                    None => Command::Invalid(ErrorReply::NotInteger),
                    Some(0) => Command::Invalid(ErrorReply::ZeroCount),
                    Some(c) if c >= u64::from(MAX_LOGICAL) => Command::Invalid(ErrorReply::CountTooLarge),
                    // Below 2^18, so it fits.
                    Some(c) => Command::Tso { count: c as u32 },
                },
                _ => arity("tso"),
            };
        }
        if is("PING") {
            return match n {
                1 | 2 => Command::Ping { message: args.get(1) },
                _ => arity("ping"),
            };
        }
        if is("ECHO") {
            return match args.get(1) {
                Some(message) if n == 2 => Command::Echo { message },
                _ => arity("echo"),
            };
        }
        if is("HELLO") {
            return hello(args);
        }
        let sub = args.get(1);
        let sub_is = |word: &str| sub.is_some_and(|s| s.eq_ignore_ascii_case(word.as_bytes()));
        if is("COMMAND") {
            return match sub {
                None => Command::Command(CommandQuery::List),
                Some(_) if sub_is("DOCS") || sub_is("LIST") => Command::Command(CommandQuery::List),
                Some(_) if sub_is("COUNT") => match n {
                    2 => Command::Command(CommandQuery::Count),
                    _ => arity("command|count"),
                },
                Some(_) if sub_is("INFO") => Command::Command(CommandQuery::Info { names: n - 2 }),
                Some(sub) => Command::Invalid(ErrorReply::UnknownSubcommand { command: "COMMAND", sub }),
            };
        }
        if is("CLIENT") {
            return match sub {
                None => arity("client"),
                Some(_) if sub_is("SETNAME") => match args.get(2) {
                    Some(name) if n == 3 => {
                        if name.iter().all(|b| (b'!'..=b'~').contains(b)) {
                            Command::ClientSetName { name }
                        } else {
                            Command::Invalid(ErrorReply::BadClientName)
                        }
                    }
                    _ => arity("client|setname"),
                },
                Some(_) if sub_is("SETINFO") => match n {
                    4 => Command::ClientSetInfo,
                    _ => arity("client|setinfo"),
                },
                Some(_) if sub_is("GETNAME") => match n {
                    2 => Command::ClientGetName,
                    _ => arity("client|getname"),
                },
                Some(_) if sub_is("ID") => match n {
                    2 => Command::ClientId,
                    _ => arity("client|id"),
                },
                Some(sub) => Command::Invalid(ErrorReply::UnknownSubcommand { command: "CLIENT", sub }),
            };
        }
        if is("INFO") {
            let sections = args.tail(1);
            let server = sections.is_empty()
                || sections.as_slice().iter().any(|s| {
                    ["server", "default", "all", "everything"]
                        .iter()
                        .any(|w| s.eq_ignore_ascii_case(w.as_bytes()))
                });
            return Command::Info { server };
        }
        if is("SELECT") {
            return match (n, args.get(1)) {
                (2, Some(db)) => match parse_int(db) {
                    None => Command::Invalid(ErrorReply::NotInteger),
                    Some(0) => Command::Select,
                    Some(_) => Command::Invalid(ErrorReply::DbOutOfRange),
                },
                _ => arity("select"),
            };
        }
        if is("CONFIG") {
            return match sub {
                None => arity("config"),
                Some(_) if sub_is("GET") => match n {
                    2 => arity("config|get"),
                    _ => Command::ConfigGet { params: args.tail(2) },
                },
                Some(sub) => Command::Invalid(ErrorReply::UnknownSubcommand { command: "CONFIG", sub }),
            };
        }
        if is("QUIT") {
            return Command::Quit;
        }
        Command::Invalid(ErrorReply::UnknownCommand { name, args: args.tail(1) })
    }
}

/// `HELLO [protover [AUTH username password] [SETNAME clientname]]`. This
/// door speaks RESP2 only: `HELLO 3` is refused with `-NOPROTO`, which
/// clients that try RESP3 first take as "fall back to RESP2". It has no
/// users, so `AUTH` is accepted whatever it says (as Redis does without a
/// password set).
fn hello<'a>(args: &Args<'a>) -> Command<'a> {
    let Some(version) = args.get(1) else {
        return Command::Hello { name: None };
    };
    match parse_int(version) {
        None => return Command::Invalid(ErrorReply::BadProtocolVersion),
        Some(2) => {}
        Some(_) => return Command::Invalid(ErrorReply::NoProto),
    }
    let mut name = None;
    let mut i = 2;
    while let Some(option) = args.get(i) {
        let remaining = args.len() - i - 1;
        if option.eq_ignore_ascii_case(b"AUTH") && remaining >= 2 {
            i += 3;
        } else if option.eq_ignore_ascii_case(b"SETNAME") && remaining >= 1 {
            name = args.get(i + 1);
            i += 2;
        } else {
            return Command::Invalid(ErrorReply::HelloSyntax { option });
        }
    }
    Command::Hello { name }
}

/// A non-negative decimal number as Redis writes one: digits only, no sign,
/// no leading zero (except `0` itself).
fn parse_uint(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() || bytes.len() > MAX_DIGITS || (bytes.len() > 1 && bytes[0] == b'0') {
        return None;
    }
    bytes.iter().try_fold(0u64, |v, &b| b.is_ascii_digit().then(|| v * 10 + u64::from(b - b'0')))
}

/// A decimal number with an optional `-`.
fn parse_int(bytes: &[u8]) -> Option<i64> {
    match bytes.split_first() {
        Some((b'-', digits)) => parse_uint(digits).map(|v| -(v as i64)),
        // At most 18 digits: below i64::MAX.
        _ => parse_uint(bytes).map(|v| v as i64),
    }
}

/// Splits the first request off `bytes` into its words, without
/// interpreting them (see [`Command::parse`]).
pub fn split(bytes: &[u8]) -> Result<Option<(Args<'_>, usize)>, RespError> {
    match bytes.first() {
        None => Ok(None),
        Some(b'*') => split_array(bytes),
        Some(&b) if b.is_ascii_alphabetic() || matches!(b, b' ' | b'\t' | b'\r' | b'\n') => {
            split_inline(bytes)
        }
        Some(&b) => Err(RespError::BadType(b)),
    }
}

/// Which length line is being read, for its limit and its error.
#[derive(Clone, Copy)]
enum LenLine {
    Array,
    Bulk,
}

/// Reads a length line starting at `pos` (after its type byte): an optional
/// `-`, digits, CRLF. Returns the number and the position after the CRLF.
/// Refuses a value over the limit as soon as its digits show it.
fn len_line(bytes: &[u8], mut pos: usize, kind: LenLine) -> Result<Option<(i64, usize)>, RespError> {
    let (bad, limit, over) = match kind {
        LenLine::Array => (RespError::BadArrayLen, MAX_ARGS, RespError::TooManyArgs { max: MAX_ARGS }),
        LenLine::Bulk => (RespError::BadBulkLen, MAX_BULK, RespError::BulkTooLong { max: MAX_BULK }),
    };
    let negative = bytes.get(pos) == Some(&b'-');
    if negative {
        if matches!(kind, LenLine::Bulk) {
            // A null bulk string ($-1) is no word of a request.
            return Err(bad);
        }
        pos += 1;
    }
    let mut value: i64 = 0;
    let mut digits = 0;
    loop {
        let Some(&b) = bytes.get(pos) else {
            return Ok(None);
        };
        match b {
            b'0'..=b'9' => {
                if digits == MAX_DIGITS || (digits == 1 && value == 0) {
                    // Too many digits, or a leading zero.
                    return Err(bad);
                }
                value = value * 10 + i64::from(b - b'0');
                digits += 1;
                if !negative && value > limit as i64 {
                    return Err(over);
                }
            }
            b'\r' if digits > 0 => break,
            _ => return Err(bad),
        }
        pos += 1;
    }
    match bytes.get(pos + 1) {
        None => Ok(None),
        Some(b'\n') => Ok(Some((if negative { -value } else { value }, pos + 2))),
        Some(_) => Err(RespError::MissingCrlf),
    }
}

fn split_array(bytes: &[u8]) -> Result<Option<(Args<'_>, usize)>, RespError> {
    let Some((n, mut pos)) = len_line(bytes, 1, LenLine::Array)? else {
        return Ok(None);
    };
    // Redis reads an empty or negative array as no request at all.
    let n = usize::try_from(n).unwrap_or(0);
    let mut args = Args::EMPTY;
    for _ in 0..n {
        match bytes.get(pos) {
            None => return Ok(None),
            Some(b'$') => {}
            Some(&b) => return Err(RespError::ExpectedBulk(b)),
        }
        let Some((len, start)) = len_line(bytes, pos + 1, LenLine::Bulk)? else {
            return Ok(None);
        };
        // `len_line` refused negative bulk lengths.
        let end = start + len as usize;
        match (bytes.get(end), bytes.get(end + 1)) {
            (Some(b'\r'), Some(b'\n')) => {}
            (Some(b'\r'), None) | (None, _) => return Ok(None),
            _ => return Err(RespError::MissingCrlf),
        }
        args.push(&bytes[start..end])?;
        pos = end + 2;
    }
    Ok(Some((args, pos)))
}

fn split_inline(bytes: &[u8]) -> Result<Option<(Args<'_>, usize)>, RespError> {
    let window = &bytes[..bytes.len().min(MAX_INLINE)];
    let Some(newline) = window.iter().position(|&b| b == b'\n') else {
        if bytes.len() >= MAX_INLINE {
            return Err(RespError::InlineTooLong { max: MAX_INLINE });
        }
        return Ok(None);
    };
    let mut args = Args::EMPTY;
    for word in bytes[..newline].split(|b| matches!(b, b' ' | b'\t' | b'\r')).filter(|w| !w.is_empty()) {
        if word.len() > MAX_BULK {
            return Err(RespError::BulkTooLong { max: MAX_BULK });
        }
        args.push(word)?;
    }
    Ok(Some((args, newline + 1)))
}

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
    use super::*;

    /// A request as clients send it: an array of bulk strings.
    fn array(words: &[&[u8]]) -> Vec<u8> {
        let mut out = format!("*{}\r\n", words.len()).into_bytes();
        for w in words {
            out.extend_from_slice(format!("${}\r\n", w.len()).as_bytes());
            out.extend_from_slice(w);
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    fn parse(bytes: &[u8]) -> Command<'_> {
        match Command::parse(bytes) {
            Ok(Some((cmd, used))) => {
                assert_eq!(used, bytes.len(), "{bytes:?}");
                cmd
            }
            other => panic!("{:?}: {other:?}", Escaped(bytes)),
        }
    }

    fn cmd<'a>(words: &[&'a [u8]]) -> Command<'a> {
        let mut args = Args::EMPTY;
        for w in words {
            args.push(w).unwrap();
        }
        Command::from_args(&args)
    }

    fn encode(reply: Reply<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        let n = reply.encode(&mut out).unwrap();
        assert_eq!(n, out.len());
        assert_eq!(n, reply.encoded_len());
        out
    }

    fn reply_of(words: &[&[u8]]) -> Vec<u8> {
        let mut session = Session::new(7);
        let info = ServerInfo { node: NodeId(0), nodes: 1 };
        match session.handle(cmd(words), &info) {
            Action::Reply(r) | Action::Close(r) => encode(r),
            other => panic!("{other:?}"),
        }
    }

    /// A test-only RESP2 reply reader: the size of the first reply, so that
    /// replies are checked to be well formed.
    fn reply_len(bytes: &[u8]) -> usize {
        let line_end = bytes.windows(2).position(|w| w == b"\r\n").expect("a CRLF") + 2;
        let line = std::str::from_utf8(&bytes[1..line_end - 2]).unwrap();
        match bytes[0] {
            b'+' | b'-' | b':' => line_end,
            b'$' => match line.parse::<i64>().unwrap() {
                -1 => line_end,
                n => {
                    let end = line_end + n as usize;
                    assert_eq!(&bytes[end..end + 2], b"\r\n");
                    end + 2
                }
            },
            b'*' => {
                let mut pos = line_end;
                for _ in 0..line.parse::<usize>().unwrap() {
                    pos += reply_len(&bytes[pos..]);
                }
                pos
            }
            other => panic!("not a reply type: {other}"),
        }
    }

    #[test]
    fn commands_round_trip_as_arrays_and_inline() {
        let cases: Vec<(Vec<&[u8]>, Command<'_>)> = vec![
            (vec![b"TSO"], Command::Tso { count: 1 }),
            (vec![b"tso", b"100"], Command::Tso { count: 100 }),
            (vec![b"TsO", b"262143"], Command::Tso { count: 262_143 }),
            (vec![b"PING"], Command::Ping { message: None }),
            (vec![b"ping", b"hi"], Command::Ping { message: Some(b"hi") }),
            (vec![b"ECHO", b"x"], Command::Echo { message: b"x" }),
            (vec![b"HELLO"], Command::Hello { name: None }),
            (vec![b"HELLO", b"2"], Command::Hello { name: None }),
            (
                vec![b"hello", b"2", b"AUTH", b"u", b"p", b"setname", b"me"],
                Command::Hello { name: Some(b"me") },
            ),
            (vec![b"COMMAND"], Command::Command(CommandQuery::List)),
            (vec![b"COMMAND", b"DOCS"], Command::Command(CommandQuery::List)),
            (vec![b"command", b"docs", b"get"], Command::Command(CommandQuery::List)),
            (vec![b"COMMAND", b"COUNT"], Command::Command(CommandQuery::Count)),
            (vec![b"COMMAND", b"INFO", b"get", b"set"], Command::Command(CommandQuery::Info { names: 2 })),
            (vec![b"CLIENT", b"SETNAME", b"app"], Command::ClientSetName { name: b"app" }),
            (vec![b"client", b"setinfo", b"LIB-NAME", b"redis-py"], Command::ClientSetInfo),
            (vec![b"CLIENT", b"GETNAME"], Command::ClientGetName),
            (vec![b"CLIENT", b"ID"], Command::ClientId),
            (vec![b"INFO"], Command::Info { server: true }),
            (vec![b"INFO", b"Server"], Command::Info { server: true }),
            (vec![b"INFO", b"memory"], Command::Info { server: false }),
            (vec![b"SELECT", b"0"], Command::Select),
            (vec![b"QUIT"], Command::Quit),
        ];
        for (words, expected) in cases {
            assert_eq!(parse(&array(&words)), expected, "{words:?}");
            let mut line = words.join(&b' ');
            line.extend_from_slice(b"\r\n");
            assert_eq!(parse(&line), expected, "inline {words:?}");
        }
        match parse(b"*3\r\n$6\r\nCONFIG\r\n$3\r\nGET\r\n$4\r\nsave\r\n") {
            Command::ConfigGet { params } => assert_eq!(params.as_slice(), [b"save"]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn inline_forms() {
        assert_eq!(parse(b"PING\n"), Command::Ping { message: None });
        assert_eq!(parse(b"  tso \t 5  \r\n"), Command::Tso { count: 5 });
        assert_eq!(parse(b"\r\n"), Command::Empty);
        assert_eq!(parse(b"\n"), Command::Empty);
        assert_eq!(parse(b"*0\r\n"), Command::Empty);
        assert_eq!(parse(b"*-1\r\n"), Command::Empty);
    }

    #[test]
    fn invalid_commands_are_error_replies() {
        fn e<'a>(words: &[&'a [u8]]) -> ErrorReply<'a> {
            match cmd(words) {
                Command::Invalid(e) => e,
                other => panic!("{words:?} gave {other:?}"),
            }
        }
        assert_eq!(e(&[b"TSO", b"0"]), ErrorReply::ZeroCount);
        assert_eq!(e(&[b"TSO", b"262144"]), ErrorReply::CountTooLarge);
        assert_eq!(e(&[b"TSO", b"99999999999999999999"]), ErrorReply::NotInteger);
        assert_eq!(e(&[b"TSO", b"ten"]), ErrorReply::NotInteger);
        assert_eq!(e(&[b"TSO", b"-1"]), ErrorReply::NotInteger);
        assert_eq!(e(&[b"TSO", b"010"]), ErrorReply::NotInteger);
        assert_eq!(e(&[b"TSO", b""]), ErrorReply::NotInteger);
        assert_eq!(e(&[b"TSO", b"1", b"2"]), ErrorReply::WrongArity { command: "tso" });
        assert_eq!(e(&[b"PING", b"a", b"b"]), ErrorReply::WrongArity { command: "ping" });
        assert_eq!(e(&[b"ECHO"]), ErrorReply::WrongArity { command: "echo" });
        assert_eq!(e(&[b"HELLO", b"3"]), ErrorReply::NoProto);
        assert_eq!(e(&[b"HELLO", b"1"]), ErrorReply::NoProto);
        assert_eq!(e(&[b"HELLO", b"x"]), ErrorReply::BadProtocolVersion);
        assert_eq!(e(&[b"HELLO", b"2", b"AUTH", b"u"]), ErrorReply::HelloSyntax { option: b"AUTH" });
        assert_eq!(
            e(&[b"COMMAND", b"GETKEYS"]),
            ErrorReply::UnknownSubcommand { command: "COMMAND", sub: b"GETKEYS" }
        );
        assert_eq!(e(&[b"COMMAND", b"COUNT", b"x"]), ErrorReply::WrongArity { command: "command|count" });
        assert_eq!(e(&[b"CLIENT"]), ErrorReply::WrongArity { command: "client" });
        assert_eq!(
            e(&[b"CLIENT", b"KILL"]),
            ErrorReply::UnknownSubcommand { command: "CLIENT", sub: b"KILL" }
        );
        assert_eq!(e(&[b"CLIENT", b"SETNAME"]), ErrorReply::WrongArity { command: "client|setname" });
        assert_eq!(e(&[b"CLIENT", b"SETNAME", b"a b"]), ErrorReply::BadClientName);
        assert_eq!(e(&[b"CLIENT", b"SETINFO", b"x"]), ErrorReply::WrongArity { command: "client|setinfo" });
        assert_eq!(e(&[b"CLIENT", b"GETNAME", b"x"]), ErrorReply::WrongArity { command: "client|getname" });
        assert_eq!(e(&[b"CLIENT", b"ID", b"x"]), ErrorReply::WrongArity { command: "client|id" });
        assert_eq!(e(&[b"SELECT", b"1"]), ErrorReply::DbOutOfRange);
        assert_eq!(e(&[b"SELECT", b"zero"]), ErrorReply::NotInteger);
        assert_eq!(e(&[b"SELECT"]), ErrorReply::WrongArity { command: "select" });
        assert_eq!(e(&[b"CONFIG"]), ErrorReply::WrongArity { command: "config" });
        assert_eq!(e(&[b"CONFIG", b"GET"]), ErrorReply::WrongArity { command: "config|get" });
        assert_eq!(
            e(&[b"CONFIG", b"SET", b"a", b"b"]),
            ErrorReply::UnknownSubcommand { command: "CONFIG", sub: b"SET" }
        );
        match e(&[b"GET", b"key"]) {
            ErrorReply::UnknownCommand { name, args } => {
                assert_eq!(name, b"GET");
                assert_eq!(args.as_slice(), [b"key"]);
            }
            other => panic!("{other:?}"),
        }
    }

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

    #[test]
    fn protocol_violations() {
        let err = |bytes: &[u8]| Command::parse(bytes).map(|r| r.map(|(_, n)| n));
        assert_eq!(err(b"+OK\r\n"), Err(RespError::BadType(b'+')));
        assert_eq!(err(b"$3\r\nTSO\r\n"), Err(RespError::BadType(b'$')));
        assert_eq!(err(b"\x00\x01"), Err(RespError::BadType(0)));
        assert_eq!(err(b"7"), Err(RespError::BadType(b'7')));
        assert_eq!(err(b"*1\r\n:3\r\n"), Err(RespError::ExpectedBulk(b':')));
        assert_eq!(err(b"*x\r\n"), Err(RespError::BadArrayLen));
        assert_eq!(err(b"*\r\n"), Err(RespError::BadArrayLen));
        assert_eq!(err(b"*01\r\n"), Err(RespError::BadArrayLen));
        assert_eq!(err(b"*1\n"), Err(RespError::BadArrayLen));
        assert_eq!(err(b"*-1234567890123456789"), Err(RespError::BadArrayLen));
        assert_eq!(err(b"*9"), Err(RespError::TooManyArgs { max: MAX_ARGS }));
        assert_eq!(err(b"*1000000\r\n"), Err(RespError::TooManyArgs { max: MAX_ARGS }));
        assert_eq!(err(b"*1\r\n$-1\r\n"), Err(RespError::BadBulkLen));
        assert_eq!(err(b"*1\r\n$x\r\n"), Err(RespError::BadBulkLen));
        assert_eq!(err(b"*1\r\n$03\r\n"), Err(RespError::BadBulkLen));
        assert_eq!(err(b"*1\r\n$65"), Err(RespError::BulkTooLong { max: MAX_BULK }));
        assert_eq!(err(b"*1\r\n$99999999999999999999999"), Err(RespError::BulkTooLong { max: MAX_BULK }));
        assert_eq!(err(b"*1\r\n$3\rX"), Err(RespError::MissingCrlf));
        assert_eq!(err(b"*1\r\n$3\r\nTSOxx"), Err(RespError::MissingCrlf));
        assert_eq!(err(b"*1\r\n$3\r\nTSO\rx"), Err(RespError::MissingCrlf));
        assert_eq!(err(b"*1\rx"), Err(RespError::MissingCrlf));
        let long_word = [b'a'; MAX_BULK + 1];
        assert_eq!(err(&[&long_word[..], b"\r\n"].concat()), Err(RespError::BulkTooLong { max: MAX_BULK }));
        assert_eq!(err(b"a b c d e f g h i\r\n"), Err(RespError::TooManyArgs { max: MAX_ARGS }));
        assert_eq!(err(&[b'a'; MAX_INLINE]), Err(RespError::InlineTooLong { max: MAX_INLINE }));
        assert_eq!(err(&[b' '; MAX_INLINE - 1]), Ok(None));
        // Limits themselves are fine.
        let words: Vec<&[u8]> = vec![&[b'x'; MAX_BULK][..]; MAX_ARGS];
        let biggest = array(&words);
        assert!(biggest.len() <= MAX_COMMAND_LEN);
        assert!(matches!(parse(&biggest), Command::Invalid(ErrorReply::UnknownCommand { .. })));
    }

    #[test]
    fn pipelined_commands_in_one_buffer() {
        let mut buf = array(&[b"TSO"]);
        buf.extend_from_slice(b"PING\r\n");
        buf.extend_from_slice(&array(&[b"TSO", b"100"]));
        buf.extend_from_slice(b"\r\n");
        buf.extend_from_slice(&array(&[b"GET", b"k"]));
        buf.extend_from_slice(&array(&[b"QUIT"]));
        buf.extend_from_slice(b"*1\r\n$4\r\nPI");
        let mut rest = &buf[..];
        let mut seen = Vec::new();
        while let Some((cmd, used)) = Command::parse(rest).unwrap() {
            seen.push(cmd);
            rest = &rest[used..];
        }
        assert_eq!(rest, b"*1\r\n$4\r\nPI");
        assert_eq!(seen.len(), 6);
        assert_eq!(seen[0], Command::Tso { count: 1 });
        assert_eq!(seen[1], Command::Ping { message: None });
        assert_eq!(seen[2], Command::Tso { count: 100 });
        assert_eq!(seen[3], Command::Empty);
        assert!(matches!(seen[4], Command::Invalid(ErrorReply::UnknownCommand { .. })));
        assert_eq!(seen[5], Command::Quit);
    }

    #[test]
    fn every_cut_asks_for_more() {
        let requests: Vec<Vec<u8>> = vec![
            array(&[b"TSO"]),
            array(&[b"TSO", b"100"]),
            array(&[b"CLIENT", b"SETINFO", b"LIB-NAME", b"redis-py"]),
            array(&[b"ECHO", &[0u8, 13, 10, 255][..]]),
            array(&[&[b'y'; MAX_BULK][..]; MAX_ARGS]),
            b"PING\r\n".to_vec(),
            b"TSO 5\n".to_vec(),
        ];
        for request in requests {
            for cut in 0..request.len() {
                assert_eq!(Command::parse(&request[..cut]), Ok(None), "{:?} cut at {cut}", Escaped(&request));
            }
            assert!(Command::parse(&request).unwrap().is_some());
        }
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

    mod props {
        use proptest::prelude::*;

        use super::super::*;
        use super::array;

        proptest! {
            #[test]
            fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1500)) {
                match Command::parse(&bytes) {
                    Ok(Some((cmd, used))) => {
                        prop_assert!(used > 0 && used <= bytes.len());
                        if let Command::Invalid(e) = cmd {
                            let _ = Reply::Error(e).encoded_len();
                        }
                    }
                    Ok(None) => prop_assert!(bytes.len() < MAX_COMMAND_LEN),
                    Err(e) => {
                        let text = {
                            let mut out = Vec::new();
                            Reply::Error(ErrorReply::Protocol(e)).encode(&mut out).unwrap();
                            out
                        };
                        prop_assert!(text.starts_with(b"-ERR Protocol error: "));
                    }
                }
            }

            #[test]
            fn plausible_prefixes_never_panic(
                head in prop::sample::select(vec![&b"*"[..], &b"*2\r\n$"[..], &b"*1\r\n$3\r\n"[..], &b"TSO "[..], &b"*3\r\n$3\r\nTSO\r\n$"[..]]),
                tail in proptest::collection::vec(prop::sample::select(b"*$\r\n-0123456789TSOtso \x00".to_vec()), 0..80),
            ) {
                let bytes = [head, &tail[..]].concat();
                if let Ok(Some((_, used))) = Command::parse(&bytes) {
                    prop_assert!(used > 0 && used <= bytes.len());
                }
            }

            #[test]
            fn arrays_of_words_split_back(
                words in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..=MAX_BULK), 1..=MAX_ARGS),
                trailing in proptest::collection::vec(any::<u8>(), 0..8),
            ) {
                let words: Vec<&[u8]> = words.iter().map(Vec::as_slice).collect();
                let request = array(&words);
                let (args, used) = split(&request).unwrap().unwrap();
                prop_assert_eq!(used, request.len());
                prop_assert_eq!(args.as_slice(), &words[..]);
                // Whatever follows does not change the first request.
                let more = [&request[..], &trailing[..]].concat();
                let (again, used) = split(&more).unwrap().unwrap();
                prop_assert_eq!(used, request.len());
                prop_assert_eq!(again.as_slice(), &words[..]);
                let cut = (trailing.len() * 7919) % request.len();
                prop_assert_eq!(split(&request[..cut]), Ok(None));
            }

            #[test]
            fn tso_counts(count in 0u64..400_000) {
                let text = count.to_string();
                let cmd = Command::from_args(&{
                    let mut a = Args::EMPTY;
                    a.push(b"TSO").unwrap();
                    a.push(text.as_bytes()).unwrap();
                    a
                });
                let expected = match count {
                    0 => Command::Invalid(ErrorReply::ZeroCount),
                    c if c >= u64::from(MAX_LOGICAL) => Command::Invalid(ErrorReply::CountTooLarge),
                    c => Command::Tso { count: c as u32 },
                };
                prop_assert_eq!(cmd, expected);
            }
        }
    }
}
