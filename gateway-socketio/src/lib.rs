//! The Socket.IO front end of the p2p relay: socketioxide on axum, speaking the legacy
//! socket.io-p2p-plugin 1.4.1 events to socket.io-client 2.x and 4.x on one port.
//!
//! It only translates: Socket.IO events become `relay_core` commands and core events
//! become Socket.IO packets. Every rule lives in the core.
//!
//! Embedding in your own axum app:
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! use gateway_socketio::{Gateway, GatewayConfig};
//! let relay = relay_runtime::RelayHandle::new(relay_core::Config::default());
//! let gateway = Gateway::new(relay.clone(), GatewayConfig::default());
//! let app = gateway.attach(axum::Router::new());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9000").await?;
//! gateway_socketio::serve(listener, app).await
//! # }
//! ```
//!
//! Shutting down: stop the HTTP server accepting, close the relay's connections, then
//! [`Gateway::close`], then wait for the server (see [`serve_with_shutdown`]); the relay
//! binary's `Server::shutdown` does exactly this.

mod acks;
mod args;
mod client_addr;
mod config;
mod connection;
mod cors;
mod detach;
mod eio3_binary;
pub mod events;
mod inbound;
mod outbound;
mod serve;
mod toward;

use std::sync::Arc;
use std::time::Duration;

use relay_core::CloseReason;
use socketioxide::handler::ConnectHandler;
use socketioxide::layer::SocketIoLayer;
use socketioxide::SocketIo;
use tracing::{debug, warn};

pub use args::{
    event_args, event_args_within, expanded_size, raw_emit, Args, ArgsError, OutArgs, RawEmit,
    MAX_NESTING,
};
pub use client_addr::{
    read_proxy_preface, ProxyPrefaceError, TrustedProxies, TrustedProxiesError,
    MAX_PROXY_PREFACE_BYTES,
};
pub use config::GatewayConfig;
pub use cors::{CorsOrigins, CorsOriginsError, OriginList, OriginProblem};
use relay_runtime::RelayHandle;
pub use serve::{
    serve, serve_with_options, serve_with_shutdown, ServeOptions, ServeShutdown, ServeTls,
    DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_TLS_HANDSHAKE_TIMEOUT,
};

use connection::{Conn, Established, Handshake, Tasks};

/// Where socket.io clients send their requests (socketioxide's default, set explicitly
/// because the CORS rule must cover exactly the same requests).
const SOCKET_IO_PATH: &str = "/socket.io";

