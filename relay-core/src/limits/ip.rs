//! Connections per IP address: how many one address may hold, and how fast it may open
//! new ones. Admission asks before the (possibly costly) authentication runs, so a flood
//! from one address is turned away at the door.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

use governor::clock::FakeRelativeClock;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::HashMapStateStore;
use governor::RateLimiter;

use super::fed_clock::FedClock;
use super::rate::quota;
use super::IpLimits;
use crate::error::ConnectError;

type Keyed =
    RateLimiter<IpAddr, HashMapStateStore<IpAddr>, FakeRelativeClock, NoOpMiddleware<Nanos>>;

/// Knocks between two sweeps of the connect-rate table (addresses whose bucket is full
/// again are forgotten), so it holds only addresses seen recently.
const SWEEP_EVERY: u32 = 1024;

pub struct IpGate {
    limits: IpLimits,
    clock: FedClock,
    rate: Option<(Keyed, u32)>,
    open: HashMap<IpAddr, usize>,
    knocks: u32,
}

/// One address, however it arrived: an IPv4 client seen through a dual-stack socket counts
/// as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl IpGate {
    pub fn new(limits: IpLimits) -> Self {
        let clock = FedClock::default();
        let rate = quota(limits.connects_per_second, limits.connect_burst)
            .map(|(q, burst)| (RateLimiter::hashmap_with_clock(q, clock.governor()), burst));
        Self {
            limits,
            clock,
            rate,
            open: HashMap::new(),
            knocks: 0,
        }
    }

    /// A connection attempt from `ip`: it counts toward the address's connect rate, and is
    /// refused while the address is over that rate or holds its maximum of connections.
    pub fn knock(&mut self, now: Instant, ip: IpAddr) -> Result<(), ConnectError> {
        let ip = canonical(ip);
        self.clock.feed(now);
        self.full(ip)?;
        if let Some((limiter, burst)) = &self.rate {
            self.knocks += 1;
            if self.knocks >= SWEEP_EVERY {
                self.knocks = 0;
                limiter.retain_recent();
            }
            if limiter.check_key(&ip).is_err() {
                return Err(ConnectError::ConnectingTooFast {
                    ip,
                    per_second: self.limits.connects_per_second,
                    burst: *burst,
                });
            }
        }
        Ok(())
    }

    /// An admitted connection from `ip` takes one of its slots, if one is free.
    pub fn enter(&mut self, ip: IpAddr) -> Result<(), ConnectError> {
        let ip = canonical(ip);
        self.full(ip)?;
        *self.open.entry(ip).or_default() += 1;
        Ok(())
    }

    /// A connection from `ip` is gone.
    pub fn leave(&mut self, ip: IpAddr) {
        let ip = canonical(ip);
        if let Some(n) = self.open.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.open.remove(&ip);
            }
        }
    }

    /// Addresses that hold at least one connection now (an introspection count: zero once
    /// every client left).
    pub fn addresses(&self) -> usize {
        self.open.len()
    }

    /// Connections `ip` holds now.
    pub fn connections(&self, ip: IpAddr) -> usize {
        self.open.get(&canonical(ip)).copied().unwrap_or(0)
    }

    fn full(&self, ip: IpAddr) -> Result<(), ConnectError> {
        let max = self.limits.max_connections;
        if max > 0 && self.connections(ip) >= max {
            return Err(ConnectError::TooManyFromIp { ip, limit: max });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn connections_per_address_are_capped_and_freed() {
        let mut gate = IpGate::new(IpLimits {
            max_connections: 2,
            connects_per_second: 0,
            connect_burst: 0,
        });
        let now = Instant::now();
        for _ in 0..2 {
            gate.knock(now, A).unwrap();
            gate.enter(A).unwrap();
        }
        let full = ConnectError::TooManyFromIp { ip: A, limit: 2 };
        assert_eq!(gate.knock(now, A), Err(full.clone()));
        assert_eq!(gate.enter(A), Err(full));
        gate.knock(now, B).unwrap();
        gate.enter(B).unwrap();
        gate.leave(A);
        gate.knock(now, A).unwrap();
        gate.enter(A).unwrap();
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(
            gate.connections(mapped),
            2,
            "an IPv4-mapped address is the same address"
        );
    }

    #[test]
    fn the_connect_rate_is_per_address() {
        let mut gate = IpGate::new(IpLimits {
            max_connections: 0,
            connects_per_second: 2,
            connect_burst: 3,
        });
        let t0 = Instant::now();
        for _ in 0..3 {
            gate.knock(t0, A).unwrap();
        }
        let fast = ConnectError::ConnectingTooFast {
            ip: A,
            per_second: 2,
            burst: 3,
        };
        assert_eq!(gate.knock(t0, A), Err(fast));
        gate.knock(t0, B).unwrap();
        gate.knock(t0 + Duration::from_millis(500), A).unwrap();
    }
}
