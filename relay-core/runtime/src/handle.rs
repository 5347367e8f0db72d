//! The handle every front end and embedding application holds.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Instant, SystemTime};

use dashmap::DashMap;
use relay_core::auth::unix_seconds;
use relay_core::{
    check_client_id, Addr, AllowAll, Answered, Authenticator, Claimed, ClientId, ClientLimits,
    CloseReason, Command, Config, ConnId, ConnectError, Connection, DuplicatePolicy, Event, IpGate,
    LocalDirectory, NodeId, PeerMsg, Presented, RequestError, StreamId, Transmit, Transport,
};
use tokio_util::task::TaskTracker;
use tracing::debug;

use crate::admission::{Admitted, AsyncAuthenticator, ClusterClaim, Gate};
use crate::cell::Cell;
use crate::clients::StreamInfo;
use crate::clients::{ClientInfo, ClientsPage};
use crate::cluster::ClusterLink;
use crate::metrics::{Direction, Metrics, Shape, Undelivered};
use crate::traffic::{Described, StreamEntry, StreamMeter, Streams, Traffic};

/// Connections that were sent a message and must handle their inbox. Usually one (the
/// peer), so it lives inline.
type Work = smallvec::SmallVec<[Arc<Cell>; 4]>;
use crate::sink::{Refused, Sink};

/// A cheap-to-clone handle on the relay core. Must be created inside a tokio runtime
/// (every connection's timer is a task of it).
#[derive(Clone)]
pub struct RelayHandle {
    node: Arc<Node>,
}

/// A handle that does not keep the relay alive: what a cluster's tasks hold, so that the
/// relay and its cluster link do not keep each other alive.
#[derive(Clone)]
pub struct WeakRelayHandle {
    node: Weak<Node>,
}

impl WeakRelayHandle {
    pub fn upgrade(&self) -> Option<RelayHandle> {
        self.node.upgrade().map(|node| RelayHandle { node })
    }
}

struct Node {
    config: Arc<Config>,
    auth: Gate,
    /// Who is connected where, on this node. In cluster mode it mirrors this node's
    /// entries of the shared directory (which the cluster link keeps), for the
    /// server-side API; claims, lookups and lists then go to the cluster.
    directory: Mutex<LocalDirectory>,
    /// Set once, before any connection, when this node is part of a cluster.
    cluster: OnceLock<Arc<dyn ClusterLink>>,
    /// Connections per IP address; taken on connect and disconnect only.
    ips: Mutex<IpGate>,
    /// Connections by id, sharded so that finding a peer's cell never waits on an
    /// unrelated pair.
    cells: DashMap<ConnId, Arc<Cell>>,
    next_conn: AtomicU64,
    /// Every timer task, so shutting down can wait for all of them.
    tasks: TaskTracker,
    /// Set by [`RelayHandle::close_all`]: from then on newcomers are refused, so that no
    /// connection (nor its timer) appears after the relay was emptied.
    closed: AtomicBool,
    metrics: Arc<Metrics>,
    /// Streams whose bytes the front ends relay, for the control center.
    streams: Arc<Streams>,
}

impl RelayHandle {
    pub fn new(config: Config) -> Self {
        Self::with_authenticator(config, AllowAll)
    }

    pub fn with_authenticator(config: Config, auth: impl Authenticator) -> Self {
        Self::with_gate(config, Gate::Sync(Box::new(auth)))
    }

    /// A relay whose admission needs I/O (an HTTP callback): front ends admit through
    /// [`RelayHandle::admit`], and the synchronous [`RelayHandle::connect`] refuses.
    pub fn with_async_authenticator(config: Config, auth: impl AsyncAuthenticator) -> Self {
        Self::with_gate(config, Gate::Async(Box::new(auth)))
    }

    fn with_gate(config: Config, auth: Gate) -> Self {
        Self {
            node: Arc::new(Node {
                cluster: OnceLock::new(),
                ips: Mutex::new(IpGate::new(config.ip)),
                config: Arc::new(config),
                auth,
                directory: Mutex::new(LocalDirectory::default()),
                cells: DashMap::new(),
                next_conn: AtomicU64::new(0),
                tasks: TaskTracker::new(),
                closed: AtomicBool::new(false),
                metrics: Arc::new(Metrics::default()),
                streams: Arc::default(),
            }),
        }
    }

