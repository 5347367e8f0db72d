//! Stream bytes between nodes: one QUIC connection from a node to each other node it
//! splices streams to, on that node's QUIC endpoint with an ALPN of its own
//! ([`NODE_ALPN`]), one QUIC stream per relayed stream. The relayed stream is spliced to it
//! at both ends as it would be to a client's stream on one node, so each direction moves
//! only as fast as the slowest reader lets it: back-pressure stays end to end.
//!
//! Only nodes may open node links. TLS here cannot say who a node is (each node may run on
//! development certificates of its own), so the dialer accepts any certificate, and both
//! ends prove they hold the cluster secret instead: each sends an HMAC-SHA256, keyed with
//! the secret, of its role and of keying material exported from this very TLS session. A
//! proof is worth nothing on any other connection, so a man in the middle can neither
//! replay it nor pass it on.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dashmap::DashMap;
use hmac::{Hmac, Mac};
use quinn::{RecvStream, SendStream};
use relay_core::{ConnId, NodeId, StreamId};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::Sha256;
use tracing::debug;

/// The ALPN of node links, distinct from the native clients' so neither can be mistaken
/// for the other.
pub const NODE_ALPN: &[u8] = b"p2p-relay-node/1";
/// What each relayed stream starts with on a node link.
const MAGIC: &[u8; 4] = b"P2PN";
pub const HEADER_LEN: usize = 4 + 8 + 8;
const PROOF_LEN: usize = 32;
/// How long dialing and proving may take.
const HANDSHAKE: Duration = Duration::from_secs(3);

/// Why a node link could not be used.
#[derive(Debug, thiserror::Error)]
pub enum NodeLinkError {
    #[error("no address known for node {0}")]
    NoAddress(u32),
    #[error("cannot dial node {node}: {reason}")]
    Dial { node: u32, reason: String },
    #[error("node {0} did not prove it holds the cluster secret")]
    Unproven(u32),
    #[error("node link: {0}")]
    Quic(String),
    #[error("node links are closed")]
    Closed,
    #[error("bad node link header")]
    BadHeader,
}

/// The node links of this node: where the other nodes are, and the connections to them.
pub struct NodeLinks {
    secret: Vec<u8>,
    endpoint: quinn::Endpoint,
    client: quinn::ClientConfig,
    addrs: DashMap<NodeId, SocketAddr>,
    /// One connection per node, dialed on first use (the lock is held only to dial once).
    conns: tokio::sync::Mutex<HashMap<NodeId, quinn::Connection>>,
    closed: Mutex<bool>,
    /// Where to look up a node this node has not watched yet.
    directory: std::sync::OnceLock<super::directory::RedisDirectory>,
}

impl std::fmt::Debug for NodeLinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        f.debug_struct("NodeLinks")
            .field("nodes", &self.addrs.len())
            .finish_non_exhaustive()
    }
}

