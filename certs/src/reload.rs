//! A server certificate that can be replaced while the server runs.
//!
//! rustls asks a [`ResolvesServerCert`] for the certificate of every new handshake, so a
//! resolver that hands out whatever an [`ArcSwap`] holds lets an operator renew a
//! certificate (an ACME client rewriting `fullchain.pem` and `privkey.pem`) without a
//! restart: established connections keep the session they negotiated, new connections get
//! the new certificate. One [`ReloadingCert`] can serve the QUIC front end and the
//! Socket.IO gateway at once, so both always present the same certificate.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::server::{check_key_matches, read_cert_chain, read_private_key, warn_if_expired};
use crate::{fingerprint, provider, CertError, ServerIdentity};

/// What a file looked like when it was last read: a change of any of these is a new file
/// (an editor or `cp` keeps the inode and changes the length or time; an atomic rename
/// changes the inode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    #[cfg(unix)]
    inode: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let meta = fs::metadata(path).ok()?;
    Some(Stamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        #[cfg(unix)]
        inode: std::os::unix::fs::MetadataExt::ino(&meta),
    })
}

/// The outcome of [`ReloadingCert::reload_if_changed`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reloaded {
    /// Neither file changed since the last attempt.
    Unchanged,
    /// New files were read and are served from now on; the new end-entity fingerprint.
    Replaced(String),
}

/// A certificate chain and key loaded from two PEM files, served by rustls and replaced
/// by [`ReloadingCert::reload`] when the files change.
///
/// A reload that fails (a missing or malformed file, a key that does not match the
/// certificate, say while an ACME client has written one file and not yet the other)
/// keeps the certificate being served and returns the error, which names the file.
pub struct ReloadingCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: ArcSwap<CertifiedKey>,
    /// The files as they were at the last attempt, successful or not, so that a bad file is
    /// reported once rather than at every poll, and retried as soon as either file changes.
    seen: Mutex<(Option<Stamp>, Option<Stamp>)>,
}

impl ReloadingCert {
    /// Loads `cert` (PEM chain, end-entity first) and `key` (PEM private key), checking
    /// that they belong together.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Self, CertError> {
        let seen = (stamp(cert), stamp(key));
        let certified = load(cert, key)?;
        Ok(Self {
            cert_path: cert.to_path_buf(),
            key_path: key.to_path_buf(),
            current: ArcSwap::from_pointee(certified),
            seen: Mutex::new(seen),
        })
    }

    /// The certificate file.
    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }

    /// The private key file.
    pub fn key_path(&self) -> &Path {
        &self.key_path
    }

    /// The SHA-256 fingerprint of the end-entity certificate being served.
    pub fn fingerprint(&self) -> String {
        self.current
            .load()
            .end_entity_cert()
            .map(|c| fingerprint(c))
            .unwrap_or_default()
    }

    /// The certificate chain being served now.
    pub fn chain(&self) -> Vec<rustls::pki_types::CertificateDer<'static>> {
        self.current.load().cert.clone()
    }

    /// Reads both files again and serves them from the next handshake on; on error the
    /// certificate being served stays.
    pub fn reload(&self) -> Result<String, CertError> {
        let seen = (stamp(&self.cert_path), stamp(&self.key_path));
        *self.seen.lock().unwrap_or_else(|e| e.into_inner()) = seen;
        let certified = load(&self.cert_path, &self.key_path)?;
        self.current.store(Arc::new(certified));
        let fingerprint = self.fingerprint();
        tracing::info!(
            cert = %self.cert_path.display(),
            key = %self.key_path.display(),
            sha256 = %fingerprint,
            "TLS certificate reloaded; new connections get it"
        );
        Ok(fingerprint)
    }

    /// [`ReloadingCert::reload`] when either file changed (time, length or inode) since
    /// the last attempt.
    pub fn reload_if_changed(&self) -> Result<Reloaded, CertError> {
        let now = (stamp(&self.cert_path), stamp(&self.key_path));
        if *self.seen.lock().unwrap_or_else(|e| e.into_inner()) == now {
            return Ok(Reloaded::Unchanged);
        }
        self.reload().map(Reloaded::Replaced)
    }
}

fn load(cert: &Path, key: &Path) -> Result<CertifiedKey, CertError> {
    let chain = read_cert_chain(cert)?;
    let key_der = read_private_key(key)?;
    check_key_matches(&chain, &key_der, cert, key)?;
    warn_if_expired(&chain[0], cert);
    let signing_key = provider()
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| CertError::BadPem {
            path: key.to_path_buf(),
            what: "private key of a supported type (ECDSA P-256/P-384, Ed25519 or RSA)",
            reason: e.to_string(),
        })?;
    Ok(CertifiedKey::new(chain, signing_key))
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

