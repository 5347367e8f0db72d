'use strict';
// Admission by token (--auth token) over socket.io-client 4.x (auth {token}, or the plugin's
// token option) and 2.x (the token query parameter), websocket and long-polling: each
// refusal says which, a valid token connects and learns its limits (P2P_LIMITS), and the
// token's peers claim refuses pairings in both directions.

const { describe, it } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const ioV4 = require('socket.io-client');
const p2pClientPlugin = require('p2p-relay-client');
const { useRelay } = require('../lib/harness');
const { legacyP2pPlugin } = require('../lib/legacy');
const {
  KINDS, TRANSPORTS, withTimeout, waitFor, transportName, uniqueId, awaitConnect, rawSocket, TestClient,
} = require('../lib/clients');

const T = { timeout: 20000 };
const SECRET = crypto.randomBytes(32).toString('hex');
const secretDir = fs.mkdtempSync(path.join(os.tmpdir(), 'p2p-relay-auth-'));
const SECRET_FILE = path.join(secretDir, 'secret');
fs.writeFileSync(SECRET_FILE, `${SECRET}\n`);
process.on('exit', () => fs.rmSync(secretDir, { recursive: true, force: true }));

const b64url = (data) => Buffer.from(data).toString('base64url');

/** An HS256 JWT, as `p2p-relay token` mints them. */
function mint(claims, secret = SECRET) {
  const head = b64url(JSON.stringify({ typ: 'JWT', alg: 'HS256' }));
  const body = b64url(JSON.stringify(claims));
  const sig = crypto.createHmac('sha256', secret).update(`${head}.${body}`).digest('base64url');
  return `${head}.${body}.${sig}`;
}

const now = () => Math.floor(Date.now() / 1000);
const tokenFor = (sub, extra = {}) => mint({ sub, exp: now() + 600, ...extra });

const REFUSED = {
  missing: /^clientId '[^']+' was refused: no token: present a token signed for this clientId/,
  expired: /^clientId '[^']+' was refused: the token expired \d+ s ago \(exp \d+\); mint a new one$/,
  signature: /^clientId '[^']+' was refused: the token's signature is not valid for this relay's secret \(HS256\)$/,
  subject: /^clientId '[^']+' was refused: the token was issued for clientId 'someone-else', not this one$/,
};

/** A raw socket of `kind` presenting `token` the way that generation can. */
function rawWithToken(relay, kind, id, token, transports) {
  if (kind === 'js') return rawSocket('js', relay().url, id, { transports, auth: token === undefined ? undefined : { token } });
  const extraQuery = token === undefined ? undefined : `token=${encodeURIComponent(token)}`;
  return rawSocket('legacy', relay().url, id, { transports, extraQuery });
}

async function connectWithToken(relay, opened, kind, id, token, transports) {
  const raw = rawWithToken(relay, kind, id, token, transports);
  opened.push(raw);
  const limits = new Promise((resolve) => raw.once('P2P_LIMITS', resolve));
  await awaitConnect(raw, 5000, `${kind}:${id}`);
  const sock = kind === 'js' ? p2pClientPlugin(raw, id) : legacyP2pPlugin(raw, id);
  const client = new TestClient(kind, id, raw, sock, transports);
  client.limits = limits;
  return client;
}

