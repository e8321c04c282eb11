//! Byte plumbing the async connections share: refilling a read buffer and
//! closing a connection without losing the last frame sent on it.

use std::io;
use std::net::Shutdown;
use std::time::Duration;

use async_net::TcpStream;
use futures_lite::{AsyncReadExt, AsyncWriteExt, future};
use leasetso_runtime_common::io::InBuf;
use leasetso_runtime_common::tls::{Identity, RECORD_ROOM, TlsSession};

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

/// A peer link's connection: plaintext, or TLS over the same socket. The
/// TLS session is the kit's ([`TlsSession`]); this only moves its bytes.
pub(crate) struct Conn {
    /// The socket.
    pub(crate) stream: TcpStream,
    tls: Option<Box<TlsIo>>,
}

/// The TLS side of a [`Conn`].
struct TlsIo {
    session: TlsSession,
    cipher_in: InBuf,
    plain_in: InBuf,
    plain_out: Vec<u8>,
    cipher_out: Vec<u8>,
}

impl Conn {
    /// `stream`, in plaintext or behind `session`.
    pub(crate) fn new(stream: TcpStream, session: Option<TlsSession>) -> Conn {
        let tls = session.map(|session| {
            Box::new(TlsIo {
                session,
                cipher_in: InBuf::new(2 * RECORD_ROOM),
                plain_in: InBuf::new(2 * RECORD_ROOM),
                plain_out: Vec::new(),
                cipher_out: Vec::new(),
            })
        });
        Conn { stream, tls }
    }

    /// With TLS, who the peer's verified certificate names, once known.
    pub(crate) fn identity(&self) -> Option<&Identity> {
        self.tls.as_ref().and_then(|t| t.session.identity())
    }

    /// Writes `data` (encrypted, with TLS) and whatever TLS has to send.
    pub(crate) async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        let Some(t) = self.tls.as_mut() else { return self.stream.write_all(data).await };
        t.plain_out.extend_from_slice(data);
        t.session.write(&mut t.plain_out, &mut t.cipher_out).map_err(io::Error::other)?;
        let result = self.stream.write_all(&t.cipher_out).await;
        t.cipher_out.clear();
        result
    }

    /// Reads what the peer sent (decrypted, with TLS); 0 means it closed.
    pub(crate) async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(t) = self.tls.as_mut() else { return self.stream.read(buf).await };
        loop {
            let pending = t.plain_in.pending();
            if !pending.is_empty() {
                let n = pending.len().min(buf.len());
                buf[..n].copy_from_slice(&pending[..n]);
                t.plain_in.consume(n);
                return Ok(n);
            }
            let n = self.stream.read(t.cipher_in.spare(RECORD_ROOM)).await?;
            if n == 0 {
                return Ok(0);
            }
            t.cipher_in.filled(n);
            t.session.read(&mut t.cipher_in, &mut t.plain_in, 1).map_err(io::Error::other)?;
            // The handshake's next flight, if it has one.
            t.session.write(&mut t.plain_out, &mut t.cipher_out).map_err(io::Error::other)?;
            if !t.cipher_out.is_empty() {
                let result = self.stream.write_all(&t.cipher_out).await;
                t.cipher_out.clear();
                result?;
            }
        }
    }
}
