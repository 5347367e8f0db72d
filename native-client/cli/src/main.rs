//! `p2p-relay-client`: list clients, and send files between two machines through the relay.
//!
//! With no flags it talks to a relay started by `cargo run --release` on this machine
//! (127.0.0.1:9001, trusting the development CA in the relay's default data directory).
//!
//! How a transfer works (between two of these tools, or with a web page speaking the same
//! framing, js-client/demo):
//! - `send` pairs with the receiver, retrying for a while when it is not connected yet.
//! - Files go one after another. Per file, it opens a P2P stream, then announces the file
//!   with `emit_with_ack("file", [stream id, file name, size])`; the receiver records the
//!   name and acks, and only then are the file's bytes written, so the name is known before
//!   the stream's end. The stream carries the file's bytes and nothing else, then FIN.
//!   One file at a time because a Socket.IO peer's streams carry no id (the 1.4.1 protocol):
//!   every stream it holds receives every chunk, and what it writes goes to its peer's newest
//!   stream, so two files at once could not be told apart there.
//! - The receiver saves the bytes to a hidden temporary file in its output directory,
//!   syncs it, and moves it to the announced name (only its last path component; never
//!   overwriting: `name-1.ext`, `name-2.ext`, ... when taken). A stream that was not
//!   announced is saved as `<peer>-<stream id>.bin`.
//! - The receiver then answers on the same stream, in the other direction, with one line
//!   `ok <size> <sha256>` (or `err <message>`) and finishes it. The sender, having finished
//!   its side, reads that line: that is how it knows the receiver is done, and it checks the
//!   size and digest against its own.
//! - A Socket.IO sender knows no stream ids and cannot finish a stream (the 1.4.1 protocol
//!   has neither): it announces `[null, name, size]` right after opening its stream, and the
//!   receiver takes the next `size` bytes of that peer's next unannounced stream as the file.
//! - Once every file is confirmed, the sender unregisters; a receiver run with `--count`
//!   leaves once it has saved that many files and the sender has let go (or after a grace
//!   period).

use std::collections::{HashMap, VecDeque};
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args as ClapArgs, Parser, Subcommand};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use native_client::rmpv::Value;
use native_client::wire::ResetCode;
use native_client::{
    Args, Client, ClientError, ClientEvent, ConnectOptions, ErrorKind, Incoming, P2pStream, Trust,
};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// The event that announces a file: `[stream id, name, size]` (stream id `null` from a
/// Socket.IO sender).
const FILE_EVENT: &str = "file";
/// Read and write size for file data.
const CHUNK: usize = 256 * 1024;
/// The receiver's answer line is short; anything longer is not ours.
const MAX_REPLY: u64 = 1024;
/// One progress bar per file: name, bar, bytes sent, speed, time left.
const PROGRESS_TEMPLATE: &str =
    "{msg:20!} [{bar:30}] {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12} {eta:>4}";
/// How long a receiver that has its `--count` waits for the sender to let go.
const LINGER: Duration = Duration::from_secs(10);

#[derive(Parser, Debug)]
#[command(
    name = "p2p-relay-client",
    version,
    about = "Native QUIC client of the p2p relay: list clients, send and receive files",
    after_help = "Example, in two terminals on the machine running the relay:\n  \
                  p2p-relay-client recv --as bob --out /tmp/in\n  \
                  p2p-relay-client send --as alice --to bob file1 file2"
)]
struct Cli {
    #[command(flatten)]
    relay: RelayArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(ClapArgs, Debug)]
