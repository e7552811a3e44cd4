/**
 * The `caption-contrastive` stage: LLM2CLIP stage 1. A decoder LLM becomes a text embedder by
 * contrastive fine-tuning on caption pairs: bidirectional attention, mean pooling, and cross-entropy
 * over scale * cos(query, [all positives; all hard negatives]) with the query's own positive as the
 * label (LLM2Vec's supervised loss; scale 50 = temperature 0.02). LoRA on the decoder (the base
 * frozen), or full fine-tuning with `lora: null`. GradCache splits the forward/backward passes into
 * chunks while the loss sees the whole batch.
 *
 * Output (the stage's output dir): checkpoints/, metrics.jsonl, plots.html, and
 *   - with LoRA: adapter/ (PEFT layout) + adapter-chain.json (adapters of init_from merged underneath),
 *     so `init_from: <this stage>` in teacher-embed (or any loader of adapter chains) uses the result;
 *   - with full fine-tuning: model/, a complete Hugging Face checkpoint (config, weights, tokenizer).
 * A rerun resumes a LoRA run from its newest checkpoint; full fine-tuning starts over.
 * The result records the pair accuracy (cos(query, positive) > cos(query, hard negative)) on the
 * training rows before and after training.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { UnimeError } from '../errors.js';
import { readTextPairs } from '../data/mmeb.js';
import { INDEX_FILE, openCheckpoint, writeShardedSafetensors } from '../io/checkpoint.js';
import { inbatchInfoNce } from '../losses/inbatch-infonce.js';
import {
  ADAPTER_CONFIG,
  ADAPTER_DIR,
  ADAPTER_WEIGHTS,
  applyLora,
  mergeAdapterChain,
  resolveAdapterChain,
  saveLoraAdapter,
  writeAdapterChain,
  type LoraAdapter,
} from '../models/peft/index.js';
import { poolEmbeddings, type PoolingMode } from '../models/pooling.js';
import { loadTextDecoder, type LoadedTextDecoder } from '../models/text/load.js';
import { attachStageRunner, type StageContext, type StageResult } from '../recipes/registry.js';
import { Rng } from '../runtime/rng.js';
import { tf, type Tensor } from '../runtime/tf.js';
import { encodeBatch } from '../tokenizers/batch.js';
import { loadTokenizer } from '../tokenizers/load.js';
import type { Tokenizer } from '../tokenizers/types.js';
import { ShuffledBatches } from './data.js';
import { DropoutReplay, lossSummary } from './dropout-replay.js';
import { gradCacheStep } from './gradcache.js';
import { FULL_MODEL_DIR } from './teacher-embed.js';
import { loopOptionsFromRecipe, loraOptionsFromRecipe, train } from './trainer.js';
import '../recipes/kinds.js';
import type { z } from 'zod';
import type { captionContrastiveSchema } from '../recipes/kinds.js';

export type CaptionContrastiveStage = z.output<typeof captionContrastiveSchema>;

export interface CaptionTriple {
  query: string;
  positive: string;
  /** null when the row has no hard negative. */
  negative: string | null;
}

export interface CaptionContrastiveResult extends StageResult {
  steps: number;
  first_loss: number | null;
  final_loss: number | null;
  rows: number;
  /** 'lora' or 'full'. */
  mode: string;
  trainable_parameters: number;
  /** Share of rows with a hard negative where cos(query, positive) > cos(query, negative), before / after. */
  pair_accuracy_before: number | null;
  pair_accuracy_after: number | null;
  /** adapter/ (LoRA) or model/ (full fine-tuning). */
  output: string;
  seconds: number;
}

/** Rows of the stage data as (query, positive, hard negative) by text_columns [query, positive, negative?]. */
export function captionTriples(
  pairs: readonly object[],
  columns: readonly string[],
  maxSamples: number | null,
): CaptionTriple[] {
  const [qc, pc, nc] = columns;
  if (qc === undefined || pc === undefined) {
    throw new UnimeError(`caption-contrastive needs at least two text columns (query, positive), got ${JSON.stringify(columns)}`, {
      field: 'data.text_columns',
      fix: 'e.g. [sent0, sent1, hard_neg]',
    });
  }
  const str = (row: object, c: string | undefined): string | null => {
    if (c === undefined) return null;
    const v = (row as Record<string, unknown>)[c];
    return typeof v === 'string' && v.length > 0 ? v : null;
  };
  const out: CaptionTriple[] = [];
  for (const row of maxSamples === null ? pairs : pairs.slice(0, maxSamples)) {
    const query = str(row, qc);
    const positive = str(row, pc);
    if (query === null || positive === null) continue;
    out.push({ query, positive, negative: str(row, nc) });
  }
  return out;
}

/** The LLM2CLIP stage-1 loss: CE over scale * cos(query_i, [positives; negatives]) with label i. */
export function captionContrastiveLoss(queries: Tensor, positives: Tensor, negatives: Tensor | null, scale: number): Tensor {
  return inbatchInfoNce(queries, positives, { temperature: 1 / scale, extraNegatives: negatives });
}

