//! The bounded queue of core events toward one connection, whatever its transport.
//!
//! Relayed events (`Deliver`) in the queue are capped: past the cap, a new relayed event is
//! refused and the core tells its sender, with a `SERVER_ERROR` naming the receiver (and its
//! ack answered), that it could not be delivered. So a slow or stalled receiver never makes
//! the relay drop a message silently, nor grow its memory without bound. Control traffic
//! (replies, pairing questions) is never refused; the core's per-connection request limit
//! bounds it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use relay_core::Event;

use crate::sink::{Refused, Sink};
use tokio::sync::mpsc;

/// The queue of events toward one client. It is the core's [`Sink`] for that connection.
pub struct Outbox {
    tx: mpsc::UnboundedSender<Event>,
    /// Relayed events queued and not yet handed to socketioxide.
    delivers: AtomicUsize,
    limit: usize,
}

impl Outbox {
    pub fn new(limit: usize) -> (Arc<Self>, mpsc::UnboundedReceiver<Event>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let outbox = Arc::new(Self {
            tx,
            delivers: AtomicUsize::new(0),
            limit,
        });
        (outbox, rx)
    }

    /// Queues an event the front end itself produced (an answer to a malformed request).
    pub fn push(&self, event: Event) {
        let _ = self.tx.send(event);
    }

    /// The consumer took one relayed event off the queue (sent it, or dropped it because
    /// the connection is gone).
    pub fn delivered(&self) {
        self.delivers.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Sink for Outbox {
    fn send(&self, event: Event) -> Result<(), Refused> {
        if matches!(event, Event::Deliver { .. }) {
            let queued = self.delivers.fetch_add(1, Ordering::AcqRel);
            if queued >= self.limit {
                self.delivers.fetch_sub(1, Ordering::AcqRel);
                return Err(Refused {
                    event,
                    limit: self.limit,
                });
            }
        }
        // A closed receiver means the client is leaving; the core hears of it separately.
        let _ = self.tx.send(event);
        Ok(())
    }
}
