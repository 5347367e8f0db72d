//! Cluster mode end to end: relay nodes in this process (`Server::start` with `--cluster`)
//! sharing one real `redis-server` that each test starts on a free loopback port. A pair
//! split across nodes does what a pair on one node does, for QUIC <-> QUIC, Socket.IO <->
//! Socket.IO and Socket.IO <-> QUIC: pairing (and a race for one target), emits, acks with
//! binary, lists covering the cluster, unregister, streams with their bytes hashed, and
//! the duplicate-id policies. Failures (a node killed, Redis stopped) are in
//! `cluster_failures.rs`. Run alone: `cargo test --release --test e2e cluster::`.

use crate::common;
use crate::redis;
use crate::sio;

use std::time::Duration;

use common::{next, pair, within, Relay};
use native_client::rmpv::Value;
use native_client::wire::CloseCode;
use native_client::{Args, Client, ClientError, ClientEvent, CloseReason, RequestKind};
use redis::Redis;
use serde_json::json;
use sio::{Packet, Sio};
use tokio::io::AsyncReadExt;

const LEASE_MS: u64 = 2_000;

async fn node(redis: &Redis, extra: &[&str]) -> Relay {
    let mut flags = redis.node_flags(LEASE_MS);
    flags.extend(extra.iter().map(|s| s.to_string()));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    Relay::start(&flags).await
}

fn rich() -> Args {
    Args::new()
        .with("é")
        .with(u64::MAX)
        .with(Value::F64(0.25))
        .with(Value::Nil)
        .with(Value::Map(vec![(
            Value::from("buf"),
            Value::Binary(vec![0, 255, 7]),
        )]))
        .with(Value::Binary(common::random_bytes(3, 50_000)))
}

/// The client list as each side sees it, sorted, covering every node.
async fn listed(client: &Client) -> Vec<String> {
    within("list", client.list_clients()).await.expect("list")
}

