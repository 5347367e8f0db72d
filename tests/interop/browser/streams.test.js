'use strict';
// js-client's browser streams (WHATWG ReadableStream/WritableStream) against a legacy node
// peer: ack-based back-pressure, and an error destroying a stream as it destroys the Node
// Duplex (js-client/README.md "Streams").

const { test, before, after } = require('node:test');
const assert = require('node:assert');
const { startRelay } = require('../lib/relay');
const { uniqueId } = require('../lib/clients');
const { startStatic } = require('./lib/static');
const { launchBrowser, openPage, evaluate, startAll } = require('./lib/browser');
const { nodeEchoPeer, closePeers } = require('./lib/peers');

let relay;
let site;
let browser;

before(async () => {
  await startAll([startRelay(), startStatic(), launchBrowser()], (started) => { [relay, site, browser] = started; });
}, { timeout: 40000 });

after(async () => {
  await closePeers(); // the ones a timed-out test left behind
  await Promise.allSettled([browser && browser.close(), site && site.close(), relay && relay.stop()]);
}, { timeout: 20000 });

for (const nodeKind of ['legacy', 'js']) {
  test(`browser stream rules, ${nodeKind} node peer`, { timeout: 90000 }, async () => {
    const peer = await nodeEchoPeer(nodeKind, relay.url, uniqueId('N'));
    const { context, page, problems } = await openPage(browser, `${site.origin}/pages/v4.html`);
    try {
      const report = await evaluate(page, (o) => window.harness.streamRules(o),
        { url: relay.url, id: uniqueId('P'), peer: peer.id }, 80000, 'stream rules');
      const failed = report.checks.filter((c) => !c.ok);
      assert.deepStrictEqual(failed, [], `failed checks ${JSON.stringify(failed, null, 1)}\npage problems: ${problems.join('\n')}`);
      assert.ok(report.checks.length >= 6);
      assert.deepStrictEqual(peer.errors, [], 'the node peer got no SERVER_ERROR');
    } finally {
      peer.close();
      await context.close();
    }
  });
}
