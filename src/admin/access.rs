//! Who may use the admin listener.
//!
//! On a loopback address only this machine's users can reach it, so it may be open. On any
//! other address it shows who is connected and lets anyone scrape it, so the relay refuses
//! to start without an admin token; requests then carry `Authorization: Bearer TOKEN` (or
//! HTTP Basic with the token as password, which a browser asks for by itself). A token
//! that is configured is required on loopback too. The probes (`/healthz`, `/readyz`)
//! stay open: they tell nothing about the clients, and probes rarely carry credentials.
//!
//! Loopback alone does not keep web pages out: a page of any site can make its own name
//! resolve to 127.0.0.1 (DNS rebinding) and then read and act on the listener as its
//! own origin. Such a request still carries the page's name in its `Host` header, so an
//! open listener answers only requests naming a loopback host (`localhost`,
//! `*.localhost`, `127.x.x.x`, `[::1]`) or one of `--admin-hosts`. With a token, a page
//! has nothing to present, so any `Host` is let in.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use base64::Engine;
use subtle::ConstantTimeEq;

use super::AdminSettings;

/// Why the admin listener cannot start as configured.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error(
        "the admin listener on {addr} would be reachable from other machines without a token: \
         give one with --admin-token-file FILE (or P2P_RELAY_ADMIN_TOKEN), or listen on a \
         loopback address such as 127.0.0.1"
    )]
    TokenRequired { addr: SocketAddr },
    #[error("cannot read the admin token file {}: {source}", path.display())]
    TokenFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the admin token {} is empty: put the token on its first line", origin)]
    EmptyToken { origin: String },
    #[error(
        "the admin token {origin} has {len} characters; it needs at least {MIN_TOKEN_CHARS} \
         (make one with: head -c 32 /dev/urandom | base64 > FILE)"
    )]
    ShortToken { origin: String, len: usize },
}

/// The shortest admin token taken: one that can be guessed over the network is no guard.
pub const MIN_TOKEN_CHARS: usize = 16;

/// What a request needs to be let in.
#[derive(Clone)]
pub enum Access {
    /// Anyone who can reach the listener (loopback only), naming one of these hosts.
    Open(Hosts),
    Token(Token),
}

/// The `Host` names an open admin listener answers: loopback ones, and those configured.
#[derive(Debug, Clone, Default)]
pub struct Hosts {
    /// Lowercase, without a port or a trailing dot.
    also: Vec<String>,
}

impl Hosts {
    /// Loopback names and `also` (each without a port; case does not matter).
    pub fn new<S: AsRef<str>>(also: impl IntoIterator<Item = S>) -> Self {
        Self {
            also: also
                .into_iter()
                .map(|name| normalized(name.as_ref()))
                .filter(|name| !name.is_empty())
                .collect(),
        }
    }

    /// Whether a request with this `Host` header (or HTTP/2 authority) may pass. A
    /// request without one passes: every browser sends one, so it is not a web page's.
    pub fn allows(&self, host: Option<&str>) -> bool {
        let Some(host) = host else {
            return true;
        };
        // The URI authority grammar, as the http crate parses it: `name`, `name:port`,
        // `[v6]:port`. Anything else is no host name at all.
        let Ok(authority) = host.trim().parse::<axum::http::uri::Authority>() else {
            return false;
        };
        if authority.as_str().contains('@') {
            return false;
        }
        let name = normalized(authority.host());
        is_loopback_name(&name) || self.also.contains(&name)
    }
}

fn normalized(name: &str) -> String {
    name.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// `localhost` and its subdomains (RFC 6761 has them resolve to loopback), and literal
/// loopback addresses.
fn is_loopback_name(name: &str) -> bool {
    if name == "localhost" || name.ends_with(".localhost") {
        return true;
    }
    let literal = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name);
    literal
        .parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// The admin token. Its `Debug` never shows it.
#[derive(Clone)]
pub struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(********)")
    }
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Access::Open(hosts) => write!(f, "Open({hosts:?})"),
            Access::Token(t) => t.fmt(f),
        }
    }
}

impl Access {
    /// The access rule for `settings`: a token when one is configured, open on loopback,
    /// refused otherwise.
    pub fn from_settings(settings: &AdminSettings) -> Result<Self, AccessError> {
        let token = match (&settings.admin_token, &settings.admin_token_file) {
            (Some(token), _) => Some(Token::new(token, "given in --admin-token")?),
            (None, Some(path)) => Some(Token::from_file(path)?),
            (None, None) => None,
        };
        Ok(match Self::for_listener(settings.admin_listen, token)? {
            Access::Open(_) => Access::Open(Hosts::new(&settings.admin_hosts)),
            access => access,
        })
    }

    /// Open to loopback host names only.
    pub fn open() -> Self {
        Access::Open(Hosts::default())
    }

    pub fn for_listener(addr: SocketAddr, token: Option<Token>) -> Result<Self, AccessError> {
        match token {
            Some(token) => Ok(Access::Token(token)),
            None if addr.ip().is_loopback() => Ok(Access::open()),
            None => Err(AccessError::TokenRequired { addr }),
        }
    }

    /// Whether a request naming this `Host` may pass (see [`Hosts::allows`]): any, with a
    /// token.
    pub fn allows_host(&self, host: Option<&str>) -> bool {
        match self {
            Access::Open(hosts) => hosts.allows(host),
            Access::Token(_) => true,
        }
    }