impl NodeLinks {
    pub fn new(secret: Vec<u8>, advertise: SocketAddr) -> anyhow::Result<Self> {
        let bind: SocketAddr = if advertise.is_ipv6() {
            "[::]:0".parse()?
        } else {
            "0.0.0.0:0".parse()?
        };
        let endpoint = quinn::Endpoint::client(bind)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth();
        tls.alpn_protocols = vec![NODE_ALPN.to_vec()];
        let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls)?;
        let mut client = quinn::ClientConfig::new(Arc::new(quic));
        client.transport_config(Arc::new(transport()));
        Ok(Self {
            secret,
            endpoint,
            client,
            addrs: DashMap::new(),
            conns: tokio::sync::Mutex::new(HashMap::new()),
            closed: Mutex::new(false),
            directory: std::sync::OnceLock::new(),
        })
    }

    pub fn set_directory(&self, dir: super::directory::RedisDirectory) {
        let _ = self.directory.set(dir);
    }

    pub fn secret(&self) -> &[u8] {
        &self.secret
    }

    pub fn set_address(&self, node: NodeId, addr: Option<SocketAddr>) {
        match addr {
            Some(addr) => {
                self.addrs.insert(node, addr);
            }
            None => {
                self.addrs.remove(&node);
            }
        }
    }

    pub fn address_of(&self, node: NodeId) -> Option<SocketAddr> {
        self.addrs.get(&node).map(|a| *a)
    }

    /// The node is gone: its link closes (streams on it are reset).
    pub fn forget(&self, node: NodeId) {
        self.addrs.remove(&node);
        if let Ok(mut conns) = self.conns.try_lock() {
            if let Some(conn) = conns.remove(&node) {
                conn.close(quinn::VarInt::from_u32(0), b"node gone");
            }
        }
    }

    pub fn close(&self) {
        *self.closed.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.endpoint
            .close(quinn::VarInt::from_u32(0), b"node leaving");
    }

    /// Opens a stream to `acceptor` on `node` for the relayed stream `stream`.
    pub async fn open_stream(
        &self,
        node: NodeId,
        acceptor: ConnId,
        stream: StreamId,
    ) -> Result<(SendStream, RecvStream), NodeLinkError> {
        let conn = self.connection(node).await?;
        let (mut send, recv) = conn
            .open_bi()
            .await
            .map_err(|e| NodeLinkError::Quic(e.to_string()))?;
        send.write_all(&header(acceptor, stream))
            .await
            .map_err(|e| NodeLinkError::Quic(e.to_string()))?;
        Ok((send, recv))
    }

    async fn connection(&self, node: NodeId) -> Result<quinn::Connection, NodeLinkError> {
        if *self.closed.lock().unwrap_or_else(|p| p.into_inner()) {
            return Err(NodeLinkError::Closed);
        }
        let mut conns = self.conns.lock().await;
        if let Some(conn) = conns.get(&node) {
            if conn.close_reason().is_none() {
                return Ok(conn.clone());
            }
        }
        let addr = match self.address_of(node) {
            Some(addr) => addr,
            None => {
                let info = match self.directory.get() {
                    Some(dir) => dir.node_info(node).await.ok().flatten(),
                    None => None,
                };
                let addr = info
                    .and_then(|i| i.advertise)
                    .ok_or(NodeLinkError::NoAddress(node.0))?;
                self.addrs.insert(node, addr);
                addr
            }
        };
        let dialed = tokio::time::timeout(HANDSHAKE, self.dial(node, addr))
            .await
            .map_err(|_| NodeLinkError::Dial {
                node: node.0,
                reason: "timed out".into(),
            })??;
        debug!(node = node.0, %addr, "node link up");
        conns.insert(node, dialed.clone());
        Ok(dialed)
    }

    async fn dial(
        &self,
        node: NodeId,
        addr: SocketAddr,
    ) -> Result<quinn::Connection, NodeLinkError> {
        let dial = |reason: String| NodeLinkError::Dial {
            node: node.0,
            reason,
        };
        let conn = self
            .endpoint
            .connect_with(self.client.clone(), addr, "p2p-relay-node")
            .map_err(|e| dial(e.to_string()))?
            .await
            .map_err(|e| dial(e.to_string()))?;
        let material = keying_material(&conn).ok_or_else(|| dial("no keying material".into()))?;
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| dial(e.to_string()))?;
        send.write_all(&proof(&self.secret, b"dialer", &material))
            .await
            .map_err(|e| dial(e.to_string()))?;
        let _ = send.finish();
        let mut theirs = [0u8; PROOF_LEN];
        recv.read_exact(&mut theirs)
            .await
            .map_err(|_| NodeLinkError::Unproven(node.0))?;
        if !verify(&self.secret, b"listener", &material, &theirs) {
            conn.close(quinn::VarInt::from_u32(1), b"unproven");
            return Err(NodeLinkError::Unproven(node.0));
        }
        Ok(conn)
    }
}

