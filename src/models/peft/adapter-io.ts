/**
 * LoRA adapters on disk in peft's layout, so peft (PeftModel.from_pretrained) loads ours and we load
 * its: adapter_config.json (LoraConfig's fields, sorted, indent 2) and adapter_model.safetensors with
 * keys 'base_model.model.<module>.lora_A.weight' / '.lora_B.weight' (no adapter name; peft inserts
 * '.default' only in memory, and such keys are accepted here too).
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { writeJsonAtomic } from '../../io/atomic.js';
import { SafetensorsFile, writeSafetensors, type TensorInput } from '../../io/safetensors.js';
import { tf } from '../../runtime/tf.js';
import type { Rng } from '../../runtime/rng.js';
import { DECODER_PREFIXES } from '../text/load.js';
import { type LoraAdapter, LoraError, type LoraTarget, applyLora, findLinearModules, getLoraAdapter, matchesTarget, removeLora } from './lora.js';

export const ADAPTER_CONFIG = 'adapter_config.json';
export const ADAPTER_WEIGHTS = 'adapter_model.safetensors';
/** What peft puts before a module's name in the saved keys (PeftModel.base_model -> LoraModel.model). */
export const PEFT_KEY_PREFIX = 'base_model.model.';

/** adapter_config.json as peft writes it for LoRA (the fields every peft version since 0.7 reads). */
export interface PeftLoraConfig {
  base_model_name_or_path: string | null;
  bias: 'none';
  fan_in_fan_out: false;
  inference_mode: boolean;
  init_lora_weights: boolean;
  layers_pattern: null;
  layers_to_transform: null;
  lora_alpha: number;
  lora_dropout: number;
  modules_to_save: null;
  peft_type: 'LORA';
  r: number;
  revision: string | null;
  target_modules: string[] | string;
  task_type: string | null;
  use_rslora: boolean;
}

export interface SaveLoraOptions {
  /** The base model's Hub id or path, recorded for peft (default: the decoder's checkpoint path, else null). */
  baseModelNameOrPath?: string | null;
  /** peft task_type (default 'FEATURE_EXTRACTION': an embedding model). */
  taskType?: string | null;
  /** inference_mode (default true, as peft saves after training). */
  inferenceMode?: boolean;
  revision?: string | null;
}

/** The PEFT key of a module's lora_A / lora_B. */
export function peftKey(moduleName: string, which: 'A' | 'B'): string {
  return `${PEFT_KEY_PREFIX}${moduleName}.lora_${which}.weight`;
}

export function peftLoraConfig(adapter: LoraAdapter, options: SaveLoraOptions = {}, model?: LoraTarget): PeftLoraConfig {
  const source = (model as { source?: { checkpoint?: unknown } } | undefined)?.source;
  const base = options.baseModelNameOrPath !== undefined ? options.baseModelNameOrPath : typeof source?.checkpoint === 'string' ? source.checkpoint : null;
  return {
    base_model_name_or_path: base,
    bias: 'none',
    fan_in_fan_out: false,
    inference_mode: options.inferenceMode ?? true,
    init_lora_weights: true,
    layers_pattern: null,
    layers_to_transform: null,
    lora_alpha: adapter.alpha,
    lora_dropout: adapter.dropout,
    modules_to_save: null,
    peft_type: 'LORA',
    r: adapter.r,
    revision: options.revision ?? null,
    target_modules: typeof adapter.targetModules === 'string' ? adapter.targetModules : [...adapter.targetModules].sort(),
    task_type: options.taskType !== undefined ? options.taskType : 'FEATURE_EXTRACTION',
    use_rslora: adapter.useRslora,
  };
}

/**
 * Write the model's adapter to `dir` as adapter_model.safetensors (F32, {format: pt}) and
 * adapter_config.json, each atomically, weights first so a config never names missing weights.
 */
