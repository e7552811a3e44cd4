/**
 * A clip-train stage's model (../models/clip/dual-encoder.ts) behind the evaluation's EvalModel: an
 * image input goes through the image encoder, a text input through the frozen LLM (the settings the
 * training features were made with) and the text side. An input with both (MMEB's image + instruction
 * queries) gets the sum of the two normalised embeddings, as UniME combines modalities; image markers
 * (`<image>`, `<|image_1|>`, `<|image_pad|>`) are dropped from the text first.
 */
import * as path from 'node:path';
import { decodeImage } from '../images/decode.js';
import { preprocessImage, readImageProcessorConfig } from '../images/processor.js';
import { loadClipSideModel } from '../models/clip/dual-encoder.js';
import { LlmFeatures } from '../models/clip/llm-features.js';
import { l2Normalize } from '../losses/common.js';
import { tf } from '../runtime/tf.js';
import type { EvalModel, ModelInput } from './mmeb-eval.js';

const IMAGE_MARKERS = /<\|image_\d+\|>|<image>|<\|image_pad\|>|<\|vision_start\|>|<\|vision_end\|>/g;

/** The text of an input without image markers, trimmed. */
export function textWithoutImageMarkers(text: string): string {
  return text.replace(IMAGE_MARKERS, '').trim();
}

function normalizeRows(data: Float32Array, dim: number): void {
  for (let r = 0; r < data.length / dim; r++) {
    let s = 0;
    for (let k = 0; k < dim; k++) s += data[r * dim + k]! ** 2;
    const inv = 1 / Math.max(Math.sqrt(s), 1e-12);
    for (let k = 0; k < dim; k++) data[r * dim + k]! *= inv;
  }
}

export async function loadClipSideEvalModel(dir: string): Promise<EvalModel> {
  const model = await loadClipSideModel(dir);
  const processor = await readImageProcessorConfig(path.join(dir, 'preprocessor_config.json'));
  const llm = new LlmFeatures(model.config.text.encoder, null);
  const dim = model.config.embed_dim;
  const size = model.tower.config.imageSize;
  return {
    dim,
    async embed(inputs: readonly ModelInput[], options: { batchSize: number; maxLength: number }): Promise<Float32Array> {
      const out = new Float32Array(inputs.length * dim);
      const texts = inputs.map((x) => textWithoutImageMarkers(x.text));
      // images
      const withImage = inputs.flatMap((x, i) => (x.image !== null ? [i] : []));
      for (let s = 0; s < withImage.length; s += options.batchSize) {
        const part = withImage.slice(s, s + options.batchSize);
        const px = new Float32Array(part.length * 3 * size * size);
        for (const [j, i] of part.entries()) px.set(preprocessImage(await decodeImage(inputs[i]!.image!), processor).data, j * 3 * size * size);
        const e = tf.tidy(() => l2Normalize(model.imageEmbeds(tf.tensor4d(px, [part.length, 3, size, size]))));
        const d = (await e.data()) as Float32Array;
        e.dispose();
        part.forEach((i, j) => out.set(d.subarray(j * dim, (j + 1) * dim), i * dim));
      }
      // texts (alone, or added to the image's embedding)
      const withText = inputs.flatMap((_, i) => (texts[i]!.length > 0 ? [i] : []));
      if (withText.length > 0) {
        const feats = await llm.features(withText.map((i) => texts[i]!));
        const d = await model.textEmbeddings(feats, llm.dim, options.batchSize);
        withText.forEach((i, j) => {
          for (let k = 0; k < dim; k++) out[i * dim + k]! += d[j * dim + k]!;
        });
      }
      normalizeRows(out, dim);
      return out;
    },
    dispose() {
      llm.dispose();
      model.dispose();
    },
  };
}
