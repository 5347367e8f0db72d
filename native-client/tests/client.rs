//! The client against an in-process stand-in relay (tests/support): every verb, streams,
//! and the errors a person would see.

mod support;

use std::time::Duration;

use native_client::rmpv::Value;
use native_client::wire::codes;
use native_client::{
    Args, Client, ClientError, ClientEvent, Incoming, P2pStream, RequestKind, StreamError, Trust,
};
use support::{AnyRelay, MockRelay};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(10);

async fn next(incoming: &mut Incoming) -> ClientEvent {
    tokio::time::timeout(WAIT, incoming.next())
        .await
        .expect("no event in time")
        .expect("incoming ended")
}

/// Connects A and B and pairs them (B accepts).
async fn paired(relay: &AnyRelay) -> (Client, Incoming, Client, Incoming) {
    let (a, a_in) = Client::connect(relay.options("A")).await.unwrap();
    let (b, mut b_in) = Client::connect(relay.options("B")).await.unwrap();
    let register = tokio::spawn({
        let a = a.clone();
        async move { a.register("B").await }
    });
    match next(&mut b_in).await {
        ClientEvent::RegisterRequest(request) => {
            assert_eq!(request.from(), "A");
            assert_eq!(request.kind(), RequestKind::Register);
            request.accept();
        }
        other => panic!("{other:?}"),
    }
    assert!(register.await.unwrap().unwrap());
    (a, a_in, b, b_in)
}

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
        .with(Value::Binary(vec![42; 70_000]))
}

#[tokio::test]
async fn pair_emit_ack_and_list() {
    let relay = AnyRelay::start().await;
    let (a, _a_in, b, mut b_in) = paired(&relay).await;
    assert_eq!(a.client_id(), "A");
    assert_eq!(a.target().as_deref(), Some("B"));
    assert_eq!(b.target().as_deref(), Some("A"));
    assert_eq!(a.list_clients().await.unwrap(), vec!["A", "B"]);

    a.emit("hello", rich_args()).await.unwrap();
    match next(&mut b_in).await {
        ClientEvent::Event { event, args, ack } => {
            assert_eq!(event, "hello");
            assert_eq!(args, rich_args());
            assert!(ack.is_none());
        }
        other => panic!("{other:?}"),
    }

    let asking = tokio::spawn({
        let a = a.clone();
        async move { a.emit_with_ack("add", Args::new().with(2).with(3)).await }
    });
    match next(&mut b_in).await {
        ClientEvent::Event {
            event,
            args,
            ack: Some(ack),
        } => {
            assert_eq!(event, "add");
            assert_eq!(ack.event(), "add");
            let (x, y): (i64, i64) = args.to_serde().unwrap();
            ack.send(Args::new().with(x + y).with(Value::Binary(vec![9])))
                .unwrap();
        }
        other => panic!("{other:?}"),
    }
    let reply = asking.await.unwrap().unwrap();
    assert_eq!(reply, Args::new().with(5).with(Value::Binary(vec![9])));
}

#[tokio::test]
async fn local_checks_mirror_the_js_plugin() {
    let relay = AnyRelay::start().await;
    let (a, _a_in) = Client::connect(relay.options("A")).await.unwrap();
    assert!(matches!(
        a.register("A").await,
        Err(ClientError::RegisterSelf)
    ));
    assert!(matches!(
        a.emit("e", Args::new()).await,
        Err(ClientError::NotPaired)
    ));
    match a.register("nobody").await {
        Err(ClientError::Request(message)) => {
            assert_eq!(message, "target client 'nobody' is not connected")
        }
        other => panic!("{other:?}"),
    }
    // Unregistering while unpaired resolves at once, as in the plugin.
    a.unregister().await.unwrap();
    // Opening a stream while unpaired is the relay's to refuse.
    let err = a.open_stream("B").await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "request failed: cannot open a stream: not paired"
    );

    let relay = AnyRelay::start().await;
    let (a, _a_in, _b, _b_in) = paired(&relay).await;
    assert!(matches!(
        a.register("C").await,
        Err(ClientError::AlreadyPaired(peer)) if peer == "B"
    ));
    assert!(matches!(
        a.emit("", Args::new()).await,
        Err(ClientError::EmptyEvent)
    ));
}

