//! The seam between this node's connections and the rest of a cluster.
//!
//! The runtime knows nothing of Redis or of node links: in cluster mode the server hands
//! it a [`ClusterLink`] ([`RelayHandle::join_cluster`](crate::RelayHandle::join_cluster)),
//! which claims clientIds in the shared directory, answers the connections' queries, and
//! carries messages to connections on other nodes. What comes back (answers, messages from
//! other nodes, a node that is gone) is fed in through the handle's cluster methods, so the
//! rules stay those of `relay_core::Connection`, whichever node the other end is on.

use std::future::Future;
use std::pin::Pin;

use relay_core::{
    Addr, Claimed, ClientId, ConnId, ConnectError, DuplicatePolicy, NodeId, Query, Transmit,
};

/// A claim's answer, boxed.
pub type ClaimFuture<'a> = Pin<Box<dyn Future<Output = Result<Claimed, ConnectError>> + Send + 'a>>;

/// What a node of a cluster needs from the cluster. Every method but `claim` is called
/// with a connection's lock held, so it must not block: it queues and returns.
pub trait ClusterLink: Send + Sync + 'static {
    /// This node's id in the cluster (never 0, which is the single-process relay).
    fn node(&self) -> NodeId;

    /// The number of this node's first connection. A node that restarts may get the id
    /// of one that is gone; starting its connections elsewhere keeps a message still in
    /// flight to an old connection from reaching a new one of the same number.
    fn first_conn(&self) -> u64 {
        0
    }

    /// Names `addr` as the connection of `client` in the shared directory, under `policy`,
    /// while fewer than `max_clients` are connected cluster-wide; atomically, so that two
    /// nodes can never both own one clientId.
    fn claim(
        &self,
        client: &ClientId,
        addr: Addr,
        policy: DuplicatePolicy,
        max_clients: usize,
    ) -> ClaimFuture<'_>;

    /// Forgets `client` while it still names `addr`.
    fn release(&self, client: &ClientId, addr: Addr);

    /// A connection's directory query; the answer comes back through
    /// [`RelayHandle::answer_query`](crate::RelayHandle::answer_query), exactly once.
    fn query(&self, conn: ConnId, query: Query);

    /// A message for a connection on another node. Given back when it cannot be carried
    /// now (the sender is then told on the receiver's behalf); once taken, a message that
    /// turns out undeliverable comes back through
    /// [`RelayHandle::undeliverable`](crate::RelayHandle::undeliverable).
    // The message comes back whole so its sender can be answered on the receiver's
    // behalf; it is moved, not copied, and only on the failure path.
    #[allow(clippy::result_large_err)]
    fn send(&self, transmit: Transmit) -> Result<(), Transmit>;
}
