'use strict';
// The browser matrix: pages in Debian's Chromium, served from another origin than the relay.
//  1. socket.io-client 2.x and 4.x bundles (their npm packages' dist/), default transports
//     (polling, then the upgrade), websocket only and polling only: connect, pair, emit/ack
//     both ways, with the raw 1.4.1 events.
//  2. a 1.4.1-style client in the page (pages/legacy-p2p.js on 2.x) and
//  3. js-client's browser module on 4.x, each paired with a node peer and the native echo
//     peer, over websocket and polling: client lists, emits without and with ack (binary of
//     every kind both ways), questions from the peer, a stream echoed by the peer, unregister
//     from either end, a stream opened by the peer.
// Every cell is written to target/browser-test/matrix.json and printed at the end.

const { describe, test, before, after } = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const { startRelay } = require('../lib/relay');
const { uniqueId } = require('../lib/clients');
const { startStatic } = require('./lib/static');
const { launchBrowser, openPage, evaluate, outDir, startAll } = require('./lib/browser');
const { nodeEchoPeer, nativeEchoPeer, closePeers } = require('./lib/peers');

const PAGE = { 2: '/pages/v2.html', 4: '/pages/v4.html' };
const TRANSPORTS = { default: undefined, websocket: ['websocket'], polling: ['polling'] };

let relay;
let site;
let browser;
const cells = [];

before(async () => {
  await startAll([startRelay(), startStatic(), launchBrowser()], (started) => { [relay, site, browser] = started; });
}, { timeout: 40000 });

after(async () => {
  await closePeers(); // the ones a timed-out test left behind
  await Promise.allSettled([browser && browser.close(), site && site.close(), relay && relay.stop()]);
  const file = path.join(outDir(), 'matrix.json');
  fs.writeFileSync(file, JSON.stringify(cells, null, 2));
  console.log('\nbrowser matrix:');
  for (const c of cells) console.log(`  ${c.ok ? 'PASS' : 'FAIL'}  ${c.cell}${c.note ? `  (${c.note})` : ''}`);
}, { timeout: 20000 });

/** Assert every check of a page report; record the cell. */
function verdict(cell, report, problems, extra = '') {
  const failed = report.checks.filter((c) => !c.ok);
  const notes = report.checks.filter((c) => c.ok && c.detail).map((c) => `${c.name}: ${c.detail}`);
  cells.push({ cell, ok: failed.length === 0, checks: report.checks, note: notes.filter((n) => /MB\/s|transport|upgrade/.test(n)).join('; ') });
  assert.deepStrictEqual(failed, [], `${cell}: failed checks ${JSON.stringify(failed, null, 1)}\npage problems: ${problems.join('\n')}${extra}`);
  assert.ok(report.checks.length > 0, 'the page ran no checks');
}

describe('socket.io-client bundles: connect, pair, emit/ack (raw 1.4.1 events)', () => {
  for (const gen of [2, 4]) {
    for (const [transport, transports] of Object.entries(TRANSPORTS)) {
      test(`socket.io-client ${gen}.x, ${transport}`, { timeout: 40000 }, async () => {
        // the node peer is of the other generation
        const peer = await nodeEchoPeer(gen === 2 ? 'js' : 'legacy', relay.url, uniqueId('N'));
        const { context, page, problems } = await openPage(browser, site.origin + PAGE[gen]);
        try {
          const report = await evaluate(page, (o) => window.harness.basic(o),
            { url: relay.url, id: uniqueId(`P${gen}`), peer: peer.id, transports }, 30000, 'basic scenario');
          verdict(`sio ${gen}.x raw | ${transport} | node peer (${peer.kind})`, report, problems);
          assert.deepStrictEqual(peer.errors, [], 'the node peer got no SERVER_ERROR');
        } finally {
          peer.close();
          await context.close();
        }
      });
    }
  }
});

for (const [gen, kind] of [[2, 'legacy 1.4.1-style'], [4, 'js-client']]) {
  describe(`${kind} in the page (socket.io-client ${gen}.x)`, () => {
    for (const transport of ['websocket', 'polling']) {
      for (const peerKind of ['node', 'native']) {
        test(`${kind}, ${transport}, ${peerKind} peer`, { timeout: 90000 }, async () => {
          let peer;
          let label;
          if (peerKind === 'node') {
            const nodeKind = gen === 2 ? 'js' : 'legacy';
            peer = await nodeEchoPeer(nodeKind, relay.url, uniqueId('N'));
            label = `node peer (${nodeKind === 'js' ? 'js-client 4.x' : 'legacy 2.x'})`;
          } else {
            peer = await nativeEchoPeer(relay, uniqueId('Q'));
            label = 'native peer (QUIC)';
          }
          const { context, page, problems } = await openPage(browser, site.origin + PAGE[gen]);
          try {
            const report = await evaluate(page, (o) => window.harness.scenario(o), {
              url: relay.url,
              id: uniqueId(`P${gen}`),
              peer: peer.id,
              transports: [transport],
              // polling moves every chunk over a request of its own: less data, same checks
              streamBytes: transport === 'polling' ? 256 * 1024 : 1024 * 1024,
            }, 80000, 'scenario');
            const tail = peer.stderrTail ? `\nnative peer stderr:\n${peer.stderrTail()}` : '';
            verdict(`${kind} | ${transport} | ${label}`, report, problems, tail);
            if (peerKind === 'node') {
              assert.deepStrictEqual(peer.errors, [], 'the node peer got no SERVER_ERROR');
              assert.strictEqual(peer.sock.targetClientId, undefined, 'the node peer is unpaired at the end');
            } else {
              assert.doesNotMatch(peer.stderrTail(), /^relay: /m, 'the native peer got no server error');
            }
          } finally {
            if (peer.stop) await peer.stop();
            else peer.close();
            await context.close();
          }
        });
      }
    }
  });
}
