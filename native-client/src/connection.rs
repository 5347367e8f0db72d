//! The QUIC side of a client: endpoint, TLS configuration, handshake, and what a closed
//! connection means in words.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::QuicClientConfig;
use quinn::{ConnectionError, TransportErrorCode};

use crate::error::ClientError;
use crate::options::ConnectOptions;
use crate::wire::{self, codes};

/// Socket buffer size asked for: with the kernel's default, quinn's receive buffer
/// overflowed at full speed on loopback and lost ~0.8% of packets (shared/FIELD-NOTES.md).
const UDP_BUFFER_BYTES: usize = 4 * 1024 * 1024;
/// Keeps an idle connection (a receiver waiting for its peer) from hitting the idle timeout:
/// a third of the relay's default (10 s), which the negotiated timeout never exceeds.
const KEEP_ALIVE: Duration = Duration::from_secs(3);
/// TLS alert `no_application_protocol` (RFC 7301), carried in a QUIC CRYPTO_ERROR.
const ALERT_NO_APPLICATION_PROTOCOL: u8 = 120;

/// Why a connection ended, as the application sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseReason {
    /// The application code ([`codes`]) when the relay closed the connection with one.
    pub code: Option<u64>,
    /// A sentence for a person, naming the code's meaning when there is one.
    pub message: String,
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl CloseReason {
    pub(crate) fn new(code: Option<u64>, message: impl Into<String>) -> Self {
        CloseReason {
            code,
            message: message.into(),
        }
    }

    /// Told by the relay in a `Closing` frame (or a `Refused` frame) before it closed.
    pub(crate) fn announced(code: u32, reason: &str) -> Self {
        let code = u64::from(code);
        let mut message = format!(
            "the relay closed the connection: {} (code {code:#x})",
            codes::describe(code)
        );
        if !reason.is_empty() {
            message.push_str(": ");
            message.push_str(reason);
        }
        CloseReason::new(Some(code), message)
    }

    pub(crate) fn from_connection_error(err: &ConnectionError) -> Self {
        match err {
            ConnectionError::ApplicationClosed(close) => CloseReason::announced(
                u32::try_from(close.error_code.into_inner()).unwrap_or(u32::MAX),
                &String::from_utf8_lossy(&close.reason),
            ),
            ConnectionError::ConnectionClosed(close) => {
                CloseReason::new(None, format!("the relay aborted the connection: {close}"))
            }
            ConnectionError::TransportError(e) => {
                CloseReason::new(None, format!("QUIC transport error: {e}"))
            }
            ConnectionError::Reset => CloseReason::new(
                None,
                "the relay reset the connection (it may have restarted)",
            ),
            ConnectionError::TimedOut => {
                CloseReason::new(None, "the relay stopped answering (QUIC idle timeout)")
            }
            ConnectionError::LocallyClosed => CloseReason::new(None, "closed by this client"),
            ConnectionError::VersionMismatch => {
                CloseReason::new(None, "the relay does not speak this QUIC version")
            }
            other => CloseReason::new(None, other.to_string()),
        }
    }
}

/// Creates the client endpoint: one UDP socket of the address family of `addr`.
pub(crate) fn endpoint(options: &ConnectOptions) -> Result<quinn::Endpoint, ClientError> {
    let bind: SocketAddr = if options.addr.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(bind).map_err(ClientError::Endpoint)?;
    // Best effort: a smaller buffer only costs speed.
    if let Ok(state) = quinn::udp::UdpSocketState::new((&socket).into()) {
        for (what, result) in [
            (
                "receive",
                state.set_recv_buffer_size((&socket).into(), UDP_BUFFER_BYTES),
            ),
            (
                "send",
                state.set_send_buffer_size((&socket).into(), UDP_BUFFER_BYTES),
            ),
        ] {
            if let Err(error) = result {
                tracing::debug!(%error, "could not enlarge the UDP {what} buffer");
            }
        }
    }
    let runtime = quinn::default_runtime().ok_or_else(|| {
        ClientError::Endpoint(std::io::Error::other("no async runtime found (need tokio)"))
    })?;
    quinn::Endpoint::new(quinn::EndpointConfig::default(), None, socket, runtime)
        .map_err(ClientError::Endpoint)
}

/// The quinn client configuration: TLS from the trust option, ALPN of this protocol.
pub(crate) fn client_config(options: &ConnectOptions) -> Result<quinn::ClientConfig, ClientError> {
    let tls = options.trust.client_config(&[wire::ALPN])?;
    let quic = QuicClientConfig::try_from(tls).map_err(|e| ClientError::Connect {
        addr: options.addr,
        reason: format!("the TLS configuration is not usable for QUIC: {e}"),
    })?;
    let mut config = quinn::ClientConfig::new(Arc::new(quic));
    let mut transport = quinn::TransportConfig::default();
    transport.keep_alive_interval(Some(KEEP_ALIVE));
    config.transport_config(Arc::new(transport));
    Ok(config)
}

