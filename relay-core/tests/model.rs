//! Model-based property tests: the relay is run next to a small reference model of it, and
//! every event the relay puts out is checked against what the model says it must be.
//!
//! Why: `invariants.rs` checks bookkeeping (one reply per request, nothing sent to a closed
//! connection, symmetric pairing); it says nothing about *where* events go or what they carry.
//! A relay that delivered every emit back to its sender, or never ended a stream, kept all of
//! those promises. Here the test itself knows the rules of `docs/PROTOCOL.md` Part 1 and predicts,
//! for every step, the exact events the step must produce.
//!
//! The model holds, written independently of `relay-core/src`:
//! - who is connected, with which clientId and transport, and which connection the
//!   directory names for each id (a newer connection replaces an older one);
//! - who is paired with whom, derived from the relay's replies and the clients' answers
//!   the test gives (`Registered(true)` after the target accepted), and ended by an
//!   unregister or by either end going away;
//! - which held streams (not `Chunked`) each pair was granted, and the requests still owed
//!   a reply, with what each asked and whom it waits on.
//!
//! Each step the model lists the events it expects: the `Deliver` of each emit (to the
//! sender's peer only, carrying the emit's own sequence number), every `Reply` (exactly one
//! per request, with the ack arguments the receiver answered with, `Registered(true)` only
//! after the target accepted), the questions put to clients, `StreamClosed` for every held
//! stream to both ends on unregister and to the survivor on a disconnect, `PeerDisconnected`,
//! `Close` of a replaced connection and the `Unregistered` notices. Anything the relay puts
//! out beyond the list fails the run, and so does anything on the list it does not put out.
//! After each step the relay's own view (`peer_of`, `conn_of`, `client_ids`, `stream_ends`)
//! must equal the model's.
//!
//! To show the checks bite, the run loop can pass the relay's output through a fault
//! injector (an emit delivered to its sender, a `StreamClosed` dropped, a `Reply` lost); the
//! `model_catches_*` tests assert that the checker reports each fault.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{RngAlgorithm, TestError, TestRng, TestRunner};
use relay_core::rmpv::Value;
use relay_core::{
    Answer, ClientId, Command, Config, ConnId, DuplicatePolicy, Event, Outgoing, Payload, Relay,
    Reply, ReqId, StreamEnd, StreamId, StreamKind, Ticket, Transport,
};

const IDS: [&str; 6] = ["A", "B", "C", "D", "E", "F"];
const ACK_TIMEOUT_MS: u64 = 400;
const MAX_MESSAGE_BYTES: usize = 64;
const MAX_STREAMS: usize = 2;
const EVENT: &str = "chat";
const MAX_OPS: usize = 150;
/// Tickets the test remembers per client (older ones are forgotten, i.e. never answered).
const MAX_TICKETS: usize = 12;

fn ack_timeout() -> Duration {
    Duration::from_millis(ACK_TIMEOUT_MS)
}

fn relay_config() -> Config {
    Config {
        duplicate_policy: DuplicatePolicy::Replace,
        ack_timeout: ack_timeout(),
        max_message_bytes: MAX_MESSAGE_BYTES,
        // High enough never to be reached in a run: the model does not track the limit.
        max_pending_per_connection: 1_000,
        max_streams_per_pair: MAX_STREAMS,
        max_clients: 32,
        // The model does not track rate limits; they have tests of their own.
        rate: relay_core::RateLimits::OFF,
        ip: Default::default(),
    }
}

// ----- operations -------------------------------------------------------------------------

/// What an emit carries: a deliverable payload, one over the size limit, or a reserved name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavour {
    Plain,
    Oversized,
    Reserved,
}

/// One step of a run. Selectors (`who`, `target`, `which`) are resolved against the model's
/// state when the step runs, so a shrunk sequence still means something.
#[derive(Debug, Clone)]
enum Op {
    Connect {
        id: usize,
        legacy: bool,
    },
    Disconnect {
        who: usize,
    },
    Register {
        who: usize,
        target: usize,
    },
    Unregister {
        who: usize,
    },
    /// `count` emits in a row before the output is read, so their order is observable.
    Emit {
        who: usize,
        target: usize,
        ack: bool,
        count: usize,
        flavour: Flavour,
    },
    /// A client answers one of the questions it was asked, as its plugin would.
    Answer {
        who: usize,
        which: usize,
        yes: bool,
        oversized: bool,
    },
    OpenStream {
        who: usize,
        target: usize,
    },
    CloseStream {
        who: usize,
        which: usize,
    },
    List {
        who: usize,
    },
    Advance {
        millis: u64,
    },
}

fn flavour() -> impl Strategy<Value = Flavour> {
    prop_oneof![18 => Just(Flavour::Plain), 1 => Just(Flavour::Oversized), 1 => Just(Flavour::Reserved)]
}

fn op() -> impl Strategy<Value = Op> {
    let who = 0usize..64;
    prop_oneof![
        2 => (0..IDS.len(), any::<bool>()).prop_map(|(id, legacy)| Op::Connect { id, legacy }),
        1 => who.clone().prop_map(|who| Op::Disconnect { who }),
        5 => (who.clone(), 0usize..16).prop_map(|(who, target)| Op::Register { who, target }),
        2 => who.clone().prop_map(|who| Op::Unregister { who }),
        6 => (who.clone(), 0usize..10, any::<bool>(), 1usize..=3, flavour()).prop_map(
            |(who, target, ack, count, flavour)| Op::Emit { who, target, ack, count, flavour }
        ),
        10 => (who.clone(), 0usize..64, prop::bool::weighted(0.85), prop::bool::weighted(0.05))
            .prop_map(|(who, which, yes, oversized)| Op::Answer { who, which, yes, oversized }),
        3 => (who.clone(), 0usize..10).prop_map(|(who, target)| Op::OpenStream { who, target }),
        1 => (who.clone(), 0usize..64).prop_map(|(who, which)| Op::CloseStream { who, which }),
        1 => who.prop_map(|who| Op::List { who }),
        3 => prop_oneof![4 => 0u64..100, 1 => 300u64..=500].prop_map(|millis| Op::Advance { millis }),
    ]
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(op(), 1..MAX_OPS)
}

fn pick<T: Copy>(items: &[T], sel: usize) -> Option<T> {
    (!items.is_empty()).then(|| items[sel % items.len()])
}

// ----- fault injection --------------------------------------------------------------------

/// A corruption of the relay's output, to prove the checker notices it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// A `Deliver` for the receiver is addressed to the receiver's peer (the sender) instead.
    EmitToSelf,
    /// A `StreamClosed` is dropped.
    DropStreamClosed,
    /// A `Reply` is dropped.
    LoseReply,
}

/// Sits between the relay and the checker; corrupts every other event its fault applies to
/// (the first, the third, ...).
struct Injector {
    fault: Option<Fault>,
    eligible: u64,
}

