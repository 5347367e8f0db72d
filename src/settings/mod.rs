//! The relay's configuration: one set of settings ([`Settings`]), four layers, one
//! precedence order — built-in defaults < a TOML file (`--config FILE`,
//! `P2P_RELAY_CONFIG`) < environment variables (`P2P_RELAY_...`) < flags.
//!
//! Every setting is a clap argument with a long flag and an environment variable, and its
//! file key is the flag's name in snake_case. `docs/p2p-relay.example.toml` lists them all
//! (a test keeps it complete). A file with an unknown key or a bad value stops the relay
//! at start-up with the file, line, key and reason; `p2p-relay config` prints what the
//! relay would run with and where each value came from.

mod error;
pub mod fatal;
mod file;
mod layers;
mod report;
mod secret;

use std::path::PathBuf;

use clap::Parser;

pub use error::ConfigError;
pub use file::{ConfigFile, Entry};
pub use layers::{check_file, command, load, setting_args, Effective, Loaded, Source};
pub use report::render as render_report;
pub use secret::{check_secret_file, is_secret, ShortSecret, GOOD_SECRET_BYTES, MIN_SECRET_BYTES};

use crate::Settings;

/// The command line of the `p2p-relay` binary.
#[derive(Debug, Parser)]
#[command(
    name = "p2p-relay",
    version,
    about = "p2p-relay: pairs two clients and relays their events, acks and streams, over \
             Socket.IO (legacy socket.io-p2p-plugin clients) and QUIC (native clients).",
    after_help = "Every setting can also come from a TOML config file (--config; keys are the \
                  flag names in snake_case, see docs/p2p-relay.example.toml) and from its \
                  environment variable. Precedence: default < config file < environment < \
                  flag. `p2p-relay config` shows the result."
)]
pub struct Cli {
    /// TOML file with settings: `key = value` lines, keys being the flags' names in
    /// snake_case (e.g. `ack_timeout_ms = 5000`). Environment variables and flags override
    /// it.
    #[arg(long, env = "P2P_RELAY_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(flatten)]
    pub settings: Settings,

    #[command(subcommand)]
    pub command: Option<Subcommand>,
}

#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum Subcommand {
    /// Print the effective configuration (secrets masked) and where each value came from,
    /// then exit. Takes the same flags and config file as the relay.
    Config,
    /// Print a token for one clientId, signed with the relay's shared secret
    /// (--auth-secret-file, from any layer), then exit.
    Token(crate::auth::mint::TokenCommand),
}

#[cfg(test)]
mod tests {
    //! Every setting is in all four layers, and the example file lists them all.

    use std::collections::BTreeSet;
    use std::path::Path;

    use super::*;

    const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/p2p-relay.example.toml");

    fn setting_ids() -> BTreeSet<String> {
        setting_args(&command())
            .map(|a| a.get_id().to_string())
            .collect()
    }

    #[test]
    fn every_setting_has_a_flag_a_variable_and_a_file_key() {
        let cmd = command();
        for arg in setting_args(&cmd) {
            let id = arg.get_id().as_str();
            assert_eq!(arg.get_long(), Some(id.replace('_', "-").as_str()), "{id}");
            let env = arg.get_env().map(|v| v.to_string_lossy().into_owned());
            assert_eq!(
                env,
                Some(format!("P2P_RELAY_{}", id.to_uppercase())),
                "{id}"
            );
            assert!(!arg.is_positional(), "{id}");
        }
    }

    #[test]
    fn the_example_file_loads_as_it_is() {
        let loaded = load(["p2p-relay", "--config", EXAMPLE]).expect("the example loads");
        assert_eq!(
            loaded.file.map(|(p, _)| p),
            Some(Path::new(EXAMPLE).to_path_buf())
        );
    }

    /// The example lists every setting, commented out (`# key = value`) or not, with a
    /// value the setting accepts, and nothing that is not a setting.
    #[test]
    fn the_example_file_covers_every_setting() {
        let text = std::fs::read_to_string(EXAMPLE).expect("the example file");
        let uncommented: String = text
            .lines()
            .map(|line| match line.strip_prefix("# ") {
                Some(rest) if is_setting_line(rest) => rest,
                _ => line,
            })
            .collect::<Vec<_>>()
            .join("\n");
        let file = ConfigFile::parse(Path::new(EXAMPLE), &uncommented)
            .unwrap_or_else(|e| panic!("the example, uncommented, parses: {e}"));
        check_file(&command(), &file).unwrap_or_else(|e| panic!("{e}"));
        let listed: BTreeSet<String> = file.entries.iter().map(|e| e.key.clone()).collect();
        assert_eq!(file.entries.len(), listed.len(), "a setting listed twice");
        let missing: Vec<_> = setting_ids().difference(&listed).cloned().collect();
        assert!(
            missing.is_empty(),
            "settings missing from the example: {missing:?}"
        );
    }

    /// `key = value` with a key of lowercase letters and underscores.
    fn is_setting_line(line: &str) -> bool {
        line.split_once(" = ").is_some_and(|(key, _)| {
            !key.is_empty() && key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
        })
    }
}
