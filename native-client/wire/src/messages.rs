//! Control frames. Postcard encodes an enum's variant as its index, so the order of the
//! variants is the wire format: append new variants, never reorder. An unknown index
//! decodes as an error the receiver answers without dropping the connection.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// From client to relay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ClientFrame {
    /// First frame on the control stream.
    Hello {
        version: u16,
        client_id: String,
        /// Opaque credentials for the relay's authenticator (unused by the default one).
        credentials: Option<Bytes>,
    },
    Register {
        req: u64,
        target: String,
    },
    Unregister {
        req: u64,
    },
    /// `args` is a MessagePack array: the event's arguments, any JSON values with binary.
    Emit {
        target: String,
        event: String,
        args: Bytes,
        /// Set to ask for the peer's ack, answered by a `Reply` with this id.
        ack: Option<u64>,
    },
    List {
        req: u64,
    },
    OpenStream {
        req: u64,
        target: String,
    },
    /// The answer to a question the relay put (`RegisterRequest`, `StreamRequest`,
    /// `Unregistered`, `Deliver` with a ticket).
    Answer {
        ticket: u64,
        answer: WireAnswer,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum WireAnswer {
    Accept(bool),
    /// Ack arguments, a MessagePack array.
    Ack(Bytes),
    Done,
}

/// From relay to client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ServerFrame {
    /// The hello was accepted.
    Welcome {
        version: u16,
        client_id: String,
    },
    /// The hello was refused; the relay closes the connection after this frame.
    Refused {
        code: u32,
        message: String,
    },
    Reply {
        req: u64,
        reply: WireReply,
    },
    RegisterRequest {
        ticket: u64,
        from: String,
    },
    Unregistered {
        ticket: u64,
    },
    PeerDisconnected,
    Deliver {
        event: String,
        args: Bytes,
        ticket: Option<u64>,
    },
    StreamRequest {
        ticket: u64,
        from: String,
    },
    /// A stream this client accepted is granted: a data stream with this id will arrive.
    StreamAccepted {
        stream: u64,
        from: String,
    },
    /// A granted stream ended with the pairing; its QUIC stream is reset as well.
    StreamClosed {
        stream: u64,
    },
    ServerError {
        message: String,
    },
    /// The relay is closing this connection, and why.
    Closing {
        code: u32,
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum WireReply {
    Registered(bool),
    Unregistered,
    Clients(Vec<String>),
    Ack(Bytes),
    /// Open a bidirectional stream and start it with this id's header.
    StreamOpened(u64),
    StreamRefused,
    /// The request failed; the text says why.
    Failed(String),
}
