/**
 * A whole MMEB evaluation: every selected dataset of an MMEB-eval folder scored with one model,
 * through the embedding cache (./embed-cache.ts), with progress lines, and written out as
 *
 *   mmeb.json            per-dataset metrics in VLM2Vec's report layout (its tools read it)
 *   mmeb-summary.json    aggregates (meta-tasks, IND, OOD, overall), timings, embeddings/s, cache use
 *   mmeb-report.md/.html the tables and charts (./report.ts)
 *
 * The model enters as a loader called on the first input the cache does not hold, so a rerun whose
 * every input is cached never loads it. Both the `eval` stage (./engine.ts) and `unime eval mmeb`
 * run this.
 */
import * as path from 'node:path';
import { UnimeError } from '../errors.js';
import { readMmebEvalDataset, type ImageResolver } from '../data/mmeb.js';
import { writeJsonAtomic } from '../io/atomic.js';
import {
  type DatasetCatalog,
  type GroupScore,
  type MmebResult,
  type MmebSummary,
  catalogMetadata,
  formatScore,
  parseMmebReport,
  summarizeMmeb,
  writeMmebReport,
} from './aggregate.js';
import { openMmebEvalRoot } from './catalog.js';
import { annotationTables, distractorStats, queryKindStats, readRowAnnotations, type DistractorStats, type QueryKindStats } from './distractors.js';
import { EmbeddingCache, imageDigest, inputKey, type CacheStats, type EmbeddingCacheOptions, type ModelIdentity } from './embed-cache.js';
import { META_TASKS, META_TASK_SHORT, canonicalMmebName, findMmebDataset } from './mmeb-datasets.js';
import { evaluateMmebDataset, type EmbedFn } from './mmeb-run.js';
import { writeResultReports } from './report.js';
import { rowHitsString } from './significance.js';
import type { DatasetMetrics } from './scoring.js';

/** MMEB-eval's image marker (Phi-3.5-V's), as it appears in qry_text. */
export const MMEB_IMAGE_MARKER = '<|image_1|>';
/** Status written into mmeb.json for a dataset whose evaluation failed. */
export const EVAL_ERROR_STATUS = 'EVAL_ERROR';

export const RESULT_FILE = 'mmeb.json';
export const SUMMARY_FILE = 'mmeb-summary.json';
export const REPORT_BASENAME = 'mmeb-report';

/** One input as the model gets it: the text (image marker included) and the encoded image bytes. */
export interface ModelInput {
  text: string;
  image: Uint8Array | null;
}

/** What the evaluation needs of a model. */
export interface EvalModel {
  /** Embeddings, row-major [inputs.length, dim], L2-normalised. */
  embed(inputs: readonly ModelInput[], options: { batchSize: number; maxLength: number }): Promise<Float32Array>;
  readonly dim: number;
  dispose(): void;
}

export interface EvalLog {
  info(msg: string): void;
  warn(msg: string): void;
}

export interface MmebEvalOptions {
  /** An MMEB-eval folder (or a folder holding mmeb-eval/, like data/synthetic). */
  dataRoot: string;
  /** Dataset folder names (MMEB aliases accepted), or 'all' (default). */
  datasets?: readonly string[] | 'all';
  outDir: string;
  /** The name in the reports (metadata.model_name). */
  modelName: string;
  /** Called once, on the first input the cache lacks. */
  loadModel: () => Promise<EvalModel>;
  /** Cache root (one sub-folder per model identity), or null for an in-memory cache only. */
  cacheDir: string | null;
  /** Required with a cacheDir: what the cached embeddings depend on. */
  identity?: ModelIdentity;
  /** Flush cadence and compaction of the cache (defaults: 2048 rows / 120 s). */
  cacheOptions?: Omit<EmbeddingCacheOptions, 'log'>;
  batchSize?: number;
  maxLength?: number;
  /** 'auto' passes qry_text as is (the model rewrites markers); else MMEB's <|image_1|> becomes this. */
  imageToken?: string;
  log: EvalLog;
  /** Seconds between progress lines within a dataset (default 10). */
  progressEverySeconds?: number;
  /** Extra metadata for mmeb.json. */
  metadata?: Record<string, unknown>;
  /** Stops the run between embed calls (Ctrl-C): what was embedded is flushed to the cache first. */
  signal?: AbortSignal;
}

