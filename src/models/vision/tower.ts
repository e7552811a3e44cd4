/**
 * The CLIP and SigLIP vision transformers (transformers' CLIPVisionTransformer and
 * SiglipVisionTransformer), returning every hidden state so LLaVA-style feature selection can pick a
 * layer. Both are patch embedding + position embedding -> pre-norm encoder layers; CLIP adds a class
 * token and pre_layrnorm and post-norms only the class token, SigLIP post-norms every position and may
 * pool with an attention head.
 */
import { UnimeError } from '../../errors.js';
import { tf, type Tensor } from '../../runtime/tf.js';
import { activation, attention, layerNorm } from '../../runtime/native/ops.js';
import { Linear, type WeightGetter } from '../text/modules.js';
import type { FeatureSelection, VisionConfig } from './config.js';

/**
 * What an encoder layer reads of its tower's config: the vision towers pass their VisionConfig, CLIP's
 * text transformer (src/models/clip) its own config, since both use the same pre-LN layer.
 */
export type EncoderLayerConfig = Pick<VisionConfig, 'numHeads' | 'activation' | 'layerNormEps'>;

/** Masks for the encoder's self-attention; the vision towers use none, CLIP's text tower both. */
export interface EncoderAttentionMask {
  /** Query i sees keys j <= i only. */
  causal?: boolean;
  /** [batch, seq] 1 for real keys, 0 for padding. */
  keyMask?: Tensor | null;
}

export class LayerNorm {
  constructor(
    readonly weight: tf.Variable,
    readonly bias: tf.Variable,
    readonly eps: number,
  ) {}

  static from(get: WeightGetter, name: string, eps: number): LayerNorm {
    return new LayerNorm(get(`${name}.weight`), get(`${name}.bias`), eps);
  }

  forward(x: Tensor): Tensor {
    return layerNorm(x, this.weight, this.bias, this.eps);
  }
}

/** fc2(act(fc1(x))) */
export class VisionMlp {
  readonly fc1: Linear;
  readonly fc2: Linear;

  constructor(
    readonly cfg: EncoderLayerConfig,
    get: WeightGetter,
    prefix: string,
  ) {
    this.fc1 = Linear.from(get, `${prefix}.fc1`, true);
    this.fc2 = Linear.from(get, `${prefix}.fc2`, true);
  }

  forward(x: Tensor): Tensor {
    return tf.tidy(() => this.fc2.forward(activation(this.cfg.activation, this.fc1.forward(x))));
  }
}

/** [batch, seq, heads * dim] <-> [batch, heads, seq, dim] */
function splitHeads(x: Tensor, heads: number): Tensor {
  const [b, s, h] = x.shape as [number, number, number];
  return tf.transpose(tf.reshape(x, [b, s, heads, h / heads]), [0, 2, 1, 3]);
}

function mergeHeads(x: Tensor): Tensor {
  const [b, heads, s, d] = x.shape as [number, number, number, number];
  return tf.reshape(tf.transpose(x, [0, 2, 1, 3]), [b, s, heads * d]);
}

/** Multi-head self-attention with biased q/k/v/out projections; unmasked unless a mask is given. */
export class VisionAttention {
  readonly q: Linear;
  readonly k: Linear;
  readonly v: Linear;
  readonly out: Linear;

  constructor(
    readonly cfg: EncoderLayerConfig,
    get: WeightGetter,
    prefix: string,
  ) {
    this.q = Linear.from(get, `${prefix}.q_proj`, true);
    this.k = Linear.from(get, `${prefix}.k_proj`, true);
    this.v = Linear.from(get, `${prefix}.v_proj`, true);
    this.out = Linear.from(get, `${prefix}.out_proj`, true);
  }

  forward(x: Tensor, mask: EncoderAttentionMask = {}): Tensor {
    return tf.tidy(() => {
      const nh = this.cfg.numHeads;
      const opts = { causal: mask.causal ?? false, keyMask: mask.keyMask ?? null };
      const o = attention(splitHeads(this.q.forward(x), nh), splitHeads(this.k.forward(x), nh), splitHeads(this.v.forward(x), nh), opts);
      return this.out.forward(mergeHeads(o));
    });
  }
}

/** x + attn(ln1(x)), then + mlp(ln2(.)) */
export class VisionEncoderLayer {
  readonly norm1: LayerNorm;
  readonly attention: VisionAttention;
  readonly norm2: LayerNorm;
  readonly mlp: VisionMlp;

