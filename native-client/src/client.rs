//! The client: connecting, and the verbs of the JavaScript client plugin.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use quinn::{RecvStream, SendStream, VarInt};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::args::Args;
use crate::connection::{self, CloseReason};
use crate::driver::{self, TaskOwner};
use crate::error::ClientError;
use crate::incoming::Incoming;
use crate::list::{ListPage, Walk};
use crate::options::ConnectOptions;
use crate::stream::P2pStream;
use crate::wire::{
    frame, list, ClientFrame, CloseCode, ErrorCode, FrameError, FrameReader, FrameWriter,
    ServerFrame, StreamHeader, WireAnswer, WireReply, MAX_LIST_PAGE, PROTOCOL_VERSION,
};

/// Requests queued for the control stream before a verb waits for room. The writer drains
/// it as fast as QUIC takes the bytes, so this only smooths bursts.
const REQUEST_QUEUE: usize = 64;
/// How long [`Client::close`] waits for the close to reach the relay.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// A connection to the relay, with the verbs of the JavaScript client plugin.
///
/// Cheap to clone; every clone uses the same connection. The connection is served by a
/// background task that lives until every clone and the [`Incoming`] are dropped, or until
/// [`Client::close`].
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
    task: Arc<TaskOwner>,
}

/// State shared by the client handles, the background task, and the answerable events.
pub(crate) struct Shared {
    pub(crate) conn: quinn::Connection,
    endpoint: quinn::Endpoint,
    client_id: String,
    state: Mutex<State>,
    requests: mpsc::Sender<Bytes>,
    /// Answers to the relay's questions. Unbounded on purpose: they must be sendable from
    /// `Drop` (an unanswered request refuses), and there is at most one per question the
    /// relay asked, which the relay bounds, as the bounded [`Incoming`] queue does.
    answers: mpsc::UnboundedSender<Bytes>,
    next_req: AtomicU64,
    frame_limit: usize,
    request_timeout: Duration,
}

#[derive(Default)]
pub(crate) struct State {
    pub(crate) pending: HashMap<u64, Pending>,
    pub(crate) target: Option<String>,
    /// Streams this client accepted whose data stream has not arrived yet: id -> peer.
    pub(crate) grants: HashMap<u64, Arc<str>>,
    /// Data streams that arrived before their `StreamAccepted` frame (the two travel on
    /// different QUIC streams, so either may come first).
    pub(crate) early: HashMap<u64, (SendStream, RecvStream)>,
    /// What the relay announced in a `Closing` frame.
    pub(crate) closing: Option<CloseReason>,
    pub(crate) closed: Option<CloseReason>,
}

pub(crate) struct Pending {
    pub(crate) kind: PendingKind,
    pub(crate) tx: oneshot::Sender<WireReply>,
}

/// What a request was, so that its reply updates the client's state even when the caller
/// stopped waiting for it.
pub(crate) enum PendingKind {
    Register(String),
    Unregister,
    Other,
}

impl Client {
    /// Connects to the relay: QUIC handshake, control stream, hello. Returns the client and
    /// the queue of what the relay tells it unasked.
    pub async fn connect(options: ConnectOptions) -> Result<(Client, Incoming), ClientError> {
        let addr = options.addr;
        let config = connection::client_config(&options)?;
        let endpoint = connection::endpoint(&options)?;
        let deadline = Instant::now() + options.connect_timeout;
        let timed_out = || ClientError::ConnectTimeout {
            addr,
            after: options.connect_timeout,
        };

        tracing::debug!(%addr, server_name = %options.server_name, "connecting");
        let connecting = endpoint
            .connect_with(config, addr, &options.server_name)
            .map_err(|e| ClientError::Connect {
                addr,
                reason: e.to_string(),
            })?;
        let conn = match tokio::time::timeout_at(deadline, connecting).await {
            Err(_) => return Err(timed_out()),
            Ok(Err(e)) => return Err(connection::handshake_error(addr, e)),
            Ok(Ok(conn)) => conn,
        };

        let limit = options.frame_limit();
        let hello = tokio::time::timeout_at(deadline, hello(&conn, &options, limit)).await;
        let (writer, reader, client_id) = match hello {
            Ok(Ok(parts)) => parts,
            Ok(Err(e)) => {
                // A relay that closed the connection says why better than the read error.
                let e = match conn.close_reason() {
                    Some(reason) if !matches!(e, ClientError::Refused { .. }) => {
                        connection::handshake_error(addr, reason)
                    }
                    _ => e,
                };
                conn.close(VarInt::from_u32(CloseCode::Normal.code()), b"hello failed");
                return Err(e);
            }
            Err(_) => {
                conn.close(
                    VarInt::from_u32(CloseCode::Normal.code()),
                    b"no welcome in time",
                );
                return Err(timed_out());
            }
        };
        tracing::info!(%addr, %client_id, "connected to the relay");

        let (requests, requests_rx) = mpsc::channel(REQUEST_QUEUE);
        let (answers, answers_rx) = mpsc::unbounded_channel();
        let (events, events_rx) = mpsc::channel(options.incoming_capacity.max(1));
        let shared = Arc::new(Shared {
            conn,
            endpoint,
            client_id,
            state: Mutex::new(State::default()),
            requests,
            answers,
            next_req: AtomicU64::new(1),
            frame_limit: limit,
            request_timeout: options.request_timeout,
        });
        let task = Arc::new(driver::spawn(
            shared.clone(),
            reader,
            writer,
            requests_rx,
            answers_rx,
            events,
        ));
        let incoming = Incoming {
            rx: events_rx,
            _task: task.clone(),
        };
        Ok((Client { shared, task }, incoming))
    }

