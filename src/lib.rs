//! The p2p-relay server: one relay core with its Socket.IO gateway and QUIC front end.

pub mod auth;
pub mod cluster;
pub mod config;
pub mod quic;
pub mod server;

pub use config::Settings;
pub use server::Server;
