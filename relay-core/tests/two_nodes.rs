//! Two relay nodes, one shared directory: a pair split across the nodes does everything a
//! local pair does (compare `relay-core/src/relay/tests.rs`, whose exact events and texts
//! these tests expect again).
//!
//! The harness is deterministic: node 1 and node 2 are [`Relay`]s built with a shared
//! directory (a [`LocalDirectory`] the harness holds and answers from), joined by an
//! in-memory node link (one FIFO queue per direction) that is pumped until both nodes are
//! quiet, with a fake clock (a base instant plus an offset). After every settled step the
//! harness checks each node's own invariants and the ones that span the two nodes: pairings
//! and held streams are symmetric across the link, the directory names only live
//! connections, and nobody waits on a connection that is gone.

use std::collections::{BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use relay_core::rmpv::Value;
use relay_core::{
    Addr, Answer, ClientId, Command, Config, ConnectError, DirectoryOp, DuplicatePolicy, Event,
    LocalDirectory, NodeId, Payload, Relay, Reply, ReqId, RequestError, StreamEnd, StreamId,
    StreamKind, Ticket, Transmit, Transport,
};

const N1: NodeId = NodeId(1);
const N2: NodeId = NodeId(2);
/// Rounds of the link pump before the harness declares the nodes never go quiet.
const MAX_ROUNDS: usize = 1_000;

/// Two nodes, their link, the shared directory and the clock.
struct Cluster {
    /// Node 1 at index 0, node 2 at index 1.
    nodes: [Relay; 2],
    alive: [bool; 2],
    dir: LocalDirectory,
    t0: Instant,
    now: Instant,
    next_req: u64,
    /// Events polled from both nodes, addressed by the connection's full address.
    out: Vec<(Addr, Event)>,
    /// Every connection ever admitted, for the cross-node checks.
    admitted: Vec<Addr>,
    /// Messages handed to the link, per direction (1 -> 2, 2 -> 1), for tests to inspect.
    carried: [usize; 2],
}

fn ix(node: NodeId) -> usize {
    match node {
        N1 => 0,
        N2 => 1,
        other => panic!("no node {other:?} in this cluster"),
    }
}

impl Cluster {
    fn new() -> Self {
        Self::with(Config::default())
    }

    fn with(config: Config) -> Self {
        let t0 = Instant::now();
        Self {
            nodes: [
                Relay::with_shared_directory(N1, config.clone()),
                Relay::with_shared_directory(N2, config),
            ],
            alive: [true, true],
            dir: LocalDirectory::default(),
            t0,
            now: t0,
            next_req: 0,
            out: Vec::new(),
            admitted: Vec::new(),
            carried: [0, 0],
        }
    }

    fn node(&self, node: NodeId) -> &Relay {
        &self.nodes[ix(node)]
    }

    fn node_mut(&mut self, node: NodeId) -> &mut Relay {
        &mut self.nodes[ix(node)]
    }

    fn timeout(&self) -> Duration {
        self.nodes[0].config().ack_timeout
    }

    /// Admits `id` on `node` the way a node with a shared directory does: check, reserve an
    /// address, claim it in the shared directory under the node's policy, admit.
    fn try_connect(&mut self, node: NodeId, id: &str) -> Result<Addr, ConnectError> {
        let now = self.now;
        let relay = &mut self.nodes[ix(node)];
        let (client, claims) = relay.check(Some(id), None, Transport::Native, 0)?;
        let addr = relay.reserve();
        assert_eq!(addr.node, node);
        let (policy, max) = (relay.config().duplicate_policy, relay.config().max_clients);
        let claimed = self.dir.claim(&client, addr, policy, max)?;
        let conn = relay.admit(now, addr, client, claims, Transport::Native, claimed);
        assert_eq!(conn, addr.conn);
        self.admitted.push(addr);
        self.settle();
        Ok(addr)
    }

    fn connect(&mut self, node: NodeId, id: &str) -> Addr {
        self.try_connect(node, id)
            .unwrap_or_else(|e| panic!("connect {id} on {node:?}: {e}"))
    }

    fn disconnect(&mut self, at: Addr) {
        let now = self.now;
        self.node_mut(at.node).disconnect(now, at.conn);
        self.settle();
    }

    /// Node `node` vanishes (its lease lapsed): the other node is told, the directory forgets
    /// the node's clients, and nothing reaches or leaves it any more.
    fn node_gone(&mut self, node: NodeId) {
        self.alive[ix(node)] = false;
        let released = self.dir.release_node(node);
        assert!(released.iter().all(|(_, a)| a.node == node));
        let now = self.now;
        for other in [N1, N2] {
            if other != node && self.alive[ix(other)] {
                self.node_mut(other).handle_node_gone(now, node);
            }
        }
        self.settle();
    }

    /// Moves the clock forward and lets both nodes see the time.
    fn advance(&mut self, by: Duration) {
        self.now += by;
        let now = self.now;
        for i in 0..2 {
            if self.alive[i] {
                self.nodes[i].handle_timeout(now);
            }
        }
        self.settle();
    }

    /// Moves the clock and lets both nodes see it, without pumping: what the timeouts sent
    /// waits in the link queues behind what was already there.
    fn tick_held(&mut self, by: Duration) {
        self.now += by;
        let now = self.now;
        for i in 0..2 {
            if self.alive[i] {
                self.nodes[i].handle_timeout(now);
            }
        }
    }

    fn req(&mut self) -> ReqId {
        self.next_req += 1;
        ReqId(self.next_req)
    }

    /// One command, without pumping: its messages wait in the node's link queue (and its
    /// directory queries in the node's queue) until the next [`Cluster::settle`].
    fn cmd_held(&mut self, at: Addr, command: Command) {
        let now = self.now;
        self.node_mut(at.node).handle(now, at.conn, command);
    }

    fn cmd(&mut self, at: Addr, command: Command) {
        self.cmd_held(at, command);
        self.settle();
    }

    fn register_held(&mut self, at: Addr, target: &str) -> ReqId {
        let req = self.req();
        let target = target.into();
        self.cmd_held(at, Command::Register { req, target });
        req
    }

    fn register(&mut self, at: Addr, target: &str) -> ReqId {
        let req = self.register_held(at, target);
        self.settle();
        req
    }

    fn unregister(&mut self, at: Addr) -> ReqId {
        let req = self.req();
        self.cmd(at, Command::Unregister { req });
        req
    }

    fn open_stream(&mut self, at: Addr, target: &str) -> ReqId {
        let req = self.req();
        let target = target.into();
        self.cmd(at, Command::OpenStream { req, target });
        req
    }

    fn emit_held(
        &mut self,
        at: Addr,
        target: &str,
        event: &str,
        args: Payload,
        ack: bool,
    ) -> ReqId {
        let req = self.req();
        let command = Command::Emit {
            target: target.into(),
            event: event.into(),
            args,
            ack: ack.then_some(req),
        };
        self.cmd_held(at, command);
        req
    }

    fn emit(&mut self, at: Addr, target: &str, event: &str, args: Payload) {
        self.emit_held(at, target, event, args, false);
        self.settle();
    }

    fn emit_ack(&mut self, at: Addr, target: &str, event: &str, args: Payload) -> ReqId {
        let req = self.emit_held(at, target, event, args, true);
        self.settle();
        req
    }

    fn answer_held(&mut self, at: Addr, ticket: Ticket, answer: Answer) {
        self.cmd_held(at, Command::Answer { ticket, answer });
    }

    fn answer(&mut self, at: Addr, ticket: Ticket, answer: Answer) {
        self.answer_held(at, ticket, answer);
        self.settle();
    }

    /// Pumps both nodes until they are quiet: directory operations are answered (or
    /// applied) at once from the shared directory, messages for the other node go through
    /// the link, FIFO per direction, and events are collected.
    fn settle(&mut self) {
        let mut link: [VecDeque<Transmit>; 2] = [VecDeque::new(), VecDeque::new()];
        for _ in 0..MAX_ROUNDS {
            let mut busy = false;
            for (i, outbound) in link.iter_mut().enumerate() {
                if !self.alive[i] {
                    continue;
                }
                let node = self.nodes[i].node();
                while let Some(op) = self.nodes[i].poll_directory() {
                    busy = true;
                    match op {
                        DirectoryOp::Query(conn, query) => {
                            let answered = self.dir.answer(&query);
                            self.nodes[i].handle_directory(self.now, conn, answered);
                        }
                        DirectoryOp::Release(client, addr) => {
                            assert_eq!(addr.node, node, "a node releases only its own");
                            self.dir.release(&client, addr);
                        }
                    }
                }
                while let Some(t) = self.nodes[i].poll_link() {
                    busy = true;
                    assert_eq!(t.from.node, node, "sent from elsewhere: {t:?}");
                    assert_ne!(t.to.node, node, "a local message on the link: {t:?}");
                    ix(t.to.node); // only the two nodes exist
                    self.carried[i] += 1;
                    outbound.push_back(t);
                }
                while let Some(o) = self.nodes[i].poll_event() {
                    self.out.push((Addr::new(node, o.conn), o.event));
                }
            }
            for queue in &mut link {
                while let Some(t) = queue.pop_front() {
                    busy = true;
                    let to = ix(t.to.node);
                    // A vanished node receives nothing.
                    if self.alive[to] {
                        self.nodes[to].handle_link(self.now, t);
                    }
                }
            }
            if !busy {
                self.check();
                return;
            }
        }
        panic!("the nodes did not go quiet within {MAX_ROUNDS} rounds");
    }

    fn is_live(&self, addr: Addr) -> bool {
        self.alive[ix(addr.node)] && self.node(addr.node).connection(addr.conn).is_some()
    }

    /// Each node's own invariants, and those that span the two nodes.
    fn check(&self) {
        for i in 0..2 {
            if self.alive[i] {
                if let Err(broken) = self.nodes[i].check_invariants() {
                    panic!("node {}: invariant broken: {broken}", i + 1);
                }
            }
        }
        for (client, addr) in self.dir.iter() {
            assert!(
                self.alive[ix(addr.node)],
                "directory keeps {client} on a vanished node"
            );
            let c = self
                .node(addr.node)
                .connection(addr.conn)
                .unwrap_or_else(|| panic!("directory names closed {addr} for {client}"));
            assert_eq!(c.client(), client, "directory maps {client} to {addr}");
        }
        for &addr in &self.admitted {
            if !self.is_live(addr) {
                continue;
            }
            let c = self.node(addr.node).connection(addr.conn).unwrap();
            if let Some((peer, peer_client)) = c.peer() {
                assert!(self.is_live(peer), "{addr} is paired with gone {peer}");
                let p = self.node(peer.node).connection(peer.conn).unwrap();
                assert_eq!(p.client(), peer_client, "{addr} names its peer wrongly");
                assert_eq!(
                    p.peer(),
                    Some((addr, c.client())),
                    "half-pair: {addr} counts {peer} as its peer, not the other way round"
                );
                let mine: BTreeSet<(StreamId, bool)> = c
                    .streams()
                    .map(|(s, k)| (s, k == StreamKind::Spliced))
                    .collect();
                let theirs: BTreeSet<(StreamId, bool)> = p
                    .streams()
                    .map(|(s, k)| (s, k == StreamKind::Spliced))
                    .collect();
                assert_eq!(mine, theirs, "streams of {addr} and {peer} differ");
            }
            for other in c.involved() {
                assert!(self.is_live(other), "{addr} waits on gone {other}");
            }
        }
    }

    fn drain(&mut self) -> Out {
        Out(std::mem::take(&mut self.out))
    }

    fn conn(&self, at: Addr) -> &relay_core::Connection {
        self.node(at.node)
            .connection(at.conn)
            .unwrap_or_else(|| panic!("{at} is not connected"))
    }

    fn peer(&self, at: Addr) -> Option<Addr> {
        self.conn(at).peer().map(|(a, _)| a)
    }

    fn client(&self, at: Addr) -> ClientId {
        self.conn(at).client().clone()
    }

    fn pending(&self) -> usize {
        (0..2)
            .filter(|i| self.alive[*i])
            .map(|i| self.nodes[i].pending_len())
            .sum()
    }

    fn no_deadlines(&self) -> bool {
        (0..2).all(|i| !self.alive[i] || self.nodes[i].poll_timeout().is_none())
    }

    fn streams_of(&self, at: Addr) -> BTreeSet<StreamId> {
        self.conn(at).streams().map(|(s, _)| s).collect()
    }

    /// Pairs `a` (the requester) with `b`, checking the handshake, and drains.
    fn pair(&mut self, a: Addr, b: Addr) {
        let b_id = self.client(b);
        let req = self.register(a, b_id.as_str());
        let ticket = self.drain().register_request(b);
        self.answer(b, ticket, Answer::Accept(true));
        let out = self.drain();
        assert!(matches!(out.reply(a, req), Reply::Registered(true)));
        assert_eq!(out.0.len(), 1, "only the requester's reply: {:?}", out.0);
        assert_eq!(self.peer(a), Some(b));
        assert_eq!(self.peer(b), Some(a));
    }

    /// Opens a stream from `a` to its peer `b`, accepted, and drains.
    fn stream(&mut self, a: Addr, b: Addr) -> StreamId {
        let b_id = self.client(b);
        let req = self.open_stream(a, b_id.as_str());
        let ticket = self.drain().stream_request(b);
        self.answer(b, ticket, Answer::Accept(true));
        match self.drain().reply(a, req) {
            Reply::StreamOpened { stream, .. } => stream,
            other => panic!("stream not opened: {other:?}"),
        }
    }
}

/// Polled events, with accessors that pick out what a test expects.
#[derive(Debug)]
struct Out(Vec<(Addr, Event)>);

impl Out {
    fn to(&self, at: Addr) -> Vec<&Event> {
        self.0
            .iter()
            .filter(|(a, _)| *a == at)
            .map(|(_, e)| e)
            .collect()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn replies(&self, at: Addr) -> Vec<(ReqId, &Reply)> {
        self.to(at)
            .into_iter()
            .filter_map(|e| match e {
                Event::Reply { req, reply } => Some((*req, reply)),
                _ => None,
            })
            .collect()
    }

    /// The one reply `at` got, which must be for `req`.
    fn reply(&self, at: Addr, req: ReqId) -> Reply {
        let replies = self.replies(at);
        assert_eq!(replies.len(), 1, "one reply expected for {at}: {self:?}");
        assert_eq!(replies[0].0, req);
        replies[0].1.clone()
    }

    fn errors(&self, at: Addr) -> Vec<String> {
        self.to(at)
            .into_iter()
            .filter_map(|e| match e {
                Event::ServerError { message, .. } => Some(message.clone()),
                _ => None,
            })
            .collect()
    }

    fn no_errors(&self) -> bool {
        !self
            .0
            .iter()
            .any(|(_, e)| matches!(e, Event::ServerError { .. }))
    }

    fn register_request(&self, at: Addr) -> Ticket {
        let found: Vec<Ticket> = self
            .to(at)
            .into_iter()
            .filter_map(|e| match e {
                Event::RegisterRequest { ticket, .. } => Some(*ticket),
                _ => None,
            })
            .collect();
        assert_eq!(found.len(), 1, "one RegisterRequest for {at}: {self:?}");
        found[0]
    }

    fn stream_request(&self, at: Addr) -> Ticket {
        let found: Vec<Ticket> = self
            .to(at)
            .into_iter()
            .filter_map(|e| match e {
                Event::StreamRequest { ticket, .. } => Some(*ticket),
                _ => None,
            })
            .collect();
        assert_eq!(found.len(), 1, "one StreamRequest for {at}: {self:?}");
        found[0]
    }

    fn unregistered(&self, at: Addr) -> Vec<Ticket> {
        self.to(at)
            .into_iter()
            .filter_map(|e| match e {
                Event::Unregistered { ticket } => Some(*ticket),
                _ => None,
            })
            .collect()
    }

    fn stream_closed(&self, at: Addr) -> Vec<(StreamId, StreamEnd)> {
        self.to(at)
            .into_iter()
            .filter_map(|e| match e {
                Event::StreamClosed { stream, why } => Some((*stream, *why)),
                _ => None,
            })
            .collect()
    }

    fn delivered(&self, at: Addr) -> Vec<(String, Payload, Option<Ticket>)> {
        self.to(at)
            .into_iter()
            .filter_map(|e| match e {
                Event::Deliver {
                    event,
                    args,
                    ticket,
                } => Some((event.clone(), args.clone(), *ticket)),
                _ => None,
            })
            .collect()
    }

    fn peer_disconnected(&self, at: Addr) -> usize {
        self.to(at)
            .into_iter()
            .filter(|e| matches!(e, Event::PeerDisconnected))
            .count()
    }
}

fn failed(reply: Reply) -> RequestError {
    match reply {
        Reply::Failed(error) => error,
        other => panic!("expected a failure, got {other:?}"),
    }
}

fn id(raw: &str) -> ClientId {
    ClientId::new(raw).unwrap()
}

fn rich_values() -> Payload {
    Payload::Values(vec![
        Value::from("text"),
        Value::from(-3),
        Value::from(2.5),
        Value::Binary(vec![0, 255, 1]),
        Value::Map(vec![(
            Value::from("nested"),
            Value::Array(vec![
                Value::Binary(vec![9; 4]),
                Value::Nil,
                Value::from(true),
            ]),
        )]),
    ])
}

/// Stream closings by stream id (the order among streams is the core's grant order).
fn sorted(mut v: Vec<(StreamId, StreamEnd)>) -> Vec<(StreamId, StreamEnd)> {
    v.sort_by_key(|(s, _)| *s);
    v
}

// ----- the harness itself -------------------------------------------------------------------

#[test]
fn harness_carries_cross_node_traffic_over_the_link_only() {
    let mut h = Cluster::new();
    let a = h.connect(N1, "A");
    let b = h.connect(N2, "B");
    let c = h.connect(N1, "C");
    let d = h.connect(N1, "D");
    // Both nodes number their connections from 0: only the node tells them apart.
    assert_eq!(a.conn, b.conn);
    assert_eq!(h.dir.lookup("A"), Some(a));
    assert_eq!(h.dir.lookup("B"), Some(b));
    assert_eq!(h.carried, [0, 0]);
    h.pair(c, d);
    assert_eq!(h.carried, [0, 0], "a local pair never uses the link");
    h.pair(a, b);
    // Register out, answer back.
    assert_eq!(h.carried, [1, 1]);
    h.emit(a, "B", "x", Payload::empty());
    assert_eq!(h.carried, [2, 1]);
    assert_eq!(h.drain().delivered(b).len(), 1);
}

// ----- pairing ------------------------------------------------------------------------------

#[test]
fn register_across_nodes_pairs_both_ends() {
    let mut h = Cluster::new();
    let a = h.connect(N1, "A");
    let b = h.connect(N2, "B");
    let req = h.register(a, "B");
    let out = h.drain();
    assert_eq!(out.0.len(), 1, "{out:?}");
    let ticket = match out.to(b)[..] {
        [Event::RegisterRequest { ticket, from }] => {
            assert_eq!(from, &id("A"));
            *ticket
        }
        ref other => panic!("{other:?}"),
    };
    assert_eq!(h.peer(a), None, "not paired before the answer");
    assert_eq!(h.peer(b), None);
    assert_eq!(h.node(N1).poll_timeout(), Some(h.t0 + h.timeout()));
    h.answer(b, ticket, Answer::Accept(true));
    let out = h.drain();
    assert!(matches!(out.reply(a, req), Reply::Registered(true)));
    assert!(
        out.to(b).is_empty(),
        "the target gets no extra events: {out:?}"
    );
    assert_eq!(out.0.len(), 1);
    assert_eq!(h.conn(a).peer(), Some((b, &id("B"))));
    assert_eq!(h.conn(b).peer(), Some((a, &id("A"))));
    assert_eq!(h.pending(), 0);
    assert!(h.no_deadlines());
}

#[test]
fn register_declined_across_nodes_leaves_both_free() {
    let mut h = Cluster::new();
    let a = h.connect(N1, "A");
    let b = h.connect(N2, "B");
    let req = h.register(a, "B");
    let ticket = h.drain().register_request(b);
    h.answer(b, ticket, Answer::Accept(false));
    let out = h.drain();
    assert!(matches!(out.reply(a, req), Reply::Registered(false)));
    assert!(out.errors(a).is_empty());
    assert!(
        out.to(b).is_empty(),
        "a target that declined needs no notice"
    );
    assert_eq!(out.0.len(), 1);
    assert_eq!(h.peer(a), None);
    assert_eq!(h.peer(b), None);
    assert_eq!(h.pending(), 0);
    // A can try again, and B the other way round after an unregister.
    h.pair(a, b);
}

#[test]
fn register_to_a_target_not_connected_or_busy_elsewhere() {
    let mut h = Cluster::new();
    let a = h.connect(N1, "A");
    let b = h.connect(N2, "B");
    let c = h.connect(N2, "C");

    let req = h.register(a, "Z");
    let out = h.drain();
    assert_eq!(out.errors(a), vec!["target client 'Z' is not connected"]);
    assert_eq!(
        failed(out.reply(a, req)),
        RequestError::TargetNotConnected(id("Z"))
    );
    assert_eq!(out.0.len(), 2);

    // A client that left node 2 is released from the shared directory: not connected.
    let gone = h.connect(N2, "G");
    h.disconnect(gone);
    assert_eq!(h.dir.lookup("G"), None);
    let req = h.register(a, "G");
    let out = h.drain();
    assert_eq!(out.errors(a), vec!["target client 'G' is not connected"]);
    assert_eq!(
        failed(out.reply(a, req)),
        RequestError::TargetNotConnected(id("G"))
    );

    // A target paired on its own node answers false without its client being asked.
    h.pair(b, c);
    let req = h.register(a, "B");
    let out = h.drain();
    assert!(matches!(out.reply(a, req), Reply::Registered(false)));
    assert!(out.errors(a).is_empty());
    assert!(out.to(b).is_empty());
    assert_eq!(out.0.len(), 1);
    assert_eq!(h.peer(b), Some(c));
    assert_eq!(h.pending(), 0);

    // The registration slot is free again each time.
    let d = h.connect(N2, "D");
    h.pair(a, d);
}

#[test]
fn a_request_reaching_a_node_whose_target_just_left_is_answered_on_its_behalf() {
    // B leaves node 2 while A's pairing request is already on its way: B never heard of
    // A, so only node 2's answer on B's behalf (a bounce: Gone) tells A. The request must
    // fail at once, not at its deadline (the clock does not move here).
    let mut h = Cluster::new();
    let a = h.connect(N1, "A");
    let b = h.connect(N2, "B");
    let req = h.register_held(a, "B");
    let now = h.now;
    h.node_mut(N2).disconnect(now, b.conn);
    h.settle();
    let out = h.drain();
    assert_eq!(
        failed(out.reply(a, req)),
        RequestError::PeerGone {
            event: "P2P_REGISTER".into(),
            target: id("B")
        }
    );
    assert_eq!(h.pending(), 0);
    assert!(h.no_deadlines());
}

#[test]
fn two_requesters_from_different_nodes_racing_for_one_target_yield_one_pairing() {
    // The target on either node, requesters on both; the target (a misbehaving client)
    // says yes to both, in either order.
    for target_node in [N1, N2] {
        for answer_first_to_a in [true, false] {
            let mut h = Cluster::new();
            let a = h.connect(N1, "A");
            let c = h.connect(N2, "C");
            let t = h.connect(target_node, "T");
            let req_a = h.register_held(a, "T");
            let req_c = h.register_held(c, "T");
            h.settle();
            let out = h.drain();
            let tickets: Vec<(Ticket, ClientId)> = out
                .to(t)
                .into_iter()
                .map(|e| match e {
                    Event::RegisterRequest { ticket, from } => (*ticket, from.clone()),
                    other => panic!("{other:?}"),
                })
                .collect();
            assert_eq!(tickets.len(), 2, "{out:?}");
            let of = |name: &str| tickets.iter().find(|(_, f)| f.as_str() == name).unwrap().0;
            let (first, second) = if answer_first_to_a {
                (of("A"), of("C"))
            } else {
                (of("C"), of("A"))
            };
            h.answer(t, first, Answer::Accept(true));
            h.answer(t, second, Answer::Accept(true));
            let out = h.drain();
            let (winner, loser, win_req, lose_req) = if answer_first_to_a {
                (a, c, req_a, req_c)
            } else {
                (c, a, req_c, req_a)
            };
            assert!(matches!(
                out.reply(winner, win_req),
                Reply::Registered(true)
            ));
            assert!(matches!(
                out.reply(loser, lose_req),
                Reply::Registered(false)
            ));
            assert!(
                out.unregistered(t).is_empty(),
                "a notice would tear down the standing pairing"
            );
            assert!(out.no_errors(), "{out:?}");
            assert_eq!(h.peer(t), Some(winner));
            assert_eq!(h.peer(winner), Some(t));
            assert_eq!(h.peer(loser), None);
            assert_eq!(h.pending(), 0);
        }
    }
}

#[test]
fn crossed_registrations_across_nodes_yield_one_pairing() {
    // `crossing`: both clients accept before either answer crossed the link, so each
    // answer arrives at an end that already counts the other as its peer.
    for crossing in [false, true] {
        let mut h = Cluster::new();
        let a = h.connect(N1, "A");
        let b = h.connect(N2, "B");
        let req_a = h.register_held(a, "B");
        let req_b = h.register_held(b, "A");
        h.settle();
        let out = h.drain();
        let to_b = out.register_request(b);
        let to_a = out.register_request(a);
        assert_eq!(out.0.len(), 2);
        if crossing {
            h.answer_held(b, to_b, Answer::Accept(true));
            h.answer_held(a, to_a, Answer::Accept(true));
            h.settle();
        } else {
            h.answer(b, to_b, Answer::Accept(true));
            h.answer(a, to_a, Answer::Accept(true));
        }
        let out = h.drain();
        // Exactly one request wins: A's (when the answers cross, the lower address's).
        assert!(
            matches!(out.reply(a, req_a), Reply::Registered(true)),
            "crossing={crossing}: {out:?}"
        );
        assert!(matches!(out.reply(b, req_b), Reply::Registered(false)));
        assert!(
            out.unregistered(a).is_empty() && out.unregistered(b).is_empty(),
            "{out:?}"
        );
        assert!(out.no_errors());
        assert_eq!(out.0.len(), 2, "{out:?}");
        assert_eq!(h.peer(a), Some(b), "crossing={crossing}");
        assert_eq!(h.peer(b), Some(a));
        assert_eq!(h.pending(), 0);
        // The pairing works, and ends cleanly from the losing side.
        h.emit(b, "A", "hi", Payload::empty());
        assert_eq!(h.drain().delivered(a).len(), 1);
        let req = h.unregister(b);
        let theirs = h.drain().unregistered(a);
        assert_eq!(theirs.len(), 1);
        h.answer(a, theirs[0], Answer::Done);
        assert!(matches!(h.drain().reply(b, req), Reply::Unregistered));
        assert_eq!(h.peer(a), None);
        assert_eq!(h.peer(b), None);
    }
}

#[test]
fn crossed_registrations_with_one_timing_out_as_the_answers_cross_leave_no_half_pair() {
    // `first` asked 500 ms before `second`; both accept the other's question at 999 ms,
    // then `first`'s own request expires before anything crossed the link: its cancel
    // travels right behind its yes.
    for first_on_node_1 in [true, false] {
        let mut h = Cluster::with(Config {
            ack_timeout: Duration::from_millis(1000),
            ..Config::default()
        });
        let a = h.connect(N1, "A");
        let b = h.connect(N2, "B");
        let (first, second) = if first_on_node_1 { (a, b) } else { (b, a) };
        let (first_id, second_id) = (h.client(first), h.client(second));
        let req_first = h.register(first, second_id.as_str());
        h.advance(Duration::from_millis(500));
        let req_second = h.register(second, first_id.as_str());
        let out = h.drain();
        let (to_second, to_first) = (out.register_request(second), out.register_request(first));
        h.now += Duration::from_millis(499);
        h.answer_held(second, to_second, Answer::Accept(true));
        h.answer_held(first, to_first, Answer::Accept(true));
        h.tick_held(Duration::from_millis(1));
        h.settle();
        let out = h.drain();
        assert_eq!(
            out.errors(first),
            vec![format!(
                "no ack for event 'P2P_REGISTER' from '{second_id}' within 1000 ms"
            )]
        );
        assert!(matches!(
            failed(out.reply(first, req_first)),
            RequestError::AckTimeout { millis: 1000, .. }
        ));
        // The second's request met a pairing both ends had already made.
        let won = second < first;
        assert!(matches!(out.reply(second, req_second), Reply::Registered(w) if w == won));
        assert!(
            out.unregistered(a).is_empty() && out.unregistered(b).is_empty(),
            "{out:?}"
        );
        assert_eq!(out.0.len(), 3, "{out:?}");
        // Both ends accepted each other, so they are paired, symmetrically (the harness
        // checks the two ends agree after every step).
        assert_eq!(h.peer(a), Some(b), "first_on_node_1={first_on_node_1}");
        assert_eq!(h.peer(b), Some(a));
        h.advance(Duration::from_millis(2000));
        assert!(h.drain().is_empty());
        assert_eq!(h.pending(), 0);
        h.emit(first, second_id.as_str(), "hi", Payload::empty());
        assert_eq!(h.drain().delivered(second).len(), 1);
    }
}

#[test]
fn register_timeout_across_nodes_fails_the_request_and_clears_the_target() {
    let mut h = Cluster::with(Config {
        ack_timeout: Duration::from_millis(2500),
        ..Config::default()
    });
    let a = h.connect(N1, "A");
    let b = h.connect(N2, "B");
    let req = h.register(a, "B");
    let to_b = h.drain().register_request(b);
    h.advance(Duration::from_millis(2499));
    assert!(h.drain().is_empty());
    h.advance(Duration::from_millis(1));
    let out = h.drain();
    assert_eq!(
        out.errors(a),
        vec!["no ack for event 'P2P_REGISTER' from 'B' within 2500 ms"]
    );
    assert!(matches!(
        failed(out.reply(a, req)),
        RequestError::AckTimeout { millis: 2500, .. }
    ));
    assert_eq!(out.unregistered(b).len(), 1);
    // B's late yes does not pair.
    h.answer(b, to_b, Answer::Accept(true));
    assert!(h.drain().is_empty());
    assert_eq!(h.peer(a), None);
    assert_eq!(h.peer(b), None);
    h.advance(Duration::from_millis(2500));
    assert!(h.drain().is_empty());
    assert_eq!(h.pending(), 0);
    assert!(h.no_deadlines());
}

// ----- emitting -----------------------------------------------------------------------------

#[test]
fn emit_and_ack_across_nodes_carry_payloads_unchanged() {
    let mut h = Cluster::new();
    let a = h.connect(N1, "A");
    let b = h.connect(N2, "B");
    h.pair(a, b);

    h.emit(a, "B", "chat", rich_values());
    let out = h.drain();
    assert_eq!(out.0.len(), 1);
    assert_eq!(
        out.delivered(b),
        vec![("chat".to_string(), rich_values(), None)]
    );
    h.emit(b, "A", "chat", Payload::empty());
    let out = h.drain();
    assert_eq!(
        out.delivered(a),
        vec![("chat".to_string(), Payload::empty(), None)]
    );
    assert_eq!(out.0.len(), 1);

    let req = h.emit_ack(a, "B", "question", rich_values());
    let out = h.drain();
    assert_eq!(out.0.len(), 1);
    let (event, args, ticket) = out.delivered(b)[0].clone();
    assert_eq!((event.as_str(), &args), ("question", &rich_values()));
    let ticket = ticket.expect("an ack was asked for");
    assert_eq!(h.node(N2).pending_len(), 1);
    let answer = Payload::MsgPack(Bytes::from_static(&[0x92, 0xc4, 0x01, 0xff, 0xc3]));
    h.answer(b, ticket, Answer::Ack(answer.clone()));
    let out = h.drain();
    match out.reply(a, req) {
        Reply::Ack(args) => assert_eq!(args, answer),
        other => panic!("{other:?}"),
    }
    assert_eq!(out.0.len(), 1);
    assert_eq!(h.pending(), 0);
    // A second (late) answer is ignored.
    h.answer(b, ticket, Answer::Ack(Payload::empty()));
    assert!(h.drain().is_empty());

    // The other way: values come back as values; an ack of the wrong kind means "none".
    let req = h.emit_ack(b, "A", "q", Payload::empty());
    let (_, _, ticket) = h.drain().delivered(a)[0].clone();
    h.answer(a, ticket.unwrap(), Answer::Ack(rich_values()));
    assert!(matches!(h.drain().reply(b, req), Reply::Ack(p) if p == rich_values()));
    let req = h.emit_ack(b, "A", "q", Payload::empty());
    let (_, _, ticket) = h.drain().delivered(a)[0].clone();
    h.answer(a, ticket.unwrap(), Answer::Done);
    assert!(matches!(h.drain().reply(b, req), Reply::Ack(p) if p == Payload::empty()));
    assert_eq!(h.pending(), 0);
}

#[test]
fn ack_timeout_across_nodes_fails_with_the_exact_text() {
    let mut h = Cluster::with(Config {
        ack_timeout: Duration::from_millis(1500),
        ..Config::default()
    });
    let a = h.connect(N1, "A");
    let b = h.connect(N2, "B");
    h.pair(a, b);
    h.advance(Duration::from_millis(100));
    let req = h.emit_ack(a, "B", "ping", Payload::empty());
    let ticket = h.drain().delivered(b)[0].2.unwrap();
    assert_eq!(
        h.node(N1).poll_timeout(),
        Some(h.t0 + Duration::from_millis(1600))
    );
    h.advance(Duration::from_millis(1499));
    assert!(h.drain().is_empty());
    h.advance(Duration::from_millis(1));
    let out = h.drain();
    assert_eq!(
        out.errors(a),
        vec!["no ack for event 'ping' from 'B' within 1500 ms"]
    );
    assert_eq!(
        failed(out.reply(a, req)),
        RequestError::AckTimeout {
            event: "ping".into(),
            target: id("B"),
            millis: 1500
        }
    );
    assert!(out.to(b).is_empty());
    assert_eq!(out.0.len(), 2);
    assert_eq!(h.pending(), 0);
    assert!(
        h.no_deadlines(),
        "the question put to B expired on node 2 too"
    );
    // The late ack is ignored, and the pairing stands.
    h.answer(b, ticket, Answer::Ack(Payload::empty()));
    assert!(h.drain().is_empty());
    assert_eq!(h.peer(a), Some(b));
}

#[test]
fn a_hundred_emits_each_way_keep_their_order_across_nodes() {
    let mut h = Cluster::new();
    let a = h.connect(N1, "A");
    let b = h.connect(N2, "B");
    h.pair(a, b);
    // All queued at once on both nodes (every other one with an ack), then carried.
    let mut acks_a = Vec::new();
    let mut acks_b = Vec::new();
    for n in 0..100i64 {
        let args = Payload::Values(vec![Value::from(n)]);
        acks_a.push(h.emit_held(a, "B", "seq", args.clone(), n % 2 == 0));
        acks_b.push(h.emit_held(b, "A", "seq", args, n % 2 == 1));
    }
    h.settle();
    let out = h.drain();
    for (to, acked) in [(b, 0), (a, 1)] {
        let got = out.delivered(to);
        assert_eq!(got.len(), 100);
        for (n, (event, args, ticket)) in got.iter().enumerate() {
            assert_eq!(event, "seq");
            assert_eq!(args, &Payload::Values(vec![Value::from(n as i64)]));
            assert_eq!(ticket.is_some(), n % 2 == acked, "emit {n}");
        }
    }
    // Acks answered in order come back in order, with their own arguments, both ways.
    for (asker, answerer, reqs, first) in [(a, b, &acks_a, 0), (b, a, &acks_b, 1)] {
        let tickets: Vec<Ticket> = out.delivered(answerer).iter().filter_map(|d| d.2).collect();
        assert_eq!(tickets.len(), 50);
        for (n, ticket) in tickets.iter().enumerate() {
            let answer = Answer::Ack(Payload::Values(vec![Value::from(n as i64)]));
            h.answer_held(answerer, *ticket, answer);
        }
        h.settle();
        let acked = h.drain();
        let replies = acked.replies(asker);
        let expected: Vec<ReqId> = reqs.iter().skip(first).step_by(2).copied().collect();
        assert_eq!(replies.iter().map(|r| r.0).collect::<Vec<_>>(), expected);
        for (n, (_, reply)) in replies.iter().enumerate() {
            let want = Payload::Values(vec![Value::from(n as i64)]);
            assert!(
                matches!(reply, Reply::Ack(p) if *p == want),
                "ack {n}: {reply:?}"
            );
        }
        assert_eq!(acked.0.len(), 50);
    }
    assert_eq!(h.pending(), 0);
}

// ----- streams ------------------------------------------------------------------------------

#[test]
fn stream_across_nodes_opened_accepted_and_held_by_both_ends() {
    let mut h = Cluster::new();
    let a = h.connect(N1, "A");
    let b = h.connect(N2, "B");
    h.pair(a, b);
    let req = h.open_stream(a, "B");
    let out = h.drain();
    let ticket = match out.to(b)[..] {
        [Event::StreamRequest { ticket, from }] => {
            assert_eq!(from, &id("A"));
            *ticket
        }
        ref other => panic!("{other:?}"),
    };
    assert_eq!(out.0.len(), 1);
    h.answer(b, ticket, Answer::Accept(true));
    let out = h.drain();
    let stream = match out.reply(a, req) {
        Reply::StreamOpened { stream, kind, peer } => {
            assert_eq!(kind, StreamKind::Spliced);
            assert_eq!(peer, b, "a spliced stream names the acceptor to relay to");
            stream
        }
        other => panic!("{other:?}"),
    };
    assert!(matches!(
        out.to(b)[..],
        [Event::StreamAccepted { stream: s, from, kind: StreamKind::Spliced }]
            if *s == stream && from == &id("A")
    ));
    assert_eq!(out.0.len(), 2);
    assert_eq!(h.streams_of(a), BTreeSet::from([stream]));
    assert_eq!(h.streams_of(b), BTreeSet::from([stream]));
    // Each node finds its local end only: the pair spans two nodes.
    assert_eq!(h.node(N1).stream_ends(stream), None);

    // Another one the other way: a distinct id, though both openers are connection 0 of
    // their node.
    assert_eq!(a.conn, b.conn);
    let back = h.stream(b, a);
    assert_ne!(back, stream);
    assert_eq!(h.streams_of(a), BTreeSet::from([stream, back]));
    assert_eq!(h.streams_of(b), BTreeSet::from([stream, back]));

    // Closing one is bookkeeping on both ends; the other stays.
    h.cmd(b, Command::CloseStream { stream });
    assert!(h.drain().is_empty());
    assert_eq!(h.streams_of(a), BTreeSet::from([back]));
    assert_eq!(h.streams_of(b), BTreeSet::from([back]));
    assert_eq!(h.pending(), 0);
}

#[test]
fn stream_declined_across_nodes_is_refused() {
    let mut h = Cluster::new();
    let a = h.connect(N1, "A");
    let b = h.connect(N2, "B");
    h.pair(a, b);
    let req = h.open_stream(a, "B");
    let ticket = h.drain().stream_request(b);
    h.answer(b, ticket, Answer::Accept(false));
    let out = h.drain();
    assert!(matches!(out.reply(a, req), Reply::StreamRefused));
    assert!(out.errors(a).is_empty());
    assert!(out.to(b).is_empty());
    assert_eq!(out.0.len(), 1);
    assert!(h.streams_of(a).is_empty() && h.streams_of(b).is_empty());
    assert_eq!(h.pending(), 0);

    // And a stream request left unanswered times out with the exact text.
    let req = h.open_stream(b, "A");
    h.drain();
    let timeout = h.timeout();
    h.advance(timeout);
    let out = h.drain();
    let ms = timeout.as_millis();
    assert_eq!(
        out.errors(b),
        vec![format!(
            "no ack for event 'P2P_REGISTER_STREAM' from 'A' within {ms} ms"
        )]
    );
    assert!(matches!(
        failed(out.reply(b, req)),
        RequestError::AckTimeout { .. }
    ));
    assert!(out.to(a).is_empty());
}

// ----- unregistering ------------------------------------------------------------------------

#[test]
fn unregister_from_either_end_tells_both_and_closes_held_streams() {
    for caller_on_node_1 in [true, false] {
        let mut h = Cluster::new();
        let a = h.connect(N1, "A");
        let b = h.connect(N2, "B");
        h.pair(a, b);
        let s1 = h.stream(a, b);
        let s2 = h.stream(b, a);
        assert_ne!(s1, s2);
        let (caller, other) = if caller_on_node_1 { (a, b) } else { (b, a) };
        let req = h.unregister(caller);
        let out = h.drain();
        let both = sorted(vec![(s1, StreamEnd::Unpaired), (s2, StreamEnd::Unpaired)]);
        assert_eq!(sorted(out.stream_closed(caller)), both);
        assert_eq!(sorted(out.stream_closed(other)), both);
        let own = out.unregistered(caller);
        let theirs = out.unregistered(other);
        assert_eq!((own.len(), theirs.len()), (1, 1), "{out:?}");
        assert!(
            out.replies(caller).is_empty(),
            "no reply before the peer confirms"
        );
        assert!(out.no_errors());
        assert_eq!(out.0.len(), 6, "{out:?}");
        assert_eq!(h.peer(a), None);
        assert_eq!(h.peer(b), None);
        assert!(h.streams_of(a).is_empty() && h.streams_of(b).is_empty());

        // The caller confirming its own notice does not release the reply; the peer's does.
        h.answer(caller, own[0], Answer::Done);
        assert!(h.drain().is_empty());
        h.answer(other, theirs[0], Answer::Done);
        let out = h.drain();
        assert!(matches!(out.reply(caller, req), Reply::Unregistered));
        assert_eq!(out.0.len(), 1);
        assert_eq!(h.pending(), 0);
        // A second Done is ignored.
        h.answer(other, theirs[0], Answer::Done);
        assert!(h.drain().is_empty());
        // Emits are refused now, and both may pair again.
        h.emit(a, "B", "chat", Payload::empty());
        let out = h.drain();
        assert_eq!(out.errors(a), vec!["not paired with 'B'"]);
        assert!(out.to(b).is_empty());
        h.pair(b, a);
    }
}

#[test]
fn unregister_across_nodes_replies_after_the_timeout_or_the_peer_leaving() {
    let mut h = Cluster::new();
    let a = h.connect(N1, "A");
    let b = h.connect(N2, "B");
    h.pair(a, b);
    let req = h.unregister(a);
    h.drain();
    let timeout = h.timeout();
    h.advance(timeout - Duration::from_millis(1));
    assert!(h.drain().is_empty());
    h.advance(Duration::from_millis(1));
    let out = h.drain();
    assert!(matches!(out.reply(a, req), Reply::Unregistered));
    assert!(out.no_errors());
    assert!(out.to(b).is_empty());

    h.pair(b, a);
    let req = h.unregister(a);
    let own = h.drain().unregistered(a);
    assert_eq!(own.len(), 1);
    h.disconnect(b);
    let out = h.drain();
    assert!(matches!(out.reply(a, req), Reply::Unregistered));
    assert!(out.no_errors());
    assert_eq!(out.peer_disconnected(a), 0, "the pairing had already ended");
    assert_eq!(out.0.len(), 1);
    // Only A's own notice is left, until its client confirms it.
    assert_eq!(h.pending(), 1);
    h.answer(a, own[0], Answer::Done);
    assert_eq!(h.pending(), 0);
}

// ----- one side vanishing -------------------------------------------------------------------

#[test]
fn peer_disconnecting_on_node_2_frees_its_peer_on_node_1() {
    let mut h = Cluster::new();
    let a = h.connect(N1, "A");
    let b = h.connect(N2, "B");
    h.pair(a, b);
    let s = h.stream(a, b);
    let ping = h.emit_ack(a, "B", "ping", Payload::empty());
    let open = h.open_stream(a, "B");
    let out = h.drain();
    assert_eq!(out.delivered(b).len(), 1);
    out.stream_request(b);
    h.disconnect(b);
    let out = h.drain();
    assert!(out.to(b).is_empty(), "nothing for a forgotten connection");
    assert_eq!(out.stream_closed(a), vec![(s, StreamEnd::PeerGone)]);
    assert_eq!(out.peer_disconnected(a), 1);
    let replies = out.replies(a);
    assert_eq!(replies.len(), 2, "{out:?}");
    let reply_to = |req: ReqId| replies.iter().find(|r| r.0 == req).unwrap().1.clone();
    let error = failed(reply_to(ping));
    assert_eq!(
        error,
        RequestError::PeerGone {
            event: "ping".into(),
            target: id("B")
        }
    );
    assert_eq!(
        error.to_string(),
        "'B' disconnected before answering 'ping'"
    );
    assert_eq!(
        failed(reply_to(open)),
        RequestError::PeerGone {
            event: "P2P_REGISTER_STREAM".into(),
            target: id("B")
        }
    );
    assert!(
        out.errors(a).is_empty(),
        "PeerDisconnected says it, no SERVER_ERROR"
    );
    assert_eq!(out.0.len(), 4);
    assert_eq!(h.peer(a), None);
    assert!(h.streams_of(a).is_empty());
    assert_eq!(h.dir.lookup("B"), None);
    assert_eq!(h.pending(), 0);
    assert!(h.no_deadlines());

    // The other way round: A leaving node 1 frees a new B on node 2, whose ack fails.
    let b = h.connect(N2, "B");
    h.pair(b, a);
    let req = h.emit_ack(b, "A", "ping", Payload::empty());
    h.drain();
    h.disconnect(a);
    let out = h.drain();
    assert_eq!(out.peer_disconnected(b), 1);
    assert_eq!(
        failed(out.reply(b, req)),
        RequestError::PeerGone {
            event: "ping".into(),
            target: id("A")
        }
    );
    assert!(out.no_errors());
    assert_eq!(h.peer(b), None);
    assert_eq!(h.dir.lookup("A"), None);
}

#[test]
fn requester_on_node_1_vanishing_mid_handshake_clears_the_target_on_node_2() {
    let mut h = Cluster::new();
    let a = h.connect(N1, "A");
    let b = h.connect(N2, "B");
    h.register(a, "B");
    let to_b = h.drain().register_request(b);
    h.disconnect(a);
    let out = h.drain();
    let notices = out.unregistered(b);
    assert_eq!(notices.len(), 1, "{out:?}");
    assert_eq!(out.0.len(), 1);
    // B's late acceptance changes nothing.
    h.answer(b, to_b, Answer::Accept(true));
    assert!(h.drain().is_empty());
    assert_eq!(h.peer(b), None);
    h.answer(b, notices[0], Answer::Done);
    assert!(h.drain().is_empty());
    assert_eq!(h.pending(), 0);
}

#[test]
fn node_vanishing_frees_every_pair_that_crossed_to_it() {
    let mut h = Cluster::new();
    // Node 1: A, C, E, F, G, J. Node 2: B, D, H, I.
    let a = h.connect(N1, "A");
    let c = h.connect(N1, "C");
    let e = h.connect(N1, "E");
    let f = h.connect(N1, "F");
    let g = h.connect(N1, "G");
    let j = h.connect(N1, "J");
    let b = h.connect(N2, "B");
    let d = h.connect(N2, "D");
    let hh = h.connect(N2, "H");
    let i = h.connect(N2, "I");
    h.pair(a, b); // crosses, A waits on an ack
    h.pair(d, c); // crosses the other way, with a stream
    h.pair(e, f); // local to node 1
    let s = h.stream(c, d);
    let local = h.stream(e, f);
    let ping = h.emit_ack(a, "B", "ping", Payload::empty());
    let req_g = h.register(g, "H"); // G waits on H's answer
    h.register(i, "J"); // J was asked by I
    let out = h.drain();
    out.register_request(hh);
    let to_j = out.register_request(j);
    // D and B wait on node 1 too: the node that vanishes must not matter for them.
    h.emit_ack(b, "A", "pong", Payload::empty());
    h.drain();

    h.node_gone(N2);
    let out = h.drain();
    assert_eq!(out.peer_disconnected(a), 1);
    assert_eq!(
        failed(out.reply(a, ping)),
        RequestError::PeerGone {
            event: "ping".into(),
            target: id("B")
        }
    );
    assert_eq!(out.peer_disconnected(c), 1);
    assert_eq!(out.stream_closed(c), vec![(s, StreamEnd::PeerGone)]);
    assert_eq!(
        failed(out.reply(g, req_g)),
        RequestError::PeerGone {
            event: "P2P_REGISTER".into(),
            target: id("H")
        }
    );
    assert_eq!(out.peer_disconnected(g), 0, "G was not paired");
    assert_eq!(
        out.unregistered(j).len(),
        1,
        "J may have accepted: it is told it is off"
    );
    assert!(
        out.to(e).is_empty() && out.to(f).is_empty(),
        "a local pair is untouched"
    );
    assert!(out.no_errors(), "{out:?}");
    // A: PeerDisconnected, its ack's failure; C: stream closed, PeerDisconnected;
    // G: its registration's failure; J: the notice.
    assert_eq!(out.0.len(), 6, "{out:?}");

    for x in [a, c, g, j] {
        assert_eq!(h.peer(x), None);
    }
    assert_eq!(h.peer(e), Some(f));
    assert_eq!(h.streams_of(e), BTreeSet::from([local]));
    assert_eq!(h.node(N1).stream_ends(local), Some((e.conn, f.conn)));
    assert_eq!(
        h.dir
            .iter()
            .map(|(c, _)| c.as_str().to_owned())
            .collect::<Vec<_>>(),
        vec!["A", "C", "E", "F", "G", "J"],
        "only node 1's clients remain"
    );
    // J's late yes pairs with nobody; the survivors pair among themselves.
    h.answer(j, to_j, Answer::Accept(true));
    assert!(h.drain().is_empty());
    assert_eq!(h.peer(j), None);
    h.pair(a, c);
    let req = h.register(g, "B");
    assert_eq!(
        failed(h.drain().reply(g, req)),
        RequestError::TargetNotConnected(id("B"))
    );
    let _ = (d, i);
}

// ----- the duplicate-id policy across nodes -------------------------------------------------

#[test]
fn replace_across_nodes_closes_the_old_connection_and_frees_its_peer() {
    let mut h = Cluster::new();
    let old = h.connect(N1, "X");
    let b = h.connect(N2, "B");
    h.pair(old, b);
    let s = h.stream(old, b);

    let new = h.connect(N2, "X");
    assert_eq!(h.dir.lookup("X"), Some(new));
    let out = h.drain();
    let to_old = out.to(old);
    assert_eq!(to_old.len(), 2, "{to_old:?}");
    assert!(matches!(
        to_old[0],
        Event::ServerError { message, .. }
            if message == "replaced by a newer connection with clientId 'X'"
    ));
    assert!(matches!(
        to_old[1],
        Event::Close { reason }
            if reason.to_string() == "replaced by a newer connection with clientId 'X'"
    ));
    assert_eq!(out.peer_disconnected(b), 1);
    assert_eq!(out.stream_closed(b), vec![(s, StreamEnd::PeerGone)]);
    assert!(
        out.errors(b).is_empty(),
        "the survivor gets no SERVER_ERROR"
    );
    assert!(out.to(new).is_empty());
    assert_eq!(out.0.len(), 4, "{out:?}");

    // The core of node 1 has forgotten the old connection, as it does locally.
    assert!(
        h.node(N1).connection(old.conn).is_none(),
        "the replaced connection lingers"
    );
    assert!(h.node(N1).is_empty());
    assert_eq!(h.peer(b), None);
    assert!(h.streams_of(b).is_empty());

    // The front end closing the replaced connection later must not take the new entry.
    h.disconnect(old);
    assert_eq!(h.dir.lookup("X"), Some(new));
    assert!(h.drain().is_empty());
    // Commands from the replaced connection are ignored.
    h.register(old, "B");
    h.emit(old, "B", "chat", Payload::empty());
    assert!(h.drain().is_empty());
    assert_eq!(h.pending(), 0);
    // The new connection works normally (a local pair on node 2 now).
    h.pair(new, b);
    assert_eq!(h.conn(b).peer(), Some((new, &id("X"))));
}

#[test]
fn replace_across_nodes_settles_questions_put_to_the_old_connection() {
    let mut h = Cluster::new();
    let a = h.connect(N2, "A");
    let old = h.connect(N1, "T");
    let req = h.register(a, "T");
    h.drain().register_request(old);
    let new = h.connect(N2, "T");
    let out = h.drain();
    assert_eq!(
        failed(out.reply(a, req)),
        RequestError::PeerGone {
            event: "P2P_REGISTER".into(),
            target: id("T")
        }
    );
    assert!(out.errors(a).is_empty());
    assert!(out.to(new).is_empty());
    assert_eq!(h.pending(), 0);
    assert!(h.node(N1).connection(old.conn).is_none());
    // The registration slot is free again, and T is reachable at its new address.
    h.pair(a, new);
}

#[test]
fn reject_across_nodes_refuses_the_newcomer_and_the_first_stays() {
    let mut h = Cluster::with(Config {
        duplicate_policy: DuplicatePolicy::Reject,
        ..Config::default()
    });
    let first = h.connect(N1, "X");
    let b = h.connect(N2, "B");
    h.pair(first, b);
    let err = h.try_connect(N2, "X").unwrap_err();
    assert_eq!(err, ConnectError::Duplicate(id("X")));
    assert_eq!(err.to_string(), "clientId 'X' is already connected");
    assert_eq!(h.dir.lookup("X"), Some(first));
    assert!(
        h.drain().is_empty(),
        "the first connection is not disturbed"
    );
    assert_eq!(h.peer(first), Some(b));
    assert_eq!(h.node(N2).len(), 1, "node 2 admitted nobody");
    h.emit(b, "X", "still", Payload::empty());
    assert_eq!(h.drain().delivered(first).len(), 1);
    // Once the first is gone (released from the shared directory) the id is free again.
    h.disconnect(first);
    assert_eq!(h.drain().peer_disconnected(b), 1);
    let again = h.connect(N2, "X");
    assert_eq!(h.dir.lookup("X"), Some(again));
    h.pair(again, b);
}
