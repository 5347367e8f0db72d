//! One native client: its hello, its control stream in both directions, and the data
//! streams it opens. Everything the connection spawned ends with it.

use std::collections::HashMap;
use std::pin::pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use p2p_relay_wire::{
    self as wire, frame, ClientFrame, CloseCode, FrameError, FrameReader, FrameWriter, ServerFrame,
    WireAnswer, WireReply,
};
use relay_core::directory::MAX_LIST_PAGE;
use relay_core::{
    Addr, Answer, CloseReason, Command, ConnId, ErrorCode, Event, Payload, Reply, ReqId, StreamId,
    StreamKind, Ticket, Transport,
};
use relay_runtime::{Outbox, OutboxLimits, OutboxReceiver};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::{debug, trace};

use super::{bridge, code, end_code, splice, Cut, Shared};

/// Per-connection state shared by its reader, writer and stream tasks.
pub(crate) struct Native {
    pub shared: Arc<Shared>,
    pub id: ConnId,
    pub quic: quinn::Connection,
    pub outbox: Arc<Outbox>,
    /// This connection's granted streams that the front end moves bytes for.
    pub streams: Mutex<HashMap<StreamId, Slot>>,
    /// Tasks started from synchronous code (bridges the relay opens); they end with the
    /// connection.
    tasks: Mutex<JoinSet<()>>,
    /// The streams this client may have open at once now (its control stream included):
    /// [`super::INITIAL_STREAM_CREDIT`] at first, raised as it uses them.
    stream_credit: AtomicU32,
}

/// What the front end keeps for one granted stream of this connection.
pub(crate) enum Slot {
    /// Granted to this client as opener, toward a native acceptor: waits for the client's
    /// data stream, then splices it to `peer`.
    Splice { peer: Addr, cut: Cut },
    /// A spliced stream being relayed.
    Spliced { cut: Cut },
    /// A stream bridged to a legacy peer: where that peer's chunks and the "taken" signals
    /// for this side's chunks go. `waiting` holds the receivers until the bridge runs.
    Bridge {
        chunks: mpsc::Sender<(bytes::Bytes, Ticket)>,
        taken: mpsc::Sender<()>,
        waiting: Option<bridge::Inbound>,
        cut: Cut,
    },
}

impl Slot {
    fn cut(&self) -> &Cut {
        match self {
            Slot::Splice { cut, .. } | Slot::Spliced { cut } | Slot::Bridge { cut, .. } => cut,
        }
    }
}

impl Native {
    pub fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        let mut tasks = self.tasks.lock().expect("tasks lock");
        // Reap the finished ones so the set stays as small as the live work.
        while tasks.try_join_next().is_some() {}
        tasks.spawn(task);
    }

    pub fn command(&self, command: Command) {
        self.shared.relay.command(self.id, command);
    }

    pub fn answer(&self, ticket: Ticket, answer: Answer) {
        self.command(Command::Answer { ticket, answer });
    }

    /// The front end is done with a stream: forget it here and release it in the core.
    pub fn release_stream(&self, stream: StreamId) {
        self.streams.lock().expect("streams lock").remove(&stream);
        self.command(Command::CloseStream { stream });
    }

    pub(crate) fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<StreamId, Slot>> {
        self.streams.lock().expect("streams lock")
    }

    /// Lets the client have `open` streams open at once and a few more, up to the
    /// configured maximum. quinn keeps state for every stream a peer may open, from the
    /// moment it may (about 80 bytes each: 21 KiB per connection at 257 streams), so an
    /// idle client is allowed few and the credit grows, doubling, as streams are granted
    /// and opened. A client that opens past its credit waits for quinn's next MAX_STREAMS
    /// frame; it is never refused for it.
    pub fn ensure_stream_credit(&self, open: usize) {
        const HEADROOM: u32 = 4;
        let max = self.shared.config.max_streams_per_connection;
        let current = self.stream_credit.load(Ordering::Acquire);
        let wanted = u32::try_from(open)
            .unwrap_or(u32::MAX)
            .saturating_add(HEADROOM);
        if wanted <= current || current >= max {
            return;
        }
        let next = wanted.max(current.saturating_mul(2)).min(max);
        // Whoever loses a race leaves the credit to the winner, which is at least as high.
        if self
            .stream_credit
            .compare_exchange(current, next, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            trace!(id = ?self.id, credit = next, "more streams allowed");
            self.quic.set_max_concurrent_bi_streams(next.into());
        }
    }
}

