//! Property tests: random sequences of connections, commands, answers and time, checking the
//! relay's invariants after every step and its promises across the whole run.
//!
//! The driver plays every front end at once. It sends commands (some of them nonsense), answers
//! the questions it sees in events (rightly, wrongly, late or never), lets time pass, and
//! tracks what each connection is owed, so that it can check:
//! - `check_invariants()` holds after every step;
//! - pairing is symmetric through `peer_of`, and the registry only names live connections;
//! - no event is ever addressed to a connection after it was disconnected or closed;
//! - every request with an ack gets exactly one reply while its connection lives, within the
//!   ack timeout, and none is left once time has run out.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use relay_core::rmpv::Value;
use relay_core::{
    Answer, ClientId, Command, Config, ConnId, DuplicatePolicy, Event, Payload, Relay, Reply,
    ReqId, StreamId, Ticket, Transport,
};

const IDS: [&str; 6] = ["A", "B", "C", "D", "E", "F"];
/// Targets: the six ids, one never connected, one invalid; selectors past the end name the
/// sender's own peer (what a paired client's front end sends).
const TARGETS: [&str; 8] = ["A", "B", "C", "D", "E", "F", "Z", ""];
const TARGET_SELECTORS: usize = 20;
/// Mostly ordinary names; reserved and empty ones now and then.
const EVENTS: [&str; 9] = [
    "chat",
    "chat",
    "chat",
    "P2P_EMIT_STREAM",
    "x",
    "x",
    "connect",
    "disconnect",
    "",
];
const ACK_TIMEOUT_MS: u64 = 1_000;

#[derive(Debug, Clone)]
enum Op {
    Connect {
        id: usize,
        malformed: bool,
    },
    Disconnect {
        conn: usize,
    },
    Register {
        conn: usize,
        target: usize,
    },
    Unregister {
        conn: usize,
    },
    Emit {
        conn: usize,
        target: usize,
        event: usize,
        size: usize,
        ack: bool,
    },
    List {
        conn: usize,
    },
    OpenStream {
        conn: usize,
        target: usize,
    },
    CloseStream {
        conn: usize,
        stream: usize,
    },
    /// Answer a ticket seen in an event (mostly a recent one); `by_addressee` picks the
    /// connection it was put to, otherwise any connection answers (a wrong ticket). With
    /// `fitting` the answer suits the question, mostly favourably; otherwise it is random.
    Answer {
        ticket: usize,
        by_addressee: bool,
        conn: usize,
        fitting: bool,
        answer: u8,
    },
    /// Answer a ticket that was never issued.
    AnswerBogus {
        conn: usize,
        ticket: u64,
    },
    /// A front end reports an event it could not queue.
    Undelivered {
        conn: usize,
        ticket: Option<usize>,
    },
    Advance {
        millis: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let sel = 0usize..64;
    prop_oneof![
        2 => (0..IDS.len(), prop::bool::weighted(0.05))
            .prop_map(|(id, malformed)| Op::Connect { id, malformed }),
        1 => sel.clone().prop_map(|conn| Op::Disconnect { conn }),
        5 => (sel.clone(), 0..TARGET_SELECTORS)
            .prop_map(|(conn, target)| Op::Register { conn, target }),
        1 => sel.clone().prop_map(|conn| Op::Unregister { conn }),
        5 => (sel.clone(), 0..TARGET_SELECTORS, 0..EVENTS.len(), 0usize..60, any::<bool>())
            .prop_map(|(conn, target, event, size, ack)| Op::Emit { conn, target, event, size, ack }),
        1 => sel.clone().prop_map(|conn| Op::List { conn }),
        2 => (sel.clone(), 0..TARGET_SELECTORS)
            .prop_map(|(conn, target)| Op::OpenStream { conn, target }),
        1 => (sel.clone(), sel.clone()).prop_map(|(conn, stream)| Op::CloseStream { conn, stream }),
        9 => (sel.clone(), prop::bool::weighted(0.85), sel.clone(), prop::bool::weighted(0.85), 0u8..5)
            .prop_map(|(ticket, by_addressee, conn, fitting, answer)| {
                Op::Answer { ticket, by_addressee, conn, fitting, answer }
            }),
        1 => (sel.clone(), 0u64..400).prop_map(|(conn, ticket)| Op::AnswerBogus { conn, ticket }),
        1 => (sel.clone(), prop::option::of(sel.clone()))
            .prop_map(|(conn, ticket)| Op::Undelivered { conn, ticket }),
        3 => prop_oneof![3 => 0u64..50, 1 => 0u64..=1_500].prop_map(|millis| Op::Advance { millis }),
    ]
}

/// Which answer a ticket's question calls for.
#[derive(Debug, Clone, Copy)]
enum Asked {
    Accept,
    Ack,
    Done,
}

/// What the driver knows, as the sum of all front ends.
struct Driver {
    relay: Relay,
    t0: Instant,
    now: Instant,
    /// Every connection ever admitted, in order (selectors index into it).
    conns: Vec<ConnId>,
    live: BTreeSet<ConnId>,
    /// Disconnected by the driver or closed by the core: must never be addressed again.
    dead: BTreeSet<ConnId>,
    /// Requests owed a reply, per connection, with the time they were made.
    outstanding: HashMap<ConnId, BTreeMap<ReqId, Instant>>,
    /// Tickets seen in events, with the connection they were put to and what they ask.
    tickets: Vec<(Ticket, ConnId, Asked)>,
    streams: Vec<StreamId>,
    next_req: u64,
    replies: usize,
}

impl Driver {
    fn new(config: Config) -> Self {
        let t0 = Instant::now();
        Self {
            relay: Relay::new(config),
            t0,
            now: t0,
            conns: Vec::new(),
            live: BTreeSet::new(),
            dead: BTreeSet::new(),
            outstanding: HashMap::new(),
            tickets: Vec::new(),
            streams: Vec::new(),
            next_req: 0,
            replies: 0,
        }
    }

