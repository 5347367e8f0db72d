//! QUIC application error codes: why the relay (or a client) closed a connection, and why a
//! P2P stream was reset or stopped. A client reads them from
//! `ConnectionError::ApplicationClosed` and from stream read/write errors.
//!
//! Each code is declared once, with its number and its text, so the numbers on the wire
//! and the words in error messages cannot drift apart.

use std::fmt;

/// Declares a code enum from one table of `Variant = number => "text"`, with the
/// conversions both ways and `Display` (the text).
macro_rules! codes {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $value:literal => $text:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )*
        }

        impl $name {
            /// Every code, in the order of their numbers.
            pub const ALL: &'static [$name] = &[$($name::$variant),*];

            /// The number on the wire.
            pub const fn code(self) -> u32 {
                match self {
                    $($name::$variant => $value,)*
                }
            }

            /// What the code means, for a person.
            pub const fn text(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)*
                }
            }

            /// The code with this number, if this protocol version has one. Takes a u64
            /// because QUIC carries codes as variable-length integers of up to 62 bits.
            pub fn from_code(code: u64) -> Option<Self> {
                Self::ALL.iter().copied().find(|c| u64::from(c.code()) == code)
            }
        }

        impl From<$name> for u32 {
            fn from(code: $name) -> u32 {
                code.code()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.text())
            }
        }
    };
}

codes! {
    /// Why a connection was closed: the code of its CONNECTION_CLOSE, and of the `Refused`
    /// and `Closing` frames that announce it.
    pub enum CloseCode {
        /// Closed on purpose with nothing wrong.
        Normal = 0x0 => "closed normally",
        /// The peer broke the protocol (no hello first, a stream opened where none may be).
        ProtocolViolation = 0x1 => "protocol violation",
        /// The hello named a protocol version the relay does not speak.
        VersionMismatch = 0x2 => "protocol version mismatch",
        /// A control frame was larger than the limit; framing cannot be trusted after it.
        FrameTooLarge = 0x3 => "control frame too large",
        /// The relay refused the hello (bad or duplicate clientId, authentication, full).
        Refused = 0x4 => "connection refused",
        /// A newer connection with the same clientId replaced this one.
        Replaced = 0x5 => "replaced by a newer connection with the same clientId",
        /// The relay is shutting down.
        Shutdown = 0x6 => "relay shutting down",
        /// The client did not read what it was sent: its queue in the relay went over its
        /// byte cap (`--outbox-bytes`). The reason names the size.
        SlowReader = 0x7 => "closed for not reading: too much was queued toward it",
        /// The relay's operator disconnected this client.
        Disconnected = 0x8 => "disconnected by the relay's operator",
        /// The token the client was admitted with expired (its `exp` passed): connect
        /// again with a new one.
        TokenExpired = 0x9 => "the connection's token expired",
    }
}

codes! {
    /// Why a P2P stream was reset (its reader sees it) or stopped (its writer sees it).
    pub enum ResetCode {
        /// A data stream named a stream id that was not granted to this connection.
        NotGranted = 0x10 => "stream was not granted",
        /// The other end of the P2P stream reset it.
        PeerReset = 0x11 => "the peer reset the stream",
        /// The other end's connection was lost.
        PeerGone = 0x12 => "the peer's connection was lost",
        /// The pairing ended (unregister or disconnect), and with it every stream.
        Closed = 0x13 => "the pairing ended",
        /// The data stream's header was missing, malformed or too slow to arrive.
        BadHeader = 0x14 => "bad stream header",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_stable_distinct_and_round_trip() {
        let close: Vec<u32> = CloseCode::ALL.iter().map(|c| c.code()).collect();
        let reset: Vec<u32> = ResetCode::ALL.iter().map(|c| c.code()).collect();
        assert_eq!(close, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
        assert_eq!(reset, [0x10, 0x11, 0x12, 0x13, 0x14]);
        for code in CloseCode::ALL {
            assert_eq!(CloseCode::from_code(code.code().into()), Some(*code));
        }
        for code in ResetCode::ALL {
            assert_eq!(ResetCode::from_code(code.code().into()), Some(*code));
            assert_eq!(code.to_string(), code.text());
        }
        assert_eq!(CloseCode::from_code(0x10), None);
        assert_eq!(ResetCode::from_code(1 << 40), None);
    }
}
