//! The server's command line and environment. Every limit has a default here and a flag.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use relay_core::directory::{DEFAULT_LIST_PAGE, MAX_LIST_PAGE};
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

    /// Requests one connection may have waiting for an answer at once.
    #[arg(long, env = "P2P_RELAY_MAX_PENDING", default_value_t = 1024)]
    pub max_pending: usize,

    /// Streams one pairing may have open at once.
    #[arg(long, env = "P2P_RELAY_MAX_STREAMS", default_value_t = 256)]
    pub max_streams: usize,

    /// Connected clients the relay accepts.
    #[arg(long, env = "P2P_RELAY_MAX_CLIENTS", default_value_t = 100_000)]
    pub max_clients: usize,

    /// Client ids in one page of a native client's list when it asks for no page size (it
    /// may ask for up to 4096). A list costs the relay one page at a time.
    #[arg(
        long,
        env = "P2P_RELAY_LIST_PAGE",
        default_value_t = DEFAULT_LIST_PAGE as u32,
        value_parser = clap::value_parser!(u32).range(1..=MAX_LIST_PAGE as i64)
    )]
    pub list_page: u32,
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

    pub fn ack_timeout(&self) -> Duration {
        Duration::from_millis(self.ack_timeout_ms)
    }

    /// The largest native control frame: a payload at the limit plus its framing.
    pub fn max_frame_bytes(&self) -> usize {
        p2p_relay_wire::frame_limit_for(self.max_message_bytes)
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
            ack_timeout: self.ack_timeout(),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Settings, clap::Error> {
        Settings::try_parse_from(std::iter::once("p2p-relay").chain(args.iter().copied()))
    }

    #[test]
    fn the_list_page_has_a_default_and_bounds() {
        assert_eq!(parse(&[]).unwrap().list_page as usize, DEFAULT_LIST_PAGE);
        assert_eq!(parse(&["--list-page", "7"]).unwrap().list_page, 7);
        let most = MAX_LIST_PAGE.to_string();
        assert_eq!(
            parse(&["--list-page", &most]).unwrap().list_page as usize,
            MAX_LIST_PAGE
        );
        for bad in ["0", "4097"] {
            let err = parse(&["--list-page", bad]).unwrap_err().to_string();
            assert!(err.contains("--list-page"), "{bad}: {err}");
        }
    }

    #[test]
    fn the_frame_limit_follows_the_payload_limit() {
        let settings = parse(&["--max-message-bytes", "1000"]).unwrap();
        assert_eq!(settings.max_frame_bytes(), 1000 + 64 * 1024);
        let settings = parse(&["--max-message-bytes", "100000000"]).unwrap();
        assert_eq!(settings.max_frame_bytes(), p2p_relay_wire::MAX_FRAME_BYTES);
    }
}
