/**
 * The optimisation loop every training stage shares: micro-batches from a resumable data stream,
 * gradient accumulation, non-finite detection, global-norm clipping, AdamW under a warmup schedule,
 * metrics.jsonl, a progress line, atomic checkpoints every N steps and at the end, and exact resumption.
 *
 * The stage runner supplies `step(batch, ctx)`: the loss of one micro-batch and its gradients by
 * parameter name (gradCacheStep's result fits as is). Everything after that is here.
 *
 * Exact resumption: a checkpoint holds the parameters, AdamW moments and step count, the data
 * position, the RNG streams and the step counter; the schedule is a pure function of the step. A run
 * resumed from step k therefore computes the same (bit-identical on one backend) losses and
 * parameters as the uninterrupted run.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { tf, type Tensor } from '../runtime/tf.js';
import { scoped } from '../runtime/memory.js';
import { Rng, type RngState } from '../runtime/rng.js';
import { UnimeError } from '../errors.js';
import type { LoraConfig, TrainLoopConfig } from '../recipes/schema.js';
import type { LoraOptions } from '../models/peft/lora.js';
import { AdamW } from './adamw.js';
import { makeSchedule, type ScheduleKind } from './schedule.js';
import { accumulateGrads, checkGrads, checkLoss, clipGradNorm, globalNorm, gradNorms, scaleGrads } from './clip.js';
import {
  TRAINER_STATE_VERSION,
  findLatestCheckpoint,
  listCheckpoints,
  loadCheckpoint,
  removeStaleTemps,
  restoreParams,
  saveCheckpoint,
  type TrainerState,
} from './checkpoints.js';
import { METRICS_FILE, appendMetric, truncateMetrics, type MetricRecord } from './metrics.js';
import { Progress, type ProgressStream } from './progress.js';
import { writePlots } from './plots.js';
import type { TrainData } from './data.js';

export const PLOTS_FILE = 'plots.html';

export interface TrainStepContext {
  /** 1-based optimizer step this micro-batch belongs to. */
  step: number;
  /** 0-based micro-batch within the step (0 .. accumulation-1). */
  micro: number;
  /** 0-based position of this batch in the data stream. */
  batchIndex: number;
  /** The learning rate this step's update will use. */
  lr: number;
  /** The run's RNG (dropout, sampling): saved in checkpoints, so draws continue exactly on resume. */
  rng: Rng;
}

export interface TrainStepOutput {
  /** The micro-batch's (mean-reduced) loss. */
  loss: number;
  /** Gradient of `loss` per parameter name; the trainer takes ownership and disposes them. */
  grads: Map<string, Tensor>;
  /** Extra numbers for metrics.jsonl (averaged over micro-batches). */
  stats?: Record<string, number>;
  /** Samples and tokens in the micro-batch, for throughput. */
  samples?: number;
  tokens?: number;
}

/** The `train:` block of a recipe, minus batch_size and gradcache_chunk_size (which shape the data and step). */
export interface TrainLoopOptions {
  lr: number;
  /** Passes over the data; the run stops at whichever of epochs / maxSteps comes first. */
  epochs?: number | null;
  maxSteps?: number | null;
  schedule?: ScheduleKind;
  warmupRatio?: number;
  /** When set, replaces warmupRatio. */
  warmupSteps?: number | null;
  weightDecay?: number;
  /** Max global gradient norm; null = no clipping. */
  gradClip?: number | null;
  beta1?: number;
  beta2?: number;
  eps?: number;
  logEvery?: number;
  /** Checkpoint every N optimizer steps (and always at the end); null = only at the end. */
  saveEvery?: number | null;
}

/** Map a validated recipe `lora:` block onto applyLora's options (its init draws from rng's 'lora' fork). */
export function loraOptionsFromRecipe(l: LoraConfig, rng: Rng): LoraOptions {
  return { r: l.rank, alpha: l.alpha, dropout: l.dropout, targetModules: l.target_modules, rng: rng.fork('lora') };
}

