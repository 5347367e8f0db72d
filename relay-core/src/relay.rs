//! One relay node driven deterministically: its connections, its directory (or the seam
//! to a shared one), and the routing of messages between connections.
//!
//! This is the single-threaded driver of the rules in [`Connection`]: tests, benchmarks
//! and the property tests run it with a fake clock. The tokio runtime drives the same
//! connections concurrently, each under its own lock (see `relay-runtime`); both route
//! with the same rule: a message to a connection that is gone is answered with
//! [`PeerMsg::Gone`] on its behalf, so no question waits for an answer that cannot come.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tracing::debug;

use crate::addr::{Addr, NodeId};
use crate::auth::{check_claim, unix_seconds, AllowAll, Authenticator, Claims};
use crate::client_id::ClientId;
use crate::config::Config;
use crate::connection::Connection;
use crate::directory::{Answered, Claimed, LocalDirectory, Query};
use crate::error::{CloseReason, ConnectError};
use crate::event::{Command, ConnId, Outgoing, StreamId, Ticket};
use crate::link::{PeerMsg, Transmit};
use crate::transport::Transport;

/// The relay core of one node. See the crate docs for how it is driven.
pub struct Relay {
    node: NodeId,
    config: Arc<Config>,
    auth: Box<dyn Authenticator>,
    /// The in-memory directory, or None when the directory is shared and reached through
    /// [`Relay::poll_directory`] (a cluster, or the two-node tests).
    directory: Option<LocalDirectory>,
    conns: HashMap<ConnId, Connection>,
    /// Each connection's next deadline, so a timeout touches only connections that are due.
    timers: BTreeSet<(Instant, ConnId)>,
    timer_of: HashMap<ConnId, Instant>,
    events: VecDeque<Outgoing>,
    link: VecDeque<Transmit>,
    directory_ops: VecDeque<DirectoryOp>,
    next_conn: u64,
    /// Which wall-clock time an instant is, for tokens' expiry: (instant, time then). Until
    /// it is set, the first instant seen is taken as the Unix epoch.
    wall: Option<(Instant, SystemTime)>,
}

/// What a node with a shared directory asks of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirectoryOp {
    /// A connection's query; answer with [`Relay::handle_directory`].
    Query(ConnId, Query),
    /// `client` is no longer connected at `addr` (release it only while it names `addr`).
    Release(ClientId, Addr),
}

impl Relay {
    pub fn new(config: Config) -> Self {
        Self::with_authenticator(config, AllowAll)
    }

    pub fn with_authenticator(config: Config, auth: impl Authenticator) -> Self {
        Self::build(
            NodeId(0),
            config,
            Box::new(auth),
            Some(LocalDirectory::default()),
        )
    }

    /// A node of a deployment whose directory is shared: claims are made by the caller
    /// ([`Relay::check`], [`Relay::reserve`], [`Relay::admit`]) and queries are polled out.
    pub fn with_shared_directory(node: NodeId, config: Config) -> Self {
        Self::build(node, config, Box::new(AllowAll), None)
    }

    fn build(
        node: NodeId,
        config: Config,
        auth: Box<dyn Authenticator>,
        directory: Option<LocalDirectory>,
    ) -> Self {
        Self {
            node,
            config: Arc::new(config),
            auth,
            directory,
            conns: HashMap::new(),
            timers: BTreeSet::new(),
            timer_of: HashMap::new(),
            events: VecDeque::new(),
            link: VecDeque::new(),
            directory_ops: VecDeque::new(),
            next_conn: 0,
            wall: None,
        }
    }

    /// Says which wall-clock time `at` is, so that tokens expire on time. The core reads
    /// no clock itself.
    pub fn set_wall_clock(&mut self, at: Instant, time: SystemTime) {
        self.wall = Some((at, time));
    }

    /// Seconds since the Unix epoch at `now`.
    pub fn unix_time(&mut self, now: Instant) -> u64 {
        unix_seconds(self.wall_time(now))
    }

