//! What the relay tells a client unasked: questions to answer, events from the peer,
//! streams the peer opened, and the end of the connection.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::mpsc;

use crate::args::Args;
use crate::client::Shared;
use crate::connection::CloseReason;
use crate::driver::TaskOwner;
use crate::error::ClientError;
use crate::stream::P2pStream;
use crate::wire::{ClientFrame, ErrorCode, WireAnswer};

/// Something that happened on the connection. Read them with [`Incoming::next`].
#[derive(Debug)]
#[non_exhaustive]
pub enum ClientEvent {
    /// A client asks to pair with this one. Answer with [`Request::accept`] or
    /// [`Request::refuse`]. Only asked while this client has no peer: while it has one, the
    /// client refuses by itself, as the JavaScript plugin does.
    RegisterRequest(Request),
    /// The peer asks to open a stream. On accept, the stream arrives as
    /// [`ClientEvent::Stream`].
    StreamRequest(Request),
    /// The pairing ended (either end unregistered). The client has already cleared its
    /// peer and told the relay it is done; the relay resets the pair's streams.
    Unregistered,
    /// The peer's connection is gone; the pairing is over.
    PeerDisconnected,
    /// The peer emitted an event. When it asked for an ack, `ack` is set: answer it with
    /// [`AckResponder::send`] (if it is dropped unanswered, the peer gets the relay's ack
    /// timeout error).
    Event {
        event: String,
        args: Args,
        ack: Option<AckResponder>,
    },
    /// A stream the peer opened (and this client accepted).
    Stream(P2pStream),
    /// The pairing ended and with it this stream; its QUIC stream is reset as well.
    StreamClosed(u64),
    /// The relay reports a failure, in the same words Socket.IO clients get. `code` is its
    /// kind when it is a request's failure (a plain [`crate::Client::emit`] learns of its
    /// failures only this way); None for notices.
    ServerError {
        code: Option<ErrorCode>,
        message: String,
    },
    /// The connection ended. The last event: [`Incoming::next`] returns `None` after it.
    Closed(CloseReason),
}

/// The queue of [`ClientEvent`]s. Keep reading it: it holds at most
/// [`crate::ConnectOptions::incoming_capacity`] events (default 1024), and when it is full the
/// client stops reading the control stream, so replies to this client's own requests wait
/// behind the unread events too.
///
/// The background task that serves the connection lives until this and every [`crate::Client`]
/// clone are dropped (or [`crate::Client::close`] is called).
pub struct Incoming {
    pub(crate) rx: mpsc::Receiver<ClientEvent>,
    pub(crate) _task: Arc<TaskOwner>,
}

impl Incoming {
    /// The next event, or `None` once the connection has ended and [`ClientEvent::Closed`]
    /// was returned.
    pub async fn next(&mut self) -> Option<ClientEvent> {
        self.rx.recv().await
    }
}

impl futures::Stream for Incoming {
    type Item = ClientEvent;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<ClientEvent>> {
        self.get_mut().rx.poll_recv(cx)
    }
}

impl std::fmt::Debug for Incoming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Incoming").finish_non_exhaustive()
    }
}

/// What a [`Request`] asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// To pair.
    Register,
    /// To open a stream.
    Stream,
}

/// A question from the relay on behalf of another client. Answer it once; dropping it
/// unanswered refuses.
pub struct Request {
    pub(crate) ticket: u64,
    pub(crate) from: String,
    pub(crate) kind: RequestKind,
    pub(crate) shared: Arc<Shared>,
    pub(crate) answered: bool,
}

impl Request {
    /// The client that asks.
    pub fn from(&self) -> &str {
        &self.from
    }

    pub fn kind(&self) -> RequestKind {
        self.kind
    }

    /// Says yes. For a pairing, the asker becomes this client's peer.
    pub fn accept(mut self) {
        if self.kind == RequestKind::Register {
            self.shared.set_target(Some(self.from.clone()));
        }
        self.answer(true);
    }

    /// Says no.
    pub fn refuse(mut self) {
        self.answer(false);
    }

    fn answer(&mut self, yes: bool) {
        self.answered = true;
        tracing::debug!(kind = ?self.kind, from = %self.from, accept = yes, "answering");
        self.shared.answer(self.ticket, WireAnswer::Accept(yes));
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        if !self.answered {
            self.answer(false);
        }
    }
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("kind", &self.kind)
            .field("from", &self.from)
            .field("ticket", &self.ticket)
            .finish()
    }
}

/// The way to acknowledge an event the peer emitted with an ack.
pub struct AckResponder {
    pub(crate) ticket: u64,
    pub(crate) event: String,
    pub(crate) shared: Arc<Shared>,
}

impl AckResponder {
    /// Sends the ack's arguments back to the peer (any number, binary included).
    ///
    /// Fails only when they are larger than the frame limit; a closed connection is not an
    /// error here (there is no one left to tell).
    pub fn send(self, args: Args) -> Result<(), ClientError> {
        let frame = ClientFrame::Answer {
            ticket: self.ticket,
            answer: WireAnswer::Ack(args.encode()),
        };
        let bytes = self.shared.encode_frame(&frame, "ack arguments")?;
        self.shared.answer_encoded(bytes);
        Ok(())
    }

    /// The event this acknowledges.
    pub fn event(&self) -> &str {
        &self.event
    }
}

impl std::fmt::Debug for AckResponder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AckResponder")
            .field("event", &self.event)
            .field("ticket", &self.ticket)
            .finish()
    }
}
