//! Signed tokens that bind a connection to its clientId: JWTs signed with HS256 and a secret
//! the relay shares with whoever mints them. `sub` is the clientId, `exp` when the token
//! stops working, and the optional `peers` claim limits whom the client may pair with.
//!
//! The time is passed in (the core has no clock), so `exp`, `nbf` and `iat` are checked here
//! rather than by jsonwebtoken, which would read the system clock (and does not check `iat`
//! at all).

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::{AuthError, Authenticator, Claims, Peers, Presented};

/// The claims of a relay token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenClaims {
    /// The clientId the token is for.
    pub sub: String,
    /// Expiry, in seconds since the Unix epoch.
    pub exp: u64,
    /// Issued at, in seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// ClientIds (or prefixes ending in `*`) the client may pair with; absent: anyone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peers: Option<Vec<String>>,
}

/// How far ahead of the relay's clock a token's `nbf` or `iat` may be and still be taken:
/// the minter's clock and the relay's never agree exactly, and a token minted and used at
/// once must not be refused for a second or two of skew. Beyond this, a token from the
/// future is refused (it would let a stolen or pre-minted token start working later than
/// its issuer meant). `exp` gets no leeway: a token stops working when its issuer said.
pub const CLOCK_LEEWAY_SECS: u64 = 30;

/// What a presented token may hold: every claim optional, so that a missing one is refused
/// with its own reason instead of a generic decoding error.
#[derive(Debug, Deserialize)]
struct Loose {
    sub: Option<String>,
    exp: Option<u64>,
    nbf: Option<u64>,
    iat: Option<u64>,
    peers: Option<Vec<String>>,
}

/// Admits a connection whose credentials are a valid token for the clientId it claims.
pub struct TokenAuthenticator {
    key: DecodingKey,
    validation: Validation,
}

impl TokenAuthenticator {
    pub fn new(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        // exp is checked against the time passed in; sub against the claimed id.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        Self {
            key: DecodingKey::from_secret(secret),
            validation,
        }
    }

    /// The claims of `token` for `client` at `unix_time`, or why it is refused.
    pub fn verify(&self, token: &str, client: &str, unix_time: u64) -> Result<Claims, AuthError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(AuthError::MissingToken);
        }
        let data = jsonwebtoken::decode::<Loose>(token, &self.key, &self.validation).map_err(
            |e| match e.kind() {
                ErrorKind::InvalidSignature | ErrorKind::InvalidAlgorithm => {
                    AuthError::BadSignature
                }
                ErrorKind::Json(e) => {
                    AuthError::Malformed(format!("its claims do not decode: {e}"))
                }
                _ => AuthError::Malformed(e.to_string()),
            },
        )?;
        let claims = data.claims;
        let exp = claims.exp.ok_or(AuthError::NoExpiry)?;
        if exp <= unix_time {
            return Err(AuthError::Expired {
                exp,
                ago: unix_time - exp,
            });
        }
        let leeway = CLOCK_LEEWAY_SECS;
        if let Some(nbf) = claims.nbf.filter(|t| *t > unix_time.saturating_add(leeway)) {
            return Err(AuthError::NotYetValid {
                nbf,
                ahead: nbf - unix_time,
                leeway,
            });
        }
        if let Some(iat) = claims.iat.filter(|t| *t > unix_time.saturating_add(leeway)) {
            return Err(AuthError::IssuedInFuture {
                iat,
                ahead: iat - unix_time,
                leeway,
            });
        }
        let subject = claims
            .sub
            .ok_or_else(|| AuthError::Malformed("it has no 'sub' claim (the clientId)".into()))?;
        if subject != client {
            return Err(AuthError::WrongSubject { subject });
        }
        Ok(Claims {
            peers: claims.peers.map_or(Peers::Any, Peers::only),
            expires: Some(exp),
        })
    }
}

impl Authenticator for TokenAuthenticator {
    fn authenticate(&self, presented: &Presented<'_>) -> Result<Claims, AuthError> {
        let Some(credentials) = presented.credentials.filter(|c| !c.is_empty()) else {
            return Err(AuthError::MissingToken);
        };
        let token = std::str::from_utf8(credentials)
            .map_err(|_| AuthError::Malformed("it is not UTF-8 text".into()))?;
        self.verify(token, presented.client.as_str(), presented.unix_time)
    }
}

