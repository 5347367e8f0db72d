//! Cluster mode: what crossing nodes costs, each cross-node figure beside the same-node
//! one in the same run (ratios are the figures to read; absolute numbers move with the
//! machine). Two relay nodes run in this process with `--cluster` on a `redis-server` this
//! bench starts on a free loopback port (no persistence); without `redis-server` it says so
//! and measures nothing.
//!
//! - `cluster_emit/{same_node,cross_node}`: 1000 one-way native emits per iteration, timed
//!   until the receiver has all of them (control over Redis pub/sub when cross-node);
//! - `cluster_emit_ack/...`: one emit with ack at a time: the round trip;
//! - `cluster_stream/...`: 8 MiB over one spliced QUIC stream per iteration (over the
//!   node-to-node QUIC link when cross-node).
//!
//! Run: `cargo bench --bench cluster`.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use native_client::{Args, Client, ClientEvent, ConnectOptions, Incoming, Trust};
use p2p_relay::{Server, Settings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::runtime::Runtime;
use tokio::sync::mpsc;

const EMITS: u64 = 1000;
const STREAM_BYTES: usize = 8 * 1024 * 1024;

struct RedisChild(Child);

impl Drop for RedisChild {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_redis() -> Option<(RedisChild, u16)> {
    let bin = ["/usr/bin/redis-server", "/usr/local/bin/redis-server"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())?;
    let port = TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let child = Command::new(bin)
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let child = RedisChild(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some((child, port));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// One pair and what its receiver reports: plain events counted, acks answered at once,
/// streams accepted and read to their end (their length reported).
struct Pair {
    sender: Client,
    target: String,
    events: mpsc::UnboundedReceiver<usize>,
    _receiver: Client,
}

async fn node(dir: &std::path::Path, redis_port: u16, secret: &std::path::Path) -> Server {
    let mut settings = Settings::on_free_local_ports(dir);
    // The nodes on their defaults; only what makes them a cluster is set here.
    settings.cluster.redis_url = Some(format!("redis://127.0.0.1:{redis_port}"));
    settings.cluster.cluster_secret_file = Some(secret.to_path_buf());
    Server::start(&settings).await.expect("a cluster node")
}

async fn connect(server: &Server, id: &str) -> (Client, Incoming) {
    let ca = server.ca().expect("development CA").path.clone();
    Client::connect(
        ConnectOptions::new(id)
            .addr(server.quic_addr())
            .trust(Trust::CaFile(ca)),
    )
    .await
    .expect("connect")
}

async fn pair(from: &Server, to: &Server, a: &str, b: &str) -> Pair {
    let (sender, _a_in) = connect(from, a).await;
    let (receiver, mut b_in) = connect(to, b).await;
    let asking = tokio::spawn({
        let (sender, b) = (sender.clone(), b.to_owned());
        async move { sender.register(&b).await }
    });
    match b_in.next().await {
        Some(ClientEvent::RegisterRequest(r)) => r.accept(),
        other => panic!("expected a pairing request, got {other:?}"),
    }
    assert!(asking.await.unwrap().unwrap());
    let (tx, events) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(event) = b_in.next().await {
            match event {
                ClientEvent::Event {
                    ack: Some(ack),
                    args,
                    ..
                } => {
                    let _ = ack.send(args);
                }
                ClientEvent::Event { .. } => {
                    let _ = tx.send(1);
                }
                ClientEvent::StreamRequest(r) => r.accept(),
                ClientEvent::Stream(stream) => {
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        let (mut read, _write) = stream.split();
                        let mut buf = vec![0u8; 64 * 1024];
                        let mut total = 0;
                        while let Ok(n) = read.read(&mut buf).await {
                            if n == 0 {
                                break;
                            }
                            total += n;
                        }
                        let _ = tx.send(total);
                    });
                }
                _ => {}
            }
        }
    });
    Pair {
        sender,
        target: b.to_owned(),
        events,
        _receiver: receiver,
    }
}

fn benches(c: &mut Criterion) {
    let Some((_redis, port)) = start_redis() else {
        println!(
            "SKIPPED benches/cluster: redis-server is not installed (apt-get install redis-server)"
        );
        return;
    };
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "bench-cluster-secret").unwrap();
    let (n1, n2, mut pairs) = rt.block_on(async {
        let n1 = node(&dir.path().join("n1"), port, &secret).await;
        let n2 = node(&dir.path().join("n2"), port, &secret).await;
        let same = pair(&n1, &n1, "same-a", "same-b").await;
        let cross = pair(&n1, &n2, "cross-a", "cross-b").await;
        (n1, n2, vec![("same_node", same), ("cross_node", cross)])
    });

    let mut group = c.benchmark_group("cluster_emit");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(EMITS));
    for (label, p) in pairs.iter_mut() {
        group.bench_function(*label, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        for n in 0..EMITS {
                            p.sender.emit("e", Args::one(n)).await.unwrap();
                        }
                        for _ in 0..EMITS {
                            p.events.recv().await.unwrap();
                        }
                    }
                    start.elapsed()
                })
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("cluster_emit_ack");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(5));
    for (label, p) in pairs.iter_mut() {
        group.bench_function(*label, |b| {
            b.to_async(&rt).iter(|| {
                let sender = p.sender.clone();
                async move { sender.emit_with_ack("q", Args::one(1)).await.unwrap() }
            })
        });
    }
    group.finish();

    let data = vec![0x5Au8; STREAM_BYTES];
    let mut group = c.benchmark_group("cluster_stream");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(8));
    group.throughput(Throughput::Bytes(STREAM_BYTES as u64));
    for (label, p) in pairs.iter_mut() {
        group.bench_function(*label, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let stream = p.sender.open_stream(&p.target).await.unwrap().unwrap();
                        let (_read, mut write) = stream.split();
                        write.write_all(&data).await.unwrap();
                        write.shutdown().await.unwrap();
                        let got = p.events.recv().await.unwrap();
                        assert_eq!(got, STREAM_BYTES);
                    }
                    start.elapsed()
                })
            })
        });
    }
    group.finish();

    rt.block_on(async {
        drop(pairs);
        n1.shutdown().await;
        n2.shutdown().await;
    });
}

criterion_group!(cluster, benches);
criterion_main!(cluster);
