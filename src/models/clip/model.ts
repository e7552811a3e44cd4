/**
 * A CLIP-style dual encoder (transformers' CLIPModel): a vision tower, CLIP's text tower, a bias-free
 * linear projection from each into the shared embedding space, and the learned log temperature. Also
 * the vision-only layouts (CLIPVisionModelWithProjection, CLIPVisionModel, SigLIP's vision model), whose
 * text side is null. Loads from and saves to the Hugging Face layout, so a checkpoint written here
 * loads with transformers' CLIPModel.from_pretrained.
 */
import * as path from 'node:path';
import { UnimeError } from '../../errors.js';
import { writeJsonAtomic } from '../../io/atomic.js';
import { openCheckpoint, writeShardedSafetensors } from '../../io/checkpoint.js';
import { type HfConfig, readHfConfig } from '../../io/hf-config.js';
import type { TensorInput } from '../../io/safetensors.js';
import { tf, type Tensor } from '../../runtime/tf.js';
import { ModelConfigError } from '../text/config.js';
import type { VisionConfig } from '../vision/config.js';
import { selectVisionConfig } from '../vision/load.js';
import { expectedVisionWeights, VisionTransformer } from '../vision/tower.js';
import { checkpointConfigFile, checkWeights, WeightMismatchError } from '../weights.js';
import { buildClipTextConfig, type ClipTextConfig, ClipTextTransformer, clipTextConfigToHf, expectedClipTextWeights, hfActivationName } from './text-tower.js';
import { variableFrom } from './variables.js';

/** ln(1 / 0.07): CLIP's initial logit scale (transformers' logit_scale_init_value default). */
export const CLIP_LOGIT_SCALE_INIT = 2.6592;

export const VISION_PREFIX = 'vision_model.';
export const TEXT_PREFIX = 'text_model.';

export interface ClipModelConfig {
  vision: VisionConfig;
  text: ClipTextConfig | null;
  /** Width of the shared embedding space; null when the model has no projection (SigLIP, CLIPVisionModel). */
  projectionDim: number | null;
  /** The logit_scale_init_value written to config.json. */
  logitScaleInit: number;
}

export class ClipModel {
  constructor(
    readonly config: ClipModelConfig,
    readonly vision: VisionTransformer,
    readonly text: ClipTextTransformer | null,
    /** [projectionDim, vision hidden], HF Linear layout (y = x W^T), no bias. */
    readonly visualProjection: tf.Variable | null,
    /** [projectionDim, text hidden]. */
    readonly textProjection: tf.Variable | null,
    /** Scalar log of the logit scale (logits = exp(logitScale) * cos). */
    readonly logitScale: tf.Variable | null,
  ) {
    const P = config.projectionDim;
    const checkProj = (v: tf.Variable | null, inDim: number, what: string) => {
      if (!v) return;
      if (P === null || v.shape.length !== 2 || v.shape[0] !== P || v.shape[1] !== inDim) {
        throw new UnimeError(`${what} must be [${P ?? 'projectionDim'}, ${inDim}], got [${v.shape.join(', ')}]`);
      }
    };
    checkProj(visualProjection, vision.config.hiddenSize, 'visual_projection');
    if (text) checkProj(textProjection, text.config.hiddenSize, 'text_projection');
    if (logitScale && logitScale.rank !== 0) throw new UnimeError(`logit_scale must be a scalar, got [${logitScale.shape.join(', ')}]`);
  }

  /**
   * Image embeddings [batch, projectionDim] (not normalised), as CLIPModel.get_image_features: the
   * post-normed class token through visual_projection; SigLIP's pooled head output without a projection.
   */
  imageEmbeds(pixels: Tensor): Tensor {
    return tf.tidy(() => {
      const { pooled } = this.vision.forward(pixels);
      if (!pooled) {
        throw new UnimeError('this vision tower has no pooled output (a SigLIP tower without its attention-pooling head)', {
          fix: 'use a checkpoint with the head (vision_use_head: true), or pool lastHiddenState yourself',
        });
      }
      return this.visualProjection ? tf.matMul(pooled, this.visualProjection, false, true) : pooled;
    });
  }

