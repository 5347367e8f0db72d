'use strict';
// Debian's Chromium driven by playwright-core: one browser per test file, one context per
// case, console errors and page errors collected for the failure messages.

const fs = require('node:fs');
const path = require('node:path');
const { chromium } = require('playwright-core');
const { REPO_ROOT } = require('./static');

const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
/** Where screenshots and the matrix summary go. */
const OUT_DIR = process.env.P2P_BROWSER_OUT || path.join(REPO_ROOT, 'target', 'browser-test');

async function launchBrowser() {
  if (!fs.existsSync(CHROMIUM)) {
    throw new Error(`no Chromium at ${CHROMIUM}: install Debian's (apt-get install chromium) or set CHROMIUM_BIN`);
  }
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-background-networking'],
    timeout: 30000,
  });
}

/** A fresh context and page; `page.problems` collects console errors and page errors. */
async function openPage(browser, url, { ready = 'window.harnessReady === true' } = {}) {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.setDefaultTimeout(15000);
  const problems = [];
  page.on('console', (msg) => {
    if (msg.type() === 'error') problems.push(`console.error: ${msg.text()}`);
  });
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  page.on('requestfailed', (req) => problems.push(`request failed: ${req.url()} ${req.failure() && req.failure().errorText}`));
  await page.goto(url, { timeout: 15000 });
  if (ready) await page.waitForFunction(ready, null, { timeout: 15000 });
  return { context, page, problems };
}

/** Run `fn(arg)` in the page, bounded (page.evaluate alone waits forever). */
async function evaluate(page, fn, arg, ms, label) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${label}`)), ms);
  });
  try {
    return await Promise.race([page.evaluate(fn, arg), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Await every start in `starts` (e.g. a relay, the static server, the browser) and give each
 * one that succeeded to `assign` (null for the ones that failed), then throw the first
 * failure. So a failed start still lets the `after` hook stop the others: with Promise.all
 * their results would be lost, and a running relay or server would keep the file's process
 * alive.
 */
async function startAll(starts, assign) {
  const settled = await Promise.allSettled(starts);
  assign(settled.map((s) => (s.status === 'fulfilled' ? s.value : null)));
  const failed = settled.find((s) => s.status === 'rejected');
  if (failed) throw failed.reason;
}

function outDir() {
  fs.mkdirSync(OUT_DIR, { recursive: true });
  return OUT_DIR;
}

module.exports = { launchBrowser, openPage, evaluate, outDir, startAll };
