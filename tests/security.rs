//! Security and limits end to end, against the real relay: admission by token over QUIC
//! (each refusal reason, the limits in the Welcome, the peers claim both ways), the HTTP
//! admission callback (admits, refuses, times out) over QUIC and Socket.IO (4.x and 2.x
//! handshakes on long-polling), and the rate and per-address limits over QUIC, each hit
//! with its message while another client goes on unaffected.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::http::StatusCode;
use common::{within, Raw, Relay};
use native_client::wire::{self, ClientFrame, CloseCode, ServerFrame, WireLimits};
use native_client::{Args, ClientError, ClientEvent, Incoming};
use relay_core::auth::token::{mint, TokenClaims};
use relay_core::auth::unix_seconds;

const SECRET: &str = "a test secret, long enough to be realistic";

fn now() -> u64 {
    unix_seconds(SystemTime::now())
}

fn token(sub: &str, exp: u64, peers: Option<&[&str]>) -> String {
    mint(
        SECRET.as_bytes(),
        &TokenClaims {
            sub: sub.into(),
            exp,
            iat: Some(now()),
            peers: peers.map(|p| p.iter().map(|s| s.to_string()).collect()),
        },
    )
}

/// A relay with `--auth token` and the test secret, plus `extra` flags.
async fn token_relay(extra: &[&str]) -> (Relay, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
    let secret = secret.display().to_string();
    let mut flags = vec!["--auth", "token", "--auth-secret-file", secret.as_str()];
    flags.extend_from_slice(extra);
    (Relay::start(&flags).await, dir)
}

/// Says hello with `credentials` and returns the relay's first answer.
async fn hello(relay: &Relay, id: &str, credentials: Option<&str>) -> ServerFrame {
    let mut raw = Raw::connect(relay, wire::ALPN)
        .await
        .expect("QUIC handshake");
    raw.send(&ClientFrame::Hello {
        version: wire::PROTOCOL_VERSION,
        client_id: id.into(),
        credentials: credentials.map(|c| bytes::Bytes::from(c.to_owned())),
    })
    .await;
    raw.next().await
}

