/**
 * UniME stage 2: InfoNCE over [positive, k hard negatives] with a false-negative filter.
 *
 * For query i with positive p(i) and cosine similarities s_ij to every candidate of the (gathered) batch:
 *   alpha_i = s_ip + beta; candidate j is a valid negative iff j != p(i) and s_ij <= alpha_i
 *   (the paper excludes s_ij > alpha_i). With `candidateIds`, a candidate with the same content id as
 *   p(i) (another row's copy of the positive) is excluded too: it is the positive itself. The k valid
 *   negatives with the highest s_ij are the hard ones (ties: lower candidate index first).
 *   Fewer than k valid (m of them, 0 < m < k): the slots are filled cyclically from the ranked valid list,
 *   slot t takes the (t mod m)-th hardest, so the hardest ones are repeated first; the softmax then counts a
 *   repeated negative once per slot, as the paper's duplication does.
 *   None valid: `emptyRows` decides: 'mask' (default) drops the row from the loss and the mean (there is no
 *   contrast to learn from, and a positive-only softmax is identically zero); 'positiveOnly' keeps the row
 *   with that zero loss, so it still counts in the mean. Either way stats.rowsWithoutNegatives counts it.
 *   L = mean over kept rows of -log softmax([s_ip, s_in1 .. s_ink] / tau)[0].
 * Selection runs on the similarity values (indices carry no gradient); the loss is differentiable through
 * the gathered similarities. The published code can pick the positive when short of negatives; this cannot.
 */
import { tf, type Tensor } from '../runtime/tf.js';
import { UnimeError } from '../errors.js';
import { MASKED_LOGIT, expectCandidateIds, expectMatrix, expectPositive, isPositiveCopy, l2Normalize, meanCrossEntropy } from './common.js';

export interface HardNegativeInfoNceOptions {
  /** Softmax temperature; UniME uses 0.02. */
  temperature?: number;
  /** False-negative margin: candidates with cos > cos(q, c+) + beta are excluded; UniME uses 0.1. */
  beta?: number;
  /** Hard negatives per query; UniME uses 8. */
  k?: number;
  /** Column of each query's positive among the candidates; default query i -> candidate i. */
  positives?: ArrayLike<number>;
  /** What a query with no valid negative does; see the module comment. Default 'mask'. */
  emptyRows?: 'mask' | 'positiveOnly';
  /**
   * A query with 0 < m < k valid negatives: 'duplicate' (default, the paper) repeats the hardest ones to
   * fill k slots; 'mask' leaves the k - m empty slots out of the softmax.
   */
  shortRows?: 'duplicate' | 'mask';
  /** Content id of every candidate: a copy of a query's positive (same id) is not a negative. */
  candidateIds?: ArrayLike<number> | null;
}

export interface HardNegativeSelection {
  /** [rows * k] candidate indices, row-major; -1 in every slot of a row with no valid negative. */
  indices: Int32Array;
  /** Valid negatives per row before truncation to k. */
  validCounts: Int32Array;
  /** Candidates excluded per row by the filter, the positive itself (and its copies) not counted. */
  filteredCounts: Int32Array;
  /** Copies of the row's positive among the other candidates (same content id), excluded. */
  copyCounts: Int32Array;
}

export interface HardNegativeStats {
  /** Mean over queries of (filtered candidates) / (candidates - 1): the positive itself is not counted. */
  falseNegativeRate: number;
  /** Mean cos(q, c+) over all queries. */
  meanPositiveSimilarity: number;
  /** Mean cos(q, c) over the hard-negative slots the loss uses (duplicates counted per slot); NaN if none. */
  meanHardNegativeSimilarity: number;
  /** Queries with fewer than k valid negatives (including those with none). */
  rowsShortOfNegatives: number;
  /** Queries with no valid negative at all. */
  rowsWithoutNegatives: number;
  /** Queries the loss averages over. */
  rowsInLoss: number;
}

export interface HardNegativeInfoNceResult {
  loss: Tensor;
  stats: HardNegativeStats;
  selection: HardNegativeSelection;
}

/**
 * The filter and top-k selection on a row-major [rows, cols] similarity matrix (plain numbers, no tensors).
 */
export function selectHardNegatives(
  similarities: ArrayLike<number>,
  rows: number,
  cols: number,
  positives: ArrayLike<number>,
  options: { beta?: number; k?: number; candidateIds?: ArrayLike<number> | null } = {},
): HardNegativeSelection {
  const beta = options.beta ?? 0.1;
  const k = options.k ?? 8;
  if (!Number.isInteger(k) || k < 1) throw new UnimeError(`hardNegativeInfoNce: k must be a positive integer, got ${k}`);
  if (similarities.length !== rows * cols) throw new UnimeError(`hardNegativeInfoNce: ${similarities.length} similarities for a [${rows}, ${cols}] matrix`);
  if (positives.length !== rows) throw new UnimeError(`hardNegativeInfoNce: ${positives.length} positives for ${rows} queries`);
  const ids = options.candidateIds ?? null;
  expectCandidateIds(ids, cols, 'hardNegativeInfoNce');
  const indices = new Int32Array(rows * k).fill(-1);
  const validCounts = new Int32Array(rows);
  const filteredCounts = new Int32Array(rows);
  const copyCounts = new Int32Array(rows);
  for (let i = 0; i < rows; i++) {
    const p = positives[i]!;
    if (!Number.isInteger(p) || p < 0 || p >= cols) throw new UnimeError(`hardNegativeInfoNce: positive ${p} of query ${i} is not a candidate index in [0, ${cols})`);
    const base = i * cols;
    const alpha = similarities[base + p]! + beta;
    const valid: number[] = [];
    for (let j = 0; j < cols; j++) {
      if (j === p) continue;
      if (isPositiveCopy(ids, j, p)) {
        copyCounts[i]! += 1;
        continue;
      }
      if (similarities[base + j]! > alpha) filteredCounts[i]! += 1;
      else valid.push(j);
    }
    valid.sort((a, b) => similarities[base + b]! - similarities[base + a]! || a - b);
    validCounts[i] = valid.length;
    if (valid.length === 0) continue;
    for (let t = 0; t < k; t++) indices[i * k + t] = valid[t % valid.length]!;
  }
  return { indices, validCounts, filteredCounts, copyCounts };
}

