'use strict';
// An 'error' on a js-client stream (issue 12), as with the 1.4.1 plugin: it destroys the
// Duplex and releases it (a chunk it held back is acknowledged, it gets no more chunks), it is
// still thrown when the application has no 'error' listener, and an application listener sees
// it exactly once. Checked on both ends of a stream (the opener's Duplex from
// registerP2pStream, the acceptor's from onRegisterP2pStream) with a legacy and a js peer;
// after the error the pairing still works and a new stream carries data both ways.

const { describe, it } = require('node:test');
const assert = require('node:assert/strict');
const { Duplex } = require('node:stream');
const { useRelay } = require('../lib/harness');
const {
  KINDS, TRANSPORTS, withTimeout, waitFor, nextEvent, pairUp, transportName, delay,
} = require('../lib/clients');

const T = { timeout: 30000 };
/** below the 1000-byte chunk the peer writes, so the js duplex holds that chunk's ack back */
const SMALL_HWM = 16;
const HELD_CHUNK = 1000;

/** Write `buf` to `duplex`; resolves with the write callback's error, or null. Never rejects. */
function written(duplex, buf) {
  return new Promise((resolve) => duplex.write(buf, (err) => resolve(err || null)));
}

/**
 * Pair a js client with a `peerKind` client, the js client being the stream's `role`
 * ('opener': it calls registerP2pStream; 'acceptor': it listens with onRegisterP2pStream).
 * Returns {js, peer, open(jsOptions)}; open() makes one more stream and resolves {d, p}:
 * d the js client's Duplex (made with jsOptions, in either role), p the peer's.
 */
async function setUp(pool, role, peerKind, transports) {
  const accepted = [];
  let js;
  let peer;
  let request;
  if (role === 'opener') {
    ({ a: js, b: peer } = await pairUp(pool, 'js', peerKind, transports));
    peer.sock.onRegisterP2pStream({}, (d) => accepted.push(d));
    request = (jsOptions) => js.sock.registerP2pStream(jsOptions);
  } else {
    ({ a: peer, b: js } = await pairUp(pool, peerKind, 'js', transports));
    request = (jsOptions) => {
      // (re)listen with this stream's options: it replaces the previous listener
      js.sock.onRegisterP2pStream(jsOptions, (d) => accepted.push(d));
      return peer.sock.registerP2pStream({});
    };
  }
  const open = async (jsOptions = {}) => {
    const before = accepted.length;
    const opened = await withTimeout(request(jsOptions), 5000, `registerP2pStream (js client is the ${role})`);
    assert.ok(opened instanceof Duplex, `registerP2pStream resolves a Duplex, got ${opened}`);
    assert.equal(accepted.length, before + 1, 'the acceptor got one Duplex for the request');
    const other = accepted[before];
    return role === 'opener' ? { d: opened, p: other } : { d: other, p: opened };
  };
  return { js, peer, open };
}

/**
 * The peer writes one chunk larger than the js duplex's highWaterMark while nothing reads
 * the js duplex: the js duplex takes it and holds its ack. Resolves with {acked}, the promise
 * of the peer's write callback (pending until the js duplex lets the chunk go; wrapped, so
 * that this function does not wait for it).
 */
async function holdOneChunk(d, p) {
  const acked = written(p, Buffer.alloc(HELD_CHUNK, 7));
  await waitFor(() => d.p2pStats.chunksIn === 1, 5000, 'the peer\'s chunk reached the js duplex');
  assert.equal(d.readableLength, HELD_CHUNK, 'the chunk waits, unread, in the js duplex');
  assert.equal(d.p2pStats.maxPendingAcks, 1, 'the js duplex holds the chunk\'s ack back');
  const state = await Promise.race([acked.then(() => 'acked'), delay(150).then(() => 'pending')]);
  assert.equal(state, 'pending', 'the peer\'s write waits for the held ack');
  return { acked };
}

/**
 * After the error on `d`: the held chunk is acknowledged, `d` gets nothing more, the pairing
 * still carries events, and a new stream carries data both ways.
 */
async function assertReleased({ js, peer, open }, d, p, acked) {
  assert.equal(await withTimeout(acked, 5000, 'the peer\'s held chunk acknowledged once the errored stream was released'),
    null, 'the held chunk is acknowledged without an error');
  assert.equal(await withTimeout(written(p, Buffer.from('after the error')), 5000,
    'a peer write after the error acknowledged'), null);
  assert.equal(d.p2pStats.chunksIn, 1, 'the errored duplex receives no more chunks');
  assert.equal(d.p2pStats.bytesIn, HELD_CHUNK);

  // the pairing is untouched, both ways
  assert.equal(js.sock.targetClientId, peer.id);
  assert.equal(peer.sock.targetClientId, js.id);
  const atJs = nextEvent(js.raw, 'stillPaired', 5000, 'an emit2 from the peer after the error');
  peer.sock.emit2('stillPaired', 1);
  assert.deepEqual(await atJs, [1]);
  const atPeer = nextEvent(peer.raw, 'stillPaired', 5000, 'an emit2 from the js client after the error');
  js.sock.emit2('stillPaired', 2);
  assert.deepEqual(await atPeer, [2]);

  // a new stream between the same two, with data both ways
  const { d: d2, p: p2 } = await open({});
  const errors = [];
  d2.on('error', (e) => errors.push(e));
  p2.on('error', (e) => errors.push(e));
  const toJs = nextEvent(d2, 'data', 5000, 'data on the new js duplex');
  p2.write(Buffer.from('new stream, to js'));
  assert.deepEqual((await toJs)[0], Buffer.from('new stream, to js'));
  const toPeer = nextEvent(p2, 'data', 5000, 'data on the new peer duplex');
  d2.write(Buffer.from('new stream, to the peer'));
  assert.deepEqual((await toPeer)[0], Buffer.from('new stream, to the peer'));
  assert.equal(d.p2pStats.chunksIn, 1, 'the errored duplex got nothing of the new stream');
  assert.deepEqual(errors, []);
  assert.deepEqual(js.errors, []);
  assert.deepEqual(peer.errors, []);
}

