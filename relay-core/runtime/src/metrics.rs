//! What the relay counts, for `/metrics` and the control center.
//!
//! Counted where events pass, never inside the sans-IO core: the runtime sees every
//! command a client sends, every event the core hands to a client's sink, every message a
//! connection could not deliver, and each connection's state before and after it ran
//! (which is how pairs and open streams are known without the core keeping a count). The
//! front ends add what only they see: bytes on their wire.
//!
//! Each relay has its own metrics (no process-wide recorder), so several relays in one
//! process, as tests and embedding applications have, keep separate numbers. Every label
//! combination is resolved once, when the relay is made: counting is an atomic add, with
//! no lookup and no lock on a message's path.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use relay_core::{
    Command, ConnectError, Connection, ErrorCode, Event, PeerMsg, Reply, ReqId, Transport,
};

/// Which way bytes or messages went, seen from the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From a client to the relay.
    In,
    /// From the relay to a client.
    Out,
}

/// Why a relayed message did not reach its receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Undelivered {
    /// The receiver's queue was full (it reads too slowly).
    QueueFull,
    /// The receiver's connection was gone by the time the message got there.
    PeerGone,
}

const TRANSPORTS: [Transport; 2] = [Transport::Legacy, Transport::Native];
const DIRECTIONS: [Direction; 2] = [Direction::In, Direction::Out];
const ERROR_CODES: [ErrorCode; ErrorCode::ALL.len()] = ErrorCode::ALL;
const CONNECT_REFUSALS: [&str; 9] = [
    "missing_client_id",
    "invalid_client_id",
    "duplicate",
    "unauthorized",
    "too_many_clients",
    "too_many_from_ip",
    "connecting_too_fast",
    "shutting_down",
    "cluster_unavailable",
];
const UNDELIVERED: [Undelivered; 2] = [Undelivered::QueueFull, Undelivered::PeerGone];

/// The transport as operators name it.
pub fn transport_label(transport: Transport) -> &'static str {
    match transport {
        Transport::Legacy => "socketio",
        Transport::Native => "quic",
    }
}

fn direction_label(direction: Direction) -> &'static str {
    match direction {
        Direction::In => "in",
        Direction::Out => "out",
    }
}

/// The stable name of a failure kind, as a label.
pub fn error_code_label(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::Invalid => "invalid",
        ErrorCode::NotConnected => "not_connected",
        ErrorCode::NotPaired => "not_paired",
        ErrorCode::PairingConflict => "pairing_conflict",
        ErrorCode::TooLarge => "too_large",
        ErrorCode::Timeout => "timeout",
        ErrorCode::PeerGone => "peer_gone",
        ErrorCode::LimitReached => "limit_reached",
        ErrorCode::QueueFull => "queue_full",
        ErrorCode::RateLimited => "rate_limited",
        ErrorCode::Forbidden => "forbidden",
        ErrorCode::Unavailable => "unavailable",
    }
}

fn connect_refusal_label(error: &ConnectError) -> &'static str {
    match error {
        ConnectError::MissingClientId => CONNECT_REFUSALS[0],
        ConnectError::InvalidClientId(_) => CONNECT_REFUSALS[1],
        ConnectError::Duplicate(_) => CONNECT_REFUSALS[2],
        ConnectError::Unauthorized { .. } => CONNECT_REFUSALS[3],
        ConnectError::TooManyClients(_) => CONNECT_REFUSALS[4],
        ConnectError::TooManyFromIp { .. } => CONNECT_REFUSALS[5],
        ConnectError::ConnectingTooFast { .. } => CONNECT_REFUSALS[6],
        ConnectError::ShuttingDown => CONNECT_REFUSALS[7],
        ConnectError::ClusterUnavailable(_) => CONNECT_REFUSALS[8],
    }
}

