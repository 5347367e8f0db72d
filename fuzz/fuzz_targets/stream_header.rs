//! The header at the start of every native data stream: never a panic, and a header that
//! decodes encodes back to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use p2p_relay_wire::header::HEADER_LEN;
use p2p_relay_wire::StreamHeader;

fuzz_target!(|data: &[u8]| {
    let Ok(bytes) = <[u8; HEADER_LEN]>::try_from(data) else {
        return;
    };
    if let Ok(header) = StreamHeader::decode(&bytes) {
        // One encoding per header: what decodes is exactly what it encodes to.
        assert_eq!(header.encode(), bytes);
    }
});
