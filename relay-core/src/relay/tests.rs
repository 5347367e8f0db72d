//! Every rule of the core, driven through the public calls with a fake clock.

use std::time::Duration;

use bytes::Bytes;
use rmpv::Value;

use super::*;
use crate::{
    Answer, AuthError, Claims, ClientId, Config, ConnectError, DuplicatePolicy, ErrorCode, Event,
    Payload, Presented, Reply, ReqId, RequestError, StreamEnd, Transport,
};

/// A relay, a fake clock (a base instant plus an offset) and the events polled so far.
struct Harness {
    relay: Relay,
    t0: Instant,
    now: Instant,
    next_req: u64,
}

impl Harness {
    fn new() -> Self {
        Self::with(Config::default())
    }

    fn with(config: Config) -> Self {
        let t0 = Instant::now();
        Self {
            relay: Relay::new(config),
            t0,
            now: t0,
            next_req: 0,
        }
    }

    fn timeout(&self) -> Duration {
        self.relay.config().ack_timeout
    }

    /// Moves the clock forward and lets the relay see the time.
    fn advance(&mut self, by: Duration) {
        self.now += by;
        self.relay.handle_timeout(self.now);
        self.check();
    }

    fn check(&self) {
        if let Err(broken) = self.relay.check_invariants() {
            panic!("invariant broken: {broken}");
        }
    }

    fn connect(&mut self, id: &str) -> ConnId {
        let conn = self
            .relay
            .connect(self.now, Some(id), None, Transport::Native)
            .unwrap_or_else(|e| panic!("connect {id}: {e}"));
        self.check();
        conn
    }

    fn disconnect(&mut self, conn: ConnId) {
        self.relay.disconnect(self.now, conn);
        self.check();
    }

    fn req(&mut self) -> ReqId {
        self.next_req += 1;
        ReqId(self.next_req)
    }

    fn cmd(&mut self, conn: ConnId, command: Command) {
        self.relay.handle(self.now, conn, command);
        self.check();
    }

    fn register(&mut self, conn: ConnId, target: &str) -> ReqId {
        let req = self.req();
        self.cmd(
            conn,
            Command::Register {
                req,
                target: target.into(),
            },
        );
        req
    }

    fn unregister(&mut self, conn: ConnId) -> ReqId {
        let req = self.req();
        self.cmd(conn, Command::Unregister { req });
        req
    }

    fn open_stream(&mut self, conn: ConnId, target: &str) -> ReqId {
        let req = self.req();
        self.cmd(
            conn,
            Command::OpenStream {
                req,
                target: target.into(),
            },
        );
        req
    }

    fn emit(&mut self, conn: ConnId, target: &str, event: &str, args: Payload) {
        self.cmd(
            conn,
            Command::Emit {
                target: target.into(),
                event: event.into(),
                args,
                ack: None,
            },
        );
    }

    fn emit_ack(&mut self, conn: ConnId, target: &str, event: &str, args: Payload) -> ReqId {
        let req = self.req();
        self.cmd(
            conn,
            Command::Emit {
                target: target.into(),
                event: event.into(),
                args,
                ack: Some(req),
            },
        );
        req
    }

    fn answer(&mut self, conn: ConnId, ticket: Ticket, answer: Answer) {
        self.cmd(conn, Command::Answer { ticket, answer });
    }

    /// Every event produced since the last drain.
    fn drain(&mut self) -> Out {
        let mut all = Vec::new();
        while let Some(out) = self.relay.poll_event() {
            all.push(out);
        }
        Out(all)
    }

    /// Pairs `a` (the requester) with `b`, checking the handshake, and drains.
    fn pair(&mut self, a: ConnId, b: ConnId) {
        let b_id = self.relay.client_of(b).unwrap();
        let req = self.register(a, b_id.as_str());
        let out = self.drain();
        let ticket = out.register_request(b);
        self.answer(b, ticket, Answer::Accept(true));
        let out = self.drain();
        assert!(matches!(out.reply(a, req), Reply::Registered(true)));
        assert_eq!(out.0.len(), 1, "only the requester's reply: {:?}", out.0);
    }

