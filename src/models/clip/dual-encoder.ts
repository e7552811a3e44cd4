/**
 * A CLIP-side model as the clip-train stage makes it: an image encoder (a CLIP or SigLIP vision tower,
 * pooled, then a projection or an MLP head) and a text side that is a frozen LLM embedder's feature
 * (optionally through a trainable adapter), both in one joint space.
 *
 * Saved as a folder:
 *   unime_clip.json            {format, version, method, embed_dim, image: {...}, text: {...}, logit_scale}
 *   model.safetensors          vision_model.* (transformers' CLIP/SigLIP vision keys), visual_projection.weight
 *                              or image_head.fc{1,2}.*, text_adapter.* (when the method has one), logit_scale
 *   config.json                the vision tower's config (model_type clip_vision_model / siglip_vision_model)
 *   preprocessor_config.json   the image processor
 * The frozen LLM is not copied: unime_clip.json names its checkpoint, its adapter chain and how it
 * embeds (pooling, instruction, max length, attention direction), so evaluation embeds new texts exactly
 * as the training features were made.
 */
import { promises as fsp } from 'node:fs';
import { CLIP_SIDE_CONFIG, CLIP_SIDE_FORMAT, CLIP_SIDE_WEIGHTS } from './format.js';
import * as path from 'node:path';
import { UnimeError } from '../../errors.js';
import { writeJsonAtomic } from '../../io/atomic.js';
import { writeSafetensors, SafetensorsFile } from '../../io/safetensors.js';
import { tf, type Tensor } from '../../runtime/tf.js';
import { l2Normalize } from '../../losses/common.js';
import { namedVariable, variableFrom } from './variables.js';
import { Linear } from '../text/modules.js';
import { loadVisionTower } from '../vision/load.js';
import { VisionTransformer } from '../vision/tower.js';
import { visionConfigToHf } from './model.js';
import { MlpHead, ResidualMlpAdapter, loadHeadWeights, type MlpHeadConfig, type ResidualMlpAdapterConfig } from './heads.js';
import { Rng } from '../../runtime/rng.js';

export { CLIP_SIDE_CONFIG, CLIP_SIDE_FORMAT, CLIP_SIDE_WEIGHTS, isClipSideModel } from './format.js';

export type ImagePooling = 'cls' | 'mean';

/** How the frozen LLM turns a text into the feature the text side starts from. */
export interface LlmTextEncoding {
  /** The checkpoint directory the features were computed with. */
  model_dir: string;
  /** Its name as the recipe gave it. */
  model: string;
  /** LoRA adapters merged into it, in order. */
  adapters: string[];
  pooling: 'last' | 'mean';
  normalize: boolean;
  instruction: string;
  max_length: number;
  bidirectional: boolean;
  dim: number;
}

export interface ClipSideConfig {
  format: typeof CLIP_SIDE_FORMAT;
  version: 1;
  method: string;
  embed_dim: number;
  image: {
    pooling: ImagePooling;
    /** `linear`: visual_projection (no bias); `mlp`: LIFT's image_head; `none`: the pooled feature itself. */
    projection: 'linear' | 'mlp' | 'none';
    head?: MlpHeadConfig;
    image_size: number;
  };
  text: {
    encoder: LlmTextEncoding;
    /** null: the LLM feature is the text embedding (LIFT). */
    adapter: ResidualMlpAdapterConfig | null;
  };
  /** The trained logit scale (not its log), or null for methods without one. */
  logit_scale: number | null;
}

/** A vision tower with its variables renamed stably (see stableNames); the old tower is disposed. */
export function renameTower(tower: VisionTransformer, prefix = 'vision_model.', trainable = true): VisionTransformer {
  const weights = new Map<string, tf.Variable>();
  for (const [key, v] of tower.weights) {
    weights.set(key, namedVariable(v, trainable, prefix + key));
    v.dispose();
  }
  return new VisionTransformer(tower.config, weights);
}

