//! A minimal websocket-only Socket.IO client, for load: both protocol generations the relay
//! must serve on one port, engine.io v3 with Socket.IO protocol 4 (socket.io-client 2.x, the
//! 1.4.1 plugin's clients) and engine.io v4 with Socket.IO protocol 5 (socket.io-client 4.x).
//!
//! Why not a Socket.IO client crate: the maintained Rust client, `rust_socketio` (0.6), speaks
//! engine.io v4 only (its issue #132 "Add support for Socket.IO v2.x" is open; #189, asking for
//! engine.io revision 3, was closed as its duplicate), so it cannot be the 1.4.1 plugin's
//! clients at all. And it is callback-based: every packet is parsed into `serde_json::Value`,
//! each event's callback is looked up and awaited under a write lock of the callback map in
//! the task that reads the socket, acks are callbacks found by a linear scan, and a binary
//! event hands over only its first attachment. (Checked in its source, the asynchronous
//! client's `callback`, `handle_ack`, `handle_binary_event`. The claim that it spawns a task
//! per event did not hold for 0.6, where callbacks run one after another in the reading task;
//! a fork of it does spawn one dispatch task per event.) A load tool whose clients cost more
//! per message than the relay measures its own clients. This one writes packets as
//! preformatted text, reads only what it needs (packet type, ack id, event name) without
//! building a JSON tree, batches what is ready into one write, and holds many connections
//! in one task where they are idle (`crate::idle`).
//!
//! What it speaks (websocket transport only, no polling, no upgrade):
//! - engine.io open packet `0{"sid":..,"pingInterval":..}`; v3: the client pings (`2`) every
//!   `pingInterval` and the server answers `3`; v4: the server pings and the client answers;
//! - Socket.IO connect: v4 sends `40` and waits for `40{..}`; v3 clients are joined to `/` by
//!   the server (`40`), a refusal is `44..`;
//! - events `42[id][..]`, acks `43id[..]`, and binary events/acks `5n-[id][..]` / `6n-id[..]`
//!   with `{"_placeholder":true,"num":i}` followed by `n` binary frames (engine.io v3 prefixes
//!   each binary frame with the message type byte 4, v4 sends it raw).

use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

/// The engine.io protocol generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eio {
    /// engine.io 3 + Socket.IO protocol 4: socket.io-client 2.x, the 1.4.1 plugin's clients.
    V3,
    /// engine.io 4 + Socket.IO protocol 5: socket.io-client 3.x/4.x.
    V4,
}

impl Eio {
    fn number(self) -> u8 {
        match self {
            Eio::V3 => 3,
            Eio::V4 => 4,
        }
    }
}

/// The Socket.IO packet types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Connect,
    Disconnect,
    Event,
    Ack,
    ConnectError,
    BinaryEvent,
    BinaryAck,
}

/// One Socket.IO packet, with its attachments. The JSON is kept as text; `body()` is it.
#[derive(Debug)]
pub struct Packet {
    pub kind: Kind,
    pub id: Option<u64>,
    text: Utf8Bytes,
    body_at: usize,
    pub attachments: Vec<Bytes>,
}

impl Packet {
    /// The JSON part (`[...]` for events and acks).
    pub fn body(&self) -> &str {
        &self.text.as_str()[self.body_at..]
    }

    /// The event name of an event packet: the first string of its array, read without a
    /// JSON parser (the names the relay sends have no escapes).
    pub fn event_name(&self) -> Option<&str> {
        let rest = self.body().strip_prefix("[\"")?;
        rest.find('"').map(|end| &rest[..end])
    }

    /// Bytes carried: attachments, or the JSON text when there are none.
    pub fn payload_len(&self) -> usize {
        if self.attachments.is_empty() {
            self.body().len()
        } else {
            self.attachments.iter().map(Bytes::len).sum()
        }
    }
}

