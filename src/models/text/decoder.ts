/**
 * A decoder-only transformer (Llama family: Llama, Mistral, Qwen2, Qwen3, Phi-3) returning hidden
 * states, which is all an embedding model needs (no lm_head).
 */
import { UnimeError } from '../../errors.js';
import { tf, type Tensor } from '../../runtime/tf.js';
import { type MaskInput, type MaskRows, onesMask, positionIdsFromMask, readMask } from '../mask.js';
import type { DecoderConfig } from './config.js';
import { type AttentionContext, DecoderLayer, Embedding, RmsNorm, type WeightGetter } from './modules.js';
import { ropeTables } from './rope.js';

export interface DecoderForwardInput {
  /** int32 [batch, seq] token ids (or nested arrays). Exactly one of inputIds / inputsEmbeds. */
  inputIds?: Tensor | number[][];
  /** [batch, seq, hidden] input embeddings, for assemblies that splice image features in. */
  inputsEmbeds?: Tensor;
  /** [batch, seq] 1 for tokens, 0 for padding (left or right); all ones when omitted. */
  attentionMask?: MaskInput;
  /** Also return the per-layer hidden states, as transformers' `hidden_states`. */
  outputHiddenStates?: boolean;
  /**
   * Position ids [batch, seq]. Default: cumsum(mask) - 1 clamped at 0, so padding (left or right)
   * does not move a row's positions. A plain transformers forward numbers padding too (arange);
   * RoPE only sees position differences, so that shift changes results by rounding alone, except
   * where the largest position picks the frequencies (dynamic, longrope).
   */
  positionIds?: number[][] | Int32Array;
  /** Override the decoder's default attention direction for this call. */
  bidirectional?: boolean;
}

export interface DecoderOutput {
  /** [batch, seq, hidden], after the final norm. Positions where the mask is 0 hold no meaningful values. */
  lastHiddenState: Tensor;
  /**
   * numLayers + 1 entries as in transformers: the embeddings, the raw output of layers 0..L-2, and
   * the final-normed output of the last layer (the same tensor values as lastHiddenState).
   */
  hiddenStates?: Tensor[];
}

export interface DecoderOptions {
  /** Attend in both directions (LLM2Vec-style) instead of causally; padding is masked either way. */
  bidirectional?: boolean;
}

export class TextDecoder {
  readonly embedTokens: Embedding;
  readonly layers: DecoderLayer[];
  readonly norm: RmsNorm;
  bidirectional: boolean;

  constructor(
    readonly config: DecoderConfig,
    /** The weights by key relative to the decoder prefix ('embed_tokens.weight', ...). */
    readonly weights: ReadonlyMap<string, tf.Variable>,
    options: DecoderOptions = {},
  ) {
    const get: WeightGetter = (name) => {
      const v = weights.get(name);
      if (!v) throw new UnimeError(`decoder weight ${name} was not provided`);
      return v;
    };
    this.embedTokens = new Embedding(get('embed_tokens.weight'));
    this.layers = Array.from({ length: config.numLayers }, (_, i) => new DecoderLayer(config, get, i));
    this.norm = new RmsNorm(get('norm.weight'), config.rmsNormEps);
    this.bidirectional = options.bidirectional ?? false;
  }

  /** Number of trainable parameters. */
  get numParameters(): number {
    let n = 0;
    for (const v of this.weights.values()) n += v.size;
    return n;
  }

  /** Token embeddings [batch, seq, hidden] for int32 ids [batch, seq]. */
  embed(inputIds: Tensor | number[][]): Tensor {
    return tf.tidy(() => {
      const ids = inputIds instanceof tf.Tensor ? inputIds : tf.tensor2d(inputIds, undefined, 'int32');
      return this.embedTokens.forward(ids.dtype === 'int32' ? ids : tf.cast(ids, 'int32'));
    });
  }

  forward(input: DecoderForwardInput): DecoderOutput {
    if ((input.inputIds === undefined) === (input.inputsEmbeds === undefined)) {
      throw new UnimeError('forward needs exactly one of inputIds and inputsEmbeds');
    }
    let batch: number, seq: number;
    if (input.inputsEmbeds) {
      if (input.inputsEmbeds.rank !== 3 || input.inputsEmbeds.shape[2] !== this.config.hiddenSize) {
        throw new UnimeError(`inputsEmbeds must be [batch, seq, ${this.config.hiddenSize}], got [${input.inputsEmbeds.shape.join(', ')}]`);
      }
      [batch, seq] = input.inputsEmbeds.shape as [number, number];
    } else {
      const ids = input.inputIds!;
      if (ids instanceof tf.Tensor) {
        if (ids.rank !== 2) throw new UnimeError(`inputIds must be [batch, seq], got [${ids.shape.join(', ')}]`);
        [batch, seq] = ids.shape as [number, number];
      } else {
        batch = ids.length;
        seq = ids[0]?.length ?? 0;
      }
    }
    const mask: MaskRows = input.attentionMask === undefined ? onesMask(batch, seq) : readMask(input.attentionMask);
    if (mask.batch !== batch || mask.seq !== seq) {
      throw new UnimeError(`attentionMask is [${mask.batch}, ${mask.seq}] but the inputs are [${batch}, ${seq}]`);
    }
    const window = this.config.slidingWindow;
    if (window !== null && seq > window) {
      throw new UnimeError(`sequence length ${seq} exceeds the model's sliding window (${window}); sliding-window attention is not implemented`, {
        field: 'sliding_window',
        fix: `truncate inputs to at most ${window} tokens`,
      });
    }
    const bidirectional = input.bidirectional ?? this.bidirectional;
    const positions = input.positionIds === undefined ? positionIdsFromMask(mask) : readPositions(input.positionIds, batch, seq);

    return tf.tidy(() => {
      const { cos, sin } = ropeTables(this.config.rope, positions, batch, seq);
      const ctx: AttentionContext = { cos, sin, causal: !bidirectional, keyMask: keyMaskTensor(mask) };
      let x = input.inputsEmbeds ?? this.embed(input.inputIds!);
      const states: Tensor[] = [];
      const keepStates = input.outputHiddenStates === true;
      for (const layer of this.layers) {
        if (keepStates) states.push(x);
        x = layer.forward(x, ctx);
      }
      const last = this.norm.forward(x);
      if (!keepStates) return { lastHiddenState: last };
      states.push(last);
      return { lastHiddenState: last, hiddenStates: states };
    }) as DecoderOutput;
  }

  dispose(): void {
    for (const v of this.weights.values()) v.dispose();
  }
}

function readPositions(p: number[][] | Int32Array, batch: number, seq: number): Int32Array {
  const out = p instanceof Int32Array ? p : Int32Array.from(p.flat());
  if (out.length !== batch * seq || (!(p instanceof Int32Array) && p.length !== batch)) {
    throw new UnimeError(`positionIds must be [${batch}, ${seq}] like the inputs`);
  }
  for (const v of out) if (v < 0) throw new UnimeError(`positionIds must not be negative, got ${v}`);
  return out;
}

/** [batch, seq] 0/1 key mask, or null when no position is padded. */
function keyMaskTensor(m: MaskRows): Tensor | null {
  let padded = false;
  for (const v of m.values) if (v !== 1) padded = true;
  return padded ? tf.tensor2d(Float32Array.from(m.values), [m.batch, m.seq]) : null;
}
