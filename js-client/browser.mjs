/**
 * p2p-relay-client for browsers: the client plugin for socket.io-client 4.x as plain ES
 * modules, no build step. Load it from a bundler (the package's `browser` condition) or
 * straight from a page, serving this folder (browser.mjs imports ./src/core.mjs):
 *
 *   <script type="module">
 *     import { io } from '/vendor/socket.io.esm.min.js';
 *     import p2pClientPlugin from '/vendor/p2p-relay-client/browser.mjs';
 *     const socket = p2pClientPlugin(io('http://127.0.0.1:9000?clientId=A'), 'A');
 *   </script>
 *
 * The logic (pairing, emits, which stream gets which chunk and when its ack goes) is
 * src/core.mjs, the same module the Node entry is built from; this file is only the browser
 * platform: a stream is a {@link P2pStream}, a pair of WHATWG streams (`readable`,
 * `writable`) instead of a Node `Duplex`, with the same ack-based back-pressure, and bytes
 * are `Uint8Array`s.
 */

import { SOCKET_EVENT, ackError, createP2pClientPlugin } from './src/core.mjs';

/** A reader's default buffer, in bytes, before it holds a chunk's ack back. */
const DEFAULT_HIGH_WATER_MARK = 64 * 1024;

const textEncoder = new TextEncoder();

/** Whatever binary the transport produced, as a Uint8Array (a view, not a copy). */
function toBytes(chunk) {
  if (chunk instanceof Uint8Array) return chunk;
  if (chunk instanceof ArrayBuffer) return new Uint8Array(chunk);
  if (ArrayBuffer.isView(chunk)) return new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  if (typeof chunk === 'string') return textEncoder.encode(chunk);
  if (Array.isArray(chunk)) return Uint8Array.from(chunk);
  if (chunk && chunk.type === 'Buffer' && Array.isArray(chunk.data)) return Uint8Array.from(chunk.data);
  return textEncoder.encode(String(chunk));
}

/**
 * What a writer gave us, as an ArrayBuffer holding exactly its bytes: every socket.io-client
 * transport sends an ArrayBuffer whole, whereas some send a view's whole underlying buffer.
 */
async function toArrayBuffer(chunk) {
  if (typeof Blob !== 'undefined' && chunk instanceof Blob) return chunk.arrayBuffer();
  if (chunk instanceof ArrayBuffer) return chunk;
  const bytes = toBytes(chunk);
  if (bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength && bytes.buffer instanceof ArrayBuffer) {
    return bytes.buffer;
  }
  return bytes.slice().buffer;
}

/**
 * One P2P stream: `readable` (a ReadableStream of Uint8Array) receives every chunk the peer
 * writes; `writable` (a WritableStream of ArrayBuffer, typed arrays, DataView, Blob or string)
 * sends one chunk at a time, each write resolving once the peer acknowledged it.
 *
 * - Back-pressure: the readable buffers up to `highWaterMark` bytes; above that, the chunk's
 *   ack is held until the reader reads, so a slow reader slows the peer's writer.
 * - The 1.4.1 protocol has no end of stream: `writable.close()` sends nothing, and the
 *   stream ends when the pairing does (the readable then closes after what it still holds,
 *   the writable errors).
 * - An error destroys it, as an 'error' destroys the Node Duplex: a failed write (the relay
 *   answered with an error, or unpaired), `writable.abort(reason)`, `readable.cancel(reason)`
 *   or `destroy(err)`. It is released at once (a held ack is sent, so the peer goes on; it
 *   receives no further chunks); the pairing and other streams are untouched.
 * - `closed` resolves, with the error or undefined, once it is destroyed.
 */
