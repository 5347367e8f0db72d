//! Socket.IO events from a client, translated into core commands.
//!
//! Each event is handled where socketioxide reads it: the gateway registers a
//! [`MessageHandler`] of its own ([`Inbound`]), which socketioxide calls inline in the
//! connection's read loop. A closure handler would be spawned as a task per event: that
//! costs a spawn and a wake-up per message, and spawned handlers overtake each other (they
//! reordered most of a fast sender's messages). Handled inline, every client's requests
//! reach the core in the order they were sent, each after the acks the client sent before
//! it.

use std::sync::Arc;

use relay_core::rmpv::Value;
use relay_core::{Command, ErrorCode, Event, Payload, Reply, RequestError, Transport};
use socketioxide::adapter::LocalAdapter;
use socketioxide::handler::MessageHandler;
use socketioxide::socket::Socket;

use crate::args;
use crate::connection::{Conn, RequestKind};
use crate::events;

/// The relay's events, with what each one is.
const EVENTS: [(&str, Kind); 6] = [
    (events::P2P_REGISTER, Kind::Request(RequestKind::Register)),
    (
        events::P2P_UNREGISTER,
        Kind::Request(RequestKind::Unregister),
    ),
    (events::P2P_EMIT, Kind::Emit),
    (
        events::P2P_EMIT_ACKNOWLEDGE,
        Kind::Request(RequestKind::Emit),
    ),
    (events::LIST_CLIENTS, Kind::Request(RequestKind::List)),
    (
        events::P2P_REGISTER_STREAM,
        Kind::Request(RequestKind::Stream),
    ),
];

/// An event as the gateway reads it.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// A request, answered through its ack (if the client asked for one).
    Request(RequestKind),
    /// `P2P_EMIT`: an emit that never takes an ack, whatever the packet says.
    Emit,
}

/// Registers the relay's events on an established socket, each with its connection.
pub(crate) fn listen(socket: &Socket<LocalAdapter>, conn: &Arc<Conn>) {
    for (name, kind) in EVENTS {
        socket.on(
            name,
            Inbound {
                conn: conn.clone(),
                name,
                kind,
            },
        );
    }
}

/// The handler of one of the relay's events on one socket (see the module docs). It holds
/// its connection, so that no lookup in the socket's extensions is needed per event.
pub(crate) struct Inbound {
    conn: Arc<Conn>,
    name: &'static str,
    kind: Kind,
}

/// Marks [`Inbound`]'s own [`MessageHandler`] impl apart from socketioxide's closure impls.
pub(crate) struct Inline;

impl MessageHandler<LocalAdapter, Inline> for Inbound {
    fn call(
        &self,
        _socket: Arc<Socket<LocalAdapter>>,
        value: socketioxide_core::Value,
        ack_id: Option<i64>,
    ) {
        let (kind, ack_id) = match self.kind {
            Kind::Request(kind) => (kind, ack_id),
            Kind::Emit => (RequestKind::Emit, None),
        };
        // An emit is read the fast way when it can be: its arguments go on as JSON text.
        if kind == RequestKind::Emit {
            if let Some(emit) = args::raw_emit(&value) {
                return handle_event(&self.conn, kind, ack_id, |ack| {
                    Ok(Command::Emit {
                        target: emit.target,
                        event: emit.event,
                        args: emit.args.map_or_else(Payload::empty, Payload::Json),
                        ack,
                    })
                });
            }
        }
        // LIST_CLIENTS and P2P_UNREGISTER take no arguments: whatever came is not read.
        let limit = self.conn.handle.config().max_message_bytes;
        let args = match kind {
            RequestKind::List | RequestKind::Unregister => Ok(Vec::new()),
            _ => match args::event_args_within(&value, limit) {
                // Refused before its attachments were copied into it, as the core refuses
                // an emit over the limit: same code, same words, the connection lives on.
                Err(args::ArgsError::TooLarge { size, limit }) => {
                    return too_large(&self.conn, kind, ack_id, size, limit);
                }
                other => {
                    other.map_err(|e| format!("could not read the arguments of {}: {e}", self.name))
                }
            },
        };
        handle_event(&self.conn, kind, ack_id, |req| parse(kind, args, req));
    }
}

/// Answers an event whose arguments would exceed the message limit the way the core
/// answers an emit over it (`RequestError::PayloadTooLarge`): a `SERVER_ERROR`, and the
/// request's ack failed with the same reason if it has one.
fn too_large(conn: &Conn, kind: RequestKind, ack_id: Option<i64>, size: usize, limit: usize) {
    conn.acks.hand_over_arrived(&conn.handle, conn.id);
    let req = (kind != RequestKind::Emit || ack_id.is_some()).then(|| conn.next_req(ack_id, kind));
    let error = RequestError::PayloadTooLarge { size, limit };
    tracing::debug!(conn = ?conn.id, %error, "arguments refused before expansion");
    conn.toward.push(Event::ServerError {
        code: Some(error.code()),
        message: error.to_string(),
    });
    if let Some(req) = req {
        conn.toward.push(Event::Reply {
            req,
            reply: Reply::Failed(error),
        });
    }
}

