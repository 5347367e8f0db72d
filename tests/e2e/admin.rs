//! The admin listener against a real relay (in this process) and real clients: `/metrics`
//! numbers move as clients connect, pair, emit and stream; `/healthz` and `/readyz`;
//! the control center page and its JSON list the clients and who is paired with whom;
//! a configured token is required everywhere but the probes; without one, only requests
//! naming a loopback host (or one of `--admin-hosts`) are answered; every answer carries
//! the Content-Security-Policy and frame headers.

use crate::common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{next, open_stream, pair, read_to_eof, within, write_and_finish};
use native_client::{Args, Client, ClientEvent, ConnectOptions, Incoming, Trust};
use p2p_relay::admin::{access::Token, Access, Admin, Health, Watched};
use p2p_relay::{Server, Settings};
use relay_core::rmpv::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A relay with its admin listener, both on free loopback ports.
struct Admined {
    server: Option<Server>,
    admin: Option<Admin>,
    health: Arc<Health>,
    ca: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Admined {
    async fn start(access: Access) -> Admined {
        let dir = tempfile::tempdir().unwrap();
        let settings = Settings::on_free_local_ports(dir.path());
        let server = within("starting the relay", Server::start(&settings))
            .await
            .expect("the relay starts");
        let health = Arc::new(Health::default());
        let watched = Watched {
            relay: server.relay().clone(),
            health: health.clone(),
            socketio_addr: server.socketio_addr(),
            quic_addr: server.quic_addr(),
        };
        let admin = Admin::start(settings.admin.admin_listen, access, watched)
            .await
            .expect("the admin listener starts");
        assert!(admin.addr().ip().is_loopback());
        Admined {
            ca: server.ca().unwrap().path.clone(),
            server: Some(server),
            admin: Some(admin),
            health,
            _dir: dir,
        }
    }

    fn admin(&self) -> SocketAddr {
        self.admin.as_ref().unwrap().addr()
    }

    fn server(&self) -> &Server {
        self.server.as_ref().unwrap()
    }

    async fn connect(&self, id: &str) -> (Client, Incoming) {
        let options = ConnectOptions::new(id)
            .addr(self.server().quic_addr())
            .trust(Trust::CaFile(self.ca.clone()));
        within(&format!("connecting {id}"), Client::connect(options))
            .await
            .unwrap_or_else(|e| panic!("{id} cannot connect: {e}"))
    }

    async fn get(&self, path: &str) -> Response {
        http(self.admin(), "GET", path, &[], "").await
    }

    async fn metrics(&self) -> HashMap<String, f64> {
        let response = self.get("/metrics").await;
        assert_eq!(response.status, 200, "{}", response.body);
        assert_eq!(
            response.header("content-type").as_deref(),
            Some("text/plain; version=0.0.4; charset=utf-8")
        );
        parse_metrics(&response.body)
    }

    /// Waits until the metric `key` has `value` (some numbers move after the client saw
    /// the event that moves them, e.g. a disconnect the relay notices later).
    async fn until(&self, key: &str, value: f64) -> HashMap<String, f64> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let metrics = self.metrics().await;
            let now = metrics.get(key).copied();
            if now == Some(value) {
                return metrics;
            }
            if Instant::now() > deadline {
                panic!("{key} is {now:?}, expected {value}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Admined {
    fn drop(&mut self) {
        drop(self.admin.take());
        drop(self.server.take());
    }
}

/// The samples of a Prometheus text exposition, read by a parser of the format (the
/// prometheus-parse crate), by `name{labels}` with the labels in the order the relay
/// declares them (transport, direction, reason). Histogram buckets are left out; their
/// `_sum` and `_count` are samples of their own.
fn parse_metrics(text: &str) -> HashMap<String, f64> {
    use prometheus_parse::{Scrape, Value as Sampled};
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = Scrape::parse(lines).expect("a Prometheus text exposition");
    assert!(!scrape.samples.is_empty(), "no samples in {text}");
    let order = ["transport", "direction", "reason"];
    scrape
        .samples
        .into_iter()
        .filter_map(|sample| {
            let value = match sample.value {
                Sampled::Counter(v) | Sampled::Gauge(v) | Sampled::Untyped(v) => v,
                Sampled::Histogram(_) | Sampled::Summary(_) => return None,
            };
            let mut labels: Vec<(&String, &String)> = sample.labels.iter().collect();
            labels.sort_by_key(|(k, _)| order.iter().position(|o| o == k).unwrap_or(order.len()));
            let key = if labels.is_empty() {
                sample.metric.clone()
            } else {
                let inner: Vec<String> =
                    labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
                format!("{}{{{}}}", sample.metric, inner.join(","))
            };
            Some((key, value))
        })
        .collect()
}

fn get(metrics: &HashMap<String, f64>, key: &str) -> f64 {
    *metrics
        .get(key)
        .unwrap_or_else(|| panic!("no {key} in {metrics:?}"))
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Response {
    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    }
}

/// One HTTP/1.1 request on its own connection; enough of a client for these tests.
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Response {
    http_for(addr, &addr.to_string(), method, path, headers, body).await
}

/// [`http`] with this `Host` header.
async fn http_for(
    addr: SocketAddr,
    host: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Response {
    within(&format!("{method} {path}"), async {
        let mut tcp = TcpStream::connect(addr).await.expect("connect");
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\
             Content-Length: {}\r\n",
            body.len()
        );
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        request.push_str(body);
        tcp.write_all(request.as_bytes()).await.expect("send");
        let mut raw = Vec::new();
        tcp.read_to_end(&mut raw).await.expect("receive");
        let raw = String::from_utf8_lossy(&raw).into_owned();
        let (head, rest) = raw.split_once("\r\n\r\n").expect("a complete response");
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .expect("a status line");
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(": "))
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
            .collect();
        let chunked = headers.iter().any(|(n, v)| {
            n.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
        });
        let body = if chunked {
            dechunk(rest)
        } else {
            rest.to_owned()
        };
        Response {
            status,
            headers,
            body,
        }
    })
    .await
}

fn dechunk(mut rest: &str) -> String {
    let mut body = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).expect("a chunk size");
        if size == 0 {
            break;
        }
        body.push_str(&after[..size]);
        rest = &after[size + 2..];
    }
    body
}

