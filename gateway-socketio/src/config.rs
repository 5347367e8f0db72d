//! Settings of the Socket.IO front end. The relay's own rules (timeouts, duplicate ids,
//! payload limit) are in `relay_core::Config`; these are the transport's.

use std::time::Duration;

use crate::CorsOrigins;

#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Largest relayed payload the relay accepts (should equal the core's
    /// `max_message_bytes`). Transport limits are derived from it with headroom, so an
    /// oversized payload still reaches the core and is answered with a clear error instead
    /// of the transport closing the connection.
    pub max_message_bytes: usize,
    /// Relayed events queued toward one receiver before further ones are refused and their
    /// senders told (`could not deliver ...`).
    pub outbox_messages: usize,
    /// Bytes queued toward one client, replies and errors included, before it is
    /// disconnected as a client that does not read (`SERVER_ERROR` with the reason, then
    /// disconnect). Bounds what a client that asks and never reads can make the relay hold.
    pub outbox_bytes: usize,
    /// Packets socketioxide may buffer per connection (its `max_buffer_size`). A bound,
    /// not an allocation: the queue takes memory only for what it holds.
    pub socket_buffer_packets: usize,
    /// The websocket read buffer of each connection (engineioxide's `ws_read_buffer_size`),
    /// and the most one read takes from the socket. Every connected client holds one, idle
    /// or not; larger messages grow it while they are read. 4 KiB (engineioxide's
    /// default): 2 KiB saved 2 KiB per idle client but cost 6% more relay CPU per 16 KiB
    /// message and 3% per small one (twice the reads), see docs/BENCHMARKS.md.
    pub ws_read_buffer_bytes: usize,
    /// How long the relay core waits for answers; socketioxide's own ack timeout is set a
    /// little longer so the core's timeout (with its clear error) always fires first.
    pub ack_timeout: Duration,
    /// Web origins whose pages may connect. Any, by default, as with socket.io 2; when
    /// restricted, a Socket.IO request carrying another `Origin` is refused with 403.
    pub cors_origins: CorsOrigins,
    /// Time a client has, once its transport is open, to join the namespace (the
    /// Socket.IO connect packet). A connection that never does is closed: it would hold a
    /// socket and its engine.io state for nothing (socketioxide's `connect_timeout`).
    pub connect_timeout: Duration,
    /// On [`Gateway::close`](crate::Gateway::close), how long each step may take: clients
    /// being written their last events, then socketioxide closing their transports.
    pub shutdown_grace: Duration,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            max_message_bytes: 1024 * 1024,
            outbox_messages: 1024,
            outbox_bytes: 8 * 1024 * 1024,
            socket_buffer_packets: 1024,
            ws_read_buffer_bytes: 4096,
            ack_timeout: Duration::from_secs(30),
            cors_origins: CorsOrigins::Any,
            connect_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(2),
        }
    }
}

impl GatewayConfig {
    /// Transport-level cap on one message: room for the JSON framing around a payload that
    /// is at the limit, and for a payload somewhat over it (which the core then refuses).
    pub(crate) fn transport_limit(&self) -> usize {
        self.max_message_bytes
            .saturating_mul(2)
            .saturating_add(64 * 1024)
    }
}
