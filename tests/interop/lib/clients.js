'use strict';
// Client factories for both client generations, plus small bounded-wait helpers.
//   kind 'js'     : socket.io-client 4.x + p2p-relay-client (js-client/)
//   kind 'legacy' : socket.io-client 2.x + the 1.4.1-style plugin in ./legacy.js

// Raw-socket helpers here and in the tests write the wire events ('SERVER_ERROR',
// 'P2P_DISCONNECT', ...) literally on purpose: they check the protocol's contract
// (docs/PROTOCOL.md) on the wire, independently of js-client's SOCKET_EVENT, which
// test/package.test.js compares with the same strings.

const ioV4 = require('socket.io-client');
const p2pClientPlugin = require('p2p-relay-client');
const { legacyP2pPlugin, ioV2 } = require('./legacy');

const KINDS = ['js', 'legacy'];
const TRANSPORTS = [['websocket'], ['polling']];
/** Mixed pairs in both directions: [kind of A, kind of B]. */
const MIXED_PAIRS = [['js', 'legacy'], ['legacy', 'js']];

let idCounter = 0;
function uniqueId(prefix = 'c') {
  idCounter += 1;
  return `${prefix}${idCounter}-${Math.random().toString(36).slice(2, 8)}`;
}

function delay(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Reject with `label` if `promise` does not settle within `ms`. */
function withTimeout(promise, ms, label) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${label}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Poll `predicate` every `interval` ms until it is truthy; reject after `ms`. */
async function waitFor(predicate, ms, label, interval = 5) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await predicate();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for: ${label}`);
    await delay(interval);
  }
}

/** Resolve with the arguments of the next `event` on `emitter`. */
function nextEvent(emitter, event, ms, label) {
  let handler;
  const p = new Promise((resolve) => {
    handler = (...args) => resolve(args);
    emitter.once(event, handler);
  });
  return withTimeout(p, ms, label || `event ${event}`).finally(() => {
    if (typeof emitter.off === 'function') emitter.off(event, handler);
  });
}

/** Emit `event` with `args` and an ack; resolve with the ack's argument list. */
function emitWithAck(socket, event, args, ms, label) {
  const p = new Promise((resolve) => socket.emit(event, ...args, (...res) => resolve(res)));
  return withTimeout(p, ms, label || `ack of ${event}`);
}

/**
 * A connected test client.
 *  .sock   the plugin-wrapped socket (the API under test)
 *  .raw    the bare socket.io-client socket (for raw events)
 *  .errors every SERVER_ERROR message received, in order
 *  .p2pDisconnects count of P2P_DISCONNECT events received
 */
class TestClient {
  constructor(kind, id, raw, sock, transports) {
    this.kind = kind;
    this.id = id;
    this.raw = raw;
    this.sock = sock;
    this.transports = transports;
    this.errors = [];
    this.p2pDisconnects = 0;
    this.unregisters = 0;
    raw.on('SERVER_ERROR', (msg) => this.errors.push(msg));
    raw.on('P2P_DISCONNECT', () => { this.p2pDisconnects += 1; });
    raw.on('P2P_UNREGISTER', () => { this.unregisters += 1; });
  }

  get label() {
    return `${this.kind}:${this.id}`;
  }

  get connected() {
    return this.raw.connected;
  }

  /** the engine.io client object */
  get engine() {
    return this.raw.io.engine;
  }

  /** the net.Socket under the websocket transport (Node), or null */
  netSocket() {
    const t = this.engine && this.engine.transport;
    return (t && t.ws && t.ws._socket) || null;
  }

  /** Wait until a SERVER_ERROR satisfying `match` (string or RegExp) arrived; return it. */
  async waitError(match, ms = 3000) {
    const test = (m) => (match instanceof RegExp ? match.test(m) : m === match);
    return waitFor(() => this.errors.find(test), ms,
      `${this.label} to receive SERVER_ERROR ${match} (got ${JSON.stringify(this.errors)})`);
  }

  /** LIST_CLIENTS round trip through the raw socket. */
  async list(ms = 3000) {
    const [ids] = await emitWithAck(this.raw, 'LIST_CLIENTS', [], ms, `${this.label} LIST_CLIENTS`);
    return ids;
  }

  close() {
    try { this.raw.close(); } catch (_) { /* ignore */ }
    // make sure the engine is gone too (2.x keeps the Manager otherwise)
    try { if (this.raw.io && this.raw.io.engine) this.raw.io.engine.close(); } catch (_) { /* ignore */ }
  }
}

function buildUrl(url, id, extraQuery) {
  const params = [];
  if (id !== undefined && id !== null) params.push(`clientId=${encodeURIComponent(id)}`);
  if (extraQuery) params.push(extraQuery);
  return params.length ? `${url}/?${params.join('&')}` : `${url}/`;
}

/** Create the raw socket for `kind` (not yet waited for). */
function rawSocket(kind, url, id, { transports = ['websocket'], extraQuery, auth, ca } = {}) {
  const full = buildUrl(url, id, extraQuery);
  const opts = { transports, reconnection: false, forceNew: true, timeout: 5000 };
  if (auth) opts.auth = auth; // 4.x only: 2.x has no auth payload
  if (ca) opts.ca = ca; // https/wss in Node (both generations pass it to their agents)
  if (kind === 'js') return ioV4(full, opts);
  if (kind === 'legacy') return ioV2(full, opts);
  throw new Error(`unknown client kind ${kind}`);
}

/**
 * Wait until `raw` connects, or reject with the connect error message.
 * 4.x reports a refusal as 'connect_error' (Error whose message is the server's);
 * 2.x reports a namespace refusal as 'error' with the server's data.
 */
function awaitConnect(raw, ms, label) {
  return withTimeout(new Promise((resolve, reject) => {
    const cleanup = () => {
      raw.off('connect', onConnect);
      raw.off('connect_error', onErr);
      raw.off('error', onErr);
    };
    const onConnect = () => { cleanup(); resolve(); };
    const onErr = (err) => { cleanup(); reject(toConnectError(err)); };
    raw.on('connect', onConnect);
    raw.on('connect_error', onErr);
    raw.on('error', onErr);
  }), ms, `connect ${label}`);
}

function toConnectError(err) {
  if (err instanceof Error) return err;
  if (typeof err === 'string') return new Error(err);
  if (err && typeof err.message === 'string') {
    const e = new Error(err.message);
    e.data = err;
    return e;
  }
  return new Error(JSON.stringify(err));
}

/**
 * Connect a client of `kind` with clientId `id`; resolves once connected.
 * Every client created through a Pool is closed by pool.closeAll().
 */
async function connectClient(kind, url, id, { transports = ['websocket'], ms = 5000 } = {}) {
  const raw = rawSocket(kind, url, id, { transports });
  try {
    await awaitConnect(raw, ms, `${kind}:${id}`);
  } catch (err) {
    try { raw.close(); } catch (_) { /* ignore */ }
    throw err;
  }
  const sock = kind === 'js' ? p2pClientPlugin(raw, id) : legacyP2pPlugin(raw, id);
  return new TestClient(kind, id, raw, sock, transports);
}

/** Keeps every client a test created, to close them all afterwards. */
class Pool {
  constructor(relayRef) {
    this.relayRef = relayRef;
    this.clients = [];
    this.raws = [];
  }

  async connect(kind, { id = uniqueId(kind === 'js' ? 'J' : 'L'), transports = ['websocket'], ms } = {}) {
    const c = await connectClient(kind, this.relayRef().url, id, { transports, ms });
    this.clients.push(c);
    return c;
  }

  /** A raw socket that is tracked for closing; the caller awaits its connection itself. */
  raw(kind, id, opts) {
    const r = rawSocket(kind, this.relayRef().url, id, opts);
    this.raws.push(r);
    return r;
  }

  closeAll() {
    for (const c of this.clients) c.close();
    for (const r of this.raws) {
      try { r.close(); } catch (_) { /* ignore */ }
      try { if (r.io && r.io.engine) r.io.engine.close(); } catch (_) { /* ignore */ }
    }
    this.clients = [];
    this.raws = [];
  }
}

/** Connect A (kind kA) and B (kind kB) and pair A -> B through the plugin API. */
async function pairUp(pool, kA, kB, transports) {
  const a = await pool.connect(kA, { transports });
  const b = await pool.connect(kB, { transports });
  const ok = await withTimeout(a.sock.registerP2pTarget(b.id), 5000, `${a.label} registerP2pTarget(${b.id})`);
  if (ok !== true) throw new Error(`pairing ${a.label} -> ${b.label} failed: ${ok}; A errors ${JSON.stringify(a.errors)}`);
  return { a, b };
}

function transportName(transports) {
  return transports.join('+');
}

module.exports = {
  KINDS,
  TRANSPORTS,
  MIXED_PAIRS,
  uniqueId,
  delay,
  withTimeout,
  waitFor,
  nextEvent,
  emitWithAck,
  connectClient,
  rawSocket,
  awaitConnect,
  Pool,
  pairUp,
  transportName,
  TestClient,
};
