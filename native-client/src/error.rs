//! What can go wrong, worded for the person who has to fix it.

use std::net::SocketAddr;
use std::time::Duration;

use crate::args::ArgsError;
use crate::wire::{CloseCode, ErrorCode, FrameError, ResetCode};

/// Errors of [`crate::Client`] and its verbs. Branch on [`ClientError::kind`] rather than
/// on the variants or the text.
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

    /// The relay answered the hello with a refusal (`code` says the kind: refused,
    /// version mismatch, protocol violation).
    #[error("the relay refused the connection: {message} ({code}, code {:#x})", .code.code())]
    Refused { code: CloseCode, message: String },

    /// The relay sent something this client cannot make sense of.
    #[error("the relay broke the protocol: {0}")]
    Protocol(String),

    /// The connection is gone; the reason says why.
    #[error("the connection to the relay is closed: {0}")]
    Closed(crate::CloseReason),

    /// The relay answered the request with a failure: `code` is its kind, `message` the
    /// relay's words (the same Socket.IO clients get).
    #[error("request failed: {message}")]
    Request { code: ErrorCode, message: String },

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

    /// [`crate::Client::list_clients`] fetched its most pages and the list went on.
    #[error(
        "the client list did not end within {pages} pages; walk longer lists with \
         Client::list_page (or raise ConnectOptions::max_frame_bytes for larger pages)"
    )]
    ListTooLong { pages: usize },

    /// A granted P2P stream could not be opened or started.
    #[error("cannot open the data stream for P2P stream {stream}: {reason}")]
    OpenStream { stream: u64, reason: String },
}

