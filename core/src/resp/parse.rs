//! Framing: the first request's words off a byte stream, within the
//! door's limits, or the protocol violation that puts the stream out of step.

use core::fmt;

/// The longest bulk string a request may carry. Longer is [`RespError::BulkTooLong`].
pub const MAX_BULK: usize = 64;
/// The most words (command name included) a request may have. More is
/// [`RespError::TooManyArgs`].
pub const MAX_ARGS: usize = 8;
/// The longest inline command line, newline included. Longer is
/// [`RespError::InlineTooLong`].
pub const MAX_INLINE: usize = 1024;
/// Any input at least this long parses to a command or an error, never to
/// "need more bytes": the read buffer room a runtime keeps free. (The longest
/// array request within the limits is 572 bytes; an inline line is cut off at
/// [`MAX_INLINE`].)
pub const MAX_COMMAND_LEN: usize = MAX_INLINE;
/// Digits a length line may have: enough for any limit, short of overflow.
const MAX_DIGITS: usize = 18;

/// Why bytes are not a request. The connection that sent them is out of step
/// with the protocol: a server answers `-ERR Protocol error: <this>` and closes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RespError {
    /// A request that starts with neither `*` nor a command name.
    #[error("expected '*' or a command name, got byte {0:#04x}")]
    BadType(u8),
    /// An array element that is not a bulk string.
    #[error("expected '$', got byte {0:#04x}")]
    ExpectedBulk(u8),
    /// An array length that is not a number.
    #[error("invalid multibulk length")]
    BadArrayLen,
    /// A bulk length that is not a number, or is negative.
    #[error("invalid bulk length")]
    BadBulkLen,
    /// A bulk length over [`MAX_BULK`], or an inline word as long.
    #[error("bulk string over the limit of {max} bytes")]
    BulkTooLong {
        /// The limit.
        max: usize,
    },
    /// More than [`MAX_ARGS`] words.
    #[error("more than {max} arguments")]
    TooManyArgs {
        /// The limit.
        max: usize,
    },
    /// A length line or bulk string not ended by CRLF.
    #[error("missing CRLF")]
    MissingCrlf,
    /// An inline line of [`MAX_INLINE`] bytes without a newline.
    #[error("too big inline request (over {max} bytes)")]
    InlineTooLong {
        /// The limit.
        max: usize,
    },
}

/// The words of one request, borrowed from the input: a fixed array, so
/// parsing allocates nothing.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Args<'a> {
    items: [&'a [u8]; MAX_ARGS],
    len: usize,
}

impl<'a> Args<'a> {
    pub(super) const EMPTY: Args<'static> = Args { items: [&[]; MAX_ARGS], len: 0 };

    /// The words, in order.
    pub fn as_slice(&self) -> &[&'a [u8]] {
        &self.items[..self.len]
    }

    /// How many words.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none (an empty request).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The words from `from` on (none if `from` is past the end).
    pub(super) fn tail(&self, from: usize) -> Args<'a> {
        let mut out = Args::EMPTY;
        for (i, item) in self.as_slice().iter().skip(from).enumerate() {
            out.items[i] = item;
        }
        out.len = self.len.saturating_sub(from);
        out
    }

    pub(super) fn push(&mut self, item: &'a [u8]) -> Result<(), RespError> {
        let slot = self.items.get_mut(self.len).ok_or(RespError::TooManyArgs { max: MAX_ARGS })?;
        *slot = item;
        self.len += 1;
        Ok(())
    }

    pub(super) fn get(&self, i: usize) -> Option<&'a [u8]> {
        self.as_slice().get(i).copied()
    }
}

impl fmt::Debug for Args<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.as_slice().iter().map(|a| Escaped(a))).finish()
    }
}

/// Bytes shown as text where printable (for `Debug`).
pub(super) struct Escaped<'a>(pub(super) &'a [u8]);

impl fmt::Debug for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"")?;
        for &b in self.0 {
            if (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\' {
                f.write_fmt(format_args!("{}", b as char))?;
            } else {
                f.write_fmt(format_args!("\\x{b:02x}"))?;
            }
        }
        f.write_str("\"")
    }
}

/// A non-negative decimal number as Redis writes one: digits only, no sign,
/// no leading zero (except `0` itself).
pub(super) fn parse_uint(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() || bytes.len() > MAX_DIGITS || (bytes.len() > 1 && bytes[0] == b'0') {
        return None;
    }
    bytes.iter().try_fold(0u64, |v, &b| b.is_ascii_digit().then(|| v * 10 + u64::from(b - b'0')))
}

