/**
 * p2p-relay-client for browsers: the client plugin for socket.io-client 4.x as a plain ES
 * module, with no imports and no build step. Load it from a bundler (the package's `browser`
 * condition) or straight from a page:
 *
 *   <script type="module">
 *     import { io } from '/vendor/socket.io.esm.min.js';
 *     import p2pClientPlugin from '/vendor/p2p-relay-client/browser.mjs';
 *     const socket = p2pClientPlugin(io('http://127.0.0.1:9000?clientId=A'), 'A');
 *   </script>
 *
 * The API is the one of the Node entry (index.js), which is the 1.4.1 plugin's; only the
 * streams differ: a stream here is a {@link P2pStream}, a pair of WHATWG streams
 * (`readable`, `writable`) instead of a Node `Duplex`, with the same ack-based
 * back-pressure. The Node entry stays CommonJS for Node 16+ (which cannot `require` an ES
 * module), so the pairing and chunk rules are written twice, here and in index.js; the
 * browser suite (tests/interop/browser) runs the same cases against both.
 */

export const SOCKET_EVENT = Object.freeze({
  P2P_REGISTER: 'P2P_REGISTER',
  P2P_UNREGISTER: 'P2P_UNREGISTER',
  P2P_DISCONNECT: 'P2P_DISCONNECT',
  P2P_EMIT: 'P2P_EMIT',
  P2P_EMIT_ACKNOWLEDGE: 'P2P_EMIT_ACKNOWLEDGE',
  LIST_CLIENTS: 'LIST_CLIENTS',
  SERVER_ERROR: 'SERVER_ERROR',
  P2P_REGISTER_STREAM: 'P2P_REGISTER_STREAM',
  P2P_EMIT_STREAM: 'P2P_EMIT_STREAM',
});

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

function ackError(answer) {
  const first = answer[0];
  return first && typeof first === 'object' && typeof first.error === 'string' ? new Error(first.error) : null;
}

