import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tf } from '../../src/runtime/tf.js';
import { loadNativeAddon, nativeInfo, useDevice } from '../../src/runtime/devices.js';
import type { NativeKernels } from '../../src/runtime/native/addon.js';
import { Rng } from '../../src/runtime/rng.js';
import { assertClose, on, randn, skipNative, tensor } from './conformance.js';

const opts = { skip: skipNative };

interface Case {
  aShape: number[];
  bShape: number[];
  transposeA: boolean;
  transposeB: boolean;
}

function matShapes(m: number, n: number, k: number, ta: boolean, tb: boolean): [number[], number[]] {
  return [ta ? [k, m] : [m, k], tb ? [n, k] : [k, n]];
}

function randomCase(rng: Rng): Case {
  const dim = () => (rng.uniform() < 0.15 ? 1 : 1 + rng.int(40));
  const m = dim();
  const n = dim();
  const k = rng.uniform() < 0.1 ? 1 : 1 + rng.int(70);
  const ta = rng.uniform() < 0.5;
  const tb = rng.uniform() < 0.5;
  // batch dims: none, equal, or broadcast (a 1 on either side, or a missing leading dim)
  const rank = rng.int(3);
  const full = Array.from({ length: rank }, () => 1 + rng.int(4));
  const aBatch = full.map((d) => (rng.uniform() < 0.3 ? 1 : d));
  const bBatch = full.map((d) => (rng.uniform() < 0.3 ? 1 : d)).slice(rng.uniform() < 0.3 ? 1 : 0);
  const [am, bm] = matShapes(m, n, k, ta, tb);
  return { aShape: [...aBatch, ...am], bShape: [...bBatch, ...bm], transposeA: ta, transposeB: tb };
}

/**
 * The reference: the cpu backend's matMul on inputs broadcast to a common batch shape first (its own
 * kernel indexes broadcast batches as `i % batch`, which is right only when one side's batch is 1).
 */
function referenceMatMul(c: Case, a: { shape: number[]; data: Float32Array }, b: { shape: number[]; data: Float32Array }) {
  const at = tensor(a);
  const bt = tensor(b);
  const ab = c.aShape.slice(0, -2);
  const bb = c.bShape.slice(0, -2);
  const n = Math.max(ab.length, bb.length);
  const batch = Array.from({ length: n }, (_, i) => Math.max(ab[ab.length - n + i] ?? 1, bb[bb.length - n + i] ?? 1));
  const ae = n > 0 ? tf.broadcastTo(at, [...batch, ...c.aShape.slice(-2)]) : at;
  const be = n > 0 ? tf.broadcastTo(bt, [...batch, ...c.bShape.slice(-2)]) : bt;
  return tf.matMul(ae, be, c.transposeA, c.transposeB);
}

test('native info names the GEMM and the thread count', opts, () => {
  const info = nativeInfo();
  assert.ok(info);
  assert.match(info.gemm, /^(openblas|builtin)/);
  assert.ok(info.threads >= 1);
});

test('batched matmul matches the JS reference on random shapes, transposes and batch broadcasts', opts, async () => {
  const rng = new Rng('native-matmul');
  for (let i = 0; i < 80; i++) {
    const c = randomCase(rng);
    const a = randn(rng, c.aShape);
    const b = randn(rng, c.bShape);
    const want = await on('cpu', () => referenceMatMul(c, a, b));
    const got = await on('native', () => tf.matMul(tensor(a), tensor(b), c.transposeA, c.transposeB));
    const k = c.transposeA ? c.aShape.at(-2)! : c.aShape.at(-1)!;
    assertClose(got, want, `matMul ${JSON.stringify(c)}`, 1e-5 * Math.sqrt(k), 1e-4);
  }
});

test('matmul agrees with the cpu kernel directly where the cpu kernel broadcasts correctly', opts, async () => {
  const rng = new Rng('native-matmul-direct');
  const cases: [number[], number[], boolean, boolean][] = [
    [[3, 7, 5], [5, 4], false, false],
    [[2, 3, 5, 7], [7, 6], false, false],
    [[5, 9], [4, 9, 3], false, false],
    [[4, 9, 5], [4, 6, 9], true, true],
    [[1, 8, 16], [6, 16, 8], false, false],
  ];
  for (const [as, bs, ta, tb] of cases) {
    const a = randn(rng, as);
    const b = randn(rng, bs);
    const f = () => tf.matMul(tensor(a), tensor(b), ta, tb);
    assertClose(await on('native', f), await on('cpu', f), `matMul ${as} x ${bs}`, 1e-4);
  }
});

test('matmul handles empty tensors and an inner dimension of 0', opts, async () => {
  const cases: [number[], number[]][] = [
    [[0, 5], [5, 3]],
    [[4, 5], [5, 0]],
    [[4, 0], [0, 3]],
    [[0, 4, 5], [0, 5, 3]],
    [[2, 4, 0], [2, 0, 3]],
  ];
  for (const [as, bs] of cases) {
    const f = () => tf.matMul(tf.zeros(as), tf.ones(bs));
    const want = await on('cpu', f);
    const got = await on('native', f);
    assertClose(got, want, `matMul ${as} x ${bs}`);
  }
});

