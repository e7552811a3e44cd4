/**
 * Learning-rate schedules with linear warmup, exactly as transformers computes them
 * (get_constant_schedule_with_warmup, get_linear_schedule_with_warmup,
 * get_cosine_schedule_with_warmup with num_cycles 0.5) under a LambdaLR: the update made by optimizer
 * step k (0-based) uses lr * lambda(k), so with warmup the very first update has lr 0.
 */
import { UnimeError } from '../errors.js';
import type { SCHEDULES } from '../recipes/schema.js';

export type ScheduleKind = (typeof SCHEDULES)[number];

export interface ScheduleOptions {
  kind: ScheduleKind;
  /** Peak learning rate. */
  lr: number;
  /** Optimizer steps in the whole run. */
  totalSteps: number;
  /** Warmup steps; when given (0 included), replaces warmupRatio (the recipe's warmup_steps). */
  warmupSteps?: number | null;
  /** Fraction of totalSteps to warm up for: ceil(totalSteps * ratio) steps, as transformers' TrainingArguments. */
  warmupRatio?: number;
}

export interface Schedule {
  readonly kind: ScheduleKind;
  readonly lr: number;
  readonly totalSteps: number;
  readonly warmupSteps: number;
  /** The multiplier at 0-based optimizer step `step`. */
  lambda(step: number): number;
  /** lr * lambda(step). */
  lrAt(step: number): number;
}

export function warmupStepsFor(totalSteps: number, warmupSteps: number | null | undefined, warmupRatio: number | undefined): number {
  if (warmupSteps !== null && warmupSteps !== undefined) return warmupSteps;
  return Math.ceil(totalSteps * (warmupRatio ?? 0));
}

export function makeSchedule(options: ScheduleOptions): Schedule {
  const { kind, lr, totalSteps } = options;
  if (!(lr > 0) || !Number.isFinite(lr)) throw new UnimeError(`schedule: lr must be a positive number, got ${lr}`);
  if (!Number.isInteger(totalSteps) || totalSteps < 1) throw new UnimeError(`schedule: totalSteps must be a positive integer, got ${totalSteps}`);
  if (options.warmupSteps != null && (!Number.isInteger(options.warmupSteps) || options.warmupSteps < 0)) {
    throw new UnimeError(`schedule: warmupSteps must be an integer >= 0, got ${options.warmupSteps}`);
  }
  if (options.warmupRatio !== undefined && !(options.warmupRatio >= 0 && options.warmupRatio < 1)) {
    throw new UnimeError(`schedule: warmupRatio must be in [0, 1), got ${options.warmupRatio}`);
  }
  const warmupSteps = warmupStepsFor(totalSteps, options.warmupSteps, options.warmupRatio);
  let lambda: (step: number) => number;
  const warm = (step: number) => step / Math.max(1, warmupSteps);
  switch (kind) {
    case 'constant':
      lambda = (step) => (step < warmupSteps ? warm(step) : 1);
      break;
    case 'linear':
      lambda = (step) => (step < warmupSteps ? warm(step) : Math.max(0, (totalSteps - step) / Math.max(1, totalSteps - warmupSteps)));
      break;
    case 'cosine':
      lambda = (step) => {
        if (step < warmupSteps) return warm(step);
        const progress = (step - warmupSteps) / Math.max(1, totalSteps - warmupSteps);
        return Math.max(0, 0.5 * (1 + Math.cos(Math.PI * 0.5 * 2 * progress)));
      };
      break;
    default:
      throw new UnimeError(`schedule: unknown kind ${JSON.stringify(kind)}`, { fix: 'use constant, linear or cosine' });
  }
  return { kind, lr, totalSteps, warmupSteps, lambda, lrAt: (step) => lr * lambda(step) };
}
