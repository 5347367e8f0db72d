//! A clock for governor that shows the time the core was last given.

use std::time::{Duration, Instant};

use governor::clock::FakeRelativeClock;

/// governor's manual clock, advanced to each `now` the core is handed. Time never goes
/// backwards for the limiter: an earlier `now` than one already seen changes nothing.
#[derive(Debug, Clone, Default)]
pub(crate) struct FedClock {
    clock: FakeRelativeClock,
    epoch: Option<Instant>,
    seen: Duration,
}

impl FedClock {
    /// Moves the limiter's clock to `now`.
    pub fn feed(&mut self, now: Instant) {
        let epoch = *self.epoch.get_or_insert(now);
        let elapsed = now.saturating_duration_since(epoch);
        if elapsed > self.seen {
            self.clock.advance(elapsed - self.seen);
            self.seen = elapsed;
        }
    }

    pub fn governor(&self) -> FakeRelativeClock {
        self.clock.clone()
    }
}
