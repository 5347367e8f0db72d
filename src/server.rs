//! Wiring: one relay core, its front ends, and one call to shut everything down.

use std::net::SocketAddr;

use gateway_socketio::{Gateway, RelayHandle};
use tokio::task::JoinSet;

use crate::Settings;

/// A running relay. Dropping it stops every task it started.
pub struct Server {
    relay: RelayHandle,
    socketio_addr: SocketAddr,
    tasks: JoinSet<std::io::Result<()>>,
}

impl Server {
    /// Binds every front end and starts serving.
    pub async fn start(settings: &Settings) -> anyhow::Result<Self> {
        let relay = RelayHandle::new(relay_core::Relay::new(settings.core()));
        let mut tasks = JoinSet::new();

        let gateway = Gateway::new(relay.clone(), settings.gateway());
        let listener = tokio::net::TcpListener::bind(settings.socketio_listen)
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot listen for Socket.IO on {}: {e}",
                    settings.socketio_listen
                )
            })?;
        let socketio_addr = listener.local_addr()?;
        let app = gateway.attach(axum::Router::new());
        tasks.spawn(gateway_socketio::serve(listener, app));

        Ok(Self {
            relay,
            socketio_addr,
            tasks,
        })
    }

    pub fn socketio_addr(&self) -> SocketAddr {
        self.socketio_addr
    }

    pub fn relay(&self) -> &RelayHandle {
        &self.relay
    }

    /// Runs until a front end fails (they do not end on their own otherwise).
    pub async fn run(mut self) -> anyhow::Result<()> {
        match self.tasks.join_next().await {
            Some(Ok(Ok(()))) | None => Ok(()),
            Some(Ok(Err(e))) => Err(e.into()),
            Some(Err(e)) => Err(e.into()),
        }
    }

    /// Stops every front end and waits for their tasks to end.
    pub async fn shutdown(mut self) {
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
    }
}
