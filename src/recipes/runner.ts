/**
 * The stage runner: runs a loaded recipe's stages in order, each in its own output directory,
 * passing the previous stage's output on, and leaves a `stage.json` completion marker (written
 * atomically) when a stage finishes, so a rerun skips finished stages and a multi-stage run
 * resumes where it stopped. A finished stage that reads an earlier stage's output is out of date once
 * that stage has run again (in this run or after it finished), and then runs again from scratch.
 */
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { NotImplementedYetError } from '../errors.js';
import { writeBytesAtomic, writeJsonAtomic } from '../io/atomic.js';
import { log as defaultLog, type Logger } from '../runtime/log.js';
import { RecipeError } from './errors.js';
import { recipeToYaml, type LoadedRecipe } from './load.js';
import { resolveModelPath, type ResolveModelOptions } from '../hub/download.js';
import { suggestion } from './paths.js';
import { getStageKind, runFinishers, type RunFinishContext, type StageContext, type StageResult } from './registry.js';
import type { StageConfig } from './schema.js';

export const STAGE_MARKER = 'stage.json';
export const RESOLVED_RECIPE = 'recipe.resolved.yaml';
const MARKER_FORMAT = 'unime-stage/1';

export interface RunOptions {
  /** Run only these stages (by name). */
  only?: readonly string[];
  /** Run this stage and every stage after it. */
  from?: string;
  /** Print the plan and return; nothing runs and nothing is written. */
  dryRun?: boolean;
  /** Rerun selected stages even when they completed before. */
  force?: boolean;
  /** Where progress goes; default the runtime logger. Only info and warn are required. */
  log?: Pick<Logger, 'info' | 'warn'> & Partial<Logger>;
  /** Relative output dirs are resolved against this; default process.cwd(). */
  cwd?: string;
  /** Log the plan before running (a dry run always does). */
  showPlan?: boolean;
  /** Options for Hub downloads of model references (endpoint, cache dir, offline ...). */
  hub?: Omit<ResolveModelOptions, 'cwd' | 'revision'>;
}

export type StageAction = 'run' | 'skip-completed' | 'not-selected';

export interface PlannedStage {
  index: number;
  name: string;
  kind: string;
  /** Absolute. */
  outputDir: string;
  /** Absolute output dir of the stage before this one, or null. */
  previousOutput: string | null;
  /** init_from with a stage name turned into that stage's absolute output dir. */
  initFrom: string | null;
  /** Named inputs for the plan: data, models, caches (as written in the recipe). */
  inputs: Record<string, string>;
  /** Earlier stages whose output this stage reads (through init_from or a path under their output dir). */
  needs: string[];
  selected: boolean;
  /** A completion marker from an earlier run is present. */
  completed: boolean;
  /**
   * Stages in `needs` that run in this invocation or finished after this stage started: its output
   * was made from what they had before, so a selected stage reruns (fresh) instead of being skipped.
   */
  changedInputs: string[];
  action: StageAction;
  /** Whether this build has an engine for the kind. */
  hasRunner: boolean;
}

export interface StageOutcome extends PlannedStage {
  status: 'ran' | 'skipped' | 'not-selected' | 'planned';
  result?: StageResult;
  seconds?: number;
}

export interface RunReport {
  recipe: string;
  file: string;
  /** Absolute. */
  outputDir: string;
  dryRun: boolean;
  stages: StageOutcome[];
}

/** What `stage.json` holds. */
export interface StageMarker {
  format: string;
  status: 'completed';
  recipe: string;
  recipe_file: string;
  stage: string;
  kind: string;
  index: number;
  config_hash: string;
  config: StageConfig;
  previous_output: string | null;
  init_from: string | null;
  started_at: string;
  finished_at: string;
  seconds: number;
  result: StageResult;
}

