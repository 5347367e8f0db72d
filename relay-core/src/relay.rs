//! One relay node driven deterministically: its connections, its directory (or the seam
//! to a shared one), and the routing of messages between connections.
//!
//! This is the single-threaded driver of the rules in [`Connection`]: tests, benchmarks
//! and the property tests run it with a fake clock. The tokio runtime drives the same
//! connections concurrently, each under its own lock (see `relay-runtime`). Both carry
//! messages with the rules of [`crate::switchboard`] (an inbox per connection, routing,
//! bounces, replacement, a node's loss); what is left here is only how this driver holds
//! its connections: in maps, run one after the other, with timers in a sorted set.

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
use crate::event::{Command, ConnId, Event, Outgoing, StreamId, Ticket};
use crate::link::{PeerMsg, Transmit};
use crate::switchboard::{self, Host, Switchboard, Undelivered, Unlinked};
use crate::transport::Transport;

/// The relay core of one node. See the crate docs for how it is driven.
pub struct Relay {
    config: Arc<Config>,
    auth: Box<dyn Authenticator>,
    conns: HashMap<ConnId, Connection>,
    /// Everything but the connections, so that a connection and the rest can be borrowed
    /// at once while its outputs are carried.
    board: Board,
    /// Each connection's next deadline, so a timeout touches only connections that are due.
    timers: BTreeSet<(Instant, ConnId)>,
    timer_of: HashMap<ConnId, Instant>,
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
            config: Arc::new(config),
            auth,
            conns: HashMap::new(),
            board: Board {
                node,
                directory,
                inboxes: HashMap::new(),
                work: VecDeque::new(),
                events: VecDeque::new(),
                link: VecDeque::new(),
                directory_ops: VecDeque::new(),
            },
            timers: BTreeSet::new(),
            timer_of: HashMap::new(),
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
        self.board.node
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
            .board
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
        Addr::new(self.board.node, conn)
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
        if let Some((old, reason)) = switchboard::displace(&mut self.board, &claimed, addr, &client)
        {
            self.close(now, old, reason);
        }
        debug!(%client, %addr, "connected");
        let expiry = claims.deadline(now, self.wall_time(now));
        let conn = Connection::new(addr, client, transport, self.config.clone())
            .with_claims(claims)
            .with_expiry(expiry);
        self.conns.insert(addr.conn, conn);
        self.board.inboxes.insert(addr.conn, VecDeque::new());
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
        if let Some((conn, reason)) = switchboard::from_link(&mut self.board, transmit) {
            self.close(now, conn, reason);
        }
        self.run_work(now);
    }

    /// Another node is gone (its lease lapsed): everything involving its connections ends.
    /// Costs one pass over this node's connections; it happens once per node failure.
    pub fn handle_node_gone(&mut self, now: Instant, node: NodeId) {
        let affected: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| switchboard::involves(c, node))
            .map(|(id, _)| *id)
            .collect();
        for conn in affected {
            if let Some(c) = self.conns.get_mut(&conn) {
                switchboard::node_gone(now, c, node);
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
        self.board.events.pop_front()
    }

    /// When [`Relay::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.first().map(|(deadline, _)| *deadline)
    }

    /// The next message for a connection on another node.
    pub fn poll_link(&mut self) -> Option<Transmit> {
        self.board.link.pop_front()
    }

    /// The next operation for a shared directory.
    pub fn poll_directory(&mut self) -> Option<DirectoryOp> {
        self.board.directory_ops.pop_front()
    }

    // ----- queries (the server-side API of the original plugin) ----------------------------

    /// Every connected clientId, sorted (in-memory directory only).
    pub fn client_ids(&self) -> Vec<ClientId> {
        self.board
            .directory
            .as_ref()
            .map(|d| d.list(None, None).ids)
            .unwrap_or_default()
    }

    pub fn conn_of(&self, client: &str) -> Option<ConnId> {
        let addr = self.board.directory.as_ref()?.lookup(client)?;
        (addr.node == self.board.node).then_some(addr.conn)
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
        (peer.node == self.board.node).then_some((opener, peer.conn))
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
        if let Some(directory) = &self.board.directory {
            for (client, addr) in directory.iter() {
                if addr.node != self.board.node {
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
                if peer.node == self.board.node {
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
                if addr.node == self.board.node
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
        let undelivered = self.board.inboxes.remove(&conn).unwrap_or_default();
        let mut host = At {
            board: &mut self.board,
            conn,
        };
        switchboard::retire(&mut host, now, &mut c, undelivered, reason);
        self.run_work(now);
    }

    /// Runs a connection's outputs, and then every inbox they (and what they caused)
    /// reached, to completion.
    fn pump(&mut self, now: Instant, conn: ConnId) {
        self.board.work.push_back(conn);
        self.run_work(now);
    }

    /// Runs each connection due to run: its outputs, then its inbox, one message at a
    /// time, in the order they were posted.
    fn run_work(&mut self, now: Instant) {
        while let Some(id) = self.board.work.pop_front() {
            let Some(c) = self.conns.get_mut(&id) else {
                continue;
            };
            let mut host = At {
                board: &mut self.board,
                conn: id,
            };
            switchboard::flush(&mut host, now, c);
            while let Some((from, msg)) = host.board.next_message(id) {
                c.handle_peer(now, from, msg);
                switchboard::flush(&mut host, now, c);
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

/// What this driver holds besides its connections: their inboxes, the connections due to
/// run, and what it hands out (events, the node link, the shared directory's work).
struct Board {
    node: NodeId,
    /// The in-memory directory, or None when the directory is shared and reached through
    /// [`Relay::poll_directory`] (a cluster, or the two-node tests).
    directory: Option<LocalDirectory>,
    /// One per connection, from admission to removal: a missing inbox is a connection gone.
    inboxes: HashMap<ConnId, VecDeque<(Addr, PeerMsg)>>,
    /// Connections that must run (their outputs, then their inbox), in order.
    work: VecDeque<ConnId>,
    events: VecDeque<Outgoing>,
    link: VecDeque<Transmit>,
    directory_ops: VecDeque<DirectoryOp>,
}

impl Board {
    fn next_message(&mut self, conn: ConnId) -> Option<(Addr, PeerMsg)> {
        self.inboxes.get_mut(&conn)?.pop_front()
    }
}

impl Switchboard for Board {
    fn node(&self) -> NodeId {
        self.node
    }

    fn post(&mut self, from: Addr, to: ConnId, msg: PeerMsg) -> Result<(), PeerMsg> {
        match self.inboxes.get_mut(&to) {
            Some(inbox) => {
                // A connection with messages waiting is already due to run (it runs its
                // inbox to the end): named in `work` once, not once per message.
                if inbox.is_empty() {
                    self.work.push_back(to);
                }
                inbox.push_back((from, msg));
                Ok(())
            }
            None => Err(msg),
        }
    }

    /// The link queues everything; [`Relay::poll_link`] hands it out.
    fn send_link(&mut self, transmit: Transmit) -> Result<(), Unlinked> {
        self.link.push_back(transmit);
        Ok(())
    }
}

/// The board as one connection's host while its outputs are carried.
struct At<'a> {
    board: &'a mut Board,
    conn: ConnId,
}

impl Switchboard for At<'_> {
    fn node(&self) -> NodeId {
        self.board.node
    }

    fn post(&mut self, from: Addr, to: ConnId, msg: PeerMsg) -> Result<(), PeerMsg> {
        self.board.post(from, to, msg)
    }

    fn send_link(&mut self, transmit: Transmit) -> Result<(), Unlinked> {
        self.board.send_link(transmit)
    }
}

impl Host for At<'_> {
    fn query(&mut self, query: Query) -> Option<Answered> {
        match &self.board.directory {
            Some(directory) => Some(directory.answer(&query)),
            None => {
                self.board
                    .directory_ops
                    .push_back(DirectoryOp::Query(self.conn, query));
                None
            }
        }
    }

    /// Never refused here: a front end that cannot queue an event reports it later
    /// ([`Relay::report_undelivered`]).
    fn deliver(&mut self, event: Event) -> Result<(), Undelivered> {
        self.board.events.push_back(Outgoing {
            conn: self.conn,
            event,
        });
        Ok(())
    }

    fn release(&mut self, client: &ClientId, addr: Addr) {
        match &mut self.board.directory {
            Some(directory) => directory.release(client, addr),
            None => self
                .board
                .directory_ops
                .push_back(DirectoryOp::Release(client.clone(), addr)),
        }
    }
}

#[cfg(test)]
mod tests;
