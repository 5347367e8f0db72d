//! The relay's rules, with no I/O: a sans-IO state machine in the manner of quinn-proto.
//!
//! A front end feeds it calls (`connect`, `handle`, `disconnect`, `handle_timeout(now)`)
//! and polls out [`Outgoing`] events addressed to connections; time is always passed in, so
//! every rule can be tested deterministically and without sockets. Wire formats stay in the
//! front ends; stream bytes never pass through here (the core only grants and ends streams).

mod auth;
mod client_id;
mod config;
mod error;
mod event;
mod hub;
pub mod payload;
mod registry;
mod relay;
mod reserved;

pub use auth::{AllowAll, Authenticator};
pub use client_id::{ClientId, InvalidClientId, MAX_CLIENT_ID_BYTES};
pub use config::{Config, DuplicatePolicy};
pub use error::{ConnectError, RequestError};
pub use event::{
    Answer, Command, ConnId, Event, Outgoing, Reply, ReqId, StreamEnd, StreamId, Ticket,
};
pub use hub::{Hub, Refused, Sink};
pub use payload::{Payload, PayloadError};
pub use registry::Registry;
pub use relay::Relay;
pub use reserved::is_reserved_event;
pub use rmpv;
