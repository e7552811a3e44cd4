/**
 * JSON helpers for files users hand us: the position of a syntax error as line and column (the
 * wording of `JSON.parse` errors differs between Node versions, so we find the spot ourselves),
 * and the keys of a top-level object in text order, duplicates included (`JSON.parse` silently
 * keeps the last of a duplicated key).
 */

import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import type { UnimeError, UnimeErrorDetails } from '../errors.js';

export interface JsonSyntaxProblem {
  /** 0-based offset into the text (UTF-16 code units). */
  offset: number;
  /** 1-based line and column. */
  line: number;
  column: number;
  /** What was wrong there, in words. */
  problem: string;
}

export type JsonParseResult = { ok: true; value: unknown } | { ok: false; error: JsonSyntaxProblem };

/** Parse JSON; on failure say where and what, without depending on the engine's message. */
export function parseJson(text: string): JsonParseResult {
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch (e) {
    const found = findJsonSyntaxError(text);
    if (found) return { ok: false, error: found };
    // The engine disagreed with our scanner (should not happen): fall back to its message.
    const problem = e instanceof Error ? e.message : String(e);
    return { ok: false, error: { offset: 0, line: 1, column: 1, problem } };
  }
}

export function lineColumn(text: string, offset: number): { line: number; column: number } {
  let line = 1;
  let lineStart = 0;
  const end = Math.min(offset, text.length);
  for (let i = 0; i < end; i++) {
    if (text.charCodeAt(i) === 10) {
      line++;
      lineStart = i + 1;
    }
  }
  return { line, column: end - lineStart + 1 };
}

const isWs = (c: number) => c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d;
const isDigit = (c: number) => c >= 0x30 && c <= 0x39;
const isHex = (c: number) => isDigit(c) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66);

function describeAt(text: string, i: number): string {
  if (i >= text.length) return 'end of input';
  const c = text.codePointAt(i)!;
  if (c < 0x20 || c === 0x7f || c === 0xfeff) return `character U+${c.toString(16).toUpperCase().padStart(4, '0')}`;
  return `'${String.fromCodePoint(c)}'`;
}

/**
 * Scan `text` as JSON (RFC 8259) and return the first syntax error, or null if it is valid.
 * Iterative, so deeply nested input cannot overflow the stack.
 */
export function findJsonSyntaxError(text: string): JsonSyntaxProblem | null {
  const n = text.length;
  let i = 0;
  const stack: number[] = []; // 0 = object, 1 = array
  const fail = (at: number, what: string): JsonSyntaxProblem => {
    const { line, column } = lineColumn(text, at);
    return { offset: at, line, column, problem: `${what}, found ${describeAt(text, at)}` };
  };
  const skipWs = () => {
    while (i < n && isWs(text.charCodeAt(i))) i++;
  };
  // Returns an error or null, leaving i after the string.
  const scanString = (): JsonSyntaxProblem | null => {
    i++; // opening quote
    for (;;) {
      if (i >= n) return fail(i, 'unterminated string');
      const c = text.charCodeAt(i);
      if (c === 0x22) {
        i++;
        return null;
      }
      if (c < 0x20) return fail(i, 'control character inside a string (escape it)');
      if (c === 0x5c) {
        const e = text.charCodeAt(i + 1);
        if (e === 0x75) {
          for (let k = 2; k < 6; k++) if (!isHex(text.charCodeAt(i + k))) return fail(i + k, 'expected 4 hex digits after \\u');
          i += 6;
        } else if ('"\\/bfnrt'.includes(text[i + 1] ?? '')) {
          i += 2;
        } else {
          return fail(i + 1, 'invalid escape in string');
        }
        continue;
      }
      i++;
    }
  };
  const scanNumber = (): JsonSyntaxProblem | null => {
    if (text.charCodeAt(i) === 0x2d) i++;
    if (text.charCodeAt(i) === 0x30) {
      i++;
    } else if (isDigit(text.charCodeAt(i))) {
      while (isDigit(text.charCodeAt(i))) i++;
    } else {
      return fail(i, 'expected a digit');
    }
    if (text.charCodeAt(i) === 0x2e) {
      i++;
      if (!isDigit(text.charCodeAt(i))) return fail(i, 'expected a digit after the decimal point');
      while (isDigit(text.charCodeAt(i))) i++;
    }
    const e = text.charCodeAt(i);
    if (e === 0x65 || e === 0x45) {
      i++;
      const s = text.charCodeAt(i);
      if (s === 0x2b || s === 0x2d) i++;
      if (!isDigit(text.charCodeAt(i))) return fail(i, 'expected a digit in the exponent');
      while (isDigit(text.charCodeAt(i))) i++;
    }
    return null;
  };

  // mode: 'value' expects a value; 'after' has just finished one.
  let mode: 'value' | 'after' = 'value';
  skipWs();
  for (;;) {
    if (mode === 'value') {
      skipWs();
      if (i >= n) return fail(i, 'expected a value');
      const c = text.charCodeAt(i);
      if (c === 0x7b) {
        i++;
        skipWs();
        if (text.charCodeAt(i) === 0x7d) {
          i++;
          mode = 'after';
          continue;
        }
        stack.push(0);
        const err = scanKey();
        if (err) return err;
        continue; // mode stays 'value'
      }
      if (c === 0x5b) {
        i++;
        skipWs();
        if (text.charCodeAt(i) === 0x5d) {
          i++;
          mode = 'after';
          continue;
        }
        stack.push(1);
        continue;
      }
      let err: JsonSyntaxProblem | null = null;
      if (c === 0x22) err = scanString();
      else if (c === 0x2d || isDigit(c)) err = scanNumber();
      else if (text.startsWith('true', i)) i += 4;
      else if (text.startsWith('false', i)) i += 5;
      else if (text.startsWith('null', i)) i += 4;
      else return fail(i, 'expected a value');
      if (err) return err;
      mode = 'after';
      continue;
    }
    skipWs();
    const top = stack[stack.length - 1];
    if (top === undefined) {
      if (i < n) return fail(i, 'unexpected text after the end of the JSON value');
      return null;
    }
    const c = text.charCodeAt(i);
    if (c === 0x2c) {
      i++;
      if (top === 0) {
        skipWs();
        const err = scanKey();
        if (err) return err;
      }
      mode = 'value';
      continue;
    }
    if ((top === 0 && c === 0x7d) || (top === 1 && c === 0x5d)) {
      i++;
      stack.pop();
      continue; // still 'after'
    }
    return fail(i, top === 0 ? "expected ',' or '}' after an object member" : "expected ',' or ']' after an array element");
  }

  // A key and its colon; leaves i at the value.
  function scanKey(): JsonSyntaxProblem | null {
    if (text.charCodeAt(i) !== 0x22) return fail(i, 'expected a double-quoted property name');
    const err = scanString();
    if (err) return err;
    skipWs();
    if (text.charCodeAt(i) !== 0x3a) return fail(i, "expected ':' after a property name");
    i++;
    return null;
  }
}

