import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import spjs from 'sentencepiece-js';
import { UnimeError } from '../errors.js';
import { AddedTokenSplitter } from './added-tokens.js';
import type { TokenizerSettings } from './config.js';
import {
  PieceType,
  parseSentencePieceModel,
  withoutDummyPrefix,
  type SentencePieceModel,
} from './sentencepiece-model.js';
import type {
  AddedToken,
  DecodeOptions,
  EncodeOptions,
  SpecialTokenIds,
  SpecialTokenStrings,
  Tokenizer,
} from './types.js';

type Processor = InstanceType<typeof spjs.SentencePieceProcessor>;

/** Lone UTF-16 surrogates: the WebAssembly string conversion would garble the text after them. */
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

/**
 * Load sentencepiece-js (Google's sentencepiece compiled to WebAssembly) on one model file.
 * Its Emscripten runtime adds process-wide 'uncaughtException' / 'unhandledRejection' listeners
 * that rethrow, once per loaded model; they change how the host process dies and pile up, so they
 * are removed again right after loading.
 */
async function loadProcessor(file: string): Promise<Processor> {
  const before = {
    uncaught: new Set(process.listeners('uncaughtException')),
    rejection: new Set(process.listeners('unhandledRejection')),
  };
  const sp = new spjs.SentencePieceProcessor();
  try {
    await sp.load(file);
  } finally {
    for (const l of process.listeners('uncaughtException')) {
      if (!before.uncaught.has(l)) process.removeListener('uncaughtException', l);
    }
    for (const l of process.listeners('unhandledRejection')) {
      if (!before.rejection.has(l)) process.removeListener('unhandledRejection', l);
    }
  }
  return sp;
}

/**
 * A sentencepiece .model tokenizer with Hugging Face conventions on top: added tokens from
 * tokenizer_config.json are split out of the text first and every ordinary chunk is encoded by
 * sentencepiece on its own (so each chunk gets sentencepiece's dummy-prefix space, as transformers'
 * sentencepiece tokenizers do in legacy mode and Llama/Mistral/Phi-3 tokenizer.json files do);
 * BOS/EOS follow add_bos_token (default true) / add_eos_token (default false), as LlamaTokenizer.
 *
 * With `legacy: false` in tokenizer_config.json it follows transformers' LlamaTokenizer instead: the
 * model runs without its dummy prefix, one prefix space goes before the whole text (add_prefix_space,
 * default true), and a chunk after an added token gets no extra space. (A tokenizer.json of the same
 * checkpoint may still encode the legacy way: transformers' fast and slow tokenizers disagree there.)
 */
export class SentencePieceTokenizer implements Tokenizer {
  readonly kind = 'sentencepiece' as const;
  readonly vocabSize: number;
  readonly specialTokens: SpecialTokenStrings;
  readonly specialIds: SpecialTokenIds;
  readonly addBosToken: boolean;
  readonly addEosToken: boolean;
  readonly modelMaxLength: number | undefined;
  readonly addedTokens: ReadonlyMap<string, AddedToken>;
  private readonly addedById = new Map<number, AddedToken>();
  private readonly pieceIds = new Map<string, number>();
  private readonly splitter: AddedTokenSplitter;
  private readonly legacy: boolean;
  private readonly addPrefixSpace: boolean;
  /** Named special tokens and additional_special_tokens (transformers' all_special_tokens). */
  private readonly allSpecialTokens: Set<string>;
  /** How many ids the unk token's text encodes to (the legacy: false prefix trick). */
  private readonly unkPrefixLength: number;

  private constructor(
    readonly source: string,
    readonly model: SentencePieceModel,
    private readonly sp: Processor,
    settings: TokenizerSettings,
  ) {
    model.pieces.forEach((p, id) => this.pieceIds.set(p.piece, id));
    const pieceAt = (id: number): string | undefined => (id >= 0 ? model.pieces[id]?.piece : undefined);
    const s = settings.specialTokens;
    this.specialTokens = {
      bos: s.bos ?? pieceAt(model.bosId),
      eos: s.eos ?? pieceAt(model.eosId),
      unk: s.unk ?? pieceAt(model.unkId),
      pad: s.pad ?? pieceAt(model.padId),
    };
    const added = new Map<string, AddedToken>();
    for (const t of settings.addedTokens) added.set(t.content, t);
    // transformers treats every named special token as an added token even when
    // added_tokens_decoder does not list it
    const named = [this.specialTokens.bos, this.specialTokens.eos, this.specialTokens.unk, this.specialTokens.pad];
    for (const content of [...named, ...settings.additionalSpecialTokens]) {
      if (content === undefined || added.has(content)) continue;
      const id = this.pieceIds.get(content);
      if (id === undefined) continue;
      added.set(content, { id, content, special: true, lstrip: false, rstrip: false, singleWord: false, normalized: false });
    }
    this.addedTokens = added;
    for (const t of added.values()) this.addedById.set(t.id, t);
    this.splitter = new AddedTokenSplitter(added.values());
    let size = model.pieces.length;
    for (const t of added.values()) size = Math.max(size, t.id + 1);
    this.vocabSize = size;
    const idOf = (t: string | undefined): number | undefined => (t === undefined ? undefined : this.tokenToId(t));
    this.specialIds = {
      bos: idOf(this.specialTokens.bos),
      eos: idOf(this.specialTokens.eos),
      unk: idOf(this.specialTokens.unk),
      pad: idOf(this.specialTokens.pad),
    };
    this.addBosToken = settings.addBosToken ?? true;
    this.addEosToken = settings.addEosToken ?? false;
    this.modelMaxLength = settings.modelMaxLength;
    this.legacy = settings.legacy ?? true;
    this.addPrefixSpace = settings.addPrefixSpace ?? true;
    this.allSpecialTokens = new Set(
      [...named, ...settings.additionalSpecialTokens].filter((t): t is string => t !== undefined),
    );
    this.unkPrefixLength = this.legacy ? 0 : sp.encodeIds(this.unkText).length;
  }

