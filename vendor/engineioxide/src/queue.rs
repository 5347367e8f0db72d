//! A bounded multi-producer, single-consumer queue that holds memory only for what it holds.
//!
//! It replaces `tokio::sync::mpsc::channel` for the internal channels of a [`Socket`](crate::Socket).
//! A tokio bounded channel allocates its first block of 32 slots when it is created and keeps
//! it for its whole life, so every session, idle or not, held 32 packet slots (and the channel's
//! cache-padded state). This queue allocates on the first push and gives the buffer back as soon
//! as the receiver has drained it.
//!
//! It keeps the semantics engineioxide relied on:
//! * the bound counts queued values and reserved [`Permit`]s;
//! * [`Sender::try_send`] and [`Sender::try_reserve`] fail at once with
//!   [`TrySendError::Full`] or [`TrySendError::Closed`], handing the value back;
//! * [`Receiver::close`] refuses new values and permits, while what is already queued (or sent
//!   through a permit taken before) can still be received; [`Receiver::recv`] returns `None` once
//!   the queue is closed, empty and no permit is outstanding;
//! * [`Sender::closed`] resolves once the receiver is closed or dropped.
//!
//! Unlike tokio's channel, the queue is not closed when every sender is dropped: the socket owns
//! the only sender, for as long as it owns the receiver.
use std::{
    collections::VecDeque,
    fmt,
    future::poll_fn,
    sync::{Arc, Mutex, MutexGuard},
    task::{Context, Poll, Waker},
};

use tokio::sync::{
    Notify,
    mpsc::error::{SendError, TryRecvError, TrySendError},
};

/// Creates a queue holding at most `bound` values (queued or reserved).
pub(crate) fn channel<T>(bound: usize) -> (Sender<T>, Receiver<T>) {
    assert!(bound > 0, "bound must be greater than 0");
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            queue: VecDeque::new(),
            reserved: 0,
            bound,
            closed: false,
            send_waiting: false,
            rx_waker: None,
        }),
        notify: Notify::new(),
    });
    (
        Sender {
            shared: shared.clone(),
        },
        Receiver { shared },
    )
}

struct Shared<T> {
    state: Mutex<State<T>>,
    /// Wakes [`Sender::closed`] (on close) and [`Sender::send`] (when room is made).
    notify: Notify,
}

struct State<T> {
    queue: VecDeque<T>,
    /// Permits taken and not yet used or dropped.
    reserved: usize,
    bound: usize,
    closed: bool,
    /// A [`Sender::send`] found the queue full and waits for room.
    send_waiting: bool,
    rx_waker: Option<Waker>,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // The state stays consistent even if a holder panicked: no user code runs under the lock.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<T> State<T> {
    fn is_full(&self) -> bool {
        self.queue.len() + self.reserved >= self.bound
    }
    /// Queues `value` and returns the receiver's waker, to wake once the lock is released.
    fn push(&mut self, value: T) -> Option<Waker> {
        self.queue.push_back(value);
        self.rx_waker.take()
    }
}

/// The sending half of the queue.
pub(crate) struct Sender<T> {
    shared: Arc<Shared<T>>,
}

/// A place reserved in the queue for one value.
pub(crate) struct Permit<'a, T> {
    shared: &'a Shared<T>,
}

/// The receiving half of the queue.
pub(crate) struct Receiver<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Sender<T> {
    /// Queues `value` if there is room and the queue is open.
    pub fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        let mut state = self.shared.lock();
        if state.closed {
            return Err(TrySendError::Closed(value));
        }
        if state.is_full() {
            return Err(TrySendError::Full(value));
        }
        let waker = state.push(value);
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }

    /// Queues `value`, waiting for room if the queue is full.
    pub async fn send(&self, value: T) -> Result<(), SendError<T>> {
        loop {
            let notified = self.shared.notify.notified();
            tokio::pin!(notified);
            // Registered before the check, so room made after it is not missed.
            notified.as_mut().enable();
            {
                let mut state = self.shared.lock();
                if state.closed {
                    return Err(SendError(value));
                }
                if !state.is_full() {
                    let waker = state.push(value);
                    drop(state);
                    if let Some(waker) = waker {
                        waker.wake();
                    }
                    return Ok(());
                }
                state.send_waiting = true;
            }
            notified.await;
        }
    }

    /// Reserves a place for one value if there is room and the queue is open.
    pub fn try_reserve(&self) -> Result<Permit<'_, T>, TrySendError<()>> {
        let mut state = self.shared.lock();
        if state.closed {
            return Err(TrySendError::Closed(()));
        }
        if state.is_full() {
            return Err(TrySendError::Full(()));
        }
        state.reserved += 1;
        Ok(Permit {
            shared: &self.shared,
        })
    }

    /// Whether the receiver was closed or dropped.
    pub fn is_closed(&self) -> bool {
        self.shared.lock().closed
    }

    /// Waits until the receiver is closed or dropped.
    pub async fn closed(&self) {
        loop {
            let notified = self.shared.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_closed() {
                return;
            }
            notified.await;
        }
    }
}

