/**
 * Schema validation of the merged, interpolated recipe tree, with every zod issue turned into a
 * located problem: file:line:column, field path, expected, found, "did you mean", and the command
 * line override or interpolation that produced the value.
 */
import { posix } from 'node:path';
import type { z } from 'zod';
import { RecipeError, type RecipeProblem } from './errors.js';
import type { InterpolationOrigin } from './interpolate.js';
import type { AppliedOverride } from './overrides.js';
import { describeValue, didYouMean, formatPath, isPrefix, pathKey, suggestion, type Path, type PathSeg } from './paths.js';
import { getStageKind, listStageKinds } from './registry.js';
import { recipeHeaderSchema, STAGE_NAME, type Recipe, type StageConfig } from './schema.js';
import { getAt, getOwn, isPlainObject, type SourceIndex } from './source.js';

export interface ValidateContext {
  file: string;
  index: SourceIndex;
  overrides: readonly AppliedOverride[];
  origins: ReadonlyMap<string, InterpolationOrigin>;
}

/** zod internals we read to find the fields a mapping accepts (for "did you mean"). */
interface Def {
  type?: string;
  shape?: Record<string, z.ZodType>;
  element?: z.ZodType;
  innerType?: z.ZodType;
  in?: z.ZodType;
  out?: z.ZodType;
  options?: z.ZodType[];
  discriminator?: string;
  valueType?: z.ZodType;
  values?: unknown[];
  getter?: () => z.ZodType;
}
const defOf = (s: unknown): Def => ((s as { _zod?: { def?: Def } })?._zod?.def ?? {}) as Def;

/** Step through wrappers to the schema that actually checks `value`. */
function unwrap(schema: z.ZodType | undefined, value: unknown): z.ZodType | undefined {
  let s = schema;
  for (let guard = 0; s && guard < 32; guard++) {
    const d = defOf(s);
    switch (d.type) {
      case 'optional':
      case 'nullable':
      case 'default':
      case 'prefault':
      case 'catch':
      case 'readonly':
      case 'nonoptional':
        s = d.innerType;
        break;
      case 'pipe':
        s = defOf(d.in).type === 'transform' ? d.out : d.in;
        break;
      case 'lazy':
        s = d.getter?.();
        break;
      case 'union': {
        const objects = (d.options ?? []).map((o) => unwrap(o, value)).filter((o) => defOf(o).type === 'object');
        if (d.discriminator && isPlainObject(value)) {
          const want = getOwn(value, d.discriminator);
          const hit = objects.find((o) => {
            const lit = defOf(defOf(o).shape?.[d.discriminator!]);
            return (lit.values ?? []).includes(want);
          });
          return hit ?? objects[0];
        }
        return objects[0];
      }
      default:
        return s;
    }
  }
  return s;
}

/** The schema that checks the value at `path` (relative to `schema`), when that is knowable. */
function schemaAt(schema: z.ZodType | undefined, root: unknown, path: Path): z.ZodType | undefined {
  let s: z.ZodType | undefined = schema;
  let v: unknown = root;
  for (const seg of path) {
    s = unwrap(s, v);
    const d = defOf(s);
    if (d.type === 'object') s = d.shape?.[String(seg)];
    else if (d.type === 'array') s = d.element;
    else if (d.type === 'record') s = d.valueType;
    else return undefined;
    v = getAt(v, [seg]);
  }
  return s;
}

/** The keys a strict mapping at `path` accepts, when that is knowable. */
function keysAt(schema: z.ZodType | undefined, root: unknown, path: Path): string[] | undefined {
  const d = defOf(unwrap(schemaAt(schema, root, path), getAt(root, path)));
  return d.type === 'object' && d.shape ? Object.keys(d.shape) : undefined;
}

/** The union schema at `path` (wrappers removed), to find the branch that failed. */
function unionAt(schema: z.ZodType | undefined, root: unknown, path: Path): z.ZodType[] | undefined {
  let s = schemaAt(schema, root, path);
  for (let guard = 0; s && guard < 32; guard++) {
    const d = defOf(s);
    if (d.type === 'union') return d.options;
    if (d.innerType) s = d.innerType;
    else if (d.type === 'pipe') s = defOf(d.in).type === 'transform' ? d.out : d.in;
    else return undefined;
  }
  return undefined;
}

