/**
 * Ops that tfjs builds out of several kernels but the native backend runs as one. Each dispatches to the
 * native kernel when the native backend is active and to tfjs's own op otherwise, so model code can call
 * these unconditionally and get identical results (to float rounding) on every device.
 */
import { tf, type Tensor } from '../tf.js';
import { ACTIVATIONS, type ActivationName } from './addon.js';
import {
  ACTIVATION_GRAD_KERNEL,
  ACTIVATION_KERNEL,
  ATTENTION_GRAD_KERNEL,
  ATTENTION_KERNEL,
  CROSS_ENTROPY_GRAD_KERNEL,
  CROSS_ENTROPY_KERNEL,
  LAYER_NORM_GRAD_KERNEL,
  LAYER_NORM_KERNEL,
  LOG_SOFTMAX_KERNEL,
  NATIVE_BACKEND,
  RMS_NORM_GRAD_KERNEL,
  RMS_NORM_KERNEL,
  ROPE_KERNEL,
} from './backend.js';

/** log(softmax(x)) along `axis` (default: the last), computed stably in one pass per row natively. */
export function logSoftmax<T extends Tensor>(x: T, axis = -1): T {
  const rank = x.rank;
  const last = axis === -1 || axis === rank - 1;
  if (tf.getBackend() !== NATIVE_BACKEND || !last || x.dtype !== 'float32' || rank === 0) return tf.logSoftmax(x, axis);
  const op = tf.customGrad((...args: (Tensor | ((ts: Tensor[]) => void))[]) => {
    const input = args[0] as Tensor;
    const save = args[1] as (ts: Tensor[]) => void;
    const y = tf.engine().runKernel(LOG_SOFTMAX_KERNEL, { x: input }, {}) as Tensor;
    save([y]);
    return {
      value: y,
      // d/dx log_softmax: dy - softmax(x) * sum(dy)
      gradFunc: (dy: Tensor, saved: Tensor[]) => {
        const [value] = saved as [Tensor];
        return tf.sub(dy, tf.mul(tf.exp(value), tf.sum(dy, -1, true)));
      },
    };
  });
  return op(x) as T;
}

type Saver = (ts: Tensor[]) => void;
type GradOut = { value: Tensor; gradFunc: (dy: Tensor, saved: Tensor[]) => Tensor | Tensor[] };

/** tf.customGrad with plain positional tensors and the save function last. */
function fused(n: number, f: (inputs: Tensor[], save: Saver) => GradOut): (...inputs: Tensor[]) => Tensor {
  const g = tf.customGrad((...args: (Tensor | Saver)[]) => f(args.slice(0, n) as Tensor[], args[n] as Saver));
  return (...inputs: Tensor[]) => g(...inputs) as Tensor;
}

function nativeActive(...ts: (Tensor | null | undefined)[]): boolean {
  return tf.getBackend() === NATIVE_BACKEND && ts.every((t) => !t || t.dtype === 'float32') && (ts[0]?.rank ?? 0) > 0;
}

/**
 * x / sqrt(mean(x^2) + eps) * weight over the last axis (weight [d] or null). Natively one kernel
 * forward and one backward; elsewhere tfjs ops (the reference).
 */
export function rmsNorm(x: Tensor, weight: Tensor | null, eps: number): Tensor {
  if (!nativeActive(x, weight)) {
    return tf.tidy(() => {
      const y = tf.mul(x, tf.rsqrt(tf.add(tf.mean(tf.square(x), -1, true), eps)));
      return weight ? tf.mul(y, weight) : y;
    });
  }
  const run = (ins: Tensor[], save: Saver): GradOut => {
    const [x0, w] = ins as [Tensor, Tensor | undefined];
    const [y, rstd] = tf.engine().runKernel(RMS_NORM_KERNEL, w ? { x: x0, weight: w } : { x: x0 }, { eps }) as Tensor[];
    save(w ? [x0, rstd!, w] : [x0, rstd!]);
    return {
      value: y!,
      gradFunc: (dy, saved) => {
        const [xs, r, ws] = saved as [Tensor, Tensor, Tensor | undefined];
        return tf.engine().runKernel(RMS_NORM_GRAD_KERNEL, ws ? { dy, x: xs, rstd: r, weight: ws } : { dy, x: xs, rstd: r }, {}) as Tensor[];
      },
    };
  };
  return weight ? fused(2, run)(x, weight) : fused(1, run)(x);
}

