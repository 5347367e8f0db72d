//! The queue that carries the endpoint's events to one connection (p2p-relay fork).
//!
//! Upstream uses `tokio::sync::mpsc::unbounded_channel` here. tokio's channel allocates a
//! block of 32 slots when it is created and keeps at least one block for as long as the
//! channel lives: with `ConnectionEvent`s of about 220 bytes that is 7 KiB held by every
//! connection, idle or not. This queue has one sender (the endpoint's `ConnectionSet`) and
//! one receiver (the connection's driver); it allocates on first use and gives its capacity
//! back whenever the driver has drained it, so an idle connection holds none.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

pub(crate) fn channel<T>() -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Mutex::new(State {
        queue: VecDeque::new(),
        waker: None,
        sender_alive: true,
        receiver_alive: true,
    }));
    (Sender(shared.clone()), Receiver(shared))
}

struct State<T> {
    queue: VecDeque<T>,
    waker: Option<Waker>,
    sender_alive: bool,
    receiver_alive: bool,
}

fn lock<T>(shared: &Mutex<State<T>>) -> MutexGuard<'_, State<T>> {
    // Nothing here panics while the lock is held, but a poisoned queue is still consistent.
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

/// The endpoint's end.
pub(crate) struct Sender<T>(Arc<Mutex<State<T>>>);

impl<T> Sender<T> {
    /// Queues `value` for the connection; gives it back if the connection is gone.
    pub(crate) fn send(&self, value: T) -> Result<(), T> {
        let waker = {
            let mut state = lock(&self.0);
            if !state.receiver_alive {
                return Err(value);
            }
            state.queue.push_back(value);
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let waker = {
            let mut state = lock(&self.0);
            state.sender_alive = false;
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender").finish_non_exhaustive()
    }
}

/// The connection's end.
pub(crate) struct Receiver<T>(Arc<Mutex<State<T>>>);

impl<T> Receiver<T> {
    /// The next event; `None` once the sender is gone and everything it sent was taken.
    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut state = lock(&self.0);
        if let Some(value) = state.queue.pop_front() {
            return Poll::Ready(Some(value));
        }
        // Drained: give back what a burst of datagrams grew the queue to.
        if state.queue.capacity() > 0 {
            state.queue = VecDeque::new();
        }
        if !state.sender_alive {
            return Poll::Ready(None);
        }
        match &mut state.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            waker => *waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let queued = {
            let mut state = lock(&self.0);
            state.receiver_alive = false;
            state.waker = None;
            std::mem::take(&mut state.queue)
        };
        // Dropped outside the lock.
        drop(queued);
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    #[test]
    fn delivers_in_order_then_ends_when_the_sender_is_gone() {
        let (send, mut recv) = channel();
        let mut cx = Context::from_waker(Waker::noop());
        assert!(recv.poll_recv(&mut cx).is_pending());
        send.send(1).unwrap();
        send.send(2).unwrap();
        assert_eq!(recv.poll_recv(&mut cx), Poll::Ready(Some(1)));
        assert_eq!(recv.poll_recv(&mut cx), Poll::Ready(Some(2)));
        assert!(recv.poll_recv(&mut cx).is_pending());
        assert_eq!(lock(&recv.0).queue.capacity(), 0, "drained capacity is given back");
        send.send(3).unwrap();
        drop(send);
        assert_eq!(recv.poll_recv(&mut cx), Poll::Ready(Some(3)));
        assert_eq!(recv.poll_recv(&mut cx), Poll::Ready(None));
    }

    #[test]
    fn a_send_to_a_dropped_receiver_is_given_back() {
        let (send, recv) = channel();
        drop(recv);
        assert_eq!(send.send(7), Err(7));
    }
}
