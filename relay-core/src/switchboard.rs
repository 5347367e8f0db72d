//! How a node carries what its connections produce: the routing rules, in the one place
//! both drivers take them from: the deterministic [`Relay`](crate::Relay) that the model,
//! property and two-node tests run, and the tokio runtime (`relay-runtime`) that production
//! runs.
//!
//! A driver says how it holds connections by implementing [`Switchboard`] (an inbox per
//! connection of this node, and the node link) and, for one connection's outputs, [`Host`]
//! (its directory, its client, its directory entry). The rules are the functions here:
//! - a message for a connection of another node goes to the node link; when the link
//!   cannot carry it, its sender is told on the receiver's behalf
//!   ([`PeerMsg::undeliverable`]);
//! - a message for a connection of this node goes to its inbox; when that connection is
//!   gone, and for whatever is still in the inbox of a connection that goes, the sender is
//!   answered [`PeerMsg::Gone`] on the receiver's behalf ([`bounce`]), so that no question
//!   waits for an answer that cannot come;
//! - a [`PeerMsg::Close`] from another node closes its target ([`from_link`]);
//! - a connection that claimed an id another connection held has that one closed, here or
//!   by its own node ([`displace`]);
//! - when a node is gone, everything a connection here has with its connections ends
//!   ([`node_gone`]).
//!
//! A driver decides only what the rules leave to it: where inboxes live, when they are
//! run (never while the sender's state is borrowed, so the tokio driver never holds two
//! connections' locks), and which connection a [`displace`] or [`from_link`] closes.

use std::time::Instant;

use crate::addr::{Addr, NodeId};
use crate::client_id::ClientId;
use crate::connection::Connection;
use crate::directory::{Answered, Claimed, Query};
use crate::error::{CloseReason, RequestError};
use crate::event::{ConnId, Event, Ticket};
use crate::link::{PeerMsg, Transmit};

/// Where the messages between connections go: the inboxes of this node's connections, and
/// the link to other nodes.
pub trait Switchboard {
    /// The node whose connections this switchboard holds.
    fn node(&self) -> NodeId;

    /// Queues `msg` from `from` in the inbox of `to`, a connection of this node, and makes
    /// sure `to` runs its inbox. Gives the message back when `to` is gone (or going).
    fn post(&mut self, from: Addr, to: ConnId, msg: PeerMsg) -> Result<(), PeerMsg>;

    /// Hands a message for a connection of another node to the node link.
    fn send_link(&mut self, transmit: Transmit) -> Result<(), Unlinked>;
}

/// Why the node link did not take a message. (Boxed: a refusal is rare, and a large
/// error would make every `Ok` as large.)
#[derive(Debug)]
pub enum Unlinked {
    /// This node has no link: the receiver's node cannot be reached at all.
    Alone(Box<Transmit>),
    /// The link cannot carry it now; the receiver may well still be there.
    Down(Box<Transmit>),
}

/// What one connection's outputs need besides routing: a directory, the connection's
/// client, and its entry in the directory.
pub trait Host: Switchboard {
    /// A directory question of the connection: answered now, or None when the answer
    /// comes later (the driver then calls [`Connection::handle_directory`] with it).
    fn query(&mut self, query: Query) -> Option<Answered>;

    /// Hands an event to the connection's client. Only a delivery may be refused (the
    /// queue toward a slow receiver is full); the connection then reports it to its sender.
    fn deliver(&mut self, event: Event) -> Result<(), Undelivered>;

    /// The connection no longer holds `client` at `addr` (release it only while the
    /// directory still names `addr`: a newer connection may hold the id by now).
    fn release(&mut self, client: &ClientId, addr: Addr);
}

/// A delivery the front end could not queue for its client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undelivered {
    pub event: String,
    pub ticket: Option<Ticket>,
    /// The limit of the queue that was full, for the sender's error.
    pub limit: usize,
}

/// Runs a connection's outputs until it has none: its directory questions, its client's
/// events, and its messages to other connections (each routed by [`route`], and a
/// bounce's answer handed straight back to it).
pub fn flush(host: &mut impl Host, now: Instant, conn: &mut Connection) {
    loop {
        let mut progress = false;
        while let Some(query) = conn.poll_query() {
            if let Some(answered) = host.query(query) {
                progress = true;
                conn.handle_directory(answered);
            }
        }
        while let Some(event) = conn.poll_event() {
            if let Err(undelivered) = host.deliver(event) {
                progress = true;
                conn.report_undelivered(&undelivered.event, undelivered.ticket, undelivered.limit);
            }
        }
        while let Some(transmit) = conn.poll_transmit() {
            progress = true;
            if let Some(answer) = route(host, transmit) {
                conn.handle_peer(now, answer.from, answer.msg);
            }
        }
        if !progress {
            break;
        }
    }
}

