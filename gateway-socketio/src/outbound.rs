//! Core events for one client, turned into Socket.IO packets in the order they were made.
//!
//! socketioxide gives no back-pressure: an emit is a `try_send` into the socket's bounded
//! queue and fails at once when it is full (heartbeats share that queue). So each client
//! has an [`Outbox`](crate::Outbox) in front of it, drained by one task that retries a full
//! socket queue after a short pause instead of dropping the packet (see the outbox for what
//! happens when a receiver stays slow).

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use relay_core::rmpv::Value;
use relay_core::{Answer, CloseReason, Event, Payload, Reply, Ticket};
use relay_runtime::{OutboxReceiver, Overflow};
use socketioxide::adapter::LocalAdapter;
use socketioxide::extract::AckSender;
use socketioxide::handler::FromMessageParts;
use socketioxide::socket::Socket;
use socketioxide::{AckError, SendError, SocketError};
use tracing::{debug, trace, warn};

use crate::args::{Args, OutArgs};
use crate::connection::{Conn, RequestKind};
use crate::events;

/// The socket went away while its events were being sent.
struct Gone;

/// Sends every event of `rx` to the client, one at a time and in order, and hands the
/// client's acks to the core as they arrive; both end with it. A client whose queue goes
/// over its byte cap is cut off, even while a send to it is stuck.
///
/// This task lives as long as its client, idle or not, so its future is kept small: the
/// sending itself is synchronous ([`Packet::try_send`]), and only waiting out a full
/// socket queue and the rare cut-off are awaited (the latter boxed, so its state takes
/// room only once it runs).
pub(crate) async fn drain(socket: Arc<Socket<LocalAdapter>>, conn: Arc<Conn>, rx: OutboxReceiver) {
    let outbox = rx.outbox().clone();
    tokio::select! {
        overflow = outbox.overflowed() => Box::pin(cut_off(&socket, &conn, overflow)).await,
        () = send_all(&socket, &conn, rx) => {}
    }
    trace!(sid = %socket.id, "outbound drain ended");
}

/// Cuts the client off: the core forgets it at once (its peer is told, its questions
/// answered, its id freed), then the client is told why and its namespace socket closed as
/// soon as socketioxide's queue has room for those packets (or socketioxide's heartbeat,
/// stuck behind the same queue, closes the transport first). What waits in the queue is
/// bounded by socketioxide's own packet limit.
async fn cut_off(socket: &Arc<Socket<LocalAdapter>>, conn: &Arc<Conn>, overflow: Overflow) {
    debug!(sid = %socket.id, %overflow, "cutting off a client that does not read");
    conn.close_in_core();
    // Waits for room in socketioxide's queue: the client learns why once it reads again.
    let message = Packet::Emit {
        event: Cow::Borrowed(events::SERVER_ERROR),
        args: Args(vec![Value::from(overflow.to_string())]).into(),
    };
    if send_packet(socket, conn, message).await.is_err() {
        return;
    }
    let mut pause = Duration::from_millis(10);
    loop {
        match socket.clone().disconnect() {
            Err(SocketError::InternalChannelFull) => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
            Ok(()) | Err(SocketError::Closed) => return,
        }
    }
}

async fn send_all(socket: &Arc<Socket<LocalAdapter>>, conn: &Arc<Conn>, mut rx: OutboxReceiver) {
    let acks = conn.acks.run(conn.handle.clone(), conn.id);
    tokio::pin!(acks);
    loop {
        let event = tokio::select! {
            event = rx.recv() => event,
            _ = &mut acks => continue,
        };
        let Some(event) = event else { break };
        let is_deliver = matches!(event, Event::Deliver { .. });
        let sent = match Packet::of(socket, conn, event) {
            Ok(Some(packet)) => send_packet(socket, conn, packet).await,
            Ok(None) => Ok(()),
            Err(gone) => Err(gone),
        };
        if is_deliver {
            conn.outbox.delivered();
        }
        if sent.is_err() {
            break;
        }
        // Only now is the event in socketioxide's queue: what comes after it may go
        // straight there.
        conn.toward.taken();
    }
}

