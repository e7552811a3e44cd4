/**
 * Small pieces every loss in this folder shares: L2 normalisation, a gradient stop, and the mean
 * cross-entropy over rows that dispatches to the fused native kernel when that backend is active.
 */
import { tf, type Tensor } from '../runtime/tf.js';
import { softmaxCrossEntropy } from '../runtime/native/ops.js';
import { UnimeError } from '../errors.js';

/** x / max(||x||, 1e-12) along the last axis (PyTorch's F.normalize). */
export function l2Normalize(x: Tensor): Tensor {
  return tf.tidy(() => tf.div(x, tf.maximum(tf.norm(x, 'euclidean', -1, true), 1e-12)));
}

const stop = tf.customGrad((...args: (Tensor | ((ts: Tensor[]) => void))[]) => {
  const x = args[0] as Tensor;
  return { value: tf.clone(x), gradFunc: (dy: Tensor) => tf.zerosLike(dy) };
});

/** The identity whose gradient is zero: a frozen teacher's side of a distillation loss. */
export function stopGradient<T extends Tensor>(x: T): T {
  return stop(x) as T;
}

/**
 * Mean over rows of softmax cross-entropy against integer labels; a negative label drops the row from
 * both the sum and the count. With every row dropped the result is a zero still connected to `logits`.
 */
export function meanCrossEntropy(logits: Tensor, labels: Int32Array): Tensor {
  return tf.tidy(() => {
    const kept = labels.reduce((n, v) => n + (v >= 0 ? 1 : 0), 0);
    const perRow = softmaxCrossEntropy(logits, tf.tensor1d(labels, 'int32'));
    return tf.div(tf.sum(perRow), Math.max(kept, 1));
  });
}

/** Added to a masked logit: exp() of it underflows to exactly 0 in float32. */
export const MASKED_LOGIT = -1e9;

/**
 * Whether candidate `j` is a copy of candidate `p` (query i's positive): the same content id, another
 * column. Such a copy (a class label or an answer that several rows of a batch share, one image
 * listed twice) is the positive itself, not a negative. `ids` null: no copies.
 */
export function isPositiveCopy(ids: ArrayLike<number> | null | undefined, j: number, p: number): boolean {
  return ids != null && j !== p && ids[j] === ids[p];
}

/** Checks a loss's `candidateIds` option: one integer per candidate column. */
export function expectCandidateIds(ids: ArrayLike<number> | null | undefined, columns: number, loss: string): void {
  if (ids == null) return;
  if (ids.length !== columns) throw new UnimeError(`${loss}: candidateIds has ${ids.length} entries for ${columns} candidate columns`);
}

/** Throws a UnimeError unless `t` is a rank-2 [rows, dim] matrix. */
export function expectMatrix(t: Tensor, what: string, loss: string): [number, number] {
  if (t.rank !== 2) throw new UnimeError(`${loss}: ${what} must be a [rows, dim] matrix, got shape [${t.shape.join(', ')}]`);
  return t.shape as [number, number];
}

export function expectPositive(x: number, what: string, loss: string): void {
  if (!(x > 0) || !Number.isFinite(x)) throw new UnimeError(`${loss}: ${what} must be a positive number, got ${x}`);
}
