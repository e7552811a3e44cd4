/**
 * Readers for MMEB-shaped data, as the training and evaluation engines consume it:
 *
 * - MMEB-train (TIGER-Lab/MMEB-train): `<root>/<subset>/<split>-00000-of-00001.parquet` with columns
 *   qry, qry_image_path, pos_text, pos_image_path and, on some subsets, neg_text, neg_image_path.
 * - MMEB-eval (TIGER-Lab/MMEB-eval): `<root>/<dataset>/test-00000-of-00001.parquet` with qry_text,
 *   qry_img_path (str) and tgt_text, tgt_img_path (lists; the correct candidate first).
 * - Text pairs for UniME stage 1 and the teacher: jsonl, csv or parquet rows of sent0, sent1 and an
 *   optional hard_neg (SimCSE-NLI style).
 *
 * Image paths are relative; an {@link ImageResolver} finds them as files under the data root (or its
 * images/ folder) or as members of an images.zip. Every error names the file, and the column or row.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { parquetMetadata, parquetReadObjects } from 'hyparquet';
import { UnimeError } from '../errors.js';
import { openZip, type ZipArchive } from '../images/zip.js';

export class DataFormatError extends UnimeError {}

export const MMEB_EVAL_FILE = 'test-00000-of-00001.parquet';
export const MMEB_EVAL_COLUMNS = ['qry_text', 'qry_img_path', 'tgt_text', 'tgt_img_path'] as const;
export const MMEB_TRAIN_REQUIRED = ['qry', 'qry_image_path', 'pos_text', 'pos_image_path'] as const;
export const MMEB_TRAIN_OPTIONAL = ['neg_text', 'neg_image_path'] as const;

// ---------------------------------------------------------------------------------------------
// Parquet

export interface ParquetTable {
  file: string;
  /** Top-level column names, in file order. */
  columns: string[];
  rows: Record<string, unknown>[];
}

