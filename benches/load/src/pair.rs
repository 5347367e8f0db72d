//! Two clients paired through the relay, driven from one task: the sender's emits and the
//! receiver's reads share one loop, so a window of messages in flight needs no cross-task
//! signalling, and what is ready is handled and written in batches.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use bytes::Bytes;
use native_client::P2pStream;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::endpoint::{Endpoint, Ev, Msg, Req, Target, Transport, CHUNK_BYTES};
use crate::stats::Stats;

/// The sender `a` and the receiver `b`, paired (a registered b).
pub struct Pair {
    pub a: Endpoint,
    pub b: Endpoint,
    stats: Arc<Stats>,
    /// Tasks of native streams (writers and readers); they end with the pair.
    tasks: tokio::task::JoinSet<()>,
    writer: Option<mpsc::UnboundedSender<u64>>,
}

/// How an emit loop runs.
#[derive(Debug, Clone)]
pub struct EmitOpts {
    pub ack: bool,
    /// At most this many unanswered (ack) or unreceived (no ack) messages.
    pub window: usize,
    /// Messages per second for this pair; None: as fast as the window allows.
    pub rate: Option<f64>,
    /// Stop after this many completed messages.
    pub count: Option<u64>,
    /// Stop sending at this instant.
    pub until: Option<Instant>,
}

enum Side {
    A,
    B,
}

impl Pair {
    /// Connects `a` and `b` and pairs them.
    pub async fn connect(
        target: &Target,
        (ta, tb): (Transport, Transport),
        (ida, idb): (&str, &str),
        stats: Arc<Stats>,
    ) -> anyhow::Result<Pair> {
        let b = target.connect(tb, idb, 64 * 1024).await?;
        let a = target.connect(ta, ida, 64 * 1024).await?;
        let mut pair = Pair {
            a,
            b,
            stats,
            tasks: tokio::task::JoinSet::new(),
            writer: None,
        };
        pair.pair().await?;
        Ok(pair)
    }

    pub fn from_endpoints(a: Endpoint, b: Endpoint, stats: Arc<Stats>) -> Pair {
        Pair {
            a,
            b,
            stats,
            tasks: tokio::task::JoinSet::new(),
            writer: None,
        }
    }

