//! Control, emits and acks between nodes: Redis pub/sub, one channel per node.
//!
//! Order: one task publishes everything this node sends, in the order the connections
//! sent it (each connection hands its messages over under its own lock), over one Redis
//! connection, which keeps the order of its commands; one task per node reads its channel
//! and hands the messages in, in order. So messages between two connections arrive in
//! the order they were sent, as locally.
//!
//! Loss: pub/sub delivers to whoever listens now. `PUBLISH` answers how many listened: 0
//! means the receiving node is not listening (gone, or cut from Redis), and the senders of
//! those messages are told at once, as when Redis cannot be reached at all.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use relay_core::{Addr, ClientId, NodeId, RequestError, Transmit};
use relay_runtime::WeakRelayHandle;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, warn};

use super::directory::RedisDirectory;
use super::wire;

/// Messages one publish round takes at most.
const BATCH: usize = 512;
/// Messages queued toward Redis before senders are told the cluster cannot take more.
pub const QUEUE: usize = 1 << 16;

/// What this node hands to Redis, in order.
pub enum Out {
    /// A message for a connection on another node.
    Msg(Transmit),
    /// A connection ended: its directory entry goes, before anything published after it.
    Release(ClientId, Addr),
}

/// Publishes what this node's connections send to other nodes, and applies their releases
/// in the same order.
pub async fn publish(
    dir: RedisDirectory,
    node: NodeId,
    mut queue: mpsc::Receiver<Out>,
    relay: WeakRelayHandle,
    stop: CancellationToken,
) {
    let mut redis = dir.connection();
    let mut batch: Vec<Out> = Vec::with_capacity(BATCH);
    loop {
        let first = tokio::select! {
            _ = stop.cancelled() => return,
            t = queue.recv() => match t { Some(t) => t, None => return },
        };
        batch.push(first);
        while batch.len() < BATCH {
            match queue.try_recv() {
                Ok(t) => batch.push(t),
                Err(_) => break,
            }
        }
        // Group by node, keeping each node's order (and so each pair's); a release ends
        // a group, so that it lands between what was sent before and after it.
        let mut pipe = redis::pipe();
        let mut by_node: Vec<(NodeId, Vec<Transmit>)> = Vec::new();
        let mut group: Vec<(NodeId, Vec<Transmit>)> = Vec::new();
        let mut index: HashMap<NodeId, usize> = HashMap::new();
        // What could not be encoded: its senders are told, as for a node nobody heard.
        let mut unencoded: Vec<Transmit> = Vec::new();
        let flush = |group: &mut Vec<(NodeId, Vec<Transmit>)>,
                     index: &mut HashMap<NodeId, usize>,
                     pipe: &mut redis::Pipeline,
                     by_node: &mut Vec<(NodeId, Vec<Transmit>)>,
                     unencoded: &mut Vec<Transmit>| {
            for (to, items) in group.drain(..) {
                let encoded = wire::encode(&wire::Batch {
                    from_node: node.0,
                    items: items.iter().cloned().map(wire::item).collect(),
                });
                match encoded {
                    Ok(bytes) => {
                        pipe.cmd("PUBLISH").arg(dir.bus_channel(to)).arg(bytes);
                        by_node.push((to, items));
                    }
                    Err(e) => {
                        error!(node = to.0, n = items.len(), "cannot encode a batch: {e}");
                        unencoded.extend(items);
                    }
                }
            }
            index.clear();
        };
        for out in batch.drain(..) {
            match out {
                Out::Msg(t) => {
                    let i = *index.entry(t.to.node).or_insert_with(|| {
                        group.push((t.to.node, Vec::new()));
                        group.len() - 1
                    });
                    group[i].1.push(t);
                }
                Out::Release(client, addr) => {
                    flush(
                        &mut group,
                        &mut index,
                        &mut pipe,
                        &mut by_node,
                        &mut unencoded,
                    );
                    dir.pipe_release(&mut pipe, &client, addr);
                }
            }
        }
        flush(
            &mut group,
            &mut index,
            &mut pipe,
            &mut by_node,
            &mut unencoded,
        );
        let sent: Result<Result<Vec<i64>, _>, _> =
            tokio::time::timeout(Duration::from_secs(2), pipe.query_async(&mut redis)).await;
        let listened = match sent {
            Ok(Ok(counts)) => counts,
            Ok(Err(e)) => {
                debug!("publish failed: {e}");
                vec![0; by_node.len()]
            }
            Err(_) => vec![0; by_node.len()],
        };
        let Some(relay) = relay.upgrade() else { return };
        for t in unencoded {
            relay.undeliverable(t, RequestError::ClusterUnavailable);
        }
        for ((to, items), listened) in by_node.into_iter().zip(listened) {
            if listened == 0 {
                debug!(
                    node = to.0,
                    n = items.len(),
                    "no node listened; senders told"
                );
                for t in items {
                    relay.undeliverable(t, RequestError::ClusterUnavailable);
                }
            }
        }
    }
}

/// Reads this node's channel and hands its messages to the connections here, reconnecting
/// whenever the subscription drops (`subscribed` says whether it holds now).
pub async fn subscribe(
    client: redis::Client,
    dir: RedisDirectory,
    node: NodeId,
    relay: WeakRelayHandle,
    subscribed: Arc<AtomicBool>,
    changed: Arc<tokio::sync::Notify>,
    stop: CancellationToken,
) {
    let channel = dir.bus_channel(node);
    loop {
        let connected = async {
            let mut pubsub =
                tokio::time::timeout(Duration::from_secs(2), client.get_async_pubsub())
                    .await
                    .map_err(|_| "timed out".to_owned())?
                    .map_err(|e| e.to_string())?;
            pubsub
                .subscribe(&channel)
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(pubsub)
        };
        let pubsub = tokio::select! {
            _ = stop.cancelled() => return,
            p = connected => p,
        };
        match pubsub {
            Ok(pubsub) => {
                subscribed.store(true, Ordering::SeqCst);
                changed.notify_one();
                debug!(node = node.0, "listening on the cluster bus");
                let mut messages = pubsub.into_on_message();
                loop {
                    let msg = tokio::select! {
                        _ = stop.cancelled() => return,
                        m = messages.next() => m,
                    };
                    let Some(msg) = msg else { break };
                    let Some(relay) = relay.upgrade() else { return };
                    let payload: &[u8] = msg.get_payload_bytes();
                    match wire::decode(payload) {
                        Ok(batch) => {
                            for item in batch.items {
                                match wire::transmit(item) {
                                    Ok(t) if t.to.node == node => relay.from_link(t),
                                    Ok(t) => warn!(to = %t.to, "cluster message for another node"),
                                    Err(e) => warn!(
                                        from = batch.from_node,
                                        "unreadable cluster message: {e}"
                                    ),
                                }
                            }
                        }
                        Err(e) => warn!("unreadable cluster batch: {e}"),
                    }
                }
                subscribed.store(false, Ordering::SeqCst);
                changed.notify_one();
                warn!(
                    node = node.0,
                    "lost the cluster bus subscription; reconnecting"
                );
            }
            Err(e) => debug!("cannot subscribe to the cluster bus: {e}"),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
}
