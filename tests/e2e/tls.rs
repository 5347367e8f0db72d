//! TLS for the Socket.IO gateway, against the real relay with a test CA: a websocket
//! client over wss and a long-polling client over https pair and relay; a certificate
//! replaced on disk is served to the next connection (Socket.IO and QUIC alike) while the
//! connections already open live on, and a bad replacement keeps the old one; SIGHUP
//! reloads the binary's files; plain http to the TLS port gets a 400 saying to use https,
//! and a client that never starts its handshake is closed.

use crate::sio;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use native_client::{wire, ClientEvent, ConnectOptions, Trust};
use p2p_relay::{Server, Settings};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use serde_json::{json, Value};
use sio::{within, Packet, Sio};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls;

// ---- certificates ------------------------------------------------------------------------

/// A CA made for one test, and the server certificates it signs.
struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    pem_path: PathBuf,
}

/// A server certificate (for localhost and 127.0.0.1) with its key, as PEM.
struct Leaf {
    cert_pem: String,
    key_pem: String,
    fingerprint: String,
}

impl TestCa {
    fn new(dir: &Path) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "p2p-relay TLS test CA");
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let pem_path = dir.join("test-ca.pem");
        std::fs::write(&pem_path, issuer.pem()).unwrap();
        TestCa { issuer, pem_path }
    }

    fn leaf(&self) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            fingerprint: certs::fingerprint(cert.der()),
        }
    }

    fn roots(&self) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.issuer.der().clone()).unwrap();
        roots
    }

    fn client_config(&self) -> Arc<rustls::ClientConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(self.roots())
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

/// Where the relay's certificate and key live; written as an ACME client does (a new file
/// renamed over the old one), unless `in_place`.
struct CertFiles {
    cert: PathBuf,
    key: PathBuf,
}

impl CertFiles {
    fn new(dir: &Path) -> CertFiles {
        CertFiles {
            cert: dir.join("fullchain.pem"),
            key: dir.join("privkey.pem"),
        }
    }

    fn write(&self, leaf: &Leaf) {
        for (path, pem) in [(&self.key, &leaf.key_pem), (&self.cert, &leaf.cert_pem)] {
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, pem).unwrap();
            std::fs::rename(&tmp, path).unwrap();
        }
    }

    fn flags(&self) -> Vec<String> {
        vec![
            "--tls-cert".into(),
            self.cert.display().to_string(),
            "--tls-key".into(),
            self.key.display().to_string(),
        ]
    }
}

// ---- the relay ---------------------------------------------------------------------------

struct TlsRelay {
    server: Option<Server>,
    _data: tempfile::TempDir,
}

impl TlsRelay {
    async fn start(files: &CertFiles, extra: &[&str]) -> TlsRelay {
        let data = tempfile::tempdir().unwrap();
        let mut args: Vec<String> = [
            "p2p-relay",
            "--socketio-listen",
            "127.0.0.1:0",
            "--quic-listen",
            "127.0.0.1:0",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.push("--data-dir".into());
        args.push(data.path().display().to_string());
        args.extend(files.flags());
        args.extend(extra.iter().map(|s| s.to_string()));
        let settings = Settings::try_parse_from(&args).expect("relay flags");
        let server = within("starting the relay", Server::start(&settings))
            .await
            .expect("the relay starts with the TLS files");
        assert!(server.socketio_tls());
        assert!(
            server.ca().is_none(),
            "no development CA with an operator's pair"
        );
        TlsRelay {
            server: Some(server),
            _data: data,
        }
    }

    fn server(&self) -> &Server {
        self.server.as_ref().unwrap()
    }

    fn socketio(&self) -> SocketAddr {
        self.server().socketio_addr()
    }

    async fn shutdown(mut self) {
        within("relay shutdown", self.server.take().unwrap().shutdown()).await;
    }
}

// ---- clients -----------------------------------------------------------------------------

type Tls = tokio_rustls::client::TlsStream<TcpStream>;

/// A TLS connection to `addr` checked against the test CA, and the fingerprint of the
/// certificate the relay presented.
async fn tls_connect(ca: &TestCa, addr: SocketAddr) -> std::io::Result<(Tls, String)> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true).ok();
    let connector = tokio_rustls::TlsConnector::from(ca.client_config());
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = within("the TLS handshake", connector.connect(name, tcp)).await?;
    let served = tls.get_ref().1.peer_certificates().expect("a certificate")[0].clone();
    Ok((tls, certs::fingerprint(&served)))
}

async fn served_fingerprint(ca: &TestCa, addr: SocketAddr) -> String {
    tls_connect(ca, addr).await.expect("TLS connection").1
}

