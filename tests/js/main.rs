//! The JavaScript suites, run by `cargo test` so that one command runs every test: the
//! Node.js interop suite (tests/interop) against one relay and across two cluster nodes,
//! and the browser suite in Chromium. A binary of their own: they start Node.js and
//! Chromium processes for minutes, and would slow the timing of the Rust end-to-end tests
//! beside them.

#[path = "../redis/mod.rs"]
mod redis;

mod browser;
mod js_interop;
mod js_interop_cluster;
mod npm;
