//! References without the relay's rules: two quinn endpoints talking directly, and a bare
//! quinn relay that only copies bytes between two streams (`read_chunk` / `write_chunk`,
//! nothing else). Same certificates, UDP buffer sizes and runtime as the relay, so that
//! the relay's cost shows as a ratio.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use quinn::{Connection, Endpoint, RecvStream, SendStream};

const ALPN: &[&[u8]] = &[b"p2p-relay-load-ref"];
const UDP_BUFFER: usize = 4 * 1024 * 1024;

fn endpoint(server: Option<quinn::ServerConfig>) -> anyhow::Result<Endpoint> {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0")?;
    if let Ok(state) = quinn::udp::UdpSocketState::new((&socket).into()) {
        let _ = state.set_recv_buffer_size((&socket).into(), UDP_BUFFER);
        let _ = state.set_send_buffer_size((&socket).into(), UDP_BUFFER);
    }
    let runtime = quinn::default_runtime().ok_or_else(|| anyhow::anyhow!("no tokio runtime"))?;
    Ok(Endpoint::new(
        quinn::EndpointConfig::default(),
        server,
        socket,
        runtime,
    )?)
}

struct Tls {
    server: quinn::ServerConfig,
    client: quinn::ClientConfig,
}

fn tls(dir: &Path) -> anyhow::Result<Tls> {
    let dev = certs::DevCerts::load_or_create(dir)?;
    let server = certs::server_config(&dev.server_identity(), ALPN)?;
    let server = quinn::crypto::rustls::QuicServerConfig::try_from(server)?;
    let client = dev.trust().client_config(ALPN)?;
    let client = quinn::crypto::rustls::QuicClientConfig::try_from(client)?;
    // Kept alive as the relay and native client keep theirs: a reference set up early and
    // used later must not have hit the idle timeout in between.
    let mut transport = quinn::TransportConfig::default();
    transport.keep_alive_interval(Some(std::time::Duration::from_secs(5)));
    let transport = Arc::new(transport);
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(server));
    server.transport_config(transport.clone());
    let mut client = quinn::ClientConfig::new(Arc::new(client));
    client.transport_config(transport);
    Ok(Tls { server, client })
}

async fn connect(
    client: &Endpoint,
    config: &quinn::ClientConfig,
    addr: SocketAddr,
) -> anyhow::Result<Connection> {
    Ok(client
        .connect_with(config.clone(), addr, "localhost")?
        .await?)
}

/// Two endpoints connected to each other: `a` opens streams, `b` accepts them.
pub struct Direct {
    pub a: Connection,
    pub b: Connection,
    _endpoints: (Endpoint, Endpoint),
}

impl Direct {
    pub async fn start(cert_dir: &Path) -> anyhow::Result<Direct> {
        let tls = tls(cert_dir)?;
        let server = endpoint(Some(tls.server))?;
        let client = endpoint(None)?;
        let addr = server.local_addr()?;
        let (a, b) = tokio::join!(connect(&client, &tls.client, addr), async {
            Ok::<_, anyhow::Error>(
                server
                    .accept()
                    .await
                    .ok_or_else(|| anyhow::anyhow!("no connection"))?
                    .await?,
            )
        });
        Ok(Direct {
            a: a?,
            b: b?,
            _endpoints: (server, client),
        })
    }
}

/// A relay that pairs the first two connections it accepts and, for every stream the first
/// opens, opens one toward the second and copies both directions. Nothing else.
pub struct CopyRelay {
    pub a: Connection,
    pub b: Connection,
    _endpoints: (Endpoint, Endpoint, Endpoint),
    _task: tokio::task::JoinHandle<()>,
}

impl CopyRelay {
    pub async fn start(cert_dir: &Path) -> anyhow::Result<CopyRelay> {
        let tls = tls(cert_dir)?;
        let relay = endpoint(Some(tls.server))?;
        let addr = relay.local_addr()?;
        let accept = {
            let relay = relay.clone();
            async move {
                let first = relay
                    .accept()
                    .await
                    .ok_or_else(|| anyhow::anyhow!("no connection"))?
                    .await?;
                let second = relay
                    .accept()
                    .await
                    .ok_or_else(|| anyhow::anyhow!("no connection"))?
                    .await?;
                Ok::<_, anyhow::Error>((first, second))
            }
        };
        let ea = endpoint(None)?;
        let eb = endpoint(None)?;
        let accepted = tokio::spawn(accept);
        let a = connect(&ea, &tls.client, addr).await?;
        let b = connect(&eb, &tls.client, addr).await?;
        let (ra, rb) = accepted.await??;
        // The relay's side of `a` is whichever accepted connection has a's local address.
        let (ra, rb) = if ra.remote_address() == ea.local_addr()? {
            (ra, rb)
        } else {
            (rb, ra)
        };
        let task = tokio::spawn(async move {
            while let Ok((a_send, a_recv)) = ra.accept_bi().await {
                let Ok((b_send, b_recv)) = rb.open_bi().await else {
                    return;
                };
                tokio::spawn(copy(a_recv, b_send));
                tokio::spawn(copy(b_recv, a_send));
            }
        });
        Ok(CopyRelay {
            a,
            b,
            _endpoints: (relay, ea, eb),
            _task: task,
        })
    }
}

