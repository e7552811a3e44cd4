/**
 * MMEB results: reading and writing them in VLM2Vec's report layout, and aggregating per-dataset
 * scores into the numbers papers print.
 *
 * Report layout (what VLM2Vec's `experiments/report_score_v2.py` writes and reads):
 *
 *     { "metadata": { "model_name": ..., "report_generated_date": ... },
 *       "metrics": { "image": { "<dataset>": { "hit@1": 0.808, ..., "num_pred": 1000, "num_data": 1000 }, ... },
 *                    "video": {...}, "visdoc": {...} } }
 *
 * Values are fractions in 0..1. A dataset whose score file was absent appears there as a status
 * string ("FILE_N/A", "DIR_N/A", "JSON_ERROR", "READ_ERROR"); we read those as missing.
 *
 * Aggregates (all in percent, from the unrounded per-dataset values):
 * - meta-task score = mean of its datasets; IND / OOD = mean over the 20 / 16; Overall = mean over
 *   all 36 (the MMEB standard);
 * - the four-category mean ("paper-style overall", the mean of the four meta-task scores), which
 *   some papers (UniME for Phi-3.5-V and LLaVA-1.6) print as Overall. It weights Grounding's 4
 *   datasets like Retrieval's 12, so it is always labelled separately.
 * A group with a missing dataset (or one scored on only part of its rows) still gets the mean of
 * what is there, but is marked incomplete, and the missing datasets are listed.
 */
import { promises as fsp } from 'node:fs';
import { UnimeError } from '../errors.js';
import { writeJsonAtomic } from '../io/atomic.js';
import { parseJson } from '../io/json.js';
import {
  type Distribution,
  type MetaTask,
  type MmebDatasetInfo,
  META_TASKS,
  MMEB_IMAGE_DATASETS,
  canonicalMmebName,
  findMmebDataset,
  mmebDatasets,
} from './mmeb-datasets.js';
import type { DatasetMetrics } from './scoring.js';

/** The score MMEB ranks image tasks by. */
export const MMEB_MAIN_METRIC = 'hit@1';

/** Status strings VLM2Vec's report tool writes in place of a dataset's metrics. */
export const VLM2VEC_STATUS_STRINGS: readonly string[] = ['FILE_N/A', 'DIR_N/A', 'JSON_ERROR', 'READ_ERROR'];

export interface MmebResult {
  /** `metadata` of the report (model_name, report_generated_date, anything else), as read. */
  readonly metadata: Readonly<Record<string, unknown>>;
  /** The 36 datasets that have metrics, by canonical name (aliases in the file are mapped). */
  readonly image: ReadonlyMap<string, DatasetMetrics>;
  /** Datasets present only as a status string, name -> status. */
  readonly unavailable: ReadonlyMap<string, string>;
  /** Datasets with metrics that are not among the 36 (kept and shown, never averaged). */
  readonly extra: ReadonlyMap<string, DatasetMetrics>;
  /** The other sections of `metrics` (video, visdoc, ...), kept as read and written back unchanged. */
  readonly otherModalities: Readonly<Record<string, unknown>>;
}

// ---------------------------------------------------------------------------------------------
// Reading and writing

/** Read a report file in VLM2Vec's layout. Errors name the file and the field. */
export async function readMmebReport(file: string): Promise<MmebResult> {
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (e) {
    throw new UnimeError(`cannot read the report: ${(e as Error).message}`, {
      file,
      fix: 'check the path; reports are the JSON files written by `unime eval mmeb` or by VLM2Vec',
      cause: e,
    });
  }
  const parsed = parseJson(text);
  if (!parsed.ok) {
    const { line, column, problem } = parsed.error;
    throw new UnimeError(`not valid JSON: ${problem}`, { file, line, column, fix: 'repair the JSON or write the report again' });
  }
  return parseMmebReport(parsed.value, file);
}

