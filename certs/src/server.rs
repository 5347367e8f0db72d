//! The server side: a certificate chain with its key, and the rustls server configuration.

use std::fmt;
use std::fs;
use std::path::Path;

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

use crate::{fingerprint, provider, CertError};

/// What a TLS server presents: its certificate chain (end-entity first) and private key.
///
/// Built from a real deployment's PEM files with [`ServerIdentity::from_pem_files`], from the
/// development certificates with [`crate::DevCerts::server_identity`], or from memory with
/// [`ServerIdentity::new`].
pub struct ServerIdentity {
    cert_chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl ServerIdentity {
    /// Wraps a chain (end-entity certificate first) and its private key, unchecked; a key that
    /// does not match is reported by [`server_config`].
    pub fn new(cert_chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> Self {
        ServerIdentity { cert_chain, key }
    }

    /// Loads a deployment's certificate chain and private key from PEM files.
    ///
    /// `cert` holds one or more `CERTIFICATE` blocks, end-entity first (a "fullchain.pem" as
    /// ACME clients write it); `key` holds one PKCS#8, PKCS#1 (RSA) or SEC1 (EC) private key.
    /// The key is checked against the certificate here, so a mix-up is reported with both file
    /// names at startup instead of as an obscure handshake failure later. An expired
    /// certificate is only logged as a warning: clients that pin it may still accept it.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<ServerIdentity, CertError> {
        let cert_chain = read_cert_chain(cert)?;
        let key_der = read_private_key(key)?;
        check_key_matches(&cert_chain, &key_der, cert, key)?;
        warn_if_expired(&cert_chain[0], cert);
        Ok(ServerIdentity {
            cert_chain,
            key: key_der,
        })
    }

    /// The certificate chain, end-entity certificate first.
    pub fn cert_chain(&self) -> &[CertificateDer<'static>] {
        &self.cert_chain
    }

    /// The private key of the end-entity certificate.
    pub fn key(&self) -> &PrivateKeyDer<'static> {
        &self.key
    }

    /// The SHA-256 fingerprint of the end-entity certificate (see [`crate::fingerprint`]),
    /// for a server to print so that clients can pin it.
    pub fn end_entity_fingerprint(&self) -> Option<String> {
        self.cert_chain.first().map(|c| fingerprint(c))
    }
}

impl Clone for ServerIdentity {
    fn clone(&self) -> Self {
        ServerIdentity {
            cert_chain: self.cert_chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl fmt::Debug for ServerIdentity {
    /// Shows the chain's fingerprints, never the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let chain: Vec<String> = self.cert_chain.iter().map(|c| fingerprint(c)).collect();
        f.debug_struct("ServerIdentity")
            .field("cert_chain_sha256", &chain)
            .field("key", &"[elided]")
            .finish()
    }
}

/// A TLS 1.3-only rustls server configuration presenting `identity`, offering the ALPN
/// protocols `alpn` (most preferred first).
///
/// TLS 1.3 only, because QUIC requires it (RFC 9001), and with the ring provider, which is the
/// one the workspace compiles in. Clients are not authenticated by TLS: the relay
/// authenticates them in its own hello message.
pub fn server_config(identity: &ServerIdentity, alpn: &[&[u8]]) -> Result<ServerConfig, CertError> {
    let tls = |source| CertError::Tls {
        side: "server",
        source,
    };
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls)?
        .with_no_client_auth()
        .with_single_cert(identity.cert_chain.clone(), identity.key.clone_key())
        .map_err(tls)?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// Reads every certificate of a PEM file, in order; at least one is required.
pub(crate) fn read_cert_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, CertError> {
    const WHAT: &str = "certificate (a PEM block BEGIN CERTIFICATE)";
    let bytes = fs::read(path).map_err(|e| CertError::io("read the certificate file", path, e))?;
    let chain = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CertError::BadPem {
            path: path.to_path_buf(),
            what: WHAT,
            reason: pem_reason(e),
        })?;
    if chain.is_empty() {
        return Err(CertError::BadPem {
            path: path.to_path_buf(),
            what: WHAT,
            reason: "no certificate found".into(),
        });
    }
    Ok(chain)
}

/// Reads the first private key of a PEM file.
pub(crate) fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, CertError> {
    let bytes = fs::read(path).map_err(|e| CertError::io("read the private key file", path, e))?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| CertError::BadPem {
        path: path.to_path_buf(),
        what: "private key (a PEM block BEGIN PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)",
        reason: pem_reason(e),
    })
}

fn pem_reason(e: pem::Error) -> String {
    match e {
        pem::Error::NoItemsFound => "no such PEM block found".into(),
        pem::Error::MissingSectionEnd { end_marker } => format!(
            "a PEM block is not terminated (missing {:?})",
            String::from_utf8_lossy(&end_marker)
        ),
        pem::Error::IllegalSectionStart { line } => format!(
            "malformed PEM header line {:?}",
            String::from_utf8_lossy(&line)
        ),
        pem::Error::Base64Decode(why) => format!("bad base64 inside a PEM block: {why}"),
        other => other.to_string(),
    }
}

