//! A bare Socket.IO client (engine.io 4 over websocket, Socket.IO protocol 5) for tests that
//! must send what a well-behaved client never would: placeholders out of order, values
//! nested too deep, numbers out of range, requests from a client that never reads.
//!
//! Packets are spoken as text: `42[...]` is an event, `43<id>[...]` an ack, `45<n>-[...]` an
//! event with `n` binary attachments that follow as binary frames.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// The longest any single step may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// One Socket.IO packet from the relay, its placeholders replaced by nothing: the JSON as
/// sent, and the attachments beside it.
#[derive(Debug, Clone, PartialEq)]
pub enum Packet {
    /// An event: its name, its arguments, the ack id when the relay wants an answer.
    Event {
        name: String,
        args: Vec<Value>,
        ack: Option<u64>,
        attachments: Vec<Vec<u8>>,
    },
    /// The answer to one of this client's requests.
    Ack {
        id: u64,
        args: Vec<Value>,
        attachments: Vec<Vec<u8>>,
    },
    /// The relay left the namespace (a Socket.IO disconnect packet) or closed the transport.
    Disconnected,
}

/// What a websocket runs over: a TCP socket, or a TLS stream for wss.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

pub struct Sio {
    ws: WebSocketStream<Box<dyn Io>>,
    next_ack: u64,
    /// Packets read while looking for another one.
    backlog: VecDeque<Packet>,
}

/// Why a connection attempt failed: the relay's connect error message, or the transport's.
#[derive(Debug)]
pub enum ConnectFailure {
    Refused(String),
    Transport(String),
}