#[tokio::test]
async fn quic_pair_across_two_nodes() {
    redis::logs();
    let Some(redis) = Redis::start().await else {
        return;
    };
    let n1 = node(&redis, &[]).await;
    let n2 = node(&redis, &[]).await;
    let (a, mut a_in) = n1.connect("A").await;
    let (b, mut b_in) = n2.connect("B").await;
    assert_eq!(listed(&a).await, vec!["A", "B"]);
    assert_eq!(listed(&b).await, vec!["A", "B"]);
    pair(&a, &b, &mut b_in).await;

    // Emits and acks with binary, both ways, byte-exact.
    a.emit("hello", rich()).await.unwrap();
    match next(&mut b_in).await {
        ClientEvent::Event { event, args, ack } => {
            assert_eq!(event, "hello");
            assert_eq!(args.encode(), rich().encode());
            assert!(ack.is_none());
        }
        other => panic!("{other:?}"),
    }
    let asking = tokio::spawn({
        let b = b.clone();
        async move { b.emit_with_ack("add", Args::one(2).with(3)).await }
    });
    match next(&mut a_in).await {
        ClientEvent::Event { event, ack, .. } => {
            assert_eq!(event, "add");
            ack.expect("an ack is wanted").send(rich().with(5)).unwrap();
        }
        other => panic!("{other:?}"),
    }
    let answer = within("the ack", asking).await.unwrap().unwrap();
    assert_eq!(answer.encode(), rich().with(5).encode());

    // Order holds across the nodes: many emits arrive in sequence.
    for n in 0..200u64 {
        a.emit("seq", Args::one(n)).await.unwrap();
    }
    for n in 0..200u64 {
        match next(&mut b_in).await {
            ClientEvent::Event { args, .. } => assert_eq!(args, Args::one(n)),
            other => panic!("{other:?}"),
        }
    }

    // A spliced stream over the node link, both ways, hashes checked.
    let (mine, theirs) = common::open_stream(&a, &mut b_in).await;
    let (mut my_read, my_write) = mine.split();
    let (mut their_read, their_write) = theirs.split();
    let up = common::random_bytes(10, 3 * 1024 * 1024);
    let down = common::random_bytes(11, 2 * 1024 * 1024);
    let (sent_up, sent_down, got_up, got_down) = within("streams both ways", async {
        tokio::join!(
            common::write_and_finish(my_write, &up),
            common::write_and_finish(their_write, &down),
            common::read_to_eof(&mut their_read),
            common::read_to_eof(&mut my_read),
        )
    })
    .await;
    assert_eq!(got_up.unwrap(), (up.len(), sent_up.unwrap()));
    assert_eq!(got_down.unwrap(), (down.len(), sent_down.unwrap()));

    // Unregister: the other end is told, both are free again.
    within("unregister", a.unregister()).await.unwrap();
    loop {
        match next(&mut b_in).await {
            ClientEvent::Unregistered => break,
            ClientEvent::StreamClosed(_) => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(a.target(), None);
    // Both ends hear of it (the asker too), the streams closed first.
    loop {
        match next(&mut a_in).await {
            ClientEvent::Unregistered => break,
            ClientEvent::StreamClosed(_) => {}
            other => panic!("{other:?}"),
        }
    }
    // And they pair again, the other way round.
    pair(&b, &a, &mut a_in).await;
    n1.shutdown().await;
    n2.shutdown().await;
}

fn emit_payload(target: &str, event: &str, args: &str) -> String {
    format!(
        "{{\"targetClientId\":{},\"event\":{},\"args\":{args}}}",
        json!(target),
        json!(event)
    )
}

/// Answers question `id` with `args` (text, with placeholders) and binary `attachments`.
async fn answer_binary(sio: &mut Sio, id: u64, args: &str, attachments: &[&[u8]]) {
    sio.send_text(&format!("46{}-{id}[{args}]", attachments.len()))
        .await;
    for data in attachments {
        sio.send_binary(data).await;
    }
}

const PLACEHOLDER: &str = r#"{"_placeholder":true,"num":0}"#;

#[tokio::test]
async fn socketio_pair_across_two_nodes() {
    redis::logs();
    let Some(redis) = Redis::start().await else {
        return;
    };
    let n1 = node(&redis, &[]).await;
    let n2 = node(&redis, &[]).await;
    let mut a = Sio::connect(n1.socketio_addr(), "A").await;
    let mut b = Sio::connect(n2.socketio_addr(), "B").await;
    assert_eq!(
        a.request("LIST_CLIENTS", &[]).await,
        vec![json!(["A", "B"])]
    );
    a.pair_with(&mut b, "B").await;

    // An emit with binary, then an ack with binary, across the nodes.
    let args = format!(r#"["x",{PLACEHOLDER},{{"n":1}}]"#);
    a.emit_binary(
        "P2P_EMIT",
        &emit_payload("B", "bin", &args),
        &[b"AA"],
        false,
    )
    .await;
    match b.event("bin").await {
        Packet::Event {
            args, attachments, ..
        } => {
            assert_eq!(args[0], json!("x"));
            assert_eq!(args[2], json!({"n": 1}));
            assert_eq!(attachments, vec![b"AA".to_vec()]);
        }
        other => panic!("{other:?}"),
    }
    let q = a
        .emit_raw(
            "P2P_EMIT_ACKNOWLEDGE",
            &emit_payload("B", "ask", "[1,2]"),
            true,
        )
        .await
        .unwrap();
    match b.event("ask").await {
        Packet::Event {
            args,
            ack: Some(id),
            ..
        } => {
            assert_eq!(args, vec![json!(1), json!(2)]);
            answer_binary(&mut b, id, &format!(r#""sum",{PLACEHOLDER}"#), &[b"\x03"]).await;
        }
        other => panic!("{other:?}"),
    }
    let acked = a.ack_with_attachments(q).await;
    assert_eq!(acked.0[0], json!("sum"));
    assert_eq!(acked.1, vec![b"\x03".to_vec()]);

    // A legacy stream: the register, then acknowledged chunks, hashed.
    let q = a
        .emit_raw("P2P_REGISTER_STREAM", &json!("B").to_string(), true)
        .await
        .unwrap();
    match b.event("P2P_REGISTER_STREAM").await {
        Packet::Event { ack: Some(id), .. } => b.answer(id, &[json!(true)]).await,
        other => panic!("{other:?}"),
    }
    assert_eq!(a.ack(q).await, vec![json!(true)]);
    let data = common::random_bytes(20, 40 * 16 * 1024);
    let mut got = Vec::new();
    for chunk in data.chunks(16 * 1024) {
        let q = a
            .emit_binary(
                "P2P_EMIT_ACKNOWLEDGE",
                &emit_payload("B", "P2P_EMIT_STREAM", &format!("[{PLACEHOLDER}]")),
                &[chunk],
                true,
            )
            .await
            .unwrap();
        match b.event("P2P_EMIT_STREAM").await {
            Packet::Event {
                attachments,
                ack: Some(id),
                ..
            } => {
                got.extend_from_slice(&attachments[0]);
                b.answer(id, &[]).await;
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(a.ack(q).await, Vec::<serde_json::Value>::new());
    }
    assert_eq!(common::sha256_hex(&got), common::sha256_hex(&data));

    // Unregister: both ends told, and free again.
    let q = a.emit_raw("P2P_UNREGISTER", "", true).await.unwrap();
    match b.event("P2P_UNREGISTER").await {
        Packet::Event { ack: Some(id), .. } => b.answer(id, &[]).await,
        Packet::Event { ack: None, .. } => {}
        other => panic!("{other:?}"),
    }
    a.ack(q).await;
    b.pair_with(&mut a, "A").await;
    // A disconnect across the nodes: the peer is told.
    a.close().await;
    b.event("P2P_DISCONNECT").await;
    assert_eq!(b.request("LIST_CLIENTS", &[]).await, vec![json!(["B"])]);
    n1.shutdown().await;
    n2.shutdown().await;
}

#[tokio::test]
async fn socketio_and_quic_across_two_nodes() {
    redis::logs();
    let Some(redis) = Redis::start().await else {
        return;
    };
    let n1 = node(&redis, &[]).await;
    let n2 = node(&redis, &[]).await;
    let (a, mut a_in) = n1.connect("A").await;
    let mut b = Sio::connect(n2.socketio_addr(), "B").await;
    // The native client asks, the Socket.IO one accepts.
    let register = tokio::spawn({
        let a = a.clone();
        async move { a.register("B").await }
    });
    match b.event("P2P_REGISTER").await {
        Packet::Event {
            args, ack: Some(q), ..
        } => {
            assert_eq!(args, vec![json!("A")]);
            b.answer(q, &[json!(true)]).await;
        }
        other => panic!("{other:?}"),
    }
    assert!(within("register", register).await.unwrap().unwrap());

    // Native -> Socket.IO emit with binary; Socket.IO -> native ack with binary.
    let asking = tokio::spawn({
        let a = a.clone();
        async move {
            a.emit_with_ack("q", Args::one("x").with(Value::Binary(vec![1, 2, 3])))
                .await
        }
    });
    match b.event("q").await {
        Packet::Event {
            args,
            attachments,
            ack: Some(id),
            ..
        } => {
            assert_eq!(args[0], json!("x"));
            assert_eq!(attachments, vec![vec![1, 2, 3]]);
            answer_binary(&mut b, id, &format!(r#""ok",{PLACEHOLDER}"#), &[b"\x09"]).await;
        }
        other => panic!("{other:?}"),
    }
    let answer = within("ack", asking).await.unwrap().unwrap();
    assert_eq!(answer, Args::one("ok").with(Value::Binary(vec![9])));
    // Socket.IO -> native emit.
    b.emit_binary(
        "P2P_EMIT",
        &emit_payload("A", "back", &format!("[{PLACEHOLDER}]")),
        &[b"zz"],
        false,
    )
    .await;
    match next(&mut a_in).await {
        ClientEvent::Event { event, args, .. } => {
            assert_eq!(event, "back");
            assert_eq!(args, Args::one(Value::Binary(b"zz".to_vec())));
        }
        other => panic!("{other:?}"),
    }

    // A bridged stream: the native side writes, the Socket.IO side acks chunk by chunk;
    // then the Socket.IO side writes and the native side reads.
    let opening = tokio::spawn({
        let a = a.clone();
        async move { a.open_stream("B").await }
    });
    match b.event("P2P_REGISTER_STREAM").await {
        Packet::Event { ack: Some(id), .. } => b.answer(id, &[json!(true)]).await,
        other => panic!("{other:?}"),
    }
    let stream = within("open", opening)
        .await
        .unwrap()
        .unwrap()
        .expect("accepted");
    let (mut read, write) = stream.split();
    let up = common::random_bytes(30, 300 * 1024);
    let writer = tokio::spawn({
        let up = up.clone();
        async move {
            let mut write = write;
            tokio::io::AsyncWriteExt::write_all(&mut write, &up)
                .await
                .unwrap();
            tokio::io::AsyncWriteExt::flush(&mut write).await.unwrap();
            write
        }
    });
    let mut got = Vec::new();
    while got.len() < up.len() {
        match b.event("P2P_EMIT_STREAM").await {
            Packet::Event {
                attachments,
                ack: Some(id),
                ..
            } => {
                got.extend_from_slice(&attachments[0]);
                b.answer(id, &[]).await;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(common::sha256_hex(&got), common::sha256_hex(&up));
    let _write = within("writer", writer).await.unwrap();
    let down = common::random_bytes(31, 64 * 1024);
    for chunk in down.chunks(8 * 1024) {
        let q = b
            .emit_binary(
                "P2P_EMIT_ACKNOWLEDGE",
                &emit_payload("A", "P2P_EMIT_STREAM", &format!("[{PLACEHOLDER}]")),
                &[chunk],
                true,
            )
            .await
            .unwrap();
        b.ack(q).await;
    }
    let mut back = vec![0u8; down.len()];
    within("reading the bridged stream", read.read_exact(&mut back))
        .await
        .unwrap();
    assert_eq!(common::sha256_hex(&back), common::sha256_hex(&down));

    // The Socket.IO side unregisters; the native side hears of it.
    let q = b.emit_raw("P2P_UNREGISTER", "", true).await.unwrap();
    loop {
        match next(&mut a_in).await {
            ClientEvent::Unregistered => break,
            ClientEvent::StreamClosed(_) => {}
            other => panic!("{other:?}"),
        }
    }
    b.ack(q).await;
    assert_eq!(a.target(), None);
    n1.shutdown().await;
    n2.shutdown().await;
}

#[tokio::test]
async fn two_clients_on_two_nodes_racing_for_one_target_one_wins() {
    redis::logs();
    let Some(redis) = Redis::start().await else {
        return;
    };
    let n1 = node(&redis, &[]).await;
    let n2 = node(&redis, &[]).await;
    let n3 = node(&redis, &[]).await;
    for round in 0..5 {
        let t_id = format!("T{round}");
        let (t, mut t_in) = n1.connect(&t_id).await;
        let (a, _a_in) = n2.connect(&format!("A{round}")).await;
        let mut b = Sio::connect(n3.socketio_addr(), &format!("B{round}")).await;
        let a_asks = tokio::spawn({
            let (a, t_id) = (a.clone(), t_id.clone());
            async move { a.register(&t_id).await }
        });
        let b_asks = b
            .emit_raw("P2P_REGISTER", &json!(t_id).to_string(), true)
            .await
            .unwrap();
        // The target accepts whatever it is asked; the rules pick one winner.
        let answering = tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
            while let Ok(Some(event)) = tokio::time::timeout_at(deadline, t_in.next()).await {
                if let ClientEvent::RegisterRequest(request) = event {
                    assert_eq!(request.kind(), RequestKind::Register);
                    request.accept();
                }
            }
        });
        let a_won = within("A's answer", a_asks).await.unwrap().unwrap();
        let b_won = b.ack(b_asks).await == vec![json!(true)];
        assert!(
            a_won ^ b_won,
            "round {round}: exactly one winner (A {a_won}, B {b_won})"
        );
        if a_won {
            assert_eq!(a.target(), Some(t_id.clone()));
        } else {
            assert_eq!(a.target(), None);
        }
        answering.abort();
        b.close().await;
        a.close().await;
        t.close().await;
    }
    n1.shutdown().await;
    n2.shutdown().await;
    n3.shutdown().await;
}

#[tokio::test]
async fn duplicate_ids_across_nodes_follow_the_policy() {
    redis::logs();
    let Some(redis) = Redis::start().await else {
        return;
    };
    // Replace (the default): the newer connection on another node wins, the older one is
    // told and closed, its peer freed.
    let n1 = node(&redis, &[]).await;
    let n2 = node(&redis, &[]).await;
    let (old, mut old_in) = n1.connect("X").await;
    let (p, mut p_in) = n1.connect("P").await;
    pair(&p, &old, &mut old_in).await;
    let (new, _new_in) = n2.connect("X").await;
    let mut told = false;
    loop {
        match next(&mut old_in).await {
            ClientEvent::ServerError { message, .. } => {
                assert_eq!(message, "replaced by a newer connection with clientId 'X'");
                told = true;
            }
            ClientEvent::Closed(reason) => {
                assert!(
                    matches!(
                        &reason,
                        CloseReason::Relay {
                            code: CloseCode::Replaced,
                            ..
                        }
                    ),
                    "{reason:?}"
                );
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(told);
    assert!(matches!(
        next(&mut p_in).await,
        ClientEvent::PeerDisconnected
    ));
    assert_eq!(listed(&new).await, vec!["P", "X"]);
    // A Socket.IO newcomer replaces a native one the same way, across the nodes.
    let _sx = Sio::connect(n1.socketio_addr(), "X").await;
    assert!(matches!(
        within("the replaced connection closing", async {
            let mut incoming = _new_in;
            loop {
                match incoming.next().await {
                    Some(ClientEvent::Closed(reason)) => break Some(reason),
                    Some(_) => continue,
                    None => break None,
                }
            }
        })
        .await,
        Some(CloseReason::Relay {
            code: CloseCode::Replaced,
            ..
        })
    ));
    n1.shutdown().await;
    n2.shutdown().await;

    // Reject: the newcomer is refused wherever it arrives; the first is untouched.
    let Some(redis) = Redis::start().await else {
        return;
    };
    let r1 = node(&redis, &["--duplicate-policy", "reject"]).await;
    let r2 = node(&redis, &["--duplicate-policy", "reject"]).await;
    let (first, _first_in) = r1.connect("Y").await;
    match within("connect", Client::connect(r2.options("Y"))).await {
        Err(ClientError::Refused { code, message }) => {
            assert_eq!(code, CloseCode::Refused);
            assert_eq!(message, "clientId 'Y' is already connected");
        }
        other => panic!("{other:?}"),
    }
    match sio::Sio::connect_query(r2.socketio_addr(), "clientId=Y").await {
        Err(sio::ConnectFailure::Refused(message)) => {
            assert!(
                message.contains("clientId 'Y' is already connected"),
                "{message}"
            )
        }
        Err(other) => panic!("{other:?}"),
        Ok(_) => panic!("a duplicate Socket.IO client was admitted"),
    }
    assert_eq!(listed(&first).await, vec!["Y"]);
    r1.shutdown().await;
    r2.shutdown().await;
}

#[tokio::test]
async fn a_stream_across_nodes_keeps_back_pressure_end_to_end() {
    redis::logs();
    let Some(redis) = Redis::start().await else {
        return;
    };
    let n1 = node(&redis, &[]).await;
    let n2 = node(&redis, &[]).await;
    let (a, _a_in) = n1.connect("A").await;
    let (b, mut b_in) = n2.connect("B").await;
    pair(&a, &b, &mut b_in).await;
    let (mine, theirs) = common::open_stream(&a, &mut b_in).await;
    let (_my_read, mut my_write) = mine.split();
    let (mut their_read, _their_write) = theirs.split();
    const TOTAL: usize = 64 * 1024 * 1024;
    let written = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let writer = tokio::spawn({
        let written = written.clone();
        async move {
            let chunk = common::random_bytes(40, 64 * 1024);
            let mut sent = 0;
            while sent < TOTAL {
                tokio::io::AsyncWriteExt::write_all(&mut my_write, &chunk)
                    .await
                    .unwrap();
                sent += chunk.len();
                written.store(sent, std::sync::atomic::Ordering::SeqCst);
            }
            tokio::io::AsyncWriteExt::shutdown(&mut my_write)
                .await
                .unwrap();
        }
    });
    // The reader does not read: the writer is held back by the windows of the three QUIC
    // hops (client -> node 1 -> node 2 -> client), not by the relay's memory.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let held = written.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        held < 32 * 1024 * 1024,
        "{held} bytes written with nobody reading"
    );
    let (len, _hash) = within("reading it all", common::read_to_eof(&mut their_read))
        .await
        .unwrap();
    assert_eq!(len, TOTAL);
    within("writer", writer).await.unwrap();
    n1.shutdown().await;
    n2.shutdown().await;
}

#[tokio::test]
async fn the_native_list_pages_through_the_whole_cluster() {
    redis::logs();
    let Some(redis) = Redis::start().await else {
        return;
    };
    let nodes = [
        node(&redis, &[]).await,
        node(&redis, &[]).await,
        node(&redis, &[]).await,
    ];
    let mut clients = Vec::new();
    let mut ids = Vec::new();
    for i in 0..9 {
        let id = format!("c{i}");
        clients.push(nodes[i % 3].connect(&id).await);
        ids.push(id);
    }
    let mut sio = Sio::connect(nodes[1].socketio_addr(), "s").await;
    ids.push("s".into());
    // Pages of 4 from a client of node 0 cover every node's clients once, in order.
    let lister = &clients[0].0;
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..10 {
        let page = within("a page", lister.list_page(after.as_deref(), Some(4)))
            .await
            .unwrap();
        assert!(page.ids.len() <= 4);
        seen.extend(page.ids);
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, ids);
    // LIST_CLIENTS, one array, says the same.
    assert_eq!(sio.request("LIST_CLIENTS", &[]).await, vec![json!(ids)]);
    for n in nodes {
        n.shutdown().await;
    }
}

#[tokio::test]
async fn a_node_shut_down_tells_its_peers_and_leaves_the_directory() {
    redis::logs();
    let Some(redis) = Redis::start().await else {
        return;
    };
    let n1 = node(&redis, &[]).await;
    let n2 = node(&redis, &[]).await;
    let (a, mut a_in) = n1.connect("A").await;
    let (b, mut b_in) = n2.connect("B").await;
    pair(&a, &b, &mut b_in).await;
    let mut s = Sio::connect(n1.socketio_addr(), "S").await;
    let q = s
        .emit_raw("P2P_REGISTER", &json!("C").to_string(), true)
        .await
        .unwrap();
    assert_eq!(s.ack(q).await, vec![json!(false)]);
    let started = std::time::Instant::now();
    n2.shutdown().await;
    match next(&mut a_in).await {
        ClientEvent::PeerDisconnected => {}
        other => panic!("{other:?}"),
    }
    // Told by B's own node as it closed B, not by the lease lapsing.
    assert!(
        started.elapsed() < Duration::from_millis(LEASE_MS),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(listed(&a).await, vec!["A", "S"]);
    n1.shutdown().await;
}