/// Maps a failed QUIC handshake to an error that says what to fix.
pub(crate) fn handshake_error(addr: SocketAddr, err: ConnectionError) -> ClientError {
    match err {
        // Our own TLS stack refused the relay (its certificate, mostly).
        ConnectionError::TransportError(e) if tls_alert(e.code).is_some() => ClientError::Tls {
            addr,
            message: tls_message(&e.reason),
        },
        // The relay's TLS stack refused us.
        ConnectionError::ConnectionClosed(close) => match tls_alert(close.error_code) {
            Some(ALERT_NO_APPLICATION_PROTOCOL) => ClientError::AlpnMismatch { addr },
            Some(_) => ClientError::Tls {
                addr,
                message: format!(
                    "the relay refused the handshake: {}",
                    tls_message(&String::from_utf8_lossy(&close.reason))
                ),
            },
            None => ClientError::Connect {
                addr,
                reason: format!("the relay aborted the handshake: {close}"),
            },
        },
        ConnectionError::ApplicationClosed(close) => ClientError::Refused {
            code: u32::try_from(close.error_code.into_inner()).unwrap_or(u32::MAX),
            message: String::from_utf8_lossy(&close.reason).into_owned(),
        },
        other => ClientError::Connect {
            addr,
            reason: CloseReason::from_connection_error(&other).message,
        },
    }
}

/// The TLS alert inside a QUIC CRYPTO_ERROR code (0x100 + alert), if it is one.
fn tls_alert(code: TransportErrorCode) -> Option<u8> {
    let code = u64::from(code);
    (0x100..0x200).contains(&code).then(|| (code - 0x100) as u8)
}

/// Cleans rustls's wording of a certificate rejection down to the message of our own
/// verifier ([`certs::TrustFailure`]), which says which check failed.
///
/// quinn keeps only the text of the rustls error, so [`certs::describe_tls_error`] (which
/// needs the `rustls::Error`) cannot be applied here; rustls prints a custom rejection as
/// `invalid peer certificate: Other(OtherError(<our message>))`, and that wrapping is what
/// this removes.
pub(crate) fn tls_message(reason: &str) -> String {
    let mut text = reason.trim();
    text = text
        .strip_prefix("invalid peer certificate: ")
        .unwrap_or(text);
    if let Some(inner) = text
        .strip_prefix("Other(OtherError(")
        .and_then(|t| t.strip_suffix("))"))
    {
        text = inner;
    }
    text.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use quinn::VarInt;

    fn addr() -> SocketAddr {
        "127.0.0.1:9001".parse().unwrap()
    }

    #[test]
    fn tls_messages_lose_the_rustls_wrapping() {
        assert_eq!(
            tls_message(
                "invalid peer certificate: Other(OtherError(server certificate fingerprint \
                 mismatch: expected aa, got bb))"
            ),
            "server certificate fingerprint mismatch: expected aa, got bb"
        );
        assert_eq!(
            tls_message("invalid peer certificate: UnknownIssuer"),
            "UnknownIssuer"
        );
        assert_eq!(
            tls_message("peer sent no certificates"),
            "peer sent no certificates"
        );
    }

    #[test]
    fn application_close_names_the_code() {
        let err = ConnectionError::ApplicationClosed(quinn::ApplicationClose {
            error_code: VarInt::from_u32(codes::REPLACED),
            reason: Bytes::from_static(b"replaced by a newer connection with clientId 'A'"),
        });
        let reason = CloseReason::from_connection_error(&err);
        assert_eq!(reason.code, Some(0x5));
        assert_eq!(
            reason.to_string(),
            "the relay closed the connection: replaced by a newer connection with the same \
             clientId (code 0x5): replaced by a newer connection with clientId 'A'"
        );
        assert_eq!(
            CloseReason::from_connection_error(&ConnectionError::LocallyClosed).to_string(),
            "closed by this client"
        );
    }

    #[test]
    fn handshake_close_by_the_relay_is_a_refusal() {
        let err = ConnectionError::ApplicationClosed(quinn::ApplicationClose {
            error_code: VarInt::from_u32(codes::VERSION_MISMATCH),
            reason: Bytes::from_static(b"version 9 is not supported"),
        });
        match handshake_error(addr(), err) {
            ClientError::Refused { code, message } => {
                assert_eq!(code, codes::VERSION_MISMATCH);
                assert_eq!(message, "version 9 is not supported");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn timeouts_say_where_they_looked() {
        let msg = handshake_error(addr(), ConnectionError::TimedOut).to_string();
        assert!(msg.contains("127.0.0.1:9001"), "{msg}");
    }

    #[test]
    fn tls_alerts_are_recognised() {
        assert_eq!(
            tls_alert(TransportErrorCode::crypto(ALERT_NO_APPLICATION_PROTOCOL)),
            Some(120)
        );
        assert_eq!(tls_alert(TransportErrorCode::PROTOCOL_VIOLATION), None);
    }
}
