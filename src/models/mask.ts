/**
 * Attention masks as plain rows of 0/1. Masks are model inputs, never differentiated, so reading
 * them on the host (to build position ids, additive masks and pooling indices) is cheap and exact.
 */
import { UnimeError } from '../errors.js';
import { tf, type Tensor } from '../runtime/tf.js';

/** A [batch, seq] 0/1 mask: a tensor (any dtype) or nested arrays. */
export type MaskInput = Tensor | ArrayLike<ArrayLike<number>>;

export interface MaskRows {
  batch: number;
  seq: number;
  /** Row-major 0/1 values. */
  values: Uint8Array;
}

export function readMask(mask: MaskInput, what = 'attentionMask'): MaskRows {
  if (mask instanceof tf.Tensor) {
    if (mask.rank !== 2) throw new UnimeError(`${what} must be [batch, seq], got shape [${mask.shape.join(', ')}]`);
    const [batch, seq] = mask.shape as [number, number];
    const data = mask.dataSync();
    const values = new Uint8Array(batch * seq);
    for (let i = 0; i < values.length; i++) values[i] = data[i] ? 1 : 0;
    return { batch, seq, values };
  }
  const batch = mask.length;
  const seq = batch > 0 ? mask[0]!.length : 0;
  const values = new Uint8Array(batch * seq);
  for (let r = 0; r < batch; r++) {
    const row = mask[r]!;
    if (row.length !== seq) throw new UnimeError(`${what} rows must all have the same length (row 0 has ${seq}, row ${r} has ${row.length})`);
    for (let j = 0; j < seq; j++) values[r * seq + j] = row[j] ? 1 : 0;
  }
  return { batch, seq, values };
}

export function onesMask(batch: number, seq: number): MaskRows {
  return { batch, seq, values: new Uint8Array(batch * seq).fill(1) };
}

/**
 * Position ids as transformers computes them for padded batches: cumsum(mask) - 1, clamped at 0,
 * so a left-padded row gets the positions it would have alone (right padding repeats the last).
 */
export function positionIdsFromMask(m: MaskRows): Int32Array {
  const out = new Int32Array(m.batch * m.seq);
  for (let r = 0; r < m.batch; r++) {
    let c = 0;
    for (let j = 0; j < m.seq; j++) {
      c += m.values[r * m.seq + j]!;
      out[r * m.seq + j] = Math.max(c - 1, 0);
    }
  }
  return out;
}

/** Index of the last position whose mask is 1, per row (works for left and right padding). */
export function lastTokenIndices(m: MaskRows): number[] {
  const out: number[] = [];
  for (let r = 0; r < m.batch; r++) {
    let last = -1;
    for (let j = 0; j < m.seq; j++) if (m.values[r * m.seq + j]) last = j;
    if (last < 0) throw new UnimeError(`attention mask row ${r} has no tokens (all zeros)`, { fix: 'drop empty inputs before embedding them' });
    out.push(last);
  }
  return out;
}