  /** Text embeddings [batch, projectionDim] (not normalised), as CLIPModel.get_text_features. */
  textEmbeds(inputIds: Tensor, attentionMask?: Tensor): Tensor {
    const text = this.text;
    if (!text) throw new UnimeError('this model has no text tower', { fix: 'load it with {textTower: true} from a checkpoint that has text_model.* tensors' });
    return tf.tidy(() => {
      const { pooled } = text.forward(inputIds, attentionMask);
      return this.textProjection ? tf.matMul(pooled, this.textProjection, false, true) : pooled;
    });
  }

  /** Every variable by its Hugging Face key ('vision_model.…', 'text_model.…', 'visual_projection.weight', 'logit_scale'). */
  namedWeights(): Map<string, tf.Variable> {
    const out = new Map<string, tf.Variable>();
    for (const [k, v] of this.vision.weights) out.set(VISION_PREFIX + k, v);
    if (this.text) for (const [k, v] of this.text.weights) out.set(TEXT_PREFIX + k, v);
    if (this.visualProjection) out.set('visual_projection.weight', this.visualProjection);
    if (this.textProjection) out.set('text_projection.weight', this.textProjection);
    if (this.logitScale) out.set('logit_scale', this.logitScale);
    return out;
  }

  get numParameters(): number {
    let n = 0;
    for (const v of this.namedWeights().values()) n += v.size;
    return n;
  }

  dispose(): void {
    for (const v of this.namedWeights().values()) v.dispose();
  }
}

// ---------------------------------------------------------------------------------------------
// Loading

export interface LoadClipModelOptions {
  /** Create trainable variables (default true). */
  trainable?: boolean;
  /**
   * Load the text tower and text_projection (default: when config.json describes a CLIP text tower).
   * false reads the vision side only, e.g. to pair CLIP's image tower with another text encoder.
   */
  textTower?: boolean;
  /** Prepended to each HF key to name the variables (default ''); see ./variables.ts. */
  namePrefix?: string;
  /** Fail on tensors under vision_model. / text_model. that the towers do not use (default true). */
  strict?: boolean;
}

/** Buffers some checkpoints carry that no model reads. */
const IGNORED = /(^|\.)embeddings\.position_ids$/;

/**
 * A CLIP-family checkpoint directory (config.json + model.safetensors or shards): CLIPModel,
 * CLIPVisionModelWithProjection / CLIPVisionModel, or the vision side of SigLIP (SiglipModel,
 * SiglipVisionModel).
 */
