//! How a client's transport carries P2P streams, and what that makes of a stream between
//! two clients. The kind is decided here once, from both ends, so no front end has to guess
//! the other end's transport.

/// The stream model of a client's transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// Every P2P stream is a native QUIC stream of its own (the QUIC front end).
    Native,
    /// The socket.io-p2p-plugin 1.4.1 model: a stream is a run of acknowledged
    /// `P2P_EMIT_STREAM` emits, with no stream id and no end of stream.
    Legacy,
}

/// What a granted stream is, given its two ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamKind {
    /// Native to native: the front end splices the two QUIC streams; bytes never reach the
    /// core. Held until a front end reports it done, or the pairing ends.
    Spliced,
    /// Native to legacy: the native side's bytes travel as `P2P_EMIT_STREAM` chunks through
    /// the core, which keeps the legacy protocol's rules (one chunk in flight toward the
    /// legacy side; a legacy chunk acked only once the native side took it). Held like a
    /// spliced stream.
    Bridged,
    /// Legacy to legacy: chunks are ordinary acknowledged emits between the two clients and
    /// the relay holds nothing for the stream, so its grant is released as soon as it is
    /// made (the legacy protocol never says when such a stream ends).
    Chunked,
}

impl StreamKind {
    pub fn between(a: Transport, b: Transport) -> Self {
        match (a, b) {
            (Transport::Native, Transport::Native) => StreamKind::Spliced,
            (Transport::Legacy, Transport::Legacy) => StreamKind::Chunked,
            _ => StreamKind::Bridged,
        }
    }

    /// Whether the relay keeps a grant of this kind until the stream or pairing ends.
    pub fn is_held(self) -> bool {
        !matches!(self, StreamKind::Chunked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_follows_both_ends() {
        use Transport::*;
        assert_eq!(StreamKind::between(Native, Native), StreamKind::Spliced);
        assert_eq!(StreamKind::between(Native, Legacy), StreamKind::Bridged);
        assert_eq!(StreamKind::between(Legacy, Native), StreamKind::Bridged);
        assert_eq!(StreamKind::between(Legacy, Legacy), StreamKind::Chunked);
        assert!(!StreamKind::Chunked.is_held());
    }
}
