import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tf } from '../../src/runtime/tf.js';
import { reducePlan } from '../../src/runtime/native/backend.js';
import { Rng } from '../../src/runtime/rng.js';
import { assertClose, on, randn, skipNative, tensor } from './conformance.js';

const opts = { skip: skipNative };

test('reduce plans merge dims and transpose only when kept and reduced dims interleave', () => {
  assert.deepEqual(reducePlan([4, 5, 6], [2]), { outer: 20, r: 6, inner: 1, perm: null });
  assert.deepEqual(reducePlan([4, 5, 6], [0]), { outer: 1, r: 4, inner: 30, perm: null });
  assert.deepEqual(reducePlan([4, 5, 6], [1]), { outer: 4, r: 5, inner: 6, perm: null });
  assert.deepEqual(reducePlan([4, 1, 5, 6], [0, 1, 2]), { outer: 1, r: 20, inner: 6, perm: null });
  assert.deepEqual(reducePlan([2, 3, 4, 5], [0, 2]), { outer: 15, r: 8, inner: 1, perm: [1, 3, 0, 2] });
});

test('sum, mean, max and min match the JS reference over random axes, keepDims, NaN and empty dims', opts, async () => {
  const rng = new Rng('native-reduce');
  const ops: [string, (x: tf.Tensor, axis: number[], keep: boolean) => tf.Tensor][] = [
    ['sum', (x, a, k) => tf.sum(x, a, k)],
    ['mean', (x, a, k) => tf.mean(x, a, k)],
    ['max', (x, a, k) => tf.max(x, a, k)],
    ['min', (x, a, k) => tf.min(x, a, k)],
  ];
  for (let i = 0; i < 50; i++) {
    const rank = 1 + rng.int(4);
    const shape = Array.from({ length: rank }, () => (rng.uniform() < 0.2 ? 1 : 1 + rng.int(9)));
    const axes = Array.from({ length: rank }, (_, j) => j).filter(() => rng.uniform() < 0.5);
    if (axes.length === 0) axes.push(rng.int(rank));
    const keep = rng.uniform() < 0.5;
    const x = randn(rng, shape, 3);
    if (i % 7 === 0) x.data[rng.int(x.data.length)] = NaN;
    for (const [name, op] of ops) {
      const f = () => op(tensor(x), axes, keep);
      assertClose(await on('native', f), await on('cpu', f), `${name} ${shape} axes ${axes} keepDims ${keep}`, 1e-6, 1e-5);
    }
  }
  const big = randn(rng, [300, 257]);
  for (const axis of [0, 1]) {
    const f = () => [tf.sum(tensor(big), axis), tf.mean(tensor(big), axis), tf.max(tensor(big), axis)];
    assertClose(await on('native', f), await on('cpu', f), `large reduce axis ${axis}`, 1e-5, 1e-5);
  }
  const empty = () => [tf.sum(tf.zeros([3, 0]), 1), tf.mean(tf.zeros([3, 0]), 1), tf.sum(tf.zeros([0, 4]), 1), tf.max(tf.zeros([0, 4]), 1)];
  assertClose(await on('native', empty), await on('cpu', empty), 'empty reductions');
});

test('bias gradients (sum over leading axes) match the JS reference', opts, async () => {
  const rng = new Rng('native-bias-grad');
  const x = randn(rng, [4, 9, 16]);
  const b = randn(rng, [16]);
  const f = () => tf.grad((t) => tf.sum(tf.square(tf.add(tensor(x), t))))(tensor(b));
  assertClose(await on('native', f), await on('cpu', f), 'bias grad', 1e-4, 1e-5);
});