export async function saveLoraAdapter(dir: string, model: LoraTarget, options: SaveLoraOptions = {}): Promise<{ configPath: string; weightsPath: string }> {
  const adapter = getLoraAdapter(model);
  if (!adapter) throw new LoraError('saveLoraAdapter: the model has no LoRA adapter', { file: dir, fix: 'apply one with applyLora or loadLoraAdapter first' });
  const tensors: [string, TensorInput][] = [];
  for (const l of adapter.layers) {
    for (const [which, v] of [['A', l.loraA], ['B', l.loraB]] as const) {
      tensors.push([peftKey(l.moduleName, which), { dtype: 'F32', shape: v.shape, data: v.dataSync() as Float32Array }]);
    }
  }
  await fsp.mkdir(dir, { recursive: true });
  const weightsPath = path.join(dir, ADAPTER_WEIGHTS);
  const configPath = path.join(dir, ADAPTER_CONFIG);
  await writeSafetensors(weightsPath, tensors, { metadata: { format: 'pt' } });
  const cfg = peftLoraConfig(adapter, options, model);
  const sorted = Object.fromEntries(Object.entries(cfg).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  await writeJsonAtomic(configPath, sorted);
  return { configPath, weightsPath };
}

export interface LoadLoraOptions {
  /** Module-name prefix of the decoder in the base model; found from the keys when omitted. */
  modulePrefix?: string;
  /** Seeds dropout masks if the loaded adapter is trained further. */
  rng?: Rng;
}

/** A LoRA tensor's key in peft's layout: 1 the module, 2 A or B, 3 the adapter name where peft kept it. */
export const PEFT_LORA_KEY = /^base_model\.model\.(.+)\.lora_(A|B)(?:\.([^.]+))?\.weight$/;

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

async function readAdapterConfig(file: string): Promise<{ r: number; alpha: number; dropout: number; targetModules: string[] | string; useRslora: boolean }> {
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (e) {
    throw new LoraError(`cannot read the adapter config (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, { file, fix: 'point at a directory holding adapter_config.json and adapter_model.safetensors' });
  }
  let c: unknown;
  try {
    c = JSON.parse(text);
  } catch (e) {
    throw new LoraError(`is not valid JSON (${(e as Error).message})`, { file });
  }
  if (!isRecord(c)) throw new LoraError('must be a JSON object', { file });
  const bad = (field: string, problem: string, fix?: string): never => {
    throw new LoraError(problem, { file, field, ...(fix ? { fix } : {}) });
  };
  if (c.peft_type !== 'LORA') bad('peft_type', `is ${JSON.stringify(c.peft_type)}; only LORA adapters are supported`);
  if (c.bias !== undefined && c.bias !== 'none') bad('bias', `is ${JSON.stringify(c.bias)}; only "none" is supported (no trained biases)`);
  if (c.fan_in_fan_out === true) bad('fan_in_fan_out', 'is true (GPT-2 style Conv1D weights), which these decoders do not use');
  if (c.use_dora === true) bad('use_dora', 'is true; DoRA adapters are not supported');
  for (const f of ['rank_pattern', 'alpha_pattern'] as const) {
    if (isRecord(c[f]) && Object.keys(c[f]).length > 0) bad(f, 'gives per-module ranks/alphas, which are not supported', 'use one r and lora_alpha for all modules');
  }
  if (c.layers_to_transform !== undefined && c.layers_to_transform !== null) bad('layers_to_transform', 'is set; selecting layers by index is not supported', 'select modules with a target_modules regular expression');
  if (Array.isArray(c.modules_to_save) && c.modules_to_save.length > 0) bad('modules_to_save', 'lists fully trained modules, which are not supported');
  if (!(Number.isInteger(c.r) && (c.r as number) > 0)) bad('r', `must be a positive integer, got ${JSON.stringify(c.r)}`);
  if (!(typeof c.lora_alpha === 'number' && c.lora_alpha > 0)) bad('lora_alpha', `must be a positive number, got ${JSON.stringify(c.lora_alpha)}`);
  const dropout = c.lora_dropout ?? 0;
  if (!(typeof dropout === 'number' && dropout >= 0 && dropout < 1)) bad('lora_dropout', `must be in [0, 1), got ${JSON.stringify(c.lora_dropout)}`);
  const t = c.target_modules;
  if (!(typeof t === 'string' || (Array.isArray(t) && t.every((x) => typeof x === 'string')))) bad('target_modules', `must be a list of module names or a regular expression, got ${JSON.stringify(t)}`);
  return { r: c.r as number, alpha: c.lora_alpha as number, dropout: dropout as number, targetModules: t as string[] | string, useRslora: c.use_rslora === true };
}

/**
 * Read a peft LoRA adapter (directory with adapter_config.json and adapter_model.safetensors) and
 * attach it to the model. Every tensor must map to a lora_A / lora_B of a Linear layer that
 * target_modules selects, with shapes [r, in] / [out, r]; anything else is reported by name.
 */
export async function loadLoraAdapter(dir: string, model: LoraTarget, options: LoadLoraOptions = {}): Promise<LoraAdapter> {
  const configPath = path.join(dir, ADAPTER_CONFIG);
  const weightsPath = path.join(dir, ADAPTER_WEIGHTS);
  const cfg = await readAdapterConfig(configPath);
  const file = await SafetensorsFile.open(weightsPath);
  try {
    const linears = findLinearModules(model);
    // module name (as in the file) -> {A, B key}
    const entries = new Map<string, { A?: string; B?: string }>();
    const unparsed: string[] = [];
    for (const key of file.names) {
      const m = PEFT_LORA_KEY.exec(key);
      if (!m) {
        unparsed.push(key);
        continue;
      }
      const e = entries.get(m[1]!) ?? {};
      const which = m[2] as 'A' | 'B';
      if (e[which] !== undefined) throw new LoraError(`lora_${which} of ${m[1]} appears twice (${e[which]} and ${key})`, { file: weightsPath, field: key });
      e[which] = key;
      entries.set(m[1]!, e);
    }
    if (unparsed.length > 0) {
      throw new LoraError(`${unparsed.length} tensor(s) are not LoRA weights in peft's layout (base_model.model.<module>.lora_A.weight): ${unparsed.slice(0, 8).join(', ')}`, {
        file: weightsPath,
        field: unparsed[0],
        fix: 'only plain LoRA adapters (bias "none", no modules_to_save) are supported',
      });
    }
    const names = [...entries.keys()];
    const candidates = [...new Set([options.modulePrefix, model.source?.prefix, ...DECODER_PREFIXES].filter((p): p is string => p !== undefined))];
    const prefix = options.modulePrefix ?? candidates.find((p) => names.every((n) => n.startsWith(p) && linears.has(n.slice(p.length))));
    if (prefix === undefined || !names.every((n) => n.startsWith(prefix) && linears.has(n.slice(prefix.length)))) {
      const p = prefix ?? model.source?.prefix ?? 'model.';
      const unmatched = names.filter((n) => !(n.startsWith(p) && linears.has(n.slice(p.length))));
      throw new LoraError(`${unmatched.length} adapted module(s) are not linear layers of this model: ${unmatched.slice(0, 8).join(', ')} (the model's are named like ${[...linears.keys()].slice(0, 3).map((n) => p + n).join(', ')})`, {
        file: weightsPath,
        field: entries.get(unmatched[0] ?? '')?.A ?? entries.get(unmatched[0] ?? '')?.B,
        fix: 'check that the adapter belongs to this base model (or pass {modulePrefix})',
      });
    }
    const selected = [...linears.keys()].map((n) => prefix + n).filter((n) => matchesTarget(cfg.targetModules, n));
    const notTargeted = names.filter((n) => !selected.includes(n));
    if (notTargeted.length > 0) {
      throw new LoraError(`${notTargeted.length} module(s) in the weights are not selected by target_modules ${JSON.stringify(cfg.targetModules)}: ${notTargeted.slice(0, 8).join(', ')}`, {
        file: weightsPath,
        field: entries.get(notTargeted[0]!)!.A ?? entries.get(notTargeted[0]!)!.B,
        fix: `make ${ADAPTER_CONFIG} and ${ADAPTER_WEIGHTS} agree`,
      });
    }
    const missing: string[] = [];
    for (const n of selected) {
      const e = entries.get(n);
      if (!e?.A) missing.push(peftKey(n, 'A'));
      if (!e?.B) missing.push(peftKey(n, 'B'));
    }
    if (missing.length > 0) {
      throw new LoraError(`missing ${missing.length} LoRA tensor(s) that target_modules implies: ${missing.slice(0, 8).join(', ')}`, { file: weightsPath, field: missing[0], fix: `make ${ADAPTER_CONFIG} and ${ADAPTER_WEIGHTS} agree` });
    }
    // Shapes before anything is attached.
    const shapeErrors: string[] = [];
    for (const n of selected) {
      const e = entries.get(n)!;
      const [out, inDim] = linears.get(n.slice(prefix.length))!.weight.shape as [number, number];
      const a = file.info(e.A!);
      const b = file.info(e.B!);
      if (a.shape.length !== 2 || a.shape[0] !== cfg.r || a.shape[1] !== inDim) shapeErrors.push(`${e.A} is [${a.shape.join(', ')}], expected [${cfg.r}, ${inDim}] (r = ${cfg.r})`);
      if (b.shape.length !== 2 || b.shape[0] !== out || b.shape[1] !== cfg.r) shapeErrors.push(`${e.B} is [${b.shape.join(', ')}], expected [${out}, ${cfg.r}] (r = ${cfg.r})`);
      for (const [k, info] of [[e.A!, a], [e.B!, b]] as const) if (!['F32', 'F16', 'BF16', 'F64'].includes(info.dtype)) shapeErrors.push(`${k} has dtype ${info.dtype}, expected floating point`);
    }
    if (shapeErrors.length > 0) {
      throw new LoraError(`${shapeErrors.length} LoRA tensor(s) do not fit the model and r: ${shapeErrors.slice(0, 8).join('; ')}`, { file: weightsPath, fix: 'check that the adapter belongs to this base model and that r in adapter_config.json is right' });
    }
    const adapter = applyLora(model, { ...cfg, modulePrefix: prefix, ...(options.rng ? { rng: options.rng } : {}) });
    try {
      for (const l of adapter.layers) {
        const e = entries.get(l.moduleName)!;
        for (const [key, v] of [[e.A!, l.loraA], [e.B!, l.loraB]] as const) {
          const t = tf.tensor(await file.readFloat32(key), v.shape, 'float32');
          v.assign(t);
          t.dispose();
        }
      }
    } catch (e) {
      removeLora(model);
      throw e;
    }
    return adapter;
  } finally {
    await file.close();
  }
}
