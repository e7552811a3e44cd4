import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fixture } from '../helpers.js';
import { UnimeError } from '../../src/errors.js';
import {
  type EmbeddingMatrix,
  cosineSimilarity,
  dedupeCandidateRows,
  dedupeItems,
  embeddingMatrix,
  expandRows,
  metricKeys,
  metricsFromRanks,
  rankOfCorrect,
  rankPooled,
  rankRows,
  scorePooled,
  scoreRows,
  stackRows,
} from '../../src/eval/scoring.js';

const m = (rows: number[][], dim?: number): EmbeddingMatrix => stackRows(rows, dim);
const close = (a: number, b: number, msg?: string) => assert.ok(Math.abs(a - b) < 1e-12, `${msg ?? ''} ${a} != ${b}`);
const isErr = (re: RegExp) => (e: unknown) => {
  assert.ok(e instanceof UnimeError, `not a UnimeError: ${e}`);
  assert.match(e.message, re);
  return true;
};

test('cosine similarity, with zero vectors defined as 0', () => {
  assert.equal(cosineSimilarity([1, 0], [0, 1]), 0);
  close(cosineSimilarity([1, 1], [2, 2]), 1);
  close(cosineSimilarity([1, 0], [-3, 0]), -1);
  close(cosineSimilarity([3, 4], [4, 3]), 24 / 25);
  assert.equal(cosineSimilarity([0, 0], [1, 2]), 0);
  assert.equal(cosineSimilarity([1, 2], [0, 0]), 0);
  assert.equal(cosineSimilarity([0, 0], [0, 0]), 0);
  assert.throws(() => cosineSimilarity([1, 2], [1, 2, 3]), isErr(/2 and 3 values/));
});

test('rankOfCorrect: strict wins, the two tie rules, items identical to the answer, NaN', () => {
  assert.equal(rankOfCorrect([0.9, 0.5, 0.1]), 1);
  assert.equal(rankOfCorrect([0.5, 0.9, 0.1]), 2);
  assert.equal(rankOfCorrect([0.1, 0.9, 0.5]), 3);
  // A tie counts against the correct candidate by default ...
  assert.equal(rankOfCorrect([0.5, 0.5, 0.1]), 2);
  assert.equal(rankOfCorrect([0.5, 0.5, 0.5, 0.9]), 4);
  assert.equal(rankOfCorrect([0.5, 0.5, 0.5, 0.9], 'pessimistic'), 4);
  // ... and for it under the optimistic rule (VLM2Vec v1's argmax).
  assert.equal(rankOfCorrect([0.5, 0.5, 0.1], 'optimistic'), 1);
  assert.equal(rankOfCorrect([0.5, 0.5, 0.5, 0.9], 'optimistic'), 2);
  // Entries that are the answer again do not compete.
  assert.equal(rankOfCorrect([0.5, 0.5, 0.1], 'pessimistic', [false, true, false]), 1);
  assert.equal(rankOfCorrect([0.5, 0.5, 0.9], 'pessimistic', [false, true, false]), 2);
  // A single candidate is always rank 1.
  assert.equal(rankOfCorrect([0]), 1);
  // NaN: the correct one ranks last, a NaN competitor below everything.
  assert.equal(rankOfCorrect([NaN, 0.1, 0.2]), 3);
  assert.equal(rankOfCorrect([0.1, NaN, 0.2]), 2);
  assert.throws(() => rankOfCorrect([]), isErr(/no candidates/));
  assert.throws(() => rankOfCorrect([1, 0], 'random' as never), isErr(/unknown tie rule "random"/));
});

// Four query rows with 2, 3, 1 and 6 candidates; the correct candidate ranks 1, 3, 1, 6.
const queries = m([
  [1, 0],
  [0, 1],
  [1, 1],
  [1, 0],
]);
const candidates = [
  m([[1, 0], [0, 1]]),
  m([[1, 0], [0.6, 0.8], [0, 1]]),
  m([[5, -1]]),
  m([[0, 1], [1, 0.1], [1, 0.2], [1, 0.3], [1, 0.4], [1, 0.5]]),
];

test('ranks on hand-made embeddings with varying candidate counts', () => {
  assert.deepEqual([...rankRows(queries, candidates)], [1, 3, 1, 6]);
  assert.deepEqual([...rankRows(queries, candidates, { tieRule: 'optimistic' })], [1, 3, 1, 6]);
});