/// A Socket.IO client over engine.io v4 long-polling, just enough to join the default
/// namespace: its connect answer (`40...` admitted, `44...` refused).
async fn socketio_join(addr: SocketAddr, client_id: Option<&str>) -> String {
    let query = client_id
        .map(|id| format!("&clientId={id}"))
        .unwrap_or_default();
    let open = http(
        addr,
        "GET",
        &format!("/socket.io/?EIO=4&transport=polling{query}"),
        &[],
        "",
    )
    .await;
    assert_eq!(open.status, 200, "{}", open.body);
    let sid = open
        .body
        .split("\"sid\":\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("a session id")
        .to_owned();
    let path = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
    let posted = http(addr, "POST", &path, &[("Content-Type", "text/plain")], "40").await;
    assert_eq!(posted.status, 200, "{}", posted.body);
    // The namespace's answer, after any ping (answered, so the session lives on).
    loop {
        let body = http(addr, "GET", &path, &[], "").await.body;
        for packet in body.split('\u{1e}') {
            if packet.starts_with("40") || packet.starts_with("44") {
                return packet.to_owned();
            }
            if packet == "2" {
                http(addr, "POST", &path, &[("Content-Type", "text/plain")], "3").await;
            }
        }
    }
}

#[tokio::test]
async fn metrics_move_as_clients_connect_pair_emit_and_stream() {
    let relay = Admined::start(Access::open()).await;
    let m = relay.metrics().await;
    assert_eq!(get(&m, "p2p_relay_connections{transport=\"quic\"}"), 0.0);
    assert_eq!(get(&m, "p2p_relay_pairs"), 0.0);

    let (a, mut a_in) = relay.connect("A").await;
    let (b, mut b_in) = relay.connect("B").await;
    let m = relay.metrics().await;
    assert_eq!(get(&m, "p2p_relay_connections{transport=\"quic\"}"), 2.0);
    assert_eq!(get(&m, "p2p_relay_connects_total{transport=\"quic\"}"), 2.0);

    pair(&a, &b, &mut b_in).await;
    let m = relay.metrics().await;
    assert_eq!(get(&m, "p2p_relay_pairs"), 1.0);
    assert_eq!(get(&m, "p2p_relay_pairings_total"), 1.0);

    for n in 0..3 {
        a.emit(
            "hello",
            Args(vec![Value::from(n), Value::Binary(vec![7; 100])]),
        )
        .await
        .expect("emit");
        match next(&mut b_in).await {
            ClientEvent::Event { event, .. } => assert_eq!(event, "hello"),
            other => panic!("expected an event, got {other:?}"),
        }
    }
    let m = relay.metrics().await;
    let flow = |m: &HashMap<String, f64>, dir: &str| {
        get(
            m,
            &format!("p2p_relay_messages_total{{transport=\"quic\",direction=\"{dir}\"}}"),
        )
    };
    assert_eq!((flow(&m, "in"), flow(&m, "out")), (3.0, 3.0));
    let bytes = |m: &HashMap<String, f64>, dir: &str| {
        get(
            m,
            &format!("p2p_relay_bytes_total{{transport=\"quic\",direction=\"{dir}\"}}"),
        )
    };
    assert!(bytes(&m, "in") >= 300.0, "{m:?}");
    assert!(bytes(&m, "out") >= 300.0, "{m:?}");

    // An ack's round trip is timed.
    let acking = tokio::spawn({
        let a = a.clone();
        async move { a.emit_with_ack("ping", Args(vec![Value::from(1)])).await }
    });
    match next(&mut b_in).await {
        ClientEvent::Event { ack: Some(ack), .. } => {
            ack.send(Args(vec![Value::from("pong")])).unwrap()
        }
        other => panic!("expected an event with an ack, got {other:?}"),
    }
    within("the ack", acking).await.unwrap().expect("the ack");
    let m = relay.metrics().await;
    assert_eq!(get(&m, "p2p_relay_ack_round_trip_seconds_count"), 1.0);
    assert!(get(&m, "p2p_relay_ack_round_trip_seconds_sum") > 0.0);

    // A stream is open while it is open, and its bytes are counted both ways.
    let before = relay.metrics().await;
    let (mut mine, mut theirs) = open_stream(&a, &mut b_in).await;
    let m = relay.metrics().await;
    assert_eq!(get(&m, "p2p_relay_open_streams"), 1.0);
    assert_eq!(get(&m, "p2p_relay_streams_opened_total"), 1.0);
    let data = vec![42u8; 64 * 1024];
    write_and_finish(&mut mine, &data).await.unwrap();
    assert_eq!(read_to_eof(&mut theirs).await.unwrap().0, data.len());
    write_and_finish(&mut theirs, b"bye").await.unwrap();
    read_to_eof(&mut mine).await.unwrap();
    let m = relay.until("p2p_relay_open_streams", 0.0).await;
    assert!(
        bytes(&m, "in") - bytes(&before, "in") >= data.len() as f64,
        "{m:?}"
    );
    assert!(
        bytes(&m, "out") - bytes(&before, "out") >= data.len() as f64,
        "{m:?}"
    );

    // A refused request is counted by its reason.
    let (c, _c_in) = relay.connect("C").await;
    let _ = c.register("nobody").await;
    let m = relay.metrics().await;
    assert_eq!(
        get(
            &m,
            "p2p_relay_requests_failed_total{reason=\"not_connected\"}"
        ),
        1.0
    );

    // Socket.IO clients are counted under their own transport; a refusal by its reason.
    let admitted = socketio_join(relay.server().socketio_addr(), Some("S")).await;
    assert!(admitted.starts_with("40"), "{admitted}");
    let refused = socketio_join(relay.server().socketio_addr(), None).await;
    assert!(
        refused.contains("clientId query parameter is required"),
        "{refused}"
    );
    let m = relay.metrics().await;
    assert_eq!(
        get(&m, "p2p_relay_connections{transport=\"socketio\"}"),
        1.0
    );
    assert_eq!(
        get(
            &m,
            "p2p_relay_connects_refused_total{reason=\"missing_client_id\"}"
        ),
        1.0
    );

    // A peer that leaves ends its pair.
    b.close().await;
    drop(b_in);
    let m = relay.until("p2p_relay_pairs", 0.0).await;
    assert_eq!(
        get(&m, "p2p_relay_disconnects_total{transport=\"quic\"}"),
        1.0
    );
    assert_eq!(get(&m, "p2p_relay_connections{transport=\"quic\"}"), 2.0);
    match next(&mut a_in).await {
        ClientEvent::PeerDisconnected => {}
        other => panic!("expected the peer gone, got {other:?}"),
    }
}

#[tokio::test]
async fn health_and_readiness() {
    let relay = Admined::start(Access::open()).await;
    let healthz = relay.get("/healthz").await;
    assert_eq!((healthz.status, healthz.body.as_str()), (200, "ok\n"));
    let readyz = relay.get("/readyz").await;
    assert_eq!((readyz.status, readyz.body.as_str()), (503, "starting\n"));
    relay.health.set_ready();
    let readyz = relay.get("/readyz").await;
    assert_eq!((readyz.status, readyz.body.as_str()), (200, "ready\n"));
    relay.health.set_draining();
    let readyz = relay.get("/readyz").await;
    assert_eq!((readyz.status, readyz.body.as_str()), (503, "draining\n"));
    assert_eq!(relay.get("/healthz").await.status, 200);
}

#[tokio::test]
async fn the_control_center_lists_clients_and_pairs_page_by_page() {
    let relay = Admined::start(Access::open()).await;
    relay.health.set_ready();
    let (a, _a_in) = relay.connect("alice").await;
    let (b, mut b_in) = relay.connect("bob").await;
    let (_c, _c_in) = relay.connect("<i>carol</i>").await;
    pair(&a, &b, &mut b_in).await;

    let page = relay.get("/").await;
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    let html = page.body;
    assert!(html.contains("<code class=\"id\">alice</code>"), "{html}");
    assert!(html.contains("<code class=\"id\">bob</code>"), "{html}");
    assert!(html.contains("<code class=\"peer\">bob</code>"), "{html}");
    assert!(html.contains("<code class=\"peer\">alice</code>"), "{html}");
    assert!(
        html.contains("&lt;i&gt;carol&lt;/i&gt;"),
        "client ids are escaped"
    );
    assert!(!html.contains("<i>carol</i>"), "client ids are escaped");
    assert!(
        html.contains("<td class=\"n\" id=\"quic_connections\">3</td>"),
        "{html}"
    );
    assert!(
        html.contains("<td class=\"n\" id=\"pairs\">1</td>"),
        "{html}"
    );
    assert!(html.contains("id=\"readiness\">ready<"), "{html}");
    assert_eq!(html.matches("<tr class=\"client\">").count(), 3);
    assert!(
        !html.contains("src=\"http"),
        "nothing fetched from elsewhere"
    );

    // Paged: two, then the rest.
    let first = relay.get("/api/clients?limit=2").await;
    assert_eq!(first.status, 200);
    let first: serde_json::Value = serde_json::from_str(&first.body).unwrap();
    assert_eq!(first["total"], 3);
    let ids: Vec<&str> = first["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["<i>carol</i>", "alice"]);
    assert_eq!(first["next"], "alice");
    let alice = &first["clients"][1];
    assert_eq!(alice["transport"], "quic");
    assert_eq!(alice["peer"], "bob");
    assert!(alice["since_unix_ms"].as_u64().unwrap() > 1_600_000_000_000);
    let rest = relay.get("/api/clients?after=alice&limit=2").await;
    let rest: serde_json::Value = serde_json::from_str(&rest.body).unwrap();
    assert_eq!(rest["clients"].as_array().unwrap().len(), 1);
    assert_eq!(rest["clients"][0]["id"], "bob");
    assert_eq!(rest["clients"][0]["peer"], "alice");
    assert!(rest["next"].is_null());

    // The HTML pages the same way, with a link to the next page.
    let html = relay.get("/?limit=2").await.body;
    assert_eq!(html.matches("<tr class=\"client\">").count(), 2);
    assert!(html.contains("href=\"?after=alice&amp;limit=2\""), "{html}");
    let html = relay.get("/?after=alice&limit=2").await.body;
    assert_eq!(html.matches("<tr class=\"client\">").count(), 1);
    assert!(html.contains("<code class=\"id\">bob</code>"), "{html}");

    let summary = relay.get("/api/summary").await;
    let summary: serde_json::Value = serde_json::from_str(&summary.body).unwrap();
    assert_eq!(summary["connections"]["quic"], 3);
    assert_eq!(summary["pairs"], 1);
    assert_eq!(summary["readiness"], "ready");
}

#[tokio::test]
async fn a_configured_token_is_required_except_for_the_probes() {
    let token = Token::new("s3cret-s3cret-s3cret", "test").unwrap();
    let relay = Admined::start(Access::Token(token)).await;
    for path in ["/metrics", "/", "/api/clients", "/api/summary"] {
        let refused = relay.get(path).await;
        assert_eq!(refused.status, 401, "{path}");
        assert!(refused
            .header("www-authenticate")
            .unwrap()
            .starts_with("Basic"));
        let wrong = http(
            relay.admin(),
            "GET",
            path,
            &[("Authorization", "Bearer nope")],
            "",
        )
        .await;
        assert_eq!(wrong.status, 401, "{path}");
        let bearer = http(
            relay.admin(),
            "GET",
            path,
            &[("Authorization", "Bearer s3cret-s3cret-s3cret")],
            "",
        )
        .await;
        assert_eq!(bearer.status, 200, "{path}");
        // "admin:s3cret-s3cret-s3cret", as a browser sends it.
        let basic = [(
            "Authorization",
            "Basic YWRtaW46czNjcmV0LXMzY3JldC1zM2NyZXQ=",
        )];
        assert_eq!(
            http(relay.admin(), "GET", path, &basic, "").await.status,
            200,
            "{path}"
        );
    }
    assert_eq!(relay.get("/healthz").await.status, 200);
    assert_eq!(relay.get("/readyz").await.status, 503);
}

/// Issue 16: without a token, a request naming another host (a web page that made its
/// name resolve to 127.0.0.1, DNS rebinding) gets nothing, and cannot disconnect anyone.
#[tokio::test]
async fn an_open_listener_refuses_requests_for_other_hosts() {
    let relay = Admined::start(Access::open()).await;
    let (_alice, _alice_in) = relay.connect("alice").await;
    let action = [("x-p2p-relay-admin", "1")];
    let evil = "evil.example:9002";
    for (method, path, headers) in [
        ("GET", "/", &[][..]),
        ("GET", "/api/live", &[][..]),
        ("GET", "/api/clients", &[][..]),
        ("GET", "/metrics", &[][..]),
        ("POST", "/api/clients/alice/disconnect", &action[..]),
    ] {
        let refused = http_for(relay.admin(), evil, method, path, headers, "").await;
        assert_eq!(refused.status, 421, "{method} {path}: {}", refused.body);
        assert!(refused.body.contains("--admin-hosts"), "{}", refused.body);
        assert!(!refused.body.contains("alice"), "{}", refused.body);
        assert_eq!(refused.header("x-frame-options").as_deref(), Some("DENY"));
    }
    assert!(
        relay.server().relay().conn_of("alice").is_some(),
        "alice is still connected"
    );
    for host in [
        "localhost:9002",
        "127.0.0.1",
        "[::1]:9002",
        "admin.localhost",
    ] {
        let page = http_for(relay.admin(), host, "GET", "/api/clients", &[], "").await;
        assert_eq!(page.status, 200, "{host}: {}", page.body);
        assert!(page.body.contains("alice"), "{host}: {}", page.body);
    }
}

/// A name given with `--admin-hosts` is answered; others still are not.
#[tokio::test]
async fn a_configured_admin_host_is_answered() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = Settings::on_free_local_ports(dir.path());
    settings.admin.admin_hosts = vec!["Relay.Example".to_owned()];
    let relay = Admined::start(Access::from_settings(&settings.admin).unwrap()).await;
    let (_alice, _alice_in) = relay.connect("alice").await;
    let page = http_for(relay.admin(), "relay.example:9002", "GET", "/", &[], "").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("alice"), "{}", page.body);
    let other = http_for(relay.admin(), "evil.example", "GET", "/", &[], "").await;
    assert_eq!(other.status, 421, "{}", other.body);
}

