/**
 * MMEB scoring, model-independent: every query row has its own candidate list with the correct
 * candidate at index 0; the model's job is to score it above the others by cosine similarity.
 * Everything here is a pure function over Float32Array buffers.
 *
 * Conventions (the ones tests pin down):
 * - Cosine similarity is computed in float64 from float32 inputs. A zero vector has no direction:
 *   its cosine with anything is defined as 0 (the NumPy reference gives NaN there).
 * - Non-finite embedding values (NaN, Infinity) are rejected with a UnimeError naming the row:
 *   they mean the model or its precision setting is broken, and ranking them would hide that.
 * - Rank of the correct candidate, 1-based: 1 + the number of competitors scoring strictly higher,
 *   plus, under the default `pessimistic` tie rule, the competitors scoring exactly equal. A tie
 *   therefore counts against the correct candidate, so a model that collapses every input onto one
 *   vector (or returns zeros) scores 0 instead of 100. `optimistic` counts ties in its favour,
 *   which is what VLM2Vec v1's argmax does (v2 leaves it to the sort order; see below).
 * - Competitors are the other entries of the row. An entry that is the very same item as the correct
 *   one (same text and image path, i.e. the same pool index after {@link dedupeCandidateRows}) is not
 *   a competitor: it *is* the answer. VLM2Vec behaves the same way because it matches candidates by
 *   name. With the per-row layout ({@link rankRows}) entries are distinct by position.
 *
 * VLM2Vec, for reference. v1 (`eval.py` + `evaluation/eval_utils.get_pred`) takes `np.argmax` over
 * the row's cosine scores and counts a hit when it returns 0; argmax returns the first maximum, so a
 * tie with the correct candidate counts as correct (optimistic). v2 (`eval.py` + `src/eval_utils/
 * metrics.RankingMetrics`) ranks with `np.argsort(-scores)` over dot products of the (already
 * L2-normalised) embeddings; the default sort is not stable, so tied candidates fall in whatever
 * order it leaves them, which depends on row length, NumPy version and CPU. v2 matches candidates by
 * name, so a repeat of the correct candidate in its row counts as relevant (its map@k counts such a
 * repeat twice, which is why RefCOCO-Matching's map@10 exceeds its mrr@10 in the shared report).
 * Its metrics, with one relevant item at rank r and cutoff k:
 * hit@k = [r <= k]; precision@k = hit/k; recall@k = hit; f1@k = 2PR/(P+R); ndcg (linear and
 * exponential gain coincide for binary relevance) = hit/log2(r+1) (ideal DCG is 1); mrr@k = map@k =
 * hit/r. Each is averaged over the queries; `num_pred` and `num_data` count the queries. Those are
 * the definitions used here, and the key order of {@link metricsFromRanks} follows its reports.
 */
import { UnimeError } from '../errors.js';

/** Row-major [rows, dim] embeddings. */
export interface EmbeddingMatrix {
  readonly data: Float32Array;
  readonly rows: number;
  readonly dim: number;
}

/** Metrics of one dataset in VLM2Vec's layout: `hit@1`, ..., `mrr@10`, `num_pred`, `num_data`. */
export type DatasetMetrics = Readonly<Record<string, number>>;

export type TieRule = 'pessimistic' | 'optimistic';
export const TIE_RULES: readonly TieRule[] = ['pessimistic', 'optimistic'];
export const DEFAULT_TIE_RULE: TieRule = 'pessimistic';

/** The cutoffs VLM2Vec reports. */
export const DEFAULT_KS: readonly number[] = [1, 5, 10];

export interface RankOptions {
  tieRule?: TieRule;
  /** Names the data in error messages, e.g. the dataset: "ImageNet-1K". */
  label?: string;
}

// ---------------------------------------------------------------------------------------------
// Matrices

/** Wrap a buffer as [rows, dim], checking the sizes. */
export function embeddingMatrix(data: Float32Array, rows: number, dim: number, label = 'embeddings'): EmbeddingMatrix {
  if (!Number.isInteger(rows) || rows < 0 || !Number.isInteger(dim) || dim < 1) {
    throw new UnimeError(`shape [${rows}, ${dim}] is not a valid embedding shape`, {
      field: label,
      fix: 'pass a non-negative whole number of rows and a dimension of at least 1',
    });
  }
  if (data.length !== rows * dim) {
    throw new UnimeError(`buffer holds ${data.length} values, but [${rows}, ${dim}] needs ${rows * dim}`, {
      field: label,
      fix: 'check that the embedding function returns one vector of the model dimension per input',
    });
  }
  return { data, rows, dim };
}

