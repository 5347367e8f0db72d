'use strict';
// Drives the admin listener's control center page in Debian's Chromium (playwright-core),
// for tests/e2e/admin.rs: the Rust test has paired two clients (alice, bob) with a stream
// trickling between them, and starts this with the page's URL. The page must show both
// clients paired and their stream, its byte counter must move, and disconnecting alice
// with the button (confirmed) must free bob. Prints one JSON line of what it saw; any
// failure exits 1 with the reason. A screenshot goes to target/browser-test/.

const path = require('node:path');
const { launchBrowser, openPage, outDir } = require('./browser/lib/browser');

const url = process.argv[2];
if (!url) {
  console.error('usage: node control_center.js ADMIN_URL');
  process.exit(2);
}

/**
 * Waits (15 s at most) until `fn` is true in the page, with what was awaited in the error.
 * Polled from here with page.evaluate rather than page.waitForFunction: the latter polls
 * by evaluating strings inside the page, which the page's Content-Security-Policy (no
 * 'unsafe-eval') forbids, as it should.
 */
async function until(page, what, fn, arg) {
  const deadline = Date.now() + 15000;
  let last = null;
  for (;;) {
    try {
      if (await page.evaluate(fn, arg)) return;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) {
      const body = await page.evaluate(() => document.body.innerText).catch(() => '?');
      const why = last ? last.message : 'timed out';
      throw new Error(`waiting for ${what}: ${why}\n--- the page shows:\n${body}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function main() {
  const browser = await launchBrowser();
  try {
    const { page, problems } = await openPage(browser, url, { ready: null });
    await until(page, 'a first live reading', 'Number(document.body.dataset.readings || 0) >= 1', null)
      .catch((e) => { throw new Error(`${e.message}\nproblems: ${problems.join('; ')}`); });
    const paired = () => {
      const rows = [...document.querySelectorAll('#clients tr.client')];
      const peerOf = (id) => {
        const row = rows.find((r) => r.querySelector('code.id').textContent === id);
        const peer = row && row.querySelector('code.peer');
        return row ? (peer ? peer.textContent : '') : null;
      };
      return peerOf('alice') === 'bob' && peerOf('bob') === 'alice';
    };
    await until(page, 'alice and bob paired', paired, null);
    const streamBytes = () => {
      const cell = document.querySelector('#streams tr.stream .stream-bytes');
      if (!cell) return -1;
      const between = document.querySelector('#streams tr.stream .between').textContent;
      if (!between.includes('alice') || !between.includes('bob')) return -1;
      return Number(cell.textContent.split(' / ')[0]);
    };
    await until(page, 'their stream', `(${streamBytes})() >= 0`, null);
    const first = await page.evaluate(streamBytes);
    // The counter moves while the stream trickles.
    await until(page, 'the stream counter to move', `(${streamBytes})() > ${first}`, null);
    const later = await page.evaluate(streamBytes);
    const rate = await page.evaluate(() =>
      document.querySelector('#streams tr.stream .stream-rate').textContent);

    // Search narrows the list to matching ids.
    await page.fill('#q', 'ali');
    await until(page, 'the search to show alice alone', () => {
      const ids = [...document.querySelectorAll('#clients tr.client code.id')].map((c) => c.textContent);
      return ids.length === 1 && ids[0] === 'alice';
    }, null);
    await page.fill('#q', '');
    await until(page, 'both clients again', paired, null);

    let asked = null;
    page.once('dialog', (dialog) => { asked = dialog.message(); dialog.accept(); });
    await page.click('#clients button.disconnect[data-id="alice"]');
    await until(page, 'alice gone and bob freed', () => {
      const rows = [...document.querySelectorAll('#clients tr.client')];
      const ids = rows.map((r) => r.querySelector('code.id').textContent);
      const bob = rows.find((r) => r.querySelector('code.id').textContent === 'bob');
      return !ids.includes('alice') && bob && !bob.querySelector('code.peer');
    }, null);
    const notice = await page.evaluate(() => document.getElementById('notice').textContent);
    const shot = path.join(outDir(), 'control-center.png');
    await page.screenshot({ path: shot, fullPage: true });
    // A search closes the page's previous event stream on purpose: that abort is no problem.
    const real = problems.filter((p) => !/api\/live\?.* net::ERR_ABORTED/.test(p));
    if (real.length) throw new Error(`the page reported problems: ${real.join('; ')}`);
    if (!asked || !asked.includes('alice')) throw new Error(`no confirmation was asked (${asked})`);
    console.log(JSON.stringify({ first, later, rate, asked, notice, screenshot: shot }));
  } finally {
    await browser.close();
  }
}

main().catch((e) => {
  console.error(`control center: ${e.stack || e}`);
  process.exit(1);
});
