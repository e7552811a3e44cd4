/**
 * Training checkpoints: everything a run needs to continue exactly where it stopped.
 *
 *   <outputDir>/checkpoints/step-<n>/
 *     params.safetensors      the trainable tensors, by parameter name
 *     optimizer.safetensors   AdamW moments (<param>.exp_avg, <param>.exp_avg_sq)
 *     optimizer.json          AdamW step count and hyperparameters
 *     trainer_state.json      step, schedule position, data position, RNG states (written last)
 *     ...                     whatever the caller's onCheckpoint adds (the PEFT adapter files)
 *   <outputDir>/checkpoints/latest   "step-<n>", rewritten atomically after each checkpoint
 *
 * A checkpoint is written into a hidden temp directory and renamed into place, so a `step-<n>`
 * directory is always complete; a crash mid-write leaves a `.tmp-*` directory that the next run removes.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { tf, type Tensor } from '../runtime/tf.js';
import type { RngState } from '../runtime/rng.js';
import { UnimeError } from '../errors.js';
import { writeBytesAtomic, writeJsonAtomic } from '../io/atomic.js';
import { SafetensorsFile, writeSafetensors, type TensorInput } from '../io/safetensors.js';
import type { AdamWStateJson } from './adamw.js';

export const CHECKPOINTS_DIR = 'checkpoints';
export const LATEST_FILE = 'latest';
export const PARAMS_FILE = 'params.safetensors';
export const OPTIMIZER_TENSORS_FILE = 'optimizer.safetensors';
export const OPTIMIZER_JSON_FILE = 'optimizer.json';
export const TRAINER_STATE_FILE = 'trainer_state.json';
export const TRAINER_STATE_VERSION = 1;

export interface TrainerState {
  version: number;
  /** Optimizer steps completed. */
  step: number;
  /** Batches consumed from the data stream (micro-batches when accumulating). */
  batchesSeen: number;
  totalSteps: number;
  accumulation: number;
  schedule: { kind: string; lr: number; warmupSteps: number; totalSteps: number };
  /** The data iterator's getState(). */
  data: unknown;
  /** RNG streams by name. */
  rng: Record<string, RngState>;
  /** Samples and tokens seen (for throughput totals). */
  samplesSeen: number;
  tokensSeen: number;
  /** Unix ms when written (informative only). */
  savedAt: number;
}

export interface LoadedCheckpoint {
  dir: string;
  state: TrainerState;
  params: Map<string, Float32Array>;
  optimizerJson: AdamWStateJson;
  optimizerTensors: Map<string, Float32Array>;
}

export const stepDirName = (step: number): string => `step-${step}`;

function parseStepDir(name: string): number | null {
  const m = /^step-(\d+)$/.exec(name);
  return m ? Number(m[1]) : null;
}

async function tensorsToInputs(tensors: ReadonlyMap<string, Tensor>): Promise<Map<string, TensorInput>> {
  const out = new Map<string, TensorInput>();
  for (const [name, t] of tensors) {
    if (t.dtype !== 'float32') throw new UnimeError(`checkpoint: ${name} is ${t.dtype}; only float32 trainable state is saved`);
    out.set(name, { dtype: 'F32', shape: t.shape, data: (await t.data()) as Float32Array });
  }
  return out;
}

async function fsyncDir(dir: string): Promise<void> {
  try {
    const h = await fsp.open(dir, 'r');
    try {
      await h.sync();
    } finally {
      await h.close();
    }
  } catch {
    // Directory fsync is not supported everywhere; the rename is still atomic.
  }
}

export interface SaveCheckpointOptions {
  outputDir: string;
  state: TrainerState;
  params: ReadonlyMap<string, Tensor>;
  optimizerJson: AdamWStateJson;
  optimizerTensors: ReadonlyMap<string, Tensor>;
  /** Keep this many newest checkpoints (older ones are deleted after the new one is in place); 0 = all. */
  keepLast: number;
  /** Writes extra files into the (temporary) checkpoint directory before it is renamed into place. */
  extra?: (dir: string) => Promise<void>;
  /** Test hook: called between files; throwing simulates a crash mid-write. */
  onFileWritten?: (file: string) => void | Promise<void>;
}