struct RelayArgs {
    /// The relay's QUIC (UDP) address.
    #[arg(
        long,
        global = true,
        env = "P2P_RELAY_CLIENT_RELAY",
        default_value = "127.0.0.1:9001"
    )]
    relay: SocketAddr,
    /// The name to check the relay's certificate against.
    #[arg(
        long,
        global = true,
        env = "P2P_RELAY_CLIENT_SERVER_NAME",
        default_value = "localhost"
    )]
    server_name: String,
    /// Trust the CA certificate(s) in this PEM file [default: ca.pem in the relay's default
    /// data directory].
    #[arg(long, global = true, env = "P2P_RELAY_CLIENT_CA", value_name = "FILE", conflicts_with_all = ["pin", "system_roots"])]
    ca: Option<PathBuf>,
    /// Trust the relay's certificate (or its CA) with this SHA-256 fingerprint.
    #[arg(
        long,
        global = true,
        env = "P2P_RELAY_CLIENT_PIN",
        value_name = "SHA256",
        conflicts_with = "system_roots"
    )]
    pin: Option<String>,
    /// Trust the operating system's root CAs (a relay with a publicly issued certificate).
    #[arg(long, global = true)]
    system_roots: bool,
    /// A token for a relay started with `--auth token` (`p2p-relay token --sub ID ...`
    /// mints one); its `sub` must be the id given with `--as`. Prefer the environment
    /// variable: a command line is visible to every user of the machine.
    #[arg(
        long,
        global = true,
        env = "P2P_RELAY_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the ids of the connected clients, one per line.
    List {
        /// The id to connect as [default: `p2p-relay-client-PID`].
        #[arg(long = "as", value_name = "ID")]
        id: Option<String>,
    },
    /// Wait for a peer and save the files it sends.
    Recv {
        /// The id to connect as; the sender sends `--to` this.
        #[arg(long = "as", value_name = "ID")]
        id: String,
        /// Where to save the files.
        #[arg(long, value_name = "DIR", default_value = ".")]
        out: PathBuf,
        /// Exit after this many files [default: run until interrupted].
        #[arg(long, value_name = "N")]
        count: Option<u64>,
    },
    /// Pair with a receiver and send it files, one stream per file, one after another.
    Send {
        /// The id to connect as.
        #[arg(long = "as", value_name = "ID")]
        id: String,
        /// The receiver's id.
        #[arg(long, value_name = "PEER")]
        to: String,
        /// How long to keep trying while the receiver is not connected yet, in seconds.
        #[arg(long, value_name = "SECS", default_value_t = 10)]
        wait: u64,
        /// The files to send.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let cli = Cli::parse();
    // One thread: quinn moved ~1.6x more data per second on a current-thread runtime than
    // across worker threads (one stream between two processes on 2 cores: ~0.9 against
    // ~0.55 GB/s); the wake-ups between threads cost more than the second thread gains.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::List { id } => {
            let id = id.unwrap_or_else(|| format!("p2p-relay-client-{}", std::process::id()));
            let (client, _incoming) = connect(&cli.relay, &id).await?;
            let ids = client.list_clients().await?;
            let others: Vec<&String> = ids.iter().filter(|other| **other != id).collect();
            // One id per line on stdout (for scripts); the empty case is said on stderr.
            if others.is_empty() {
                eprintln!("no other clients are connected");
            }
            for other in others {
                println!("{other}");
            }
            client.close().await;
            Ok(())
        }
        Command::Recv { id, out, count } => {
            std::fs::create_dir_all(&out)
                .with_context(|| format!("cannot create the output directory {}", out.display()))?;
            let (client, incoming) = connect(&cli.relay, &id).await?;
            let result = receive(&client, incoming, &out, count).await;
            client.close().await;
            result
        }
        Command::Send {
            id,
            to,
            wait,
            files,
        } => {
            for file in &files {
                let meta = std::fs::metadata(file)
                    .with_context(|| format!("cannot read {}", file.display()))?;
                if !meta.is_file() {
                    bail!("{} is not a regular file", file.display());
                }
            }
            let (client, incoming) = connect(&cli.relay, &id).await?;
            let result = send(&client, incoming, &to, Duration::from_secs(wait), files).await;
            client.close().await;
            result
        }
    }
}

async fn connect(relay: &RelayArgs, id: &str) -> Result<(Client, Incoming)> {
    let mut options = ConnectOptions::new(id)
        .addr(relay.relay)
        .server_name(relay.server_name.clone());
    if let Some(ca) = &relay.ca {
        options = options.trust(Trust::CaFile(ca.clone()));
    } else if let Some(pin) = &relay.pin {
        options = options.trust(Trust::Fingerprint(pin.clone()));
    } else if relay.system_roots {
        options = options.trust(Trust::SystemRoots);
    }
    if let Some(token) = &relay.token {
        options = options.token(token.trim());
    }
    let missing_default_ca = match &options.trust {
        Trust::CaFile(path) if relay.ca.is_none() => !path.exists(),
        _ => false,
    };
    match Client::connect(options).await {
        Ok(parts) => Ok(parts),
        Err(e @ ClientError::Trust(_)) if missing_default_ca => Err(anyhow::Error::new(e).context(
            "no development CA found: start the relay once on this machine (`cargo run \
             --release`) to create it, or pass --ca FILE, --pin SHA256 or --system-roots",
        )),
        Err(e @ ClientError::Refused { .. }) if relay.token.is_none() => Err(anyhow::Error::new(e)
            .context(
                "the relay refused this client; if it requires a token, pass --token TOKEN \
                 or set P2P_RELAY_TOKEN",
            )),
        Err(e) => Err(e.into()),
    }
}

