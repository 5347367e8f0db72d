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

impl Default for RateLimits {
    /// Generous: 1000 requests/s (bursts of 2000), 8 MiB/s (bursts of 16 MiB: the same two
    /// seconds' worth).
    fn default() -> Self {
        Self {
            messages_per_second: 1000,
            message_burst: 2000,
            bytes_per_second: 8 * 1024 * 1024,
            byte_burst: 16 * 1024 * 1024,
        }
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

impl Default for IpLimits {
    fn default() -> Self {
        Self {
            max_connections: 256,
            connects_per_second: 100,
            connect_burst: 200,
        }
    }
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
