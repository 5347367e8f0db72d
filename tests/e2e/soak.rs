//! The soak test: 10,000 clients over both transports, in waves, against the release
//! binary as a child process. Each wave connects Socket.IO (engine.io 3 and 4) and QUIC
//! clients, pairs them (Socket.IO with Socket.IO, QUIC with QUIC, and across), emits with
//! and without acks, opens and fills a few streams, and disconnects everyone. After every
//! wave the core holds nothing (`relay state:` on SIGUSR1: no connection, directory entry,
//! per-address entry, timer, ticket or stream), and the relay's resident memory after the
//! last wave is within 10% of what it was after the first.
//!
//! Bounded: every step has a deadline, and the whole run takes about a minute on two cores.
//! The figures are printed (run with `--nocapture` to see them), never asserted on beyond
//! the 10% rule.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use p2p_relay_load::endpoint::{Msg, PayloadKind, Target, Transport};
use p2p_relay_load::pair::{EmitOpts, Pair};
use p2p_relay_load::sio::Eio;
use p2p_relay_load::stats::{raise_fd_limit, rss, Stats};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;

/// Waves, and clients of each transport in one wave: 5 x (1,000 + 1,000) = 10,000.
const WAVES: usize = 5;
const SIO_PER_WAVE: usize = 1_000;
const QUIC_PER_WAVE: usize = 1_000;
/// Pairs connecting (or emitting, or closing) at once.
const CONCURRENCY: usize = 128;
/// The longest one phase of a wave may take.
const PHASE: Duration = Duration::from_secs(60);

/// The relay binary, its stdout lines, and its pid.
struct Child {
    child: tokio::process::Child,
    lines: mpsc::UnboundedReceiver<String>,
    pid: u32,
    target: Target,
    _dir: tempfile::TempDir,
}

