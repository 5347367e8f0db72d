//! Every rule of docs/PROTOCOL.md Part 1 (and the conventions' exact texts), over QUIC, through
//! the native client against the real relay started in this process.

use crate::common;

use std::time::{Duration, Instant};

use common::{assert_quiet, next, pair, within, Relay, WAIT};
use native_client::rmpv::Value;
use native_client::wire::{ClientFrame, CloseCode, ServerFrame, WireAnswer, WireReply};
use native_client::{Args, Client, ClientError, ClientEvent, CloseReason, ErrorCode, ErrorKind};

const QUIET: Duration = Duration::from_millis(200);

/// JSON-like values with binary nested anywhere, integers and floats kept apart.
fn rich_args() -> Args {
    Args::new()
        .with("text é")
        .with(u64::MAX)
        .with(-5)
        .with(Value::F64(0.1))
        .with(Value::Nil)
        .with(Value::Map(vec![
            (Value::from("buf"), Value::Binary(vec![0, 255, 7])),
            (
                Value::from("nested"),
                Value::Array(vec![Value::Binary(vec![1]), Value::from(true)]),
            ),
        ]))
        .with(Value::Binary(common::random_bytes(1, 70_000)))
}

#[tokio::test]
async fn pair_emit_and_list() {
    let relay = Relay::start(&[]).await;
    let (a, mut a_in, b, mut b_in) = relay.paired("A", "B").await;
    assert_eq!(a.client_id(), "A");
    assert_eq!(a.list_clients().await.unwrap(), vec!["A", "B"]);
    assert_eq!(b.list_clients().await.unwrap(), vec!["A", "B"]);

    a.emit("hello", rich_args()).await.unwrap();
    match next(&mut b_in).await {
        ClientEvent::Event { event, args, ack } => {
            assert_eq!(event, "hello");
            assert_eq!(args.encode(), rich_args().encode(), "byte-exact");
            assert_eq!(args, rich_args());
            assert!(ack.is_none());
        }
        other => panic!("{other:?}"),
    }
    // And the other way.
    b.emit("back", Args::one("x")).await.unwrap();
    match next(&mut a_in).await {
        ClientEvent::Event { event, args, .. } => {
            assert_eq!(event, "back");
            assert_eq!(args, Args::one("x"));
        }
        other => panic!("{other:?}"),
    }
    relay.shutdown().await;
}

#[tokio::test]
async fn acks_carry_many_binary_arguments_byte_exact() {
    let relay = Relay::start(&[]).await;
    let (a, _a_in, _b, mut b_in) = relay.paired("A", "B").await;
    let asking = tokio::spawn({
        let a = a.clone();
        async move { a.emit_with_ack("add", rich_args().with(2).with(3)).await }
    });
    let answer = Args::new()
        .with(5)
        .with(Value::Binary(common::random_bytes(2, 100_000)))
        .with(Value::Map(vec![(
            Value::from("deep"),
            Value::Array(vec![Value::Binary(vec![0; 3]), Value::F32(1.5)]),
        )]))
        .with(Value::Binary(Vec::new()))
        .with("done");
    match next(&mut b_in).await {
        ClientEvent::Event {
            event,
            args,
            ack: Some(ack),
        } => {
            assert_eq!(event, "add");
            assert_eq!(ack.event(), "add");
            assert_eq!(args.encode(), rich_args().with(2).with(3).encode());
            ack.send(answer.clone()).unwrap();
        }
        other => panic!("{other:?}"),
    }
    let reply = within("the ack", asking).await.unwrap().unwrap();
    assert_eq!(reply.encode(), answer.encode(), "byte-exact");
    assert_eq!(reply.len(), 5);

    // An ack with no arguments at all.
    let asking = tokio::spawn({
        let a = a.clone();
        async move { a.emit_with_ack("nothing", Args::new()).await }
    });
    match next(&mut b_in).await {
        ClientEvent::Event { ack: Some(ack), .. } => ack.send(Args::new()).unwrap(),
        other => panic!("{other:?}"),
    }
    assert!(within("the ack", asking).await.unwrap().unwrap().is_empty());
    relay.shutdown().await;
}

