/**
 * Annotation files of the non-MMEB suites (retrieval, SugarCrepe, zero-shot): one reader for the
 * plain tabular forms (jsonl, a JSON array, csv/tsv with a header row) so each suite only says which
 * fields it needs, and errors name the file, the row and the field.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { UnimeError } from '../errors.js';

export type AnnotationRow = Record<string, unknown>;

/** What a path given as --data is: a file, a folder, or missing (a UnimeError naming the flag). */
export async function statData(p: string, field: string): Promise<'file' | 'dir'> {
  const st = await fsp.stat(p).catch(() => null);
  if (!st) throw new UnimeError('no such file or folder', { file: path.resolve(p), field, fix: 'point it at the suite data (see `unime eval <suite> --help`)' });
  return st.isDirectory() ? 'dir' : 'file';
}

export async function readText(file: string, field?: string): Promise<string> {
  try {
    return await fsp.readFile(file, 'utf8');
  } catch (e) {
    throw new UnimeError(`cannot read: ${(e as Error).message}`, { file, ...(field ? { field } : {}) });
  }
}

export async function readJsonFile(file: string): Promise<unknown> {
  const text = await readText(file);
  try {
    return JSON.parse(text) as unknown;
  } catch (e) {
    throw new UnimeError(`is not valid JSON: ${(e as Error).message}`, { file });
  }
}

/** Split one CSV (or TSV) record honouring double quotes; `text` from `pos`; returns the fields and the next position. */
function csvRecord(text: string, pos: number, sep: string): { fields: string[]; next: number } {
  const fields: string[] = [];
  let cur = '';
  let quoted = false;
  let i = pos;
  for (; i < text.length; i++) {
    const c = text[i]!;
    if (quoted) {
      if (c === '"') {
        if (text[i + 1] === '"') {
          cur += '"';
          i++;
        } else quoted = false;
      } else cur += c;
    } else if (c === '"' && cur === '') quoted = true;
    else if (c === sep) {
      fields.push(cur);
      cur = '';
    } else if (c === '\n' || c === '\r') {
      if (c === '\r' && text[i + 1] === '\n') i++;
      i++;
      break;
    } else cur += c;
  }
  fields.push(cur);
  return { fields, next: i };
}

export function parseCsv(text: string, file: string, sep = ','): AnnotationRow[] {
  const body = text.replace(/^\uFEFF/, '');
  let pos = 0;
  const first = csvRecord(body, pos, sep);
  const header = first.fields.map((h) => h.trim());
  pos = first.next;
  if (header.length === 0 || header.every((h) => h === '')) throw new UnimeError('has no header row', { file, fix: 'the first line names the columns, e.g. image,caption' });
  const rows: AnnotationRow[] = [];
  let line = 2;
  while (pos < body.length) {
    const r = csvRecord(body, pos, sep);
    pos = r.next;
    if (r.fields.length === 1 && r.fields[0]!.trim() === '') {
      line++;
      continue;
    }
    if (r.fields.length !== header.length) {
      throw new UnimeError(`has ${r.fields.length} fields on line ${line}, but the header names ${header.length}`, { file, line, fix: 'quote fields that hold the separator' });
    }
    rows.push(Object.fromEntries(header.map((h, j) => [h, r.fields[j]!])));
    line++;
  }
  return rows;
}

/** Rows of a .jsonl, .json (array of objects), .csv or .tsv file. */
export async function readAnnotationRows(file: string): Promise<AnnotationRow[]> {
  const ext = path.extname(file).toLowerCase();
  if (ext === '.csv' || ext === '.tsv') return parseCsv(await readText(file), file, ext === '.tsv' ? '\t' : ',');
  if (ext === '.json') {
    const v = await readJsonFile(file);
    if (!Array.isArray(v)) throw new UnimeError('expected a JSON array of rows', { file, fix: 'use a list of objects, or jsonl' });
    return v.map((r, i) => asRow(r, file, i + 1));
  }
  if (ext === '.jsonl' || ext === '.ndjson') {
    const rows: AnnotationRow[] = [];
    (await readText(file)).split(/\r?\n/).forEach((l, i) => {
      if (l.trim() === '') return;
      let v: unknown;
      try {
        v = JSON.parse(l);
      } catch (e) {
        throw new UnimeError(`line ${i + 1} is not valid JSON: ${(e as Error).message}`, { file, line: i + 1 });
      }
      rows.push(asRow(v, file, i + 1));
    });
    return rows;
  }
  throw new UnimeError(`unknown annotation format "${ext || '(no extension)'}"`, { file, fix: 'use .jsonl, .json, .csv or .tsv' });
}

function asRow(v: unknown, file: string, n: number): AnnotationRow {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new UnimeError(`row ${n} is not an object`, { file, line: n });
  return v as AnnotationRow;
}

/** A required non-empty string field. */
export function stringField(row: AnnotationRow, key: string, file: string, n: number): string {
  const v = row[key];
  if (typeof v !== 'string' || v.trim() === '') {
    throw new UnimeError(`row ${n} has no ${key === undefined ? 'value' : `"${key}"`} string (found ${v === undefined ? 'nothing' : JSON.stringify(v)})`, {
      file,
      field: key,
      line: n,
    });
  }
  return v;
}

/** Check every image exists; throws naming the first missing one (and how many more). */
export async function checkImagesExist(paths: readonly string[], file: string, field: string): Promise<void> {
  const unique = [...new Set(paths)];
  const missing: string[] = [];
  await Promise.all(
    unique.map(async (p) => {
      const st = await fsp.stat(p).catch(() => null);
      if (!st || !st.isFile()) missing.push(p);
    }),
  );
  if (missing.length > 0) {
    missing.sort();
    throw new UnimeError(`${missing.length} of ${unique.length} images do not exist, e.g. ${missing[0]}`, {
      file,
      field,
      fix: 'image paths are relative to the annotation file (or the image folder given)',
    });
  }
}

/** Files under `dir` with a known image extension, sorted. */
export async function listImages(dir: string): Promise<string[]> {
  const names = await fsp.readdir(dir);
  return names.filter((n) => IMAGE_EXT.test(n)).sort();
}

export const IMAGE_EXT = /\.(png|jpe?g|bmp|gif|webp)$/i;
