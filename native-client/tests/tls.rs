//! Client-side checks that need no relay at all: what `Client::connect` says when the
//! other end is not a p2p-relay of this protocol version, says nothing, or cannot be
//! trusted for lack of a CA file.
//!
//! The server below is NOT a stand-in of the relay: it is a bare quinn endpoint that only
//! completes (or fails) the TLS handshake, to see the client's ALPN-mismatch error. Every
//! relay behaviour is tested against the real relay in the workspace's tests/quic_*.rs.

use std::sync::Arc;
use std::time::Duration;

use native_client::{Client, ClientError, ConnectOptions, Trust};

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn a_server_of_another_protocol_is_an_alpn_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let dev = certs::DevCerts::load_or_create(dir.path()).unwrap();
    // A server of the previous protocol version.
    let tls = certs::server_config(&dev.server_identity(), &[b"p2p-relay/1"]).unwrap();
    let quic = quinn::crypto::rustls::QuicServerConfig::try_from(tls).unwrap();
    let server = quinn::Endpoint::server(
        quinn::ServerConfig::with_crypto(Arc::new(quic)),
        "127.0.0.1:0".parse().unwrap(),
    )
    .unwrap();
    let addr = server.local_addr().unwrap();
    let accepting = tokio::spawn({
        let server = server.clone();
        async move {
            let incoming = server.accept().await.expect("a connection attempt");
            incoming.await.expect_err("the handshake must fail")
        }
    });

    let options = ConnectOptions::new("A")
        .addr(addr)
        .trust(Trust::CaFile(dev.ca_cert_path().to_path_buf()));
    let err = tokio::time::timeout(WAIT, Client::connect(options))
        .await
        .expect("connect returns in time")
        .unwrap_err();
    assert!(matches!(err, ClientError::AlpnMismatch { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "the server at {addr} does not speak p2p-relay/2 (ALPN mismatch): it is not a \
             p2p-relay, or one of another protocol version"
        )
    );
    tokio::time::timeout(WAIT, accepting)
        .await
        .expect("the server side ends")
        .unwrap();
}

#[tokio::test]
async fn a_silent_address_times_out_saying_where_it_looked() {
    // A UDP socket that never answers.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dev = certs::DevCerts::load_or_create(dir.path()).unwrap();
    let options = ConnectOptions::new("A")
        .addr(addr)
        .trust(Trust::CaFile(dev.ca_cert_path().to_path_buf()))
        .connect_timeout(Duration::from_millis(300));
    let err = tokio::time::timeout(WAIT, Client::connect(options))
        .await
        .expect("connect returns in time")
        .unwrap_err();
    assert!(matches!(err, ClientError::ConnectTimeout { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains(&addr.to_string()), "{message}");
    assert!(message.contains("is it running"), "{message}");
}

#[tokio::test]
async fn a_missing_ca_file_fails_before_anything_is_sent() {
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    silent.set_nonblocking(true).unwrap();
    let options = ConnectOptions::new("A")
        .addr(silent.local_addr().unwrap())
        .trust(Trust::CaFile("/nonexistent/ca.pem".into()));
    let err = tokio::time::timeout(WAIT, Client::connect(options))
        .await
        .expect("connect returns in time")
        .unwrap_err();
    assert!(matches!(err, ClientError::Trust(_)), "{err:?}");
    assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
    // Nothing reached the address.
    let mut buf = [0u8; 2048];
    assert!(silent.recv(&mut buf).is_err(), "a packet was sent");
}