/** The pooled image feature: CLIP's post-normed class token ('cls'), or the post-normed mean of the patch tokens ('mean'). */
export function poolImage(tower: VisionTransformer, pixels: Tensor, pooling: ImagePooling): Tensor {
  return tf.tidy(() => {
    const out = tower.forward(pixels);
    if (pooling === 'cls') {
      if (out.pooled === undefined) {
        throw new UnimeError('this vision tower has no pooled output (a SigLIP tower without its attention head)', { field: 'vision.pooling', fix: "use pooling: 'mean'" });
      }
      return out.pooled;
    }
    let h = out.lastHiddenState;
    const [b, s, d] = h.shape as [number, number, number];
    if (tower.config.classToken) h = tf.slice(h, [0, 1, 0], [b, s - 1, d]);
    const mean = tf.mean(h, 1);
    // SigLIP's last hidden state is already post-normed; CLIP's is raw, so norm the mean (timm's fc_norm)
    return tower.config.classToken ? tower.postNorm.forward(mean) : mean;
  });
}

export class ClipSideModel {
  constructor(
    readonly config: ClipSideConfig,
    readonly tower: VisionTransformer,
    /** visual_projection (linear) or image_head (mlp); null for 'none'. */
    readonly imageProjection: Linear | MlpHead | null,
    readonly textAdapter: ResidualMlpAdapter | null,
    /** log of the logit scale (learnable), or null. */
    readonly logScale: tf.Variable | null,
  ) {}

  /** [b, 3, s, s] pixels -> [b, embed_dim] image embeddings (not normalised). */
  imageEmbeds(pixels: Tensor): Tensor {
    return tf.tidy(() => {
      const pooled = poolImage(this.tower, pixels, this.config.image.pooling);
      return this.imageProjection === null ? pooled : this.imageProjection.forward(pooled);
    });
  }

  /** [b, llm dim] frozen LLM features -> [b, embed_dim] text embeddings (not normalised). */
  textEmbeds(features: Tensor): Tensor {
    return this.textAdapter === null ? tf.clone(features) : this.textAdapter.forward(features);
  }

  /** Embed LLM features [n, featDim] (row-major) through the text side: [n, embed_dim], L2-normalised, without a tape. */
  async textEmbeddings(features: Float32Array, featDim: number, batchSize = 256): Promise<Float32Array> {
    const n = features.length / featDim;
    const d = this.config.embed_dim;
    const out = new Float32Array(n * d);
    for (let i = 0; i < n; i += batchSize) {
      const rows = Math.min(batchSize, n - i);
      const e = tf.tidy(() => l2Normalize(this.textEmbeds(tf.tensor2d(features.subarray(i * featDim, (i + rows) * featDim), [rows, featDim]))));
      out.set((await e.data()) as Float32Array, i * d);
      e.dispose();
    }
    return out;
  }

  /** The weights under their saved keys. */
  namedWeights(): Map<string, tf.Variable> {
    const out = new Map<string, tf.Variable>();
    for (const [k, v] of this.tower.weights) out.set(`vision_model.${k}`, v);
    if (this.imageProjection instanceof Linear) out.set('visual_projection.weight', this.imageProjection.weight as tf.Variable);
    else if (this.imageProjection instanceof MlpHead) for (const [k, v] of this.imageProjection.weights) out.set(`image_head.${k}`, v);
    if (this.textAdapter) for (const [k, v] of this.textAdapter.weights) out.set(`text_adapter.${k}`, v);
    if (this.logScale) out.set('logit_scale', this.logScale);
    return out;
  }

  /** Write the folder (every file atomically). */
  async save(dir: string, preprocessor: Record<string, unknown>): Promise<void> {
    await fsp.mkdir(dir, { recursive: true });
    const tensors: Record<string, { dtype: 'F32'; shape: number[]; data: Float32Array }> = {};
    for (const [k, v] of this.namedWeights()) tensors[k] = { dtype: 'F32', shape: [...v.shape], data: (await v.data()) as Float32Array };
    await writeSafetensors(path.join(dir, CLIP_SIDE_WEIGHTS), tensors, { metadata: { format: 'pt', producer: CLIP_SIDE_FORMAT } });
    await writeJsonAtomic(path.join(dir, 'config.json'), visionConfigToHf(this.tower.config));
    await writeJsonAtomic(path.join(dir, 'preprocessor_config.json'), preprocessor);
    const logitScale = this.logScale ? Math.exp((await this.logScale.data())[0]!) : null;
    await writeJsonAtomic(path.join(dir, CLIP_SIDE_CONFIG), { ...this.config, logit_scale: logitScale });
  }

