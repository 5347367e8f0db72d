//! The state machine: connections, pairings, questions awaiting answers, granted streams.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::time::Instant;

use tracing::{debug, trace};

use crate::auth::{AllowAll, Authenticator};
use crate::client_id::ClientId;
use crate::config::{Config, DuplicatePolicy};
use crate::error::{ConnectError, RequestError};
use crate::event::{
    Answer, Command, ConnId, Event, Outgoing, Reply, ReqId, StreamEnd, StreamId, Ticket,
};
use crate::payload::Payload;
use crate::registry::Registry;
use crate::reserved::is_reserved_event;

const REGISTER_EVENT: &str = "P2P_REGISTER";
const STREAM_EVENT: &str = "P2P_REGISTER_STREAM";

/// The relay core. See the crate docs for how it is driven.
pub struct Relay {
    config: Config,
    auth: Box<dyn Authenticator>,
    registry: Registry,
    conns: HashMap<ConnId, Conn>,
    pending: HashMap<Ticket, Pending>,
    deadlines: BTreeSet<(Instant, Ticket)>,
    streams: HashMap<StreamId, Stream>,
    events: VecDeque<Outgoing>,
    next_conn: u64,
    next_ticket: u64,
    next_stream: u64,
}

#[derive(Debug)]
struct Conn {
    client: ClientId,
    peer: Option<ConnId>,
    /// The pairing request this connection is waiting on; one at a time.
    registering: Option<Ticket>,
    /// Tickets this connection is the requester of, for the per-connection limit.
    requests: usize,
    streams: HashSet<StreamId>,
}

/// A question put to connection `asked`, waiting for its answer.
#[derive(Debug)]
struct Pending {
    asked: ConnId,
    deadline: Instant,
    kind: PendingKind,
}

#[derive(Debug)]
enum PendingKind {
    Register {
        requester: ConnId,
        req: ReqId,
    },
    Ack {
        requester: ConnId,
        req: ReqId,
        event: String,
    },
    /// The peer's side of an unregister; its answer releases the caller's reply.
    Unregister {
        requester: ConnId,
        req: ReqId,
    },
    Stream {
        requester: ConnId,
        req: ReqId,
    },
    /// A notice whose answer changes nothing (the caller's own `P2P_UNREGISTER`, or one
    /// sent to clear a pairing that could not be completed).
    Notice,
}

