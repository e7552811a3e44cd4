/**
 * The final export: a base checkpoint with its LoRA adapter chain merged into the language model,
 * written as a complete Hugging Face checkpoint that any loader (the zoo, transformers) reads with no
 * adapter at all. Every tensor keeps its original key and shard; only adapted Linear weights change
 * (W <- W + scaling * B A, merged by the zoo exactly as `MultimodalEmbedder.load(..., {adapters})`
 * does). Unadapted tensors are streamed from the source shard by shard, byte for byte unless a
 * dtype is asked for. The result appears at once: it is built in a temporary sibling directory and
 * renamed into place.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, existsSync, readFileSync, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { UnimeError } from '../errors.js';
import { INDEX_FILE, SINGLE_WEIGHTS, openCheckpoint, type Checkpoint } from '../io/checkpoint.js';
import { type Dtype, fromFloat32, isFloatDtype, toFloat32 } from '../io/dtypes.js';
import { type PreparedTensor, prepareTensors, writePreparedSafetensors } from '../io/safetensors.js';
import { writeJsonAtomic } from '../io/atomic.js';
import { resolveModelPath, type ResolveModelOptions } from '../hub/download.js';
import { log } from '../runtime/log.js';
import { loadMultimodalModel } from './mllm/load.js';
import { loadLoraAdapter } from './peft/adapter-io.js';
import { adapterTarget, checkpointWeights } from './mllm/lora-target.js';
import { resolveAdapterChain } from './peft/chain.js';
import { mergeLora } from './peft/lora.js';

export const EXPORT_RECORD = 'unime_export.json';
export const EXPORT_DTYPES = { float32: 'F32', bfloat16: 'BF16', float16: 'F16' } as const;
export type ExportDtype = keyof typeof EXPORT_DTYPES;

export interface ExportOptions {
  /** Adapter directories or training-stage output dirs; each resolves to its chain, merged in order. */
  adapters?: readonly string[];
  /** Convert every floating-point tensor to this dtype (default: keep each tensor's own). */
  dtype?: ExportDtype;
  /** Replace an existing non-empty output directory. */
  force?: boolean;
  hub?: ResolveModelOptions;
}

export interface ExportResult {
  outDir: string;
  baseDir: string;
  /** Adapter directories merged, in order. */
  adapters: string[];
  /** Checkpoint keys whose weights were replaced by merged ones. */
  merged: string[];
  tensors: number;
  /** Weight files written (names relative to outDir). */
  weightFiles: string[];
  /** Other files copied from the source directory. */
  copied: string[];
  totalSize: number;
}

/** Files that hold weights in some format; everything else in a checkpoint dir is copied. */
const WEIGHT_FILE = /(\.safetensors|\.safetensors\.index\.json|\.bin|\.bin\.index\.json|\.pt|\.pth|\.ckpt|\.gguf|\.h5|\.msgpack|\.onnx)$/;

export function unimeVersion(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const p = path.join(dir, 'package.json');
    if (existsSync(p)) {
      try {
        const pkg = JSON.parse(readFileSync(p, 'utf8')) as { name?: string; version?: string };
        if (typeof pkg.version === 'string') return pkg.version;
      } catch {
        // keep looking
      }
    }
    dir = path.dirname(dir);
  }
  return 'unknown';
}

async function sha256File(file: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(file)) h.update(chunk as Buffer);
  return h.digest('hex');
}

async function isNonEmptyDir(dir: string): Promise<boolean> {
  return (await fsp.readdir(dir)).length > 0;
}

