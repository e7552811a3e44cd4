/**
 * Hugging Face checkpoint weights as one lazy reader, whatever their layout: a single
 * .safetensors file, a directory with model.safetensors, or a directory sharded by
 * model.safetensors.index.json ({metadata: {total_size}, weight_map: {tensor: shard file}}).
 * And the writer for the same layouts.
 */
import { existsSync, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { UnimeError } from '../errors.js';
import { writeJsonAtomic } from './atomic.js';
import type { TensorArray } from './dtypes.js';
import { parseJson } from './json.js';
import {
  type PreparedTensor,
  type TensorInfo,
  type TensorInputs,
  SafetensorsFile,
  prepareTensors,
  writePreparedSafetensors,
} from './safetensors.js';

export class CheckpointError extends UnimeError {}

export const SINGLE_WEIGHTS = 'model.safetensors';
export const INDEX_FILE = 'model.safetensors.index.json';
const SHARD_RE = /^model-\d{5}-of-\d{5}\.safetensors$/;

export interface Checkpoint {
  /** The path as given. */
  readonly path: string;
  readonly kind: 'single' | 'sharded';
  /** The .safetensors files, in order. */
  readonly files: string[];
  /** The index file, for sharded checkpoints. */
  readonly indexPath: string | undefined;
  /** All tensor names: shard by shard, in file order within each. */
  readonly names: string[];
  /** `__metadata__` of the file (of the first shard, for sharded checkpoints). */
  readonly metadata: Readonly<Record<string, string>> | undefined;
  /** The index's "metadata" object (e.g. total_size), for sharded checkpoints. */
  readonly indexMetadata: Readonly<Record<string, unknown>> | undefined;
  has(name: string): boolean;
  info(name: string): TensorInfo;
  /** Which file holds a tensor. */
  fileOf(name: string): string;
  readBytes(name: string): Promise<Uint8Array>;
  read(name: string): Promise<TensorArray>;
  readFloat32(name: string): Promise<Float32Array>;
  close(): Promise<void>;
}

class CheckpointReader implements Checkpoint {
  readonly names: string[];
  private closed = false;

  constructor(
    readonly path: string,
    readonly kind: 'single' | 'sharded',
    private readonly shards: SafetensorsFile[],
    private readonly owner: ReadonlyMap<string, SafetensorsFile>,
    readonly indexPath: string | undefined,
    readonly indexMetadata: Readonly<Record<string, unknown>> | undefined,
  ) {
    this.names = [...owner.keys()];
  }

  get files(): string[] {
    return this.shards.map((s) => s.path);
  }

  get metadata(): Readonly<Record<string, string>> | undefined {
    return this.shards[0]?.metadata;
  }

  has(name: string): boolean {
    return this.owner.has(name);
  }

  private shard(name: string): SafetensorsFile {
    const s = this.owner.get(name);
    if (s === undefined) {
      throw new CheckpointError(`no tensor named ${JSON.stringify(name)} (the checkpoint has ${this.owner.size})`, {
        file: this.indexPath ?? this.path,
        field: name,
        fix: `list the tensors with \`unime inspect ${this.path}\``,
      });
    }
    if (this.closed) throw new CheckpointError('read after close()', { file: this.path, field: name, fix: 'open the checkpoint again' });
    return s;
  }

  info(name: string): TensorInfo {
    const s = this.owner.get(name);
    if (s === undefined) return this.shard(name).info(name); // throws the CheckpointError
    return s.info(name);
  }

  fileOf(name: string): string {
    const s = this.owner.get(name);
    if (s === undefined) return this.shard(name).path;
    return s.path;
  }

  readBytes(name: string): Promise<Uint8Array> {
    return this.shard(name).readBytes(name);
  }

  read(name: string): Promise<TensorArray> {
    return this.shard(name).read(name);
  }

  readFloat32(name: string): Promise<Float32Array> {
    return this.shard(name).readFloat32(name);
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.shards.map((s) => s.close()));
  }
}

/**
 * Open checkpoint weights: a .safetensors file, a model.safetensors.index.json file, or a
 * directory holding either (model.safetensors first, then the index, like transformers; failing
 * both, a lone *.safetensors or *.safetensors.index.json file, e.g. adapter_model.safetensors).
 * Only headers are read; tensors are read on demand.
 */
