//! Which web pages may connect: CORS for the Socket.IO path, and refusal of origins the
//! operator did not allow.
//!
//! Browsers only let a page read a cross-origin long-polling response when the server grants
//! it. socket.io 2 (the Node server this relay replaces) granted every origin by default:
//! it echoed the request's `Origin` with `Access-Control-Allow-Credentials: true`, because
//! engine.io-client 3.x (socket.io-client 2.x) sends its XHR polls with
//! `withCredentials = true` and browsers reject a bare `*` for those. This module does the
//! same by default, with tower-http's `CorsLayer`, and answers preflights by mirroring the
//! requested headers (4.x clients send custom ones only when the app sets `extraHeaders`;
//! 3.x sends `Content-Type: application/octet-stream` for binary posts).
//!
//! CORS only decides what a page may *read*; it does not stop a websocket upgrade, which a
//! browser sends with an `Origin` header but without asking anyone. So when the operator
//! restricts the origins, a Socket.IO request whose `Origin` is not in the list is refused
//! with 403, whatever its transport. Requests without an `Origin` (Node clients, native
//! tools) are not from a page and pass.
//!
//! Only requests under the Socket.IO path are touched: an app that embeds the gateway keeps
//! its own routes (and its own CORS rules) as they were.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::header::{self, HeaderValue};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower::{Layer as _, ServiceExt as _};
use tower_http::cors::{AllowCredentials, AllowHeaders, AllowOrigin, CorsLayer};

/// The command-line spelling of the setting, named in errors so the fix is one search away.
const SETTING: &str = "--cors-origins (env P2P_RELAY_CORS_ORIGINS)";

/// How long a browser may reuse a preflight answer. socket.io-client 2.x preflights every
/// binary POST; Chromium caps this at 2 hours anyway.
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(2 * 60 * 60);

/// Longest origin quoted back in a refusal or a log line; an `Origin` header can be long.
const QUOTED_ORIGIN_MAX: usize = 200;

/// The web origins allowed to connect: any (socket.io 2's default), or exactly these.
///
/// Parsed from `*` or a comma-separated list of origins (`scheme://host[:port]`), such as
/// `http://127.0.0.1:8800,https://app.example.com`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum CorsOrigins {
    #[default]
    Any,
    Only(OriginList),
}

/// A validated, non-empty list of origins in the form browsers send them (lowercase,
/// without a default port). Only parsing makes one, so every entry can match a real
/// `Origin` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginList(Vec<String>);

impl OriginList {
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }
}

/// Why a `--cors-origins` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CorsOriginsError {
    #[error(
        "no origin given: use '*' for any origin, or a comma-separated list such as \
         'http://127.0.0.1:8800,https://app.example.com'"
    )]
    Empty,
    #[error("entry {position} of the origin list is empty (a stray comma?)")]
    EmptyEntry { position: usize },
    #[error(
        "'*' allows any origin and cannot be combined with other entries: give either '*' \
         or a list of origins"
    )]
    WildcardInList,
    #[error("'{entry}' is not an origin: {problem}; write it as scheme://host[:port], such as 'https://app.example.com'")]
    NotAnOrigin {
        entry: String,
        problem: OriginProblem,
    },
}

/// What is wrong with one entry of the origin list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OriginProblem {
    #[error("it has no scheme such as 'http://'")]
    MissingScheme,
    #[error("'{0}' is not a valid scheme")]
    BadScheme(String),
    #[error("it goes on after the host and port ('{0}'); an origin has no path, query or fragment, not even a trailing '/'")]
    HasPath(String),
    #[error("it names a user ('...@'); an origin has none")]
    HasUserInfo,
    #[error("it has no host")]
    MissingHost,
    #[error("its host or port is not valid")]
    BadAuthority,
}

