/**
 * CLIP towers from scratch: named architectures (open_clip style) and random initialisation,
 * deterministic from an Rng. Every tensor draws from its own stream, rng.fork(<its HF key>), so the
 * values do not depend on the order tensors are made in or on the variable names.
 *
 * CLIP initialisation follows transformers' CLIPPreTrainedModel._init_weights (initializer_range 0.02,
 * factor = initializer_factor, default 1): token / position / patch embeddings N(0, 0.02 f); class
 * embedding N(0, H^-0.5 f); q/k/v_proj N(0, H^-0.5 (2L)^-0.5 f); out_proj N(0, H^-0.5 f); fc1
 * N(0, (2H)^-0.5 f); fc2 N(0, H^-0.5 (2L)^-0.5 f); every Linear bias 0; LayerNorm weight 1, bias 0;
 * visual / text projection N(0, in^-0.5 f); logit_scale = logit_scale_init_value.
 * SigLIP (kind 'siglip') follows SiglipPreTrainedModel._init_weights: position embedding N(0, H^-0.5),
 * patch embedding lecun-normal (here a plain normal of std fan_in^-0.5, not truncated), attention and
 * MLP weights xavier-uniform, attention biases 0, MLP biases N(0, 1e-6), the head's probe and in_proj
 * xavier-uniform.
 */
import { UnimeError } from '../../errors.js';
import type { ActivationName } from '../../runtime/native/addon.js';
import type { Rng } from '../../runtime/rng.js';
import type { tf } from '../../runtime/tf.js';
import { buildClipVisionConfig, buildSiglipVisionConfig, HF_ACTIVATIONS, type VisionConfig } from '../vision/config.js';
import { expectedVisionWeights, VisionTransformer } from '../vision/tower.js';
import { CLIP_LOGIT_SCALE_INIT, ClipModel, TEXT_PREFIX, VISION_PREFIX } from './model.js';
import { type ClipTextConfig, ClipTextTransformer, expectedClipTextWeights, hfActivationName } from './text-tower.js';
import { variableFrom } from './variables.js';

export interface VisionArch {
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  intermediateSize: number;
  patchSize: number;
  /** The image side the architecture is trained at (224 unless the name says otherwise). */
  imageSize: number;
  activation: ActivationName;
  layerNormEps: number;
}

const vit = (hiddenSize: number, numLayers: number, numHeads: number, intermediateSize: number, patchSize: number, imageSize = 224): VisionArch => ({
  hiddenSize,
  numLayers,
  numHeads,
  intermediateSize,
  patchSize,
  imageSize,
  activation: 'quickGelu',
  layerNormEps: 1e-5,
});

/** OpenAI CLIP's vision towers, and two tiny ones for quick CPU runs. */
export const VISION_ARCHS: Readonly<Record<string, VisionArch>> = {
  'vit-b-16': vit(768, 12, 12, 3072, 16),
  'vit-b-32': vit(768, 12, 12, 3072, 32),
  'vit-l-14': vit(1024, 24, 16, 4096, 14),
  'vit-l-14-336': vit(1024, 24, 16, 4096, 14, 336),
  'vit-tiny-8': vit(64, 2, 4, 256, 8, 32),
  'vit-mini-8': vit(128, 4, 4, 512, 8, 64),
};

export interface TextArch {
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  intermediateSize: number;
}

/** CLIP's text towers: 'text-b' is OpenAI's ViT-B text transformer; the others are for quick CPU runs. */
export const TEXT_ARCHS: Readonly<Record<string, TextArch>> = {
  'text-tiny': { hiddenSize: 64, numLayers: 2, numHeads: 4, intermediateSize: 256 },
  'text-mini': { hiddenSize: 128, numLayers: 4, numHeads: 4, intermediateSize: 512 },
  'text-b': { hiddenSize: 512, numLayers: 12, numHeads: 8, intermediateSize: 2048 },
};

export type VisionKindForInit = 'clip' | 'siglip';

