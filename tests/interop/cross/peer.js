'use strict';
// The Socket.IO side of the cross-transport tests (tests/e2e/cross_transport.rs).
//
// Started by the Rust test as a child process:
//   node peer.js --url http://127.0.0.1:PORT --id N --kind js|legacy
//                --transport websocket|polling --native Q --size BYTES --first native|node
// It connects as N, prints `READY`, then plays a fixed scenario with the native client Q,
// coordinating through the relay itself (events between the two peers):
//   1. pairing #1, initiated by `--first` (the other side accepts);
//   2. emits and acks both ways, multi-argument payloads with binary nested anywhere;
//   3. stream S1, opened by the native client: `--size` bytes each way, this side reading
//      slowly through a 4 KiB highWaterMark; the acceptor (this side) starts writing right
//      after accepting;
//   4. unregister by the side that did not initiate pairing #1;
//   5. pairing #2, initiated by that side;
//   6. stream S2, opened by this side: `--size` bytes each way, the native side reading slowly;
//   7. disconnect by the side that initiated pairing #1.
// Every check is printed as one JSON line `{"check", "ok", "detail"}`; informational lines
// are `{"info": ...}`. Exits 0 only if every check passed. Every wait is bounded.

const crypto = require('node:crypto');
const { parseArgs } = require('node:util');
const assert = require('node:assert/strict');
const { Duplex, Readable } = require('node:stream');
const { connectClient, withTimeout, waitFor, delay } = require('../lib/clients');
const { mulberry32Bytes, rich, ackArgs, MARKER, SEEDS } = require('./scenario');

const STEP_MS = 20000; // a single step (an event, an ack, a pairing) of the scenario
const STALL_MS = 20000; // a stream making no progress at all
const TOTAL_MS = Number(process.env.CROSS_PEER_TOTAL_MS || 150000); // the whole scenario
const MAX_CHUNK = 64 * 1024;
const SLOW_HWM = 4096;

