//! The handle every front end and embedding application holds, and the node it shares.
//!
//! What the handle does is split by concept: admitting a client (`admission.rs`), the
//! connections' lifecycle (`registry.rs`), carrying their messages (`routing.rs`), and the
//! server-side queries (`queries.rs`). This file holds what they share.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};

use dashmap::DashMap;
use relay_core::{
    Addr, AllowAll, Authenticator, ClientLimits, Config, ConnId, IpGate, LocalDirectory, NodeId,
};
use tokio_util::task::TaskTracker;

use crate::admission::{AsyncAuthenticator, Gate};
use crate::cell::Cell;
use crate::cluster::ClusterLink;
use crate::metrics::Metrics;
use crate::traffic::Streams;

/// A cheap-to-clone handle on the relay core. Must be created inside a tokio runtime
/// (every connection's timer is a task of it).
#[derive(Clone)]
pub struct RelayHandle {
    pub(crate) node: Arc<Node>,
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

pub(crate) struct Node {
    pub config: Arc<Config>,
    pub auth: Gate,
    /// Who is connected where, on this node. In cluster mode it mirrors this node's
    /// entries of the shared directory (which the cluster link keeps), for the
    /// server-side API; claims, lookups and lists then go to the cluster.
    pub directory: Mutex<LocalDirectory>,
    /// Set once, before any connection, when this node is part of a cluster.
    pub cluster: OnceLock<Arc<dyn ClusterLink>>,
    /// Connections per IP address; taken on connect and disconnect only.
    pub ips: Mutex<IpGate>,
    /// Connections by id, sharded so that finding a peer's cell never waits on an
    /// unrelated pair.
    pub cells: DashMap<ConnId, Arc<Cell>>,
    pub next_conn: AtomicU64,
    /// Every timer task, so shutting down can wait for all of them.
    pub tasks: TaskTracker,
    /// Set by [`RelayHandle::close_all`]: from then on newcomers are refused, so that no
    /// connection (nor its timer) appears after the relay was emptied.
    pub closed: AtomicBool,
    pub metrics: Arc<Metrics>,
    /// Streams whose bytes the front ends relay, for the control center.
    pub streams: Arc<Streams>,
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

    /// The limits a client of this relay is told of when it connects.
    pub fn client_limits(&self) -> ClientLimits {
        self.node.config.client_limits()
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
    pub fn id(&self) -> NodeId {
        self.cluster.get().map(|c| c.node()).unwrap_or(NodeId(0))
    }

    pub fn reserve(&self) -> Addr {
        Addr::new(
            self.id(),
            ConnId(self.next_conn.fetch_add(1, Ordering::Relaxed)),
        )
    }

    pub fn directory(&self) -> MutexGuard<'_, LocalDirectory> {
        self.directory.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn ips(&self) -> MutexGuard<'_, IpGate> {
        self.ips.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn cell(&self, conn: ConnId) -> Option<Arc<Cell>> {
        self.cells.get(&conn).map(|c| c.clone())
    }
}
