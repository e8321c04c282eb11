//! One client connection on the smol server: the socket loop around the
//! core's [`ServerConn`] session.
//!
//! The session owns every protocol rule (handshake, dispatch, error codes,
//! fatal closes); this task only reads bytes into a fixed buffer, hands them
//! to the session, writes what it answered, runs operator store requests on
//! the store thread, and lingers before closing after a fatal error. The
//! read buffer and the out `Vec` are allocated once per connection with the
//! sizes the session asks for ([`READ_BUF`], [`OUT_CAPACITY`]), so the
//! per-request path allocates nothing; the node's lock is held only inside
//! [`Backend::get_ts`], never across an `.await`.

use async_net::TcpStream;
use futures_lite::AsyncWriteExt;
use leasetso_core::conn::{FRAME_ROOM, LINGER, LINGER_BYTES, OUT_CAPACITY, READ_BUF, Served, ServerConn};

use crate::io::{linger_close, refill};
use crate::server::Shared;

/// Serves `stream` until the client leaves or breaks the protocol. (The
/// server's stop cancels this future from outside.)
pub(crate) async fn serve(shared: &Shared, mut stream: TcpStream) {
    // Timestamps are small and latency-bound: never wait to coalesce writes.
    let _ = stream.set_nodelay(true);
    let mut session = ServerConn::new(shared.cluster_id, shared.node_id, shared.nodes);
    let mut backend = &shared.kit;
    let mut out: Vec<u8> = Vec::with_capacity(OUT_CAPACITY);
    let mut buf = vec![0u8; READ_BUF];
    let (mut start, mut end) = (0usize, 0usize);
    loop {
        let (used, served) = session.handle(&buf[start..end], &mut backend, &mut out);
        start += used;
        if !out.is_empty() {
            if stream.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
        }
        match served {
            Served::Read => match refill(&mut stream, &mut buf, &mut start, &mut end, FRAME_ROOM).await {
                // The client left, possibly mid-frame: nothing to answer.
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            },
            Served::Flush => {}
            Served::Admin { id, op } => {
                let reply = shared.admin(op).await;
                // The session asked for exactly this id: it cannot refuse it.
                let _ = session.admin_done(id, reply, &mut backend, &mut out);
            }
            Served::Close(fatal) => {
                tracing::debug!(%fatal, "closing the connection");
                linger_close(&mut stream, LINGER, LINGER_BYTES).await;
                return;
            }
        }
    }
}
