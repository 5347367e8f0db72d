//! Cluster mode when things fail: a node killed with SIGKILL mid-stream (its peers on the
//! other node are told and freed within the lease plus a second, its streams reset with
//! the peer-gone code, the directory forgets its clients), and Redis stopped for a few
//! seconds then started again (local pairs keep working, cross-node requests are
//! answered at once with the cluster-unavailable error, `LIST_CLIENTS` with this node's
//! clients and a partial-list `SERVER_ERROR`, newcomers are admitted under the default
//! `replace` policy and refused under `reject`, and cross-node pairs work again
//! afterwards). Run alone: `cargo test --release --test e2e cluster_failures::`.

use crate::common;
use crate::redis;
use crate::sio;

use std::time::{Duration, Instant};

use common::{next, pair, within, Relay};
use native_client::wire::ResetCode;
use native_client::{Args, Client, ClientError, ClientEvent, ErrorCode};
use redis::Redis;
use serde_json::json;
use sio::{Packet, Sio};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LEASE_MS: u64 = 1_000;
/// What the issue allows between a node's death and its peers being told.
const TOLD_WITHIN: Duration = Duration::from_millis(LEASE_MS + 1_000);

fn flags(redis: &Redis, extra: &[&str]) -> Vec<String> {
    let mut flags = redis.node_flags(LEASE_MS);
    flags.extend(extra.iter().map(|s| s.to_string()));
    flags
}

