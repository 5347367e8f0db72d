//! Between two Socket.IO clients the relay passes an emit's arguments through as the
//! sender wrote them (docs/PROTOCOL.md Part 3): not parsed into values and written again. The
//! texts below change under any re-encoding (`1.50` would become `1.5`, `\u00e9` an `é`,
//! a 23-digit integer a float, `1E+2` a `100.0`), so these tests fail if the relay
//! decodes and re-encodes them. A native receiver still gets the same values.

use crate::common;
use crate::sio;

use common::Relay;
use native_client::rmpv::Value as Mp;
use native_client::wire::{ClientFrame, ServerFrame};
use serde_json::json;
use sio::Sio;

/// Arguments whose text any re-encoding would change.
const ARGS: &str =
    r#"[1.50,"caf\u00e9",12345678901234567890123,{"a":[true,null],"n":-0.0},1E+2,"]"]"#;

fn emit_object(target: &str, event: &str, args: &str) -> String {
    format!(
        "{{\"targetClientId\":{},\"event\":{},\"args\":{args}}}",
        json!(target),
        json!(event)
    )
}

#[tokio::test]
async fn emitted_arguments_reach_a_socketio_peer_as_they_were_written() {
    let relay = Relay::start(&[]).await;
    let mut a = Sio::connect(relay.socketio_addr(), "A").await;
    let mut b = Sio::connect(relay.socketio_addr(), "B").await;
    a.pair_with(&mut b, "B").await;

    a.emit_raw("P2P_EMIT", &emit_object("B", "e", ARGS), false)
        .await;
    let inner = &ARGS[1..ARGS.len() - 1];
    assert_eq!(b.next_event_text().await, format!(r#"2["e",{inner}]"#));

    // With an ack: the question carries the same text, and the answer goes back.
    let id = a
        .emit_raw(
            "P2P_EMIT_ACKNOWLEDGE",
            &emit_object("B", "asked", ARGS),
            true,
        )
        .await
        .unwrap();
    let text = b.next_event_text().await;
    let rest = text.strip_prefix('2').expect("an event packet");
    let digits = rest.find('[').expect("the packet's array");
    let ticket: u64 = rest[..digits].parse().expect("an ack id");
    assert_eq!(&rest[digits..], format!(r#"["asked",{inner}]"#));
    b.answer(ticket, &[json!("got it")]).await;
    assert_eq!(a.ack(id).await, vec![json!("got it")]);

    // Whitespace between the arguments is not kept (only each argument's own text), and
    // missing or null args still mean no arguments.
    a.emit_raw(
        "P2P_EMIT",
        &emit_object("B", "spaced", "[ 1 ,\n\"x\" ]"),
        false,
    )
    .await;
    assert_eq!(b.next_event_text().await, r#"2["spaced",1,"x"]"#);
    a.emit_raw("P2P_EMIT", &emit_object("B", "none", "null"), false)
        .await;
    assert_eq!(b.next_event_text().await, r#"2["none"]"#);
}

#[tokio::test]
async fn the_same_arguments_reach_a_native_peer_as_values() {
    let relay = Relay::start(&[]).await;
    let mut a = Sio::connect(relay.socketio_addr(), "A").await;
    let mut n = relay.raw("N").await;
    let id = a
        .emit_raw("P2P_REGISTER", &json!("N").to_string(), true)
        .await
        .unwrap();
    let ticket = match n.next().await {
        ServerFrame::RegisterRequest { ticket, from } => {
            assert_eq!(from, "A");
            ticket
        }
        other => panic!("expected a pairing question, got {other:?}"),
    };
    n.send(&ClientFrame::Answer {
        ticket,
        answer: native_client::wire::WireAnswer::Accept(true),
    })
    .await;
    assert_eq!(a.ack(id).await, vec![json!(true)]);

    a.emit_raw("P2P_EMIT", &emit_object("N", "e", ARGS), false)
        .await;
    let args = loop {
        match n.next().await {
            ServerFrame::Deliver { event, args, .. } => {
                assert_eq!(event, "e");
                break args;
            }
            ServerFrame::Reply { .. } => continue,
            other => panic!("expected the event, got {other:?}"),
        }
    };
    let values = native_client::rmpv::decode::read_value(&mut &args[..]).expect("MessagePack");
    let expected = Mp::Array(vec![
        Mp::F64(1.5),
        Mp::from("café"),
        Mp::F64(12345678901234567890123.0),
        Mp::Map(vec![
            (Mp::from("a"), Mp::Array(vec![Mp::Boolean(true), Mp::Nil])),
            (Mp::from("n"), Mp::F64(-0.0)),
        ]),
        Mp::F64(100.0),
        Mp::from("]"),
    ]);
    assert_eq!(values, expected);
}
