//! How long a stopping relay lets open streams finish.
//!
//! On SIGTERM or Ctrl-C the relay stops taking new clients and reports itself not ready
//! (`/readyz` answers 503, so a load balancer sends no one new), then gives the streams
//! already open up to `--drain-timeout-ms` to end on their own before it closes every
//! connection, telling each client why.

use std::time::Duration;

#[derive(Debug, Clone, clap::Args)]
pub struct DrainSettings {
    /// On SIGTERM or Ctrl-C, how long open streams may take to finish before they are
    /// closed, in milliseconds (0: close them at once).
    #[arg(long, env = "P2P_RELAY_DRAIN_TIMEOUT_MS", default_value_t = 10_000)]
    pub drain_timeout_ms: u64,
}

impl DrainSettings {
    pub fn drain_timeout(&self) -> Duration {
        Duration::from_millis(self.drain_timeout_ms)
    }
}
