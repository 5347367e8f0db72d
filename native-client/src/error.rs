//! What can go wrong, worded for the person who has to fix it.

use std::net::SocketAddr;
use std::time::Duration;

use crate::args::ArgsError;
use crate::wire::{codes, FrameError};

/// Errors of [`crate::Client`] and its verbs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The trust option could not be turned into a TLS configuration (missing or bad CA
    /// file, malformed fingerprint, no system roots). Nothing was sent yet.
    #[error("cannot set up trust in the relay: {0}")]
    Trust(certs::CertError),

    /// The local UDP socket or QUIC endpoint could not be created.
    #[error("cannot open a local UDP socket for QUIC: {0}")]
    Endpoint(std::io::Error),

    /// The TLS handshake failed: the relay's certificate was not trusted, or the relay
    /// refused ours. `message` says which check failed.
    #[error("TLS handshake with the relay at {addr} failed: {message}")]
    Tls { addr: SocketAddr, message: String },

    /// The server does not offer this protocol version (ALPN mismatch).
    #[error(
        "the server at {addr} does not speak {} (ALPN mismatch): it is not a p2p-relay, or \
         one of another protocol version",
        String::from_utf8_lossy(crate::wire::ALPN)
    )]
    AlpnMismatch { addr: SocketAddr },

    /// Nothing answered in time.
    #[error(
        "no answer from a relay at {addr} within {}s: is it running, and is {addr} its QUIC \
         (UDP) address?",
        .after.as_secs_f32()
    )]
    ConnectTimeout { addr: SocketAddr, after: Duration },

    /// The connection could not be set up for another reason.
    #[error("cannot connect to the relay at {addr}: {reason}")]
    Connect { addr: SocketAddr, reason: String },

    /// The relay answered the hello with a refusal.
    #[error("the relay refused the connection: {message} ({}, code {code:#x})", codes::describe(u64::from(*.code)))]
    Refused { code: u32, message: String },

    /// The relay sent something this client cannot make sense of.
    #[error("the relay broke the protocol: {0}")]
    Protocol(String),

    /// The connection is gone; the reason says why.
    #[error("the connection to the relay is closed: {0}")]
    Closed(crate::CloseReason),

    /// The relay answered the request with a failure; the text is the relay's.
    #[error("request failed: {0}")]
    Request(String),

    /// The relay did not answer a request in time (it always should: this is a safety net).
    #[error("the relay did not answer the {what} request within {}s", .after.as_secs_f32())]
    RequestTimeout { what: &'static str, after: Duration },

    /// An emit needs a peer: register with one first.
    #[error("not paired with any client: register with a peer first")]
    NotPaired,

    /// Register while paired: unregister first.
    #[error("already paired with '{0}': unregister first")]
    AlreadyPaired(String),

    #[error("cannot register to yourself")]
    RegisterSelf,

    #[error("the event name must not be empty")]
    EmptyEvent,

    /// A frame (usually the arguments of an emit or ack) is over the size limit.
    #[error(
        "{what} of {len} bytes exceeds the limit of {max} bytes (ConnectOptions::max_frame_bytes; \
         the relay's limit is its --max-message-bytes)"
    )]
    TooLarge {
        what: &'static str,
        len: usize,
        max: usize,
    },

    #[error(transparent)]
    Args(#[from] ArgsError),

    /// The control stream failed.
    #[error(transparent)]
    Frame(#[from] FrameError),

    /// A granted P2P stream could not be opened or started.
    #[error("cannot open the data stream for P2P stream {stream}: {reason}")]
    OpenStream { stream: u64, reason: String },
}

// The messages above include their cause's text, so the causes are not also exposed as
// `source()`: an error chain printed in full (`{:#}` with anyhow) would say it twice.
impl From<certs::CertError> for ClientError {
    fn from(e: certs::CertError) -> Self {
        ClientError::Trust(e)
    }
}

/// Why a P2P stream failed, inside the `std::io::Error` that its reads and writes return.
///
/// Get it back with [`StreamError::of`] to branch on the code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// The read side was reset: by the peer (through the relay) or by the relay itself.
    #[error("stream reset: {} (code {code:#x})", codes::describe(*.code))]
    Reset { code: u64 },
    /// The other end no longer reads what this side writes.
    #[error("stream stopped: {} (code {code:#x})", codes::describe(*.code))]
    Stopped { code: u64 },
    /// The whole connection to the relay is gone.
    #[error("connection to the relay lost: {0}")]
    ConnectionLost(String),
    /// This side already finished or reset the stream.
    #[error("the stream was already finished or reset on this side")]
    ClosedStream,
}

