//! One Socket.IO client in the default namespace: admitted under its `clientId`, known to the
//! core as one connection, forgotten when it leaves the namespace.
//!
//! The namespace socket, not the engine.io transport, is the client's connection: a client
//! may leave `/` and join again on the same transport, and each join is a new connection.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use relay_core::{ConnId, ConnectError, InvalidClientId, ReqId};
use socketioxide::adapter::LocalAdapter;
use socketioxide::handler::FromConnectParts;
use socketioxide::socket::Socket;
use socketioxide_core::Value;
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

use crate::acks::AckWaiters;
use crate::toward::Toward;
use relay_runtime::{Outbox, OutboxLimits, OutboxReceiver, RelayHandle};

use crate::outbound;
use crate::GatewayConfig;

/// What a request was, so that a failure can be answered in the shape its ack expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RequestKind {
    Register,
    Unregister,
    Emit,
    List,
    Stream,
}

/// A request waiting for the core's reply: the client's ack id (if it asked for an ack).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Awaiting {
    pub ack_id: Option<i64>,
    pub kind: RequestKind,
}

/// The tasks the gateway itself spawns (one outbound drain per established socket), so
/// that closing the gateway can wait for every one of them, and end at once those that
/// outstay its shutdown grace.
#[derive(Clone, Default)]
pub(crate) struct Tasks {
    pub tracker: TaskTracker,
    pub abort: CancellationToken,
}

impl Tasks {
    /// Spawns `task`, to end when the gateway aborts its tasks. The task lives as long as
    /// its client, so it is spawned as it is, not inside an `async` block of its own: such
    /// a block would hold the task twice (the block's captured copy and the one it
    /// awaits), doubling an idle client's largest allocation.
    fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) -> AbortHandle {
        self.tracker
            .spawn(self.abort.clone().run_until_cancelled_owned(task))
            .abort_handle()
    }
}

/// Per-connection state, stored in the socket's extensions.
pub(crate) struct Conn {
    pub handle: RelayHandle,
    pub id: ConnId,
    pub outbox: Arc<Outbox>,
    /// The core's sink for this client, in front of `outbox`: where the gateway queues
    /// events of its own too, so that they keep their place.
    pub toward: Arc<Toward>,
    /// Acks the client owes, handed to the core in order with its events.
    pub acks: AckWaiters,
    next_req: AtomicU64,
    awaiting: Mutex<HashMap<ReqId, Awaiting>>,
    /// The outbound queue's receiver until the connection is established and its drain
    /// task starts.
    pending_rx: Mutex<Option<OutboxReceiver>>,
    drain: Mutex<Option<AbortHandle>>,
    tasks: Tasks,
}

impl Conn {
    pub fn next_req(&self, ack_id: Option<i64>, kind: RequestKind) -> ReqId {
        let req = ReqId(self.next_req.fetch_add(1, Ordering::Relaxed));
        self.awaiting
            .lock()
            .expect("awaiting lock")
            .insert(req, Awaiting { ack_id, kind });
        req
    }

    pub fn take_awaiting(&self, req: ReqId) -> Option<Awaiting> {
        self.awaiting.lock().expect("awaiting lock").remove(&req)
    }

    /// Ends the connection's part in the relay: the core forgets it and its drain task stops.
    /// Safe to call more than once.
    pub fn close(&self) {
        self.close_in_core();
        if let Some(drain) = self.drain.lock().expect("drain lock").take() {
            drain.abort();
        }
    }
}

impl Conn {
    /// The core forgets the connection (its peer is told, its questions answered); the
    /// socket itself is left to the caller. Safe to call more than once.
    pub fn close_in_core(&self) {
        // Acks the client sent before leaving still count.
        self.acks.hand_over_arrived(&self.handle, self.id);
        self.handle.disconnect(self.id);
    }
}

impl Drop for Conn {
    /// A socket that was admitted but never established (socketioxide drops it without a
    /// disconnect callback when its connect packet cannot be sent) must not stay registered.
    fn drop(&mut self) {
        self.handle.disconnect(self.id);
    }
}

/// The socket as an `Arc`, which socketioxide gives only to extractors, together with the
/// token the client presented. The outbound task needs the `Arc` to answer acks later.
pub(crate) struct Handshake {
    pub socket: Arc<Socket<LocalAdapter>>,
    pub token: Option<String>,
}

