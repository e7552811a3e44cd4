/**
 * Reading recipe YAML: parse with source positions, turn every YAML-level failure (syntax,
 * duplicate keys, alias bombs, unresolved aliases, absurd nesting) into a RecipeError, and return
 * a plain data tree plus an index from field paths to line/column.
 */
import { isAlias, isMap, isScalar, isSeq, LineCounter, parseDocument, visit, type Document, type Node } from 'yaml';
import { RecipeError, type RecipeProblem } from './errors.js';
import { formatPath, pathKey, type Path, type PathSeg } from './paths.js';

/** A billion-laughs document fails fast instead of expanding (the yaml library's own guard). */
export const MAX_ALIAS_COUNT = 100;
/** Recipes are a few levels deep; anything far deeper is a mistake or an attack. */
export const MAX_DEPTH = 32;
/** Values (mappings, lists and scalars) in one recipe after alias expansion. */
export const MAX_NODES = 50_000;
/** Bytes of recipe text. */
export const MAX_BYTES = 1 << 20;

export interface SourcePos {
  line: number;
  column: number;
}

interface SourceEntry {
  key?: SourcePos;
  value?: SourcePos;
}

/** Field path -> where its key and value are in the file. */
export class SourceIndex {
  constructor(private readonly entries: Map<string, SourceEntry>) {}

  static empty(): SourceIndex {
    return new SourceIndex(new Map());
  }

  has(path: Path): boolean {
    return this.entries.has(pathKey(path));
  }

  /**
   * Where to point for a problem at `path`: its value (or its key with `prefer: 'key'`); for a path
   * not in the file (added by an override or a default), the nearest ancestor that is.
   */
  locate(path: Path, prefer: 'key' | 'value' = 'value'): SourcePos | undefined {
    for (let n = path.length; n >= 0; n--) {
      const e = this.entries.get(pathKey(path.slice(0, n)));
      if (!e) continue;
      const exact = n === path.length;
      const pos = exact && prefer === 'value' ? (e.value ?? e.key) : (e.key ?? e.value);
      if (pos) return pos;
    }
    return undefined;
  }
}

export interface ParsedYaml {
  value: unknown;
  index: SourceIndex;
}

