//! What the Socket.IO gateway does with inputs a well-behaved client never sends, checked
//! on the wire with a bare Socket.IO client (`tests/sio`) and, for payloads that cross
//! transports, a raw native client: the relay in this process.

mod common;
mod sio;

use common::Relay;
use native_client::wire::{ClientFrame, ServerFrame, WireAnswer, WireReply};
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
            message: expected.into()
        }
    );
    assert_eq!(
        n.next().await,
        ServerFrame::Reply {
            req: 2,
            reply: WireReply::Failed(expected.into())
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
    assert_eq!(s.request("LIST_CLIENTS", &[]).await, vec![json!(["N", "S"])]);
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
