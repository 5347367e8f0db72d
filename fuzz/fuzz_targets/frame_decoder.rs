//! The native control frame decoder, both directions: never a panic, and whatever decodes
//! encodes to what decodes the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use p2p_relay_wire::{frame, ClientFrame, ServerFrame};

fn round_trip<T>(body: &[u8])
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    if let Ok(decoded) = frame::decode::<T>(body) {
        let again = frame::encode(&decoded).expect("a decoded frame encodes");
        let back = frame::decode::<T>(&again[4..]).expect("an encoded frame decodes");
        assert_eq!(back, decoded);
    }
}

fuzz_target!(|body: &[u8]| {
    round_trip::<ClientFrame>(body);
    round_trip::<ServerFrame>(body);
});
