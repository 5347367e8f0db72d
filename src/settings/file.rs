//! The config file: a flat TOML table whose keys are the settings' names (the flags
//! without their dashes, in snake_case: `ack_timeout_ms = 5000`).
//!
//! Values are turned into the text a flag would carry, so that the command line's own
//! parser (clap's) reads them: one parser per setting, whichever layer a value comes from.

use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};

use super::ConfigError;

/// One `key = value` of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    /// The value as a flag's argument: strings as they are, numbers in decimal, booleans
    /// as `true`/`false`, arrays joined with commas.
    pub value: String,
    /// Where the key stands (1-based), for error messages.
    pub line: usize,
}

#[derive(Debug, Clone)]
pub struct ConfigFile {
    pub path: PathBuf,
    pub entries: Vec<Entry>,
}

impl ConfigFile {
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Parses `text` as the file at `path` (named in errors).
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let path = path.to_path_buf();
        let table = DeTable::parse(text).map_err(|e| {
            let (line, column) = e
                .span()
                .map(|span| line_col(text, span.start))
                .unwrap_or((1, 1));
            ConfigError::Syntax {
                path: path.clone(),
                line,
                column,
                message: e.message().trim().to_owned(),
            }
        })?;
        let mut entries = Vec::new();
        for (key, value) in table.get_ref() {
            let line = line_col(text, key.span().start).0;
            let key = key.get_ref().to_string();
            let value = flag_text(value.get_ref()).map_err(|reason| ConfigError::BadValue {
                path: path.clone(),
                line,
                key: key.clone(),
                reason,
            })?;
            entries.push(Entry { key, value, line });
        }
        // The parser keeps keys sorted; errors and sources read better in file order.
        entries.sort_by_key(|e| e.line);
        Ok(Self { path, entries })
    }
}

/// The text a flag would carry for a TOML value.
fn flag_text(value: &DeValue<'_>) -> Result<String, String> {
    Ok(match value {
        DeValue::String(s) => s.to_string(),
        DeValue::Integer(i) => match i.radix() {
            10 => i.as_str().to_owned(),
            radix => u64::from_str_radix(i.as_str(), radix)
                .map_err(|e| format!("integer {}: {e}", i.as_str()))?
                .to_string(),
        },
        DeValue::Float(f) => f.as_str().to_owned(),
        DeValue::Boolean(b) => b.to_string(),
        DeValue::Array(items) => items
            .iter()
            .map(|item| match item.get_ref() {
                DeValue::Array(_) | DeValue::Table(_) => {
                    Err("a list may hold only plain values".to_owned())
                }
                other => flag_text(other),
            })
            .collect::<Result<Vec<_>, _>>()?
            .join(","),
        DeValue::Datetime(_) => return Err("a date is not a value of any setting".to_owned()),
        DeValue::Table(_) => {
            return Err(
                "settings are plain `key = value` lines: the file has no sections".to_owned(),
            )
        }
    })
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ConfigFile, ConfigError> {
        ConfigFile::parse(Path::new("relay.toml"), text)
    }

    #[test]
    fn values_become_flag_text_with_their_lines() {
        let file = parse(
            "# a comment\nsocketio_listen = \"0.0.0.0:9000\"\nack_timeout_ms = 5_000\n\
             verbose = true\nmask = 0x10\ncors_origins = [\"http://a\", \"http://b\"]\n",
        )
        .unwrap();
        let got: Vec<(&str, &str, usize)> = file
            .entries
            .iter()
            .map(|e| (e.key.as_str(), e.value.as_str(), e.line))
            .collect();
        assert_eq!(
            got,
            [
                ("socketio_listen", "0.0.0.0:9000", 2),
                ("ack_timeout_ms", "5000", 3),
                ("verbose", "true", 4),
                ("mask", "16", 5),
                ("cors_origins", "http://a,http://b", 6),
            ]
        );
    }

    #[test]
    fn syntax_errors_name_the_file_line_and_column() {
        let err = parse("ack_timeout_ms = 5\nmax_clients 10\n").unwrap_err();
        let message = err.to_string();
        assert!(message.starts_with("relay.toml:2:"), "{message}");
        assert!(message.contains("not valid TOML"), "{message}");
        assert!(!message.contains('\n'), "one line: {message}");
    }

    #[test]
    fn sections_are_refused_with_the_reason() {
        let err = parse("\n[admin]\nlisten = 1\n").unwrap_err().to_string();
        assert!(err.starts_with("relay.toml:2: key 'admin'"), "{err}");
        assert!(err.contains("no sections"), "{err}");
    }
}
