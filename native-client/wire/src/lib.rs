//! The native protocol on the wire (PROTOCOL.md Part 2), shared by the relay's QUIC front end
//! and the native client.
//!
//! - One QUIC connection per client, ALPN [`ALPN`] (protocol and version).
//! - The client's first bidirectional stream is the control stream: length-prefixed postcard
//!   frames ([`frame`]), starting with [`ClientFrame::Hello`].
//! - Every P2P stream is a bidirectional QUIC stream of its own that starts with a
//!   [`StreamHeader`]; after it, bytes flow unframed end to end.
//! - Errors are QUIC application codes ([`codes`]) on connection close and stream reset.

pub mod codes;
pub mod frame;
pub mod header;
pub mod messages;

pub use frame::{FrameError, FrameReader, FrameWriter, DEFAULT_MAX_FRAME_BYTES, MAX_FRAME_BYTES};
pub use header::{HeaderError, StreamHeader};
pub use messages::{ClientFrame, ServerFrame, WireAnswer, WireReply};

/// ALPN of this protocol; the version is part of the name, so a client and a relay that
/// speak different versions fail the TLS handshake with "no application protocol" instead
/// of misreading each other.
pub const ALPN: &[u8] = b"p2p-relay/1";

/// The frame-level protocol version carried in `Hello` and `Welcome`.
pub const PROTOCOL_VERSION: u16 = 1;