/// A Socket.IO client over wss; returns it with the certificate it was served.
async fn wss(ca: &TestCa, addr: SocketAddr, id: &str) -> (Sio, String) {
    let (tls, fingerprint) = tls_connect(ca, addr).await.expect("TLS connection");
    let sio = Sio::connect_as_on(Box::new(tls), &format!("localhost:{}", addr.port()), id).await;
    (sio, fingerprint)
}

/// The certificate the QUIC front end presents, seen by a quinn client trusting `ca`.
async fn quic_fingerprint(ca_file: &Path, addr: SocketAddr) -> String {
    let tls = Trust::CaFile(ca_file.to_path_buf())
        .client_config(&[wire::ALPN])
        .unwrap();
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let connecting = endpoint
        .connect_with(quinn::ClientConfig::new(Arc::new(quic)), addr, "localhost")
        .unwrap();
    let conn = within("the QUIC handshake", connecting)
        .await
        .expect("QUIC handshake with the test CA");
    let chain = conn
        .peer_identity()
        .unwrap()
        .downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
        .unwrap();
    conn.close(0u32.into(), b"");
    certs::fingerprint(&chain[0])
}

/// Waits (bounded) until `probe` returns `want`; returns how many probes it took.
async fn eventually<F, Fut>(what: &str, want: &str, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = String>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = probe().await;
        if got == want {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: still {got}, not {want}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A bare engine.io v4 long-polling client over https (reqwest, trusting the test CA).
struct Polling {
    http: reqwest::Client,
    url: String,
    backlog: VecDeque<String>,
}

impl Polling {
    async fn connect(ca: &TestCa, addr: SocketAddr, id: &str) -> Polling {
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(
                reqwest::Certificate::from_pem(ca.issuer.pem().as_bytes()).unwrap(),
            )
            .resolve("localhost", addr)
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let base = format!(
            "https://localhost:{}/socket.io/?EIO=4&transport=polling&clientId={id}",
            addr.port()
        );
        let open = within("the polling handshake", http.get(&base).send())
            .await
            .expect("https GET");
        assert!(open.status().is_success(), "{}", open.status());
        let open = open.text().await.unwrap();
        let handshake: Value = serde_json::from_str(open.strip_prefix('0').expect("open packet"))
            .expect("handshake JSON");
        let sid = handshake["sid"].as_str().expect("sid").to_owned();
        let mut polling = Polling {
            http,
            url: format!("{base}&sid={sid}"),
            backlog: VecDeque::new(),
        };
        polling.send("40").await;
        let connected = polling.packet().await;
        assert!(connected.starts_with("40"), "{connected}");
        let limits = polling.packet().await;
        assert!(limits.starts_with("42[\"P2P_LIMITS\""), "{limits}");
        polling
    }

    async fn send(&mut self, packet: &str) {
        let sent = within(
            "a polling POST",
            self.http.post(&self.url).body(packet.to_owned()).send(),
        )
        .await
        .expect("https POST");
        assert!(sent.status().is_success(), "{}", sent.status());
    }

    /// The next engine.io packet that is not a ping (pings are answered).
    async fn packet(&mut self) -> String {
        within("a polled packet", async {
            loop {
                if let Some(packet) = self.backlog.pop_front() {
                    if packet == "2" {
                        self.send("3").await;
                        continue;
                    }
                    return packet;
                }
                let body = self.http.get(&self.url).send().await.expect("https GET");
                let body = body.text().await.expect("a polled body");
                self.backlog.extend(
                    body.split('\u{1e}')
                        .filter(|p| !p.is_empty())
                        .map(String::from),
                );
            }
        })
        .await
    }
}

/// `42<ack>[name, args...]` into (name, ack, args).
fn event(packet: &str) -> (String, Option<u64>, Vec<Value>) {
    let rest = packet
        .strip_prefix("42")
        .unwrap_or_else(|| panic!("an event: {packet}"));
    let digits = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let ack = (digits > 0).then(|| rest[..digits].parse().unwrap());
    let mut args: Vec<Value> = serde_json::from_str(&rest[digits..]).unwrap();
    let name = args.remove(0).as_str().unwrap().to_owned();
    (name, ack, args)
}

/// `a` (websocket) asks `b` (polling) to pair; `b` accepts.
async fn pair_wss_with_polling(a: &mut Sio, b: &mut Polling, b_id: &str) {
    let asked = a
        .emit_raw("P2P_REGISTER", &Value::from(b_id).to_string(), true)
        .await
        .unwrap();
    let (name, question, _) = event(&b.packet().await);
    assert_eq!(name, "P2P_REGISTER");
    b.send(&format!("43{}[true]", question.expect("a question")))
        .await;
    assert_eq!(a.ack(asked).await, vec![json!(true)]);
}

async fn emit(a: &mut Sio, to: &str, name: &str, args: Value) {
    let payload = json!({"targetClientId": to, "event": name, "args": args});
    a.emit_raw("P2P_EMIT", &payload.to_string(), false).await;
}

async fn received(b: &mut Sio, name: &str) -> Vec<Value> {
    match b.event(name).await {
        Packet::Event { args, .. } => args,
        other => panic!("expected {name}, got {other:?}"),
    }
}

// ---- tests -------------------------------------------------------------------------------

#[tokio::test]
async fn wss_and_https_polling_pair_and_relay() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let files = CertFiles::new(dir.path());
    let leaf = ca.leaf();
    files.write(&leaf);
    let relay = TlsRelay::start(&files, &[]).await;
    assert_eq!(
        relay.server().socketio_url(),
        format!("https://{}", relay.socketio())
    );
    assert_eq!(relay.server().tls_fingerprint().unwrap(), leaf.fingerprint);

    let (mut a, served) = wss(&ca, relay.socketio(), "A").await;
    assert_eq!(served, leaf.fingerprint);
    let mut b = Polling::connect(&ca, relay.socketio(), "B").await;
    pair_wss_with_polling(&mut a, &mut b, "B").await;

    // A websocket emit reaches the polling peer, and back.
    emit(&mut a, "B", "hello", json!(["over wss", 1])).await;
    let (name, _, args) = event(&b.packet().await);
    assert_eq!(
        (name.as_str(), args),
        ("hello", vec![json!("over wss"), json!(1)])
    );
    let back = json!({"targetClientId": "A", "event": "reply", "args": ["over https"]});
    b.send(&format!("42[\"P2P_EMIT\",{back}]")).await;
    assert_eq!(received(&mut a, "reply").await, vec![json!("over https")]);

    let ids = a.request("LIST_CLIENTS", &[]).await;
    assert_eq!(ids, vec![json!(["A", "B"])]);
    a.close().await;
    relay.shutdown().await;
}

#[tokio::test]
async fn a_replaced_certificate_reaches_new_connections_and_open_ones_live_on() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let files = CertFiles::new(dir.path());
    let (first, second) = (ca.leaf(), ca.leaf());
    files.write(&first);
    let relay = TlsRelay::start(&files, &["--tls-reload-interval-ms", "100"]).await;
    let quic = relay.server().quic_addr();
    assert_eq!(
        quic_fingerprint(&ca.pem_path, quic).await,
        first.fingerprint
    );

    let (mut a, served_a) = wss(&ca, relay.socketio(), "A").await;
    let (mut b, _) = wss(&ca, relay.socketio(), "B").await;
    assert_eq!(served_a, first.fingerprint);
    a.pair_with(&mut b, "B").await;

    files.write(&second);
    eventually(
        "the gateway's certificate after a renewal",
        &second.fingerprint,
        || served_fingerprint(&ca, relay.socketio()),
    )
    .await;
    assert_eq!(
        relay.server().tls_fingerprint().unwrap(),
        second.fingerprint
    );
    // QUIC presents the same, new certificate.
    assert_eq!(
        quic_fingerprint(&ca.pem_path, quic).await,
        second.fingerprint
    );
    // A new client joins on the new certificate; the pair made before goes on.
    let (mut c, served_c) = wss(&ca, relay.socketio(), "C").await;
    assert_eq!(served_c, second.fingerprint);
    emit(&mut a, "B", "still", json!(["here"])).await;
    assert_eq!(received(&mut b, "still").await, vec![json!("here")]);
    emit(&mut b, "A", "and", json!(["back"])).await;
    assert_eq!(received(&mut a, "and").await, vec![json!("back")]);

    // A broken renewal (a key that is not the certificate's, then a certificate that is
    // not PEM) is refused: the second certificate stays, and everyone goes on.
    std::fs::write(&files.key, &first.key_pem).unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    std::fs::write(&files.cert, "not a certificate\n").unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        served_fingerprint(&ca, relay.socketio()).await,
        second.fingerprint
    );
    assert_eq!(
        quic_fingerprint(&ca.pem_path, quic).await,
        second.fingerprint
    );
    let ids = c.request("LIST_CLIENTS", &[]).await;
    assert_eq!(ids, vec![json!(["A", "B", "C"])]);
    emit(&mut a, "B", "after", json!(["a bad file"])).await;
    assert_eq!(received(&mut b, "after").await, vec![json!("a bad file")]);

    // A native client pairs with a wss one through the same certificate.
    let options = ConnectOptions::new("N")
        .addr(quic)
        .trust(Trust::CaFile(ca.pem_path.clone()));
    let (native, mut native_in) = within("native connect", native_client::Client::connect(options))
        .await
        .expect("a native client trusting the test CA connects");
    let asked = c
        .emit_raw("P2P_REGISTER", &Value::from("N").to_string(), true)
        .await
        .unwrap();
    match within("the pairing request", native_in.next()).await {
        Some(ClientEvent::RegisterRequest(request)) => request.accept(),
        other => panic!("expected a pairing request, got {other:?}"),
    }
    assert_eq!(c.ack(asked).await, vec![json!(true)]);
    native.close().await;
    for sio in [a, b, c] {
        sio.close().await;
    }
    relay.shutdown().await;
}

