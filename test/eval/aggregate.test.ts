import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { fixture, tempDir } from '../helpers.js';
import { UnimeError } from '../../src/errors.js';
import {
  type MmebResult,
  createMmebResult,
  datasetWeightedMean,
  formatScore,
  fourCategoryMean,
  mmebReportJson,
  parseMmebReport,
  readMmebReport,
  roundHalfEven,
  summarizeMmeb,
  writeMmebReport,
} from '../../src/eval/aggregate.js';
import { type MetaTask, META_TASKS, MMEB_IMAGE_DATASETS, mmebDatasets } from '../../src/eval/mmeb-datasets.js';
import type { DatasetMetrics } from '../../src/eval/scoring.js';

const REPORT = fixture('eval', 'mmeb-report-vlm2vec-v2-qwen2vl-2b.json');
const reportJson = () => JSON.parse(readFileSync(REPORT, 'utf8')) as { metadata: Record<string, unknown>; metrics: { image: Record<string, unknown> } };
const isErr = (re: RegExp) => (e: unknown) => {
  assert.ok(e instanceof UnimeError, `not a UnimeError: ${e}`);
  assert.match(e.message, re);
  return true;
};

test('aggregating the shared VLM2Vec-V2 report reproduces its published numbers', async () => {
  const result = await readMmebReport(REPORT);
  assert.equal(result.image.size, 36);
  assert.equal(result.unavailable.size, 0);
  assert.equal(result.extra.size, 0);
  assert.deepEqual(Object.keys(result.otherModalities), ['video', 'visdoc']);
  const s = summarizeMmeb(result);
  assert.equal(s.modelName, 'VLM2Vec-V2.0-Qwen2VL-2B');
  assert.equal(s.metric, 'hit@1');
  const two = (g: { mean: number | null }) => formatScore(g.mean!, 2);
  assert.equal(two(s.overall), '64.92');
  assert.equal(two(s.ind), '68.82');
  assert.equal(two(s.ood), '60.05');
  assert.equal(two(s.metaTasks.Classification), '62.93');
  assert.equal(two(s.metaTasks.VQA), '56.42');
  assert.equal(two(s.metaTasks.Retrieval), '69.60');
  assert.equal(two(s.metaTasks.Grounding), '77.12'); // exactly 77.125: half to even
  assert.equal(two(s.fourCategoryMean), '66.52');
  assert.equal(formatScore(s.overall.mean!, 1), '64.9'); // the published Overall
  assert.ok(Math.abs(s.metaTasks.Grounding.mean! - 77.125) < 1e-9);
  assert.ok(s.complete && s.overall.complete && s.fourCategoryMean.complete);
  assert.deepEqual(s.missing, []);
  assert.deepEqual([s.overall.present, s.ind.present, s.ood.present, s.fourCategoryMean.present], [36, 20, 16, 4]);
  assert.ok(Math.abs(s.datasets.find((d) => d.name === 'ImageNet-1K')!.score! - 80.8) < 1e-9);
});

test('round half to even, robust to float noise', () => {
  assert.equal(roundHalfEven(77.125, 2), 77.12);
  assert.equal(roundHalfEven(77.135, 2), 77.14);
  assert.equal(roundHalfEven(64.25, 1), 64.2);
  assert.equal(roundHalfEven(64.35, 1), 64.4);
  assert.equal(roundHalfEven(64.24999999999999, 1), 64.2);
  assert.equal(roundHalfEven(64.25000000000001, 1), 64.2);
  assert.equal(roundHalfEven(66.625, 2), 66.62);
  assert.equal(roundHalfEven(2.5, 0), 2);
  assert.equal(roundHalfEven(3.5, 0), 4);
  assert.equal(roundHalfEven(-77.125, 2), -77.12);
  assert.equal(roundHalfEven(61.33888, 2), 61.34);
  assert.equal(formatScore(69.6), '69.60');
  assert.equal(formatScore(-0.001), '0.00');
  // JavaScript's own toFixed rounds the half up, which would print 77.13 and 64.3.
  assert.equal((77.125).toFixed(2), '77.13');
});

