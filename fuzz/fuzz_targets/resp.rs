//! The RESP door's parser (`leasetso_core::resp`) on any bytes, the way a
//! server reads a pipelined stream: it never panics, never claims more
//! bytes than it was given and makes progress on every request; the words
//! `split` finds, sent again as an array of bulk strings, split into the
//! same words; and every reply the session gives encodes to exactly
//! `encoded_len` bytes.
#![no_main]

use leasetso_core::NodeId;
use leasetso_core::resp::{Action, Command, ServerInfo, Session, split};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut session = Session::new(7);
    let info = ServerInfo { node: NodeId(1), nodes: 3 };
    let mut rest = data;
    let mut out = Vec::new();
    let mut words = Vec::new();
    loop {
        let words_found = split(rest);
        let parsed = Command::parse(rest);
        let (args, consumed) = match words_found {
            Ok(Some(found)) => found,
            // `Command::parse` is `split` plus naming the command: they agree
            // on where a request ends and on which bytes are no request.
            Ok(None) => {
                assert!(matches!(parsed, Ok(None)), "split: None, parse: {parsed:?}");
                break;
            }
            Err(e) => {
                assert_eq!(parsed.err(), Some(e));
                break;
            }
        };
        assert!(consumed > 0 && consumed <= rest.len(), "consumed {consumed} of {}", rest.len());
        let Ok(Some((command, parsed_len))) = parsed else {
            panic!("split found a request of {consumed} bytes, parse: {parsed:?}");
        };
        assert_eq!(parsed_len, consumed);

        // The words as a client library would send them.
        words.clear();
        words.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
        for w in args.as_slice() {
            words.extend_from_slice(format!("${}\r\n", w.len()).as_bytes());
            words.extend_from_slice(w);
            words.extend_from_slice(b"\r\n");
        }
        match split(&words) {
            Ok(Some((again, len))) if !args.is_empty() => {
                assert_eq!(len, words.len());
                assert_eq!(again.as_slice(), args.as_slice());
            }
            // Redis reads an empty array as no request at all.
            Ok(Some((again, _))) => assert!(again.is_empty()),
            other => panic!("{args:?} sent again as an array: {other:?}"),
        }

        match session.handle(command, &info) {
            Action::Reply(reply) | Action::Close(reply) => {
                out.clear();
                let n = reply.encode(&mut out).expect("a Vec grows");
                assert_eq!(n, out.len());
                assert_eq!(n, reply.encoded_len());
            }
            Action::GetTs { count } => assert!(count > 0),
            Action::Nothing => {}
        }
        rest = &rest[consumed..];
    }
});
