import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tf } from '../../src/runtime/tf.js';
import { binaryPlan } from '../../src/runtime/native/backend.js';
import { Rng } from '../../src/runtime/rng.js';
import { assertClose, on, randn, skipNative, tensor } from './conformance.js';

const opts = { skip: skipNative };

/** Two random shapes that broadcast together: trailing-aligned, with 1s and missing leading dims. */
function broadcastPair(rng: Rng): [number[], number[]] {
  const rank = rng.int(5);
  const full = Array.from({ length: rank }, () => (rng.uniform() < 0.2 ? 1 : 1 + rng.int(9)));
  const a = full.map((d) => (rng.uniform() < 0.3 ? 1 : d));
  const b = full.map((d) => (rng.uniform() < 0.3 ? 1 : d));
  return [a.slice(rng.uniform() < 0.2 ? rng.int(rank + 1) : 0), b.slice(rng.uniform() < 0.2 ? rng.int(rank + 1) : 0)];
}

const BINARY: [string, (a: tf.Tensor, b: tf.Tensor) => tf.Tensor][] = [
  ['add', tf.add],
  ['sub', tf.sub],
  ['mul', tf.mul],
  ['div', tf.div],
  ['maximum', tf.maximum],
  ['minimum', tf.minimum],
  ['squaredDifference', tf.squaredDifference],
];

test('binary plans collapse contiguous dims and keep broadcast strides', () => {
  assert.deepEqual(binaryPlan([2, 3, 4], [2, 3, 4]), { outShape: [2, 3, 4], shape: [24], aStrides: [1], bStrides: [1] });
  assert.deepEqual(binaryPlan([2, 3, 4], [4]), { outShape: [2, 3, 4], shape: [6, 4], aStrides: [4, 1], bStrides: [0, 1] });
  assert.deepEqual(binaryPlan([2, 1, 4], [3, 1]), { outShape: [2, 3, 4], shape: [2, 3, 4], aStrides: [4, 0, 1], bStrides: [0, 1, 0] });
  assert.deepEqual(binaryPlan([], []), { outShape: [], shape: [1], aStrides: [0], bStrides: [0] });
  assert.equal(binaryPlan([2, 3], [4, 3]), null);
});

test('binary ops match the JS reference bit for bit on random broadcast shapes', opts, async () => {
  const rng = new Rng('native-binary');
  for (let i = 0; i < 60; i++) {
    const [as, bs] = broadcastPair(rng);
    const a = randn(rng, as);
    const b = randn(rng, bs);
    for (const [name, op] of BINARY) {
      const f = () => op(tensor(a), tensor(b));
      assertClose(await on('native', f), await on('cpu', f), `${name} ${JSON.stringify(as)} ${JSON.stringify(bs)}`, 0, 0);
    }
  }
});

test('binary ops on large inputs (threaded chunks), empty tensors, NaN and infinities', opts, async () => {
  const rng = new Rng('native-binary-large');
  const a = randn(rng, [3, 257, 129]);
  const b = randn(rng, [257, 1]);
  for (const [name, op] of BINARY) {
    const f = () => op(tensor(a), tensor(b));
    assertClose(await on('native', f), await on('cpu', f), `${name} large`, 0, 0);
  }
  const special = () => {
    const x = tf.tensor1d([NaN, 1, -Infinity, Infinity, 0, -0]);
    const y = tf.tensor1d([1, NaN, 2, Infinity, 0, 3]);
    return BINARY.map(([, op]) => op(x, y));
  };
  assertClose(await on('native', special), await on('cpu', special), 'special values', 0, 0);
  const empty = () => BINARY.map(([, op]) => op(tf.zeros([0, 3]), tf.ones([3])));
  assertClose(await on('native', empty), await on('cpu', empty), 'empty', 0, 0);
});

