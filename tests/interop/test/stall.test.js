'use strict';
// A stalled receiver: its websocket's TCP socket stops being read for ~3 s while the sender
// emits 5,000 messages. Every message must be either delivered in order or reported to the
// sender as "could not deliver ..." naming the receiver; delivered + reported == sent; the
// receiver stays connected.

const { describe, it } = require('node:test');
const assert = require('node:assert/strict');
const { useRelay } = require('../lib/harness');
const { KINDS, waitFor, nextEvent, delay } = require('../lib/clients');

const OUTBOX = 256;
const SENT = 5000;
const PAD = 'p'.repeat(2048); // ~10 MB in all: more than loopback socket buffers hold
const STALL_MS = 3000;

describe('stalled receiver', () => {
  const { pool } = useRelay(['--outbox-messages', String(OUTBOX)]);

  for (const kind of KINDS) {
    const senderKind = kind === 'js' ? 'legacy' : 'js';
    it(`${kind} receiver paused for ${STALL_MS} ms while a ${senderKind} sender emits ${SENT} messages`, { timeout: 60000 }, async () => {
      const transports = ['websocket'];
      const receiver = await pool.connect(kind, { transports });
      const sender = await pool.connect(senderKind, { transports });
      assert.equal(await sender.sock.registerP2pTarget(receiver.id), true);

      const delivered = [];
      let badPayloads = 0;
      receiver.raw.on('msg', (seq, pad) => {
        if (pad !== PAD) badPayloads += 1;
        delivered.push(seq);
      });
      const reportText = `could not deliver 'msg' to '${receiver.id}': its queue is full (${OUTBOX} messages)`;
      const reported = () => sender.errors.filter((m) => m === reportText).length;

      const net = receiver.netSocket();
      assert.ok(net, 'the receiver has a websocket TCP socket to pause');
      net.pause();
      for (let i = 0; i < SENT; i += 1) {
        sender.sock.emit2('msg', i, PAD);
        if (i % 500 === 499) await delay(1); // let the sender's socket flush
      }
      await delay(STALL_MS);
      const duringStall = delivered.length;
      net.resume();

      await waitFor(() => delivered.length + reported() >= SENT, 30000,
        `every message delivered or reported (delivered ${delivered.length}, reported ${reported()})`, 20);
      // anything still in flight would show up now
      await sender.list();
      await receiver.list();
      await delay(200);

      assert.equal(badPayloads, 0, 'payloads arrived intact');
      const others = sender.errors.filter((m) => m !== reportText);
      assert.deepEqual(others, [], 'no other SERVER_ERROR at the sender');
      assert.deepEqual(receiver.errors, []);
      for (let i = 1; i < delivered.length; i += 1) {
        if (!(delivered[i] > delivered[i - 1])) {
          assert.fail(`delivered out of order or twice at index ${i}: ${delivered[i - 1]} then ${delivered[i]}`);
        }
      }
      assert.equal(delivered.length + reported(), SENT,
        `delivered ${delivered.length} + reported ${reported()} != sent ${SENT}`);
      assert.equal(receiver.connected, true, 'the receiver is still connected');
      assert.ok((await sender.list()).includes(receiver.id));
      assert.equal(receiver.sock.targetClientId, sender.id, 'still paired');
      const after = nextEvent(receiver.raw, 'after', 5000, 'a message after the stall');
      sender.sock.emit2('after', 'ok');
      assert.deepEqual(await after, ['ok']);
      process.stdout.write(`# ${kind} receiver: ${delivered.length} delivered (${duringStall} during the stall), ${reported()} reported\n`);
    });
  }
});
