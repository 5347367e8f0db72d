//! What one client or one relayed stream moved, for the control center's rates.
//!
//! Counters only: the page turns two readings a second apart into rates, so the relay
//! keeps no history. Each counter is one relaxed atomic add on a path that already takes
//! the connection's lock, and the relay-wide totals stay in [`crate::metrics`].

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use dashmap::DashMap;
use relay_core::{ConnId, StreamId};

use crate::metrics::{Direction, Metrics};

/// Messages and bytes, each way.
#[derive(Debug, Default)]
pub struct Traffic {
    messages_in: AtomicU64,
    messages_out: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    /// When the client last sent a legacy stream chunk (`P2P_EMIT_STREAM`), in
    /// milliseconds since [`epoch`] plus one (0: never). The 1.4.1 protocol never ends a
    /// stream between two Socket.IO clients, so recent chunks are the only sign that one
    /// is in flight (the drain waits for them to stop).
    last_chunk: AtomicU64,
}

/// The instant the counters' times count from.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// One reading of a [`Traffic`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrafficReading {
    /// Sent by the client (or, for a stream, by its opener).
    pub messages_in: u64,
    /// Delivered to the client (or, for a stream, to its acceptor).
    pub messages_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

impl Traffic {
    pub fn add(&self, direction: Direction, messages: u64, bytes: u64) {
        let (m, b) = match direction {
            Direction::In => (&self.messages_in, &self.bytes_in),
            Direction::Out => (&self.messages_out, &self.bytes_out),
        };
        m.fetch_add(messages, Ordering::Relaxed);
        b.fetch_add(bytes, Ordering::Relaxed);
    }

    /// The client sent a legacy stream chunk now.
    pub fn chunk_sent(&self) {
        let at = epoch().elapsed().as_millis() as u64 + 1;
        self.last_chunk.store(at, Ordering::Relaxed);
    }

    /// How long ago the client sent its last legacy stream chunk; None if it never did.
    pub fn since_last_chunk(&self) -> Option<Duration> {
        match self.last_chunk.load(Ordering::Relaxed) {
            0 => None,
            at => Some(
                epoch()
                    .elapsed()
                    .saturating_sub(Duration::from_millis(at - 1)),
            ),
        }
    }

    pub fn read(&self) -> TrafficReading {
        TrafficReading {
            messages_in: self.messages_in.load(Ordering::Relaxed),
            messages_out: self.messages_out.load(Ordering::Relaxed),
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
        }
    }
}

/// What a front end knows of a connection that the core does not: where it comes from and
/// which protocol generation it speaks (shown by the control center).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Described {
    pub remote: Option<SocketAddr>,
    /// E.g. `socket.io v2 (EIO3)`, `socket.io v4 (EIO4)`, `quic p2p-relay/2`.
    pub generation: &'static str,
}

/// A stream whose bytes pass through this relay (spliced or bridged), while it is open.
#[derive(Debug)]
pub struct StreamEntry {
    pub id: StreamId,
    /// Its two ends: `a` is the native client whose data stream the relay serves (the
    /// opener of a spliced stream), `b` the other.
    pub a: Option<ConnId>,
    pub b: ConnId,
    pub since: SystemTime,
    /// `In`: from `a` toward `b`; `Out`: from `b` toward `a`. Bytes only.
    pub traffic: Traffic,
}

/// The open streams, by id.
pub(crate) type Streams = DashMap<StreamId, Arc<StreamEntry>>;

/// Counts a stream's bytes while it is relayed, for its own row in the control center and
/// the relay's totals; the stream leaves the list when this is dropped.
pub struct StreamMeter {
    entry: Arc<StreamEntry>,
    streams: Arc<Streams>,
    metrics: Arc<Metrics>,
}

impl StreamMeter {
    pub(crate) fn new(entry: StreamEntry, streams: Arc<Streams>, metrics: Arc<Metrics>) -> Self {
        let entry = Arc::new(entry);
        streams.insert(entry.id, entry.clone());
        Self {
            entry,
            streams,
            metrics,
        }
    }

    /// `bytes` read from one end (`from_a` says which) and written to the other.
    pub fn moved(&self, from_a: bool, bytes: u64) {
        let direction = if from_a {
            Direction::In
        } else {
            Direction::Out
        };
        self.entry.traffic.add(direction, 0, bytes);
        let transport = relay_core::Transport::Native;
        self.metrics.bytes(transport, Direction::In, bytes);
        self.metrics.bytes(transport, Direction::Out, bytes);
    }

    /// Bytes that went one way only (a bridged stream: the other side is Socket.IO events,
    /// counted where those are).
    pub fn moved_one_way(&self, from_a: bool, direction: Direction, bytes: u64) {
        let way = if from_a {
            Direction::In
        } else {
            Direction::Out
        };
        self.entry.traffic.add(way, 0, bytes);
        self.metrics
            .bytes(relay_core::Transport::Native, direction, bytes);
    }
}

impl Drop for StreamMeter {
    fn drop(&mut self) {
        self.streams
            .remove_if(&self.entry.id, |_, e| Arc::ptr_eq(e, &self.entry));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_meter_lists_its_stream_until_dropped_and_counts_both_ways() {
        let streams = Arc::new(Streams::default());
        let metrics = Arc::new(Metrics::default());
        let meter = StreamMeter::new(
            StreamEntry {
                id: StreamId(7),
                a: Some(ConnId(1)),
                b: ConnId(2),
                since: SystemTime::now(),
                traffic: Traffic::default(),
            },
            streams.clone(),
            metrics.clone(),
        );
        meter.moved(true, 100);
        meter.moved(false, 5);
        let reading = streams.get(&StreamId(7)).unwrap().traffic.read();
        assert_eq!((reading.bytes_in, reading.bytes_out), (100, 5));
        assert_eq!(metrics.snapshot().bytes_in, 105);
        drop(meter);
        assert!(streams.is_empty());
    }
}