    fn pick<T: Clone>(items: &[T], sel: usize) -> Option<T> {
        (!items.is_empty()).then(|| items[sel % items.len()].clone())
    }

    /// Mostly a live connection; now and then any connection ever seen (maybe a closed one).
    fn conn_at(&self, sel: usize) -> Option<ConnId> {
        if sel % 10 == 9 || self.live.is_empty() {
            Self::pick(&self.conns, sel / 10)
        } else {
            let live: Vec<ConnId> = self.live.iter().copied().collect();
            Self::pick(&live, sel)
        }
    }

    /// Mostly a paired connection (for requests that need a peer), else as `conn_at`.
    fn paired_conn_at(&self, sel: usize) -> Option<ConnId> {
        let paired: Vec<ConnId> = self
            .live
            .iter()
            .copied()
            .filter(|c| {
                let id = self.relay.client_of(*c);
                id.is_some_and(|id| self.relay.peer_of(id.as_str()).is_some())
            })
            .collect();
        match sel % 4 {
            0 => self.conn_at(sel / 4),
            _ => Self::pick(&paired, sel / 4).or_else(|| self.conn_at(sel / 4)),
        }
    }

    /// A target id for `conn`: a fixed one, a connected one, or its current peer's.
    fn target(&self, conn: ConnId, sel: usize) -> String {
        if sel < TARGETS.len() {
            return TARGETS[sel].to_owned();
        }
        let me = self.relay.client_of(conn);
        let peer = me.as_ref().and_then(|me| self.relay.peer_of(me.as_str()));
        match peer {
            Some(peer) if sel >= 13 => peer.to_string(),
            _ => {
                // Others than itself (registering to itself is covered by the fixed ids).
                let connected: Vec<ClientId> = self
                    .relay
                    .client_ids()
                    .into_iter()
                    .filter(|id| Some(id) != me.as_ref())
                    .collect();
                let spread = sel * 7 + conn.0 as usize + self.next_req as usize;
                match Self::pick(&connected, spread) {
                    Some(id) => id.to_string(),
                    None => IDS[sel % IDS.len()].to_owned(),
                }
            }
        }
    }

