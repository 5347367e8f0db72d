//! The handle every front end and embedding application holds.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Instant;

use dashmap::DashMap;
use relay_core::{
    check_claim, Addr, AllowAll, Authenticator, Claimed, ClientId, CloseReason, Command, ConnId,
    ConnectError, Config, Connection, Event, LocalDirectory, NodeId, PeerMsg, Transport,
};
use tokio_util::task::TaskTracker;
use tracing::debug;

use crate::cell::Cell;
use crate::sink::{Refused, Sink};

/// A cheap-to-clone handle on the relay core. Must be created inside a tokio runtime
/// (every connection's timer is a task of it).
#[derive(Clone)]
pub struct RelayHandle {
    node: Arc<Node>,
}

struct Node {
    id: NodeId,
    config: Arc<Config>,
    auth: Box<dyn Authenticator>,
    /// The only state every connection shares: who is connected where.
    directory: Mutex<LocalDirectory>,
    /// Connections by id, sharded so that finding a peer's cell never waits on an
    /// unrelated pair.
    cells: DashMap<ConnId, Arc<Cell>>,
    next_conn: AtomicU64,
    /// Every timer task, so shutting down can wait for all of them.
    tasks: TaskTracker,
}

impl RelayHandle {
    pub fn new(config: Config) -> Self {
        Self::with_authenticator(config, AllowAll)
    }

    pub fn with_authenticator(config: Config, auth: impl Authenticator) -> Self {
        Self {
            node: Arc::new(Node {
                id: NodeId(0),
                config: Arc::new(config),
                auth: Box::new(auth),
                directory: Mutex::new(LocalDirectory::default()),
                cells: DashMap::new(),
                next_conn: AtomicU64::new(0),
                tasks: TaskTracker::new(),
            }),
        }
    }

    pub fn config(&self) -> &Config {
        &self.node.config
    }

    /// Admits a connection that claims `client_id`, whose events go to `sink`.
    pub fn connect(
        &self,
        client_id: Option<&str>,
        credentials: Option<&[u8]>,
        transport: Transport,
        sink: Arc<dyn Sink>,
    ) -> Result<ConnId, ConnectError> {
        let node = &self.node;
        let client = check_claim(node.auth.as_ref(), client_id, credentials)?;
        let addr = Addr::new(node.id, ConnId(node.next_conn.fetch_add(1, Ordering::Relaxed)));
        let claimed = node.directory().claim(
            &client,
            addr,
            node.config.duplicate_policy,
            node.config.max_clients,
        )?;
        if let Claimed::Replaced(old) = claimed {
            node.remove(old.conn, Some(CloseReason::Replaced(client.clone())));
        }
        debug!(%client, %addr, "connected");
        let connection = Connection::new(addr, client, transport, node.config.clone());
        let cell = Arc::new(Cell::new(connection, sink));
        node.cells.insert(addr.conn, cell.clone());
        let timer = node
            .tasks
            .spawn(drive_timer(Arc::downgrade(&self.node), cell.clone()));
        *cell.timer.lock().unwrap_or_else(|p| p.into_inner()) = Some(timer.abort_handle());
        Ok(addr.conn)
    }

    /// One request from a connection's client.
    pub fn command(&self, conn: ConnId, command: Command) {
        let Some(cell) = self.node.cell(conn) else {
            return debug!(?conn, "command from a forgotten connection ignored");
        };
        self.node.run(&cell, |c, now| c.handle(now, command));
    }

    /// The connection is gone: the core forgets it and tells whoever it was involved with.
    /// Calling it for a connection already forgotten (e.g. one it replaced) does nothing.
    pub fn disconnect(&self, conn: ConnId) {
        self.node.remove(conn, None);
    }

    /// Closes every connection, telling each client why (a relay shutting down), and waits
    /// for every task the core started to end.
    pub async fn close_all(&self, reason: CloseReason) {
        let conns: Vec<ConnId> = self.node.cells.iter().map(|e| *e.key()).collect();
        for conn in conns {
            self.node.remove(conn, Some(reason.clone()));
        }
        self.node.tasks.close();
        self.node.tasks.wait().await;
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

    /// The client a client is paired with.
    pub fn peer_of(&self, client: &str) -> Option<ClientId> {
        let cell = self.node.cell(self.conn_of(client)?)?;
        let state = cell.lock();
        state.peer().map(|(_, id)| id.clone())
    }

    /// Connected clients.
    pub fn len(&self) -> usize {
        self.node.cells.len()
    }

    pub fn is_empty(&self) -> bool {
        self.node.cells.is_empty()
    }
}

impl Node {
    fn directory(&self) -> MutexGuard<'_, LocalDirectory> {
        self.directory.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn cell(&self, conn: ConnId) -> Option<Arc<Cell>> {
        self.cells.get(&conn).map(|c| c.clone())
    }

    /// Runs `f` on a connection, then everything it caused, each connection under its own
    /// lock and never two at once.
    fn run(&self, cell: &Arc<Cell>, f: impl FnOnce(&mut Connection, Instant)) {
        let now = Instant::now();
        let mut work = Vec::new();
        {
            let mut state = cell.lock();
            let before = state.poll_timeout();
            f(&mut state, now);
            self.flush(now, cell, &mut state, &mut work);
            if state.poll_timeout() != before {
                cell.rearm.notify_one();
            }
        }
        self.run_inboxes(now, work);
    }

    /// Lets every connection that was sent a message handle its inbox.
    fn run_inboxes(&self, now: Instant, mut work: Vec<Arc<Cell>>) {
        while let Some(cell) = work.pop() {
            let mut state = cell.lock();
            let before = state.poll_timeout();
            loop {
                let messages = cell.take_inbox();
                if messages.is_empty() {
                    break;
                }
                for (from, msg) in messages {
                    state.handle_peer(now, from, msg);
                }
                self.flush(now, &cell, &mut state, &mut work);
            }
            if state.poll_timeout() != before {
                cell.rearm.notify_one();
            }
        }
    }

    /// Hands a connection's outputs on: queries to the directory, events to its sink (under
    /// its lock, so they keep their order), messages to their connections' inboxes.
    fn flush(&self, now: Instant, cell: &Cell, state: &mut Connection, work: &mut Vec<Arc<Cell>>) {
        loop {
            let mut progress = false;
            while let Some(query) = state.poll_query() {
                progress = true;
                let answered = self.directory().answer(&query);
                state.handle_directory(answered);
            }
            while let Some(event) = state.poll_event() {
                if let Err(Refused {
                    event: Event::Deliver { event, ticket, .. },
                    limit,
                }) = cell.sink.send(event)
                {
                    progress = true;
                    state.report_undelivered(&event, ticket, limit);
                }
            }
            while let Some(transmit) = state.poll_transmit() {
                progress = true;
                let to = transmit.to;
                // This node has no node links: a connection elsewhere is gone to it.
                let target = (to.node == self.id).then(|| self.cell(to.conn)).flatten();
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
        cell.stop_timer();
        let now = Instant::now();
        let mut work = Vec::new();
        {
            let mut state = cell.lock();
            let undelivered = cell.close_inbox();
            let addr = state.addr();
            for (from, msg) in undelivered {
                if msg != PeerMsg::Gone {
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
            self.flush(now, &cell, &mut state, &mut work);
        }
        self.run_inboxes(now, work);
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
                        node.run(&cell, |c, now| c.handle_timeout(now));
                    }
                    _ = &mut rearmed => {}
                }
            }
            None => rearmed.await,
        }
    }
}
