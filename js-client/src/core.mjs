/**
 * p2p-relay-client's logic, shared by every entry: the wire events, the pairing, emits, the
 * client list, and the stream rules (which chunk goes to which stream, when a chunk's ack is
 * sent). It has no imports and touches no platform API of its own: what differs between Node
 * and browsers (the stream type, the byte type) comes in as a `platform` object:
 *
 *   src/node.mjs  Node `stream.Duplex` and `Buffer` (index.js, generated from it; index.mjs)
 *   browser.mjs   WHATWG streams and `Uint8Array`
 *
 * `platform`:
 *   toBytes(chunk)                the transport's binary (Buffer, ArrayBuffer, a view, a
 *                                 JSON-ified Buffer, ...) as the platform's byte type
 *   createStream(client, options) a new stream for `client`; it sends with
 *                                 `client.emit2(SOCKET_EVENT.P2P_EMIT_STREAM, bytes, ack)`,
 *                                 one chunk at a time, checks `client.targetClientId`, and
 *                                 calls `client._forgetStream(stream)` once destroyed
 *   receiving(stream)             true while the stream takes chunks
 *   deliver(stream, bytes, release) hand a chunk over; true when taken at once, false when
 *                                 `release` (the chunk's ack) is held until the reader reads
 *   destroy(stream)               destroy it (idempotent)
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
  // p2p-relay's own: the limits that apply to this client, sent once on connect.
  P2P_LIMITS: 'P2P_LIMITS',
});

/** The relay's answer to a chunk or an emit, as an Error when it is `{error}`, else null. */
export function ackError(answer) {
  const first = answer[0];
  return first && typeof first === 'object' && typeof first.error === 'string' ? new Error(first.error) : null;
}

/** Pull `clientId` out of the Manager's URI or query options, when the caller did not pass it. */
function clientIdFromSocket(socket) {
  try {
    const manager = socket && socket.io;
    if (!manager) return undefined;
    if (typeof manager.uri === 'string') {
      // a page may give a relative URI; Node (no `location`) always has an absolute one
      const base = typeof location !== 'undefined' && location.href ? location.href : 'http://localhost';
      const id = new URL(manager.uri, base).searchParams.get('clientId');
      if (id !== null) return id;
    }
    const query = manager.opts && manager.opts.query;
    if (query && typeof query === 'object' && typeof query.clientId === 'string') {
      // from a parsed URL these are still percent-encoded; from the `query` option they are not
      try {
        return decodeURIComponent(query.clientId);
      } catch (_) {
        return query.clientId;
      }
    }
  } catch (_) {
    // fall through: the id is then unknown, as in the original plugin
  }
  return undefined;
}

class P2pClient {
  constructor(platform, socket, clientId) {
    this.platform = platform;
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
    /** The relay's limits for this client (P2P_LIMITS), once it said them; else null. */
    this.p2pLimits = null;

    socket.on(SOCKET_EVENT.P2P_LIMITS, (limits) => {
      if (limits && typeof limits === 'object') this.p2pLimits = limits;
    });

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

    // The relay ends the pairing when our namespace socket goes away.
    socket.on('disconnect', () => this._endPairing());

    socket.on(SOCKET_EVENT.SERVER_ERROR, (message) => {
      // Like the original plugin, report server errors, unless the application listens itself.
      const listeners = typeof socket.listeners === 'function' ? socket.listeners(SOCKET_EVENT.SERVER_ERROR) : [];
      if (listeners.length <= 1) console.error(`Error emitted from server: ${message}`);
    });

    socket.on(SOCKET_EVENT.P2P_REGISTER_STREAM, (...args) => {
      const ack = typeof args[args.length - 1] === 'function' ? args[args.length - 1] : undefined;
      const listener = this._streamListener;
      if (!listener) {
        // Not listening for streams: tell the peer, so its registerP2pStream returns null.
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
      // The relay answers once both ends were sent P2P_UNREGISTER (which destroys their
      // streams) and the peer acknowledged it.
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
      this.socket.emit(SOCKET_EVENT.P2P_EMIT_ACKNOWLEDGE, {
        targetClientId: this.targetClientId,
        event,
        args,
      }, ackFn);
    } else {
      this.socket.emit(SOCKET_EVENT.P2P_EMIT, {
        targetClientId: this.targetClientId,
        event,
        args,
      });
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
    // Replaces any previous listener: one P2P_REGISTER_STREAM handler at a time.
    this._streamListener = { streamOptions: streamOptions || {}, callback };
  }

  offRegisterP2pStream() {
    this._streamListener = null;
  }

  _createStream(streamOptions) {
    const stream = this.platform.createStream(this, streamOptions || {});
    this._streams.add(stream);
    return stream;
  }

  /** Called by a stream once it is destroyed: it receives no further chunks. */
  _forgetStream(stream) {
    this._streams.delete(stream);
  }

  _onStreamChunk(chunk, ack) {
    const answer = typeof ack === 'function' ? ack : () => {};
    const { platform } = this;
    const streams = [...this._streams].filter((s) => platform.receiving(s));
    if (streams.length === 0 || chunk === undefined || chunk === null) {
      answer();
      return;
    }
    if (typeof Blob !== 'undefined' && chunk instanceof Blob) {
      // A browser transport set to binaryType 'blob': one chunk is in flight at a time, so
      // converting it first keeps the order.
      chunk.arrayBuffer().then((buf) => this._onStreamChunk(buf, answer), () => answer());
      return;
    }
    const bytes = platform.toBytes(chunk);
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
      if (platform.deliver(stream, bytes, releaseOnce)) releaseOnce();
    }
    release();
  }

  _destroyStreams() {
    for (const stream of [...this._streams]) this.platform.destroy(stream);
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
 * The plugin function for one platform (see the top of this file for `platform`).
 * @returns {(socket, clientId?, options?) => Proxy} p2pClientPlugin
 */
export function createP2pClientPlugin(platform) {
  /**
   * Wrap a socket.io-client socket with the p2p API.
   * @param socket a socket.io-client 4.x socket on namespace '/' with `?clientId=` in its URL
   * @param {string} [clientId] this client's id (read from the URL when omitted)
   * @param {{token?: string}} [options] `token`: a relay token (`p2p-relay token --sub ID ...`)
   *   for a relay started with `--auth token`; it goes in the handshake's `auth` (the same as
   *   `io(url, {auth: {token}})`), so wrap the socket right after `io()`, before it connects
   * @returns the same socket behind a Proxy that adds the p2p methods and properties
   */
  return function p2pClientPlugin(socket, clientId, options = {}) {
    if (!socket || typeof socket.on !== 'function' || typeof socket.emit !== 'function') {
      throw new TypeError('p2pClientPlugin expects a socket.io-client socket');
    }
    if (options && typeof options.token === 'string') {
      // socket.io-client 4.x reads `auth` when it sends its CONNECT packet (and on every
      // reconnection), which happens after io() returns.
      const auth = socket.auth && typeof socket.auth === 'object' ? socket.auth : {};
      socket.auth = { ...auth, token: options.token };
    }
    const client = new P2pClient(platform, socket, clientId);
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
          if (prop === 'p2pLimits') return client.p2pLimits;
        }
        return Reflect.get(target, prop, target);
      },
      has(target, prop) {
        return prop === 'targetClientId' || prop === 'clientId' || prop === 'p2pLimits' || API.has(prop)
          || Reflect.has(target, prop);
      },
    });
  };
}