    pub fn config(&self) -> &Config {
        &self.node.config
    }

    /// What this relay counted (see [`Metrics`]).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.node.metrics
    }

    pub fn downgrade(&self) -> WeakRelayHandle {
        WeakRelayHandle {
            node: Arc::downgrade(&self.node),
        }
    }

    /// Makes this relay a node of a cluster: from now on clientIds are claimed, looked up
    /// and listed through `link`, and messages for other nodes go through it. Call it
    /// before the front ends serve (it refuses once a connection exists, or a second link).
    pub fn join_cluster(&self, link: Arc<dyn ClusterLink>) -> Result<(), ClusterJoinError> {
        if !self.node.cells.is_empty() {
            return Err(ClusterJoinError::Connected);
        }
        let first = link.first_conn();
        self.node
            .cluster
            .set(link)
            .map_err(|_| ClusterJoinError::AlreadyJoined)?;
        self.node.next_conn.store(first, Ordering::Relaxed);
        Ok(())
    }

    /// This node's id: 0 alone, the cluster's number for it in cluster mode.
    pub fn node_id(&self) -> NodeId {
        self.node.id()
    }

    /// A message from a connection on another node, for a connection here.
    pub fn from_link(&self, transmit: Transmit) {
        let Transmit { from, to, msg } = transmit;
        if let PeerMsg::Close { reason } = msg {
            // A newer connection on another node claimed this one's clientId.
            return self.node.remove(to.conn, Some(reason));
        }
        let posted = match self.node.cell(to.conn) {
            Some(cell) => match cell.post(from, msg) {
                Ok(()) => Some(cell),
                Err(msg) => {
                    self.node.bounce_remote(to, from, msg);
                    None
                }
            },
            None => {
                self.node.bounce_remote(to, from, msg);
                None
            }
        };
        if let Some(cell) = posted {
            let mut work = Work::new();
            work.push(cell);
            self.node.run_inboxes(Instant::now(), work);
        }
    }

    /// A message the cluster link took could not be carried after all: its sender is told
    /// as if the receiver had refused it (a question fails with `error`).
    pub fn undeliverable(&self, transmit: Transmit, error: RequestError) {
        let Some(reply) = transmit.msg.undeliverable(error) else {
            return;
        };
        if let Some(cell) = self.node.cell(transmit.from.conn) {
            self.node
                .run(&cell, |c, now| c.handle_peer(now, transmit.to, reply));
        }
    }

    /// The shared directory's answer to a connection's query.
    pub fn answer_query(&self, conn: ConnId, answered: Answered) {
        if let Some(cell) = self.node.cell(conn) {
            self.node.run(&cell, |c, _| c.handle_directory(answered));
        }
    }

    /// Another node is gone (its lease lapsed, or this node lost the cluster): everything
    /// involving its connections ends, as if each of them had disconnected. One pass over
    /// this node's connections; it happens once per node failure.
    pub fn node_gone(&self, node: NodeId) {
        let cells: Vec<Arc<Cell>> = self.node.cells.iter().map(|e| e.value().clone()).collect();
        for cell in cells {
            let gone: Vec<Addr> = {
                let state = cell.lock();
                let mut gone: Vec<Addr> = state
                    .peer()
                    .map(|(a, _)| a)
                    .into_iter()
                    .chain(state.involved())
                    .filter(|a| a.node == node)
                    .collect();
                gone.sort();
                gone.dedup();
                gone
            };
            if gone.is_empty() {
                continue;
            }
            self.node.run(&cell, |c, now| {
                for from in gone {
                    c.handle_peer(now, from, PeerMsg::Gone);
                }
            });
        }
    }

    /// This node's clients and their addresses (to claim them again when a cluster's
    /// directory lost them, e.g. a Redis that restarted empty).
    pub fn local_clients(&self) -> Vec<(ClientId, Addr)> {
        self.node
            .directory()
            .iter()
            .map(|(c, a)| (c.clone(), *a))
            .collect()
    }

    /// The limits a client of this relay is told of when it connects.
    pub fn client_limits(&self) -> ClientLimits {
        self.node.config.client_limits()
    }

    /// Admission of a client that claims `client_id`, from `remote` when the front end
    /// knows it: a well-formed id, the address within its connection limits, and the
    /// authenticator's consent, asynchronous or not. Connect the result with
    /// [`RelayHandle::connect_admitted`].
    pub async fn admit(
        &self,
        client_id: Option<&str>,
        credentials: Option<&[u8]>,
        remote: Option<SocketAddr>,
        transport: Transport,
    ) -> Result<Admitted, ConnectError> {
        let admitted = async {
            let (client, ip) = self.knock(client_id, remote)?;
            let presented = presented(&client, credentials, remote, transport);
            let claims = self.node.auth.authenticate(presented).await;
            let mut admitted = self.admitted(client, ip, claims)?;
            if let Some(link) = self.node.cluster.get() {
                // The claim is a round trip to the shared directory: made here, in the
                // front end's task, so that connecting stays synchronous in the core.
                let addr = self.node.reserve();
                let config = &self.node.config;
                let claimed = link
                    .claim(
                        &admitted.client,
                        addr,
                        config.duplicate_policy,
                        config.max_clients,
                    )
                    .await?;
                admitted.cluster = Some(ClusterClaim::new(
                    link.clone(),
                    admitted.client.clone(),
                    addr,
                    claimed,
                ));
            }
            Ok(admitted)
        }
        .await;
        if let Err(e) = &admitted {
            self.node.metrics.refused(e);
        }
        admitted
    }

    /// [`RelayHandle::admit`] and [`RelayHandle::connect_admitted`] in one call, for a
    /// relay whose authenticator is synchronous (with an asynchronous one it refuses).
    pub fn connect(
        &self,
        client_id: Option<&str>,
        credentials: Option<&[u8]>,
        transport: Transport,
        sink: Arc<dyn Sink>,
    ) -> Result<ConnId, ConnectError> {
        let admitted = self.knock(client_id, None).and_then(|(client, ip)| {
            let presented = presented(&client, credentials, None, transport);
            let claims = self.node.auth.authenticate_now(presented);
            self.admitted(client, ip, claims)
        });
        match admitted {
            Ok(admitted) => self.connect_admitted(admitted, transport, sink),
            Err(e) => {
                self.node.metrics.refused(&e);
                Err(e)
            }
        }
    }

    fn knock(
        &self,
        client_id: Option<&str>,
        remote: Option<SocketAddr>,
    ) -> Result<(ClientId, Option<std::net::IpAddr>), ConnectError> {
        let client = check_client_id(client_id)?;
        let ip = remote.map(|r| r.ip());
        if let Some(ip) = ip {
            self.node.ips().knock(Instant::now(), ip)?;
        }
        Ok((client, ip))
    }

    fn admitted(
        &self,
        client: ClientId,
        ip: Option<std::net::IpAddr>,
        claims: Result<relay_core::Claims, relay_core::AuthError>,
    ) -> Result<Admitted, ConnectError> {
        match claims {
            Ok(claims) => Ok(Admitted {
                client,
                claims,
                ip,
                cluster: None,
            }),
            Err(reason) => {
                debug!(%client, %reason, "refused");
                Err(ConnectError::Unauthorized { client, reason })
            }
        }
    }

    /// Starts an admitted connection, whose events go to `sink`: it takes a slot of its
    /// address and claims its clientId in the directory (under the duplicate policy).
    pub fn connect_admitted(
        &self,
        admitted: Admitted,
        transport: Transport,
        sink: Arc<dyn Sink>,
    ) -> Result<ConnId, ConnectError> {
        let started = self.start(admitted, transport, sink);
        match &started {
            Ok(_) => self.node.metrics.connected(transport),
            Err(e) => self.node.metrics.refused(e),
        }
        started
    }

    fn start(
        &self,
        admitted: Admitted,
        transport: Transport,
        sink: Arc<dyn Sink>,
    ) -> Result<ConnId, ConnectError> {
        let node = &self.node;
        if node.closed.load(Ordering::SeqCst) {
            return Err(ConnectError::ShuttingDown);
        }
        let mut admitted = admitted;
        let cluster_claim = admitted.cluster.take();
        if node.cluster.get().is_some() && cluster_claim.is_none() {
            return Err(ConnectError::ClusterUnavailable(
                "a cluster node admits through RelayHandle::admit, which claims the clientId"
                    .into(),
            ));
        }
        let client = admitted.client.clone();
        let claims = admitted.claims.clone();
        let ip = admitted.ip.take();
        drop(admitted);
        if let Some(ip) = ip {
            // On a refusal the claim guard, dropped, releases the cluster claim.
            node.ips().enter(ip)?;
        }
        let (addr, claimed) = match cluster_claim {
            Some(claim) => {
                let (addr, claimed) = claim.take();
                // The local mirror: the shared directory decided; an older local entry
                // of this id is the connection it replaced.
                let local =
                    node.directory()
                        .claim(&client, addr, DuplicatePolicy::Replace, usize::MAX);
                if let Ok(Claimed::Replaced(old)) = local {
                    if Claimed::Replaced(old) != claimed {
                        node.remove(old.conn, Some(CloseReason::Replaced(client.clone())));
                    }
                }
                (addr, claimed)
            }
            None => {
                let addr = node.reserve();
                let claimed = node.directory().claim(
                    &client,
                    addr,
                    node.config.duplicate_policy,
                    node.config.max_clients,
                );
                match claimed {
                    Ok(claimed) => (addr, claimed),
                    Err(e) => {
                        if let Some(ip) = ip {
                            node.ips().leave(ip);
                        }
                        return Err(e);
                    }
                }
            }
        };
        if let Claimed::Replaced(old) = claimed {
            let reason = CloseReason::Replaced(client.clone());
            if old.node == node.id() {
                node.remove(old.conn, Some(reason));
            } else if let Some(link) = node.cluster.get() {
                // Its own node closes it; if the message is lost, that connection is
                // gone from the directory anyway and closes when its node hears of it.
                let _ = link.send(Transmit {
                    from: addr,
                    to: old,
                    msg: PeerMsg::Close { reason },
                });
            }
        }
        debug!(%client, %addr, "connected");
        // The token's exp as an instant of the clock the timers run on.
        let expiry = claims.deadline(Instant::now(), SystemTime::now());
        let connection = Connection::new(addr, client, transport, node.config.clone())
            .with_claims(claims)
            .with_expiry(expiry);
        let cell = Arc::new(Cell::new(connection, sink, ip));
        // The timer is armed before the cell can be found: whoever removes the cell (a
        // disconnect, a replacement, close_all) then always finds the timer to stop.
        let timer = node
            .tasks
            .spawn(drive_timer(Arc::downgrade(&self.node), cell.clone()));
        *cell.timer.lock().unwrap_or_else(|p| p.into_inner()) = Some(timer.abort_handle());
        node.cells.insert(addr.conn, cell);
        // close_all may have run between the check above and the insert, without seeing
        // this cell: then it is this call's to undo (removing twice is harmless).
        if node.closed.load(Ordering::SeqCst) {
            node.remove(addr.conn, None);
            return Err(ConnectError::ShuttingDown);
        }
        Ok(addr.conn)
    }

    /// One request from a connection's client.
    pub fn command(&self, conn: ConnId, command: Command) {
        let Some(cell) = self.node.cell(conn) else {
            return debug!(?conn, "command from a forgotten connection ignored");
        };
        let metrics = &self.node.metrics;
        self.node.run(&cell, |c, now| {
            metrics.command(c.transport(), &command);
            if let Command::Emit { event, args, .. } = &command {
                // Event arguments in their core form, whatever their wire encoding: the
                // same measure both ways and on both transports.
                let size = args.size() as u64;
                metrics.bytes(c.transport(), Direction::In, size);
                cell.traffic.add(Direction::In, 1, size);
                if event == relay_core::P2P_EMIT_STREAM {
                    cell.traffic.chunk_sent();
                }
            }
            if let Command::Emit { ack: Some(req), .. } = &command {
                cell.acks().start(*req, now);
            }
            c.handle(now, command)
        });
    }

    /// The connection is gone: the core forgets it and tells whoever it was involved with.
    /// Calling it for a connection already forgotten (e.g. one it replaced) does nothing.
    pub fn disconnect(&self, conn: ConnId) {
        self.node.remove(conn, None);
    }

    /// Closes one connection, telling its client why (its front end gets the reason as a
    /// `ServerError` and then `Close`) and whoever it was involved with that it is gone.
    /// Does nothing for a connection already forgotten.
    pub fn close(&self, conn: ConnId, reason: CloseReason) {
        self.node.remove(conn, Some(reason));
    }

    /// Closes every connection, telling each client why (a relay shutting down), refuses
    /// connections from then on ([`ConnectError::ShuttingDown`]), and waits for every task
    /// the core started to end.
    pub async fn close_all(&self, reason: CloseReason) {
        self.close_all_now(reason);
        self.node.tasks.wait().await;
    }

    /// What [`RelayHandle::close_all`] does without waiting: for a `Drop`, which cannot.
    /// The timers are aborted and end at their next turn on the runtime.
    pub fn close_all_now(&self, reason: CloseReason) {
        self.node.closed.store(true, Ordering::SeqCst);
        let conns: Vec<ConnId> = self.node.cells.iter().map(|e| *e.key()).collect();
        for conn in conns {
            self.node.remove(conn, Some(reason.clone()));
        }
        self.node.tasks.close();
    }

    // The server-side API of the original Node plugin.

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

    /// Refuses connections from now on ([`ConnectError::ShuttingDown`]) and leaves the
    /// connected ones be: the start of a drain, before [`RelayHandle::close_all`].
    pub fn refuse_newcomers(&self) {
        self.node.closed.store(true, Ordering::SeqCst);
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

/// Why a relay could not join a cluster.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterJoinError {
    #[error("the relay already has connections; join the cluster before serving")]
    Connected,
    #[error("the relay is already a node of a cluster")]
    AlreadyJoined,
}

