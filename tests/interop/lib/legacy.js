'use strict';
// The "unchanged old client": socket.io-client 2.x with a client plugin that speaks the raw
// socket.io-p2p-plugin 1.4.1 events exactly the way that plugin did, quirks included:
//  - P2P_REGISTER (server -> us) is answered from `targetClientId` alone;
//  - unregisterP2pTarget forgets the peer at once, resolves at once when unpaired, and
//    otherwise resolves on the server's ack;
//  - a default P2P_REGISTER_STREAM listener answers false; onRegisterP2pStream removes every
//    P2P_REGISTER_STREAM listener and adds its own; offRegisterP2pStream removes them all (so
//    after it, a stream request is never answered at all);
//  - each duplex listens for P2P_EMIT_STREAM itself, acks a chunk at once or, when push()
//    returns false, keeps ONE pending ack (a second one overwrites the first) until _read;
//  - each duplex destroys itself on 'disconnect', P2P_DISCONNECT and P2P_UNREGISTER;
//  - registerP2pStream sends the current targetClientId (undefined when unpaired).
// Written for these tests from the 1.4.1 plugin's documented behaviour; it shares no code
// with js-client.

const { Duplex } = require('node:stream');
const ioV2 = require('socket.io-client-v2');

// The 1.4.1 wire strings, hard-coded on purpose (not js-client's SOCKET_EVENT): this client
// stands for the unchanged original and must not follow the client under test.
const EV = {
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

class LegacyMessageApi {
  constructor(socket, clientId) {
    this.socket = socket;
    this.clientId = clientId;

    socket.on(EV.P2P_REGISTER, (sourceClientId, callback) => {
      if (!this.targetClientId) {
        this.targetClientId = sourceClientId;
        callback(true);
      } else {
        callback(false);
      }
    });
    socket.on(EV.P2P_DISCONNECT, () => {
      if (this.targetClientId) delete this.targetClientId;
    });
    socket.on(EV.P2P_UNREGISTER, (callback) => {
      if (this.targetClientId) delete this.targetClientId;
      callback();
    });
    // (the original printed SERVER_ERROR with console.error; the test harness records it)
  }

  unregisterP2pTarget(callback) {
    if (callback) {
      if (this.targetClientId) {
        this.socket.emit(EV.P2P_UNREGISTER, callback);
        delete this.targetClientId;
      } else {
        callback();
      }
      return undefined;
    }
    return new Promise((resolve) => {
      if (this.targetClientId) {
        this.socket.emit(EV.P2P_UNREGISTER, () => resolve());
        delete this.targetClientId;
      } else {
        resolve();
      }
    });
  }

  registerP2pTarget(targetClientId, options = {}, successCallbackFn, failureCallbackFn) {
    if (this.clientId === targetClientId) throw new Error('Target client ID can not be the same as source client ID');
    if (this.targetClientId) throw new Error(`Current target: ${this.targetClientId}, targetClientId must be empty before registering`);
    const onAnswer = (targetAvailable, done) => {
      if (targetAvailable) {
        this.targetClientId = targetClientId;
        this.options = options;
        done(true);
      } else {
        done(false);
      }
    };
    if (successCallbackFn || failureCallbackFn) {
      this.socket.emit(EV.P2P_REGISTER, targetClientId, (ok) => onAnswer(ok, (res) => {
        if (res && successCallbackFn) successCallbackFn();
        if (!res && failureCallbackFn) failureCallbackFn();
      }));
      return undefined;
    }
    return new Promise((resolve) => {
      this.socket.emit(EV.P2P_REGISTER, targetClientId, (ok) => onAnswer(ok, resolve));
    });
  }

  emit2(...all) {
    if (!this.targetClientId) throw new Error('emit2 must be called after targetClientId is set');
    const [event, ...args] = all;
    if (!event) throw new Error('event must be specified');
    if (typeof all[all.length - 1] === 'function') {
      const ackFn = args.pop();
      this.socket.emit(EV.P2P_EMIT_ACKNOWLEDGE, { targetClientId: this.targetClientId, event, args }, ackFn);
    } else {
      this.socket.emit(EV.P2P_EMIT, { targetClientId: this.targetClientId, event, args });
    }
  }

  getClientList(successCallbackFn) {
    if (successCallbackFn) {
      this.socket.emit(EV.LIST_CLIENTS, (list) => successCallbackFn(list));
      return undefined;
    }
    return new Promise((resolve) => this.socket.emit(EV.LIST_CLIENTS, (list) => resolve(list)));
  }
}

class LegacyStreamApi {
  constructor(socket, messageApi) {
    this.socket = socket;
    this.messageApi = messageApi;
    socket.on(EV.P2P_REGISTER_STREAM, (serverCallback) => serverCallback(false));
  }

  registerP2pStream(duplexOptions, successCallback, failureCallback) {
    const send = (done) => {
      this.socket.emit(EV.P2P_REGISTER_STREAM, this.messageApi.targetClientId, (success) => {
        done(success ? createLegacyStream(this.socket, this.messageApi, duplexOptions) : null);
      });
    };
    if (successCallback || failureCallback) {
      send((duplex) => {
        if (duplex && successCallback) successCallback(duplex);
        if (!duplex && failureCallback) failureCallback();
      });
      return undefined;
    }
    return new Promise((resolve) => send(resolve));
  }

  onRegisterP2pStream(duplexOptions, clientCallback) {
    this.offRegisterP2pStream();
    this.socket.on(EV.P2P_REGISTER_STREAM, (serverCallback) => {
      const duplex = createLegacyStream(this.socket, this.messageApi, duplexOptions);
      if (clientCallback) clientCallback(duplex);
      if (serverCallback) serverCallback(true);
    });
  }

  offRegisterP2pStream() {
    this.socket.off(EV.P2P_REGISTER_STREAM);
  }
}

function createLegacyStream(socket, messageApi, options) {
  let writeCallbackFn;
  const duplex = new Duplex({ ...options });
  duplex.p2pStats = { chunksIn: 0, bytesIn: 0, overwrittenAcks: 0 };

  duplex._write = (chunk, encoding, callback) => {
    messageApi.emit2(EV.P2P_EMIT_STREAM, chunk, callback);
  };
  let pendingOutstanding = false; // bookkeeping for the tests only
  duplex._read = () => {
    if (typeof writeCallbackFn === 'function') {
      pendingOutstanding = false;
      writeCallbackFn();
    }
  };

  function onReceiveStreamData(chunk, callbackFn) {
    if (chunk instanceof Array) chunk = Buffer.from(chunk);
    duplex.p2pStats.chunksIn += 1;
    duplex.p2pStats.bytesIn += chunk ? chunk.length : 0;
    if (!duplex.push(chunk)) {
      // Only one pending ack: a second chunk while one is pending loses the first ack.
      if (pendingOutstanding) duplex.p2pStats.overwrittenAcks += 1;
      writeCallbackFn = callbackFn;
      pendingOutstanding = true;
    } else {
      callbackFn();
    }
  }
  function onDisconnect() {
    if (!duplex.destroyed) duplex.destroy();
    removeSocketListeners();
  }
  function addSocketListeners() {
    socket.on(EV.P2P_EMIT_STREAM, onReceiveStreamData);
    socket.once('disconnect', onDisconnect);
    socket.once(EV.P2P_DISCONNECT, onDisconnect);
    socket.once(EV.P2P_UNREGISTER, onDisconnect);
  }
  function removeSocketListeners() {
    socket.off(EV.P2P_EMIT_STREAM, onReceiveStreamData);
    socket.off('disconnect', onDisconnect);
    socket.off(EV.P2P_DISCONNECT, onDisconnect);
    socket.off(EV.P2P_UNREGISTER, onDisconnect);
  }
  addSocketListeners();
  return duplex;
}

/** Wrap a socket.io-client 2.x socket like the 1.4.1 plugin did (a Proxy over the socket). */
function legacyP2pPlugin(socket, clientId) {
  const messageApi = new LegacyMessageApi(socket, clientId);
  const streamApi = new LegacyStreamApi(socket, messageApi);
  return new Proxy(socket, {
    get(obj, prop) {
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

module.exports = { legacyP2pPlugin, ioV2, EV };
