//! Four layers, one precedence order: built-in defaults < config file < environment <
//! command line.
//!
//! clap already reads the last two (every flag has its `P2P_RELAY_...` variable) and says
//! where each value came from. The file fits in between by taking the place of the
//! defaults: a first parse tells which settings neither the environment nor the command
//! line set; the file's values for those are then given to clap as flags ahead of the
//! user's own, and a second parse yields the settings. So every value, whichever layer
//! it comes from, goes through the one parser its setting has, and a setting added to
//! `Settings` is at once a file key too.

use std::collections::HashMap;
use std::error::Error as _;
use std::ffi::OsString;
use std::path::PathBuf;

use clap::builder::TypedValueParser;
use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, CommandFactory, FromArgMatches};

use super::file::{ConfigFile, Entry};
use super::{secret, Cli, ConfigError, Subcommand};
use crate::Settings;

/// The id of the `--config` argument, which names the file and so is no file key itself.
const CONFIG: &str = "config";

/// Variables with the prefix that are not settings: the test harnesses' own.
const NOT_SETTINGS: &[&str] = &["P2P_RELAY_BIN", "P2P_RELAY_LOG"];

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Default,
    File {
        path: PathBuf,
        line: usize,
    },
    Env(String),
    Flag(String),
    /// No layer set it, and it has no default.
    Unset,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File { path, line } => write!(f, "file {}:{line}", path.display()),
            Source::Env(var) => write!(f, "env {var}"),
            Source::Flag(flag) => write!(f, "flag --{flag}"),
            Source::Unset => f.write_str("not set"),
        }
    }
}

/// One setting as it ended up.
#[derive(Debug, Clone)]
pub struct Effective {
    /// Its name in the file (the flag without dashes, in snake_case).
    pub key: String,
    /// Its value as text (None when unset).
    pub value: Option<String>,
    pub source: Source,
    pub secret: bool,
    /// A switch (`--verbose`): its value is `true` or `false`.
    pub switch: bool,
}

/// The configuration the relay runs with.
#[derive(Debug)]
pub struct Loaded {
    pub settings: Settings,
    pub command: Option<Subcommand>,
    /// The config file read, and where its name came from.
    pub file: Option<(PathBuf, Source)>,
    /// Every setting, in the order `--help` lists them.
    pub effective: Vec<Effective>,
    /// Things worth a log line once logging is set up (an unknown `P2P_RELAY_` variable).
    pub warnings: Vec<String>,
}

/// The command line the relay parses: `Cli` with every argument global, so that
/// `p2p-relay config --config FILE --flag ...` takes the same settings as the relay.
pub fn command() -> clap::Command {
    Cli::command().mut_args(|arg| arg.global(true))
}

/// Every setting's argument: what the file may name.
pub fn setting_args(cmd: &clap::Command) -> impl Iterator<Item = &Arg> {
    cmd.get_arguments().filter(|arg| {
        let id = arg.get_id().as_str();
        id != CONFIG && id != "help" && id != "version"
    })
}