impl Node {
    fn id(&self) -> NodeId {
        self.cluster.get().map(|c| c.node()).unwrap_or(NodeId(0))
    }

    fn reserve(&self) -> Addr {
        Addr::new(
            self.id(),
            ConnId(self.next_conn.fetch_add(1, Ordering::Relaxed)),
        )
    }

    /// A message from another node for a connection that is gone here: its sender is told
    /// (never for a `Gone`, which would answer a `Gone` forever).
    fn bounce_remote(&self, to: Addr, from: Addr, msg: PeerMsg) {
        if msg == PeerMsg::Gone || matches!(msg, PeerMsg::Close { .. }) {
            return;
        }
        if let Some(link) = self.cluster.get() {
            let _ = link.send(Transmit {
                from: to,
                to: from,
                msg: PeerMsg::Gone,
            });
        }
    }

    fn directory(&self) -> MutexGuard<'_, LocalDirectory> {
        self.directory.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn ips(&self) -> MutexGuard<'_, IpGate> {
        self.ips.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn cell(&self, conn: ConnId) -> Option<Arc<Cell>> {
        self.cells.get(&conn).map(|c| c.clone())
    }

    /// Runs `f` on a connection, then everything it caused, each connection under its own
    /// lock and never two at once.
    fn run(&self, cell: &Arc<Cell>, f: impl FnOnce(&mut Connection, Instant)) {
        let now = Instant::now();
        let mut work = Work::new();
        {
            let mut state = cell.lock();
            let before = state.poll_timeout();
            let shape = Shape::of(&state);
            f(&mut state, now);
            self.flush(now, cell, &mut state, &mut work);
            self.metrics.reshaped(shape, Shape::of(&state));
            if state.poll_timeout() != before {
                cell.rearm.notify_one();
            }
        }
        self.run_inboxes(now, work);
    }

