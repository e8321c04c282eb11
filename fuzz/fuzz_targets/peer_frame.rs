//! The peer protocol's frame decoder (`leasetso_core::PeerFrame::decode`)
//! on any bytes: it never panics, never claims more bytes than it was
//! given, makes progress on every frame, and a decoded frame re-encodes to the
//! bytes it was decoded from, up to the bytes of unset fields, which the
//! re-encoding zeroes, and decodes again to itself (`check_decoder`).
#![no_main]

use leasetso_core::PeerFrame;
use leasetso_fuzz::check_decoder;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| check_decoder::<PeerFrame>(data));
