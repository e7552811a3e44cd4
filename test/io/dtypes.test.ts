import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  DTYPES,
  SUPPORTED_DTYPES,
  bfloat16BitsToFloat32,
  float16BitsToFloat32,
  float32ToBfloat16Bits,
  float32ToFloat16Bits,
  float16ToNumber,
  numberToFloat16,
  numberToBfloat16,
  bfloat16ToNumber,
  fromFloat32,
  toFloat32,
  typedArrayFromBytes,
  isDtype,
} from '../../src/io/dtypes.js';
import { Rng } from '../../src/runtime/rng.js';

const allBits = () => {
  const a = new Uint16Array(65536);
  for (let i = 0; i < 65536; i++) a[i] = i;
  return a;
};
const isNanHalf = (h: number) => (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0;
const isNanBf16 = (b: number) => (b & 0x7f80) === 0x7f80 && (b & 0x7f) !== 0;

/** Independent f16 decoder from the definition: (-1)^s * 2^(e-15) * 1.m, or 2^-14 * 0.m. */
function halfByDefinition(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0x1f) return m ? NaN : s * Infinity;
  if (e === 0) return s * m * 2 ** -24;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

test('dtype table: sizes and array kinds', () => {
  assert.equal(SUPPORTED_DTYPES.length, 13);
  const sizes = Object.fromEntries(SUPPORTED_DTYPES.map((d) => [d, DTYPES[d].itemSize]));
  assert.deepEqual(sizes, { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U64: 8, U32: 4, U16: 2, U8: 1, BOOL: 1 });
  for (const d of SUPPORTED_DTYPES) assert.equal(DTYPES[d].array.BYTES_PER_ELEMENT, DTYPES[d].itemSize, d);
  assert.equal(isDtype('F32'), true);
  assert.equal(isDtype('f32'), false);
  assert.equal(isDtype('toString'), false);
  assert.equal(isDtype('F8_E4M3'), false);
});

test('every f16 bit pattern decodes to its defined value and round-trips through float32 exactly', () => {
  const bits = allBits();
  const f = float16BitsToFloat32(bits);
  for (let h = 0; h < 65536; h++) {
    const want = halfByDefinition(h);
    const got = f[h]!;
    if (Number.isNaN(want)) assert.ok(Number.isNaN(got), `0x${h.toString(16)}`);
    else assert.ok(Object.is(got, want), `0x${h.toString(16)}: ${got} != ${want}`);
  }
  const back = float32ToFloat16Bits(f);
  for (let h = 0; h < 65536; h++) if (back[h] !== h) assert.fail(`f16 0x${h.toString(16)} came back as 0x${back[h]!.toString(16)}`);
  // NaN payloads survive, so the sign and every payload bit do.
  assert.equal(back.filter((h) => isNanHalf(h)).length, 2 * 1023);
});

test('every bf16 bit pattern round-trips through float32 exactly', () => {
  const bits = allBits();
  const f = bfloat16BitsToFloat32(bits);
  const u = new Uint32Array(f.buffer);
  for (let b = 0; b < 65536; b++) assert.equal(u[b], b << 16 >>> 0);
  const back = float32ToBfloat16Bits(f);
  for (let b = 0; b < 65536; b++) if (back[b] !== b) assert.fail(`bf16 0x${b.toString(16)} came back as 0x${back[b]!.toString(16)}`);
});

// Sorted finite non-negative f16 values, for a brute-force nearest-value oracle.
const halfPositives = (() => {
  const v: number[] = [];
  for (let h = 0; h < 0x7c00; h++) v.push(halfByDefinition(h));
  return v; // index == bit pattern, increasing
})();

function nearestHalfOracle(x: number): number {
  if (Number.isNaN(x)) return -1;
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  const a = Math.abs(x);
  if (a >= 65520) return sign | 0x7c00; // at or beyond the midpoint between max (65504) and 2^16
  let lo = 0, hi = halfPositives.length - 1;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (halfPositives[mid]! <= a) lo = mid;
    else hi = mid;
  }
  const dl = a - halfPositives[lo]!, dh = halfPositives[hi]! - a;
  if (dl < dh) return sign | lo;
  if (dh < dl) return sign | hi;
  return sign | (lo % 2 === 0 ? lo : hi);
}

