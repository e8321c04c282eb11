//! Byte plumbing the async connections share: refilling a read buffer and
//! closing a connection without losing the last frame sent on it.

use std::io;
use std::net::Shutdown;
use std::time::Duration;

use async_net::TcpStream;
use futures_lite::{AsyncReadExt, future};
use leasetso_runtime_common::io::InBuf;

/// Reads once more into `buf`, with room for at least `room` bytes after
/// its unread ones. Returns the bytes read; 0 means the peer closed the
/// connection. The buffer is allocated once per connection: this allocates
/// nothing.
pub(crate) async fn refill(stream: &mut TcpStream, buf: &mut InBuf, room: usize) -> io::Result<usize> {
    let n = stream.read(buf.spare(room)).await?;
    buf.filled(n);
    Ok(n)
}

/// Closes after a fatal answer: stop sending, then read and discard what the
/// peer still sends for a moment (at most `linger` of quiet and `max` bytes),
/// because closing a socket with unread input resets the connection and the
/// peer might never read the answer.
pub(crate) async fn linger_close(stream: &mut TcpStream, linger: Duration, max: usize) {
    let _ = stream.shutdown(Shutdown::Write);
    let mut sink = [0u8; 1024];
    let mut total = 0;
    while total < max {
        let read = future::or(async { stream.read(&mut sink).await.ok() }, async {
            async_io::Timer::after(linger).await;
            None
        });
        match read.await {
            Some(0) | None => break,
            Some(n) => total += n,
        }
    }
}
