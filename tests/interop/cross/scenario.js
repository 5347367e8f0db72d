'use strict';
// What both sides of the cross-transport scenario agree on: the payloads (the Rust side
// builds the same values in tests/cross/mod.rs) and the deterministic stream data.

/** The stream seeds, one per direction and stream (the same numbers as on the Rust side). */
const SEEDS = Object.freeze({
  s1NativeToNode: 0x5101,
  s1NodeToNative: 0x5102,
  s2NativeToNode: 0x5201,
  s2NodeToNative: 0x5202,
});

/** The acceptor of S1 (this side) writes these bytes right after accepting the stream. */
const MARKER = Buffer.from('S1: first bytes from the Socket.IO acceptor');

/** mulberry32: a u32 generator, identical to `Mulberry32` in tests/cross/mod.rs. */
function rng(seed) {
  let t = seed >>> 0;
  return () => {
    t = (t + 0x6d2b79f5) >>> 0;
    let r = Math.imul(t ^ (t >>> 15), 1 | t);
    r ^= r + Math.imul(r ^ (r >>> 7), 61 | r);
    return (r ^ (r >>> 14)) >>> 0;
  };
}

/** `n` pseudo-random bytes: each u32 of the generator as 4 little-endian bytes. */
function mulberry32Bytes(seed, n) {
  const next = rng(seed);
  const buf = Buffer.alloc(n);
  let i = 0;
  for (; i + 4 <= n; i += 4) buf.writeUInt32LE(next(), i);
  if (i < n) {
    const last = next();
    for (let k = 0; i < n; i += 1, k += 1) buf[i] = (last >>> (8 * k)) & 0xff;
  }
  return buf;
}
mulberry32Bytes.rng = rng;

/** `n` bytes `(i * mul + add) & 0xff`. */
function pattern(n, mul, add) {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i += 1) b[i] = (i * mul + add) & 0xff;
  return b;
}

/** The arguments of an emit: every JSON type, and binary at the top and nested. */
function rich(tag) {
  return [
    tag,
    42, -7, 0, 9007199254740991, -9007199254740991,
    1.5, -0.25, 1e-300, 1.5e300,
    null, true, false,
    '', 'h\u00e9llo \u2713 \ud83d\ude80',
    Buffer.from([0, 1, 2, 253, 254, 255]),
    {
      int: 3,
      float: 2.5,
      str: 'x',
      nil: null,
      yes: true,
      no: false,
      bin: pattern(300, 7, 1),
      nested: [Buffer.alloc(0), { deep: Buffer.from([7]) }, [Buffer.from([1, 2]), 'two', 2, -2.75]],
      emptyObj: {},
      emptyArr: [],
    },
    [1, 'two', Buffer.from([9, 8, 7]), [null, -1.5, Buffer.from([0])], { b: Buffer.from('map in array') }],
    pattern(20000, 13, 5),
  ];
}

/** The arguments of an ack: several, binary included. */
function ackArgs(tag) {
  return [
    tag, 7, -1, 0.5, null, false, true,
    { bin: Buffer.from([1, 2, 3]), list: [Buffer.from([4]), 'x', true, 3.75, null] },
    [Buffer.from([5, 6]), [Buffer.alloc(0)]],
    pattern(1000, 3, 11),
  ];
}

module.exports = { SEEDS, MARKER, mulberry32Bytes, pattern, rich, ackArgs };
