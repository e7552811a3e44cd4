/**
 * Our own reader and writer for the safetensors format:
 *
 *   [8 bytes: little-endian u64 N][N bytes: UTF-8 JSON header][data section]
 *
 * The header maps each tensor name to {dtype, shape, data_offsets: [begin, end]} (offsets relative
 * to the start of the data section) and may hold "__metadata__": {string: string}.
 *
 * The reader parses the header only and reads each tensor with a positioned read, so a checkpoint
 * of many gigabytes is never read whole. It validates the header as strictly as the reference
 * implementation (huggingface/safetensors): tensors must tile the data section exactly, with no
 * holes, overlaps or trailing bytes, so a truncated or corrupted file is refused up front.
 *
 * The writer produces the same bytes as the Python library's `save_file`: tensors sorted by dtype
 * (in the library's dtype order, widest first) then by name, the compact JSON header with
 * "__metadata__" first, padded with spaces to a multiple of 8 bytes.
 *
 * Byte order: the format is little-endian and so are our hosts (see dtypes.ts).
 */
import { promises as fsp } from 'node:fs';
import { UnimeError, type UnimeErrorDetails } from '../errors.js';
import { writeFileAtomic } from './atomic.js';
import {
  type Dtype,
  type TensorArray,
  DTYPES,
  KNOWN_UNSUPPORTED_DTYPES,
  SUPPORTED_DTYPES,
  assertLittleEndianHost,
  isDtype,
  toFloat32,
  typedArrayFromBytes,
} from './dtypes.js';
import { parseJson, previewJson, topLevelKeys } from './json.js';

export class SafetensorsError extends UnimeError {}

/** The reference implementation refuses headers over 100 MB; so do we, on read and on write. */
export const MAX_HEADER_BYTES = 100_000_000;

export interface TensorInfo {
  readonly dtype: Dtype;
  readonly shape: readonly number[];
  readonly numel: number;
  readonly byteLength: number;
  /** [begin, end) relative to the start of the data section. */
  readonly dataOffsets: readonly [number, number];
}

export interface SafetensorsHeader {
  /** N, the header's length in bytes as stored in the file's first 8 bytes. */
  readonly headerLength: number;
  /** Absolute file offset of the data section (8 + N). */
  readonly dataStart: number;
  readonly dataLength: number;
  /** Tensors in file order (by data offset). */
  readonly tensors: ReadonlyMap<string, TensorInfo>;
  readonly metadata: Readonly<Record<string, string>> | undefined;
}

const REDOWNLOAD = 're-download or re-save the file; if it came from a tool other than safetensors, that tool wrote an invalid file';
const NOT_SAFETENSORS = 'pass a .safetensors file (convert .bin/.pt checkpoints with the safetensors library first)';

function fail(label: string, problem: string, more: Omit<UnimeErrorDetails, 'file'> = {}): never {
  throw new SafetensorsError(problem, { file: label, fix: REDOWNLOAD, ...more });
}

const preview = (v: unknown): string => previewJson(v);

function guessFormat(prefix: Uint8Array): string {
  const b0 = prefix[0], b1 = prefix[1];
  if (b0 === 0x50 && b1 === 0x4b) return ' (it starts like a zip archive, e.g. a PyTorch .bin/.pt file)';
  if (b0 === 0x80 && b1 !== undefined && b1 <= 5) return ' (it starts like a Python pickle)';
  if (b0 === 0x7b || b0 === 0x5b) return ' (it starts like a JSON file)';
  if (b0 === 0x3c) return ' (it starts like HTML/XML, perhaps an error page saved instead of the file)';
  if (b0 === 0x76 && b1 === 0x65) return ' (it looks like a Git LFS pointer; run `git lfs pull`)';
  return '';
}

/**
 * Validate the 8-byte length prefix and return N, the header length. `prefix` holds at least the
 * first 8 bytes of the file when the file has them.
 */