#[tokio::test]
async fn refusing_or_dropping_a_pairing_request_says_no() {
    let relay = AnyRelay::start().await;
    let (a, _a_in) = Client::connect(relay.options("A")).await.unwrap();
    let (_b, mut b_in) = Client::connect(relay.options("B")).await.unwrap();
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
        assert!(!register.await.unwrap().unwrap());
        assert_eq!(a.target(), None);
    }
}

#[tokio::test]
async fn a_paired_client_refuses_other_pairings_by_itself() {
    let relay = AnyRelay::start().await;
    let (_a, _a_in, _b, mut b_in) = paired(&relay).await;
    let (c, _c_in) = Client::connect(relay.options("C")).await.unwrap();
    assert!(!c.register("B").await.unwrap());
    // B's application never saw the request.
    assert!(
        tokio::time::timeout(Duration::from_millis(200), b_in.next())
            .await
            .is_err()
    );
}

async fn accept_stream(incoming: &mut Incoming) -> P2pStream {
    loop {
        match next(incoming).await {
            ClientEvent::StreamRequest(request) => {
                assert_eq!(request.kind(), RequestKind::Stream);
                request.accept();
            }
            ClientEvent::Stream(stream) => return stream,
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn several_streams_at_once_both_ways_with_clean_eof() {
    let relay = AnyRelay::start().await;
    let (a, _a_in, b, mut b_in) = paired(&relay).await;

    // B echoes every stream back, reversed, once it has read it all.
    let echo = tokio::spawn(async move {
        let mut served = Vec::new();
        for _ in 0..3 {
            let mut stream = accept_stream(&mut b_in).await;
            assert_eq!(stream.peer(), "A");
            served.push(stream.id());
            tokio::spawn(async move {
                let mut data = Vec::new();
                stream.read_to_end(&mut data).await.unwrap();
                data.reverse();
                stream.write_all(&data).await.unwrap();
                stream.shutdown().await.unwrap();
            });
        }
        (b_in, served)
    });

    let mut tasks = Vec::new();
    for n in 0..3u8 {
        let a = a.clone();
        tasks.push(tokio::spawn(async move {
            let stream = a
                .open_stream("B")
                .await
                .unwrap()
                .expect("B accepts streams");
            assert_eq!(stream.peer(), "B");
            let id = stream.id();
            let data: Vec<u8> = (0..300_000u32).map(|i| (i as u8) ^ n).collect();
            let (mut read, mut write) = stream.split();
            let writing = {
                let data = data.clone();
                async move {
                    write.write_all(&data).await.unwrap();
                    write.shutdown().await.unwrap();
                    // A second shutdown is harmless.
                    write.shutdown().await.unwrap();
                }
            };
            let reading = async move {
                let mut back = Vec::new();
                read.read_to_end(&mut back).await.unwrap();
                back
            };
            let ((), mut back) = tokio::join!(writing, reading);
            back.reverse();
            assert_eq!(back, data);
            id
        }));
    }
    let mut ids = Vec::new();
    for task in tasks {
        ids.push(task.await.unwrap());
    }
    let (_b_in, mut served) = echo.await.unwrap();
    ids.sort();
    served.sort();
    assert_eq!(ids, served);
    drop(b);
}

#[tokio::test]
async fn a_refused_stream_is_none() {
    let relay = AnyRelay::start().await;
    let (a, _a_in, _b, mut b_in) = paired(&relay).await;
    let opening = tokio::spawn(async move { a.open_stream("B").await });
    match next(&mut b_in).await {
        ClientEvent::StreamRequest(request) => request.refuse(),
        other => panic!("{other:?}"),
    }
    assert!(opening.await.unwrap().unwrap().is_none());
}

#[tokio::test]
async fn resets_reach_the_other_side_with_their_cause() {
    let relay = AnyRelay::start().await;
    let (a, _a_in, _b, mut b_in) = paired(&relay).await;

    for explicit in [true, false] {
        let opening = tokio::spawn({
            let a = a.clone();
            async move { a.open_stream("B").await }
        });
        let mut theirs = accept_stream(&mut b_in).await;
        let mut mine = opening.await.unwrap().unwrap().unwrap();
        mine.write_all(b"partial").await.unwrap();
        let mut got = [0u8; 7];
        theirs.read_exact(&mut got).await.unwrap();
        if explicit {
            mine.reset(codes::STREAM_PEER_RESET);
        } else {
            // Dropped without shutdown: a reset, not a clean EOF.
            drop(mine);
        }
        let err = theirs.read_to_end(&mut Vec::new()).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "stream reset: the peer reset the stream (code 0x11)"
        );
        assert_eq!(
            StreamError::of(&err).and_then(StreamError::code),
            Some(u64::from(codes::STREAM_PEER_RESET))
        );
    }
}

#[tokio::test]
async fn a_lost_peer_resets_its_streams_and_ends_the_pairing() {
    let relay = AnyRelay::start().await;
    let (a, mut a_in, b, mut b_in) = paired(&relay).await;
    let opening = tokio::spawn({
        let a = a.clone();
        async move { a.open_stream("B").await }
    });
    let mut theirs = accept_stream(&mut b_in).await;
    let _mine = opening.await.unwrap().unwrap().unwrap();

    a.close().await;
    match next(&mut a_in).await {
        ClientEvent::Closed(reason) => assert_eq!(reason.to_string(), "closed by this client"),
        other => panic!("{other:?}"),
    }
    assert!(a_in.next().await.is_none());
    // The relay may first report the pair's streams closed.
    loop {
        match next(&mut b_in).await {
            ClientEvent::PeerDisconnected => break,
            ClientEvent::StreamClosed(id) => assert_eq!(id, theirs.id()),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(b.target(), None);
    let err = theirs.read_to_end(&mut Vec::new()).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "stream reset: the peer's connection was lost (code 0x12)"
    );
    // A is closed for good.
    assert!(matches!(
        a.list_clients().await,
        Err(ClientError::Closed(_))
    ));
}

#[tokio::test]
async fn unregister_clears_both_ends() {
    let relay = AnyRelay::start().await;
    let (a, mut a_in, b, mut b_in) = paired(&relay).await;
    a.unregister().await.unwrap();
    assert_eq!(a.target(), None);
    assert!(matches!(next(&mut a_in).await, ClientEvent::Unregistered));
    assert!(matches!(next(&mut b_in).await, ClientEvent::Unregistered));
    assert_eq!(b.target(), None);
    // Free to pair again, the other way round.
    let register = tokio::spawn(async move { b.register("A").await });
    match next(&mut a_in).await {
        ClientEvent::RegisterRequest(request) => request.accept(),
        other => panic!("{other:?}"),
    }
    assert!(register.await.unwrap().unwrap());
    assert_eq!(a.target().as_deref(), Some("B"));
}

#[tokio::test]
async fn server_errors_are_events() {
    let relay = MockRelay::start().await;
    let (_a, mut a_in) = Client::connect(relay.options("A")).await.unwrap();
    relay.send_to(
        "A",
        native_client::wire::ServerFrame::ServerError {
            message: "event name 'disconnect' is reserved".into(),
        },
    );
    match next(&mut a_in).await {
        ClientEvent::ServerError(message) => {
            assert_eq!(message, "event name 'disconnect' is reserved")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn undecodable_event_arguments_are_answered_not_fatal() {
    let relay = MockRelay::start().await;
    let (a, mut a_in) = Client::connect(relay.options("A")).await.unwrap();
    relay.send_to(
        "A",
        native_client::wire::ServerFrame::Deliver {
            event: "bad".into(),
            args: support::raw_args(&[0xa1, b'x']),
            ticket: Some(77),
        },
    );
    match next(&mut a_in).await {
        ClientEvent::ServerError(message) => assert_eq!(
            message,
            "event 'bad' from the peer was dropped: arguments must be a MessagePack array, \
             got a string"
        ),
        other => panic!("{other:?}"),
    }
    // Still alive.
    assert_eq!(a.list_clients().await.unwrap(), vec!["A"]);
}

#[tokio::test]
async fn a_data_stream_may_arrive_before_its_grant() {
    // The relay opens the data stream first and sends StreamAccepted afterwards.
    let relay = MockRelay::start().await;
    let (_a, mut a_in) = Client::connect(relay.options("A")).await.unwrap();
    let conn = {
        // Open a stream to A from the relay's side by hand.
        let mut found = None;
        for _ in 0..50 {
            if let Some(c) = relay_conn(&relay) {
                found = Some(c);
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        found.expect("A connected")
    };
    let (mut send, _recv) = conn.open_bi().await.unwrap();
    send.write_all(&native_client::wire::StreamHeader { stream: 4242 }.encode())
        .await
        .unwrap();
    send.write_all(b"early").await.unwrap();
    send.finish().unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    relay.send_to(
        "A",
        native_client::wire::ServerFrame::StreamAccepted {
            stream: 4242,
            from: "Z".into(),
        },
    );
    match next(&mut a_in).await {
        ClientEvent::Stream(mut stream) => {
            assert_eq!((stream.id(), stream.peer()), (4242, "Z"));
            let mut data = String::new();
            stream.read_to_string(&mut data).await.unwrap();
            assert_eq!(data, "early");
        }
        other => panic!("{other:?}"),
    }
}

fn relay_conn(relay: &MockRelay) -> Option<quinn::Connection> {
    relay.conn_of("A")
}

#[tokio::test]
async fn a_close_by_the_relay_names_its_code() {
    let relay = MockRelay::start().await;
    let (a, mut a_in) = Client::connect(relay.options("A")).await.unwrap();
    relay.send_to(
        "A",
        native_client::wire::ServerFrame::Closing {
            code: codes::REPLACED,
            reason: "replaced by a newer connection with clientId 'A'".into(),
        },
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    relay.close_client("A", codes::REPLACED, "replaced");
    match next(&mut a_in).await {
        ClientEvent::Closed(reason) => {
            assert_eq!(reason.code, Some(0x5));
            assert_eq!(
                reason.to_string(),
                "the relay closed the connection: replaced by a newer connection with the \
                 same clientId (code 0x5): replaced by a newer connection with clientId 'A'"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(a_in.next().await.is_none());
    match a.list_clients().await {
        Err(ClientError::Closed(reason)) => assert_eq!(reason.code, Some(0x5)),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn dropping_every_handle_ends_the_connection() {
    let relay = MockRelay::start().await;
    let (a, a_in) = Client::connect(relay.options("A")).await.unwrap();
    let (b, _b_in) = Client::connect(relay.options("B")).await.unwrap();
    let conn = relay.conn_of("A").unwrap();
    let a2 = a.clone();
    drop(a);
    drop(a_in);
    // One clone is still alive: the connection too.
    assert_eq!(b.list_clients().await.unwrap(), vec!["A", "B"]);
    drop(a2);
    tokio::time::timeout(WAIT, conn.closed())
        .await
        .expect("the connection closes once every handle is gone");
}

#[tokio::test]
async fn frames_over_the_limit_are_refused_locally() {
    let relay = AnyRelay::start().await;
    let (a, _a_in, _b, _b_in) = paired(&relay).await;
    let big = Args::binary(vec![0u8; 2 * 1024 * 1024]);
    match a.emit("big", big).await {
        Err(ClientError::TooLarge { what, len, max }) => {
            assert_eq!(what, "event arguments");
            assert!(len > max);
        }
        other => panic!("{other:?}"),
    }
    // The connection lives on.
    a.emit("small", Args::one(1)).await.unwrap();
}

#[tokio::test]
async fn a_refused_hello_is_an_error_with_the_relays_words() {
    let relay = MockRelay::start().await;
    match Client::connect(relay.options("refused-A")).await {
        Err(ClientError::Refused { code, message }) => {
            assert_eq!(code, codes::REFUSED);
            assert_eq!(message, "clientId 'refused-A' is already connected");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_silent_relay_times_out() {
    let relay = MockRelay::start().await;
    let options = relay
        .options("silent")
        .connect_timeout(Duration::from_millis(300));
    match Client::connect(options).await {
        Err(e @ ClientError::ConnectTimeout { .. }) => {
            assert!(e.to_string().contains("is it running"), "{e}")
        }
        other => panic!("{other:?}"),
    }
    // Nothing listening at all.
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let nowhere = socket.local_addr().unwrap();
    drop(socket);
    let options = relay
        .options("A")
        .addr(nowhere)
        .connect_timeout(Duration::from_millis(300));
    assert!(matches!(
        Client::connect(options).await,
        Err(ClientError::ConnectTimeout { .. })
    ));
}

#[tokio::test]
async fn an_alpn_mismatch_says_the_server_does_not_speak_the_protocol() {
    let relay = MockRelay::start_with_alpn(b"p2p-relay/2").await;
    let err = Client::connect(relay.options("A")).await.unwrap_err();
    assert!(matches!(err, ClientError::AlpnMismatch { .. }), "{err:?}");
    assert!(
        err.to_string().contains("does not speak p2p-relay/1"),
        "{err}"
    );
}

#[tokio::test]
async fn tls_failures_say_which_check_failed() {
    let relay = AnyRelay::start().await;
    let other = MockRelay::start().await;

    let err = Client::connect(relay.options("A").trust(Trust::CaFile(other.ca.clone())))
        .await
        .unwrap_err();
    let expected = format!(
        "TLS handshake with the relay at {} failed: certificate not signed by the CA in {}",
        relay.addr(),
        other.ca.display()
    );
    assert!(err.to_string().starts_with(&expected), "{err}");

    let err = Client::connect(
        relay
            .options("A")
            .trust(Trust::Fingerprint(other.ca_fingerprint.clone())),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains(&format!(
            "failed: server certificate fingerprint mismatch: expected {}",
            other.ca_fingerprint
        )),
        "{err}"
    );

    let err = Client::connect(relay.options("A").server_name("relay.example.com"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("relay.example.com"), "{err}");

    // The right pin works.
    let (a, _a_in) = Client::connect(
        relay
            .options("A")
            .trust(Trust::Fingerprint(relay.ca_fingerprint())),
    )
    .await
    .unwrap();
    assert_eq!(a.client_id(), "A");

    // A missing CA file is reported before anything is sent.
    let err = Client::connect(
        relay
            .options("A")
            .trust(Trust::CaFile("/nonexistent/ca.pem".into())),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ClientError::Trust(_)), "{err:?}");
    assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
}

#[tokio::test]
async fn incoming_is_a_stream_of_events() {
    use futures::StreamExt;
    let relay = MockRelay::start().await;
    let (_a, mut a_in) = Client::connect(relay.options("A")).await.unwrap();
    relay.send_to("A", native_client::wire::ServerFrame::PeerDisconnected);
    let event = tokio::time::timeout(WAIT, StreamExt::next(&mut a_in))
        .await
        .unwrap();
    assert!(matches!(event, Some(ClientEvent::PeerDisconnected)));
}
