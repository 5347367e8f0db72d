//! The `p2p-relay-client` binary against the in-process stand-in relay (tests/support).

mod support;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use sha2::{Digest, Sha256};
use support::{AnyRelay, MockRelay};
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_p2p-relay-client");

fn cli(relay: &AnyRelay) -> Command {
    let mut command = Command::new(BIN);
    command
        .arg("--relay")
        .arg(relay.addr().to_string())
        .arg("--ca")
        .arg(relay.ca())
        .kill_on_drop(true);
    command
}

async fn finish(command: &mut Command) -> Output {
    tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .expect("the command did not finish in time")
        .expect("the command runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn sha256(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

#[tokio::test]
async fn send_and_receive_files() {
    let relay = AnyRelay::start().await;
    let from = tempfile::tempdir().unwrap();
    let to = tempfile::tempdir().unwrap();
    let files = [
        (
            "big.bin",
            (0..3_000_000u32)
                .map(|i| (i * 7) as u8)
                .collect::<Vec<u8>>(),
        ),
        ("empty.txt", Vec::new()),
        ("small.txt", b"hello\n".to_vec()),
    ];
    for (name, data) in &files {
        std::fs::write(from.path().join(name), data).unwrap();
    }
    // A file already there keeps its content; the new one gets another name.
    std::fs::write(to.path().join("small.txt"), b"older").unwrap();

    let receiver = cli(&relay)
        .args(["recv", "--as", "bob", "--count", "3", "--out"])
        .arg(to.path())
        .output();
    let receiver = tokio::spawn(receiver);
    // The sender waits for the receiver to connect.
    let sender = finish(
        cli(&relay)
            .args(["send", "--as", "alice", "--to", "bob"])
            .args(files.iter().map(|(name, _)| from.path().join(name))),
    )
    .await;
    let receiver = tokio::time::timeout(Duration::from_secs(60), receiver)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let (sent, received) = (text(&sender.stdout), text(&receiver.stdout));
    assert!(sender.status.success(), "{sent}\n{}", text(&sender.stderr));
    assert!(
        receiver.status.success(),
        "{received}\n{}",
        text(&receiver.stderr)
    );

    for (name, data) in &files {
        let saved = if *name == "small.txt" {
            to.path().join("small-1.txt")
        } else {
            to.path().join(name)
        };
        assert_eq!(&std::fs::read(&saved).unwrap(), data, "{name}");
        let digest = sha256(&saved);
        assert!(
            sent.contains(&format!("sent {name}: {} bytes", data.len())),
            "{sent}"
        );
        assert!(sent.contains(&digest), "{sent}");
        assert!(received.contains(&digest), "{received}");
    }
    assert_eq!(
        std::fs::read(to.path().join("small.txt")).unwrap(),
        b"older"
    );
    // No temporary files left behind.
    let leftovers: Vec<_> = std::fs::read_dir(to.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".part"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test]
async fn sending_to_an_absent_peer_fails_clearly() {
    let relay = AnyRelay::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f");
    std::fs::write(&file, b"x").unwrap();
    let out = finish(
        cli(&relay)
            .args(["send", "--as", "alice", "--to", "nobody", "--wait", "1"])
            .arg(&file),
    )
    .await;
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("error: 'nobody' is not connected to the relay (waited 1 s)"),
        "{stderr}"
    );

    let out = finish(
        cli(&relay)
            .args(["send", "--as", "alice", "--to", "b"])
            .arg(dir.path().join("missing")),
    )
    .await;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("error: cannot read"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test]
async fn list_prints_the_other_clients() {
    let relay = AnyRelay::start().await;
    let (_c, _c_in) = native_client::Client::connect(relay.options("carol"))
        .await
        .unwrap();
    let out = finish(cli(&relay).arg("list")).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "carol\n");
}

#[tokio::test]
async fn trust_errors_name_the_fix() {
    let relay = AnyRelay::start().await;
    let other = MockRelay::start().await;
    let out = finish(
        Command::new(BIN)
            .args([
                "--relay",
                &relay.addr().to_string(),
                "--pin",
                &other.ca_fingerprint,
            ])
            .arg("list"),
    )
    .await;
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("server certificate fingerprint mismatch"),
        "{stderr}"
    );

    // The default CA location, when there is none.
    let home = tempfile::tempdir().unwrap();
    let out = finish(Command::new(BIN).env("XDG_DATA_HOME", home.path()).args([
        "--relay",
        &relay.addr().to_string(),
        "list",
    ]))
    .await;
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("no development CA found: start the relay once"),
        "{stderr}"
    );
}
