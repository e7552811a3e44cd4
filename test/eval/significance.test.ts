import { test } from 'node:test';
import assert from 'node:assert/strict';
import { averageSummaries, catalogMetadata, createMmebResult, summarizeMmeb, type DatasetCatalog, type MmebSummary } from '../../src/eval/aggregate.js';
import { comparisonHtml, comparisonMarkdown, formatInterval } from '../../src/eval/report.js';
import { bitString, pairedBootstrap, parseRowHits, percentileInterval, rowHitsString, type RowHits } from '../../src/eval/significance.js';
import { parseSuiteResult, suiteDeltaIntervals } from '../../src/eval/suite-eval.js';
import { UnimeError } from '../../src/errors.js';
import { Rng } from '../../src/runtime/rng.js';

const CATALOG: DatasetCatalog = {
  name: 'Synthetic MMEB',
  datasets: [
    { name: 'A', metaTask: 'Classification', distribution: 'IND' },
    { name: 'B', metaTask: 'VQA', distribution: 'IND' },
    { name: 'C', metaTask: 'Retrieval', distribution: 'OOD' },
  ],
};

/** A summary whose hit@1 per dataset is the mean of the given hits, and those hits. */
function side(label: string, hits: Record<string, Uint8Array>): { label: string; summary: MmebSummary; rowHits: RowHits } {
  const metrics = Object.fromEntries(
    Object.entries(hits).map(([k, h]) => [k, { 'hit@1': h.reduce((a, b) => a + b, 0) / h.length, num_pred: h.length, num_data: h.length }]),
  );
  const summary = summarizeMmeb(createMmebResult(label, metrics, { dataset_catalog: catalogMetadata(CATALOG) }));
  return { label, summary, rowHits: new Map(Object.entries(hits)) };
}

function randomHits(rng: Rng, n: number, p: number): Uint8Array {
  return Uint8Array.from({ length: n }, () => (rng.uniform() < p ? 1 : 0));
}

test('row hits: one character per row, read back; malformed entries name the file and dataset', () => {
  const s = rowHitsString(Int32Array.from([1, 3, 1, 2]));
  assert.equal(s, '1010');
  assert.deepEqual([...parseRowHits({ A: s }, 'x.json')!.get('A')!], [1, 0, 1, 0]);
  assert.equal(parseRowHits(undefined, 'x.json'), null);
  assert.throws(
    () => parseRowHits({ A: '10x1' }, 'run/mmeb-summary.json'),
    (e: unknown) => e instanceof UnimeError && e.file === 'run/mmeb-summary.json' && e.field === 'row_hits.A',
  );
  assert.throws(() => parseRowHits(['1'], 'x.json'), (e: unknown) => e instanceof UnimeError && e.field === 'row_hits');
});

test('pairedBootstrap: identical results give [0, 0]; a model right where the other is wrong on every row gives exactly that difference', () => {
  const rng = new Rng(1);
  const a = { A: randomHits(rng, 50, 0.5), B: randomHits(rng, 40, 0.3), C: randomHits(rng, 60, 0.6) };
  const same = pairedBootstrap(side('x', a), side('y', a))!;
  for (const iv of [...same.datasets.values(), ...same.aggregates.values()]) assert.deepEqual(iv, { low: 0, high: 0 });
  assert.equal(same.aggregates.size, 7); // overall, IND, OOD, four meta-tasks... Grounding has no dataset here
  assert.ok(!same.aggregates.has('Grounding'));

  const flipped = Object.fromEntries(Object.entries(a).map(([k, h]) => [k, h.map((x) => 1 - x)]));
  const zeros = { A: new Uint8Array(50), B: new Uint8Array(40), C: new Uint8Array(60) };
  const ones = Object.fromEntries(Object.entries(zeros).map(([k, h]) => [k, h.map(() => 1)]));
  const all = pairedBootstrap(side('zeros', zeros), side('ones', ones))!;
  assert.deepEqual(all.datasets.get('B'), { low: 100, high: 100 });
  assert.deepEqual(all.aggregates.get('overall'), { low: 100, high: 100 });
  // Flipping every row: each resample's difference is 100 - 2 * (the resampled score), so the interval
  // holds the observed difference and is twice as wide as the score's own spread would make it.
  const f = pairedBootstrap(side('a', a), side('flipped', flipped))!;
  const iv = f.datasets.get('A')!;
  const score = (100 * a.A.reduce((x, y) => x + y, 0)) / a.A.length;
  assert.ok(iv.low < 100 - 2 * score && 100 - 2 * score < iv.high, JSON.stringify(iv));
  const sd = 2 * 100 * Math.sqrt((score / 100) * (1 - score / 100) / a.A.length);
  assert.ok(Math.abs(iv.high - iv.low - 2 * 1.96 * sd) < 0.3 * 2 * 1.96 * sd, JSON.stringify(iv));
});