/** Refuse an output that would overwrite what the user did not ask to, before any work is done. */
async function checkOutDir(out: string, sources: readonly string[], force: boolean): Promise<void> {
  let st;
  try {
    st = await fsp.stat(out);
  } catch {
    return;
  }
  if (!st.isDirectory()) throw new UnimeError('exists and is not a directory', { file: out, fix: 'choose another output directory' });
  const real = await fsp.realpath(out);
  for (const s of sources) {
    const rs = await fsp.realpath(s).catch(() => path.resolve(s));
    if (rs === real || rs.startsWith(real + path.sep)) {
      throw new UnimeError(`is (or holds) an input of the export (${s})`, { file: out, fix: 'write the export to a new directory' });
    }
  }
  if (!force && (await isNonEmptyDir(out))) {
    throw new UnimeError('output directory already exists and is not empty', { file: out, fix: 'pass --force to replace it, or choose another directory' });
  }
}

/**
 * Merge the adapter chain through the zoo and return the merged weights by checkpoint key: only the
 * weights of Linear layers some adapter touched.
 */
async function mergedWeights(baseDir: string, ckpt: Checkpoint, chain: readonly string[]): Promise<Map<string, Float32Array>> {
  const out = new Map<string, Float32Array>();
  if (chain.length === 0) return out;
  const model = await loadMultimodalModel(baseDir, { trainable: false });
  try {
    // every weight an adapter may touch, by its checkpoint key: the language model's and the vision tower's
    const byKey = checkpointWeights(model.decoder, model.vision);
    const keyOf = new Map([...byKey].map(([k, v]) => [v, k] as const));
    const adapted = new Set<string>();
    for (const dir of chain) {
      const { target, modulePrefix } = await adapterTarget(model, dir);
      const adapter = await loadLoraAdapter(dir, target, modulePrefix !== undefined ? { modulePrefix } : {});
      for (const l of adapter.layers) {
        const k = keyOf.get(l.linear.weight);
        if (k === undefined) throw new UnimeError(`adapted module ${l.moduleName} has no weight among the model's`, { file: dir });
        adapted.add(k);
      }
      mergeLora(target);
    }
    for (const key of adapted) {
      if (!ckpt.has(key)) {
        throw new UnimeError(`merged weight ${key} is not a tensor of the base checkpoint`, { file: baseDir, fix: 'export from the checkpoint the adapters were trained on' });
      }
      out.set(key, (await byKey.get(key)!.data()) as Float32Array);
    }
    return out;
  } finally {
    model.dispose();
  }
}

/** The source's weight layout: file name (relative to the checkpoint dir) -> its tensors, in order. */
function layoutOf(ckpt: Checkpoint, baseDir: string): Map<string, string[]> {
  const groups = new Map<string, string[]>();
  for (const f of ckpt.files) groups.set(ckpt.kind === 'single' ? SINGLE_WEIGHTS : path.relative(baseDir, f).split(path.sep).join('/'), []);
  for (const n of ckpt.names) {
    const f = ckpt.kind === 'single' ? SINGLE_WEIGHTS : path.relative(baseDir, ckpt.fileOf(n)).split(path.sep).join('/');
    groups.get(f)!.push(n);
  }
  return groups;
}

