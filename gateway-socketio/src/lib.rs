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

mod acks;
mod args;
mod config;
mod connection;
mod cors;
mod eio3_binary;
pub mod events;
mod inbound;
mod outbound;

use std::sync::Arc;

use std::time::Duration;

use socketioxide::handler::ConnectHandler;
use socketioxide::layer::SocketIoLayer;
use socketioxide::SocketIo;

pub use args::{event_args, Args, ArgsError, MAX_NESTING};
pub use config::GatewayConfig;
pub use cors::{CorsOrigins, CorsOriginsError, OriginList, OriginProblem};
use relay_runtime::RelayHandle;

use connection::{Established, Handshake};

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
}

impl Gateway {
    pub fn new(relay: RelayHandle, config: GatewayConfig) -> Self {
        let limit = config.transport_limit();
        let cors = cors::Policy::new(config.cors_origins.clone());
        let (layer, io) = SocketIo::builder()
            .req_path(SOCKET_IO_PATH)
            .max_buffer_size(config.socket_buffer_packets)
            .max_payload(limit as u64)
            .ws_max_message_size(limit)
            .ws_max_frame_size(limit)
            .with_parser(socketioxide::ParserConfig::common().max_incoming_binary_buf_size(limit))
            .ack_timeout(config.ack_timeout + std::time::Duration::from_secs(2))
            .connect_timeout(config.connect_timeout)
            .build_layer();
        let config = Arc::new(config);
        let admit = move |handshake: Handshake| {
            let relay = relay.clone();
            let config = config.clone();
            async move { connection::admit(&relay, &config, handshake).await }
        };
        io.ns("/", (async |_: Established| {}).with(admit));
        Self { layer, io, cors }
    }

    /// Mounts the gateway on `router` (at `/socket.io/`, as socket.io clients expect), with
    /// CORS for the origins of [`GatewayConfig::cors_origins`] on that path only.
    pub fn attach(&self, router: axum::Router) -> axum::Router {
        router
            .layer(self.layer.clone())
            .layer(axum::middleware::from_fn(eio3_binary::fix))
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
}

/// How long a client may take to send a request head: from the moment a connection is
/// accepted, or from the end of its previous request when it is kept alive. Idle and
/// trickling connections are closed after it, so they cannot pile up until the process
/// runs out of file descriptors.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// [`serve_with`] with [`DEFAULT_HEADER_READ_TIMEOUT`].
pub async fn serve(listener: tokio::net::TcpListener, app: axum::Router) -> std::io::Result<()> {
    serve_with(listener, app, DEFAULT_HEADER_READ_TIMEOUT).await
}

/// Serves `app` on `listener` until the future is dropped (which ends every connection).
///
/// What `axum::serve` does, plus what it cannot: a timer for hyper, so that a connection
/// that does not deliver a request head within `header_read_timeout` (an idle socket, or
/// headers sent a byte a second) is closed. TCP no-delay is set on every accepted socket
/// (axum leaves it off; small relayed messages then wait for delayed ACKs and throughput
/// collapses). Each request carries its client's address as
/// `axum::extract::ConnectInfo<SocketAddr>` in its extensions (what
/// `into_make_service_with_connect_info` provides), for the per-address connection limits
/// and the admission callback. Websocket upgrades are served, after which the header timeout no longer
/// applies and the engine.io heartbeat watches the connection.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    header_read_timeout: Duration,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use tower::ServiceExt;

    // HTTP/1.1 only: Socket.IO clients speak nothing else, and hyper-util's automatic
    // version detection waits for a first byte before any timer runs, so an idle socket
    // would never be timed out.
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (tcp, remote_addr) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        accept_failed(e).await;
                        continue;
                    }
                };
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::warn!("could not set TCP_NODELAY: {e}");
                }
                let service = app.clone().map_request(
                    move |mut req: axum::http::Request<hyper::body::Incoming>| {
                        req.extensions_mut()
                            .insert(axum::extract::ConnectInfo(remote_addr));
                        req.map(axum::body::Body::new)
                    },
                );
                let service = hyper_util::service::TowerToHyperService::new(service);
                let builder = builder.clone();
                connections.spawn(async move {
                    let io = TokioIo::new(tcp);
                    let connection = builder.serve_connection(io, service).with_upgrades();
                    if let Err(e) = connection.await {
                        tracing::trace!("connection ended: {e}");
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// An accept that failed: a connection that went away before it was accepted is skipped;
/// anything else (out of file descriptors, mostly) is waited out for a second rather than
/// spun on.
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(e.kind(), ConnectionAborted | ConnectionRefused | ConnectionReset) {
        return;
    }
    tracing::error!("cannot accept a Socket.IO connection: {e}");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
