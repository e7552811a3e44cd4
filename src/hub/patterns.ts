/**
 * File patterns for pulls and pushes, with the semantics huggingface_hub gives `allow_patterns` /
 * `ignore_patterns` (Python's fnmatch): `*` matches any run of characters, `/` included, so
 * `*.json` matches `config.json` and `processor/config.json`; `?` is one character; `[abc]` and
 * `[!abc]` are sets; a pattern ending in `/` means everything under that folder.
 */

/** What a model pull fetches unless told otherwise: weights, configs, tokenizer, processor, chat template. */
export const DEFAULT_MODEL_PATTERNS: readonly string[] = [
  '*.safetensors',
  '*.json', // config, generation config, safetensors index, tokenizer/processor/preprocessor configs
  '*tokenizer*',
  '*.model', // sentencepiece
  '*.tiktoken',
  '*merges.txt',
  '*vocab*',
  '*.jinja',
  '*chat_template*',
];

/** Datasets are pulled whole unless patterns say otherwise. */
export const DEFAULT_DATASET_PATTERNS: readonly string[] = ['*'];

const cache = new Map<string, RegExp>();

export function globToRegExp(pattern: string): RegExp {
  const key = pattern;
  const hit = cache.get(key);
  if (hit) return hit;
  const p = pattern.endsWith('/') ? pattern + '*' : pattern;
  let re = '';
  for (let i = 0; i < p.length; i++) {
    const c = p[i]!;
    if (c === '*') {
      re += '.*';
    } else if (c === '?') {
      re += '.';
    } else if (c === '[') {
      const close = p.indexOf(']', i + 2);
      if (close === -1) {
        re += '\\[';
        continue;
      }
      let body = p.slice(i + 1, close);
      let negate = false;
      if (body.startsWith('!')) {
        negate = true;
        body = body.slice(1);
      }
      body = body.replace(/[\\\]^]/g, (m) => `\\${m}`);
      re += `[${negate ? '^' : ''}${body}]`;
      i = close;
    } else {
      re += c.replace(/[.*+?^${}()|[\]\\/]/g, (m) => `\\${m}`);
    }
  }
  const compiled = new RegExp(`^${re}$`, 's');
  cache.set(key, compiled);
  return compiled;
}

export function matchesGlob(path: string, pattern: string): boolean {
  return globToRegExp(pattern).test(path);
}

export function matchesAny(path: string, patterns: readonly string[]): boolean {
  return patterns.some((p) => matchesGlob(path, p));
}

export interface PatternFilter {
  /** A path is kept when it matches one of these (all paths when undefined). */
  include?: readonly string[] | undefined;
  /** ...and none of these. */
  exclude?: readonly string[] | undefined;
}

export function keepPath(path: string, f: PatternFilter): boolean {
  if (f.include !== undefined && !matchesAny(path, f.include)) return false;
  if (f.exclude !== undefined && matchesAny(path, f.exclude)) return false;
  return true;
}

/** Whether a pattern names one file literally (no wildcard), so "missing" can name it. */
export function isLiteralPattern(p: string): boolean {
  return !/[*?[]/.test(p) && !p.endsWith('/');
}