fn undelivered_label(why: Undelivered) -> &'static str {
    match why {
        Undelivered::QueueFull => "queue_full",
        Undelivered::PeerGone => "peer_gone",
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransportLabels {
    transport: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FlowLabels {
    transport: &'static str,
    direction: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// A metric per transport, resolved once.
struct PerTransport<M> {
    family: Family<TransportLabels, M>,
    each: [M; 2],
}

impl<M: Clone + Default> PerTransport<M> {
    fn new() -> Self {
        let family: Family<TransportLabels, M> = Family::default();
        let each = TRANSPORTS.map(|t| {
            family
                .get_or_create(&TransportLabels {
                    transport: transport_label(t),
                })
                .clone()
        });
        Self { family, each }
    }

    fn get(&self, transport: Transport) -> &M {
        &self.each[match transport {
            Transport::Legacy => 0,
            Transport::Native => 1,
        }]
    }
}

/// A counter per transport and direction, resolved once.
struct PerFlow {
    family: Family<FlowLabels, Counter>,
    each: [[Counter; 2]; 2],
}

impl PerFlow {
    fn new() -> Self {
        let family: Family<FlowLabels, Counter> = Family::default();
        let each = TRANSPORTS.map(|t| {
            DIRECTIONS.map(|d| {
                family
                    .get_or_create(&FlowLabels {
                        transport: transport_label(t),
                        direction: direction_label(d),
                    })
                    .clone()
            })
        });
        Self { family, each }
    }

    fn get(&self, transport: Transport, direction: Direction) -> &Counter {
        let t = usize::from(transport == Transport::Native);
        let d = usize::from(direction == Direction::Out);
        &self.each[t][d]
    }

    fn total(&self, direction: Direction) -> u64 {
        TRANSPORTS
            .iter()
            .map(|t| self.get(*t, direction).get())
            .sum()
    }
}

/// A counter per reason, resolved once.
struct PerReason<const N: usize> {
    family: Family<ReasonLabels, Counter>,
    each: [Counter; N],
}

impl<const N: usize> PerReason<N> {
    fn new(reasons: [&'static str; N]) -> Self {
        let family: Family<ReasonLabels, Counter> = Family::default();
        let each = reasons.map(|reason| family.get_or_create(&ReasonLabels { reason }).clone());
        Self { family, each }
    }

    fn total(&self) -> u64 {
        self.each.iter().map(Counter::get).sum()
    }
}

/// The relay's metrics.
pub struct Metrics {
    connections: PerTransport<Gauge>,
    connects: PerTransport<Counter>,
    disconnects: PerTransport<Counter>,
    connects_refused: PerReason<{ CONNECT_REFUSALS.len() }>,
    messages: PerFlow,
    bytes: PerFlow,
    requests_failed: PerReason<{ ERROR_CODES.len() }>,
    undelivered: PerReason<2>,
    server_errors: PerTransport<Counter>,
    pairings: Counter,
    streams_opened: Counter,
    /// Connections that have a peer: two per pair (one while a pairing completes).
    paired_connections: AtomicI64,
    /// Streams held, counted at both ends.
    stream_ends: AtomicI64,
    pairs: Gauge,
    open_streams: Gauge,
    ack_round_trip: Histogram,
    acks: AtomicU64,
    ack_micros: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            connections: PerTransport::new(),
            connects: PerTransport::new(),
            disconnects: PerTransport::new(),
            connects_refused: PerReason::new(CONNECT_REFUSALS),
            messages: PerFlow::new(),
            bytes: PerFlow::new(),
            requests_failed: PerReason::new(ERROR_CODES.map(error_code_label)),
            undelivered: PerReason::new(UNDELIVERED.map(undelivered_label)),
            server_errors: PerTransport::new(),
            pairings: Counter::default(),
            streams_opened: Counter::default(),
            paired_connections: AtomicI64::new(0),
            stream_ends: AtomicI64::new(0),
            pairs: Gauge::default(),
            open_streams: Gauge::default(),
            // 0.5 ms to about 16 s.
            ack_round_trip: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            acks: AtomicU64::new(0),
            ack_micros: AtomicU64::new(0),
        }
    }
}

/// The numbers at a glance, for the control center.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Snapshot {
    pub socketio_connections: i64,
    pub quic_connections: i64,
    pub pairs: u64,
    pub open_streams: u64,
    pub messages_in: u64,
    pub messages_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub requests_failed: u64,
    pub undelivered: u64,
    pub connects_refused: u64,
    /// Acks relayed back to their senders, and their mean round trip.
    pub acks: u64,
    pub ack_mean_micros: u64,
}

impl Metrics {
    /// Adds every metric to `registry` (under the registry's prefix, if it has one).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "connections",
            "Connected clients, by transport",
            self.connections.family.clone(),
        );
        registry.register(
            "connects",
            "Clients admitted, by transport",
            self.connects.family.clone(),
        );
        registry.register(
            "disconnects",
            "Clients gone (left, replaced or closed), by transport",
            self.disconnects.family.clone(),
        );
        registry.register(
            "connects_refused",
            "Connections refused at the door, by reason",
            self.connects_refused.family.clone(),
        );
        registry.register("pairs", "Pairs of clients", self.pairs.clone());
        registry.register(
            "pairings",
            "Pairings made (accepted registrations)",
            self.pairings.clone(),
        );
        registry.register(
            "open_streams",
            "P2P streams the relay holds open (spliced and bridged)",
            self.open_streams.clone(),
        );
        registry.register(
            "streams_opened",
            "P2P streams granted",
            self.streams_opened.clone(),
        );
        registry.register(
            "messages",
            "Relayed events: sent by clients (in) and delivered to clients (out), by transport",
            self.messages.family.clone(),
        );
        registry.register(
            "bytes",
            "Bytes of relayed payloads and stream data, by transport and direction",
            self.bytes.family.clone(),
        );
        registry.register(
            "requests_failed",
            "Requests answered with a failure, by reason",
            self.requests_failed.family.clone(),
        );
        registry.register(
            "undelivered",
            "Relayed events that did not reach their receiver, by reason",
            self.undelivered.family.clone(),
        );
        registry.register(
            "server_errors",
            "SERVER_ERROR messages (or native error frames) sent, by transport",
            self.server_errors.family.clone(),
        );
        registry.register_with_unit(
            "ack_round_trip",
            "From an emit with an ack to its answer reaching the sender's front end",
            prometheus_client::registry::Unit::Seconds,
            self.ack_round_trip.clone(),
        );
    }

    /// Bytes a front end moved on its wire.
    pub fn bytes(&self, transport: Transport, direction: Direction, n: u64) {
        self.bytes.get(transport, direction).inc_by(n);
    }

    /// A request a front end refused itself, before it reached the core (it could not be
    /// parsed): its client was sent an error.
    pub fn malformed(&self, transport: Transport) {
        self.failed(ErrorCode::Invalid);
        self.server_errors.get(transport).inc();
    }

    fn failed(&self, code: ErrorCode) {
        if let Some(i) = ERROR_CODES.iter().position(|c| *c == code) {
            self.requests_failed.each[i].inc();
        }
    }

    /// Streams open now.
    pub fn open_streams(&self) -> u64 {
        (self.stream_ends.load(Ordering::Relaxed) / 2).max(0) as u64
    }

    /// Pairs now.
    pub fn pairs(&self) -> u64 {
        (self.paired_connections.load(Ordering::Relaxed) / 2).max(0) as u64
    }

    /// Brings the gauges that are derived from per-connection state up to date; call
    /// before encoding.
    pub fn refresh(&self) {
        self.pairs.set(self.pairs() as i64);
        self.open_streams.set(self.open_streams() as i64);
    }

    pub fn snapshot(&self) -> Snapshot {
        let acks = self.acks.load(Ordering::Relaxed);
        Snapshot {
            socketio_connections: self.connections.get(Transport::Legacy).get(),
            quic_connections: self.connections.get(Transport::Native).get(),
            pairs: self.pairs(),
            open_streams: self.open_streams(),
            messages_in: self.messages.total(Direction::In),
            messages_out: self.messages.total(Direction::Out),
            bytes_in: self.bytes.total(Direction::In),
            bytes_out: self.bytes.total(Direction::Out),
            requests_failed: self.requests_failed.total(),
            undelivered: self.undelivered.total(),
            connects_refused: self.connects_refused.total(),
            acks,
            ack_mean_micros: self
                .ack_micros
                .load(Ordering::Relaxed)
                .checked_div(acks)
                .unwrap_or(0),
        }
    }

    // ----- what the runtime reports ----------------------------------------------------

    pub(crate) fn connected(&self, transport: Transport) {
        self.connects.get(transport).inc();
        self.connections.get(transport).inc();
    }

    pub(crate) fn disconnected(&self, transport: Transport) {
        self.disconnects.get(transport).inc();
        self.connections.get(transport).dec();
    }

    pub(crate) fn refused(&self, error: &ConnectError) {
        let label = connect_refusal_label(error);
        if let Some(i) = CONNECT_REFUSALS.iter().position(|r| *r == label) {
            self.connects_refused.each[i].inc();
        }
    }

    /// A command from a client of `transport`.
    pub(crate) fn command(&self, transport: Transport, command: &Command) {
        if let Command::Emit { .. } = command {
            self.messages.get(transport, Direction::In).inc();
        }
    }

    /// An event the core made for a client of `transport`, as it goes to the client's sink.
    pub(crate) fn event(&self, transport: Transport, event: &Event) {
        match event {
            Event::Deliver { .. } => {
                self.messages.get(transport, Direction::Out).inc();
            }
            Event::ServerError { .. } => {
                self.server_errors.get(transport).inc();
            }
            Event::Reply { reply, .. } => match reply {
                Reply::Registered(true) => {
                    self.pairings.inc();
                }
                Reply::StreamOpened { .. } => {
                    self.streams_opened.inc();
                }
                Reply::Failed(error) => self.failed(error.code()),
                _ => {}
            },
            _ => {}
        }
    }

    pub(crate) fn undelivered(&self, why: Undelivered) {
        let i = UNDELIVERED.iter().position(|u| *u == why).unwrap_or(0);
        self.undelivered.each[i].inc();
    }

    /// A message that bounced because its receiver is gone: a relayed event lost.
    pub(crate) fn bounced(&self, msg: &PeerMsg) {
        if matches!(msg, PeerMsg::Deliver { .. }) {
            self.undelivered(Undelivered::PeerGone);
        }
    }

    /// A connection ran: what it holds may have changed.
    pub(crate) fn reshaped(&self, before: Shape, after: Shape) {
        if before.paired != after.paired {
            let delta = if after.paired { 1 } else { -1 };
            self.paired_connections.fetch_add(delta, Ordering::Relaxed);
        }
        if before.streams != after.streams {
            let delta = after.streams as i64 - before.streams as i64;
            self.stream_ends.fetch_add(delta, Ordering::Relaxed);
        }
    }

    fn ack_answered(&self, took: std::time::Duration) {
        self.ack_round_trip.observe(took.as_secs_f64());
        self.acks.fetch_add(1, Ordering::Relaxed);
        self.ack_micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }
}

