//! The JavaScript interop suite (tests/interop) once more, against a two-node cluster: each
//! test file's relay is two release binaries sharing one `redis-server` that this test
//! starts, and the suite's clients alternate between the two nodes' URLs, so every pair is
//! split across the nodes (tests/interop/lib/relay.js, `startCluster`). Both client
//! generations run: socket.io-client 2.x with the 1.4.1-style plugin and 4.x with js-client.
//! Run alone: `cargo test --release --test js js_interop_cluster::`.

use crate::redis;

use std::path::Path;

#[tokio::test]
async fn javascript_interop_suite_across_two_nodes() {
    let Some(redis) = redis::Redis::start().await else {
        return;
    };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop");
    crate::npm::install();
    let status = tokio::process::Command::new("npm")
        .arg("test")
        .current_dir(&dir)
        .env("P2P_RELAY_BIN", env!("CARGO_BIN_EXE_p2p-relay"))
        .env("P2P_INTEROP_CLUSTER_REDIS", redis.url())
        .env("P2P_INTEROP_CLUSTER_SECRET", redis.secret_file())
        .status()
        .await
        .expect("could not run npm test");
    assert!(
        status.success(),
        "the JavaScript interop suite failed against the two-node cluster (see its output above)"
    );
    drop(redis);
}
