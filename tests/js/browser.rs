//! Runs the browser suite (tests/interop/browser: pages in Debian's Chromium, driven by
//! playwright-core from node's test runner) against this build's binaries, so that
//! `cargo test --workspace --release` runs it with everything else.
//!
//! Needs `/usr/bin/chromium` (or `CHROMIUM_BIN`); `.ci/run` installs it. The suite starts
//! the relay, a static server for the pages (another origin than the relay), the demo's
//! `serve.js`, the native echo peer (`native-client/examples/echo_peer.rs`, built by
//! `cargo test` with the other examples) and the `p2p-relay-client` CLI itself, on free
//! loopback ports.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A binary built next to the relay binary (`release/p2p-relay-client`,
/// `release/examples/echo_peer`).
fn sibling(relative: &str) -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_p2p-relay"))
        .parent()
        .expect("the relay binary's folder")
        .join(format!("{relative}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.is_file(),
        "{} is missing: `cargo test --workspace --release` builds it (or `cargo build --release \
         -p native-client --bins --examples`)",
        bin.display()
    );
    bin
}

#[test]
fn browser_suite() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let chromium = std::env::var_os("CHROMIUM_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        chromium.exists(),
        "the browser suite needs Chromium at {} (apt-get install chromium, or set CHROMIUM_BIN)",
        chromium.display()
    );
    let interop = root.join("tests/interop");
    crate::npm::install();
    let status = Command::new("npm")
        .args(["run", "test:browser"])
        .current_dir(&interop)
        .env("P2P_RELAY_BIN", env!("CARGO_BIN_EXE_p2p-relay"))
        .env("P2P_ECHO_PEER_BIN", sibling("examples/echo_peer"))
        .env("P2P_RELAY_CLIENT_BIN", sibling("p2p-relay-client"))
        .env("CHROMIUM_BIN", &chromium)
        .status()
        .expect("could not run npm run test:browser");
    assert!(
        status.success(),
        "the browser suite failed (see its output above; screenshots and the matrix are in \
         target/browser-test/)"
    );
}
