//! A small in-process stand-in for the relay's QUIC front end, enough to drive the client
//! through every verb while the real front end is being written. It follows
//! docs/NATIVE-PROTOCOL.md, with none of the relay's limits or timeouts: the end-to-end
//! tests against the real relay live in the workspace's tests/.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use native_client::wire::{
    codes, frame, ClientFrame, FrameReader, FrameWriter, ServerFrame, StreamHeader, WireAnswer,
    WireReply, ALPN,
};
use native_client::{ConnectOptions, Trust};
use quinn::{Connection, RecvStream, SendStream, VarInt};
use tokio::sync::mpsc;

pub struct MockRelay {
    pub addr: SocketAddr,
    pub ca: PathBuf,
    pub ca_fingerprint: String,
    pub endpoint: quinn::Endpoint,
    hub: Arc<Mutex<Hub>>,
    _dir: tempfile::TempDir,
}

#[derive(Default)]
struct Hub {
    clients: HashMap<String, Peer>,
    tickets: HashMap<u64, Ticket>,
    /// stream id -> (opener, acceptor)
    streams: HashMap<u64, (String, String)>,
    next: u64,
}

struct Peer {
    tx: mpsc::UnboundedSender<ServerFrame>,
    conn: Connection,
    peer: Option<String>,
}

enum Ticket {
    Register { from: String, req: u64 },
    Stream { from: String, req: u64 },
    Ack { from: String, req: u64 },
    Unregistered,
}

impl Hub {
    fn next(&mut self) -> u64 {
        self.next += 1;
        self.next
    }

    fn send(&self, to: &str, frame: ServerFrame) {
        if let Some(peer) = self.clients.get(to) {
            let _ = peer.tx.send(frame);
        }
    }

    fn reply(&self, to: &str, req: u64, reply: WireReply) {
        self.send(to, ServerFrame::Reply { req, reply });
    }

    fn peer_of(&self, id: &str) -> Option<String> {
        self.clients.get(id).and_then(|p| p.peer.clone())
    }

    fn set_peer(&mut self, id: &str, peer: Option<String>) {
        if let Some(p) = self.clients.get_mut(id) {
            p.peer = peer;
        }
    }
}

impl MockRelay {
    pub async fn start() -> MockRelay {
        Self::start_with_alpn(ALPN).await
    }

