//! The relay as a service: started, announced, and stopped when told to.
//!
//! What a script needs (the listening addresses) goes to stdout, one line each, in a fixed
//! form; every other start-up fact is one log line on stderr. Nothing is said twice.

use std::io::Write;

use gateway_socketio::CorsOrigins;
use tracing::{error, info, warn};

use crate::logging::LogSettings;
use crate::settings::Loaded;
use crate::{Server, Settings};

/// Runs the relay of `loaded` until a signal or a failure.
pub async fn run(loaded: Loaded) -> anyhow::Result<()> {
    for warning in &loaded.warnings {
        warn!("{warning}");
    }
    let settings = loaded.settings;
    let mut server = Server::start(&settings).await?;
    announce(&server)?;
    log_facts(&settings, &server, loaded.file.as_ref().map(|(path, _)| path));
    let outcome = tokio::select! {
        result = server.run() => result.map_err(anyhow::Error::from),
        signal = shutdown_signal() => {
            info!("{signal}: shutting down");
            Ok(())
        }
    };
    if let Err(e) = &outcome {
        error!("{e}; shutting down");
    }
    server.shutdown().await;
    outcome
}

/// Resolves with the name of the first shutdown signal: Ctrl-C, or (on Unix) SIGTERM, which
/// service managers and container runtimes send.
async fn shutdown_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => tokio::select! {
                name = ctrl_c() => name,
                _ = terminate.recv() => "terminated",
            },
            Err(e) => {
                warn!("cannot listen for SIGTERM ({e}); only Ctrl-C stops the relay");
                ctrl_c().await
            }
        }
    }
    #[cfg(not(unix))]
    ctrl_c().await
}

async fn ctrl_c() -> &'static str {
    match tokio::signal::ctrl_c().await {
        Ok(()) => "interrupted",
        Err(e) => {
            // Without a way to be told, run until killed rather than stop at once.
            warn!("cannot listen for Ctrl-C ({e})");
            std::future::pending().await
        }
    }
}

/// The listening lines: a contract, read by tests and scripts from stdout.
fn announce(server: &Server) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "Socket.IO gateway listening on http://{}",
        server.socketio_addr()
    )?;
    writeln!(out, "QUIC listening on {}", server.quic_addr())?;
    out.flush()
}

/// One log line per start-up fact that stdout does not already carry.
fn log_facts(settings: &Settings, server: &Server, file: Option<&std::path::PathBuf>) {
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
    match server.ca() {
        Some(ca) => info!(
            "QUIC: development certificate; clients trust the CA {} (SHA-256 {})",
            ca.path.display(),
            ca.fingerprint
        ),
        None => info!("QUIC: certificate from --cert"),
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