    /// Often the latest ticket, mostly a recent one, sometimes any seen.
    fn ticket_at(&self, sel: usize) -> Option<(Ticket, ConnId, Asked)> {
        let recent = self.tickets.len().saturating_sub(6);
        match sel % 4 {
            0 | 1 => self.tickets.last().copied(),
            2 => Self::pick(&self.tickets[recent..], sel / 4),
            _ => Self::pick(&self.tickets, sel / 4),
        }
    }

    fn req(&mut self, conn: ConnId) -> ReqId {
        self.next_req += 1;
        let req = ReqId(self.next_req);
        // Commands from forgotten connections are ignored by the core: nothing is owed.
        if self.live.contains(&conn) {
            self.outstanding
                .entry(conn)
                .or_default()
                .insert(req, self.now);
        }
        req
    }

    fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        let conn_at = |d: &Self, sel: usize| d.conn_at(sel);
        match *op {
            Op::Connect { id, malformed } => {
                let raw = if malformed { "bad\nid" } else { IDS[id] };
                let claimed = (!(malformed && id == 0)).then_some(raw);
                if let Ok(conn) = self
                    .relay
                    .connect(self.now, claimed, None, Transport::Native)
                {
                    prop_assert!(!malformed, "a malformed id was admitted");
                    prop_assert!(!self.conns.contains(&conn), "{conn:?} reused");
                    self.conns.push(conn);
                    self.live.insert(conn);
                    prop_assert_eq!(self.relay.conn_of(raw), Some(conn));
                }
            }
            Op::Disconnect { conn } => {
                if let Some(conn) = conn_at(self, conn) {
                    self.relay.disconnect(self.now, conn);
                    self.forget(conn);
                }
            }
            Op::Register { conn, target } => {
                if let Some(conn) = conn_at(self, conn) {
                    let req = self.req(conn);
                    let target = self.target(conn, target);
                    self.relay
                        .handle(self.now, conn, Command::Register { req, target });
                }
            }
            Op::Unregister { conn } => {
                if let Some(conn) = conn_at(self, conn) {
                    let req = self.req(conn);
                    self.relay
                        .handle(self.now, conn, Command::Unregister { req });
                }
            }
            Op::Emit {
                conn,
                target,
                event,
                size,
                ack,
            } => {
                if let Some(conn) = self.paired_conn_at(conn) {
                    let ack = ack.then(|| self.req(conn));
                    let args = Payload::Values(vec![Value::Binary(vec![7; size])]);
                    let command = Command::Emit {
                        target: self.target(conn, target),
                        event: EVENTS[event].to_owned(),
                        args,
                        ack,
                    };
                    self.relay.handle(self.now, conn, command);
                }
            }
            Op::List { conn } => {
                if let Some(conn) = conn_at(self, conn) {
                    let req = self.req(conn);
                    self.relay.handle(
                        self.now,
                        conn,
                        Command::List {
                            req,
                            after: None,
                            limit: None,
                        },
                    );
                }
            }
            Op::OpenStream { conn, target } => {
                if let Some(conn) = self.paired_conn_at(conn) {
                    let req = self.req(conn);
                    let target = self.target(conn, target);
                    self.relay
                        .handle(self.now, conn, Command::OpenStream { req, target });
                }
            }
            Op::CloseStream { conn, stream } => {
                let conn = conn_at(self, conn);
                let stream = Self::pick(&self.streams, stream);
                if let (Some(conn), Some(stream)) = (conn, stream) {
                    self.relay
                        .handle(self.now, conn, Command::CloseStream { stream });
                }
            }
            Op::Answer {
                ticket,
                by_addressee,
                conn,
                fitting,
                answer,
            } => {
                if let Some((ticket, addressee, asked)) = self.ticket_at(ticket) {
                    let by = if by_addressee {
                        Some(addressee)
                    } else {
                        conn_at(self, conn)
                    };
                    let answer = match (fitting, asked, answer) {
                        (true, Asked::Accept, 0) => Answer::Accept(false),
                        (true, Asked::Accept, _) => Answer::Accept(true),
                        (true, Asked::Ack, _) => {
                            Answer::Ack(Payload::Values(vec![Value::from(ticket.0)]))
                        }
                        (true, Asked::Done, _) => Answer::Done,
                        (false, _, 0) => Answer::Accept(true),
                        (false, _, 1) => Answer::Accept(false),
                        (false, _, 2) => Answer::Done,
                        (false, _, _) => Answer::Ack(Payload::empty()),
                    };
                    if let Some(by) = by {
                        self.relay
                            .handle(self.now, by, Command::Answer { ticket, answer });
                    }
                }
            }
            Op::AnswerBogus { conn, ticket } => {
                if let Some(conn) = conn_at(self, conn) {
                    let command = Command::Answer {
                        ticket: Ticket(ticket + 1_000_000),
                        answer: Answer::Accept(true),
                    };
                    self.relay.handle(self.now, conn, command);
                }
            }
            Op::Undelivered { conn, ticket } => {
                if let Some(conn) = conn_at(self, conn) {
                    let ticket = ticket.and_then(|t| self.ticket_at(t)).map(|(t, ..)| t);
                    self.relay
                        .report_undelivered(self.now, conn, "chat", ticket, 4);
                }
            }
            Op::Advance { millis } => {
                self.now += Duration::from_millis(millis);
                self.relay.handle_timeout(self.now);
            }
        }
        self.drain()?;
        self.check()?;
        if let Op::Advance { .. } = op {
            self.check_nothing_overdue()?;
        }
        Ok(())
    }

