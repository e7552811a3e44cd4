/**
 * VLM2Vec's in-batch InfoNCE: query i's positive is candidate i, every other candidate in the (gathered)
 * batch, plus any extra negatives, is a negative. L = mean_i CE(q_i . [c; extra]^T / tau, i).
 * With `candidateIds`, a column holding the same content as query i's positive (another row's copy of
 * it) is left out of row i's softmax: it is the positive again, not a negative.
 */
import { tf, type Tensor } from '../runtime/tf.js';
import { UnimeError } from '../errors.js';
import { MASKED_LOGIT, expectCandidateIds, expectMatrix, expectPositive, isPositiveCopy, l2Normalize, meanCrossEntropy } from './common.js';

export interface InbatchInfoNceOptions {
  /** Softmax temperature; VLM2Vec and UniME use 0.02. */
  temperature?: number;
  /** L2-normalise queries and candidates first (cosine logits); default true. */
  normalize?: boolean;
  /** [M, dim] further negatives shared by every query (e.g. explicit hard negatives), appended as columns. */
  extraNegatives?: Tensor | null;
  /** Content id of every column (candidates, then extra negatives): equal ids are the same target. */
  candidateIds?: ArrayLike<number> | null;
}

export function inbatchInfoNce(queries: Tensor, candidates: Tensor, options: InbatchInfoNceOptions = {}): Tensor {
  const name = 'inbatchInfoNce';
  const temperature = options.temperature ?? 0.02;
  expectPositive(temperature, 'temperature', name);
  const [b, d] = expectMatrix(queries, 'queries', name);
  const [n, dc] = expectMatrix(candidates, 'candidates', name);
  if (n !== b || dc !== d) throw new UnimeError(`${name}: candidates must be [${b}, ${d}] like the queries (candidate i is query i's positive), got [${n}, ${dc}]`);
  const extra = options.extraNegatives ?? null;
  if (extra) {
    const [, de] = expectMatrix(extra, 'extraNegatives', name);
    if (de !== d) throw new UnimeError(`${name}: extraNegatives must have dim ${d}, got ${de}`);
  }
  const normalize = options.normalize ?? true;
  const cols = n + (extra ? extra.shape[0]! : 0);
  const ids = options.candidateIds ?? null;
  expectCandidateIds(ids, cols, name);
  let mask: Float32Array | null = null;
  if (ids) {
    for (let i = 0; i < b; i++) {
      for (let j = 0; j < cols; j++) {
        if (!isPositiveCopy(ids, j, i)) continue;
        mask ??= new Float32Array(b * cols);
        mask[i * cols + j] = MASKED_LOGIT;
      }
    }
  }
  return tf.tidy(() => {
    const prep = (t: Tensor) => (normalize ? l2Normalize(t) : t);
    const all = extra ? tf.concat([prep(candidates), prep(extra)], 0) : prep(candidates);
    let logits = tf.div(tf.matMul(prep(queries), all, false, true), temperature);
    if (mask) logits = tf.add(logits, tf.tensor2d(mask, [b, cols]));
    return meanCrossEntropy(logits, Int32Array.from({ length: b }, (_, i) => i));
  });
}
