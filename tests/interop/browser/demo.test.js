'use strict';
// The demo page (js-client/demo, served by its own serve.js) in Chromium, against the
// `p2p-relay-client` CLI: the page sends a file to `recv`, and receives the files `send`
// sends; both sides' SHA-256 must match the files'. Then chat and a file between two pages.
// Screenshots: target/browser-test/demo.png (and demo-two-pages.png).

const { test, before, after } = require('node:test');
const assert = require('node:assert');
const { spawn } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { once } = require('node:events');
const { startRelay } = require('../lib/relay');
const { withTimeout, waitFor, connectClient } = require('../lib/clients');
const { REPO_ROOT } = require('./lib/static');
const { launchBrowser, outDir, startAll } = require('./lib/browser');

const DEMO_DIR = path.join(REPO_ROOT, 'js-client', 'demo');
const CLI = process.env.P2P_RELAY_CLIENT_BIN || path.join(REPO_ROOT, 'target', 'release', 'p2p-relay-client');
const TO_CLI_BYTES = 24 * 1024 * 1024;

let relay;
let demo;
let browser;
let work;
const children = new Set();
// serve.js and the CLI do not outlive this file, however it ends
process.on('exit', () => {
  for (const child of children) {
    try { child.kill('SIGKILL'); } catch (_) { /* gone */ }
  }
});

function sha256(file) {
  return crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

function randomFile(name, size) {
  const file = path.join(work, name);
  fs.writeFileSync(file, crypto.randomBytes(size));
  return file;
}

/** Resolve true once `child` exited, false after `ms` (no timer is left behind either way). */
function exitWithin(child, ms) {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  let timer;
  return Promise.race([
    once(child, 'exit').then(() => true),
    new Promise((resolve) => { timer = setTimeout(() => resolve(false), ms); }),
  ]).finally(() => clearTimeout(timer));
}

/** Start `node serve.js` on a free port; resolves {url, stop()}. */
async function startDemo(relayUrl) {
  if (!fs.existsSync(path.join(DEMO_DIR, 'node_modules'))) {
    throw new Error(`run \`npm ci\` in ${DEMO_DIR} first (tests/js/browser.rs and .ci/run do)`);
  }
  const child = spawn(process.execPath, ['serve.js', '--port', '0', '--relay', relayUrl], { cwd: DEMO_DIR, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let out = '';
  child.stdout.setEncoding('utf8');
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d) => { out += d; });
  const url = await withTimeout(new Promise((resolve, reject) => {
    child.stdout.on('data', (d) => {
      out += d;
      const m = /^demo at (http:\/\/127\.0\.0\.1:\d+\/) /m.exec(out);
      if (m) resolve(m[1]);
    });
    child.once('exit', (code) => reject(new Error(`serve.js exited with ${code}: ${out}`)));
  }), 10000, 'serve.js to listen');
  return {
    url,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        if (!(await exitWithin(child, 3000))) child.kill('SIGKILL');
      }
    },
  };
}

/** Run the CLI with `args`; resolves {code, stdout, stderr}, killed after `ms`. */
function runCli(args, ms) {
  if (!fs.existsSync(CLI)) throw new Error(`${CLI} is missing: cargo build --release -p native-client (or set P2P_RELAY_CLIENT_BIN)`);
  const dataDir = relay.args[relay.args.indexOf('--data-dir') + 1];
  const child = spawn(CLI, ['--relay', `127.0.0.1:${relay.quicPort}`, '--ca', path.join(dataDir, 'ca.pem'), ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, RUST_LOG: 'warn' },
  });
  children.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8');
  child.stderr.setEncoding('utf8');
  child.stdout.on('data', (d) => { stdout += d; });
  child.stderr.on('data', (d) => { stderr += d; });
  const timer = setTimeout(() => child.kill('SIGKILL'), ms);
  const done = once(child, 'exit').then(([code, signal]) => {
    clearTimeout(timer);
    children.delete(child);
    return { code, signal, stdout, stderr };
  });
  return { done, output: () => ({ stdout, stderr }) };
}

async function openDemo(id) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  page.setDefaultTimeout(15000);
  const problems = [];
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  page.on('console', (msg) => { if (msg.type() === 'error') problems.push(`console.error: ${msg.text()}`); });
  await page.goto(demo.url);
  await page.waitForSelector('body[data-ready="true"]');
  assert.strictEqual(await page.inputValue('#relay-url'), relay.url, 'the page takes its relay from serve.js');
  await page.fill('#my-id', id);
  await page.click('#connect');
  await page.waitForSelector('#status[data-state="on"]');
  return { context, page, problems };
}

/** Wait until `id` is connected to the relay (as seen by a short-lived client). */
async function waitConnected(id) {
  const probe = await connectClient('js', relay.url, `probe-${process.pid}-${Math.random().toString(36).slice(2, 7)}`);
  try {
    await waitFor(async () => (await probe.list()).includes(id), 10000, `${id} to connect`, 50);
  } finally {
    probe.close();
  }
}

before(async () => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'p2p-relay-demo-'));
  relay = await startRelay();
  await startAll([startDemo(relay.url), launchBrowser()], (started) => { [demo, browser] = started; });
}, { timeout: 40000 });