    /// The driver's view of a connection ending (a front end's disconnect, or a Close).
    fn forget(&mut self, conn: ConnId) {
        self.live.remove(&conn);
        self.dead.insert(conn);
        self.outstanding.remove(&conn);
    }

    fn drain(&mut self) -> Result<(), TestCaseError> {
        while let Some(out) = self.relay.poll_event() {
            let conn = out.conn;
            prop_assert!(
                !self.dead.contains(&conn),
                "{:?} addressed to {conn:?} after it was disconnected or closed",
                out.event
            );
            prop_assert!(self.live.contains(&conn), "event to unknown {conn:?}");
            match out.event {
                Event::Reply { req, reply } => {
                    let owed = self.outstanding.get_mut(&conn).and_then(|o| o.remove(&req));
                    prop_assert!(
                        owed.is_some(),
                        "{conn:?} got a reply to {req:?} it was not owed: {reply:?}"
                    );
                    self.replies += 1;
                    if let Reply::StreamOpened { stream, .. } = reply {
                        self.streams.push(stream);
                    }
                    if let Reply::Clients(ids) = reply {
                        prop_assert!(ids.ids.windows(2).all(|w| w[0] < w[1]), "list not sorted");
                        prop_assert_eq!(&ids.ids, &self.relay.client_ids());
                    }
                }
                Event::RegisterRequest { ticket, .. } | Event::StreamRequest { ticket, .. } => {
                    self.tickets.push((ticket, conn, Asked::Accept))
                }
                Event::Unregistered { ticket } => self.tickets.push((ticket, conn, Asked::Done)),
                Event::Deliver {
                    ticket: Some(ticket),
                    ..
                } => self.tickets.push((ticket, conn, Asked::Ack)),
                Event::Close { .. } => self.forget(conn),
                Event::StreamData { ticket, .. } => self.tickets.push((ticket, conn, Asked::Done)),
                Event::Deliver { ticket: None, .. }
                | Event::StreamChunkTaken { .. }
                | Event::PeerDisconnected
                | Event::StreamAccepted { .. }
                | Event::StreamClosed { .. }
                | Event::ServerError { .. } => {}
            }
        }
        // Keep the ticket list bounded so selectors stay meaningful.
        if self.tickets.len() > 64 {
            self.tickets.drain(..self.tickets.len() - 64);
        }
        if self.streams.len() > 32 {
            self.streams.drain(..self.streams.len() - 32);
        }
        Ok(())
    }