impl<T> Permit<'_, T> {
    /// Queues `value` in the reserved place (even if the queue was closed meanwhile, as tokio's
    /// permits do: the receiver still gets it).
    pub fn send(self, value: T) {
        let mut state = self.shared.lock();
        state.reserved -= 1;
        let waker = state.push(value);
        drop(state);
        std::mem::forget(self);
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl<T> Drop for Permit<'_, T> {
    /// An unused permit gives its place back.
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.reserved -= 1;
        let send_waiting = std::mem::take(&mut state.send_waiting);
        // A closed receiver waits for the last permit before it reports the end.
        let waker = if state.closed {
            state.rx_waker.take()
        } else {
            None
        };
        drop(state);
        if send_waiting {
            self.shared.notify.notify_waiters();
        }
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl<T> Receiver<T> {
    /// Takes the first value, or returns `Pending` (and wakes the task when one is queued), or
    /// `None` once the queue is closed, empty and no permit is outstanding.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut state = self.shared.lock();
        match self.pop(&mut state) {
            Some(value) => Poll::Ready(Some(value)),
            None if state.closed && state.reserved == 0 => Poll::Ready(None),
            None => {
                match &state.rx_waker {
                    Some(waker) if waker.will_wake(cx.waker()) => {}
                    _ => state.rx_waker = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
        }
    }

    /// Waits for the next value; `None` once the queue is closed, empty and no permit is
    /// outstanding.
    pub async fn recv(&mut self) -> Option<T> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Takes the first value if there is one.
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        let mut state = self.shared.lock();
        match self.pop(&mut state) {
            Some(value) => Ok(value),
            None if state.closed && state.reserved == 0 => Err(TryRecvError::Disconnected),
            None => Err(TryRecvError::Empty),
        }
    }

    /// Refuses new values and permits; what is queued can still be received.
    pub fn close(&mut self) {
        let mut state = self.shared.lock();
        if std::mem::replace(&mut state.closed, true) {
            return;
        }
        drop(state);
        self.shared.notify.notify_waiters();
    }

    fn pop(&self, state: &mut State<T>) -> Option<T> {
        let value = state.queue.pop_front()?;
        if state.queue.is_empty() {
            // Drained: give the buffer back, an idle session holds none.
            state.queue = VecDeque::new();
        }
        if std::mem::take(&mut state.send_waiting) {
            self.shared.notify.notify_waiters();
        }
        Some(value)
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.close();
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender").finish_non_exhaustive()
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn bound_counts_values_and_permits() {
        let (tx, mut rx) = channel::<u32>(2);
        let permit = tx.try_reserve().unwrap();
        tx.try_send(1).unwrap();
        assert!(matches!(tx.try_send(2), Err(TrySendError::Full(2))));
        assert!(matches!(tx.try_reserve(), Err(TrySendError::Full(()))));
        drop(permit);
        tx.try_send(2).unwrap();
        assert_eq!(rx.try_recv(), Ok(1));
        assert_eq!(rx.try_recv(), Ok(2));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    }

    #[test]
    fn drained_queue_holds_no_buffer() {
        let (tx, mut rx) = channel::<u32>(16);
        assert_eq!(tx.shared.lock().queue.capacity(), 0);
        for i in 0..5 {
            tx.try_send(i).unwrap();
        }
        assert!(tx.shared.lock().queue.capacity() >= 5);
        for i in 0..5 {
            assert_eq!(rx.try_recv(), Ok(i));
        }
        assert_eq!(tx.shared.lock().queue.capacity(), 0);
    }

    #[test]
    fn close_keeps_queued_values_and_outstanding_permits() {
        let (tx, mut rx) = channel::<u32>(4);
        tx.try_send(1).unwrap();
        let permit = tx.try_reserve().unwrap();
        rx.close();
        assert!(tx.is_closed());
        assert!(matches!(tx.try_send(2), Err(TrySendError::Closed(2))));
        assert!(matches!(tx.try_reserve(), Err(TrySendError::Closed(()))));
        assert_eq!(rx.try_recv(), Ok(1));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        permit.send(3);
        assert_eq!(rx.try_recv(), Ok(3));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
    }

    #[tokio::test]
    async fn recv_wakes_on_send_and_ends_on_close() {
        let (tx, mut rx) = channel::<u32>(4);
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(v) = rx.recv().await {
                got.push(v);
                if v == 2 {
                    rx.close();
                }
            }
            got
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        tx.try_send(1).unwrap();
        tx.try_send(2).unwrap();
        let got = tokio::time::timeout(Duration::from_secs(1), reader)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, [1, 2]);
        tokio::time::timeout(Duration::from_secs(1), tx.closed())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn send_waits_for_room() {
        let (tx, mut rx) = channel::<u32>(1);
        let tx = Arc::new(tx);
        tx.try_send(1).unwrap();
        let sender = tokio::spawn({
            let tx = tx.clone();
            async move { tx.send(2).await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!sender.is_finished());
        assert_eq!(rx.recv().await, Some(1));
        tokio::time::timeout(Duration::from_secs(1), sender)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(rx.recv().await, Some(2));
    }
}