impl FromConnectParts<LocalAdapter> for Handshake {
    type Error = std::convert::Infallible;
    fn from_connect_parts(
        socket: &Arc<Socket<LocalAdapter>>,
        auth: &Option<Value>,
    ) -> Result<Self, Self::Error> {
        let token = token_of_auth(auth.as_ref()).or_else(|| query_param(socket, "token"));
        Ok(Handshake {
            socket: socket.clone(),
            token,
        })
    }
}

/// The `token` of a Socket.IO 4.x handshake's `auth` object (`io(url, {auth: {token}})`).
fn token_of_auth(auth: Option<&Value>) -> Option<String> {
    let text = match auth? {
        Value::Str(text, _) => text.as_str().to_owned(),
        Value::Bytes(bytes) => String::from_utf8(bytes.to_vec()).ok()?,
    };
    match serde_json::from_str::<serde_json::Value>(&text).ok()? {
        serde_json::Value::Object(mut fields) => match fields.remove("token")? {
            serde_json::Value::String(token) => Some(token),
            _ => None,
        },
        _ => None,
    }
}

/// A parameter of the handshake URL's query, percent-decoded: `token`, for clients without
/// an auth payload (socket.io-client 2.x). `clientId` is decoded strictly by [`client_id_of`].
///
/// Decoded as form encoding always was (bytes that are not UTF-8 become U+FFFD): such a
/// token cannot be valid, and the admission refuses it as it refuses any wrong token.
fn query_param(socket: &Socket<LocalAdapter>, name: &str) -> Option<String> {
    let query = socket.req_parts().uri.query()?;
    query_bytes(query, name).map(|value| String::from_utf8_lossy(&value).into_owned())
}

/// The `clientId` of the handshake URL's query, percent-decoded (`+` is a space, as in any
/// form-encoded query).
///
/// Decoded strictly: `form_urlencoded` replaces bytes that are not UTF-8 with U+FFFD, so
/// `%FF` and `%FE` would both become "\u{FFFD}" and replace each other's connection.
fn client_id_of(socket: &Socket<LocalAdapter>) -> Result<Option<String>, InvalidClientId> {
    let Some(query) = socket.req_parts().uri.query() else {
        return Ok(None);
    };
    query_value(query, "clientId").transpose()
}

/// The first value of `key` in a form-encoded `query`, or why its bytes are not UTF-8.
fn query_value(query: &str, key: &str) -> Option<Result<String, InvalidClientId>> {
    query_bytes(query, key).map(|value| {
        String::from_utf8(value).map_err(|e| {
            let at = e.utf8_error().valid_up_to();
            InvalidClientId::NotUtf8 {
                byte: e.as_bytes()[at],
                at,
            }
        })
    })
}

/// The first value of `key` in a form-encoded `query`, percent-decoded to its bytes.
fn query_bytes(query: &str, key: &str) -> Option<Vec<u8>> {
    let decode = |raw: &str| -> Vec<u8> {
        let plus_as_space = raw.replace('+', " ");
        percent_encoding::percent_decode_str(&plus_as_space).collect()
    };
    query
        .split('&')
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        .find(|(k, _)| decode(k) == key.as_bytes())
        .map(|(_, value)| decode(value))
}

/// The client's address, when the server inserts connect info into each request (as
/// [`crate::serve_with`] does).
fn remote_of(socket: &Socket<LocalAdapter>) -> Option<SocketAddr> {
    socket
        .req_parts()
        .extensions
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map(|info| info.0)
}