/// Reads the configuration from the process's arguments and environment (and the file
/// they name).
pub fn load(args: impl IntoIterator<Item = impl Into<OsString>>) -> Result<Loaded, ConfigError> {
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let cmd = command();
    check_environment(&cmd, &args)?;
    let first = cmd.clone().try_get_matches_from(&args)?;

    let file = match first.get_one::<PathBuf>(CONFIG) {
        Some(path) => Some((
            ConfigFile::read(path)?,
            source_of(&first, &cmd, CONFIG).unwrap_or(Source::Unset),
        )),
        None => None,
    };

    // The file's values for what neither the environment nor the command line set.
    let mut filled: HashMap<String, Entry> = HashMap::new();
    let mut injected: Vec<OsString> = Vec::new();
    if let Some((file, _)) = &file {
        for entry in &file.entries {
            let (arg, flag_on) = check_entry(&cmd, file, entry)?;
            if !matches!(
                first.value_source(arg.get_id().as_str()),
                None | Some(ValueSource::DefaultValue)
            ) {
                continue;
            }
            let long = arg.get_long().expect("every setting has a long flag");
            match flag_on {
                Some(false) => {}
                Some(true) => injected.push(format!("--{long}").into()),
                None => injected.push(format!("--{long}={}", entry.value).into()),
            }
            filled.insert(entry.key.clone(), entry.clone());
        }
    }

    let matches = if injected.is_empty() {
        first
    } else {
        let mut argv = vec![args.first().cloned().unwrap_or_else(|| "p2p-relay".into())];
        argv.extend(injected);
        argv.extend(args.iter().skip(1).cloned());
        cmd.clone().try_get_matches_from(argv).map_err(|e| {
            let (file, _) = file.as_ref().expect("values were injected from a file");
            ConfigError::Combination {
                path: file.path.clone(),
                message: first_line(&e),
            }
        })?
    };

    let cli = Cli::from_arg_matches(&matches)?;
    let effective = setting_args(&cmd)
        .map(|arg| {
            let key = arg.get_id().to_string();
            let source = match (filled.get(&key), &file) {
                (Some(entry), Some((file, _))) => Source::File {
                    path: file.path.clone(),
                    line: entry.line,
                },
                _ => source_of(&matches, &cmd, &key).unwrap_or(Source::Unset),
            };
            let value = matches.get_raw(&key).map(|raw| {
                raw.map(|v| v.to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join(",")
            });
            Effective {
                secret: secret::is_secret(arg),
                switch: is_switch(arg),
                key,
                value,
                source,
            }
        })
        .collect();
    Ok(Loaded {
        settings: cli.settings,
        command: cli.command,
        file: file.map(|(file, source)| (file.path, source)),
        effective,
        warnings: unknown_variables(&cmd),
    })
}

/// Where the value of `id` came from, as clap saw it.
fn source_of(matches: &ArgMatches, cmd: &clap::Command, id: &str) -> Option<Source> {
    let arg = cmd.get_arguments().find(|a| a.get_id() == id)?;
    Some(match matches.value_source(id)? {
        ValueSource::DefaultValue => Source::Default,
        ValueSource::EnvVariable => Source::Env(
            arg.get_env()
                .map(|v| v.to_string_lossy().into_owned())
                .unwrap_or_default(),
        ),
        _ => Source::Flag(arg.get_long().unwrap_or(id).to_owned()),
    })
}

/// Checks that a file's every key names a setting and every value suits it.
pub fn check_file(cmd: &clap::Command, file: &ConfigFile) -> Result<(), ConfigError> {
    for entry in &file.entries {
        check_entry(cmd, file, entry)?;
    }
    Ok(())
}

/// The setting an entry names, and for a switch whether it is on.
fn check_entry<'c>(
    cmd: &'c clap::Command,
    file: &ConfigFile,
    entry: &Entry,
) -> Result<(&'c Arg, Option<bool>), ConfigError> {
    let arg = find_arg(cmd, file, entry)?;
    let flag_on = check_value(cmd, arg, &entry.value).map_err(|reason| ConfigError::BadValue {
        path: file.path.clone(),
        line: entry.line,
        key: entry.key.clone(),
        reason,
    })?;
    Ok((arg, flag_on))
}

/// The setting a file key names.
fn find_arg<'c>(
    cmd: &'c clap::Command,
    file: &ConfigFile,
    entry: &Entry,
) -> Result<&'c Arg, ConfigError> {
    setting_args(cmd)
        .find(|arg| arg.get_id() == entry.key.as_str())
        .ok_or_else(|| ConfigError::UnknownKey {
            path: file.path.clone(),
            line: entry.line,
            key: entry.key.clone(),
            suggestion: closest_key(cmd, &entry.key),
        })
}

/// The known key nearest to a mistyped one (a dash for an underscore, a letter off).
fn closest_key(cmd: &clap::Command, key: &str) -> Option<String> {
    let normalized = key.replace('-', "_").to_lowercase();
    setting_args(cmd)
        .map(|arg| arg.get_id().to_string())
        .map(|known| (strsim::levenshtein(&normalized, &known), known))
        .filter(|(distance, known)| *distance <= (known.len() / 4).max(2))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, known)| known)
}

/// A switch: a flag without a value (`--verbose`), set from the file or the environment
/// with a boolean.
fn is_switch(arg: &Arg) -> bool {
    matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse)
}

