/**
 * LoRA over a multimodal model's language model and vision tower together, as one peft adapter.
 *
 * peft matches target_modules against every module of the whole checkpoint, so VLM2Vec's default list
 * (qkv_proj, o_proj, gate_up_proj, down_proj, k_proj, q_proj, out_proj, v_proj), which UniME's stage 2
 * trains with, adapts the CLIP tower's attention (q/k/v/out_proj) as well as the language model. Stages
 * that adapt only the language model attach LoRA to `model.decoder` (module names carry the decoder's
 * prefix, e.g. 'language_model.model.layers.0.self_attn.q_proj'); with `lora.vision_tower` they attach it
 * to this target, whose module names are the checkpoint's full names for both parts
 * ('vision_tower.vision_model.encoder.layers.0.self_attn.q_proj'), so the saved adapter is what peft
 * would save for the whole model.
 */
import * as path from 'node:path';
import { UnimeError } from '../../errors.js';
import { SafetensorsFile } from '../../io/safetensors.js';
import type { tf } from '../../runtime/tf.js';
import { ADAPTER_WEIGHTS, PEFT_LORA_KEY, loadLoraAdapter } from '../peft/adapter-io.js';
import { mergeLora, type LoraTarget } from '../peft/lora.js';
import type { LoadedTextDecoder } from '../text/load.js';
import type { LoadedVisionTower } from '../vision/load.js';
import type { MultimodalModel } from './types.js';

/** The weights of the language model and (where there is one) the vision tower, by their full checkpoint keys. */
export function checkpointWeights(decoder: LoadedTextDecoder, vision?: LoadedVisionTower): Map<string, tf.Variable> {
  const weights = new Map<string, tf.Variable>();
  for (const [k, v] of decoder.weights) weights.set(decoder.source.prefix + k, v);
  if (vision) for (const [k, v] of vision.weights) weights.set(vision.source.prefix + k, v);
  return weights;
}

/** The language model and the vision tower as one LoRA target, weights keyed by their full checkpoint names. */
export class MultimodalLoraTarget implements LoraTarget {
  readonly weights: ReadonlyMap<string, tf.Variable>;
  readonly source: { readonly prefix: string; readonly checkpoint: string };

  constructor(
    readonly decoder: LoadedTextDecoder,
    readonly vision: LoadedVisionTower,
    checkpoint: string,
  ) {
    this.weights = checkpointWeights(decoder, vision);
    // module names are already full: nothing goes before them
    this.source = { prefix: '', checkpoint };
  }
}

/**
 * Where a stage attaches its LoRA: the language model alone, or (`withVision`) the language model and
 * the vision tower. A text-only model has no tower to adapt: asking for one is an error naming `field`.
 */
export function multimodalLoraTarget(model: MultimodalModel, withVision: boolean, field = 'lora.vision_tower'): LoraTarget {
  if (!withVision) return model.decoder;
  if (!model.vision) {
    throw new UnimeError(`${model.dir} is a text-only model: it has no vision tower to adapt`, { field, fix: `set ${field}: false` });
  }
  return new MultimodalLoraTarget(model.decoder, model.vision, model.dir);
}

/** Module names an adapter on disk adapts (from its weights' keys; unparseable keys are left to the loader to report). */
async function adaptedModules(dir: string): Promise<string[]> {
  const file = await SafetensorsFile.open(path.join(dir, ADAPTER_WEIGHTS));
  try {
    return [...new Set(file.names.map((k) => PEFT_LORA_KEY.exec(k)?.[1]).filter((n): n is string => n !== undefined))];
  } finally {
    await file.close();
  }
}

/**
 * Where an adapter on disk goes: one that adapts only language-model modules attaches to the decoder
 * (as every stage wrote them before `lora.vision_tower`), one that also adapts the vision tower to both
 * parts. Returns the target and the loader's options for it.
 */
export async function adapterTarget(model: MultimodalModel, dir: string): Promise<{ target: LoraTarget; modulePrefix?: string }> {
  const vision = model.vision;
  if (!vision) return { target: model.decoder };
  const names = await adaptedModules(dir);
  // by the tower's own weights, not the prefix alone: Phi-3.5-V's tower sits under the decoder's 'model.'
  const vp = vision.source.prefix;
  const inVision = (n: string) => n.startsWith(vp) && vision.weights.has(`${n.slice(vp.length)}.weight`);
  if (!names.some(inVision)) return { target: model.decoder };
  return { target: new MultimodalLoraTarget(model.decoder, vision, model.dir), modulePrefix: '' };
}

/** Fold a chain of adapters into a multimodal model, in order, each into the parts it adapts. */
export async function mergeMultimodalAdapterChain(model: MultimodalModel, chain: readonly string[]): Promise<void> {
  for (const dir of chain) {
    const { target, modulePrefix } = await adapterTarget(model, dir);
    await loadLoraAdapter(dir, target, modulePrefix !== undefined ? { modulePrefix } : {});
    mergeLora(target);
  }
}
