'use strict';
// Starts the real relay binary as a child process for one test file.
//
// Binary: $P2P_RELAY_BIN, else <repo>/target/release/p2p-relay.
// Set P2P_RELAY_LOG=1 to copy the relay's stderr (its logs) to this process's stderr.

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const REPO_ROOT = path.resolve(__dirname, '..', '..', '..');
const DEFAULT_BIN = path.join(REPO_ROOT, 'target', 'release', 'p2p-relay');
const LISTEN_RE = /^Socket\.IO gateway listening on (https?:\/\/127\.0\.0\.1:(\d+))\s*$/;
const QUIC_RE = /^QUIC listening on 127\.0\.0\.1:(\d+)\s*$/;
const START_TIMEOUT_MS = 20000;
const STDERR_KEEP = 64 * 1024;

const running = new Set();
process.on('exit', () => {
  for (const child of running) {
    try { child.kill('SIGKILL'); } catch (_) { /* already gone */ }
  }
});

function relayBinary() {
  return process.env.P2P_RELAY_BIN || DEFAULT_BIN;
}

/**
 * Start a relay. Resolves to {url, port, quicPort, pid, stop(), stderrTail(), exited}.
 * Rejects with a clear message if the binary is missing, exits early or never prints its
 * listening line.
 * @param {string[]} flags extra command-line flags, e.g. ['--duplicate-policy', 'reject']
 */
async function startRelay(flags = []) {
  if (process.env.P2P_INTEROP_CLUSTER_REDIS) return startCluster(flags);
  return startOne(flags);
}

let clusterRuns = 0;

/**
 * Cluster mode (tests/js/js_interop_cluster.rs sets P2P_INTEROP_CLUSTER_REDIS to a Redis URL
 * and P2P_INTEROP_CLUSTER_SECRET to the secret file): two relay nodes sharing that Redis,
 * under a cluster name of their own. `url` alternates between the two nodes on every read,
 * so the clients of a test alternate too and every pair is split across the nodes.
 */
async function startCluster(flags) {
  clusterRuns += 1;
  const name = `interop-${process.pid}-${clusterRuns}`;
  const cluster = [
    '--cluster', process.env.P2P_INTEROP_CLUSTER_REDIS,
    '--cluster-secret-file', process.env.P2P_INTEROP_CLUSTER_SECRET,
    '--cluster-name', name,
  ];
  const first = await startOne([...flags, ...cluster]);
  let second;
  try {
    second = await startOne([...flags, ...cluster]);
  } catch (err) {
    await first.stop();
    throw err;
  }
  const nodes = [first, second];
  let reads = 0;
  return {
    get url() {
      const node = nodes[reads % 2];
      reads += 1;
      return node.url;
    },
    get port() { return first.port; },
    get quicPort() { return first.quicPort; },
    pid: first.pid,
    args: first.args,
    nodes,
    async stop() { await Promise.all(nodes.map((n) => n.stop())); },
    exited: Promise.race(nodes.map((n) => n.exited)),
    isRunning: () => nodes.every((n) => n.isRunning()),
    stderrTail: (n = 4000) => nodes.map((node, i) => `--- node ${i + 1}:\n${node.stderrTail(n)}`).join('\n'),
  };
}

async function startOne(flags = []) {
  const bin = relayBinary();
  if (!fs.existsSync(bin)) {
    throw new Error(
      `relay binary not found at ${bin}: build it with \`cargo build --release\` in ${REPO_ROOT} ` +
      'or point P2P_RELAY_BIN at it',
    );
  }
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'p2p-relay-interop-'));
  const args = [
    '--socketio-listen', '127.0.0.1:0',
    '--quic-listen', '127.0.0.1:0',
    '--admin-listen', '127.0.0.1:0',
    '--data-dir', dataDir,
    ...flags,
  ];
  const child = spawn(bin, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'warn' },
  });
  running.add(child);

  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d) => {
    if (process.env.P2P_RELAY_LOG) process.stderr.write(d);
    stderr += d;
    if (stderr.length > STDERR_KEEP) stderr = stderr.slice(-STDERR_KEEP);
  });

  let exitInfo = null;
  const exited = new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      exitInfo = { code, signal };
      running.delete(child);
      resolve(exitInfo);
    });
  });

  const listening = new Promise((resolve, reject) => {
    let stdout = '';
    let url = null;
    let port = null;
    let quicPort = null;
    let resolved = null;
    const timer = setTimeout(() => {
      reject(new Error(
        `relay did not print "Socket.IO gateway listening on http://127.0.0.1:PORT" within ` +
        `${START_TIMEOUT_MS} ms (args: ${args.join(' ')}); stdout so far: ${JSON.stringify(stdout)}; ` +
        `stderr tail: ${stderr.slice(-2000)}`,
      ));
    }, START_TIMEOUT_MS);
    const done = (err) => {
      clearTimeout(timer);
      if (err) reject(err);
      else {
        resolved = { url, port, quicPort };
        resolve(resolved);
      }
    };
    child.on('error', (err) => done(new Error(`could not start relay ${bin}: ${err.message}`)));
    child.on('exit', (code, signal) => {
      if (!url) {
        done(new Error(
          `relay exited early (code ${code}, signal ${signal}) with args ${args.join(' ')}; ` +
          `stderr tail: ${stderr.slice(-2000)}`,
        ));
      }
    });
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d) => {
      stdout += d;
      let nl;
      while ((nl = stdout.indexOf('\n')) >= 0) {
        const line = stdout.slice(0, nl);
        stdout = stdout.slice(nl + 1);
        const m = LISTEN_RE.exec(line);
        if (m) {
          url = m[1];
          port = Number(m[2]);
        }
        const q = QUIC_RE.exec(line);
        if (q) {
          quicPort = Number(q[1]);
          // it may come after the Socket.IO line, once the caller already has `resolved`
          if (resolved) resolved.quicPort = quicPort;
        }
        if (url) {
          // The QUIC line may come before or after; the Socket.IO one is all we need.
          done();
        }
      }
    });
  });

  let info;
  try {
    info = await listening;
  } catch (err) {
    child.kill('SIGKILL');
    await Promise.race([exited, delay(2000)]);
    fs.rmSync(dataDir, { recursive: true, force: true });
    throw err;
  }

  async function stop() {
    if (!exitInfo) {
      child.kill('SIGTERM');
      const res = await Promise.race([exited, delay(3000).then(() => null)]);
      if (!res) {
        child.kill('SIGKILL');
        await Promise.race([exited, delay(2000)]);
      }
    }
    fs.rmSync(dataDir, { recursive: true, force: true });
  }

  return {
    url: info.url,
    port: info.port,
    get quicPort() { return info.quicPort; },
    pid: child.pid,
    args,
    dataDir,
    stop,
    exited,
    isRunning: () => exitInfo === null,
    stderrTail: (n = 4000) => stderr.slice(-n),
  };
}

function delay(ms) {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    if (t.unref) t.unref();
  });
}

module.exports = { startRelay, relayBinary, REPO_ROOT };