// ---- receiving ----

/// What a sender announced about a stream.
struct Announced {
    name: String,
    size: u64,
}

/// The files announced and not yet matched with their streams.
#[derive(Default)]
struct Announcements {
    /// By stream id (a native sender).
    by_stream: HashMap<u64, Announced>,
    /// Without a stream id (a Socket.IO sender), oldest first, with the peer that sent it.
    unnamed: VecDeque<(String, Announced)>,
}

/// How a stream being saved ends.
enum Plan {
    /// At its end of stream (a native sender finishes its stream).
    ToEof,
    /// After this many bytes: a Socket.IO sender's file, taken from the unnamed queue.
    Sized(Announced),
}

/// Announcements shared between the event loop and the saving tasks, which are woken when a
/// new one arrives.
struct Shared {
    announcements: Mutex<Announcements>,
    changed: watch::Sender<u64>,
}

impl Shared {
    fn new() -> Self {
        Self {
            announcements: Mutex::default(),
            changed: watch::channel(0).0,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Announcements> {
        self.announcements.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn announce(&self, peer: Option<String>, stream: Option<u64>, announced: Announced) {
        match stream {
            Some(id) => {
                self.lock().by_stream.insert(id, announced);
            }
            None => self
                .lock()
                .unnamed
                .push_back((peer.unwrap_or_default(), announced)),
        }
        self.changed.send_modify(|n| *n += 1);
    }

    /// How stream `id` from `peer` ends, if anything was announced for it yet.
    fn plan(&self, id: u64, peer: &str) -> Option<Plan> {
        let mut all = self.lock();
        if all.by_stream.contains_key(&id) {
            return Some(Plan::ToEof);
        }
        let at = all.unnamed.iter().position(|(from, _)| from == peer)?;
        all.unnamed
            .remove(at)
            .map(|(_, announced)| Plan::Sized(announced))
    }
}

struct Saved {
    path: PathBuf,
    peer: String,
    size: u64,
    sha256: String,
    elapsed: Duration,
}

async fn receive(
    client: &Client,
    mut incoming: Incoming,
    out: &Path,
    count: Option<u64>,
) -> Result<()> {
    eprintln!(
        "waiting for a peer as '{}' (files go to {})",
        client.client_id(),
        out.display()
    );
    let announced = Arc::new(Shared::new());
    let mut saving = JoinSet::new();
    let mut saved = 0u64;
    let mut failed = 0u64;
    let mut done_at: Option<tokio::time::Instant> = None;
    loop {
        if count.is_some_and(|n| saved + failed >= n) && saving.is_empty() && done_at.is_none() {
            // Give the sender time to read our answers before the connection goes.
            done_at = Some(tokio::time::Instant::now() + LINGER);
        }
        let linger = async {
            match done_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            event = incoming.next() => {
                let Some(event) = event else { bail!("the connection to the relay ended") };
                match event {
                    ClientEvent::RegisterRequest(request) => {
                        if done_at.is_some() {
                            request.refuse();
                        } else {
                            eprintln!("paired with '{}'", request.from());
                            request.accept();
                        }
                    }
                    ClientEvent::StreamRequest(request) => request.accept(),
                    ClientEvent::Event { event, args, ack } if event == FILE_EVENT => {
                        let answer = match args.to_serde::<(Option<u64>, String, u64)>() {
                            Ok((id, name, size)) => {
                                tracing::debug!(stream = ?id, %name, size, "file announced");
                                announced.announce(client.target(), id, Announced { name, size });
                                Args::one(true)
                            }
                            Err(e) => Args::new().with(false).with(e.to_string()),
                        };
                        if let Some(ack) = ack {
                            ack.send(answer)?;
                        }
                    }
                    ClientEvent::Event { event, ack, .. } => {
                        tracing::info!(%event, "ignoring an event");
                        if let Some(ack) = ack {
                            ack.send(Args::new())?;
                        }
                    }
                    ClientEvent::Stream(stream) => {
                        saving.spawn(save(stream, out.to_path_buf(), announced.clone()));
                    }
                    ClientEvent::Unregistered | ClientEvent::PeerDisconnected => {
                        if done_at.is_some() {
                            return Ok(());
                        }
                        eprintln!("the peer let go; waiting for another one");
                    }
                    ClientEvent::StreamClosed(id) => tracing::debug!(stream = id, "stream closed"),
                    ClientEvent::ServerError { message, .. } => eprintln!("relay: {message}"),
                    ClientEvent::Closed(reason) => bail!("{reason}"),
                    _ => {}
                }
            }
            Some(result) = saving.join_next(), if !saving.is_empty() => {
                match result.context("a saving task failed")? {
                    Ok(file) => {
                        saved += 1;
                        println!(
                            "received {} from '{}': {} bytes in {:.2} s ({:.1} MB/s), sha256 {}",
                            file.path.display(), file.peer, file.size,
                            file.elapsed.as_secs_f64(), mb_per_s(file.size, file.elapsed),
                            file.sha256,
                        );
                    }
                    Err(e) => {
                        failed += 1;
                        eprintln!("error: {e:#}");
                    }
                }
            }
            () = linger => break,
        }
    }
    if failed > 0 {
        bail!("{failed} of {} files failed", saved + failed);
    }
    Ok(())
}

/// Saves one stream to a file, then answers the sender on the same stream.
async fn save(stream: P2pStream, out: PathBuf, announced: Arc<Shared>) -> Result<Saved> {
    let id = stream.id();
    let peer = stream.peer().to_string();
    let (mut from, mut answer) = stream.split();
    let temp = out.join(format!(".p2p-relay-{id}.part"));
    let result = save_to(&mut from, &temp, &announced).await;
    let (size, sha256, elapsed, sized) = match result {
        Ok(done) => done,
        Err(e) => {
            let _ = tokio::fs::remove_file(&temp).await;
            // The sender's writes fail; the relay reports any stop as the peer's reset.
            from.stop(ResetCode::PeerReset.code());
            let _ = answer
                .write_all(format!("err {}\n", one_line(&format!("{e:#}"))).as_bytes())
                .await;
            let _ = answer.shutdown().await;
            return Err(e.context(format!("stream {id} from '{peer}'")));
        }
    };
    let name = sized.or_else(|| announced.lock().by_stream.remove(&id));
    let name = match &name {
        Some(Announced {
            name,
            size: expected,
        }) => {
            if *expected != size {
                tracing::warn!(
                    stream = id,
                    expected,
                    size,
                    "size differs from the announcement"
                );
            }
            safe_name(name).unwrap_or_else(|| format!("{peer}-{id}.bin"))
        }
        None => format!("{peer}-{id}.bin"),
    };
    let path = match place(&temp, &out, &name) {
        Ok(path) => path,
        Err(e) => {
            let _ = std::fs::remove_file(&temp);
            let _ = answer
                .write_all(format!("err {}\n", one_line(&format!("{e:#}"))).as_bytes())
                .await;
            let _ = answer.shutdown().await;
            return Err(e);
        }
    };
    answer
        .write_all(format!("ok {size} {sha256}\n").as_bytes())
        .await
        .with_context(|| format!("cannot confirm {} to '{peer}'", path.display()))?;
    answer.shutdown().await?;
    Ok(Saved {
        path,
        peer,
        size,
        sha256,
        elapsed,
    })
}

/// Copies the stream into `temp`, hashing it, to its end or, for a Socket.IO sender's file,
/// to its announced size; returns size, digest, time taken and that announcement.
async fn save_to(
    from: &mut native_client::P2pReadHalf,
    temp: &Path,
    announced: &Shared,
) -> Result<(u64, String, Duration, Option<Announced>)> {
    let (id, peer) = (from.id(), from.peer().to_string());
    let mut file = tokio::fs::File::create(temp)
        .await
        .with_context(|| format!("cannot create {}", temp.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut size = 0u64;
    let mut started = None;
    // Decided once something is announced for this stream, or at its first bytes (every
    // sender announces before writing, so whatever was announced is known by then).
    let mut changes = announced.changed.subscribe();
    let mut watching = true;
    let mut plan = announced.plan(id, &peer);
    loop {
        let want = match &plan {
            Some(Plan::Sized(file)) if size >= file.size => break,
            Some(Plan::Sized(file)) => (file.size - size).min(CHUNK as u64) as usize,
            _ => CHUNK,
        };
        let n = tokio::select! {
            n = from.read(&mut buf[..want]) => n.context("receiving failed")?,
            changed = changes.changed(), if plan.is_none() && watching => {
                watching = changed.is_ok();
                plan = announced.plan(id, &peer);
                continue;
            }
        };
        started.get_or_insert_with(Instant::now);
        if n == 0 {
            if let Some(Plan::Sized(file)) = &plan {
                bail!(
                    "the stream ended after {size} of {} announced bytes",
                    file.size
                );
            }
            break;
        }
        if plan.is_none() {
            plan = Some(announced.plan(id, &peer).unwrap_or(Plan::ToEof));
        }
        if let Some(Plan::Sized(file)) = &plan {
            if size + n as u64 > file.size {
                bail!("more bytes than the {} announced", file.size);
            }
        }
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n])
            .await
            .with_context(|| format!("cannot write {}", temp.display()))?;
        size += n as u64;
    }
    file.sync_all()
        .await
        .with_context(|| format!("cannot write {}", temp.display()))?;
    let elapsed = started.map(|s| s.elapsed()).unwrap_or_default();
    let sized = match plan {
        Some(Plan::Sized(file)) => Some(file),
        _ => None,
    };
    Ok((size, hex::encode(hasher.finalize()), elapsed, sized))
}

/// The last path component of a name a peer sent, if it is a usable file name.
fn safe_name(name: &str) -> Option<String> {
    let base = name.rsplit(['/', '\\']).next()?;
    let cleaned: String = base
        .chars()
        .map(|c| if c.is_control() { '_' } else { c })
        .collect();
    let cleaned = cleaned.trim();
    if cleaned.is_empty() || cleaned == "." || cleaned == ".." {
        return None;
    }
    Some(cleaned.to_string())
}

/// Gives `temp` its final name in `dir` without replacing an existing file: `name`, then
/// `stem-1.ext`, `stem-2.ext`, ...
fn place(temp: &Path, dir: &Path, name: &str) -> Result<PathBuf> {
    let (stem, ext) = match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => (stem, Some(ext)),
        _ => (name, None),
    };
    for n in 0u32..10_000 {
        let candidate = match (n, ext) {
            (0, _) => name.to_string(),
            (n, Some(ext)) => format!("{stem}-{n}.{ext}"),
            (n, None) => format!("{stem}-{n}"),
        };
        let path = dir.join(candidate);
        // A hard link fails if the name is taken, so two files never race for one name.
        match std::fs::hard_link(temp, &path) {
            Ok(()) => {
                std::fs::remove_file(temp)
                    .with_context(|| format!("cannot remove {}", temp.display()))?;
                return Ok(path);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(_) if !path.exists() => {
                // No hard links on this file system: fall back to a rename.
                std::fs::rename(temp, &path)
                    .with_context(|| format!("cannot move the file to {}", path.display()))?;
                return Ok(path);
            }
            Err(e) => {
                return Err(e).with_context(|| format!("cannot save {}", path.display()));
            }
        }
    }
    bail!("no free file name for {name} in {}", dir.display())
}

// ---- sending ----

struct Sent {
    name: String,
    size: u64,
    sha256: String,
    elapsed: Duration,
}

async fn send(
    client: &Client,
    mut incoming: Incoming,
    to: &str,
    wait: Duration,
    files: Vec<PathBuf>,
) -> Result<()> {
    pair(client, to, wait).await?;
    let multi = MultiProgress::with_draw_target(if std::io::stdout().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    });
    let style = ProgressStyle::with_template(PROGRESS_TEMPLATE)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");

    let started = Instant::now();
    let (mut total, mut failures) = (0u64, 0usize);
    // One file after another (see the top of this file for why).
    for path in files {
        let bar = multi.add(ProgressBar::new(0).with_style(style.clone()));
        let sending = send_file(client, to, &path, &bar);
        tokio::pin!(sending);
        let result = loop {
            tokio::select! {
                result = &mut sending => break result,
                event = incoming.next() => match event {
                    Some(ClientEvent::PeerDisconnected) => {
                        multi.suspend(|| eprintln!("'{to}' disconnected"));
                    }
                    Some(ClientEvent::Unregistered) => {
                        multi.suspend(|| eprintln!("'{to}' ended the pairing"));
                    }
                    Some(ClientEvent::ServerError { message, .. }) => {
                        multi.suspend(|| eprintln!("relay: {message}"));
                    }
                    Some(ClientEvent::Closed(reason)) => bail!("{reason}"),
                    None => bail!("the connection to the relay ended"),
                    // Requests are refused by being dropped; nothing else is expected.
                    Some(_) => {}
                },
            }
        };
        bar.finish_and_clear();
        match result.with_context(|| format!("sending {} failed", path.display())) {
            Ok(sent) => {
                total += sent.size;
                multi.suspend(|| {
                    println!(
                        "sent {}: {} bytes in {:.2} s ({:.1} MB/s), sha256 {}",
                        sent.name,
                        sent.size,
                        sent.elapsed.as_secs_f64(),
                        mb_per_s(sent.size, sent.elapsed),
                        sent.sha256,
                    )
                });
            }
            Err(e) => {
                failures += 1;
                multi.suspend(|| eprintln!("error: {e:#}"));
            }
        }
    }
    if failures > 0 {
        bail!("{failures} file(s) could not be sent");
    }
    let elapsed = started.elapsed();
    eprintln!(
        "done: {total} bytes in {:.2} s ({:.1} MB/s)",
        elapsed.as_secs_f64(),
        mb_per_s(total, elapsed)
    );
    if let Err(e) = client.unregister().await {
        tracing::debug!(error = %e, "unregister after sending");
    }
    Ok(())
}

/// Pairs with `to`, waiting for it to connect for up to `wait`.
async fn pair(client: &Client, to: &str, wait: Duration) -> Result<()> {
    let deadline = Instant::now() + wait;
    let mut told = false;
    loop {
        let present = client.list_clients().await?.iter().any(|id| id == to);
        if present {
            match client.register(to).await {
                Ok(true) => return Ok(()),
                Ok(false) => bail!("'{to}' refused to pair (it is paired with another client)"),
                // Gone again since the list, or slow to answer: worth another try.
                Err(e @ ClientError::Request { .. })
                    if matches!(e.kind(), ErrorKind::NotConnected | ErrorKind::Timeout)
                        && Instant::now() < deadline =>
                {
                    tracing::debug!(error = %e, "register failed; retrying");
                }
                Err(e) => return Err(e.into()),
            }
        }
        if Instant::now() >= deadline {
            bail!(
                "'{to}' is not connected to the relay (waited {} s); start the receiver with \
                 `p2p-relay-client recv --as {to}`",
                wait.as_secs()
            );
        }
        if !told {
            eprintln!("waiting for '{to}' to connect...");
            told = true;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn send_file(client: &Client, to: &str, path: &Path, bar: &ProgressBar) -> Result<Sent> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let mut file = tokio::fs::File::open(path)
        .await
        .with_context(|| format!("cannot open {}", path.display()))?;
    let size = file.metadata().await?.len();
    bar.set_length(size);
    bar.set_message(name.clone());

    let stream = client
        .open_stream(to)
        .await?
        .with_context(|| format!("'{to}' refused the stream"))?;
    let id = stream.id();
    let ack = client
        .emit_with_ack(
            FILE_EVENT,
            Args::new().with(id).with(name.as_str()).with(size),
        )
        .await?;
    if ack.get(0) != Some(&Value::Boolean(true)) {
        bail!("'{to}' did not take the file: {:?}", ack.into_inner());
    }

    let (mut reply, mut data) = stream.split();
    let started = Instant::now();
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut sent = 0u64;
    let written: Result<()> = async {
        loop {
            let n = file
                .read(&mut buf)
                .await
                .with_context(|| format!("cannot read {}", path.display()))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            data.write_all(&buf[..n]).await?;
            sent += n as u64;
            bar.set_position(sent);
        }
        data.shutdown().await?;
        Ok(())
    }
    .await;

    // The receiver's answer: `ok <size> <sha256>` once the file is saved, or `err ...`.
    let read = read_line(&mut reply).await;
    let answer = read.as_deref().unwrap_or_default().to_string();
    if let Err(e) = written {
        if let Some(message) = answer.trim().strip_prefix("err ") {
            bail!("'{to}' could not save it: {message}");
        }
        return Err(e);
    }
    read.with_context(|| format!("no confirmation from '{to}'"))?;
    let elapsed = started.elapsed();
    let sha256 = hex::encode(hasher.finalize());
    let answer = answer.trim();
    if let Some(message) = answer.strip_prefix("err ") {
        bail!("'{to}' could not save it: {message}");
    }
    let expected = format!("ok {sent} {sha256}");
    if answer != expected {
        bail!("'{to}' received something else: it says {answer:?}, expected {expected:?}");
    }
    Ok(Sent {
        name,
        size: sent,
        sha256,
        elapsed,
    })
}

/// The receiver's one-line answer: up to its newline (a web receiver cannot finish its side
/// of the stream), or its end of stream, at most MAX_REPLY bytes.
async fn read_line(reply: &mut native_client::P2pReadHalf) -> std::io::Result<String> {
    let mut line = Vec::new();
    let mut buf = [0u8; 256];
    while (line.len() as u64) < MAX_REPLY {
        let n = reply.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        line.extend_from_slice(&buf[..n]);
        if let Some(end) = line.iter().position(|b| *b == b'\n') {
            line.truncate(end);
            break;
        }
    }
    Ok(String::from_utf8_lossy(&line).into_owned())
}

fn mb_per_s(bytes: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 {
        bytes as f64 / 1e6 / secs
    } else {
        0.0
    }
}

fn one_line(text: &str) -> String {
    text.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_peers_are_reduced_to_a_file_name() {
        assert_eq!(safe_name("a.txt").as_deref(), Some("a.txt"));
        assert_eq!(safe_name("../../etc/passwd").as_deref(), Some("passwd"));
        assert_eq!(safe_name("C:\\x\\y.bin").as_deref(), Some("y.bin"));
        assert_eq!(safe_name("a\nb").as_deref(), Some("a_b"));
        assert_eq!(safe_name(".."), None);
        assert_eq!(safe_name("dir/"), None);
        assert_eq!(safe_name(""), None);
    }

    #[test]
    fn placing_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let mut placed = Vec::new();
        for content in ["one", "two", "three"] {
            let temp = dir.path().join(".part");
            std::fs::write(&temp, content).unwrap();
            placed.push(place(&temp, dir.path(), "f.txt").unwrap());
            assert!(!temp.exists());
        }
        let names: Vec<_> = placed
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["f.txt", "f-1.txt", "f-2.txt"]);
        assert_eq!(std::fs::read_to_string(&placed[2]).unwrap(), "three");
        let temp = dir.path().join(".part");
        std::fs::write(&temp, "x").unwrap();
        let path = place(&temp, dir.path(), ".hidden").unwrap();
        assert_eq!(path.file_name().unwrap(), ".hidden");
    }

    #[test]
    fn the_progress_template_is_valid() {
        ProgressStyle::with_template(PROGRESS_TEMPLATE).unwrap();
    }

    #[test]
    fn the_command_line_parses() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from(["p2p-relay-client", "list"]).unwrap();
        assert_eq!(cli.relay.relay.to_string(), "127.0.0.1:9001");
        assert_eq!(cli.relay.server_name, "localhost");
        let cli = Cli::try_parse_from([
            "p2p-relay-client",
            "send",
            "--as",
            "a",
            "--to",
            "b",
            "x",
            "y",
            "--relay",
            "10.0.0.1:7000",
            "--pin",
            "ab",
        ])
        .unwrap();
        assert!(matches!(cli.command, Command::Send { ref files, .. } if files.len() == 2));
        assert_eq!(cli.relay.pin.as_deref(), Some("ab"));
        assert!(
            Cli::try_parse_from(["p2p-relay-client", "list", "--pin", "ab", "--system-roots"])
                .is_err()
        );
    }
}