/// Checks that `key` can sign with the ring provider and is the key of `chain[0]`.
pub(crate) fn check_key_matches(
    chain: &[CertificateDer<'static>],
    key: &PrivateKeyDer<'static>,
    cert_path: &Path,
    key_path: &Path,
) -> Result<(), CertError> {
    let signing_key = provider()
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|e| CertError::BadPem {
            path: key_path.to_path_buf(),
            what: "private key of a supported type (ECDSA P-256/P-384, Ed25519 or RSA)",
            reason: e.to_string(),
        })?;
    match CertifiedKey::new(chain.to_vec(), signing_key).keys_match() {
        Ok(()) => Ok(()),
        Err(rustls::Error::InconsistentKeys(_)) => Err(CertError::KeyMismatch {
            cert: cert_path.to_path_buf(),
            key: key_path.to_path_buf(),
        }),
        Err(e) => Err(CertError::BadCertificate {
            path: cert_path.to_path_buf(),
            reason: e.to_string(),
        }),
    }
}

pub(crate) fn warn_if_expired(end_entity: &CertificateDer<'_>, path: &Path) {
    if let Ok((_, cert)) = x509_parser::parse_x509_certificate(end_entity) {
        if !cert.validity().is_valid() {
            tracing::warn!(
                file = %path.display(),
                not_before = %cert.validity().not_before,
                not_after = %cert.validity().not_after,
                "the server certificate is outside its validity period; clients that verify \
                 it against a CA will refuse to connect"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{handshake, HandshakeError, ALPN};
    use crate::{DevCerts, Trust};

    #[test]
    fn from_pem_files_loads_the_dev_files_and_serves_a_handshake() {
        let dir = tempfile::tempdir().unwrap();
        let dev = DevCerts::load_or_create(dir.path()).unwrap();
        let identity = ServerIdentity::from_pem_files(
            &dir.path().join(crate::SERVER_CERT_FILE),
            &dir.path().join(crate::SERVER_KEY_FILE),
        )
        .unwrap();
        assert_eq!(identity.cert_chain(), dev.server_cert_chain());
        assert_eq!(
            identity.end_entity_fingerprint().unwrap(),
            fingerprint(&dev.server_cert_chain()[0])
        );
        assert!(!format!("{identity:?}").contains("PRIVATE"));
        let server = server_config(&identity, &[ALPN]).unwrap();
        let client = dev.trust().client_config(&[ALPN]).unwrap();
        handshake(client, server, "localhost").unwrap();
    }

    #[test]
    fn from_pem_files_reports_a_key_from_another_certificate() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        DevCerts::load_or_create(a.path()).unwrap();
        DevCerts::load_or_create(b.path()).unwrap();
        let cert = a.path().join(crate::SERVER_CERT_FILE);
        let key = b.path().join(crate::SERVER_KEY_FILE);
        let err = ServerIdentity::from_pem_files(&cert, &key).unwrap_err();
        assert!(matches!(err, CertError::KeyMismatch { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains(&cert.display().to_string()), "{msg}");
        assert!(msg.contains(&key.display().to_string()), "{msg}");
    }

    #[test]
    fn from_pem_files_names_missing_and_malformed_files() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.pem");
        let err = ServerIdentity::from_pem_files(&missing, &missing).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("cannot read the certificate file"), "{msg}");
        assert!(msg.contains("nope.pem"), "{msg}");

        let empty = dir.path().join("empty.pem");
        fs::write(&empty, "just text\n").unwrap();
        let msg = ServerIdentity::from_pem_files(&empty, &empty)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("empty.pem"), "{msg}");
        assert!(msg.contains("no certificate found"), "{msg}");

        DevCerts::load_or_create(dir.path()).unwrap();
        let cert = dir.path().join(crate::SERVER_CERT_FILE);
        let msg = ServerIdentity::from_pem_files(&cert, &empty)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("empty.pem does not contain a usable private key"),
            "{msg}"
        );
    }

    #[test]
    fn server_config_refuses_tls12_clients() {
        let dir = tempfile::tempdir().unwrap();
        let dev = DevCerts::load_or_create(dir.path()).unwrap();
        let server = server_config(&dev.server_identity(), &[ALPN]).unwrap();
        let mut client = Trust::CaFile(dev.ca_cert_path().to_path_buf())
            .client_config(&[ALPN])
            .unwrap();
        // A client limited to TLS 1.2 must not get through.
        let tls12_client = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS12])
            .unwrap()
            .with_root_certificates({
                let mut roots = rustls::RootCertStore::empty();
                roots.add(dev.ca_cert_der().clone()).unwrap();
                roots
            })
            .with_no_client_auth();
        client.alpn_protocols = vec![ALPN.to_vec()];
        let refused = handshake(tls12_client, server.clone(), "localhost");
        assert!(
            matches!(
                refused,
                Err(HandshakeError::Server(rustls::Error::PeerIncompatible(_)))
            ),
            "{refused:?}"
        );
        handshake(client, server, "localhost").unwrap();
    }
}
