'use strict';
// The drain with the 1.4.1 client: a stream between two legacy clients (P2P_EMIT_STREAM
// chunks, with no end the relay could see) is in flight when SIGTERM arrives. The relay
// must let it finish (it counts a pair as streaming while chunks flow), refuse newcomers
// meanwhile, tell both clients it is shutting down once the chunks stop, and exit 0.

const { describe, it } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { startRelay } = require('../lib/relay');
const {
  Pool, withTimeout, waitFor, pairUp, connectClient,
} = require('../lib/clients');

const TOTAL = 8 * 1024 * 1024;
const CHUNK = 16 * 1024;
const SHUTTING_DOWN = 'the relay is shutting down';

// A drain is one node's: against a cluster (tests/js/js_interop_cluster.rs) the pair may be
// split across two nodes, of which this test stops one (tests/e2e/cluster_failures.rs covers a
// node that goes away).
const ONE_RELAY = process.env.P2P_INTEROP_CLUSTER_REDIS
  ? { skip: 'a drain stops one relay; cluster nodes that go away are tests/e2e/cluster_failures.rs' } : {};

describe('drain', ONE_RELAY, () => {
  it('a legacy stream in flight at SIGTERM completes intact; newcomers are refused; exit 0', { timeout: 90000 }, async () => {
    const relay = await startRelay(['--drain-timeout-ms', '30000']);
    const pool = new Pool(() => relay);
    try {
      const { a, b } = await pairUp(pool, 'legacy', 'legacy', ['websocket']);
      const told = { a: [], b: [] };
      a.raw.on('SERVER_ERROR', (m) => told.a.push(m));
      b.raw.on('SERVER_ERROR', (m) => told.b.push(m));
      const created = [];
      b.sock.onRegisterP2pStream({}, (d) => created.push(d));
      const dA = await withTimeout(a.sock.registerP2pStream({}), 5000, 'registerP2pStream');
      await waitFor(() => created.length === 1, 5000, 'the receiving duplex');
      const [dB] = created;

      const data = crypto.randomBytes(TOTAL);
      const sent = crypto.createHash('sha256').update(data).digest('hex');
      const hash = crypto.createHash('sha256');
      let got = 0;
      const received = new Promise((resolve) => {
        dB.on('data', (chunk) => {
          hash.update(chunk);
          got += chunk.length;
          if (got >= TOTAL) resolve();
        });
      });
      // Writes with back-pressure (each chunk waits for its ack through the relay).
      const writing = (async () => {
        for (let off = 0; off < TOTAL; off += CHUNK) {
          if (!dA.write(data.subarray(off, off + CHUNK))) {
            await withTimeout(new Promise((r) => dA.once('drain', r)), 15000, `drain at ${off}`);
          }
        }
      })();

      await waitFor(() => got >= TOTAL / 8, 30000, 'the first eighth of the stream');
      process.kill(relay.pid, 'SIGTERM');
      // Newcomers are refused while the stream finishes.
      await waitFor(async () => {
        try {
          const c = await connectClient('legacy', relay.url, `late-${Date.now()}`, { ms: 2000 });
          c.raw.close();
          return false;
        } catch (err) {
          return String(err.message || err).includes(SHUTTING_DOWN);
        }
      }, 10000, 'a newcomer refused with "the relay is shutting down"', 50);

      await withTimeout(Promise.all([writing, received]), 60000, 'the whole stream');
      assert.equal(got, TOTAL);
      assert.equal(hash.digest('hex'), sent, 'the stream arrived intact');

      const exited = await withTimeout(relay.exited, 20000, 'the relay exiting');
      assert.deepEqual(exited, { code: 0, signal: null });
      for (const [who, messages] of Object.entries(told)) {
        assert.ok(messages.includes(SHUTTING_DOWN), `${who} was told: ${JSON.stringify(messages)}`);
      }
    } finally {
      pool.closeAll();
      await relay.stop();
    }
  });
});