impl Sio {
    /// Connects to the gateway at `addr` with `query` (e.g. `clientId=A`) and joins `/`.
    pub async fn connect_query(addr: SocketAddr, query: &str) -> Result<Sio, ConnectFailure> {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| ConnectFailure::Transport(e.to_string()))?;
        tcp.set_nodelay(true).ok();
        Self::connect_on(Box::new(tcp), &addr.to_string(), query).await
    }

    /// [`Sio::connect_query`] over a connection already made (a TLS stream, for wss), to
    /// `host` (the Host header).
    pub async fn connect_on(
        io: Box<dyn Io>,
        host: &str,
        query: &str,
    ) -> Result<Sio, ConnectFailure> {
        Self::connect_on_with_headers(io, host, query, &[]).await
    }

    /// [`Sio::connect_on`] with extra headers on the websocket handshake request (e.g. an
    /// `X-Forwarded-For` the relay should ignore).
    pub async fn connect_on_with_headers(
        io: Box<dyn Io>,
        host: &str,
        query: &str,
        headers: &[(&'static str, &str)],
    ) -> Result<Sio, ConnectFailure> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        // The scheme only shapes the handshake request; the stream below is what it is.
        let url = format!("ws://{host}/socket.io/?EIO=4&transport=websocket&{query}");
        let mut request = url.into_client_request().expect("a websocket request");
        for (name, value) in headers {
            request
                .headers_mut()
                .append(*name, value.parse().expect("a header value"));
        }
        let (ws, _) = tokio_tungstenite::client_async(request, io)
            .await
            .map_err(|e| ConnectFailure::Transport(e.to_string()))?;
        let mut sio = Sio {
            ws,
            next_ack: 0,
            backlog: VecDeque::new(),
        };
        let open = sio.text().await.map_err(ConnectFailure::Transport)?;
        if !open.starts_with('0') {
            return Err(ConnectFailure::Transport(format!(
                "expected an open packet: {open}"
            )));
        }
        sio.send_text("40").await;
        loop {
            let text = sio.text().await.map_err(ConnectFailure::Transport)?;
            if text.starts_with("40") {
                return Ok(sio);
            }
            if let Some(error) = text.strip_prefix("44") {
                let error: Value = serde_json::from_str(error).expect("connect error JSON");
                let message = error["message"].as_str().unwrap_or_default().to_owned();
                return Err(ConnectFailure::Refused(message));
            }
        }
    }

    /// Connects as `client_id` (percent-encoded for the query).
    pub async fn connect(addr: SocketAddr, client_id: &str) -> Sio {
        let query = format!("clientId={}", encode(client_id));
        Self::admitted(client_id, Self::connect_query(addr, &query)).await
    }

    /// [`Sio::connect`] over a connection already made (see [`Sio::connect_on`]).
    pub async fn connect_as_on(io: Box<dyn Io>, host: &str, client_id: &str) -> Sio {
        let query = format!("clientId={}", encode(client_id));
        Self::admitted(client_id, Self::connect_on(io, host, &query)).await
    }

    async fn admitted(
        client_id: &str,
        connecting: impl std::future::Future<Output = Result<Sio, ConnectFailure>>,
    ) -> Sio {
        match within("connecting over Socket.IO", connecting).await {
            Ok(mut sio) => {
                // Every admitted client is first told its limits (P2P_LIMITS).
                match sio.next().await {
                    Packet::Event { name, .. } if name == "P2P_LIMITS" => sio,
                    other => panic!("{client_id}: expected P2P_LIMITS first, got {other:?}"),
                }
            }
            Err(e) => panic!("{client_id} cannot connect: {e:?}"),
        }
    }

    pub async fn send_text(&mut self, text: &str) {
        within(
            "writing a websocket frame",
            self.ws.send(Message::text(text)),
        )
        .await
        .expect("websocket write");
    }

    pub async fn send_binary(&mut self, data: &[u8]) {
        within(
            "writing a websocket frame",
            self.ws.send(Message::binary(data.to_vec())),
        )
        .await
        .expect("websocket write");
    }

    /// Emits `event` with `args` (a JSON array's elements, as text) and, when `ack`, an ack
    /// id: returns that id.
    pub async fn emit_raw(&mut self, event: &str, args: &str, ack: bool) -> Option<u64> {
        let id = ack.then(|| self.take_ack_id());
        let ack_text = id.map(|i| i.to_string()).unwrap_or_default();
        let sep = if args.is_empty() { "" } else { "," };
        let text = format!("42{ack_text}[{}{sep}{args}]", Value::from(event));
        self.send_text(&text).await;
        id
    }

    /// [`Sio::emit_raw`] without waiting for an answer, that tells whether the write went
    /// through (false once the relay closed the connection).
    pub async fn try_emit_raw(&mut self, event: &str, args: &str, ack: bool) -> bool {
        let id = ack.then(|| self.take_ack_id());
        let ack_text = id.map(|i| i.to_string()).unwrap_or_default();
        let sep = if args.is_empty() { "" } else { "," };
        let text = format!("42{ack_text}[{}{sep}{args}]", Value::from(event));
        matches!(
            tokio::time::timeout(WAIT, self.ws.send(Message::text(text))).await,
            Ok(Ok(()))
        )
    }

    /// Emits `event` whose arguments (text, with placeholders) are followed by binary
    /// `attachments`; returns the ack id when `ack`.
    pub async fn emit_binary(
        &mut self,
        event: &str,
        args: &str,
        attachments: &[&[u8]],
        ack: bool,
    ) -> Option<u64> {
        let id = ack.then(|| self.take_ack_id());
        let ack_text = id.map(|i| i.to_string()).unwrap_or_default();
        let text = format!(
            "45{}-{ack_text}[{},{args}]",
            attachments.len(),
            Value::from(event)
        );
        self.send_text(&text).await;
        for data in attachments {
            self.send_binary(data).await;
        }
        id
    }

    /// Emits `event(args...)` with an ack and waits for the ack's arguments.
    pub async fn request(&mut self, event: &str, args: &[Value]) -> Vec<Value> {
        let text: Vec<String> = args.iter().map(Value::to_string).collect();
        let id = self.emit_raw(event, &text.join(","), true).await.unwrap();
        self.ack(id).await
    }

    /// Answers the relay's question `id` with `args`.
    pub async fn answer(&mut self, id: u64, args: &[Value]) {
        let text: Vec<String> = args.iter().map(Value::to_string).collect();
        self.send_text(&format!("43{id}[{}]", text.join(","))).await;
    }

    fn take_ack_id(&mut self) -> u64 {
        self.next_ack += 1;
        self.next_ack
    }

    /// The next packet, from the backlog first.
    pub async fn next(&mut self) -> Packet {
        if let Some(packet) = self.backlog.pop_front() {
            return packet;
        }
        within("the next Socket.IO packet", self.read_packet()).await
    }

    /// The next packet within `wait`, or None.
    pub async fn next_within(&mut self, wait: Duration) -> Option<Packet> {
        if let Some(packet) = self.backlog.pop_front() {
            return Some(packet);
        }
        tokio::time::timeout(wait, self.read_packet()).await.ok()
    }

    /// The ack for request `id`, keeping other packets for later.
    pub async fn ack(&mut self, want: u64) -> Vec<Value> {
        self.find(|p| matches!(p, Packet::Ack { id, .. } if *id == want))
            .await
            .map(|p| match p {
                Packet::Ack { args, .. } => args,
                _ => unreachable!(),
            })
            .unwrap_or_else(|| panic!("disconnected before the ack {want}"))
    }

    /// The ack for request `id` with its binary attachments, keeping other packets.
    pub async fn ack_with_attachments(&mut self, want: u64) -> (Vec<Value>, Vec<Vec<u8>>) {
        self.find(|p| matches!(p, Packet::Ack { id, .. } if *id == want))
            .await
            .map(|p| match p {
                Packet::Ack {
                    args, attachments, ..
                } => (args, attachments),
                _ => unreachable!(),
            })
            .unwrap_or_else(|| panic!("disconnected before the ack {want}"))
    }

    /// The next event named `name`, keeping other packets for later.
    pub async fn event(&mut self, name: &str) -> Packet {
        self.find(|p| matches!(p, Packet::Event { name: n, .. } if n == name))
            .await
            .unwrap_or_else(|| panic!("disconnected before the event {name}"))
    }

    /// The first packet matching `want` (None if the relay disconnected first); the
    /// packets before it stay in the backlog.
    async fn find(&mut self, want: impl Fn(&Packet) -> bool) -> Option<Packet> {
        if let Some(i) = self.backlog.iter().position(&want) {
            return self.backlog.remove(i);
        }
        within("a Socket.IO packet", async {
            loop {
                let packet = self.read_packet().await;
                if want(&packet) {
                    return Some(packet);
                }
                if packet == Packet::Disconnected {
                    return None;
                }
                self.backlog.push_back(packet);
            }
        })
        .await
    }

    /// Pairs this client with `peer` (connected as `peer_id`): this one asks, the peer
    /// accepts, and the request is answered `true`.
    pub async fn pair_with(&mut self, peer: &mut Sio, peer_id: &str) {
        let id = self
            .emit_raw("P2P_REGISTER", &Value::from(peer_id).to_string(), true)
            .await
            .expect("an ack id");
        match peer.event("P2P_REGISTER").await {
            Packet::Event { ack: Some(q), .. } => peer.answer(q, &[Value::Bool(true)]).await,
            other => panic!("expected a pairing question, got {other:?}"),
        }
        assert_eq!(self.ack(id).await, vec![Value::Bool(true)]);
    }

    /// The text of the next Socket.IO event packet exactly as the relay wrote it (from
    /// its Socket.IO type on, e.g. `2["e",1]`), for tests of what the relay re-encodes.
    /// Pings on the way are answered; nothing may be waiting in the backlog.
    pub async fn next_event_text(&mut self) -> String {
        assert!(
            self.backlog.is_empty(),
            "packets already read: {:?}",
            self.backlog
        );
        within("a Socket.IO event", async {
            loop {
                let text = self.text().await.expect("an open websocket");
                match text.split_at(1.min(text.len())) {
                    ("2", _) => self.send_text("3").await,
                    ("4", rest) if rest.starts_with('2') => return rest.to_owned(),
                    _ => {}
                }
            }
        })
        .await
    }

    async fn text(&mut self) -> Result<String, String> {
        loop {
            match within("a websocket frame", self.ws.next()).await {
                Some(Ok(Message::Text(text))) => return Ok(text.to_string()),
                Some(Ok(Message::Close(_))) | None => return Err("closed".into()),
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e.to_string()),
            }
        }
    }

    async fn read_packet(&mut self) -> Packet {
        loop {
            let text = match self.text().await {
                Ok(text) => text,
                Err(_) => return Packet::Disconnected,
            };
            let (kind, rest) = text.split_at(1.min(text.len()));
            match kind {
                // A ping: answered at once, so a long test never times out.
                "2" => self.send_text("3").await,
                "1" => return Packet::Disconnected,
                "4" => {
                    if let Some(packet) = self.socket_io(rest).await {
                        return packet;
                    }
                }
                _ => {}
            }
        }
    }

    /// Parses one Socket.IO packet (its engine.io type already taken), reading the binary
    /// attachments it announces.
    async fn socket_io(&mut self, text: &str) -> Option<Packet> {
        let (kind, mut rest) = text.split_at(1);
        if kind == "1" {
            return Some(Packet::Disconnected);
        }
        let mut count = 0;
        if kind == "5" || kind == "6" {
            let dash = rest.find('-').expect("attachment count");
            count = rest[..dash].parse().expect("attachment count");
            rest = &rest[dash + 1..];
        }
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let id = (digits > 0).then(|| rest[..digits].parse::<u64>().expect("ack id"));
        let mut args: Vec<Value> = serde_json::from_str(&rest[digits..]).expect("packet JSON");
        let mut attachments = Vec::new();
        while attachments.len() < count {
            match within("a binary attachment", self.ws.next()).await {
                Some(Ok(Message::Binary(data))) => attachments.push(data.to_vec()),
                Some(Ok(_)) => continue,
                _ => return Some(Packet::Disconnected),
            }
        }
        match kind {
            "2" | "5" => {
                let name = args.remove(0).as_str().expect("event name").to_owned();
                Some(Packet::Event {
                    name,
                    args,
                    ack: id,
                    attachments,
                })
            }
            "3" | "6" => Some(Packet::Ack {
                id: id.expect("ack id"),
                args,
                attachments,
            }),
            _ => None,
        }
    }

    /// Closes the websocket.
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(WAIT, self.ws.close(None)).await;
    }
}

/// Runs `fut`, failing the test when it takes longer than [`WAIT`].
pub async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(WAIT, fut).await {
        Ok(value) => value,
        Err(_) => panic!("timed out after {WAIT:?}: {what}"),
    }
}

/// Percent-encodes everything but ASCII letters and digits.
pub fn encode(raw: &str) -> String {
    raw.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The `SERVER_ERROR` messages among `packets`.
pub fn server_errors(packets: &[Packet]) -> Vec<String> {
    packets
        .iter()
        .filter_map(|p| match p {
            Packet::Event { name, args, .. } if name == "SERVER_ERROR" => {
                args.first().and_then(Value::as_str).map(str::to_owned)
            }
            _ => None,
        })
        .collect()
}