impl Injector {
    fn pass(&mut self, relay: &Relay, out: Outgoing) -> Option<Outgoing> {
        let Some(fault) = self.fault else {
            return Some(out);
        };
        let target = match (fault, &out.event) {
            (Fault::EmitToSelf, Event::Deliver { .. }) => match sender_of(relay, out.conn) {
                Some(sender) => Some(sender),
                None => return Some(out),
            },
            (Fault::DropStreamClosed, Event::StreamClosed { .. }) => None,
            (Fault::LoseReply, Event::Reply { .. }) => None,
            _ => return Some(out),
        };
        self.eligible += 1;
        let odd = self.eligible % 2 == 1;
        if !odd {
            return Some(out);
        }
        target.map(|conn| Outgoing { conn, ..out })
    }
}

/// The connection paired with `receiver`, as the relay sees it now.
fn sender_of(relay: &Relay, receiver: ConnId) -> Option<ConnId> {
    let me = relay.client_of(receiver)?;
    let peer = relay.peer_of(me.as_str())?;
    relay.conn_of(peer.as_str())
}

// ----- what a step must produce -----------------------------------------------------------

/// The reply a request must get.
#[derive(Debug, Clone, PartialEq)]
enum Want {
    Registered(bool),
    Unregistered,
    Clients(Vec<String>),
    Ack(Payload),
    Failed,
    StreamOpened { acceptor: ConnId, kind: StreamKind },
    StreamRefused,
}

impl Want {
    fn fits(&self, reply: &Reply) -> bool {
        match (self, reply) {
            (Want::Registered(a), Reply::Registered(b)) => a == b,
            (Want::Unregistered, Reply::Unregistered) => true,
            (Want::Clients(ids), Reply::Clients(page)) => {
                page.next.is_none()
                    && page
                        .ids
                        .iter()
                        .map(ClientId::as_str)
                        .eq(ids.iter().map(String::as_str))
            }
            (Want::Ack(sent), Reply::Ack(got)) => sent == got,
            (Want::Failed, Reply::Failed(_)) => true,
            (Want::StreamOpened { acceptor, kind }, Reply::StreamOpened { kind: k, peer, .. }) => {
                kind == k && peer.conn == *acceptor
            }
            (Want::StreamRefused, Reply::StreamRefused) => true,
            _ => false,
        }
    }
}

/// One event the model expects in the current step.
#[derive(Debug, Clone)]
enum Expect {
    Reply {
        conn: ConnId,
        req: ReqId,
        want: Want,
    },
    Deliver {
        seq: u64,
        from: ConnId,
        to: ConnId,
        ack: Option<ReqId>,
    },
    RegisterRequest {
        to: ConnId,
        from: ConnId,
        req: ReqId,
    },
    StreamRequest {
        to: ConnId,
        from: ConnId,
        req: ReqId,
    },
    /// `tied`: the unregister request this ticket's `Done` completes (None for a notice).
    Unregistered {
        to: ConnId,
        tied: Option<(ConnId, ReqId)>,
    },
    StreamAccepted {
        to: ConnId,
        from: ConnId,
        kind: StreamKind,
    },
    StreamClosed {
        to: ConnId,
        stream: StreamId,
        why: StreamEnd,
    },
    PeerDisconnected {
        to: ConnId,
    },
    Close {
        to: ConnId,
    },
}

/// Who may be sent a `ServerError` in a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Errors {
    /// Any live connection (a request failed; the model does not predict the messages).
    Anywhere,
    /// Nobody: a disconnect is told by `PeerDisconnected` alone.
    Nowhere,
    /// Only the connection being replaced (it is told why).
    Only(ConnId),
}

/// A stream grant the step must complete: the opener's reply and the acceptor's event must
/// name the same stream.
#[derive(Debug, Clone, Copy)]
struct Grant {
    opener: ConnId,
    acceptor: ConnId,
    kind: StreamKind,
}

struct Step {
    label: String,
    expects: Vec<Expect>,
    errors: Errors,
    /// A connection closed in this step: it may still get its `ServerError` and `Close`.
    closing: Option<ConnId>,
    grant: Option<Grant>,
    opened: Option<StreamId>,
    accepted: Option<StreamId>,
}

impl Step {
    fn new(label: String) -> Self {
        Self {
            label,
            expects: Vec::new(),
            errors: Errors::Anywhere,
            closing: None,
            grant: None,
            opened: None,
            accepted: None,
        }
    }

    fn expect(&mut self, expect: Expect) {
        self.expects.push(expect);
    }

    fn reply(&mut self, conn: ConnId, req: ReqId, want: Want) {
        self.expect(Expect::Reply { conn, req, want });
    }

    /// Removes and returns the first expectation `matching` accepts.
    fn take(&mut self, matching: impl Fn(&Expect) -> bool) -> Option<Expect> {
        let at = self.expects.iter().position(matching)?;
        Some(self.expects.remove(at))
    }
}

// ----- the model --------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Register,
    Ack,
    Unregister,
    Stream,
}

impl Kind {
    /// The reply a request gets when its time runs out or the one it waits on goes away.
    fn unanswered(self) -> Want {
        match self {
            Kind::Unregister => Want::Unregistered,
            Kind::Register | Kind::Ack | Kind::Stream => Want::Failed,
        }
    }
}

/// A request owed a reply that depends on another client.
#[derive(Debug, Clone, Copy)]
struct Pending {
    kind: Kind,
    to: ConnId,
    deadline: Instant,
}

/// What answering a ticket means, by the request it serves.
#[derive(Debug, Clone, Copy)]
enum Meaning {
    Register { from: ConnId, req: ReqId },
    Stream { from: ConnId, req: ReqId },
    Ack { from: ConnId, req: ReqId },
    Unregister { tied: Option<(ConnId, ReqId)> },
}

struct Client {
    id: String,
    transport: Transport,
    tickets: Vec<(Ticket, Meaning)>,
}

#[derive(Debug, Clone, Copy)]
struct HeldStream {
    stream: StreamId,
    opener: ConnId,
    acceptor: ConnId,
}

/// How often each kind of expected event was seen, to show the generator reaches them.
type Stats = BTreeMap<String, usize>;

struct Model {
    now: Instant,
    live: BTreeMap<ConnId, Client>,
    /// Every connection ever admitted, with its id, in order.
    names: BTreeMap<ConnId, String>,
    directory: BTreeMap<String, ConnId>,
    /// Symmetric: both ends are keys.
    peers: BTreeMap<ConnId, ConnId>,
    held: BTreeMap<(ConnId, ConnId), Vec<HeldStream>>,
    pending: BTreeMap<(ConnId, ReqId), Pending>,
    replied: HashSet<(ConnId, ReqId)>,
    /// Every emit the relay must deliver: sequence number -> (sender, receiver).
    emits: BTreeMap<u64, (ConnId, ConnId)>,
    last_delivered: BTreeMap<ConnId, u64>,
    streams_seen: Vec<StreamId>,
    next_req: u64,
    next_seq: u64,
    next_ack: u64,
    stats: Stats,
}

fn pair_key(a: ConnId, b: ConnId) -> (ConnId, ConnId) {
    (a.min(b), a.max(b))
}

