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
use leasetso_core::conn::{
    Backend, FRAME_ROOM, LINGER, LINGER_BYTES, OUT_CAPACITY, READ_BUF, Served, ServerConn, Tally, TsRefusal,
};
use leasetso_core::{LeaderHint, NodeId, Status, Timestamp};

use crate::io::{linger_close, refill};
use crate::server::Shared;

/// The node as a connection sees it.
struct Node<'a>(&'a Shared);

impl Backend for Node<'_> {
    fn get_ts(&mut self, count: u32) -> Result<Timestamp, TsRefusal> {
        self.0.node.serve_ts(count)
    }

    fn status(&mut self) -> Option<Status> {
        self.0.node.status()
    }

    fn hint(&self, leader: Option<NodeId>) -> LeaderHint {
        self.0.hint(leader)
    }

    fn links_up(&self) -> u32 {
        self.0.links_up()
    }

    fn tally(&mut self, tally: Tally) {
        self.0.counters.tally(tally);
    }
}

/// Serves `stream` until the client leaves or breaks the protocol. (The
/// server's stop cancels this future from outside.)
pub(crate) async fn serve(shared: &Shared, mut stream: TcpStream) {
    // Timestamps are small and latency-bound: never wait to coalesce writes.
    let _ = stream.set_nodelay(true);
    let mut session = ServerConn::new(shared.cluster_id, shared.node_id, shared.nodes);
    let mut backend = Node(shared);
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
