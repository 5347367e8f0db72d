//! `Server::shutdown` is structured: it stops accepting, tells every client why, and returns
//! only when every task the server started has ended.
//!
//! The server runs on a runtime of its own, so that its live tasks can be counted before it
//! starts and after it shut down; the clients run on another runtime, so they are not
//! counted and keep reading while the server shuts down.

use crate::common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{open_stream, pair, within};
use futures::{SinkExt, StreamExt};
use native_client::wire::CloseCode;
use native_client::{Client, ClientEvent, ConnectOptions, Incoming, Trust};
use p2p_relay::{Server, Settings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::runtime::Runtime;
use tokio_tungstenite::tungstenite::Message;

/// What every client is told (`CloseReason::Shutdown`).
const SHUTTING_DOWN: &str = "the relay is shutting down";

fn runtime(workers: usize) -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// The runtime's live tasks once they come back to `baseline`, or after 2 s. Tasks end
/// asynchronously (an aborted one at its next turn on a worker), so a count taken right
/// after the shutdown may still include tasks on their way out; a leaked task never leaves.
fn settled_tasks(runtime: &Runtime, baseline: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let alive = runtime.metrics().num_alive_tasks();
        if alive == baseline || Instant::now() >= deadline {
            return alive;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The relay's ports can be bound again: its listener and its UDP socket are closed.
fn assert_ports_free(socketio: SocketAddr, quic: SocketAddr) {
    std::net::TcpListener::bind(socketio)
        .unwrap_or_else(|e| panic!("the Socket.IO port {socketio} is still taken: {e}"));
    std::net::UdpSocket::bind(quic)
        .unwrap_or_else(|e| panic!("the QUIC port {quic} is still taken: {e}"));
}

fn native_options(server: &Server, id: &str) -> ConnectOptions {
    let ca = server.ca().expect("development certificates");
    ConnectOptions::new(id)
        .addr(server.quic_addr())
        .trust(Trust::CaFile(ca.path.clone()))
}

async fn connect(options: ConnectOptions) -> (Client, Incoming) {
    within("a native client connecting", Client::connect(options))
        .await
        .expect("the native client connects")
}

/// A native client's events until the connection closed: the `SERVER_ERROR`s it was told,
/// and the close's application code.
async fn until_closed(mut incoming: Incoming) -> (Vec<String>, Option<CloseCode>) {
    let mut errors = Vec::new();
    loop {
        match within("a native client's close", incoming.next()).await {
            Some(ClientEvent::ServerError { message, .. }) => errors.push(message),
            Some(ClientEvent::Closed(reason)) => return (errors, reason.code()),
            Some(_) => {}
            None => return (errors, None),
        }
    }
}

/// One keep-alive HTTP/1.1 connection speaking engine.io long-polling by hand.
struct Polling {
    tcp: TcpStream,
    addr: SocketAddr,
}

impl Polling {
    async fn connect(addr: SocketAddr) -> Polling {
        let tcp = within("a TCP connection", TcpStream::connect(addr))
            .await
            .expect("TCP connect");
        Polling { tcp, addr }
    }

    /// Sends a request for `target`; a `target` starting with `?` is an engine.io polling
    /// request with that query.
    async fn send(&mut self, method: &str, target: &str, body: &str) {
        let target = match target.strip_prefix('?') {
            Some(query) => format!("/socket.io/?EIO=4&transport=polling&{query}"),
            None => target.to_owned(),
        };
        let request = format!(
            "{method} {target} HTTP/1.1\r\nHost: {}\r\n\
             Content-Type: text/plain;charset=UTF-8\r\nContent-Length: {}\r\n\r\n{body}",
            self.addr,
            body.len()
        );
        self.tcp
            .write_all(request.as_bytes())
            .await
            .expect("request written");
    }

    /// The next response's status and body (engine.io answers with a Content-Length).
    async fn response(&mut self) -> (u16, String) {
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let byte = self.tcp.read_u8().await.expect("a response head");
            head.push(byte);
        }
        let head = String::from_utf8(head).expect("a text head");
        let status = head[9..12].parse().expect("a status code");
        let length = head
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse::<usize>().expect("a length"))
            })
            .expect("a Content-Length");
        let mut body = vec![0; length];
        self.tcp.read_exact(&mut body).await.expect("a body");
        (status, String::from_utf8(body).expect("a text body"))
    }

    async fn request(&mut self, method: &str, query: &str, body: &str) -> (u16, String) {
        self.send(method, query, body).await;
        within("an HTTP response", self.response()).await
    }
}

/// The engine.io session id in an open packet.
fn sid_of(open: &str) -> String {
    let rest = &open[open.find("\"sid\":\"").expect("a sid") + 7..];
    rest[..rest.find('"').expect("a quoted sid")].to_owned()
}

