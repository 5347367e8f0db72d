//! What the QUIC front end does with clients that break the protocol, checked on the wire
//! with a raw quinn client (`native_client::wire` types), against the real relay in this
//! process: bad frames, oversized frames, a wrong ALPN or version, a bad first frame, bad
//! data streams, and the TLS trust failures a person sees.

use crate::common;

use std::time::Duration;

use common::{app_close_code, next, raw_handshake, within, Raw, Relay};
use native_client::wire::{
    self, frame, ClientFrame, CloseCode, ResetCode, ServerFrame, StreamHeader, WireReply,
};
use native_client::{Client, ClientError, ClientEvent, ErrorCode, Trust};
use quinn::{ReadError, WriteError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn frames_that_do_not_decode_are_answered_and_skipped() {
    let relay = Relay::start(&[]).await;
    let mut raw = relay.raw("A").await;

    let bad_bodies: [&[u8]; 4] = [
        // An unknown frame type (variant index far past the last).
        &[200],
        // A known type (Emit) with a body cut short.
        &[3, 1],
        // An empty body.
        &[],
        // A valid List (req 1, no cursor, no limit) followed by a stray byte.
        &[4, 1, 0, 0, 0],
    ];
    for body in bad_bodies {
        raw.send_body(body).await;
        match raw.next().await {
            ServerFrame::ServerError { code, message } => {
                assert!(message.starts_with("bad frame:"), "{body:?}: {message}");
                assert_eq!(code, Some(ErrorCode::Invalid.as_u16()), "{body:?}");
            }
            other => panic!("{body:?}: {other:?}"),
        }
        // The connection lives on, the framing intact.
        assert_eq!(raw.list(1).await, vec!["A"]);
    }
    // A second hello is refused as a request, not fatal either.
    raw.send(&ClientFrame::Hello {
        version: wire::PROTOCOL_VERSION,
        client_id: "A".into(),
        credentials: None,
    })
    .await;
    assert_eq!(
        raw.next().await,
        ServerFrame::ServerError {
            code: Some(ErrorCode::Invalid.as_u16()),
            message: "already said hello".into()
        }
    );
    // Any request id is the client's own: the largest one is echoed back unchanged.
    raw.send(&ClientFrame::List {
        req: u64::MAX,
        after: None,
        limit: None,
    })
    .await;
    match raw.next().await {
        ServerFrame::Reply { req, .. } => assert_eq!(req, u64::MAX),
        other => panic!("{other:?}"),
    }
    assert_eq!(raw.list(2).await, vec!["A"]);
    relay.shutdown().await;
}

#[tokio::test]
async fn an_oversized_frame_closes_that_connection_only() {
    let relay = Relay::start(&["--max-message-bytes", "1000"]).await;
    let (b, _b_in) = relay.connect("B").await;
    let mut raw = relay.raw("A").await;
    // The relay's frame limit is --max-message-bytes + 64 KiB; announce one byte more.
    let limit = 1000 + 64 * 1024;
    let len = (limit as u32 + 1).to_be_bytes();
    within("the length prefix", raw.writer.send_encoded(&len))
        .await
        .unwrap();
    let err = raw.closed().await;
    assert_eq!(
        app_close_code(&err),
        Some(u64::from(CloseCode::FrameTooLarge.code())),
        "{err}"
    );
    // Everyone else is unaffected; A is gone from the list.
    assert_eq!(b.list_clients().await.unwrap(), vec!["B"]);

    // The native client, sending a frame its own (larger) limit allows but the relay's
    // does not, is told why its connection ended.
    let (a, mut a_in, _b2, _b2_in) = relay.paired("A", "B2").await;
    a.emit("big", native_client::Args::binary(vec![0u8; 100_000]))
        .await
        .unwrap();
    loop {
        match next(&mut a_in).await {
            ClientEvent::Closed(reason) => {
                assert_eq!(reason.code(), Some(CloseCode::FrameTooLarge), "{reason}");
                break;
            }
            ClientEvent::ServerError { .. } => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(b.list_clients().await.unwrap(), vec!["B", "B2"]);
    relay.shutdown().await;
}

#[tokio::test]
async fn a_wrong_alpn_fails_the_handshake_and_the_relay_serves_on() {
    let relay = Relay::start(&[]).await;
    // The previous version's ALPN, and another protocol's.
    for alpn in [&b"p2p-relay/1"[..], b"h3"] {
        let err = match raw_handshake(&relay, alpn).await {
            Ok(_) => panic!("a handshake offering {alpn:?} must fail"),
            Err(e) => e,
        };
        // TLS alert 120 (no_application_protocol) in a QUIC CRYPTO_ERROR (0x100 + alert).
        match &err {
            quinn::ConnectionError::ConnectionClosed(close) => {
                assert_eq!(u64::from(close.error_code), 0x100 + 120, "{err}")
            }
            other => panic!("expected the relay to close the handshake, got {other}"),
        }
    }
    // Others are served on.
    let (a, _a_in) = relay.connect("A").await;
    assert_eq!(a.list_clients().await.unwrap(), vec!["A"]);
    relay.shutdown().await;
}

/// Opens a raw connection and sends `first` as its first frame; returns the frame the
/// relay answers with and the code it closes the connection with.
async fn first_frame(relay: &Relay, first: &[u8]) -> (ServerFrame, Option<u64>) {
    let mut raw = Raw::connect(relay, wire::ALPN).await.unwrap();
    raw.send_body(first).await;
    let answer = raw.next().await;
    let err = raw.closed().await;
    (answer, app_close_code(&err))
}

#[tokio::test]
async fn a_hello_of_another_version_is_refused() {
    let relay = Relay::start(&[]).await;
    // A client of the previous version: its hello has the same layout.
    let hello = frame::encode(&ClientFrame::Hello {
        version: 1,
        client_id: "A".into(),
        credentials: None,
    })
    .unwrap();
    let (answer, code) = first_frame(&relay, &hello[4..]).await;
    assert_eq!(
        answer,
        ServerFrame::Refused {
            code: CloseCode::VersionMismatch.code(),
            message: "protocol version 1 is not supported; this relay speaks version 2".into()
        }
    );
    assert_eq!(code, Some(u64::from(CloseCode::VersionMismatch.code())));
    // It was never admitted.
    let (a, _a_in) = relay.connect("A").await;
    assert_eq!(a.list_clients().await.unwrap(), vec!["A"]);
    relay.shutdown().await;
}

#[tokio::test]
async fn a_first_frame_that_is_not_hello_is_a_protocol_violation() {
    let relay = Relay::start(&[]).await;
    let list = frame::encode(&ClientFrame::List {
        req: 1,
        after: None,
        limit: None,
    })
    .unwrap();
    let (answer, code) = first_frame(&relay, &list[4..]).await;
    assert_eq!(
        answer,
        ServerFrame::Refused {
            code: CloseCode::ProtocolViolation.code(),
            message: "the first frame must be Hello, got List".into()
        }
    );
    assert_eq!(code, Some(u64::from(CloseCode::ProtocolViolation.code())));

    // A first frame that does not decode at all.
    let (answer, code) = first_frame(&relay, &[200]).await;
    match answer {
        ServerFrame::Refused {
            code: refused,
            message,
        } => {
            assert_eq!(refused, CloseCode::ProtocolViolation.code());
            assert!(
                message.starts_with("expected a Hello frame: bad frame:"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(code, Some(u64::from(CloseCode::ProtocolViolation.code())));
    let (a, _a_in) = relay.connect("A").await;
    assert_eq!(a.list_clients().await.unwrap(), vec!["A"]);
    relay.shutdown().await;
}

/// Opens a data stream on `raw`'s connection, writes `bytes`, and returns the codes the
/// relay reset it and stopped it with (the stop seen as our writes failing).
async fn refused_data_stream(raw: &Raw, bytes: &[u8]) -> (u64, u64) {
    let (mut send, mut recv) = within("open a data stream", raw.conn.open_bi())
        .await
        .unwrap();
    send.write_all(bytes).await.unwrap();
    let reset = reset_code(&mut recv).await;
    let err = within("the stop", async {
        loop {
            if let Err(e) = send.write_all(&[0u8; 4096]).await {
                break e;
            }
        }
    })
    .await;
    let stopped = match err {
        WriteError::Stopped(code) => code.into_inner(),
        other => panic!("expected a stop, got {other:?}"),
    };
    (reset, stopped)
}

async fn reset_code(recv: &mut quinn::RecvStream) -> u64 {
    match within("the reset", recv.read_to_end(1024)).await {
        Err(quinn::ReadToEndError::Read(ReadError::Reset(code))) => code.into_inner(),
        other => panic!("expected a reset, got {other:?}"),
    }
}

#[tokio::test]
async fn data_streams_with_a_bad_header_are_refused() {
    let relay = Relay::start(&[]).await;
    let mut raw = relay.raw("A").await;
    let bad = u64::from(ResetCode::BadHeader.code());

    // Wrong magic.
    let mut header = StreamHeader { stream: 1 }.encode();
    header[..4].copy_from_slice(b"HTTP");
    assert_eq!(refused_data_stream(&raw, &header).await, (bad, bad));
    // Another header version.
    let mut header = StreamHeader { stream: 1 }.encode();
    header[4] = 9;
    assert_eq!(refused_data_stream(&raw, &header).await, (bad, bad));
    // Ended (FIN) before a whole header: nothing left to stop, but the relay's side of
    // the stream is reset.
    let (mut send, mut recv) = raw.conn.open_bi().await.unwrap();
    send.write_all(b"P2PS").await.unwrap();
    send.finish().unwrap();
    assert_eq!(reset_code(&mut recv).await, bad);

    // The connection serves on.
    assert_eq!(raw.list(1).await, vec!["A"]);
    relay.shutdown().await;
}

#[tokio::test]
async fn data_streams_not_granted_to_the_connection_are_refused() {
    let relay = Relay::start(&[]).await;
    let not_granted = u64::from(ResetCode::NotGranted.code());
    let (b, mut b_in) = relay.connect("B").await;
    // A raw client pairs with B and gets a stream granted.
    let mut raw = relay.raw("A").await;
    raw.pair_with(1, "B", &mut b_in).await;

    // A stream id never granted.
    let header = StreamHeader { stream: 999_999 }.encode();
    assert_eq!(
        refused_data_stream(&raw, &header).await,
        (not_granted, not_granted)
    );

    raw.send(&ClientFrame::OpenStream {
        req: 2,
        target: "B".into(),
    })
    .await;
    match next(&mut b_in).await {
        ClientEvent::StreamRequest(request) => request.accept(),
        other => panic!("{other:?}"),
    }
    let id = match raw.next().await {
        ServerFrame::Reply {
            req: 2,
            reply: WireReply::StreamOpened(id),
        } => id,
        other => panic!("{other:?}"),
    };
    let header = StreamHeader { stream: id }.encode();

    // Another client naming the granted id gets nothing of it.
    let c = relay.raw("C").await;
    assert_eq!(
        refused_data_stream(&c, &header).await,
        (not_granted, not_granted)
    );

    // The opener's data stream is relayed, unframed.
    let (mut send, mut recv) = raw.conn.open_bi().await.unwrap();
    send.write_all(&header).await.unwrap();
    send.write_all(b"hello B").await.unwrap();
    let mut theirs = match next(&mut b_in).await {
        ClientEvent::Stream(stream) => stream,
        other => panic!("{other:?}"),
    };
    assert_eq!((theirs.id(), theirs.peer()), (id, "A"));
    let mut got = [0u8; 7];
    within("read", theirs.read_exact(&mut got)).await.unwrap();
    assert_eq!(&got, b"hello B");

    // A second data stream for the same grant is refused; the first is untouched.
    assert_eq!(
        refused_data_stream(&raw, &header).await,
        (not_granted, not_granted)
    );
    theirs.write_all(b"hi A").await.unwrap();
    theirs.shutdown().await.unwrap();
    let back = within("read back", recv.read_to_end(100)).await.unwrap();
    assert_eq!(back, b"hi A");
    send.finish().unwrap();
    let mut rest = Vec::new();
    within("EOF", theirs.read_to_end(&mut rest)).await.unwrap();
    assert!(rest.is_empty());

    // Everyone serves on.
    assert_eq!(raw.list(3).await, vec!["A", "B", "C"]);
    assert_eq!(b.list_clients().await.unwrap(), vec!["A", "B", "C"]);
    relay.shutdown().await;
}

#[tokio::test]
async fn tls_trust_failures_say_which_check_failed() {
    let relay = Relay::start(&[]).await;
    let other_dir = tempfile::tempdir().unwrap();
    let other = certs::DevCerts::load_or_create(other_dir.path()).unwrap();
    let connect = |options| within("connect", Client::connect(options));

    // Another CA's file.
    let err = connect(
        relay
            .options("A")
            .trust(Trust::CaFile(other.ca_cert_path().to_path_buf())),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ClientError::Tls { .. }), "{err:?}");
    let expected = format!(
        "TLS handshake with the relay at {} failed: certificate not signed by the CA in {}",
        relay.addr(),
        other.ca_cert_path().display()
    );
    assert!(err.to_string().starts_with(&expected), "{err}");

    // A pin of another certificate.
    let err = connect(
        relay
            .options("A")
            .trust(Trust::Fingerprint(other.ca_fingerprint())),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ClientError::Tls { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&format!(
            "failed: server certificate fingerprint mismatch: expected {}",
            other.ca_fingerprint()
        )),
        "{err}"
    );

    // A name the certificate does not carry.
    let err = connect(relay.options("A").server_name("relay.example.com"))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Tls { .. }), "{err:?}");
    assert!(err.to_string().contains("relay.example.com"), "{err}");

    // A missing CA file is reported before anything is sent.
    let err = connect(
        relay
            .options("A")
            .trust(Trust::CaFile("/nonexistent/ca.pem".into())),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ClientError::Trust(_)), "{err:?}");
    assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");

    // None of that disturbed the relay; the right pin works.
    let (a, _a_in) = connect(
        relay
            .options("A")
            .trust(Trust::Fingerprint(relay.fingerprint().to_string())),
    )
    .await
    .unwrap();
    assert_eq!(a.list_clients().await.unwrap(), vec!["A"]);
    relay.shutdown().await;
}

#[tokio::test]
async fn silent_connections_block_no_one_and_shutdown_closes_them() {
    // A client that opens no control stream, and one that stops halfway through its first
    // frame: the relay waits for them (up to its handshake timeout) without blocking others.
    let relay = Relay::start(&[]).await;
    let (_endpoint, silent) = raw_handshake(&relay, wire::ALPN).await.unwrap();
    let mut mute = Raw::connect(&relay, wire::ALPN).await.unwrap();
    mute.writer
        .get_mut()
        .write_all(&[0, 0])
        .await
        .expect("half a length prefix");
    let (a, mut a_in) = relay.connect("A").await;
    assert_eq!(a.list_clients().await.unwrap(), vec!["A"]);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(silent.close_reason().is_none());
    assert!(mute.conn.close_reason().is_none());
    // Shutting the relay down closes every connection, saying so.
    relay.shutdown().await;
    for conn in [&silent, &mute.conn] {
        let err = within("the shutdown close", conn.closed()).await;
        assert_eq!(
            app_close_code(&err),
            Some(u64::from(CloseCode::Shutdown.code())),
            "{err}"
        );
    }
    // A client in the core is told why before its connection closes.
    match next(&mut a_in).await {
        ClientEvent::ServerError { code, message } => {
            assert_eq!(code, None, "a notice, not a request's failure");
            assert_eq!(message, "the relay is shutting down");
        }
        other => panic!("{other:?}"),
    }
    match next(&mut a_in).await {
        ClientEvent::Closed(reason) => {
            assert_eq!(reason.code(), Some(CloseCode::Shutdown), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}
