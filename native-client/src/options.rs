//! How to reach and trust the relay, and the client's limits.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use certs::Trust;

use crate::wire;

/// The QUIC address a relay started with `cargo run --release` listens on.
pub const DEFAULT_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9001);
/// The name the development certificate is issued for.
pub const DEFAULT_SERVER_NAME: &str = "localhost";
/// Events queued for [`crate::Incoming`] before the client stops reading the control stream
/// (and so, through QUIC flow control, the relay stops sending to it). The same as the
/// relay's default per-receiver queue (`--outbox-messages`).
pub const DEFAULT_INCOMING_CAPACITY: usize = 1024;

/// Everything [`crate::Client::connect`] needs. Start from [`ConnectOptions::new`], which
/// works with a relay started by `cargo run --release` on this machine, and change what
/// differs, either through the public fields or the chainable setters.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConnectOptions {
    /// The relay's QUIC (UDP) address. Default `127.0.0.1:9001`.
    pub addr: SocketAddr,
    /// The name checked against the relay's certificate. Default `localhost`.
    pub server_name: String,
    /// The id this client is known by; others register to it.
    pub client_id: String,
    /// How the relay's certificate is trusted. Default: the development CA in
    /// `certs::default_data_dir()/ca.pem`, which the relay creates on its first run.
    pub trust: Trust,
    /// Opaque credentials for the relay's authenticator (the default relay ignores them).
    pub credentials: Option<Bytes>,
    /// Largest control frame read or sent (an event's arguments plus a few bytes). Default
    /// [`wire::DEFAULT_MAX_FRAME_BYTES`], matching the relay's default; never above
    /// [`wire::MAX_FRAME_BYTES`].
    pub max_frame_bytes: usize,
    /// How long the QUIC handshake and the hello may take together. Default 10 s.
    pub connect_timeout: Duration,
    /// A safety net for requests the relay never answers (it always should; acks of emits
    /// time out on the relay after its `--ack-timeout-ms`). Default 5 minutes.
    pub request_timeout: Duration,
    /// Capacity of the [`crate::Incoming`] queue. Default [`DEFAULT_INCOMING_CAPACITY`].
    pub incoming_capacity: usize,
}

impl ConnectOptions {
    /// Defaults for a relay on this machine, connecting as `client_id`.
    pub fn new(client_id: impl Into<String>) -> Self {
        ConnectOptions {
            addr: DEFAULT_ADDR,
            server_name: DEFAULT_SERVER_NAME.to_string(),
            client_id: client_id.into(),
            trust: Trust::CaFile(certs::default_data_dir().join(certs::CA_CERT_FILE)),
            credentials: None,
            max_frame_bytes: wire::DEFAULT_MAX_FRAME_BYTES,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(300),
            incoming_capacity: DEFAULT_INCOMING_CAPACITY,
        }
    }

    pub fn addr(mut self, addr: SocketAddr) -> Self {
        self.addr = addr;
        self
    }

    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = name.into();
        self
    }

    pub fn trust(mut self, trust: Trust) -> Self {
        self.trust = trust;
        self
    }

    pub fn credentials(mut self, credentials: impl Into<Bytes>) -> Self {
        self.credentials = Some(credentials.into());
        self
    }

    /// A relay token (`p2p-relay token ...`) for a relay started with `--auth token`: it
    /// travels as the hello's credentials.
    pub fn token(self, token: impl Into<String>) -> Self {
        self.credentials(Bytes::from(token.into()))
    }

    pub fn max_frame_bytes(mut self, max: usize) -> Self {
        self.max_frame_bytes = max;
        self
    }

    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    pub fn incoming_capacity(mut self, capacity: usize) -> Self {
        self.incoming_capacity = capacity;
        self
    }

    /// The frame limit actually used: at least room for a small frame, at most the
    /// protocol's ceiling.
    pub(crate) fn frame_limit(&self) -> usize {
        self.max_frame_bytes.clamp(1024, wire::MAX_FRAME_BYTES)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_a_local_relay() {
        let options = ConnectOptions::new("A");
        assert_eq!(options.addr.to_string(), "127.0.0.1:9001");
        assert_eq!(options.server_name, "localhost");
        assert_eq!(
            options.trust,
            Trust::CaFile(certs::default_data_dir().join("ca.pem"))
        );
        assert_eq!(options.frame_limit(), wire::DEFAULT_MAX_FRAME_BYTES);
        let options = options.max_frame_bytes(usize::MAX).credentials(&b"k"[..]);
        assert_eq!(options.frame_limit(), wire::MAX_FRAME_BYTES);
        assert_eq!(options.credentials.as_deref(), Some(&b"k"[..]));
        let options = ConnectOptions::new("A").token("eyJ.x.y");
        assert_eq!(options.credentials.as_deref(), Some(&b"eyJ.x.y"[..]));
    }
}
