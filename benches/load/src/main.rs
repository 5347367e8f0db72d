//! `p2p-relay-load`: drives a p2p relay with Socket.IO clients of both protocol generations
//! and native QUIC clients, and prints relayed messages/s, ack latency, stream MB/s, and the
//! relay's CPU time per relayed message and memory (from /proc, given its pid).
//!
//! ```text
//! p2p-relay-load emit --spawn target/release/p2p-relay                   # sio3 -> sio3
//! p2p-relay-load emit-ack --from quic --to sio4 --spawn target/release/p2p-relay
//! p2p-relay-load stream --from sio3 --to quic --spawn target/release/p2p-relay
//! p2p-relay-load idle --clients 10000 --spawn target/release/p2p-relay
//! p2p-relay-load emit --spawn-forwarder        # the bare socketioxide forwarder instead
//! p2p-relay-load emit --socketio-url http://127.0.0.1:9000 --pid 1234    # a running relay
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Parser, ValueEnum};
use p2p_relay_load::endpoint::{Msg, PayloadKind, Target, Transport};
use p2p_relay_load::idle::IdleSet;
use p2p_relay_load::pair::{EmitOpts, Pair};
use p2p_relay_load::stats::{cpu_time, fmt_duration, raise_fd_limit, rss, Snapshot, Stats};
use tokio::io::AsyncBufReadExt;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// P2P_EMIT without ack (native: emit), closed loop or at a rate.
    Emit,
    /// P2P_EMIT_ACKNOWLEDGE (native: emit_with_ack): ack latency and acks/s.
    EmitAck,
    /// 16 KiB chunks: legacy acked P2P_EMIT_STREAM chunks from a Socket.IO sender, a native
    /// QUIC stream from a QUIC sender (spliced to QUIC, bridged to Socket.IO).
    Stream,
    /// N idle connections per transport: relay memory per connection.
    Idle,
    /// Runs the bare socketioxide forwarder (the reference for the Socket.IO path).
    Forwarder,
    /// Runs a bare quinn copy relay (the reference for QUIC streams; `stream` against it
    /// with --spawn-copy-relay).
    CopyRelay,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Payload {
    /// One small JSON object.
    Small,
    /// One 16 KiB binary argument.
    Binary16k,
}

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Load tool for the p2p relay: messages/s, ack latency, stream MB/s, relay CPU per message and memory per connection"
)]
struct Opts {
    scenario: Scenario,

    /// The relay's Socket.IO gateway.
    #[arg(long, value_name = "URL")]
    socketio_url: Option<String>,
    /// The relay's QUIC address.
    #[arg(long, value_name = "ADDR")]
    quic: Option<SocketAddr>,
    /// CA file for QUIC [default: the development CA where the native CLI finds it].
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// Start this relay binary on free local ports (its own data directory), and measure it.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["socketio_url", "quic", "pid"])]
    spawn: Option<PathBuf>,
    /// Start the bare socketioxide forwarder (this binary, `forwarder`) and measure it.
    #[arg(long, conflicts_with_all = ["spawn", "socketio_url", "quic", "pid"])]
    spawn_forwarder: bool,
    /// The forwarder (`forwarder`, `--spawn-forwarder`) handles P2P_EMIT inline in
    /// socketioxide's read loop, without its task per event.
    #[arg(long)]
    inline: bool,
    /// `stream` only: start a bare quinn copy relay (this binary, `copy-relay`) and stream
    /// through it with raw quinn clients, the reference for a spliced QUIC stream.
    #[arg(long, conflicts_with_all = ["spawn", "spawn_forwarder", "socketio_url", "quic", "pid"])]
    spawn_copy_relay: bool,
    /// Extra argument for the spawned relay (repeat for several).
    #[arg(long = "relay-arg", value_name = "ARG", allow_hyphen_values = true)]
    relay_args: Vec<String>,
    /// The relay's pid, for CPU and memory figures (known by itself with --spawn).
    #[arg(long)]
    pid: Option<u32>,

