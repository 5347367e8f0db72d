use std::io::Write;

use clap::Parser;
use gateway_socketio::CorsOrigins;
use p2p_relay::{Server, Settings};
use tracing_subscriber::EnvFilter;

/// jemalloc rather than glibc's malloc: after a wave of thousands of clients came and went,
/// glibc kept most of what they had used (per-thread arenas, fragmented heaps that
/// `malloc_trim` only partly returns), so the relay's RSS ratcheted up wave after wave;
/// jemalloc gives unused pages back (tests/soak.rs holds it to that).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read when it starts: a background thread purges unused pages, dirty
/// ones after a second (the default is ten) and without the "muzzy" stage that would keep
/// them counted in RSS for another while. `MALLOC_CONF` in the environment still overrides.
#[cfg(not(target_env = "msvc"))]
#[allow(non_upper_case_globals)]
#[export_name = "_rjem_malloc_conf"]
pub static malloc_conf: &[u8] = b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

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
    let mut server = Server::start(&settings).await?;
    // These lines are a contract: tests and scripts read the addresses from stdout.
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "Socket.IO gateway listening on {}",
        server.socketio_url()
    )?;
    writeln!(out, "QUIC listening on {}", server.quic_addr())?;
    out.flush()?;
    drop(out);
    tracing::info!(
        "Socket.IO clients: {}?clientId=YOUR_ID",
        server.socketio_url()
    );
    if let Some(cert) = server.tls_cert() {
        tracing::info!(
            "TLS: {} and {} (SHA-256 {}), for both front ends; reloaded when they change and \
             on SIGHUP",
            cert.cert_path().display(),
            cert.key_path().display(),
            cert.fingerprint()
        );
    }
    let _state_on_usr1 = tokio_util::task::AbortOnDropHandle::new(tokio::spawn(
        print_state_on_usr1(server.relay().clone()),
    ));
    // Dropped (so aborted) when main returns.
    let _reload_on_hangup = server
        .tls_cert()
        .map(|cert| tokio_util::task::AbortOnDropHandle::new(tokio::spawn(reload_on_hangup(cert))));
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
