/**
 * An on-disk cache of embeddings, so that an interrupted evaluation resumes where it stopped and an
 * input met in several datasets (MSCOCO_t2i and MSCOCO_i2t share images) is embedded once.
 *
 * Keys:
 * - the model: the checkpoint folder (path, and name + size + mtime of each of its files), the
 *   content hash of every adapter file in merge order, and the embedding settings (max length,
 *   image token, image size, pooling). Each model gets its own sub-folder `<cache>/<model key>/`,
 *   with identity.json saying what the key stands for.
 * - the input: sha256 over the text and the sha256 of the image bytes (not the path), so the same
 *   picture under two names is one entry and a changed file is a new one.
 *
 * Storage: immutable shard files, each written atomically (src/io/atomic.ts) and never modified;
 * new embeddings are buffered and flushed as a new shard every `flushRows` rows or `flushSeconds`
 * seconds, and when the caller flushes (after each dataset, and on errors). A kill loses at most
 * the unflushed buffer. A shard that fails its checks (magic, lengths, sha256 trailer) is reported
 * by file name, renamed to `*.corrupt` and ignored; its rows are embedded again.
 *
 * Shard layout (`shard-<time>-<pid>-<rand>.emb`), little-endian:
 *   "UNIEMB01" | u32 header length | header JSON {version, model, dim, rows} | zero padding to 4 |
 *   rows x 32 key bytes | rows x dim f32 | sha256 of everything before (32 bytes)
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { UnimeError } from '../errors.js';
import { writeBytesAtomic, writeJsonAtomic } from '../io/atomic.js';

const MAGIC = Buffer.from('UNIEMB01', 'ascii');
const KEY_BYTES = 32;
const SHARD_RE = /^shard-.*\.emb$/;
export const IDENTITY_FILE = 'identity.json';

export interface CacheLog {
  warn(msg: string): void;
  info?(msg: string): void;
}

// ---------------------------------------------------------------------------------------------
// Keys

/** What a cached embedding depends on, besides its input. */
export interface ModelIdentity {
  checkpoint: string;
  files: { name: string; size: number; mtime_ms: number }[];
  adapters: { dir: string; sha256: string }[];
  settings: Record<string, unknown>;
}

async function sha256File(file: string): Promise<string> {
  const h = createHash('sha256');
  await new Promise<void>((resolve, reject) => {
    createReadStream(file)
      .on('data', (d) => h.update(d))
      .on('end', () => resolve())
      .on('error', reject);
  });
  return h.digest('hex');
}

async function regularFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await fsp.readdir(dir, { withFileTypes: true })) {
    if (e.name.startsWith('.')) continue;
    // Hub snapshots hold symlinks to blobs: stat follows them.
    const st = await fsp.stat(path.join(dir, e.name)).catch(() => null);
    if (st?.isFile()) out.push(e.name);
  }
  return out.sort();
}

/**
 * The identity of a model as the cache sees it. Checkpoint files are keyed by size and mtime (hashing
 * 15 GB of weights would take minutes); adapters are small and hashed by content, so a retrained
 * adapter written to the same path is a different model.
 */
export async function modelIdentity(checkpointDir: string, adapters: readonly string[], settings: Record<string, unknown>): Promise<ModelIdentity> {
  const dir = path.resolve(checkpointDir);
  const files: ModelIdentity['files'] = [];
  for (const name of await regularFiles(dir)) {
    if (/\.(md|txt)$/i.test(name) || name === '.gitattributes') continue;
    const st = await fsp.stat(path.join(dir, name));
    files.push({ name, size: st.size, mtime_ms: Math.round(st.mtimeMs) });
  }
  const adapterHashes: ModelIdentity['adapters'] = [];
  for (const a of adapters) {
    const adir = path.resolve(a);
    const h = createHash('sha256');
    for (const name of await regularFiles(adir)) {
      if (!/^adapter_/.test(name)) continue; // adapter_config.json, adapter_model.safetensors
      h.update(name + '\0' + (await sha256File(path.join(adir, name))) + '\n');
    }
    adapterHashes.push({ dir: adir, sha256: h.digest('hex') });
  }
  return { checkpoint: dir, files, adapters: adapterHashes, settings };
}

/** A short stable key of an identity (the cache sub-folder name). */
export function modelKey(identity: ModelIdentity): string {
  const { checkpoint, files, settings } = identity;
  // Adapter paths are left out: the same adapter content moved elsewhere is the same model.
  const canonical = JSON.stringify({ checkpoint, files, adapters: identity.adapters.map((a) => a.sha256), settings: sortKeys(settings) });
  return createHash('sha256').update(canonical).digest('hex').slice(0, 24);
}

function sortKeys(o: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.keys(o).sort().map((k) => [k, o[k]]));
}

