//! The npm packages the JavaScript suites need, installed from their lock files where a
//! fresh checkout lacks them: once per run, so that suites starting together do not run
//! two `npm ci` in one folder at once.

use std::path::Path;
use std::process::Command;
use std::sync::Once;

/// Each folder with a lock file, and a package whose presence means it was installed.
const FOLDERS: [(&str, &str); 3] = [
    ("tests/interop", "playwright-core"),
    // esbuild: the build of js-client's CommonJS entry, which the suite checks is current.
    ("js-client", "esbuild"),
    ("js-client/demo", "@noble/hashes"),
];

pub fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        for (folder, marker) in FOLDERS {
            let dir = root.join(folder);
            if dir.join("node_modules").join(marker).exists() {
                continue;
            }
            let status = Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(&dir)
                .status()
                .expect("npm is required for the JavaScript suites (install Node.js 20+)");
            assert!(status.success(), "npm ci failed in {}", dir.display());
        }
    });
}
