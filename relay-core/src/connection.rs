//! One client's connection and every rule that concerns it, with no I/O and no clock.
//!
//! A connection is its own state machine, in the manner of a quinn-proto `Connection`:
//! inputs are its client's commands, messages from other connections, directory answers
//! and the time; outputs are polled: events for its client, [`Transmit`]s for other
//! connections, [`Query`]s for the directory, and its next deadline. It never touches
//! another connection's state, only its address, so a driver may run every connection
//! under its own lock (one pair's traffic never waits on another's), and the other end of
//! a pair may as well live on another node.
//!
//! Everything a connection holds is its own and indexed by it: the questions it asked
//! (with their deadlines), the questions it was asked, its streams. A disconnect or a
//! timeout touches only those.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tracing::{debug, trace};

use crate::addr::Addr;
use crate::auth::{Claims, Peers};
use crate::client_id::ClientId;
use crate::config::Config;
use crate::directory::{Answered, ClientPage, Query};
use crate::error::{CloseReason, RequestError};
use crate::event::{Answer, Command, Event, Reply, ReqId, StreamEnd, StreamId, Ticket};
use crate::limits::{ClientRate, RateLimit};
use crate::link::{PeerMsg, QuestionId, Transmit};
use crate::payload::Payload;
use crate::reserved::is_reserved_event;
use crate::transport::{StreamKind, Transport};
use crate::{P2P_EMIT_STREAM, P2P_REGISTER, P2P_REGISTER_STREAM};

/// Unacknowledged chunks a legacy sender may have toward one bridged stream. A well-behaved
/// legacy sender has one in flight; the rest of the room absorbs a misbehaving one.
pub const MAX_INBOUND_CHUNKS: usize = 8;

pub struct Connection {
    addr: Addr,
    client: ClientId,
    transport: Transport,
    config: Arc<Config>,
    /// Whom this client may pair with, as its admission vouched (its token's `peers`).
    peers: Peers,
    /// When its admission (its token's `exp`) runs out: the driver closes it then with
    /// [`CloseReason::TokenExpired`] (see [`Connection::due_close`]).
    expires_at: Option<Instant>,
    /// Lists of a client with a `peers` claim that span more than one directory page: the
    /// ids its claim allows gathered so far, and the page size asked for.
    listing: HashMap<ReqId, (Vec<ClientId>, usize)>,
    /// How fast this client may go; its own, so another client's traffic never counts.
    rate: ClientRate,
    peer: Option<Peer>,
    /// The pairing request this connection is waiting on; one at a time.
    registering: Option<QuestionId>,
    /// Questions this connection asked others, waiting for their answers.
    requests: HashMap<QuestionId, Request>,
    /// Questions put to this connection's client, waiting for its answer.
    asked: HashMap<Ticket, Asked>,
    deadlines: BTreeSet<(Instant, Timer)>,
    streams: HashMap<StreamId, Held>,
    next_question: u64,
    next_ticket: u64,
    next_stream: u64,
    next_seq: u64,
    events: VecDeque<Event>,
    transmits: VecDeque<Transmit>,
    queries: VecDeque<Query>,
}

#[derive(Debug, Clone)]
struct Peer {
    addr: Addr,
    client: ClientId,
    transport: Transport,
    /// The peer's pairing question whose acceptance by this end made the pairing (None when
    /// this end asked): only that question's cancellation may undo it.
    via: Option<QuestionId>,
}

#[derive(Debug)]
struct Request {
    /// The client's request this question serves (None for a bridged chunk).
    req: Option<ReqId>,
    /// Who was asked; None while the directory is still looking the target up.
    to: Option<Addr>,
    target: ClientId,
    deadline: Instant,
    kind: RequestKind,
}

#[derive(Debug)]
enum RequestKind {
    Register,
    Ack {
        event: String,
    },
    Unregister,
    Stream {
        stream: StreamId,
    },
    /// A chunk of a bridged stream toward a legacy peer.
    Chunk {
        stream: StreamId,
    },
}

#[derive(Debug)]
struct Asked {
    from: Addr,
    q: Option<QuestionId>,
    deadline: Instant,
    kind: AskedKind,
}

#[derive(Debug)]
enum AskedKind {
    Register {
        client: ClientId,
        transport: Transport,
    },
    /// The client's ack to a delivery; `json_for` names a Socket.IO asker, whose ack must
    /// be expressible in JSON.
    Ack {
        json_for: Option<ClientId>,
    },
    Unregister,
    Stream {
        stream: StreamId,
    },
    /// A legacy peer's chunk handed to this (native) client for a bridged stream.
    Chunk {
        stream: StreamId,
    },
    /// A notice whose answer changes nothing (this client's own `P2P_UNREGISTER`, or one
    /// sent to clear a pairing that could not be completed).
    Notice,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Request(QuestionId),
    Asked(Ticket),
}

#[derive(Debug)]
struct Held {
    kind: StreamKind,
    /// Grant order, for "chunks from a legacy peer go to the newest bridged stream".
    seq: u64,
    /// A chunk toward the legacy peer awaits its ack.
    in_flight: bool,
    /// Chunks from the legacy peer handed to the client and not yet written.
    inbound: usize,
}

impl Connection {
    pub fn new(addr: Addr, client: ClientId, transport: Transport, config: Arc<Config>) -> Self {
        Self {
            addr,
            client,
            transport,
            rate: ClientRate::new(&config.rate),
            config,
            peers: Peers::Any,
            expires_at: None,
            listing: HashMap::new(),
            peer: None,
            registering: None,
            requests: HashMap::new(),
            asked: HashMap::new(),
            deadlines: BTreeSet::new(),
            streams: HashMap::new(),
            next_question: 0,
            next_ticket: 0,
            next_stream: 0,
            next_seq: 0,
            events: VecDeque::new(),
            transmits: VecDeque::new(),
            queries: VecDeque::new(),
        }
    }

    /// Applies what admission vouched for this client (its allowed peers).
    pub fn with_claims(mut self, claims: Claims) -> Self {
        self.peers = claims.peers;
        self
    }