describe('admission by token', () => {
  const { relay } = useRelay(['--auth', 'token', '--auth-secret-file', SECRET_FILE]);
  let opened = [];
  const closeAll = () => {
    for (const r of opened) {
      try { r.close(); } catch (_) { /* ignore */ }
      try { if (r.io && r.io.engine) r.io.engine.close(); } catch (_) { /* ignore */ }
    }
    opened = [];
  };

  for (const transports of TRANSPORTS) {
    for (const kind of KINDS) {
      describe(`${kind} client over ${transportName(transports)}`, () => {
        it('each refusal says which: missing, expired, badly signed, for another clientId', T, async () => {
          try {
            const cases = [
              [undefined, REFUSED.missing],
              [(id) => mint({ sub: id, exp: now() - 30 }), REFUSED.expired],
              [(id) => mint({ sub: id, exp: now() + 600 }, 'not the relay secret'), REFUSED.signature],
              [() => tokenFor('someone-else'), REFUSED.subject],
            ];
            for (const [make, expected] of cases) {
              const id = uniqueId('T');
              const raw = rawWithToken(relay, kind, id, make && make(id), transports);
              opened.push(raw);
              let error = null;
              try {
                await awaitConnect(raw, 5000, `${kind}:${id}`);
              } catch (e) {
                error = e;
              }
              assert.ok(error, `a connection presenting ${expected} was admitted`);
              assert.match(error.message, expected);
            }
          } finally {
            closeAll();
          }
        });

        it('a valid token connects; the client learns its limits', T, async () => {
          try {
            const id = uniqueId('V');
            const c = await connectWithToken(relay, opened, kind, id, tokenFor(id), transports);
            assert.ok((await c.list()).includes(id));
            const limits = await withTimeout(c.limits, 3000, 'P2P_LIMITS');
            // The defaults: the per-client rate limits are off (0).
            assert.deepEqual(limits, {
              messagesPerSecond: 0,
              messageBurst: 0,
              bytesPerSecond: 0,
              byteBurst: 0,
              maxMessageBytes: 1024 * 1024,
              maxPending: 1024,
              maxStreams: 256,
              ackTimeoutMs: 30000,
            });
          } finally {
            closeAll();
          }
        });

        it('the peers claim refuses pairing in both directions', T, async () => {
          try {
            const other = kind === 'js' ? 'legacy' : 'js';
            const a = uniqueId('PA');
            const b = uniqueId('PB');
            const c = uniqueId('PC');
            const ca = await connectWithToken(relay, opened, kind, a, tokenFor(a, { peers: [b] }), transports);
            const cb = await connectWithToken(relay, opened, other, b, tokenFor(b), transports);
            const cc = await connectWithToken(relay, opened, other, c, tokenFor(c), transports);
            // A's own claim does not name C.
            assert.equal(await ca.sock.registerP2pTarget(c), false);
            await ca.waitError(`pairing with '${c}' is not allowed: it is not among your token's peers`);
            // C asks A: A's claim does not name C either.
            assert.equal(await cc.sock.registerP2pTarget(a), false);
            await cc.waitError(`'${a}' does not allow pairing with you: you are not among its token's peers`);
            // B is named: it pairs.
            assert.equal(await cb.sock.registerP2pTarget(a), true);
            assert.equal(ca.sock.targetClientId, b);
          } finally {
            closeAll();
          }
        });
      });
    }
  }

  it("js-client's token option and p2pLimits", T, async () => {
    try {
      const id = uniqueId('O');
      const raw = ioV4(`${relay().url}/?clientId=${id}`, { transports: ['websocket'], reconnection: false, forceNew: true });
      opened.push(raw);
      const sock = p2pClientPlugin(raw, id, { token: tokenFor(id) });
      assert.equal(sock.p2pLimits, null);
      await awaitConnect(raw, 5000, `js:${id}`);
      await waitFor(() => sock.p2pLimits !== null, 3000, 'p2pLimits');
      assert.equal(sock.p2pLimits.maxMessageBytes, 1024 * 1024);
      assert.ok((await withTimeout(sock.getClientList(), 3000, 'list')).includes(id));
    } finally {
      closeAll();
    }
  });
});

