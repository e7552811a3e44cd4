/**
 * The `teacher-embed` stage: embed every distinct stage-1 text once with a teacher embedder and
 * cache the vectors for the distillation stage.
 *
 * Cache layout (in the stage's cache_dir, default its output dir):
 *   embeddings-00000.safetensors, embeddings-00001.safetensors, ...  one F32 tensor `embeddings`
 *     [rows, dim] each; the texts are split into shards of a fixed number of rows in first-seen order.
 *   index.json  {version, model, dim, rows, shard_rows, shards: [{file, rows}], keys: {sha256(text): row}}
 * Every file is written atomically. Each shard carries a fingerprint (teacher settings + the
 * hashes of its texts) in its safetensors metadata, so a rerun after a kill reuses every shard that
 * was finished and recomputes only the rest.
 *
 * init_from makes a trained teacher: a stage (or adapter directory) whose LoRA adapter chain is merged
 * into the teacher before embedding, or a full fine-tuning stage whose saved model/ replaces it. The
 * adapters' bytes are part of the fingerprint, so retraining the teacher invalidates the cache.
 *
 * `import` takes the vectors from a cache made elsewhere (parquet or .npy + key list) instead of
 * running the teacher, and writes them in this same layout (./teacher-import.ts).
 */
import { createHash } from 'node:crypto';
import { existsSync, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { UnimeError } from '../errors.js';
import { readTextColumns, type TextRow } from '../data/mmeb.js';
import { writeJsonAtomic } from '../io/atomic.js';
import { SafetensorsFile, writeSafetensors } from '../io/safetensors.js';
import { TextEmbedder } from '../models/text-embedder.js';
import { mergeAdapterChain, resolveAdapterChain } from '../models/peft/chain.js';
import { attachStageRunner, type StageContext, type StageResult } from '../recipes/registry.js';
import '../recipes/kinds.js';
import type { z } from 'zod';
import type { teacherEmbedSchema } from '../recipes/kinds.js';

export type TeacherEmbedStage = z.output<typeof teacherEmbedSchema>;

export const TEACHER_INDEX = 'index.json';
export const EMBEDDINGS_TENSOR = 'embeddings';
/** A shard holds this many batches of texts. */
export const BATCHES_PER_SHARD = 8;

export function teacherShardName(i: number): string {
  return `embeddings-${String(i).padStart(5, '0')}.safetensors`;
}

export function textKey(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

export interface TeacherCacheIndex {
  version: 1;
  model: string;
  dim: number;
  rows: number;
  pooling: string;
  normalize: boolean;
  instruction: string;
  max_length: number;
  /** Attention direction the teacher ran with (absent in caches of older versions: causal). */
  bidirectional?: boolean;
  /** Adapters merged into the teacher, in order (absent or [] for none). */
  adapters?: string[];
  /** The checkpoint directory the vectors were computed with (absent in older caches and in imported ones). */
  model_dir?: string;
  shard_rows: number;
  shards: { file: string; rows: number }[];
  keys: Record<string, number>;
}

/** Every distinct non-empty text of the selected columns, in first-seen order. */
export function distinctTexts(pairs: readonly (TextRow | object)[], columns: readonly string[], maxSamples: number | null): string[] {
  const seen = new Set<string>();
  const out: string[] = [];
  const rows = maxSamples === null ? pairs : pairs.slice(0, maxSamples);
  for (const row of rows) {
    for (const c of columns) {
      const v = (row as unknown as Record<string, unknown>)[c];
      if (typeof v === 'string' && v.length > 0 && !seen.has(v)) {
        seen.add(v);
        out.push(v);
      }
    }
  }
  return out;
}

export interface TeacherEmbedResult extends StageResult {
  rows: number;
  dim: number;
  model: string;
  shards: number;
  /** Shards reused from an earlier (interrupted) run. */
  reused_shards: number;
  /** Texts embedded in this run. */
  embedded: number;
  /** With `import`: vectors taken from the external cache, and its rows the data does not use. */
  imported?: number;
  unused_rows?: number;
  seconds: number;
}

/** Where a full fine-tuning stage (caption-contrastive with lora: null) saves its model, inside its output dir. */
export const FULL_MODEL_DIR = 'model';

export interface TeacherInit {
  /** The checkpoint to load: the teacher itself, or a full fine-tuning stage's saved model. */
  modelDir: string;
  /** Adapters to merge into it, in order. */
  adapters: string[];
}

/**
 * What init_from makes of the teacher: null keeps it; a directory holding model/config.json (a full
 * fine-tuning stage) replaces it; anything else names a LoRA adapter chain to merge.
 */
export async function resolveTeacherInit(modelDir: string, initFrom: string | null): Promise<TeacherInit> {
  if (initFrom !== null && existsSync(path.join(initFrom, FULL_MODEL_DIR, 'config.json'))) {
    return { modelDir: path.resolve(initFrom, FULL_MODEL_DIR), adapters: [] };
  }
  return { modelDir, adapters: await resolveAdapterChain(initFrom) };
}

/** sha256 over every adapter's files, so the cache follows the adapters' contents, not only their paths. */
async function adaptersFingerprint(adapters: readonly string[]): Promise<string> {
  const h = createHash('sha256');
  for (const dir of adapters) {
    h.update(dir);
    for (const name of (await fsp.readdir(dir)).sort()) {
      if (!/\.(json|safetensors)$/.test(name)) continue;
      h.update(name);
      h.update(await fsp.readFile(path.join(dir, name)));
    }
  }
  return h.digest('hex');
}

async function shardFingerprintMatches(file: string, fingerprint: string, rows: number): Promise<number | null> {
  if (!existsSync(file)) return null;
  let f: SafetensorsFile | undefined;
  try {
    f = await SafetensorsFile.open(file);
    if (f.metadata?.fingerprint !== fingerprint || !f.has(EMBEDDINGS_TENSOR)) return null;
    const shape = f.info(EMBEDDINGS_TENSOR).shape;
    if (shape.length !== 2 || shape[0] !== rows || f.info(EMBEDDINGS_TENSOR).dtype !== 'F32') return null;
    return shape[1]!;
  } catch {
    return null; // unreadable (e.g. from another version): recompute it
  } finally {
    await f?.close();
  }
}

export async function runTeacherEmbed(ctx: StageContext<TeacherEmbedStage>): Promise<TeacherEmbedResult> {
  const t0 = performance.now();
  const s = ctx.stage;
  const cacheDir = s.cache_dir === null ? ctx.outputDir : path.resolve(s.cache_dir);
  await fsp.mkdir(cacheDir, { recursive: true });

  const pairs = await readTextColumns(s.data.path, s.data.text_columns, { format: s.data.format });
  const texts = distinctTexts(pairs, s.data.text_columns, s.data.max_samples);
  if (texts.length === 0) {
    throw new UnimeError('the stage data holds no texts to embed', { file: s.data.path, field: 'data.text_columns', fix: 'check the file and the text columns' });
  }
  const shardRowsFor = s.batch_size * BATCHES_PER_SHARD;
  if (s.import !== null) {
    if (ctx.initFrom !== null) {
      throw new UnimeError('init_from trains the teacher, but this stage imports its vectors', { field: 'init_from', fix: 'drop init_from, or set import: null to compute with the teacher' });
    }
    // Loaded on demand: the import code reads parquet and .npy, which computing does not need.
    const { importTeacherCache } = await import('./teacher-import.js');
    const r = await importTeacherCache({ source: s.import, outDir: cacheDir, texts, textsFrom: `${s.data.path} (data.text_columns)`, shardRows: shardRowsFor, log: ctx.log });
    return { rows: r.rows, dim: r.dim, model: `import:${path.resolve(s.import.path)}`, shards: r.shards, reused_shards: 0, embedded: 0, imported: r.rows, unused_rows: r.unused_rows, seconds: (performance.now() - t0) / 1000 };
  }
  const teacherDir = await ctx.resolveModel(s.teacher);
  const init = await resolveTeacherInit(teacherDir, ctx.initFrom);
  const modelDir = init.modelDir;
  const modelName = s.teacher.path;
  const shardRows = shardRowsFor;
  const nShards = Math.ceil(texts.length / shardRows);
  const base = { model: modelName, pooling: s.pooling, normalize: s.normalize, instruction: s.instruction, max_length: s.max_length };
  // A plain teacher keeps the fingerprint of earlier versions, so their caches stay valid.
  const replaced = modelDir !== teacherDir;
  const trained =
    s.bidirectional || replaced || init.adapters.length > 0
      ? { bidirectional: s.bidirectional, model_dir: replaced ? modelDir : null, adapters: await adaptersFingerprint(replaced ? [modelDir] : init.adapters) }
      : {};
  const settings = JSON.stringify({ ...base, ...trained });

  let embedder: TextEmbedder | null = null;
  let dim = 0;
  let reused = 0;
  let embedded = 0;
  const shards: { file: string; rows: number }[] = [];
  try {
    for (let i = 0; i < nShards; i++) {
      const chunk = texts.slice(i * shardRows, (i + 1) * shardRows);
      const h = createHash('sha256').update(settings);
      for (const t of chunk) h.update(textKey(t));
      const fingerprint = h.digest('hex');
      const file = path.join(cacheDir, teacherShardName(i));
      shards.push({ file: teacherShardName(i), rows: chunk.length });
      const have = await shardFingerprintMatches(file, fingerprint, chunk.length);
      if (have !== null) {
        dim = have;
        reused++;
        continue;
      }
      if (embedder === null) {
        ctx.log.info(`teacher-embed: loading ${modelName}`);
        embedder = await TextEmbedder.load(modelDir, { pooling: s.pooling, normalize: s.normalize, instruction: s.instruction, template: null });
        embedder.decoder.bidirectional = s.bidirectional;
        if (init.adapters.length > 0) {
          ctx.log.info(`teacher-embed: merging ${init.adapters.length} adapter(s) from ${ctx.initFrom}`);
          await mergeAdapterChain(embedder.decoder, init.adapters);
        }
      }
      dim = embedder.dim;
      const data = await embedder.embed(chunk, { batchSize: s.batch_size, maxLength: s.max_length });
      await writeSafetensors(file, { [EMBEDDINGS_TENSOR]: { dtype: 'F32', shape: [chunk.length, dim], data } }, { metadata: { fingerprint, format: 'unime-teacher-cache' } });
      embedded += chunk.length;
      ctx.log.info(`teacher-embed: shard ${i + 1}/${nShards} (${embedded} texts embedded in this run, ${texts.length} in all)`);
    }
  } finally {
    embedder?.dispose();
  }
  // Shards of an earlier, larger cache that this one no longer uses.
  for (const name of await fsp.readdir(cacheDir)) {
    const m = /^embeddings-(\d{5})\.safetensors$/.exec(name);
    if (m && Number(m[1]) >= nShards) await fsp.rm(path.join(cacheDir, name), { force: true });
  }
  const keys: Record<string, number> = {};
  texts.forEach((t, r) => (keys[textKey(t)] = r));
  const index: TeacherCacheIndex = {
    version: 1,
    model: modelName,
    dim,
    rows: texts.length,
    pooling: s.pooling,
    normalize: s.normalize,
    instruction: s.instruction,
    max_length: s.max_length,
    bidirectional: s.bidirectional,
    adapters: init.adapters,
    model_dir: path.resolve(modelDir),
    shard_rows: shardRows,
    shards,
    keys,
  };
  await writeJsonAtomic(path.join(cacheDir, TEACHER_INDEX), index);
  const seconds = (performance.now() - t0) / 1000;
  ctx.log.info(`teacher-embed: ${texts.length} texts, dim ${dim}, ${reused}/${nShards} shards reused, ${embedded} embedded in ${seconds.toFixed(1)}s`);
  return { rows: texts.length, dim, model: modelName, shards: nShards, reused_shards: reused, embedded, seconds };
}

export interface TeacherCache {
  dir: string;
  index: TeacherCacheIndex;
  dim: number;
  rows: number;
  model: string;
  /** All rows, row-major [rows, dim]. */
  matrix: Float32Array;
  /** The row of a text, or undefined when it is not cached. */
  rowOf(text: string): number | undefined;
  has(text: string): boolean;
  /** A copy of a text's vector, or undefined when it is not cached. */
  get(text: string): Float32Array | undefined;
}

/** Open a cache written by the teacher-embed stage (the stage's output dir or its cache_dir). */
export async function readTeacherCache(dir: string): Promise<TeacherCache> {
  const indexFile = path.join(dir, TEACHER_INDEX);
  let index: TeacherCacheIndex;
  try {
    index = JSON.parse(await fsp.readFile(indexFile, 'utf8')) as TeacherCacheIndex;
  } catch (e) {
    throw new UnimeError(`no readable teacher cache index: ${(e as Error).message}`, { file: indexFile, fix: 'run the teacher-embed stage first' });
  }
  if (index?.version !== 1 || !Array.isArray(index.shards) || typeof index.dim !== 'number') {
    throw new UnimeError('not a teacher cache index (version 1)', { file: indexFile, fix: 'rerun the teacher-embed stage with --force' });
  }
  const { dim, rows } = index;
  const matrix = new Float32Array(rows * dim);
  let offset = 0;
  for (const sh of index.shards) {
    const file = path.join(dir, sh.file);
    const f = await SafetensorsFile.open(file);
    try {
      const shape = f.info(EMBEDDINGS_TENSOR).shape;
      if (shape[0] !== sh.rows || shape[1] !== dim) {
        throw new UnimeError(`shard holds [${shape.join(', ')}], the index says [${sh.rows}, ${dim}]`, { file, fix: 'rerun the teacher-embed stage with --force' });
      }
      matrix.set(await f.readFloat32(EMBEDDINGS_TENSOR), offset * dim);
    } finally {
      await f.close();
    }
    offset += sh.rows;
  }
  if (offset !== rows) throw new UnimeError(`the shards hold ${offset} rows, the index says ${rows}`, { file: indexFile, fix: 'rerun the teacher-embed stage with --force' });
  const rowOf = (text: string) => index.keys[textKey(text)];
  return {
    dir,
    index,
    dim,
    rows,
    model: index.model,
    matrix,
    rowOf,
    has: (text) => rowOf(text) !== undefined,
    get: (text) => {
      const r = rowOf(text);
      return r === undefined ? undefined : matrix.slice(r * dim, (r + 1) * dim);
    },
  };
}

attachStageRunner<TeacherEmbedStage>('teacher-embed', runTeacherEmbed);
