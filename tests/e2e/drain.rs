//! The graceful drain on the real binary: on SIGTERM the relay reports itself not ready,
//! refuses newcomers, lets idle clients go at once (told why), lets open streams finish
//! up to --drain-timeout-ms, then closes what is left and exits 0.

use crate::common;

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{open_stream, pair, random_bytes, read_to_eof, sha256_hex, within};
use native_client::wire::CloseCode;
use native_client::{Client, ClientEvent, ConnectOptions, Incoming, Trust};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

const SHUTTING_DOWN: &str = "the relay is shutting down";

/// The binary, with the addresses it printed.
struct Relay {
    child: Child,
    socketio: SocketAddr,
    quic: SocketAddr,
    admin: SocketAddr,
    dir: tempfile::TempDir,
}

impl Relay {
    async fn start(drain_timeout_ms: u64) -> Relay {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_p2p-relay"))
            .args([
                "--socketio-listen",
                "127.0.0.1:0",
                "--quic-listen",
                "127.0.0.1:0",
            ])
            .args(["--admin-listen", "127.0.0.1:0"])
            .args(["--drain-timeout-ms", &drain_timeout_ms.to_string()])
            .arg("--data-dir")
            .arg(dir.path())
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start the relay");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let (socketio, quic, admin) = within("the listening lines", async {
            let mut addrs = Vec::new();
            for prefix in [
                "Socket.IO gateway listening on http://",
                "QUIC listening on ",
                "Admin listening on http://",
            ] {
                let line = lines.next_line().await.unwrap().expect("a listening line");
                let rest = line
                    .strip_prefix(prefix)
                    .unwrap_or_else(|| panic!("{line}"));
                addrs.push(rest.parse::<SocketAddr>().unwrap());
            }
            (addrs[0], addrs[1], addrs[2])
        })
        .await;
        // Keep reading stdout so that the relay never writes to a closed pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Relay {
            child,
            socketio,
            quic,
            admin,
            dir,
        }
    }

    fn options(&self, id: &str) -> ConnectOptions {
        ConnectOptions::new(id)
            .addr(self.quic)
            .trust(Trust::CaFile(self.dir.path().join("ca.pem")))
    }

    async fn connect(&self, id: &str) -> (Client, Incoming) {
        within(
            &format!("connecting {id}"),
            Client::connect(self.options(id)),
        )
        .await
        .unwrap_or_else(|e| panic!("{id} cannot connect: {e}"))
    }

    fn terminate(&self) {
        let pid = self.child.id().expect("running").to_string();
        let status = std::process::Command::new("kill")
            .args(["-s", "TERM", &pid])
            .status()
            .unwrap();
        assert!(status.success());
    }

    async fn exit_code(&mut self) -> Option<i32> {
        within("the relay exiting", self.child.wait())
            .await
            .unwrap()
            .code()
    }
}

/// One HTTP/1.1 request on its own connection: (status, body).
async fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tcp.read_to_end(&mut raw).await.unwrap();
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, body.to_owned())
}

/// A native client's events until its connection closed: what it was told, and the
/// close's code.
async fn until_closed(mut incoming: Incoming) -> (Vec<String>, Option<CloseCode>) {
    let mut told = Vec::new();
    loop {
        match within("a native client's close", incoming.next()).await {
            Some(ClientEvent::ServerError { message, .. }) => told.push(message),
            Some(ClientEvent::Closed(reason)) => return (told, reason.code()),
            Some(_) => {}
            None => return (told, None),
        }
    }
}