/// A decimal number with an optional `-`.
pub(super) fn parse_int(bytes: &[u8]) -> Option<i64> {
    match bytes.split_first() {
        Some((b'-', digits)) => parse_uint(digits).map(|v| -(v as i64)),
        // At most 18 digits: below i64::MAX.
        _ => parse_uint(bytes).map(|v| v as i64),
    }
}

/// Splits the first request off `bytes` into its words, without
/// interpreting them (see [`Command::parse`](super::Command::parse)).
pub fn split(bytes: &[u8]) -> Result<Option<(Args<'_>, usize)>, RespError> {
    match bytes.first() {
        None => Ok(None),
        Some(b'*') => split_array(bytes),
        Some(&b) if b.is_ascii_alphabetic() || matches!(b, b' ' | b'\t' | b'\r' | b'\n') => {
            split_inline(bytes)
        }
        Some(&b) => Err(RespError::BadType(b)),
    }
}

/// Which length line is being read, for its limit and its error.
#[derive(Clone, Copy)]
enum LenLine {
    Array,
    Bulk,
}

/// Reads a length line starting at `pos` (after its type byte): an optional
/// `-`, digits, CRLF. Returns the number and the position after the CRLF.
/// Refuses a value over the limit as soon as its digits show it.
fn len_line(bytes: &[u8], mut pos: usize, kind: LenLine) -> Result<Option<(i64, usize)>, RespError> {
    let (bad, limit, over) = match kind {
        LenLine::Array => (RespError::BadArrayLen, MAX_ARGS, RespError::TooManyArgs { max: MAX_ARGS }),
        LenLine::Bulk => (RespError::BadBulkLen, MAX_BULK, RespError::BulkTooLong { max: MAX_BULK }),
    };
    let negative = bytes.get(pos) == Some(&b'-');
    if negative {
        if matches!(kind, LenLine::Bulk) {
            // A null bulk string ($-1) is no word of a request.
            return Err(bad);
        }
        pos += 1;
    }
    let mut value: i64 = 0;
    let mut digits = 0;
    loop {
        let Some(&b) = bytes.get(pos) else {
            return Ok(None);
        };
        match b {
            b'0'..=b'9' => {
                if digits == MAX_DIGITS || (digits == 1 && value == 0) {
                    // Too many digits, or a leading zero.
                    return Err(bad);
                }
                value = value * 10 + i64::from(b - b'0');
                digits += 1;
                if !negative && value > limit as i64 {
                    return Err(over);
                }
            }
            b'\r' if digits > 0 => break,
            _ => return Err(bad),
        }
        pos += 1;
    }
    match bytes.get(pos + 1) {
        None => Ok(None),
        Some(b'\n') => Ok(Some((if negative { -value } else { value }, pos + 2))),
        Some(_) => Err(RespError::MissingCrlf),
    }
}

fn split_array(bytes: &[u8]) -> Result<Option<(Args<'_>, usize)>, RespError> {
    let Some((n, mut pos)) = len_line(bytes, 1, LenLine::Array)? else {
        return Ok(None);
    };
    // Redis reads an empty or negative array as no request at all.
    let n = usize::try_from(n).unwrap_or(0);
    let mut args = Args::EMPTY;
    for _ in 0..n {
        match bytes.get(pos) {
            None => return Ok(None),
            Some(b'$') => {}
            Some(&b) => return Err(RespError::ExpectedBulk(b)),
        }
        let Some((len, start)) = len_line(bytes, pos + 1, LenLine::Bulk)? else {
            return Ok(None);
        };
        // `len_line` refused negative bulk lengths.
        let end = start + len as usize;
        match (bytes.get(end), bytes.get(end + 1)) {
            (Some(b'\r'), Some(b'\n')) => {}
            (Some(b'\r'), None) | (None, _) => return Ok(None),
            _ => return Err(RespError::MissingCrlf),
        }
        args.push(&bytes[start..end])?;
        pos = end + 2;
    }
    Ok(Some((args, pos)))
}

