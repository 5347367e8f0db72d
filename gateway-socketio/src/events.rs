//! The legacy plugin's event names (docs/PROTOCOL.md Part 1), exact strings.

pub const P2P_REGISTER: &str = relay_core::P2P_REGISTER;
pub const P2P_UNREGISTER: &str = "P2P_UNREGISTER";
pub const P2P_DISCONNECT: &str = "P2P_DISCONNECT";
pub const P2P_EMIT: &str = "P2P_EMIT";
pub const P2P_EMIT_ACKNOWLEDGE: &str = "P2P_EMIT_ACKNOWLEDGE";
pub const LIST_CLIENTS: &str = "LIST_CLIENTS";
pub const SERVER_ERROR: &str = "SERVER_ERROR";
pub const P2P_REGISTER_STREAM: &str = relay_core::P2P_REGISTER_STREAM;
pub const P2P_EMIT_STREAM: &str = relay_core::P2P_EMIT_STREAM;
/// Ours, not the 1.4.1 plugin's (which ignores it): sent once on connect, with an object
/// of the limits that apply to the client (see `docs/CONVENTIONS.md`).
pub const P2P_LIMITS: &str = "P2P_LIMITS";
