//! Behaviour that belongs to the relay itself (limits, timeouts, refusals), checked through
//! this client against the real binary. Runs only when `NATIVE_CLIENT_TEST_RELAY` names it,
//! e.g. `NATIVE_CLIENT_TEST_RELAY=target/debug/p2p-relay cargo test -p native-client`;
//! otherwise each test says it was skipped and passes.

mod support;

use std::time::Duration;

use native_client::wire::codes;
use native_client::{Args, Client, ClientError, ClientEvent, Incoming};
use support::RealRelay;

async fn relay(extra: &[&str]) -> Option<RealRelay> {
    match RealRelay::bin() {
        Some(bin) => Some(RealRelay::start_with(&bin, extra).await),
        None => {
            eprintln!("skipped: set NATIVE_CLIENT_TEST_RELAY to the relay binary to run this");
            None
        }
    }
}

async fn next(incoming: &mut Incoming) -> ClientEvent {
    tokio::time::timeout(Duration::from_secs(10), incoming.next())
        .await
        .expect("no event in time")
        .expect("incoming ended")
}

async fn paired(relay: &RealRelay) -> (Client, Incoming, Client, Incoming) {
    let (a, a_in) = Client::connect(relay.options("A")).await.unwrap();
    let (b, mut b_in) = Client::connect(relay.options("B")).await.unwrap();
    let register = tokio::spawn({
        let a = a.clone();
        async move { a.register("B").await }
    });
    match next(&mut b_in).await {
        ClientEvent::RegisterRequest(request) => request.accept(),
        other => panic!("{other:?}"),
    }
    assert!(register.await.unwrap().unwrap());
    (a, a_in, b, b_in)
}

#[tokio::test]
async fn invalid_and_duplicate_ids_are_refused_in_the_relays_words() {
    let Some(relay) = relay(&["--duplicate-policy", "reject"]).await else {
        return;
    };
    match Client::connect(relay.options("bad\u{7}id")).await {
        Err(ClientError::Refused { code, message }) => {
            assert_eq!(code, codes::REFUSED);
            assert!(message.starts_with("invalid clientId: "), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let (_a, _a_in) = Client::connect(relay.options("A")).await.unwrap();
    match Client::connect(relay.options("A")).await {
        Err(ClientError::Refused { code, message }) => {
            assert_eq!(code, codes::REFUSED);
            assert_eq!(message, "clientId 'A' is already connected");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_replaced_connection_is_told_why() {
    let Some(relay) = relay(&[]).await else {
        return;
    };
    let (old, mut old_in) = Client::connect(relay.options("A")).await.unwrap();
    let (_new, _new_in) = Client::connect(relay.options("A")).await.unwrap();
    loop {
        match next(&mut old_in).await {
            ClientEvent::Closed(reason) => {
                assert_eq!(reason.code, Some(u64::from(codes::REPLACED)), "{reason}");
                assert!(
                    reason
                        .to_string()
                        .contains("replaced by a newer connection with the same clientId"),
                    "{reason}"
                );
                break;
            }
            ClientEvent::ServerError(message) => {
                assert_eq!(message, "replaced by a newer connection with clientId 'A'")
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(matches!(
        old.list_clients().await,
        Err(ClientError::Closed(_))
    ));
}

#[tokio::test]
async fn an_unanswered_ack_times_out_on_the_relay() {
    let Some(relay) = relay(&["--ack-timeout-ms", "300"]).await else {
        return;
    };
    let (a, _a_in, _b, mut b_in) = paired(&relay).await;
    let asking = tokio::spawn(async move { a.emit_with_ack("slow", Args::new()).await });
    match next(&mut b_in).await {
        ClientEvent::Event { ack: Some(ack), .. } => drop(ack),
        other => panic!("{other:?}"),
    }
    match asking.await.unwrap() {
        Err(ClientError::Request(message)) => {
            assert_eq!(message, "no ack for event 'slow' from 'B' within 300 ms")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn reserved_names_and_oversized_payloads_are_server_errors() {
    let Some(relay) = relay(&["--max-message-bytes", "1000"]).await else {
        return;
    };
    let (a, mut a_in, _b, _b_in) = paired(&relay).await;
    a.emit("disconnect", Args::new()).await.unwrap();
    match next(&mut a_in).await {
        ClientEvent::ServerError(message) => {
            assert_eq!(message, "event name 'disconnect' is reserved")
        }
        other => panic!("{other:?}"),
    }
    match a.emit_with_ack("big", Args::binary(vec![0u8; 5000])).await {
        Err(ClientError::Request(message)) => assert!(
            message.ends_with("exceeds the limit of 1000 bytes"),
            "{message}"
        ),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn the_end_of_the_pairing_resets_its_streams_on_both_ends() {
    use tokio::io::AsyncReadExt;
    let Some(relay) = relay(&[]).await else {
        return;
    };
    let (a, mut a_in, _b, mut b_in) = paired(&relay).await;
    let opening = tokio::spawn({
        let a = a.clone();
        async move { a.open_stream("B").await }
    });
    let mut theirs = loop {
        match next(&mut b_in).await {
            ClientEvent::StreamRequest(request) => request.accept(),
            ClientEvent::Stream(stream) => break stream,
            other => panic!("{other:?}"),
        }
    };
    let mut mine = opening.await.unwrap().unwrap().unwrap();
    a.unregister().await.unwrap();
    for stream in [&mut mine, &mut theirs] {
        let err = stream.read_to_end(&mut Vec::new()).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "stream reset: the pairing ended (code 0x13)"
        );
    }
    for incoming in [&mut a_in, &mut b_in] {
        let mut seen = Vec::new();
        while seen.len() < 2 {
            match next(incoming).await {
                ClientEvent::Unregistered => seen.push("unregistered"),
                ClientEvent::StreamClosed(id) => {
                    assert_eq!(id, mine.id());
                    seen.push("stream closed")
                }
                other => panic!("{other:?}"),
            }
        }
    }
}
