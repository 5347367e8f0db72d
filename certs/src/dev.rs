//! Development certificates: a local CA and a localhost server certificate, created once and
//! reused.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData,
};
use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::RootCertStore;
use time::{Duration, OffsetDateTime};

use crate::server::{check_key_matches, read_cert_chain, read_private_key};
use crate::{fingerprint, provider, CertError, ServerIdentity, Trust};

/// File name of the development CA certificate (PEM), the file clients trust.
pub const CA_CERT_FILE: &str = "ca.pem";
/// File name of the development CA's private key (PEM, PKCS#8; 0600 on unix).
pub const CA_KEY_FILE: &str = "ca.key.pem";
/// File name of the development server's certificate chain (PEM: server certificate, then CA).
pub const SERVER_CERT_FILE: &str = "server.pem";
/// File name of the development server's private key (PEM, PKCS#8; 0600 on unix).
pub const SERVER_KEY_FILE: &str = "server.key.pem";
/// The names the development server certificate is valid for.
pub const DEV_SERVER_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// Ten years: the CA is what users copy to clients, so it should outlive most checkouts.
const CA_VALIDITY: Duration = Duration::days(3650);
/// One year; the server certificate is renewed automatically, so it can be short-lived.
const SERVER_VALIDITY: Duration = Duration::days(365);
/// A server certificate that expires sooner than this is renewed at startup, so a relay that
/// runs for weeks does not reach the expiry date mid-run.
const RENEW_BEFORE: Duration = Duration::days(30);
/// Backdating tolerates clocks that are a little behind on the client.
const BACKDATE: Duration = Duration::hours(1);

/// The development CA and server certificate, loaded from (or first created in) a directory.
///
/// The files, all PEM:
///
/// | file             | content                                              |
/// |------------------|------------------------------------------------------|
/// | `ca.pem`         | the CA certificate: give it to clients               |
/// | `ca.key.pem`     | the CA key (0600 on unix): keep it private           |
/// | `server.pem`     | server certificate for localhost/127.0.0.1/::1, then the CA certificate |
/// | `server.key.pem` | the server key (0600 on unix)                        |
///
/// The server presents the CA after its own certificate, so a client may pin the CA's
/// fingerprint ([`DevCerts::ca_fingerprint`]) as well as trust `ca.pem`.
pub struct DevCerts {
    dir: PathBuf,
    ca_cert_path: PathBuf,
    ca_cert: CertificateDer<'static>,
    server_chain: Vec<CertificateDer<'static>>,
    server_key: PrivateKeyDer<'static>,
    ca_created: bool,
    server_cert_created: bool,
}

impl DevCerts {
    /// Loads the development certificates from `dir`, creating what is missing.
    ///
    /// * No CA yet: creates `dir` if needed, a CA (ECDSA P-256, valid ten years) and a server
    ///   certificate signed by it.
    /// * A CA exists: it is reused, never replaced. If it is incomplete (certificate without
    ///   key or the reverse), expired, not a CA, or its key does not match, this fails with
    ///   an error saying which file to fix: silently making a new CA would break every client
    ///   that trusts the old one.
    /// * The server certificate is reused when it is present, matches its key, is signed by
    ///   the CA, is valid for all of [`DEV_SERVER_NAMES`] and stays valid for at least 30
    ///   more days; otherwise it is regenerated (the reason is logged).
    pub fn load_or_create(dir: &Path) -> Result<DevCerts, CertError> {
        fs::create_dir_all(dir)
            .map_err(|e| CertError::io("create the certificate directory", dir, e))?;
        let ca = Ca::load_or_create(dir)?;
        let server_cert_path = dir.join(SERVER_CERT_FILE);
        let server_key_path = dir.join(SERVER_KEY_FILE);

        let reused = match load_server(&server_cert_path, &server_key_path, &ca.cert) {
            Ok(found) => found,
            Err(reason) => {
                tracing::info!(
                    file = %server_cert_path.display(),
                    "regenerating the development server certificate: {reason}"
                );
                None
            }
        };
        let (leaf, server_key, server_cert_created) = match reused {
            Some((leaf, key)) => (leaf, key, false),
            None => {
                let (leaf, key) = create_server(&ca, &server_cert_path, &server_key_path)?;
                (leaf, key, true)
            }
        };
        Ok(DevCerts {
            dir: dir.to_path_buf(),
            ca_cert_path: dir.join(CA_CERT_FILE),
            server_chain: vec![leaf, ca.cert.clone()],
            ca_cert: ca.cert,
            server_key,
            ca_created: ca.created,
            server_cert_created,
        })
    }