test('metrics of ranks 1, 3, 1, 6 by hand, in VLM2Vec\'s key order', () => {
  const got = scoreRows(queries, candidates);
  assert.deepEqual(Object.keys(got), [...metricKeys([1, 5, 10]), 'num_pred', 'num_data']);
  assert.equal(got['hit@1'], 0.5);
  assert.equal(got['hit@5'], 0.75);
  assert.equal(got['hit@10'], 1);
  close(got['mrr@10']!, (1 + 1 / 3 + 1 + 1 / 6) / 4);
  close(got['mrr@5']!, (1 + 1 / 3 + 1) / 4);
  close(got['mrr@1']!, 0.5);
  close(got['map@10']!, got['mrr@10']!);
  close(got['ndcg_linear@5']!, (1 + 1 / Math.log2(4) + 1) / 4); // = 0.625
  close(got['ndcg_linear@5']!, 0.625);
  close(got['ndcg_linear@10']!, (2.5 + 1 / Math.log2(7)) / 4);
  close(got['ndcg_exponential@10']!, got['ndcg_linear@10']!);
  close(got['precision@5']!, 0.15);
  close(got['recall@5']!, 0.75);
  close(got['f1@5']!, 0.25); // 2PR/(P+R) with P = 1/5, R = 1 on a hit
  close(got['f1@10']!, 2 / 11);
  assert.equal(got.num_pred, 4);
  assert.equal(got.num_data, 4);
  for (const [k, v] of Object.entries(got)) if (!k.startsWith('num_')) assert.ok(v >= 0 && v <= 1, k);
});

test('metricsFromRanks: cutoffs, num_data, validation', () => {
  const got = metricsFromRanks([1, 2, 3, 4], { ks: [3], numData: 10 });
  assert.deepEqual(Object.keys(got), [...metricKeys([3]), 'num_pred', 'num_data']);
  assert.equal(got['hit@3'], 0.75);
  assert.equal(got.num_pred, 4);
  assert.equal(got.num_data, 10);
  assert.throws(() => metricsFromRanks([]), isErr(/no rows were scored/));
  assert.throws(() => metricsFromRanks([1, 0]), isErr(/rank 0 at row 1/));
  assert.throws(() => metricsFromRanks([1, 2], { numData: 1 }), isErr(/num_data 1 is less than the 2 rows/));
  assert.throws(() => metricsFromRanks([1], { ks: [0] }), isErr(/cutoff 0/));
});

test('the identities between metrics in VLM2Vec\'s report hold for ours', () => {
  const report = JSON.parse(readFileSync(fixture('eval', 'mmeb-report-vlm2vec-v2-qwen2vl-2b.json'), 'utf8')) as {
    metrics: { image: Record<string, Record<string, number>> };
  };
  const ours = metricsFromRanks([1, 2, 2, 4, 5, 7, 11, 30, 1, 3]);
  const check = (name: string, r: Record<string, number>) => {
    for (const k of [1, 5, 10]) {
      close(r[`precision@${k}`]!, r[`hit@${k}`]! / k, `${name} precision@${k}`);
      close(r[`recall@${k}`]!, r[`hit@${k}`]!, `${name} recall@${k}`);
      close(r[`f1@${k}`]!, (r[`hit@${k}`]! * 2) / (k + 1), `${name} f1@${k}`);
      close(r[`ndcg_exponential@${k}`]!, r[`ndcg_linear@${k}`]!, `${name} ndcg@${k}`);
    }
    close(r['mrr@1']!, r['hit@1']!, `${name} mrr@1`);
    close(r['ndcg_linear@1']!, r['hit@1']!, `${name} ndcg@1`);
    assert.ok(r['mrr@10']! >= r['mrr@5']! && r['hit@10']! >= r['hit@5']! && r['hit@5']! >= r['hit@1']!, name);
  };
  for (const [name, r] of Object.entries(report.metrics.image)) check(name, r);
  check('ours', ours);
  assert.deepEqual(Object.keys(ours), Object.keys(report.metrics.image['ImageNet-1K']!));
});

test('exact ties: pessimistic by default, optimistic on request', () => {
  const q = m([[1, 0]]);
  const c = [m([[1, 0], [2, 0], [0, 1]])]; // [2, 0] has cosine exactly 1 too
  assert.deepEqual([...rankRows(q, c)], [2]);
  assert.deepEqual([...rankRows(q, c, { tieRule: 'optimistic' })], [1]);
  assert.equal(scoreRows(q, c)['hit@1'], 0);
  assert.equal(scoreRows(q, c, { tieRule: 'optimistic' })['hit@1'], 1);
});

test('zero vectors: a zero query ties with every candidate; a zero candidate scores 0', () => {
  const zeroQuery = m([[0, 0]]);
  const three = [m([[1, 0], [0, 1], [1, 1]])];
  assert.deepEqual([...rankRows(zeroQuery, three)], [3]);
  assert.deepEqual([...rankRows(zeroQuery, three, { tieRule: 'optimistic' })], [1]);
  assert.deepEqual([...rankRows(zeroQuery, [m([[1, 0]])])], [1]);
  const q = m([[1, 0], [1, 0], [1, 0]]);
  const zeroCorrect = [
    m([[0, 0], [-1, 0.5]]), // 0 beats a negative cosine
    m([[0, 0], [1, 0.5]]), // loses to a positive one
    m([[0, 0], [0, 0]]), // ties with another zero vector
  ];
  assert.deepEqual([...rankRows(q, zeroCorrect)], [1, 2, 2]);
  assert.deepEqual([...rankRows(q, zeroCorrect, { tieRule: 'optimistic' })], [1, 2, 1]);
  // A model that maps everything to zero scores 0 under the default rule.
  assert.equal(scoreRows(m([[0, 0], [0, 0]]), [m([[0, 0], [0, 0]]), m([[0, 0], [0, 0], [0, 0]])])['hit@1'], 0);
});

