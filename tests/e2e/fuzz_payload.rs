//! Fuzz targets for the translation of event arguments between the two transports, as
//! property tests: arbitrary JSON-ish values with binary anywhere, carried as a `Payload`
//! in both wire forms (the native MessagePack array, and the Socket.IO packet of JSON text
//! with placeholders plus binary attachments, encoded by socketioxide's own parser and read
//! back by the gateway's `event_args`); and arbitrary bytes and text fed to both readers.
//! Nothing may panic; whatever both forms can carry must come back the same.
//!
//! proptest rather than cargo-fuzz: see `tests/e2e/fuzz_wire.rs`. Cases per target: 2048 by
//! default; `FUZZ_CASES=100000 cargo test --release --test e2e fuzz_payload::` runs longer.

use gateway_socketio::{event_args, Args, ArgsError, MAX_NESTING};
use proptest::prelude::*;
use relay_core::payload::{decode_args, encode_args};
use relay_core::rmpv::Value;
use relay_core::{NotJson, Payload};
use socketioxide_core::parser::Parse;
use socketioxide_parser_common::CommonParser;

fn cases() -> u32 {
    // FUZZ_CASES, or proptest's own PROPTEST_CASES (scripts/fuzz.sh sets both).
    ["FUZZ_CASES", "PROPTEST_CASES"]
        .iter()
        .find_map(|name| std::env::var(name).ok()?.parse().ok())
        .unwrap_or(2048)
}

/// A value JSON with binary can carry, as a Socket.IO client would send it: string keys
/// (never `_placeholder`, which Socket.IO reserves), finite floats that JSON text carries
/// exactly, any strings, binary anywhere.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Nil),
        any::<bool>().prop_map(Value::Boolean),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<i32>().prop_map(|n| Value::F64(f64::from(n) / 1024.0)),
        "\\PC{0,12}".prop_map(Value::from),
        proptest::collection::vec(any::<u8>(), 0..24).prop_map(Value::Binary),
    ];
    leaf.prop_recursive(6, 96, 5, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            proptest::collection::vec(("[a-z_]{0,8}|\\PC{0,6}", inner), 0..5).prop_map(|entries| {
                Value::Map(
                    entries
                        .into_iter()
                        .filter(|(k, _)| k != "_placeholder")
                        .map(|(k, v)| (Value::from(k), v))
                        .collect(),
                )
            }),
        ]
    })
}

/// The Socket.IO packet socketioxide sends for `event(values...)`, as the gateway's
/// extractor receives one (JSON text plus attachments).
fn socketio_form(values: &[Value]) -> socketioxide_core::Value {
    CommonParser
        .encode_value(&Args(values.to_vec()), Some("e"))
        .expect("socketioxide encodes JSON-ish values")
}

/// Equal up to what the trip through JSON text changes: every float becomes an f64, equal
/// within an ulp or two (serde_json reads floats fast, not exactly) or, for an f32, in f32
/// precision; integers compare by value.
fn same(a: &Value, b: &Value) -> bool {
    let float = |v: &Value| match v {
        Value::F32(f) => Some(f64::from(*f)),
        Value::F64(f) => Some(*f),
        _ => None,
    };
    match (a, b) {
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Map(x), Value::Map(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((ka, va), (kb, vb))| same(ka, kb) && same(va, vb))
        }
        (Value::Integer(x), Value::Integer(y)) => {
            x.as_i64() == y.as_i64() && x.as_u64() == y.as_u64()
        }
        // An f32 is written as the shortest text that reads back as that f32, and read
        // back as an f64: equal in f32 precision.
        (Value::F32(x), other) | (other, Value::F32(x)) if float(other).is_some() => {
            float(other).map(|y| y as f32) == Some(*x)
        }
        _ => match (float(a), float(b)) {
            (Some(x), Some(y)) => {
                x == y || (x - y).abs() <= 4.0 * f64::EPSILON * x.abs().max(y.abs())
            }
            _ => a == b,
        },
    }
}

fn depth(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Map(entries) => 1 + entries.iter().map(|(_, v)| depth(v)).max().unwrap_or(0),
        _ => 0,
    }
}

