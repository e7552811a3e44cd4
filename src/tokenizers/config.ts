import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { UnimeError } from '../errors.js';
import type { AddedToken, SpecialTokenStrings } from './types.js';

/**
 * What tokenizer_config.json and special_tokens_map.json say about special tokens, BOS/EOS and
 * added tokens. Values in tokenizer_config.json win over special_tokens_map.json, as in transformers.
 */
export interface TokenizerSettings {
  specialTokens: SpecialTokenStrings;
  /** undefined when neither file says (each tokenizer kind then has its own default). */
  addBosToken: boolean | undefined;
  addEosToken: boolean | undefined;
  modelMaxLength: number | undefined;
  paddingSide: 'left' | 'right' | undefined;
  addedTokens: AddedToken[];
  /** Token strings named in additional_special_tokens. */
  additionalSpecialTokens: string[];
  /**
   * transformers' `legacy` flag of sentencepiece tokenizers (undefined: not set, which transformers
   * treats as true). false changes how text right after an added token is encoded.
   */
  legacy: boolean | undefined;
  /** `add_prefix_space` (sentencepiece tokenizers with legacy: false); undefined when not set. */
  addPrefixSpace: boolean | undefined;
  /** tokenizer_config.json as read ({} when absent). */
  rawConfig: Record<string, unknown>;
}

type Json = Record<string, unknown>;

function readJsonIfPresent(file: string): Json | undefined {
  if (!existsSync(file)) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new UnimeError(`is not valid JSON (${(e as Error).message})`, {
      file,
      fix: 'download the tokenizer files again; a partial download leaves broken JSON',
      cause: e,
    });
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new UnimeError('must hold a JSON object', { file, fix: 'download the tokenizer files again' });
  }
  return parsed as Json;
}

/** A special token field is a string, an AddedToken-like object with `content`, or null. */
function tokenString(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof (v as Json).content === 'string') return (v as Json).content as string;
  return undefined;
}

export function parseAddedToken(id: number, v: unknown, file: string, field: string): AddedToken {
  if (!v || typeof v !== 'object' || typeof (v as Json).content !== 'string') {
    throw new UnimeError('an added token needs a string `content`', {
      file,
      field,
      fix: 'each added token is {"content": "...", "special": true, ...} as transformers writes it',
    });
  }
  const o = v as Json;
  return {
    id,
    content: o.content as string,
    special: o.special === true,
    lstrip: o.lstrip === true,
    rstrip: o.rstrip === true,
    singleWord: o.single_word === true,
    normalized: o.normalized === true,
  };
}

export function readTokenizerSettings(dir: string): TokenizerSettings {
  const configFile = path.join(dir, 'tokenizer_config.json');
  const mapFile = path.join(dir, 'special_tokens_map.json');
  const config = readJsonIfPresent(configFile) ?? {};
  const map = readJsonIfPresent(mapFile) ?? {};
  const pick = (key: string): string | undefined => tokenString(config[key]) ?? tokenString(map[key]);

  const addedTokens: AddedToken[] = [];
  const decoder = config.added_tokens_decoder;
  if (decoder && typeof decoder === 'object') {
    for (const [key, v] of Object.entries(decoder as Json)) {
      const id = Number(key);
      if (!Number.isInteger(id) || id < 0) {
        throw new UnimeError(`added token id "${key}" is not a non-negative integer`, {
          file: configFile,
          field: `added_tokens_decoder.${key}`,
          fix: 'the keys of added_tokens_decoder are token ids',
        });
      }
      addedTokens.push(parseAddedToken(id, v, configFile, `added_tokens_decoder.${key}`));
    }
  }
  const additional = (config.additional_special_tokens ?? map.additional_special_tokens) as unknown;
  const additionalSpecialTokens = Array.isArray(additional)
    ? additional.map(tokenString).filter((s): s is string => s !== undefined)
    : [];

  const bool = (key: string): boolean | undefined => {
    const v = config[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'boolean') {
      throw new UnimeError(`must be true or false, not ${JSON.stringify(v)}`, {
        file: configFile,
        field: key,
        fix: `set "${key}": true or false`,
      });
    }
    return v;
  };
  const maxLen = config.model_max_length;
  // transformers writes 1e30 (VERY_LARGE_INTEGER) when a model has no limit
  const modelMaxLength = typeof maxLen === 'number' && maxLen > 0 && maxLen < 1e9 ? maxLen : undefined;
  const side = config.padding_side;
  return {
    specialTokens: { bos: pick('bos_token'), eos: pick('eos_token'), pad: pick('pad_token'), unk: pick('unk_token') },
    addBosToken: bool('add_bos_token'),
    addEosToken: bool('add_eos_token'),
    modelMaxLength,
    paddingSide: side === 'left' || side === 'right' ? side : undefined,
    addedTokens,
    additionalSpecialTokens,
    legacy: bool('legacy'),
    addPrefixSpace: bool('add_prefix_space'),
    rawConfig: config,
  };
}