async function readBytes(file: string, what: string): Promise<Buffer> {
  try {
    return await fsp.readFile(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new DataFormatError(code === 'ENOENT' ? `${what} not found` : `could not read ${what}: ${(e as Error).message}`, { file, cause: e });
  }
}

/** All rows of a parquet file as objects keyed by column name. */
export async function readParquetTable(file: string): Promise<ParquetTable> {
  const bytes = await readBytes(file, 'parquet file');
  const ab = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
  try {
    const meta = parquetMetadata(ab);
    const schema = meta.schema;
    const columns: string[] = [];
    // Walk the flattened schema tree: element 0 is the root; skip each top-level field's subtree.
    let i = 1;
    const skip = (): void => {
      const el = schema[i++];
      for (let c = 0; c < (el?.num_children ?? 0); c++) skip();
    };
    while (i < schema.length) {
      columns.push(schema[i]!.name);
      skip();
    }
    const rows = (await parquetReadObjects({ file: ab, metadata: meta })) as Record<string, unknown>[];
    return { file, columns, rows };
  } catch (e) {
    throw new DataFormatError(`not a readable parquet file: ${(e as Error).message}`, {
      file,
      fix: 'check that the file is a complete parquet file (re-download or regenerate it)',
      cause: e,
    });
  }
}

function requireColumns(table: ParquetTable, required: readonly string[], kind: string): void {
  const missing = required.filter((c) => !table.columns.includes(c));
  if (missing.length > 0) {
    throw new DataFormatError(
      `missing column${missing.length > 1 ? 's' : ''} ${missing.map((c) => `"${c}"`).join(', ')} (found: ${table.columns.join(', ') || 'none'})`,
      { file: table.file, field: missing[0], fix: `an ${kind} file needs the columns ${required.join(', ')}` },
    );
  }
}

function stringCell(table: ParquetTable, row: number, column: string): string {
  const v = table.rows[row]?.[column];
  if (v === null || v === undefined) return '';
  if (typeof v !== 'string') throw new DataFormatError(`row ${row}: expected a string, found ${describe(v)}`, { file: table.file, field: column });
  return v;
}

function stringListCell(table: ParquetTable, row: number, column: string): string[] {
  const v = table.rows[row]?.[column];
  if (v === null || v === undefined) return [];
  if (!Array.isArray(v)) throw new DataFormatError(`row ${row}: expected a list of strings, found ${describe(v)}`, { file: table.file, field: column });
  return v.map((x, k) => {
    if (x === null || x === undefined) return '';
    if (typeof x !== 'string') throw new DataFormatError(`row ${row}, item ${k}: expected a string, found ${describe(x)}`, { file: table.file, field: column });
    return x;
  });
}

function describe(v: unknown): string {
  if (Array.isArray(v)) return 'a list';
  if (v instanceof Uint8Array) return 'bytes';
  return typeof v === 'object' ? 'an object' : `${typeof v} ${JSON.stringify(v)}`.slice(0, 60);
}

// ---------------------------------------------------------------------------------------------
// Images

/** Where an image is: a file path, or a member of an open zip (the shape src/images/decode.ts takes). */
export type ImageLocation = string | { zip: ZipArchive; member: string };

/** Resolves the relative image paths of a data file against folders, then zip archives. */
export class ImageResolver {
  private opened: Map<string, Promise<ZipArchive | null>> = new Map();

  constructor(
    /** The data file whose paths these are (for errors). */
    readonly dataFile: string,
    readonly folders: readonly string[],
    readonly zips: readonly string[],
  ) {}

  private folderKnown: Map<string, Promise<boolean>> = new Map();

  private isFolder(dir: string): Promise<boolean> {
    let known = this.folderKnown.get(dir);
    if (!known) {
      known = fsp.stat(dir).then(
        (st) => st.isDirectory(),
        () => false,
      );
      this.folderKnown.set(dir, known);
    }
    return known;
  }

  private zip(file: string): Promise<ZipArchive | null> {
    let z = this.opened.get(file);
    if (!z) {
      z = fsp.stat(file).then(
        () => openZip(file),
        () => null,
      );
      this.opened.set(file, z);
    }
    return z;
  }

  /** Where `rel` is; throws naming the data file and every place looked in when it is nowhere. */
  async locate(rel: string): Promise<ImageLocation> {
    if (rel === '') throw new DataFormatError('empty image path', { file: this.dataFile });
    for (const dir of this.folders) {
      const p = path.join(dir, rel);
      // a folder that does not exist holds none of its images: asked once, not once per image
      if (!(await this.isFolder(path.dirname(p)))) continue;
      try {
        if ((await fsp.stat(p)).isFile()) return p;
      } catch {
        // not here
      }
    }
    const member = rel.split(path.sep).join('/');
    for (const file of this.zips) {
      const z = await this.zip(file);
      if (!z) continue;
      for (const name of [member, `images/${member}`]) if (z.has(name)) return { zip: z, member: name };
    }
    throw new DataFormatError(`image "${rel}" not found (looked in ${[...this.folders, ...this.zips].join(', ')})`, {
      file: this.dataFile,
      fix: 'unpack the dataset images next to the parquet files, or put images.zip in the data root',
    });
  }

  /** The encoded bytes of an image. */
  async read(rel: string): Promise<Uint8Array> {
    const loc = await this.locate(rel);
    return typeof loc === 'string' ? new Uint8Array(await fsp.readFile(loc)) : loc.zip.read(loc.member);
  }

  async close(): Promise<void> {
    const zs = await Promise.all(this.opened.values());
    this.opened.clear();
    await Promise.all(zs.map((z) => z?.close()));
  }
}

// ---------------------------------------------------------------------------------------------
// MMEB-eval

export interface MmebEvalRow {
  qry_text: string;
  /** '' = no image. */
  qry_img_path: string;
  tgt_text: string[];
  /** Same length as tgt_text, or empty (no images). '' entries: that candidate has no image. */
  tgt_img_path: string[];
}

export interface MmebEvalDataset {
  dataset: string;
  file: string;
  rows: MmebEvalRow[];
  images: ImageResolver;
}

async function subdirsWith(root: string, has: (dir: string, files: string[]) => boolean): Promise<string[]> {
  let entries;
  try {
    entries = await fsp.readdir(root, { withFileTypes: true });
  } catch (e) {
    throw new DataFormatError('data folder not found or unreadable', { file: root, cause: e });
  }
  const out: string[] = [];
  for (const e of entries) {
    // A linked folder counts too (roots assembled from several downloads are often links).
    const isDir = e.isDirectory() || (e.isSymbolicLink() && (await fsp.stat(path.join(root, e.name)).catch(() => null))?.isDirectory() === true);
    if (!isDir) continue;
    const files = await fsp.readdir(path.join(root, e.name));
    if (has(e.name, files)) out.push(e.name);
  }
  return out.sort();
}

/** The dataset folders of an MMEB-eval root (those holding a test parquet), sorted. */
export function listMmebEvalDatasets(root: string): Promise<string[]> {
  return subdirsWith(root, (_d, files) => files.includes(MMEB_EVAL_FILE));
}

export async function readMmebEvalDataset(root: string, dataset: string): Promise<MmebEvalDataset> {
  const file = path.join(root, dataset, MMEB_EVAL_FILE);
  const table = await readParquetTable(file);
  requireColumns(table, MMEB_EVAL_COLUMNS, 'MMEB-eval');
  const rows: MmebEvalRow[] = table.rows.map((_, i) => {
    const row: MmebEvalRow = {
      qry_text: stringCell(table, i, 'qry_text'),
      qry_img_path: stringCell(table, i, 'qry_img_path'),
      tgt_text: stringListCell(table, i, 'tgt_text'),
      tgt_img_path: stringListCell(table, i, 'tgt_img_path'),
    };
    if (row.tgt_text.length === 0) throw new DataFormatError(`row ${i}: no candidates`, { file, field: 'tgt_text' });
    if (row.tgt_img_path.length !== 0 && row.tgt_img_path.length !== row.tgt_text.length) {
      throw new DataFormatError(`row ${i}: ${row.tgt_img_path.length} image paths for ${row.tgt_text.length} candidates`, { file, field: 'tgt_img_path' });
    }
    return row;
  });
  const images = new ImageResolver(file, [path.join(root, dataset), root, path.join(root, 'images')], [path.join(root, 'images.zip'), path.join(root, dataset, 'images.zip')]);
  return { dataset, file, rows, images };
}

// ---------------------------------------------------------------------------------------------
// MMEB-train

export interface MmebTrainRow {
  qry: string;
  qry_image_path: string;
  pos_text: string;
  pos_image_path: string;
  /** '' when the subset has no negatives. */
  neg_text: string;
  neg_image_path: string;
}

export interface MmebTrainSubset {
  subset: string;
  files: string[];
  rows: MmebTrainRow[];
  images: ImageResolver;
}

/** The subset folders of an MMEB-train root (those holding a parquet file), sorted. */
export function listMmebTrainSubsets(root: string): Promise<string[]> {
  return subdirsWith(root, (_d, files) => files.some((f) => f.endsWith('.parquet')));
}

export async function readMmebTrainSubset(
  root: string,
  subset: string,
  options: { split?: string; cap?: number | null } = {},
): Promise<MmebTrainSubset> {
  const split = options.split ?? 'original';
  const dir = path.join(root, subset);
  let names: string[];
  try {
    names = await fsp.readdir(dir);
  } catch (e) {
    throw new DataFormatError(`MMEB-train subset "${subset}" not found`, { file: dir, cause: e });
  }
  const shards = names.filter((f) => f.startsWith(`${split}-`) && f.endsWith('.parquet')).sort();
  if (shards.length === 0) {
    const found = names.filter((f) => f.endsWith('.parquet'));
    throw new DataFormatError(`no "${split}" parquet file (found: ${found.join(', ') || 'none'})`, {
      file: dir,
      fix: `expected ${split}-00000-of-00001.parquet; choose the split with data.split`,
    });
  }
  const rows: MmebTrainRow[] = [];
  const files = shards.map((s) => path.join(dir, s));
  for (const file of files) {
    const table = await readParquetTable(file);
    requireColumns(table, MMEB_TRAIN_REQUIRED, 'MMEB-train');
    const hasNeg = MMEB_TRAIN_OPTIONAL.every((c) => table.columns.includes(c));
    for (let i = 0; i < table.rows.length; i++) {
      if (options.cap != null && rows.length >= options.cap) break;
      rows.push({
        qry: stringCell(table, i, 'qry'),
        qry_image_path: stringCell(table, i, 'qry_image_path'),
        pos_text: stringCell(table, i, 'pos_text'),
        pos_image_path: stringCell(table, i, 'pos_image_path'),
        neg_text: hasNeg ? stringCell(table, i, 'neg_text') : '',
        neg_image_path: hasNeg ? stringCell(table, i, 'neg_image_path') : '',
      });
    }
  }
  const images = new ImageResolver(files[0]!, [root, path.join(root, 'images'), dir], [path.join(root, 'images.zip'), path.join(root, 'images_zip', `${subset}.zip`)]);
  return { subset, files, rows, images };
}

// ---------------------------------------------------------------------------------------------
// Text pairs

export interface TextPair {
  sent0: string;
  sent1: string;
  hard_neg?: string;
}

export type TextPairFormat = 'auto' | 'jsonl' | 'csv' | 'parquet';

function formatOf(file: string, format: TextPairFormat): 'jsonl' | 'csv' | 'parquet' {
  if (format !== 'auto') return format;
  const ext = path.extname(file).toLowerCase();
  if (ext === '.jsonl' || ext === '.json') return 'jsonl';
  if (ext === '.csv') return 'csv';
  if (ext === '.parquet') return 'parquet';
  throw new DataFormatError(`cannot tell the format from the extension "${ext}"`, { file, fix: 'use a .jsonl, .csv or .parquet file, or set data.format' });
}

function toPair(obj: Record<string, unknown>, file: string, line: number | undefined, where: string): TextPair {
  const get = (k: string, required: boolean): string | undefined => {
    const v = obj[k];
    if (v === undefined || v === null || v === '') {
      if (required) throw new DataFormatError(`${where}: missing "${k}"`, { file, field: k, ...(line !== undefined ? { line } : {}), fix: 'every row needs sent0 and sent1 (hard_neg is optional)' });
      return undefined;
    }
    if (typeof v !== 'string') throw new DataFormatError(`${where}: "${k}" must be a string, found ${describe(v)}`, { file, field: k, ...(line !== undefined ? { line } : {}) });
    return v;
  };
  const pair: TextPair = { sent0: get('sent0', true)!, sent1: get('sent1', true)! };
  const neg = get('hard_neg', false);
  if (neg !== undefined) pair.hard_neg = neg;
  return pair;
}

/** Parse CSV text (RFC 4180: quoted fields, doubled quotes, newlines inside quotes). */
export function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  let i = text.charCodeAt(0) === 0xfeff ? 1 : 0;
  for (; i < text.length; i++) {
    const ch = text[i]!;
    if (quoted) {
      if (ch === '"') {
        if (text[i + 1] === '"') {
          field += '"';
          i++;
        } else quoted = false;
      } else field += ch;
    } else if (ch === '"' && field === '') quoted = true;
    else if (ch === ',') {
      row.push(field);
      field = '';
    } else if (ch === '\n' || ch === '\r') {
      if (ch === '\r' && text[i + 1] === '\n') i++;
      row.push(field);
      rows.push(row);
      row = [];
      field = '';
    } else field += ch;
  }
  if (field !== '' || row.length > 0) {
    row.push(field);
    rows.push(row);
  }
  return rows.filter((r) => !(r.length === 1 && r[0] === ''));
}