const EXPECTED: Record<string, string> = {
  int: 'an integer',
  number: 'a number',
  string: 'a string',
  boolean: 'true or false',
  object: 'a mapping',
  record: 'a mapping',
  array: 'a list',
  null: 'null',
  bigint: 'an integer',
};

/** The `.describe()` text of a schema or of a wrapper around it: what to write there, in words. */
function describedExpectation(schema: z.ZodType | undefined): string | undefined {
  let s = schema;
  for (let guard = 0; s && guard < 32; guard++) {
    const text = (s as { description?: string }).description;
    if (text) return text;
    const d = defOf(s);
    if (d.innerType) s = d.innerType;
    else if (d.type === 'pipe') s = defOf(d.in).type === 'transform' ? d.out : d.in;
    else return undefined;
  }
  return undefined;
}

function expectedOfType(issue: { expected?: string }, found: unknown, hint?: string): string {
  if (hint) return hint;
  const e = EXPECTED[issue.expected ?? ''] ?? String(issue.expected);
  if (issue.expected === 'int' && Number.isInteger(found)) return 'an integer no larger than 2^53 in size';
  return e;
}

function quoteList(values: readonly unknown[]): string {
  return values.map((v) => JSON.stringify(v)).join(', ');
}

interface RawProblem {
  path: PathSeg[];
  problem: string;
  /** Where to point: the value, the key of the field, or (missing field) the mapping it belongs in. */
  at: 'value' | 'key' | 'parent';
}

function bound(issue: Record<string, unknown>, dir: 'min' | 'max'): string {
  const inclusive = issue.inclusive !== false;
  const limit = dir === 'min' ? issue.minimum : issue.maximum;
  const origin = issue.origin;
  if (origin === 'array' || origin === 'set') {
    const n = Number(limit);
    return dir === 'min' ? `a list with at least ${n} item${n === 1 ? '' : 's'}` : `a list with at most ${n} item${n === 1 ? '' : 's'}`;
  }
  if (origin === 'string') {
    const n = Number(limit);
    if (dir === 'min' && n === 1) return 'a non-empty string';
    return `a string of ${dir === 'min' ? 'at least' : 'at most'} ${n} characters`;
  }
  const op = dir === 'min' ? (inclusive ? '>=' : '>') : inclusive ? '<=' : '<';
  return `a number ${op} ${String(limit)}`;
}