    /// The directory holding the files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of `ca.pem`, the file to give clients ([`Trust::CaFile`]).
    pub fn ca_cert_path(&self) -> &Path {
        &self.ca_cert_path
    }

    /// The CA certificate (DER).
    pub fn ca_cert_der(&self) -> &CertificateDer<'static> {
        &self.ca_cert
    }

    /// SHA-256 of the CA certificate's DER as 64 lowercase hex digits (see
    /// [`crate::fingerprint`]); clients can pin it with [`Trust::Fingerprint`].
    pub fn ca_fingerprint(&self) -> String {
        fingerprint(&self.ca_cert)
    }

    /// The server's chain: its certificate, then the CA certificate.
    pub fn server_cert_chain(&self) -> &[CertificateDer<'static>] {
        &self.server_chain
    }

    /// The server certificate's private key.
    pub fn server_key(&self) -> &PrivateKeyDer<'static> {
        &self.server_key
    }

    /// The chain and key, ready for [`crate::server_config`].
    pub fn server_identity(&self) -> ServerIdentity {
        ServerIdentity::new(self.server_chain.clone(), self.server_key.clone_key())
    }

    /// How a client on this machine trusts this server: [`Trust::CaFile`] with `ca.pem`.
    pub fn trust(&self) -> Trust {
        Trust::CaFile(self.ca_cert_path.clone())
    }

    /// Whether this call created the CA (so a server can tell its user to distribute it).
    pub fn ca_created(&self) -> bool {
        self.ca_created
    }

    /// Whether this call created or renewed the server certificate.
    pub fn server_cert_created(&self) -> bool {
        self.server_cert_created
    }
}

impl std::fmt::Debug for DevCerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevCerts")
            .field("dir", &self.dir)
            .field("ca_fingerprint", &self.ca_fingerprint())
            .field("ca_created", &self.ca_created)
            .field("server_cert_created", &self.server_cert_created)
            .finish_non_exhaustive()
    }
}

/// Where the relay keeps its data (development certificates included) by default: the
/// platform's per-user local data directory (`$XDG_DATA_HOME/p2p-relay`, else
/// `~/.local/share/p2p-relay` on Linux; `~/Library/Application Support/p2p-relay` on macOS;
/// `%LOCALAPPDATA%\p2p-relay` on Windows), else `./.relay-data` when the platform names
/// none (no home directory): a per-user place that survives rebuilds and `cargo clean`.
pub fn default_data_dir() -> PathBuf {
    directories::BaseDirs::new()
        .map(|dirs| dirs.data_local_dir().join("p2p-relay"))
        .unwrap_or_else(|| PathBuf::from(".relay-data"))
}

/// The CA as loaded or created.
struct Ca {
    cert: CertificateDer<'static>,
    pem: String,
    key: KeyPair,
    not_after: OffsetDateTime,
    created: bool,
}

impl Ca {
    fn load_or_create(dir: &Path) -> Result<Ca, CertError> {
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        match (exists(&cert_path)?, exists(&key_path)?) {
            (true, true) => Ca::load(&cert_path, &key_path),
            (false, false) => Ca::create(&cert_path, &key_path),
            (true, false) => Err(CertError::IncompleteCa {
                present: cert_path,
                missing: key_path,
            }),
            (false, true) => Err(CertError::IncompleteCa {
                present: key_path,
                missing: cert_path,
            }),
        }
    }

    fn load(cert_path: &Path, key_path: &Path) -> Result<Ca, CertError> {
        let bad = |reason: String| CertError::BadCertificate {
            path: cert_path.to_path_buf(),
            reason,
        };
        let pem = fs::read_to_string(cert_path)
            .map_err(|e| CertError::io("read the CA certificate", cert_path, e))?;
        let cert = read_cert_chain(cert_path)?.swap_remove(0);
        let key =
            KeyPair::try_from(&read_private_key(key_path)?).map_err(|e| CertError::BadPem {
                path: key_path.to_path_buf(),
                what: "CA private key (PKCS#8)",
                reason: e.to_string(),
            })?;
        warn_if_readable_by_others(key_path);

        let (_, parsed) = x509_parser::parse_x509_certificate(&cert)
            .map_err(|e| bad(format!("it does not parse as X.509: {e}")))?;
        if !parsed.is_ca() {
            return Err(bad(
                "it is not a CA certificate (no basicConstraints CA:TRUE)".into(),
            ));
        }
        if parsed.public_key().subject_public_key.data.as_ref() != key.der_bytes() {
            return Err(CertError::KeyMismatch {
                cert: cert_path.to_path_buf(),
                key: key_path.to_path_buf(),
            });
        }
        let not_after = parsed.validity().not_after.to_datetime();
        let now = OffsetDateTime::now_utc();
        if not_after <= now {
            return Err(CertError::CaExpired {
                path: cert_path.to_path_buf(),
                not_after: parsed.validity().not_after.to_string(),
            });
        }
        if not_after - now < RENEW_BEFORE {
            tracing::warn!(
                file = %cert_path.display(),
                not_after = %parsed.validity().not_after,
                "the development CA expires soon; delete ca.pem and ca.key.pem to create a new \
                 one, then give clients the new ca.pem or fingerprint"
            );
        }
        Ok(Ca {
            cert,
            pem,
            key,
            not_after,
            created: false,
        })
    }

