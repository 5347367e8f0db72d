//! The cluster's directory in Redis: which node and connection each clientId is on, and
//! which nodes are alive. Every operation that must be atomic is one Lua script, so two
//! nodes can never both own a clientId and the duplicate policy holds cluster-wide.
//!
//! Keys (all under one hash tag, `{prefix}`, so that a Redis Cluster keeps them in one
//! slot and the scripts may touch them together):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `{p}:dir` | hash | clientId -> `node:conn` |
//! | `{p}:ids` | sorted set, all scores 0 | the clientIds, so pages come out in order |
//! | `{p}:owned:<node>` | set | the clientIds a node claimed, to forget them when it is gone |
//! | `{p}:node:<node>` | string with a TTL: the lease | `token|advertise-addr` of the live node |
//! | `{p}:nodes` | set | node ids that joined and have not been found gone yet |

use std::net::SocketAddr;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::Script;
use relay_core::{
    Addr, Claimed, ClientId, ClientPage, ConnId, ConnectError, DuplicatePolicy, NodeId,
};

/// Why a directory operation failed. All of them mean "Redis could not be asked now".
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("this node's lease lapsed; it must rejoin first")]
    NoLease,
    #[error("all 255 node ids are in use")]
    NoNodeId,
    #[error("unexpected answer from redis: {0}")]
    Answer(String),
}

/// A live node as the directory knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// Changes when a node with this id restarted: then the old one is gone.
    pub token: String,
    pub advertise: Option<SocketAddr>,
}

const CLAIM: &str = r#"
-- KEYS: dir, ids.  ARGV: client, addr, policy, max_clients, prefix, node
local function alive(a)
  local n = string.match(a, '^(%d+):')
  return n and redis.call('EXISTS', ARGV[5] .. ':node:' .. n) == 1, n
end
if redis.call('EXISTS', ARGV[5] .. ':node:' .. ARGV[6]) == 0 then return {'nolease', ''} end
local old = redis.call('HGET', KEYS[1], ARGV[1])
local old_node = nil
if old then
  local live, n = alive(old)
  old_node = n
  if not live then old = false end
end
if old and ARGV[3] == 'reject' then return {'duplicate', old} end
if not old then
  local count = redis.call('ZCARD', KEYS[2])
  if count >= tonumber(ARGV[4]) then return {'full', tostring(count)} end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], 0, ARGV[1])
redis.call('SADD', ARGV[5] .. ':owned:' .. ARGV[6], ARGV[1])
if old_node and old_node ~= ARGV[6] then
  redis.call('SREM', ARGV[5] .. ':owned:' .. old_node, ARGV[1])
end
if old then return {'replaced', old} end
return {'fresh', ''}
"#;

const RESTORE: &str = r#"
-- KEYS: dir, ids.  ARGV: client, addr, prefix, node.  Claims again what a node held when
-- the directory lost it, or admitted while Redis was unreachable; 'taken' when a live
-- connection of another node holds the id meanwhile (an older entry of this node is a
-- connection this node replaced: the caller's is the current one).
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur and cur ~= ARGV[2] then
  local n = string.match(cur, '^(%d+):')
  if n and n ~= ARGV[4] and redis.call('EXISTS', ARGV[3] .. ':node:' .. n) == 1 then
    return 'taken'
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], 0, ARGV[1])
redis.call('SADD', ARGV[3] .. ':owned:' .. ARGV[4], ARGV[1])
return 'ok'
"#;

const RELEASE: &str = r#"
-- KEYS: dir, ids, owned.  ARGV: client, addr
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('SREM', KEYS[3], ARGV[1])
end
return 1
"#;

const LOOKUP: &str = r#"
-- KEYS: dir.  ARGV: client, prefix.  Only an entry of a live node counts.
local a = redis.call('HGET', KEYS[1], ARGV[1])
if not a then return false end
local n = string.match(a, '^(%d+):')
if n and redis.call('EXISTS', ARGV[2] .. ':node:' .. n) == 1 then return a end
return false
"#;

/// The Lua every script that forgets a node starts with: `forget_node(n)` drops the
/// directory entries node `n` owned (those it still owns: a newer claim elsewhere stays)
/// and its set of owned ids. Its scripts take KEYS dir, ids and ARGV[1] the key prefix.
macro_rules! forget_node_lua {
    () => {
        r#"
local function forget_node(n)
  local owned = ARGV[1] .. ':owned:' .. n
  for _, c in ipairs(redis.call('SMEMBERS', owned)) do
    local a = redis.call('HGET', KEYS[1], c)
    if a and string.match(a, '^(%d+):') == n then
      redis.call('HDEL', KEYS[1], c)
      redis.call('ZREM', KEYS[2], c)
    end
  end
  redis.call('DEL', owned)
end
"#
    };
}

