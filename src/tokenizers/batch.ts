import { UnimeError } from '../errors.js';
import type { Tokenizer } from './types.js';

export type Side = 'left' | 'right';

export interface TruncateOptions {
  /**
   * Which side of the body loses tokens when a row is too long. Default 'right': the start of the
   * text is kept, as transformers' default truncation_side. The head and tail below survive either way.
   */
  truncationSide?: Side;
  /** Tokens at the start that are never cut (BOS). */
  keepFirst?: number;
  /**
   * Tokens at the end that are never cut: EOS and the template suffix (`Summary above sentence in one
   * word: <|end|>\n<|assistant|>\n`), whose last token is the one last-token pooling reads.
   */
  keepLast?: number;
}

/**
 * Cut ids to maxLength by removing tokens from the body, the part between the protected head
 * (keepFirst) and the protected tail (keepLast).
 */
export function truncateIds(ids: readonly number[], maxLength: number, options: TruncateOptions = {}): number[] {
  if (ids.length <= maxLength) return ids.slice();
  const head = Math.min(options.keepFirst ?? 0, ids.length);
  const tail = Math.min(options.keepLast ?? 0, ids.length - head);
  if (head + tail > maxLength) {
    throw new UnimeError(
      `max_length ${maxLength} is shorter than the ${head + tail} tokens that truncation must keep (special tokens and the prompt's end)`,
      { field: 'max_length', fix: `raise max_length to at least ${head + tail + 1}` },
    );
  }
  const bodyKeep = maxLength - head - tail;
  const body = ids.slice(head, ids.length - tail);
  const kept = (options.truncationSide ?? 'right') === 'right' ? body.slice(0, bodyKeep) : body.slice(body.length - bodyKeep);
  return [...ids.slice(0, head), ...kept, ...ids.slice(ids.length - tail)];
}

export interface PadOptions {
  /**
   * Default 'left': every row's last real token sits in the last column, which is where last-token
   * pooling reads the embedding (UniME, VLM2Vec, E5-V all pad left).
   */
  paddingSide?: Side;
  /** Pad id; default the tokenizer's pad token, else its EOS, else 0. The mask hides it either way. */
  padId?: number;
  /** Round the padded length up to a multiple of this (e.g. 8 for tensor cores). */
  padToMultipleOf?: number;
}

/** Ids and mask of a batch, row-major [batchSize, seqLen], as the text decoders' forward() takes them. */
export interface BatchEncoding {
  inputIds: Int32Array;
  attentionMask: Int32Array;
  batchSize: number;
  seqLen: number;
  /** Real (unpadded) length of each row. */
  lengths: number[];
  /** Which rows were cut by truncation. */
  truncated: boolean[];
}

/** Pad already tokenized rows (for instance after image placeholder expansion) into one batch. */
export function padBatch(rows: readonly (readonly number[])[], padId: number, options: PadOptions = {}): BatchEncoding {
  const side = options.paddingSide ?? 'left';
  let seqLen = Math.max(0, ...rows.map((r) => r.length));
  const multiple = options.padToMultipleOf;
  if (multiple !== undefined && multiple > 1) seqLen = Math.ceil(seqLen / multiple) * multiple;
  const b = rows.length;
  const inputIds = new Int32Array(b * seqLen).fill(padId);
  const attentionMask = new Int32Array(b * seqLen);
  rows.forEach((row, i) => {
    const offset = i * seqLen + (side === 'left' ? seqLen - row.length : 0);
    for (let j = 0; j < row.length; j++) {
      inputIds[offset + j] = row[j]!;
      attentionMask[offset + j] = 1;
    }
  });
  return { inputIds, attentionMask, batchSize: b, seqLen, lengths: rows.map((r) => r.length), truncated: rows.map(() => false) };
}

export interface EncodeBatchOptions extends PadOptions, Omit<TruncateOptions, 'keepFirst'> {
  /** Add BOS/EOS as the tokenizer is configured. Default true. */
  addSpecialTokens?: boolean;
  /** Truncate longer rows to this many tokens. Default: no truncation. */
  maxLength?: number;
  /** Per-row keepLast (overrides keepLast), e.g. from protectedSuffixLength() per template. */
  keepLastPerRow?: readonly number[];
}

/** The pad id a tokenizer batch uses by default: PAD, else EOS, else 0. */
export function defaultPadId(tok: Tokenizer): number {
  return tok.specialIds.pad ?? tok.specialIds.eos ?? 0;
}

/**
 * Tokenize texts into one padded batch. Truncation (when maxLength is set) keeps BOS and EOS (when
 * the tokenizer adds them) and the keepLast tokens before EOS, and cuts the body in between.
 */
export function encodeBatch(tok: Tokenizer, texts: readonly string[], options: EncodeBatchOptions = {}): BatchEncoding {
  const addSpecial = options.addSpecialTokens ?? true;
  const bos = addSpecial && tok.addBosToken && tok.specialIds.bos !== undefined ? 1 : 0;
  const eos = addSpecial && tok.addEosToken && tok.specialIds.eos !== undefined ? 1 : 0;
  const truncated: boolean[] = [];
  const rows = texts.map((text, i) => {
    const ids = tok.encode(text, { addSpecialTokens: addSpecial });
    if (options.maxLength === undefined || ids.length <= options.maxLength) {
      truncated.push(false);
      return ids;
    }
    truncated.push(true);
    const keepLast = (options.keepLastPerRow?.[i] ?? options.keepLast ?? 0) + eos;
    return truncateIds(ids, options.maxLength, { keepFirst: bos, keepLast, truncationSide: options.truncationSide });
  });
  const batch = padBatch(rows, options.padId ?? defaultPadId(tok), options);
  batch.truncated = truncated;
  return batch;
}
