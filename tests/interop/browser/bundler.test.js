'use strict';
// js-client from a bundler: esbuild builds `import p2pClientPlugin from 'p2p-relay-client'`
// (with socket.io-client from npm) for the browser. The package's `browser` condition must
// give browser.mjs (and src/core.mjs, which it imports), not the Node entry with its
// `stream` import, and the bundle must pass the same scenario in Chromium as the
// hand-loaded module.

const { test, before, after } = require('node:test');
const assert = require('node:assert');
const path = require('node:path');
const esbuild = require('esbuild');
const { startRelay } = require('../lib/relay');
const { uniqueId } = require('../lib/clients');
const { startStatic, REPO_ROOT } = require('./lib/static');
const { launchBrowser, openPage, evaluate, startAll } = require('./lib/browser');
const { nodeEchoPeer, closePeers } = require('./lib/peers');

const ENTRY = `
import { io } from 'socket.io-client';
import p2pClientPlugin, { P2pStream } from 'p2p-relay-client';
import { makeHarness } from './pages/harness.mjs';
window.harness = makeHarness({ gen: 4, io, plugin: p2pClientPlugin, kind: 'js' });
window.bundledStreamClass = P2pStream.name;
window.harnessReady = true;
`;

let relay;
let site;
let browser;
let bundle;

before(async () => {
  bundle = await esbuild.build({
    stdin: { contents: ENTRY, resolveDir: __dirname, sourcefile: 'entry.mjs', loader: 'js' },
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2020',
    write: false,
    metafile: true,
    absWorkingDir: __dirname, // metafile paths are relative to it
    logLevel: 'silent',
  });
  await startAll([
    startRelay(),
    startStatic({ extra: { '/bundle/app.js': bundle.outputFiles[0].contents } }),
    launchBrowser(),
  ], (started) => { [relay, site, browser] = started; });
}, { timeout: 40000 });

after(async () => {
  await closePeers(); // the ones a timed-out test left behind
  await Promise.allSettled([browser && browser.close(), site && site.close(), relay && relay.stop()]);
}, { timeout: 20000 });

test('a browser build resolves p2p-relay-client to browser.mjs', () => {
  const inputs = Object.keys(bundle.metafile.inputs).map((p) => path.resolve(__dirname, p));
  const jsClient = inputs.filter((p) => p.startsWith(path.join(REPO_ROOT, 'js-client') + path.sep)).sort();
  // browser.mjs and the logic it imports, exactly: nothing of the Node entry (index.js,
  // index.mjs, src/node.mjs with its `stream` import)
  const expected = ['browser.mjs', 'src/core.mjs'].map((f) => path.join(REPO_ROOT, 'js-client', f)).sort();
  assert.deepStrictEqual(jsClient, expected, `js-client files in the bundle: ${jsClient}`);
  assert.deepStrictEqual(bundle.warnings, []);
});

test('the bundled plugin: pair, emits with binary, streams, unregister (websocket, node peer)', { timeout: 60000 }, async () => {
  const peer = await nodeEchoPeer('legacy', relay.url, uniqueId('N'));
  const { context, page, problems } = await openPage(browser, `${site.origin}/pages/bundled.html`);
  try {
    assert.strictEqual(await page.evaluate(() => window.bundledStreamClass), 'P2pStream');
    const report = await evaluate(page, (o) => window.harness.scenario(o),
      { url: relay.url, id: uniqueId('B'), peer: peer.id, transports: ['websocket'], streamBytes: 512 * 1024 }, 50000, 'scenario');
    const failed = report.checks.filter((c) => !c.ok);
    assert.deepStrictEqual(failed, [], `failed checks ${JSON.stringify(failed, null, 1)}\npage problems: ${problems.join('\n')}`);
    assert.ok(report.checks.length >= 10);
    assert.deepStrictEqual(peer.errors, []);
  } finally {
    peer.close();
    await context.close();
  }
});
