//! Streams between a native client and a legacy Socket.IO client (PROTOCOL.md Part 3).
//!
//! The legacy protocol has no stream ids and no end of stream: a stream is a run of
//! `P2P_EMIT_STREAM` emits, each acknowledged, and a legacy receiver keeps one ack pending
//! at most. So toward the Socket.IO side the bridge sends one chunk and waits for its ack
//! before reading the next (back-pressure reaches the native sender through QUIC flow
//! control); from the Socket.IO side each chunk is acked only once the native stream has
//! taken it. Chunks from a legacy peer go to the newest bridged stream of the pairing.

use std::sync::Arc;

use bytes::Bytes;
use futures::FutureExt;
use gateway_socketio::events;
use native_client::wire::codes;
use quinn::{ReadError, RecvStream, SendStream};
use relay_core::rmpv::Value;
use relay_core::{Answer, Command, Payload, Reply, StreamId, Ticket};
use tokio::sync::mpsc;
use tracing::debug;

use super::code;
use super::connection::{header, Native};
use super::splice::{SendHalf, CHUNK_BYTES};
use super::Cut;

/// Chunks queued from a legacy sender toward one native stream. A well-behaved legacy
/// sender has one chunk in flight; the rest of the room absorbs a misbehaving one.
const INBOUND_CHUNKS: usize = 8;

/// The relay granted this native client a stream toward a Socket.IO acceptor. The bridge's
/// inbound side is put in place now, before the client's data stream arrives, because the
/// legacy peer may start sending chunks as soon as it accepted.
pub(crate) fn prepare(native: &Native, stream: StreamId) {
    let Some(cut) = native.shared.claim_stream(stream) else {
        return;
    };
    let rx = register(native, stream);
    native
        .prepared
        .lock()
        .expect("prepared lock")
        .insert(stream, (rx, cut));
}

/// The native client's data stream for a prepared bridge arrived: relay it. None when the
/// stream was not prepared (it goes to a native acceptor, or was not granted).
pub(crate) fn take_prepared(native: &Native, stream: StreamId) -> Option<(Inbound, Cut)> {
    native
        .prepared
        .lock()
        .expect("prepared lock")
        .remove(&stream)
}

/// Relays a data stream a native client opened toward a Socket.IO acceptor.
pub(crate) async fn to_legacy(
    native: &Arc<Native>,
    stream: StreamId,
    send: SendStream,
    recv: RecvStream,
    inbound: Inbound,
    cut: &Cut,
) {
    run(native, stream, send, recv, inbound, cut).await;
}

/// The pairing ended before the client opened its data stream: drop what was prepared.
pub(crate) fn forget(native: &Native, stream: StreamId) {
    let prepared = native
        .prepared
        .lock()
        .expect("prepared lock")
        .remove(&stream);
    if prepared.is_some() {
        native.shared.drop_claim(stream);
    }
    unregister(native, stream);
}

/// A Socket.IO client opened a stream that this native client accepted: the relay opens
/// the native stream itself. Called while the acceptance is being written to the client,
/// so the bridge is in place before the legacy sender's first chunk can arrive.
pub(crate) fn accept_from_legacy(
    native: &Arc<Native>,
    stream: StreamId,
    from: relay_core::ClientId,
) {
    let Some(cut) = native.shared.claim_stream(stream) else {
        return;
    };
    let rx = register(native, stream);
    let task_native = native.clone();
    native.spawn(async move {
        let native = task_native;
        let opened = async {
            let (mut send, recv) = native.quic.open_bi().await?;
            send.write_all(&header(stream)).await?;
            anyhow::Ok((send, recv))
        };
        match opened.await {
            Ok((send, recv)) => run(&native, stream, send, recv, rx, &cut).await,
            Err(e) => debug!(?stream, %from, "could not open the bridged stream: {e}"),
        }
        unregister(&native, stream);
        native.shared.release_stream(native.id, stream);
    });
}