export async function openCheckpoint(pathOrDir: string): Promise<Checkpoint> {
  let st;
  try {
    st = await fsp.stat(pathOrDir);
  } catch {
    throw new CheckpointError('no such file or directory', { file: pathOrDir, fix: 'pass a .safetensors file or a checkpoint directory' });
  }
  if (st.isDirectory()) {
    const single = path.join(pathOrDir, SINGLE_WEIGHTS);
    if (existsSync(single)) return openSingle(pathOrDir, single);
    const index = path.join(pathOrDir, INDEX_FILE);
    if (existsSync(index)) return openSharded(pathOrDir, index);
    const entries = await fsp.readdir(pathOrDir);
    const indexes = entries.filter((f) => f.endsWith('.safetensors.index.json'));
    const files = entries.filter((f) => f.endsWith('.safetensors'));
    if (indexes.length === 1) return openSharded(pathOrDir, path.join(pathOrDir, indexes[0]!));
    if (indexes.length === 0 && files.length === 1) return openSingle(pathOrDir, path.join(pathOrDir, files[0]!));
    const others = entries.filter((f) => /\.(bin|pt|pth|ckpt|gguf)$/.test(f));
    throw new CheckpointError(
      indexes.length + files.length > 1
        ? `directory holds several weight files (${[...indexes, ...files].slice(0, 6).join(', ')}) and no ${SINGLE_WEIGHTS} or ${INDEX_FILE}`
        : `directory has no ${SINGLE_WEIGHTS} or ${INDEX_FILE}${others.length ? ` (it has ${others.slice(0, 3).join(', ')}, which unime does not read)` : ''}`,
      {
        file: pathOrDir,
        fix: indexes.length + files.length > 1
          ? 'pass the .safetensors file or index you mean'
          : 'point at a directory with safetensors weights (convert PyTorch .bin checkpoints with the safetensors library)',
      },
    );
  }
  if (pathOrDir.endsWith('.json')) return openSharded(pathOrDir, pathOrDir);
  return openSingle(pathOrDir, pathOrDir);
}

async function openSingle(given: string, file: string): Promise<Checkpoint> {
  const f = await SafetensorsFile.open(file);
  await f.release();
  return new CheckpointReader(given, 'single', [f], new Map(f.names.map((n) => [n, f])), undefined, undefined);
}

async function openSharded(given: string, indexPath: string): Promise<Checkpoint> {
  let text: string;
  try {
    text = await fsp.readFile(indexPath, 'utf8');
  } catch (e) {
    throw new CheckpointError(`could not read the index: ${(e as Error).message}`, { file: indexPath, cause: e });
  }
  const parsed = parseJson(text);
  if (!parsed.ok) {
    const { line, column, problem } = parsed.error;
    throw new CheckpointError(`index is not valid JSON: ${problem}`, { file: indexPath, line, column, fix: 'repair or re-download the index file' });
  }
  const idx = parsed.value;
  const bad = (problem: string, field?: string, fix = 're-download the checkpoint or regenerate its index'): never => {
    throw new CheckpointError(problem, { file: indexPath, field, fix });
  };
  if (typeof idx !== 'object' || idx === null || Array.isArray(idx)) return bad('index must be a JSON object with "weight_map"');
  const rec = idx as Record<string, unknown>;
  const wm = rec.weight_map;
  if (typeof wm !== 'object' || wm === null || Array.isArray(wm)) return bad('"weight_map" must be an object mapping tensor names to shard files', 'weight_map');
  const meta = rec.metadata;
  if (meta !== undefined && meta !== null && (typeof meta !== 'object' || Array.isArray(meta))) return bad('"metadata" must be an object', 'metadata');

  const dir = path.dirname(indexPath);
  // shard file name -> tensors mapped to it, in index order
  const byShard = new Map<string, string[]>();
  for (const [tensor, shard] of Object.entries(wm as Record<string, unknown>)) {
    const field = `weight_map.${tensor}`;
    if (typeof shard !== 'string' || shard === '') return bad(`shard file must be a non-empty string, got ${JSON.stringify(shard)}`, field);
    const norm = path.normalize(shard);
    if (path.isAbsolute(shard) || norm === '..' || norm.startsWith('..' + path.sep) || norm.startsWith('../')) {
      return bad(`shard file ${JSON.stringify(shard)} points outside the checkpoint directory`, field, 'shard paths must be relative to the index file');
    }
    const list = byShard.get(shard);
    if (list) list.push(tensor);
    else byShard.set(shard, [tensor]);
  }

  const shardNames = [...byShard.keys()].sort();
  const opened: SafetensorsFile[] = [];
  const owner = new Map<string, SafetensorsFile>();
  try {
    for (const shard of shardNames) {
      const tensors = byShard.get(shard)!;
      const file = path.join(dir, shard);
      if (!existsSync(file)) {
        bad(`shard ${shard} (holding ${JSON.stringify(tensors[0])}${tensors.length > 1 ? ` and ${tensors.length - 1} more` : ''}) does not exist`, `weight_map.${tensors[0]}`, `download ${file}, or regenerate the index if the checkpoint was re-sharded`);
      }
      const f = await SafetensorsFile.open(file);
      opened.push(f);
      await f.release();
      for (const t of tensors) {
        if (!f.has(t)) {
          bad(`tensor is mapped to ${shard} but that shard has no such tensor`, `weight_map.${t}`, 'the index and the shards disagree: re-download the checkpoint or regenerate its index');
        }
      }
    }
    // Names shard by shard in file order; tensors a shard holds but the index does not map are ignored, as transformers does.
    opened.forEach((f, i) => {
      const mapped = new Set(byShard.get(shardNames[i]!));
      for (const n of f.names) if (mapped.has(n)) owner.set(n, f);
    });
  } catch (e) {
    await Promise.all(opened.map((f) => f.close().catch(() => {})));
    throw e;
  }
  return new CheckpointReader(given, 'sharded', opened, owner, indexPath, (meta ?? undefined) as Record<string, unknown> | undefined);
}