    /// Sets when this connection's admission runs out (from [`Claims::deadline`]): from
    /// then on [`Connection::due_close`] says to close it.
    pub fn with_expiry(mut self, at: Option<Instant>) -> Self {
        self.expires_at = at;
        self
    }

    /// When this connection's admission runs out, if it does.
    pub fn expires_at(&self) -> Option<Instant> {
        self.expires_at
    }

    /// Whether the driver must close this connection at `now`, and why: its token expired.
    /// Checked after [`Connection::handle_timeout`]; the driver closes it as any other close
    /// (the client is told, its peer freed, its directory entry released).
    pub fn due_close(&self, now: Instant) -> Option<CloseReason> {
        self.expires_at
            .filter(|at| *at <= now)
            .map(|_| CloseReason::TokenExpired)
    }

    // ----- queries ------------------------------------------------------------------------

    /// Whom this client may pair with.
    pub fn peers(&self) -> &Peers {
        &self.peers
    }

    pub fn addr(&self) -> Addr {
        self.addr
    }

    pub fn client(&self) -> &ClientId {
        &self.client
    }

    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// The peer's address and clientId, while paired.
    pub fn peer(&self) -> Option<(Addr, &ClientId)> {
        self.peer.as_ref().map(|p| (p.addr, &p.client))
    }

    /// Questions put to this client and not answered yet.
    pub fn asked_len(&self) -> usize {
        self.asked.len()
    }

    /// Questions this connection asked others and is waiting on.
    pub fn requests_len(&self) -> usize {
        self.requests.len()
    }

