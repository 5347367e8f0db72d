//! A bare socketioxide forwarder: what socketioxide itself costs for the relay's job, with
//! none of the relay's rules. Clients connect with `?clientId=X`; `P2P_EMIT {targetClientId,
//! event, args}` is emitted to that client as `event(...args)`, `P2P_EMIT_ACKNOWLEDGE` the
//! same with an ack whose answer goes back to the sender; `P2P_REGISTER` and
//! `P2P_REGISTER_STREAM` are answered `true` at once (no pairing, no questions to the peer);
//! stream chunks are plain acknowledged emits. Handlers are socketioxide's defaults (a task
//! per event, order not kept); the socket queue is 8192 packets; TCP no-delay is set as the
//! gateway sets it. Same crate versions and features as the gateway.

use std::fmt;
use std::sync::Arc;

use axum::serve::ListenerExt;
use dashmap::DashMap;
use serde::de::{SeqAccess, Visitor};
use serde::ser::SerializeTuple;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use socketioxide::adapter::LocalAdapter;
use socketioxide::extract::{AckSender, Data, SocketRef};
use socketioxide::handler::{FromMessageParts, MessageHandler};
use socketioxide::socket::Socket;
use socketioxide::SocketIo;

/// All arguments of an event, spread again on emit (socketioxide hands extractors only
/// the first argument unless the type is a tuple).
#[derive(Debug, Default)]
struct Spread(Vec<rmpv::Value>);

impl Serialize for Spread {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut tuple = serializer.serialize_tuple(self.0.len())?;
        for value in &self.0 {
            tuple.serialize_element(value)?;
        }
        tuple.end()
    }
}

impl<'de> Deserialize<'de> for Spread {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Spread;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("event arguments")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Spread, A::Error> {
                let mut values = Vec::new();
                while let Some(v) = seq.next_element()? {
                    values.push(v);
                }
                Ok(Spread(values))
            }
        }
        deserializer.deserialize_tuple(usize::MAX, V)
    }
}

#[derive(Deserialize)]
struct Emit {
    #[serde(rename = "targetClientId")]
    target: String,
    event: String,
    #[serde(default)]
    args: Vec<rmpv::Value>,
}

type Peers = Arc<DashMap<String, SocketRef>>;

fn client_id(socket: &SocketRef) -> String {
    socket
        .req_parts()
        .uri
        .query()
        .and_then(|q| {
            q.split('&')
                .find_map(|kv| kv.strip_prefix("clientId=").map(str::to_string))
        })
        .unwrap_or_default()
}

/// `P2P_EMIT` handled inside socketioxide's read loop, with no task: socketioxide spawns a
/// task for every event whose handler is a closure (even an empty one), but
/// `MessageHandler` is a public trait, and a handler of one's own runs where it is called.
struct InlineEmit(Peers);

/// Marks [`InlineEmit`]'s `MessageHandler` impl apart from the closure impls.
struct Inline;

impl MessageHandler<LocalAdapter, Inline> for InlineEmit {
    fn call(
        &self,
        s: Arc<Socket<LocalAdapter>>,
        mut v: socketioxide::handler::Value,
        ack_id: Option<i64>,
    ) {
        if let Ok(Data(emit)) = Data::<Emit>::from_message_parts(&s, &mut v, &ack_id) {
            let target = self.0.get(&emit.target).map(|t| t.clone());
            if let Some(target) = target {
                let _ = target.emit(&emit.event, &Spread(emit.args));
            }
        }
    }
}

/// The forwarder as an axum router (socketioxide layer at `/socket.io/`).
pub fn router() -> axum::Router {
    router_with(false)
}

/// As [`router`]; with `inline`, `P2P_EMIT` runs without a task per event ([`InlineEmit`]).
pub fn router_with(inline: bool) -> axum::Router {
    let peers: Peers = Arc::new(DashMap::new());
    let (layer, io) = SocketIo::builder().max_buffer_size(8192).build_layer();
    io.ns("/", move |socket: SocketRef| {
        let peers = peers.clone();
        async move {
            let id = client_id(&socket);
            peers.insert(id.clone(), socket.clone());
            socket.on("P2P_REGISTER", async |ack: AckSender| {
                let _ = ack.send(&true);
            });
            socket.on("P2P_REGISTER_STREAM", async |ack: AckSender| {
                let _ = ack.send(&true);
            });
            let p = peers.clone();
            if inline {
                socket.on("P2P_EMIT", InlineEmit(p));
            } else {
                socket.on("P2P_EMIT", move |Data(emit): Data<Emit>| {
                    let p = p.clone();
                    async move {
                        let target = p.get(&emit.target).map(|t| t.clone());
                        if let Some(target) = target {
                            let _ = target.emit(&emit.event, &Spread(emit.args));
                        }
                    }
                });
            }
            let p = peers.clone();
            socket.on(
                "P2P_EMIT_ACKNOWLEDGE",
                move |Data(emit): Data<Emit>, ack: AckSender| {
                    let p = p.clone();
                    async move {
                        let target = p.get(&emit.target).map(|t| t.clone());
                        let Some(target) = target else { return };
                        if let Ok(answer) =
                            target.emit_with_ack::<_, Spread>(&emit.event, &Spread(emit.args))
                        {
                            if let Ok(args) = answer.await {
                                let _ = ack.send(&args);
                            }
                        }
                    }
                },
            );
            socket.on_disconnect(move |socket: SocketRef| {
                let peers = peers.clone();
                async move {
                    peers.remove_if(&id, |_, s| s.id == socket.id);
                }
            });
        }
    });
    axum::Router::new().layer(layer)
}

/// Serves the forwarder on `listener`, with TCP no-delay on every accepted socket.
pub async fn serve(listener: tokio::net::TcpListener) -> std::io::Result<()> {
    serve_with(listener, false).await
}

/// As [`serve`], with [`router_with`]`(inline)`.
pub async fn serve_with(listener: tokio::net::TcpListener, inline: bool) -> std::io::Result<()> {
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, router_with(inline)).await
}