fn emit_args(seq: u64, flavour: Flavour) -> Payload {
    let pad = if flavour == Flavour::Oversized {
        MAX_MESSAGE_BYTES
    } else {
        8
    };
    Payload::Values(vec![Value::from(seq), Value::Binary(vec![seq as u8; pad])])
}

/// The emit sequence number a payload carries.
fn seq_of(args: &Payload) -> Option<u64> {
    let values = args.clone().into_values().ok()?;
    values.first()?.as_u64()
}

fn ack_args(n: u64, oversized: bool) -> Payload {
    let mut values = vec![Value::from("ack"), Value::from(n)];
    if oversized {
        values.push(Value::Binary(vec![0; MAX_MESSAGE_BYTES]));
    }
    Payload::Values(values)
}

/// The name an event is counted under in [`Stats`].
fn outcome(event: &Event) -> &'static str {
    match event {
        Event::Reply { reply, .. } => match reply {
            Reply::Registered(true) => "Registered(true)",
            Reply::Registered(false) => "Registered(false)",
            Reply::Unregistered => "Reply::Unregistered",
            Reply::Clients(_) => "Clients",
            Reply::Ack(_) => "Ack",
            Reply::StreamOpened {
                kind: StreamKind::Spliced,
                ..
            } => "StreamOpened(Spliced)",
            Reply::StreamOpened {
                kind: StreamKind::Bridged,
                ..
            } => "StreamOpened(Bridged)",
            Reply::StreamOpened {
                kind: StreamKind::Chunked,
                ..
            } => "StreamOpened(Chunked)",
            Reply::StreamRefused => "StreamRefused",
            Reply::Failed(_) => "Failed",
        },
        Event::Deliver { ticket: None, .. } => "Deliver",
        Event::Deliver {
            ticket: Some(_), ..
        } => "Deliver with ack",
        Event::RegisterRequest { .. } => "RegisterRequest",
        Event::Unregistered { .. } => "Unregistered",
        Event::StreamRequest { .. } => "StreamRequest",
        Event::StreamAccepted { .. } => "StreamAccepted",
        Event::StreamClosed {
            why: StreamEnd::Unpaired,
            ..
        } => "StreamClosed(Unpaired)",
        Event::StreamClosed {
            why: StreamEnd::PeerGone,
            ..
        } => "StreamClosed(PeerGone)",
        Event::PeerDisconnected => "PeerDisconnected",
        Event::Close { .. } => "Close",
        Event::ServerError { .. } => "ServerError",
        _ => "other",
    }
}

impl Model {
    fn new(now: Instant) -> Self {
        Self {
            now,
            live: BTreeMap::new(),
            names: BTreeMap::new(),
            directory: BTreeMap::new(),
            peers: BTreeMap::new(),
            held: BTreeMap::new(),
            pending: BTreeMap::new(),
            replied: HashSet::new(),
            emits: BTreeMap::new(),
            last_delivered: BTreeMap::new(),
            streams_seen: Vec::new(),
            next_req: 0,
            next_seq: 0,
            next_ack: 0,
            stats: Stats::new(),
        }
    }

    // ----- small queries ------------------------------------------------------------------

    fn name(&self, conn: ConnId) -> String {
        match self.names.get(&conn) {
            Some(id) => format!("{id}#{}", conn.0),
            None => format!("#{}", conn.0),
        }
    }

    fn is_live(&self, conn: ConnId) -> bool {
        self.live.contains_key(&conn)
    }

    fn id_of(&self, conn: ConnId) -> &str {
        &self.names[&conn]
    }

    fn peer(&self, conn: ConnId) -> Option<ConnId> {
        self.peers.get(&conn).copied()
    }

    fn transport(&self, conn: ConnId) -> Transport {
        self.live[&conn].transport
    }

    fn registering(&self, conn: ConnId) -> bool {
        self.pending
            .iter()
            .any(|((c, _), p)| *c == conn && p.kind == Kind::Register)
    }

    fn held_count(&self, a: ConnId, b: ConnId) -> usize {
        self.held.get(&pair_key(a, b)).map_or(0, Vec::len)
    }

    fn is_open(&self, conn: ConnId, req: ReqId) -> bool {
        self.pending.contains_key(&(conn, req))
    }

    fn new_req(&mut self) -> ReqId {
        self.next_req += 1;
        ReqId(self.next_req)
    }

    // ----- selectors ----------------------------------------------------------------------

    /// Mostly a live connection; now and then any connection ever admitted.
    fn pick_conn(&self, sel: usize) -> Option<ConnId> {
        let ever: Vec<ConnId> = self.names.keys().copied().collect();
        if sel % 16 == 15 {
            return pick(&ever, sel / 16);
        }
        let live: Vec<ConnId> = self.live.keys().copied().collect();
        pick(&live, sel).or_else(|| pick(&ever, sel))
    }

    /// Mostly a paired connection, for requests that need a peer.
    fn pick_paired(&self, sel: usize) -> Option<ConnId> {
        let paired: Vec<ConnId> = self.peers.keys().copied().collect();
        match sel % 4 {
            0 => self.pick_conn(sel / 4),
            _ => pick(&paired, sel / 4).or_else(|| self.pick_conn(sel / 4)),
        }
    }

    /// A target for a pairing request: mostly another connected id, sometimes oneself, an
    /// id nobody has, or an invalid one.
    fn register_target(&self, conn: ConnId, sel: usize) -> String {
        let me = self.names.get(&conn).map(String::as_str).unwrap_or("");
        let others: Vec<&str> = self
            .directory
            .keys()
            .map(String::as_str)
            .filter(|id| *id != me)
            .collect();
        match sel {
            0..=11 => pick(&others, sel).unwrap_or("Z").to_owned(),
            12 => me.to_owned(),
            13 => String::new(),
            _ => "Z".to_owned(),
        }
    }

    /// A target for an emit or stream: mostly the peer, sometimes any id.
    fn peer_target(&self, conn: ConnId, sel: usize) -> String {
        match self.peer(conn) {
            Some(peer) if sel < 8 => self.id_of(peer).to_owned(),
            _ => IDS[sel % IDS.len()].to_owned(),
        }
    }

    /// A question some live client was asked: often its newest, sometimes an older one.
    fn take_ticket(&mut self, who: usize, which: usize) -> Option<(ConnId, Ticket, Meaning)> {
        let holders: Vec<ConnId> = self
            .live
            .iter()
            .filter(|(_, c)| !c.tickets.is_empty())
            .map(|(conn, _)| *conn)
            .collect();
        let conn = pick(&holders, who)?;
        let tickets = &mut self.live.get_mut(&conn).expect("a holder is live").tickets;
        let at = if which % 2 == 1 {
            which % tickets.len()
        } else {
            tickets.len() - 1
        };
        let (ticket, meaning) = tickets.remove(at);
        Some((conn, ticket, meaning))
    }

    fn remember_ticket(&mut self, conn: ConnId, ticket: Ticket, meaning: Meaning) {
        let client = self
            .live
            .get_mut(&conn)
            .expect("events go to live connections");
        client.tickets.push((ticket, meaning));
        if client.tickets.len() > MAX_TICKETS {
            client.tickets.remove(0);
        }
    }