async function writeWeights(tmp: string, baseDir: string, ckpt: Checkpoint, merged: ReadonlyMap<string, Float32Array>, dtype: Dtype | undefined): Promise<{ files: string[]; totalSize: number }> {
  const groups = layoutOf(ckpt, baseDir);
  const metadata = ckpt.metadata ?? { format: 'pt' };
  const weightMap: Record<string, string> = {};
  let totalSize = 0;
  // One shard in memory at a time.
  for (const [file, names] of groups) {
    const entries: [string, { dtype: Dtype; shape: readonly number[]; data: Uint8Array }][] = [];
    for (const name of names) {
      const info = ckpt.info(name);
      const target: Dtype = dtype !== undefined && isFloatDtype(info.dtype) ? dtype : info.dtype;
      const m = merged.get(name);
      let data: Uint8Array;
      if (m !== undefined) data = fromFloat32(target as 'F32' | 'F16' | 'BF16' | 'F64', m);
      else if (target === info.dtype) data = await ckpt.readBytes(name);
      else data = fromFloat32(target as 'F32' | 'F16' | 'BF16', toFloat32(info.dtype, await ckpt.readBytes(name)));
      entries.push([name, { dtype: target, shape: info.shape, data }]);
      weightMap[name] = file;
    }
    const dest = path.join(tmp, ...file.split('/'));
    await fsp.mkdir(path.dirname(dest), { recursive: true });
    const prepared: PreparedTensor[] = prepareTensors(entries, dest);
    totalSize += prepared.reduce((s, t) => s + t.bytes.byteLength, 0);
    await writePreparedSafetensors(dest, prepared, { metadata });
  }
  const files = [...groups.keys()];
  if (ckpt.kind === 'sharded') {
    const indexName = ckpt.indexPath ? path.basename(ckpt.indexPath) : INDEX_FILE;
    const sorted = Object.fromEntries(Object.entries(weightMap).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
    await writeJsonAtomic(path.join(tmp, indexName), { metadata: { ...(ckpt.indexMetadata ?? {}), total_size: totalSize }, weight_map: sorted });
    files.push(indexName);
  }
  return { files, totalSize };
}

/** Copy every non-weight file at the top of the source dir (config, tokenizer, processor, templates). */
async function copyOtherFiles(baseDir: string, tmp: string, dtype: ExportDtype | undefined): Promise<string[]> {
  const copied: string[] = [];
  for (const e of await fsp.readdir(baseDir, { withFileTypes: true })) {
    if (e.name.startsWith('.') || WEIGHT_FILE.test(e.name) || e.name === EXPORT_RECORD) continue;
    const src = path.join(baseDir, e.name);
    const st = await fsp.stat(src).catch(() => null); // follows Hub-cache symlinks
    if (!st?.isFile()) continue;
    const dest = path.join(tmp, e.name);
    if (e.name === 'config.json' && dtype !== undefined) {
      // The config names the dtype the weights are stored in; keep it true.
      const cfg = JSON.parse(await fsp.readFile(src, 'utf8')) as Record<string, unknown>;
      cfg.torch_dtype = dtype;
      for (const sub of Object.values(cfg)) {
        if (typeof sub === 'object' && sub !== null && !Array.isArray(sub) && 'torch_dtype' in sub) (sub as Record<string, unknown>).torch_dtype = dtype;
      }
      await fsp.writeFile(dest, JSON.stringify(cfg, null, 2) + '\n');
    } else {
      await fsp.copyFile(src, dest);
    }
    copied.push(e.name);
  }
  return copied.sort();
}

async function adapterRecord(dir: string): Promise<{ path: string; files: Record<string, string> }> {
  const files: Record<string, string> = {};
  for (const e of (await fsp.readdir(dir, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const p = path.join(dir, e.name);
    const st = await fsp.stat(p).catch(() => null);
    if (st?.isFile()) files[e.name] = await sha256File(p);
  }
  return { path: dir, files };
}

/** Move the finished temp dir into place, replacing (with force) what was there. */
async function publish(tmp: string, out: string): Promise<void> {
  if (existsSync(out)) {
    const old = `${out}.old-${process.pid}-${randomBytes(4).toString('hex')}`;
    await fsp.rename(out, old);
    try {
      await fsp.rename(tmp, out);
    } catch (e) {
      await fsp.rename(old, out).catch(() => {});
      throw e;
    }
    await fsp.rm(old, { recursive: true, force: true });
  } else {
    await fsp.rename(tmp, out);
  }
}

/**
 * Write `baseRef` (a checkpoint directory or Hub id) with its adapters merged as a complete HF
 * checkpoint in `outDir`, plus unime_export.json recording what went in.
 */
export async function exportMergedCheckpoint(baseRef: string, outDir: string, options: ExportOptions = {}): Promise<ExportResult> {
  const out = path.resolve(outDir);
  if (options.dtype !== undefined && !(options.dtype in EXPORT_DTYPES)) {
    throw new UnimeError(`dtype ${JSON.stringify(options.dtype)} is not one of ${Object.keys(EXPORT_DTYPES).join(', ')}`, { field: 'dtype' });
  }
  const chain: string[] = [];
  for (const ref of options.adapters ?? []) chain.push(...(await resolveAdapterChain(ref, '--adapter')));
  // Cheap checks before anything may download: the output, then the adapters, then the base.
  await checkOutDir(out, chain, options.force ?? false);
  const baseDir = await resolveModelPath(baseRef, options.hub);
  if (!(await fsp.stat(baseDir)).isDirectory()) {
    throw new UnimeError('is a file; export needs the checkpoint directory (config.json, tokenizer and weights)', { file: baseDir, fix: 'pass the directory that holds it' });
  }
  await checkOutDir(out, [...chain, baseDir], options.force ?? false);

  let merged: Map<string, Float32Array> = new Map();
  const written = await writeCheckpointReplacing(baseDir, out, {
    dtype: options.dtype,
    replacements: async (ckpt) => {
      merged = await mergedWeights(baseDir, ckpt, chain);
      log.info(`merged ${chain.length} adapter(s) into ${merged.size} weight(s)`);
      return merged;
    },
    finish: async (tmp) => {
      const adapters = [];
      for (const dir of chain) adapters.push(await adapterRecord(dir));
      await writeJsonAtomic(path.join(tmp, EXPORT_RECORD), {
        format_version: 1,
        unime_version: unimeVersion(),
        created: new Date().toISOString(),
        base: { ref: baseRef, path: baseDir },
        adapters,
        dtype: options.dtype ?? null,
        merged_tensors: [...merged.keys()],
      });
    },
  });
  return { outDir: out, baseDir, adapters: chain, merged: [...merged.keys()], ...written };
}

export interface WriteReplacingOptions {
  /** The tensors to write in place of the source's (float32 data by tensor name), given the opened source. */
  replacements: (ckpt: Checkpoint) => Promise<ReadonlyMap<string, Float32Array>>;
  /** Convert every floating-point tensor to this dtype (default: keep each tensor's own). */
  dtype?: ExportDtype;
  /** Called with the temporary directory before it is moved into place (records, extra files). */
  finish?: (tmp: string) => Promise<void>;
}

/**
 * Write the checkpoint in `baseDir` to `outDir` with some tensors replaced: same keys, shards and
 * non-weight files (config, tokenizer, processor), the rest streamed byte for byte. Built in a
 * temporary sibling directory and renamed into place, replacing what was there, so a reader never
 * sees half a checkpoint.
 */
export async function writeCheckpointReplacing(
  baseDir: string,
  outDir: string,
  options: WriteReplacingOptions,
): Promise<{ tensors: number; weightFiles: string[]; copied: string[]; totalSize: number }> {
  const out = path.resolve(outDir);
  const ckpt = await openCheckpoint(baseDir);
  const tmp = path.join(path.dirname(out), `.${path.basename(out)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
  try {
    const replaced = await options.replacements(ckpt);
    for (const name of replaced.keys()) {
      if (!ckpt.has(name)) throw new UnimeError(`cannot replace tensor ${name}: the checkpoint has no such tensor`, { file: baseDir });
    }
    await fsp.mkdir(tmp, { recursive: true });
    const dtype = options.dtype === undefined ? undefined : EXPORT_DTYPES[options.dtype];
    const { files, totalSize } = await writeWeights(tmp, baseDir, ckpt, replaced, dtype);
    const copied = await copyOtherFiles(baseDir, tmp, options.dtype);
    await options.finish?.(tmp);
    await publish(tmp, out);
    return { tensors: ckpt.names.length, weightFiles: files, copied, totalSize };
  } catch (e) {
    await fsp.rm(tmp, { recursive: true, force: true }).catch(() => {});
    throw e;
  } finally {
    await ckpt.close();
  }
}
