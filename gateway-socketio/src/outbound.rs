//! Core events for one client, turned into Socket.IO packets in the order they were made.
//!
//! socketioxide gives no back-pressure: an emit is a `try_send` into the socket's bounded
//! queue and fails at once when it is full (heartbeats share that queue). So each client
//! has an [`Outbox`](crate::Outbox) in front of it, drained by one task that retries a full
//! socket queue after a short pause instead of dropping the packet (see the outbox for what
//! happens when a receiver stays slow).

use std::sync::Arc;
use std::time::Duration;

use relay_core::rmpv::Value;
use relay_core::{Answer, CloseReason, Event, Payload, Reply, Ticket};
use socketioxide::adapter::LocalAdapter;
use socketioxide::extract::AckSender;
use socketioxide::handler::FromMessageParts;
use socketioxide::socket::Socket;
use socketioxide::{AckError, SendError, SocketError};
use relay_runtime::{OutboxReceiver, Overflow};
use tracing::{debug, trace, warn};

use crate::args::Args;
use crate::connection::{Conn, RequestKind};
use crate::events;

/// The socket went away while its events were being sent.
struct Gone;

/// Sends every event of `rx` to the client, one at a time and in order, and hands the
/// client's acks to the core as they arrive; both end with it. A client whose queue goes
/// over its byte cap is cut off, even while a send to it is stuck.
pub(crate) async fn drain(socket: Arc<Socket<LocalAdapter>>, conn: Arc<Conn>, rx: OutboxReceiver) {
    let outbox = rx.outbox().clone();
    tokio::select! {
        overflow = outbox.overflowed() => cut_off(&socket, &conn, overflow).await,
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
    let message = overflow.to_string();
    if retry(|| socket.emit(events::SERVER_ERROR, &(message.as_str(),)))
        .await
        .is_err()
    {
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
        tokio::select! {
            event = rx.recv() => {
                let Some(event) = event else { break };
                let is_deliver = matches!(event, Event::Deliver { .. });
                let sent = send(socket, conn, event).await;
                if is_deliver {
                    conn.outbox.delivered();
                }
                if sent.is_err() {
                    break;
                }
            }
            _ = &mut acks => {}
        }
    }
}

async fn send(
    socket: &Arc<Socket<LocalAdapter>>,
    conn: &Arc<Conn>,
    event: Event,
) -> Result<(), Gone> {
    match event {
        Event::Reply { req, reply } => {
            let Some(awaiting) = conn.take_awaiting(req) else {
                return Ok(());
            };
            let Some(ack_id) = awaiting.ack_id else {
                return Ok(());
            };
            let data = reply_args(awaiting.kind, reply);
            retry(|| {
                let mut empty = socketioxide_core::Value::Bytes(Default::default());
                let ack = AckSender::from_message_parts(socket, &mut empty, &Some(ack_id))
                    .expect("AckSender extraction is infallible");
                ack.send(&data)
            })
            .await
        }
        Event::Deliver {
            event,
            args,
            ticket,
        } => {
            let values = values_or_error(args);
            match ticket {
                None => retry(|| socket.emit(&event, &values)).await,
                Some(ticket) => {
                    ask(socket, conn, &event, &values, ticket, |args| {
                        Answer::Ack(Payload::Values(args.0))
                    })
                    .await
                }
            }
        }
        Event::RegisterRequest { ticket, from } => {
            let args = Args(vec![Value::from(from.as_str())]);
            ask(socket, conn, events::P2P_REGISTER, &args, ticket, accepted).await
        }
        Event::StreamRequest { ticket, .. } => {
            let args = Args::default();
            ask(
                socket,
                conn,
                events::P2P_REGISTER_STREAM,
                &args,
                ticket,
                accepted,
            )
            .await
        }
        Event::Unregistered { ticket } => {
            let args = Args::default();
            ask(socket, conn, events::P2P_UNREGISTER, &args, ticket, |_| {
                Answer::Done
            })
            .await
        }
        Event::PeerDisconnected => {
            retry(|| socket.emit(events::P2P_DISCONNECT, &Args::default())).await
        }
        Event::ServerError { message, .. } => {
            retry(|| socket.emit(events::SERVER_ERROR, &(message.as_str(),))).await
        }
        Event::Close { reason } => {
            debug!(sid = %socket.id, %reason, "closing connection");
            match reason {
                // A replaced client must not come back on its own and take its id back:
                // a namespace disconnect tells socket.io-client not to reconnect.
                CloseReason::Replaced(_) => {
                    let _ = socket.clone().disconnect();
                }
                // The socket stays in the namespace for `Gateway::close`, which closes its
                // transport behind what was queued (socketioxide only closes the transports
                // of sockets still in a namespace), as the Node server's `io.close()` did:
                // the client sees the transport close and may reconnect to the next relay.
                CloseReason::Shutdown => {}
            }
            Err(Gone)
        }
        // A legacy client's streams have no ids: its chunks are plain acknowledged emits,
        // and a bridged stream's rules are kept by the core. Stream bookkeeping events
        // mean nothing to it.
        Event::StreamAccepted { .. }
        | Event::StreamClosed { .. }
        | Event::StreamData { .. }
        | Event::StreamChunkTaken { .. } => Ok(()),
    }
}

/// Asks the client something that it answers with an ack, and hands the answer to the core
/// when it comes. The core owns the timeout: socketioxide's is set longer, so a missing
/// ack is reported by the core with its clear message.
async fn ask(
    socket: &Arc<Socket<LocalAdapter>>,
    conn: &Arc<Conn>,
    event: &str,
    args: &Args,
    ticket: Ticket,
    answer: fn(Args) -> Answer,
) -> Result<(), Gone> {
    let mut stream = None;
    retry(|| {
        socket.emit_with_ack::<_, Args>(event, args).map(|ack| {
            stream = Some(ack);
        })
    })
    .await?;
    // None: the packet could not be encoded (`retry` logged it). The core converts what
    // reaches a Socket.IO client, so this should not happen; if it does, the question is
    // answered by the core's own deadline, and this connection keeps being served.
    let Some(ack) = stream else {
        return Ok(());
    };
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

fn accepted(args: Args) -> Answer {
    Answer::Accept(matches!(args.0.first(), Some(Value::Boolean(true))))
}

/// Sends with socketioxide until its queue takes the packet: a full queue is waited out
/// with a growing pause (so heartbeats find room in between); a closed socket ends it.
async fn retry(mut send: impl FnMut() -> Result<(), SendError>) -> Result<(), Gone> {
    let mut pause = Duration::from_millis(1);
    loop {
        match send() {
            Ok(()) => return Ok(()),
            Err(SendError::Socket(SocketError::InternalChannelFull)) => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            Err(SendError::Socket(SocketError::Closed)) => return Err(Gone),
            Err(SendError::Serialize(e)) => {
                warn!("could not encode an outgoing packet, dropped: {e:?}");
                return Ok(());
            }
        }
    }
}

fn values_or_error(payload: Payload) -> Args {
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
