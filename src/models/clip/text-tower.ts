/**
 * CLIP's text transformer (transformers' CLIPTextTransformer): token + learned position embeddings,
 * the same pre-LN encoder layers as the vision tower but causal and with the padding mask, a final
 * LayerNorm, and the pooled output read at the end-of-text token.
 */
import { UnimeError } from '../../errors.js';
import type { HfConfig } from '../../io/hf-config.js';
import type { ActivationName } from '../../runtime/native/addon.js';
import { tf, type Tensor } from '../../runtime/tf.js';
import { ModelConfigError, type ConfigSource } from '../text/config.js';
import { HF_ACTIVATIONS } from '../vision/config.js';
import { encoderLayerWeights, LayerNorm, VisionEncoderLayer, weightGetter } from '../vision/tower.js';

export interface ClipTextConfig {
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  /** Longest input: rows of the position embedding (77 for OpenAI's CLIP). */
  maxPositions: number;
  activation: ActivationName;
  layerNormEps: number;
  /** 2 selects transformers' legacy pooling (argmax of the ids); anything else the first position holding it. */
  eosTokenId: number;
  bosTokenId?: number;
  padTokenId?: number;
}

/** transformers' CLIPTextConfig defaults for the fields read here. */
const TEXT_DEFAULTS = {
  vocab_size: 49408,
  hidden_size: 512,
  intermediate_size: 2048,
  num_hidden_layers: 12,
  num_attention_heads: 8,
  max_position_embeddings: 77,
  hidden_act: 'quick_gelu',
  layer_norm_eps: 1e-5,
  bos_token_id: 49406,
  eos_token_id: 49407,
  pad_token_id: 1,
};

/** Our activation names -> the hidden_act written into config.json. */
const HF_ACTIVATION_NAMES: Partial<Record<ActivationName, string>> = Object.fromEntries(
  Object.entries(HF_ACTIVATIONS)
    .filter(([k]) => k !== 'gelu_new')
    .map(([k, v]) => [v, k]),
);

export function hfActivationName(a: ActivationName): string {
  const n = HF_ACTIVATION_NAMES[a];
  if (!n) throw new UnimeError(`activation ${a} has no transformers hidden_act name`, { fix: `use one of ${Object.values(HF_ACTIVATIONS).join(', ')}` });
  return n;
}

/** A ClipTextConfig from a clip_text_model config (top level, or the text_config of a CLIP config). */
export function buildClipTextConfig(cfg: HfConfig, src: ConfigSource): ClipTextConfig {
  const where = (field: string) => ({ file: src.file, field: src.fieldPrefix + field });
  const int = (field: keyof typeof TEXT_DEFAULTS, min: number): number => {
    const v = cfg[field] ?? TEXT_DEFAULTS[field];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min) {
      throw new ModelConfigError(`must be an integer >= ${min}, got ${JSON.stringify(v)}`, where(field));
    }
    return v;
  };
  const hiddenSize = int('hidden_size', 1);
  const numHeads = int('num_attention_heads', 1);
  if (hiddenSize % numHeads !== 0) {
    throw new ModelConfigError(`hidden_size ${hiddenSize} is not divisible by num_attention_heads ${numHeads}`, where('num_attention_heads'));
  }
  const act = cfg.hidden_act ?? TEXT_DEFAULTS.hidden_act;
  const activation = typeof act === 'string' ? HF_ACTIVATIONS[act] : undefined;
  if (!activation) {
    throw new ModelConfigError(`activation ${JSON.stringify(act)} is not supported`, { ...where('hidden_act'), fix: `use one of ${Object.keys(HF_ACTIVATIONS).join(', ')}` });
  }
  const eps = cfg.layer_norm_eps ?? TEXT_DEFAULTS.layer_norm_eps;
  if (typeof eps !== 'number' || !(eps > 0)) throw new ModelConfigError(`must be a positive number, got ${JSON.stringify(eps)}`, where('layer_norm_eps'));
  return {
    vocabSize: int('vocab_size', 1),
    hiddenSize,
    intermediateSize: int('intermediate_size', 1),
    numLayers: int('num_hidden_layers', 1),
    numHeads,
    maxPositions: int('max_position_embeddings', 1),
    activation,
    layerNormEps: eps,
    eosTokenId: int('eos_token_id', 0),
    bosTokenId: int('bos_token_id', 0),
    padTokenId: int('pad_token_id', 0),
  };
}

/** The text_config a transformers CLIPTextConfig reads back as this config. */
export function clipTextConfigToHf(c: ClipTextConfig, projectionDim?: number): HfConfig {
  const out: HfConfig = {
    model_type: 'clip_text_model',
    vocab_size: c.vocabSize,
    hidden_size: c.hiddenSize,
    intermediate_size: c.intermediateSize,
    num_hidden_layers: c.numLayers,
    num_attention_heads: c.numHeads,
    max_position_embeddings: c.maxPositions,
    hidden_act: hfActivationName(c.activation),
    layer_norm_eps: c.layerNormEps,
    eos_token_id: c.eosTokenId,
  };
  if (c.bosTokenId !== undefined) out.bos_token_id = c.bosTokenId;
  if (c.padTokenId !== undefined) out.pad_token_id = c.padTokenId;
  if (projectionDim !== undefined) out.projection_dim = projectionDim;
  return out;
}

