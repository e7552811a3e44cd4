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
import { buildClipVisionConfig, buildSiglipVisionConfig, type VisionConfigBuilder } from './vision/config.js';

export interface TextDecoderEntry {
  kind: 'text-decoder';
  modelType: string;
  /** The transformers class whose checkpoints this reads. */
  hfClass: string;
  buildConfig: DecoderConfigBuilder;
}

export interface VisionTowerEntry {
  kind: 'vision-tower';
  modelType: string;
  /** The transformers class whose checkpoints this reads. */
  hfClass: string;
  buildConfig: VisionConfigBuilder;
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

// Vision towers sit in a table of their own rather than in ModelEntry's union, so code that reads
// modelEntry(...) as a text decoder keeps its types; model_type names stay unique across both.
const visionTowers = new Map<string, VisionTowerEntry>();

export function registerVisionTower(entry: VisionTowerEntry, { replace = false } = {}): void {
  if ((visionTowers.has(entry.modelType) || entries.has(entry.modelType)) && !replace) {
    throw new UnimeError(`model_type ${JSON.stringify(entry.modelType)} is already registered`, { fix: 'pass {replace: true} to override it' });
  }
  visionTowers.set(entry.modelType, entry);
}

export function visionTowerEntry(modelType: string): VisionTowerEntry | undefined {
  return visionTowers.get(modelType);
}

export function registeredVisionTowerTypes(): string[] {
  return [...visionTowers.keys()].sort();
}

registerModel({ kind: 'text-decoder', modelType: 'llama', hfClass: 'LlamaModel', buildConfig: buildLlamaConfig });
registerModel({ kind: 'text-decoder', modelType: 'mistral', hfClass: 'MistralModel', buildConfig: buildMistralConfig });
registerModel({ kind: 'text-decoder', modelType: 'qwen2', hfClass: 'Qwen2Model', buildConfig: buildQwen2Config });
registerModel({ kind: 'text-decoder', modelType: 'qwen3', hfClass: 'Qwen3Model', buildConfig: buildQwen3Config });
registerModel({ kind: 'text-decoder', modelType: 'phi3', hfClass: 'Phi3Model', buildConfig: buildPhi3Config });
registerVisionTower({ kind: 'vision-tower', modelType: 'clip_vision_model', hfClass: 'CLIPVisionModel', buildConfig: buildClipVisionConfig });
registerVisionTower({ kind: 'vision-tower', modelType: 'siglip_vision_model', hfClass: 'SiglipVisionModel', buildConfig: buildSiglipVisionConfig });
