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
    // A refused configuration (issue 16: it was 1, as for a relay that cannot start).
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(output.stdout.is_empty(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("0.0.0.0:0"), "{stderr}");
    assert!(stderr.contains("--admin-token-file"), "{stderr}");
}

/// A port already taken, for each listener in turn: the relay exits 1 (it cannot start)
/// with one line on stderr that names the flag moving that listener, and nothing on
/// stdout (no listener was announced). The development certificates exist already, so
/// that their creation is not logged.
#[tokio::test]
async fn a_port_in_use_names_the_flag_to_change_for_every_listener() {
    let dir = tempfile::tempdir().unwrap();
    certs::DevCerts::load_or_create(dir.path()).unwrap();
    for flag in ["--socketio-listen", "--quic-listen", "--admin-listen"] {
        // Held for the whole run: TCP for the HTTP listeners, UDP for QUIC.
        let (_tcp, _udp, taken) = if flag == "--quic-listen" {
            let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            let addr = udp.local_addr().unwrap();
            (None, Some(udp), addr)
        } else {
            let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = tcp.local_addr().unwrap();
            (Some(tcp), None, addr)
        };
        let taken = taken.to_string();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_p2p-relay"));
        for listener in ["--socketio-listen", "--quic-listen", "--admin-listen"] {
            let addr = if listener == flag {
                &taken
            } else {
                "127.0.0.1:0"
            };
            cmd.args([listener, addr]);
        }
        let output = within(
            "the relay refusing to start",
            cmd.arg("--data-dir")
                .arg(dir.path())
                .env_remove("RUST_LOG")
                .env("RUST_BACKTRACE", "1")
                .stdin(Stdio::null())
                .kill_on_drop(true)
                .output(),
        )
        .await
        .expect("run the relay");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{flag}: {output:?}");
        assert!(output.stdout.is_empty(), "{flag}: {output:?}");
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{flag}: one line: {stderr}");
        assert!(
            lines[0].contains(&format!(
                "{taken}: it is already in use (set {flag} to another address)"
            )),
            "{flag}: {stderr}"
        );
    }
}

/// The admin port is bound before the front ends start and before a cluster node joins:
/// a taken admin port is what stops the relay, not whatever comes later (here a Redis that
/// does not answer, which the relay would otherwise try to reach first).
#[tokio::test]
async fn a_taken_admin_port_stops_the_relay_before_it_joins_a_cluster() {
    let dir = tempfile::tempdir().unwrap();
    certs::DevCerts::load_or_create(dir.path()).unwrap();
    let secret = dir.path().join("cluster-secret");
    std::fs::write(&secret, "a cluster secret long enough for any check\n").unwrap();
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    // Nothing listens on port 1: a node that tried to join would fail on Redis instead.
    let output = within(
        "the relay refusing to start",
        relay(
            dir.path(),
            &["--admin-listen", &addr, "--cluster", "redis://127.0.0.1:1"],
        )
        .arg("--cluster-secret-file")
        .arg(&secret)
        .output(),
    )
    .await
    .expect("run the relay");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.contains(&format!(
            "{addr}: it is already in use (set --admin-listen to another address)"
        )),
        "{stderr}"
    );
    drop(taken);
}

/// Runs the relay with `extra` flags to its refusal and returns its stderr, checking the
/// contract of a refused configuration: exit 2, nothing on stdout (nothing was started),
/// one line on stderr, no cause said twice.
async fn refused_with(dir: &std::path::Path, extra: &[&str]) -> String {
    let output = within(
        "the relay refusing its configuration",
        relay(dir, extra).env("RUST_BACKTRACE", "1").output(),
    )
    .await
    .expect("run the relay");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(2), "{extra:?}: {output:?}");
    assert!(output.stdout.is_empty(), "{extra:?}: {output:?}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{extra:?}: one line: {stderr}");
    assert!(
        stderr.matches("(os error").count() <= 1,
        "{extra:?}: {stderr}"
    );
    assert!(!stderr.to_lowercase().contains("backtrace"), "{stderr}");
    stderr
}

fn secret_file(dir: &std::path::Path, name: &str, text: &str, mode: u32) -> String {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path.to_str().unwrap().to_owned()
}