    fn create(cert_path: &Path, key_path: &Path) -> Result<Ca, CertError> {
        let key = KeyPair::generate().map_err(|source| CertError::Generate {
            what: "the development CA key",
            source,
        })?;
        let now = OffsetDateTime::now_utc();
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        // A per-CA suffix keeps two developers' CAs apart in a trust store.
        let id = &fingerprint(key.der_bytes())[..12];
        name.push(DnType::CommonName, format!("p2p-relay development CA {id}"));
        name.push(DnType::OrganizationName, "p2p-relay (development only)");
        params.distinguished_name = name;
        // Path length 0: the CA signs server certificates directly, never other CAs.
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = now - BACKDATE;
        params.not_after = now + CA_VALIDITY;
        let cert = params
            .self_signed(&key)
            .map_err(|source| CertError::Generate {
                what: "the development CA certificate",
                source,
            })?;

        // Key first, certificate last: `ca.pem` existing means the CA is complete.
        write_new(key_path, &key.serialize_pem(), true)
            .map_err(|e| CertError::io("write the CA key", key_path, e))?;
        let pem = cert.pem();
        if let Err(e) = write_new(cert_path, &pem, false) {
            // We created the key a moment ago and nobody can have used it: remove it so the
            // next run starts clean instead of finding half a CA.
            let _ = fs::remove_file(key_path);
            return Err(CertError::io("write the CA certificate", cert_path, e));
        }
        tracing::info!(
            file = %cert_path.display(),
            sha256 = %fingerprint(cert.der()),
            "created a development CA"
        );
        Ok(Ca {
            cert: cert.der().clone(),
            pem,
            key,
            not_after: params.not_after,
            created: true,
        })
    }
}

/// A server certificate (DER) with its private key.
type LeafAndKey = (CertificateDer<'static>, PrivateKeyDer<'static>);

/// Loads the server certificate and key if they are present and good for at least
/// [`RENEW_BEFORE`]. `Ok(None)`: not there; `Err(reason)`: there but unusable.
fn load_server(
    cert_path: &Path,
    key_path: &Path,
    ca: &CertificateDer<'static>,
) -> Result<Option<LeafAndKey>, String> {
    let cert_exists = exists(cert_path).map_err(|e| e.to_string())?;
    let key_exists = exists(key_path).map_err(|e| e.to_string())?;
    match (cert_exists, key_exists) {
        (false, false) => return Ok(None),
        (true, false) => return Err(format!("{} is missing", key_path.display())),
        (false, true) => return Err(format!("{} is missing", cert_path.display())),
        (true, true) => {}
    }
    let chain = read_cert_chain(cert_path).map_err(|e| e.to_string())?;
    let key = read_private_key(key_path).map_err(|e| e.to_string())?;
    check_key_matches(&chain, &key, cert_path, key_path).map_err(|e| e.to_string())?;
    let leaf = chain
        .into_iter()
        .next()
        .expect("read_cert_chain returns at least one");

    let mut roots = RootCertStore::empty();
    roots
        .add(ca.clone())
        .map_err(|e| format!("the CA is not usable as a trust anchor: {e}"))?;
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| e.to_string())?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let renew_at = UnixTime::since_unix_epoch(now + RENEW_BEFORE.unsigned_abs());
    for name in DEV_SERVER_NAMES {
        let server_name = ServerName::try_from(name).expect("static names are valid");
        verifier
            .verify_server_cert(&leaf, &[], &server_name, &[], renew_at)
            .map_err(|e| {
                format!(
                    "it fails verification against the CA for {name} as of {} days from now: {e}",
                    RENEW_BEFORE.whole_days()
                )
            })?;
    }
    warn_if_readable_by_others(key_path);
    Ok(Some((leaf, key)))
}

