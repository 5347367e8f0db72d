//! Stopping without cutting transfers short: the drain before the shutdown.
//!
//! On SIGTERM or Ctrl-C the relay first reports itself not ready (`/readyz` answers 503,
//! so a load balancer sends no one new) and refuses new clients ("the relay is shutting
//! down"). Every client with no open stream is then told and let go at once (Socket.IO: a
//! `SERVER_ERROR` saying the relay is shutting down, then a disconnect; QUIC: a `Closing`
//! frame with the `SHUTDOWN` code), so it can reconnect elsewhere. Clients with open
//! streams keep everything until their streams end, each being let go as its last stream
//! finishes, for at most `--drain-timeout-ms`. What is left then is closed by
//! `Server::shutdown`, which tells those clients the same and cuts their streams.
//!
//! A stream between two Socket.IO clients of the 1.4.1 protocol has no id and no end:
//! to the relay it is `P2P_EMIT_STREAM` chunks. Such a pair counts as streaming while
//! either client sent a chunk within the last [`QUIET`], and is let go once both are quiet.

use std::time::{Duration, Instant};

use relay_core::{CloseReason, ConnId};
use relay_runtime::RelayHandle;
use tracing::{info, warn};

use crate::admin::Health;

#[derive(Debug, Clone, clap::Args)]
pub struct DrainSettings {
    /// On SIGTERM or Ctrl-C, how long open streams may take to finish before they are
    /// closed, in milliseconds (0: close them at once).
    #[arg(long, env = "P2P_RELAY_DRAIN_TIMEOUT_MS", default_value_t = 10_000)]
    pub drain_timeout_ms: u64,
}

impl DrainSettings {
    pub fn drain_timeout(&self) -> Duration {
        Duration::from_millis(self.drain_timeout_ms)
    }
}

/// How often the drain looks again at the clients whose streams are still open.
const POLL: Duration = Duration::from_millis(20);

/// Clients looked at per page on the first pass (each page costs its size).
const PAGE: usize = 1000;

/// How long a pair of Socket.IO clients must have sent no stream chunk before the drain
/// takes their stream for finished. A sender waits for each chunk's ack before the next,
/// so a transfer in progress is never this quiet.
pub const QUIET: Duration = Duration::from_secs(1);

/// Whether `client` still has something to finish: an open stream, or (with its peer) a
/// legacy stream's chunks within the last [`QUIET`].
fn busy(relay: &RelayHandle, client: &relay_runtime::ClientInfo) -> bool {
    let chunking =
        |info: &relay_runtime::ClientInfo| info.since_last_chunk.is_some_and(|ago| ago < QUIET);
    if client.streams > 0 || chunking(client) {
        return true;
    }
    client
        .peer
        .as_ref()
        .and_then(|peer| relay.conn_of(peer.as_str()))
        .and_then(|conn| relay.client_info(conn))
        .is_some_and(|peer| chunking(&peer))
}

/// How a drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    /// Clients let go because they had no stream (at once, or once theirs ended).
    pub let_go: usize,
    /// Clients whose streams were still open at the deadline.
    pub left: usize,
}

/// Drains the relay (see the module docs). Returns when no client has an open stream, or
/// at `timeout`. The connections it leaves are for `Server::shutdown` to close.
pub async fn drain(relay: &RelayHandle, health: &Health, timeout: Duration) -> Drained {
    health.set_draining();
    relay.refuse_newcomers();
    let deadline = Instant::now() + timeout;

    // First pass, page by page: let go of everyone with nothing to finish.
    let mut let_go = 0;
    let mut streaming: Vec<ConnId> = Vec::new();
    let mut after = None;
    loop {
        let page = relay.clients(
            after.as_ref().map(|id: &relay_core::ClientId| id.as_str()),
            PAGE,
        );
        for client in &page.clients {
            if !busy(relay, client) {
                relay.close(client.conn, CloseReason::Shutdown);
                let_go += 1;
            } else {
                streaming.push(client.conn);
            }
        }
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    if streaming.is_empty() {
        info!("drained: {let_go} clients told and closed; no stream was open");
        return Drained { let_go, left: 0 };
    }
    info!(
        "draining: {let_go} clients told and closed; waiting up to {timeout:?} for the \
         streams of {} more",
        streaming.len()
    );

    // Then only the clients with streams, each let go once its streams have ended.
    loop {
        streaming.retain(|conn| match relay.client_info(*conn) {
            None => false,
            Some(info) if !busy(relay, &info) => {
                relay.close(*conn, CloseReason::Shutdown);
                let_go += 1;
                false
            }
            Some(_) => true,
        });
        if streaming.is_empty() {
            info!("drained: every stream finished");
            return Drained { let_go, left: 0 };
        }
        if Instant::now() >= deadline {
            warn!(
                "drain timeout: {} clients still have open streams after {timeout:?}; \
                 closing them",
                streaming.len()
            );
            return Drained {
                let_go,
                left: streaming.len(),
            };
        }
        tokio::time::sleep(POLL).await;
    }
}