/** (x - mean) / sqrt(var + eps) * gamma + beta over the last axis (gamma, beta [d] or null). */
export function layerNorm(x: Tensor, gamma: Tensor | null, beta: Tensor | null, eps: number): Tensor {
  if (!nativeActive(x, gamma, beta)) {
    return tf.tidy(() => {
      const { mean, variance } = tf.moments(x, -1, true);
      let y = tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, eps)));
      if (gamma) y = tf.mul(y, gamma);
      if (beta) y = tf.add(y, beta);
      return y;
    });
  }
  const params = [gamma, beta].filter((t): t is Tensor => t !== null);
  const op = fused(1 + params.length, (ins, save) => {
    const [x0] = ins as [Tensor];
    const g = gamma ? ins[1] : undefined;
    const inputs: Record<string, Tensor> = { x: x0 };
    if (g) inputs.gamma = g;
    if (beta) inputs.beta = ins[ins.length - 1]!;
    const [y, mean, rstd] = tf.engine().runKernel(LAYER_NORM_KERNEL, inputs, { eps }) as Tensor[];
    save(g ? [x0, mean!, rstd!, g] : [x0, mean!, rstd!]);
    return {
      value: y!,
      gradFunc: (dy, saved) => {
        const [xs, m, r, gs] = saved as [Tensor, Tensor, Tensor, Tensor | undefined];
        const gradInputs: Record<string, Tensor> = { dy, x: xs, mean: m, rstd: r };
        if (gs) gradInputs.gamma = gs;
        return tf.engine().runKernel(LAYER_NORM_GRAD_KERNEL, gradInputs, { hasBeta: beta !== null }) as Tensor[];
      },
    };
  });
  return op(x, ...params);
}

const REFERENCE_ACTIVATIONS: Record<ActivationName, (x: Tensor) => Tensor> = {
  silu: (x) => tf.mul(x, tf.sigmoid(x)),
  geluTanh: (x) => tf.mul(tf.mul(x, 0.5), tf.add(1, tf.tanh(tf.mul(Math.sqrt(2 / Math.PI), tf.add(x, tf.mul(0.044715, tf.pow(x, 3))))))),
  geluErf: (x) => tf.mul(tf.mul(x, 0.5), tf.add(1, tf.erf(tf.mul(x, Math.SQRT1_2)))),
  quickGelu: (x) => tf.mul(x, tf.sigmoid(tf.mul(x, 1.702))),
};

/**
 * An activation by name: silu (x * sigmoid(x)), geluTanh (the tanh approximation, PyTorch's
 * gelu(approximate='tanh')), geluErf (exact gelu) or quickGelu (x * sigmoid(1.702 x), OpenAI CLIP).
 */
export function activation(name: ActivationName, x: Tensor): Tensor {
  if (!(name in REFERENCE_ACTIVATIONS)) throw new Error(`unknown activation "${name}"; use one of ${ACTIVATIONS.join(', ')}`);
  if (!nativeActive(x)) return tf.tidy(() => REFERENCE_ACTIVATIONS[name](x));
  return fused(1, ([x0], save) => {
    save([x0!]);
    return {
      value: tf.engine().runKernel(ACTIVATION_KERNEL, { x: x0! }, { kind: name }) as Tensor,
      gradFunc: (dy, [xs]) => tf.engine().runKernel(ACTIVATION_GRAD_KERNEL, { x: xs!, dy }, { kind: name }) as Tensor,
    };
  })(x);
}

export const silu = (x: Tensor): Tensor => activation('silu', x);
export const gelu = (x: Tensor, approximate: 'tanh' | 'none' = 'none'): Tensor => activation(approximate === 'tanh' ? 'geluTanh' : 'geluErf', x);
export const quickGelu = (x: Tensor): Tensor => activation('quickGelu', x);

export interface AttentionOptions {
  /** Query i sees keys j <= i + (Sk - Sq) only. */
  causal?: boolean;
  /** [batch, Sk], 1 where a key is real and 0 where it is padding (any dtype; not differentiated). */
  keyMask?: Tensor | null;
  /** Multiplies q k^T; default 1 / sqrt(headDim). */
  scale?: number;
}

/**
 * softmax(q k^T * scale + masks) v for q [B, H, Sq, D] and k, v [B, Hkv, Sk, D] (grouped-query attention
 * when Hkv < H: query head h reads kv head h / (H / Hkv)). Masked keys get probability exactly 0, and a
 * query that sees no key at all outputs 0. Natively one kernel forward and one backward that keep only a
 * log-sum-exp per query between them; elsewhere tfjs ops (the reference).
 */
