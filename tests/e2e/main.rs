//! The end-to-end tests of the relay: one test binary, one module per area, so that the
//! tree links the whole stack once instead of once per file. Each module drives the real
//! relay (in this process through `Server::start`, or the built `p2p-relay` binary) over
//! loopback; `cargo test --release --test e2e proxy::` runs one area.
//!
//! Tests that need a process of their own live beside this one: `tests/cluster_tls.rs`
//! (it sets `SSL_CERT_FILE` for the whole process) and `tests/js` (the Node.js and
//! browser suites, which run for minutes and keep the cores busy).

#[path = "../common/mod.rs"]
mod common;
#[path = "../cross/mod.rs"]
mod cross;
#[path = "../redis/mod.rs"]
mod redis;
#[path = "../sio/mod.rs"]
mod sio;

mod admin;
mod cluster;
mod cluster_failures;
mod config_layers;
mod cors;
mod cross_transport;
mod defaults;
mod doc_references;
mod drain;
mod fuzz_payload;
mod fuzz_wire;
mod http_timeouts;
mod load_tool;
mod proxy;
mod quic_cli;
mod quic_idle;
mod quic_list;
mod quic_robustness;
mod quic_rules;
mod quic_streams;
mod recipes;
mod security;
mod shutdown;
mod slow_readers;
mod soak;
mod socketio_passthrough;
mod socketio_robustness;
mod startup;
mod tls;