#[tokio::test]
async fn plain_http_to_the_tls_port_fails_cleanly_and_a_silent_client_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let files = CertFiles::new(dir.path());
    let leaf = ca.leaf();
    files.write(&leaf);
    let relay = TlsRelay::start(&files, &["--tls-handshake-timeout-ms", "300"]).await;
    let addr = relay.socketio();

    // http:// to the https port: a 400 that says what to do, then the socket closes.
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(
        b"GET /socket.io/?EIO=4&transport=polling&clientId=P HTTP/1.1\r\nHost: localhost\r\n\r\n",
    )
    .await
    .unwrap();
    let mut answer = String::new();
    within("the answer to plain http", tcp.read_to_string(&mut answer))
        .await
        .expect("a clean close after the answer");
    assert!(
        answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{answer}"
    );
    assert!(
        answer
            .ends_with("This port serves HTTPS: connect with https:// (wss:// for websockets).\n"),
        "{answer}"
    );
    // ws:// to it fails the same way, with an error rather than a hang.
    match within(
        "ws:// to the TLS port",
        Sio::connect_query(addr, "clientId=W"),
    )
    .await
    {
        Err(sio::ConnectFailure::Transport(why)) => assert!(why.contains("400"), "{why}"),
        Ok(_) => panic!("a plain websocket must not connect to the TLS port"),
        Err(other) => panic!("expected a transport failure, got {other:?}"),
    }

    // A client that connects and says nothing is closed after the handshake timeout.
    let started = Instant::now();
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 16];
    let n = within("the silent client's close", silent.read(&mut buf))
        .await
        .unwrap_or(0);
    assert_eq!(n, 0, "closed without a word");
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
    // So is one that starts a handshake and stalls (one byte of a TLS record).
    let mut stalled = TcpStream::connect(addr).await.unwrap();
    stalled.write_all(&[0x16]).await.unwrap();
    let n = within("the stalled client's close", stalled.read(&mut buf))
        .await
        .unwrap_or(0);
    assert_eq!(n, 0);

    // A handshake with a client that does not trust the certificate fails, and the relay
    // goes on serving.
    let elsewhere = tempfile::tempdir().unwrap();
    let stranger = TestCa::new(elsewhere.path());
    let refused = tls_connect(&stranger, addr).await;
    assert!(
        refused.is_err(),
        "a client of another CA must refuse the certificate"
    );
    let (mut a, served) = wss(&ca, addr, "A").await;
    assert_eq!(served, leaf.fingerprint);
    assert_eq!(a.request("LIST_CLIENTS", &[]).await, vec![json!(["A"])]);
    a.close().await;
    relay.shutdown().await;
}

