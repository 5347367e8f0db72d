//! `p2p-relay config`: the effective configuration as a TOML file that could be used as
//! it is, each value followed by where it came from, secrets masked.

use std::fmt::Write;

use super::layers::{Effective, Loaded};
use super::secret::MASK;

/// Renders the report.
pub fn render(loaded: &Loaded) -> String {
    let mut out = String::new();
    out.push_str("# p2p-relay: the effective configuration and where each value came from\n");
    out.push_str("# precedence: default < config file < environment (P2P_RELAY_...) < flag\n");
    match &loaded.file {
        Some((path, source)) => {
            let _ = writeln!(out, "# config file: {} ({source})", path.display());
        }
        None => out.push_str("# config file: none (give one with --config or P2P_RELAY_CONFIG)\n"),
    }
    let lines: Vec<(String, String)> = loaded
        .effective
        .iter()
        .map(|e| (line_of(e), e.source.to_string()))
        .collect();
    let width = lines
        .iter()
        .map(|(l, _)| l.len())
        .max()
        .unwrap_or(0)
        .min(48);
    for (line, source) in lines {
        let _ = writeln!(out, "{line:<width$}  # {source}");
    }
    out
}

/// `key = value`, or a commented-out key for a setting that has no value.
fn line_of(e: &Effective) -> String {
    match &e.value {
        None => format!("# {} =", e.key),
        Some(_) if e.secret => format!("{} = \"{MASK}\"", e.key),
        Some(value) => format!("{} = {}", e.key, toml_value(value, e.switch)),
    }
}

/// A value as TOML: switches and plain decimal numbers bare, everything else a string.
fn toml_value(value: &str, switch: bool) -> String {
    let number = !value.is_empty()
        && value.bytes().all(|b| b.is_ascii_digit())
        && (value == "0" || !value.starts_with('0'))
        && value.parse::<i64>().is_ok();
    if (switch && (value == "true" || value == "false")) || number {
        value.to_owned()
    } else {
        toml::Value::String(value.to_owned()).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_toml() {
        assert_eq!(toml_value("30000", false), "30000");
        assert_eq!(toml_value("0", false), "0");
        assert_eq!(toml_value("007", false), "\"007\"");
        assert_eq!(toml_value("true", true), "true");
        assert_eq!(toml_value("127.0.0.1:9000", false), "\"127.0.0.1:9000\"");
        let quoted = toml_value("a\"b'c", false);
        let parsed: toml::Table = toml::from_str(&format!("k = {quoted}")).unwrap();
        assert_eq!(parsed["k"].as_str(), Some("a\"b'c"));
    }
}