/// Connect middleware: admits the client into the core (its token checked, by a callback
/// if so configured, before the core sees it), or refuses it with a message the client
/// receives as its connect error.
pub(crate) async fn admit(
    handle: &RelayHandle,
    config: &GatewayConfig,
    tasks: &Tasks,
    handshake: Handshake,
) -> Result<(), ConnectError> {
    let socket = handshake.socket;
    let client_id = client_id_of(&socket)?;
    let remote = remote_of(&socket);
    let admitted = handle
        .admit(
            client_id.as_deref(),
            handshake.token.as_ref().map(|t| t.as_bytes()),
            remote,
            relay_core::Transport::Legacy,
        )
        .await?;
    let (outbox, rx) = Outbox::new(OutboxLimits {
        messages: config.outbox_messages,
        bytes: config.outbox_bytes,
    });
    let toward = Arc::new(Toward::new(outbox.clone()));
    let id = handle.connect_admitted(admitted, relay_core::Transport::Legacy, toward.clone())?;
    handle.describe(
        id,
        relay_runtime::Described {
            remote,
            generation: match socket.protocol() {
                socketioxide::ProtocolVersion::V4 => "socket.io v2 (EIO3)",
                socketioxide::ProtocolVersion::V5 => "socket.io v4 (EIO4)",
            },
        },
    );
    debug!(sid = %socket.id, client = ?client_id, ?id, "admitted");
    let conn = Arc::new(Conn {
        handle: handle.clone(),
        id,
        outbox,
        toward,
        acks: AckWaiters::default(),
        next_req: AtomicU64::new(0),
        awaiting: Mutex::new(HashMap::new()),
        pending_rx: Mutex::new(Some(rx)),
        drain: Mutex::new(None),
        tasks: tasks.clone(),
    });
    // Listen before the client learns it is connected, so that no early event finds the
    // socket without handlers.
    crate::inbound::listen(&socket, &conn);
    socket.extensions.insert(conn);
    socket.on_disconnect(async |socket: socketioxide::extract::SocketRef| {
        if let Some(conn) = socket.extensions.get::<Arc<Conn>>() {
            conn.close();
        }
    });
    Ok(())
}

/// Connect-handler extractor: the socket is established, so events may flow to it now.
/// Extractors run inline, right after socketioxide marks the socket connected.
pub(crate) struct Established;

impl FromConnectParts<LocalAdapter> for Established {
    type Error = std::convert::Infallible;
    fn from_connect_parts(
        socket: &Arc<Socket<LocalAdapter>>,
        _: &Option<Value>,
    ) -> Result<Self, Self::Error> {
        if let Some(conn) = socket.extensions.get::<Arc<Conn>>() {
            if let Some(rx) = conn.pending_rx.lock().expect("rx lock").take() {
                // First of all, the limits that apply to this client (the 1.4.1 plugin has
                // no listener for this event and ignores it).
                let limits = limits_object(&conn.handle.client_limits());
                if let Err(e) = socket.emit(crate::events::P2P_LIMITS, &limits) {
                    debug!(sid = %socket.id, "could not send the limits: {e}");
                }
                let drain = outbound::drain(socket.clone(), conn.clone(), rx);
                *conn.drain.lock().expect("drain lock") = Some(conn.tasks.spawn(drain));
                // Its drain runs: plain emits may go straight to the socket from now on.
                conn.toward.established(socket);
            }
        }
        Ok(Established)
    }
}

/// The `P2P_LIMITS` object: every limit that applies to this client (0: none).
pub(crate) fn limits_object(limits: &relay_core::ClientLimits) -> serde_json::Value {
    serde_json::json!({
        "messagesPerSecond": limits.rate.messages_per_second,
        "messageBurst": limits.rate.message_burst,
        "bytesPerSecond": limits.rate.bytes_per_second,
        "byteBurst": limits.rate.byte_burst,
        "maxMessageBytes": limits.max_message_bytes,
        "maxPending": limits.max_pending,
        "maxStreams": limits.max_streams_per_pair,
        "ackTimeoutMs": limits.ack_timeout_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_decode_strictly() {
        let id = |query: &str| query_value(query, "clientId");
        assert_eq!(id("EIO=4&clientId=A%20b+c"), Some(Ok("A b c".into())));
        assert_eq!(id("clientId=%C3%A9&clientId=second"), Some(Ok("é".into())));
        assert_eq!(id("client%49d=x"), Some(Ok("x".into())));
        assert_eq!(id("EIO=4"), None);
        assert_eq!(id("clientId"), Some(Ok(String::new())));
        assert_eq!(
            id("clientId=%FF"),
            Some(Err(InvalidClientId::NotUtf8 { byte: 0xff, at: 0 }))
        );
        assert_eq!(
            id("clientId=ab%FE"),
            Some(Err(InvalidClientId::NotUtf8 { byte: 0xfe, at: 2 }))
        );
    }
}
