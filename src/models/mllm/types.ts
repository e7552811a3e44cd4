/**
 * What every embedding model looks like to the engines (training stages, evaluation, `unime embed`):
 * host-side preparation of one input (prompt with its image placeholder expanded, pixels), then one
 * differentiable forward over a batch of prepared inputs giving pooled, L2-normalised embeddings.
 * The LLaVA family, Phi-3.5-V and Qwen2-VL implement it, and so does a plain text decoder.
 */
import type { RgbImage } from '../../images/decode.js';
import type { Tensor } from '../../runtime/tf.js';
import type { Tokenizer } from '../../tokenizers/types.js';
import type { PoolingMode } from '../pooling.js';
import type { LoadedTextDecoder } from '../text/load.js';
import type { LoadedVisionTower } from '../vision/load.js';

/** One thing to embed: text (holding an image marker in any backbone's form when there is an image) and at most one image. */
export interface PreparedInput {
  /** Token ids with the image placeholder already expanded to the image's token count. */
  readonly ids: readonly number[];
  /** The image preprocessed for the vision tower, float32 [3, H, W] (null: text only). */
  readonly pixels: Float32Array | null;
  /** Whether truncation cut the text. */
  readonly truncated: boolean;
}

export interface PrepareOptions {
  /** Longest token sequence (image tokens included); longer texts are cut at the end. */
  maxLength?: number;
}

export interface EmbedForwardOptions {
  pooling?: PoolingMode;
  normalize?: boolean;
}

export interface MultimodalModel {
  readonly modelType: string;
  /** Checkpoint directory. */
  readonly dir: string;
  readonly tokenizer: Tokenizer;
  /** The language model: where LoRA adapters attach and merge. */
  readonly decoder: LoadedTextDecoder;
  /** The vision tower (absent in a text-only model): LoRA may adapt it too (src/models/mllm/lora-target.ts). */
  readonly vision?: LoadedVisionTower;
  /** Embedding width. */
  readonly dim: number;
  /** The image placeholder as written in prompts ('<image>'); null for a text-only model. */
  readonly imageMarker: string | null;
  /** Side of the square image the vision tower takes; null for a text-only model. */
  readonly imageSize: number | null;
  /** Number of parameters of the frozen vision side (tower + projector), 0 for text-only models. */
  readonly visionParameters: number;
  /** Tokenize (placeholder expanded, markers rewritten to this model's form) and preprocess the image. */
  prepare(text: string, image: RgbImage | null, options?: PrepareOptions): PreparedInput;
  /** [batch, dim] embeddings of prepared inputs: last token (left padding), L2-normalised by default. Differentiable. */
  embed(batch: readonly PreparedInput[], options?: EmbedForwardOptions): Tensor;
  dispose(): void;
}
