import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tf } from '../../src/runtime/tf.js';
import { UnimeError } from '../../src/errors.js';
import { l2Normalize, lastTokenPool, meanPool, poolEmbeddings } from '../../src/models/pooling.js';
import { lastTokenIndices, positionIdsFromMask, readMask } from '../../src/models/mask.js';
import { countLeaks } from '../../src/runtime/memory.js';

// hidden[r, j, :] = [100 r + j, -(100 r + j)]
const hidden = () => tf.tensor3d(Array.from({ length: 2 }, (_, r) => Array.from({ length: 4 }, (_, j) => [100 * r + j, -(100 * r + j)])));

test('last-token pooling takes the last unmasked position, for left and right padding', () => {
  tf.tidy(() => {
    const left = [[0, 0, 1, 1], [1, 1, 1, 1]];
    const right = [[1, 1, 0, 0], [1, 1, 1, 0]];
    assert.deepEqual(lastTokenPool(hidden(), left).arraySync(), [[3, -3], [103, -103]]);
    assert.deepEqual(lastTokenPool(hidden(), right).arraySync(), [[1, -1], [102, -102]]);
    // a mask given as a tensor (int32 or float) reads the same
    assert.deepEqual(lastTokenPool(hidden(), tf.tensor2d(right, undefined, 'int32')).arraySync(), [[1, -1], [102, -102]]);
    assert.deepEqual(lastTokenPool(hidden(), tf.tensor2d(right)).arraySync(), [[1, -1], [102, -102]]);
  });
});

test('mean pooling averages over the mask only', () => {
  tf.tidy(() => {
    const out = meanPool(hidden(), [[0, 1, 1, 0], [1, 1, 1, 1]]).arraySync();
    assert.deepEqual(out, [[1.5, -1.5], [101.5, -101.5]]);
  });
});

test('L2 normalisation gives unit rows and leaves zero rows at zero', () => {
  tf.tidy(() => {
    const out = l2Normalize(tf.tensor2d([[3, 4], [0, 0]])).arraySync() as number[][];
    assert.ok(Math.abs(out[0]![0]! - 0.6) < 1e-7 && Math.abs(out[0]![1]! - 0.8) < 1e-7);
    assert.deepEqual(out[1], [0, 0]);
    const e = poolEmbeddings(hidden(), [[1, 1, 1, 1], [0, 1, 1, 1]], 'mean');
    for (const row of e.arraySync() as number[][]) assert.ok(Math.abs(Math.hypot(...row) - 1) < 1e-6);
  });
});

test('pooling rejects empty rows and mismatched shapes, and leaks nothing', async () => {
  tf.tidy(() => {
    assert.throws(() => lastTokenPool(hidden(), [[0, 0, 0, 0], [1, 1, 1, 1]]), (e: unknown) => e instanceof UnimeError && /row 0 has no tokens/.test(e.message));
    assert.throws(() => meanPool(hidden(), [[1, 1, 1], [1, 1, 1]]), /do not match the mask/);
  });
  const h = hidden();
  const { leaked, result } = await countLeaks(() => poolEmbeddings(h, [[1, 1, 0, 0], [1, 1, 1, 1]]));
  assert.equal(leaked, 0);
  tf.dispose([h, result]);
});

test('position ids follow HF for padded batches: cumsum(mask) - 1, clamped at 0', () => {
  const m = readMask([[0, 0, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]);
  assert.deepEqual([...positionIdsFromMask(m)], [0, 0, 0, 1, 2, 0, 1, 2, 2, 2, 0, 1, 2, 3, 4]);
  assert.deepEqual(lastTokenIndices(m), [4, 2, 4]);
  assert.throws(() => readMask([[1, 1], [1]]), /same length/);
});

test('pooled embeddings are differentiable in the hidden states', () => {
  tf.tidy(() => {
    const h = tf.randomNormal([2, 3, 4], 0, 1, 'float32', 3);
    const mask = [[0, 1, 1], [1, 1, 0]];
    const g = tf.grad((x: tf.Tensor) => tf.sum(poolEmbeddings(x, mask, 'last')))(h);
    const gv = g.arraySync() as number[][][];
    // only the pooled positions get gradient
    assert.ok(gv[0]![2]!.some((v) => v !== 0) && gv[0]![0]!.every((v) => v === 0) && gv[0]![1]!.every((v) => v === 0));
    assert.ok(gv[1]![1]!.some((v) => v !== 0) && gv[1]![2]!.every((v) => v === 0));
  });
});