/// With a token, the Host is not what keeps pages out, so any is answered.
#[tokio::test]
async fn with_a_token_any_host_is_answered() {
    let token = Token::new("0123456789abcdef-token", "test").unwrap();
    let relay = Admined::start(Access::Token(token)).await;
    let bearer = [("Authorization", "Bearer 0123456789abcdef-token")];
    let page = http_for(relay.admin(), "relay.example.com", "GET", "/", &bearer, "").await;
    assert_eq!(page.status, 200, "{}", page.body);
}

/// Every answer says what a browser may do with it: nothing framed, nothing sniffed, no
/// script or style but the listener's own files (the page has none inline).
#[tokio::test]
async fn every_answer_carries_the_security_headers() {
    let relay = Admined::start(Access::open()).await;
    let page = relay.get("/").await;
    assert_eq!(page.status, 200);
    assert!(!page.body.contains("<script>"), "no inline script");
    assert!(!page.body.contains("<style>"), "no inline style");
    assert!(page.body.contains("<script src=\"control.js\">"));
    for path in [
        "/",
        "/control.js",
        "/control.css",
        "/api/summary",
        "/healthz",
        "/nowhere",
    ] {
        let response = relay.get(path).await;
        let csp = response
            .header("content-security-policy")
            .unwrap_or_else(|| panic!("{path}: no Content-Security-Policy"));
        for directive in [
            "default-src 'self'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
        ] {
            assert!(csp.contains(directive), "{path}: {csp}");
        }
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
        assert_eq!(
            response.header("x-frame-options").as_deref(),
            Some("DENY"),
            "{path}"
        );
        assert_eq!(
            response.header("x-content-type-options").as_deref(),
            Some("nosniff"),
            "{path}"
        );
    }
    let script = relay.get("/control.js").await;
    assert_eq!(script.status, 200);
    assert!(script
        .header("content-type")
        .unwrap()
        .starts_with("text/javascript"));
    assert!(script.body.contains("EventSource"), "the page's script");
    let style = relay.get("/control.css").await;
    assert!(style
        .header("content-type")
        .unwrap()
        .starts_with("text/css"));
}