fn refused(frame: ServerFrame) -> String {
    match frame {
        ServerFrame::Refused { code, message } => {
            assert_eq!(code, CloseCode::Refused.code());
            message
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn quic_token_refusals_say_which() {
    let (relay, _dir) = token_relay(&[]).await;
    assert_eq!(
        refused(hello(&relay, "A", None).await),
        "clientId 'A' was refused: no token: present a token signed for this clientId \
         (Socket.IO: auth {token} or a 'token' query parameter; QUIC: the hello's credentials)"
    );
    let expired = token("A", now() - 100, None);
    let message = refused(hello(&relay, "A", Some(&expired)).await);
    assert!(
        message.starts_with("clientId 'A' was refused: the token expired ")
            && message.ends_with("; mint a new one"),
        "{message}"
    );
    let forged = mint(
        b"another secret",
        &TokenClaims {
            sub: "A".into(),
            exp: now() + 60,
            iat: None,
            peers: None,
        },
    );
    assert_eq!(
        refused(hello(&relay, "A", Some(&forged)).await),
        "clientId 'A' was refused: the token's signature is not valid for this relay's secret (HS256)"
    );
    // Impersonation: B's valid token does not make its bearer A.
    let bs = token("B", now() + 60, None);
    assert_eq!(
        refused(hello(&relay, "A", Some(&bs)).await),
        "clientId 'A' was refused: the token was issued for clientId 'B', not this one"
    );
    assert_eq!(
        refused(hello(&relay, "A", Some("garbage")).await),
        "clientId 'A' was refused: the token is malformed: InvalidToken"
    );
    // The native client library's token option.
    let (a, _a_in) = within(
        "connecting with a token",
        native_client::Client::connect(relay.options("A").token(token("A", now() + 60, None))),
    )
    .await
    .expect("a valid token connects");
    assert_eq!(a.list_clients().await.unwrap(), vec!["A"]);
    // And the limits come with the welcome.
    match hello(&relay, "W", Some(&token("W", now() + 60, None))).await {
        ServerFrame::Welcome { limits, .. } => assert_eq!(
            limits,
            WireLimits {
                messages_per_second: 1000,
                message_burst: 2000,
                bytes_per_second: 8 * 1024 * 1024,
                byte_burst: 16 * 1024 * 1024,
                max_message_bytes: 1024 * 1024,
                max_pending: 1024,
                max_streams: 256,
                ack_timeout_ms: 30_000,
            }
        ),
        other => panic!("expected a welcome, got {other:?}"),
    }
}

async fn connect_with(
    relay: &Relay,
    id: &str,
    peers: Option<&[&str]>,
) -> (native_client::Client, Incoming) {
    within(
        &format!("connecting {id}"),
        native_client::Client::connect(relay.options(id).token(token(id, now() + 600, peers))),
    )
    .await
    .unwrap_or_else(|e| panic!("{id} cannot connect: {e}"))
}

async fn server_error(incoming: &mut Incoming) -> String {
    loop {
        match common::next(incoming).await {
            ClientEvent::ServerError { message, .. } => return message,
            _ => continue,
        }
    }
}

#[tokio::test]
async fn quic_peers_claim_refuses_both_ways() {
    let (relay, _dir) = token_relay(&[]).await;
    let (a, mut a_in) = connect_with(&relay, "A", Some(&["B"])).await;
    let (c, mut c_in) = connect_with(&relay, "C", None).await;
    let (b, b_in) = connect_with(&relay, "B", None).await;
    // A's own claim does not name C.
    let e = a.register("C").await.unwrap_err();
    assert!(matches!(e, ClientError::Request { .. }), "{e}");
    assert_eq!(
        server_error(&mut a_in).await,
        "pairing with 'C' is not allowed: it is not among your token's peers"
    );
    // C asks A, whose claim does not name C.
    let e = c.register("A").await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "request failed: 'A' does not allow pairing with you: you are not among its token's peers"
    );
    assert_eq!(
        server_error(&mut c_in).await,
        "'A' does not allow pairing with you: you are not among its token's peers"
    );
    // B is named.
    let (a_in, b_in) = (a_in, b_in);
    let mut a_in = a_in;
    let register = b.register("A");
    let accept = async {
        match common::next(&mut a_in).await {
            ClientEvent::RegisterRequest(request) => request.accept(),
            other => panic!("expected a pairing request, got {other:?}"),
        }
    };
    let (registered, _) = tokio::join!(register, accept);
    assert!(registered.unwrap());
    drop(b_in);
}

#[tokio::test]
async fn quic_request_rate_refuses_with_the_limit_and_spares_another_client() {
    let relay = Relay::start(&["--rate-messages", "5", "--rate-burst", "5"]).await;
    let (a, _a_in, _b, mut b_in) = relay.paired("A", "B").await; // A's first request
    let (c, _c_in, _d, mut d_in) = relay.paired("C", "D").await;
    for _ in 0..4 {
        a.emit("e", Args::new()).await.unwrap();
    }
    let e = a.emit_with_ack("e", Args::new()).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "request failed: rate limit reached: at most 5 requests per second (bursts of 5); slow down"
    );
    for _ in 0..4 {
        c.emit("e", Args::new()).await.unwrap();
    }
    let mut delivered = 0;
    while delivered < 4 {
        if let ClientEvent::Event { .. } = common::next(&mut d_in).await {
            delivered += 1;
        }
    }
    let mut delivered = 0;
    while delivered < 4 {
        if let ClientEvent::Event { .. } = common::next(&mut b_in).await {
            delivered += 1;
        }
    }
    common::assert_quiet(&mut b_in, Duration::from_millis(100)).await;
}

#[tokio::test]
async fn quic_connections_per_address_are_capped() {
    let relay = Relay::start(&["--max-connections-per-ip", "2"]).await;
    let (a, _a_in) = relay.connect("A").await;
    let (_b, _b_in) = relay.connect("B").await;
    assert_eq!(
        refused(hello(&relay, "C", None).await),
        "too many connections from 127.0.0.1: 2 are open, the most one address may have"
    );
    a.close().await;
    within("a slot to be freed", async {
        loop {
            if let ServerFrame::Welcome { .. } = hello(&relay, "C", None).await {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let relay = Relay::start(&["--connect-rate-per-ip", "1", "--connect-burst-per-ip", "2"]).await;
    let _first = hello(&relay, "A", None).await;
    let _second = hello(&relay, "B", None).await;
    assert_eq!(
        refused(hello(&relay, "C", None).await),
        "connecting too fast from 127.0.0.1: at most 1 new connections per second (bursts of 2); \
         wait and retry"
    );
}

// ----- the admission callback ------------------------------------------------------------

/// A small admission service: admits "ok" (with a peers claim) and "plain" (empty body),
/// answers "slow" too late, and refuses everyone else with 403. Records every body.
async fn admission_service() -> (
    SocketAddr,
    Arc<Mutex<Vec<serde_json::Value>>>,
    tokio::task::JoinHandle<()>,
) {
    let seen: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let record = seen.clone();
    let app = axum::Router::new().route(
        "/admit",
        axum::routing::post(move |body: axum::body::Bytes| {
            let record = record.clone();
            async move {
                let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
                record.lock().unwrap().push(body.clone());
                match body["clientId"].as_str().unwrap_or_default() {
                    "ok" => (StatusCode::OK, r#"{"peers": ["friend"]}"#.to_owned()),
                    "plain" | "friend" => (StatusCode::OK, String::new()),
                    "slow" => {
                        tokio::time::sleep(Duration::from_secs(3)).await;
                        (StatusCode::OK, String::new())
                    }
                    "garbled" => (StatusCode::OK, "not json".to_owned()),
                    _ => (StatusCode::FORBIDDEN, "no".to_owned()),
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (addr, seen, task)
}

/// The Socket.IO handshake over long-polling with the raw engine.io protocol, as a 4.x
/// client (EIO=4, `auth: {token}`) or a 2.x client (EIO=3, `token` in the query) does it;
/// returns everything the relay answered on the namespace.
async fn socketio_handshake(base: &str, id: &str, token: &str, eio: u8) -> String {
    let http = reqwest::Client::new();
    let query = match eio {
        4 => format!("EIO=4&transport=polling&clientId={id}"),
        _ => format!("EIO=3&transport=polling&clientId={id}&token={token}"),
    };
    let url = format!("{base}/socket.io/?{query}");
    let open = http.get(&url).send().await.unwrap().text().await.unwrap();
    let start = open.find('{').expect("an open packet");
    let end = open[start..].find('}').unwrap() + start + 1;
    let sid = serde_json::from_str::<serde_json::Value>(&open[start..=end - 1]).unwrap()["sid"]
        .as_str()
        .unwrap()
        .to_owned();
    let url = format!("{url}&sid={sid}");
    let mut seen = open.clone();
    if eio == 4 {
        let connect = format!("40{}", serde_json::json!({ "token": token }));
        http.post(&url).body(connect).send().await.unwrap();
    }
    for _ in 0..3 {
        if seen.contains("44") || seen.contains("40{\"sid\"") || seen.contains("P2P_LIMITS") {
            break;
        }
        let more = within("polling", http.get(&url).send()).await.unwrap();
        seen.push_str(&more.text().await.unwrap());
    }
    seen
}

#[tokio::test]
async fn callback_admits_refuses_and_times_out_over_quic_and_socketio() {
    let (service, seen, _task) = admission_service().await;
    let url = format!("http://{service}/admit");
    let relay = Relay::start(&[
        "--auth",
        "url",
        "--auth-url",
        &url,
        "--auth-timeout-ms",
        "300",
    ])
    .await;

    // Admitted, with the claims of the answer: its peers claim applies.
    match hello(&relay, "ok", Some("t-ok")).await {
        ServerFrame::Welcome { client_id, .. } => assert_eq!(client_id, "ok"),
        other => panic!("expected a welcome, got {other:?}"),
    }
    let body = seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(body["clientId"], "ok");
    assert_eq!(body["token"], "t-ok");
    assert_eq!(body["transport"], "quic");
    assert!(body["remoteAddress"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    let (ok, mut ok_in) = within(
        "ok",
        native_client::Client::connect(relay.options("ok").token("t")),
    )
    .await
    .unwrap();
    let (_plain, _plain_in) = within(
        "plain",
        native_client::Client::connect(relay.options("plain")),
    )
    .await
    .unwrap();
    let e = ok.register("plain").await.unwrap_err();
    assert!(
        e.to_string().contains("not among your token's peers"),
        "{e}"
    );
    let _ = server_error(&mut ok_in).await;

    // Refused: a non-2xx answer, a late one, one that does not parse.
    assert_eq!(
        refused(hello(&relay, "mallory", Some("t")).await),
        "clientId 'mallory' was refused: the admission service refused it (HTTP 403)"
    );
    assert_eq!(
        refused(hello(&relay, "slow", None).await),
        "clientId 'slow' was refused: the admission service did not answer within 300 ms"
    );
    let garbled = refused(hello(&relay, "garbled", None).await);
    assert!(
        garbled.starts_with(
            "clientId 'garbled' was refused: the admission service's answer was not understood"
        ),
        "{garbled}"
    );

    // Socket.IO, 4.x and 2.x handshakes: the same service decides.
    let base = relay.socketio_url();
    for eio in [4, 3] {
        let admitted = socketio_handshake(&base, "plain", "tok", eio).await;
        assert!(admitted.contains("P2P_LIMITS"), "EIO={eio}: {admitted}");
        let body = seen.lock().unwrap().last().cloned().unwrap();
        assert_eq!(
            (body["clientId"].as_str(), body["token"].as_str()),
            (Some("plain"), Some("tok"))
        );
        assert_eq!(body["transport"], "socketio");
        let refused = socketio_handshake(&base, "mallory", "tok", eio).await;
        assert!(
            refused.contains(
                "clientId 'mallory' was refused: the admission service refused it (HTTP 403)"
            ),
            "EIO={eio}: {refused}"
        );
    }
    relay.shutdown().await;
}

#[tokio::test]
async fn callback_that_cannot_be_reached_refuses() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let gone = listener.local_addr().unwrap();
    drop(listener);
    let url = format!("http://{gone}/admit");
    let relay = Relay::start(&["--auth", "url", "--auth-url", &url]).await;
    let message = refused(hello(&relay, "A", None).await);
    assert!(
        message.starts_with("clientId 'A' was refused: the admission service could not be reached"),
        "{message}"
    );
}