  constructor(cfg: EncoderLayerConfig, get: WeightGetter, i: number) {
    const p = `encoder.layers.${i}`;
    this.norm1 = LayerNorm.from(get, `${p}.layer_norm1`, cfg.layerNormEps);
    this.attention = new VisionAttention(cfg, get, `${p}.self_attn`);
    this.norm2 = LayerNorm.from(get, `${p}.layer_norm2`, cfg.layerNormEps);
    this.mlp = new VisionMlp(cfg, get, `${p}.mlp`);
  }

  forward(x: Tensor, mask: EncoderAttentionMask = {}): Tensor {
    return tf.tidy(() => {
      const h = tf.add(x, this.attention.forward(this.norm1.forward(x), mask));
      return tf.add(h, this.mlp.forward(this.norm2.forward(h)));
    });
  }
}

/**
 * SigLIP's multihead attention pooling: a learned probe attends over all positions (torch
 * nn.MultiheadAttention, q/k/v packed in in_proj_weight), then a residual MLP; returns [batch, hidden].
 */
export class AttentionPoolingHead {
  readonly probe: tf.Variable;
  readonly inProjWeight: tf.Variable;
  readonly inProjBias: tf.Variable;
  readonly out: Linear;
  readonly norm: LayerNorm;
  readonly mlp: VisionMlp;

  constructor(
    readonly cfg: VisionConfig,
    get: WeightGetter,
  ) {
    this.probe = get('head.probe');
    this.inProjWeight = get('head.attention.in_proj_weight');
    this.inProjBias = get('head.attention.in_proj_bias');
    this.out = Linear.from(get, 'head.attention.out_proj', true);
    this.norm = LayerNorm.from(get, 'head.layernorm', cfg.layerNormEps);
    this.mlp = new VisionMlp(cfg, get, 'head.mlp');
  }

  forward(x: Tensor): Tensor {
    return tf.tidy(() => {
      const [b] = x.shape as [number, number, number];
      const H = this.cfg.hiddenSize;
      const nh = this.cfg.numHeads;
      const [wq, wk, wv] = tf.split(this.inProjWeight, 3, 0) as [Tensor, Tensor, Tensor];
      const [bq, bk, bv] = tf.split(this.inProjBias, 3, 0) as [Tensor, Tensor, Tensor];
      const proj = (t: Tensor, w: Tensor, bias: Tensor) => {
        const [bb, s] = t.shape as [number, number, number];
        return tf.reshape(tf.add(tf.matMul(tf.reshape(t, [-1, H]), w, false, true), bias), [bb, s, H]);
      };
      const probe = tf.tile(this.probe, [b, 1, 1]);
      const o = attention(splitHeads(proj(probe, wq, bq), nh), splitHeads(proj(x, wk, bk), nh), splitHeads(proj(x, wv, bv), nh));
      const h = this.out.forward(mergeHeads(o));
      const y = tf.add(h, this.mlp.forward(this.norm.forward(h)));
      return tf.reshape(y, [b, H]);
    });
  }
}

export interface VisionForwardOptions {
  /** Also return the numLayers + 1 hidden states, as transformers' `hidden_states`. */
  outputHiddenStates?: boolean;
}

export interface VisionOutput {
  /**
   * [batch, seq, hidden] as transformers' last_hidden_state: CLIP's raw last-layer output (class token
   * first), SigLIP's last-layer output after post_layernorm.
   */
  lastHiddenState: Tensor;
  /** [batch, hidden]: CLIP's post-normed class token; SigLIP's attention-pooled output (absent without a head). */
  pooled?: Tensor;
  /**
   * numLayers + 1 entries: the embeddings (after pre_layrnorm for CLIP) and each layer's raw output,
   * none post-normed: what LLaVA's vision_feature_layer indexes.
   */
  hiddenStates?: Tensor[];
}

/** A WeightGetter over a key -> variable map that names a missing key (`what`: 'vision', 'text'). */
export function weightGetter(weights: ReadonlyMap<string, tf.Variable>, what: string): WeightGetter {
  return (name) => {
    const v = weights.get(name);
    if (!v) throw new UnimeError(`${what} weight ${name} was not provided`);
    return v;
  };
}