export interface TextEncoder {
  tokenizer: Tokenizer;
  decoder: LoadedTextDecoder;
  pooling: PoolingMode;
  maxLength: number;
  /** Where the checkpoint is, for error messages. */
  dir: string;
}

/** L2-normalised embeddings [texts, hidden] (left padding; the decoder's attention direction). */
export function encodeTexts(enc: TextEncoder, texts: readonly string[]): Tensor {
  const b = encodeBatch(enc.tokenizer, [...texts], { maxLength: enc.maxLength, paddingSide: 'left' });
  const vocab = enc.decoder.config.vocabSize;
  for (const id of b.inputIds) {
    if (id < 0 || id >= vocab) {
      throw new UnimeError(`token id ${id} is outside the decoder's vocabulary (${vocab} entries)`, { file: enc.dir, fix: 'use the tokenizer that belongs to this checkpoint' });
    }
  }
  return tf.tidy(() => {
    const ids = tf.tensor2d(b.inputIds, [b.batchSize, b.seqLen], 'int32');
    const mask = tf.tensor2d(b.attentionMask, [b.batchSize, b.seqLen], 'int32');
    const { lastHiddenState } = enc.decoder.forward({ inputIds: ids, attentionMask: mask });
    return poolEmbeddings(lastHiddenState, mask, enc.pooling, true);
  });
}

/**
 * Share of triples with a negative where cos(query, positive) > cos(query, negative); null when no
 * row has a negative. Runs without a tape, in batches.
 */
export async function pairAccuracy(enc: TextEncoder, triples: readonly CaptionTriple[], batchSize = 64): Promise<number | null> {
  const rows = triples.filter((t) => t.negative !== null);
  if (rows.length === 0) return null;
  let right = 0;
  for (let i = 0; i < rows.length; i += batchSize) {
    const part = rows.slice(i, i + batchSize);
    const n = part.length;
    const e = encodeTexts(enc, [...part.map((t) => t.query), ...part.map((t) => t.positive), ...part.map((t) => t.negative!)]);
    const data = await e.data<'float32'>();
    const d = e.shape[1]!;
    e.dispose();
    const dot = (a: number, b: number) => {
      let s = 0;
      for (let k = 0; k < d; k++) s += data[a * d + k]! * data[b * d + k]!;
      return s;
    };
    for (let r = 0; r < n; r++) if (dot(r, n + r) > dot(r, 2 * n + r)) right++;
  }
  return right / rows.length;
}

/** Copy what describes a checkpoint besides its weights (config, tokenizer, processor files) into `dir`. */
async function copyCheckpointFiles(from: string, dir: string): Promise<void> {
  await fsp.mkdir(dir, { recursive: true });
  for (const name of await fsp.readdir(from)) {
    if ((name.endsWith('.json') && name !== INDEX_FILE) || name === 'tokenizer.model') {
      await fsp.copyFile(path.join(from, name), path.join(dir, name));
    }
  }
}

/** Save a fully fine-tuned decoder as a Hugging Face checkpoint, under the key prefix it was loaded from. */
async function saveFullModel(dir: string, decoder: LoadedTextDecoder, modelDir: string): Promise<void> {
  await copyCheckpointFiles(modelDir, dir);
  const ckpt = await openCheckpoint(modelDir);
  const tensors = new Map<string, { dtype: 'F32'; shape: number[]; data: Float32Array }>();
  try {
    // tensors outside the decoder (lm_head, a vision tower) are kept as they were
    for (const name of ckpt.names) {
      if (name.startsWith(decoder.source.prefix) && decoder.weights.has(name.slice(decoder.source.prefix.length))) continue;
      tensors.set(name, { dtype: 'F32', shape: [...ckpt.info(name).shape], data: await ckpt.readFloat32(name) });
    }
  } finally {
    await ckpt.close();
  }
  for (const [name, v] of decoder.weights) {
    tensors.set(decoder.source.prefix + name, { dtype: 'F32', shape: [...v.shape], data: (await v.data()) as Float32Array });
  }
  await writeShardedSafetensors(dir, tensors, { metadata: { format: 'pt' } });
}

