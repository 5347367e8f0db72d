//! The admission callback (`--auth url`): for every connection the relay POSTs what the
//! client presented to a service of the deployment, which admits with a 2xx (optionally
//! with a JSON body of claims, `{"peers": [...]}`) and refuses with anything else. It fails
//! closed: a timeout, an unreachable service or an answer that does not parse refuse the
//! connection.
//!
//! Request body (JSON): `{"clientId", "token" (string or null), "remoteAddress" ("ip:port"
//! or null), "transport" ("socketio" | "quic")}`.

use std::time::Duration;

use relay_core::{AuthError, Claims, Peers, Presented, Transport};
use relay_runtime::{AdmissionFuture, AsyncAuthenticator};
use serde::{Deserialize, Serialize};

use super::AuthSetupError;

pub struct CallbackAuthenticator {
    client: reqwest::Client,
    url: reqwest::Url,
    timeout: Duration,
    /// The most of a 2xx answer's body that is read (`--auth-response-max-bytes`).
    max_answer_bytes: usize,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Request<'a> {
    client_id: &'a str,
    token: Option<&'a str>,
    remote_address: Option<String>,
    transport: &'static str,
}

/// A 2xx answer's body: the same claims a token carries. `sub`, when given, must be the
/// clientId asked about.
#[derive(Deserialize)]
struct Answer {
    sub: Option<String>,
    peers: Option<Vec<String>>,
}

impl CallbackAuthenticator {
    pub fn new(
        url: &str,
        timeout: Duration,
        max_answer_bytes: usize,
    ) -> Result<Self, AuthSetupError> {
        let bad = |reason: String| AuthSetupError::BadUrl {
            url: url.to_owned(),
            reason,
        };
        let parsed = reqwest::Url::parse(url).map_err(|e| bad(e.to_string()))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(bad(format!("the scheme is '{}'", parsed.scheme())));
        }
        let client = reqwest::Client::builder()
            .timeout(timeout)
            // A redirect is not an admission: the configured service must answer itself.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| AuthSetupError::Client(e.to_string()))?;
        Ok(Self {
            client,
            url: parsed,
            timeout,
            max_answer_bytes,
        })
    }

    async fn ask(&self, presented: Presented<'_>) -> Result<Claims, AuthError> {
        let body = Request {
            client_id: presented.client.as_str(),
            token: presented
                .credentials
                .and_then(|c| std::str::from_utf8(c).ok()),
            remote_address: presented.remote.map(|r| r.to_string()),
            transport: match presented.transport {
                Transport::Legacy => "socketio",
                Transport::Native => "quic",
            },
        };
        let body = serde_json::to_vec(&body).expect("plain strings serialise");
        let millis = u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX);
        let timed_out = |e: &reqwest::Error| e.is_timeout();
        let response = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| {
                if timed_out(&e) {
                    AuthError::CallbackTimeout { millis }
                } else {
                    AuthError::CallbackUnreachable(without_url(e))
                }
            })?;
        let status = response.status();
        if !status.is_success() {
            return Err(AuthError::CallbackRefused {
                status: status.as_u16(),
            });
        }
        let body = read_bounded(response, self.max_answer_bytes)
            .await
            .map_err(|e| match e {
                BodyError::Read(e) if timed_out(&e) => AuthError::CallbackTimeout { millis },
                BodyError::Read(e) => AuthError::CallbackUnreachable(without_url(e)),
                too_long @ BodyError::TooLong { .. } => {
                    tracing::warn!(
                        client = %presented.client,
                        "admission refused, the service's answer is too long: {too_long}"
                    );
                    AuthError::CallbackBadAnswer(too_long.to_string())
                }
            })?;
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Claims::default());
        }
        let answer: Answer = serde_json::from_slice(&body).map_err(|e| {
            AuthError::CallbackBadAnswer(format!("its body is not a claims object: {e}"))
        })?;
        if let Some(subject) = answer.sub.filter(|s| s != presented.client.as_str()) {
            return Err(AuthError::WrongSubject { subject });
        }
        Ok(Claims {
            peers: answer.peers.map_or(Peers::Any, Peers::only),
            // The service decides admission once; the connection has no expiry of its own.
            expires: None,
        })
    }
}

/// Why a 2xx answer's body could not be taken.
#[derive(Debug, thiserror::Error)]
enum BodyError {
    #[error("its body is longer than {max} bytes (--auth-response-max-bytes)")]
    TooLong { max: usize },
    #[error("{0}")]
    Read(reqwest::Error),
}

/// Reads `response`'s body chunk by chunk, refusing it as soon as it passes `max` bytes
/// (a `Content-Length` over it is refused before anything is read): the service's answer
/// is held in memory, so its size must be bounded before it arrives, not after.
async fn read_bounded(mut response: reqwest::Response, max: usize) -> Result<Vec<u8>, BodyError> {
    if response
        .content_length()
        .is_some_and(|len| len > max as u64)
    {
        return Err(BodyError::TooLong { max });
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Read)? {
        if body.len() + chunk.len() > max {
            return Err(BodyError::TooLong { max });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// reqwest's text without the URL, which may hold credentials of the deployment and has no
/// business in a client's refusal message.
fn without_url(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(inner) = source {
        text = format!("{text}: {inner}");
        source = inner.source();
    }
    text
}

impl AsyncAuthenticator for CallbackAuthenticator {
    fn authenticate<'a>(&'a self, presented: Presented<'a>) -> AdmissionFuture<'a> {
        Box::pin(async move {
            let answer = tokio::time::timeout(self.timeout, self.ask(presented)).await;
            let millis = u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX);
            let result = answer.unwrap_or(Err(AuthError::CallbackTimeout { millis }));
            if let Err(reason) = &result {
                tracing::debug!(client = %presented.client, %reason, "admission callback refused");
            }
            result
        })
    }
}