/// Declares [`ErrorKind`] from the wire's table of failure kinds
/// ([`p2p_relay_wire::with_error_codes`]): one kind per [`ErrorCode`], same name, same
/// meaning, then this client's own kinds, and the conversion from a code.
macro_rules! declare_error_kind {
    ( $( $(#[$doc:meta])* $variant:ident = $value:literal, )* ) => {
        /// What kind of failure a [`ClientError`] is, to branch on without reading its text.
        ///
        /// A failed request has the kind of the relay's [`ErrorCode`]: the kinds before
        /// `Refused` are the protocol's codes, declared from the same table, so they cannot
        /// drift from what a relay sends. A rule the relay applies and the same rule
        /// checked by this client before sending are the same kind:
        /// [`ClientError::NotPaired`] and a relay's "not paired with 'B'" are both
        /// [`ErrorKind::NotPaired`]. Likewise a frame over this client's limit
        /// (`ConnectOptions::max_frame_bytes`) is [`ErrorKind::TooLarge`], a relay that does
        /// not answer a request in time is [`ErrorKind::Timeout`], and a listing over
        /// [`crate::MAX_LIST_PAGES`] is [`ErrorKind::LimitReached`]. The kinds after those
        /// are failures of the connection, which have no code.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum ErrorKind {
            $( $(#[$doc])* $variant, )*
            /// The relay refused the connection: see [`ClientError::Refused`]'s code.
            Refused,
            /// The connection is closed (or went away while a stream was being opened).
            Closed,
            /// No connection could be set up: trust, TLS, ALPN, an address that does not
            /// answer.
            Connect,
            /// The relay broke the protocol, or the control stream failed.
            Protocol,
        }

        impl From<ErrorCode> for ErrorKind {
            fn from(code: ErrorCode) -> Self {
                match code {
                    $( ErrorCode::$variant => ErrorKind::$variant, )*
                }
            }
        }
    };
}

p2p_relay_wire::with_error_codes!(declare_error_kind);

impl ClientError {
    /// The kind of this failure, wherever it was found (the relay or this client).
    pub fn kind(&self) -> ErrorKind {
        use ClientError::*;
        match self {
            Trust(_)
            | Endpoint(_)
            | Tls { .. }
            | AlpnMismatch { .. }
            | ConnectTimeout { .. }
            | Connect { .. } => ErrorKind::Connect,
            Refused { .. } => ErrorKind::Refused,
            Protocol(_) => ErrorKind::Protocol,
            Closed(_) | OpenStream { .. } => ErrorKind::Closed,
            Request { code, .. } => ErrorKind::from(*code),
            RequestTimeout { .. } => ErrorKind::Timeout,
            ListTooLong { .. } => ErrorKind::LimitReached,
            NotPaired => ErrorKind::NotPaired,
            AlreadyPaired(_) | RegisterSelf => ErrorKind::PairingConflict,
            EmptyEvent | Args(_) => ErrorKind::Invalid,
            TooLarge { .. } | Frame(FrameError::TooLarge { .. }) => ErrorKind::TooLarge,
            Frame(_) => ErrorKind::Protocol,
        }
    }

    /// The relay's code, when the relay failed the request.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Request { code, .. } => Some(*code),
            _ => None,
        }
    }
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
/// Get it back with [`StreamError::of`] to branch on [`StreamError::reason`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// The read side was reset: by the peer (through the relay) or by the relay itself.
    #[error("stream reset: {} (code {code:#x})", reset_text(*.code))]
    Reset { code: u64 },
    /// The other end no longer reads what this side writes.
    #[error("stream stopped: {} (code {code:#x})", reset_text(*.code))]
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

    /// The application code of a reset or stop, as it came.
    pub fn code(&self) -> Option<u64> {
        match self {
            StreamError::Reset { code } | StreamError::Stopped { code } => Some(*code),
            _ => None,
        }
    }

    /// Why the relay reset or stopped the stream, e.g. [`ResetCode::PeerGone`]; None for
    /// other failures and for codes this protocol version does not define.
    pub fn reason(&self) -> Option<ResetCode> {
        self.code().and_then(ResetCode::from_code)
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

fn reset_text(code: u64) -> &'static str {
    ResetCode::from_code(code).map_or("unknown error code", ResetCode::text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use quinn::VarInt;

    #[test]
    fn a_reset_names_its_cause() {
        let err = StreamError::from_read(quinn::ReadError::Reset(VarInt::from_u32(
            ResetCode::PeerGone.code(),
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
        assert_eq!(
            StreamError::of(&err).and_then(StreamError::reason),
            Some(ResetCode::PeerGone)
        );
        let err = StreamError::from_read(quinn::ReadError::Reset(VarInt::from_u32(
            ResetCode::Closed.code(),
        )));
        assert_eq!(
            err.to_string(),
            "stream reset: the pairing ended (code 0x13)"
        );
    }

    #[test]
    fn a_stop_names_its_cause() {
        let err = StreamError::from_write(quinn::WriteError::Stopped(VarInt::from_u32(
            ResetCode::PeerReset.code(),
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
            code: CloseCode::Refused,
            message: "clientId 'A' is already connected".into(),
        };
        assert_eq!(
            err.to_string(),
            "the relay refused the connection: clientId 'A' is already connected \
             (connection refused, code 0x4)"
        );
        assert_eq!(err.kind(), ErrorKind::Refused);
    }

    #[test]
    fn every_relay_code_is_the_kind_of_its_name() {
        for code in ErrorCode::ALL {
            let kind = ClientError::Request {
                code,
                message: String::new(),
            }
            .kind();
            assert_eq!(format!("{kind:?}"), format!("{code:?}"));
        }
    }

    #[test]
    fn local_checks_and_relay_failures_of_one_rule_are_one_kind() {
        let relay = ClientError::Request {
            code: ErrorCode::NotPaired,
            message: "not paired with 'B'".into(),
        };
        assert_eq!(relay.to_string(), "request failed: not paired with 'B'");
        assert_eq!(relay.kind(), ErrorKind::NotPaired);
        assert_eq!(relay.code(), Some(ErrorCode::NotPaired));
        assert_eq!(ClientError::NotPaired.kind(), ErrorKind::NotPaired);
        assert_eq!(ClientError::NotPaired.code(), None);
        assert_eq!(ClientError::RegisterSelf.kind(), ErrorKind::PairingConflict);
        let too_large = ClientError::TooLarge {
            what: "event arguments",
            len: 2,
            max: 1,
        };
        assert_eq!(too_large.kind(), ErrorKind::TooLarge);
        let timeout = ClientError::Request {
            code: ErrorCode::Timeout,
            message: "no ack".into(),
        };
        assert_eq!(timeout.kind(), ErrorKind::Timeout);
    }
}
