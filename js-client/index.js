'use strict';
/**
 * p2p-relay-client: the client plugin for socket.io-client 4.x.
 *
 * Same public API as the socket.io-p2p-plugin 1.4.1 client plugin, speaking
 * the 1.4.1 wire events (see docs/PROTOCOL.md, Part 1) to a p2p-relay server:
 *
 *   const io = require('socket.io-client');
 *   const p2pClientPlugin = require('p2p-relay-client');
 *   const socket = p2pClientPlugin(io('http://host:9000?clientId=A'), 'A');
 *   if (await socket.registerP2pTarget('B')) socket.emit2('hello', 1, Buffer.from('x'));
 *
 * Written for Node (streams are `stream.Duplex`); bundlers need a `stream`
 * and `buffer` polyfill.
 */

const { Duplex } = require('stream');

const SOCKET_EVENT = Object.freeze({
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

/** Turn whatever binary representation the transport produced into a Buffer. */
function toBuffer(chunk) {
  if (Buffer.isBuffer(chunk)) return chunk;
  if (chunk instanceof ArrayBuffer) return Buffer.from(chunk);
  if (ArrayBuffer.isView(chunk)) return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  if (Array.isArray(chunk) || typeof chunk === 'string') return Buffer.from(chunk);
  if (chunk && chunk.type === 'Buffer' && Array.isArray(chunk.data)) return Buffer.from(chunk.data);
  return Buffer.from(String(chunk));
}

/** Pull `clientId` out of the Manager's URI or query options, when the caller did not pass it. */
function clientIdFromSocket(socket) {
  try {
    const manager = socket && socket.io;
    if (!manager) return undefined;
    if (typeof manager.uri === 'string') {
      const url = new URL(manager.uri, 'http://localhost');
      const id = url.searchParams.get('clientId');
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
  constructor(socket, clientId) {
    this.socket = socket;
    this.clientId = clientId !== undefined ? clientId : clientIdFromSocket(socket);
    this.targetClientId = undefined;
    this.options = {};

    /** true while our own P2P_REGISTER waits for its answer: we are not free then. */
    this._registering = false;
    /** the duplexes this client holds; every one of them receives every chunk (no stream ids). */
    this._streams = new Set();
    /** {duplexOptions, callback} while onRegisterP2pStream is in force, else null. */
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
      const duplex = this._createStream(listener.duplexOptions);
      if (listener.callback) listener.callback(duplex);
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
      // duplexes) and the peer acknowledged it.
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

  registerP2pStream(duplexOptions, successCallback, failureCallback) {
    const attempt = (done) => {
      this.socket.emit(SOCKET_EVENT.P2P_REGISTER_STREAM, this.targetClientId, (success) => {
        if (success === true && this.targetClientId) done(this._createStream(duplexOptions));
        else done(null);
      });
    };
    if (successCallback || failureCallback) {
      attempt((duplex) => {
        if (duplex && successCallback) successCallback(duplex);
        if (!duplex && failureCallback) failureCallback();
      });
      return undefined;
    }
    return new Promise((resolve) => attempt(resolve));
  }

  onRegisterP2pStream(duplexOptions, callback) {
    if (typeof duplexOptions === 'function') {
      callback = duplexOptions;
      duplexOptions = {};
    }
    // Replaces any previous listener: one P2P_REGISTER_STREAM handler at a time.
    this._streamListener = { duplexOptions: duplexOptions || {}, callback };
  }

  offRegisterP2pStream() {
    this._streamListener = null;
  }

  _createStream(duplexOptions) {
    const client = this;
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
          const first = answer[0];
          if (first && typeof first === 'object' && typeof first.error === 'string') {
            callback(new Error(first.error));
          } else {
            callback();
          }
        });
      },
      read() {
        // The reader pulled: let the sender go on.
        releasePending();
      },
      destroy(err, callback) {
        client._streams.delete(duplex);
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

    this._streams.add(duplex);
    return duplex;
  }

  _onStreamChunk(chunk, ack) {
    const answer = typeof ack === 'function' ? ack : () => {};
    const streams = [...this._streams].filter((d) => !d.destroyed && !d.readableEnded);
    if (streams.length === 0 || chunk === undefined || chunk === null) {
      answer();
      return;
    }
    const buf = toBuffer(chunk);
    // Ack once every duplex has taken the chunk (at once, or when its reader pulls).
    let waiting = 1;
    let answered = false;
    const release = () => {
      waiting -= 1;
      if (waiting === 0 && !answered) {
        answered = true;
        answer();
      }
    };
    for (const duplex of streams) {
      waiting += 1;
      let released = false;
      const releaseOnce = () => {
        if (!released) {
          released = true;
          release();
        }
      };
      if (duplex._p2pDeliver(buf, releaseOnce)) releaseOnce();
    }
    release();
  }

  _destroyStreams() {
    for (const duplex of [...this._streams]) {
      if (!duplex.destroyed) duplex.destroy();
    }
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
 * @param {import('socket.io-client').Socket} socket a socket on namespace '/' with `?clientId=` in its URL
 * @param {string} [clientId] this client's id (read from the URL when omitted)
 * @param {{token?: string}} [options] `token`: a relay token (`p2p-relay token --sub ID ...`)
 *   for a relay started with `--auth token`; it goes in the handshake's `auth` (the same as
 *   `io(url, {auth: {token}})`), so wrap the socket right after `io()`, before it connects
 * @returns the same socket behind a Proxy that adds the p2p methods and properties
 */
function p2pClientPlugin(socket, clientId, options = {}) {
  if (!socket || typeof socket.on !== 'function' || typeof socket.emit !== 'function') {
    throw new TypeError('p2pClientPlugin expects a socket.io-client socket');
  }
  if (options && typeof options.token === 'string') {
    // socket.io-client 4.x reads `auth` when it sends its CONNECT packet (and on every
    // reconnection), which happens after io() returns.
    const auth = socket.auth && typeof socket.auth === 'object' ? socket.auth : {};
    socket.auth = { ...auth, token: options.token };
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
        if (prop === 'p2pLimits') return client.p2pLimits;
      }
      return Reflect.get(target, prop, target);
    },
    has(target, prop) {
      return prop === 'targetClientId' || prop === 'clientId' || prop === 'p2pLimits' || API.has(prop)
        || Reflect.has(target, prop);
    },
  });
}

module.exports = p2pClientPlugin;
module.exports.p2pClientPlugin = p2pClientPlugin;
module.exports.SOCKET_EVENT = SOCKET_EVENT;
