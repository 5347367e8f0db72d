//! Control frames. Postcard encodes an enum's variant as its index, so the order of the
//! variants is the wire format: append new variants, never reorder. An unknown index
//! decodes as an error the receiver answers without dropping the connection.
//!
//! `Hello`, `Welcome` and `Refused` keep their place and layout in every protocol version,
//! so that a relay can read the version of any client's hello and refuse it in words that
//! client can read.
//!
//! Error codes are carried as numbers: those of [`crate::ErrorCode`] for failed requests
//! (`ErrorCode::from_u16`), those of [`crate::codes`] for closes. A number the receiver
//! does not know still arrives with its message instead of breaking the frame.

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
    /// One page of the connected client ids, sorted: those after `after` (exclusive; None
    /// from the start), at most `limit` of them (None: the relay's page size, `--list-page`;
    /// capped at [`crate::MAX_LIST_PAGE`]). A client sizes `limit` so that the
    /// reply fits in its frame limit ([`crate::list::page_limit`]).
    List {
        req: u64,
        after: Option<String>,
        limit: Option<u32>,
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
        /// The limits that apply to this client (added after `client_id`: appended, as every
        /// change of this format).
        limits: WireLimits,
    },
    /// The hello was refused; the relay closes the connection after this frame with the
    /// same code (a [`crate::codes::CloseCode`]).
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
    /// Something this client asked for failed. `code` is the failure's kind (an
    /// `ErrorCode` number) when it is a request's failure; None for the relay's notices.
    ServerError {
        code: Option<u16>,
        message: String,
    },
    /// The relay is closing this connection, and why (`code`: a
    /// [`crate::codes::CloseCode`], as in the connection close that follows).
    Closing {
        code: u32,
        reason: String,
    },
}

/// The limits a relay applies to a client, told in its `Welcome`. 0 means no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireLimits {
    /// Requests per second, and how many may come at once.
    pub messages_per_second: u32,
    pub message_burst: u32,
    /// Payload bytes per second (event and ack arguments), and how many at once.
    pub bytes_per_second: u32,
    pub byte_burst: u32,
    /// Largest event or ack payload.
    pub max_message_bytes: u64,
    /// Requests that may wait for an answer at once.
    pub max_pending: u32,
    /// Streams a pairing may have open at once.
    pub max_streams: u32,
    /// How long the relay waits for the peer's answer to a request.
    pub ack_timeout_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum WireReply {
    Registered(bool),
    Unregistered,
    /// A page of the client list, sorted. `next` is the `after` of the next page; None on
    /// the last one.
    Clients {
        ids: Vec<String>,
        next: Option<String>,
    },
    Ack(Bytes),
    /// Open a bidirectional stream and start it with this id's header.
    StreamOpened(u64),
    StreamRefused,
    /// The request failed: `code` is its kind (an `ErrorCode` number), the text says why.
    Failed {
        code: u16,
        message: String,
    },
}

// A frame's name, for logs and errors: never its payload. Kept next to the frames so that a
// new frame cannot be added without it.

impl ClientFrame {
    pub fn name(&self) -> &'static str {
        match self {
            ClientFrame::Hello { .. } => "Hello",
            ClientFrame::Register { .. } => "Register",
            ClientFrame::Unregister { .. } => "Unregister",
            ClientFrame::Emit { .. } => "Emit",
            ClientFrame::List { .. } => "List",
            ClientFrame::OpenStream { .. } => "OpenStream",
            ClientFrame::Answer { .. } => "Answer",
        }
    }
}

impl ServerFrame {
    pub fn name(&self) -> &'static str {
        match self {
            ServerFrame::Welcome { .. } => "Welcome",
            ServerFrame::Refused { .. } => "Refused",
            ServerFrame::Reply { .. } => "Reply",
            ServerFrame::RegisterRequest { .. } => "RegisterRequest",
            ServerFrame::Unregistered { .. } => "Unregistered",
            ServerFrame::PeerDisconnected => "PeerDisconnected",
            ServerFrame::Deliver { .. } => "Deliver",
            ServerFrame::StreamRequest { .. } => "StreamRequest",
            ServerFrame::StreamAccepted { .. } => "StreamAccepted",
            ServerFrame::StreamClosed { .. } => "StreamClosed",
            ServerFrame::ServerError { .. } => "ServerError",
            ServerFrame::Closing { .. } => "Closing",
        }
    }
}

impl WireReply {
    pub fn name(&self) -> &'static str {
        match self {
            WireReply::Registered(_) => "Registered",
            WireReply::Unregistered => "Unregistered",
            WireReply::Clients { .. } => "Clients",
            WireReply::Ack(_) => "Ack",
            WireReply::StreamOpened(_) => "StreamOpened",
            WireReply::StreamRefused => "StreamRefused",
            WireReply::Failed { .. } => "Failed",
        }
    }
}
