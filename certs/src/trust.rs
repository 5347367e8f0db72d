//! The client side: how a client decides to trust the relay's certificate.

use std::error::Error as StdError;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, OtherError, RootCertStore,
    SignatureScheme,
};

use crate::fingerprint::{digest, fingerprint, parse_fingerprint};
use crate::server::read_cert_chain;
use crate::{provider, CertError};

/// How a client trusts the relay's certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trust {
    /// Trust the CA certificate(s) in this PEM file, e.g. the development `ca.pem`.
    ///
    /// The server's chain must lead to one of them, be within its validity dates and name the
    /// address the client dialled (`localhost`, `127.0.0.1` or `::1` for the development
    /// certificate).
    CaFile(PathBuf),

    /// Pin a SHA-256 certificate fingerprint (any form [`crate::parse_fingerprint`] accepts).
    ///
    /// The pin may name either certificate the server presents:
    ///
    /// * **the end-entity (server) certificate**: accepted whatever its names and dates, as an
    ///   SSH host key would be — the pin itself is the identity;
    /// * **a CA certificate sent in the server's chain** (the development server sends its CA,
    ///   so [`crate::DevCerts::ca_fingerprint`] works as a pin): that certificate becomes the
    ///   only trust anchor and the server is verified against it exactly as for
    ///   [`Trust::CaFile`] (chain signatures, dates, server name). Merely containing the pinned
    ///   certificate is not enough, since a CA certificate is public and anyone could send it.
    ///
    /// In both cases the TLS 1.3 handshake signature is still verified with the end-entity
    /// key, so only the holder of that key can complete the handshake.
    Fingerprint(String),

    /// Trust the operating system's root CAs (loaded with `rustls-native-certs`, which also
    /// honours `SSL_CERT_FILE` / `SSL_CERT_DIR`), for a relay with a publicly issued
    /// certificate.
    SystemRoots,
}

impl fmt::Display for Trust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trust::CaFile(path) => write!(f, "the CA in {}", path.display()),
            Trust::Fingerprint(pin) => write!(f, "the certificate pinned as {}", pin.trim()),
            Trust::SystemRoots => f.write_str("the system root CAs"),
        }
    }
}

impl Trust {
    /// A TLS 1.3-only rustls client configuration (ring provider) that trusts the server as
    /// this option says and offers the ALPN protocols `alpn`.
    ///
    /// Fails early, before any connection, when the CA file cannot be read, the fingerprint is
    /// malformed or no system root can be loaded. When the server is later rejected, the
    /// handshake error carries a [`TrustFailure`] saying which check failed.
    pub fn client_config(&self, alpn: &[&[u8]]) -> Result<ClientConfig, CertError> {
        let provider = provider();
        let verifier: Arc<dyn ServerCertVerifier> = match self {
            Trust::CaFile(path) => {
                let roots = ca_file_roots(path)?;
                AnchoredVerifier::build(roots, self.to_string(), provider.clone())?
            }
            Trust::Fingerprint(pin) => Arc::new(PinnedVerifier {
                pin: parse_fingerprint(pin)?,
                provider: provider.clone(),
            }),
            Trust::SystemRoots => {
                let roots = system_roots()?;
                AnchoredVerifier::build(roots, self.to_string(), provider.clone())?
            }
        };
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|source| CertError::Tls {
                side: "client",
                source,
            })?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(config)
    }
}

/// Why a client refused the server's certificate.
///
/// It travels inside the handshake error as
/// `rustls::Error::InvalidCertificate(CertificateError::Other(..))` (so the alert sent is
/// `certificate_unknown` and code matching on invalid certificates keeps working). Get it back
/// with [`trust_failure`], or the plain message with [`describe_tls_error`]. Through quinn only
/// the text survives; it contains this error's message.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TrustFailure {
    /// No certificate the server presented has the pinned fingerprint.
    #[error("server certificate fingerprint mismatch: expected {expected}, got {got}{}", others_note(.chain))]
    FingerprintMismatch {
        /// The pinned fingerprint.
        expected: String,
        /// The fingerprint of the server's end-entity certificate.
        got: String,
        /// Fingerprints of the other certificates in the chain the server sent.
        chain: Vec<String>,
    },

    /// The server's certificate does not chain to the trusted CA: signed by someone else.
    #[error("certificate not signed by {anchor}: {reason}")]
    NotSignedBy {
        /// What was trusted, e.g. "the CA in /home/me/.local/share/p2p-relay/ca.pem".
        anchor: String,
        /// The verifier's own words.
        reason: String,
    },

    /// The server's certificate chains to the trusted CA but fails another check (its
    /// validity dates, the server name, its key usage …).
    #[error("server certificate rejected when checked against {anchor}: {reason}")]
    Rejected {
        /// What was trusted.
        anchor: String,
        /// Which check failed, in the verifier's words.
        reason: String,
    },
}

