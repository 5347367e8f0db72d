//! Logs for people and for machines.
//!
//! Logs go to stderr (stdout carries the listening lines scripts read). A person at a
//! terminal gets coloured text; a file or a pipe gets the same text without escape codes,
//! or one JSON object per line with `--log-format json` for a log collector. `RUST_LOG`
//! still picks what is logged; `--verbose` turns the default up to debug.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// How the relay logs.
#[derive(Debug, Clone, clap::Args)]
pub struct LogSettings {
    /// Log format on stderr: 'text' for people (coloured only on a terminal) or 'json' for
    /// machines (one JSON object per line).
    #[arg(long, env = "P2P_RELAY_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// More detail: debug logs (unless RUST_LOG says otherwise), and the full chain and
    /// backtrace (when RUST_BACKTRACE asks for one) of an error that stops the relay.
    #[arg(
        long,
        env = "P2P_RELAY_VERBOSE",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub verbose: bool,
}

/// The filter of `--verbose`.
const VERBOSE: &str = "info,p2p_relay=debug,relay_core=debug,relay_runtime=debug,\
                       gateway_socketio=debug,certs=debug";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

impl LogSettings {
    /// Whether an error should be shown with all its detail: asked for with `--verbose`,
    /// or by a `RUST_LOG` that wants debug output anyway.
    pub fn detailed_errors(&self) -> bool {
        self.verbose
            || std::env::var("RUST_LOG")
                .is_ok_and(|filter| filter.contains("debug") || filter.contains("trace"))
    }

    /// Installs the process's log subscriber. Call once, before anything logs.
    pub fn init(&self) {
        // Verbose means this relay's own crates; their dependencies' debug output would
        // drown it (RUST_LOG can still ask for it).
        let default = if self.verbose { VERBOSE } else { "info" };
        let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr);
        match self.log_format {
            LogFormat::Text => builder.with_ansi(colour_wanted()).init(),
            LogFormat::Json => builder
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_ansi(false)
                .init(),
        }
    }
}

/// Colour only for a person at a terminal, and not when `NO_COLOR` says otherwise
/// (<https://no-color.org>): escape codes in a log file are noise.
fn colour_wanted() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}
