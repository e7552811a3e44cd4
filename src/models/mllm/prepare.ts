/**
 * Host-side preparation shared by the assemblies: rewrite image markers into the model's own
 * placeholder, tokenize, expand the placeholder to the image's token count, truncate without ever
 * cutting image tokens, and left-pad a batch for the forward pass.
 */
import { UnimeError } from '../../errors.js';
import { defaultPadId, padBatch, truncateIds, type BatchEncoding } from '../../tokenizers/batch.js';
import { countImageMarkers, expandImageTokens, replaceImageMarkers } from '../../tokenizers/templates.js';
import type { Tokenizer } from '../../tokenizers/types.js';
import { tf, type Tensor } from '../../runtime/tf.js';
import { poolEmbeddings } from '../pooling.js';
import type { LoadedTextDecoder } from '../text/load.js';
import type { EmbedForwardOptions } from './types.js';

export interface TokenizedInput {
  ids: number[];
  truncated: boolean;
}

/**
 * Tokens of `text` for a model whose image placeholder is `marker` (token id `markerId`) standing for
 * `imageTokens` positions. An input with an image but no marker gets `marker\n` in front (as
 * VLM2Vec's collator does for bare captions); a marker without an image, or more than one image, is refused.
 */
export function tokenizeWithImage(
  tok: Tokenizer,
  text: string,
  image: { marker: string; markerId: number; imageTokens: number } | null,
  options: { maxLength?: number; hasImage: boolean },
): TokenizedInput {
  const markers = countImageMarkers(text);
  if (options.hasImage && image === null) {
    throw new UnimeError('this model takes text only, but an input has an image', { fix: 'use a multimodal checkpoint (LLaVA, ...) for image inputs' });
  }
  if (markers > 1) {
    throw new UnimeError(`an input holds ${markers} image markers; one image per input is supported`, { fix: `keep one image marker (${image?.marker ?? '<image>'}) per text` });
  }
  if (markers === 1 && !options.hasImage) {
    throw new UnimeError(`an input's text has an image marker but no image was given: ${JSON.stringify(text.slice(0, 80))}`, {
      fix: 'give the image, or remove the marker from the text',
    });
  }
  let body = text;
  if (image !== null && options.hasImage) body = markers === 1 ? replaceImageMarkers(text, image.marker) : `${image.marker}\n${text}`;
  let ids = tok.encode(body, { addSpecialTokens: true });
  let imageAt = -1;
  if (image !== null && options.hasImage) {
    const expanded = expandImageTokens(ids, image.markerId, image.imageTokens);
    if (expanded.imagePositions.length !== 1) {
      throw new UnimeError(`the tokenizer did not keep ${image.marker} as one token (found ${expanded.imagePositions.length} in the encoded text)`, {
        file: tok.source,
        fix: `the checkpoint's tokenizer must list ${image.marker} as an added token`,
      });
    }
    ids = expanded.ids;
    imageAt = expanded.imagePositions[0]![0]!;
  }
  const max = options.maxLength;
  if (max === undefined || ids.length <= max) return { ids, truncated: false };
  const bos = tok.addBosToken && tok.specialIds.bos !== undefined && ids[0] === tok.specialIds.bos ? 1 : 0;
  const eos = tok.addEosToken && tok.specialIds.eos !== undefined && ids[ids.length - 1] === tok.specialIds.eos ? 1 : 0;
  if (imageAt >= 0 && imageAt + image!.imageTokens + eos > max) {
    throw new UnimeError(`max_length ${max} is too short for an input whose image tokens end at position ${imageAt + image!.imageTokens}`, {
      field: 'max_length',
      fix: `raise max_length to at least ${imageAt + image!.imageTokens + eos + 8}`,
    });
  }
  return { ids: truncateIds(ids, max, { keepFirst: bos, keepLast: eos }), truncated: true };
}

/**
 * Left-pad prepared token rows into one batch (the tokenizers' padBatch, with the tokenizer's pad id),
 * refusing an input that encodes to no tokens: last-token pooling would have nothing to read.
 */
export function padInputs(rows: readonly (readonly number[])[], tok: Tokenizer): BatchEncoding {
  if (rows.length === 0) throw new UnimeError('embed needs at least one input');
  rows.forEach((r, i) => {
    if (r.length === 0) throw new UnimeError(`input ${i} encodes to no tokens`, { fix: 'embed non-empty texts' });
  });
  return padBatch(rows, defaultPadId(tok), { paddingSide: 'left' });
}

/** Every id must index the decoder's embedding table. */
export function checkVocabulary(ids: ArrayLike<number>, vocab: number, dir: string): void {
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i]!;
    if (id < 0 || id >= vocab) {
      throw new UnimeError(`token id ${id} is outside the decoder's vocabulary (${vocab} entries)`, { file: dir, fix: 'use the tokenizer that belongs to this checkpoint' });
    }
  }
}

/**
 * The forward every assembly shares once it knows where its image features go: token embeddings of
 * `enc` (whose image positions, flat [b * seq] indices in image order, already read id 0), the
 * image features [imagePositions.length, hidden] scattered into those rows (transformers'
 * masked_scatter), the decoder under the attention mask, then pooling. Differentiable; `features`
 * runs inside the same tidy and only when the batch has images.
 */
export function forwardWithImageFeatures(
  decoder: LoadedTextDecoder,
  enc: BatchEncoding,
  imagePositions: readonly number[],
  features: (() => Tensor) | null,
  options: EmbedForwardOptions = {},
): Tensor {
  const { batchSize: b, seqLen: seq } = enc;
  const H = decoder.config.hiddenSize;
  return tf.tidy(() => {
    let emb = decoder.embed(tf.tensor2d(enc.inputIds, [b, seq], 'int32'));
    if (features !== null && imagePositions.length > 0) {
      const feats = features();
      const index = new Int32Array(b * seq);
      for (let p = 0; p < index.length; p++) index[p] = p;
      imagePositions.forEach((p, k) => (index[p] = b * seq + k));
      emb = tf.reshape(tf.gather(tf.concat([tf.reshape(emb, [b * seq, H]), feats], 0), tf.tensor1d(index, 'int32')), [b, seq, H]);
    }
    const mask = tf.tensor2d(enc.attentionMask, [b, seq], 'int32');
    const { lastHiddenState } = decoder.forward({ inputsEmbeds: emb, attentionMask: mask });
    return poolEmbeddings(lastHiddenState, mask, options.pooling ?? 'last', options.normalize !== false);
  });
}
