//! How the server admits clients: nobody checked (the default, as the original server),
//! signed tokens (`--auth token`), or an HTTP admission callback (`--auth url`). Whichever,
//! it applies to every front end: the relay handle admits, the transports only carry what
//! the client presented.

mod callback;
pub mod mint;

use std::path::Path;
use std::time::Duration;

use relay_core::TokenAuthenticator;
use relay_runtime::RelayHandle;

pub use callback::CallbackAuthenticator;

/// Which admission the relay runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum AuthMode {
    /// Every well-formed clientId is admitted (anyone may claim any id).
    #[default]
    None,
    /// Clients present a token signed with the shared secret whose `sub` is their clientId.
    Token,
    /// An HTTP service decides, asked with a POST for every connection.
    Url,
}

/// Why the relay cannot start with the admission it was configured with.
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    #[error("cannot read the auth secret file {path}: {source}")]
    SecretUnreadable {
        path: String,
        source: std::io::Error,
    },
    #[error("the auth secret file {0} is empty: put a long random secret in it (e.g. `openssl rand -hex 32`)")]
    SecretEmpty(String),
    /// Shorter than `settings::MIN_SECRET_BYTES`: an HS256 signature made with it can be
    /// searched for offline.
    #[error(transparent)]
    SecretShort(#[from] crate::settings::ShortSecret),
    #[error("`p2p-relay token` signs with the relay's secret: give it --auth-secret-file FILE (or P2P_RELAY_AUTH_SECRET_FILE, or auth_secret_file in the config file)")]
    TokenNeedsSecret,
    #[error("--auth {0} needs {1}")]
    Missing(&'static str, &'static str),
    #[error("--auth-url {url} is not a usable http(s) URL: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("cannot build the admission callback's HTTP client: {0}")]
    Client(String),
}

/// The shared secret of `path`: its bytes, without the trailing newline an editor adds.
pub fn read_secret(path: &Path) -> Result<Vec<u8>, AuthSetupError> {
    let shown = path.display().to_string();
    let mut secret = std::fs::read(path).map_err(|source| AuthSetupError::SecretUnreadable {
        path: shown.clone(),
        source,
    })?;
    while secret.last().is_some_and(|b| b.is_ascii_whitespace()) {
        secret.pop();
    }
    if secret.is_empty() {
        return Err(AuthSetupError::SecretEmpty(shown));
    }
    crate::settings::check_secret_file("auth secret", path, &secret)?;
    Ok(secret)
}

/// The relay handle with the admission of `mode`.
pub fn relay_handle(
    config: relay_core::Config,
    mode: AuthMode,
    secret_file: Option<&Path>,
    url: Option<&str>,
    timeout: Duration,
    max_answer_bytes: usize,
) -> Result<RelayHandle, AuthSetupError> {
    Ok(match mode {
        AuthMode::None => RelayHandle::new(config),
        AuthMode::Token => {
            let path =
                secret_file.ok_or(AuthSetupError::Missing("token", "--auth-secret-file FILE"))?;
            let secret = read_secret(path)?;
            tracing::info!(
                "clients must present a token signed with the secret of {}",
                path.display()
            );
            RelayHandle::with_authenticator(config, TokenAuthenticator::new(&secret))
        }
        AuthMode::Url => {
            let url = url.ok_or(AuthSetupError::Missing("url", "--auth-url URL"))?;
            let callback = CallbackAuthenticator::new(url, timeout, max_answer_bytes)?;
            tracing::info!(
                "clients are admitted by {url} (timeout {} ms)",
                timeout.as_millis()
            );
            RelayHandle::with_async_authenticator(config, callback)
        }
    })
}
