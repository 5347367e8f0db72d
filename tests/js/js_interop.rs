//! Runs the JavaScript interop suite (tests/interop, node's test runner) against this
//! build's relay binary, so that `cargo test` runs every test, Rust and JS.
//!
//! The suite starts the binary itself, once per test file, on free loopback ports.

use std::path::Path;
use std::process::Command;

#[test]
fn javascript_interop_suite() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop");
    crate::npm::install();
    let status = Command::new("npm")
        .arg("test")
        .current_dir(&dir)
        .env("P2P_RELAY_BIN", env!("CARGO_BIN_EXE_p2p-relay"))
        .status()
        .expect("could not run npm test");
    assert!(
        status.success(),
        "the JavaScript interop suite failed (see its output above)"
    );
}
