import { readFileSync } from 'node:fs';
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { UnimeError } from '../errors.js';
import type { TokenizerSettings } from './config.js';
import { parseAddedToken } from './config.js';
import type {
  AddedToken,
  DecodeOptions,
  EncodeOptions,
  SpecialTokenIds,
  SpecialTokenStrings,
  Tokenizer,
} from './types.js';

/**
 * A Hugging Face tokenizer.json run by @huggingface/tokenizers (normaliser, pre-tokeniser, BPE /
 * unigram / WordPiece model, decoder). BOS/EOS: when tokenizer_config.json sets add_bos_token or
 * add_eos_token those decide (as LlamaTokenizerFast rebuilds its post-processor from them);
 * otherwise the post_processor inside tokenizer.json decides (Qwen2's adds nothing).
 */
export class JsonTokenizer implements Tokenizer {
  readonly kind = 'tokenizer.json' as const;
  readonly vocabSize: number;
  readonly specialTokens: SpecialTokenStrings;
  readonly specialIds: SpecialTokenIds;
  readonly addBosToken: boolean;
  readonly addEosToken: boolean;
  readonly modelMaxLength: number | undefined;
  readonly addedTokens: ReadonlyMap<string, AddedToken>;
  private readonly addedById = new Map<number, AddedToken>();
  private readonly explicitBosEos: boolean;
  private readonly cleanUpSpaces: boolean;

  private constructor(
    readonly source: string,
    private readonly hf: HfTokenizer,
    added: Map<string, AddedToken>,
    settings: TokenizerSettings,
  ) {
    this.addedTokens = added;
    for (const t of added.values()) this.addedById.set(t.id, t);
    // a loop, not Math.max(...ids): real vocabularies (151k for Qwen2) exceed the argument limit
    let size = 0;
    for (const id of hf.get_vocab(true).values()) size = Math.max(size, id + 1);
    this.vocabSize = size;
    this.specialTokens = { ...settings.specialTokens };
    const idOf = (t: string | undefined): number | undefined => (t === undefined ? undefined : this.tokenToId(t));
    this.specialIds = {
      bos: idOf(this.specialTokens.bos),
      eos: idOf(this.specialTokens.eos),
      unk: idOf(this.specialTokens.unk),
      pad: idOf(this.specialTokens.pad),
    };
    this.explicitBosEos = settings.addBosToken !== undefined || settings.addEosToken !== undefined;
    if (this.explicitBosEos) {
      this.addBosToken = settings.addBosToken ?? false;
      this.addEosToken = settings.addEosToken ?? false;
    } else {
      // what the post-processor adds around a text
      const plain = this.hfEncode('a', false);
      const full = this.hfEncode('a', true);
      const bos = this.specialIds.bos;
      const eos = this.specialIds.eos;
      this.addBosToken = bos !== undefined && full.length > plain.length && full[0] === bos;
      this.addEosToken = eos !== undefined && full.length > plain.length && full[full.length - 1] === eos;
    }
    this.modelMaxLength = settings.modelMaxLength;
    this.cleanUpSpaces = settings.rawConfig.clean_up_tokenization_spaces === true;
  }

  static load(file: string, settings: TokenizerSettings): JsonTokenizer {
    let json: Record<string, unknown>;
    try {
      json = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      throw new UnimeError(code ? `cannot read tokenizer.json (${code})` : `is not valid JSON (${(e as Error).message})`, {
        file,
        fix: 'download tokenizer.json again; a partial download leaves broken JSON',
        cause: e,
      });
    }
    if (!json || typeof json !== 'object' || !json.model || typeof json.model !== 'object') {
      throw new UnimeError('has no "model" section; this is not a Hugging Face tokenizer.json', {
        file,
        field: 'model',
        fix: 'point at the tokenizer.json saved by transformers / tokenizers',
      });
    }
    const added = new Map<string, AddedToken>();
    const list = Array.isArray(json.added_tokens) ? (json.added_tokens as unknown[]) : [];
    list.forEach((t, i) => {
      const id = (t as { id?: unknown }).id;
      if (typeof id !== 'number') {
        throw new UnimeError('an added token has no numeric id', {
          file,
          field: `added_tokens[${i}].id`,
          fix: 'each entry of added_tokens is {"id": N, "content": "...", ...}',
        });
      }
      const tok = parseAddedToken(id, t, file, `added_tokens[${i}]`);
      added.set(tok.content, tok);
    });
    // added tokens that only tokenizer_config.json lists are added to the tokenizer, as transformers does
    const extra = settings.addedTokens.filter((t) => !added.has(t.content));
    for (const t of extra) added.set(t.content, t);
    const withExtra = {
      ...json,
      added_tokens: [
        ...list,
        ...extra.map((t) => ({
          id: t.id,
          content: t.content,
          single_word: t.singleWord,
          lstrip: t.lstrip,
          rstrip: t.rstrip,
          normalized: t.normalized,
          special: t.special,
        })),
      ],
    };
    let hf: HfTokenizer;
    try {
      hf = new HfTokenizer(withExtra, settings.rawConfig);
    } catch (e) {
      throw new UnimeError(`@huggingface/tokenizers cannot build this tokenizer (${(e as Error).message})`, {
        file,
        fix: 'check that tokenizer.json comes from a supported model (BPE, Unigram or WordPiece)',
        cause: e,
      });
    }
    return new JsonTokenizer(file, hf, added, settings);
  }

  private hfEncode(text: string, addSpecial: boolean): number[] {
    return this.hf.encode(text, { add_special_tokens: addSpecial }).ids;
  }

  encode(text: string, options: EncodeOptions = {}): number[] {
    const addSpecial = options.addSpecialTokens ?? true;
    if (!addSpecial || !this.explicitBosEos) return this.hfEncode(text, addSpecial);
    const ids = this.hfEncode(text, false);
    if (this.addBosToken && this.specialIds.bos !== undefined) ids.unshift(this.specialIds.bos);
    if (this.addEosToken && this.specialIds.eos !== undefined) ids.push(this.specialIds.eos);
    return ids;
  }

  decode(ids: ArrayLike<number>, options: DecodeOptions = {}): string {
    const list = Array.from(ids);
    for (const id of list) {
      if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
        throw new UnimeError(`token id ${id} is outside the vocabulary (size ${this.vocabSize})`, {
          file: this.source,
          fix: 'decode ids produced by this tokenizer',
        });
      }
    }
    // the library refuses an empty list
    if (list.length === 0) return '';
    return this.hf.decode(list, {
      skip_special_tokens: options.skipSpecialTokens ?? false,
      clean_up_tokenization_spaces: this.cleanUpSpaces,
    });
  }

  tokenToId(token: string): number | undefined {
    return this.addedTokens.get(token)?.id ?? this.hf.token_to_id(token);
  }

  idToToken(id: number): string | undefined {
    return this.addedById.get(id)?.content ?? this.hf.id_to_token(id);
  }
}
