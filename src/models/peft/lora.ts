/**
 * LoRA (Hu et al. 2021) on a loaded model's Linear layers, with peft's conventions: layers picked
 * by `target_modules` as peft matches them, A kaiming-uniform (a = sqrt(5)) and B zero, scaling
 * alpha / r (alpha / sqrt(r) with rsLoRA), dropout on the branch input only. The base weights are
 * frozen; the adapter lives beside them and `mergeLora` folds it in for export.
 */
import { UnimeError } from '../../errors.js';
import { dropoutMask } from '../../runtime/random.js';
import { Rng } from '../../runtime/rng.js';
import { namedVariable } from '../clip/variables.js';
import { tf, type Tensor } from '../../runtime/tf.js';
import { Linear, type LinearDelta } from '../text/modules.js';

export class LoraError extends UnimeError {}

/** peft's shorthand for every linear layer (peft leaves out the output head; our decoders have none). */
export const ALL_LINEAR = 'all-linear';

export interface LoraOptions {
  /** Rank of the update. */
  r: number;
  /** lora_alpha: the update is scaled by alpha / r (alpha / sqrt(r) with useRslora). */
  alpha: number;
  /** lora_dropout: dropout probability on the branch input, in training mode only (default 0). */
  dropout?: number;
  /**
   * Which Linear layers get an adapter, as peft matches them against the module's full name in the
   * Hugging Face model (e.g. 'model.layers.0.self_attn.q_proj'): a list of names, each matching a
   * module named exactly so or ending in '.' + name; a string, as a regular expression the whole
   * name must match; or 'all-linear'.
   */
  targetModules: readonly string[] | string;
  /** rsLoRA scaling alpha / sqrt(r) (default false). */
  useRslora?: boolean;
  /**
   * What comes before the decoder's own key names in the Hugging Face model: 'model.' for a
   * *ForCausalLM checkpoint. Default: the prefix the decoder was loaded with, else 'model.'.
   */
  modulePrefix?: string;
  /** Seeds the A initialisation and the dropout masks. Default: new Rng(0). */
  rng?: Rng;
}

/** What LoRA needs of a model: its weights by key, and Linear modules somewhere among its fields. */
export interface LoraTarget {
  readonly weights: ReadonlyMap<string, tf.Variable>;
  readonly source?: { readonly prefix: string };
}

/** The LoRA branch of one Linear: scaling * dropout(x) A^T B^T. */
export class LoraLayer implements LinearDelta {
  constructor(
    /** Full module name in the Hugging Face model ('model.layers.0.self_attn.q_proj'). */
    readonly moduleName: string,
    readonly linear: Linear,
    /** [r, in] */
    readonly loraA: tf.Variable,
    /** [out, r] */
    readonly loraB: tf.Variable,
    readonly scaling: number,
    private readonly owner: LoraAdapter,
  ) {}

  get rank(): number {
    return this.loraA.shape[0]!;
  }

  forward(x2d: Tensor): Tensor {
    return tf.tidy(() => {
      const p = this.owner.dropout;
      const h = this.owner.training && p > 0 ? tf.mul(x2d, dropoutMask(this.owner.dropoutRng, x2d.shape, p)) : x2d;
      // the scaling on the rank-r product (peft scales the output, [.., out]): the same value to within
      // float rounding, and out / r times fewer multiplications
      const low = tf.mul(tf.matMul(h, this.loraA, false, true), this.scaling);
      return tf.matMul(low, this.loraB, false, true);
    });
  }

  /** scaling * B A, [out, in]: what merging adds to the weight. */
  deltaWeight(): Tensor {
    return tf.tidy(() => tf.mul(tf.matMul(this.loraB, this.loraA), this.scaling));
  }
}

/** The adapter attached to one model. */
export class LoraAdapter {
  /** Dropout is applied only while this is true (peft: model.train()); starts false. */
  training = false;
  readonly layers: LoraLayer[] = [];

  constructor(
    readonly r: number,
    readonly alpha: number,
    readonly dropout: number,
    readonly useRslora: boolean,
    /** target_modules as given ('all-linear' expanded to the layer names it matched). */
    readonly targetModules: string[] | string,
    readonly modulePrefix: string,
    /** The stream dropout masks are drawn from; save its state to resume a run exactly. */
    readonly dropoutRng: Rng,
    /** trainable flags of the base weights before they were frozen, restored by merge/remove. */
    readonly frozen: Map<tf.Variable, boolean>,
  ) {}