/// What one core event becomes on the socket, ready to be handed to socketioxide (again,
/// while its queue is full).
enum Packet {
    /// An event without ack.
    Emit {
        event: Cow<'static, str>,
        args: OutArgs,
    },
    /// An answer to the client's request `ack_id`.
    Ack { ack_id: i64, args: Args },
    /// A question the client answers with an ack, which goes to the core as `answer` of
    /// it makes it (see [`Packet::try_send`]).
    Ask {
        event: Cow<'static, str>,
        args: OutArgs,
        ticket: Ticket,
        answer: fn(Args) -> Answer,
    },
}

impl Packet {
    /// The packet `event` becomes, None when it means nothing to the client, or Gone when
    /// it ends the connection.
    fn of(
        socket: &Arc<Socket<LocalAdapter>>,
        conn: &Conn,
        event: Event,
    ) -> Result<Option<Packet>, Gone> {
        let emit = |event: &'static str, args: Args| {
            Ok(Some(Packet::Emit {
                event: event.into(),
                args: args.into(),
            }))
        };
        let ask = |event: &'static str, args: Args, ticket, answer| {
            Ok(Some(Packet::Ask {
                event: event.into(),
                args: args.into(),
                ticket,
                answer,
            }))
        };
        match event {
            Event::Reply { req, reply } => {
                let Some(awaiting) = conn.take_awaiting(req) else {
                    return Ok(None);
                };
                let Some(ack_id) = awaiting.ack_id else {
                    return Ok(None);
                };
                let args = reply_args(awaiting.kind, reply);
                Ok(Some(Packet::Ack { ack_id, args }))
            }
            Event::Deliver {
                event,
                args,
                ticket,
            } => {
                let args = out_args(args);
                let event = Cow::Owned(event);
                Ok(Some(match ticket {
                    None => Packet::Emit { event, args },
                    Some(ticket) => Packet::Ask {
                        event,
                        args,
                        ticket,
                        answer: |args| Answer::Ack(Payload::Values(args.0)),
                    },
                }))
            }
            Event::RegisterRequest { ticket, from } => {
                let args = Args(vec![Value::from(from.as_str())]);
                ask(events::P2P_REGISTER, args, ticket, accepted)
            }
            Event::StreamRequest { ticket, .. } => ask(
                events::P2P_REGISTER_STREAM,
                Args::default(),
                ticket,
                accepted,
            ),
            Event::Unregistered { ticket } => {
                ask(events::P2P_UNREGISTER, Args::default(), ticket, |_| {
                    Answer::Done
                })
            }
            Event::PeerDisconnected => emit(events::P2P_DISCONNECT, Args::default()),
            Event::ServerError { message, .. } => {
                emit(events::SERVER_ERROR, Args(vec![Value::from(message)]))
            }
            Event::Close { reason } => {
                debug!(sid = %socket.id, %reason, "closing connection");
                match reason {
                    // A replaced client must not come back on its own and take its id
                    // back: a namespace disconnect tells socket.io-client not to reconnect.
                    // Nor must a client its operator disconnected, nor one whose token
                    // expired (reconnecting with it would only be refused).
                    CloseReason::Replaced(_)
                    | CloseReason::Disconnected
                    | CloseReason::TokenExpired => {
                        let _ = socket.clone().disconnect();
                    }
                    // The socket stays in the namespace for `Gateway::close`, which closes
                    // its transport behind what was queued (socketioxide only closes the
                    // transports of sockets still in a namespace), as the Node server's
                    // `io.close()` did: the client sees the transport close and may
                    // reconnect to the next relay.
                    CloseReason::Shutdown => {}
                }
                Err(Gone)
            }
            // A legacy client's streams have no ids: its chunks are plain acknowledged
            // emits, and a bridged stream's rules are kept by the core. Stream bookkeeping
            // events mean nothing to it.
            Event::StreamAccepted { .. }
            | Event::StreamClosed { .. }
            | Event::StreamData { .. }
            | Event::StreamChunkTaken { .. } => Ok(None),
        }
    }

    /// Hands the packet to socketioxide's queue, without waiting. A question's ack, when
    /// it comes, is handed to the core by the connection's [`AckWaiters`]: the core owns
    /// the timeout (socketioxide's is set longer, so a missing ack is reported by the core
    /// with its clear message).
    ///
    /// [`AckWaiters`]: crate::acks::AckWaiters
    fn try_send(&self, socket: &Arc<Socket<LocalAdapter>>, conn: &Conn) -> Result<(), SendError> {
        match self {
            Packet::Emit { event, args } => socket.emit(event, args),
            Packet::Ack { ack_id, args } => {
                let mut empty = socketioxide_core::Value::Bytes(Default::default());
                let ack = AckSender::from_message_parts(socket, &mut empty, &Some(*ack_id))
                    .expect("AckSender extraction is infallible");
                ack.send(args)
            }
            Packet::Ask {
                event,
                args,
                ticket,
                answer,
            } => {
                let ack = socket.emit_with_ack::<_, Args>(event, args)?;
                let (ticket, answer) = (*ticket, *answer);
                conn.acks.push(async move {
                    match ack.await {
                        Ok(args) => Some((ticket, answer(args))),
                        Err(AckError::Decode(e)) => {
                            debug!("undecodable ack: {e:?}");
                            None
                        }
                        Err(e) => {
                            trace!("no ack: {e:?}");
                            None
                        }
                    }
                });
                Ok(())
            }
        }
    }
}