/// Connection settings.
#[derive(Debug, Clone)]
pub struct SioOptions {
    pub eio: Eio,
    /// tungstenite's read buffer (it reads the socket in chunks of this size). Small for
    /// idle connections, larger for bulk.
    pub read_buffer: usize,
    pub connect_timeout: Duration,
    /// See [`SioClient::write_each`].
    pub write_each: bool,
    /// Local address to connect from (another 127.x address spreads many connections over
    /// several source addresses, each with its own ephemeral ports: with tens of thousands
    /// of connections and TIME_WAIT sockets on one address, the kernel's search for a free
    /// port made connect() take milliseconds).
    pub source: Option<std::net::IpAddr>,
}

impl SioOptions {
    pub fn new(eio: Eio) -> Self {
        SioOptions {
            eio,
            read_buffer: 64 * 1024,
            connect_timeout: Duration::from_secs(20),
            write_each: true,
            source: None,
        }
    }
}

type Ws = WebSocketStream<TcpStream>;

/// A connected Socket.IO client in the default namespace.
pub struct SioClient {
    ws: Ws,
    eio: Eio,
    pub sid: String,
    pub ping_interval: Duration,
    /// v3 only: when the next client ping is due.
    next_ping: Option<Instant>,
    /// A binary packet waiting for its attachments: the packet and how many are missing.
    partial: Option<(Packet, usize)>,
    /// Something was fed and not flushed yet.
    dirty: bool,
    /// Write every packet at once, in its own write (as socket.io-client does), instead of
    /// batching what is ready until [`SioClient::flush`].
    pub write_each: bool,
}

impl SioClient {
    /// Connects to `base` (`http://host:port`) as `client_id`, over websocket, and waits
    /// until the server has joined the client to `/`.
    pub async fn connect(
        base: &str,
        client_id: &str,
        options: &SioOptions,
    ) -> anyhow::Result<Self> {
        tokio::time::timeout(
            options.connect_timeout,
            Self::connect_inner(base, client_id, options),
        )
        .await
        .map_err(|_| anyhow!("connecting {client_id} to {base} timed out"))?
    }

    async fn connect_inner(
        base: &str,
        client_id: &str,
        options: &SioOptions,
    ) -> anyhow::Result<Self> {
        let hostport = base
            .strip_prefix("http://")
            .or_else(|| base.strip_prefix("ws://"))
            .ok_or_else(|| anyhow!("{base}: only http:// (or ws://) URLs, no TLS"))?
            .trim_end_matches('/');
        let url = format!(
            "ws://{hostport}/socket.io/?EIO={}&transport=websocket&clientId={client_id}",
            options.eio.number()
        );
        let request = url.as_str().into_client_request()?;
        let tcp = match options.source {
            None => TcpStream::connect(hostport).await,
            Some(ip) => {
                let addr = tokio::net::lookup_host(hostport)
                    .await?
                    .next()
                    .ok_or_else(|| anyhow!("{hostport}: no address"))?;
                let socket = tokio::net::TcpSocket::new_v4()?;
                socket.bind((ip, 0).into())?;
                socket.connect(addr).await
            }
        }
        .with_context(|| format!("connecting to {hostport}"))?;
        tcp.set_nodelay(true)?;
        let config = WebSocketConfig::default()
            .read_buffer_size(options.read_buffer)
            // Frames fed are written together on flush (or once this much is queued).
            .write_buffer_size(64 * 1024)
            .max_message_size(Some(64 << 20))
            .max_frame_size(Some(16 << 20));
        let (ws, _) = tokio_tungstenite::client_async_with_config(request, tcp, Some(config))
            .await
            .with_context(|| format!("websocket handshake with {url}"))?;
        let mut client = SioClient {
            ws,
            eio: options.eio,
            sid: String::new(),
            ping_interval: Duration::from_secs(25),
            next_ping: None,
            partial: None,
            dirty: false,
            write_each: options.write_each,
        };
        client.handshake().await?;
        Ok(client)
    }