    /// `a` registers `b` (b's side answers yes).
    pub async fn pair(&mut self) -> anyhow::Result<()> {
        let target = self.b.id().to_string();
        self.a.register(&target).await?;
        self.a.flush().await?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.step(Some(deadline)).await? {
                Some((
                    Side::A,
                    Ev::Reply {
                        req: Req::Register,
                        ok,
                        ..
                    },
                )) => {
                    if ok {
                        return Ok(());
                    }
                    bail!("{} could not pair with {target}", self.a.id());
                }
                Some((_, Ev::ServerError(e))) => bail!("pairing: SERVER_ERROR {e}"),
                Some((_, Ev::Closed(why))) => bail!("pairing: {why}"),
                Some(_) => {}
                None => bail!("pairing {} with {target} timed out", self.a.id()),
            }
        }
    }

    /// Waits for the next event of either side (None at `deadline`).
    async fn step(&mut self, deadline: Option<Instant>) -> anyhow::Result<Option<(Side, Ev)>> {
        let far = Instant::now() + Duration::from_secs(3600);
        let sleep = tokio::time::sleep_until(deadline.unwrap_or(far));
        tokio::pin!(sleep);
        let r = tokio::select! {
            r = self.a.next() => Some((Side::A, r)),
            r = self.b.next() => Some((Side::B, r)),
            _ = &mut sleep => None,
        };
        let r = match r {
            None => return Ok(None),
            Some((side, r)) => (side, r?),
        };
        self.b.flush().await?;
        Ok(Some(r))
    }

    /// Emits until `opts.count` messages completed or `opts.until` passed. Returns the
    /// number completed (received, or acked when `opts.ack`).
    pub async fn emit_loop(&mut self, msg: &Msg, opts: &EmitOpts) -> anyhow::Result<u64> {
        let stats = self.stats.clone();
        let start = Instant::now();
        let (mut sent, mut done) = (0u64, 0u64);
        let count = opts.count.unwrap_or(u64::MAX);
        let window = opts.window.max(1) as u64;
        let far = start + Duration::from_secs(3600 * 24);
        let until = opts.until.unwrap_or(far);
        let deadline = tokio::time::sleep_until(until);
        tokio::pin!(deadline);
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            if done >= count || Instant::now() >= until {
                return Ok(done);
            }
            let mut budget = (window - (sent - done)).min(count - sent);
            if let Some(rate) = opts.rate {
                let due = (start.elapsed().as_secs_f64() * rate) as u64;
                budget = budget.min(due.saturating_sub(sent));
            }
            if budget > 0 {
                for _ in 0..budget {
                    self.a.emit(msg, opts.ack).await?;
                }
                sent += budget;
                stats.sent.fetch_add(budget, Ordering::Relaxed);
                self.a.flush().await?;
            }
            let ev = tokio::select! {
                r = self.a.next() => Some((Side::A, r?)),
                r = self.b.next() => Some((Side::B, r?)),
                _ = tick.tick(), if opts.rate.is_some() => None,
                _ = &mut deadline => None,
            };
            let mut handle = |side: Side, ev: Ev| -> anyhow::Result<()> {
                match (side, ev) {
                    (Side::B, Ev::Received { .. }) => {
                        stats.received.fetch_add(1, Ordering::Relaxed);
                        if !opts.ack {
                            done += 1;
                        }
                    }
                    (
                        Side::A,
                        Ev::Reply {
                            req: Req::Emit,
                            sent,
                            ok,
                        },
                    ) => {
                        done += 1;
                        stats.acked.fetch_add(1, Ordering::Relaxed);
                        stats.record_latency(sent.elapsed());
                        if !ok {
                            stats.error("an emit's ack carried an error");
                        }
                    }
                    (_, Ev::ServerError(e)) => stats.error(format!("SERVER_ERROR {e}")),
                    (_, Ev::Closed(why)) => bail!("the pairing ended: {why}"),
                    _ => {}
                }
                Ok(())
            };
            if let Some((side, ev)) = ev {
                handle(side, ev)?;
            }
            // Everything else that is ready now, then one write per side.
            for _ in 0..256 {
                let mut any = false;
                if let Some(r) = self.b.try_next() {
                    handle(Side::B, r?)?;
                    any = true;
                }
                if let Some(r) = self.a.try_next() {
                    handle(Side::A, r?)?;
                    any = true;
                }
                if !any {
                    break;
                }
            }
            self.b.flush().await?;
        }
    }

    /// Opens a stream from `a` to `b`. Native ends get a writer task (fed by
    /// [`Pair::pump`]) or a reader task that counts what arrives into the stats.
    pub async fn open_stream(&mut self) -> anyhow::Result<()> {
        let target = self.b.id().to_string();
        self.a.open_stream(&target).await?;
        self.a.flush().await?;
        let deadline = Instant::now() + Duration::from_secs(30);
        let need_reader = self.b.transport() == Transport::Quic;
        let (mut opened, mut reader) = (false, !need_reader);
        while !(opened && reader) {
            match self.step(Some(deadline)).await? {
                Some((
                    Side::A,
                    Ev::Reply {
                        req: Req::OpenStream,
                        ok,
                        ..
                    },
                )) => {
                    if !ok {
                        bail!("{target} refused the stream");
                    }
                    opened = true;
                }
                Some((
                    Side::A,
                    Ev::Stream {
                        stream,
                        opened_here: true,
                    },
                )) => {
                    self.spawn_writer(stream);
                    opened = true;
                }
                Some((Side::B, Ev::Stream { stream, .. })) => {
                    self.spawn_reader(stream);
                    reader = true;
                }
                Some((_, Ev::ServerError(e))) => bail!("opening a stream: SERVER_ERROR {e}"),
                Some((_, Ev::Closed(why))) => bail!("opening a stream: {why}"),
                Some(_) => {}
                None => bail!("opening a stream to {target} timed out"),
            }
        }
        Ok(())
    }

    fn spawn_writer(&mut self, stream: P2pStream) {
        let (tx, mut rx) = mpsc::unbounded_channel::<u64>();
        self.writer = Some(tx);
        let (mut send, _recv) = stream.into_quinn();
        self.tasks.spawn(async move {
            let chunk = Bytes::from(vec![0x5a; CHUNK_BYTES]);
            while let Some(mut budget) = rx.recv().await {
                while budget > 0 {
                    let n = budget.min(CHUNK_BYTES as u64) as usize;
                    if send.write_chunk(chunk.slice(..n)).await.is_err() {
                        return;
                    }
                    budget -= n as u64;
                }
            }
            let _ = send.finish();
            let _ = send.stopped().await;
        });
    }

    fn spawn_reader(&mut self, stream: P2pStream) {
        let stats = self.stats.clone();
        let (_send, mut recv) = stream.into_quinn();
        self.tasks.spawn(async move {
            let _send = _send;
            while let Ok(Some(chunk)) = recv.read_chunk(1 << 20, true).await {
                stats
                    .stream_bytes
                    .fetch_add(chunk.bytes.len() as u64, Ordering::Relaxed);
                stats.stream_progress.notify_waiters();
            }
        });
    }

    /// Moves `bytes` (or, with None, as many as fit before `until`) over the stream opened
    /// with [`Pair::open_stream`], and waits until the receiver has them (count mode).
    pub async fn pump(&mut self, bytes: Option<u64>, until: Option<Instant>) -> anyhow::Result<()> {
        let stats = self.stats.clone();
        let start_bytes = stats.stream_bytes.load(Ordering::Relaxed);
        let target_bytes = bytes.unwrap_or(u64::MAX);
        let reached = |stats: &Stats| {
            stats.stream_bytes.load(Ordering::Relaxed) - start_bytes >= target_bytes
        };
        let until = until.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        match self.a.transport() {
            Transport::Quic => {
                let writer = self.writer.as_ref().context("no stream open")?;
                let _ = writer.send(target_bytes);
            }
            Transport::Sio(_) => {
                // Legacy chunks: one unacknowledged at a time, as the 1.4.1 plugin sends them.
                let chunk = Msg::chunk(self.b.id());
                let mut chunks_left = target_bytes.div_ceil(CHUNK_BYTES as u64);
                self.a.chunk(&chunk).await?;
                self.a.flush().await?;
                chunks_left -= 1;
                loop {
                    match self.step(Some(until)).await? {
                        None => return Ok(()),
                        Some((
                            Side::A,
                            Ev::Reply {
                                req: Req::Chunk,
                                sent,
                                ok,
                            },
                        )) => {
                            stats.acked.fetch_add(1, Ordering::Relaxed);
                            stats.record_latency(sent.elapsed());
                            if !ok {
                                stats.error("a stream chunk's ack carried an error");
                            }
                            if chunks_left == 0 {
                                break;
                            }
                            chunks_left -= 1;
                            self.a.chunk(&chunk).await?;
                            self.a.flush().await?;
                        }
                        Some((
                            Side::B,
                            Ev::Received {
                                bytes,
                                stream_chunk: true,
                            },
                        )) => {
                            stats
                                .stream_bytes
                                .fetch_add(bytes as u64, Ordering::Relaxed);
                        }
                        Some((_, Ev::ServerError(e))) => stats.error(format!("SERVER_ERROR {e}")),
                        Some((_, Ev::Closed(why))) => bail!("the stream ended: {why}"),
                        Some(_) => {}
                    }
                }
            }
        }
        // Wait for the receiver: a legacy receiver is read here, a native one by its task.
        loop {
            if reached(&stats) {
                return Ok(());
            }
            if self.b.transport() == Transport::Quic {
                let progress = stats.stream_progress.notified();
                tokio::pin!(progress);
                progress.as_mut().enable();
                if reached(&stats) {
                    return Ok(());
                }
                tokio::select! {
                    _ = progress => {}
                    _ = tokio::time::sleep_until(until) => return Ok(()),
                }
            } else {
                match self.step(Some(until)).await? {
                    None => return Ok(()),
                    Some((
                        Side::B,
                        Ev::Received {
                            bytes,
                            stream_chunk: true,
                        },
                    )) => {
                        stats
                            .stream_bytes
                            .fetch_add(bytes as u64, Ordering::Relaxed);
                    }
                    Some((_, Ev::Closed(why))) => bail!("the stream ended: {why}"),
                    Some(_) => {}
                }
            }
        }
    }

    pub async fn close(self) {
        drop(self.writer);
        drop(self.tasks);
        self.a.close().await;
        self.b.close().await;
    }
}
