//! The binary as an operator meets it: its start-up lines, its logs (text without colour
//! when not on a terminal, or JSON lines), its exit codes, and a start-up error on one
//! line without a backtrace.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};

const WAIT: Duration = Duration::from_secs(10);

async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out after {WAIT:?}: {what}"))
}

/// The binary on free loopback ports with a fresh data directory, and `extra` flags.
fn relay(dir: &std::path::Path, extra: &[&str]) -> Command {
    relay_on(dir, "127.0.0.1:0", extra)
}

fn relay_on(dir: &std::path::Path, socketio: &str, extra: &[&str]) -> Command {
    let admin = if extra.contains(&"--admin-listen") {
        None
    } else {
        Some("127.0.0.1:0")
    };
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_p2p-relay"));
    cmd.args([
        "--socketio-listen",
        socketio,
        "--quic-listen",
        "127.0.0.1:0",
    ])
    .args(admin.map(|a| ["--admin-listen", a]).into_iter().flatten())
    .arg("--data-dir")
    .arg(dir)
    .args(extra)
    .env_remove("RUST_LOG")
    .env_remove("NO_COLOR")
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    cmd
}

/// Reads stdout until the admin line (the last of the listening lines).
async fn listening_lines(child: &mut Child) -> Vec<String> {
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    within("the listening lines", async {
        let mut seen = Vec::new();
        while let Some(line) = lines.next_line().await.expect("read stdout") {
            let last = line.starts_with("Admin listening on ");
            seen.push(line);
            if last {
                break;
            }
        }
        seen
    })
    .await
}

/// Sends SIGINT (what Ctrl-C sends) and returns the exit code and everything on stderr.
async fn interrupt(mut child: Child) -> (Option<i32>, String) {
    let pid = child.id().expect("a running child").to_string();
    let status = std::process::Command::new("kill")
        .args(["-s", "INT", &pid])
        .status()
        .expect("run kill");
    assert!(status.success());
    let mut stderr = String::new();
    let mut pipe = child.stderr.take().expect("piped stderr");
    within("the relay exiting", pipe.read_to_string(&mut stderr))
        .await
        .expect("read stderr");
    let status = within("the relay exiting", child.wait())
        .await
        .expect("wait");
    (status.code(), stderr)
}

#[tokio::test]
async fn start_up_facts_are_said_once_and_interrupt_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    // The development certificates exist already: their creation is a fact of its own.
    certs::DevCerts::load_or_create(dir.path()).unwrap();
    let mut child = relay(dir.path(), &[]).spawn().expect("start the relay");
    let lines = listening_lines(&mut child).await;
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(lines[0].starts_with("Socket.IO gateway listening on http://127.0.0.1:"));
    assert!(lines[1].starts_with("QUIC listening on 127.0.0.1:"));
    assert!(lines[2].starts_with("Admin listening on http://127.0.0.1:"));
    let (code, stderr) = interrupt(child).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        !stderr.contains('\x1b'),
        "no colour when not on a terminal: {stderr:?}"
    );
    let messages: Vec<&str> = stderr
        .lines()
        .map(|l| l.split_once(": ").map_or(l, |(_, message)| message))
        .collect();
    for (i, message) in messages.iter().enumerate() {
        assert!(
            !messages[..i].contains(message),
            "said twice: {message}\n{stderr}"
        );
        assert!(
            !lines
                .iter()
                .any(|l| message.contains(l.rsplit(' ').next().unwrap())),
            "a listening address repeated in the log: {message}"
        );
    }
    assert!(
        stderr.contains("Socket.IO: web pages of any origin may connect"),
        "{stderr}"
    );
    assert!(stderr.contains("QUIC: development certificate"), "{stderr}");
}

#[tokio::test]
async fn json_logs_are_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = relay(dir.path(), &["--log-format", "json"])
        .spawn()
        .expect("start the relay");
    listening_lines(&mut child).await;
    let (code, stderr) = interrupt(child).await;
    assert_eq!(code, Some(0), "{stderr}");
    let mut messages = Vec::new();
    for line in stderr.lines() {
        let object: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line:?}"));
        assert!(object["timestamp"].is_string(), "{line}");
        assert!(object["level"].is_string(), "{line}");
        messages.push(object["message"].as_str().unwrap_or_default().to_owned());
    }
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("created a development CA")),
        "{messages:?}"
    );
    assert!(
        messages.iter().any(|m| m.starts_with("interrupted")),
        "{messages:?}"
    );
}

#[tokio::test]
async fn a_port_in_use_stops_the_relay_with_one_line_and_no_backtrace() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let output = within(
        "the relay refusing to start",
        relay_on(dir.path(), &addr, &[])
            .env("RUST_BACKTRACE", "1")
            .output(),
    )
    .await
    .expect("run the relay");
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(output.stdout.is_empty(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    assert!(
        lines[0].contains(&format!("cannot listen for Socket.IO on {addr}")),
        "{stderr}"
    );
    assert!(lines[0].contains("in use"), "{stderr}");
    assert!(!stderr.to_lowercase().contains("backtrace"), "{stderr}");
    drop(taken);
}

#[tokio::test]
async fn an_admin_listener_beyond_loopback_needs_a_token_before_anything_binds() {
    let dir = tempfile::tempdir().unwrap();
    // Refused before any socket is bound: nothing listens on 0.0.0.0.
    let output = within(
        "the relay refusing its admin listener",
        relay(dir.path(), &["--admin-listen", "0.0.0.0:0"]).output(),
    )
    .await
    .expect("run the relay");
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(output.stdout.is_empty(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("0.0.0.0:0"), "{stderr}");
    assert!(stderr.contains("--admin-token-file"), "{stderr}");
}
