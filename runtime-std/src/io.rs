//! Byte plumbing the connection threads share: refilling a read buffer,
//! closing a connection without losing the last frame sent on it, and a
//! client's connection in plaintext or TLS.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};

use leasetso_core::conn::{LINGER, LINGER_BYTES};
use leasetso_runtime_common::io::InBuf;
use leasetso_runtime_common::tls::{Identity, TlsError, TlsPipe, TlsSession, is_tls_alert};

/// Reads once more into `buf`, with room for at least `room` bytes after
/// its unread ones, retrying an interrupted read. Returns the bytes read; 0
/// means the peer closed the connection. The buffer is allocated once per
/// connection: this allocates nothing.
pub(crate) fn refill(mut stream: &TcpStream, buf: &mut InBuf, room: usize) -> io::Result<usize> {
    loop {
        match stream.read(buf.spare(room)) {
            Ok(n) => {
                buf.filled(n);
                return Ok(n);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Closes after a fatal answer: stop sending, then read what the peer still
/// sends for a moment (at most [`LINGER`] and [`LINGER_BYTES`]), because
/// closing a socket with unread input resets the connection and the peer
/// might never see the answer.
pub(crate) fn linger_close(stream: &TcpStream) {
    let _ = stream.shutdown(Shutdown::Write);
    if stream.set_read_timeout(Some(LINGER)).is_err() {
        return;
    }
    let mut sink = [0u8; 1024];
    let mut total = 0;
    while total < LINGER_BYTES {
        match (&*stream).read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(n) => total += n,
        }
    }
}

/// Writes out what a session queued, then empties `out` for the next answers.
pub(crate) fn flush(mut stream: &TcpStream, out: &mut Vec<u8>) -> io::Result<()> {
    if out.is_empty() {
        return Ok(());
    }
    let result = stream.write_all(out);
    out.clear();
    result
}

/// A connection a client or a peer link drives: plaintext, or TLS over the
/// same socket through the kit's [`TlsPipe`]; this only moves its bytes.
pub(crate) struct Conn {
    tcp: TcpStream,
    tls: Option<Box<TlsPipe>>,
    /// Nothing was read yet: a plaintext client checks the first bytes for a
    /// TLS alert, the answer of a server that requires TLS.
    fresh: bool,
}

impl Conn {
    /// `tcp`, in plaintext or behind `session`.
    pub(crate) fn new(tcp: TcpStream, session: Option<TlsSession>) -> Conn {
        Conn { tcp, tls: session.map(|s| Box::new(TlsPipe::new(s))), fresh: true }
    }

    /// The socket.
    pub(crate) fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// With TLS, who the peer's verified certificate names, once known.
    pub(crate) fn identity(&self) -> Option<&Identity> {
        self.tls.as_ref().and_then(|t| t.identity())
    }

    /// Writes `data` (encrypted, with TLS) and whatever TLS has to send.
    pub(crate) fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        let Some(t) = self.tls.as_mut() else { return (&self.tcp).write_all(data) };
        t.seal(data)?;
        send(&self.tcp, t)
    }

    /// Reads what the peer sent (decrypted, with TLS), retrying an
    /// interrupted read; 0 means it closed the connection.
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(t) = self.tls.as_mut() else {
            let n = read_retrying(&self.tcp, buf)?;
            if std::mem::take(&mut self.fresh) && is_tls_alert(&buf[..n]) {
                return Err(io::Error::new(io::ErrorKind::InvalidData, TlsError::Required));
            }
            return Ok(n);
        };
        loop {
            let n = t.take_plain(buf);
            if n > 0 {
                return Ok(n);
            }
            let n = read_retrying(&self.tcp, t.read_room())?;
            if n == 0 {
                return Ok(0);
            }
            t.received(n)?;
            send(&self.tcp, t)?;
        }
    }
}

/// Writes what the pipe has to send.
fn send(mut tcp: &TcpStream, t: &mut TlsPipe) -> io::Result<()> {
    let n = t.to_send().len();
    tcp.write_all(t.to_send())?;
    t.sent(n);
    Ok(())
}

fn read_retrying(mut tcp: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match tcp.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}