/// Sends with socketioxide until its queue takes the packet: a full queue is waited out
/// with a growing pause (so heartbeats find room in between); a closed socket ends it.
/// The waiting is boxed: it is rare, and the drain's future (which lives as long as its
/// client) then holds no timer.
async fn send_packet(
    socket: &Arc<Socket<LocalAdapter>>,
    conn: &Conn,
    packet: Packet,
) -> Result<(), Gone> {
    match settle(packet.try_send(socket, conn)) {
        Some(done) => done,
        None => Box::pin(wait_for_room(socket, conn, packet)).await,
    }
}

async fn wait_for_room(
    socket: &Arc<Socket<LocalAdapter>>,
    conn: &Conn,
    packet: Packet,
) -> Result<(), Gone> {
    let mut pause = Duration::from_millis(1);
    loop {
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(50));
        if let Some(done) = settle(packet.try_send(socket, conn)) {
            return done;
        }
    }
}

/// What a send's result means: done (sent, or dropped: a packet that cannot be encoded is
/// logged and dropped; the core converts what reaches a Socket.IO client, so this should
/// not happen, and a question is then answered by the core's own deadline), the socket
/// gone, or None: its queue is full, try again later.
fn settle(sent: Result<(), SendError>) -> Option<Result<(), Gone>> {
    match sent {
        Ok(()) => Some(Ok(())),
        Err(SendError::Socket(SocketError::InternalChannelFull)) => None,
        Err(SendError::Socket(SocketError::Closed)) => Some(Err(Gone)),
        Err(SendError::Serialize(e)) => {
            warn!("could not encode an outgoing packet, dropped: {e:?}");
            Some(Ok(()))
        }
    }
}

fn accepted(args: Args) -> Answer {
    Answer::Accept(matches!(args.0.first(), Some(Value::Boolean(true))))
}

/// What a relayed payload becomes on a Socket.IO socket: JSON text from another
/// Socket.IO client as it came, anything else as JSON values (or, when it cannot be one,
/// the `{error}` a failed ack carries; the core refuses such payloads before this).
pub(crate) fn out_args(payload: Payload) -> OutArgs {
    match payload {
        Payload::Json(json) => OutArgs::Json(json),
        payload => OutArgs::Values(values_or_error(payload)),
    }
}

pub(crate) fn values_or_error(payload: Payload) -> Args {
    match payload.into_json_values() {
        Ok(values) => Args(values),
        Err(e) => Args(vec![relay_core::payload::error_value(&e.to_string())]),
    }
}

/// The ack arguments a reply becomes, in the shape the legacy client expects for the
/// request it made.
fn reply_args(kind: RequestKind, reply: Reply) -> Args {
    let one = |v: Value| Args(vec![v]);
    match reply {
        Reply::Registered(ok) => one(Value::from(ok)),
        Reply::Unregistered => Args::default(),
        Reply::Clients(page) => one(Value::Array(
            page.ids.iter().map(|id| Value::from(id.as_str())).collect(),
        )),
        Reply::Ack(payload) => values_or_error(payload),
        Reply::StreamOpened { .. } => one(Value::from(true)),
        Reply::StreamRefused => one(Value::from(false)),
        Reply::Failed(error) => match kind {
            RequestKind::Register | RequestKind::Stream => one(Value::from(false)),
            RequestKind::Unregister | RequestKind::List => Args::default(),
            RequestKind::Emit => one(relay_core::payload::error_value(&error.to_string())),
        },
    }
}
