//! One client's rate limiters: requests per second and payload bytes per second.

use std::num::NonZeroU32;
use std::time::Instant;

use governor::clock::FakeRelativeClock;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

use super::fed_clock::FedClock;
use super::{RateLimit, RateLimits};

pub(crate) type Direct =
    RateLimiter<NotKeyed, InMemoryState, FakeRelativeClock, NoOpMiddleware<Nanos>>;

/// The quota of a per-second rate with its burst, or None when the rate is 0 (no limit). A
/// burst of 0 means two seconds' worth of the rate, so that setting only a rate gives a
/// sensible limit.
pub(crate) fn quota(per_second: u32, burst: u32) -> Option<(Quota, u32)> {
    let rate = NonZeroU32::new(per_second)?;
    let burst = if burst == 0 {
        rate.saturating_mul(NonZeroU32::new(2).expect("2 is not 0"))
    } else {
        NonZeroU32::new(burst).expect("not 0")
    };
    Some((Quota::per_second(rate).allow_burst(burst), burst.get()))
}

pub(crate) struct ClientRate {
    clock: FedClock,
    messages: Option<(Direct, RateLimit)>,
    bytes: Option<(Direct, RateLimit)>,
}

impl ClientRate {
    pub fn new(limits: &RateLimits) -> Self {
        let clock = FedClock::default();
        let limiter = |quota: Quota| RateLimiter::direct_with_clock(quota, clock.governor());
        let messages = quota(limits.messages_per_second, limits.message_burst).map(|(q, burst)| {
            let limit = RateLimit::Messages {
                per_second: limits.messages_per_second,
                burst,
            };
            (limiter(q), limit)
        });
        let bytes = quota(limits.bytes_per_second, limits.byte_burst).map(|(q, burst)| {
            let limit = RateLimit::Bytes {
                per_second: limits.bytes_per_second,
                burst,
            };
            (limiter(q), limit)
        });
        Self {
            clock,
            messages,
            bytes,
        }
    }

    /// One request at `now`, or the limit it is over.
    pub fn message(&mut self, now: Instant) -> Result<(), RateLimit> {
        self.clock.feed(now);
        match &self.messages {
            Some((limiter, limit)) => limiter.check().map_err(|_| *limit),
            None => Ok(()),
        }
    }

    /// `n` payload bytes at `now`, or the limit they are over. Nothing is taken when they
    /// are refused.
    pub fn bytes(&mut self, now: Instant, n: usize) -> Result<(), RateLimit> {
        self.clock.feed(now);
        let Some((limiter, limit)) = &self.bytes else {
            return Ok(());
        };
        let Some(n) = u32::try_from(n).ok().and_then(NonZeroU32::new) else {
            return if n == 0 { Ok(()) } else { Err(*limit) };
        };
        match limiter.check_n(n) {
            Ok(Ok(())) => Ok(()),
            // Over the rate now, or more than a whole burst: never possible.
            Ok(Err(_)) | Err(_) => Err(*limit),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        let limits = RateLimits {
            messages_per_second: 10,
            message_burst: 20,
            bytes_per_second: 1000,
            byte_burst: 2000,
        };
        let mut rate = ClientRate::new(&limits);
        let t0 = Instant::now();
        for _ in 0..20 {
            rate.message(t0).unwrap();
        }
        let over = RateLimit::Messages {
            per_second: 10,
            burst: 20,
        };
        assert_eq!(rate.message(t0), Err(over));
        // A tenth of a second buys one more.
        rate.message(t0 + Duration::from_millis(100)).unwrap();
        assert_eq!(rate.message(t0 + Duration::from_millis(100)), Err(over));

        rate.bytes(t0, 1500).unwrap();
        let over = RateLimit::Bytes {
            per_second: 1000,
            burst: 2000,
        };
        assert_eq!(rate.bytes(t0, 600), Err(over));
        rate.bytes(t0, 500).unwrap();
        assert_eq!(
            rate.bytes(t0, 3000),
            Err(over),
            "more than a burst never passes"
        );
        // (The clock already stood at 100 ms: one second after that, a second's worth.)
        rate.bytes(t0 + Duration::from_millis(1100), 1000).unwrap();
        rate.bytes(t0, 0).unwrap();
    }

    #[test]
    fn zero_turns_a_limit_off() {
        let mut rate = ClientRate::new(&RateLimits::OFF);
        let t0 = Instant::now();
        for _ in 0..100_000 {
            rate.message(t0).unwrap();
        }
        rate.bytes(t0, usize::MAX).unwrap();
    }

    #[test]
    fn no_burst_means_two_seconds_of_the_rate() {
        let limits = RateLimits {
            messages_per_second: 10,
            ..RateLimits::OFF
        };
        let mut rate = ClientRate::new(&limits);
        let t0 = Instant::now();
        for _ in 0..20 {
            rate.message(t0).unwrap();
        }
        let over = RateLimit::Messages {
            per_second: 10,
            burst: 20,
        };
        assert_eq!(rate.message(t0), Err(over));
    }

    #[test]
    fn the_defaults_are_off() {
        assert_eq!(RateLimits::default(), RateLimits::OFF);
        assert_eq!(crate::IpLimits::default(), crate::IpLimits::OFF);
    }
}
