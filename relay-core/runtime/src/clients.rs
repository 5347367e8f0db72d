//! Who is connected, as the control center shows it: one page of clients with what each
//! one is doing. A page costs its size (the directory is sorted, and only the listed
//! connections are looked at, each under its own lock for a moment).

use std::time::SystemTime;

use std::net::SocketAddr;

use relay_core::{ClientId, ConnId, StreamId, Transport};

use crate::traffic::TrafficReading;

/// One connected client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientInfo {
    pub id: ClientId,
    /// Its connection, for [`RelayHandle::close`](crate::RelayHandle::close).
    pub conn: ConnId,
    pub transport: Transport,
    /// When it was admitted.
    pub since: SystemTime,
    /// The client it is paired with.
    pub peer: Option<ClientId>,
    /// Streams it holds.
    pub streams: usize,
    /// Its requests waiting for an answer.
    pub pending: usize,
    /// Where it connects from, as its front end saw it.
    pub remote: Option<SocketAddr>,
    /// Its protocol generation, e.g. `socket.io v2 (EIO3)`.
    pub generation: Option<&'static str>,
    /// What it sent and received so far (events; stream bytes are the streams').
    pub traffic: TrafficReading,
    /// How long ago it sent its last legacy stream chunk (`P2P_EMIT_STREAM`), if ever: a
    /// stream between two Socket.IO clients has no other trace in the relay.
    pub since_last_chunk: Option<std::time::Duration>,
}

/// A stream relayed through this node's front ends, while it is open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamInfo {
    pub id: StreamId,
    /// Its two ends' clients (None once that one is gone): `a` is the native client whose
    /// data stream the relay serves (the opener of a spliced stream).
    pub a: Option<ClientId>,
    pub b: Option<ClientId>,
    pub since: SystemTime,
    /// `bytes_in`: from `a` toward `b`; `bytes_out`: from `b` toward `a`.
    pub traffic: TrafficReading,
}

/// One page of clients, sorted by id.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientsPage {
    pub clients: Vec<ClientInfo>,
    /// Where the next page starts (`after` for the next call); None on the last page.
    pub next: Option<ClientId>,
    /// Clients connected in all.
    pub total: usize,
}
