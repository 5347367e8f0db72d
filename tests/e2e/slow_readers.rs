//! Clients that ask and never read: what the relay queues for them is bounded, they are cut
//! off with a reason, and everyone else is served meanwhile. Run against the relay binary,
//! so that its memory (VmRSS of the child process) can be read apart from the test's.

use crate::common;
use crate::sio;

use std::time::{Duration, Instant};

use common::{app_close_code, Relay};
use native_client::wire::{frame, ClientFrame, CloseCode, ServerFrame};
use serde_json::{json, Value};
use sio::{Packet, Sio};

/// Idle clients whose long ids make every client list large (~26 KB).
const IDLE: usize = 200;
/// Requests a flooding client sends without reading: ~500 MB of replies if they were all
/// kept.
const FLOOD: usize = 20_000;
/// How much the relay may grow while a client floods it: socketioxide's own queue (1024
/// packets) and the socket buffers, plus the outbox cap, with room to spare.
const GROWTH_MB: u64 = 120;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

fn long_id(i: usize) -> String {
    format!("{i:04}{}", "x".repeat(120))
}

async fn idle_clients(relay: &Relay) -> Vec<Sio> {
    let mut idle = Vec::new();
    for i in 0..IDLE {
        idle.push(Sio::connect(relay.socketio_addr(), &long_id(i)).await);
    }
    idle
}

/// Waits until `watcher`'s client list no longer holds `gone`; returns the list.
async fn until_unlisted(watcher: &mut Sio, gone: &str) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let list = watcher.request("LIST_CLIENTS", &[]).await;
        let ids = list[0].as_array().expect("an id list").clone();
        if !ids.iter().any(|id| id == gone) {
            return ids;
        }
        assert!(Instant::now() < deadline, "{gone} is still listed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_socketio_client_that_asks_and_never_reads_is_cut_off_and_memory_stays_bounded() {
    let relay = Relay::start_binary(&["--outbox-bytes", "1000000"]).await;
    let pid = relay.pid().expect("a child process");
    let _idle = idle_clients(&relay).await;
    let mut watcher = Sio::connect(relay.socketio_addr(), "W").await;
    let before = rss_kib(pid);

    // F asks for the list, and for emits to a client it is not paired with (each answered
    // by a SERVER_ERROR), over and over, and reads nothing. Once it is cut off, the relay
    // closes its transport and its writes fail: that ends the flood.
    let mut flooder = Sio::connect(relay.socketio_addr(), "F").await;
    let bad_emit = json!({"targetClientId": "nobody", "event": "e", "args": []}).to_string();
    for n in 0..FLOOD {
        let sent = if n % 2 == 0 {
            flooder.try_emit_raw("LIST_CLIENTS", "", true).await
        } else {
            flooder.try_emit_raw("P2P_EMIT", &bad_emit, false).await
        };
        if !sent {
            break;
        }
    }
    // F is gone from the relay's view; the others are served all along.
    let ids = until_unlisted(&mut watcher, "F").await;
    assert_eq!(ids.len(), IDLE + 1);
    let grown_mb = rss_kib(pid).saturating_sub(before) / 1024;
    assert!(grown_mb < GROWTH_MB, "the relay grew by {grown_mb} MB");
}

