//! Rate limits: how fast one client may make requests and move payload bytes through the
//! relay, and how many connections one IP address may open (and how fast). Every limit has
//! a default here and a knob in the server's configuration; 0 turns one off.
//!
//! The limiters are governor's GCRA with a clock the core feeds from the `now` it is given
//! ([`fed_clock::FedClock`]), so the rules stay sans-IO and their tests deterministic.

mod fed_clock;
mod ip;
mod rate;

use std::fmt;

pub use ip::IpGate;
pub(crate) use rate::ClientRate;

/// How fast one client may go. A request over a limit is refused with
/// [`RequestError::RateLimited`](crate::RequestError::RateLimited); other clients never
/// notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    /// Requests per second (pairing, emits, lists, streams, stream chunks); 0: no limit.
    pub messages_per_second: u32,
    /// Requests a client may make at once before the per-second rate applies.
    pub message_burst: u32,
    /// Payload bytes per second (event and ack arguments, bridged stream chunks); 0: no
    /// limit.
    pub bytes_per_second: u32,
    /// Payload bytes a client may send at once before the per-second rate applies.
    pub byte_burst: u32,
}

/// Off. A legitimate client of the Node original emits tens of thousands of requests a
/// second and binary at network speed, and no per-client rate can tell it from abuse; what
/// protects the relay from one client is bounded elsewhere (bytes queued toward a client,
/// pending requests, message size, max clients). docs/LIMITS.md has every default and why.
impl Default for RateLimits {
    fn default() -> Self {
        Self::OFF
    }
}

impl RateLimits {
    /// No rate limit at all.
    pub const OFF: RateLimits = RateLimits {
        messages_per_second: 0,
        message_burst: 0,
        bytes_per_second: 0,
        byte_burst: 0,
    };
}

/// Connections from one IP address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpLimits {
    /// Connected clients one address may have at once; 0: no limit.
    pub max_connections: usize,
    /// New connections per second from one address; 0: no limit.
    pub connects_per_second: u32,
    /// New connections one address may open at once before the per-second rate applies.
    pub connect_burst: u32,
}

/// Off. Behind a NAT, a proxy or a load balancer (without `--trusted-proxies`) thousands
/// of legitimate clients share one address, and the relay's total is bounded by its max
/// clients anyway. docs/LIMITS.md has every default and why.
impl Default for IpLimits {
    fn default() -> Self {
        Self::OFF
    }
}

impl IpLimits {
    /// No per-address limit at all.
    pub const OFF: IpLimits = IpLimits {
        max_connections: 0,
        connects_per_second: 0,
        connect_burst: 0,
    };
}

/// Which rate limit a request ran into; its text names the limit and the knob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimit {
    Messages { per_second: u32, burst: u32 },
    Bytes { per_second: u32, burst: u32 },
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RateLimit::Messages { per_second, burst } => write!(
                f,
                "at most {per_second} requests per second (bursts of {burst})"
            ),
            RateLimit::Bytes { per_second, burst } => write!(
                f,
                "at most {per_second} payload bytes per second (bursts of {burst})"
            ),
        }
    }
}

/// The limits that apply to one client, as it is told them when it connects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientLimits {
    pub rate: RateLimits,
    pub max_message_bytes: usize,
    pub max_pending: usize,
    pub max_streams_per_pair: usize,
    pub ack_timeout_ms: u64,
}
