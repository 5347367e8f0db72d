use std::io::Write;

use clap::Parser;
use gateway_socketio::CorsOrigins;
use p2p_relay::{Server, Settings};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let settings = Settings::parse();
    if let Some(p2p_relay::config::Tool::Token(command)) = &settings.command {
        // Only the token on stdout, so that scripts can capture it.
        println!("{}", command.token()?);
        return Ok(());
    }
    let server = Server::start(&settings).await?;
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
    tokio::select! {
        result = server.run() => result,
        _ = tokio::signal::ctrl_c() => {
            tracing::info!("shutting down");
            Ok(())
        }
    }
}
