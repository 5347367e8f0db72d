//! What one connection's rules say to another's: the messages of the link between two
//! connections, whether both are on this node or the other one is a remote connection on
//! another node (then a node link carries them).
//!
//! Every question a message asks carries the asker's [`QuestionId`]; the answer names it.
//! The asker keeps the deadline, so an answer that never comes is answered by the asker's
//! own timeout, and a lost message can never leave a request without its reply. Messages
//! from one connection to another must arrive in the order they were sent.

use bytes::Bytes;

use crate::addr::Addr;
use crate::client_id::ClientId;
use crate::error::{CloseReason, RequestError};
use crate::event::StreamId;
use crate::payload::Payload;
use crate::transport::Transport;

/// The asking connection's own number for a question it sent to another connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QuestionId(pub u64);

/// A message from one connection to another.
#[derive(Debug, Clone, PartialEq)]
pub struct Transmit {
    pub from: Addr,
    pub to: Addr,
    pub msg: PeerMsg,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PeerMsg {
    /// `client` asks to pair. The target decides (it answers for itself), so two racing
    /// requests have exactly one winner without any shared lock.
    Register {
        q: QuestionId,
        client: ClientId,
        transport: Transport,
    },
    /// The target's decision. `accepted` means the target now counts the asker as its peer.
    RegisterAnswer {
        q: QuestionId,
        accepted: bool,
        transport: Transport,
    },
    /// The asker cannot complete a pairing (it timed out, or paired elsewhere first): the
    /// target must not believe in it. Names the question, so a pairing the two made the
    /// other way round is left alone.
    RegisterCancel {
        q: QuestionId,
    },
    /// Relay `event(args)` to the peer; with a question, its client's ack is wanted.
    Deliver {
        event: String,
        args: Payload,
        q: Option<QuestionId>,
    },
    /// The client's ack to a `Deliver` (or the native side took a bridged chunk).
    Acked {
        q: QuestionId,
        args: Payload,
    },
    /// The question (or, without one, a plain emit) could not be served.
    Refused {
        q: Option<QuestionId>,
        error: RequestError,
    },
    /// The sender ended the pairing; answer with `Unregistered` once the client cleared it.
    Unregister {
        q: QuestionId,
    },
    Unregistered {
        q: QuestionId,
    },
    /// The sender asks to open a stream; the id is the opener's.
    StreamRequest {
        q: QuestionId,
        stream: StreamId,
    },
    /// The acceptor's client accepted (`granted`) or declined the stream.
    StreamAnswer {
        q: QuestionId,
        granted: bool,
    },
    /// The sender is done with a stream; the receiver forgets it too (the bytes' own end
    /// travels on the stream).
    StreamForget {
        stream: StreamId,
    },
    /// The sender's connection is gone: whatever involved it is over.
    Gone,
    /// The receiving connection must close (a newer connection claimed its clientId on
    /// another node).
    Close {
        reason: CloseReason,
    },
}

impl PeerMsg {
    /// What the sender is told, on the receiver's behalf, when this message cannot be
    /// carried to it now but the receiver may well still be there (a node link that is
    /// down): a question is refused with `error`, a plain emit is reported with it, and
    /// an answer or a notice is dropped (the asker's own deadline answers it).
    pub fn undeliverable(&self, error: RequestError) -> Option<PeerMsg> {
        match self {
            PeerMsg::Register { q, .. }
            | PeerMsg::Unregister { q }
            | PeerMsg::StreamRequest { q, .. } => Some(PeerMsg::Refused { q: Some(*q), error }),
            PeerMsg::Deliver { q, .. } => Some(PeerMsg::Refused { q: *q, error }),
            _ => None,
        }
    }

    /// A bridged stream's chunk toward a legacy client, as the legacy protocol carries it.
    pub(crate) fn chunk(data: Bytes, q: QuestionId) -> Self {
        PeerMsg::Deliver {
            event: crate::P2P_EMIT_STREAM.to_owned(),
            args: Payload::Values(vec![rmpv::Value::Binary(data.into())]),
            q: Some(q),
        }
    }
}