export interface DatasetRun {
  name: string;
  rows: number;
  /** Unique inputs scored (queries + candidates). */
  inputs: number;
  /** Of those: embedded by the model in this run, or taken from the cache. */
  embedded: number;
  cached: number;
  seconds: number;
  /** Model time spent on this dataset. */
  model_seconds: number;
  embeddings_per_second: number | null;
  score: number | null;
  error?: string;
}

export interface MmebEvalOutcome {
  result: MmebResult;
  summary: MmebSummary;
  datasets: DatasetRun[];
  failed: { name: string; reason: string }[];
  embedded: number;
  cached: number;
  seconds: number;
  model_seconds: number;
  /** Embeddings per second of model time (null when nothing was embedded). */
  embeddings_per_second: number | null;
  cache: (CacheStats & { dir: string | null }) | null;
  files: { result: string; summary: string; markdown: string; html: string };
  /** The plain-text table printed at the end. */
  table: string;
}

/** The dataset folders to run: all, or the requested ones matched exactly or by MMEB alias. */
export function selectDatasets(available: readonly string[], requested: readonly string[] | 'all', root: string): string[] {
  if (requested === 'all') return [...available];
  const out: string[] = [];
  for (const want of requested) {
    const canon = canonicalMmebName(want);
    const hit = available.find((a) => a === want) ?? (canon ? available.find((a) => canonicalMmebName(a) === canon) : undefined);
    if (!hit) {
      throw new UnimeError(`dataset "${want}" is not in the data folder (it has: ${available.join(', ')})`, {
        file: root,
        field: 'datasets',
        fix: 'name dataset folders of the data root, comma-separated, or leave it out for all',
      });
    }
    if (!out.includes(hit)) out.push(hit);
  }
  return out;
}

function clock(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?';
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}

const rate = (n: number, s: number): number | null => (n > 0 && s > 0 ? n / s : null);
const fmtRate = (r: number | null): string => (r === null ? '-' : r >= 100 ? r.toFixed(0) : r.toFixed(1));

