/** A plain text decoder behind the MultimodalModel interface, so every engine can also embed text with it. */
import { UnimeError } from '../../errors.js';
import type { RgbImage } from '../../images/decode.js';
import { tf, type Tensor } from '../../runtime/tf.js';
import { loadTokenizer } from '../../tokenizers/load.js';
import type { Tokenizer } from '../../tokenizers/types.js';
import { l2Normalize, lastTokenPool, meanPool } from '../pooling.js';
import { loadTextDecoder, type LoadedTextDecoder } from '../text/load.js';
import { leftPad, tokenizeWithImage } from './prepare.js';
import type { EmbedForwardOptions, MultimodalModel, PreparedInput, PrepareOptions } from './types.js';
import type { LoadMultimodalOptions } from './llava.js';

export class TextOnlyModel implements MultimodalModel {
  readonly imageMarker = null;
  readonly imageSize = null;
  readonly visionParameters = 0;

  constructor(
    readonly dir: string,
    readonly modelType: string,
    readonly tokenizer: Tokenizer,
    readonly decoder: LoadedTextDecoder,
  ) {}

  get dim(): number {
    return this.decoder.config.hiddenSize;
  }

  prepare(text: string, image: RgbImage | null, options: PrepareOptions = {}): PreparedInput {
    const { ids, truncated } = tokenizeWithImage(this.tokenizer, text, null, { maxLength: options.maxLength, hasImage: image !== null });
    return { ids, pixels: null, truncated };
  }

  embed(batch: readonly PreparedInput[], options: EmbedForwardOptions = {}): Tensor {
    if (batch.length === 0) throw new UnimeError('embed needs at least one input');
    const padded = leftPad(
      batch.map((b) => b.ids),
      this.tokenizer.specialIds.pad ?? this.tokenizer.specialIds.eos ?? 0,
    );
    const vocab = this.decoder.config.vocabSize;
    for (const id of padded.ids) {
      if (id < 0 || id >= vocab) throw new UnimeError(`token id ${id} is outside the decoder's vocabulary (${vocab} entries)`, { file: this.dir, fix: 'use the tokenizer that belongs to this checkpoint' });
    }
    return tf.tidy(() => {
      const ids = tf.tensor2d(padded.ids, [padded.batch, padded.seq], 'int32');
      const { lastHiddenState } = this.decoder.forward({ inputIds: ids, attentionMask: padded.mask });
      const pooled = (options.pooling ?? 'last') === 'last' ? lastTokenPool(lastHiddenState, padded.mask) : meanPool(lastHiddenState, padded.mask);
      return options.normalize === false ? pooled : l2Normalize(pooled);
    });
  }

  dispose(): void {
    this.decoder.dispose();
  }
}

export async function loadTextOnly(dir: string, options: LoadMultimodalOptions = {}): Promise<TextOnlyModel> {
  const tokenizer = await loadTokenizer(dir);
  const decoder = await loadTextDecoder(dir, { trainable: options.trainable ?? false });
  return new TextOnlyModel(dir, decoder.config.modelType, tokenizer, decoder);
}
