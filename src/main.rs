use std::io::Write;

use gateway_socketio::CorsOrigins;
use p2p_relay::auth::AuthSetupError;
use p2p_relay::settings::{self, Subcommand};
use p2p_relay::Server;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let loaded = settings::load(std::env::args_os()).unwrap_or_else(|e| e.exit());
    match &loaded.command {
        Some(Subcommand::Config) => {
            print!("{}", settings::render_report(&loaded));
            return Ok(());
        }
        Some(Subcommand::Token(command)) => {
            let secret = loaded
                .settings
                .auth_secret_file
                .as_deref()
                .ok_or(AuthSetupError::TokenNeedsSecret)?;
            // Only the token on stdout, so that scripts can capture it.
            println!("{}", command.token(secret)?);
            return Ok(());
        }
        None => {}
    }
    let settings = loaded.settings;
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut server = Server::start(&settings).await?;
    // These lines are a contract: tests and scripts read the addresses from stdout.
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "Socket.IO gateway listening on http://{}",
        server.socketio_addr()
    )?;
    writeln!(out, "QUIC listening on {}", server.quic_addr())?;
    out.flush()?;
    drop(out);
    tracing::info!(
        "Socket.IO clients: http://{}?clientId=YOUR_ID",
        server.socketio_addr()
    );
    match &settings.cors_origins {
        CorsOrigins::Any => tracing::info!(
            "Socket.IO: web pages of any origin may connect (restrict with --cors-origins)"
        ),
        CorsOrigins::Only(origins) => tracing::info!(
            "Socket.IO: web pages may connect only from {}",
            origins.iter().collect::<Vec<_>>().join(", ")
        ),
    }
    match server.ca() {
        Some(ca) => tracing::info!(
            "QUIC clients: {} with the development CA {} (SHA-256 {})",
            server.quic_addr(),
            ca.path.display(),
            ca.fingerprint
        ),
        None => tracing::info!("QUIC clients: {}", server.quic_addr()),
    }
    let outcome = tokio::select! {
        result = server.run() => result.map_err(anyhow::Error::from),
        signal = shutdown_signal() => {
            tracing::info!("{signal}: shutting down");
            Ok(())
        }
    };
    if let Err(e) = &outcome {
        tracing::error!("{e}; shutting down");
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
                tracing::warn!("cannot listen for SIGTERM ({e}); only Ctrl-C stops the relay");
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
            tracing::warn!("cannot listen for Ctrl-C ({e})");
            std::future::pending().await
        }
    }
}
