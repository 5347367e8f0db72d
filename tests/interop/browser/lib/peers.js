'use strict';
// The peers a page pairs with, both answering the same requests (see ../pages/harness.mjs):
//  - a node client (legacy 1.4.1-style on socket.io-client 2.x, or js-client on 4.x);
//  - the native echo peer (native-client/examples/echo_peer.rs) over QUIC.

const { spawn } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const { once } = require('node:events');
const { connectClient, withTimeout } = require('../../lib/clients');
const { REPO_ROOT } = require('./static');

/**
 * Every peer started here and not yet stopped: a test that times out never reaches its
 * `finally`, so the file's `after` hook calls closePeers() (else a socket or an echo_peer
 * child would keep the test process alive).
 */
const live = new Set();

/** Connect a node client of `kind` that answers like the native echo peer. */
async function nodeEchoPeer(kind, url, id, transports = ['websocket']) {
  const client = await connectClient(kind, url, id, { transports });
  const close = client.close.bind(client);
  client.close = () => {
    live.delete(client);
    close();
  };
  live.add(client);
  const { raw, sock } = client;
  raw.on('ping', (...args) => sock.emit2('echo:ping', ...args));
  raw.on('ask', (...args) => {
    const ack = args.pop();
    ack(...args);
  });
  raw.on('peer:ask', (event, args, ack) => sock.emit2(event, ...args, (...answer) => ack(...answer)));
  raw.on('peer:list', async (ack) => ack(await sock.getClientList()));
  raw.on('peer:stream', async (size, ack) => {
    const duplex = await sock.registerP2pStream();
    if (!duplex) {
      ack({ error: 'the page refused the stream' });
      return;
    }
    const data = crypto.randomBytes(size);
    for (let off = 0; off < size; off += 64 * 1024) {
      if (!duplex.write(data.subarray(off, Math.min(size, off + 64 * 1024)))) await once(duplex, 'drain');
    }
    // 'finish': every chunk was acknowledged (the protocol sends nothing for the end)
    await new Promise((resolve) => duplex.end(resolve));
    // Done with it: every duplex a client holds receives every chunk its peer writes (the
    // protocol has no stream ids), so a duplex nobody reads would hold the next stream's acks.
    duplex.destroy();
    ack(crypto.createHash('sha256').update(data).digest('hex'));
  });
  raw.on('peer:unregister', (ack) => {
    ack();
    setTimeout(() => { if (raw.connected) sock.unregisterP2pTarget(); }, 50);
  });
  sock.onRegisterP2pStream({}, (duplex) => {
    duplex.on('error', () => {});
    duplex.pipe(duplex);
  });
  return client;
}

function echoPeerBinary() {
  return process.env.P2P_ECHO_PEER_BIN || path.join(REPO_ROOT, 'target', 'release', 'examples', 'echo_peer');
}

/** Start the native echo peer as `id` against `relay` (from startRelay); resolves once connected. */
async function nativeEchoPeer(relay, id) {
  const bin = echoPeerBinary();
  if (!fs.existsSync(bin)) {
    throw new Error(`native echo peer not found at ${bin}: build it with \`cargo build --release -p native-client --example echo_peer\` (cargo test --workspace --release builds it) or set P2P_ECHO_PEER_BIN`);
  }
  const dataDir = relay.args[relay.args.indexOf('--data-dir') + 1];
  // the relay prints its QUIC line just after the Socket.IO one
  const deadline = Date.now() + 5000;
  while (!relay.quicPort && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  if (!relay.quicPort) throw new Error('the relay printed no "QUIC listening on" line');
  const child = spawn(bin, [
    '--relay', `127.0.0.1:${relay.quicPort}`,
    '--ca', path.join(dataDir, 'ca.pem'),
    '--as', id,
  ], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d) => {
    stderr = (stderr + d).slice(-8000);
    if (process.env.P2P_RELAY_LOG) process.stderr.write(`[echo_peer ${id}] ${d}`);
  });
  const exited = once(child, 'exit');
  let stdout = '';
  child.stdout.setEncoding('utf8');
  try {
    await withTimeout(new Promise((resolve, reject) => {
      child.stdout.on('data', (d) => {
        stdout += d;
        if (stdout.includes(`ready ${id}\n`)) resolve();
      });
      child.once('error', reject);
      child.once('exit', (code) => reject(new Error(`echo_peer exited with ${code}: ${stderr}`)));
    }), 10000, `native echo peer ${id} to connect`);
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  }
  const peer = {
    id,
    stderrTail: () => stderr,
    async stop() {
      live.delete(peer);
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.stdin.end(); // it exits when its standard input closes
      let timer;
      const gone = await Promise.race([
        exited.then(() => true),
        new Promise((r) => { timer = setTimeout(() => r(false), 3000); }),
      ]).finally(() => clearTimeout(timer)); // no 3 s timer left behind to hold the process
      if (!gone) {
        child.kill('SIGKILL');
        await exited;
      }
    },
  };
  live.add(peer);
  return peer;
}

/** Stop every peer still running (for `after` hooks). */
async function closePeers() {
  await Promise.allSettled([...live].map(async (peer) => (peer.stop ? peer.stop() : peer.close())));
}

module.exports = { nodeEchoPeer, nativeEchoPeer, echoPeerBinary, closePeers };
