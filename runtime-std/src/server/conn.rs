//! One connection of any door, served on its own thread.
//!
//! Every protocol rule lives in the core's sessions, and the connection's
//! buffers with them in the kit's [`Door`]; this thread only moves bytes. It
//! steps the door over what has arrived (so pipelined requests are answered
//! in one write), writes the answers, runs operator requests on the store
//! thread when the door asks, and reads again. After a fatal error or a
//! `QUIT` the last reply is written and the thread lingers before closing,
//! so the client reads it.

use std::io;
use std::net::TcpStream;
use std::time::Instant;

use leasetso_core::conn::ADMIN_TIMEOUT;
use leasetso_runtime_common::limits::{HANDSHAKE_DEADLINE, WRITE_DEADLINE};
use leasetso_runtime_common::{Door, Next};

use crate::io::{flush, linger_close, refill};
use crate::server::Shared;

/// Serves `stream` through `door` until the client leaves, breaks the
/// protocol, stalls (H2, H3), or the server stops.
pub(crate) fn serve(shared: &Shared, stream: TcpStream, mut door: impl Door) {
    // Timestamps are small and latency-bound: never wait to coalesce writes.
    let _ = stream.set_nodelay(true);
    // H3: a client that leaves an answer unread this long is dropped.
    let _ = stream.set_write_timeout(Some(WRITE_DEADLINE));
    // H2: the handshake ends by then, or the connection does.
    let deadline = Instant::now() + HANDSHAKE_DEADLINE;
    let mut timed = false;
    loop {
        let next = door.step(shared.clock.now());
        if let Next::Admin { id, op } = next {
            let reply = shared.admin(op, ADMIN_TIMEOUT);
            door.admin_done(id, reply);
            continue;
        }
        if flush(&stream, door.out()).is_err() {
            return;
        }
        match next {
            Next::Flush | Next::Admin { .. } => continue,
            Next::Close => {
                linger_close(&stream);
                return;
            }
            Next::Read => {}
        }
        if shared.is_stopping() {
            linger_close(&stream);
            return;
        }
        if door.handshaking() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
                shared.kit.handshake_timed_out(stream.peer_addr().ok());
                return;
            }
            timed = true;
        } else if timed {
            let _ = stream.set_read_timeout(None);
            timed = false;
        }
        let room = door.room();
        match refill(&stream, door.input(), room) {
            // The client left, possibly mid-request: nothing to answer,
            // but a clean end (TLS's close_notify).
            Ok(0) => {
                door.finish();
                let _ = flush(&stream, door.out());
                return;
            }
            Err(e) if timed && matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                shared.kit.handshake_timed_out(stream.peer_addr().ok());
                return;
            }
            Err(_) => return,
            Ok(_) => {}
        }
    }
}
