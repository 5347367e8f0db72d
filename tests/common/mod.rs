//! Shared helpers of the QUIC end-to-end tests: the REAL relay (in-process through
//! `Server::start`, or the `p2p-relay` binary as a child process), native clients, and raw
//! quinn access to the wire for the tests that must break the protocol on purpose.
//!
//! Every wait is bounded: a test that would hang fails with a message instead.

#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use native_client::wire::{
    self, frame, ClientFrame, FrameReader, FrameWriter, ServerFrame, WireReply,
};
use native_client::{Client, ClientEvent, ConnectOptions, Incoming, P2pStream, RequestKind, Trust};
use p2p_relay::{Server, Settings};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// The longest any single step may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// Runs `fut`, failing the test when it takes longer than [`WAIT`].
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(WAIT, fut).await {
        Ok(value) => value,
        Err(_) => panic!("timed out after {WAIT:?}: {what}"),
    }
}

/// A running relay with its own data directory (development CA) and loopback ports.
pub struct Relay {
    addr: SocketAddr,
    socketio: SocketAddr,
    ca: PathBuf,
    fingerprint: String,
    kind: Kind,
    _dir: tempfile::TempDir,
}

// One per test: the size of the larger variant costs nothing.
#[allow(clippy::large_enum_variant)]
enum Kind {
    InProcess(Option<Server>),
    Binary {
        _child: tokio::process::Child,
        /// Kept open so that the relay never writes to a closed pipe.
        _stdout: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    },
}

fn base_args(dir: &Path) -> Vec<String> {
    vec![
        "--socketio-listen".into(),
        "127.0.0.1:0".into(),
        "--quic-listen".into(),
        "127.0.0.1:0".into(),
        "--admin-listen".into(),
        "127.0.0.1:0".into(),
        "--data-dir".into(),
        dir.display().to_string(),
    ]
}

impl Relay {
    /// The relay in this process (`Server::start`), with extra command-line flags.
    pub async fn start(extra: &[&str]) -> Relay {
        let dir = tempfile::tempdir().expect("a temporary data directory");
        let mut args = vec!["p2p-relay".to_string()];
        args.extend(base_args(dir.path()));
        args.extend(extra.iter().map(|s| s.to_string()));
        let settings = Settings::try_parse_from(&args)
            .unwrap_or_else(|e| panic!("bad relay flags {extra:?}: {e}"));
        let server = within("starting the relay", Server::start(&settings))
            .await
            .expect("the relay starts");
        let addr = server.quic_addr();
        let socketio = server.socketio_addr();
        assert!(addr.ip().is_loopback(), "{addr}");
        let ca = server.ca().expect("development certificates").clone();
        assert_eq!(ca.path, dir.path().join("ca.pem"));
        Relay {
            addr,
            socketio,
            ca: ca.path,
            fingerprint: ca.fingerprint,
            kind: Kind::InProcess(Some(server)),
            _dir: dir,
        }
    }

