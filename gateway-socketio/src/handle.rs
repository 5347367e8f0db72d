//! The handle every front end and embedding application holds: the shared relay core plus
//! the one task that fires its timeouts.

use std::sync::Arc;
use std::time::Instant;

use relay_core::{ClientId, Command, ConnId, ConnectError, Hub, Relay, Sink};
use tokio::sync::Notify;
use tokio::task::AbortHandle;

/// A cheap-to-clone handle on the relay. Dropping the last clone stops its timer task.
#[derive(Clone)]
pub struct RelayHandle {
    inner: Arc<Inner>,
}

struct Inner {
    hub: Arc<Hub>,
    timer: AbortHandle,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.timer.abort();
    }
}

impl RelayHandle {
    /// Starts the relay core and its timer. Must be called inside a tokio runtime.
    pub fn new(relay: Relay) -> Self {
        let wake = Arc::new(Notify::new());
        let hub = Arc::new(Hub::new(relay, {
            let wake = wake.clone();
            move || wake.notify_one()
        }));
        let timer = tokio::spawn(drive_timeouts(Arc::downgrade(&hub), wake)).abort_handle();
        Self {
            inner: Arc::new(Inner { hub, timer }),
        }
    }

    pub fn connect(
        &self,
        client_id: Option<&str>,
        credentials: Option<&[u8]>,
        sink: Arc<dyn Sink>,
    ) -> Result<ConnId, ConnectError> {
        self.inner
            .hub
            .connect(Instant::now(), client_id, credentials, sink)
    }

    pub fn command(&self, conn: ConnId, command: Command) {
        self.inner.hub.handle(Instant::now(), conn, command);
    }

    pub fn disconnect(&self, conn: ConnId) {
        self.inner.hub.disconnect(Instant::now(), conn);
    }

    // The server-side API of the original Node plugin.

    /// Every connected clientId.
    pub fn client_ids(&self) -> Vec<ClientId> {
        self.inner.hub.with_relay(|r| r.client_ids())
    }

    /// The connection a client is on.
    pub fn conn_of(&self, client: &str) -> Option<ConnId> {
        self.inner.hub.with_relay(|r| r.conn_of(client))
    }

    /// The client a connection belongs to.
    pub fn client_of(&self, conn: ConnId) -> Option<ClientId> {
        self.inner.hub.with_relay(|r| r.client_of(conn))
    }

    /// The client a client is paired with.
    pub fn peer_of(&self, client: &str) -> Option<ClientId> {
        self.inner.hub.with_relay(|r| r.peer_of(client))
    }

    /// Read access to the core, for queries not listed above.
    pub fn with_relay<R>(&self, f: impl FnOnce(&Relay) -> R) -> R {
        self.inner.hub.with_relay(f)
    }
}

/// Sleeps until the core's next deadline (or until it moves) and fires it. Holds the hub
/// weakly so that it never keeps a dropped relay alive.
async fn drive_timeouts(hub: std::sync::Weak<Hub>, wake: Arc<Notify>) {
    loop {
        let deadline = match hub.upgrade() {
            Some(hub) => hub.poll_timeout(),
            None => return,
        };
        match deadline {
            Some(deadline) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(deadline.into()) => {
                        let Some(hub) = hub.upgrade() else { return };
                        hub.handle_timeout(Instant::now());
                    }
                    _ = wake.notified() => {}
                }
            }
            None => wake.notified().await,
        }
    }
}
