'use strict';
// Bad input and failed requests: each gets the exact SERVER_ERROR text of docs/CONVENTIONS.md,
// its ack answered where one was asked, and the connection keeps working (LIST_CLIENTS round
// trip). The relay runs with --max-message-bytes 4096 and --ack-timeout-ms 500.

const { describe, it } = require('node:test');
const assert = require('node:assert/strict');
const { useRelay } = require('../lib/harness');
const {
  KINDS, TRANSPORTS, withTimeout, waitFor, nextEvent, emitWithAck, transportName, delay, uniqueId,
  awaitConnect,
} = require('../lib/clients');

const T = { timeout: 20000 };
const MAX_BYTES = 4096;
const ACK_TIMEOUT_MS = 500;

const MSG = {
  payload: 'P2P_EMIT payload must be an object {targetClientId, event, args}',
  target: 'targetClientId must be a string',
  event: 'event must be a string',
  args: 'args must be an array',
  reserved: (e) => `event name '${e}' is reserved`,
  notPaired: (x) => `not paired with '${x}'`,
  notConnected: (x) => `target client '${x}' is not connected`,
  self: 'cannot register to yourself',
  alreadyPaired: (y) => `already paired with '${y}'`,
  stream: 'cannot open a stream: not paired',
  unregister: 'cannot unregister: not paired',
  tooBig: new RegExp(`^payload of (\\d+) bytes exceeds the limit of ${MAX_BYTES} bytes$`),
  ackTimeout: (e, x) => `no ack for event '${e}' from '${x}' within ${ACK_TIMEOUT_MS} ms`,
  noClientId: 'clientId query parameter is required',
  invalidId: /^invalid clientId: \S/,
};
const RESERVED = ['connect', 'connect_error', 'disconnect', 'disconnecting', 'newListener', 'removeListener'];

const other = (kind) => (kind === 'js' ? 'legacy' : 'js');

/**
 * Wait for `expected` SERVER_ERROR messages (strings or RegExps, in this order), then check
 * the connection still answers LIST_CLIENTS and no other SERVER_ERROR came; clears the log.
 */
async function expectErrors(client, expected) {
  const matches = (m, e) => (e instanceof RegExp ? e.test(m) : m === e);
  await waitFor(() => client.errors.length >= expected.length, 3000,
    `${client.label}: ${expected.length} SERVER_ERROR(s) ${expected.join(' | ')} (got ${JSON.stringify(client.errors)})`);
  const list = await client.list();
  assert.ok(list.includes(client.id), 'the connection still works and is still listed');
  assert.equal(client.errors.length, expected.length, `exactly the expected SERVER_ERRORs: ${JSON.stringify(client.errors)}`);
  client.errors.forEach((m, i) => assert.ok(matches(m, expected[i]), `SERVER_ERROR ${i}: got ${JSON.stringify(m)}, expected ${expected[i]}`));
  const got = client.errors.slice();
  client.errors.length = 0;
  return got;
}

/** Record whether `client` receives `event` at all (its raw socket). */
function watch(client, event) {
  const seen = [];
  client.raw.on(event, (...args) => seen.push(args));
  return seen;
}