export function readHeaderLength(prefix: Uint8Array, fileSize: number, label: string): number {
  if (fileSize < 8 || prefix.length < 8) {
    fail(label, `file is ${Math.min(fileSize, prefix.length)} bytes, too short for the 8-byte header length that starts every safetensors file`, {
      fix: `${NOT_SAFETENSORS}; if it should be one, it is truncated: ${REDOWNLOAD}`,
    });
  }
  const lo = (prefix[0]! | (prefix[1]! << 8) | (prefix[2]! << 16) | (prefix[3]! << 24)) >>> 0;
  const hi = (prefix[4]! | (prefix[5]! << 8) | (prefix[6]! << 16) | (prefix[7]! << 24)) >>> 0;
  const n = hi * 2 ** 32 + lo; // may be inexact above 2^53, but then it is over the limit anyway
  if (n > MAX_HEADER_BYTES) {
    fail(label, `header length ${hi > 0x1fffff ? 'above 2^53' : n} (from the first 8 bytes) is over the ${MAX_HEADER_BYTES}-byte limit: this is not a safetensors file${guessFormat(prefix)} or it is corrupted`, {
      fix: NOT_SAFETENSORS,
    });
  }
  if (n > fileSize - 8) {
    fail(label, `header length ${n} (from the first 8 bytes) runs past the end of the file (${fileSize} bytes): the file is truncated or not a safetensors file${guessFormat(prefix)}`);
  }
  return n;
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function isSafeNonNegInt(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function unsupportedDtypeMessage(d: unknown): { problem: string; fix: string } {
  const known = typeof d === 'string' && KNOWN_UNSUPPORTED_DTYPES.includes(d);
  return {
    problem: known
      ? `dtype ${d} is a valid safetensors dtype that unime does not support`
      : `unknown dtype ${preview(d)}`,
    fix: `supported dtypes are ${SUPPORTED_DTYPES.join(', ')}${known ? '; convert the checkpoint to bf16/f16/f32 first' : ''}`,
  };
}

/** Check a shape and return its element count, or a problem. Overflow-safe. */
function checkShape(shape: unknown): { numel: bigint } | { problem: string } {
  if (!Array.isArray(shape)) return { problem: `"shape" must be an array of non-negative integers, got ${preview(shape)}` };
  let numel = 1n;
  for (let i = 0; i < shape.length; i++) {
    const d: unknown = shape[i];
    if (!isSafeNonNegInt(d)) return { problem: `"shape"[${i}] must be a non-negative integer, got ${preview(d)}` };
    numel *= BigInt(d);
  }
  return { numel };
}

function validateMetadata(meta: unknown, label: string): Record<string, string> | undefined {
  if (meta === null) return undefined;
  if (!isPlainObject(meta)) {
    fail(label, `"__metadata__" must be an object of string values, got ${preview(meta)}`, {
      field: '__metadata__',
      fix: '"__metadata__" is reserved for the string-to-string metadata map and cannot name a tensor; re-save the file',
    });
  }
  const out: [string, string][] = [];
  for (const [k, v] of Object.entries(meta)) {
    if (typeof v !== 'string') {
      fail(label, `metadata value for ${JSON.stringify(k)} must be a string, got ${preview(v)}`, {
        field: `__metadata__.${k}`,
        fix: 'safetensors metadata holds only strings; store numbers and objects as JSON text',
      });
    }
    out.push([k, v]);
  }
  return Object.freeze(Object.fromEntries(out));
}

/**
 * Parse and validate a safetensors header. `bytes` starts at the beginning of the file and holds
 * at least the 8 + N header bytes (it may hold more, e.g. the whole file); `fileSize` is the
 * size of the whole file; `label` names the file in error messages.
 */
export function parseHeader(bytes: Uint8Array, fileSize: number, label: string): SafetensorsHeader {
  const n = readHeaderLength(bytes, fileSize, label);
  if (bytes.length < 8 + n) fail(label, `only ${bytes.length} of the ${8 + n} header bytes were given to the parser`);
  let text: string;
  try {
    text = utf8.decode(bytes.subarray(8, 8 + n));
  } catch {
    fail(label, `header (${n} bytes after the length prefix) is not valid UTF-8: this is not a safetensors file${guessFormat(bytes)} or it is corrupted`, {
      fix: NOT_SAFETENSORS,
    });
  }
  const parsed = parseJson(text);
  if (!parsed.ok) {
    fail(label, `header is not valid JSON at character ${parsed.error.offset + 1} of the header: ${parsed.error.problem}`);
  }
  const root = parsed.value;
  if (!isPlainObject(root)) fail(label, `header must be a JSON object, got ${Array.isArray(root) ? 'an array' : preview(root)}`);

  const keys = topLevelKeys(text);
  const entries = Object.entries(root);
  if (keys.length !== entries.length) {
    const seen = new Set<string>();
    const dup = keys.find((k) => (seen.has(k) ? true : (seen.add(k), false)));
    fail(label, `header names ${JSON.stringify(dup)} more than once`, { field: dup });
  }

  const dataStart = 8 + n;
  const dataLength = fileSize - dataStart;
  let metadata: Record<string, string> | undefined;
  const found: { name: string; info: TensorInfo }[] = [];

  for (const [name, entry] of entries) {
    if (name === '__metadata__') {
      metadata = validateMetadata(entry, label);
      continue;
    }
    const at = { field: name };
    if (!isPlainObject(entry)) fail(label, `tensor entry must be an object with dtype, shape and data_offsets, got ${preview(entry)}`, at);
    for (const k of ['dtype', 'shape', 'data_offsets']) {
      if (!(k in entry)) fail(label, `tensor entry has no "${k}" (it needs dtype, shape and data_offsets)`, at);
    }
    const dtype = entry.dtype;
    if (typeof dtype !== 'string') fail(label, `"dtype" must be a string, got ${preview(dtype)}`, at);
    if (!isDtype(dtype)) {
      const m = unsupportedDtypeMessage(dtype);
      throw new SafetensorsError(m.problem, { file: label, field: name, fix: m.fix });
    }
    const shape = checkShape(entry.shape);
    if ('problem' in shape) fail(label, shape.problem, at);
    const offs = entry.data_offsets;
    if (!Array.isArray(offs) || offs.length !== 2 || !isSafeNonNegInt(offs[0]) || !isSafeNonNegInt(offs[1])) {
      fail(label, `"data_offsets" must be [begin, end] with non-negative integers, got ${preview(offs)}`, at);
    }
    const begin = offs[0] as number;
    const end = offs[1] as number;
    if (begin > end) fail(label, `"data_offsets" [${begin}, ${end}] ends before it begins`, at);
    const expected = shape.numel * BigInt(DTYPES[dtype].itemSize);
    if (BigInt(end - begin) !== expected) {
      fail(label, `shape ${preview(entry.shape)} of ${dtype} needs ${expected} bytes but data_offsets [${begin}, ${end}] span ${end - begin}`, at);
    }
    if (end > dataLength) {
      fail(label, `data ends at byte ${end} of the data section, but the file has only ${dataLength} bytes of data: the file is truncated`, at);
    }
    const numel = Number(shape.numel);
    found.push({
      name,
      info: Object.freeze({
        dtype,
        shape: Object.freeze((entry.shape as number[]).slice()),
        numel,
        byteLength: end - begin,
        dataOffsets: Object.freeze([begin, end] as [number, number]),
      }),
    });
  }

  // The tensors must tile the data section exactly: sorted by offsets, each starts where the
  // previous one ended, the first at 0 and the last at the end of the file.
  found.sort((a, b) => a.info.dataOffsets[0] - b.info.dataOffsets[0] || a.info.dataOffsets[1] - b.info.dataOffsets[1]);
  let cursor = 0;
  let prev: string | undefined;
  for (const { name, info } of found) {
    const [begin, end] = info.dataOffsets;
    if (begin > cursor) {
      fail(label, `bytes ${cursor}..${begin} of the data section belong to no tensor (a hole before this tensor${prev === undefined ? '' : `, after ${JSON.stringify(prev)}`})`, { field: name });
    }
    if (begin < cursor) {
      fail(label, `data_offsets [${begin}, ${end}] overlap tensor ${JSON.stringify(prev)}, which ends at ${cursor}`, { field: name });
    }
    cursor = end;
    prev = name;
  }
  if (cursor !== dataLength) {
    fail(label, `the data section is ${dataLength} bytes but its tensors cover only ${cursor}: ${dataLength - cursor} trailing bytes belong to no tensor`);
  }
  return Object.freeze({
    headerLength: n,
    dataStart,
    dataLength,
    tensors: new Map(found.map((t) => [t.name, t.info])),
    metadata,
  });
}

// ---------------------------------------------------------------------------------------------
// Reading

/** Largest single read/write call; Node refuses lengths of 2 GiB and more. */
const IO_CHUNK = 1 << 30;

function ioError(label: string, what: string, e: unknown, field?: string): SafetensorsError {
  const err = e as NodeJS.ErrnoException;
  const code = err?.code;
  if (code === 'ENOENT') return new SafetensorsError('no such file', { file: label, field, fix: 'check the path', cause: e });
  if (code === 'EACCES' || code === 'EPERM') return new SafetensorsError(`permission denied while trying to ${what}`, { file: label, field, fix: 'check the file permissions', cause: e });
  return new SafetensorsError(`could not ${what}: ${err?.message ?? String(e)}`, { file: label, field, cause: e });
}

async function readExactly(handle: fsp.FileHandle, into: Uint8Array, position: number, label: string, field?: string): Promise<void> {
  let done = 0;
  while (done < into.length) {
    const want = Math.min(into.length - done, IO_CHUNK);
    const { bytesRead } = await handle.read(into, done, want, position + done);
    if (bytesRead === 0) {
      throw new SafetensorsError(`file ended after ${position + done} bytes while reading ${into.length} bytes at offset ${position}: it was truncated after it was opened`, {
        file: label,
        field,
        fix: REDOWNLOAD,
      });
    }
    done += bytesRead;
  }
}

/** A lazily read .safetensors file: the header is parsed on open, tensors are read on demand. */
export class SafetensorsFile {
  /** Data bytes read so far by read/readBytes/readFloat32 (for progress reporting). */
  bytesRead = 0;
  private handle: fsp.FileHandle | null;
  private opening: Promise<fsp.FileHandle> | null = null;
  private closed = false;

  private constructor(
    readonly path: string,
    readonly fileSize: number,
    readonly header: SafetensorsHeader,
    handle: fsp.FileHandle,
  ) {
    this.handle = handle;
  }

  /** Open a file and parse its header; the tensor data is not read. */
  static async open(path: string): Promise<SafetensorsFile> {
    assertLittleEndianHost();
    let handle: fsp.FileHandle;
    try {
      handle = await fsp.open(path, 'r');
    } catch (e) {
      throw ioError(path, 'open the file', e);
    }
    try {
      const st = await handle.stat();
      if (!st.isFile()) {
        throw new SafetensorsError('is not a regular file', {
          file: path,
          fix: st.isDirectory() ? 'to open a checkpoint directory use openCheckpoint(), or pass the .safetensors file inside it' : NOT_SAFETENSORS,
        });
      }
      const size = st.size;
      const prefix = new Uint8Array(Math.min(8, size));
      await readExactly(handle, prefix, 0, path);
      const n = readHeaderLength(prefix, size, path);
      const headerBytes = new Uint8Array(8 + n);
      headerBytes.set(prefix);
      await readExactly(handle, headerBytes.subarray(8), 8, path);
      const header = parseHeader(headerBytes, size, path);
      return new SafetensorsFile(path, size, header, handle);
    } catch (e) {
      await handle.close().catch(() => {});
      if (e instanceof UnimeError) throw e;
      throw ioError(path, 'read the header', e);
    }
  }

  /** Tensor names in file order. */
  get names(): string[] {
    return [...this.header.tensors.keys()];
  }

  get metadata(): Readonly<Record<string, string>> | undefined {
    return this.header.metadata;
  }

  has(name: string): boolean {
    return this.header.tensors.has(name);
  }

  info(name: string): TensorInfo {
    const info = this.header.tensors.get(name);
    if (info === undefined) {
      throw new SafetensorsError(`no tensor named ${JSON.stringify(name)} (the file has ${this.header.tensors.size})`, {
        file: this.path,
        field: name,
        fix: `list the tensors with \`unime inspect ${this.path}\``,
      });
    }
    return info;
  }

  /** The tensor's raw little-endian bytes, read with one positioned read. */
  async readBytes(name: string): Promise<Uint8Array> {
    const info = this.info(name);
    if (this.closed) throw new SafetensorsError('read after close()', { file: this.path, field: name, fix: 'open the file again' });
    let out: Uint8Array;
    try {
      out = new Uint8Array(info.byteLength);
    } catch (e) {
      throw new SafetensorsError(`tensor of ${info.byteLength} bytes does not fit in memory`, { file: this.path, field: name, cause: e });
    }
    if (info.byteLength === 0) return out;
    const handle = await this.ensureHandle();
    try {
      await readExactly(handle, out, this.header.dataStart + info.dataOffsets[0], this.path, name);
    } catch (e) {
      if (e instanceof UnimeError) throw e;
      throw ioError(this.path, 'read the tensor', e, name);
    }
    this.bytesRead += info.byteLength;
    return out;
  }

  /** The tensor in its stored dtype: Float32Array, Uint16Array (raw F16/BF16 bits), BigInt64Array, ... */
  async read(name: string): Promise<TensorArray> {
    const info = this.info(name);
    return typedArrayFromBytes(info.dtype, await this.readBytes(name));
  }

  /** The tensor converted to float32 (exact for F16/BF16; see toFloat32 for the others). */
  async readFloat32(name: string): Promise<Float32Array> {
    const info = this.info(name);
    return toFloat32(info.dtype, await this.readBytes(name));
  }

  /** Close the file handle but keep the header; the next read reopens the file. */
  async release(): Promise<void> {
    const h = this.handle;
    this.handle = null;
    if (h) await h.close();
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.release();
  }

  private async ensureHandle(): Promise<fsp.FileHandle> {
    if (this.handle) return this.handle;
    this.opening ??= (async () => {
      let h: fsp.FileHandle;
      try {
        h = await fsp.open(this.path, 'r');
      } catch (e) {
        throw ioError(this.path, 'reopen the file', e);
      }
      const size = (await h.stat()).size;
      if (size !== this.fileSize) {
        await h.close();
        throw new SafetensorsError(`file changed since it was opened (${this.fileSize} bytes then, ${size} now)`, { file: this.path, fix: 'open it again' });
      }
      return h;
    })();
    try {
      const h = await this.opening;
      if (this.closed) {
        await h.close();
        throw new SafetensorsError('read after close()', { file: this.path, fix: 'open the file again' });
      }
      this.handle = h;
      return h;
    } finally {
      this.opening = null;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Writing

export interface TensorInput {
  dtype: Dtype;
  shape: readonly number[];
  /** Little-endian data: the dtype's typed array (Uint16Array bits for F16/BF16) or raw bytes as a Uint8Array. */
  data: ArrayBufferView;
}

export type TensorInputs =
  | Readonly<Record<string, TensorInput>>
  | ReadonlyMap<string, TensorInput>
  | ReadonlyArray<readonly [string, TensorInput]>;

export interface PreparedTensor {
  name: string;
  dtype: Dtype;
  shape: number[];
  bytes: Uint8Array;
}

export interface WriteSafetensorsOptions {
  metadata?: Readonly<Record<string, string>>;
  /** Called after each tensor's bytes are written; throwing aborts the write (the target is untouched). */
  onTensorWritten?: (name: string, index: number, count: number) => void | Promise<void>;
}

function tensorEntries(tensors: TensorInputs): [string, TensorInput][] {
  if (Array.isArray(tensors)) return tensors.map(([k, v]) => [k, v] as [string, TensorInput]);
  if (tensors instanceof Map) return [...(tensors as ReadonlyMap<string, TensorInput>).entries()];
  return Object.entries(tensors as Readonly<Record<string, TensorInput>>);
}

/** Validate tensors to be written; every problem names the tensor. `label` names the target file. */
export function prepareTensors(tensors: TensorInputs, label: string): PreparedTensor[] {
  assertLittleEndianHost();
  const out: PreparedTensor[] = [];
  const seen = new Set<string>();
  for (const [name, t] of tensorEntries(tensors)) {
    const field = String(name);
    function bad(problem: string, fix?: string): never {
      throw new SafetensorsError(problem, { file: label, field, fix: fix ?? 'fix the tensor before saving' });
    }
    if (typeof name !== 'string') bad(`tensor name must be a string, got ${preview(name)}`);
    if (name === '__metadata__') bad('"__metadata__" is reserved for the metadata map and cannot name a tensor', 'rename the tensor');
    if (LONE_SURROGATE.test(name)) bad('tensor name is not valid Unicode (it has a lone surrogate), which other readers refuse', 'rename the tensor');
    if (seen.has(name)) bad('tensor name given twice', 'give every tensor a unique name');
    seen.add(name);
    if (!isPlainObject(t)) bad(`expected {dtype, shape, data}, got ${preview(t)}`);
    if (!isDtype(t.dtype)) {
      const m = unsupportedDtypeMessage(t.dtype);
      bad(m.problem, m.fix);
    }
    const shape = checkShape(t.shape);
    if ('problem' in shape) bad(shape.problem.replace(/"shape"/g, 'shape'));
    const info = DTYPES[t.dtype];
    const data = t.data;
    if (!ArrayBuffer.isView(data)) bad(`data must be a typed array or Uint8Array, got ${preview(data)}`);
    const kind = data.constructor;
    if (!(data instanceof Uint8Array) && kind !== info.array) {
      bad(`${t.dtype} data given as ${kind?.name ?? 'an unknown view'}`, `pass a ${info.array.name} (or its raw little-endian bytes as a Uint8Array)`);
    }
    const expected = shape.numel * BigInt(info.itemSize);
    if (BigInt(data.byteLength) !== expected) {
      bad(`shape [${t.shape.join(', ')}] of ${t.dtype} needs ${expected} bytes but the data has ${data.byteLength}`, 'make the shape and the data agree');
    }
    out.push({ name, dtype: t.dtype, shape: [...t.shape], bytes: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) });
  }
  return out;
}

const utf8enc = new TextEncoder();
// JSON can spell a lone surrogate ("\ud800") but UTF-8 cannot hold one; the Rust reader refuses it.
const LONE_SURROGATE = /\p{Cs}/u;

/** Rust's `str` ordering, which the Python library sorts names with: by UTF-8 bytes. */
export function compareUtf8(a: string, b: string): number {
  if (a === b) return 0;
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/**
 * The Python library's layout order: by the position of the dtype in its `Dtype` enum,
 * descending (U64, I64, F64, F32, U32, I32, BF16, F16, U16, I16, I8, U8, BOOL), then by name.
 */
export function compareForLayout(a: { name: string; dtype: Dtype }, b: { name: string; dtype: Dtype }): number {
  return DTYPES[b.dtype].layoutRank - DTYPES[a.dtype].layoutRank || compareUtf8(a.name, b.name);
}

export interface SafetensorsPlan {
  /** The 8-byte length prefix followed by the padded header. */
  head: Uint8Array;
  /** Tensors in layout order. */
  order: PreparedTensor[];
  /** Total file size. */
  fileSize: number;
}

/** Lay out prepared tensors and build the header bytes exactly as the Python library does. */
export function planSafetensors(tensors: PreparedTensor[], metadata: Readonly<Record<string, string>> | undefined, label: string): SafetensorsPlan {
  const order = [...tensors].sort(compareForLayout);
  const parts: string[] = [];
  if (metadata !== undefined) {
    if (!isPlainObject(metadata)) throw new SafetensorsError(`metadata must be an object of strings, got ${preview(metadata)}`, { file: label, field: '__metadata__' });
    for (const [k, v] of Object.entries(metadata)) {
      if (LONE_SURROGATE.test(k) || (typeof v === 'string' && LONE_SURROGATE.test(v))) {
        throw new SafetensorsError('metadata is not valid Unicode (it has a lone surrogate), which other readers refuse', { file: label, field: `__metadata__.${k}` });
      }
      if (typeof v !== 'string') {
        throw new SafetensorsError(`metadata value must be a string, got ${preview(v)}`, {
          file: label,
          field: `__metadata__.${k}`,
          fix: 'safetensors metadata holds only strings; store numbers and objects as JSON text',
        });
      }
    }
    parts.push(`"__metadata__":${metaJson(metadata)}`);
  }
  let offset = 0;
  for (const t of order) {
    const end = offset + t.bytes.byteLength;
    parts.push(`${JSON.stringify(t.name)}:{"dtype":"${t.dtype}","shape":[${t.shape.join(',')}],"data_offsets":[${offset},${end}]}`);
    offset = end;
  }
  const json = utf8enc.encode(`{${parts.join(',')}}`);
  const n = Math.ceil(json.length / 8) * 8;
  if (n > MAX_HEADER_BYTES) {
    throw new SafetensorsError(`header would be ${n} bytes, over the ${MAX_HEADER_BYTES}-byte limit readers accept`, {
      file: label,
      fix: 'save fewer tensors per file (shard the checkpoint) or shorten the metadata',
    });
  }
  const head = new Uint8Array(8 + n).fill(0x20, 8 + json.length);
  new DataView(head.buffer).setBigUint64(0, BigInt(n), true);
  head.set(json, 8);
  return { head, order, fileSize: 8 + n + offset };
}

// Built by hand rather than JSON.stringify(obj): that would move integer-like keys to the front.
function metaJson(m: Readonly<Record<string, string>>): string {
  return `{${Object.entries(m).map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`).join(',')}}`;
}

async function writeAll(handle: fsp.FileHandle, bytes: Uint8Array): Promise<void> {
  let done = 0;
  while (done < bytes.length) {
    const { bytesWritten } = await handle.write(bytes, done, Math.min(bytes.length - done, IO_CHUNK));
    done += bytesWritten;
  }
}

/**
 * Write tensors to a .safetensors file, atomically (temp file + rename) and streaming one tensor
 * at a time. Byte-identical to `safetensors.numpy.save_file` for the same tensors and metadata
 * (for metadata with more than one key the Python library's order is that of a Rust HashMap,
 * i.e. arbitrary; ours is the object's own order).
 */
export async function writeSafetensors(path: string, tensors: TensorInputs, options: WriteSafetensorsOptions = {}): Promise<{ fileSize: number }> {
  return writePreparedSafetensors(path, prepareTensors(tensors, path), options);
}

/** `writeSafetensors` for tensors already checked by `prepareTensors`. */
export async function writePreparedSafetensors(path: string, prepared: PreparedTensor[], options: WriteSafetensorsOptions = {}): Promise<{ fileSize: number }> {
  const plan = planSafetensors(prepared, options.metadata, path);
  try {
    await writeFileAtomic(path, async (h) => {
      await writeAll(h, plan.head);
      for (let i = 0; i < plan.order.length; i++) {
        const t = plan.order[i]!;
        await writeAll(h, t.bytes);
        await options.onTensorWritten?.(t.name, i, plan.order.length);
      }
    });
  } catch (e) {
    if (e instanceof UnimeError) throw e;
    const err = e as NodeJS.ErrnoException;
    if (typeof err?.code !== 'string') throw e; // not an I/O error: e.g. the caller's own from onTensorWritten
    throw new SafetensorsError(`could not write the file: ${err.message}`, { file: path, cause: e, fix: 'check the disk space and permissions of the target directory' });
  }
  return { fileSize: plan.fileSize };
}
