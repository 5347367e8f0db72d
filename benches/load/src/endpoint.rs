//! One client of the relay, of either transport, behind one small interface: the pair
//! drivers (`crate::pair`) ask it to register, emit, open streams and send chunks, and read
//! back what happened. Whatever the relay asks a client (pairing, stream requests, acks of
//! relayed events) is answered at once, with "yes", inside [`Endpoint::next`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use native_client::{Args, Client, ClientEvent, ConnectOptions, Incoming, P2pStream, Trust};
use rmpv::Value;
use tokio::time::Instant;

use crate::sio::{json_str, Eio, Kind, SioClient, SioOptions};

/// Which client to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Sio(Eio),
    Quic,
}

impl Transport {
    pub fn parse(s: &str) -> anyhow::Result<Self> {
        Ok(match s {
            "sio3" | "v3" | "eio3" => Transport::Sio(Eio::V3),
            "sio4" | "v4" | "eio4" => Transport::Sio(Eio::V4),
            "quic" => Transport::Quic,
            other => anyhow::bail!("unknown transport {other:?}: sio3, sio4 or quic"),
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Transport::Sio(Eio::V3) => "sio3",
            Transport::Sio(Eio::V4) => "sio4",
            Transport::Quic => "quic",
        }
    }
}

/// Where the relay is.
#[derive(Debug, Clone)]
pub struct Target {
    /// `http://host:port` of the Socket.IO gateway.
    pub socketio: Option<String>,
    pub quic: Option<SocketAddr>,
    /// The CA file QUIC clients trust (None: the native CLI's default, the development CA in
    /// the relay's default data directory).
    pub ca: Option<PathBuf>,
    /// Socket.IO clients batch what is ready into one write (default: one write per
    /// packet, as socket.io-client does).
    pub batch_writes: bool,
    /// `quic` is a bare quinn copy relay (`--spawn-copy-relay`), not the relay's front end.
    pub raw_quic: bool,
}

impl Target {
    pub async fn connect(
        &self,
        transport: Transport,
        id: &str,
        read_buffer: usize,
    ) -> anyhow::Result<Endpoint> {
        match transport {
            Transport::Sio(eio) => {
                let url = self
                    .socketio
                    .as_deref()
                    .context("no Socket.IO address (--socketio-url or --spawn)")?;
                let mut options = SioOptions::new(eio);
                options.read_buffer = read_buffer;
                options.write_each = !self.batch_writes;
                Ok(Endpoint::Sio(SioEnd::new(
                    SioClient::connect(url, id, &options).await?,
                    id,
                )))
            }
            Transport::Quic => {
                let (client, incoming) = Client::connect(self.quic_options(id)?)
                    .await
                    .with_context(|| format!("QUIC client {id}"))?;
                Ok(Endpoint::Quic(QuicEnd::new(client, incoming, id)))
            }
        }
    }

    pub fn quic_options(&self, id: &str) -> anyhow::Result<ConnectOptions> {
        let addr = self.quic.context("no QUIC address (--quic or --spawn)")?;
        let mut options = ConnectOptions::new(id)
            .addr(addr)
            .connect_timeout(Duration::from_secs(30));
        if let Some(ca) = &self.ca {
            options = options.trust(Trust::CaFile(ca.clone()));
        }
        Ok(options)
    }
}

/// What a message carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadKind {
    /// One small JSON object, `{"n":1,"s":"0123456789abcdef"}`.
    Small,
    /// One 16 KiB binary argument (a Buffer).
    Binary16k,
}

pub const CHUNK_BYTES: usize = 16 * 1024;
pub const RELAYED_EVENT: &str = "m";
pub const P2P_EMIT_STREAM: &str = "P2P_EMIT_STREAM";

/// One message, pre-encoded for both transports, toward one target.
#[derive(Clone)]
pub struct Msg {
    /// `["P2P_EMIT",{...}]` and `["P2P_EMIT_ACKNOWLEDGE",{...}]`.
    sio_emit: String,
    sio_emit_ack: String,
    attachments: Vec<Bytes>,
    quic_event: &'static str,
    quic_args: Args,
}

