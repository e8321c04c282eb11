//! Byte plumbing the connection threads share: refilling a read buffer,
//! closing a connection without losing the last frame sent on it, and a
//! client's connection in plaintext or TLS.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};

use leasetso_core::conn::{LINGER, LINGER_BYTES};
use leasetso_runtime_common::io::InBuf;
use leasetso_runtime_common::tls::{Identity, RECORD_ROOM, TlsSession};

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

/// A client's connection: plaintext, or TLS over the same socket. The TLS
/// session is the kit's ([`TlsSession`]); this only moves its bytes.
pub(crate) struct Conn {
    tcp: TcpStream,
    tls: Option<Box<TlsIo>>,
    /// Nothing was read yet: a plaintext client checks the first bytes for a
    /// TLS alert, the answer of a server that requires TLS.
    fresh: bool,
}

/// The TLS side of a [`Conn`]: its session and buffers.
struct TlsIo {
    session: TlsSession,
    cipher_in: InBuf,
    plain_in: InBuf,
    plain_out: Vec<u8>,
    cipher_out: Vec<u8>,
}

/// A TLS record starts with its content type (21: alert) and the protocol
/// version's major byte (3).
fn is_tls_alert(bytes: &[u8]) -> bool {
    bytes.len() >= 2 && bytes[0] == 21 && bytes[1] == 3
}

/// The error of a plaintext read that met a TLS server.
pub(crate) const TLS_REQUIRED: &str = "the server answered in TLS";

impl Conn {
    /// `tcp`, in plaintext or behind `session`.
    pub(crate) fn new(tcp: TcpStream, session: Option<TlsSession>) -> Conn {
        let tls = session.map(|session| {
            Box::new(TlsIo {
                session,
                cipher_in: InBuf::new(2 * RECORD_ROOM),
                plain_in: InBuf::new(2 * RECORD_ROOM),
                plain_out: Vec::new(),
                cipher_out: Vec::new(),
            })
        });
        Conn { tcp, tls, fresh: true }
    }

    /// The socket.
    pub(crate) fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// With TLS, who the peer's verified certificate names, once known.
    pub(crate) fn identity(&self) -> Option<&Identity> {
        self.tls.as_ref().and_then(|t| t.session.identity())
    }

    /// Writes `data` (encrypted, with TLS) and whatever TLS has to send.
    pub(crate) fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        let Some(t) = self.tls.as_mut() else { return (&self.tcp).write_all(data) };
        t.plain_out.extend_from_slice(data);
        t.session.write(&mut t.plain_out, &mut t.cipher_out).map_err(io::Error::other)?;
        let result = (&self.tcp).write_all(&t.cipher_out);
        t.cipher_out.clear();
        result
    }

    /// Reads what the server sent (decrypted, with TLS), retrying an
    /// interrupted read; 0 means it closed the connection.
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(t) = self.tls.as_mut() else {
            let n = read_retrying(&self.tcp, buf)?;
            if std::mem::take(&mut self.fresh) && is_tls_alert(&buf[..n]) {
                return Err(io::Error::new(io::ErrorKind::InvalidData, TLS_REQUIRED));
            }
            return Ok(n);
        };
        loop {
            let pending = t.plain_in.pending();
            if !pending.is_empty() {
                let n = pending.len().min(buf.len());
                buf[..n].copy_from_slice(&pending[..n]);
                t.plain_in.consume(n);
                return Ok(n);
            }
            let n = read_retrying(&self.tcp, t.cipher_in.spare(RECORD_ROOM))?;
            if n == 0 {
                return Ok(0);
            }
            t.cipher_in.filled(n);
            t.session.read(&mut t.cipher_in, &mut t.plain_in, 1).map_err(io::Error::other)?;
            // The handshake's next flight, if it has one.
            t.session.write(&mut t.plain_out, &mut t.cipher_out).map_err(io::Error::other)?;
            if !t.cipher_out.is_empty() {
                let result = (&self.tcp).write_all(&t.cipher_out);
                t.cipher_out.clear();
                result?;
            }
        }
    }
}

fn read_retrying(mut tcp: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match tcp.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}
