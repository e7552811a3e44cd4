/**
 * The decoder's own description of itself, built from a Hugging Face config.json by the builder of
 * its model_type. Every field the math needs is explicit here, so the modules never look at the
 * raw config; missing config fields take the defaults of the transformers config class.
 */
import { UnimeError } from '../../errors.js';
import type { HfConfig } from '../../io/hf-config.js';

export class ModelConfigError extends UnimeError {}

export type RopeKind = 'default' | 'linear' | 'dynamic' | 'llama3' | 'longrope';
export const SUPPORTED_ROPE_KINDS: readonly RopeKind[] = ['default', 'linear', 'dynamic', 'llama3', 'longrope'];

export interface RopeConfig {
  kind: RopeKind;
  theta: number;
  /** Leading dims of each head that rotate (head_dim * partial_rotary_factor); the rest pass through. */
  rotaryDim: number;
  maxPositionEmbeddings: number;
  /** linear / dynamic / llama3 */
  factor?: number;
  /** llama3 */
  lowFreqFactor?: number;
  highFreqFactor?: number;
  originalMaxPositionEmbeddings?: number;
  /** longrope: per-frequency divisors, used below / above originalMaxPositionEmbeddings. */
  shortFactor?: number[];
  longFactor?: number[];
  /** longrope: cos and sin are multiplied by this. */
  attentionScaling?: number;
}

export interface DecoderConfig {
  modelType: string;
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  rmsNormEps: number;
  rope: RopeConfig;
  /** Bias on q/k/v projections (Qwen2; Llama/Qwen3 with attention_bias). */
  qkvBias: boolean;
  /** Bias on o_proj (Llama/Qwen3 with attention_bias). */
  oBias: boolean;
  /** Bias on gate/up/down (Llama with mlp_bias). */
  mlpBias: boolean;
  /** Per-head RMSNorm on q and k before RoPE (Qwen3). */
  qkNorm: boolean;
  /** Phi-3: one qkv_proj and one gate_up_proj instead of separate projections. */
  fusedQkv: boolean;
  fusedGateUp: boolean;
  /** Sliding-window attention size when the model uses it, else null. Not implemented: longer inputs are refused. */
  slidingWindow: number | null;
  tieWordEmbeddings: boolean;
}

/** Where a config came from, for error messages: the file and the path of the config inside it. */
export interface ConfigSource {
  file: string;
  /** '' for a top-level config, 'text_config.' for a nested one. */
  fieldPrefix: string;
}

/** Defaults of the transformers config class for the fields a builder reads. */
export interface ConfigDefaults {
  vocab_size: number;
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  /** null: same as num_attention_heads. */
  num_key_value_heads: number | null;
  max_position_embeddings: number;
  rms_norm_eps: number;
  rope_theta: number;
  tie_word_embeddings: boolean;
  head_dim?: number;
}

/** Reads typed fields of one config with defaults, reporting bad values with file and field. */
export class ConfigReader {
  constructor(
    readonly cfg: HfConfig,
    readonly src: ConfigSource,
  ) {}

  field(name: string): string {
    return this.src.fieldPrefix + name;
  }

  fail(name: string, problem: string, fix = 'correct the field in config.json (compare with the model card on the Hub)'): never {
    throw new ModelConfigError(problem, { file: this.src.file, field: this.field(name), fix });
  }

  has(name: string): boolean {
    const v = this.cfg[name];
    return v !== undefined && v !== null;
  }

