//! The listening side of node links (cluster mode): another node, once it proved it holds
//! the cluster secret, opens one stream per relayed stream whose acceptor is a native
//! client of this node; each is spliced to a new stream toward that client, exactly as a
//! local opener's stream would be.

use std::sync::Arc;

use p2p_relay_wire::ResetCode;
use quinn::{RecvStream, SendStream};
use tokio::task::JoinSet;
use tracing::debug;

use super::connection::{header, Slot};
use super::splice::{refuse, splice};
use super::{Cut, Shared};
use crate::cluster::node_link::{self, HEADER_LEN, NODE_ALPN};

/// Whether the connection negotiated the node-link ALPN.
pub(crate) fn is_node_link(quic: &quinn::Connection) -> bool {
    quic.handshake_data()
        .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|d| d.protocol)
        .is_some_and(|p| p == NODE_ALPN)
}

/// Serves one node link until it closes (or the front end stops).
pub(crate) async fn serve(shared: Arc<Shared>, quic: quinn::Connection) {
    let Some(links) = shared.config.node_links.clone() else {
        return quic.close(quinn::VarInt::from_u32(1), b"not a cluster node");
    };
    if !node_link::prove_listener(&quic, links.secret()).await {
        debug!(remote = %quic.remote_address(), "node link without the cluster secret refused");
        return quic.close(quinn::VarInt::from_u32(1), b"unproven");
    }
    debug!(remote = %quic.remote_address(), "node link accepted");
    let mut streams = JoinSet::new();
    loop {
        tokio::select! {
            accepted = quic.accept_bi() => match accepted {
                Ok((send, recv)) => {
                    streams.spawn(relay_stream(shared.clone(), send, recv));
                }
                Err(_) => break,
            },
            Some(_) = streams.join_next(), if !streams.is_empty() => {}
            _ = shared.stopping.cancelled() => break,
        }
    }
}

async fn relay_stream(shared: Arc<Shared>, mut send: SendStream, mut recv: RecvStream) {
    let mut raw = [0u8; HEADER_LEN];
    let read = tokio::time::timeout(shared.config.handshake_timeout, recv.read_exact(&mut raw));
    let parsed = match read.await {
        Ok(Ok(())) => node_link::parse_header(&raw).ok(),
        _ => None,
    };
    let Some((acceptor, stream)) = parsed else {
        return refuse(&mut send, &mut recv, ResetCode::BadHeader);
    };
    let native = shared.natives.get(&acceptor).and_then(|n| n.upgrade());
    let Some(native) = native else {
        return refuse(&mut send, &mut recv, ResetCode::PeerGone);
    };
    let opened = async {
        let (mut peer_send, peer_recv) = native.quic.open_bi().await?;
        peer_send.write_all(&header(stream)).await?;
        anyhow::Ok((peer_send, peer_recv))
    };
    match opened.await {
        Ok(theirs) => {
            // The acceptor's side keeps the cut, so its end of the pairing (or its peer's
            // node being gone) resets this stream here, as the opener's node does there.
            let cut = Cut::default();
            native
                .slots()
                .insert(stream, Slot::Spliced { cut: cut.clone() });
            // The opener is on the other node: this node knows the acceptor only.
            let meter = shared.relay.meter_stream(stream, None, native.id);
            splice((send, recv), theirs, &cut, &meter).await;
            native.slots().remove(&stream);
        }
        Err(e) => {
            debug!(?stream, "could not open the stream to the acceptor: {e}");
            refuse(&mut send, &mut recv, ResetCode::PeerGone);
        }
    }
}