export class P2pStream {
  constructor(client, options = {}) {
    const highWaterMark = options && Number.isFinite(options.highWaterMark) && options.highWaterMark >= 0
      ? options.highWaterMark
      : DEFAULT_HIGH_WATER_MARK;
    this._client = client;
    this._pendingAcks = [];
    this._inflight = null;
    this.destroyed = false;
    this.p2pStats = { chunksIn: 0, bytesIn: 0, chunksOut: 0, bytesOut: 0, maxPendingAcks: 0 };
    this.closed = new Promise((resolve) => { this._resolveClosed = resolve; });

    let readableController;
    let writableController;
    this.readable = new ReadableStream({
      start: (controller) => { readableController = controller; },
      // The reader made room: let the peer's writer go on.
      pull: () => this._releasePending(),
      cancel: (reason) => this.destroy(reason instanceof Error ? reason : undefined),
    }, new ByteLengthQueuingStrategy({ highWaterMark }));

    this.writable = new WritableStream({
      start: (controller) => { writableController = controller; },
      // A WritableStream calls write() one chunk at a time, after the previous one settled:
      // exactly one chunk in flight, as the protocol requires.
      write: (chunk) => this._write(chunk),
      close: () => {},
      abort: (reason) => this.destroy(reason instanceof Error ? reason : new Error(String(reason))),
    }, new CountQueuingStrategy({ highWaterMark: 1 }));

    this._readableController = readableController;
    this._writableController = writableController;
  }

  async _write(chunk) {
    if (this.destroyed) throw new Error('cannot write to a destroyed P2P stream');
    const data = await toArrayBuffer(chunk);
    const client = this._client;
    if (!client.targetClientId) {
      const err = new Error('cannot write to a P2P stream: not paired');
      this.destroy(err);
      throw err;
    }
    this.p2pStats.chunksOut += 1;
    this.p2pStats.bytesOut += data.byteLength;
    await new Promise((resolve, reject) => {
      this._inflight = reject;
      client.emit2(SOCKET_EVENT.P2P_EMIT_STREAM, data, (...answer) => {
        this._inflight = null;
        const err = ackError(answer);
        if (err) {
          reject(err);
          this.destroy(err);
        } else {
          resolve();
        }
      });
    });
  }

  /** A chunk from the peer; returns false when its ack is held until the reader reads. */
  _deliver(bytes, release) {
    this.p2pStats.chunksIn += 1;
    this.p2pStats.bytesIn += bytes.byteLength;
    this._readableController.enqueue(bytes);
    if (this._readableController.desiredSize > 0) return true;
    this._pendingAcks.push(release);
    if (this._pendingAcks.length > this.p2pStats.maxPendingAcks) {
      this.p2pStats.maxPendingAcks = this._pendingAcks.length;
    }
    return false;
  }

  _releasePending() {
    const acks = this._pendingAcks;
    this._pendingAcks = [];
    for (const release of acks) release();
  }

  /**
   * Destroy the stream: with `err`, both sides error with it; without, the readable closes
   * (what it holds can still be read) and the writable errors. Idempotent.
   */
  destroy(err) {
    if (this.destroyed) return;
    this.destroyed = true;
    this._client._forgetStream(this);
    // The pairing or the stream is over: do not leave the relay waiting for these acks.
    this._releasePending();
    try {
      if (err) this._readableController.error(err);
      else this._readableController.close();
    } catch (_) {
      // already closed, cancelled or errored
    }
    const writeErr = err || new Error('the P2P stream was destroyed');
    try {
      this._writableController.error(writeErr);
    } catch (_) {
      // already closed or errored
    }
    if (this._inflight) {
      const reject = this._inflight;
      this._inflight = null;
      reject(writeErr);
    }
    this._resolveClosed(err);
  }
}

const browserPlatform = {
  toBytes,
  createStream: (client, options) => new P2pStream(client, options),
  receiving: (stream) => !stream.destroyed,
  deliver: (stream, bytes, release) => stream._deliver(bytes, release),
  destroy: (stream) => stream.destroy(),
};

/**
 * Wrap a socket.io-client socket with the p2p API (see src/core.mjs); streams are
 * {@link P2pStream}s.
 */
export const p2pClientPlugin = createP2pClientPlugin(browserPlatform);

export { SOCKET_EVENT };

export default p2pClientPlugin;
