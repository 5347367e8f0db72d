//! The relay's rules, with no I/O: sans-IO state machines in the manner of quinn-proto.
//!
//! Each client's [`Connection`] holds every rule that concerns it and talks to other
//! connections only by messages ([`Transmit`]) addressed to an [`Addr`], so the other end
//! of a pair may be on this node or on another one. The [`directory`] (which client is
//! where) is the only shared state, reached through queries and answers. [`Relay`] drives
//! one node's connections deterministically: a front end (or a test) feeds it calls
//! (`connect`, `handle`, `disconnect`, `handle_timeout(now)`) and polls out [`Outgoing`]
//! events addressed to connections; time is always passed in. Wire formats stay in the
//! front ends; stream bytes never pass through here, except a bridged stream's chunks,
//! which the legacy protocol carries as events.

mod addr;
pub mod auth;
mod client_id;
mod config;
mod connection;
pub mod directory;
mod error;
mod event;
pub mod limits;
mod link;
pub mod payload;
mod relay;
mod reserved;
pub mod switchboard;
mod transport;

pub use addr::{Addr, NodeId};
pub use auth::{
    check_claim, check_client_id, AllowAll, AuthError, Authenticator, Claims, PeerPattern, Peers,
    Presented, TokenAuthenticator,
};
pub use client_id::{ClientId, InvalidClientId, MAX_CLIENT_ID_BYTES};
pub use config::{Config, DuplicatePolicy};
pub use connection::{Connection, MAX_INBOUND_CHUNKS};
pub use directory::{Answered, Claimed, ClientPage, LocalDirectory, Query};
pub use error::{CloseReason, ConnectError, ErrorCode, RequestError};
pub use event::{
    Answer, Command, ConnId, Event, Outgoing, Reply, ReqId, StreamEnd, StreamId, Ticket,
};
pub use limits::{ClientLimits, IpGate, IpLimits, RateLimit, RateLimits};
pub use link::{PeerMsg, QuestionId, Transmit};
pub use payload::{JsonArgs, NotJson, NotJsonArgs, Payload, PayloadError};
pub use relay::{DirectoryOp, Relay};
pub use reserved::is_reserved_event;
pub use rmpv;
pub use transport::{StreamKind, Transport};

/// Legacy event names the rules themselves need (the rest live in the Socket.IO gateway).
pub const P2P_REGISTER: &str = "P2P_REGISTER";
pub const P2P_REGISTER_STREAM: &str = "P2P_REGISTER_STREAM";
/// A legacy stream chunk travels as an acknowledged emit of this event.
pub const P2P_EMIT_STREAM: &str = "P2P_EMIT_STREAM";
