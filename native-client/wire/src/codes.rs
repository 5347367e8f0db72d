//! QUIC application error codes, used when the relay closes a connection or resets a stream.
//! A client reads them from `ConnectionError::ApplicationClosed` and stream read/write errors.

/// Closed on purpose with nothing wrong.
pub const NORMAL: u32 = 0x0;
/// The peer broke the protocol (no hello first, a stream opened where none may be).
pub const PROTOCOL_VIOLATION: u32 = 0x1;
/// The hello named a protocol version the relay does not speak.
pub const VERSION_MISMATCH: u32 = 0x2;
/// A control frame was larger than the limit; framing cannot be trusted after it.
pub const FRAME_TOO_LARGE: u32 = 0x3;
/// The relay refused the hello (bad or duplicate clientId, authentication).
pub const REFUSED: u32 = 0x4;
/// A newer connection with the same clientId replaced this one.
pub const REPLACED: u32 = 0x5;
/// The relay is shutting down.
pub const SHUTDOWN: u32 = 0x6;

/// A data stream named a stream id that was not granted to this connection.
pub const STREAM_NOT_GRANTED: u32 = 0x10;
/// The other end of the P2P stream reset it.
pub const STREAM_PEER_RESET: u32 = 0x11;
/// The other end's connection was lost.
pub const STREAM_PEER_GONE: u32 = 0x12;
/// The pairing ended (unregister or disconnect), and with it every stream.
pub const STREAM_CLOSED: u32 = 0x13;
/// The data stream's header was missing, malformed or too slow to arrive.
pub const STREAM_BAD_HEADER: u32 = 0x14;

/// A short description of a code, for error messages.
pub fn describe(code: u64) -> &'static str {
    match code {
        0x0 => "closed normally",
        0x1 => "protocol violation",
        0x2 => "protocol version mismatch",
        0x3 => "control frame too large",
        0x4 => "connection refused",
        0x5 => "replaced by a newer connection with the same clientId",
        0x6 => "relay shutting down",
        0x10 => "stream was not granted",
        0x11 => "the peer reset the stream",
        0x12 => "the peer's connection was lost",
        0x13 => "the pairing ended",
        0x14 => "bad stream header",
        _ => "unknown error code",
    }
}
