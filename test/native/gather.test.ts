import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tf } from '../../src/runtime/tf.js';
import { useDevice } from '../../src/runtime/devices.js';
import { Rng } from '../../src/runtime/rng.js';
import { assertClose, on, randn, skipNative, tensor } from './conformance.js';

const opts = { skip: skipNative };

test('gather matches the JS reference on random shapes, axes and index shapes', opts, async () => {
  const rng = new Rng('native-gather');
  for (let i = 0; i < 40; i++) {
    const rank = 1 + rng.int(3);
    const shape = Array.from({ length: rank }, () => 1 + rng.int(6));
    const axis = rng.int(rank);
    const idxShape = Array.from({ length: rng.int(3) }, () => rng.int(5));
    const n = idxShape.reduce((a, b) => a * b, 1);
    const idx = Int32Array.from({ length: n }, () => rng.int(shape[axis]!));
    const x = randn(rng, shape);
    const f = () => tf.gather(tensor(x), tf.tensor(idx, idxShape, 'int32'), axis);
    assertClose(await on('native', f), await on('cpu', f), `gather ${shape} axis ${axis} idx ${idxShape}`, 0, 0);
  }
});

test('embedding lookup gradients (gather -> unsortedSegmentSum) match the JS reference', opts, async () => {
  const rng = new Rng('native-gather-grad');
  for (const [vocab, dim, tokens] of [
    [50, 8, 30],
    [7, 33, 100],
    [300, 16, 6],
  ] as const) {
    const table = randn(rng, [vocab, dim]);
    const ids = Int32Array.from({ length: tokens }, () => rng.int(vocab));
    const w = randn(rng, [2, tokens / 2, dim]);
    const f = () =>
      tf.grad((t) => tf.sum(tf.mul(tf.reshape(tf.gather(t, tf.tensor1d(ids, 'int32')), [2, tokens / 2, dim]), tensor(w))))(tensor(table));
    assertClose(await on('native', f), await on('cpu', f), `embedding grad vocab ${vocab} dim ${dim} tokens ${tokens}`, 1e-5, 1e-5);
  }
  const seg = () => tf.unsortedSegmentSum(tf.tensor2d([[1, 2], [3, 4], [5, 6]]), tf.tensor1d([2, 0, 2], 'int32'), 4);
  assertClose(await on('native', seg), await on('cpu', seg), 'unsortedSegmentSum', 0, 0);
});

test('gather with an index out of range fails as on cpu', opts, async () => {
  await useDevice('native');
  assert.throws(() => tf.gather(tf.tensor1d([1, 2, 3]), tf.tensor1d([3], 'int32')), /GatherV2: the index value 3 is not in \[0, 2\]/);
});
