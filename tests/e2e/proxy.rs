//! The relay behind a reverse proxy: a real nginx (Debian's package; `.ci/run` installs it)
//! in front of the Socket.IO gateway, run with the configuration docs/DEPLOY.md documents
//! (read from that file), and clients reaching it from several loopback addresses
//! (127.0.0.2, 127.0.0.3) over websocket and long-polling. With `--trusted-proxies` the
//! relay's per-address limit and its control center see those addresses; without, nginx's.
//! Also: an untrusted peer's `X-Forwarded-For` is ignored, and PROXY protocol v1 and v2
//! senders are believed with `--proxy-protocol`.
//!
//! Without nginx on the machine the nginx tests say so and pass, unless
//! `P2P_TEST_REQUIRE_NGINX=1` (CI) makes them fail instead.

use crate::common;
use crate::sio;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use common::within;
use p2p_relay::admin::{Access, Admin, Health, Watched};
use p2p_relay::{Server, Settings};
use sio::{ConnectFailure, Sio};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Where Debian puts it; PATH is searched too.
const NGINX: &str = "/usr/sbin/nginx";

/// docs/DEPLOY.md, whose nginx block the test runs.
fn deploy_md() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/DEPLOY.md")
}

/// In docs/DEPLOY.md's block: what the test replaces with its own port and the relay's.
const DOC_LISTEN: &str = "listen 80;";
const DOC_UPSTREAM: &str = "server 127.0.0.1:9000;";

fn find_nginx() -> Option<PathBuf> {
    let fixed = PathBuf::from(NGINX);
    if fixed.exists() {
        return Some(fixed);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("nginx"))
            .find(|p| p.exists())
    })
}

/// The nginx binary, or None after saying the test is skipped; a failure instead with
/// `P2P_TEST_REQUIRE_NGINX=1`.
fn nginx_or_skip() -> Option<PathBuf> {
    let found = find_nginx();
    if found.is_none() {
        if std::env::var("P2P_TEST_REQUIRE_NGINX").as_deref() == Ok("1") {
            panic!("P2P_TEST_REQUIRE_NGINX=1 but there is no nginx ({NGINX} or on PATH)");
        }
        eprintln!("skipped: no nginx here (install Debian's nginx, or see .ci/run)");
    }
    found
}

/// The ```nginx block of docs/DEPLOY.md.
fn documented_config() -> String {
    let text = std::fs::read_to_string(deploy_md()).expect("docs/DEPLOY.md");
    let start = text
        .find("```nginx\n")
        .expect("docs/DEPLOY.md has an ```nginx block")
        + "```nginx\n".len();
    let len = text[start..].find("\n```").expect("the nginx block ends");
    text[start..start + len].to_owned()
}