function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    return `{${Object.keys(o)
      .filter((k) => o[k] !== undefined)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v) ?? 'null';
}

export function stageConfigHash(stage: StageConfig): string {
  return 'sha256:' + createHash('sha256').update(canonicalJson(stage)).digest('hex');
}

/** Fields whose values differ between two configs, as dotted paths. */
function changedFields(a: unknown, b: unknown, prefix = ''): string[] {
  if (canonicalJson(a) === canonicalJson(b)) return [];
  const isObj = (x: unknown): x is Record<string, unknown> => x !== null && typeof x === 'object' && !Array.isArray(x);
  if (!isObj(a) || !isObj(b)) return [prefix || '(all)'];
  const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
  return keys.flatMap((k) => changedFields(a[k], b[k], prefix ? `${prefix}.${k}` : k));
}

async function readMarker(dir: string, warn: (m: string) => void): Promise<StageMarker | undefined> {
  const file = path.join(dir, STAGE_MARKER);
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch {
    return undefined;
  }
  try {
    const m = JSON.parse(text) as StageMarker;
    if (m && m.format === MARKER_FORMAT && m.status === 'completed') return m;
  } catch {
    // fall through
  }
  warn(`${file} is not a valid completion marker; the stage counts as not completed`);
  return undefined;
}

function completeLogger(l: RunOptions['log']): Logger {
  const base = l ?? defaultLog;
  const seen = new Set<string>();
  const full: Logger = {
    debug: base.debug?.bind(base) ?? (() => {}),
    info: base.info.bind(base),
    warn: base.warn.bind(base),
    error: base.error?.bind(base) ?? base.warn.bind(base),
    once:
      base.once?.bind(base) ??
      ((key, level, msg) => {
        if (seen.has(key)) return;
        seen.add(key);
        full[level](msg);
      }),
  };
  return full;
}

/** Every string value in a stage config, with its dotted field name. */
function stringFields(v: unknown, prefix: string, out: Array<[string, string]>): void {
  if (typeof v === 'string') out.push([prefix, v]);
  else if (Array.isArray(v)) v.forEach((x, i) => stringFields(x, `${prefix}[${i}]`, out));
  else if (v !== null && typeof v === 'object') {
    for (const [k, x] of Object.entries(v)) stringFields(x, prefix ? `${prefix}.${k}` : k, out);
  }
}

function within(p: string, dir: string): boolean {
  return p === dir || p.startsWith(dir.endsWith(path.sep) ? dir : dir + path.sep);
}

/** Work out what a run would do: output dirs, inputs, dependencies, and which stages run. */
export async function planRecipe(loaded: LoadedRecipe, opts: RunOptions = {}): Promise<PlannedStage[]> {
  const { recipe, file } = loaded;
  const cwd = opts.cwd ?? process.cwd();
  const log = completeLogger(opts.log);
  const names = recipe.stages.map((s) => s.name);
  const checkName = (n: string, flag: string): number => {
    const i = names.indexOf(n);
    if (i < 0) {
      throw new RecipeError(`${flag} names stage \`${n}\`, which is not in the recipe${suggestion(n, names)}; stages: ${names.join(', ')}`, {
        file,
      });
    }
    return i;
  };
  if (opts.only !== undefined && opts.from !== undefined) {
    throw new RecipeError('give either --only or --from, not both', { file });
  }
  const onlySet = opts.only !== undefined ? new Set(opts.only.map((n) => names[checkName(n, '--only')]!)) : undefined;
  const fromIndex = opts.from !== undefined ? checkName(opts.from, '--from') : 0;

  const outDirs = recipe.stages.map((s) => path.resolve(cwd, s.output_dir));
  const plan: PlannedStage[] = [];
  const markers: (StageMarker | undefined)[] = [];
  for (let i = 0; i < recipe.stages.length; i++) {
    const stage = recipe.stages[i]!;
    const def = getStageKind(stage.kind);
    const needs = new Set<string>();
    let initFrom: string | null = stage.init_from;
    const initIndex = stage.init_from === null ? -1 : names.indexOf(stage.init_from);
    if (initIndex >= 0) {
      initFrom = outDirs[initIndex]!;
      if (initIndex < i) needs.add(names[initIndex]!);
    }
    const strings: Array<[string, string]> = [];
    stringFields(stage, '', strings);
    for (const [field, value] of strings) {
      if (field === 'output_dir' || field === 'name' || field === 'description' || value === '' || value.includes('://')) continue;
      const abs = path.resolve(cwd, value);
      for (let j = 0; j < i; j++) if (within(abs, outDirs[j]!)) needs.add(names[j]!);
    }
    const inputs: Record<string, string> = {};
    if (stage.init_from !== null) inputs.init_from = stage.init_from;
    for (const [k, v] of Object.entries(def?.inputs?.(stage) ?? {})) if (typeof v === 'string' && v !== '') inputs[k] = v;

    const selected = onlySet ? onlySet.has(stage.name) : i >= fromIndex;
    const marker = await readMarker(outDirs[i]!, (m) => log.warn(m));
    const completed = marker !== undefined && marker.stage === stage.name && marker.kind === stage.kind;
    markers.push(completed ? marker : undefined);
    const changedInputs = !completed
      ? []
      : [...needs].filter((n) => {
          const j = names.indexOf(n);
          const dep = markers[j];
          return plan[j]!.action === 'run' || (dep !== undefined && Date.parse(dep.finished_at) > Date.parse(marker.started_at));
        });
    if (completed && selected && !opts.force && changedInputs.length === 0) {
      const changed = changedFields(marker.config, stage);
      if (changed.length > 0) {
        log.warn(
          `stage ${stage.name} completed earlier with a different configuration (changed: ${changed.slice(0, 6).join(', ')}${changed.length > 6 ? ', ...' : ''}); ` +
            `keeping its output. To rerun it: --force --only ${stage.name}`,
        );
      }
    }
    plan.push({
      index: i,
      name: stage.name,
      kind: stage.kind,
      outputDir: outDirs[i]!,
      previousOutput: i > 0 ? outDirs[i - 1]! : null,
      initFrom,
      inputs,
      needs: [...needs],
      selected,
      completed,
      changedInputs,
      action: !selected ? 'not-selected' : completed && !opts.force && changedInputs.length === 0 ? 'skip-completed' : 'run',
      hasRunner: def?.run !== undefined,
    });
  }
  return plan;
}

