/** A plain text decoder behind the MultimodalModel interface, so every engine can also embed text with it. */
import type { RgbImage } from '../../images/decode.js';
import type { Tensor } from '../../runtime/tf.js';
import { loadTokenizer } from '../../tokenizers/load.js';
import type { Tokenizer } from '../../tokenizers/types.js';
import { loadTextDecoder, type LoadedTextDecoder } from '../text/load.js';
import { checkVocabulary, forwardWithImageFeatures, padInputs, tokenizeWithImage } from './prepare.js';
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
    const enc = padInputs(
      batch.map((b) => b.ids),
      this.tokenizer,
    );
    checkVocabulary(enc.inputIds, this.decoder.config.vocabSize, this.dir);
    return forwardWithImageFeatures(this.decoder, enc, [], null, options);
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
