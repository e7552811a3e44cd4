/**
 * The small trainable modules the CLIP-side methods put around a frozen LLM text encoder and a vision
 * tower (../../../shared/REFERENCE.md):
 *
 * - `ResidualMlpAdapter`: on the LLM's text feature t (L2-normalised first),
 *     x = t / ||t||;  x = x + fc2(GELU(fc1(LN(x))))  (`blocks` times, fc1: d -> hidden_mult * d);
 *     out = proj(LN(x))  (d -> embed_dim).
 *   LLM2CLIP's adapter is 4 blocks of width 2d; ProCLIP's "wide residual block" is our
 *   1 block of width 4d (its exact width is not published: a recipe field).
 * - `MlpHead`: LIFT's image head fc2(GELU(fc1(x))), 768 -> 4096 -> 4096 in the paper.
 *
 * GELU is the exact (erf) one, PyTorch's nn.GELU default; Linear layers start as nn.Linear does
 * (weight and bias uniform in +-1/sqrt(in)), LayerNorms at weight 1, bias 0. Every variable is named
 * `<prefix><key>` with PyTorch-style keys (`blocks.0.fc1.weight`, `proj.bias`, ...), so training
 * checkpoints match by name in any process and the weights save under readable keys.
 */
import { UnimeError } from '../../errors.js';
import { activation, layerNorm } from '../../runtime/native/ops.js';
import type { Rng } from '../../runtime/rng.js';
import { tf, type Tensor } from '../../runtime/tf.js';
import { l2Normalize } from '../../losses/common.js';
import { namedVariable } from './variables.js';
import { Linear } from '../text/modules.js';

const LN_EPS = 1e-5;

/** Weights by key, with their shapes; what the head needs and what a saved file must hold. */
export type HeadWeights = Map<string, tf.Variable>;

function linearInit(weights: HeadWeights, prefix: string, key: string, out: number, inp: number, rng: Rng): Linear {
  const bound = 1 / Math.sqrt(inp);
  const w = new Float32Array(out * inp);
  for (let i = 0; i < w.length; i++) w[i] = (2 * rng.uniform() - 1) * bound;
  const b = new Float32Array(out);
  for (let i = 0; i < b.length; i++) b[i] = (2 * rng.uniform() - 1) * bound;
  const wv = namedVariable(tf.tensor2d(w, [out, inp]), true, `${prefix}${key}.weight`);
  const bv = namedVariable(tf.tensor1d(b), true, `${prefix}${key}.bias`);
  weights.set(`${key}.weight`, wv);
  weights.set(`${key}.bias`, bv);
  return new Linear(wv, bv);
}

interface Norm {
  weight: tf.Variable;
  bias: tf.Variable;
}

function normInit(weights: HeadWeights, prefix: string, key: string, dim: number): Norm {
  const weight = namedVariable(tf.ones([dim]), true, `${prefix}${key}.weight`);
  const bias = namedVariable(tf.zeros([dim]), true, `${prefix}${key}.bias`);
  weights.set(`${key}.weight`, weight);
  weights.set(`${key}.bias`, bias);
  return { weight, bias };
}

function checkDims(what: string, dims: Record<string, number>): void {
  for (const [k, v] of Object.entries(dims)) {
    if (!Number.isInteger(v) || v < 1) throw new UnimeError(`${what}: ${k} must be a positive integer, got ${v}`, { field: k });
  }
}

function checkInput(x: Tensor, dim: number, what: string): void {
  if (x.rank !== 2 || x.shape[1] !== dim) {
    throw new UnimeError(`${what} expects [batch, ${dim}] features, got [${x.shape.join(', ')}]`, {
      fix: `the features must come from the model the ${what} was built for (width ${dim})`,
    });
  }
}

export interface ResidualMlpAdapterConfig {
  inDim: number;
  blocks: number;
  hiddenMult: number;
  embedDim: number;
}

export class ResidualMlpAdapter {
  readonly weights: HeadWeights = new Map();
  private readonly blockModules: { norm: Norm; fc1: Linear; fc2: Linear }[] = [];
  private readonly outNorm: Norm;
  private readonly proj: Linear;