/// A Socket.IO client over long-polling, admitted as `id` into the default namespace; its
/// keep-alive connection is returned with its session id.
async fn polling_client(addr: SocketAddr, id: &str) -> (Polling, String) {
    let mut http = Polling::connect(addr).await;
    let (status, open) = http.request("GET", &format!("?clientId={id}"), "").await;
    assert_eq!((status, &open[..1]), (200, "0"), "{open}");
    let sid = sid_of(&open);
    let (status, ok) = http.request("POST", &format!("?sid={sid}"), "40").await;
    assert_eq!((status, ok.as_str()), (200, "ok"));
    // The namespace's answer, and the ping engine.io sends a new session at once (in
    // either order): answered, so that the next poll is held.
    let (mut connected, mut pinged) = (false, false);
    while !(connected && pinged) {
        let (status, packets) = http.request("GET", &format!("?sid={sid}"), "").await;
        assert_eq!(status, 200, "{packets}");
        for packet in packets.split('\u{1e}') {
            connected |= packet.starts_with("40{");
            pinged |= packet == "2";
        }
    }
    let (status, ok) = http.request("POST", &format!("?sid={sid}"), "3").await;
    assert_eq!((status, ok.as_str()), (200, "ok"));
    (http, sid)
}

type Ws = tokio_tungstenite::WebSocketStream<TcpStream>;

/// A Socket.IO client on websocket, admitted as `id` into the default namespace.
async fn websocket_client(addr: SocketAddr, id: &str) -> Ws {
    let mut ws = engine_websocket(addr, &format!("EIO=4&clientId={id}")).await;
    ws.send(Message::text("40")).await.expect("connect sent");
    loop {
        match next_text(&mut ws).await.expect("a connect reply").as_str() {
            // engine.io pings a new session at once.
            "2" => ws.send(Message::text("3")).await.expect("pong sent"),
            connected => {
                assert!(connected.starts_with("40{"), "{connected}");
                return ws;
            }
        }
    }
}

/// An engine.io session on websocket with `query`, past its open packet.
async fn engine_websocket(addr: SocketAddr, query: &str) -> Ws {
    let tcp = within("a TCP connection", TcpStream::connect(addr))
        .await
        .expect("TCP connect");
    let url = format!("ws://{addr}/socket.io/?transport=websocket&{query}");
    let (mut ws, _) = within(
        "the websocket handshake",
        tokio_tungstenite::client_async(url, tcp),
    )
    .await
    .expect("a websocket");
    let open = next_text(&mut ws).await.expect("an open packet");
    assert!(open.starts_with("0{"), "{open}");
    ws
}

