//! Cross-transport pairs: a native QUIC client and a Socket.IO client (the legacy 1.4.1-style
//! plugin on socket.io-client 2.x, and js-client on 4.x) pair, emit, ack and stream to each
//! other through one relay started in this process (docs/PROTOCOL.md Part 3).
//!
//! The Socket.IO side is `tests/interop/cross/peer.js`, a child process that plays a fixed
//! scenario with the native client below, coordinating through the relay itself (events
//! between the two peers), and prints each of its checks as a JSON line:
//!
//! 1. pairing #1, initiated by one side (`First`), accepted by the other;
//! 2. emits and acks both ways: many arguments, binary nested in maps and arrays, integers,
//!    floats, strings, null, booleans, checked for exact values and types on both sides;
//! 3. stream S1, opened by the native client: `size` bytes of deterministic pseudo-random
//!    data each way (SHA-256 checked by each receiver); the Socket.IO acceptor starts
//!    writing as soon as it accepted and reads slowly (4 KiB highWaterMark, delayed reads);
//! 4. unregister by the side that did not initiate pairing #1: the other side learns of it
//!    (P2P_UNREGISTER / Unregistered), the Socket.IO duplex is destroyed, the native bridged
//!    stream is reset (STREAM_CLOSED, with a StreamClosed event);
//! 5. pairing #2, initiated by that side (so every run pairs in both directions);
//! 6. stream S2, opened by the Socket.IO side: `size` bytes each way, the native side
//!    reading with pauses;
//! 7. disconnect by the side that initiated pairing #1: P2P_DISCONNECT / PeerDisconnected,
//!    and the native bridged stream reset with STREAM_PEER_GONE.
//!
//! Needs Node.js 20+; `tests/interop/node_modules` is installed with `npm ci` when missing.
//! Each run reports every failed check of both sides, and the node peer's output, at once.
//! Run alone: `cargo test --release --test e2e cross_transport::`.

use crate::cross;

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cross::{
    ack_args, rich, same_args, sha256_hex, stream_data, NodePeer, Relay, MARKER,
    SEED_S1_NATIVE_TO_NODE, SEED_S1_NODE_TO_NATIVE, SEED_S2_NATIVE_TO_NODE, SEED_S2_NODE_TO_NATIVE,
};
use native_client::rmpv::Value;
use native_client::wire::ResetCode;
use native_client::{
    Args, Client, ClientEvent, Incoming, P2pReadHalf, P2pWriteHalf, Request, StreamError,
};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

const MIB: usize = 1024 * 1024;
/// One step of the scenario: an event, an ack, a pairing.
const STEP: Duration = Duration::from_secs(20);
/// A stream making no progress at all.
const STALL: Duration = Duration::from_secs(20);
/// The node peer's exit once the scenario is over.
const NODE_EXIT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum First {
    Native,
    Node,
}

#[derive(Debug, Clone, Copy)]
struct Combo {
    /// `legacy` (socket.io-client 2.x, 1.4.1-style plugin) or `js` (4.x, js-client).
    kind: &'static str,
    transport: &'static str,
    first: First,
    /// Bytes per stream and direction.
    size: usize,
}

impl Combo {
    fn label(&self) -> String {
        format!(
            "{} over {}, {} pairs first, {} bytes per stream direction",
            self.kind,
            self.transport,
            match self.first {
                First::Native => "native",
                First::Node => "node",
            },
            self.size
        )
    }
}

