//! Cluster mode: many relay nodes, one Redis; a pair split across two nodes works exactly
//! as a pair on one node. See `docs/CLUSTER.md`.
//!
//! The core is unchanged: a peer on another node is a remote connection, reached through
//! the runtime's [`ClusterLink`] seam, which this module implements:
//!
//! - [`directory`]: clientId -> (node, connection) in Redis, the lease of each node, and
//!   the duplicate policy, each atomic in a Lua script;
//! - [`bus`]: control, emits and acks between nodes over Redis pub/sub, in order;
//! - [`node_link`]: stream bytes between nodes over a node-to-node QUIC connection,
//!   authenticated by the shared cluster secret.

pub mod bus;
pub mod directory;
pub mod node_link;
pub mod wire;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use relay_core::{
    Addr, Answered, ClientId, ClientPage, CloseReason, ConnId, ConnectError, DuplicatePolicy,
    NodeId, Query, RequestError, Transmit,
};
use relay_runtime::{ClaimFuture, ClusterLink, RelayHandle, WeakRelayHandle};
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use directory::{DirectoryError, NodeInfo, RedisDirectory};
pub use node_link::NodeLinks;

/// The cluster's settings: flattened into the server's, all off unless `--cluster` is set.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ClusterSettings {
    /// Join a cluster of relay nodes sharing this Redis (`redis://HOST:PORT[/DB]`, or
    /// `rediss://` for TLS). Without it the relay runs alone, with no Redis.
    #[arg(
        long = "cluster",
        id = "cluster",
        env = "P2P_RELAY_CLUSTER",
        value_name = "REDIS_URL"
    )]
    pub redis_url: Option<String>,

    /// How long a node stays in the directory without renewing its lease, in milliseconds:
    /// a node that is killed or cut off is taken as gone this long after its last renewal.
    #[arg(long, env = "P2P_RELAY_CLUSTER_LEASE_MS", default_value_t = 5_000)]
    pub cluster_lease_ms: u64,

    /// A file holding the secret every node of the cluster shares: only holders may open
    /// a node link (stream bytes between nodes). Required with --cluster.
    #[arg(long, env = "P2P_RELAY_CLUSTER_SECRET_FILE")]
    pub cluster_secret_file: Option<PathBuf>,

    /// The address other nodes reach this node's QUIC endpoint on, for node links
    /// (default: the QUIC listen address).
    #[arg(long, env = "P2P_RELAY_ADVERTISE_ADDR")]
    pub advertise_addr: Option<SocketAddr>,

    /// Name of the cluster in Redis (every key starts with it), so several clusters can
    /// share one Redis.
    #[arg(long, env = "P2P_RELAY_CLUSTER_NAME", default_value = "p2p-relay")]
    pub cluster_name: String,
}

impl ClusterSettings {
    pub fn lease(&self) -> Duration {
        Duration::from_millis(self.cluster_lease_ms.max(300))
    }
}

