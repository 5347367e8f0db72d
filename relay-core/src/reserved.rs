//! Event names no client may relay.
//!
//! Socket.IO gives these names meaning on the receiving side; relaying one fires the
//! receiver's (or the server's) own lifecycle handlers. The original server forwarded a
//! relayed `disconnect` and dropped a client that was still connected. Native peers can pair
//! with Socket.IO peers, so the rule holds for every transport.

const RESERVED: [&str; 6] = [
    "connect",
    "connect_error",
    "disconnect",
    "disconnecting",
    "newListener",
    "removeListener",
];

pub fn is_reserved_event(name: &str) -> bool {
    RESERVED.contains(&name)
}
