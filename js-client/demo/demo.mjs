// The demo page: connect, pair, chat, and send or receive files with the framing of the
// `p2p-relay-client` CLI (native-client/src/bin/p2p-relay-client.rs), so the other side may be
// the CLI or another copy of this page:
//  - the sender opens a stream, announces the file with an ack,
//    `file(streamId, name, size)` (a page knows no stream ids: it sends null), and once the
//    receiver acked `true`, writes the file's bytes on the stream;
//  - the receiver takes the next `size` bytes of the newest stream, then answers one line on
//    the same stream, `ok <size> <sha256>\n` (or `err <message>\n`); the sender checks it.
// The 1.4.1 protocol has no stream ids: every stream a client holds receives every chunk its
// peer writes. So this page moves one file at a time, and destroys a stream once its file is
// done.

import { io } from 'socket.io-client';
import p2pClientPlugin from 'p2p-relay-client';
import { sha256 } from '@noble/hashes/sha2.js';
import { bytesToHex } from '@noble/hashes/utils.js';

// Half the relay's default payload limit (--max-message-bytes, 1 MiB): each chunk costs a round
// trip (one in flight), so bigger chunks move more per second.
const CHUNK = 512 * 1024;
const ANSWER_MS = 60000;
const $ = (id) => document.getElementById(id);

let socket = null;        // the plugin-wrapped socket
let busy = null;          // 'sending' | 'receiving' | null: one transfer at a time
let incoming = [];        // streams the peer opened and no file has claimed yet
let clientsTimer = null;

// ------------------------------------------------------------------ helpers

function log(text, kind = '') {
  const li = document.createElement('li');
  li.textContent = `${new Date().toLocaleTimeString()}  ${text}`;
  if (kind) li.className = kind;
  const list = $('log');
  list.prepend(li);
  while (list.children.length > 200) list.lastChild.remove();
}

function mb(bytes) {
  return (bytes / 1e6).toFixed(bytes < 1e7 ? 2 : 1);
}

function rate(bytes, ms) {
  return ms > 0 ? bytes / 1e3 / ms : 0; // MB/s
}

function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`no answer within ${ms / 1000} s: ${what}`)), ms); }),
  ]).finally(() => clearTimeout(timer));
}

function emitAck(event, ...args) {
  return withTimeout(new Promise((resolve) => socket.emit2(event, ...args, (...answer) => resolve(answer))), ANSWER_MS, event);
}

function setBadge(el, state, text) {
  el.className = `badge ${state}`;
  el.dataset.state = state;
  el.textContent = text;
}

function connected() {
  return Boolean(socket && socket.connected);
}

function peer() {
  return socket ? socket.targetClientId : undefined;
}

function update() {
  const on = connected();
  const paired = on && Boolean(peer());
  $('connect').disabled = on;
  $('disconnect').disabled = !socket;
  $('relay-url').disabled = on;
  $('my-id').disabled = on;
  $('refresh').disabled = !on;
  $('pair').disabled = !on || paired;
  $('unpair').disabled = !paired;
  $('peer-id').disabled = !on || paired;
  $('chat-input').disabled = !paired;
  $('chat-send').disabled = !paired;
  $('send-file').disabled = !paired || busy !== null || !$('file-input').files.length;
  const status = $('pair-status');
  status.dataset.peer = paired ? peer() : '';
  setBadge(status, paired ? 'on' : 'off', paired ? `paired with ${peer()}` : 'not paired');
  if (paired) $('peer-id').value = peer();
  for (const el of document.querySelectorAll('.peer-name')) el.textContent = $('peer-id').value || 'bob';
  for (const el of document.querySelectorAll('.my-name')) el.textContent = $('my-id').value || 'alice';
}

async function refreshClients() {
  if (!connected()) return;
  const ids = await withTimeout(socket.getClientList(), 10000, 'client list').catch(() => null);
  if (!ids) return;
  const box = $('clients');
  box.textContent = '';
  const others = ids.filter((id) => id !== socket.clientId);
  if (!others.length) box.textContent = 'nobody else';
  for (const id of others) {
    const b = document.createElement('button');
    b.className = 'small';
    b.textContent = id;
    b.title = `pair with ${id}`;
    b.onclick = () => { if (!peer()) $('peer-id').value = id; update(); };
    box.append(b, ' ');
  }
}

// ---------------------------------------------------------------- connection