impl StreamError {
    /// The `StreamError` inside an I/O error returned by a [`crate::P2pStream`], if any.
    pub fn of(err: &std::io::Error) -> Option<&StreamError> {
        err.get_ref()?.downcast_ref::<StreamError>()
    }

    /// The application code of a reset or stop, e.g. [`codes::STREAM_PEER_GONE`].
    pub fn code(&self) -> Option<u64> {
        match self {
            StreamError::Reset { code } | StreamError::Stopped { code } => Some(*code),
            _ => None,
        }
    }

    pub(crate) fn from_read(err: quinn::ReadError) -> std::io::Error {
        use std::io::ErrorKind;
        let (kind, err) = match err {
            quinn::ReadError::Reset(code) => (
                ErrorKind::ConnectionReset,
                StreamError::Reset {
                    code: code.into_inner(),
                },
            ),
            quinn::ReadError::ConnectionLost(e) => (
                ErrorKind::NotConnected,
                StreamError::ConnectionLost(
                    crate::CloseReason::from_connection_error(&e).to_string(),
                ),
            ),
            quinn::ReadError::ClosedStream => (ErrorKind::NotConnected, StreamError::ClosedStream),
            other => return std::io::Error::other(other),
        };
        std::io::Error::new(kind, err)
    }

    pub(crate) fn from_write(err: quinn::WriteError) -> std::io::Error {
        use std::io::ErrorKind;
        let (kind, err) = match err {
            quinn::WriteError::Stopped(code) => (
                ErrorKind::BrokenPipe,
                StreamError::Stopped {
                    code: code.into_inner(),
                },
            ),
            quinn::WriteError::ConnectionLost(e) => (
                ErrorKind::NotConnected,
                StreamError::ConnectionLost(
                    crate::CloseReason::from_connection_error(&e).to_string(),
                ),
            ),
            quinn::WriteError::ClosedStream => (ErrorKind::NotConnected, StreamError::ClosedStream),
            other => return std::io::Error::other(other),
        };
        std::io::Error::new(kind, err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quinn::VarInt;

    #[test]
    fn a_reset_names_its_cause() {
        let err = StreamError::from_read(quinn::ReadError::Reset(VarInt::from_u32(
            codes::STREAM_PEER_GONE,
        )));
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
        assert_eq!(
            err.to_string(),
            "stream reset: the peer's connection was lost (code 0x12)"
        );
        assert_eq!(
            StreamError::of(&err).and_then(StreamError::code),
            Some(0x12)
        );
        let err = StreamError::from_read(quinn::ReadError::Reset(VarInt::from_u32(
            codes::STREAM_CLOSED,
        )));
        assert_eq!(
            err.to_string(),
            "stream reset: the pairing ended (code 0x13)"
        );
    }

    #[test]
    fn a_stop_names_its_cause() {
        let err = StreamError::from_write(quinn::WriteError::Stopped(VarInt::from_u32(
            codes::STREAM_PEER_RESET,
        )));
        assert_eq!(err.kind(), std::io::ErrorKind::BrokenPipe);
        assert_eq!(
            err.to_string(),
            "stream stopped: the peer reset the stream (code 0x11)"
        );
        let err = StreamError::from_write(quinn::WriteError::Stopped(VarInt::from_u32(77)));
        assert_eq!(
            err.to_string(),
            "stream stopped: unknown error code (code 0x4d)"
        );
    }

    #[test]
    fn a_lost_connection_says_so() {
        let err = StreamError::from_read(quinn::ReadError::ConnectionLost(
            quinn::ConnectionError::TimedOut,
        ));
        assert_eq!(err.kind(), std::io::ErrorKind::NotConnected);
        assert!(
            err.to_string()
                .starts_with("connection to the relay lost: "),
            "{err}"
        );
        assert!(StreamError::of(&std::io::Error::other("x")).is_none());
    }

    #[test]
    fn refusals_name_the_code() {
        let err = ClientError::Refused {
            code: codes::REFUSED,
            message: "clientId 'A' is already connected".into(),
        };
        assert_eq!(
            err.to_string(),
            "the relay refused the connection: clientId 'A' is already connected \
             (connection refused, code 0x4)"
        );
    }
}