const PURGE: &str = concat!(
    forget_node_lua!(),
    r#"
-- Forgets every client of a node, and the node.  KEYS: dir, ids, nodes.  ARGV: prefix, node
forget_node(ARGV[2])
redis.call('SREM', KEYS[3], ARGV[2])
return 1
"#
);

const WATCH: &str = concat!(
    forget_node_lua!(),
    r#"
-- The live nodes, as {id, value, ...}; nodes whose lease lapsed are purged on the way.
-- KEYS: dir, ids, nodes.  ARGV: prefix
local live = {}
for _, n in ipairs(redis.call('SMEMBERS', KEYS[3])) do
  local v = redis.call('GET', ARGV[1] .. ':node:' .. n)
  if v then
    table.insert(live, n)
    table.insert(live, v)
  else
    forget_node(n)
    redis.call('SREM', KEYS[3], n)
  end
end
return live
"#
);

const JOIN: &str = concat!(
    forget_node_lua!(),
    r#"
-- Takes the first free node id from ARGV[3] on (1..255) with a lease, forgetting whatever
-- an earlier node of that id left.  KEYS: dir, ids, nodes.  ARGV: prefix, value, start, lease
local start = tonumber(ARGV[3])
for i = 0, 254 do
  local n = tostring(((start + i) % 255) + 1)
  if redis.call('SET', ARGV[1] .. ':node:' .. n, ARGV[2], 'NX', 'PX', ARGV[4]) then
    forget_node(n)
    redis.call('SADD', KEYS[3], n)
    return tonumber(n)
  end
end
return 0
"#
);

const RENEW: &str = r#"
-- 1: renewed; 0: the lease lapsed (free again: taken back); -1: another node holds the id.
-- KEYS: node key, nodes.  ARGV: value, lease, node
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if v then return -1 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
return 0
"#;

/// The Redis side of the cluster's directory, for one node.
#[derive(Clone)]
pub struct RedisDirectory {
    redis: ConnectionManager,
    prefix: String,
    /// How long one Redis call may take before it counts as failed.
    timeout: Duration,
    scripts: std::sync::Arc<Scripts>,
}

struct Scripts {
    claim: Script,
    restore: Script,
    release: Script,
    lookup: Script,
    purge: Script,
    watch: Script,
    join: Script,
    renew: Script,
}

pub fn encode_addr(addr: Addr) -> String {
    format!("{}:{}", addr.node.0, addr.conn.0)
}

pub fn decode_addr(raw: &str) -> Option<Addr> {
    let (node, conn) = raw.split_once(':')?;
    Some(Addr::new(
        NodeId(node.parse().ok()?),
        ConnId(conn.parse().ok()?),
    ))
}

pub fn node_value(token: &str, advertise: Option<SocketAddr>) -> String {
    match advertise {
        Some(a) => format!("{token}|{a}"),
        None => format!("{token}|"),
    }
}

fn parse_node_value(raw: &str) -> NodeInfo {
    let (token, addr) = raw.split_once('|').unwrap_or((raw, ""));
    NodeInfo {
        token: token.to_owned(),
        advertise: addr.parse().ok(),
    }
}

impl RedisDirectory {
    pub fn new(redis: ConnectionManager, prefix: &str, timeout: Duration) -> Self {
        Self {
            redis,
            prefix: format!("{{{prefix}}}"),
            timeout,
            scripts: std::sync::Arc::new(Scripts {
                claim: Script::new(CLAIM),
                restore: Script::new(RESTORE),
                release: Script::new(RELEASE),
                lookup: Script::new(LOOKUP),
                purge: Script::new(PURGE),
                watch: Script::new(WATCH),
                join: Script::new(JOIN),
                renew: Script::new(RENEW),
            }),
        }
    }

    fn key(&self, name: &str) -> String {
        format!("{}:{name}", self.prefix)
    }

    pub fn node_key(&self, node: NodeId) -> String {
        self.key(&format!("node:{}", node.0))
    }

    /// The pub/sub channel a node listens on for messages to its connections.
    pub fn bus_channel(&self, node: NodeId) -> String {
        self.key(&format!("bus:{}", node.0))
    }

