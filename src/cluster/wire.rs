//! How a [`Transmit`] travels between nodes: a serde mirror of [`PeerMsg`], encoded with
//! MessagePack. The core's types carry no serde (the core stays free of any wire), so the
//! mirror lives here, with its conversions.
//!
//! Errors decided on another node travel as their code and text ([`RequestError::Remote`]):
//! the receiving side only reports them, it never matches on their variant.

use bytes::Bytes;
use relay_core::rmpv::{self, Value};
use relay_core::{
    Addr, ClientId, CloseReason, ConnId, ErrorCode, JsonArgs, NodeId, Payload, PeerMsg, QuestionId,
    RequestError, StreamId, Transmit, Transport,
};
use serde::{Deserialize, Serialize};

/// A batch of messages from one node to another, in the order they were sent.
#[derive(Debug, Serialize, Deserialize)]
pub struct Batch {
    pub from_node: u32,
    pub items: Vec<Item>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Item {
    pub from: (u32, u64),
    pub to: (u32, u64),
    pub msg: Msg,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum WirePayload {
    /// Decoded values (from a Socket.IO client), as a MessagePack array: decoded back into
    /// values on arrival, so a Socket.IO receiver gets exactly what a local one would.
    Values(#[serde(with = "serde_bytes")] Vec<u8>),
    MsgPack(#[serde(with = "serde_bytes")] Vec<u8>),
    /// A Socket.IO client's JSON arguments, as it sent them: a Socket.IO receiver on the
    /// other node gets them untouched, as a local one would.
    Json(String),
}

#[derive(Debug, Serialize, Deserialize)]
pub struct WireError {
    pub code: u16,
    pub message: String,
    /// The one error a receiver must recognise as such: the cluster could not carry it.
    pub unavailable: bool,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Msg {
    Register {
        q: u64,
        client: String,
        native: bool,
    },
    RegisterAnswer {
        q: u64,
        accepted: bool,
        native: bool,
    },
    RegisterCancel {
        q: u64,
    },
    Deliver {
        event: String,
        args: WirePayload,
        q: Option<u64>,
    },
    Acked {
        q: u64,
        args: WirePayload,
    },
    Refused {
        q: Option<u64>,
        error: WireError,
    },
    Unregister {
        q: u64,
    },
    Unregistered {
        q: u64,
    },
    StreamRequest {
        q: u64,
        stream: u64,
    },
    StreamAnswer {
        q: u64,
        granted: bool,
    },
    StreamForget {
        stream: u64,
    },
    Gone,
    Close {
        replaced_by: Option<String>,
    },
}

/// Why a message from another node could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("batch is not valid MessagePack: {0}")]
    Batch(#[from] rmp_serde::decode::Error),
    #[error("a clientId from another node is invalid: {0}")]
    ClientId(#[from] relay_core::InvalidClientId),
    #[error("arguments from another node are not valid MessagePack: {0}")]
    Payload(String),
    #[error("unknown error code {0} from another node")]
    Code(u16),
}

fn addr(a: Addr) -> (u32, u64) {
    (a.node.0, a.conn.0)
}

fn unaddr((node, conn): (u32, u64)) -> Addr {
    Addr::new(NodeId(node), ConnId(conn))
}

fn payload(p: Payload) -> WirePayload {
    match p {
        Payload::MsgPack(bytes) => WirePayload::MsgPack(bytes.to_vec()),
        Payload::Json(json) => WirePayload::Json(json.as_str().to_owned()),
        Payload::Values(values) => {
            let mut out = Vec::new();
            // Writing to a Vec cannot fail.
            let _ = rmpv::encode::write_value(&mut out, &Value::Array(values));
            WirePayload::Values(out)
        }
    }
}

fn unpayload(p: WirePayload) -> Result<Payload, DecodeError> {
    match p {
        WirePayload::MsgPack(bytes) => Ok(Payload::MsgPack(Bytes::from(bytes))),
        // Checked again: another node's word is not taken for it.
        WirePayload::Json(text) => {
            JsonArgs::new(Bytes::from(text), relay_core::payload::MAX_NESTING)
                .map(Payload::Json)
                .map_err(|e| DecodeError::Payload(e.to_string()))
        }
        WirePayload::Values(bytes) => {
            match rmpv::decode::read_value(&mut bytes.as_slice())
                .map_err(|e| DecodeError::Payload(e.to_string()))?
            {
                Value::Array(values) => Ok(Payload::Values(values)),
                _ => Err(DecodeError::Payload("not an array".into())),
            }
        }
    }
}

fn error(e: RequestError) -> WireError {
    WireError {
        code: e.code().as_u16(),
        unavailable: e == RequestError::ClusterUnavailable,
        message: e.to_string(),
    }
}

fn unerror(e: WireError) -> Result<RequestError, DecodeError> {
    if e.unavailable {
        return Ok(RequestError::ClusterUnavailable);
    }
    let code = ErrorCode::from_u16(e.code).ok_or(DecodeError::Code(e.code))?;
    Ok(RequestError::Remote {
        code,
        message: e.message,
    })
}

fn native(t: Transport) -> bool {
    t == Transport::Native
}

fn transport(native: bool) -> Transport {
    if native {
        Transport::Native
    } else {
        Transport::Legacy
    }
}

pub fn item(t: Transmit) -> Item {
    let msg = match t.msg {
        PeerMsg::Register {
            q,
            client,
            transport,
        } => Msg::Register {
            q: q.0,
            client: client.to_string(),
            native: native(transport),
        },
        PeerMsg::RegisterAnswer {
            q,
            accepted,
            transport,
        } => Msg::RegisterAnswer {
            q: q.0,
            accepted,
            native: native(transport),
        },
        PeerMsg::RegisterCancel { q } => Msg::RegisterCancel { q: q.0 },
        PeerMsg::Deliver { event, args, q } => Msg::Deliver {
            event,
            args: payload(args),
            q: q.map(|q| q.0),
        },
        PeerMsg::Acked { q, args } => Msg::Acked {
            q: q.0,
            args: payload(args),
        },
        PeerMsg::Refused { q, error: e } => Msg::Refused {
            q: q.map(|q| q.0),
            error: error(e),
        },
        PeerMsg::Unregister { q } => Msg::Unregister { q: q.0 },
        PeerMsg::Unregistered { q } => Msg::Unregistered { q: q.0 },
        PeerMsg::StreamRequest { q, stream } => Msg::StreamRequest {
            q: q.0,
            stream: stream.0,
        },
        PeerMsg::StreamAnswer { q, granted } => Msg::StreamAnswer { q: q.0, granted },
        PeerMsg::StreamForget { stream } => Msg::StreamForget { stream: stream.0 },
        PeerMsg::Gone => Msg::Gone,
        PeerMsg::Close { reason } => Msg::Close {
            replaced_by: match reason {
                CloseReason::Replaced(id) => Some(id.to_string()),
                // An operator's disconnect closes a local connection only (the control
                // center acts on this node's clients), and so does a token's expiry (the
                // node holding the connection keeps its deadline): neither travels.
                CloseReason::Shutdown | CloseReason::Disconnected | CloseReason::TokenExpired => {
                    None
                }
            },
        },
    };
    Item {
        from: addr(t.from),
        to: addr(t.to),
        msg,
    }
}

pub fn transmit(item: Item) -> Result<Transmit, DecodeError> {
    let q = QuestionId;
    let msg = match item.msg {
        Msg::Register {
            q: n,
            client,
            native,
        } => PeerMsg::Register {
            q: q(n),
            client: ClientId::new(&client)?,
            transport: transport(native),
        },
        Msg::RegisterAnswer {
            q: n,
            accepted,
            native,
        } => PeerMsg::RegisterAnswer {
            q: q(n),
            accepted,
            transport: transport(native),
        },
        Msg::RegisterCancel { q: n } => PeerMsg::RegisterCancel { q: q(n) },
        Msg::Deliver { event, args, q: n } => PeerMsg::Deliver {
            event,
            args: unpayload(args)?,
            q: n.map(q),
        },
        Msg::Acked { q: n, args } => PeerMsg::Acked {
            q: q(n),
            args: unpayload(args)?,
        },
        Msg::Refused { q: n, error } => PeerMsg::Refused {
            q: n.map(q),
            error: unerror(error)?,
        },
        Msg::Unregister { q: n } => PeerMsg::Unregister { q: q(n) },
        Msg::Unregistered { q: n } => PeerMsg::Unregistered { q: q(n) },
        Msg::StreamRequest { q: n, stream } => PeerMsg::StreamRequest {
            q: q(n),
            stream: StreamId(stream),
        },
        Msg::StreamAnswer { q: n, granted } => PeerMsg::StreamAnswer { q: q(n), granted },
        Msg::StreamForget { stream } => PeerMsg::StreamForget {
            stream: StreamId(stream),
        },
        Msg::Gone => PeerMsg::Gone,
        Msg::Close { replaced_by } => PeerMsg::Close {
            reason: match replaced_by {
                Some(id) => CloseReason::Replaced(ClientId::new(&id)?),
                None => CloseReason::Shutdown,
            },
        },
    };
    Ok(Transmit {
        from: unaddr(item.from),
        to: unaddr(item.to),
        msg,
    })
}

/// A batch of plain data encodes; should it ever not, the caller learns it (an empty
/// message in its place would reach the other node as a batch it cannot read).
pub fn encode(batch: &Batch) -> Result<Vec<u8>, rmp_serde::encode::Error> {
    rmp_serde::to_vec(batch)
}

pub fn decode(bytes: &[u8]) -> Result<Batch, DecodeError> {
    Ok(rmp_serde::from_slice(bytes)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_round_trips() {
        let a = Addr::new(NodeId(1), ConnId(7));
        let b = Addr::new(NodeId(2), ConnId(9));
        let id = ClientId::new("alice").unwrap();
        let values = Payload::Values(vec![
            Value::from("x"),
            Value::Binary(vec![0, 1, 255]),
            Value::Map(vec![(Value::from("k"), Value::from(1))]),
        ]);
        let msgs = vec![
            PeerMsg::Register {
                q: QuestionId(1),
                client: id.clone(),
                transport: Transport::Native,
            },
            PeerMsg::RegisterAnswer {
                q: QuestionId(1),
                accepted: true,
                transport: Transport::Legacy,
            },
            PeerMsg::Deliver {
                event: "e".into(),
                args: values.clone(),
                q: Some(QuestionId(3)),
            },
            PeerMsg::Acked {
                q: QuestionId(3),
                args: Payload::MsgPack(Bytes::from_static(&[0x91, 0x01])),
            },
            PeerMsg::Refused {
                q: None,
                error: RequestError::ClusterUnavailable,
            },
            PeerMsg::StreamRequest {
                q: QuestionId(4),
                stream: StreamId(u64::MAX),
            },
            PeerMsg::Deliver {
                event: "j".into(),
                args: Payload::Json(
                    JsonArgs::new(Bytes::from_static(br#"[1.50,{"a":"\u00e9"}]"#), 10).unwrap(),
                ),
                q: None,
            },
            PeerMsg::Gone,
            PeerMsg::Close {
                reason: CloseReason::Replaced(id),
            },
        ];
        let batch = Batch {
            from_node: 1,
            items: msgs
                .iter()
                .cloned()
                .map(|msg| {
                    item(Transmit {
                        from: a,
                        to: b,
                        msg,
                    })
                })
                .collect(),
        };
        let back = decode(&encode(&batch).unwrap()).unwrap();
        let back: Vec<PeerMsg> = back
            .items
            .into_iter()
            .map(|i| transmit(i).unwrap().msg)
            .collect();
        assert_eq!(back, msgs);
    }

    #[test]
    fn remote_errors_keep_code_and_text() {
        let e = RequestError::TargetNotConnected(ClientId::new("bob").unwrap());
        let t = Transmit {
            from: Addr::new(NodeId(1), ConnId(1)),
            to: Addr::new(NodeId(2), ConnId(2)),
            msg: PeerMsg::Refused {
                q: Some(QuestionId(5)),
                error: e.clone(),
            },
        };
        let back = transmit(item(t)).unwrap();
        let PeerMsg::Refused { error, .. } = back.msg else {
            panic!("{back:?}")
        };
        assert_eq!(error.code(), e.code());
        assert_eq!(error.to_string(), e.to_string());
    }
}
