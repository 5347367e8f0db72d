//! The server's command line and environment. Every limit has a default here and a flag.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use relay_core::directory::{DEFAULT_LIST_PAGE, MAX_LIST_PAGE};
use relay_core::{DuplicatePolicy, IpLimits, RateLimits};

use crate::auth::AuthMode;

/// p2p-relay: pairs two clients and relays their events, acks and streams, over Socket.IO
/// (legacy socket.io-p2p-plugin clients) and QUIC (native clients).
#[derive(Debug, Clone, Parser)]
#[command(version, about)]
pub struct Settings {
    /// Cluster mode (`--cluster redis://...` and its knobs); off by default.
    #[command(flatten)]
    pub cluster: crate::cluster::ClusterSettings,

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

    /// The certificate both front ends present (TLS for the Socket.IO gateway).
    #[command(flatten)]
    pub tls: TlsSettings,

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
    /// then disconnect; QUIC: closed with `CloseCode::SlowReader`, 0x7).
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

    /// How clients are admitted: 'none' (any clientId, as the original server), 'token'
    /// (a token signed with --auth-secret-file whose sub is the clientId), or 'url' (an
    /// HTTP POST to --auth-url decides).
    #[arg(long, env = "P2P_RELAY_AUTH", value_enum, default_value = "none")]
    pub auth: AuthMode,

    /// The shared secret tokens are signed with (HS256), for --auth token and
    /// `p2p-relay token`.
    #[arg(
        long,
        env = "P2P_RELAY_AUTH_SECRET_FILE",
        value_name = "FILE",
        required_if_eq("auth", "token")
    )]
    pub auth_secret_file: Option<PathBuf>,

    /// The admission service for --auth url: a 2xx answer admits (optionally with a JSON
    /// body of claims), anything else refuses.
    #[arg(
        long,
        env = "P2P_RELAY_AUTH_URL",
        value_name = "URL",
        required_if_eq("auth", "url")
    )]
    pub auth_url: Option<String>,

    /// How long the admission service may take before the connection is refused.
    #[arg(long, env = "P2P_RELAY_AUTH_TIMEOUT_MS", default_value_t = 3000)]
    pub auth_timeout_ms: u64,

    /// Largest body of an admission service's 2xx answer the relay reads (a claims object
    /// is a few hundred bytes); a longer one refuses the connection, so that a faulty or
    /// hostile service cannot make the relay hold its whole answer in memory.
    #[arg(
        long,
        env = "P2P_RELAY_AUTH_RESPONSE_MAX_BYTES",
        default_value_t = 64 * 1024,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub auth_response_max_bytes: u64,

    /// Requests per second one client may make (pairing, emits, lists, streams); 0 (the
    /// default): no limit, as a 1.4.1 client emits tens of thousands a second
    /// (docs/LIMITS.md).
    #[arg(long, env = "P2P_RELAY_RATE_MESSAGES", default_value_t = 0)]
    pub rate_messages: u32,

    /// Requests one client may make at once before --rate-messages applies; 0 (the
    /// default): two seconds' worth. The byte limit allows a burst of the same length in
    /// seconds.
    #[arg(long, env = "P2P_RELAY_RATE_BURST", default_value_t = 0)]
    pub rate_burst: u32,

    /// Payload bytes per second one client may send (event and ack arguments; stream
    /// chunks are paced by their receiver's acks and not counted); 0 (the default): no
    /// limit, as binary emits go at network speed.
    #[arg(long, env = "P2P_RELAY_RATE_BYTES", default_value_t = 0)]
    pub rate_bytes: u32,

    /// Connected clients one IP address may have at once; 0 (the default): no limit, as
    /// thousands of clients may share a NAT or a proxy's address (--max-clients bounds the
    /// total).
    #[arg(long, env = "P2P_RELAY_MAX_CONNECTIONS_PER_IP", default_value_t = 0)]
    pub max_connections_per_ip: usize,

    /// New connections per second one IP address may open; 0 (the default): no limit.
    #[arg(long, env = "P2P_RELAY_CONNECT_RATE_PER_IP", default_value_t = 0)]
    pub connect_rate_per_ip: u32,

    /// New connections one IP address may open at once before --connect-rate-per-ip
    /// applies; 0 (the default): two seconds' worth.
    #[arg(long, env = "P2P_RELAY_CONNECT_BURST_PER_IP", default_value_t = 0)]
    pub connect_burst_per_ip: u32,

    /// Reverse proxies and load balancers in front of the Socket.IO gateway, as CIDR
    /// networks or addresses (e.g. '10.0.0.0/8,127.0.0.1'): for a connection from one of
    /// them, the client's address is taken from its `Forwarded` or `X-Forwarded-For`
    /// header (the rightmost address that is not itself a trusted proxy), and is the one
    /// the per-address limits, logs, the control center and the admission service see.
    /// Unset (the default): every client is its TCP peer, and such headers are ignored, as
    /// anyone can send them (docs/DEPLOY.md).
    #[arg(long, env = "P2P_RELAY_TRUSTED_PROXIES", value_name = "CIDRS")]
    pub trusted_proxies: Option<gateway_socketio::TrustedProxies>,

    /// Connections from --trusted-proxies start with a PROXY protocol (v1 or v2) preface
    /// naming the client (an L4 load balancer's, e.g. HAProxy `send-proxy-v2`, AWS NLB); a
    /// connection from them without a valid one is closed. Off by default; needs
    /// --trusted-proxies.
    #[arg(
        long,
        env = "P2P_RELAY_PROXY_PROTOCOL",
        value_parser = clap::builder::BoolishValueParser::new(),
        requires = "trusted_proxies"
    )]
    pub proxy_protocol: bool,

    /// Client ids in one page of a native client's list when it asks for no page size (it
    /// may ask for up to 4096). A list costs the relay one page at a time.
    #[arg(
        long,
        env = "P2P_RELAY_LIST_PAGE",
        default_value_t = DEFAULT_LIST_PAGE as u32,
        value_parser = clap::value_parser!(u32).range(1..=MAX_LIST_PAGE as i64)
    )]
    pub list_page: u32,

    /// On shutdown, how long each step may take (clients taking their close message,
    /// connections ending) before what is left is cut, in milliseconds.
    #[arg(long, env = "P2P_RELAY_SHUTDOWN_GRACE_MS", default_value_t = 2_000)]
    pub shutdown_grace_ms: u64,

    // Operations: the admin listener, logs, the drain on shutdown (see their modules).
    #[command(flatten)]
    pub admin: crate::admin::AdminSettings,
    #[command(flatten)]
    pub logs: crate::logging::LogSettings,
    #[command(flatten)]
    pub drain: crate::drain::DrainSettings,
}

