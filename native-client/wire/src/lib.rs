//! The native protocol on the wire (docs/PROTOCOL.md Part 2), shared by the relay's QUIC front end
//! and the native client.
//!
//! - One QUIC connection per client, ALPN [`ALPN`] (protocol and version).
//! - The client's first bidirectional stream is the control stream: length-prefixed postcard
//!   frames ([`frame`]), starting with [`ClientFrame::Hello`].
//! - Every P2P stream is a bidirectional QUIC stream of its own that starts with a
//!   [`StreamHeader`]; after it, bytes flow unframed end to end.
//! - Closes and stream resets carry QUIC application codes ([`CloseCode`], [`ResetCode`]);
//!   failed requests carry an [`ErrorCode`] number.
//!
//! Everything the protocol defines is declared here, once: the relay's rules
//! (`relay-core`) depend on this crate and re-export what they share with it (the failure
//! kinds, the id and page bounds, the arguments' encoding), and the native client depends
//! on this crate alone, without the relay's authentication and rate-limit dependencies.

pub mod args;
pub mod codes;
mod error_code;
pub mod frame;
pub mod header;
pub mod list;
pub mod messages;

pub use codes::{CloseCode, ResetCode};
pub use error_code::ErrorCode;
pub use frame::{
    frame_limit_for, FrameError, DEFAULT_MAX_FRAME_BYTES, FRAME_OVERHEAD_BYTES, MAX_FRAME_BYTES,
};
#[cfg(feature = "io")]
pub use frame::{FrameReader, FrameWriter};
pub use header::{HeaderError, StreamHeader};
pub use list::MAX_LIST_PAGE;
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

/// Longest clientId, in bytes, in a `Hello` and as a target. Ids travel in every routed
/// message and in client lists, so they are kept short enough to never dominate a frame
/// (a list page's size follows from it: [`list::page_limit`]).
pub const MAX_CLIENT_ID_BYTES: usize = 128;
