//! A native client that vanishes without a word (killed, or off the network) is noticed
//! within the QUIC idle timeout, and its peer told: checked through a UDP relay in the
//! test that stops forwarding, which is what a SIGKILLed peer looks like on the wire.

use crate::common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use common::{next, within, Relay};
use native_client::ClientEvent;
use tokio::net::UdpSocket;

/// Forwards UDP datagrams between one client and `upstream` until `dead` is set; from
/// then on it drops everything, both ways. Returns the address clients connect to.
async fn blackhole_proxy(upstream: SocketAddr, dead: Arc<AtomicBool>) -> SocketAddr {
    let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let back = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    back.connect(upstream).await.unwrap();
    let addr = front.local_addr().unwrap();
    let client: Arc<std::sync::Mutex<Option<SocketAddr>>> = Arc::default();
    tokio::spawn({
        let (front, back, dead, client) =
            (front.clone(), back.clone(), dead.clone(), client.clone());
        async move {
            let mut buf = vec![0u8; 65536];
            while let Ok((n, from)) = front.recv_from(&mut buf).await {
                *client.lock().unwrap() = Some(from);
                if !dead.load(Ordering::Relaxed) {
                    let _ = back.send(&buf[..n]).await;
                }
            }
        }
    });
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        while let Ok(n) = back.recv(&mut buf).await {
            let to = *client.lock().unwrap();
            if let (Some(to), false) = (to, dead.load(Ordering::Relaxed)) {
                let _ = front.send_to(&buf[..n], to).await;
            }
        }
    });
    addr
}

#[test]
fn the_default_idle_timeout_notices_a_lost_peer_within_ten_seconds() {
    let settings = p2p_relay::Settings::parse_from(["p2p-relay"]);
    assert!(settings.quic_idle_timeout() <= Duration::from_secs(10));
    assert!(
        p2p_relay::Settings::try_parse_from(["p2p-relay", "--quic-idle-timeout-ms", "0"]).is_err()
    );
}

#[tokio::test]
async fn a_vanished_native_peer_is_noticed_within_the_idle_timeout() {
    let relay = Relay::start(&["--quic-idle-timeout-ms", "1500"]).await;
    let dead = Arc::new(AtomicBool::new(false));
    let proxy = blackhole_proxy(relay.addr(), dead.clone()).await;
    let (a, mut a_in) = within(
        "connecting through the proxy",
        native_client::Client::connect(relay.options("A").addr(proxy)),
    )
    .await
    .expect("A connects through the proxy");
    let (b, mut b_in) = relay.connect("B").await;
    common::pair(&b, &a, &mut a_in).await;

    // Quiet for longer than the idle timeout: keep-alives keep a live pair paired.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(b.list_clients().await.unwrap(), vec!["A", "B"]);

    dead.store(true, Ordering::Relaxed);
    let lost = Instant::now();
    match next(&mut b_in).await {
        ClientEvent::PeerDisconnected => {}
        other => panic!("expected PeerDisconnected, got {other:?}"),
    }
    let noticed = lost.elapsed();
    assert!(
        noticed < Duration::from_millis(3500),
        "noticed after {noticed:?}"
    );
    assert_eq!(b.list_clients().await.unwrap(), vec!["B"]);
    drop((a, a_in));
    relay.shutdown().await;
}