test('larger products exercise the blocked paths (several K blocks, partial tiles, many batches)', opts, async () => {
  const rng = new Rng('native-matmul-large');
  const cases: [number[], number[], boolean, boolean][] = [
    [[131, 517], [517, 67], false, false],
    [[517, 131], [67, 517], true, true],
    [[24, 65, 33], [24, 33, 70], false, false],
    [[2, 4, 64, 48], [2, 4, 64, 48], false, true],
  ];
  for (const [as, bs, ta, tb] of cases) {
    const a = randn(rng, as);
    const b = randn(rng, bs);
    const f = () => tf.matMul(tensor(a), tensor(b), ta, tb);
    assertClose(await on('native', f), await on('cpu', f), `matMul ${as} x ${bs}`, 2e-4, 1e-4);
  }
});

test("each of the addon's GEMMs, asked for by name, matches the JS reference (the install-time timing may pick either)", opts, async () => {
  const addon = loadNativeAddon().addon as unknown as NativeKernels;
  const rng = new Rng('native-builtin');
  const kernels = addon.info().blas ? [true, false] : [true];
  for (let i = 0; i < 30 * kernels.length; i++) {
    const builtin = kernels[i % kernels.length]!;
    const m = 1 + rng.int(150);
    const n = 1 + rng.int(150);
    const k = rng.int(300);
    const ta = rng.uniform() < 0.5;
    const tb = rng.uniform() < 0.5;
    const [as, bs] = matShapes(m, n, k, ta, tb);
    const a = randn(rng, as);
    const b = randn(rng, bs);
    const want = await on('cpu', () => tf.matMul(tensor(a), tensor(b), ta, tb));
    const out = new Float32Array(m * n).fill(Number.NaN);
    addon.batchMatMul(a.data, b.data, out, 1, m, n, k, ta, tb, null, null, builtin);
    assertClose([{ shape: [m, n], values: out }], want, `${builtin ? 'builtin' : 'blas'} sgemm m=${m} n=${n} k=${k} ta=${ta} tb=${tb}`, 1e-5 * Math.sqrt(k + 1), 1e-4);
  }
});

test('matmul gradients through the native backend match the JS reference', opts, async () => {
  const rng = new Rng('native-matmul-grad');
  const cases: [number[], number[], boolean, boolean][] = [
    [[5, 7], [7, 3], false, false],
    [[7, 5], [7, 3], true, false],
    [[5, 7], [3, 7], false, true],
    [[7, 5], [3, 7], true, true],
    [[4, 6, 9], [4, 9, 2], false, false],
    [[2, 3, 9, 6], [2, 3, 5, 9], true, true],
  ];
  for (const [as, bs, ta, tb] of cases) {
    const a = randn(rng, as);
    const b = randn(rng, bs);
    const m = ta ? as.at(-1)! : as.at(-2)!;
    const n = tb ? bs.at(-2)! : bs.at(-1)!;
    const w = randn(rng, [...as.slice(0, -2), m, n]);
    const f = () => {
      const g = tf.grads((x, y) => tf.sum(tf.mul(tf.matMul(x!, y!, ta, tb), tensor(w))));
      return g([tensor(a), tensor(b)]);
    };
    assertClose(await on('native', f), await on('cpu', f), `grad matMul ${as} x ${bs} ta=${ta} tb=${tb}`, 1e-4);
  }
});

test('fused matmul with bias and activation matches the JS reference, values and gradients', opts, async () => {
  const rng = new Rng('native-fused');
  for (const activation of ['linear', 'relu', 'elu', 'sigmoid', 'leakyrelu', 'relu6'] as const) {
    const a = randn(rng, [6, 11]);
    const b = randn(rng, [11, 5]);
    const bias = randn(rng, [5]);
    const f = () => tf.fused.matMul({ a: tensor(a), b: tensor(b), bias: tensor(bias), activation });
    assertClose(await on('native', f), await on('cpu', f), `fused matMul ${activation}`);
    if (activation === 'linear' || activation === 'relu') {
      const g = () => tf.grads((x, y) => tf.sum(tf.fused.matMul({ a: x!, b: y!, bias: tensor(bias), activation })))([tensor(a), tensor(b)]);
      assertClose(await on('native', g), await on('cpu', g), `grad fused matMul ${activation}`);
    }
  }
});

test('kernels the native backend does not override behave exactly as on cpu, int32 matmul included', opts, async () => {
  const rng = new Rng('native-fallthrough');
  const x = randn(rng, [2, 5, 5, 3]);
  const k = randn(rng, [3, 3, 3, 4]);
  const f = () => [
    tf.conv2d(tensor(x) as tf.Tensor4D, tensor(k) as tf.Tensor4D, 1, 'same'),
    tf.cumsum(tensor(x), 1),
    tf.cast(tf.matMul(tf.tensor2d([[1, 2], [3, 4]], undefined, 'int32'), tf.tensor2d([[5], [6]], undefined, 'int32')), 'float32'),
  ];
  const got = await on('native', f);
  const want = await on('cpu', f);
  assertClose(got, want, 'fall-through kernels', 0, 0);
});

test('tensors made on cpu can be used after switching to native and back', opts, async () => {
  await useDevice('cpu');
  const a = tf.tensor2d([[1, 2], [3, 4]]);
  await useDevice('native');
  const b = tf.matMul(a, a);
  assert.deepEqual(Array.from(b.dataSync()), [7, 10, 15, 22]);
  await useDevice('cpu');
  assert.deepEqual(Array.from(tf.add(b, 1).dataSync()), [8, 11, 16, 23]);
  tf.dispose([a, b]);
});