/// Carries one message toward its receiver: to its inbox here, or to the node link.
/// Returns what its sender is owed on the receiver's behalf when it cannot be carried.
#[must_use = "the answer owed to the sender must reach it"]
pub fn route(board: &mut impl Switchboard, transmit: Transmit) -> Option<Transmit> {
    if transmit.to.node != board.node() {
        return match board.send_link(transmit) {
            Ok(()) => None,
            Err(Unlinked::Alone(transmit)) => bounce(transmit.to, transmit.from, transmit.msg),
            Err(Unlinked::Down(transmit)) => {
                let msg = transmit
                    .msg
                    .undeliverable(RequestError::ClusterUnavailable)?;
                Some(Transmit {
                    from: transmit.to,
                    to: transmit.from,
                    msg,
                })
            }
        };
    }
    let Transmit { from, to, msg } = transmit;
    match board.post(from, to.conn, msg) {
        Ok(()) => None,
        Err(msg) => bounce(to, from, msg),
    }
}

/// The answer, on behalf of `to` (gone), to a message `from` sent it: [`PeerMsg::Gone`].
/// Never for a `Gone` (two vanished ends would answer each other forever) nor a `Close`
/// (its receiver is gone, as it was asked to be).
pub fn bounce(to: Addr, from: Addr, msg: PeerMsg) -> Option<Transmit> {
    match msg {
        PeerMsg::Gone | PeerMsg::Close { .. } => None,
        _ => Some(Transmit {
            from: to,
            to: from,
            msg: PeerMsg::Gone,
        }),
    }
}

/// A message from a connection on another node. Returns the connection of this node that
/// must close, and why, when the message is a [`PeerMsg::Close`] (a newer connection on
/// another node claimed its id): the driver closes it as a local replacement does, so it
/// is forgotten (handing `Close` to the connection alone would leave it listed and served).
pub fn from_link(
    board: &mut impl Switchboard,
    transmit: Transmit,
) -> Option<(ConnId, CloseReason)> {
    if let PeerMsg::Close { reason } = transmit.msg {
        return Some((transmit.to.conn, reason));
    }
    if let Some(answer) = route(board, transmit) {
        // The answer is a Gone, which is never answered: nothing more can come of it.
        let _ = route(board, answer);
    }
    None
}

/// Forgets a connection: whatever was still in its inbox is answered on its behalf, it is
/// closed with `reason` (its client told why) or disconnected, its directory entry is
/// released, and everyone it was involved with is told (its last outputs, flushed).
pub fn retire(
    host: &mut impl Host,
    now: Instant,
    conn: &mut Connection,
    undelivered: impl IntoIterator<Item = (Addr, PeerMsg)>,
    reason: Option<CloseReason>,
) {
    let addr = conn.addr();
    for (from, msg) in undelivered {
        if let Some(answer) = bounce(addr, from, msg) {
            // A Gone, never answered in turn.
            let _ = route(host, answer);
        }
    }
    match reason {
        Some(reason) => conn.close(reason),
        None => conn.disconnect(),
    }
    host.release(conn.client(), addr);
    flush(host, now, conn);
}

/// A connection at `by` claimed `client`, which the directory says `claimed`: the
/// connection it replaced, if any, must close. One on another node is told through the
/// link (if that message is lost, the directory no longer names it anyway and its node
/// closes it when it hears); one on this node is returned for the driver to close.
pub fn displace(
    board: &mut impl Switchboard,
    claimed: &Claimed,
    by: Addr,
    client: &ClientId,
) -> Option<(ConnId, CloseReason)> {
    let Claimed::Replaced(old) = *claimed else {
        return None;
    };
    let reason = CloseReason::Replaced(client.clone());
    if old.node == board.node() {
        return Some((old.conn, reason));
    }
    let _ = board.send_link(Transmit {
        from: by,
        to: old,
        msg: PeerMsg::Close { reason },
    });
    None
}

/// Whether `conn` has anything with a connection of `node`: its peer, or a question
/// either way. Cheap, so a driver can skip the connections a node's loss leaves alone.
pub fn involves(conn: &Connection, node: NodeId) -> bool {
    on_node(conn, node).next().is_some()
}

/// `node` is gone (its lease lapsed, or this node lost the cluster): everything `conn` has
/// with its connections ends, as if each of them had sent [`PeerMsg::Gone`].
pub fn node_gone(now: Instant, conn: &mut Connection, node: NodeId) {
    let mut gone: Vec<Addr> = on_node(conn, node).collect();
    gone.sort();
    gone.dedup();
    for from in gone {
        conn.handle_peer(now, from, PeerMsg::Gone);
    }
}

/// The connections of `node` that `conn` has something with (its peer, its questions'
/// targets and askers), repeats included.
fn on_node(conn: &Connection, node: NodeId) -> impl Iterator<Item = Addr> + '_ {
    conn.peer()
        .map(|(a, _)| a)
        .into_iter()
        .chain(conn.involved())
        .filter(move |a| a.node == node)
}
