'use strict';
// Stream churn in ONE pairing with an unchanged 1.4.1 opener: 1,000 times open a stream
// (registerP2pStream), write one small distinct chunk, wait until the acceptor's newest duplex
// got exactly that chunk, destroy both duplexes. Guards against the relay keeping a stream
// grant per Socket.IO stream forever: the 1.4.1 protocol has no stream ids and no
// end-of-stream, so the relay never learns that a legacy stream is over, and the 257th
// registerP2pStream of a pairing got null ("too many open streams in this pairing (256)").
// Acceptors: a legacy client and a js-client. Afterwards the pairing still carries an emit2
// with ack, and no SERVER_ERROR was seen.

const { describe, it } = require('node:test');
const assert = require('node:assert/strict');
const { Duplex } = require('node:stream');
const { useRelay } = require('../lib/harness');
const { withTimeout, nextEvent, pairUp } = require('../lib/clients');

const ITERATIONS = 1000;
const STEP_MS = 5000; // bound of every single wait
const T = { timeout: 45000 };
const TRANSPORTS = ['websocket'];
/** the socket events a legacy duplex listens for on its client's socket (see lib/legacy.js) */
const LEGACY_STREAM_EVENTS = ['P2P_EMIT_STREAM', 'disconnect', 'P2P_DISCONNECT', 'P2P_UNREGISTER'];

/** Copy of the current listeners of every legacy stream event on a raw 2.x socket. */
function listenerSnapshot(raw) {
  const snap = new Map();
  for (const ev of LEGACY_STREAM_EVENTS) snap.set(ev, raw.listeners(ev).slice());
  return snap;
}

/** The listeners added on `raw` since `snap` was taken, as [event, fn] pairs. */
function addedListeners(raw, snap) {
  const added = [];
  for (const ev of LEGACY_STREAM_EVENTS) {
    const before = new Set(snap.get(ev));
    for (const fn of raw.listeners(ev)) if (!before.has(fn)) added.push([ev, fn]);
  }
  return added;
}

/**
 * Destroy a duplex. For a legacy client also take its socket listeners off, as legacy.js does
 * when it destroys a duplex on disconnect: a destroyed legacy duplex would otherwise still be
 * handed every chunk sent to its client (no stream ids in the 1.4.1 protocol).
 */
function dispose(client, duplex, added) {
  if (!duplex.destroyed) duplex.destroy();
  if (client.kind === 'legacy') for (const [ev, fn] of added) client.raw.off(ev, fn);
}

/** Write `buf` and resolve once its ack came back (the write callback), or reject. */
function writeAcked(duplex, buf) {
  return new Promise((resolve, reject) => duplex.write(buf, (err) => (err ? reject(err) : resolve())));
}

function streamListenerCount(client) {
  return client.raw.listeners('P2P_EMIT_STREAM').length;
}

describe('stream churn: 1,000 streams opened and destroyed in one pairing', () => {
  const { pool } = useRelay();

  for (const acceptorKind of ['legacy', 'js']) {
    it(`legacy opener -> ${acceptorKind} acceptor over websocket: ${ITERATIONS} streams, each a Duplex that carries its chunk`, T, async () => {
      const started = Date.now();
      const { a, b } = await pairUp(pool, 'legacy', acceptorKind, TRANSPORTS);
      const baseA = streamListenerCount(a);
      const baseB = streamListenerCount(b);
      let accepted = [];
      b.sock.onRegisterP2pStream({}, (d) => accepted.push(d));
      const streamErrors = [];

      for (let i = 1; i <= ITERATIONS; i += 1) {
        const where = `stream ${i} of ${ITERATIONS} (legacy opener -> ${acceptorKind} acceptor)`;
        try {
          const snapA = listenerSnapshot(a.raw);
          const snapB = b.kind === 'legacy' ? listenerSnapshot(b.raw) : null;
          accepted = [];
          const dA = await withTimeout(a.sock.registerP2pStream({}), STEP_MS, 'registerP2pStream');
          assert.ok(dA instanceof Duplex, `registerP2pStream resolved ${dA}, not a Duplex`);
          assert.equal(accepted.length, 1, `the acceptor got ${accepted.length} duplexes for the request, not 1`);
          const [dB] = accepted;
          assert.ok(dB instanceof Duplex, 'the acceptor\'s onRegisterP2pStream callback got a Duplex');
          const addedA = addedListeners(a.raw, snapA);
          const addedB = snapB ? addedListeners(b.raw, snapB) : [];
          dA.on('error', (e) => streamErrors.push(`${where}: opener duplex: ${e.message}`));
          dB.on('error', (e) => streamErrors.push(`${where}: acceptor duplex: ${e.message}`));

          const chunk = Buffer.from(`churn ${i}`);
          const arrived = nextEvent(dB, 'data', STEP_MS, 'the chunk at the acceptor\'s newest duplex');
          await withTimeout(writeAcked(dA, chunk), STEP_MS, 'the ack of the chunk (write callback)');
          const [got] = await arrived;
          assert.deepEqual(got, chunk, `the acceptor's newest duplex received ${JSON.stringify(String(got))}`);
          assert.equal(dB.p2pStats.chunksIn, 1, `the acceptor's newest duplex received ${dB.p2pStats.chunksIn} chunks, not 1`);
          assert.equal(dA.p2pStats.chunksIn, 0, 'the opener\'s duplex received a chunk nobody sent it');

          dispose(a, dA, addedA);
          dispose(b, dB, addedB);
          // old duplexes do not pile up: each client holds no stream listener of its own
          assert.equal(streamListenerCount(a), baseA, 'P2P_EMIT_STREAM listeners left on the opener');
          assert.equal(streamListenerCount(b), baseB, 'P2P_EMIT_STREAM listeners left on the acceptor');
          if (a.errors.length || b.errors.length) {
            throw new Error(`SERVER_ERROR: opener ${JSON.stringify(a.errors)}, acceptor ${JSON.stringify(b.errors)}`);
          }
        } catch (err) {
          throw new Error(
            `${where} failed: ${err.message}; opener SERVER_ERRORs ${JSON.stringify(a.errors)}, ` +
            `acceptor SERVER_ERRORs ${JSON.stringify(b.errors)}`,
            { cause: err },
          );
        }
      }

      assert.deepEqual(streamErrors, [], 'no stream emitted an error');
      assert.deepEqual(a.errors, [], 'no SERVER_ERROR at the opener');
      assert.deepEqual(b.errors, [], 'no SERVER_ERROR at the acceptor');
      assert.equal(a.sock.targetClientId, b.id, 'the opener is still paired');
      assert.equal(b.sock.targetClientId, a.id, 'the acceptor is still paired');

      // the pairing still works: an emit2 with ack, round trip
      b.raw.on('after-churn', (n, ack) => ack(n + 1, 'still paired'));
      const answer = await withTimeout(new Promise((resolve) => {
        a.sock.emit2('after-churn', ITERATIONS, (...res) => resolve(res));
      }), STEP_MS, 'the ack of emit2 after the churn');
      assert.deepEqual(answer, [ITERATIONS + 1, 'still paired']);
      assert.deepEqual(a.errors, []);
      assert.deepEqual(b.errors, []);
      process.stdout.write(`# legacy->${acceptorKind}: ${ITERATIONS} streams in ${((Date.now() - started) / 1000).toFixed(2)} s\n`);
    });
  }
});
