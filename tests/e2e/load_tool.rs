//! The load tool's clients (benches/load) against the real relay, in-process: every pairing
//! of transports emits, acks and streams, so that a change of the gateway or the native
//! protocol that breaks the load tool (and so the benches) shows here, not in a bench run.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use p2p_relay::{Server, Settings};
use p2p_relay_load::endpoint::{Msg, PayloadKind, Target, Transport};
use p2p_relay_load::pair::{EmitOpts, Pair};
use p2p_relay_load::sio::Eio;
use p2p_relay_load::stats::Stats;

const KINDS: [Transport; 3] = [
    Transport::Sio(Eio::V3),
    Transport::Sio(Eio::V4),
    Transport::Quic,
];

async fn relay(dir: &std::path::Path) -> (Server, Target) {
    let server = Server::start(&Settings::on_free_local_ports(dir))
        .await
        .expect("relay");
    let target = Target {
        socketio: Some(format!("http://{}", server.socketio_addr())),
        quic: Some(server.quic_addr()),
        ca: Some(server.ca().expect("development CA").path.clone()),
        batch_writes: false,
        raw_quic: false,
    };
    (server, target)
}

fn opts(ack: bool, count: u64, window: usize) -> EmitOpts {
    EmitOpts {
        ack,
        window,
        rate: None,
        count: Some(count),
        until: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_transport_pair_emits_acks_and_streams() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, target) = relay(dir.path()).await;
    for (i, from) in KINDS.into_iter().enumerate() {
        for (j, to) in KINDS.into_iter().enumerate() {
            let what = format!("{} -> {}", from.name(), to.name());
            let stats = Arc::new(Stats::default());
            let (a, b) = (format!("t{i}{j}-a"), format!("t{i}{j}-b"));
            let mut pair = Pair::connect(&target, (from, to), (&a, &b), stats.clone())
                .await
                .unwrap_or_else(|e| panic!("{what}: {e:#}"));
            for kind in [PayloadKind::Small, PayloadKind::Binary16k] {
                let msg = Msg::new(kind, &b);
                let done = pair.emit_loop(&msg, &opts(false, 200, 32)).await.unwrap();
                assert_eq!(done, 200, "{what}: emits");
                let done = pair.emit_loop(&msg, &opts(true, 100, 8)).await.unwrap();
                assert_eq!(done, 100, "{what}: acked emits");
            }
            pair.open_stream()
                .await
                .unwrap_or_else(|e| panic!("{what}: stream: {e:#}"));
            pair.pump(Some(512 * 1024), None).await.unwrap();
            assert!(
                stats.stream_bytes.load(Ordering::Relaxed) >= 512 * 1024,
                "{what}: stream bytes"
            );
            assert_eq!(
                stats.errors.load(Ordering::Relaxed),
                0,
                "{what}: {:?}",
                stats.first_error.lock().unwrap()
            );
            pair.close().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bare_forwarder_relays_what_the_load_tool_sends() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = Target {
        socketio: Some(format!("http://{}", listener.local_addr().unwrap())),
        quic: None,
        ca: None,
        batch_writes: true,
        raw_quic: false,
    };
    tokio::spawn(p2p_relay_load::bare::serve(listener));
    let stats = Arc::new(Stats::default());
    let sio = Transport::Sio(Eio::V3);
    let mut pair = Pair::connect(&target, (sio, sio), ("A", "B"), stats.clone())
        .await
        .unwrap();
    for kind in [PayloadKind::Small, PayloadKind::Binary16k] {
        let msg = Msg::new(kind, "B");
        assert_eq!(
            pair.emit_loop(&msg, &opts(false, 200, 32)).await.unwrap(),
            200
        );
        assert_eq!(
            pair.emit_loop(&msg, &opts(true, 100, 8)).await.unwrap(),
            100
        );
    }
    pair.open_stream().await.unwrap();
    pair.pump(Some(256 * 1024), None).await.unwrap();
    assert_eq!(stats.errors.load(Ordering::Relaxed), 0);
}
