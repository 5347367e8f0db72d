'use strict';
// P2P streams between js-client (4.x) and the legacy client (2.x): P2P_REGISTER_STREAM
// answers, duplex creation, 16 MiB with back-pressure (ack flow control, hash check),
// destruction on P2P_UNREGISTER (before unregister resolves) and on P2P_DISCONNECT.

const { describe, it } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { Duplex } = require('node:stream');
const { useRelay } = require('../lib/harness');
const {
  TRANSPORTS, MIXED_PAIRS, withTimeout, waitFor, nextEvent, pairUp, transportName, delay,
} = require('../lib/clients');

const T = { timeout: 60000 };
const TOTAL = 16 * 1024 * 1024;
const MAX_CHUNK = 64 * 1024;
const RECEIVER_HWM = 4096;

/** Resolve on the next 'readable' of `stream`, reject on its 'error'/'close' or after `ms`. */
function readableOrFail(stream, ms) {
  return withTimeout(new Promise((resolve, reject) => {
    const cleanup = () => {
      stream.off('readable', onReadable);
      stream.off('error', onError);
      stream.off('close', onClose);
    };
    const onReadable = () => { cleanup(); resolve(); };
    const onError = (e) => { cleanup(); reject(e); };
    const onClose = () => { cleanup(); reject(new Error('stream closed while reading')); };
    stream.on('readable', onReadable);
    stream.on('error', onError);
    stream.on('close', onClose);
  }), ms, 'more stream data (stalled?)');
}

async function writeAll(duplex, data, rng) {
  let off = 0;
  while (off < data.length) {
    const n = Math.min(data.length - off, 1 + Math.floor(rng() * MAX_CHUNK));
    const more = duplex.write(data.subarray(off, off + n));
    off += n;
    if (!more) {
      await withTimeout(new Promise((resolve, reject) => {
        const onDrain = () => { duplex.off('error', onError); resolve(); };
        const onError = (e) => { duplex.off('drain', onDrain); reject(e); };
        duplex.once('drain', onDrain);
        duplex.once('error', onError);
      }), 15000, `drain of the writer at offset ${off} (stalled: lost ack?)`);
    }
  }
}

/** Read `total` bytes; slow for the first part so the receiver's buffer fills up. */
async function readAll(duplex, total, slowBytes) {
  const hash = crypto.createHash('sha256');
  let got = 0;
  let maxBuffered = 0;
  let reads = 0;
  while (got < total) {
    maxBuffered = Math.max(maxBuffered, duplex.readableLength);
    const chunk = duplex.read();
    if (chunk === null) {
      await readableOrFail(duplex, 15000);
      continue;
    }
    hash.update(chunk);
    got += chunk.length;
    reads += 1;
    if (got < slowBytes && reads % 4 === 0) await delay(2);
  }
  return { digest: hash.digest('hex'), got, maxBuffered };
}

/** a small deterministic PRNG so failures are reproducible */
function mulberry32(seed) {
  let t = seed >>> 0;
  return () => {
    t += 0x6d2b79f5;
    let r = Math.imul(t ^ (t >>> 15), 1 | t);
    r ^= r + Math.imul(r ^ (r >>> 7), 61 | r);
    return ((r ^ (r >>> 14)) >>> 0) / 4294967296;
  };
}

async function openStream(a, b, receiverOptions = {}) {
  let dB = null;
  b.sock.onRegisterP2pStream(receiverOptions, (d) => { dB = d; });
  const dA = await withTimeout(a.sock.registerP2pStream({}), 5000, 'registerP2pStream');
  assert.ok(dA instanceof Duplex, `registerP2pStream resolves a Duplex, got ${dA}`);
  assert.ok(dB instanceof Duplex, 'the listening peer got a Duplex before the requester');
  return { dA, dB };
}

