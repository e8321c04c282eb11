//! The executor-independent half of reading into a connection's buffer.

/// Makes room in `buf`, whose unread bytes are `start..end`, for at least
/// `room` bytes after them before the next read: an empty buffer starts
/// over at 0, and unread bytes move to the front only when the room after
/// them is too small (so a pipelined stream of frames is rarely copied).
/// The buffer is allocated once per connection: this allocates nothing.
///
/// [`InBuf::spare`] calls it before every read.
pub fn make_room(buf: &mut [u8], start: &mut usize, end: &mut usize, room: usize) {
    if *start == *end {
        (*start, *end) = (0, 0);
    } else if buf.len() - *end < room {
        buf.copy_within(*start..*end, 0);
        (*start, *end) = (0, *end - *start);
    }
}

/// A connection's read buffer: allocated once per connection, the bytes
/// read and not yet consumed at `start..end`.
#[derive(Debug)]
pub struct InBuf {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
}

impl InBuf {
    /// An empty buffer of `size` bytes.
    pub fn new(size: usize) -> Self {
        InBuf { buf: vec![0; size].into_boxed_slice(), start: 0, end: 0 }
    }

    /// The bytes read and not consumed yet.
    pub fn pending(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Drops the first `n` pending bytes (a session consumed them).
    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
    }

    /// Room for the next read, at least `room` bytes after the pending ones
    /// ([`make_room`]); report what was read with [`InBuf::filled`].
    pub fn spare(&mut self, room: usize) -> &mut [u8] {
        make_room(&mut self.buf, &mut self.start, &mut self.end, room);
        &mut self.buf[self.end..]
    }

    /// `n` bytes were read into [`InBuf::spare`].
    pub fn filled(&mut self, n: usize) {
        self.end = (self.end + n).min(self.buf.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_in_buf_hands_out_what_was_read_until_consumed() {
        let mut b = InBuf::new(8);
        b.spare(4)[..5].copy_from_slice(b"hello");
        b.filled(5);
        assert_eq!(b.pending(), b"hello");
        b.consume(3);
        assert_eq!(b.pending(), b"lo");
        assert_eq!(b.spare(6).len(), 6, "the unread bytes moved to the front");
        assert_eq!(b.pending(), b"lo");
        b.consume(9);
        assert!(b.pending().is_empty(), "consuming past the end empties it");
    }

    #[test]
    fn moves_unread_bytes_only_when_the_room_is_short() {
        let mut buf = *b"xxabcdyy";
        let (mut start, mut end) = (2, 6);
        make_room(&mut buf, &mut start, &mut end, 2);
        assert_eq!((start, end), (2, 6), "two bytes fit after the unread ones");
        make_room(&mut buf, &mut start, &mut end, 3);
        assert_eq!((start, end), (0, 4));
        assert_eq!(&buf[..4], b"abcd");
        let (mut start, mut end) = (5, 5);
        make_room(&mut buf, &mut start, &mut end, 8);
        assert_eq!((start, end), (0, 0), "an empty buffer starts over");
    }
}
