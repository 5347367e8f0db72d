'use strict';
// The relay with --tls-cert/--tls-key: socket.io-client 4.x (js-client) and 2.x (the legacy
// 1.4.1-style plugin), over wss and https long-polling, trusting the certificate's CA (the
// `ca` option), connect, pair both ways and relay binary; plain http to the port fails.
//
// The certificate is a development one: a first relay started without TLS creates a CA and
// a server certificate for 127.0.0.1 in its data directory, which the TLS relay then serves.

const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const p2pClientPlugin = require('p2p-relay-client');
const { startRelay } = require('../lib/relay');
const { legacyP2pPlugin } = require('../lib/legacy');
const {
  TRANSPORTS, withTimeout, nextEvent, uniqueId, awaitConnect, rawSocket, TestClient, transportName,
} = require('../lib/clients');

const T = { timeout: 20000 };
// Against a cluster (tests/js/js_interop_cluster.rs) the relays are the harness's two nodes,
// which start without certificate files: TLS is a front end's matter, checked here against
// one relay and in tests/e2e/tls.rs.
const ONE_RELAY = process.env.P2P_INTEROP_CLUSTER_REDIS
  ? { skip: 'TLS is checked against one relay (here, and tests/e2e/tls.rs)' } : {};
const certDir = fs.mkdtempSync(path.join(os.tmpdir(), 'p2p-relay-tls-'));
process.on('exit', () => fs.rmSync(certDir, { recursive: true, force: true }));

let relay = null;
let ca = null;
const opened = [];

before(async () => {
  if (ONE_RELAY.skip) return;
  const plain = await startRelay([]);
  try {
    for (const file of ['ca.pem', 'server.pem', 'server.key.pem']) {
      fs.copyFileSync(path.join(plain.dataDir, file), path.join(certDir, file));
    }
  } finally {
    await plain.stop(); // even when a copy failed: a running relay would hold this file's process
  }
  ca = fs.readFileSync(path.join(certDir, 'ca.pem'));
  relay = await startRelay([
    '--tls-cert', path.join(certDir, 'server.pem'),
    '--tls-key', path.join(certDir, 'server.key.pem'),
  ]);
  assert.match(relay.url, /^https:\/\/127\.0\.0\.1:\d+$/);
}, { timeout: 30000 });

afterEach(() => {
  for (const raw of opened.splice(0)) {
    try { raw.close(); } catch (_) { /* ignore */ }
    try { if (raw.io && raw.io.engine) raw.io.engine.close(); } catch (_) { /* ignore */ }
  }
});

after(async () => { if (relay) await relay.stop(); }, { timeout: 10000 });

async function connect(kind, transports) {
  const id = uniqueId(kind === 'js' ? 'J' : 'L');
  const raw = rawSocket(kind, relay.url, id, { transports, ca });
  opened.push(raw);
  await awaitConnect(raw, 5000, `${kind}:${id} over TLS`);
  const sock = kind === 'js' ? p2pClientPlugin(raw, id) : legacyP2pPlugin(raw, id);
  return new TestClient(kind, id, raw, sock, transports);
}

describe('https and wss', ONE_RELAY, () => {
  for (const transports of [...TRANSPORTS, ['polling', 'websocket']]) {
    for (const [kA, kB] of [['js', 'legacy'], ['legacy', 'js']]) {
      it(`${kA} -> ${kB} over ${transportName(transports)}: pair, emit binary, ack`, T, async () => {
        const a = await connect(kA, transports);
        const b = await connect(kB, transports);
        const ok = await withTimeout(a.sock.registerP2pTarget(b.id), 5000, 'registerP2pTarget');
        assert.equal(ok, true, `pairing failed; errors ${JSON.stringify(a.errors)}`);
        const got = nextEvent(b.raw, 'hello', 5000, 'hello over TLS');
        a.sock.emit2('hello', 'over tls', Buffer.from([1, 2, 3]));
        const [text, bin] = await got;
        assert.equal(text, 'over tls');
        assert.deepEqual(Buffer.from(bin), Buffer.from([1, 2, 3]));
        b.raw.on('ask', (x, fn) => fn(x + 1, Buffer.from('back')));
        const answer = await withTimeout(new Promise((resolve) => {
          a.sock.emit2('ask', 41, (...r) => resolve(r));
        }), 5000, 'the ack over TLS');
        assert.equal(answer[0], 42);
        assert.deepEqual(Buffer.from(answer[1]), Buffer.from('back'));
      });
    }
  }

  it('a client that does not trust the certificate cannot connect', T, async () => {
    const raw = rawSocket('js', relay.url, uniqueId('U'), { transports: ['websocket'] });
    opened.push(raw);
    // socket.io-client reports it as a bare 'websocket error'.
    await assert.rejects(awaitConnect(raw, 5000, 'untrusted'));
  });

  it('plain http to the TLS port fails', T, async () => {
    const url = relay.url.replace('https://', 'http://');
    for (const transports of TRANSPORTS) {
      const raw = rawSocket('js', url, uniqueId('P'), { transports });
      opened.push(raw);
      await assert.rejects(awaitConnect(raw, 5000, `plain ${transportName(transports)}`));
    }
    // An https client still connects afterwards.
    const c = await connect('js', ['websocket']);
    assert.ok((await c.list()).includes(c.id));
  });
});