/// The next text frame, or `None` once the websocket ended.
async fn next_text(ws: &mut Ws) -> Option<String> {
    loop {
        match within("a websocket frame", ws.next()).await? {
            Ok(Message::Text(text)) => return Some(text.to_string()),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// Every text frame until the websocket ended.
async fn texts_until_closed(mut ws: Ws) -> Vec<String> {
    let mut texts = Vec::new();
    while let Some(text) = next_text(&mut ws).await {
        texts.push(text);
    }
    texts
}

#[test]
fn shutdown_tells_every_client_and_ends_every_task_it_started() {
    let server_rt = runtime(2);
    let client_rt = runtime(2);
    let baseline = server_rt.metrics().num_alive_tasks();

    let dir = tempfile::tempdir().expect("a data directory");
    let settings = Settings::on_free_local_ports(dir.path());
    let server = server_rt
        .block_on(Server::start(&settings))
        .expect("the relay starts");
    let (socketio, quic) = (server.socketio_addr(), server.quic_addr());

    // Clients of both kinds: two native clients paired with a stream open between them, an
    // unpaired native client, a Socket.IO client on websocket, one on long-polling with a
    // poll waiting at the relay, and an idle keep-alive HTTP connection.
    let clients = client_rt.block_on(async {
        let (a, a_in) = connect(native_options(&server, "A")).await;
        let (b, mut b_in) = connect(native_options(&server, "B")).await;
        pair(&a, &b, &mut b_in).await;
        let (mut a_stream, mut b_stream) = open_stream(&a, &mut b_in).await;
        a_stream
            .write_all(b"open")
            .await
            .expect("stream bytes sent");
        let mut got = [0u8; 4];
        within("stream bytes", b_stream.read_exact(&mut got))
            .await
            .expect("stream bytes received");
        assert_eq!(&got, b"open");
        let (c, c_in) = connect(native_options(&server, "C")).await;

        let ws = websocket_client(socketio, "W").await;
        let (mut poll, sid) = polling_client(socketio, "P").await;
        poll.send("GET", &format!("?sid={sid}"), "").await;
        let polled = tokio::spawn(async move { within("the held poll", poll.response()).await });
        // Not an engine.io request: a session that never joins a namespace is not one the
        // relay can close (see `Gateway::close`).
        let mut idle = Polling::connect(socketio).await;
        let (status, _) = idle.request("GET", "/", "").await;
        assert_eq!(status, 404);

        let watched = (
            tokio::spawn(until_closed(a_in)),
            tokio::spawn(until_closed(b_in)),
            tokio::spawn(until_closed(c_in)),
            tokio::spawn(texts_until_closed(ws)),
            polled,
        );
        // The poll is written; give the relay a moment to be holding it (loopback takes
        // well under a millisecond), or the shutdown could close its connection first.
        tokio::time::sleep(Duration::from_millis(200)).await;
        ((a, b, c, a_stream, b_stream, idle), watched)
    });
    let (held, watched) = clients;
    assert!(server_rt.metrics().num_alive_tasks() > baseline);

    let started = Instant::now();
    server_rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(20), server.shutdown())
            .await
            .expect("the shutdown is bounded")
    });
    let took = started.elapsed();
    let alive = settled_tasks(&server_rt, baseline);
    assert_eq!(
        alive, baseline,
        "{alive} task(s) outlived the shutdown (there were {baseline} before the relay started)"
    );
    // Every client read what it was sent, so no step needed its grace.
    assert!(
        took < settings.shutdown_grace(),
        "the shutdown took {took:?}: something had to be cut"
    );
    assert_ports_free(socketio, quic);

    client_rt.block_on(async {
        let (a, b, c, ws, polled) = watched;
        for (name, watch) in [("A", a), ("B", b), ("C", c)] {
            let (errors, code) = within("a native client's events", watch)
                .await
                .expect("watch task");
            assert_eq!(
                code,
                Some(CloseCode::Shutdown),
                "{name} closed with {code:?}"
            );
            assert!(
                errors.iter().any(|e| e == SHUTTING_DOWN),
                "{name} was told {errors:?}"
            );
        }
        let texts = within("the websocket client's frames", ws)
            .await
            .expect("watch task");
        let told = format!("42[\"SERVER_ERROR\",\"{SHUTTING_DOWN}\"]");
        assert!(texts.contains(&told), "the websocket client got {texts:?}");
        let (status, body) = within("the held poll", polled).await.expect("poll task");
        assert_eq!(status, 200);
        assert!(
            body.split('\u{1e}').any(|packet| packet == told),
            "the held poll got {body:?}"
        );

        let (a, b, c, mut a_stream, _b_stream, mut idle) = held;
        let mut buf = [0u8; 1];
        let read = within("the open stream ending", a_stream.read(&mut buf)).await;
        assert!(!matches!(read, Ok(n) if n > 0), "{read:?}");
        let read = within("the idle HTTP connection ending", idle.tcp.read(&mut buf)).await;
        assert!(!matches!(read, Ok(n) if n > 0), "{read:?}");
        drop((a, b, c));
    });
    server_rt.shutdown_timeout(Duration::from_secs(1));
    client_rt.shutdown_timeout(Duration::from_secs(1));
}

/// What a graceful end cannot finish is cut after the grace: a request head that never
/// completes (axum would wait for it forever) and an engine.io websocket whose client was
/// refused (in no namespace, so socketioxide's close does not know it).
///
/// (A socket.io-client 4.x session that never joins a namespace is not tested: socketioxide
/// keeps a task for it until its connect timeout, 45 s, whatever happens to the session.)
#[test]
fn shutdown_cuts_what_does_not_end_gracefully() {
    let server_rt = runtime(2);
    let client_rt = runtime(2);
    let baseline = server_rt.metrics().num_alive_tasks();

    let dir = tempfile::tempdir().expect("a data directory");
    let mut settings = Settings::on_free_local_ports(dir.path());
    settings.shutdown_grace_ms = 300;
    let server = server_rt
        .block_on(Server::start(&settings))
        .expect("the relay starts");
    let (socketio, quic) = (server.socketio_addr(), server.quic_addr());

    let (mut trickle, ws) = client_rt.block_on(async {
        let mut trickle = within("a TCP connection", TcpStream::connect(socketio))
            .await
            .expect("TCP connect");
        trickle
            .write_all(b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n")
            .await
            .expect("half a request written");
        // A socket.io-client 2.x session without a clientId: refused, so in no namespace.
        let ws = engine_websocket(socketio, "EIO=3").await;
        // Let the relay read the half request before it is told to stop.
        tokio::time::sleep(Duration::from_millis(200)).await;
        (trickle, ws)
    });

    let started = Instant::now();
    server_rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(20), server.shutdown())
            .await
            .expect("the shutdown is bounded")
    });
    let took = started.elapsed();
    let alive = settled_tasks(&server_rt, baseline);
    assert_eq!(alive, baseline, "{alive} task(s) outlived the shutdown");
    assert!(took < Duration::from_secs(5), "the shutdown took {took:?}");
    assert_ports_free(socketio, quic);

    client_rt.block_on(async {
        let mut buf = [0u8; 64];
        let read = within(
            "the half request's connection ending",
            trickle.read(&mut buf),
        )
        .await;
        assert!(!matches!(read, Ok(n) if n > 0), "{read:?}");
        within("the websocket ending", texts_until_closed(ws)).await;
    });
    server_rt.shutdown_timeout(Duration::from_secs(1));
    client_rt.shutdown_timeout(Duration::from_secs(1));
}