async fn until_draining(admin: SocketAddr) {
    within("/readyz answering 503", async {
        loop {
            let (status, body) = http(admin, "GET", "/readyz", "").await;
            if status == 503 {
                assert_eq!(body, "draining\n");
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

#[tokio::test]
async fn sigterm_lets_open_streams_finish_then_exits_zero() {
    let mut relay = Relay::start(30_000).await;
    assert_eq!(
        http(relay.admin, "GET", "/readyz", "").await,
        (200, "ready\n".into())
    );
    let (a, a_in) = relay.connect("A").await;
    let (b, mut b_in) = relay.connect("B").await;
    let (_c, c_in) = relay.connect("C").await;
    pair(&a, &b, &mut b_in).await;
    let (mut mine, mut theirs) = open_stream(&a, &mut b_in).await;
    // 64 MiB in flight when the signal comes: the first MiB has arrived, the rest follows
    // through the drain, and arrives intact.
    let data = random_bytes(64, 64 * 1024 * 1024);
    let sent_hash = sha256_hex(&data);
    let mut first = vec![0u8; 1024 * 1024];
    mine.write_all(&data[..first.len()]).await.unwrap();
    within("the first MiB", theirs.read_exact(&mut first))
        .await
        .unwrap();

    // A Socket.IO client over long-polling, its next poll held open.
    let (status, open) = http(
        relay.socketio,
        "GET",
        "/socket.io/?EIO=4&transport=polling&clientId=S",
        "",
    )
    .await;
    assert_eq!(status, 200, "{open}");
    let sid = open
        .split("\"sid\":\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    let poll = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
    assert_eq!(http(relay.socketio, "POST", &poll, "40").await.0, 200);
    // Joined once the namespace's connect answer comes (a ping may come first).
    within("joining the namespace", async {
        loop {
            let (_, body) = http(relay.socketio, "GET", &poll, "").await;
            if body.split('\u{1e}').any(|p| p.starts_with("40")) {
                break;
            }
            if body.split('\u{1e}').any(|p| p == "2") {
                http(relay.socketio, "POST", &poll, "3").await;
            }
        }
    })
    .await;
    // Its polls, held open one after the other (answering pings) until it is let go.
    let held = tokio::spawn({
        let (addr, poll) = (relay.socketio, poll.clone());
        async move {
            let mut packets: Vec<String> = Vec::new();
            // Until a disconnect: of the namespace (41) or of the whole session (1).
            while !packets.iter().any(|p| p == "41" || p == "1") {
                // After the session closed, a poll may wait for nothing: stop there.
                let polled =
                    tokio::time::timeout(Duration::from_secs(2), http(addr, "GET", &poll, ""));
                let Ok((status, body)) = polled.await else {
                    break;
                };
                if status != 200 {
                    break;
                }
                for packet in body.split('\u{1e}') {
                    if packet == "2" {
                        http(addr, "POST", &poll, "3").await;
                    }
                    packets.push(packet.to_owned());
                }
            }
            packets
        }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;

    let terminated = Instant::now();
    relay.terminate();
    until_draining(relay.admin).await;

    // The idle clients are told and let go at once.
    let (told, code) = until_closed(c_in).await;
    assert_eq!(code, Some(CloseCode::Shutdown));
    assert!(told.iter().any(|m| m == SHUTTING_DOWN), "{told:?}");
    let packets = within("the held polls", held).await.unwrap();
    let told = format!("42[\"SERVER_ERROR\",\"{SHUTTING_DOWN}\"]");
    let told_at = packets.iter().position(|p| *p == told);
    assert!(told_at.is_some(), "{packets:?}");
    if let Some(gone_at) = packets.iter().position(|p| p == "41" || p == "1") {
        assert!(
            told_at < Some(gone_at),
            "told, then a disconnect: {packets:?}"
        );
    }
    // The relay let it go: only the two ends of the open stream are still connected.
    let (_, clients) = http(relay.admin, "GET", "/api/clients", "").await;
    let clients: serde_json::Value = serde_json::from_str(&clients).expect("JSON");
    let ids: Vec<&str> = clients["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["A", "B"], "{clients}");

    // Newcomers are refused.
    let refused = Client::connect(relay.options("D")).await;
    let err = match refused {
        Ok(_) => panic!("a newcomer was admitted while draining"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains(SHUTTING_DOWN), "{err}");

    // The open stream carries on to its end, both ways.
    let rest = data[first.len()..].to_vec();
    let writing = tokio::spawn(async move {
        for chunk in rest.chunks(64 * 1024) {
            mine.write_all(chunk).await?;
        }
        mine.shutdown().await?;
        std::io::Result::Ok(mine)
    });
    let reading = async {
        let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
        sha2::Digest::update(&mut hasher, &first);
        let mut buf = vec![0u8; 64 * 1024];
        let mut total = first.len();
        loop {
            let n = theirs.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            sha2::Digest::update(&mut hasher, &buf[..n]);
            total += n;
        }
        std::io::Result::Ok((total, format!("{:x}", sha2::Digest::finalize(hasher))))
    };
    let (received, hash) = tokio::time::timeout(Duration::from_secs(60), reading)
        .await
        .expect("the 64 MiB arrive within a minute")
        .unwrap();
    let mut mine = within("the writer", writing).await.unwrap().unwrap();
    assert_eq!(received, data.len());
    assert_eq!(hash, sent_hash, "the stream arrived intact");
    theirs.write_all(b"done").await.unwrap();
    theirs.shutdown().await.unwrap();
    let (back, _) = within("the answer", read_to_eof(&mut mine)).await.unwrap();
    assert_eq!(back, 4);

    // Then its two ends are let go, and the relay exits cleanly, long before the timeout.
    for incoming in [a_in, b_in] {
        let (told, code) = until_closed(incoming).await;
        assert_eq!(code, Some(CloseCode::Shutdown));
        assert!(told.iter().any(|m| m == SHUTTING_DOWN), "{told:?}");
    }
    assert_eq!(relay.exit_code().await, Some(0));
    assert!(
        terminated.elapsed() < Duration::from_secs(30),
        "{:?}",
        terminated.elapsed()
    );
}

#[tokio::test]
async fn the_drain_timeout_closes_streams_that_do_not_finish() {
    let mut relay = Relay::start(300).await;
    let (a, a_in) = relay.connect("A").await;
    let (b, mut b_in) = relay.connect("B").await;
    pair(&a, &b, &mut b_in).await;
    let (mut mine, _theirs) = open_stream(&a, &mut b_in).await;
    mine.write_all(b"never finished").await.unwrap();

    let terminated = Instant::now();
    relay.terminate();
    let (told, code) = until_closed(a_in).await;
    let took = terminated.elapsed();
    assert!(
        took >= Duration::from_millis(300),
        "closed before the timeout: {took:?}"
    );
    assert_eq!(code, Some(CloseCode::Shutdown));
    assert!(told.iter().any(|m| m == SHUTTING_DOWN), "{told:?}");
    let mut buf = [0u8; 16];
    let read = within("the cut stream", mine.read(&mut buf)).await;
    assert!(!matches!(read, Ok(n) if n > 0), "{read:?}");
    assert_eq!(relay.exit_code().await, Some(0));
    assert!(
        terminated.elapsed() < Duration::from_secs(6),
        "{:?}",
        terminated.elapsed()
    );
}