/** Validate a parsed report. `file` names it in error messages. */
export function parseMmebReport(value: unknown, file = '(report)'): MmebResult {
  const fail = (field: string, problem: string, fix: string) => new UnimeError(problem, { file, field, fix });
  const layoutFix = 'a report looks like { "metadata": {...}, "metrics": { "image": { "<dataset>": { "hit@1": 0.8, ... } } } }';
  if (!isPlainObject(value)) throw fail('(top level)', `expected an object, found ${describe(value)}`, layoutFix);
  const metadata = value.metadata ?? {};
  if (!isPlainObject(metadata)) throw fail('metadata', `expected an object, found ${describe(metadata)}`, layoutFix);
  const metrics = value.metrics;
  if (!isPlainObject(metrics)) throw fail('metrics', metrics === undefined ? 'missing' : `expected an object, found ${describe(metrics)}`, layoutFix);
  const image = metrics.image;
  if (!isPlainObject(image)) throw fail('metrics.image', image === undefined ? 'missing' : `expected an object, found ${describe(image)}`, layoutFix);

  const known = new Map<string, DatasetMetrics>();
  const unavailable = new Map<string, string>();
  const extra = new Map<string, DatasetMetrics>();
  const spelledAs = new Map<string, string>();
  for (const [key, entry] of Object.entries(image)) {
    const field = `metrics.image.${key}`;
    const info = findMmebDataset(key);
    const name = info?.name ?? key;
    const earlier = spelledAs.get(name);
    if (earlier !== undefined) {
      throw fail(field, `"${key}" and "${earlier}" are the same dataset (${name})`, 'keep one entry per dataset');
    }
    spelledAs.set(name, key);
    if (typeof entry === 'string') {
      unavailable.set(name, entry);
      continue;
    }
    const m = validateDatasetMetrics(entry, (sub, problem, fix) => fail(sub ? `${field}.${sub}` : field, problem, fix));
    (info ? known : extra).set(name, m);
  }
  const otherModalities: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(metrics)) if (k !== 'image') otherModalities[k] = v;
  return { metadata: { ...metadata }, image: known, unavailable, extra, otherModalities };
}

/**
 * A result from freshly computed scores (dataset name or alias -> metrics, values in 0..1).
 * `metadata.model_name` is set from `modelName`; `report_generated_date` defaults to now.
 */
export function createMmebResult(
  modelName: string,
  scores: Readonly<Record<string, DatasetMetrics>> | ReadonlyMap<string, DatasetMetrics>,
  metadata: Readonly<Record<string, unknown>> = {},
): MmebResult {
  const image: Record<string, unknown> = {};
  const entries = scores instanceof Map ? [...scores.entries()] : Object.entries(scores);
  for (const [k, v] of entries) image[k] = v;
  const meta = { model_name: modelName, report_generated_date: new Date().toISOString(), ...metadata };
  return parseMmebReport({ metadata: meta, metrics: { image } }, `results of ${modelName}`);
}

/** The report as JSON: the 36 in MMEB order, then status entries, then extras, then other modalities. */
export function mmebReportJson(result: MmebResult): { metadata: Record<string, unknown>; metrics: Record<string, unknown> } {
  const image: Record<string, unknown> = {};
  for (const d of MMEB_IMAGE_DATASETS) {
    const m = result.image.get(d.name);
    if (m) image[d.name] = { ...m };
    else if (result.unavailable.has(d.name)) image[d.name] = result.unavailable.get(d.name);
  }
  for (const [k, v] of result.unavailable) if (!(k in image)) image[k] = v;
  for (const [k, v] of result.extra) image[k] = { ...v };
  return { metadata: { ...result.metadata }, metrics: { image, ...result.otherModalities } };
}

/** Write the report atomically in VLM2Vec's layout. */
export async function writeMmebReport(file: string, result: MmebResult): Promise<void> {
  await writeJsonAtomic(file, mmebReportJson(result));
}

// Families whose values are fractions by definition; `map` is left out on purpose: VLM2Vec's
// average precision counts a duplicated correct candidate twice and can exceed 1 on a row.
const BOUNDED = /^(hit|precision|recall|f1|ndcg_linear|ndcg_exponential|ndcg|mrr)@\d+$|^acc$/;
const COUNTS = new Set(['num_pred', 'num_data']);