interface PaperRow {
  model: string;
  Classification: number;
  VQA: number;
  Retrieval: number;
  Grounding: number;
  Overall: number;
  overallIs: 'four-category mean' | '36-dataset mean';
  mmebStandardOverall?: number;
}
const paper = JSON.parse(readFileSync(fixture('eval', 'unime-paper-table.json'), 'utf8')) as { rows: PaperRow[] };
const categories = (r: PaperRow): Record<MetaTask, number> => ({
  Classification: r.Classification,
  VQA: r.VQA,
  Retrieval: r.Retrieval,
  Grounding: r.Grounding,
});

test('UniME (Phi-3.5-V): the four-category mean 64.25 is the paper Overall 64.2 (one decimal, half to even)', () => {
  const unime = paper.rows.find((r) => r.model === 'UniME (Phi-3.5-V)')!;
  const m = fourCategoryMean(categories(unime));
  assert.ok(Math.abs(m - 64.25) < 1e-9);
  assert.equal(formatScore(m, 2), '64.25');
  assert.equal(roundHalfEven(m, 1), 64.2);
  assert.equal(roundHalfEven(m, 1), unime.Overall);
  // The MMEB-standard 36-dataset mean of the same categories is the 61.3 REFERENCE.md gives.
  assert.equal(roundHalfEven(datasetWeightedMean(categories(unime)), 1), 61.3);
});

test('the whole UniME table: each printed Overall matches the definition it is labelled with', () => {
  assert.equal(paper.rows.length, 6);
  for (const r of paper.rows) {
    const four = roundHalfEven(fourCategoryMean(categories(r)), 1);
    const std = roundHalfEven(datasetWeightedMean(categories(r)), 1);
    if (r.overallIs === 'four-category mean') assert.equal(four, r.Overall, r.model);
    else {
      assert.equal(std, r.Overall, r.model);
      assert.notEqual(four, r.Overall, r.model);
    }
    if (r.mmebStandardOverall !== undefined) assert.equal(std, r.mmebStandardOverall, r.model);
  }
});

/** 36 datasets whose per-category means are `cats` (percent), spread ±1 around the mean. */
function handBuilt(cats: Record<MetaTask, number>): Record<string, DatasetMetrics> {
  const scores: Record<string, DatasetMetrics> = {};
  for (const t of META_TASKS) {
    mmebDatasets({ metaTask: t }).forEach((d, i) => {
      const pct = cats[t] + (i % 2 === 0 ? 1 : -1); // each meta-task has an even number of datasets
      scores[d.name] = { 'hit@1': pct / 100, num_pred: 1000, num_data: 1000 };
    });
  }
  return scores;
}

test('a hand-built 36-dataset report for UniME (Phi-3.5-V) gives both overalls, labelled apart', async () => {
  const unime = paper.rows.find((r) => r.model === 'UniME (Phi-3.5-V)')!;
  const result = createMmebResult('UniME-Phi3.5-V (hand-built)', handBuilt(categories(unime)), { report_generated_date: 'fixed' });
  const { dir, cleanup } = await tempDir();
  try {
    const file = path.join(dir, 'report.json');
    await writeMmebReport(file, result);
    const s = summarizeMmeb(await readMmebReport(file));
    for (const t of META_TASKS) assert.equal(formatScore(s.metaTasks[t].mean!, 1), formatScore(categories(unime)[t], 1), t);
    assert.equal(formatScore(s.fourCategoryMean.mean!, 2), '64.25');
    assert.equal(roundHalfEven(s.fourCategoryMean.mean!, 1), 64.2);
    // (10*54.8 + 10*55.9 + 12*64.5 + 4*81.8) / 36 = 61.3389
    assert.equal(formatScore(s.overall.mean!, 2), '61.34');
    assert.equal(roundHalfEven(s.overall.mean!, 1), 61.3);
    assert.ok(Math.abs(s.overall.mean! - datasetWeightedMean(categories(unime))) < 1e-9);
    assert.ok(s.complete);
  } finally {
    await cleanup();
  }
});

function withImage(edit: (image: Record<string, unknown>) => void): unknown {
  const json = reportJson();
  edit(json.metrics.image);
  return json;
}

