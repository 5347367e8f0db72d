//! The bounded queue of core events toward one connection, whatever its transport.
//!
//! Two bounds, for two kinds of traffic:
//! - Relayed events (`Deliver`) are capped in number: past the cap, a new relayed event is
//!   refused and the core tells its sender, with a `SERVER_ERROR` naming the receiver (and
//!   its ack answered), that it could not be delivered. A slow receiver is never made to
//!   drop a message silently.
//! - Everything queued, replies and errors included, is capped in bytes. Those are answers
//!   to the client's own requests: a client that keeps asking (`LIST_CLIENTS` in a loop) and
//!   never reads would otherwise grow the relay without bound (one did, from 42 MB to 2.5 GB
//!   in 21 s). Past the cap the queue stops taking anything and tells its consumer, which
//!   disconnects the client with the reason, as Centrifugo does with a slow client's queue
//!   and DERP with a stalled writer.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use relay_core::{Event, Reply};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::sink::{Refused, Sink};

/// The limits of one connection's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxLimits {
    /// Relayed events queued before further ones are refused (their senders told).
    pub messages: usize,
    /// Bytes (as [`queued_size`] counts them) queued before the client is cut off.
    pub bytes: usize,
}

impl Default for OutboxLimits {
    fn default() -> Self {
        Self {
            messages: 1024,
            bytes: 8 * 1024 * 1024,
        }
    }
}

/// The queue of events toward one client. It is the core's [`Sink`] for that connection.
pub struct Outbox {
    tx: mpsc::UnboundedSender<(usize, Event)>,
    /// Relayed events queued and not yet handed to the transport.
    delivers: AtomicUsize,
    /// Bytes queued and not yet taken by the consumer.
    bytes: AtomicUsize,
    limits: OutboxLimits,
    /// Set once the byte cap was passed: nothing is queued any more.
    overflowed: AtomicBool,
    /// What the queue held when it overflowed (the size of the event that passed the cap
    /// included), for the reason the client is given.
    held: AtomicUsize,
    cut_off: CancellationToken,
}

/// The consuming end of an [`Outbox`], held by the task that writes to the client.
pub struct OutboxReceiver {
    rx: mpsc::UnboundedReceiver<(usize, Event)>,
    outbox: Arc<Outbox>,
}

/// The queue went over its byte cap: the client reads too slowly, or not at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "disconnected: this client does not read what it is sent; its queue held {held} bytes \
     unread (the limit is {limit} bytes, --outbox-bytes)"
)]
pub struct Overflow {
    pub held: usize,
    pub limit: usize,
}

impl Outbox {
    pub fn new(limits: OutboxLimits) -> (Arc<Self>, OutboxReceiver) {
        let (tx, rx) = mpsc::unbounded_channel();
        let outbox = Arc::new(Self {
            tx,
            delivers: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            limits,
            overflowed: AtomicBool::new(false),
            held: AtomicUsize::new(0),
            cut_off: CancellationToken::new(),
        });
        let receiver = OutboxReceiver {
            rx,
            outbox: outbox.clone(),
        };
        (outbox, receiver)
    }

    /// Queues an event the front end itself produced (an answer to a malformed request).
    /// Counted against the byte cap like any other.
    pub fn push(&self, event: Event) {
        self.enqueue(event);
    }

    /// The consumer took one relayed event off the queue (sent it, or dropped it because
    /// the connection is gone).
    pub fn delivered(&self) {
        self.delivers.fetch_sub(1, Ordering::AcqRel);
    }

    /// Resolves once the queue went over its byte cap, with what it held. The consumer
    /// waits for this beside its writing (which is what is stuck when a client does not
    /// read) and cuts the client off.
    pub async fn overflowed(&self) -> Overflow {
        self.cut_off.cancelled().await;
        self.overflow()
    }

    fn overflow(&self) -> Overflow {
        Overflow {
            held: self.held.load(Ordering::Acquire),
            limit: self.limits.bytes,
        }
    }

    /// Queues `event` unless that takes the queue over its byte cap; returns whether it
    /// was queued.
    fn enqueue(&self, event: Event) -> bool {
        if self.overflowed.load(Ordering::Acquire) {
            return false;
        }
        let size = queued_size(&event);
        let held = self.bytes.fetch_add(size, Ordering::AcqRel) + size;
        if held > self.limits.bytes {
            self.bytes.fetch_sub(size, Ordering::AcqRel);
            if !self.overflowed.swap(true, Ordering::AcqRel) {
                self.held.store(held, Ordering::Release);
                self.cut_off.cancel();
            }
            return false;
        }
        // A closed receiver means the client is leaving; the core hears of it separately.
        let _ = self.tx.send((size, event));
        true
    }
}

impl OutboxReceiver {
    /// The next event, in order; None once every sender is gone.
    pub async fn recv(&mut self) -> Option<Event> {
        let (size, event) = self.rx.recv().await?;
        self.outbox.bytes.fetch_sub(size, Ordering::AcqRel);
        Some(event)
    }

    /// The next event if one is queued, without waiting.
    pub fn try_recv(&mut self) -> Option<Event> {
        let (size, event) = self.rx.try_recv().ok()?;
        self.outbox.bytes.fetch_sub(size, Ordering::AcqRel);
        Some(event)
    }

