//! Every relayed path side by side with what the libraries alone cost, in one run on one
//! machine, so that ratios are the figures to read (absolute numbers move with whatever
//! else the machine is doing). docs/BENCHMARKS.md says what each measures.
//!
//! - `emit/{small,16k}/PATH`: one-way emits, 64 in flight, per message;
//! - `emit_ack/{small,16k}/PATH`: one emit with ack at a time: the round trip;
//! - `stream/PATH`: 16 MiB over one stream per iteration, in 16 KiB chunks.
//!
//! PATH is `sio_sio`, `quic_quic`, `sio_quic`, `quic_sio` through the relay (Socket.IO
//! clients speak engine.io v3, as the 1.4.1 plugin's clients do), and the references:
//! `bare_socketioxide` (a forwarder with socketioxide alone, p2p_relay_load::bare; for
//! one-way emits also `bare_socketioxide_inline`, the same with a `MessageHandler` of its own
//! that runs in socketioxide's read loop instead of a task per event),
//! `bare_quinn_copy` (a quinn relay that only copies between two streams) and
//! `quinn_direct` (two quinn endpoints, no relay).
//!
//! Everything runs in this process on one tokio runtime with two workers: relay, clients and
//! references share the machine's two cores. The clients are the load tool's
//! (`benches/load`), so the same paths can be driven from another process with
//! `p2p-relay-load` for CPU per message.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use p2p_relay::{Server, Settings};
use p2p_relay_load::endpoint::{Msg, PayloadKind, Target, Transport};
use p2p_relay_load::pair::{EmitOpts, Pair};
use p2p_relay_load::quinn_ref::{self, CopyRelay, Direct, PingPong};
use p2p_relay_load::sio::Eio;
use p2p_relay_load::stats::Stats;
use tokio::runtime::Runtime;
use tokio::sync::Notify;

