//! Acks a client owes the relay, handed to the core in order with the client's events.
//!
//! socketioxide resolves an ack inline in the connection's read loop, but whoever awaits it
//! runs later. A client that acks (say, accepts a stream) and at once emits (its first
//! chunk) would then have its emit reach the core before its ack, and the emit would be
//! refused or misrouted. So the pending acks are kept here, and every inbound event first
//! hands over the acks that have already arrived; a background task hands over the rest
//! as they come. Both do the polling and the handing-over under one lock, so an ack is
//! never in between.

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

use futures::stream::FuturesUnordered;
use futures::{Future, StreamExt};
use relay_core::{Answer, Command, ConnId, Ticket};
use tokio::sync::Notify;

use relay_runtime::RelayHandle;

type PendingAck = Pin<Box<dyn Future<Output = Option<(Ticket, Answer)>> + Send>>;

#[derive(Default)]
pub(crate) struct AckWaiters {
    pending: Mutex<FuturesUnordered<PendingAck>>,
    /// Wakes the background task to poll again (a new ack to wait for, or the inbound side
    /// polled with a waker of its own).
    repoll: Notify,
}

impl AckWaiters {
    /// Waits for an ack; `future` yields the answer for the core, or None when there is
    /// nothing to hand over (no ack, undecodable ack: the core's timeout answers then).
    pub fn push(&self, future: impl Future<Output = Option<(Ticket, Answer)>> + Send + 'static) {
        self.pending
            .lock()
            .expect("acks lock")
            .push(Box::pin(future));
        self.repoll.notify_one();
    }

    /// Hands every ack that has already arrived to the core. Called before the client's
    /// next event is handled.
    pub fn hand_over_arrived(&self, handle: &RelayHandle, conn: ConnId) {
        let mut cx = Context::from_waker(Waker::noop());
        let polled = self.poll_and_hand_over(&mut cx, handle, conn);
        if polled {
            // The noop waker replaced the background task's; let it register again.
            self.repoll.notify_one();
        }
    }

    /// Hands acks over as they arrive, until the connection ends (the task is aborted).
    pub async fn run(&self, handle: RelayHandle, conn: ConnId) {
        loop {
            let repoll = self.repoll.notified();
            tokio::pin!(repoll);
            // Pending while acks are outstanding (woken when one arrives); ready when there
            // are none, and then only a push can bring new work.
            let waiting = poll_fn(|cx| {
                if self.poll_and_hand_over(cx, &handle, conn) {
                    Poll::Pending
                } else {
                    Poll::Ready(())
                }
            });
            tokio::select! {
                _ = waiting => repoll.await,
                _ = &mut repoll => {}
            }
        }
    }

    /// Polls the pending acks once; returns whether any were pending at all (false when
    /// there is nothing to wait for, so the caller sleeps until a push).
    fn poll_and_hand_over(&self, cx: &mut Context<'_>, handle: &RelayHandle, conn: ConnId) -> bool {
        let mut pending = self.pending.lock().expect("acks lock");
        loop {
            match pending.poll_next_unpin(cx) {
                Poll::Ready(Some(Some((ticket, answer)))) => {
                    handle.command(conn, Command::Answer { ticket, answer });
                }
                Poll::Ready(Some(None)) => {}
                Poll::Ready(None) => return false,
                Poll::Pending => return true,
            }
        }
    }
}
