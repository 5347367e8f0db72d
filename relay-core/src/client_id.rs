//! The name a client goes by: checked once at the edge so the rest of the core can trust it.

use std::fmt;
use std::sync::Arc;

/// Longest accepted clientId, in bytes: a bound of the native protocol (a list page's size
/// follows from it), so declared in the wire crate.
pub use p2p_relay_wire::MAX_CLIENT_ID_BYTES;

/// A validated client id: 1 to [`MAX_CLIENT_ID_BYTES`] bytes of UTF-8 without control
/// characters. Cheap to clone (shared string), because it is copied into every pairing,
/// pending request and reply.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(Arc<str>);

/// Why a claimed clientId was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidClientId {
    #[error("clientId must not be empty")]
    Empty,
    #[error("clientId is {0} bytes long; the limit is {MAX_CLIENT_ID_BYTES}")]
    TooLong(usize),
    #[error("clientId must not contain control characters")]
    ControlCharacter,
    /// Only a front end that decodes the id from bytes (a percent-encoded URL query) can
    /// meet this: two different byte strings must never become the same id.
    #[error("clientId is not valid UTF-8 once percent-decoded (byte {byte:#04x} at {at})")]
    NotUtf8 { byte: u8, at: usize },
}

impl ClientId {
    pub fn new(raw: &str) -> Result<Self, InvalidClientId> {
        if raw.is_empty() {
            return Err(InvalidClientId::Empty);
        }
        if raw.len() > MAX_CLIENT_ID_BYTES {
            return Err(InvalidClientId::TooLong(raw.len()));
        }
        if raw.chars().any(char::is_control) {
            return Err(InvalidClientId::ControlCharacter);
        }
        Ok(Self(Arc::from(raw)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl TryFrom<&str> for ClientId {
    type Error = InvalidClientId;
    fn try_from(raw: &str) -> Result<Self, Self::Error> {
        Self::new(raw)
    }
}

/// Lets maps keyed by `ClientId` be searched with a plain `&str` (the hash of the shared
/// string equals the hash of the `str`).
impl std::borrow::Borrow<str> for ClientId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for ClientId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_and_unicode_ids() {
        assert_eq!(ClientId::new("A").unwrap().as_str(), "A");
        assert_eq!(ClientId::new("gerät-7").unwrap().as_str(), "gerät-7");
        assert!(ClientId::new(&"x".repeat(MAX_CLIENT_ID_BYTES)).is_ok());
    }

    #[test]
    fn refuses_empty_long_and_control() {
        assert_eq!(ClientId::new(""), Err(InvalidClientId::Empty));
        assert_eq!(
            ClientId::new(&"x".repeat(MAX_CLIENT_ID_BYTES + 1)),
            Err(InvalidClientId::TooLong(MAX_CLIENT_ID_BYTES + 1))
        );
        assert_eq!(
            ClientId::new("a\nb"),
            Err(InvalidClientId::ControlCharacter)
        );
        // Length is counted in bytes, not characters.
        assert!(ClientId::new(&"é".repeat(65)).is_err());
    }
}
