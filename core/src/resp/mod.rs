//! The RESP door: the Redis protocol (RESP2), so that any language's Redis
//! client is a leasetso client (ARCHITECTURE.md, "RESP door").
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
//! wire codecs: a buffer too small gets [`EncodeError::BufferTooSmall`](crate::wire::EncodeError::BufferTooSmall) and is
//! left untouched.
//!
//! A connection is a [`RespConn`]: bytes in, bytes out, the node reached
//! through a [`RespBackend`] the runtime passes in, shaped like the client
//! protocol's [`ServerConn`](crate::conn::ServerConn). It answers every
//! complete command in order, serves a run of pipelined `TSO`s through one
//! backend call (one lock of the node), picks `-NOTLEADER <addr>` or
//! `-TRYAGAIN` from what the backend reports, answers a protocol violation
//! and then closes, closes after `QUIT`, and keeps its output under
//! [`OUT_LIMIT`]; the runtime only moves bytes. The older interface, which
//! left that loop to each runtime ([`Session`] turning a command into an
//! [`Action`], [`ts_reply`] for a `TSO`'s answer), stays until the runtimes
//! move.

//!
//! # Where each piece lives
//!
//! * [`parse`]: framing: a request's words off the byte stream ([`split`],
//!   [`Args`]), its limits and the protocol violations ([`RespError`]).
//! * [`command`]: the words recognised as a [`Command`].
//! * [`reply`]: the replies ([`Reply`], [`ErrorReply`], [`Busy`]) and
//!   their encoding.
//! * [`session`]: the connection as a byte-in/byte-out session
//!   ([`RespConn`], over a [`RespBackend`]), and what one connection
//!   remembers ([`Session`]).

pub mod command;
#[cfg(test)]
mod fixtures;
pub mod parse;
pub mod reply;
pub mod session;

pub use command::{Command, CommandQuery};
pub use parse::{Args, MAX_ARGS, MAX_BULK, MAX_COMMAND_LEN, MAX_INLINE, RespError, split};
pub use reply::{Busy, ErrorReply, Reply, ServerInfo};
pub use session::{
    Action, MAX_REPLY_LEN, MAX_RUN, OUT_LIMIT, RespBackend, RespClose, RespConn, RespServed, Session,
    WRITE_FLUSH, advertised_addr, ts_reply,
};