test('incomplete reports: missing datasets are listed and every affected aggregate is marked', () => {
  const json = withImage((image) => {
    delete image.OVEN;
    delete image.MSCOCO;
    image.VizWiz = 'FILE_N/A';
  });
  const result = parseMmebReport(json, 'partial.json');
  assert.deepEqual([...result.unavailable], [['VizWiz', 'FILE_N/A']]);
  const s = summarizeMmeb(result);
  assert.deepEqual(s.missing, [
    { name: 'VizWiz', reason: 'marked FILE_N/A' },
    { name: 'OVEN', reason: 'not in the report' },
    { name: 'MSCOCO', reason: 'not in the report' },
  ]);
  assert.equal(s.complete, false);
  assert.equal(s.overall.complete, false);
  assert.equal(s.overall.present, 33);
  assert.deepEqual(s.overall.missing, ['VizWiz', 'OVEN', 'MSCOCO']);
  assert.equal(s.metaTasks.Classification.complete, true);
  assert.equal(s.metaTasks.Retrieval.complete, false);
  assert.deepEqual(s.metaTasks.Retrieval.missing, ['OVEN']);
  assert.equal(s.metaTasks.Retrieval.present, 11);
  assert.equal(s.metaTasks.Grounding.present, 3);
  assert.deepEqual(s.ind.missing, ['MSCOCO']);
  assert.deepEqual(s.ood.missing, ['VizWiz', 'OVEN']);
  assert.equal(s.fourCategoryMean.complete, false);
  assert.equal(s.fourCategoryMean.present, 4);
  // The mean over what is there, never rescaled as if complete.
  const full = reportJson().metrics.image as Record<string, Record<string, number>>;
  const ret = mmebDatasets({ metaTask: 'Retrieval' }).filter((d) => d.name !== 'OVEN').map((d) => full[d.name]!['hit@1']!);
  assert.ok(Math.abs(s.metaTasks.Retrieval.mean! - (100 * ret.reduce((a, b) => a + b, 0)) / 11) < 1e-9);
  assert.equal(s.datasets.find((d) => d.name === 'OVEN')!.score, null);
});

test('a whole meta-task missing gives a null mean, and a dataset scored on part of its rows is flagged', () => {
  const json = withImage((image) => {
    for (const d of mmebDatasets({ metaTask: 'Grounding' })) delete image[d.name];
    (image['ImageNet-1K'] as Record<string, number>).num_pred = 500;
  });
  const s = summarizeMmeb(parseMmebReport(json, 'x.json'));
  assert.equal(s.metaTasks.Grounding.mean, null);
  assert.equal(s.metaTasks.Grounding.present, 0);
  assert.equal(s.fourCategoryMean.present, 3);
  assert.equal(s.fourCategoryMean.complete, false);
  assert.deepEqual(s.partial, ['ImageNet-1K']);
  assert.equal(s.metaTasks.Classification.complete, false);
  assert.deepEqual(s.metaTasks.Classification.partial, ['ImageNet-1K']);
  assert.equal(s.datasets[0]!.partial, true);
});

test('aliases in a report are mapped, duplicates refused, unknown datasets kept apart and never averaged', () => {
  const aliased = withImage((image) => {
    image.ImageNet_1K = image['ImageNet-1K'];
    delete image['ImageNet-1K'];
    image.Places365 = image.Place365;
    delete image.Place365;
    image['My<Data>'] = { 'hit@1': 1, num_pred: 10, num_data: 10 };
  });
  const r = parseMmebReport(aliased, 'aliased.json');
  assert.ok(r.image.has('ImageNet-1K') && r.image.has('Place365'));
  assert.deepEqual([...r.extra.keys()], ['My<Data>']);
  const s = summarizeMmeb(r);
  assert.equal(formatScore(s.overall.mean!, 2), '64.92');
  assert.deepEqual(s.extra, [{ name: 'My<Data>', score: 100 }]);
  // Written back under the report keys, in MMEB order, extras last.
  const keys = Object.keys(mmebReportJson(r).metrics.image as object);
  assert.deepEqual(keys, [...MMEB_IMAGE_DATASETS.map((d) => d.name), 'My<Data>']);

  const dup = withImage((image) => {
    image.ImageNet_1K = image['ImageNet-1K'];
  });
  assert.throws(() => parseMmebReport(dup, 'dup.json'), isErr(/dup\.json: metrics\.image\.ImageNet_1K: "ImageNet_1K" and "ImageNet-1K" are the same dataset/));
});