/**
 * queries [B, d], candidates [N, d] (N >= 1; the gathered targets of the global batch). Embeddings are
 * L2-normalised here, so similarities are cosines as in the paper.
 */
export function hardNegativeInfoNce(queries: Tensor, candidates: Tensor, options: HardNegativeInfoNceOptions = {}): HardNegativeInfoNceResult {
  const name = 'hardNegativeInfoNce';
  const temperature = options.temperature ?? 0.02;
  expectPositive(temperature, 'temperature', name);
  const k = options.k ?? 8;
  const beta = options.beta ?? 0.1;
  const emptyRows = options.emptyRows ?? 'mask';
  const shortRows = options.shortRows ?? 'duplicate';
  if (shortRows !== 'duplicate' && shortRows !== 'mask') throw new UnimeError(`${name}: shortRows must be 'duplicate' or 'mask', got ${String(shortRows)}`);
  if (emptyRows !== 'mask' && emptyRows !== 'positiveOnly') throw new UnimeError(`${name}: emptyRows must be 'mask' or 'positiveOnly', got ${String(emptyRows)}`);
  const [b, d] = expectMatrix(queries, 'queries', name);
  const [n, dc] = expectMatrix(candidates, 'candidates', name);
  if (dc !== d) throw new UnimeError(`${name}: candidates have dim ${dc}, queries ${d}`);
  const positives = options.positives ?? Int32Array.from({ length: b }, (_, i) => i);
  if (!options.positives && n < b) throw new UnimeError(`${name}: ${n} candidates for ${b} queries; pass options.positives when candidate i is not query i's positive`);

  let stats: HardNegativeStats | undefined;
  let selection: HardNegativeSelection | undefined;
  const loss = tf.tidy(() => {
    const sim = tf.matMul(l2Normalize(queries), l2Normalize(candidates), false, true);
    const simValues = sim.dataSync();
    const sel = selectHardNegatives(simValues, b, n, positives, { beta, k, candidateIds: options.candidateIds ?? null });
    selection = sel;
    // Row i of the logits is [s_ip, s_in1 .. s_ink]; an empty row gathers its positive in every slot and
    // is dropped from the mean by a negative label.
    const flat = new Int32Array(b * (k + 1));
    const labels = new Int32Array(b);
    // 'mask': slots past a short row's m valid negatives get -inf (in effect) so the softmax ignores them.
    const slotMask = shortRows === 'mask' ? new Float32Array(b * (k + 1)) : null;
    let rowsInLoss = 0;
    let negSum = 0;
    let negCount = 0;
    let posSum = 0;
    let short = 0;
    let empty = 0;
    let fnRate = 0;
    for (let i = 0; i < b; i++) {
      const p = positives[i]!;
      posSum += simValues[i * n + p]!;
      fnRate += n > 1 ? sel.filteredCounts[i]! / (n - 1) : 0;
      const m = sel.validCounts[i]!;
      if (m < k) short++;
      flat[i * (k + 1)] = i * n + p;
      if (m === 0) {
        empty++;
        labels[i] = -1;
        for (let t = 0; t < k; t++) flat[i * (k + 1) + 1 + t] = i * n + p;
        continue;
      }
      labels[i] = 0;
      rowsInLoss++;
      for (let t = 0; t < k; t++) {
        const j = sel.indices[i * k + t]!;
        flat[i * (k + 1) + 1 + t] = i * n + j;
        if (slotMask && t >= m) {
          slotMask[i * (k + 1) + 1 + t] = MASKED_LOGIT;
          continue;
        }
        negSum += simValues[i * n + j]!;
        negCount++;
      }
    }
    let logits = tf.div(tf.reshape(tf.gather(tf.reshape(sim, [-1]), tf.tensor1d(flat, 'int32')), [b, k + 1]), temperature);
    if (slotMask) logits = tf.add(logits, tf.tensor2d(slotMask, [b, k + 1]));
    stats = {
      falseNegativeRate: b > 0 ? fnRate / b : 0,
      meanPositiveSimilarity: b > 0 ? posSum / b : Number.NaN,
      meanHardNegativeSimilarity: negCount > 0 ? negSum / negCount : Number.NaN,
      rowsShortOfNegatives: short,
      rowsWithoutNegatives: empty,
      rowsInLoss: emptyRows === 'mask' ? rowsInLoss : b,
    };
    const meanOverKept = meanCrossEntropy(logits, labels);
    // A positive-only row has loss exactly zero and no gradient; it only enlarges the denominator.
    return emptyRows === 'positiveOnly' && empty > 0 && rowsInLoss > 0 ? tf.mul(meanOverKept, rowsInLoss / b) : meanOverKept;
  });
  return { loss, stats: stats!, selection: selection! };
}
