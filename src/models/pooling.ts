/**
 * Hidden states [batch, seq, hidden] -> one vector per row, and L2 normalisation. All three are
 * differentiable in the hidden states; the mask is read on the host.
 */
import { tf, type Tensor } from '../runtime/tf.js';
import { type MaskInput, lastTokenIndices, readMask } from './mask.js';
import { UnimeError } from '../errors.js';

function checkShapes(hidden: Tensor, batch: number, seq: number, fn: string): void {
  if (hidden.rank !== 3 || hidden.shape[0] !== batch || hidden.shape[1] !== seq) {
    throw new UnimeError(`${fn}: hidden states [${hidden.shape.join(', ')}] do not match the mask [${batch}, ${seq}]`);
  }
}

/** The hidden state at the last position whose mask is 1, per row: works with left and right padding. */
export function lastTokenPool(hidden: Tensor, attentionMask: MaskInput): Tensor {
  const m = readMask(attentionMask);
  checkShapes(hidden, m.batch, m.seq, 'lastTokenPool');
  const idx = lastTokenIndices(m).map((j, r) => r * m.seq + j);
  return tf.tidy(() => tf.gather(tf.reshape(hidden, [m.batch * m.seq, hidden.shape[2]!]), tf.tensor1d(idx, 'int32')));
}

/** Mean of the hidden states where the mask is 1. */
export function meanPool(hidden: Tensor, attentionMask: MaskInput): Tensor {
  const m = readMask(attentionMask);
  checkShapes(hidden, m.batch, m.seq, 'meanPool');
  lastTokenIndices(m); // refuses empty rows
  return tf.tidy(() => {
    const w = tf.tensor3d(Float32Array.from(m.values), [m.batch, m.seq, 1]);
    return tf.div(tf.sum(tf.mul(hidden, w), 1), tf.sum(w, 1));
  });
}

/** x / max(||x||_2, eps) along the last axis (torch.nn.functional.normalize). */
export function l2Normalize(x: Tensor, eps = 1e-12): Tensor {
  return tf.tidy(() => tf.div(x, tf.maximum(tf.norm(x, 'euclidean', -1, true), eps)));
}

export type PoolingMode = 'last' | 'mean';

/** Pool and normalise: the embedding an embedding model returns. */
export function poolEmbeddings(hidden: Tensor, attentionMask: MaskInput, mode: PoolingMode = 'last', normalize = true): Tensor {
  return tf.tidy(() => {
    const pooled = mode === 'last' ? lastTokenPool(hidden, attentionMask) : meanPool(hidden, attentionMask);
    return normalize ? l2Normalize(pooled) : pooled;
  });
}