    pub fn connection(&self) -> ConnectionManager {
        self.redis.clone()
    }

    async fn timed<T>(
        &self,
        f: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, DirectoryError> {
        match tokio::time::timeout(self.timeout, f).await {
            Ok(r) => Ok(r?),
            Err(_) => Err(DirectoryError::Timeout(self.timeout)),
        }
    }

    /// Takes a free node id, with a lease of `lease`.
    pub async fn join(
        &self,
        value: &str,
        lease: Duration,
        start: u32,
    ) -> Result<NodeId, DirectoryError> {
        let mut redis = self.redis.clone();
        let mut call = self.scripts.join.prepare_invoke();
        call.key(self.key("dir"))
            .key(self.key("ids"))
            .key(self.key("nodes"))
            .arg(&self.prefix)
            .arg(value)
            .arg(start)
            .arg(lease.as_millis() as u64);
        let n: u32 = self.timed(call.invoke_async(&mut redis)).await?;
        match n {
            0 => Err(DirectoryError::NoNodeId),
            n => Ok(NodeId(n)),
        }
    }

    /// Keeps this node's lease alive: `Ok(true)` renewed, `Ok(false)` it had lapsed (and
    /// was taken again: the node must claim its clients again).
    pub async fn renew(
        &self,
        node: NodeId,
        value: &str,
        lease: Duration,
    ) -> Result<bool, DirectoryError> {
        let mut redis = self.redis.clone();
        let mut call = self.scripts.renew.prepare_invoke();
        call.key(self.node_key(node))
            .key(self.key("nodes"))
            .arg(value)
            .arg(lease.as_millis() as u64)
            .arg(node.0);
        let r: i64 = self.timed(call.invoke_async(&mut redis)).await?;
        match r {
            1 => Ok(true),
            0 => Ok(false),
            _ => Err(DirectoryError::NoLease),
        }
    }

    /// The live nodes (purging the ones whose lease lapsed).
    pub async fn watch(&self) -> Result<Vec<(NodeId, NodeInfo)>, DirectoryError> {
        let mut redis = self.redis.clone();
        let mut call = self.scripts.watch.prepare_invoke();
        call.key(self.key("dir"))
            .key(self.key("ids"))
            .key(self.key("nodes"))
            .arg(&self.prefix);
        let raw: Vec<String> = self.timed(call.invoke_async(&mut redis)).await?;
        let mut live = Vec::with_capacity(raw.len() / 2);
        for pair in raw.chunks(2) {
            if let [id, value] = pair {
                if let Ok(id) = id.parse() {
                    live.push((NodeId(id), parse_node_value(value)));
                }
            }
        }
        Ok(live)
    }

    /// A live node's lease value, read directly (the watch has not seen it yet).
    pub async fn node_info(&self, node: NodeId) -> Result<Option<NodeInfo>, DirectoryError> {
        let mut redis = self.redis.clone();
        let raw: Option<String> = self
            .timed(
                redis::cmd("GET")
                    .arg(self.node_key(node))
                    .query_async(&mut redis),
            )
            .await?;
        Ok(raw.as_deref().map(parse_node_value))
    }

    /// Leaves the cluster: the lease ends now and the node's clients are forgotten.
    pub async fn leave(&self, node: NodeId) -> Result<(), DirectoryError> {
        let mut redis = self.redis.clone();
        let _: () = self
            .timed(
                redis::cmd("DEL")
                    .arg(self.node_key(node))
                    .query_async(&mut redis),
            )
            .await?;
        let mut call = self.scripts.purge.prepare_invoke();
        call.key(self.key("dir"))
            .key(self.key("ids"))
            .key(self.key("nodes"))
            .arg(&self.prefix)
            .arg(node.0);
        let _: i64 = self.timed(call.invoke_async(&mut redis)).await?;
        Ok(())
    }

    pub async fn claim(
        &self,
        client: &ClientId,
        addr: Addr,
        policy: DuplicatePolicy,
        max_clients: usize,
    ) -> Result<Claimed, ConnectError> {
        let mut redis = self.redis.clone();
        let mut call = self.scripts.claim.prepare_invoke();
        call.key(self.key("dir"))
            .key(self.key("ids"))
            .arg(client.as_str())
            .arg(encode_addr(addr))
            .arg(match policy {
                DuplicatePolicy::Replace => "replace",
                DuplicatePolicy::Reject => "reject",
            })
            .arg(max_clients.min(i64::MAX as usize) as i64)
            .arg(&self.prefix)
            .arg(addr.node.0);
        let (what, arg): (String, String) = self
            .timed(call.invoke_async(&mut redis))
            .await
            .map_err(|e| ConnectError::ClusterUnavailable(e.to_string()))?;
        match what.as_str() {
            "fresh" => Ok(Claimed::Fresh),
            "replaced" => decode_addr(&arg)
                .map(Claimed::Replaced)
                .ok_or_else(|| ConnectError::ClusterUnavailable(format!("bad entry {arg}"))),
            "duplicate" => Err(ConnectError::Duplicate(client.clone())),
            "full" => Err(ConnectError::TooManyClients(
                arg.parse().unwrap_or(max_clients),
            )),
            "nolease" => Err(ConnectError::ClusterUnavailable(
                "this node is rejoining the cluster".into(),
            )),
            other => Err(ConnectError::ClusterUnavailable(format!(
                "unexpected claim answer {other}"
            ))),
        }
    }

    /// Claims again an id this node holds; `Ok(false)` when another connection took it.
    pub async fn restore(&self, client: &ClientId, addr: Addr) -> Result<bool, DirectoryError> {
        let mut redis = self.redis.clone();
        let mut call = self.scripts.restore.prepare_invoke();
        call.key(self.key("dir"))
            .key(self.key("ids"))
            .arg(client.as_str())
            .arg(encode_addr(addr))
            .arg(&self.prefix)
            .arg(addr.node.0);
        let r: String = self.timed(call.invoke_async(&mut redis)).await?;
        Ok(r == "ok")
    }

    /// The release of `client` at `addr` as one command of a pipeline, so that it takes
    /// effect before whatever this node publishes after it (a peer told "gone" then finds
    /// the id gone from the directory too, as on one node).
    pub fn pipe_release(&self, pipe: &mut redis::Pipeline, client: &ClientId, addr: Addr) {
        pipe.cmd("EVAL")
            .arg(RELEASE)
            .arg(3)
            .arg(self.key("dir"))
            .arg(self.key("ids"))
            .arg(self.key(&format!("owned:{}", addr.node.0)))
            .arg(client.as_str())
            .arg(encode_addr(addr))
            .ignore();
    }

    pub async fn release(&self, client: &ClientId, addr: Addr) -> Result<(), DirectoryError> {
        let mut redis = self.redis.clone();
        let mut call = self.scripts.release.prepare_invoke();
        call.key(self.key("dir"))
            .key(self.key("ids"))
            .key(self.key(&format!("owned:{}", addr.node.0)))
            .arg(client.as_str())
            .arg(encode_addr(addr));
        let _: i64 = self.timed(call.invoke_async(&mut redis)).await?;
        Ok(())
    }

    pub async fn lookup(&self, client: &ClientId) -> Result<Option<Addr>, DirectoryError> {
        let mut redis = self.redis.clone();
        let mut call = self.scripts.lookup.prepare_invoke();
        call.key(self.key("dir"))
            .arg(client.as_str())
            .arg(&self.prefix);
        let raw: Option<String> = self.timed(call.invoke_async(&mut redis)).await?;
        Ok(raw.as_deref().and_then(decode_addr))
    }

    /// A page of ids after `after`, at most `limit` (all of them without a limit).
    pub async fn list(
        &self,
        after: Option<&str>,
        limit: Option<usize>,
    ) -> Result<ClientPage, DirectoryError> {
        let mut redis = self.redis.clone();
        let min = match after {
            Some(after) => format!("({after}"),
            None => "-".to_owned(),
        };
        let mut cmd = redis::cmd("ZRANGEBYLEX");
        cmd.arg(self.key("ids")).arg(min).arg("+");
        let limit = limit.map(|l| l.clamp(1, relay_core::directory::MAX_LIST_PAGE));
        if let Some(limit) = limit {
            cmd.arg("LIMIT").arg(0).arg(limit + 1);
        }
        let raw: Vec<String> = self.timed(cmd.query_async(&mut redis)).await?;
        let mut ids: Vec<ClientId> = raw.iter().filter_map(|r| ClientId::new(r).ok()).collect();
        let next = match limit {
            Some(limit) if ids.len() > limit => {
                ids.truncate(limit);
                ids.last().cloned()
            }
            _ => None,
        };
        Ok(ClientPage { ids, next })
    }
}
