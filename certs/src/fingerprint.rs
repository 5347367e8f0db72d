//! SHA-256 certificate fingerprints: the one format we print and the forms we accept.

use sha2::{Digest, Sha256};

use crate::CertError;

/// The SHA-256 of `der` (a certificate in DER form) as 64 lowercase hex digits, no separators.
///
/// Plain hex is what `sha256sum` prints for the DER file, so users can check a fingerprint
/// with standard tools, and it can be pasted into a command line without quoting.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

pub(crate) fn digest(der: &[u8]) -> [u8; 32] {
    Sha256::digest(der).into()
}

/// Parses a SHA-256 fingerprint given by a user.
///
/// Accepts 64 hex digits either plain (`ab01…`) or with a colon between bytes (`AB:01:…`),
/// in any letter case, surrounded by whitespace or not, and optionally prefixed with
/// `sha256:` / `sha-256:` — the forms that `sha256sum`, `openssl x509 -fingerprint -sha256`
/// and browsers show.
pub fn parse_fingerprint(input: &str) -> Result<[u8; 32], CertError> {
    let invalid = |reason: String| CertError::InvalidFingerprint {
        input: input.to_string(),
        reason,
    };
    let mut text = input.trim();
    for prefix in ["sha256:", "sha-256:"] {
        if let Some(head) = text.get(..prefix.len()) {
            if head.eq_ignore_ascii_case(prefix) {
                text = text[prefix.len()..].trim_start();
            }
        }
    }
    let digits: String = if text.contains(':') {
        let mut out = String::with_capacity(64);
        for (i, byte) in text.split(':').enumerate() {
            if byte.len() != 2 {
                return Err(invalid(format!(
                    "byte {} is {:?}; with ':' separators each byte must be exactly 2 hex digits",
                    i + 1,
                    byte
                )));
            }
            out.push_str(byte);
        }
        out
    } else {
        text.to_string()
    };
    if let Some(bad) = digits.chars().find(|c| !c.is_ascii_hexdigit()) {
        return Err(invalid(format!("{bad:?} is not a hex digit")));
    }
    if digits.len() != 64 {
        return Err(invalid(format!(
            "it has {} hex digits (a SHA-256 has 64)",
            digits.len()
        )));
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(&digits, &mut out).map_err(|e| invalid(e.to_string()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_plain_lowercase_hex_of_sha256() {
        // sha256("abc")
        assert_eq!(
            fingerprint(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn parse_accepts_plain_colon_case_and_prefix() {
        let plain = fingerprint(b"abc");
        let expected = digest(b"abc");
        let colons = plain
            .as_bytes()
            .chunks(2)
            .map(|c| std::str::from_utf8(c).unwrap().to_ascii_uppercase())
            .collect::<Vec<_>>()
            .join(":");
        for form in [
            plain.clone(),
            plain.to_ascii_uppercase(),
            colons.clone(),
            colons.to_ascii_lowercase(),
            format!("  {plain}\n"),
            format!("sha256:{plain}"),
            format!("SHA256:{colons}"),
            format!("SHA-256: {colons}"),
        ] {
            assert_eq!(parse_fingerprint(&form).unwrap(), expected, "form {form:?}");
        }
    }

    #[test]
    fn parse_rejects_bad_input_with_reason() {
        let plain = fingerprint(b"abc");
        let cases = [
            (plain[..62].to_string(), "62 hex digits"),
            (format!("{plain}00"), "66 hex digits"),
            (format!("{}zz", &plain[..62]), "'z' is not a hex digit"),
            ("ab:c:".to_string(), "exactly 2 hex digits"),
            (String::new(), "0 hex digits"),
        ];
        for (input, reason) in cases {
            let err = parse_fingerprint(&input).unwrap_err().to_string();
            assert!(err.contains(reason), "{input:?}: {err}");
            assert!(err.contains("64 hex digits"), "{err}");
        }
    }
}
