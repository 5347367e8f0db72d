//! The QUIC side of a client: endpoint, TLS configuration, handshake, and what a closed
//! connection means in words.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::Arc;

use quinn::crypto::rustls::QuicClientConfig;
use quinn::{ConnectionError, TransportErrorCode};

use crate::error::ClientError;
use crate::options::ConnectOptions;
use crate::wire::{self, CloseCode};

/// Socket buffer size asked for: with the kernel's default, quinn's receive buffer
/// overflowed at full speed on loopback and lost ~0.8% of packets per run (measured on 2
/// cores); 4 MiB removed the loss.
const UDP_BUFFER_BYTES: usize = 4 * 1024 * 1024;
/// TLS alert `no_application_protocol` (RFC 7301), carried in a QUIC CRYPTO_ERROR.
const ALERT_NO_APPLICATION_PROTOCOL: u8 = 120;

/// Why a connection ended, as the application sees it. Match on it (or on
/// [`CloseReason::code`]) to tell a replaced connection from a relay shutting down; its
/// `Display` is a sentence for a person.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// The relay closed the connection with `code`, saying `detail` (may be empty).
    Relay { code: CloseCode, detail: String },
    /// This client closed it with `code` because it could not go on; `detail` says why
    /// (the relay ended the control stream, sent a frame over the limit, ...).
    Client { code: CloseCode, detail: String },
    /// Closed on purpose by this client ([`crate::Client::close`]).
    Local,
    /// Ended without a code of this protocol: lost (idle timeout, reset), a transport
    /// error, or a code this client does not know. The text says which.
    Other(String),
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::Relay { code, detail } => {
                write!(
                    f,
                    "the relay closed the connection: {code} (code {:#x})",
                    code.code()
                )?;
                if !detail.is_empty() {
                    write!(f, ": {detail}")?;
                }
                Ok(())
            }
            CloseReason::Client { detail, .. } => f.write_str(detail),
            CloseReason::Local => f.write_str("closed by this client"),
            CloseReason::Other(text) => f.write_str(text),
        }
    }
}

impl CloseReason {
    /// The protocol's code, when the connection was closed with one.
    pub fn code(&self) -> Option<CloseCode> {
        match self {
            CloseReason::Relay { code, .. } | CloseReason::Client { code, .. } => Some(*code),
            CloseReason::Local | CloseReason::Other(_) => None,
        }
    }

    pub(crate) fn other(text: impl Into<String>) -> Self {
        CloseReason::Other(text.into())
    }

    /// Told by the relay: in a `Closing` frame, or its connection close, with this code.
    pub(crate) fn by_relay(code: u64, detail: &str) -> Self {
        match CloseCode::from_code(code) {
            Some(code) => CloseReason::Relay {
                code,
                detail: detail.to_string(),
            },
            None => {
                let mut text =
                    format!("the relay closed the connection: unknown error code (code {code:#x})");
                if !detail.is_empty() {
                    text.push_str(": ");
                    text.push_str(detail);
                }
                CloseReason::Other(text)
            }
        }
    }

    pub(crate) fn from_connection_error(err: &ConnectionError) -> Self {
        match err {
            ConnectionError::ApplicationClosed(close) => CloseReason::by_relay(
                close.error_code.into_inner(),
                &String::from_utf8_lossy(&close.reason),
            ),
            ConnectionError::ConnectionClosed(close) => {
                CloseReason::other(format!("the relay aborted the connection: {close}"))
            }
            ConnectionError::TransportError(e) => {
                CloseReason::other(format!("QUIC transport error: {e}"))
            }
            ConnectionError::Reset => {
                CloseReason::other("the relay reset the connection (it may have restarted)")
            }
            ConnectionError::TimedOut => {
                CloseReason::other("the relay stopped answering (QUIC idle timeout)")
            }
            ConnectionError::LocallyClosed => CloseReason::Local,
            ConnectionError::VersionMismatch => {
                CloseReason::other("the relay does not speak this QUIC version")
            }
            other => CloseReason::other(other.to_string()),
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
    // No keep-alives of our own: the relay sends them, at a third of the idle timeout its
    // operator chose (which we do not know). quinn restarts an end's keep-alive timer on
    // every packet it receives, so only the end with the shorter interval ever pings: with
    // ours at a fixed 3 s, a relay set to a 30 s timeout was still pinged every 3 s (10,000
    // idle clients: 10.3% of a relay core, against 4.7% at the relay's own 10 s). QUIC's
    // acknowledgements of the relay's PINGs tell it we are alive, and its PINGs tell us it
    // is: each end takes the other for gone within the negotiated idle timeout.
    transport.keep_alive_interval(None);
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
        ConnectionError::ApplicationClosed(close) => refused(
            close.error_code.into_inner(),
            String::from_utf8_lossy(&close.reason).into_owned(),
        ),
        other => ClientError::Connect {
            addr,
            reason: CloseReason::from_connection_error(&other).to_string(),
        },
    }
}

/// The relay refused this client, with `code` (from its `Refused` frame or its close).
pub(crate) fn refused(code: u64, message: String) -> ClientError {
    match CloseCode::from_code(code) {
        Some(code) => ClientError::Refused { code, message },
        None => ClientError::Protocol(format!(
            "the relay refused the connection with code {code:#x}, unknown to this client: \
             {message}"
        )),
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
            error_code: VarInt::from_u32(CloseCode::Replaced.code()),
            reason: Bytes::from_static(b"replaced by a newer connection with clientId 'A'"),
        });
        let reason = CloseReason::from_connection_error(&err);
        assert_eq!(reason.code(), Some(CloseCode::Replaced));
        assert!(matches!(
            reason,
            CloseReason::Relay {
                code: CloseCode::Replaced,
                ..
            }
        ));
        assert_eq!(
            reason.to_string(),
            "the relay closed the connection: replaced by a newer connection with the same \
             clientId (code 0x5): replaced by a newer connection with clientId 'A'"
        );
        assert_eq!(
            CloseReason::from_connection_error(&ConnectionError::LocallyClosed).to_string(),
            "closed by this client"
        );
        let unknown = CloseReason::by_relay(0x99, "why");
        assert_eq!(unknown.code(), None);
        assert_eq!(
            unknown.to_string(),
            "the relay closed the connection: unknown error code (code 0x99): why"
        );
    }

    #[test]
    fn handshake_close_by_the_relay_is_a_refusal() {
        let err = ConnectionError::ApplicationClosed(quinn::ApplicationClose {
            error_code: VarInt::from_u32(CloseCode::VersionMismatch.code()),
            reason: Bytes::from_static(b"version 9 is not supported"),
        });
        match handshake_error(addr(), err) {
            ClientError::Refused { code, message } => {
                assert_eq!(code, CloseCode::VersionMismatch);
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