export async function runCaptionContrastive(ctx: StageContext<CaptionContrastiveStage>): Promise<CaptionContrastiveResult> {
  const t0 = performance.now();
  const s = ctx.stage;
  const t = s.train;
  const pairs = await readTextPairs(s.data.path, { format: s.data.format });
  const triples = captionTriples(pairs, s.data.text_columns, s.data.max_samples);
  if (triples.length === 0) {
    throw new UnimeError('the stage data holds no (query, positive) rows', { file: s.data.path, field: 'data.text_columns', fix: 'check the file and the text columns' });
  }
  const modelDir = await ctx.resolveModel(s.model);
  const rng = new Rng(ctx.recipe.seed).fork(`caption-contrastive:${ctx.index}`);
  const full = s.lora === null;
  ctx.log.info(`caption-contrastive: loading ${s.model.path}`);
  const tokenizer = await loadTokenizer(modelDir);
  const decoder = await loadTextDecoder(modelDir, { trainable: full, bidirectional: s.bidirectional });
  let adapter: LoraAdapter | null = null;
  try {
    const chain = await resolveAdapterChain(ctx.initFrom);
    if (chain.length > 0) {
      ctx.log.info(`caption-contrastive: merging ${chain.length} adapter(s) from ${ctx.initFrom}`);
      await mergeAdapterChain(decoder, chain);
    }
    if (s.lora !== null) {
      adapter = applyLora(decoder, loraOptionsFromRecipe(s.lora, rng));
    }
    const enc: TextEncoder = { tokenizer, decoder, pooling: s.pooling, maxLength: s.max_length, dir: modelDir };
    adapter?.train(false);
    const before = await pairAccuracy(enc, triples);
    adapter?.train(true);

    // Dropout masks must be the same in GradCache's two passes over a chunk: replay the stream.
    const replay = new DropoutReplay(adapter?.dropoutRng ?? null);
    const encoder = (side: string) => (chunk: string[], chunkIndex: number): Tensor => {
      replay.enter(`${side}:${chunkIndex}`);
      return encodeTexts(enc, chunk);
    };
    const params = adapter !== null ? adapter.variables : [...decoder.weights.values()];
    const trainable = params.reduce((n, p) => n + p.size, 0);
    const data = new ShuffledBatches(triples, t.batch_size, rng.fork('data'), { shuffle: s.data.shuffle });
    ctx.log.info(
      `caption-contrastive: ${triples.length} rows, ${full ? 'full fine-tuning' : `${adapter!.layers.length} LoRA layers`} (${trainable} parameters), batch ${t.batch_size}, pair accuracy before ${before === null ? 'n/a' : before.toFixed(3)}`,
    );

    const result = await train<CaptionTriple[]>({
      ...loopOptionsFromRecipe(t),
      params,
      data,
      outputDir: ctx.outputDir,
      rng,
      ...(adapter !== null ? { rngs: { 'lora-dropout': adapter.dropoutRng } } : {}),
      // The decoder's variables are named by tfjs's process-wide counter, so a full fine-tuning
      // checkpoint cannot be matched to them in another process: that mode starts over instead.
      resume: !full && !ctx.fresh,
      overwrite: full || ctx.fresh,
      label: 'caption-contrastive',
      step: (batch) => {
        replay.clear();
        const negatives = batch.flatMap((x) => (x.negative === null ? [] : [x.negative]));
        const out = gradCacheStep<string, string>({
          params,
          encoders: { query: encoder('query'), target: encoder('target') },
          // targets: every positive, then every hard negative; the loss splits them again
          batch: { query: batch.map((x) => x.query), target: [...batch.map((x) => x.positive), ...negatives] },
          chunkSize: t.gradcache_chunk_size ?? batch.length + negatives.length,
          loss: (q, targets) =>
            tf.tidy(() => {
              const b = batch.length;
              const pos = tf.slice(targets, [0, 0], [b, -1]);
              const neg = negatives.length > 0 ? tf.slice(targets, [b, 0], [negatives.length, -1]) : null;
              return captionContrastiveLoss(q, pos, neg, s.loss.scale);
            }),
        });
        return { loss: out.loss, grads: out.grads, samples: batch.length };
      },
      onCheckpoint: async (info) => {
        if (adapter !== null) await saveLoraAdapter(path.join(info.dir, ADAPTER_DIR), decoder);
      },
    });

    adapter?.train(false);
    const after = await pairAccuracy(enc, triples);
    let output: string;
    if (adapter !== null) {
      output = path.join(ctx.outputDir, ADAPTER_DIR);
      await saveLoraAdapter(output, decoder);
      await writeAdapterChain(ctx.outputDir, chain);
    } else {
      output = path.join(ctx.outputDir, FULL_MODEL_DIR);
      await saveFullModel(output, decoder, modelDir);
    }
    const seconds = (performance.now() - t0) / 1000;
    ctx.log.info(
      `caption-contrastive: ${result.step} steps in ${seconds.toFixed(1)}s; pair accuracy ${before?.toFixed(3) ?? 'n/a'} -> ${after?.toFixed(3) ?? 'n/a'}; saved ${output}`,
    );
    return {
      ...lossSummary(result),
      rows: triples.length,
      mode: full ? 'full' : 'lora',
      trainable_parameters: trainable,
      pair_accuracy_before: before,
      pair_accuracy_after: after,
      output,
      ...(adapter !== null ? { adapter: output, adapter_files: [ADAPTER_CONFIG, ADAPTER_WEIGHTS] } : {}),
      seconds,
    };
  } finally {
    decoder.dispose();
    if (adapter !== null) for (const v of adapter.variables) if (!v.isDisposed) v.dispose();
  }
}

attachStageRunner<CaptionContrastiveStage>('caption-contrastive', runCaptionContrastive);
