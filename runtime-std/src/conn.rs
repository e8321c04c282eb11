//! One client connection, served on its own thread.
//!
//! Every protocol rule lives in the core's session ([`ServerConn`]): this
//! thread only moves bytes. It reads whatever has arrived into a fixed
//! buffer, lets the session answer every complete frame in it (so pipelined
//! requests are answered in one write), writes the answers, runs operator
//! requests on the store thread when the session asks, and reads again. The
//! read and write buffers are allocated once per connection: the
//! per-request path allocates nothing.
//!
//! After a fatal error the session has queued its Error frame; the thread
//! writes it and closes this connection only, lingering so the client reads it.

use std::io::{self, Write};
use std::net::TcpStream;

use leasetso_core::conn::{ADMIN_TIMEOUT, FRAME_ROOM, OUT_CAPACITY, READ_BUF};
use leasetso_core::{Served, ServerConn};

use crate::io::{linger_close, refill};
use crate::server::Shared;

/// Serves `stream` until the client leaves, breaks the protocol, or the server stops.
pub(crate) fn serve(shared: &Shared, stream: TcpStream) {
    // Timestamps are small and latency-bound: never wait to coalesce writes.
    let _ = stream.set_nodelay(true);
    let mut session = ServerConn::new(shared.cluster_id, shared.node_id, shared.nodes);
    let mut backend = &shared.kit;
    let mut out = Vec::with_capacity(OUT_CAPACITY);
    let mut buf = vec![0u8; READ_BUF];
    let (mut start, mut end) = (0usize, 0usize);
    loop {
        // Answer every complete frame already buffered.
        let (used, served) = session.handle(&buf[start..end], &mut backend, &mut out);
        start += used;
        match served {
            Served::Read => {}
            Served::Flush => {
                if flush(&stream, &mut out).is_err() {
                    return;
                }
                continue;
            }
            Served::Admin { id, op } => {
                let reply = shared.admin(op, ADMIN_TIMEOUT);
                // The session asked for exactly this request: it is the one pending.
                let _ = session.admin_done(id, reply, &mut backend, &mut out);
                continue;
            }
            Served::Close(fatal) => {
                tracing::debug!(error = %fatal, "fatal error; closing the connection");
                if flush(&stream, &mut out).is_ok() {
                    linger_close(&stream);
                }
                return;
            }
        }
        if flush(&stream, &mut out).is_err() {
            return;
        }
        if shared.is_stopping() {
            linger_close(&stream);
            return;
        }
        match refill(&stream, &mut buf, &mut start, &mut end, FRAME_ROOM) {
            // The client left, possibly mid-frame: nothing to answer.
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// Writes out what the session queued, then empties `out` for the next answers.
fn flush(mut stream: &TcpStream, out: &mut Vec<u8>) -> io::Result<()> {
    if out.is_empty() {
        return Ok(());
    }
    let result = stream.write_all(out);
    out.clear();
    result
}