impl PendingKind {
    fn requester(&self) -> Option<ConnId> {
        match self {
            PendingKind::Register { requester, .. }
            | PendingKind::Ack { requester, .. }
            | PendingKind::Unregister { requester, .. }
            | PendingKind::Stream { requester, .. } => Some(*requester),
            PendingKind::Notice => None,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Stream {
    opener: ConnId,
    acceptor: ConnId,
}

impl Relay {
    pub fn new(config: Config) -> Self {
        Self::with_authenticator(config, AllowAll)
    }

    pub fn with_authenticator(config: Config, auth: impl Authenticator) -> Self {
        Self {
            config,
            auth: Box::new(auth),
            registry: Registry::default(),
            conns: HashMap::new(),
            pending: HashMap::new(),
            deadlines: BTreeSet::new(),
            streams: HashMap::new(),
            events: VecDeque::new(),
            next_conn: 0,
            next_ticket: 0,
            next_stream: 0,
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    // ----- inputs -------------------------------------------------------------------------

    /// Admits a connection that claims `client_id` (None when the transport carried none).
    pub fn connect(
        &mut self,
        now: Instant,
        client_id: Option<&str>,
        credentials: Option<&[u8]>,
    ) -> Result<ConnId, ConnectError> {
        let client = ClientId::new(client_id.ok_or(ConnectError::MissingClientId)?)?;
        self.auth
            .authenticate(&client, credentials)
            .map_err(|reason| ConnectError::Unauthorized {
                client: client.clone(),
                reason,
            })?;
        let existing = self.registry.lookup(client.as_str());
        match (existing, self.config.duplicate_policy) {
            (Some(_), DuplicatePolicy::Reject) => return Err(ConnectError::Duplicate(client)),
            (None, _) if self.registry.len() >= self.config.max_clients => {
                return Err(ConnectError::TooManyClients(self.registry.len()))
            }
            (Some(old), DuplicatePolicy::Replace) => {
                let reason = format!("replaced by a newer connection with clientId '{client}'");
                self.push(
                    old,
                    Event::ServerError {
                        message: reason.clone(),
                    },
                );
                self.push(old, Event::Close { reason });
                self.disconnect(now, old);
            }
            (None, _) => {}
        }
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        debug!(%client, ?conn, "connected");
        self.registry.insert(client.clone(), conn);
        self.conns.insert(
            conn,
            Conn {
                client,
                peer: None,
                registering: None,
                requests: 0,
                streams: HashSet::new(),
            },
        );
        Ok(conn)
    }

    /// Forgets a connection and everything that referred to it. Calling it for a connection
    /// the core already forgot (e.g. one it replaced) does nothing.
    pub fn disconnect(&mut self, now: Instant, conn: ConnId) {
        let Some(gone) = self.conns.remove(&conn) else {
            return;
        };
        debug!(client = %gone.client, ?conn, "disconnected");
        self.registry.remove_if(&gone.client, conn);
        if let Some(peer) = gone.peer {
            self.end_pairing(conn, peer, StreamEnd::PeerGone);
            self.push(peer, Event::PeerDisconnected);
        }
        // Settle every question that involved the connection.
        let tickets: Vec<Ticket> = self
            .pending
            .iter()
            .filter(|(_, p)| p.asked == conn || p.kind.requester() == Some(conn))
            .map(|(t, _)| *t)
            .collect();
        for ticket in tickets {
            let pending = self.take_pending(ticket).expect("ticket listed above");
            if pending.asked == conn {
                self.asked_vanished(pending, &gone.client);
            } else if let PendingKind::Register { .. } = pending.kind {
                // The target may already have accepted locally; tell it the pairing is off.
                self.clear_half_pair(now, pending.asked);
            }
        }
    }

    /// Handles one request from a connection.
    pub fn handle(&mut self, now: Instant, conn: ConnId, command: Command) {
        if !self.conns.contains_key(&conn) {
            trace!(?conn, "command from a forgotten connection ignored");
            return;
        }
        match command {
            Command::Register { req, target } => self.register(now, conn, req, &target),
            Command::Unregister { req } => self.unregister(now, conn, req),
            Command::Emit {
                target,
                event,
                args,
                ack,
            } => self.emit(now, conn, &target, event, args, ack),
            Command::List { req } => {
                let ids = self.registry.client_ids();
                self.reply(conn, req, Reply::Clients(ids));
            }
            Command::OpenStream { req, target } => self.open_stream(now, conn, req, &target),
            Command::CloseStream { stream } => self.close_stream(conn, stream),
            Command::Answer { ticket, answer } => self.answer(now, conn, ticket, answer),
        }
    }

    /// A front end could not hand `event` to `receiver` (its outgoing queue was full): the
    /// sender is told, and its ack, if it asked for one, is answered.
    pub fn report_undelivered(
        &mut self,
        receiver: ConnId,
        event: &str,
        ticket: Option<Ticket>,
        limit: usize,
    ) {
        let Some(target) = self.conns.get(&receiver).map(|c| c.client.clone()) else {
            return;
        };
        let error = RequestError::QueueFull {
            event: event.to_owned(),
            target,
            limit,
        };
        // Only an ack question put to `receiver` is settled here: any other ticket keeps
        // its own answer path (its deadline at the latest), so no request loses its reply.
        let ack_of_receiver = ticket.filter(|t| {
            self.pending
                .get(t)
                .is_some_and(|p| p.asked == receiver && matches!(p.kind, PendingKind::Ack { .. }))
        });
        match ack_of_receiver.and_then(|t| self.take_pending(t)) {
            Some(Pending {
                kind: PendingKind::Ack { requester, req, .. },
                ..
            }) => self.fail(requester, Some(req), error),
            _ => {
                if let Some(sender) = self.conns.get(&receiver).and_then(|c| c.peer) {
                    self.fail(sender, None, error);
                }
            }
        }
    }

    /// Answers every question whose time is up.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(deadline, ticket)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
            let pending = self
                .take_pending(ticket)
                .expect("deadline without a ticket");
            self.expired(now, pending);
        }
    }

    // ----- outputs ------------------------------------------------------------------------

    /// The next event for some connection, in the order the core produced them.
    pub fn poll_event(&mut self) -> Option<Outgoing> {
        self.events.pop_front()
    }

    /// When [`Relay::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadlines.first().map(|(deadline, _)| *deadline)
    }

    // ----- queries (the server-side API of the original plugin) ----------------------------

    pub fn client_ids(&self) -> Vec<ClientId> {
        self.registry.client_ids()
    }

    pub fn conn_of(&self, client: &str) -> Option<ConnId> {
        self.registry.lookup(client)
    }

    pub fn client_of(&self, conn: ConnId) -> Option<ClientId> {
        self.conns.get(&conn).map(|c| c.client.clone())
    }

    pub fn peer_of(&self, client: &str) -> Option<ClientId> {
        let conn = self.registry.lookup(client)?;
        let peer = self.conns.get(&conn)?.peer?;
        self.client_of(peer)
    }

    /// The two ends of a granted stream: (opener, acceptor).
    pub fn stream_ends(&self, stream: StreamId) -> Option<(ConnId, ConnId)> {
        self.streams.get(&stream).map(|s| (s.opener, s.acceptor))
    }

    /// How many questions are waiting for an answer (for metrics and tests).
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Checks the structural invariants, returning the first one broken. Used by tests; cheap
    /// enough to call from a debug endpoint.
    pub fn check_invariants(&self) -> Result<(), String> {
        for (client, conn) in self.registry.iter() {
            match self.conns.get(conn) {
                None => return Err(format!("registry names closed {conn:?} for {client}")),
                Some(c) if &c.client != client => {
                    return Err(format!(
                        "registry maps {client} to {conn:?} of {}",
                        c.client
                    ))
                }
                Some(_) => {}
            }
        }
        for (id, conn) in &self.conns {
            if let Some(peer) = conn.peer {
                match self.conns.get(&peer) {
                    Some(p) if p.peer == Some(*id) => {}
                    _ => return Err(format!("pairing of {id:?} with {peer:?} is not symmetric")),
                }
            }
            let requests = self
                .pending
                .values()
                .filter(|p| p.kind.requester() == Some(*id))
                .count();
            if requests != conn.requests {
                return Err(format!(
                    "{id:?} counts {} requests, has {requests}",
                    conn.requests
                ));
            }
            if let Some(ticket) = conn.registering {
                match self.pending.get(&ticket) {
                    Some(Pending {
                        kind: PendingKind::Register { requester, .. },
                        ..
                    }) if requester == id => {}
                    _ => return Err(format!("{id:?} is registering with settled {ticket:?}")),
                }
            }
            if conn.streams.len() > self.config.max_streams_per_pair {
                return Err(format!("{id:?} holds {} streams", conn.streams.len()));
            }
            for stream in &conn.streams {
                let Some(s) = self.streams.get(stream) else {
                    return Err(format!("{id:?} holds forgotten {stream:?}"));
                };
                if s.opener != *id && s.acceptor != *id {
                    return Err(format!("{id:?} holds {stream:?} of others"));
                }
            }
        }
        for (stream, s) in &self.streams {
            let paired = self.conns.get(&s.opener).and_then(|c| c.peer) == Some(s.acceptor);
            if !paired {
                return Err(format!("{stream:?} outlived its pairing"));
            }
        }
        for (ticket, p) in &self.pending {
            if !self.conns.contains_key(&p.asked) {
                return Err(format!("{ticket:?} asks closed {:?}", p.asked));
            }
            if let Some(r) = p.kind.requester() {
                if !self.conns.contains_key(&r) {
                    return Err(format!("{ticket:?} answers closed {r:?}"));
                }
            }
            if !self.deadlines.contains(&(p.deadline, *ticket)) {
                return Err(format!("{ticket:?} has no deadline"));
            }
        }
        if self.deadlines.len() != self.pending.len() {
            return Err("deadlines and pending tickets differ".into());
        }
        Ok(())
    }

    // ----- rules --------------------------------------------------------------------------

    fn register(&mut self, now: Instant, conn: ConnId, req: ReqId, target: &str) {
        let me = &self.conns[&conn];
        let error = if target == me.client.as_str() {
            Some(RequestError::RegisterToSelf)
        } else if let Some(peer) = me.peer {
            Some(RequestError::AlreadyPaired(
                self.conns[&peer].client.clone(),
            ))
        } else if let Some(ticket) = me.registering {
            let asked = self.pending[&ticket].asked;
            Some(RequestError::RegistrationInProgress(
                self.conns[&asked].client.clone(),
            ))
        } else if let Err(e) = ClientId::new(target) {
            Some(RequestError::InvalidTarget(e))
        } else if self.registry.lookup(target).is_none() {
            Some(RequestError::TargetNotConnected(
                ClientId::new(target).expect("checked above"),
            ))
        } else if me.requests >= self.config.max_pending_per_connection {
            Some(RequestError::TooManyPending(me.requests))
        } else {
            None
        };
        if let Some(error) = error {
            return self.fail(conn, Some(req), error);
        }
        let asked = self.registry.lookup(target).expect("checked above");
        if self.conns[&asked].peer.is_some() {
            // A busy target would answer false; say so without bothering it.
            return self.reply(conn, req, Reply::Registered(false));
        }
        let from = self.conns[&conn].client.clone();
        let ticket = self.ask(
            now,
            asked,
            PendingKind::Register {
                requester: conn,
                req,
            },
        );
        self.conns.get_mut(&conn).expect("live").registering = Some(ticket);
        self.push(asked, Event::RegisterRequest { ticket, from });
    }

    fn unregister(&mut self, now: Instant, conn: ConnId, req: ReqId) {
        let Some(peer) = self.conns[&conn].peer else {
            return self.fail(conn, Some(req), RequestError::UnregisterWhileUnpaired);
        };
        self.end_pairing(conn, peer, StreamEnd::Unpaired);
        let own = self.ask(now, conn, PendingKind::Notice);
        self.push(conn, Event::Unregistered { ticket: own });
        // The caller's reply waits for the peer's answer, so that when it resolves both ends
        // have torn down their streams.
        let theirs = self.ask(
            now,
            peer,
            PendingKind::Unregister {
                requester: conn,
                req,
            },
        );
        self.push(peer, Event::Unregistered { ticket: theirs });
    }

    fn emit(
        &mut self,
        now: Instant,
        conn: ConnId,
        target: &str,
        event: String,
        args: Payload,
        ack: Option<ReqId>,
    ) {
        let me = &self.conns[&conn];
        let peer = me.peer.filter(|p| self.conns[p].client.as_str() == target);
        let size = args.size();
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
        } else if ack.is_some() && me.requests >= self.config.max_pending_per_connection {
            Some(RequestError::TooManyPending(me.requests))
        } else {
            None
        };
        if let Some(error) = error {
            return self.fail(conn, ack, error);
        }
        let peer = peer.expect("checked above");
        let ticket = ack.map(|req| {
            self.ask(
                now,
                peer,
                PendingKind::Ack {
                    requester: conn,
                    req,
                    event: event.clone(),
                },
            )
        });
        self.push(
            peer,
            Event::Deliver {
                event,
                args,
                ticket,
            },
        );
    }

    fn open_stream(&mut self, now: Instant, conn: ConnId, req: ReqId, target: &str) {
        let me = &self.conns[&conn];
        let error = match me.peer {
            None => Some(RequestError::StreamWhileUnpaired),
            Some(peer) if self.conns[&peer].client.as_str() != target => {
                Some(RequestError::NotPairedWith(target.to_owned()))
            }
            Some(_) if me.streams.len() >= self.config.max_streams_per_pair => {
                Some(RequestError::TooManyStreams(me.streams.len()))
            }
            Some(_) if me.requests >= self.config.max_pending_per_connection => {
                Some(RequestError::TooManyPending(me.requests))
            }
            Some(_) => None,
        };
        if let Some(error) = error {
            return self.fail(conn, Some(req), error);
        }
        let peer = me.peer.expect("checked above");
        let from = me.client.clone();
        let ticket = self.ask(
            now,
            peer,
            PendingKind::Stream {
                requester: conn,
                req,
            },
        );
        self.push(peer, Event::StreamRequest { ticket, from });
    }

    fn close_stream(&mut self, conn: ConnId, stream: StreamId) {
        let Some(s) = self.streams.get(&stream).copied() else {
            return;
        };
        if s.opener != conn && s.acceptor != conn {
            trace!(?conn, ?stream, "close of another pairing's stream ignored");
            return;
        }
        // Bookkeeping only: how a stream ends (FIN, reset) travels on the stream itself,
        // and a notice here would race with data the other end has yet to read.
        self.forget_stream(stream);
    }

    fn answer(&mut self, now: Instant, conn: ConnId, ticket: Ticket, answer: Answer) {
        match self.pending.get(&ticket) {
            Some(p) if p.asked == conn => {}
            _ => {
                trace!(
                    ?conn,
                    ?ticket,
                    "answer to an unknown or settled ticket ignored"
                );
                return;
            }
        }
        let pending = self.take_pending(ticket).expect("checked above");
        let accepted = matches!(answer, Answer::Accept(true));
        match pending.kind {
            PendingKind::Register { requester, req } => {
                self.conns.get_mut(&requester).expect("live").registering = None;
                let both_free =
                    self.conns[&requester].peer.is_none() && self.conns[&conn].peer.is_none();
                if accepted && both_free {
                    self.conns.get_mut(&requester).expect("live").peer = Some(conn);
                    self.conns.get_mut(&conn).expect("live").peer = Some(requester);
                    debug!(a = %self.conns[&requester].client, b = %self.conns[&conn].client, "paired");
                    self.reply(requester, req, Reply::Registered(true));
                } else {
                    if accepted {
                        self.clear_half_pair(now, conn);
                    }
                    self.reply(requester, req, Reply::Registered(false));
                }
            }
            PendingKind::Ack { requester, req, .. } => {
                let args = match answer {
                    Answer::Ack(args) => args,
                    Answer::Accept(_) | Answer::Done => Payload::empty(),
                };
                let size = args.size();
                let limit = self.config.max_message_bytes;
                if size > limit {
                    // Acks are bounded like events: both ends learn why it did not arrive.
                    let error = RequestError::PayloadTooLarge { size, limit };
                    let message = error.to_string();
                    self.push(conn, Event::ServerError { message });
                    self.fail(requester, Some(req), error);
                } else {
                    self.reply(requester, req, Reply::Ack(args));
                }
            }
            PendingKind::Unregister { requester, req } => {
                self.reply(requester, req, Reply::Unregistered);
            }
            PendingKind::Stream { requester, req } => {
                let paired = self.conns[&requester].peer == Some(conn);
                // Requests are checked against the limit when made, but several may be in
                // flight at once: check again when granting.
                let open = self.conns[&requester].streams.len();
                if !accepted {
                    self.reply(requester, req, Reply::StreamRefused);
                } else if !paired {
                    self.fail(requester, Some(req), RequestError::StreamWhileUnpaired);
                } else if open >= self.config.max_streams_per_pair {
                    self.fail(requester, Some(req), RequestError::TooManyStreams(open));
                } else {
                    let stream = StreamId(self.next_stream);
                    self.next_stream += 1;
                    self.streams.insert(
                        stream,
                        Stream {
                            opener: requester,
                            acceptor: conn,
                        },
                    );
                    for end in [requester, conn] {
                        self.conns
                            .get_mut(&end)
                            .expect("live")
                            .streams
                            .insert(stream);
                    }
                    let from = self.conns[&requester].client.clone();
                    self.push(conn, Event::StreamAccepted { stream, from });
                    self.reply(requester, req, Reply::StreamOpened(stream));
                }
            }
            PendingKind::Notice => {}
        }
    }

    fn expired(&mut self, now: Instant, pending: Pending) {
        let target = self.conns[&pending.asked].client.clone();
        let millis = self.config.ack_timeout.as_millis();
        let timeout = |event: &str| RequestError::AckTimeout {
            event: event.to_owned(),
            target: target.clone(),
            millis,
        };
        match pending.kind {
            PendingKind::Register { requester, req } => {
                self.conns.get_mut(&requester).expect("live").registering = None;
                self.fail(requester, Some(req), timeout(REGISTER_EVENT));
                self.clear_half_pair(now, pending.asked);
            }
            PendingKind::Ack {
                requester,
                req,
                ref event,
            } => self.fail(requester, Some(req), timeout(event)),
            // The peer did not confirm in time; the pairing is over regardless.
            PendingKind::Unregister { requester, req } => {
                self.reply(requester, req, Reply::Unregistered)
            }
            PendingKind::Stream { requester, req } => {
                self.fail(requester, Some(req), timeout(STREAM_EVENT))
            }
            PendingKind::Notice => {}
        }
    }

    /// The connection a question was put to is gone: answer its requester now. No
    /// `SERVER_ERROR` here; the requester learns of the loss through `P2P_DISCONNECT`.
    fn asked_vanished(&mut self, pending: Pending, gone: &ClientId) {
        let lost = |event: &str| {
            Reply::Failed(RequestError::PeerGone {
                event: event.to_owned(),
                target: gone.clone(),
            })
        };
        match pending.kind {
            PendingKind::Register { requester, req } => {
                self.conns.get_mut(&requester).expect("live").registering = None;
                self.reply(requester, req, lost(REGISTER_EVENT));
            }
            PendingKind::Ack {
                requester,
                req,
                ref event,
            } => self.reply(requester, req, lost(event)),
            PendingKind::Unregister { requester, req } => {
                self.reply(requester, req, Reply::Unregistered)
            }
            PendingKind::Stream { requester, req } => {
                self.reply(requester, req, lost(STREAM_EVENT))
            }
            PendingKind::Notice => {}
        }
    }

    // ----- helpers ------------------------------------------------------------------------

    /// Unpairs `a` and `b` and ends their streams (telling each end still connected why).
    fn end_pairing(&mut self, a: ConnId, b: ConnId, why: StreamEnd) {
        for end in [a, b] {
            if let Some(c) = self.conns.get_mut(&end) {
                c.peer = None;
            }
        }
        let streams: Vec<StreamId> = self
            .streams
            .iter()
            .filter(|(_, s)| {
                (s.opener == a && s.acceptor == b) || (s.opener == b && s.acceptor == a)
            })
            .map(|(id, _)| *id)
            .collect();
        for stream in streams {
            self.forget_stream(stream);
            for end in [a, b] {
                if self.conns.contains_key(&end) {
                    self.push(end, Event::StreamClosed { stream, why });
                }
            }
        }
    }

    fn forget_stream(&mut self, stream: StreamId) {
        if let Some(s) = self.streams.remove(&stream) {
            for end in [s.opener, s.acceptor] {
                if let Some(c) = self.conns.get_mut(&end) {
                    c.streams.remove(&stream);
                }
            }
        }
    }

    /// A client that may have accepted a pairing the core could not complete is told the
    /// pairing is off, so it never believes in a half-pair. Only while it has no real peer:
    /// the notice would otherwise clear a pairing that stands.
    fn clear_half_pair(&mut self, now: Instant, conn: ConnId) {
        let free = self.conns.get(&conn).is_some_and(|c| c.peer.is_none());
        if free {
            // A notice still gets a deadline, so a client that never answers cannot make
            // the pending table grow.
            let ticket = self.ask(now, conn, PendingKind::Notice);
            self.push(conn, Event::Unregistered { ticket });
        }
    }

    fn ask(&mut self, now: Instant, asked: ConnId, kind: PendingKind) -> Ticket {
        let deadline = now + self.config.ack_timeout;
        self.insert_pending(deadline, asked, kind)
    }

    fn insert_pending(&mut self, deadline: Instant, asked: ConnId, kind: PendingKind) -> Ticket {
        let ticket = Ticket(self.next_ticket);
        self.next_ticket += 1;
        if let Some(requester) = kind.requester() {
            self.conns.get_mut(&requester).expect("live").requests += 1;
        }
        self.deadlines.insert((deadline, ticket));
        self.pending.insert(
            ticket,
            Pending {
                asked,
                deadline,
                kind,
            },
        );
        ticket
    }

    fn take_pending(&mut self, ticket: Ticket) -> Option<Pending> {
        let pending = self.pending.remove(&ticket)?;
        self.deadlines.remove(&(pending.deadline, ticket));
        if let Some(requester) = pending.kind.requester() {
            if let Some(c) = self.conns.get_mut(&requester) {
                c.requests -= 1;
            }
        }
        Some(pending)
    }

    fn fail(&mut self, conn: ConnId, req: Option<ReqId>, error: RequestError) {
        debug!(?conn, %error, "request failed");
        self.push(
            conn,
            Event::ServerError {
                message: error.to_string(),
            },
        );
        if let Some(req) = req {
            self.reply(conn, req, Reply::Failed(error));
        }
    }

    fn reply(&mut self, conn: ConnId, req: ReqId, reply: Reply) {
        self.push(conn, Event::Reply { req, reply });
    }

    fn push(&mut self, conn: ConnId, event: Event) {
        self.events.push_back(Outgoing { conn, event });
    }
}

#[cfg(test)]
mod tests;
