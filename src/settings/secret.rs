//! Which settings are secrets, so that `p2p-relay config` never prints them.

use clap::Arg;

/// Words that make a setting a secret, unless it only names where the secret is kept.
const SECRET_WORDS: &[&str] = &["token", "secret", "password", "credential"];
const LOCATION_SUFFIXES: &[&str] = &["_file", "_dir", "_path"];

/// A secret is an argument whose value `--help` hides (`hide_env_values`), or whose name
/// says it is one (`admin_token`, `jwt_secret`), but not a path to one
/// (`admin_token_file`). The name rule catches settings added without the attribute.
pub fn is_secret(arg: &Arg) -> bool {
    let id = arg.get_id().as_str();
    let named = SECRET_WORDS.iter().any(|w| id.contains(w))
        && !LOCATION_SUFFIXES.iter().any(|s| id.ends_with(s));
    arg.is_hide_env_values_set() || named
}

/// What is printed instead of a secret's value.
pub const MASK: &str = "********";

/// A shared secret (the HS256 token secret, the cluster secret) shorter than this is
/// refused: 16 bytes of a random hex string are 64 bits, about what an offline search
/// of a captured token's signature still finds hard; anything shorter is a password.
pub const MIN_SECRET_BYTES: usize = 16;

/// Below this a secret is taken with a warning: HMAC-SHA256 keys should be as long as
/// its output (RFC 7518 section 3.2 requires 256 bits for HS256).
pub const GOOD_SECRET_BYTES: usize = 32;

/// A secret file whose secret is too short to be used.
#[derive(Debug, thiserror::Error)]
#[error(
    "the {what} in {} has {len} bytes, fewer than {MIN_SECRET_BYTES}: put a long random \
     secret in it (e.g. `openssl rand -hex 32 > {}`)",
    path.display(),
    path.display()
)]
pub struct ShortSecret {
    pub what: &'static str,
    pub path: std::path::PathBuf,
    pub len: usize,
}

/// Checks a secret read from `path` (already without surrounding whitespace): refused
/// below [`MIN_SECRET_BYTES`], a warning below [`GOOD_SECRET_BYTES`], and a warning when
/// the file is readable by every user of the machine.
pub fn check_secret_file(
    what: &'static str,
    path: &std::path::Path,
    secret: &[u8],
) -> Result<(), ShortSecret> {
    if secret.len() < MIN_SECRET_BYTES {
        return Err(ShortSecret {
            what,
            path: path.to_path_buf(),
            len: secret.len(),
        });
    }
    if secret.len() < GOOD_SECRET_BYTES {
        tracing::warn!(
            "the {what} in {} has {} bytes; use at least {GOOD_SECRET_BYTES} (e.g. `openssl \
             rand -hex 32`)",
            path.display(),
            secret.len()
        );
    }
    if world_readable(path) {
        tracing::warn!(
            "the {what} file {} is readable by every user of this machine: `chmod 600 {}`",
            path.display(),
            path.display()
        );
    }
    Ok(())
}

#[cfg(unix)]
fn world_readable(path: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o004 != 0)
}

#[cfg(not(unix))]
fn world_readable(_: &std::path::Path) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_secrets_and_their_files_are_not() {
        assert!(is_secret(&Arg::new("admin_token")));
        assert!(is_secret(&Arg::new("jwt_secret")));
        assert!(is_secret(&Arg::new("x").hide_env_values(true)));
        assert!(!is_secret(&Arg::new("admin_token_file")));
        assert!(!is_secret(&Arg::new("max_clients")));
    }

    #[test]
    fn a_short_secret_is_refused_and_a_long_one_taken() {
        let path = std::path::Path::new("/nonexistent/secret");
        let err = check_secret_file("auth secret", path, b"abc").unwrap_err();
        assert_eq!(err.len, 3);
        assert!(err.to_string().contains("3 bytes, fewer than 16"), "{err}");
        assert!(check_secret_file("auth secret", path, &[b'x'; MIN_SECRET_BYTES]).is_ok());
        assert!(check_secret_file("auth secret", path, &[b'x'; GOOD_SECRET_BYTES]).is_ok());
    }

    #[cfg(unix)]
    #[test]
    fn world_readable_is_the_other_bit() {
        use std::os::unix::fs::PermissionsExt;
        let file = tempfile::NamedTempFile::new().unwrap();
        for (mode, open) in [(0o600, false), (0o640, false), (0o604, true), (0o644, true)] {
            std::fs::set_permissions(file.path(), std::fs::Permissions::from_mode(mode)).unwrap();
            assert_eq!(world_readable(file.path()), open, "{mode:o}");
        }
    }
}
