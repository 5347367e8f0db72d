//! Where a connection lives: which relay node, and which connection on it.
//!
//! The rules never hold a reference to another connection, only its address, so the other
//! end of a pair may be on this node, on another core's shard or on another relay node: to
//! the rules it is the same *remote connection*, reached by sending it a message.

use std::fmt;

use crate::event::ConnId;

/// One relay node of a deployment. A single-process relay is node 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct NodeId(pub u32);

/// A connection anywhere in the deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Addr {
    pub node: NodeId,
    pub conn: ConnId,
}

impl Addr {
    pub fn new(node: NodeId, conn: ConnId) -> Self {
        Self { node, conn }
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.node.0, self.conn.0)
    }
}