/// The listening side's half of the proof: reads the dialer's, answers with its own.
/// `false` when the dialer does not hold the secret (then the connection must close).
pub async fn prove_listener(conn: &quinn::Connection, secret: &[u8]) -> bool {
    let Some(material) = keying_material(conn) else {
        return false;
    };
    let exchange = async {
        let (mut send, mut recv) = conn.accept_bi().await.ok()?;
        let mut theirs = [0u8; PROOF_LEN];
        recv.read_exact(&mut theirs).await.ok()?;
        if !verify(secret, b"dialer", &material, &theirs) {
            return Some(false);
        }
        send.write_all(&proof(secret, b"listener", &material))
            .await
            .ok()?;
        let _ = send.finish();
        Some(true)
    };
    matches!(
        tokio::time::timeout(HANDSHAKE, exchange).await,
        Ok(Some(true))
    )
}

/// The header a relayed stream starts with on a node link.
pub fn header(acceptor: ConnId, stream: StreamId) -> [u8; HEADER_LEN] {
    let mut out = [0u8; HEADER_LEN];
    out[..4].copy_from_slice(MAGIC);
    out[4..12].copy_from_slice(&acceptor.0.to_be_bytes());
    out[12..].copy_from_slice(&stream.0.to_be_bytes());
    out
}

pub fn parse_header(raw: &[u8; HEADER_LEN]) -> Result<(ConnId, StreamId), NodeLinkError> {
    if &raw[..4] != MAGIC {
        return Err(NodeLinkError::BadHeader);
    }
    let n = |r: &[u8]| u64::from_be_bytes(r.try_into().unwrap_or_default());
    Ok((ConnId(n(&raw[4..12])), StreamId(n(&raw[12..]))))
}

/// QUIC settings of node links: a killed node's link is noticed in seconds, and there
/// is room for many relayed streams at once.
pub fn transport() -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    t.keep_alive_interval(Some(Duration::from_secs(1)))
        .max_concurrent_bidi_streams(4096u32.into())
        .max_concurrent_uni_streams(0u8.into());
    if let Ok(idle) = Duration::from_secs(5).try_into() {
        t.max_idle_timeout(Some(idle));
    }
    t
}

fn keying_material(conn: &quinn::Connection) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    conn.export_keying_material(&mut out, NODE_ALPN, b"cluster secret proof")
        .ok()?;
    Some(out)
}

fn mac(secret: &[u8], role: &[u8], material: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("any key length");
    mac.update(role);
    mac.update(material);
    mac
}

fn proof(secret: &[u8], role: &[u8], material: &[u8]) -> [u8; PROOF_LEN] {
    mac(secret, role, material).finalize().into_bytes().into()
}

fn verify(secret: &[u8], role: &[u8], material: &[u8], theirs: &[u8]) -> bool {
    // Constant time, so the comparison says nothing of how close a guess was.
    mac(secret, role, material).verify_slice(theirs).is_ok()
}

/// Accepts any certificate, still checking the handshake signature (so the TLS session is
/// sound); who the other end is, the cluster-secret proofs decide.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proofs_depend_on_secret_role_and_session() {
        let m = [7u8; 32];
        let p = proof(b"s3cret", b"dialer", &m);
        assert!(verify(b"s3cret", b"dialer", &m, &p));
        assert!(!verify(b"other", b"dialer", &m, &p));
        assert!(!verify(b"s3cret", b"listener", &m, &p));
        assert!(!verify(b"s3cret", b"dialer", &[8u8; 32], &p));
    }

    #[test]
    fn headers_round_trip() {
        let h = header(ConnId(42), StreamId(u64::MAX - 3));
        assert_eq!(
            parse_header(&h).unwrap(),
            (ConnId(42), StreamId(u64::MAX - 3))
        );
        let mut bad = h;
        bad[0] = b'X';
        assert!(parse_header(&bad).is_err());
    }
}
