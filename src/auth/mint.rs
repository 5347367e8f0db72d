//! `p2p-relay token`: mints a token for one clientId with the relay's shared secret.

use std::path::Path;
use std::time::{Duration, SystemTime};

use relay_core::auth::token::{mint, TokenClaims};
use relay_core::auth::unix_seconds;
use relay_core::ClientId;

use super::{read_secret, AuthSetupError};

/// The longest `--ttl` the command mints: 366 days. A token cannot be revoked (the relay
/// keeps no list of them): its `exp` is the only thing that ends a leaked one, and the
/// connection it admits lives until then. A year covers a device provisioned once a year;
/// anything longer is a typo (`100000000d`) or a token meant never to expire, which the
/// relay does not offer. Mint a new token instead.
pub const MAX_TTL: Duration = Duration::from_secs(366 * 86_400);

/// Prints a token that a relay started with `--auth token` and the same secret admits.
///
/// The secret is the relay's own `--auth-secret-file` setting (from a flag, the
/// environment or the config file), so a token minted with the relay's configuration is
/// one the relay admits. What the relay would refuse (a `sub` that is no valid clientId)
/// or never match (a `peers` entry that is no valid clientId) is refused here, at once.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct TokenCommand {
    /// The clientId the token is for (1-128 bytes of UTF-8, no control characters).
    #[arg(long, value_name = "ID", value_parser = parse_sub)]
    pub sub: ClientId,

    /// How long the token is valid: seconds, or a number with s, m, h or d (e.g. 90s,
    /// 15m, 1h, 7d); at most 366d.
    #[arg(long, default_value = "1h", value_parser = parse_ttl)]
    pub ttl: Duration,

    /// ClientIds (or prefixes ending in '*') the client may pair with, comma-separated;
    /// without it, anyone.
    #[arg(long, value_delimiter = ',', value_name = "A,B,team-*", value_parser = parse_peer)]
    pub peers: Option<Vec<String>>,
}

impl TokenCommand {
    /// The token, signed now with the secret in `secret_file`.
    pub fn token(&self, secret_file: &Path) -> Result<String, AuthSetupError> {
        let secret = read_secret(secret_file)?;
        let now = unix_seconds(SystemTime::now());
        let claims = TokenClaims {
            sub: self.sub.as_str().to_owned(),
            exp: now.saturating_add(self.ttl.as_secs().max(1)),
            iat: Some(now),
            peers: self.peers.clone(),
        };
        Ok(mint(&secret, &claims))
    }
}

/// `90` (seconds), `90s`, `15m`, `1h`, `7d`, `2w`, or a sum such as `1h 30m` (humantime's
/// syntax), at most [`MAX_TTL`].
pub fn parse_ttl(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    // A bare number is seconds, as it always was here; humantime wants a unit.
    let with_unit = if !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit()) {
        format!("{raw}s")
    } else {
        raw.to_owned()
    };
    let ttl = humantime::parse_duration(&with_unit)
        .map_err(|e| format!("'{raw}' is not a duration ({e}): use e.g. 90s, 15m, 1h or 7d"))?;
    if ttl.is_zero() {
        return Err("the ttl must be more than 0".into());
    }
    if ttl > MAX_TTL {
        return Err(
            "longer than 366d, the longest ttl: a token cannot be revoked (its exp \
                    is what ends a leaked one); mint a new token when it runs out"
                .into(),
        );
    }
    Ok(ttl)
}

/// `--sub`: a clientId the relay would accept, or why not.
pub fn parse_sub(raw: &str) -> Result<ClientId, String> {
    ClientId::new(raw).map_err(|e| format!("{e}: the token's sub is the clientId it admits"))
}

/// One `--peers` entry: a clientId, or a prefix of one ending in `*` (`*` alone: anyone).
pub fn parse_peer(raw: &str) -> Result<String, String> {
    let (id, what) = match raw.strip_suffix('*') {
        Some("") => return Ok(raw.to_owned()),
        Some(prefix) => (prefix, "prefix"),
        None => (raw, "entry"),
    };
    match ClientId::new(id) {
        Ok(_) => Ok(raw.to_owned()),
        Err(e) => Err(format!(
            "peers {what} '{}' matches no clientId: {e}",
            raw.escape_debug()
        )),
    }
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
        assert_eq!(parse_ttl("2w").unwrap(), Duration::from_secs(14 * 86_400));
        assert_eq!(parse_ttl("1h 30m").unwrap(), Duration::from_secs(5400));
        let unknown = parse_ttl("1x").unwrap_err();
        assert!(unknown.contains("unknown time unit"), "{unknown}");
        assert!(unknown.contains("use e.g. 90s, 15m, 1h or 7d"), "{unknown}");
        assert!(parse_ttl("h").is_err());
        assert!(parse_ttl("0s").is_err());
        assert_eq!(parse_ttl("366d").unwrap(), MAX_TTL);
        let refused = parse_ttl("367d").unwrap_err();
        assert!(
            refused.starts_with("longer than 366d, the longest ttl"),
            "{refused}"
        );
        assert!(parse_ttl("100000000d").is_err());
        assert!(parse_ttl("18446744073709551615d").is_err());
    }

    #[test]
    fn subs_and_peers_are_clientids() {
        assert_eq!(parse_sub("A").unwrap().as_str(), "A");
        assert_eq!(
            parse_sub("").unwrap_err(),
            "clientId must not be empty: the token's sub is the clientId it admits"
        );
        assert!(parse_sub(&"x".repeat(129))
            .unwrap_err()
            .contains("clientId is 129 bytes long; the limit is 128"));
        assert!(parse_sub("a\nb").is_err());
        assert_eq!(parse_peer("B").unwrap(), "B");
        assert_eq!(parse_peer("team-*").unwrap(), "team-*");
        assert_eq!(parse_peer("*").unwrap(), "*");
        assert_eq!(
            parse_peer("").unwrap_err(),
            "peers entry '' matches no clientId: clientId must not be empty"
        );
        assert!(parse_peer(&format!("{}*", "p".repeat(129)))
            .unwrap_err()
            .starts_with("peers prefix"));
    }
}
