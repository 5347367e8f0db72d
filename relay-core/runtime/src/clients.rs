//! Who is connected, as the control center shows it: one page of clients with what each
//! one is doing. A page costs its size (the directory is sorted, and only the listed
//! connections are looked at, each under its own lock for a moment).

use std::time::SystemTime;

use relay_core::{ClientId, ConnId, Transport};

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
