//! The kinds of failed requests: the `u16` in `WireReply::Failed` and
//! `ServerFrame::ServerError` (docs/PROTOCOL.md 2.5).
//!
//! The relay's rules decide which kind a failure is (`relay_core::RequestError::code`), the
//! native client branches on it (`native_client::ErrorKind`): both take the kinds from the
//! one table here, so a kind the protocol adds reaches both or neither compiles.

/// Hands the table of request failure kinds to the macro named `$callback`, as
/// `$callback! { $( $(#[doc = ...])* Variant = number, )* }`, so that an enum built from it
/// (the client's `ErrorKind`) has exactly the protocol's kinds, with their numbers and
/// meanings, and cannot drift from [`ErrorCode`], which is built from it too.
#[doc(hidden)]
#[macro_export]
macro_rules! with_error_codes {
    ($callback:ident) => {
        $callback! {
            /// The request was not understood: bad arguments or frame, an empty or reserved
            /// event name, an invalid target id, arguments without a JSON form for a
            /// Socket.IO peer.
            Invalid = 1,
            /// The target is not connected to the relay (it may connect later).
            NotConnected = 2,
            /// The request needs a pairing (with that target) that does not exist.
            NotPaired = 3,
            /// Pairing refused by the rules: to oneself, already paired, already registering.
            PairingConflict = 4,
            /// The payload is over the relay's limit (its `--max-message-bytes`).
            TooLarge = 5,
            /// The other client did not answer in time (the relay's `--ack-timeout-ms`).
            Timeout = 6,
            /// The other client disconnected before answering.
            PeerGone = 7,
            /// A per-connection limit was reached (pending requests, streams, chunks): wait
            /// for some to complete.
            LimitReached = 8,
            /// The receiver's queue is full: it reads too slowly; try again later.
            QueueFull = 9,
            /// The client went faster than its rate limit (requests or payload bytes per
            /// second): slow down (the limits are in the relay's `Welcome`).
            RateLimited = 10,
            /// A `peers` claim (the client's or the target's) forbids the pairing.
            Forbidden = 11,
            /// Cluster mode: another relay node is needed and cannot be reached now; retry
            /// later.
            Unavailable = 12,
        }
    };
}

macro_rules! declare_error_code {
    ( $( $(#[$doc:meta])* $variant:ident = $value:literal, )* ) => {
        /// The kind of a failure, stable across versions: what a native client matches on.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u16)]
        pub enum ErrorCode {
            $( $(#[$doc])* $variant = $value, )*
        }

        impl ErrorCode {
            /// Every kind, in the order of their numbers (an array, so that a table with
            /// one entry per kind, such as the relay's metrics, can be sized by it).
            pub const ALL: [ErrorCode; [$($value),*].len()] = [$(ErrorCode::$variant),*];
        }
    };
}

with_error_codes!(declare_error_code);

impl ErrorCode {
    /// The number on the wire.
    pub fn as_u16(self) -> u16 {
        self as u16
    }

    /// The kind with this number, if this protocol version has one.
    pub fn from_u16(raw: u16) -> Option<Self> {
        Self::ALL.iter().copied().find(|c| c.as_u16() == raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_distinct() {
        let mut seen = std::collections::HashSet::new();
        for raw in 0..32u16 {
            if let Some(code) = ErrorCode::from_u16(raw) {
                assert_eq!(code.as_u16(), raw);
                assert!(seen.insert(code));
            }
        }
        assert_eq!(seen.len(), 12);
        let numbers: Vec<u16> = ErrorCode::ALL.iter().map(|c| c.as_u16()).collect();
        assert_eq!(numbers, (1..=12).collect::<Vec<u16>>());
    }
}
