//! Admission with tokens, the `peers` claim in both directions, and per-client rate limits,
//! driven through the public calls with a fake clock.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::*;
use crate::auth::token::{mint, TokenClaims};
use crate::{ClientPage, Peers, RateLimit, RateLimits, TokenAuthenticator};

const SECRET: &[u8] = b"the relay's shared secret";
const NOW_UNIX: u64 = 1_700_000_000;

fn token(sub: &str, exp: u64, peers: Option<&[&str]>) -> Vec<u8> {
    mint(
        SECRET,
        &TokenClaims {
            sub: sub.into(),
            exp,
            iat: None,
            peers: peers.map(|p| p.iter().map(|s| s.to_string()).collect()),
        },
    )
    .into_bytes()
}

/// A harness whose relay admits by token, with its wall clock at `NOW_UNIX`.
fn with_tokens(config: Config) -> Harness {
    let mut h = Harness::with(config);
    h.relay = Relay::with_authenticator(h.relay.config().clone(), TokenAuthenticator::new(SECRET));
    let wall = UNIX_EPOCH + Duration::from_secs(NOW_UNIX);
    h.relay.set_wall_clock(h.now, wall);
    h
}

impl Harness {
    fn connect_with(&mut self, id: &str, peers: Option<&[&str]>) -> ConnId {
        let credentials = token(id, NOW_UNIX + 3600, peers);
        let conn = self
            .relay
            .connect(self.now, Some(id), Some(&credentials), Transport::Native)
            .unwrap_or_else(|e| panic!("connect {id}: {e}"));
        self.check();
        conn
    }
}

