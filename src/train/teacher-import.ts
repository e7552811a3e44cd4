/**
 * Import a teacher-embedding cache made elsewhere into the teacher-embed stage's own cache format,
 * so unime-distill reads it like a computed one (`readTeacherCache`).
 *
 * Sources:
 *   parquet  LIFT's layout: a `key` column (the text; `text` is accepted too) and an `embedding`
 *            column (list<float>). With `keys` set, the texts come from that file instead: the row's
 *            `id` column (or, without one, its row number) indexes the key list.
 *   npy      a float32 (or float64, converted) [n, d] C-order matrix; the key list (`keys`, or a
 *            `.txt`/`.jsonl`/`.json` file beside it with the same base name) names row i's text.
 * Key lists: `.txt` one text per line; `.jsonl` one JSON string (or object with `key`/`text`) per
 * line; `.json` an array of strings.
 *
 * The imported cache holds exactly the texts asked for (the stage's data), in first-seen order, in
 * shards of a fixed number of rows; rows of the source no text asks for are dropped. Every text must
 * be covered, every row must have the same dimension and only finite values.
 */
import { createHash } from 'node:crypto';
import { existsSync, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { UnimeError } from '../errors.js';
import { readParquetTable } from '../data/mmeb.js';
import { writeJsonAtomic } from '../io/atomic.js';
import { writeSafetensors } from '../io/safetensors.js';
import { EMBEDDINGS_TENSOR, TEACHER_INDEX, teacherShardName, textKey, type TeacherCacheIndex } from './teacher-embed.js';

export const IMPORT_FORMATS = ['auto', 'parquet', 'npy'] as const;
export type TeacherImportFormat = (typeof IMPORT_FORMATS)[number];

export interface TeacherImportSource {
  /** The parquet or .npy file. */
  path: string;
  format: TeacherImportFormat;
  /** Key list (texts, one per row); null = the parquet's key column, or the file beside the .npy. */
  keys: string | null;
  /** L2-normalise every vector. */
  normalize: boolean;
}

export interface ImportTeacherCacheOptions {
  source: TeacherImportSource;
  /** The cache directory to write (created when missing). */
  outDir: string;
  /** Texts the cache must cover, in the order of its rows; null = every key of the source. */
  texts: readonly string[] | null;
  /** Where `texts` came from, for messages (e.g. the stage's data file). */
  textsFrom?: string;
  /** Rows per shard. */
  shardRows: number;
  log?: { info(msg: string): void; warn(msg: string): void };
}

export interface ImportTeacherCacheResult {
  rows: number;
  dim: number;
  shards: number;
  /** Rows in the source. */
  source_rows: number;
  /** Source rows no requested text used. */
  unused_rows: number;
  format: 'parquet' | 'npy';
  seconds: number;
}

/** An external cache in memory: row i of `matrix` is the vector of `keys[i]`. */
interface LoadedSource {
  format: 'parquet' | 'npy';
  keys: string[];
  dim: number;
  matrix: Float32Array;
  /** Where a row's vector lives, for messages. */
  file: string;
  field: string;
  /** Where a row's key lives, for messages. */
  keyFile: string;
  keyField: string;
}

// ---------------------------------------------------------------------------------------------
// .npy

export interface NpyMatrix {
  shape: number[];
  data: Float32Array;
}

/** Read a little-endian float32/float64 C-order .npy (format versions 1, 2, 3); float64 is converted. */
export function decodeNpy(bytes: Uint8Array, file: string): NpyMatrix {
  const bad = (problem: string, field: string) =>
    new UnimeError(problem, { file, field, fix: 'write the matrix with numpy.save(file, array.astype("float32")) (C order)' });
  const magic = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59];
  if (bytes.length < 10 || magic.some((b, i) => bytes[i] !== b)) throw bad('not a .npy file (no \\x93NUMPY magic)', 'magic');
  const major = bytes[6]!;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let headerLen: number;
  let start: number;
  if (major === 1) {
    headerLen = view.getUint16(8, true);
    start = 10;
  } else if (major === 2 || major === 3) {
    if (bytes.length < 12) throw bad('truncated .npy header', 'header');
    headerLen = view.getUint32(8, true);
    start = 12;
  } else {
    throw bad(`unsupported .npy format version ${major}.${bytes[7]} (known: 1, 2, 3)`, 'version');
  }
  if (start + headerLen > bytes.length) throw bad('truncated .npy header', 'header');
  const header = new TextDecoder(major === 3 ? 'utf-8' : 'latin1').decode(bytes.subarray(start, start + headerLen));
  const descr = /['"]descr['"]\s*:\s*['"]([^'"]*)['"]/.exec(header)?.[1];
  if (descr === undefined) throw bad(`no descr in the header ${JSON.stringify(header.trim())}`, 'descr');
  let itemSize: number;
  if (descr === '<f4' || descr === '=f4') itemSize = 4;
  else if (descr === '<f8' || descr === '=f8') itemSize = 8;
  else throw bad(`dtype ${descr} is not supported (expected <f4 float32, or <f8 float64)`, 'descr');
  const fortran = /['"]fortran_order['"]\s*:\s*(True|False)/.exec(header)?.[1];
  if (fortran === undefined) throw bad(`no fortran_order in the header ${JSON.stringify(header.trim())}`, 'fortran_order');
  if (fortran === 'True') throw bad('the matrix is stored in Fortran order', 'fortran_order');
  const shapeText = /['"]shape['"]\s*:\s*\(([^)]*)\)/.exec(header)?.[1];
  if (shapeText === undefined) throw bad(`no shape in the header ${JSON.stringify(header.trim())}`, 'shape');
  const shape = shapeText
    .split(',')
    .map((x) => x.trim())
    .filter((x) => x !== '')
    .map((x) => (/^\d+$/.test(x) ? Number(x) : NaN));
  if (shape.some((x) => !Number.isSafeInteger(x))) throw bad(`unreadable shape (${shapeText})`, 'shape');
  const count = shape.reduce((a, b) => a * b, 1);
  const dataStart = start + headerLen;
  const need = count * itemSize;
  if (bytes.length - dataStart < need) {
    throw bad(`truncated: the header says shape (${shape.join(', ')}) = ${need} bytes, the file holds ${bytes.length - dataStart}`, 'shape');
  }
  const data = new Float32Array(count);
  for (let i = 0; i < count; i++) data[i] = itemSize === 4 ? view.getFloat32(dataStart + 4 * i, true) : view.getFloat64(dataStart + 8 * i, true);
  return { shape, data };
}

export async function readNpy(file: string): Promise<NpyMatrix> {
  let bytes: Uint8Array;
  try {
    bytes = await fsp.readFile(file);
  } catch (e) {
    throw new UnimeError(`cannot read the .npy file: ${(e as Error).message}`, { file, fix: 'check import.path', cause: e });
  }
  return decodeNpy(bytes, file);
}

// ---------------------------------------------------------------------------------------------
// key lists

/** Texts of a key list: .txt (one per line), .jsonl (a string or {key|text} per line), .json (array of strings). */
export async function readKeyList(file: string): Promise<string[]> {
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (e) {
    throw new UnimeError(`cannot read the key list: ${(e as Error).message}`, { file, field: 'import.keys', fix: 'check import.keys', cause: e });
  }
  const ext = path.extname(file).toLowerCase();
  const asKey = (v: unknown, where: string): string => {
    if (typeof v === 'string') return v;
    if (v !== null && typeof v === 'object') {
      const o = v as Record<string, unknown>;
      if (typeof o.key === 'string') return o.key;
      if (typeof o.text === 'string') return o.text;
    }
    throw new UnimeError(`${where}: expected a string (or an object with a "key" or "text" string), got ${JSON.stringify(v)?.slice(0, 80)}`, {
      file,
      field: 'key',
      fix: 'list one text per row',
    });
  };
  if (ext === '.json') {
    let v: unknown;
    try {
      v = JSON.parse(text);
    } catch (e) {
      throw new UnimeError(`not valid JSON: ${(e as Error).message}`, { file, fix: 'a .json key list is an array of strings', cause: e });
    }
    if (!Array.isArray(v)) throw new UnimeError('expected an array of strings', { file, fix: 'a .json key list is an array of strings' });
    return v.map((x, i) => asKey(x, `item ${i}`));
  }
  const lines = text.split(/\r?\n/);
  if (lines.at(-1) === '') lines.pop();
  if (ext === '.jsonl') {
    return lines.map((line, i) => {
      try {
        return asKey(JSON.parse(line), `line ${i + 1}`);
      } catch (e) {
        if (e instanceof UnimeError) throw e;
        throw new UnimeError(`not valid JSON: ${(e as Error).message}`, { file, line: i + 1, fix: 'one JSON string per line', cause: e });
      }
    });
  }
  return lines;
}

/** The key list beside a .npy: same base name, .txt / .jsonl / .json. */
function keyListBeside(file: string): string | null {
  const base = file.slice(0, file.length - path.extname(file).length);
  for (const ext of ['.txt', '.jsonl', '.json']) if (existsSync(base + ext)) return base + ext;
  return null;
}

// ---------------------------------------------------------------------------------------------
// loading a source

function cellText(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (v instanceof Uint8Array) return new TextDecoder().decode(v);
  return null;
}

async function loadParquetSource(src: TeacherImportSource): Promise<LoadedSource> {
  const file = src.path;
  const table = await readParquetTable(file);
  if (!table.columns.includes('embedding')) {
    throw new UnimeError(`no "embedding" column (found: ${table.columns.join(', ') || 'none'})`, {
      file,
      field: 'embedding',
      fix: 'a teacher cache parquet holds a key column and an embedding column (list<float>)',
    });
  }
  let keys: string[];
  let keyFile = file;
  let keyField: string;
  if (src.keys !== null) {
    const list = await readKeyList(src.keys);
    keyFile = src.keys;
    keyField = 'key';
    const hasId = table.columns.includes('id');
    keys = table.rows.map((r, i) => {
      const id = hasId ? Number(r.id as number | bigint) : i;
      if (!Number.isSafeInteger(id) || id < 0 || id >= list.length) {
        throw new UnimeError(`row ${i}: id ${String(r.id)} is outside the key list (${list.length} texts in ${src.keys})`, {
          file,
          field: 'id',
          fix: 'ids are 0-based line numbers of import.keys',
        });
      }
      return list[id]!;
    });
  } else {
    keyField = table.columns.includes('key') ? 'key' : table.columns.includes('text') ? 'text' : '';
    if (keyField === '') {
      throw new UnimeError(`no "key" column (found: ${table.columns.join(', ') || 'none'})`, {
        file,
        field: 'key',
        fix: 'add a key column with the texts, or set import.keys to a key list indexed by an id column',
      });
    }
    keys = table.rows.map((r, i) => {
      const t = cellText(r[keyField]);
      if (t === null) throw new UnimeError(`row ${i}: the key is ${JSON.stringify(r[keyField]) ?? String(r[keyField])}, not a text`, { file, field: keyField, fix: 'every row needs its text' });
      return t;
    });
  }
  const n = table.rows.length;
  if (n === 0) throw new UnimeError('the file holds no rows', { file, field: 'embedding', fix: 'import a non-empty cache' });
  let dim = -1;
  let matrix = new Float32Array(0);
  for (let i = 0; i < n; i++) {
    const v = table.rows[i]!.embedding;
    const isArr = Array.isArray(v) || (ArrayBuffer.isView(v) && !(v instanceof DataView));
    if (!isArr) {
      throw new UnimeError(`row ${i} (key ${JSON.stringify(keys[i]!.slice(0, 80))}): the embedding is not a list of numbers`, { file, field: 'embedding', fix: 'embedding must be list<float>' });
    }
    const arr = v as ArrayLike<number | bigint | null>;
    if (dim < 0) {
      dim = arr.length;
      if (dim === 0) throw new UnimeError(`row 0: empty embedding`, { file, field: 'embedding', fix: 'every row needs its vector' });
      matrix = new Float32Array(n * dim);
    }
    if (arr.length !== dim) {
      throw new UnimeError(`row ${i} (key ${JSON.stringify(keys[i]!.slice(0, 80))}) has ${arr.length} values, row 0 has ${dim}`, {
        file,
        field: 'embedding',
        fix: 'every embedding of one cache must have the same dimension',
      });
    }
    for (let j = 0; j < dim; j++) {
      const x = arr[j];
      matrix[i * dim + j] = x === null || x === undefined ? NaN : Number(x);
    }
  }
  return { format: 'parquet', keys, dim, matrix, file, field: 'embedding', keyFile, keyField };
}

async function loadNpySource(src: TeacherImportSource): Promise<LoadedSource> {
  const file = src.path;
  const keyFile = src.keys ?? keyListBeside(file);
  if (keyFile === null) {
    throw new UnimeError('no key list for the .npy matrix', {
      file,
      field: 'import.keys',
      fix: 'set import.keys to a .txt (one text per line), .jsonl or .json list of the rows\' texts, or put one beside the .npy with the same base name',
    });
  }
  const { shape, data } = await readNpy(file);
  if (shape.length !== 2 || shape[1] === 0) {
    throw new UnimeError(`expected a [rows, dim] matrix, the header says shape (${shape.join(', ')})`, { file, field: 'shape', fix: 'save a 2-d float32 array' });
  }
  const [n, dim] = shape as [number, number];
  const keys = await readKeyList(keyFile);
  if (keys.length !== n) {
    throw new UnimeError(`the key list has ${keys.length} texts, the matrix ${n} rows (${file})`, {
      file: keyFile,
      field: 'import.keys',
      fix: 'list exactly one text per matrix row, in row order (a .txt cannot hold texts with line breaks: use .jsonl)',
    });
  }
  return { format: 'npy', keys, dim, matrix: data, file, field: 'embedding', keyFile, keyField: 'key' };
}

function sourceFormat(src: TeacherImportSource): 'parquet' | 'npy' {
  if (src.format !== 'auto') return src.format;
  const ext = path.extname(src.path).toLowerCase();
  if (ext === '.parquet') return 'parquet';
  if (ext === '.npy') return 'npy';
  throw new UnimeError(`cannot tell the format of "${path.basename(src.path)}" from its extension`, {
    file: src.path,
    field: 'import.format',
    fix: 'name the file *.parquet or *.npy, or set import.format to parquet or npy',
  });
}

// ---------------------------------------------------------------------------------------------

/** Convert an external cache into the teacher-embed cache layout in `outDir`. */
export async function importTeacherCache(options: ImportTeacherCacheOptions): Promise<ImportTeacherCacheResult> {
  const t0 = performance.now();
  const src = { ...options.source, path: path.resolve(options.source.path), keys: options.source.keys === null ? null : path.resolve(options.source.keys) };
  if (!existsSync(src.path)) throw new UnimeError('the cache to import does not exist', { file: src.path, field: 'import.path', fix: 'check the path' });
  const format = sourceFormat(src);
  const loaded = format === 'parquet' ? await loadParquetSource(src) : await loadNpySource(src);
  const { dim, matrix, keys } = loaded;

  // Integrity of every source row: finite values, and a direction to normalise.
  for (let i = 0; i < keys.length; i++) {
    let ss = 0;
    for (let j = 0; j < dim; j++) {
      const x = matrix[i * dim + j]!;
      if (!Number.isFinite(x)) {
        throw new UnimeError(`row ${i} (key ${JSON.stringify(keys[i]!.slice(0, 80))}) holds a non-finite value (${x}) at position ${j}`, {
          file: loaded.file,
          field: loaded.field,
          fix: 'recompute that row; a teacher vector must be finite',
        });
      }
      ss += x * x;
    }
    if (src.normalize && ss === 0) {
      throw new UnimeError(`row ${i} (key ${JSON.stringify(keys[i]!.slice(0, 80))}) is all zeros and cannot be L2-normalised`, {
        file: loaded.file,
        field: loaded.field,
        fix: 'recompute that row, or set import.normalize: false',
      });
    }
  }

  // text -> source row; a repeated text must repeat its vector
  const rowOf = new Map<string, number>();
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i]!;
    const prev = rowOf.get(k);
    if (prev === undefined) {
      rowOf.set(k, i);
      continue;
    }
    for (let j = 0; j < dim; j++) {
      if (matrix[prev * dim + j] !== matrix[i * dim + j]) {
        throw new UnimeError(`rows ${prev} and ${i} have the same key ${JSON.stringify(k.slice(0, 80))} but different vectors`, {
          file: loaded.keyFile,
          field: loaded.keyField,
          fix: 'keep one vector per text',
        });
      }
    }
  }

  const texts = options.texts ?? [...rowOf.keys()];
  if (texts.length === 0) throw new UnimeError('no texts to import', { file: options.textsFrom ?? src.path, fix: 'check the stage data' });
  const missing = texts.filter((t) => !rowOf.has(t));
  if (missing.length > 0) {
    throw new UnimeError(
      `${missing.length} of the ${texts.length} texts${options.textsFrom ? ` of ${options.textsFrom}` : ''} have no vector in the imported cache (e.g. ${JSON.stringify(missing[0]!.slice(0, 80))})`,
      {
        file: loaded.keyFile,
        field: loaded.keyField,
        fix: 'embed the missing texts into the external cache too, or restrict the stage data (data.max_samples, data.text_columns)',
      },
    );
  }

  const shardRows = options.shardRows;
  const nShards = Math.ceil(texts.length / shardRows);
  await fsp.mkdir(options.outDir, { recursive: true });
  const settings = JSON.stringify({ import: src.path, keys: src.keys, format, normalize: src.normalize });
  const shards: { file: string; rows: number }[] = [];
  for (let s = 0; s < nShards; s++) {
    const chunk = texts.slice(s * shardRows, (s + 1) * shardRows);
    const data = new Float32Array(chunk.length * dim);
    const h = createHash('sha256').update(settings);
    chunk.forEach((t, r) => {
      const i = rowOf.get(t)!;
      const v = matrix.subarray(i * dim, (i + 1) * dim);
      let scale = 1;
      if (src.normalize) {
        let ss = 0;
        for (let j = 0; j < dim; j++) ss += v[j]! * v[j]!;
        scale = 1 / Math.sqrt(ss);
      }
      for (let j = 0; j < dim; j++) data[r * dim + j] = v[j]! * scale;
      h.update(textKey(t));
    });
    h.update(new Uint8Array(data.buffer));
    const name = teacherShardName(s);
    await writeSafetensors(path.join(options.outDir, name), { [EMBEDDINGS_TENSOR]: { dtype: 'F32', shape: [chunk.length, dim], data } }, {
      metadata: { fingerprint: h.digest('hex'), format: 'unime-teacher-cache', source: `import:${format}` },
    });
    shards.push({ file: name, rows: chunk.length });
  }
  for (const name of await fsp.readdir(options.outDir)) {
    const m = /^embeddings-(\d{5})\.safetensors$/.exec(name);
    if (m && Number(m[1]) >= nShards) await fsp.rm(path.join(options.outDir, name), { force: true });
  }
  const index: TeacherCacheIndex & { source: { path: string; format: string; keys: string | null } } = {
    version: 1,
    model: `import:${src.path}`,
    dim,
    rows: texts.length,
    pooling: 'external',
    normalize: src.normalize,
    instruction: '',
    max_length: 0,
    shard_rows: shardRows,
    shards,
    keys: Object.fromEntries(texts.map((t, r) => [textKey(t), r])),
    source: { path: src.path, format, keys: loaded.keyFile === src.path ? null : loaded.keyFile },
  };
  await writeJsonAtomic(path.join(options.outDir, TEACHER_INDEX), index);
  const unused = rowOf.size - new Set(texts).size;
  const seconds = (performance.now() - t0) / 1000;
  options.log?.info(
    `teacher-embed: imported ${texts.length} vectors (dim ${dim}) from ${src.path}${unused > 0 ? `; ${unused} source rows not used by the data` : ''}`,
  );
  return { rows: texts.length, dim, shards: nShards, source_rows: keys.length, unused_rows: unused, format, seconds };
}
