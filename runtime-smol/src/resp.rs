//! The RESP door (`serve --resp ADDR`) on smol: the Redis protocol on a
//! listener of its own, so that any language's Redis client is a leasetso
//! client.
//!
//! The parser, the per-connection session and every reply are the core's
//! ([`leasetso_core::resp`]); a connection task reads into a fixed buffer,
//! answers every complete command in order (pipelined commands in one
//! write), and asks the node for `TSO` under its lock. A node that does not
//! serve answers `-NOTLEADER <addr>` with the RESP address the leader
//! advertised in its peer handshake, or `-TRYAGAIN`. A protocol violation
//! gets `-ERR Protocol error: ...` and closes this connection only.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_net::{TcpListener, TcpStream};
use futures_lite::{AsyncWriteExt, future};
use leasetso_core::conn::{LINGER, LINGER_BYTES};
use leasetso_core::resp::{
    Action, Command, ErrorReply, MAX_COMMAND_LEN, Reply, ServerInfo, Session, ts_reply,
};

use crate::io::{linger_close, refill};
use crate::server::{Counters, Shared};

/// Read buffer size: many pipelined commands per read.
const READ_BUF: usize = 16 * 1024;
/// Answers are written out once this many bytes are buffered, even mid-burst.
const WRITE_FLUSH: usize = 16 * 1024;
/// Room for the largest reply after `WRITE_FLUSH` (`INFO`, `HELLO`), so the
/// write buffer never grows.
const REPLY_ROOM: usize = 1024;

/// Accepts RESP connections until the stop, each served by its own task.
pub(crate) async fn accept(
    shared: Arc<Shared>,
    ex: std::sync::Weak<async_executor::Executor<'static>>,
    listener: TcpListener,
) {
    let ids = AtomicU64::new(0);
    let accepting = async {
        loop {
            let stream = match listener.accept().await {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "RESP accept failed");
                    async_io::Timer::after(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Some(ex) = ex.upgrade() else { return };
            Counters::bump(&shared.counters.connections, 1);
            let id = ids.fetch_add(1, Ordering::Relaxed) + 1;
            let conn_shared = Arc::clone(&shared);
            shared.spawn_conn(&ex, async move { serve(&conn_shared, stream, id).await });
        }
    };
    future::or(accepting, shared.stopped()).await;
}

/// Serves `stream` until the client leaves or quits, or breaks the protocol.
async fn serve(shared: &Shared, mut stream: TcpStream, id: u64) {
    let _ = stream.set_nodelay(true);
    let info = ServerInfo { node: shared.node_id, nodes: shared.nodes };
    let mut session = Session::new(id);
    let mut out: Vec<u8> = Vec::with_capacity(WRITE_FLUSH + REPLY_ROOM);
    let mut buf = vec![0u8; READ_BUF];
    let (mut start, mut end) = (0usize, 0usize);
    loop {
        // Answer every complete command already buffered.
        let mut close = false;
        loop {
            match Command::parse(&buf[start..end]) {
                Ok(Some((command, used))) => {
                    start += used;
                    match session.handle(command, &info) {
                        Action::Nothing => {}
                        Action::Reply(reply) => send(shared, &mut out, &reply),
                        Action::Close(reply) => {
                            send(shared, &mut out, &reply);
                            close = true;
                        }
                        Action::GetTs { count } => tso(shared, count, &mut out),
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(id, error = %e, "RESP protocol error; closing the connection");
                    send(shared, &mut out, &Reply::Error(ErrorReply::Protocol(e)));
                    close = true;
                }
            }
            if close {
                break;
            }
            if out.len() >= WRITE_FLUSH {
                if stream.write_all(&out).await.is_err() {
                    return;
                }
                out.clear();
            }
        }
        if !out.is_empty() {
            if stream.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
        }
        if close {
            linger_close(&mut stream, LINGER, LINGER_BYTES).await;
            return;
        }
        match refill(&mut stream, &mut buf, &mut start, &mut end, MAX_COMMAND_LEN).await {
            // The client left, possibly mid-command: nothing to answer.
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// Answers `TSO count`: the node's timestamps, or where to go instead.
fn tso(shared: &Shared, count: u32, out: &mut Vec<u8>) {
    Counters::bump(&shared.counters.get_ts_requests, 1);
    let reply = match shared.node.get_ts(count) {
        Ok(last) => {
            Counters::bump(&shared.counters.timestamps, u64::from(count));
            ts_reply(Ok(last), shared.node_id, |_| None)
        }
        Err(Some(e)) => ts_reply(Err(e), shared.node_id, |leader| shared.kit.resp_addr(leader)),
        Err(None) => Reply::Error(ErrorReply::Internal),
    };
    send(shared, out, &reply);
}

fn send(shared: &Shared, out: &mut Vec<u8>, reply: &Reply<'_>) {
    if let Reply::Error(_) = reply {
        Counters::bump(&shared.counters.errors, 1);
    }
    // `out` is a `Vec`, which grows as needed: encoding into it cannot fail.
    let _ = reply.encode(out);
}
