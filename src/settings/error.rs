//! Why the configuration was refused. Each message names where the bad value came from
//! (the file and its line, the environment variable) and what to change.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A flag or environment value clap refused; clap's message names it and shows the
    /// usage (and `--help` / `--version` arrive here too, as clap reports them).
    #[error("{0}")]
    Cli(#[from] clap::Error),

    #[error("cannot read the config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("{}:{line}:{column}: not valid TOML: {message}", path.display())]
    Syntax {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },

    #[error(
        "{}:{line}: unknown key '{key}'{}; every setting is listed in \
         docs/p2p-relay.example.toml and `p2p-relay config`",
        path.display(),
        suggestion.as_ref().map(|s| format!(" (did you mean '{s}'?)")).unwrap_or_default()
    )]
    UnknownKey {
        path: PathBuf,
        line: usize,
        key: String,
        suggestion: Option<String>,
    },

    #[error("{}:{line}: key '{key}': {reason}", path.display())]
    BadValue {
        path: PathBuf,
        line: usize,
        key: String,
        reason: String,
    },

    #[error("environment variable {var}: {reason}")]
    BadEnv { var: String, reason: String },

    /// The file's values are each fine, but together with the flags and environment they
    /// break a rule between settings (say, a certificate without its key).
    #[error("with the settings of {}: {message}", path.display())]
    Combination { path: PathBuf, message: String },
}

impl ConfigError {
    /// The process exit code: clap's own (0 for `--help`, 2 for usage errors), and 2,
    /// as for any usage error, for a refused configuration.
    pub fn exit_code(&self) -> i32 {
        match self {
            ConfigError::Cli(e) => e.exit_code(),
            _ => 2,
        }
    }

    /// Whether this is `--help` or `--version` output rather than an error.
    pub fn is_informational(&self) -> bool {
        matches!(self, ConfigError::Cli(e) if !e.use_stderr())
    }
}

impl ConfigError {
    /// Reports the error as the process's last words and exits: clap's errors (and
    /// `--help`) as clap prints them, ours on one line.
    pub fn exit(self) -> ! {
        match self {
            ConfigError::Cli(e) => e.exit(),
            other => {
                eprintln!("p2p-relay: {other}");
                std::process::exit(other.exit_code())
            }
        }
    }
}