function nearestBf16Oracle(x: number): number {
  const f = new Float32Array([x]);
  const u = new Uint32Array(f.buffer)[0]!;
  const loBits = u >>> 16;
  const lo = bfloat16ToNumber(loBits);
  const hiBits = loBits + 1;
  // Past the largest finite bf16 the next step up is 2^128 (encoded as inf): IEEE rounds to inf
  // from max + half an ulp, ties included (inf's pattern is even).
  const hiVal = (hiBits & 0x7fff) === 0x7f80 ? (x < 0 ? -1 : 1) * 2 ** 128 : bfloat16ToNumber(hiBits);
  const dl = Math.abs(x - lo), dh = Math.abs(hiVal - x);
  if (dl < dh) return loBits;
  if (dh < dl) return hiBits;
  return loBits % 2 === 0 ? loBits : hiBits;
}

test('float32 -> f16 rounds to nearest even everywhere (random bit patterns and boundaries, against a brute-force oracle)', () => {
  const rng = new Rng(1234);
  const n = 200_000;
  const f = new Float32Array(n);
  const u = new Uint32Array(f.buffer);
  for (let i = 0; i < n; i++) {
    // Half of them in the f16 range (exponents near 2^-25..2^16), half anywhere.
    u[i] = i % 2 ? rng.nextUint32() : ((rng.nextUint32() & 0x80000000) | ((101 + rng.int(43)) << 23) | (rng.nextUint32() & 0x7fffff)) >>> 0;
  }
  // Exact ties and their neighbours around every f16 value's midpoint in a sample of patterns.
  const extra: number[] = [65504, 65519.99, 65520, 65536, 2 ** -25, 2 ** -25 * 1.0000001, 2 ** -24, 1.5 * 2 ** -24, 2.5 * 2 ** -24, 2 ** -14, 2 ** -14 - 2 ** -25, 1 + 2 ** -11, 1 + 3 * 2 ** -11, 3e-8, 1e-8];
  for (let h = 0; h < 0x7bff; h += 37) extra.push((halfPositives[h]! + halfPositives[h + 1]!) / 2);
  const all = new Float32Array(n + extra.length * 2);
  all.set(f);
  extra.forEach((x, i) => {
    all[n + 2 * i] = x;
    all[n + 2 * i + 1] = -x;
  });
  const got = float32ToFloat16Bits(all);
  for (let i = 0; i < all.length; i++) {
    const x = all[i]!;
    if (Number.isNaN(x)) {
      assert.ok(isNanHalf(got[i]!), `NaN -> 0x${got[i]!.toString(16)}`);
      continue;
    }
    const want = nearestHalfOracle(x);
    if (got[i] !== want) assert.fail(`${x} -> 0x${got[i]!.toString(16)}, want 0x${want.toString(16)}`);
    assert.equal(numberToFloat16(x), want);
  }
});

test('float32 -> bf16 rounds to nearest even (random bit patterns, against an oracle); NaN stays NaN', () => {
  const rng = new Rng(99);
  const n = 200_000;
  const f = new Float32Array(n);
  const u = new Uint32Array(f.buffer);
  for (let i = 0; i < n; i++) u[i] = rng.nextUint32();
  // Ties: exactly half way between neighbours, both parities; and the overflow boundary.
  u.set([0x3f808000, 0x3f818000, 0x7f7f8000, 0x7f7fffff, 0x7f7f7fff, 0x00008000, 0x00018000, 0x7f800001, 0xff800001, 0x7fc00000], 0);
  const got = float32ToBfloat16Bits(f);
  for (let i = 0; i < n; i++) {
    const x = f[i]!;
    if (Number.isNaN(x)) {
      assert.ok(isNanBf16(got[i]!), `NaN 0x${u[i]!.toString(16)} -> 0x${got[i]!.toString(16)}`);
      assert.equal(got[i]! & 0x8000, (u[i]! >>> 16) & 0x8000, 'NaN keeps its sign');
      continue;
    }
    const want = nearestBf16Oracle(x);
    if (got[i] !== want) assert.fail(`0x${u[i]!.toString(16)} (${x}) -> 0x${got[i]!.toString(16)}, want 0x${want.toString(16)}`);
  }
  assert.equal(numberToBfloat16(1), 0x3f80);
  assert.equal(numberToBfloat16(Infinity), 0x7f80);
  assert.equal(numberToBfloat16(3.4e38), 0x7f80); // past max bf16 (3.3895e38) + half an ulp
  assert.equal(numberToBfloat16(3.0e38), 0x7f62);
});

