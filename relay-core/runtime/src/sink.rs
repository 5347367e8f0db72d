//! Where a connection's events go: the one thing a front end gives the runtime per client.

use relay_core::Event;

/// Where a connection's events go. Implementations queue and return at once; they are
/// called while the connection's state is locked (so its events keep their order) and must
/// not call back into the relay.
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