/// Checks one value against its setting's parser, as if given as its flag. Returns, for a
/// switch, whether it is on.
fn check_value(cmd: &clap::Command, arg: &Arg, value: &str) -> Result<Option<bool>, String> {
    if is_switch(arg) {
        return clap::builder::BoolishValueParser::new()
            .parse_ref(cmd, None, std::ffi::OsStr::new(value))
            .map(Some)
            .map_err(|_| format!("invalid value '{value}': use true or false"));
    }
    let long = arg.get_long().expect("every setting has a long flag");
    let probe = [
        OsString::from("p2p-relay"),
        format!("--{long}={value}").into(),
    ];
    match cmd.clone().try_get_matches_from(probe) {
        Ok(_) => Ok(None),
        // Rules between settings are checked once all layers are in.
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::MissingRequiredArgument | ErrorKind::ArgumentConflict
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(reason(&e, value)),
    }
}

/// What was wrong with a value, without clap's flag-centred framing.
fn reason(e: &clap::Error, value: &str) -> String {
    if let Some(source) = e.source() {
        return format!("invalid value '{value}': {source}");
    }
    if let Some(ContextValue::Strings(valid)) = e.get(ContextKind::ValidValue) {
        return format!("invalid value '{value}': use one of {}", valid.join(", "));
    }
    format!("invalid value '{value}': {}", first_line(e))
}

/// clap's message on one line: without its `error: ` prefix and the usage after it.
fn first_line(e: &clap::Error) -> String {
    let rendered = e.render().to_string();
    let message: Vec<&str> = rendered
        .lines()
        .take_while(|line| !line.trim().is_empty())
        .map(str::trim)
        .collect();
    let message = message.join(" ");
    message
        .strip_prefix("error: ")
        .unwrap_or(&message)
        .to_owned()
}

/// Refuses a bad value in a `P2P_RELAY_...` variable, naming the variable (clap's own
/// message would name the flag, which the user did not type). A variable overridden by
/// its flag is not read, so not checked.
fn check_environment(cmd: &clap::Command, args: &[OsString]) -> Result<(), ConfigError> {
    for arg in cmd.get_arguments() {
        let (Some(var), Some(long)) = (arg.get_env(), arg.get_long()) else {
            continue;
        };
        let Some(value) = std::env::var_os(var) else {
            continue;
        };
        let flag = format!("--{long}");
        let overridden = args.iter().skip(1).any(|a| {
            let a = a.to_string_lossy();
            a == flag || a.starts_with(&format!("{flag}="))
        });
        if overridden || arg.get_id() == CONFIG {
            continue;
        }
        let value = value.to_string_lossy();
        check_value(cmd, arg, &value).map_err(|reason| ConfigError::BadEnv {
            var: var.to_string_lossy().into_owned(),
            reason,
        })?;
    }
    Ok(())
}

/// `P2P_RELAY_...` variables that name no setting: most likely a typo, worth a warning.
fn unknown_variables(cmd: &clap::Command) -> Vec<String> {
    let known: Vec<String> = cmd
        .get_arguments()
        .filter_map(|a| a.get_env())
        .map(|v| v.to_string_lossy().into_owned())
        .collect();
    std::env::vars_os()
        .filter_map(|(name, _)| name.into_string().ok())
        .filter(|name| name.starts_with("P2P_RELAY_"))
        .filter(|name| !known.contains(name) && !NOT_SETTINGS.contains(&name.as_str()))
        .map(|name| format!("environment variable {name} is not a setting of p2p-relay; ignored"))
        .collect()
}

#[cfg(test)]
mod tests {
    //! The rules that need no process environment; precedence across all four layers is
    //! tested on the binary (tests/operations.rs), whose environment a test can set.

    use std::io::Write;