test('pairedBootstrap agrees with the normal approximation of a paired difference of proportions', () => {
  // Independent reference: for paired 0/1 outcomes the difference of means has variance
  // (p10 + p01 - (p10 - p01)^2) / n (McNemar's setting); 95 % interval = d +- 1.96 sd for large n.
  const rng = new Rng(7);
  const n = 2000;
  const base = randomHits(rng, n, 0.4);
  const cand = Uint8Array.from(base, (x) => (rng.uniform() < 0.2 ? 1 - x : x) | (rng.uniform() < 0.05 ? 1 : 0));
  let p10 = 0;
  let p01 = 0;
  for (let i = 0; i < n; i++) {
    if (cand[i]! > base[i]!) p10++;
    if (cand[i]! < base[i]!) p01++;
  }
  p10 /= n;
  p01 /= n;
  const d = 100 * (p10 - p01);
  const sd = 100 * Math.sqrt((p10 + p01 - (p10 - p01) ** 2) / n);
  const hits = (h: Uint8Array) => ({ A: h, B: h.subarray(0, 100), C: h.subarray(100, 200) });
  const iv = pairedBootstrap(side('base', hits(base)), side('cand', hits(cand)), { resamples: 4000, seed: 3 })!.datasets.get('A')!;
  assert.ok(Math.abs(iv.low - (d - 1.96 * sd)) < 0.25 * sd, `${iv.low} vs ${d - 1.96 * sd}`);
  assert.ok(Math.abs(iv.high - (d + 1.96 * sd)) < 0.25 * sd, `${iv.high} vs ${d + 1.96 * sd}`);
  // Pairing matters: an unpaired interval would be much wider (sd of two independent proportions).
  const unpairedSd = 100 * Math.sqrt((0.4 * 0.6 + 0.45 * 0.55) / n);
  assert.ok(iv.high - iv.low < 0.8 * 2 * 1.96 * unpairedSd);
});

test('pairedBootstrap: aggregates are the summaries\' means of resampled datasets; same seed same interval; stale or other metrics give none', () => {
  const rng = new Rng(2);
  const b = { A: randomHits(rng, 80, 0.3), B: randomHits(rng, 80, 0.3), C: randomHits(rng, 80, 0.3) };
  const c = { A: randomHits(rng, 80, 0.6), B: b.B, C: randomHits(rng, 80, 0.5) };
  const r1 = pairedBootstrap(side('b', b), side('c', c), { seed: 5 })!;
  const r2 = pairedBootstrap(side('b', b), side('c', c), { seed: 5 })!;
  assert.deepEqual(r1, r2);
  // A meta-task with one dataset resamples exactly that dataset's rows: the same interval.
  assert.deepEqual(r1.aggregates.get('Classification'), r1.datasets.get('A'));
  assert.deepEqual(r1.aggregates.get('ood'), r1.datasets.get('C'));
  // B is the same on both sides: its interval is [0, 0]; the overall mean of three averages it in.
  assert.deepEqual(r1.datasets.get('B'), { low: 0, high: 0 });
  const overall = r1.aggregates.get('overall')!;
  const sb = side('b', b).summary.overall.mean!;
  const sc = side('c', c).summary.overall.mean!;
  assert.ok(overall.low < sc - sb && sc - sb < overall.high);

  // Row hits that do not average to the score (left from another run) are not used.
  const stale = side('c', c);
  const wrong = { ...stale, rowHits: new Map([...stale.rowHits].map(([k, h]) => [k, k === 'A' ? b.A : h])) };
  const r3 = pairedBootstrap(side('b', b), wrong)!;
  assert.ok(!r3.datasets.has('A') && r3.datasets.has('C'));
  assert.equal(r3.aggregates.size, 0, 'an aggregate needs every scored dataset');
  // No hits on one side, or another metric: nothing.
  assert.equal(pairedBootstrap(side('b', b), { summary: side('c', c).summary }), null);
  const hit5 = { summary: { ...side('c', c).summary, metric: 'hit@5' }, rowHits: side('c', c).rowHits };
  assert.equal(pairedBootstrap(side('b', b), hit5), null);
  assert.throws(() => pairedBootstrap(side('b', b), side('c', c), { level: 1.5 }), (e: unknown) => e instanceof UnimeError && e.field === 'level');
});