/// Issue 16: each setting the relay refuses stops it with exit 2 (as the README says)
/// and one line naming the cause, whichever part of the relay checks it.
#[tokio::test]
async fn every_refused_configuration_exits_2_with_one_line_naming_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    certs::DevCerts::load_or_create(dir.path()).unwrap();
    let d = dir.path();
    let missing = d.join("missing").to_str().unwrap().to_owned();
    let empty = secret_file(d, "empty", "\n", 0o600);
    let short = secret_file(d, "short", "abc\n", 0o600);
    let good = secret_file(d, "good", &format!("{}\n", "s".repeat(40)), 0o600);
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (
            vec!["--auth", "token", "--auth-secret-file", &missing],
            vec!["cannot read the auth secret file", &missing],
        ),
        (
            vec!["--auth", "token", "--auth-secret-file", &empty],
            vec!["is empty", &empty],
        ),
        (
            vec!["--auth", "token", "--auth-secret-file", &short],
            vec!["3 bytes, fewer than 16", &short],
        ),
        (
            vec!["--auth", "url", "--auth-url", "ftp://example.invalid/admit"],
            vec!["--auth-url ftp://example.invalid/admit"],
        ),
        (
            vec!["--cluster", "redis://127.0.0.1:1"],
            vec!["--cluster needs --cluster-secret-file"],
        ),
        (
            vec![
                "--cluster",
                "redis://127.0.0.1:1",
                "--cluster-secret-file",
                &missing,
            ],
            vec!["cannot read the cluster secret", &missing],
        ),
        (
            vec![
                "--cluster",
                "redis://127.0.0.1:1",
                "--cluster-secret-file",
                &short,
            ],
            vec!["cluster secret", "3 bytes, fewer than 16"],
        ),
        (
            vec!["--admin-listen", "0.0.0.0:0"],
            vec!["0.0.0.0:0", "--admin-token-file"],
        ),
        (
            vec!["--admin-token", "short"],
            vec!["admin token", "5 characters"],
        ),
        (
            vec!["--tls-cert", &missing, "--tls-key", &good],
            vec!["cannot read the certificate file", &missing],
        ),
        (
            vec!["--tls-cert", &good, "--tls-key", &good],
            vec![&good, "certificate"],
        ),
    ];
    for (flags, says) in &cases {
        let stderr = refused_with(d, flags).await;
        for part in says {
            assert!(stderr.contains(part), "{flags:?}: {part:?} in {stderr}");
        }
    }
}

/// Issue 16: a secret file every user can read, or a secret shorter than HS256's 32 bytes,
/// is taken with a warning that says what to do; a secret file of mode 600 and 32 bytes
/// or more is taken without a word.
#[tokio::test]
async fn weak_secret_files_are_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    certs::DevCerts::load_or_create(dir.path()).unwrap();
    let d = dir.path();
    let open = secret_file(d, "open", &"o".repeat(40), 0o644);
    let shortish = secret_file(d, "shortish", &"s".repeat(20), 0o600);
    let fine = secret_file(d, "fine", &"f".repeat(40), 0o600);
    for (file, warned) in [
        (&open, Some(format!("chmod 600 {open}"))),
        (&shortish, Some("has 20 bytes; use at least 32".to_owned())),
        (&fine, None),
    ] {
        let mut child = relay(d, &["--auth", "token", "--auth-secret-file", file])
            .spawn()
            .expect("spawn the relay");
        listening_lines(&mut child).await;
        let (code, stderr) = interrupt(child).await;
        assert_eq!(code, Some(0), "{stderr}");
        let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains("WARN")).collect();
        match warned {
            Some(text) => {
                assert_eq!(warnings.len(), 1, "{file}: {stderr}");
                assert!(warnings[0].contains(&text), "{file}: {stderr}");
                assert!(warnings[0].contains(file.as_str()), "{file}: {stderr}");
            }
            None => assert!(warnings.is_empty(), "{file}: {stderr}"),
        }
    }
}

/// `p2p-relay token` reads the same secret file with the same rules: a missing or short
/// one is a refused configuration too (exit 2, one `error:` line, each cause once).
#[tokio::test]
async fn the_token_command_refuses_a_missing_or_short_secret_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let short = secret_file(dir.path(), "short", "abc\n", 0o600);
    let missing = dir.path().join("missing").to_str().unwrap().to_owned();
    for (file, says) in [(&short, "fewer than 16"), (&missing, "cannot read")] {
        let output = within(
            "the token command",
            Command::new(env!("CARGO_BIN_EXE_p2p-relay"))
                .args(["token", "--sub", "A", "--auth-secret-file", file])
                .env_remove("RUST_LOG")
                .stdin(Stdio::null())
                .output(),
        )
        .await
        .expect("run the token command");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{file}: {output:?}");
        assert!(output.stdout.is_empty(), "{file}: {output:?}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with("error: ") && stderr.contains(says),
            "{stderr}"
        );
        assert!(stderr.matches("(os error").count() <= 1, "{stderr}");
    }
}