/** Write a complete checkpoint atomically; returns its final directory. */
export async function saveCheckpoint(o: SaveCheckpointOptions): Promise<string> {
  const root = path.join(o.outputDir, CHECKPOINTS_DIR);
  await fsp.mkdir(root, { recursive: true });
  const name = stepDirName(o.state.step);
  const finalDir = path.join(root, name);
  const tmp = path.join(root, `.tmp-${name}-${process.pid}-${randomBytes(4).toString('hex')}`);
  await fsp.mkdir(tmp);
  try {
    await writeSafetensors(path.join(tmp, PARAMS_FILE), await tensorsToInputs(o.params), { metadata: { format: 'pt' } });
    await o.onFileWritten?.(PARAMS_FILE);
    await writeSafetensors(path.join(tmp, OPTIMIZER_TENSORS_FILE), await tensorsToInputs(o.optimizerTensors), { metadata: { format: 'pt' } });
    await o.onFileWritten?.(OPTIMIZER_TENSORS_FILE);
    await writeJsonAtomic(path.join(tmp, OPTIMIZER_JSON_FILE), o.optimizerJson);
    await o.onFileWritten?.(OPTIMIZER_JSON_FILE);
    if (o.extra) await o.extra(tmp);
    await writeJsonAtomic(path.join(tmp, TRAINER_STATE_FILE), o.state);
    await o.onFileWritten?.(TRAINER_STATE_FILE);
    await fsyncDir(tmp);
    // A checkpoint of the same step already there (a run resumed from an earlier one) is replaced.
    let old: string | null = null;
    try {
      await fsp.access(finalDir);
      old = path.join(root, `.old-${name}-${randomBytes(4).toString('hex')}`);
      await fsp.rename(finalDir, old);
    } catch {
      old = null;
    }
    await fsp.rename(tmp, finalDir);
    await fsyncDir(root);
    if (old) await fsp.rm(old, { recursive: true, force: true });
  } catch (e) {
    await fsp.rm(tmp, { recursive: true, force: true }).catch(() => {});
    throw e;
  }
  await writeBytesAtomic(path.join(root, LATEST_FILE), name + '\n');
  if (o.keepLast > 0) {
    const steps = (await listCheckpoints(o.outputDir)).filter((s) => s !== o.state.step);
    const drop = steps.slice(0, Math.max(0, steps.length - (o.keepLast - 1)));
    for (const s of drop) await fsp.rm(path.join(root, stepDirName(s)), { recursive: true, force: true });
  }
  return finalDir;
}

/** Names in a directory; none when it does not exist (no checkpoint written yet). */
async function entriesOf(dir: string): Promise<string[]> {
  try {
    return await fsp.readdir(dir);
  } catch {
    return [];
  }
}

/** Steps of the complete checkpoints under outputDir, ascending. */
export async function listCheckpoints(outputDir: string): Promise<number[]> {
  const root = path.join(outputDir, CHECKPOINTS_DIR);
  const names = await entriesOf(root);
  const steps: number[] = [];
  for (const n of names) {
    const s = parseStepDir(n);
    if (s === null) continue;
    try {
      await fsp.access(path.join(root, n, TRAINER_STATE_FILE));
      steps.push(s);
    } catch {
      // Not complete (written by something other than saveCheckpoint, or damaged): skip it.
    }
  }
  return steps.sort((a, b) => a - b);
}

/** Remove temp directories left by a crash mid-write. */
export async function removeStaleTemps(outputDir: string): Promise<string[]> {
  const root = path.join(outputDir, CHECKPOINTS_DIR);
  const names = await entriesOf(root);
  const stale = names.filter((n) => n.startsWith('.tmp-') || n.startsWith('.old-'));
  for (const n of stale) await fsp.rm(path.join(root, n), { recursive: true, force: true });
  return stale;
}

/**
 * The checkpoint to resume from: the newest complete one, or null. (`latest` is a pointer for people
 * and tools; a crash between the rename and its update leaves it one checkpoint behind, and the
 * newer, complete directory is the right one to continue from.)
 */
export async function findLatestCheckpoint(outputDir: string): Promise<string | null> {
  const root = path.join(outputDir, CHECKPOINTS_DIR);
  const steps = await listCheckpoints(outputDir);
  if (steps.length === 0) return null;
  const newest = steps[steps.length - 1]!;
  return path.join(root, stepDirName(newest));
}

async function readAllFloat32(file: string): Promise<Map<string, Float32Array>> {
  const f = await SafetensorsFile.open(file);
  try {
    const out = new Map<string, Float32Array>();
    for (const n of f.names) out.set(n, await f.readFloat32(n));
    return out;
  } finally {
    await f.close();
  }
}

async function readJson<T>(file: string): Promise<T> {
  const text = await fsp.readFile(file, 'utf8');
  try {
    return JSON.parse(text) as T;
  } catch (e) {
    throw new UnimeError(`not valid JSON: ${(e as Error).message}`, { file, fix: 'resume from another checkpoint (delete this one)' });
  }
}

export async function loadCheckpoint(dir: string): Promise<LoadedCheckpoint> {
  const state = await readJson<TrainerState>(path.join(dir, TRAINER_STATE_FILE));
  if (state.version !== TRAINER_STATE_VERSION) {
    throw new UnimeError(`trainer state version ${state.version} is not supported (expected ${TRAINER_STATE_VERSION})`, { file: path.join(dir, TRAINER_STATE_FILE) });
  }
  return {
    dir,
    state,
    params: await readAllFloat32(path.join(dir, PARAMS_FILE)),
    optimizerJson: await readJson<AdamWStateJson>(path.join(dir, OPTIMIZER_JSON_FILE)),
    optimizerTensors: await readAllFloat32(path.join(dir, OPTIMIZER_TENSORS_FILE)),
  };
}

/** Assign saved values to the variables (all of them must be present with the right size). */
export function restoreParams(params: readonly tf.Variable[], saved: ReadonlyMap<string, Float32Array>, label: string): void {
  for (const p of params) {
    const v = saved.get(p.name);
    if (!v) throw new UnimeError(`no saved value for trainable parameter ${p.name}`, { file: label, fix: 'resume with the same trainable parameters (model, LoRA settings) as the run that wrote the checkpoint' });
    if (v.length !== p.size) throw new UnimeError(`saved ${p.name} has ${v.length} values, the parameter ${p.size}`, { file: label });
  }
  for (const p of params) tf.tidy(() => p.assign(tf.tensor(saved.get(p.name)!, p.shape, 'float32')));
}
