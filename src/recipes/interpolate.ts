/**
 * `${...}` interpolation over the merged recipe (file + overrides + output_dir defaults).
 *
 *   ${name}  ${vars.lr}  ${stages.distill.output_dir}  ${stages.0.name}   fields of the recipe
 *   ${env:HOME}  ${env:DATA:-/data}                                        environment (with default)
 *   $${                                                                     a literal "${"
 *
 * A string that is exactly one reference takes the referenced value with its type (a number stays
 * a number, a mapping is copied); references inside longer strings are concatenated. Referenced
 * values are interpolated first; a cycle is an error naming every field on it.
 */
import { RecipeError } from './errors.js';
import { formatPath, isPrefix, parsePathExpr, pathKey, suggestion, type Path, type PathSeg } from './paths.js';
import { getAt, getOwn, isPlainObject, setOwn, type SourcePos } from './source.js';

export interface InterpolationOrigin {
  /** The string as written, before interpolation. */
  template: string;
  /** Fields it referenced (not env variables). */
  refs: PathSeg[][];
}

export interface InterpolateOptions {
  file: string;
  env: Readonly<Record<string, string | undefined>>;
  /** Where a field is in the file. */
  locate: (path: Path) => SourcePos | undefined;
  /** The override that set a field (or an ancestor), if any. */
  overrideFor: (path: Path) => string | undefined;
  /** Whether the field is written in the file itself (not added by a default or an override). */
  inFile?: (path: Path) => boolean;
}

type Part = { literal: string } | { ref: string };

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const NUMBER = /^[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?$/;

/** Split a template into literal text and references; a message instead when malformed. */
export function parseTemplate(s: string): Part[] | string {
  const parts: Part[] = [];
  let lit = '';
  let i = 0;
  while (i < s.length) {
    if (s.startsWith('$${', i)) {
      lit += '${';
      i += 3;
    } else if (s.startsWith('${', i)) {
      const end = s.indexOf('}', i + 2);
      if (end < 0) return `unterminated \`\${\` at character ${i + 1} (write $\${ for a literal \${)`;
      const inner = s.slice(i + 2, end);
      if (inner.includes('${')) return `nested references are not supported: \`${s.slice(i, end + 1)}\``;
      if (lit) parts.push({ literal: lit });
      lit = '';
      parts.push({ ref: inner.trim() });
      i = end + 1;
    } else {
      lit += s[i];
      i++;
    }
  }
  if (lit || parts.length === 0) parts.push({ literal: lit });
  return parts;
}

function needsWork(s: string): boolean {
  return s.includes('${');
}

function deepCopy(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(deepCopy);
  if (isPlainObject(v)) {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(v)) setOwn(out, k, deepCopy(v[k]));
    return out;
  }
  return v;
}

function kindOf(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  return `a ${typeof v}`;
}

/**
 * Interpolate every string in `tree` in place. Returns, per interpolated field (path key), the
 * template and the fields it referenced, so later errors can say where a value came from.
 */