fn create_server(ca: &Ca, cert_path: &Path, key_path: &Path) -> Result<LeafAndKey, CertError> {
    let generate = |what| move |source| CertError::Generate { what, source };
    let issuer = Issuer::from_ca_cert_der(&ca.cert, &ca.key)
        .map_err(generate("an issuer from the development CA"))?;
    let key = KeyPair::generate().map_err(generate("the development server key"))?;
    let mut params = CertificateParams::new(
        DEV_SERVER_NAMES
            .iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>(),
    )
    .map_err(generate("the development server certificate"))?;
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, "p2p-relay development server");
    params.distinguished_name = name;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let now = OffsetDateTime::now_utc();
    params.not_before = now - BACKDATE;
    params.not_after = (now + SERVER_VALIDITY).min(ca.not_after);
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(generate("the development server certificate"))?;

    let chain_pem = format!("{}{}", ensure_newline(&cert.pem()), ensure_newline(&ca.pem));
    write_replace(key_path, &key.serialize_pem(), true)
        .map_err(|e| CertError::io("write the server key", key_path, e))?;
    write_replace(cert_path, &chain_pem, false)
        .map_err(|e| CertError::io("write the server certificate", cert_path, e))?;
    tracing::info!(file = %cert_path.display(), "created a development server certificate");
    Ok((
        cert.der().clone(),
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    ))
}

fn ensure_newline(s: &str) -> String {
    if s.ends_with('\n') {
        s.to_string()
    } else {
        format!("{s}\n")
    }
}

fn exists(path: &Path) -> Result<bool, CertError> {
    path.try_exists()
        .map_err(|e| CertError::io("check for", path, e))
}

