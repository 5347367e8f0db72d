//! The real binaries: the `p2p-relay` binary as a child process (a smoke test of pairing,
//! an emit with ack and a stream), and the native client's `p2p-relay-client` command
//! sending files through it.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use common::{next, open_stream, random_bytes, read_to_eof, sha256_hex, within, Relay};
use native_client::rmpv::Value;
use native_client::{Args, ClientEvent};
use tokio::process::Command;

/// The `p2p-relay-client` binary of this build. It belongs to the p2p-relay-client-cli
/// package (native-client/cli), so Cargo gives no `CARGO_BIN_EXE_` for it here; it is built
/// next to the relay binary whenever that package's own integration tests are built
/// (`cargo test --workspace`).
fn client_bin() -> PathBuf {
    let name = format!("p2p-relay-client{}", std::env::consts::EXE_SUFFIX);
    let bin = Path::new(env!("CARGO_BIN_EXE_p2p-relay")).with_file_name(name);
    assert!(
        bin.is_file(),
        "{} is missing: build it with the relay, e.g. `cargo test --workspace --release` (or \
         `cargo build --release -p p2p-relay-client-cli`) before running this test",
        bin.display()
    );
    bin
}

fn cli(relay: &Relay) -> Command {
    let mut command = Command::new(client_bin());
    command
        .arg("--relay")
        .arg(relay.addr().to_string())
        .arg("--ca")
        .arg(relay.ca())
        .env_remove("RUST_LOG")
        .kill_on_drop(true);
    for var in ["RELAY", "SERVER_NAME", "CA", "PIN"] {
        command.env_remove(format!("P2P_RELAY_CLIENT_{var}"));
    }
    command.env_remove("P2P_RELAY_TOKEN");
    command
}

async fn finish(command: &mut Command) -> Output {
    tokio::time::timeout(Duration::from_secs(30), command.output())
        .await
        .expect("the command did not finish in time")
        .expect("the command runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_binary_pairs_acks_and_streams() {
    let relay = Relay::start_binary(&[]).await;
    let (a, _a_in, b, mut b_in) = relay.paired("A", "B").await;
    assert_eq!(a.list_clients().await.unwrap(), vec!["A", "B"]);

    // An emit with ack, binary arguments both ways.
    let question = Args::new()
        .with("q")
        .with(Value::Binary(random_bytes(1, 50_000)))
        .with(Value::Map(vec![(Value::from("n"), Value::from(-1))]));
    let answer = Args::new()
        .with(Value::Binary(random_bytes(2, 30_000)))
        .with(42)
        .with(Value::Nil);
    let asking = tokio::spawn({
        let (a, question) = (a.clone(), question.clone());
        async move { a.emit_with_ack("ask", question).await }
    });
    match next(&mut b_in).await {
        ClientEvent::Event {
            event,
            args,
            ack: Some(ack),
        } => {
            assert_eq!(event, "ask");
            assert_eq!(args.encode(), question.encode());
            ack.send(answer.clone()).unwrap();
        }
        other => panic!("{other:?}"),
    }
    let reply = within("the ack", asking).await.unwrap().unwrap();
    assert_eq!(reply.encode(), answer.encode());

    // One stream, 2 MiB each way at once, byte-exact.
    let (mine, theirs) = open_stream(&a, &mut b_in).await;
    let up = random_bytes(3, 2 << 20);
    let down = random_bytes(4, 2 << 20);
    let (up_sha, down_sha) = (sha256_hex(&up), sha256_hex(&down));
    let side = |stream: native_client::P2pStream, data: Vec<u8>| async move {
        let (read, write) = stream.split();
        let (sent, got) = tokio::join!(common::write_and_finish(write, &data), read_to_eof(read));
        sent.unwrap();
        got.unwrap()
    };
    let (a_got, b_got) = within("the stream", async {
        tokio::join!(side(mine, up), side(theirs, down))
    })
    .await;
    assert_eq!(b_got, (2 << 20, up_sha));
    assert_eq!(a_got, (2 << 20, down_sha));

    // The end of the pairing reaches both.
    within("unregister", a.unregister()).await.unwrap();
    assert!(matches!(next(&mut b_in).await, ClientEvent::Unregistered));
    assert_eq!(b.target(), None);
}

/// Lines of `output` that end with a SHA-256 (`..., sha256 HEX`), as HEX.
fn digests(output: &str, prefix: &str) -> Vec<String> {
    let mut found: Vec<String> = output
        .lines()
        .filter(|line| line.starts_with(prefix))
        .filter_map(|line| {
            line.rsplit_once("sha256 ")
                .map(|(_, hex)| hex.trim().to_string())
        })
        .collect();
    found.sort();
    found
}

#[tokio::test]
async fn the_cli_sends_files_through_the_relay_binary() {
    let relay = Relay::start_binary(&[]).await;
    let from = tempfile::tempdir().unwrap();
    let to = tempfile::tempdir().unwrap();
    let files = [
        ("f1.bin", random_bytes(11, 3 * 1024 * 1024 + 17)),
        ("f2.bin", random_bytes(12, 2 * 1024 * 1024 + 5)),
    ];
    for (name, data) in &files {
        std::fs::write(from.path().join(name), data).unwrap();
    }
    let mut expected: Vec<String> = files.iter().map(|(_, data)| sha256_hex(data)).collect();
    expected.sort();

    let receiver = tokio::spawn(
        cli(&relay)
            .args(["recv", "--as", "B", "--count", "2", "--out"])
            .arg(to.path())
            .output(),
    );
    // The sender waits (up to 10 s) for the receiver to connect.
    let sender = finish(
        cli(&relay)
            .args(["send", "--as", "A", "--to", "B"])
            .args(files.iter().map(|(name, _)| from.path().join(name))),
    )
    .await;
    let receiver = tokio::time::timeout(Duration::from_secs(30), receiver)
        .await
        .expect("the receiver did not finish in time")
        .unwrap()
        .unwrap();
    let (sent, received) = (text(&sender.stdout), text(&receiver.stdout));
    assert!(
        sender.status.success(),
        "send failed:\n{sent}\n{}",
        text(&sender.stderr)
    );
    assert!(
        receiver.status.success(),
        "recv failed:\n{received}\n{}",
        text(&receiver.stderr)
    );

    // Both print the same SHA-256s, those of the files.
    assert_eq!(digests(&sent, "sent "), expected, "{sent}");
    assert_eq!(digests(&received, "received "), expected, "{received}");
    for (name, data) in &files {
        assert!(
            sent.contains(&format!("sent {name}: {} bytes", data.len())),
            "{sent}"
        );
        let saved = std::fs::read(to.path().join(name)).unwrap();
        assert!(saved == *data, "{name} differs from what was sent");
    }
    // Nothing else was left in the output directory (no temporary files).
    let mut names: Vec<String> = std::fs::read_dir(to.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, vec!["f1.bin", "f2.bin"]);
}

#[tokio::test]
async fn the_cli_lists_and_fails_clearly() {
    // Pages of two ids: the listings below take two pages each.
    let relay = Relay::start(&["--list-page", "2"]).await;
    let (_c, _c_in) = relay.connect("carol").await;
    let out = finish(cli(&relay).args(["list", "--as", "lister"])).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "carol\n");

    // A receiver that never comes.
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

    // A receiver that is paired with someone else.
    let (_d, _d_in, _e, _e_in) = relay.paired("dave", "erin").await;
    let out = finish(
        cli(&relay)
            .args(["send", "--as", "alice", "--to", "erin", "--wait", "1"])
            .arg(&file),
    )
    .await;
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("'erin' refused to pair (it is paired with another client)"),
        "{stderr}"
    );

    // The wrong pin names the check that failed.
    let other = tempfile::tempdir().unwrap();
    let other = certs::DevCerts::load_or_create(other.path()).unwrap();
    let out = finish(
        Command::new(client_bin())
            .args(["--relay", &relay.addr().to_string(), "--pin"])
            .arg(other.ca_fingerprint())
            .arg("list")
            .kill_on_drop(true),
    )
    .await;
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("server certificate fingerprint mismatch"),
        "{stderr}"
    );
    // The right pin works.
    let out = finish(
        Command::new(client_bin())
            .args(["--relay", &relay.addr().to_string(), "--pin"])
            .arg(relay.fingerprint())
            .args(["list", "--as", "pinned"])
            .kill_on_drop(true),
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "carol\ndave\nerin\n");
    relay.shutdown().await;
}