/** One zod issue -> located problems (an unknown-keys issue yields one per key). */
function issueProblems(issue: z.core.$ZodIssue, prefix: PathSeg[], schema: z.ZodType | undefined, value: unknown): RawProblem[] {
  const rel = issue.path.map((p) => (typeof p === 'number' ? p : String(p)));
  const path = [...prefix, ...rel];
  const found = getAt(value, rel);
  const last = rel[rel.length - 1];
  const i = issue as unknown as Record<string, unknown>;
  const missing = (expected: string): RawProblem => ({
    path,
    problem: `missing required field \`${String(last)}\` (expected ${expected})`,
    at: 'parent',
  });
  switch (issue.code) {
    case 'unrecognized_keys': {
      const known = keysAt(schema, value, rel);
      return issue.keys.map((k) => ({
        path: [...path, k],
        problem: `unknown field \`${k}\`${known ? suggestion(k, known) : ''}${known ? `; expected one of: ${known.join(', ')}` : ''}`,
        at: 'key' as const,
      }));
    }
    case 'invalid_type': {
      const expected = expectedOfType(issue as { expected?: string }, found, describedExpectation(schemaAt(schema, value, rel)));
      if (found === undefined && last !== undefined) return [missing(expected)];
      return [{ path, problem: `expected ${expected}, found ${describeValue(found)}`, at: 'value' }];
    }
    case 'invalid_value': {
      const values = issue.values;
      const expected = values.length === 1 ? JSON.stringify(values[0]) : `one of ${quoteList(values)}`;
      if (found === undefined && last !== undefined) return [missing(expected)];
      const near = typeof found === 'string' ? suggestion(found, values.filter((v): v is string => typeof v === 'string')) : '';
      return [{ path, problem: `expected ${expected}, found ${describeValue(found)}${near}`, at: 'value' }];
    }
    case 'invalid_union': {
      if (typeof i.discriminator === 'string') {
        const options = (i.options as unknown[] | undefined) ?? [];
        const expected = `one of ${quoteList(options)}`;
        if (found === undefined) return [missing(expected)];
        const near = typeof found === 'string' ? suggestion(found, options.filter((v): v is string => typeof v === 'string')) : '';
        return [{ path, problem: `expected ${expected}, found ${describeValue(found)}${near}`, at: 'value' }];
      }
      const branches = (issue.errors ?? []) as z.core.$ZodIssue[][];
      // A branch whose problems are all deeper than the union matched the value's shape: report its problems.
      const deeper = branches.find((b) => b.length > 0 && b.every((x) => x.path.length > 0));
      if (deeper) {
        const branch = unionAt(schema, value, rel)?.[branches.indexOf(deeper)];
        return deeper.flatMap((x) => issueProblems(x, path, branch, found));
      }
      const expectations = branches
        .map((b) => b[0])
        .filter((x): x is z.core.$ZodIssue => x !== undefined)
        .map((x) => {
          if (x.code === 'invalid_value') return x.values.length === 1 ? JSON.stringify(x.values[0]) : `one of ${quoteList(x.values)}`;
          if (x.code === 'invalid_type') return EXPECTED[(x as { expected?: string }).expected ?? ''] ?? String((x as { expected?: string }).expected);
          return x.message;
        });
      const expected = describedExpectation(schemaAt(schema, value, rel)) ?? [...new Set(expectations)].join(' or ');
      if (found === undefined && last !== undefined) return [missing(expected)];
      return [{ path, problem: `expected ${expected}, found ${describeValue(found)}`, at: 'value' }];
    }
    case 'too_small':
      return [{ path, problem: `expected ${bound(i, 'min')}, found ${describeValue(found)}`, at: 'value' }];
    case 'too_big':
      return [{ path, problem: `expected ${bound(i, 'max')}, found ${describeValue(found)}`, at: 'value' }];
    case 'not_multiple_of':
      return [{ path, problem: `expected a multiple of ${String(i.divisor)}, found ${describeValue(found)}`, at: 'value' }];
    case 'invalid_format': {
      const msg = issue.message.startsWith('expected') ? issue.message : `expected a string matching ${String(i.pattern ?? i.format)}`;
      return [{ path, problem: `${msg}, found ${describeValue(found)}`, at: 'value' }];
    }
    default: {
      const msg = issue.message;
      if (found === undefined && last !== undefined && !/found/.test(msg)) return [missing(msg.replace(/^expected /, ''))];
      return [{ path, problem: /found/.test(msg) ? msg : `${msg}, found ${describeValue(found)}`, at: 'value' }];
    }
  }
}

/** Attach location, override and interpolation origin to a raw problem. */
function locate(raw: RawProblem, ctx: ValidateContext): RecipeProblem {
  const { path } = raw;
  let problem = raw.problem;
  // An override that set this field (or a mapping above it) is the direct cause.
  let direct: string | undefined;
  for (const o of ctx.overrides) if (isPrefix(o.path, path)) direct = o.text;
  // An interpolated value: say where it came from, and blame an override on what it referenced.
  let viaRef: string | undefined;
  for (let n = path.length; n >= 0; n--) {
    const origin = ctx.origins.get(pathKey(path.slice(0, n)));
    if (!origin) continue;
    problem += ` (the value comes from \`${origin.template}\`)`;
    for (const ref of origin.refs) for (const o of ctx.overrides) if (isPrefix(o.path, ref)) viaRef = o.text;
    break;
  }
  if (direct !== undefined) return { problem, field: formatPath(path), override: direct };
  const pos =
    raw.at === 'parent'
      ? ctx.index.locate(path.slice(0, -1), 'key')
      : raw.at === 'key'
        ? ctx.index.locate(path, 'key')
        : ctx.index.locate(path, 'value');
  return { problem, field: formatPath(path), line: pos?.line, column: pos?.column, override: viaRef };
}

function zodProblems(result: z.ZodSafeParseResult<unknown>, prefix: PathSeg[], schema: z.ZodType, value: unknown): RawProblem[] {
  if (result.success) return [];
  return result.error.issues.flatMap((iss) => issueProblems(iss, prefix, schema, value));
}

