//! Cluster mode end to end: relay nodes in this process (`Server::start` with `--cluster`)
//! sharing one real `redis-server` that each test starts on a free loopback port. A pair
//! split across nodes does what a pair on one node does, for QUIC <-> QUIC, Socket.IO <->
//! Socket.IO and Socket.IO <-> QUIC: pairing (and a race for one target), emits, acks with
//! binary, lists covering the cluster, unregister, streams with their bytes hashed, and
//! the duplicate-id policies. Failures (a node killed, Redis stopped) are in
//! `cluster_failures.rs`. Run alone: `cargo test --release --test cluster`.

mod common;
mod redis;
mod sio;

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
    let Some(redis) = Redis::start().await else { return };
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