/** Rows of one text file, each through `toRow`; `required` columns must exist in parquet / csv headers. */
async function readTextRowFile<R>(file: string, format: TextPairFormat, required: readonly string[], what: string, toRow: (obj: Record<string, unknown>, file: string, line: number | undefined, where: string) => R): Promise<R[]> {
  const fmt = formatOf(file, format);
  if (fmt === 'parquet') {
    const table = await readParquetTable(file);
    requireColumns(table, [...required], what);
    return table.rows.map((r, i) => toRow(r, file, undefined, `row ${i}`));
  }
  const text = (await readBytes(file, `${what} file`)).toString('utf8');
  if (fmt === 'csv') {
    const [header, ...body] = parseCsv(text);
    if (!header) throw new DataFormatError('empty csv file', { file });
    for (const c of required) {
      if (!header.includes(c)) throw new DataFormatError(`missing column "${c}" (found: ${header.join(', ')})`, { file, field: c, line: 1 });
    }
    return body.map((cells, i) => toRow(Object.fromEntries(header.map((h, k) => [h, cells[k] ?? ''])), file, undefined, `row ${i + 1}`));
  }
  const out: R[] = [];
  const lines = text.split('\n');
  lines.forEach((raw, i) => {
    const line = raw.trim();
    if (line === '') return;
    let obj: unknown;
    try {
      obj = JSON.parse(line);
    } catch (e) {
      throw new DataFormatError(`invalid JSON: ${(e as Error).message}`, { file, line: i + 1, cause: e });
    }
    if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) throw new DataFormatError('expected a JSON object per line', { file, line: i + 1 });
    out.push(toRow(obj as Record<string, unknown>, file, i + 1, `line ${i + 1}`));
  });
  return out;
}

