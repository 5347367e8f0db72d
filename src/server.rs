//! Wiring: one relay core, its front ends, and one call to shut everything down.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use gateway_socketio::{Gateway, ServeShutdown};
use relay_runtime::RelayHandle;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;
use tracing::{debug, warn};

use crate::cluster::Cluster;
use crate::listen::Listener;
use crate::quic::{QuicConfig, QuicFrontEnd};
use crate::Settings;

/// A running relay. [`Server::shutdown`] stops it in order and waits for every task it
/// started; dropping it instead aborts what is left.
pub struct Server {
    relay: RelayHandle,
    gateway: Gateway,
    socketio_addr: SocketAddr,
    quic_addr: SocketAddr,
    ca: Option<CaInfo>,
    /// The front ends' serving tasks (each owns its connections' tasks).
    tasks: JoinSet<(FrontEnd, std::io::Result<()>)>,
    http: ServeShutdown,
    quic_stop: CancellationToken,
    shutdown_grace: Duration,
    /// The operator's certificate, when given: served by both front ends and reloaded.
    tls: Option<Arc<certs::ReloadingCert>>,
    /// Watches the certificate files (aborted when the server goes).
    tls_watch: Option<AbortOnDropHandle<()>>,
    /// Cluster mode: this node's membership.
    cluster: Option<Arc<Cluster>>,
}

/// Which front end a serving task is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FrontEnd {
    SocketIo,
    Quic,
}

