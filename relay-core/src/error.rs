//! What can go wrong, worded for the client that caused it. These texts reach users as
//! `SERVER_ERROR` messages (Socket.IO) or error frames (QUIC), so each says what to fix.

use crate::client_id::{ClientId, InvalidClientId};

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
    Unauthorized { client: ClientId, reason: String },
    #[error("the relay is full: {0} clients are connected")]
    TooManyClients(usize),
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
}
