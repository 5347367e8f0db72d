//! The transports side by side, in one run on one machine, so that their ratio is the
//! figure to read (absolute numbers move with whatever else the machine is doing):
//!
//! - `quic_stream/direct`: one QUIC stream between two quinn endpoints, no relay;
//! - `quic_stream/relayed`: the same bytes client -> relay -> client through the relay's
//!   QUIC front end (a stream spliced QUIC to QUIC);
//! - `quic_emit_ack/relayed`: one emit with ack round trip between two native clients.
//!
//! Everything runs in this process on one tokio runtime, so the relay, the sender and the
//! receiver share the machine's two cores; the Socket.IO figures come from the node load
//! script (`tests/interop/load.js`), since no Rust Socket.IO client is in the tree.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use native_client::{Args, Client, ClientEvent, ConnectOptions};
use p2p_relay::{Server, Settings};
use quinn::{RecvStream, SendStream};

const STREAM_BYTES: usize = 64 * 1024 * 1024;
const CHUNK: usize = 64 * 1024;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Writes `STREAM_BYTES` in chunks that share one buffer, then finishes, and keeps the
/// stream until the reader is done (dropping it early would cut the tail).
async fn write_all(mut send: SendStream) {
    let chunk = Bytes::from(vec![0x5a; CHUNK]);
    let mut left = STREAM_BYTES;
    while left > 0 {
        let n = left.min(CHUNK);
        send.write_chunk(chunk.slice(..n)).await.expect("write");
        left -= n;
    }
    send.finish().expect("finish");
    let _ = send.stopped().await;
}

async fn read_all(mut recv: RecvStream) {
    let mut got = 0;
    while let Some(chunk) = recv.read_chunk(CHUNK, true).await.expect("read") {
        got += chunk.bytes.len();
    }
    assert_eq!(got, STREAM_BYTES);
}

/// Two quinn endpoints talking directly, with the relay's own development certificates.
struct Direct {
    client: quinn::Connection,
    server: quinn::Connection,
    _endpoints: (quinn::Endpoint, quinn::Endpoint),
}

async fn direct(dir: &std::path::Path) -> Direct {
    let dev = certs::DevCerts::load_or_create(dir).expect("certs");
    let alpn: &[&[u8]] = &[b"bench"];
    let tls = certs::server_config(&dev.server_identity(), alpn).expect("server tls");
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls).expect("quic tls");
    let server_config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let server = quinn::Endpoint::server(server_config, "127.0.0.1:0".parse().unwrap())
        .expect("server endpoint");
    let addr: SocketAddr = server.local_addr().unwrap();
    let tls = dev.trust().client_config(alpn).expect("client tls");
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).expect("quic tls");
    let mut client = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    client.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    let connecting = client.connect(addr, "localhost").unwrap();
    let (client_conn, server_conn) = tokio::join!(connecting, async {
        server.accept().await.unwrap().await.unwrap()
    });
    Direct {
        client: client_conn.unwrap(),
        server: server_conn,
        _endpoints: (server, client),
    }
}

/// A relay with two native clients paired through it; B accepts every stream request.
struct Relayed {
    _server: Server,
    a: Client,
    _a_incoming: native_client::Incoming,
    b_streams: tokio::sync::mpsc::Receiver<native_client::P2pStream>,
}

async fn relayed(dir: &std::path::Path) -> Relayed {
    let settings = Settings::on_free_local_ports(dir);
    let server = Server::start(&settings).await.expect("relay");
    let options = |id: &str| {
        ConnectOptions::new(id)
            .addr(server.quic_addr())
            .trust(certs::Trust::CaFile(server.ca().unwrap().path.clone()))
    };
    let (a, _a_incoming) = Client::connect(options("A")).await.expect("A");
    let (b, mut b_incoming) = Client::connect(options("B")).await.expect("B");
    let (tx, b_streams) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        let _b = b;
        while let Some(event) = b_incoming.next().await {
            match event {
                ClientEvent::RegisterRequest(r) | ClientEvent::StreamRequest(r) => r.accept(),
                ClientEvent::Event { ack: Some(ack), .. } => {
                    let _ = ack.send(Args::new());
                }
                ClientEvent::Stream(s) => {
                    let _ = tx.send(s).await;
                }
                _ => {}
            }
        }
    });
    assert!(a.register("B").await.expect("register"));
    Relayed {
        _server: server,
        a,
        _a_incoming,
        b_streams,
    }
}

fn quic_stream(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let direct = rt.block_on(direct(&dir.path().join("direct")));
    let mut relayed = rt.block_on(relayed(&dir.path().join("relay")));

    let mut group = c.benchmark_group("quic_stream");
    group
        .throughput(Throughput::Bytes(STREAM_BYTES as u64))
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(8));

    group.bench_function("direct", |bench| {
        bench.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let (send, _) = direct.client.open_bi().await.unwrap();
                    // The server sees the stream once its first bytes arrive.
                    let writer = tokio::spawn(write_all(send));
                    let (_, recv) = direct.server.accept_bi().await.unwrap();
                    read_all(recv).await;
                    writer.abort();
                }
                start.elapsed()
            })
        })
    });

    group.bench_function("relayed", |bench| {
        bench.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let stream = relayed.a.open_stream("B").await.unwrap().expect("accepted");
                    let (send, _) = stream.into_quinn();
                    let writer = tokio::spawn(write_all(send));
                    // B's end is the stream the relay opened toward it.
                    let b_stream = relayed.b_streams.recv().await.expect("B's stream");
                    let (_, recv) = b_stream.into_quinn();
                    read_all(recv).await;
                    writer.abort();
                }
                start.elapsed()
            })
        })
    });
    group.finish();

    let mut group = c.benchmark_group("quic_emit_ack");
    group
        .throughput(Throughput::Elements(1))
        .measurement_time(Duration::from_secs(5));
    group.bench_function("relayed", |bench| {
        bench.to_async(&rt).iter(|| async {
            relayed
                .a
                .emit_with_ack("ping", Args::new().with(1))
                .await
                .expect("ack")
        })
    });
    group.finish();
}

criterion_group!(benches, quic_stream);
criterion_main!(benches);
