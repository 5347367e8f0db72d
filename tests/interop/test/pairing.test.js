'use strict';
// Pairing, unregistering, P2P_DISCONNECT, LIST_CLIENTS, races, namespace leave/re-join,
// and the plugin's local throws; js-client (socket.io-client 4.x) and the legacy 1.4.1
// client (socket.io-client 2.x) paired with each other in both directions, per transport.

const { describe, it } = require('node:test');
const assert = require('node:assert/strict');
const { useRelay } = require('../lib/harness');
const {
  TRANSPORTS, MIXED_PAIRS, withTimeout, waitFor, nextEvent, emitWithAck, pairUp, transportName, delay,
  uniqueId,
} = require('../lib/clients');

const T = { timeout: 20000 };

describe('pairing', () => {
  const { pool } = useRelay();

  for (const transports of TRANSPORTS) {
    for (const [kA, kB] of MIXED_PAIRS) {
      describe(`${kA} -> ${kB} over ${transportName(transports)}`, () => {
        it('registerP2pTarget resolves true, both ends store the other id, LIST_CLIENTS lists both', T, async () => {
          const a = await pool.connect(kA, { transports });
          const b = await pool.connect(kB, { transports });
          assert.equal(a.sock.clientId, a.id);
          assert.equal(b.sock.clientId, b.id);
          const registered = nextEvent(b.raw, 'P2P_REGISTER', 5000, 'P2P_REGISTER at the target');
          assert.equal(await withTimeout(a.sock.registerP2pTarget(b.id), 5000, 'register'), true);
          const regArgs = await registered;
          assert.equal(regArgs.length, 2, 'P2P_REGISTER at the target: (sourceClientId, ack)');
          assert.equal(regArgs[0], a.id, 'the target is told the source id');
          assert.equal(typeof regArgs[1], 'function', 'the target is asked for an ack');
          assert.equal(a.sock.targetClientId, b.id);
          assert.equal(b.sock.targetClientId, a.id);
          const list = await withTimeout(a.sock.getClientList(), 3000, 'getClientList');
          assert.ok(Array.isArray(list), 'LIST_CLIENTS answers an array');
          assert.ok(list.includes(a.id) && list.includes(b.id), `list ${JSON.stringify(list)}`);
          assert.equal(new Set(list).size, list.length, 'no id listed twice');
          assert.deepEqual(a.errors, []);
          assert.deepEqual(b.errors, []);
        });

        it('callback forms: registerP2pTarget(success, failure), getClientList(cb), unregisterP2pTarget(cb)', T, async () => {
          const a = await pool.connect(kA, { transports });
          const b = await pool.connect(kB, { transports });
          const ghost = uniqueId('ghost');
          const failed = await withTimeout(new Promise((resolve) => {
            const r = a.sock.registerP2pTarget(ghost, {}, () => resolve('success'), () => resolve('failure'));
            assert.equal(r, undefined, 'the callback form returns nothing');
          }), 5000, 'register (callback form) to a missing target');
          assert.equal(failed, 'failure');
          const ok = await withTimeout(new Promise((resolve) => {
            a.sock.registerP2pTarget(b.id, {}, () => resolve('success'), () => resolve('failure'));
          }), 5000, 'register (callback form)');
          assert.equal(ok, 'success');
          assert.equal(a.sock.targetClientId, b.id);
          const list = await withTimeout(new Promise((resolve) => a.sock.getClientList(resolve)), 3000, 'list cb');
          assert.ok(list.includes(b.id));
          await withTimeout(new Promise((resolve) => a.sock.unregisterP2pTarget(resolve)), 5000, 'unregister cb');
          assert.equal(a.sock.targetClientId, undefined);
          await waitFor(() => b.sock.targetClientId === undefined, 3000, 'the peer forgets the pairing');
          // an unpaired client's unregister resolves at once, locally
          await withTimeout(a.sock.unregisterP2pTarget(), 1000, 'unregister while unpaired resolves');
        });

        it('a busy target answers false and the existing pairing is untouched', T, async () => {
          const { a, b } = await pairUp(pool, kA, kB, transports);
          const c = await pool.connect(kA, { transports });
          assert.equal(await withTimeout(c.sock.registerP2pTarget(b.id), 5000, 'register to busy B'), false);
          assert.equal(await withTimeout(c.sock.registerP2pTarget(a.id), 5000, 'register to busy A'), false);
          assert.equal(c.sock.targetClientId, undefined);
          assert.equal(a.sock.targetClientId, b.id);
          assert.equal(b.sock.targetClientId, a.id);
          const got = nextEvent(b.raw, 'stillPaired', 3000);
          a.sock.emit2('stillPaired', 1);
          assert.deepEqual(await got, [1]);
        });

        it('a target that is not connected yields false plus SERVER_ERROR', T, async () => {
          const a = await pool.connect(kA, { transports });
          const ghost = uniqueId('ghost');
          assert.equal(await withTimeout(a.sock.registerP2pTarget(ghost), 5000, 'register'), false);
          await a.waitError(`target client '${ghost}' is not connected`);
          assert.equal(a.sock.targetClientId, undefined);
          await a.list();
          assert.deepEqual(a.errors, [`target client '${ghost}' is not connected`]);
        });

        it('the plugin throws locally: emit2 unpaired / without event, register to itself / while paired', T, async () => {
          const a = await pool.connect(kA, { transports });
          const b = await pool.connect(kB, { transports });
          assert.throws(() => a.sock.emit2('x', 1), /emit2 must be called after targetClientId is set/);
          assert.throws(() => a.sock.registerP2pTarget(a.id), /can not be the same as source client ID/);
          assert.equal(await a.sock.registerP2pTarget(b.id), true);
          assert.throws(() => a.sock.emit2(), /event must be specified/);
          assert.throws(() => a.sock.emit2(''), /event must be specified/);
          const c = await pool.connect(kB, { transports });
          assert.throws(() => a.sock.registerP2pTarget(c.id), /targetClientId must be empty before registering/);
          // nothing of that reached the relay
          await a.list();
          assert.deepEqual(a.errors, []);
          assert.equal(c.sock.targetClientId, undefined);
          assert.equal(typeof a.sock.emitP2p, 'function');
          const got = nextEvent(b.raw, 'viaAlias', 3000);
          a.sock.emitP2p('viaAlias', 'ok');
          assert.deepEqual(await got, ['ok']);
        });

        it('unregister: both ends get P2P_UNREGISTER, are free, and can pair again the other way', T, async () => {
          const { a, b } = await pairUp(pool, kA, kB, transports);
          const bGot = nextEvent(b.raw, 'P2P_UNREGISTER', 5000, 'P2P_UNREGISTER at the peer');
          const aGot = nextEvent(a.raw, 'P2P_UNREGISTER', 5000, 'P2P_UNREGISTER at the caller');
          await withTimeout(a.sock.unregisterP2pTarget(), 5000, 'unregisterP2pTarget');
          for (const args of await Promise.all([aGot, bGot])) {
            assert.equal(args.length, 1, 'P2P_UNREGISTER carries no argument');
            assert.equal(typeof args[0], 'function', 'P2P_UNREGISTER asks for an ack');
          }
          assert.equal(a.sock.targetClientId, undefined);
          assert.equal(b.sock.targetClientId, undefined);
          assert.equal(await withTimeout(b.sock.registerP2pTarget(a.id), 5000, 'pair again'), true);
          assert.equal(a.sock.targetClientId, b.id);
          const got = nextEvent(a.raw, 'back', 3000);
          b.sock.emit2('back', 'again');
          assert.deepEqual(await got, ['again']);
          assert.deepEqual(a.errors, []);
          assert.deepEqual(b.errors, []);
        });

        it('peer loss: P2P_DISCONNECT (and no SERVER_ERROR), LIST_CLIENTS at once without it, survivor free again', T, async () => {
          const { a, b } = await pairUp(pool, kA, kB, transports);
          const lost = nextEvent(b.raw, 'P2P_DISCONNECT', 5000, 'P2P_DISCONNECT');
          a.close();
          assert.deepEqual(await lost, [], 'P2P_DISCONNECT carries no argument and no ack');
          const list = await b.list();
          assert.ok(!list.includes(a.id), `LIST_CLIENTS right after P2P_DISCONNECT still has ${a.id}: ${JSON.stringify(list)}`);
          assert.ok(list.includes(b.id));
          assert.equal(b.sock.targetClientId, undefined);
          assert.deepEqual(b.errors, [], 'no spurious SERVER_ERROR before P2P_DISCONNECT');
          assert.equal(b.p2pDisconnects, 1);
          const c = await pool.connect(kA, { transports });
          assert.equal(await withTimeout(c.sock.registerP2pTarget(b.id), 5000, 'new pairing'), true);
          const got = nextEvent(b.raw, 'hi', 3000);
          c.sock.emit2('hi', c.id);
          assert.deepEqual(await got, [c.id]);
        });

        it('LIST_CLIENTS after several clients disconnect no longer lists them, and keeps the rest', T, async () => {
          const stay = await pool.connect(kA, { transports });
          const other = await pool.connect(kB, { transports });
          const leavers = [];
          for (let i = 0; i < 4; i += 1) leavers.push(await pool.connect(i % 2 ? kA : kB, { transports }));
          const before = await stay.list();
          for (const l of leavers) assert.ok(before.includes(l.id));
          for (const l of leavers) l.close();
          await waitFor(async () => {
            const list = await stay.list();
            assert.ok(list.includes(stay.id) && list.includes(other.id), `survivors missing: ${JSON.stringify(list)}`);
            return leavers.every((l) => !list.includes(l.id));
          }, 3000, 'the leavers to disappear from LIST_CLIENTS', 20);
          // and the same answer from the other kind of client
          const list2 = await other.list();
          for (const l of leavers) assert.ok(!list2.includes(l.id));
        });

        it('two clients racing to pair with one: exactly one wins', T, async () => {
          const target = await pool.connect(kB, { transports });
          const r1 = await pool.connect(kA, { transports });
          const r2 = await pool.connect(kB, { transports });
          const results = await withTimeout(Promise.all([
            r1.sock.registerP2pTarget(target.id),
            r2.sock.registerP2pTarget(target.id),
          ]), 5000, 'both registrations answered');
          assert.equal(results.filter((x) => x === true).length, 1, `results ${JSON.stringify(results)}`);
          const winner = results[0] ? r1 : r2;
          const loser = results[0] ? r2 : r1;
          assert.equal(target.sock.targetClientId, winner.id);
          assert.equal(winner.sock.targetClientId, target.id);
          assert.equal(loser.sock.targetClientId, undefined);
          const got = nextEvent(target.raw, 'fromWinner', 3000);
          winner.sock.emit2('fromWinner', winner.id);
          assert.deepEqual(await got, [winner.id]);
        });

        it('leaving the namespace and re-joining on the same engine.io connection', T, async () => {
          const { a, b } = await pairUp(pool, kA, kB, transports);
          const engineId = a.engine.id;
          const lost = nextEvent(b.raw, 'P2P_DISCONNECT', 5000, 'P2P_DISCONNECT after the namespace leave');
          // a Socket.IO DISCONNECT packet for '/', the engine.io connection stays open
          a.raw.packet({ type: 1 });
          await lost;
          const list = await b.list();
          assert.ok(!list.includes(a.id), `left client still listed: ${JSON.stringify(list)}`);
          assert.equal(b.sock.targetClientId, undefined);
          await delay(100);
          assert.equal(a.engine.readyState, 'open', 'the engine.io connection stays open after leaving the namespace');
          assert.equal(a.engine.id, engineId);
          // join again: a Socket.IO CONNECT packet for '/'
          const rejoined = nextEvent(a.raw, 'connect', 5000, 'connect after re-join');
          a.raw.packet({ type: 0 });
          await rejoined;
          assert.equal(a.engine.id, engineId, 'same engine.io connection');
          await waitFor(async () => (await b.list()).includes(a.id), 3000, 're-joined client listed');
          // pair again (raw request: A's plugin never saw a local disconnect)
          const [ok] = await emitWithAck(a.raw, 'P2P_REGISTER', [b.id], 5000, 'P2P_REGISTER after re-join');
          assert.equal(ok, true);
          assert.equal(b.sock.targetClientId, a.id);
          const got = nextEvent(a.raw, 'afterRejoin', 3000);
          b.sock.emit2('afterRejoin', 42);
          assert.deepEqual(await got, [42]);
        });
      });
    }
  }

  it('legacy client on default transports starts on polling, upgrades to websocket, and relays on both', T, async () => {
    const legacy = await pool.connect('legacy', { transports: ['polling', 'websocket'] });
    const js = await pool.connect('js', { transports: ['websocket'] });
    assert.equal(await legacy.sock.registerP2pTarget(js.id), true);
    const first = nextEvent(js.raw, 'early', 3000);
    legacy.sock.emit2('early', Buffer.from('e'));
    assert.deepEqual(await first, [Buffer.from('e')]);
    await waitFor(() => legacy.engine.transport.name === 'websocket', 5000, 'upgrade to websocket');
    const second = nextEvent(js.raw, 'late', 3000);
    legacy.sock.emit2('late', { b: Buffer.from('l') });
    assert.deepEqual(await second, [{ b: Buffer.from('l') }]);
    const [ack] = await withTimeout(new Promise((resolve) => {
      js.raw.once('ask', (x, fn) => fn(x + 1));
      legacy.sock.emit2('ask', 1, (...res) => resolve(res));
    }), 3000, 'ack after upgrade');
    assert.equal(ack, 2);
  });

  it('js and legacy clients with mixed transports pair and relay', T, async () => {
    const js = await pool.connect('js', { transports: ['polling'] });
    const legacy = await pool.connect('legacy', { transports: ['websocket'] });
    assert.equal(await js.sock.registerP2pTarget(legacy.id), true);
    const got = nextEvent(legacy.raw, 'mixed', 3000);
    js.sock.emit2('mixed', [Buffer.from([1]), 2]);
    assert.deepEqual(await got, [[Buffer.from([1]), 2]]);
  });
});