    /// The streams this connection holds, with their kinds.
    pub fn streams(&self) -> impl Iterator<Item = (StreamId, StreamKind)> + '_ {
        self.streams.iter().map(|(id, h)| (*id, h.kind))
    }

    /// How many streams this connection holds.
    pub fn streams_len(&self) -> usize {
        self.streams.len()
    }

    /// Every address this connection is waiting on or was asked by (for invariant checks).
    pub fn involved(&self) -> impl Iterator<Item = Addr> + '_ {
        self.requests
            .values()
            .filter_map(|r| r.to)
            .chain(self.asked.values().map(|a| a.from))
    }

    /// Checks what this connection can check alone, returning the first broken rule.
    pub fn check_invariants(&self) -> Result<(), String> {
        let me = self.addr;
        if let Some(q) = self.registering {
            match self.requests.get(&q) {
                Some(Request {
                    kind: RequestKind::Register,
                    ..
                }) => {}
                _ => return Err(format!("{me} is registering with settled {q:?}")),
            }
        }
        let registers = self
            .requests
            .values()
            .filter(|r| matches!(r.kind, RequestKind::Register))
            .count();
        if registers > 1 || (registers == 1) != self.registering.is_some() {
            return Err(format!("{me} has {registers} pairing requests"));
        }
        if self.deadlines.len() != self.requests.len() + self.asked.len() {
            return Err(format!("{me}: deadlines and questions differ"));
        }
        if self.streams.len() > self.config.max_streams_per_pair {
            return Err(format!("{me} holds {} streams", self.streams.len()));
        }
        if self.peer.is_none() && !self.streams.is_empty() {
            return Err(format!("{me} holds streams while unpaired"));
        }
        if self.streams.values().any(|h| !h.kind.is_held()) {
            return Err(format!("{me} holds a chunked stream"));
        }
        Ok(())
    }

    // ----- outputs ------------------------------------------------------------------------

    /// The next event for this connection's client, in the order they were produced.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The next message for another connection.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next question for the directory.
    pub fn poll_query(&mut self) -> Option<Query> {
        self.queries.pop_front()
    }

    /// When [`Connection::handle_timeout`] must next be called (the admission's expiry
    /// included, after which [`Connection::due_close`] says to close).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let question = self.deadlines.first().map(|(deadline, _)| *deadline);
        match (question, self.expires_at) {
            (Some(q), Some(e)) => Some(q.min(e)),
            (q, e) => q.or(e),
        }
    }

    // ----- inputs -------------------------------------------------------------------------

    /// One request from this connection's client.
    pub fn handle(&mut self, now: Instant, command: Command) {
        // An emit's payload size is walked once (values are measured, not encoded) and used
        // by both the rate and the size limit.
        let emit_size = match &command {
            Command::Emit { args, .. } => args.size(),
            _ => 0,
        };
        if let Some(limit) = self.over_rate(now, &command, emit_size) {
            return self.rate_limited(command, limit);
        }
        match command {
            Command::Register { req, target } => self.register(now, req, &target),
            Command::Unregister { req } => self.unregister(now, req),
            Command::Emit {
                target,
                event,
                args,
                ack,
            } => self.emit(now, &target, event, args, emit_size, ack),
            Command::List { req, after, limit } => {
                if let (Peers::Only(_), Some(limit)) = (&self.peers, limit) {
                    // The page size the directory will use, kept to fill a filtered page.
                    let limit = limit.clamp(1, crate::directory::MAX_LIST_PAGE);
                    self.listing.insert(req, (Vec::new(), limit));
                }
                self.queries.push_back(Query::List { req, after, limit })
            }
            Command::OpenStream { req, target } => self.open_stream(now, req, &target),
            Command::CloseStream { stream } => self.close_stream(stream),
            Command::Answer { ticket, answer } => self.answer(now, ticket, answer),
            Command::StreamChunk { stream, data } => self.stream_chunk(now, stream, data),
        }
    }

    /// The directory's answer to one of this connection's queries.
    pub fn handle_directory(&mut self, answered: Answered) {
        match answered {
            Answered::Lookup(q, found) => self.looked_up(q, found),
            Answered::List(req, page) => self.listed(req, page),
            Answered::LookupFailed(q, error) => {
                if let Some(request) = self.take_request(q) {
                    self.registering = None;
                    self.fail(request.req, error);
                }
            }
            Answered::ListFailed(req, error) => {
                self.listing.remove(&req);
                self.fail(Some(req), error)
            }
            Answered::ListPartial(req, page) => match self.transport {
                Transport::Legacy => {
                    self.server_error(&RequestError::ListPartial);
                    self.listed(req, page)
                }
                Transport::Native => {
                    self.listing.remove(&req);
                    self.fail(Some(req), RequestError::ClusterUnavailable)
                }
            },
        }
    }

    /// A message from another connection.
    pub fn handle_peer(&mut self, now: Instant, from: Addr, msg: PeerMsg) {
        match msg {
            PeerMsg::Register {
                q,
                client,
                transport,
            } => {
                if !self.peers.allows(&client) {
                    // This client's claim does not name the asker: refused without asking
                    // the client, whichever way the pairing was asked.
                    debug!(target = %self.client, asker = %client, "pairing refused by peers claim");
                    let error = RequestError::PeerRefuses(self.client.clone());
                    self.send(from, PeerMsg::Refused { q: Some(q), error });
                } else if self.peer.is_some() {
                    // A busy target would answer false; say so without bothering it.
                    self.send(from, self.register_answer(q, false));
                } else {
                    let from_client = client.clone();
                    let ticket = self.ask(
                        now,
                        from,
                        Some(q),
                        AskedKind::Register { client, transport },
                    );
                    self.events.push_back(Event::RegisterRequest {
                        ticket,
                        from: from_client,
                    });
                }
            }
            PeerMsg::RegisterAnswer {
                q,
                accepted,
                transport,
            } => self.register_answered(from, q, accepted, transport),
            PeerMsg::RegisterCancel { q } => self.register_cancelled(now, from, q),
            PeerMsg::Deliver { event, args, q } => self.deliver(now, from, event, args, q),
            PeerMsg::Acked { q, args } => {
                let Some(request) = self.take_request_from(q, from) else {
                    return;
                };
                match request.kind {
                    RequestKind::Ack { .. } => self.reply_to(request.req, Reply::Ack(args)),
                    RequestKind::Chunk { stream } => {
                        if let Some(held) = self.streams.get_mut(&stream) {
                            held.in_flight = false;
                            self.events.push_back(Event::StreamChunkTaken { stream });
                        }
                    }
                    _ => {}
                }
            }
            PeerMsg::Refused { q: None, error } => self.server_error(&error),
            PeerMsg::Refused { q: Some(q), error } => {
                let Some(request) = self.take_request_from(q, from) else {
                    return;
                };
                match request.kind {
                    RequestKind::Chunk { stream } => self.chunk_failed(stream, &error),
                    RequestKind::Register => {
                        self.registering = None;
                        self.fail(request.req, error)
                    }
                    _ => self.fail(request.req, error),
                }
            }
            PeerMsg::Unregister { q } => {
                if self.peer.as_ref().is_some_and(|p| p.addr == from) {
                    self.end_pairing(StreamEnd::Unpaired);
                    let ticket = self.ask(now, from, Some(q), AskedKind::Unregister);
                    self.events.push_back(Event::Unregistered { ticket });
                } else {
                    // Both ends unregistered at once: this end already cleared its state.
                    self.send(from, PeerMsg::Unregistered { q });
                }
            }
            PeerMsg::Unregistered { q } => {
                if let Some(request) = self.take_request_from(q, from) {
                    self.reply_to(request.req, Reply::Unregistered);
                }
            }
            PeerMsg::StreamRequest { q, stream } => {
                if self.peer.as_ref().is_some_and(|p| p.addr == from) {
                    let from_client = self.peer.as_ref().expect("checked").client.clone();
                    let ticket = self.ask(now, from, Some(q), AskedKind::Stream { stream });
                    self.events.push_back(Event::StreamRequest {
                        ticket,
                        from: from_client,
                    });
                } else {
                    let error = RequestError::StreamWhileUnpaired;
                    self.send(from, PeerMsg::Refused { q: Some(q), error });
                }
            }
            PeerMsg::StreamAnswer { q, granted } => self.stream_answered(from, q, granted),
            PeerMsg::StreamForget { stream } => {
                if self.peer.as_ref().is_some_and(|p| p.addr == from) {
                    self.streams.remove(&stream);
                }
            }
            PeerMsg::Gone => self.peer_gone(now, from),
            PeerMsg::Close { reason } => self.close(reason),
        }
    }

    /// A message this connection sent could not reach `to`: that connection is gone.
    pub fn handle_bounce(&mut self, now: Instant, to: Addr) {
        self.peer_gone(now, to);
    }

    /// A front end could not queue `event` for this client (its outgoing queue is full):
    /// its sender is told, and its ack, if it asked for one, is answered.
    pub fn report_undelivered(&mut self, event: &str, ticket: Option<Ticket>, limit: usize) {
        let error = RequestError::QueueFull {
            event: event.to_owned(),
            target: self.client.clone(),
            limit,
        };
        // Only an ack question put to this client is settled here: any other ticket keeps
        // its own answer path (its deadline at the latest), so no request loses its reply.
        let ack = ticket.filter(|t| {
            self.asked
                .get(t)
                .is_some_and(|a| matches!(a.kind, AskedKind::Ack { .. }))
        });
        match ack.and_then(|t| self.take_asked(t)) {
            Some(asked) => self.send(asked.from, PeerMsg::Refused { q: asked.q, error }),
            None => {
                if let Some(peer) = self.peer.as_ref().map(|p| p.addr) {
                    self.send(peer, PeerMsg::Refused { q: None, error });
                }
            }
        }
    }

    /// Answers every question whose time is up.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(deadline, timer)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
            self.deadlines.pop_first();
            match timer {
                Timer::Request(q) => {
                    let request = self.requests.remove(&q).expect("deadline of a request");
                    self.expired(q, request);
                }
                Timer::Asked(ticket) => {
                    let asked = self.asked.remove(&ticket).expect("deadline of a question");
                    // The asker's own deadline answers it; only local bookkeeping here.
                    if let AskedKind::Chunk { stream } = asked.kind {
                        if let Some(held) = self.streams.get_mut(&stream) {
                            held.inbound = held.inbound.saturating_sub(1);
                        }
                    }
                }
            }
        }
    }

    /// The relay closes this connection: its client is told why, then everything it was
    /// part of ends as on a disconnect.
    pub fn close(&mut self, reason: CloseReason) {
        self.events.push_back(Event::ServerError {
            code: None,
            message: reason.to_string(),
        });
        self.events.push_back(Event::Close { reason });
        self.disconnect();
    }

    /// The connection is gone: every connection it was involved with is told. Its own
    /// state is dropped with it; the driver forgets it after polling the transmits.
    pub fn disconnect(&mut self) {
        debug!(client = %self.client, addr = %self.addr, "disconnected");
        let mut told: Vec<Addr> = Vec::new();
        let involved = self
            .peer
            .as_ref()
            .map(|p| p.addr)
            .into_iter()
            .chain(self.requests.values().filter_map(|r| r.to))
            .chain(self.asked.values().map(|a| a.from))
            .filter(|a| *a != self.addr);
        for addr in involved {
            if !told.contains(&addr) {
                told.push(addr);
            }
        }
        for addr in told {
            self.send(addr, PeerMsg::Gone);
        }
        self.peer = None;
        self.registering = None;
        self.requests.clear();
        self.asked.clear();
        self.deadlines.clear();
        self.streams.clear();
    }

    // ----- rules --------------------------------------------------------------------------

    /// The rate limit `command` is over, if any. Requests count toward the request rate and
    /// their payload toward the byte rate; answers are bounded by the questions they answer
    /// (their payload is counted where it is handled). Stream traffic is not rate limited:
    /// a stream chunk (a bridged chunk, or a legacy `P2P_EMIT_STREAM` with its ack) is held
    /// back by its receiver's ack, one at a time, so it already moves only as fast as the
    /// other end takes it, as the bytes of a QUIC stream do; counting it here would cap
    /// every file transfer at the message byte rate and cut streams short.
    fn over_rate(
        &mut self,
        now: Instant,
        command: &Command,
        emit_size: usize,
    ) -> Option<RateLimit> {
        let (request, bytes) = match command {
            Command::Emit {
                event,
                ack: Some(_),
                ..
            } if event == P2P_EMIT_STREAM => (false, 0),
            Command::Register { .. }
            | Command::Unregister { .. }
            | Command::List { .. }
            | Command::OpenStream { .. } => (true, 0),
            // An emit over the size limit is refused as such, and costs no bytes.
            Command::Emit { .. } => (true, emit_size.min(self.config.max_message_bytes + 1)),
            Command::StreamChunk { .. } => (false, 0),
            Command::CloseStream { .. } | Command::Answer { .. } => (false, 0),
        };
        if request {
            if let Err(limit) = self.rate.message(now) {
                return Some(limit);
            }
        }
        if bytes > self.config.max_message_bytes {
            return None;
        }
        self.rate.bytes(now, bytes).err()
    }

    /// Answers a request that went over a rate limit: nothing else happens.
    fn rate_limited(&mut self, command: Command, limit: RateLimit) {
        debug!(client = %self.client, %limit, "rate limited");
        let error = RequestError::RateLimited(limit);
        match command {
            Command::Register { req, .. }
            | Command::Unregister { req }
            | Command::List { req, .. }
            | Command::OpenStream { req, .. } => self.fail(Some(req), error),
            Command::Emit { ack, .. } => self.fail(ack, error),
            Command::StreamChunk { stream, .. } => self.chunk_failed(stream, &error),
            Command::CloseStream { .. } | Command::Answer { .. } => {}
        }
    }

    fn register(&mut self, now: Instant, req: ReqId, target: &str) {
        let error = if target == self.client.as_str() {
            Some(RequestError::RegisterToSelf)
        } else if let Some(peer) = &self.peer {
            Some(RequestError::AlreadyPaired(peer.client.clone()))
        } else if let Some(q) = self.registering {
            Some(RequestError::RegistrationInProgress(
                self.requests[&q].target.clone(),
            ))
        } else {
            match ClientId::new(target) {
                Err(e) => Some(RequestError::InvalidTarget(e)),
                Ok(target) if !self.peers.allows(&target) => {
                    Some(RequestError::PeerNotAllowed(target))
                }
                Ok(_) if self.requests.len() >= self.config.max_pending_per_connection => {
                    Some(RequestError::TooManyPending(self.requests.len()))
                }
                Ok(target) => {
                    let q =
                        self.request(now, Some(req), None, target.clone(), RequestKind::Register);
                    self.registering = Some(q);
                    self.queries.push_back(Query::Lookup { q, client: target });
                    None
                }
            }
        };
        if let Some(error) = error {
            self.fail(Some(req), error);
        }
    }

    fn looked_up(&mut self, q: QuestionId, found: Option<Addr>) {
        let Some(request) = self.requests.get_mut(&q) else {
            return; // timed out while the directory looked
        };
        match found {
            Some(addr) if addr != self.addr => {
                request.to = Some(addr);
                let msg = PeerMsg::Register {
                    q,
                    client: self.client.clone(),
                    transport: self.transport,
                };
                self.send(addr, msg);
            }
            _ => {
                let request = self.take_request(q).expect("checked above");
                self.registering = None;
                self.fail(
                    request.req,
                    RequestError::TargetNotConnected(request.target),
                );
            }
        }
    }

    /// A page of the directory for this client's list. A client with a `peers` claim is
    /// shown only the connected ids its claim allows (listing every id would tell it who
    /// else uses the relay, which its token does not let it reach); when the claim leaves
    /// a page short, the next page is asked for until this one is full, so that the cursor
    /// handed back is always an id the client may see.
    fn listed(&mut self, req: ReqId, page: ClientPage) {
        if self.peers == Peers::Any {
            return self.reply(req, Reply::Clients(page));
        }
        let allowed = page.ids.into_iter().filter(|id| self.peers.allows(id));
        let Some((mut ids, limit)) = self.listing.remove(&req) else {
            // A legacy list has no limit: the whole directory in one page.
            let ids: Vec<ClientId> = allowed.collect();
            let next = page.next.and(ids.last().cloned());
            return self.reply(req, Reply::Clients(ClientPage { ids, next }));
        };
        ids.extend(allowed);
        let next = match page.next {
            Some(after) if ids.len() < limit => {
                self.queries.push_back(Query::List {
                    req,
                    after: Some(after.as_str().to_owned()),
                    limit: Some(limit),
                });
                self.listing.insert(req, (ids, limit));
                return;
            }
            // Full: the cursor is the last id shown, never one the claim hides.
            Some(_) => true,
            None => ids.len() > limit,
        };
        ids.truncate(limit);
        let next = if next { ids.last().cloned() } else { None };
        self.reply(req, Reply::Clients(ClientPage { ids, next }));
    }

    fn register_answer(&self, q: QuestionId, accepted: bool) -> PeerMsg {
        PeerMsg::RegisterAnswer {
            q,
            accepted,
            transport: self.transport,
        }
    }

    fn register_answered(
        &mut self,
        from: Addr,
        q: QuestionId,
        accepted: bool,
        transport: Transport,
    ) {
        let Some(request) = self.take_request_from(q, from) else {
            // This end gave up (timed out) meanwhile: the target must not keep the pairing.
            if accepted {
                self.send(from, PeerMsg::RegisterCancel { q });
            }
            return;
        };
        self.registering = None;
        if accepted && self.peer.is_none() {
            debug!(a = %self.client, b = %request.target, "paired");
            self.peer = Some(Peer {
                addr: from,
                client: request.target,
                transport,
                via: None,
            });
            self.reply_to(request.req, Reply::Registered(true));
        } else if accepted && self.peer.as_ref().is_some_and(|p| p.addr == from) {
            // Crossed registrations whose answers crossed (on a node link): each end accepted
            // the other's question first, so both already count each other as peers. The
            // cancels of the branch below undid both halves, leaving no winner at all. The
            // pairing stands; the lower address's request is the one that won, and neither
            // end lets a late cancel of the other question undo it any more.
            if let Some(peer) = self.peer.as_mut() {
                peer.via = None;
            }
            self.reply_to(request.req, Reply::Registered(self.addr < from));
        } else {
            if accepted {
                // Paired elsewhere first: the target's half of this pairing is undone.
                self.send(from, PeerMsg::RegisterCancel { q });
            }
            self.reply_to(request.req, Reply::Registered(false));
        }
    }

    /// The asker of a pairing gave it up. A client that may have accepted it is told the
    /// pairing is off, so it never believes in a half-pair; only while it has no other peer,
    /// since the notice would otherwise clear a pairing that stands.
    fn register_cancelled(&mut self, now: Instant, from: Addr, q: QuestionId) {
        if self
            .peer
            .as_ref()
            .is_some_and(|p| p.addr == from && p.via == Some(q))
        {
            self.end_pairing(StreamEnd::Unpaired);
        } else {
            // Not answered yet: a late answer must not pair.
            self.drop_asked(from, |k| matches!(k, AskedKind::Register { .. }));
        }
        if self.peer.is_none() {
            self.notice(now);
        }
    }

    fn unregister(&mut self, now: Instant, req: ReqId) {
        let Some(peer) = self.peer.clone() else {
            return self.fail(Some(req), RequestError::UnregisterWhileUnpaired);
        };
        self.end_pairing(StreamEnd::Unpaired);
        self.notice(now);
        // The caller's reply waits for the peer's answer, so that when it resolves both ends
        // have torn down their streams.
        let q = self.request(
            now,
            Some(req),
            Some(peer.addr),
            peer.client,
            RequestKind::Unregister,
        );
        self.send(peer.addr, PeerMsg::Unregister { q });
    }

    fn emit(
        &mut self,
        now: Instant,
        target: &str,
        event: String,
        args: Payload,
        size: usize,
        ack: Option<ReqId>,
    ) {
        let peer = self.peer.as_ref().filter(|p| p.client.as_str() == target);
        let error = if event.is_empty() {
            Some(RequestError::EmptyEvent)
        } else if is_reserved_event(&event) {
            Some(RequestError::ReservedEvent(event.clone()))
        } else if peer.is_none() {
            Some(RequestError::NotPairedWith(target.to_owned()))
        } else if size > self.config.max_message_bytes {
            Some(RequestError::PayloadTooLarge {
                size,
                limit: self.config.max_message_bytes,
            })
        } else if ack.is_some() && self.requests.len() >= self.config.max_pending_per_connection {
            Some(RequestError::TooManyPending(self.requests.len()))
        } else {
            None
        };
        if let Some(error) = error {
            return self.fail(ack, error);
        }
        let (to, client, transport) = {
            let peer = peer.expect("checked above");
            (peer.addr, peer.client.clone(), peer.transport)
        };
        // Arguments converted for the receiver's transport can grow (MessagePack's 1-byte
        // nil is JSON's 4-byte `null`): the limit holds for what the conversion would
        // build, and is checked before it builds anything.
        let converted = args.size_for(transport);
        if converted > self.config.max_message_bytes {
            let error = RequestError::PayloadTooLarge {
                size: converted,
                limit: self.config.max_message_bytes,
            };
            return self.fail(ack, error);
        }
        // A Socket.IO peer reads JSON: arguments it could not read are refused here, to
        // their sender, rather than failing at the receiver's front end where nobody can
        // be told.
        let args = match for_transport(args, transport) {
            Ok(args) => args,
            Err(problem) => {
                let error = RequestError::EventNotJson {
                    event,
                    target: client,
                    problem,
                };
                return self.fail(ack, error);
            }
        };
        let q = ack.map(|req| {
            let kind = RequestKind::Ack {
                event: event.clone(),
            };
            self.request(now, Some(req), Some(to), client, kind)
        });
        self.send(to, PeerMsg::Deliver { event, args, q });
    }

    fn deliver(
        &mut self,
        now: Instant,
        from: Addr,
        event: String,
        args: Payload,
        q: Option<QuestionId>,
    ) {
        if self.peer.as_ref().is_none_or(|p| p.addr != from) {
            // Sent while the pairing was ending.
            let error = RequestError::NotPairedWith(self.client.to_string());
            return self.send(from, PeerMsg::Refused { q, error });
        }
        if let (Some(q), true) = (q, event == P2P_EMIT_STREAM) {
            if let Some(stream) = self.newest_bridged() {
                return self.bridged_chunk_in(now, from, q, stream, args);
            }
        }
        // The asker is the peer (checked above); its transport decides the ack's form.
        let json_for = self
            .peer
            .as_ref()
            .filter(|p| p.transport == Transport::Legacy)
            .map(|p| p.client.clone());
        let ticket = q.map(|q| self.ask(now, from, Some(q), AskedKind::Ack { json_for }));
        self.events.push_back(Event::Deliver {
            event,
            args,
            ticket,
        });
    }

    /// The bridged stream a legacy peer's chunks go to: the newest one (the legacy
    /// protocol names no stream, and its sender writes to the stream it opened last).
    fn newest_bridged(&self) -> Option<StreamId> {
        if self.transport != Transport::Native {
            return None;
        }
        self.streams
            .iter()
            .filter(|(_, h)| h.kind == StreamKind::Bridged)
            .max_by_key(|(_, h)| h.seq)
            .map(|(id, _)| *id)
    }

    fn bridged_chunk_in(
        &mut self,
        now: Instant,
        from: Addr,
        q: QuestionId,
        stream: StreamId,
        args: Payload,
    ) {
        let held = self.streams.get_mut(&stream).expect("newest held stream");
        if held.inbound >= MAX_INBOUND_CHUNKS {
            let error = RequestError::TooManyChunks(held.inbound);
            return self.send(from, PeerMsg::Refused { q: Some(q), error });
        }
        held.inbound += 1;
        let data = chunk_bytes(args);
        let ticket = self.ask(now, from, Some(q), AskedKind::Chunk { stream });
        self.events.push_back(Event::StreamData {
            stream,
            data,
            ticket,
        });
    }

    fn stream_chunk(&mut self, now: Instant, stream: StreamId, data: Bytes) {
        let Some(peer) = self.peer.clone() else {
            return trace!(?stream, "chunk for a stream whose pairing ended");
        };
        let Some(held) = self.streams.get_mut(&stream) else {
            return trace!(?stream, "chunk for a stream that ended");
        };
        if held.kind != StreamKind::Bridged {
            let message = format!(
                "stream {} is not bridged: its bytes go on the stream",
                stream.0
            );
            return self.fail(None, RequestError::Malformed(message));
        }
        if held.in_flight {
            let message = format!(
                "stream {}: one chunk at a time toward a legacy peer",
                stream.0
            );
            return self.fail(None, RequestError::Malformed(message));
        }
        held.in_flight = true;
        let q = self.request(
            now,
            None,
            Some(peer.addr),
            peer.client,
            RequestKind::Chunk { stream },
        );
        self.send(peer.addr, PeerMsg::chunk(data, q));
    }

    /// A chunk toward the legacy side failed: the stream cannot go on.
    fn chunk_failed(&mut self, stream: StreamId, error: &RequestError) {
        self.server_error(error);
        if self.streams.remove(&stream).is_some() {
            self.events.push_back(Event::StreamClosed {
                stream,
                why: StreamEnd::Failed,
            });
            if let Some(peer) = self.peer.as_ref().map(|p| p.addr) {
                self.send(peer, PeerMsg::StreamForget { stream });
            }
        }
    }

    fn open_stream(&mut self, now: Instant, req: ReqId, target: &str) {
        let error = match &self.peer {
            None => Some(RequestError::StreamWhileUnpaired),
            Some(peer) if peer.client.as_str() != target => {
                Some(RequestError::NotPairedWith(target.to_owned()))
            }
            Some(_) if self.streams.len() >= self.config.max_streams_per_pair => {
                Some(RequestError::TooManyStreams(self.streams.len()))
            }
            Some(_) if self.requests.len() >= self.config.max_pending_per_connection => {
                Some(RequestError::TooManyPending(self.requests.len()))
            }
            Some(_) => None,
        };
        if let Some(error) = error {
            return self.fail(Some(req), error);
        }
        let peer = self.peer.clone().expect("checked above");
        let stream = self.new_stream_id();
        let q = self.request(
            now,
            Some(req),
            Some(peer.addr),
            peer.client,
            RequestKind::Stream { stream },
        );
        self.send(peer.addr, PeerMsg::StreamRequest { q, stream });
    }

    /// Stream ids are the opener's: its node in the top byte, its connection id in the 32
    /// bits below, a counter in the low 24 bits.
    fn new_stream_id(&mut self) -> StreamId {
        let n = self.next_stream & 0xFF_FFFF;
        self.next_stream += 1;
        // The node is part of the id because connection ids are only unique per node: two
        // openers of one pair on different nodes (both connection 0, say) made the same id,
        // and the pair's two streams overwrote each other at both ends. Node 0 (one
        // process) keeps the ids it had.
        let node = u64::from(self.addr.node.0 & 0xFF) << 56;
        StreamId(node | ((self.addr.conn.0 & 0xFFFF_FFFF) << 24) | n)
    }

    fn stream_answered(&mut self, from: Addr, q: QuestionId, granted: bool) {
        let Some(request) = self.take_request_from(q, from) else {
            return;
        };
        let RequestKind::Stream { stream } = request.kind else {
            return;
        };
        let peer = self.peer.clone().filter(|p| p.addr == from);
        match (granted, peer) {
            (false, _) => self.reply_to(request.req, Reply::StreamRefused),
            (true, None) => {
                self.send(from, PeerMsg::StreamForget { stream });
                self.fail(request.req, RequestError::StreamWhileUnpaired);
            }
            (true, Some(peer)) => {
                let kind = StreamKind::between(self.transport, peer.transport);
                if kind.is_held() {
                    self.hold(stream, kind);
                }
                self.reply_to(
                    request.req,
                    Reply::StreamOpened {
                        stream,
                        kind,
                        peer: peer.addr,
                    },
                );
            }
        }
    }

    fn hold(&mut self, stream: StreamId, kind: StreamKind) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.streams.insert(
            stream,
            Held {
                kind,
                seq,
                in_flight: false,
                inbound: 0,
            },
        );
    }

    fn close_stream(&mut self, stream: StreamId) {
        if self.streams.remove(&stream).is_none() {
            return trace!(?stream, "close of a stream this connection does not hold");
        }
        // Bookkeeping only: how a stream ends (FIN, reset) travels on the stream itself,
        // and a notice here would race with data the other end has yet to read.
        if let Some(peer) = self.peer.as_ref().map(|p| p.addr) {
            self.send(peer, PeerMsg::StreamForget { stream });
        }
    }

    fn answer(&mut self, now: Instant, ticket: Ticket, answer: Answer) {
        let Some(asked) = self.take_asked(ticket) else {
            return trace!(?ticket, "answer to an unknown or settled ticket ignored");
        };
        let accepted = matches!(answer, Answer::Accept(true));
        let Asked { from, q, kind, .. } = asked;
        match kind {
            AskedKind::Register { client, transport } => {
                let q = q.expect("pairing questions carry an id");
                if accepted && self.peer.is_none() {
                    self.peer = Some(Peer {
                        addr: from,
                        client,
                        transport,
                        via: Some(q),
                    });
                    self.send(from, self.register_answer(q, true));
                } else {
                    self.send(from, self.register_answer(q, false));
                }
            }
            AskedKind::Ack { json_for } => {
                let q = q.expect("ack questions carry an id");
                let args = match answer {
                    Answer::Ack(args) => args,
                    Answer::Accept(_) | Answer::Done => Payload::empty(),
                };
                // Measured as it arrived and as the asker will be sent it (converting can
                // make it larger), before it is converted.
                let asker = if json_for.is_some() {
                    Transport::Legacy
                } else {
                    Transport::Native
                };
                let size = args.size();
                let measured = size.max(args.size_for(asker));
                let limit = self.config.max_message_bytes;
                let checked = if measured > limit {
                    Err(RequestError::PayloadTooLarge {
                        size: measured,
                        limit,
                    })
                } else if let Err(rate) = self.rate.bytes(now, size) {
                    // An ack's arguments are payload this client moves, like an event's.
                    Err(RequestError::RateLimited(rate))
                } else {
                    match json_for {
                        None => Ok(args),
                        Some(to) => match args.into_json_values() {
                            Ok(values) => Ok(Payload::Values(values)),
                            Err(problem) => Err(RequestError::AckNotJson {
                                from: self.client.clone(),
                                to,
                                problem,
                            }),
                        },
                    }
                };
                match checked {
                    Ok(args) => self.send(from, PeerMsg::Acked { q, args }),
                    // Acks are bounded and checked like events: both ends learn why it did
                    // not arrive, and the asker's request is answered.
                    Err(error) => {
                        self.server_error(&error);
                        self.send(from, PeerMsg::Refused { q: Some(q), error });
                    }
                }
            }
            AskedKind::Unregister => {
                let q = q.expect("unregister questions carry an id");
                self.send(from, PeerMsg::Unregistered { q });
            }
            AskedKind::Stream { stream } => {
                let q = q.expect("stream questions carry an id");
                let peer = self.peer.clone().filter(|p| p.addr == from);
                let msg = match peer {
                    _ if !accepted => PeerMsg::StreamAnswer { q, granted: false },
                    None => PeerMsg::Refused {
                        q: Some(q),
                        error: RequestError::StreamWhileUnpaired,
                    },
                    // Several requests may be in flight at once: check the limit again.
                    Some(_) if self.streams.len() >= self.config.max_streams_per_pair => {
                        PeerMsg::Refused {
                            q: Some(q),
                            error: RequestError::TooManyStreams(self.streams.len()),
                        }
                    }
                    Some(peer) => {
                        let kind = StreamKind::between(peer.transport, self.transport);
                        if kind.is_held() {
                            self.hold(stream, kind);
                        }
                        self.events.push_back(Event::StreamAccepted {
                            stream,
                            from: peer.client,
                            kind,
                        });
                        PeerMsg::StreamAnswer { q, granted: true }
                    }
                };
                self.send(from, msg);
            }
            AskedKind::Chunk { stream } => {
                if let Some(held) = self.streams.get_mut(&stream) {
                    held.inbound = held.inbound.saturating_sub(1);
                }
                let q = q.expect("chunk questions carry an id");
                self.send(
                    from,
                    PeerMsg::Acked {
                        q,
                        args: Payload::empty(),
                    },
                );
            }
            AskedKind::Notice => {}
        }
    }

    fn expired(&mut self, q: QuestionId, request: Request) {
        let millis = self.config.ack_timeout.as_millis();
        let target = request.target.clone();
        let timeout = |event: &str| RequestError::AckTimeout {
            event: event.to_owned(),
            target,
            millis,
        };
        match request.kind {
            RequestKind::Register => {
                self.registering = None;
                self.fail(request.req, timeout(P2P_REGISTER));
                if let Some(to) = request.to {
                    self.send(to, PeerMsg::RegisterCancel { q });
                }
            }
            RequestKind::Ack { ref event } => {
                let error = timeout(event);
                self.fail(request.req, error)
            }
            // The peer did not confirm in time; the pairing is over regardless.
            RequestKind::Unregister => self.reply_to(request.req, Reply::Unregistered),
            RequestKind::Stream { .. } => self.fail(request.req, timeout(P2P_REGISTER_STREAM)),
            RequestKind::Chunk { stream } => self.chunk_failed(stream, &timeout(P2P_EMIT_STREAM)),
        }
    }

    /// `gone` will not answer anything any more: the pairing with it (if any) is over, and
    /// every question involving it is settled. No `SERVER_ERROR` here; the client learns of
    /// the loss through `PeerDisconnected`.
    fn peer_gone(&mut self, now: Instant, gone: Addr) {
        if self.peer.as_ref().is_some_and(|p| p.addr == gone) {
            self.end_pairing(StreamEnd::PeerGone);
            self.events.push_back(Event::PeerDisconnected);
        }
        let mut lost: Vec<QuestionId> = self
            .requests
            .iter()
            .filter(|(_, r)| r.to == Some(gone))
            .map(|(q, _)| *q)
            .collect();
        lost.sort();
        for q in lost {
            let request = self.take_request(q).expect("listed above");
            let vanished = |event: &str| {
                Reply::Failed(RequestError::PeerGone {
                    event: event.to_owned(),
                    target: request.target.clone(),
                })
            };
            let reply = match &request.kind {
                RequestKind::Register => {
                    self.registering = None;
                    vanished(P2P_REGISTER)
                }
                RequestKind::Ack { event } => vanished(event),
                RequestKind::Unregister => Reply::Unregistered,
                RequestKind::Stream { .. } => vanished(P2P_REGISTER_STREAM),
                RequestKind::Chunk { .. } => continue,
            };
            self.reply_to(request.req, reply);
        }
        let asked_register = self.drop_asked(gone, |_| true);
        if asked_register && self.peer.is_none() {
            // The requester is gone, but this client may already have accepted locally:
            // tell it the pairing is off.
            self.notice(now);
        }
    }

    /// Unpairs this end and ends its streams, telling the client why.
    fn end_pairing(&mut self, why: StreamEnd) {
        self.peer = None;
        let mut streams: Vec<(u64, StreamId)> =
            self.streams.drain().map(|(id, h)| (h.seq, id)).collect();
        streams.sort();
        for (_, stream) in streams {
            self.events.push_back(Event::StreamClosed { stream, why });
        }
        // Bridged chunks in flight toward the old peer are answered by nobody now.
        let chunks: Vec<QuestionId> = self
            .requests
            .iter()
            .filter(|(_, r)| matches!(r.kind, RequestKind::Chunk { .. }))
            .map(|(q, _)| *q)
            .collect();
        for q in chunks {
            self.take_request(q);
        }
    }

    // ----- bookkeeping --------------------------------------------------------------------

    fn request(
        &mut self,
        now: Instant,
        req: Option<ReqId>,
        to: Option<Addr>,
        target: ClientId,
        kind: RequestKind,
    ) -> QuestionId {
        let q = QuestionId(self.next_question);
        self.next_question += 1;
        let deadline = now + self.config.ack_timeout;
        self.deadlines.insert((deadline, Timer::Request(q)));
        self.requests.insert(
            q,
            Request {
                req,
                to,
                target,
                deadline,
                kind,
            },
        );
        q
    }

    fn take_request(&mut self, q: QuestionId) -> Option<Request> {
        let request = self.requests.remove(&q)?;
        self.deadlines
            .remove(&(request.deadline, Timer::Request(q)));
        Some(request)
    }

    /// The request `q`, when `from` is who it was put to (an answer from anyone else is
    /// ignored).
    fn take_request_from(&mut self, q: QuestionId, from: Addr) -> Option<Request> {
        match self.requests.get(&q) {
            Some(r) if r.to == Some(from) => self.take_request(q),
            _ => {
                trace!(?q, %from, "answer to an unknown or settled question ignored");
                None
            }
        }
    }

    fn ask(&mut self, now: Instant, from: Addr, q: Option<QuestionId>, kind: AskedKind) -> Ticket {
        let ticket = Ticket(self.next_ticket);
        self.next_ticket += 1;
        let deadline = now + self.config.ack_timeout;
        self.deadlines.insert((deadline, Timer::Asked(ticket)));
        self.asked.insert(
            ticket,
            Asked {
                from,
                q,
                deadline,
                kind,
            },
        );
        ticket
    }

    fn take_asked(&mut self, ticket: Ticket) -> Option<Asked> {
        let asked = self.asked.remove(&ticket)?;
        self.deadlines
            .remove(&(asked.deadline, Timer::Asked(ticket)));
        Some(asked)
    }

    /// Drops the questions `from` put to this client that match; returns whether one was a
    /// pairing question.
    fn drop_asked(&mut self, from: Addr, matching: impl Fn(&AskedKind) -> bool) -> bool {
        let tickets: Vec<Ticket> = self
            .asked
            .iter()
            .filter(|(_, a)| a.from == from && matching(&a.kind))
            .map(|(t, _)| *t)
            .collect();
        let mut register = false;
        for ticket in tickets {
            if let Some(asked) = self.take_asked(ticket) {
                register |= matches!(asked.kind, AskedKind::Register { .. });
            }
        }
        register
    }

    /// Tells the client the pairing is off. A notice still gets a deadline, so a client
    /// that never answers cannot make the question table grow.
    fn notice(&mut self, now: Instant) {
        let ticket = self.ask(now, self.addr, None, AskedKind::Notice);
        self.events.push_back(Event::Unregistered { ticket });
    }

    fn fail(&mut self, req: Option<ReqId>, error: RequestError) {
        debug!(client = %self.client, %error, "request failed");
        self.server_error(&error);
        if let Some(req) = req {
            self.reply(req, Reply::Failed(error));
        }
    }

    fn server_error(&mut self, error: &RequestError) {
        self.events.push_back(Event::ServerError {
            code: Some(error.code()),
            message: error.to_string(),
        });
    }

    fn reply_to(&mut self, req: Option<ReqId>, reply: Reply) {
        if let Some(req) = req {
            self.reply(req, reply);
        }
    }

    fn reply(&mut self, req: ReqId, reply: Reply) {
        self.events.push_back(Event::Reply { req, reply });
    }

    fn send(&mut self, to: Addr, msg: PeerMsg) {
        self.transmits.push_back(Transmit {
            from: self.addr,
            to,
            msg,
        });
    }
}

/// Arguments in the form the receiving transport reads: a Socket.IO client gets JSON
/// values (converted here, once, so that a payload it cannot read is refused to its
/// sender); a native client gets whatever arrived, passed through untouched.
fn for_transport(args: Payload, to: Transport) -> Result<Payload, crate::payload::NotJson> {
    match (to, args) {
        (Transport::Legacy, args @ Payload::MsgPack(_)) => {
            args.into_json_values().map(Payload::Values)
        }
        (_, args) => Ok(args),
    }
}

/// The bytes of a legacy chunk: its first argument, binary (or text, written as UTF-8).
fn chunk_bytes(args: Payload) -> Bytes {
    let Ok(values) = args.into_values() else {
        return Bytes::new();
    };
    match values.into_iter().next() {
        Some(rmpv::Value::Binary(bytes)) => Bytes::from(bytes),
        Some(rmpv::Value::String(text)) => Bytes::from(text.into_bytes()),
        _ => Bytes::new(),
    }
}