/// Whether `path` is a Socket.IO request, by the rule socketioxide itself applies: the path
/// or anything below it, but not `/socket.io-admin`.
pub(crate) fn is_socket_io_path(path: &str) -> bool {
    path.strip_prefix(SOCKET_IO_PATH)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The Socket.IO gateway: a tower layer to mount on an axum router.
#[derive(Clone)]
pub struct Gateway {
    layer: SocketIoLayer,
    io: SocketIo,
    cors: cors::Policy,
    relay: RelayHandle,
    tasks: Tasks,
    shutdown_grace: Duration,
    /// What the v3 binary fix may buffer of one polling response ([`eio3_binary::fix`]).
    v3_buffer_bytes: usize,
}

impl Gateway {
    pub fn new(relay: RelayHandle, config: GatewayConfig) -> Self {
        let limit = config.transport_limit();
        let cors = cors::Policy::new(config.cors_origins.clone());
        let (layer, io) = SocketIo::builder()
            .req_path(SOCKET_IO_PATH)
            .max_buffer_size(config.socket_buffer_packets)
            .ws_read_buffer_size(config.ws_read_buffer_bytes)
            .max_payload(limit as u64)
            .ws_max_message_size(limit)
            .ws_max_frame_size(limit)
            .with_parser(socketioxide::ParserConfig::common().max_incoming_binary_buf_size(limit))
            .ack_timeout(config.ack_timeout + std::time::Duration::from_secs(2))
            .connect_timeout(config.connect_timeout)
            .build_layer();
        let tasks = Tasks::default();
        let shutdown_grace = config.shutdown_grace;
        let config = Arc::new(config);
        let admit = {
            let relay = relay.clone();
            let tasks = tasks.clone();
            move |handshake: Handshake| {
                let relay = relay.clone();
                let config = config.clone();
                let tasks = tasks.clone();
                async move { connection::admit(&relay, &config, &tasks, handshake).await }
            }
        };
        io.ns("/", (async |_: Established| {}).with(admit));
        Self {
            layer,
            io,
            cors,
            relay,
            tasks,
            shutdown_grace,
            v3_buffer_bytes: eio3_binary::buffer_limit(limit),
        }
    }

    /// Mounts the gateway on `router` (at `/socket.io/`, as socket.io clients expect), with
    /// CORS for the origins of [`GatewayConfig::cors_origins`] on that path only.
    pub fn attach(&self, router: axum::Router) -> axum::Router {
        router
            .layer(self.layer.clone())
            .layer(axum::middleware::from_fn_with_state(
                self.v3_buffer_bytes,
                eio3_binary::fix,
            ))
            .layer(axum::middleware::from_fn(detach::detach))
            .layer(axum::middleware::from_fn_with_state(
                self.cors.clone(),
                cors::apply,
            ))
    }

    /// The bare socketioxide layer, for non-axum tower stacks. It lacks what
    /// [`Gateway::attach`] adds: CORS (so web pages on other origins cannot poll) and the
    /// fix for binary attachments toward socket.io-client 2.x over long-polling.
    pub fn layer(&self) -> SocketIoLayer {
        self.layer.clone()
    }

    /// socketioxide's handle, for applications that add namespaces of their own.
    pub fn io(&self) -> &SocketIo {
        &self.io
    }

    /// Closes every Socket.IO connection and returns when the gateway's own tasks have
    /// ended and socketioxide has closed every session's transport (each step bounded by
    /// the configured `shutdown_grace`). The gateway takes no clients afterwards.
    ///
    /// Each client is told why first: the core closes its connection with
    /// [`CloseReason::Shutdown`] (a no-op for those `RelayHandle::close_all` already closed),
    /// so it gets `SERVER_ERROR` "the relay is shutting down" and its peer `P2P_DISCONNECT`;
    /// then socketioxide closes its transport behind that message. Stop the HTTP server
    /// from accepting before calling this (see [`ServeShutdown`]), so that no client
    /// arrives meanwhile.
    ///
    /// socketioxide closes only sessions that are in a namespace. A websocket session that
    /// is in none (its client was refused) ends when its TCP connection is cut
    /// ([`ServeShutdown::cut_connections`]); a socket.io-client 4.x session that never
    /// joined one keeps a socketioxide task until its connect timeout (45 s), which no API
    /// of socketioxide 0.18 ends sooner.
    pub async fn close(&self) {
        let grace = self.shutdown_grace;
        if let Some(sockets) = self.io.of("/").map(|ns| ns.sockets()) {
            for socket in sockets {
                if let Some(conn) = socket.extensions.get::<Arc<Conn>>() {
                    self.relay.close(conn.id, CloseReason::Shutdown);
                }
            }
        }
        // Each drain ends once it has handed its client's last events to socketioxide.
        self.tasks.tracker.close();
        if tokio::time::timeout(grace, self.tasks.tracker.wait())
            .await
            .is_err()
        {
            debug!(
                left = self.tasks.tracker.len(),
                "Socket.IO clients still being written to; closing them anyway"
            );
        }
        if tokio::time::timeout(grace, self.io.close()).await.is_err() {
            warn!("socketioxide did not close every transport within {grace:?}");
        }
        self.tasks.abort.cancel();
        if tokio::time::timeout(grace, self.tasks.tracker.wait())
            .await
            .is_err()
        {
            warn!(
                left = self.tasks.tracker.len(),
                "Socket.IO outbound tasks did not end when aborted"
            );
        }
    }

    /// Ends the gateway's own tasks at once, without telling anyone: for a `Drop`, which
    /// cannot wait for [`Gateway::close`].
    pub fn abort(&self) {
        self.tasks.abort.cancel();
    }
}
