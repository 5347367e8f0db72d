'use strict';
// Reads the logs compare.sh wrote (DIR/SCENARIO.SERVER.rN.log) and prints a markdown table:
// every run's figure, the median per server, and relay / node. Several directories (several
// compare.sh runs of one sitting) are read as consecutive rounds.
//
//   node summarize.js DIR [DIR...]

const fs = require('node:fs');
const path = require('node:path');

const dirs = process.argv.slice(2);
if (!dirs.length) {
  console.error('usage: node summarize.js DIR [DIR...]');
  process.exit(2);
}

/** A duration as the load tool prints it ("350 µs", "1.25 ms") in µs. */
function us(text) {
  const m = /([\d.]+)\s*(µs|us|ms|s)\b/.exec(text);
  if (!m) return NaN;
  const v = Number(m[1]);
  return m[2] === 'ms' ? v * 1000 : m[2] === 's' ? v * 1e6 : v;
}

function parse(name, text) {
  const r = {};
  const load = /^load ([\d.]+)/m.exec(text);
  const loadAfter = /^load-after ([\d.]+)/m.exec(text);
  r.load = [load, loadAfter].filter(Boolean).map((m) => Number(m[1]));
  if (name === 'nodeclients') {
    const mps = /^messages\/s: (\d+)/m.exec(text);
    const rec = /received (\d+)/.exec(text);
    const ticks = /server CPU ticks (\d+) \(of (\d+)\/s\)/.exec(text);
    if (mps) r.rate = Number(mps[1]);
    if (rec && ticks) r.cpu = (Number(ticks[1]) / Number(ticks[2]) / Number(rec[1])) * 1e6;
    return r;
  }
  if (name === 'idle') {
    const m = /sio3: (\d+) idle clients, ([\d.]+) KiB of relay RSS per connection \(([\d.]+) -> ([\d.]+) MiB; relay CPU while idle ([\d.]+)%/.exec(text);
    if (m) Object.assign(r, { clients: Number(m[1]), kib: Number(m[2]), before: Number(m[3]), after: Number(m[4]), idleCpu: Number(m[5]) });
    return r;
  }
  const mps = /^relayed messages\/s: (\d+)/m.exec(text);
  if (mps) r.rate = Number(mps[1]);
  const cpu = /^relay CPU: .*?, (.*?) per (relayed message|acked emit)/m.exec(text);
  if (cpu) r.cpu = us(cpu[1]);
  const ack = /^ack latency: p50 (.*?)\s+p99 (.*?)\s+p99\.9 (.*?)\s+\((\d+) acks\/s\)/m.exec(text);
  if (ack) Object.assign(r, { p50: us(ack[1]), p99: us(ack[2]), acks: Number(ack[4]) });
  return r;
}

const runs = {}; // scenario -> server -> [{round, ...}]
let offset = 0;
for (const dir of dirs) {
  let last = 0;
  for (const f of fs.readdirSync(dir).sort()) {
    const m = /^([a-z0-9-]+)\.(relay|node)\.r(\d+)\.log$/.exec(f);
    if (!m) continue;
    const [, scenario, server, round] = m;
    const r = parse(scenario, fs.readFileSync(path.join(dir, f), 'utf8'));
    // Idle runs of different sizes are different figures.
    const name = scenario === 'idle' && r.clients ? `idle-${r.clients}` : scenario;
    r.round = offset + Number(round);
    last = Math.max(last, Number(round));
    ((runs[name] ||= {})[server] ||= []).push(r);
  }
  offset += last;
}

const median = (xs) => {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (!v.length) return NaN;
  const h = Math.floor(v.length / 2);
  return v.length % 2 ? v[h] : (v[h - 1] + v[h]) / 2;
};
const fmt = (x, d = 2) => (Number.isFinite(x) ? x.toFixed(d) : '-');
const k = (x) => (Number.isFinite(x) ? `${(x / 1000).toFixed(1)}k` : '-');
const ms = (x) => (Number.isFinite(x) ? (x >= 1000 ? `${(x / 1000).toFixed(1)} ms` : `${x.toFixed(0)} µs`) : '-');

const rows = [
  ['emit', 'closed loop, window 256: CPU per relayed message (µs)', 'cpu', fmt],
  ['emit', 'closed loop: relayed msgs/s', 'rate', k],
  ...Object.keys(runs).filter((n) => n.startsWith('emit-rate-'))
    .sort((a, b) => Number(a.slice(10)) - Number(b.slice(10)))
    .flatMap((n) => [
      [n, `--rate ${n.slice(10)}: CPU per relayed message (µs)`, 'cpu', fmt],
      [n, `--rate ${n.slice(10)}: relayed msgs/s`, 'rate', k],
    ]),
  ['emit-ack', 'emit-ack window 256: CPU per acked emit (µs)', 'cpu', fmt],
  ['emit-ack', 'emit-ack: acks/s', 'acks', k],
  ['emit-ack', 'emit-ack: ack p50', 'p50', ms],
  ['emit-ack', 'emit-ack: ack p99', 'p99', ms],
  ...Object.keys(runs).filter((n) => n.startsWith('idle-'))
    .sort((a, b) => Number(a.slice(5)) - Number(b.slice(5)))
    .flatMap((n) => [
      [n, `idle sio3, ${n.slice(5)} clients: RSS per client (KiB)`, 'kib', (x) => fmt(x, 1)],
      [n, `idle sio3, ${n.slice(5)} clients: CPU while idle (% of a core)`, 'idleCpu', (x) => fmt(x, 1)],
    ]),
  ['nodeclients', 'load.js (node legacy clients): server CPU per message (µs)', 'cpu', fmt],
  ['nodeclients', 'load.js: msgs/s', 'rate', k],
];

const out = [];
out.push('| figure | p2p-relay (each run) | Node reference (each run) | relay median | node median | relay / node |');
out.push('|---|---|---|---|---|---|');
for (const [name, label, key, f] of rows) {
  const s = runs[name];
  if (!s) continue;
  const rv = (s.relay || []).sort((a, b) => a.round - b.round).map((r) => r[key]);
  const nv = (s.node || []).sort((a, b) => a.round - b.round).map((r) => r[key]);
  if (!rv.some(Number.isFinite) && !nv.some(Number.isFinite)) continue;
  const rm = median(rv);
  const nm = median(nv);
  out.push(`| ${label} | ${rv.map((x) => f(x)).join(' / ')} | ${nv.map((x) => f(x)).join(' / ')} | ${f(rm)} | ${f(nm)} | ${fmt(rm / nm)} |`);
}
const loads = Object.values(runs).flatMap((s) => Object.values(s).flat()).flatMap((r) => r.load);
if (loads.length) out.push('', `load average (1 min) around the runs: ${Math.min(...loads).toFixed(2)} - ${Math.max(...loads).toFixed(2)}`);
for (const n of Object.keys(runs).filter((x) => x.startsWith('idle-'))) {
  for (const server of ['relay', 'node']) {
    for (const r of runs[n][server] || []) {
      out.push(`idle ${server} r${r.round}: ${r.clients} clients, RSS ${r.before} -> ${r.after} MiB`);
    }
  }
}
console.log(out.join('\n'));
