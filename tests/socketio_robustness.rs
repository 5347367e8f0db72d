//! What the Socket.IO gateway does with inputs a well-behaved client never sends, checked
//! on the wire with a bare Socket.IO client (`tests/sio`) and, for payloads that cross
//! transports, a raw native client: the relay in this process.

mod common;
mod sio;

use common::Relay;
use native_client::wire::{ClientFrame, ServerFrame, WireAnswer, WireReply};
use native_client::ErrorCode;
use serde_json::{json, Value};
use sio::{Packet, Sio};

/// `[{nil: 1}]` in MessagePack: a map key JSON cannot express.
const NIL_KEYED: &[u8] = &[0x91, 0x81, 0xc0, 0x01];

/// Pairs the raw native client `raw` (as `native`) with the Socket.IO client `sio`.
async fn pair_native_with_sio(raw: &mut common::Raw, sio: &mut Sio, target: &str) {
    raw.send(&ClientFrame::Register {
        req: 1,
        target: target.into(),
    })
    .await;
    match sio.event("P2P_REGISTER").await {
        Packet::Event { ack: Some(id), .. } => sio.answer(id, &[json!(true)]).await,
        other => panic!("expected a pairing question, got {other:?}"),
    }
    assert_eq!(
        raw.next().await,
        ServerFrame::Reply {
            req: 1,
            reply: WireReply::Registered(true)
        }
    );
}

#[tokio::test]
async fn native_arguments_json_cannot_express_are_refused_to_their_sender() {
    let relay = Relay::start(&[]).await;
    let mut s = Sio::connect(relay.socketio_addr(), "S").await;
    let mut n = relay.raw("N").await;
    pair_native_with_sio(&mut n, &mut s, "S").await;

    let expected = "could not deliver 'e' to 'S', a Socket.IO client: its arguments have no \
                    JSON form: a map key is nil; JSON object keys are strings (integer and \
                    boolean keys are turned into strings, other keys cannot be)";
    // Without an ack: the sender is told.
    n.send(&ClientFrame::Emit {
        target: "S".into(),
        event: "e".into(),
        args: common::msgpack(NIL_KEYED),
        ack: None,
    })
    .await;
    assert_eq!(
        n.next().await,
        ServerFrame::ServerError {
            code: Some(ErrorCode::Invalid.as_u16()),
            message: expected.into()
        }
    );
    // With an ack: told, and the ack answered.
    n.send(&ClientFrame::Emit {
        target: "S".into(),
        event: "e".into(),
        args: common::msgpack(NIL_KEYED),
        ack: Some(2),
    })
    .await;
    assert_eq!(
        n.next().await,
        ServerFrame::ServerError {
            code: Some(ErrorCode::Invalid.as_u16()),
            message: expected.into()
        }
    );
    assert_eq!(
        n.next().await,
        ServerFrame::Reply {
            req: 2,
            reply: WireReply::Failed {
                code: ErrorCode::Invalid.as_u16(),
                message: expected.into()
            }
        }
    );
    // The receiver heard nothing of either and is served on: the next emit arrives, and
    // its own requests are answered.
    n.send(&ClientFrame::Emit {
        target: "S".into(),
        event: "fine".into(),
        args: common::msgpack(&[0x91, 0x81, 0x01, 0x02]),
        ack: None,
    })
    .await;
    match s.next().await {
        Packet::Event { name, args, .. } => {
            assert_eq!(name, "fine");
            assert_eq!(args, vec![json!({"1": 2})]);
        }
        other => panic!("expected the next emit, got {other:?}"),
    }
    assert_eq!(
        s.request("LIST_CLIENTS", &[]).await,
        vec![json!(["N", "S"])]
    );
    relay.shutdown().await;
}

#[tokio::test]
async fn a_native_ack_json_cannot_express_answers_the_socketio_request() {
    let relay = Relay::start(&[]).await;
    let mut s = Sio::connect(relay.socketio_addr(), "S").await;
    let mut n = relay.raw("N").await;
    pair_native_with_sio(&mut n, &mut s, "S").await;

    let payload = json!({"targetClientId": "N", "event": "question", "args": [1]});
    let id = s
        .emit_raw("P2P_EMIT_ACKNOWLEDGE", &payload.to_string(), true)
        .await
        .unwrap();
    let ticket = match n.next().await {
        ServerFrame::Deliver {
            event,
            ticket: Some(ticket),
            ..
        } if event == "question" => ticket,
        other => panic!("expected the question, got {other:?}"),
    };
    n.send(&ClientFrame::Answer {
        ticket,
        answer: WireAnswer::Ack(common::msgpack(NIL_KEYED)),
    })
    .await;
    let expected = "the ack from 'N' cannot reach 'S', a Socket.IO client: its arguments have \
                    no JSON form: a map key is nil; JSON object keys are strings (integer and \
                    boolean keys are turned into strings, other keys cannot be)";
    // The Socket.IO request is answered with {error}, and the native client told.
    assert_eq!(s.ack(id).await, vec![json!({ "error": expected })]);
    assert_eq!(
        n.next().await,
        ServerFrame::ServerError {
            code: Some(ErrorCode::Invalid.as_u16()),
            message: expected.into()
        }
    );
    // Both are served on.
    assert_eq!(
        s.request("LIST_CLIENTS", &[]).await,
        vec![Value::from(vec!["N", "S"])]
    );
    assert_eq!(n.list(9).await, vec!["N", "S"]);
    relay.shutdown().await;
}

