import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tf, type Tensor } from '../../src/runtime/tf.js';
import { attention } from '../../src/runtime/native/ops.js';
import { useDevice } from '../../src/runtime/devices.js';
import { Rng } from '../../src/runtime/rng.js';
import { assertClose, on, randn, skipNative, tensor } from './conformance.js';

const opts = { skip: skipNative };

interface Case {
  B: number;
  H: number;
  Hkv: number;
  Sq: number;
  Sk: number;
  D: number;
  causal: boolean;
  padded: boolean;
}

function run(c: Case, rng: Rng) {
  const q = randn(rng, [c.B, c.H, c.Sq, c.D]);
  const k = randn(rng, [c.B, c.Hkv, c.Sk, c.D]);
  const v = randn(rng, [c.B, c.Hkv, c.Sk, c.D]);
  const w = randn(rng, [c.B, c.H, c.Sq, c.D]);
  // padding at the end of each row, a different length per batch row; row 0 may be fully padded
  const mask = new Int32Array(c.B * c.Sk).map((_, i) => (i % c.Sk < c.Sk - (Math.floor(i / c.Sk) * 3) % (c.Sk + 1) ? 1 : 0));
  return () => {
    const keyMask = c.padded ? tf.tensor2d(mask, [c.B, c.Sk], 'int32') : null;
    const f = (a: Tensor, b: Tensor, d: Tensor) => attention(a, b, d, { causal: c.causal, keyMask });
    const { value, grads } = tf.valueAndGrads((a: Tensor, b: Tensor, d: Tensor) => tf.sum(tf.mul(f(a, b, d), tensor(w))))([tensor(q), tensor(k), tensor(v)]);
    return [f(tensor(q), tensor(k), tensor(v)), value, ...grads];
  };
}

test('fused attention matches the tfjs reference: causal, padding, GQA, Sq != Sk, odd sizes; values and gradients', opts, async () => {
  const rng = new Rng('native-attention');
  const cases: Case[] = [
    { B: 2, H: 3, Hkv: 3, Sq: 7, Sk: 7, D: 5, causal: false, padded: false },
    { B: 2, H: 4, Hkv: 4, Sq: 9, Sk: 9, D: 8, causal: true, padded: false },
    { B: 3, H: 2, Hkv: 2, Sq: 6, Sk: 6, D: 4, causal: true, padded: true },
    { B: 2, H: 4, Hkv: 2, Sq: 5, Sk: 5, D: 3, causal: true, padded: true },
    { B: 1, H: 6, Hkv: 1, Sq: 3, Sk: 11, D: 7, causal: true, padded: false },
    { B: 2, H: 2, Hkv: 1, Sq: 4, Sk: 10, D: 16, causal: false, padded: true },
    { B: 1, H: 1, Hkv: 1, Sq: 1, Sk: 1, D: 1, causal: true, padded: false },
    { B: 2, H: 2, Hkv: 2, Sq: 33, Sk: 33, D: 16, causal: true, padded: true },
  ];
  for (const c of cases) {
    const f = run(c, rng);
    assertClose(await on('native', f), await on('cpu', f), `attention ${JSON.stringify(c)}`, 1e-4, 1e-3);
  }
});

test('fused attention: a query that sees no key outputs 0 with zero gradients; empty sequences work', opts, async () => {
  const c: Case = { B: 2, H: 1, Hkv: 1, Sq: 3, Sk: 3, D: 2, causal: false, padded: true };
  const f = () => {
    const q = tf.ones([2, 1, 3, 2]);
    const k = tf.ones([2, 1, 3, 2]);
    const v = tf.ones([2, 1, 3, 2]);
    const keyMask = tf.tensor2d([[0, 0, 0], [1, 0, 1]]);
    return [attention(q, k, v, { keyMask, causal: c.causal }), ...tf.grads((a: Tensor) => tf.sum(attention(a, k, v, { keyMask })))([q])];
  };
  const native = await on('native', f);
  assertClose(native, await on('cpu', f), 'fully masked row');
  assert.deepEqual(Array.from(native[0]!.values.slice(0, 6)), [0, 0, 0, 0, 0, 0]);
  const empty = () => attention(tf.zeros([1, 2, 0, 4]), tf.zeros([1, 2, 5, 4]), tf.zeros([1, 2, 5, 4]), { causal: true });
  assertClose(await on('native', empty), await on('cpu', empty), 'no queries');
});

test('fused attention leaves no tensors behind, with or without a gradient tape', opts, async () => {
  await useDevice('native');
  const q = tf.ones([1, 2, 4, 3]);
  const keyMask = tf.tensor2d([[1, 1, 0, 1]]);
  const before = tf.memory().numTensors;
  attention(q, q, q, { keyMask, causal: true }).dispose();
  tf.grad((a: Tensor) => tf.sum(attention(a, q, q, { keyMask })))(q).dispose();
  assert.equal(tf.memory().numTensors, before);
  tf.dispose([q, keyMask]);
});