export async function runMmebEval(o: MmebEvalOptions): Promise<MmebEvalOutcome> {
  const t0 = performance.now();
  const batchSize = o.batchSize ?? 16;
  const maxLength = o.maxLength ?? 256;
  const imageToken = o.imageToken ?? 'auto';
  const every = (o.progressEverySeconds ?? 10) * 1000;
  if (!(Number.isInteger(batchSize) && batchSize > 0)) throw new UnimeError(`batch size must be a positive whole number, got ${batchSize}`, { field: 'batch_size' });
  if (!(Number.isInteger(maxLength) && maxLength > 0)) throw new UnimeError(`max length must be a positive whole number, got ${maxLength}`, { field: 'max_length' });

  const data = await openMmebEvalRoot(o.dataRoot);
  const selected = selectDatasets(data.datasets, o.datasets ?? 'all', o.dataRoot);
  const catalog: DatasetCatalog | undefined = data.catalog;
  const known = (name: string) => (catalog ? catalog.datasets.some((d) => d.name === name) : findMmebDataset(name) !== undefined);
  const unknown = selected.filter((n) => !known(n));
  if (unknown.length > 0) {
    o.log.warn(`eval: ${unknown.join(', ')} ${unknown.length === 1 ? 'is' : 'are'} not ${catalog ? `in ${data.manifest}` : 'among the 36 MMEB datasets'}: scored and reported, but not averaged`);
  }
  o.log.info(`eval: ${selected.length} dataset${selected.length === 1 ? '' : 's'} from ${data.root}${catalog ? ` (${catalog.name}, catalog from ${data.manifest})` : ''}`);

  let cache: EmbeddingCache;
  if (o.cacheDir !== null) {
    if (!o.identity) throw new Error('runMmebEval: a cacheDir needs the model identity');
    cache = await EmbeddingCache.open(o.cacheDir, o.identity, { ...o.cacheOptions, log: o.log });
    o.log.info(`eval: embedding cache ${cache.dir} (${cache.size} entries${cache.stats.corrupt.length ? `, ${cache.stats.corrupt.length} corrupt shard(s) set aside` : ''})`);
  } else {
    cache = EmbeddingCache.inMemory();
  }

  let model: EvalModel | null = null;
  let loading: Promise<EvalModel> | null = null;
  const getModel = async (): Promise<EvalModel> => {
    if (model) return model;
    loading ??= (async () => {
      const tl = performance.now();
      o.log.info(`eval: loading ${o.modelName}`);
      let m: EvalModel;
      try {
        m = await o.loadModel();
      } catch (e) {
        // Fatal for the whole run, not one dataset: every dataset would fail the same way.
        throw e instanceof UnimeError ? new ModelLoadFailed(e) : e;
      }
      o.log.info(`eval: model loaded in ${((performance.now() - tl) / 1000).toFixed(1)} s (dim ${m.dim})`);
      return m;
    })();
    model = await loading;
    return model;
  };

  let totalEmbedded = 0;
  let totalCached = 0;
  let totalModelSeconds = 0;
  const runs: DatasetRun[] = [];
  const image: Record<string, unknown> = {};
  const failed: { name: string; reason: string }[] = [];
  const datasetSeconds: number[] = [];

  const rewrite = (text: string) => (imageToken === 'auto' ? text : text.split(MMEB_IMAGE_MARKER).join(imageToken));

  const makeEmbedFn = (images: ImageResolver, counters: { embedded: number; cached: number; modelSeconds: number }): EmbedFn => async (batch) => {
    if (o.signal?.aborted) throw new EvalInterrupted();
    const keys: string[] = [];
    const inputs: ModelInput[] = [];
    // read together: one at a time, a batch waits on every file read in turn
    const allBytes = await Promise.all(batch.map((item) => (item.imagePath ? images.read(item.imagePath) : null)));
    batch.forEach((item, i) => {
      const text = rewrite(item.text);
      const bytes = allBytes[i] ?? null;
      keys.push(inputKey(text, bytes ? imageDigest(bytes) : null));
      inputs.push({ text, image: bytes });
    });
    const vectors: (Float32Array | undefined)[] = keys.map((k) => cache.get(k));
    const missAt = new Map<string, number[]>();
    vectors.forEach((v, i) => {
      if (v) return;
      const at = missAt.get(keys[i]!);
      if (at) at.push(i);
      else missAt.set(keys[i]!, [i]);
    });
    // Cached: every input the model does not embed now (a repeat within the batch included).
    counters.cached += batch.length - missAt.size;
    if (missAt.size > 0) {
      const m = await getModel();
      const firsts = [...missAt.values()].map((idx) => idx[0]!);
      const ts = performance.now();
      const out = await m.embed(
        firsts.map((i) => inputs[i]!),
        { batchSize, maxLength },
      );
      counters.modelSeconds += (performance.now() - ts) / 1000;
      const dim = out.length / firsts.length;
      if (!Number.isInteger(dim) || dim < 1) {
        throw new UnimeError(`the model returned ${out.length} values for ${firsts.length} inputs`, { fix: 'the model must return one embedding per input' });
      }
      let j = 0;
      for (const idx of missAt.values()) {
        const v = out.subarray(j * dim, (j + 1) * dim);
        await cache.put(keys[idx[0]!]!, v);
        for (const i of idx) vectors[i] = v;
        j++;
      }
      counters.embedded += firsts.length;
    }
    return vectors as Float32Array[];
  };

  const distractors: Record<string, DistractorStats[]> = {};
  const queryKinds: Record<string, QueryKindStats[]> = {};
  const rowHits: Record<string, string> = {};
  try {
    for (const [di, name] of selected.entries()) {
      const td = performance.now();
      const counters = { embedded: 0, cached: 0, modelSeconds: 0 };
      const position = `${di + 1}/${selected.length}`;
      let rows = 0;
      let inputs = 0;
      try {
        const ds = await readMmebEvalDataset(data.root, name);
        rows = ds.rows.length;
        let lastLine = performance.now();
        try {
          const ev = await evaluateMmebDataset(name, ds.rows, makeEmbedFn(ds.images, counters), {
            batchSize,
            onProgress: (done, total) => {
              inputs = total;
              const now = performance.now();
              if (now - lastLine < every || done === total) return;
              lastLine = now;
              const r = rate(totalEmbedded + counters.embedded, totalModelSeconds + counters.modelSeconds);
              const left = total - done;
              const etaSet = r ? left / r : NaN;
              const avg = datasetSeconds.length ? datasetSeconds.reduce((a, b) => a + b, 0) / datasetSeconds.length : (now - td) / 1000 + etaSet;
              const etaAll = etaSet + avg * (selected.length - di - 1);
              o.log.info(
                `eval: [${di}/${selected.length} datasets done] ${name} ${done}/${total} inputs (${counters.cached} cached), ${fmtRate(r)} emb/s, ETA ${name} ${clock(etaSet)}, all ~${clock(etaAll)}`,
              );
            },
          });
          inputs = ev.embedded.queries + ev.embedded.candidates;
          image[name] = ev.metrics;
          // keyed like the summary's datasets (an MMEB folder may be named by an alias)
          rowHits[canonicalMmebName(name) ?? name] = rowHitsString(ev.ranks);
          try {
            const notes = await readRowAnnotations(path.join(data.root, name), ds.rows.map((r) => r.tgt_text.length));
            if (notes !== null) {
              distractors[name] = distractorStats(ev.outranked, notes.candidateKinds);
              if (notes.queryKinds !== null) queryKinds[name] = queryKindStats(ev.ranks, notes.queryKinds);
            }
          } catch (e) {
            if (!(e instanceof UnimeError)) throw e;
            o.log.warn(`eval: ${name}: candidate annotations left out: ${e.message}`);
          }
        } finally {
          await ds.images.close();
        }
      } catch (e) {
        if (!(e instanceof UnimeError) || e instanceof EvalInterrupted || e instanceof ModelLoadFailed) throw e;
        const reason = e.message.split('\n')[0]!;
        failed.push({ name, reason });
        image[name] = EVAL_ERROR_STATUS;
        o.log.warn(`eval: ${position} ${name} failed: ${e.message}`);
      }
      await cache.flush();
      const seconds = (performance.now() - td) / 1000;
      datasetSeconds.push(seconds);
      totalEmbedded += counters.embedded;
      totalCached += counters.cached;
      totalModelSeconds += counters.modelSeconds;
      const metrics = image[name];
      const score = typeof metrics === 'object' ? ((metrics as DatasetMetrics)['hit@1'] ?? null) : null;
      const run: DatasetRun = {
        name,
        rows,
        inputs,
        embedded: counters.embedded,
        cached: counters.cached,
        seconds,
        model_seconds: counters.modelSeconds,
        embeddings_per_second: rate(counters.embedded, counters.modelSeconds),
        score: score === null ? null : score * 100,
      };
      if (typeof metrics === 'string') run.error = failed[failed.length - 1]!.reason;
      runs.push(run);
      const etaAll = (datasetSeconds.reduce((a, b) => a + b, 0) / datasetSeconds.length) * (selected.length - di - 1);
      o.log.info(
        `eval: [${position} datasets done] ${name}: ${run.score === null ? 'FAILED' : `hit@1 ${formatScore(run.score)}`} (${rows} rows, ${inputs} inputs: ` +
          `${counters.embedded} embedded, ${counters.cached} cached) in ${seconds.toFixed(1)} s, ${fmtRate(run.embeddings_per_second)} emb/s` +
          (di + 1 < selected.length ? `, ETA all ~${clock(etaAll)}` : ''),
      );
    }
  } finally {
    await cache.flush().catch((e) => o.log.warn(`eval: could not write the embedding cache: ${(e as Error).message}`));
    (model as EvalModel | null)?.dispose();
  }

  const seconds = (performance.now() - t0) / 1000;
  const eps = rate(totalEmbedded, totalModelSeconds);
  const metadata: Record<string, unknown> = {
    ...o.metadata,
    data_root: data.root,
    datasets_evaluated: selected,
    embeddings_per_second: eps,
    embedded: totalEmbedded,
    cached: totalCached,
    seconds,
    ...(catalog ? { dataset_catalog: catalogMetadata(catalog) } : {}),
  };
  const result = parseMmebReport(
    { metadata: { model_name: o.modelName, report_generated_date: new Date().toISOString(), ...metadata }, metrics: { image } },
    `results of ${o.modelName}`,
  );
  const summary = summarizeMmeb(result, 'hit@1', catalog);
  const files = {
    result: path.join(o.outDir, RESULT_FILE),
    summary: path.join(o.outDir, SUMMARY_FILE),
    markdown: path.join(o.outDir, `${REPORT_BASENAME}.md`),
    html: path.join(o.outDir, `${REPORT_BASENAME}.html`),
  };
  await writeMmebReport(files.result, result);
  const cacheInfo = o.cacheDir === null ? null : { dir: cache.dir, ...cache.stats };
  await writeJsonAtomic(
    files.summary,
    summaryJson(summary, { runs, failed, embedded: totalEmbedded, cached: totalCached, seconds, modelSeconds: totalModelSeconds, eps, cache: cacheInfo, distractors, queryKinds, rowHits }),
  );
  await writeResultReports(o.outDir, summary, {
    baseName: REPORT_BASENAME,
    appendix: annotationTables([{ label: o.modelName, stats: queryKinds }], [{ label: o.modelName, stats: distractors }]),
  });
  const table = summaryTable(summary, runs);
  return {
    result,
    summary,
    datasets: runs,
    failed,
    embedded: totalEmbedded,
    cached: totalCached,
    seconds,
    model_seconds: totalModelSeconds,
    embeddings_per_second: eps,
    cache: cacheInfo,
    files,
    table,
  };
}