#[tokio::test]
async fn declined_and_dropped_pairing_requests_say_no() {
    let relay = Relay::start(&[]).await;
    let (a, mut a_in) = relay.connect("A").await;
    let (b, mut b_in) = relay.connect("B").await;
    for refuse in [true, false] {
        let register = tokio::spawn({
            let a = a.clone();
            async move { a.register("B").await }
        });
        match next(&mut b_in).await {
            ClientEvent::RegisterRequest(request) if refuse => request.refuse(),
            ClientEvent::RegisterRequest(request) => drop(request),
            other => panic!("{other:?}"),
        }
        assert!(!within("register", register).await.unwrap().unwrap());
        assert_eq!(a.target(), None);
        assert_eq!(b.target(), None);
    }
    // A decline is not an error: no SERVER_ERROR for it.
    assert_quiet(&mut a_in, QUIET).await;
    // Both are still free to pair.
    pair(&a, &b, &mut b_in).await;
    relay.shutdown().await;
}

#[tokio::test]
async fn a_busy_target_refuses() {
    let relay = Relay::start(&[]).await;
    let (_a, _a_in, b, mut b_in) = relay.paired("A", "B").await;
    let (c, mut c_in) = relay.connect("C").await;
    // B's client refuses by itself, as the JS plugin does: its application never sees it.
    assert!(!within("register", c.register("B")).await.unwrap());
    assert_eq!(c.target(), None);
    assert_eq!(b.target().as_deref(), Some("A"));
    assert_quiet(&mut b_in, QUIET).await;
    assert_quiet(&mut c_in, Duration::ZERO).await;

    // A paired client asking the relay to pair again is refused by the relay.
    let mut raw = relay.raw("D").await;
    let (_e, mut e_in) = relay.connect("E").await;
    raw.pair_with(1, "E", &mut e_in).await;
    raw.send(&ClientFrame::Register {
        req: 2,
        target: "C".into(),
    })
    .await;
    expect_failure(
        &mut raw,
        2,
        ErrorCode::PairingConflict,
        "already paired with 'E'",
    )
    .await;
    assert_quiet(&mut c_in, QUIET).await;
    relay.shutdown().await;
}

/// The relay reports a failed request twice, as it does to Socket.IO clients: a
/// `ServerError` and the request's own reply, both with the failure's code. Either may
/// come first.
async fn expect_failure(raw: &mut common::Raw, req: u64, kind: ErrorCode, message: &str) {
    let mut seen = (false, false);
    while seen != (true, true) {
        match raw.next().await {
            ServerFrame::ServerError { code, message: m } if !seen.0 => {
                assert_eq!((code, m.as_str()), (Some(kind.as_u16()), message));
                seen.0 = true;
            }
            ServerFrame::Reply {
                req: r,
                reply: WireReply::Failed { code, message: m },
            } if r == req && !seen.1 => {
                assert_eq!((code, m.as_str()), (kind.as_u16(), message));
                seen.1 = true;
            }
            other => panic!("expected the failure '{message}', got {other:?}"),
        }
    }
}