// 8 MiB per stream and direction in every combination, long-polling included: the whole
// file took about 42 s in release on 2 cores (js over polling is the slowest, ~26 s, since
// every chunk toward a Socket.IO client waits for its ack, one in flight). If that grows,
// lower `size` of the polling combinations first; keep 8 MiB over websocket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_websocket_native_pairs_first() {
    run(Combo {
        kind: "legacy",
        transport: "websocket",
        first: First::Native,
        size: 8 * MIB,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_websocket_node_pairs_first() {
    run(Combo {
        kind: "legacy",
        transport: "websocket",
        first: First::Node,
        size: 8 * MIB,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_websocket_native_pairs_first() {
    run(Combo {
        kind: "js",
        transport: "websocket",
        first: First::Native,
        size: 8 * MIB,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_websocket_node_pairs_first() {
    run(Combo {
        kind: "js",
        transport: "websocket",
        first: First::Node,
        size: 8 * MIB,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_polling_node_pairs_first() {
    run(Combo {
        kind: "legacy",
        transport: "polling",
        first: First::Node,
        size: 8 * MIB,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_polling_native_pairs_first() {
    run(Combo {
        kind: "js",
        transport: "polling",
        first: First::Native,
        size: 8 * MIB,
    })
    .await;
}

// ------------------------------------------------------------------------------ checks

/// The native side's checks, reported together at the end.
#[derive(Default)]
struct Checks(Vec<(String, bool, String)>);

impl Checks {
    fn record(&mut self, name: &str, ok: bool, detail: impl Into<String>) {
        self.0.push((name.to_owned(), ok, detail.into()));
    }

    fn result(&mut self, name: &str, result: Result<String, String>) -> bool {
        let ok = result.is_ok();
        self.record(name, ok, result.unwrap_or_else(|e| e));
        ok
    }
}

/// The node peer's checks every run must report (and pass), by who paired first.
fn required_node_checks(first: First) -> Vec<&'static str> {
    let mut names = vec![
        "emit.q2n.plain",
        "emit.q2n.ack.args",
        "emit.n2q.ack.answer",
        "s1.accepted",
        "s1.native_to_node.sha256",
        "s1.slow_reader.bounded",
        "s1.node_to_native.written",
        "s2.opened",
        "s2.native_to_node.sha256",
        "s2.node_to_native.written",
        "no_server_errors",
    ];
    names.extend(match first {
        First::Native => [
            "pair1.accepted",
            "unregister.by_node",
            "pair2.register",
            "disconnect.from_native",
        ],
        First::Node => [
            "pair1.register",
            "unregister.from_native",
            "pair2.accepted",
            "disconnect.by_node",
        ],
    });
    names
}

async fn run(combo: Combo) {
    let started = Instant::now();
    let relay = Relay::start().await;
    let suffix = format!("{:x}", std::process::id());
    let native_id = format!("Q-{}-{suffix}", combo.kind);
    let node_id = format!("N-{}-{suffix}", combo.kind);

    // The native client connects first, so that the node peer can pair with it at once.
    let mut native = Native::connect(&relay, &native_id).await;
    let mut node = NodePeer::spawn(
        &combo.label(),
        &[
            ("url", relay.socketio_url()),
            ("id", node_id.clone()),
            ("kind", combo.kind.to_owned()),
            ("transport", combo.transport.to_owned()),
            ("native", native_id.clone()),
            ("size", combo.size.to_string()),
            (
                "first",
                match combo.first {
                    First::Native => "native",
                    First::Node => "node",
                }
                .to_owned(),
            ),
        ],
    );

    let mut checks = Checks::default();
    let outcome = scenario(&mut native, &mut node, &node_id, combo, &mut checks).await;
    if outcome.is_err() {
        // The node peer may be waiting for a step that will not come: give it a moment to
        // report its own view, then stop it.
        let _ = tokio::time::timeout(Duration::from_secs(3), node.wait_exit(NODE_EXIT)).await;
        node.kill();
    }
    let exit = node.wait_exit(NODE_EXIT).await;
    native.final_checks(&mut checks);
    let elapsed = started.elapsed();

    // Everything that went wrong, in one message.
    let mut failures = String::new();
    if let Err(e) = &outcome {
        let _ = writeln!(failures, "native scenario stopped: {e}");
    }
    for (name, ok, detail) in &checks.0 {
        if !ok {
            let _ = writeln!(failures, "native check {name} failed: {detail}");
        }
    }
    match &exit {
        Ok(0) => {}
        Ok(code) => {
            let _ = writeln!(failures, "the node peer exited with {code}");
        }
        Err(e) => {
            let _ = writeln!(failures, "{e}");
        }
    }
    let node_checks = node.checks();
    for check in node_checks.iter().filter(|c| !c.ok) {
        let _ = writeln!(
            failures,
            "node check {} failed: {}",
            check.name, check.detail
        );
    }
    for name in required_node_checks(combo.first) {
        if !node_checks.iter().any(|c| c.name == name) {
            let _ = writeln!(failures, "node check {name} was never reported");
        }
    }
    eprintln!(
        "[{}] {} native checks, {} node checks, {:.1} s",
        combo.label(),
        checks.0.len(),
        node_checks.len(),
        elapsed.as_secs_f64()
    );
    relay.stop().await;
    assert!(
        failures.is_empty(),
        "cross-transport run [{}] failed:\n{failures}\n{}",
        combo.label(),
        node.transcript()
    );
}

// ---------------------------------------------------------------------------- scenario

async fn scenario(
    native: &mut Native,
    node: &mut NodePeer,
    node_id: &str,
    combo: Combo,
    checks: &mut Checks,
) -> Result<(), String> {
    let size = combo.size;
    node.wait_ready(STEP).await?;

    // 1. pairing #1
    pair(
        native,
        node_id,
        combo.first == First::Native,
        "pair1",
        checks,
    )
    .await?;

    // 2. emits and acks both ways
    native
        .client
        .emit("q2n.plain", Args(rich("q2n.plain")))
        .await
        .map_err(|e| format!("emit q2n.plain: {e}"))?;
    let answer = within(
        STEP,
        "the node peer's ack of q2n.ack",
        native
            .client
            .emit_with_ack("q2n.ack", Args(rich("q2n.ack"))),
    )
    .await?
    .map_err(|e| format!("emit_with_ack q2n.ack: {e}"))?;
    checks.result(
        "emit.q2n.ack.answer",
        same_args(&answer.0, &ack_args("ack-from-node")).map(|_| String::new()),
    );
    let (args, ack) = native.next_event("n2q.plain").await?;
    checks.result(
        "emit.n2q.plain",
        same_args(&args.0, &rich("n2q.plain")).and_then(|_| match ack {
            None => Ok(String::new()),
            Some(_) => Err("a plain emit arrived asking for an ack".into()),
        }),
    );
    let (args, ack) = native.next_event("n2q.ack").await?;
    checks.result(
        "emit.n2q.ack.args",
        same_args(&args.0, &rich("n2q.ack")).map(|_| String::new()),
    );
    let ack = ack.ok_or("n2q.ack arrived without an ack to answer")?;
    ack.send(Args(ack_args("ack-from-native")))
        .map_err(|e| format!("ack of n2q.ack: {e}"))?;

    // 3. stream S1, opened by the native client; the Socket.IO acceptor reads slowly
    let s1 = within(STEP, "open_stream (S1)", native.client.open_stream(node_id))
        .await?
        .map_err(|e| format!("open_stream (S1): {e}"))?
        .ok_or("the node peer refused stream S1")?;
    let s1_id = s1.id();
    let (mut s1_read, s1_write) = s1.split();
    let t = Instant::now();
    let writing = tokio::spawn(write_all(
        s1_write,
        stream_data(SEED_S1_NATIVE_TO_NODE, size),
    ));
    let expected_bulk = stream_data(SEED_S1_NODE_TO_NATIVE, size);
    let mut reader = HashedReader::default();
    // The acceptor's first write (MARKER, sent the moment after it acked the stream, as
    // `source.pipe(duplex)` does) comes first, then its bulk data (sent once this side's
    // bytes reached it). Whether a relay that mishandles that first write is caught depends
    // on timing, so this check can pass by luck, never fail by luck. Read the bulk's length
    // first: if the first write went astray (delivered as an event instead), that is all the
    // stream carries, and the bulk is still checked.
    let mut read = reader.read(&mut s1_read, size, None).await;
    let misrouted = native.misrouted.lock().unwrap().clone();
    if read.is_ok() && misrouted.is_empty() {
        read = reader.read(&mut s1_read, MARKER.len(), None).await;
    }
    checks.result(
        "s1.acceptor_first_bytes_on_stream",
        if !misrouted.is_empty() {
            Err(format!(
                "the Socket.IO acceptor's first write ({} bytes, right after accepting) reached \
                 the native opener as a plain 'P2P_EMIT_STREAM' event (chunk sizes \
                 {misrouted:?}) instead of on stream S1",
                MARKER.len()
            ))
        } else if reader.head.starts_with(MARKER) {
            Ok(String::new())
        } else {
            Err(format!(
                "stream S1 starts with {:?}, expected the acceptor's first write {:?}",
                String::from_utf8_lossy(&reader.head[..reader.head.len().min(MARKER.len())]),
                String::from_utf8_lossy(MARKER)
            ))
        },
    );
    // Whatever happened to the first write, the bulk must arrive whole on the stream.
    let expected_sha = if misrouted.is_empty() {
        sha256_hex(&[MARKER, &expected_bulk])
    } else {
        sha256_hex(&[&expected_bulk])
    };
    let wanted = if misrouted.is_empty() {
        MARKER.len() + size
    } else {
        size
    };
    checks.result(
        "s1.node_to_native.sha256",
        read.and_then(|()| {
            let sha = reader.hex();
            if reader.got == wanted && sha == expected_sha {
                Ok(format!("{} bytes, sha256 {sha}", reader.got))
            } else {
                Err(format!(
                    "{} bytes with sha256 {sha}, expected {wanted} bytes with sha256 \
                     {expected_sha}",
                    reader.got
                ))
            }
        }),
    );
    let read_secs = t.elapsed().as_secs_f64();
    let written = joined(writing).await;
    let write_secs = t.elapsed().as_secs_f64();
    checks.result(
        "s1.native_to_node.written",
        written
            .as_ref()
            .map(|(n, _)| format!("{n} bytes"))
            .map_err(|e| e.clone()),
    );
    // Kept open to the end: dropping a write half resets the stream.
    let _s1_write = written.ok().map(|(_, w)| w);
    eprintln!("S1 ({size} bytes each way): read in {read_secs:.2} s, written in {write_secs:.2} s");
    native.done("s1.done").await?;

    // 4. unregister by the side that did not initiate pairing #1
    match combo.first {
        First::Native => {
            native
                .expect(
                    "Unregistered (the node peer unregistered)",
                    STEP,
                    |ev| match ev {
                        ClientEvent::Unregistered => Ok(()),
                        other => Err(other),
                    },
                )
                .await?;
            checks.record(
                "unregister.from_node",
                native.client.target().is_none(),
                format!("target after Unregistered: {:?}", native.client.target()),
            );
        }
        First::Node => {
            within(STEP, "unregister", native.client.unregister())
                .await?
                .map_err(|e| format!("unregister: {e}"))?;
            checks.record(
                "unregister.by_native",
                native.client.target().is_none(),
                format!("target after unregister: {:?}", native.client.target()),
            );
        }
    }
    checks.result(
        "unregister.s1_reset",
        expect_reset(&mut s1_read, ResetCode::Closed).await,
    );
    let closed = native
        .expect(
            "StreamClosed for S1",
            Duration::from_secs(5),
            |ev| match ev {
                ClientEvent::StreamClosed(id) if id == s1_id => Ok(()),
                other => Err(other),
            },
        )
        .await;
    checks.result(
        "unregister.s1_stream_closed_event",
        closed.map(|()| String::new()),
    );

    // 5. pairing #2, initiated by the other side
    pair(native, node_id, combo.first == First::Node, "pair2", checks).await?;

    // 6. stream S2, opened by the node peer; the native side reads with pauses
    let request = native
        .expect(
            "StreamRequest from the node peer (S2)",
            STEP,
            |ev| match ev {
                ClientEvent::StreamRequest(request) => Ok(request),
                other => Err(other),
            },
        )
        .await?;
    checks.record(
        "s2.request",
        request.from() == node_id,
        format!("from {}", request.from()),
    );
    request.accept();
    let s2 = native
        .expect("the S2 stream", STEP, |ev| match ev {
            ClientEvent::Stream(stream) => Ok(stream),
            other => Err(other),
        })
        .await?;
    checks.record(
        "s2.stream",
        s2.peer() == node_id,
        format!("stream {} from {}", s2.id(), s2.peer()),
    );
    let (mut s2_read, s2_write) = s2.split();
    let t = Instant::now();
    let writing = tokio::spawn(write_all(
        s2_write,
        stream_data(SEED_S2_NATIVE_TO_NODE, size),
    ));
    let mut reader = HashedReader::default();
    let slow = Slow {
        pause_at: (size / 4).min(256 * 1024),
        pause: Duration::from_millis(300),
        until: (size / 2).min(2 * MIB),
    };
    let read = reader.read(&mut s2_read, size, Some(slow)).await;
    let expected_sha = sha256_hex(&[&stream_data(SEED_S2_NODE_TO_NATIVE, size)]);
    checks.result(
        "s2.node_to_native.sha256",
        read.and_then(|()| {
            let sha = reader.hex();
            if reader.got == size && sha == expected_sha {
                Ok(format!("{} bytes, sha256 {sha}", reader.got))
            } else {
                Err(format!(
                    "{} bytes with sha256 {sha}, expected {size} bytes with sha256 {expected_sha}",
                    reader.got
                ))
            }
        }),
    );
    let read_secs = t.elapsed().as_secs_f64();
    let written = joined(writing).await;
    let write_secs = t.elapsed().as_secs_f64();
    checks.result(
        "s2.native_to_node.written",
        written
            .as_ref()
            .map(|(n, _)| format!("{n} bytes"))
            .map_err(|e| e.clone()),
    );
    let _s2_write = written.ok().map(|(_, w)| w);
    eprintln!("S2 ({size} bytes each way): read in {read_secs:.2} s, written in {write_secs:.2} s");
    native.done("s2.done").await?;

    // 7. disconnect by the side that initiated pairing #1
    match combo.first {
        First::Native => {
            within(STEP, "close", native.client.close()).await?;
        }
        First::Node => {
            native
                .expect(
                    "PeerDisconnected (the node peer disconnected)",
                    STEP,
                    |ev| match ev {
                        ClientEvent::PeerDisconnected => Ok(()),
                        other => Err(other),
                    },
                )
                .await?;
            checks.record(
                "disconnect.from_node",
                native.client.target().is_none(),
                format!(
                    "target after PeerDisconnected: {:?}",
                    native.client.target()
                ),
            );
            checks.result(
                "disconnect.s2_reset",
                expect_reset(&mut s2_read, ResetCode::PeerGone).await,
            );
        }
    }
    Ok(())
}

/// One pairing: `native_asks` registers from the native side, otherwise the node peer asks
/// and the native client accepts.
async fn pair(
    native: &mut Native,
    node_id: &str,
    native_asks: bool,
    name: &str,
    checks: &mut Checks,
) -> Result<(), String> {
    if native_asks {
        let ok = within(STEP, "register", native.client.register(node_id))
            .await?
            .map_err(|e| format!("{name}: register: {e}"))?;
        let target = native.client.target();
        checks.record(
            &format!("{name}.register"),
            ok && target.as_deref() == Some(node_id),
            format!("register -> {ok}, target {target:?}"),
        );
        if !ok {
            return Err(format!("{name}: the node peer refused the pairing"));
        }
    } else {
        let request: Request = native
            .expect("RegisterRequest from the node peer", STEP, |ev| match ev {
                ClientEvent::RegisterRequest(request) => Ok(request),
                other => Err(other),
            })
            .await?;
        checks.record(
            &format!("{name}.request"),
            request.from() == node_id,
            format!("from {}", request.from()),
        );
        request.accept();
    }
    Ok(())
}

// ----------------------------------------------------------------------- native side

/// The native client, with its events read all the time by a task of their own.
struct Native {
    client: Client,
    events: mpsc::UnboundedReceiver<ClientEvent>,
    backlog: VecDeque<ClientEvent>,
    /// Sizes of `P2P_EMIT_STREAM` chunks that arrived as plain events (acked at once, so
    /// that the Socket.IO writer is not left waiting): stream bytes that missed the stream.
    misrouted: Arc<Mutex<Vec<usize>>>,
    server_errors: Arc<Mutex<Vec<String>>>,
}

impl Native {
    async fn connect(relay: &Relay, id: &str) -> Native {
        let (client, incoming) = within(
            STEP,
            "the native client connecting",
            Client::connect(relay.native_options(id)),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("the native client cannot connect: {e}"));
        let (tx, events) = mpsc::unbounded_channel();
        let misrouted = Arc::new(Mutex::new(Vec::new()));
        let server_errors = Arc::new(Mutex::new(Vec::new()));
        tokio::spawn(pump_events(
            incoming,
            tx,
            misrouted.clone(),
            server_errors.clone(),
        ));
        Native {
            client,
            events,
            backlog: VecDeque::new(),
            misrouted,
            server_errors,
        }
    }

    /// The first event `pick` takes (earlier ones it leaves stay queued, in order).
    async fn expect<T>(
        &mut self,
        what: &str,
        within: Duration,
        mut pick: impl FnMut(ClientEvent) -> Result<T, ClientEvent>,
    ) -> Result<T, String> {
        let mut kept = VecDeque::new();
        let mut found = None;
        while let Some(event) = self.backlog.pop_front() {
            if found.is_some() {
                kept.push_back(event);
                continue;
            }
            match pick(event) {
                Ok(t) => found = Some(t),
                Err(event) => kept.push_back(event),
            }
        }
        self.backlog = kept;
        if let Some(t) = found {
            return Ok(t);
        }
        if self.backlog.iter().any(|event| {
            matches!(
                event,
                ClientEvent::PeerDisconnected | ClientEvent::Closed(_)
            )
        }) {
            return Err(format!(
                "the pairing or connection had ended before {what} (events: {:?})",
                self.backlog
            ));
        }
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Err(_) => {
                    return Err(format!(
                        "no {what} within {}s (events meanwhile: {:?})",
                        within.as_secs(),
                        self.backlog
                    ))
                }
                Ok(None) => {
                    return Err(format!(
                        "the native client's events ended while waiting for {what} (events: \
                         {:?})",
                        self.backlog
                    ))
                }
                Ok(Some(event)) => match pick(event) {
                    Ok(t) => return Ok(t),
                    // Nothing else will come from a peer that is gone: say so at once.
                    Err(event @ (ClientEvent::PeerDisconnected | ClientEvent::Closed(_))) => {
                        self.backlog.push_back(event);
                        return Err(format!(
                            "the pairing or connection ended while waiting for {what} (events: \
                             {:?})",
                            self.backlog
                        ));
                    }
                    Err(event) => self.backlog.push_back(event),
                },
            }
        }
    }

    /// The next event `name` from the peer: its arguments and its ack, if it asked for one.
    async fn next_event(
        &mut self,
        name: &str,
    ) -> Result<(Args, Option<native_client::AckResponder>), String> {
        self.expect(&format!("event '{name}'"), STEP, |ev| match ev {
            ClientEvent::Event { event, args, ack } if event == name => Ok((args, ack)),
            other => Err(other),
        })
        .await
    }

    /// Tells the peer this side is done with a phase (an ack says it got the word) and
    /// waits for the peer's word.
    async fn done(&mut self, name: &str) -> Result<(), String> {
        within(
            STEP,
            &format!("the node peer's ack of {name}"),
            self.client.emit_with_ack(name, Args::new()),
        )
        .await?
        .map_err(|e| format!("emit {name}: {e}"))?;
        self.next_event(name).await.map(|_| ())
    }

    fn final_checks(&mut self, checks: &mut Checks) {
        let errors = self.server_errors.lock().unwrap().clone();
        checks.record("no_server_errors", errors.is_empty(), format!("{errors:?}"));
        let misrouted = self.misrouted.lock().unwrap().clone();
        checks.record(
            "no_stream_chunks_as_events",
            misrouted.is_empty(),
            format!("P2P_EMIT_STREAM chunks delivered as plain events: sizes {misrouted:?}"),
        );
    }
}

async fn pump_events(
    mut incoming: Incoming,
    tx: mpsc::UnboundedSender<ClientEvent>,
    misrouted: Arc<Mutex<Vec<usize>>>,
    server_errors: Arc<Mutex<Vec<String>>>,
) {
    while let Some(event) = incoming.next().await {
        match event {
            ClientEvent::Event { event, args, ack } if event == "P2P_EMIT_STREAM" => {
                let len = match args.get(0) {
                    Some(Value::Binary(bytes)) => bytes.len(),
                    _ => 0,
                };
                misrouted.lock().unwrap().push(len);
                if let Some(ack) = ack {
                    let _ = ack.send(Args::new());
                }
            }
            ClientEvent::ServerError { message, .. } => server_errors.lock().unwrap().push(message),
            other => {
                if tx.send(other).is_err() {
                    return;
                }
            }
        }
    }
}

// --------------------------------------------------------------------------- streams

/// Reads with pauses: once `pause` after `pause_at` bytes, then small reads with a 1 ms
/// sleep every 4 reads while below `until` bytes.
#[derive(Clone, Copy)]
struct Slow {
    pause_at: usize,
    pause: Duration,
    until: usize,
}

/// Reads exact byte counts, hashing everything and keeping the first bytes.
#[derive(Default)]
struct HashedReader {
    hash: Sha256,
    got: usize,
    head: Vec<u8>,
    reads: usize,
    paused: bool,
}

impl HashedReader {
    async fn read(
        &mut self,
        stream: &mut P2pReadHalf,
        count: usize,
        slow: Option<Slow>,
    ) -> Result<(), String> {
        let mut buf = vec![0u8; 64 * 1024];
        let mut left = count;
        while left > 0 {
            let mut max = left.min(buf.len());
            if let Some(slow) = slow {
                if self.got < slow.until {
                    max = max.min(4096);
                }
            }
            let n = match tokio::time::timeout(STALL, stream.read(&mut buf[..max])).await {
                Err(_) => {
                    return Err(format!(
                        "no stream data for {}s after {} bytes",
                        STALL.as_secs(),
                        self.got
                    ))
                }
                Ok(Err(e)) => return Err(format!("read failed after {} bytes: {e}", self.got)),
                Ok(Ok(0)) => return Err(format!("end of stream after {} bytes", self.got)),
                Ok(Ok(n)) => n,
            };
            self.hash.update(&buf[..n]);
            if self.head.len() < 64 {
                let take = n.min(64 - self.head.len());
                self.head.extend_from_slice(&buf[..take]);
            }
            self.got += n;
            left -= n;
            self.reads += 1;
            if let Some(slow) = slow {
                if !self.paused && self.got >= slow.pause_at {
                    self.paused = true;
                    tokio::time::sleep(slow.pause).await;
                } else if self.got < slow.until && self.reads & 3 == 0 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
        Ok(())
    }

    fn hex(&self) -> String {
        cross::hex(&self.hash.clone().finalize())
    }
}

/// Writes `data` and returns the write half (kept open: dropping it would reset the stream).
async fn write_all(
    mut stream: P2pWriteHalf,
    data: Vec<u8>,
) -> Result<(usize, P2pWriteHalf), String> {
    let mut off = 0;
    for chunk in data.chunks(64 * 1024) {
        match tokio::time::timeout(STALL, stream.write_all(chunk)).await {
            Err(_) => {
                return Err(format!(
                    "the stream took no data for {}s after {off} bytes",
                    STALL.as_secs()
                ))
            }
            Ok(Err(e)) => return Err(format!("write failed after {off} bytes: {e}")),
            Ok(Ok(())) => off += chunk.len(),
        }
    }
    Ok((off, stream))
}

async fn joined<T>(task: tokio::task::JoinHandle<Result<T, String>>) -> Result<T, String> {
    match task.await {
        Ok(result) => result,
        Err(e) => Err(format!("the task failed: {e}")),
    }
}

/// The next read must fail with a reset carrying `code`.
async fn expect_reset(stream: &mut P2pReadHalf, code: ResetCode) -> Result<String, String> {
    let mut buf = [0u8; 4096];
    match tokio::time::timeout(STEP, stream.read(&mut buf)).await {
        Err(_) => Err(format!(
            "the stream was not reset within {}s",
            STEP.as_secs()
        )),
        Ok(Ok(0)) => Err(format!(
            "a clean end of stream instead of a reset with {code:?}"
        )),
        Ok(Ok(n)) => Err(format!("{n} more bytes instead of a reset with {code:?}")),
        Ok(Err(e)) => match StreamError::of(&e).and_then(StreamError::reason) {
            Some(got) if got == code => Ok(e.to_string()),
            got => Err(format!(
                "the read failed with \"{e}\" ({got:?}), expected a reset with {code:?} ({code})"
            )),
        },
    }
}

async fn within<T>(limit: Duration, what: &str, fut: impl Future<Output = T>) -> Result<T, String> {
    tokio::time::timeout(limit, fut)
        .await
        .map_err(|_| format!("{what}: no answer within {}s", limit.as_secs()))
}