    /// The `p2p-relay` binary of this build as a child process (killed when dropped), with
    /// extra flags; its QUIC address is read from its `QUIC listening on ADDR` line.
    pub async fn start_binary(extra: &[&str]) -> Relay {
        let dir = tempfile::tempdir().expect("a temporary data directory");
        let bin = env!("CARGO_BIN_EXE_p2p-relay");
        // P2P_TEST_RELAY_LOG=debug (any filter) shows the child's logs, for a failing test.
        let log = std::env::var("P2P_TEST_RELAY_LOG").ok();
        let mut command = tokio::process::Command::new(bin);
        match &log {
            Some(filter) => command.env("RUST_LOG", filter).stderr(Stdio::inherit()),
            None => command.env_remove("RUST_LOG").stderr(Stdio::null()),
        };
        let mut child = command
            .args(base_args(dir.path()))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
        let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let (socketio, addr) = within("the relay binary printing its addresses", async {
            let mut socketio: Option<SocketAddr> = None;
            loop {
                let line = lines
                    .next_line()
                    .await
                    .expect("reading the relay's stdout")
                    .expect("the relay exited before printing its QUIC address");
                if let Some(url) = line.strip_prefix("Socket.IO gateway listening on http://") {
                    socketio = Some(url.trim().parse().expect("a socket address"));
                }
                if let Some(addr) = line.strip_prefix("QUIC listening on ") {
                    let addr: SocketAddr = addr.trim().parse().expect("a socket address");
                    break (socketio.expect("the Socket.IO line comes first"), addr);
                }
            }
        })
        .await;
        assert!(addr.ip().is_loopback(), "{addr}");
        let ca = dir.path().join("ca.pem");
        let fingerprint = certs::DevCerts::load_or_create(dir.path())
            .expect("the relay's development CA")
            .ca_fingerprint();
        Relay {
            addr,
            socketio,
            ca,
            fingerprint,
            kind: Kind::Binary {
                _child: child,
                _stdout: lines,
            },
            _dir: dir,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The Socket.IO gateway's base URL.
    pub fn socketio_url(&self) -> String {
        format!("http://{}", self.socketio)
    }

    /// The Socket.IO gateway's address.
    pub fn socketio_addr(&self) -> SocketAddr {
        self.socketio
    }

    /// The relay's process id, when it runs as a child process.
    pub fn pid(&self) -> Option<u32> {
        match &self.kind {
            Kind::Binary { _child, .. } => _child.id(),
            Kind::InProcess(_) => None,
        }
    }

    /// The relay's development CA (`<data dir>/ca.pem`).
    pub fn ca(&self) -> &Path {
        &self.ca
    }

    /// The SHA-256 fingerprint of the relay's development CA.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    pub fn options(&self, id: &str) -> ConnectOptions {
        ConnectOptions::new(id)
            .addr(self.addr)
            .trust(Trust::CaFile(self.ca.clone()))
    }

    pub async fn connect(&self, id: &str) -> (Client, Incoming) {
        within(
            &format!("connecting {id}"),
            Client::connect(self.options(id)),
        )
        .await
        .unwrap_or_else(|e| panic!("{id} cannot connect: {e}"))
    }

    /// Connects `a` and `b` and pairs them (`a` asks, `b` accepts).
    pub async fn paired(&self, a: &str, b: &str) -> (Client, Incoming, Client, Incoming) {
        let (ca, ca_in) = self.connect(a).await;
        let (cb, mut cb_in) = self.connect(b).await;
        pair(&ca, &cb, &mut cb_in).await;
        (ca, ca_in, cb, cb_in)
    }

    /// A raw connection that has said hello as `id`.
    pub async fn raw(&self, id: &str) -> Raw {
        let mut raw = Raw::connect(self, wire::ALPN)
            .await
            .expect("raw QUIC handshake");
        raw.send(&ClientFrame::Hello {
            version: wire::PROTOCOL_VERSION,
            client_id: id.into(),
            credentials: None,
        })
        .await;
        match raw.next().await {
            ServerFrame::Welcome {
                version, client_id, ..
            } => {
                assert_eq!((version, client_id.as_str()), (wire::PROTOCOL_VERSION, id));
            }
            other => panic!("expected a welcome, got {other:?}"),
        }
        raw
    }

    /// Stops the relay (in-process: every task; binary: the process).
    pub async fn shutdown(mut self) {
        if let Kind::InProcess(server) = &mut self.kind {
            if let Some(server) = server.take() {
                within("relay shutdown", server.shutdown()).await;
            }
        }
    }
}

/// `a` asks `b` to pair; `b` (whose incoming is `b_in`) accepts.
pub async fn pair(a: &Client, b: &Client, b_in: &mut Incoming) {
    let register = tokio::spawn({
        let a = a.clone();
        let target = b.client_id().to_string();
        async move { a.register(&target).await }
    });
    match next(b_in).await {
        ClientEvent::RegisterRequest(request) => {
            assert_eq!(request.from(), a.client_id());
            assert_eq!(request.kind(), RequestKind::Register);
            request.accept();
        }
        other => panic!("expected a pairing request, got {other:?}"),
    }
    let paired = within("the pairing reply", register)
        .await
        .expect("register task")
        .expect("register");
    assert!(paired, "{} refused", b.client_id());
    assert_eq!(a.target().as_deref(), Some(b.client_id()));
    assert_eq!(b.target().as_deref(), Some(a.client_id()));
}

/// The next event, failing when none comes in time or the queue ended.
pub async fn next(incoming: &mut Incoming) -> ClientEvent {
    within("the next client event", incoming.next())
        .await
        .expect("the incoming queue ended")
}

/// Asserts that nothing arrives for `quiet`.
pub async fn assert_quiet(incoming: &mut Incoming, quiet: Duration) {
    if let Ok(event) = tokio::time::timeout(quiet, incoming.next()).await {
        panic!("expected no event, got {event:?}");
    }
}

/// Accepts the next stream request and returns the stream that follows it.
pub async fn accept_stream(incoming: &mut Incoming) -> P2pStream {
    loop {
        match next(incoming).await {
            ClientEvent::StreamRequest(request) => {
                assert_eq!(request.kind(), RequestKind::Stream);
                request.accept();
            }
            ClientEvent::Stream(stream) => return stream,
            other => panic!("expected a stream, got {other:?}"),
        }
    }
}

/// `opener` opens a stream to its peer, which accepts it on `peer_in`: (opener's, peer's).
pub async fn open_stream(opener: &Client, peer_in: &mut Incoming) -> (P2pStream, P2pStream) {
    let target = opener.target().expect("the opener is paired");
    let opening = tokio::spawn({
        let opener = opener.clone();
        async move { opener.open_stream(&target).await }
    });
    let theirs = accept_stream(peer_in).await;
    let mine = within("open_stream", opening)
        .await
        .expect("open task")
        .expect("open_stream")
        .expect("the peer accepted");
    assert_eq!(mine.id(), theirs.id());
    assert_eq!(theirs.peer(), opener.client_id());
    assert_eq!(Some(mine.peer()), opener.target().as_deref());
    (mine, theirs)
}

/// Deterministic pseudo-random bytes (xorshift64*), distinct per seed.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn sha256_hex(data: &[u8]) -> String {
    format!("{:x}", Sha256::digest(data))
}

