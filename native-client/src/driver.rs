//! The background task that serves a connection: it reads the relay's frames and routes
//! them (replies to the waiting verbs, everything else to [`crate::Incoming`]), writes the
//! client's frames, and accepts the data streams the relay opens.
//!
//! One spawned task runs the three loops concurrently (`select!`), so that a single abort
//! handle, owned by the client handles and the `Incoming`, ends all of it: no task outlives
//! its owner. Reading runs in its own loop because a frame read cannot be cancelled halfway
//! without losing the framing.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use quinn::{RecvStream, SendStream, VarInt};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use crate::args::Args;
use crate::client::{PendingKind, Shared};
use crate::connection::CloseReason;
use crate::incoming::{AckResponder, ClientEvent, Request, RequestKind};
use crate::stream::P2pStream;
use crate::wire::args::error_value;
use crate::wire::header::HEADER_LEN;
use crate::wire::{
    frame, CloseCode, ErrorCode, FrameError, FrameReader, FrameWriter, ResetCode, ServerFrame,
    StreamHeader, WireAnswer, WireReply,
};

/// How long the relay may take to send a data stream's header once it opened the stream.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Data streams kept while their `StreamAccepted` frame is on its way; more than this is a
/// relay gone wrong, and the extra streams are refused.
const MAX_EARLY_STREAMS: usize = 256;
/// How long to wait for the relay's connection close after it ended the control stream.
const CLOSE_WAIT: Duration = Duration::from_secs(1);
/// Grants (accepted streams whose data stream has not arrived) kept at once.
const MAX_GRANTS: usize = 4096;

/// Owns the background task: aborts it when dropped.
#[derive(Debug)]
pub(crate) struct TaskOwner(AbortHandle);

impl TaskOwner {
    pub(crate) fn abort(&self) {
        self.0.abort();
    }
}

