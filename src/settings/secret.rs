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
}
