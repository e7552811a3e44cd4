/**
 * The false-negative filter and top-k selection on hand-made similarity matrices, where the expected
 * indices can be read off the numbers.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tf } from '../../src/runtime/tf.js';
import { useDevice } from '../../src/runtime/devices.js';
import { hardNegativeInfoNce, selectHardNegatives } from '../../src/losses/index.js';

const rowsOf = (idx: Int32Array, k: number): number[][] => Array.from({ length: idx.length / k }, (_, i) => Array.from(idx.subarray(i * k, (i + 1) * k)));

test('filter: candidates above cos(q, c+) + beta are dropped, the threshold itself and the positive are not picked', () => {
  // Row 0: positive col 0 at 0.5 -> alpha 0.6. col 1 = 0.6 exactly (kept: the rule excludes only > alpha),
  // col 2 = 0.61 (filtered), col 3 = 0.5 (a duplicate of the positive: kept), col 4 = 0.95 (filtered), col 5 = -0.2.
  const sim = [0.5, 0.6, 0.61, 0.5, 0.95, -0.2];
  const sel = selectHardNegatives(sim, 1, 6, [0], { beta: 0.1, k: 3 });
  assert.deepEqual(rowsOf(sel.indices, 3), [[1, 3, 5]]);
  assert.deepEqual(Array.from(sel.filteredCounts), [2]);
  assert.deepEqual(Array.from(sel.validCounts), [3]);
  // beta 0: the duplicate at exactly cos(q, c+) survives, 0.6 does not.
  const strict = selectHardNegatives(sim, 1, 6, [0], { beta: 0, k: 2 });
  assert.deepEqual(rowsOf(strict.indices, 2), [[3, 5]]);
  // beta -0.1: the duplicate is filtered as well.
  const negative = selectHardNegatives(sim, 1, 6, [0], { beta: -0.1, k: 2 });
  assert.deepEqual(rowsOf(negative.indices, 2), [[5, 5]]);
  assert.deepEqual(Array.from(negative.filteredCounts), [4]);
});

test('top-k: highest similarities first, ties by lower index, positives anywhere in the row', () => {
  const sim = [
    // row 0, positive col 2 (0.9): everything valid
    0.1, 0.3, 0.9, 0.3, 0.7, -0.5,
    // row 1, positive col 5 (0.4): alpha 0.5 filters col 0 (0.8) and col 3 (0.55)
    0.8, 0.2, 0.45, 0.55, 0.2, 0.4,
  ];
  const sel = selectHardNegatives(sim, 2, 6, [2, 5], { beta: 0.1, k: 3 });
  assert.deepEqual(rowsOf(sel.indices, 3), [[4, 1, 3], [2, 1, 4]]);
  assert.deepEqual(Array.from(sel.filteredCounts), [0, 2]);
});

test('fewer than k valid negatives: the ranked valid list repeats cyclically; none: the row is all -1', () => {
  const sim = [
    // row 0, positive col 0 (0.2, alpha 0.3): valid cols 2 (0.1) and 3 (-0.4); col 1 (0.9) is filtered
    0.2, 0.9, 0.1, -0.4,
    // row 1, positive col 1 (-0.9, alpha -0.8): nothing valid
    0.0, -0.9, 0.5, 0.3,
    // row 2, positive col 2: one valid negative
    0.95, 0.95, 0.6, 0.69,
  ];
  const sel = selectHardNegatives(sim, 3, 4, [0, 1, 2], { beta: 0.1, k: 5 });
  assert.deepEqual(rowsOf(sel.indices, 5), [[2, 3, 2, 3, 2], [-1, -1, -1, -1, -1], [3, 3, 3, 3, 3]]);
  assert.deepEqual(Array.from(sel.validCounts), [2, 0, 1]);
  assert.deepEqual(Array.from(sel.filteredCounts), [1, 3, 2]);
});

test('selection rejects malformed input', () => {
  assert.throws(() => selectHardNegatives([0, 1], 1, 2, [0], { k: 0 }), /k must be a positive integer/);
  assert.throws(() => selectHardNegatives([0, 1, 2], 1, 2, [0]), /3 similarities for a \[1, 2\] matrix/);
  assert.throws(() => selectHardNegatives([0, 1], 1, 2, [2]), /positive 2 of query 0 is not a candidate index/);
});

test('hardNegativeInfoNce: the loss is InfoNCE over exactly the selected similarities', async () => {
  await useDevice('cpu');
  // Unit vectors in 2-D: angles give the cosines directly.
  const angles = [0, 1.2, 0.4, 2.0, 0.2];
  const q = tf.tensor2d([[1, 0]]);
  const c = tf.tensor2d(angles.map((a) => [Math.cos(a), Math.sin(a)]));
  const cos = angles.map((a) => Math.cos(a));
  const tau = 0.1;
  const { loss, stats, selection } = hardNegativeInfoNce(q, c, { k: 2, beta: -0.01, temperature: tau });
  // positive col 0 (cos 1, alpha 0.99): col 4 (cos 0.98) is valid, so is col 2 (0.92); col 1 and 3 are easier.
  assert.deepEqual(Array.from(selection.indices), [4, 2]);
  const logits = [cos[0]!, cos[4]!, cos[2]!].map((x) => x / tau);
  const lse = Math.log(logits.reduce((s, x) => s + Math.exp(x), 0));
  assert.ok(Math.abs(loss.dataSync()[0]! - (lse - logits[0]!)) < 1e-5);
  assert.equal(stats.falseNegativeRate, 0);
  assert.equal(stats.rowsShortOfNegatives, 0);
  tf.dispose([q, c, loss]);
});

test('hardNegativeInfoNce: every row empty gives a zero loss with zero gradients and a full count', async () => {
  await useDevice('cpu');
  const q = tf.tensor2d([[1, 0], [0, 1]]);
  const c = tf.tensor2d([[-1, 0.1], [0.1, -1], [1, 1]]);
  const before = tf.memory().numTensors;
  const { value, grads } = tf.valueAndGrads((a: tf.Tensor, b: tf.Tensor) => hardNegativeInfoNce(a, b, { k: 2 }).loss as tf.Scalar)([q, c]);
  assert.equal(value.dataSync()[0], 0);
  for (const g of grads) assert.ok(g.dataSync().every((x) => x === 0));
  const { loss, stats } = hardNegativeInfoNce(q, c, { k: 2 });
  assert.equal(stats.rowsWithoutNegatives, 2);
  assert.equal(stats.rowsInLoss, 0);
  assert.equal(stats.falseNegativeRate, 1);
  assert.ok(Number.isNaN(stats.meanHardNegativeSimilarity));
  tf.dispose([value, ...grads, loss]);
  assert.equal(tf.memory().numTensors, before);
  tf.dispose([q, c]);
});

test('shortRows mask: a short row contrasts its positive with its m valid negatives only, as a hand-computed softmax', () => {
  useDevice('cpu');
  // Unit vectors in 2D at chosen angles give chosen cosines.
  const at = (deg: number) => [Math.cos((deg * Math.PI) / 180), Math.sin((deg * Math.PI) / 180)];
  const q = tf.tensor2d([at(0)]);
  // positive at 60 deg (cos 0.5), a filtered candidate at 10 deg (cos 0.985 > 0.6), one valid negative at 90 deg (cos 0).
  const c = tf.tensor2d([at(60), at(10), at(90)]);
  const tau = 0.1;
  const mask = hardNegativeInfoNce(q, c, { temperature: tau, beta: 0.1, k: 3, shortRows: 'mask' });
  const dup = hardNegativeInfoNce(q, c, { temperature: tau, beta: 0.1, k: 3 });
  const s = [Math.cos(Math.PI / 3), Math.cos(Math.PI / 2)];
  const expectMask = -(s[0]! / tau - Math.log(Math.exp(s[0]! / tau) + Math.exp(s[1]! / tau)));
  const expectDup = -(s[0]! / tau - Math.log(Math.exp(s[0]! / tau) + 3 * Math.exp(s[1]! / tau)));
  assert.ok(Math.abs(mask.loss.dataSync()[0]! - expectMask) < 1e-5, `mask ${mask.loss.dataSync()[0]} vs ${expectMask}`);
  assert.ok(Math.abs(dup.loss.dataSync()[0]! - expectDup) < 1e-5, `duplicate ${dup.loss.dataSync()[0]} vs ${expectDup}`);
  assert.ok(Math.abs(mask.stats.meanHardNegativeSimilarity - s[1]!) < 1e-6);
  assert.throws(() => hardNegativeInfoNce(q, c, { shortRows: 'drop' as 'mask' }), /shortRows must be/);
  for (const t of [q, c, mask.loss, dup.loss]) t.dispose();
});
