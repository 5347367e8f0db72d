//! Wiring: one relay core, its front ends, and one call to shut everything down.

use std::net::SocketAddr;

use gateway_socketio::Gateway;
use relay_runtime::RelayHandle;
use tokio::task::JoinSet;

use crate::quic::{QuicConfig, QuicFrontEnd};
use crate::Settings;

/// A running relay. Dropping it stops every task it started.
pub struct Server {
    relay: RelayHandle,
    socketio_addr: SocketAddr,
    quic_addr: SocketAddr,
    ca: Option<CaInfo>,
    tasks: JoinSet<std::io::Result<()>>,
}

/// Where clients find the development CA to trust.
#[derive(Debug, Clone)]
pub struct CaInfo {
    pub path: std::path::PathBuf,
    pub fingerprint: String,
}

impl Server {
    /// Binds every front end and starts serving.
    pub async fn start(settings: &Settings) -> anyhow::Result<Self> {
        let relay = crate::auth::relay_handle(
            settings.core(),
            settings.auth,
            settings.auth_secret_file.as_deref(),
            settings.auth_url.as_deref(),
            settings.auth_timeout(),
        )?;
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
        let header_timeout = std::time::Duration::from_millis(settings.http_header_timeout_ms);
        tasks.spawn(gateway_socketio::serve_with(listener, app, header_timeout));

        let (identity, ca) = identity(settings)?;
        let quic_config = QuicConfig {
            max_frame_bytes: settings.max_frame_bytes(),
            outbox_messages: settings.outbox_messages,
            outbox_bytes: settings.outbox_bytes,
            idle_timeout: settings.quic_idle_timeout(),
            max_streams_per_connection: (settings.max_streams as u32).saturating_add(1),
            list_page: settings.list_page as usize,
            ..QuicConfig::default()
        };
        let quic = QuicFrontEnd::bind(settings.quic_listen, &identity, &quic_config)?;
        let quic_addr = quic.local_addr()?;
        tasks.spawn(quic.serve(relay.clone(), quic_config));

        Ok(Self {
            relay,
            socketio_addr,
            quic_addr,
            ca,
            tasks,
        })
    }

    pub fn socketio_addr(&self) -> SocketAddr {
        self.socketio_addr
    }

    pub fn quic_addr(&self) -> SocketAddr {
        self.quic_addr
    }

    /// The development CA, when the relay runs on development certificates.
    pub fn ca(&self) -> Option<&CaInfo> {
        self.ca.as_ref()
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

/// The QUIC server's certificate: the operator's, or development certificates created (once)
/// in the data directory.
fn identity(settings: &Settings) -> anyhow::Result<(certs::ServerIdentity, Option<CaInfo>)> {
    if let (Some(cert), Some(key)) = (&settings.cert, &settings.key) {
        return Ok((certs::ServerIdentity::from_pem_files(cert, key)?, None));
    }
    let dir = settings
        .data_dir
        .clone()
        .unwrap_or_else(certs::default_data_dir);
    let dev = certs::DevCerts::load_or_create(&dir)?;
    let ca = CaInfo {
        path: dev.ca_cert_path().to_path_buf(),
        fingerprint: dev.ca_fingerprint(),
    };
    Ok((dev.server_identity(), Some(ca)))
}
