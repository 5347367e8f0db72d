//! Helpers of tests/e2e/cross_transport.rs: the in-process relay, the node peer child process
//! (tests/interop/cross/peer.js), the payloads and stream data both sides agree on
//! (tests/interop/cross/scenario.js builds the same), and exact value comparison.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use native_client::rmpv::Value;
use native_client::{ConnectOptions, Trust};
use p2p_relay::{Server, Settings};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::Notify;

// ------------------------------------------------------------------------------- relay

/// A relay started in this process on loopback ports, with its own data directory.
pub struct Relay {
    pub server: Option<Server>,
    pub data_dir: PathBuf,
}

impl Relay {
    pub async fn start() -> Relay {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let data_dir = std::env::temp_dir().join(format!(
            "p2p-relay-cross-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&data_dir).expect("create the relay's data directory");
        let settings = Settings::on_free_local_ports(&data_dir);
        let server = tokio::time::timeout(Duration::from_secs(20), Server::start(&settings))
            .await
            .expect("the relay did not start within 20 s")
            .expect("the relay failed to start");
        Relay {
            server: Some(server),
            data_dir,
        }
    }

    fn server(&self) -> &Server {
        self.server.as_ref().expect("relay running")
    }

    /// The Socket.IO URL, as Socket.IO clients are given it.
    pub fn socketio_url(&self) -> String {
        format!("http://{}", self.server().socketio_addr())
    }

    /// Options for a native client `id` of this relay (trusting its development CA).
    pub fn native_options(&self, id: &str) -> ConnectOptions {
        let ca = self.server().ca().expect("development certificates");
        ConnectOptions::new(id)
            .addr(self.server().quic_addr())
            .trust(Trust::CaFile(ca.path.clone()))
            .connect_timeout(Duration::from_secs(10))
            .request_timeout(Duration::from_secs(30))
    }

    pub async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), server.shutdown()).await;
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

// --------------------------------------------------------------------------- node peer

/// tests/interop, where the node peer and its packages live.
pub fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

/// Checks that node is installed and that the interop packages are (running `npm ci`
/// once if they are not). Panics with what to do otherwise.
pub fn ensure_node() {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    let ready = READY.get_or_init(|| {
        let version = std::process::Command::new("node")
            .arg("--version")
            .output()
            .map_err(|e| {
                format!("node is required for the cross-transport tests (install Node.js 20+): {e}")
            })?;
        if !version.status.success() {
            return Err(format!("`node --version` failed: {:?}", version.status));
        }
        let dir = interop_dir();
        if !dir.join("node_modules").is_dir() {
            // A fresh checkout: install the exact versions of the lock file.
            let status = std::process::Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(&dir)
                .status()
                .map_err(|e| format!("npm is required to install tests/interop's packages: {e}"))?;
            if !status.success() {
                return Err(format!("npm ci failed in {}", dir.display()));
            }
        }
        Ok(())
    });
    if let Err(message) = ready {
        panic!("{message}");
    }
}

/// Output of the node peer, kept for checks and failure messages.
#[derive(Default)]
struct Output {
    stdout: Vec<String>,
    stderr: VecDeque<String>,
    ready: bool,
    stdout_closed: bool,
}

/// The node peer child process. Killed when dropped.
pub struct NodePeer {
    child: Child,
    output: Arc<Mutex<Output>>,
    changed: Arc<Notify>,
    pub label: String,
}

/// One check the node peer reported.
#[derive(Debug, Clone)]
pub struct NodeCheck {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

const STDERR_KEEP: usize = 200;

impl NodePeer {
    /// Starts `node peer.js` with `args` (flag, value pairs).
    pub fn spawn(label: &str, args: &[(&str, String)]) -> NodePeer {
        ensure_node();
        let dir = interop_dir();
        let mut cmd = Command::new("node");
        cmd.arg(dir.join("cross/peer.js"));
        for (flag, value) in args {
            cmd.arg(format!("--{flag}")).arg(value);
        }
        cmd.current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start node {}: {e}", dir.display()));
        let output = Arc::new(Mutex::new(Output::default()));
        let changed = Arc::new(Notify::new());
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        {
            let output = output.clone();
            let changed = changed.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stdout).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let mut out = output.lock().unwrap();
                    if line.trim() == "READY" {
                        out.ready = true;
                    }
                    out.stdout.push(line);
                    drop(out);
                    changed.notify_waiters();
                }
                output.lock().unwrap().stdout_closed = true;
                changed.notify_waiters();
            });
        }
        {
            let output = output.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let mut out = output.lock().unwrap();
                    out.stderr.push_back(line);
                    if out.stderr.len() > STDERR_KEEP {
                        out.stderr.pop_front();
                    }
                }
            });
        }
        NodePeer {
            child,
            output,
            changed,
            label: label.to_owned(),
        }
    }

    /// Waits for the `READY` line.
    pub async fn wait_ready(&mut self, within: Duration) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let notified = self.changed.notified();
            {
                let out = self.output.lock().unwrap();
                if out.ready {
                    return Ok(());
                }
                if out.stdout_closed {
                    return Err("the node peer ended before printing READY".into());
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(format!(
                    "the node peer did not print READY within {}s",
                    within.as_secs()
                ));
            }
        }
    }

    /// Waits for the process to exit; kills it after `within`. Returns its exit code.
    pub async fn wait_exit(&mut self, within: Duration) -> Result<i32, String> {
        match tokio::time::timeout(within, self.child.wait()).await {
            Ok(Ok(status)) => {
                // Let the readers take the last lines.
                let _ = tokio::time::timeout(Duration::from_secs(2), async {
                    loop {
                        let notified = self.changed.notified();
                        if self.output.lock().unwrap().stdout_closed {
                            return;
                        }
                        notified.await;
                    }
                })
                .await;
                Ok(status.code().unwrap_or(-1))
            }
            Ok(Err(e)) => Err(format!("cannot wait for the node peer: {e}")),
            Err(_) => {
                let _ = self.child.start_kill();
                let _ = tokio::time::timeout(Duration::from_secs(2), self.child.wait()).await;
                Err(format!(
                    "the node peer did not exit within {}s (killed)",
                    within.as_secs()
                ))
            }
        }
    }

    pub fn kill(&mut self) {
        let _ = self.child.start_kill();
    }

    /// The checks the peer reported so far.
    pub fn checks(&self) -> Vec<NodeCheck> {
        let out = self.output.lock().unwrap();
        out.stdout.iter().filter_map(|l| parse_check(l)).collect()
    }

    /// The peer's final summary line, if it printed one.
    pub fn summary(&self) -> Option<String> {
        let out = self.output.lock().unwrap();
        out.stdout
            .iter()
            .rev()
            .find(|l| l.starts_with("{\"summary\":"))
            .cloned()
    }

    /// Everything the peer printed (stdout in full, the tail of stderr), for failures.
    pub fn transcript(&self) -> String {
        let out = self.output.lock().unwrap();
        let mut text = format!("--- node peer {} stdout ---\n", self.label);
        for line in &out.stdout {
            text.push_str(line);
            text.push('\n');
        }
        text.push_str(&format!("--- node peer {} stderr (tail) ---\n", self.label));
        for line in &out.stderr {
            text.push_str(line);
            text.push('\n');
        }
        text
    }
}

