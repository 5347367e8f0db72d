//! Relaying a data stream a native client opened: check its header against the core's
//! grant, then splice it to the other end. QUIC to QUIC is a plain copy of `Bytes` chunks
//! between the two native streams (no re-framing, no new buffers); each direction reads
//! only as fast as the other side's flow control lets it write, so back-pressure is end to
//! end and the relay holds at most one chunk per direction.

use std::sync::Arc;

use p2p_relay_wire::{header::HEADER_LEN, ResetCode, StreamHeader};
use quinn::{ReadError, RecvStream, SendStream, WriteError};
use relay_core::StreamId;
use relay_runtime::StreamMeter;
use tracing::debug;

use super::bridge;
use super::connection::{header, Native, Slot};
use super::{code, Cut};

/// Largest chunk taken from a stream at once.
pub(crate) const CHUNK_BYTES: usize = 64 * 1024;

/// Handles one data stream the client opened.
pub(crate) async fn relay_opened(native: Arc<Native>, mut send: SendStream, mut recv: RecvStream) {
    let mut raw = [0u8; HEADER_LEN];
    let timeout = native.shared.config.handshake_timeout;
    let header_read = tokio::time::timeout(timeout, recv.read_exact(&mut raw)).await;
    let parsed = match header_read {
        Ok(Ok(_)) => StreamHeader::decode(&raw).map_err(|e| e.to_string()),
        Ok(Err(e)) => Err(format!("stream ended before its header: {e}")),
        Err(_) => Err("no stream header in time".to_owned()),
    };
    let stream = match parsed {
        Ok(header) => StreamId(header.stream),
        Err(reason) => {
            debug!(id = ?native.id, %reason, "bad data stream");
            return refuse(&mut send, &mut recv, ResetCode::BadHeader);
        }
    };
    if let Some((inbound, cut)) = bridge::take_waiting(&native, stream) {
        bridge::run(&native, stream, send, recv, inbound, &cut).await;
        return native.release_stream(stream);
    }
    // A spliced grant becomes a stream being relayed, so a second data stream for the same
    // grant is refused.
    let claimed = {
        let mut slots = native.streams.lock().expect("streams lock");
        match slots.remove(&stream) {
            Some(Slot::Splice { peer, cut }) => {
                slots.insert(stream, Slot::Spliced { cut: cut.clone() });
                Some((peer, cut))
            }
            Some(other) => {
                slots.insert(stream, other);
                None
            }
            None => None,
        }
    };
    let Some((peer, cut)) = claimed else {
        debug!(id = ?native.id, ?stream, "data stream for a stream not granted to it");
        return refuse(&mut send, &mut recv, ResetCode::NotGranted);
    };
    let peer_conn = peer.conn;
    if peer.node != native.shared.relay.node_id() {
        // The acceptor is on another node: its node splices the node link's stream to it.
        let opened = match &native.shared.config.node_links {
            Some(links) => links.open_stream(peer.node, peer.conn, stream).await,
            None => Err(crate::cluster::node_link::NodeLinkError::Closed),
        };
        match opened {
            Ok(other) => {
                let meter = native
                    .shared
                    .relay
                    .meter_stream(stream, Some(native.id), peer_conn);
                splice((send, recv), other, &cut, &meter).await
            }
            Err(e) => {
                debug!(
                    ?stream,
                    "could not open the stream to the acceptor's node: {e}"
                );
                refuse(&mut send, &mut recv, ResetCode::PeerGone);
            }
        }
        return native.release_stream(stream);
    }
    let acceptor = native.shared.conns.get(&peer_conn).map(|c| c.clone());
    match acceptor {
        Some(peer) => {
            let opened = async {
                let (mut peer_send, peer_recv) = peer.open_bi().await?;
                peer_send.write_all(&header(stream)).await?;
                anyhow::Ok((peer_send, peer_recv))
            };
            match opened.await {
                Ok((peer_send, peer_recv)) => {
                    let meter =
                        native
                            .shared
                            .relay
                            .meter_stream(stream, Some(native.id), peer_conn);
                    splice((send, recv), (peer_send, peer_recv), &cut, &meter).await;
                }
                Err(e) => {
                    debug!(?stream, "could not open the stream to the acceptor: {e}");
                    refuse(&mut send, &mut recv, ResetCode::PeerGone);
                }
            }
        }
        // The acceptor's connection is already gone; the core will say so too.
        None => refuse(&mut send, &mut recv, ResetCode::PeerGone),
    }
    native.release_stream(stream);
}

pub(crate) fn refuse(send: &mut SendStream, recv: &mut RecvStream, error: ResetCode) {
    let _ = send.reset(code(error));
    let _ = recv.stop(code(error));
}

/// A relayed send side that is reset if dropped before it ended. quinn finishes a dropped
/// stream, so without this a transfer cut short by the relay (its connection task aborted
/// because one client vanished) would look complete to the reader.
pub(crate) struct SendHalf {
    inner: SendStream,
    ended: bool,
}

impl SendHalf {
    pub fn new(inner: SendStream) -> Self {
        Self {
            inner,
            ended: false,
        }
    }

    pub async fn write_chunk(&mut self, chunk: bytes::Bytes) -> Result<(), WriteError> {
        self.inner.write_chunk(chunk).await
    }

    pub fn finish(&mut self) {
        self.ended = true;
        let _ = self.inner.finish();
    }

    pub fn reset(&mut self, error: ResetCode) {
        self.ended = true;
        let _ = self.inner.reset(code(error));
    }
}

impl Drop for SendHalf {
    fn drop(&mut self) {
        if !self.ended {
            let _ = self.inner.reset(code(ResetCode::PeerGone));
        }
    }
}

/// Copies both directions until both are done, or until the pairing ends.
pub(crate) async fn splice(
    a: (SendStream, RecvStream),
    b: (SendStream, RecvStream),
    cut: &Cut,
    meter: &StreamMeter,
) {
    let (mut a_send, mut a_recv) = (SendHalf::new(a.0), a.1);
    let (mut b_send, mut b_recv) = (SendHalf::new(b.0), b.1);
    let both = async {
        tokio::join!(
            pump(&mut a_recv, &mut b_send, meter, true),
            pump(&mut b_recv, &mut a_send, meter, false)
        )
    };
    let cut_with = tokio::select! {
        _ = both => None,
        error = cut.cancelled() => Some(error),
    };
    if let Some(error) = cut_with {
        a_send.reset(error);
        b_send.reset(error);
        let _ = a_recv.stop(code(error));
        let _ = b_recv.stop(code(error));
    }
}

/// One direction: chunks from `from` to `to`; the end of `from` (FIN, reset, loss) is
/// passed on as the matching end of `to`, and a `to` that stops reading stops `from`.
async fn pump(from: &mut RecvStream, to: &mut SendHalf, meter: &StreamMeter, from_a: bool) {
    loop {
        match from.read_chunk(CHUNK_BYTES, true).await {
            Ok(Some(chunk)) => {
                let len = chunk.bytes.len() as u64;
                let written = to.write_chunk(chunk.bytes).await;
                if written.is_ok() {
                    meter.moved(from_a, len);
                }
                match written {
                    Ok(()) => {}
                    Err(WriteError::Stopped(_)) => {
                        let _ = from.stop(code(ResetCode::PeerReset));
                        return;
                    }
                    Err(_) => {
                        let _ = from.stop(code(ResetCode::PeerGone));
                        return;
                    }
                }
            }
            Ok(None) => return to.finish(),
            Err(ReadError::Reset(_)) => return to.reset(ResetCode::PeerReset),
            Err(_) => return to.reset(ResetCode::PeerGone),
        }
    }
}
