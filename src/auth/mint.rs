//! `p2p-relay token`: mints a token for one clientId with the relay's shared secret.

use std::path::Path;
use std::time::{Duration, SystemTime};

use relay_core::auth::token::{mint, TokenClaims};
use relay_core::auth::unix_seconds;

use super::{read_secret, AuthSetupError};

/// Prints a token that a relay started with `--auth token` and the same secret admits.
///
/// The secret is the relay's own `--auth-secret-file` setting (from a flag, the
/// environment or the config file), so a token minted with the relay's configuration is
/// one the relay admits.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct TokenCommand {
    /// The clientId the token is for.
    #[arg(long, value_name = "ID")]
    pub sub: String,

    /// How long the token is valid: seconds, or a number with s, m, h or d (e.g. 90s,
    /// 15m, 1h, 7d).
    #[arg(long, default_value = "1h", value_parser = parse_ttl)]
    pub ttl: Duration,

    /// ClientIds (or prefixes ending in '*') the client may pair with, comma-separated;
    /// without it, anyone.
    #[arg(long, value_delimiter = ',', value_name = "A,B,team-*")]
    pub peers: Option<Vec<String>>,
}

impl TokenCommand {
    /// The token, signed now with the secret in `secret_file`.
    pub fn token(&self, secret_file: &Path) -> Result<String, AuthSetupError> {
        let secret = read_secret(secret_file)?;
        let now = unix_seconds(SystemTime::now());
        let claims = TokenClaims {
            sub: self.sub.clone(),
            exp: now.saturating_add(self.ttl.as_secs().max(1)),
            iat: Some(now),
            peers: self.peers.clone(),
        };
        Ok(mint(&secret, &claims))
    }
}

/// `90`, `90s`, `15m`, `1h`, `7d`.
pub fn parse_ttl(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    let (digits, unit) = match raw.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => raw.split_at(at),
        None => (raw, "s"),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("'{raw}' is not a duration: use e.g. 90s, 15m, 1h or 7d"))?;
    let unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        other => {
            return Err(format!(
                "unknown unit '{other}' in '{raw}': use s, m, h or d"
            ))
        }
    };
    if n == 0 {
        return Err("the ttl must be more than 0".into());
    }
    Ok(Duration::from_secs(n.saturating_mul(unit)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls() {
        assert_eq!(parse_ttl("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_ttl("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_ttl("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_ttl("7d").unwrap(), Duration::from_secs(7 * 86_400));
        assert!(parse_ttl("1w").unwrap_err().contains("unknown unit"));
        assert!(parse_ttl("h").is_err());
        assert!(parse_ttl("0s").is_err());
    }
}