/// `args` with every placeholder replaced by its attachment's bytes (as a JSON string of
/// the bytes, for comparison).
fn resolved(args: &[Value], attachments: &[Vec<u8>]) -> Vec<Value> {
    fn walk(value: &Value, attachments: &[Vec<u8>]) -> Value {
        match value {
            Value::Object(map) if map.get("_placeholder") == Some(&json!(true)) => {
                let num = map["num"].as_u64().expect("num") as usize;
                json!({ "bytes": String::from_utf8_lossy(&attachments[num]) })
            }
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), walk(v, attachments)))
                    .collect(),
            ),
            Value::Array(items) => {
                Value::Array(items.iter().map(|v| walk(v, attachments)).collect())
            }
            other => other.clone(),
        }
    }
    args.iter().map(|v| walk(v, attachments)).collect()
}

fn emit_payload(target: &str, event: &str, args: &str) -> String {
    format!(
        "{{\"targetClientId\":{},\"event\":{},\"args\":{args}}}",
        Value::from(target),
        Value::from(event)
    )
}

#[tokio::test]
async fn binary_placeholders_bind_to_the_attachment_they_name() {
    let relay = Relay::start(&[]).await;
    let mut a = Sio::connect(relay.socketio_addr(), "A").await;
    let mut b = Sio::connect(relay.socketio_addr(), "B").await;
    a.pair_with(&mut b, "B").await;

    let args = r#"[{"_placeholder":true,"num":1},{"k":{"_placeholder":true,"num":0}}]"#;
    a.emit_binary(
        "P2P_EMIT",
        &emit_payload("B", "bin", args),
        &[b"AA", b"BB"],
        false,
    )
    .await;
    match b.event("bin").await {
        Packet::Event {
            args, attachments, ..
        } => assert_eq!(
            resolved(&args, &attachments),
            vec![json!({"bytes": "BB"}), json!({"k": {"bytes": "AA"}})]
        ),
        other => panic!("{other:?}"),
    }

    // A num past the attachments is refused, with the request answered.
    let args = r#"[{"_placeholder":true,"num":0},{"_placeholder":true,"num":2}]"#;
    let id = a
        .emit_binary(
            "P2P_EMIT_ACKNOWLEDGE",
            &emit_payload("B", "bin", args),
            &[b"AA", b"BB"],
            true,
        )
        .await
        .unwrap();
    let expected = "could not read the arguments of P2P_EMIT_ACKNOWLEDGE: binary placeholder 2 \
                    is out of range: the packet carries 2 attachment(s), numbered from 0";
    assert_eq!(a.ack(id).await, vec![json!({ "error": expected })]);
    match a.event("SERVER_ERROR").await {
        Packet::Event { args, .. } => assert_eq!(args, vec![json!(expected)]),
        other => panic!("{other:?}"),
    }
    // Nothing reached B; it is served on.
    assert!(b
        .next_within(std::time::Duration::from_millis(200))
        .await
        .is_none());
    assert_eq!(
        b.request("LIST_CLIENTS", &[]).await,
        vec![json!(["A", "B"])]
    );
    relay.shutdown().await;
}

#[tokio::test]
async fn too_deep_or_out_of_range_arguments_are_refused_saying_why() {
    let relay = Relay::start(&[]).await;
    let mut a = Sio::connect(relay.socketio_addr(), "A").await;
    let mut b = Sio::connect(relay.socketio_addr(), "B").await;
    a.pair_with(&mut b, "B").await;

    let deep = format!("[{}1{}]", "[".repeat(126), "]".repeat(126));
    let cases = [
        (
            deep,
            "could not read the arguments of P2P_EMIT: arrays and objects nest deeper than 100 \
             levels",
        ),
        (
            "[1e400]".to_owned(),
            "could not read the arguments of P2P_EMIT: number out of range at line 1 column",
        ),
    ];
    for (args, expected) in cases {
        a.emit_raw("P2P_EMIT", &emit_payload("B", "e", &args), false)
            .await;
        match a.event("SERVER_ERROR").await {
            Packet::Event { args, .. } => {
                let message = args[0].as_str().unwrap();
                assert!(message.starts_with(expected), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }
    // Nesting below the limit still relays.
    let nested = format!("[{}1{}]", "[".repeat(90), "]".repeat(90));
    a.emit_raw("P2P_EMIT", &emit_payload("B", "e", &nested), false)
        .await;
    match b.event("e").await {
        Packet::Event { args, .. } => assert_eq!(Value::Array(args).to_string(), nested),
        other => panic!("{other:?}"),
    }
    relay.shutdown().await;
}

#[tokio::test]
async fn client_ids_that_are_not_utf8_are_refused_and_replace_nobody() {
    let relay = Relay::start(&[]).await;
    let addr = relay.socketio_addr();
    for (raw, byte) in [("%FF", "0xff"), ("%FE", "0xfe"), ("ok%C3", "0xc3")] {
        match Sio::connect_query(addr, &format!("clientId={raw}")).await {
            Err(sio::ConnectFailure::Refused(message)) => {
                let at = if raw.starts_with("ok") { 2 } else { 0 };
                assert_eq!(
                    message,
                    format!(
                        "invalid clientId: clientId is not valid UTF-8 once percent-decoded \
                         (byte {byte} at {at})"
                    )
                );
            }
            Err(other) => panic!("{raw}: {other:?}"),
            Ok(_) => panic!("{raw} was admitted"),
        }
    }
    // A real U+FFFD, and anything else in UTF-8, is an id like any other.
    let mut c = Sio::connect(addr, "\u{FFFD}").await;
    let mut d = Sio::connect(addr, "é").await;
    assert_eq!(
        c.request("LIST_CLIENTS", &[]).await,
        vec![json!(["é", "\u{FFFD}"])]
    );
    assert_eq!(d.request("LIST_CLIENTS", &[]).await.len(), 1);
    relay.shutdown().await;
}