fn others_note(chain: &[String]) -> String {
    if chain.is_empty() {
        " (the server sent no other certificate)".to_string()
    } else {
        format!(
            " (server certificate; the rest of its chain: {})",
            chain.join(", ")
        )
    }
}

impl fmt::Debug for TrustFailure {
    /// Same as Display: rustls prints a `CertificateError::Other` with `{:?}`, and this keeps
    /// the message readable there (e.g. in quinn's connection error text).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl From<TrustFailure> for rustls::Error {
    fn from(failure: TrustFailure) -> Self {
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(failure))))
    }
}

/// The [`TrustFailure`] inside a rustls handshake error, if that is why it failed.
pub fn trust_failure(err: &rustls::Error) -> Option<&TrustFailure> {
    match err {
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(inner))) => {
            (inner.as_ref() as &(dyn StdError + 'static)).downcast_ref::<TrustFailure>()
        }
        _ => None,
    }
}

/// A message for a person: the [`TrustFailure`] text when the certificate was refused by one of
/// our checks, otherwise rustls's own description.
pub fn describe_tls_error(err: &rustls::Error) -> String {
    match trust_failure(err) {
        Some(failure) => failure.to_string(),
        None => err.to_string(),
    }
}

fn ca_file_roots(path: &Path) -> Result<RootCertStore, CertError> {
    let mut roots = RootCertStore::empty();
    for cert in read_cert_chain(path)? {
        roots.add(cert).map_err(|e| CertError::BadCertificate {
            path: path.to_path_buf(),
            reason: format!("not usable as a trust anchor: {e}"),
        })?;
    }
    Ok(roots)
}

fn system_roots() -> Result<RootCertStore, CertError> {
    let loaded = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(loaded.certs);
    if ignored > 0 {
        tracing::debug!(ignored, "some system root certificates could not be parsed");
    }
    for error in &loaded.errors {
        tracing::debug!(%error, "while loading system root certificates");
    }
    if added == 0 {
        let mut details: Vec<String> = loaded.errors.iter().map(|e| e.to_string()).collect();
        if details.is_empty() {
            details.push("the system store is empty".into());
        }
        return Err(CertError::NoSystemRoots {
            details: details.join("; "),
        });
    }
    Ok(roots)
}

/// The webpki verifier for a fixed set of trust anchors, with its rejections reworded to say
/// which anchors were used ("certificate not signed by the CA in /path/ca.pem").
#[derive(Debug)]
struct AnchoredVerifier {
    inner: Arc<WebPkiServerVerifier>,
    anchor: String,
}

impl AnchoredVerifier {
    fn build(
        roots: RootCertStore,
        anchor: String,
        provider: Arc<CryptoProvider>,
    ) -> Result<Arc<dyn ServerCertVerifier>, CertError> {
        let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| CertError::Tls {
                side: "client",
                source: rustls::Error::General(e.to_string()),
            })?;
        Ok(Arc::new(AnchoredVerifier { inner, anchor }))
    }
}

impl ServerCertVerifier for AnchoredVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            .map_err(|e| reword(e, &self.anchor))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Turns a webpki rejection into a [`TrustFailure`] naming `anchor`.
fn reword(err: rustls::Error, anchor: &str) -> rustls::Error {
    match err {
        rustls::Error::InvalidCertificate(cert_err) => {
            let anchor = anchor.to_string();
            let failure = match cert_err {
                CertificateError::UnknownIssuer => TrustFailure::NotSignedBy {
                    anchor,
                    reason: "the chain the server sent does not lead to it (UnknownIssuer)".into(),
                },
                CertificateError::BadSignature => TrustFailure::NotSignedBy {
                    anchor,
                    reason: "a signature in its chain does not verify (BadSignature)".into(),
                },
                other => TrustFailure::Rejected {
                    anchor,
                    reason: other.to_string(),
                },
            };
            failure.into()
        }
        other => other,
    }
}

