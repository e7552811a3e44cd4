import { existsSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { UnimeError } from '../errors.js';
import { readTokenizerSettings } from './config.js';
import { SentencePieceTokenizer } from './sentencepiece.js';
import { JsonTokenizer } from './tokenizer-json.js';
import type { Tokenizer } from './types.js';

export interface LoadTokenizerOptions {
  /**
   * Which file wins when a checkpoint has both tokenizer.json and tokenizer.model. Default
   * 'tokenizer.json', as transformers' fast tokenizers (AutoTokenizer's default) do.
   */
  prefer?: 'tokenizer.json' | 'sentencepiece';
}

/** sentencepiece file names found in checkpoints, in the order they are tried. */
const SENTENCEPIECE_FILES = ['tokenizer.model', 'spiece.model', 'sentencepiece.bpe.model'];

/**
 * Load the tokenizer of a checkpoint directory (or one tokenizer.json / .model file): tokenizer.json
 * through @huggingface/tokenizers or a sentencepiece .model through sentencepiece-js, with special
 * tokens, BOS/EOS flags and added tokens from tokenizer_config.json and special_tokens_map.json
 * beside it.
 */
export async function loadTokenizer(dirOrFile: string, options: LoadTokenizerOptions = {}): Promise<Tokenizer> {
  if (!existsSync(dirOrFile)) {
    throw new UnimeError('no such tokenizer directory or file', {
      file: dirOrFile,
      fix: 'pass the checkpoint directory that holds tokenizer.json or tokenizer.model (unime pull <hub id> fetches one)',
    });
  }
  let dir = dirOrFile;
  let jsonFile: string | undefined;
  let spFile: string | undefined;
  if (statSync(dirOrFile).isFile()) {
    dir = path.dirname(dirOrFile);
    if (dirOrFile.endsWith('.json')) jsonFile = dirOrFile;
    else if (dirOrFile.endsWith('.model')) spFile = dirOrFile;
    else {
      throw new UnimeError('is neither a tokenizer.json nor a sentencepiece .model file', {
        file: dirOrFile,
        fix: 'pass the checkpoint directory, a tokenizer.json or a tokenizer.model',
      });
    }
  } else {
    const json = path.join(dir, 'tokenizer.json');
    if (existsSync(json)) jsonFile = json;
    spFile = SENTENCEPIECE_FILES.map((f) => path.join(dir, f)).find((f) => existsSync(f));
    if (jsonFile === undefined && spFile === undefined) {
      throw new UnimeError('has no tokenizer: neither tokenizer.json nor tokenizer.model is there', {
        file: dir,
        fix: 'download the tokenizer files of the checkpoint (tokenizer.json or tokenizer.model, with tokenizer_config.json)',
      });
    }
  }
  const settings = readTokenizerSettings(dir);
  const useSentencepiece = spFile !== undefined && (jsonFile === undefined || options.prefer === 'sentencepiece');
  if (useSentencepiece) return SentencePieceTokenizer.load(spFile!, settings);
  return JsonTokenizer.load(jsonFile!, settings);
}