/// Writes `data` in pieces and finishes (FIN); returns its SHA-256.
pub async fn write_and_finish<W: tokio::io::AsyncWrite + Unpin>(
    mut writer: W,
    data: &[u8],
) -> std::io::Result<String> {
    for chunk in data.chunks(64 * 1024) {
        writer.write_all(chunk).await?;
    }
    writer.shutdown().await?;
    Ok(sha256_hex(data))
}

/// Reads to a clean EOF; returns (length, SHA-256).
pub async fn read_to_eof<R: tokio::io::AsyncRead + Unpin>(
    mut reader: R,
) -> std::io::Result<(usize, String)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0;
    loop {
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            return Ok((total, format!("{:x}", hasher.finalize())));
        }
        hasher.update(&buf[..n]);
        total += n;
    }
}

/// Why a stream was reset / stopped, from the I/O error of a `P2pStream`.
pub fn stream_code(err: &std::io::Error) -> Option<wire::ResetCode> {
    native_client::StreamError::of(err).and_then(native_client::StreamError::reason)
}

// ---- raw wire access -------------------------------------------------------------------

/// A quinn connection to the relay driven by hand: frames are written and read as they
/// are, so a test can send what a well-behaved client never would.
pub struct Raw {
    pub endpoint: quinn::Endpoint,
    pub conn: quinn::Connection,
    pub writer: FrameWriter<quinn::SendStream>,
    pub reader: FrameReader<quinn::RecvStream>,
}

/// A quinn client configuration trusting `ca` and offering `alpn`.
pub fn raw_client_config(ca: &Path, alpn: &[u8]) -> quinn::ClientConfig {
    let tls = Trust::CaFile(ca.to_path_buf())
        .client_config(&[alpn])
        .expect("client TLS configuration");
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).expect("QUIC-capable TLS");
    quinn::ClientConfig::new(Arc::new(quic))
}

