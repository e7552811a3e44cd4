/**
 * ProCLIP's embedding distillation (stage 1 against the frozen CLIP text encoder, stage 2 against an EMA
 * image encoder): an instance term and a structure term between student s and teacher t,
 *   instance  = sum_i ||norm(s_i) - norm(t_i)||^2
 *   structure = sum_{i<j} SmoothL1(||s_i - s_j||, ||t_i - t_j||)
 *   L = instanceWeight * instance + structureWeight * structure.
 * The teacher gets no gradient. Distances are taken between the L2-normalised embeddings (the space the
 * instance term aligns; `structureOnNormalized: false` uses the raw ones, which may then differ in width).
 * Pair distances come from the Gram matrix (||a||^2 + ||b||^2 - 2 a.b, floored at 1e-12 before the root)
 * so memory stays O(B^2), not O(B^2 d). reduction 'sum' (default) is the published formula; 'mean' divides
 * the instance term by B and the structure term by the pair count.
 */
import { tf, type Tensor } from '../runtime/tf.js';
import { UnimeError } from '../errors.js';
import { expectMatrix, l2Normalize, stopGradient } from './common.js';

export interface ProcLipDistillationOptions {
  instanceWeight?: number;
  structureWeight?: number;
  /** SmoothL1's beta (quadratic below, linear above); default 1, PyTorch's default. */
  smoothL1Beta?: number;
  reduction?: 'sum' | 'mean';
  structureOnNormalized?: boolean;
}

export interface ProcLipDistillationTerms {
  instance: Tensor;
  structure: Tensor;
  loss: Tensor;
}

function upperPairDistances(e: Tensor, b: number): Tensor {
  const sq = tf.sum(tf.square(e), -1);
  const d2 = tf.sub(tf.add(tf.reshape(sq, [b, 1]), tf.reshape(sq, [1, b])), tf.mul(tf.matMul(e, e, false, true), 2));
  const idx = new Int32Array((b * (b - 1)) / 2);
  let t = 0;
  for (let i = 0; i < b; i++) for (let j = i + 1; j < b; j++) idx[t++] = i * b + j;
  return tf.sqrt(tf.maximum(tf.gather(tf.reshape(d2, [-1]), tf.tensor1d(idx, 'int32')), 1e-12));
}

export function procLipDistillationTerms(student: Tensor, teacher: Tensor, options: ProcLipDistillationOptions = {}): ProcLipDistillationTerms {
  const name = 'procLipDistillation';
  const [b, d] = expectMatrix(student, 'student', name);
  const [bt, dt] = expectMatrix(teacher, 'teacher', name);
  if (bt !== b || dt !== d) throw new UnimeError(`${name}: teacher must be [${b}, ${d}] like the student (the instance term compares them), got [${bt}, ${dt}]`);
  const reduction = options.reduction ?? 'sum';
  if (reduction !== 'sum' && reduction !== 'mean') throw new UnimeError(`${name}: reduction must be 'sum' or 'mean', got ${String(reduction)}`);
  const beta = options.smoothL1Beta ?? 1;
  if (!(beta > 0)) throw new UnimeError(`${name}: smoothL1Beta must be positive, got ${beta}`);
  const onNormalized = options.structureOnNormalized ?? true;
  return tf.tidy(() => {
    const t = stopGradient(teacher);
    const sn = l2Normalize(student);
    const tn = l2Normalize(t);
    let instance = tf.sum(tf.square(tf.sub(sn, tn)));
    const pairs = (b * (b - 1)) / 2;
    let structure: Tensor;
    if (pairs === 0) structure = tf.mul(tf.sum(student), 0);
    else {
      const diff = tf.abs(tf.sub(upperPairDistances(onNormalized ? sn : student, b), upperPairDistances(onNormalized ? tn : t, b)));
      // SmoothL1 as 0.5 min(d, beta)^2 / beta + (d - min(d, beta)): the same piecewise function, built
      // from ops that all have gradients (tfjs has none for the comparison a where() would need).
      const m = tf.minimum(diff, beta);
      const smooth = tf.add(tf.div(tf.mul(tf.square(m), 0.5), beta), tf.sub(diff, m));
      structure = tf.sum(smooth);
      if (reduction === 'mean') structure = tf.div(structure, pairs);
    }
    if (reduction === 'mean') instance = tf.div(instance, b);
    const loss = tf.add(tf.mul(instance, options.instanceWeight ?? 1), tf.mul(structure, options.structureWeight ?? 1));
    return { instance, structure, loss };
  });
}

export function procLipDistillation(student: Tensor, teacher: Tensor, options: ProcLipDistillationOptions = {}): Tensor {
  const { instance, structure, loss } = procLipDistillationTerms(student, teacher, options);
  instance.dispose();
  structure.dispose();
  return loss;
}
