/** An added token as Hugging Face writes it in tokenizer_config.json / tokenizer.json. */
export interface AddedToken {
  id: number;
  content: string;
  /** Special tokens are dropped by decode({skipSpecialTokens: true}). */
  special: boolean;
  /** Whitespace on the left of the token in the text is absorbed by it. */
  lstrip: boolean;
  /** Whitespace on the right of the token in the text is absorbed by it (Phi-3 chat tokens). */
  rstrip: boolean;
  singleWord: boolean;
  normalized: boolean;
}

/** Special token ids; undefined where the tokenizer has none (Qwen2 has no BOS and no UNK). */
export interface SpecialTokenIds {
  bos: number | undefined;
  eos: number | undefined;
  pad: number | undefined;
  unk: number | undefined;
}

export interface SpecialTokenStrings {
  bos: string | undefined;
  eos: string | undefined;
  pad: string | undefined;
  unk: string | undefined;
}

export interface EncodeOptions {
  /** Add BOS/EOS as the tokenizer's configuration says (add_bos_token / add_eos_token). Default true. */
  addSpecialTokens?: boolean;
}

export interface DecodeOptions {
  /** Drop special tokens (BOS, EOS, PAD, chat markers). Default false. */
  skipSpecialTokens?: boolean;
}

/** One interface over sentencepiece (.model) and Hugging Face tokenizer.json tokenizers. */
export interface Tokenizer {
  /** 'sentencepiece' or 'tokenizer.json': which file the vocabulary came from. */
  readonly kind: 'sentencepiece' | 'tokenizer.json';
  /** The directory or file it was loaded from. */
  readonly source: string;
  /** Size of the id space: the model's vocabulary plus added tokens (max id + 1). */
  readonly vocabSize: number;
  readonly specialTokens: SpecialTokenStrings;
  readonly specialIds: SpecialTokenIds;
  readonly addBosToken: boolean;
  readonly addEosToken: boolean;
  /** model_max_length from tokenizer_config.json, when it names a usable one. */
  readonly modelMaxLength: number | undefined;
  /** Added tokens by content (`<|image_1|>`, `<image>`, `<|image_pad|>`, `<|user|>`, ...). */
  readonly addedTokens: ReadonlyMap<string, AddedToken>;

  encode(text: string, options?: EncodeOptions): number[];
  decode(ids: ArrayLike<number>, options?: DecodeOptions): string;
  tokenToId(token: string): number | undefined;
  idToToken(id: number): string | undefined;
}