/// A token minted by the relay binary's `token` subcommand.
async fn mint_with_binary(secret: &Path, sub: &str) -> String {
    let out = finish(
        Command::new(env!("CARGO_BIN_EXE_p2p-relay"))
            .args(["token", "--auth-secret-file"])
            .arg(secret)
            .args(["--sub", sub, "--ttl", "10m"])
            .env_remove("RUST_LOG")
            .kill_on_drop(true),
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout).trim().to_string()
}

#[tokio::test]
async fn the_cli_presents_a_token_by_flag_or_environment() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "a secret for the CLI's token test\n").unwrap();
    let secret_flag = secret.display().to_string();
    let relay = Relay::start(&["--auth", "token", "--auth-secret-file", &secret_flag]).await;
    let (alice, bob) = (
        mint_with_binary(&secret, "alice").await,
        mint_with_binary(&secret, "bob").await,
    );

    // Without a token: refused, with the relay's reason and what to do.
    let out = finish(cli(&relay).args(["list", "--as", "bob"])).await;
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("pass --token TOKEN or set P2P_RELAY_TOKEN"),
        "{stderr}"
    );
    assert!(stderr.contains("no token"), "{stderr}");
    // Someone else's token does not make its bearer that someone.
    let out = finish(cli(&relay).args(["--token", &bob, "list", "--as", "alice"])).await;
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("the token was issued for clientId 'bob', not this one"),
        "{stderr}"
    );

    // bob receives with --token, alice sends with P2P_RELAY_TOKEN.
    let to = tempfile::tempdir().unwrap();
    let file = dir.path().join("note.txt");
    std::fs::write(&file, b"sent with a token").unwrap();
    let receiver = tokio::spawn(
        cli(&relay)
            .args([
                "--token", &bob, "recv", "--as", "bob", "--count", "1", "--out",
            ])
            .arg(to.path())
            .output(),
    );
    let sender = finish(
        cli(&relay)
            .env("P2P_RELAY_TOKEN", &alice)
            .args(["send", "--as", "alice", "--to", "bob"])
            .arg(&file),
    )
    .await;
    assert!(sender.status.success(), "{}", text(&sender.stderr));
    let receiver = tokio::time::timeout(Duration::from_secs(30), receiver)
        .await
        .expect("the receiver did not finish in time")
        .unwrap()
        .unwrap();
    assert!(receiver.status.success(), "{}", text(&receiver.stderr));
    assert_eq!(
        std::fs::read(to.path().join("note.txt")).unwrap(),
        b"sent with a token"
    );
    relay.shutdown().await;
}