export function attention(q: Tensor, k: Tensor, v: Tensor, options: AttentionOptions = {}): Tensor {
  if (q.rank !== 4 || k.rank !== 4 || v.rank !== 4) throw new Error(`attention: q, k, v must be rank 4 ([batch, heads, seq, dim]), got ${q.shape}, ${k.shape}, ${v.shape}`);
  const [B, H, Sq, D] = q.shape as [number, number, number, number];
  const [kb, Hkv, Sk, kd] = k.shape as [number, number, number, number];
  if (kb !== B || kd !== D || v.shape.some((d, i) => d !== k.shape[i]) || Hkv === 0 || H % Hkv !== 0) {
    throw new Error(`attention: incompatible shapes q ${q.shape}, k ${k.shape}, v ${v.shape} (need equal batch and dim, and heads a multiple of kv heads)`);
  }
  const keyMask = options.keyMask ?? null;
  if (keyMask && (keyMask.rank !== 2 || keyMask.shape[0] !== B || keyMask.shape[1] !== Sk)) throw new Error(`attention: keyMask must be [${B}, ${Sk}], got ${keyMask.shape}`);
  const scale = options.scale ?? 1 / Math.sqrt(D);
  const causal = options.causal ?? false;
  if (!nativeActive(q, k, v)) return referenceAttention(q, k, v, keyMask, scale, causal);
  // The 0/1 mask is saved for the backward pass (saving keeps a copy), so this one can go right after the call.
  const mask = keyMask ? tf.tidy(() => tf.cast(tf.notEqual(keyMask, 0), 'float32')) : null;
  const attrs = { scale, causal };
  try {
    return fused(3, ([q0, k0, v0], save) => {
      const [out, lse] = tf.engine().runKernel(ATTENTION_KERNEL, mask ? { q: q0!, k: k0!, v: v0!, keyMask: mask } : { q: q0!, k: k0!, v: v0! }, attrs) as Tensor[];
      save(mask ? [q0!, k0!, v0!, lse!, mask] : [q0!, k0!, v0!, lse!]);
      return {
        value: out!,
        gradFunc: (dy, saved) => {
          const [qs, ks, vs, l, m] = saved as [Tensor, Tensor, Tensor, Tensor, Tensor | undefined];
          const inputs: Record<string, Tensor> = { q: qs, k: ks, v: vs, lse: l, dy };
          if (m) inputs.keyMask = m;
          return tf.engine().runKernel(ATTENTION_GRAD_KERNEL, inputs, attrs) as Tensor[];
        },
      };
    })(q, k, v);
  } finally {
    mask?.dispose();
  }
}

function referenceAttention(q: Tensor, k: Tensor, v: Tensor, keyMask: Tensor | null, scale: number, causal: boolean): Tensor {
  return tf.tidy(() => {
    const [B, H, Sq] = q.shape as [number, number, number, number];
    const [, Hkv, Sk] = k.shape as [number, number, number, number];
    const rep = H / Hkv;
    const heads = tf.tensor1d(Array.from({ length: H }, (_, h) => Math.floor(h / rep)), 'int32');
    const expand = (t: Tensor) => (rep === 1 ? t : tf.gather(t, heads, 1));
    const scores = tf.mul(tf.matMul(q, expand(k), false, true), scale);
    // visible[b, 0, i, j]: 1 where query i may see key j
    let visible: Tensor = tf.ones([B, 1, Sq, Sk]);
    if (causal) {
      const rows = tf.reshape(tf.range(0, Sq, 1, 'int32'), [Sq, 1]);
      const cols = tf.reshape(tf.range(0, Sk, 1, 'int32'), [1, Sk]);
      visible = tf.mul(visible, tf.cast(tf.lessEqual(cols, tf.add(rows, Sk - Sq)), 'float32'));
    }
    if (keyMask) visible = tf.mul(visible, tf.reshape(tf.cast(tf.notEqual(keyMask, 0), 'float32'), [B, 1, 1, Sk]));
    const probs = tf.mul(tf.softmax(tf.add(scores, tf.mul(tf.sub(visible, 1), 1e30))), visible);
    return tf.matMul(probs, expand(v));
  });
}