/// Serves one incoming connection from handshake to close.
///
/// The opening (handshake, hello, admission, welcome) is boxed: it is over within the
/// handshake time, and its futures (the `Incoming`, timers, the admission callback's) would
/// otherwise size the future that every connection keeps for as long as it lives. Not an
/// `async fn`, so that `incoming` is moved straight into the box instead of also being kept
/// as the future's argument.
pub(crate) fn serve(
    shared: Arc<Shared>,
    incoming: quinn::Incoming,
) -> impl std::future::Future<Output = ()> + Send {
    let opening = Box::pin(open(shared.clone(), incoming));
    async move {
        match opening.await {
            Some(Opened::Client(client)) => live(shared, client).await,
            Some(Opened::NodeLink(quic)) => super::node::serve(shared, quic).await,
            None => {}
        }
    }
}

/// An opened connection.
enum Opened {
    /// A native client, in the core and welcomed.
    Client(Client),
    /// Another node of the cluster.
    NodeLink(quinn::Connection),
}

/// A native client once it is in the core, with its control stream.
struct Client {
    native: Arc<Native>,
    reader: FrameReader<quinn::RecvStream>,
    writer: FrameWriter<quinn::SendStream>,
    events: OutboxReceiver,
}

/// From handshake to welcome; `None` when the connection was refused or failed (and is
/// closed, or closing).
async fn open(shared: Arc<Shared>, incoming: quinn::Incoming) -> Option<Opened> {
    // Until the client is in the core, the front end stopping ends the connection at once;
    // from then on the core closes it (with a Closing frame that says why).
    let stopping = shared.stopping.clone();
    let quic = tokio::select! {
        quic = incoming => match quic {
            Ok(quic) => quic,
            Err(e) => {
                debug!("QUIC handshake failed: {e}");
                return None;
            }
        },
        _ = stopping.cancelled() => return None,
    };
    if super::node::is_node_link(&quic) {
        return Some(Opened::NodeLink(quic));
    }
    let shutdown = |quic: &quinn::Connection| {
        quic.close(code(CloseCode::Shutdown), super::SHUTDOWN_REASON);
        None
    };
    let hello = tokio::select! {
        hello = hello(&shared, &quic) => hello,
        _ = stopping.cancelled() => return shutdown(&quic),
    };
    let Hello {
        client_id,
        credentials,
        reader,
        mut writer,
    } = hello?;
    let remote = quic.remote_address();

    // The hello's credentials are the token (or whatever the admission callback expects);
    // admission may ask a callback, within the handshake time.
    let admitted = shared.relay.admit(
        Some(&client_id),
        credentials.as_deref(),
        Some(remote),
        Transport::Native,
    );
    let admitted = tokio::select! {
        admitted = tokio::time::timeout(shared.config.handshake_timeout, admitted) => admitted,
        _ = stopping.cancelled() => return shutdown(&quic),
    };
    let admitted = match admitted {
        Ok(admitted) => admitted,
        Err(_) => {
            let message = "admission did not complete in time".to_owned();
            refuse(&quic, &mut writer, CloseCode::Refused, message).await;
            return None;
        }
    };
    let (outbox, events) = Outbox::new(OutboxLimits {
        messages: shared.config.outbox_messages,
        bytes: shared.config.outbox_bytes,
    });
    let connected = admitted.and_then(|admitted| {
        shared
            .relay
            .connect_admitted(admitted, Transport::Native, outbox.clone())
    });
    let id = match connected {
        Ok(id) => id,
        Err(e) => {
            let code = match e {
                relay_core::ConnectError::ShuttingDown => CloseCode::Shutdown,
                _ => CloseCode::Refused,
            };
            refuse(&quic, &mut writer, code, e.to_string()).await;
            return None;
        }
    };
    debug!(%remote, client = %client_id, ?id, "native client connected");
    shared.relay.describe(
        id,
        relay_runtime::Described {
            remote: Some(remote),
            generation: "quic p2p-relay/2",
        },
    );
    let welcome = ServerFrame::Welcome {
        version: wire::PROTOCOL_VERSION,
        client_id,
        limits: wire_limits(&shared.relay.client_limits()),
    };
    if writer.send(&welcome).await.is_err() {
        shared.relay.disconnect(id);
        return None;
    }
    shared.conns.insert(id, quic.clone());
    let native = Arc::new(Native {
        shared: shared.clone(),
        id,
        quic,
        outbox,
        streams: Mutex::new(HashMap::new()),
        tasks: Mutex::new(JoinSet::new()),
        stream_credit: AtomicU32::new(super::initial_stream_credit(&shared.config)),
    });
    shared.natives.insert(id, Arc::downgrade(&native));
    Some(Opened::Client(Client {
        native,
        reader,
        writer,
        events,
    }))
}

