'use strict';
// The p2p-relay-client package itself (no relay): its entries come from one source, and
// say the 1.4.1 wire events.
//  - index.js (CommonJS) is exactly what js-client/scripts/build-cjs.js (esbuild, from
//    js-client's own node_modules) generates from src/node.mjs and src/core.mjs: a change
//    there without `npm run build` fails here;
//  - `require`, `import` and the browser entry resolve through package.json "exports" to
//    index.js, index.mjs and browser.mjs, and export the same API and SOCKET_EVENT table.

const { describe, it } = require('node:test');
const assert = require('node:assert');
const { execFileSync } = require('node:child_process');
const path = require('node:path');
const { REPO_ROOT } = require('../lib/relay');

const JS_CLIENT = path.join(REPO_ROOT, 'js-client');

// Deliberately hard-coded: these are the wire strings of the 1.4.1 protocol
// (docs/PROTOCOL.md, Part 1) plus p2p-relay's P2P_LIMITS, the contract the relay and every
// client share; the client's table must say exactly these.
const WIRE_EVENTS = {
  P2P_REGISTER: 'P2P_REGISTER',
  P2P_UNREGISTER: 'P2P_UNREGISTER',
  P2P_DISCONNECT: 'P2P_DISCONNECT',
  P2P_EMIT: 'P2P_EMIT',
  P2P_EMIT_ACKNOWLEDGE: 'P2P_EMIT_ACKNOWLEDGE',
  LIST_CLIENTS: 'LIST_CLIENTS',
  SERVER_ERROR: 'SERVER_ERROR',
  P2P_REGISTER_STREAM: 'P2P_REGISTER_STREAM',
  P2P_EMIT_STREAM: 'P2P_EMIT_STREAM',
  P2P_LIMITS: 'P2P_LIMITS',
};

describe('the p2p-relay-client package', () => {
  it('index.js is generated from src/ and up to date', { timeout: 10000 }, () => {
    let out;
    try {
      out = execFileSync(process.execPath, [path.join(JS_CLIENT, 'scripts', 'build-cjs.js'), '--check'], {
        encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 8000,
      });
    } catch (err) {
      // exit 1: stale; 2: esbuild missing (`npm ci` in js-client, as .ci/run does)
      assert.fail(`js-client/scripts/build-cjs.js --check failed: ${err.stderr || err.message}`);
    }
    assert.match(out, /index\.js is up to date/);
  });

  it('"exports" gives index.js to require, index.mjs to import, browser.mjs to ./browser', async () => {
    assert.strictEqual(require.resolve('p2p-relay-client'), path.join(JS_CLIENT, 'index.js'));
    const cjs = require('p2p-relay-client');
    const esm = await import('p2p-relay-client');
    const browser = await import('p2p-relay-client/browser');
    assert.strictEqual(typeof cjs, 'function');
    assert.strictEqual(cjs.p2pClientPlugin, cjs);
    // import and require share one plugin (index.mjs re-exports index.js)
    assert.strictEqual(esm.default, cjs);
    assert.strictEqual(esm.p2pClientPlugin, cjs);
    assert.strictEqual(esm.SOCKET_EVENT, cjs.SOCKET_EVENT);
    assert.strictEqual(typeof browser.default, 'function');
    assert.strictEqual(browser.p2pClientPlugin, browser.default);
    assert.strictEqual(typeof browser.P2pStream, 'function');
  });

  it('every entry says the wire events, from one table', async () => {
    const cjs = require('p2p-relay-client');
    const browser = await import('p2p-relay-client/browser');
    assert.deepStrictEqual({ ...cjs.SOCKET_EVENT }, WIRE_EVENTS);
    assert.deepStrictEqual({ ...browser.SOCKET_EVENT }, WIRE_EVENTS);
    assert.ok(Object.isFrozen(cjs.SOCKET_EVENT) && Object.isFrozen(browser.SOCKET_EVENT));
  });

  it('both platforms wrap a socket with the same API', async () => {
    const cjs = require('p2p-relay-client');
    const browser = await import('p2p-relay-client/browser');
    const fakeSocket = () => {
      const handlers = new Map();
      return {
        auth: undefined,
        on(event, fn) { handlers.set(event, [...(handlers.get(event) || []), fn]); return this; },
        emit() { return this; },
        listeners(event) { return handlers.get(event) || []; },
        handlers,
      };
    };
    const members = ['registerP2pTarget', 'unregisterP2pTarget', 'emit2', 'emitP2p', 'getClientList',
      'registerP2pStream', 'onRegisterP2pStream', 'offRegisterP2pStream'];
    for (const [name, plugin] of [['node', cjs], ['browser', browser.default]]) {
      const raw = fakeSocket();
      const sock = plugin(raw, 'A', { token: 't0k' });
      for (const m of members) assert.strictEqual(typeof sock[m], 'function', `${name}: ${m}`);
      assert.strictEqual(sock.clientId, 'A', name);
      assert.strictEqual(sock.targetClientId, undefined, name);
      assert.strictEqual(sock.p2pLimits, null, name);
      assert.deepStrictEqual(raw.auth, { token: 't0k' }, `${name}: the token goes in the handshake's auth`);
      assert.deepStrictEqual([...raw.handlers.keys()].sort(), [...Object.values(WIRE_EVENTS).filter((e) => ![
        'P2P_EMIT', 'P2P_EMIT_ACKNOWLEDGE', 'LIST_CLIENTS'].includes(e)), 'disconnect'].sort(), `${name}: listened events`);
      assert.throws(() => sock.emit2('x'), /emit2 must be called after targetClientId is set/, name);
    }
  });
});
