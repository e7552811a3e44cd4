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

/** A dataset's row hits as stored in mmeb-summary.json: one '1' or '0' per row, in row order. */
export function rowHitsString(ranks: ArrayLike<number>): string {
  let s = '';
  for (let i = 0; i < ranks.length; i++) s += ranks[i] === 1 ? '1' : '0';
  return s;
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
    if (typeof s !== 'string' || !/^[01]*$/.test(s)) throw new UnimeError('must be a string of 0 and 1, one per row', { file, field: `row_hits.${name}`, fix });
    out.set(name, Uint8Array.from(s, (c) => (c === '1' ? 1 : 0)));
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
}

/**
 * Paired bootstrap intervals of `candidate - baseline`, or null when the metric is not hit@1 or no
 * dataset has row hits on both sides. A dataset's hits are used only when both sides hold the same
 * number of rows and each side's hits average to its score (a summary left from another run is ignored).
 */
export function pairedBootstrap(baseline: ScoredSide, candidate: ScoredSide, options: BootstrapOptions = {}): DeltaIntervals | null {
  const resamples = options.resamples ?? 2000;
  const level = options.level ?? 0.95;
  if (!(Number.isInteger(resamples) && resamples >= 10)) throw new UnimeError(`resamples must be a whole number of at least 10, got ${resamples}`, { field: 'resamples' });
  if (!(level > 0 && level < 1)) throw new UnimeError(`level must lie between 0 and 1, got ${level}`, { field: 'level' });
  if (baseline.summary.metric !== MMEB_MAIN_METRIC || candidate.summary.metric !== MMEB_MAIN_METRIC) return null;
  const bRows = baseline.summary.datasets;
  const cRows = candidate.summary.datasets;
  if (bRows.length !== cRows.length || bRows.some((r, i) => r.name !== cRows[i]!.name)) return null;

  const hitsFor = (side: ScoredSide, row: DatasetScoreRow): Uint8Array | null => {
    const h = side.rowHits?.get(row.name);
    if (!h || h.length === 0 || row.score === null) return null;
    let s = 0;
    for (const x of h) s += x;
    return Math.abs((100 * s) / h.length - row.score) < 1e-6 ? h : null;
  };
  const paired: ({ b: Uint8Array; c: Uint8Array } | null)[] = bRows.map((br, i) => {
    const b = hitsFor(baseline, br);
    const c = hitsFor(candidate, cRows[i]!);
    return b && c && b.length === c.length ? { b, c } : null;
  });
  if (paired.every((p) => p === null)) return null;
  const scored = (i: number) => bRows[i]!.score !== null || cRows[i]!.score !== null;
  const allPaired = paired.every((p, i) => p !== null || !scored(i));

  const rng = new Rng(options.seed ?? 0);
  const datasetDeltas = paired.map((p) => (p ? new Float64Array(resamples) : null));
  const aggregateDeltas = new Map(AGGREGATE_KEYS.map((k) => [k, new Float64Array(resamples)] as const));
  const bScores = bRows.map((r) => r.score);
  const cScores = cRows.map((r) => r.score);
  for (let r = 0; r < resamples; r++) {
    paired.forEach((p, i) => {
      if (!p) return;
      const n = p.b.length;
      let sb = 0;
      let sc = 0;
      for (let j = 0; j < n; j++) {
        const k = rng.int(n);
        sb += p.b[k]!;
        sc += p.c[k]!;
      }
      bScores[i] = (100 * sb) / n;
      cScores[i] = (100 * sc) / n;
      datasetDeltas[i]![r] = cScores[i]! - bScores[i]!;
    });
    if (!allPaired) continue;
    const ba = aggregateDatasetRows(bRows.map((row, i) => ({ ...row, score: bScores[i]! })));
    const ca = aggregateDatasetRows(cRows.map((row, i) => ({ ...row, score: cScores[i]! })));
    for (const [k, arr] of aggregateDeltas) {
      const x = aggregateOf(ba, k).mean;
      const y = aggregateOf(ca, k).mean;
      arr[r] = x === null || y === null ? NaN : y - x;
    }
  }
  const datasets = new Map<string, Interval>();
  datasetDeltas.forEach((d, i) => {
    if (d) datasets.set(bRows[i]!.name, percentileInterval(d, level));
  });
  const aggregates = new Map<AggregateKey, Interval>();
  if (allPaired) for (const [k, d] of aggregateDeltas) if (!Number.isNaN(d[0]!)) aggregates.set(k, percentileInterval(d, level));
  return { level, resamples, datasets, aggregates };
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