/** sha256 of image bytes, hex. */
export function imageDigest(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** The cache key of one input: its text and, when it has one, its image's digest. */
export function inputKey(text: string, imageSha256: string | null): string {
  return createHash('sha256')
    .update('unime-embed-input/1\0')
    .update(text, 'utf8')
    .update('\0')
    .update(imageSha256 ?? '-')
    .digest('hex');
}

// ---------------------------------------------------------------------------------------------
// Shards

export function encodeShard(model: string, dim: number, keys: readonly string[], data: Float32Array): Buffer {
  if (data.length !== keys.length * dim) throw new Error(`encodeShard: ${data.length} values for ${keys.length} rows of ${dim}`);
  const header = Buffer.from(JSON.stringify({ version: 1, model, dim, rows: keys.length }), 'utf8');
  const headStart = MAGIC.length + 4;
  const pad = (4 - ((headStart + header.length) % 4)) % 4;
  const keysStart = headStart + header.length + pad;
  const dataStart = keysStart + keys.length * KEY_BYTES;
  const end = dataStart + data.length * 4;
  const buf = Buffer.alloc(end + 32);
  MAGIC.copy(buf, 0);
  buf.writeUInt32LE(header.length, MAGIC.length);
  header.copy(buf, headStart);
  keys.forEach((k, i) => {
    if (!/^[0-9a-f]{64}$/.test(k)) throw new Error(`encodeShard: key ${i} is not a sha256 hex digest`);
    buf.write(k, keysStart + i * KEY_BYTES, 'hex');
  });
  const le = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  for (let i = 0; i < data.length; i++) le.setFloat32(dataStart + i * 4, data[i]!, true);
  createHash('sha256').update(buf.subarray(0, end)).digest().copy(buf, end);
  return buf;
}

export interface DecodedShard {
  model: string;
  dim: number;
  keys: string[];
  data: Float32Array;
}

/** Decode and verify a shard; throws a plain Error saying what is wrong. */
export function decodeShard(buf: Buffer): DecodedShard {
  const headStart = MAGIC.length + 4;
  if (buf.length < headStart + 32 || !buf.subarray(0, MAGIC.length).equals(MAGIC)) throw new Error('not a cache shard (bad magic or too short)');
  const end = buf.length - 32;
  const digest = createHash('sha256').update(buf.subarray(0, end)).digest();
  if (!digest.equals(buf.subarray(end))) throw new Error('checksum mismatch (truncated or damaged)');
  const headerLen = buf.readUInt32LE(MAGIC.length);
  if (headStart + headerLen > end) throw new Error('header length beyond the end');
  const header = JSON.parse(buf.subarray(headStart, headStart + headerLen).toString('utf8')) as { version?: unknown; model?: unknown; dim?: unknown; rows?: unknown };
  const { model, dim, rows } = header;
  if (header.version !== 1 || typeof model !== 'string' || !Number.isInteger(dim) || !Number.isInteger(rows) || (dim as number) < 1 || (rows as number) < 0) {
    throw new Error('bad header');
  }
  const pad = (4 - ((headStart + headerLen) % 4)) % 4;
  const keysStart = headStart + headerLen + pad;
  const dataStart = keysStart + (rows as number) * KEY_BYTES;
  if (dataStart + (rows as number) * (dim as number) * 4 !== end) throw new Error('size does not match the header');
  const keys: string[] = [];
  for (let i = 0; i < (rows as number); i++) keys.push(buf.toString('hex', keysStart + i * KEY_BYTES, keysStart + (i + 1) * KEY_BYTES));
  const n = (rows as number) * (dim as number);
  const data = new Float32Array(n);
  const le = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  for (let i = 0; i < n; i++) data[i] = le.getFloat32(dataStart + i * 4, true);
  return { model, dim: dim as number, keys, data };
}

// ---------------------------------------------------------------------------------------------
// The cache

export interface EmbeddingCacheOptions {
  log?: CacheLog;
  /** Flush a new shard once this many rows wait (default 2048). */
  flushRows?: number;
  /** ... or once the oldest waiting row is this old (default 120 s). */
  flushSeconds?: number;
  /** Merge the shards into one when opening finds more than this many (default 64). */
  compactAbove?: number;
}

export interface CacheStats {
  /** Entries known (on disk and waiting). */
  entries: number;
  /** Shards read at open. */
  shards: number;
  /** Shard files found corrupt at open (renamed to *.corrupt). */
  corrupt: string[];
  hits: number;
  misses: number;
  /** Rows written to disk by this process. */
  written: number;
}

export class EmbeddingCache {
  private readonly map = new Map<string, Float32Array>();
  private pendingKeys: string[] = [];
  private pendingRows: Float32Array[] = [];
  private pendingSince = 0;
  private _dim: number | null = null;
  readonly stats: CacheStats = { entries: 0, shards: 0, corrupt: [], hits: 0, misses: 0, written: 0 };

  private constructor(
    /** The model's folder inside the cache, or null for a cache held in memory only. */
    readonly dir: string | null,
    readonly model: string,
    private readonly options: EmbeddingCacheOptions,
  ) {}

  /** A cache that lives only as long as this process (`--no-cache`): inputs are still shared across datasets. */
  static inMemory(model = 'memory'): EmbeddingCache {
    return new EmbeddingCache(null, model, {});
  }

  /** Open (or start) the cache of one model under `root`. */
  static async open(root: string, identity: ModelIdentity, options: EmbeddingCacheOptions = {}): Promise<EmbeddingCache> {
    const key = modelKey(identity);
    const dir = path.join(path.resolve(root), key);
    try {
      await fsp.mkdir(dir, { recursive: true });
    } catch (e) {
      throw new UnimeError(`cannot create the embedding cache folder: ${(e as Error).message}`, { file: dir, fix: 'choose a writable cache folder, or run with --no-cache' });
    }
    const cache = new EmbeddingCache(dir, key, options);
    await writeJsonAtomic(path.join(dir, IDENTITY_FILE), { model_key: key, ...identity });
    await cache.load();
    return cache;
  }

  get dim(): number | null {
    return this._dim;
  }

  get size(): number {
    return this.map.size;
  }

  private async load(): Promise<void> {
    const dir = this.dir!;
    const names = (await fsp.readdir(dir)).filter((n) => SHARD_RE.test(n)).sort();
    const good: string[] = [];
    for (const name of names) {
      const file = path.join(dir, name);
      let shard: DecodedShard;
      let bytes: Buffer;
      try {
        bytes = await fsp.readFile(file);
      } catch (e) {
        // Gone meanwhile (another process merged the shards): nothing to read.
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue;
        throw e;
      }
      try {
        shard = decodeShard(bytes);
        if (shard.model !== this.model) throw new Error(`written for model ${shard.model}, not ${this.model}`);
        if (this._dim !== null && shard.dim !== this._dim) throw new Error(`dimension ${shard.dim}, other shards have ${this._dim}`);
      } catch (e) {
        this.stats.corrupt.push(file);
        const aside = `${file}.corrupt`;
        await fsp.rename(file, aside).catch(() => {});
        this.options.log?.warn(`embedding cache: ${file} is unusable (${(e as Error).message}); moved aside to ${path.basename(aside)}; its entries will be embedded again`);
        continue;
      }
      this._dim ??= shard.dim;
      shard.keys.forEach((k, i) => this.map.set(k, shard.data.subarray(i * shard.dim, (i + 1) * shard.dim)));
      good.push(file);
    }
    this.stats.shards = good.length;
    this.stats.entries = this.map.size;
    if (good.length > (this.options.compactAbove ?? 64)) await this.compact(good);
  }

  /** Rewrite many small shards as one (atomically written first, then the old ones removed). */
  private async compact(files: readonly string[]): Promise<void> {
    const keys = [...this.map.keys()];
    const dim = this._dim!;
    const data = new Float32Array(keys.length * dim);
    keys.forEach((k, i) => data.set(this.map.get(k)!, i * dim));
    await writeBytesAtomic(path.join(this.dir!, shardName()), encodeShard(this.model, dim, keys, data));
    for (const f of files) await fsp.rm(f, { force: true });
    this.options.log?.info?.(`embedding cache: merged ${files.length} shards into one (${keys.length} entries)`);
    this.stats.shards = 1;
  }

  /** The cached embedding of a key (counts a hit or a miss). */
  get(key: string): Float32Array | undefined {
    const v = this.map.get(key);
    if (v) this.stats.hits++;
    else this.stats.misses++;
    return v;
  }

  has(key: string): boolean {
    return this.map.has(key);
  }

  /** Add an embedding; it reaches disk at the next flush (automatic once enough rows wait). */
  async put(key: string, vector: Float32Array): Promise<void> {
    if (this._dim === null) this._dim = vector.length;
    else if (vector.length !== this._dim) {
      throw new UnimeError(`an embedding of dimension ${vector.length} does not fit the cache's ${this._dim}`, {
        file: this.dir ?? undefined,
        fix: 'the cache folder holds another model: remove it or run with --no-cache',
      });
    }
    if (this.map.has(key)) return;
    const copy = Float32Array.from(vector);
    this.map.set(key, copy);
    this.stats.entries = this.map.size;
    if (this.dir === null) return;
    if (this.pendingKeys.length === 0) this.pendingSince = performance.now();
    this.pendingKeys.push(key);
    this.pendingRows.push(copy);
    const rows = this.options.flushRows ?? 2048;
    const seconds = this.options.flushSeconds ?? 120;
    if (this.pendingKeys.length >= rows || (performance.now() - this.pendingSince) / 1000 >= seconds) await this.flush();
  }

  /** Write the waiting rows as a new shard. */
  async flush(): Promise<void> {
    if (this.dir === null || this.pendingKeys.length === 0) return;
    const keys = this.pendingKeys;
    const rows = this.pendingRows;
    this.pendingKeys = [];
    this.pendingRows = [];
    const dim = this._dim!;
    const data = new Float32Array(keys.length * dim);
    rows.forEach((r, i) => data.set(r, i * dim));
    await writeBytesAtomic(path.join(this.dir, shardName()), encodeShard(this.model, dim, keys, data));
    this.stats.written += keys.length;
    this.stats.shards++;
  }
}

let shardCounter = 0;
function shardName(): string {
  const t = new Date().toISOString().replace(/[-:.]/g, '').replace('T', '-').replace('Z', '');
  return `shard-${t}-${process.pid}-${(shardCounter++).toString().padStart(4, '0')}-${randomBytes(3).toString('hex')}.emb`;
}
