//! The relay as a service: started, announced, and stopped when told to.
//!
//! What a script needs (the listening addresses) goes to stdout, one line each, in a fixed
//! form; every other start-up fact is one log line on stderr. Nothing is said twice.

use std::io::Write;
use std::sync::Arc;

use anyhow::Context;

use gateway_socketio::CorsOrigins;
use tracing::{error, info, warn};

use crate::admin::{Access, Admin, Health, Watched};
use crate::drain;
use crate::logging::LogSettings;
use crate::settings::Loaded;
use crate::signals::Signals;
use crate::{Server, Settings};

/// Runs the relay of `loaded` until a signal or a failure.
pub async fn run(loaded: Loaded) -> anyhow::Result<()> {
    for warning in &loaded.warnings {
        warn!("{warning}");
    }
    let settings = loaded.settings;
    // Before anything binds: an admin listener beyond loopback without a token is refused.
    let access = Access::from_settings(&settings.admin)?;
    let mut signals = Signals::install().context("cannot listen for SIGTERM and SIGINT")?;
    // Bound first: a taken admin port stops the relay before a front end listens.
    let admin_listener = Admin::bind(settings.admin.admin_listen).await?;
    let mut server = Server::start(&settings).await?;
    let health = Arc::new(Health::default());
    let watched = Watched {
        relay: server.relay().clone(),
        health: health.clone(),
        socketio_addr: server.socketio_addr(),
        quic_addr: server.quic_addr(),
    };
    let admin = Admin::serve(admin_listener, access.clone(), watched);
    // Server::start returned: both front ends accept connections.
    health.set_ready();
    announce(&server, &admin)?;
    let file = loaded.file.as_ref().map(|(path, _)| path);
    log_facts(&settings, &server, &access, file);
    // Both end (aborted) when this returns.
    let _state_on_usr1 = tokio_util::task::AbortOnDropHandle::new(tokio::spawn(
        print_state_on_usr1(server.relay().clone()),
    ));
    let _reload_on_hangup = server
        .tls_cert()
        .map(|cert| tokio_util::task::AbortOnDropHandle::new(tokio::spawn(reload_on_hangup(cert))));
    let relay = server.relay().clone();
    let outcome = tokio::select! {
        result = server.run() => result.map_err(anyhow::Error::from),
        stop = signals.next() => {
            info!("{stop}: draining, then shutting down");
            let timeout = settings.drain.drain_timeout();
            tokio::select! {
                _ = drain::drain(&relay, &health, timeout) => {}
                again = signals.next() => warn!("{again} again: closing every connection now"),
            }
            Ok(())
        }
    };
    if let Err(e) = &outcome {
        error!("{e}; shutting down");
    }
    server.shutdown().await;
    outcome
}

/// The listening lines: a contract, read by tests and scripts from stdout.
fn announce(server: &Server, admin: &Admin) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "Socket.IO gateway listening on {}",
        server.socketio_url()
    )?;
    writeln!(out, "QUIC listening on {}", server.quic_addr())?;
    writeln!(out, "Admin listening on http://{}", admin.addr())?;
    out.flush()
}

/// One log line per start-up fact that stdout does not already carry.
fn log_facts(
    settings: &Settings,
    server: &Server,
    access: &Access,
    file: Option<&std::path::PathBuf>,
) {
    if let Some(path) = file {
        info!("configuration read from {}", path.display());
    }
    match &settings.cors_origins {
        CorsOrigins::Any => {
            info!("Socket.IO: web pages of any origin may connect (restrict with --cors-origins)")
        }
        CorsOrigins::Only(origins) => info!(
            "Socket.IO: web pages may connect only from {}",
            origins.iter().collect::<Vec<_>>().join(", ")
        ),
    }
    if let Some(ca) = server.ca() {
        info!(
            "QUIC: development certificate; clients trust the CA {} (SHA-256 {})",
            ca.path.display(),
            ca.fingerprint
        );
    }
    if let Some(cert) = server.tls_cert() {
        info!(
            "TLS: {} and {} (SHA-256 {}), for both front ends; reloaded when they change and \
             on SIGHUP",
            cert.cert_path().display(),
            cert.key_path().display(),
            cert.fingerprint()
        );
    }
    match access {
        Access::Open(_) => info!(
            "admin: open to this machine only (loopback, no token; requests must name a \
             loopback host or one of --admin-hosts)"
        ),
        Access::Token(_) => info!("admin: admin token required (Authorization: Bearer)"),
    }
}

/// The error that stopped the relay, on one line; with `--verbose` (or a debug
/// `RUST_LOG`), its whole chain and the backtrace when `RUST_BACKTRACE` captured one.
pub fn report_fatal(e: &anyhow::Error, logs: &LogSettings) {
    if logs.detailed_errors() {
        error!("{e:?}");
    } else {
        error!("{e:#}");
    }
}

/// Reads the certificate files again at every SIGHUP, the signal service managers send for
/// "reload your configuration" (`systemctl reload`, certbot's deploy hooks).
async fn reload_on_hangup(cert: std::sync::Arc<certs::ReloadingCert>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hangup = match signal(SignalKind::hangup()) {
            Ok(hangup) => hangup,
            Err(e) => {
                tracing::warn!(
                    "cannot listen for SIGHUP ({e}); certificates reload on change only"
                );
                return;
            }
        };
        while hangup.recv().await.is_some() {
            let reloading = cert.clone();
            match tokio::task::spawn_blocking(move || reloading.reload()).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::error!(
                    "SIGHUP: cannot use the TLS certificate files ({e}); still serving the \
                     previous certificate (SHA-256 {})",
                    cert.fingerprint()
                ),
                Err(e) => tracing::warn!("SIGHUP: the certificate reload failed: {e}"),
            }
        }
    }
    #[cfg(not(unix))]
    let _ = cert;
}

/// Prints what the core holds (`relay state: connections=N ...`, one line on stdout) at
/// every SIGUSR1: a look inside a running relay without a debugger, and what the soak test
/// reads to check that nothing outlived its clients.
async fn print_state_on_usr1(relay: relay_runtime::RelayHandle) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut usr1) = signal(SignalKind::user_defined1()) else {
            return;
        };
        while usr1.recv().await.is_some() {
            let state = relay.state();
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "relay state: {state}");
            let _ = out.flush();
        }
    }
    #[cfg(not(unix))]
    let _ = relay;
}