/** Stack equal-length vectors into one matrix. `dim` is required when `rows` may be empty. */
export function stackRows(rows: readonly ArrayLike<number>[], dim?: number, label = 'embeddings'): EmbeddingMatrix {
  const first = rows[0];
  const d = dim ?? first?.length;
  if (d === undefined) {
    throw new UnimeError('no rows given and no dimension', { field: label, fix: 'pass the embedding dimension' });
  }
  const data = new Float32Array(rows.length * d);
  rows.forEach((r, i) => {
    if (r.length !== d) {
      throw new UnimeError(`row ${i} has ${r.length} values, expected ${d}`, {
        field: `${label}[${i}]`,
        fix: 'every embedding of one model must have the same dimension',
      });
    }
    for (let j = 0; j < d; j++) data[i * d + j] = r[j]!;
  });
  return embeddingMatrix(data, rows.length, d, label);
}

/** One row as a view (no copy). */
export function matrixRow(m: EmbeddingMatrix, i: number): Float32Array {
  return m.data.subarray(i * m.dim, (i + 1) * m.dim);
}

/** Per-row candidate matrices from a pool of unique embeddings and the index lists of each row. */
export function expandRows(pool: EmbeddingMatrix, rowIndices: readonly ArrayLike<number>[]): EmbeddingMatrix[] {
  return rowIndices.map((idx, r) => {
    const out = new Float32Array(idx.length * pool.dim);
    for (let j = 0; j < idx.length; j++) {
      const p = checkIndex(idx[j]!, pool.rows, `rows[${r}][${j}]`);
      out.set(matrixRow(pool, p), j * pool.dim);
    }
    return { data: out, rows: idx.length, dim: pool.dim };
  });
}

// ---------------------------------------------------------------------------------------------
// Cosine similarity

/** Cosine similarity of two vectors, 0 when either has zero norm. */
export function cosineSimilarity(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) {
    throw new UnimeError(`cannot compare vectors of ${a.length} and ${b.length} values`, {
      fix: 'both embeddings must come from the same model',
    });
  }
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!;
    const y = b[i]!;
    dot += x * y;
    na += x * x;
    nb += y * y;
  }
  return cosineFrom(dot, Math.sqrt(na), Math.sqrt(nb));
}

function cosineFrom(dot: number, normA: number, normB: number): number {
  return normA === 0 || normB === 0 ? 0 : dot / (normA * normB);
}

/** L2 norm of every row, in float64; throws on a non-finite value. */
export function rowNorms(m: EmbeddingMatrix, label = 'embeddings'): Float64Array {
  const norms = new Float64Array(m.rows);
  for (let i = 0; i < m.rows; i++) {
    let s = 0;
    const base = i * m.dim;
    for (let j = 0; j < m.dim; j++) {
      const v = m.data[base + j]!;
      if (!Number.isFinite(v)) {
        throw new UnimeError(`embedding row ${i} holds ${v} at position ${j}`, {
          field: `${label}[${i}]`,
          fix: 'the model produced a non-finite embedding: check its weights, the precision setting (bf16/fp16 overflow) and that input',
        });
      }
      s += v * v;
    }
    norms[i] = Math.sqrt(s);
  }
  return norms;
}

function dotRows(a: Float32Array, aBase: number, b: Float32Array, bBase: number, dim: number): number {
  let s = 0;
  for (let j = 0; j < dim; j++) s += a[aBase + j]! * b[bBase + j]!;
  return s;
}

// ---------------------------------------------------------------------------------------------
// Ranks

/**
 * 1-based rank of entry 0 among `scores` (higher is better) under `tieRule`. Entries flagged in
 * `sameAsCorrect` are the correct item again and do not compete. A NaN score for the correct entry
 * ranks it last; a NaN competitor ranks below everything.
 */
export function rankOfCorrect(
  scores: ArrayLike<number>,
  tieRule: TieRule = DEFAULT_TIE_RULE,
  sameAsCorrect?: ArrayLike<boolean>,
): number {
  if (scores.length === 0) throw new UnimeError('no candidates to rank', { fix: 'every row needs at least its correct candidate' });
  checkTieRule(tieRule);
  let rank = 1;
  for (let j = 1; j < scores.length; j++) if (outranksCorrect(scores, j, tieRule, sameAsCorrect)) rank++;
  return rank;
}