/// The relay's own certificate: one pair of PEM files for both front ends.
#[derive(Debug, Clone, clap::Args)]
pub struct TlsSettings {
    /// Certificate chain (PEM, end-entity first, e.g. an ACME fullchain.pem). With it, the
    /// Socket.IO gateway serves https and wss only, and QUIC presents the same certificate
    /// instead of the development one. The files are read again when they change and on
    /// SIGHUP; new connections get the new certificate, open ones are not touched.
    /// (`--cert`, P2P_RELAY_CERT: the older names.)
    #[arg(
        long,
        visible_alias = "cert",
        env = "P2P_RELAY_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,

    /// Private key (PEM: PKCS#8, PKCS#1 or SEC1) of --tls-cert. (`--key`, P2P_RELAY_KEY:
    /// the older names.)
    #[arg(
        long,
        visible_alias = "key",
        env = "P2P_RELAY_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,

    /// How often the certificate files are checked for a change, in milliseconds.
    #[arg(long, env = "P2P_RELAY_TLS_RELOAD_INTERVAL_MS", default_value_t = 5_000,
          value_parser = clap::value_parser!(u64).range(10..))]
    pub tls_reload_interval_ms: u64,

    /// Time a client of the https gateway has to complete its TLS handshake, from the
    /// moment it connects; a silent or slow one is closed.
    #[arg(long, env = "P2P_RELAY_TLS_HANDSHAKE_TIMEOUT_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub tls_handshake_timeout_ms: u64,
}

impl TlsSettings {
    /// The certificate and key files, if given: by the flags or their environment
    /// variables, else by the older variables P2P_RELAY_CERT and P2P_RELAY_KEY (clap takes
    /// one variable per flag, so the old names are looked up here).
    pub fn files(&self) -> Option<(PathBuf, PathBuf)> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some((cert.clone(), key.clone())),
            _ => {
                let cert = std::env::var_os("P2P_RELAY_CERT")?;
                let key = std::env::var_os("P2P_RELAY_KEY")?;
                Some((cert.into(), key.into()))
            }
        }
    }

    pub fn reload_interval(&self) -> Duration {
        Duration::from_millis(self.tls_reload_interval_ms)
    }

    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.tls_handshake_timeout_ms)
    }
}

