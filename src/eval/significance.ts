/**
 * How far a difference between two MMEB results could be an accident of the evaluation rows: a
 * paired bootstrap over the rows, for every score of the comparison (each dataset, each meta-task,
 * IND, OOD, overall, four-category mean).
 *
 * Both results must carry the hit@1 of every row (`row_hits` in mmeb-summary.json, written by
 * `unime eval mmeb`). A resample draws each dataset's rows with replacement, the same draw for both
 * results (the rows stay paired), recomputes both results' dataset scores and from them every
 * aggregate with the summaries' own definition ({@link aggregateDatasetRows}); the percentiles of the
 * resampled differences give the interval (95 % by default). It says how much the choice of rows
 * moves a difference, not how much another training seed would: an interval that holds 0 is a
 * difference a benchmark of other rows like these might not show.
 */
import { UnimeError } from '../errors.js';
import { Rng } from '../runtime/rng.js';
import { type DatasetScoreRow, type GroupScore, type MmebAggregates, type MmebSummary, MMEB_MAIN_METRIC, aggregateDatasetRows } from './aggregate.js';
import { type MetaTask, META_TASKS } from './mmeb-datasets.js';

/** Per dataset, per row in file order: 1 where the correct candidate ranked first. */
export type RowHits = ReadonlyMap<string, Uint8Array>;

/** 0/1 outcomes per row as stored in result files: one '1' or '0' per row, in row order. */
export function bitString(bits: ArrayLike<number | boolean>): string {
  let s = '';
  for (let i = 0; i < bits.length; i++) s += bits[i] ? '1' : '0';
  return s;
}

/** Row hits from ranks: '1' where the correct item ranked within the top k. */
export function rowHitsString(ranks: ArrayLike<number>, k = 1): string {
  return bitString(Array.from(ranks, (r) => r <= k));
}

/** A string of '0' and '1' read back (empty for no rows), or null when it is anything else. */
export function parseBits(value: unknown): Uint8Array | null {
  return typeof value === 'string' && /^[01]*$/.test(value) ? Uint8Array.from(value, (c) => (c === '1' ? 1 : 0)) : null;
}

/**
 * The `row_hits` of a summary file, or null when it has none (summaries written before they were
 * recorded, or by other tools). A malformed entry is an error naming the file and the dataset.
 */
export function parseRowHits(value: unknown, file: string): Map<string, Uint8Array> | null {
  if (value === undefined || value === null) return null;
  const fix = 'run `unime eval mmeb` again to rewrite the summary';
  if (typeof value !== 'object' || Array.isArray(value)) throw new UnimeError('must map dataset names to strings of 0 and 1', { file, field: 'row_hits', fix });
  const out = new Map<string, Uint8Array>();
  for (const [name, s] of Object.entries(value as Record<string, unknown>)) {
    const bits = parseBits(s);
    if (!bits) throw new UnimeError('must be a string of 0 and 1, one per row', { file, field: `row_hits.${name}`, fix });
    out.set(name, bits);
  }
  return out;
}

export interface Interval {
  /** Bounds of the difference (candidate - baseline), in percentage points. */
  readonly low: number;
  readonly high: number;
}

/** The aggregate scores a comparison shows, by name. */
export type AggregateKey = 'overall' | 'ind' | 'ood' | 'fourCategoryMean' | MetaTask;

export function aggregateOf(a: MmebAggregates, key: AggregateKey): GroupScore {
  return key === 'overall' || key === 'ind' || key === 'ood' || key === 'fourCategoryMean' ? a[key] : a.metaTasks[key];
}

const AGGREGATE_KEYS: readonly AggregateKey[] = ['overall', 'ind', 'ood', ...META_TASKS, 'fourCategoryMean'];

export interface DeltaIntervals {
  readonly level: number;
  readonly resamples: number;
  /** Per dataset with row hits on both sides that match their scores. */
  readonly datasets: ReadonlyMap<string, Interval>;
  /** Per aggregate; empty unless every scored dataset has usable row hits on both sides. */
  readonly aggregates: ReadonlyMap<AggregateKey, Interval>;
}

export interface BootstrapOptions {
  /** Default 2000. */
  resamples?: number;
  /** Default 0.95. */
  level?: number;
  /** Default 0: the same inputs give the same interval. */
  seed?: number;
}

