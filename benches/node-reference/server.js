'use strict';
// A reference "p2p server plugin" on socket.io 2: the Node.js server that p2p-relay replaces,
// re-created from the legacy protocol (the events the 1.4.1 client plugin speaks; see
// README.md beside this file) for side-by-side measurements only. It is written the way such a plugin is written on
// socket.io 2: a map clientId -> socket, events relayed with one direct `socket.emit` each,
// acks passed through as the ack function socket.io hands the handler. No limits, no auth.
//
//   node server.js [--port 0] [--host 127.0.0.1]
//
// Prints, then keeps serving until SIGINT/SIGTERM:
//   Socket.IO listening on http://127.0.0.1:PORT
//   pid PID
//   socket.io VERSION, node VERSION

const http = require('node:http');
const socketIo = require('socket.io');

function arg(name, dflt) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : dflt;
}

const EV = {
  P2P_REGISTER: 'P2P_REGISTER',
  P2P_UNREGISTER: 'P2P_UNREGISTER',
  P2P_DISCONNECT: 'P2P_DISCONNECT',
  P2P_EMIT: 'P2P_EMIT',
  P2P_EMIT_ACKNOWLEDGE: 'P2P_EMIT_ACKNOWLEDGE',
  LIST_CLIENTS: 'LIST_CLIENTS',
  SERVER_ERROR: 'SERVER_ERROR',
  P2P_REGISTER_STREAM: 'P2P_REGISTER_STREAM',
};

// Names a server-side socket.emit would fire locally instead of sending (socket.io 2's
// Socket#emit): relaying them would run the server's own handlers.
const RESERVED = new Set(['connect', 'connect_error', 'disconnect', 'disconnecting', 'error',
  'newListener', 'removeListener']);

const UNREGISTER_ACK_TIMEOUT_MS = 5000;

const server = http.createServer();
const io = socketIo(server); // socket.io 2 defaults: polling + websocket, pingInterval 25 s

/** clientId -> its socket in namespace `/`. */
const clients = new Map();

function serverError(socket, message) {
  socket.emit(EV.SERVER_ERROR, message);
}

/** Ends socket's pairing: clears both ends' peer. Returns the peer's socket, if connected. */
function unpair(socket) {
  const peerId = socket.peerId;
  if (peerId === undefined) return undefined;
  socket.peerId = undefined;
  const peer = clients.get(peerId);
  if (peer && peer.peerId === socket.clientId) {
    peer.peerId = undefined;
    return peer;
  }
  return undefined;
}

/** Emits `event` with an ack to `socket`; `done` runs once, on the ack or after the timeout. */
function emitWithTimeout(socket, event, done) {
  let finished = false;
  const finish = () => {
    if (finished) return;
    finished = true;
    clearTimeout(timer);
    done();
  };
  const timer = setTimeout(finish, UNREGISTER_ACK_TIMEOUT_MS);
  socket.emit(event, finish);
}

io.on('connection', (socket) => {
  const { clientId } = socket.handshake.query;
  if (typeof clientId !== 'string' || clientId === '') {
    serverError(socket, 'clientId query parameter required');
    socket.disconnect(true);
    return;
  }
  socket.clientId = clientId;
  socket.peerId = undefined;
  clients.set(clientId, socket);

  socket.on('disconnect', () => {
    if (clients.get(clientId) === socket) clients.delete(clientId);
    const peer = unpair(socket);
    if (peer) peer.emit(EV.P2P_DISCONNECT);
  });

  socket.on(EV.LIST_CLIENTS, (ack) => {
    if (typeof ack === 'function') ack([...clients.keys()]);
  });

  // Ask the target; pair both ends when it says yes.
  socket.on(EV.P2P_REGISTER, (targetClientId, ack) => {
    const reply = typeof ack === 'function' ? ack : () => {};
    const target = clients.get(targetClientId);
    if (!target || target === socket) {
      serverError(socket, `Could not find target client ${targetClientId}`);
      reply(false);
      return;
    }
    target.emit(EV.P2P_REGISTER, clientId, (ok) => {
      if (ok && clients.get(targetClientId) === target && socket.connected) {
        unpair(socket);
        unpair(target);
        socket.peerId = targetClientId;
        target.peerId = clientId;
        reply(true);
      } else {
        reply(false);
      }
    });
  });

  // Both ends get P2P_UNREGISTER; the caller's ack once both answered (or timed out).
  socket.on(EV.P2P_UNREGISTER, (ack) => {
    const reply = typeof ack === 'function' ? ack : () => {};
    const peer = unpair(socket);
    if (!peer) {
      reply();
      return;
    }
    let waiting = 2;
    const oneDone = () => {
      waiting -= 1;
      if (waiting === 0) reply();
    };
    emitWithTimeout(peer, EV.P2P_UNREGISTER, oneDone);
    emitWithTimeout(socket, EV.P2P_UNREGISTER, oneDone);
  });

  // The hot path: one lookup, one emit toward the target.
  socket.on(EV.P2P_EMIT, (payload) => {
    if (!payload || typeof payload !== 'object') return serverError(socket, 'P2P_EMIT: payload must be an object');
    const { targetClientId, event, args } = payload;
    if (typeof event !== 'string' || RESERVED.has(event)) return serverError(socket, `P2P_EMIT: bad event name ${event}`);
    const target = clients.get(targetClientId);
    if (!target) return serverError(socket, `Could not find target client ${targetClientId}`);
    if (Array.isArray(args)) target.emit(event, ...args);
    else target.emit(event);
  });

  // The same with the sender's ack function passed on: the target's ack arguments go back
  // to the sender unchanged (socket.io encodes them, binary included).
  socket.on(EV.P2P_EMIT_ACKNOWLEDGE, (payload, ack) => {
    if (!payload || typeof payload !== 'object') return serverError(socket, 'P2P_EMIT_ACKNOWLEDGE: payload must be an object');
    const { targetClientId, event, args } = payload;
    if (typeof event !== 'string' || RESERVED.has(event)) return serverError(socket, `P2P_EMIT_ACKNOWLEDGE: bad event name ${event}`);
    const target = clients.get(targetClientId);
    if (!target) return serverError(socket, `Could not find target client ${targetClientId}`);
    const list = Array.isArray(args) ? args : [];
    if (typeof ack === 'function') target.emit(event, ...list, ack);
    else target.emit(event, ...list);
  });

  // Ask the peer whether it takes a stream (its plugin answers false unless it listens).
  socket.on(EV.P2P_REGISTER_STREAM, (_targetClientId, ack) => {
    const reply = typeof ack === 'function' ? ack : () => {};
    const peer = socket.peerId !== undefined ? clients.get(socket.peerId) : undefined;
    if (!peer) {
      serverError(socket, 'P2P_REGISTER_STREAM: not paired');
      reply(false);
      return;
    }
    peer.emit(EV.P2P_REGISTER_STREAM, (ok) => reply(!!ok));
  });
});

const port = Number(arg('port', process.env.PORT || 0));
const host = arg('host', '127.0.0.1');
server.listen(port, host, () => {
  const addr = server.address();
  const ioVersion = require('socket.io/package.json').version;
  const eioVersion = require('engine.io/package.json').version;
  console.log(`Socket.IO listening on http://${addr.address}:${addr.port}`);
  console.log(`pid ${process.pid}`);
  console.log(`socket.io ${ioVersion} (engine.io ${eioVersion}), node ${process.version}`);
});

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    io.close();
    server.close();
    process.exit(0);
  });
}
