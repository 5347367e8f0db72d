//! What goes into the core (commands from a connection) and what comes out (events for a
//! connection). Front ends translate their wire formats to and from these types only.

use bytes::Bytes;

use crate::addr::Addr;
use crate::client_id::ClientId;
use crate::directory::ClientPage;
use crate::error::{CloseReason, ErrorCode, RequestError};
use crate::payload::Payload;
use crate::transport::StreamKind;

/// Identifies one connection for the lifetime of the core. Never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// A front end's own number for a request it is waiting on; echoed back in [`Event::Reply`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReqId(pub u64);

/// The core's number for a question it put to a connection; the front end returns it with
/// the answer in [`Command::Answer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ticket(pub u64);

/// One P2P stream granted between the two clients of a pairing. Numbered by the opener's
/// connection (its id in the high bits), so ids are unique on a node without a shared
/// counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(pub u64);

/// Why a stream was ended by the core, so a front end can tell the other side the cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEnd {
    /// The pairing was ended by an unregister.
    Unpaired,
    /// The other client's connection is gone.
    PeerGone,
    /// A bridged chunk could not be delivered (the legacy side timed out or refused it).
    Failed,
}

/// A request from a connected client.
#[derive(Debug, Clone)]
pub enum Command {
    /// Pair with `target` (`P2P_REGISTER`).
    Register { req: ReqId, target: String },
    /// End the pairing (`P2P_UNREGISTER`).
    Unregister { req: ReqId },
    /// Deliver `event(args)` to the peer, asking for its ack when `ack` is set
    /// (`P2P_EMIT` / `P2P_EMIT_ACKNOWLEDGE`).
    Emit {
        target: String,
        event: String,
        args: Payload,
        ack: Option<ReqId>,
    },
    /// Connected clientIds, sorted: all of them (`LIST_CLIENTS`, `limit` None), or one
    /// page of at most `limit` after `after` (the native list).
    List {
        req: ReqId,
        after: Option<String>,
        limit: Option<usize>,
    },
    /// Open a P2P stream to the peer (`P2P_REGISTER_STREAM`).
    OpenStream { req: ReqId, target: String },
    /// The front end is done relaying a stream (both directions ended). The core forgets it
    /// without telling the other end: the stream's own FIN or reset already did.
    CloseStream { stream: StreamId },
    /// The answer to a question the core put to this connection.
    Answer { ticket: Ticket, answer: Answer },
    /// Bytes a native client wrote on a bridged stream, for its legacy peer. One at a time:
    /// the next waits for [`Event::StreamChunkTaken`].
    StreamChunk { stream: StreamId, data: Bytes },
}

/// An answer to a [`Ticket`]. Which kind fits is given by the event that carried the ticket.
#[derive(Debug, Clone)]
pub enum Answer {
    /// To [`Event::RegisterRequest`] and [`Event::StreamRequest`].
    Accept(bool),
    /// To [`Event::Deliver`] with a ticket: the ack's arguments.
    Ack(Payload),
    /// To [`Event::Unregistered`], and to [`Event::StreamData`] once its bytes were
    /// written to the stream.
    Done,
}

/// Something a connection must be told or asked.
#[derive(Debug, Clone)]
pub enum Event {
    /// The outcome of one of this connection's requests.
    Reply { req: ReqId, reply: Reply },
    /// `from` asks to pair with this client; answer with [`Answer::Accept`].
    RegisterRequest { ticket: Ticket, from: ClientId },
    /// The pairing ended (either side unregistered, or a pairing this client accepted could
    /// not be completed). Answer with [`Answer::Done`] once local state is cleared.
    Unregistered { ticket: Ticket },
    /// The peer's connection is gone; the pairing ended.
    PeerDisconnected,
    /// The peer sent `event(args)`; when `ticket` is set it waits for [`Answer::Ack`].
    Deliver {
        event: String,
        args: Payload,
        ticket: Option<Ticket>,
    },
    /// The peer asks to open a stream; answer with [`Answer::Accept`].
    StreamRequest { ticket: Ticket, from: ClientId },
    /// A stream this client accepted is granted; its bytes will arrive from the opener.
    StreamAccepted {
        stream: StreamId,
        from: ClientId,
        kind: StreamKind,
    },
    /// A legacy peer's chunk for a bridged stream: write `data` to the stream, then answer
    /// with [`Answer::Done`] (that releases the legacy sender's ack).
    StreamData {
        stream: StreamId,
        data: Bytes,
        ticket: Ticket,
    },
    /// The legacy peer took the last chunk written on a bridged stream: send the next.
    StreamChunkTaken { stream: StreamId },
    /// A granted stream must end now: its pairing is over.
    StreamClosed { stream: StreamId, why: StreamEnd },
    /// A request of this connection failed or something it should know went wrong. `code`
    /// is the kind of a failed request (what a native client matches on); None for notices
    /// that are not a request's failure (the reason of a close).
    ServerError {
        code: Option<ErrorCode>,
        message: String,
    },
    /// The connection must be closed by its front end; the core has forgotten it already.
    Close { reason: CloseReason },
}

/// The outcome of a request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Pairing accepted (`true`) or declined by the target (`false`).
    Registered(bool),
    /// The pairing ended on both sides.
    Unregistered,
    Clients(ClientPage),
    /// The peer's ack arguments, unchanged.
    Ack(Payload),
    /// The stream is granted. For a spliced stream `peer` is the acceptor, to relay to.
    StreamOpened {
        stream: StreamId,
        kind: StreamKind,
        peer: Addr,
    },
    /// The peer declined the stream (it does not listen for streams).
    StreamRefused,
    /// The request could not be served; a `ServerError` event accompanies it unless the
    /// failure is the peer vanishing (which `PeerDisconnected` already says).
    Failed(RequestError),
}

/// An event addressed to one connection.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub conn: ConnId,
    pub event: Event,
}