    pub async fn start_with_alpn(alpn: &[u8]) -> MockRelay {
        let dir = tempfile::tempdir().unwrap();
        let dev = certs::DevCerts::load_or_create(dir.path()).unwrap();
        let tls = certs::server_config(&dev.server_identity(), &[alpn]).unwrap();
        let quic = quinn::crypto::rustls::QuicServerConfig::try_from(tls).unwrap();
        let config = quinn::ServerConfig::with_crypto(Arc::new(quic));
        let endpoint = quinn::Endpoint::server(config, "127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = endpoint.local_addr().unwrap();
        let hub = Arc::new(Mutex::new(Hub::default()));
        let relay = MockRelay {
            addr,
            ca: dev.ca_cert_path().to_path_buf(),
            ca_fingerprint: dev.ca_fingerprint(),
            endpoint: endpoint.clone(),
            hub: hub.clone(),
            _dir: dir,
        };
        tokio::spawn(async move {
            while let Some(incoming) = endpoint.accept().await {
                let hub = hub.clone();
                tokio::spawn(async move {
                    if let Ok(conn) = incoming.await {
                        serve(hub, conn).await;
                    }
                });
            }
        });
        relay
    }

    pub fn options(&self, id: &str) -> ConnectOptions {
        ConnectOptions::new(id)
            .addr(self.addr)
            .trust(Trust::CaFile(self.ca.clone()))
    }

    /// Sends a frame to a connected client, as the relay would.
    pub fn send_to(&self, id: &str, frame: ServerFrame) {
        self.hub.lock().unwrap().send(id, frame);
    }

    /// Closes a client's connection with an application code.
    pub fn close_client(&self, id: &str, code: u32, reason: &str) {
        if let Some(peer) = self.hub.lock().unwrap().clients.get(id) {
            peer.conn.close(VarInt::from_u32(code), reason.as_bytes());
        }
    }

    /// The relay's side of a client's connection.
    pub fn conn_of(&self, id: &str) -> Option<Connection> {
        self.hub
            .lock()
            .unwrap()
            .clients
            .get(id)
            .map(|p| p.conn.clone())
    }

    pub fn paired(&self, id: &str) -> Option<String> {
        self.hub.lock().unwrap().peer_of(id)
    }
}

async fn serve(hub: Arc<Mutex<Hub>>, conn: Connection) {
    let Ok((send, recv)) = conn.accept_bi().await else {
        return;
    };
    let mut reader = FrameReader::new(recv, 16 << 20);
    let mut writer = FrameWriter::new(send);
    let Ok(Some(body)) = reader.next().await else {
        return;
    };
    let Ok(ClientFrame::Hello {
        version, client_id, ..
    }) = frame::decode::<ClientFrame>(&body)
    else {
        conn.close(VarInt::from_u32(codes::PROTOCOL_VIOLATION), b"no hello");
        return;
    };
    if version != 1 {
        let _ = writer
            .send(&ServerFrame::Refused {
                code: codes::VERSION_MISMATCH,
                message: format!("version {version} is not supported"),
            })
            .await;
        conn.close(VarInt::from_u32(codes::VERSION_MISMATCH), b"version");
        return;
    }
    if client_id.starts_with("refuse") {
        let _ = writer
            .send(&ServerFrame::Refused {
                code: codes::REFUSED,
                message: format!("clientId '{client_id}' is already connected"),
            })
            .await;
        // Let the frame reach the client before closing.
        let _ = writer.get_mut().finish();
        let _ = writer.get_mut().stopped().await;
        conn.close(VarInt::from_u32(codes::REFUSED), b"refused");
        return;
    }
    if client_id.starts_with("silent") {
        // Never answers the hello.
        let _ = conn.closed().await;
        return;
    }
    writer
        .send(&ServerFrame::Welcome {
            version: 1,
            client_id: client_id.clone(),
        })
        .await
        .unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel::<ServerFrame>();
    hub.lock().unwrap().clients.insert(
        client_id.clone(),
        Peer {
            tx,
            conn: conn.clone(),
            peer: None,
        },
    );
    let writing = tokio::spawn(async move {
        while let Some(frame) = rx.recv().await {
            if writer.send(&frame).await.is_err() {
                break;
            }
        }
    });
    let data = tokio::spawn(accept_data_streams(
        hub.clone(),
        conn.clone(),
        client_id.clone(),
    ));
    while let Ok(Some(body)) = reader.next().await {
        match frame::decode::<ClientFrame>(&body) {
            Ok(frame) => handle(&hub, &client_id, frame),
            Err(e) => hub.lock().unwrap().send(
                &client_id,
                ServerFrame::ServerError {
                    message: format!("bad frame: {e}"),
                },
            ),
        }
    }
    writing.abort();
    data.abort();
    let mut hub = hub.lock().unwrap();
    if let Some(gone) = hub.clients.remove(&client_id) {
        if let Some(peer) = gone.peer {
            hub.set_peer(&peer, None);
            hub.send(&peer, ServerFrame::PeerDisconnected);
        }
    }
}

fn handle(hub: &Mutex<Hub>, me: &str, frame: ClientFrame) {
    let mut hub = hub.lock().unwrap();
    match frame {
        ClientFrame::Hello { .. } => {}
        ClientFrame::Register { req, target } => {
            if !hub.clients.contains_key(&target) {
                hub.reply(
                    me,
                    req,
                    WireReply::Failed(format!("target client '{target}' is not connected")),
                );
                return;
            }
            let ticket = hub.next();
            hub.tickets.insert(
                ticket,
                Ticket::Register {
                    from: me.into(),
                    req,
                },
            );
            hub.send(
                &target,
                ServerFrame::RegisterRequest {
                    ticket,
                    from: me.into(),
                },
            );
        }
        ClientFrame::Unregister { req } => {
            let Some(peer) = hub.peer_of(me) else {
                hub.reply(
                    me,
                    req,
                    WireReply::Failed("cannot unregister: not paired".into()),
                );
                return;
            };
            hub.set_peer(me, None);
            hub.set_peer(&peer, None);
            for id in [me.to_string(), peer.clone()] {
                let ticket = hub.next();
                hub.tickets.insert(ticket, Ticket::Unregistered);
                hub.send(&id, ServerFrame::Unregistered { ticket });
            }
            let ids: Vec<u64> = hub
                .streams
                .iter()
                .filter(|(_, (a, b))| a == me || b == me)
                .map(|(id, _)| *id)
                .collect();
            for id in ids {
                hub.streams.remove(&id);
            }
            hub.reply(me, req, WireReply::Unregistered);
        }
        ClientFrame::Emit {
            target,
            event,
            args,
            ack,
        } => {
            if hub.peer_of(me).as_deref() != Some(target.as_str()) {
                let message = format!("not paired with '{target}'");
                match ack {
                    Some(req) => hub.reply(me, req, WireReply::Failed(message)),
                    None => hub.send(me, ServerFrame::ServerError { message }),
                }
                return;
            }
            let ticket = ack.map(|req| {
                let ticket = hub.next();
                hub.tickets.insert(
                    ticket,
                    Ticket::Ack {
                        from: me.into(),
                        req,
                    },
                );
                ticket
            });
            hub.send(
                &target,
                ServerFrame::Deliver {
                    event,
                    args,
                    ticket,
                },
            );
        }
        ClientFrame::List { req } => {
            let mut ids: Vec<String> = hub.clients.keys().cloned().collect();
            ids.sort();
            hub.reply(me, req, WireReply::Clients(ids));
        }
        ClientFrame::OpenStream { req, target } => {
            if hub.peer_of(me).as_deref() != Some(target.as_str()) {
                hub.reply(
                    me,
                    req,
                    WireReply::Failed("cannot open a stream: not paired".into()),
                );
                return;
            }
            let ticket = hub.next();
            hub.tickets.insert(
                ticket,
                Ticket::Stream {
                    from: me.into(),
                    req,
                },
            );
            hub.send(
                &target,
                ServerFrame::StreamRequest {
                    ticket,
                    from: me.into(),
                },
            );
        }
        ClientFrame::Answer { ticket, answer } => match (hub.tickets.remove(&ticket), answer) {
            (Some(Ticket::Register { from, req }), WireAnswer::Accept(yes)) => {
                if yes {
                    hub.set_peer(&from, Some(me.into()));
                    hub.set_peer(me, Some(from.clone()));
                }
                hub.reply(&from, req, WireReply::Registered(yes));
            }
            (Some(Ticket::Stream { from, req }), WireAnswer::Accept(yes)) => {
                if yes {
                    let id = hub.next() + 1000;
                    hub.streams.insert(id, (from.clone(), me.into()));
                    hub.send(
                        me,
                        ServerFrame::StreamAccepted {
                            stream: id,
                            from: from.clone(),
                        },
                    );
                    hub.reply(&from, req, WireReply::StreamOpened(id));
                } else {
                    hub.reply(&from, req, WireReply::StreamRefused);
                }
            }
            (Some(Ticket::Ack { from, req }), WireAnswer::Ack(args)) => {
                hub.reply(&from, req, WireReply::Ack(args));
            }
            (Some(Ticket::Unregistered), WireAnswer::Done) => {}
            _ => hub.send(
                me,
                ServerFrame::ServerError {
                    message: format!("unexpected answer to ticket {ticket}"),
                },
            ),
        },
    }
}

async fn accept_data_streams(hub: Arc<Mutex<Hub>>, conn: Connection, me: String) {
    while let Ok((send, mut recv)) = conn.accept_bi().await {
        let hub = hub.clone();
        let me = me.clone();
        tokio::spawn(async move {
            let mut header = [0u8; 13];
            if recv.read_exact(&mut header).await.is_err() {
                return;
            }
            let Ok(header) = StreamHeader::decode(&header) else {
                return;
            };
            let acceptor = {
                let hub = hub.lock().unwrap();
                match hub.streams.get(&header.stream) {
                    Some((opener, acceptor)) if *opener == me => {
                        hub.clients.get(acceptor).map(|p| p.conn.clone())
                    }
                    _ => None,
                }
            };
            let Some(acceptor) = acceptor else {
                let mut send = send;
                let _ = send.reset(VarInt::from_u32(codes::STREAM_NOT_GRANTED));
                return;
            };
            let Ok((mut to_send, to_recv)) = acceptor.open_bi().await else {
                return;
            };
            if to_send.write_all(&header.encode()).await.is_err() {
                return;
            }
            tokio::join!(splice(recv, to_send), splice(to_recv, send));
        });
    }
}

/// Copies one direction, passing FIN and resets on.
async fn splice(mut from: RecvStream, mut to: SendStream) {
    loop {
        match from.read_chunk(64 * 1024, true).await {
            Ok(Some(chunk)) => {
                if let Err(e) = to.write_chunk(chunk.bytes).await {
                    let code = match e {
                        quinn::WriteError::Stopped(_) => codes::STREAM_PEER_RESET,
                        _ => codes::STREAM_PEER_GONE,
                    };
                    let _ = from.stop(VarInt::from_u32(code));
                    return;
                }
            }
            Ok(None) => {
                let _ = to.finish();
                let _ = to.stopped().await;
                return;
            }
            Err(quinn::ReadError::Reset(_)) => {
                let _ = to.reset(VarInt::from_u32(codes::STREAM_PEER_RESET));
                return;
            }
            Err(_) => {
                let _ = to.reset(VarInt::from_u32(codes::STREAM_PEER_GONE));
                return;
            }
        }
    }
}

/// The real relay binary, started with ports picked by the system and its own data
/// directory, when `NATIVE_CLIENT_TEST_RELAY` names it (e.g. `target/debug/p2p-relay`).
pub struct RealRelay {
    pub addr: SocketAddr,
    pub ca: PathBuf,
    _child: tokio::process::Child,
    _dir: tempfile::TempDir,
}

impl RealRelay {
    /// The binary named by `NATIVE_CLIENT_TEST_RELAY`, if any.
    pub fn bin() -> Option<String> {
        std::env::var("NATIVE_CLIENT_TEST_RELAY")
            .ok()
            .filter(|bin| !bin.is_empty())
    }

