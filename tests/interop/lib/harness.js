'use strict';
// Per-file scaffolding: one relay child process per call of useRelay(), started in a
// `before` hook and killed in an `after` hook; a client Pool closed after every test.

const { before, after, afterEach } = require('node:test');
const { startRelay } = require('./relay');
const { Pool } = require('./clients');

/**
 * Register hooks in the current suite (or file) that start a relay with `flags`.
 * Returns {relay(), pool}: relay() is the running relay's info once `before` ran.
 */
function useRelay(flags = []) {
  let relay = null;
  const pool = new Pool(() => {
    if (!relay) throw new Error('relay not started (see the before hook error)');
    return relay;
  });
  before(async () => {
    relay = await startRelay(flags);
  }, { timeout: 30000 });
  afterEach(() => {
    pool.closeAll();
    if (relay && !relay.isRunning()) {
      throw new Error(`the relay process died during this test; stderr tail:\n${relay.stderrTail()}`);
    }
  });
  after(async () => {
    pool.closeAll();
    if (relay) await relay.stop();
  }, { timeout: 10000 });
  return {
    relay: () => relay,
    pool,
  };
}

/**
 * Flags that lift the per-client rate limits, for the suites that measure order and
 * back-pressure with thousands of messages a second (the defaults, 1000 requests/s and
 * 8 MiB/s per client, would refuse most of them).
 */
const NO_RATE_LIMITS = ['--rate-messages', '0', '--rate-bytes', '0'];

module.exports = { useRelay, NO_RATE_LIMITS };