// ---------------------------------------------------------------------------------------------
// Writing

export interface WriteCheckpointOptions {
  /** Largest shard, in bytes of tensor data (default 5 GB, like transformers). */
  maxShardBytes?: number;
  /** `__metadata__` written into every file (e.g. {format: 'pt'}). */
  metadata?: Readonly<Record<string, string>>;
  /** Extra fields for the index's "metadata", besides total_size. */
  indexMetadata?: Readonly<Record<string, unknown>>;
}

export interface WrittenCheckpoint {
  /** The .safetensors files written, in order. */
  files: string[];
  /** The index file, when sharded. */
  indexPath: string | undefined;
  /** Bytes of tensor data (the index's total_size). */
  totalSize: number;
}

export const DEFAULT_MAX_SHARD_BYTES = 5_000_000_000;

/**
 * Split tensors into shards of at most `maxBytes` of data each, greedily in the given order; a
 * tensor larger than the limit gets a shard of its own.
 */
export function planShards(tensors: PreparedTensor[], maxBytes: number): PreparedTensor[][] {
  const shards: PreparedTensor[][] = [];
  let current: PreparedTensor[] = [];
  let size = 0;
  for (const t of tensors) {
    const n = t.bytes.byteLength;
    if (current.length > 0 && size + n > maxBytes) {
      shards.push(current);
      current = [];
      size = 0;
    }
    current.push(t);
    size += n;
  }
  if (current.length > 0 || shards.length === 0) shards.push(current);
  return shards;
}

export function shardFileName(i: number, count: number): string {
  return `model-${String(i + 1).padStart(5, '0')}-of-${String(count).padStart(5, '0')}.safetensors`;
}

/**
 * Write checkpoint weights into `dir`: model.safetensors when everything fits in one shard,
 * otherwise model-0000i-of-0000N.safetensors plus model.safetensors.index.json. Each file is
 * written atomically and the index last, so a reader never sees an index naming missing shards;
 * weight files of an earlier save that the new layout does not use are removed afterwards.
 */
export async function writeShardedSafetensors(dir: string, tensors: TensorInputs, options: WriteCheckpointOptions = {}): Promise<WrittenCheckpoint> {
  const maxBytes = options.maxShardBytes ?? DEFAULT_MAX_SHARD_BYTES;
  if (!(typeof maxBytes === 'number' && maxBytes > 0)) {
    throw new CheckpointError(`maxShardBytes must be a positive number, got ${maxBytes}`, { file: dir, fix: 'pass e.g. 5e9 for 5 GB shards' });
  }
  const prepared = prepareTensors(tensors, dir);
  const totalSize = prepared.reduce((s, t) => s + t.bytes.byteLength, 0);
  const shards = planShards(prepared, maxBytes);
  await fsp.mkdir(dir, { recursive: true });
  const written: string[] = [];
  let indexPath: string | undefined;

  if (shards.length === 1) {
    const file = path.join(dir, SINGLE_WEIGHTS);
    await writePreparedSafetensors(file, shards[0]!, withMetadata(options));
    written.push(file);
  } else {
    const weightMap: [string, string][] = [];
    for (let i = 0; i < shards.length; i++) {
      const name = shardFileName(i, shards.length);
      const file = path.join(dir, name);
      await writePreparedSafetensors(file, shards[i]!, withMetadata(options));
      written.push(file);
      for (const t of shards[i]!) weightMap.push([t.name, name]);
    }
    weightMap.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    indexPath = path.join(dir, INDEX_FILE);
    await writeJsonAtomic(indexPath, {
      metadata: { ...(options.indexMetadata ?? {}), total_size: totalSize },
      weight_map: Object.fromEntries(weightMap),
    });
  }

  // Remove weight files of an earlier save in a different layout.
  const keep = new Set(written.map((f) => path.basename(f)));
  if (indexPath) keep.add(INDEX_FILE);
  for (const f of await fsp.readdir(dir)) {
    if (keep.has(f)) continue;
    if (f === SINGLE_WEIGHTS || f === INDEX_FILE || SHARD_RE.test(f)) await fsp.rm(path.join(dir, f), { force: true });
  }
  return { files: written, indexPath, totalSize };
}

function withMetadata(o: WriteCheckpointOptions): { metadata?: Readonly<Record<string, string>> } {
  return o.metadata === undefined ? {} : { metadata: o.metadata };
}