export class VisionTransformer {
  readonly patchWeight: tf.Variable;
  readonly patchBias: tf.Variable | null;
  readonly classEmbedding: tf.Variable | null;
  readonly positionEmbedding: tf.Variable;
  readonly preNorm: LayerNorm | null;
  readonly layers: VisionEncoderLayer[];
  readonly postNorm: LayerNorm;
  readonly head: AttentionPoolingHead | null;

  constructor(
    readonly config: VisionConfig,
    /** The weights by key relative to the tower prefix ('embeddings.patch_embedding.weight', ...). */
    readonly weights: ReadonlyMap<string, tf.Variable>,
  ) {
    const get = weightGetter(weights, 'vision');
    const clip = config.classToken;
    this.patchWeight = get('embeddings.patch_embedding.weight');
    this.patchBias = clip ? null : get('embeddings.patch_embedding.bias');
    this.classEmbedding = clip ? get('embeddings.class_embedding') : null;
    this.positionEmbedding = get('embeddings.position_embedding.weight');
    this.preNorm = clip ? LayerNorm.from(get, 'pre_layrnorm', config.layerNormEps) : null;
    this.layers = Array.from({ length: config.numLayers }, (_, i) => new VisionEncoderLayer(config, get, i));
    this.postNorm = LayerNorm.from(get, 'post_layernorm', config.layerNormEps);
    this.head = weights.has('head.probe') ? new AttentionPoolingHead(config, get) : null;
  }

  get numParameters(): number {
    let n = 0;
    for (const v of this.weights.values()) n += v.size;
    return n;
  }

  private checkPixels(pixels: Tensor): void {
    const { numChannels: c, imageSize: s } = this.config;
    if (pixels.rank !== 4 || pixels.shape[1] !== c || pixels.shape[2] !== s || pixels.shape[3] !== s) {
      throw new UnimeError(`pixel values must be [batch, ${c}, ${s}, ${s}], got [${pixels.shape.join(', ')}]`, {
        fix: `preprocess images to ${s}x${s} (the processor of this checkpoint does); position-embedding interpolation is not implemented`,
      });
    }
  }

  /**
   * The patch convolution (kernel = stride = patch size) as one matmul over unfolded patches, plus the
   * class token and position embeddings (and CLIP's pre_layrnorm): [batch, seq, hidden].
   */
  embed(pixels: Tensor): Tensor {
    this.checkPixels(pixels);
    return tf.tidy(() => {
      const { numChannels: c, patchSize: p, gridSize: g, hiddenSize: H } = this.config;
      const b = pixels.shape[0]!;
      // [b, c, g*p, g*p] -> [b*c*g, p, g, p] -> [b*c*g, g, p, p] -> [b, c, g*g, p*p] -> [b, g*g, c, p*p]
      let x = tf.transpose(tf.reshape(pixels, [b * c * g, p, g, p]), [0, 2, 1, 3]);
      x = tf.transpose(tf.reshape(x, [b, c, g * g, p * p]), [0, 2, 1, 3]);
      const patches = tf.reshape(x, [b * g * g, c * p * p]);
      let e = tf.matMul(patches, tf.reshape(this.patchWeight, [H, c * p * p]), false, true);
      if (this.patchBias) e = tf.add(e, this.patchBias);
      e = tf.reshape(e, [b, g * g, H]);
      if (this.classEmbedding) e = tf.concat([tf.tile(tf.reshape(this.classEmbedding, [1, 1, H]), [b, 1, 1]), e], 1);
      e = tf.add(e, this.positionEmbedding);
      return this.preNorm ? this.preNorm.forward(e) : e;
    });
  }

  forward(pixels: Tensor, options: VisionForwardOptions = {}): VisionOutput {
    this.checkPixels(pixels);
    return tf.tidy(() => {
      let x = this.embed(pixels);
      const states: Tensor[] = [x];
      for (const layer of this.layers) {
        x = layer.forward(x);
        states.push(x);
      }
      const out: VisionOutput = { lastHiddenState: x };
      if (this.config.classToken) {
        const [b, , H] = x.shape as [number, number, number];
        out.pooled = this.postNorm.forward(tf.reshape(tf.slice(x, [0, 0, 0], [b, 1, H]), [b, H]));
      } else {
        out.lastHiddenState = this.postNorm.forward(x);
        if (this.head) out.pooled = this.head.forward(out.lastHiddenState);
      }
      if (options.outputHiddenStates) out.hiddenStates = states;
      return out as unknown as tf.TensorContainerObject;
    }) as unknown as VisionOutput;
  }