    /// Lets every connection that was sent a message handle its inbox.
    fn run_inboxes(&self, now: Instant, mut work: Work) {
        while let Some(cell) = work.pop() {
            let mut state = cell.lock();
            let before = state.poll_timeout();
            let shape = Shape::of(&state);
            while let Some((from, msg)) = cell.next_message() {
                state.handle_peer(now, from, msg);
                self.flush(now, &cell, &mut state, &mut work);
            }
            self.metrics.reshaped(shape, Shape::of(&state));
            if state.poll_timeout() != before {
                cell.rearm.notify_one();
            }
        }
    }

    /// Hands a connection's outputs on: queries to the directory, events to its sink (under
    /// its lock, so they keep their order), messages to their connections' inboxes.
    fn flush(&self, now: Instant, cell: &Cell, state: &mut Connection, work: &mut Work) {
        let transport = state.transport();
        loop {
            let mut progress = false;
            while let Some(query) = state.poll_query() {
                match self.cluster.get() {
                    // Answered later, through RelayHandle::answer_query.
                    Some(link) => link.query(state.addr().conn, query),
                    None => {
                        progress = true;
                        let answered = self.directory().answer(&query);
                        state.handle_directory(answered);
                    }
                }
            }
            while let Some(event) = state.poll_event() {
                self.metrics.event(transport, &event);
                if let Event::Deliver { args, .. } = &event {
                    let size = args.size() as u64;
                    self.metrics.bytes(transport, Direction::Out, size);
                    cell.traffic.add(Direction::Out, 1, size);
                }
                if let Event::Reply { req, reply } = &event {
                    cell.acks().replied(&self.metrics, *req, reply, now);
                }
                if let Err(Refused {
                    event: Event::Deliver { event, ticket, .. },
                    limit,
                }) = cell.sink.send(event)
                {
                    progress = true;
                    self.metrics.undelivered(Undelivered::QueueFull);
                    state.report_undelivered(&event, ticket, limit);
                }
            }
            while let Some(transmit) = state.poll_transmit() {
                progress = true;
                let to = transmit.to;
                if to.node != self.id() {
                    // Another node's connection: the cluster link carries it. Without one
                    // (or when it cannot take it now) the receiver is out of reach.
                    let error = match self.cluster.get() {
                        Some(link) => match link.send(transmit) {
                            Ok(()) => continue,
                            Err(back) => back.msg.undeliverable(RequestError::ClusterUnavailable),
                        },
                        None => (transmit.msg != PeerMsg::Gone).then_some(PeerMsg::Gone),
                    };
                    if let Some(reply) = error {
                        state.handle_peer(now, to, reply);
                    }
                    continue;
                }
                let target = self.cell(to.conn);
                let bounced = match target {
                    Some(target) => match target.post(transmit.from, transmit.msg) {
                        Ok(()) => {
                            if !work.iter().any(|c| Arc::ptr_eq(c, &target)) {
                                work.push(target);
                            }
                            None
                        }
                        Err(msg) => Some(msg),
                    },
                    None => Some(transmit.msg),
                };
                if let Some(msg) = &bounced {
                    self.metrics.bounced(msg);
                }
                // A message to a connection that is gone is answered with Gone on its
                // behalf (never a Gone itself: two vanished ends would answer each other).
                if bounced.is_some_and(|msg| msg != PeerMsg::Gone) {
                    state.handle_peer(now, to, PeerMsg::Gone);
                }
            }
            if !progress {
                break;
            }
        }
    }