/// Where a bridge receives the legacy peer's chunks.
pub(crate) type Inbound = mpsc::Receiver<(Bytes, Ticket)>;

fn register(native: &Native, stream: StreamId) -> Inbound {
    let (tx, rx) = mpsc::channel(INBOUND_CHUNKS);
    native
        .bridges
        .lock()
        .expect("bridges lock")
        .push((stream, tx));
    rx
}

fn unregister(native: &Native, stream: StreamId) {
    native
        .bridges
        .lock()
        .expect("bridges lock")
        .retain(|(s, _)| *s != stream);
}

/// A `P2P_EMIT_STREAM` chunk from the legacy peer arrived for this native client: hand it to
/// the newest bridged stream. Gives the arguments back when there is no bridge (then it is
/// an ordinary event).
pub(crate) fn route_chunk(native: &Native, args: Payload, ticket: Ticket) -> Result<(), Payload> {
    let bridges = native.bridges.lock().expect("bridges lock");
    let Some((_, tx)) = bridges.last() else {
        return Err(args);
    };
    let chunk = chunk_of(args);
    if tx.try_send((chunk, ticket)).is_err() {
        let error = Value::Map(vec![(
            Value::from("error"),
            Value::from("stream chunk refused: too many unacknowledged chunks"),
        )]);
        native.answer(ticket, Answer::Ack(Payload::Values(vec![error])));
    }
    Ok(())
}

/// The bytes of a legacy chunk: its first argument, binary (or text, written as UTF-8).
fn chunk_of(args: Payload) -> Bytes {
    let values = match args.into_values() {
        Ok(values) => values,
        Err(_) => return Bytes::new(),
    };
    match values.into_iter().next() {
        Some(Value::Binary(bytes)) => Bytes::from(bytes),
        Some(Value::String(text)) => Bytes::from(text.into_bytes()),
        _ => Bytes::new(),
    }
}

async fn run(
    native: &Arc<Native>,
    stream: StreamId,
    send: SendStream,
    mut recv: RecvStream,
    mut inbound: Inbound,
    cut: &Cut,
) {
    let peer = native.shared.relay.with_relay(|r| {
        r.stream_ends(stream).and_then(|(opener, acceptor)| {
            let other = if opener == native.id {
                acceptor
            } else {
                opener
            };
            r.client_of(other)
        })
    });
    let mut send = SendHalf::new(send);
    let Some(peer) = peer else {
        send.reset(codes::STREAM_CLOSED);
        let _ = recv.stop(code(codes::STREAM_CLOSED));
        return;
    };
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
                    let args = Payload::Values(vec![Value::Binary(batch)]);
                    let reply = native
                        .bridge_request(|req| Command::Emit {
                            target: peer.to_string(),
                            event: events::P2P_EMIT_STREAM.to_owned(),
                            args,
                            ack: Some(req),
                        })
                        .await;
                    if !matches!(reply, Some(Reply::Ack(_))) {
                        let _ = recv.stop(code(codes::STREAM_CLOSED));
                        return;
                    }
                }
                // The legacy protocol has no end of stream; the bridge stays for the
                // other direction until the pairing ends.
                Ok(None) => return,
                Err(ReadError::Reset(_)) | Err(_) => return,
            }
        }
    };
    let inbound = async {
        while let Some((chunk, ticket)) = inbound.recv().await {
            if send.write_chunk(chunk).await.is_err() {
                native.answer(ticket, Answer::Ack(Payload::empty()));
                return;
            }
            native.answer(ticket, Answer::Ack(Payload::empty()));
        }
    };
    let cut_with = tokio::select! {
        _ = async { tokio::join!(outbound, inbound) } => None,
        error = cut.cancelled() => Some(error),
    };
    if let Some(error) = cut_with {
        send.reset(error);
        let _ = recv.stop(code(error));
    }
    unregister(native, stream);
}
