/**
 * Field paths: how users write them (`stages.stage1.train.lr`, `stages[0].train.lr`), how messages
 * print them (`stages[0].train.lr`), and "did you mean" suggestions for mistyped names.
 */
export type PathSeg = string | number;
export type Path = readonly PathSeg[];

const IDENT = /^[A-Za-z_][A-Za-z0-9_-]*$/;

/** `['stages', 1, 'train', 'lr']` -> `stages[1].train.lr`; odd keys are quoted: `vars["a.b"]`. */
export function formatPath(path: Path): string {
  if (path.length === 0) return '(top level)';
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else if (IDENT.test(seg)) out += out === '' ? seg : `.${seg}`;
    else out += `[${JSON.stringify(seg)}]`;
  }
  return out;
}

/** A stable map key for a path. */
export function pathKey(path: Path): string {
  return JSON.stringify(path);
}

export function isPrefix(prefix: Path, path: Path): boolean {
  if (prefix.length > path.length) return false;
  return prefix.every((seg, i) => seg === path[i]);
}

/**
 * One segment of a user-written path. `index` is set for `[n]` (always a list index); a bare
 * all-digits segment is a list index or a mapping key depending on what it lands on.
 */
export interface PathToken {
  text: string;
  index?: number;
}

/**
 * Parse `a.b.0.c`, `a.b[0].c` or `stages.stage1.output_dir`. Returns a message instead of tokens when
 * the text is not a path.
 */
export function parsePathExpr(text: string): PathToken[] | string {
  const tokens: PathToken[] = [];
  if (text.trim() === '') return 'the path is empty';
  const parts = text.split('.');
  for (const part of parts) {
    const m = /^([^[\]]*)((?:\[\d+\])*)$/.exec(part);
    if (!m) return `\`${part}\` is not a valid path segment (use name, name[0] or name.0)`;
    const name = m[1] ?? '';
    const brackets = m[2] ?? '';
    if (name === '' && (brackets === '' || tokens.length === 0)) return `\`${text}\` has an empty segment`;
    if (name !== '') tokens.push({ text: name });
    for (const b of brackets.matchAll(/\[(\d+)\]/g)) {
      const n = Number(b[1]);
      if (!Number.isSafeInteger(n)) return `index ${b[1]} is too large`;
      tokens.push({ text: String(n), index: n });
    }
  }
  return tokens;
}

/** Edit distance with transpositions counted as one edit. */
export function editDistance(a: string, b: string): number {
  if (a === b) return 0;
  // Typos of long strings are not worth a quadratic comparison (and names are short).
  if (Math.abs(a.length - b.length) > 8 || a.length > 64 || b.length > 64) return Math.max(a.length, b.length);
  const rows = a.length + 1;
  const cols = b.length + 1;
  const d: number[][] = Array.from({ length: rows }, () => new Array<number>(cols).fill(0));
  for (let i = 0; i < rows; i++) d[i]![0] = i;
  for (let j = 0; j < cols; j++) d[0]![j] = j;
  for (let i = 1; i < rows; i++) {
    for (let j = 1; j < cols; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[i - 2]![j - 2]! + 1);
      d[i]![j] = v;
    }
  }
  return d[a.length]![b.length]!;
}

/** The closest candidate when it is close enough to be a likely typo, else undefined. */
export function didYouMean(word: string, candidates: Iterable<string>): string | undefined {
  const norm = (s: string) => s.toLowerCase().replace(/[-_\s.]/g, '');
  const w = norm(word);
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of candidates) {
    if (c === word) continue;
    const cn = norm(c);
    const d = cn === w ? 0 : editDistance(w, cn);
    if (d < bestD) {
      bestD = d;
      best = c;
    }
  }
  if (best === undefined) return undefined;
  // One- and two-letter names are too short for a typo guess to mean anything.
  const limit = w.length <= 2 ? 0 : Math.max(1, Math.floor(w.length / 3));
  return bestD <= limit ? best : undefined;
}

/** ` (did you mean \`x\`?)` or an empty string. */
export function suggestion(word: string, candidates: Iterable<string>): string {
  const s = didYouMean(word, candidates);
  return s === undefined ? '' : ` (did you mean \`${s}\`?)`;
}

/** A short description of a value for "found ..." messages. */
export function describeValue(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'null';
  if (typeof v === 'string') {
    const s = v.length > 60 ? `${v.slice(0, 57)}...` : v;
    return `the string ${JSON.stringify(s)}`;
  }
  if (typeof v === 'number') return Number.isFinite(v) ? `the number ${v}` : `${v}`;
  if (typeof v === 'boolean') return `${v}`;
  if (Array.isArray(v)) return v.length === 0 ? 'an empty list' : `a list of ${v.length} item${v.length === 1 ? '' : 's'}`;
  if (typeof v === 'object') return 'a mapping';
  return typeof v;
}
