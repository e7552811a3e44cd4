/**
 * The evaluation's view of a checkpoint: a MultimodalEmbedder (base weights + the adapter chain
 * merged in order) behind the small EvalModel interface of ./mmeb-eval.ts, and the identity the
 * embedding cache keys it by.
 */
import { UnimeError } from '../errors.js';
import { isClipSideModel } from '../models/clip/format.js';
import { modelIdentity, type ModelIdentity } from './embed-cache.js';
import type { EvalModel } from './mmeb-eval.js';
import { DEFAULT_IMAGE_PROMPT, DEFAULT_TEXT_PROMPT } from './suite-eval.js';

export interface MllmEvalSettings {
  maxLength: number;
  imageToken: string;
  /** null = the model's own input size. */
  imageSize: number | null;
}

/** Load the model (the tfjs runtime must be initialised). The embedder module loads lazily: CLI startup stays fast. */
export async function loadMllmEvalModel(modelDir: string, adapters: readonly string[], imageSize: number | null): Promise<EvalModel> {
  if (isClipSideModel(modelDir)) {
    if (adapters.length > 0) throw new UnimeError('a CLIP-side model takes no LoRA adapters (its LLM adapters are recorded in it)', { file: modelDir, fix: 'drop --adapter / init_from' });
    const { loadClipSideEvalModel } = await import('./clip-side-model.js');
    return loadClipSideEvalModel(modelDir);
  }
  const { MultimodalEmbedder } = await import('../models/mllm/embedder.js');
  const embedder = await MultimodalEmbedder.load(modelDir, { adapters: [...adapters], imageSize });
  return {
    dim: embedder.dim,
    embed: (inputs, options) => embedder.embed(inputs.map((x) => ({ text: x.text, image: x.image })), options),
    dispose: () => embedder.dispose(),
  };
}

/** The prompts a model takes by default: UniME's for an MLLM, the bare text for a CLIP-side model. */
export function defaultPrompts(modelDir: string): { image: string; text: string } {
  return isClipSideModel(modelDir) ? { image: '', text: '<sent>' } : { image: DEFAULT_IMAGE_PROMPT, text: DEFAULT_TEXT_PROMPT };
}

/** What cached embeddings of this model depend on. */
export function mllmEvalIdentity(modelDir: string, adapters: readonly string[], s: MllmEvalSettings): Promise<ModelIdentity> {
  return modelIdentity(modelDir, adapters, {
    embedder: isClipSideModel(modelDir) ? 'clip-side' : 'mllm',
    pooling: 'last',
    normalize: true,
    max_length: s.maxLength,
    image_token: s.imageToken,
    image_size: s.imageSize,
  });
}