/// Signs `claims` with `secret` (HS256): what `p2p-relay token` prints. Any claims that
/// serialize to a JSON object may be signed (tests sign `nbf`, which [`TokenClaims`] has
/// not); a value that cannot be serialized (a map with non-string keys) panics.
pub fn mint<C: Serialize>(secret: &[u8], claims: &C) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .expect("HS256 signing of plain claims cannot fail")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::PeerPattern;

    const SECRET: &[u8] = b"a secret shared with the minter";
    const NOW: u64 = 1_700_000_000;

    fn token(sub: &str, exp: u64, peers: Option<Vec<&str>>) -> String {
        mint(
            SECRET,
            &TokenClaims {
                sub: sub.into(),
                exp,
                iat: Some(NOW),
                peers: peers.map(|p| p.into_iter().map(String::from).collect()),
            },
        )
    }

    fn auth() -> TokenAuthenticator {
        TokenAuthenticator::new(SECRET)
    }

    #[test]
    fn a_valid_token_admits_its_subject_with_its_peers() {
        let claims = auth()
            .verify(&token("A", NOW + 60, None), "A", NOW)
            .unwrap();
        assert_eq!(claims.peers, Peers::Any);
        let claims = auth()
            .verify(&token("A", NOW + 60, Some(vec!["B", "t-*"])), "A", NOW)
            .unwrap();
        assert_eq!(
            claims.peers,
            Peers::Only(vec![
                PeerPattern::Exact("B".into()),
                PeerPattern::Prefix("t-".into())
            ])
        );
    }

    #[test]
    fn each_refusal_says_which() {
        assert_eq!(auth().verify("", "A", NOW), Err(AuthError::MissingToken));
        assert_eq!(
            auth().verify(&token("A", NOW, None), "A", NOW),
            Err(AuthError::Expired { exp: NOW, ago: 0 })
        );
        assert_eq!(
            auth().verify(&token("A", NOW - 5, None), "A", NOW),
            Err(AuthError::Expired {
                exp: NOW - 5,
                ago: 5
            })
        );
        assert_eq!(
            auth().verify(&token("B", NOW + 60, None), "A", NOW),
            Err(AuthError::WrongSubject {
                subject: "B".into()
            })
        );
        let forged = TokenAuthenticator::new(b"another secret");
        assert_eq!(
            forged.verify(&token("A", NOW + 60, None), "A", NOW),
            Err(AuthError::BadSignature)
        );
        assert!(matches!(
            auth().verify("not.a.token", "A", NOW),
            Err(AuthError::Malformed(_))
        ));
        let no_exp = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &serde_json::json!({"sub": "A"}),
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        assert_eq!(auth().verify(&no_exp, "A", NOW), Err(AuthError::NoExpiry));
        // Another algorithm (here HS512 with the right secret) is not accepted.
        let hs512 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &serde_json::json!({"sub": "A", "exp": NOW + 60}),
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        assert_eq!(
            auth().verify(&hs512, "A", NOW),
            Err(AuthError::BadSignature)
        );
    }

    /// A token with these claims, as any JWT library would sign them.
    fn signed(claims: serde_json::Value) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap()
    }

    #[test]
    fn the_admission_expires_with_the_token() {
        let claims = auth()
            .verify(&token("A", NOW + 60, None), "A", NOW)
            .unwrap();
        assert_eq!(claims.expires, Some(NOW + 60));
    }

    #[test]
    fn nbf_and_iat_from_the_future_are_refused_beyond_the_leeway() {
        let leeway = CLOCK_LEEWAY_SECS;
        let exp = NOW + 3600;
        // Within the leeway (clock skew between minter and relay): admitted.
        for claim in ["nbf", "iat"] {
            for at in [NOW - 100, NOW, NOW + leeway] {
                let t = signed(serde_json::json!({"sub": "A", "exp": exp, claim: at}));
                assert!(auth().verify(&t, "A", NOW).is_ok(), "{claim} {at}");
            }
        }
        let t = signed(serde_json::json!({"sub": "A", "exp": exp, "nbf": NOW + leeway + 1}));
        assert_eq!(
            auth().verify(&t, "A", NOW),
            Err(AuthError::NotYetValid {
                nbf: NOW + leeway + 1,
                ahead: leeway + 1,
                leeway
            })
        );
        let t = signed(serde_json::json!({"sub": "A", "exp": exp, "iat": NOW + 3000}));
        let refused = auth().verify(&t, "A", NOW).unwrap_err();
        assert_eq!(
            refused,
            AuthError::IssuedInFuture {
                iat: NOW + 3000,
                ahead: 3000,
                leeway
            }
        );
        assert_eq!(
            refused.to_string(),
            format!(
                "the token was issued in the future: its 'iat' ({}) is 3000 s ahead of the \
                 relay's clock (more than the 30 s allowed); check the minter's clock",
                NOW + 3000
            )
        );
        // The same token is good once the relay's clock reaches it.
        assert!(auth().verify(&t, "A", NOW + 3000).is_ok());
    }

    #[test]
    fn the_authenticator_reads_the_credentials_as_the_token() {
        let client = crate::ClientId::new("A").unwrap();
        let good = token("A", NOW + 60, None);
        let presented = |credentials| Presented {
            client: &client,
            credentials,
            remote: None,
            transport: crate::Transport::Native,
            unix_time: NOW,
        };
        assert!(auth()
            .authenticate(&presented(Some(good.as_bytes())))
            .is_ok());
        assert_eq!(
            auth().authenticate(&presented(None)),
            Err(AuthError::MissingToken)
        );
        assert!(matches!(
            auth().authenticate(&presented(Some(&[0xff, 0xfe][..]))),
            Err(AuthError::Malformed(_))
        ));
    }
}