describe('rate limits over Socket.IO', () => {
  // 5 requests at once, then 5/s; 2000 payload bytes per second (bursts of 1 s of it, but
  // at least one maximal message of 1000 bytes): --max-message-bytes keeps the burst small.
  const { pool } = useRelay([
    '--rate-messages', '5', '--rate-burst', '5', '--rate-bytes', '2000', '--max-message-bytes', '1000',
  ]);
  const MESSAGES = 'rate limit reached: at most 5 requests per second (bursts of 5); slow down';
  const BYTES = 'rate limit reached: at most 2000 payload bytes per second (bursts of 2000); slow down';

  for (const kind of KINDS) {
    it(`${kind}: over the request rate, requests are answered with the limit; another client is unaffected`, T, async () => {
      const a = await pool.connect(kind);
      const b = await pool.connect(kind === 'js' ? 'legacy' : 'js');
      const c = await pool.connect(kind);
      const d = await pool.connect(kind);
      assert.equal(await a.sock.registerP2pTarget(b.id), true); // 1
      assert.equal(await c.sock.registerP2pTarget(d.id), true);
      b.raw.on('ping2', (ack) => ack('pong'));
      d.raw.on('ping2', (ack) => ack('pong'));
      const ask = (client, peer) => withTimeout(new Promise((resolve) => {
        client.raw.emit('P2P_EMIT_ACKNOWLEDGE', { targetClientId: peer.id, event: 'ping2', args: [] }, (...r) => resolve(r));
      }), 5000, 'ack');
      const answers = [];
      for (let i = 0; i < 6; i += 1) answers.push(await ask(a, b));
      assert.deepEqual(answers.slice(0, 4), Array(4).fill(['pong']));
      assert.deepEqual(answers[4], [{ error: MESSAGES }]);
      await a.waitError(MESSAGES);
      // C's budget is its own.
      assert.deepEqual(await ask(c, d), ['pong']);
      assert.deepEqual(c.errors, []);
    });
  }

  it('over the byte rate, the emit is refused with the limit', T, async () => {
    const a = await pool.connect('js');
    const b = await pool.connect('legacy');
    assert.equal(await a.sock.registerP2pTarget(b.id), true);
    const got = [];
    b.raw.on('blob', (data) => got.push(data.length));
    const pad = 'x'.repeat(900);
    a.raw.emit('P2P_EMIT', { targetClientId: b.id, event: 'blob', args: [pad] });
    a.raw.emit('P2P_EMIT', { targetClientId: b.id, event: 'blob', args: [pad] });
    a.raw.emit('P2P_EMIT', { targetClientId: b.id, event: 'blob', args: [pad] });
    await a.waitError(BYTES);
    await waitFor(() => got.length === 2, 3000, 'two blobs delivered');
  });

});

// Per-address limits are each node's own (docs/CLUSTER.md): against a two-node cluster,
// whose clients alternate between the nodes, an address may hold twice as many.
const PER_NODE = process.env.P2P_INTEROP_CLUSTER_REDIS
  ? { skip: 'per-address limits are per node in a cluster' } : {};

describe('connections per address', PER_NODE, () => {
  const { pool } = useRelay(['--max-connections-per-ip', '6']);
  it('one address may hold --max-connections-per-ip connections', T, async () => {
    const held = [];
    for (let i = 0; i < 6; i += 1) held.push(await pool.connect(i % 2 ? 'js' : 'legacy'));
    for (const kind of KINDS) {
      const raw = pool.raw(kind, uniqueId('X'), { transports: ['websocket'] });
      await assert.rejects(awaitConnect(raw, 5000, 'seventh'),
        (e) => e.message === 'too many connections from 127.0.0.1: 6 are open, the most one address may have');
    }
    held[0].close();
    // Once one leaves, a slot is free again.
    await withTimeout((async () => {
      for (;;) {
        try { return await pool.connect('js'); } catch (_) { await new Promise((r) => setTimeout(r, 50)); }
      }
    })(), 5000, 'a free slot');
  });
});

describe('the connect rate per address', PER_NODE, () => {
  const { pool } = useRelay(['--connect-rate-per-ip', '1', '--connect-burst-per-ip', '3']);
  it('connecting faster than the rate is refused with the limit', T, async () => {
    for (let i = 0; i < 3; i += 1) await pool.connect(i % 2 ? 'js' : 'legacy');
    for (const kind of KINDS) {
      const raw = pool.raw(kind, uniqueId('F'), { transports: ['websocket'] });
      await assert.rejects(awaitConnect(raw, 5000, 'too fast'), (e) => /^connecting too fast from 127\.0\.0\.1: at most 1 new connections per second \(bursts of 3\); wait and retry$/.test(e.message));
    }
  });
});
