//! One connection of any door on the smol server: a task around the kit's
//! [`Door`].
//!
//! Every protocol rule lives in the core's sessions, and the connection's
//! buffers with them in the door; this task only reads bytes, writes what
//! the door answered, runs operator store requests on the store thread, and
//! lingers before closing after a fatal error or a `QUIT`. The node's lock
//! is held only inside the door's step, never across an `.await`.

use std::time::Instant;

use async_io::Timer;
use async_net::TcpStream;
use futures_lite::{AsyncWriteExt, future};
use leasetso_core::conn::{LINGER, LINGER_BYTES};
use leasetso_runtime_common::limits::{HANDSHAKE_DEADLINE, WRITE_DEADLINE};
use leasetso_runtime_common::{Door, Next};

use crate::io::{linger_close, refill};
use crate::server::Shared;

/// `fut`, or `None` if `at` comes first.
async fn before<T>(at: Instant, fut: impl Future<Output = T>) -> Option<T> {
    future::or(async { Some(fut.await) }, async {
        Timer::at(at).await;
        None
    })
    .await
}

/// Serves `stream` through `door` until the client leaves, breaks the
/// protocol or stalls (H2, H3). (The server's stop cancels this future
/// from outside.)
pub(crate) async fn serve(shared: &Shared, mut stream: TcpStream, mut door: impl Door) {
    // Timestamps are small and latency-bound: never wait to coalesce writes.
    let _ = stream.set_nodelay(true);
    // H2: the handshake ends by then, or the connection does.
    let deadline = Instant::now() + HANDSHAKE_DEADLINE;
    loop {
        let next = door.step(shared.clock.now());
        let out = door.out();
        if !out.is_empty() {
            // H3: a client that leaves an answer unread this long is dropped.
            match before(Instant::now() + WRITE_DEADLINE, stream.write_all(out)).await {
                Some(Ok(())) => out.clear(),
                _ => return,
            }
        }
        match next {
            Next::Read => {
                let room = door.room();
                let read = if door.handshaking() {
                    match before(deadline, refill(&mut stream, door.input(), room)).await {
                        Some(read) => read,
                        None => {
                            shared.kit.handshake_timed_out(stream.peer_addr().ok());
                            return;
                        }
                    }
                } else {
                    refill(&mut stream, door.input(), room).await
                };
                match read {
                    // The client left, possibly mid-request: nothing to
                    // answer, but a clean end (TLS's close_notify).
                    Ok(0) => {
                        door.finish();
                        let _ = stream.write_all(door.out()).await;
                        return;
                    }
                    Err(_) => return,
                    Ok(_) => {}
                }
            }
            Next::Flush => {}
            Next::Admin { id, op } => {
                let reply = shared.admin(op).await;
                door.admin_done(id, reply);
            }
            Next::Close => {
                linger_close(&mut stream, LINGER, LINGER_BYTES).await;
                return;
            }
        }
    }
}