test('non-finite embeddings and shape errors are UnimeErrors naming the row', () => {
  const bad = m([[1, 0], [NaN, 0]]);
  assert.throws(() => rankRows(bad, [m([[1, 0]]), m([[1, 0]])], { label: 'ImageNet-1K' }), isErr(/ImageNet-1K: queries\[1\].*NaN/s));
  assert.throws(
    () => rankRows(m([[1, 0]]), [m([[1, 0], [Infinity, 0]])], { label: 'GQA' }),
    isErr(/GQA: candidates\[0\]\[1\].*Infinity/s),
  );
  assert.throws(() => rankRows(m([[1, 0]]), [m([[1, 0, 0]])]), isErr(/dimension 3 differs from query dimension 2/));
  assert.throws(() => rankRows(m([[1, 0]]), []), isErr(/1 query rows but 0 candidate lists/));
  assert.throws(() => rankRows(m([[1, 0]]), [embeddingMatrix(new Float32Array(0), 0, 2)]), isErr(/empty candidate list/));
  assert.throws(() => embeddingMatrix(new Float32Array(5), 2, 2), isErr(/5 values, but \[2, 2\] needs 4/));
  assert.throws(() => stackRows([[1, 2], [3]]), isErr(/row 1 has 1 values, expected 2/));
});

test('dedupe: identical text + image path is one item; indices map back', () => {
  const a = { text: 'cat', imagePath: '' };
  const b = { text: 'dog', imagePath: '' };
  const aImg = { text: 'cat', imagePath: 'img/1.jpg' };
  const img2 = { text: '', imagePath: 'img/2.jpg' };
  const img3 = { text: '', imagePath: 'img/3.jpg' };
  const rows = [
    [a, b, aImg],
    [b, { text: 'cat', imagePath: '' }, img2],
    [img3, img2, { ...aImg }],
    [a],
  ];
  const { unique, rows: idx } = dedupeCandidateRows(rows);
  assert.deepEqual(unique, [a, b, aImg, img2, img3]);
  assert.deepEqual(idx.map((r) => [...r]), [[0, 1, 2], [1, 0, 3], [4, 3, 2], [0]]);
  rows.forEach((row, r) => row.forEach((item, j) => assert.deepEqual(unique[idx[r]![j]!], item)));

  const q = dedupeItems([a, aImg, { text: 'cat', imagePath: '' }, b]);
  assert.deepEqual(q.unique, [a, aImg, b]);
  assert.deepEqual([...q.indexOf], [0, 1, 0, 2]);
  // No separator confusion: the key is not a plain concatenation.
  const tricky = dedupeItems([{ text: 'a|b', imagePath: 'c' }, { text: 'a', imagePath: 'b|c' }]);
  assert.equal(tricky.unique.length, 2);
});

test('pooled scoring equals per-row scoring on the expanded rows', () => {
  const pool = m([[1, 0], [0, 1], [0.6, 0.8], [1, 0.1], [1, 0.2], [1, 0.3], [1, 0.4], [1, 0.5], [5, -1]]);
  const rowIdx = [[0, 1], [0, 2, 1], [8], [1, 3, 4, 5, 6, 7]].map((r) => Int32Array.from(r));
  const expanded = expandRows(pool, rowIdx);
  assert.deepEqual([...rankPooled(queries, pool, rowIdx)], [...rankRows(queries, expanded)]);
  assert.deepEqual([...rankPooled(queries, pool, rowIdx)], [1, 3, 1, 6]);
  assert.deepEqual(scorePooled(queries, pool, rowIdx), scoreRows(queries, expanded));
  // Deduplicated queries: rows 0 and 3 share query 0.
  const uniqueQueries = m([[1, 0], [0, 1], [1, 1]]);
  assert.deepEqual([...rankPooled(uniqueQueries, pool, rowIdx, { queryOfRow: [0, 1, 2, 0] })], [1, 3, 1, 6]);
  assert.throws(() => rankPooled(uniqueQueries, pool, rowIdx, { queryOfRow: [0, 1, 3, 0] }), isErr(/queryOfRow\[2\]/));
  assert.throws(() => rankPooled(queries, pool, [[0], [0], [0], [9]]), isErr(/rows\[3\]\[0\].*index 9 is outside the 9/s));
});

test('a repeat of the correct item in its own row does not compete; a different item with the same vector does', () => {
  const q = m([[1, 0]]);
  const pool = m([[1, 0], [0, 1], [1, 0]]); // item 2 is a different item embedded to the same vector
  assert.deepEqual([...rankPooled(q, pool, [Int32Array.from([0, 1, 0])])], [1]);
  assert.deepEqual([...rankPooled(q, pool, [Int32Array.from([0, 1, 2])])], [2]);
  assert.deepEqual([...rankPooled(q, pool, [Int32Array.from([0, 1, 2])], { tieRule: 'optimistic' })], [1]);
  // By position (per-row layout) the repeat is just another entry.
  assert.deepEqual([...rankRows(q, expandRows(pool, [[0, 1, 0]]))], [2]);
});
