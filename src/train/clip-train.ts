/**
 * The `clip-train` stage: the CLIP-side methods, each with a frozen LLM in place of CLIP's text encoder
 * (../../../shared/REFERENCE.md):
 *
 * - `llm2clip` (LLM2CLIP stage 2): vision tower + visual projection, the residual-MLP adapter on the
 *   L2-normalised LLM feature, and a learnable logit scale, under CLIP's symmetric InfoNCE.
 * - `lift`: the vision tower (from scratch by default, mean pooled) + a two-layer head mapped straight
 *   onto the LLM feature; CLIP InfoNCE, or the positive-only cosine loss (no negatives, no temperature).
 * - `proclip`, phase `align`: only the adapter, trained so norm(adapter(t)) matches the frozen CLIP text
 *   encoder's embedding (instance MSE + pairwise-distance SmoothL1); phase `finetune`: adapter + image
 *   encoder under InfoNCE + lambda * the same two terms between the image encoder and its EMA copy.
 *
 * Text features come from a teacher-embed cache (`text_features`), or are computed into
 * `<output_dir>/text-features` with text_model and `text_encoder` when it is null. The vision tower is
 * pretrained (`vision.model`: a CLIP / SigLIP checkpoint or an earlier clip-train stage's model/) or
 * built from scratch as `vision.arch`; `init_from: <clip-train stage>` continues from that stage's model
 * (ProCLIP's finetune after align). Layer-wise lr decay with `vision.layer_decay`.
 *
 * Output: model/ (./../models/clip/dual-encoder.ts: loads in `unime eval` and the eval stage),
 * checkpoints/, metrics.jsonl, plots.html; the result records image<->text retrieval on `eval_data`
 * before and after training, with chance for comparison.
 */