/** A row reduced to the named text columns (absent or empty cells left out; non-strings refused). */
function textColumnsOf(columns: readonly string[]) {
  return (obj: Record<string, unknown>, file: string, line: number | undefined, where: string): TextRow => {
    const row: TextRow = {};
    for (const c of columns) {
      const v = obj[c];
      if (v === undefined || v === null || v === '') continue;
      if (typeof v !== 'string') throw new DataFormatError(`${where}: "${c}" must be a string, found ${describe(v)}`, { file, field: c, ...(line !== undefined ? { line } : {}) });
      row[c] = v;
    }
    return row;
  };
}

/** A row's texts by column name. */
export type TextRow = Record<string, string>;

async function readRowsOf<R>(file: string, format: TextPairFormat, read: (f: string, fmt: TextPairFormat) => Promise<R[]>, what: string): Promise<R[]> {
  let stat;
  try {
    stat = await fsp.stat(file);
  } catch (e) {
    throw new DataFormatError(`${what} file not found`, { file, cause: e });
  }
  if (!stat.isDirectory()) return read(file, format);
  const names = (await fsp.readdir(file)).filter((n) => /\.(jsonl|csv|parquet)$/i.test(n)).sort();
  if (names.length === 0) throw new DataFormatError('no .jsonl, .csv or .parquet files in this folder', { file });
  const out: R[] = [];
  for (const n of names) out.push(...(await read(path.join(file, n), format)));
  return out;
}

/**
 * The named text columns of a .jsonl / .csv / .parquet file (or a folder of them), whatever else the
 * rows hold: e.g. the captions of an image-text file. Every column must exist in a parquet or csv header.
 */
export async function readTextColumns(file: string, columns: readonly string[], options: { format?: TextPairFormat } = {}): Promise<TextRow[]> {
  return readRowsOf(file, options.format ?? 'auto', (f, fmt) => readTextRowFile(f, fmt, columns, 'text', textColumnsOf(columns)), 'text');
}

/** Text pairs from a .jsonl / .csv / .parquet file, or every such file of a directory (sorted by name). */
export async function readTextPairs(file: string, options: { format?: TextPairFormat } = {}): Promise<TextPair[]> {
  return readRowsOf(file, options.format ?? 'auto', (f, fmt) => readTextRowFile(f, fmt, ['sent0', 'sent1'], 'text-pair', toPair), 'text-pair');
}
