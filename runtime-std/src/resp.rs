//! The RESP door (`serve --resp ADDR`): the Redis protocol on a listener of
//! its own, so that any language's Redis client is a leasetso client.
//!
//! Like a client connection ([`crate::conn`]), each RESP connection is served
//! on its own thread: it reads whatever bytes have arrived into a fixed
//! buffer, answers every complete command in it in order (so pipelined
//! commands are answered in one write), and reads again. The parser and the
//! replies are the core's ([`leasetso_core::resp`]); the buffers are
//! allocated once per connection, so a command costs no allocation.
//!
//! `TSO [count]` asks the node exactly as a GetTS frame does; a run of
//! pipelined `TSO`s is served under one lock of the node (the clock still
//! read for each), and the server's counters are bumped once per batch, so
//! that 50 connection threads on two cores do not spend their time passing
//! cache lines around. A node that
//! does not serve answers `-NOTLEADER <addr>` with the RESP address the
//! leader advertised in its peer handshake, or `-TRYAGAIN` while nobody
//! serves (or the leader's RESP address is not known here). A protocol
//! violation gets `-ERR Protocol error: ...` and closes this connection only.

use std::io::{self, Write};
use std::net::TcpStream;

use leasetso_core::resp::{
    Action, Command, ErrorReply, MAX_COMMAND_LEN, Reply, ServerInfo, Session, ts_reply,
};
use leasetso_core::{GetTsError, Timestamp};

use crate::io::{linger_close, refill};
use crate::server::{Counters, Shared};

/// Read buffer size: many pipelined commands per read.
const READ_BUF: usize = 16 * 1024;
/// Answers are written out once this many bytes are buffered, even mid-burst.
const WRITE_FLUSH: usize = 16 * 1024;
/// Room for the largest reply after `WRITE_FLUSH` (`INFO`, `HELLO`: a few
/// hundred bytes), so the write buffer never grows.
const REPLY_ROOM: usize = 1024;

/// What one batch did, for the server's counters: bumped once per batch.
#[derive(Default)]
struct Tally {
    get_ts_requests: u64,
    timestamps: u64,
    errors: u64,
}

impl Tally {
    fn flush(&mut self, shared: &Shared) {
        let counters = &shared.counters;
        for (counter, n) in [
            (&counters.get_ts_requests, self.get_ts_requests),
            (&counters.timestamps, self.timestamps),
            (&counters.errors, self.errors),
        ] {
            if n > 0 {
                Counters::bump(counter, n);
            }
        }
        *self = Tally::default();
    }
}

/// Serves `stream` until the client leaves or quits, breaks the protocol,
/// or the server stops.
pub(crate) fn serve(shared: &Shared, stream: TcpStream, id: u64) {
    // Timestamps are small and latency-bound: never wait to coalesce writes.
    let _ = stream.set_nodelay(true);
    let info = ServerInfo { node: shared.node_id, nodes: shared.nodes };
    let mut session = Session::new(id);
    let mut out: Vec<u8> = Vec::with_capacity(WRITE_FLUSH + REPLY_ROOM);
    let mut tally = Tally::default();
    let mut buf = vec![0u8; READ_BUF];
    let (mut start, mut end) = (0usize, 0usize);
    loop {
        // Answer every complete command already buffered.
        let close = loop {
            match Command::parse(&buf[start..end]) {
                Ok(Some((command, used))) => {
                    start += used;
                    match session.handle(command, &info) {
                        Action::Nothing => {}
                        Action::Reply(reply) => send(&mut tally, &mut out, &reply),
                        Action::Close(reply) => {
                            send(&mut tally, &mut out, &reply);
                            break true;
                        }
                        Action::GetTs { count } => {
                            start += tso_run(shared, count, &buf[start..end], &mut out, &mut tally);
                        }
                    }
                    if out.len() >= WRITE_FLUSH && flush(&stream, &mut out).is_err() {
                        return;
                    }
                }
                Ok(None) => break false,
                Err(e) => {
                    tracing::debug!(id, error = %e, "RESP protocol error; closing the connection");
                    send(&mut tally, &mut out, &Reply::Error(ErrorReply::Protocol(e)));
                    break true;
                }
            }
        };
        tally.flush(shared);
        if flush(&stream, &mut out).is_err() {
            return;
        }
        if close || shared.is_stopping() {
            linger_close(&stream);
            return;
        }
        match refill(&stream, &mut buf, &mut start, &mut end, MAX_COMMAND_LEN) {
            // The client left, possibly mid-command: nothing to answer.
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// Answers `TSO count`, and the `TSO`s that follow it in `rest`, under one
/// lock of the node; stops at the first other command, the first error, or
/// a full write buffer. Returns the bytes of `rest` it consumed.
fn tso_run(shared: &Shared, count: u32, rest: &[u8], out: &mut Vec<u8>, tally: &mut Tally) -> usize {
    let mut used = 0;
    let run = shared.node.with_node(|node| {
        let mut count = count;
        loop {
            tally.get_ts_requests += 1;
            // The clock is read under the lock, for every TSO: the lease
            // check uses a time no earlier than the moment of handing out.
            match node.get_ts(count, shared.clock.now()) {
                Ok(last) => {
                    tally.timestamps += u64::from(count);
                    send(tally, out, &ts_reply(Ok(last), shared.node_id, |_| None));
                }
                Err(e) => return Err(e),
            }
            if out.len() >= WRITE_FLUSH {
                return Ok(());
            }
            // `Session::handle` turns a TSO into nothing but this request.
            match Command::parse(&rest[used..]) {
                Ok(Some((Command::Tso { count: next }, n))) => {
                    used += n;
                    count = next;
                }
                _ => return Ok(()),
            }
        }
    });
    let result: Result<Timestamp, Option<GetTsError>> = match run {
        Some(Ok(())) => return used,
        Some(Err(e)) => Err(Some(e)),
        // The node is not built yet (it learns its restart counter from
        // its peers) or poisoned: `get_ts` tells which.
        None => {
            tally.get_ts_requests += 1;
            shared.node.get_ts(count)
        }
    };
    // Outside the node's lock: the leader's RESP address is behind another.
    let reply = match result {
        Ok(last) => {
            tally.timestamps += u64::from(count);
            ts_reply(Ok(last), shared.node_id, |_| None)
        }
        Err(Some(e)) => ts_reply(Err(e), shared.node_id, |leader| shared.kit.resp_addr(leader)),
        Err(None) => Reply::Error(ErrorReply::Internal),
    };
    send(tally, out, &reply);
    used
}

fn send(tally: &mut Tally, out: &mut Vec<u8>, reply: &Reply<'_>) {
    if let Reply::Error(_) = reply {
        tally.errors += 1;
    }
    // `out` is a `Vec`, which grows as needed: encoding into it cannot fail.
    let _ = reply.encode(out);
}

fn flush(mut stream: &TcpStream, out: &mut Vec<u8>) -> io::Result<()> {
    if out.is_empty() {
        return Ok(());
    }
    let result = stream.write_all(out);
    out.clear();
    result
}