function keyString(v: unknown): string {
  // Same rule as the yaml library's toJS for plain-object maps.
  if (v === null || v === undefined) return '';
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

/** The first mapping key that is not a plain scalar (`? [a]: 1`, `*alias : 1`), if any. */
function firstComplexKey(doc: Document, lc: LineCounter): SourcePos | undefined {
  let found: SourcePos | undefined;
  visit(doc, {
    Pair(_key, pair) {
      if (pair.key === null || isScalar(pair.key)) return undefined;
      const r = (pair.key as Node).range;
      const p = lc.linePos(r ? r[0] : 0);
      found = { line: p.line, column: p.col };
      return visit.BREAK;
    },
  });
  return found;
}

function buildIndex(doc: Document, lc: LineCounter): SourceIndex {
  const entries = new Map<string, SourceEntry>();
  const pos = (offset: number): SourcePos => {
    const p = lc.linePos(offset);
    return { line: p.line, column: p.col };
  };
  const rangeStart = (n: unknown): number | undefined => {
    const r = (n as Node | null)?.range;
    return r ? r[0] : undefined;
  };
  const walk = (node: unknown, path: PathSeg[], depth: number): void => {
    if (depth > MAX_DEPTH) return;
    if (isMap(node)) {
      for (const pair of node.items) {
        if (!isScalar(pair.key)) continue;
        const k = keyString(pair.key.value);
        if (k === '<<') continue;
        const childPath = [...path, k];
        const keyOff = rangeStart(pair.key);
        const valOff = rangeStart(pair.value);
        const entry: SourceEntry = {};
        if (keyOff !== undefined) entry.key = pos(keyOff);
        if (valOff !== undefined && pair.value !== null && !(isScalar(pair.value) && pair.value.value === null && pair.value.source === '')) {
          entry.value = pos(valOff);
        }
        entries.set(pathKey(childPath), entry);
        if (pair.value) walk(pair.value, childPath, depth + 1);
      }
    } else if (isSeq(node)) {
      node.items.forEach((item, i) => {
        const off = rangeStart(item);
        const childPath = [...path, i];
        entries.set(pathKey(childPath), off === undefined ? {} : { value: pos(off) });
        walk(item, childPath, depth + 1);
      });
    }
    // Aliases are not followed: problems under one point at the alias itself.
  };
  const rootOff = rangeStart(doc.contents);
  entries.set(pathKey([]), rootOff === undefined ? { value: { line: 1, column: 1 } } : { value: pos(rootOff) });
  walk(doc.contents, [], 0);
  return new SourceIndex(entries);
}

function firstAliasPos(doc: Document, lc: LineCounter, source?: string): SourcePos | undefined {
  let found: SourcePos | undefined;
  visit(doc, {
    Alias(_key, node) {
      if (source !== undefined && node.source !== source) return undefined;
      if (node.range) {
        const p = lc.linePos(node.range[0]);
        found = { line: p.line, column: p.col };
      }
      return visit.BREAK;
    },
  });
  return found;
}

function lineAt(text: string, offset: number): string {
  const start = text.lastIndexOf('\n', Math.max(0, offset - 1)) + 1;
  const end = text.indexOf('\n', offset);
  return text.slice(start, end < 0 ? text.length : end);
}

/** Parse recipe text; throws RecipeError for anything that is not a YAML mapping we can use. */
export function parseRecipeYaml(text: string, file: string): ParsedYaml {
  if (Buffer.byteLength(text, 'utf8') > MAX_BYTES) {
    throw new RecipeError(`the file is larger than ${MAX_BYTES >> 10} KiB; a recipe is a short YAML file`, { file });
  }
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  if (text.trim() === '') {
    throw new RecipeError('the file is empty', { file, fix: 'a recipe needs at least `name:` and `stages:`; see recipes/README.md' });
  }
  const lc = new LineCounter();
  // logLevel 'error': the library's warnings would go to process.emitWarning; we report problems ourselves.
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true, merge: true, strict: true, logLevel: 'error' });
  if (doc.errors.length > 0) {
    // A syntax error cascades into many follow-on errors: the first few are what helps.
    const shown = doc.errors.slice(0, 3);
    const problems: RecipeProblem[] = shown.map((e) => {
      const p = lc.linePos(e.pos[0]);
      let problem = `invalid YAML: ${e.message.split('\n')[0]}`;
      if (e.code === 'DUPLICATE_KEY') {
        const m = /^("(?:[^"\\\n]|\\.)*"|'[^'\n]*'|[^:\s,{}[\]]+)/.exec(text.slice(e.pos[0], e.pos[0] + 200));
        const key = m ? m[1]! : '';
        problem = `duplicate key${key ? ` \`${key}\`` : ''}: a mapping may set each key only once`;
      } else if (e.code === 'RESOURCE_EXHAUSTION') {
        problem = 'the YAML is nested too deeply to read';
      } else if (e.code === 'MULTIPLE_DOCS') {
        problem = 'the file holds more than one YAML document (a `---` line); a recipe is one document';
      }
      return { problem, line: p.line, column: p.col };
    });
    const flowTemplate = shown.some((e) => {
      const line = lineAt(text, e.pos[0]);
      const flow = line.search(/[[{]/);
      return flow >= 0 && line.indexOf('${', flow) >= 0;
    });
    throw RecipeError.fromProblems(
      file,
      problems,
      flowTemplate ? 'inside [...] or {...}, quote values that contain ${...}: {root: "${vars.data}"}' : undefined,
    );
  }
  const contents = doc.contents;
  if (contents === null || (isScalar(contents) && contents.value === null)) {
    throw new RecipeError('the file has no content (only comments or an empty document)', {
      file,
      fix: 'a recipe needs at least `name:` and `stages:`; see recipes/README.md',
    });
  }
  if (!isMap(contents)) {
    const p = contents.range ? lc.linePos(contents.range[0]) : { line: 1, col: 1 };
    const found = isSeq(contents) ? 'a list' : isAlias(contents) ? 'an alias' : `the scalar ${JSON.stringify(String((contents as { value?: unknown }).value)).slice(0, 60)}`;
    throw new RecipeError(`expected the top level to be a mapping (name:, stages:, ...), found ${found}`, {
      file,
      line: p.line,
      column: p.col,
    });
  }
  const complex = firstComplexKey(doc, lc);
  if (complex) {
    throw new RecipeError('expected mapping keys to be plain names, found a list, mapping or alias used as a key', {
      file,
      line: complex.line,
      column: complex.column,
    });
  }
  let value: unknown;
  try {
    value = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
  } catch (e) {
    // Only the yaml library runs in this block: what it throws is about the input.
    const msg = e instanceof Error ? e.message : String(e);
    const unresolved = /^Unresolved alias[^:]*: (.*)$/.exec(msg);
    const at = firstAliasPos(doc, lc, unresolved ? unresolved[1] : undefined);
    const problem = /Excessive alias count/.test(msg)
      ? `too many alias expansions (more than ${MAX_ALIAS_COUNT}); anchors and aliases that multiply each other are refused`
      : unresolved
        ? `alias *${unresolved[1]} refers to an anchor &${unresolved[1]} that is not defined before it`
        : `invalid YAML: ${msg}`;
    throw new RecipeError(problem, { file, line: at?.line, column: at?.column });
  }
  const index = buildIndex(doc, lc);
  return { value: toPlainTree(value, { file, index, what: 'recipe' }), index };
}

export interface PlainTreeContext {
  file: string;
  index?: SourceIndex;
  /** For messages: 'recipe' or the override text. */
  what: string;
  override?: string;
}

/**
 * Deep-copy YAML data into plain objects and arrays (aliases become independent copies), refusing
 * anything else, anything deeper than MAX_DEPTH and anything larger than MAX_NODES. Keys are
 * defined as own properties, so `__proto__` is an ordinary (and later rejected) key.
 */
export function toPlainTree(value: unknown, ctx: PlainTreeContext): unknown {
  let nodes = 0;
  const fail = (problem: string, path: PathSeg[]): never => {
    const p = ctx.index?.locate(path);
    throw new RecipeError(problem, {
      file: ctx.file,
      field: formatPath(path),
      line: ctx.override === undefined ? p?.line : undefined,
      column: ctx.override === undefined ? p?.column : undefined,
      override: ctx.override,
    });
  };
  const copy = (v: unknown, path: PathSeg[]): unknown => {
    if (++nodes > MAX_NODES) fail(`the ${ctx.what} expands to more than ${MAX_NODES} values (anchors/aliases?)`, path);
    if (path.length > MAX_DEPTH) fail(`nested more than ${MAX_DEPTH} levels deep`, path);
    if (v === null || typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') return v;
    if (Array.isArray(v)) return v.map((item, i) => copy(item, [...path, i]));
    if (typeof v === 'object' && (Object.getPrototypeOf(v) === Object.prototype || Object.getPrototypeOf(v) === null)) {
      const out: Record<string, unknown> = {};
      for (const k of Object.keys(v)) {
        Object.defineProperty(out, k, {
          value: copy((v as Record<string, unknown>)[k], [...path, k]),
          enumerable: true,
          writable: true,
          configurable: true,
        });
      }
      return out;
    }
    if (v === undefined) return null;
    const what = v instanceof Uint8Array ? 'binary data' : v instanceof Map ? 'a mapping with non-string keys' : v instanceof Set ? 'a set' : v instanceof Date ? 'a timestamp' : typeof v;
    return fail(`expected plain YAML data (mappings, lists, strings, numbers, booleans, null), found ${what}`, path);
  };
  return copy(value, []);
}

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Own-property read (never walks the prototype chain). */
export function getOwn(obj: Record<string, unknown>, key: string): unknown {
  return Object.prototype.hasOwnProperty.call(obj, key) ? obj[key] : undefined;
}

export function hasOwn(obj: Record<string, unknown>, key: string): boolean {
  return Object.prototype.hasOwnProperty.call(obj, key);
}

/** Own-property write that treats `__proto__` as a plain key. */
export function setOwn(obj: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
}

/** The value at `path`, or undefined when any step is missing. */
export function getAt(root: unknown, path: Path): unknown {
  let cur = root;
  for (const seg of path) {
    if (typeof seg === 'number') {
      if (!Array.isArray(cur)) return undefined;
      cur = cur[seg];
    } else {
      if (!isPlainObject(cur)) return undefined;
      cur = getOwn(cur, seg);
    }
  }
  return cur;
}
