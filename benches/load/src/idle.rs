//! Many idle connections held cheaply: Socket.IO clients in groups, one task per group
//! reading all of its websockets (answering v4 pings, sending v3 pings); QUIC clients are
//! native-client connections kept open (each has the library's own tasks).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{SplitSink, StreamExt};
use futures::SinkExt;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

use crate::endpoint::Target;
use crate::sio::{Eio, SioClient, SioOptions};

/// Connections per group task.
pub const GROUP: usize = 200;

/// Idle connections of one transport, held until dropped.
pub struct IdleSet {
    tasks: JoinSet<()>,
    quic: Vec<(native_client::Client, native_client::Incoming)>,
    pub connected: Arc<AtomicU64>,
    pub failed: Arc<AtomicU64>,
}

impl IdleSet {
    /// Starts opening `n` Socket.IO connections named `{prefix}{i}`; `connected` counts them.
    pub fn sio(url: &str, eio: Eio, prefix: &str, n: usize) -> IdleSet {
        let connected = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let mut tasks = JoinSet::new();
        for group in 0..n.div_ceil(GROUP) {
            let ids: Vec<String> = (group * GROUP..((group + 1) * GROUP).min(n))
                .map(|i| format!("{prefix}{i}"))
                .collect();
            let (url, connected, failed) = (url.to_string(), connected.clone(), failed.clone());
            tasks.spawn(async move {
                let mut options = SioOptions::new(eio);
                options.read_buffer = 4096;
                options.connect_timeout = Duration::from_secs(60);
                if url.contains("://127.") || url.contains("://localhost") {
                    // One loopback source address per group (see SioOptions::source).
                    options.source = Some(
                        std::net::Ipv4Addr::new(
                            127,
                            0,
                            1 + (group / 250) as u8,
                            1 + (group % 250) as u8,
                        )
                        .into(),
                    );
                }
                let mut sinks = Vec::with_capacity(ids.len());
                let mut streams = futures::stream::SelectAll::new();
                let mut interval = Duration::from_secs(25);
                for id in &ids {
                    match SioClient::connect(&url, id, &options).await {
                        Ok(client) => {
                            let (ws, _, ping) = client.into_parts();
                            interval = ping;
                            let (sink, stream) = ws.split();
                            let i = sinks.len();
                            sinks.push(sink);
                            streams.push(stream.map(move |m| (i, m)));
                            connected.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            if failed.fetch_add(1, Ordering::Relaxed) == 0 {
                                eprintln!("idle {id}: {e:#}");
                            }
                        }
                    }
                }
                hold(eio, sinks, streams, interval).await;
            });
        }
        IdleSet {
            tasks,
            quic: Vec::new(),
            connected,
            failed,
        }
    }

    /// Opens `n` QUIC connections, `concurrency` handshakes at a time.
    pub async fn quic(
        target: &Target,
        prefix: &str,
        n: usize,
        concurrency: usize,
        progress: impl Fn(u64),
    ) -> anyhow::Result<IdleSet> {
        let connected = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let mut quic = Vec::with_capacity(n);
        let mut opens = futures::stream::iter(0..n)
            .map(|i| {
                let options = target.quic_options(&format!("{prefix}{i}"));
                async move {
                    native_client::Client::connect(options?)
                        .await
                        .map_err(anyhow::Error::from)
                }
            })
            .buffer_unordered(concurrency.max(1));
        let mut last = std::time::Instant::now();
        while let Some(r) = opens.next().await {
            match r {
                Ok(c) => {
                    quic.push(c);
                    connected.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    if failed.fetch_add(1, Ordering::Relaxed) == 0 {
                        eprintln!("idle QUIC client: {e:#}");
                    }
                }
            }
            if last.elapsed() >= Duration::from_secs(1) {
                last = std::time::Instant::now();
                progress(connected.load(Ordering::Relaxed));
            }
        }
        Ok(IdleSet {
            tasks: JoinSet::new(),
            quic,
            connected,
            failed,
        })
    }

    pub fn count(&self) -> u64 {
        self.connected.load(Ordering::Relaxed)
    }

    pub fn len_quic(&self) -> usize {
        self.quic.len()
    }

    pub fn abort(&mut self) {
        self.tasks.abort_all();
        self.quic.clear();
    }
}

type Sink = SplitSink<tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>, Message>;

async fn hold<S>(eio: Eio, mut sinks: Vec<Sink>, mut streams: S, interval: Duration)
where
    S: futures::Stream<
            Item = (
                usize,
                Result<Message, tokio_tungstenite::tungstenite::Error>,
            ),
        > + Unpin,
{
    let mut ping = tokio::time::interval(interval.mul_f32(0.8));
    ping.tick().await;
    loop {
        tokio::select! {
            item = streams.next() => {
                let Some((i, msg)) = item else { return };
                if let Ok(Message::Text(t)) = msg {
                    if t.as_str() == "2" {
                        let _ = sinks[i].send(Message::Text("3".into())).await;
                    }
                }
            }
            _ = ping.tick(), if eio == Eio::V3 => {
                for sink in &mut sinks {
                    let _ = sink.send(Message::Text("2".into())).await;
                }
            }
        }
    }
}
