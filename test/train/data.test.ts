// SubsetBatches: sub-batches from one subset each, drawn by size x weight (data.subset_weights), resumable.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Rng } from '../../src/runtime/rng.js';
import { UnimeError } from '../../src/errors.js';
import { SubsetBatches, subsetWeights } from '../../src/train/data.js';
import { mmebTrainDataSchema } from '../../src/recipes/schema.js';

/** Groups of tagged rows: group g holds sizes[g] rows `${g}:${i}`. */
function groups(sizes: number[]): string[][] {
  return sizes.map((n, g) => Array.from({ length: n }, (_, i) => `${g}:${i}`));
}

/** How many sub-batches of `draws` batches came from each group (and that each came from one). */
function subBatchCounts(data: SubsetBatches<string>, draws: number, sub: number, nGroups: number): number[] {
  const counts = new Array<number>(nGroups).fill(0);
  for (let b = 0; b < draws; b++) {
    const batch = data.next();
    for (let k = 0; k < batch.length; k += sub) {
      const from = new Set(batch.slice(k, k + sub).map((r) => Number(r.split(':')[0])));
      assert.equal(from.size, 1, `sub-batch ${k / sub} of batch ${b} mixes groups ${[...from].join(', ')}`);
      counts[[...from][0]!]! += 1;
    }
  }
  return counts;
}

test('SubsetBatches: sub-batches come from groups in proportion to rows x weight; the epoch length ignores weights', () => {
  const sizes = [64, 64, 128, 4];
  const plain = new SubsetBatches(groups(sizes), 8, 4, new Rng('w'));
  const weighted = new SubsetBatches(groups(sizes), 8, 4, new Rng('w'), [1, 3, 1, 5]);
  assert.equal(plain.batchesPerEpoch, Math.floor(260 / 8));
  assert.equal(weighted.batchesPerEpoch, plain.batchesPerEpoch);
  // group 3 (4 rows) does take part: one sub-batch of 4
  const expected = [64, 192, 128, 20].map((x) => x / 404);
  assert.deepEqual(
    weighted.shares.map((x) => x.toFixed(6)),
    expected.map((x) => x.toFixed(6)),
  );
  assert.deepEqual(
    plain.shares.map((x) => x.toFixed(6)),
    [64, 64, 128, 4].map((x) => (x / 260).toFixed(6)),
  );
  const draws = 3000;
  const counts = subBatchCounts(weighted, draws, 4, 4);
  const n = 2 * draws;
  counts.forEach((c, g) => {
    const p = expected[g]!;
    const sd = Math.sqrt(n * p * (1 - p));
    assert.ok(Math.abs(c - n * p) < 4 * sd, `group ${g}: ${c} sub-batches of ${n}, expected ${(n * p).toFixed(0)} +- ${(4 * sd).toFixed(0)}`);
  });
  // and the unweighted sampler does not give group 1 that share
  const plainCounts = subBatchCounts(plain, draws, 4, 4);
  // (shares 0.475 vs 0.246: the weights of the other groups dilute group 1's threefold weight)
  assert.ok(counts[1]! > 1.6 * plainCounts[1]!, `weight 3 should about double group 1's share here: ${counts[1]} vs ${plainCounts[1]}`);
});

test('SubsetBatches: a weighted run resumed from getState() draws the same batches', () => {
  const make = () => new SubsetBatches(groups([40, 24, 16]), 8, 4, new Rng('resume'), [2, 1, 0.5]);
  const a = make();
  for (let i = 0; i < 7; i++) a.next();
  const state = JSON.parse(JSON.stringify(a.getState()));
  const rest = Array.from({ length: 20 }, () => a.next());
  const b = make();
  b.setState(state);
  assert.deepEqual(
    Array.from({ length: 20 }, () => b.next()),
    rest,
  );
});

test('SubsetBatches: weights must be one positive number per group', () => {
  assert.throws(() => new SubsetBatches(groups([8, 8]), 4, 4, new Rng('x'), [1]), /expected 2 positive group weights/);
  assert.throws(() => new SubsetBatches(groups([8, 8]), 4, 4, new Rng('x'), [1, 0]), /expected 2 positive group weights/);
});

test('data.subset_weights: defaults to 1 per subset; unknown names and mixed batches are refused naming the field', () => {
  const data = (over: Record<string, unknown>) => mmebTrainDataSchema.parse({ root: 'r', ...over });
  const names = ['SynCls', 'SynVQA', 'SynGrd'];
  assert.deepEqual(subsetWeights(data({}), names), [1, 1, 1]);
  assert.deepEqual(subsetWeights(data({ sub_batch_size: 8, subset_weights: { SynVQA: 2.5 } }), names), [1, 2.5, 1]);
  assert.throws(
    () => subsetWeights(data({ sub_batch_size: 8, subset_weights: { SynVQA: 2, VQA: 3 } }), names),
    (e: unknown) => e instanceof UnimeError && e.field === 'data.subset_weights.VQA' && /SynCls, SynVQA, SynGrd/.test(e.fix ?? ''),
  );
  assert.throws(
    () => subsetWeights(data({ subset_weights: { SynVQA: 2 } }), names),
    (e: unknown) => e instanceof UnimeError && e.field === 'data.subset_weights' && /sub_batch_size/.test(e.fix ?? ''),
  );
  assert.equal(mmebTrainDataSchema.safeParse({ root: 'r', subset_weights: { SynVQA: 0 } }).success, false);
  assert.equal(mmebTrainDataSchema.safeParse({ root: 'r', subset_weights: { SynVQA: -1 } }).success, false);
});
