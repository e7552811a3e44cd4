import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, promises as fsp, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { repoRoot, tempDir } from '../helpers.js';
import { UnimeError } from '../../src/errors.js';
import { generateSynthetic } from '../../tools/synth/generate.js';
import { readMmebReport, summarizeMmeb } from '../../src/eval/aggregate.js';
import { openMmebEvalRoot } from '../../src/eval/catalog.js';
import { EVAL_ERROR_STATUS, RESULT_FILE, SUMMARY_FILE, failedDatasetsError, runMmebEval, selectDatasets, type MmebEvalOptions } from '../../src/eval/mmeb-eval.js';
import { fakeModel, quietLog, textRows, writeTextOnlyEvalSet, WORDS } from './eval-fixtures.js';
import { TEST_IDENTITY } from './eval-identity.js';

let dir: string;
let cleanup: () => Promise<void>;
let synth: string;
before(async () => {
  ({ dir, cleanup } = await tempDir('unime-mmeb-eval-'));
  synth = path.join(dir, 'synthetic');
  await generateSynthetic({ out: synth, seed: 0, size: 'tiny' });
});
after(() => cleanup());

const SYN = ['SynCls', 'SynVQA', 'SynRet-t2i', 'SynRet-i2t', 'SynGrd'];

function opts(out: string, load: MmebEvalOptions['loadModel'], extra: Partial<MmebEvalOptions> = {}): MmebEvalOptions {
  return { dataRoot: synth, outDir: out, modelName: 'fake', loadModel: load, cacheDir: path.join(out, 'embed-cache'), identity: TEST_IDENTITY, batchSize: 4, log: quietLog(), ...extra };
}

