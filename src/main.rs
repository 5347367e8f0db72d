//! The `p2p-relay` binary: reads its configuration, then runs the relay until it is told
//! to stop (see `p2p_relay::service`).
//!
//! Exit codes: 0 after a clean shutdown (and for `p2p-relay config`, `--help`,
//! `--version`); 2 for a refused configuration; 1 when the relay cannot start or a front
//! end fails, with one line saying why (all the detail with `--verbose`). Which errors
//! are a refused configuration: `p2p_relay::settings::fatal`.

use std::process::ExitCode;

use p2p_relay::auth::AuthSetupError;
use p2p_relay::service;
use p2p_relay::settings::{self, fatal, Subcommand};

/// jemalloc rather than glibc's malloc: after a wave of thousands of clients came and went,
/// glibc kept most of what they had used (per-thread arenas, fragmented heaps that
/// `malloc_trim` only partly returns), so the relay's RSS ratcheted up wave after wave;
/// jemalloc gives unused pages back (tests/e2e/soak.rs holds it to that).
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

fn main() -> ExitCode {
    let loaded = settings::load(std::env::args_os()).unwrap_or_else(|e| e.exit());
    match &loaded.command {
        Some(Subcommand::Config) => {
            print!("{}", settings::render_report(&loaded));
            return ExitCode::SUCCESS;
        }
        Some(Subcommand::Token(command)) => {
            let Some(secret) = loaded.settings.auth_secret_file.as_deref() else {
                eprintln!("error: {}", AuthSetupError::TokenNeedsSecret);
                return ExitCode::from(2);
            };
            return match command.token(secret) {
                Ok(token) => {
                    // Only the token on stdout, so that scripts can capture it.
                    println!("{token}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    let e = anyhow::Error::from(e);
                    eprintln!("error: {}", fatal::one_line(&e));
                    ExitCode::from(fatal::exit_code(&e))
                }
            };
        }
        None => {}
    }
    let logs = loaded.settings.logs.clone();
    logs.init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(service::run(loaded)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if logs.detailed_errors() {
                service::report_fatal(&e, &logs);
            } else {
                tracing::error!("{}", fatal::one_line(&e));
            }
            ExitCode::from(fatal::exit_code(&e))
        }
    }
}
