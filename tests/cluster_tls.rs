//! Cluster mode over `rediss://`: two nodes reach a Redis that speaks TLS only (its
//! certificate from a development CA that the nodes trust through `SSL_CERT_FILE`, which
//! the system-roots loader honours), and a pair split across them works. A test binary of
//! its own, because it sets `SSL_CERT_FILE` for the whole process.
//! Run alone: `cargo test --release --test cluster_tls`.

mod common;
mod redis;

use common::{next, pair, Relay};
use native_client::{Args, ClientEvent};

#[tokio::test]
async fn two_nodes_over_rediss() {
    redis::logs();
    let dir = tempfile::tempdir().unwrap();
    let dev = certs::DevCerts::load_or_create(dir.path()).expect("development certificates");
    // Set before any TLS client exists, and this binary runs no other test.
    std::env::set_var("SSL_CERT_FILE", dev.ca_cert_path());
    let Some(redis) = redis::Redis::start_tls(dir.path()).await else {
        return;
    };
    let flags = redis.node_flags(2_000);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    assert!(flags[1].starts_with("rediss://"));
    let n1 = Relay::start(&flags).await;
    let n2 = Relay::start(&flags).await;
    let (a, _a_in) = n1.connect("A").await;
    let (b, mut b_in) = n2.connect("B").await;
    pair(&a, &b, &mut b_in).await;
    a.emit("over-tls", Args::one(1)).await.unwrap();
    match next(&mut b_in).await {
        ClientEvent::Event { event, args, .. } => {
            assert_eq!(event, "over-tls");
            assert_eq!(args, Args::one(1));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(a.list_clients().await.unwrap(), vec!["A", "B"]);
    n1.shutdown().await;
    n2.shutdown().await;
}
