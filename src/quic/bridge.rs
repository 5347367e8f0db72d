//! Streams between a native client and a legacy Socket.IO client (docs/PROTOCOL.md Part 3), the
//! front end's half: bytes move between the native QUIC stream and the core. The rules are
//! the core's (one chunk in flight toward the legacy side, a legacy chunk acknowledged only
//! once written here, a legacy peer's chunks going to the newest bridged stream); this
//! module only reads, writes, and reports.

use std::sync::Arc;

use bytes::Bytes;
use futures::FutureExt;
use p2p_relay_wire::ResetCode;
use quinn::{RecvStream, SendStream};
use relay_core::payload::error_value;
use relay_core::{Answer, Command, Payload, StreamId, Ticket, MAX_INBOUND_CHUNKS};
use relay_runtime::metrics::Direction;
use tokio::sync::mpsc;
use tracing::debug;

use super::code;
use super::connection::{header, Native, Slot};
use super::splice::{SendHalf, CHUNK_BYTES};
use super::Cut;

/// Where a bridge receives the legacy peer's chunks, and the signals that its own last
/// chunk was taken.
pub(crate) type Inbound = (mpsc::Receiver<(Bytes, Ticket)>, mpsc::Receiver<()>);

/// A fresh bridge slot, its receivers waiting for the bridge to run.
pub(crate) fn slot() -> Slot {
    // The core bounds a legacy sender's unacknowledged chunks to MAX_INBOUND_CHUNKS.
    let (chunks, chunks_rx) = mpsc::channel(MAX_INBOUND_CHUNKS);
    let (taken, taken_rx) = mpsc::channel(1);
    Slot::Bridge {
        chunks,
        taken,
        waiting: Some((chunks_rx, taken_rx)),
        cut: Cut::default(),
    }
}

/// The receivers of a bridge that has not started yet (its data stream just arrived).
pub(crate) fn take_waiting(native: &Native, stream: StreamId) -> Option<(Inbound, Cut)> {
    let mut slots = native.streams.lock().expect("streams lock");
    match slots.get_mut(&stream) {
        Some(Slot::Bridge { waiting, cut, .. }) => Some((waiting.take()?, cut.clone())),
        _ => None,
    }
}

/// A legacy peer's chunk for a bridged stream: hand it to the bridge, which acknowledges it
/// once written. A bridge already gone answers with an error the legacy writer sees.
pub(crate) fn chunk_in(native: &Native, stream: StreamId, data: Bytes, ticket: Ticket) {
    let refused = {
        let slots = native.streams.lock().expect("streams lock");
        match slots.get(&stream) {
            Some(Slot::Bridge { chunks, .. }) => chunks.try_send((data, ticket)).is_err(),
            _ => true,
        }
    };
    if refused {
        let message = format!("stream {} has ended", stream.0);
        native.answer(ticket, error_ack(&message));
    }
}

/// The legacy peer took this side's last chunk: the bridge may send the next.
pub(crate) fn chunk_taken(native: &Native, stream: StreamId) {
    if let Some(Slot::Bridge { taken, .. }) =
        native.streams.lock().expect("streams lock").get(&stream)
    {
        let _ = taken.try_send(());
    }
}

/// A Socket.IO client opened a stream that this native client accepted: the relay opens
/// the native stream itself. Called in event order, so the bridge is in place before the
/// legacy sender's first chunk is routed to it.
pub(crate) fn accept_from_legacy(native: &Arc<Native>, stream: StreamId) {
    native
        .streams
        .lock()
        .expect("streams lock")
        .insert(stream, slot());
    let Some((inbound, cut)) = take_waiting(native, stream) else {
        return;
    };
    let task_native = native.clone();
    native.spawn(async move {
        let native = task_native;
        let opened = async {
            let (mut send, recv) = native.quic.open_bi().await?;
            send.write_all(&header(stream)).await?;
            anyhow::Ok((send, recv))
        };
        match opened.await {
            Ok((send, recv)) => run(&native, stream, send, recv, inbound, &cut).await,
            Err(e) => debug!(?stream, "could not open the bridged stream: {e}"),
        }
        native.release_stream(stream);
    });
}

fn error_ack(message: &str) -> Answer {
    Answer::Ack(Payload::Values(vec![error_value(message)]))
}

/// Moves bytes both ways until both directions are done, or the core cuts the stream.
pub(crate) async fn run(
    native: &Arc<Native>,
    stream: StreamId,
    send: SendStream,
    mut recv: RecvStream,
    (mut chunks, mut taken): Inbound,
    cut: &Cut,
) {
    let mut send = SendHalf::new(send);
    let relay = &native.shared.relay;
    let peer = relay.peer_conn(native.id).unwrap_or(native.id);
    let meter = relay.meter_stream(stream, Some(native.id), peer);
    let outbound = async {
        loop {
            match recv.read_chunk(CHUNK_BYTES, true).await {
                Ok(Some(chunk)) => {
                    // Each legacy chunk costs a round trip: send what has already arrived
                    // as one (QUIC hands it over about a packet at a time).
                    let mut batch = Vec::from(chunk.bytes);
                    while batch.len() < CHUNK_BYTES {
                        let room = CHUNK_BYTES - batch.len();
                        match recv.read_chunk(room, true).now_or_never() {
                            Some(Ok(Some(more))) => batch.extend_from_slice(&more.bytes),
                            _ => break,
                        }
                    }
                    let data = Bytes::from(batch);
                    meter.moved_one_way(true, Direction::In, data.len() as u64);
                    native.command(Command::StreamChunk { stream, data });
                    if taken.recv().await.is_none() {
                        return; // the stream ended in the core
                    }
                }
                // The legacy protocol has no end of stream; the bridge stays for the
                // other direction until the pairing ends.
                Ok(None) => return,
                Err(_) => return,
            }
        }
    };
    let inbound = async {
        while let Some((chunk, ticket)) = chunks.recv().await {
            let len = chunk.len() as u64;
            if let Err(e) = send.write_chunk(chunk).await {
                native.answer(
                    ticket,
                    error_ack(&format!("stream {} failed: {e}", stream.0)),
                );
                return;
            }
            meter.moved_one_way(false, Direction::Out, len);
            native.answer(ticket, Answer::Done);
        }
    };
    let cut_with = tokio::select! {
        _ = async { tokio::join!(outbound, inbound) } => None,
        error = cut.cancelled() => Some(error),
    };
    if let Some(error) = cut_with {
        send.reset(error);
        let _ = recv.stop(code(error));
    } else {
        let _ = recv.stop(code(ResetCode::Closed));
    }
}