    /// Opens a stream from `a` to its peer `b`, accepted, and drains.
    fn stream(&mut self, a: ConnId, b: ConnId) -> StreamId {
        let b_id = self.relay.client_of(b).unwrap();
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
struct Out(Vec<Outgoing>);

impl Out {
    fn to(&self, conn: ConnId) -> Vec<&Event> {
        self.0
            .iter()
            .filter(|o| o.conn == conn)
            .map(|o| &o.event)
            .collect()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn replies(&self, conn: ConnId) -> Vec<(ReqId, &Reply)> {
        self.to(conn)
            .into_iter()
            .filter_map(|e| match e {
                Event::Reply { req, reply } => Some((*req, reply)),
                _ => None,
            })
            .collect()
    }

    /// The one reply `conn` got, which must be for `req`.
    fn reply(&self, conn: ConnId, req: ReqId) -> Reply {
        let replies = self.replies(conn);
        assert_eq!(
            replies.len(),
            1,
            "one reply expected for {conn:?}: {self:?}"
        );
        assert_eq!(replies[0].0, req);
        replies[0].1.clone()
    }

    fn errors(&self, conn: ConnId) -> Vec<String> {
        self.to(conn)
            .into_iter()
            .filter_map(|e| match e {
                Event::ServerError { message, .. } => Some(message.clone()),
                _ => None,
            })
            .collect()
    }

    fn register_request(&self, conn: ConnId) -> Ticket {
        let found: Vec<Ticket> = self
            .to(conn)
            .into_iter()
            .filter_map(|e| match e {
                Event::RegisterRequest { ticket, .. } => Some(*ticket),
                _ => None,
            })
            .collect();
        assert_eq!(found.len(), 1, "one RegisterRequest for {conn:?}: {self:?}");
        found[0]
    }

    fn stream_request(&self, conn: ConnId) -> Ticket {
        let found: Vec<Ticket> = self
            .to(conn)
            .into_iter()
            .filter_map(|e| match e {
                Event::StreamRequest { ticket, .. } => Some(*ticket),
                _ => None,
            })
            .collect();
        assert_eq!(found.len(), 1, "one StreamRequest for {conn:?}: {self:?}");
        found[0]
    }

    fn unregistered(&self, conn: ConnId) -> Vec<Ticket> {
        self.to(conn)
            .into_iter()
            .filter_map(|e| match e {
                Event::Unregistered { ticket } => Some(*ticket),
                _ => None,
            })
            .collect()
    }

    fn stream_closed(&self, conn: ConnId) -> Vec<StreamId> {
        self.to(conn)
            .into_iter()
            .filter_map(|e| match e {
                Event::StreamClosed { stream, .. } => Some(*stream),
                _ => None,
            })
            .collect()
    }

    fn stream_closed_why(&self, conn: ConnId) -> Vec<StreamEnd> {
        self.to(conn)
            .into_iter()
            .filter_map(|e| match e {
                Event::StreamClosed { why, .. } => Some(*why),
                _ => None,
            })
            .collect()
    }

    fn delivered(&self, conn: ConnId) -> Vec<(String, Payload, Option<Ticket>)> {
        self.to(conn)
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

    fn peer_disconnected(&self, conn: ConnId) -> usize {
        self.to(conn)
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

fn ids(raw: &[&str]) -> Vec<ClientId> {
    raw.iter().map(|r| id(r)).collect()
}

/// A MessagePack payload of exactly `len` bytes (a bin8 array element plus headers).
fn msgpack_of_len(len: usize) -> Payload {
    assert!((4..=200).contains(&len));
    // fixarray(1) + bin8 marker + length byte + data
    let data = len - 3;
    let mut bytes = vec![0x91, 0xc4, data as u8];
    bytes.extend(std::iter::repeat_n(7u8, data));
    Payload::MsgPack(Bytes::from(bytes))
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

// ----- connecting ---------------------------------------------------------------------------

#[test]
fn connect_refuses_a_missing_id() {
    let mut h = Harness::new();
    let err = h
        .relay
        .connect(h.now, None, None, Transport::Native)
        .unwrap_err();
    assert_eq!(err, ConnectError::MissingClientId);
    assert_eq!(err.to_string(), "clientId query parameter is required");
    assert!(h.relay.client_ids().is_empty());
    assert!(h.drain().is_empty());
}

#[test]
fn connect_refuses_invalid_ids() {
    let mut h = Harness::new();
    let now = h.now;
    let err = h
        .relay
        .connect(now, Some(""), None, Transport::Native)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid clientId: clientId must not be empty"
    );
    let err = h
        .relay
        .connect(now, Some("a\u{7}b"), None, Transport::Native)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid clientId: clientId must not contain control characters"
    );
    let long = "x".repeat(129);
    let err = h
        .relay
        .connect(now, Some(&long), None, Transport::Native)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid clientId: clientId is 129 bytes long; the limit is 128"
    );
    assert!(h
        .relay
        .connect(now, Some(&long[..128]), None, Transport::Native)
        .is_ok());
    assert_eq!(h.relay.client_ids().len(), 1);
    h.check();
}

#[test]
fn duplicate_under_reject_is_refused_and_the_first_stays() {
    let mut h = Harness::with(Config {
        duplicate_policy: DuplicatePolicy::Reject,
        ..Config::default()
    });
    let a = h.connect("A");
    let err = h
        .relay
        .connect(h.now, Some("A"), None, Transport::Native)
        .unwrap_err();
    assert_eq!(err, ConnectError::Duplicate(id("A")));
    assert_eq!(err.to_string(), "clientId 'A' is already connected");
    assert_eq!(h.relay.conn_of("A"), Some(a));
    assert!(
        h.drain().is_empty(),
        "the first connection is not disturbed"
    );
    // Once the first is gone the id is free again.
    h.disconnect(a);
    let again = h.connect("A");
    assert_ne!(again, a);
    assert_eq!(h.relay.conn_of("A"), Some(again));
}

#[test]
fn duplicate_under_replace_closes_the_old_connection_and_frees_its_peer() {
    let mut h = Harness::new();
    let old = h.connect("X");
    let b = h.connect("B");
    h.pair(old, b);
    let s = h.stream(old, b);

    let new = h.connect("X");
    assert_ne!(new, old);
    let out = h.drain();
    let to_old = out.to(old);
    assert_eq!(to_old.len(), 2, "{to_old:?}");
    assert!(matches!(
        to_old[0],
        Event::ServerError { code: None, message } if message == "replaced by a newer connection with clientId 'X'"
    ));
    assert!(matches!(
        to_old[1],
        Event::Close { reason } if reason.to_string() == "replaced by a newer connection with clientId 'X'"
    ));
    assert_eq!(out.peer_disconnected(b), 1);
    assert_eq!(out.stream_closed(b), vec![s]);
    assert!(
        out.errors(b).is_empty(),
        "the survivor gets no SERVER_ERROR"
    );
    assert!(out.to(new).is_empty());

    assert_eq!(h.relay.conn_of("X"), Some(new));
    assert_eq!(h.relay.client_of(old), None);
    assert_eq!(h.relay.peer_of("B"), None);
    assert_eq!(h.relay.peer_of("X"), None);
    assert_eq!(h.relay.stream_ends(s), None);

    // The front end closing the replaced connection later must not take the new entry.
    h.disconnect(old);
    assert_eq!(h.relay.conn_of("X"), Some(new));
    assert_eq!(h.relay.client_ids(), ids(&["B", "X"]));
    assert!(h.drain().is_empty());
    // Commands from the replaced connection are ignored.
    h.register(old, "B");
    assert!(h.drain().is_empty());
    // The new connection works normally.
    h.pair(new, b);
    assert_eq!(h.relay.peer_of("B"), Some(id("X")));
}

#[test]
fn replace_settles_questions_put_to_the_old_connection() {
    let mut h = Harness::new();
    let a = h.connect("A");
    let old = h.connect("T");
    let req = h.register(a, "T");
    h.drain();
    h.connect("T");
    let out = h.drain();
    assert_eq!(
        failed(out.reply(a, req)),
        RequestError::PeerGone {
            event: "P2P_REGISTER".into(),
            target: id("T")
        }
    );
    assert!(out.errors(a).is_empty());
    assert_eq!(h.relay.pending_len(), 0);
    assert!(h.relay.client_of(old).is_none());
}

#[test]
fn authenticator_and_client_limit_refuse_at_the_door() {
    struct OnlyA;
    impl Authenticator for OnlyA {
        fn authenticate(&self, presented: &Presented<'_>) -> Result<Claims, AuthError> {
            if presented.client.as_str() == "A" && presented.credentials == Some(&b"secret"[..]) {
                Ok(Claims::default())
            } else {
                Err(AuthError::BadSignature)
            }
        }
    }
    let now = Instant::now();
    let mut relay = Relay::with_authenticator(Config::default(), OnlyA);
    let err = relay
        .connect(now, Some("B"), Some(&b"secret"[..]), Transport::Native)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "clientId 'B' was refused: the token's signature is not valid for this relay's secret (HS256)"
    );
    assert!(relay
        .connect(now, Some("A"), None, Transport::Native)
        .is_err());
    assert!(relay
        .connect(now, Some("A"), Some(&b"secret"[..]), Transport::Native)
        .is_ok());
    assert_eq!(relay.client_ids(), ids(&["A"]));

    let mut h = Harness::with(Config {
        max_clients: 2,
        ..Config::default()
    });
    h.connect("A");
    h.connect("B");
    let err = h
        .relay
        .connect(h.now, Some("C"), None, Transport::Native)
        .unwrap_err();
    assert_eq!(err, ConnectError::TooManyClients(2));
    // Replacing an existing id does not add a client, so it is allowed when full.
    h.connect("A");
    assert_eq!(h.relay.client_ids(), ids(&["A", "B"]));
}

#[test]
fn disconnect_forgets_the_connection_and_is_idempotent() {
    let mut h = Harness::new();
    let a = h.connect("A");
    h.disconnect(a);
    assert_eq!(h.relay.conn_of("A"), None);
    assert_eq!(h.relay.client_of(a), None);
    assert!(h.relay.client_ids().is_empty());
    h.disconnect(a);
    h.disconnect(ConnId(999));
    assert!(h.drain().is_empty());
}

// ----- pairing ------------------------------------------------------------------------------

#[test]
fn register_accepted_pairs_both_ends() {
    let mut h = Harness::new();
    let a = h.connect("A");
    let b = h.connect("B");
    let req = h.register(a, "B");
    let out = h.drain();
    assert_eq!(out.0.len(), 1);
    let ticket = match out.to(b)[..] {
        [Event::RegisterRequest { ticket, from }] => {
            assert_eq!(from, &id("A"));
            *ticket
        }
        ref other => panic!("{other:?}"),
    };
    assert_eq!(h.relay.peer_of("A"), None, "not paired before the answer");
    assert_eq!(h.relay.poll_timeout(), Some(h.t0 + h.timeout()));
    h.answer(b, ticket, Answer::Accept(true));
    let out = h.drain();
    assert!(matches!(out.reply(a, req), Reply::Registered(true)));
    assert!(out.to(b).is_empty());
    assert_eq!(h.relay.peer_of("A"), Some(id("B")));
    assert_eq!(h.relay.peer_of("B"), Some(id("A")));
    assert_eq!(h.relay.pending_len(), 0);
    assert_eq!(h.relay.poll_timeout(), None);
}

#[test]
fn register_declined_leaves_both_free() {
    let mut h = Harness::new();
    let a = h.connect("A");
    let b = h.connect("B");
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
    assert_eq!(h.relay.peer_of("A"), None);
    assert_eq!(h.relay.peer_of("B"), None);
    // A can try again.
    h.pair(a, b);
}

#[test]
fn register_to_a_busy_target_answers_false_without_asking_it() {
    let mut h = Harness::new();
    let a = h.connect("A");
    let b = h.connect("B");
    let c = h.connect("C");
    h.pair(b, c);
    let req = h.register(a, "B");
    let out = h.drain();
    assert!(matches!(out.reply(a, req), Reply::Registered(false)));
    assert!(out.errors(a).is_empty());
    assert!(out.to(b).is_empty());
    assert_eq!(h.relay.peer_of("B"), Some(id("C")));
    assert_eq!(h.relay.pending_len(), 0);
}

#[test]
fn register_refusals_have_exact_texts() {
    let mut h = Harness::new();
    let a = h.connect("A");
    let b = h.connect("B");
    h.connect("C");

    let req = h.register(a, "A");
    let out = h.drain();
    assert_eq!(out.errors(a), vec!["cannot register to yourself"]);
    assert_eq!(failed(out.reply(a, req)), RequestError::RegisterToSelf);

    let req = h.register(a, "Z");
    let out = h.drain();
    assert_eq!(out.errors(a), vec!["target client 'Z' is not connected"]);
    assert_eq!(
        failed(out.reply(a, req)),
        RequestError::TargetNotConnected(id("Z"))
    );

    let req = h.register(a, "");
    let out = h.drain();
    assert_eq!(
        out.errors(a),
        vec!["target clientId is invalid: clientId must not be empty"]
    );
    assert!(matches!(
        failed(out.reply(a, req)),
        RequestError::InvalidTarget(_)
    ));

    h.pair(a, b);
    let req = h.register(a, "C");
    let out = h.drain();
    assert_eq!(out.errors(a), vec!["already paired with 'B'"]);
    assert_eq!(
        failed(out.reply(a, req)),
        RequestError::AlreadyPaired(id("B"))
    );
    // Registering to the own peer again is also "already paired".
    let req = h.register(a, "B");
    assert_eq!(
        failed(h.drain().reply(a, req)),
        RequestError::AlreadyPaired(id("B"))
    );
    assert_eq!(h.relay.peer_of("A"), Some(id("B")));
    assert_eq!(h.relay.pending_len(), 0);
}

#[test]
fn a_failure_tells_its_kind_in_the_error_and_the_reply() {
    let mut h = Harness::new();
    let a = h.connect("A");
    let req = h.register(a, "Z");
    let out = h.drain();
    let codes: Vec<Option<ErrorCode>> = out
        .to(a)
        .into_iter()
        .filter_map(|e| match e {
            Event::ServerError { code, .. } => Some(*code),
            _ => None,
        })
        .collect();
    assert_eq!(codes, vec![Some(ErrorCode::NotConnected)]);
    assert_eq!(failed(out.reply(a, req)).code(), ErrorCode::NotConnected);
}

#[test]
fn one_registration_at_a_time() {
    let mut h = Harness::new();
    let a = h.connect("A");
    let b = h.connect("B");
    h.connect("C");
    let first = h.register(a, "B");
    let ticket = h.drain().register_request(b);
    let second = h.register(a, "C");
    let out = h.drain();
    assert_eq!(
        out.errors(a),
        vec!["a registration to 'B' is already in progress"]
    );
    assert_eq!(
        failed(out.reply(a, second)),
        RequestError::RegistrationInProgress(id("B"))
    );
    assert_eq!(out.0.len(), 2, "C is not asked: {out:?}");
    h.answer(b, ticket, Answer::Accept(true));
    assert!(matches!(h.drain().reply(a, first), Reply::Registered(true)));
}

#[test]
fn two_requesters_racing_for_one_target_yield_one_pairing() {
    for answer_first_to_a in [true, false] {
        let mut h = Harness::new();
        let a = h.connect("A");
        let c = h.connect("C");
        let t = h.connect("T");
        let req_a = h.register(a, "T");
        let req_c = h.register(c, "T");
        let out = h.drain();
        let tickets: Vec<(Ticket, ClientId)> = out
            .to(t)
            .into_iter()
            .map(|e| match e {
                Event::RegisterRequest { ticket, from } => (*ticket, from.clone()),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(tickets.len(), 2);
        let (first, second) = if answer_first_to_a {
            (tickets[0].0, tickets[1].0)
        } else {
            (tickets[1].0, tickets[0].0)
        };
        // The target (a misbehaving client) says yes to both.
        h.answer(t, first, Answer::Accept(true));
        h.answer(t, second, Answer::Accept(true));
        let out = h.drain();
        let (winner, loser, win_req, lose_req, name) = if answer_first_to_a {
            (a, c, req_a, req_c, "A")
        } else {
            (c, a, req_c, req_a, "C")
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
        assert_eq!(h.relay.peer_of("T"), Some(id(name)));
        assert_eq!(h.relay.peer_of(name), Some(id("T")));
        let loser_name = h.relay.client_of(loser).unwrap();
        assert_eq!(h.relay.peer_of(loser_name.as_str()), None);
        assert_eq!(h.relay.pending_len(), 0);
    }
}

#[test]
fn crossed_registrations_yield_one_pairing() {
    let mut h = Harness::new();
    let a = h.connect("A");
    let b = h.connect("B");
    let req_a = h.register(a, "B");
    let req_b = h.register(b, "A");
    let out = h.drain();
    let to_b = out.register_request(b);
    let to_a = out.register_request(a);
    h.answer(b, to_b, Answer::Accept(true));
    h.answer(a, to_a, Answer::Accept(true));
    let out = h.drain();
    assert!(matches!(out.reply(a, req_a), Reply::Registered(true)));
    assert!(matches!(out.reply(b, req_b), Reply::Registered(false)));
    assert_eq!(h.relay.peer_of("A"), Some(id("B")));
    assert_eq!(h.relay.peer_of("B"), Some(id("A")));
}

#[test]
fn requester_paired_elsewhere_meanwhile_clears_the_target_half_pair() {
    let mut h = Harness::new();
    let a = h.connect("A");
    let b = h.connect("B");
    let c = h.connect("C");
    let req = h.register(a, "B");
    let to_b = h.drain().register_request(b);
    // Meanwhile C pairs with A.
    h.pair(c, a);
    h.answer(b, to_b, Answer::Accept(true));
    let out = h.drain();
    assert!(matches!(out.reply(a, req), Reply::Registered(false)));
    assert_eq!(
        out.unregistered(b).len(),
        1,
        "B accepted locally; it must be cleared"
    );
    assert_eq!(h.relay.peer_of("B"), None);
    assert_eq!(h.relay.peer_of("A"), Some(id("C")));
}

#[test]
fn requester_vanishing_mid_handshake_clears_the_target() {
    let mut h = Harness::new();
    let a = h.connect("A");
    let b = h.connect("B");
    h.register(a, "B");
    let to_b = h.drain().register_request(b);
    h.disconnect(a);
    let out = h.drain();
    assert!(out.to(a).is_empty(), "nothing for a forgotten connection");
    let notices = out.unregistered(b);
    assert_eq!(notices.len(), 1, "{out:?}");
    assert!(out.errors(b).is_empty());
    // B's (late) acceptance changes nothing.
    h.answer(b, to_b, Answer::Accept(true));
    assert!(h.drain().is_empty());
    assert_eq!(h.relay.peer_of("B"), None);
    h.answer(b, notices[0], Answer::Done);
    assert!(h.drain().is_empty());
    assert_eq!(h.relay.pending_len(), 0);
}

#[test]
fn target_vanishing_mid_handshake_fails_the_request_without_server_error() {
    let mut h = Harness::new();
    let a = h.connect("A");
    let b = h.connect("B");
    let req = h.register(a, "B");
    h.drain();
    h.disconnect(b);
    let out = h.drain();
    let error = failed(out.reply(a, req));
    assert_eq!(
        error,
        RequestError::PeerGone {
            event: "P2P_REGISTER".into(),
            target: id("B")
        }
    );
    assert_eq!(
        error.to_string(),
        "'B' disconnected before answering 'P2P_REGISTER'"
    );
    assert!(out.errors(a).is_empty());
    assert_eq!(out.0.len(), 1);
    // The registration slot is free again.
    let c = h.connect("C");
    h.pair(a, c);
}

#[test]
fn register_timeout_fails_the_request_and_clears_the_target() {
    let mut h = Harness::with(Config {
        ack_timeout: Duration::from_millis(2500),
        ..Config::default()
    });
    let a = h.connect("A");
    let b = h.connect("B");
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
    assert_eq!(h.relay.peer_of("A"), None);
    assert_eq!(h.relay.peer_of("B"), None);
    // B never answers the notice either: it expires quietly, nothing grows.
    h.advance(Duration::from_millis(2500));
    assert!(h.drain().is_empty());
    assert_eq!(h.relay.pending_len(), 0);
    assert_eq!(h.relay.poll_timeout(), None);
}

#[test]
fn answers_from_the_wrong_connection_or_of_the_wrong_kind_are_handled() {
    let mut h = Harness::new();
    let a = h.connect("A");
    let b = h.connect("B");
    let c = h.connect("C");
    let req = h.register(a, "B");
    let to_b = h.drain().register_request(b);
    // C cannot answer a question put to B; unknown tickets are ignored.
    h.answer(c, to_b, Answer::Accept(true));
    h.answer(b, Ticket(12345), Answer::Accept(true));
    assert!(h.drain().is_empty());
    assert_eq!(h.relay.pending_len(), 1);
    // An answer of the wrong kind counts as "no".
    h.answer(b, to_b, Answer::Done);
    assert!(matches!(h.drain().reply(a, req), Reply::Registered(false)));
    assert_eq!(h.relay.peer_of("A"), None);
}

// ----- unregistering ------------------------------------------------------------------------

#[test]
fn unregister_tells_both_ends_and_replies_after_the_peer_confirms() {
    let mut h = Harness::new();
    let a = h.connect("A");
    let b = h.connect("B");
    h.pair(a, b);
    let s1 = h.stream(a, b);
    let s2 = h.stream(b, a);
    let req = h.unregister(a);
    let out = h.drain();
    // Streams end on both sides before the pairing notices.
    let mut closed_a = out.stream_closed(a);
    closed_a.sort();
    let mut closed_b = out.stream_closed(b);
    closed_b.sort();
    assert_eq!(closed_a, vec![s1, s2]);
    assert_eq!(closed_b, vec![s1, s2]);
    assert_eq!(out.stream_closed_why(a), vec![StreamEnd::Unpaired; 2]);
    assert_eq!(out.stream_closed_why(b), vec![StreamEnd::Unpaired; 2]);
    let own = out.unregistered(a);
    let theirs = out.unregistered(b);
    assert_eq!((own.len(), theirs.len()), (1, 1));
    assert!(
        out.replies(a).is_empty(),
        "no reply before the peer confirms"
    );
    assert!(out.errors(a).is_empty() && out.errors(b).is_empty());
    assert_eq!(h.relay.peer_of("A"), None);
    assert_eq!(h.relay.peer_of("B"), None);
    assert_eq!(h.relay.stream_ends(s1), None);

    // The caller confirming its own notice does not release the reply; the peer's does.
    h.answer(a, own[0], Answer::Done);
    assert!(h.drain().is_empty());
    h.answer(b, theirs[0], Answer::Done);
    let out = h.drain();
    assert!(matches!(out.reply(a, req), Reply::Unregistered));
    assert_eq!(out.0.len(), 1);
    assert_eq!(h.relay.pending_len(), 0);
    // A second Done is ignored.
    h.answer(b, theirs[0], Answer::Done);
    assert!(h.drain().is_empty());
    // Both are free to pair again.
    h.pair(b, a);
}

#[test]
fn unregister_replies_when_the_peer_disconnects_instead() {
    let mut h = Harness::new();
    let a = h.connect("A");
    let b = h.connect("B");
    h.pair(a, b);
    let req = h.unregister(a);
    h.drain();
    h.disconnect(b);
    let out = h.drain();
    assert!(matches!(out.reply(a, req), Reply::Unregistered));
    assert!(out.errors(a).is_empty());
    assert_eq!(out.peer_disconnected(a), 0, "the pairing had already ended");
}

#[test]
fn unregister_replies_after_the_timeout_without_an_error() {
    let mut h = Harness::new();
    let a = h.connect("A");
    let b = h.connect("B");
    h.pair(a, b);
    let req = h.unregister(a);
    h.drain();
    h.advance(h.timeout() - Duration::from_millis(1));
    assert!(h.drain().is_empty());
    h.advance(Duration::from_millis(1));
    let out = h.drain();
    assert!(matches!(out.reply(a, req), Reply::Unregistered));
    assert!(out.errors(a).is_empty());
    assert!(out.to(b).is_empty());
    assert_eq!(h.relay.pending_len(), 0);
}

#[test]
fn unregister_while_unpaired_fails_with_the_exact_text() {
    let mut h = Harness::new();
    let a = h.connect("A");
    let req = h.unregister(a);
    let out = h.drain();
    assert_eq!(out.errors(a), vec!["cannot unregister: not paired"]);
    assert_eq!(
        failed(out.reply(a, req)),
        RequestError::UnregisterWhileUnpaired
    );
}

#[test]
fn peer_disconnect_frees_the_survivor_with_only_peer_disconnected() {
    let mut h = Harness::new();
    let a = h.connect("A");
    let b = h.connect("B");
    h.pair(a, b);
    let s = h.stream(a, b);
    h.disconnect(b);
    let out = h.drain();
    assert_eq!(out.stream_closed(a), vec![s]);
    assert_eq!(out.stream_closed_why(a), vec![StreamEnd::PeerGone]);
    assert_eq!(out.peer_disconnected(a), 1);
    assert!(out.errors(a).is_empty());
    assert!(out.to(b).is_empty());
    assert_eq!(h.relay.peer_of("A"), None);
    assert_eq!(h.relay.stream_ends(s), None);
    assert_eq!(h.relay.client_ids(), ids(&["A"]));
}

// ----- emitting -----------------------------------------------------------------------------

#[test]
fn emit_reaches_only_the_paired_peer() {
    let mut h = Harness::new();
    let a = h.connect("A");
    let b = h.connect("B");
    let c = h.connect("C");
    h.pair(a, b);
    h.emit(a, "B", "chat", rich_values());
    let out = h.drain();
    assert_eq!(out.0.len(), 1);
    assert_eq!(
        out.delivered(b),
        vec![("chat".to_string(), rich_values(), None)]
    );
    // Both directions work.
    h.emit(b, "A", "chat", Payload::empty());
    assert_eq!(h.drain().delivered(a).len(), 1);

    // To someone else than the peer: refused, nothing reaches C.
    h.emit(a, "C", "chat", Payload::empty());
    let out = h.drain();
    assert_eq!(out.errors(a), vec!["not paired with 'C'"]);
    assert!(out.to(c).is_empty());
    assert!(out.replies(a).is_empty(), "no ack asked, no reply");
    // The unpaired C cannot reach anybody, not even with a valid id.
    let req = h.emit_ack(c, "A", "chat", Payload::empty());
    let out = h.drain();
    assert_eq!(out.errors(c), vec!["not paired with 'A'"]);
    assert_eq!(
        failed(out.reply(c, req)),
        RequestError::NotPairedWith("A".into())
    );
    assert!(out.to(a).is_empty());
    // Nor an unknown or invalid id.
    h.emit(c, "", "chat", Payload::empty());
    assert_eq!(h.drain().errors(c), vec!["not paired with ''"]);
    assert_eq!(h.relay.pending_len(), 0);
}

#[test]
fn emit_after_unregister_is_refused() {
    let mut h = Harness::new();
    let a = h.connect("A");
    let b = h.connect("B");
    h.pair(a, b);
    h.unregister(a);
    h.drain();
    h.emit(a, "B", "chat", Payload::empty());
    let out = h.drain();
    assert_eq!(out.errors(a), vec!["not paired with 'B'"]);
    assert!(out.to(b).is_empty());
}

#[test]
fn reserved_and_empty_event_names_are_refused() {
    let mut h = Harness::new();
    let a = h.connect("A");
    let b = h.connect("B");
    h.pair(a, b);
    for name in [
        "connect",
        "connect_error",
        "disconnect",
        "disconnecting",
        "newListener",
        "removeListener",
    ] {
        h.emit(a, "B", name, Payload::empty());
        let out = h.drain();
        assert_eq!(
            out.errors(a),
            vec![format!("event name '{name}' is reserved")]
        );
        assert!(out.to(b).is_empty());
        let req = h.emit_ack(a, "B", name, Payload::empty());
        let out = h.drain();
        assert_eq!(
            failed(out.reply(a, req)),
            RequestError::ReservedEvent(name.into())
        );
        assert!(out.to(b).is_empty());
    }
    // Similar names are ordinary events.
    h.emit(a, "B", "Connect", Payload::empty());
    h.emit(a, "B", "disconnect ", Payload::empty());
    assert_eq!(h.drain().delivered(b).len(), 2);

    let req = h.emit_ack(a, "B", "", Payload::empty());
    let out = h.drain();
    assert_eq!(out.errors(a), vec!["event name must not be empty"]);
    assert_eq!(failed(out.reply(a, req)), RequestError::EmptyEvent);
    assert!(out.to(b).is_empty());
    assert_eq!(h.relay.pending_len(), 0);
}

#[test]
fn payload_over_the_limit_is_refused() {
    let mut h = Harness::with(Config {
        max_message_bytes: 100,
        ..Config::default()
    });
    let a = h.connect("A");
    let b = h.connect("B");
    h.pair(a, b);
    h.emit(a, "B", "big", msgpack_of_len(100));
    assert_eq!(h.drain().delivered(b).len(), 1, "exactly the limit passes");
    let req = h.emit_ack(a, "B", "big", msgpack_of_len(101));
    let out = h.drain();
    assert_eq!(
        out.errors(a),
        vec!["payload of 101 bytes exceeds the limit of 100 bytes"]
    );
    assert_eq!(
        failed(out.reply(a, req)),
        RequestError::PayloadTooLarge {
            size: 101,
            limit: 100
        }
    );
    assert!(out.to(b).is_empty());
    // Decoded values are measured too.
    h.emit(
        a,
        "B",
        "big",
        Payload::Values(vec![Value::Binary(vec![0; 200])]),
    );
    let out = h.drain();
    assert_eq!(out.errors(a).len(), 1);
    assert!(out.to(b).is_empty());
}

#[test]
fn ack_round_trip_returns_the_payload_unchanged() {
    let mut h = Harness::new();
    let a = h.connect("A");
    let b = h.connect("B");
    h.pair(a, b);
    let req = h.emit_ack(a, "B", "question", rich_values());
    let out = h.drain();
    let delivered = out.delivered(b);
    assert_eq!(delivered.len(), 1);
    let (event, args, ticket) = delivered[0].clone();
    assert_eq!((event.as_str(), &args), ("question", &rich_values()));
    let ticket = ticket.expect("an ack was asked for");
    assert_eq!(h.relay.pending_len(), 1);

    let answer = Payload::MsgPack(Bytes::from_static(&[0x92, 0xc4, 0x01, 0xff, 0xc3]));
    h.answer(b, ticket, Answer::Ack(answer.clone()));
    let out = h.drain();
    match out.reply(a, req) {
        Reply::Ack(args) => assert_eq!(args, answer),
        other => panic!("{other:?}"),
    }
    assert_eq!(out.0.len(), 1);
    assert_eq!(h.relay.pending_len(), 0);
    // A second (late) answer is ignored.
    h.answer(b, ticket, Answer::Ack(Payload::empty()));
    assert!(h.drain().is_empty());

    // Values come back as values; an ack of the wrong kind means "no arguments".
    let req = h.emit_ack(b, "A", "q", Payload::empty());
    let (_, _, ticket) = h.drain().delivered(a)[0].clone();
    h.answer(a, ticket.unwrap(), Answer::Ack(rich_values()));
    assert!(matches!(h.drain().reply(b, req), Reply::Ack(p) if p == rich_values()));
    let req = h.emit_ack(b, "A", "q", Payload::empty());
    let (_, _, ticket) = h.drain().delivered(a)[0].clone();
    h.answer(a, ticket.unwrap(), Answer::Done);
    assert!(matches!(h.drain().reply(b, req), Reply::Ack(p) if p == Payload::empty()));
}

#[test]
fn oversized_ack_fails_for_both_ends() {
    let mut h = Harness::with(Config {
        max_message_bytes: 100,
        ..Config::default()
    });
    let a = h.connect("A");
    let b = h.connect("B");
    h.pair(a, b);
    let req = h.emit_ack(a, "B", "q", Payload::empty());
    let (_, _, ticket) = h.drain().delivered(b)[0].clone();
    let big = Payload::MsgPack(Bytes::from(vec![0x90; 101]));
    h.answer(b, ticket.unwrap(), Answer::Ack(big));
    let out = h.drain();
    let text = "payload of 101 bytes exceeds the limit of 100 bytes";
    assert_eq!(out.errors(b), vec![text.to_owned()]);
    assert_eq!(out.errors(a), vec![text.to_owned()]);
    assert!(matches!(
        out.reply(a, req),
        Reply::Failed(RequestError::PayloadTooLarge {
            size: 101,
            limit: 100
        })
    ));
    assert_eq!(h.relay.pending_len(), 0);
}

#[test]
fn ack_timeout_fails_with_the_exact_text_and_frees_the_slot() {
    let mut h = Harness::with(Config {
        ack_timeout: Duration::from_millis(1500),
        ..Config::default()
    });
    let a = h.connect("A");
    let b = h.connect("B");
    h.pair(a, b);
    h.advance(Duration::from_millis(100));
    let req = h.emit_ack(a, "B", "ping", Payload::empty());
    let ticket = h.drain().delivered(b)[0].2.unwrap();
    assert_eq!(
        h.relay.poll_timeout(),
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
    assert_eq!(h.relay.pending_len(), 0);
    assert_eq!(h.relay.poll_timeout(), None);
    // The late ack is ignored.
    h.answer(b, ticket, Answer::Ack(Payload::empty()));
    assert!(h.drain().is_empty());
}

#[test]
fn one_timeout_call_settles_every_expired_question_in_order() {
    let mut h = Harness::new();
    let a = h.connect("A");
    let b = h.connect("B");
    h.pair(a, b);
    let first = h.emit_ack(a, "B", "one", Payload::empty());
    h.now += Duration::from_millis(10);
    let second = h.emit_ack(a, "B", "two", Payload::empty());
    h.drain();
    h.advance(h.timeout() * 2);
    let out = h.drain();
    let order: Vec<ReqId> = out.replies(a).into_iter().map(|(r, _)| r).collect();
    assert_eq!(order, vec![first, second]);
    assert_eq!(h.relay.pending_len(), 0);
}

#[test]
fn ack_peer_vanishing_fails_without_server_error() {
    let mut h = Harness::new();
    let a = h.connect("A");
    let b = h.connect("B");
    h.pair(a, b);
    let req = h.emit_ack(a, "B", "ping", Payload::empty());
    h.drain();
    h.disconnect(b);
    let out = h.drain();
    assert_eq!(
        failed(out.reply(a, req)),
        RequestError::PeerGone {
            event: "ping".into(),
            target: id("B")
        }
    );
    assert!(out.errors(a).is_empty());
    assert_eq!(out.peer_disconnected(a), 1);
}

#[test]
fn ack_requester_vanishing_drops_the_question() {
    let mut h = Harness::new();
    let a = h.connect("A");
    let b = h.connect("B");
    h.pair(a, b);
    h.emit_ack(a, "B", "ping", Payload::empty());
    let ticket = h.drain().delivered(b)[0].2.unwrap();
    h.disconnect(a);
    h.drain();
    assert_eq!(h.relay.pending_len(), 0);
    h.answer(b, ticket, Answer::Ack(Payload::empty()));
    assert!(h.drain().is_empty());
}

#[test]
fn ack_asked_before_unregister_is_still_answered() {
    let mut h = Harness::new();
    let a = h.connect("A");
    let b = h.connect("B");
    h.pair(a, b);
    let req = h.emit_ack(a, "B", "ping", Payload::empty());
    let ticket = h.drain().delivered(b)[0].2.unwrap();
    h.unregister(b);
    h.drain();
    h.answer(b, ticket, Answer::Ack(Payload::empty()));
    assert!(matches!(h.drain().reply(a, req), Reply::Ack(_)));
}

#[test]
fn pending_requests_per_connection_are_limited() {
    let mut h = Harness::with(Config {
        max_pending_per_connection: 2,
        ..Config::default()
    });
    let a = h.connect("A");
    let b = h.connect("B");
    h.pair(a, b);
    h.emit_ack(a, "B", "one", Payload::empty());
    let second = h.emit_ack(a, "B", "two", Payload::empty());
    let tickets: Vec<Ticket> = h
        .drain()
        .delivered(b)
        .into_iter()
        .map(|d| d.2.unwrap())
        .collect();
    let req = h.emit_ack(a, "B", "three", Payload::empty());
    let out = h.drain();
    assert_eq!(
        out.errors(a),
        vec!["too many requests awaiting an answer (2); wait for some to complete"]
    );
    assert_eq!(failed(out.reply(a, req)), RequestError::TooManyPending(2));
    assert!(out.to(b).is_empty());
    // Emits without an ack and answers are not limited.
    h.emit(a, "B", "free", Payload::empty());
    assert_eq!(h.drain().delivered(b).len(), 1);
    // Streams count too.
    let req = h.open_stream(a, "B");
    assert_eq!(
        failed(h.drain().reply(a, req)),
        RequestError::TooManyPending(2)
    );
    // The peer has its own budget.
    h.emit_ack(b, "A", "theirs", Payload::empty());
    assert_eq!(h.drain().delivered(a).len(), 1);
    // Answering one frees a slot.
    h.answer(b, tickets[1], Answer::Ack(Payload::empty()));
    assert!(matches!(h.drain().reply(a, second), Reply::Ack(_)));
    h.emit_ack(a, "B", "four", Payload::empty());
    assert_eq!(h.drain().delivered(b).len(), 1);
}

#[test]
fn pending_limit_applies_to_registration() {
    let mut h = Harness::with(Config {
        max_pending_per_connection: 1,
        ..Config::default()
    });
    let a = h.connect("A");
    let b = h.connect("B");
    h.connect("C");
    h.pair(a, b);
    h.emit_ack(a, "B", "one", Payload::empty());
    h.drain();
    h.unregister(a);
    h.drain();
    let req = h.register(a, "C");
    assert_eq!(
        failed(h.drain().reply(a, req)),
        RequestError::TooManyPending(2)
    );
}

// ----- streams ------------------------------------------------------------------------------

#[test]
fn stream_open_and_accept() {
    let mut h = Harness::new();
    let a = h.connect("A");
    let b = h.connect("B");
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
    h.answer(b, ticket, Answer::Accept(true));
    let out = h.drain();
    let stream = match out.reply(a, req) {
        Reply::StreamOpened { stream, .. } => stream,
        other => panic!("{other:?}"),
    };
    assert!(matches!(
        out.to(b)[..],
        [Event::StreamAccepted { stream: s, from, .. }] if *s == stream && from == &id("A")
    ));
    assert_eq!(h.relay.stream_ends(stream), Some((a, b)));
    // Another one, the other way: a distinct id.
    let back = h.stream(b, a);
    assert_ne!(back, stream);
    assert_eq!(h.relay.stream_ends(back), Some((b, a)));
}

#[test]
fn stream_refused_by_the_peer() {
    let mut h = Harness::new();
    let a = h.connect("A");
    let b = h.connect("B");
    h.pair(a, b);
    let req = h.open_stream(a, "B");
    let ticket = h.drain().stream_request(b);
    h.answer(b, ticket, Answer::Accept(false));
    let out = h.drain();
    assert!(matches!(out.reply(a, req), Reply::StreamRefused));
    assert!(out.errors(a).is_empty());
    assert!(out.to(b).is_empty());
    assert_eq!(h.relay.pending_len(), 0);
}

#[test]
fn stream_refusals_have_exact_texts() {
    let mut h = Harness::new();
    let a = h.connect("A");
    let b = h.connect("B");
    let c = h.connect("C");
    let req = h.open_stream(a, "B");
    let out = h.drain();
    assert_eq!(out.errors(a), vec!["cannot open a stream: not paired"]);
    assert_eq!(failed(out.reply(a, req)), RequestError::StreamWhileUnpaired);
    assert!(out.to(b).is_empty());

    h.pair(a, b);
    let req = h.open_stream(a, "C");
    let out = h.drain();
    assert_eq!(out.errors(a), vec!["not paired with 'C'"]);
    assert_eq!(
        failed(out.reply(a, req)),
        RequestError::NotPairedWith("C".into())
    );
    assert!(out.to(c).is_empty());
}

#[test]
fn stream_timeout_and_peer_loss() {
    let mut h = Harness::new();
    let a = h.connect("A");
    let b = h.connect("B");
    h.pair(a, b);
    let req = h.open_stream(a, "B");
    h.drain();
    h.advance(h.timeout());
    let out = h.drain();
    let ms = h.timeout().as_millis();
    assert_eq!(
        out.errors(a),
        vec![format!(
            "no ack for event 'P2P_REGISTER_STREAM' from 'B' within {ms} ms"
        )]
    );
    assert!(matches!(
        failed(out.reply(a, req)),
        RequestError::AckTimeout { .. }
    ));

    let req = h.open_stream(a, "B");
    h.drain();
    h.disconnect(b);
    let out = h.drain();
    assert_eq!(
        failed(out.reply(a, req)),
        RequestError::PeerGone {
            event: "P2P_REGISTER_STREAM".into(),
            target: id("B")
        }
    );
    assert!(out.errors(a).is_empty());
}

#[test]
fn stream_accepted_after_the_pairing_ended_is_not_granted() {
    let mut h = Harness::new();
    let a = h.connect("A");
    let b = h.connect("B");
    h.pair(a, b);
    let req = h.open_stream(a, "B");
    let ticket = h.drain().stream_request(b);
    h.unregister(a);
    h.drain();
    h.answer(b, ticket, Answer::Accept(true));
    let out = h.drain();
    assert_eq!(out.errors(a), vec!["cannot open a stream: not paired"]);
    assert_eq!(failed(out.reply(a, req)), RequestError::StreamWhileUnpaired);
    assert!(out.to(b).is_empty(), "no StreamAccepted");
}

#[test]
fn streams_per_pair_are_limited_even_when_requests_overlap() {
    let mut h = Harness::with(Config {
        max_streams_per_pair: 2,
        ..Config::default()
    });
    let a = h.connect("A");
    let b = h.connect("B");
    h.pair(a, b);
    h.stream(a, b);
    // Two more requests in flight at once, one from each side, both accepted.
    let from_a = h.open_stream(a, "B");
    let from_b = h.open_stream(b, "A");
    let out = h.drain();
    let (to_b, to_a) = (out.stream_request(b), out.stream_request(a));
    h.answer(b, to_b, Answer::Accept(true));
    h.answer(a, to_a, Answer::Accept(true));
    let out = h.drain();
    assert!(matches!(out.reply(a, from_a), Reply::StreamOpened { .. }));
    assert_eq!(
        out.errors(b),
        vec!["too many open streams in this pairing (2)"]
    );
    assert_eq!(
        failed(out.reply(b, from_b)),
        RequestError::TooManyStreams(2)
    );
    assert_eq!(
        out.to(a).len(),
        1,
        "only A's own reply, no StreamAccepted: {out:?}"
    );
    // At the limit, a new request is refused at once.
    let req = h.open_stream(b, "A");
    let out = h.drain();
    assert_eq!(
        out.errors(b),
        vec!["too many open streams in this pairing (2)"]
    );
    assert_eq!(failed(out.reply(b, req)), RequestError::TooManyStreams(2));
    assert!(out.to(a).is_empty());
}

#[test]
fn close_stream_is_bookkeeping_and_frees_a_slot() {
    let mut h = Harness::with(Config {
        max_streams_per_pair: 1,
        ..Config::default()
    });
    let a = h.connect("A");
    let b = h.connect("B");
    let c = h.connect("C");
    h.pair(a, b);
    let s = h.stream(a, b);
    // A stranger cannot close it; unknown streams are ignored.
    h.cmd(c, Command::CloseStream { stream: s });
    h.cmd(
        a,
        Command::CloseStream {
            stream: StreamId(77),
        },
    );
    assert!(h.drain().is_empty());
    assert_eq!(h.relay.stream_ends(s), Some((a, b)));

    h.cmd(b, Command::CloseStream { stream: s });
    // The stream's own FIN or reset told the other end; the core says nothing more.
    assert!(h.drain().is_empty());
    assert_eq!(h.relay.stream_ends(s), None);
    // Closing twice changes nothing.
    h.cmd(a, Command::CloseStream { stream: s });
    assert!(h.drain().is_empty());
    // The slot is free again; the opener can close too.
    let s2 = h.stream(a, b);
    h.cmd(a, Command::CloseStream { stream: s2 });
    assert!(h.drain().is_empty());
    assert_eq!(h.relay.stream_ends(s2), None);
    // The pairing itself stands.
    assert_eq!(h.relay.peer_of("A"), Some(id("B")));
}

// ----- failed deliveries --------------------------------------------------------------------

#[test]
fn undelivered_ack_question_answers_the_requester() {
    let mut h = Harness::new();
    let a = h.connect("A");
    let b = h.connect("B");
    h.pair(a, b);
    let req = h.emit_ack(a, "B", "ping", Payload::empty());
    let ticket = h.drain().delivered(b)[0].2.unwrap();
    h.relay
        .report_undelivered(h.now, b, "ping", Some(ticket), 8);
    h.check();
    let out = h.drain();
    let text = "could not deliver 'ping' to 'B': its queue is full (8 messages)";
    assert_eq!(out.errors(a), vec![text]);
    let error = failed(out.reply(a, req));
    assert_eq!(error.to_string(), text);
    assert!(out.to(b).is_empty());
    assert_eq!(h.relay.pending_len(), 0);
    // The answer that would have come is ignored.
    h.answer(b, ticket, Answer::Ack(Payload::empty()));
    assert!(h.drain().is_empty());
}

#[test]
fn undelivered_event_without_ack_tells_the_sender() {
    let mut h = Harness::new();
    let a = h.connect("A");
    let b = h.connect("B");
    h.pair(a, b);
    h.emit(a, "B", "ping", Payload::empty());
    h.drain();
    h.relay.report_undelivered(h.now, b, "ping", None, 4);
    let out = h.drain();
    assert_eq!(
        out.errors(a),
        vec!["could not deliver 'ping' to 'B': its queue is full (4 messages)"]
    );
    assert!(out.replies(a).is_empty());
    // For a forgotten receiver nothing happens.
    h.disconnect(b);
    h.drain();
    h.relay.report_undelivered(h.now, b, "ping", None, 4);
    assert!(h.drain().is_empty());
}

#[test]
fn undelivered_with_a_foreign_ticket_keeps_that_request_answerable() {
    let mut h = Harness::new();
    let a = h.connect("A");
    let b = h.connect("B");
    let c = h.connect("C");
    let d = h.connect("D");
    h.pair(c, d);
    // A registration question put to B, reported with the wrong receiver and as if it were
    // an undelivered event: the registration must still get its one reply.
    let req = h.register(a, "B");
    let to_b = h.drain().register_request(b);
    h.relay.report_undelivered(h.now, d, "x", Some(to_b), 1);
    h.relay
        .report_undelivered(h.now, b, "P2P_REGISTER", Some(to_b), 1);
    h.check();
    h.drain();
    assert_eq!(h.relay.pending_len(), 1);
    h.answer(b, to_b, Answer::Accept(true));
    assert!(matches!(h.drain().reply(a, req), Reply::Registered(true)));
    // And A may register again later without tripping on a stale ticket.
    h.unregister(a);
    h.drain();
    let req = h.register(a, "C");
    assert!(matches!(h.drain().reply(a, req), Reply::Registered(false)));
}

// ----- listing and queries ------------------------------------------------------------------

#[test]
fn list_is_sorted_and_current() {
    let mut h = Harness::new();
    let zed = h.connect("zed");
    h.connect("alpha");
    h.connect("Mid");
    let m = h.connect("m2");
    let req = h.req();
    h.cmd(
        zed,
        Command::List {
            req,
            after: None,
            limit: None,
        },
    );
    match h.drain().reply(zed, req) {
        Reply::Clients(list) => assert_eq!(list.ids, ids(&["Mid", "alpha", "m2", "zed"])),
        other => panic!("{other:?}"),
    }
    h.disconnect(m);
    let req = h.req();
    h.cmd(
        zed,
        Command::List {
            req,
            after: None,
            limit: None,
        },
    );
    match h.drain().reply(zed, req) {
        Reply::Clients(list) => assert_eq!(list.ids, ids(&["Mid", "alpha", "zed"])),
        other => panic!("{other:?}"),
    }
    assert_eq!(h.relay.client_ids(), ids(&["Mid", "alpha", "zed"]));
}

#[test]
fn queries_follow_connections_and_pairings() {
    let mut h = Harness::new();
    assert!(h.relay.client_ids().is_empty());
    let a = h.connect("A");
    let b = h.connect("B");
    assert_eq!(h.relay.conn_of("A"), Some(a));
    assert_eq!(h.relay.conn_of("B"), Some(b));
    assert_eq!(h.relay.conn_of("C"), None);
    assert_eq!(h.relay.client_of(a), Some(id("A")));
    assert_eq!(h.relay.client_of(ConnId(42)), None);
    assert_eq!(h.relay.peer_of("A"), None);
    assert_eq!(h.relay.peer_of("nobody"), None);
    h.pair(a, b);
    assert_eq!(h.relay.peer_of("A"), Some(id("B")));
    assert_eq!(h.relay.peer_of("B"), Some(id("A")));
    h.disconnect(a);
    assert_eq!(h.relay.conn_of("A"), None);
    assert_eq!(h.relay.client_of(a), None);
    assert_eq!(h.relay.peer_of("A"), None);
    assert_eq!(h.relay.peer_of("B"), None);
    assert_eq!(h.relay.client_ids(), ids(&["B"]));
}

#[test]
fn poll_timeout_tracks_the_earliest_deadline() {
    let mut h = Harness::new();
    assert_eq!(h.relay.poll_timeout(), None);
    let a = h.connect("A");
    let b = h.connect("B");
    h.pair(a, b);
    h.now += Duration::from_secs(1);
    h.emit_ack(a, "B", "one", Payload::empty());
    h.now += Duration::from_secs(1);
    h.emit_ack(b, "A", "two", Payload::empty());
    h.drain();
    let timeout = h.timeout();
    assert_eq!(
        h.relay.poll_timeout(),
        Some(h.t0 + Duration::from_secs(1) + timeout)
    );
    h.advance(timeout - Duration::from_secs(1));
    assert_eq!(h.drain().replies(a).len(), 1);
    assert_eq!(
        h.relay.poll_timeout(),
        Some(h.t0 + Duration::from_secs(2) + timeout)
    );
    // An early call changes nothing.
    h.relay.handle_timeout(h.t0);
    assert!(h.drain().is_empty());
}

#[test]
fn commands_from_forgotten_connections_are_ignored() {
    let mut h = Harness::new();
    let a = h.connect("A");
    h.disconnect(a);
    h.register(a, "A");
    h.unregister(a);
    h.open_stream(a, "A");
    h.emit(a, "A", "x", Payload::empty());
    let req = h.req();
    h.cmd(
        a,
        Command::List {
            req,
            after: None,
            limit: None,
        },
    );
    assert!(h.drain().is_empty());
    assert_eq!(h.relay.pending_len(), 0);
}

mod security;

// ----- payloads between a native and a Socket.IO client -------------------------------------

impl Harness {
    fn connect_legacy(&mut self, id: &str) -> ConnId {
        let conn = self
            .relay
            .connect(self.now, Some(id), None, Transport::Legacy)
            .unwrap_or_else(|e| panic!("connect {id}: {e}"));
        self.check();
        conn
    }
}

/// `[{nil: 1}]`: a map key JSON cannot express.
fn nil_keyed() -> Payload {
    Payload::MsgPack(Bytes::from_static(&[0x91, 0x81, 0xc0, 0x01]))
}

#[test]
fn an_emit_a_socketio_peer_cannot_read_is_refused_to_its_sender() {
    let mut h = Harness::new();
    let a = h.connect("A");
    let b = h.connect_legacy("B");
    h.pair(a, b);
    h.emit(a, "B", "e", nil_keyed());
    let out = h.drain();
    assert!(out.delivered(b).is_empty(), "{out:?}");
    let expected = "could not deliver 'e' to 'B', a Socket.IO client: its arguments have no \
                    JSON form: a map key is nil; JSON object keys are strings (integer and \
                    boolean keys are turned into strings, other keys cannot be)";
    assert_eq!(out.errors(a), vec![expected.to_owned()]);
    // With an ack, the ack is answered too, once.
    let req = h.emit_ack(a, "B", "e", nil_keyed());
    let out = h.drain();
    assert!(out.delivered(b).is_empty(), "{out:?}");
    assert!(matches!(
        failed(out.reply(a, req)),
        RequestError::EventNotJson { .. }
    ));
    // What JSON can say is delivered, converted once, as values.
    h.emit(
        a,
        "B",
        "e",
        Payload::MsgPack(Bytes::from_static(&[0x91, 0x81, 0x01, 0x02])),
    );
    let out = h.drain();
    let delivered = out.delivered(b);
    assert_eq!(
        delivered[0].1,
        Payload::Values(vec![Value::Map(vec![(Value::from("1"), Value::from(2))])])
    );
}

#[test]
fn an_ack_a_socketio_asker_cannot_read_answers_it_and_tells_the_native_client() {
    let mut h = Harness::new();
    let a = h.connect_legacy("A");
    let b = h.connect("B");
    h.pair(a, b);
    let req = h.emit_ack(a, "B", "question", Payload::empty());
    let out = h.drain();
    let ticket = out.delivered(b)[0].2.expect("a ticket");
    h.answer(b, ticket, Answer::Ack(nil_keyed()));
    let out = h.drain();
    let error = failed(out.reply(a, req));
    assert!(
        matches!(error, RequestError::AckNotJson { .. }),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .starts_with("the ack from 'B' cannot reach 'A', a Socket.IO client"),
        "{error}"
    );
    assert_eq!(out.errors(b), vec![error.to_string()]);
    // A native asker takes the same ack as it is.
    let c = h.connect("C");
    let d = h.connect("D");
    h.pair(c, d);
    let req = h.emit_ack(c, "D", "question", Payload::empty());
    let ticket = h.drain().delivered(d)[0].2.expect("a ticket");
    h.answer(d, ticket, Answer::Ack(nil_keyed()));
    match h.drain().reply(c, req) {
        Reply::Ack(args) => assert_eq!(args, nil_keyed()),
        other => panic!("expected the ack, got {other:?}"),
    }
}