/**
 * Cross-entropy of softmax(logits) against integer class labels, per row: logits [..., C], labels int32 [...]
 * -> loss [...]. A negative label marks a row to ignore (loss 0, no gradient), like PyTorch's ignore_index.
 * Natively one kernel each way; elsewhere logSoftmax and a one-hot mask (the reference).
 */
export function softmaxCrossEntropy(logits: Tensor, labels: Tensor): Tensor {
  const C = logits.shape[logits.rank - 1] ?? 0;
  if (logits.rank < 1 || labels.rank !== logits.rank - 1 || labels.shape.some((d, i) => d !== logits.shape[i])) {
    throw new Error(`softmaxCrossEntropy: labels must have logits' shape without the class axis, got logits ${logits.shape} and labels ${labels.shape}`);
  }
  if (labels.dtype !== 'int32') throw new Error(`softmaxCrossEntropy: labels must be int32, got ${labels.dtype}`);
  for (const v of labels.dataSync()) {
    if (v >= C) throw new Error(`softmaxCrossEntropy: label ${v} out of range [0, ${C}) (negative labels are ignored)`);
  }
  if (!nativeActive(logits)) {
    return tf.tidy(() => {
      const onehot = tf.cast(tf.equal(tf.expandDims(labels, -1), tf.range(0, C, 1, 'int32')), 'float32');
      return tf.neg(tf.sum(tf.mul(tf.logSoftmax(logits), onehot), -1));
    });
  }
  return fused(1, ([x], save) => {
    const [loss, lse] = tf.engine().runKernel(CROSS_ENTROPY_KERNEL, { logits: x!, labels }, {}) as Tensor[];
    save([x!, labels, lse!]);
    return {
      value: loss!,
      gradFunc: (dy, [xs, ys, l]) => tf.engine().runKernel(CROSS_ENTROPY_GRAD_KERNEL, { logits: xs!, labels: ys!, lse: l!, dy }, {}) as Tensor,
    };
  })(logits);
}

/**
 * Rotary position embedding of x [batch, heads, seq, headDim] with cos / sin tables [batch, 1, seq, rot]
 * on its first rot dims (the rest pass through: partial rotary): x * cos + rotate_half(x) * sin, as
 * transformers' apply_rotary_pos_emb. Natively one kernel each way (the tables are constants: no
 * gradient flows to them); elsewhere, or for other shapes, tfjs ops (the reference).
 */
export function rope(x: Tensor, cos: Tensor, sin: Tensor): Tensor {
  const rot = cos.shape[3] ?? 0;
  const [b, , s, d] = x.shape as number[];
  const tablesFit = (t: Tensor) => t.rank === 4 && t.shape[0] === b && t.shape[1] === 1 && t.shape[2] === s && t.shape[3] === rot;
  if (!nativeActive(x, cos, sin) || x.rank !== 4 || rot % 2 !== 0 || rot > d! || !tablesFit(cos) || !tablesFit(sin)) return ropeReference(x, cos, sin);
  const run = (ins: Tensor[], save: Saver): GradOut => {
    // The tables are saved (kept) for the backward pass: the caller may dispose them after the forward.
    save([cos, sin]);
    return {
      value: tf.engine().runKernel(ROPE_KERNEL, { x: ins[0]!, cos, sin }, { inverse: false }) as Tensor,
      gradFunc: (dy, saved) => tf.engine().runKernel(ROPE_KERNEL, { x: dy, cos: saved[0]!, sin: saved[1]! }, { inverse: true }) as Tensor,
    };
  };
  return fused(1, run)(x);
}

/** The tfjs-op form of {@link rope}: slices, a concat and broadcast products. */
export function ropeReference(x: Tensor, cos: Tensor, sin: Tensor): Tensor {
  return tf.tidy(() => {
    const [b, h, s, d] = x.shape as [number, number, number, number];
    const rot = cos.shape[3]!;
    const xr = rot === d ? x : tf.slice(x, [0, 0, 0, 0], [b, h, s, rot]);
    const half = rot / 2;
    const x1 = tf.slice(xr, [0, 0, 0, 0], [b, h, s, half]);
    const x2 = tf.slice(xr, [0, 0, 0, half], [b, h, s, half]);
    const rotated = tf.concat([tf.neg(x2), x1], 3);
    const out = tf.add(tf.mul(xr, cos), tf.mul(rotated, sin));
    if (rot === d) return out;
    return tf.concat([out, tf.slice(x, [0, 0, 0, rot], [b, h, s, d - rot])], 3);
  });
}
