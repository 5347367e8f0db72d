//! Which client is connected where: the only state the connections of a deployment share.
//!
//! The rules reach it through [`Query`] outputs and answers fed back in, never by calling
//! it, so the same rules run over this in-memory directory (one process) or over a shared
//! engine (a cluster), where a lookup is a network round trip. Claims are the one operation
//! a driver performs before a connection exists, with the duplicate-id policy applied
//! atomically by the directory itself.

use std::collections::BTreeMap;
use std::ops::Bound;

use crate::addr::Addr;
use crate::client_id::ClientId;
use crate::config::DuplicatePolicy;
use crate::error::{ConnectError, RequestError};
use crate::event::ReqId;
use crate::link::QuestionId;

/// Client ids a list page holds when the client asks for no size.
pub const DEFAULT_LIST_PAGE: usize = 1000;
/// Most client ids one page may hold: a bound of the native protocol (the page must fit a
/// control frame), so declared in the wire crate.
pub use p2p_relay_wire::list::MAX_LIST_PAGE;

/// A question a connection puts to the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    /// Where is `client`? Answer with `Connection::handle_lookup`.
    Lookup { q: QuestionId, client: ClientId },
    /// A page of connected ids (sorted), after `after`, at most `limit` of them (`None`:
    /// all of them, for the legacy `LIST_CLIENTS`). Answer with `Connection::handle_list`.
    List {
        req: ReqId,
        after: Option<String>,
        limit: Option<usize>,
    },
}

/// One page of a client list.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientPage {
    pub ids: Vec<ClientId>,
    /// Where the next page starts (`after` for the next query); None on the last page.
    pub next: Option<ClientId>,
}

/// What a claim did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claimed {
    /// The id was free.
    Fresh,
    /// The id was taken by the given connection, which must now be closed.
    Replaced(Addr),
}

/// The in-memory directory: a sorted map, so pages come out in order without sorting.
#[derive(Debug, Default)]
pub struct LocalDirectory {
    by_client: BTreeMap<ClientId, Addr>,
}

impl LocalDirectory {
    pub fn lookup(&self, client: &str) -> Option<Addr> {
        self.by_client.get(client).copied()
    }

    /// Names `addr` as the connection of `client`, under `policy`, while fewer than
    /// `max_clients` are connected.
    pub fn claim(
        &mut self,
        client: &ClientId,
        addr: Addr,
        policy: DuplicatePolicy,
        max_clients: usize,
    ) -> Result<Claimed, ConnectError> {
        match (self.by_client.get(client).copied(), policy) {
            (Some(_), DuplicatePolicy::Reject) => Err(ConnectError::Duplicate(client.clone())),
            (None, _) if self.by_client.len() >= max_clients => {
                Err(ConnectError::TooManyClients(self.by_client.len()))
            }
            (Some(old), DuplicatePolicy::Replace) => {
                self.by_client.insert(client.clone(), addr);
                Ok(Claimed::Replaced(old))
            }
            (None, _) => {
                self.by_client.insert(client.clone(), addr);
                Ok(Claimed::Fresh)
            }
        }
    }

    /// Forgets `client` only while it still names `addr`: a connection that was replaced
    /// must not take its successor's entry with it when it closes.
    pub fn release(&mut self, client: &ClientId, addr: Addr) {
        if self.by_client.get(client) == Some(&addr) {
            self.by_client.remove(client);
        }
    }

    /// Forgets every client of `node` (its lease lapsed), returning them.
    pub fn release_node(&mut self, node: crate::addr::NodeId) -> Vec<(ClientId, Addr)> {
        let gone: Vec<(ClientId, Addr)> = self
            .by_client
            .iter()
            .filter(|(_, a)| a.node == node)
            .map(|(c, a)| (c.clone(), *a))
            .collect();
        for (client, _) in &gone {
            self.by_client.remove(client);
        }
        gone
    }