    use super::*;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        file.write_all(text.as_bytes()).unwrap();
        file
    }

    fn load_with(file: &tempfile::NamedTempFile, flags: &[&str]) -> Result<Loaded, ConfigError> {
        let mut args = vec!["p2p-relay".to_owned(), "--config".to_owned()];
        args.push(file.path().display().to_string());
        args.extend(flags.iter().map(|s| s.to_string()));
        load(args)
    }

    fn effective<'a>(loaded: &'a Loaded, key: &str) -> &'a Effective {
        loaded.effective.iter().find(|e| e.key == key).unwrap()
    }

    #[test]
    fn the_file_fills_what_flags_leave_and_flags_win() {
        let f = file("ack_timeout_ms = 1234\nmax_clients = 7\nverbose = true\n");
        let loaded = load_with(&f, &["--max-clients", "9"]).unwrap();
        assert_eq!(loaded.settings.ack_timeout_ms, 1234);
        assert_eq!(loaded.settings.max_clients, 9);
        assert!(loaded.settings.logs.verbose);
        assert_eq!(
            effective(&loaded, "ack_timeout_ms").source,
            Source::File {
                path: f.path().to_path_buf(),
                line: 1
            }
        );
        assert_eq!(
            effective(&loaded, "max_clients").source,
            Source::Flag("max-clients".into())
        );
        assert_eq!(effective(&loaded, "max_pending").source, Source::Default);
        assert_eq!(effective(&loaded, "data_dir").source, Source::Unset);
    }

    #[test]
    fn flags_after_the_subcommand_count_too() {
        let f = file("max_streams = 3\n");
        let loaded = load_with(&f, &["config", "--max-pending", "5"]).unwrap();
        assert!(matches!(loaded.command, Some(Subcommand::Config)));
        assert_eq!(loaded.settings.max_streams, 3);
        assert_eq!(loaded.settings.max_pending, 5);
        assert_eq!(
            effective(&loaded, "max_pending").source,
            Source::Flag("max-pending".into())
        );
    }

    #[test]
    fn an_unknown_key_is_refused_with_file_line_and_a_suggestion() {
        let f = file("max_clients = 5\n\nack_timeout = 10\n");
        let err = load_with(&f, &[]).unwrap_err().to_string();
        let path = f.path().display().to_string();
        assert!(
            err.starts_with(&format!("{path}:3: unknown key 'ack_timeout'")),
            "{err}"
        );
        assert!(err.contains("did you mean 'ack_timeout_ms'?"), "{err}");
    }

    #[test]
    fn a_bad_value_is_refused_with_file_line_key_and_reason() {
        let path_of = |f: &tempfile::NamedTempFile| f.path().display().to_string();
        let f = file("ack_timeout_ms = \"soon\"\n");
        let err = load_with(&f, &[]).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "{}:1: key 'ack_timeout_ms': invalid value 'soon': invalid digit found in string",
                path_of(&f)
            )
        );
        let f = file("\nduplicate_policy = \"newest\"\n");
        let err = load_with(&f, &[]).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("{}:2: key 'duplicate_policy'", path_of(&f))),
            "{err}"
        );
        assert!(err.contains("'replace' or 'reject'"), "{err}");
        let f = file("log_format = \"xml\"\n");
        let err = load_with(&f, &[]).unwrap_err().to_string();
        assert!(
            err.contains("key 'log_format': invalid value 'xml'"),
            "{err}"
        );
        assert!(err.contains("text, json"), "{err}");
        let f = file("verbose = \"perhaps\"\n");
        let err = load_with(&f, &[]).unwrap_err().to_string();
        assert!(
            err.contains("key 'verbose': invalid value 'perhaps'"),
            "{err}"
        );
    }

    #[test]
    fn a_bad_value_is_refused_even_when_a_flag_overrides_it() {
        let f = file("max_clients = -1\n");
        let err = load_with(&f, &["--max-clients", "3"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("key 'max_clients': invalid value '-1'"),
            "{err}"
        );
    }

    #[test]
    fn rules_between_settings_hold_across_layers() {
        let f = file("tls_cert = \"/etc/relay/cert.pem\"\n");
        let err = load_with(&f, &[]).unwrap_err().to_string();
        assert!(err.contains("--tls-key"), "{err}");
        assert!(err.contains(&f.path().display().to_string()), "{err}");
    }

    #[test]
    fn a_missing_file_is_named() {
        let err = load(["p2p-relay", "--config", "/nonexistent/relay.toml"])
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("cannot read the config file /nonexistent/relay.toml:"),
            "{err}"
        );
    }

    #[test]
    fn a_near_miss_finds_its_key() {
        let cmd = command();
        assert_eq!(
            closest_key(&cmd, "max-clients").as_deref(),
            Some("max_clients")
        );
        assert_eq!(
            closest_key(&cmd, "quic_listn").as_deref(),
            Some("quic_listen")
        );
        assert_eq!(closest_key(&cmd, "colour"), None);
    }
}
