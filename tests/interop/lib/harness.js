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

module.exports = { useRelay };