#[tokio::test]
async fn a_socketio_receiver_that_never_reads_is_told_why_it_was_disconnected() {
    let relay = Relay::start_binary(&["--outbox-bytes", "1000000"]).await;
    let pid = relay.pid().expect("a child process");
    // R pairs with the native client N, then reads nothing while N sends 10 KB events.
    let mut r = Sio::connect(relay.socketio_addr(), "R").await;
    let mut n = relay.raw("N").await;
    n.send(&ClientFrame::Register {
        req: 1,
        target: "R".into(),
    })
    .await;
    match r.event("P2P_REGISTER").await {
        Packet::Event { ack: Some(id), .. } => r.answer(id, &[json!(true)]).await,
        other => panic!("expected a pairing question, got {other:?}"),
    }
    assert!(matches!(
        n.next().await,
        native_client::wire::ServerFrame::Reply { req: 1, .. }
    ));
    let mut watcher = Sio::connect(relay.socketio_addr(), "W").await;
    let before = rss_kib(pid);
    // N's control stream is read by a task of its own, so that N learns of the
    // disconnect while it writes. The task hands the stream back rather than drop
    // it: a dropped stream tells the relay that N stopped listening, and the relay
    // then ends N's connection under N's last writes.
    let mut reader = n.reader;
    let disconnected = tokio::spawn(async move {
        loop {
            let body = reader
                .next()
                .await
                .expect("a frame")
                .expect("an open stream");
            match frame::decode::<ServerFrame>(&body).expect("a frame that decodes") {
                ServerFrame::PeerDisconnected => return reader,
                ServerFrame::ServerError { .. } => {}
                other => panic!("{other:?}"),
            }
        }
    });
    let mut args = vec![0x91, 0xc5, 0x28, 0x00];
    args.extend(std::iter::repeat_n(7u8, 10_240));
    let args = bytes::Bytes::from(args);
    for _ in 0..FLOOD {
        if disconnected.is_finished() {
            break;
        }
        let frame = ClientFrame::Emit {
            target: "R".into(),
            event: "big".into(),
            args: args.clone(),
            ack: None,
        };
        common::within("an emit", n.writer.send(&frame))
            .await
            .expect("written");
    }
    let _reader = common::within("N told that R is gone", disconnected)
        .await
        .expect("the reader task");
    let grown_mb = rss_kib(pid).saturating_sub(before) / 1024;
    assert!(grown_mb < GROWTH_MB, "the relay grew by {grown_mb} MB");
    // (N may be gone too: it stopped reading once told, while refusals of its last emits
    // still queued up for it.)
    let ids = until_unlisted(&mut watcher, "R").await;
    assert!(ids.contains(&json!("W")), "{ids:?}");

    // When R reads at last, it finds what was queued, then why it was disconnected.
    let mut told = None;
    loop {
        match r.next().await {
            Packet::Event { name, args, .. } if name == "SERVER_ERROR" => {
                told = args[0].as_str().map(str::to_owned);
            }
            Packet::Event { name, .. } if name == "big" => assert!(told.is_none()),
            Packet::Disconnected => break,
            other => panic!("{other:?}"),
        }
    }
    let told = told.expect("a SERVER_ERROR saying why");
    assert!(
        told.starts_with("disconnected: this client does not read what it is sent; its queue held")
            && told.ends_with("bytes unread (the limit is 1000000 bytes, --outbox-bytes)"),
        "{told}"
    );
}

#[tokio::test]
async fn a_native_client_that_never_reads_is_closed_and_memory_stays_bounded() {
    let relay = Relay::start_binary(&["--outbox-bytes", "1000000"]).await;
    let pid = relay.pid().expect("a child process");
    let _idle = idle_clients(&relay).await;
    let mut watcher = Sio::connect(relay.socketio_addr(), "W").await;
    let before = rss_kib(pid);

    let mut flooder = relay.raw("F").await;
    for req in 0..FLOOD as u64 {
        if flooder.conn.close_reason().is_some() {
            break;
        }
        let frame = ClientFrame::List {
            req,
            after: None,
            limit: None,
        };
        if common::within("a List frame", flooder.writer.send(&frame))
            .await
            .is_err()
        {
            break;
        }
    }
    let err = flooder.closed().await;
    match &err {
        quinn::ConnectionError::ApplicationClosed(_) => {
            assert_eq!(
                app_close_code(&err),
                Some(CloseCode::SlowReader.code().into()),
                "{err}"
            );
            assert!(
                err.to_string().contains("its queue held"),
                "the close names the reason: {err}"
            );
        }
        // The close frame can be lost among the flood's packets on a busy machine; the
        // client's next packets then meet a stateless reset. F must be gone all the same.
        quinn::ConnectionError::Reset => {}
        other => panic!("closed for another reason: {other}"),
    }
    let ids = until_unlisted(&mut watcher, "F").await;
    assert_eq!(ids.len(), IDLE + 1);
    let grown_mb = rss_kib(pid).saturating_sub(before) / 1024;
    assert!(grown_mb < GROWTH_MB, "the relay grew by {grown_mb} MB");
}
