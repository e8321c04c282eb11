//! Byte plumbing the async connections share: refilling a read buffer and
//! closing a connection without losing the last frame sent on it.

use std::io;
use std::net::Shutdown;
use std::time::Duration;

use async_net::TcpStream;
use futures_lite::{AsyncReadExt, AsyncWriteExt, future};
use leasetso_runtime_common::io::InBuf;
use leasetso_runtime_common::tls::{Identity, TlsPipe, TlsSession};

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

/// A peer link's connection: plaintext, or TLS over the same socket
/// through the kit's [`TlsPipe`]; this only moves its bytes.
pub(crate) struct Conn {
    /// The socket.
    pub(crate) stream: TcpStream,
    tls: Option<Box<TlsPipe>>,
}

impl Conn {
    /// `stream`, in plaintext or behind `session`.
    pub(crate) fn new(stream: TcpStream, session: Option<TlsSession>) -> Conn {
        Conn { stream, tls: session.map(|s| Box::new(TlsPipe::new(s))) }
    }

    /// With TLS, who the peer's verified certificate names, once known.
    pub(crate) fn identity(&self) -> Option<&Identity> {
        self.tls.as_ref().and_then(|t| t.identity())
    }

    /// Writes `data` (encrypted, with TLS) and whatever TLS has to send.
    pub(crate) async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        let Some(t) = self.tls.as_mut() else { return self.stream.write_all(data).await };
        t.seal(data)?;
        send(&mut self.stream, t).await
    }

    /// Reads what the peer sent (decrypted, with TLS); 0 means it closed.
    pub(crate) async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(t) = self.tls.as_mut() else { return self.stream.read(buf).await };
        loop {
            let n = t.take_plain(buf);
            if n > 0 {
                return Ok(n);
            }
            let n = self.stream.read(t.read_room()).await?;
            if n == 0 {
                return Ok(0);
            }
            t.received(n)?;
            send(&mut self.stream, t).await?;
        }
    }
}

/// Writes what the pipe has to send.
async fn send(stream: &mut TcpStream, t: &mut TlsPipe) -> io::Result<()> {
    let n = t.to_send().len();
    stream.write_all(t.to_send()).await?;
    t.sent(n);
    Ok(())
}