/// A front end stopped serving on its own.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("the Socket.IO gateway stopped: {0}")]
    SocketIo(std::io::Error),
    #[error("the QUIC front end stopped: {0}")]
    Quic(std::io::Error),
    #[error("a front end's task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
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
            usize::try_from(settings.auth_response_max_bytes).unwrap_or(usize::MAX),
        )?;
        let mut tasks = JoinSet::new();

        let gateway = Gateway::new(relay.clone(), settings.gateway());
        let listener = tokio::net::TcpListener::bind(settings.socketio_listen)
            .await
            .map_err(|e| Listener::SocketIo.error(settings.socketio_listen, e))?;
        let socketio_addr = listener.local_addr()?;
        let app = gateway.attach(axum::Router::new());
        let http = ServeShutdown::new();

        let (cert, ca) = identity(settings)?;
        let node_links = match &settings.cluster.redis_url {
            Some(_) => Some(crate::cluster::node_links(
                &settings.cluster,
                settings.quic_listen,
            )?),
            None => None,
        };
        let quic_config = QuicConfig {
            node_links: node_links.clone(),
            max_frame_bytes: settings.max_frame_bytes(),
            outbox_messages: settings.outbox_messages,
            outbox_bytes: settings.outbox_bytes,
            idle_timeout: settings.quic_idle_timeout(),
            max_streams_per_connection: (settings.max_streams as u32).saturating_add(1),
            list_page: settings.list_page as usize,
            shutdown_grace: settings.shutdown_grace(),
            ..QuicConfig::default()
        };
        let quic = QuicFrontEnd::bind(settings.quic_listen, &cert, &quic_config)?;
        let tls = match &cert {
            certs::ServerCert::Reloading(reloading) => Some(reloading.clone()),
            certs::ServerCert::Fixed(_) => None,
        };
        let serve_tls = match &tls {
            Some(_) => Some(gateway_socketio::ServeTls::new(
                certs::server_config_for(&cert, &[], false)?,
                settings.tls.handshake_timeout(),
            )),
            None => None,
        };
        let quic_addr = quic.local_addr()?;
        let quic_stop = CancellationToken::new();
        let cluster = match (&settings.cluster.redis_url, node_links) {
            (Some(url), Some(links)) => {
                Some(Cluster::join(&settings.cluster, url, &relay, quic_addr, links).await?)
            }
            _ => None,
        };

        // Spawned only once both front ends are bound, so a failed start leaves nothing
        // running.
        let options = gateway_socketio::ServeOptions {
            header_read_timeout: Duration::from_millis(settings.http_header_timeout_ms),
            tls: serve_tls,
            trusted_proxies: settings.trusted_proxies.clone().unwrap_or_default(),
            proxy_protocol: settings.proxy_protocol,
        };
        let serving = gateway_socketio::serve_with_options(listener, app, http.clone(), options);
        tasks.spawn(async move { (FrontEnd::SocketIo, serving.await) });
        let serving = quic.serve(relay.clone(), quic_config, quic_stop.clone());
        tasks.spawn(async move { (FrontEnd::Quic, serving.await) });
        let tls_watch = tls.clone().map(|reloading| {
            AbortOnDropHandle::new(tokio::spawn(watch_certificate(
                reloading,
                settings.tls.reload_interval(),
            )))
        });

        Ok(Self {
            relay,
            gateway,
            socketio_addr,
            quic_addr,
            ca,
            tasks,
            http,
            quic_stop,
            shutdown_grace: settings.shutdown_grace(),
            tls,
            tls_watch,
            cluster,
        })
    }

    /// Whether the Socket.IO gateway serves https and wss (an operator's certificate was
    /// given).
    pub fn socketio_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The Socket.IO gateway's base URL: `https://` with a certificate, else `http://`.
    pub fn socketio_url(&self) -> String {
        let scheme = if self.socketio_tls() { "https" } else { "http" };
        format!("{scheme}://{}", self.socketio_addr)
    }

    /// Reads the certificate files again now (SIGHUP does this), whether or not they
    /// changed. `Ok(None)` when the relay has no certificate files (development
    /// certificates); an error leaves the certificate being served in place.
    pub fn reload_tls(&self) -> Result<Option<String>, certs::CertError> {
        match &self.tls {
            Some(reloading) => reloading.reload().map(Some),
            None => Ok(None),
        }
    }

    /// The operator's certificate, served by both front ends (for a SIGHUP handler).
    pub fn tls_cert(&self) -> Option<Arc<certs::ReloadingCert>> {
        self.tls.clone()
    }

    /// The SHA-256 fingerprint of the certificate served now, with an operator's
    /// certificate.
    pub fn tls_fingerprint(&self) -> Option<String> {
        self.tls.as_ref().map(|reloading| reloading.fingerprint())
    }

    /// Cluster mode: this node's membership (its node id, whether it reaches the cluster).
    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.cluster.as_ref()
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

    /// Runs until a front end stops (they do not end on their own otherwise). Cancel-safe,
    /// so it can race a shutdown signal; call [`Server::shutdown`] afterwards either way.
    pub async fn run(&mut self) -> Result<(), RunError> {
        match self.tasks.join_next().await {
            None | Some(Ok((_, Ok(())))) => Ok(()),
            Some(Ok((FrontEnd::SocketIo, Err(e)))) => Err(RunError::SocketIo(e)),
            Some(Ok((FrontEnd::Quic, Err(e)))) => Err(RunError::Quic(e)),
            Some(Err(e)) => Err(e.into()),
        }
    }

    /// Stops the relay and returns when every task it started has ended: the front ends'
    /// accept loops and connection tasks (axum's and quinn's), socketioxide's sessions, the
    /// gateway's outbound tasks, and the core's timers.
    ///
    /// In order: both front ends stop accepting; the core closes every connection, telling
    /// each client why (Socket.IO: `SERVER_ERROR` "the relay is shutting down", then its
    /// transport closes; QUIC: a `Closing` frame, then a close with code `SHUTDOWN`); then it
    /// waits for the connections to end. Each wait is bounded by the shutdown grace, and
    /// connections that outstay it are cut, so a client that does not read cannot hold
    /// the shutdown up.
    pub async fn shutdown(mut self) {
        let grace = self.shutdown_grace;
        if let Some(watch) = self.tls_watch.take() {
            watch.abort();
            let _ = watch.await;
        }
        self.http.stop_accepting();
        self.quic_stop.cancel();

        let closing = self.relay.close_all(relay_core::CloseReason::Shutdown);
        if tokio::time::timeout(grace, closing).await.is_err() {
            warn!("the core's timers did not end within {grace:?} of being stopped");
        }
        if let Some(cluster) = &self.cluster {
            cluster.leave().await;
        }
        debug!("every client told; closing the Socket.IO gateway");
        self.gateway.close().await;

        // The QUIC front end bounds its own steps; axum's graceful end waits for requests
        // still in progress, which the gateway's close has just answered.
        let finished = tokio::time::timeout(grace, self.join_all()).await;
        if finished.is_err() {
            warn!("connections still open {grace:?} after their clients were told; cutting them");
            self.http.cut_connections();
            // The QUIC front end's own bounds: two steps of the grace are still to come.
            if tokio::time::timeout(grace * 3, self.join_all())
                .await
                .is_err()
            {
                warn!("front ends still running after being cut; aborting them");
                self.tasks.shutdown().await;
            }
        }
        debug!("relay shut down");
    }

    /// Waits for every front end's task, logging how each ended.
    async fn join_all(&mut self) {
        while let Some(done) = self.tasks.join_next().await {
            match done {
                Ok((_, Ok(()))) => {}
                Ok((front_end, Err(e))) => warn!(?front_end, "front end ended with {e}"),
                Err(e) => warn!("a front end's task failed: {e}"),
            }
        }
    }
}