fn refusal(h: &mut Harness, id: &str, credentials: Option<&[u8]>) -> AuthError {
    match h
        .relay
        .connect(h.now, Some(id), credentials, Transport::Legacy)
    {
        Err(ConnectError::Unauthorized { client, reason }) => {
            assert_eq!(client.as_str(), id);
            reason
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn tokens_bind_the_client_id_and_each_refusal_says_why() {
    let mut h = with_tokens(Config::default());
    assert_eq!(refusal(&mut h, "A", None), AuthError::MissingToken);
    assert_eq!(
        refusal(&mut h, "A", Some(&token("A", NOW_UNIX - 10, None))),
        AuthError::Expired {
            exp: NOW_UNIX - 10,
            ago: 10
        }
    );
    assert_eq!(
        refusal(&mut h, "A", Some(&token("B", NOW_UNIX + 60, None))),
        AuthError::WrongSubject {
            subject: "B".into()
        }
    );
    let forged = mint(
        b"not the relay's secret",
        &TokenClaims {
            sub: "A".into(),
            exp: NOW_UNIX + 60,
            iat: None,
            peers: None,
        },
    );
    assert_eq!(
        refusal(&mut h, "A", Some(forged.as_bytes())),
        AuthError::BadSignature
    );
    assert!(h.relay.client_ids().is_empty(), "nobody got in");
    let a = h.connect_with("A", None);
    assert_eq!(h.relay.connection(a).unwrap().peers(), &Peers::Any);
    // The token's time runs with the fake clock: an hour later it has expired.
    h.advance(Duration::from_secs(3601));
    assert!(matches!(
        refusal(&mut h, "B", Some(&token("B", NOW_UNIX + 3600, None))),
        AuthError::Expired { ago: 1, .. }
    ));
}

#[test]
fn the_wall_clock_defaults_to_the_epoch_at_the_first_instant() {
    let mut relay = Relay::new(Config::default());
    let t0 = Instant::now();
    assert_eq!(relay.unix_time(t0), 0);
    assert_eq!(relay.unix_time(t0 + Duration::from_secs(5)), 5);
    relay.set_wall_clock(t0, SystemTime::UNIX_EPOCH + Duration::from_secs(100));
    assert_eq!(relay.unix_time(t0 + Duration::from_secs(5)), 105);
}

#[test]
fn the_requesters_peers_claim_refuses_without_asking_the_target() {
    let mut h = with_tokens(Config::default());
    let a = h.connect_with("A", Some(&["B", "team-*"]));
    let d = h.connect_with("D", None);
    let req = h.register(a, "D");
    let out = h.drain();
    assert_eq!(
        failed(out.reply(a, req)),
        RequestError::PeerNotAllowed(ClientId::new("D").unwrap())
    );
    assert_eq!(
        out.errors(a),
        vec!["pairing with 'D' is not allowed: it is not among your token's peers"]
    );
    assert!(out.to(d).is_empty(), "the target was not bothered");
    // Names and prefixes of the claim pair as usual.
    let t = h.connect_with("team-1", None);
    h.pair(a, t);
    assert_eq!(h.relay.peer_of("A").unwrap().as_str(), "team-1");
    assert_eq!(
        RequestError::PeerNotAllowed(ClientId::new("D").unwrap()).code(),
        crate::ErrorCode::Forbidden
    );
}

#[test]
fn the_targets_peers_claim_refuses_the_requester() {
    let mut h = with_tokens(Config::default());
    let b = h.connect_with("B", Some(&["A"]));
    let c = h.connect_with("C", None);
    let req = h.register(c, "B");
    let out = h.drain();
    assert_eq!(
        failed(out.reply(c, req)),
        RequestError::PeerRefuses(ClientId::new("B").unwrap())
    );
    assert_eq!(
        out.errors(c),
        vec!["'B' does not allow pairing with you: you are not among its token's peers"]
    );
    assert!(out.to(b).is_empty(), "B's client was not asked");
    // C is free again at once: its next pairing goes ahead.
    let e = h.connect_with("E", None);
    h.pair(c, e);
    // The one B names pairs with it.
    let a = h.connect_with("A", None);
    h.pair(a, b);
    assert_eq!(h.relay.peer_of("B").unwrap().as_str(), "A");
}

#[test]
fn claims_forbid_pairing_across_transports_and_both_directions_at_once() {
    // Both restricted, each naming only someone else: refused by the requester's own claim
    // first, and the other way round by the other's.
    let mut h = with_tokens(Config::default());
    let a = h.connect_with("A", Some(&["X"]));
    let b = h.connect_with("B", Some(&["Y"]));
    let req = h.register(a, "B");
    assert!(matches!(
        failed(h.drain().reply(a, req)),
        RequestError::PeerNotAllowed(_)
    ));
    let req = h.register(b, "A");
    assert!(matches!(
        failed(h.drain().reply(b, req)),
        RequestError::PeerNotAllowed(_)
    ));
    assert!(h.relay.peer_of("A").is_none() && h.relay.peer_of("B").is_none());
}

fn limited() -> Config {
    Config {
        rate: RateLimits {
            messages_per_second: 10,
            message_burst: 5,
            bytes_per_second: 1000,
            byte_burst: 1000,
        },
        ..Config::default()
    }
}

fn bytes(n: usize) -> Payload {
    Payload::MsgPack(Bytes::from(vec![0x90; n]))
}

#[test]
fn the_request_rate_refuses_with_its_limit_and_spares_other_clients() {
    let mut h = Harness::with(limited());
    let (a, b, c, d) = (
        h.connect("A"),
        h.connect("B"),
        h.connect("C"),
        h.connect("D"),
    );
    h.pair(a, b); // A's first request
    h.pair(c, d);
    for _ in 0..4 {
        h.emit(a, "B", "e", Payload::empty());
    }
    assert_eq!(h.drain().delivered(b).len(), 4);
    let req = h.emit_ack(a, "B", "e", Payload::empty());
    let out = h.drain();
    let limit = RateLimit::Messages {
        per_second: 10,
        burst: 5,
    };
    assert_eq!(failed(out.reply(a, req)), RequestError::RateLimited(limit));
    assert_eq!(
        out.errors(a),
        vec!["rate limit reached: at most 10 requests per second (bursts of 5); slow down"]
    );
    assert!(out.delivered(b).is_empty(), "nothing was relayed");
    assert_eq!(
        RequestError::RateLimited(limit).code(),
        crate::ErrorCode::RateLimited
    );
    // Every kind of request counts, and is answered.
    let req = h.register(a, "C");
    assert!(matches!(
        failed(h.drain().reply(a, req)),
        RequestError::RateLimited(_)
    ));
    let req = h.open_stream(a, "B");
    assert!(matches!(
        failed(h.drain().reply(a, req)),
        RequestError::RateLimited(_)
    ));
    // Another client's budget is its own.
    for _ in 0..4 {
        h.emit(c, "D", "e", Payload::empty());
    }
    let out = h.drain();
    assert_eq!(out.delivered(d).len(), 4);
    assert!(out.errors(c).is_empty());
    // Answers are not requests: B can still ack, and A's budget refills with time.
    h.advance(Duration::from_millis(100));
    h.emit(a, "B", "e", Payload::empty());
    assert_eq!(h.drain().delivered(b).len(), 1);
    h.emit(a, "B", "e", Payload::empty());
    assert_eq!(h.drain().errors(a).len(), 1);
}

#[test]
fn the_byte_rate_counts_event_and_ack_payloads() {
    let mut h = Harness::with(limited());
    let (a, b) = (h.connect("A"), h.connect("B"));
    h.pair(a, b);
    h.emit(a, "B", "e", bytes(600));
    assert_eq!(h.drain().delivered(b).len(), 1);
    let req = h.emit_ack(a, "B", "e", bytes(600));
    let out = h.drain();
    let limit = RateLimit::Bytes {
        per_second: 1000,
        burst: 1000,
    };
    assert_eq!(failed(out.reply(a, req)), RequestError::RateLimited(limit));
    assert_eq!(
        out.errors(a),
        vec![
            "rate limit reached: at most 1000 payload bytes per second (bursts of 1000); slow down"
        ]
    );
    // A payload over the size limit is refused as too large, whatever the rate.
    h.advance(Duration::from_secs(1));
    // An ack's arguments are the acker's bytes: B over its byte rate, both ends learn it.
    let req = h.emit_ack(a, "B", "e", Payload::empty());
    let (_, _, ticket) = h.drain().delivered(b).pop().unwrap();
    h.emit(b, "A", "e", bytes(900));
    let _ = h.drain();
    h.answer(b, ticket.unwrap(), Answer::Ack(bytes(900)));
    let out = h.drain();
    assert_eq!(failed(out.reply(a, req)), RequestError::RateLimited(limit));
    assert_eq!(out.errors(b).len(), 1);
    // A second later both budgets are full again.
    h.advance(Duration::from_secs(1));
    h.emit(a, "B", "e", bytes(900));
    assert_eq!(h.drain().delivered(b).len(), 1);
}

#[test]
fn stream_chunks_move_at_their_receivers_pace_not_the_byte_rate() {
    let mut h = Harness::with(limited());
    let (a, b) = (h.connect("A"), h.connect("B"));
    h.pair(a, b);
    // Ten chunks of 600 bytes within one second: six times the byte rate, each acked by
    // its receiver before the next, as the legacy plugin writes a stream.
    for _ in 0..10 {
        let req = h.emit_ack(a, "B", crate::P2P_EMIT_STREAM, bytes(600));
        let (_, _, ticket) = h
            .drain()
            .delivered(b)
            .pop()
            .expect("the chunk is delivered");
        h.answer(b, ticket.unwrap(), Answer::Ack(Payload::empty()));
        assert!(matches!(h.drain().reply(a, req), Reply::Ack(_)));
    }
    // Ordinary events are still held to the rate: the chunks took none of its budget, so
    // one fits and the next does not.
    h.emit(a, "B", "e", bytes(600));
    assert_eq!(h.drain().delivered(b).len(), 1);
    let req = h.emit_ack(a, "B", "e", bytes(600));
    assert!(matches!(
        failed(h.drain().reply(a, req)),
        RequestError::RateLimited(_)
    ));
}

// ----- a token's lifetime and the list its peers claim allows ---------------------------------

impl Harness {
    fn connect_until(&mut self, id: &str, exp: u64, transport: Transport) -> ConnId {
        let credentials = token(id, exp, None);
        let conn = self
            .relay
            .connect(self.now, Some(id), Some(&credentials), transport)
            .unwrap_or_else(|e| panic!("connect {id}: {e}"));
        self.check();
        conn
    }

    fn list(&mut self, conn: ConnId, after: Option<&str>, limit: Option<usize>) -> ClientPage {
        let req = self.req();
        self.cmd(
            conn,
            Command::List {
                req,
                after: after.map(str::to_owned),
                limit,
            },
        );
        match self.drain().reply(conn, req) {
            Reply::Clients(page) => page,
            other => panic!("expected a list, got {other:?}"),
        }
    }
}

#[test]
fn a_connection_is_told_and_closed_when_its_token_expires_and_its_peer_is_freed() {
    let mut h = with_tokens(Config::default());
    let a = h.connect_until("A", NOW_UNIX + 60, Transport::Legacy);
    let b = h.connect_until("B", NOW_UNIX + 3600, Transport::Native);
    h.pair(a, b);
    assert_eq!(
        h.relay.poll_timeout(),
        Some(h.t0 + Duration::from_secs(60)),
        "A's expiry is the relay's next deadline"
    );
    // A second before its exp, A lives on and is served.
    h.advance(Duration::from_secs(59));
    assert!(h.drain().is_empty());
    h.emit(a, "B", "e", Payload::empty());
    assert_eq!(h.drain().delivered(b).len(), 1);
    // At its exp: told why, closed, and B freed.
    h.advance(Duration::from_secs(1));
    let out = h.drain();
    assert_eq!(
        out.errors(a),
        vec!["the token expired: connect again with a new token"]
    );
    assert!(
        matches!(
            out.to(a).last(),
            Some(Event::Close {
                reason: CloseReason::TokenExpired
            })
        ),
        "{out:?}"
    );
    assert_eq!(out.peer_disconnected(b), 1);
    assert_eq!(h.relay.client_ids(), ids(&["B"]));
    assert!(h.relay.connection(a).is_none());
    assert_eq!(h.relay.peer_of("B"), None);
    // B's own token still has an hour: it stays, and pairs again.
    let c = h.connect_until("C", NOW_UNIX + 3600, Transport::Native);
    h.pair(b, c);
    // A token whose exp no clock reaches never closes its connection.
    let far = h.connect_until("far", u64::MAX, Transport::Native);
    assert_eq!(h.relay.connection(far).unwrap().expires_at(), None);
}

#[test]
fn an_expiry_in_the_middle_of_a_question_settles_it() {
    let mut h = with_tokens(Config::default());
    let a = h.connect_until("A", NOW_UNIX + 5, Transport::Native);
    let b = h.connect_until("B", NOW_UNIX + 3600, Transport::Native);
    h.pair(a, b);
    // B asks A and waits; A's token runs out before A answers.
    let req = h.emit_ack(b, "A", "question", Payload::empty());
    assert_eq!(h.drain().delivered(a).len(), 1);
    h.advance(Duration::from_secs(5));
    let out = h.drain();
    assert!(matches!(
        failed(out.reply(b, req)),
        RequestError::PeerGone { .. }
    ));
    assert_eq!(h.relay.pending_len(), 0);
    assert_eq!(h.relay.len(), 1);
}

#[test]
fn a_peers_claim_lists_only_the_connected_ids_it_allows() {
    let mut h = with_tokens(Config::default());
    let a = h.connect_with("A", Some(&["B", "team-*", "absent"]));
    for other in ["B", "C", "Z", "team-1", "team-2"] {
        h.connect_with(other, None);
    }
    // The legacy LIST_CLIENTS (no page size): every allowed id that is connected, no other.
    let all = h.list(a, None, None);
    assert_eq!(all.ids, ids(&["B", "team-1", "team-2"]));
    assert_eq!(all.next, None);
    // Paged, the cursor is always an id the claim shows, and pages cover the allowed ids.
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..10 {
        let page = h.list(a, after.as_deref(), Some(1));
        assert!(page.ids.len() <= 1, "{page:?}");
        if let Some(next) = &page.next {
            assert!(h.relay.connection(a).unwrap().peers().allows(next));
        }
        seen.extend(page.ids);
        match page.next {
            Some(next) => after = Some(next.as_str().to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, ids(&["B", "team-1", "team-2"]));
    let page = h.list(a, None, Some(2));
    assert_eq!(page.ids, ids(&["B", "team-1"]));
    assert_eq!(page.next, Some(id("team-1")));
    let page = h.list(a, Some("team-1"), Some(2));
    assert_eq!(page.ids, ids(&["team-2"]));
    assert_eq!(page.next, None);
    // A client without the claim sees everyone.
    let z = h.relay.conn_of("Z").unwrap();
    assert_eq!(
        h.list(z, None, None).ids,
        ids(&["A", "B", "C", "Z", "team-1", "team-2"])
    );
}

#[test]
fn a_filtered_list_pages_through_a_shared_directory_one_query_at_a_time() {
    // A cluster node: its directory is asked through polled queries, one round trip each.
    let mut relay = Relay::with_shared_directory(NodeId(0), Config::default());
    let mut dir = LocalDirectory::default();
    let now = Instant::now();
    fn admit(
        relay: &mut Relay,
        dir: &mut LocalDirectory,
        now: Instant,
        id: &str,
        peers: Peers,
    ) -> ConnId {
        let client = ClientId::new(id).unwrap();
        let addr = relay.reserve();
        let claimed = dir
            .claim(&client, addr, DuplicatePolicy::Reject, usize::MAX)
            .unwrap();
        let claims = Claims {
            peers,
            expires: None,
        };
        relay.admit(now, addr, client, claims, Transport::Native, claimed)
    }
    let a = admit(&mut relay, &mut dir, now, "A", Peers::only(["m"]));
    for id in ["b", "c", "d", "m", "z"] {
        admit(&mut relay, &mut dir, now, id, Peers::Any);
    }
    relay.handle(
        now,
        a,
        Command::List {
            req: ReqId(1),
            after: None,
            limit: Some(1),
        },
    );
    let mut asked = 0;
    while let Some(op) = relay.poll_directory() {
        if let DirectoryOp::Query(conn, query) = op {
            asked += 1;
            assert!(asked <= 10, "the walk ends");
            relay.handle_directory(now, conn, dir.answer(&query));
        }
    }
    // Pages A, b, c, d hold nothing A may see; m fills its page.
    assert_eq!(asked, 5);
    let replies: Vec<Reply> = std::iter::from_fn(|| relay.poll_event())
        .filter_map(|o| match o.event {
            Event::Reply {
                req: ReqId(1),
                reply,
            } if o.conn == a => Some(reply),
            _ => None,
        })
        .collect();
    match replies.as_slice() {
        [Reply::Clients(page)] => {
            assert_eq!(page.ids, ids(&["m"]));
            assert_eq!(page.next, Some(id("m")));
        }
        other => panic!("one list reply expected: {other:?}"),
    }
    relay.check_invariants().unwrap();
}
