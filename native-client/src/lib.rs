//! Native QUIC client of the p2p relay.
//!
//! The client has the verbs of the JavaScript client plugin (pair, emit, emit with ack,
//! list, open streams), over one QUIC connection (docs/PROTOCOL.md Part 2): control
//! messages on one stream, and every P2P stream a QUIC stream of its own, so streams are
//! `AsyncRead + AsyncWrite` with QUIC's flow control end to end.
//!
//! ```no_run
//! use native_client::{Args, Client, ClientEvent, ConnectOptions};
//! use tokio::io::AsyncWriteExt;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! // A relay started with `cargo run --release` on this machine.
//! let (client, mut incoming) = Client::connect(ConnectOptions::new("A")).await?;
//! if client.register("B").await? {
//!     client.emit("hello", Args::new().with("world").with(42)).await?;
//!     let ack = client.emit_with_ack("add", Args::new().with(2).with(3)).await?;
//!     println!("B says {:?}", ack);
//!     if let Some(mut stream) = client.open_stream("B").await? {
//!         stream.write_all(b"bytes, unframed").await?;
//!         stream.shutdown().await?; // FIN: B reads a clean EOF
//!     }
//! }
//! while let Some(event) = incoming.next().await {
//!     match event {
//!         ClientEvent::Event { event, args, ack } => {
//!             if let Some(ack) = ack {
//!                 ack.send(args)?; // echo
//!             }
//!         }
//!         ClientEvent::Closed(reason) => eprintln!("closed: {reason}"),
//!         _ => {}
//!     }
//! }
//! # Ok(()) }
//! ```

mod args;
mod client;
mod connection;
mod driver;
mod error;
mod incoming;
mod list;
mod options;
mod stream;

pub use args::{Args, ArgsError};
pub use client::Client;
pub use connection::CloseReason;
pub use error::{ClientError, ErrorKind, StreamError};
pub use incoming::{AckResponder, ClientEvent, Incoming, Request, RequestKind};
pub use list::{ListPage, MAX_LIST_PAGES};
pub use options::{ConnectOptions, DEFAULT_ADDR, DEFAULT_INCOMING_CAPACITY, DEFAULT_SERVER_NAME};
pub use stream::{P2pReadHalf, P2pStream, P2pWriteHalf};

/// The wire protocol, shared with the relay: its own crate (`p2p-relay-wire`), so that the
/// relay links it without this client's dependencies. Re-exported for raw protocol access.
pub use p2p_relay_wire as wire;

/// Re-exported so that users need no direct dependency to build arguments or choose trust.
pub use certs::Trust;
pub use p2p_relay_wire::ErrorCode;
pub use rmpv;
