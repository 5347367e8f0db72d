//! Connections to the Socket.IO gateway that never get anywhere are closed: idle sockets,
//! request heads sent a byte at a time, transports that never join the namespace. Checked
//! with raw TCP against the relay in this process, with short timeouts; a client that does
//! its handshake is kept well past them.

use crate::common;
use crate::sio;

use std::time::{Duration, Instant};

use common::Relay;
use sio::Sio;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const FLAGS: &[&str] = &[
    "--http-header-timeout-ms",
    "500",
    "--socketio-connect-timeout-ms",
    "500",
];

/// Reads until the relay closes the connection; returns how long that took, failing if it
/// stays open for `limit`.
async fn closed_within(tcp: &mut TcpStream, started: Instant, limit: Duration) -> Duration {
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at((started + limit).into(), tcp.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return started.elapsed(),
            Ok(Ok(_)) => continue,
            Err(_) => panic!("the connection is still open after {limit:?}"),
        }
    }
}

#[tokio::test]
async fn idle_and_trickling_connections_are_closed() {
    let relay = Relay::start(FLAGS).await;
    let addr = relay.socketio_addr();

    // Many idle connections: each closed after the header timeout, none kept.
    let started = Instant::now();
    let mut idle = Vec::new();
    for _ in 0..50 {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    for tcp in &mut idle {
        closed_within(tcp, started, Duration::from_secs(3)).await;
    }

    // A request head sent a byte every 100 ms never finishes in time.
    let mut slow = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    let head = b"GET /socket.io/?EIO=4&transport=polling&clientId=S HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut closed = false;
    for byte in head {
        if slow.write_all(&[*byte]).await.is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 64];
        match tokio::time::timeout(Duration::from_millis(100), slow.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(_)) => panic!("the relay answered a head it should have timed out"),
            Err(_) => {}
        }
    }
    assert!(closed, "the trickled request head was read to its end");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    relay.shutdown().await;
}

#[tokio::test]
async fn a_transport_that_never_joins_the_namespace_is_closed() {
    let relay = Relay::start(FLAGS).await;
    let addr = relay.socketio_addr();
    let started = Instant::now();
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    // A websocket handshake (engine.io's open packet follows), then nothing.
    let request = format!(
        "GET /socket.io/?EIO=4&transport=websocket&clientId=Q HTTP/1.1\r\nHost: {addr}\r\n\
         Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    closed_within(&mut tcp, started, Duration::from_secs(3)).await;

    // A client that joins stays, past both timeouts.
    let mut client = Sio::connect(addr, "C").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        client.request("LIST_CLIENTS", &[]).await,
        vec![serde_json::json!(["C"])]
    );
    relay.shutdown().await;
}
