'use strict';
// Smoke check of a server speaking the legacy protocol (this reference server or p2p-relay),
// with the legacy 1.4.1-style client of the interop tests (socket.io-client 2.5.0):
// pairing, P2P_EMIT, P2P_EMIT_ACKNOWLEDGE (binary ack), LIST_CLIENTS, P2P_REGISTER_STREAM,
// P2P_UNREGISTER (both ends told), P2P_DISCONNECT. Exits 0 when all pass.
//
//   node smoke.js http://127.0.0.1:PORT
//
// Needs tests/interop's node_modules (npm ci there) for socket.io-client 2.5.0.

const { legacyP2pPlugin, ioV2, EV } = require('../../tests/interop/lib/legacy');

const url = process.argv[2];
if (!url) {
  console.error('usage: node smoke.js http://127.0.0.1:PORT');
  process.exit(2);
}

function connect(id) {
  const raw = ioV2.connect(`${url}?clientId=${id}`, { forceNew: true, reconnection: false });
  const sock = legacyP2pPlugin(raw, id);
  return new Promise((resolve, reject) => {
    raw.once('connect', () => resolve(sock));
    raw.once('connect_error', reject);
  });
}

function within(ms, what, p) {
  let t;
  return Promise.race([p, new Promise((_, rej) => { t = setTimeout(() => rej(new Error(`${what}: no answer in ${ms} ms`)), ms); })])
    .finally(() => clearTimeout(t));
}

function check(cond, what) {
  if (!cond) throw new Error(`FAILED: ${what}`);
  console.log(`ok  ${what}`);
}

async function main() {
  const tag = process.pid;
  const a = await connect(`smoke-a-${tag}`);
  const b = await connect(`smoke-b-${tag}`);
  const errors = [];
  a.on(EV.SERVER_ERROR, (m) => errors.push(m));

  const list = await within(3000, 'LIST_CLIENTS', a.getClientList());
  check(list.includes(b.clientId) && list.includes(a.clientId), 'LIST_CLIENTS holds both ids');

  check(await within(3000, 'P2P_REGISTER', a.registerP2pTarget(b.clientId)) === true, 'P2P_REGISTER paired a with b');
  check(b.targetClientId === a.clientId, 'the target stored the requester');

  const got = new Promise((resolve) => b.once('hello', (...args) => resolve(args)));
  a.emit2('hello', { n: 1, s: 'x' }, 2, Buffer.from([1, 2, 3]));
  const args = await within(3000, 'P2P_EMIT', got);
  check(args.length === 3 && args[0].n === 1 && args[1] === 2 && Buffer.isBuffer(args[2]) && args[2].length === 3,
    'P2P_EMIT delivered JSON, a number and a Buffer');

  b.once('ask', (x, fn) => fn(x + 1, Buffer.from('ok')));
  const ack = await within(3000, 'P2P_EMIT_ACKNOWLEDGE', new Promise((resolve) => a.emit2('ask', 41, (...r) => resolve(r))));
  check(ack[0] === 42 && Buffer.isBuffer(ack[1]) && ack[1].toString() === 'ok', 'P2P_EMIT_ACKNOWLEDGE passed the ack back (binary too)');

  const none = await within(3000, 'P2P_REGISTER_STREAM', a.registerP2pStream({}));
  check(none === null, 'P2P_REGISTER_STREAM: a peer not listening answers false');

  const bUnreg = new Promise((resolve) => b.once(EV.P2P_UNREGISTER, () => resolve()));
  await within(6000, 'P2P_UNREGISTER', a.unregisterP2pTarget());
  await within(3000, 'P2P_UNREGISTER at the peer', bUnreg);
  check(b.targetClientId === undefined, 'P2P_UNREGISTER reached the peer, which is free again');

  check(await within(3000, 'P2P_REGISTER again', b.registerP2pTarget(a.clientId)) === true, 'paired again (b with a)');
  const gone = new Promise((resolve) => a.once(EV.P2P_DISCONNECT, () => resolve()));
  b.close();
  await within(3000, 'P2P_DISCONNECT', gone);
  check(a.targetClientId === undefined, 'P2P_DISCONNECT reached the survivor');

  check(await within(3000, 'P2P_REGISTER to nobody', a.registerP2pTarget(`nobody-${tag}`)) === false, 'P2P_REGISTER to an unknown id answers false');
  check(errors.length >= 1, 'with a SERVER_ERROR');
  a.close();
  console.log('smoke: all passed');
}

main().then(() => process.exit(0), (e) => { console.error(e.message || e); process.exit(1); });