/** Whether candidate j (> 0) ranks above the correct candidate 0 under the tie rule (a NaN correct score loses to all). */
function outranksCorrect(scores: ArrayLike<number>, j: number, tieRule: TieRule, sameAsCorrect?: ArrayLike<boolean>): boolean {
  if (sameAsCorrect?.[j]) return false;
  const s0 = scores[0]!, s = scores[j]!;
  return Number.isNaN(s0) || s > s0 || (s === s0 && tieRule === 'pessimistic');
}

/**
 * Ranks with one candidate matrix per query row (`candidates[i]` is [n_i, dim], row 0 correct;
 * lengths may differ). Entries are distinct by position.
 */
export function rankRows(queries: EmbeddingMatrix, candidates: readonly EmbeddingMatrix[], options: RankOptions = {}): Int32Array {
  const label = options.label ?? 'scoring';
  const tieRule = checkTieRule(options.tieRule ?? DEFAULT_TIE_RULE);
  if (candidates.length !== queries.rows) {
    throw new UnimeError(`${queries.rows} query rows but ${candidates.length} candidate lists`, {
      field: label,
      fix: 'pass one candidate list per query row',
    });
  }
  const qNorms = rowNorms(queries, `${label}: queries`);
  const ranks = new Int32Array(queries.rows);
  const scores: number[] = [];
  for (let i = 0; i < queries.rows; i++) {
    const c = candidates[i]!;
    const what = `${label}: candidates[${i}]`;
    if (c.dim !== queries.dim) {
      throw new UnimeError(`candidate dimension ${c.dim} differs from query dimension ${queries.dim}`, {
        field: what,
        fix: 'queries and candidates must be embedded by the same model',
      });
    }
    if (c.rows === 0) throw new UnimeError('empty candidate list', { field: what, fix: 'every row needs its correct candidate at index 0' });
    const cNorms = rowNorms(c, what);
    scores.length = c.rows;
    for (let j = 0; j < c.rows; j++) {
      scores[j] = cosineFrom(dotRows(queries.data, i * queries.dim, c.data, j * c.dim, c.dim), qNorms[i]!, cNorms[j]!);
    }
    ranks[i] = rankOfCorrect(scores, tieRule);
  }
  return ranks;
}

export interface PooledRankOptions extends RankOptions {
  /** Row -> query pool row, when the queries were deduplicated too; default: row i uses query i. */
  queryOfRow?: ArrayLike<number>;
  /** Filled with one array per row: 1 where that candidate ranks above the correct one (which candidates beat it). */
  outranked?: Uint8Array[];
}

/**
 * Ranks with candidates given as indices into a pool of unique embeddings (the layout
 * {@link dedupeCandidateRows} produces): `rowCandidates[i][0]` is the correct candidate of row i.
 * Entries equal to that index are the correct item again and do not compete.
 */
export function rankPooled(
  queries: EmbeddingMatrix,
  pool: EmbeddingMatrix,
  rowCandidates: readonly ArrayLike<number>[],
  options: PooledRankOptions = {},
): Int32Array {
  const label = options.label ?? 'scoring';
  const tieRule = checkTieRule(options.tieRule ?? DEFAULT_TIE_RULE);
  if (pool.dim !== queries.dim) {
    throw new UnimeError(`candidate dimension ${pool.dim} differs from query dimension ${queries.dim}`, {
      field: `${label}: candidates`,
      fix: 'queries and candidates must be embedded by the same model',
    });
  }
  const qOf = options.queryOfRow;
  const nRows = qOf ? qOf.length : queries.rows;
  if (rowCandidates.length !== nRows) {
    throw new UnimeError(`${nRows} query rows but ${rowCandidates.length} candidate lists`, {
      field: label,
      fix: 'pass one candidate list per query row',
    });
  }
  const qNorms = rowNorms(queries, `${label}: queries`);
  const pNorms = rowNorms(pool, `${label}: candidates`);
  const dim = queries.dim;
  const ranks = new Int32Array(nRows);
  const scores: number[] = [];
  const same: boolean[] = [];
  for (let i = 0; i < nRows; i++) {
    const q = qOf ? checkIndex(qOf[i]!, queries.rows, `${label}: queryOfRow[${i}]`) : i;
    const idx = rowCandidates[i]!;
    if (idx.length === 0) {
      throw new UnimeError('empty candidate list', { field: `${label}: rows[${i}]`, fix: 'every row needs its correct candidate at index 0' });
    }
    scores.length = idx.length;
    same.length = idx.length;
    const correct = checkIndex(idx[0]!, pool.rows, `${label}: rows[${i}][0]`);
    for (let j = 0; j < idx.length; j++) {
      const p = j === 0 ? correct : checkIndex(idx[j]!, pool.rows, `${label}: rows[${i}][${j}]`);
      same[j] = j > 0 && p === correct;
      scores[j] = cosineFrom(dotRows(queries.data, q * dim, pool.data, p * dim, dim), qNorms[q]!, pNorms[p]!);
    }
    ranks[i] = rankOfCorrect(scores, tieRule, same);
    if (options.outranked) {
      const o = new Uint8Array(idx.length);
      for (let j = 1; j < idx.length; j++) o[j] = outranksCorrect(scores, j, tieRule, same) ? 1 : 0;
      options.outranked[i] = o;
    }
  }
  return ranks;
}