/// A native client from its welcome to its close.
async fn live(shared: Arc<Shared>, client: Client) {
    let Client {
        native,
        reader,
        writer,
        events,
    } = client;
    let id = native.id;
    // Everything below belongs to this connection and ends with it. Its four loops are
    // one future in this task rather than four tasks (each a task cell, a join-set entry
    // and an `Arc` of its own), and the first to end means the connection is over (or
    // broken). The others are kept, not polled, until the core has let the client go.
    {
        let mut write = pin!(write_events(&native, writer, events));
        let mut read = pin!(read_commands(&native, reader));
        let mut accept = pin!(accept_streams(&native));
        let mut cut_off = pin!(cut_off_when_overflowing(&native));
        tokio::select! {
            () = &mut write => {}
            () = &mut read => {}
            () = &mut accept => {}
            () = &mut cut_off => {}
        }
        shared.conns.remove(&id);
        shared.natives.remove(&id);
        shared.relay.disconnect(id);
    }
    // Rare, and boxed so as not to size the live future.
    Box::pin(async {
        let mut started = std::mem::take(&mut *native.tasks.lock().expect("tasks lock"));
        started.shutdown().await;
    })
    .await;
    native.quic.close(code(CloseCode::Normal), b"");
    debug!(remote = %native.quic.remote_address(), ?id, "native client gone");
}

/// What a client says before it is admitted, with the control stream it said it on.
struct Hello {
    client_id: String,
    credentials: Option<bytes::Bytes>,
    reader: FrameReader<quinn::RecvStream>,
    writer: FrameWriter<quinn::SendStream>,
}