const STREAM_BYTES: u64 = 16 * 1024 * 1024;
const CHUNK: usize = 16 * 1024;
const WINDOW: usize = 64;
const SIO: Transport = Transport::Sio(Eio::V3);

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// The relay, the bare forwarder and the quinn references, all on loopback.
struct World {
    _relay: Server,
    relay: Target,
    bare: Target,
    bare_inline: Target,
    direct: Direct,
    copy: CopyRelay,
    _dir: tempfile::TempDir,
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    // The relay on its defaults (only its ports and data directory chosen here).
    let settings = Settings::on_free_local_ports(&dir.path().join("relay"));
    let relay = Server::start(&settings).await.expect("relay");
    let target = Target {
        socketio: Some(format!("http://{}", relay.socketio_addr())),
        quic: Some(relay.quic_addr()),
        ca: Some(relay.ca().expect("development CA").path.clone()),
        batch_writes: false,
        raw_quic: false,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let bare = Target {
        socketio: Some(format!("http://{}", listener.local_addr().unwrap())),
        quic: None,
        ca: None,
        batch_writes: false,
        raw_quic: false,
    };
    tokio::spawn(p2p_relay_load::bare::serve(listener));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let bare_inline = Target {
        socketio: Some(format!("http://{}", listener.local_addr().unwrap())),
        ..bare.clone()
    };
    tokio::spawn(p2p_relay_load::bare::serve_with(listener, true));
    let direct = Direct::start(&dir.path().join("direct"))
        .await
        .expect("direct");
    let copy = CopyRelay::start(&dir.path().join("copy"))
        .await
        .expect("copy relay");
    World {
        _relay: relay,
        relay: target,
        bare,
        bare_inline,
        direct,
        copy,
        _dir: dir,
    }
}

/// The relayed paths (and the bare forwarder), by name.
fn paths(w: &World) -> Vec<(&'static str, &Target, Transport, Transport)> {
    vec![
        ("sio_sio", &w.relay, SIO, SIO),
        ("quic_quic", &w.relay, Transport::Quic, Transport::Quic),
        ("sio_quic", &w.relay, SIO, Transport::Quic),
        ("quic_sio", &w.relay, Transport::Quic, SIO),
        ("bare_socketioxide", &w.bare, SIO, SIO),
    ]
}

static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

async fn pair(target: &Target, from: Transport, to: Transport) -> Pair {
    let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let (a, b) = (format!("bench-{n}-a"), format!("bench-{n}-b"));
    Pair::connect(target, (from, to), (&a, &b), Arc::new(Stats::default()))
        .await
        .expect("pair")
}

fn emits(c: &mut Criterion) {
    let rt = runtime();
    let w = rt.block_on(world());
    for (kind, label) in [
        (PayloadKind::Small, "small"),
        (PayloadKind::Binary16k, "16k"),
    ] {
        let mut group = c.benchmark_group(format!("emit/{label}"));
        group.throughput(Throughput::Elements(1));
        let mut all = paths(&w);
        all.push(("bare_socketioxide_inline", &w.bare_inline, SIO, SIO));
        for (name, target, from, to) in all {
            let mut p = rt.block_on(pair(target, from, to));
            let msg = Msg::new(kind, p.b.id());
            group.bench_function(BenchmarkId::from_parameter(name), |bench| {
                bench.iter_custom(|iters| {
                    let opts = EmitOpts {
                        ack: false,
                        window: WINDOW,
                        rate: None,
                        count: Some(iters),
                        until: None,
                    };
                    rt.block_on(async {
                        let start = Instant::now();
                        let done = p.emit_loop(&msg, &opts).await.expect("emits");
                        assert_eq!(done, iters);
                        start.elapsed()
                    })
                })
            });
            rt.block_on(p.close());
        }
        group.finish();
    }
}

fn emit_acks(c: &mut Criterion) {
    let rt = runtime();
    let w = rt.block_on(world());
    for (kind, label, size) in [
        (PayloadKind::Small, "small", 64),
        (PayloadKind::Binary16k, "16k", CHUNK),
    ] {
        let mut group = c.benchmark_group(format!("emit_ack/{label}"));
        group.throughput(Throughput::Elements(1));
        for (name, target, from, to) in paths(&w) {
            let mut p = rt.block_on(pair(target, from, to));
            let msg = Msg::new(kind, p.b.id());
            group.bench_function(BenchmarkId::from_parameter(name), |bench| {
                bench.iter_custom(|iters| {
                    let opts = EmitOpts {
                        ack: true,
                        window: 1,
                        rate: None,
                        count: Some(iters),
                        until: None,
                    };
                    rt.block_on(async {
                        let start = Instant::now();
                        p.emit_loop(&msg, &opts).await.expect("acks");
                        start.elapsed()
                    })
                })
            });
            rt.block_on(p.close());
        }
        // A message of about the same size there and back, over quinn alone.
        for (name, a, b) in [
            ("bare_quinn_copy", &w.copy.a, &w.copy.b),
            ("quinn_direct", &w.direct.a, &w.direct.b),
        ] {
            let mut pp = rt.block_on(PingPong::start(a, b, size)).expect("ping-pong");
            group.bench_function(BenchmarkId::from_parameter(name), |bench| {
                bench.iter_custom(|iters| {
                    rt.block_on(async {
                        let start = Instant::now();
                        for _ in 0..iters {
                            pp.round_trip().await.expect("round trip");
                        }
                        start.elapsed()
                    })
                })
            });
        }
        group.finish();
    }
}

/// One long-lived quinn stream: a writer task fed byte budgets, a reader task counting.
struct Pipe {
    budgets: tokio::sync::mpsc::UnboundedSender<u64>,
    got: Arc<std::sync::atomic::AtomicU64>,
    progress: Arc<Notify>,
}

impl Pipe {
    async fn open(a: &quinn::Connection, b: &quinn::Connection) -> Pipe {
        let (mut send, _recv) = a.open_bi().await.expect("open");
        let (budgets, mut rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
        tokio::spawn(async move {
            let _recv = _recv;
            // Ends when the pipe or its connection goes (criterion may skip the bench).
            while let Some(n) = rx.recv().await {
                if quinn_ref::write_bytes(&mut send, n, CHUNK).await.is_err() {
                    return;
                }
            }
        });
        let got = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let progress = Arc::new(Notify::new());
        let b = b.clone();
        let (g, pr) = (got.clone(), progress.clone());
        tokio::spawn(async move {
            let Ok((_send, mut recv)) = b.accept_bi().await else {
                return;
            };
            while let Ok(Some(chunk)) = recv.read_chunk(1 << 20, true).await {
                g.fetch_add(chunk.bytes.len() as u64, Ordering::Relaxed);
                pr.notify_waiters();
            }
        });
        Pipe {
            budgets,
            got,
            progress,
        }
    }

    async fn pump(&self, n: u64) {
        let goal = self.got.load(Ordering::Relaxed) + n;
        self.budgets.send(n).expect("writer");
        loop {
            let progress = self.progress.notified();
            tokio::pin!(progress);
            progress.as_mut().enable();
            if self.got.load(Ordering::Relaxed) >= goal {
                return;
            }
            progress.await;
        }
    }
}

fn streams(c: &mut Criterion) {
    let rt = runtime();
    let w = rt.block_on(world());
    let mut group = c.benchmark_group("stream");
    group.throughput(Throughput::Bytes(STREAM_BYTES));
    for (name, target, from, to) in [
        ("quic_quic", &w.relay, Transport::Quic, Transport::Quic),
        ("sio_sio", &w.relay, SIO, SIO),
        ("sio_quic", &w.relay, SIO, Transport::Quic),
        ("bare_socketioxide", &w.bare, SIO, SIO),
    ] {
        let mut p = rt.block_on(async {
            let mut p = pair(target, from, to).await;
            p.open_stream().await.expect("stream");
            p
        });
        group.bench_function(BenchmarkId::from_parameter(name), |bench| {
            bench.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        p.pump(Some(STREAM_BYTES), None).await.expect("pump");
                    }
                    start.elapsed()
                })
            })
        });
        rt.block_on(p.close());
    }
    for (name, a, b) in [
        ("bare_quinn_copy", &w.copy.a, &w.copy.b),
        ("quinn_direct", &w.direct.a, &w.direct.b),
    ] {
        let pipe = rt.block_on(Pipe::open(a, b));
        group.bench_function(BenchmarkId::from_parameter(name), |bench| {
            bench.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        pipe.pump(STREAM_BYTES).await;
                    }
                    start.elapsed()
                })
            })
        });
    }
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .without_plots()
}

criterion_group! {
    name = benches;
    config = config();
    targets = emits, emit_acks, streams
}
criterion_main!(benches);