/// Copies one stream into another, chunk by chunk, until EOF.
pub async fn copy(mut from: RecvStream, mut to: SendStream) {
    while let Ok(Some(chunk)) = from.read_chunk(64 * 1024, true).await {
        if to.write_chunk(chunk.bytes).await.is_err() {
            return;
        }
    }
    let _ = to.finish();
    let _ = to.stopped().await;
}

/// Writes `total` bytes in `chunk`-sized pieces of one shared buffer, then finishes.
pub async fn write_bytes(send: &mut SendStream, total: u64, chunk: usize) -> anyhow::Result<()> {
    let buf = Bytes::from(vec![0x5a; chunk]);
    let mut left = total;
    while left > 0 {
        let n = left.min(chunk as u64) as usize;
        send.write_chunk(buf.slice(..n)).await?;
        left -= n as u64;
    }
    Ok(())
}

/// Reads until EOF; returns the byte count.
pub async fn read_to_end(recv: &mut RecvStream) -> anyhow::Result<u64> {
    let mut got = 0;
    while let Some(chunk) = recv.read_chunk(1 << 20, true).await? {
        got += chunk.bytes.len() as u64;
    }
    Ok(got)
}

/// Reads exactly `buf.len()` bytes.
pub async fn read_exact(recv: &mut RecvStream, buf: &mut [u8]) -> anyhow::Result<()> {
    recv.read_exact(buf).await?;
    Ok(())
}

/// One ping-pong stream: `a` writes a message of `size` bytes, the far end echoes it, `a`
/// reads it back. The far end is `b` (direct), or `b` through the copy relay.
pub struct PingPong {
    send: SendStream,
    recv: RecvStream,
    msg: Bytes,
    buf: Vec<u8>,
    _echo: tokio::task::JoinHandle<()>,
}

impl PingPong {
    pub async fn start(a: &Connection, b: &Connection, size: usize) -> anyhow::Result<PingPong> {
        let (mut send, recv) = a.open_bi().await?;
        let msg = Bytes::from(vec![7u8; size]);
        // b sees the stream with its first bytes.
        send.write_all(&msg).await?;
        let (mut b_send, mut b_recv) = b.accept_bi().await?;
        let echo = tokio::spawn(async move {
            let mut buf = vec![0u8; size];
            while b_recv.read_exact(&mut buf).await.is_ok() {
                if b_send.write_all(&buf).await.is_err() {
                    return;
                }
            }
        });
        let mut pp = PingPong {
            send,
            recv,
            msg,
            buf: vec![0u8; size],
            _echo: echo,
        };
        pp.recv.read_exact(&mut pp.buf).await?;
        Ok(pp)
    }

    /// One round trip.
    pub async fn round_trip(&mut self) -> anyhow::Result<()> {
        self.send.write_chunk(self.msg.clone()).await?;
        self.recv.read_exact(&mut self.buf).await?;
        Ok(())
    }
}

/// A copy relay as a server of its own (the load tool's `copy-relay`): it pairs connections
/// in the order they arrive, the first with the second, the third with the fourth, and
/// copies every stream the first of a pair opens to a stream toward the second. Returns the
/// endpoint and the CA file its clients trust.
pub fn copy_relay_server(
    cert_dir: &Path,
    addr: SocketAddr,
) -> anyhow::Result<(Endpoint, std::path::PathBuf)> {
    let tls = tls(cert_dir)?;
    let socket = std::net::UdpSocket::bind(addr)?;
    if let Ok(state) = quinn::udp::UdpSocketState::new((&socket).into()) {
        let _ = state.set_recv_buffer_size((&socket).into(), UDP_BUFFER);
        let _ = state.set_send_buffer_size((&socket).into(), UDP_BUFFER);
    }
    let runtime = quinn::default_runtime().ok_or_else(|| anyhow::anyhow!("no tokio runtime"))?;
    let endpoint = Endpoint::new(
        quinn::EndpointConfig::default(),
        Some(tls.server),
        socket,
        runtime,
    )?;
    Ok((endpoint, cert_dir.join(certs::CA_CERT_FILE)))
}

/// Serves [`copy_relay_server`]'s endpoint until it closes.
pub async fn serve_copy_relay(endpoint: Endpoint) {
    loop {
        let Some(first) = endpoint.accept().await else {
            return;
        };
        let Ok(first) = first.await else { continue };
        let Some(second) = endpoint.accept().await else {
            return;
        };
        let Ok(second) = second.await else { continue };
        tokio::spawn(async move {
            while let Ok((a_send, a_recv)) = first.accept_bi().await {
                let Ok((b_send, b_recv)) = second.open_bi().await else {
                    return;
                };
                tokio::spawn(copy(a_recv, b_send));
                tokio::spawn(copy(b_recv, a_send));
            }
        });
    }
}

/// A raw quinn client of a copy relay, trusting `ca`.
pub async fn connect_raw(addr: SocketAddr, ca: &Path) -> anyhow::Result<(Connection, Endpoint)> {
    let client = certs::Trust::CaFile(ca.to_path_buf()).client_config(ALPN)?;
    let client = quinn::crypto::rustls::QuicClientConfig::try_from(client)?;
    let mut transport = quinn::TransportConfig::default();
    transport.keep_alive_interval(Some(std::time::Duration::from_secs(5)));
    let mut config = quinn::ClientConfig::new(Arc::new(client));
    config.transport_config(Arc::new(transport));
    let endpoint = endpoint(None)?;
    let conn = connect(&endpoint, &config, addr).await?;
    Ok((conn, endpoint))
}