    /// The sending client's transport: sio3 (engine.io 3, the 1.4.1 clients), sio4, quic.
    #[arg(long, default_value = "sio3", value_parser = Transport::parse)]
    from: Transport,
    /// The receiving client's transport [default: as --from].
    #[arg(long, value_parser = Transport::parse)]
    to: Option<Transport>,
    /// Pairs of clients.
    #[arg(long, default_value_t = 1)]
    pairs: usize,
    #[arg(long, value_enum, default_value = "small")]
    payload: Payload,
    /// Messages per second in total (spread over the pairs); without it, a closed loop.
    #[arg(long)]
    rate: Option<f64>,
    /// Messages in flight per pair at most (unreceived, or unacknowledged with acks).
    #[arg(long, default_value_t = 256)]
    window: usize,
    /// Seconds measured.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Seconds run before measuring.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,

    /// Idle clients per transport.
    #[arg(long, default_value_t = 10_000)]
    clients: usize,
    /// Transports of the idle clients, in the order they are opened.
    #[arg(long, value_delimiter = ',', default_value = "sio3,sio4,quic", value_parser = Transport::parse)]
    transports: Vec<Transport>,
    /// QUIC handshakes at once while opening idle clients.
    #[arg(long, default_value_t = 64)]
    quic_concurrency: usize,

    /// Socket.IO clients write what is ready in one write (several packets per syscall)
    /// instead of one write per packet as socket.io-client does. Cheaper for both ends.
    #[arg(long)]
    batch_writes: bool,

    /// Worker threads of this tool (1: one thread, the cheapest per message).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// `forwarder`: where it listens.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
}

fn main() -> anyhow::Result<()> {
    let opts = Opts::parse();
    let threads = if opts.scenario == Scenario::Forwarder && opts.threads == 1 {
        // The forwarder runs like the relay: tokio's default multi-thread runtime.
        std::thread::available_parallelism().map_or(2, |n| n.get())
    } else {
        opts.threads
    };
    let runtime = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()?
    };
    runtime.block_on(run(opts))
}

/// A relay this tool started; killed when dropped.
struct Spawned {
    child: tokio::process::Child,
    _dir: Option<tempfile::TempDir>,
}

async fn run(opts: Opts) -> anyhow::Result<()> {
    if opts.scenario == Scenario::CopyRelay {
        let dir = tempfile::tempdir()?;
        let (endpoint, ca) = p2p_relay_load::quinn_ref::copy_relay_server(dir.path(), opts.listen)?;
        println!("QUIC listening on {}", endpoint.local_addr()?);
        println!("CA {}", ca.display());
        p2p_relay_load::quinn_ref::serve_copy_relay(endpoint).await;
        return Ok(());
    }
    if opts.scenario == Scenario::Forwarder {
        let listener = tokio::net::TcpListener::bind(opts.listen).await?;
        println!(
            "Socket.IO gateway listening on http://{}",
            listener.local_addr()?
        );
        return Ok(p2p_relay_load::bare::serve_with(listener, opts.inline).await?);
    }
    let want_fds = match opts.scenario {
        // One transport at a time in a fresh relay when spawning; all at once otherwise.
        Scenario::Idle if opts.spawn.is_some() || opts.spawn_forwarder => {
            opts.clients as u64 + 4096
        }
        Scenario::Idle => opts.clients as u64 * opts.transports.len() as u64 + 4096,
        _ => opts.pairs as u64 * 4 + 4096,
    };
    let fds = raise_fd_limit(want_fds);
    if fds < want_fds {
        eprintln!("warning: open-file limit {fds} is below the {want_fds} this run may need");
    }

    let (spawned, target, pid) = start_relay(&opts).await?;
    match &spawned {
        Some(s) => println!(
            "relay: pid {} ({})",
            s.child.id().unwrap_or(0),
            describe(&target)
        ),
        None => println!(
            "relay: {}{}",
            describe(&target),
            pid.map(|p| format!(", pid {p}")).unwrap_or_default()
        ),
    }

    match opts.scenario {
        Scenario::Idle => idle(&opts, spawned, target, pid).await,
        _ => traffic(&opts, &target, pid).await,
    }
}

