/**
 * The `mllm-align` stage: make a base MLLM whose parts work together, the alignment pretraining every
 * released MLLM has had before UniME starts from it. A LLaVA-family checkpoint gets, optionally, the
 * vision tower of a CLIP checkpoint (`vision_from`, e.g. a clip-train stage's model/ trained with
 * LIFT against the teacher's caption features), then its projector and language model (train_parts)
 * are trained on image-caption pairs with in-batch InfoNCE: the image under the image prompt must
 * embed (last token) next to its own caption under the text prompt, the batch's other captions being
 * the negatives. Batches mix all kinds of captions, so the loss is only lowered by reading the image.
 *
 * Output: model/ (a complete Hugging Face checkpoint in the base's layout: same keys, shards, config,
 * tokenizer and processor, with the trained and replaced tensors; later stages and `unime eval` load
 * it like any checkpoint, and unime_align.json says what went in), checkpoints/ for resume,
 * metrics.jsonl and plots.html. With eval_data, image -> caption and caption -> image R@1 on the
 * held-out pairs before and after.
 */
import * as path from 'node:path';
import type { z } from 'zod';
import { UnimeError } from '../errors.js';
import { writeJsonAtomic } from '../io/atomic.js';
import { decodeImage } from '../images/decode.js';
import { scoreRetrieval, type RetrievalScores } from '../eval/retrieval.js';
import { embeddingMatrix } from '../eval/scoring.js';
import { inbatchInfoNce } from '../losses/inbatch-infonce.js';
import { writeCheckpointReplacing } from '../models/export.js';
import { LlavaFamilyModel } from '../models/mllm/llava.js';
import { loadMultimodalModel } from '../models/mllm/load.js';
import type { PreparedInput } from '../models/mllm/types.js';
import { loadVisionTower } from '../models/vision/load.js';
import type { mllmAlignSchema } from '../recipes/kinds.js';
import { attachStageRunner, type StageContext, type StageResult } from '../recipes/registry.js';
import { Rng } from '../runtime/rng.js';
import { tf } from '../runtime/tf.js';
import { readImageTextSplits, type ImageTextRow } from './clip-train.js';
import { ShuffledBatches } from './data.js';
import { lossSummary } from './dropout-replay.js';
import { gradCacheStep } from './gradcache.js';
import { loopOptionsFromRecipe, train } from './trainer.js';

export type MllmAlignStage = z.output<typeof mllmAlignSchema>;

export const ALIGNED_MODEL_DIR = 'model';
export const ALIGN_RECORD = 'unime_align.json';

export interface MllmAlignResult extends StageResult {
  steps: number;
  first_loss: number | null;
  final_loss: number | null;
  model: string;
  pairs: number;
  trained_parameters: number;
  train_parts: string[];
  vision_from: string | null;
  retrieval_before: RetrievalScores | null;
  retrieval_after: RetrievalScores | null;
  seconds: number;
}

