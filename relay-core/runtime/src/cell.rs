//! One connection as the runtime holds it: its state machine under its own lock, the inbox
//! other connections write to, the sink toward its client, and its timer.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::SystemTime;

use relay_core::{Addr, Connection, PeerMsg};
use tokio::sync::Notify;
use tokio::task::AbortHandle;

use crate::metrics::AckClock;
use crate::sink::Sink;
use crate::traffic::{Described, Traffic};

pub(crate) struct Cell {
    state: Mutex<Connection>,
    inbox: Mutex<Inbox>,
    pub sink: Arc<dyn Sink>,
    /// Wakes the timer task when the connection's next deadline moved.
    pub rearm: Notify,
    pub timer: Mutex<Option<AbortHandle>>,
    /// The address whose connection slot this connection holds, freed when it goes.
    pub ip: Option<IpAddr>,
    /// When the connection was admitted, for the control center.
    pub since: SystemTime,
    /// Its emits waiting for an ack, timed for the round-trip metric. Taken only under the
    /// state lock, so never contended.
    acks: Mutex<AckClock>,
    /// What its client moved, for the control center's per-client rates.
    pub traffic: Traffic,
    /// Set once by its front end, right after connecting.
    pub described: OnceLock<Described>,
}

#[derive(Default)]
struct Inbox {
    messages: VecDeque<(Addr, PeerMsg)>,
    /// The connection is gone: nothing more may be queued (the sender is answered instead).
    closed: bool,
}

impl Cell {
    pub fn new(state: Connection, sink: Arc<dyn Sink>, ip: Option<IpAddr>) -> Self {
        Self {
            state: Mutex::new(state),
            inbox: Mutex::new(Inbox::default()),
            sink,
            rearm: Notify::new(),
            timer: Mutex::new(None),
            ip,
            since: SystemTime::now(),
            acks: Mutex::new(AckClock::default()),
            traffic: Traffic::default(),
            described: OnceLock::new(),
        }
    }

    pub fn acks(&self) -> MutexGuard<'_, AckClock> {
        self.acks.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves this one connection in doubt, not the
        // relay: keep serving it and everyone else.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a message from `from`; gives it back when the connection is gone.
    pub fn post(&self, from: Addr, msg: PeerMsg) -> Result<(), PeerMsg> {
        let mut inbox = self.inbox.lock().unwrap_or_else(|p| p.into_inner());
        if inbox.closed {
            return Err(msg);
        }
        inbox.messages.push_back((from, msg));
        Ok(())
    }

    /// The oldest queued message. One at a time, so the queue keeps its capacity (no
    /// allocation per message) and the inbox lock is never held while handling.
    pub fn next_message(&self) -> Option<(Addr, PeerMsg)> {
        self.inbox
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .messages
            .pop_front()
    }

    /// Closes the inbox, returning what was still in it (to be answered on its behalf).
    pub fn close_inbox(&self) -> VecDeque<(Addr, PeerMsg)> {
        let mut inbox = self.inbox.lock().unwrap_or_else(|p| p.into_inner());
        inbox.closed = true;
        std::mem::take(&mut inbox.messages)
    }

    pub fn stop_timer(&self) {
        if let Some(timer) = self.timer.lock().unwrap_or_else(|p| p.into_inner()).take() {
            timer.abort();
        }
    }
}