/** Validate the merged tree: header, each stage against its kind, then cross-stage rules. */
export function validateTree(tree: Record<string, unknown>, ctx: ValidateContext): Recipe {
  const raw: RawProblem[] = [];
  const header = recipeHeaderSchema.safeParse(tree);
  raw.push(...zodProblems(header, [], recipeHeaderSchema, tree));

  const stagesIn = getOwn(tree, 'stages');
  const stages: StageConfig[] = [];
  if (Array.isArray(stagesIn)) {
    const known = listStageKinds().map((k) => k.kind);
    stagesIn.forEach((st, i) => {
      const at: PathSeg[] = ['stages', i];
      if (!isPlainObject(st)) {
        raw.push({ path: at, problem: `expected a stage (a mapping with name: and kind:), found ${describeValue(st)}`, at: 'value' });
        return;
      }
      const kind = getOwn(st, 'kind');
      if (kind === undefined) {
        raw.push({ path: [...at, 'kind'], problem: `missing required field \`kind\` (expected one of: ${known.join(', ')})`, at: 'parent' });
        return;
      }
      const def = typeof kind === 'string' ? getStageKind(kind) : undefined;
      if (!def) {
        const near = typeof kind === 'string' ? suggestion(kind, known) : '';
        raw.push({ path: [...at, 'kind'], problem: `unknown stage kind: expected one of ${quoteList(known)}, found ${describeValue(kind)}${near}`, at: 'value' });
        return;
      }
      const parsed = def.schema.safeParse(st);
      if (parsed.success) stages.push(parsed.data as StageConfig);
      else raw.push(...zodProblems(parsed, at, def.schema, st));
    });
  }

  if (raw.length === 0 && stages.length > 0) raw.push(...crossStageProblems(stages));
  if (raw.length > 0) {
    throw RecipeError.fromProblems(ctx.file, raw.map((r) => locate(r, ctx)), 'see recipes/README.md for every field and its default');
  }
  if (!header.success) throw new RecipeError('invalid recipe', { file: ctx.file }); // unreachable: problems were reported
  return { ...header.data, stages };
}

function normalizeDir(p: string): string {
  const n = posix.normalize(p.replaceAll('\\', '/'));
  return n.length > 1 && n.endsWith('/') ? n.slice(0, -1) : n;
}

function crossStageProblems(stages: StageConfig[]): RawProblem[] {
  const out: RawProblem[] = [];
  const firstIndex = new Map<string, number>();
  stages.forEach((s, i) => {
    const before = firstIndex.get(s.name);
    if (before !== undefined) {
      out.push({ path: ['stages', i, 'name'], problem: `stage name \`${s.name}\` is already used by stages[${before}]; stage names must be unique`, at: 'value' });
    } else firstIndex.set(s.name, i);
  });
  const dirs = new Map<string, number>();
  stages.forEach((s, i) => {
    const dir = normalizeDir(s.output_dir);
    const before = dirs.get(dir);
    if (before !== undefined) {
      out.push({
        path: ['stages', i, 'output_dir'],
        problem: `output_dir \`${s.output_dir}\` is already used by stages[${before}]; each stage needs its own directory`,
        at: 'value',
      });
    } else dirs.set(dir, i);
  });
  stages.forEach((s, i) => {
    const from = s.init_from;
    if (from === null) return;
    const j = firstIndex.get(from);
    if (j === undefined) {
      // Not a stage name: a directory or Hub id. A bare word close to a stage name is probably a typo.
      const near = !from.includes('/') && STAGE_NAME.test(from) ? didYouMean(from, firstIndex.keys()) : undefined;
      if (near !== undefined) {
        out.push({
          path: ['stages', i, 'init_from'],
          problem: `init_from \`${from}\` is not a stage name (did you mean \`${near}\`?); write ./${from} for a directory`,
          at: 'value',
        });
      }
    } else if (j === i) {
      out.push({ path: ['stages', i, 'init_from'], problem: `a stage cannot start from its own output (init_from: ${from})`, at: 'value' });
    } else if (j > i) {
      out.push({
        path: ['stages', i, 'init_from'],
        problem: `expected an earlier stage, found \`${from}\`, which runs after this one (stages[${j}])`,
        at: 'value',
      });
    }
  });
  return out;
}
