// The "unchanged old client" in a browser: socket.io-client 2.x (its dist bundle, loaded
// before this script as `window.io`) with a plugin that speaks the raw socket.io-p2p-plugin
// 1.4.1 events the way that plugin did, quirks included. The browser twin of
// ../../lib/legacy.js; a classic script that defines `window.legacyP2pPlugin`.
//
// The 1.4.1 plugin's browser build carried a bundled Node stream; this twin keeps only what
// the wire sees of it: a duplex that sends one chunk per write and waits for its ack, and
// that acks a received chunk at once, or, once its buffer reaches its highWaterMark
// (16 KiB, Node's default), keeps ONE pending ack (a second one overwrites the first) until
// the reader reads. Like the original, a duplex listens for P2P_EMIT_STREAM until
// 'disconnect', P2P_DISCONNECT or P2P_UNREGISTER, even after destroy() (it then holds acks).
(function () {
  'use strict';

  // The 1.4.1 wire strings, hard-coded on purpose (not js-client's SOCKET_EVENT): this client
  // stands for the unchanged original and must not follow the client under test.
  var EV = {
    P2P_REGISTER: 'P2P_REGISTER',
    P2P_UNREGISTER: 'P2P_UNREGISTER',
    P2P_DISCONNECT: 'P2P_DISCONNECT',
    P2P_EMIT: 'P2P_EMIT',
    P2P_EMIT_ACKNOWLEDGE: 'P2P_EMIT_ACKNOWLEDGE',
    LIST_CLIENTS: 'LIST_CLIENTS',
    SERVER_ERROR: 'SERVER_ERROR',
    P2P_REGISTER_STREAM: 'P2P_REGISTER_STREAM',
    P2P_EMIT_STREAM: 'P2P_EMIT_STREAM',
  };

  function LegacyMessageApi(socket, clientId) {
    var self = this;
    this.socket = socket;
    this.clientId = clientId;
    socket.on(EV.P2P_REGISTER, function (sourceClientId, callback) {
      if (!self.targetClientId) {
        self.targetClientId = sourceClientId;
        callback(true);
      } else {
        callback(false);
      }
    });
    socket.on(EV.P2P_DISCONNECT, function () {
      if (self.targetClientId) delete self.targetClientId;
    });
    socket.on(EV.P2P_UNREGISTER, function (callback) {
      if (self.targetClientId) delete self.targetClientId;
      callback();
    });
  }

  LegacyMessageApi.prototype.unregisterP2pTarget = function () {
    var self = this;
    return new Promise(function (resolve) {
      if (self.targetClientId) {
        self.socket.emit(EV.P2P_UNREGISTER, function () { resolve(); });
        delete self.targetClientId;
      } else {
        resolve();
      }
    });
  };

  LegacyMessageApi.prototype.registerP2pTarget = function (targetClientId, options) {
    var self = this;
    if (this.clientId === targetClientId) throw new Error('Target client ID can not be the same as source client ID');
    if (this.targetClientId) throw new Error('Current target: ' + this.targetClientId + ', targetClientId must be empty before registering');
    return new Promise(function (resolve) {
      self.socket.emit(EV.P2P_REGISTER, targetClientId, function (ok) {
        if (ok) {
          self.targetClientId = targetClientId;
          self.options = options || {};
          resolve(true);
        } else {
          resolve(false);
        }
      });
    });
  };

  LegacyMessageApi.prototype.emit2 = function () {
    var all = Array.prototype.slice.call(arguments);
    if (!this.targetClientId) throw new Error('emit2 must be called after targetClientId is set');
    var event = all[0];
    var args = all.slice(1);
    if (!event) throw new Error('event must be specified');
    if (typeof all[all.length - 1] === 'function') {
      var ackFn = args.pop();
      this.socket.emit(EV.P2P_EMIT_ACKNOWLEDGE, { targetClientId: this.targetClientId, event: event, args: args }, ackFn);
    } else {
      this.socket.emit(EV.P2P_EMIT, { targetClientId: this.targetClientId, event: event, args: args });
    }
  };

  LegacyMessageApi.prototype.getClientList = function () {
    var socket = this.socket;
    return new Promise(function (resolve) {
      socket.emit(EV.LIST_CLIENTS, function (list) { resolve(list); });
    });
  };

  function LegacyStreamApi(socket, messageApi) {
    this.socket = socket;
    this.messageApi = messageApi;
    socket.on(EV.P2P_REGISTER_STREAM, function (serverCallback) { serverCallback(false); });
  }

  LegacyStreamApi.prototype.registerP2pStream = function (options) {
    var self = this;
    return new Promise(function (resolve) {
      self.socket.emit(EV.P2P_REGISTER_STREAM, self.messageApi.targetClientId, function (success) {
        resolve(success ? createLegacyStream(self.socket, self.messageApi, options) : null);
      });
    });
  };

  LegacyStreamApi.prototype.onRegisterP2pStream = function (options, clientCallback) {
    var self = this;
    this.offRegisterP2pStream();
    this.socket.on(EV.P2P_REGISTER_STREAM, function (serverCallback) {
      var duplex = createLegacyStream(self.socket, self.messageApi, options);
      if (clientCallback) clientCallback(duplex);
      if (serverCallback) serverCallback(true);
    });
  };

  LegacyStreamApi.prototype.offRegisterP2pStream = function () {
    this.socket.off(EV.P2P_REGISTER_STREAM);
  };

  function toBytes(chunk) {
    if (chunk instanceof Uint8Array) return chunk;
    if (chunk instanceof ArrayBuffer) return new Uint8Array(chunk);
    if (chunk instanceof Array) return Uint8Array.from(chunk);
    if (ArrayBuffer.isView(chunk)) return new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    return new Uint8Array(0);
  }

  /**
   * A duplex as the wire sees it: write(chunk) resolves on the chunk's ack (rejects when the
   * ack carries an error, as Node's _write callback would), read() resolves the next chunk
   * (null once destroyed and drained).
   */
  function createLegacyStream(socket, messageApi, options) {
    var highWaterMark = (options && options.highWaterMark) || 16 * 1024;
    var buffered = [];
    var bufferedBytes = 0;
    var waitingReader = null;
    var writeCallbackFn = null;
    var duplex = {
      destroyed: false,
      p2pStats: { chunksIn: 0, bytesIn: 0, overwrittenAcks: 0 },
      write: function (chunk) {
        // The 1.4.1 browser build wrote Buffers (its bundled polyfill), which 2.x's
        // has-binary2 sees as binary; it does not see a bare typed array (that would go out
        // as a JSON object), so the bytes go out as an ArrayBuffer of their own.
        var bytes = toBytes(chunk);
        var data = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength ? bytes.buffer : bytes.slice().buffer;
        return new Promise(function (resolve, reject) {
          messageApi.emit2(EV.P2P_EMIT_STREAM, data, function (err) {
            if (err) reject(new Error(typeof err.error === 'string' ? err.error : String(err)));
            else resolve();
          });
        });
      },
      read: function () {
        if (buffered.length) return Promise.resolve(take());
        if (duplex.destroyed) return Promise.resolve(null);
        return new Promise(function (resolve) { waitingReader = resolve; });
      },
      destroy: function () {
        if (duplex.destroyed) return;
        duplex.destroyed = true;
        if (waitingReader) {
          var r = waitingReader;
          waitingReader = null;
          r(null);
        }
      },
    };

    function take() {
      var chunk = buffered.shift();
      bufferedBytes -= chunk.byteLength;
      // Node calls _read when the reader pulls and the buffer is below highWaterMark.
      if (bufferedBytes < highWaterMark && typeof writeCallbackFn === 'function') {
        var release = writeCallbackFn;
        writeCallbackFn = null;
        release();
      }
      return chunk;
    }

    function push(chunk) {
      if (duplex.destroyed) return false; // a destroyed Node stream refuses the chunk
      if (waitingReader) {
        var r = waitingReader;
        waitingReader = null;
        r(chunk);
        return true;
      }
      buffered.push(chunk);
      bufferedBytes += chunk.byteLength;
      return bufferedBytes < highWaterMark;
    }

    function onReceiveStreamData(chunk, callbackFn) {
      var bytes = toBytes(chunk);
      duplex.p2pStats.chunksIn += 1;
      duplex.p2pStats.bytesIn += bytes.byteLength;
      if (!push(bytes)) {
        if (writeCallbackFn) duplex.p2pStats.overwrittenAcks += 1;
        writeCallbackFn = callbackFn;
      } else {
        callbackFn();
      }
    }
    function onDisconnect() {
      duplex.destroy();
      socket.off(EV.P2P_EMIT_STREAM, onReceiveStreamData);
      socket.off('disconnect', onDisconnect);
      socket.off(EV.P2P_DISCONNECT, onDisconnect);
      socket.off(EV.P2P_UNREGISTER, onDisconnect);
    }
    socket.on(EV.P2P_EMIT_STREAM, onReceiveStreamData);
    socket.once('disconnect', onDisconnect);
    socket.once(EV.P2P_DISCONNECT, onDisconnect);
    socket.once(EV.P2P_UNREGISTER, onDisconnect);
    return duplex;
  }

  /** Wrap a socket.io-client 2.x socket like the 1.4.1 plugin did (a Proxy over the socket). */
  function legacyP2pPlugin(socket, clientId) {
    var messageApi = new LegacyMessageApi(socket, clientId);
    var streamApi = new LegacyStreamApi(socket, messageApi);
    return new Proxy(socket, {
      get: function (obj, prop) {
        if (prop === 'registerP2pTarget') return messageApi.registerP2pTarget.bind(messageApi);
        if (prop === 'unregisterP2pTarget') return messageApi.unregisterP2pTarget.bind(messageApi);
        if (prop === 'emit2' || prop === 'emitP2p') return messageApi.emit2.bind(messageApi);
        if (prop === 'getClientList') return messageApi.getClientList.bind(messageApi);
        if (prop === 'targetClientId') return messageApi.targetClientId;
        if (prop === 'clientId') return messageApi.clientId;
        if (prop === 'registerP2pStream') return streamApi.registerP2pStream.bind(streamApi);
        if (prop === 'onRegisterP2pStream') return streamApi.onRegisterP2pStream.bind(streamApi);
        if (prop === 'offRegisterP2pStream') return streamApi.offRegisterP2pStream.bind(streamApi);
        return obj[prop];
      },
    });
  }

  window.legacyP2pPlugin = legacyP2pPlugin;
})();