impl Drop for Server {
    /// A server dropped without [`Server::shutdown`]: stop everything at once, waiting for
    /// nothing. The front ends' tasks are aborted (the `JoinSet` aborts them when dropped,
    /// and with them every connection task they own), axum's connection tasks, which no
    /// handle owns, end by the cut, and the core's timers and the gateway's tasks are
    /// aborted. Nothing of this happens after a shutdown, which has already ended it all.
    fn drop(&mut self) {
        self.http.cut_connections();
        self.quic_stop.cancel();
        self.relay.close_all_now(relay_core::CloseReason::Shutdown);
        self.gateway.abort();
        if let Some(cluster) = &self.cluster {
            cluster.abort();
        }
    }
}

/// The certificate both front ends present: the operator's (reloaded when its files
/// change), or development certificates created (once) in the data directory, for QUIC
/// only (the gateway then serves plain http, as the Node server did).
fn identity(settings: &Settings) -> anyhow::Result<(certs::ServerCert, Option<CaInfo>)> {
    if let Some((cert, key)) = settings.tls.files() {
        let reloading = certs::ReloadingCert::from_pem_files(&cert, &key)?;
        return Ok((certs::ServerCert::Reloading(Arc::new(reloading)), None));
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
    Ok((certs::ServerCert::Fixed(dev.server_identity()), Some(ca)))
}

/// Polls the certificate files every `interval` and serves them again when they changed.
///
/// Polling rather than inotify (the notify crate): it costs two `stat` calls every few
/// seconds, sees a file replaced by rename (as ACME clients and Kubernetes secret mounts
/// do, through symlink swaps that inotify watches on the file itself miss), and needs no
/// platform code. A bad pair (say the certificate written and not yet its key) is
/// logged once and retried at the next change; the old certificate stays meanwhile.
async fn watch_certificate(reloading: Arc<certs::ReloadingCert>, interval: Duration) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let check = reloading.clone();
        // The files are read off the runtime's threads: a slow disk must not stall them.
        match tokio::task::spawn_blocking(move || check.reload_if_changed()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(
                "the TLS certificate files changed but cannot be used ({e}); still serving \
                 the previous certificate (SHA-256 {})",
                reloading.fingerprint()
            ),
            Err(e) => warn!("the certificate check failed: {e}"),
        }
    }
}
