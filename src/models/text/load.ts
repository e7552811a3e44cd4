/**
 * Build a text decoder from a Hugging Face checkpoint: config.json (or the text_config of a
 * multimodal config) picks the builder, the safetensors weights are checked against the shapes the
 * config implies, then read one tensor at a time into tfjs variables.
 */
import { type Checkpoint, openCheckpoint } from '../../io/checkpoint.js';
import { type HfConfig, readHfConfig } from '../../io/hf-config.js';
import { tf } from '../../runtime/tf.js';
import { registeredModelTypes, textDecoderEntry, type TextDecoderEntry } from '../registry.js';
import { type DecoderConfig, ModelConfigError } from './config.js';
import { TextDecoder, type DecoderOptions } from './decoder.js';
import { expectedDecoderWeights } from './modules.js';
import { checkpointConfigFile, checkWeights, readWeightVariables, WeightMismatchError } from '../weights.js';

export { WeightMismatchError } from '../weights.js';

export interface LoadTextDecoderOptions extends DecoderOptions {
  /**
   * Key prefix of the decoder's tensors: 'model.' for *ForCausalLM checkpoints, 'language_model.model.'
   * or 'model.language_model.' inside multimodal ones. Found from the checkpoint when omitted.
   */
  prefix?: string;
  /** Use this config instead of reading config.json. */
  config?: HfConfig;
  /** Where config.json is (default: beside the weights). */
  configFile?: string;
  /** Fail on tensors under the prefix that the decoder does not use (default true). */
  strict?: boolean;
  /** Create trainable variables (default true). */
  trainable?: boolean;
}

export interface TextDecoderSource {
  checkpoint: string;
  configFile: string;
  prefix: string;
  /** '' or 'text_config.' */
  configField: string;
}

export interface LoadedTextDecoder extends TextDecoder {
  readonly source: TextDecoderSource;
}

/** Prefixes tried, in order, when none is given. */
export const DECODER_PREFIXES = ['model.', '', 'model.language_model.', 'language_model.model.', 'language_model.'];

/** Tensors old checkpoints carry that no current model reads. */
const IGNORED = /(^|\.)rotary_emb\.inv_freq$/;

export async function loadTextDecoder(dirOrFile: string, options: LoadTextDecoderOptions = {}): Promise<LoadedTextDecoder> {
  const configFile = options.configFile ?? (await checkpointConfigFile(dirOrFile));
  const top = options.config ?? (await readHfConfig(configFile));
  const { entry, cfg, fieldPrefix } = selectTextConfig(top, configFile);
  const config = entry.buildConfig(cfg, { file: configFile, fieldPrefix });

  const ckpt = await openCheckpoint(dirOrFile);
  let weights = new Map<string, tf.Variable>();
  try {
    const prefix = options.prefix ?? detectPrefix(ckpt);
    const expected = expectedDecoderWeights(config);
    checkWeights(ckpt, prefix, expected, {
      what: `the ${config.modelType} decoder`,
      configFile,
      prefixLabel: 'decoder',
      strict: options.strict ?? true,
      tolerated: (rel) => IGNORED.test(rel) || (prefix === '' && /^lm_head\./.test(rel)),
    });
    weights = await readWeightVariables(ckpt, prefix, expected, options.trainable ?? true);
    const decoder = new TextDecoder(config, weights, options) as TextDecoder & { source: TextDecoderSource };
    decoder.source = { checkpoint: dirOrFile, configFile, prefix, configField: fieldPrefix };
    return decoder;
  } catch (e) {
    for (const v of weights.values()) v.dispose();
    throw e;
  } finally {
    await ckpt.close();
  }
}

/** The decoder's config: the top level when its model_type is a text decoder, else text_config. */
export function selectTextConfig(top: HfConfig, file: string): { entry: TextDecoderEntry; cfg: HfConfig; fieldPrefix: string } {
  const known = registeredModelTypes('text-decoder');
  const topType = top.model_type ?? undefined;
  if (topType !== undefined) {
    const e = textDecoderEntry(topType);
    if (e) return { entry: e, cfg: top, fieldPrefix: '' };
  }
  const nested = top.text_config;
  if (nested) {
    const t = nested.model_type ?? undefined;
    if (t === undefined) {
      throw new ModelConfigError('is missing: the text model type of this multimodal config is unknown', {
        file,
        field: 'text_config.model_type',
        fix: `add the language model's model_type (one of ${known.join(', ')})`,
      });
    }
    const e = textDecoderEntry(t);
    if (e) return { entry: e, cfg: nested, fieldPrefix: 'text_config.' };
    throw new ModelConfigError(`text decoder type ${JSON.stringify(t)} is not supported (supported: ${known.join(', ')})`, {
      file,
      field: 'text_config.model_type',
    });
  }
  throw new ModelConfigError(
    topType === undefined ? 'is missing' : `${JSON.stringify(topType)} is not a supported text decoder (supported: ${known.join(', ')})`,
    { file, field: 'model_type', fix: 'point at a Llama, Mistral, Qwen2, Qwen3 or Phi-3 checkpoint (or a multimodal one with such a text_config)' },
  );
}

function detectPrefix(ckpt: Checkpoint): string {
  for (const p of DECODER_PREFIXES) if (ckpt.has(`${p}embed_tokens.weight`)) return p;
  const sample = ckpt.names.slice(0, 5).join(', ');
  throw new WeightMismatchError(`no decoder embedding table found (looked for ${DECODER_PREFIXES.map((p) => `${p}embed_tokens.weight`).join(', ')}; the checkpoint starts with ${sample})`, {
    file: ckpt.indexPath ?? ckpt.files[0] ?? ckpt.path,
    fix: 'pass the prefix of the decoder tensors as {prefix: "..."}',
  });
}

