//! How the binary ends on an error: which exit code, and the one line that says why.
//!
//! Exit 2 is a refused configuration: nothing will start until the operator changes a
//! setting or a file it names (a secret file missing, empty or too short, a bad
//! `--auth-url`, `--cluster` without a secret, an admin listener beyond loopback without a
//! token, a TLS file that cannot be read or used). Exit 1 is everything else: the relay
//! was configured well and still could not start or run (a port in use, Redis out of
//! reach, a front end failing).

use std::error::Error;

use crate::admin::{AccessError, AdminError};
use crate::auth::AuthSetupError;
use crate::cluster::ClusterError;

/// Exit code of a refused configuration (as clap's for a usage error).
pub const REFUSED: u8 = 2;
/// Exit code of a relay that could not start or stopped on a failure.
pub const FAILED: u8 = 1;

/// [`REFUSED`] when any error in the chain of `e` is a refused setting, else [`FAILED`].
pub fn exit_code(e: &anyhow::Error) -> u8 {
    if e.chain().any(is_refused) {
        REFUSED
    } else {
        FAILED
    }
}

/// Whether `e` itself says the configuration is refused.
pub fn is_refused(e: &(dyn Error + 'static)) -> bool {
    if e.is::<AccessError>() || e.is::<crate::settings::ShortSecret>() {
        return true;
    }
    if let Some(e) = e.downcast_ref::<AdminError>() {
        return matches!(e, AdminError::Access(_));
    }
    if let Some(e) = e.downcast_ref::<AuthSetupError>() {
        // Building the HTTP client fails on the machine, not on a setting.
        return !matches!(e, AuthSetupError::Client(_));
    }
    if let Some(e) = e.downcast_ref::<ClusterError>() {
        return matches!(
            e,
            ClusterError::Url(_)
                | ClusterError::ClusterUrls(_)
                | ClusterError::NoSecret
                | ClusterError::Secret { .. }
                | ClusterError::EmptySecret(_)
                | ClusterError::ShortSecret(_)
        );
    }
    if let Some(e) = e.downcast_ref::<certs::CertError>() {
        // The --tls-cert / --tls-key files; the development CA's own files are the
        // relay's state, not a setting.
        return match e {
            certs::CertError::Io { action, .. } => {
                matches!(
                    *action,
                    "read the certificate file" | "read the private key file"
                )
            }
            certs::CertError::BadPem { .. }
            | certs::CertError::BadCertificate { .. }
            | certs::CertError::KeyMismatch { .. } => true,
            _ => false,
        };
    }
    false
}

/// The error and its causes on one line, `outer: cause: cause`, leaving out a cause whose
/// text the line already holds: most of our errors put their source in their own message
/// (`cannot read FILE: No such file or directory (os error 2)`) and also return it as
/// their `source()`, and a cause said twice reads like two problems.
pub fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn not_found() -> std::io::Error {
        std::io::Error::from(std::io::ErrorKind::NotFound)
    }

    #[test]
    fn a_cause_already_in_the_message_is_said_once() {
        let e = anyhow::Error::from(AuthSetupError::SecretUnreadable {
            path: "/etc/secret".into(),
            source: std::io::Error::from_raw_os_error(2),
        });
        let line = one_line(&e);
        assert_eq!(line.matches("(os error 2)").count(), 1, "{line}");
        assert!(line.starts_with("cannot read the auth secret file /etc/secret: "));
        let wrapped = anyhow::Error::from(not_found()).context("cannot start");
        assert_eq!(one_line(&wrapped), format!("cannot start: {}", not_found()));
    }

    #[test]
    fn settings_are_refused_and_failures_are_not() {
        let refused: Vec<anyhow::Error> = vec![
            AuthSetupError::SecretEmpty("s".into()).into(),
            AuthSetupError::BadUrl {
                url: "x".into(),
                reason: "y".into(),
            }
            .into(),
            ClusterError::NoSecret.into(),
            AccessError::TokenRequired {
                addr: "0.0.0.0:1".parse().unwrap(),
            }
            .into(),
            AdminError::Access(AccessError::EmptyToken { origin: "o".into() }).into(),
            certs::CertError::Io {
                action: "read the certificate file",
                path: "/c.pem".into(),
                source: not_found(),
            }
            .into(),
            anyhow::Error::from(ClusterError::EmptySecret("s".into())).context("starting"),
        ];
        for e in &refused {
            assert_eq!(exit_code(e), REFUSED, "{e:#}");
        }
        let failed: Vec<anyhow::Error> = vec![
            AuthSetupError::Client("tls".into()).into(),
            ClusterError::NodeLink("x".into()).into(),
            certs::CertError::Io {
                action: "write the CA key",
                path: "/ca.key".into(),
                source: not_found(),
            }
            .into(),
            anyhow::anyhow!("no async runtime for QUIC"),
        ];
        for e in &failed {
            assert_eq!(exit_code(e), FAILED, "{e:#}");
        }
    }
}