export interface ScoredSide {
  readonly summary: MmebSummary;
  readonly rowHits?: RowHits;
  /**
   * Several runs of one model (seeds) scored on the same rows, the summary their mean: per dataset, each
   * run's hits. Used instead of rowHits; a resample draws the same rows for every run.
   */
  readonly seedHits?: ReadonlyMap<string, readonly Uint8Array[]>;
}

/**
 * Paired bootstrap intervals of `candidate - baseline`, or null when the metric is not hit@1 or no
 * dataset has row hits on both sides. A dataset's hits are used only when both sides hold the same
 * number of rows and each side's hits average to its score (a summary left from another run is ignored).
 */
export function pairedBootstrap(baseline: ScoredSide, candidate: ScoredSide, options: BootstrapOptions = {}): DeltaIntervals | null {
  if (baseline.summary.metric !== MMEB_MAIN_METRIC || candidate.summary.metric !== MMEB_MAIN_METRIC) return null;
  const bRows = baseline.summary.datasets;
  const cRows = candidate.summary.datasets;
  if (bRows.length !== cRows.length || bRows.some((r, i) => r.name !== cRows[i]!.name)) return null;

  // each run's hits of a dataset, used only when they average to the recorded score
  const hitsFor = (side: ScoredSide, row: DatasetScoreRow): readonly Uint8Array[] | null => {
    const one = side.rowHits?.get(row.name);
    const runs = side.seedHits?.get(row.name) ?? (one ? [one] : null);
    if (!runs || runs.length === 0 || row.score === null) return null;
    const n = runs[0]!.length;
    if (n === 0 || runs.some((h) => h.length !== n)) return null;
    return sameScores([runs.reduce((a, h) => a + percentOf(h), 0) / runs.length], [row.score]) ? runs : null;
  };
  const paired: ({ b: readonly Uint8Array[]; c: readonly Uint8Array[] } | null)[] = bRows.map((br, i) => {
    const b = hitsFor(baseline, br);
    const c = hitsFor(candidate, cRows[i]!);
    return b && c && b[0]!.length === c[0]!.length ? { b, c } : null;
  });
  if (paired.every((p) => p === null)) return null;
  const scored = (i: number) => bRows[i]!.score !== null || cRows[i]!.score !== null;
  const allPaired = paired.every((p, i) => p !== null || !scored(i));
  const at = paired.flatMap((p, i) => (p ? [i] : []));

  const bScores = bRows.map((r) => r.score);
  const cScores = cRows.map((r) => r.score);
  const mean = (xs: Float64Array) => xs.reduce((a, x) => a + x, 0) / xs.length;
  const intervals = bootstrapIntervals(
    // a stratum's "metrics" are the runs (one, or one per seed), averaged below
    at.map((i) => ({ baseline: paired[i]!.b, candidate: paired[i]!.c })),
    (bm, cm) => {
      const out = new Map<string, number>();
      at.forEach((i, j) => {
        bScores[i] = 100 * mean(bm[j]!);
        cScores[i] = 100 * mean(cm[j]!);
        out.set(`dataset:${bRows[i]!.name}`, cScores[i]! - bScores[i]!);
      });
      if (!allPaired) return out;
      const ba = aggregateDatasetRows(bRows.map((row, i) => ({ ...row, score: bScores[i]! })));
      const ca = aggregateDatasetRows(cRows.map((row, i) => ({ ...row, score: cScores[i]! })));
      for (const k of AGGREGATE_KEYS) {
        const x = aggregateOf(ba, k).mean;
        const y = aggregateOf(ca, k).mean;
        if (x !== null && y !== null) out.set(`aggregate:${k}`, y - x);
      }
      return out;
    },
    options,
  );
  const datasets = new Map<string, Interval>();
  const aggregates = new Map<AggregateKey, Interval>();
  for (const [name, iv] of intervals.intervals) {
    if (name.startsWith('dataset:')) datasets.set(name.slice('dataset:'.length), iv);
    else aggregates.set(name.slice('aggregate:'.length) as AggregateKey, iv);
  }
  return { level: intervals.level, resamples: intervals.resamples, datasets, aggregates };
}

/**
 * The rows of one group (a dataset, a SugarCrepe subset, the images or the captions of a retrieval
 * set), paired: per metric, each row's 0/1 outcome on both sides, the same rows in the same order.
 */