    /// This client's id, as the relay welcomed it.
    pub fn client_id(&self) -> &str {
        &self.shared.client_id
    }

    /// The current peer: set by a successful [`Client::register`] or an accepted
    /// [`crate::ClientEvent::RegisterRequest`], cleared when the pairing ends.
    pub fn target(&self) -> Option<String> {
        self.shared.lock().target.clone()
    }

    /// Asks to pair with `target`. `Ok(false)` when the target refused (it is paired with
    /// someone else); `Err(ClientError::Request)` when the relay could not ask it (e.g.
    /// [`crate::ErrorKind::NotConnected`]: "target client 'X' is not connected").
    ///
    /// Like the JavaScript plugin, refuses locally to register to itself or while paired.
    pub async fn register(&self, target: &str) -> Result<bool, ClientError> {
        if target == self.client_id() {
            return Err(ClientError::RegisterSelf);
        }
        if let Some(peer) = self.target() {
            return Err(ClientError::AlreadyPaired(peer));
        }
        let target = target.to_string();
        let reply = self
            .request("register", PendingKind::Register(target.clone()), |req| {
                ClientFrame::Register { req, target }
            })
            .await?;
        match reply {
            WireReply::Registered(ok) => Ok(ok),
            other => Err(unexpected("register", &other)),
        }
    }

    /// Ends the pairing. Returns once the relay told both ends (their streams are reset by
    /// then). Returns at once when not paired, as the JavaScript plugin does.
    pub async fn unregister(&self) -> Result<(), ClientError> {
        if self.target().is_none() {
            return Ok(());
        }
        let reply = self
            .request("unregister", PendingKind::Unregister, |req| {
                ClientFrame::Unregister { req }
            })
            .await?;
        match reply {
            WireReply::Unregistered => Ok(()),
            other => Err(unexpected("unregister", &other)),
        }
    }

    /// Delivers `event(args...)` to the peer, without an ack. Failures reported by the
    /// relay arrive later as [`crate::ClientEvent::ServerError`].
    pub async fn emit(&self, event: &str, args: Args) -> Result<(), ClientError> {
        let target = self.emit_target(event)?;
        let frame = ClientFrame::Emit {
            target,
            event: event.to_string(),
            args: args.encode(),
            ack: None,
        };
        let bytes = self.shared.encode_frame(&frame, "event arguments")?;
        self.shared
            .requests
            .send(bytes)
            .await
            .map_err(|_| self.shared.closed_error())
    }

    /// Delivers `event(args...)` to the peer and returns the arguments of its ack.
    /// `Err(ClientError::Request)` when the relay could not deliver it (e.g.
    /// [`crate::ErrorKind::QueueFull`]) or the peer did not ack in time
    /// ([`crate::ErrorKind::Timeout`], the relay's `--ack-timeout-ms`).
    pub async fn emit_with_ack(&self, event: &str, args: Args) -> Result<Args, ClientError> {
        let target = self.emit_target(event)?;
        let event = event.to_string();
        let args = args.encode();
        let reply = self
            .request("emit", PendingKind::Other, |req| ClientFrame::Emit {
                target,
                event,
                args,
                ack: Some(req),
            })
            .await?;
        match reply {
            WireReply::Ack(bytes) => Ok(Args::decode(&bytes)?),
            other => Err(unexpected("emit", &other)),
        }
    }