  get scaling(): number {
    return loraScaling(this.r, this.alpha, this.useRslora);
  }

  train(on = true): this {
    this.training = on;
    return this;
  }

  eval(): this {
    return this.train(false);
  }

  /** All lora_A / lora_B variables, in layer order (A then B). */
  get variables(): tf.Variable[] {
    return this.layers.flatMap((l) => [l.loraA, l.loraB]);
  }

  get numParameters(): number {
    return this.variables.reduce((n, v) => n + v.size, 0);
  }
}

const ADAPTERS = new WeakMap<object, LoraAdapter>();

/** The adapter attached to a model, or undefined. */
export function getLoraAdapter(model: LoraTarget): LoraAdapter | undefined {
  return ADAPTERS.get(model);
}

export function loraScaling(r: number, alpha: number, useRslora: boolean): number {
  return useRslora ? alpha / Math.sqrt(r) : alpha / r;
}

/** peft's check_target_module_exists for a module's full name. */
export function matchesTarget(targetModules: readonly string[] | string, moduleName: string): boolean {
  if (typeof targetModules === 'string') {
    if (targetModules === ALL_LINEAR) return true;
    return new RegExp(`^(?:${targetModules})$`).test(moduleName);
  }
  return targetModules.some((t) => moduleName === t || moduleName.endsWith(`.${t}`));
}

/**
 * Every Linear module reachable from the model's fields, named by its weight's key (without
 * '.weight'), in the order of the model's weight map.
 */
export function findLinearModules(model: LoraTarget): Map<string, Linear> {
  const keyOf = new Map<tf.Variable, string>();
  for (const [k, v] of model.weights) keyOf.set(v, k);
  const found = new Map<string, Linear>();
  const seen = new Set<object>();
  const visit = (o: unknown): void => {
    if (o === null || typeof o !== 'object' || seen.has(o) || o instanceof tf.Tensor || ArrayBuffer.isView(o) || o instanceof Map) return;
    seen.add(o);
    if (o instanceof Linear) {
      const k = keyOf.get(o.weight);
      if (k !== undefined && k.endsWith('.weight')) found.set(k.slice(0, -'.weight'.length), o);
      return;
    }
    for (const v of Array.isArray(o) ? o : Object.values(o)) visit(v);
  };
  visit(model);
  const order = new Map([...model.weights.keys()].map((k, i) => [k, i]));
  return new Map([...found].sort((a, b) => order.get(`${a[0]}.weight`)! - order.get(`${b[0]}.weight`)!));
}

function checkOptions(o: LoraOptions): void {
  const bad = (field: string, problem: string, fix: string): never => {
    throw new LoraError(problem, { field, fix });
  };
  if (!Number.isInteger(o.r) || o.r < 1) bad('r', `LoRA rank must be a positive integer, got ${o.r}`, 'use e.g. r: 8');
  if (!(typeof o.alpha === 'number' && Number.isFinite(o.alpha) && o.alpha > 0)) bad('lora_alpha', `lora_alpha must be a positive number, got ${o.alpha}`, 'use e.g. twice the rank');
  const p = o.dropout ?? 0;
  if (!(typeof p === 'number' && p >= 0 && p < 1)) bad('lora_dropout', `lora_dropout must be in [0, 1), got ${p}`, 'use e.g. 0.05');
  const t = o.targetModules;
  if (typeof t === 'string') {
    if (t.length === 0) bad('target_modules', 'target_modules is empty', "name the layers, e.g. ['q_proj', 'v_proj'], or use 'all-linear'");
    try {
      new RegExp(t);
    } catch (e) {
      bad('target_modules', `target_modules ${JSON.stringify(t)} is not a valid regular expression (${(e as Error).message})`, 'fix the pattern, or give a list of module names');
    }
  } else if (!Array.isArray(t) || t.length === 0 || !t.every((x) => typeof x === 'string' && x.length > 0)) {
    bad('target_modules', 'target_modules must be a non-empty list of module names, a regular expression or "all-linear"', "e.g. ['q_proj', 'v_proj']");
  }
}


/**
 * Attach LoRA to the model's Linear layers that `targetModules` selects: freezes every base weight
 * (trainable: false) and creates trainable lora_A [r, in] (kaiming-uniform, a = sqrt(5): uniform in
 * ±1/sqrt(in)) and lora_B [out, r] (zeros), so the adapted model starts equal to the base one.
 */
