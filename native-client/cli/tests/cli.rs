//! The `p2p-relay-client` command line, run as a process: argument checks and the errors
//! it gives before (or without) reaching any relay. Its transfers through the real relay
//! are tested in the workspace's tests/e2e/quic_cli.rs, which finds this binary next to the
//! relay's.

use std::process::Output;
use std::time::Duration;

use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_p2p-relay-client");

/// A loopback address where nothing is expected to answer; these commands must fail
/// before they would send anything to it.
const NOWHERE: &str = "127.0.0.1:9";

fn command() -> Command {
    let mut command = Command::new(BIN);
    command.env_remove("RUST_LOG").kill_on_drop(true);
    for var in ["RELAY", "SERVER_NAME", "CA", "PIN"] {
        command.env_remove(format!("P2P_RELAY_CLIENT_{var}"));
    }
    command.env_remove("P2P_RELAY_TOKEN");
    command
}

async fn run(command: &mut Command) -> Output {
    tokio::time::timeout(Duration::from_secs(20), command.output())
        .await
        .expect("the command did not finish in time")
        .expect("the command runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn help_names_every_verb() {
    let out = run(command().arg("--help")).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let help = String::from_utf8_lossy(&out.stdout);
    for verb in [
        "list",
        "recv",
        "send",
        "--relay",
        "--ca",
        "--pin",
        "--system-roots",
        "--token",
        "P2P_RELAY_TOKEN",
    ] {
        assert!(help.contains(verb), "{verb} missing from:\n{help}");
    }
}

#[tokio::test]
async fn bad_arguments_are_usage_errors() {
    for args in [
        // No files to send.
        &["send", "--as", "a", "--to", "b"][..],
        // No receiver.
        &["send", "--as", "a", "f"],
        // Two ways of trusting at once.
        &["list", "--ca", "ca.pem", "--pin", "ab"],
        &["list", "--pin", "ab", "--system-roots"],
        // Not an address.
        &["list", "--relay", "localhost"],
        &["frobnicate"],
    ] {
        let out = run(command().args(args)).await;
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).starts_with("error: "),
            "{args:?}: {}",
            stderr(&out)
        );
    }
}

#[tokio::test]
async fn a_missing_file_is_reported_before_connecting() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(command()
        .args(["--relay", NOWHERE, "send", "--as", "a", "--to", "b"])
        .arg(dir.path().join("missing")))
    .await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("error: cannot read"),
        "{}",
        stderr(&out)
    );

    let out = run(command()
        .args(["--relay", NOWHERE, "send", "--as", "a", "--to", "b"])
        .arg(dir.path()))
    .await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("is not a regular file"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn trust_problems_name_the_fix() {
    // No development CA where the default looks for it.
    let home = tempfile::tempdir().unwrap();
    let out = run(command()
        .env("XDG_DATA_HOME", home.path())
        .args(["--relay", NOWHERE, "list"]))
    .await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no development CA found: start the relay once"),
        "{}",
        stderr(&out)
    );
    // Looked for where the relay puts it: under $XDG_DATA_HOME.
    let expected = home.path().join("p2p-relay");
    assert!(
        stderr(&out).contains(&*expected.to_string_lossy()),
        "{}",
        stderr(&out)
    );

    // A pin that is not a SHA-256.
    let out = run(command().args(["--relay", NOWHERE, "--pin", "abc", "list"])).await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("it has 3 hex digits (a SHA-256 has 64)"),
        "{}",
        stderr(&out)
    );
}