    /// Forgets a connection: closes it with `reason` (telling its client) or as a plain
    /// disconnect, answers what was still queued for it, and releases its directory entry.
    fn remove(&self, conn: ConnId, reason: Option<CloseReason>) {
        let Some((_, cell)) = self.cells.remove(&conn) else {
            return;
        };
        if let Some(ip) = cell.ip {
            self.ips().leave(ip);
        }
        cell.stop_timer();
        let now = Instant::now();
        let mut work = Work::new();
        {
            let mut state = cell.lock();
            let shape = Shape::of(&state);
            let undelivered = cell.close_inbox();
            let addr = state.addr();
            for (from, msg) in undelivered {
                if from.node != self.id() {
                    self.bounce_remote(addr, from, msg);
                } else if msg != PeerMsg::Gone {
                    if let Some(sender) = self.cell(from.conn) {
                        if sender.post(addr, PeerMsg::Gone).is_ok()
                            && !work.iter().any(|c| Arc::ptr_eq(c, &sender))
                        {
                            work.push(sender);
                        }
                    }
                }
            }
            match reason {
                Some(reason) => state.close(reason),
                None => state.disconnect(),
            }
            self.directory().release(state.client(), addr);
            if let Some(link) = self.cluster.get() {
                link.release(state.client(), addr);
            }
            self.flush(now, &cell, &mut state, &mut work);
            self.metrics.reshaped(shape, Shape::GONE);
            self.metrics.disconnected(state.transport());
        }
        self.run_inboxes(now, work);
    }
}