export interface InitVisionOptions {
  rng: Rng;
  /** Image side (default: the architecture's). */
  imageSize?: number;
  /** 'clip' (class token, pre_layrnorm; default) or 'siglip' (patch bias, attention-pooling head). */
  kind?: VisionKindForInit;
  /** Variable names are namePrefix + HF key (default 'vision_model.'). */
  namePrefix?: string;
  /** transformers' initializer_factor (default 1). */
  initializerFactor?: number;
}

/**
 * The VisionConfig of a named architecture, or of a partial one (missing fields from 'vit-b-16'):
 * validated as a config.json would be.
 */
export function visionArchConfig(arch: string | Partial<VisionArch>, options: { imageSize?: number; kind?: VisionKindForInit } = {}): VisionConfig {
  let a: VisionArch;
  if (typeof arch === 'string') {
    const preset = VISION_ARCHS[arch];
    if (!preset) {
      throw new UnimeError(`unknown vision architecture ${JSON.stringify(arch)}`, {
        field: 'vision.arch',
        fix: `use one of ${Object.keys(VISION_ARCHS).join(', ')}, or give the fields (hiddenSize, numLayers, numHeads, intermediateSize, patchSize)`,
      });
    }
    a = preset;
  } else {
    a = { ...VISION_ARCHS['vit-b-16']!, ...arch };
  }
  const kind = options.kind ?? 'clip';
  const hf = {
    model_type: kind === 'clip' ? 'clip_vision_model' : 'siglip_vision_model',
    hidden_size: a.hiddenSize,
    intermediate_size: a.intermediateSize,
    num_hidden_layers: a.numLayers,
    num_attention_heads: a.numHeads,
    image_size: options.imageSize ?? a.imageSize,
    patch_size: a.patchSize,
    hidden_act: hfActivationName(a.activation),
    layer_norm_eps: a.layerNormEps,
    ...(kind === 'siglip' ? { vision_use_head: true } : {}),
  };
  const build = kind === 'clip' ? buildClipVisionConfig : buildSiglipVisionConfig;
  return build(hf, { file: 'vision.arch', fieldPrefix: '' });
}

/** Draws the tensor named `key` (its HF key) with the rule of one transformers _init_weights. */
type Initialiser = (key: string, shape: number[], rng: Rng) => Float32Array;

const size = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

function filled(shape: number[], value: number): Float32Array {
  return new Float32Array(size(shape)).fill(value);
}

function normal(shape: number[], rng: Rng, std: number): Float32Array {
  return rng.fillNormal(new Float32Array(size(shape)), 0, std);
}

function xavierUniform(shape: number[], rng: Rng): Float32Array {
  const [out, inp] = shape as [number, number];
  const a = Math.sqrt(6 / (out + inp));
  return rng.fillUniform(new Float32Array(size(shape)), -a, a);
}

const LAYER_NORM = /(layer_norm[12]|pre_layrnorm|post_layernorm|final_layer_norm|head\.layernorm)\.(weight|bias)$/;

/** CLIPPreTrainedModel._init_weights for one tower of width H and depth L. */
function clipInitialiser(H: number, L: number, f: number): Initialiser {
  const inProj = H ** -0.5 * (2 * L) ** -0.5 * f;
  return (key, shape, rng) => {
    const ln = LAYER_NORM.exec(key);
    if (ln) return filled(shape, ln[2] === 'weight' ? 1 : 0);
    if (key.endsWith('.bias')) return filled(shape, 0);
    if (key === 'embeddings.class_embedding') return normal(shape, rng, H ** -0.5 * f);
    if (key.startsWith('embeddings.')) return normal(shape, rng, 0.02 * f);
    if (/self_attn\.[qkv]_proj\.weight$/.test(key)) return normal(shape, rng, inProj);
    if (key.endsWith('self_attn.out_proj.weight')) return normal(shape, rng, H ** -0.5 * f);
    if (key.endsWith('mlp.fc1.weight')) return normal(shape, rng, (2 * H) ** -0.5 * f);
    if (key.endsWith('mlp.fc2.weight')) return normal(shape, rng, inProj);
    throw new Error(`clip init: no rule for ${key}`);
  };
}