  private get unkText(): string {
    return this.specialTokens.unk ?? '<unk>';
  }

  static async load(file: string, settings: TokenizerSettings): Promise<SentencePieceTokenizer> {
    let buf: Buffer;
    try {
      buf = readFileSync(file);
    } catch (e) {
      throw new UnimeError(`cannot read the sentencepiece model (${(e as NodeJS.ErrnoException).code ?? e})`, {
        file,
        fix: 'check the path and its permissions',
        cause: e,
      });
    }
    const model = parseSentencePieceModel(buf, file);
    if (model.modelType !== 1 && model.modelType !== 2) {
      throw new UnimeError(`sentencepiece model type ${model.modelType} (word/char) is not supported`, {
        file,
        fix: 'use a unigram or BPE sentencepiece model, as every supported backbone does',
      });
    }
    let sp: Processor;
    if (settings.legacy === false) {
      const tmp = mkdtempSync(path.join(os.tmpdir(), 'unime-spm-'));
      try {
        const patched = path.join(tmp, 'tokenizer.model');
        writeFileSync(patched, withoutDummyPrefix(buf, file));
        sp = await loadProcessor(patched);
      } finally {
        rmSync(tmp, { recursive: true, force: true });
      }
    } else sp = await loadProcessor(file);
    const tok = new SentencePieceTokenizer(file, model, sp, settings);
    // sentencepiece-js does not report a failed load; a model that parsed but did not load encodes
    // nothing at all
    if (tok.sp.encodeIds('a').length === 0) {
      throw new UnimeError('sentencepiece could not load this model', { file, fix: 'download tokenizer.model again' });
    }
    return tok;
  }

  encode(text: string, options: EncodeOptions = {}): number[] {
    const ids: number[] = [];
    const addSpecial = options.addSpecialTokens ?? true;
    if (addSpecial && this.addBosToken && this.specialIds.bos !== undefined) ids.push(this.specialIds.bos);
    ids.push(...(this.legacy || text === '' ? this.encodeLegacy(text) : this.encodeNonLegacy(text)));
    if (addSpecial && this.addEosToken && this.specialIds.eos !== undefined) ids.push(this.specialIds.eos);
    return ids;
  }

  private spEncode(text: string): number[] {
    return this.sp.encodeIds(text.replace(LONE_SURROGATE, '\ufffd'));
  }

  private encodeLegacy(text: string): number[] {
    const ids: number[] = [];
    for (const seg of this.splitter.split(text)) {
      if ('token' in seg) ids.push(seg.token.id);
      else ids.push(...this.spEncode(seg.text));
    }
    return ids;
  }

  /** transformers' LlamaTokenizer.tokenize / _tokenize with legacy=False. */
  private encodeNonLegacy(text: string): number[] {
    let t = text.replace(/\u2581/g, ' ');
    if (this.addPrefixSpace) t = '\u2581' + t;
    const ids: number[] = [];
    const segments = this.splitter.split(t);
    for (const seg of segments) {
      if ('token' in seg) ids.push(seg.token.id);
      else if (!seg.text.startsWith('\u2581') && !seg.text.startsWith(' ')) ids.push(...this.spEncode(seg.text));
      else {
        // the model has no dummy prefix; a leading space would be dropped by sentencepiece, so the
        // text is encoded after the unk token's characters, which are then cut off again
        const all = this.spEncode(this.unkText + seg.text);
        ids.push(...(all.length >= this.unkPrefixLength ? all.slice(this.unkPrefixLength) : all));
      }
    }
    if (ids.length > 1 && this.idToToken(ids[0]!) === '\u2581' && this.allSpecialTokens.has(this.idToToken(ids[1]!)!)) {
      ids.shift();
    }
    return ids;
  }

  decode(ids: ArrayLike<number>, options: DecodeOptions = {}): string {
    const skip = options.skipSpecialTokens ?? false;
    let out = '';
    let run: number[] = [];
    let first = true;
    const flush = (): void => {
      if (run.length === 0) return;
      let text = this.sp.decodeIds(run);
      // legacy: false adds the prefix space itself, so it takes it off again
      if (first && !this.legacy && this.addPrefixSpace && text.startsWith(' ')) text = text.slice(1);
      out += text;
      first = false;
      run = [];
    };
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]!;
      const added = this.addedById.get(id);
      if (added !== undefined) {
        flush();
        if (!(skip && added.special)) {
          out += added.content;
          first = false;
        }
      } else if (id >= 0 && id < this.model.pieces.length) {
        if (skip && this.model.pieces[id]!.type === PieceType.Control) continue;
        run.push(id);
      } else {
        throw new UnimeError(`token id ${id} is outside the vocabulary (size ${this.vocabSize})`, {
          file: this.source,
          fix: 'decode ids produced by this tokenizer',
        });
      }
    }
    flush();
    return out;
  }

  tokenToId(token: string): number | undefined {
    return this.addedTokens.get(token)?.id ?? this.pieceIds.get(token);
  }

  idToToken(id: number): string | undefined {
    return this.addedById.get(id)?.content ?? this.model.pieces[id]?.piece;
  }
}
