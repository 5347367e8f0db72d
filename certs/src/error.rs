//! The one error type of this crate.

use std::io;
use std::path::PathBuf;

/// Why certificates could not be loaded, created or turned into a TLS configuration.
///
/// Every message names the file involved and says what to do about it, because these errors
/// are shown to a person starting a relay or a client, usually at startup.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// A file or directory could not be read, written or created.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. "read the CA certificate".
        action: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: io::Error,
    },

    /// A file was read but its PEM content is unusable.
    #[error("{} does not contain a usable {what}: {reason}", path.display())]
    BadPem {
        /// The file involved.
        path: PathBuf,
        /// What the file should hold, e.g. "certificate (PEM block BEGIN CERTIFICATE)".
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },

    /// A certificate parsed as PEM but is not a certificate this crate can use.
    #[error("cannot use the certificate in {}: {reason}", path.display())]
    BadCertificate {
        /// The file involved.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// A private key does not belong to the certificate it is paired with.
    #[error(
        "the private key in {} does not belong to the certificate in {}; \
         check that the two files were issued together",
        key.display(),
        cert.display()
    )]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The private key file.
        key: PathBuf,
    },

    /// Only half of the development CA exists on disk.
    ///
    /// The CA is never replaced silently: clients may already trust it, and a new CA would
    /// break them without telling anyone why.
    #[error(
        "found {} but not {}: the development CA is incomplete. Restore the missing file, or \
         delete {} to create a new CA (clients that trust the old CA must then be given the \
         new ca.pem or fingerprint)",
        present.display(),
        missing.display(),
        present.display()
    )]
    IncompleteCa {
        /// The file that is there.
        present: PathBuf,
        /// The file that is missing.
        missing: PathBuf,
    },

    /// The development CA on disk is no longer valid.
    #[error(
        "the development CA {} expired on {not_after}; delete it and its key ca.key.pem to \
         create a new one, then give clients the new ca.pem or fingerprint",
        path.display()
    )]
    CaExpired {
        /// The CA certificate file.
        path: PathBuf,
        /// When it expired.
        not_after: String,
    },

    /// Generating a key or a certificate failed.
    #[error("cannot generate {what}: {source}")]
    Generate {
        /// What was being generated.
        what: &'static str,
        /// The underlying rcgen error.
        #[source]
        source: rcgen::Error,
    },

    /// A fingerprint given for pinning is malformed.
    #[error(
        "invalid certificate fingerprint {input:?}: {reason}; expected the SHA-256 of a \
         certificate as 64 hex digits, with or without ':' between bytes"
    )]
    InvalidFingerprint {
        /// The text as given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },

    /// No root certificate could be loaded from the operating system.
    #[error(
        "no usable system root certificates found ({details}); install the system's CA \
         bundle (e.g. the ca-certificates package), point SSL_CERT_FILE at one, or trust \
         the relay with a CA file or a fingerprint instead"
    )]
    NoSystemRoots {
        /// What the loader reported.
        details: String,
    },

    /// rustls refused to build a configuration.
    #[error("cannot build the TLS {side} configuration: {source}")]
    Tls {
        /// "client" or "server".
        side: &'static str,
        /// The underlying rustls error.
        #[source]
        source: rustls::Error,
    },
}

impl CertError {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        CertError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
