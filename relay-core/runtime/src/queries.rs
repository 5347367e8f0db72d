//! The server-side queries (those of the original Node plugin, and the control center's):
//! who is connected, paired with whom, doing what.

use std::sync::Arc;

use relay_core::{ClientId, ConnId, StreamId};

use crate::cell::Cell;
use crate::clients::{ClientInfo, ClientsPage, StreamInfo};
use crate::traffic::{Described, StreamEntry, StreamMeter, Traffic};
use crate::RelayHandle;

impl RelayHandle {
    /// Every connected clientId, sorted.
    pub fn client_ids(&self) -> Vec<ClientId> {
        self.node.directory().list(None, None).ids
    }

    /// The connection a client is on.
    pub fn conn_of(&self, client: &str) -> Option<ConnId> {
        self.node.directory().lookup(client).map(|a| a.conn)
    }

    /// The client a connection belongs to.
    pub fn client_of(&self, conn: ConnId) -> Option<ClientId> {
        Some(self.node.cell(conn)?.lock().client().clone())
    }

    /// The connection a connection is paired with, when both are on this node.
    pub fn peer_conn(&self, conn: ConnId) -> Option<ConnId> {
        let cell = self.node.cell(conn)?;
        let state = cell.lock();
        state
            .peer()
            .map(|(addr, _)| addr)
            .filter(|addr| addr.node == self.node.id())
            .map(|addr| addr.conn)
    }

    /// The client a client is paired with.
    pub fn peer_of(&self, client: &str) -> Option<ClientId> {
        let cell = self.node.cell(self.conn_of(client)?)?;
        let state = cell.lock();
        state.peer().map(|(_, id)| id.clone())
    }

    /// One page of connected clients, sorted by id: at most `limit` after `after`.
    pub fn clients(&self, after: Option<&str>, limit: usize) -> ClientsPage {
        // The directory first, then each listed connection's lock: never both at once
        // (a connection answers its directory queries under its own lock).
        let (page, addrs, total) = {
            let directory = self.node.directory();
            let page = directory.list(after, Some(limit));
            let addrs: Vec<_> = page
                .ids
                .iter()
                .map(|id| directory.lookup(id.as_str()))
                .collect();
            (page, addrs, directory.len())
        };
        let clients = addrs
            .into_iter()
            .flatten()
            .filter_map(|addr| self.client_info(addr.conn))
            .collect();
        ClientsPage {
            clients,
            next: page.next,
            total,
        }
    }

    /// What one connection is doing, while it is connected.
    pub fn client_info(&self, conn: ConnId) -> Option<ClientInfo> {
        let cell = self.node.cell(conn)?;
        let described = cell.described.get();
        let state = cell.lock();
        Some(ClientInfo {
            id: state.client().clone(),
            conn,
            transport: state.transport(),
            since: cell.since,
            peer: state.peer().map(|(_, id)| id.clone()),
            streams: state.streams_len(),
            pending: state.requests_len(),
            remote: described.and_then(|d| d.remote),
            generation: described.map(|d| d.generation),
            traffic: cell.traffic.read(),
            since_last_chunk: cell.traffic.since_last_chunk(),
        })
    }

    /// Records what the front end knows of a connection (its address, its protocol
    /// generation), once; later calls change nothing.
    pub fn describe(&self, conn: ConnId, described: Described) {
        if let Some(cell) = self.node.cell(conn) {
            let _ = cell.described.set(described);
        }
    }

    /// Starts counting a stream between `a` and `b` whose bytes a front end relays (`a`:
    /// the end whose data stream the front end serves, None when it is on another node);
    /// it is listed by [`RelayHandle::streams`] until the meter drops.
    pub fn meter_stream(&self, id: StreamId, a: Option<ConnId>, b: ConnId) -> StreamMeter {
        let entry = StreamEntry {
            id,
            a,
            b,
            since: std::time::SystemTime::now(),
            traffic: Traffic::default(),
        };
        StreamMeter::new(entry, self.node.streams.clone(), self.node.metrics.clone())
    }

    /// The streams being relayed, oldest first, at most `limit`.
    pub fn streams(&self, limit: usize) -> Vec<StreamInfo> {
        let mut entries: Vec<Arc<StreamEntry>> = self
            .node
            .streams
            .iter()
            .map(|e| e.value().clone())
            .collect();
        entries.sort_by_key(|e| (e.since, e.id.0));
        entries.truncate(limit);
        entries
            .into_iter()
            .map(|e| StreamInfo {
                id: e.id,
                a: e.a.and_then(|a| self.client_of(a)),
                b: self.client_of(e.b),
                since: e.since,
                traffic: e.traffic.read(),
            })
            .collect()
    }

    /// Connected clients.
    pub fn len(&self) -> usize {
        self.node.cells.len()
    }

    pub fn is_empty(&self) -> bool {
        self.node.cells.is_empty()
    }

    /// What the core holds right now, for operators (the binary prints it on SIGUSR1) and
    /// for tests that check that nothing outlives its clients. Walks every connection, so
    /// it costs in proportion to the relay's size: not for a hot path.
    pub fn state(&self) -> CoreState {
        let mut state = CoreState {
            connections: self.node.cells.len(),
            directory: self.node.directory().len(),
            addresses: self.node.ips().addresses(),
            timers: self.node.tasks.len(),
            ..CoreState::default()
        };
        let cells: Vec<Arc<Cell>> = self.node.cells.iter().map(|e| e.value().clone()).collect();
        for cell in cells {
            let conn = cell.lock();
            state.requests += conn.requests_len();
            state.questions += conn.asked_len();
            state.streams += conn.streams().count();
        }
        state
    }
}

/// Counts of what the relay core holds (see [`RelayHandle::state`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CoreState {
    /// Connected clients.
    pub connections: usize,
    /// Entries of the directory (clientId -> connection).
    pub directory: usize,
    /// IP addresses holding connections (the per-address limit's table).
    pub addresses: usize,
    /// Timer tasks of connections still running.
    pub timers: usize,
    /// Requests waiting for another connection's answer (the asker's tickets).
    pub requests: usize,
    /// Questions put to clients and not answered yet (the asked side's tickets).
    pub questions: usize,
    /// Streams held, counted at each end.
    pub streams: usize,
}

impl CoreState {
    /// Nothing at all: no connection, no ticket, no stream, no timer.
    pub fn is_empty(&self) -> bool {
        *self == CoreState::default()
    }
}

impl std::fmt::Display for CoreState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "connections={} directory={} addresses={} timers={} requests={} questions={} \
             streams={}",
            self.connections,
            self.directory,
            self.addresses,
            self.timers,
            self.requests,
            self.questions,
            self.streams
        )
    }
}