    // ----- state changes ------------------------------------------------------------------

    fn admit(&mut self, conn: ConnId, id: &str, transport: Transport) {
        self.names.insert(conn, id.to_owned());
        self.directory.insert(id.to_owned(), conn);
        let client = Client {
            id: id.to_owned(),
            transport,
            tickets: Vec::new(),
        };
        self.live.insert(conn, client);
    }

    fn pair(&mut self, a: ConnId, b: ConnId) {
        self.peers.insert(a, b);
        self.peers.insert(b, a);
    }

    /// Ends `a`'s pairing, returning the peer and the streams the pair held.
    fn unpair(&mut self, a: ConnId) -> Option<(ConnId, Vec<HeldStream>)> {
        let b = self.peers.remove(&a)?;
        self.peers.remove(&b);
        let held = self.held.remove(&pair_key(a, b)).unwrap_or_default();
        Some((b, held))
    }

    fn await_reply(&mut self, conn: ConnId, req: ReqId, kind: Kind, to: ConnId) {
        let deadline = self.now + ack_timeout();
        self.pending
            .insert((conn, req), Pending { kind, to, deadline });
    }

    /// A pending request is settled in this step with `want`.
    fn resolve(&mut self, step: &mut Step, conn: ConnId, req: ReqId, want: Want) {
        self.pending.remove(&(conn, req));
        step.reply(conn, req, want);
    }

    fn close_streams(&mut self, step: &mut Step, to: ConnId, held: &[HeldStream], why: StreamEnd) {
        for h in held {
            step.expect(Expect::StreamClosed {
                to,
                stream: h.stream,
                why,
            });
        }
    }

    // ----- planning: what each command must cause -----------------------------------------

    fn plan_register(&mut self, step: &mut Step, conn: ConnId, target: &str) -> Command {
        let req = self.new_req();
        if self.is_live(conn) {
            match self.register_to(conn, target) {
                None => step.reply(conn, req, Want::Failed),
                Some(to) => {
                    self.await_reply(conn, req, Kind::Register, to);
                    if self.peers.contains_key(&to) {
                        // A paired target's plugin would answer false: the relay says so.
                        self.resolve(step, conn, req, Want::Registered(false));
                    } else {
                        step.expect(Expect::RegisterRequest {
                            to,
                            from: conn,
                            req,
                        });
                    }
                }
            }
        }
        Command::Register {
            req,
            target: target.to_owned(),
        }
    }

    /// The connection a pairing request goes to, or None when it fails at once.
    fn register_to(&self, conn: ConnId, target: &str) -> Option<ConnId> {
        let refused = target == self.id_of(conn)
            || self.peers.contains_key(&conn)
            || self.registering(conn)
            || ClientId::new(target).is_err();
        if refused {
            return None;
        }
        self.directory.get(target).copied()
    }

    fn plan_unregister(&mut self, step: &mut Step, conn: ConnId) -> Command {
        let req = self.new_req();
        if self.is_live(conn) {
            match self.unpair(conn) {
                None => step.reply(conn, req, Want::Failed),
                Some((peer, held)) => {
                    self.close_streams(step, conn, &held, StreamEnd::Unpaired);
                    self.close_streams(step, peer, &held, StreamEnd::Unpaired);
                    step.expect(Expect::Unregistered {
                        to: conn,
                        tied: None,
                    });
                    let tied = Some((conn, req));
                    step.expect(Expect::Unregistered { to: peer, tied });
                    self.await_reply(conn, req, Kind::Unregister, peer);
                }
            }
        }
        Command::Unregister { req }
    }

    fn plan_emit(
        &mut self,
        step: &mut Step,
        conn: ConnId,
        target: &str,
        ack: bool,
        flavour: Flavour,
    ) -> Command {
        self.next_seq += 1;
        let seq = self.next_seq;
        let args = emit_args(seq, flavour);
        let event = if flavour == Flavour::Reserved {
            "disconnect"
        } else {
            EVENT
        };
        let req = ack.then(|| self.new_req());
        if self.is_live(conn) {
            let peer = self.peer(conn).filter(|p| self.id_of(*p) == target);
            match (peer, flavour) {
                (Some(to), Flavour::Plain) => {
                    self.emits.insert(seq, (conn, to));
                    step.expect(Expect::Deliver {
                        seq,
                        from: conn,
                        to,
                        ack: req,
                    });
                    if let Some(req) = req {
                        self.await_reply(conn, req, Kind::Ack, to);
                    }
                }
                _ => {
                    if let Some(req) = req {
                        step.reply(conn, req, Want::Failed);
                    }
                }
            }
        }
        Command::Emit {
            target: target.to_owned(),
            event: event.to_owned(),
            args,
            ack: req,
        }
    }

    fn plan_open_stream(&mut self, step: &mut Step, conn: ConnId, target: &str) -> Command {
        let req = self.new_req();
        if self.is_live(conn) {
            let peer = self.peer(conn).filter(|p| self.id_of(*p) == target);
            match peer {
                Some(to) if self.held_count(conn, to) < MAX_STREAMS => {
                    self.await_reply(conn, req, Kind::Stream, to);
                    step.expect(Expect::StreamRequest {
                        to,
                        from: conn,
                        req,
                    });
                }
                _ => step.reply(conn, req, Want::Failed),
            }
        }
        Command::OpenStream {
            req,
            target: target.to_owned(),
        }
    }

    /// Closes one of the pair's held streams (or names a stale or foreign one).
    fn plan_close_stream(&mut self, conn: ConnId, which: usize) -> Option<Command> {
        let peer = self.peer(conn).filter(|_| self.is_live(conn));
        let held: Vec<StreamId> = peer
            .and_then(|p| self.held.get(&pair_key(conn, p)))
            .map(|h| h.iter().map(|s| s.stream).collect())
            .unwrap_or_default();
        let stream = match which % 4 {
            0 => pick(&self.streams_seen, which / 4),
            _ => pick(&held, which / 4).or_else(|| pick(&self.streams_seen, which / 4)),
        }?;
        if let Some(peer) = peer {
            if let Some(list) = self.held.get_mut(&pair_key(conn, peer)) {
                list.retain(|s| s.stream != stream);
            }
        }
        Some(Command::CloseStream { stream })
    }

    fn plan_list(&mut self, step: &mut Step, conn: ConnId) -> Command {
        let req = self.new_req();
        if self.is_live(conn) {
            let ids = self.directory.keys().cloned().collect();
            step.reply(conn, req, Want::Clients(ids));
        }
        Command::List {
            req,
            after: None,
            limit: None,
        }
    }

