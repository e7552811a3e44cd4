/**
 * The small modules a decoder is made of. Each holds its weights (tfjs variables named by their
 * Hugging Face key) and has a pure `forward`; none of them creates tensors outside the ops it runs,
 * so a forward inside tf.tidy leaves nothing behind.
 */
import { tf, type Tensor } from '../../runtime/tf.js';
import { attention, rmsNorm } from '../../runtime/native/ops.js';
import type { DecoderConfig } from './config.js';
import { applyRope } from './rope.js';

/** Weight lookup by the key relative to the decoder prefix (e.g. 'layers.0.self_attn.q_proj.weight'). */
export type WeightGetter = (name: string) => tf.Variable;

/** An extra term added to a Linear's output (a LoRA branch); x2d is [n, in], the result [n, out]. */
export interface LinearDelta {
  forward(x2d: Tensor): Tensor;
}

/** y = x W^T (+ b) (+ delta(x)), with W stored [out, in] as in PyTorch. x is [..., in]. */
export class Linear {
  /** Set by src/models/peft when an adapter is attached; null for a plain layer. */
  delta: LinearDelta | null = null;

  constructor(
    readonly weight: tf.Variable,
    readonly bias: tf.Variable | null,
  ) {}

  static from(get: WeightGetter, name: string, bias: boolean): Linear {
    return new Linear(get(`${name}.weight`), bias ? get(`${name}.bias`) : null);
  }

  forward(x: Tensor): Tensor {
    return tf.tidy(() => {
      const inDim = x.shape[x.shape.length - 1]!;
      const lead = x.shape.slice(0, -1);
      const x2d = tf.reshape(x, [-1, inDim]);
      let y = tf.matMul(x2d, this.weight, false, true);
      if (this.bias) y = tf.add(y, this.bias);
      if (this.delta) y = tf.add(y, this.delta.forward(x2d));
      return tf.reshape(y, [...lead, this.weight.shape[0]!]);
    });
  }
}

export class Embedding {
  constructor(readonly weight: tf.Variable) {}

  /** ids: int32 [batch, seq] -> [batch, seq, hidden] */
  forward(ids: Tensor): Tensor {
    return tf.tidy(() => {
      const [b, s] = ids.shape as [number, number];
      return tf.reshape(tf.gather(this.weight, tf.reshape(ids, [-1])), [b, s, this.weight.shape[1]!]);
    });
  }
}

/** x / sqrt(mean(x^2) + eps) * w over the last axis. */
export class RmsNorm {
  constructor(
    readonly weight: tf.Variable,
    readonly eps: number,
  ) {}

  forward(x: Tensor): Tensor {
    // One fused kernel each way on the native backend; the tfjs composition elsewhere.
    return rmsNorm(x, this.weight, this.eps);
  }
}

/** Per-call attention inputs shared by all layers. */
export interface AttentionContext {
  cos: Tensor;
  sin: Tensor;
  /** Query i sees keys j <= i only (false: bidirectional). */
  causal: boolean;
  /** [batch, seq] 1 for real keys, 0 for padding; null when nothing is padded. */
  keyMask: Tensor | null;
}

/** Grouped-query self-attention with optional qkv bias (Qwen2), q/k RMSNorm (Qwen3) and fused qkv (Phi-3). */
export class Attention {
  readonly qkv: Linear | null;
  readonly q: Linear | null;
  readonly k: Linear | null;
  readonly v: Linear | null;
  readonly o: Linear;
  readonly qNorm: RmsNorm | null;
  readonly kNorm: RmsNorm | null;

  constructor(
    readonly cfg: DecoderConfig,
    get: WeightGetter,
    prefix: string,
  ) {
    if (cfg.fusedQkv) {
      this.qkv = Linear.from(get, `${prefix}.qkv_proj`, cfg.qkvBias);
      this.q = this.k = this.v = null;
    } else {
      this.qkv = null;
      this.q = Linear.from(get, `${prefix}.q_proj`, cfg.qkvBias);
      this.k = Linear.from(get, `${prefix}.k_proj`, cfg.qkvBias);
      this.v = Linear.from(get, `${prefix}.v_proj`, cfg.qkvBias);
    }
    this.o = Linear.from(get, `${prefix}.o_proj`, cfg.oBias);
    this.qNorm = cfg.qkNorm ? new RmsNorm(get(`${prefix}.q_norm.weight`), cfg.rmsNormEps) : null;
    this.kNorm = cfg.qkNorm ? new RmsNorm(get(`${prefix}.k_norm.weight`), cfg.rmsNormEps) : null;
  }

  forward(x: Tensor, ctx: AttentionContext): Tensor {
    return tf.tidy(() => {
      const { numHeads: nh, numKvHeads: nkv, headDim: hd } = this.cfg;
      const [b, s] = x.shape as [number, number, number];
      let q: Tensor, k: Tensor, v: Tensor;
      if (this.qkv) {
        [q, k, v] = tf.split(this.qkv.forward(x), [nh * hd, nkv * hd, nkv * hd], -1) as [Tensor, Tensor, Tensor];
      } else {
        q = this.q!.forward(x);
        k = this.k!.forward(x);
        v = this.v!.forward(x);
      }
      q = tf.reshape(q, [b, s, nh, hd]);
      k = tf.reshape(k, [b, s, nkv, hd]);
      v = tf.reshape(v, [b, s, nkv, hd]);
      if (this.qNorm) q = this.qNorm.forward(q);
      if (this.kNorm) k = this.kNorm.forward(k);
      q = applyRope(tf.transpose(q, [0, 2, 1, 3]), ctx.cos, ctx.sin);
      k = applyRope(tf.transpose(k, [0, 2, 1, 3]), ctx.cos, ctx.sin);
      v = tf.transpose(v, [0, 2, 1, 3]);
      // Grouped-query attention: query head i reads kv head floor(i / (nh / nkv)), like repeat_interleave.
      // Fused (scores never materialised for the backward) on the native backend.
      const out = attention(q, k, v, { causal: ctx.causal, keyMask: ctx.keyMask, scale: 1 / Math.sqrt(hd) });
      return this.o.forward(tf.reshape(tf.transpose(out, [0, 2, 1, 3]), [b, s, nh * hd]));
    });
  }
}