function connect() {
  const url = $('relay-url').value.trim().replace(/\/+$/, '');
  const id = $('my-id').value.trim();
  if (!url || !id) {
    log('enter the relay\'s address and your id first', 'error');
    return;
  }
  const raw = io(`${url}/?clientId=${encodeURIComponent(id)}`, { reconnection: false, timeout: 10000 });
  socket = p2pClientPlugin(raw, id);
  setBadge($('status'), 'off', `connecting to ${url}…`);

  raw.on('connect', () => {
    setBadge($('status'), 'on', `connected as ${id}`);
    log(`connected to ${url} as ${id} (${raw.io.engine.transport.name})`);
    raw.io.engine.once('upgrade', (t) => log(`transport upgraded to ${t.name}`));
    refreshClients();
    clearInterval(clientsTimer);
    clientsTimer = setInterval(refreshClients, 3000);
    update();
  });
  raw.on('connect_error', (err) => {
    setBadge($('status'), 'bad', `cannot connect: ${err.message}`);
    log(`cannot connect: ${err.message}`, 'error');
    update();
  });
  raw.on('disconnect', (reason) => {
    setBadge($('status'), 'off', `disconnected (${reason})`);
    log(`disconnected: ${reason}`);
    clearInterval(clientsTimer);
    update();
  });
  raw.on('SERVER_ERROR', (message) => log(`relay: ${message}`, 'error'));
  // The plugin answers these itself (its listeners run first); the page only shows them.
  raw.on('P2P_REGISTER', (from) => {
    if (peer() === from) log(`${from} paired with you`);
    refreshClients();
    update();
  });
  raw.on('P2P_UNREGISTER', () => { log('the pairing ended'); update(); });
  raw.on('P2P_DISCONNECT', () => { log('your peer disconnected'); update(); });
  raw.on('chat', (message) => addChat(peer() || 'peer', message && message.text, false));
  raw.on('file', onFileAnnounced);
  socket.onRegisterP2pStream({ highWaterMark: 1 << 20 }, (stream) => incoming.push(stream));
  update();
}

function disconnect() {
  if (socket) socket.close();
  socket = null;
  incoming = [];
  clearInterval(clientsTimer);
  setBadge($('status'), 'off', 'not connected');
  $('clients').textContent = '–';
  update();
}

async function pair() {
  const target = $('peer-id').value.trim();
  if (!target) return;
  try {
    const ok = await withTimeout(socket.registerP2pTarget(target), ANSWER_MS, 'pairing');
    log(ok ? `paired with ${target}` : `${target} is not connected, or busy with another peer`, ok ? '' : 'error');
  } catch (err) {
    log(err.message, 'error');
  }
  update();
}

async function unpair() {
  await withTimeout(socket.unregisterP2pTarget(), ANSWER_MS, 'unpairing').catch((err) => log(err.message, 'error'));
  log('unpaired');
  update();
}

// ---------------------------------------------------------------------- chat

function addChat(who, text, mine) {
  const li = document.createElement('li');
  li.className = mine ? 'me' : 'them';
  const name = document.createElement('span');
  name.className = 'who';
  name.textContent = who;
  li.append(name, document.createTextNode(String(text)));
  $('chat-log').append(li);
  $('chat-log').scrollTop = $('chat-log').scrollHeight;
}

function sendChat(event) {
  event.preventDefault();
  const text = $('chat-input').value;
  if (!text || !peer()) return;
  socket.emit2('chat', { text });
  addChat(socket.clientId, text, true);
  $('chat-input').value = '';
}

// -------------------------------------------------------------------- files

/** Reads the receiver's one-line answer from the stream. */
async function readLine(stream) {
  const reader = stream.readable.getReader();
  const decoder = new TextDecoder();
  let text = '';
  try {
    while (!text.includes('\n') && text.length < 1024) {
      const { value, done } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
    }
  } finally {
    reader.releaseLock();
  }
  return text.split('\n')[0].trim();
}

function showProgress(which, done, total, started) {
  const ms = performance.now() - started;
  $(`${which}-progress`).max = total || 1;
  $(`${which}-progress`).value = total ? done : 1;
  $(`${which}-rate`).textContent = `${mb(done)} / ${mb(total)} MB · ${rate(done, ms).toFixed(1)} MB/s`;
}

async function sendFile() {
  const file = $('file-input').files[0];
  const to = peer();
  if (!file || !to || busy) return;
  busy = 'sending';
  update();
  const result = $('send-result');
  result.dataset.state = 'sending';
  result.textContent = `sending ${file.name} to ${to}…`;
  let stream = null;
  try {
    stream = await withTimeout(socket.registerP2pStream({ highWaterMark: 64 * 1024 }), ANSWER_MS, 'opening a stream');
    if (!stream) throw new Error(`${to} does not take streams`);
    const [taken, why] = await emitAck('file', null, file.name, file.size);
    if (taken !== true) throw new Error(`${to} did not take the file${why ? `: ${why}` : ''}`);
    const answer = readLine(stream);
    answer.catch(() => {});
    const writer = stream.writable.getWriter();
    const hasher = sha256.create();
    const started = performance.now();
    showProgress('send', 0, file.size, started);
    // One chunk is in flight at a time (the protocol's flow control): while it travels,
    // hash it and read the next one.
    const read = (off) => file.slice(off, off + CHUNK).arrayBuffer().then((b) => new Uint8Array(b));
    let next = read(0);
    for (let off = 0; off < file.size; off += CHUNK) {
      const bytes = await next;
      const written = writer.write(bytes); // resolves once the peer acknowledged the chunk
      if (off + CHUNK < file.size) next = read(off + CHUNK);
      hasher.update(bytes);
      await written;
      showProgress('send', off + bytes.byteLength, file.size, started);
    }
    writer.releaseLock();
    const ms = performance.now() - started;
    const hex = bytesToHex(hasher.digest());
    const line = await withTimeout(answer, ANSWER_MS, 'the receiver\'s confirmation');
    if (line !== `ok ${file.size} ${hex}`) throw new Error(`${to} answered "${line}", expected "ok ${file.size} ${hex}"`);
    const mbps = rate(file.size, ms);
    result.dataset.state = 'ok';
    result.dataset.sha256 = hex;
    result.dataset.mbps = mbps.toFixed(1);
    result.textContent = `sent ${file.name}: ${file.size} bytes in ${(ms / 1000).toFixed(2)} s (${mbps.toFixed(1)} MB/s), `
      + `sha256 ${hex}, confirmed by ${to}`;
    log(`sent ${file.name} to ${to} (${mbps.toFixed(1)} MB/s)`);
  } catch (err) {
    result.dataset.state = 'error';
    result.textContent = `sending ${file.name} failed: ${err.message}`;
    log(result.textContent, 'error');
  } finally {
    if (stream) stream.destroy();
    busy = null;
    update();
  }
}