    /// `conn` answers a question it was asked, as its plugin would.
    fn plan_answer(
        &mut self,
        step: &mut Step,
        conn: ConnId,
        meaning: Meaning,
        yes: bool,
        oversized: bool,
    ) -> Answer {
        match meaning {
            Meaning::Register { from, req } => {
                if self.is_open(from, req) {
                    self.accept_pairing(step, conn, from, req, yes);
                }
                Answer::Accept(yes)
            }
            Meaning::Stream { from, req } => {
                if self.is_open(from, req) {
                    self.accept_stream(step, conn, from, req, yes);
                }
                Answer::Accept(yes)
            }
            Meaning::Ack { from, req } => {
                self.next_ack += 1;
                let args = ack_args(self.next_ack, oversized);
                if self.is_open(from, req) {
                    let want = if oversized {
                        Want::Failed
                    } else {
                        Want::Ack(args.clone())
                    };
                    self.resolve(step, from, req, want);
                }
                Answer::Ack(args)
            }
            Meaning::Unregister { tied } => {
                if let Some((from, req)) = tied.filter(|(c, r)| self.is_open(*c, *r)) {
                    self.resolve(step, from, req, Want::Unregistered);
                }
                Answer::Done
            }
        }
    }

    /// Target `to` answers requester `from`'s pairing question.
    fn accept_pairing(&mut self, step: &mut Step, to: ConnId, from: ConnId, req: ReqId, yes: bool) {
        if !yes || self.peers.contains_key(&to) {
            self.resolve(step, from, req, Want::Registered(false));
        } else if self.peers.contains_key(&from) {
            // The requester paired elsewhere meanwhile: the target is told it is off.
            self.resolve(step, from, req, Want::Registered(false));
            step.expect(Expect::Unregistered { to, tied: None });
        } else {
            self.pair(from, to);
            self.resolve(step, from, req, Want::Registered(true));
        }
    }

    /// `acceptor` answers `opener`'s stream request.
    fn accept_stream(
        &mut self,
        step: &mut Step,
        acceptor: ConnId,
        opener: ConnId,
        req: ReqId,
        yes: bool,
    ) {
        if !yes {
            return self.resolve(step, opener, req, Want::StreamRefused);
        }
        if self.peer(acceptor) != Some(opener) || self.held_count(opener, acceptor) >= MAX_STREAMS {
            return self.resolve(step, opener, req, Want::Failed);
        }
        let kind = StreamKind::between(self.transport(opener), self.transport(acceptor));
        self.resolve(step, opener, req, Want::StreamOpened { acceptor, kind });
        step.expect(Expect::StreamAccepted {
            to: acceptor,
            from: opener,
            kind,
        });
        step.grant = Some(Grant {
            opener,
            acceptor,
            kind,
        });
    }

    /// `gone` disconnected or was replaced: everything it was part of ends.
    fn plan_departure(&mut self, step: &mut Step, gone: ConnId) {
        let Some(client) = self.live.remove(&gone) else {
            return;
        };
        if self.directory.get(&client.id) == Some(&gone) {
            self.directory.remove(&client.id);
        }
        if let Some((peer, held)) = self.unpair(gone) {
            step.expect(Expect::PeerDisconnected { to: peer });
            self.close_streams(step, peer, &held, StreamEnd::PeerGone);
        }
        let mine: Vec<(ConnId, ReqId)> = self
            .pending
            .keys()
            .filter(|(c, _)| *c == gone)
            .copied()
            .collect();
        for key in mine {
            let p = self.pending.remove(&key).expect("listed");
            // A target still holding this pairing question learns it is off.
            if p.kind == Kind::Register && self.is_live(p.to) && !self.peers.contains_key(&p.to) {
                step.expect(Expect::Unregistered {
                    to: p.to,
                    tied: None,
                });
            }
        }
        let waiting: Vec<((ConnId, ReqId), Kind)> = self
            .pending
            .iter()
            .filter(|(_, p)| p.to == gone)
            .map(|(key, p)| (*key, p.kind))
            .collect();
        for ((conn, req), kind) in waiting {
            self.resolve(step, conn, req, kind.unanswered());
        }
    }