export function applyLora(model: LoraTarget, options: LoraOptions): LoraAdapter {
  checkOptions(options);
  if (ADAPTERS.has(model)) {
    throw new LoraError('the model already has a LoRA adapter', { fix: 'merge it (mergeLora) or remove it (removeLora) first' });
  }
  const prefix = options.modulePrefix ?? model.source?.prefix ?? 'model.';
  const linears = findLinearModules(model);
  const chosen = [...linears].filter(([name]) => matchesTarget(options.targetModules, prefix + name));
  if (chosen.length === 0) {
    const sample = [...linears.keys()].slice(0, 6).map((n) => prefix + n);
    throw new LoraError(`target_modules ${JSON.stringify(options.targetModules)} matches none of the model's ${linears.size} linear layers (e.g. ${sample.join(', ')})`, {
      field: 'target_modules',
      fix: "use names such as 'q_proj', 'v_proj' or 'all-linear'",
    });
  }
  for (const [name, lin] of chosen) {
    if (lin.delta !== null) throw new LoraError(`${prefix + name} already has an adapter attached`, { fix: 'remove it first' });
  }
  const rng = options.rng ?? new Rng(0);
  const initRng = rng.fork('lora-init');
  const targetModules =
    options.targetModules === ALL_LINEAR ? [...new Set(chosen.map(([n]) => n.slice(n.lastIndexOf('.') + 1)))].sort() : typeof options.targetModules === 'string' ? options.targetModules : [...options.targetModules];
  const frozen = new Map<tf.Variable, boolean>();
  for (const v of model.weights.values()) {
    frozen.set(v, v.trainable);
    v.trainable = false;
  }
  const adapter = new LoraAdapter(options.r, options.alpha, options.dropout ?? 0, options.useRslora ?? false, targetModules, prefix, rng.fork('lora-dropout'), frozen);
  const scaling = adapter.scaling;
  for (const [name, lin] of chosen) {
    const [out, inDim] = lin.weight.shape as [number, number];
    const bound = 1 / Math.sqrt(inDim);
    const a = tf.tensor(initRng.fillUniform(new Float32Array(options.r * inDim), -bound, bound), [options.r, inDim], 'float32');
    const b = tf.zeros([out, options.r]);
    // A variable shares its initial tensor's buffer; disposing the tensor drops only that handle.
    const layer = new LoraLayer(prefix + name, lin, namedVariable(a, true, `${prefix + name}.lora_A.weight`), namedVariable(b, true, `${prefix + name}.lora_B.weight`), scaling, adapter);
    a.dispose();
    b.dispose();
    adapter.layers.push(layer);
    lin.delta = layer;
  }
  ADAPTERS.set(model, adapter);
  return adapter;
}

/** Detach the adapter without merging it, restoring the base weights' trainable flags. */
export function removeLora(model: LoraTarget): void {
  const adapter = requireAdapter(model, 'removeLora');
  detach(model, adapter);
}

function detach(model: LoraTarget, adapter: LoraAdapter): void {
  for (const l of adapter.layers) {
    l.linear.delta = null;
    l.loraA.dispose();
    l.loraB.dispose();
  }
  for (const [v, t] of adapter.frozen) if (!v.isDisposed) v.trainable = t;
  ADAPTERS.delete(model);
}

function requireAdapter(model: LoraTarget, fn: string): LoraAdapter {
  const a = ADAPTERS.get(model);
  if (!a) throw new LoraError(`${fn}: the model has no LoRA adapter`, { fix: 'apply one with applyLora or loadLoraAdapter first' });
  return a;
}

/**
 * Fold every adapter into its base weight, W <- W + scaling * B A, then remove the adapters: the
 * model computes the same outputs as a plain one and its weights can be saved as an HF checkpoint.
 * Returns the names of the merged modules.
 */
export function mergeLora(model: LoraTarget): string[] {
  const adapter = requireAdapter(model, 'mergeLora');
  const names: string[] = [];
  for (const l of adapter.layers) {
    const merged = tf.tidy(() => tf.add(l.linear.weight, l.deltaWeight()));
    l.linear.weight.assign(merged);
    merged.dispose();
    names.push(l.moduleName);
  }
  detach(model, adapter);
  return names;
}
