//! Limits and policies of the core. Every limit has a default here and a knob in the
//! server's configuration.

use std::time::Duration;

use crate::limits::{ClientLimits, IpLimits, RateLimits};

/// What happens when a client connects with an id that is already connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DuplicatePolicy {
    /// The newcomer wins: the older connection is told why and closed, its peer is freed.
    /// The default, because a reconnecting device usually arrives before its old
    /// connection has timed out.
    #[default]
    Replace,
    /// The newcomer is refused while the id is taken.
    Reject,
}

impl std::str::FromStr for DuplicatePolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "replace" => Ok(Self::Replace),
            "reject" => Ok(Self::Reject),
            other => Err(format!(
                "unknown duplicate policy '{other}': use 'replace' or 'reject'"
            )),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub duplicate_policy: DuplicatePolicy,
    /// How long a request waits for the other client's answer (ack, pairing, stream,
    /// unregister) before it is answered with a failure.
    pub ack_timeout: Duration,
    /// Largest accepted event payload (sum of its arguments), in bytes.
    pub max_message_bytes: usize,
    /// Requests one connection may have waiting for an answer at once.
    pub max_pending_per_connection: usize,
    /// Streams one pairing may have open at once.
    pub max_streams_per_pair: usize,
    /// Connected clients the relay accepts.
    pub max_clients: usize,
    /// How fast one client may make requests and move payload bytes.
    pub rate: RateLimits,
    /// Connections per IP address (applied by drivers that know the address).
    pub ip: IpLimits,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            duplicate_policy: DuplicatePolicy::Replace,
            ack_timeout: Duration::from_secs(30),
            max_message_bytes: 1024 * 1024,
            max_pending_per_connection: 1024,
            max_streams_per_pair: 256,
            max_clients: 100_000,
            rate: RateLimits::default(),
            ip: IpLimits::default(),
        }
    }
}

impl Config {
    /// The limits a client is told of when it connects.
    pub fn client_limits(&self) -> ClientLimits {
        ClientLimits {
            rate: self.rate,
            max_message_bytes: self.max_message_bytes,
            max_pending: self.max_pending_per_connection,
            max_streams_per_pair: self.max_streams_per_pair,
            ack_timeout_ms: u64::try_from(self.ack_timeout.as_millis()).unwrap_or(u64::MAX),
        }
    }
}
