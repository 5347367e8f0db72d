'use strict';
// A second connection with a clientId that is already connected, under both policies.
//  replace: the older connection gets SERVER_ERROR "replaced by ..." and is disconnected;
//           its peer gets P2P_DISCONNECT; the newcomer takes the id.
//  reject:  the newcomer is refused with "clientId 'X' is already connected".

const { describe, it } = require('node:test');
const assert = require('node:assert/strict');
const { useRelay } = require('../lib/harness');
const {
  TRANSPORTS, MIXED_PAIRS, withTimeout, waitFor, nextEvent, transportName, uniqueId, awaitConnect,
} = require('../lib/clients');

const T = { timeout: 20000 };

describe('duplicate clientId, --duplicate-policy replace', () => {
  const { pool } = useRelay(['--duplicate-policy', 'replace']);

  for (const transports of TRANSPORTS) {
    for (const [kOld, kNew] of MIXED_PAIRS) {
      it(`old ${kOld} replaced by new ${kNew} over ${transportName(transports)}`, T, async () => {
        const id = uniqueId('dup');
        const old = await pool.connect(kOld, { id, transports });
        const peer = await pool.connect(kNew, { transports });
        assert.equal(await peer.sock.registerP2pTarget(id), true);
        assert.equal(old.sock.targetClientId, peer.id);

        const oldGone = nextEvent(old.raw, 'disconnect', 5000, 'the older connection is disconnected');
        const peerLost = nextEvent(peer.raw, 'P2P_DISCONNECT', 5000, 'P2P_DISCONNECT at the old one\'s peer');
        const fresh = await pool.connect(kNew, { id, transports });
        await Promise.all([oldGone, peerLost]);
        assert.deepEqual(old.errors, [`replaced by a newer connection with clientId '${id}'`],
          'the older connection got the SERVER_ERROR before being disconnected');
        assert.equal(old.connected, false);
        assert.equal(peer.sock.targetClientId, undefined);
        assert.deepEqual(peer.errors, []);
        assert.equal(fresh.connected, true);

        const list = await peer.list();
        assert.equal(list.filter((x) => x === id).length, 1, `listed once: ${JSON.stringify(list)}`);
        // the id now names the newcomer
        assert.equal(await peer.sock.registerP2pTarget(id), true);
        assert.equal(fresh.sock.targetClientId, peer.id);
        const got = nextEvent(fresh.raw, 'toFresh', 3000);
        peer.sock.emit2('toFresh', 'hello');
        assert.deepEqual(await got, ['hello']);
        // and stays listed after a while (the old connection's teardown did not remove it)
        await new Promise((r) => setTimeout(r, 200));
        assert.ok((await peer.list()).includes(id));
      });
    }
  }
});

describe('duplicate clientId, --duplicate-policy reject', () => {
  const { pool } = useRelay(['--duplicate-policy', 'reject']);

  for (const transports of TRANSPORTS) {
    for (const [kOld, kNew] of MIXED_PAIRS) {
      it(`new ${kNew} refused while old ${kOld} is connected over ${transportName(transports)}`, T, async () => {
        const id = uniqueId('dup');
        const old = await pool.connect(kOld, { id, transports });
        const peer = await pool.connect(kNew, { transports });
        assert.equal(await peer.sock.registerP2pTarget(id), true);

        const raw = pool.raw(kNew, id, { transports });
        let error = null;
        try {
          await awaitConnect(raw, 5000, `duplicate ${id}`);
        } catch (e) {
          error = e;
        }
        assert.ok(error, 'the duplicate connection was accepted');
        assert.equal(error.message, `clientId '${id}' is already connected`);

        // the older one is untouched: connected, listed once, still paired
        assert.equal(old.connected, true);
        assert.deepEqual(old.errors, []);
        const list = await old.list();
        assert.equal(list.filter((x) => x === id).length, 1);
        const got = nextEvent(old.raw, 'stillThere', 3000);
        peer.sock.emit2('stillThere', 1);
        assert.deepEqual(await got, [1]);
        assert.equal(peer.p2pDisconnects, 0);

        // once the older one is gone, the id can be used again
        const lost = nextEvent(peer.raw, 'P2P_DISCONNECT', 5000);
        old.close();
        await lost;
        const again = await withTimeout(waitFor(async () => {
          try {
            return await pool.connect(kNew, { id, transports, ms: 2000 });
          } catch (e) {
            if (e.message !== `clientId '${id}' is already connected`) throw e;
            return null;
          }
        }, 3000, 'the id to be free again', 50), 6000, 'reconnect with the same id');
        assert.ok((await again.list()).includes(id));
      });
    }
  }
});