  get variables(): tf.Variable[] {
    return [...this.namedWeights().values()];
  }

  dispose(): void {
    for (const v of this.namedWeights().values()) if (!v.isDisposed) v.dispose();
  }
}

export async function readClipSideConfig(dir: string): Promise<ClipSideConfig> {
  const file = path.join(dir, CLIP_SIDE_CONFIG);
  let cfg: ClipSideConfig;
  try {
    cfg = JSON.parse(await fsp.readFile(file, 'utf8')) as ClipSideConfig;
  } catch (e) {
    throw new UnimeError(`cannot read the CLIP-side model description: ${(e as Error).message}`, { file, fix: 'point at the model/ folder of a clip-train stage' });
  }
  if (cfg?.format !== CLIP_SIDE_FORMAT || cfg.version !== 1) {
    throw new UnimeError(`not a CLIP-side model description (format ${JSON.stringify(cfg?.format)}, version ${JSON.stringify(cfg?.version)})`, { file, fix: 'point at the model/ folder of a clip-train stage' });
  }
  return cfg;
}

/** Load a saved CLIP-side model; `trainable` makes every weight a trainable variable (for init_from). */
export async function loadClipSideModel(dir: string, options: { trainable?: boolean } = {}): Promise<ClipSideModel> {
  const cfg = await readClipSideConfig(dir);
  const weightsFile = path.join(dir, CLIP_SIDE_WEIGHTS);
  const trainable = options.trainable ?? false;
  const tower = renameTower(await loadVisionTower(dir, { prefix: 'vision_model.', trainable, strict: false }), 'vision_model.', trainable);
  const f = await SafetensorsFile.open(weightsFile);
  const saved = new Map<string, { shape: number[]; data: Float32Array }>();
  try {
    for (const name of f.names) if (!name.startsWith('vision_model.')) saved.set(name, { shape: [...f.info(name).shape], data: await f.readFloat32(name) });
  } finally {
    await f.close();
  }
  const rng = new Rng(0); // overwritten by the saved weights
  let proj: Linear | MlpHead | null = null;
  let adapter: ResidualMlpAdapter | null = null;
  let logScale: tf.Variable | null = null;
  try {
    if (cfg.image.projection === 'linear') {
      const w = saved.get('visual_projection.weight');
      if (!w) throw new UnimeError('missing tensor visual_projection.weight', { file: weightsFile, fix: 'save the model again with the clip-train stage' });
      proj = new Linear(variableFrom(w.data, w.shape, trainable, 'visual_projection.weight'), null);
    } else if (cfg.image.projection === 'mlp') {
      if (!cfg.image.head) throw new UnimeError('image.head is missing for projection mlp', { file: path.join(dir, CLIP_SIDE_CONFIG) });
      proj = new MlpHead(cfg.image.head, rng, 'image_head.');
      loadHeadWeights(proj.weights, saved, weightsFile, 'image_head.');
    }
    if (cfg.text.adapter !== null) {
      adapter = new ResidualMlpAdapter(cfg.text.adapter, rng, 'text_adapter.');
      loadHeadWeights(adapter.weights, saved, weightsFile, 'text_adapter.');
    }
    const ls = saved.get('logit_scale');
    if (ls) logScale = namedVariable(tf.scalar(ls.data[0]!), true, 'logit_scale');
    for (const v of [...(proj instanceof MlpHead ? proj.variables : []), ...(adapter?.variables ?? []), ...(logScale ? [logScale] : [])]) {
      (v as { trainable: boolean }).trainable = trainable;
    }
  } catch (e) {
    tower.dispose();
    if (proj instanceof Linear) (proj.weight as tf.Variable).dispose();
    else proj?.dispose();
    adapter?.dispose();
    throw e;
  }
  return new ClipSideModel(cfg, tower, proj, adapter, logScale);
}
