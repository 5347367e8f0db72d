//! What the Socket.IO gateway does with inputs a well-behaved client never sends, checked
//! on the wire with a bare Socket.IO client (`tests/sio`) and, for payloads that cross
//! transports, a raw native client: the relay in this process.

use crate::common;
use crate::sio;

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

// ----- arguments larger than the limit once their placeholders are bound -----------------

/// VmRSS (now) and VmHWM (peak since the start) of process `pid`, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} in /proc/{pid}/status"))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The most the relay's peak RSS may pass its RSS before the oversized packet.
const RSS_HEADROOM_KIB: u64 = 20 * 1024;

/// The 1 MB attachment the packets below name again and again.
const ATTACHMENT_BYTES: usize = 1_000_000;

/// `n` placeholders for attachment 0, comma-separated.
fn placeholders(n: usize) -> String {
    vec![r#"{"_placeholder":true,"num":0}"#; n].join(",")
}

/// The limit's refusal for a binary event whose JSON is `packet` (the `[event, ...]` array)
/// and whose one attachment is named `refs` times: every reference counts in full.
fn too_large(packet: &str, refs: usize) -> String {
    format!(
        "payload of {} bytes exceeds the limit of 1048576 bytes",
        packet.len() + refs * ATTACHMENT_BYTES
    )
}

/// Fails unless the relay's peak RSS stayed within [`RSS_HEADROOM_KIB`] of `before`.
fn assert_peak_within(pid: u32, before: u64, what: &str) {
    let (now, peak) = memory_kib(pid);
    eprintln!("{what}: VmRSS before {before} KiB, after {now} KiB, VmHWM {peak} KiB");
    assert!(
        peak <= before + RSS_HEADROOM_KIB,
        "{what}: the relay's peak RSS reached {peak} KiB from {before} KiB"
    );
}

#[tokio::test]
async fn an_attachment_named_a_thousand_times_is_refused_before_it_is_copied() {
    let relay = Relay::start_binary(&[]).await;
    let pid = relay.pid().expect("the relay runs as a child process");
    let mut a = Sio::connect(relay.socketio_addr(), "A").await;
    let mut b = Sio::connect(relay.socketio_addr(), "B").await;
    a.pair_with(&mut b, "B").await;
    let (before, _) = memory_kib(pid);

    let payload = emit_payload("B", "big", &format!("[{}]", placeholders(1000)));
    let attachment = vec![0x5a; ATTACHMENT_BYTES];
    a.emit_binary("P2P_EMIT", &payload, &[&attachment], false)
        .await;
    let expected = too_large(&format!(r#"["P2P_EMIT",{payload}]"#), 1000);
    let refusal = a.event("SERVER_ERROR").await;
    assert_peak_within(pid, before, "1 MB attachment x 1000 references");
    match refusal {
        Packet::Event { args, .. } => assert_eq!(args, vec![json!(expected)]),
        other => panic!("{other:?}"),
    }
    // The connection lives on: the next emit reaches the peer, which got nothing else.
    a.emit_raw("P2P_EMIT", &emit_payload("B", "after", "[1]"), false)
        .await;
    match b.next().await {
        Packet::Event { name, args, .. } => {
            assert_eq!((name.as_str(), args), ("after", vec![json!(1)]))
        }
        other => panic!("expected the next emit, got {other:?}"),
    }
    relay.shutdown().await;
}

#[tokio::test]
async fn nested_placeholders_count_toward_the_limit_before_binding() {
    let relay = Relay::start_binary(&[]).await;
    let pid = relay.pid().expect("the relay runs as a child process");
    let mut a = Sio::connect(relay.socketio_addr(), "A").await;
    let mut b = Sio::connect(relay.socketio_addr(), "B").await;
    a.pair_with(&mut b, "B").await;
    let (before, _) = memory_kib(pid);

    // 1000 references at three depths, in objects and arrays, with an ack.
    let args = format!(
        r#"[{{"a":[{}]}},[[{}]],{{"b":{{"c":[{}]}}}}]"#,
        placeholders(250),
        placeholders(250),
        placeholders(500)
    );
    let payload = emit_payload("B", "big", &args);
    let attachment = vec![0x5a; ATTACHMENT_BYTES];
    let id = a
        .emit_binary("P2P_EMIT_ACKNOWLEDGE", &payload, &[&attachment], true)
        .await
        .unwrap();
    let expected = too_large(&format!(r#"["P2P_EMIT_ACKNOWLEDGE",{payload}]"#), 1000);
    let answer = a.ack(id).await;
    assert_peak_within(pid, before, "1 MB attachment x 1000 nested references");
    assert_eq!(answer, vec![json!({ "error": expected })]);
    match a.event("SERVER_ERROR").await {
        Packet::Event { args, .. } => assert_eq!(args, vec![json!(expected)]),
        other => panic!("{other:?}"),
    }
    let id = a
        .emit_raw(
            "P2P_EMIT_ACKNOWLEDGE",
            &emit_payload("B", "after", "[2]"),
            true,
        )
        .await
        .unwrap();
    match b.next().await {
        Packet::Event {
            name,
            args,
            ack: Some(q),
            ..
        } if name == "after" => {
            assert_eq!(args, vec![json!(2)]);
            b.answer(q, &[json!("ok")]).await;
        }
        other => panic!("expected the next emit, got {other:?}"),
    }
    assert_eq!(a.ack(id).await, vec![json!("ok")]);
    relay.shutdown().await;
}

/// An engine.io v3 binary payload (XHR2 form): each packet is `<0 text | 1 binary>`, its
/// length as one byte per decimal digit, 0xff, then the packet.
fn v3_binary_payload(packets: &[(bool, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (binary, data) in packets {
        body.push(u8::from(*binary));
        let len = data.len() + usize::from(*binary);
        body.extend(len.to_string().bytes().map(|d| d - b'0'));
        body.push(0xff);
        if *binary {
            body.push(4); // the engine.io message type
        }
        body.extend_from_slice(data);
    }
    body
}

#[tokio::test]
async fn over_engine_io_3_polling_the_same_packet_is_refused_before_it_is_copied() {
    let relay = Relay::start_binary(&[]).await;
    let pid = relay.pid().expect("the relay runs as a child process");
    let http = reqwest::Client::new();
    let base = format!(
        "{}/socket.io/?EIO=3&transport=polling&clientId=V3",
        relay.socketio_url()
    );
    let open = sio::within("the v3 handshake", http.get(&base).send())
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let open = String::from_utf8_lossy(&open).into_owned();
    let sid = open
        .split(r#""sid":""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no sid in {open:?}"))
        .to_owned();
    let url = format!("{base}&sid={sid}");
    // Polls until what the relay wrote holds `want` (at most 10 responses).
    let poll = |mut seen: String, want: String| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            for _ in 0..10 {
                if seen.contains(&want) {
                    return seen;
                }
                let more = sio::within("a v3 poll", http.get(&url).send())
                    .await
                    .unwrap();
                seen.push_str(&String::from_utf8_lossy(&more.bytes().await.unwrap()));
            }
            panic!("{want:?} never came: {seen:?}")
        }
    };
    poll(open, "P2P_LIMITS".into()).await;
    let (before, _) = memory_kib(pid);

    let payload = emit_payload("V3", "big", &format!("[{}]", placeholders(1000)));
    let packet = format!(r#"["P2P_EMIT",{payload}]"#);
    let header = format!("451-{packet}");
    let attachment = vec![0x5a; ATTACHMENT_BYTES];
    let body = v3_binary_payload(&[(false, header.as_bytes()), (true, &attachment)]);
    let posted = sio::within(
        "posting the packet",
        http.post(&url)
            .header("content-type", "application/octet-stream")
            .body(body)
            .send(),
    )
    .await
    .unwrap();
    assert!(posted.status().is_success(), "{}", posted.status());
    let seen = poll(String::new(), "SERVER_ERROR".into()).await;
    assert_peak_within(
        pid,
        before,
        "engine.io 3: 1 MB attachment x 1000 references",
    );
    let expected = too_large(&packet, 1000);
    assert!(seen.contains(&expected), "{expected:?} not in {seen:?}");
    // The connection lives on: its next request is answered.
    let list = v3_binary_payload(&[(false, br#"421["LIST_CLIENTS"]"#)]);
    http.post(&url)
        .header("content-type", "application/octet-stream")
        .body(list)
        .send()
        .await
        .unwrap();
    poll(String::new(), r#"431[["V3"]]"#.into()).await;
    relay.shutdown().await;
}

// ----- arguments larger than the limit once converted for the other transport ---------

/// A MessagePack array of `n` nils: `n + 5` bytes that are `5n + 1` bytes of JSON.
fn nils(n: usize) -> bytes::Bytes {
    let mut out = vec![0xdd];
    out.extend_from_slice(&(n as u32).to_be_bytes());
    out.resize(5 + n, 0xc0);
    out.into()
}

#[tokio::test]
async fn arguments_are_bounded_in_the_form_the_other_transport_is_sent_them() {
    let relay = Relay::start(&[]).await;
    let mut s = Sio::connect(relay.socketio_addr(), "S").await;
    let mut n = relay.raw("N").await;
    pair_native_with_sio(&mut n, &mut s, "S").await;
    let limit = 1024 * 1024;

    // Native to Socket.IO: 300,005 bytes of MessagePack would be 1,500,001 of JSON.
    let expected = format!("payload of 1500001 bytes exceeds the limit of {limit} bytes");
    n.send(&ClientFrame::Emit {
        target: "S".into(),
        event: "nils".into(),
        args: nils(300_000),
        ack: Some(1),
    })
    .await;
    assert_eq!(
        n.next().await,
        ServerFrame::ServerError {
            code: Some(ErrorCode::TooLarge.as_u16()),
            message: expected.clone()
        }
    );
    assert_eq!(
        n.next().await,
        ServerFrame::Reply {
            req: 1,
            reply: WireReply::Failed {
                code: ErrorCode::TooLarge.as_u16(),
                message: expected
            }
        }
    );
    // Just under the limit as JSON, it is delivered.
    n.send(&ClientFrame::Emit {
        target: "S".into(),
        event: "nils".into(),
        args: nils(200_000),
        ack: None,
    })
    .await;
    match s.next().await {
        Packet::Event { name, args, .. } => {
            assert_eq!((name.as_str(), args.len()), ("nils", 200_000));
        }
        other => panic!("expected the smaller emit, got {other:?}"),
    }

    // Socket.IO to native: 1,000,001 bytes of JSON would be 2,250,005 of MessagePack.
    let floats = format!("[{}]", vec!["1.5"; 250_000].join(","));
    s.emit_raw("P2P_EMIT", &emit_payload("N", "floats", &floats), false)
        .await;
    match s.event("SERVER_ERROR").await {
        Packet::Event { args, .. } => assert_eq!(
            args,
            vec![json!(format!(
                "payload of 2250005 bytes exceeds the limit of {limit} bytes"
            ))]
        ),
        other => panic!("{other:?}"),
    }
    // Both are served on: the next emits arrive, and nothing else did.
    s.emit_raw("P2P_EMIT", &emit_payload("N", "after", "[1]"), false)
        .await;
    match n.next().await {
        ServerFrame::Deliver { event, .. } => assert_eq!(event, "after"),
        other => panic!("expected the next emit, got {other:?}"),
    }
    n.send(&ClientFrame::Emit {
        target: "S".into(),
        event: "after".into(),
        args: common::msgpack(&[0x91, 0x01]),
        ack: None,
    })
    .await;
    match s.next().await {
        Packet::Event { name, args, .. } => {
            assert_eq!((name.as_str(), args), ("after", vec![json!(1)]))
        }
        other => panic!("expected the next emit, got {other:?}"),
    }
    relay.shutdown().await;
}

#[tokio::test]
async fn arguments_whose_messagepack_form_is_over_the_limit_are_refused_to_their_sender() {
    let relay = Relay::start(&[]).await;
    let mut s = Sio::connect(relay.socketio_addr(), "S").await;
    let mut n = relay.raw("N").await;
    pair_native_with_sio(&mut n, &mut s, "S").await;

    // 600 KB of JSON, under the limit; `1.5` is 3 bytes of JSON and 9 of MessagePack, so
    // the native peer would be sent 1,350,005 bytes (an array header of 5).
    let args = format!("[{}]", vec!["1.5"; 150_000].join(","));
    assert!(args.len() < 1024 * 1024);
    let expected = "payload of 1350005 bytes exceeds the limit of 1048576 bytes";
    let id = s
        .emit_raw(
            "P2P_EMIT_ACKNOWLEDGE",
            &emit_payload("N", "big", &args),
            true,
        )
        .await
        .unwrap();
    assert_eq!(s.ack(id).await, vec![json!({ "error": expected })]);
    match s.event("SERVER_ERROR").await {
        Packet::Event { args, .. } => assert_eq!(args, vec![json!(expected)]),
        other => panic!("{other:?}"),
    }
    // The native peer got nothing of it, and the next emit reaches it.
    s.emit_raw("P2P_EMIT", &emit_payload("N", "after", "[1]"), false)
        .await;
    match n.next().await {
        ServerFrame::Deliver { event, args, .. } => {
            assert_eq!(event, "after");
            assert_eq!(&args[..], &[0x91, 0x01]);
        }
        other => panic!("expected the next emit, got {other:?}"),
    }
    relay.shutdown().await;
}