impl Child {
    async fn start() -> Child {
        let dir = tempfile::tempdir().unwrap();
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_p2p-relay"))
            .args([
                "--socketio-listen",
                "127.0.0.1:0",
                "--quic-listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
            ])
            .arg("--data-dir")
            .arg(dir.path())
            .env_remove("RUST_LOG")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("the relay binary starts");
        let pid = child.id().unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
        let (send, mut lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(Some(line)) = out.next_line().await {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        let (mut socketio, mut quic) = (None, None);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while socketio.is_none() || quic.is_none() {
            let line = tokio::time::timeout_at(deadline, lines.recv())
                .await
                .expect("the relay prints its addresses")
                .expect("the relay exited");
            if let Some(url) = line.strip_prefix("Socket.IO gateway listening on ") {
                socketio = Some(url.trim().to_string());
            }
            if let Some(addr) = line.strip_prefix("QUIC listening on ") {
                quic = Some(addr.trim().parse().unwrap());
            }
        }
        let target = Target {
            socketio,
            quic,
            ca: Some(dir.path().join("ca.pem")),
            batch_writes: false,
            raw_quic: false,
        };
        Child {
            child,
            lines,
            pid,
            target,
            _dir: dir,
        }
    }

    /// The core's counts, asked with SIGUSR1.
    async fn state(&mut self) -> String {
        while self.lines.try_recv().is_ok() {}
        // SAFETY: kill has no memory preconditions; the pid is our own child's.
        let sent = unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGUSR1) };
        assert_eq!(sent, 0, "kill -USR1");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let line = tokio::time::timeout_at(deadline, self.lines.recv())
                .await
                .expect("the relay answers SIGUSR1")
                .expect("the relay exited");
            if let Some(state) = line.strip_prefix("relay state: ") {
                return state.to_string();
            }
        }
    }

    /// Waits (bounded) until the core holds nothing; returns how long it took.
    async fn drained(&mut self, wave: usize) -> Duration {
        let empty = "connections=0 directory=0 addresses=0 timers=0 requests=0 questions=0 \
                     streams=0";
        let started = Instant::now();
        loop {
            let state = self.state().await;
            if state == empty {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "wave {wave}: the core still holds {state} 20 s after its clients left"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn rss(&self) -> u64 {
        rss(self.pid).expect("the relay's VmRSS")
    }

    /// The RSS once it stops falling: the allocator gives freed pages back in the
    /// background, about a second after they were freed. Sampled every 250 ms until it has
    /// not dropped by more than 1% for a second, for at most 8 s.
    async fn settled_rss(&self) -> u64 {
        let started = Instant::now();
        let mut low = self.rss();
        let mut steady = Instant::now();
        while steady.elapsed() < Duration::from_secs(1)
            && started.elapsed() < Duration::from_secs(8)
        {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let now = self.rss();
            if (now as f64) < low as f64 * 0.99 {
                steady = Instant::now();
            }
            low = low.min(now);
        }
        low
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// The pairs of one wave: (transport of a, transport of b). Half of each transport's
/// clients pair across (Socket.IO with QUIC, both directions), the rest among their own.
fn wave_plan() -> Vec<(Transport, Transport)> {
    let sio = |i: usize| {
        if i % 2 == 1 {
            Transport::Sio(Eio::V3)
        } else {
            Transport::Sio(Eio::V4)
        }
    };
    let mut plan = Vec::new();
    let cross = SIO_PER_WAVE.min(QUIC_PER_WAVE) / 2;
    for i in 0..cross {
        plan.push(if i % 2 == 1 {
            (Transport::Quic, sio(i))
        } else {
            (sio(i), Transport::Quic)
        });
    }
    for i in 0..(SIO_PER_WAVE - cross) / 2 {
        plan.push((sio(i), sio(i + 1)));
    }
    for _ in 0..(QUIC_PER_WAVE - cross) / 2 {
        plan.push((Transport::Quic, Transport::Quic));
    }
    plan
}

/// Runs `phase` within [`PHASE`].
async fn bounded<T>(what: &str, phase: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(PHASE, phase)
        .await
        .unwrap_or_else(|_| panic!("{what} took longer than {PHASE:?}"))
}

/// One wave: connect and pair everyone, emit, stream on some pairs, disconnect everyone.
/// Returns the relay's RSS with the whole wave connected.
async fn wave(relay: &Child, wave: usize, stats: &Arc<Stats>) -> u64 {
    let plan = wave_plan();
    let clients = plan.len() * 2;
    let started = Instant::now();
    let target = relay.target.clone();
    let pairs: Vec<Pair> = bounded("connecting and pairing a wave", async {
        futures::stream::iter(plan.into_iter().enumerate())
            .map(|(i, kinds)| {
                let (target, stats) = (target.clone(), stats.clone());
                async move {
                    let (a, b) = (format!("w{wave}-{i}-a"), format!("w{wave}-{i}-b"));
                    Pair::connect(&target, kinds, (&a, &b), stats)
                        .await
                        .unwrap_or_else(|e| panic!("wave {wave}: pair {i} {kinds:?}: {e:#}"))
                }
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await
    })
    .await;
    let connected = relay.rss();
    let connect_time = started.elapsed();

    let emitting = Instant::now();
    let pairs: Vec<Pair> = bounded("emitting", async {
        futures::stream::iter(pairs.into_iter().enumerate())
            .map(|(i, mut pair)| async move {
                let msg = Msg::new(PayloadKind::Small, pair.b.id());
                let once = |ack, count| EmitOpts {
                    ack,
                    window: 4,
                    rate: None,
                    count: Some(count),
                    until: None,
                };
                let done = pair.emit_loop(&msg, &once(false, 10)).await.unwrap();
                assert_eq!(done, 10, "wave {wave}: pair {i}: emits");
                let done = pair.emit_loop(&msg, &once(true, 5)).await.unwrap();
                assert_eq!(done, 5, "wave {wave}: pair {i}: acked emits");
                // Some pairs move a stream and leave it open: disconnecting must end it.
                if i % 50 == 0 {
                    pair.open_stream()
                        .await
                        .unwrap_or_else(|e| panic!("wave {wave}: pair {i}: stream: {e:#}"));
                    pair.pump(Some(64 * 1024), None).await.unwrap();
                }
                pair
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await
    })
    .await;
    let emit_time = emitting.elapsed();

    let closing = Instant::now();
    bounded("disconnecting", async {
        futures::stream::iter(pairs)
            .for_each_concurrent(CONCURRENCY, |pair| pair.close())
            .await
    })
    .await;
    println!(
        "wave {wave}: {clients} clients connected and paired in {connect_time:?} (relay RSS \
         {}), emitted in {emit_time:?}, disconnected in {:?}",
        mib(connected),
        closing.elapsed()
    );
    connected
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_clients_in_waves_leave_nothing_behind() {
    raise_fd_limit(16_384);
    let started = Instant::now();
    let mut relay = Child::start().await;
    let stats = Arc::new(Stats::default());
    let baseline = relay.rss();
    println!("relay RSS at start: {}", mib(baseline));

    let mut after = Vec::new();
    for n in 1..=WAVES {
        let peak = wave(&relay, n, &stats).await;
        let took = relay.drained(n).await;
        let idle = relay.settled_rss().await;
        println!(
            "wave {n}: the core was empty {took:?} after the last disconnect; relay RSS {} \
             (peak {})",
            mib(idle),
            mib(peak)
        );
        after.push(idle);
    }
    assert_eq!(
        stats.errors.load(Ordering::Relaxed),
        0,
        "{:?}",
        stats.first_error.lock().unwrap()
    );
    let (first, last) = (after[0], *after.last().unwrap());
    println!(
        "relay RSS: {} at start, {} after the first wave, {} after the last ({:+.1}%); {} \
         clients in {:?}",
        mib(baseline),
        mib(first),
        mib(last),
        (last as f64 / first as f64 - 1.0) * 100.0,
        WAVES * (SIO_PER_WAVE + QUIC_PER_WAVE),
        started.elapsed()
    );
    assert!(
        last as f64 <= first as f64 * 1.10,
        "the relay's memory did not come back: {} after the first wave, {} after the last \
         (all figures: {:?})",
        mib(first),
        mib(last),
        after.iter().map(|&b| mib(b)).collect::<Vec<_>>()
    );
    let _ = relay.child.kill().await;
}