/// The first `data:` line of a server-sent event stream at `path`, as JSON.
async fn first_live_reading(addr: SocketAddr, path: &str) -> serde_json::Value {
    within(&format!("a reading from {path}"), async {
        let mut tcp = TcpStream::connect(addr).await.expect("connect");
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
        tcp.write_all(request.as_bytes()).await.expect("send");
        let mut raw = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = tcp.read(&mut buf).await.expect("receive");
            assert!(
                n > 0,
                "the event stream ended: {}",
                String::from_utf8_lossy(&raw)
            );
            raw.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&raw);
            if let Some(line) = text
                .lines()
                .find(|l| l.starts_with("data:") && text.contains(&format!("{l}\n")))
            {
                assert!(text.contains("text/event-stream"), "{text}");
                return serde_json::from_str(line["data:".len()..].trim()).expect("JSON data");
            }
        }
    })
    .await
}

#[tokio::test]
async fn the_live_view_reads_clients_streams_and_searches() {
    let relay = Admined::start(Access::open()).await;
    let (alice, _alice_in) = relay.connect("alice").await;
    let (bob, mut bob_in) = relay.connect("bob").await;
    let (_carol, _carol_in) = relay.connect("carol").await;
    pair(&alice, &bob, &mut bob_in).await;
    let (mut mine, mut theirs) = open_stream(&alice, &mut bob_in).await;
    mine.write_all(&[7u8; 1000]).await.unwrap();
    mine.flush().await.unwrap();
    let mut got = [0u8; 1000];
    within("the stream's bytes", theirs.read_exact(&mut got))
        .await
        .unwrap();

    let reading = first_live_reading(relay.admin(), "/api/live").await;
    let clients = reading["clients"]["clients"].as_array().unwrap();
    let ids: Vec<_> = clients.iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["alice", "bob", "carol"]);
    assert_eq!(clients[0]["peer"], "bob");
    assert_eq!(clients[0]["generation"], "quic p2p-relay/2");
    assert!(clients[0]["remote"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    let streams = reading["streams"].as_array().unwrap();
    assert_eq!(streams.len(), 1, "{reading}");
    assert_eq!(
        (streams[0]["a"].as_str(), streams[0]["b"].as_str()),
        (Some("alice"), Some("bob"))
    );
    assert_eq!(streams[0]["bytes_ab"], 1000);
    assert_eq!(reading["summary"]["pairs"], 1);

    let reading = first_live_reading(relay.admin(), "/api/live?q=ro").await;
    let ids: Vec<_> = reading["clients"]["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["carol"], "only ids containing 'ro'");
}

#[tokio::test]
async fn the_disconnect_action_frees_the_peer_and_tells_the_client() {
    let relay = Admined::start(Access::open()).await;
    let (alice, mut alice_in) = relay.connect("alice").await;
    let (bob, mut bob_in) = relay.connect("bob").await;
    pair(&alice, &bob, &mut bob_in).await;
    let path = "/api/clients/alice/disconnect";

    // Without the action header (a form of another site cannot send one): refused.
    let refused = http(relay.admin(), "POST", path, &[], "").await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(relay.server().relay().conn_of("alice").is_some());

    let header = [("x-p2p-relay-admin", "1")];
    let unknown = http(
        relay.admin(),
        "POST",
        "/api/clients/nobody/disconnect",
        &header,
        "",
    )
    .await;
    assert_eq!(unknown.status, 404);
    assert!(
        unknown.body.contains("no client 'nobody'"),
        "{}",
        unknown.body
    );

    let done = http(relay.admin(), "POST", path, &header, "").await;
    assert_eq!(done.status, 200, "{}", done.body);
    let closed = loop {
        match next(&mut alice_in).await {
            ClientEvent::Closed(reason) => break reason,
            _ => continue,
        }
    };
    assert_eq!(
        closed.code(),
        Some(native_client::wire::CloseCode::Disconnected)
    );
    loop {
        if let ClientEvent::PeerDisconnected = next(&mut bob_in).await {
            break;
        }
    }
    assert_eq!(relay.server().relay().peer_of("bob"), None);
    assert!(relay.server().relay().conn_of("alice").is_none());
}

/// Issue 9's browser check: the control center page in Chromium sees two paired clients
/// and their stream appear, watches the stream's counter move, searches, disconnects one
/// with the button, and sees its peer freed (tests/interop/control_center.js).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_center_page_is_live_in_a_browser() {
    let chromium = std::env::var_os("CHROMIUM_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "/usr/bin/chromium".into());
    assert!(
        chromium.exists(),
        "this test needs Chromium at {} (apt-get install chromium, or set CHROMIUM_BIN)",
        chromium.display()
    );
    let interop = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop");
    common::npm_ci_unless(&interop, "playwright-core");

    let relay = Admined::start(Access::open()).await;
    relay.health.set_ready();
    let (alice, mut alice_in) = relay.connect("alice").await;
    let (bob, mut bob_in) = relay.connect("bob").await;
    pair(&alice, &bob, &mut bob_in).await;
    let (mut mine, mut theirs) = open_stream(&alice, &mut bob_in).await;
    // A trickle the page can watch, for as long as the page may take (bounded).
    let trickle = tokio::spawn(async move {
        for _ in 0..600 {
            if mine.write_all(&[1u8; 512]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let drain = tokio::spawn(async move {
        let mut sink = Vec::new();
        let _ = theirs.read_to_end(&mut sink).await;
    });

    let url = format!("http://{}/", relay.admin());
    let run = tokio::process::Command::new("node")
        .arg("control_center.js")
        .arg(&url)
        .current_dir(&interop)
        .env("CHROMIUM_BIN", &chromium)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(90), run)
        .await
        .expect("the browser check ends within 90 s")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the browser check failed: {}{}",
        stdout,
        String::from_utf8_lossy(&output.stderr)
    );
    let seen: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    assert!(seen["later"].as_u64() > seen["first"].as_u64(), "{seen}");

    // What the page showed is what happened.
    let closed = loop {
        match next(&mut alice_in).await {
            ClientEvent::Closed(reason) => break reason,
            _ => continue,
        }
    };
    assert_eq!(
        closed.code(),
        Some(native_client::wire::CloseCode::Disconnected)
    );
    assert_eq!(relay.server().relay().peer_of("bob"), None);
    trickle.abort();
    drain.abort();
    drop(bob);
}