/**
 * The keys of the top-level object in `text`, in order, duplicates kept. `text` must already be
 * known to be valid JSON whose top-level value is an object.
 */
export function topLevelKeys(text: string): string[] {
  const keys: string[] = [];
  const n = text.length;
  let depth = 0;
  let expectKey = false;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22) {
      const start = i;
      i++;
      while (i < n) {
        const d = text.charCodeAt(i);
        if (d === 0x5c) i += 2;
        else if (d === 0x22) break;
        else i++;
      }
      if (depth === 1 && expectKey) {
        keys.push(JSON.parse(text.slice(start, i + 1)) as string);
        expectKey = false;
      }
    } else if (c === 0x7b || c === 0x5b) {
      depth++;
      if (depth === 1) expectKey = true;
    } else if (c === 0x7d || c === 0x5d) {
      depth--;
    } else if (c === 0x2c && depth === 1) {
      expectKey = true;
    }
  }
  return keys;
}

/**
 * A short JSON-like rendering of any value for error messages: bounded in length and depth, so a
 * hostile value (deeply nested, huge) can neither overflow the stack nor flood the message.
 */
export function previewJson(value: unknown, maxLength = 60): string {
  let out = '';
  const full = () => out.length > maxLength;
  const walk = (v: unknown, depth: number): void => {
    if (full()) return;
    if (typeof v === 'string') out += JSON.stringify(v.length > maxLength ? v.slice(0, maxLength) : v);
    else if (typeof v === 'bigint') out += `${v}n`;
    else if (v === undefined) out += 'undefined';
    else if (typeof v === 'number' || typeof v === 'boolean' || v === null) out += String(JSON.stringify(v) ?? v);
    else if (typeof v !== 'object') out += typeof v;
    else if (ArrayBuffer.isView(v)) out += `${v.constructor.name}(${v.byteLength} bytes)`;
    else if (depth >= 4) out += Array.isArray(v) ? '[...]' : '{...}';
    else if (Array.isArray(v)) {
      out += '[';
      for (let i = 0; i < v.length && !full(); i++) {
        if (i) out += ',';
        walk(v[i], depth + 1);
      }
      out += ']';
    } else {
      out += '{';
      let first = true;
      for (const k in v as Record<string, unknown>) {
        if (!Object.prototype.hasOwnProperty.call(v, k)) continue;
        if (full()) break;
        if (!first) out += ',';
        first = false;
        out += JSON.stringify(k.length > maxLength ? k.slice(0, maxLength) : k) + ':';
        walk((v as Record<string, unknown>)[k], depth + 1);
      }
      out += '}';
    }
  };
  walk(value, 0);
  return out.length > maxLength ? out.slice(0, maxLength - 3) + '...' : out;
}

/**
 * Read a JSON file of a checkpoint (`config.json`, `preprocessor_config.json` ...): `dirOrFile` is the
 * checkpoint directory (the file is `name` inside it) or the file itself. A missing or unreadable
 * file and invalid JSON (with line and column) become `makeError(problem, details)`, so each caller
 * keeps its own error class. Returns the parsed value and the file it came from.
 */
export async function readCheckpointJson(
  dirOrFile: string,
  name: string,
  makeError: (problem: string, details: UnimeErrorDetails) => UnimeError,
  fixes: { missing: string; invalid?: string },
): Promise<{ value: unknown; file: string }> {
  let file = dirOrFile;
  try {
    if ((await fsp.stat(dirOrFile)).isDirectory()) file = path.join(dirOrFile, name);
  } catch {
    // reported by the read below
  }
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw makeError(code === 'ENOENT' ? `no ${name} here` : `could not read: ${(e as Error).message}`, { file, fix: fixes.missing, cause: e });
  }
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  const parsed = parseJson(text);
  if (!parsed.ok) {
    const { line, column, problem } = parsed.error;
    throw makeError(`not valid JSON: ${problem}`, { file, line, column, ...(fixes.invalid ? { fix: fixes.invalid } : {}) });
  }
  return { value: parsed.value, file };
}
