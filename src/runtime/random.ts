/**
 * Random tensors drawn from our seeded Rng rather than tfjs's own seeds, so every random tensor in
 * a run comes from one reproducible, checkpointable stream.
 */
import { tf, type Tensor } from './tf.js';
import { Rng } from './rng.js';

function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

export function randomNormal(rng: Rng, shape: number[], mean = 0, std = 1): Tensor {
  return tf.tensor(rng.fillNormal(new Float32Array(numel(shape)), mean, std), shape, 'float32');
}

export function randomUniform(rng: Rng, shape: number[], lo = 0, hi = 1): Tensor {
  return tf.tensor(rng.fillUniform(new Float32Array(numel(shape)), lo, hi), shape, 'float32');
}

/** Normal deviates truncated to [-2 std, 2 std] by redrawing, as in the usual transformer inits. */
export function truncatedNormal(rng: Rng, shape: number[], std = 0.02): Tensor {
  const out = new Float32Array(numel(shape));
  for (let i = 0; i < out.length; i++) {
    let v = rng.normal();
    while (v < -2 || v > 2) v = rng.normal();
    out[i] = v * std;
  }
  return tf.tensor(out, shape, 'float32');
}

/** A 0/1 keep mask scaled by 1/(1-p), for dropout. */
export function dropoutMask(rng: Rng, shape: number[], p: number): Tensor {
  if (!(p >= 0 && p < 1)) throw new RangeError(`dropout probability must be in [0, 1), got ${p}`);
  const out = new Float32Array(numel(shape));
  const scale = 1 / (1 - p);
  for (let i = 0; i < out.length; i++) out[i] = rng.uniform() >= p ? scale : 0;
  return tf.tensor(out, shape, 'float32');
}