export interface PairedStratum {
  readonly baseline: readonly Uint8Array[];
  readonly candidate: readonly Uint8Array[];
}

/**
 * The paired bootstrap itself: each resample draws every stratum's rows with replacement (the same
 * draw for both sides), takes each metric's mean per side (0..1), and `derive` turns both sides'
 * means (per stratum, per metric) into named differences; their percentiles are the intervals.
 * A name `derive` leaves out of some resample gets no interval. The sides may hold different numbers
 * of metrics (runs of several seeds against one), every one with a value per row.
 */
export function bootstrapIntervals(
  strata: readonly PairedStratum[],
  derive: (baseline: readonly Float64Array[], candidate: readonly Float64Array[]) => ReadonlyMap<string, number>,
  options: BootstrapOptions = {},
): { level: number; resamples: number; intervals: Map<string, Interval> } {
  const resamples = options.resamples ?? 2000;
  const level = options.level ?? 0.95;
  if (!(Number.isInteger(resamples) && resamples >= 10)) throw new UnimeError(`resamples must be a whole number of at least 10, got ${resamples}`, { field: 'resamples' });
  if (!(level > 0 && level < 1)) throw new UnimeError(`level must lie between 0 and 1, got ${level}`, { field: 'level' });
  for (const s of strata) {
    const n = s.baseline[0]?.length ?? 0;
    if (n === 0 || s.candidate.length === 0 || [...s.baseline, ...s.candidate].some((m) => m.length !== n)) {
      throw new Error('bootstrapIntervals: every stratum needs rows, metrics on both sides and one value per row');
    }
  }
  const rng = new Rng(options.seed ?? 0);
  const bm = strata.map((s) => new Float64Array(s.baseline.length));
  const cm = strata.map((s) => new Float64Array(s.candidate.length));
  const samples = new Map<string, Float64Array>();
  const seen = new Map<string, number>();
  for (let r = 0; r < resamples; r++) {
    strata.forEach((s, si) => {
      const n = s.baseline[0]!.length;
      bm[si]!.fill(0);
      cm[si]!.fill(0);
      for (let j = 0; j < n; j++) {
        const k = rng.int(n);
        for (let m = 0; m < s.baseline.length; m++) bm[si]![m]! += s.baseline[m]![k]!;
        for (let m = 0; m < s.candidate.length; m++) cm[si]![m]! += s.candidate[m]![k]!;
      }
      for (let m = 0; m < s.baseline.length; m++) bm[si]![m]! /= n;
      for (let m = 0; m < s.candidate.length; m++) cm[si]![m]! /= n;
    });
    for (const [name, d] of derive(bm, cm)) {
      let arr = samples.get(name);
      if (!arr) samples.set(name, (arr = new Float64Array(resamples)));
      arr[r] = d;
      seen.set(name, (seen.get(name) ?? 0) + 1);
    }
  }
  const intervals = new Map<string, Interval>();
  for (const [name, arr] of samples) if (seen.get(name) === resamples && arr.every(Number.isFinite)) intervals.set(name, percentileInterval(arr, level));
  return { level, resamples, intervals };
}

/** Each metric's mean (0..1) over all rows, per stratum: what the recorded scores must equal. */
export function observedMeans(strata: readonly (readonly Uint8Array[])[]): Float64Array[] {
  return strata.map((metrics) => Float64Array.from(metrics, (m) => percentOf(m) / 100));
}

/** The share of 1s among 0/1 outcomes, in percent (NaN for none). */
export function percentOf(bits: Uint8Array): number {
  return bits.length === 0 ? NaN : (100 * bits.reduce((a, b) => a + b, 0)) / bits.length;
}

/** Values equal within 1e-6 (scores in percent recomputed from row outcomes). */
export function sameScores(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((v, i) => Math.abs(v - b[i]!) < 1e-6);
}

/** The central `level` interval of the samples (linear interpolation between order statistics). */
export function percentileInterval(samples: Float64Array, level: number): Interval {
  const sorted = Float64Array.from(samples).sort();
  const q = (p: number) => {
    const at = p * (sorted.length - 1);
    const lo = Math.floor(at);
    const hi = Math.min(lo + 1, sorted.length - 1);
    return sorted[lo]! + (at - lo) * (sorted[hi]! - sorted[lo]!);
  };
  const tail = (1 - level) / 2;
  return { low: q(tail), high: q(1 - tail) };
}