impl Settings {
    /// The defaults, but on free loopback ports and with development certificates in
    /// `data_dir`: a relay for tests, benchmarks, or running beside other services.
    pub fn on_free_local_ports(data_dir: &std::path::Path) -> Self {
        let mut settings = Self::parse_from(["p2p-relay"]);
        settings.socketio_listen = "127.0.0.1:0".parse().expect("a valid address");
        settings.quic_listen = "127.0.0.1:0".parse().expect("a valid address");
        settings.admin.admin_listen = "127.0.0.1:0".parse().expect("a valid address");
        settings.data_dir = Some(data_dir.to_path_buf());
        settings
    }

    pub fn quic_idle_timeout(&self) -> Duration {
        Duration::from_millis(self.quic_idle_timeout_ms)
    }

    pub fn ack_timeout(&self) -> Duration {
        Duration::from_millis(self.ack_timeout_ms)
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }

    /// The largest native control frame: a payload at the limit plus its framing.
    pub fn max_frame_bytes(&self) -> usize {
        p2p_relay_wire::frame_limit_for(self.max_message_bytes)
    }

    pub fn auth_timeout(&self) -> Duration {
        Duration::from_millis(self.auth_timeout_ms)
    }

    /// The per-client rate limits. The byte burst lasts as many seconds as the request
    /// burst does (two, by default), and always lets one maximal message through.
    pub fn rate(&self) -> RateLimits {
        let seconds = if self.rate_messages == 0 || self.rate_burst == 0 {
            2.0
        } else {
            f64::from(self.rate_burst.max(1)) / f64::from(self.rate_messages)
        };
        let byte_burst = if self.rate_bytes == 0 {
            0
        } else {
            (f64::from(self.rate_bytes) * seconds)
                .max(self.max_message_bytes as f64)
                .min(f64::from(u32::MAX)) as u32
        };
        RateLimits {
            messages_per_second: self.rate_messages,
            message_burst: self.rate_burst,
            bytes_per_second: self.rate_bytes,
            byte_burst,
        }
    }

    pub fn core(&self) -> relay_core::Config {
        relay_core::Config {
            duplicate_policy: self.duplicate_policy,
            ack_timeout: self.ack_timeout(),
            max_message_bytes: self.max_message_bytes,
            max_pending_per_connection: self.max_pending,
            max_streams_per_pair: self.max_streams,
            max_clients: self.max_clients,
            rate: self.rate(),
            ip: IpLimits {
                max_connections: self.max_connections_per_ip,
                connects_per_second: self.connect_rate_per_ip,
                connect_burst: self.connect_burst_per_ip,
            },
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
            shutdown_grace: self.shutdown_grace(),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_the_byte_burst() {
        let settings = Settings::parse_from(["p2p-relay"]);
        assert_eq!(settings.auth, AuthMode::None);
        assert_eq!(settings.rate(), RateLimits::default());
        assert_eq!(settings.core().ip, IpLimits::default());
        let settings = Settings::parse_from([
            "p2p-relay",
            "--rate-messages",
            "10",
            "--rate-burst",
            "5",
            "--rate-bytes",
            "100",
        ]);
        // Half a second of bytes, but never less than one maximal message.
        assert_eq!(settings.rate().byte_burst, 1024 * 1024);
    }

    #[test]
    fn token_mode_needs_its_secret() {
        let e = Settings::try_parse_from(["p2p-relay", "--auth", "token"]).unwrap_err();
        assert!(e.to_string().contains("--auth-secret-file"), "{e}");
        let e = Settings::try_parse_from(["p2p-relay", "--auth", "url"]).unwrap_err();
        assert!(e.to_string().contains("--auth-url"), "{e}");
    }

    #[test]
    fn one_certificate_pair_with_the_old_flags_as_aliases() {
        let settings = parse(&["--tls-cert", "c.pem", "--tls-key", "k.pem"]).unwrap();
        let pair = (PathBuf::from("c.pem"), PathBuf::from("k.pem"));
        assert_eq!(settings.tls.files(), Some(pair.clone()));
        let settings = parse(&["--cert", "c.pem", "--key", "k.pem"]).unwrap();
        assert_eq!(settings.tls.files(), Some(pair));
        let err = parse(&["--tls-cert", "c.pem"]).unwrap_err().to_string();
        assert!(err.contains("--tls-key"), "{err}");
        assert_eq!(
            parse(&[]).unwrap().tls.reload_interval(),
            Duration::from_secs(5)
        );
    }

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