async fn binary_node(redis: &Redis) -> Relay {
    let flags = flags(redis, &[]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    Relay::start_binary(&flags).await
}

async fn node(redis: &Redis) -> Relay {
    let flags = flags(redis, &[]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    Relay::start(&flags).await
}

fn sigkill(relay: &Relay) {
    let pid = relay.pid().expect("a child process");
    let status = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
}

/// Waits for `PeerDisconnected`, letting stream closings pass.
async fn peer_disconnected(incoming: &mut native_client::Incoming) {
    loop {
        match next(incoming).await {
            ClientEvent::PeerDisconnected => return,
            // Streams end with the pairing; failed requests are also reported as notices.
            ClientEvent::StreamClosed(_) | ClientEvent::ServerError { .. } => {}
            other => panic!("expected PeerDisconnected, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_killed_node_frees_its_peers_within_the_lease() {
    redis::logs();
    let Some(redis) = Redis::start().await else {
        return;
    };
    let n1 = binary_node(&redis).await;
    let n2 = binary_node(&redis).await;

    // A (n1) opens a stream to B (n2); D (n2) opens one to C (n1): the survivor is the
    // opener of one and the acceptor of the other. S and T are a Socket.IO pair.
    let (a, mut a_in) = n1.connect("A").await;
    let (b, mut b_in) = n2.connect("B").await;
    pair(&a, &b, &mut b_in).await;
    let (a_stream, _b_stream) = common::open_stream(&a, &mut b_in).await;
    let (c, mut c_in) = n1.connect("C").await;
    let (d, mut d_in) = n2.connect("D").await;
    pair(&d, &c, &mut c_in).await;
    let (_d_stream, c_stream) = common::open_stream(&d, &mut c_in).await;
    let mut s = Sio::connect(n1.socketio_addr(), "S").await;
    let mut t = Sio::connect(n2.socketio_addr(), "T").await;
    let q = s
        .emit_raw("P2P_REGISTER", &json!("T").to_string(), true)
        .await
        .unwrap();
    match t.event("P2P_REGISTER").await {
        Packet::Event { ack: Some(id), .. } => t.answer(id, &[json!(true)]).await,
        other => panic!("{other:?}"),
    }
    assert_eq!(s.ack(q).await, vec![json!(true)]);
    assert_eq!(
        within("list", a.list_clients()).await.unwrap(),
        vec!["A", "B", "C", "D", "S", "T"]
    );

    // Bytes flowing A -> B when n2 dies.
    let (mut a_read, mut a_write) = a_stream.split();
    let writing = tokio::spawn(async move {
        let chunk = vec![7u8; 16 * 1024];
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Err(e) = a_write.write_all(&chunk).await {
                return Some(e);
            }
        }
        None
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let killed = Instant::now();
    sigkill(&n2);
    drop((b, d, t));

    within("A told", peer_disconnected(&mut a_in)).await;
    let a_told = killed.elapsed();
    within("C told", peer_disconnected(&mut c_in)).await;
    s.event("P2P_DISCONNECT").await;
    let all_told = killed.elapsed();
    assert!(a_told <= TOLD_WITHIN, "A told after {a_told:?}");
    assert!(all_told <= TOLD_WITHIN, "everyone told after {all_told:?}");

    // The streams were reset with the peer-gone code, at both survivors.
    let write_error = within("the writer failing", writing)
        .await
        .unwrap()
        .expect("the write side failed");
    assert_eq!(
        common::stream_code(&write_error),
        Some(ResetCode::PeerGone),
        "{write_error}"
    );
    let mut buf = [0u8; 16];
    let read_error = within("A's read side", a_read.read(&mut buf)).await;
    assert!(read_error.is_err(), "{read_error:?}");
    let (mut c_read, _c_write) = c_stream.split();
    let mut sink = Vec::new();
    let c_error = within("C's stream", c_read.read_to_end(&mut sink))
        .await
        .expect_err("reset, not finished");
    assert_eq!(
        common::stream_code(&c_error),
        Some(ResetCode::PeerGone),
        "{c_error}"
    );

    // The directory forgot n2's clients; the survivors are free and pair again.
    assert_eq!(
        within("list", a.list_clients()).await.unwrap(),
        vec!["A", "C", "S"]
    );
    assert_eq!(a.target(), None);
    pair(&a, &c, &mut c_in).await;
    let _ = &mut d_in;
    n1.shutdown().await;
}

/// Registers `asker` with `target`, answering on the target's side; returns the reply.
async fn try_pair(
    asker: &Client,
    target: &Client,
    target_in: &mut native_client::Incoming,
) -> Result<bool, ClientError> {
    let asking = tokio::spawn({
        let (asker, id) = (asker.clone(), target.client_id().to_owned());
        async move { asker.register(&id).await }
    });
    let answering = async {
        if let Ok(Some(ClientEvent::RegisterRequest(r))) =
            tokio::time::timeout(Duration::from_secs(3), target_in.next()).await
        {
            r.accept();
        }
    };
    let (asked, ()) = tokio::join!(asking, answering);
    asked.expect("register task")
}

#[tokio::test]
async fn redis_stopped_and_started_again() {
    redis::logs();
    let Some(mut redis) = Redis::start().await else {
        return;
    };
    let n1 = node(&redis).await;
    let n2 = node(&redis).await;
    let (l1, mut l1_in) = n1.connect("L1").await;
    let (l2, mut l2_in) = n1.connect("L2").await;
    pair(&l1, &l2, &mut l2_in).await;
    let (x, mut x_in) = n1.connect("X").await;
    let (y, mut y_in) = n2.connect("Y").await;
    pair(&x, &y, &mut y_in).await;
    let (q, _q_in) = n1.connect("Q").await;
    let (z, mut z_in) = n2.connect("Z").await;

    redis.stop();
    let stopped = Instant::now();
    // Give the nodes a moment to notice (their bus subscription drops at once).
    tokio::time::sleep(Duration::from_millis(300)).await;

    // A local pair keeps working, with acks.
    async fn local_round(l1: &Client, l2_in: &mut native_client::Incoming, n: u64) {
        let asking = tokio::spawn({
            let l1 = l1.clone();
            async move { l1.emit_with_ack("local", Args::one(n)).await }
        });
        match next(l2_in).await {
            ClientEvent::Event {
                ack: Some(ack),
                args,
                ..
            } => {
                assert_eq!(args, Args::one(n));
                ack.send(Args::one(n + 1)).unwrap();
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            within("local ack", asking).await.unwrap().unwrap(),
            Args::one(n + 1)
        );
    }
    local_round(&l1, &mut l2_in, 1).await;

    // Cross-node requests are answered at once, with the cluster-unavailable error.
    let started = Instant::now();
    match within("cross-node ack", x.emit_with_ack("far", Args::one(1))).await {
        Err(ClientError::Request { code, message }) => {
            assert_eq!(code, ErrorCode::Unavailable, "{message}");
            assert!(message.contains("cluster is unreachable"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    match within("cross-node register", q.register("Z")).await {
        Err(ClientError::Request { code, .. }) => assert_eq!(code, ErrorCode::Unavailable),
        other => panic!("{other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "answered at once"
    );
    // Newcomers are admitted (their ids are unique on this node, the default policy
    // replaces a duplicate anyway), pair with a local peer and talk; pairing with a
    // client of another node gets the cluster-unavailable error.
    let (n, _n_in) = within("newcomer N", Client::connect(n1.options("N")))
        .await
        .expect("a newcomer is admitted while Redis is away");
    let mut m = Sio::connect(n1.socketio_addr(), "M").await;
    let asking = tokio::spawn({
        let n = n.clone();
        async move { n.register("M").await }
    });
    match m.event("P2P_REGISTER").await {
        Packet::Event { ack: Some(id), .. } => m.answer(id, &[json!(true)]).await,
        other => panic!("{other:?}"),
    }
    assert!(within("N pairs with M", asking).await.unwrap().unwrap());
    within("N emits", n.emit("hello", Args::one("from N")))
        .await
        .unwrap();
    match m.event("hello").await {
        Packet::Event { args, .. } => assert_eq!(args, vec![json!("from N")]),
        other => panic!("{other:?}"),
    }
    let (p, mut p_in) = within("newcomer P", Client::connect(n1.options("P")))
        .await
        .unwrap();
    match within("newcomer to Z", p.register("Z")).await {
        Err(ClientError::Request { code, .. }) => assert_eq!(code, ErrorCode::Unavailable),
        other => panic!("{other:?}"),
    }
    // The failure comes as a notice too: taken here, so that P's next event is W's request.
    match next(&mut p_in).await {
        ClientEvent::ServerError { .. } => {}
        other => panic!("{other:?}"),
    }
    // The legacy list is this node's clients, in the 1.4.1 shape (one array argument),
    // with a SERVER_ERROR saying it is partial; a native list fails instead.
    let q_list = m.emit_raw("LIST_CLIENTS", "", true).await.unwrap();
    assert_eq!(
        m.ack(q_list).await,
        vec![json!(["L1", "L2", "M", "N", "P", "Q", "X"])]
    );
    match m.event("SERVER_ERROR").await {
        Packet::Event { args, .. } => assert_eq!(
            args,
            vec![json!(
                "client list is partial: the cluster directory is unreachable, so only the \
                 clients of this relay node are listed"
            )]
        ),
        other => panic!("{other:?}"),
    }
    match within("native list", x.list_clients()).await {
        Err(ClientError::Request { code, .. }) => assert_eq!(code, ErrorCode::Unavailable),
        other => panic!("{other:?}"),
    }
    // The cross-node pair ends once the lease is over (each side takes the other for
    // gone); the local pair is untouched.
    within("X told", peer_disconnected(&mut x_in)).await;
    within("Y told", peer_disconnected(&mut y_in)).await;
    local_round(&l1, &mut l2_in, 3).await;
    let outage = Duration::from_secs(3).saturating_sub(stopped.elapsed());
    tokio::time::sleep(outage).await;

    redis.restart().await;
    // The nodes rejoin by themselves: cross-node pairing works again (bounded retries).
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match try_pair(&q, &z, &mut z_in).await {
            Ok(true) => break,
            other if Instant::now() < deadline => {
                let _ = other;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            other => panic!("cross-node pairing did not come back: {other:?}"),
        }
    }
    // Emits and acks cross again, the old cross-node pair pairs again, the list covers
    // both nodes, and the local pair held all along.
    let asking = tokio::spawn({
        let q = q.clone();
        async move { q.emit_with_ack("again", Args::one(7)).await }
    });
    match next(&mut z_in).await {
        ClientEvent::Event { ack: Some(ack), .. } => ack.send(Args::one(8)).unwrap(),
        other => panic!("{other:?}"),
    }
    assert_eq!(within("ack", asking).await.unwrap().unwrap(), Args::one(8));
    pair(&x, &y, &mut y_in).await;
    // The newcomers admitted during the outage are in the directory: seen from the other
    // node, and reachable from it.
    assert_eq!(
        within("list", y.list_clients()).await.unwrap(),
        vec!["L1", "L2", "M", "N", "P", "Q", "X", "Y", "Z"]
    );
    let (w, _w_in) = n2.connect("W").await;
    let asking = tokio::spawn({
        let w = w.clone();
        async move { w.register("P").await }
    });
    loop {
        match next(&mut p_in).await {
            ClientEvent::RegisterRequest(r) => break r.accept(),
            // The notice of P's failed pairing during the outage.
            ClientEvent::ServerError { .. } => {}
            other => panic!("{other:?}"),
        }
    }
    assert!(
        within("W pairs with P", asking).await.unwrap().unwrap(),
        "W (n2) pairs with P (n1), admitted during the outage"
    );
    local_round(&l1, &mut l2_in, 5).await;
    let _ = &mut l1_in;
    n1.shutdown().await;
    n2.shutdown().await;
}

/// Under `--duplicate-policy reject` a node that cannot reach Redis cannot tell whether
/// another node holds an id, so it refuses newcomers, saying why; a duplicate of one of its
/// own clients is refused as a duplicate; once Redis is back, newcomers are admitted again.
#[tokio::test]
async fn reject_policy_refuses_newcomers_while_redis_is_away() {
    redis::logs();
    let Some(mut redis) = Redis::start().await else {
        return;
    };
    let flags = flags(&redis, &["--duplicate-policy", "reject"]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let n1 = Relay::start(&flags).await;
    let (_a, _a_in) = n1.connect("A").await;

    redis.stop();
    tokio::time::sleep(Duration::from_millis(300)).await;
    match within("connect", Client::connect(n1.options("new"))).await {
        Err(ClientError::Refused { message, .. }) => {
            assert!(message.contains("cluster is unreachable"), "{message}");
            assert!(message.contains("--duplicate-policy reject"), "{message}");
        }
        other => panic!("a newcomer admitted under reject: {other:?}"),
    }
    match within("duplicate", Client::connect(n1.options("A"))).await {
        Err(ClientError::Refused { message, .. }) => {
            assert!(message.contains("already connected"), "{message}")
        }
        other => panic!("a duplicate admitted under reject: {other:?}"),
    }

    redis.restart().await;
    let deadline = Instant::now() + Duration::from_secs(15);
    let (newcomer, _in) = loop {
        match Client::connect(n1.options("new")).await {
            Ok(connected) => break connected,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => panic!("newcomers still refused after Redis came back: {e}"),
        }
    };
    assert_eq!(
        within("list", newcomer.list_clients()).await.unwrap(),
        vec!["A", "new"]
    );
    n1.shutdown().await;
}

/// `replace` across an outage: a client that connected again to another node while Redis
/// was away is the newer connection, so once Redis is back its older connection is closed
/// as replaced (whichever node reaches Redis first), and the id is the newcomer's.
#[tokio::test]
async fn a_newcomer_of_the_outage_replaces_its_older_connection_on_another_node() {
    redis::logs();
    let Some(mut redis) = Redis::start().await else {
        return;
    };
    // n1 renews its lease every 1.3 s, n2 every 0.3 s: n2 claims its older K again first,
    // so the newer K must take the id from it (not merely find it free).
    let slow = redis.node_flags(4_000);
    let slow: Vec<&str> = slow.iter().map(String::as_str).collect();
    let n1 = Relay::start(&slow).await;
    let n2 = node(&redis).await;
    let (_old, mut old_in) = n2.connect("K").await;
    let (f, _f_in) = n2.connect("F").await;

    redis.stop();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (new, mut new_in) = within("K again, on n1", Client::connect(n1.options("K")))
        .await
        .expect("admitted while Redis is away");
    tokio::time::sleep(Duration::from_millis(500)).await;
    redis.restart().await;

    let closed = within("the older K closed", async {
        loop {
            match old_in.next().await {
                Some(ClientEvent::Closed(reason)) => break Some(reason),
                Some(_) => continue,
                None => break None,
            }
        }
    })
    .await;
    assert!(
        matches!(
            closed,
            Some(native_client::CloseReason::Relay {
                code: native_client::wire::CloseCode::Replaced,
                ..
            })
        ),
        "{closed:?}"
    );
    // F (n2) finds K on n1 (bounded retries while the nodes settle).
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match try_pair(&f, &new, &mut new_in).await {
            Ok(true) => break,
            other if Instant::now() < deadline => {
                let _ = other;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            other => panic!("F could not pair with the newer K: {other:?}"),
        }
    }
    assert_eq!(
        within("list", f.list_clients()).await.unwrap(),
        vec!["F", "K"]
    );
    n1.shutdown().await;
    n2.shutdown().await;
}
