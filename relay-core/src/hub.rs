//! The core shared by every front end: one [`Relay`] behind a lock, and the sinks that carry
//! its events to each connection.
//!
//! Still no I/O and no clock: callers pass `now`, and sinks only queue. Events are handed
//! to sinks while the lock is held, so every connection sees events in the exact order the
//! core produced them, whichever thread or front end caused them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use crate::error::ConnectError;
use crate::event::{Command, ConnId, Event};
use crate::relay::Relay;

/// Where a connection's events go. Implementations queue and return at once; they must not
/// call back into the hub.
pub trait Sink: Send + Sync + 'static {
    /// Queues `event`. A sink may refuse only [`Event::Deliver`] (its queue toward a slow
    /// receiver is full), handing the event back with the queue's limit; everything else
    /// must be accepted.
    fn send(&self, event: Event) -> Result<(), Refused>;
}

/// A delivery a sink could not queue.
#[derive(Debug)]
pub struct Refused {
    pub event: Event,
    pub limit: usize,
}

pub struct Hub {
    state: Mutex<State>,
    /// Called when the next deadline may have moved, so the owner's timer can re-arm.
    on_deadline_change: Box<dyn Fn() + Send + Sync>,
}

struct State {
    relay: Relay,
    sinks: HashMap<ConnId, Arc<dyn Sink>>,
}

impl Hub {
    pub fn new(relay: Relay, on_deadline_change: impl Fn() + Send + Sync + 'static) -> Self {
        Self {
            state: Mutex::new(State {
                relay,
                sinks: HashMap::new(),
            }),
            on_deadline_change: Box::new(on_deadline_change),
        }
    }

    pub fn connect(
        &self,
        now: Instant,
        client_id: Option<&str>,
        credentials: Option<&[u8]>,
        sink: Arc<dyn Sink>,
    ) -> Result<ConnId, ConnectError> {
        self.run(|state| {
            let conn = state.relay.connect(now, client_id, credentials)?;
            state.sinks.insert(conn, sink);
            Ok(conn)
        })
    }

    pub fn handle(&self, now: Instant, conn: ConnId, command: Command) {
        self.run(|state| state.relay.handle(now, conn, command));
    }

    pub fn disconnect(&self, now: Instant, conn: ConnId) {
        self.run(|state| {
            state.relay.disconnect(now, conn);
            state.sinks.remove(&conn);
        });
    }

    pub fn handle_timeout(&self, now: Instant) {
        self.run(|state| state.relay.handle_timeout(now));
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.lock().relay.poll_timeout()
    }

    /// Read access for queries (client list, peer of a client, ...).
    pub fn with_relay<R>(&self, f: impl FnOnce(&Relay) -> R) -> R {
        f(&self.lock().relay)
    }

    fn run<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let mut state = self.lock();
        let before = state.relay.poll_timeout();
        let result = f(&mut state);
        state.flush();
        let after = state.relay.poll_timeout();
        drop(state);
        if before != after {
            (self.on_deadline_change)();
        }
        result
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the relay half-updated in a way later
        // calls could repair; keep serving the other connections regardless.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl State {
    fn flush(&mut self) {
        while let Some(out) = self.relay.poll_event() {
            let Some(sink) = self.sinks.get(&out.conn) else {
                continue;
            };
            let closing = matches!(out.event, Event::Close { .. });
            // Only deliveries can be refused (see `Sink::send`).
            if let Err(Refused {
                event: Event::Deliver { event, ticket, .. },
                limit,
            }) = sink.send(out.event)
            {
                self.relay
                    .report_undelivered(out.conn, &event, ticket, limit);
            }
            if closing {
                self.sinks.remove(&out.conn);
            }
        }
    }
}