/// Waits for the control stream and its Hello; refuses (and returns `None`) a client that
/// is too slow, says something else first, or speaks another protocol version.
async fn hello(shared: &Shared, quic: &quinn::Connection) -> Option<Hello> {
    let remote = quic.remote_address();
    let timeout = shared.config.handshake_timeout;
    let (send, recv) = match tokio::time::timeout(timeout, quic.accept_bi()).await {
        Ok(Ok(streams)) => streams,
        Ok(Err(e)) => {
            debug!(%remote, "connection ended before its control stream: {e}");
            return None;
        }
        Err(_) => {
            quic.close(
                code(CloseCode::ProtocolViolation),
                b"no control stream opened in time",
            );
            return None;
        }
    };
    let mut reader = FrameReader::new(recv, shared.config.max_frame_bytes);
    let mut writer = FrameWriter::new(send);
    let hello = match tokio::time::timeout(timeout, reader.next()).await {
        Ok(Ok(Some(body))) => frame::decode::<ClientFrame>(&body).map_err(|e| e.to_string()),
        Ok(Ok(None)) => Err("control stream closed before hello".to_owned()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no hello in time".to_owned()),
    };
    let (why, message) = match hello {
        Ok(ClientFrame::Hello {
            version,
            client_id,
            credentials,
        }) if version == wire::PROTOCOL_VERSION => {
            return Some(Hello {
                client_id,
                credentials,
                reader,
                writer,
            })
        }
        Ok(ClientFrame::Hello { version, .. }) => (
            CloseCode::VersionMismatch,
            format!(
                "protocol version {version} is not supported; this relay speaks version {}",
                wire::PROTOCOL_VERSION
            ),
        ),
        Ok(other) => (
            CloseCode::ProtocolViolation,
            format!("the first frame must be Hello, got {}", other.name()),
        ),
        Err(message) => (
            CloseCode::ProtocolViolation,
            format!("expected a Hello frame: {message}"),
        ),
    };
    refuse(quic, &mut writer, why, message).await;
    None
}

async fn refuse(
    quic: &quinn::Connection,
    writer: &mut FrameWriter<quinn::SendStream>,
    why: CloseCode,
    message: String,
) {
    debug!(remote = %quic.remote_address(), %message, "refusing native client");
    let _ = writer
        .send(&ServerFrame::Refused {
            code: why.code(),
            message: message.clone(),
        })
        .await;
    finish_before_close(writer.get_mut()).await;
    quic.close(code(why), message.as_bytes());
}

/// Finishes the control stream and gives its last frame a moment to reach the client:
/// closing the connection right away would discard it.
async fn finish_before_close(send: &mut quinn::SendStream) {
    let _ = send.finish();
    let _ = tokio::time::timeout(std::time::Duration::from_millis(500), send.stopped()).await;
}

/// Control frames from the client, turned into core commands.
async fn read_commands(native: &Native, mut reader: FrameReader<quinn::RecvStream>) {
    loop {
        let body = match reader.next().await {
            Ok(Some(body)) => body,
            Ok(None) => return trace!(id = ?native.id, "control stream finished"),
            Err(FrameError::TooLarge { len, max }) => {
                // Framing cannot be trusted past this point: close at once, with the reason
                // in the close frame (an error frame queued now would race the close).
                let reason = format!("control frame of {len} bytes exceeds the limit of {max}");
                debug!(id = ?native.id, %reason, "closing");
                native
                    .quic
                    .close(code(CloseCode::FrameTooLarge), reason.as_bytes());
                return;
            }
            Err(e) => return debug!(id = ?native.id, "control stream failed: {e}"),
        };
        let metrics = native.shared.relay.metrics();
        let command = frame::decode::<ClientFrame>(&body)
            .map_err(|e| e.to_string())
            .and_then(|frame| command_of(frame, native.shared.config.list_page));
        match command {
            Ok(command) => native.shared.relay.command(native.id, command),
            // Not understood: answered and skipped, the connection lives on.
            Err(message) => {
                metrics.malformed(Transport::Native);
                native.outbox.push(Event::ServerError {
                    code: Some(ErrorCode::Invalid),
                    message,
                })
            }
        }
    }
}

/// The core command a frame asks for; `list_page` is the page size of a List that names
/// none.
fn command_of(frame: ClientFrame, list_page: usize) -> Result<Command, String> {
    Ok(match frame {
        ClientFrame::Hello { .. } => return Err("already said hello".to_owned()),
        ClientFrame::Register { req, target } => Command::Register {
            req: ReqId(req),
            target,
        },
        ClientFrame::Unregister { req } => Command::Unregister { req: ReqId(req) },
        ClientFrame::Emit {
            target,
            event,
            args,
            ack,
        } => Command::Emit {
            target,
            event,
            args: Payload::MsgPack(args),
            ack: ack.map(ReqId),
        },
        ClientFrame::List { req, after, limit } => Command::List {
            req: ReqId(req),
            after,
            limit: Some(page_size(limit, list_page)),
        },
        ClientFrame::OpenStream { req, target } => Command::OpenStream {
            req: ReqId(req),
            target,
        },
        ClientFrame::Answer { ticket, answer } => Command::Answer {
            ticket: Ticket(ticket),
            answer: match answer {
                WireAnswer::Accept(ok) => Answer::Accept(ok),
                WireAnswer::Ack(args) => Answer::Ack(Payload::MsgPack(args)),
                WireAnswer::Done => Answer::Done,
            },
        },
    })
}

/// The size of a native list page: what the client asked for, or the relay's page size, and
/// never more than [`MAX_LIST_PAGE`]. Always a page: a native list never costs the whole
/// directory, and its reply stays within a frame.
fn page_size(asked: Option<u32>, list_page: usize) -> usize {
    asked
        .map_or(list_page, |n| usize::try_from(n).unwrap_or(MAX_LIST_PAGE))
        .clamp(1, MAX_LIST_PAGE)
}

/// Closes the connection once its queue goes over its byte cap: the client does not read
/// its control stream (the writer is then stuck on flow control, so the close cannot wait
/// for it), and what it asked for must not pile up in the relay.
async fn cut_off_when_overflowing(native: &Native) {
    let overflow = native.outbox.overflowed().await;
    let reason = overflow.to_string();
    debug!(id = ?native.id, %reason, "cutting off a client that does not read");
    native
        .quic
        .close(code(CloseCode::SlowReader), reason.as_bytes());
}

/// Core events for the client, written as control frames in order.
async fn write_events(
    native: &Arc<Native>,
    mut writer: FrameWriter<quinn::SendStream>,
    mut events: OutboxReceiver,
) {
    while let Some(first) = events.recv().await {
        // What is queued already goes out in one write: every write takes the
        // connection's lock and wakes its driver, which cost more than the encoding.
        let mut chunks = Vec::new();
        let (mut bytes, mut closing) = (0, None);
        let mut next = Some(first);
        while let Some(event) = next.take() {
            let is_deliver = matches!(event, Event::Deliver { .. });
            let frame = frame_of(native, event);
            if is_deliver {
                native.outbox.delivered();
            }
            if let Some(frame) = frame {
                if let ServerFrame::Closing { code, reason } = &frame {
                    closing = Some((*code, reason.clone()));
                }
                match frame::encode(&frame) {
                    Ok(encoded) => {
                        bytes += encoded.len();
                        chunks.push(encoded);
                    }
                    Err(e) => return debug!(id = ?native.id, "control frame not encoded: {e}"),
                }
            }
            if closing.is_some() || chunks.len() >= WRITE_BATCH_FRAMES || bytes >= WRITE_BATCH_BYTES
            {
                break;
            }
            next = events.try_recv();
        }
        if let Err(e) = writer.get_mut().write_all_chunks(&mut chunks).await {
            return debug!(id = ?native.id, "control stream write failed: {e}");
        }
        if let Some((why, reason)) = closing {
            // Once per connection at most: boxed so that its timer does not size the
            // future every live connection holds.
            Box::pin(finish_before_close(writer.get_mut())).await;
            native.quic.close(why.into(), reason.as_bytes());
            return;
        }
    }
}

/// Most frames, and about the most bytes, that one write to a control stream carries;
/// past them the rest waits for the next write (quinn takes what its flow control allows
/// and the write waits for the rest either way).
const WRITE_BATCH_FRAMES: usize = 64;
const WRITE_BATCH_BYTES: usize = 256 * 1024;

/// What the client is told of an event, if anything; the front end's part of the stream
/// rules (which stream the bytes go to) happens on the way, in event order.
fn frame_of(native: &Arc<Native>, event: Event) -> Option<ServerFrame> {
    Some(match event {
        Event::Reply { req, reply } => {
            if let Reply::StreamOpened { stream, kind, peer } = &reply {
                granted_as_opener(native, *stream, *kind, *peer);
            }
            ServerFrame::Reply {
                req: req.0,
                reply: wire_reply(reply),
            }
        }
        Event::Deliver {
            event,
            args,
            ticket,
        } => {
            let args = args.into_msgpack();
            ServerFrame::Deliver {
                event,
                args,
                ticket: ticket.map(|t| t.0),
            }
        }
        Event::RegisterRequest { ticket, from } => ServerFrame::RegisterRequest {
            ticket: ticket.0,
            from: from.to_string(),
        },
        Event::Unregistered { ticket } => ServerFrame::Unregistered { ticket: ticket.0 },
        Event::PeerDisconnected => ServerFrame::PeerDisconnected,
        Event::StreamRequest { ticket, from } => ServerFrame::StreamRequest {
            ticket: ticket.0,
            from: from.to_string(),
        },
        Event::StreamAccepted { stream, from, kind } => {
            // A native opener brings its own data stream (spliced when it arrives); for a
            // legacy opener the relay opens the stream to this client itself.
            if kind == StreamKind::Bridged {
                bridge::accept_from_legacy(native, stream);
            }
            ServerFrame::StreamAccepted {
                stream: stream.0,
                from: from.to_string(),
            }
        }
        Event::StreamData {
            stream,
            data,
            ticket,
        } => {
            bridge::chunk_in(native, stream, data, ticket);
            return None;
        }
        Event::StreamChunkTaken { stream } => {
            bridge::chunk_taken(native, stream);
            return None;
        }
        Event::StreamClosed { stream, why } => {
            if let Some(slot) = native.slots().remove(&stream) {
                slot.cut().cut(end_code(why));
            }
            ServerFrame::StreamClosed { stream: stream.0 }
        }
        Event::ServerError { code, message } => ServerFrame::ServerError {
            code: code.map(ErrorCode::as_u16),
            message,
        },
        Event::Close { reason } => ServerFrame::Closing {
            code: close_code(&reason).code(),
            reason: reason.to_string(),
        },
    })
}

/// The limits of the `Welcome` (docs/PROTOCOL.md Part 2.3).
fn wire_limits(limits: &relay_core::ClientLimits) -> wire::WireLimits {
    let narrow = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    wire::WireLimits {
        messages_per_second: limits.rate.messages_per_second,
        message_burst: limits.rate.message_burst,
        bytes_per_second: limits.rate.bytes_per_second,
        byte_burst: limits.rate.byte_burst,
        max_message_bytes: limits.max_message_bytes as u64,
        max_pending: narrow(limits.max_pending),
        max_streams: narrow(limits.max_streams_per_pair),
        ack_timeout_ms: limits.ack_timeout_ms,
    }
}

fn close_code(reason: &CloseReason) -> CloseCode {
    match reason {
        CloseReason::Replaced(_) => CloseCode::Replaced,
        CloseReason::Shutdown => CloseCode::Shutdown,
        CloseReason::Disconnected => CloseCode::Disconnected,
        CloseReason::TokenExpired => CloseCode::TokenExpired,
    }
}

/// This client may now open its data stream for `stream`: keep what relaying it needs.
fn granted_as_opener(native: &Native, stream: StreamId, kind: StreamKind, peer: Addr) {
    let slot = match kind {
        StreamKind::Spliced => Slot::Splice {
            peer,
            cut: Cut::default(),
        },
        StreamKind::Bridged => bridge::slot(),
        StreamKind::Chunked => return,
    };
    let granted = {
        let mut slots = native.slots();
        slots.insert(stream, slot);
        slots.len()
    };
    // The client opens its data stream as soon as it reads this grant: let it.
    native.ensure_stream_credit(1 + granted);
}

fn wire_reply(reply: Reply) -> WireReply {
    match reply {
        Reply::Registered(ok) => WireReply::Registered(ok),
        Reply::Unregistered => WireReply::Unregistered,
        Reply::Clients(page) => WireReply::Clients {
            ids: page.ids.iter().map(|id| id.to_string()).collect(),
            next: page.next.map(|id| id.to_string()),
        },
        Reply::Ack(payload) => WireReply::Ack(payload.into_msgpack()),
        Reply::StreamOpened { stream, .. } => WireReply::StreamOpened(stream.0),
        Reply::StreamRefused => WireReply::StreamRefused,
        Reply::Failed(error) => WireReply::Failed {
            code: error.code().as_u16(),
            message: error.to_string(),
        },
    }
}

/// Data streams the client opens: each names a granted stream in its header and is then
/// relayed to the other end.
async fn accept_streams(native: &Arc<Native>) {
    let mut streams = JoinSet::new();
    loop {
        tokio::select! {
            accepted = native.quic.accept_bi() => {
                let Ok((send, recv)) = accepted else { break };
                streams.spawn(splice::relay_opened(native.clone(), send, recv));
                native.ensure_stream_credit(1 + streams.len());
            }
            Some(_) = streams.join_next(), if !streams.is_empty() => {}
        }
    }
    // The connection is gone; its streams end with it (dropping the set aborts them).
}

/// Builds the header that starts a data stream toward a client.
pub(crate) fn header(stream: StreamId) -> [u8; wire::header::HEADER_LEN] {
    wire::StreamHeader { stream: stream.0 }.encode()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit_of(frame: ClientFrame, list_page: usize) -> Option<usize> {
        match command_of(frame, list_page) {
            Ok(Command::List { limit, .. }) => limit,
            other => panic!("{other:?}"),
        }
    }

    fn list(limit: Option<u32>) -> ClientFrame {
        ClientFrame::List {
            req: 1,
            after: Some("m".into()),
            limit,
        }
    }

    #[test]
    fn a_native_list_is_always_a_bounded_page() {
        assert_eq!(limit_of(list(None), 1000), Some(1000));
        assert_eq!(limit_of(list(None), 7), Some(7));
        assert_eq!(limit_of(list(Some(3)), 1000), Some(3));
        assert_eq!(limit_of(list(Some(u32::MAX)), 1000), Some(MAX_LIST_PAGE));
        assert_eq!(limit_of(list(Some(0)), 1000), Some(1));
        match command_of(list(None), 10) {
            Ok(Command::List { after, .. }) => assert_eq!(after.as_deref(), Some("m")),
            other => panic!("{other:?}"),
        }
    }
}