/** Every weight the text tower reads, with its shape; keys relative to 'text_model.'. */
export function expectedClipTextWeights(c: ClipTextConfig): Map<string, number[]> {
  const { hiddenSize: H, intermediateSize: I } = c;
  const w = new Map<string, number[]>();
  w.set('embeddings.token_embedding.weight', [c.vocabSize, H]);
  w.set('embeddings.position_embedding.weight', [c.maxPositions, H]);
  const norm = (p: string) => {
    w.set(`${p}.weight`, [H]);
    w.set(`${p}.bias`, [H]);
  };
  encoderLayerWeights(w, c.numLayers, H, I);
  norm('final_layer_norm');
  return w;
}

export interface ClipTextOutput {
  /** [batch, seq, hidden], after final_layer_norm (as transformers' last_hidden_state). */
  lastHiddenState: Tensor;
  /** [batch, hidden]: lastHiddenState at each row's end-of-text position. */
  pooled: Tensor;
}

/**
 * Where each row's end-of-text token is, by transformers' rule: with eos_token_id 2 (configs written
 * before the rule was fixed) the argmax of the ids, since OpenAI's end-of-text has the largest id;
 * otherwise the first position holding eos_token_id (position 0 when there is none, as torch's argmax
 * of an all-zero row gives).
 */
export function eosPositions(ids: ArrayLike<number>, batch: number, seq: number, eosTokenId: number): number[] {
  const out: number[] = [];
  for (let b = 0; b < batch; b++) {
    let best = 0;
    if (eosTokenId === 2) {
      for (let s = 1; s < seq; s++) if (ids[b * seq + s]! > ids[b * seq + best]!) best = s;
    } else {
      for (let s = 0; s < seq; s++) {
        if (ids[b * seq + s] === eosTokenId) {
          best = s;
          break;
        }
      }
    }
    out.push(best);
  }
  return out;
}

export class ClipTextTransformer {
  readonly tokenEmbedding: tf.Variable;
  readonly positionEmbedding: tf.Variable;
  readonly layers: VisionEncoderLayer[];
  readonly finalNorm: LayerNorm;

  constructor(
    readonly config: ClipTextConfig,
    /** The weights by key relative to 'text_model.' ('embeddings.token_embedding.weight', ...). */
    readonly weights: ReadonlyMap<string, tf.Variable>,
  ) {
    const get = weightGetter(weights, 'text');
    this.tokenEmbedding = get('embeddings.token_embedding.weight');
    this.positionEmbedding = get('embeddings.position_embedding.weight');
    this.layers = Array.from({ length: config.numLayers }, (_, i) => new VisionEncoderLayer(config, get, i));
    this.finalNorm = LayerNorm.from(get, 'final_layer_norm', config.layerNormEps);
  }

  get numParameters(): number {
    let n = 0;
    for (const v of this.weights.values()) n += v.size;
    return n;
  }

  private check(ids: Tensor, mask: Tensor | undefined): void {
    if (ids.rank !== 2 || ids.dtype !== 'int32') {
      throw new UnimeError(`input ids must be an int32 [batch, seq] tensor, got ${ids.dtype} [${ids.shape.join(', ')}]`);
    }
    const seq = ids.shape[1]!;
    if (seq < 1 || seq > this.config.maxPositions) {
      throw new UnimeError(`input length ${seq} is outside 1..${this.config.maxPositions} (max_position_embeddings)`, {
        fix: `truncate the text to ${this.config.maxPositions} tokens when tokenizing`,
      });
    }
    if (mask && (mask.rank !== 2 || mask.shape[0] !== ids.shape[0] || mask.shape[1] !== seq)) {
      throw new UnimeError(`attention mask must be [${ids.shape.join(', ')}] like the ids, got [${mask.shape.join(', ')}]`);
    }
    const V = this.config.vocabSize;
    for (const v of ids.dataSync()) {
      if (v < 0 || v >= V) throw new UnimeError(`token id ${v} is outside the vocabulary 0..${V - 1}`, { fix: 'use the tokenizer that belongs to this checkpoint' });
    }
  }

  /**
   * ids: int32 [batch, seq] (padding on the right, as CLIP's tokenizer does); attentionMask: [batch, seq]
   * 1 for real tokens, 0 for padding (omitted: nothing padded).
   */
  forward(inputIds: Tensor, attentionMask?: Tensor): ClipTextOutput {
    this.check(inputIds, attentionMask);
    const [b, s] = inputIds.shape as [number, number];
    const H = this.config.hiddenSize;
    const eos = eosPositions(inputIds.dataSync(), b, s, this.config.eosTokenId);
    return tf.tidy(() => {
      const tok = tf.reshape(tf.gather(this.tokenEmbedding, tf.reshape(inputIds, [-1])), [b, s, H]);
      let x = tf.add(tok, tf.slice(this.positionEmbedding, [0, 0], [s, H]));
      const mask = { causal: true, keyMask: attentionMask ?? null };
      for (const layer of this.layers) x = layer.forward(x, mask);
      const last = this.finalNorm.forward(x);
      const rows = tf.tensor1d(eos.map((p, i) => i * s + p), 'int32');
      const pooled = tf.gather(tf.reshape(last, [b * s, H]), rows);
      return { lastHiddenState: last, pooled } as unknown as tf.TensorContainerObject;
    }) as unknown as ClipTextOutput;
  }

  dispose(): void {
    for (const v of this.weights.values()) v.dispose();
  }
}