  /** Fresh weights from `rng`; `prefix` names the variables (e.g. 'text_adapter.'). */
  constructor(
    readonly config: ResidualMlpAdapterConfig,
    rng: Rng,
    readonly prefix = 'text_adapter.',
  ) {
    const { inDim: d, blocks, hiddenMult, embedDim } = config;
    checkDims('the text adapter', { inDim: d, blocks, hiddenMult, embedDim });
    for (let i = 0; i < blocks; i++) {
      const key = `blocks.${i}`;
      this.blockModules.push({
        norm: normInit(this.weights, prefix, `${key}.norm`, d),
        fc1: linearInit(this.weights, prefix, `${key}.fc1`, hiddenMult * d, d, rng),
        fc2: linearInit(this.weights, prefix, `${key}.fc2`, d, hiddenMult * d, rng),
      });
    }
    this.outNorm = normInit(this.weights, prefix, 'out_norm', d);
    this.proj = linearInit(this.weights, prefix, 'proj', embedDim, d, rng);
  }

  /** [batch, inDim] raw LLM features -> [batch, embedDim] (not normalised). */
  forward(features: Tensor): Tensor {
    checkInput(features, this.config.inDim, 'the text adapter');
    return tf.tidy(() => {
      let x = l2Normalize(features);
      for (const b of this.blockModules) {
        const h = b.fc2.forward(activation('geluErf', b.fc1.forward(layerNorm(x, b.norm.weight, b.norm.bias, LN_EPS))));
        x = tf.add(x, h);
      }
      return this.proj.forward(layerNorm(x, this.outNorm.weight, this.outNorm.bias, LN_EPS));
    });
  }

  get variables(): tf.Variable[] {
    return [...this.weights.values()];
  }

  dispose(): void {
    for (const v of this.weights.values()) v.dispose();
  }
}

export interface MlpHeadConfig {
  inDim: number;
  hiddenDim: number;
  outDim: number;
}

export class MlpHead {
  readonly weights: HeadWeights = new Map();
  private readonly fc1: Linear;
  private readonly fc2: Linear;

  constructor(
    readonly config: MlpHeadConfig,
    rng: Rng,
    readonly prefix = 'image_head.',
  ) {
    checkDims('the image head', { inDim: config.inDim, hiddenDim: config.hiddenDim, outDim: config.outDim });
    this.fc1 = linearInit(this.weights, prefix, 'fc1', config.hiddenDim, config.inDim, rng);
    this.fc2 = linearInit(this.weights, prefix, 'fc2', config.outDim, config.hiddenDim, rng);
  }

  forward(x: Tensor): Tensor {
    checkInput(x, this.config.inDim, 'the image head');
    return tf.tidy(() => this.fc2.forward(activation('geluErf', this.fc1.forward(x))));
  }

  get variables(): tf.Variable[] {
    return [...this.weights.values()];
  }

  dispose(): void {
    for (const v of this.weights.values()) v.dispose();
  }
}

/**
 * Overwrite a head's weights with saved ones (key -> data). Every key must be present with the head's
 * shape; `file` names the source in errors.
 */
export function loadHeadWeights(weights: HeadWeights, saved: ReadonlyMap<string, { shape: readonly number[]; data: Float32Array }>, file: string, prefix = ''): void {
  for (const [key, v] of weights) {
    const s = saved.get(prefix + key);
    if (s === undefined) throw new UnimeError(`missing tensor ${prefix + key}`, { file, fix: 'the file must come from a run of the same method and adapter settings' });
    if (s.shape.length !== v.shape.length || s.shape.some((d, i) => d !== v.shape[i])) {
      throw new UnimeError(`tensor ${prefix + key} is [${s.shape.join(', ')}], expected [${v.shape.join(', ')}]`, { file, fix: 'the file must come from a run of the same method and adapter settings' });
    }
    tf.tidy(() => v.assign(tf.tensor(s.data, [...v.shape])));
  }
}
