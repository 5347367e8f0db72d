//! The relay on its defaults (no flag but its ports) carries what legitimate clients of the
//! Node original do: a sender emitting as fast as it can, and thousands of clients from one
//! address. docs/LIMITS.md says which limits are on by default and why; the tests of each
//! limit set that limit (tests/e2e/security.rs).

use crate::common;
use crate::sio;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::Relay;
use futures::StreamExt;
use serde_json::{json, Value};
use sio::{server_errors, Packet, Sio};

/// Generous for a loaded 2-core CI machine; each step takes a second or two here.
const LONG: Duration = Duration::from_secs(60);

async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(LONG, fut).await {
        Ok(value) => value,
        Err(_) => panic!("timed out after {LONG:?}: {what}"),
    }
}

fn emit_payload(target: &str, event: &str, args: &str) -> String {
    format!(
        "{{\"targetClientId\":{},\"event\":{},\"args\":{args}}}",
        json!(target),
        json!(event)
    )
}

/// Far more than any per-client request burst a relay could have by default (the old
/// default was 2,000 at once, then 1,000 a second).
const BURST: usize = 20_000;

/// Events the sender has ahead of its receiver at most: below `--outbox-messages` (1024),
/// the queue that protects the relay from a receiver that does not keep up (this test's
/// reader shares two threads with the sender). A 1.4.1 client is slower than the relay and
/// needs no window (tests/interop/load.js --window 0).
const WINDOW: usize = 512;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fast_sender_gets_everything_delivered() {
    let relay = Relay::start(&[]).await;
    let addr = relay.socketio_addr();
    let mut a = Sio::connect(addr, "A").await;
    let mut b = Sio::connect(addr, "B").await;
    a.pair_with(&mut b, "B").await;
    let seen_by_b = Arc::new(AtomicUsize::new(0));
    let progress = seen_by_b.clone();
    let receiving = tokio::spawn(async move {
        let mut seen = 0usize;
        within("every emit to arrive", async {
            while seen < BURST {
                match b.next().await {
                    Packet::Event { name, args, .. } if name == "e" => {
                        assert_eq!(args, vec![Value::from(seen)], "in order");
                        seen += 1;
                        progress.store(seen, Ordering::Relaxed);
                    }
                    Packet::Disconnected => panic!("B was disconnected after {seen}"),
                    _ => {}
                }
            }
        })
        .await;
        b
    });
    within("the sender to send everything", async {
        for i in 0..BURST {
            while i - seen_by_b.load(Ordering::Relaxed) >= WINDOW {
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            a.emit_raw(
                "P2P_EMIT",
                &emit_payload("B", "e", &format!("[{i}]")),
                false,
            )
            .await;
        }
    })
    .await;
    let b = receiving.await.expect("the receiver");
    // Nothing was refused: A is told of no error (a refusal would be a SERVER_ERROR).
    let mut told = Vec::new();
    while let Some(packet) = a.next_within(Duration::from_millis(300)).await {
        told.push(packet);
    }
    assert_eq!(server_errors(&told), Vec::<String>::new());
    a.close().await;
    b.close().await;
    relay.shutdown().await;
}

/// Clients from 127.0.0.1 alone, as behind a NAT or a proxy.
const CLIENTS: usize = 2_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_clients_from_one_address_connect_and_pair() {
    let relay = Relay::start(&[]).await;
    let addr = relay.socketio_addr();
    let mut clients: Vec<(usize, Sio)> = within(
        "every client to connect",
        futures::stream::iter(0..CLIENTS)
            .map(|i| async move { (i, Sio::connect(addr, &format!("c{i}")).await) })
            .buffer_unordered(64)
            .collect(),
    )
    .await;
    clients.sort_by_key(|(i, _)| *i);
    let mut clients: Vec<Sio> = clients.into_iter().map(|(_, sio)| sio).collect();
    for (pair, two) in clients.chunks_mut(2).enumerate() {
        let [a, b] = two else {
            unreachable!("CLIENTS is even")
        };
        a.pair_with(b, &format!("c{}", 2 * pair + 1)).await;
    }
    for (pair, two) in clients.chunks_mut(2).enumerate() {
        let [a, b] = two else {
            unreachable!("CLIENTS is even")
        };
        let target = format!("c{}", 2 * pair + 1);
        a.emit_raw(
            "P2P_EMIT",
            &emit_payload(&target, "hi", &format!("[{pair}]")),
            false,
        )
        .await;
        match b.event("hi").await {
            Packet::Event { args, .. } => assert_eq!(args, vec![Value::from(pair)]),
            other => panic!("pair {pair}: {other:?}"),
        }
    }
    for sio in clients {
        sio.close().await;
    }
    relay.shutdown().await;
}