/** SiglipPreTrainedModel._init_weights for the vision tower. */
function siglipInitialiser(H: number): Initialiser {
  return (key, shape, rng) => {
    const ln = LAYER_NORM.exec(key);
    if (ln) return filled(shape, ln[2] === 'weight' ? 1 : 0);
    if (key === 'embeddings.position_embedding.weight') return normal(shape, rng, H ** -0.5);
    if (key === 'embeddings.patch_embedding.weight') return normal(shape, rng, size(shape.slice(1)) ** -0.5);
    if (key === 'embeddings.patch_embedding.bias') return filled(shape, 0);
    if (key === 'head.probe') return xavierUniform([shape[1]!, shape[2]!], rng);
    if (key.endsWith('mlp.fc1.bias') || key.endsWith('mlp.fc2.bias')) return normal(shape, rng, 1e-6);
    if (key.endsWith('.bias') || key.endsWith('in_proj_bias')) return filled(shape, 0);
    if (key.endsWith('.weight') || key.endsWith('in_proj_weight')) return xavierUniform(shape, rng);
    throw new Error(`siglip init: no rule for ${key}`);
  };
}

function initWeights(expected: Map<string, number[]>, init: Initialiser, rng: Rng, namePrefix: string): Map<string, tf.Variable> {
  const out = new Map<string, tf.Variable>();
  try {
    for (const [key, shape] of expected) out.set(key, variableFrom(init(key, shape, rng.fork(key)), shape, true, namePrefix + key));
    return out;
  } catch (e) {
    for (const v of out.values()) v.dispose();
    throw e;
  }
}

/** A vision tower of trainable variables, randomly initialised. */
export function initVisionTower(arch: string | Partial<VisionArch>, options: InitVisionOptions): VisionTransformer {
  const cfg = visionArchConfig(arch, options);
  const f = options.initializerFactor ?? 1;
  const init = cfg.kind === 'clip' ? clipInitialiser(cfg.hiddenSize, cfg.numLayers, f) : siglipInitialiser(cfg.hiddenSize);
  const withHead = cfg.kind === 'siglip';
  return new VisionTransformer(cfg, initWeights(expectedVisionWeights(cfg, withHead), init, options.rng, options.namePrefix ?? VISION_PREFIX));
}

export interface InitClipTextOptions {
  vocabSize: number;
  eosTokenId: number;
  /** Longest input (default 77, CLIP's). */
  maxPositions?: number;
  preset: string;
  bosTokenId?: number;
  padTokenId?: number;
  /** Default quick_gelu, as OpenAI's CLIP. */
  activation?: ActivationName;
  /** Variable names are namePrefix + HF key (default 'text_model.'). */
  namePrefix?: string;
  initializerFactor?: number;
}

export function clipTextPresetConfig(opts: Omit<InitClipTextOptions, 'namePrefix' | 'initializerFactor'>): ClipTextConfig {
  const arch = TEXT_ARCHS[opts.preset];
  if (!arch) throw new UnimeError(`unknown text architecture ${JSON.stringify(opts.preset)}`, { field: 'text.preset', fix: `use one of ${Object.keys(TEXT_ARCHS).join(', ')}` });
  const posInt = (v: number, field: string, min = 1) => {
    if (!Number.isInteger(v) || v < min) throw new UnimeError(`must be an integer >= ${min}, got ${v}`, { field: `text.${field}` });
    return v;
  };
  const activation = opts.activation ?? 'quickGelu';
  if (!Object.values(HF_ACTIVATIONS).includes(activation)) throw new UnimeError(`activation ${activation} is not supported`, { field: 'text.activation' });
  const vocabSize = posInt(opts.vocabSize, 'vocabSize');
  const eos = posInt(opts.eosTokenId, 'eosTokenId', 0);
  if (eos >= vocabSize) throw new UnimeError(`eosTokenId ${eos} is outside the vocabulary of ${vocabSize}`, { field: 'text.eosTokenId' });
  return {
    vocabSize,
    ...arch,
    maxPositions: posInt(opts.maxPositions ?? 77, 'maxPositions'),
    activation,
    layerNormEps: 1e-5,
    eosTokenId: eos,
    ...(opts.bosTokenId !== undefined ? { bosTokenId: opts.bosTokenId } : {}),
    ...(opts.padTokenId !== undefined ? { padTokenId: opts.padTokenId } : {}),
  };
}