#[tokio::test]
async fn self_unknown_and_invalid_targets_fail_with_the_relays_words() {
    let relay = Relay::start(&[]).await;
    let (a, mut a_in) = relay.connect("A").await;
    // The client refuses these locally, like the JS plugin...
    assert!(matches!(
        a.register("A").await,
        Err(ClientError::RegisterSelf)
    ));
    // ...and the relay refuses them too, when a client asks anyway.
    let mut raw = relay.raw("R").await;
    raw.send(&ClientFrame::Register {
        req: 1,
        target: "R".into(),
    })
    .await;
    expect_failure(
        &mut raw,
        1,
        ErrorCode::PairingConflict,
        "cannot register to yourself",
    )
    .await;

    match a.register("nobody").await {
        Err(e @ ClientError::Request { .. }) => {
            assert_eq!(e.kind(), ErrorKind::NotConnected);
            assert_eq!(e.code(), Some(ErrorCode::NotConnected));
            assert_eq!(
                e.to_string(),
                "request failed: target client 'nobody' is not connected"
            );
        }
        other => panic!("{other:?}"),
    }
    match next(&mut a_in).await {
        ClientEvent::ServerError { code, message } => {
            assert_eq!(code, Some(ErrorCode::NotConnected));
            assert_eq!(message, "target client 'nobody' is not connected")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(a.target(), None);
    // Still usable.
    assert_eq!(raw.list(2).await, vec!["A", "R"]);
    relay.shutdown().await;
}

#[tokio::test]
async fn local_checks_mirror_the_js_plugin() {
    let relay = Relay::start(&[]).await;
    let (a, _a_in) = relay.connect("A").await;
    assert!(matches!(
        a.emit("e", Args::new()).await,
        Err(ClientError::NotPaired)
    ));
    assert!(matches!(
        a.emit_with_ack("e", Args::new()).await,
        Err(ClientError::NotPaired)
    ));
    // Unregistering while unpaired resolves at once, as in the plugin.
    within("unregister", a.unregister()).await.unwrap();
    // Opening a stream while unpaired is the relay's to refuse.
    let err = a.open_stream("B").await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "request failed: cannot open a stream: not paired"
    );
    assert_eq!(err.kind(), ErrorKind::NotPaired);
    drop(a);

    let (a, _a_in, _b, _b_in) = relay.paired("A2", "B2").await;
    assert!(matches!(
        a.register("C").await,
        Err(ClientError::AlreadyPaired(peer)) if peer == "B2"
    ));
    assert!(matches!(
        a.emit("", Args::new()).await,
        Err(ClientError::EmptyEvent)
    ));
    relay.shutdown().await;
}

#[tokio::test]
async fn unregister_reaches_the_other_side() {
    let relay = Relay::start(&[]).await;
    let (a, mut a_in, b, mut b_in) = relay.paired("A", "B").await;
    within("unregister", a.unregister()).await.unwrap();
    assert_eq!(a.target(), None);
    // By the time the caller's unregister returned, the peer was told.
    assert!(matches!(next(&mut b_in).await, ClientEvent::Unregistered));
    assert!(matches!(next(&mut a_in).await, ClientEvent::Unregistered));
    assert_eq!(b.target(), None);
    // Emits no longer reach the former peer (the client refuses locally; the relay too).
    assert!(matches!(
        a.emit("e", Args::new()).await,
        Err(ClientError::NotPaired)
    ));
    // Free to pair again, the other way round.
    pair(&b, &a, &mut a_in).await;
    assert_quiet(&mut b_in, QUIET).await;

    // Unregistering while unpaired, asked of the relay: a failure with its text.
    let mut raw = relay.raw("R").await;
    raw.send(&ClientFrame::Unregister { req: 7 }).await;
    expect_failure(
        &mut raw,
        7,
        ErrorCode::NotPaired,
        "cannot unregister: not paired",
    )
    .await;
    relay.shutdown().await;
}

#[tokio::test]
async fn a_lost_peer_ends_the_pairing_with_only_peer_disconnected() {
    let relay = Relay::start(&[]).await;
    let (a, mut a_in, b, mut b_in) = relay.paired("A", "B").await;
    let (c, mut c_in) = relay.connect("C").await;
    within("close", a.close()).await;
    match next(&mut a_in).await {
        ClientEvent::Closed(reason) => assert_eq!(reason.to_string(), "closed by this client"),
        other => panic!("{other:?}"),
    }
    assert!(within("incoming end", a_in.next()).await.is_none());
    // Only P2P_DISCONNECT: no spurious "could not find target" SERVER_ERROR before it.
    assert!(matches!(
        next(&mut b_in).await,
        ClientEvent::PeerDisconnected
    ));
    assert_eq!(b.target(), None);
    // The list, right after the disconnect, no longer names A.
    assert_eq!(c.list_clients().await.unwrap(), vec!["B", "C"]);
    assert_eq!(b.list_clients().await.unwrap(), vec!["B", "C"]);
    assert_quiet(&mut b_in, QUIET).await;
    // A is closed for good; B is free again.
    assert!(matches!(
        a.list_clients().await,
        Err(ClientError::Closed(_))
    ));
    pair(&c, &b, &mut b_in).await;
    assert_quiet(&mut c_in, Duration::ZERO).await;
    relay.shutdown().await;
}

#[tokio::test]
async fn dropping_every_handle_disconnects() {
    let relay = Relay::start(&[]).await;
    let (a, a_in, b, mut b_in) = relay.paired("A", "B").await;
    let a2 = a.clone();
    drop(a);
    drop(a_in);
    // One clone is still alive: the connection too.
    assert_eq!(b.list_clients().await.unwrap(), vec!["A", "B"]);
    assert_quiet(&mut b_in, QUIET).await;
    drop(a2);
    assert!(matches!(
        next(&mut b_in).await,
        ClientEvent::PeerDisconnected
    ));
    assert_eq!(b.list_clients().await.unwrap(), vec!["B"]);
    relay.shutdown().await;
}

#[tokio::test]
async fn emits_reach_only_the_peer() {
    let relay = Relay::start(&[]).await;
    let (b, mut b_in) = relay.connect("B").await;
    let (_c, mut c_in) = relay.connect("C").await;
    // A raw client pairs with B, then names C as the target: the old server forwarded it.
    let mut raw = relay.raw("A").await;
    raw.pair_with(1, "B", &mut b_in).await;
    raw.send(&ClientFrame::Emit {
        target: "C".into(),
        event: "sneaky".into(),
        args: Args::one(1).encode(),
        ack: None,
    })
    .await;
    match raw.next().await {
        ServerFrame::ServerError { code, message } => {
            assert_eq!(code, Some(ErrorCode::NotPaired.as_u16()));
            assert_eq!(message, "not paired with 'C'")
        }
        other => panic!("{other:?}"),
    }
    raw.send(&ClientFrame::Emit {
        target: "C".into(),
        event: "sneaky".into(),
        args: Args::one(1).encode(),
        ack: Some(2),
    })
    .await;
    expect_failure(&mut raw, 2, ErrorCode::NotPaired, "not paired with 'C'").await;
    // An unpaired client cannot reach B either.
    let mut stranger = relay.raw("D").await;
    stranger
        .send(&ClientFrame::Emit {
            target: "B".into(),
            event: "hi".into(),
            args: Args::new().encode(),
            ack: Some(1),
        })
        .await;
    expect_failure(
        &mut stranger,
        1,
        ErrorCode::NotPaired,
        "not paired with 'B'",
    )
    .await;
    // The peer does get what is sent to it, and nothing before it.
    raw.send(&ClientFrame::Emit {
        target: "B".into(),
        event: "fine".into(),
        args: Args::one(2).encode(),
        ack: None,
    })
    .await;
    match next(&mut b_in).await {
        ClientEvent::Event { event, args, .. } => {
            assert_eq!(event, "fine");
            assert_eq!(args, Args::one(2));
        }
        other => panic!("{other:?}"),
    }
    assert_quiet(&mut c_in, QUIET).await;
    assert_eq!(b.target().as_deref(), Some("A"));
    relay.shutdown().await;
}

#[tokio::test]
async fn reserved_event_names_are_refused() {
    let relay = Relay::start(&[]).await;
    let (a, mut a_in, b, mut b_in) = relay.paired("A", "B").await;
    for name in [
        "connect",
        "connect_error",
        "disconnect",
        "disconnecting",
        "newListener",
        "removeListener",
    ] {
        let expected = format!("event name '{name}' is reserved");
        a.emit(name, Args::one(1)).await.unwrap();
        match next(&mut a_in).await {
            ClientEvent::ServerError { code, message } => {
                assert_eq!(
                    (code, message),
                    (Some(ErrorCode::Invalid), expected.clone())
                )
            }
            other => panic!("{other:?}"),
        }
        match a.emit_with_ack(name, Args::new()).await {
            Err(ClientError::Request { code, message }) => {
                assert_eq!((code, message), (ErrorCode::Invalid, expected.clone()))
            }
            other => panic!("{other:?}"),
        }
        match next(&mut a_in).await {
            ClientEvent::ServerError { message, .. } => assert_eq!(message, expected),
            other => panic!("{other:?}"),
        }
    }
    // A relayed `disconnect` did not disconnect B.
    assert_eq!(a.list_clients().await.unwrap(), vec!["A", "B"]);
    a.emit("marker", Args::new()).await.unwrap();
    match next(&mut b_in).await {
        ClientEvent::Event { event, .. } => assert_eq!(event, "marker", "only the marker"),
        other => panic!("{other:?}"),
    }
    assert_eq!(b.target().as_deref(), Some("A"));
    relay.shutdown().await;
}

#[tokio::test]
async fn oversized_payloads_are_refused() {
    let relay = Relay::start(&["--max-message-bytes", "1000"]).await;
    let (a, mut a_in, _b, mut b_in) = relay.paired("A", "B").await;

    let big = Args::binary(vec![7u8; 5000]);
    let size = big.encode().len();
    let expected = format!("payload of {size} bytes exceeds the limit of 1000 bytes");
    a.emit("big", big.clone()).await.unwrap();
    match next(&mut a_in).await {
        ClientEvent::ServerError { code, message } => {
            assert_eq!(
                (code, message),
                (Some(ErrorCode::TooLarge), expected.clone())
            )
        }
        other => panic!("{other:?}"),
    }
    match a.emit_with_ack("big", big).await {
        Err(e @ ClientError::Request { .. }) => {
            assert_eq!(e.kind(), ErrorKind::TooLarge);
            assert_eq!(e.to_string(), format!("request failed: {expected}"));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        next(&mut a_in).await,
        ClientEvent::ServerError { .. }
    ));

    // Exactly at the limit passes, byte for byte.
    let at_limit = Args::binary(common::random_bytes(3, 1000 - 4));
    assert_eq!(at_limit.encode().len(), 1000);
    a.emit("fits", at_limit.clone()).await.unwrap();
    match next(&mut b_in).await {
        ClientEvent::Event { event, args, .. } => {
            assert_eq!(event, "fits");
            assert_eq!(args.encode(), at_limit.encode());
        }
        other => panic!("{other:?}"),
    }
    relay.shutdown().await;
}

#[tokio::test]
async fn an_unanswered_ack_times_out_with_the_exact_text() {
    let relay = Relay::start(&["--ack-timeout-ms", "300"]).await;
    let (a, mut a_in, _b, mut b_in) = relay.paired("A", "B").await;
    let started = Instant::now();
    let asking = tokio::spawn({
        let a = a.clone();
        async move { a.emit_with_ack("slow", Args::one(1)).await }
    });
    let late = match next(&mut b_in).await {
        ClientEvent::Event { ack: Some(ack), .. } => ack,
        other => panic!("{other:?}"),
    };
    match within("the timeout", asking).await.unwrap() {
        Err(ClientError::Request { code, message }) => {
            assert_eq!(code, ErrorCode::Timeout);
            assert_eq!(message, "no ack for event 'slow' from 'B' within 300 ms")
        }
        other => panic!("{other:?}"),
    }
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    match next(&mut a_in).await {
        ClientEvent::ServerError { code, message } => {
            assert_eq!(code, Some(ErrorCode::Timeout));
            assert_eq!(message, "no ack for event 'slow' from 'B' within 300 ms")
        }
        other => panic!("{other:?}"),
    }
    // An ack that comes too late is dropped, and harms nothing.
    late.send(Args::one("late")).unwrap();
    assert_eq!(a.list_clients().await.unwrap(), vec!["A", "B"]);
    assert_quiet(&mut a_in, QUIET).await;
    relay.shutdown().await;
}

#[tokio::test]
async fn undecodable_arguments_from_a_peer_are_answered_not_fatal() {
    let relay = Relay::start(&[]).await;
    let (b, mut b_in) = relay.connect("B").await;
    let mut raw = relay.raw("A").await;
    raw.pair_with(1, "B", &mut b_in).await;
    // A MessagePack string where an array belongs: passed through untouched between
    // native clients, and B's client answers it instead of breaking.
    raw.send(&ClientFrame::Emit {
        target: "B".into(),
        event: "bad".into(),
        args: common::msgpack(&[0xa1, b'x']),
        ack: Some(2),
    })
    .await;
    let expected = "event 'bad' from the peer was dropped: arguments must be a MessagePack \
                    array, got a string";
    match next(&mut b_in).await {
        ClientEvent::ServerError { code, message } => {
            assert_eq!(code, Some(ErrorCode::Invalid));
            assert_eq!(message, expected)
        }
        other => panic!("{other:?}"),
    }
    match raw.next().await {
        ServerFrame::Reply {
            req: 2,
            reply: WireReply::Ack(bytes),
        } => {
            let error = Value::Map(vec![(Value::from("error"), Value::from(expected))]);
            assert_eq!(Args::decode(&bytes).unwrap(), Args::one(error));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(b.list_clients().await.unwrap(), vec!["A", "B"]);
    relay.shutdown().await;
}

#[tokio::test]
async fn a_duplicate_id_replaces_the_older_connection() {
    let relay = Relay::start(&["--duplicate-policy", "replace"]).await;
    let (old, mut old_in, b, mut b_in) = relay.paired("A", "B").await;
    let (new, mut new_in) = relay.connect("A").await;
    let mut told = false;
    loop {
        match next(&mut old_in).await {
            ClientEvent::ServerError { code, message } => {
                assert_eq!(code, None, "a notice, not a request's failure");
                assert_eq!(message, "replaced by a newer connection with clientId 'A'");
                told = true;
            }
            ClientEvent::Closed(reason) => {
                assert!(
                    matches!(
                        &reason,
                        CloseReason::Relay {
                            code: CloseCode::Replaced,
                            detail,
                        } if detail == "replaced by a newer connection with clientId 'A'"
                    ),
                    "{reason:?}"
                );
                assert_eq!(
                    reason.to_string(),
                    "the relay closed the connection: replaced by a newer connection with \
                     the same clientId (code 0x5): replaced by a newer connection with \
                     clientId 'A'"
                );
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(told, "the older connection got its SERVER_ERROR first");
    assert!(within("incoming end", old_in.next()).await.is_none());
    match old.list_clients().await {
        Err(ClientError::Closed(reason)) => {
            assert_eq!(reason.code(), Some(CloseCode::Replaced))
        }
        other => panic!("{other:?}"),
    }
    // Its peer lost it.
    assert!(matches!(
        next(&mut b_in).await,
        ClientEvent::PeerDisconnected
    ));
    assert_eq!(b.target(), None);
    // The newer one holds the id, unpaired, and works.
    assert_eq!(new.list_clients().await.unwrap(), vec!["A", "B"]);
    assert_eq!(new.target(), None);
    pair(&b, &new, &mut new_in).await;
    relay.shutdown().await;
}

#[tokio::test]
async fn a_duplicate_id_is_refused_under_reject() {
    let relay = Relay::start(&["--duplicate-policy", "reject"]).await;
    let (a, mut a_in, _b, _b_in) = relay.paired("A", "B").await;
    match within("connect", Client::connect(relay.options("A"))).await {
        Err(ClientError::Refused { code, message }) => {
            assert_eq!(code, CloseCode::Refused);
            assert_eq!(message, "clientId 'A' is already connected");
        }
        other => panic!("{other:?}"),
    }
    // The first connection is untouched: still listed, still paired.
    assert_eq!(a.list_clients().await.unwrap(), vec!["A", "B"]);
    assert_eq!(a.target().as_deref(), Some("B"));
    assert_quiet(&mut a_in, QUIET).await;
    relay.shutdown().await;
}

#[tokio::test]
async fn invalid_client_ids_are_refused() {
    let relay = Relay::start(&[]).await;
    let long = "x".repeat(129);
    for (id, reason) in [
        ("bad\u{7}id", "clientId must not contain control characters"),
        ("", "clientId must not be empty"),
        (
            long.as_str(),
            "clientId is 129 bytes long; the limit is 128",
        ),
    ] {
        match within("connect", Client::connect(relay.options(id))).await {
            Err(ClientError::Refused { code, message }) => {
                assert_eq!(code, CloseCode::Refused);
                assert_eq!(message, format!("invalid clientId: {reason}"));
            }
            other => panic!("{id:?}: {other:?}"),
        }
    }
    // 128 bytes of UTF-8 is fine.
    let ok = "é".repeat(64);
    let (c, _c_in) = relay.connect(&ok).await;
    assert_eq!(c.list_clients().await.unwrap(), vec![ok]);
    relay.shutdown().await;
}

#[tokio::test]
async fn frames_over_the_clients_limit_are_refused_locally() {
    let relay = Relay::start(&[]).await;
    let (a, _a_in, _b, mut b_in) = relay.paired("A", "B").await;
    match a
        .emit("big", Args::binary(vec![0u8; 2 * 1024 * 1024]))
        .await
    {
        Err(ClientError::TooLarge { what, len, max }) => {
            assert_eq!(what, "event arguments");
            assert!(len > max);
        }
        other => panic!("{other:?}"),
    }
    // The connection lives on.
    a.emit("small", Args::one(1)).await.unwrap();
    assert!(matches!(next(&mut b_in).await, ClientEvent::Event { event, .. } if event == "small"));
    relay.shutdown().await;
}

#[tokio::test]
async fn incoming_is_a_stream_of_events() {
    use futures::StreamExt;
    let relay = Relay::start(&[]).await;
    let (a, _a_in, _b, mut b_in) = relay.paired("A", "B").await;
    a.close().await;
    let event = tokio::time::timeout(WAIT, StreamExt::next(&mut b_in))
        .await
        .expect("an event in time");
    assert!(matches!(event, Some(ClientEvent::PeerDisconnected)));
    relay.shutdown().await;
}

#[tokio::test]
async fn answers_to_unknown_tickets_are_harmless() {
    let relay = Relay::start(&[]).await;
    let mut raw = relay.raw("A").await;
    raw.send(&ClientFrame::Answer {
        ticket: 12345,
        answer: WireAnswer::Accept(true),
    })
    .await;
    assert_eq!(raw.list(1).await, vec!["A"]);
    relay.shutdown().await;
}

#[tokio::test]
async fn a_full_receiver_queue_is_a_typed_failure() {
    // B never reads: its client stops reading the control stream, QUIC's flow control
    // stops the relay's writer, and B's queue of 4 relayed events fills.
    let relay = Relay::start(&["--outbox-messages", "4"]).await;
    let (a, mut a_in) = relay.connect("A").await;
    let (b, mut b_in) = within(
        "connecting B",
        Client::connect(relay.options("B").incoming_capacity(1)),
    )
    .await
    .unwrap();
    pair(&a, &b, &mut b_in).await;
    let chunk = Args::binary(vec![0u8; 60_000]);
    let told = within("the queue filling", async {
        loop {
            a.emit("flood", chunk.clone()).await.unwrap();
            if let Ok(Some(event)) = tokio::time::timeout(Duration::ZERO, a_in.next()).await {
                break event;
            }
        }
    })
    .await;
    match told {
        ClientEvent::ServerError { code, message } => {
            assert_eq!(code, Some(ErrorCode::QueueFull));
            assert_eq!(
                message,
                "could not deliver 'flood' to 'B': its queue is full (4 messages)"
            );
        }
        other => panic!("{other:?}"),
    }
    // An emit that asks for an ack is answered with the same kind.
    match a.emit_with_ack("flood", chunk).await {
        Err(e) => assert_eq!(e.kind(), ErrorKind::QueueFull, "{e}"),
        Ok(args) => panic!("delivered to a full queue: {args:?}"),
    }
    relay.shutdown().await;
}
