/**
 * AdamW (Loshchilov & Hutter) as PyTorch's torch.optim.AdamW computes it: decoupled weight decay
 * first (p -= lr * wd * p), then the Adam update with bias correction:
 *
 *   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
 *   p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
 *
 * The lr is passed to every step (the schedule owns it). State (m, v per parameter and the step count)
 * exports to named tensors and JSON, so a checkpoint restores it bit for bit.
 */
import { tf, type Tensor } from '../runtime/tf.js';
import { UnimeError } from '../errors.js';

export interface AdamWOptions {
  beta1?: number;
  beta2?: number;
  eps?: number;
  weightDecay?: number;
  /** Parameters to exempt from weight decay (by name); default none, as torch.optim.AdamW with one group. */
  noDecay?: (name: string) => boolean;
  /**
   * Per-parameter learning-rate multiplier (by name; default 1): PyTorch parameter groups whose lr is
   * the scheduled lr times this factor, e.g. layer-wise lr decay. Weight decay scales with it, as a
   * group's lr * weight_decay does.
   */
  lrScale?: (name: string) => number;
  /** Update with one fused loop over host memory; default: when the backend keeps tensors on the host (cpu, native). */
  hostLoop?: boolean;
}

export interface AdamWHyper {
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
}

/** The JSON half of the optimizer state; the tensors are `<param>.exp_avg` and `<param>.exp_avg_sq`. */
export interface AdamWStateJson {
  kind: 'adamw';
  step: number;
  hyper: AdamWHyper;
  params: string[];
}

export const EXP_AVG = '.exp_avg';
export const EXP_AVG_SQ = '.exp_avg_sq';

interface Slot {
  param: tf.Variable;
  m: tf.Variable;
  v: tf.Variable;
  decay: boolean;
  lrScale: number;
}

// The zeros are created in a scope so only the variable (which shares their data) survives.
function zerosVariable(like: Tensor): tf.Variable {
  let v: tf.Variable | undefined;
  tf.tidy(() => {
    v = tf.variable(tf.zerosLike(like), false);
  });
  return v!;
}

/** Backends whose tensors live in host memory, where one fused loop beats a dozen elementwise ops. */
const HOST_BACKENDS = new Set(['cpu', 'native']);

/**
 * The same update as the tensor path, as one pass over host arrays: p' = p (1 - lr wd) - stepSize m' /
 * (sqrt(v') / bc2Sqrt + eps), m' = b1 m + (1 - b1) g, v' = b2 v + (1 - b2) g^2. New arrays are written
 * (tensors stay immutable) and assigned; the old buffers go back to the backend.
 */
function hostUpdate(
  slot: Slot,
  grad: Tensor,
  h: { beta1: number; beta2: number; eps: number; lrDecay: number; bc2Sqrt: number; stepSize: number },
): void {
  const g = grad.dataSync() as Float32Array;
  const p = slot.param.dataSync() as Float32Array;
  const m = slot.m.dataSync() as Float32Array;
  const v = slot.v.dataSync() as Float32Array;
  const n = p.length;
  const p2 = new Float32Array(n);
  const m2 = new Float32Array(n);
  const v2 = new Float32Array(n);
  const { beta1, beta2, eps, bc2Sqrt, stepSize } = h;
  const keep = 1 - h.lrDecay;
  const c1 = 1 - beta1;
  const c2 = 1 - beta2;
  for (let i = 0; i < n; i++) {
    const gi = g[i]!;
    const mi = beta1 * m[i]! + c1 * gi;
    const vi = beta2 * v[i]! + c2 * gi * gi;
    m2[i] = mi;
    v2[i] = vi;
    p2[i] = p[i]! * keep - (stepSize * mi) / (Math.sqrt(vi) / bc2Sqrt + eps);
  }
  const shape = slot.param.shape;
  for (const [variable, data] of [
    [slot.m, m2],
    [slot.v, v2],
    [slot.param, p2],
  ] as const) {
    const t = tf.tensor(data, shape, 'float32');
    variable.assign(t);
    t.dispose();
  }
}

export class AdamW {
  readonly hyper: AdamWHyper;
  private readonly hostLoop: boolean | undefined;
  /** Optimizer steps taken so far (PyTorch's state['step']). */
  step = 0;
  private readonly slots: Slot[];

  constructor(params: readonly tf.Variable[], options: AdamWOptions = {}) {
    const hyper: AdamWHyper = {
      beta1: options.beta1 ?? 0.9,
      beta2: options.beta2 ?? 0.999,
      eps: options.eps ?? 1e-8,
      weightDecay: options.weightDecay ?? 0,
    };
    for (const k of ['beta1', 'beta2'] as const) {
      if (!(hyper[k] >= 0 && hyper[k] < 1)) throw new UnimeError(`AdamW: ${k} must be in [0, 1), got ${hyper[k]}`);
    }
    if (!(hyper.eps > 0)) throw new UnimeError(`AdamW: eps must be positive, got ${hyper.eps}`);
    if (!(hyper.weightDecay >= 0)) throw new UnimeError(`AdamW: weightDecay must be >= 0, got ${hyper.weightDecay}`);
    const names = params.map((p) => p.name);
    if (new Set(names).size !== names.length) throw new UnimeError(`AdamW: parameter names must be unique, got ${names.join(', ')}`);
    this.hyper = hyper;
    this.hostLoop = options.hostLoop;
    for (const p of params) {
      const sc = options.lrScale?.(p.name) ?? 1;
      if (!(Number.isFinite(sc) && sc >= 0)) throw new UnimeError(`AdamW: the lr scale of ${p.name} must be a finite number >= 0, got ${sc}`);
    }
    this.slots = params.map((param) => ({
      param,
      m: zerosVariable(param),
      v: zerosVariable(param),
      decay: !(options.noDecay?.(param.name) ?? false),
      lrScale: options.lrScale?.(param.name) ?? 1,
    }));
  }

