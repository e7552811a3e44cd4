export type {
  AddedToken,
  DecodeOptions,
  EncodeOptions,
  SpecialTokenIds,
  SpecialTokenStrings,
  Tokenizer,
} from './types.js';
export { loadTokenizer, type LoadTokenizerOptions } from './load.js';
export { SentencePieceTokenizer } from './sentencepiece.js';
export { JsonTokenizer } from './tokenizer-json.js';
export { readTokenizerSettings, type TokenizerSettings } from './config.js';
export { AddedTokenSplitter, type Segment } from './added-tokens.js';
export { parseSentencePieceModel, type SentencePieceModel } from './sentencepiece-model.js';
export {
  encodeBatch,
  padBatch,
  truncateIds,
  defaultPadId,
  type BatchEncoding,
  type EncodeBatchOptions,
  type PadOptions,
  type TruncateOptions,
  type Side,
} from './batch.js';
export {
  BACKBONE_NAMES,
  SENTENCE_SLOT,
  getPromptTemplate,
  textPrompt,
  chatPrompt,
  imagePrompt,
  convertImageMarkers,
  countImageMarkers,
  expandImageTokens,
  encodeWithImages,
  protectedSuffixLength,
  type BackboneName,
  type PromptTemplate,
  type ExpandedIds,
} from './templates.js';