fn presented<'a>(
    client: &'a ClientId,
    credentials: Option<&'a [u8]>,
    remote: Option<SocketAddr>,
    transport: Transport,
) -> Presented<'a> {
    Presented {
        client,
        credentials,
        remote,
        transport,
        unix_time: unix_seconds(SystemTime::now()),
    }
}

/// Sleeps until the connection's next deadline (or until it moves) and fires it. Holds the
/// node weakly so that it never keeps a dropped relay alive.
async fn drive_timer(node: Weak<Node>, cell: Arc<Cell>) {
    loop {
        let rearmed = cell.rearm.notified();
        tokio::pin!(rearmed);
        rearmed.as_mut().enable();
        let deadline = cell.lock().poll_timeout();
        match deadline {
            Some(deadline) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(deadline.into()) => {
                        let Some(node) = node.upgrade() else { return };
                        let mut due = None;
                        node.run(&cell, |c, now| {
                            c.handle_timeout(now);
                            due = c.due_close(now).map(|reason| (c.addr().conn, reason));
                        });
                        if let Some((conn, reason)) = due {
                            // Its token expired: closed as an operator's disconnect is
                            // (told why, peer freed); removing it stops this timer.
                            debug!(?conn, %reason, "closing");
                            node.remove(conn, Some(reason));
                            return;
                        }
                    }
                    _ = &mut rearmed => {}
                }
            }
            None => rearmed.await,
        }
    }
}