test('the synthetic benchmark: found through its top folder, aggregated per meta-task and IND/OOD from its manifest; outputs in VLM2Vec layout + reports', async () => {
  const root = await openMmebEvalRoot(synth);
  assert.equal(root.root, path.join(synth, 'mmeb-eval'));
  assert.equal(root.datasets.length, 10);
  assert.equal(root.catalog?.name, 'Synthetic MMEB');
  assert.equal(root.manifest, path.join(synth, 'manifest.json'));

  const out = path.join(dir, 'syn-out');
  const fake = fakeModel();
  const log = quietLog();
  const o = await runMmebEval(opts(out, fake.load, { log, progressEverySeconds: 0 }));
  assert.equal(o.failed.length, 0);
  assert.equal(fake.counters.loads, 1);
  assert.equal(fake.counters.disposed, 1);
  assert.equal(o.embedded, fake.counters.inputs);
  assert.ok(o.embedded > 0);
  assert.ok(o.embeddings_per_second !== null && o.embeddings_per_second > 0);
  const s = o.summary;
  assert.equal(s.benchmark, 'Synthetic MMEB');
  assert.deepEqual([s.overall.expected, s.ind.expected, s.ood.expected], [10, 5, 5]);
  assert.deepEqual([s.overall.present, s.ind.present, s.ood.present], [10, 5, 5]);
  assert.deepEqual([s.metaTasks.Classification.expected, s.metaTasks.VQA.expected, s.metaTasks.Retrieval.expected, s.metaTasks.Grounding.expected], [2, 2, 4, 2]);
  assert.ok(s.complete);
  assert.deepEqual(s.extra, []);
  // Per-dataset progress lines name the dataset, the count done, emb/s.
  assert.ok(log.lines.some((l) => /\[1\/10 datasets done\] SynCls: hit@1 [0-9.]+ \(8 rows, \d+ inputs: \d+ embedded, \d+ cached\) in [0-9.]+ s, [0-9.-]+ emb\/s, ETA all ~\d+:\d\d/.test(l)), log.lines.join('\n'));

  // mmeb.json: VLM2Vec layout, readable back, carrying the catalog so `eval summarize` sees meta-tasks.
  const json = JSON.parse(readFileSync(path.join(out, RESULT_FILE), 'utf8'));
  assert.deepEqual(Object.keys(json.metrics.image).sort(), [...SYN, ...SYN.map((x) => `${x}-OOD`)].sort());
  assert.equal(json.metrics.image.SynCls.num_data, 8);
  assert.ok(typeof json.metrics.image.SynCls['hit@1'] === 'number');
  assert.equal(json.metadata.model_name, 'fake');
  assert.ok(json.metadata.embeddings_per_second > 0);
  const again = summarizeMmeb(await readMmebReport(path.join(out, RESULT_FILE)));
  assert.equal(again.benchmark, 'Synthetic MMEB');
  assert.equal(again.overall.mean, s.overall.mean);
  const summary = JSON.parse(readFileSync(path.join(out, SUMMARY_FILE), 'utf8'));
  assert.equal(summary.ind.expected, 5);
  assert.equal(summary.runs.length, 10);
  assert.ok(summary.embeddings_per_second > 0);
  const md = readFileSync(path.join(out, 'mmeb-report.md'), 'utf8');
  assert.match(md, /\| Overall \(mean of 10 datasets\) \| [0-9.]+ \| 10\/10 datasets \|/);
  assert.match(md, /\| IND \(5 datasets\) \|/);
  assert.match(md, /\| SynGrd-OOD \| Grounding \| OOD \|/);
  assert.match(readFileSync(path.join(out, 'mmeb-report.html'), 'utf8'), /<svg/);
  // The synthetic data's candidate annotations: which distractor kinds beat the correct candidate.
  assert.deepEqual(Object.keys(summary.distractors).sort(), Object.keys(json.metrics.image).sort());
  for (const [name, stats] of Object.entries(summary.distractors as Record<string, { kind: string; rows: number; beaten: number }[]>)) {
    const meta = readFileSync(path.join(synth, 'mmeb-eval', name, 'synthetic-meta.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    for (const st of stats) {
      const offering = meta.filter((m: { candidates: { kind: string }[] }) => m.candidates.slice(1).some((c) => c.kind === st.kind)).length;
      assert.equal(st.rows, offering, `${name} ${st.kind}`);
      assert.ok(st.beaten >= 0 && st.beaten <= st.rows);
    }
    // A missed row is beaten by some kind; a hit row by none.
    const misses = 8 - Math.round(json.metrics.image[name]['hit@1'] * 8);
    assert.ok(Math.max(0, ...stats.map((x) => x.beaten)) <= misses, name);
    assert.ok(stats.reduce((n, x) => n + x.beaten, 0) >= misses, name);
  }
  assert.match(md, /## Which distractors win\n[^]*\| SynCls \| same-colour \(\d+\) \| [0-9.]+ \|/);
  // SynVQA rows name their question: hit@1 per kind adds up to the dataset's hits
  assert.deepEqual(Object.keys(summary.query_kinds).sort(), ['SynVQA', 'SynVQA-OOD']);
  for (const name of ['SynVQA', 'SynVQA-OOD']) {
    const stats = summary.query_kinds[name] as { kind: string; rows: number; hits: number; rate: number }[];
    assert.equal(stats.reduce((n, x) => n + x.rows, 0), 8, name);
    assert.equal(stats.reduce((n, x) => n + x.hits, 0), Math.round(json.metrics.image[name]['hit@1'] * 8), name);
    for (const x of stats) assert.equal(x.rate, (100 * x.hits) / x.rows);
  }
  assert.match(md, /## Hit@1 by kind of query\n[^]*\| SynVQA \| (colour-of-shape|count|relation|shape-of-colour) \(\d+\) \| [0-9.]+ \|/);
  // Per-row hits for the comparisons' bootstrap intervals: one per row, averaging to the score.
  assert.deepEqual(Object.keys(summary.row_hits).sort(), Object.keys(json.metrics.image).sort());
  for (const [name, hits] of Object.entries(summary.row_hits as Record<string, string>)) {
    assert.match(hits, /^[01]{8}$/, name);
    assert.equal([...hits].filter((c) => c === '1').length / 8, json.metrics.image[name]['hit@1'], name);
  }
  assert.match(o.table, /Synthetic MMEB results: fake/);
  assert.match(o.table, /SynRet-t2i-OOD\s+Ret\s+OOD\s+[0-9.]+/);

  // Second run: every input from the cache, the model never loaded.
  const fake2 = fakeModel();
  const o2 = await runMmebEval(opts(out, fake2.load));
  assert.equal(fake2.counters.loads, 0);
  assert.equal(o2.embedded, 0);
  assert.equal(o2.cached, o.embedded + o.cached);
  assert.equal(o2.embeddings_per_second, null);
  assert.deepEqual(o2.summary.datasets.map((d) => d.score), s.datasets.map((d) => d.score));
});

test('an input met in several datasets is embedded once (text-only sets sharing candidates); --no-cache still shares within the run', async () => {
  const root = await writeTextOnlyEvalSet(path.join(dir, 'text'), { N24News: textRows(WORDS, 'news'), MSCOCO_t2i: textRows(WORDS, 'news') });
  for (const cacheDir of [path.join(dir, 'text-out', 'cache'), null]) {
    const fake = fakeModel({ dim: 64 });
    const o = await runMmebEval({ ...opts(path.join(dir, 'text-out'), fake.load), dataRoot: root, cacheDir });
    // 8 queries + 8 candidates, identical in both datasets.
    assert.equal(fake.counters.inputs, 16);
    assert.equal(new Set(fake.counters.texts).size, 16);
    assert.equal(o.cached, 16);
    // The word-bag fake finds every right candidate.
    assert.equal(o.summary.datasets.find((d) => d.name === 'N24News')!.score, 100);
    // MMEB names without a manifest: the other 34 of the 36 are reported missing, never averaged away.
    assert.equal(o.summary.benchmark, 'MMEB');
    assert.equal(o.summary.missing.length, 34);
    assert.ok(!o.summary.complete);
    assert.match(o.table, /Missing \(34 of 36, not averaged\)/);
  }
  assert.equal(existsSync(path.join(dir, 'text-out', 'cache')), true);
});

test('kill -9 in the middle of a run, then resume: only the rest is embedded; a third run embeds nothing; scores equal an uninterrupted run', async () => {
  const out = path.join(dir, 'killed');
  const child = path.join(repoRoot, 'dist', 'test', 'eval', 'eval-kill-child.js');
  const err = await promisify(execFile)(process.execPath, [child, synth, out, '7']).then(
    () => null,
    (e: { signal?: string }) => e,
  );
  assert.equal(err?.signal, 'SIGKILL', 'the child must die by SIGKILL');
  const cacheRoot = path.join(out, 'embed-cache');
  const [modelDir] = (await fsp.readdir(cacheRoot)).map((d) => path.join(cacheRoot, d));
  const shards = (await fsp.readdir(modelDir!)).filter((n) => n.endsWith('.emb'));
  assert.ok(shards.length >= 1, 'some shards were written before the kill');
  assert.ok(!existsSync(path.join(out, RESULT_FILE)), 'the killed run wrote no results');

  const full = fakeModel();
  const ref = await runMmebEval(opts(path.join(dir, 'uninterrupted'), full.load));
  const total = full.counters.inputs;

  const resumed = fakeModel();
  const o = await runMmebEval(opts(out, resumed.load));
  // Six calls of 4 inputs finished before the kill; flushes every 4 rows put them all on disk.
  assert.ok(o.cached >= 24, `cached ${o.cached}`);
  assert.equal(resumed.counters.inputs, total - (o.cached - (ref.cached)));
  assert.ok(resumed.counters.inputs < total);
  assert.deepEqual(o.summary.datasets.map((d) => d.score), ref.summary.datasets.map((d) => d.score));

  const third = fakeModel();
  const o3 = await runMmebEval(opts(out, third.load));
  assert.equal(third.counters.inputs, 0);
  assert.equal(third.counters.loads, 0);
  assert.equal(o3.embedded, 0);
});

test('an exception midway still flushes what was embedded; the rerun picks up from there', async () => {
  const out = path.join(dir, 'crash');
  const crashing = fakeModel({
    onCall: (n) => {
      if (n === 5) throw new Error('device lost');
    },
  });
  await assert.rejects(runMmebEval(opts(out, crashing.load)), /device lost/);
  assert.equal(crashing.counters.disposed, 1);
  const resumed = fakeModel();
  const o = await runMmebEval(opts(out, resumed.load));
  assert.ok(o.cached >= 16, `${o.cached} cached`);
});

test('a corrupt cache shard is named in a warning and rebuilt, never a crash', async () => {
  const out = path.join(dir, 'corrupt');
  const first = fakeModel();
  await runMmebEval(opts(out, first.load, { datasets: ['SynCls'], cacheOptions: { flushRows: 4 } }));
  const cacheRoot = path.join(out, 'embed-cache');
  const modelDir = path.join(cacheRoot, (await fsp.readdir(cacheRoot))[0]!);
  const shard = path.join(modelDir, (await fsp.readdir(modelDir)).filter((n) => n.endsWith('.emb')).sort()[0]!);
  await fsp.writeFile(shard, 'garbage');
  const log = quietLog();
  const second = fakeModel();
  const o = await runMmebEval(opts(out, second.load, { datasets: ['SynCls'], log }));
  assert.ok(log.lines.some((l) => l.startsWith('WARN') && l.includes(shard)), log.lines.join('\n'));
  assert.equal(second.counters.inputs, 4, 'the 4 rows of the bad shard are embedded again');
  assert.ok(o.cache!.corrupt.includes(shard));
});

test('a dataset that fails (missing image) is reported as failed and marked in mmeb.json; the rest are scored', async () => {
  const root = path.join(dir, 'broken', 'mmeb-eval');
  await fsp.cp(path.join(synth, 'mmeb-eval'), root, { recursive: true });
  await fsp.copyFile(path.join(synth, 'manifest.json'), path.join(dir, 'broken', 'manifest.json'));
  await fsp.rm(path.join(root, 'images.zip'));
  await writeTextOnlyEvalSet(root, { N24News: textRows(WORDS, 'x') });
  const fake = fakeModel();
  const o = await runMmebEval({ ...opts(path.join(dir, 'broken-out'), fake.load), dataRoot: root, datasets: ['SynCls', 'N24News'] });
  assert.deepEqual(o.failed.map((f) => f.name), ['SynCls'], JSON.stringify(o.failed));
  assert.match(o.failed[0]!.reason, /image ".*" not found/);
  const json = JSON.parse(readFileSync(o.files.result, 'utf8'));
  assert.equal(json.metrics.image.SynCls, EVAL_ERROR_STATUS);
  assert.equal(typeof json.metrics.image.N24News['hit@1'], 'number');
  assert.ok(o.summary.missing.some((m) => m.name === 'SynCls' && /EVAL_ERROR/.test(m.reason)), JSON.stringify(o.summary.missing));
  // N24News is not in the synthetic catalog: scored, shown, not averaged.
  assert.equal(o.summary.extra.length, 1);
  assert.equal(o.summary.extra[0]!.name, 'N24News');
  assert.match(o.table, /N24News\s+-\s+-\s+[0-9.]+ \(not averaged\)/);
  assert.match(o.table, /Missing \(10 of 10, not averaged\): marked EVAL_ERROR: SynCls; not in the report: SynVQA, /);
  const e = failedDatasetsError(o);
  assert.ok(e instanceof UnimeError);
  assert.match(e.message, /1 of 2 datasets failed: SynCls/);
});

test('dataset selection: exact names and MMEB aliases; an unknown name is an error naming the data root', () => {
  const avail = ['ImageNet-1K', 'MSCOCO_t2i', 'SynCls'];
  assert.deepEqual(selectDatasets(avail, 'all', '/r'), avail);
  assert.deepEqual(selectDatasets(avail, ['SynCls', 'imagenet_1k', 'SynCls'], '/r'), ['SynCls', 'ImageNet-1K']);
  assert.throws(() => selectDatasets(avail, ['Nope'], '/data/root'), (e: unknown) => e instanceof UnimeError && /\/data\/root: datasets: dataset "Nope" is not in the data folder/.test(e.message));
});

test('a bad data root is an error naming it', async () => {
  await assert.rejects(openMmebEvalRoot(path.join(dir, 'nowhere')), (e: unknown) => e instanceof UnimeError && e.message.includes(path.join(dir, 'nowhere')) && /no such folder/.test(e.message));
  const empty = path.join(dir, 'empty');
  await fsp.mkdir(empty);
  await assert.rejects(openMmebEvalRoot(empty), /holds no MMEB-eval dataset/);
  await fsp.writeFile(path.join(dir, 'afile'), 'x');
  await assert.rejects(openMmebEvalRoot(path.join(dir, 'afile')), /is a file, not a folder/);
  const badManifest = path.join(dir, 'badman');
  await writeTextOnlyEvalSet(badManifest, { A: textRows(WORDS, 'x') });
  await fsp.writeFile(path.join(badManifest, 'manifest.json'), JSON.stringify({ eval: [{ dataset: 'A', meta_task: 'Captioning', distribution: 'IND' }] }));
  await assert.rejects(openMmebEvalRoot(badManifest), (e: unknown) => e instanceof UnimeError && /manifest\.json: eval\[0\]\.meta_task: meta_task "Captioning"/.test(e.message));
});

test('an aborted run (Ctrl-C) stops between embed calls with EvalInterrupted, flushing the cache; the rerun resumes', async () => {
  const { EvalInterrupted } = await import('../../src/eval/mmeb-eval.js');
  const out = path.join(dir, 'aborted');
  const stop = new AbortController();
  const first = fakeModel({ onCall: (n) => void (n === 3 && stop.abort()) });
  await assert.rejects(runMmebEval(opts(out, first.load, { signal: stop.signal })), (e: unknown) => e instanceof EvalInterrupted && /resume/.test(e.message));
  assert.equal(first.counters.calls, 3);
  const second = fakeModel();
  const o = await runMmebEval(opts(out, second.load));
  assert.ok(o.cached >= 12, `${o.cached}`);
});

test('a model that cannot be loaded stops the run once, with the loader\'s message, instead of failing every dataset', async () => {
  const { ModelLoadFailed } = await import('../../src/eval/mmeb-eval.js');
  let loads = 0;
  const load = async () => {
    loads++;
    throw new UnimeError('is 32, but the vision tower takes 16x16 images', { field: 'image_size', fix: 'set image_size to 16' });
  };
  await assert.rejects(
    runMmebEval(opts(path.join(dir, 'noload'), load, { cacheDir: null })),
    (e: unknown) => e instanceof ModelLoadFailed && /image_size: is 32, but the vision tower takes 16x16 images\n  fix: set image_size to 16/.test(e.message),
  );
  assert.equal(loads, 1);
});