after(async () => {
  for (const child of children) child.kill('SIGKILL');
  await Promise.allSettled([browser && browser.close(), demo && demo.stop(), relay && relay.stop()]);
  if (work) fs.rmSync(work, { recursive: true, force: true });
}, { timeout: 20000 });

test('the demo page sends a file to `p2p-relay-client recv` and receives what `send` sends', { timeout: 120000 }, async () => {
  const { context, page, problems } = await openDemo('web');
  try {
    // --- page -> CLI
    const inDir = fs.mkdtempSync(path.join(work, 'in-'));
    const recv = runCli(['recv', '--as', 'cli-in', '--out', inDir, '--count', '1'], 90000);
    await waitConnected('cli-in');
    await page.fill('#peer-id', 'cli-in');
    await page.click('#pair');
    await page.waitForSelector('#pair-status[data-peer="cli-in"]');
    const toCli = randomFile('from-the-page.bin', TO_CLI_BYTES);
    await page.setInputFiles('#file-input', toCli);
    await page.click('#send-file');
    await page.waitForSelector('#send-result[data-state="ok"], #send-result[data-state="error"]', { timeout: 60000 });
    const result = await page.textContent('#send-result');
    assert.strictEqual(await page.getAttribute('#send-result', 'data-state'), 'ok', `${result}\nCLI: ${JSON.stringify(recv.output())}`);
    const expected = sha256(toCli);
    assert.strictEqual(await page.getAttribute('#send-result', 'data-sha256'), expected, 'the page\'s SHA-256 of the file');
    const mbps = await page.getAttribute('#send-result', 'data-mbps');
    await page.click('#unpair'); // the CLI, its --count reached, leaves once we let go
    await page.waitForSelector('#pair-status[data-peer=""]');
    const r = await withTimeout(recv.done, 30000, 'p2p-relay-client recv to exit');
    assert.strictEqual(r.code, 0, `recv failed: ${r.stderr}`);
    assert.match(r.stdout, new RegExp(`received .*from-the-page\\.bin from 'web': ${TO_CLI_BYTES} bytes .* sha256 ${expected}`), r.stdout);
    assert.strictEqual(sha256(path.join(inDir, 'from-the-page.bin')), expected, 'the file the CLI saved');
    console.log(`page -> CLI: ${TO_CLI_BYTES} bytes at ${mbps} MB/s (as the page measured); CLI: ${r.stdout.trim()}`);

    // --- CLI -> page (one file after another, announced, verified by the CLI)
    const files = [randomFile('first.bin', 5 * 1024 * 1024 + 3), randomFile('second.txt', 1000), randomFile('empty.dat', 0)];
    const send = runCli(['send', '--as', 'cli-out', '--to', 'web', ...files], 60000);
    const s = await withTimeout(send.done, 60000, 'p2p-relay-client send to exit');
    assert.strictEqual(s.code, 0, `send failed: ${s.stderr}\n${s.stdout}`);
    for (const file of files) {
      const name = path.basename(file);
      assert.match(s.stdout, new RegExp(`sent ${name.replace('.', '\\.')}: ${fs.statSync(file).size} bytes .* sha256 ${sha256(file)}`));
      const li = page.locator(`#received li[data-name="${name}"]`);
      await li.waitFor({ timeout: 10000 });
      assert.strictEqual(await li.getAttribute('data-sha256'), sha256(file), `the page's SHA-256 of ${name}`);
      assert.strictEqual(await li.getAttribute('data-size'), String(fs.statSync(file).size));
      assert.match(await li.textContent(), new RegExp(`sha256 ${sha256(file)}`), 'the SHA-256 is shown');
    }
    await page.waitForSelector('#pair-status[data-peer=""]'); // the CLI let go
    const shot = path.join(outDir(), 'demo.png');
    await page.screenshot({ path: shot, fullPage: true });
    assert.deepStrictEqual(problems, [], 'no page errors');
  } finally {
    await context.close();
  }
});

test('two demo pages chat and send a file to each other', { timeout: 60000 }, async () => {
  const a = await openDemo('ann');
  const b = await openDemo('ben');
  try {
    await a.page.fill('#peer-id', 'ben');
    await a.page.click('#pair');
    await a.page.waitForSelector('#pair-status[data-peer="ben"]');
    await b.page.waitForSelector('#pair-status[data-peer="ann"]');
    await a.page.fill('#chat-input', 'hello ben');
    await a.page.click('#chat-send');
    await b.page.waitForSelector('#chat-log li.them:has-text("hello ben")');
    await b.page.fill('#chat-input', 'hi ann ✓');
    await b.page.press('#chat-input', 'Enter');
    await a.page.waitForSelector('#chat-log li.them:has-text("hi ann ✓")');
    const file = randomFile('page-to-page.bin', 2 * 1024 * 1024 + 11);
    await a.page.setInputFiles('#file-input', file);
    await a.page.click('#send-file');
    await a.page.waitForSelector('#send-result[data-state="ok"]', { timeout: 30000 });
    const li = b.page.locator('#received li[data-name="page-to-page.bin"]');
    await li.waitFor();
    assert.strictEqual(await li.getAttribute('data-sha256'), sha256(file));
    await b.page.screenshot({ path: path.join(outDir(), 'demo-two-pages.png'), fullPage: true });
    assert.deepStrictEqual([...a.problems, ...b.problems], [], 'no page errors');
  } finally {
    await a.context.close();
    await b.context.close();
  }
});