#[tokio::test]
async fn sighup_reloads_the_certificate_of_the_relay_binary() {
    let dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let files = CertFiles::new(dir.path());
    let (first, second) = (ca.leaf(), ca.leaf());
    files.write(&first);
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_p2p-relay"))
        .args([
            "--socketio-listen",
            "127.0.0.1:0",
            "--quic-listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(data.path())
        .args(files.flags())
        // An hour: only the signal can make it reload within the test.
        .args(["--tls-reload-interval-ms", "3600000"])
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the relay binary starts");
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let addr: SocketAddr = within("the relay's address line", async {
        loop {
            let line = lines.next_line().await.unwrap().expect("the relay exited");
            if let Some(addr) = line.strip_prefix("Socket.IO gateway listening on https://") {
                return addr.trim().parse().unwrap();
            }
        }
    })
    .await;
    let (mut a, served) = wss(&ca, addr, "A").await;
    assert_eq!(served, first.fingerprint);

    files.write(&second);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        served_fingerprint(&ca, addr).await,
        first.fingerprint,
        "no reload yet"
    );
    let pid = child.id().unwrap() as libc::pid_t;
    // SAFETY: kill has no memory preconditions; the pid is our own child's.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0, "kill -HUP");
    eventually("the certificate after SIGHUP", &second.fingerprint, || {
        served_fingerprint(&ca, addr)
    })
    .await;
    // The connection from before the signal lives on.
    assert_eq!(a.request("LIST_CLIENTS", &[]).await, vec![json!(["A"])]);
    a.close().await;
    let _ = child.kill().await;
}