#[cfg(test)]
mod tests {
    //! The concurrent driver keeps the rules' promises when many threads drive many pairs:
    //! every delivery reaches the peer in order, every request is answered exactly once,
    //! and a disconnect in the middle of traffic leaves nothing waiting.

    use std::collections::HashMap;
    use std::sync::Mutex as StdMutex;
    use std::time::Duration;

    use relay_core::rmpv::Value;
    use relay_core::{Answer, Payload, Reply, ReqId};

    use super::*;

    /// Records what a connection was told; answers nothing itself.
    #[derive(Default)]
    struct Recorder {
        events: StdMutex<Vec<Event>>,
    }

    impl Sink for Recorder {
        fn send(&self, event: Event) -> Result<(), Refused> {
            self.events.lock().unwrap().push(event);
            Ok(())
        }
    }

    impl Recorder {
        fn take(&self) -> Vec<Event> {
            std::mem::take(&mut self.events.lock().unwrap())
        }
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    }

    fn seq_of(event: &Event) -> Option<u64> {
        match event {
            Event::Deliver { args, .. } => match args.clone().into_values().ok()?.first()? {
                Value::Integer(n) => n.as_u64(),
                _ => None,
            },
            _ => None,
        }
    }

    fn pair(
        handle: &RelayHandle,
        a: &str,
        b: &str,
    ) -> (ConnId, ConnId, Arc<Recorder>, Arc<Recorder>) {
        let (ra, rb) = (Arc::new(Recorder::default()), Arc::new(Recorder::default()));
        let ca = handle
            .connect(Some(a), None, Transport::Native, ra.clone())
            .unwrap();
        let cb = handle
            .connect(Some(b), None, Transport::Legacy, rb.clone())
            .unwrap();
        handle.command(
            ca,
            Command::Register {
                req: ReqId(0),
                target: b.into(),
            },
        );
        let ticket = rb
            .take()
            .into_iter()
            .find_map(|e| match e {
                Event::RegisterRequest { ticket, .. } => Some(ticket),
                _ => None,
            })
            .expect("a pairing request");
        handle.command(
            cb,
            Command::Answer {
                ticket,
                answer: Answer::Accept(true),
            },
        );
        assert!(matches!(
            ra.take().as_slice(),
            [Event::Reply {
                reply: Reply::Registered(true),
                ..
            }]
        ));
        (ca, cb, ra, rb)
    }

