//! The short header at the start of every P2P data stream: which granted stream this is.
//! It is the only part of a data stream the relay parses.

/// Marks a data stream, so that a stray stream is told apart from a stream of an older or
/// newer protocol.
pub const MAGIC: [u8; 4] = *b"P2PS";
/// Header layout version.
pub const HEADER_VERSION: u8 = 1;
/// Encoded size: magic, version, stream id (u64 big-endian).
pub const HEADER_LEN: usize = 4 + 1 + 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamHeader {
    pub stream: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("not a p2p-relay data stream (bad magic)")]
    BadMagic,
    #[error("data stream header version {0} is not supported (expected {HEADER_VERSION})")]
    Version(u8),
}

impl StreamHeader {
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[..4].copy_from_slice(&MAGIC);
        out[4] = HEADER_VERSION;
        out[5..].copy_from_slice(&self.stream.to_be_bytes());
        out
    }

    pub fn decode(bytes: &[u8; HEADER_LEN]) -> Result<Self, HeaderError> {
        if bytes[..4] != MAGIC {
            return Err(HeaderError::BadMagic);
        }
        if bytes[4] != HEADER_VERSION {
            return Err(HeaderError::Version(bytes[4]));
        }
        let mut id = [0u8; 8];
        id.copy_from_slice(&bytes[5..]);
        Ok(Self {
            stream: u64::from_be_bytes(id),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let header = StreamHeader {
            stream: 0x0102_0304_0506_0708,
        };
        assert_eq!(StreamHeader::decode(&header.encode()), Ok(header));
    }

    #[test]
    fn refuses_foreign_bytes() {
        let mut bytes = StreamHeader { stream: 1 }.encode();
        bytes[0] = b'X';
        assert_eq!(StreamHeader::decode(&bytes), Err(HeaderError::BadMagic));
        let mut bytes = StreamHeader { stream: 1 }.encode();
        bytes[4] = 9;
        assert_eq!(StreamHeader::decode(&bytes), Err(HeaderError::Version(9)));
    }
}