function onFileAnnounced(...args) {
  const ack = typeof args[args.length - 1] === 'function' ? args.pop() : () => {};
  const [, name, size] = args;
  // The file's stream is the newest one the peer opened; older unclaimed ones would take
  // (and hold) its chunks too.
  const stream = incoming.pop();
  for (const stale of incoming) stale.destroy();
  incoming = [];
  if (busy || !stream || stream.destroyed || typeof name !== 'string' || !Number.isSafeInteger(size) || size < 0) {
    ack(false, busy ? `busy ${busy} another file` : 'no stream for this file');
    if (stream) stream.destroy();
    return;
  }
  ack(true);
  receiveFile(stream, name, size);
}

async function receiveFile(stream, name, size) {
  busy = 'receiving';
  update();
  const from = peer();
  const hasher = sha256.create();
  const parts = [];
  let got = 0;
  const started = performance.now();
  showProgress('recv', 0, size, started);
  try {
    const reader = stream.readable.getReader();
    while (got < size) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`the stream ended after ${got} of ${size} bytes`);
      const take = value.byteLength <= size - got ? value : value.subarray(0, size - got);
      hasher.update(take);
      parts.push(take);
      got += take.byteLength;
      showProgress('recv', got, size, started);
    }
    reader.releaseLock();
    const ms = performance.now() - started;
    const hex = bytesToHex(hasher.digest());
    const writer = stream.writable.getWriter();
    await withTimeout(writer.write(`ok ${size} ${hex}\n`), ANSWER_MS, 'confirming');
    writer.releaseLock();
    addReceived({ name, size, hex, from, mbps: rate(size, ms), blob: new Blob(parts) });
    log(`received ${name} from ${from}`);
  } catch (err) {
    log(`receiving ${name} failed: ${err.message}`, 'error');
    try {
      const writer = stream.writable.getWriter();
      await withTimeout(writer.write(`err ${err.message.replace(/\s+/g, ' ')}\n`), 5000, 'reporting');
    } catch (_) {
      // the stream is gone
    }
  } finally {
    stream.destroy();
    busy = null;
    update();
  }
}

function addReceived({ name, size, hex, from, mbps, blob }) {
  const li = document.createElement('li');
  li.dataset.name = name;
  li.dataset.size = String(size);
  li.dataset.sha256 = hex;
  const link = document.createElement('a');
  link.className = 'name';
  link.href = URL.createObjectURL(blob);
  link.download = name;
  link.textContent = name;
  const info = document.createElement('span');
  info.textContent = ` · ${size} bytes from ${from} · ${mbps.toFixed(1)} MB/s`;
  const sha = document.createElement('div');
  sha.className = 'sha';
  sha.textContent = `sha256 ${hex}`;
  li.append(link, info, sha);
  $('received').prepend(li);
}

// ---------------------------------------------------------------------- start

async function start() {
  const params = new URLSearchParams(location.search);
  let relay = params.get('relay');
  if (!relay) {
    const config = await fetch('/config.json').then((r) => r.json()).catch(() => ({}));
    relay = config.relay || `${location.protocol}//${location.hostname}:9000`;
  }
  $('relay-url').value = relay;
  if (params.get('id')) $('my-id').value = params.get('id');
  if (params.get('peer')) $('peer-id').value = params.get('peer');
  $('connect').onclick = connect;
  $('disconnect').onclick = disconnect;
  $('refresh').onclick = refreshClients;
  $('pair').onclick = pair;
  $('unpair').onclick = unpair;
  $('chat-form').onsubmit = sendChat;
  $('send-file').onclick = sendFile;
  $('file-input').onchange = update;
  $('my-id').oninput = update;
  $('peer-id').oninput = update;
  $('my-id').onkeydown = (e) => { if (e.key === 'Enter') connect(); };
  update();
  document.body.dataset.ready = 'true';
}

start();