/** The plan as text, one block per stage. */
export function formatPlan(loaded: LoadedRecipe, plan: readonly PlannedStage[], cwd: string = process.cwd()): string {
  const show = (p: string) => {
    const rel = path.relative(cwd, p);
    return rel && !rel.startsWith('..') && !path.isAbsolute(rel) ? rel : p;
  };
  const recipeOut = path.resolve(cwd, loaded.recipe.output_dir);
  const lines = [`recipe ${loaded.recipe.name} (${loaded.file}) -> ${show(recipeOut)}`];
  const byName = new Map(plan.map((s) => [s.name, s]));
  for (const s of plan) {
    const changed = s.changedInputs.join(', ');
    const action =
      s.action === 'run'
        ? !s.completed
          ? 'run'
          : changed !== ''
            ? `rerun (it reads ${changed}, changed since it ran)`
            : 'rerun (--force)'
        : s.action === 'skip-completed'
          ? 'skip (completed)'
          : changed !== ''
            ? `skip (not selected, though it reads ${changed}, which changed since it ran or runs now)`
            : 'skip (not selected)';
    const engine = s.hasRunner ? '' : '  [engine not in this build]';
    lines.push(`  ${s.index + 1}. ${s.name}  (${s.kind})  -> ${show(s.outputDir)}  ${action}${engine}`);
    for (const [k, v] of Object.entries(s.inputs)) lines.push(`       ${k}: ${v}`);
    if (s.previousOutput !== null) lines.push(`       previous_output: ${show(s.previousOutput)}`);
    for (const n of s.needs) {
      const dep = byName.get(n);
      const state = dep?.completed ? 'completed' : dep?.action === 'run' ? 'runs first' : 'NOT completed';
      lines.push(`       needs stage ${n} (${state})`);
    }
  }
  return lines.join('\n');
}

/**
 * Run (or with dryRun, plan) a loaded recipe. Checks before anything runs: every stage that would
 * run has an engine in this build (else NotImplementedYetError naming the stage and kind), and every
 * earlier stage it reads from is completed or runs first.
 */
