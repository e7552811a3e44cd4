/**
 * A text embedding model from a decoder checkpoint: tokenizer + decoder + pooling. Texts are wrapped
 * in a prompt (a UniME template or an instruction prefix), tokenized in batches with left padding,
 * run through the decoder and pooled (last token or mean), optionally L2-normalised.
 */
import { UnimeError } from '../errors.js';
import { resolveModelPath, type ResolveModelOptions } from '../hub/download.js';
import { tf } from '../runtime/tf.js';
import { encodeBatch } from '../tokenizers/batch.js';
import { loadTokenizer } from '../tokenizers/load.js';
import { getPromptTemplate, SENTENCE_SLOT } from '../tokenizers/templates.js';
import type { Tokenizer } from '../tokenizers/types.js';
import { poolEmbeddings, type PoolingMode } from './pooling.js';
import { loadTextDecoder, type LoadedTextDecoder } from './text/load.js';

export interface TextEmbedderOptions {
  pooling?: PoolingMode;
  normalize?: boolean;
  /**
   * How each text is wrapped: a UniME template name ('phi3.5-v', ...), a literal prompt holding
   * `<sent>`, or null/undefined for the bare text.
   */
  template?: string | null;
  /** Prefix put before every text (inside the template's slot), e.g. "Instruct: ...\nQuery: ". */
  instruction?: string;
  /** Hub download options when `dirOrHubId` is a Hub id. */
  hub?: ResolveModelOptions;
}

export interface EmbedOptions {
  batchSize?: number;
  maxLength?: number;
  /** Called after every batch with the number of texts embedded so far and the total. */
  onProgress?: (done: number, total: number) => void;
}

/** The prompt string with SENTENCE_SLOT for a template option, or null for none. */
export function resolveTemplate(template: string | null | undefined): string | null {
  if (template === null || template === undefined || template === '' || template === 'none') return null;
  if (template.includes(SENTENCE_SLOT)) return template;
  return getPromptTemplate(template).text;
}

export class TextEmbedder {
  readonly pooling: PoolingMode;
  readonly normalize: boolean;
  readonly instruction: string;
  private readonly prompt: string | null;

  private constructor(
    readonly dir: string,
    readonly tokenizer: Tokenizer,
    readonly decoder: LoadedTextDecoder,
    options: TextEmbedderOptions,
  ) {
    this.pooling = options.pooling ?? 'last';
    this.normalize = options.normalize ?? true;
    this.instruction = options.instruction ?? '';
    this.prompt = resolveTemplate(options.template);
  }

  static async load(dirOrHubId: string, options: TextEmbedderOptions = {}): Promise<TextEmbedder> {
    const dir = await resolveModelPath(dirOrHubId, options.hub);
    resolveTemplate(options.template); // fail early on an unknown template name
    const tokenizer = await loadTokenizer(dir);
    const decoder = await loadTextDecoder(dir, { trainable: false });
    return new TextEmbedder(dir, tokenizer, decoder, options);
  }

  /** Embedding width. */
  get dim(): number {
    return this.decoder.config.hiddenSize;
  }

  /** The exact string fed to the tokenizer for a text. */
  wrap(text: string): string {
    const body = this.instruction + text;
    return this.prompt === null ? body : this.prompt.replace(SENTENCE_SLOT, () => body);
  }

  /** Embed texts: a row-major Float32Array [texts.length, dim]. */
  async embed(texts: readonly string[], options: EmbedOptions = {}): Promise<Float32Array> {
    const batchSize = options.batchSize ?? 16;
    if (!(Number.isInteger(batchSize) && batchSize > 0)) throw new UnimeError(`batch size must be a positive integer, got ${batchSize}`);
    const d = this.dim;
    const out = new Float32Array(texts.length * d);
    for (let start = 0; start < texts.length; start += batchSize) {
      const chunk = texts.slice(start, start + batchSize).map((t) => this.wrap(t));
      const enc = encodeBatch(this.tokenizer, chunk, { maxLength: options.maxLength, paddingSide: 'left' });
      const vocab = this.decoder.config.vocabSize;
      for (const id of enc.inputIds) {
        if (id < 0 || id >= vocab) {
          throw new UnimeError(`token id ${id} is outside the decoder's vocabulary (${vocab} entries)`, {
            file: this.dir,
            fix: 'use the tokenizer that belongs to this checkpoint',
          });
        }
      }
      const emb = tf.tidy(() => {
        const ids = tf.tensor2d(enc.inputIds, [enc.batchSize, enc.seqLen], 'int32');
        const mask = tf.tensor2d(enc.attentionMask, [enc.batchSize, enc.seqLen], 'int32');
        const { lastHiddenState } = this.decoder.forward({ inputIds: ids, attentionMask: mask });
        return poolEmbeddings(lastHiddenState, mask, this.pooling, this.normalize);
      });
      try {
        out.set(await emb.data<'float32'>(), start * d);
      } finally {
        emb.dispose();
      }
      options.onProgress?.(Math.min(start + batchSize, texts.length), texts.length);
    }
    return out;
  }

  dispose(): void {
    this.decoder.dispose();
  }
}
