//! Byte plumbing the connection threads share: refilling a read buffer and
//! closing a connection without losing the last frame sent on it.

use std::io::{self, Read};
use std::net::{Shutdown, TcpStream};

use leasetso_core::conn::{LINGER, LINGER_BYTES};
use leasetso_runtime_common::io::make_room;

/// Reads once more into `buf`, whose unread bytes are `start..end`: first
/// makes room for at least `room` bytes after them (moving them to the front
/// only when that is needed), then reads, retrying an interrupted read.
/// Returns the bytes read; 0 means the peer closed the connection. The
/// buffer is allocated once per connection: this allocates nothing.
pub(crate) fn refill(
    mut stream: &TcpStream,
    buf: &mut [u8],
    start: &mut usize,
    end: &mut usize,
    room: usize,
) -> io::Result<usize> {
    make_room(buf, start, end, room);
    loop {
        match stream.read(&mut buf[*end..]) {
            Ok(n) => {
                *end += n;
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
