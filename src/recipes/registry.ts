/**
 * The stage-kind registry. A kind is a schema (what its YAML looks like) plus, once the engine for
 * it exists, a runner. The schema module registers every kind the format knows without a runner;
 * engine code attaches runners later with `attachStageRunner`, so a recipe validates (and dry-runs)
 * long before it can be trained.
 */
import type { z } from 'zod';
import type { Logger } from '../runtime/log.js';
import type { ModelRef, Recipe, StageConfig } from './schema.js';

/** What a runner gets: the validated stage, where to write, and where its inputs are. */
export interface StageContext<S = StageConfig> {
  /** The whole resolved recipe. */
  recipe: Recipe;
  /** This stage's validated config (defaults filled, interpolation done). */
  stage: S;
  /** Position in `recipe.stages`. */
  index: number;
  /** Absolute output directory of this stage; exists when the runner starts. */
  outputDir: string;
  /** Absolute output directory of the stage before this one in the recipe, or null for the first. */
  previousOutput: string | null;
  /** `init_from` resolved: an earlier stage's name becomes its absolute output dir; other values pass through. */
  initFrom: string | null;
  /** Absolute output directories of every stage, by name. */
  stageOutputs: Readonly<Record<string, string>>;
  /**
   * True when the user asked for a rerun (--force): a training stage starts over instead of resuming
   * from the checkpoints an earlier run left in its output dir.
   */
  fresh: boolean;
  /** The recipe file, as the user named it. */
  recipeFile: string;
  log: Logger;
  /**
   * A model reference from the stage as a local directory: a directory passes through (relative to
   * the run's working directory); a Hub id is downloaded into the Hugging Face cache, or taken from
   * it, at the ref's revision. Engines call this for every model they load.
   */
  resolveModel(ref: ModelRef | string): Promise<string>;
}

/** JSON-serialisable summary a runner may return; it is stored in the stage's `stage.json`. */
export type StageResult = Record<string, unknown>;

export type StageRunner<S = StageConfig> = (ctx: StageContext<S>) => Promise<StageResult | void>;

export interface StageKindDefinition<S extends z.ZodType = z.ZodType> {
  /** The value of `kind:` in a stage. */
  kind: string;
  /** A strict zod schema for the whole stage mapping (build it with `stageSchema`). */
  schema: S;
  /** One line for `unime recipes` and the docs. */
  description: string;
  /** The engine; absent while the kind's engine is not in this build. */
  run?: StageRunner<z.output<S>>;
  /** Named input paths / model ids of a validated stage, for the dry-run plan. */
  inputs?: (stage: z.output<S>) => Record<string, string | null | undefined>;
}

/** Registry entries, erased to the common stage shape. */
export interface RegisteredStageKind {
  kind: string;
  schema: z.ZodType;
  description: string;
  run: StageRunner | undefined;
  inputs: ((stage: StageConfig) => Record<string, string | null | undefined>) | undefined;
}

const kinds = new Map<string, RegisteredStageKind>();

/**
 * Register a stage kind. Throws if the kind exists already (use the returned function to remove it,
 * e.g. in tests). Returns a function that unregisters it.
 */
export function registerStageKind<S extends z.ZodType>(def: StageKindDefinition<S>): () => void {
  if (!/^[a-z][a-z0-9-]*$/.test(def.kind)) throw new TypeError(`stage kind "${def.kind}" must be lowercase letters, digits and '-'`);
  if (kinds.has(def.kind)) throw new TypeError(`stage kind "${def.kind}" is already registered`);
  const entry: RegisteredStageKind = {
    kind: def.kind,
    schema: def.schema,
    description: def.description,
    run: def.run as StageRunner | undefined,
    inputs: def.inputs as RegisteredStageKind['inputs'],
  };
  kinds.set(def.kind, entry);
  return () => {
    if (kinds.get(def.kind) === entry) kinds.delete(def.kind);
  };
}

/**
 * Attach the engine for a registered kind. Returns a function that detaches it again (restoring
 * whatever runner was there before).
 */
export function attachStageRunner<S = StageConfig>(kind: string, run: StageRunner<S>): () => void {
  const entry = kinds.get(kind);
  if (!entry) throw new TypeError(`cannot attach a runner: stage kind "${kind}" is not registered`);
  const before = entry.run;
  entry.run = run as unknown as StageRunner;
  return () => {
    if (entry.run === (run as unknown as StageRunner)) entry.run = before;
  };
}

export function getStageKind(kind: string): RegisteredStageKind | undefined {
  return kinds.get(kind);
}

/** Every registered kind, in registration order. */
export function listStageKinds(): RegisteredStageKind[] {
  return [...kinds.values()];
}

/** What a finisher sees once every selected stage of a run has completed. */
export interface RunFinishContext {
  recipe: Recipe;
  recipeFile: string;
  /** Absolute output directory of the recipe. */
  outputDir: string;
  /** Every stage of the recipe: name, kind, absolute output dir, and whether it has completed (now or earlier). */
  stages: ReadonlyArray<{ name: string; kind: string; outputDir: string; completed: boolean; initFrom: string | null }>;
  log: Logger;
}

/** Work done after a whole run (e.g. the run report over its eval stages); engines register these. */
export type RunFinisher = (ctx: RunFinishContext) => Promise<void>;

const finishers = new Map<string, RunFinisher>();

export function registerRunFinisher(name: string, fn: RunFinisher): void {
  finishers.set(name, fn);
}

export function runFinishers(): RunFinisher[] {
  return [...finishers.values()];
}
