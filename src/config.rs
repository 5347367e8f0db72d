//! The server's command line and environment. Every limit has a default here and a flag.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use relay_core::DuplicatePolicy;

/// p2p-relay: pairs two clients and relays their events, acks and streams, over Socket.IO
/// (legacy socket.io-p2p-plugin clients) and QUIC (native clients).
#[derive(Debug, Clone, Parser)]
#[command(version, about)]
pub struct Settings {
    /// Address of the Socket.IO gateway (port 0 picks a free port).
    #[arg(
        long,
        env = "P2P_RELAY_SOCKETIO_LISTEN",
        default_value = "127.0.0.1:9000"
    )]
    pub socketio_listen: SocketAddr,

    /// Address of the QUIC front end (UDP; port 0 picks a free port).
    #[arg(long, env = "P2P_RELAY_QUIC_LISTEN", default_value = "127.0.0.1:9001")]
    pub quic_listen: SocketAddr,

    /// Where development certificates are created and kept (default: the per-user data
    /// directory).
    #[arg(long, env = "P2P_RELAY_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// Certificate chain (PEM) for QUIC, instead of the development certificate.
    #[arg(long, env = "P2P_RELAY_CERT", requires = "key")]
    pub cert: Option<PathBuf>,

    /// Private key (PEM) matching --cert.
    #[arg(long, env = "P2P_RELAY_KEY", requires = "cert")]
    pub key: Option<PathBuf>,

    /// What to do when a clientId connects twice: replace the older connection, or reject
    /// the newcomer.
    #[arg(long, env = "P2P_RELAY_DUPLICATE_POLICY", default_value = "replace")]
    pub duplicate_policy: DuplicatePolicy,

    /// How long a request waits for the other client's answer, in milliseconds.
    #[arg(long, env = "P2P_RELAY_ACK_TIMEOUT_MS", default_value_t = 30_000)]
    pub ack_timeout_ms: u64,

    /// Largest relayed event payload (its arguments), in bytes.
    #[arg(long, env = "P2P_RELAY_MAX_MESSAGE_BYTES", default_value_t = 1024 * 1024)]
    pub max_message_bytes: usize,

    /// Relayed events queued toward one slow receiver before senders are told they could
    /// not be delivered.
    #[arg(long, env = "P2P_RELAY_OUTBOX_MESSAGES", default_value_t = 1024)]
    pub outbox_messages: usize,

    /// Bytes queued toward one client, replies and errors included, before the relay
    /// disconnects it as a client that does not read (Socket.IO: a SERVER_ERROR saying so,
    /// then disconnect; QUIC: closed with code 0x7).
    #[arg(long, env = "P2P_RELAY_OUTBOX_BYTES", default_value_t = 8 * 1024 * 1024)]
    pub outbox_bytes: usize,

    /// How long a QUIC connection may stay silent before the relay takes its client for
    /// gone (killed, or off the network) and tells its peer; keep-alives go out at a third
    /// of it. The effective timeout is the smaller of this and the client's own.
    #[arg(
        long,
        env = "P2P_RELAY_QUIC_IDLE_TIMEOUT_MS",
        default_value_t = 10_000,
        value_parser = clap::value_parser!(u64).range(300..=600_000)
    )]
    pub quic_idle_timeout_ms: u64,

    /// Time an HTTP client of the Socket.IO gateway has to send a request head, from the
    /// moment it connects (or its previous request ended): idle and trickling connections
    /// are closed after it.
    #[arg(long, env = "P2P_RELAY_HTTP_HEADER_TIMEOUT_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub http_header_timeout_ms: u64,

    /// Time a Socket.IO client has, once its transport is open, to join the namespace;
    /// a connection that never does is closed.
    #[arg(long, env = "P2P_RELAY_SOCKETIO_CONNECT_TIMEOUT_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub socketio_connect_timeout_ms: u64,

    /// Requests one connection may have waiting for an answer at once.
    #[arg(long, env = "P2P_RELAY_MAX_PENDING", default_value_t = 1024)]
    pub max_pending: usize,

    /// Streams one pairing may have open at once.
    #[arg(long, env = "P2P_RELAY_MAX_STREAMS", default_value_t = 256)]
    pub max_streams: usize,

    /// Connected clients the relay accepts.
    #[arg(long, env = "P2P_RELAY_MAX_CLIENTS", default_value_t = 100_000)]
    pub max_clients: usize,

    /// Web pages allowed to connect to the Socket.IO gateway, by origin: '*' for any (as
    /// socket.io 2 allowed), or a comma-separated list of scheme://host[:port], e.g.
    /// 'http://127.0.0.1:8800,https://app.example.com'. When restricted, a request from a
    /// page of another origin is refused with 403; clients that send no Origin (Node,
    /// native tools) are not affected.
    #[arg(
        long,
        env = "P2P_RELAY_CORS_ORIGINS",
        value_name = "ORIGINS",
        default_value = "*"
    )]
    pub cors_origins: gateway_socketio::CorsOrigins,
}

impl Settings {
    /// The defaults, but on free loopback ports and with development certificates in
    /// `data_dir`: a relay for tests, benchmarks, or running beside other services.
    pub fn on_free_local_ports(data_dir: &std::path::Path) -> Self {
        let mut settings = Self::parse_from(["p2p-relay"]);
        settings.socketio_listen = "127.0.0.1:0".parse().expect("a valid address");
        settings.quic_listen = "127.0.0.1:0".parse().expect("a valid address");
        settings.data_dir = Some(data_dir.to_path_buf());
        settings
    }

    pub fn quic_idle_timeout(&self) -> Duration {
        Duration::from_millis(self.quic_idle_timeout_ms)
    }

    pub fn ack_timeout(&self) -> Duration {
        Duration::from_millis(self.ack_timeout_ms)
    }

    /// The largest native control frame: a payload at the limit plus its framing.
    pub fn max_frame_bytes(&self) -> usize {
        self.max_message_bytes
            .saturating_add(64 * 1024)
            .min(native_client::wire::MAX_FRAME_BYTES)
    }

    pub fn core(&self) -> relay_core::Config {
        relay_core::Config {
            duplicate_policy: self.duplicate_policy,
            ack_timeout: self.ack_timeout(),
            max_message_bytes: self.max_message_bytes,
            max_pending_per_connection: self.max_pending,
            max_streams_per_pair: self.max_streams,
            max_clients: self.max_clients,
        }
    }

    pub fn gateway(&self) -> gateway_socketio::GatewayConfig {
        gateway_socketio::GatewayConfig {
            max_message_bytes: self.max_message_bytes,
            outbox_messages: self.outbox_messages,
            outbox_bytes: self.outbox_bytes,
            ack_timeout: self.ack_timeout(),
            cors_origins: self.cors_origins.clone(),
            connect_timeout: Duration::from_millis(self.socketio_connect_timeout_ms),
            ..Default::default()
        }
    }
}