function out(obj) {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

const results = [];
function report(check, ok, detail) {
  results.push({ check, ok: !!ok });
  out({ check, ok: !!ok, detail: detail === undefined ? null : detail });
}

/** Run `fn`; a thrown error fails the check `name` (with its message) instead of the run. */
async function soft(name, fn) {
  try {
    const detail = await fn();
    report(name, true, detail);
    return true;
  } catch (err) {
    report(name, false, String(err && err.stack ? err.stack : err));
    return false;
  }
}

function finish(code) {
  const failed = results.filter((r) => !r.ok).map((r) => r.check);
  out({ summary: { checks: results.length, failed } });
  process.exit(failed.length === 0 && code === 0 ? 0 : 1);
}

const { values: opts } = parseArgs({
  options: {
    url: { type: 'string' },
    id: { type: 'string' },
    kind: { type: 'string' },
    transport: { type: 'string', default: 'websocket' },
    native: { type: 'string' },
    size: { type: 'string' },
    first: { type: 'string', default: 'native' },
  },
});
for (const k of ['url', 'id', 'kind', 'native', 'size']) {
  if (!opts[k]) {
    process.stderr.write(`peer.js: --${k} is required\n`);
    process.exit(2);
  }
}
if (!['js', 'legacy'].includes(opts.kind)) throw new Error(`--kind must be js or legacy, got ${opts.kind}`);
if (!['websocket', 'polling'].includes(opts.transport)) throw new Error(`bad --transport ${opts.transport}`);
if (!['native', 'node'].includes(opts.first)) throw new Error(`--first must be native or node, got ${opts.first}`);
const SIZE = Number(opts.size);
const Q = opts.native;
const FIRST = opts.first;

/** Queues every event of the given names, so that no event is missed between steps. */
class Inbox {
  constructor(socket, names) {
    this.queues = new Map();
    this.waiters = new Map();
    for (const name of names) {
      this.queues.set(name, []);
      socket.on(name, (...args) => {
        // The native side asks for an ack of its `*.done` words, to know they arrived.
        if (name.endsWith('.done') && typeof args[args.length - 1] === 'function') args.pop()();
        const waiter = this.waiters.get(name);
        if (waiter) {
          this.waiters.delete(name);
          waiter(args);
        } else {
          this.queues.get(name).push(args);
        }
      });
    }
  }

  next(name, ms = STEP_MS) {
    const queue = this.queues.get(name);
    if (!queue) throw new Error(`not listening for ${name}`);
    if (queue.length > 0) return Promise.resolve(queue.shift());
    const p = new Promise((resolve) => this.waiters.set(name, resolve));
    return withTimeout(p, ms, `event '${name}' from the native client`)
      .finally(() => this.waiters.delete(name));
  }
}

/** A JSON-safe description of a value, for failure details. */
function describe(v) {
  return JSON.stringify(v, (k, x) => {
    if (x && x.type === 'Buffer' && Array.isArray(x.data)) {
      return `<Buffer ${x.data.length} bytes ${Buffer.from(x.data).toString('hex').slice(0, 32)}>`;
    }
    if (typeof x === 'number' && !Number.isFinite(x)) return String(x);
    return x;
  }).slice(0, 2000);
}

/** Deep strict equality: Buffers stay Buffers, numbers exact, same keys. */
function assertSame(actual, expected, what) {
  try {
    assert.deepStrictEqual(actual, expected);
  } catch (err) {
    throw new Error(`${what}: values or types differ\n  got      ${describe(actual)}\n  expected ${describe(expected)}\n${err.message.slice(0, 3000)}`);
  }
}

function sha256(buf) {
  return crypto.createHash('sha256').update(buf).digest('hex');
}

function onceOrFail(stream, event, ms, label) {
  return withTimeout(new Promise((resolve, reject) => {
    const cleanup = () => {
      stream.off(event, onEvent);
      stream.off('error', onError);
      stream.off('close', onClose);
    };
    const onEvent = () => { cleanup(); resolve(); };
    const onError = (e) => { cleanup(); reject(e); };
    const onClose = () => { cleanup(); reject(new Error(`stream closed while waiting for ${label}`)); };
    stream.on(event, onEvent);
    stream.on('error', onError);
    stream.on('close', onClose);
  }), ms, label);
}

/** Write `data` in chunks of random size (deterministic), waiting for drain as needed. */
async function writeAll(duplex, data, seed, label) {
  const rng = mulberry32Bytes.rng(seed);
  let off = 0;
  let lastAcked = null;
  while (off < data.length) {
    const n = Math.min(data.length - off, 1 + (rng() % MAX_CHUNK));
    const chunk = data.subarray(off, off + n);
    off += n;
    let more;
    if (off === data.length) {
      // The callback of the last write runs once the receiving side acknowledged it (and,
      // chunks going one at a time, every chunk before it).
      lastAcked = new Promise((resolve, reject) => {
        more = duplex.write(chunk, (err) => (err ? reject(err) : resolve()));
      });
    } else {
      more = duplex.write(chunk);
    }
    if (!more && off < data.length) {
      await onceOrFail(duplex, 'drain', STALL_MS, `${label}: drain at offset ${off} (stalled: lost ack?)`);
    }
  }
  if (lastAcked) await withTimeout(lastAcked, STALL_MS, `${label}: the last chunk acknowledged`);
  return off;
}

/**
 * Read exactly `total` bytes. With `slow`, pause once after `slow.pauseAt` bytes for
 * `slow.pauseMs`, and sleep 1 ms every 4 reads while below `slow.until` bytes.
 */
async function readAll(duplex, total, slow, onFirst) {
  const hash = crypto.createHash('sha256');
  let got = 0;
  let reads = 0;
  let maxBuffered = 0;
  let paused = false;
  while (got < total) {
    maxBuffered = Math.max(maxBuffered, duplex.readableLength);
    const chunk = duplex.read();
    if (chunk === null) {
      await onceOrFail(duplex, 'readable', STALL_MS, `more stream data after ${got} of ${total} bytes (stalled?)`);
      continue;
    }
    if (got === 0 && onFirst) onFirst();
    if (got + chunk.length > total) {
      throw new Error(`received ${got + chunk.length - total} bytes more than the ${total} expected`);
    }
    hash.update(chunk);
    got += chunk.length;
    reads += 1;
    if (slow) {
      if (!paused && got >= slow.pauseAt) {
        paused = true;
        await delay(slow.pauseMs);
      } else if (got < slow.until && reads % 4 === 0) {
        await delay(1);
      }
    }
  }
  return { got, sha: hash.digest('hex'), maxBuffered };
}

function streamStats(duplex) {
  const s = duplex.p2pStats || {};
  return { overwrittenAcks: s.overwrittenAcks, maxPendingAcks: s.maxPendingAcks, chunksIn: s.chunksIn };
}

/** Resolves with the seconds since `t0` at which `p` settled (whichever way). */
function timed(p, t0) {
  const secs = () => (Date.now() - t0) / 1000;
  return p.then((v) => ({ v, secs: secs() }), (e) => {
    if (e && typeof e === 'object') e.secs = secs();
    throw e;
  });
}

/** The one-pending-ack rule of the legacy protocol, as each plugin records it. */
function assertOneAckAtATime(duplex, what) {
  const s = duplex.p2pStats || {};
  if ('overwrittenAcks' in s) assert.equal(s.overwrittenAcks, 0, `${what}: the legacy duplex had two pending acks (one was lost)`);
  if ('maxPendingAcks' in s) assert.ok(s.maxPendingAcks <= 1, `${what}: the js duplex held ${s.maxPendingAcks} pending acks`);
}

async function main() {
  const watchdog = setTimeout(() => {
    report('scenario', false, `the whole scenario did not finish within ${TOTAL_MS} ms`);
    finish(1);
  }, TOTAL_MS);

  const c = await connectClient(opts.kind, opts.url, opts.id, { transports: [opts.transport], ms: STEP_MS });
  const sock = c.sock;
  const inbox = new Inbox(c.raw, ['q2n.plain', 'q2n.ack', 's1.done', 's2.done']);
  // What this side looked like right after the plugin handled P2P_UNREGISTER (the next
  // pairing may follow at once, so later looks would see it).
  const unregisterSeen = [];
  c.raw.on('P2P_UNREGISTER', () => unregisterSeen.push({ target: sock.targetClientId }));
  const accepted = [];
  sock.onRegisterP2pStream({ highWaterMark: SLOW_HWM }, (d) => {
    d.on('error', () => {});
    accepted.push(d);
    // Like a real application (`source.pipe(duplex)`), the acceptor starts writing as soon
    // as it accepted: these bytes must be the first the native opener reads. (A piped
    // source starts flowing on the next tick, after the plugin sent its accepting ack.)
    Readable.from([MARKER]).pipe(d, { end: false });
  });
  out({ info: `connected as ${opts.kind}:${opts.id} over ${opts.transport}` });
  process.stdout.write('READY\n');

  // 1. pairing #1
  if (FIRST === 'node') {
    const ok = await withTimeout(sock.registerP2pTarget(Q), STEP_MS, `registerP2pTarget(${Q})`);
    report('pair1.register', ok === true && sock.targetClientId === Q, { ok, target: sock.targetClientId, errors: c.errors });
    if (ok !== true) throw new Error('pairing #1 failed');
  } else {
    await waitFor(() => sock.targetClientId === Q, STEP_MS, `P2P_REGISTER from ${Q} (pairing #1)`);
    report('pair1.accepted', true, { target: sock.targetClientId });
  }

  // 2. emits and acks both ways
  const plainArgs = await inbox.next('q2n.plain');
  await soft('emit.q2n.plain', () => assertSame(plainArgs, rich('q2n.plain'), 'P2P_EMIT from native'));
  const ackEvent = await inbox.next('q2n.ack');
  const ackFn = ackEvent[ackEvent.length - 1];
  const gotAckArgs = typeof ackFn === 'function' ? ackEvent.slice(0, -1) : ackEvent;
  await soft('emit.q2n.ack.args', () => {
    assert.equal(typeof ackFn, 'function', 'an emit with ack from native arrives with an ack function');
    assertSame(gotAckArgs, rich('q2n.ack'), 'P2P_EMIT_ACKNOWLEDGE from native');
  });
  if (typeof ackFn === 'function') ackFn(...ackArgs('ack-from-node'));
  sock.emit2('n2q.plain', ...rich('n2q.plain'));
  const answer = await withTimeout(new Promise((resolve) => {
    sock.emit2('n2q.ack', ...rich('n2q.ack'), (...res) => resolve(res));
  }), STEP_MS, 'the native client\'s ack of n2q.ack');
  await soft('emit.n2q.ack.answer', () => assertSame(answer, ackArgs('ack-from-native'), 'ack from native'));

  // 3. stream S1, opened by the native client
  const d1 = await waitFor(() => accepted[0], STEP_MS, 'P2P_REGISTER_STREAM from the native client (S1)');
  report('s1.accepted', d1 instanceof Duplex, { accepted: accepted.length });
  {
    const fromNative = mulberry32Bytes(SEEDS.s1NativeToNode, SIZE);
    const toNative = mulberry32Bytes(SEEDS.s1NodeToNative, SIZE);
    let firstData;
    const gotFirst = new Promise((resolve) => { firstData = resolve; });
    const started = Date.now();
    const reading = readAll(d1, SIZE, { pauseAt: Math.min(SIZE / 4, 256 * 1024), pauseMs: 300, until: Math.min(SIZE / 2, 2 * 1024 * 1024) }, firstData);
    // The bulk goes once the native side's bytes arrive (the stream is bridged by then).
    const writing = withTimeout(gotFirst, STEP_MS, 'the first S1 bytes from the native client')
      .then(() => writeAll(d1, toNative, SEEDS.s1NodeToNative, 'S1 node->native'));
    const [rt, wt] = await Promise.allSettled([timed(reading, started), timed(writing, started)]);
    const r = rt.status === 'fulfilled' ? { status: 'fulfilled', value: rt.value.v } : rt;
    const w = wt.status === 'fulfilled' ? { status: 'fulfilled', value: wt.value.v } : wt;
    const secs = (Date.now() - started) / 1000;
    await soft('s1.native_to_node.sha256', () => {
      if (r.status === 'rejected') throw r.reason;
      assert.equal(r.value.got, SIZE);
      assert.equal(r.value.sha, sha256(fromNative), 'sha256 of the bytes received on S1');
      return { bytes: r.value.got, sha256: r.value.sha, secs: rt.value.secs, chunks: streamStats(d1).chunksIn };
    });
    await soft('s1.slow_reader.bounded', () => {
      if (r.status === 'rejected') throw r.reason;
      assertOneAckAtATime(d1, 'S1');
      assert.ok(r.value.maxBuffered < SLOW_HWM + MAX_CHUNK,
        `the slow S1 reader buffered ${r.value.maxBuffered} bytes (> highWaterMark ${SLOW_HWM} + one chunk)`);
      return { maxBuffered: r.value.maxBuffered, ...streamStats(d1) };
    });
    await soft('s1.node_to_native.written', () => {
      if (w.status === 'rejected') throw w.reason;
      return { bytes: w.value, secs: wt.value.secs };
    });
    out({ info: `S1 ${SIZE} bytes each way in ${secs.toFixed(2)} s` });
    sock.emit2('s1.done', { bytes: r.status === 'fulfilled' ? r.value.got : -1 });
    await inbox.next('s1.done');
  }

  // 4. unregister by the side that did not initiate pairing #1
  if (FIRST === 'native') {
    await withTimeout(sock.unregisterP2pTarget(), STEP_MS, 'unregisterP2pTarget');
    await soft('unregister.by_node', () => {
      assert.equal(sock.targetClientId, undefined, 'no peer after unregister');
      assert.equal(d1.destroyed, true, 'S1 duplex destroyed when unregister resolved');
      assert.ok(c.unregisters >= 1, 'this side got P2P_UNREGISTER too');
    });
  } else {
    await waitFor(() => unregisterSeen.length >= 1, STEP_MS, 'P2P_UNREGISTER after the native client unregistered');
    await soft('unregister.from_native', async () => {
      assert.equal(unregisterSeen[0].target, undefined, 'no peer once P2P_UNREGISTER was handled');
      await waitFor(() => d1.destroyed, 2000, 'the S1 duplex destroyed on P2P_UNREGISTER');
      return unregisterSeen[0];
    });
  }

  // 5. pairing #2, initiated by the other side
  if (FIRST === 'native') {
    const ok = await withTimeout(sock.registerP2pTarget(Q), STEP_MS, `registerP2pTarget(${Q}) (pairing #2)`);
    report('pair2.register', ok === true && sock.targetClientId === Q, { ok, target: sock.targetClientId, errors: c.errors });
    if (ok !== true) throw new Error('pairing #2 failed');
  } else {
    await waitFor(() => sock.targetClientId === Q, STEP_MS, `P2P_REGISTER from ${Q} (pairing #2)`);
    report('pair2.accepted', true, { target: sock.targetClientId });
  }

  // 6. stream S2, opened by this side; the native side reads slowly
  const d2 = await withTimeout(sock.registerP2pStream({}), STEP_MS, 'registerP2pStream (S2)');
  report('s2.opened', d2 instanceof Duplex, { got: d2 === null ? null : typeof d2 });
  if (!(d2 instanceof Duplex)) throw new Error('S2 was refused');
  d2.on('error', () => {});
  {
    const fromNative = mulberry32Bytes(SEEDS.s2NativeToNode, SIZE);
    const toNative = mulberry32Bytes(SEEDS.s2NodeToNative, SIZE);
    const started = Date.now();
    const [rt, wt] = await Promise.allSettled([
      timed(readAll(d2, SIZE, null), started),
      timed(writeAll(d2, toNative, SEEDS.s2NodeToNative, 'S2 node->native'), started),
    ]);
    const r = rt.status === 'fulfilled' ? { status: 'fulfilled', value: rt.value.v } : rt;
    const w = wt.status === 'fulfilled' ? { status: 'fulfilled', value: wt.value.v } : wt;
    const secs = (Date.now() - started) / 1000;
    await soft('s2.native_to_node.sha256', () => {
      if (r.status === 'rejected') throw r.reason;
      assert.equal(r.value.got, SIZE);
      assert.equal(r.value.sha, sha256(fromNative), 'sha256 of the bytes received on S2');
      assertOneAckAtATime(d2, 'S2');
      return { bytes: r.value.got, sha256: r.value.sha, secs: rt.value.secs, chunks: streamStats(d2).chunksIn };
    });
    await soft('s2.node_to_native.written', () => {
      if (w.status === 'rejected') throw w.reason;
      return { bytes: w.value, secs: wt.value.secs };
    });
    out({ info: `S2 ${SIZE} bytes each way in ${secs.toFixed(2)} s` });
    sock.emit2('s2.done', { bytes: r.status === 'fulfilled' ? r.value.got : -1 });
    await inbox.next('s2.done');
  }

  // 7. disconnect by the side that initiated pairing #1
  if (FIRST === 'native') {
    await waitFor(() => c.p2pDisconnects >= 1, STEP_MS, 'P2P_DISCONNECT after the native client closed');
    await soft('disconnect.from_native', async () => {
      await waitFor(() => d2.destroyed, 2000, 'the S2 duplex destroyed on P2P_DISCONNECT');
      assert.equal(sock.targetClientId, undefined, 'no peer after P2P_DISCONNECT');
    });
  }
  await soft('no_server_errors', () => assert.deepEqual(c.errors, [], 'SERVER_ERROR messages received'));
  if (FIRST === 'node') {
    // This side leaves; the native side checks that it learns of it.
    c.close();
    report('disconnect.by_node', true, null);
    // Let the close reach the relay (over polling it is one more HTTP request).
    await delay(300);
  } else {
    c.close();
  }
  clearTimeout(watchdog);
}

main().then(() => finish(0), (err) => {
  report('scenario', false, String(err && err.stack ? err.stack : err));
  finish(1);
});