/** A variable's checkpoint key: loaded weights are named by it (a live duplicate gets `#n` appended). */
function checkpointKey(v: tf.Variable): string {
  return v.name.replace(/#\d+$/, '');
}

function describeTower(c: { hiddenSize: number; numLayers: number; numHeads: number; imageSize: number; patchSize: number }): string {
  return `${c.numLayers} layers x ${c.hiddenSize} wide, ${c.numHeads} heads, ${c.imageSize}px / ${c.patchSize}px patches`;
}

/** Copy the tower of the CLIP checkpoint at `dir` into the model's tower, after checking they have one shape. */
async function replaceTower(model: LlavaFamilyModel, dir: string): Promise<void> {
  const src = await loadVisionTower(dir, { trainable: false, strict: false }).catch((e: unknown) => {
    throw new UnimeError(`cannot read a vision tower from ${dir}: ${e instanceof Error ? e.message : String(e)}`, {
      field: 'vision_from',
      fix: "point at a CLIP vision checkpoint in the model's tower shape, e.g. a clip-train stage's ${stages.<name>.output_dir}/model",
    });
  });
  try {
    const a = model.vision.config;
    const b = src.config;
    const mismatch = () =>
      new UnimeError(`the vision tower in ${dir} (${describeTower(b)}) does not have the model's shape (${describeTower(a)})`, {
        field: 'vision_from',
        fix: "train the tower in the model's shape (clip-train vision.arch and image_size) or set vision_from: null",
      });
    if (a.hiddenSize !== b.hiddenSize || a.numLayers !== b.numLayers || a.numHeads !== b.numHeads || a.imageSize !== b.imageSize || a.patchSize !== b.patchSize) throw mismatch();
    for (const [key, v] of model.vision.weights) {
      const w = src.weights.get(key);
      if (!w || w.shape.join() !== v.shape.join()) throw mismatch();
    }
    for (const [key, v] of model.vision.weights) v.assign(src.weights.get(key)!);
  } finally {
    src.dispose();
  }
}

/** Embed prepared inputs in batches of 64 into rows of a Float32Array. */
function embedAll(model: LlavaFamilyModel, inputs: readonly PreparedInput[]): Float32Array {
  const d = model.dim;
  const out = new Float32Array(inputs.length * d);
  for (let i = 0; i < inputs.length; i += 64) {
    const e = model.embed(inputs.slice(i, i + 64));
    out.set(e.dataSync(), i * d);
    e.dispose();
  }
  return out;
}

/** Recall both ways on held-out pairs (each image once; a caption's match is its row's image), as the retrieval suite scores it. */
function retrieval(model: LlavaFamilyModel, set: { images: readonly PreparedInput[]; texts: readonly PreparedInput[]; captionImage: Int32Array }): RetrievalScores {
  const d = model.dim;
  return scoreRetrieval(
    embeddingMatrix(embedAll(model, set.images), set.images.length, d, 'images'),
    embeddingMatrix(embedAll(model, set.texts), set.texts.length, d, 'captions'),
    set.captionImage,
  );
}

export async function runMllmAlign(ctx: StageContext<MllmAlignStage>): Promise<MllmAlignResult> {
  const t0 = performance.now();
  const s = ctx.stage;
  const t = s.train;
  const rng = new Rng(ctx.recipe.seed).fork(`mllm-align:${ctx.index}`);
  const { rows, evalRows } = await readImageTextSplits(s.data, s.eval_data);
  const modelDir = await ctx.resolveModel(s.model);
  ctx.log.info(`mllm-align: loading ${s.model.path}`);
  const loaded = await loadMultimodalModel(modelDir, { trainable: true });
  try {
    if (!(loaded instanceof LlavaFamilyModel)) {
      throw new UnimeError(`${s.model.path} is a ${loaded.modelType} checkpoint; mllm-align trains LLaVA-family ones (llava, llava_next, llava_onevision)`, {
        field: 'model',
        fix: 'align a LLaVA-style checkpoint, or start UniME from a released MLLM (already aligned)',
      });
    }
    const model = loaded;
    const visionFrom = s.vision_from !== null ? path.resolve(s.vision_from) : null;
    if (visionFrom !== null) {
      await replaceTower(model, visionFrom);
      ctx.log.info(`mllm-align: vision tower from ${s.vision_from}`);
    }
    const parts: Record<MllmAlignStage['train_parts'][number], tf.Variable[]> = {
      projector: [...model.projectorWeights.values()],
      decoder: [...model.decoder.weights.values()],
      vision: [...model.vision.weights.values()],
    };
    const params = [...new Set(s.train_parts.flatMap((p) => parts[p]))];
    for (const v of [...parts.projector, ...parts.decoder, ...parts.vision]) (v as { trainable: boolean }).trainable = params.includes(v);
    const trainedParameters = params.reduce((n, v) => n + v.size, 0);

    // Each distinct image prepared once; captionImage[c] is the image of row c.
    const prepareRows = async (list: readonly ImageTextRow[], what: string) => {
      const index = new Map<string, number>();
      const images: PreparedInput[] = [];
      const texts: PreparedInput[] = [];
      const negatives: PreparedInput[] = [];
      const captionImage = new Int32Array(list.length);
      const asText = (caption: string) => model.prepare(s.prompts.text.split('<sent>').join(caption), null, { maxLength: s.max_length });
      for (const [c, r] of list.entries()) {
        let i = index.get(r.image);
        if (i === undefined) {
          i = images.length;
          index.set(r.image, i);
          images.push(model.prepare(s.prompts.image, await decodeImage(r.image), { maxLength: s.max_length }));
        }
        captionImage[c] = i;
        texts.push(asText(r.caption));
        if (r.negative !== undefined) negatives.push(asText(r.negative));
      }
      ctx.log.info(`mllm-align: ${list.length} ${what} pairs prepared (${images.length} images${negatives.length > 0 ? `, ${negatives.length} hard-negative captions` : ''})`);
      return { images, texts, negatives, captionImage };
    };
    const trainSet = await prepareRows(rows, 'training');
    const evalSet = evalRows !== null ? await prepareRows(evalRows, 'held-out') : null;
    const before = evalSet !== null ? retrieval(model, evalSet) : null;
    if (before) ctx.log.info(`mllm-align: held-out R@1 before training: image->caption ${before.i2t_r1.toFixed(1)}, caption->image ${before.t2i_r1.toFixed(1)} (chance ${(100 / before.images).toFixed(1)})`);
    ctx.log.info(`mllm-align: ${rows.length} pairs, training ${s.train_parts.join(' + ')} (${trainedParameters} parameters), batch ${t.batch_size}, tau ${s.loss.temperature}`);

    const indices = rows.map((_, i) => i);
    const result = await train<number[]>({
      ...loopOptionsFromRecipe(t),
      params,
      data: new ShuffledBatches(indices, t.batch_size, rng.fork('data'), { shuffle: true }),
      outputDir: ctx.outputDir,
      rng,
      resume: !ctx.fresh,
      overwrite: ctx.fresh,
      label: 'mllm-align',
      step: (batch) => {
        const queries = batch.map((i) => trainSet.images[trainSet.captionImage[i]!]!);
        // with negative_column, each row's hard-negative caption follows the captions as an extra column
        const withNegatives = trainSet.negatives.length > 0;
        const targets = [...batch.map((i) => trainSet.texts[i]!), ...(withNegatives ? batch.map((i) => trainSet.negatives[i]!) : [])];
        const b = batch.length;
        const out = gradCacheStep<PreparedInput, PreparedInput>({
          params,
          encoders: { query: (chunk) => model.embed(chunk), target: (chunk) => model.embed(chunk) },
          batch: { query: queries, target: targets },
          chunkSize: t.gradcache_chunk_size ?? batch.length,
          loss: (q, c) =>
            withNegatives
              ? inbatchInfoNce(q, tf.slice(c, [0, 0], [b, -1]), { temperature: s.loss.temperature, extraNegatives: tf.slice(c, [b, 0], [b, -1]) })
              : inbatchInfoNce(q, c, { temperature: s.loss.temperature }),
        });
        const tokens = queries.reduce((n, x) => n + x.ids.length, 0) + targets.reduce((n, x) => n + x.ids.length, 0);
        return { loss: out.loss, grads: out.grads, samples: batch.length, tokens };
      },
    });
    const after = evalSet !== null ? retrieval(model, evalSet) : null;
    if (before && after) {
      ctx.log.info(
        `mllm-align: held-out R@1 image->caption ${before.i2t_r1.toFixed(1)} -> ${after.i2t_r1.toFixed(1)}, caption->image ${before.t2i_r1.toFixed(1)} -> ${after.t2i_r1.toFixed(1)} (chance ${(100 / after.images).toFixed(1)})`,
      );
    }

    // The new checkpoint: every trained tensor, and the replaced tower.
    const written = new Set(params);
    if (visionFrom !== null) for (const v of parts.vision) written.add(v);
    const replaced = new Map<string, Float32Array>();
    for (const v of written) replaced.set(checkpointKey(v), v.dataSync() as Float32Array);
    const outDir = path.join(ctx.outputDir, ALIGNED_MODEL_DIR);
    await writeCheckpointReplacing(modelDir, outDir, {
      replacements: async () => replaced,
      finish: async (tmp) =>
        writeJsonAtomic(path.join(tmp, ALIGN_RECORD), {
          format_version: 1,
          base: { ref: s.model.path, path: modelDir },
          vision_from: visionFrom,
          train_parts: s.train_parts,
          data: path.resolve(s.data.path),
          steps: result.step,
          replaced_tensors: [...replaced.keys()].sort(),
        }),
    });
    const seconds = (performance.now() - t0) / 1000;
    ctx.log.info(`mllm-align: ${result.step} steps in ${seconds.toFixed(1)}s; aligned model in ${outDir}`);
    return {
      ...lossSummary(result),
      model: outDir,
      pairs: rows.length,
      trained_parameters: trainedParameters,
      train_parts: s.train_parts,
      vision_from: visionFrom,
      retrieval_before: before,
      retrieval_after: after,
      seconds,
    };
  } finally {
    loaded.dispose();
  }
}

attachStageRunner<MllmAlignStage>('mllm-align', runMllmAlign);
