//! The admin listener: an HTTP server beside the relay's front ends, for the people and
//! machines that run it.
//!
//! | path | what | guarded |
//! |---|---|---|
//! | `/metrics` | Prometheus text format (see `relay_runtime::metrics`) | yes |
//! | `/healthz` | 200 while the process serves | no |
//! | `/readyz` | 200 once both front ends accept, 503 while starting or draining | no |
//! | `/` | the control center page (its script and style at `/control.js`, `/control.css`) | yes |
//! | `/api/clients?after=&limit=` | connected clients, paged, as JSON | yes |
//! | `/api/summary` | the numbers at a glance, as JSON | yes |
//!
//! "Guarded" means an admin token is required when one is configured, which it must be
//! when the listener is not on loopback (see [`access`]). Without a token, every path
//! answers only requests whose `Host` is a loopback name or one of `--admin-hosts`, which
//! keeps out pages that reach it by DNS rebinding. Every answer carries a
//! `Content-Security-Policy` (own script and style only, no framing), `X-Frame-Options:
//! DENY` and `X-Content-Type-Options: nosniff`.

pub mod access;
mod control;
mod health;
mod routes;
mod settings;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use relay_runtime::RelayHandle;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use access::{Access, AccessError};
pub use health::{Health, Readiness};
pub use settings::AdminSettings;

/// Why the admin listener did not start.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Access(#[from] AccessError),
    /// The address could not be bound; the message names `--admin-listen`.
    #[error(transparent)]
    Bind(#[from] crate::listen::ListenError),
}

/// What the admin listener reports on.
#[derive(Clone)]
pub struct Watched {
    pub relay: RelayHandle,
    pub health: Arc<Health>,
    pub socketio_addr: SocketAddr,
    pub quic_addr: SocketAddr,
}

/// The admin listener's socket, bound and not yet serving (see [`Admin::bind`]).
pub struct AdminListener {
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
}

/// A running admin listener. Dropping it stops it at once; [`Admin::shutdown`] lets
/// requests in progress finish.
pub struct Admin {
    addr: SocketAddr,
    stop: CancellationToken,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Admin {
    /// Binds `addr` and serves with the given access rule.
    pub async fn start(
        addr: SocketAddr,
        access: Access,
        watched: Watched,
    ) -> Result<Self, AdminError> {
        Ok(Self::serve(Self::bind(addr).await?, access, watched))
    }

    /// Binds `addr` only: the binary does this before it starts the relay, so that a taken
    /// admin port stops it before a front end listens or a cluster node joins.
    pub async fn bind(addr: SocketAddr) -> Result<AdminListener, AdminError> {
        let refused = |e| crate::listen::Listener::Admin.error(addr, e);
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(refused)?;
        let addr = listener.local_addr().map_err(refused)?;
        Ok(AdminListener { listener, addr })
    }

    /// Serves on a listener from [`Admin::bind`] with the given access rule.
    pub fn serve(
        AdminListener { listener, addr }: AdminListener,
        access: Access,
        watched: Watched,
    ) -> Self {
        let app = routes::router(routes::State::new(watched, access, SystemTime::now()));
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { stopped.cancelled().await })
                .await
        });
        Self {
            addr,
            stop,
            task: Some(task),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting and waits for requests in progress (each is short).
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Admin {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