    #[test]
    fn many_threads_many_pairs_keep_order_and_answer_everything() {
        let rt = runtime();
        let _guard = rt.enter();
        // Every emit may be waiting for its ack at once: the limit must not refuse them.
        let config = Config {
            max_pending_per_connection: 10_000,
            rate: relay_core::RateLimits::OFF,
            ..Config::default()
        };
        let handle = RelayHandle::new(config);
        const PAIRS: usize = 8;
        const EMITS: u64 = 2_000;
        let pairs: Vec<_> = (0..PAIRS)
            .map(|i| pair(&handle, &format!("a{i}"), &format!("b{i}")))
            .collect();
        std::thread::scope(|scope| {
            for (a, b, _, rb) in &pairs {
                let handle = handle.clone();
                let (a, b, rb) = (*a, *b, rb.clone());
                // The sender emits with acks; the receiver's thread answers what it got.
                scope.spawn({
                    let handle = handle.clone();
                    move || {
                        for n in 0..EMITS {
                            let command = Command::Emit {
                                target: format!("b{}", a.0 / 2),
                                event: "e".into(),
                                args: Payload::Values(vec![Value::from(n)]),
                                ack: Some(ReqId(n + 1)),
                            };
                            handle.command(a, command);
                        }
                    }
                });
                scope.spawn(move || {
                    let mut seen = 0;
                    let deadline = Instant::now() + Duration::from_secs(20);
                    let mut log: Vec<u64> = Vec::new();
                    while seen < EMITS && Instant::now() < deadline {
                        let events = rb.take();
                        if events.is_empty() {
                            std::thread::yield_now();
                        }
                        for event in events {
                            if let Some(n) = seq_of(&event) {
                                log.push(n);
                                seen += 1;
                                if let Event::Deliver {
                                    ticket: Some(t), ..
                                } = event
                                {
                                    let answer = Answer::Ack(Payload::Values(vec![Value::from(n)]));
                                    handle.command(b, Command::Answer { ticket: t, answer });
                                }
                            }
                        }
                    }
                    assert_eq!(log, (0..EMITS).collect::<Vec<_>>(), "order of b{}", b.0 / 2);
                });
            }
        });
        // Every ack reply reached its sender exactly once, with the receiver's answer.
        for (a, _, ra, _) in &pairs {
            let mut replies: HashMap<u64, u64> = HashMap::new();
            let deadline = Instant::now() + Duration::from_secs(20);
            while replies.len() < EMITS as usize && Instant::now() < deadline {
                for event in ra.take() {
                    match event {
                        Event::Reply {
                            req,
                            reply: Reply::Ack(args),
                        } => {
                            let n = match args.into_values().unwrap()[0] {
                                Value::Integer(n) => n.as_u64().unwrap(),
                                _ => panic!("ack without its number"),
                            };
                            assert!(
                                replies.insert(req.0, n).is_none(),
                                "second reply to {req:?}"
                            );
                        }
                        other => panic!("{a:?} got {other:?}"),
                    }
                }
                std::thread::yield_now();
            }
            assert_eq!(replies.len(), EMITS as usize);
            assert!(replies.iter().all(|(req, n)| *req == n + 1));
        }
    }

    #[test]
    fn a_disconnect_amid_traffic_answers_every_request() {
        let rt = runtime();
        let _guard = rt.enter();
        let handle = RelayHandle::new(Config::default());
        let (a, b, ra, rb) = pair(&handle, "A", "B");
        std::thread::scope(|scope| {
            scope.spawn(|| {
                for n in 0..500u64 {
                    handle.command(
                        a,
                        Command::Emit {
                            target: "B".into(),
                            event: "e".into(),
                            args: Payload::Values(vec![Value::from(n)]),
                            ack: Some(ReqId(n)),
                        },
                    );
                }
            });
            scope.spawn(|| {
                std::thread::sleep(Duration::from_millis(1));
                handle.disconnect(b);
            });
        });
        let _ = rb.take();
        let mut answered = std::collections::HashSet::new();
        let mut disconnected = 0;
        for event in ra.take() {
            match event {
                Event::Reply { req, .. } => assert!(answered.insert(req), "{req:?} twice"),
                Event::PeerDisconnected => disconnected += 1,
                Event::ServerError { .. } => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        // The 500 requests were either answered before B left (none here, B never acked),
        // failed as B left, or refused as not paired afterwards: each exactly once.
        assert_eq!(answered.len(), 500);
        assert_eq!(disconnected, 1);
        assert!(handle.peer_of("A").is_none());
        assert_eq!(
            handle.client_ids(),
            vec![relay_core::ClientId::new("A").unwrap()]
        );
    }
}