    async fn handshake(&mut self) -> anyhow::Result<()> {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Open {
            sid: String,
            ping_interval: u64,
        }
        let open = loop {
            match self.ws.next().await {
                Some(Ok(Message::Text(t))) if t.as_str().starts_with('0') => break t,
                Some(Ok(Message::Text(t))) => bail!("expected the engine.io open packet, got {t}"),
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e.into()),
                None => bail!("closed before the engine.io open packet"),
            }
        };
        let open: Open = serde_json::from_str(&open.as_str()[1..])?;
        self.sid = open.sid;
        self.ping_interval = Duration::from_millis(open.ping_interval);
        if self.eio == Eio::V3 {
            // Ping a little before the interval ends, so that the server's
            // interval + timeout is never at risk.
            self.next_ping = Some(Instant::now() + self.ping_interval.mul_f32(0.8));
        } else {
            self.send_text("40".to_string()).await?;
        }
        loop {
            let packet = self.next().await?;
            match packet.kind {
                Kind::Connect => return Ok(()),
                Kind::ConnectError => bail!("the server refused the connection: {}", packet.body()),
                _ => {}
            }
        }
    }

    pub fn eio(&self) -> Eio {
        self.eio
    }

    /// The next Socket.IO packet, answering heartbeats on the way. Cancel-safe.
    pub async fn next(&mut self) -> anyhow::Result<Packet> {
        loop {
            if let Some(at) = self.next_ping {
                if Instant::now() >= at {
                    self.next_ping = Some(at + self.ping_interval.mul_f32(0.8));
                    self.send_text("2".to_string()).await?;
                }
            }
            let msg = match self.next_ping {
                Some(at) => tokio::select! {
                    biased;
                    msg = self.ws.next() => msg,
                    _ = tokio::time::sleep_until(at) => continue,
                },
                None => self.ws.next().await,
            };
            let msg = match msg {
                Some(Ok(msg)) => msg,
                Some(Err(e)) => return Err(e.into()),
                None => bail!("connection closed"),
            };
            match msg {
                Message::Text(text) => {
                    if let Some(packet) = self.engine_text(text).await? {
                        return Ok(packet);
                    }
                }
                Message::Binary(mut data) => {
                    if self.eio == Eio::V3 && !data.is_empty() {
                        let _ = data.split_to(1); // the engine.io message type byte
                    }
                    let Some((mut packet, missing)) = self.partial.take() else {
                        continue; // an attachment nobody announced
                    };
                    packet.attachments.push(data);
                    if missing == 1 {
                        return Ok(packet);
                    }
                    self.partial = Some((packet, missing - 1));
                }
                Message::Close(_) => bail!("the server closed the websocket"),
                _ => {}
            }
        }
    }

    /// One engine.io text packet: heartbeats are answered here, messages parsed.
    async fn engine_text(&mut self, text: Utf8Bytes) -> anyhow::Result<Option<Packet>> {
        let s = text.as_str();
        match s.as_bytes().first() {
            Some(b'4') => {}
            Some(b'2') => {
                self.send_text("3".to_string()).await?;
                return Ok(None);
            }
            Some(b'1') => bail!("the server closed the engine.io session"),
            _ => return Ok(None), // pong, noop, ...
        }
        let bytes = s.as_bytes();
        let mut at = 1;
        let kind = match bytes.get(at) {
            Some(b'0') => Kind::Connect,
            Some(b'1') => Kind::Disconnect,
            Some(b'2') => Kind::Event,
            Some(b'3') => Kind::Ack,
            Some(b'4') => Kind::ConnectError,
            Some(b'5') => Kind::BinaryEvent,
            Some(b'6') => Kind::BinaryAck,
            _ => bail!("bad Socket.IO packet {s}"),
        };
        at += 1;
        let mut attachments = 0usize;
        if matches!(kind, Kind::BinaryEvent | Kind::BinaryAck) {
            while let Some(d @ b'0'..=b'9') = bytes.get(at) {
                attachments = attachments * 10 + usize::from(d - b'0');
                at += 1;
            }
            if bytes.get(at) != Some(&b'-') {
                bail!("bad binary packet header {s}");
            }
            at += 1;
        }
        if bytes.get(at) == Some(&b'/') {
            // A namespace other than "/" would be named here; this client lives in "/".
            match s[at..].find(',') {
                Some(comma) => at += comma + 1,
                None => at = bytes.len(),
            }
        }
        let mut id = None;
        while let Some(d @ b'0'..=b'9') = bytes.get(at) {
            id = Some(id.unwrap_or(0) * 10 + u64::from(d - b'0'));
            at += 1;
        }
        let packet = Packet {
            kind,
            id,
            text: text.clone(),
            body_at: at,
            attachments: Vec::with_capacity(attachments),
        };
        if attachments > 0 {
            self.partial = Some((packet, attachments));
            return Ok(None);
        }
        Ok(Some(packet))
    }

    /// Queues a text frame (written on [`SioClient::flush`] or when the buffer fills).
    pub async fn feed_text(&mut self, text: String) -> anyhow::Result<()> {
        self.dirty = true;
        self.ws.feed(Message::Text(text.into())).await?;
        if self.write_each {
            self.flush().await?;
        }
        Ok(())
    }

    async fn send_text(&mut self, text: String) -> anyhow::Result<()> {
        self.ws.send(Message::Text(text.into())).await?;
        self.dirty = false;
        Ok(())
    }

    /// Queues an event: `body` is the JSON array `["name", args...]`.
    pub async fn feed_event(&mut self, ack: Option<u64>, body: &str) -> anyhow::Result<()> {
        let mut text = String::with_capacity(body.len() + 24);
        text.push_str("42");
        if let Some(id) = ack {
            push_u64(&mut text, id);
        }
        text.push_str(body);
        self.feed_text(text).await
    }

    /// Queues a binary event: `body` holds `{"_placeholder":true,"num":i}` for attachment i.
    pub async fn feed_binary_event(
        &mut self,
        ack: Option<u64>,
        body: &str,
        attachments: &[Bytes],
    ) -> anyhow::Result<()> {
        let mut text = String::with_capacity(body.len() + 32);
        text.push_str("45");
        push_u64(&mut text, attachments.len() as u64);
        text.push('-');
        if let Some(id) = ack {
            push_u64(&mut text, id);
        }
        text.push_str(body);
        self.dirty = true;
        self.ws.feed(Message::Text(text.into())).await?;
        for data in attachments {
            let frame = match self.eio {
                Eio::V4 => data.clone(),
                Eio::V3 => {
                    let mut framed = Vec::with_capacity(data.len() + 1);
                    framed.push(4);
                    framed.extend_from_slice(data);
                    Bytes::from(framed)
                }
            };
            self.ws.feed(Message::Binary(frame)).await?;
        }
        if self.write_each {
            self.flush().await?;
        }
        Ok(())
    }

    /// Queues an ack: `body` is the JSON array of its arguments.
    pub async fn feed_ack(&mut self, id: u64, body: &str) -> anyhow::Result<()> {
        let mut text = String::with_capacity(body.len() + 24);
        text.push_str("43");
        push_u64(&mut text, id);
        text.push_str(body);
        self.feed_text(text).await
    }

    /// Writes what was queued.
    pub async fn flush(&mut self) -> anyhow::Result<()> {
        if self.dirty {
            self.dirty = false;
            self.ws.flush().await?;
        }
        Ok(())
    }

    /// Closes the websocket (best effort).
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }

    /// The websocket itself, for drivers that hold many idle connections in one task.
    pub fn into_parts(self) -> (Ws, Eio, Duration) {
        (self.ws, self.eio, self.ping_interval)
    }
}

fn push_u64(s: &mut String, n: u64) {
    use std::fmt::Write;
    let _ = write!(s, "{n}");
}

/// A JSON string literal for an id or event name.
pub fn json_str(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

#[cfg(test)]
mod tests {
    #[test]
    fn json_str_escapes() {
        assert_eq!(super::json_str("a\"b"), "\"a\\\"b\"");
    }
}