describe('stream errors', () => {
  const { pool } = useRelay();

  for (const transports of TRANSPORTS) {
    for (const peerKind of KINDS) {
      for (const role of ['opener', 'acceptor']) {
        const from = role === 'opener' ? 'registerP2pStream' : 'onRegisterP2pStream';
        describe(`js ${role}'s Duplex (${from}), ${peerKind} peer, over ${transportName(transports)}`, () => {
          it('an \'error\' destroys the stream and releases the chunk it held back', T, async () => {
            const ctx = await setUp(pool, role, peerKind, transports);
            const { d, p } = await ctx.open({ highWaterMark: SMALL_HWM });
            const peerErrors = [];
            p.on('error', (e) => peerErrors.push(e));
            const { acked } = await holdOneChunk(d, p);
            d.on('error', () => {});
            const closed = nextEvent(d, 'close', 2000, '\'close\' of the errored duplex');
            d.emit('error', new Error('app failure'));
            assert.equal(d.destroyed, true, 'destroyed as soon as the error was emitted');
            await closed;
            const late = await withTimeout(written(d, Buffer.from('late')), 2000, 'write callback after the error');
            assert.ok(late instanceof Error, 'a write after the error fails');
            assert.equal(late.code, 'ERR_STREAM_DESTROYED');
            assert.equal(p.destroyed, false, 'the peer\'s duplex is not destroyed by this end\'s error');
            await assertReleased(ctx, d, p, acked);
            assert.deepEqual(peerErrors, []);
          });

          it('an \'error\' with no application listener is thrown by emit, and still destroys and releases the stream', T, async () => {
            const ctx = await setUp(pool, role, peerKind, transports);
            const { d, p } = await ctx.open({ highWaterMark: SMALL_HWM });
            const peerErrors = [];
            p.on('error', (e) => peerErrors.push(e));
            const { acked } = await holdOneChunk(d, p);
            const boom = new Error('nobody listens');
            const closed = nextEvent(d, 'close', 2000, '\'close\' of the errored duplex');
            let thrown = 0;
            try {
              d.emit('error', boom);
            } catch (e) {
              thrown += 1;
              assert.equal(e, boom, 'the emitted error itself is thrown');
            }
            assert.equal(thrown, 1, 'emit(\'error\') throws (uncaught) when the application does not listen');
            assert.equal(d.destroyed, true, 'destroyed even though the error was thrown');
            assert.equal(d.listenerCount('error'), 0, 'the plugin\'s own listener removed itself');
            await closed;
            await assertReleased(ctx, d, p, acked);
            assert.deepEqual(peerErrors, []);
          });

          it('an application \'error\' listener sees the error exactly once', T, async () => {
            const ctx = await setUp(pool, role, peerKind, transports);
            const { d, p } = await ctx.open({ highWaterMark: SMALL_HWM });
            const peerErrors = [];
            p.on('error', (e) => peerErrors.push(e));
            const { acked } = await holdOneChunk(d, p);
            const seen = [];
            const onceSeen = [];
            const appListener = (e) => seen.push(e);
            d.on('error', appListener);
            d.once('error', (e) => onceSeen.push(e));
            const boom = new Error('the app listens');
            const closed = nextEvent(d, 'close', 2000, '\'close\' of the errored duplex');
            let handled;
            assert.doesNotThrow(() => { handled = d.emit('error', boom); }, 'a listened-to error is not thrown');
            assert.equal(handled, true);
            assert.equal(d.destroyed, true);
            await closed;
            await delay(50); // a second 'error' (e.g. from destroy(err)) would have come by now
            assert.equal(seen.length, 1, `the application's listener was called ${seen.length} times`);
            assert.equal(seen[0], boom);
            assert.deepEqual(onceSeen, [boom]);
            assert.deepEqual(d.listeners('error'), [appListener], 'only the application\'s listener is left');
            await assertReleased(ctx, d, p, acked);
            assert.equal(seen.length, 1, 'still called once after the stream was released');
            assert.deepEqual(peerErrors, []);
          });
        });
      }
    }
  }
});
