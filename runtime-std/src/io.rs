//! Byte plumbing the connection threads share: refilling a read buffer and
//! closing a connection without losing the last frame sent on it.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};

use leasetso_core::conn::{LINGER, LINGER_BYTES};
use leasetso_runtime_common::io::InBuf;

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
