/**
 * The frozen LLM's text features for the CLIP-side methods: taken from a teacher-embed cache when the
 * text is there, else computed with the same LLM, adapters and settings the cache was made with (the
 * model loads on the first miss). Training reads the cache; evaluation embeds new texts (class
 * prompts, SugarCrepe captions) the same way.
 */
import { UnimeError } from '../../errors.js';
import { mergeAdapterChain } from '../peft/chain.js';
import { TextEmbedder } from '../text-embedder.js';
import type { TeacherCache } from '../../train/teacher-embed.js';
import type { LlmTextEncoding } from './dual-encoder.js';

/** The encoding a teacher-embed cache was made with; `fallbackDir` stands in for caches that do not record their checkpoint. */
export function encodingOfCache(cache: TeacherCache, fallbackDir: string): LlmTextEncoding {
  const ix = cache.index;
  return {
    model_dir: ix.model_dir ?? fallbackDir,
    model: ix.model,
    adapters: ix.adapters ?? [],
    pooling: ix.pooling === 'mean' ? 'mean' : 'last',
    normalize: ix.normalize,
    instruction: ix.instruction,
    max_length: ix.max_length,
    bidirectional: ix.bidirectional ?? false,
    dim: ix.dim,
  };
}

export class LlmFeatures {
  private embedder: TextEmbedder | null = null;
  /** Texts embedded by the model (cache misses). */
  computed = 0;

  constructor(
    readonly encoding: LlmTextEncoding,
    private readonly cache: TeacherCache | null,
    private readonly batchSize = 32,
  ) {}

  get dim(): number {
    return this.encoding.dim;
  }

  private async model(): Promise<TextEmbedder> {
    if (this.embedder === null) {
      const e = this.encoding;
      const embedder = await TextEmbedder.load(e.model_dir, { pooling: e.pooling, normalize: e.normalize, instruction: e.instruction, template: null });
      embedder.decoder.bidirectional = e.bidirectional;
      if (e.adapters.length > 0) await mergeAdapterChain(embedder.decoder, e.adapters);
      if (embedder.dim !== e.dim) {
        embedder.dispose();
        throw new UnimeError(`the text model gives ${embedder.dim}-d features, the cached ones are ${e.dim}-d`, {
          file: e.model_dir,
          fix: 'use the text model the feature cache was made with',
        });
      }
      this.embedder = embedder;
    }
    return this.embedder;
  }

  /** Row-major [texts.length, dim]. */
  async features(texts: readonly string[]): Promise<Float32Array> {
    const d = this.dim;
    const out = new Float32Array(texts.length * d);
    const missing: number[] = [];
    texts.forEach((t, i) => {
      const r = this.cache?.rowOf(t);
      if (r === undefined) missing.push(i);
      else out.set(this.cache!.matrix.subarray(r * d, (r + 1) * d), i * d);
    });
    if (missing.length > 0) {
      const m = await this.model();
      const got = await m.embed(missing.map((i) => texts[i]!), { batchSize: this.batchSize, maxLength: this.encoding.max_length });
      missing.forEach((i, j) => out.set(got.subarray(j * d, (j + 1) * d), i * d));
      this.computed += missing.length;
    }
    return out;
  }

  dispose(): void {
    this.embedder?.dispose();
    this.embedder = null;
  }
}