export async function runRecipe(loaded: LoadedRecipe, opts: RunOptions = {}): Promise<RunReport> {
  const cwd = opts.cwd ?? process.cwd();
  const log = completeLogger(opts.log);
  const plan = await planRecipe(loaded, { ...opts, log });
  const recipeOut = path.resolve(cwd, loaded.recipe.output_dir);
  const report: RunReport = { recipe: loaded.recipe.name, file: loaded.file, outputDir: recipeOut, dryRun: !!opts.dryRun, stages: [] };

  if (opts.dryRun || opts.showPlan) log.info(formatPlan(loaded, plan, cwd));
  if (opts.dryRun) {
    report.stages = plan.map((s) => ({ ...s, status: 'planned' as const }));
    return report;
  }

  const toRun = plan.filter((s) => s.action === 'run');
  const missing = toRun.filter((s) => !s.hasRunner);
  if (missing.length > 0) {
    const first = missing[0]!;
    const others = missing.slice(1).map((s) => `${s.name} (${s.kind})`);
    throw new NotImplementedYetError(
      `stage \`${first.name}\` (kind ${first.kind}): the ${first.kind} engine is not in this build yet; nothing was run or written` +
        (others.length > 0 ? `. Also without an engine: ${others.join(', ')}` : ''),
      { file: loaded.file, field: `stages[${first.index}]`, fix: `\`unime train ${loaded.file} --dry-run\` shows the plan without running it` },
    );
  }
  const byName = new Map(plan.map((s) => [s.name, s]));
  for (const s of toRun) {
    for (const n of s.needs) {
      const dep = byName.get(n)!;
      if (!dep.completed && dep.action !== 'run') {
        throw new RecipeError(
          `stage \`${s.name}\` reads the output of stage \`${n}\` (${dep.outputDir}), which has not completed (no ${STAGE_MARKER} there)`,
          { file: loaded.file, field: `stages[${s.index}]`, fix: `run stage ${n} first, e.g. --from ${n}` },
        );
      }
    }
  }

  if (toRun.length > 0) await writeBytesAtomic(path.join(recipeOut, RESOLVED_RECIPE), recipeToYaml(loaded));
  const stageOutputs = Object.fromEntries(plan.map((s) => [s.name, s.outputDir]));

  for (const s of plan) {
    if (s.action === 'not-selected') {
      report.stages.push({ ...s, status: 'not-selected' });
      continue;
    }
    if (s.action === 'skip-completed') {
      log.info(`stage ${s.name} (${s.kind}): already completed, skipping (--force reruns it)`);
      report.stages.push({ ...s, status: 'skipped' });
      continue;
    }
    const stage = loaded.recipe.stages[s.index]!;
    const run = getStageKind(s.kind)?.run;
    if (!run) throw new NotImplementedYetError(`stage \`${s.name}\` (kind ${s.kind}): the ${s.kind} engine is not in this build yet`, { file: loaded.file });
    if (s.completed && s.changedInputs.length > 0 && !opts.force) {
      log.info(`stage ${s.name} (${s.kind}): completed earlier, but ${s.changedInputs.join(', ')} it reads from changed since; running it again from scratch`);
    }
    // A rerun first drops the old marker: if it dies midway, the stage must not look completed.
    await fsp.rm(path.join(s.outputDir, STAGE_MARKER), { force: true });
    await fsp.mkdir(s.outputDir, { recursive: true });
    log.info(`stage ${s.index + 1}/${plan.length} ${s.name} (${s.kind}) -> ${s.outputDir}`);
    const started = new Date();
    const ctx: StageContext = {
      recipe: loaded.recipe,
      stage,
      index: s.index,
      outputDir: s.outputDir,
      previousOutput: s.previousOutput,
      initFrom: s.initFrom,
      stageOutputs,
      // Resuming a checkpoint made from an input that has since changed would mix the two.
      fresh: opts.force === true || s.changedInputs.length > 0,
      recipeFile: loaded.file,
      log,
      resolveModel: (ref) => {
        const r = typeof ref === 'string' ? { path: ref, revision: 'main' } : ref;
        return resolveModelPath(r.path, { ...opts.hub, revision: r.revision, cwd });
      },
    };
    const result = (await run(ctx)) ?? {};
    const finished = new Date();
    const seconds = (finished.getTime() - started.getTime()) / 1000;
    const marker: StageMarker = {
      format: MARKER_FORMAT,
      status: 'completed',
      recipe: loaded.recipe.name,
      recipe_file: loaded.file,
      stage: s.name,
      kind: s.kind,
      index: s.index,
      config_hash: stageConfigHash(stage),
      config: stage,
      previous_output: s.previousOutput,
      init_from: s.initFrom,
      started_at: started.toISOString(),
      finished_at: finished.toISOString(),
      seconds,
      result,
    };
    await writeJsonAtomic(path.join(s.outputDir, STAGE_MARKER), marker);
    log.info(`stage ${s.name} done in ${seconds.toFixed(1)} s`);
    s.completed = true;
    report.stages.push({ ...s, status: 'ran', result, seconds });
  }
  // After any run with completed stages, even one that found them all done: the report is rebuilt from
  // what is on disk (cheap) and its path printed last, as the README says.
  if (plan.some((s) => s.completed)) {
    const finish: RunFinishContext = {
      recipe: loaded.recipe,
      recipeFile: loaded.file,
      outputDir: recipeOut,
      stages: plan.map((s) => ({ name: s.name, kind: s.kind, outputDir: s.outputDir, completed: s.completed, initFrom: s.initFrom })),
      log,
    };
    for (const fn of runFinishers()) await fn(finish);
  }
  return report;
}