/** CLIP's text tower of trainable variables, randomly initialised. */
export function initClipTextTower(opts: InitClipTextOptions, rng: Rng): ClipTextTransformer {
  const cfg = clipTextPresetConfig(opts);
  const init = clipInitialiser(cfg.hiddenSize, cfg.numLayers, opts.initializerFactor ?? 1);
  return new ClipTextTransformer(cfg, initWeights(expectedClipTextWeights(cfg), init, rng, opts.namePrefix ?? TEXT_PREFIX));
}

/**
 * A bias-free projection [outDim, inDim] (HF Linear layout), N(0, inDim^-0.5 f) as CLIPModel's, drawn
 * from rng itself (pass rng.fork(<key>) for a stream of its own).
 */
export function initProjection(outDim: number, inDim: number, rng: Rng, name = 'projection.weight', initializerFactor = 1): tf.Variable {
  const shape = [outDim, inDim];
  return variableFrom(normal(shape, rng, inDim ** -0.5 * initializerFactor), shape, true, name);
}

/** The scalar log logit scale, ln(1/0.07) unless given. */
export function initLogitScale(value = CLIP_LOGIT_SCALE_INIT, name = 'logit_scale'): tf.Variable {
  return variableFrom(new Float32Array([value]), [], true, name);
}

export interface InitClipModelOptions {
  vision: string | Partial<VisionArch>;
  imageSize?: number;
  /** The text tower (null: vision side only, still with visual_projection). */
  text: Omit<InitClipTextOptions, 'namePrefix' | 'initializerFactor'> | null;
  projectionDim: number;
  rng: Rng;
  /** Prepended to every HF key to name the variables (default ''). */
  namePrefix?: string;
  logitScaleInit?: number;
  initializerFactor?: number;
}

/** A whole CLIP dual encoder from scratch; the vision tower, text tower and projections draw from rng.fork(<part>). */
export function initClipModel(o: InitClipModelOptions): ClipModel {
  const p = o.namePrefix ?? '';
  const f = o.initializerFactor ?? 1;
  const made: { dispose(): void }[] = [];
  try {
    const vision = initVisionTower(o.vision, { rng: o.rng.fork('vision_model'), ...(o.imageSize !== undefined ? { imageSize: o.imageSize } : {}), namePrefix: p + VISION_PREFIX, initializerFactor: f });
    made.push(vision);
    const text = o.text ? initClipTextTower({ ...o.text, namePrefix: p + TEXT_PREFIX, initializerFactor: f }, o.rng.fork('text_model')) : null;
    if (text) made.push(text);
    const P = o.projectionDim;
    const visualProjection = initProjection(P, vision.config.hiddenSize, o.rng.fork('visual_projection.weight'), p + 'visual_projection.weight', f);
    made.push(visualProjection);
    const textProjection = text ? initProjection(P, text.config.hiddenSize, o.rng.fork('text_projection.weight'), p + 'text_projection.weight', f) : null;
    if (textProjection) made.push(textProjection);
    const logitScaleInit = o.logitScaleInit ?? CLIP_LOGIT_SCALE_INIT;
    const logitScale = initLogitScale(logitScaleInit, p + 'logit_scale');
    made.push(logitScale);
    return new ClipModel({ vision: vision.config, text: text?.config ?? null, projectionDim: P, logitScaleInit }, vision, text, visualProjection, textProjection, logitScale);
  } catch (e) {
    for (const m of made) m.dispose();
    throw e;
  }
}