function groupJson(g: GroupScore): Record<string, unknown> {
  return { score: g.mean, complete: g.complete, present: g.present, expected: g.expected, missing: g.missing, partial: g.partial };
}

function summaryJson(
  s: MmebSummary,
  x: {
    runs: DatasetRun[];
    failed: { name: string; reason: string }[];
    embedded: number;
    cached: number;
    seconds: number;
    modelSeconds: number;
    eps: number | null;
    cache: unknown;
    distractors: Record<string, DistractorStats[]>;
    queryKinds: Record<string, QueryKindStats[]>;
    /** hit@1 per row ('1'/'0' in row order), for the paired bootstrap of comparisons (significance.ts). */
    rowHits: Record<string, string>;
  },
): Record<string, unknown> {
  return {
    model: s.modelName,
    benchmark: s.benchmark,
    metric: s.metric,
    unit: 'percent',
    overall: groupJson(s.overall),
    ind: groupJson(s.ind),
    ood: groupJson(s.ood),
    meta_tasks: Object.fromEntries(META_TASKS.map((t) => [t, groupJson(s.metaTasks[t])])),
    four_category_mean: groupJson(s.fourCategoryMean),
    complete: s.complete,
    missing: s.missing,
    failed: x.failed,
    extra: s.extra,
    datasets: s.datasets.map((d) => ({ name: d.name, meta_task: d.metaTask, distribution: d.distribution, score: d.score, ...(d.missingReason ? { missing: d.missingReason } : {}) })),
    runs: x.runs,
    embedded: x.embedded,
    cached: x.cached,
    seconds: x.seconds,
    model_seconds: x.modelSeconds,
    embeddings_per_second: x.eps,
    cache: x.cache,
    ...(Object.keys(x.distractors).length > 0 ? { distractors: x.distractors } : {}),
    ...(Object.keys(x.queryKinds).length > 0 ? { query_kinds: x.queryKinds } : {}),
    row_hits: x.rowHits,
  };
}

