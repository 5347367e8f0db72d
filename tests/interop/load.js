#!/usr/bin/env node
'use strict';
// Rough load script (not part of `npm test`): relays small P2P_EMITs from one node client to
// another through the relay for a few seconds and prints messages/s.
//
//   node load.js                       # starts target/release/p2p-relay (or $P2P_RELAY_BIN)
//   node load.js --url http://127.0.0.1:9000   # uses a relay that is already running
//
// Options: --seconds N (5)  --size BYTES (16)  --window N (1000 unreceived at most; 0: none,
//          the sender emits as fast as it can)  --transport websocket|polling (websocket)
//          --sender js|legacy  --receiver js|legacy
//          --ack (use P2P_EMIT_ACKNOWLEDGE, the window then bounds unanswered acks)
//          --compare-limits-off (also run the same measurement, one after the other in this
//          run, against a relay with every limit lifted, and print both)
// When the script starts the relay itself (on its defaults) it also prints the relay's CPU
// time (user+sys, from /proc) and CPU per relayed message; with --url, measure the server's
// CPU yourself.

const fs = require('node:fs');
const { startRelay } = require('./lib/relay');
const { connectClient, withTimeout, delay } = require('./lib/clients');

function parseArgs(argv) {
  const o = { seconds: 5, size: 16, window: 1000, transport: 'websocket', sender: 'js', receiver: 'js', ack: false, url: null, compare: false };
  for (let i = 0; i < argv.length; i += 1) {
    const a = argv[i];
    const val = () => {
      i += 1;
      if (i >= argv.length) throw new Error(`${a} needs a value`);
      return argv[i];
    };
    if (a === '--seconds') o.seconds = Number(val());
    else if (a === '--size') o.size = Number(val());
    else if (a === '--window') o.window = Number(val());
    else if (a === '--transport') o.transport = val();
    else if (a === '--sender') o.sender = val();
    else if (a === '--receiver') o.receiver = val();
    else if (a === '--url') o.url = val();
    else if (a === '--ack') o.ack = true;
    else if (a === '--compare-limits-off') o.compare = true;
    else if (a === '--help' || a === '-h') {
      process.stdout.write(fs.readFileSync(__filename, 'utf8').split('\n').slice(2, 14).join('\n') + '\n');
      process.exit(0);
    } else throw new Error(`unknown option ${a}`);
  }
  if (!(o.seconds > 0 && o.seconds <= 300)) throw new Error('--seconds must be in (0, 300]');
  if (!(o.window >= 0)) throw new Error('--window must be >= 0');
  if (o.compare && o.url) throw new Error('--compare-limits-off starts its own relays; drop --url');
  return o;
}

/** user+system CPU seconds of a process, from /proc (Linux). */
function cpuSeconds(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // fields[11] = utime, fields[12] = stime (in clock ticks; 100 per second on Linux)
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch (_) {
    return null;
  }
}

/**
 * Every limit lifted: the per-client and per-address ones (off by default anyway) and the
 * queues that protect the relay, for the comparison with the defaults.
 */
const EVERY_LIMIT_OFF = [
  '--rate-messages', '0', '--rate-bytes', '0', '--max-connections-per-ip', '0', '--connect-rate-per-ip', '0',
  '--outbox-messages', '10000000', '--outbox-bytes', String(4 * 1024 * 1024 * 1024), '--max-pending', '10000000',
];

async function main() {
  const o = parseArgs(process.argv.slice(2));
  if (!o.compare) {
    await measure(o, o.url, o.url ? null : []);
    return;
  }
  process.stdout.write('== relay on its defaults\n');
  const d = await measure(o, null, []);
  process.stdout.write('== relay with every limit off\n');
  const off = await measure(o, null, EVERY_LIMIT_OFF);
  process.stdout.write(`== delivered/s, defaults : every limit off = ${d.rate} : ${off.rate}` +
    ` (${off.rate ? (d.rate / off.rate).toFixed(2) : '-'}); undelivered on defaults ${d.sent - d.done}\n`);
}

/** One measurement; `flags` starts a relay with them (null: use `url`). */
async function measure(o, url, flags) {
  let relay = null;
  if (flags) {
    relay = await startRelay(flags);
    url = relay.url;
  }
  const transports = [o.transport];
  const receiver = await connectClient(o.receiver, url, `load-rx-${process.pid}`, { transports });
  const sender = await connectClient(o.sender, url, `load-tx-${process.pid}`, { transports });
  let received = 0;
  let acked = 0;
  if (o.ack) receiver.raw.on('m', (x, fn) => { received += 1; fn(); });
  else receiver.raw.on('m', () => { received += 1; });
  if (!(await withTimeout(sender.sock.registerP2pTarget(receiver.id), 5000, 'pairing'))) {
    throw new Error(`pairing failed: ${JSON.stringify(sender.errors)}`);
  }
  const payload = 'x'.repeat(Math.max(0, o.size));
  const onAck = () => { acked += 1; };

  const cpu0 = relay ? cpuSeconds(relay.pid) : null;
  const t0 = process.hrtime.bigint();
  const end = Date.now() + o.seconds * 1000;
  let sent = 0;
  while (Date.now() < end) {
    const outstanding = o.ack ? sent - acked : sent - received;
    let budget = o.window === 0 ? 1000 : o.window - outstanding;
    while (budget > 0) {
      if (o.ack) sender.sock.emit2('m', payload, onAck);
      else sender.sock.emit2('m', payload);
      sent += 1;
      budget -= 1;
    }
    await new Promise((resolve) => setImmediate(resolve));
  }
  // drain what is in flight (bounded)
  const drainEnd = Date.now() + 5000;
  while ((o.ack ? acked : received) + sender.errors.length < sent && Date.now() < drainEnd) await delay(5);
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu1 = relay ? cpuSeconds(relay.pid) : null;

  const done = o.ack ? acked : received;
  const lines = [
    `transport ${o.transport}, ${o.sender} -> ${o.receiver}, ${o.ack ? 'P2P_EMIT_ACKNOWLEDGE' : 'P2P_EMIT'}, ${o.size}-byte payload, window ${o.window}`,
    `sent ${sent}, received ${received}${o.ack ? `, acked ${acked}` : ''}, SERVER_ERRORs ${sender.errors.length} in ${secs.toFixed(2)} s`,
    `messages/s: ${Math.round(done / secs)}`,
  ];
  if (cpu0 !== null && cpu1 !== null) {
    const cpu = cpu1 - cpu0;
    lines.push(`relay CPU: ${cpu.toFixed(2)} s (${((cpu / secs) * 100).toFixed(0)}% of one core), ${done ? ((cpu / done) * 1e6).toFixed(2) : '-'} us per message`);
  }
  if (sender.errors.length) lines.push(`first SERVER_ERROR: ${sender.errors[0]}`);
  process.stdout.write(`${lines.join('\n')}\n`);

  sender.close();
  receiver.close();
  if (relay) await relay.stop();
  return { sent, done, rate: Math.round(done / secs) };
}

main().then(() => process.exit(0), (err) => {
  process.stderr.write(`load.js: ${err.stack || err}\n`);
  process.exit(1);
});