/// The relay to drive: the one given (--socketio-url, --quic, --pid), or one started here.
async fn start_relay(opts: &Opts) -> anyhow::Result<(Option<Spawned>, Target, Option<u32>)> {
    let mut target = Target {
        socketio: opts.socketio_url.clone(),
        quic: opts.quic,
        ca: opts.ca.clone(),
        batch_writes: opts.batch_writes,
        raw_quic: false,
    };
    let mut pid = opts.pid;
    let spawned = if let Some(path) = &opts.spawn {
        let dir = tempfile::tempdir()?;
        let mut cmd = tokio::process::Command::new(path);
        cmd.args([
            "--socketio-listen",
            "127.0.0.1:0",
            "--quic-listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(dir.path());
        if !opts
            .relay_args
            .iter()
            .any(|a| a.starts_with("--admin-listen"))
        {
            cmd.args(["--admin-listen", "127.0.0.1:0"]);
        }
        // Free ports of its own, otherwise the relay as `cargo run --release` starts it:
        // what the tool measures is what ships. A run about a setting passes it with
        // --relay-arg.
        cmd.args(&opts.relay_args);
        let spawned = spawn(cmd, Some(dir), &mut target).await?;
        target.ca = spawned
            ._dir
            .as_ref()
            .map(|d| d.path().join(certs::CA_CERT_FILE));
        pid = spawned.child.id();
        Some(spawned)
    } else if opts.spawn_copy_relay {
        let mut cmd = tokio::process::Command::new(std::env::current_exe()?);
        cmd.arg("copy-relay");
        let spawned = spawn(cmd, None, &mut target).await?;
        pid = spawned.child.id();
        Some(spawned)
    } else if opts.spawn_forwarder {
        let mut cmd = tokio::process::Command::new(std::env::current_exe()?);
        cmd.arg("forwarder");
        if opts.inline {
            cmd.arg("--inline");
        }
        let spawned = spawn(cmd, None, &mut target).await?;
        pid = spawned.child.id();
        Some(spawned)
    } else {
        None
    };
    Ok((spawned, target, pid))
}

fn describe(target: &Target) -> String {
    let mut parts = vec![];
    if let Some(u) = &target.socketio {
        parts.push(format!("Socket.IO {u}"));
    }
    if let Some(q) = target.quic {
        parts.push(format!("QUIC {q}"));
    }
    parts.join(", ")
}

/// Starts a relay (or the forwarder) and reads its addresses from its first lines.
async fn spawn(
    mut cmd: tokio::process::Command,
    dir: Option<tempfile::TempDir>,
    target: &mut Target,
) -> anyhow::Result<Spawned> {
    if std::env::var_os("RUST_LOG").is_none() {
        cmd.env("RUST_LOG", "warn");
    }
    cmd.stdout(Stdio::piped())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let mut child = cmd.spawn().context("starting the relay")?;
    let stdout = child.stdout.take().context("relay stdout")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let wants_quic = dir.is_some();
    let read = async {
        while let Some(line) = lines.next_line().await? {
            if let Some(addr) = line.strip_prefix("Socket.IO gateway listening on ") {
                target.socketio = Some(addr.trim().to_string());
            } else if let Some(addr) = line.strip_prefix("QUIC listening on ") {
                target.quic = Some(addr.trim().parse()?);
            } else if let Some(ca) = line.strip_prefix("CA ") {
                // The copy relay: QUIC only, with its own CA.
                target.ca = Some(ca.trim().into());
                target.raw_quic = true;
                return Ok::<_, anyhow::Error>(());
            }
            if target.socketio.is_some() && (!wants_quic || target.quic.is_some()) {
                return Ok::<_, anyhow::Error>(());
            }
        }
        bail!("the relay ended before printing its addresses")
    };
    tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .context("the relay did not print its addresses within 30 s")??;
    // Keep draining its stdout so that it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(Spawned { child, _dir: dir })
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

async fn traffic(opts: &Opts, target: &Target, pid: Option<u32>) -> anyhow::Result<()> {
    let from = opts.from;
    let to = opts.to.unwrap_or(from);
    let kind = match opts.payload {
        Payload::Small => PayloadKind::Small,
        Payload::Binary16k => PayloadKind::Binary16k,
    };
    let stats = Arc::new(Stats::default());
    let tag = std::process::id();
    let t_setup = Instant::now();
    let mut connecting = futures::stream::iter(0..opts.pairs)
        .map(|i| {
            let stats = stats.clone();
            async move {
                let (a, b) = (format!("load-{tag}-{i}-a"), format!("load-{tag}-{i}-b"));
                Pair::connect(target, (from, to), (&a, &b), stats).await
            }
        })
        .buffer_unordered(32);
    let mut pairs = Vec::with_capacity(opts.pairs);
    let mut raw = tokio::task::JoinSet::new();
    use futures::StreamExt as _;
    if target.raw_quic {
        // Raw quinn clients through the copy relay: one stream per pair, A writes 16 KiB
        // chunks until the end, B counts what arrives.
        if opts.scenario != Scenario::Stream {
            bail!("the copy relay only copies streams: use the stream scenario");
        }
        drop(connecting);
        let addr = target.quic.context("no copy relay address")?;
        let ca = target.ca.clone().context("no copy relay CA")?;
        for _ in 0..opts.pairs {
            // The copy relay pairs connections in arrival order: connect one after the other.
            let (a, ea) = p2p_relay_load::quinn_ref::connect_raw(addr, &ca).await?;
            let (b, eb) = p2p_relay_load::quinn_ref::connect_raw(addr, &ca).await?;
            let (mut send, _recv) = a.open_bi().await?;
            raw.spawn(async move {
                let _keep = (a, ea, _recv);
                let chunk = bytes::Bytes::from(vec![0x5a; 16 * 1024]);
                while send.write_chunk(chunk.clone()).await.is_ok() {}
            });
            let stats = stats.clone();
            raw.spawn(async move {
                let _keep = eb;
                let Ok((_send, mut recv)) = b.accept_bi().await else {
                    return;
                };
                while let Ok(Some(chunk)) = recv.read_chunk(1 << 20, true).await {
                    stats
                        .stream_bytes
                        .fetch_add(chunk.bytes.len() as u64, Ordering::Relaxed);
                }
            });
        }
    } else {
        while let Some(p) = connecting.next().await {
            pairs.push(p?);
        }
        drop(connecting);
    }
    if opts.scenario == Scenario::Stream && !target.raw_quic {
        for p in &mut pairs {
            p.open_stream().await?;
        }
    }
    let what = match opts.scenario {
        Scenario::Stream if target.raw_quic => {
            "16 KiB chunks on raw quinn streams through the bare copy relay".to_string()
        }
        Scenario::Stream => format!(
            "16 KiB chunks{}",
            if from == Transport::Quic {
                " on a native stream"
            } else {
                ", one acked at a time"
            }
        ),
        _ => format!(
            "{} payload, {}",
            match kind {
                PayloadKind::Small => "small JSON",
                PayloadKind::Binary16k => "16 KiB binary",
            },
            match opts.rate {
                Some(r) => format!("{r} msgs/s in total, window {}", opts.window),
                None => format!("closed loop, window {} per pair", opts.window),
            }
        ),
    };
    println!(
        "{:?} {} -> {}, {} pair(s), {what}{}; set up in {:.1} s; warm-up {} s, measuring {} s",
        opts.scenario,
        from.name(),
        to.name(),
        opts.pairs,
        if opts.batch_writes {
            ", batched writes"
        } else {
            ""
        },
        t_setup.elapsed().as_secs_f64(),
        opts.warmup,
        opts.duration
    );

    let start = Instant::now();
    let t0 = start + Duration::from_secs_f64(opts.warmup);
    let t1 = t0 + Duration::from_secs_f64(opts.duration);
    let mut tasks = tokio::task::JoinSet::new();
    for mut pair in pairs {
        let stats = stats.clone();
        let scenario = opts.scenario;
        let eopts = EmitOpts {
            ack: scenario == Scenario::EmitAck,
            window: opts.window,
            rate: opts.rate.map(|r| r / opts.pairs as f64),
            count: None,
            until: Some(t1),
        };
        let msg = Msg::new(kind, pair.b.id());
        tasks.spawn(async move {
            let r = match scenario {
                Scenario::Stream => pair.pump(None, Some(t1)).await,
                _ => pair.emit_loop(&msg, &eopts).await.map(|_| ()),
            };
            if let Err(e) = r {
                stats.error(format!("{e:#}"));
            }
            pair
        });
    }

    let me = std::process::id();
    let mut base: Option<(Snapshot, Duration, Option<Duration>)> = None;
    let mut last = (stats.snapshot(), Instant::now(), pid.and_then(cpu_time));
    let mut tick = tokio::time::interval_at(start + Duration::from_secs(1), Duration::from_secs(1));
    let mut measure_start = Box::pin(tokio::time::sleep_until(t0));
    let measured;
    loop {
        tokio::select! {
            _ = measure_start.as_mut(), if base.is_none() => {
                stats.reset_latency();
                base = Some((stats.snapshot(), cpu_time(me).unwrap_or_default(), pid.and_then(cpu_time)));
                continue;
            }
            _ = tick.tick() => {}
        }
        let now = Instant::now();
        let snap = stats.snapshot();
        let cpu = pid.and_then(cpu_time);
        let d = snap - last.0;
        let secs = (now - last.1).as_secs_f64();
        let mut line = format!(
            "{:5.1}s  relayed {:>8.0}/s  acked {:>8.0}/s  stream {:>7.1} MB/s",
            (now - start).as_secs_f64(),
            d.received as f64 / secs,
            d.acked as f64 / secs,
            d.stream_bytes as f64 / secs / 1e6,
        );
        if let Some([p50, p99, _]) = stats.percentiles() {
            line += &format!("  ack p50 {} p99 {}", fmt_duration(p50), fmt_duration(p99));
        }
        if let (Some(c), Some(l)) = (cpu, last.2) {
            line += &format!("  relay CPU {:>3.0}%", (c - l).as_secs_f64() / secs * 100.0);
        }
        if let Some(r) = pid.and_then(rss) {
            line += &format!("  RSS {:.1} MiB", mib(r));
        }
        if d.errors > 0 {
            line += &format!("  errors {}", d.errors);
        }
        if now < t0 {
            line += "  (warm-up)";
        }
        println!("{line}");
        last = (snap, now, cpu);
        if now >= t1 {
            measured = (snap, cpu_time(me).unwrap_or_default(), cpu, now);
            break;
        }
    }
    let (end, my_cpu1, relay_cpu1, now) = measured;
    let (begin, my_cpu0, relay_cpu0) = base.context("no measurement start")?;
    let d = end - begin;
    let secs = (now - t0).as_secs_f64().max(1e-9);
    let done = match opts.scenario {
        Scenario::EmitAck => d.acked,
        Scenario::Stream => d.stream_bytes.div_ceil(16 * 1024),
        _ => d.received,
    };
    println!("--");
    match opts.scenario {
        Scenario::Stream => {
            println!(
                "stream: {:.1} MB/s ({:.0} chunks of 16 KiB/s)",
                d.stream_bytes as f64 / secs / 1e6,
                done as f64 / secs
            );
        }
        _ => println!(
            "relayed messages/s: {:.0}  (sent {}, received {}, acked {})",
            d.received as f64 / secs,
            d.sent,
            d.received,
            d.acked
        ),
    }
    if let Some([p50, p99, p999]) = stats.percentiles() {
        println!(
            "ack latency: p50 {}  p99 {}  p99.9 {}  ({} acks/s)",
            fmt_duration(p50),
            fmt_duration(p99),
            fmt_duration(p999),
            (d.acked as f64 / secs).round()
        );
    }
    let per = |cpu: Duration| {
        if done == 0 {
            "-".to_string()
        } else {
            format!("{:.2} µs", cpu.as_secs_f64() * 1e6 / done as f64)
        }
    };
    let unit = match opts.scenario {
        Scenario::EmitAck => "acked emit (event + ack relayed)",
        Scenario::Stream => "16 KiB chunk",
        _ => "relayed message",
    };
    if let (Some(c0), Some(c1)) = (relay_cpu0, relay_cpu1) {
        let cpu = c1 - c0;
        println!(
            "relay CPU: {:.2} s ({:.0}% of one core), {} per {unit}",
            cpu.as_secs_f64(),
            cpu.as_secs_f64() / secs * 100.0,
            per(cpu)
        );
    }
    if let Some(r) = pid.and_then(rss) {
        println!("relay RSS: {:.1} MiB", mib(r));
    }
    let mine = my_cpu1.saturating_sub(my_cpu0);
    println!(
        "load tool CPU: {:.2} s ({:.0}% of one core), {} per {unit}",
        mine.as_secs_f64(),
        mine.as_secs_f64() / secs * 100.0,
        per(mine)
    );
    let errors = stats.errors.load(Ordering::Relaxed);
    if errors > 0 {
        println!(
            "errors: {errors}; first: {}",
            stats
                .first_error
                .lock()
                .expect("first error")
                .clone()
                .unwrap_or_default()
        );
    }
    // Let the pairs end on their own (they stop at t1), then close them.
    let drained = tokio::time::timeout(Duration::from_secs(5), async {
        let mut pairs = vec![];
        while let Some(p) = tasks.join_next().await {
            if let Ok(p) = p {
                pairs.push(p);
            }
        }
        pairs
    })
    .await;
    if let Ok(pairs) = drained {
        for p in pairs {
            let _ = tokio::time::timeout(Duration::from_millis(500), p.close()).await;
        }
    }
    Ok(())
}

async fn idle(
    opts: &Opts,
    mut spawned: Option<Spawned>,
    mut target: Target,
    mut pid: Option<u32>,
) -> anyhow::Result<()> {
    let n = opts.clients;
    let tag = std::process::id();
    // A relay this tool starts is started afresh for each transport: every transport gets a
    // clean baseline and the file-descriptor budget of one transport.
    let fresh = spawned.is_some();
    println!(
        "idle: {n} clients per transport ({}){}",
        opts.transports
            .iter()
            .map(|t| t.name())
            .collect::<Vec<_>>()
            .join(", "),
        if fresh {
            ", a fresh relay for each"
        } else {
            ", all in the one relay"
        }
    );
    let start = Instant::now();
    let mut results = vec![];
    let mut sets = vec![];
    for (i, &transport) in opts.transports.iter().enumerate() {
        if fresh && i > 0 {
            for mut s in sets.drain(..) {
                IdleSet::abort(&mut s);
            }
            drop(spawned.take());
            let (s, t, p) = start_relay(opts).await?;
            (spawned, target, pid) = (s, t, p);
        }
        let Some(pid) = pid else {
            bail!("idle needs the relay's pid (--pid, or --spawn) to read its memory");
        };
        let relay_rss = || rss(pid).context("cannot read the relay's RSS (has it exited?)");
        tokio::time::sleep(Duration::from_secs(1)).await;
        let before = relay_rss()?;
        let t = Instant::now();
        let prefix = format!("idle-{tag}-{}-", transport.name());
        let progress = |c: u64, f: u64| {
            println!(
                "{:5.1}s  {}: {c} connected{}  relay RSS {:.1} MiB",
                start.elapsed().as_secs_f64(),
                transport.name(),
                if f > 0 {
                    format!(", {f} failed")
                } else {
                    String::new()
                },
                mib(rss(pid).unwrap_or(0))
            )
        };
        let set = match transport {
            Transport::Sio(eio) => {
                let url = target.socketio.as_deref().context("no Socket.IO address")?;
                let set = IdleSet::sio(url, eio, &prefix, n);
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                tick.tick().await;
                loop {
                    tick.tick().await;
                    let (c, f) = (set.count(), set.failed.load(Ordering::Relaxed));
                    progress(c, f);
                    if c + f >= n as u64 {
                        break;
                    }
                }
                set
            }
            Transport::Quic => {
                IdleSet::quic(&target, &prefix, n, opts.quic_concurrency, |c| {
                    progress(c, 0)
                })
                .await?
            }
        };
        let opened_in = t.elapsed();
        // Let the relay settle (handshake buffers freed, first heartbeats).
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after = relay_rss()?;
        let count = set.count().max(1);
        let per = after.saturating_sub(before) as f64 / count as f64 / 1024.0;
        println!(
            "{:5.1}s  {}: {} connected in {:.1} s; relay RSS {:.1} -> {:.1} MiB: {per:.1} KiB per connection",
            start.elapsed().as_secs_f64(),
            transport.name(),
            set.count(),
            opened_in.as_secs_f64(),
            mib(before),
            mib(after),
        );
        // Hold them: what idle connections cost in CPU (heartbeats), and whether memory stays.
        let cpu0 = cpu_time(pid);
        let held_from = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.tick().await;
        while held_from.elapsed().as_secs_f64() < opts.duration {
            tick.tick().await;
            println!(
                "{:5.1}s  {}: holding {}  relay RSS {:.1} MiB",
                start.elapsed().as_secs_f64(),
                transport.name(),
                set.count(),
                mib(rss(pid).unwrap_or(0))
            );
        }
        let held = held_from.elapsed().as_secs_f64();
        let cpu = match (cpu0, cpu_time(pid)) {
            (Some(a), Some(b)) => (b - a).as_secs_f64() / held * 100.0,
            _ => f64::NAN,
        };
        results.push((transport, set.count(), per, cpu, mib(before), mib(after)));
        sets.push(set);
    }
    println!("--");
    for (transport, count, per, cpu, before, after) in &results {
        println!(
            "{:>5}: {count} idle clients, {per:.1} KiB of relay RSS per connection ({before:.1} -> {after:.1} MiB; relay CPU while idle {cpu:.1}% of one core)",
            transport.name()
        );
    }
    for mut s in sets {
        s.abort();
    }
    Ok(())
}