export function interpolate(tree: Record<string, unknown>, opts: InterpolateOptions): Map<string, InterpolationOrigin> {
  const origins = new Map<string, InterpolationOrigin>();
  /** Fields (or whole copied subtrees) whose strings are final. */
  const done = new Set<string>();
  /** Fields being resolved right now, in order: a repeat is a cycle. */
  const active: PathSeg[][] = [];

  const isDone = (path: Path): boolean => {
    for (let n = path.length; n >= 0; n--) if (done.has(pathKey(path.slice(0, n)))) return true;
    return false;
  };

  const fail = (path: Path, problem: string, fix?: string, related: readonly Path[] = []): never => {
    // For a cycle, blame an override on it if there is one, and point at a field that is in the file.
    const candidates = [path, ...related];
    const override = candidates.map((p) => opts.overrideFor(p)).find((o) => o !== undefined);
    const inFile = candidates.find((p) => opts.overrideFor(p) === undefined && (opts.inFile?.(p) ?? true));
    const pos = inFile !== undefined ? opts.locate(inFile) : override === undefined ? opts.locate(path) : undefined;
    throw new RecipeError(problem, { file: opts.file, field: formatPath(path), line: pos?.line, column: pos?.column, override, fix });
  };

  const setAt = (path: Path, value: unknown): void => {
    const parent = getAt(tree, path.slice(0, -1));
    const last = path[path.length - 1]!;
    if (Array.isArray(parent) && typeof last === 'number') parent[last] = value;
    else if (isPlainObject(parent) && typeof last === 'string') setOwn(parent, last, value);
  };

  /** Make the value at `path` final (a string with references is replaced by its result). */
  const resolveNode = (path: PathSeg[]): void => {
    const v = getAt(tree, path);
    if (typeof v !== 'string' || !needsWork(v) || isDone(path)) return;
    const key = pathKey(path);
    const at = active.findIndex((p) => pathKey(p) === key);
    if (at >= 0) {
      const onCycle = active.slice(at);
      const cycle = [...onCycle, path].map(formatPath).join(' -> ');
      fail(onCycle[0]!, `interpolation cycle: ${cycle}`, 'break the cycle: one of these fields must not refer back to the others', onCycle.slice(1));
    }
    active.push(path);
    try {
      const parts = parseTemplate(v);
      if (typeof parts === 'string') return fail(path, parts);
      const refs: PathSeg[][] = [];
      const values = parts.map((p) => ('literal' in p ? p.literal : lookup(p.ref, path, refs, parts.length === 1)));
      let result: unknown;
      if (parts.length === 1 && 'ref' in parts[0]!) {
        result = deepCopy(values[0]);
      } else {
        result = values
          .map((val, i) => {
            if (typeof val === 'string') return val;
            if (typeof val === 'number' || typeof val === 'boolean') return String(val);
            const ref = parts[i] as { ref: string };
            return fail(path, `\`\${${ref.ref}}\` is ${kindOf(val)}, which cannot be put inside a string`, `use \`\${${ref.ref}}\` as the whole value, or refer to a field inside it`);
          })
          .join('');
      }
      setAt(path, result);
      origins.set(key, { template: v, refs });
      done.add(key);
    } finally {
      active.pop();
    }
  };

  /** Resolve everything under `path`. */
  const resolveDeep = (path: PathSeg[]): void => {
    resolveNode(path);
    if (isDone(path)) return;
    const v = getAt(tree, path);
    if (Array.isArray(v)) v.forEach((_, i) => resolveDeep([...path, i]));
    else if (isPlainObject(v)) for (const k of Object.keys(v)) resolveDeep([...path, k]);
    done.add(pathKey(path));
  };

  const lookup = (ref: string, from: PathSeg[], refs: PathSeg[][], whole: boolean): unknown => {
    const shown = `\${${ref}}`;
    if (ref.startsWith('env:')) return envValue(ref.slice(4), from, whole);
    const tokens = parsePathExpr(ref);
    if (typeof tokens === 'string') return fail(from, `\`${shown}\` is not a valid reference: ${tokens}`);
    const path: PathSeg[] = [];
    for (const tok of tokens) {
      resolveNode(path);
      const cur = getAt(tree, path);
      let seg: PathSeg;
      if (Array.isArray(cur)) {
        if (tok.index !== undefined || /^\d+$/.test(tok.text)) {
          const i = tok.index ?? Number(tok.text);
          if (i >= cur.length) fail(from, `unknown reference \`${shown}\`: ${formatPath(path)} has ${cur.length} items, there is no item ${i}`);
          seg = i;
        } else if (path.length === 1 && path[0] === 'stages') {
          const names: string[] = [];
          let found = -1;
          for (let i = 0; i < cur.length; i++) {
            if (!isPlainObject(cur[i])) continue;
            resolveNode(['stages', i, 'name']);
            const n = getOwn(cur[i] as Record<string, unknown>, 'name');
            if (typeof n !== 'string') continue;
            names.push(n);
            if (n === tok.text && found < 0) found = i;
          }
          if (found < 0) fail(from, `unknown reference \`${shown}\`: no stage named \`${tok.text}\`${suggestion(tok.text, names)}; stages: ${names.join(', ') || '(none named)'}`);
          seg = found;
        } else {
          return fail(from, `unknown reference \`${shown}\`: ${formatPath(path)} is a list; select an item by index or (for stages) by name`);
        }
      } else if (isPlainObject(cur)) {
        if (tok.index !== undefined || getOwn(cur, tok.text) === undefined) {
          const keys = Object.keys(cur);
          const scope = path.length === 0 ? 'the recipe' : `\`${formatPath(path)}\``;
          const hint = path[0] === 'vars' ? '' : ' (values filled in by defaults cannot be referenced; write the field in the recipe)';
          fail(from, `unknown reference \`${shown}\`: ${scope} has no field \`${tok.text}\`${suggestion(tok.text, keys)}${hint}`);
        }
        seg = tok.text;
      } else {
        return fail(from, `unknown reference \`${shown}\`: \`${formatPath(path)}\` is ${kindOf(cur)}, it has no field \`${tok.text}\``);
      }
      path.push(seg);
    }
    if (isPrefix(path, from)) fail(from, `\`${shown}\` refers to a field that contains this very value`);
    refs.push([...path]);
    resolveDeep(path);
    return getAt(tree, path);
  };

  const envValue = (spec: string, from: PathSeg[], whole: boolean): unknown => {
    const sep = spec.indexOf(':-');
    const name = (sep < 0 ? spec : spec.slice(0, sep)).trim();
    const fallback = sep < 0 ? undefined : spec.slice(sep + 2);
    if (!ENV_NAME.test(name)) return fail(from, `\`\${env:${spec}}\`: \`${name}\` is not an environment variable name`);
    const raw = opts.env[name];
    let value: string;
    if (raw !== undefined && raw !== '') value = raw;
    else if (fallback !== undefined) value = fallback;
    else if (raw === '') value = raw;
    else {
      return fail(from, `environment variable ${name} is not set`, `set it, or give a default: \${env:${name}:-<default>}`);
    }
    // A whole-value environment reference that reads as a number or boolean becomes one.
    if (whole) {
      const t = value.trim();
      if (NUMBER.test(t)) return Number(t);
      if (t === 'true' || t === 'false') return t === 'true';
    }
    return value;
  };

  resolveDeep([]);
  return origins;
}