function textTable(header: string[], rows: string[][], right: number[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => (right.includes(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

/** The plain-text table printed after an evaluation: per dataset, then the aggregates. */
export function summaryTable(s: MmebSummary, runs: readonly DatasetRun[] = []): string {
  const byName = new Map(runs.map((r) => [r.name, r]));
  const cell = (v: number | null) => (v === null ? 'missing' : formatScore(v));
  const rows = s.datasets.map((d) => {
    const r = byName.get(d.name);
    return [d.name, META_TASK_SHORT[d.metaTask], d.distribution, d.score === null ? 'missing' : formatScore(d.score), r ? fmtRate(r.embeddings_per_second) : ''];
  });
  for (const e of s.extra) rows.push([e.name, '-', '-', cell(e.score) + ' (not averaged)', fmtRate(byName.get(e.name)?.embeddings_per_second ?? null)]);
  const g = (x: GroupScore) => (x.mean === null ? 'n/a' : formatScore(x.mean) + (x.complete ? '' : ' (incomplete)')) + `  [${x.present}/${x.expected}]`;
  const agg = [
    ['Overall' + (s.benchmark === 'MMEB' ? ' (36-dataset mean, MMEB standard)' : ` (mean of ${s.overall.expected} datasets)`), g(s.overall)],
    ['IND', g(s.ind)],
    ['OOD', g(s.ood)],
    ...META_TASKS.filter((t) => s.metaTasks[t].expected > 0).map((t) => [t, g(s.metaTasks[t])]),
    ['Four-category mean (paper-style)', g(s.fourCategoryMean)],
  ];
  const out = [
    `${s.benchmark} results: ${s.modelName} (${s.metric}, percent)`,
    textTable(['Dataset', 'Task', 'Split', s.metric, 'emb/s'], rows, [3, 4]),
    '',
    textTable(['Aggregate', 'Score'], agg, []),
  ];
  if (s.missing.length) {
    const byReason = new Map<string, string[]>();
    for (const m of s.missing) byReason.set(m.reason, [...(byReason.get(m.reason) ?? []), m.name]);
    out.push('', `Missing (${s.missing.length} of ${s.datasets.length}, not averaged): ${[...byReason].map(([r, names]) => `${r}: ${names.join(', ')}`).join('; ')}`);
  }
  return out.join('\n') + '\n';
}

/** The model could not be loaded: the run stops (the message is the loader's). */
export class ModelLoadFailed extends UnimeError {
  constructor(cause: UnimeError) {
    super(cause.problem, {
      ...(cause.file !== undefined ? { file: cause.file } : {}),
      ...(cause.field !== undefined ? { field: cause.field } : {}),
      ...(cause.fix !== undefined ? { fix: cause.fix } : {}),
      cause,
    });
  }
}

/** An evaluation stopped through its AbortSignal; its embeddings are in the cache. */
export class EvalInterrupted extends UnimeError {
  constructor() {
    super('interrupted; the embeddings computed so far are in the cache', { fix: 'run the same command again to resume' });
  }
}

/** The error an evaluation with failed datasets ends with, after its reports are written. */
export function failedDatasetsError(outcome: MmebEvalOutcome): UnimeError {
  return new UnimeError(
    `${outcome.failed.length} of ${outcome.datasets.length} datasets failed: ${outcome.failed.map((f) => `${f.name} (${f.reason})`).join('; ')}. ` +
      `The others are scored in ${outcome.files.result} and the failed ones are marked ${EVAL_ERROR_STATUS} there.`,
    { fix: 'fix the cause and run again: embeddings already computed come from the cache' },
  );
}
