//! The p2p-relay server: one relay core with its Socket.IO gateway and QUIC front end.

pub mod admin;
pub mod auth;
pub mod cluster;
pub mod config;
pub mod drain;
pub mod listen;
pub mod logging;
pub mod quic;
pub mod server;
pub mod service;
pub mod settings;
pub mod signals;

pub use config::Settings;
pub use server::Server;