    /// A page of ids after `after` (exclusive). Costs the page, not the whole directory.
    pub fn list(&self, after: Option<&str>, limit: Option<usize>) -> ClientPage {
        let start = match after {
            Some(after) => Bound::Excluded(after),
            None => Bound::Unbounded,
        };
        let range = self
            .by_client
            .range::<str, _>((start, Bound::Unbounded))
            .map(|(id, _)| id);
        match limit {
            None => ClientPage {
                ids: range.cloned().collect(),
                next: None,
            },
            Some(limit) => {
                let limit = limit.clamp(1, MAX_LIST_PAGE);
                let mut ids: Vec<ClientId> = Vec::with_capacity(limit.min(self.len()));
                let mut more = false;
                for id in range {
                    if ids.len() == limit {
                        more = true;
                        break;
                    }
                    ids.push(id.clone());
                }
                let next = if more { ids.last().cloned() } else { None };
                ClientPage { ids, next }
            }
        }
    }

    pub fn len(&self) -> usize {
        self.by_client.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_client.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&ClientId, &Addr)> {
        self.by_client.iter()
    }

    /// Answers a query from a connection (the in-memory directory answers at once).
    pub fn answer(&self, query: &Query) -> Answered {
        match query {
            Query::Lookup { q, client } => Answered::Lookup(*q, self.lookup(client.as_str())),
            Query::List { req, after, limit } => {
                Answered::List(*req, self.list(after.as_deref(), *limit))
            }
        }
    }
}

/// A directory's answer to a [`Query`], to hand back to the connection that asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answered {
    Lookup(QuestionId, Option<Addr>),
    List(ReqId, ClientPage),
    /// A shared directory could not answer (cluster mode, Redis unreachable): the request
    /// fails at once with this error instead of waiting for its deadline.
    LookupFailed(QuestionId, RequestError),
    ListFailed(ReqId, RequestError),
    /// A shared directory could not be asked (cluster mode, Redis unreachable), so `page`
    /// holds only this node's clients: a legacy client gets them with a `SERVER_ERROR`
    /// saying the list is partial (its callback expects an array); a native client, whose
    /// pages it takes for the whole cluster, gets the cluster-unavailable error instead.
    ListPartial(ReqId, ClientPage),
}

impl Query {
    /// The answer saying this query cannot be answered now.
    pub fn failed(&self, error: RequestError) -> Answered {
        match self {
            Query::Lookup { q, .. } => Answered::LookupFailed(*q, error),
            Query::List { req, .. } => Answered::ListFailed(*req, error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::NodeId;
    use crate::event::ConnId;

    fn addr(n: u64) -> Addr {
        Addr::new(NodeId(0), ConnId(n))
    }

    fn id(raw: &str) -> ClientId {
        ClientId::new(raw).unwrap()
    }

    #[test]
    fn pages_cover_every_id_once_in_order() {
        let mut dir = LocalDirectory::default();
        for n in 0..2500u64 {
            let client = id(&format!("c{n:05}"));
            dir.claim(&client, addr(n), DuplicatePolicy::Replace, usize::MAX)
                .unwrap();
        }
        let mut seen = Vec::new();
        let mut after: Option<ClientId> = None;
        for _ in 0..10 {
            let page = dir.list(after.as_ref().map(|a| a.as_str()), Some(1000));
            assert!(page.ids.len() <= 1000);
            seen.extend(page.ids);
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        let all = dir.list(None, None).ids;
        assert_eq!(all.len(), 2500);
        assert_eq!(seen, all);
        assert!(all.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn claims_apply_the_policy_and_releases_spare_successors() {
        let mut dir = LocalDirectory::default();
        let a = id("A");
        assert_eq!(
            dir.claim(&a, addr(1), DuplicatePolicy::Replace, 10),
            Ok(Claimed::Fresh)
        );
        assert_eq!(
            dir.claim(&a, addr(2), DuplicatePolicy::Reject, 10),
            Err(ConnectError::Duplicate(a.clone()))
        );
        assert_eq!(
            dir.claim(&a, addr(2), DuplicatePolicy::Replace, 10),
            Ok(Claimed::Replaced(addr(1)))
        );
        dir.release(&a, addr(1));
        assert_eq!(dir.lookup("A"), Some(addr(2)));
        dir.release(&a, addr(2));
        assert_eq!(dir.lookup("A"), None);
        dir.claim(&id("x"), addr(3), DuplicatePolicy::Replace, 1)
            .unwrap();
        assert_eq!(
            dir.claim(&id("y"), addr(4), DuplicatePolicy::Replace, 1),
            Err(ConnectError::TooManyClients(1))
        );
    }
}