/// Accepts the server when a certificate it presents has the pinned SHA-256, as documented on
/// [`Trust::Fingerprint`].
///
/// Written by hand because rustls has no pinning verifier; the handshake signature checks are
/// delegated to rustls's own webpki-based functions.
#[derive(Debug)]
struct PinnedVerifier {
    pin: [u8; 32],
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if digest(end_entity) == self.pin {
            // The handshake signature (verify_tls13_signature) then proves the server holds
            // this certificate's key.
            return Ok(ServerCertVerified::assertion());
        }
        let pin_hex = hex::encode(self.pin);
        if let Some(index) = intermediates.iter().position(|c| digest(c) == self.pin) {
            // A CA in the chain matches: make it the only trust anchor and verify the server
            // certificate against it, so a copy of a public CA certificate proves nothing.
            let anchor = format!("the pinned certificate {pin_hex}");
            let mut roots = RootCertStore::empty();
            roots
                .add(intermediates[index].clone().into_owned())
                .map_err(|e| {
                    rustls::Error::from(TrustFailure::Rejected {
                        anchor: anchor.clone(),
                        reason: format!("it is not usable as a trust anchor: {e}"),
                    })
                })?;
            let others: Vec<CertificateDer<'_>> = intermediates
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != index)
                .map(|(_, c)| c.clone())
                .collect();
            let verifier =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                    .build()
                    .map_err(|e| rustls::Error::General(e.to_string()))?;
            return verifier
                .verify_server_cert(end_entity, &others, server_name, ocsp_response, now)
                .map_err(|e| reword(e, &anchor));
        }
        Err(TrustFailure::FingerprintMismatch {
            expected: pin_hex,
            got: fingerprint(end_entity),
            chain: intermediates.iter().map(|c| fingerprint(c)).collect(),
        }
        .into())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // Unreachable with our TLS 1.3-only configuration, but implemented correctly anyway.
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{handshake, sign_leaf, HandshakeError, ALPN};
    use crate::{server_config, DevCerts, ServerIdentity};

    fn new_dev() -> (tempfile::TempDir, DevCerts) {
        let dir = tempfile::tempdir().unwrap();
        let dev = DevCerts::load_or_create(dir.path()).unwrap();
        (dir, dev)
    }

    fn serve(dev: &DevCerts) -> rustls::ServerConfig {
        server_config(&dev.server_identity(), &[ALPN]).unwrap()
    }

    /// The client's handshake error, as a person would read it.
    fn client_failure(trust: &Trust, server: rustls::ServerConfig, name: &str) -> String {
        let client = trust.client_config(&[ALPN]).unwrap();
        match handshake(client, server, name) {
            Err(HandshakeError::Client(e)) => {
                assert!(trust_failure(&e).is_some(), "not a TrustFailure: {e:?}");
                // The text rustls (and so quinn) shows also carries the message.
                assert!(e.to_string().contains(&describe_tls_error(&e)), "{e}");
                describe_tls_error(&e)
            }
            other => panic!("expected the client to refuse the server, got {other:?}"),
        }
    }

    #[test]
    fn ca_file_accepts_the_dev_server_on_every_dev_name() {
        let (_dir, dev) = new_dev();
        let trust = Trust::CaFile(dev.ca_cert_path().to_path_buf());
        for name in crate::DEV_SERVER_NAMES {
            let client = trust.client_config(&[ALPN]).unwrap();
            let alpn = handshake(client, serve(&dev), name).unwrap();
            assert_eq!(alpn.as_deref(), Some(ALPN), "{name}");
        }
    }

    #[test]
    fn ca_file_of_another_ca_fails_naming_the_file() {
        let (_a, dev) = new_dev();
        let (_b, other) = new_dev();
        let trust = Trust::CaFile(other.ca_cert_path().to_path_buf());
        let msg = client_failure(&trust, serve(&dev), "localhost");
        let expected = format!(
            "certificate not signed by the CA in {}",
            other.ca_cert_path().display()
        );
        assert!(msg.starts_with(&expected), "{msg}");
    }

    #[test]
    fn ca_file_checks_the_server_name() {
        let (_dir, dev) = new_dev();
        let trust = Trust::CaFile(dev.ca_cert_path().to_path_buf());
        let msg = client_failure(&trust, serve(&dev), "relay.example.com");
        assert!(msg.starts_with("server certificate rejected when checked against the CA in"));
        assert!(
            msg.contains("not valid for name \"relay.example.com\""),
            "{msg}"
        );
    }

    #[test]
    fn ca_file_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing-ca.pem");
        let msg = Trust::CaFile(path.clone())
            .client_config(&[ALPN])
            .unwrap_err()
            .to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
    }

    #[test]
    fn pin_of_the_ca_in_either_form_is_accepted() {
        let (_dir, dev) = new_dev();
        let plain = dev.ca_fingerprint();
        let colons = plain
            .as_bytes()
            .chunks(2)
            .map(|c| std::str::from_utf8(c).unwrap().to_ascii_uppercase())
            .collect::<Vec<_>>()
            .join(":");
        for pin in [plain, colons] {
            let client = Trust::Fingerprint(pin).client_config(&[ALPN]).unwrap();
            handshake(client, serve(&dev), "127.0.0.1").unwrap();
        }
    }

    #[test]
    fn pin_of_the_server_certificate_is_accepted_for_any_name() {
        let (_dir, dev) = new_dev();
        let pin = fingerprint(&dev.server_cert_chain()[0]);
        let client = Trust::Fingerprint(pin).client_config(&[ALPN]).unwrap();
        // The end-entity pin is the identity: names are not checked.
        handshake(client, serve(&dev), "relay.example.com").unwrap();
    }

    #[test]
    fn wrong_pin_fails_with_the_mismatch_message() {
        let (_a, dev) = new_dev();
        let (_b, other) = new_dev();
        let wrong = other.ca_fingerprint();
        let msg = client_failure(&Trust::Fingerprint(wrong.clone()), serve(&dev), "localhost");
        let expected = format!(
            "server certificate fingerprint mismatch: expected {wrong}, got {}",
            fingerprint(&dev.server_cert_chain()[0])
        );
        assert!(msg.starts_with(&expected), "{msg}");
        assert!(msg.contains(&dev.ca_fingerprint()), "{msg}");
    }

    #[test]
    fn pinned_ca_copied_into_a_foreign_chain_is_refused() {
        // An attacker cannot borrow the public CA certificate: they send their own server
        // certificate with a copy of the real CA after it.
        let (_a, real) = new_dev();
        let (_b, attacker) = new_dev();
        let chain = vec![
            attacker.server_cert_chain()[0].clone(),
            real.ca_cert_der().clone(),
        ];
        let identity = ServerIdentity::new(chain, attacker.server_key().clone_key());
        let server = server_config(&identity, &[ALPN]).unwrap();
        let pin = real.ca_fingerprint();
        let msg = client_failure(&Trust::Fingerprint(pin.clone()), server, "localhost");
        assert!(
            msg.starts_with(&format!(
                "certificate not signed by the pinned certificate {pin}"
            )),
            "{msg}"
        );
    }

    #[test]
    fn pinned_ca_still_checks_dates() {
        let (dir, dev) = new_dev();
        let expired = sign_leaf(dir.path(), -10, -1);
        let identity =
            ServerIdentity::new(vec![expired.cert, dev.ca_cert_der().clone()], expired.key);
        let server = server_config(&identity, &[ALPN]).unwrap();
        let msg = client_failure(
            &Trust::Fingerprint(dev.ca_fingerprint()),
            server,
            "localhost",
        );
        assert!(msg.starts_with("server certificate rejected when checked against the pinned"));
        assert!(msg.contains("expired"), "{msg}");
    }

    #[test]
    fn malformed_pin_is_refused_before_connecting() {
        let err = Trust::Fingerprint("abcd".into())
            .client_config(&[ALPN])
            .unwrap_err();
        assert!(matches!(err, CertError::InvalidFingerprint { .. }), "{err}");
    }

    #[test]
    fn system_roots_do_not_trust_the_dev_ca() {
        let (_dir, dev) = new_dev();
        match Trust::SystemRoots.client_config(&[ALPN]) {
            Ok(_) => {
                let msg = client_failure(&Trust::SystemRoots, serve(&dev), "localhost");
                assert!(msg.starts_with("certificate not signed by the system root CAs"));
            }
            // A machine without a CA bundle: the error must say what to do.
            Err(err @ CertError::NoSystemRoots { .. }) => {
                assert!(err.to_string().contains("SSL_CERT_FILE"));
            }
            Err(other) => panic!("unexpected error: {other}"),
        }
    }

    #[test]
    fn client_config_is_tls13_only() {
        let (_dir, dev) = new_dev();
        let client = dev.trust().client_config(&[ALPN]).unwrap();
        let tls12_server = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS12])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                dev.server_cert_chain().to_vec(),
                dev.server_key().clone_key(),
            )
            .unwrap();
        let refused = handshake(client, tls12_server, "localhost");
        assert!(
            matches!(
                refused,
                Err(HandshakeError::Server(rustls::Error::PeerIncompatible(_)))
            ),
            "{refused:?}"
        );
    }

    #[test]
    fn trust_failure_of_another_error_is_none() {
        assert!(trust_failure(&rustls::Error::HandshakeNotComplete).is_none());
        assert_eq!(
            describe_tls_error(&rustls::Error::HandshakeNotComplete),
            "handshake not complete"
        );
    }
}