import { existsSync, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { UnimeError } from '../errors.js';
import { readParquetTable } from '../data/mmeb.js';
import { readAnnotationRows } from '../eval/annotations.js';
import { scoreRetrieval, type RetrievalScores } from '../eval/retrieval.js';
import { embeddingMatrix } from '../eval/scoring.js';
import { decodeImage } from '../images/decode.js';
import { parseImageProcessorConfig, preprocessImage, PREPROCESSOR_CONFIG, readImageProcessorConfig, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, type ImageProcessorConfig, type PixelArray } from '../images/processor.js';
import { positiveCosineLoss } from '../losses/positive-cosine-loss.js';
import { clipInfoNce } from '../losses/clip-infonce.js';
import { l2Normalize } from '../losses/common.js';
import { procLipDistillationTerms } from '../losses/proclip-distillation.js';
import {
  CLIP_SIDE_CONFIG,
  CLIP_SIDE_FORMAT,
  ClipSideModel,
  isClipSideModel,
  loadClipSideModel,
  poolImage,
  type ClipSideConfig,
  type LlmTextEncoding,
} from '../models/clip/dual-encoder.js';
import { MlpHead, ResidualMlpAdapter } from '../models/clip/heads.js';
import { encodingOfCache, LlmFeatures } from '../models/clip/llm-features.js';
import { initVisionTower, initProjection } from '../models/clip/init.js';
import { loadClipModel } from '../models/clip/model.js';
import { namedVariable } from '../models/clip/variables.js';
import { Linear } from '../models/text/modules.js';
import { VisionTransformer } from '../models/vision/tower.js';
import { attachStageRunner, type StageContext, type StageResult } from '../recipes/registry.js';
import { Rng } from '../runtime/rng.js';
import { tf, type Tensor } from '../runtime/tf.js';
import { encodeBatch } from '../tokenizers/batch.js';
import { loadTokenizer } from '../tokenizers/load.js';
import { ShuffledBatches } from './data.js';
import { Ema } from './ema.js';
import { lossSummary } from './dropout-replay.js';
import { gradCacheStep } from './gradcache.js';
import { layerwiseLrScale } from './lr-groups.js';
import { readTeacherCache, runTeacherEmbed, type TeacherEmbedStage } from './teacher-embed.js';
import { findLatestCheckpoint } from './checkpoints.js';
import { loopOptionsFromRecipe, train } from './trainer.js';
import { SafetensorsFile, writeSafetensors } from '../io/safetensors.js';
import '../recipes/kinds.js';
import { teacherEmbedSchema, type ClipTrainStage } from '../recipes/kinds.js';

export const CLIP_MODEL_DIR = 'model';
export const TEXT_FEATURES_DIR = 'text-features';
const EMA_FILE = 'ema.safetensors';

/** One training pair: an image file and its caption (and a caption false for it, with negative_column). */
export interface ImageTextRow {
  image: string;
  caption: string;
  negative?: string;
}

export interface ClipTrainResult extends StageResult {
  method: string;
  phase?: string;
  steps: number;
  first_loss: number | null;
  final_loss: number | null;
  rows: number;
  /** Hard-negative captions (negative_column), one per row; 0 without. */
  negatives: number;
  trainable_parameters: number;
  /** Retrieval on eval_data (percent), before and after training, and chance R@1. */
  retrieval_before: RetrievalScores | null;
  retrieval_after: RetrievalScores | null;
  chance_r1: number | null;
  output: string;
  seconds: number;
}

/** Rows of one .parquet / .jsonl / .json / .csv file, or of every such file in a folder (sorted by name). */
async function readTableRows(p: string, field: string): Promise<{ rows: Record<string, unknown>[]; baseDir: string }> {
  let stat;
  try {
    stat = await fsp.stat(p);
  } catch {
    throw new UnimeError('the image-text data is not there', { file: p, field: `${field}.path`, fix: 'point at a .parquet / .jsonl / .csv file or a folder of them' });
  }
  const files = stat.isDirectory()
    ? (await fsp.readdir(p)).filter((n) => /\.(parquet|jsonl|json|csv|tsv)$/i.test(n)).sort().map((n) => path.join(p, n))
    : [p];
  if (files.length === 0) throw new UnimeError('no .parquet, .jsonl, .json or .csv files in this folder', { file: p, field: `${field}.path` });
  const rows: Record<string, unknown>[] = [];
  for (const f of files) {
    if (/\.parquet$/i.test(f)) rows.push(...((await readParquetTable(f)).rows as Record<string, unknown>[]));
    else rows.push(...((await readAnnotationRows(f)) as Record<string, unknown>[]));
  }
  return { rows, baseDir: stat.isDirectory() ? path.resolve(p) : path.dirname(path.resolve(p)) };
}

/** The image-caption pairs of a data block; image paths resolved against image_root or the data file's folder. */
export async function readImageTextRows(
  data: { path: string; image_root: string | null; image_column: string; caption_column: string; negative_column?: string | null; max_samples: number | null },
  field = 'data',
): Promise<ImageTextRow[]> {
  const negColumn = data.negative_column ?? null;
  const { rows: raw, baseDir } = await readTableRows(data.path, field);
  const base = data.image_root !== null ? path.resolve(data.image_root) : baseDir;
  const out: ImageTextRow[] = [];
  const rows = data.max_samples === null ? raw : raw.slice(0, data.max_samples);
  rows.forEach((row, i) => {
    const image = row[data.image_column];
    const caption = row[data.caption_column];
    if (typeof image !== 'string' || image.length === 0) {
      throw new UnimeError(`row ${i} has no image path in column ${JSON.stringify(data.image_column)}`, { file: data.path, field: `${field}.image_column`, fix: `name the column that holds the image paths (the row has: ${Object.keys(row).join(', ')})` });
    }
    if (typeof caption !== 'string' || caption.length === 0) {
      throw new UnimeError(`row ${i} has no caption in column ${JSON.stringify(data.caption_column)}`, { file: data.path, field: `${field}.caption_column`, fix: `name the caption column (the row has: ${Object.keys(row).join(', ')})` });
    }
    if (negColumn === null) {
      out.push({ image: path.resolve(base, image), caption });
      return;
    }
    const negative = row[negColumn];
    if (typeof negative !== 'string' || negative.length === 0) {
      throw new UnimeError(`row ${i} has no hard-negative caption in column ${JSON.stringify(negColumn)}`, { file: data.path, field: `${field}.negative_column`, fix: `name the column of hard-negative captions, or set it to null (the row has: ${Object.keys(row).join(', ')})` });
    }
    out.push({ image: path.resolve(base, image), caption, negative });
  });
  if (out.length === 0) throw new UnimeError('the data holds no image-caption rows', { file: data.path, field });
  return out;
}

/** The training rows and, when eval_data is set, the held-out rows (read the same way, all of them, paths next to that file). */
export async function readImageTextSplits(
  data: Parameters<typeof readImageTextRows>[0],
  evalData: string | null,
): Promise<{ rows: ImageTextRow[]; evalRows: ImageTextRow[] | null }> {
  const rows = await readImageTextRows(data);
  const evalRows = evalData !== null ? await readImageTextRows({ ...data, path: evalData, image_root: null, negative_column: null, max_samples: null }, 'eval_data') : null;
  return { rows, evalRows };
}

/** CLIP's processor at `size`: shortest edge to size (bicubic), centre crop, 1/255, OpenAI CLIP mean/std. */
export function defaultClipProcessor(size: number): Record<string, unknown> {
  return {
    image_processor_type: 'CLIPImageProcessor',
    do_resize: true,
    size: { shortest_edge: size },
    resample: 3,
    do_center_crop: true,
    crop_size: { height: size, width: size },
    do_rescale: true,
    rescale_factor: 1 / 255,
    do_normalize: true,
    image_mean: [...OPENAI_CLIP_MEAN],
    image_std: [...OPENAI_CLIP_STD],
  };
}

/** Decoded, preprocessed images kept in memory up to a byte budget (epochs re-read the same files). */
export class PixelStore {
  private readonly cache = new Map<string, PixelArray>();
  private bytes = 0;

  constructor(
    readonly processor: ImageProcessorConfig,
    readonly size: number,
    private readonly budgetBytes = 1 << 30,
  ) {}

  async get(file: string): Promise<PixelArray> {
    const hit = this.cache.get(file);
    if (hit) return hit;
    const px = preprocessImage(await decodeImage(file), this.processor);
    if (px.height !== this.size || px.width !== this.size) {
      throw new UnimeError(`the image preprocesses to ${px.height}x${px.width}, the vision tower takes ${this.size}x${this.size}`, { file, field: 'image_size', fix: "set image_size to the tower's input size" });
    }
    if (this.bytes + px.data.byteLength <= this.budgetBytes) {
      this.cache.set(file, px);
      this.bytes += px.data.byteLength;
    }
    return px;
  }

  async batch(files: readonly string[]): Promise<Tensor> {
    const arrays = await Promise.all(files.map((f) => this.get(f)));
    const n = 3 * this.size * this.size;
    const data = new Float32Array(files.length * n);
    arrays.forEach((a, i) => data.set(a.data, i * n));
    return tf.tensor4d(data, [files.length, 3, this.size, this.size]);
  }
}

/** Embed images (rows of [n, embed_dim], L2-normalised) without a tape. */
export async function embedImages(model: ClipSideModel, pixels: PixelStore, files: readonly string[], batchSize = 64): Promise<Float32Array> {
  const d = model.config.embed_dim;
  const out = new Float32Array(files.length * d);
  for (let i = 0; i < files.length; i += batchSize) {
    const px = await pixels.batch(files.slice(i, i + batchSize));
    const e = tf.tidy(() => l2Normalize(model.imageEmbeds(px)));
    px.dispose();
    out.set((await e.data()) as Float32Array, i * d);
    e.dispose();
  }
  return out;
}

/** Image<->caption retrieval over rows (one caption per row; rows sharing an image share it). */
async function retrievalOn(model: ClipSideModel, pixels: PixelStore, feats: Float32Array, dim: number, rows: readonly ImageTextRow[]): Promise<RetrievalScores> {
  const images = [...new Set(rows.map((r) => r.image))];
  const imageIndex = new Map(images.map((f, i) => [f, i]));
  const img = await embedImages(model, pixels, images);
  const txt = await model.textEmbeddings(feats, dim);
  const d = model.config.embed_dim;
  return scoreRetrieval(embeddingMatrix(img, images.length, d, 'images'), embeddingMatrix(txt, rows.length, d, 'captions'), Int32Array.from(rows.map((r) => imageIndex.get(r.image)!)));
}

/** The text features: a teacher-embed cache named by the stage, or one this stage computes with text_model. */
async function textFeatures(ctx: StageContext<ClipTrainStage>): Promise<LlmFeatures> {
  const s = ctx.stage;
  const textModelDir = await ctx.resolveModel(s.text_model);
  let dir: string;
  if (s.text_features !== null) dir = path.resolve(s.text_features);
  else {
    dir = path.join(ctx.outputDir, TEXT_FEATURES_DIR);
    const te = s.text_encoder;
    const stage: TeacherEmbedStage = teacherEmbedSchema.parse({
      name: `${s.name}-text-features`,
      kind: 'teacher-embed',
      output_dir: dir,
      teacher: s.text_model,
      pooling: te.pooling,
      instruction: te.instruction,
      max_length: te.max_length,
      batch_size: te.batch_size,
      bidirectional: te.bidirectional,
      data: { path: s.data.path, format: s.data.format, text_columns: [s.data.caption_column, ...(s.data.negative_column !== null ? [s.data.negative_column] : [])], max_samples: s.data.max_samples },
      cache_dir: dir,
    });
    ctx.log.info(`clip-train: computing text features with ${s.text_model.path} into ${dir}`);
    await runTeacherEmbed({ ...ctx, stage, initFrom: null, outputDir: dir } as unknown as StageContext<TeacherEmbedStage>);
  }
  const cache = await readTeacherCache(dir);
  const imported = cache.model.startsWith('import:');
  const encoding: LlmTextEncoding = imported
    ? { model_dir: textModelDir, model: s.text_model.path, adapters: [], pooling: s.text_encoder.pooling, normalize: cache.index.normalize, instruction: s.text_encoder.instruction, max_length: s.text_encoder.max_length, bidirectional: s.text_encoder.bidirectional, dim: cache.dim }
    : encodingOfCache(cache, textModelDir);
  if (imported) ctx.log.warn(`clip-train: the text features were imported (${cache.model}); texts not in them (evaluation prompts) are embedded with ${s.text_model.path} and text_encoder's settings, which must match how they were made`);
  return new LlmFeatures(encoding, cache);
}

interface Built {
  model: ClipSideModel;
  processor: Record<string, unknown>;
  /** The pretrained CLIP's folder (ProCLIP align needs its text tower). */
  clipDir: string | null;
}

function projectionTo(outDim: number, inDim: number, rng: Rng): Linear {
  return new Linear(initProjection(outDim, inDim, rng, 'visual_projection.weight'), null);
}

/** The starting model: init_from's, a pretrained tower, or a fresh one; plus the method's projection and adapter. */
async function buildModel(ctx: StageContext<ClipTrainStage>, featDim: number, encoding: LlmTextEncoding, rng: Rng): Promise<Built> {
  const s = ctx.stage;
  const initDir = ctx.initFrom !== null ? path.join(ctx.initFrom, CLIP_MODEL_DIR) : null;
  if (initDir !== null) {
    if (!isClipSideModel(initDir)) {
      throw new UnimeError(`init_from must name an earlier clip-train stage (its model/${CLIP_SIDE_CONFIG})`, { file: initDir, field: 'init_from', fix: 'name the clip-train stage to continue from, or drop init_from' });
    }
    ctx.log.info(`clip-train: starting from ${initDir}`);
    const model = await loadClipSideModel(initDir, { trainable: true });
    if (model.config.text.encoder.dim !== featDim) {
      model.dispose();
      throw new UnimeError(`init_from's model was trained on ${model.config.text.encoder.dim}-d text features, these are ${featDim}-d`, { field: 'init_from', fix: 'use the same text features as the stage it continues' });
    }
    const processor = JSON.parse(await fsp.readFile(path.join(initDir, PREPROCESSOR_CONFIG), 'utf8')) as Record<string, unknown>;
    const clipDir = s.method === 'proclip' && s.clip_text_model !== null ? await ctx.resolveModel(s.clip_text_model) : null;
    return { model: withMethod(model, s, encoding), processor, clipDir };
  }

  let tower: VisionTransformer;
  let pretrainedProj: tf.Variable | null = null;
  let processor: Record<string, unknown> = defaultClipProcessor(s.image_size);
  let clipDir: string | null = null;
  if (s.vision.model !== null) {
    const dir = await ctx.resolveModel(s.vision.model);
    if (isClipSideModel(dir)) {
      const m = await loadClipSideModel(dir, { trainable: true });
      tower = m.tower;
      if (m.imageProjection instanceof Linear) pretrainedProj = m.imageProjection.weight as tf.Variable;
      else if (m.imageProjection instanceof MlpHead) m.imageProjection.dispose();
      m.textAdapter?.dispose();
      m.logScale?.dispose();
    } else {
      ctx.log.info(`clip-train: loading the vision tower of ${s.vision.model.path}`);
      const clip = await loadClipModel(dir, { trainable: true, textTower: false });
      tower = clip.vision;
      pretrainedProj = clip.visualProjection;
      clip.textProjection?.dispose();
      clip.logitScale?.dispose();
      clipDir = dir;
    }
    if (existsSync(path.join(dir, PREPROCESSOR_CONFIG))) processor = JSON.parse(await fsp.readFile(path.join(dir, PREPROCESSOR_CONFIG), 'utf8')) as Record<string, unknown>;
    if (tower.config.imageSize !== s.image_size) {
      tower.dispose();
      throw new UnimeError(`the vision tower takes ${tower.config.imageSize}px images, the stage says image_size ${s.image_size}`, { field: 'image_size', fix: `set image_size: ${tower.config.imageSize}` });
    }
  } else {
    ctx.log.info(`clip-train: a new ${s.vision.arch} vision tower at ${s.image_size}px (trained from scratch)`);
    tower = initVisionTower(s.vision.arch, { imageSize: s.image_size, rng: rng.fork('vision'), namePrefix: 'vision_model.' });
  }
  if (s.method === 'proclip' && s.clip_text_model !== null) clipDir = await ctx.resolveModel(s.clip_text_model);

  const hidden = tower.config.hiddenSize;
  let config: ClipSideConfig;
  let proj: Linear | MlpHead;
  if (s.method === 'lift') {
    if (s.head.out_dim !== featDim) {
      tower.dispose();
      pretrainedProj?.dispose();
      throw new UnimeError(`LIFT maps images onto the text features, so head.out_dim must be their width ${featDim}, got ${s.head.out_dim}`, { field: 'head.out_dim', fix: `set head.out_dim: ${featDim}` });
    }
    pretrainedProj?.dispose();
    const head = { inDim: hidden, hiddenDim: s.head.hidden_dim, outDim: s.head.out_dim };
    proj = new MlpHead(head, rng.fork('image_head'), 'image_head.');
    config = baseConfig(s, featDim, encoding, { pooling: s.vision.pooling, projection: 'mlp', head, image_size: s.image_size }, null);
  } else {
    const embedDim = s.method === 'llm2clip' ? s.adapter.embed_dim : (pretrainedProj?.shape[0] ?? hidden);
    if (pretrainedProj !== null && pretrainedProj.shape[0] !== embedDim) {
      throw new UnimeError(`the pretrained visual projection maps to ${pretrainedProj.shape[0]}, adapter.embed_dim is ${embedDim}`, { field: 'adapter.embed_dim', fix: `set adapter.embed_dim: ${pretrainedProj.shape[0]}` });
    }
    proj = pretrainedProj !== null ? new Linear(pretrainedProj, null) : projectionTo(embedDim, hidden, rng.fork('visual_projection'));
    const adapter = { inDim: featDim, blocks: s.adapter.blocks, hiddenMult: s.adapter.hidden_mult, embedDim };
    config = baseConfig(s, featDim, encoding, { pooling: s.vision.pooling, projection: 'linear', image_size: s.image_size }, adapter);
  }
  const adapter = config.text.adapter !== null ? new ResidualMlpAdapter(config.text.adapter, rng.fork('text_adapter'), 'text_adapter.') : null;
  const needsScale = s.method === 'llm2clip' || (s.method === 'lift' && s.loss.type === 'infonce') || s.method === 'proclip';
  const logScale = needsScale ? namedVariable(tf.scalar(Math.log(s.loss.logit_scale_init)), true, 'logit_scale') : null;
  return { model: new ClipSideModel(config, tower, proj, adapter, logScale), processor, clipDir };
}

function baseConfig(s: ClipTrainStage, featDim: number, encoding: LlmTextEncoding, image: ClipSideConfig['image'], adapter: ClipSideConfig['text']['adapter']): ClipSideConfig {
  return { format: CLIP_SIDE_FORMAT, version: 1, method: s.method, embed_dim: adapter?.embedDim ?? image.head?.outDim ?? featDim, image, text: { encoder: { ...encoding, dim: featDim }, adapter }, logit_scale: null };
}

/** A model loaded from init_from, checked against this stage's method (the adapter must exist when the method has one). */
function withMethod(model: ClipSideModel, s: ClipTrainStage, encoding: LlmTextEncoding): ClipSideModel {
  if ((s.method === 'lift') !== (model.textAdapter === null)) {
    const method = model.config.method;
    model.dispose();
    throw new UnimeError(`init_from's model (${method}) ${s.method === 'lift' ? 'has a text adapter, which LIFT does not' : 'has no text adapter'}`, { field: 'init_from', fix: 'continue from a stage of the same method' });
  }
  const cfg: ClipSideConfig = { ...model.config, method: s.method, text: { ...model.config.text, encoder: encoding } };
  return new ClipSideModel(cfg, model.tower, model.imageProjection, model.textAdapter, model.logScale);
}

/** The frozen CLIP text encoder's embeddings of `texts` (ProCLIP align's targets), [n, projection_dim]. */
async function clipTextTargets(clipDir: string, texts: readonly string[], log: StageContext['log']): Promise<{ data: Float32Array; dim: number }> {
  log.info(`clip-train: embedding ${texts.length} captions with the CLIP text encoder of ${clipDir}`);
  const clip = await loadClipModel(clipDir, { trainable: false, textTower: true });
  const tokenizer = await loadTokenizer(clipDir);
  try {
    if (clip.text === null || clip.textProjection === null) throw new UnimeError('the checkpoint has no CLIP text tower with a projection', { file: clipDir, field: 'clip_text_model', fix: 'point at a CLIPModel checkpoint' });
    const dim = clip.textProjection.shape[0]!;
    const out = new Float32Array(texts.length * dim);
    const maxLength = clip.text.config.maxPositions;
    const eos = clip.text.config.eosTokenId;
    for (let i = 0; i < texts.length; i += 64) {
      const b = encodeBatch(tokenizer, texts.slice(i, i + 64), { maxLength: maxLength - 1, paddingSide: 'right' });
      // CLIP pools at the end-of-text token: append it where the tokenizer does not
      const w = b.seqLen + 1;
      const ids = new Int32Array(b.batchSize * w);
      const mask = new Int32Array(b.batchSize * w);
      for (let r = 0; r < b.batchSize; r++) {
        let n = 0;
        for (let c = 0; c < b.seqLen; c++) {
          ids[r * w + c] = b.inputIds[r * b.seqLen + c]!;
          mask[r * w + c] = b.attentionMask[r * b.seqLen + c]!;
          n += b.attentionMask[r * b.seqLen + c]!;
        }
        if (n === 0 || ids[r * w + n - 1] !== eos) {
          ids[r * w + n] = eos;
          mask[r * w + n] = 1;
        }
      }
      const e = tf.tidy(() => clip.textEmbeds(tf.tensor2d(ids, [b.batchSize, w], 'int32'), tf.tensor2d(mask, [b.batchSize, w], 'int32')));
      out.set((await e.data()) as Float32Array, i * dim);
      e.dispose();
    }
    return { data: out, dim };
  } finally {
    clip.dispose();
  }
}

export async function runClipTrain(ctx: StageContext<ClipTrainStage>): Promise<ClipTrainResult> {
  const t0 = performance.now();
  const s = ctx.stage;
  const t = s.train;
  const rng = new Rng(ctx.recipe.seed).fork(`clip-train:${ctx.index}`);
  const { rows, evalRows } = await readImageTextSplits(s.data, s.eval_data);
  const feats = await textFeatures(ctx);
  const dim = feats.dim;
  const phase = s.method === 'proclip' ? s.phase : undefined;
  let built: Built | null = null;
  let ema: Ema | null = null;
  try {
    // with negative_column: rows' captions, then their hard negatives (row r's at r + rows.length), one array
    const withNegatives = s.data.negative_column !== null;
    const trainFeats = await feats.features([...rows.map((r) => r.caption), ...(withNegatives ? rows.map((r) => r.negative!) : [])]);
    if (feats.computed > 0) ctx.log.warn(`clip-train: ${feats.computed} captions were not in the text feature cache and were embedded now`);
    const evalFeats = evalRows !== null ? await feats.features(evalRows.map((r) => r.caption)) : null;
    feats.dispose(); // the LLM is not needed during training

    built = await buildModel(ctx, dim, feats.encoding, rng);
    const model = built.model;
    const processorCfg = parseImageProcessorConfig(built.processor, path.join(ctx.outputDir, PREPROCESSOR_CONFIG));
    const pixels = new PixelStore(processorCfg, model.tower.config.imageSize);

    // what trains
    const align = s.method === 'proclip' && s.phase === 'align';
    const params: tf.Variable[] = align ? [...model.textAdapter!.variables] : model.variables;
    for (const p of model.variables) (p as { trainable: boolean }).trainable = params.includes(p);
    const trainable = params.reduce((n, p) => n + p.size, 0);

    // ProCLIP's targets / teacher
    let clipTargets: { data: Float32Array; dim: number } | null = null;
    if (align) {
      if (built.clipDir === null) throw new UnimeError('phase align needs the CLIP text encoder', { field: 'clip_text_model' });
      clipTargets = await clipTextTargets(built.clipDir, rows.map((r) => r.caption), ctx.log);
      if (clipTargets.dim !== model.config.embed_dim) {
        throw new UnimeError(`the CLIP text embeddings are ${clipTargets.dim}-d, the adapter maps to ${model.config.embed_dim}`, { field: 'clip_text_model', fix: 'align to the CLIP whose vision tower the stage uses' });
      }
    }
    let teacherTower: VisionTransformer | null = null;
    let teacherProj: Linear | null = null;
    if (s.method === 'proclip' && s.phase === 'finetune') {
      const imageWeights = new Map([...model.namedWeights()].filter(([k]) => k.startsWith('vision_model.') || k === 'visual_projection.weight'));
      ema = new Ema(imageWeights, s.loss.ema_decay);
      teacherTower = new VisionTransformer(model.tower.config, new Map([...model.tower.weights.keys()].map((k) => [k, ema!.shadow.get(`vision_model.${k}`)!])));
      teacherProj = new Linear(ema.shadow.get('visual_projection.weight')!, null);
      const latest = !ctx.fresh ? await findLatestCheckpoint(ctx.outputDir) : null;
      if (latest !== null && existsSync(path.join(latest, EMA_FILE))) {
        const f = await SafetensorsFile.open(path.join(latest, EMA_FILE));
        const saved = new Map<string, { shape: number[]; data: Float32Array }>();
        try {
          for (const n of f.names) saved.set(n, { shape: [...f.info(n).shape], data: await f.readFloat32(n) });
        } finally {
          await f.close();
        }
        ema.load(saved, Number(f.metadata?.updates ?? 0), path.join(latest, EMA_FILE));
      }
    }

    const pickFeats = (src: Float32Array, d: number, idx: readonly number[]) => {
      const out = new Float32Array(idx.length * d);
      idx.forEach((r, i) => out.set(src.subarray(r * d, (r + 1) * d), i * d));
      return tf.tensor2d(out, [idx.length, d]);
    };

    const before = evalRows !== null && evalFeats !== null ? await retrievalOn(model, pixels, evalFeats, dim, evalRows) : null;
    const chance = evalRows !== null ? 1 / new Set(evalRows.map((r) => r.image)).size : null;
    if (before) ctx.log.info(`clip-train: retrieval before training: i2t R@1 ${before.i2t_r1.toFixed(1)}, t2i R@1 ${before.t2i_r1.toFixed(1)} (chance ${(100 * chance!).toFixed(1)})`);

    const indices = rows.map((_, i) => i);
    const data = new ShuffledBatches(indices, t.batch_size, rng.fork('data'), { shuffle: true });
    const lrScale = s.vision.layer_decay < 1 ? layerwiseLrScale('vision_model.', model.tower.config.numLayers, s.vision.layer_decay) : undefined;
    ctx.log.info(`clip-train: ${s.method}${phase ? ` (${phase})` : ''}, ${rows.length} pairs${withNegatives ? ' with a hard-negative caption each' : ''}, ${trainable} trainable parameters, batch ${t.batch_size}, text features ${dim}-d -> joint space ${model.config.embed_dim}-d`);

    const maxScale = s.loss.logit_scale_max;
    // negTxt: the batch's hard-negative captions embedded (negative_column), else null
    const lossOf = (img: Tensor | null, txt: Tensor, batch: readonly number[], negTxt: Tensor | null): { loss: Tensor; stats: Record<string, Tensor> } => {
      if (align) {
        const terms = procLipDistillationTerms(txt, pickFeats(clipTargets!.data, clipTargets!.dim, batch), { smoothL1Beta: s.loss.smooth_l1_beta, reduction: s.loss.reduction });
        return { loss: terms.loss, stats: { instance: terms.instance, structure: terms.structure } };
      }
      if (s.method === 'lift' && s.loss.type === 'cosine') return { loss: positiveCosineLoss(img!, txt), stats: {} };
      const contrastive = clipInfoNce(img!, txt, model.logScale!, { maxScale, negativeText: negTxt });
      if (s.method === 'proclip') {
        const teacher = tf.tidy(() => teacherProj!.forward(poolImage(teacherTower!, stepPixels!, model.config.image.pooling)));
        const terms = procLipDistillationTerms(img!, teacher, { smoothL1Beta: s.loss.smooth_l1_beta, reduction: s.loss.reduction });
        return { loss: tf.add(contrastive, tf.mul(terms.loss, s.loss.distill_weight)), stats: { contrastive, instance: terms.instance, structure: terms.structure } };
      }
      return { loss: contrastive, stats: {} };
    };
    // the EMA teacher sees the same pixels as the student in this step
    let stepPixels: Tensor | null = null;

    const result = await train<number[]>({
      ...loopOptionsFromRecipe(t),
      params,
      data,
      outputDir: ctx.outputDir,
      rng,
      resume: !ctx.fresh,
      overwrite: ctx.fresh,
      label: `clip-train ${s.method}`,
      noDecay: (name) => name === 'logit_scale' || /(bias|norm[^.]*\.weight|layer_norm\d?\.weight|layernorm\.weight|embedding)$/.test(name),
      ...(lrScale ? { lrScale } : {}),
      step: async (batch) => {
        const files = batch.map((i) => rows[i]!.image);
        stepPixels = align ? null : await pixels.batch(files);
        try {
          const chunk = t.gradcache_chunk_size;
          let loss: number;
          let grads: Map<string, Tensor>;
          const statsOut: Record<string, number> = {};
          const collect = (st: Record<string, Tensor>) => {
            for (const [k, v] of Object.entries(st)) statsOut[k] = v.dataSync()[0]!;
          };
          if (chunk === null || align) {
            const scalars: Record<string, Tensor> = {};
            const { value, grads: g } = tf.variableGrads(() => {
              const img = align ? null : model.imageEmbeds(stepPixels!);
              const txt = model.textEmbeds(pickFeats(trainFeats, dim, batch));
              const negTxt = withNegatives ? model.textEmbeds(pickFeats(trainFeats, dim, batch.map((r) => r + rows.length))) : null;
              const { loss: l, stats } = lossOf(img, txt, batch, negTxt);
              for (const [k, v] of Object.entries(stats)) scalars[k] = tf.keep(v.clone());
              return l as tf.Scalar;
            }, params);
            loss = value.dataSync()[0]!;
            value.dispose();
            collect(scalars);
            for (const v of Object.values(scalars)) v.dispose();
            grads = new Map(Object.entries(g));
          } else {
            const b = batch.length;
            const positions = batch.map((_, i) => i);
            // targets: rows of trainFeats, the captions and then (negative_column) the hard negatives, so the
            // text side's gradients flow through the encoder for both
            const targets = [...batch, ...(withNegatives ? batch.map((r) => r + rows.length) : [])];
            const out = gradCacheStep<number, number>({
              params,
              lossParams: model.logScale && params.includes(model.logScale) ? [model.logScale] : [],
              encoders: {
                query: (part) => model.imageEmbeds(tf.gather(stepPixels!, tf.tensor1d(part, 'int32'))),
                target: (part) => model.textEmbeds(pickFeats(trainFeats, dim, part)),
              },
              batch: { query: positions, target: targets },
              chunkSize: chunk,
              loss: (q, tx) => (withNegatives ? lossOf(q, tf.slice(tx, [0, 0], [b, -1]), batch, tf.slice(tx, [b, 0], [b, -1])) : lossOf(q, tx, batch, null)).loss,
            });
            loss = out.loss;
            grads = out.grads;
          }
          if (model.logScale) statsOut.logit_scale = Math.exp(model.logScale.dataSync()[0]!);
          return { loss, grads, samples: batch.length, stats: statsOut };
        } finally {
          stepPixels?.dispose();
          stepPixels = null;
        }
      },
      onStep: () => {
        ema?.update();
      },
      onCheckpoint: async (info) => {
        if (ema !== null) {
          const state = await ema.state();
          const tensors: Record<string, { dtype: 'F32'; shape: number[]; data: Float32Array }> = {};
          for (const [k, v] of state) tensors[k] = { dtype: 'F32', ...v };
          await writeSafetensors(path.join(info.dir, EMA_FILE), tensors, { metadata: { updates: String(ema.updates) } });
        }
      },
    });

    const after = evalRows !== null && evalFeats !== null ? await retrievalOn(model, pixels, evalFeats, dim, evalRows) : null;
    const output = path.join(ctx.outputDir, CLIP_MODEL_DIR);
    await model.save(output, built.processor);
    const seconds = (performance.now() - t0) / 1000;
    ctx.log.info(
      `clip-train: ${result.step} steps in ${seconds.toFixed(1)}s` +
        (after ? `; retrieval i2t R@1 ${before!.i2t_r1.toFixed(1)} -> ${after.i2t_r1.toFixed(1)}, t2i R@1 ${before!.t2i_r1.toFixed(1)} -> ${after.t2i_r1.toFixed(1)} (chance ${(100 * chance!).toFixed(1)})` : '') +
        `; saved ${output}`,
    );
    return {
      ...lossSummary(result),
      method: s.method,
      ...(phase ? { phase } : {}),
      rows: rows.length,
      negatives: withNegatives ? rows.length : 0,
      trainable_parameters: trainable,
      retrieval_before: before,
      retrieval_after: after,
      chance_r1: chance === null ? null : 100 * chance,
      output,
      seconds,
    };
  } finally {
    feats.dispose();
    built?.model.dispose();
    ema?.dispose();
  }
}

attachStageRunner<ClipTrainStage>('clip-train', runClipTrain);