  int(name: string, dflt?: number): number {
    const v = this.cfg[name];
    if (v === undefined || v === null) {
      if (dflt === undefined) return this.fail(name, 'is required but missing');
      return dflt;
    }
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) return this.fail(name, `must be a positive integer, got ${JSON.stringify(v)}`);
    return v;
  }

  num(name: string, dflt?: number): number {
    const v = this.cfg[name];
    if (v === undefined || v === null) {
      if (dflt === undefined) return this.fail(name, 'is required but missing');
      return dflt;
    }
    if (typeof v !== 'number' || !Number.isFinite(v)) return this.fail(name, `must be a number, got ${JSON.stringify(v)}`);
    return v;
  }

  bool(name: string, dflt: boolean): boolean {
    const v = this.cfg[name];
    if (v === undefined || v === null) return dflt;
    if (typeof v !== 'boolean') return this.fail(name, `must be true or false, got ${JSON.stringify(v)}`);
    return v;
  }

  /** Sizes shared by every decoder here, with the class defaults. */
  sizes(d: ConfigDefaults): Pick<DecoderConfig, 'vocabSize' | 'hiddenSize' | 'intermediateSize' | 'numLayers' | 'numHeads' | 'numKvHeads' | 'headDim' | 'rmsNormEps' | 'tieWordEmbeddings'> {
    const hiddenSize = this.int('hidden_size', d.hidden_size);
    const numHeads = this.int('num_attention_heads', d.num_attention_heads);
    const numKvHeads = this.int('num_key_value_heads', d.num_key_value_heads ?? numHeads);
    if (numHeads % numKvHeads !== 0) {
      this.fail('num_key_value_heads', `must divide num_attention_heads (${numHeads}), got ${numKvHeads}`);
    }
    let headDim: number;
    if (this.has('head_dim')) headDim = this.int('head_dim');
    else if (d.head_dim !== undefined) headDim = d.head_dim;
    else {
      if (hiddenSize % numHeads !== 0) this.fail('num_attention_heads', `must divide hidden_size (${hiddenSize}) when head_dim is not set, got ${numHeads}`);
      headDim = hiddenSize / numHeads;
    }
    const act = this.cfg['hidden_act'];
    if (act !== undefined && act !== null && act !== 'silu' && act !== 'swish') {
      this.fail('hidden_act', `${JSON.stringify(act)} is not supported by these decoders (they use SwiGLU with "silu")`);
    }
    const eps = this.num('rms_norm_eps', d.rms_norm_eps);
    if (!(eps > 0)) this.fail('rms_norm_eps', `must be positive, got ${eps}`);
    return {
      vocabSize: this.int('vocab_size', d.vocab_size),
      hiddenSize,
      intermediateSize: this.int('intermediate_size', d.intermediate_size),
      numLayers: this.int('num_hidden_layers', d.num_hidden_layers),
      numHeads,
      numKvHeads,
      headDim,
      rmsNormEps: eps,
      tieWordEmbeddings: this.bool('tie_word_embeddings', d.tie_word_embeddings),
    };
  }

  /** RoPE from rope_theta, partial_rotary_factor and rope_scaling (HF's names and BC aliases). */
  rope(headDim: number, d: ConfigDefaults): RopeConfig {
    const theta = this.num('rope_theta', d.rope_theta);
    if (!(theta > 0)) this.fail('rope_theta', `must be positive, got ${theta}`);
    const partial = this.num('partial_rotary_factor', 1);
    if (!(partial > 0 && partial <= 1)) this.fail('partial_rotary_factor', `must be in (0, 1], got ${partial}`);
    const rotaryDim = Math.floor(headDim * partial);
    if (rotaryDim % 2 !== 0 || rotaryDim === 0) this.fail('partial_rotary_factor', `gives an odd or zero rotary dimension (${rotaryDim} of head_dim ${headDim})`);
    const maxPositionEmbeddings = this.int('max_position_embeddings', d.max_position_embeddings);
    const base: RopeConfig = { kind: 'default', theta, rotaryDim, maxPositionEmbeddings };

    const rs = this.cfg.rope_scaling;
    if (rs === undefined || rs === null) return base;
    if (typeof rs !== 'object' || Array.isArray(rs)) this.fail('rope_scaling', 'must be an object or null');
    const typeField = rs.rope_type !== undefined && rs.rope_type !== null ? 'rope_type' : 'type';
    const raw = (rs.rope_type ?? rs.type ?? 'default') as unknown;
    const where = `rope_scaling.${typeField}`;
    if (typeof raw !== 'string') this.fail(where, `must be a string, got ${JSON.stringify(raw)}`);
    // Phi-3's early configs call longrope "su".
    const kind = raw === 'su' ? 'longrope' : raw;
    const num = (key: string, dflt?: number): number => {
      const v = (rs as Record<string, unknown>)[key];
      if (v === undefined || v === null) {
        if (dflt === undefined) this.fail(`rope_scaling.${key}`, `is required for rope type "${raw}" but missing`);
        return dflt;
      }
      if (typeof v !== 'number' || !Number.isFinite(v)) this.fail(`rope_scaling.${key}`, `must be a number, got ${JSON.stringify(v)}`);
      return v;
    };
    const list = (key: string): number[] => {
      const v = (rs as Record<string, unknown>)[key];
      const n = rotaryDim / 2;
      if (!Array.isArray(v) || !v.every((x) => typeof x === 'number' && Number.isFinite(x))) {
        this.fail(`rope_scaling.${key}`, `must be a list of ${n} numbers for rope type "${raw}"`);
      }
      if (v.length !== n) this.fail(`rope_scaling.${key}`, `must have ${n} entries (rotary dimension / 2), got ${v.length}`);
      return v as number[];
    };
    switch (kind) {
      case 'default':
        return base;
      case 'linear':
      case 'dynamic':
        return { ...base, kind, factor: num('factor') };
      case 'llama3': {
        const r: RopeConfig = {
          ...base,
          kind,
          factor: num('factor'),
          lowFreqFactor: num('low_freq_factor'),
          highFreqFactor: num('high_freq_factor'),
          originalMaxPositionEmbeddings: num('original_max_position_embeddings'),
        };
        if (!(r.highFreqFactor! > r.lowFreqFactor!)) this.fail('rope_scaling.high_freq_factor', 'must be greater than low_freq_factor');
        return r;
      }
      case 'longrope': {
        // As transformers: a top-level original_max_position_embeddings (Phi-3) fixes the factor as
        // max/original; otherwise rope_scaling.factor is used with max_position_embeddings.
        let original: number;
        let factor: number;
        if (this.has('original_max_position_embeddings')) {
          original = this.int('original_max_position_embeddings');
          factor = maxPositionEmbeddings / original;
        } else {
          original = num('original_max_position_embeddings', maxPositionEmbeddings);
          factor = num('factor');
        }
        const att = (rs as Record<string, unknown>)['attention_factor'];
        const attentionScaling =
          att !== undefined && att !== null
            ? num('attention_factor')
            : factor <= 1
              ? 1
              : Math.sqrt(1 + Math.log(factor) / Math.log(original));
        return {
          ...base,
          kind: 'longrope',
          shortFactor: list('short_factor'),
          longFactor: list('long_factor'),
          originalMaxPositionEmbeddings: original,
          attentionScaling,
        };
      }
      default:
        return this.fail(
          where,
          `RoPE scaling type ${JSON.stringify(raw)} is not supported (supported: ${SUPPORTED_ROPE_KINDS.join(', ')}, and "su" as longrope)`,
          'use a checkpoint whose rope_scaling is one of the supported types, or remove rope_scaling if the model was not trained with it',
        );
    }
  }

  /** Sliding window from sliding_window (+ use_sliding_window where the family has that switch). */
  slidingWindow(hasSwitch: boolean, dflt: number | null): number | null {
    if (hasSwitch && !this.bool('use_sliding_window', false)) return null;
    const v = this.cfg['sliding_window'];
    if (v === null) return null;
    if (v === undefined) return dflt;
    return this.int('sliding_window');
  }
}
