//! The core's sink for one Socket.IO client: a plain relayed emit goes straight into the
//! client's socket when nothing is waiting before it; everything else through the
//! client's [`Outbox`] and its drain task.
//!
//! Straight into the socket means from the thread that relays it (the sender's read loop,
//! inside the core's flush): socketioxide's emit is a `try_send` into the socket's queue,
//! so this only encodes and queues, and the message skips a queue, a wake-up of the drain
//! task and its turn on a worker (a third of the relay's own CPU per message went there).
//! Order holds because the straight way is taken only while the outbox holds nothing not
//! yet handed to socketioxide by the drain: `queued` counts what went to the outbox and
//! is counted down by the drain only once the event is in socketioxide's queue (or
//! dropped). A full socket queue sends the emit the slow way, where the drain waits for
//! room and the outbox's limits apply, as before.
//!
//! Only plain emits (`P2P_EMIT`, no ticket) take the straight way: anything that waits for
//! an ack registers it with the connection's [`AckWaiters`](crate::acks::AckWaiters),
//! whose lock is taken while calling into the core, which must not happen under the
//! core's lock that this sink runs under.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use relay_core::{Event, Payload};
use relay_runtime::{Outbox, Refused, Sink};
use socketioxide::adapter::LocalAdapter;
use socketioxide::socket::Socket;
use socketioxide::{SendError, SocketError};
use tracing::warn;

pub(crate) struct Toward {
    outbox: Arc<Outbox>,
    /// Events handed to the outbox and not yet through the drain.
    queued: AtomicUsize,
    /// The socket, once the connection is established and its drain runs (weak: the
    /// socket holds the connection, which holds this). Its lock orders the straight way
    /// against the outbox: every event toward this client is decided under it.
    socket: Mutex<Option<Weak<Socket<LocalAdapter>>>>,
}

impl Toward {
    pub fn new(outbox: Arc<Outbox>) -> Self {
        Self {
            outbox,
            queued: AtomicUsize::new(0),
            socket: Mutex::new(None),
        }
    }

    fn socket(&self) -> MutexGuard<'_, Option<Weak<Socket<LocalAdapter>>>> {
        // Nothing is left half done under this lock: a panic elsewhere does not matter.
        self.socket.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// From now on plain emits may go straight to `socket` (its drain task runs).
    pub fn established(&self, socket: &Arc<Socket<LocalAdapter>>) {
        *self.socket() = Some(Arc::downgrade(socket));
    }

    /// Queues an event the gateway itself produced (an answer to a malformed request).
    pub fn push(&self, event: Event) {
        let _order = self.socket();
        self.queued.fetch_add(1, Ordering::AcqRel);
        self.outbox.push(event);
    }

    /// The drain handed one queued event to socketioxide (or dropped it).
    pub fn taken(&self) {
        self.queued.fetch_sub(1, Ordering::AcqRel);
    }

    /// Emits straight into the socket; gives the event back when the socket's queue is
    /// full (it then goes the slow way).
    fn emit_now(
        socket: &Weak<Socket<LocalAdapter>>,
        event: String,
        args: Payload,
    ) -> Option<Event> {
        // Gone: the core hears of the disconnect on its own; the drain would drop it too.
        let socket = socket.upgrade()?;
        let args = crate::outbound::out_args(args);
        match socket.emit(&event, &args) {
            Ok(()) | Err(SendError::Socket(SocketError::Closed)) => None,
            Err(SendError::Socket(SocketError::InternalChannelFull)) => Some(Event::Deliver {
                event,
                args: args.into_payload(),
                ticket: None,
            }),
            Err(SendError::Serialize(e)) => {
                warn!("could not encode an outgoing packet, dropped: {e:?}");
                None
            }
        }
    }
}

impl Sink for Toward {
    fn send(&self, event: Event) -> Result<(), Refused> {
        let socket = self.socket();
        let event = match (socket.as_ref(), event) {
            (
                Some(socket),
                Event::Deliver {
                    event,
                    args,
                    ticket: None,
                },
            ) if self.queued.load(Ordering::Acquire) == 0 => {
                match Self::emit_now(socket, event, args) {
                    None => return Ok(()),
                    Some(back) => back,
                }
            }
            (_, event) => event,
        };
        self.queued.fetch_add(1, Ordering::AcqRel);
        let queued = self.outbox.send(event);
        if queued.is_err() {
            // Refused, not queued: the core tells the sender.
            self.queued.fetch_sub(1, Ordering::AcqRel);
        }
        // Past the outbox's byte cap an accepted event is dropped, not queued, and the
        // count stays up: the client is being cut off, nothing goes straight to it again.
        queued
    }
}