/** Map a validated recipe `train:` block onto the loop's options. */
export function loopOptionsFromRecipe(t: TrainLoopConfig): TrainLoopOptions {
  return {
    lr: t.lr,
    epochs: t.epochs,
    maxSteps: t.max_steps,
    schedule: t.schedule,
    warmupRatio: t.warmup_ratio,
    warmupSteps: t.warmup_steps,
    weightDecay: t.weight_decay,
    gradClip: t.grad_clip,
    beta1: t.optimizer.beta1,
    beta2: t.optimizer.beta2,
    eps: t.optimizer.eps,
    logEvery: t.log_every,
    saveEvery: t.save_every,
  };
}

export interface CheckpointInfo {
  /** The temporary directory being written; files put here become part of the atomic checkpoint. */
  dir: string;
  step: number;
  final: boolean;
}

export interface TrainOptions<B> extends TrainLoopOptions {
  params: tf.Variable[];
  step: (batch: B, ctx: TrainStepContext) => TrainStepOutput | Promise<TrainStepOutput>;
  data: TrainData<B>;
  /** Micro-batches per optimizer step (gradients are averaged over them). Default 1. */
  accumulation?: number;
  outputDir: string;
  /** The run's RNG, handed to `step` (default: a fresh Rng('train')). */
  rng?: Rng;
  /** Further RNG streams to save and restore (e.g. a model's dropout stream). */
  rngs?: Record<string, Rng>;
  /** Continue from the newest complete checkpoint in outputDir/checkpoints (fresh start if none). */
  resume?: boolean;
  /** Start fresh even though outputDir has checkpoints (they are deleted). */
  overwrite?: boolean;
  /** Keep this many newest checkpoints; 0 = all. Default 3. */
  keepLast?: number;
  /** Called while a checkpoint is written (e.g. to add the PEFT adapter files). */
  onCheckpoint?: (info: CheckpointInfo) => Promise<void>;
  /** Called after every optimizer step with its metrics record. */
  onStep?: (record: MetricRecord) => void | Promise<void>;
  /** Stops the loop after the current step, without a final checkpoint (as a kill would). */
  signal?: AbortSignal;
  /** Where the progress display goes; null = none. Default process.stderr. */
  progress?: ProgressStream | null;
  /** Name shown in the progress line. */
  label?: string;
  /** Exempt parameters from weight decay by name (default: none). */
  noDecay?: (name: string) => boolean;
  /** Per-parameter lr multiplier by name (default 1), e.g. layer-wise lr decay. */
  lrScale?: (name: string) => number;
}

export interface TrainResult {
  /** True when the run reached its last step (false: stopped by the signal). */
  completed: boolean;
  /** Optimizer steps completed (including those before a resume). */
  step: number;
  totalSteps: number;
  /** The step this run started from (0, or the resumed checkpoint's). */
  startStep: number;
  /** Per-step losses of this run (steps startStep+1 .. step). */
  losses: number[];
  metricsFile: string;
  plotsFile: string;
  /** The directory of the last checkpoint written by this run, if any. */
  lastCheckpoint: string | null;
}

/** Optimizer steps for the run: min over maxSteps and epochs (as transformers counts epochs). */
export function totalStepsFor(o: { maxSteps?: number | null; epochs?: number | null; batchesPerEpoch?: number; accumulation: number }): number {
  const candidates: number[] = [];
  if (o.maxSteps != null) candidates.push(o.maxSteps);
  if (o.epochs != null) {
    if (o.batchesPerEpoch === undefined) {
      throw new UnimeError('training for a number of epochs needs the data size (the data stream has no batchesPerEpoch)', { fix: 'set train.max_steps instead of train.epochs' });
    }
    const updatesPerEpoch = Math.max(1, Math.floor(o.batchesPerEpoch / o.accumulation));
    candidates.push(Math.ceil(o.epochs * updatesPerEpoch));
  }
  if (candidates.length === 0) throw new UnimeError('set train.epochs or train.max_steps');
  const total = Math.min(...candidates);
  if (!Number.isInteger(total) || total < 1) throw new UnimeError(`the run would have ${total} optimizer steps; it needs at least 1`);
  return total;
}

function positiveInt(v: number, what: string): void {
  if (!Number.isInteger(v) || v < 1) throw new UnimeError(`${what} must be a positive integer, got ${v}`);
}

