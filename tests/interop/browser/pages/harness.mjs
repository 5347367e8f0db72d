// The page side of the browser suite. A page (v2.html, v4.html) loads its socket.io-client
// bundle and plugin, then calls makeHarness(); the test drives it with page.evaluate and
// gets back a report: {checks: [{name, ok, detail}], errors, consoleErrors}. Every wait is
// bounded; a failed check is recorded and the scenario goes on where it can.
//
// The peer (a node client or the native echo peer, see ../peers.js and
// native-client/examples/echo_peer.rs) answers: ping -> echo:ping, ask -> ack with the same
// arguments, peer:ask / peer:list / peer:stream / peer:unregister -> does that, and echoes
// every stream it accepts.

// The raw-event checks below write the wire strings ('P2P_REGISTER', ...) literally on
// purpose: they test the protocol (docs/PROTOCOL.md), not a client's table of it.

const STEP_MS = 10000;

function withTimeout(promise, ms, label) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${label}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function delay(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function waitFor(predicate, ms, label) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = predicate();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${label}`);
    await delay(10);
  }
}

function hex(bytes) {
  let s = '';
  for (const b of bytes) s += b.toString(16).padStart(2, '0');
  return s;
}

async function sha256(bytes) {
  return hex(new Uint8Array(await crypto.subtle.digest('SHA-256', bytes)));
}

function concat(chunks, total) {
  const out = new Uint8Array(total);
  let off = 0;
  for (const c of chunks) {
    out.set(c, off);
    off += c.byteLength;
  }
  return out;
}

function randomBytes(n) {
  const out = new Uint8Array(n);
  for (let off = 0; off < n; off += 65536) crypto.getRandomValues(out.subarray(off, Math.min(n, off + 65536)));
  return out;
}

/**
 * A JSON-able picture of a value, binary as {bin: hex, type}: what a sent payload should look
 * like when it comes back (binary comes back as ArrayBuffer, whatever view was sent).
 */
async function describe(value, keepType = false) {
  if (value instanceof ArrayBuffer) return keepType ? { bin: hex(new Uint8Array(value)), type: 'ArrayBuffer' } : { bin: hex(new Uint8Array(value)) };
  if (ArrayBuffer.isView(value)) {
    const bin = hex(new Uint8Array(value.buffer, value.byteOffset, value.byteLength));
    return keepType ? { bin, type: value.constructor.name } : { bin };
  }
  if (typeof Blob !== 'undefined' && value instanceof Blob) {
    const bin = hex(new Uint8Array(await value.arrayBuffer()));
    return keepType ? { bin, type: 'Blob' } : { bin };
  }
  if (Array.isArray(value)) return Promise.all(value.map((v) => describe(v, keepType)));
  if (value && typeof value === 'object') {
    const out = {};
    for (const k of Object.keys(value).sort()) out[k] = await describe(value[k], keepType);
    return out;
  }
  return value;
}

/** Every binary type found in a received value, e.g. ['ArrayBuffer']. */
function binaryTypes(value, out = new Set()) {
  if (value instanceof ArrayBuffer || ArrayBuffer.isView(value) || (typeof Blob !== 'undefined' && value instanceof Blob)) {
    out.add(value.constructor.name);
  } else if (Array.isArray(value)) {
    value.forEach((v) => binaryTypes(v, out));
  } else if (value && typeof value === 'object') {
    Object.values(value).forEach((v) => binaryTypes(v, out));
  }
  return out;
}

/** The payload with binary of every kind the generation can send, nested anywhere. */
function richPayload(gen) {
  const typed = {
    u8: Uint8Array.from([1, 2, 3, 250, 251, 252]),
    big: randomBytes(20000),
  };
  // socket.io-client 2.x sends a view's elements as bytes (engine.io-parser 2 copies it
  // with `new Uint8Array(view)`), so only Uint8Array views are binary-safe there, and only
  // beside an ArrayBuffer or Blob in the same emit (its has-binary2 sees no typed array: an
  // emit whose only binary is a view goes out as JSON). 4.x sends any view's bytes.
  if (gen === 4) {
    typed.f64 = Float64Array.from([1.5, -2.25, Math.PI]);
    typed.i16 = Int16Array.from([-1, 2, -3]);
    typed.dv = new DataView(Uint8Array.from([7, 7, 7]).buffer);
  }
  return [
    'text', 42, -1.5, null, true,
    Uint8Array.from([0, 1, 2, 255]).buffer,
    { nested: { typed, list: ['x', Uint8Array.from([9]).buffer, { deep: new Blob([Uint8Array.from([4, 5, 6])]) }] } },
    new Blob([Uint8Array.from([10, 20, 30])]),
  ];
}

class Report {
  constructor() {
    this.checks = [];
  }

  async check(name, fn) {
    const started = performance.now();
    try {
      const detail = await fn();
      this.checks.push({ name, ok: true, detail: detail === undefined ? '' : String(detail), ms: Math.round(performance.now() - started) });
      return true;
    } catch (err) {
      this.checks.push({ name, ok: false, detail: String(err && err.stack ? err.stack : err), ms: Math.round(performance.now() - started) });
      return false;
    }
  }
}

function assertEqual(actual, expected, what) {
  const a = JSON.stringify(actual);
  const e = JSON.stringify(expected);
  if (a !== e) throw new Error(`${what}: got ${a.slice(0, 600)}, expected ${e.slice(0, 600)}`);
}

function assert(cond, what) {
  if (!cond) throw new Error(what);
}

/**
 * @param {object} env
 * @param {2|4} env.gen socket.io-client generation
 * @param {Function} env.io the client's io()
 * @param {Function} env.plugin (socket, id) => the plugin-wrapped socket
 * @param {'legacy'|'js'} env.kind which plugin it is
 */
export function makeHarness({ gen, io, plugin, kind }) {
  const sockets = [];

  function connectRaw(url, id, transports) {
    const opts = { reconnection: false, forceNew: true, timeout: 5000 };
    if (transports) opts.transports = transports;
    const socket = io(`${url}/?clientId=${encodeURIComponent(id)}`, opts);
    sockets.push(socket);
    // the transport the engine opened with (before any upgrade)
    socket.io.once('open', () => { socket.firstTransport = transportName(socket); });
    return withTimeout(new Promise((resolve, reject) => {
      socket.once('connect', () => resolve(socket));
      socket.once('connect_error', (err) => reject(new Error(`connect_error: ${err && err.message}`)));
      socket.once('error', (err) => reject(new Error(`error: ${JSON.stringify(err)}`)));
    }), STEP_MS, `connect ${id}`);
  }

  function transportName(socket) {
    return socket.io.engine && socket.io.engine.transport && socket.io.engine.transport.name;
  }

  /** After a default connect (polling first), wait for the upgrade to websocket. */
  async function awaitUpgrade(socket) {
    const engine = socket.io.engine;
    if (transportName(socket) === 'websocket') return 'websocket';
    await withTimeout(new Promise((resolve) => engine.once('upgrade', resolve)), STEP_MS, 'upgrade to websocket');
    return transportName(socket);
  }

  function emitAck(socket, event, ...args) {
    return withTimeout(new Promise((resolve) => socket.emit(event, ...args, (...answer) => resolve(answer))), STEP_MS, `ack of ${event}`);
  }

  /**
   * Part 1: the bare client (no plugin) speaks the raw events: connect with `transports`
   * (undefined: the default, polling then the upgrade), pair, an emit/ack round trip each way.
   */
  async function basic({ url, id, peer, transports }) {
    const report = new Report();
    const errors = [];
    let socket;
    const ok = await report.check('connect', async () => {
      socket = await connectRaw(url, id, transports);
      socket.on('SERVER_ERROR', (m) => errors.push(m));
      return `transport ${transportName(socket)}`;
    });
    if (!ok) return { ...report, errors };
    if (!transports) {
      await report.check('upgrade', async () => {
        assertEqual(socket.firstTransport, 'polling', 'the transport it opened with');
        const name = await awaitUpgrade(socket);
        assertEqual(name, 'websocket', 'transport after the upgrade');
        return `${socket.firstTransport} then ${name}`;
      });
    } else {
      await report.check('transport', async () => {
        assertEqual(transportName(socket), transports[0], 'transport');
        return transportName(socket);
      });
    }
    const paired = await report.check('pair', async () => {
      const [answer] = await emitAck(socket, 'P2P_REGISTER', peer);
      assertEqual(answer, true, 'P2P_REGISTER ack');
    });
    if (paired) {
      const payload = ['hello', 7, { bin: Uint8Array.from([1, 2, 3]).buffer, list: [null, 'x'] }];
      await report.check('emit/ack to the peer', async () => {
        const answer = await emitAck(socket, 'P2P_EMIT_ACKNOWLEDGE', { targetClientId: peer, event: 'ask', args: payload });
        assertEqual(await describe(answer), await describe(payload), 'ack arguments');
        return [...binaryTypes(answer)].join(',');
      });
      await report.check('emit/ack from the peer', async () => {
        socket.on('question', (...args) => {
          const ack = args.pop();
          ack('answer', ...args);
        });
        const question = ['q', Uint8Array.from([5, 6]).buffer];
        const answer = await emitAck(socket, 'P2P_EMIT_ACKNOWLEDGE', { targetClientId: peer, event: 'peer:ask', args: ['question', question] });
        assertEqual(await describe(answer), await describe(['answer', ...question]), 'the peer saw our ack');
      });
      await report.check('unregister', async () => {
        const answer = await emitAck(socket, 'P2P_UNREGISTER');
        assertEqual(answer, [], 'P2P_UNREGISTER ack');
      });
    }
    await report.check('no SERVER_ERROR', () => assertEqual(errors, [], 'SERVER_ERRORs'));
    socket.close();
    return { ...report, errors };
  }

  // Streams, as each plugin has them: js-client's P2pStream (WHATWG streams) or the legacy
  // duplex (write/read promises).
  const streamOps = kind === 'js'
    ? {
      async writeAll(stream, bytes, chunk) {
        const writer = stream.writable.getWriter();
        try {
          for (let off = 0; off < bytes.byteLength; off += chunk) {
            await writer.write(bytes.subarray(off, Math.min(bytes.byteLength, off + chunk)));
          }
        } finally {
          writer.releaseLock();
        }
      },
      async readExactly(stream, n) {
        const reader = stream.readable.getReader();
        const chunks = [];
        let got = 0;
        try {
          while (got < n) {
            const { value, done } = await reader.read();
            if (done) throw new Error(`the stream ended after ${got} of ${n} bytes`);
            chunks.push(value);
            got += value.byteLength;
          }
        } finally {
          reader.releaseLock();
        }
        if (got !== n) throw new Error(`read ${got} bytes, expected ${n}`);
        return concat(chunks, got);
      },
    }
    : {
      async writeAll(stream, bytes, chunk) {
        for (let off = 0; off < bytes.byteLength; off += chunk) {
          await stream.write(bytes.slice(off, Math.min(bytes.byteLength, off + chunk)));
        }
      },
      async readExactly(stream, n) {
        const chunks = [];
        let got = 0;
        while (got < n) {
          const value = await stream.read();
          if (value === null) throw new Error(`the stream ended after ${got} of ${n} bytes`);
          chunks.push(value);
          got += value.byteLength;
        }
        if (got !== n) throw new Error(`read ${got} bytes, expected ${n}`);
        return concat(chunks, got);
      },
    };

  /**
   * Parts 2 and 3: the plugin in the page, paired with `peer` (a node or native echo peer):
   * the client list, emit without and with ack (binary of every kind both ways), a question
   * from the peer, a stream echoed by the peer, unregister, a stream opened by the peer,
   * and an unregister from the peer.
   */
  async function scenario({ url, id, peer, transports, streamBytes = 1 << 20, chunkBytes = 64 * 1024 }) {
    const report = new Report();
    const errors = [];
    let raw;
    if (!await report.check('connect', async () => {
      raw = await connectRaw(url, id, transports);
      raw.on('SERVER_ERROR', (m) => errors.push(m));
      return `transport ${transportName(raw)}`;
    })) return { ...report, errors };
    const sock = plugin(raw, id);
    const accepted = [];
    sock.onRegisterP2pStream({ highWaterMark: 16 * 1024 }, (s) => accepted.push(s));

    if (!await report.check('pair', async () => {
      const ok = await withTimeout(sock.registerP2pTarget(peer), STEP_MS, 'registerP2pTarget');
      assertEqual(ok, true, 'registerP2pTarget');
      assertEqual(sock.targetClientId, peer, 'targetClientId');
    })) return { ...report, errors };

    await report.check('client list', async () => {
      const ids = await withTimeout(sock.getClientList(), STEP_MS, 'getClientList');
      assert(ids.includes(id) && ids.includes(peer), `getClientList ${JSON.stringify(ids)} lacks ${id} or ${peer}`);
      const [peerIds] = await withTimeout(new Promise((resolve) => sock.emit2('peer:list', (...a) => resolve(a))), STEP_MS, 'peer:list');
      assert(Array.isArray(peerIds) && peerIds.includes(id) && peerIds.includes(peer), `the peer's list ${JSON.stringify(peerIds)}`);
      return JSON.stringify(ids);
    });

    await report.check('emit without ack (binary both ways)', async () => {
      const payload = richPayload(gen);
      const echoed = withTimeout(new Promise((resolve) => sock.once('echo:ping', (...args) => resolve(args))), STEP_MS, 'echo:ping');
      sock.emit2('ping', ...payload);
      const args = await echoed;
      assertEqual(await describe(args), await describe(payload), 'echo:ping arguments');
      const types = [...binaryTypes(args)];
      assertEqual(types, ['ArrayBuffer'], 'binary types received');
      return `received binary as ${types}`;
    });

    await report.check('emit with ack (binary both ways)', async () => {
      const payload = richPayload(gen);
      const answer = await withTimeout(new Promise((resolve) => sock.emit2('ask', ...payload, (...a) => resolve(a))), STEP_MS, 'ack of ask');
      assertEqual(await describe(answer), await describe(payload), 'ack arguments');
      assertEqual([...binaryTypes(answer)], ['ArrayBuffer'], 'binary types in the ack');
    });

    await report.check('question from the peer, answered with binary', async () => {
      const question = ['why?', Uint8Array.from([1, 1, 2, 3, 5, 8]).buffer, { n: 3 }];
      let asked = null;
      sock.on('question', (...args) => {
        const ack = args.pop();
        asked = args;
        ack('because', new Blob([Uint8Array.from([42])]), Uint8Array.from([7, 8]), { ok: true });
      });
      const answer = await withTimeout(new Promise((resolve) => sock.emit2('peer:ask', 'question', question, (...a) => resolve(a))), STEP_MS, 'peer:ask');
      assertEqual(await describe(asked), await describe(question), 'the question as the page got it');
      assertEqual([...binaryTypes(asked)], ['ArrayBuffer'], 'binary types in the question');
      assertEqual(await describe(answer), await describe(['because', Uint8Array.from([42]), Uint8Array.from([7, 8]), { ok: true }]), 'our answer as the peer got it');
    });

    let own = null;
    await report.check(`stream to the peer and back (${streamBytes} bytes)`, async () => {
      own = await withTimeout(sock.registerP2pStream({ highWaterMark: 16 * 1024 }), STEP_MS, 'registerP2pStream');
      assert(own, 'registerP2pStream resolved null');
      const data = randomBytes(streamBytes);
      const started = performance.now();
      const [, back] = await withTimeout(Promise.all([
        streamOps.writeAll(own, data, chunkBytes),
        streamOps.readExactly(own, streamBytes),
      ]), 30000, 'stream echo');
      const ms = performance.now() - started;
      assertEqual(await sha256(back), await sha256(data), 'sha256 of the echoed bytes');
      if (own.p2pStats && 'maxPendingAcks' in own.p2pStats) assert(own.p2pStats.maxPendingAcks <= 1, `held ${own.p2pStats.maxPendingAcks} acks`);
      if (own.p2pStats && 'overwrittenAcks' in own.p2pStats) assertEqual(own.p2pStats.overwrittenAcks, 0, 'overwritten acks');
      return `${(streamBytes * 2 / 1e6 / (ms / 1000)).toFixed(1)} MB/s both ways`;
    });

    await report.check('unregister', async () => {
      await withTimeout(sock.unregisterP2pTarget(), STEP_MS, 'unregisterP2pTarget');
      assertEqual(sock.targetClientId, undefined, 'targetClientId after unregister');
      if (own) assert(own.destroyed, 'our stream is destroyed once unregister resolves');
      if (own && own.readable) {
        const { done } = await withTimeout(own.readable.getReader().read(), STEP_MS, 'read after unregister');
        assert(done, 'the readable is closed');
      }
    });

    await report.check('pair again', async () => {
      const ok = await withTimeout(sock.registerP2pTarget(peer), STEP_MS, 'registerP2pTarget again');
      assertEqual(ok, true, 'registerP2pTarget again');
    });

    const size = 300 * 1024 + 7;
    await report.check(`stream opened by the peer (${size} bytes)`, async () => {
      const acked = withTimeout(new Promise((resolve) => sock.emit2('peer:stream', size, (...a) => resolve(a))), 30000, 'peer:stream');
      const stream = await waitFor(() => accepted[0], STEP_MS, 'the peer\'s stream');
      const data = await withTimeout(streamOps.readExactly(stream, size), 30000, 'reading the peer\'s stream');
      const [sha] = await acked;
      assertEqual(await sha256(data), sha, 'sha256 of what the peer wrote');
    });

    await report.check('unregister by the peer', async () => {
      await withTimeout(new Promise((resolve) => sock.emit2('peer:unregister', () => resolve())), STEP_MS, 'peer:unregister');
      await waitFor(() => sock.targetClientId === undefined, STEP_MS, 'P2P_UNREGISTER from the peer');
      await waitFor(() => accepted[0] && accepted[0].destroyed, STEP_MS, 'the peer\'s stream destroyed');
    });

    await report.check('no SERVER_ERROR', () => assertEqual(errors, [], 'SERVER_ERRORs'));
    raw.close();
    return { ...report, errors };
  }

  /**
   * js-client only: the browser stream's back-pressure and error rules, against a node peer.
   * A reader that does not read holds the chunk's ack (one chunk in flight, one held ack);
   * reading releases it; an error (writable.abort, readable.cancel, destroy(err)) destroys the
   * stream and releases a held ack, the stream receives nothing more, and the pairing and a
   * new stream still work.
   */
  async function streamRules({ url, id, peer }) {
    const report = new Report();
    const errors = [];
    const raw = await connectRaw(url, id, ['websocket']);
    raw.on('SERVER_ERROR', (m) => errors.push(m));
    const sock = plugin(raw, id);
    const accepted = [];
    sock.onRegisterP2pStream({ highWaterMark: 16 * 1024 }, (s) => accepted.push(s));
    await report.check('pair', async () => assertEqual(await withTimeout(sock.registerP2pTarget(peer), STEP_MS, 'pair'), true, 'pair'));

    const askPeerStream = (size) => withTimeout(new Promise((resolve) => sock.emit2('peer:stream', size, (...a) => resolve(a))), 30000, 'peer:stream');

    await report.check('a reader that does not read holds the ack; reading releases it', async () => {
      const size = 512 * 1024;
      const acked = askPeerStream(size);
      const stream = await waitFor(() => accepted[0], STEP_MS, 'the peer\'s stream');
      await waitFor(() => stream.p2pStats.chunksIn === 1, STEP_MS, 'the first chunk');
      await delay(500);
      assertEqual(stream.p2pStats.chunksIn, 1, 'chunks received while not reading (the writer waits for the held ack)');
      assertEqual(stream.p2pStats.maxPendingAcks, 1, 'held acks');
      const data = await withTimeout(streamOps.readExactly(stream, size), 30000, 'reading');
      const [sha] = await acked;
      assertEqual(await sha256(data), sha, 'sha256');
      assert(stream.p2pStats.maxPendingAcks <= 1, 'never more than one held ack');
      stream.destroy();
      assert(stream.destroyed, 'destroyed');
      assertEqual(sock.targetClientId, peer, 'still paired');
      return `${stream.p2pStats.chunksIn} chunks`;
    });

    const ways = {
      'writable.abort(err)': (s, err) => s.writable.abort(err),
      'readable.cancel(err)': (s, err) => s.readable.cancel(err),
      'destroy(err)': (s, err) => s.destroy(err),
    };
    for (const [way, fail] of Object.entries(ways)) {
      await report.check(`${way} destroys the stream and releases its held ack`, async () => {
        const before = accepted.length;
        const acked = askPeerStream(256 * 1024);
        const stream = await waitFor(() => accepted[before], STEP_MS, 'the peer\'s stream');
        await waitFor(() => stream.p2pStats.chunksIn === 1 && stream.p2pStats.maxPendingAcks === 1, STEP_MS, 'a held ack');
        const err = new Error(`boom by ${way}`);
        await fail(stream, err);
        assert(stream.destroyed, 'destroyed');
        assertEqual(String(await withTimeout(stream.closed, STEP_MS, 'closed')), String(err), 'closed resolves with the error');
        // released: the peer's writer goes on (nobody listens now: every chunk is acked at once)
        await acked;
        assertEqual(stream.p2pStats.chunksIn, 1, 'chunks after the error');
        let writeFailed = false;
        try {
          const w = stream.writable.getWriter();
          await w.write(new Uint8Array(1));
        } catch (_) {
          writeFailed = true;
        }
        assert(writeFailed, 'a write to the destroyed stream fails');
        assertEqual(sock.targetClientId, peer, 'still paired');
      });
    }

    await report.check('after the errors: emit with ack and a new stream work', async () => {
      const [n] = await withTimeout(new Promise((resolve) => sock.emit2('ask', 5, (...a) => resolve(a))), STEP_MS, 'ask');
      assertEqual(n, 5, 'ack');
      const s = await withTimeout(sock.registerP2pStream(), STEP_MS, 'registerP2pStream');
      const data = randomBytes(100 * 1024);
      const [, back] = await withTimeout(Promise.all([streamOps.writeAll(s, data, 16 * 1024), streamOps.readExactly(s, data.byteLength)]), 30000, 'echo');
      assertEqual(await sha256(back), await sha256(data), 'echo sha256');
      await withTimeout(sock.unregisterP2pTarget(), STEP_MS, 'unregister');
      assertEqual(await withTimeout(s.closed, STEP_MS, 'closed'), undefined, 'closed resolves with undefined when the pairing ends');
    });

    await report.check('no SERVER_ERROR', () => assertEqual(errors, [], 'SERVER_ERRORs'));
    raw.close();
    return { ...report, errors };
  }

  function closeAll() {
    for (const s of sockets) {
      try { s.close(); } catch (_) { /* gone */ }
    }
  }

  return { basic, scenario, streamRules, closeAll, gen, kind };
}