/// Reads a check line as peer.js prints it with `JSON.stringify({check, ok, detail})`:
/// `{"check":"NAME","ok":true|false,"detail":JSON}` (names are plain identifiers). The detail
/// is kept as JSON text, with `\n` escapes turned back into line breaks for reading.
fn parse_check(line: &str) -> Option<NodeCheck> {
    let rest = line.strip_prefix("{\"check\":\"")?;
    let end = rest.find('"')?;
    let name = rest[..end].to_owned();
    let rest = &rest[end + 1..];
    let (ok, rest) = if let Some(r) = rest.strip_prefix(",\"ok\":true") {
        (true, r)
    } else {
        (false, rest.strip_prefix(",\"ok\":false")?)
    };
    let detail = rest
        .strip_prefix(",\"detail\":")
        .and_then(|d| d.strip_suffix('}'))
        .unwrap_or(rest);
    let detail = match detail {
        "null" => String::new(),
        text => {
            let text = match text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
                Some(inner) => inner.replace("\\\"", "\""),
                None => text.to_owned(),
            };
            text.replace("\\n", "\n")
        }
    };
    Some(NodeCheck { name, ok, detail })
}

// -------------------------------------------------------------------- shared scenario

/// The stream seeds (tests/interop/cross/scenario.js `SEEDS`).
pub const SEED_S1_NATIVE_TO_NODE: u32 = 0x5101;
pub const SEED_S1_NODE_TO_NATIVE: u32 = 0x5102;
pub const SEED_S2_NATIVE_TO_NODE: u32 = 0x5201;
pub const SEED_S2_NODE_TO_NATIVE: u32 = 0x5202;

/// What the Socket.IO acceptor of S1 writes right after accepting (scenario.js `MARKER`).
pub const MARKER: &[u8] = b"S1: first bytes from the Socket.IO acceptor";

/// mulberry32, as in scenario.js.
pub struct Mulberry32(u32);

impl Mulberry32 {
    pub fn new(seed: u32) -> Self {
        Mulberry32(seed)
    }

