//! CORS on the Socket.IO gateway, end to end: the real relay in this process, spoken to in
//! raw HTTP/1.1 the way a browser would (an `Origin` header, preflights, websocket
//! upgrades), so the headers checked are exactly the ones on the wire.
//!
//! Every step is bounded by a timeout; every relay stops when its test ends.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use clap::Parser;
use p2p_relay::{Server, Settings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(10);
const PAGE: &str = "http://127.0.0.1:8800";

async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out after {WAIT:?}: {what}"))
}

/// A relay on free loopback ports with `--cors-origins` set to `origins` (None: default).
struct Relay {
    server: Option<Server>,
    _dir: tempfile::TempDir,
}

impl Relay {
    async fn start(origins: Option<&str>) -> Relay {
        let dir = tempfile::tempdir().expect("a temporary data directory");
        let mut settings = Settings::on_free_local_ports(dir.path());
        if let Some(origins) = origins {
            settings.cors_origins = origins.parse().expect("a valid origin list");
        }
        let server = within("starting the relay", Server::start(&settings))
            .await
            .expect("the relay starts");
        Relay {
            server: Some(server),
            _dir: dir,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.server.as_ref().expect("running").socketio_addr()
    }

    async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            within("relay shutdown", server.shutdown()).await;
        }
    }
}

/// A fresh clientId per request, so that no two requests compete for one id.
fn client_id() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!("CORS{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The comma-separated values of a header, lowercased.
    fn list(&self, name: &str) -> Vec<String> {
        self.header(name)
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_ascii_lowercase())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn assert_no_grant(&self) {
        assert_eq!(
            self.header("access-control-allow-origin"),
            None,
            "{self:#?}"
        );
        assert_eq!(
            self.header("access-control-allow-credentials"),
            None,
            "{self:#?}"
        );
    }

    fn assert_granted_to(&self, origin: &str) {
        assert_eq!(
            self.header("access-control-allow-origin"),
            Some(origin),
            "{self:#?}"
        );
        assert_eq!(
            self.header("access-control-allow-credentials"),
            Some("true"),
            "{self:#?}"
        );
    }
}

/// Sends one request and reads its reply: to the end of the headers for a 101 (the
/// connection then belongs to the websocket), to the end of the body otherwise.
async fn exchange(addr: SocketAddr, method: &str, target: &str, headers: &[(&str, &str)]) -> Reply {
    within(&format!("{method} {target}"), async {
        let mut tcp = TcpStream::connect(addr)
            .await
            .expect("connect to the gateway");
        let mut request = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\n");
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        let upgrade = headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("upgrade"));
        if !upgrade {
            request.push_str("Connection: close\r\n");
        }
        request.push_str("\r\n");
        tcp.write_all(request.as_bytes())
            .await
            .expect("send the request");

        let mut data = Vec::new();
        let mut buf = [0u8; 4096];
        let head_end = loop {
            if let Some(at) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                break at;
            }
            let n = tcp.read(&mut buf).await.expect("read the reply");
            assert!(n > 0, "the gateway closed before its reply ended: {data:?}");
            data.extend_from_slice(&buf[..n]);
        };
        let head = String::from_utf8(data[..head_end].to_vec()).expect("a text header");
        let mut lines = head.split("\r\n");
        let status_line = lines.next().expect("a status line");
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("a status code in {status_line:?}"));
        let headers: Vec<(String, String)> = lines
            .map(|line| {
                let (name, value) = line.split_once(':').expect("name: value");
                (name.trim().to_ascii_lowercase(), value.trim().to_string())
            })
            .collect();
        let mut reply = Reply {
            status,
            headers,
            body: String::new(),
        };
        let mut body = data[head_end + 4..].to_vec();
        if status != 101 {
            // A refused upgrade keeps the connection open: read what Content-Length says.
            match reply.header("content-length") {
                Some(len) => {
                    let len: usize = len.parse().expect("a numeric Content-Length");
                    while body.len() < len {
                        let n = tcp.read(&mut buf).await.expect("read the body");
                        assert!(n > 0, "the body ended early: {body:?}");
                        body.extend_from_slice(&buf[..n]);
                    }
                }
                None => {
                    tcp.read_to_end(&mut body).await.expect("read the body");
                }
            }
        }
        reply.body = String::from_utf8_lossy(&body).into_owned();
        reply
    })
    .await
}