    /// The wall-clock time at `now`.
    fn wall_time(&mut self, now: Instant) -> SystemTime {
        let (at, time) = *self.wall.get_or_insert((now, UNIX_EPOCH));
        match now.checked_duration_since(at) {
            Some(later) => time + later,
            None => time.checked_sub(at - now).unwrap_or(UNIX_EPOCH),
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn node(&self) -> NodeId {
        self.node
    }

    // ----- inputs -------------------------------------------------------------------------

    /// Admits a connection that claims `client_id` (None when the transport carried none),
    /// with the in-memory directory.
    pub fn connect(
        &mut self,
        now: Instant,
        client_id: Option<&str>,
        credentials: Option<&[u8]>,
        transport: Transport,
    ) -> Result<ConnId, ConnectError> {
        let unix_time = self.unix_time(now);
        let (client, claims) = self.check(client_id, credentials, transport, unix_time)?;
        let addr = self.reserve();
        let directory = self
            .directory
            .as_mut()
            .expect("connect needs the in-memory directory; use admit with a shared one");
        let claimed = directory.claim(
            &client,
            addr,
            self.config.duplicate_policy,
            self.config.max_clients,
        )?;
        Ok(self.admit(now, addr, client, claims, transport, claimed))
    }

    /// The checks made before a claim: a well-formed id the authenticator accepts, and what
    /// it may do (`unix_time` is the wall-clock time, for tokens' expiry).
    pub fn check(
        &self,
        client_id: Option<&str>,
        credentials: Option<&[u8]>,
        transport: Transport,
        unix_time: u64,
    ) -> Result<(ClientId, Claims), ConnectError> {
        check_claim(
            self.auth.as_ref(),
            client_id,
            credentials,
            None,
            transport,
            unix_time,
        )
    }

    /// The address the next admitted connection will have, for its claim.
    pub fn reserve(&mut self) -> Addr {
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        Addr::new(self.node, conn)
    }

    /// Starts a connection whose claim on `client` the directory granted.
    pub fn admit(
        &mut self,
        now: Instant,
        addr: Addr,
        client: ClientId,
        claims: Claims,
        transport: Transport,
        claimed: Claimed,
    ) -> ConnId {
        if let Claimed::Replaced(old) = claimed {
            let reason = CloseReason::Replaced(client.clone());
            if old.node == self.node {
                self.close(now, old.conn, reason);
            } else {
                self.link.push_back(Transmit {
                    from: addr,
                    to: old,
                    msg: PeerMsg::Close { reason },
                });
            }
        }
        debug!(%client, %addr, "connected");
        let expiry = claims.deadline(now, self.wall_time(now));
        let conn = Connection::new(addr, client, transport, self.config.clone())
            .with_claims(claims)
            .with_expiry(expiry);
        self.conns.insert(addr.conn, conn);
        self.rearm(addr.conn);
        addr.conn
    }

    /// Forgets a connection and everything that referred to it. Calling it for a connection
    /// the core already forgot (e.g. one it replaced) does nothing.
    pub fn disconnect(&mut self, now: Instant, conn: ConnId) {
        self.remove(now, conn, None);
    }

    /// Handles one request from a connection.
    pub fn handle(&mut self, now: Instant, conn: ConnId, command: Command) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return debug!(?conn, "command from a forgotten connection ignored");
        };
        c.handle(now, command);
        self.pump(now, conn);
    }

    /// A front end could not hand `event` to `receiver` (its outgoing queue was full).
    pub fn report_undelivered(
        &mut self,
        now: Instant,
        receiver: ConnId,
        event: &str,
        ticket: Option<Ticket>,
        limit: usize,
    ) {
        let Some(c) = self.conns.get_mut(&receiver) else {
            return;
        };
        c.report_undelivered(event, ticket, limit);
        self.pump(now, receiver);
    }