    /// Every connected client id, sorted, each once: the pages of [`Client::list_page`]
    /// from the first to the last (at most [`crate::MAX_LIST_PAGES`]). Clients that come or
    /// go during the walk may or may not be in it, as with any paged listing.
    pub async fn list_clients(&self) -> Result<Vec<String>, ClientError> {
        let mut walk = Walk::default();
        loop {
            let page = self.list_page(walk.after(), None).await?;
            if !walk.add(page)? {
                return Ok(walk.into_ids());
            }
        }
    }

    /// One page of the connected client ids, sorted: those after `after` (None: from the
    /// start), at most `limit` of them (None: the relay's page size, `--list-page`, 1000 by
    /// default). The next page starts at the returned `next`.
    ///
    /// Never asks for more than a reply this client's frame limit can hold
    /// ([`crate::wire::list::page_limit`]): 4096 ids at the default limit.
    pub async fn list_page(
        &self,
        after: Option<&str>,
        limit: Option<u32>,
    ) -> Result<ListPage, ClientError> {
        let fits = list::page_limit(self.shared.frame_limit);
        // Without a size the relay may answer with up to MAX_LIST_PAGE ids: name one when
        // a page that large would not fit.
        let limit = match limit {
            Some(limit) => Some(limit.min(fits)),
            None if (fits as usize) < MAX_LIST_PAGE => Some(fits),
            None => None,
        };
        let after = after.map(str::to_string);
        let reply = self
            .request("list", PendingKind::Other, |req| ClientFrame::List {
                req,
                after,
                limit,
            })
            .await?;
        match reply {
            WireReply::Clients { ids, next } => Ok(ListPage { ids, next }),
            other => Err(unexpected("list", &other)),
        }
    }

    /// Opens a stream to the peer `target`. `Ok(None)` when the peer refused (it does not
    /// take streams). Many streams may be open at once, each with its own flow control.
    pub async fn open_stream(&self, target: &str) -> Result<Option<P2pStream>, ClientError> {
        let target = target.to_string();
        let reply = self
            .request("open stream", PendingKind::Other, |req| {
                ClientFrame::OpenStream {
                    req,
                    target: target.clone(),
                }
            })
            .await?;
        let id = match reply {
            WireReply::StreamOpened(id) => id,
            WireReply::StreamRefused => return Ok(None),
            other => return Err(unexpected("open stream", &other)),
        };
        let failed = |reason: String| ClientError::OpenStream { stream: id, reason };
        let (mut send, recv) = self
            .shared
            .conn
            .open_bi()
            .await
            .map_err(|e| failed(CloseReason::from_connection_error(&e).to_string()))?;
        send.write_all(&StreamHeader { stream: id }.encode())
            .await
            .map_err(|e| failed(e.to_string()))?;
        tracing::debug!(stream = id, peer = %target, "stream opened");
        Ok(Some(P2pStream::new(id, target.into(), send, recv)))
    }

    /// Closes the connection. Pending requests fail with [`ClientError::Closed`], open
    /// streams are reset, the background task stops and [`Incoming`] ends. Waits briefly
    /// (at most a second) for the relay to learn of the close.
    pub async fn close(&self) {
        self.shared
            .conn
            .close(VarInt::from_u32(CloseCode::Normal.code()), b"client closed");
        self.shared.mark_closed(CloseReason::Local);
        let _ = tokio::time::timeout(CLOSE_GRACE, self.shared.endpoint.wait_idle()).await;
        self.task.abort();
    }

    /// The peer to emit to, checked as the JavaScript plugin checks it before sending.
    fn emit_target(&self, event: &str) -> Result<String, ClientError> {
        if event.is_empty() {
            return Err(ClientError::EmptyEvent);
        }
        self.target().ok_or(ClientError::NotPaired)
    }

