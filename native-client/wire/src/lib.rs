//! The native protocol on the wire (docs/PROTOCOL.md Part 2), shared by the relay's QUIC front end
//! and the native client.
//!
//! - One QUIC connection per client, ALPN [`ALPN`] (protocol and version).
//! - The client's first bidirectional stream is the control stream: length-prefixed postcard
//!   frames ([`frame`]), starting with [`ClientFrame::Hello`].
//! - Every P2P stream is a bidirectional QUIC stream of its own that starts with a
//!   [`StreamHeader`]; after it, bytes flow unframed end to end.
//! - Closes and stream resets carry QUIC application codes ([`CloseCode`], [`ResetCode`]);
//!   failed requests carry the relay core's `ErrorCode` numbers.

pub mod codes;
pub mod frame;
pub mod header;
pub mod list;
pub mod messages;

pub use codes::{CloseCode, ResetCode};
pub use frame::{
    frame_limit_for, FrameError, FrameReader, FrameWriter, DEFAULT_MAX_FRAME_BYTES,
    FRAME_OVERHEAD_BYTES, MAX_FRAME_BYTES,
};
pub use header::{HeaderError, StreamHeader};
pub use messages::{ClientFrame, ServerFrame, WireAnswer, WireLimits, WireReply};

/// ALPN of this protocol; the version is part of the name, so a client and a relay that
/// speak different versions fail the TLS handshake with "no application protocol" instead
/// of misreading each other.
pub const ALPN: &[u8] = b"p2p-relay/2";

/// The frame-level protocol version carried in `Hello` and `Welcome`.
///
/// 2: failures carry an error code (`WireReply::Failed`, `ServerFrame::ServerError`) and
/// the client list is paged (`ClientFrame::List`, `WireReply::Clients`).
pub const PROTOCOL_VERSION: u16 = 2;