    pub fn next_u32(&mut self) -> u32 {
        self.0 = self.0.wrapping_add(0x6d2b_79f5);
        let t = self.0;
        let mut r = (t ^ (t >> 15)).wrapping_mul(t | 1);
        r ^= r.wrapping_add((r ^ (r >> 7)).wrapping_mul(r | 61));
        r ^ (r >> 14)
    }
}

/// `n` pseudo-random bytes: each u32 as 4 little-endian bytes (scenario.js `mulberry32Bytes`).
pub fn stream_data(seed: u32, n: usize) -> Vec<u8> {
    let mut rng = Mulberry32::new(seed);
    let mut out = Vec::with_capacity(n + 4);
    while out.len() < n {
        out.extend_from_slice(&rng.next_u32().to_le_bytes());
    }
    out.truncate(n);
    out
}

pub fn sha256_hex(parts: &[&[u8]]) -> String {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update(part);
    }
    hex(&hash.finalize())
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn pattern(n: usize, mul: usize, add: usize) -> Value {
    Value::Binary((0..n).map(|i| ((i * mul + add) & 0xff) as u8).collect())
}

fn map(entries: Vec<(&str, Value)>) -> Value {
    Value::Map(
        entries
            .into_iter()
            .map(|(k, v)| (Value::from(k), v))
            .collect(),
    )
}

fn bin(bytes: &[u8]) -> Value {
    Value::Binary(bytes.to_vec())
}

/// scenario.js `rich(tag)`, as the values a native client sends and expects.
pub fn rich(tag: &str) -> Vec<Value> {
    vec![
        Value::from(tag),
        Value::from(42),
        Value::from(-7),
        Value::from(0),
        Value::from(9_007_199_254_740_991i64),
        Value::from(-9_007_199_254_740_991i64),
        Value::F64(1.5),
        Value::F64(-0.25),
        Value::F64(1e-300),
        Value::F64(1.5e300),
        Value::Nil,
        Value::Boolean(true),
        Value::Boolean(false),
        Value::from(""),
        Value::from("h\u{e9}llo \u{2713} \u{1f680}"),
        bin(&[0, 1, 2, 253, 254, 255]),
        map(vec![
            ("int", Value::from(3)),
            ("float", Value::F64(2.5)),
            ("str", Value::from("x")),
            ("nil", Value::Nil),
            ("yes", Value::Boolean(true)),
            ("no", Value::Boolean(false)),
            ("bin", pattern(300, 7, 1)),
            (
                "nested",
                Value::Array(vec![
                    bin(&[]),
                    map(vec![("deep", bin(&[7]))]),
                    Value::Array(vec![
                        bin(&[1, 2]),
                        Value::from("two"),
                        Value::from(2),
                        Value::F64(-2.75),
                    ]),
                ]),
            ),
            ("emptyObj", map(vec![])),
            ("emptyArr", Value::Array(vec![])),
        ]),
        Value::Array(vec![
            Value::from(1),
            Value::from("two"),
            bin(&[9, 8, 7]),
            Value::Array(vec![Value::Nil, Value::F64(-1.5), bin(&[0])]),
            map(vec![("b", bin(b"map in array"))]),
        ]),
        pattern(20000, 13, 5),
    ]
}

/// scenario.js `ackArgs(tag)`.
pub fn ack_args(tag: &str) -> Vec<Value> {
    vec![
        Value::from(tag),
        Value::from(7),
        Value::from(-1),
        Value::F64(0.5),
        Value::Nil,
        Value::Boolean(false),
        Value::Boolean(true),
        map(vec![
            ("bin", bin(&[1, 2, 3])),
            (
                "list",
                Value::Array(vec![
                    bin(&[4]),
                    Value::from("x"),
                    Value::Boolean(true),
                    Value::F64(3.75),
                    Value::Nil,
                ]),
            ),
        ]),
        Value::Array(vec![bin(&[5, 6]), Value::Array(vec![bin(&[])])]),
        pattern(1000, 3, 11),
    ]
}

// ------------------------------------------------------------------ exact comparison

/// Compares argument lists exactly: same types (integer vs float, binary vs array vs
/// string), same values (floats bit for bit), maps with the same string keys (in any
/// order, as in JavaScript objects). The error names the first difference by its path.
pub fn same_args(actual: &[Value], expected: &[Value]) -> Result<(), String> {
    same(
        &Value::Array(actual.to_vec()),
        &Value::Array(expected.to_vec()),
        "args",
    )
}