describe('bad input and failed requests', () => {
  const { pool, relay } = useRelay(['--max-message-bytes', String(MAX_BYTES), '--ack-timeout-ms', String(ACK_TIMEOUT_MS)]);

  for (const transports of TRANSPORTS) {
    for (const kind of KINDS) {
      const opts = { transports };
      describe(`${kind} client over ${transportName(transports)}`, () => {
        it('P2P_EMIT with a missing or non-object payload', T, async () => {
          const a = await pool.connect(kind, opts);
          a.raw.emit('P2P_EMIT');
          await expectErrors(a, [MSG.payload]);
          for (const bad of ['text', 42, null, true, [1, 2]]) a.raw.emit('P2P_EMIT', bad);
          await expectErrors(a, Array(5).fill(MSG.payload));
        });

        it('P2P_EMIT_ACKNOWLEDGE with a missing or non-object payload: ack gets {error}', T, async () => {
          const a = await pool.connect(kind, opts);
          const res = await emitWithAck(a.raw, 'P2P_EMIT_ACKNOWLEDGE', [], 3000, 'ack without payload');
          assert.deepEqual(res, [{ error: MSG.payload }]);
          const res2 = await emitWithAck(a.raw, 'P2P_EMIT_ACKNOWLEDGE', ['text'], 3000, 'ack with a string payload');
          assert.deepEqual(res2, [{ error: MSG.payload }]);
          await expectErrors(a, [MSG.payload, MSG.payload]);
        });

        it('targetClientId missing or not a string', T, async () => {
          const a = await pool.connect(kind, opts);
          a.raw.emit('P2P_EMIT', { event: 'x', args: [] });
          a.raw.emit('P2P_EMIT', { targetClientId: 5, event: 'x', args: [] });
          await expectErrors(a, [MSG.target, MSG.target]);
          const res = await emitWithAck(a.raw, 'P2P_EMIT_ACKNOWLEDGE', [{ targetClientId: null, event: 'x', args: [] }], 3000);
          assert.deepEqual(res, [{ error: MSG.target }]);
          await expectErrors(a, [MSG.target]);
        });

        it('args that are not an array (missing args means no arguments)', T, async () => {
          const b = await pool.connect(other(kind), opts);
          const a = await pool.connect(kind, opts);
          assert.equal(await a.sock.registerP2pTarget(b.id), true);
          const seen = watch(b, 'x');
          for (const bad of ['nope', { 0: 1 }, 5]) a.raw.emit('P2P_EMIT', { targetClientId: b.id, event: 'x', args: bad });
          await expectErrors(a, [MSG.args, MSG.args, MSG.args]);
          const res = await emitWithAck(a.raw, 'P2P_EMIT_ACKNOWLEDGE', [{ targetClientId: b.id, event: 'x', args: 'nope' }], 3000);
          assert.deepEqual(res, [{ error: MSG.args }]);
          await expectErrors(a, [MSG.args]);
          assert.deepEqual(seen, [], 'nothing was delivered');
          // missing args: delivered with no arguments
          const got = nextEvent(b.raw, 'noArgs', 3000, 'event without args');
          a.raw.emit('P2P_EMIT', { targetClientId: b.id, event: 'noArgs' });
          assert.deepEqual(await got, []);
          b.raw.on('noArgsAck', (fn) => fn('ok'));
          const acked = await emitWithAck(a.raw, 'P2P_EMIT_ACKNOWLEDGE', [{ targetClientId: b.id, event: 'noArgsAck' }], 3000);
          assert.deepEqual(acked, ['ok']);
          assert.deepEqual(a.errors, []);
        });

        it('event missing or not a string', T, async () => {
          const b = await pool.connect(other(kind), opts);
          const a = await pool.connect(kind, opts);
          assert.equal(await a.sock.registerP2pTarget(b.id), true);
          for (const bad of [undefined, 7, null, { a: 1 }]) {
            const payload = { targetClientId: b.id, args: [1] };
            if (bad !== undefined) payload.event = bad;
            a.raw.emit('P2P_EMIT', payload);
          }
          await expectErrors(a, Array(4).fill(MSG.event));
          const res = await emitWithAck(a.raw, 'P2P_EMIT_ACKNOWLEDGE', [{ targetClientId: b.id, event: 3, args: [] }], 3000);
          assert.deepEqual(res, [{ error: MSG.event }]);
          await expectErrors(a, [MSG.event]);
        });

        it('reserved event names are refused and never reach the peer', T, async () => {
          const b = await pool.connect(other(kind), opts);
          const a = await pool.connect(kind, opts);
          assert.equal(await a.sock.registerP2pTarget(b.id), true);
          const marker = `marker-${uniqueId()}`;
          const leaked = [];
          for (const name of RESERVED) {
            b.raw.on(name, (...args) => { if (args.includes(marker)) leaked.push(name); });
          }
          for (const name of RESERVED) a.raw.emit('P2P_EMIT', { targetClientId: b.id, event: name, args: [marker] });
          await expectErrors(a, RESERVED.map(MSG.reserved));
          for (const name of RESERVED) {
            const res = await emitWithAck(a.raw, 'P2P_EMIT_ACKNOWLEDGE', [{ targetClientId: b.id, event: name, args: [marker] }], 3000);
            assert.deepEqual(res, [{ error: MSG.reserved(name) }]);
          }
          await expectErrors(a, RESERVED.map(MSG.reserved));
          assert.deepEqual(leaked, []);
          // the peer is still connected, listed and paired
          assert.equal(b.connected, true);
          assert.ok((await a.list()).includes(b.id));
          assert.equal(b.sock.targetClientId, a.id);
          const got = nextEvent(b.raw, 'afterReserved', 3000);
          a.sock.emit2('afterReserved', 1);
          assert.deepEqual(await got, [1]);
        });

        it('emit to an unknown or unpaired target', T, async () => {
          const a = await pool.connect(kind, opts);
          const b = await pool.connect(other(kind), opts);
          const c = await pool.connect(other(kind), opts);
          const ghost = uniqueId('ghost');
          a.raw.emit('P2P_EMIT', { targetClientId: ghost, event: 'x', args: [] });
          a.raw.emit('P2P_EMIT', { targetClientId: b.id, event: 'x', args: [] });
          await expectErrors(a, [MSG.notPaired(ghost), MSG.notPaired(b.id)]);
          assert.equal(await a.sock.registerP2pTarget(b.id), true);
          const seenC = watch(c, 'x');
          a.raw.emit('P2P_EMIT', { targetClientId: c.id, event: 'x', args: [1] });
          const res = await emitWithAck(a.raw, 'P2P_EMIT_ACKNOWLEDGE', [{ targetClientId: c.id, event: 'x', args: [2] }], 3000);
          assert.deepEqual(res, [{ error: MSG.notPaired(c.id) }]);
          await expectErrors(a, [MSG.notPaired(c.id), MSG.notPaired(c.id)]);
          assert.deepEqual(seenC, [], 'an unpaired client receives nothing');
        });

        it('P2P_REGISTER to a missing client, to itself, and while paired', T, async () => {
          const a = await pool.connect(kind, opts);
          const b = await pool.connect(other(kind), opts);
          const ghost = uniqueId('ghost');
          assert.deepEqual(await emitWithAck(a.raw, 'P2P_REGISTER', [ghost], 3000), [false]);
          await expectErrors(a, [MSG.notConnected(ghost)]);
          assert.deepEqual(await emitWithAck(a.raw, 'P2P_REGISTER', [a.id], 3000), [false]);
          await expectErrors(a, [MSG.self]);
          assert.equal(await a.sock.registerP2pTarget(b.id), true);
          const c = await pool.connect(other(kind), opts);
          const asked = watch(c, 'P2P_REGISTER');
          assert.deepEqual(await emitWithAck(a.raw, 'P2P_REGISTER', [c.id], 3000), [false]);
          await expectErrors(a, [MSG.alreadyPaired(b.id)]);
          assert.deepEqual(asked, [], 'the third client was never asked');
          assert.equal(b.sock.targetClientId, a.id, 'the pairing is untouched');
          const got = nextEvent(b.raw, 'still', 3000);
          a.sock.emit2('still', true);
          assert.deepEqual(await got, [true]);
        });

        it('registerP2pStream while unpaired (the plugin sends targetClientId undefined, i.e. null)', T, async () => {
          const a = await pool.connect(kind, opts);
          assert.equal(await withTimeout(a.sock.registerP2pStream({}), 3000, 'registerP2pStream unpaired'), null);
          await expectErrors(a, [MSG.stream]);
        });

        it('P2P_REGISTER_STREAM naming a client while unpaired', T, async () => {
          const a = await pool.connect(kind, opts);
          const b = await pool.connect(other(kind), opts);
          const asked = watch(b, 'P2P_REGISTER_STREAM');
          assert.deepEqual(await emitWithAck(a.raw, 'P2P_REGISTER_STREAM', [b.id], 3000), [false]);
          await expectErrors(a, [MSG.stream]);
          assert.deepEqual(await emitWithAck(a.raw, 'P2P_REGISTER_STREAM', [uniqueId('ghost')], 3000), [false]);
          await expectErrors(a, [MSG.stream]);
          assert.deepEqual(asked, [], 'the named client was never asked');
        });

        it('P2P_UNREGISTER while unpaired: ack () and SERVER_ERROR', T, async () => {
          const a = await pool.connect(kind, opts);
          assert.deepEqual(await emitWithAck(a.raw, 'P2P_UNREGISTER', [], 3000, 'P2P_UNREGISTER unpaired'), []);
          await expectErrors(a, [MSG.unregister]);
        });

        it(`payloads over --max-message-bytes ${MAX_BYTES} are refused, smaller ones pass`, T, async () => {
          const b = await pool.connect(other(kind), opts);
          const a = await pool.connect(kind, opts);
          assert.equal(await a.sock.registerP2pTarget(b.id), true);
          const seen = watch(b, 'big');
          a.sock.emit2('big', 'x'.repeat(2 * MAX_BYTES));
          const [m1] = await expectErrors(a, [MSG.tooBig]);
          assert.ok(Number(MSG.tooBig.exec(m1)[1]) > MAX_BYTES, m1);
          const res = await withTimeout(new Promise((resolve) => {
            a.sock.emit2('big', { data: Buffer.alloc(2 * MAX_BYTES, 7) }, (...r) => resolve(r));
          }), 3000, 'ack of an oversized binary emit');
          assert.equal(res.length, 1);
          assert.ok(res[0] && MSG.tooBig.test(res[0].error), `ack ${JSON.stringify(res)}`);
          const [m2] = await expectErrors(a, [MSG.tooBig]);
          assert.equal(res[0].error, m2, 'ack error and SERVER_ERROR carry the same message');
          assert.ok(Number(MSG.tooBig.exec(m2)[1]) > 2 * MAX_BYTES - 1, m2);
          assert.deepEqual(seen, [], 'the oversized payloads were not delivered');
          const small = nextEvent(b.raw, 'small', 3000);
          a.sock.emit2('small', Buffer.alloc(1000, 1), 'y'.repeat(1000));
          assert.deepEqual(await small, [Buffer.alloc(1000, 1), 'y'.repeat(1000)]);
          assert.deepEqual(a.errors, []);
        });

        it(`a target that never acks: after ${ACK_TIMEOUT_MS} ms the sender's ack gets {error} and a SERVER_ERROR`, T, async () => {
          const b = await pool.connect(other(kind), opts);
          const a = await pool.connect(kind, opts);
          assert.equal(await a.sock.registerP2pTarget(b.id), true);
          let lateAck = null;
          b.raw.on('neverAcks', (x, fn) => { lateAck = fn; });
          let calls = 0;
          const started = Date.now();
          const res = await withTimeout(new Promise((resolve) => {
            a.sock.emit2('neverAcks', 1, (...r) => { calls += 1; resolve(r); });
          }), 5000, 'the relay answers a missing ack');
          const elapsed = Date.now() - started;
          const msg = MSG.ackTimeout('neverAcks', b.id);
          assert.deepEqual(res, [{ error: msg }]);
          assert.ok(elapsed >= ACK_TIMEOUT_MS - 50, `answered after ${elapsed} ms`);
          await expectErrors(a, [msg]);
          // the target acks too late: nothing more reaches the sender, nothing breaks
          assert.equal(typeof lateAck, 'function');
          lateAck('late');
          await delay(100);
          await a.list();
          await b.list();
          assert.equal(calls, 1);
          assert.deepEqual(a.errors, []);
          const got = nextEvent(b.raw, 'afterTimeout', 3000);
          a.sock.emit2('afterTimeout', 2);
          assert.deepEqual(await got, [2]);
        });

        it('unregister resolves even when the peer never acks P2P_UNREGISTER', T, async () => {
          // the peer: a bare socket that accepts pairing but never acks P2P_UNREGISTER
          const peerId = uniqueId('mute');
          const peer = pool.raw(other(kind), peerId, { transports });
          await awaitConnect(peer, 5000, peerId);
          peer.on('P2P_REGISTER', (src, fn) => fn(true));
          const a = await pool.connect(kind, opts);
          assert.equal(await a.sock.registerP2pTarget(peerId), true);
          const started = Date.now();
          await withTimeout(a.sock.unregisterP2pTarget(), 5000, 'unregister with a mute peer');
          assert.ok(Date.now() - started < 4000);
          assert.equal(a.sock.targetClientId, undefined);
          // both are free again
          assert.equal(await a.sock.registerP2pTarget(peerId), true);
        });

        it('connections without a valid clientId are refused with the message', T, async () => {
          const cases = [
            [undefined, MSG.noClientId],
            ['x'.repeat(129), MSG.invalidId],
            ['bad\u0001id', MSG.invalidId],
          ];
          for (const [id, expected] of cases) {
            const raw = pool.raw(kind, id, { transports });
            let error = null;
            try {
              await awaitConnect(raw, 5000, `clientId ${JSON.stringify(id)}`);
            } catch (e) {
              error = e;
            }
            assert.ok(error, `connection with clientId ${JSON.stringify(id)} was accepted`);
            if (expected instanceof RegExp) assert.match(error.message, expected);
            else assert.equal(error.message, expected);
          }
          // the relay is fine afterwards
          const ok = await pool.connect(kind, opts);
          assert.ok((await ok.list()).includes(ok.id));
        });
      });
    }
  }

  it('a legacy peer whose plugin called offRegisterP2pStream never answers: the requester gets null after the ack timeout', T, async () => {
    const b = await pool.connect('legacy', { transports: ['websocket'] });
    const a = await pool.connect('js', { transports: ['websocket'] });
    a.raw.on('SERVER_ERROR', () => {});
    assert.equal(await a.sock.registerP2pTarget(b.id), true);
    b.sock.onRegisterP2pStream({}, () => {});
    b.sock.offRegisterP2pStream();
    const started = Date.now();
    assert.equal(await withTimeout(a.sock.registerP2pStream({}), 5000, 'stream request to a mute peer'), null);
    assert.ok(Date.now() - started >= ACK_TIMEOUT_MS - 50);
    assert.ok(relay().isRunning());
  });
});
