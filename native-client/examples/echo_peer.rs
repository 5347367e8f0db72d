//! A scripted native peer: the QUIC side of the browser tests (tests/interop/browser), and a
//! small example of the library. It connects, accepts whoever pairs with it and every stream,
//! and then does what its peer asks:
//!
//! | event from the peer            | what it does                                                      |
//! |--------------------------------|-------------------------------------------------------------------|
//! | `ping(...args)`                | emits `echo:ping(...args)` back, arguments unchanged              |
//! | `ask(...args, ack)`            | acks with the same arguments                                      |
//! | `peer:ask(event, [args], ack)` | asks the peer `event(...args)` with an ack, acks with its answer |
//! | `peer:list(ack)`               | acks with the relay's client list                                 |
//! | `peer:stream(size, ack)`       | opens a stream, writes `size` pseudo-random bytes, acks `[sha256]` |
//! | `peer:unregister(ack)`         | acks, then ends the pairing                                       |
//! | any other event                | acks with no arguments                                            |
//!
//! Every stream it accepts is echoed: what it reads is written back on the same stream.
//! It prints `ready <id>` on stdout once connected, one line per event it sees on stderr,
//! and exits when its standard input closes or the relay connection ends.
//!
//! ```sh
//! cargo run --release -p native-client --example echo_peer -- --relay 127.0.0.1:9001 \
//!     --ca ~/.local/share/p2p-relay/ca.pem --as native-echo
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use clap::Parser;
use native_client::rmpv::Value;
use native_client::{Args, Client, ClientEvent, ConnectOptions, P2pWriteHalf, Trust};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinSet;

#[derive(Parser, Debug)]
struct Cli {
    /// The relay's QUIC address.
    #[arg(long, default_value = "127.0.0.1:9001")]
    relay: SocketAddr,
    /// The relay's CA certificate (`ca.pem` in its data directory).
    #[arg(long)]
    ca: PathBuf,
    /// The id to connect as.
    #[arg(long = "as")]
    id: String,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let options = ConnectOptions::new(&cli.id)
        .addr(cli.relay)
        .trust(Trust::CaFile(cli.ca.clone()));
    let (client, mut incoming) = Client::connect(options).await.context("connecting")?;
    println!("ready {}", cli.id);

    // Streams this peer opened: their write halves stay open (dropping one resets it).
    let opened: Arc<Mutex<Vec<P2pWriteHalf>>> = Arc::default();
    let mut tasks = JoinSet::new();
    let mut stdin = tokio::io::stdin();
    let mut sink = [0u8; 64];
    loop {
        let event = tokio::select! {
            event = incoming.next() => event,
            read = stdin.read(&mut sink) => match read {
                Ok(0) | Err(_) => break,
                Ok(_) => continue,
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
        };
        let Some(event) = event else { break };
        match event {
            ClientEvent::RegisterRequest(request) => {
                eprintln!("pairing with {}", request.from());
                request.accept();
            }
            ClientEvent::StreamRequest(request) => request.accept(),
            ClientEvent::Stream(stream) => {
                eprintln!("stream {} from {}: echoing", stream.id(), stream.peer());
                tasks.spawn(async move {
                    let (mut from, mut to) = stream.split();
                    let _ = tokio::io::copy(&mut from, &mut to).await;
                });
            }
            ClientEvent::Event { event, args, ack } => {
                eprintln!("event {event} ({} arguments)", args.len());
                let client = client.clone();
                let opened = opened.clone();
                tasks.spawn(async move {
                    if let Err(e) = answer(&client, &event, args, ack, &opened).await {
                        eprintln!("{event}: {e:#}");
                    }
                });
            }
            ClientEvent::Unregistered | ClientEvent::PeerDisconnected => {
                eprintln!("the pairing ended");
                opened.lock().expect("lock").clear();
            }
            ClientEvent::ServerError { message, .. } => eprintln!("relay: {message}"),
            ClientEvent::Closed(reason) => {
                eprintln!("closed: {reason}");
                break;
            }
            _ => {}
        }
    }
    client.close().await;
    Ok(())
}

async fn answer(
    client: &Client,
    event: &str,
    args: Args,
    ack: Option<native_client::AckResponder>,
    opened: &Mutex<Vec<P2pWriteHalf>>,
) -> Result<()> {
    let reply = match event {
        "ping" => {
            client.emit("echo:ping", args).await?;
            Args::new()
        }
        "ask" => args,
        "peer:ask" => {
            let (question, inner) = match (args.get(0), args.get(1)) {
                (Some(Value::String(name)), Some(Value::Array(inner))) => (
                    name.as_str().unwrap_or_default().to_string(),
                    Args(inner.clone()),
                ),
                _ => anyhow::bail!("peer:ask wants (event, [args])"),
            };
            client.emit_with_ack(&question, inner).await?
        }
        "peer:list" => {
            let ids = client.list_clients().await?;
            Args::one(Value::Array(ids.into_iter().map(Value::from).collect()))
        }
        "peer:stream" => {
            let size = args.get(0).and_then(Value::as_u64).unwrap_or(0) as usize;
            let target = client.target().context("not paired")?;
            let stream = client
                .open_stream(&target)
                .await?
                .context("the peer refused the stream")?;
            let (_read, mut write) = stream.split();
            let data = pseudo_random(size);
            write.write_all(&data).await?;
            write.flush().await?;
            opened.lock().expect("lock").push(write);
            Args::one(hex::encode(Sha256::digest(&data)))
        }
        "peer:unregister" => {
            if let Some(ack) = ack {
                ack.send(Args::new())?;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            client.unregister().await?;
            return Ok(());
        }
        _ => Args::new(),
    };
    if let Some(ack) = ack {
        ack.send(reply)?;
    }
    Ok(())
}

/// `len` bytes of a xorshift sequence: cheap, and not compressible by anything on the way.
fn pseudo_random(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15 ^ len as u64;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}
