/**
 * An embedding model ready to use: any supported checkpoint (local dir or Hub id), the adapters of
 * its training stages merged in order, and batched embedding of {text, image} inputs with progress.
 * Engines that train use prepare() + the model's differentiable embed() directly.
 */
import { UnimeError } from '../../errors.js';
import { resolveModelPath, type ResolveModelOptions } from '../../hub/download.js';
import { decodeImage, type ImageSource, type RgbImage } from '../../images/decode.js';
import { mergeMultimodalAdapterChain } from './lora-target.js';
import type { PoolingMode } from '../pooling.js';
import { loadMultimodalModel } from './load.js';
import type { MultimodalModel, PreparedInput } from './types.js';

export interface EmbedderInput {
  /** The text; it holds the image marker (any backbone's form, e.g. MMEB's `<|image_1|>`) where the image goes. */
  text: string;
  /** An image file, encoded bytes, a zip member or decoded RGB; absent or null for text only. */
  image?: ImageSource | RgbImage | null;
}

export interface MultimodalEmbedderOptions {
  /** LoRA adapter directories merged into the base weights, in order (a training run's adapter chain). */
  adapters?: readonly string[];
  hub?: ResolveModelOptions;
  pooling?: PoolingMode;
  normalize?: boolean;
  /** Refuse to run when the model's image size differs (a recipe's image_size); null/undefined: no check. */
  imageSize?: number | null;
}

export interface EmbedBatchOptions {
  batchSize?: number;
  maxLength?: number;
  onProgress?: (done: number, total: number) => void;
}

function isRgb(x: unknown): x is RgbImage {
  return typeof x === 'object' && x !== null && 'data' in x && 'width' in x && 'height' in x && (x as RgbImage).data instanceof Uint8Array;
}

/** Decode an input's image unless it is already decoded. */
export async function inputImage(image: EmbedderInput['image']): Promise<RgbImage | null> {
  if (image === undefined || image === null) return null;
  return isRgb(image) ? image : decodeImage(image);
}

/** Check a requested image size against the model's. */
export function checkImageSize(model: MultimodalModel, imageSize: number | null | undefined, field = 'image_size'): void {
  if (imageSize === null || imageSize === undefined || model.imageSize === null || imageSize === model.imageSize) return;
  throw new UnimeError(`is ${imageSize}, but the vision tower of ${model.dir} takes ${model.imageSize}x${model.imageSize} images`, {
    field,
    fix: `set ${field} to ${model.imageSize} (or leave it out); position-embedding interpolation is not implemented`,
  });
}

export class MultimodalEmbedder {
  readonly pooling: PoolingMode;
  readonly normalize: boolean;

  private constructor(
    readonly model: MultimodalModel,
    readonly adapters: readonly string[],
    options: MultimodalEmbedderOptions,
  ) {
    this.pooling = options.pooling ?? 'last';
    this.normalize = options.normalize ?? true;
  }

  static async load(dirOrHubId: string, options: MultimodalEmbedderOptions = {}): Promise<MultimodalEmbedder> {
    const dir = await resolveModelPath(dirOrHubId, options.hub);
    const model = await loadMultimodalModel(dir, { trainable: false });
    try {
      checkImageSize(model, options.imageSize);
      await mergeMultimodalAdapterChain(model, options.adapters ?? []);
      return new MultimodalEmbedder(model, [...(options.adapters ?? [])], options);
    } catch (e) {
      model.dispose();
      throw e;
    }
  }

  get dim(): number {
    return this.model.dim;
  }

  /** Decode images and tokenize, host side. */
  async prepare(inputs: readonly EmbedderInput[], options: { maxLength?: number } = {}): Promise<PreparedInput[]> {
    // decoded together: one at a time, a batch waits on every decoder round trip in turn
    const images = await Promise.all(inputs.map((x) => inputImage(x.image)));
    return inputs.map((x, i) => this.model.prepare(x.text, images[i]!, options));
  }

  /** Embeddings as a row-major Float32Array [inputs.length, dim]. */
  async embed(inputs: readonly EmbedderInput[], options: EmbedBatchOptions = {}): Promise<Float32Array> {
    const batchSize = options.batchSize ?? 16;
    if (!(Number.isInteger(batchSize) && batchSize > 0)) throw new UnimeError(`batch size must be a positive integer, got ${batchSize}`);
    const d = this.dim;
    const out = new Float32Array(inputs.length * d);
    for (let start = 0; start < inputs.length; start += batchSize) {
      const prepared = await this.prepare(inputs.slice(start, start + batchSize), { maxLength: options.maxLength });
      const emb = this.model.embed(prepared, { pooling: this.pooling, normalize: this.normalize });
      try {
        out.set(await emb.data<'float32'>(), start * d);
      } finally {
        emb.dispose();
      }
      options.onProgress?.(Math.min(start + batchSize, inputs.length), inputs.length);
    }
    return out;
  }

  dispose(): void {
    this.model.dispose();
  }
}