    /// Time moves on: every request past its deadline is answered.
    fn plan_advance(&mut self, step: &mut Step, millis: u64) {
        self.now += Duration::from_millis(millis);
        let now = self.now;
        let due: Vec<((ConnId, ReqId), Pending)> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(key, p)| (*key, *p))
            .collect();
        for ((conn, req), p) in due {
            self.count("timeout");
            self.resolve(step, conn, req, p.kind.unanswered());
            if p.kind == Kind::Register && !self.peers.contains_key(&p.to) {
                step.expect(Expect::Unregistered {
                    to: p.to,
                    tied: None,
                });
            }
        }
    }

    // ----- observing: matching what the relay put out -------------------------------------

    fn count(&mut self, what: &str) {
        *self.stats.entry(what.to_owned()).or_default() += 1;
    }

    fn observe(&mut self, step: &mut Step, out: Outgoing) -> Result<(), TestCaseError> {
        let conn = out.conn;
        self.check_addressee(step, &out)?;
        self.count(outcome(&out.event));
        match out.event {
            Event::Reply { req, reply } => self.saw_reply(step, conn, req, reply),
            Event::Deliver {
                event,
                args,
                ticket,
            } => self.saw_deliver(step, conn, &event, &args, ticket),
            Event::RegisterRequest { ticket, from } => {
                self.saw_register_request(step, conn, ticket, &from)
            }
            Event::StreamRequest { ticket, from } => {
                self.saw_stream_request(step, conn, ticket, &from)
            }
            Event::Unregistered { ticket } => self.saw_unregistered(step, conn, ticket),
            Event::StreamAccepted { stream, from, kind } => {
                self.saw_stream_accepted(step, conn, stream, &from, kind)
            }
            Event::StreamClosed { stream, why } => self.saw_stream_closed(step, conn, stream, why),
            Event::PeerDisconnected => self.saw_simple(
                step,
                conn,
                "PeerDisconnected",
                |e| matches!(e, Expect::PeerDisconnected { to } if *to == conn),
            ),
            Event::Close { .. } => self.saw_simple(
                step,
                conn,
                "Close",
                |e| matches!(e, Expect::Close { to } if *to == conn),
            ),
            Event::ServerError { message, .. } => self.saw_server_error(step, conn, &message),
            other => self.unexpected(step, conn, &format!("{other:?}")),
        }
    }

    fn unexpected(&self, step: &Step, conn: ConnId, what: &str) -> Result<(), TestCaseError> {
        Err(TestCaseError::fail(format!(
            "after `{}`: unexpected {what} to {}",
            step.label,
            self.name(conn)
        )))
    }

    fn check_addressee(&self, step: &Step, out: &Outgoing) -> Result<(), TestCaseError> {
        let closing = step.closing == Some(out.conn)
            && matches!(out.event, Event::Close { .. } | Event::ServerError { .. });
        if self.is_live(out.conn) || closing {
            return Ok(());
        }
        Err(TestCaseError::fail(format!(
            "after `{}`: {:?} addressed to {}, which is not connected",
            step.label,
            out.event,
            self.name(out.conn)
        )))
    }

    fn saw_reply(
        &mut self,
        step: &mut Step,
        conn: ConnId,
        req: ReqId,
        reply: Reply,
    ) -> Result<(), TestCaseError> {
        let found = step.take(
            |e| matches!(e, Expect::Reply { conn: c, req: r, .. } if *c == conn && *r == req),
        );
        let Some(Expect::Reply { want, .. }) = found else {
            let why = if self.replied.contains(&(conn, req)) {
                "a second reply"
            } else if self.is_open(conn, req) {
                "a reply before its answer came"
            } else {
                "a reply nobody asked for"
            };
            return self.unexpected(step, conn, &format!("{why} to {req:?}: {reply:?}"));
        };
        prop_assert!(
            want.fits(&reply),
            "after `{}`: {} got {:?} for {:?}, expected {:?}",
            step.label,
            self.name(conn),
            reply,
            req,
            want
        );
        self.replied.insert((conn, req));
        if let Reply::StreamOpened { stream, .. } = reply {
            step.opened = Some(stream);
        }
        Ok(())
    }

    fn saw_deliver(
        &mut self,
        step: &mut Step,
        conn: ConnId,
        event: &str,
        args: &Payload,
        ticket: Option<Ticket>,
    ) -> Result<(), TestCaseError> {
        let Some(seq) = seq_of(args) else {
            return self.unexpected(
                step,
                conn,
                &format!("Deliver of args no emit sent: {args:?}"),
            );
        };
        let found = step.take(|e| matches!(e, Expect::Deliver { seq: s, .. } if *s == seq));
        let Some(Expect::Deliver { from, to, ack, .. }) = found else {
            let why = if self.emits.contains_key(&seq) {
                "again"
            } else {
                "though it was refused"
            };
            return self.unexpected(step, conn, &format!("Deliver of emit #{seq} ({why})"));
        };
        prop_assert!(
            conn != from,
            "emit #{} from {} was delivered back to its sender instead of its peer {}",
            seq,
            self.name(from),
            self.name(to)
        );
        prop_assert!(
            conn == to,
            "emit #{} from {} was delivered to {}, not to {} (its peer when it emitted)",
            seq,
            self.name(from),
            self.name(conn),
            self.name(to)
        );
        prop_assert_eq!(event, EVENT, "emit #{} arrived under another name", seq);
        prop_assert_eq!(
            ticket.is_some(),
            ack.is_some(),
            "emit #{}: ack wanted {:?}, ticket {:?}",
            seq,
            ack,
            ticket
        );
        let last = self.last_delivered.insert(from, seq).unwrap_or(0);
        prop_assert!(
            last < seq,
            "emits from {} arrived out of order: #{} after #{}",
            self.name(from),
            seq,
            last
        );
        if let (Some(ticket), Some(req)) = (ticket, ack) {
            self.remember_ticket(conn, ticket, Meaning::Ack { from, req });
        }
        Ok(())
    }

    fn saw_register_request(
        &mut self,
        step: &mut Step,
        conn: ConnId,
        ticket: Ticket,
        from: &ClientId,
    ) -> Result<(), TestCaseError> {
        let found = step.take(|e| matches!(e, Expect::RegisterRequest { to, .. } if *to == conn));
        let Some(Expect::RegisterRequest {
            from: asker, req, ..
        }) = found
        else {
            return self.unexpected(step, conn, &format!("RegisterRequest from {from}"));
        };
        prop_assert_eq!(
            from.as_str(),
            self.id_of(asker),
            "RegisterRequest names the wrong requester"
        );
        self.remember_ticket(conn, ticket, Meaning::Register { from: asker, req });
        Ok(())
    }

    fn saw_stream_request(
        &mut self,
        step: &mut Step,
        conn: ConnId,
        ticket: Ticket,
        from: &ClientId,
    ) -> Result<(), TestCaseError> {
        let found = step.take(|e| matches!(e, Expect::StreamRequest { to, .. } if *to == conn));
        let Some(Expect::StreamRequest {
            from: opener, req, ..
        }) = found
        else {
            return self.unexpected(step, conn, &format!("StreamRequest from {from}"));
        };
        prop_assert_eq!(
            from.as_str(),
            self.id_of(opener),
            "StreamRequest names the wrong opener"
        );
        self.remember_ticket(conn, ticket, Meaning::Stream { from: opener, req });
        Ok(())
    }

    fn saw_unregistered(
        &mut self,
        step: &mut Step,
        conn: ConnId,
        ticket: Ticket,
    ) -> Result<(), TestCaseError> {
        let found = step.take(|e| matches!(e, Expect::Unregistered { to, .. } if *to == conn));
        let Some(Expect::Unregistered { tied, .. }) = found else {
            return self.unexpected(step, conn, "Unregistered");
        };
        self.count(if tied.is_some() {
            "Unregistered (peer's unregister)"
        } else {
            "Unregistered (notice)"
        });
        self.remember_ticket(conn, ticket, Meaning::Unregister { tied });
        Ok(())
    }

    fn saw_stream_accepted(
        &mut self,
        step: &mut Step,
        conn: ConnId,
        stream: StreamId,
        from: &ClientId,
        kind: StreamKind,
    ) -> Result<(), TestCaseError> {
        let found = step.take(|e| matches!(e, Expect::StreamAccepted { to, .. } if *to == conn));
        let Some(Expect::StreamAccepted {
            from: opener,
            kind: want,
            ..
        }) = found
        else {
            return self.unexpected(
                step,
                conn,
                &format!("StreamAccepted {stream:?} from {from}"),
            );
        };
        prop_assert_eq!(
            from.as_str(),
            self.id_of(opener),
            "StreamAccepted names the wrong opener"
        );
        prop_assert_eq!(kind, want, "{:?} has the wrong kind", stream);
        step.accepted = Some(stream);
        Ok(())
    }

    fn saw_stream_closed(
        &mut self,
        step: &mut Step,
        conn: ConnId,
        stream: StreamId,
        why: StreamEnd,
    ) -> Result<(), TestCaseError> {
        let found = step.take(|e| matches!(e, Expect::StreamClosed { to, stream: s, .. } if *to == conn && *s == stream));
        let Some(Expect::StreamClosed { why: want, .. }) = found else {
            return self.unexpected(step, conn, &format!("StreamClosed {stream:?} ({why:?})"));
        };
        prop_assert_eq!(why, want, "{:?} closed for the wrong reason", stream);
        Ok(())
    }

    fn saw_simple(
        &mut self,
        step: &mut Step,
        conn: ConnId,
        what: &str,
        matching: impl Fn(&Expect) -> bool,
    ) -> Result<(), TestCaseError> {
        if step.take(matching).is_none() {
            return self.unexpected(step, conn, what);
        }
        Ok(())
    }

    fn saw_server_error(
        &self,
        step: &Step,
        conn: ConnId,
        message: &str,
    ) -> Result<(), TestCaseError> {
        let allowed = match step.errors {
            Errors::Anywhere => true,
            Errors::Nowhere => false,
            Errors::Only(c) => c == conn,
        };
        if allowed {
            return Ok(());
        }
        self.unexpected(step, conn, &format!("ServerError '{message}'"))
    }

    /// Everything the step had to produce was produced.
    fn check_complete(&self, step: &Step) -> Result<(), TestCaseError> {
        if step.expects.is_empty() {
            return Ok(());
        }
        let missing: Vec<String> = step.expects.iter().map(|e| self.describe(e)).collect();
        Err(TestCaseError::fail(format!(
            "after `{}`, the relay never produced: {}",
            step.label,
            missing.join("; ")
        )))
    }

    fn describe(&self, expect: &Expect) -> String {
        let n = |c: &ConnId| self.name(*c);
        match expect {
            Expect::Reply { conn, req, want } => {
                format!("Reply {want:?} to {} for {req:?}", n(conn))
            }
            Expect::Deliver { seq, from, to, .. } => {
                format!("Deliver of emit #{seq} from {} to {}", n(from), n(to))
            }
            Expect::RegisterRequest { to, from, .. } => {
                format!("RegisterRequest from {} to {}", n(from), n(to))
            }
            Expect::StreamRequest { to, from, .. } => {
                format!("StreamRequest from {} to {}", n(from), n(to))
            }
            Expect::Unregistered { to, .. } => format!("Unregistered to {}", n(to)),
            Expect::StreamAccepted { to, from, .. } => {
                format!("StreamAccepted from {} to {}", n(from), n(to))
            }
            Expect::StreamClosed { to, stream, why } => {
                format!("StreamClosed {stream:?} ({why:?}) to {}", n(to))
            }
            Expect::PeerDisconnected { to } => format!("PeerDisconnected to {}", n(to)),
            Expect::Close { to } => format!("Close to {}", n(to)),
        }
    }

    /// A granted stream: both ends name the same id; a held one joins the pair's streams.
    fn settle_grant(&mut self, step: &Step) -> Result<(), TestCaseError> {
        let Some(Grant {
            opener,
            acceptor,
            kind,
        }) = step.grant
        else {
            return Ok(());
        };
        let stream = match (step.opened, step.accepted) {
            (Some(a), Some(b)) if a == b => a,
            other => {
                let ids = format!("{other:?}");
                return Err(TestCaseError::fail(format!(
                    "opener and acceptor got different streams: {ids}"
                )));
            }
        };
        prop_assert!(
            !self.streams_seen.contains(&stream),
            "{:?} granted twice",
            stream
        );
        self.streams_seen.push(stream);
        if kind.is_held() {
            let held = HeldStream {
                stream,
                opener,
                acceptor,
            };
            self.held
                .entry(pair_key(opener, acceptor))
                .or_default()
                .push(held);
        }
        Ok(())
    }

    // ----- comparing the relay's own view with the model ----------------------------------

    fn check_state(&self, relay: &Relay) -> Result<(), TestCaseError> {
        if let Err(broken) = relay.check_invariants() {
            return Err(TestCaseError::fail(format!("invariant broken: {broken}")));
        }
        let listed: Vec<String> = relay.client_ids().iter().map(|id| id.to_string()).collect();
        let ids: Vec<String> = self.directory.keys().cloned().collect();
        prop_assert_eq!(listed, ids, "connected ids differ");
        for (conn, client) in &self.live {
            prop_assert_eq!(
                relay.conn_of(&client.id),
                Some(*conn),
                "directory entry of {}",
                &client.id
            );
            let relay_peer = relay.peer_of(&client.id).map(|p| p.to_string());
            let model_peer = self.peer(*conn).map(|p| self.id_of(p).to_owned());
            prop_assert_eq!(
                relay_peer,
                model_peer,
                "the relay's peer of {} differs from the pairing its replies described",
                self.name(*conn)
            );
        }
        for conn in self.names.keys().filter(|c| !self.is_live(**c)) {
            prop_assert_eq!(
                relay.client_of(*conn),
                None,
                "{} outlived its end",
                self.name(*conn)
            );
        }
        self.check_streams(relay)
    }

    fn check_streams(&self, relay: &Relay) -> Result<(), TestCaseError> {
        let held: Vec<&HeldStream> = self.held.values().flatten().collect();
        for h in &held {
            prop_assert_eq!(
                relay.stream_ends(h.stream),
                Some((h.opener, h.acceptor)),
                "ends of {:?}",
                h.stream
            );
        }
        for stream in &self.streams_seen {
            if !held.iter().any(|h| h.stream == *stream) {
                prop_assert_eq!(
                    relay.stream_ends(*stream),
                    None,
                    "{:?} is still held",
                    stream
                );
            }
        }
        Ok(())
    }
}

