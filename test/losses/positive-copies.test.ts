/**
 * Copies of a positive in the batch (the same class label or short answer for several rows, one image
 * listed twice): with `candidateIds` both stage-2 losses leave them out of the row's negatives. The
 * expected values are softmaxes computed here by hand over the columns that should remain.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tf } from '../../src/runtime/tf.js';
import { hardNegativeInfoNce, inbatchInfoNce, selectHardNegatives } from '../../src/losses/index.js';
import '../../src/recipes/index.js'; // registers the stage kinds the trainer attaches to
import { contentIds } from '../../src/train/unime-hardneg.js';

/** Row-major cosine similarities of two row-major matrices (rows L2-normalised here). */
function cosines(q: number[][], c: number[][]): number[][] {
  const unit = (v: number[]) => {
    const n = Math.hypot(...v);
    return v.map((x) => x / n);
  };
  const qu = q.map(unit), cu = c.map(unit);
  return qu.map((a) => cu.map((b) => a.reduce((s, x, k) => s + x * b[k]!, 0)));
}

/** -log softmax(logits)[0] over the listed logits. */
function nll(logits: number[]): number {
  const m = Math.max(...logits);
  const lse = m + Math.log(logits.reduce((s, x) => s + Math.exp(x - m), 0));
  return lse - logits[0]!;
}

const Q = [
  [1, 0.2, -0.3],
  [0.1, 1, 0.4],
  [-0.5, 0.3, 1],
  [0.7, -0.6, 0.2],
];
const C = [
  [0.9, 0.1, -0.2],
  [0.2, 0.8, 0.5],
  [0.9, 0.1, -0.2], // the same target as row 0's (ids say so; the vectors agree as an encoder's would)
  [0.6, -0.7, 0.1],
];
const IDS = [5, 8, 5, 9];

test('selection: a copy of the positive is neither a negative nor counted as filtered', () => {
  // Row 0, positive col 0 at 0.5: col 3 is the same content (id 7) at the same similarity.
  const sim = [0.5, 0.6, 0.61, 0.5, -0.2];
  const plain = selectHardNegatives(sim, 1, 5, [0], { beta: 0.1, k: 2 });
  assert.deepEqual(Array.from(plain.indices), [1, 3], 'without ids the copy is the second-hardest negative');
  const sel = selectHardNegatives(sim, 1, 5, [0], { beta: 0.1, k: 2, candidateIds: [7, 1, 2, 7, 4] });
  assert.deepEqual(Array.from(sel.indices), [1, 4]);
  assert.deepEqual(Array.from(sel.copyCounts), [1]);
  assert.deepEqual(Array.from(sel.filteredCounts), [1]);
  assert.deepEqual(Array.from(sel.validCounts), [2]);
  assert.throws(() => selectHardNegatives(sim, 1, 5, [0], { candidateIds: [1, 2] }), /candidateIds has 2 entries for 5 candidate columns/);
});