test('percentileInterval interpolates between order statistics', () => {
  const xs = Float64Array.from({ length: 101 }, (_, i) => 100 - i);
  const close = (iv: { low: number; high: number }, low: number, high: number) => assert.ok(Math.abs(iv.low - low) < 1e-9 && Math.abs(iv.high - high) < 1e-9, JSON.stringify(iv));
  close(percentileInterval(xs, 0.9), 5, 95);
  close(percentileInterval(Float64Array.from([10, 0]), 0.5), 2.5, 7.5);
});

test('comparison reports put the interval after each delta, and explain it, only when both sides have row hits', () => {
  const rng = new Rng(4);
  const b = side('base', { A: randomHits(rng, 100, 0.2), B: randomHits(rng, 100, 0.2), C: randomHits(rng, 100, 0.2) });
  const c = side('stage 2', { A: randomHits(rng, 100, 0.7), B: randomHits(rng, 100, 0.2), C: randomHits(rng, 100, 0.5) });
  const iv = pairedBootstrap(b, c)!;
  const md = comparisonMarkdown([b, c]);
  const overall = formatInterval(iv.aggregates.get('overall')!);
  assert.match(md, new RegExp(`\\| Overall \\(mean of 3 datasets\\) \\| [0-9.]+ \\| [0-9.]+ \\| \\+[0-9.]+ ${overall.replace(/[[\]+.]/g, '\\$&')} \\|`));
  assert.match(md, /\| A \| Classification \| IND \| [0-9.]+ \| [0-9.]+ \| \+[0-9.]+ \[\+[0-9.]+, \+[0-9.]+\] \|/);
  assert.match(md, /95 % interval from a paired bootstrap over the evaluation rows \(2000 resamples/);
  assert.match(comparisonHtml([b, c]), /\+[0-9.]+ \[\+[0-9.]+, \+[0-9.]+\]<\/td>/);
  const plain = comparisonMarkdown([{ label: 'base', summary: b.summary }, c]);
  assert.doesNotMatch(plain, /\[[-+0-9.]+, [-+0-9.]+\]/);
  assert.doesNotMatch(plain, /bootstrap/);
  assert.equal(formatInterval({ low: -0.04, high: 12.25 }), '[0.0, +12.2]');
});

test('suite results: row outcomes read back with their numbers, and the same bootstrap as MMEB (same rows, same seed, same interval)', () => {
  const rng = new Rng(9);
  const hitsB = randomHits(rng, 60, 0.3);
  const hitsC = randomHits(rng, 60, 0.5);
  const pct = (h: Uint8Array) => (100 * h.reduce((a, b) => a + b, 0)) / h.length;
  const zs = (top1: Uint8Array) => parseSuiteResult({ suite: 'zeroshot', model: 'm', scores: { top1: pct(top1), top5: 100, row_hits: { top1: bitString(top1), top5: '1'.repeat(60) } } });
  const b = zs(hitsB);
  const c = zs(hitsC);
  assert.ok(b.rows && c.rows);
  const suite = suiteDeltaIntervals(b, c, { seed: 11 })!;
  // One stratum, the same draws: top-1's interval is the MMEB interval of a dataset holding these hits.
  const one: DatasetCatalog = { name: 'one', datasets: [{ name: 'A', metaTask: 'Classification', distribution: 'IND' }] };
  const mm = (h: Uint8Array) => ({
    summary: summarizeMmeb(createMmebResult('x', { A: { 'hit@1': pct(h) / 100 } }, { dataset_catalog: catalogMetadata(one) })),
    rowHits: new Map([['A', h]]),
  });
  assert.deepEqual(suite.intervals.get('top-1'), pairedBootstrap(mm(hitsB), mm(hitsC), { seed: 11 })!.datasets.get('A'));
  assert.deepEqual(suite.intervals.get('top-5'), { low: 0, high: 0 });

  // Row outcomes that do not give the file's numbers (another run's) are dropped: no interval.
  const stale = parseSuiteResult({ suite: 'zeroshot', scores: { top1: 50, top5: 100, row_hits: { top1: bitString(hitsB), top5: '1'.repeat(60) } } });
  assert.equal(stale.rows, undefined);
  assert.equal(suiteDeltaIntervals(b, stale), null);
  // SugarCrepe: a stratum per subset; the mean's interval covers the observed mean difference.
  const sc = (a: Uint8Array, s: Uint8Array) =>
    parseSuiteResult({ suite: 'sugarcrepe', scores: { subsets: { add_att: { accuracy: pct(a), row_hits: bitString(a) }, swap_att: { accuracy: pct(s), row_hits: bitString(s) } }, mean: (pct(a) + pct(s)) / 2 } });
  const x = sc(hitsB, hitsC);
  const y = sc(hitsC, hitsC);
  const iv = suiteDeltaIntervals(x, y)!.intervals;
  assert.deepEqual(iv.get('swap_att'), { low: 0, high: 0 });
  const d = (pct(hitsC) - pct(hitsB)) / 2;
  assert.ok(iv.get('mean of 2 subsets')!.low < d && d < iv.get('mean of 2 subsets')!.high);
  assert.throws(() => parseSuiteResult({ suite: 'zeroshot', scores: { top1: 'high' } }, 'z.json'), (e: unknown) => e instanceof UnimeError && e.file === 'z.json' && e.field === 'scores.top1');
});

/** Several runs of one model as one side: the averaged summary and each run's hits. */
function seeds(label: string, runs: Record<string, Uint8Array>[]): { label: string; summary: MmebSummary; seedHits: Map<string, Uint8Array[]> } {
  const sides = runs.map((h, i) => side(`${label}-${i}`, h));
  const summary = averageSummaries(sides.map((s) => s.summary), sides.map((s) => s.label));
  return { label, summary, seedHits: new Map(Object.keys(runs[0]!).map((k) => [k, runs.map((r) => r[k]!)])) };
}

test('runs of several seeds as one column: scores are the runs\' means, intervals resample the same rows for every run', () => {
  const rng = new Rng(5);
  const base = { A: randomHits(rng, 50, 0.4), B: randomHits(rng, 40, 0.3), C: randomHits(rng, 60, 0.5) };
  const runs = [0, 1, 2].map(() => ({ A: randomHits(rng, 50, 0.6), B: randomHits(rng, 40, 0.5), C: randomHits(rng, 60, 0.7) }));
  const group = seeds('stage 2', runs);
  // each dataset's score is the mean of the runs' scores, the aggregates follow
  const mean = (k: 'A' | 'B' | 'C') => runs.reduce((a, r) => a + (100 * r[k].reduce((x, y) => x + y, 0)) / r[k].length, 0) / 3;
  assert.ok(Math.abs(group.summary.datasets.find((d) => d.name === 'B')!.score! - mean('B')) < 1e-9);
  assert.ok(Math.abs(group.summary.overall.mean! - (mean('A') + mean('B') + mean('C')) / 3) < 1e-9);
  assert.match(group.summary.modelName, /mean of 3 runs/);

  // one run as a group is exactly that run, intervals included
  const single = pairedBootstrap(side('base', base), side('one', runs[0]!))!;
  const asGroup = pairedBootstrap(side('base', base), seeds('one', [runs[0]!]))!;
  assert.deepEqual(asGroup.aggregates.get('overall'), single.aggregates.get('overall'));
  // three copies of one run: the same mean, so the same intervals
  const copies = pairedBootstrap(side('base', base), seeds('copies', [runs[0]!, runs[0]!, runs[0]!]))!;
  assert.deepEqual(copies.datasets.get('C'), single.datasets.get('C'));

  // the group's interval holds its own Δ and differs from any single run's
  const iv = pairedBootstrap(side('base', base), group)!;
  const delta = group.summary.overall.mean! - side('base', base).summary.overall.mean!;
  const o = iv.aggregates.get('overall')!;
  assert.ok(o.low < delta && delta < o.high, `${delta} in [${o.low}, ${o.high}]`);
  assert.notDeepEqual(o, single.aggregates.get('overall'));
  // hits that do not average to the group's scores (a run left out) give no interval for that dataset
  const stale = { ...group, seedHits: new Map([...group.seedHits].map(([k, v]) => [k, k === 'A' ? v.slice(0, 2) : v])) };
  const partial = pairedBootstrap(side('base', base), stale)!;
  assert.ok(!partial.datasets.has('A') && partial.datasets.has('B'));
  assert.equal(partial.aggregates.size, 0);

  // the report says what a mean column is
  const md = comparisonMarkdown([side('base', base), group]);
  assert.match(md, /mean of several runs \(seeds\)/);
});

test('averageSummaries refuses runs scored on other datasets, naming the file', () => {
  const rng = new Rng(6);
  const a = side('a', { A: randomHits(rng, 10, 0.5), B: randomHits(rng, 10, 0.5), C: randomHits(rng, 10, 0.5) });
  const other: DatasetCatalog = { name: 'Other', datasets: [{ name: 'Z', metaTask: 'Classification', distribution: 'IND' }] };
  const z = summarizeMmeb(createMmebResult('z', { Z: { 'hit@1': 0.5, num_pred: 2, num_data: 2 } }, { dataset_catalog: catalogMetadata(other) }));
  assert.throws(() => averageSummaries([a.summary, z], ['s0/mmeb.json', 's1/mmeb.json']), (e: unknown) => e instanceof UnimeError && e.file === 's1/mmeb.json');
});