/** down(silu(gate(x)) * up(x)); Phi-3 keeps gate and up in one gate_up_proj (gate first). */
export class SwiGluMlp {
  readonly gateUp: Linear | null;
  readonly gate: Linear | null;
  readonly up: Linear | null;
  readonly down: Linear;

  constructor(
    readonly cfg: DecoderConfig,
    get: WeightGetter,
    prefix: string,
  ) {
    if (cfg.fusedGateUp) {
      this.gateUp = Linear.from(get, `${prefix}.gate_up_proj`, cfg.mlpBias);
      this.gate = this.up = null;
    } else {
      this.gateUp = null;
      this.gate = Linear.from(get, `${prefix}.gate_proj`, cfg.mlpBias);
      this.up = Linear.from(get, `${prefix}.up_proj`, cfg.mlpBias);
    }
    this.down = Linear.from(get, `${prefix}.down_proj`, cfg.mlpBias);
  }

  forward(x: Tensor): Tensor {
    return tf.tidy(() => {
      let g: Tensor, u: Tensor;
      if (this.gateUp) [g, u] = tf.split(this.gateUp.forward(x), 2, -1) as [Tensor, Tensor];
      else {
        g = this.gate!.forward(x);
        u = this.up!.forward(x);
      }
      return this.down.forward(tf.mul(tf.mul(g, tf.sigmoid(g)), u));
    });
  }
}

/** Pre-norm block: x + attn(norm(x)), then + mlp(norm(.)). */
export class DecoderLayer {
  readonly inputNorm: RmsNorm;
  readonly attention: Attention;
  readonly postAttentionNorm: RmsNorm;
  readonly mlp: SwiGluMlp;

  constructor(cfg: DecoderConfig, get: WeightGetter, i: number) {
    const p = `layers.${i}`;
    this.inputNorm = new RmsNorm(get(`${p}.input_layernorm.weight`), cfg.rmsNormEps);
    this.attention = new Attention(cfg, get, `${p}.self_attn`);
    this.postAttentionNorm = new RmsNorm(get(`${p}.post_attention_layernorm.weight`), cfg.rmsNormEps);
    this.mlp = new SwiGluMlp(cfg, get, `${p}.mlp`);
  }

  forward(x: Tensor, ctx: AttentionContext): Tensor {
    return tf.tidy(() => {
      const h = tf.add(x, this.attention.forward(this.inputNorm.forward(x), ctx));
      return tf.add(h, this.mlp.forward(this.postAttentionNorm.forward(h)));
    });
  }
}

/** Every weight a decoder with this config reads, with its shape; keys relative to the decoder prefix. */
export function expectedDecoderWeights(cfg: DecoderConfig): Map<string, number[]> {
  const { hiddenSize: H, intermediateSize: I, numHeads: nh, numKvHeads: nkv, headDim: hd } = cfg;
  const w = new Map<string, number[]>();
  w.set('embed_tokens.weight', [cfg.vocabSize, H]);
  for (let i = 0; i < cfg.numLayers; i++) {
    const p = `layers.${i}`;
    w.set(`${p}.input_layernorm.weight`, [H]);
    w.set(`${p}.post_attention_layernorm.weight`, [H]);
    const a = `${p}.self_attn`;
    if (cfg.fusedQkv) {
      w.set(`${a}.qkv_proj.weight`, [(nh + 2 * nkv) * hd, H]);
      if (cfg.qkvBias) w.set(`${a}.qkv_proj.bias`, [(nh + 2 * nkv) * hd]);
    } else {
      w.set(`${a}.q_proj.weight`, [nh * hd, H]);
      w.set(`${a}.k_proj.weight`, [nkv * hd, H]);
      w.set(`${a}.v_proj.weight`, [nkv * hd, H]);
      if (cfg.qkvBias) {
        w.set(`${a}.q_proj.bias`, [nh * hd]);
        w.set(`${a}.k_proj.bias`, [nkv * hd]);
        w.set(`${a}.v_proj.bias`, [nkv * hd]);
      }
    }
    w.set(`${a}.o_proj.weight`, [H, nh * hd]);
    if (cfg.oBias) w.set(`${a}.o_proj.bias`, [H]);
    if (cfg.qkNorm) {
      w.set(`${a}.q_norm.weight`, [hd]);
      w.set(`${a}.k_norm.weight`, [hd]);
    }
    const m = `${p}.mlp`;
    if (cfg.fusedGateUp) {
      w.set(`${m}.gate_up_proj.weight`, [2 * I, H]);
      if (cfg.mlpBias) w.set(`${m}.gate_up_proj.bias`, [2 * I]);
    } else {
      w.set(`${m}.gate_proj.weight`, [I, H]);
      w.set(`${m}.up_proj.weight`, [I, H]);
      if (cfg.mlpBias) {
        w.set(`${m}.gate_proj.bias`, [I]);
        w.set(`${m}.up_proj.bias`, [I]);
      }
    }
    w.set(`${m}.down_proj.weight`, [H, I]);
    if (cfg.mlpBias) w.set(`${m}.down_proj.bias`, [H]);
  }
  w.set('norm.weight', [H]);
  return w;
}
