//! A real `redis-server` per test (Debian's package; `.ci/run` installs it) on a free
//! loopback port, with no persistence, stopped when dropped; and relay nodes that share it.
//!
//! Without `redis-server` on the machine the cluster tests say so and pass, unless
//! `P2P_TEST_REQUIRE_REDIS=1` (CI) makes them fail instead.

#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Where Debian puts it; PATH is searched too.
const REDIS_SERVER: &str = "/usr/bin/redis-server";

pub struct Redis {
    child: Option<Child>,
    pub port: u16,
    bin: PathBuf,
    /// The cluster secret file every node of this test reads.
    secret: tempfile::NamedTempFile,
    /// TLS only (`rediss://`): the directory with `server.pem`, `server.key.pem`, `ca.pem`.
    tls: Option<PathBuf>,
}

fn find_redis() -> Option<PathBuf> {
    let fixed = PathBuf::from(REDIS_SERVER);
    if fixed.exists() {
        return Some(fixed);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("redis-server"))
            .find(|p| p.exists())
    })
}

/// Whether `redis-server` is installed here.
pub fn available() -> bool {
    find_redis().is_some()
}

impl Redis {
    /// Starts a Redis of its own, or None (after saying why) when there is no
    /// `redis-server` here.
    pub async fn start() -> Option<Redis> {
        Self::start_with(None).await
    }

    /// A Redis that speaks TLS only, with the certificate and key in `dir` (as
    /// `certs::DevCerts` writes them), for `rediss://`.
    pub async fn start_tls(dir: &std::path::Path) -> Option<Redis> {
        Self::start_with(Some(dir.to_path_buf())).await
    }

    /// A Redis of its own on a fixed `port` (a documented recipe's), which must be free:
    /// a Redis already there would be used instead of this one without a word.
    pub async fn start_on(port: u16) -> Option<Redis> {
        Self::start_at(None, Some(port)).await
    }

    async fn start_with(tls: Option<PathBuf>) -> Option<Redis> {
        Self::start_at(tls, None).await
    }

    async fn start_at(tls: Option<PathBuf>, fixed: Option<u16>) -> Option<Redis> {
        let Some(bin) = find_redis() else {
            if std::env::var("P2P_TEST_REQUIRE_REDIS").as_deref() == Ok("1") {
                panic!("redis-server is required (P2P_TEST_REQUIRE_REDIS=1) but not installed");
            }
            eprintln!("SKIPPED: redis-server is not installed (apt-get install redis-server)");
            return None;
        };
        let port = match fixed {
            Some(port) => {
                if let Err(e) = TcpListener::bind(("127.0.0.1", port)) {
                    panic!(
                        "port {port} for redis-server is not free here ({e}): stop what holds it"
                    );
                }
                port
            }
            None => TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port(),
        };
        let mut secret = tempfile::NamedTempFile::new().expect("a secret file");
        // 32 bytes or more, in a file only its owner reads: a secret the relay takes
        // without a warning.
        std::io::Write::write_all(&mut secret, b"cluster-test-secret-of-32-bytes-or-more\n")
            .expect("secret");
        let mut redis = Redis {
            child: None,
            port,
            bin,
            secret,
            tls,
        };
        redis.run().await;
        Some(redis)
    }

    async fn run(&mut self) {
        let port = self.port.to_string();
        let mut command = Command::new(&self.bin);
        match &self.tls {
            None => command.args(["--port", &port]),
            Some(dir) => command.args([
                "--port".as_ref(),
                "0".as_ref(),
                "--tls-port".as_ref(),
                port.as_ref(),
                "--tls-cert-file".as_ref(),
                dir.join("server.pem").as_os_str(),
                "--tls-key-file".as_ref(),
                dir.join("server.key.pem").as_os_str(),
                "--tls-ca-cert-file".as_ref(),
                dir.join("ca.pem").as_os_str(),
                "--tls-auth-clients".as_ref(),
                "no".as_ref(),
            ] as [&std::ffi::OsStr; 12]),
        };
        let child = command
            .args([
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let ready = match self.tls {
                None => ping(self.addr()).await,
                Some(_) => tokio::net::TcpStream::connect(self.addr()).await.is_ok(),
            };
            if ready {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "redis-server did not answer on port {} within 10 s",
            self.port
        );
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn url(&self) -> String {
        match self.tls {
            None => format!("redis://127.0.0.1:{}", self.port),
            Some(_) => format!("rediss://127.0.0.1:{}", self.port),
        }
    }

    pub fn secret_file(&self) -> String {
        self.secret.path().display().to_string()
    }

    /// The flags of a node of this cluster (lease in milliseconds).
    pub fn node_flags(&self, lease_ms: u64) -> Vec<String> {
        vec![
            "--cluster".into(),
            self.url(),
            "--cluster-secret-file".into(),
            self.secret_file(),
            "--cluster-lease-ms".into(),
            lease_ms.to_string(),
        ]
    }

    /// Stops Redis (SIGKILL: it loses everything, as with `--save ''` it would anyway).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, empty.
    pub async fn restart(&mut self) {
        self.stop();
        self.run().await;
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One PING over a plain TCP connection, bounded.
async fn ping(addr: SocketAddr) -> bool {
    let attempt = async {
        let mut tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
        tcp.write_all(b"PING\r\n").await.ok()?;
        let mut buf = [0u8; 7];
        tcp.read_exact(&mut buf).await.ok()?;
        Some(&buf == b"+PONG\r\n")
    };
    matches!(
        tokio::time::timeout(Duration::from_millis(500), attempt).await,
        Ok(Some(true))
    )
}

/// Logs of the relays in this process, when `RUST_LOG` asks for them (for a failing test).
pub fn logs() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}