  /**
   * LLaVA's image features: hidden_states[layer] (several layers are concatenated along features),
   * without the first position when strategy is 'default'. Runs only the layers it needs.
   * [batch, seq or seq - 1, hidden * layers]
   */
  selectFeatures(pixels: Tensor, selection: FeatureSelection): Tensor {
    this.checkPixels(pixels);
    const n = this.config.numLayers + 1;
    const layers = (Array.isArray(selection.layer) ? selection.layer : [selection.layer]).map((l) => {
      const i = l < 0 ? n + l : l;
      if (!Number.isInteger(l) || i < 0 || i >= n) {
        throw new UnimeError(`vision_feature_layer ${l} is out of range: the tower has ${n} hidden states (embeddings + ${n - 1} layers), so use -${n}..${n - 1}`, {
          field: 'vision_feature_layer',
        });
      }
      return i;
    });
    if (layers.length === 0) throw new UnimeError('vision_feature_layer lists no layers', { field: 'vision_feature_layer' });
    return tf.tidy(() => {
      const deepest = Math.max(...layers);
      const states: Tensor[] = [this.embed(pixels)];
      for (let i = 0; i < deepest; i++) states.push(this.layers[i]!.forward(states[i]!));
      const picked = layers.map((i) => states[i]!);
      let f = picked.length === 1 ? picked[0]! : tf.concat(picked, -1);
      if (selection.strategy === 'default') {
        const [b, s, h] = f.shape as [number, number, number];
        f = tf.slice(f, [0, 1, 0], [b, s - 1, h]);
      }
      return f;
    });
  }

  dispose(): void {
    for (const v of this.weights.values()) v.dispose();
  }
}

/** The weights of `numLayers` pre-LN encoder layers (CLIP/SigLIP vision, CLIP text) into `w`, keys `encoder.layers.<i>.*`. */
export function encoderLayerWeights(w: Map<string, number[]>, numLayers: number, H: number, I: number): void {
  for (let i = 0; i < numLayers; i++) {
    const p = `encoder.layers.${i}`;
    w.set(`${p}.layer_norm1.weight`, [H]);
    w.set(`${p}.layer_norm1.bias`, [H]);
    for (const proj of ['q_proj', 'k_proj', 'v_proj', 'out_proj']) {
      w.set(`${p}.self_attn.${proj}.weight`, [H, H]);
      w.set(`${p}.self_attn.${proj}.bias`, [H]);
    }
    w.set(`${p}.layer_norm2.weight`, [H]);
    w.set(`${p}.layer_norm2.bias`, [H]);
    w.set(`${p}.mlp.fc1.weight`, [I, H]);
    w.set(`${p}.mlp.fc1.bias`, [I]);
    w.set(`${p}.mlp.fc2.weight`, [H, I]);
    w.set(`${p}.mlp.fc2.bias`, [H]);
  }
}

/** Every weight a tower with this config reads, with its shape; keys relative to the tower prefix. */
export function expectedVisionWeights(cfg: VisionConfig, withHead: boolean): Map<string, number[]> {
  const { hiddenSize: H, intermediateSize: I, numChannels: C, patchSize: P, seqLen } = cfg;
  const w = new Map<string, number[]>();
  w.set('embeddings.patch_embedding.weight', [H, C, P, P]);
  if (cfg.classToken) w.set('embeddings.class_embedding', [H]);
  else w.set('embeddings.patch_embedding.bias', [H]);
  w.set('embeddings.position_embedding.weight', [seqLen, H]);
  const norm = (p: string) => {
    w.set(`${p}.weight`, [H]);
    w.set(`${p}.bias`, [H]);
  };
  const mlp = (p: string) => {
    w.set(`${p}.fc1.weight`, [I, H]);
    w.set(`${p}.fc1.bias`, [I]);
    w.set(`${p}.fc2.weight`, [H, I]);
    w.set(`${p}.fc2.bias`, [H]);
  };
  if (cfg.classToken) norm('pre_layrnorm');
  encoderLayerWeights(w, cfg.numLayers, H, I);
  norm('post_layernorm');
  if (withHead) {
    w.set('head.probe', [1, 1, H]);
    w.set('head.attention.in_proj_weight', [3 * H, H]);
    w.set('head.attention.in_proj_bias', [3 * H]);
    w.set('head.attention.out_proj.weight', [H, H]);
    w.set('head.attention.out_proj.bias', [H]);
    norm('head.layernorm');
    mlp('head.mlp');
  }
  return w;
}