test('special values: signed zeros, infinities, subnormals, overflow', () => {
  assert.equal(numberToFloat16(0), 0);
  assert.equal(numberToFloat16(-0), 0x8000);
  assert.equal(numberToFloat16(Infinity), 0x7c00);
  assert.equal(numberToFloat16(-Infinity), 0xfc00);
  assert.ok(isNanHalf(numberToFloat16(NaN)));
  assert.equal(numberToFloat16(65504), 0x7bff);
  assert.equal(numberToFloat16(65519), 0x7bff);
  assert.equal(numberToFloat16(65520), 0x7c00);
  assert.equal(numberToFloat16(2 ** -24), 1);
  assert.equal(numberToFloat16(2 ** -25), 0); // tie -> even (0)
  assert.equal(numberToFloat16(2 ** -25 * 1.5), 1);
  assert.equal(numberToFloat16(3 * 2 ** -25), 2); // tie between 1 and 2 -> 2
  assert.equal(numberToFloat16(2 ** -14 - 2 ** -25), 0x400); // rounds up into the smallest normal
  assert.equal(float16ToNumber(0x3555), 0.333251953125);
  assert.equal(bfloat16ToNumber(0x3eab), 0.333984375);
  assert.equal(numberToBfloat16(-0), 0x8000);
  assert.equal(numberToBfloat16(1e-40), 0x0001); // bf16 subnormal (1e-40 is an f32 subnormal)
});

test('toFloat32 reads every dtype, and fromFloat32 writes the float ones', () => {
  const enc = (a: ArrayBufferView) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  assert.deepEqual([...toFloat32('F64', enc(new Float64Array([1.5, 1e300, -0])))], [1.5, Infinity, -0]);
  assert.deepEqual([...toFloat32('I64', enc(new BigInt64Array([-5n, 2n ** 40n])))], [-5, 2 ** 40]);
  assert.deepEqual([...toFloat32('U64', enc(new BigUint64Array([2n ** 64n - 1n])))], [2 ** 64]);
  assert.deepEqual([...toFloat32('I32', enc(new Int32Array([-7, 16777217])))], [-7, 16777216]);
  assert.deepEqual([...toFloat32('U16', enc(new Uint16Array([65535])))], [65535]);
  assert.deepEqual([...toFloat32('I8', enc(new Int8Array([-128, 5])))], [-128, 5]);
  assert.deepEqual([...toFloat32('BOOL', new Uint8Array([0, 1, 2]))], [0, 1, 1]);
  assert.deepEqual([...toFloat32('F16', enc(new Uint16Array([0x3c00, 0xc000])))], [1, -2]);
  assert.deepEqual([...toFloat32('BF16', enc(new Uint16Array([0x3f80, 0xc040])))], [1, -3]);
  const v = new Float32Array([0.1, -2, 65504, 1e-8]);
  assert.deepEqual([...toFloat32('F32', fromFloat32('F32', v))], [...v]);
  assert.deepEqual([...toFloat32('F64', fromFloat32('F64', v))], [...v]);
  assert.deepEqual([...toFloat32('F16', fromFloat32('F16', v))], [0.0999755859375, -2, 65504, 0]);
  assert.deepEqual([...toFloat32('BF16', fromFloat32('BF16', v))], [0.10009765625, -2, 65536, 1.0011717677116394e-8]);
  // Unaligned bytes are copied rather than failing.
  const buf = new Uint8Array(9);
  buf.set(enc(new Float64Array([2.5])), 1);
  assert.deepEqual([...typedArrayFromBytes('F64', buf.subarray(1))], [2.5]);
  assert.throws(() => typedArrayFromBytes('F32', new Uint8Array(6)), /whole number/);
});

test('conversions of a checkpoint-sized array (4M elements) round-trip within each format\'s precision', () => {
  // (their speed is not a unit test's business: a wall-clock limit here would fail on a busy machine)
  const n = 4 << 20;
  const rng = new Rng(3);
  const f = rng.fillNormal(new Float32Array(n));
  const f1 = float16BitsToFloat32(float32ToFloat16Bits(f));
  const f2 = bfloat16BitsToFloat32(float32ToBfloat16Bits(f));
  assert.equal(f1.length + f2.length, 2 * n);
  let e16 = 0;
  let ebf = 0;
  for (let i = 0; i < n; i++) {
    const x = Math.abs(f[i]!);
    // normal fp16 range: relative error at most 2^-11 (round to nearest); bf16 keeps 8 bits: 2^-8
    if (x > 6.2e-5) e16 = Math.max(e16, Math.abs(f1[i]! - f[i]!) / x);
    if (x > 1e-30) ebf = Math.max(ebf, Math.abs(f2[i]! - f[i]!) / x);
  }
  assert.ok(e16 <= 2 ** -11, `fp16 relative error ${e16}`);
  assert.ok(ebf <= 2 ** -8, `bf16 relative error ${ebf}`);
});