    /// The queue this receiver drains.
    pub fn outbox(&self) -> &Arc<Outbox> {
        &self.outbox
    }
}

impl Sink for Outbox {
    fn send(&self, event: Event) -> Result<(), Refused> {
        if matches!(event, Event::Deliver { .. }) {
            let queued = self.delivers.fetch_add(1, Ordering::AcqRel);
            if queued >= self.limits.messages || self.overflowed.load(Ordering::Acquire) {
                self.delivers.fetch_sub(1, Ordering::AcqRel);
                return Err(Refused {
                    event,
                    limit: self.limits.messages,
                });
            }
            if !self.enqueue(event) {
                // Not queued: the client is being cut off. Its sender hears of it when the
                // connection is gone (the core answers every question put to it then).
                self.delivers.fetch_sub(1, Ordering::AcqRel);
            }
            return Ok(());
        }
        // Past the byte cap nothing more is queued: the client is being disconnected, and
        // the core answers whatever it was asked when the connection goes.
        self.enqueue(event);
        Ok(())
    }
}

/// What an event costs while it waits in a queue: its own slot plus the bytes it owns. An
/// estimate that never undercounts by much, computed without encoding anything.
pub fn queued_size(event: &Event) -> usize {
    const SLOT: usize = std::mem::size_of::<(usize, Event)>();
    // An error or reason is formatted once it is written out; its text is short.
    const TEXT: usize = 128;
    let owned = match event {
        Event::Reply { reply, .. } => match reply {
            Reply::Clients(page) => page
                .ids
                .iter()
                .map(|id| id.as_str().len() + 16)
                .sum::<usize>(),
            Reply::Ack(args) => args.size(),
            Reply::Failed(_) => TEXT,
            Reply::Registered(_)
            | Reply::Unregistered
            | Reply::StreamOpened { .. }
            | Reply::StreamRefused => 0,
        },
        Event::Deliver { event, args, .. } => event.len() + args.size(),
        Event::RegisterRequest { from, .. } | Event::StreamRequest { from, .. } => {
            from.as_str().len()
        }
        Event::StreamAccepted { from, .. } => from.as_str().len(),
        Event::StreamData { data, .. } => data.len(),
        Event::ServerError { message, .. } => message.len(),
        Event::Close { .. } => TEXT,
        Event::Unregistered { .. }
        | Event::PeerDisconnected
        | Event::StreamChunkTaken { .. }
        | Event::StreamClosed { .. } => 0,
    };
    SLOT + owned
}

#[cfg(test)]
mod tests {
    use super::*;
    use relay_core::{Payload, ReqId};

    fn error(len: usize) -> Event {
        Event::ServerError {
            code: None,
            message: "x".repeat(len),
        }
    }

    fn deliver() -> Event {
        Event::Deliver {
            event: "e".into(),
            args: Payload::empty(),
            ticket: None,
        }
    }

    #[tokio::test]
    async fn replies_and_errors_are_bounded_in_bytes_and_overflow_is_reported() {
        let limits = OutboxLimits {
            messages: 1024,
            bytes: 10_000,
        };
        let (outbox, mut rx) = Outbox::new(limits);
        let each = queued_size(&error(1000));
        let fit = 10_000 / each;
        for _ in 0..fit {
            outbox.send(error(1000)).unwrap();
        }
        assert!(!outbox.cut_off.is_cancelled());
        // The one that does not fit cuts the client off; nothing more is queued.
        outbox.send(error(1000)).unwrap();
        outbox.push(error(1000));
        let overflow = outbox.overflowed().await;
        assert_eq!(
            overflow,
            Overflow {
                held: (fit + 1) * each,
                limit: 10_000
            }
        );
        assert!(overflow.to_string().starts_with(
            "disconnected: this client does not read what it is sent; its queue held"
        ));
        assert!(matches!(outbox.send(deliver()), Err(Refused { .. })));
        drop(outbox);
        let mut taken = 0;
        while let Ok(Some(_)) =
            tokio::time::timeout(std::time::Duration::from_millis(50), rx.recv()).await
        {
            taken += 1;
        }
        assert_eq!(taken, fit);
        assert_eq!(rx.outbox().bytes.load(Ordering::Acquire), 0);
    }

    #[tokio::test]
    async fn what_is_taken_makes_room_again() {
        let limits = OutboxLimits {
            messages: 2,
            bytes: 3 * queued_size(&error(10)),
        };
        let (outbox, mut rx) = Outbox::new(limits);
        for _ in 0..100 {
            outbox.send(error(10)).unwrap();
            outbox.send(error(10)).unwrap();
            rx.recv().await.unwrap();
            rx.recv().await.unwrap();
        }
        assert!(!outbox.overflowed.load(Ordering::Acquire));
        // Relayed events keep their own cap, in number.
        outbox.send(deliver()).unwrap();
        outbox.send(deliver()).unwrap();
        assert!(matches!(outbox.send(deliver()), Err(Refused { limit: 2, .. })));
        let reply = Event::Reply {
            req: ReqId(1),
            reply: Reply::Unregistered,
        };
        assert_eq!(queued_size(&reply), std::mem::size_of::<(usize, Event)>());
    }
}