    fn check(&self) -> Result<(), TestCaseError> {
        if let Err(broken) = self.relay.check_invariants() {
            return Err(TestCaseError::fail(format!("invariant broken: {broken}")));
        }
        let ids = self.relay.client_ids();
        for id in &ids {
            let conn = self.relay.conn_of(id.as_str());
            let Some(conn) = conn else {
                return Err(TestCaseError::fail(format!(
                    "listed {id} has no connection"
                )));
            };
            prop_assert!(
                self.live.contains(&conn),
                "registry names closed {conn:?} for {id}"
            );
            prop_assert_eq!(self.relay.client_of(conn), Some(id.clone()));
            if let Some(peer) = self.relay.peer_of(id.as_str()) {
                prop_assert_ne!(&peer, id, "paired with itself");
                prop_assert_eq!(
                    self.relay.peer_of(peer.as_str()),
                    Some(id.clone()),
                    "pairing of {} and {} is not symmetric",
                    id,
                    peer
                );
                let peer_conn = self.relay.conn_of(peer.as_str());
                prop_assert!(peer_conn.is_some_and(|c| self.live.contains(&c)));
            }
        }
        for conn in &self.dead {
            prop_assert_eq!(self.relay.client_of(*conn), None, "{:?} outlived", conn);
        }
        // Every live connection is the one the registry names for its id.
        for conn in &self.live {
            let Some(id) = self.relay.client_of(*conn) else {
                return Err(TestCaseError::fail(format!(
                    "live {conn:?} unknown to the relay"
                )));
            };
            prop_assert_eq!(self.relay.conn_of(id.as_str()), Some(*conn));
        }
        for stream in &self.streams {
            if let Some((opener, acceptor)) = self.relay.stream_ends(*stream) {
                prop_assert!(self.live.contains(&opener) && self.live.contains(&acceptor));
                let opener_id = self.relay.client_of(opener).map(|c| c.to_string());
                let acceptor_id: Option<ClientId> = self.relay.client_of(acceptor);
                prop_assert_eq!(
                    opener_id.and_then(|o| self.relay.peer_of(&o)),
                    acceptor_id,
                    "{:?} outlived its pairing",
                    stream
                );
            }
        }
        Ok(())
    }

    /// Once `handle_timeout(now)` ran, nothing made at least one ack timeout ago is owed.
    fn check_nothing_overdue(&self) -> Result<(), TestCaseError> {
        let timeout = Duration::from_millis(ACK_TIMEOUT_MS);
        for (conn, owed) in &self.outstanding {
            for (req, made) in owed {
                prop_assert!(
                    *made + timeout > self.now,
                    "{conn:?} still waits for {req:?} made at {:?}, now {:?}",
                    *made - self.t0,
                    self.now - self.t0
                );
            }
        }
        Ok(())
    }

    /// Lets time run out and drains: nothing may be owed or pending afterwards.
    fn finish(&mut self) -> Result<(), TestCaseError> {
        for _ in 0..10 {
            let Some(deadline) = self.relay.poll_timeout() else {
                break;
            };
            prop_assert!(deadline <= self.now + Duration::from_millis(ACK_TIMEOUT_MS));
            self.now = self.now.max(deadline);
            self.relay.handle_timeout(self.now);
            self.drain()?;
            self.check()?;
            self.check_nothing_overdue()?;
        }
        prop_assert_eq!(self.relay.poll_timeout(), None);
        prop_assert_eq!(self.relay.pending_len(), 0);
        for (conn, owed) in &self.outstanding {
            prop_assert!(owed.is_empty(), "{conn:?} never got replies to {owed:?}");
        }
        // Everyone leaving leaves nothing behind.
        for conn in self.live.clone() {
            self.relay.disconnect(self.now, conn);
            self.forget(conn);
            self.drain()?;
            self.check()?;
        }
        prop_assert!(self.relay.client_ids().is_empty());
        prop_assert_eq!(self.relay.pending_len(), 0);
        prop_assert_eq!(self.relay.poll_timeout(), None);
        Ok(())
    }
}