// ---------------------------------------------------------------------------------------------
// Metrics

export interface MetricOptions {
  /** Cutoffs; default 1, 5, 10 as in VLM2Vec's reports. */
  ks?: readonly number[];
  /** Rows of the dataset, when only some were scored (default: the number of ranks). */
  numData?: number;
}

/** The metric keys for `ks`, in VLM2Vec's report order (without `num_pred`, `num_data`). */
export function metricKeys(ks: readonly number[] = DEFAULT_KS): string[] {
  const families = ['hit', 'ndcg_linear', 'ndcg_exponential', 'precision', 'recall', 'f1', 'map', 'mrr'];
  return families.flatMap((f) => ks.map((k) => `${f}@${k}`));
}

/** Metrics from 1-based ranks of the correct candidate (one per query row), values in 0..1. */
export function metricsFromRanks(ranks: ArrayLike<number>, options: MetricOptions = {}): DatasetMetrics {
  const ks = [...(options.ks ?? DEFAULT_KS)].sort((a, b) => a - b);
  for (const k of ks) {
    if (!Number.isInteger(k) || k < 1) throw new UnimeError(`cutoff ${k} is not a positive whole number`, { field: 'ks', fix: 'use cutoffs such as 1, 5, 10' });
  }
  const n = ranks.length;
  if (n === 0) throw new UnimeError('no rows were scored', { fix: 'score at least one row of the dataset' });
  const numData = options.numData ?? n;
  if (!Number.isInteger(numData) || numData < n) {
    throw new UnimeError(`num_data ${numData} is less than the ${n} rows scored`, { field: 'numData', fix: 'pass the size of the whole dataset' });
  }
  const sums = new Map<string, number>();
  for (const key of metricKeys(ks)) sums.set(key, 0);
  const add = (key: string, v: number) => sums.set(key, sums.get(key)! + v);
  for (let i = 0; i < n; i++) {
    const r = ranks[i]!;
    if (!Number.isInteger(r) || r < 1) throw new UnimeError(`rank ${r} at row ${i} is not a positive whole number`, { field: `ranks[${i}]` });
    for (const k of ks) {
      if (r > k) continue;
      const dcg = 1 / Math.log2(r + 1);
      add(`hit@${k}`, 1);
      add(`ndcg_linear@${k}`, dcg);
      add(`ndcg_exponential@${k}`, dcg);
      add(`precision@${k}`, 1 / k);
      add(`recall@${k}`, 1);
      add(`f1@${k}`, 2 / (k + 1));
      add(`map@${k}`, 1 / r);
      add(`mrr@${k}`, 1 / r);
    }
  }
  const out: Record<string, number> = {};
  for (const [key, s] of sums) out[key] = s / n;
  out.num_pred = n;
  out.num_data = numData;
  return out;
}

/** {@link rankRows} then {@link metricsFromRanks}. */
export function scoreRows(
  queries: EmbeddingMatrix,
  candidates: readonly EmbeddingMatrix[],
  options: RankOptions & MetricOptions = {},
): DatasetMetrics {
  return metricsFromRanks(rankRows(queries, candidates, options), options);
}

/** {@link rankPooled} then {@link metricsFromRanks}. */
export function scorePooled(
  queries: EmbeddingMatrix,
  pool: EmbeddingMatrix,
  rowCandidates: readonly ArrayLike<number>[],
  options: PooledRankOptions & MetricOptions = {},
): DatasetMetrics {
  return metricsFromRanks(rankPooled(queries, pool, rowCandidates, options), options);
}

// ---------------------------------------------------------------------------------------------
// Deduplication: MMEB rows share candidates (every ImageNet-1K row lists the same 1000 classes),
// so each unique item is embedded once and rows refer to it by index.