impl Drop for TaskOwner {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Why a loop ended, when the connection itself does not say.
struct Ended {
    code: CloseCode,
    message: String,
    /// The relay ended the control stream: its connection close may be on its way.
    relay_closing: bool,
}

impl Ended {
    fn new(code: CloseCode, message: impl Into<String>) -> Self {
        Ended {
            code,
            message: message.into(),
            relay_closing: false,
        }
    }
}

pub(crate) fn spawn(
    shared: Arc<Shared>,
    reader: FrameReader<RecvStream>,
    writer: FrameWriter<SendStream>,
    requests: mpsc::Receiver<Bytes>,
    answers: mpsc::UnboundedReceiver<Bytes>,
    events: mpsc::Sender<ClientEvent>,
) -> TaskOwner {
    let task = tokio::spawn(run(shared, reader, writer, requests, answers, events));
    TaskOwner(task.abort_handle())
}

async fn run(
    shared: Arc<Shared>,
    reader: FrameReader<RecvStream>,
    writer: FrameWriter<SendStream>,
    requests: mpsc::Receiver<Bytes>,
    answers: mpsc::UnboundedReceiver<Bytes>,
    events: mpsc::Sender<ClientEvent>,
) {
    let read = read_loop(&shared, reader, &events);
    tokio::pin!(read);
    let (ended, still_reading) = tokio::select! {
        ended = &mut read => (ended, false),
        ended = write_loop(writer, requests, answers) => (ended, true),
        ended = accept_loop(&shared, &events) => (ended, true),
    };
    let mut error = shared.conn.close_reason();
    if still_reading && !matches!(error, None | Some(quinn::ConnectionError::LocallyClosed)) {
        // The relay closed the connection, and another loop saw it first. What the relay
        // wrote before closing (a ServerError and the Closing frame saying why) may still
        // wait unread in the control stream: quinn hands it out before the error, so read it
        // rather than lose it.
        let _ = tokio::time::timeout(CLOSE_WAIT, &mut read).await;
    }
    if error.is_none() && ended.relay_closing {
        // A relay that closes a connection may end the control stream first; give its
        // CONNECTION_CLOSE (which carries the code) a moment to arrive.
        error = tokio::time::timeout(CLOSE_WAIT, shared.conn.closed())
            .await
            .ok();
    }
    let announced = shared.lock().closing.clone();
    let reason = match error {
        Some(quinn::ConnectionError::LocallyClosed) => CloseReason::Local,
        Some(error) => announced.unwrap_or_else(|| CloseReason::from_connection_error(&error)),
        None => {
            // The connection is up but this side cannot go on (the relay ended the control
            // stream without closing, or broke the framing): close it, saying why.
            tracing::warn!(reason = %ended.message, "closing the connection");
            shared.conn.close(
                VarInt::from_u32(ended.code.code()),
                ended.message.as_bytes(),
            );
            announced.unwrap_or(CloseReason::Client {
                code: ended.code,
                detail: ended.message,
            })
        }
    };
    tracing::info!(%reason, "connection to the relay ended");
    shared.mark_closed(reason.clone());
    let _ = events.send(ClientEvent::Closed(reason)).await;
}

async fn read_loop(
    shared: &Arc<Shared>,
    mut reader: FrameReader<RecvStream>,
    events: &mpsc::Sender<ClientEvent>,
) -> Ended {
    loop {
        let body = match reader.next().await {
            Ok(Some(body)) => body,
            Ok(None) => {
                return Ended {
                    relay_closing: true,
                    ..Ended::new(
                        CloseCode::ProtocolViolation,
                        "the relay ended the control stream",
                    )
                }
            }
            Err(e @ FrameError::TooLarge { .. }) => {
                return Ended::new(CloseCode::FrameTooLarge, format!("from the relay: {e}"))
            }
            Err(e) => return Ended::new(CloseCode::ProtocolViolation, e.to_string()),
        };
        match frame::decode::<ServerFrame>(&body) {
            Ok(frame) => handle_frame(shared, frame, events).await,
            // Framing is intact: skip it, as the relay does with ours.
            Err(error) => tracing::warn!(%error, "skipping a frame from the relay"),
        }
    }
}

async fn handle_frame(
    shared: &Arc<Shared>,
    frame: ServerFrame,
    events: &mpsc::Sender<ClientEvent>,
) {
    tracing::trace!(frame = frame.name(), "frame from the relay");
    let event = match frame {
        ServerFrame::Reply { req, reply } => {
            resolve(shared, req, reply);
            return;
        }
        ServerFrame::RegisterRequest { ticket, from } => {
            if let Some(peer) = shared.lock().target.clone() {
                tracing::debug!(%from, %peer, "refusing a pairing: already paired");
                shared.answer(ticket, WireAnswer::Accept(false));
                return;
            }
            ClientEvent::RegisterRequest(request(shared, ticket, from, RequestKind::Register))
        }
        ServerFrame::StreamRequest { ticket, from } => {
            ClientEvent::StreamRequest(request(shared, ticket, from, RequestKind::Stream))
        }
        ServerFrame::Unregistered { ticket } => {
            forget_pairing(shared);
            shared.answer(ticket, WireAnswer::Done);
            ClientEvent::Unregistered
        }
        ServerFrame::PeerDisconnected => {
            forget_pairing(shared);
            ClientEvent::PeerDisconnected
        }
        ServerFrame::Deliver {
            event,
            args,
            ticket,
        } => match Args::decode(&args) {
            Ok(args) => ClientEvent::Event {
                ack: ticket.map(|ticket| AckResponder {
                    ticket,
                    event: event.clone(),
                    shared: shared.clone(),
                }),
                event,
                args,
            },
            Err(e) => {
                let message = format!("event '{event}' from the peer was dropped: {e}");
                tracing::warn!("{message}");
                if let Some(ticket) = ticket {
                    // Answer the way a failed emit-ack is answered to Socket.IO clients.
                    let error = error_value(&message);
                    shared.answer(ticket, WireAnswer::Ack(Args::one(error).encode()));
                }
                ClientEvent::ServerError {
                    code: Some(ErrorCode::Invalid),
                    message,
                }
            }
        },
        ServerFrame::StreamAccepted { stream, from } => {
            let from: Arc<str> = from.into();
            let mut state = shared.lock();
            match state.early.remove(&stream) {
                Some((send, recv)) => {
                    drop(state);
                    ClientEvent::Stream(P2pStream::new(stream, from, send, recv))
                }
                None if state.grants.len() < MAX_GRANTS => {
                    state.grants.insert(stream, from);
                    return;
                }
                None => {
                    tracing::warn!(stream, "too many streams granted and not yet arrived");
                    return;
                }
            }
        }
        ServerFrame::StreamClosed { stream } => {
            let mut state = shared.lock();
            state.grants.remove(&stream);
            if let Some((mut send, mut recv)) = state.early.remove(&stream) {
                let _ = send.reset(reset(ResetCode::Closed));
                let _ = recv.stop(reset(ResetCode::Closed));
            }
            ClientEvent::StreamClosed(stream)
        }
        ServerFrame::ServerError { code, message } => {
            tracing::debug!(?code, %message, "server error");
            ClientEvent::ServerError {
                // A code of a newer relay is unknown here; its message still says it all.
                code: code.and_then(ErrorCode::from_u16),
                message,
            }
        }
        ServerFrame::Closing { code, reason } => {
            tracing::info!(code, %reason, "the relay is closing the connection");
            shared.lock().closing = Some(CloseReason::by_relay(code.into(), &reason));
            return;
        }
        ServerFrame::Welcome { .. } | ServerFrame::Refused { .. } => {
            tracing::warn!("ignoring a second welcome or refusal from the relay");
            return;
        }
    };
    // When the Incoming is gone, the event is dropped here, and a request in it refuses.
    let _ = events.send(event).await;
}

/// Hands a reply to the verb waiting for it, after applying what it means for the state.
fn resolve(shared: &Shared, req: u64, reply: WireReply) {
    let mut state = shared.lock();
    let Some(pending) = state.pending.remove(&req) else {
        tracing::debug!(req, "reply to a request no one waits for");
        return;
    };
    match (&pending.kind, &reply) {
        (PendingKind::Register(target), WireReply::Registered(true)) => {
            state.target = Some(target.clone());
        }
        (PendingKind::Unregister, WireReply::Unregistered) => state.target = None,
        _ => {}
    }
    drop(state);
    // The caller may have stopped waiting; the state is updated all the same.
    let _ = pending.tx.send(reply);
}

fn request(shared: &Arc<Shared>, ticket: u64, from: String, kind: RequestKind) -> Request {
    Request {
        ticket,
        from,
        kind,
        shared: shared.clone(),
        answered: false,
    }
}

/// The pairing is over: no peer, and no stream of it is still to come.
fn forget_pairing(shared: &Shared) {
    let mut state = shared.lock();
    state.target = None;
    state.grants.clear();
    for (_, (mut send, mut recv)) in state.early.drain() {
        let _ = send.reset(reset(ResetCode::Closed));
        let _ = recv.stop(reset(ResetCode::Closed));
    }
}

async fn write_loop(
    mut writer: FrameWriter<SendStream>,
    mut requests: mpsc::Receiver<Bytes>,
    mut answers: mpsc::UnboundedReceiver<Bytes>,
) -> Ended {
    loop {
        let bytes = tokio::select! {
            // Answers first: the relay is waiting on them with a timeout.
            biased;
            Some(bytes) = answers.recv() => bytes,
            Some(bytes) = requests.recv() => bytes,
            else => return Ended::new(CloseCode::Normal, "the client was dropped"),
        };
        if let Err(e) = writer.send_encoded(&bytes).await {
            return Ended::new(CloseCode::Normal, format!("cannot write to the relay: {e}"));
        }
    }
}

async fn accept_loop(shared: &Arc<Shared>, events: &mpsc::Sender<ClientEvent>) -> Ended {
    let mut headers = FuturesUnordered::new();
    loop {
        tokio::select! {
            accepted = shared.conn.accept_bi() => match accepted {
                Ok((send, recv)) => headers.push(read_header(send, recv)),
                Err(e) => {
                    return Ended::new(
                        CloseCode::Normal,
                        CloseReason::from_connection_error(&e).to_string(),
                    )
                }
            },
            Some(started) = headers.next(), if !headers.is_empty() => {
                if let Some((id, send, recv)) = started {
                    place_stream(shared, events, id, send, recv).await;
                }
            }
        }
    }
}

/// Reads the header of a data stream the relay opened; refuses the stream when it is bad.
async fn read_header(
    mut send: SendStream,
    mut recv: RecvStream,
) -> Option<(u64, SendStream, RecvStream)> {
    let mut bytes = [0u8; HEADER_LEN];
    let problem = match tokio::time::timeout(HEADER_TIMEOUT, recv.read_exact(&mut bytes)).await {
        Ok(Ok(_)) => match StreamHeader::decode(&bytes) {
            Ok(header) => return Some((header.stream, send, recv)),
            Err(e) => e.to_string(),
        },
        Ok(Err(e)) => format!("cannot read its header: {e}"),
        Err(_) => format!("no header within {}s", HEADER_TIMEOUT.as_secs()),
    };
    tracing::warn!(%problem, "refusing a data stream from the relay");
    let _ = send.reset(reset(ResetCode::BadHeader));
    let _ = recv.stop(reset(ResetCode::BadHeader));
    None
}

/// Matches a data stream with its grant, or keeps it until the grant arrives.
async fn place_stream(
    shared: &Arc<Shared>,
    events: &mpsc::Sender<ClientEvent>,
    id: u64,
    mut send: SendStream,
    mut recv: RecvStream,
) {
    let stream = {
        let mut state = shared.lock();
        match state.grants.remove(&id) {
            Some(peer) => P2pStream::new(id, peer, send, recv),
            None if state.early.len() < MAX_EARLY_STREAMS => {
                tracing::debug!(stream = id, "data stream arrived before its grant");
                state.early.insert(id, (send, recv));
                return;
            }
            None => {
                tracing::warn!(stream = id, "refusing a data stream that was not granted");
                let _ = send.reset(reset(ResetCode::NotGranted));
                let _ = recv.stop(reset(ResetCode::NotGranted));
                return;
            }
        }
    };
    tracing::debug!(stream = id, peer = stream.peer(), "stream from the peer");
    let _ = events.send(ClientEvent::Stream(stream)).await;
}

/// A stream code as QUIC carries it.
fn reset(code: ResetCode) -> VarInt {
    VarInt::from_u32(code.code())
}
