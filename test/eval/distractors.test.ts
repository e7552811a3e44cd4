import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { tempDir } from '../helpers.js';
import { UnimeError } from '../../src/errors.js';
import { CANDIDATE_ANNOTATIONS_FILE, DISTRACTOR_TABLE, QUERY_KIND_TABLE, distractorStats, kindTableHtml, kindTableMarkdown, queryKindStats, readRowAnnotations } from '../../src/eval/distractors.js';
import { embeddingMatrix, rankPooled } from '../../src/eval/scoring.js';

test('rankPooled reports which candidates outrank the correct one, consistently with the rank and the tie rule', () => {
  // One query [1, 0]; pool: 0 correct (cos 0.6), 1 above (0.8), 2 tied (0.6), 3 below (0), 4 the correct item again.
  const q = embeddingMatrix(new Float32Array([1, 0]), 1, 2);
  const pool = embeddingMatrix(new Float32Array([0.6, 0.8, 0.8, 0.6, 0.6, 0.8, 0, 1, 0.6, 0.8]), 5, 2);
  const rows = [[0, 1, 2, 3, 0]];
  for (const [tieRule, expected] of [['pessimistic', [0, 1, 1, 0, 0]], ['optimistic', [0, 1, 0, 0, 0]]] as const) {
    const outranked: Uint8Array[] = [];
    const ranks = rankPooled(q, pool, rows, { tieRule, outranked });
    assert.deepEqual([...outranked[0]!], expected, tieRule);
    assert.equal(ranks[0], 1 + expected.reduce((a, b) => a + b, 0 as number), tieRule);
  }
});

test('distractorStats: per kind, the rows offering it and those where one of its candidates wins', () => {
  const kinds = [
    ['positive', 'other-object', 'other-object', 'other'],
    ['positive', 'other', 'other'],
    ['positive', 'other-object', 'other'],
  ];
  const outranked = [
    Uint8Array.from([0, 0, 1, 0]), // beaten by the second other-object only: counted once
    Uint8Array.from([0, 0, 0]),
    Uint8Array.from([0, 1, 1]),
  ];
  assert.deepEqual(distractorStats(outranked, kinds), [
    { kind: 'other', rows: 3, beaten: 1, rate: 100 / 3 },
    { kind: 'other-object', rows: 2, beaten: 2, rate: 100 },
  ]);
  assert.throws(() => distractorStats(outranked.slice(1), kinds), UnimeError);
});

test('readRowAnnotations: none without the file; a file that does not match the rows names the file and line', async () => {
  const { dir, cleanup } = await tempDir('unime-distractors-');
  try {
    assert.equal(await readRowAnnotations(dir, [3, 2]), null);
    const file = path.join(dir, CANDIDATE_ANNOTATIONS_FILE);
    const line = (kinds: string[], query?: string) => JSON.stringify({ row: 0, ...(query ? { query_kind: query } : {}), candidates: kinds.map((kind) => ({ kind, label: 'x' })) });
    await fsp.writeFile(file, `${line(['positive', 'other', 'same-shape'])}\n${line(['positive', 'other'])}\n`);
    assert.deepEqual(await readRowAnnotations(dir, [3, 2]), { candidateKinds: [['positive', 'other', 'same-shape'], ['positive', 'other']], queryKinds: null });
    await fsp.writeFile(file, `${line(['positive', 'other'], 'count')}\n${line(['positive', 'other'], 'relation')}\n`);
    assert.deepEqual((await readRowAnnotations(dir, [2, 2]))?.queryKinds, ['count', 'relation']);
    const fails = async (counts: number[], pattern: RegExp) =>
      assert.rejects(readRowAnnotations(dir, counts), (e: unknown) => e instanceof UnimeError && e.file === file && pattern.test(e.message));
    // some rows with a query kind and some without: the file is damaged
    await fsp.writeFile(file, `${line(['positive'], 'count')}\n${line(['positive'])}\n`);
    await fails([1, 1], /line 2: expected a string query_kind, as 1 of the 2 lines have/);
    await fsp.writeFile(file, `${line(['positive'], 'count')}\n${JSON.stringify({ query_kind: 3, candidates: [{ kind: 'positive' }] })}\n`);
    await fails([1, 1], /line 2: expected a string query_kind, as 1 of the 2 lines have/);
    await fsp.writeFile(file, `${line(['positive', 'other', 'same-shape'])}\n${line(['positive', 'other'])}\n`);
    await fails([3], /2 annotation lines for 1 rows/);
    await fails([3, 4], /line 2: 2 annotated candidates for 4 in tgt_text/);
    await fsp.writeFile(file, `${line(['positive'])}\n{"candidates": [{"label": "x"}]}\n`);
    await fails([1, 1], /line 2: expected candidates to be a list of objects with a string kind/);
    await fsp.writeFile(file, `${line(['positive'])}\n{not json\n`);
    await fails([1, 1], /line 2 is not valid JSON/);
  } finally {
    await cleanup();
  }
});

test('the distractor table: one column per model, datasets and kinds as rows, nothing when no data is annotated', () => {
  const a = { label: 'base', stats: { SynCls: [{ kind: 'same-colour', rows: 10, beaten: 7, rate: 70 }] } };
  const b = { label: 'stage 2', stats: { SynCls: [{ kind: 'same-colour', rows: 10, beaten: 2, rate: 20 }, { kind: 'other', rows: 10, beaten: 0, rate: 0 }] } };
  const md = kindTableMarkdown([a, b], DISTRACTOR_TABLE);
  assert.match(md, /^## Which distractors win\n/);
  assert.match(md, /\| Dataset \| Distractor kind \| base \| stage 2 \|/);
  assert.match(md, /\| SynCls \| other \(10\) \|  \| 0\.0 \|/);
  assert.match(md, /\| SynCls \| same-colour \(10\) \| 70\.0 \| 20\.0 \|/);
  assert.match(kindTableMarkdown([a, b], DISTRACTOR_TABLE, 3), /^### Which distractors win\n/);
  assert.match(kindTableHtml([a, b], DISTRACTOR_TABLE), /<td>same-colour \(10\)<\/td><td class="num">70\.0<\/td><td class="num">20\.0<\/td>/);
  assert.equal(kindTableMarkdown([{ label: 'x', stats: {} }], DISTRACTOR_TABLE), '');
  assert.equal(kindTableHtml([], DISTRACTOR_TABLE), '');
});

test('queryKindStats: hit@1 (rank 1) of the rows of each kind of query, and its table', () => {
  const kinds = ['count', 'relation', 'count', 'count', 'relation'];
  const ranks = [1, 2, 3, 1, 1];
  const stats = queryKindStats(ranks, kinds);
  assert.deepEqual(stats, [
    { kind: 'count', rows: 3, hits: 2, rate: 200 / 3 },
    { kind: 'relation', rows: 2, hits: 1, rate: 50 },
  ]);
  assert.throws(() => queryKindStats(ranks.slice(1), kinds), UnimeError);
  const md = kindTableMarkdown([{ label: 'stage 2', stats: { SynVQA: stats } }], QUERY_KIND_TABLE, 3);
  assert.match(md, /^### Hit@1 by kind of query\n/);
  assert.match(md, /\| Dataset \| Query kind \| stage 2 \|/);
  assert.match(md, /\| SynVQA \| count \(3\) \| 66\.7 \|/);
});