fn split_inline(bytes: &[u8]) -> Result<Option<(Args<'_>, usize)>, RespError> {
    let window = &bytes[..bytes.len().min(MAX_INLINE)];
    let Some(newline) = window.iter().position(|&b| b == b'\n') else {
        if bytes.len() >= MAX_INLINE {
            return Err(RespError::InlineTooLong { max: MAX_INLINE });
        }
        return Ok(None);
    };
    let mut args = Args::EMPTY;
    for word in bytes[..newline].split(|b| matches!(b, b' ' | b'\t' | b'\r')).filter(|w| !w.is_empty()) {
        if word.len() > MAX_BULK {
            return Err(RespError::BulkTooLong { max: MAX_BULK });
        }
        args.push(word)?;
    }
    Ok(Some((args, newline + 1)))
}

#[cfg(test)]
mod tests {
    use crate::resp::fixtures::*;

    #[test]
    fn protocol_violations() {
        let err = |bytes: &[u8]| Command::parse(bytes).map(|r| r.map(|(_, n)| n));
        assert_eq!(err(b"+OK\r\n"), Err(RespError::BadType(b'+')));
        assert_eq!(err(b"$3\r\nTSO\r\n"), Err(RespError::BadType(b'$')));
        assert_eq!(err(b"\x00\x01"), Err(RespError::BadType(0)));
        assert_eq!(err(b"7"), Err(RespError::BadType(b'7')));
        assert_eq!(err(b"*1\r\n:3\r\n"), Err(RespError::ExpectedBulk(b':')));
        assert_eq!(err(b"*x\r\n"), Err(RespError::BadArrayLen));
        assert_eq!(err(b"*\r\n"), Err(RespError::BadArrayLen));
        assert_eq!(err(b"*01\r\n"), Err(RespError::BadArrayLen));
        assert_eq!(err(b"*1\n"), Err(RespError::BadArrayLen));
        assert_eq!(err(b"*-1234567890123456789"), Err(RespError::BadArrayLen));
        assert_eq!(err(b"*9"), Err(RespError::TooManyArgs { max: MAX_ARGS }));
        assert_eq!(err(b"*1000000\r\n"), Err(RespError::TooManyArgs { max: MAX_ARGS }));
        assert_eq!(err(b"*1\r\n$-1\r\n"), Err(RespError::BadBulkLen));
        assert_eq!(err(b"*1\r\n$x\r\n"), Err(RespError::BadBulkLen));
        assert_eq!(err(b"*1\r\n$03\r\n"), Err(RespError::BadBulkLen));
        assert_eq!(err(b"*1\r\n$65"), Err(RespError::BulkTooLong { max: MAX_BULK }));
        assert_eq!(err(b"*1\r\n$99999999999999999999999"), Err(RespError::BulkTooLong { max: MAX_BULK }));
        assert_eq!(err(b"*1\r\n$3\rX"), Err(RespError::MissingCrlf));
        assert_eq!(err(b"*1\r\n$3\r\nTSOxx"), Err(RespError::MissingCrlf));
        assert_eq!(err(b"*1\r\n$3\r\nTSO\rx"), Err(RespError::MissingCrlf));
        assert_eq!(err(b"*1\rx"), Err(RespError::MissingCrlf));
        let long_word = [b'a'; MAX_BULK + 1];
        assert_eq!(err(&[&long_word[..], b"\r\n"].concat()), Err(RespError::BulkTooLong { max: MAX_BULK }));
        assert_eq!(err(b"a b c d e f g h i\r\n"), Err(RespError::TooManyArgs { max: MAX_ARGS }));
        assert_eq!(err(&[b'a'; MAX_INLINE]), Err(RespError::InlineTooLong { max: MAX_INLINE }));
        assert_eq!(err(&[b' '; MAX_INLINE - 1]), Ok(None));
        // Limits themselves are fine.
        let words: Vec<&[u8]> = vec![&[b'x'; MAX_BULK][..]; MAX_ARGS];
        let biggest = array(&words);
        assert!(biggest.len() <= MAX_COMMAND_LEN);
        assert!(matches!(parse(&biggest), Command::Invalid(ErrorReply::UnknownCommand { .. })));
    }

    #[test]
    fn pipelined_commands_in_one_buffer() {
        let mut buf = array(&[b"TSO"]);
        buf.extend_from_slice(b"PING\r\n");
        buf.extend_from_slice(&array(&[b"TSO", b"100"]));
        buf.extend_from_slice(b"\r\n");
        buf.extend_from_slice(&array(&[b"GET", b"k"]));
        buf.extend_from_slice(&array(&[b"QUIT"]));
        buf.extend_from_slice(b"*1\r\n$4\r\nPI");
        let mut rest = &buf[..];
        let mut seen = Vec::new();
        while let Some((cmd, used)) = Command::parse(rest).unwrap() {
            seen.push(cmd);
            rest = &rest[used..];
        }
        assert_eq!(rest, b"*1\r\n$4\r\nPI");
        assert_eq!(seen.len(), 6);
        assert_eq!(seen[0], Command::Tso { count: 1 });
        assert_eq!(seen[1], Command::Ping { message: None });
        assert_eq!(seen[2], Command::Tso { count: 100 });
        assert_eq!(seen[3], Command::Empty);
        assert!(matches!(seen[4], Command::Invalid(ErrorReply::UnknownCommand { .. })));
        assert_eq!(seen[5], Command::Quit);
    }