    pub async fn start(bin: &str) -> RealRelay {
        Self::start_with(bin, &[]).await
    }

    pub async fn start_with(bin: &str, extra: &[&str]) -> RealRelay {
        use tokio::io::AsyncBufReadExt;
        let dir = tempfile::tempdir().unwrap();
        let mut child = tokio::process::Command::new(bin)
            .args([
                "--socketio-listen",
                "127.0.0.1:0",
                "--quic-listen",
                "127.0.0.1:0",
            ])
            .args(extra)
            .arg("--data-dir")
            .arg(dir.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
        let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let addr = loop {
            let line = tokio::time::timeout(std::time::Duration::from_secs(30), lines.next_line())
                .await
                .expect("the relay did not print its QUIC address in time")
                .unwrap()
                .expect("the relay exited before listening");
            if let Some(addr) = line.strip_prefix("QUIC listening on ") {
                break addr.trim().parse().unwrap();
            }
        };
        RealRelay {
            addr,
            ca: dir.path().join("ca.pem"),
            _child: child,
            _dir: dir,
        }
    }
}

/// The relay that the tests not tied to the stand-in run against: the real one when
/// `NATIVE_CLIENT_TEST_RELAY` names its binary, else the stand-in.
pub enum AnyRelay {
    Mock(MockRelay),
    Real(RealRelay),
}

impl AnyRelay {
    pub async fn start() -> AnyRelay {
        match RealRelay::bin() {
            Some(bin) => AnyRelay::Real(RealRelay::start(&bin).await),
            None => AnyRelay::Mock(MockRelay::start().await),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        match self {
            AnyRelay::Mock(relay) => relay.addr,
            AnyRelay::Real(relay) => relay.addr,
        }
    }

    pub fn ca(&self) -> &PathBuf {
        match self {
            AnyRelay::Mock(relay) => &relay.ca,
            AnyRelay::Real(relay) => &relay.ca,
        }
    }

    pub fn ca_fingerprint(&self) -> String {
        let dir = self.ca().parent().unwrap();
        certs::DevCerts::load_or_create(dir)
            .unwrap()
            .ca_fingerprint()
    }

    pub fn options(&self, id: &str) -> ConnectOptions {
        ConnectOptions::new(id)
            .addr(self.addr())
            .trust(Trust::CaFile(self.ca().clone()))
    }
}

/// Payload helper for tests that poke frames directly.
pub fn raw_args(bytes: &'static [u8]) -> Bytes {
    Bytes::from_static(bytes)
}

impl RealRelay {
    pub fn options(&self, id: &str) -> ConnectOptions {
        ConnectOptions::new(id)
            .addr(self.addr)
            .trust(Trust::CaFile(self.ca.clone()))
    }
}
