//! The QUIC front end: native clients, one QUIC connection each, every P2P stream a native
//! QUIC bidirectional stream. The wire format is `p2p_relay_wire`; the rules are the
//! relay core's, exactly as Socket.IO clients get them.

mod bridge;
mod connection;
mod node;
mod splice;

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use dashmap::DashMap;
use futures::FutureExt;
use p2p_relay_wire::{self as wire, CloseCode, ResetCode};
use relay_core::{ConnId, StreamEnd};
use relay_runtime::RelayHandle;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// Settings of the QUIC front end.
#[derive(Debug, Clone)]
pub struct QuicConfig {
    /// Largest control frame accepted (payload limit plus framing).
    pub max_frame_bytes: usize,
    /// Relayed events queued toward one native client before senders are told.
    pub outbox_messages: usize,
    /// Bytes queued toward one native client, replies and errors included, before it is
    /// closed with [`CloseCode::SlowReader`].
    pub outbox_bytes: usize,
    /// Time a new connection has to open its control stream and say hello, and a data
    /// stream to send its header.
    pub handshake_timeout: Duration,
    /// Concurrent bidirectional streams a client may open (control stream included). A
    /// client is allowed a few at first and more as it uses them, up to this.
    pub max_streams_per_connection: u32,
    /// How long a connection may stay silent before it is taken as gone (a peer that was
    /// killed or lost its network sends no close). Keep-alives go out at a third of it, so
    /// a live but idle client never reaches it and a vanished one is noticed within it.
    pub idle_timeout: Duration,
    /// UDP socket buffer size asked of the OS: with the kernel's default, quinn's receive
    /// buffer overflowed at full speed on loopback (hundreds of receive-buffer errors, about
    /// 0.8% of packets lost per run, on 2 cores); 4 MiB buffers removed the loss.
    pub udp_buffer_bytes: usize,
    /// Client ids in a list page when the client asks for no size.
    pub list_page: usize,
    /// On shutdown, how long each step may take: connections taking their `Closing`
    /// frame, then what is left ending after the endpoint closed them, then the endpoint
    /// going idle. A client that does not read cannot hold the relay up longer.
    pub shutdown_grace: Duration,
    /// Cluster mode: the node links of this node. The endpoint then also accepts node
    /// links (their own ALPN) and splices streams to acceptors on other nodes.
    pub node_links: Option<Arc<crate::cluster::NodeLinks>>,
}

impl Default for QuicConfig {
    fn default() -> Self {
        Self {
            max_frame_bytes: wire::DEFAULT_MAX_FRAME_BYTES,
            outbox_messages: 1024,
            outbox_bytes: 8 * 1024 * 1024,
            handshake_timeout: Duration::from_secs(10),
            max_streams_per_connection: 257,
            idle_timeout: Duration::from_secs(10),
            udp_buffer_bytes: 4 * 1024 * 1024,
            list_page: relay_core::directory::DEFAULT_LIST_PAGE,
            shutdown_grace: Duration::from_secs(2),
            node_links: None,
        }
    }
}

/// A wire code ([`CloseCode`], [`ResetCode`]) as QUIC carries it.
pub(crate) fn code(value: impl Into<u32>) -> quinn::VarInt {
    quinn::VarInt::from_u32(value.into())
}

/// State every native connection shares: the core's handle and, to splice a stream to its
/// acceptor, each native connection's QUIC connection (sharded, touched when a stream
/// opens, never per message).
pub(crate) struct Shared {
    pub relay: RelayHandle,
    pub config: QuicConfig,
    pub conns: DashMap<ConnId, quinn::Connection>,
    /// The same connections' front-end state, for streams other nodes splice to them.
    pub natives: DashMap<ConnId, std::sync::Weak<connection::Native>>,
    /// Cancelled when the front end stops accepting: connections still saying hello close
    /// at once instead of holding the shutdown up until their handshake timeout.
    pub stopping: CancellationToken,
}

/// Cuts a relayed stream short, with the reason its ends are reset with.
#[derive(Clone, Default)]
pub(crate) struct Cut {
    token: CancellationToken,
    /// The first cause wins; set before the token is cancelled.
    code: Arc<OnceLock<ResetCode>>,
}

impl Cut {
    pub fn cut(&self, code: ResetCode) {
        let _ = self.code.set(code);
        self.token.cancel();
    }

    /// Resolves with the reset code once the stream is cut.
    pub async fn cancelled(&self) -> ResetCode {
        self.token.cancelled().await;
        // Always set by `cut` before cancelling; the pairing's end is the fallback meaning.
        self.code.get().copied().unwrap_or(ResetCode::Closed)
    }
}

/// The reset code that tells a native client why the core ended its stream.
pub(crate) fn end_code(why: StreamEnd) -> ResetCode {
    match why {
        StreamEnd::Unpaired | StreamEnd::Failed => ResetCode::Closed,
        StreamEnd::PeerGone => ResetCode::PeerGone,
    }
}

/// Streams a new client may have open at once (its control stream included), before it
/// uses any: see [`connection::Native::ensure_stream_credit`]. quinn keeps an entry in two
/// hash maps for each stream a peer may open; three entries fit the maps' smallest table (four
/// buckets), eight took sixteen. The first grant raises the credit to six, before the
/// client reads it.
pub(crate) const INITIAL_STREAM_CREDIT: u32 = 3;

