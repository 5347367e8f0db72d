//! The connections' lifecycle: starting an admitted connection (its directory claim and
//! its timer), and forgetting one (a disconnect, a close, a replacement, shutdown).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Instant, SystemTime};

use relay_core::switchboard;
use relay_core::{
    Addr, Claimed, ClientId, CloseReason, ConnId, ConnectError, Connection, DuplicatePolicy,
    Transport,
};
use tracing::debug;

use crate::admission::Admitted;
use crate::cell::Cell;
use crate::handle::Node;
use crate::metrics::Shape;
use crate::routing::{Outputs, Routes, Work};
use crate::sink::Sink;
use crate::RelayHandle;

impl RelayHandle {
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
        let mut work = Work::new();
        let displaced =
            switchboard::displace(&mut Routes::new(node, &mut work), &claimed, addr, &client);
        if let Some((old, reason)) = displaced {
            node.remove(old, Some(reason));
        }
        node.run_inboxes(Instant::now(), work);
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

    /// Refuses connections from now on ([`ConnectError::ShuttingDown`]) and leaves the
    /// connected ones be: the start of a drain, before [`RelayHandle::close_all`].
    pub fn refuse_newcomers(&self) {
        self.node.closed.store(true, Ordering::SeqCst);
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
}

impl Node {
    /// Forgets a connection: closes it with `reason` (telling its client) or as a plain
    /// disconnect, answers what was still queued for it, and releases its directory entry
    /// (the rules: [`switchboard::retire`]).
    pub fn remove(&self, conn: ConnId, reason: Option<CloseReason>) {
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
            let transport = state.transport();
            let mut host = Outputs::new(self, &cell, transport, conn, now, &mut work);
            switchboard::retire(&mut host, now, &mut state, undelivered, reason);
            self.metrics.reshaped(shape, Shape::GONE);
            self.metrics.disconnected(transport);
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