    #[test]
    fn every_cut_asks_for_more() {
        let requests: Vec<Vec<u8>> = vec![
            array(&[b"TSO"]),
            array(&[b"TSO", b"100"]),
            array(&[b"CLIENT", b"SETINFO", b"LIB-NAME", b"redis-py"]),
            array(&[b"ECHO", &[0u8, 13, 10, 255][..]]),
            array(&[&[b'y'; MAX_BULK][..]; MAX_ARGS]),
            b"PING\r\n".to_vec(),
            b"TSO 5\n".to_vec(),
        ];
        for request in requests {
            for cut in 0..request.len() {
                assert_eq!(Command::parse(&request[..cut]), Ok(None), "{:?} cut at {cut}", Escaped(&request));
            }
            assert!(Command::parse(&request).unwrap().is_some());
        }
    }

    mod props {
        use proptest::prelude::*;

        use crate::resp::fixtures::*;

        proptest! {
            #[test]
            fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1500)) {
                match Command::parse(&bytes) {
                    Ok(Some((cmd, used))) => {
                        prop_assert!(used > 0 && used <= bytes.len());
                        if let Command::Invalid(e) = cmd {
                            let _ = Reply::Error(e).encoded_len();
                        }
                    }
                    Ok(None) => prop_assert!(bytes.len() < MAX_COMMAND_LEN),
                    Err(e) => {
                        let text = {
                            let mut out = Vec::new();
                            Reply::Error(ErrorReply::Protocol(e)).encode(&mut out).unwrap();
                            out
                        };
                        prop_assert!(text.starts_with(b"-ERR Protocol error: "));
                    }
                }
            }

            #[test]
            fn plausible_prefixes_never_panic(
                head in prop::sample::select(vec![&b"*"[..], &b"*2\r\n$"[..], &b"*1\r\n$3\r\n"[..], &b"TSO "[..], &b"*3\r\n$3\r\nTSO\r\n$"[..]]),
                tail in proptest::collection::vec(prop::sample::select(b"*$\r\n-0123456789TSOtso \x00".to_vec()), 0..80),
            ) {
                let bytes = [head, &tail[..]].concat();
                if let Ok(Some((_, used))) = Command::parse(&bytes) {
                    prop_assert!(used > 0 && used <= bytes.len());
                }
            }

            #[test]
            fn arrays_of_words_split_back(
                words in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..=MAX_BULK), 1..=MAX_ARGS),
                trailing in proptest::collection::vec(any::<u8>(), 0..8),
            ) {
                let words: Vec<&[u8]> = words.iter().map(Vec::as_slice).collect();
                let request = array(&words);
                let (args, used) = split(&request).unwrap().unwrap();
                prop_assert_eq!(used, request.len());
                prop_assert_eq!(args.as_slice(), &words[..]);
                // Whatever follows does not change the first request.
                let more = [&request[..], &trailing[..]].concat();
                let (again, used) = split(&more).unwrap().unwrap();
                prop_assert_eq!(used, request.len());
                prop_assert_eq!(again.as_slice(), &words[..]);
                let cut = (trailing.len() * 7919) % request.len();
                prop_assert_eq!(split(&request[..cut]), Ok(None));
            }

            #[test]
            fn tso_counts(count in 0u64..400_000) {
                let text = count.to_string();
                let cmd = Command::from_args(&{
                    let mut a = Args::EMPTY;
                    a.push(b"TSO").unwrap();
                    a.push(text.as_bytes()).unwrap();
                    a
                });
                let expected = match count {
                    0 => Command::Invalid(ErrorReply::ZeroCount),
                    c if c >= u64::from(MAX_LOGICAL) => Command::Invalid(ErrorReply::CountTooLarge),
                    c => Command::Tso { count: c as u32 },
                };
                prop_assert_eq!(cmd, expected);
            }
        }
    }
}
