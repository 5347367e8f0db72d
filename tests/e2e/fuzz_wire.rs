//! Fuzz targets for the native wire decoders, as property tests over arbitrary bytes:
//! the control frame decoder (`frame::decode::<ClientFrame>`, and `ServerFrame`), the data
//! stream header (`StreamHeader::decode`), and the frame reader over arbitrary streams.
//! None may panic, and whatever decodes must encode back to what decodes the same.
//!
//! These run under plain `cargo test` everywhere. Their coverage-guided counterparts
//! (libFuzzer, the cargo-fuzz layout) are in fuzz/, built on the stable toolchain by
//! scripts/fuzz.sh, which also runs these with many more cases. These are not
//! coverage-guided, so the generators below aim at the interesting corners (valid prefixes,
//! variant tags, length fields) rather than at uniform noise only.
//!
//! Cases per target: 4096 by default; `FUZZ_CASES=1000000 cargo test --release --test
//! fuzz_wire` (or PROPTEST_CASES) runs longer.

use bytes::Bytes;
use native_client::wire::header::HEADER_LEN;
use native_client::wire::{
    frame, ClientFrame, FrameReader, ServerFrame, StreamHeader, WireAnswer, WireReply,
};
use proptest::prelude::*;

fn cases() -> u32 {
    // FUZZ_CASES, or proptest's own PROPTEST_CASES (scripts/fuzz.sh sets both).
    ["FUZZ_CASES", "PROPTEST_CASES"]
        .iter()
        .find_map(|name| std::env::var(name).ok()?.parse().ok())
        .unwrap_or(4096)
}

/// Frame bodies: uniform noise, and bodies that start with a valid variant tag (postcard
/// encodes an enum's variant as a varint index) so that the decoder gets past the first
/// byte, with varint-ish length fields inside.
fn frame_body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..512),
        (0u8..8, proptest::collection::vec(any::<u8>(), 0..256)).prop_map(|(tag, rest)| {
            let mut body = vec![tag];
            body.extend(rest);
            body
        }),
        (
            0u8..8,
            proptest::collection::vec(
                prop_oneof![Just(0u8), Just(1), Just(0x80), Just(0xff), any::<u8>()],
                0..64
            )
        )
            .prop_map(|(tag, rest)| {
                let mut body = vec![tag];
                body.extend(rest);
                body
            }),
    ]
}

/// Valid frames with arbitrary contents, mutated by one byte: decoding what is almost a
/// frame reaches deeper than noise does.
fn mutated_frame() -> impl Strategy<Value = Vec<u8>> {
    let text = "\\PC{0,40}";
    let client = prop_oneof![
        (
            any::<u16>(),
            text,
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..32))
        )
            .prop_map(|(version, client_id, credentials)| ClientFrame::Hello {
                version,
                client_id,
                credentials: credentials.map(Bytes::from),
            }),
        (any::<u64>(), text).prop_map(|(req, target)| ClientFrame::Register { req, target }),
        (
            text,
            text,
            proptest::collection::vec(any::<u8>(), 0..64),
            proptest::option::of(any::<u64>())
        )
            .prop_map(|(target, event, args, ack)| ClientFrame::Emit {
                target,
                event,
                args: Bytes::from(args),
                ack,
            }),
        (any::<u64>(), proptest::collection::vec(any::<u8>(), 0..64)).prop_map(|(ticket, args)| {
            ClientFrame::Answer {
                ticket,
                answer: WireAnswer::Ack(Bytes::from(args)),
            }
        }),
        (
            any::<u64>(),
            proptest::option::of(text),
            proptest::option::of(any::<u32>())
        )
            .prop_map(|(req, after, limit)| ClientFrame::List { req, after, limit }),
    ];
    (client, any::<prop::sample::Index>(), any::<u8>()).prop_map(|(frame, at, byte)| {
        let encoded = frame::encode(&frame).expect("a frame encodes");
        let mut body = encoded[4..].to_vec();
        if !body.is_empty() {
            let i = at.index(body.len());
            body[i] = byte;
        }
        body
    })
}

fn round_trips<T>(body: &[u8]) -> Result<(), TestCaseError>
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    if let Ok(frame) = frame::decode::<T>(body) {
        let again = frame::encode(&frame).expect("a decoded frame encodes");
        prop_assert_eq!(frame::decode::<T>(&again[4..]).expect("re-decodes"), frame);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        // Failures are kept as regression tests by hand, beside the targets.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn control_frames_never_panic_and_round_trip(body in frame_body()) {
        round_trips::<ClientFrame>(&body)?;
        round_trips::<ServerFrame>(&body)?;
    }

    #[test]
    fn almost_valid_frames_never_panic_and_round_trip(body in mutated_frame()) {
        round_trips::<ClientFrame>(&body)?;
        round_trips::<ServerFrame>(&body)?;
    }

    #[test]
    fn stream_headers_never_panic_and_round_trip(
        bytes in prop_oneof![
            proptest::array::uniform13(any::<u8>()),
            // A valid magic and version, so the id and later checks are reached.
            (any::<u64>(), any::<u8>()).prop_map(|(id, version)| {
                let mut header = StreamHeader { stream: id }.encode();
                if version % 2 == 0 {
                    header[4] = version;
                }
                header
            }),
        ]
    ) {
        let bytes: [u8; HEADER_LEN] = bytes;
        if let Ok(header) = StreamHeader::decode(&bytes) {
            prop_assert_eq!(header.encode(), bytes);
        }
    }

    #[test]
    fn the_frame_reader_never_panics_on_arbitrary_streams(
        wire in proptest::collection::vec(any::<u8>(), 0..1024),
        max in 0usize..256,
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let mut reader = FrameReader::new(&wire[..], max);
            for _ in 0..128 {
                match reader.next().await {
                    Ok(Some(body)) => {
                        assert!(body.len() <= max);
                        let _ = frame::decode::<ClientFrame>(&body);
                    }
                    Ok(None) | Err(_) => break,
                }
            }
        });
    }
}

#[test]
fn replies_with_every_variant_round_trip() {
    for reply in [
        WireReply::Registered(true),
        WireReply::Unregistered,
        WireReply::Clients {
            ids: vec!["A".into(), "é".into()],
            next: None,
        },
        WireReply::Clients {
            ids: vec!["A".into()],
            next: Some("A".into()),
        },
        WireReply::Ack(Bytes::from_static(&[0x90])),
        WireReply::StreamOpened(u64::MAX),
        WireReply::StreamRefused,
        WireReply::Failed {
            code: 3,
            message: "why".into(),
        },
    ] {
        let frame = ServerFrame::Reply { req: 7, reply };
        let encoded = frame::encode(&frame).unwrap();
        assert_eq!(frame::decode::<ServerFrame>(&encoded[4..]).unwrap(), frame);
    }
}