/// A QUIC handshake with the relay offering `alpn`, without saying anything yet.
pub async fn raw_handshake(
    relay: &Relay,
    alpn: &[u8],
) -> Result<(quinn::Endpoint, quinn::Connection), quinn::ConnectionError> {
    let endpoint =
        quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).expect("a client endpoint");
    let connecting = endpoint
        .connect_with(
            raw_client_config(relay.ca(), alpn),
            relay.addr(),
            "localhost",
        )
        .expect("connect_with");
    let conn = within("the QUIC handshake", connecting).await?;
    Ok((endpoint, conn))
}

impl Raw {
    /// Handshake and control stream, nothing sent on it yet.
    pub async fn connect(relay: &Relay, alpn: &[u8]) -> Result<Raw, quinn::ConnectionError> {
        let (endpoint, conn) = raw_handshake(relay, alpn).await?;
        let (send, recv) = within("opening the control stream", conn.open_bi()).await?;
        Ok(Raw {
            endpoint,
            conn,
            writer: FrameWriter::new(send),
            reader: FrameReader::new(recv, wire::MAX_FRAME_BYTES),
        })
    }

    pub async fn send(&mut self, frame: &ClientFrame) {
        within("writing a frame", self.writer.send(frame))
            .await
            .expect("frame written");
    }

    /// Writes a frame whose body is `body`, whatever it holds.
    pub async fn send_body(&mut self, body: &[u8]) {
        let mut bytes = (body.len() as u32).to_be_bytes().to_vec();
        bytes.extend_from_slice(body);
        within("writing a raw frame", self.writer.send_encoded(&bytes))
            .await
            .expect("frame written");
    }

    /// The next frame from the relay.
    pub async fn next(&mut self) -> ServerFrame {
        let body = within("the next frame from the relay", self.reader.next())
            .await
            .expect("reading a frame")
            .expect("the relay ended the control stream");
        frame::decode(&body).expect("a frame that decodes")
    }

    /// Pairs this raw client with `target`, whose client accepts: the raw side of
    /// `common::pair`, for tests that must speak frames the client library would not send.
    pub async fn pair_with(&mut self, req: u64, target: &str, target_in: &mut Incoming) {
        self.send(&ClientFrame::Register {
            req,
            target: target.into(),
        })
        .await;
        match next(target_in).await {
            ClientEvent::RegisterRequest(request) => request.accept(),
            other => panic!("expected a pairing request, got {other:?}"),
        }
        assert_eq!(
            self.next().await,
            ServerFrame::Reply {
                req,
                reply: WireReply::Registered(true)
            }
        );
    }

    /// Sends a List request for the first page and returns its ids, checking that it is
    /// the only page (skipping nothing else: the reply must be the next frame).
    pub async fn list(&mut self, req: u64) -> Vec<String> {
        self.send(&ClientFrame::List {
            req,
            after: None,
            limit: None,
        })
        .await;
        match self.next().await {
            ServerFrame::Reply {
                req: r,
                reply: WireReply::Clients { ids, next: None },
            } if r == req => ids,
            other => panic!("expected the list reply {req}, got {other:?}"),
        }
    }

    /// Waits for the connection to close and returns why.
    pub async fn closed(&self) -> quinn::ConnectionError {
        within("the connection closing", self.conn.closed()).await
    }
}

/// The application code a connection was closed with, if it was an application close.
pub fn app_close_code(err: &quinn::ConnectionError) -> Option<u64> {
    match err {
        quinn::ConnectionError::ApplicationClosed(close) => Some(close.error_code.into_inner()),
        _ => None,
    }
}

/// A payload of raw MessagePack bytes, for frames built by hand.
pub fn msgpack(bytes: &'static [u8]) -> Bytes {
    Bytes::from_static(bytes)
}

/// Installs a node project's exact dependencies (its lock file) unless `marker` is already
/// in its node_modules: a fresh checkout needs it, a second run does not.
pub fn npm_ci_unless(dir: &Path, marker: &str) {
    if dir.join("node_modules").join(marker).exists() {
        return;
    }
    let status = std::process::Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .status()
        .expect("npm is required (install Node.js 20+)");
    assert!(status.success(), "npm ci failed in {}", dir.display());
}