function validateDatasetMetrics(
  entry: unknown,
  fail: (subfield: string | undefined, problem: string, fix: string) => UnimeError,
): DatasetMetrics {
  if (!isPlainObject(entry)) {
    throw fail(undefined, `expected an object of metrics or a status string, found ${describe(entry)}`, 'write e.g. { "hit@1": 0.81, "num_pred": 1000, "num_data": 1000 }');
  }
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(entry)) {
    if (typeof v !== 'number' || !Number.isFinite(v)) {
      throw fail(k, `expected a number, found ${describe(v)}`, 'metric values are plain JSON numbers');
    }
    if (COUNTS.has(k)) {
      if (!Number.isInteger(v) || v < 0) throw fail(k, `expected a whole number of rows, found ${v}`, 'num_pred and num_data count queries');
    } else if (BOUNDED.test(k) && (v < 0 || v > 1)) {
      const fix = v > 1 && v <= 100
        ? 'report values are fractions in 0..1; this looks like a percentage: divide by 100'
        : 'report values are fractions in 0..1';
      throw fail(k, `${v} is outside 0..1`, fix);
    }
    out[k] = v;
  }
  if (out.num_pred !== undefined && out.num_data !== undefined && out.num_pred > out.num_data) {
    throw fail('num_pred', `num_pred ${out.num_pred} exceeds num_data ${out.num_data}`, 'num_pred counts the scored rows among the num_data rows');
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Aggregation

export interface GroupScore {
  /** Mean of the present datasets (or meta-tasks), in percent; null when none is present. */
  readonly mean: number | null;
  /** True when every expected member is present with all its rows scored. */
  readonly complete: boolean;
  readonly present: number;
  readonly expected: number;
  /** The group's datasets that have no score. */
  readonly missing: readonly string[];
  /** The group's datasets scored on fewer rows than the dataset has (num_pred < num_data). */
  readonly partial: readonly string[];
}

export interface DatasetScoreRow {
  readonly name: string;
  readonly metaTask: MetaTask;
  readonly distribution: Distribution;
  /** In percent; null when missing. */
  readonly score: number | null;
  readonly partial: boolean;
  /** Why it is missing, when it is. */
  readonly missingReason?: string;
}

/** The aggregate scores of one result (every one of them a mean of dataset scores). */
export interface MmebAggregates {
  readonly metaTasks: Readonly<Record<MetaTask, GroupScore>>;
  readonly ind: GroupScore;
  readonly ood: GroupScore;
  /** Mean over all expected datasets (for MMEB all 36: the MMEB standard Overall). */
  readonly overall: GroupScore;
  /** Mean of the four meta-task scores (present/expected count meta-tasks): the paper-style overall. */
  readonly fourCategoryMean: GroupScore;
}

export interface MmebSummary extends MmebAggregates {
  readonly modelName: string;
  /**
   * Which datasets were expected: 'MMEB' for the 36, else the name of a custom catalog (e.g. the
   * synthetic benchmark's, read from its manifest.json).
   */
  readonly benchmark: string;
  /** The per-dataset metric aggregated, e.g. "hit@1". */
  readonly metric: string;
  /** Every expected dataset (the 36, in MMEB order, or the catalog's), scored or not. */
  readonly datasets: readonly DatasetScoreRow[];
  readonly missing: readonly { name: string; reason: string }[];
  readonly partial: readonly string[];
  /** Scored datasets outside the expected ones, in percent (null when the metric is absent). */
  readonly extra: readonly { name: string; score: number | null }[];
  readonly complete: boolean;
}

/**
 * A set of expected datasets other than MMEB's 36, each with its meta-task and distribution: the
 * synthetic benchmark (SynCls, SynVQA, ... and their -OOD twins) or any MMEB-shaped collection.
 */
export interface DatasetCatalog {
  /** Shown in reports instead of "MMEB". */
  readonly name: string;
  readonly datasets: readonly MmebDatasetInfo[];
}

/** The catalog a result file carries in `metadata.dataset_catalog` (written by `unime eval mmeb` for non-MMEB data), if any. */
export function catalogFromMetadata(metadata: Readonly<Record<string, unknown>>): DatasetCatalog | undefined {
  const c = metadata.dataset_catalog;
  if (!isPlainObject(c) || typeof c.name !== 'string' || !Array.isArray(c.datasets)) return undefined;
  const datasets: MmebDatasetInfo[] = [];
  for (const d of c.datasets) {
    if (!isPlainObject(d) || typeof d.name !== 'string') return undefined;
    if (!(META_TASKS as readonly unknown[]).includes(d.meta_task) || (d.distribution !== 'IND' && d.distribution !== 'OOD')) return undefined;
    datasets.push({ name: d.name, metaTask: d.meta_task as MetaTask, distribution: d.distribution });
  }
  return { name: c.name, datasets };
}

/** A catalog as it is stored in `metadata.dataset_catalog`. */
export function catalogMetadata(catalog: DatasetCatalog): Record<string, unknown> {
  return { name: catalog.name, datasets: catalog.datasets.map((d) => ({ name: d.name, meta_task: d.metaTask, distribution: d.distribution })) };
}

/**
 * Aggregate one result on `metric` (default hit@1) over MMEB's 36 datasets, or over `catalog`
 * (default: the one the result's metadata carries, else MMEB's).
 */
export function summarizeMmeb(result: MmebResult, metric: string = MMEB_MAIN_METRIC, catalog?: DatasetCatalog): MmebSummary {
  const cat = catalog ?? catalogFromMetadata(result.metadata);
  const expected: readonly MmebDatasetInfo[] = cat ? cat.datasets : MMEB_IMAGE_DATASETS;
  const lookup = (name: string) => result.image.get(canonicalMmebName(name) ?? name) ?? result.extra.get(name);
  const statusOf = (name: string) => result.unavailable.get(canonicalMmebName(name) ?? name) ?? result.unavailable.get(name);
  const rows: DatasetScoreRow[] = expected.map((d) => {
    const m = lookup(d.name);
    const base = { name: d.name, metaTask: d.metaTask, distribution: d.distribution };
    if (!m) {
      const status = statusOf(d.name);
      return { ...base, score: null, partial: false, missingReason: status ? `marked ${status}` : 'not in the report' };
    }
    const v = m[metric];
    if (v === undefined) return { ...base, score: null, partial: false, missingReason: `no ${metric} value` };
    const partial = m.num_pred !== undefined && m.num_data !== undefined && m.num_pred < m.num_data;
    return { ...base, score: v * 100, partial };
  });
  const { metaTasks, ind, ood, overall, fourCategoryMean } = aggregateDatasetRows(rows);
  const expectedNames = new Set(expected.map((d) => canonicalMmebName(d.name) ?? d.name));
  const extra = [...result.image, ...result.extra]
    .filter(([name]) => !expectedNames.has(name))
    .map(([name, m]) => ({ name, score: m[metric] === undefined ? null : m[metric]! * 100 }));
  // An unexpected dataset marked unavailable (e.g. its evaluation failed) is shown too, as missing.
  for (const name of result.unavailable.keys()) if (!expectedNames.has(name)) extra.push({ name, score: null });
  const modelName = typeof result.metadata.model_name === 'string' ? result.metadata.model_name : '(unnamed model)';
  return {
    modelName,
    benchmark: cat ? cat.name : 'MMEB',
    metric,
    datasets: rows,
    metaTasks,
    ind,
    ood,
    overall,
    fourCategoryMean,
    missing: rows.filter((r) => r.score === null).map((r) => ({ name: r.name, reason: r.missingReason ?? 'missing' })),
    partial: overall.partial,
    extra,
    complete: overall.complete,
  };
}

/**
 * The aggregates of dataset scores: each meta-task, IND, OOD, the overall mean and the four-category
 * mean, grouped by the rows' own meta-task and distribution. A meta-task no row belongs to is left out
 * of the four-category mean rather than counted missing. One definition for summaries and for the
 * resampled scores of the paired bootstrap (significance.ts).
 */
export function aggregateDatasetRows(rows: readonly DatasetScoreRow[]): MmebAggregates {
  const group = (f: (r: DatasetScoreRow) => boolean): GroupScore => groupOf(rows.filter(f));
  const metaTasks = Object.fromEntries(META_TASKS.map((t) => [t, group((r) => r.metaTask === t)])) as Record<MetaTask, GroupScore>;
  const overall = groupOf(rows);
  const tasksExpected = META_TASKS.filter((t) => metaTasks[t].expected > 0);
  const taskMeans = tasksExpected.map((t) => metaTasks[t].mean).filter((x): x is number => x !== null);
  const fourCategoryMean: GroupScore = {
    mean: taskMeans.length ? mean(taskMeans) : null,
    complete: tasksExpected.every((t) => metaTasks[t].complete),
    present: taskMeans.length,
    expected: tasksExpected.length,
    missing: overall.missing,
    partial: overall.partial,
  };
  return { metaTasks, ind: group((r) => r.distribution === 'IND'), ood: group((r) => r.distribution === 'OOD'), overall, fourCategoryMean };
}

/**
 * The mean of several results of one model (runs with other seeds, scored on the same datasets):
 * each dataset's score is the mean of the runs' scores, every aggregate recomputed from those. The
 * runs must list the same datasets; a dataset one run did not score is missing in the mean.
 */
export function averageSummaries(summaries: readonly MmebSummary[], labels: readonly string[]): MmebSummary {
  const first = summaries[0];
  if (!first) throw new UnimeError('no results to average', { fix: 'give at least one result' });
  if (summaries.length === 1) return first;
  const names = first.datasets.map((d) => d.name).join('\n');
  summaries.forEach((x, i) => {
    if (x.datasets.map((d) => d.name).join('\n') !== names || x.metric !== first.metric) {
      throw new UnimeError(`${labels[i]} is not scored on the same datasets and metric as ${labels[0]}`, { file: labels[i], fix: 'average only runs of the same evaluation (other seeds of one recipe)' });
    }
  });
  const rows: DatasetScoreRow[] = first.datasets.map((d, j) => {
    const scores = summaries.map((x) => x.datasets[j]!.score);
    if (scores.some((v) => v === null)) {
      const missingIn = labels.filter((_, i) => scores[i] === null);
      return { ...d, score: null, partial: false, missingReason: `not scored in ${missingIn.join(', ')}` };
    }
    return { ...d, score: (scores as number[]).reduce((a, v) => a + v, 0) / scores.length, partial: summaries.some((x) => x.datasets[j]!.partial) };
  });
  const agg = aggregateDatasetRows(rows);
  return {
    ...first,
    ...agg,
    modelName: `${first.modelName} (mean of ${summaries.length} runs)`,
    datasets: rows,
    missing: rows.filter((r) => r.score === null).map((r) => ({ name: r.name, reason: r.missingReason ?? 'not scored' })),
    partial: rows.filter((r) => r.partial).map((r) => r.name),
    complete: rows.every((r) => r.score !== null && !r.partial),
  };
}

function groupOf(rows: readonly DatasetScoreRow[]): GroupScore {
  const present = rows.filter((r) => r.score !== null);
  const missing = rows.filter((r) => r.score === null).map((r) => r.name);
  const partial = present.filter((r) => r.partial).map((r) => r.name);
  return {
    mean: present.length ? mean(present.map((r) => r.score!)) : null,
    complete: missing.length === 0 && partial.length === 0,
    present: present.length,
    expected: rows.length,
    missing,
    partial,
  };
}

function mean(xs: readonly number[]): number {
  let s = 0;
  for (const x of xs) s += x;
  return s / xs.length;
}

/** Mean of the four meta-task scores (the paper-style overall). */
export function fourCategoryMean(scores: Readonly<Record<MetaTask, number>>): number {
  return mean(META_TASKS.map((t) => scores[t]));
}

/**
 * The 36-dataset mean implied by the four meta-task scores when every dataset is present:
 * (10 Cls + 10 VQA + 12 Ret + 4 Grd) / 36. Turns a paper's category columns into the MMEB Overall.
 */
export function datasetWeightedMean(scores: Readonly<Record<MetaTask, number>>): number {
  let s = 0;
  for (const t of META_TASKS) s += scores[t] * mmebDatasets({ metaTask: t }).length;
  return s / MMEB_IMAGE_DATASETS.length;
}

// ---------------------------------------------------------------------------------------------
// Rounding

/**
 * Round half to even on the decimal value, the convention of Python's round() and NumPy that the
 * published tables follow: 77.125 -> 77.12, 64.25 -> 64.2, 66.625 -> 66.62. The value is first
 * snapped to 1e-6 of the last digit so that float noise (64.25 computed as 64.24999999999999)
 * does not decide the direction.
 */
export function roundHalfEven(x: number, decimals = 2): number {
  if (!Number.isFinite(x)) return x;
  const f = 10 ** decimals;
  const scaled = Number((x * f).toFixed(6));
  const floor = Math.floor(scaled);
  const diff = scaled - floor;
  let r: number;
  if (Math.abs(diff - 0.5) < 1e-9) r = floor % 2 === 0 ? floor : floor + 1;
  else r = Math.round(scaled);
  return r / f;
}

/** A score for a table: rounded half to even, fixed decimals. */
export function formatScore(x: number, decimals = 2): string {
  const r = roundHalfEven(x, decimals);
  const s = r.toFixed(decimals);
  return s === `-${(0).toFixed(decimals)}` ? (0).toFixed(decimals) : s;
}

// ---------------------------------------------------------------------------------------------

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'string') return `the string ${JSON.stringify(v.length > 40 ? v.slice(0, 40) + '…' : v)}`;
  if (typeof v === 'object') return 'an object';
  return `${typeof v} ${String(v)}`;
}
