/**
 * model_type (as written in config.json) -> what unime builds for it. Text decoders register here
 * now; the multimodal assemblies (llava, llava_next, llava_onevision, qwen2_vl, phi3_v) add entries
 * of their own kind later, without touching the existing ones.
 */
import { UnimeError } from '../errors.js';
import {
  buildLlamaConfig,
  buildMistralConfig,
  buildPhi3Config,
  buildQwen2Config,
  buildQwen3Config,
  type DecoderConfigBuilder,
} from './text/builders.js';

export interface TextDecoderEntry {
  kind: 'text-decoder';
  modelType: string;
  /** The transformers class whose checkpoints this reads. */
  hfClass: string;
  buildConfig: DecoderConfigBuilder;
}

/** Open union: later kinds ('mllm', 'vision-tower') join here. */
export type ModelEntry = TextDecoderEntry;

const entries = new Map<string, ModelEntry>();

export function registerModel(entry: ModelEntry, { replace = false } = {}): void {
  if (entries.has(entry.modelType) && !replace) {
    throw new UnimeError(`model_type ${JSON.stringify(entry.modelType)} is already registered`, { fix: 'pass {replace: true} to override it' });
  }
  entries.set(entry.modelType, entry);
}

export function modelEntry(modelType: string): ModelEntry | undefined {
  return entries.get(modelType);
}

export function registeredModelTypes(kind?: ModelEntry['kind']): string[] {
  return [...entries.values()].filter((e) => kind === undefined || e.kind === kind).map((e) => e.modelType).sort();
}

export function textDecoderEntry(modelType: string): TextDecoderEntry | undefined {
  const e = entries.get(modelType);
  return e?.kind === 'text-decoder' ? e : undefined;
}

registerModel({ kind: 'text-decoder', modelType: 'llama', hfClass: 'LlamaModel', buildConfig: buildLlamaConfig });
registerModel({ kind: 'text-decoder', modelType: 'mistral', hfClass: 'MistralModel', buildConfig: buildMistralConfig });
registerModel({ kind: 'text-decoder', modelType: 'qwen2', hfClass: 'Qwen2Model', buildConfig: buildQwen2Config });
registerModel({ kind: 'text-decoder', modelType: 'qwen3', hfClass: 'Qwen3Model', buildConfig: buildQwen3Config });
registerModel({ kind: 'text-decoder', modelType: 'phi3', hfClass: 'Phi3Model', buildConfig: buildPhi3Config });