/// The stream credit a connection starts with: [`INITIAL_STREAM_CREDIT`], or less if the
/// configured maximum is lower.
pub(crate) fn initial_stream_credit(config: &QuicConfig) -> u32 {
    config.max_streams_per_connection.min(INITIAL_STREAM_CREDIT)
}

/// The keep-alive interval for an idle timeout: a third of it, so that two keep-alives may
/// be lost before a live connection is taken for dead.
fn keep_alive(idle_timeout: Duration) -> Duration {
    (idle_timeout / 3).max(Duration::from_millis(100))
}

/// A bound QUIC endpoint serving native clients.
pub struct QuicFrontEnd {
    endpoint: quinn::Endpoint,
}

impl QuicFrontEnd {
    /// Binds `addr` with the given certificate (a reloading one is asked at every
    /// handshake, so a renewed certificate reaches new connections).
    pub fn bind(
        addr: SocketAddr,
        cert: &certs::ServerCert,
        config: &QuicConfig,
    ) -> anyhow::Result<Self> {
        let tls = if config.node_links.is_some() {
            certs::server_config_for(
                cert,
                &[wire::ALPN, crate::cluster::node_link::NODE_ALPN],
                true,
            )?
        } else {
            certs::server_config_for(cert, &[wire::ALPN], true)?
        };
        let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        let mut transport = quinn::TransportConfig::default();
        transport
            // Raised per connection as it uses streams, up to `max_streams_per_connection`.
            .max_concurrent_bidi_streams(initial_stream_credit(config).into())
            .max_concurrent_uni_streams(0u8.into())
            .keep_alive_interval(Some(keep_alive(config.idle_timeout)))
            .max_idle_timeout(Some(config.idle_timeout.try_into()?));
        server.transport_config(Arc::new(transport));

        let socket = std::net::UdpSocket::bind(addr)
            .map_err(|e| crate::listen::Listener::Quic.error(addr, e))?;
        let sock = socket2::SockRef::from(&socket);
        // Best effort: the OS may cap the sizes, which costs throughput, not correctness.
        let _ = sock.set_recv_buffer_size(config.udp_buffer_bytes);
        let _ = sock.set_send_buffer_size(config.udp_buffer_bytes);
        let runtime =
            quinn::default_runtime().ok_or_else(|| anyhow::anyhow!("no async runtime for QUIC"))?;
        let endpoint = quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            Some(server),
            socket,
            runtime,
        )?;
        Ok(Self { endpoint })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// Accepts connections until `stop` is cancelled (or the endpoint closes), then shuts
    /// the front end down and returns when every connection task has ended.
    ///
    /// Shutting down goes in order: new connection attempts are refused; the connections
    /// the core closes (`RelayHandle::close_all`, which the caller runs after cancelling
    /// `stop`) write their `Closing` frame and close with its code; whatever is still open
    /// after `shutdown_grace` is closed by the endpoint with `SHUTDOWN`; the endpoint is then
    /// given up to `shutdown_grace` to go idle, so its close reaches the peers. Every
    /// connection task belongs to this future: dropping it ends them all.
    pub async fn serve(
        self,
        relay: RelayHandle,
        config: QuicConfig,
        stop: CancellationToken,
    ) -> std::io::Result<()> {
        let grace = config.shutdown_grace;
        let shared = Arc::new(Shared {
            relay,
            config,
            conns: DashMap::new(),
            natives: DashMap::new(),
            stopping: stop.clone(),
        });
        let mut conns = JoinSet::new();
        let endpoint = self.endpoint.clone();
        let _close_on_drop = CloseOnDrop(self.endpoint);
        debug!("QUIC front end serving");
        loop {
            tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                incoming = endpoint.accept() => {
                    let Some(incoming) = incoming else { break };
                    conns.spawn(connection::serve(shared.clone(), incoming));
                }
                Some(done) = conns.join_next(), if !conns.is_empty() => report(done),
            }
        }

        endpoint.set_server_config(None);
        while let Some(Some(incoming)) = endpoint.accept().now_or_never() {
            incoming.refuse();
        }
        debug!(open = conns.len(), "QUIC front end stopped accepting");
        if tokio::time::timeout(grace, join_all(&mut conns))
            .await
            .is_err()
        {
            debug!(
                open = conns.len(),
                "closing the native connections still open"
            );
        }
        endpoint.close(code(CloseCode::Shutdown), SHUTDOWN_REASON);
        if tokio::time::timeout(grace, join_all(&mut conns))
            .await
            .is_err()
        {
            warn!(
                open = conns.len(),
                "native connection tasks outlived the endpoint's close; aborting them"
            );
            conns.shutdown().await;
        }
        if tokio::time::timeout(grace, endpoint.wait_idle())
            .await
            .is_err()
        {
            warn!("the QUIC endpoint was not idle within {grace:?} of closing");
        }
        debug!("QUIC front end shut down");
        Ok(())
    }
}

/// What the endpoint tells peers it closes on shutdown.
pub(crate) const SHUTDOWN_REASON: &[u8] = b"relay shutting down";

async fn join_all(conns: &mut JoinSet<()>) {
    while let Some(done) = conns.join_next().await {
        report(done);
    }
}

fn report(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done {
        if e.is_panic() {
            tracing::error!("a QUIC connection task panicked: {e}");
        }
    }
}

struct CloseOnDrop(quinn::Endpoint);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close(code(CloseCode::Shutdown), SHUTDOWN_REASON);
    }
}
