/**
 * model_type -> multimodal assembly. LLaVA, LLaVA-NeXT and LLaVA-OneVision are built; the other backbones the product names register
 * here as they land (their entries below say what is missing so users get a clear message). A
 * checkpoint whose model_type is a text decoder loads as a text-only model.
 */
import { NotImplementedYetError } from '../../errors.js';
import { readHfConfig } from '../../io/hf-config.js';
import { textDecoderEntry } from '../registry.js';
import { ModelConfigError } from '../text/config.js';
import { checkpointConfigFile } from '../weights.js';
import { loadLlava, type LoadMultimodalOptions } from './llava.js';
import { loadLlavaNext, loadLlavaOnevision } from './llava-next.js';
import { loadPhi3V } from './phi3-v.js';
import { loadTextOnly } from './text-only.js';
import type { MultimodalModel } from './types.js';

export interface MultimodalEntry {
  modelType: string;
  /** The transformers class whose checkpoints this reads. */
  hfClass: string;
  load: (dir: string, options: LoadMultimodalOptions) => Promise<MultimodalModel>;
}

const entries = new Map<string, MultimodalEntry>();

/** Backbones the product covers whose assembly is not in this build yet, with what they need. */
const PLANNED: Record<string, string> = {
  qwen2_vl: "Qwen2-VL (2D-RoPE vision tower and M-RoPE decoder)",
};

export function registerMultimodal(entry: MultimodalEntry, { replace = false } = {}): void {
  if (entries.has(entry.modelType) && !replace) throw new ModelConfigError(`model_type ${JSON.stringify(entry.modelType)} is already registered`);
  entries.set(entry.modelType, entry);
}

export function registeredMultimodalTypes(): string[] {
  return [...entries.keys()].sort();
}

/** Load any embedding-capable checkpoint: a registered multimodal assembly or a text decoder. */
export async function loadMultimodalModel(dir: string, options: LoadMultimodalOptions = {}): Promise<MultimodalModel> {
  const configFile = await checkpointConfigFile(dir);
  const top = await readHfConfig(configFile);
  const type = top.model_type ?? undefined;
  const entry = type === undefined ? undefined : entries.get(type);
  if (entry) return entry.load(dir, options);
  if (type !== undefined && textDecoderEntry(type)) return loadTextOnly(dir, options);
  if (type !== undefined && PLANNED[type]) {
    throw new NotImplementedYetError(`${PLANNED[type]} is not in this build yet`, {
      file: configFile,
      field: 'model_type',
      fix: `use a checkpoint of model_type ${registeredMultimodalTypes().join(', ')} or a text decoder for now`,
    });
  }
  throw new ModelConfigError(type === undefined ? 'is missing' : `${JSON.stringify(type)} is not a supported model`, {
    file: configFile,
    field: 'model_type',
    fix: `supported: ${[...registeredMultimodalTypes(), 'or a text decoder (llama, mistral, qwen2, qwen3, phi3)'].join(', ')}`,
  });
}

registerMultimodal({ modelType: 'llava', hfClass: 'LlavaForConditionalGeneration', load: loadLlava });
registerMultimodal({ modelType: 'llava_next', hfClass: 'LlavaNextForConditionalGeneration', load: loadLlavaNext });
registerMultimodal({ modelType: 'llava_onevision', hfClass: 'LlavaOnevisionForConditionalGeneration', load: loadLlavaOnevision });
registerMultimodal({ modelType: 'phi3_v', hfClass: 'Phi3VForCausalLM', load: loadPhi3V });