    /// Sends a request and waits for its reply. A `Failed` reply becomes
    /// [`ClientError::Request`] with the relay's code.
    async fn request(
        &self,
        what: &'static str,
        kind: PendingKind,
        frame: impl FnOnce(u64) -> ClientFrame,
    ) -> Result<WireReply, ClientError> {
        let shared = &self.shared;
        let req = shared.next_req.fetch_add(1, Ordering::Relaxed);
        let bytes = shared.encode_frame(&frame(req), what)?;
        let (tx, rx) = oneshot::channel();
        {
            let mut state = shared.lock();
            if let Some(reason) = &state.closed {
                return Err(ClientError::Closed(reason.clone()));
            }
            // Left in place if the caller stops waiting: the reply still updates the state
            // (a register that succeeded still pairs), and the relay answers every request.
            state.pending.insert(req, Pending { kind, tx });
        }
        if shared.requests.send(bytes).await.is_err() {
            shared.lock().pending.remove(&req);
            return Err(shared.closed_error());
        }
        match tokio::time::timeout(shared.request_timeout, rx).await {
            Ok(Ok(WireReply::Failed { code, message })) => Err(failure(code, message)),
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(_)) => Err(shared.closed_error()),
            Err(_) => {
                shared.lock().pending.remove(&req);
                Err(ClientError::RequestTimeout {
                    what,
                    after: shared.request_timeout,
                })
            }
        }
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("client_id", &self.shared.client_id)
            .field("remote", &self.shared.conn.remote_address())
            .finish_non_exhaustive()
    }
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock leaves plain data behind; keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn set_target(&self, target: Option<String>) {
        self.lock().target = target;
    }

    /// Encodes a frame, refusing it when it is over the limit (the relay would close the
    /// connection for it).
    pub(crate) fn encode_frame(
        &self,
        frame: &ClientFrame,
        what: &'static str,
    ) -> Result<Bytes, ClientError> {
        let bytes = frame::encode(frame).map_err(|e| match e {
            FrameError::TooLarge { len, max } => ClientError::TooLarge { what, len, max },
            other => ClientError::Frame(other),
        })?;
        let len = bytes.len() - 4;
        if len > self.frame_limit {
            return Err(ClientError::TooLarge {
                what,
                len,
                max: self.frame_limit,
            });
        }
        Ok(bytes)
    }

    /// Queues an answer to one of the relay's questions.
    pub(crate) fn answer(&self, ticket: u64, answer: WireAnswer) {
        match frame::encode(&ClientFrame::Answer { ticket, answer }) {
            Ok(bytes) => self.answer_encoded(bytes),
            Err(error) => tracing::error!(%error, ticket, "cannot encode an answer"),
        }
    }

    pub(crate) fn answer_encoded(&self, bytes: Bytes) {
        // Fails only when the connection is gone: no one is left to answer.
        let _ = self.answers.send(bytes);
    }

    /// The error for a verb called after the connection ended.
    pub(crate) fn closed_error(&self) -> ClientError {
        ClientError::Closed(
            self.lock()
                .closed
                .clone()
                .unwrap_or_else(|| CloseReason::other("the connection is closing")),
        )
    }

    /// Records the end of the connection: pending requests fail, peer and grants go.
    pub(crate) fn mark_closed(&self, reason: CloseReason) {
        let mut state = self.lock();
        if state.closed.is_none() {
            state.closed = Some(reason);
        }
        state.pending.clear();
        state.target = None;
        state.grants.clear();
        state.early.clear();
    }
}

/// Opens the control stream, says hello, and waits for the welcome.
async fn hello(
    conn: &quinn::Connection,
    options: &ConnectOptions,
    limit: usize,
) -> Result<(FrameWriter<SendStream>, FrameReader<RecvStream>, String), ClientError> {
    let lost = |e: quinn::ConnectionError| ClientError::Connect {
        addr: options.addr,
        reason: CloseReason::from_connection_error(&e).to_string(),
    };
    let (send, recv) = conn.open_bi().await.map_err(lost)?;
    let mut writer = FrameWriter::new(send);
    writer
        .send(&ClientFrame::Hello {
            version: PROTOCOL_VERSION,
            client_id: options.client_id.clone(),
            credentials: options.credentials.clone(),
        })
        .await?;
    let mut reader = FrameReader::new(recv, limit);
    let body = reader.next().await?.ok_or_else(|| {
        ClientError::Protocol("the relay ended the control stream without a welcome".into())
    })?;
    match frame::decode::<ServerFrame>(&body)? {
        ServerFrame::Welcome {
            version, client_id, ..
        } => {
            if version != PROTOCOL_VERSION {
                return Err(ClientError::Protocol(format!(
                    "the relay welcomed protocol version {version}, this client speaks \
                     {PROTOCOL_VERSION}"
                )));
            }
            Ok((writer, reader, client_id))
        }
        ServerFrame::Refused { code, message } => Err(connection::refused(code.into(), message)),
        other => Err(ClientError::Protocol(format!(
            "expected a welcome, got {}",
            other.name()
        ))),
    }
}

/// A request the relay failed, with its kind. A relay of this protocol version sends only
/// codes this client knows; an unknown one is a broken promise, said with the relay's words.
fn failure(code: u16, message: String) -> ClientError {
    match ErrorCode::from_u16(code) {
        Some(code) => ClientError::Request { code, message },
        None => ClientError::Protocol(format!(
            "the relay failed a request with error code {code}, unknown to this client: \
             {message}"
        )),
    }
}

fn unexpected(what: &str, reply: &WireReply) -> ClientError {
    ClientError::Protocol(format!(
        "the relay answered a {what} request with {}",
        reply.name()
    ))
}
