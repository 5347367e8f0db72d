//! Native QUIC client of the p2p relay, and the wire protocol it shares with the relay.

pub mod wire;