/// Why a node could not join its cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("invalid --cluster URL: {0}")]
    Url(redis::RedisError),
    #[error(
        "--cluster {0}: a list of Redis Cluster URLs is not supported; give the one \
         redis:// or rediss:// URL of the Redis every node shares"
    )]
    ClusterUrls(String),
    #[error("cannot reach the cluster's Redis at {url}: {source}")]
    Connect {
        url: String,
        source: redis::RedisError,
    },
    #[error("cannot join the cluster: {0}")]
    Directory(#[from] DirectoryError),
    #[error("--cluster needs --cluster-secret-file: the node links are opened only by holders of the cluster secret")]
    NoSecret,
    #[error("cannot read the cluster secret {path}: {source}")]
    Secret {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the cluster secret in {0} is empty")]
    EmptySecret(PathBuf),
    /// Shorter than `settings::MIN_SECRET_BYTES`: it is all that keeps others off the
    /// node links.
    #[error(transparent)]
    ShortSecret(#[from] crate::settings::ShortSecret),
    #[error("cannot set up node links: {0}")]
    NodeLink(String),
    #[error(transparent)]
    Join(#[from] relay_runtime::ClusterJoinError),
}

/// One node's membership of the cluster: what the runtime's [`ClusterLink`] is here.
pub struct Cluster {
    node: NodeId,
    /// This node's lease value (`token|advertise`): the token tells a restarted node of the
    /// same id from this one.
    value: String,
    lease: Duration,
    dir: RedisDirectory,
    relay: WeakRelayHandle,
    queue: mpsc::Sender<bus::Out>,
    /// The last lease renewal (or watch) reached Redis.
    redis_ok: AtomicBool,
    /// The bus subscription holds.
    subscribed: Arc<AtomicBool>,
    bus_changed: Arc<Notify>,
    /// This node lost its lease (or Redis for longer than a lease): other nodes took it for
    /// gone, so it took them for gone too, and it claims its clients again before serving
    /// cross-node requests.
    isolated: AtomicBool,
    /// The other nodes this node knows alive: their lease token once a watch saw them,
    /// and when this node first heard of them. Sharded: `send` touches it per message.
    known: DashMap<NodeId, Known>,
    /// Clients admitted while Redis was unreachable, claimed in Redis once it is back.
    provisional: DashMap<ClientId, Addr>,
    links: Arc<NodeLinks>,
    me: Weak<Cluster>,
    tasks: TaskTracker,
    stop: CancellationToken,
}

impl Cluster {
    /// Joins the cluster: takes a node id with a lease, starts the lease, the watch of the
    /// other nodes and the bus, and makes `relay` a node of the cluster. Fails when Redis
    /// cannot be reached: a node that starts without its cluster would serve alone.
    pub async fn join(
        settings: &ClusterSettings,
        redis_url: &str,
        relay: &RelayHandle,
        quic_addr: SocketAddr,
        links: Arc<NodeLinks>,
    ) -> Result<Arc<Cluster>, ClusterError> {
        let lease = settings.lease();
        if redis_url.contains(',') {
            return Err(ClusterError::ClusterUrls(redis_url.to_owned()));
        }
        // rediss:// builds its TLS on the process's default provider: ring, as everywhere
        // else here (a provider installed already stays).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = redis::Client::open(redis_url).map_err(ClusterError::Url)?;
        let call_timeout = (lease / 4).clamp(Duration::from_millis(200), Duration::from_secs(2));
        let manager_config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(call_timeout)
            .set_response_timeout(call_timeout)
            .set_number_of_retries(1)
            .set_max_delay(200);
        let connect = client.get_connection_manager_with_config(manager_config);
        let manager = match tokio::time::timeout(Duration::from_secs(5), connect).await {
            Ok(Ok(m)) => m,
            Ok(Err(source)) => {
                return Err(ClusterError::Connect {
                    url: redis_url.to_owned(),
                    source,
                })
            }
            Err(_) => {
                return Err(ClusterError::Connect {
                    url: redis_url.to_owned(),
                    source: redis::RedisError::from(std::io::Error::from(
                        std::io::ErrorKind::TimedOut,
                    )),
                })
            }
        };
        let dir = RedisDirectory::new(manager, &settings.cluster_name, call_timeout);
        let advertise = settings.advertise_addr.unwrap_or(quic_addr);
        if advertise.ip().is_unspecified() {
            warn!(
                %advertise,
                "other nodes cannot reach an unspecified address: set --advertise-addr to the \
                 address this node's QUIC endpoint is reached on"
            );
        }
        let token = instance_token();
        let value = directory::node_value(&token, Some(advertise));
        let start = (token.len() as u32).wrapping_add(std::process::id()) % 255;
        let node = dir.join(&value, lease, start).await?;
        info!(node = node.0, %advertise, "joined the cluster");

        links.set_directory(dir.clone());
        let (queue, queued) = mpsc::channel(bus::QUEUE);
        let stop = CancellationToken::new();
        let cluster = Arc::new_cyclic(|me| Cluster {
            node,
            value,
            lease,
            dir: dir.clone(),
            relay: relay.downgrade(),
            queue,
            redis_ok: AtomicBool::new(true),
            subscribed: Arc::new(AtomicBool::new(false)),
            bus_changed: Arc::new(Notify::new()),
            isolated: AtomicBool::new(false),
            known: DashMap::new(),
            provisional: DashMap::new(),
            links,
            me: me.clone(),
            tasks: TaskTracker::new(),
            stop: stop.clone(),
        });
        relay.join_cluster(cluster.clone())?;

        let c = &cluster;
        c.tasks.spawn(bus::publish(
            dir.clone(),
            node,
            queued,
            relay.downgrade(),
            stop.clone(),
        ));
        c.tasks.spawn(bus::subscribe(
            client,
            dir,
            node,
            relay.downgrade(),
            c.subscribed.clone(),
            c.bus_changed.clone(),
            stop.clone(),
        ));
        c.tasks.spawn(keep_lease(Arc::downgrade(c), stop.clone()));
        c.tasks.spawn(watch_nodes(Arc::downgrade(c), stop.clone()));
        // Serve cross-node requests once the bus listens, so the first messages of other
        // nodes are not lost (bounded: a Redis that accepts but does not subscribe).
        let listening = async {
            while !c.subscribed.load(Ordering::SeqCst) {
                c.bus_changed.notified().await;
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(5), listening).await;
        Ok(cluster)
    }

    pub fn node(&self) -> NodeId {
        self.node
    }

    pub fn links(&self) -> &Arc<NodeLinks> {
        &self.links
    }

    /// Where another node's QUIC endpoint is reached, if that node is known alive.
    pub fn advertised(&self, node: NodeId) -> Option<SocketAddr> {
        self.links.address_of(node)
    }

    /// Whether cross-node requests can be served now.
    pub fn is_up(&self) -> bool {
        self.redis_ok.load(Ordering::SeqCst)
            && self.subscribed.load(Ordering::SeqCst)
            && !self.isolated.load(Ordering::SeqCst)
    }

    /// Leaves the cluster: the tasks stop, the lease is given up and this node's clients
    /// are forgotten at once (other nodes then see it gone at their next watch).
    pub async fn leave(&self) {
        // Let what the closing connections said to other nodes go out first (bounded).
        let flushed = async {
            while self.queue.capacity() < self.queue.max_capacity() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        let _ = tokio::time::timeout(Duration::from_millis(500), flushed).await;
        self.stop.cancel();
        self.tasks.close();
        if tokio::time::timeout(Duration::from_secs(2), self.dir.leave(self.node))
            .await
            .is_err()
        {
            warn!("could not leave the cluster cleanly; the lease will lapse instead");
        }
        self.links.close();
        let _ = tokio::time::timeout(Duration::from_secs(2), self.tasks.wait()).await;
    }

    /// Stops the tasks without waiting (a dropped server); the lease lapses by itself.
    pub fn abort(&self) {
        self.stop.cancel();
        self.links.close();
    }

    fn relay(&self) -> Option<RelayHandle> {
        self.relay.upgrade()
    }

    /// Notes that `node` exists (a lookup named it, or a message came from it), so that
    /// its end is noticed even if it ends before the next watch.
    fn saw(&self, node: NodeId) {
        if node != self.node && !self.known.contains_key(&node) {
            self.known.entry(node).or_insert(Known {
                token: None,
                since: Instant::now(),
            });
        }
    }

    /// Takes every other node for gone: this node lost its lease, so they took it for gone.
    fn isolate(&self, why: &str) {
        if self.isolated.swap(true, Ordering::SeqCst) {
            return;
        }
        warn!(
            node = self.node.0,
            "cut off from the cluster ({why}): cross-node pairs end"
        );
        let known: Vec<NodeId> = self.known.iter().map(|e| *e.key()).collect();
        self.known.clear();
        if let Some(relay) = self.relay() {
            for node in known {
                self.links.forget(node);
                relay.node_gone(node);
            }
        }
    }

    /// Claims this node's clients again (after its lease lapsed, or Redis restarted
    /// empty); a client whose id another connection took meanwhile is closed, as replaced.
    async fn rejoin(&self) -> Result<(), DirectoryError> {
        let Some(relay) = self.relay() else {
            return Ok(());
        };
        for (client, addr) in relay.local_clients() {
            if self.provisional.get(&client).is_some_and(|a| *a == addr) {
                // Admitted while Redis was unreachable: claimed by `reconcile`, as newer.
                continue;
            }
            if !self.dir.restore(&client, addr).await? {
                relay.close(addr.conn, CloseReason::Replaced(client));
            }
        }
        if self.isolated.swap(false, Ordering::SeqCst) {
            info!(node = self.node.0, "back in the cluster");
        }
        Ok(())
    }

    /// A claim made while Redis cannot be asked. Under `replace` it is admitted: the
    /// policy is applied to this node's clients (the only ones it can see), and the claim
    /// is provisional: written to Redis when Redis is back ([`Cluster::reconcile`]), where
    /// it replaces a connection another node holds with that id, as any newer connection
    /// does. Under `reject` it is refused: whether another node holds the id cannot be
    /// known, and admitting it would break the promise that an id connected is refused
    /// (see docs/CLUSTER.md, "Redis unreachable").
    fn claim_locally(
        &self,
        client: ClientId,
        addr: Addr,
        policy: DuplicatePolicy,
        max_clients: usize,
    ) -> Result<relay_core::Claimed, ConnectError> {
        let Some(relay) = self.relay() else {
            return Err(ConnectError::ShuttingDown);
        };
        let claimed = match (relay.conn_of(client.as_str()), policy) {
            (Some(_), DuplicatePolicy::Reject) => return Err(ConnectError::Duplicate(client)),
            (None, DuplicatePolicy::Reject) => {
                return Err(ConnectError::ClusterUnavailable(
                    "this node cannot reach its Redis now, and under --duplicate-policy \
                     reject it cannot tell whether another node holds this clientId"
                        .into(),
                ))
            }
            (Some(old), DuplicatePolicy::Replace) => {
                relay_core::Claimed::Replaced(Addr::new(self.node, old))
            }
            (None, DuplicatePolicy::Replace) => {
                let connected = relay.len();
                if connected >= max_clients {
                    return Err(ConnectError::TooManyClients(connected));
                }
                relay_core::Claimed::Fresh
            }
        };
        debug!(%client, "admitted while Redis is unreachable: claimed in Redis once it is back");
        self.provisional.insert(client, addr);
        Ok(claimed)
    }

    /// Writes the claims made while Redis was unreachable into Redis, as claims under the
    /// `replace` policy (the only one that admits them): a connection another node holds
    /// with the same id is older than this claim reaching Redis, so it is closed as
    /// replaced, as it would have been with Redis in view. One connection per id again.
    /// A claim Redis refuses now (this node is still rejoining) stays for the next renewal,
    /// and so do all of them until the bus listens again (the close must be able to go).
    async fn reconcile(&self) {
        let Some(relay) = self.relay() else {
            return;
        };
        if !self.is_up() {
            return;
        }
        let pending: Vec<(ClientId, Addr)> = self
            .provisional
            .iter()
            .map(|e| (e.key().clone(), *e.value()))
            .collect();
        for (client, addr) in pending {
            // Still connected with this address (it may have closed, or been replaced).
            if relay.conn_of(client.as_str()) == Some(addr.conn) {
                let claimed = self
                    .dir
                    .claim(&client, addr, DuplicatePolicy::Replace, usize::MAX)
                    .await;
                match claimed {
                    Ok(relay_core::Claimed::Replaced(old)) if old.node != self.node => {
                        info!(%client, node = old.node.0, "admitted during the Redis outage: \
                              its older connection on another node is closed as replaced");
                        self.saw(old.node);
                        let reason = CloseReason::Replaced(client.clone());
                        let close = relay_core::Transmit {
                            from: addr,
                            to: old,
                            msg: relay_core::PeerMsg::Close { reason },
                        };
                        // Lost, it is gone from the directory anyway and closes when its
                        // node hears of it (as for any replacement across nodes).
                        let _ = ClusterLink::send(self, close);
                    }
                    Ok(_) => debug!(%client, "admitted during the Redis outage: now claimed"),
                    Err(e) => {
                        debug!(%client, "claim after the Redis outage failed ({e}); retried");
                        continue;
                    }
                }
            }
            self.provisional.remove_if(&client, |_, a| *a == addr);
        }
    }

    fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        if !self.stop.is_cancelled() {
            self.tasks.spawn(task);
        }
    }

    async fn answer(&self, conn: ConnId, query: Query) -> Answered {
        if !self.is_up() {
            // Redis cannot be asked: a client of this node can still be found here.
            if let (Query::Lookup { q, client }, Some(relay)) = (&query, self.relay()) {
                if let Some(local) = relay.conn_of(client.as_str()) {
                    if local != conn {
                        return Answered::Lookup(*q, Some(Addr::new(self.node, local)));
                    }
                }
            }
            if let (Query::List { req, after, limit }, Some(relay)) = (&query, self.relay()) {
                return Answered::ListPartial(*req, local_page(relay, after.as_deref(), *limit));
            }
            return query.failed(RequestError::ClusterUnavailable);
        }
        let answered = match &query {
            Query::Lookup { q, client } => self.dir.lookup(client).await.map(|found| {
                if let Some(addr) = found {
                    self.saw(addr.node);
                }
                Answered::Lookup(*q, found)
            }),
            Query::List { req, after, limit } => self
                .dir
                .list(after.as_deref(), *limit)
                .await
                .map(|page| Answered::List(*req, page)),
        };
        answered.unwrap_or_else(|e| {
            debug!("directory query failed: {e}");
            query.failed(RequestError::ClusterUnavailable)
        })
    }
}

impl ClusterLink for Cluster {
    fn node(&self) -> NodeId {
        self.node
    }

    fn first_conn(&self) -> u64 {
        // From this instance's token: below 2^31, so 2^31 connections fit before the
        // 32 bits of a connection that stream ids carry wrap.
        let token = self.value.split('|').next().unwrap_or_default();
        u64::from_str_radix(token, 16).unwrap_or(0) & 0x7FFF_FFFF
    }

    fn claim(
        &self,
        client: &ClientId,
        addr: Addr,
        policy: DuplicatePolicy,
        max_clients: usize,
    ) -> ClaimFuture<'_> {
        let client = client.clone();
        Box::pin(async move {
            if !self.is_up() {
                return self.claim_locally(client, addr, policy, max_clients);
            }
            let claimed = self.dir.claim(&client, addr, policy, max_clients).await?;
            if let relay_core::Claimed::Replaced(old) = claimed {
                self.saw(old.node);
            }
            Ok(claimed)
        })
    }

    fn release(&self, client: &ClientId, addr: Addr) {
        // Closed before Redis was back: nothing left to claim for it.
        self.provisional.remove_if(client, |_, a| *a == addr);
        // In line with the messages the closing connection sends, so its peers find the
        // id gone once they are told. A release that cannot be queued is made aside.
        let out = bus::Out::Release(client.clone(), addr);
        if let Err(mpsc::error::TrySendError::Full(_)) = self.queue.try_send(out) {
            let (dir, client) = (self.dir.clone(), client.clone());
            self.spawn(async move {
                if let Err(e) = dir.release(&client, addr).await {
                    debug!(%client, "release failed ({e}); the entry goes when this node rejoins");
                }
            });
        }
    }

    fn query(&self, conn: ConnId, query: Query) {
        let Some(me) = self.me.upgrade() else { return };
        self.spawn(async move {
            let answered = me.answer(conn, query).await;
            if let Some(relay) = me.relay() {
                relay.answer_query(conn, answered);
            }
        });
    }

    fn send(&self, transmit: Transmit) -> Result<(), Transmit> {
        if !self.is_up() {
            return Err(transmit);
        }
        self.saw(transmit.to.node);
        match self.queue.try_send(bus::Out::Msg(transmit)) {
            Ok(()) => Ok(()),
            Err(e) => match e.into_inner() {
                bus::Out::Msg(t) => Err(t),
                bus::Out::Release(..) => Ok(()),
            },
        }
    }
}

/// Another node as this one knows it.
struct Known {
    /// Its lease token, once a watch saw it (None: only heard of, through a lookup or a
    /// message).
    token: Option<String>,
    since: Instant,
}

/// Renews the lease every third of it; rejoins when it had lapsed; takes the other nodes
/// for gone when Redis stayed out of reach for a whole lease.
async fn keep_lease(cluster: Weak<Cluster>, stop: CancellationToken) {
    let Some(c) = cluster.upgrade() else { return };
    let (every, lease, node, value, dir) =
        (c.lease / 3, c.lease, c.node, c.value.clone(), c.dir.clone());
    drop(c);
    let mut last_ok = Instant::now();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let renewed = dir.renew(node, &value, lease).await;
        let Some(c) = cluster.upgrade() else { return };
        match renewed {
            Ok(true) => {
                last_ok = Instant::now();
                c.redis_ok.store(true, Ordering::SeqCst);
                if c.isolated.load(Ordering::SeqCst) {
                    if let Err(e) = c.rejoin().await {
                        debug!("rejoin failed: {e}");
                    }
                }
                if !c.provisional.is_empty() {
                    c.reconcile().await;
                }
            }
            Ok(false) => {
                last_ok = Instant::now();
                c.redis_ok.store(true, Ordering::SeqCst);
                c.isolate("its lease had lapsed");
                if let Err(e) = c.rejoin().await {
                    debug!("rejoin failed: {e}");
                }
                if !c.provisional.is_empty() {
                    c.reconcile().await;
                }
            }
            Err(e) => {
                if c.redis_ok.swap(false, Ordering::SeqCst) {
                    warn!(node = node.0, "cannot reach the cluster's Redis: {e}");
                }
                if last_ok.elapsed() >= lease {
                    c.isolate("Redis unreachable for a whole lease");
                }
            }
        }
    }
}

/// Watches the other nodes' leases: a node whose lease lapsed (or that restarted) is gone,
/// and everything involving its connections ends here.
async fn watch_nodes(cluster: Weak<Cluster>, stop: CancellationToken) {
    let Some(c) = cluster.upgrade() else { return };
    let every = (c.lease / 10).clamp(Duration::from_millis(100), Duration::from_millis(500));
    let dir = c.dir.clone();
    drop(c);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let started = Instant::now();
        let live = dir.watch().await;
        let Some(c) = cluster.upgrade() else { return };
        let Ok(live) = live else { continue };
        if c.isolated.load(Ordering::SeqCst) {
            continue;
        }
        let live: HashMap<NodeId, NodeInfo> =
            live.into_iter().filter(|(n, _)| *n != c.node).collect();
        let gone: Vec<NodeId> = c
            .known
            .iter()
            .filter(|e| match (live.get(e.key()), &e.value().token) {
                // Heard of after this watch asked: the answer may predate it.
                (None, None) => e.value().since < started,
                (None, Some(_)) => true,
                (Some(info), Some(token)) => &info.token != token,
                (Some(_), None) => false,
            })
            .map(|e| *e.key())
            .collect();
        for n in &gone {
            c.known.remove(n);
        }
        for (n, info) in &live {
            c.known.insert(
                *n,
                Known {
                    token: Some(info.token.clone()),
                    since: started,
                },
            );
            c.links.set_address(*n, info.advertise);
        }
        if gone.is_empty() {
            continue;
        }
        let Some(relay) = c.relay() else { return };
        for node in gone {
            info!(node = node.0, "node gone from the cluster");
            c.links.forget(node);
            relay.node_gone(node);
        }
    }
}

/// A page of this node's clients, for a list asked while Redis cannot be.
fn local_page(relay: RelayHandle, after: Option<&str>, limit: Option<usize>) -> ClientPage {
    let ids = relay
        .client_ids()
        .into_iter()
        .filter(|id| after.is_none_or(|after| id.as_str() > after));
    match limit {
        None => ClientPage {
            ids: ids.collect(),
            next: None,
        },
        Some(limit) => {
            let limit = limit.clamp(1, relay_core::directory::MAX_LIST_PAGE);
            let mut ids: Vec<ClientId> = ids.take(limit + 1).collect();
            let more = ids.len() > limit;
            ids.truncate(limit);
            let next = if more { ids.last().cloned() } else { None };
            ClientPage { ids, next }
        }
    }
}

/// The node links of a node about to join: made before the QUIC endpoint is bound, which
/// then accepts them too.
pub fn node_links(
    settings: &ClusterSettings,
    quic_listen: SocketAddr,
) -> Result<Arc<NodeLinks>, ClusterError> {
    let secret = read_secret(settings.cluster_secret_file.as_ref())?;
    let family = settings.advertise_addr.unwrap_or(quic_listen);
    NodeLinks::new(secret, family)
        .map(Arc::new)
        .map_err(|e| ClusterError::NodeLink(e.to_string()))
}

fn read_secret(path: Option<&PathBuf>) -> Result<Vec<u8>, ClusterError> {
    let path = path.ok_or(ClusterError::NoSecret)?;
    let secret = std::fs::read(path).map_err(|source| ClusterError::Secret {
        path: path.clone(),
        source,
    })?;
    let trimmed = secret.trim_ascii().to_vec();
    if trimmed.is_empty() {
        return Err(ClusterError::EmptySecret(path.clone()));
    }
    crate::settings::check_secret_file("cluster secret", path, &trimmed)?;
    Ok(trimmed)
}

/// A token telling this process from any other that held the same node id.
fn instance_token() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.write_u32(std::process::id());
    format!("{:016x}", h.finish())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::Settings;

    #[test]
    fn cluster_flags_and_their_environment_variables() {
        let s = Settings::try_parse_from(["p2p-relay"]).unwrap();
        assert_eq!(s.cluster.redis_url, None, "off by default");
        assert_eq!(s.cluster.cluster_lease_ms, 5_000);
        let s = Settings::try_parse_from([
            "p2p-relay",
            "--cluster",
            "redis://127.0.0.1:6379",
            "--cluster-lease-ms",
            "1500",
            "--cluster-secret-file",
            "/tmp/secret",
            "--advertise-addr",
            "10.0.0.5:9001",
            "--cluster-name",
            "blue",
        ])
        .unwrap();
        assert_eq!(
            s.cluster.redis_url.as_deref(),
            Some("redis://127.0.0.1:6379")
        );
        assert_eq!(s.cluster.lease(), std::time::Duration::from_millis(1500));
        assert_eq!(
            s.cluster.advertise_addr,
            Some("10.0.0.5:9001".parse().unwrap())
        );
        assert_eq!(s.cluster.cluster_name, "blue");
        let args = <Settings as clap::CommandFactory>::command();
        let envs: Vec<String> = args
            .get_arguments()
            .filter_map(|a| a.get_env().map(|e| e.to_string_lossy().into_owned()))
            .collect();
        for env in [
            "P2P_RELAY_CLUSTER",
            "P2P_RELAY_CLUSTER_LEASE_MS",
            "P2P_RELAY_CLUSTER_SECRET_FILE",
            "P2P_RELAY_ADVERTISE_ADDR",
            "P2P_RELAY_CLUSTER_NAME",
        ] {
            assert!(envs.iter().any(|e| e == env), "{env}");
        }
    }
}
