//! Whether the relay serves, and whether it wants new clients.
//!
//! `/healthz` answers as long as the process serves HTTP at all (a liveness probe).
//! `/readyz` answers 200 only once both front ends accept connections and until the relay
//! starts draining, so a load balancer stops sending new clients before it goes away.

use std::sync::atomic::{AtomicU8, Ordering};

/// The relay's readiness, shared by the service (which moves it) and the admin listener
/// (which reports it).
#[derive(Debug, Default)]
pub struct Health {
    state: AtomicU8,
}

/// Where the relay is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// The front ends are not both accepting yet.
    Starting,
    /// Both front ends accept connections.
    Ready,
    /// Shutting down: no new clients, open streams finishing.
    Draining,
}

impl Readiness {
    pub fn as_str(self) -> &'static str {
        match self {
            Readiness::Starting => "starting",
            Readiness::Ready => "ready",
            Readiness::Draining => "draining",
        }
    }
}

impl Health {
    pub fn readiness(&self) -> Readiness {
        match self.state.load(Ordering::SeqCst) {
            0 => Readiness::Starting,
            1 => Readiness::Ready,
            _ => Readiness::Draining,
        }
    }

    /// Both front ends accept connections.
    pub fn set_ready(&self) {
        // Never back from draining to ready.
        let _ = self
            .state
            .compare_exchange(0, 1, Ordering::SeqCst, Ordering::SeqCst);
    }

    /// The relay is going away: from now on it is not ready.
    pub fn set_draining(&self) {
        self.state.store(2, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draining_is_final() {
        let health = Health::default();
        assert_eq!(health.readiness(), Readiness::Starting);
        health.set_ready();
        assert_eq!(health.readiness(), Readiness::Ready);
        health.set_draining();
        health.set_ready();
        assert_eq!(health.readiness(), Readiness::Draining);
    }
}
