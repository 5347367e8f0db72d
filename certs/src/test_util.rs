//! Helpers shared by the unit tests: an in-memory TLS handshake and hand-made certificates.

use std::fs;
use std::path::Path;
use std::sync::Arc;

use rcgen::{CertificateParams, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, ServerConfig, ServerConnection};
use time::{Duration, OffsetDateTime};

use crate::{CA_CERT_FILE, CA_KEY_FILE, SERVER_CERT_FILE, SERVER_KEY_FILE};

pub const ALPN: &[u8] = b"p2p-relay-test/1";

/// Which side of the handshake failed.
#[derive(Debug)]
pub enum HandshakeError {
    Client(rustls::Error),
    Server(rustls::Error),
}

/// Runs a full TLS handshake between the two configurations, moving bytes through memory
/// buffers (no sockets). Returns the negotiated ALPN protocol.
pub fn handshake(
    client: ClientConfig,
    server: ServerConfig,
    server_name: &str,
) -> Result<Option<Vec<u8>>, HandshakeError> {
    let name = ServerName::try_from(server_name.to_string()).unwrap();
    let mut client =
        ClientConnection::new(Arc::new(client), name).map_err(HandshakeError::Client)?;
    let mut server = ServerConnection::new(Arc::new(server)).map_err(HandshakeError::Server)?;
    for _ in 0..16 {
        let mut buf = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut buf).unwrap();
        }
        let mut rd = buf.as_slice();
        while !rd.is_empty() {
            server.read_tls(&mut rd).unwrap();
        }
        server
            .process_new_packets()
            .map_err(HandshakeError::Server)?;

        let mut buf = Vec::new();
        while server.wants_write() {
            server.write_tls(&mut buf).unwrap();
        }
        let mut rd = buf.as_slice();
        while !rd.is_empty() {
            client.read_tls(&mut rd).unwrap();
        }
        client
            .process_new_packets()
            .map_err(HandshakeError::Client)?;

        if !client.is_handshaking() && !server.is_handshaking() {
            assert_eq!(
                client.protocol_version(),
                Some(rustls::ProtocolVersion::TLSv1_3)
            );
            let alpn = client.alpn_protocol().map(|p| p.to_vec());
            assert_eq!(alpn.as_deref(), server.alpn_protocol());
            return Ok(alpn);
        }
    }
    panic!("handshake did not finish");
}

/// A hand-made server certificate and key (see [`sign_leaf`]).
pub struct Leaf {
    pub cert: CertificateDer<'static>,
    pub key: PrivateKeyDer<'static>,
    cert_pem: String,
    key_pem: String,
}

/// A server certificate for the development names, signed by the CA in `dir`, valid from
/// `not_before_days` to `not_after_days` relative to now.
pub fn sign_leaf(dir: &Path, not_before_days: i64, not_after_days: i64) -> Leaf {
    let ca_key = KeyPair::from_pem(&fs::read_to_string(dir.join(CA_KEY_FILE)).unwrap()).unwrap();
    let ca_pem = fs::read_to_string(dir.join(CA_CERT_FILE)).unwrap();
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(
        crate::DEV_SERVER_NAMES
            .iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let now = OffsetDateTime::now_utc();
    params.not_before = now + Duration::days(not_before_days);
    params.not_after = now + Duration::days(not_after_days);
    let cert = params.signed_by(&key, &issuer).unwrap();
    Leaf {
        cert: cert.der().clone(),
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

/// Replaces the development server certificate and key in `dir` with `leaf` (the CA is
/// appended, as in the files the library writes).
pub fn write_leaf(dir: &Path, leaf: &Leaf) {
    let ca_pem = fs::read_to_string(dir.join(CA_CERT_FILE)).unwrap();
    fs::write(
        dir.join(SERVER_CERT_FILE),
        format!("{}{ca_pem}", leaf.cert_pem),
    )
    .unwrap();
    fs::write(dir.join(SERVER_KEY_FILE), &leaf.key_pem).unwrap();
}