export async function loadClipModel(dir: string, options: LoadClipModelOptions = {}): Promise<ClipModel> {
  const configFile = await checkpointConfigFile(dir);
  const top = await readHfConfig(configFile);
  const { entry, cfg: visionHf, fieldPrefix } = selectVisionConfig(top, configFile);
  const visionCfg = entry.buildConfig(visionHf, { file: configFile, fieldPrefix });
  const dual = fieldPrefix === 'vision_config.';
  const isSiglipTop = top.model_type === 'siglip';
  const hasClipText = dual && !isSiglipTop && top.text_config !== undefined && top.text_config !== null;
  const wantText = options.textTower ?? hasClipText;
  if (wantText && !hasClipText) {
    throw new ModelConfigError(
      isSiglipTop ? "SigLIP's text tower is not supported here (only CLIP's)" : 'has no CLIP text_config: this checkpoint has no text tower',
      { file: configFile, field: 'text_config', fix: 'load it with {textTower: false} for the vision side alone' },
    );
  }
  const textCfg = wantText ? buildClipTextConfig(top.text_config!, { file: configFile, fieldPrefix: 'text_config.' }) : null;
  const trainable = options.trainable ?? true;
  const strict = options.strict ?? true;
  const namePrefix = options.namePrefix ?? '';

  const ckpt = await openCheckpoint(dir);
  const made: tf.Variable[] = [];
  try {
    const whereWeights = ckpt.indexPath ?? ckpt.files[0] ?? ckpt.path;
    const isClip = visionCfg.kind === 'clip';
    // CLIPModel always has both projections and logit_scale; the vision-only layouts have what they have.
    const hasVisualProj = ckpt.has('visual_projection.weight') || (isClip && dual) || (top.architectures ?? []).includes('CLIPVisionModelWithProjection');
    const projectionDim = hasVisualProj || textCfg ? projectionDimOf(top, configFile) : null;

    const withHead = visionCfg.useHead ?? ckpt.has(`${VISION_PREFIX}head.probe`);
    const visionExpected = expectedVisionWeights(visionCfg, withHead);
    checkWeights(ckpt, VISION_PREFIX, visionExpected, {
      what: `the ${visionCfg.modelType} vision tower`,
      configFile,
      prefixLabel: 'vision',
      strict,
      tolerated: (rel) => IGNORED.test(rel) || (visionCfg.useHead === false && rel.startsWith('head.')),
    });
    let textExpected: Map<string, number[]> | null = null;
    if (textCfg) {
      if (!ckpt.has(`${TEXT_PREFIX}embeddings.token_embedding.weight`)) {
        throw new WeightMismatchError(`config.json describes a text tower but the weights have no ${TEXT_PREFIX}* tensors (looked for ${TEXT_PREFIX}embeddings.token_embedding.weight)`, {
          file: whereWeights,
          field: `${TEXT_PREFIX}embeddings.token_embedding.weight`,
          fix: 'load the vision side alone with {textTower: false}, or point at the full CLIPModel checkpoint',
        });
      }
      textExpected = expectedClipTextWeights(textCfg);
      checkWeights(ckpt, TEXT_PREFIX, textExpected, { what: 'the CLIP text tower', configFile, prefixLabel: 'text', strict, tolerated: (rel) => IGNORED.test(rel) });
    }
    const topExpected = new Map<string, number[]>();
    if (hasVisualProj) topExpected.set('visual_projection.weight', [projectionDim!, visionCfg.hiddenSize]);
    if (textCfg) topExpected.set('text_projection.weight', [projectionDim!, textCfg.hiddenSize]);
    // 0-d in transformers; [1] in some conversions, read as the same scalar
    const scaleShape = ckpt.has('logit_scale') && ckpt.info('logit_scale').shape.length === 1 && ckpt.info('logit_scale').shape[0] === 1 ? [1] : [];
    if ((dual && isClip) || ckpt.has('logit_scale')) topExpected.set('logit_scale', scaleShape);
    checkWeights(ckpt, '', topExpected, { what: 'the CLIP projections', configFile, prefixLabel: 'model', strict: false, tolerated: () => true });

    const read = async (prefix: string, expected: Map<string, number[]>): Promise<Map<string, tf.Variable>> => {
      const out = new Map<string, tf.Variable>();
      for (const [rel, shape] of expected) {
        const v = variableFrom(await ckpt.readFloat32(prefix + rel), rel === 'logit_scale' ? [] : shape, trainable, namePrefix + prefix + rel);
        made.push(v);
        out.set(rel, v);
      }
      return out;
    };
    const vision = new VisionTransformer(visionCfg, await read(VISION_PREFIX, visionExpected));
    const text = textCfg ? new ClipTextTransformer(textCfg, await read(TEXT_PREFIX, textExpected!)) : null;
    const topWeights = await read('', topExpected);
    const logitScaleInit = typeof top.logit_scale_init_value === 'number' ? top.logit_scale_init_value : CLIP_LOGIT_SCALE_INIT;
    return new ClipModel(
      { vision: visionCfg, text: textCfg, projectionDim, logitScaleInit },
      vision,
      text,
      topWeights.get('visual_projection.weight') ?? null,
      topWeights.get('text_projection.weight') ?? null,
      topWeights.get('logit_scale') ?? null,
    );
  } catch (e) {
    for (const v of made) v.dispose();
    throw e;
  } finally {
    await ckpt.close();
  }
}