    /// Answers every question whose time is up, and closes every connection whose token
    /// expired ([`CloseReason::TokenExpired`]: its client is told, its peer freed).
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(deadline, conn)) = self.timers.first() {
            if deadline > now {
                break;
            }
            self.timers.pop_first();
            self.timer_of.remove(&conn);
            if let Some(c) = self.conns.get_mut(&conn) {
                c.handle_timeout(now);
                if let Some(reason) = c.due_close(now) {
                    debug!(client = %c.client(), %reason, "closing");
                    self.close(now, conn, reason);
                    continue;
                }
            }
            self.pump(now, conn);
        }
    }

    /// A message from a connection on another node.
    pub fn handle_link(&mut self, now: Instant, transmit: Transmit) {
        self.route(now, transmit);
    }

    /// Another node is gone (its lease lapsed): everything involving its connections ends.
    /// Costs one pass over this node's connections; it happens once per node failure.
    pub fn handle_node_gone(&mut self, now: Instant, node: NodeId) {
        let affected: Vec<(ConnId, Vec<Addr>)> = self
            .conns
            .iter()
            .filter_map(|(id, c)| {
                let mut gone: Vec<Addr> = c
                    .peer()
                    .map(|(a, _)| a)
                    .into_iter()
                    .chain(c.involved())
                    .filter(|a| a.node == node)
                    .collect();
                gone.sort();
                gone.dedup();
                (!gone.is_empty()).then_some((*id, gone))
            })
            .collect();
        for (conn, gone) in affected {
            for from in gone {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.handle_peer(now, from, PeerMsg::Gone);
                }
            }
            self.pump(now, conn);
        }
    }

    /// A shared directory's answer to a connection's query.
    pub fn handle_directory(&mut self, now: Instant, conn: ConnId, answered: Answered) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.handle_directory(answered);
            self.pump(now, conn);
        }
    }

    // ----- outputs ------------------------------------------------------------------------

    /// The next event for some connection, in the order the core produced them.
    pub fn poll_event(&mut self) -> Option<Outgoing> {
        self.events.pop_front()
    }

    /// When [`Relay::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.first().map(|(deadline, _)| *deadline)
    }

    /// The next message for a connection on another node.
    pub fn poll_link(&mut self) -> Option<Transmit> {
        self.link.pop_front()
    }

    /// The next operation for a shared directory.
    pub fn poll_directory(&mut self) -> Option<DirectoryOp> {
        self.directory_ops.pop_front()
    }

    // ----- queries (the server-side API of the original plugin) ----------------------------

    /// Every connected clientId, sorted (in-memory directory only).
    pub fn client_ids(&self) -> Vec<ClientId> {
        self.directory
            .as_ref()
            .map(|d| d.list(None, None).ids)
            .unwrap_or_default()
    }

    pub fn conn_of(&self, client: &str) -> Option<ConnId> {
        let addr = self.directory.as_ref()?.lookup(client)?;
        (addr.node == self.node).then_some(addr.conn)
    }

    pub fn client_of(&self, conn: ConnId) -> Option<ClientId> {
        self.conns.get(&conn).map(|c| c.client().clone())
    }

    pub fn peer_of(&self, client: &str) -> Option<ClientId> {
        let conn = self.conn_of(client)?;
        self.conns.get(&conn)?.peer().map(|(_, id)| id.clone())
    }

    pub fn connection(&self, conn: ConnId) -> Option<&Connection> {
        self.conns.get(&conn)
    }

    /// The two ends of a held stream: (opener, acceptor). The opener's id is in the stream
    /// id's high bits, below its node's byte.
    pub fn stream_ends(&self, stream: StreamId) -> Option<(ConnId, ConnId)> {
        // Skip the opener's node byte (see `Connection::new_stream_id`).
        let opener = ConnId((stream.0 >> 24) & 0xFFFF_FFFF);
        let c = self.conns.get(&opener)?;
        c.streams().any(|(s, _)| s == stream).then_some(())?;
        let (peer, _) = c.peer()?;
        (peer.node == self.node).then_some((opener, peer.conn))
    }

    /// How many questions are waiting for a client's answer (for metrics and tests).
    pub fn pending_len(&self) -> usize {
        self.conns.values().map(|c| c.asked_len()).sum()
    }

    pub fn len(&self) -> usize {
        self.conns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// Checks the structural invariants, returning the first one broken. Used by tests; it
    /// walks everything, so keep it out of hot paths.
    pub fn check_invariants(&self) -> Result<(), String> {
        if let Some(directory) = &self.directory {
            for (client, addr) in directory.iter() {
                if addr.node != self.node {
                    continue;
                }
                match self.conns.get(&addr.conn) {
                    None => return Err(format!("directory names closed {addr} for {client}")),
                    Some(c) if c.client() != client => {
                        return Err(format!(
                            "directory maps {client} to {addr} of {}",
                            c.client()
                        ))
                    }
                    Some(_) => {}
                }
            }
        }
        for (id, c) in &self.conns {
            c.check_invariants()?;
            if let Some((peer, _)) = c.peer() {
                if peer.node == self.node {
                    match self.conns.get(&peer.conn).and_then(|p| p.peer()) {
                        Some((back, _)) if back == c.addr() => {}
                        _ => return Err(format!("pairing of {id:?} with {peer} is not symmetric")),
                    }
                    let theirs = &self.conns[&peer.conn];
                    for (stream, kind) in c.streams() {
                        if !theirs.streams().any(|(s, k)| s == stream && k == kind) {
                            return Err(format!("{stream:?} of {id:?} is not held by its peer"));
                        }
                    }
                }
            }
            for addr in c.involved() {
                if addr.node == self.node
                    && addr != c.addr()
                    && !self.conns.contains_key(&addr.conn)
                {
                    return Err(format!("{id:?} waits on closed {addr}"));
                }
            }
        }
        Ok(())
    }

    // ----- routing ------------------------------------------------------------------------

    fn close(&mut self, now: Instant, conn: ConnId, reason: CloseReason) {
        self.remove(now, conn, Some(reason));
    }

    fn remove(&mut self, now: Instant, conn: ConnId, reason: Option<CloseReason>) {
        let Some(mut c) = self.conns.remove(&conn) else {
            return;
        };
        if let Some(t) = self.timer_of.remove(&conn) {
            self.timers.remove(&(t, conn));
        }
        match reason {
            Some(reason) => c.close(reason),
            None => c.disconnect(),
        }
        while let Some(event) = c.poll_event() {
            self.events.push_back(Outgoing { conn, event });
        }
        match &mut self.directory {
            Some(directory) => directory.release(c.client(), c.addr()),
            None => self
                .directory_ops
                .push_back(DirectoryOp::Release(c.client().clone(), c.addr())),
        }
        while let Some(transmit) = c.poll_transmit() {
            self.route(now, transmit);
        }
    }

    /// Delivers a message to its connection here (or bounces it), or hands it to the node
    /// link, then lets the receiver's consequences run.
    fn route(&mut self, now: Instant, transmit: Transmit) {
        let Transmit { from, to, msg } = transmit;
        if to.node != self.node {
            return self.link.push_back(Transmit { from, to, msg });
        }
        // A newer connection on another node claimed this one's clientId: close it as a
        // local replace does, so the core forgets it. (Handing `Close` to the connection
        // alone left it in `conns`: still listed, and its client's commands still served.)
        if let PeerMsg::Close { reason } = &msg {
            if self.conns.contains_key(&to.conn) {
                return self.close(now, to.conn, reason.clone());
            }
        }
        match self.conns.get_mut(&to.conn) {
            Some(c) => {
                c.handle_peer(now, from, msg);
                self.pump(now, to.conn);
            }
            // Gone is never bounced: two vanished ends would answer each other forever.
            None if msg != PeerMsg::Gone => self.route(
                now,
                Transmit {
                    from: to,
                    to: from,
                    msg: PeerMsg::Gone,
                },
            ),
            None => {}
        }
    }

    /// Runs a connection's outputs (and what they cause elsewhere) to completion.
    fn pump(&mut self, now: Instant, conn: ConnId) {
        let mut work = VecDeque::from([conn]);
        while let Some(id) = work.pop_front() {
            while let Some(c) = self.conns.get_mut(&id) {
                let mut progress = false;
                while let Some(query) = c.poll_query() {
                    progress = true;
                    match &self.directory {
                        Some(directory) => c.handle_directory(directory.answer(&query)),
                        None => self.directory_ops.push_back(DirectoryOp::Query(id, query)),
                    }
                }
                while let Some(event) = c.poll_event() {
                    self.events.push_back(Outgoing { conn: id, event });
                }
                let mut transmits = Vec::new();
                while let Some(t) = c.poll_transmit() {
                    transmits.push(t);
                }
                for Transmit { from, to, msg } in transmits {
                    progress = true;
                    if to.node != self.node {
                        self.link.push_back(Transmit { from, to, msg });
                    } else if let Some(target) = self.conns.get_mut(&to.conn) {
                        target.handle_peer(now, from, msg);
                        if !work.contains(&to.conn) {
                            work.push_back(to.conn);
                        }
                    } else if msg != PeerMsg::Gone {
                        if let Some(c) = self.conns.get_mut(&id) {
                            c.handle_peer(now, to, PeerMsg::Gone);
                        }
                    }
                }
                if !progress {
                    break;
                }
            }
            self.rearm(id);
        }
    }

    fn rearm(&mut self, conn: ConnId) {
        let next = self.conns.get(&conn).and_then(|c| c.poll_timeout());
        let old = self.timer_of.get(&conn).copied();
        if old == next {
            return;
        }
        if let Some(old) = old {
            self.timers.remove(&(old, conn));
            self.timer_of.remove(&conn);
        }
        if let Some(next) = next {
            self.timers.insert((next, conn));
            self.timer_of.insert(conn, next);
        }
    }
}

#[cfg(test)]
mod tests;