test('unary ops match the JS reference on random inputs, NaN and infinities', opts, async () => {
  const rng = new Rng('native-unary');
  const ops: [string, (x: tf.Tensor) => tf.Tensor, number][] = [
    ['exp', tf.exp, 2e-7],
    ['log', tf.log, 2e-7],
    ['neg', tf.neg, 0],
    ['sqrt', tf.sqrt, 0],
    ['rsqrt', tf.rsqrt, 2e-7],
    ['square', tf.square, 0],
    ['relu', tf.relu, 0],
    ['sigmoid', tf.sigmoid, 4e-7],
    ['tanh', tf.tanh, 2e-7],
    ['abs', tf.abs, 0],
    ['reciprocal', tf.reciprocal, 0],
  ];
  const x = randn(rng, [5, 1001], 20);
  const specials = { shape: [8], data: Float32Array.from([NaN, Infinity, -Infinity, 0, 89, -88, 88.5, -104]) };
  for (const input of [x, specials, { shape: [0], data: new Float32Array(0) }]) {
    for (const [name, op, rtol] of ops) {
      const f = () => op(tensor(input));
      assertClose(await on('native', f), await on('cpu', f), `${name} ${input.shape}`, rtol === 0 ? 0 : 1e-30, rtol);
    }
  }
});

test('transpose matches the JS reference on random shapes and permutations', opts, async () => {
  const rng = new Rng('native-transpose');
  for (let i = 0; i < 40; i++) {
    const rank = 1 + rng.int(5);
    const shape = Array.from({ length: rank }, () => (rng.uniform() < 0.2 ? 1 : 1 + rng.int(7)));
    const perm = rng.permutation(rank);
    const x = randn(rng, shape);
    const f = () => tf.transpose(tensor(x), perm);
    assertClose(await on('native', f), await on('cpu', f), `transpose ${shape} by ${perm}`, 0, 0);
  }
  const attention = randn(rng, [2, 64, 4, 16]);
  const f = () => tf.transpose(tensor(attention), [0, 2, 1, 3]);
  assertClose(await on('native', f), await on('cpu', f), 'attention head split', 0, 0);
  const empty = () => tf.transpose(tf.zeros([0, 3, 2]), [2, 0, 1]);
  assertClose(await on('native', empty), await on('cpu', empty), 'empty transpose', 0, 0);
});

test('gradients of a small network built from the native ops match the JS reference', opts, async () => {
  const rng = new Rng('native-net-grad');
  const x = randn(rng, [4, 6, 10]);
  const w1 = randn(rng, [10, 16], 0.3);
  const b1 = randn(rng, [16]);
  const w2 = randn(rng, [16, 10], 0.3);
  const f = () =>
    tf.grads((xt, a, bias, c) => {
      const h = tf.sigmoid(tf.add(tf.matMul(tf.reshape(xt!, [24, 10]), a!), bias!));
      const g = tf.mul(tf.tanh(h), tf.relu(tf.sub(h, 0.3)));
      const y = tf.reshape(tf.matMul(g, c!), [4, 6, 10]);
      const t = tf.transpose(y, [0, 2, 1]);
      const p = tf.softmax(tf.div(t, tf.sqrt(tf.add(tf.square(t), 1))));
      return tf.sum(tf.mul(tf.log(tf.add(p, 1e-3)), tf.exp(tf.neg(tf.abs(t)))));
    })([tensor(x), tensor(w1), tensor(b1), tensor(w2)]);
  assertClose(await on('native', f), await on('cpu', f), 'network grads', 1e-5, 1e-3);
});

test('float32 tensors cast from bool or int32 (which share the source storage) work in every native kernel', opts, async () => {
  const f = () => {
    const mask = tf.cast(tf.greater(tf.tensor2d([[1, -1, 2], [0, 3, -2]]), 0), 'float32');
    const ints = tf.cast(tf.tensor2d([[1, 2], [3, 4], [5, 6]], undefined, 'int32'), 'float32');
    return [tf.mul(mask, 2.5), tf.exp(mask), tf.matMul(mask, ints), tf.softmax(mask), tf.transpose(ints), tf.add(ints, tf.ones([2]))];
  };
  assertClose(await on('native', f), await on('cpu', f), 'cast storage', 0, 1e-6);
});