impl Msg {
    pub fn new(kind: PayloadKind, target: &str) -> Self {
        Self::build(kind, target, RELAYED_EVENT)
    }

    /// A legacy stream chunk: a 16 KiB binary `P2P_EMIT_STREAM`.
    pub fn chunk(target: &str) -> Self {
        Self::build(PayloadKind::Binary16k, target, P2P_EMIT_STREAM)
    }

    fn build(kind: PayloadKind, target: &str, event: &'static str) -> Self {
        let (arg, attachments, value) = match kind {
            PayloadKind::Small => (
                r#"{"n":1,"s":"0123456789abcdef"}"#.to_string(),
                vec![],
                Value::Map(vec![
                    (Value::from("n"), Value::from(1)),
                    (Value::from("s"), Value::from("0123456789abcdef")),
                ]),
            ),
            PayloadKind::Binary16k => {
                let data = Bytes::from(vec![0x5a; CHUNK_BYTES]);
                (
                    r#"{"_placeholder":true,"num":0}"#.to_string(),
                    vec![data.clone()],
                    Value::Binary(data.to_vec()),
                )
            }
        };
        let payload = format!(
            r#"{{"targetClientId":{},"event":{},"args":[{arg}]}}"#,
            json_str(target),
            json_str(event)
        );
        Msg {
            sio_emit: format!(r#"["P2P_EMIT",{payload}]"#),
            sio_emit_ack: format!(r#"["P2P_EMIT_ACKNOWLEDGE",{payload}]"#),
            attachments,
            quic_event: event,
            quic_args: Args::one(value),
        }
    }

    pub fn payload_bytes(&self) -> usize {
        match self.attachments.first() {
            Some(a) => a.len(),
            None => 30,
        }
    }
}

/// What a request was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Req {
    Register,
    OpenStream,
    Emit,
    Chunk,
}

/// What happened on an endpoint.
pub enum Ev {
    /// A relayed event arrived (and was acked if it asked for one).
    Received {
        bytes: usize,
        stream_chunk: bool,
    },
    /// The answer to one of this endpoint's requests.
    Reply {
        req: Req,
        sent: Instant,
        ok: bool,
    },
    /// A native stream: opened by this client (`open_stream`), or by the peer and accepted.
    Stream {
        stream: P2pStream,
        opened_here: bool,
    },
    ServerError(String),
    /// The pairing or the connection ended.
    Closed(String),
}

// Few endpoints exist (two per pair), so the size difference between the variants costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum Endpoint {
    Sio(SioEnd),
    Quic(QuicEnd),
}

impl Endpoint {
    pub fn id(&self) -> &str {
        match self {
            Endpoint::Sio(e) => &e.id,
            Endpoint::Quic(e) => &e.id,
        }
    }

    pub fn transport(&self) -> Transport {
        match self {
            Endpoint::Sio(e) => Transport::Sio(e.client.eio()),
            Endpoint::Quic(_) => Transport::Quic,
        }
    }

    /// The next thing that happened. Cancel-safe.
    pub async fn next(&mut self) -> anyhow::Result<Ev> {
        match self {
            Endpoint::Sio(e) => e.next().await,
            Endpoint::Quic(e) => e.next().await,
        }
    }

    /// An event that is ready now, without waiting.
    pub fn try_next(&mut self) -> Option<anyhow::Result<Ev>> {
        self.next().now_or_never()
    }

    /// Writes what was queued (Socket.IO; QUIC clients write on their own).
    pub async fn flush(&mut self) -> anyhow::Result<()> {
        match self {
            Endpoint::Sio(e) => e.client.flush().await,
            Endpoint::Quic(_) => Ok(()),
        }
    }