  get paramNames(): string[] {
    return this.slots.map((s) => s.param.name);
  }

  /**
   * One update with learning rate `lr`. `grads` maps parameter names to gradients; a parameter
   * without a gradient is left alone (its moments too), as PyTorch skips parameters whose grad is None.
   */
  update(grads: ReadonlyMap<string, Tensor>, lr: number): void {
    if (!Number.isFinite(lr) || lr < 0) throw new UnimeError(`AdamW: lr must be a finite number >= 0, got ${lr}`);
    for (const name of grads.keys()) {
      if (!this.slots.some((s) => s.param.name === name)) throw new UnimeError(`AdamW: got a gradient for ${JSON.stringify(name)}, which is not one of the optimizer's parameters`);
    }
    this.step += 1;
    const { beta1, beta2, eps, weightDecay } = this.hyper;
    const bc1 = 1 - beta1 ** this.step;
    const bc2Sqrt = Math.sqrt(1 - beta2 ** this.step);
    for (const slot of this.slots) {
      const g = grads.get(slot.param.name);
      if (g === undefined) continue;
      const lrSlot = lr * slot.lrScale;
      const stepSize = lrSlot / bc1;
      if (g.shape.length !== slot.param.shape.length || g.shape.some((d, i) => d !== slot.param.shape[i])) {
        throw new UnimeError(`AdamW: gradient for ${slot.param.name} has shape [${g.shape.join(', ')}], the parameter [${slot.param.shape.join(', ')}]`);
      }
      if (this.hostLoop ?? HOST_BACKENDS.has(tf.getBackend())) {
        hostUpdate(slot, g, { beta1, beta2, eps, lrDecay: slot.decay ? lrSlot * weightDecay : 0, bc2Sqrt, stepSize });
        continue;
      }
      tf.tidy(() => {
        let p: Tensor = slot.param;
        if (slot.decay && weightDecay !== 0) p = tf.mul(p, tf.scalar(1 - lrSlot * weightDecay));
        const m = tf.add(tf.mul(slot.m, tf.scalar(beta1)), tf.mul(g, tf.scalar(1 - beta1)));
        const v = tf.add(tf.mul(slot.v, tf.scalar(beta2)), tf.mul(tf.mul(g, g), tf.scalar(1 - beta2)));
        const denom = tf.add(tf.div(tf.sqrt(v), tf.scalar(bc2Sqrt)), tf.scalar(eps));
        p = tf.sub(p, tf.mul(tf.div(m, denom), tf.scalar(stepSize)));
        slot.m.assign(m);
        slot.v.assign(v);
        slot.param.assign(p);
      });
    }
  }

  /** The moments as named tensors (`<param>.exp_avg`, `<param>.exp_avg_sq`); the caller must not dispose them. */
  stateTensors(): Map<string, Tensor> {
    const out = new Map<string, Tensor>();
    for (const s of this.slots) {
      out.set(s.param.name + EXP_AVG, s.m);
      out.set(s.param.name + EXP_AVG_SQ, s.v);
    }
    return out;
  }

  stateJson(): AdamWStateJson {
    return { kind: 'adamw', step: this.step, hyper: { ...this.hyper }, params: this.paramNames };
  }

  /**
   * Restore state saved by stateJson/stateTensors. `tensors` gives each moment as a flat Float32Array;
   * every parameter of this optimizer must be present with the right size.
   */
  loadState(json: AdamWStateJson, tensors: ReadonlyMap<string, Float32Array>, label = 'optimizer state'): void {
    if (json.kind !== 'adamw' || !Number.isInteger(json.step) || json.step < 0) {
      throw new UnimeError(`${label}: not an AdamW state (kind ${JSON.stringify(json.kind)}, step ${json.step})`);
    }
    for (const k of ['beta1', 'beta2', 'eps', 'weightDecay'] as const) {
      if (json.hyper?.[k] !== this.hyper[k]) {
        throw new UnimeError(`${label}: ${k} was ${json.hyper?.[k]} in the saved run, ${this.hyper[k]} now`, {
          fix: 'resume with the same optimizer settings as the run that wrote the checkpoint',
        });
      }
    }
    const loaded: [Slot, Float32Array, Float32Array][] = [];
    for (const s of this.slots) {
      const m = tensors.get(s.param.name + EXP_AVG);
      const v = tensors.get(s.param.name + EXP_AVG_SQ);
      if (!m || !v) throw new UnimeError(`${label}: no moments for parameter ${s.param.name}`, { fix: 'resume with the same trainable parameters as the run that wrote the checkpoint' });
      if (m.length !== s.param.size || v.length !== s.param.size) {
        throw new UnimeError(`${label}: moments for ${s.param.name} have ${m.length} values, the parameter ${s.param.size}`);
      }
      loaded.push([s, m, v]);
    }
    for (const [s, m, v] of loaded) {
      tf.tidy(() => {
        s.m.assign(tf.tensor(m, s.param.shape, 'float32'));
        s.v.assign(tf.tensor(v, s.param.shape, 'float32'));
      });
    }
    this.step = json.step;
  }

  dispose(): void {
    for (const s of this.slots) {
      s.m.dispose();
      s.v.dispose();
    }
  }
}
