//! What the RESP door's unit tests share: requests as clients send them,
//! and a reader of replies that checks their framing.

pub(super) use core::net::SocketAddr;

pub(super) use crate::ballot::NodeId;
pub(super) use crate::conn::{Tally, TsRefusal};
pub(super) use crate::oracle::GetTsError;
pub(super) use crate::time::Instant;
pub(super) use crate::timestamp::{MAX_LOGICAL, Timestamp};
pub(super) use crate::wire::EncodeError;

pub(super) use super::parse::Escaped;
pub(super) use super::*;

/// A request as clients send it: an array of bulk strings.
pub(super) fn array(words: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", words.len()).into_bytes();
    for w in words {
        out.extend_from_slice(format!("${}\r\n", w.len()).as_bytes());
        out.extend_from_slice(w);
        out.extend_from_slice(b"\r\n");
    }
    out
}

pub(super) fn parse(bytes: &[u8]) -> Command<'_> {
    match Command::parse(bytes) {
        Ok(Some((cmd, used))) => {
            assert_eq!(used, bytes.len(), "{bytes:?}");
            cmd
        }
        other => panic!("{:?}: {other:?}", Escaped(bytes)),
    }
}

pub(super) fn cmd<'a>(words: &[&'a [u8]]) -> Command<'a> {
    let mut args = Args::EMPTY;
    for w in words {
        args.push(w).unwrap();
    }
    Command::from_args(&args)
}

pub(super) fn encode(reply: Reply<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    let n = reply.encode(&mut out).unwrap();
    assert_eq!(n, out.len());
    assert_eq!(n, reply.encoded_len());
    out
}

pub(super) fn reply_of(words: &[&[u8]]) -> Vec<u8> {
    let mut session = Session::new(7);
    let info = ServerInfo { node: NodeId(0), nodes: 1 };
    match session.handle(cmd(words), &info) {
        Action::Reply(r) | Action::Close(r) => encode(r),
        other => panic!("{other:?}"),
    }
}

/// A test-only RESP2 reply reader: the size of the first reply, so that
/// replies are checked to be well formed.
pub(super) fn reply_len(bytes: &[u8]) -> usize {
    let line_end = bytes.windows(2).position(|w| w == b"\r\n").expect("a CRLF") + 2;
    let line = std::str::from_utf8(&bytes[1..line_end - 2]).unwrap();
    match bytes[0] {
        b'+' | b'-' | b':' => line_end,
        b'$' => match line.parse::<i64>().unwrap() {
            -1 => line_end,
            n => {
                let end = line_end + n as usize;
                assert_eq!(&bytes[end..end + 2], b"\r\n");
                end + 2
            }
        },
        b'*' => {
            let mut pos = line_end;
            for _ in 0..line.parse::<usize>().unwrap() {
                pos += reply_len(&bytes[pos..]);
            }
            pos
        }
        other => panic!("not a reply type: {other}"),
    }
}