/// `command` makes the event's command from its request id, or says why it cannot (the
/// request is then answered with that reason, as any malformed request is). `ack_id` is
/// the client's ack, if the event takes one.
fn handle_event(
    conn: &Conn,
    kind: RequestKind,
    ack_id: Option<i64>,
    command: impl FnOnce(Option<relay_core::ReqId>) -> Result<Command, String>,
) {
    // Whatever the client acked before sending this event reaches the core first.
    conn.acks.hand_over_arrived(&conn.handle, conn.id);
    let req = (kind != RequestKind::Emit || ack_id.is_some()).then(|| conn.next_req(ack_id, kind));
    match command(req) {
        Ok(command) => conn.handle.command(conn.id, command),
        Err(message) => {
            conn.handle.metrics().malformed(Transport::Legacy);
            conn.toward.push(Event::ServerError {
                code: Some(ErrorCode::Invalid),
                message: message.clone(),
            });
            if let Some(req) = req {
                let reply = Reply::Failed(RequestError::Malformed(message));
                conn.toward.push(Event::Reply { req, reply });
            }
        }
    }
}

fn parse(
    kind: RequestKind,
    args: Result<Vec<Value>, String>,
    req: Option<relay_core::ReqId>,
) -> Result<Command, String> {
    let req_id = || req.expect("requests of this kind always carry an id");
    // LIST_CLIENTS and P2P_UNREGISTER take no arguments: whatever came is ignored.
    let args = match kind {
        RequestKind::List | RequestKind::Unregister => Vec::new(),
        _ => args?,
    };
    let mut args = args.into_iter();
    Ok(match kind {
        RequestKind::Register => Command::Register {
            req: req_id(),
            target: target_arg(args.next())?,
        },
        // The legacy plugin sends its current peer, which is undefined (null) while
        // unpaired; the core then answers "not paired" rather than a type error.
        RequestKind::Stream => Command::OpenStream {
            req: req_id(),
            target: match args.next() {
                None | Some(Value::Nil) => String::new(),
                other => target_arg(other)?,
            },
        },
        RequestKind::Unregister => Command::Unregister { req: req_id() },
        RequestKind::List => Command::List {
            req: req_id(),
            after: None,
            limit: None,
        },
        RequestKind::Emit => {
            let (target, event, args) = emit_payload(args.next())?;
            Command::Emit {
                target,
                event,
                args: Payload::Values(args),
                ack: req,
            }
        }
    })
}

fn target_arg(value: Option<Value>) -> Result<String, String> {
    match value {
        Some(Value::String(s)) if s.as_str().is_some() => Ok(s.into_str().unwrap_or_default()),
        _ => Err("targetClientId must be a string".to_owned()),
    }
}

/// Splits `{targetClientId, event, args}`. A missing or null `args` means no arguments.
fn emit_payload(value: Option<Value>) -> Result<(String, String, Vec<Value>), String> {
    let Some(Value::Map(entries)) = value else {
        return Err("P2P_EMIT payload must be an object {targetClientId, event, args}".to_owned());
    };
    let (mut target, mut event, mut args) = (None, None, None);
    for (key, value) in entries {
        match key.as_str() {
            Some("targetClientId") => target = Some(value),
            Some("event") => event = Some(value),
            Some("args") => args = Some(value),
            _ => {}
        }
    }
    let target = target_arg(target)?;
    let event = match event {
        Some(Value::String(s)) if s.as_str().is_some() => s.into_str().unwrap_or_default(),
        _ => return Err("event must be a string".to_owned()),
    };
    let args = match args {
        None | Some(Value::Nil) => Vec::new(),
        Some(Value::Array(values)) => values,
        Some(_) => return Err("args must be an array".to_owned()),
    };
    Ok((target, event, args))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(entries: Vec<(&str, Value)>) -> Value {
        Value::Map(
            entries
                .into_iter()
                .map(|(k, v)| (Value::from(k), v))
                .collect(),
        )
    }

    #[test]
    fn emit_payload_accepts_the_legacy_shape() {
        let payload = map(vec![
            ("targetClientId", Value::from("B")),
            ("event", Value::from("hello")),
            (
                "args",
                Value::Array(vec![Value::from(1), Value::Binary(vec![9])]),
            ),
        ]);
        let (target, event, args) = emit_payload(Some(payload)).unwrap();
        assert_eq!((target.as_str(), event.as_str()), ("B", "hello"));
        assert_eq!(args, vec![Value::from(1), Value::Binary(vec![9])]);
    }

    #[test]
    fn emit_payload_without_args_means_no_arguments() {
        let payload = map(vec![
            ("targetClientId", Value::from("B")),
            ("event", Value::from("ping")),
        ]);
        assert!(emit_payload(Some(payload)).unwrap().2.is_empty());
    }

    #[test]
    fn emit_payload_errors_say_what_is_wrong() {
        assert_eq!(
            emit_payload(None).unwrap_err(),
            "P2P_EMIT payload must be an object {targetClientId, event, args}"
        );
        assert_eq!(
            emit_payload(Some(Value::from("x"))).unwrap_err(),
            "P2P_EMIT payload must be an object {targetClientId, event, args}"
        );
        let no_target = map(vec![("event", Value::from("e"))]);
        assert_eq!(
            emit_payload(Some(no_target)).unwrap_err(),
            "targetClientId must be a string"
        );
        let bad_event = map(vec![
            ("targetClientId", Value::from("B")),
            ("event", Value::from(3)),
        ]);
        assert_eq!(
            emit_payload(Some(bad_event)).unwrap_err(),
            "event must be a string"
        );
        let bad_args = map(vec![
            ("targetClientId", Value::from("B")),
            ("event", Value::from("e")),
            ("args", Value::from("no")),
        ]);
        assert_eq!(
            emit_payload(Some(bad_args)).unwrap_err(),
            "args must be an array"
        );
    }
}