impl fmt::Debug for ReloadingCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingCert")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .field("sha256", &self.fingerprint())
            .finish()
    }
}

/// Where a server's certificate comes from: fixed (development certificates) or files
/// that may be reloaded.
#[derive(Debug, Clone)]
pub enum ServerCert {
    Fixed(ServerIdentity),
    Reloading(Arc<ReloadingCert>),
}

/// A rustls server configuration presenting `cert`, offering `alpn` (most preferred
/// first), with the workspace's crypto provider. `tls13_only` for QUIC (RFC 9001); the
/// gateway's https also takes TLS 1.2 clients.
pub fn server_config_for(
    cert: &ServerCert,
    alpn: &[&[u8]],
    tls13_only: bool,
) -> Result<rustls::ServerConfig, CertError> {
    let tls = |source| CertError::Tls {
        side: "server",
        source,
    };
    let versions: &[&'static rustls::SupportedProtocolVersion] = if tls13_only {
        &[&rustls::version::TLS13]
    } else {
        rustls::DEFAULT_VERSIONS
    };
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .map_err(tls)?
        .with_no_client_auth();
    let mut config = match cert {
        ServerCert::Fixed(identity) => builder
            .with_single_cert(identity.cert_chain().to_vec(), identity.key().clone_key())
            .map_err(tls)?,
        ServerCert::Reloading(reloading) => builder.with_cert_resolver(reloading.clone()),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{handshake, ALPN};
    use crate::{DevCerts, SERVER_CERT_FILE, SERVER_KEY_FILE};

    fn copy_pair(from: &Path, to: &Path) {
        // Write to a temporary name and rename, as ACME clients do.
        for name in [SERVER_CERT_FILE, SERVER_KEY_FILE] {
            let tmp = to.join(format!("{name}.tmp"));
            fs::copy(from.join(name), &tmp).unwrap();
            fs::rename(&tmp, to.join(name)).unwrap();
        }
    }

    #[test]
    fn a_changed_pair_is_served_and_a_bad_one_keeps_the_old() {
        let one = tempfile::tempdir().unwrap();
        let two = tempfile::tempdir().unwrap();
        let live = tempfile::tempdir().unwrap();
        let dev_one = DevCerts::load_or_create(one.path()).unwrap();
        let dev_two = DevCerts::load_or_create(two.path()).unwrap();
        copy_pair(one.path(), live.path());
        let cert = live.path().join(SERVER_CERT_FILE);
        let key = live.path().join(SERVER_KEY_FILE);
        let reloading = Arc::new(ReloadingCert::from_pem_files(&cert, &key).unwrap());
        let first = fingerprint(&dev_one.server_cert_chain()[0]);
        assert_eq!(reloading.fingerprint(), first);
        assert_eq!(reloading.reload_if_changed().unwrap(), Reloaded::Unchanged);

        let served = ServerCert::Reloading(reloading.clone());
        let config = Arc::new(server_config_for(&served, &[ALPN], true).unwrap());
        let client = |dev: &DevCerts| dev.trust().client_config(&[ALPN]).unwrap();
        handshake(client(&dev_one), (*config).clone(), "localhost").unwrap();

        copy_pair(two.path(), live.path());
        let second = fingerprint(&dev_two.server_cert_chain()[0]);
        assert_eq!(
            reloading.reload_if_changed().unwrap(),
            Reloaded::Replaced(second.clone())
        );
        // The same configuration now presents the new certificate.
        handshake(client(&dev_two), (*config).clone(), "localhost").unwrap();
        assert!(handshake(client(&dev_one), (*config).clone(), "localhost").is_err());

        // Half a renewal: a key that is not the certificate's. Reported, naming both
        // files, once; the second certificate stays.
        fs::copy(one.path().join(SERVER_KEY_FILE), &key).unwrap();
        let err = reloading.reload_if_changed().unwrap_err();
        assert!(matches!(err, CertError::KeyMismatch { .. }), "{err}");
        assert_eq!(reloading.reload_if_changed().unwrap(), Reloaded::Unchanged);
        assert_eq!(reloading.fingerprint(), second);
        fs::write(&cert, "not a certificate\n").unwrap();
        let err = reloading.reload_if_changed().unwrap_err().to_string();
        assert!(err.contains("no certificate found"), "{err}");
        handshake(client(&dev_two), (*config).clone(), "localhost").unwrap();
    }
}