/** Pull `clientId` out of the Manager's URI or query options, when the caller did not pass it. */
function clientIdFromSocket(socket) {
  try {
    const manager = socket && socket.io;
    if (!manager) return undefined;
    if (typeof manager.uri === 'string') {
      const base = typeof location !== 'undefined' ? location.href : 'http://localhost';
      const id = new URL(manager.uri, base).searchParams.get('clientId');
      if (id !== null) return id;
    }
    const query = manager.opts && manager.opts.query;
    if (query && typeof query === 'object' && typeof query.clientId === 'string') {
      try {
        return decodeURIComponent(query.clientId);
      } catch (_) {
        return query.clientId;
      }
    }
  } catch (_) {
    // the id is then unknown, as in the original plugin
  }
  return undefined;
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
    this._client._streams.delete(this);
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

class P2pClient {
  constructor(socket, clientId) {
    this.socket = socket;
    this.clientId = clientId !== undefined ? clientId : clientIdFromSocket(socket);
    this.targetClientId = undefined;
    this.options = {};

    /** true while our own P2P_REGISTER waits for its answer: we are not free then. */
    this._registering = false;
    /** the streams this client holds; every one of them receives every chunk (no stream ids). */
    this._streams = new Set();
    /** {streamOptions, callback} while onRegisterP2pStream is in force, else null. */
    this._streamListener = null;

    socket.on(SOCKET_EVENT.P2P_REGISTER, (...args) => {
      const ack = typeof args[args.length - 1] === 'function' ? args.pop() : undefined;
      const sourceClientId = args[0];
      const free = !this.targetClientId && !this._registering && typeof sourceClientId === 'string'
        && sourceClientId !== this.clientId;
      if (free) this.targetClientId = sourceClientId;
      if (ack) ack(free);
    });

    socket.on(SOCKET_EVENT.P2P_UNREGISTER, (...args) => {
      const ack = typeof args[args.length - 1] === 'function' ? args[args.length - 1] : undefined;
      this._endPairing();
      if (ack) ack();
    });

    socket.on(SOCKET_EVENT.P2P_DISCONNECT, () => this._endPairing());
    socket.on('disconnect', () => this._endPairing());

    socket.on(SOCKET_EVENT.SERVER_ERROR, (message) => {
      const listeners = typeof socket.listeners === 'function' ? socket.listeners(SOCKET_EVENT.SERVER_ERROR) : [];
      if (listeners.length <= 1) console.error(`Error emitted from server: ${message}`);
    });

    socket.on(SOCKET_EVENT.P2P_REGISTER_STREAM, (...args) => {
      const ack = typeof args[args.length - 1] === 'function' ? args[args.length - 1] : undefined;
      const listener = this._streamListener;
      if (!listener) {
        if (ack) ack(false);
        return;
      }
      const stream = this._createStream(listener.streamOptions);
      if (listener.callback) listener.callback(stream);
      if (ack) ack(true);
    });

    socket.on(SOCKET_EVENT.P2P_EMIT_STREAM, (...args) => {
      const ack = typeof args[args.length - 1] === 'function' ? args.pop() : undefined;
      this._onStreamChunk(args[0], ack);
    });
  }

  // ---------------------------------------------------------------- pairing

  registerP2pTarget(targetClientId, options = {}, successCallbackFn, failureCallbackFn) {
    if (this.clientId !== undefined && this.clientId === targetClientId) {
      throw new Error('Target client ID can not be the same as source client ID');
    }
    if (this.targetClientId) {
      throw new Error(`Current target: ${this.targetClientId}, targetClientId must be empty before registering`);
    }
    const attempt = (done) => {
      this._registering = true;
      this.socket.emit(SOCKET_EVENT.P2P_REGISTER, targetClientId, (targetAvailable) => {
        this._registering = false;
        if (targetAvailable === true) {
          this.targetClientId = targetClientId;
          this.options = options || {};
          done(true);
        } else {
          done(false);
        }
      });
    };
    if (successCallbackFn || failureCallbackFn) {
      attempt((ok) => {
        if (ok && successCallbackFn) successCallbackFn();
        if (!ok && failureCallbackFn) failureCallbackFn();
      });
      return undefined;
    }
    return new Promise((resolve) => attempt(resolve));
  }

  unregisterP2pTarget(callback) {
    const run = (done) => {
      if (!this.targetClientId) {
        done();
        return;
      }
      this.targetClientId = undefined;
      this.socket.emit(SOCKET_EVENT.P2P_UNREGISTER, () => {
        this._destroyStreams();
        done();
      });
    };
    if (typeof callback === 'function') {
      run(callback);
      return undefined;
    }
    return new Promise((resolve) => run(() => resolve()));
  }

  // --------------------------------------------------------------- messages

  emit2(...all) {
    if (!this.targetClientId) throw new Error('emit2 must be called after targetClientId is set');
    const [event, ...args] = all;
    if (!event) throw new Error('event must be specified');
    if (typeof all[all.length - 1] === 'function') {
      const ackFn = args.pop();
      this.socket.emit(SOCKET_EVENT.P2P_EMIT_ACKNOWLEDGE, { targetClientId: this.targetClientId, event, args }, ackFn);
    } else {
      this.socket.emit(SOCKET_EVENT.P2P_EMIT, { targetClientId: this.targetClientId, event, args });
    }
  }

  getClientList(successCallbackFn) {
    if (typeof successCallbackFn === 'function') {
      this.socket.emit(SOCKET_EVENT.LIST_CLIENTS, (clientList) => successCallbackFn(clientList));
      return undefined;
    }
    return new Promise((resolve) => {
      this.socket.emit(SOCKET_EVENT.LIST_CLIENTS, (clientList) => resolve(clientList));
    });
  }

  // ---------------------------------------------------------------- streams

  registerP2pStream(streamOptions, successCallback, failureCallback) {
    const attempt = (done) => {
      this.socket.emit(SOCKET_EVENT.P2P_REGISTER_STREAM, this.targetClientId, (success) => {
        if (success === true && this.targetClientId) done(this._createStream(streamOptions));
        else done(null);
      });
    };
    if (successCallback || failureCallback) {
      attempt((stream) => {
        if (stream && successCallback) successCallback(stream);
        if (!stream && failureCallback) failureCallback();
      });
      return undefined;
    }
    return new Promise((resolve) => attempt(resolve));
  }

  onRegisterP2pStream(streamOptions, callback) {
    if (typeof streamOptions === 'function') {
      callback = streamOptions;
      streamOptions = {};
    }
    this._streamListener = { streamOptions: streamOptions || {}, callback };
  }

  offRegisterP2pStream() {
    this._streamListener = null;
  }

  _createStream(streamOptions) {
    const stream = new P2pStream(this, streamOptions);
    this._streams.add(stream);
    return stream;
  }

  _onStreamChunk(chunk, ack) {
    const answer = typeof ack === 'function' ? ack : () => {};
    const streams = [...this._streams].filter((s) => !s.destroyed);
    if (streams.length === 0 || chunk === undefined || chunk === null) {
      answer();
      return;
    }
    if (typeof Blob !== 'undefined' && chunk instanceof Blob) {
      // A transport set to binaryType 'blob': one chunk is in flight at a time, so
      // converting it first keeps the order.
      chunk.arrayBuffer().then((buf) => this._onStreamChunk(buf, answer), () => answer());
      return;
    }
    const bytes = toBytes(chunk);
    // Ack once every stream has taken the chunk (at once, or when its reader reads).
    let waiting = 1;
    let answered = false;
    const release = () => {
      waiting -= 1;
      if (waiting === 0 && !answered) {
        answered = true;
        answer();
      }
    };
    for (const stream of streams) {
      waiting += 1;
      let released = false;
      const releaseOnce = () => {
        if (!released) {
          released = true;
          release();
        }
      };
      if (stream._deliver(bytes, releaseOnce)) releaseOnce();
    }
    release();
  }

  _destroyStreams() {
    for (const stream of [...this._streams]) stream.destroy();
    this._streams.clear();
  }

  _endPairing() {
    this.targetClientId = undefined;
    this._destroyStreams();
  }
}

const API = new Set([
  'registerP2pTarget',
  'unregisterP2pTarget',
  'emit2',
  'emitP2p',
  'getClientList',
  'registerP2pStream',
  'onRegisterP2pStream',
  'offRegisterP2pStream',
]);

/**
 * Wrap a socket.io-client socket with the p2p API.
 * @param socket a socket.io-client 4.x socket on namespace '/' with `?clientId=` in its URL
 * @param {string} [clientId] this client's id (read from the URL when omitted)
 * @returns the same socket behind a Proxy that adds the p2p methods and properties
 */
export function p2pClientPlugin(socket, clientId) {
  if (!socket || typeof socket.on !== 'function' || typeof socket.emit !== 'function') {
    throw new TypeError('p2pClientPlugin expects a socket.io-client socket');
  }
  const client = new P2pClient(socket, clientId);
  const bound = {};
  for (const name of API) {
    const method = name === 'emitP2p' ? 'emit2' : name;
    bound[name] = client[method].bind(client);
  }
  return new Proxy(socket, {
    get(target, prop) {
      if (typeof prop === 'string') {
        if (API.has(prop)) return bound[prop];
        if (prop === 'targetClientId') return client.targetClientId;
        if (prop === 'clientId') return client.clientId;
      }
      return Reflect.get(target, prop, target);
    },
    has(target, prop) {
      return prop === 'targetClientId' || prop === 'clientId' || API.has(prop) || Reflect.has(target, prop);
    },
  });
}

export default p2pClientPlugin;
