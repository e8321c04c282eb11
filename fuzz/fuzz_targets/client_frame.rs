//! The client protocol's frame decoder (`leasetso_core::Frame::decode`) on
//! any bytes: it never panics, never claims more bytes than it was given,
//! makes progress on every frame, and a decoded frame re-encodes to the
//! bytes it was decoded from, up to the bytes of unset fields, which the
//! re-encoding zeroes, and decodes again to itself.
#![no_main]

use leasetso_core::Frame;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    // The way a server reads a pipelined stream: frame after frame until
    // bytes run out or an error closes the connection.
    while let Ok(Some((frame, consumed))) = Frame::decode(rest) {
        assert!(consumed > 0 && consumed <= rest.len(), "consumed {consumed} of {}", rest.len());
        assert_eq!(frame.encoded_len(), consumed, "{frame:?}");
        let mut again = Vec::with_capacity(consumed);
        assert_eq!(frame.encode(&mut again), Ok(consumed), "{frame:?}");
        // The same bytes, except where the input held a value in a field the
        // frame leaves unset (the lease of a Promise without one, the ip of
        // an absent address, the rest of an IPv4 address): the protocol has
        // senders zero those bytes and receivers do not look at them, so the
        // re-encoding has zeros there and only there.
        for (i, (&got, &sent)) in again.iter().zip(&rest[..consumed]).enumerate() {
            assert!(got == sent || got == 0, "{frame:?} re-encodes byte {i} {sent:#04x} as {got:#04x}");
        }
        assert_eq!(
            Frame::decode(&again),
            Ok(Some((frame, consumed))),
            "the re-encoding decodes to another frame"
        );
        // Every strict prefix of a frame asks for more bytes.
        for cut in [0, consumed / 2, consumed - 1] {
            assert_eq!(Frame::decode(&rest[..cut]), Ok(None), "{frame:?} cut at {cut}");
        }
        rest = &rest[consumed..];
    }
});
