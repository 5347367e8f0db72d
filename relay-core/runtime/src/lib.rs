//! The tokio driver of the relay core, shared by every front end.
//!
//! Each connection's rules ([`relay_core::Connection`]) run under that connection's own
//! lock; a message for another connection is put in that connection's inbox and run under
//! its lock, never while holding the sender's. So the traffic of one pair never waits on a
//! lock another pair takes: the only state all connections share is the directory (who is
//! connected where), touched on connect, disconnect, pairing lookups and client lists. See
//! `docs/ARCHITECTURE.md`.

mod admission;
mod cell;
mod clients;
mod cluster;
mod handle;
pub mod metrics;
mod outbox;
mod queries;
mod registry;
mod routing;
mod sink;
mod traffic;

pub use admission::{AdmissionFuture, Admitted, AsyncAuthenticator};
pub use clients::{ClientInfo, ClientsPage, StreamInfo};
pub use cluster::{ClaimFuture, ClusterLink};
pub use handle::{ClusterJoinError, RelayHandle, WeakRelayHandle};
pub use metrics::Metrics;
pub use outbox::{queued_size, Outbox, OutboxLimits, OutboxReceiver, Overflow};
pub use queries::CoreState;
pub use sink::{Refused, Sink};
pub use traffic::{Described, StreamEntry, StreamMeter, TrafficReading};
