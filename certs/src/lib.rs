//! Certificates and TLS trust for the relay's QUIC front end.
//!
//! QUIC always runs TLS 1.3, so the relay needs a certificate even on a developer's laptop. The
//! design promises a zero-setup default (`cargo run --release` just works), so this crate:
//!
//! * creates, once, a local development CA and a server certificate signed by it for
//!   `localhost`, `127.0.0.1` and `::1`, and reuses them on later runs ([`DevCerts`]);
//! * loads real certificates for deployments ([`ServerIdentity::from_pem_files`]);
//! * builds TLS 1.3-only rustls configurations with the ring provider for both ends
//!   ([`server_config`], [`Trust::client_config`]);
//! * lets a client choose how it trusts the relay ([`Trust`]): a CA file, a SHA-256 pin, or the
//!   operating system's roots. When the server is rejected, the handshake error says which
//!   check failed ([`TrustFailure`], [`describe_tls_error`]).
//!
//! # Fingerprint format
//!
//! Fingerprints are the SHA-256 of a certificate's DER encoding, written as **64 lowercase hex
//! digits without separators** (see [`fingerprint`]). That is what
//! `openssl x509 -in ca.pem -outform der | sha256sum` prints, so a user can check it with
//! standard tools, and it needs no quoting on a command line. When parsing, both that form
//! and the colon-separated form (`AB:CD:…`, as `openssl x509 -fingerprint -sha256` prints it)
//! are accepted, in any case, optionally prefixed with `sha256:` ([`parse_fingerprint`]).

mod dev;
mod error;
mod fingerprint;
mod reload;
mod server;
mod trust;

use std::sync::{Arc, OnceLock};

use rustls::crypto::CryptoProvider;

pub use dev::{
    default_data_dir, DevCerts, CA_CERT_FILE, CA_KEY_FILE, DEV_SERVER_NAMES, SERVER_CERT_FILE,
    SERVER_KEY_FILE,
};
pub use error::CertError;
pub use fingerprint::{fingerprint, parse_fingerprint};
pub use reload::{server_config_for, Reloaded, ReloadingCert, ServerCert};
pub use rustls::pki_types::{CertificateDer, PrivateKeyDer};
pub use server::{server_config, ServerIdentity};
pub use trust::{describe_tls_error, trust_failure, Trust, TrustFailure};

/// The crypto provider used for every configuration built here.
///
/// The workspace builds rustls with the ring provider only; passing it explicitly (instead of
/// relying on a process-wide default) keeps these configurations independent of whatever
/// other crates in the same binary install as the default.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

#[cfg(test)]
pub(crate) mod test_util;

#[cfg(test)]
mod tests {
    use super::*;

    /// The configurations are meant for quinn, which requires TLS 1.3 with its initial
    /// cipher suite and refuses some settings; check that it takes them as they are.
    #[test]
    fn quinn_accepts_both_configurations() {
        let dir = tempfile::tempdir().unwrap();
        let dev = DevCerts::load_or_create(dir.path()).unwrap();
        let server = server_config(&dev.server_identity(), &[test_util::ALPN]).unwrap();
        quinn::crypto::rustls::QuicServerConfig::try_from(server).unwrap();
        for trust in [
            dev.trust(),
            Trust::Fingerprint(dev.ca_fingerprint()),
            Trust::SystemRoots,
        ] {
            let client = match trust.client_config(&[test_util::ALPN]) {
                Ok(client) => client,
                Err(CertError::NoSystemRoots { .. }) => continue,
                Err(e) => panic!("{trust}: {e}"),
            };
            quinn::crypto::rustls::QuicClientConfig::try_from(client).unwrap();
        }
    }
}