/// The first request of a long-polling client: the engine.io handshake.
async fn poll_handshake(addr: SocketAddr, eio: u8, origin: Option<&str>) -> Reply {
    let target = format!(
        "/socket.io/?EIO={eio}&transport=polling&clientId={}",
        client_id()
    );
    let mut headers = vec![("Accept", "*/*")];
    headers.extend(origin.map(|o| ("Origin", o)));
    exchange(addr, "GET", &target, &headers).await
}

/// A websocket upgrade as a browser sends it.
async fn websocket(addr: SocketAddr, eio: u8, origin: Option<&str>) -> Reply {
    let target = format!(
        "/socket.io/?EIO={eio}&transport=websocket&clientId={}",
        client_id()
    );
    let mut headers = vec![
        ("Connection", "Upgrade"),
        ("Upgrade", "websocket"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];
    headers.extend(origin.map(|o| ("Origin", o)));
    exchange(addr, "GET", &target, &headers).await
}

async fn preflight(addr: SocketAddr, eio: u8, origin: &str, request_headers: &str) -> Reply {
    let target = format!("/socket.io/?EIO={eio}&transport=polling&t=Preflight&sid=abc");
    exchange(
        addr,
        "OPTIONS",
        &target,
        &[
            ("Origin", origin),
            ("Access-Control-Request-Method", "POST"),
            ("Access-Control-Request-Headers", request_headers),
        ],
    )
    .await
}

fn assert_handshake(reply: &Reply) {
    assert_eq!(reply.status, 200, "{reply:#?}");
    assert!(
        reply.body.contains("\"sid\""),
        "not a handshake: {reply:#?}"
    );
}

fn assert_refused(reply: &Reply, origin: &str) {
    assert_eq!(reply.status, 403, "{reply:#?}");
    assert!(
        reply
            .body
            .contains(&format!("origin '{origin}' is not allowed")),
        "{reply:#?}"
    );
    assert!(reply.body.contains("--cors-origins"), "{reply:#?}");
    assert!(reply.body.contains("P2P_RELAY_CORS_ORIGINS"), "{reply:#?}");
    reply.assert_no_grant();
}

#[tokio::test]
async fn eio3_polling_handshake_from_a_page_gets_a_credentialed_grant() {
    let relay = Relay::start(None).await;
    let reply = poll_handshake(relay.addr(), 3, Some(PAGE)).await;
    assert_handshake(&reply);
    reply.assert_granted_to(PAGE);
    relay.stop().await;
}

#[tokio::test]
async fn eio4_polling_handshake_from_a_page_gets_a_credentialed_grant() {
    let relay = Relay::start(None).await;
    let reply = poll_handshake(relay.addr(), 4, Some(PAGE)).await;
    assert_handshake(&reply);
    reply.assert_granted_to(PAGE);
    relay.stop().await;
}

#[tokio::test]
async fn preflights_are_answered_for_both_protocol_generations() {
    let relay = Relay::start(None).await;
    // 2.x preflights its binary posts (Content-Type: application/octet-stream); 4.x only
    // when the app sets extraHeaders.
    for (eio, requested) in [(3, "content-type"), (4, "content-type,x-app-token")] {
        let reply = preflight(relay.addr(), eio, PAGE, requested).await;
        assert!((200..300).contains(&reply.status), "EIO={eio}: {reply:#?}");
        reply.assert_granted_to(PAGE);
        let methods = reply.list("access-control-allow-methods");
        assert!(
            methods.contains(&"post".to_string()),
            "EIO={eio}: {reply:#?}"
        );
        assert!(
            methods.contains(&"get".to_string()),
            "EIO={eio}: {reply:#?}"
        );
        let allowed = reply.list("access-control-allow-headers");
        for header in requested.split(',') {
            assert!(
                allowed.contains(&header.to_string()),
                "EIO={eio} {header}: {reply:#?}"
            );
        }
    }
    relay.stop().await;
}

#[tokio::test]
async fn websocket_upgrades_from_any_page_are_accepted_by_default() {
    let relay = Relay::start(None).await;
    for eio in [3, 4] {
        let reply = websocket(relay.addr(), eio, Some("http://anywhere.example")).await;
        assert_eq!(reply.status, 101, "EIO={eio}: {reply:#?}");
    }
    relay.stop().await;
}

#[tokio::test]
async fn restricted_origins_refuse_other_pages() {
    let relay = Relay::start(Some("http://a.example")).await;
    let other = "http://b.example";
    for eio in [3, 4] {
        assert_refused(&poll_handshake(relay.addr(), eio, Some(other)).await, other);
        assert_refused(&websocket(relay.addr(), eio, Some(other)).await, other);
        assert_refused(
            &preflight(relay.addr(), eio, other, "content-type").await,
            other,
        );
    }
    relay.stop().await;
}

#[tokio::test]
async fn restricted_origins_admit_listed_pages() {
    let relay = Relay::start(Some("http://a.example,https://app.example.com")).await;
    for eio in [3, 4] {
        let reply = poll_handshake(relay.addr(), eio, Some("http://a.example")).await;
        assert_handshake(&reply);
        reply.assert_granted_to("http://a.example");
        let reply = preflight(relay.addr(), eio, "https://app.example.com", "content-type").await;
        assert!((200..300).contains(&reply.status), "{reply:#?}");
        reply.assert_granted_to("https://app.example.com");
        let reply = websocket(relay.addr(), eio, Some("http://a.example")).await;
        assert_eq!(reply.status, 101, "EIO={eio}: {reply:#?}");
    }
    relay.stop().await;
}

#[tokio::test]
async fn requests_without_origin_work_whatever_the_setting() {
    for origins in [None, Some("http://a.example")] {
        let relay = Relay::start(origins).await;
        for eio in [3, 4] {
            let reply = poll_handshake(relay.addr(), eio, None).await;
            assert_handshake(&reply);
            reply.assert_no_grant();
            let reply = websocket(relay.addr(), eio, None).await;
            assert_eq!(reply.status, 101, "{origins:?} EIO={eio}: {reply:#?}");
        }
        relay.stop().await;
    }
}

#[tokio::test]
async fn paths_outside_socket_io_get_no_cors() {
    let relay = Relay::start(None).await;
    let reply = exchange(
        relay.addr(),
        "GET",
        "/socket.io-admin/",
        &[("Origin", PAGE)],
    )
    .await;
    assert_eq!(reply.status, 404, "{reply:#?}");
    reply.assert_no_grant();
    let reply = exchange(
        relay.addr(),
        "OPTIONS",
        "/api",
        &[("Origin", PAGE), ("Access-Control-Request-Method", "POST")],
    )
    .await;
    reply.assert_no_grant();
    relay.stop().await;
}

#[test]
fn bad_origin_lists_are_refused_by_the_command_line() {
    for (value, says) in [
        (
            "http://a.example/app",
            "'http://a.example/app' is not an origin",
        ),
        ("a.example", "no scheme"),
        ("*,http://a.example", "cannot be combined"),
        ("http://a.example,", "empty"),
    ] {
        let err = Settings::try_parse_from(["p2p-relay", "--cors-origins", value])
            .expect_err(value)
            .to_string();
        assert!(err.contains("--cors-origins"), "{value}: {err}");
        assert!(err.contains(says), "{value}: {err}");
    }
    let ok = Settings::try_parse_from(["p2p-relay", "--cors-origins", "http://a.example"])
        .expect("a valid list");
    assert_eq!(ok.cors_origins.to_string(), "http://a.example");
    assert_eq!(
        Settings::parse_from(["p2p-relay"]).cors_origins,
        gateway_socketio::CorsOrigins::Any
    );
}

#[tokio::test]
async fn the_binary_refuses_a_bad_origin_list_from_the_environment_at_start() {
    let dir = tempfile::tempdir().expect("a temporary data directory");
    let output = within(
        "the relay binary refusing its settings",
        tokio::process::Command::new(env!("CARGO_BIN_EXE_p2p-relay"))
            .args([
                "--socketio-listen",
                "127.0.0.1:0",
                "--quic-listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
            ])
            .arg("--data-dir")
            .arg(dir.path())
            .env("P2P_RELAY_CORS_ORIGINS", "https://app.example.com/")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("run the relay binary");
    assert!(!output.status.success(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("'https://app.example.com/' is not an origin"),
        "{stderr}"
    );
    assert!(stderr.contains("trailing '/'"), "{stderr}");
}
