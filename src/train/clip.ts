/**
 * Gradient bookkeeping between the loss and the optimizer: the per-parameter norms (one device sync for
 * all of them), non-finite detection that names the culprit, global-norm clipping as PyTorch's
 * clip_grad_norm_, and summing micro-batch gradients for accumulation.
 */
import { tf, type Tensor } from '../runtime/tf.js';
import { UnimeError } from '../errors.js';

/** Raised when the loss or a gradient is NaN or infinite; the message names step, batch and culprit. */
export class NonFiniteError extends UnimeError {
  constructor(
    problem: string,
    readonly step: number,
    readonly batchIndex: number,
    /** 'loss' or the parameter's name. */
    readonly culprit: string,
  ) {
    super(problem, {
      field: culprit,
      fix: 'lower the learning rate, enable gradient clipping (train.grad_clip), or check that batch for empty or degenerate inputs',
    });
  }
}

export interface Where {
  /** 1-based optimizer step being computed. */
  step: number;
  /** 0-based index of the batch in the data stream (the data position). */
  batchIndex: number;
}

/**
 * Euclidean norm of each gradient, in the map's order. Large finite values are scaled before squaring
 * so that a norm above float32's range does not pass for an infinite gradient. Non-finite gradients
 * give NaN or Infinity.
 */
export function gradNorms(grads: ReadonlyMap<string, Tensor>): number[] {
  if (grads.size === 0) return [];
  const packed = tf.tidy(() => {
    const rows = [...grads.values()].map((g) => {
      const flat = tf.reshape(g, [-1]);
      const maxAbs = flat.size === 0 ? tf.scalar(0) : tf.max(tf.abs(flat));
      const safe = tf.where(tf.greater(maxAbs, 0), maxAbs, tf.onesLike(maxAbs));
      const scaled = flat.size === 0 ? tf.scalar(0) : tf.sum(tf.square(tf.div(flat, safe)));
      return tf.stack([maxAbs, scaled]);
    });
    return tf.stack(rows);
  });
  const data = packed.dataSync();
  packed.dispose();
  const out: number[] = [];
  for (let i = 0; i < grads.size; i++) {
    const maxAbs = data[2 * i]!;
    const scaledSq = data[2 * i + 1]!;
    if (!Number.isFinite(maxAbs)) out.push(maxAbs);
    else out.push(maxAbs === 0 ? (Number.isNaN(scaledSq) ? NaN : 0) : maxAbs * Math.sqrt(scaledSq));
  }
  return out;
}

/** sqrt(sum of squares) of per-parameter norms, computed in float64. */
export function globalNorm(norms: readonly number[]): number {
  let s = 0;
  const scale = Math.max(0, ...norms.map(Math.abs).filter(Number.isFinite));
  if (norms.some((n) => !Number.isFinite(n))) return norms.some(Number.isNaN) ? NaN : Infinity;
  if (scale === 0) return 0;
  for (const n of norms) s += (n / scale) ** 2;
  return scale * Math.sqrt(s);
}

/** Throws NonFiniteError when `loss` is not finite. */
export function checkLoss(loss: number, where: Where): void {
  if (!Number.isFinite(loss)) {
    throw new NonFiniteError(`the loss is ${loss} at step ${where.step}, batch ${where.batchIndex}`, where.step, where.batchIndex, 'loss');
  }
}

/**
 * Checks every gradient and returns the per-parameter norms. Throws NonFiniteError naming the first
 * parameter (in map order) whose gradient holds NaN or Infinity, and how many others do.
 */
export function checkGrads(grads: ReadonlyMap<string, Tensor>, where: Where): number[] {
  const norms = gradNorms(grads);
  const names = [...grads.keys()];
  const bad = names.filter((_, i) => !Number.isFinite(norms[i]!));
  if (bad.length > 0) {
    const first = bad[0]!;
    const kind = Number.isNaN(norms[names.indexOf(first)]!) ? 'NaN' : 'infinite';
    const more = bad.length > 1 ? ` (and ${bad.length - 1} more: ${bad.slice(1, 6).join(', ')}${bad.length > 6 ? ', ...' : ''})` : '';
    throw new NonFiniteError(`the gradient of ${first} is ${kind} at step ${where.step}, batch ${where.batchIndex}${more}`, where.step, where.batchIndex, first);
  }
  return norms;
}

export interface ClipResult {
  /** The global norm before clipping (what PyTorch's clip_grad_norm_ returns). */
  norm: number;
  /** The factor the gradients were multiplied by (1 when no clipping happened). */
  scale: number;
}

/**
 * Global-norm clipping in place of the map's tensors, as torch.nn.utils.clip_grad_norm_:
 * coef = maxNorm / (norm + 1e-6), applied only when below 1. `norms` may be given when already known.
 */
export function clipGradNorm(grads: Map<string, Tensor>, maxNorm: number, norms?: readonly number[]): ClipResult {
  if (!(maxNorm > 0)) throw new UnimeError(`clipGradNorm: maxNorm must be positive, got ${maxNorm}`);
  const norm = globalNorm(norms ?? gradNorms(grads));
  const coef = maxNorm / (norm + 1e-6);
  if (!(coef < 1)) return { norm, scale: 1 };
  for (const [name, g] of grads) {
    grads.set(name, tf.tidy(() => tf.mul(g, tf.scalar(coef))));
    g.dispose();
  }
  return { norm, scale: coef };
}

/**
 * Adds `grads` into `into` (taking ownership of both: the tensors of `grads` are disposed). A name
 * missing from one side is taken from the other.
 */
export function accumulateGrads(into: Map<string, Tensor>, grads: ReadonlyMap<string, Tensor>): void {
  for (const [name, g] of grads) {
    const prev = into.get(name);
    if (prev === undefined) {
      into.set(name, g);
      continue;
    }
    into.set(name, tf.tidy(() => tf.add(prev, g)));
    prev.dispose();
    g.dispose();
  }
}

/** Multiplies every gradient by `factor` in place (the map's old tensors are disposed). */
export function scaleGrads(grads: Map<string, Tensor>, factor: number): void {
  if (factor === 1) return;
  for (const [name, g] of grads) {
    grads.set(name, tf.tidy(() => tf.mul(g, tf.scalar(factor))));
    g.dispose();
  }
}