/** One input to embed: text and image path (`''` for none), as in MMEB-eval's columns. */
export interface EmbedItem {
  readonly text: string;
  readonly imagePath: string;
}

/** Identity of an item: same text and same image path. */
export function itemKey(item: EmbedItem): string {
  return JSON.stringify([item.text, item.imagePath ?? '']);
}

/** Unique items in first-seen order, and for every input the index of its unique item. */
export function dedupeItems<T extends EmbedItem>(items: readonly T[]): { unique: T[]; indexOf: Int32Array } {
  const seen = new Map<string, number>();
  const unique: T[] = [];
  const indexOf = new Int32Array(items.length);
  items.forEach((item, i) => {
    const key = itemKey(item);
    let u = seen.get(key);
    if (u === undefined) {
      u = unique.length;
      seen.set(key, u);
      unique.push(item);
    }
    indexOf[i] = u;
  });
  return { unique, indexOf };
}

/** Unique candidates over all rows, and each row's candidates as indices into them (order kept). */
export function dedupeCandidateRows<T extends EmbedItem>(rows: readonly (readonly T[])[]): { unique: T[]; rows: Int32Array[] } {
  const { unique, indexOf } = dedupeItems(rows.flat() as T[]);
  let offset = 0;
  const out = rows.map((row) => indexOf.slice(offset, (offset += row.length)));
  return { unique, rows: out };
}

// ---------------------------------------------------------------------------------------------

function checkIndex(p: number, size: number, field: string): number {
  if (!Number.isInteger(p) || p < 0 || p >= size) {
    throw new UnimeError(`index ${p} is outside the ${size} embedded items`, { field, fix: 'indices must come from the same deduplication as the embeddings' });
  }
  return p;
}

function checkTieRule(t: TieRule): TieRule {
  if (!TIE_RULES.includes(t)) {
    throw new UnimeError(`unknown tie rule "${String(t)}"`, { field: 'tieRule', fix: `use one of: ${TIE_RULES.join(', ')}` });
  }
  return t;
}

// ---------------------------------------------------------------------------------------------
// Full similarity matrices (caption retrieval, zero-shot classification)

/** Cosine of row i of `a` with row j of `b`, given their row norms ({@link rowNorms}); 0 where a norm is 0. */
export function cosineAt(a: EmbeddingMatrix, i: number, b: EmbeddingMatrix, j: number, aNorms: Float64Array, bNorms: Float64Array): number {
  return cosineFrom(dotRows(a.data, i * a.dim, b.data, j * b.dim, a.dim), aNorms[i]!, bNorms[j]!);
}

/**
 * Cosine similarity of rows [start, end) of `a` with every row of `b`, row-major [end - start, b.rows], in
 * float64 (the same arithmetic as {@link cosineAt}, so equal inputs give equal scores). Large suites
 * score block by block instead of holding the whole matrix.
 */
export function cosineBlock(a: EmbeddingMatrix, start: number, end: number, b: EmbeddingMatrix, aNorms: Float64Array, bNorms: Float64Array): Float64Array {
  const out = new Float64Array((end - start) * b.rows);
  for (let i = start; i < end; i++) {
    for (let j = 0; j < b.rows; j++) out[(i - start) * b.rows + j] = cosineAt(a, i, b, j, aNorms, bNorms);
  }
  return out;
}

/** Cosine similarity of every row of `a` with every row of `b`, row-major [a.rows, b.rows]; see {@link cosineBlock}. */
export function cosineMatrix(a: EmbeddingMatrix, b: EmbeddingMatrix, label = 'scoring'): Float64Array {
  checkSameDim(a, b, label);
  return cosineBlock(a, 0, a.rows, b, rowNorms(a, `${label}: queries`), rowNorms(b, `${label}: candidates`));
}

export function checkSameDim(a: EmbeddingMatrix, b: EmbeddingMatrix, label: string): void {
  if (a.dim !== b.dim) {
    throw new UnimeError(`cannot compare embeddings of dimension ${a.dim} and ${b.dim}`, { field: label, fix: 'embed both sides with the same model' });
  }
}

/** Percent of ranks at most k. */
export function recallAt(ranks: ArrayLike<number>, k: number): number {
  if (ranks.length === 0) return 0;
  let hits = 0;
  for (let i = 0; i < ranks.length; i++) if (ranks[i]! <= k) hits++;
  return (100 * hits) / ranks.length;
}