/// MessagePack with the markers that matter most often: containers, strings, binary,
/// floats, and a valid array header first.
fn msgpack_bytes() -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![
        any::<u8>(),
        prop::sample::select(vec![
            0x80, 0x81, 0x82, 0x90, 0x91, 0x92, 0xa0, 0xa1, 0xc0, 0xc2, 0xc3, 0xc4, 0xca, 0xcb,
            0xd4, 0xdc, 0xde, 0xff, 0x7f, 0x00, 0x01,
        ]),
    ];
    (0u8..16, proptest::collection::vec(byte, 0..128)).prop_map(|(len, rest)| {
        let mut bytes = vec![0x90 | len];
        bytes.extend(rest);
        bytes
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        // Failures are kept as regression tests by hand, beside the targets.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Values from a Socket.IO client reach a native client and come back the same; and
    /// the Socket.IO form socketioxide writes is read back the same by the gateway.
    #[test]
    fn json_values_round_trip_through_both_wire_forms(values in proptest::collection::vec(json_value(), 0..6)) {
        let encoded = Payload::Values(values.clone()).into_msgpack();
        prop_assert!(Payload::Values(values.clone()).size() >= encoded.len());
        let back = Payload::MsgPack(encoded.clone()).into_json_values().expect("JSON-ish values convert");
        prop_assert_eq!(&back, &values);
        prop_assert_eq!(decode_args(&encoded).unwrap(), values.clone());
        let read = event_args(&socketio_form(&values)).expect("the gateway reads socketioxide's packet");
        prop_assert!(read.len() == values.len() && read.iter().zip(&values).all(|(a, b)| same(a, b)),
            "{:?} != {:?}", read, values);
    }

    /// Arbitrary MessagePack from a native client: converting it for a Socket.IO peer
    /// never panics, and what converts travels as a Socket.IO packet and back unchanged.
    #[test]
    fn arbitrary_msgpack_converts_or_is_refused(bytes in msgpack_bytes()) {
        let payload = Payload::MsgPack(bytes::Bytes::from(bytes));
        let Ok(values) = payload.clone().into_json_values() else { return Ok(()) };
        // Native to native is untouched; re-encoding what decoded is accepted again.
        let again = encode_args(&values);
        prop_assert!(Payload::MsgPack(again).into_json_values().is_ok());
        match event_args(&socketio_form(&values)) {
            Ok(read) => prop_assert!(
                read.len() == values.len() && read.iter().zip(&values).all(|(a, b)| same(a, b)),
                "{:?} != {:?}", read, values
            ),
            Err(ArgsError::TooDeep) => prop_assert!(values.iter().map(depth).max().unwrap_or(0) + 1 >= MAX_NESTING),
            Err(e) => prop_assert!(false, "{e} for {values:?}"),
        }
    }

    /// Arbitrary text and attachments, as a client may send them: never a panic.
    #[test]
    fn arbitrary_packets_never_panic(
        text in prop_oneof![
            "\\[\"e\",[\\[\\]{}\",:0-9a-z_.eE+\\- ]{0,200}\\]",
            "[\\[\\]{}\",:0-9a-z_.eE+\\-tnul ]{0,200}",
            (1usize..300).prop_map(|n| format!("[\"e\",{}1{}]", "[".repeat(n), "]".repeat(n))),
            (0u64..6, 0u64..4).prop_map(|(num, n)| format!(
                "[\"e\",{}]",
                vec![format!("{{\"_placeholder\":true,\"num\":{num}}}"); n as usize].join(",")
            )),
        ],
        attachments in proptest::option::of(proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..8), 0..4)),
    ) {
        let attachments = attachments.map(|a| a.into_iter().map(bytes::Bytes::from).collect());
        let _ = event_args(&socketioxide_core::Value::Str(text.into(), attachments));
    }
}

/// Regression: an object with `"_placeholder": true` from a native client would be read
/// by a Socket.IO receiver as a binary attachment; it is refused instead.
#[test]
fn a_native_placeholder_lookalike_is_refused() {
    // [{"_placeholder": true, "num": 0}, bin]
    let mut bytes = vec![0x92, 0x82, 0xac];
    bytes.extend_from_slice(b"_placeholder");
    bytes.extend_from_slice(&[0xc3, 0xa3, b'n', b'u', b'm', 0x00, 0xc4, 0x01, 0x07]);
    let refused = Payload::MsgPack(bytes::Bytes::from(bytes)).into_json_values();
    assert_eq!(refused.unwrap_err(), NotJson::PlaceholderLookalike);
}