impl CorsOrigins {
    /// Whether a request with this `Origin` header may connect.
    pub fn allows(&self, origin: &HeaderValue) -> bool {
        match self {
            CorsOrigins::Any => true,
            CorsOrigins::Only(list) => list
                .iter()
                .any(|allowed| allowed.as_bytes().eq_ignore_ascii_case(origin.as_bytes())),
        }
    }
}

impl FromStr for CorsOrigins {
    type Err = CorsOriginsError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        if value.trim().is_empty() {
            return Err(CorsOriginsError::Empty);
        }
        let entries: Vec<&str> = value.split(',').map(str::trim).collect();
        if entries == ["*"] {
            return Ok(CorsOrigins::Any);
        }
        let mut origins: Vec<String> = Vec::with_capacity(entries.len());
        for (index, entry) in entries.into_iter().enumerate() {
            match entry {
                "" => {
                    return Err(CorsOriginsError::EmptyEntry {
                        position: index + 1,
                    })
                }
                "*" => return Err(CorsOriginsError::WildcardInList),
                _ => {}
            }
            let origin = normalize(entry).map_err(|problem| CorsOriginsError::NotAnOrigin {
                entry: entry.to_string(),
                problem,
            })?;
            if !origins.contains(&origin) {
                origins.push(origin);
            }
        }
        Ok(CorsOrigins::Only(OriginList(origins)))
    }
}

impl fmt::Display for CorsOrigins {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CorsOrigins::Any => f.write_str("*"),
            CorsOrigins::Only(list) => f.write_str(&list.0.join(",")),
        }
    }
}

/// One origin in the form browsers serialize it (RFC 6454): lowercase scheme and host, the
/// port only when it is not the scheme's default. Comparing against that form means an
/// operator's `https://App.example.com:443` still matches what the browser sends.
fn normalize(entry: &str) -> Result<String, OriginProblem> {
    let (scheme, rest) = entry
        .split_once("://")
        .ok_or(OriginProblem::MissingScheme)?;
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !scheme_ok {
        return Err(OriginProblem::BadScheme(scheme.to_string()));
    }
    let scheme = scheme.to_ascii_lowercase();
    if let Some(at) = rest.find(['/', '?', '#']) {
        return Err(OriginProblem::HasPath(rest[at..].to_string()));
    }
    if rest.contains('@') {
        return Err(OriginProblem::HasUserInfo);
    }
    if rest.is_empty() || rest.starts_with(':') {
        return Err(OriginProblem::MissingHost);
    }
    let authority: axum::http::uri::Authority =
        rest.parse().map_err(|_| OriginProblem::BadAuthority)?;
    let host = authority.host().to_ascii_lowercase();
    if host.is_empty() || host == "[]" {
        return Err(OriginProblem::MissingHost);
    }
    let port = authority.port().map(|port| port.as_u16());
    // `Authority` accepts a trailing ':' with no digits; an origin does not.
    if port.is_none() && rest.len() != authority.host().len() {
        return Err(OriginProblem::BadAuthority);
    }
    let default_port = match scheme.as_str() {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    };
    Ok(match port {
        Some(port) if Some(port) != default_port => format!("{scheme}://{host}:{port}"),
        _ => format!("{scheme}://{host}"),
    })
}

/// The gateway's CORS rule, built once from the configuration and applied per request by
/// [`apply`].
#[derive(Clone)]
pub(crate) struct Policy {
    origins: Arc<CorsOrigins>,
    layer: CorsLayer,
}

impl Policy {
    pub(crate) fn new(origins: CorsOrigins) -> Self {
        let origins = Arc::new(origins);
        let grant = {
            let origins = origins.clone();
            move |origin: &HeaderValue| origins.allows(origin)
        };
        let credentials = grant.clone();
        let layer = CorsLayer::new()
            // The request's own origin, never `*`: socket.io-client 2.x polls with
            // credentials, and browsers refuse `*` for those.
            .allow_origin(AllowOrigin::predicate(move |origin, _| grant(origin)))
            .allow_credentials(AllowCredentials::predicate(move |origin, _| {
                credentials(origin)
            }))
            .allow_methods([Method::GET, Method::POST])
            .allow_headers(AllowHeaders::mirror_request())
            .max_age(PREFLIGHT_MAX_AGE);
        Self { origins, layer }
    }
}

