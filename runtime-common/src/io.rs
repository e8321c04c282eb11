//! The executor-independent half of reading into a connection's buffer.

/// Makes room in `buf`, whose unread bytes are `start..end`, for at least
/// `room` bytes after them before the next read: an empty buffer starts
/// over at 0, and unread bytes move to the front only when the room after
/// them is too small (so a pipelined stream of frames is rarely copied).
/// The buffer is allocated once per connection: this allocates nothing.
///
/// Both runtimes' `refill` (a blocking or an async read) call this and then
/// read into `buf[*end..]`.
pub fn make_room(buf: &mut [u8], start: &mut usize, end: &mut usize, room: usize) {
    if *start == *end {
        (*start, *end) = (0, 0);
    } else if buf.len() - *end < room {
        buf.copy_within(*start..*end, 0);
        (*start, *end) = (0, *end - *start);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
