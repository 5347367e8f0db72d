//! Security and limits end to end, against the real relay: admission by token over QUIC
//! (each refusal reason, the limits in the Welcome, the peers claim both ways), the HTTP
//! admission callback (admits, refuses, times out) over QUIC and Socket.IO (4.x and 2.x
//! handshakes on long-polling), and the rate and per-address limits over QUIC, each hit
//! with its message while another client goes on unaffected.

use crate::common;
use crate::sio;

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
    // And the limits come with the welcome: the defaults, the rate limits off (0).
    match hello(&relay, "W", Some(&token("W", now() + 60, None))).await {
        ServerFrame::Welcome { limits, .. } => assert_eq!(
            limits,
            WireLimits {
                messages_per_second: 0,
                message_burst: 0,
                bytes_per_second: 0,
                byte_burst: 0,
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

/// A token that expires `secs` seconds from now (to the second, as `exp` is), and the
/// instant that is.
fn expiring(sub: &str, secs: u64, peers: Option<&[&str]>) -> (String, std::time::Instant) {
    let exp = now() + secs;
    let left = (SystemTime::UNIX_EPOCH + Duration::from_secs(exp))
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    (token(sub, exp, peers), std::time::Instant::now() + left)
}

/// A Socket.IO client (engine.io 4, websocket) admitted with `token` in the query, past its
/// `P2P_LIMITS`.
async fn sio_with_token(relay: &Relay, id: &str, token: &str) -> sio::Sio {
    let query = format!("clientId={id}&token={token}");
    let mut s = sio::within(
        "connecting over Socket.IO",
        sio::Sio::connect_query(relay.socketio_addr(), &query),
    )
    .await
    .unwrap_or_else(|e| panic!("{id} cannot connect: {e:?}"));
    match s.next().await {
        sio::Packet::Event { name, .. } if name == "P2P_LIMITS" => s,
        other => panic!("{id}: expected P2P_LIMITS first, got {other:?}"),
    }
}

/// How late after its token's exp a connection may still be closed: the timer's latency
/// on a loaded machine, not a second of grace.
const EXPIRY_SLACK: Duration = Duration::from_millis(1500);

#[tokio::test]
async fn a_connection_is_told_and_closed_when_its_token_expires_over_both_transports() {
    let (relay, _dir) = token_relay(&[]).await;
    // A native client whose token expires in 2-3 s (exp is in whole seconds), paired with
    // one whose token lasts.
    let (q_token, q_exp) = expiring("Q", 3, None);
    let (q, mut q_in) = within(
        "connecting Q",
        native_client::Client::connect(relay.options("Q").token(q_token)),
    )
    .await
    .expect("Q connects");
    let (p, mut p_in) = connect_with(&relay, "P", None).await;
    common::pair(&q, &p, &mut p_in).await;
    // A Socket.IO client whose token expires as soon, paired with a lasting native one.
    let (l_token, l_exp) = expiring("L", 3, None);
    let mut l = sio_with_token(&relay, "L", &l_token).await;
    let (m, mut m_in) = connect_with(&relay, "M", None).await;
    let register = m.register("L");
    let accept = async {
        let ticket = match l.event("P2P_REGISTER").await {
            sio::Packet::Event { ack: Some(id), .. } => id,
            other => panic!("expected a pairing request, got {other:?}"),
        };
        l.answer(ticket, &[serde_json::json!(true)]).await;
    };
    let (registered, _) = tokio::join!(register, accept);
    assert!(registered.unwrap(), "M pairs with L");

    // QUIC: told why (the server error, then the close code).
    let mut told = None;
    let closed = within("Q's close", async {
        loop {
            match common::next(&mut q_in).await {
                ClientEvent::ServerError { message, .. } => told = Some(message),
                ClientEvent::Closed(reason) => break reason,
                _ => continue,
            }
        }
    })
    .await;
    let at = std::time::Instant::now();
    assert!(
        at + Duration::from_millis(50) >= q_exp,
        "closed before its exp"
    );
    assert!(
        at <= q_exp + EXPIRY_SLACK,
        "closed {:?} after its exp",
        at - q_exp
    );
    assert_eq!(closed.code(), Some(CloseCode::TokenExpired), "{closed}");
    assert_eq!(
        told.as_deref(),
        Some("the token expired: connect again with a new token")
    );
    // Its peer is freed, and the relay has forgotten it.
    loop {
        if let ClientEvent::PeerDisconnected = common::next(&mut p_in).await {
            break;
        }
    }

    // Socket.IO: the SERVER_ERROR text, then the namespace disconnect.
    let mut packets = Vec::new();
    loop {
        let packet = l.next().await;
        if packet == sio::Packet::Disconnected {
            break;
        }
        packets.push(packet);
    }
    let at = std::time::Instant::now();
    assert!(
        at + Duration::from_millis(50) >= l_exp,
        "closed before its exp"
    );
    assert!(
        at <= l_exp + EXPIRY_SLACK,
        "closed {:?} after its exp",
        at - l_exp
    );
    assert_eq!(
        sio::server_errors(&packets),
        vec!["the token expired: connect again with a new token"]
    );
    loop {
        if let ClientEvent::PeerDisconnected = common::next(&mut m_in).await {
            break;
        }
    }
    // Both are gone from the directory; their peers, whose tokens last, stay and pair.
    assert_eq!(p.list_clients().await.unwrap(), vec!["M", "P"]);
    common::pair(&p, &m, &mut m_in).await;
    drop(q);
}

#[tokio::test]
async fn list_clients_shows_a_peers_restricted_client_only_its_peers_over_both_transports() {
    let (relay, _dir) = token_relay(&[]).await;
    let (a, _a_in) = connect_with(&relay, "A", Some(&["B", "L", "team-*"])).await;
    let mut others = Vec::new();
    for id in ["B", "C", "team-1", "zed"] {
        others.push(connect_with(&relay, id, None).await);
    }
    let mut l = sio_with_token(&relay, "L", &token("L", now() + 600, Some(&["A", "zed"]))).await;
    // QUIC, whole and paged: only the connected ids A's claim names.
    assert_eq!(a.list_clients().await.unwrap(), vec!["B", "L", "team-1"]);
    let page = a.list_page(None, Some(2)).await.unwrap();
    assert_eq!(page.ids, ["B", "L"]);
    assert_eq!(page.next.as_deref(), Some("L"));
    // Socket.IO's LIST_CLIENTS (the legacy callback's one array).
    assert_eq!(
        l.request("LIST_CLIENTS", &[]).await,
        vec![serde_json::json!(["A", "zed"])]
    );
    // A client without the claim lists everyone.
    let (b, _) = &others[0];
    assert_eq!(
        b.list_clients().await.unwrap(),
        vec!["A", "B", "C", "L", "team-1", "zed"]
    );
}

#[tokio::test]
async fn tokens_from_the_future_are_refused() {
    let (relay, _dir) = token_relay(&[]).await;
    let signed = |claims: serde_json::Value| mint(SECRET.as_bytes(), &claims);
    let later = now() + 3600;
    let exp = now() + 7200;
    let nbf = signed(serde_json::json!({"sub": "A", "exp": exp, "nbf": later}));
    let message = refused(hello(&relay, "A", Some(&nbf)).await);
    assert!(
        message.starts_with(&format!(
            "clientId 'A' was refused: the token is not valid yet: its 'nbf' ({later}) is "
        )) && message.ends_with("check the minter's clock"),
        "{message}"
    );
    let iat = signed(serde_json::json!({"sub": "A", "exp": exp, "iat": later}));
    let message = refused(hello(&relay, "A", Some(&iat)).await);
    assert!(
        message.starts_with(&format!(
            "clientId 'A' was refused: the token was issued in the future: its 'iat' ({later})"
        )),
        "{message}"
    );
    // A few seconds of skew between the minter's clock and the relay's are fine.
    let skewed =
        signed(serde_json::json!({"sub": "A", "exp": exp, "iat": now() + 5, "nbf": now() + 5}));
    assert!(matches!(
        hello(&relay, "A", Some(&skewed)).await,
        ServerFrame::Welcome { .. }
    ));
}

/// Runs `p2p-relay token` with `args` and the test secret; (exit code, stdout, stderr).
fn token_command(args: &[&str]) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_p2p-relay"))
        .arg("token")
        .arg("--auth-secret-file")
        .arg(&secret)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("the binary runs");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

#[test]
fn the_token_command_refuses_what_the_relay_would_refuse() {
    let long = "x".repeat(129);
    let cases: [(&[&str], &str); 6] = [
        (&["--sub", ""], "clientId must not be empty"),
        (
            &["--sub", &long],
            "clientId is 129 bytes long; the limit is 128",
        ),
        (
            &["--sub", "a\u{1}b"],
            "clientId must not contain control characters",
        ),
        (
            &["--sub", "A", "--ttl", "100000000d"],
            "longer than 366d, the longest ttl",
        ),
        (
            &["--sub", "A", "--ttl", "367d"],
            "longer than 366d, the longest ttl",
        ),
        (
            &["--sub", "A", "--peers", "B,,C"],
            "peers entry '' matches no clientId",
        ),
    ];
    for (args, why) in cases {
        let (code, stdout, stderr) = token_command(args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "{args:?}: no token printed: {stdout}");
        let first = stderr.lines().next().unwrap_or_default();
        assert!(
            first.starts_with("error: ") && first.contains(why),
            "{args:?}: {stderr}"
        );
    }
    // What the relay takes is minted: the longest ttl, a prefix, '*'.
    let (code, stdout, stderr) =
        token_command(&["--sub", "A", "--ttl", "366d", "--peers", "B,team-*,*"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout.trim().split('.').count(), 3, "{stdout}");
}

// ----- an admission service whose answer is too long -----------------------------------

/// VmRSS (now) and VmHWM (peak since the start) of process `pid`, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} in /proc/{pid}/status"))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// An admission service that admits everyone with a 13 MB claims object: with a length
/// for "sized", streamed in 64 KiB chunks without one for "streamed", and a short answer
/// for anyone else.
async fn long_answer_service() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    const LONG: usize = 13 * 1024 * 1024;
    let app = axum::Router::new().route(
        "/admit",
        axum::routing::post(|body: axum::body::Bytes| async move {
            let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let long = || format!(r#"{{"peers":null,"pad":"{}"}}"#, "x".repeat(LONG));
            match body["clientId"].as_str().unwrap_or_default() {
                "sized" => axum::body::Body::from(long()),
                "streamed" => {
                    let chunks = bytes::Bytes::from(long())
                        .chunks(64 * 1024)
                        .map(|c| Ok::<_, std::io::Error>(bytes::Bytes::copy_from_slice(c)))
                        .collect::<Vec<_>>();
                    axum::body::Body::from_stream(futures::stream::iter(chunks))
                }
                _ => axum::body::Body::from(r#"{"peers":null}"#),
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (addr, task)
}

#[tokio::test]
async fn an_admission_answer_longer_than_the_bound_refuses_without_being_held() {
    let (service, _task) = long_answer_service().await;
    let url = format!("http://{service}/admit");
    let relay = Relay::start_binary(&["--auth", "url", "--auth-url", &url]).await;
    let pid = relay.pid().expect("the relay runs as a child process");
    let (before, _) = memory_kib(pid);
    let expected = "the admission service's answer was not understood: its body is longer \
                    than 65536 bytes (--auth-response-max-bytes)";
    for id in ["sized", "streamed"] {
        match sio::Sio::connect_query(relay.socketio_addr(), &format!("clientId={id}")).await {
            Err(sio::ConnectFailure::Refused(message)) => assert_eq!(
                message,
                format!("clientId '{id}' was refused: {expected}"),
                "{id}"
            ),
            Err(other) => panic!("{id}: {other:?}"),
            Ok(_) => panic!(
                "{id} was admitted (VmRSS, VmHWM: {:?} KiB)",
                memory_kib(pid)
            ),
        }
    }
    let (now, peak) = memory_kib(pid);
    eprintln!(
        "13 MB admission answers: VmRSS before {before} KiB, after {now} KiB, VmHWM {peak} KiB"
    );
    assert!(
        peak <= before + 20 * 1024,
        "the relay's peak RSS reached {peak} KiB from {before} KiB"
    );
    // A short answer still admits.
    let _ok = sio::Sio::connect(relay.socketio_addr(), "short").await;
    relay.shutdown().await;
}
