//! What can go wrong, worded for the client that caused it. These texts reach users as
//! `SERVER_ERROR` messages (Socket.IO) or error frames (QUIC), so each says what to fix;
//! every failure also has an [`ErrorCode`], so a native caller can match on the kind
//! without parsing text.

use std::net::IpAddr;

use crate::auth::AuthError;
use crate::client_id::{ClientId, InvalidClientId};
use crate::limits::RateLimit;
use crate::payload::NotJson;

/// The kinds are the native protocol's (their numbers travel in its frames), so they are
/// declared in the wire crate, which the native client shares without the rules.
pub use p2p_relay_wire::ErrorCode;

/// Why a connection was refused at the door.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    #[error("clientId query parameter is required")]
    MissingClientId,
    #[error("invalid clientId: {0}")]
    InvalidClientId(#[from] InvalidClientId),
    #[error("clientId '{0}' is already connected")]
    Duplicate(ClientId),
    #[error("clientId '{client}' was refused: {reason}")]
    Unauthorized { client: ClientId, reason: AuthError },
    #[error("the relay is full: {0} clients are connected")]
    TooManyClients(usize),
    #[error("too many connections from {ip}: {limit} are open, the most one address may have")]
    TooManyFromIp { ip: IpAddr, limit: usize },
    #[error(
        "connecting too fast from {ip}: at most {per_second} new connections per second \
         (bursts of {burst}); wait and retry"
    )]
    ConnectingTooFast {
        ip: IpAddr,
        per_second: u32,
        burst: u32,
    },
    /// The relay is closing every connection; a newcomer would be closed at once.
    #[error("the relay is shutting down")]
    ShuttingDown,
    /// Cluster mode: the shared directory could not be asked, so the clientId could not be
    /// claimed; connecting again later works once the relay reaches its Redis.
    #[error("the relay cluster is unreachable (its Redis cannot be reached): {0}; retry later")]
    ClusterUnavailable(String),
}

/// Why a request from a connected client failed. The connection lives on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("target client '{0}' is not connected")]
    TargetNotConnected(ClientId),
    #[error("target clientId is invalid: {0}")]
    InvalidTarget(InvalidClientId),
    #[error("cannot register to yourself")]
    RegisterToSelf,
    #[error("already paired with '{0}'")]
    AlreadyPaired(ClientId),
    #[error("a registration to '{0}' is already in progress")]
    RegistrationInProgress(ClientId),
    #[error("not paired with '{0}'")]
    NotPairedWith(String),
    #[error("event name must not be empty")]
    EmptyEvent,
    #[error("event name '{0}' is reserved")]
    ReservedEvent(String),
    #[error("payload of {size} bytes exceeds the limit of {limit} bytes")]
    PayloadTooLarge { size: usize, limit: usize },
    #[error("no ack for event '{event}' from '{target}' within {millis} ms")]
    AckTimeout {
        event: String,
        target: ClientId,
        millis: u128,
    },
    #[error("'{target}' disconnected before answering '{event}'")]
    PeerGone { event: String, target: ClientId },
    #[error("too many requests awaiting an answer ({0}); wait for some to complete")]
    TooManyPending(usize),
    #[error("cannot open a stream: not paired")]
    StreamWhileUnpaired,
    #[error("too many open streams in this pairing ({0})")]
    TooManyStreams(usize),
    #[error("cannot unregister: not paired")]
    UnregisterWhileUnpaired,
    /// A request a front end could not parse; the message says what was wrong.
    #[error("{0}")]
    Malformed(String),
    #[error("could not deliver '{event}' to '{target}': its queue is full ({limit} messages)")]
    QueueFull {
        event: String,
        target: ClientId,
        limit: usize,
    },
    #[error("stream chunk refused: too many unacknowledged chunks ({0})")]
    TooManyChunks(usize),
    /// The client went faster than its rate limit allows; nothing was done.
    #[error("rate limit reached: {0}; slow down")]
    RateLimited(RateLimit),
    /// This client's own `peers` claim does not name the target.
    #[error("pairing with '{0}' is not allowed: it is not among your token's peers")]
    PeerNotAllowed(ClientId),
    /// The target's `peers` claim does not name this client.
    #[error("'{0}' does not allow pairing with you: you are not among its token's peers")]
    PeerRefuses(ClientId),
    /// A native client's arguments that its Socket.IO peer could not read.
    #[error("could not deliver '{event}' to '{target}', a Socket.IO client: its arguments have no JSON form: {problem}")]
    EventNotJson {
        event: String,
        target: ClientId,
        problem: NotJson,
    },
    /// A native client's ack that its Socket.IO asker could not read.
    #[error("the ack from '{from}' cannot reach '{to}', a Socket.IO client: its arguments have no JSON form: {problem}")]
    AckNotJson {
        from: ClientId,
        to: ClientId,
        problem: NotJson,
    },
    /// Cluster mode: the shared directory (Redis) or the node links cannot be reached, so a
    /// request that needs another relay node cannot be served now. Local pairs go on.
    #[error(
        "the relay cluster is unreachable (its Redis cannot be reached): requests that \
         involve another relay node fail until it is back"
    )]
    ClusterUnavailable,
    /// Cluster mode, Redis unreachable: a legacy `LIST_CLIENTS` is answered with this
    /// node's clients only (a 1.4.1 callback expects an array), and told so with this.
    #[error(
        "client list is partial: the cluster directory is unreachable, so only the clients \
         of this relay node are listed"
    )]
    ListPartial,
    /// A failure decided on another relay node, carried as its code and text (the rules
    /// there worded it for this client already).
    #[error("{message}")]
    Remote { code: ErrorCode, message: String },
}

impl RequestError {
    pub fn code(&self) -> ErrorCode {
        use RequestError::*;
        match self {
            InvalidTarget(_)
            | EmptyEvent
            | ReservedEvent(_)
            | Malformed(_)
            | EventNotJson { .. }
            | AckNotJson { .. } => ErrorCode::Invalid,
            TargetNotConnected(_) => ErrorCode::NotConnected,
            NotPairedWith(_) | StreamWhileUnpaired | UnregisterWhileUnpaired => {
                ErrorCode::NotPaired
            }
            RegisterToSelf | AlreadyPaired(_) | RegistrationInProgress(_) => {
                ErrorCode::PairingConflict
            }
            PayloadTooLarge { .. } => ErrorCode::TooLarge,
            AckTimeout { .. } => ErrorCode::Timeout,
            PeerGone { .. } => ErrorCode::PeerGone,
            TooManyPending(_) | TooManyStreams(_) | TooManyChunks(_) => ErrorCode::LimitReached,
            QueueFull { .. } => ErrorCode::QueueFull,
            RateLimited(_) => ErrorCode::RateLimited,
            PeerNotAllowed(_) | PeerRefuses(_) => ErrorCode::Forbidden,
            ClusterUnavailable | ListPartial => ErrorCode::Unavailable,
            Remote { code, .. } => *code,
        }
    }
}

/// Why the relay closes a connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CloseReason {
    #[error("replaced by a newer connection with clientId '{0}'")]
    Replaced(ClientId),
    #[error("the relay is shutting down")]
    Shutdown,
    /// An operator disconnected the client (the control center's button).
    #[error("disconnected by the relay's operator")]
    Disconnected,
    /// The token the client was admitted with reached its `exp`: a connection lives no
    /// longer than the credentials that let it in. The client connects again with a new
    /// token (a reconnect with the old one is refused as expired).
    #[error("the token expired: connect again with a new token")]
    TokenExpired,
}