/// A free loopback TCP port (free when asked; nginx binds it right after).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An nginx of its own, in the foreground, everything it writes in a temporary directory;
/// stopped when dropped.
struct Nginx {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Nginx {
    /// nginx with docs/DEPLOY.md's configuration, proxying to `relay`.
    async fn start(bin: &Path, relay: SocketAddr) -> Nginx {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let documented = documented_config();
        for placeholder in [DOC_LISTEN, DOC_UPSTREAM] {
            assert_eq!(
                documented.matches(placeholder).count(),
                1,
                "docs/DEPLOY.md's nginx block has `{placeholder}` once (the test replaces it)"
            );
        }
        let server = documented
            .replace(DOC_LISTEN, &format!("listen 127.0.0.1:{port};"))
            .replace(DOC_UPSTREAM, &format!("server {relay};"));
        let d = dir.path().display();
        // One process that stays in the foreground (no workers, so no `user` to switch
        // to even as root), with its pid, logs and buffers in the directory.
        let conf = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
             error_log {d}/error.log notice;\nevents {{ worker_connections 256; }}\n\
             http {{\n    access_log off;\n    client_body_temp_path {d}/client_body;\n    \
             proxy_temp_path {d}/proxy;\n    fastcgi_temp_path {d}/fastcgi;\n    \
             uwsgi_temp_path {d}/uwsgi;\n    scgi_temp_path {d}/scgi;\n\n{server}\n}}\n"
        );
        let path = dir.path().join("nginx.conf");
        std::fs::write(&path, conf).unwrap();
        let child = Command::new(bin)
            .arg("-p")
            .arg(dir.path())
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .arg("-c")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let mut nginx = Nginx {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            dir,
        };
        let deadline = Instant::now() + common::WAIT;
        loop {
            if TcpStream::connect(nginx.addr).await.is_ok() {
                return nginx;
            }
            if let Ok(Some(status)) = nginx.child.try_wait() {
                panic!("nginx exited ({status}): {}", nginx.error_log());
            }
            assert!(
                Instant::now() < deadline,
                "nginx not listening: {}",
                nginx.error_log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }

    /// A TCP connection to nginx from `local` (a loopback address of the test's choice).
    async fn connect_from(&self, local: IpAddr) -> TcpStream {
        connect_from(local, self.addr).await
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn connect_from(local: IpAddr, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(local, 0)).unwrap();
    let tcp = within("connecting", socket.connect(to))
        .await
        .expect("connect");
    tcp.set_nodelay(true).ok();
    tcp
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The relay in this process with extra flags, and its admin listener (the control center).
struct Proxied {
    server: Option<Server>,
    admin: Option<Admin>,
    _dir: tempfile::TempDir,
}

impl Proxied {
    async fn start(extra: &[&str]) -> Proxied {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().display().to_string();
        let mut args = vec!["p2p-relay", "--data-dir", &data_dir];
        for flag in ["--socketio-listen", "--quic-listen", "--admin-listen"] {
            args.extend([flag, "127.0.0.1:0"]);
        }
        args.extend_from_slice(extra);
        let settings = Settings::try_parse_from(&args).unwrap_or_else(|e| panic!("{extra:?}: {e}"));
        let server = within("starting the relay", Server::start(&settings))
            .await
            .expect("the relay starts");
        let watched = Watched {
            relay: server.relay().clone(),
            health: Arc::new(Health::default()),
            socketio_addr: server.socketio_addr(),
            quic_addr: server.quic_addr(),
        };
        let admin = Admin::start(settings.admin.admin_listen, Access::open(), watched)
            .await
            .expect("the admin listener starts");
        Proxied {
            server: Some(server),
            admin: Some(admin),
            _dir: dir,
        }
    }

    fn socketio(&self) -> SocketAddr {
        self.server.as_ref().unwrap().socketio_addr()
    }

    /// Each client id with the address the control center shows for it.
    async fn remotes(&self) -> Vec<(String, String)> {
        let url = format!("http://{}/api/clients", self.admin.as_ref().unwrap().addr());
        let body: serde_json::Value = within("the control center's client list", async {
            let text = reqwest::get(&url).await.unwrap().text().await.unwrap();
            serde_json::from_str(&text).unwrap()
        })
        .await;
        let mut remotes: Vec<(String, String)> = body["clients"]
            .as_array()
            .expect("a client list")
            .iter()
            .map(|c| {
                (
                    c["id"].as_str().unwrap().to_owned(),
                    c["remote"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        remotes.sort();
        remotes
    }

    /// The client's address as the control center shows it (IP only; a header gives no
    /// port).
    async fn remote_ip(&self, id: &str) -> IpAddr {
        let remotes = self.remotes().await;
        let (_, remote) = remotes
            .iter()
            .find(|(i, _)| i == id)
            .unwrap_or_else(|| panic!("{id} is not listed: {remotes:?}"));
        remote
            .parse::<SocketAddr>()
            .unwrap_or_else(|e| panic!("{id}: {remote}: {e}"))
            .ip()
    }
}

impl Drop for Proxied {
    fn drop(&mut self) {
        drop(self.admin.take());
        drop(self.server.take());
    }
}

/// Joins `/` as `id` over a websocket on `tcp` (an already made connection).
async fn join(tcp: TcpStream, host: SocketAddr, id: &str) -> Result<Sio, ConnectFailure> {
    within(
        &format!("{id} connecting"),
        Sio::connect_on(Box::new(tcp), &host.to_string(), &format!("clientId={id}")),
    )
    .await
}

fn refused(result: Result<Sio, ConnectFailure>, id: &str) -> String {
    match result {
        Err(ConnectFailure::Refused(message)) => message,
        Err(other) => panic!("{id}: expected a refusal, got {other:?}"),
        Ok(_) => panic!("{id}: admitted, expected a refusal"),
    }
}

#[tokio::test]
async fn behind_nginx_each_client_is_counted_as_its_own_address() {
    let Some(bin) = nginx_or_skip() else { return };
    let relay = Proxied::start(&[
        "--trusted-proxies",
        "127.0.0.1/32",
        "--max-connections-per-ip",
        "2",
    ])
    .await;
    let nginx = Nginx::start(&bin, relay.socketio()).await;
    let (two, three) = (ip("127.0.0.2"), ip("127.0.0.3"));

    let a1 = join(nginx.connect_from(two).await, nginx.addr, "A1").await;
    let a2 = join(nginx.connect_from(two).await, nginx.addr, "A2").await;
    let (_a1, _a2) = (
        a1.expect("the first from 127.0.0.2 is admitted"),
        a2.expect("the second from 127.0.0.2 is admitted"),
    );
    let message = refused(
        join(nginx.connect_from(two).await, nginx.addr, "A3").await,
        "A3",
    );
    assert!(
        message.starts_with("too many connections from 127.0.0.2"),
        "{message}"
    );
    let _b1 = join(nginx.connect_from(three).await, nginx.addr, "B1")
        .await
        .expect("127.0.0.3 has a limit of its own");

    assert_eq!(relay.remote_ip("A1").await, two);
    assert_eq!(relay.remote_ip("A2").await, two);
    assert_eq!(relay.remote_ip("B1").await, three);
    assert_eq!(
        relay.remotes().await.len(),
        3,
        "{:?}",
        relay.remotes().await
    );
}

/// The same nginx without `--trusted-proxies`: every client is nginx's 127.0.0.1, which
/// is what the flag is for (the control for the test above).
#[tokio::test]
async fn behind_nginx_without_trusted_proxies_everyone_is_the_proxy() {
    let Some(bin) = nginx_or_skip() else { return };
    let relay = Proxied::start(&["--max-connections-per-ip", "2"]).await;
    let nginx = Nginx::start(&bin, relay.socketio()).await;
    let _a1 = join(nginx.connect_from(ip("127.0.0.2")).await, nginx.addr, "A1")
        .await
        .expect("admitted");
    let _b1 = join(nginx.connect_from(ip("127.0.0.3")).await, nginx.addr, "B1")
        .await
        .expect("admitted");
    let message = refused(
        join(nginx.connect_from(ip("127.0.0.3")).await, nginx.addr, "B2").await,
        "B2",
    );
    assert!(
        message.starts_with("too many connections from 127.0.0.1"),
        "{message}"
    );
    assert_eq!(relay.remote_ip("B1").await, ip("127.0.0.1"));
}

/// An engine.io long-polling session through nginx, from `local`: the handshake, the
/// namespace join, and the poll that answers it. Returns the relay's first answer.
async fn poll_join(nginx: SocketAddr, local: IpAddr, id: &str, spoof: Option<&str>) -> String {
    let client = reqwest::ClientBuilder::new()
        .local_address(local)
        .timeout(common::WAIT)
        .build()
        .unwrap();
    let base = format!("http://{nginx}/socket.io/?EIO=4&transport=polling&clientId={id}");
    let with_spoof = |request: reqwest::RequestBuilder| match spoof {
        Some(value) => request.header("x-forwarded-for", value),
        None => request,
    };
    let open = with_spoof(client.get(&base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let open = open
        .strip_prefix('0')
        .unwrap_or_else(|| panic!("an engine.io open packet: {open}"));
    let open: serde_json::Value = serde_json::from_str(open).unwrap();
    let sid = open["sid"].as_str().expect("a session id");
    let session = format!("{base}&sid={sid}");
    let posted = with_spoof(client.post(&session).body("40"))
        .send()
        .await
        .unwrap();
    assert!(posted.status().is_success(), "{}", posted.status());
    // The namespace's answer (40: joined, 44: refused), maybe after other packets (a
    // ping); a few polls at most.
    for _ in 0..5 {
        let polled = with_spoof(client.get(&session))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if let Some(answer) = polled
            .split('\x1e')
            .find(|p| p.starts_with("40") || p.starts_with("44"))
        {
            return answer.to_owned();
        }
    }
    panic!("{id}: no answer to joining the namespace in five polls");
}

#[tokio::test]
async fn long_polling_through_nginx_is_counted_as_its_own_address() {
    let Some(bin) = nginx_or_skip() else { return };
    let relay = Proxied::start(&[
        "--trusted-proxies",
        "127.0.0.1/32",
        "--max-connections-per-ip",
        "1",
    ])
    .await;
    let nginx = Nginx::start(&bin, relay.socketio()).await;
    // A client that writes an address of its choice: nginx appends the real one, which is
    // the rightmost untrusted entry.
    let first = poll_join(nginx.addr, ip("127.0.0.2"), "P1", Some("198.51.100.1")).await;
    assert!(first.starts_with("40"), "P1 joins: {first}");
    let first = poll_join(nginx.addr, ip("127.0.0.3"), "P2", None).await;
    assert!(first.starts_with("40"), "P2 joins: {first}");
    let second = poll_join(nginx.addr, ip("127.0.0.2"), "P3", Some("198.51.100.2")).await;
    assert!(
        second.starts_with("44") && second.contains("too many connections from 127.0.0.2"),
        "P3 is refused as 127.0.0.2: {second}"
    );
    assert_eq!(relay.remote_ip("P1").await, ip("127.0.0.2"));
    assert_eq!(relay.remote_ip("P2").await, ip("127.0.0.3"));
}

#[tokio::test]
async fn forwarding_headers_count_only_from_trusted_peers() {
    // Without --trusted-proxies nobody is believed.
    let relay = Proxied::start(&["--max-connections-per-ip", "1"]).await;
    let host = relay.socketio();
    let spoofed = [
        ("x-forwarded-for", "203.0.113.9"),
        ("forwarded", "for=203.0.113.9"),
    ];
    let _a = within(
        "A connecting",
        Sio::connect_on_with_headers(
            Box::new(connect_from(ip("127.0.0.1"), host).await),
            &host.to_string(),
            "clientId=A",
            &spoofed,
        ),
    )
    .await
    .expect("admitted");
    assert_eq!(relay.remote_ip("A").await, ip("127.0.0.1"));
    let other = [("x-forwarded-for", "203.0.113.10")];
    let message = refused(
        within(
            "B connecting",
            Sio::connect_on_with_headers(
                Box::new(connect_from(ip("127.0.0.1"), host).await),
                &host.to_string(),
                "clientId=B",
                &other,
            ),
        )
        .await,
        "B",
    );
    assert!(
        message.starts_with("too many connections from 127.0.0.1"),
        "{message}"
    );

    // With 127.0.0.1 trusted: 127.0.0.2 is not, and is believed about nobody.
    let relay = Proxied::start(&["--trusted-proxies", "127.0.0.1"]).await;
    let host = relay.socketio();
    let mut connected = Vec::new();
    for (id, from) in [("T", "127.0.0.1"), ("U", "127.0.0.2")] {
        let sio = within(
            "connecting",
            Sio::connect_on_with_headers(
                Box::new(connect_from(ip(from), host).await),
                &host.to_string(),
                &format!("clientId={id}"),
                &spoofed,
            ),
        )
        .await
        .expect("admitted");
        connected.push(sio);
    }
    assert_eq!(relay.remote_ip("T").await, ip("203.0.113.9"), "trusted");
    assert_eq!(relay.remote_ip("U").await, ip("127.0.0.2"), "untrusted");
}

fn v2_preface(client: SocketAddr, relay: SocketAddr) -> Vec<u8> {
    use ppp::v2::{Builder, Command, Protocol, Version};
    Builder::with_addresses(
        Version::Two | Command::Proxy,
        Protocol::Stream,
        (client, relay),
    )
    .build()
    .unwrap()
}

#[tokio::test]
async fn proxy_protocol_v1_and_v2_prefaces_name_the_client() {
    let relay = Proxied::start(&[
        "--trusted-proxies",
        "127.0.0.1/32",
        "--proxy-protocol",
        "--max-connections-per-ip",
        "1",
    ])
    .await;
    let host = relay.socketio();
    let client: SocketAddr = "203.0.113.7:40001".parse().unwrap();

    let mut tcp = connect_from(ip("127.0.0.1"), host).await;
    tcp.write_all(&v2_preface(client, host)).await.unwrap();
    let _v2 = join(tcp, host, "V2").await.expect("admitted");
    assert_eq!(
        relay.remotes().await,
        vec![("V2".to_owned(), client.to_string())],
        "the preface's address and port"
    );

    // Another from the same client address, in the text version: the limit of 1 applies.
    let mut tcp = connect_from(ip("127.0.0.1"), host).await;
    let line = format!(
        "PROXY TCP4 203.0.113.7 {} 40002 {}\r\n",
        host.ip(),
        host.port()
    );
    tcp.write_all(line.as_bytes()).await.unwrap();
    let message = refused(join(tcp, host, "V1").await, "V1");
    assert!(
        message.starts_with("too many connections from 203.0.113.7"),
        "{message}"
    );
    let mut tcp = connect_from(ip("127.0.0.1"), host).await;
    let line = format!(
        "PROXY TCP4 203.0.113.8 {} 40003 {}\r\n",
        host.ip(),
        host.port()
    );
    tcp.write_all(line.as_bytes()).await.unwrap();
    let _v1 = join(tcp, host, "V1").await.expect("another address");
    assert_eq!(relay.remote_ip("V1").await, ip("203.0.113.8"));

    // A trusted peer without a preface is closed, and only that connection.
    let mut tcp = connect_from(ip("127.0.0.1"), host).await;
    tcp.write_all(b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let read = within("the connection closing", tcp.read_to_end(&mut answer)).await;
    assert!(
        read.is_err() || answer.is_empty(),
        "closed without an answer: {}",
        String::from_utf8_lossy(&answer)
    );
    // An untrusted peer needs no preface.
    let _plain = join(connect_from(ip("127.0.0.2"), host).await, host, "PLAIN")
        .await
        .expect("an untrusted peer is served as usual");
    assert_eq!(relay.remote_ip("PLAIN").await, ip("127.0.0.2"));
    assert_eq!(
        relay.remotes().await.len(),
        3,
        "the earlier ones still connected"
    );
}

#[test]
fn proxy_protocol_needs_trusted_proxies() {
    let e = Settings::try_parse_from(["p2p-relay", "--proxy-protocol"]).unwrap_err();
    assert!(e.to_string().contains("--trusted-proxies"), "{e}");
    assert_eq!(e.exit_code(), 2);
    let e = Settings::try_parse_from(["p2p-relay", "--trusted-proxies", "10.0.0.0/8,nginx"])
        .unwrap_err();
    assert!(e.to_string().contains("'nginx'"), "{e}");
    let ok = Settings::try_parse_from([
        "p2p-relay",
        "--trusted-proxies",
        "10.0.0.0/8",
        "--proxy-protocol",
    ])
    .unwrap();
    assert!(ok.proxy_protocol);
}

/// `p2p-relay config` (the binary) with `file` as its config file and `env`, without the
/// caller's own `P2P_RELAY_` variables.
fn config_report(file: &str, env: &[(&str, &str)]) -> std::process::Output {
    let mut config = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    std::io::Write::write_all(&mut config, file.as_bytes()).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_p2p-relay"));
    cmd.arg("config").arg("--config").arg(config.path());
    for (name, _) in std::env::vars() {
        if name.starts_with("P2P_RELAY_") {
            cmd.env_remove(name);
        }
    }
    cmd.envs(env.iter().copied()).stdin(Stdio::null());
    cmd.output().expect("the relay binary runs")
}

#[test]
fn both_settings_come_from_the_file_and_the_environment() {
    let ok = config_report(
        "trusted_proxies = \"10.0.0.0/8,127.0.0.1\"\nproxy_protocol = true\n",
        &[],
    );
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(ok.status.success(), "{ok:?}");
    assert!(stdout.contains("10.0.0.0/8,127.0.0.1"), "{stdout}");
    let ok = config_report(
        "",
        &[
            ("P2P_RELAY_TRUSTED_PROXIES", "192.168.0.0/16"),
            ("P2P_RELAY_PROXY_PROTOCOL", "true"),
        ],
    );
    assert!(ok.status.success(), "{ok:?}");
    assert!(String::from_utf8_lossy(&ok.stdout).contains("192.168.0.0/16"));

    // The PROXY protocol without trusted proxies is refused, whichever layer asks for it.
    for (file, env) in [
        ("proxy_protocol = true\n", &[][..]),
        ("", &[("P2P_RELAY_PROXY_PROTOCOL", "true")][..]),
    ] {
        let refused = config_report(file, env);
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert_eq!(refused.status.code(), Some(2), "{refused:?}");
        assert!(stderr.contains("trusted-proxies"), "{stderr}");
    }
    let refused = config_report("trusted_proxies = \"10.0.0.0/33\"\n", &[]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    assert!(
        stderr.contains("key 'trusted_proxies'") && stderr.contains("10.0.0.0/33"),
        "{stderr}"
    );
}