test('inbatchInfoNce: copies of a row positive leave its softmax, other rows are unchanged', () => {
  const tau = 0.1;
  const s = cosines(Q, C);
  const expected =
    [0, 1, 2, 3]
      .map((i) => {
        const keep = [i, ...[0, 1, 2, 3].filter((j) => j !== i && IDS[j] !== IDS[i])];
        return nll(keep.map((j) => s[i]![j]! / tau));
      })
      .reduce((a, b) => a + b, 0) / 4;
  const everything = [0, 1, 2, 3].map((i) => nll([i, ...[0, 1, 2, 3].filter((j) => j !== i)].map((j) => s[i]![j]! / tau))).reduce((a, b) => a + b, 0) / 4;
  const q = tf.tensor2d(Q), c = tf.tensor2d(C);
  const masked = inbatchInfoNce(q, c, { temperature: tau, candidateIds: IDS });
  const plain = inbatchInfoNce(q, c, { temperature: tau });
  const distinct = inbatchInfoNce(q, c, { temperature: tau, candidateIds: [0, 1, 2, 3] });
  assert.ok(Math.abs(masked.dataSync()[0]! - expected) < 1e-5, `${masked.dataSync()[0]} vs ${expected}`);
  assert.ok(Math.abs(plain.dataSync()[0]! - everything) < 1e-5);
  assert.ok(Math.abs(distinct.dataSync()[0]! - everything) < 1e-5, 'distinct ids change nothing');
  assert.ok(expected < everything - 0.1, 'the copies made a difference to check');
  // An extra negative with row 1's id is its positive again.
  const extra = tf.tensor2d([[0.2, 0.8, 0.5], [0, 0, 1]]);
  const withExtra = inbatchInfoNce(q, c, { temperature: tau, extraNegatives: extra, candidateIds: [...IDS, 8, 11] });
  const s2 = cosines(Q, [...C, [0.2, 0.8, 0.5], [0, 0, 1]]);
  const expected2 =
    [0, 1, 2, 3]
      .map((i) => nll([i, ...[0, 1, 2, 3, 4, 5].filter((j) => j !== i && [...IDS, 8, 11][j] !== IDS[i])].map((j) => s2[i]![j]! / tau)))
      .reduce((a, b) => a + b, 0) / 4;
  assert.ok(Math.abs(withExtra.dataSync()[0]! - expected2) < 1e-5);
  assert.throws(() => inbatchInfoNce(q, c, { candidateIds: [1, 2] }), /candidateIds has 2 entries for 4 candidate columns/);
});

test('hardNegativeInfoNce: copies are skipped when picking the k hardest, and gradients stay finite', () => {
  // beta 2 filters nothing, so each row picks the two most similar of the columns that are not its copies
  const tau = 0.05;
  const s = cosines(Q, C);
  const q = tf.variable(tf.tensor2d(Q)), c = tf.tensor2d(C);
  const { value, grads } = tf.variableGrads(() => hardNegativeInfoNce(q, c, { temperature: tau, beta: 2, k: 2, candidateIds: IDS }).loss as tf.Scalar, [q]);
  const r = hardNegativeInfoNce(q, c, { temperature: tau, beta: 2, k: 2, candidateIds: IDS });
  const rows = [0, 1, 2, 3].map((i) => Array.from(r.selection.indices.subarray(i * 2, i * 2 + 2)));
  for (const [i, picked] of rows.entries()) for (const j of picked) assert.notEqual(IDS[j], IDS[i], `row ${i} picked its positive's copy ${j}`);
  assert.deepEqual(Array.from(r.selection.copyCounts), [1, 0, 1, 0]);
  const expected =
    rows
      .map((picked, i) => nll([s[i]![i]!, ...picked.map((j) => s[i]![j]!)].map((x) => x / tau)))
      .reduce((a, b) => a + b, 0) / 4;
  assert.ok(Math.abs(value.dataSync()[0]! - expected) < 1e-4, `${value.dataSync()[0]} vs ${expected}`);
  assert.ok(Array.from(grads[q.name]!.dataSync()).every(Number.isFinite));
  q.dispose();
});

test('contentIds: equal text and image file of one subset share an id; text-only targets match across subsets', () => {
  const ids = contentIds([
    { subset: 0, side: { text: 'red circle', image: '' } },
    { subset: 1, side: { text: 'red circle', image: '' } },
    { subset: 0, side: { text: '<image> crop', image: 'a/1.png' } },
    { subset: 1, side: { text: '<image> crop', image: 'a/1.png' } },
    { subset: 0, side: { text: '<image> crop', image: 'a/1.png' } },
    { subset: 0, side: { text: 'red circle.', image: '' } },
  ]);
  assert.equal(ids[0], ids[1]);
  assert.notEqual(ids[2], ids[3], 'the same relative path in two subsets is two images');
  assert.equal(ids[2], ids[4]);
  assert.notEqual(ids[0], ids[5]);
  assert.equal(new Set(ids).size, 4);
});