    pub async fn register(&mut self, target: &str) -> anyhow::Result<()> {
        match self {
            Endpoint::Sio(e) => {
                let id = e.request(Req::Register);
                let body = format!(r#"["P2P_REGISTER",{}]"#, json_str(target));
                e.client.feed_event(Some(id), &body).await
            }
            Endpoint::Quic(e) => {
                let client = e.client.clone();
                let target = target.to_string();
                e.push(async move {
                    let sent = Instant::now();
                    let ok = client.register(&target).await.unwrap_or(false);
                    Some(Ev::Reply {
                        req: Req::Register,
                        sent,
                        ok,
                    })
                });
                Ok(())
            }
        }
    }

    pub async fn open_stream(&mut self, target: &str) -> anyhow::Result<()> {
        match self {
            Endpoint::Sio(e) => {
                let id = e.request(Req::OpenStream);
                let body = format!(r#"["P2P_REGISTER_STREAM",{}]"#, json_str(target));
                e.client.feed_event(Some(id), &body).await
            }
            Endpoint::Quic(e) => {
                let client = e.client.clone();
                let target = target.to_string();
                e.push(async move {
                    let sent = Instant::now();
                    match client.open_stream(&target).await {
                        Ok(Some(stream)) => Some(Ev::Stream {
                            stream,
                            opened_here: true,
                        }),
                        _ => Some(Ev::Reply {
                            req: Req::OpenStream,
                            sent,
                            ok: false,
                        }),
                    }
                });
                Ok(())
            }
        }
    }

    /// Emits `msg`, with or without an ack (its reply comes back as `Ev::Reply`).
    pub async fn emit(&mut self, msg: &Msg, ack: bool) -> anyhow::Result<()> {
        self.send(msg, ack, Req::Emit).await
    }

    /// Sends a legacy stream chunk (`Msg::chunk`), acked (Socket.IO only).
    pub async fn chunk(&mut self, msg: &Msg) -> anyhow::Result<()> {
        self.send(msg, true, Req::Chunk).await
    }

    async fn send(&mut self, msg: &Msg, ack: bool, req: Req) -> anyhow::Result<()> {
        match self {
            Endpoint::Sio(e) => {
                let id = ack.then(|| e.request(req));
                let body = if ack {
                    &msg.sio_emit_ack
                } else {
                    &msg.sio_emit
                };
                if msg.attachments.is_empty() {
                    e.client.feed_event(id, body).await
                } else {
                    e.client.feed_binary_event(id, body, &msg.attachments).await
                }
            }
            Endpoint::Quic(e) => {
                let client = e.client.clone();
                let event = msg.quic_event;
                let args = msg.quic_args.clone();
                if ack {
                    e.push(async move {
                        let sent = Instant::now();
                        let ok = client.emit_with_ack(event, args).await.is_ok();
                        Some(Ev::Reply { req, sent, ok })
                    });
                } else {
                    e.push(async move {
                        let _ = client.emit(event, args).await;
                        None
                    });
                }
                Ok(())
            }
        }
    }

    pub async fn close(self) {
        match self {
            Endpoint::Sio(e) => e.client.close().await,
            Endpoint::Quic(e) => e.client.close().await,
        }
    }
}

pub struct SioEnd {
    pub client: SioClient,
    id: String,
    next_ack: u64,
    pending: HashMap<u64, (Req, Instant)>,
}

impl SioEnd {
    pub fn new(client: SioClient, id: &str) -> Self {
        SioEnd {
            client,
            id: id.to_string(),
            next_ack: 0,
            pending: HashMap::with_capacity(1024),
        }
    }

    fn request(&mut self, req: Req) -> u64 {
        let id = self.next_ack;
        self.next_ack += 1;
        self.pending.insert(id, (req, Instant::now()));
        id
    }

    async fn next(&mut self) -> anyhow::Result<Ev> {
        loop {
            let packet = self.client.next().await?;
            match packet.kind {
                Kind::Event | Kind::BinaryEvent => {
                    let name = packet.event_name().unwrap_or("");
                    match name {
                        "P2P_REGISTER" | "P2P_REGISTER_STREAM" => {
                            if let Some(id) = packet.id {
                                self.client.feed_ack(id, "[true]").await?;
                                self.client.flush().await?;
                            }
                        }
                        "P2P_UNREGISTER" => {
                            if let Some(id) = packet.id {
                                self.client.feed_ack(id, "[]").await?;
                            }
                            return Ok(Ev::Closed("P2P_UNREGISTER".into()));
                        }
                        "P2P_DISCONNECT" => return Ok(Ev::Closed("P2P_DISCONNECT".into())),
                        "SERVER_ERROR" => return Ok(Ev::ServerError(packet.body().to_string())),
                        _ => {
                            let stream_chunk = name == P2P_EMIT_STREAM;
                            if let Some(id) = packet.id {
                                self.client.feed_ack(id, "[]").await?;
                            }
                            return Ok(Ev::Received {
                                bytes: packet.payload_len(),
                                stream_chunk,
                            });
                        }
                    }
                }
                Kind::Ack | Kind::BinaryAck => {
                    let Some((req, sent)) = packet.id.and_then(|id| self.pending.remove(&id))
                    else {
                        continue;
                    };
                    let body = packet.body();
                    let ok = match req {
                        Req::Register | Req::OpenStream => body.starts_with("[true"),
                        Req::Emit | Req::Chunk => !body.starts_with("[{\"error\""),
                    };
                    return Ok(Ev::Reply { req, sent, ok });
                }
                Kind::Disconnect => return Ok(Ev::Closed("Socket.IO disconnect".into())),
                _ => {}
            }
        }
    }
}

pub struct QuicEnd {
    pub client: Client,
    incoming: Incoming,
    id: String,
    futs: FuturesUnordered<BoxFuture<'static, Option<Ev>>>,
}

impl QuicEnd {
    pub fn new(client: Client, incoming: Incoming, id: &str) -> Self {
        QuicEnd {
            client,
            incoming,
            id: id.to_string(),
            futs: FuturesUnordered::new(),
        }
    }

    fn push(&mut self, f: impl std::future::Future<Output = Option<Ev>> + Send + 'static) {
        self.futs.push(f.boxed());
    }

    async fn next(&mut self) -> anyhow::Result<Ev> {
        loop {
            tokio::select! {
                biased;
                Some(done) = self.futs.next(), if !self.futs.is_empty() => {
                    if let Some(ev) = done {
                        return Ok(ev);
                    }
                }
                event = self.incoming.next() => {
                    let Some(event) = event else {
                        return Ok(Ev::Closed("connection ended".into()));
                    };
                    match event {
                        ClientEvent::RegisterRequest(r) | ClientEvent::StreamRequest(r) => r.accept(),
                        ClientEvent::Event { event, args, ack } => {
                            let stream_chunk = event == P2P_EMIT_STREAM;
                            let bytes = args.iter().map(value_len).sum();
                            if let Some(ack) = ack {
                                let _ = ack.send(Args::new());
                            }
                            return Ok(Ev::Received { bytes, stream_chunk });
                        }
                        ClientEvent::Stream(stream) => {
                            return Ok(Ev::Stream { stream, opened_here: false })
                        }
                        ClientEvent::ServerError { message: e, .. } => return Ok(Ev::ServerError(e)),
                        ClientEvent::Unregistered => return Ok(Ev::Closed("unregistered".into())),
                        ClientEvent::PeerDisconnected => {
                            return Ok(Ev::Closed("peer disconnected".into()))
                        }
                        ClientEvent::Closed(reason) => return Ok(Ev::Closed(reason.to_string())),
                        _ => {}
                    }
                }
            }
        }
    }
}

fn value_len(v: &Value) -> usize {
    match v {
        Value::Binary(b) => b.len(),
        Value::String(s) => s.as_bytes().len(),
        Value::Array(a) => a.iter().map(value_len).sum(),
        Value::Map(m) => m.iter().map(|(k, v)| value_len(k) + value_len(v)).sum(),
        _ => 8,
    }
}
