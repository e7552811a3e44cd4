/**
 * A vision tower's own description of itself, built from a clip_vision_model or siglip_vision_model
 * config (top level, or the vision_config of a CLIP / SigLIP / LLaVA config). Missing fields take the
 * defaults of the transformers config class.
 */
import type { HfConfig } from '../../io/hf-config.js';
import type { ActivationName } from '../../runtime/native/addon.js';
import { ModelConfigError, type ConfigSource } from '../text/config.js';

export type VisionKind = 'clip' | 'siglip';

export interface VisionConfig {
  kind: VisionKind;
  modelType: string;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  headDim: number;
  numChannels: number;
  imageSize: number;
  patchSize: number;
  /** Patches per side: imageSize / patchSize. */
  gridSize: number;
  /** Sequence length: patches, plus one for CLIP's class token. */
  seqLen: number;
  activation: ActivationName;
  layerNormEps: number;
  /** CLIP: class token, bias-free patch conv, pre_layrnorm; post_layernorm on the class token only. */
  classToken: boolean;
  /** SigLIP's attention-pooling head: true / false from vision_use_head, null = load it when the checkpoint has it. */
  useHead: boolean | null;
}

export type VisionConfigBuilder = (cfg: HfConfig, source: ConfigSource) => VisionConfig;

/** transformers activation names (hidden_act, projector_hidden_act) -> our kernels. */
export const HF_ACTIVATIONS: Record<string, ActivationName> = {
  quick_gelu: 'quickGelu',
  gelu: 'geluErf',
  gelu_pytorch_tanh: 'geluTanh',
  gelu_new: 'geluTanh',
};

interface VisionDefaults {
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  image_size: number;
  patch_size: number;
  hidden_act: string;
  layer_norm_eps: number;
}

function build(kind: VisionKind, defaults: VisionDefaults, cfg: HfConfig, src: ConfigSource): VisionConfig {
  const where = (field: string) => ({ file: src.file, field: src.fieldPrefix + field });
  const int = (field: keyof VisionDefaults | 'num_channels', dflt: number): number => {
    const v = cfg[field] ?? dflt;
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) throw new ModelConfigError(`must be a positive integer, got ${JSON.stringify(v)}`, where(field));
    return v;
  };
  const hiddenSize = int('hidden_size', defaults.hidden_size);
  const numHeads = int('num_attention_heads', defaults.num_attention_heads);
  if (hiddenSize % numHeads !== 0) {
    throw new ModelConfigError(`hidden_size ${hiddenSize} is not divisible by num_attention_heads ${numHeads}`, where('num_attention_heads'));
  }
  const imageSize = int('image_size', defaults.image_size);
  const patchSize = int('patch_size', defaults.patch_size);
  if (imageSize % patchSize !== 0) throw new ModelConfigError(`image_size ${imageSize} is not a multiple of patch_size ${patchSize}`, where('patch_size'));
  const act = cfg.hidden_act ?? defaults.hidden_act;
  const activation = typeof act === 'string' ? HF_ACTIVATIONS[act] : undefined;
  if (!activation) {
    throw new ModelConfigError(`activation ${JSON.stringify(act)} is not supported`, { ...where('hidden_act'), fix: `use one of ${Object.keys(HF_ACTIVATIONS).join(', ')}` });
  }
  const eps = cfg.layer_norm_eps ?? defaults.layer_norm_eps;
  const useHeadRaw = cfg.vision_use_head;
  if (useHeadRaw !== undefined && useHeadRaw !== null && typeof useHeadRaw !== 'boolean') {
    throw new ModelConfigError(`must be true or false, got ${JSON.stringify(useHeadRaw)}`, where('vision_use_head'));
  }
  const gridSize = imageSize / patchSize;
  return {
    kind,
    modelType: cfg.model_type ?? (kind === 'clip' ? 'clip_vision_model' : 'siglip_vision_model'),
    hiddenSize,
    intermediateSize: int('intermediate_size', defaults.intermediate_size),
    numLayers: int('num_hidden_layers', defaults.num_hidden_layers),
    numHeads,
    headDim: hiddenSize / numHeads,
    numChannels: int('num_channels', 3),
    imageSize,
    patchSize,
    gridSize,
    seqLen: gridSize * gridSize + (kind === 'clip' ? 1 : 0),
    activation,
    layerNormEps: eps,
    classToken: kind === 'clip',
    useHead: kind === 'siglip' ? ((useHeadRaw as boolean | null | undefined) ?? null) : false,
  };
}

/** transformers' CLIPVisionConfig. */
export const buildClipVisionConfig: VisionConfigBuilder = (cfg, src) =>
  build('clip', { hidden_size: 768, intermediate_size: 3072, num_hidden_layers: 12, num_attention_heads: 12, image_size: 224, patch_size: 32, hidden_act: 'quick_gelu', layer_norm_eps: 1e-5 }, cfg, src);

/** transformers' SiglipVisionConfig. */
export const buildSiglipVisionConfig: VisionConfigBuilder = (cfg, src) =>
  build('siglip', { hidden_size: 768, intermediate_size: 3072, num_hidden_layers: 12, num_attention_heads: 12, image_size: 224, patch_size: 16, hidden_act: 'gelu_pytorch_tanh', layer_norm_eps: 1e-6 }, cfg, src);

/** LLaVA's choice of vision features: which hidden_states entry (or entries, concatenated) and whether the class token stays. */
export interface FeatureSelection {
  layer: number | number[];
  /** 'default' drops the class token (CLIP); 'full' keeps every position. */
  strategy: 'default' | 'full';
}

/** vision_feature_layer / vision_feature_select_strategy of a LLaVA-family config (transformers' defaults: -2, 'default'). */
export function featureSelectionFromConfig(top: HfConfig, file = 'config.json'): FeatureSelection {
  const layer = top.vision_feature_layer ?? -2;
  const okLayer = (v: unknown) => typeof v === 'number' && Number.isInteger(v);
  if (!(okLayer(layer) || (Array.isArray(layer) && layer.length > 0 && layer.every(okLayer)))) {
    throw new ModelConfigError(`must be an integer or a list of integers, got ${JSON.stringify(layer)}`, { file, field: 'vision_feature_layer' });
  }
  const strategy = top.vision_feature_select_strategy ?? 'default';
  if (strategy !== 'default' && strategy !== 'full') {
    throw new ModelConfigError(`must be "default" or "full", got ${JSON.stringify(strategy)}`, { file, field: 'vision_feature_select_strategy' });
  }
  return { layer: layer as number | number[], strategy };
}

/**
 * Phi-3.5-V's config has no vision_config: its modeling code builds this CLIP ViT-L/14-336 (the config of
 * openai/clip-vit-large-patch14-336) whenever img_processor.name is 'clip_vision_model'.
 */
export const CLIP_VIT_L14_336: HfConfig = {
  model_type: 'clip_vision_model',
  hidden_size: 1024,
  intermediate_size: 4096,
  num_hidden_layers: 24,
  num_attention_heads: 16,
  image_size: 336,
  patch_size: 14,
  hidden_act: 'quick_gelu',
  layer_norm_eps: 1e-5,
  projection_dim: 768,
};
