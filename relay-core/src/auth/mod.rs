//! The seam where a deployment decides whether a connection may use the clientId it claims,
//! and what that client may do once admitted (the [`Claims`]).
//!
//! Admission is a pure function of what the client presented and the time, which is passed
//! in: the core stays sans-IO. A check that needs I/O (an HTTP callback) runs in the front
//! ends before the connection reaches the core, and hands its claims in the same shape.

mod peers;
pub mod token;

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::client_id::ClientId;
use crate::error::ConnectError;
use crate::transport::Transport;

pub use peers::{PeerPattern, Peers};
pub use token::{TokenAuthenticator, TokenClaims};

/// What a connecting client presented, and when, for an authenticator to judge.
#[derive(Debug, Clone, Copy)]
pub struct Presented<'a> {
    /// The clientId it claims (already well-formed).
    pub client: &'a ClientId,
    /// Whatever its transport carried as credentials: the token of a Socket.IO handshake
    /// (`auth: {token}` or the `token` query parameter), the native hello's credentials.
    pub credentials: Option<&'a [u8]>,
    /// Where it connects from, when the front end knows.
    pub remote: Option<SocketAddr>,
    pub transport: Transport,
    /// Wall-clock time, in seconds since the Unix epoch (tokens expire in wall-clock time).
    pub unix_time: u64,
}

/// Seconds since the Unix epoch of `time` (0 before it).
pub fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// What an admitted client may do, as its authenticator vouched.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Claims {
    /// The clients it may pair with, in either direction.
    pub peers: Peers,
    /// When the admission stops being valid, in seconds since the Unix epoch (a token's
    /// `exp`): the relay closes the connection then ([`crate::CloseReason::TokenExpired`]),
    /// so that a connection never outlives its credentials. None: never.
    pub expires: Option<u64>,
}

impl Claims {
    /// The instant at which these claims expire, given that `now` is the wall-clock time
    /// `wall_now`: None when they never do (or so far away that no clock reaches it).
    /// Claims already expired give `now`.
    pub fn deadline(&self, now: Instant, wall_now: SystemTime) -> Option<Instant> {
        let expires = UNIX_EPOCH.checked_add(Duration::from_secs(self.expires?))?;
        let left = expires.duration_since(wall_now).unwrap_or(Duration::ZERO);
        now.checked_add(left)
    }
}

/// Why an authenticator refused a connection. Each text says what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error(
        "no token: present a token signed for this clientId (Socket.IO: auth {{token}} or a \
         'token' query parameter; QUIC: the hello's credentials)"
    )]
    MissingToken,
    #[error("the token is malformed: {0}")]
    Malformed(String),
    #[error("the token's signature is not valid for this relay's secret (HS256)")]
    BadSignature,
    #[error("the token has no 'exp' claim; tokens must expire")]
    NoExpiry,
    #[error("the token expired {ago} s ago (exp {exp}); mint a new one")]
    Expired { exp: u64, ago: u64 },
    #[error(
        "the token is not valid yet: its 'nbf' ({nbf}) is {ahead} s ahead of the relay's \
         clock (more than the {leeway} s allowed); check the minter's clock"
    )]
    NotYetValid { nbf: u64, ahead: u64, leeway: u64 },
    #[error(
        "the token was issued in the future: its 'iat' ({iat}) is {ahead} s ahead of the \
         relay's clock (more than the {leeway} s allowed); check the minter's clock"
    )]
    IssuedInFuture { iat: u64, ahead: u64, leeway: u64 },
    #[error("the token was issued for clientId '{subject}', not this one")]
    WrongSubject { subject: String },
    #[error("the admission service refused it (HTTP {status})")]
    CallbackRefused { status: u16 },
    #[error("the admission service did not answer within {millis} ms")]
    CallbackTimeout { millis: u64 },
    #[error("the admission service could not be reached: {0}")]
    CallbackUnreachable(String),
    #[error("the admission service's answer was not understood: {0}")]
    CallbackBadAnswer(String),
}

/// Accepts or refuses a connection's claimed clientId, and says what it may do. Called once
/// per connection, before it is registered.
pub trait Authenticator: Send + Sync + 'static {
    fn authenticate(&self, presented: &Presented<'_>) -> Result<Claims, AuthError>;
}

/// Lets every well-formed clientId in with no restriction, as the original server did.
#[derive(Debug, Default, Clone, Copy)]
pub struct AllowAll;

impl Authenticator for AllowAll {
    fn authenticate(&self, _: &Presented<'_>) -> Result<Claims, AuthError> {
        Ok(Claims::default())
    }
}

impl<A: Authenticator + ?Sized> Authenticator for std::sync::Arc<A> {
    fn authenticate(&self, presented: &Presented<'_>) -> Result<Claims, AuthError> {
        (**self).authenticate(presented)
    }
}

/// A well-formed clientId, or why not. The first check of every admission.
pub fn check_client_id(client_id: Option<&str>) -> Result<ClientId, ConnectError> {
    Ok(ClientId::new(
        client_id.ok_or(ConnectError::MissingClientId)?,
    )?)
}

/// The checks made before a connection may claim an id: a well-formed clientId that the
/// authenticator accepts. Every synchronous driver admits connections through this one
/// function; the claims it returns go to the connection.
pub fn check_claim(
    auth: &dyn Authenticator,
    client_id: Option<&str>,
    credentials: Option<&[u8]>,
    remote: Option<SocketAddr>,
    transport: Transport,
    unix_time: u64,
) -> Result<(ClientId, Claims), ConnectError> {
    let client = check_client_id(client_id)?;
    let presented = Presented {
        client: &client,
        credentials,
        remote,
        transport,
        unix_time,
    };
    let claims = auth
        .authenticate(&presented)
        .map_err(|reason| ConnectError::Unauthorized {
            client: client.clone(),
            reason,
        })?;
    Ok((client, claims))
}
