//! Which client is connected where.
//!
//! This is the one seam to widen for a cluster: today a map in this process; later the same
//! four operations can be backed by a shared engine (as socket.io's Redis adapter does)
//! without touching the pairing and routing rules that use them.

use std::collections::HashMap;

use crate::client_id::ClientId;
use crate::event::ConnId;

#[derive(Debug, Default)]
pub struct Registry {
    by_client: HashMap<ClientId, ConnId>,
}

impl Registry {
    pub fn lookup(&self, client: &str) -> Option<ConnId> {
        self.by_client.get(client).copied()
    }

    /// Names `conn` as the connection of `client`, returning the connection it replaces.
    pub fn insert(&mut self, client: ClientId, conn: ConnId) -> Option<ConnId> {
        self.by_client.insert(client, conn)
    }

    /// Forgets `client` only while it still names `conn`: a connection that was replaced
    /// must not take its successor's entry with it when it closes.
    pub fn remove_if(&mut self, client: &ClientId, conn: ConnId) {
        if self.by_client.get(client) == Some(&conn) {
            self.by_client.remove(client);
        }
    }

    pub fn len(&self) -> usize {
        self.by_client.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_client.is_empty()
    }

    /// Every connected clientId, sorted so listings are stable.
    pub fn client_ids(&self) -> Vec<ClientId> {
        let mut ids: Vec<ClientId> = self.by_client.keys().cloned().collect();
        ids.sort();
        ids
    }

    pub fn iter(&self) -> impl Iterator<Item = (&ClientId, &ConnId)> {
        self.by_client.iter()
    }
}
