//! The p2p relay's load tool as a library: a minimal Socket.IO client of both protocol
//! generations ([`sio`]), one interface over it and the native QUIC client ([`endpoint`]),
//! pair drivers for emits, acks and streams ([`pair`]), idle connection sets ([`idle`]),
//! and the references the relay is measured against: a bare socketioxide forwarder
//! ([`bare`]) and bare quinn ([`quinn_ref`]). The criterion benches use it too.

pub mod bare;
pub mod endpoint;
pub mod idle;
pub mod pair;
pub mod quinn_ref;
pub mod sio;
pub mod stats;