fn config(policy: DuplicatePolicy) -> Config {
    Config {
        duplicate_policy: policy,
        ack_timeout: Duration::from_millis(ACK_TIMEOUT_MS),
        max_message_bytes: 64,
        max_pending_per_connection: 3,
        max_streams_per_pair: 2,
        max_clients: 5,
        // The model does not track rate limits; they have tests of their own.
        rate: relay_core::RateLimits::OFF,
        ip: Default::default(),
    }
}

fn run(policy: DuplicatePolicy, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut driver = Driver::new(config(policy));
    for id in 0..4 {
        driver.step(&Op::Connect {
            id,
            malformed: false,
        })?;
    }
    for op in ops {
        driver.step(op)?;
    }
    driver.finish()
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        // Integration tests have no lib.rs beside them to anchor regression files.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_runs_keep_every_promise_under_replace(ops in prop::collection::vec(op(), 1..200)) {
        run(DuplicatePolicy::Replace, &ops)?;
    }

    #[test]
    fn random_runs_keep_every_promise_under_reject(ops in prop::collection::vec(op(), 1..200)) {
        run(DuplicatePolicy::Reject, &ops)?;
    }
}

/// A fixed, busy scenario that goes through every kind of reply at least once, so the
/// property above is known to exercise more than refusals.
#[test]
fn scripted_run_reaches_every_reply_kind() {
    let mut d = Driver::new(config(DuplicatePolicy::Replace));
    let a = connect(&mut d, 0);
    let b = connect(&mut d, 1);
    let reg = d.req(a);
    handle(
        &mut d,
        a,
        Command::Register {
            req: reg,
            target: "B".into(),
        },
    );
    answer_last(&mut d, b, Answer::Accept(true));
    let open = d.req(a);
    handle(
        &mut d,
        a,
        Command::OpenStream {
            req: open,
            target: "B".into(),
        },
    );
    answer_last(&mut d, b, Answer::Accept(true));
    let ack = d.req(a);
    let emit = Command::Emit {
        target: "B".into(),
        event: "chat".into(),
        args: Payload::empty(),
        ack: Some(ack),
    };
    handle(&mut d, a, emit);
    answer_last(&mut d, b, Answer::Ack(Payload::empty()));
    let list = d.req(b);
    handle(
        &mut d,
        b,
        Command::List {
            req: list,
            after: None,
            limit: None,
        },
    );
    let unreg = d.req(b);
    handle(&mut d, b, Command::Unregister { req: unreg });
    answer_last(&mut d, a, Answer::Done);
    assert_eq!(d.replies, 5);
    assert!(d.outstanding.values().all(|o| o.is_empty()));
    d.finish().unwrap();

    fn connect(d: &mut Driver, id: usize) -> ConnId {
        d.step(&Op::Connect {
            id,
            malformed: false,
        })
        .unwrap();
        *d.conns.last().unwrap()
    }
    fn handle(d: &mut Driver, conn: ConnId, command: Command) {
        d.relay.handle(d.now, conn, command);
        d.drain().unwrap();
        d.check().unwrap();
    }
    fn answer_last(d: &mut Driver, by: ConnId, answer: Answer) {
        let (ticket, to, _) = *d.tickets.last().unwrap();
        assert_eq!(to, by);
        handle(d, by, Command::Answer { ticket, answer });
    }
}