/// What a connection holds that the metrics follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Shape {
    paired: bool,
    streams: usize,
}

impl Shape {
    pub fn of(connection: &Connection) -> Self {
        Self {
            paired: connection.peer().is_some(),
            streams: connection.streams_len(),
        }
    }

    /// What a forgotten connection holds.
    pub const GONE: Shape = Shape {
        paired: false,
        streams: 0,
    };
}

/// When each of a connection's emits with an ack was made, until its answer. Touched only
/// under the connection's lock. Bounded by the core's limit on pending requests: every
/// request is answered exactly once, and the answer removes its entry.
#[derive(Default)]
pub(crate) struct AckClock {
    started: HashMap<ReqId, Instant>,
}

impl AckClock {
    pub fn start(&mut self, req: ReqId, now: Instant) {
        self.started.insert(req, now);
    }

    /// A reply to `req` leaves for the client: an ack's round trip ends.
    pub fn replied(&mut self, metrics: &Metrics, req: ReqId, reply: &Reply, now: Instant) {
        if self.started.is_empty() {
            return;
        }
        if let Some(started) = self.started.remove(&req) {
            if let Reply::Ack(_) = reply {
                metrics.ack_answered(now.saturating_duration_since(started));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(metrics: &Metrics) -> String {
        let mut registry = Registry::with_prefix("p2p_relay");
        metrics.register(&mut registry);
        metrics.refresh();
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        out
    }

    #[test]
    fn every_series_is_there_from_the_start() {
        let text = encoded(&Metrics::default());
        for line in [
            "p2p_relay_connections{transport=\"socketio\"} 0",
            "p2p_relay_connections{transport=\"quic\"} 0",
            "p2p_relay_messages_total{transport=\"quic\",direction=\"out\"} 0",
            "p2p_relay_requests_failed_total{reason=\"queue_full\"} 0",
            "p2p_relay_undelivered_total{reason=\"peer_gone\"} 0",
            "p2p_relay_connects_refused_total{reason=\"duplicate\"} 0",
            "p2p_relay_pairs 0",
            "p2p_relay_ack_round_trip_seconds_count 0",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }

    #[test]
    fn pairs_and_streams_follow_both_ends() {
        let m = Metrics::default();
        let alone = Shape::GONE;
        let paired = Shape {
            paired: true,
            streams: 0,
        };
        let streaming = Shape {
            paired: true,
            streams: 2,
        };
        m.reshaped(alone, paired);
        assert_eq!(m.pairs(), 0, "one end paired is not a pair yet");
        m.reshaped(alone, streaming);
        m.reshaped(paired, streaming);
        assert_eq!((m.pairs(), m.open_streams()), (1, 2));
        m.reshaped(streaming, Shape::GONE);
        m.reshaped(streaming, alone);
        assert_eq!((m.pairs(), m.open_streams()), (0, 0));
    }
}