test('validation errors name the file and the field, and say how to fix it', async () => {
  const cases: [unknown, RegExp][] = [
    [[], /bad\.json: \(top level\): expected an object, found an array/],
    [{ metadata: {} }, /bad\.json: metrics: missing/],
    [{ metrics: { image: [] } }, /bad\.json: metrics\.image: expected an object, found an array/],
    [{ metadata: 'x', metrics: { image: {} } }, /bad\.json: metadata: expected an object/],
    [withImage((i) => ((i.GQA as Record<string, unknown>)['hit@1'] = '0.5')), /bad\.json: metrics\.image\.GQA\.hit@1: expected a number, found the string "0\.5"/],
    [withImage((i) => ((i.GQA as Record<string, unknown>)['hit@1'] = 65.4)), /metrics\.image\.GQA\.hit@1: 65\.4 is outside 0\.\.1\n  fix: .*percentage: divide by 100/],
    [withImage((i) => ((i.GQA as Record<string, unknown>).num_data = 10)), /metrics\.image\.GQA\.num_pred: num_pred 1000 exceeds num_data 10/],
    [withImage((i) => ((i.GQA as Record<string, unknown>).num_pred = 1.5)), /metrics\.image\.GQA\.num_pred: expected a whole number/],
    [withImage((i) => (i.GQA = null)), /metrics\.image\.GQA: expected an object of metrics or a status string, found null/],
    [withImage((i) => ((i.GQA as Record<string, unknown>)['mrr@10'] = null)), /metrics\.image\.GQA\.mrr@10: expected a number, found null/],
  ];
  for (const [json, re] of cases) assert.throws(() => parseMmebReport(json, 'bad.json'), isErr(re));

  const { dir, cleanup } = await tempDir();
  try {
    const broken = path.join(dir, 'broken.json');
    await fsp.writeFile(broken, '{\n  "metrics": {\n    "image": {,}\n  }\n}\n');
    await assert.rejects(readMmebReport(broken), isErr(/broken\.json:3:15: not valid JSON/));
    await assert.rejects(readMmebReport(path.join(dir, 'absent.json')), isErr(/absent\.json: cannot read the report/));
  } finally {
    await cleanup();
  }
});

test('write then read reproduces the report, metadata and other modalities included', async () => {
  const original = await readMmebReport(REPORT);
  const { dir, cleanup } = await tempDir();
  try {
    const file = path.join(dir, 'out', 'copy.json');
    await writeMmebReport(file, original);
    const again: MmebResult = await readMmebReport(file);
    assert.deepEqual(again, original);
    assert.deepEqual(JSON.parse(await fsp.readFile(file, 'utf8')), reportJson());
    assert.deepEqual(await fsp.readdir(path.dirname(file)), ['copy.json']);
  } finally {
    await cleanup();
  }
});

test('summaries on another metric, and createMmebResult maps aliases and keeps metadata', () => {
  const r = createMmebResult('m', { ImageNet_1K: { 'hit@1': 0.5, 'ndcg_linear@5': 0.75, num_pred: 2, num_data: 2 } }, { note: 'x' });
  assert.equal(r.metadata.model_name, 'm');
  assert.equal(r.metadata.note, 'x');
  assert.equal(typeof r.metadata.report_generated_date, 'string');
  const s = summarizeMmeb(r, 'ndcg_linear@5');
  assert.equal(s.metric, 'ndcg_linear@5');
  assert.equal(s.metaTasks.Classification.mean, 75);
  assert.equal(s.metaTasks.Classification.present, 1);
  assert.equal(s.missing.length, 35);
  const noMetric = summarizeMmeb(r, 'hit@5');
  assert.equal(noMetric.missing.length, 36);
  assert.deepEqual(noMetric.missing[0], { name: 'ImageNet-1K', reason: 'no hit@5 value' });
  assert.equal(noMetric.overall.mean, null);
});
