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
    let mut server = Server::start(&settings).await?;
    let health = Arc::new(Health::default());
    let watched = Watched {
        relay: server.relay().clone(),
        health: health.clone(),
        socketio_addr: server.socketio_addr(),
        quic_addr: server.quic_addr(),
    };
    let admin = Admin::start(settings.admin.admin_listen, access.clone(), watched).await?;
    // Server::start returned: both front ends accept connections.
    health.set_ready();
    announce(&server, &admin)?;
    let file = loaded.file.as_ref().map(|(path, _)| path);
    log_facts(&settings, &server, &access, file);
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
        "Socket.IO gateway listening on http://{}",
        server.socketio_addr()
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
    match server.ca() {
        Some(ca) => info!(
            "QUIC: development certificate; clients trust the CA {} (SHA-256 {})",
            ca.path.display(),
            ca.fingerprint
        ),
        None => info!("QUIC: certificate from --cert"),
    }
    match access {
        Access::Open => info!("admin: open to this machine only (loopback, no token)"),
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