// ----- the run loop -----------------------------------------------------------------------

/// The relay, the model beside it, and the (optional) fault between the relay's output and
/// the checker.
struct Harness {
    relay: Relay,
    model: Model,
    faults: Injector,
}

impl Harness {
    fn new(fault: Option<Fault>) -> Self {
        Self {
            relay: Relay::new(relay_config()),
            model: Model::new(Instant::now()),
            faults: Injector { fault, eligible: 0 },
        }
    }

    /// Four clients (two of each transport), the operations, then time runs out and
    /// everyone leaves.
    fn run(&mut self, ops: &[Op]) -> Result<(), TestCaseError> {
        for (id, legacy) in [(0, false), (1, true), (2, false), (3, true)] {
            self.step(&Op::Connect { id, legacy })?;
        }
        for op in ops {
            self.step(op)?;
        }
        self.finish()
    }

    fn finish(&mut self) -> Result<(), TestCaseError> {
        for _ in 0..3 {
            self.step(&Op::Advance {
                millis: ACK_TIMEOUT_MS + 1,
            })?;
        }
        prop_assert!(self.model.pending.is_empty(), "requests left unanswered");
        prop_assert_eq!(
            self.relay.poll_timeout(),
            None,
            "deadlines left after time ran out"
        );
        let live: Vec<ConnId> = self.model.live.keys().copied().collect();
        for conn in live {
            self.leave(conn)?;
        }
        prop_assert!(self.relay.is_empty());
        prop_assert_eq!(self.relay.pending_len(), 0);
        Ok(())
    }

    fn leave(&mut self, conn: ConnId) -> Result<(), TestCaseError> {
        let mut step = Step::new(format!("{} disconnects", self.model.name(conn)));
        self.disconnect(&mut step, conn);
        self.conclude(step)
    }

    fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        let mut step = Step::new(format!("{op:?}"));
        self.apply(op, &mut step)?;
        self.conclude(step)
    }

    /// Reads everything the relay put out, through the fault injector, into the checker.
    fn conclude(&mut self, mut step: Step) -> Result<(), TestCaseError> {
        while let Some(out) = self.relay.poll_event() {
            if let Some(out) = self.faults.pass(&self.relay, out) {
                self.model.observe(&mut step, out)?;
            }
        }
        self.model.check_complete(&step)?;
        self.model.settle_grant(&step)?;
        self.model.check_state(&self.relay)
    }

    fn send(&mut self, conn: ConnId, command: Command) {
        self.relay.handle(self.model.now, conn, command);
    }

    fn apply(&mut self, op: &Op, step: &mut Step) -> Result<(), TestCaseError> {
        let m = &mut self.model;
        match *op {
            Op::Connect { id, legacy } => {
                let transport = if legacy {
                    Transport::Legacy
                } else {
                    Transport::Native
                };
                return self.connect(step, IDS[id], transport);
            }
            Op::Disconnect { who } => {
                if let Some(conn) = m.pick_conn(who) {
                    self.disconnect(step, conn);
                }
            }
            Op::Register { who, target } => {
                if let Some(conn) = m.pick_conn(who) {
                    let target = m.register_target(conn, target);
                    let command = m.plan_register(step, conn, &target);
                    self.send(conn, command);
                }
            }
            Op::Unregister { who } => {
                if let Some(conn) = m.pick_paired(who) {
                    let command = m.plan_unregister(step, conn);
                    self.send(conn, command);
                }
            }
            Op::Emit {
                who,
                target,
                ack,
                count,
                flavour,
            } => self.emit(step, who, target, ack, count, flavour),
            Op::Answer {
                who,
                which,
                yes,
                oversized,
            } => {
                if let Some((conn, ticket, meaning)) = m.take_ticket(who, which) {
                    let answer = m.plan_answer(step, conn, meaning, yes, oversized);
                    self.send(conn, Command::Answer { ticket, answer });
                }
            }
            Op::OpenStream { who, target } => {
                if let Some(conn) = m.pick_paired(who) {
                    let target = m.peer_target(conn, target);
                    let command = m.plan_open_stream(step, conn, &target);
                    self.send(conn, command);
                }
            }
            Op::CloseStream { who, which } => {
                let planned = m
                    .pick_paired(who)
                    .and_then(|conn| Some((conn, m.plan_close_stream(conn, which)?)));
                if let Some((conn, command)) = planned {
                    self.send(conn, command);
                }
            }
            Op::List { who } => {
                if let Some(conn) = m.pick_conn(who) {
                    let command = m.plan_list(step, conn);
                    self.send(conn, command);
                }
            }
            Op::Advance { millis } => {
                m.plan_advance(step, millis);
                self.relay.handle_timeout(m.now);
            }
        }
        Ok(())
    }

    /// A connection claims `id`; a connection already holding it is replaced (closed).
    fn connect(
        &mut self,
        step: &mut Step,
        id: &str,
        transport: Transport,
    ) -> Result<(), TestCaseError> {
        if let Some(old) = self.model.directory.get(id).copied() {
            step.closing = Some(old);
            step.errors = Errors::Only(old);
            step.expect(Expect::Close { to: old });
            self.model.plan_departure(step, old);
        }
        let conn = self
            .relay
            .connect(self.model.now, Some(id), None, transport);
        let conn = conn.map_err(|e| TestCaseError::fail(format!("connect {id} refused: {e}")))?;
        prop_assert!(!self.model.names.contains_key(&conn), "{:?} reused", conn);
        self.model.admit(conn, id, transport);
        Ok(())
    }

    fn disconnect(&mut self, step: &mut Step, conn: ConnId) {
        step.errors = Errors::Nowhere;
        self.model.plan_departure(step, conn);
        self.relay.disconnect(self.model.now, conn);
    }

    /// `count` emits in a row from one client, read only after the last.
    fn emit(
        &mut self,
        step: &mut Step,
        who: usize,
        target: usize,
        ack: bool,
        count: usize,
        flavour: Flavour,
    ) {
        let Some(conn) = self.model.pick_paired(who) else {
            return;
        };
        let target = self.model.peer_target(conn, target);
        for _ in 0..count {
            let command = self.model.plan_emit(step, conn, &target, ack, flavour);
            self.send(conn, command);
        }
    }
}

fn run_model(fault: Option<Fault>, ops: &[Op]) -> Result<(), TestCaseError> {
    Harness::new(fault).run(ops)
}

// ----- the properties ---------------------------------------------------------------------

const CASES: u32 = 512;
const FAULT_CASES: u32 = 256;
const SEED: [u8; 32] = *b"p2p-relay model: fixed seed 0001";

proptest! {
    #![proptest_config(ProptestConfig {
        cases: CASES,
        // Integration tests have no lib.rs beside them to anchor regression files.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn model_holds_without_faults(ops in ops()) {
        run_model(None, &ops)?;
    }
}

/// The same sequences every time: a fixed seed, no persistence, bounded shrinking.
fn fixed_runner() -> TestRunner {
    let config = ProptestConfig {
        cases: FAULT_CASES,
        failure_persistence: None,
        max_shrink_iters: 2_048,
        ..ProptestConfig::default()
    };
    TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &SEED))
}

/// Runs the property with `fault` on the fixed sequences (after checking that the same
/// sequences pass without it) and asserts that the checker reports it, with `needle` in
/// the message.
fn assert_caught(fault: Fault, needle: &str) {
    let clean = fixed_runner().run(&ops(), |ops| run_model(None, &ops));
    assert!(
        clean.is_ok(),
        "the fixed sequences fail without a fault: {clean:?}"
    );
    match fixed_runner().run(&ops(), |ops| run_model(Some(fault), &ops)) {
        Err(TestError::Fail(reason, minimal)) => {
            eprintln!("{fault:?} caught: {reason}\nminimal sequence: {minimal:?}");
            let message = reason.message();
            assert!(
                message.contains(needle),
                "{fault:?} was caught for another reason: {message}"
            );
        }
        Err(TestError::Abort(why)) => panic!("{fault:?}: the run aborted: {why}"),
        Ok(()) => panic!("{fault:?} went unnoticed through {FAULT_CASES} runs"),
    }
}

#[test]
fn model_catches_emit_to_self() {
    assert_caught(Fault::EmitToSelf, "delivered back to its sender");
}

#[test]
fn model_catches_dropped_stream_closed() {
    assert_caught(Fault::DropStreamClosed, "StreamClosed");
}

#[test]
fn model_catches_lost_reply() {
    assert_caught(Fault::LoseReply, "never produced: Reply");
}

/// The fixed sequences reach every outcome the checks are about, so a pass means something.
#[test]
fn generator_reaches_every_outcome() {
    let mut total = Stats::new();
    let mut runner = fixed_runner();
    for _ in 0..64 {
        let tree = ops().new_tree(&mut runner).expect("ops generate");
        let mut harness = Harness::new(None);
        harness.run(&tree.current()).expect("a clean run passes");
        for (what, n) in harness.model.stats {
            *total.entry(what).or_default() += n;
        }
    }
    eprintln!("{total:#?}");
    let required = [
        "Registered(true)",
        "Registered(false)",
        "Reply::Unregistered",
        "Clients",
        "Ack",
        "StreamOpened(Spliced)",
        "StreamOpened(Bridged)",
        "StreamOpened(Chunked)",
        "StreamRefused",
        "Failed",
        "Deliver",
        "Deliver with ack",
        "RegisterRequest",
        "StreamRequest",
        "StreamAccepted",
        "StreamClosed(Unpaired)",
        "StreamClosed(PeerGone)",
        "PeerDisconnected",
        "Close",
        "Unregistered (peer's unregister)",
        "Unregistered (notice)",
        "timeout",
    ];
    let missing: Vec<&str> = required
        .into_iter()
        .filter(|w| !total.contains_key(*w))
        .collect();
    assert!(missing.is_empty(), "never reached: {missing:?}");
}