/// Writes a file that must not exist yet (never overwrites: used for the CA).
fn write_new(path: &Path, contents: &str, private: bool) -> io::Result<()> {
    let mut file = open_options(private).create_new(true).open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

/// Replaces a file atomically: readers see the old or the new content, never half of it.
fn write_replace(path: &Path, contents: &str, private: bool) -> io::Result<()> {
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    write_new(&tmp, contents, private)?;
    fs::rename(&tmp, path)
}

fn open_options(private: bool) -> fs::OpenOptions {
    let mut options = fs::OpenOptions::new();
    options.write(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    options
}

fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = fs::metadata(path) {
            let mode = meta.permissions().mode();
            if mode & 0o077 != 0 {
                tracing::warn!(
                    file = %path.display(),
                    mode = format!("{:o}", mode & 0o777),
                    "private key is readable by other users; run chmod 600 on it"
                );
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{handshake, sign_leaf, ALPN};

    #[test]
    fn first_call_creates_all_files() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("nested").join("certs");
        let dev = DevCerts::load_or_create(&target).unwrap();
        assert!(dev.ca_created() && dev.server_cert_created());
        for file in [CA_CERT_FILE, CA_KEY_FILE, SERVER_CERT_FILE, SERVER_KEY_FILE] {
            assert!(target.join(file).is_file(), "{file} missing");
        }
        assert_eq!(dev.ca_cert_path(), target.join(CA_CERT_FILE));
        assert_eq!(dev.dir(), target);
        assert_eq!(dev.server_cert_chain().len(), 2);
        assert_eq!(&dev.server_cert_chain()[1], dev.ca_cert_der());
        assert_eq!(dev.ca_fingerprint(), fingerprint(dev.ca_cert_der()));
        assert_eq!(dev.ca_fingerprint().len(), 64);
        assert!(!dev.ca_fingerprint().contains(':'));
        assert!(!format!("{dev:?}").contains("PRIVATE"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for file in [CA_KEY_FILE, SERVER_KEY_FILE] {
                let mode = fs::metadata(target.join(file))
                    .unwrap()
                    .permissions()
                    .mode();
                assert_eq!(mode & 0o777, 0o600, "{file}");
            }
        }
    }

    #[test]
    fn second_call_reuses_everything() {
        let dir = tempfile::tempdir().unwrap();
        let first = DevCerts::load_or_create(dir.path()).unwrap();
        let ca_pem = fs::read(dir.path().join(CA_CERT_FILE)).unwrap();
        let second = DevCerts::load_or_create(dir.path()).unwrap();
        assert!(!second.ca_created() && !second.server_cert_created());
        assert_eq!(first.ca_fingerprint(), second.ca_fingerprint());
        assert_eq!(first.server_cert_chain(), second.server_cert_chain());
        assert_eq!(
            first.server_key().secret_der(),
            second.server_key().secret_der()
        );
        assert_eq!(fs::read(dir.path().join(CA_CERT_FILE)).unwrap(), ca_pem);
    }

    #[test]
    fn missing_server_cert_is_recreated_with_the_same_ca() {
        let dir = tempfile::tempdir().unwrap();
        let first = DevCerts::load_or_create(dir.path()).unwrap();
        fs::remove_file(dir.path().join(SERVER_CERT_FILE)).unwrap();
        let second = DevCerts::load_or_create(dir.path()).unwrap();
        assert!(!second.ca_created() && second.server_cert_created());
        assert_eq!(first.ca_fingerprint(), second.ca_fingerprint());
        assert_ne!(first.server_cert_chain()[0], second.server_cert_chain()[0]);
        // The new certificate is trusted by clients that already trust the CA.
        let client = first.trust().client_config(&[ALPN]).unwrap();
        let server = crate::server_config(&second.server_identity(), &[ALPN]).unwrap();
        handshake(client, server, "::1").unwrap();
    }

    #[test]
    fn expired_or_expiring_server_cert_is_renewed() {
        for (not_before_days, not_after_days) in [(-30, -1), (-30, 10)] {
            let dir = tempfile::tempdir().unwrap();
            let first = DevCerts::load_or_create(dir.path()).unwrap();
            let old = sign_leaf(dir.path(), not_before_days, not_after_days);
            crate::test_util::write_leaf(dir.path(), &old);
            let second = DevCerts::load_or_create(dir.path()).unwrap();
            assert!(second.server_cert_created(), "{not_after_days}");
            assert_eq!(first.ca_fingerprint(), second.ca_fingerprint());
            assert_ne!(second.server_cert_chain()[0], old.cert);
            let client = first.trust().client_config(&[ALPN]).unwrap();
            let server = crate::server_config(&second.server_identity(), &[ALPN]).unwrap();
            handshake(client, server, "localhost").unwrap();
        }
    }

    #[test]
    fn half_a_ca_is_an_error_and_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        DevCerts::load_or_create(dir.path()).unwrap();
        let ca_pem = fs::read(dir.path().join(CA_CERT_FILE)).unwrap();
        fs::remove_file(dir.path().join(CA_KEY_FILE)).unwrap();
        let err = DevCerts::load_or_create(dir.path()).unwrap_err();
        assert!(matches!(err, CertError::IncompleteCa { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains(CA_KEY_FILE) && msg.contains("incomplete"),
            "{msg}"
        );
        assert_eq!(fs::read(dir.path().join(CA_CERT_FILE)).unwrap(), ca_pem);
        assert!(!dir.path().join(CA_KEY_FILE).exists());
    }

    #[test]
    fn a_ca_key_from_elsewhere_is_an_error_and_is_left_alone() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        DevCerts::load_or_create(a.path()).unwrap();
        DevCerts::load_or_create(b.path()).unwrap();
        fs::copy(b.path().join(CA_KEY_FILE), a.path().join(CA_KEY_FILE)).unwrap();
        let ca_pem = fs::read(a.path().join(CA_CERT_FILE)).unwrap();
        let err = DevCerts::load_or_create(a.path()).unwrap_err();
        assert!(matches!(err, CertError::KeyMismatch { .. }), "{err:?}");
        assert_eq!(fs::read(a.path().join(CA_CERT_FILE)).unwrap(), ca_pem);
    }

    #[test]
    fn a_leaf_certificate_in_place_of_the_ca_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        DevCerts::load_or_create(dir.path()).unwrap();
        let server_pem = fs::read_to_string(dir.path().join(SERVER_CERT_FILE)).unwrap();
        let leaf_only = server_pem
            .split_inclusive("-----END CERTIFICATE-----")
            .next()
            .unwrap();
        fs::write(dir.path().join(CA_CERT_FILE), leaf_only).unwrap();
        fs::copy(
            dir.path().join(SERVER_KEY_FILE),
            dir.path().join(CA_KEY_FILE),
        )
        .unwrap();
        let msg = DevCerts::load_or_create(dir.path())
            .unwrap_err()
            .to_string();
        assert!(msg.contains("is not a CA certificate"), "{msg}");
        assert!(msg.contains(CA_CERT_FILE), "{msg}");
    }

    /// The lookup itself is the `directories` crate's; what is ours is the folder's name.
    /// (`native-client/cli/tests/cli.rs` runs the CLI with `XDG_DATA_HOME` set and finds
    /// the certificates there.)
    #[test]
    fn data_dir_is_named_after_the_relay() {
        let dir = default_data_dir();
        assert!(
            dir.ends_with("p2p-relay") || dir == Path::new(".relay-data"),
            "{}",
            dir.display()
        );
    }
}