export async function train<B>(o: TrainOptions<B>): Promise<TrainResult> {
  const accumulation = o.accumulation ?? 1;
  positiveInt(accumulation, 'accumulation');
  const logEvery = o.logEvery ?? 10;
  positiveInt(logEvery, 'logEvery');
  if (o.saveEvery != null) positiveInt(o.saveEvery, 'saveEvery');
  if (o.gradClip != null && !(o.gradClip > 0)) throw new UnimeError(`gradClip must be positive or null, got ${o.gradClip}`);
  if (o.params.length === 0) throw new UnimeError('train: no trainable parameters');
  const keepLast = o.keepLast ?? 3;
  const rng = o.rng ?? new Rng('train');
  const rngs: Record<string, Rng> = { train: rng, ...(o.rngs ?? {}) };

  const totalSteps = totalStepsFor({ maxSteps: o.maxSteps, epochs: o.epochs, batchesPerEpoch: o.data.batchesPerEpoch, accumulation });
  const schedule = makeSchedule({ kind: o.schedule ?? 'linear', lr: o.lr, totalSteps, warmupSteps: o.warmupSteps ?? null, warmupRatio: o.warmupRatio ?? 0 });
  const optimizer = new AdamW(o.params, { beta1: o.beta1, beta2: o.beta2, eps: o.eps, weightDecay: o.weightDecay ?? 0, noDecay: o.noDecay, lrScale: o.lrScale });

  await fsp.mkdir(o.outputDir, { recursive: true });
  const metricsFile = path.join(o.outputDir, METRICS_FILE);
  const plotsFile = path.join(o.outputDir, PLOTS_FILE);
  let step = 0;
  let batchesSeen = 0;
  let samplesSeen = 0;
  let tokensSeen = 0;
  let lastCheckpoint: string | null = null;
  const progress = new ProgressHolder();

  try {
    await removeStaleTemps(o.outputDir);
    const resumeDir = o.resume ? await findLatestCheckpoint(o.outputDir) : null;
    if (resumeDir) {
      const ck = await loadCheckpoint(resumeDir);
      const st = ck.state;
      if (st.accumulation !== accumulation) {
        throw new UnimeError(`the checkpoint was written with accumulation ${st.accumulation}, this run uses ${accumulation}`, { file: resumeDir, fix: 'resume with the same settings' });
      }
      restoreParams(o.params, ck.params, resumeDir);
      optimizer.loadState(ck.optimizerJson, ck.optimizerTensors, resumeDir);
      o.data.setState(st.data);
      for (const [name, r] of Object.entries(rngs)) {
        const saved = st.rng[name];
        if (!saved) throw new UnimeError(`no saved state for RNG stream ${JSON.stringify(name)}`, { file: resumeDir });
        r.setState(saved);
      }
      step = st.step;
      batchesSeen = st.batchesSeen;
      samplesSeen = st.samplesSeen;
      tokensSeen = st.tokensSeen;
      await truncateMetrics(metricsFile, step);
      lastCheckpoint = resumeDir;
    } else {
      const existing = await listCheckpoints(o.outputDir);
      if (existing.length > 0 && !o.overwrite) {
        throw new UnimeError(`${o.outputDir} already has checkpoints (steps ${existing.join(', ')})`, {
          fix: 'pass --resume to continue that run, or choose another output directory',
        });
      }
      if (existing.length > 0) await fsp.rm(path.join(o.outputDir, 'checkpoints'), { recursive: true, force: true });
      await fsp.rm(metricsFile, { force: true });
    }
    const startStep = step;
    const bar = progress.set(new Progress(totalSteps, startStep, logEvery, o.progress === undefined ? process.stderr : o.progress, o.label ?? 'train'));
    if (resumeDir) bar.note(`resumed from ${resumeDir} at step ${step}/${totalSteps}`);
    const runStart = performance.now();
    const losses: number[] = [];

    const save = async (final: boolean): Promise<void> => {
      const state: TrainerState = {
        version: TRAINER_STATE_VERSION,
        step,
        batchesSeen,
        totalSteps,
        accumulation,
        schedule: { kind: schedule.kind, lr: schedule.lr, warmupSteps: schedule.warmupSteps, totalSteps: schedule.totalSteps },
        data: o.data.getState(),
        rng: Object.fromEntries(Object.entries(rngs).map(([k, r]) => [k, r.getState()])) as Record<string, RngState>,
        samplesSeen,
        tokensSeen,
        savedAt: Date.now(),
      };
      lastCheckpoint = await saveCheckpoint({
        outputDir: o.outputDir,
        state,
        params: new Map(o.params.map((p) => [p.name, p as Tensor])),
        optimizerJson: optimizer.stateJson(),
        optimizerTensors: optimizer.stateTensors(),
        keepLast,
        extra: o.onCheckpoint ? (dir) => o.onCheckpoint!({ dir, step, final }) : undefined,
      });
      await writePlots(metricsFile, plotsFile, o.label);
      bar.note(`saved checkpoint ${lastCheckpoint}`);
    };

    while (step < totalSteps) {
      if (o.signal?.aborted) break;
      const lr = schedule.lrAt(step);
      const stepNo = step + 1;
      const t0 = performance.now();
      const grads = new Map<string, Tensor>();
      let lossSum = 0;
      let samples = 0;
      let tokens = 0;
      let haveSamples = false;
      let haveTokens = false;
      const statSums = new Map<string, number>();
      let gradNorm: number;
      try {
        for (let micro = 0; micro < accumulation; micro++) {
          const batch = await o.data.next();
          const batchIndex = batchesSeen;
          batchesSeen += 1;
          const ctx: TrainStepContext = { step: stepNo, micro, batchIndex, lr, rng };
          // Tensors the step function creates and does not return are freed here.
          const [out] = await scoped('train-step', async () => {
            const r = await o.step(batch, ctx);
            return [r, [...r.grads.values()]] as const;
          });
          try {
            checkLoss(out.loss, { step: stepNo, batchIndex });
            checkGrads(out.grads, { step: stepNo, batchIndex });
          } catch (e) {
            for (const g of out.grads.values()) g.dispose();
            throw e;
          }
          accumulateGrads(grads, out.grads);
          lossSum += out.loss;
          if (out.samples !== undefined) {
            samples += out.samples;
            haveSamples = true;
          }
          if (out.tokens !== undefined) {
            tokens += out.tokens;
            haveTokens = true;
          }
          for (const [k, v] of Object.entries(out.stats ?? {})) statSums.set(k, (statSums.get(k) ?? 0) + v);
        }
        scaleGrads(grads, 1 / accumulation);
        const norms = gradNorms(grads);
        gradNorm = globalNorm(norms);
        if (o.gradClip != null) clipGradNorm(grads, o.gradClip, norms);
        optimizer.update(grads, lr);
      } finally {
        for (const g of grads.values()) g.dispose();
      }
      step = stepNo;
      samplesSeen += samples;
      tokensSeen += tokens;
      const dt = (performance.now() - t0) / 1000;
      const loss = lossSum / accumulation;
      losses.push(loss);
      const record: MetricRecord = { step, loss, lr, grad_norm: gradNorm };
      if (o.data.batchesPerEpoch !== undefined) record.epoch = batchesSeen / o.data.batchesPerEpoch;
      if (haveSamples) record.samples_per_s = dt > 0 ? samples / dt : 0;
      if (haveTokens) record.tokens_per_s = dt > 0 ? tokens / dt : 0;
      record.elapsed_s = (performance.now() - runStart) / 1000;
      for (const [k, v] of statSums) if (!(k in record)) record[k] = v / accumulation;
      await appendMetric(metricsFile, record);
      bar.update({ step, loss, lr, gradNorm, samplesPerSec: record.samples_per_s });
      await o.onStep?.(record);
      if (o.saveEvery != null && step % o.saveEvery === 0 && step < totalSteps) await save(false);
    }
    const completed = step >= totalSteps;
    if (completed && lastCheckpoint !== null && path.basename(lastCheckpoint) === `step-${step}`) {
      // Already saved at this step (a resumed run that had nothing left to do).
    } else if (completed) {
      await save(true);
    }
    await writePlots(metricsFile, plotsFile, o.label);
    return { completed, step, totalSteps, startStep, losses, metricsFile, plotsFile, lastCheckpoint };
  } finally {
    progress.finish();
    optimizer.dispose();
  }
}

class ProgressHolder {
  private p: Progress | null = null;
  set(p: Progress): Progress {
    this.p = p;
    return p;
  }
  finish(): void {
    this.p?.finish();
  }
}