    /// Whether a request with this `Authorization` header may pass.
    pub fn allows(&self, authorization: Option<&str>) -> bool {
        match self {
            Access::Open(_) => true,
            Access::Token(token) => authorization
                .and_then(presented_token)
                .is_some_and(|presented| token.matches(&presented)),
        }
    }
}

impl Token {
    pub fn new(token: &str, origin: &str) -> Result<Self, AccessError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(AccessError::EmptyToken {
                origin: origin.to_owned(),
            });
        }
        let len = token.chars().count();
        if len < MIN_TOKEN_CHARS {
            return Err(AccessError::ShortToken {
                origin: origin.to_owned(),
                len,
            });
        }
        Ok(Self(token.to_owned()))
    }

    /// The first line of `path`, without surrounding whitespace.
    pub fn from_file(path: &Path) -> Result<Self, AccessError> {
        let text = std::fs::read_to_string(path).map_err(|source| AccessError::TokenFile {
            path: path.to_path_buf(),
            source,
        })?;
        let first = text.lines().next().unwrap_or_default();
        Self::new(first, &format!("in {}", path.display()))
    }

    /// Compares in constant time, so the answer's timing tells nothing about the token.
    fn matches(&self, presented: &str) -> bool {
        self.0.as_bytes().ct_eq(presented.as_bytes()).into()
    }
}

/// The token of a `Bearer` header, or the password of a `Basic` one.
fn presented_token(header: &str) -> Option<String> {
    let (scheme, rest) = header.trim().split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        Some(rest.to_owned())
    } else if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        decoded
            .split_once(':')
            .map(|(_, password)| password.to_owned())
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(t: &str) -> Token {
        Token::new(t, "test").unwrap()
    }

    #[test]
    fn loopback_may_be_open_and_nothing_else_may() {
        for addr in ["127.0.0.1:9002", "127.0.0.2:0", "[::1]:9002"] {
            let access = Access::for_listener(addr.parse().unwrap(), None).unwrap();
            assert!(access.allows(None), "{addr}");
        }
        for addr in ["0.0.0.0:9002", "192.0.2.7:9002", "[::]:9002"] {
            let err = Access::for_listener(addr.parse().unwrap(), None).unwrap_err();
            assert!(err.to_string().contains("--admin-token-file"), "{err}");
        }
        let access = Access::for_listener(
            "0.0.0.0:9002".parse().unwrap(),
            Some(token("0123456789abcdef")),
        );
        assert!(!access.unwrap().allows(None));
    }

    #[test]
    fn a_token_is_taken_as_bearer_or_basic_password() {
        let access = Access::Token(token("s3cret-s3cret-s3cret"));
        assert!(access.allows(Some("Bearer s3cret-s3cret-s3cret")));
        assert!(access.allows(Some("bearer  s3cret-s3cret-s3cret ")));
        let basic = base64::engine::general_purpose::STANDARD.encode("admin:s3cret-s3cret-s3cret");
        assert!(access.allows(Some(&format!("Basic {basic}"))));
        assert!(!access.allows(Some("Bearer s3cret-s3cret-s3cre")));
        assert!(!access.allows(Some("Bearer s3cret-s3cret-s3cret2")));
        assert!(!access.allows(Some("s3cret-s3cret-s3cret")));
        assert!(!access.allows(None));
    }

    #[test]
    fn the_token_file_gives_its_first_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "  abcdefghijklmnop \nignored\n").unwrap();
        let access = Access::for_listener(
            "0.0.0.0:1".parse().unwrap(),
            Some(Token::from_file(&path).unwrap()),
        )
        .unwrap();
        assert!(access.allows(Some("Bearer abcdefghijklmnop")));
        std::fs::write(&path, "abcdefghijklmno\n").unwrap();
        let err = Token::from_file(&path).unwrap_err().to_string();
        assert!(
            err.contains("has 15 characters; it needs at least 16"),
            "{err}"
        );
        std::fs::write(&path, "\n").unwrap();
        let err = Token::from_file(&path).unwrap_err().to_string();
        assert!(err.contains("is empty"), "{err}");
        let err = Token::from_file(&dir.path().join("missing"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("cannot read the admin token file"), "{err}");
    }

    #[test]
    fn an_open_listener_answers_loopback_and_configured_hosts_only() {
        let access = Access::Open(Hosts::new(["Relay.Example.", "tunnel"]));
        for host in [
            "localhost",
            "LOCALHOST:9002",
            "localhost.:9002",
            "admin.localhost:1",
            "127.0.0.1",
            "127.1.2.3:9002",
            "[::1]:9002",
            "[::1]",
            "relay.example:9002",
            "tunnel",
        ] {
            assert!(access.allows_host(Some(host)), "{host}");
        }
        for host in [
            "evil.example:9002",
            "localhost.evil.example",
            "evillocalhost",
            "127.0.0.1.evil.example",
            "10.0.0.1:9002",
            "[::2]:9002",
            "0.0.0.0",
            "user@localhost",
            "",
            "local host",
            "relay.example.evil",
        ] {
            assert!(!access.allows_host(Some(host)), "{host}");
        }
        assert!(access.allows_host(None), "no Host: not a browser");
        assert!(!Access::open().allows_host(Some("tunnel")));
        assert!(Access::Token(token("s3cret-s3cret-s3cret")).allows_host(Some("evil.example:9002")));
    }

    #[test]
    fn debug_never_shows_the_token() {
        let shown = format!("{:?}", Access::Token(token("s3cret-s3cret-s3cret")));
        assert!(!shown.contains("s3cret"), "{shown}");
    }
}
