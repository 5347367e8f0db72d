/**
 * The Node platform of p2p-relay-client: streams are `stream.Duplex`, bytes are `Buffer`.
 * The logic is src/core.mjs; this file is only what Node does differently.
 *
 * Node 16+ must `require()` the package, and it cannot require an ES module, so index.js
 * (CommonJS) is GENERATED from this file and src/core.mjs by scripts/build-cjs.js
 * (`npm run build` in js-client; the interop suite fails when index.js is stale).
 * index.mjs re-exports index.js, so `require` and `import` share one plugin.
 */

import { Duplex } from 'stream';
import { SOCKET_EVENT, ackError, createP2pClientPlugin } from './core.mjs';

/** Turn whatever binary representation the transport produced into a Buffer. */
function toBuffer(chunk) {
  if (Buffer.isBuffer(chunk)) return chunk;
  if (chunk instanceof ArrayBuffer) return Buffer.from(chunk);
  if (ArrayBuffer.isView(chunk)) return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  if (Array.isArray(chunk) || typeof chunk === 'string') return Buffer.from(chunk);
  if (chunk && chunk.type === 'Buffer' && Array.isArray(chunk.data)) return Buffer.from(chunk.data);
  return Buffer.from(String(chunk));
}

/** A Duplex for `client`: writes go to the peer one chunk at a time, the peer's chunks are read. */
function createDuplex(client, duplexOptions) {
  // Acks of chunks this duplex holds back because its buffer is above its highWaterMark.
  // A compliant sender has at most one chunk outstanding, so this holds at most one.
  let pendingAcks = [];
  const stats = { chunksIn: 0, bytesIn: 0, chunksOut: 0, bytesOut: 0, maxPendingAcks: 0 };

  const releasePending = () => {
    const acks = pendingAcks;
    pendingAcks = [];
    for (const release of acks) release();
  };

  const duplex = new Duplex({
    ...(duplexOptions || {}),
    write(chunk, encoding, callback) {
      if (!client.targetClientId) {
        callback(new Error('cannot write to a P2P stream: not paired'));
        return;
      }
      const data = typeof chunk === 'string' ? Buffer.from(chunk, encoding) : chunk;
      stats.chunksOut += 1;
      stats.bytesOut += data.length;
      // One chunk at a time: Node calls write() again only after `callback`, which runs
      // when the peer acknowledged this chunk.
      client.emit2(SOCKET_EVENT.P2P_EMIT_STREAM, data, (...answer) => {
        const err = ackError(answer);
        if (err) callback(err);
        else callback();
      });
    },
    read() {
      // The reader pulled: let the sender go on.
      releasePending();
    },
    destroy(err, callback) {
      client._forgetStream(duplex);
      // The pairing or the stream is over: do not leave the relay waiting for these acks.
      releasePending();
      callback(err);
    },
  });

  // As in the 1.4.1 plugin, the duplex listens for its own 'error' from the start: an error
  // destroys it (so `destroy` above releases it), then this listener removes itself. When
  // the application has no 'error' listener, the error is emitted again so that it still
  // throws (from the same `emit`); when it has one, that listener sees the error once.
  const onError = (err) => {
    duplex.removeListener('error', onError);
    if (!duplex.destroyed) duplex.destroy();
    if (duplex.listenerCount('error') === 0) duplex.emit('error', err);
  };
  duplex.on('error', onError);

  duplex.p2pStats = stats;
  duplex._p2pDeliver = (buf, release) => {
    stats.chunksIn += 1;
    stats.bytesIn += buf.length;
    if (duplex.push(buf)) return true;
    pendingAcks.push(release);
    if (pendingAcks.length > stats.maxPendingAcks) stats.maxPendingAcks = pendingAcks.length;
    return false;
  };
  return duplex;
}

const nodePlatform = {
  toBytes: toBuffer,
  createStream: createDuplex,
  receiving: (duplex) => !duplex.destroyed && !duplex.readableEnded,
  deliver: (duplex, buf, release) => duplex._p2pDeliver(buf, release),
  destroy: (duplex) => {
    if (!duplex.destroyed) duplex.destroy();
  },
};

/**
 * Wrap a socket.io-client socket with the p2p API (see src/core.mjs); streams are Duplexes.
 *
 *   const io = require('socket.io-client');
 *   const p2pClientPlugin = require('p2p-relay-client');
 *   const socket = p2pClientPlugin(io('http://host:9000?clientId=A'), 'A');
 *   if (await socket.registerP2pTarget('B')) socket.emit2('hello', 1, Buffer.from('x'));
 */
export const p2pClientPlugin = createP2pClientPlugin(nodePlatform);

export { SOCKET_EVENT };

export default p2pClientPlugin;
