'use strict';
// P2P_EMIT and P2P_EMIT_ACKNOWLEDGE between js-client (4.x) and the legacy client (2.x):
// JSON values and binary nested anywhere, multi-argument binary acks, and message order.

const { describe, it } = require('node:test');
const assert = require('node:assert/strict');
const { useRelay } = require('../lib/harness');
const {
  TRANSPORTS, MIXED_PAIRS, withTimeout, waitFor, nextEvent, pairUp, transportName, delay,
} = require('../lib/clients');

const T = { timeout: 30000 };
const WINDOW = 500;

/** JSON values of every kind and Buffers at the top level and nested in objects and arrays. */
function richArgs(tag) {
  return [
    {
      tag,
      text: 'h\u00e9llo \u2713 \ud83d\ude80',
      int: 42,
      float: 3.25,
      negative: -7,
      zero: 0,
      maxSafe: 2 ** 53 - 1,
      minSafe: -(2 ** 53 - 1),
      tiny: 1e-300,
      huge: 1.5e300,
      yes: true,
      no: false,
      nothing: null,
      bin: Buffer.from([0, 1, 2, 253, 254, 255]),
      nested: [1, 'two', { deep: Buffer.from('deep'), list: [Buffer.alloc(0), [Buffer.from([7])]] }],
      emptyObj: {},
      emptyArr: [],
    },
    Buffer.from('top-level binary'),
    12345,
    -0.5,
    'plain string',
    '',
    [Buffer.from([9, 8, 7]), { x: [null, 1.5, Buffer.from([0])] }],
    Buffer.alloc(20000, 0xab),
    null,
    true,
  ];
}

/** Assert deep equality and that every Buffer arrived as a Buffer. */
function assertSame(actual, expected, what) {
  assert.deepStrictEqual(actual, expected, `${what}: values or types differ`);
}

describe('emit', () => {
  const { pool } = useRelay();

  for (const transports of TRANSPORTS) {
    for (const [kA, kB] of MIXED_PAIRS) {
      describe(`${kA} <-> ${kB} over ${transportName(transports)}`, () => {
        it('P2P_EMIT: JSON and binary nested anywhere arrive with the same values and types, both ways', T, async () => {
          const { a, b } = await pairUp(pool, kA, kB, transports);
          const toB = nextEvent(b.raw, 'rich', 5000, 'rich event at B');
          const argsAB = richArgs('a->b');
          a.sock.emit2('rich', ...argsAB);
          assertSame(await toB, argsAB, `${a.kind} -> ${b.kind}`);

          const toA = nextEvent(a.raw, 'rich', 5000, 'rich event at A');
          const argsBA = richArgs('b->a');
          b.sock.emit2('rich', ...argsBA);
          assertSame(await toA, argsBA, `${b.kind} -> ${a.kind}`);

          // no arguments at all, and a single Buffer
          const none = nextEvent(b.raw, 'none', 3000);
          a.sock.emit2('none');
          assert.deepEqual(await none, []);
          const one = nextEvent(b.raw, 'one', 3000);
          a.sock.emit2('one', Buffer.from([1, 2, 3]));
          const [buf] = await one;
          assert.ok(Buffer.isBuffer(buf), 'a Buffer stays a Buffer');
          assert.deepEqual(buf, Buffer.from([1, 2, 3]));
          assert.deepEqual(a.errors, []);
          assert.deepEqual(b.errors, []);
        });

        it('P2P_EMIT_ACKNOWLEDGE: arguments arrive, and multi-argument binary acks come back unchanged, both ways', T, async () => {
          const { a, b } = await pairUp(pool, kA, kB, transports);
          const ackArgs = [
            Buffer.from([1, 2, 3]),
            { nested: { b: Buffer.from('z'), arr: [Buffer.from([0, 255])] }, n: 1.5 },
            'str',
            7,
            null,
            [Buffer.alloc(3), false],
          ];
          let receivedAtB;
          b.raw.on('withAck', (...args) => {
            const fn = args.pop();
            receivedAtB = args;
            fn(...ackArgs);
          });
          const sent = richArgs('ack a->b');
          const res = await withTimeout(new Promise((resolve) => {
            a.sock.emit2('withAck', ...sent, (...r) => resolve(r));
          }), 5000, 'ack from B');
          assertSame(receivedAtB, sent, 'arguments at the target');
          assertSame(res, ackArgs, 'ack arguments at the sender');

          // B -> A: an ack with zero arguments and one with a single Buffer
          a.raw.on('ackNone', (fn) => fn());
          a.raw.on('ackBuf', (x, fn) => fn(Buffer.from([x])));
          const none = await withTimeout(new Promise((resolve) => {
            b.sock.emit2('ackNone', (...r) => resolve(r));
          }), 5000, 'empty ack');
          assert.deepEqual(none, [], 'an ack without arguments comes back without arguments');
          const one = await withTimeout(new Promise((resolve) => {
            b.sock.emit2('ackBuf', 200, (...r) => resolve(r));
          }), 5000, 'buffer ack');
          assertSame(one, [Buffer.from([200])], 'single binary ack');

          // many acks in flight at once are matched to their own requests
          a.raw.on('double', (n, fn) => fn(n * 2, Buffer.from(String(n))));
          const results = await withTimeout(Promise.all(Array.from({ length: 50 }, (_, i) => new Promise((resolve) => {
            b.sock.emit2('double', i, (...r) => resolve(r));
          }))), 10000, '50 concurrent acks');
          results.forEach((r, i) => assertSame(r, [i * 2, Buffer.from(String(i))], `ack ${i}`));
          assert.deepEqual(a.errors, []);
          assert.deepEqual(b.errors, []);
        });

        const count = transports[0] === 'websocket' ? 20000 : 2000;
        it(`order: ${count} P2P_EMITs arrive at the peer in order`, T, async () => {
          const { a, b } = await pairUp(pool, kA, kB, transports);
          const seen = [];
          b.raw.on('seq', (i) => seen.push(i));
          // Sent as fast as possible, but never more than WINDOW ahead of the receiver, so that
          // the relay's per-receiver queue (--outbox-messages, default 1024) cannot overflow
          // even over long-polling, where a whole POST of packets lands at once.
          const deadline = Date.now() + 20000;
          let next = 0;
          while (next < count && a.errors.length === 0) {
            while (next < count && next - seen.length < WINDOW) {
              a.sock.emit2('seq', next);
              next += 1;
            }
            if (Date.now() > deadline) assert.fail(`sending stalled: sent ${next}, received ${seen.length}`);
            await delay(1);
          }
          try {
            await waitFor(() => seen.length >= count || a.errors.length > 0, 20000,
              `${count} messages at the peer (got ${seen.length})`, 10);
          } finally {
            assert.deepEqual(a.errors.slice(0, 5), [], `SERVER_ERRORs at the sender (${a.errors.length} in all)`);
          }
          // let stragglers (duplicates) show up before checking
          const finish = await b.list();
          assert.ok(Array.isArray(finish));
          assert.equal(seen.length, count);
          for (let i = 0; i < count; i += 1) {
            if (seen[i] !== i) assert.fail(`message ${i} arrived as ${seen[i]} (order broken)`);
          }
        });
      });
    }
  }
});
