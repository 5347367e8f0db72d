//! The translation of event arguments between the transports, from both ends:
//!
//! * first byte even: the rest is a native client's MessagePack arguments, converted for a
//!   Socket.IO peer (`Payload::into_json_values`); what converts must encode again and be
//!   accepted again;
//! * first byte odd: the rest is a Socket.IO packet as a client may send it, JSON text up to
//!   the first 0xFF byte, then binary attachments separated by 0xFE, read by the gateway
//!   (`event_args`).
//!
//! Nothing may panic.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use relay_core::payload::encode_args;
use relay_core::Payload;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        let payload = Payload::MsgPack(Bytes::copy_from_slice(rest));
        if let Ok(values) = payload.into_json_values() {
            let again = encode_args(&values);
            assert!(Payload::MsgPack(again).into_json_values().is_ok());
        }
    } else {
        let (text, attachments) = match rest.iter().position(|&b| b == 0xff) {
            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
            None => (rest, None),
        };
        let text = String::from_utf8_lossy(text).into_owned();
        let attachments = attachments.map(|a| {
            a.split(|&b| b == 0xfe)
                .map(Bytes::copy_from_slice)
                .collect::<std::collections::VecDeque<_>>()
        });
        let _ = gateway_socketio::event_args(&socketioxide_core::Value::Str(
            text.into(),
            attachments,
        ));
    }
});
