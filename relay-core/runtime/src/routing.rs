//! Carrying the connections' messages: a client's command, a message from another node,
//! the shared directory's answers, a node's loss. The rules are relay-core's
//! ([`relay_core::switchboard`], the same the deterministic driver and its model tests
//! run); this file says only how this driver holds connections: each under its own lock,
//! with an inbox other connections post to, run after the sender's lock is released.

use std::sync::Arc;
use std::time::Instant;

use relay_core::switchboard::{self, Host, Switchboard, Undelivered, Unlinked};
use relay_core::{
    Addr, Answered, ClientId, Command, ConnId, Connection, Event, NodeId, PeerMsg, Query,
    RequestError, Transmit, Transport,
};
use tracing::debug;

use crate::cell::Cell;
use crate::handle::Node;
use crate::metrics::{Direction, Shape, Undelivered as Dropped};
use crate::sink::Refused;
use crate::RelayHandle;

/// Connections that were sent a message and must handle their inbox. Usually one (the
/// peer), so it lives inline.
pub(crate) type Work = smallvec::SmallVec<[Arc<Cell>; 4]>;

impl RelayHandle {
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

    /// A message from a connection on another node, for a connection here.
    pub fn from_link(&self, transmit: Transmit) {
        let mut work = Work::new();
        let closing = switchboard::from_link(&mut Routes::new(&self.node, &mut work), transmit);
        if let Some((conn, reason)) = closing {
            self.node.remove(conn, Some(reason));
        }
        self.node.run_inboxes(Instant::now(), work);
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
            let involved = switchboard::involves(&cell.lock(), node);
            if involved {
                self.node
                    .run(&cell, |c, now| switchboard::node_gone(now, c, node));
            }
        }
    }
}

impl Node {
    /// Runs `f` on a connection, then everything it caused, each connection under its own
    /// lock and never two at once.
    pub fn run(&self, cell: &Arc<Cell>, f: impl FnOnce(&mut Connection, Instant)) {
        let now = Instant::now();
        let mut work = Work::new();
        {
            let mut state = cell.lock();
            let before = state.poll_timeout();
            let shape = Shape::of(&state);
            f(&mut state, now);
            let (transport, conn) = (state.transport(), state.addr().conn);
            let mut host = Outputs::new(self, cell, transport, conn, now, &mut work);
            switchboard::flush(&mut host, now, &mut state);
            self.metrics.reshaped(shape, Shape::of(&state));
            if state.poll_timeout() != before {
                cell.rearm.notify_one();
            }
        }
        self.run_inboxes(now, work);
    }

    /// Lets every connection that was sent a message handle its inbox.
    pub fn run_inboxes(&self, now: Instant, mut work: Work) {
        while let Some(cell) = work.pop() {
            let mut state = cell.lock();
            let before = state.poll_timeout();
            let shape = Shape::of(&state);
            let (transport, conn) = (state.transport(), state.addr().conn);
            let mut host = Outputs::new(self, &cell, transport, conn, now, &mut work);
            while let Some((from, msg)) = cell.next_message() {
                state.handle_peer(now, from, msg);
                switchboard::flush(&mut host, now, &mut state);
            }
            self.metrics.reshaped(shape, Shape::of(&state));
            if state.poll_timeout() != before {
                cell.rearm.notify_one();
            }
        }
    }
}

/// This node's switchboard: the inboxes of its cells, and the cluster link. A post names
/// the cell in `work`, to run its inbox once the sender's lock is released.
pub(crate) struct Routes<'a> {
    node: &'a Node,
    work: &'a mut Work,
}

impl<'a> Routes<'a> {
    pub fn new(node: &'a Node, work: &'a mut Work) -> Self {
        Self { node, work }
    }
}

impl Switchboard for Routes<'_> {
    fn node(&self) -> NodeId {
        self.node.id()
    }

    fn post(&mut self, from: Addr, to: ConnId, msg: PeerMsg) -> Result<(), PeerMsg> {
        let posted = match self.node.cell(to) {
            Some(target) => match target.post(from, msg) {
                Ok(()) => {
                    if !self.work.iter().any(|c| Arc::ptr_eq(c, &target)) {
                        self.work.push(target);
                    }
                    Ok(())
                }
                Err(msg) => Err(msg),
            },
            None => Err(msg),
        };
        if let Err(msg) = &posted {
            self.node.metrics.bounced(msg);
        }
        posted
    }

    fn send_link(&mut self, transmit: Transmit) -> Result<(), Unlinked> {
        match self.node.cluster.get() {
            Some(link) => link.send(transmit).map_err(|t| Unlinked::Down(Box::new(t))),
            None => Err(Unlinked::Alone(Box::new(transmit))),
        }
    }
}

/// One connection's host while its outputs are carried, under its lock: its events go to
/// its sink (under the lock, so they keep their order), counted.
pub(crate) struct Outputs<'a> {
    routes: Routes<'a>,
    cell: &'a Cell,
    transport: Transport,
    conn: ConnId,
    /// When this run started: the time its replies are stamped with.
    now: Instant,
}

impl<'a> Outputs<'a> {
    pub fn new(
        node: &'a Node,
        cell: &'a Cell,
        transport: Transport,
        conn: ConnId,
        now: Instant,
        work: &'a mut Work,
    ) -> Self {
        Self {
            routes: Routes::new(node, work),
            cell,
            transport,
            conn,
            now,
        }
    }
}

impl Switchboard for Outputs<'_> {
    fn node(&self) -> NodeId {
        self.routes.node()
    }

    fn post(&mut self, from: Addr, to: ConnId, msg: PeerMsg) -> Result<(), PeerMsg> {
        self.routes.post(from, to, msg)
    }

    fn send_link(&mut self, transmit: Transmit) -> Result<(), Unlinked> {
        self.routes.send_link(transmit)
    }
}

impl Host for Outputs<'_> {
    fn query(&mut self, query: Query) -> Option<Answered> {
        let node = self.routes.node;
        match node.cluster.get() {
            // Answered later, through RelayHandle::answer_query.
            Some(link) => {
                link.query(self.conn, query);
                None
            }
            None => Some(node.directory().answer(&query)),
        }
    }

    fn deliver(&mut self, event: Event) -> Result<(), Undelivered> {
        let metrics = &self.routes.node.metrics;
        metrics.event(self.transport, &event);
        if let Event::Deliver { args, .. } = &event {
            let size = args.size() as u64;
            metrics.bytes(self.transport, Direction::Out, size);
            self.cell.traffic.add(Direction::Out, 1, size);
        }
        if let Event::Reply { req, reply } = &event {
            self.cell.acks().replied(metrics, *req, reply, self.now);
        }
        match self.cell.sink.send(event) {
            Err(Refused {
                event: Event::Deliver { event, ticket, .. },
                limit,
            }) => {
                metrics.undelivered(Dropped::QueueFull);
                Err(Undelivered {
                    event,
                    ticket,
                    limit,
                })
            }
            // A sink refuses deliveries only (see Sink::send).
            _ => Ok(()),
        }
    }

    fn release(&mut self, client: &ClientId, addr: Addr) {
        let node = self.routes.node;
        node.directory().release(client, addr);
        if let Some(link) = node.cluster.get() {
            link.release(client, addr);
        }
    }
}

#[cfg(test)]
mod tests;