fn same(actual: &Value, expected: &Value, path: &str) -> Result<(), String> {
    let differ = || {
        Err(format!(
            "{path}: got {}, expected {}",
            describe(actual),
            describe(expected)
        ))
    };
    match (actual, expected) {
        (Value::Nil, Value::Nil) => Ok(()),
        (Value::Boolean(a), Value::Boolean(b)) if a == b => Ok(()),
        (Value::Integer(a), Value::Integer(b))
            if (a.as_i64().is_some() && a.as_i64() == b.as_i64())
                || (a.as_u64().is_some() && a.as_u64() == b.as_u64()) =>
        {
            Ok(())
        }
        (Value::F64(a), Value::F64(b)) if a.to_bits() == b.to_bits() => Ok(()),
        (Value::F32(a), Value::F32(b)) if a.to_bits() == b.to_bits() => Ok(()),
        (Value::String(a), Value::String(b)) if a.as_bytes() == b.as_bytes() => Ok(()),
        (Value::Binary(a), Value::Binary(b)) if a == b => Ok(()),
        (Value::Array(a), Value::Array(b)) => {
            if a.len() != b.len() {
                return Err(format!(
                    "{path}: an array of {} elements, expected {}: got {}, expected {}",
                    a.len(),
                    b.len(),
                    describe(actual),
                    describe(expected)
                ));
            }
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                same(x, y, &format!("{path}[{i}]"))?;
            }
            Ok(())
        }
        (Value::Map(a), Value::Map(b)) => {
            let keys = |m: &[(Value, Value)]| -> Vec<String> {
                let mut k: Vec<String> = m.iter().map(|(k, _)| describe(k)).collect();
                k.sort();
                k
            };
            if keys(a) != keys(b) {
                return Err(format!(
                    "{path}: a map with keys {:?}, expected keys {:?}",
                    keys(a),
                    keys(b)
                ));
            }
            for (k, v) in b {
                let got = a.iter().find(|(ka, _)| ka == k).map(|(_, v)| v);
                match got {
                    Some(got) => same(got, v, &format!("{path}.{}", describe(k)))?,
                    None => return Err(format!("{path}: missing key {}", describe(k))),
                }
            }
            Ok(())
        }
        _ => differ(),
    }
}

/// A short description of a value with its type, for messages.
pub fn describe(value: &Value) -> String {
    match value {
        Value::Nil => "nil".into(),
        Value::Boolean(b) => format!("bool {b}"),
        Value::Integer(i) => format!("int {i}"),
        Value::F32(f) => format!("f32 {f:?}"),
        Value::F64(f) => format!("f64 {f:?}"),
        Value::String(s) => format!("str {:?}", s.as_str().unwrap_or("<not utf-8>")),
        Value::Binary(b) => {
            let head = hex(&b[..b.len().min(16)]);
            format!(
                "bin[{}] {head}{}",
                b.len(),
                if b.len() > 16 { ".." } else { "" }
            )
        }
        Value::Array(a) => {
            let items: Vec<String> = a.iter().take(8).map(describe).collect();
            format!(
                "[{}{}]",
                items.join(", "),
                if a.len() > 8 { ", .." } else { "" }
            )
        }
        Value::Map(m) => {
            let items: Vec<String> = m
                .iter()
                .take(8)
                .map(|(k, v)| format!("{}: {}", describe(k), describe(v)))
                .collect();
            format!(
                "{{{}{}}}",
                items.join(", "),
                if m.len() > 8 { ", .." } else { "" }
            )
        }
        Value::Ext(t, d) => format!("ext {t} [{} bytes]", d.len()),
    }
}

#[test]
fn mulberry32_matches_the_javascript_generator() {
    // node -e "const s=require('./tests/interop/cross/scenario'); ..." printed these.
    let mut rng = Mulberry32::new(1);
    assert_eq!(rng.next_u32(), 2_693_262_067);
    assert_eq!(rng.next_u32(), 11_749_833);
    assert_eq!(hex(&stream_data(1, 10)), "f3ea87a0c949b300ebc4");
}

#[test]
fn check_lines_are_read() {
    let c = parse_check(r#"{"check":"s1.sha","ok":false,"detail":"a\nb"}"#).unwrap();
    assert_eq!(
        (c.name.as_str(), c.ok, c.detail.as_str()),
        ("s1.sha", false, "a\nb")
    );
    let c = parse_check(r#"{"check":"x","ok":true,"detail":null}"#).unwrap();
    assert_eq!((c.name.as_str(), c.ok, c.detail.as_str()), ("x", true, ""));
    assert!(parse_check(r#"{"info":"hello"}"#).is_none());
}

#[test]
fn comparison_is_exact_about_types() {
    assert!(same_args(&rich("a"), &rich("a")).is_ok());
    assert!(same_args(&[Value::from(2)], &[Value::F64(2.0)]).is_err());
    assert!(same_args(&[Value::from("ab")], &[bin(b"ab")]).is_err());
    assert!(same_args(&[Value::from(-1)], &[Value::from(-1i64)]).is_ok());
    let err = same_args(&rich("a"), &rich("b")).unwrap_err();
    assert!(err.starts_with("args[0]: got str \"a\""), "{err}");
}
