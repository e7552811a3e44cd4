/**
 * One builder per model_type: reads that family's config.json fields (with the defaults of its
 * transformers config class) into a DecoderConfig. The differences between the families are all
 * here; the modules are shared.
 */
import type { HfConfig } from '../../io/hf-config.js';
import { ConfigReader, type ConfigDefaults, type ConfigSource, type DecoderConfig } from './config.js';

export type DecoderConfigBuilder = (cfg: HfConfig, src: ConfigSource) => DecoderConfig;

const LLAMA_DEFAULTS: ConfigDefaults = {
  vocab_size: 32000,
  hidden_size: 4096,
  intermediate_size: 11008,
  num_hidden_layers: 32,
  num_attention_heads: 32,
  num_key_value_heads: null,
  max_position_embeddings: 2048,
  rms_norm_eps: 1e-6,
  rope_theta: 10000,
  tie_word_embeddings: false,
};

const MISTRAL_DEFAULTS: ConfigDefaults = {
  vocab_size: 32000,
  hidden_size: 4096,
  intermediate_size: 14336,
  num_hidden_layers: 32,
  num_attention_heads: 32,
  num_key_value_heads: 8,
  max_position_embeddings: 4096 * 32,
  rms_norm_eps: 1e-6,
  rope_theta: 10000,
  tie_word_embeddings: false,
};

const QWEN2_DEFAULTS: ConfigDefaults = {
  vocab_size: 151936,
  hidden_size: 4096,
  intermediate_size: 22016,
  num_hidden_layers: 32,
  num_attention_heads: 32,
  num_key_value_heads: 32,
  max_position_embeddings: 32768,
  rms_norm_eps: 1e-6,
  rope_theta: 10000,
  tie_word_embeddings: false,
};

const QWEN3_DEFAULTS: ConfigDefaults = { ...QWEN2_DEFAULTS, head_dim: 128 };

const PHI3_DEFAULTS: ConfigDefaults = {
  vocab_size: 32064,
  hidden_size: 3072,
  intermediate_size: 8192,
  num_hidden_layers: 32,
  num_attention_heads: 32,
  num_key_value_heads: null,
  max_position_embeddings: 4096,
  rms_norm_eps: 1e-5,
  rope_theta: 10000,
  tie_word_embeddings: false,
};

function common(r: ConfigReader, modelType: string, d: ConfigDefaults) {
  const sizes = r.sizes(d);
  return { modelType, ...sizes, rope: r.rope(sizes.headDim, d) };
}

export const buildLlamaConfig: DecoderConfigBuilder = (cfg, src) => {
  const r = new ConfigReader(cfg, src);
  const attentionBias = r.bool('attention_bias', false);
  return {
    ...common(r, 'llama', LLAMA_DEFAULTS),
    qkvBias: attentionBias,
    oBias: attentionBias,
    mlpBias: r.bool('mlp_bias', false),
    qkNorm: false,
    fusedQkv: false,
    fusedGateUp: false,
    slidingWindow: null,
  };
};

export const buildMistralConfig: DecoderConfigBuilder = (cfg, src) => {
  const r = new ConfigReader(cfg, src);
  return {
    ...common(r, 'mistral', MISTRAL_DEFAULTS),
    qkvBias: false,
    oBias: false,
    mlpBias: false,
    qkNorm: false,
    fusedQkv: false,
    fusedGateUp: false,
    slidingWindow: r.slidingWindow(false, 4096),
  };
};

export const buildQwen2Config: DecoderConfigBuilder = (cfg, src) => {
  const r = new ConfigReader(cfg, src);
  return {
    ...common(r, 'qwen2', QWEN2_DEFAULTS),
    qkvBias: true,
    oBias: false,
    mlpBias: false,
    qkNorm: false,
    fusedQkv: false,
    fusedGateUp: false,
    slidingWindow: r.slidingWindow(true, 4096),
  };
};

export const buildQwen3Config: DecoderConfigBuilder = (cfg, src) => {
  const r = new ConfigReader(cfg, src);
  const attentionBias = r.bool('attention_bias', false);
  return {
    ...common(r, 'qwen3', QWEN3_DEFAULTS),
    qkvBias: attentionBias,
    oBias: attentionBias,
    mlpBias: false,
    qkNorm: true,
    fusedQkv: false,
    fusedGateUp: false,
    slidingWindow: r.slidingWindow(true, 4096),
  };
};

export const buildPhi3Config: DecoderConfigBuilder = (cfg, src) => {
  const r = new ConfigReader(cfg, src);
  return {
    ...common(r, 'phi3', PHI3_DEFAULTS),
    qkvBias: false,
    oBias: false,
    mlpBias: false,
    qkNorm: false,
    fusedQkv: true,
    fusedGateUp: true,
    slidingWindow: r.slidingWindow(false, null),
  };
};