/// The axum middleware: refuses Socket.IO requests from origins that are not allowed, and
/// adds CORS to the rest. Requests outside the Socket.IO path pass through untouched.
pub(crate) async fn apply(State(policy): State<Policy>, request: Request, next: Next) -> Response {
    if !crate::is_socket_io_path(request.uri().path()) {
        return next.run(request).await;
    }
    if let Some(origin) = request.headers().get(header::ORIGIN) {
        if !policy.origins.allows(origin) {
            return refuse(origin, &policy.origins);
        }
    }
    match policy.layer.layer(next).oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

/// 403 with a message a developer looking at the network panel can act on.
fn refuse(origin: &HeaderValue, allowed: &CorsOrigins) -> Response {
    let origin = quote(origin);
    tracing::warn!(
        %origin,
        %allowed,
        "refused a Socket.IO request from an origin that is not in {SETTING}"
    );
    let message = format!(
        "origin '{origin}' is not allowed to connect to this relay; its operator can allow \
         it with {SETTING}\n"
    );
    (
        StatusCode::FORBIDDEN,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        message,
    )
        .into_response()
}

/// The origin as text, cut short when it is long (it comes from the client).
fn quote(origin: &HeaderValue) -> String {
    let text = String::from_utf8_lossy(origin.as_bytes());
    match text.char_indices().nth(QUOTED_ORIGIN_MAX) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn only(list: &[&str]) -> CorsOrigins {
        CorsOrigins::Only(OriginList(list.iter().map(|s| s.to_string()).collect()))
    }

    fn problem(value: &str) -> OriginProblem {
        match value.parse::<CorsOrigins>() {
            Err(CorsOriginsError::NotAnOrigin { problem, .. }) => problem,
            other => panic!("expected {value:?} to be refused as not an origin, got {other:?}"),
        }
    }

    #[test]
    fn star_is_any_origin_and_the_default() {
        assert_eq!("*".parse(), Ok(CorsOrigins::Any));
        assert_eq!(" * ".parse(), Ok(CorsOrigins::Any));
        assert_eq!(CorsOrigins::default(), CorsOrigins::Any);
        assert!(CorsOrigins::Any.allows(&HeaderValue::from_static("null")));
    }

    #[test]
    fn a_list_keeps_its_origins_in_browser_form() {
        let parsed: CorsOrigins =
            "http://127.0.0.1:8800, HTTPS://App.Example.com:443,http://a.example:80,\
             http://[::1]:3000,capacitor://localhost,http://127.0.0.1:8800"
                .parse()
                .unwrap();
        assert_eq!(
            parsed,
            only(&[
                "http://127.0.0.1:8800",
                "https://app.example.com",
                "http://a.example",
                "http://[::1]:3000",
                "capacitor://localhost",
            ])
        );
        assert_eq!(
            parsed.to_string(),
            "http://127.0.0.1:8800,https://app.example.com,http://a.example,\
             http://[::1]:3000,capacitor://localhost"
        );
        assert_eq!(parsed.to_string().parse(), Ok(parsed));
    }

    #[test]
    fn a_list_allows_exactly_its_origins() {
        let origins: CorsOrigins = "http://a.example,https://b.example:8443".parse().unwrap();
        for allowed in [
            "http://a.example",
            "https://b.example:8443",
            "HTTP://A.EXAMPLE",
        ] {
            assert!(
                origins.allows(&HeaderValue::from_static(allowed)),
                "{allowed}"
            );
        }
        for refused in [
            "http://b.example",
            "https://a.example",
            "http://a.example:8080",
            "https://b.example",
            "http://a.example.evil.example",
            "null",
            "",
        ] {
            assert!(
                !origins.allows(&HeaderValue::from_static(refused)),
                "{refused}"
            );
        }
    }

    #[test]
    fn empty_values_and_entries_are_refused() {
        assert_eq!("".parse::<CorsOrigins>(), Err(CorsOriginsError::Empty));
        assert_eq!("  ".parse::<CorsOrigins>(), Err(CorsOriginsError::Empty));
        assert_eq!(
            "http://a.example,".parse::<CorsOrigins>(),
            Err(CorsOriginsError::EmptyEntry { position: 2 })
        );
        assert_eq!(
            "http://a.example,,http://b.example".parse::<CorsOrigins>(),
            Err(CorsOriginsError::EmptyEntry { position: 2 })
        );
    }

    #[test]
    fn star_cannot_join_a_list() {
        assert_eq!(
            "*,http://a.example".parse::<CorsOrigins>(),
            Err(CorsOriginsError::WildcardInList)
        );
        assert_eq!(
            "http://a.example,*".parse::<CorsOrigins>(),
            Err(CorsOriginsError::WildcardInList)
        );
    }

    #[test]
    fn entries_that_are_not_origins_say_why() {
        assert_eq!(problem("a.example"), OriginProblem::MissingScheme);
        assert_eq!(problem("127.0.0.1:8800"), OriginProblem::MissingScheme);
        assert_eq!(
            problem("1http://a.example"),
            OriginProblem::BadScheme("1http".into())
        );
        assert_eq!(
            problem("ht tp://a.example"),
            OriginProblem::BadScheme("ht tp".into())
        );
        assert_eq!(
            problem("http://a.example/"),
            OriginProblem::HasPath("/".into())
        );
        assert_eq!(
            problem("http://a.example/app"),
            OriginProblem::HasPath("/app".into())
        );
        assert_eq!(
            problem("http://a.example?x=1"),
            OriginProblem::HasPath("?x=1".into())
        );
        assert_eq!(
            problem("http://a.example#top"),
            OriginProblem::HasPath("#top".into())
        );
        assert_eq!(problem("http://user@a.example"), OriginProblem::HasUserInfo);
        assert_eq!(problem("http://"), OriginProblem::MissingHost);
        assert_eq!(problem("http://:8800"), OriginProblem::MissingHost);
        assert_eq!(
            problem("http://a.example:99999"),
            OriginProblem::BadAuthority
        );
        assert_eq!(
            problem("http://a.example:port"),
            OriginProblem::BadAuthority
        );
        assert_eq!(problem("http://a.example:"), OriginProblem::BadAuthority);
        assert_eq!(problem("http://a example"), OriginProblem::BadAuthority);
    }

    #[test]
    fn errors_name_the_entry_and_the_fix() {
        let message = "http://a.example,https://b.example/app"
            .parse::<CorsOrigins>()
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("'https://b.example/app' is not an origin"),
            "{message}"
        );
        assert!(message.contains("scheme://host[:port]"), "{message}");
    }

    #[test]
    fn the_rule_covers_the_socket_io_path_only() {
        for path in ["/socket.io", "/socket.io/", "/socket.io/x"] {
            assert!(crate::is_socket_io_path(path), "{path}");
        }
        for path in [
            "/",
            "/api",
            "/socket.io-admin",
            "/socket.iox/",
            "/a/socket.io/",
        ] {
            assert!(!crate::is_socket_io_path(path), "{path}");
        }
    }

    #[test]
    fn long_origins_are_cut_when_quoted() {
        let long = "http://".to_string() + &"a".repeat(1000);
        let quoted = quote(&HeaderValue::from_str(&long).unwrap());
        assert_eq!(quoted.len(), QUOTED_ORIGIN_MAX + 3);
        assert!(quoted.ends_with("..."));
        assert_eq!(
            quote(&HeaderValue::from_static("http://a.example")),
            "http://a.example"
        );
    }
}