describe('streams', () => {
  const { pool } = useRelay();

  for (const transports of TRANSPORTS) {
    for (const [kA, kB] of MIXED_PAIRS) {
      describe(`${kA} -> ${kB} over ${transportName(transports)}`, () => {
        it('registerP2pStream resolves null when the peer does not listen for streams', T, async () => {
          const { a, b } = await pairUp(pool, kA, kB, transports);
          const asked = nextEvent(b.raw, 'P2P_REGISTER_STREAM', 5000, 'P2P_REGISTER_STREAM at the peer');
          assert.equal(await withTimeout(a.sock.registerP2pStream({}), 5000, 'registerP2pStream'), null);
          const askedArgs = await asked;
          assert.equal(askedArgs.length, 1, 'P2P_REGISTER_STREAM at the peer carries no argument');
          assert.equal(typeof askedArgs[0], 'function', 'P2P_REGISTER_STREAM at the peer asks for an ack');
          // callback form
          const res = await withTimeout(new Promise((resolve) => {
            a.sock.registerP2pStream({}, () => resolve('success'), () => resolve('failure'));
          }), 5000, 'registerP2pStream callback form');
          assert.equal(res, 'failure');
          assert.deepEqual(a.errors, []);
          if (b.kind === 'js') {
            // js-client: after offRegisterP2pStream the answer is false again
            b.sock.onRegisterP2pStream({}, () => {});
            b.sock.offRegisterP2pStream();
            assert.equal(await withTimeout(a.sock.registerP2pStream({}), 5000, 'after off'), null);
          }
        });

        it('onRegisterP2pStream: the peer answers true, a new Duplex per request, data both ways', T, async () => {
          const { a, b } = await pairUp(pool, kA, kB, transports);
          const created = [];
          b.sock.onRegisterP2pStream({}, (d) => created.push(d));
          b.sock.onRegisterP2pStream({}, (d) => created.push(d)); // replaces, not adds
          const dA1 = await withTimeout(new Promise((resolve) => {
            a.sock.registerP2pStream({}, resolve, () => resolve(null));
          }), 5000, 'registerP2pStream (callback form)');
          assert.ok(dA1 instanceof Duplex);
          assert.equal(created.length, 1, 'one duplex per P2P_REGISTER_STREAM, however often onRegisterP2pStream was called');
          const [dB1] = created;
          assert.ok(dB1 instanceof Duplex);

          const atB = nextEvent(dB1, 'data', 5000, 'data at B');
          dA1.write(Buffer.from('ping'));
          assert.deepEqual((await atB)[0], Buffer.from('ping'));
          const atA = nextEvent(dA1, 'data', 5000, 'data at A');
          dB1.write('pong');
          assert.deepEqual((await atA)[0], Buffer.from('pong'));

          // a second stream: every duplex of the receiving client gets every chunk
          const dA2 = await withTimeout(a.sock.registerP2pStream({}), 5000, 'second registerP2pStream');
          assert.ok(dA2 instanceof Duplex);
          assert.equal(created.length, 2);
          assert.notEqual(created[0], created[1]);
          const both = Promise.all(created.map((d, i) => nextEvent(d, 'data', 5000, `data at B duplex ${i}`)));
          dA2.write(Buffer.from('to all'));
          for (const [chunk] of await both) assert.deepEqual(chunk, Buffer.from('to all'));
          assert.deepEqual(a.errors, []);
          assert.deepEqual(b.errors, []);
        });

        it('16 MiB through a small receiver highWaterMark: every byte, in order, one chunk in flight', T, async () => {
          const { a, b } = await pairUp(pool, kA, kB, transports);
          const { dA, dB } = await openStream(a, b, { highWaterMark: RECEIVER_HWM });
          const errors = [];
          dA.on('error', (e) => errors.push(e));
          dB.on('error', (e) => errors.push(e));
          const data = crypto.randomBytes(TOTAL);
          const expected = crypto.createHash('sha256').update(data).digest('hex');
          const reading = readAll(dB, TOTAL, 2 * 1024 * 1024);
          const started = Date.now();
          await writeAll(dA, data, mulberry32(0xdecaf));
          const result = await reading;
          const secs = (Date.now() - started) / 1000;
          assert.deepEqual(errors, []);
          assert.equal(result.got, TOTAL);
          assert.equal(result.digest, expected, 'sha256 of the received bytes');
          // one unacked chunk at most: the receiver never holds more than HWM + one chunk
          assert.ok(result.maxBuffered < RECEIVER_HWM + MAX_CHUNK,
            `receiver buffered ${result.maxBuffered} bytes (> highWaterMark ${RECEIVER_HWM} + one chunk)`);
          if (dB.p2pStats && 'overwrittenAcks' in dB.p2pStats) {
            assert.equal(dB.p2pStats.overwrittenAcks, 0, 'the legacy receiver never had two pending acks');
          }
          if (dB.p2pStats && 'maxPendingAcks' in dB.p2pStats) {
            assert.ok(dB.p2pStats.maxPendingAcks <= 1, `js receiver held ${dB.p2pStats.maxPendingAcks} pending acks`);
          }
          assert.ok(dA.writableLength === 0);
          assert.deepEqual(a.errors, []);
          assert.deepEqual(b.errors, []);
          // for the log: throughput of this pairing
          process.stdout.write(`# ${kA}->${kB} ${transportName(transports)}: 16 MiB in ${secs.toFixed(2)} s\n`);
        });

        for (const who of ['requester', 'listener']) {
          it(`unregister by the ${who} resolves only after both ends' duplexes are destroyed`, T, async () => {
            const { a, b } = await pairUp(pool, kA, kB, transports);
            const { dA, dB } = await openStream(a, b);
            dA.on('error', () => {});
            dB.on('error', () => {});
            // the streams carried data both ways before
            const writeDone = (d, buf) => withTimeout(new Promise((resolve, reject) => {
              d.write(buf, (err) => (err ? reject(err) : resolve()));
            }), 5000, 'a stream write acknowledged');
            const gotB = nextEvent(dB, 'data', 5000);
            await writeDone(dA, Buffer.alloc(1000, 1));
            await gotB;
            const gotA = nextEvent(dA, 'data', 5000);
            await writeDone(dB, Buffer.alloc(1000, 2));
            await gotA;
            const caller = who === 'requester' ? a : b;
            await withTimeout(caller.sock.unregisterP2pTarget(), 5000, 'unregisterP2pTarget');
            assert.equal(dA.destroyed, true, `${a.label}'s duplex destroyed when unregister resolved`);
            assert.equal(dB.destroyed, true, `${b.label}'s duplex destroyed when unregister resolved`);
            assert.equal(a.sock.targetClientId, undefined);
            assert.equal(b.sock.targetClientId, undefined);
            assert.deepEqual(a.errors, []);
            assert.deepEqual(b.errors, []);
            // free again: pair and stream again
            assert.equal(await withTimeout(a.sock.registerP2pTarget(b.id), 5000, 're-register'), true);
            const again = await openStream(a, b);
            const got = nextEvent(again.dB, 'data', 5000);
            again.dA.write(Buffer.from('again'));
            assert.deepEqual((await got)[0], Buffer.from('again'));
          });
        }

        it('P2P_DISCONNECT destroys the survivor\'s duplexes', T, async () => {
          const { a, b } = await pairUp(pool, kA, kB, transports);
          const { dA, dB } = await openStream(a, b);
          dA.on('error', () => {});
          dB.on('error', () => {});
          const lost = nextEvent(b.raw, 'P2P_DISCONNECT', 5000, 'P2P_DISCONNECT');
          a.close();
          await lost;
          await waitFor(() => dB.destroyed, 1000, 'the survivor\'s duplex destroyed');
          assert.equal(dA.destroyed, true, 'the closed client\'s own duplex is destroyed too');
          assert.equal(b.sock.targetClientId, undefined);
          assert.deepEqual(b.errors, []);
        });
      });
    }
  }
});
