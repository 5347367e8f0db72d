//! The configuration's four layers on the real binary, whose environment a test can set:
//! default < file < environment < flag, refusals naming the file, key and reason, and
//! `p2p-relay config` reporting where each value came from with secrets masked.

use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Output, Stdio};

/// Runs the binary with `args` and `env` (and no inherited `P2P_RELAY_` variables).
fn relay(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_p2p-relay"));
    cmd.args(args).stdin(Stdio::null());
    for (name, _) in std::env::vars() {
        if name.starts_with("P2P_RELAY_") {
            cmd.env_remove(name);
        }
    }
    cmd.envs(env.iter().copied());
    cmd.output().expect("the relay binary runs")
}

fn config_file(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::Builder::new()
        .suffix(".toml")
        .tempfile()
        .expect("a temporary file");
    file.write_all(text.as_bytes())
        .expect("write the config file");
    file
}

/// `p2p-relay config` as key -> (value, source).
fn report(output: &Output) -> HashMap<String, (String, String)> {
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| !line.starts_with('#'))
        .map(|line| {
            let (setting, source) = line.split_once("  # ").expect("a source comment");
            let (key, value) = setting.split_once(" = ").expect("key = value");
            (
                key.trim().to_owned(),
                (value.trim().to_owned(), source.trim().to_owned()),
            )
        })
        .collect()
}

#[test]
fn file_then_environment_then_flag() {
    let file = config_file(
        "# four settings, three of them overridden below\n\
         ack_timeout_ms = 1000\n\
         max_pending = 2000\n\
         max_streams = 3000\n\
         max_clients = 4000\n",
    );
    let path = file.path().to_str().unwrap();
    let output = relay(
        &["config", "--max-clients", "4"],
        &[
            ("P2P_RELAY_CONFIG", path),
            ("P2P_RELAY_MAX_STREAMS", "3"),
            ("P2P_RELAY_MAX_CLIENTS", "40"),
        ],
    );
    let report = report(&output);
    let at = |key: &str| report.get(key).cloned().unwrap_or_else(|| panic!("{key}"));
    assert_eq!(at("outbox_messages"), ("1024".into(), "default".into()));
    assert_eq!(
        at("ack_timeout_ms"),
        ("1000".into(), format!("file {path}:2"))
    );
    assert_eq!(at("max_pending"), ("2000".into(), format!("file {path}:3")));
    assert_eq!(
        at("max_streams"),
        ("3".into(), "env P2P_RELAY_MAX_STREAMS".into())
    );
    assert_eq!(at("max_clients"), ("4".into(), "flag --max-clients".into()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains(&format!("# config file: {path} (env P2P_RELAY_CONFIG)")),
        "{stdout}"
    );
}

#[test]
fn secrets_are_masked_whatever_their_layer() {
    let file = config_file("admin_token = \"from-the-file\"\n");
    let path = file.path().to_str().unwrap();
    let output = relay(&["config", "--config", path], &[]);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let report = report(&output);
    assert_eq!(
        report["admin_token"],
        ("\"********\"".into(), format!("file {path}:1"))
    );
    assert!(!stdout.contains("from-the-file"), "{stdout}");

    let output = relay(&["config"], &[("P2P_RELAY_ADMIN_TOKEN", "from-the-env")]);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(!stdout.contains("from-the-env"), "{stdout}");
    assert_eq!(
        report_line(&stdout, "admin_token"),
        "admin_token = \"********\"  # env P2P_RELAY_ADMIN_TOKEN"
    );
    // Unset settings are listed, commented out.
    assert!(stdout.contains("# admin_token_file ="), "{stdout}");
}

fn report_line(stdout: &str, key: &str) -> String {
    let line = stdout
        .lines()
        .find(|l| l.starts_with(&format!("{key} =")))
        .unwrap_or_else(|| panic!("no {key} in {stdout}"));
    let (setting, source) = line.split_once("  # ").unwrap();
    format!("{}  # {}", setting.trim_end(), source)
}

/// A refused configuration: exit code 2, one line on stderr, nothing on stdout.
fn refused(output: &Output) -> String {
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(output.stdout.is_empty(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    stderr
}

#[test]
fn an_unknown_key_stops_the_relay_naming_file_line_and_key() {
    let file = config_file("max_clients = 10\nmax_client = 10\n");
    let path = file.path().to_str().unwrap();
    let stderr = refused(&relay(&["--config", path], &[]));
    assert!(
        stderr.contains(&format!("{path}:2: unknown key 'max_client'")),
        "{stderr}"
    );
    assert!(stderr.contains("did you mean 'max_clients'?"), "{stderr}");
}

#[test]
fn a_bad_value_stops_the_relay_naming_file_line_key_and_reason() {
    let file = config_file("\nsocketio_listen = \"localhost\"\n");
    let path = file.path().to_str().unwrap();
    let stderr = refused(&relay(&["--config", path], &[]));
    assert!(
        stderr.contains(&format!(
            "{path}:2: key 'socketio_listen': invalid value 'localhost': invalid socket address syntax"
        )),
        "{stderr}"
    );
    let stderr = refused(&relay(&["config"], &[("P2P_RELAY_MAX_STREAMS", "many")]));
    assert!(
        stderr.contains(
            "environment variable P2P_RELAY_MAX_STREAMS: invalid value 'many': invalid digit found in string"
        ),
        "{stderr}"
    );
}

#[test]
fn a_missing_file_stops_the_relay_naming_it() {
    let stderr = refused(&relay(&["--config", "/nonexistent/p2p-relay.toml"], &[]));
    assert!(
        stderr.contains("cannot read the config file /nonexistent/p2p-relay.toml"),
        "{stderr}"
    );
}