function projectionDimOf(top: HfConfig, file: string): number {
  const v = top.projection_dim ?? top.vision_config?.projection_dim ?? 512;
  if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) throw new ModelConfigError(`must be a positive integer, got ${JSON.stringify(v)}`, { file, field: 'projection_dim' });
  return v;
}

// ---------------------------------------------------------------------------------------------
// Saving

/** The vision_config (or top-level config of a vision-only model) transformers reads back as this config. */
export function visionConfigToHf(c: VisionConfig): HfConfig {
  const out: HfConfig = {
    model_type: c.kind === 'clip' ? 'clip_vision_model' : 'siglip_vision_model',
    hidden_size: c.hiddenSize,
    intermediate_size: c.intermediateSize,
    num_hidden_layers: c.numLayers,
    num_attention_heads: c.numHeads,
    num_channels: c.numChannels,
    image_size: c.imageSize,
    patch_size: c.patchSize,
    hidden_act: hfActivationName(c.activation),
    layer_norm_eps: c.layerNormEps,
  };
  if (c.kind === 'siglip' && c.useHead !== null) out.vision_use_head = c.useHead;
  return out;
}

/** The config.json of a model: CLIPModel with a text tower, else the vision-only class that fits. */
export function clipConfigJson(model: ClipModel): HfConfig {
  const { config } = model;
  const vision = visionConfigToHf(config.vision);
  if (model.text) {
    return {
      model_type: 'clip',
      architectures: ['CLIPModel'],
      ...(config.projectionDim !== null ? { projection_dim: config.projectionDim } : {}),
      logit_scale_init_value: config.logitScaleInit,
      initializer_factor: 1.0,
      torch_dtype: 'float32',
      text_config: clipTextConfigToHf(model.text.config, config.projectionDim ?? undefined),
      vision_config: { ...vision, ...(config.projectionDim !== null ? { projection_dim: config.projectionDim } : {}) },
    };
  }
  const clip = config.vision.kind === 'clip';
  const arch = clip ? (model.visualProjection ? 'CLIPVisionModelWithProjection' : 'CLIPVisionModel') : 'SiglipVisionModel';
  return {
    ...vision,
    architectures: [arch],
    ...(config.projectionDim !== null ? { projection_dim: config.projectionDim } : {}),
    torch_dtype: 'float32',
  };
}

export interface SaveClipModelOptions {
  /** Largest shard in bytes (default: writeShardedSafetensors' 5 GB). */
  maxShardBytes?: number;
}

/**
 * Write config.json and the weights (float32, HF key names) into `dir`, each file atomically, the
 * weights first so a config never describes weights that are not there yet. A model with a text tower
 * needs both projections and logit_scale, as CLIPModel has them.
 */
export async function saveClipModel(dir: string, model: ClipModel, options: SaveClipModelOptions = {}): Promise<void> {
  if (model.text && !(model.visualProjection && model.textProjection && model.logitScale)) {
    throw new UnimeError('a CLIP model with a text tower needs visual_projection, text_projection and logit_scale to be saved as a CLIPModel', {
      file: dir,
      fix: 'create the missing pieces (initProjection, initLogitScale in src/models/clip/init.ts) before saving',
    });
  }
  const tensors: [string, TensorInput][] = [];
  for (const [name, v] of model.namedWeights()) {
    tensors.push([name, { dtype: 'F32', shape: v.shape, data: v.dataSync() as Float32Array }]);
  }
  await writeShardedSafetensors(dir, tensors, { metadata: { format: 'pt' }, ...(options.maxShardBytes !== undefined ? { maxShardBytes: options.maxShardBytes } : {}) });
  await writeJsonAtomic(path.join(dir, 'config.json'), clipConfigJson(model));
}
